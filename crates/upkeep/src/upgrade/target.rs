//! The versions an upgrade deals in: the `--to` target, the kubelet and image
//! versions a cluster reports, and package versions with their revisions.
//!
//! Parsing is [`crate::version`]'s (one rule for the whole crate); these are
//! the small `Copy` projections the upgrade plan carries: major, minor and
//! patch, with vendor suffixes (`+k3s1`, `-eks-...`) dropped.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A release version `vMAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Release {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Self {
        Self {
            major,
            minor,
            patch,
        }
    }

    /// Parses what a cluster reports: `v1.33.5`, `1.33.5`, `v1.33.5+k3s1`,
    /// `v1.33.5-eks-1a2b`, an image tag. Pre-release builds are not upgrade
    /// targets, so any suffix is dropped.
    pub fn parse_reported(text: &str) -> Option<Release> {
        crate::version::KubeVersion::parse(text)
            .ok()
            .and_then(|v| Release::from_kube(&v))
    }

    fn from_kube(v: &crate::version::KubeVersion) -> Option<Release> {
        Some(Release::new(
            u32::try_from(v.major).ok()?,
            u32::try_from(v.minor).ok()?,
            u32::try_from(v.patch).ok()?,
        ))
    }

    pub fn minor_line(self) -> Minor {
        Minor {
            major: self.major,
            minor: self.minor,
        }
    }

    /// The package version form without the `v`: `1.34.1`.
    pub fn bare(self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Release {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Release::parse_reported(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a version vX.Y.Z")))
    }
}

/// A minor line `v1.34`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Minor {
    pub major: u32,
    pub minor: u32,
}

impl Minor {
    /// How many minors `self` is above `other` (negative when below).
    pub fn minus(self, other: Minor) -> i64 {
        if self.major != other.major {
            // Kubernetes has had one major; treat another as far away.
            return (i64::from(self.major) - i64::from(other.major)) * 1000;
        }
        i64::from(self.minor) - i64::from(other.minor)
    }
}

impl fmt::Display for Minor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

impl Serialize for Minor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// What `--to` asked for: an exact release, or a minor line meaning the
/// newest patch the node's repository offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    Exact(Release),
    NewestOf(Minor),
}

impl TargetSpec {
    /// Parses `--to`: `v1.34.1`, `1.34.1`, `v1.34`, `1.34`. Nothing else: no
    /// suffixes, no leading zeros, no spaces, because the value ends up in
    /// commands run as root on the node.
    pub fn parse(text: &str) -> Result<TargetSpec, String> {
        use crate::version::{KubeVersion, MinorVersion};
        let bad = || {
            format!(
                "--to {text:?} is not a version: use vMAJOR.MINOR.PATCH (v1.34.1) or vMAJOR.MINOR (v1.34, the newest patch the node's repository offers)"
            )
        };
        let body = text.strip_prefix('v').unwrap_or(text);
        // Only the canonical form is accepted: no suffix, no leading zero, no
        // space, because the value ends up in commands run as root on the node.
        let spec = match body.split('.').count() {
            2 => MinorVersion::parse(text).ok().and_then(|m| {
                Some(TargetSpec::NewestOf(Minor {
                    major: u32::try_from(m.major).ok()?,
                    minor: u32::try_from(m.minor).ok()?,
                }))
            }),
            3 => KubeVersion::parse(text)
                .ok()
                .filter(|v| v.suffix.is_empty())
                .and_then(|v| Release::from_kube(&v))
                .map(TargetSpec::Exact),
            _ => None,
        }
        .ok_or_else(bad)?;
        let canonical = match spec {
            TargetSpec::Exact(r) => r.bare(),
            TargetSpec::NewestOf(m) => format!("{}.{}", m.major, m.minor),
        };
        if canonical != body {
            return Err(bad());
        }
        Ok(spec)
    }

    pub fn minor_line(self) -> Minor {
        match self {
            TargetSpec::Exact(r) => r.minor_line(),
            TargetSpec::NewestOf(m) => m,
        }
    }
}

impl fmt::Display for TargetSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetSpec::Exact(r) => r.fmt(f),
            TargetSpec::NewestOf(m) => m.fmt(f),
        }
    }
}

/// A package version as a repository lists it: `1.34.1-1.1` (deb),
/// `1.34.1-150500.1.1` (rpm), possibly with an epoch `0:`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageVersion {
    /// The full string the repository printed.
    pub text: String,
    pub release: Release,
    /// The packaging revision after the first `-` (never assumed to be `1.1`).
    pub revision: String,
}

impl PackageVersion {
    pub fn parse(text: &str) -> Option<PackageVersion> {
        let parsed = crate::version::PackageVersion::parse(text).ok()?;
        Some(PackageVersion {
            text: text.trim().to_string(),
            release: Release::from_kube(&parsed.version)?,
            revision: parsed.revision?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_versions() {
        assert_eq!(
            Release::parse_reported("v1.33.5"),
            Some(Release::new(1, 33, 5))
        );
        assert_eq!(
            Release::parse_reported("v1.31.2+k3s1"),
            Some(Release::new(1, 31, 2))
        );
        assert_eq!(
            Release::parse_reported("v1.31.2-eks-1a2b"),
            Some(Release::new(1, 31, 2))
        );
        assert_eq!(Release::parse_reported("v1.31"), None);
        assert_eq!(Release::parse_reported("latest"), None);
    }

    #[test]
    fn targets() {
        assert_eq!(
            TargetSpec::parse("v1.34.1"),
            Ok(TargetSpec::Exact(Release::new(1, 34, 1)))
        );
        assert_eq!(
            TargetSpec::parse("1.34"),
            Ok(TargetSpec::NewestOf(Minor {
                major: 1,
                minor: 34
            }))
        );
        for bad in [
            "",
            "v",
            "v1",
            "v1.34.1.2",
            "v1.34.1-rc.0",
            "v1.34;rm",
            "v01.34",
            "1.34.x",
            " 1.34",
        ] {
            let err = TargetSpec::parse(bad).unwrap_err();
            assert!(err.contains("vMAJOR.MINOR.PATCH"), "{bad}: {err}");
        }
    }

    #[test]
    fn package_versions_keep_their_revision() {
        let deb = PackageVersion::parse("1.29.4-2.1").unwrap();
        assert_eq!(deb.release, Release::new(1, 29, 4));
        assert_eq!(deb.revision, "2.1");
        let rpm = PackageVersion::parse("1.31.11-150500.1.1").unwrap();
        assert_eq!(rpm.revision, "150500.1.1");
        let epoch = PackageVersion::parse("0:1.34.1-1.1").unwrap();
        assert_eq!(epoch.release, Release::new(1, 34, 1));
        assert!(PackageVersion::parse("1.34.1").is_none());
        assert!(PackageVersion::parse("1.34.1-").is_none());
    }
}
