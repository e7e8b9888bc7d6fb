//! The release calendar: for each minor, when it was released, when standard
//! support ends (maintenance mode starts) and when it reaches end of life.
//!
//! The data is a file (`data/releases.json`, embedded at build time) so it
//! can be updated without touching code; `--calendar FILE` supplies a newer
//! one in the same format. Scheme: KEP-1498, kubernetes/website
//! `content/en/releases/patch-releases.md` (12 months of standard support,
//! then 2 months of maintenance mode; targets on the 28th).

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, bail};
use jiff::civil::Date;
use serde::{Deserialize, Serialize};

use crate::version::MinorVersion;

/// The calendar shipped with this build.
pub const EMBEDDED: &str = include_str!("../../data/releases.json");

/// One minor release line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub minor: MinorVersion,
    pub released: Date,
    /// The last day of standard support; maintenance mode follows.
    pub end_of_standard_support: Date,
    pub end_of_life: Date,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_patch: Option<String>,
    /// True when any date was derived by rule rather than taken from a source.
    #[serde(default)]
    pub estimated: bool,
    /// Which fields were derived.
    #[serde(default)]
    pub derived: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The whole calendar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Calendar {
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub sources: Vec<String>,
    pub releases: Vec<Release>,
}

impl Calendar {
    /// The calendar embedded in this build.
    pub fn embedded() -> Calendar {
        Calendar::from_json(EMBEDDED).expect("the embedded release calendar is valid")
    }

    /// Parses a calendar (the format of `data/releases.json`) and checks it.
    pub fn from_json(text: &str) -> anyhow::Result<Calendar> {
        let mut calendar: Calendar = serde_json::from_str(text)
            .context("the release calendar is not valid JSON of the expected shape")?;
        calendar.releases.sort_by_key(|r| r.minor);
        for pair in calendar.releases.windows(2) {
            if pair[0].minor == pair[1].minor {
                bail!("the release calendar lists {} twice", pair[0].minor);
            }
        }
        for r in &calendar.releases {
            if !(r.released <= r.end_of_standard_support
                && r.end_of_standard_support <= r.end_of_life)
            {
                bail!(
                    "the release calendar's dates for {} are out of order (released {}, end of standard support {}, end of life {})",
                    r.minor,
                    r.released,
                    r.end_of_standard_support,
                    r.end_of_life
                );
            }
        }
        Ok(calendar)
    }

