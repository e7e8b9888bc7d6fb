//! The `--to` target of an upgrade. The versions themselves (releases,
//! minor lines, package versions) are [`crate::version`]'s.

use std::fmt;

use crate::version::{KubeVersion, MinorVersion, Release};

/// What `--to` asked for: an exact release, or a minor line meaning the
/// newest patch the node's repository offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetSpec {
    Exact(Release),
    NewestOf(MinorVersion),
}

impl TargetSpec {
    /// Parses `--to`: `v1.34.1`, `1.34.1`, `v1.34`, `1.34`. Nothing else: no
    /// suffixes, no leading zeros, no spaces, because the value ends up in
    /// commands run as root on the node.
    pub fn parse(text: &str) -> Result<TargetSpec, String> {
        let bad = || {
            format!(
                "--to {text:?} is not a version: use vMAJOR.MINOR.PATCH (v1.34.1) or vMAJOR.MINOR (v1.34, the newest patch the node's repository offers)"
            )
        };
        let body = text.strip_prefix('v').unwrap_or(text);
        // Only the canonical form is accepted: no suffix, no leading zero, no
        // space, because the value ends up in commands run as root on the node.
        let spec = match body.split('.').count() {
            2 => MinorVersion::parse(text).ok().map(TargetSpec::NewestOf),
            3 => KubeVersion::parse(text)
                .ok()
                .filter(|v| v.suffix.is_empty())
                .map(|v| TargetSpec::Exact(Release::from(&v))),
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

    pub fn minor_line(self) -> MinorVersion {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            TargetSpec::parse("v1.34.1"),
            Ok(TargetSpec::Exact(Release::new(1, 34, 1)))
        );
        assert_eq!(
            TargetSpec::parse("1.34"),
            Ok(TargetSpec::NewestOf(MinorVersion::new(1, 34)))
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
}