    /// Reads a calendar file (`--calendar FILE`).
    pub fn load(path: &Path) -> anyhow::Result<Calendar> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the release calendar {}", path.display()))?;
        Calendar::from_json(&text)
            .with_context(|| format!("in the release calendar {}", path.display()))
    }

    pub fn get(&self, minor: MinorVersion) -> Option<&Release> {
        self.releases.iter().find(|r| r.minor == minor)
    }

    /// The newest minor released on or before `as_of`.
    pub fn newest_released(&self, as_of: Date) -> Option<&Release> {
        self.releases.iter().rev().find(|r| r.released <= as_of)
    }

    /// Whether `minor` is supported on `as_of`.
    pub fn support(&self, minor: MinorVersion, as_of: Date) -> Support {
        let newest = self.newest_released(as_of).map(|r| r.minor);
        let minors_behind = newest.and_then(|n| n.minus(minor)).filter(|d| *d >= 0);
        let Some(release) = self.get(minor) else {
            let message = format!(
                "{minor} is not in the release calendar (it covers {}); pass --calendar FILE with a newer one",
                self.span()
            );
            return Support {
                minor,
                as_of,
                status: SupportStatus::NotInCalendar,
                released: None,
                end_of_standard_support: None,
                end_of_life: None,
                days_left: None,
                newest_minor: newest,
                minors_behind,
                estimated: false,
                message,
            };
        };
        let days = |d: Date| (d - as_of).get_days() as i64;
        let (status, days_left, message) = if as_of < release.released {
            (
                SupportStatus::Unreleased,
                None,
                format!(
                    "{minor} is not released yet on {as_of} (expected {})",
                    release.released
                ),
            )
        } else if as_of <= release.end_of_standard_support {
            let left = days(release.end_of_life);
            (
                SupportStatus::Supported,
                Some(left),
                format!(
                    "{minor} is supported: standard support until {}, end of life {} ({left} days left)",
                    release.end_of_standard_support, release.end_of_life
                ),
            )
        } else if as_of <= release.end_of_life {
            let left = days(release.end_of_life);
            (
                SupportStatus::MaintenanceMode,
                Some(left),
                format!(
                    "{minor} is in maintenance mode (critical fixes only) until its end of life on {} ({left} days left)",
                    release.end_of_life
                ),
            )
        } else {
            (
                SupportStatus::EndOfLife,
                Some(days(release.end_of_life)),
                format!(
                    "{minor} reached end of life on {} ({} days ago): no more patches",
                    release.end_of_life,
                    -days(release.end_of_life)
                ),
            )
        };
        let mut message = message;
        if let (Some(n), Some(behind)) = (newest, minors_behind)
            && behind > 0
        {
            message.push_str(&format!(
                "; the newest minor is {n} ({behind} {} ahead)",
                if behind == 1 { "minor" } else { "minors" }
            ));
        }
        if release.estimated {
            message.push_str(" [dates partly estimated]");
        }
        Support {
            minor,
            as_of,
            status,
            released: Some(release.released),
            end_of_standard_support: Some(release.end_of_standard_support),
            end_of_life: Some(release.end_of_life),
            days_left,
            newest_minor: newest,
            minors_behind,
            estimated: release.estimated,
            message,
        }
    }

    fn span(&self) -> String {
        match (self.releases.first(), self.releases.last()) {
            (Some(a), Some(b)) => format!("{} to {}", a.minor, b.minor),
            _ => "nothing".into(),
        }
    }
}

/// Where a minor stands in its support life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SupportStatus {
    Supported,
    MaintenanceMode,
    EndOfLife,
    Unreleased,
    NotInCalendar,
}

impl fmt::Display for SupportStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SupportStatus::Supported => "supported",
            SupportStatus::MaintenanceMode => "maintenance-mode",
            SupportStatus::EndOfLife => "end-of-life",
            SupportStatus::Unreleased => "unreleased",
            SupportStatus::NotInCalendar => "not-in-calendar",
        })
    }
}

/// The support window of one minor on one day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Support {
    pub minor: MinorVersion,
    pub as_of: Date,
    pub status: SupportStatus,
    pub released: Option<Date>,
    pub end_of_standard_support: Option<Date>,
    pub end_of_life: Option<Date>,
    /// Days until end of life (negative once past it).
    pub days_left: Option<i64>,
    /// The newest minor released by `as_of`.
    pub newest_minor: Option<MinorVersion>,
    pub minors_behind: Option<i64>,
    /// Whether the dates used were partly derived by rule.
    pub estimated: bool,
    pub message: String,
}

impl Support {
    /// True once patches have stopped (or the line is unknown).
    pub fn is_end_of_life(&self) -> bool {
        self.status == SupportStatus::EndOfLife
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn m(minor: u64) -> MinorVersion {
        MinorVersion::new(1, minor)
    }

    #[test]
    fn embedded_calendar_covers_1_19_to_1_38_in_order() {
        let cal = Calendar::embedded();
        let minors: Vec<u64> = cal.releases.iter().map(|r| r.minor.minor).collect();
        assert_eq!(minors, (19..=38).collect::<Vec<_>>());
        for pair in cal.releases.windows(2) {
            assert!(pair[0].released < pair[1].released, "{:?}", pair[1].minor);
        }
        // Every derived field is declared, and declaring one marks the entry estimated.
        for r in &cal.releases {
            assert_eq!(r.estimated, !r.derived.is_empty(), "{}", r.minor);
            for f in &r.derived {
                assert!(
                    ["released", "end_of_standard_support", "end_of_life"].contains(&f.as_str()),
                    "{f}"
                );
            }
        }
    }

    #[test]
    fn reference_dates() {
        let cal = Calendar::embedded();
        let eol = |minor| cal.get(m(minor)).unwrap().end_of_life;
        assert_eq!(eol(20), date(2022, 2, 28));
        assert_eq!(eol(25), date(2023, 10, 28));
        assert_eq!(eol(29), date(2025, 2, 28));
        assert_eq!(eol(31), date(2025, 10, 28));
        assert_eq!(eol(34), date(2026, 10, 27));
        assert_eq!(
            cal.get(m(34)).unwrap().end_of_standard_support,
            date(2026, 8, 27)
        );
        assert_eq!(
            cal.get(m(35)).unwrap().end_of_standard_support,
            date(2026, 12, 28)
        );
        assert_eq!(cal.get(m(28)).unwrap().released, date(2023, 8, 15));
        assert!(!cal.get(m(35)).unwrap().estimated);
        assert!(cal.get(m(37)).unwrap().estimated);
        assert_eq!(cal.get(m(38)).unwrap().released, date(2026, 12, 16));
        let before = cal.support(m(38), date(2026, 12, 5));
        assert_eq!(before.status, SupportStatus::Unreleased);
        let after = cal.support(m(38), date(2026, 12, 16));
        assert_eq!(after.status, SupportStatus::Supported);
    }

    #[test]
    fn support_status_edges() {
        let cal = Calendar::embedded();
        // The last day of standard support is still standard support.
        let s = cal.support(m(35), date(2026, 12, 28));
        assert_eq!(s.status, SupportStatus::Supported);
        assert_eq!(s.days_left, Some(62));
        let s = cal.support(m(35), date(2026, 12, 29));
        assert_eq!(s.status, SupportStatus::MaintenanceMode);
        // End of life day is the last supported day.
        let s = cal.support(m(29), date(2025, 2, 28));
        assert_eq!(s.status, SupportStatus::MaintenanceMode);
        assert_eq!(s.days_left, Some(0));
        let s = cal.support(m(29), date(2025, 3, 1));
        assert_eq!(s.status, SupportStatus::EndOfLife);
        assert!(s.is_end_of_life());
        assert!(
            s.message.contains("end of life on 2025-02-28"),
            "{}",
            s.message
        );
        // Newest minor and how far behind.
        let s = cal.support(m(31), date(2026, 1, 10));
        assert_eq!(s.newest_minor, Some(m(35)));
        assert_eq!(s.minors_behind, Some(4));
        assert_eq!(s.status, SupportStatus::EndOfLife);
        // Before release.
        let s = cal.support(m(35), date(2025, 12, 1));
        assert_eq!(s.status, SupportStatus::Unreleased);
        assert_eq!(s.newest_minor, Some(m(34)));
        // Outside the calendar.
        let s = cal.support(m(60), date(2026, 1, 1));
        assert_eq!(s.status, SupportStatus::NotInCalendar);
        assert!(s.message.contains("--calendar"), "{}", s.message);
    }

    #[test]
    fn user_calendars_are_checked() {
        let good = r#"{"releases":[{"minor":"v1.40","released":"2028-04-20","end_of_standard_support":"2029-04-28","end_of_life":"2029-06-28"}]}"#;
        let cal = Calendar::from_json(good).unwrap();
        assert_eq!(
            cal.support(m(40), date(2028, 5, 1)).status,
            SupportStatus::Supported
        );
        let twice = r#"{"releases":[
            {"minor":"v1.40","released":"2028-04-20","end_of_standard_support":"2029-04-28","end_of_life":"2029-06-28"},
            {"minor":"1.40","released":"2028-04-20","end_of_standard_support":"2029-04-28","end_of_life":"2029-06-28"}]}"#;
        assert!(format!("{:#}", Calendar::from_json(twice).unwrap_err()).contains("twice"));
        let backwards = r#"{"releases":[{"minor":"v1.40","released":"2028-04-20","end_of_standard_support":"2027-04-28","end_of_life":"2029-06-28"}]}"#;
        assert!(
            format!("{:#}", Calendar::from_json(backwards).unwrap_err()).contains("out of order")
        );
        assert!(Calendar::from_json("{").is_err());
    }
}
