//! Kubernetes versions as clusters, images and package repositories report them.
//!
//! The API is deliberately small; every plugin uses it:
//!
//! - [`KubeVersion`]: `v1.31.2`, `1.31.2`, `v1.31.2-eks-1a2b3c`, `v1.29.1-gke.1589018`,
//!   `v1.31.2+k3s1`, `v1.32.0-rc.1`. Parse with [`str::parse`] or [`KubeVersion::parse`].
//!   Vendor suffixes are kept (shown back to people) but never change the skew maths.
//! - [`Release`]: a plain `vMAJOR.MINOR.PATCH`, `Copy`, suffix dropped: what an upgrade
//!   targets and compares ([`Release::parse_reported`] reads what a cluster reports).
//! - [`MinorVersion`]: `(major, minor)`, what the skew policy compares; user input `v1.31`.
//! - [`ImageVersion`]: what an image reference says about its version, including the
//!   digest-only case where the version cannot be known ([`ImageVersion::parse`]).
//! - [`PackageVersion`]: distribution package versions with their revision kept:
//!   `1.31.2-1.1`, `1.29.4-2.1` (pkgs.k8s.io), `1.20.0-00` (the retired apt repo),
//!   `1.31.11-150500.1.1` (RPM).
//!
//! All of them serialise as their display string (`"v1.31.2"`, `"v1.31"`, `"1.31.2-1.1"`).
//! Errors quote the input and name the expected forms.
//!
//! The `semver` crate alone does not fit: it rejects a leading `v`, the old
//! `-00` revisions (leading zero) and `1.31`, and sorts `-eks-…` as a
//! pre-release below the plain version. It is used here only to order real
//! pre-releases (`-alpha.1` < `-beta.0` < `-rc.1`).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version string that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a {what}: {reason} (expected {expected})")]
pub struct VersionError {
    /// The text as given.
    pub input: String,
    /// What was being parsed ("Kubernetes version", "minor version", ...).
    pub what: &'static str,
    /// Why it was rejected.
    pub reason: String,
    /// Examples of accepted input.
    pub expected: &'static str,
}

const KUBE_EXAMPLES: &str = "a form like v1.31.2, 1.31.2, v1.31.2-eks-1a2b3c or v1.31.2+k3s1";
const MINOR_EXAMPLES: &str = "a form like v1.31 or 1.31 (a patch, v1.31.2, is accepted too)";
const IMAGE_EXAMPLES: &str =
    "an image reference like registry.k8s.io/kube-apiserver:v1.31.2 (optionally @sha256:...)";
const PACKAGE_EXAMPLES: &str = "a package version like 1.31.2-1.1, 1.29.4-2.1 or 1.20.0-00";

/// One version number: ASCII digits only (no sign, no spaces), fitting u64.
fn number(
    p: &str,
    input: &str,
    what: &'static str,
    expected: &'static str,
) -> Result<u64, VersionError> {
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(error(
            input,
            what,
            format!("{p:?} is not a number"),
            expected,
        ));
    }
    p.parse()
        .map_err(|_| error(input, what, format!("{p:?} is too large"), expected))
}

fn error(
    input: &str,
    what: &'static str,
    reason: impl Into<String>,
    expected: &'static str,
) -> VersionError {
    VersionError {
        input: input.to_string(),
        what,
        reason: reason.into(),
        expected,
    }
}

/// A Kubernetes release version, as `/version`, `nodeInfo.kubeletVersion`
/// and image tags report it.
///
/// Ordering is by `major.minor.patch`, then pre-releases (`-alpha`, `-beta`,
/// `-rc`) sort below the release, then the suffix text. Vendor suffixes
/// (`-eks-…`, `-gke.…`, `+k3s1`) are builds of that release, not pre-releases.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeVersion {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    /// Everything after `major.minor.patch`, with its leading `-` or `+`
    /// (`"-eks-1a2b3c"`, `"+k3s1"`, `"-rc.1"`); empty when there is none.
    pub suffix: String,
}

impl KubeVersion {
    /// A plain `major.minor.patch` version.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            suffix: String::new(),
        }
    }

    /// Parses `v1.31.2`, `1.31.2`, `v1.31.2-eks-1a2b3c`, `v1.29.1-gke.1589018`, `v1.31.2+k3s1`.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let what = "Kubernetes version";
        let text = input.trim();
        let body = text.strip_prefix(['v', 'V']).unwrap_or(text);
        if body.is_empty() {
            return Err(error(input, what, "it is empty", KUBE_EXAMPLES));
        }
        let end = body.find(['-', '+']).unwrap_or(body.len());
        let (numbers, suffix) = body.split_at(end);
        let parts: Vec<&str> = numbers.split('.').collect();
        if parts.len() != 3 {
            let reason = if parts.len() == 2 {
                "it has no patch number (for a minor version write it where a minor is asked for)"
            } else {
                "it does not have the three numbers major.minor.patch"
            };
            return Err(error(input, what, reason, KUBE_EXAMPLES));
        }
        let number = |p: &str| number(p, input, what, KUBE_EXAMPLES);
        let (major, minor, patch) = (number(parts[0])?, number(parts[1])?, number(parts[2])?);
        if suffix.len() == 1 || suffix.contains(char::is_whitespace) {
            return Err(error(
                input,
                what,
                "the suffix after the version is malformed",
                KUBE_EXAMPLES,
            ));
        }
        Ok(Self {
            major,
            minor,
            patch,
            suffix: suffix.to_string(),
        })
    }

    /// The `(major, minor)` the skew policy compares.
    pub fn minor_version(&self) -> MinorVersion {
        MinorVersion::new(self.major, self.minor)
    }

    /// The version without any suffix (`v1.31.2-eks-1a2b` → `v1.31.2`).
    pub fn release(&self) -> KubeVersion {
        KubeVersion::new(self.major, self.minor, self.patch)
    }

    /// True for upstream pre-releases (`-alpha.N`, `-beta.N`, `-rc.N`).
    pub fn is_prerelease(&self) -> bool {
        ["-alpha", "-beta", "-rc"]
            .iter()
            .any(|p| self.suffix.starts_with(p))
    }
}

impl Ord for KubeVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            // A release sorts above its own pre-releases.
            .then_with(|| other.is_prerelease().cmp(&self.is_prerelease()))
            .then_with(|| {
                if self.is_prerelease() && other.is_prerelease() {
                    let pre = |v: &KubeVersion| semver::Prerelease::new(&v.suffix[1..]).ok();
                    if let (Some(a), Some(b)) = (pre(self), pre(other)) {
                        return a.cmp(&b);
                    }
                }
                self.suffix.cmp(&other.suffix)
            })
    }
}

impl PartialOrd for KubeVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "v{}.{}.{}{}",
            self.major, self.minor, self.patch, self.suffix
        )
    }
}

impl FromStr for KubeVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// A release `vMAJOR.MINOR.PATCH` without any suffix: what an upgrade targets
/// and compares. `Copy`, unlike [`KubeVersion`], which keeps vendor suffixes
/// to show them back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Release {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
}

impl Release {
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
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
        KubeVersion::parse(text).ok().map(|v| Release::from(&v))
    }

    /// The minor line, `v1.34` of `v1.34.1`.
    pub fn minor_line(self) -> MinorVersion {
        MinorVersion::new(self.major, self.minor)
    }

    /// The package version form without the `v`: `1.34.1`.
    pub fn bare(self) -> String {
        format!("{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl From<&KubeVersion> for Release {
    fn from(v: &KubeVersion) -> Self {
        Release::new(v.major, v.minor, v.patch)
    }
}

impl From<Release> for KubeVersion {
    fn from(r: Release) -> Self {
        KubeVersion::new(r.major, r.minor, r.patch)
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for Release {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Release {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Release::parse_reported(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a version vX.Y.Z")))
    }
}

/// A minor release line, `v1.31`: the unit of the skew policy and the
/// support calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MinorVersion {
    pub major: u64,
    pub minor: u64,
}

impl MinorVersion {
    pub const fn new(major: u64, minor: u64) -> Self {
        Self { major, minor }
    }

    /// Parses `v1.31` or `1.31`; a full version (`v1.31.2`) gives its minor.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let what = "minor version";
        let text = input.trim();
        let body = text.strip_prefix(['v', 'V']).unwrap_or(text);
        let parts: Vec<&str> = body.split('.').collect();
        if parts.len() == 2 {
            let number = |p: &str| number(p, input, what, MINOR_EXAMPLES);
            return Ok(Self::new(number(parts[0])?, number(parts[1])?));
        }
        if parts.len() < 2 {
            return Err(error(
                input,
                what,
                "it is not of the form major.minor",
                MINOR_EXAMPLES,
            ));
        }
        KubeVersion::parse(input)
            .map(|v| v.minor_version())
            .map_err(|e| error(input, what, e.reason, MINOR_EXAMPLES))
    }

    /// The minor `n` releases later (negative: earlier), within the same
    /// major; `None` below `vX.0`.
    pub fn offset(self, n: i64) -> Option<MinorVersion> {
        let minor = i64::try_from(self.minor).ok()?.checked_add(n)?;
        u64::try_from(minor).ok().map(|m| Self::new(self.major, m))
    }

    /// How many minors `self` is newer than `other` (negative when older).
    /// Across majors there is no defined skew: `None`.
    pub fn minus(self, other: MinorVersion) -> Option<i64> {
        (self.major == other.major).then(|| self.minor as i64 - other.minor as i64)
    }

    /// The first release of this line, `vX.Y.0`.
    pub fn first_patch(self) -> KubeVersion {
        KubeVersion::new(self.major, self.minor, 0)
    }

    /// The next minor, `v1.32` after `v1.31`.
    pub fn next(self) -> MinorVersion {
        Self::new(self.major, self.minor + 1)
    }
}

impl fmt::Display for MinorVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}", self.major, self.minor)
    }
}

impl FromStr for MinorVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<&KubeVersion> for MinorVersion {
    fn from(v: &KubeVersion) -> Self {
        v.minor_version()
    }
}

/// What an image reference says about the version it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImageVersion {
    /// `registry.k8s.io/kube-apiserver:v1.31.2` (optionally pinned `@sha256:…`).
    Tagged {
        version: KubeVersion,
        digest: Option<String>,
    },
    /// `registry.k8s.io/kube-apiserver@sha256:…`: pinned by digest only, so the
    /// version cannot be read from the reference.
    DigestOnly { digest: String },
}

impl ImageVersion {
    /// Reads the version from an image reference's tag. A digest without a
    /// tag is [`ImageVersion::DigestOnly`]; a missing or non-version tag
    /// (`:latest`) is an error quoting the reference.
    pub fn parse(reference: &str) -> Result<Self, VersionError> {
        let what = "versioned image reference";
        let text = reference.trim();
        let (name_tag, digest) = match text.split_once('@') {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (text, None),
        };
        // The tag follows the last ':' after the last '/', so a registry port
        // (`host:5000/kube-apiserver`) is not mistaken for one.
        let last_segment = name_tag.rsplit('/').next().unwrap_or(name_tag);
        let tag = last_segment.split_once(':').map(|(_, t)| t);
        match (tag, digest) {
            (Some(tag), digest) => {
                let version = KubeVersion::parse(tag).map_err(|e| {
                    error(
                        reference,
                        what,
                        format!("its tag {tag:?}: {}", e.reason),
                        IMAGE_EXAMPLES,
                    )
                })?;
                Ok(ImageVersion::Tagged { version, digest })
            }
            (None, Some(digest)) if !digest.is_empty() => Ok(ImageVersion::DigestOnly { digest }),
            (None, _) => Err(error(
                reference,
                what,
                "it has no tag (an untagged image means :latest, which names no version)",
                IMAGE_EXAMPLES,
            )),
        }
    }

    /// The version, when the reference names one.
    pub fn version(&self) -> Option<&KubeVersion> {
        match self {
            ImageVersion::Tagged { version, .. } => Some(version),
            ImageVersion::DigestOnly { .. } => None,
        }
    }
}

/// A distribution package version: the Kubernetes release plus the
/// packaging revision, kept because installs pin it (`kubeadm=1.31.2-1.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PackageVersion {
    /// The upstream release (`1.31.2`).
    pub version: KubeVersion,
    /// The packaging revision after the first `-` (`1.1`, `2.1`, `00`,
    /// `150500.1.1`); `None` when the string has none.
    pub revision: Option<String>,
}

impl PackageVersion {
    /// Parses `1.31.2-1.1`, `1.29.4-2.1`, `1.20.0-00`, `1.20.0-0`, `1.31.11-150500.1.1`,
    /// or a bare `1.31.2`. A Debian epoch (`1:1.31.2-1.1`) is accepted and dropped.
    pub fn parse(input: &str) -> Result<Self, VersionError> {
        let what = "Kubernetes package version";
        let text = input.trim();
        let text = match text.split_once(':') {
            Some((epoch, rest))
                if !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_digit()) =>
            {
                rest
            }
            _ => text,
        };
        let (upstream, revision) = match text.split_once('-') {
            Some((u, r)) => (u, Some(r)),
            None => (text, None),
        };
        if let Some(r) = revision
            && (r.is_empty()
                || !r
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'~'))
        {
            return Err(error(
                input,
                what,
                format!("the revision {r:?} is malformed"),
                PACKAGE_EXAMPLES,
            ));
        }
        if upstream.starts_with(['v', 'V']) {
            return Err(error(
                input,
                what,
                "package versions have no leading v",
                PACKAGE_EXAMPLES,
            ));
        }
        let version = KubeVersion::parse(upstream)
            .map_err(|e| error(input, what, e.reason, PACKAGE_EXAMPLES))?;
        if !version.suffix.is_empty() {
            return Err(error(
                input,
                what,
                "unexpected build suffix",
                PACKAGE_EXAMPLES,
            ));
        }
        Ok(Self {
            version,
            revision: revision.map(str::to_string),
        })
    }
}

impl PackageVersion {
    /// The release without the packaging revision.
    pub fn release(&self) -> Release {
        Release::from(&self.version)
    }
}

impl Ord for PackageVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.version.cmp(&other.version).then_with(|| {
            // Revisions compare numerically part by part ("2.1" > "1.1", "10.1" > "9.1").
            let parts = |r: &Option<String>| -> Vec<u64> {
                r.as_deref()
                    .unwrap_or("")
                    .split('.')
                    .filter_map(|p| p.parse().ok())
                    .collect()
            };
            parts(&self.revision).cmp(&parts(&other.revision))
        })
    }
}

impl PartialOrd for PackageVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for PackageVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = &self.version;
        write!(f, "{}.{}.{}", v.major, v.minor, v.patch)?;
        if let Some(r) = &self.revision {
            write!(f, "-{r}")?;
        }
        Ok(())
    }
}

impl FromStr for PackageVersion {
    type Err = VersionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

macro_rules! serde_as_string {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
serde_as_string!(KubeVersion);
serde_as_string!(MinorVersion);
serde_as_string!(PackageVersion);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reported_releases_drop_the_suffix() {
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

    fn v(s: &str) -> KubeVersion {
        s.parse().unwrap()
    }

    #[test]
    fn parses_what_clusters_report() {
        for (input, major, minor, patch, suffix) in [
            ("v1.31.2", 1, 31, 2, ""),
            ("1.31.2", 1, 31, 2, ""),
            ("v1.31.2-eks-1a2b3c", 1, 31, 2, "-eks-1a2b3c"),
            ("v1.29.1-gke.1589018", 1, 29, 1, "-gke.1589018"),
            ("v1.31.2+k3s1", 1, 31, 2, "+k3s1"),
            ("v1.30.0-rc.1", 1, 30, 0, "-rc.1"),
            (" v1.28.15 ", 1, 28, 15, ""),
        ] {
            let parsed = v(input);
            assert_eq!(
                (
                    parsed.major,
                    parsed.minor,
                    parsed.patch,
                    parsed.suffix.as_str()
                ),
                (major, minor, patch, suffix),
                "{input}"
            );
            assert_eq!(parsed.minor_version(), MinorVersion::new(1, minor));
        }
        assert_eq!(v("1.31.2+k3s1").to_string(), "v1.31.2+k3s1");
        assert_eq!(v("v1.31.2-eks-1a2b3c").release(), v("v1.31.2"));
    }

    #[test]
    fn garbage_is_rejected_with_the_input_quoted() {
        for bad in [
            "", "v", "latest", "1.31", "v1.x.2", "1.31.2.4", "1.31.2-", "v-1.31.2", "1..2",
        ] {
            let err = KubeVersion::parse(bad).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(&format!("{bad:?}")), "{text}");
            assert!(text.contains("expected"), "{text}");
        }
        assert!(
            KubeVersion::parse("1.31")
                .unwrap_err()
                .to_string()
                .contains("no patch number")
        );
    }

    #[test]
    fn ordering() {
        assert!(v("v1.31.2") < v("v1.31.10"));
        assert!(v("v1.9.0") < v("v1.10.0"));
        assert!(v("v1.32.0-rc.1") < v("v1.32.0"));
        assert!(v("v1.32.0-alpha.2") < v("v1.32.0-beta.0"));
        assert!(v("v1.32.0-beta.0") < v("v1.32.0-rc.0"));
        assert!(v("v1.32.0-rc.2") < v("v1.32.0-rc.10"));
        // Vendor builds are not pre-releases: they do not sort below the release.
        assert!(v("v1.31.2-eks-1a2b3c") > v("v1.31.2"));
        assert!(v("v1.31.2+k3s1") > v("v1.31.1"));
        assert!(v("v1.31.2-eks-1a2b3c") < v("v1.31.3"));
    }

    #[test]
    fn minor_versions() {
        let m: MinorVersion = "v1.31".parse().unwrap();
        assert_eq!(m, MinorVersion::new(1, 31));
        assert_eq!("1.31".parse::<MinorVersion>().unwrap(), m);
        assert_eq!("v1.31.7".parse::<MinorVersion>().unwrap(), m);
        assert_eq!(m.to_string(), "v1.31");
        assert_eq!(m.offset(-3), Some(MinorVersion::new(1, 28)));
        assert_eq!(MinorVersion::new(1, 1).offset(-3), None);
        assert_eq!(m.minus(MinorVersion::new(1, 28)), Some(3));
        assert_eq!(m.minus(MinorVersion::new(2, 0)), None);
        assert_eq!(m.next(), MinorVersion::new(1, 32));
        assert_eq!(m.first_patch(), v("v1.31.0"));
        let err = "one.two".parse::<MinorVersion>().unwrap_err().to_string();
        assert!(
            err.contains("\"one.two\"") && err.contains("v1.31"),
            "{err}"
        );
        let err = "v1".parse::<MinorVersion>().unwrap_err().to_string();
        assert!(err.contains("not of the form major.minor"), "{err}");
    }

    #[test]
    fn image_references() {
        let tagged = |r: &str| ImageVersion::parse(r).unwrap().version().cloned();
        assert_eq!(
            tagged("registry.k8s.io/kube-apiserver:v1.31.2"),
            Some(v("v1.31.2"))
        );
        assert_eq!(
            tagged("registry.k8s.io/kube-apiserver:v1.31.2@sha256:0123abcd"),
            Some(v("v1.31.2"))
        );
        assert_eq!(
            tagged("localhost:5000/kube-proxy:v1.30.1"),
            Some(v("v1.30.1"))
        );
        assert_eq!(
            tagged(
                "602401143452.dkr.ecr.us-west-2.amazonaws.com/eks/kube-proxy:v1.29.0-eksbuild.1"
            ),
            Some(v("v1.29.0-eksbuild.1"))
        );
        assert_eq!(
            ImageVersion::parse("registry.k8s.io/kube-apiserver@sha256:0123abcd").unwrap(),
            ImageVersion::DigestOnly {
                digest: "sha256:0123abcd".into()
            }
        );
        let err = ImageVersion::parse("registry.k8s.io/kube-apiserver:latest")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"registry.k8s.io/kube-apiserver:latest\""),
            "{err}"
        );
        let err = ImageVersion::parse("localhost:5000/kube-apiserver")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no tag"), "{err}");
    }

    #[test]
    fn package_versions() {
        for (input, version, revision) in [
            ("1.31.2-1.1", "v1.31.2", Some("1.1")),
            ("1.29.4-2.1", "v1.29.4", Some("2.1")),
            ("1.20.0-00", "v1.20.0", Some("00")),
            ("1.20.0-0", "v1.20.0", Some("0")),
            ("1.31.11-150500.1.1", "v1.31.11", Some("150500.1.1")),
            ("1.31.2", "v1.31.2", None),
            ("1:1.31.2-1.1", "v1.31.2", Some("1.1")),
        ] {
            let p = PackageVersion::parse(input).unwrap();
            assert_eq!(p.version, v(version), "{input}");
            assert_eq!(p.revision.as_deref(), revision, "{input}");
        }
        assert_eq!(
            PackageVersion::parse("0:1.34.1-1.1").unwrap().release(),
            Release::new(1, 34, 1)
        );
        assert_eq!(
            PackageVersion::parse("1.20.0-00").unwrap().to_string(),
            "1.20.0-00"
        );
        assert!(
            PackageVersion::parse("1.29.4-2.1").unwrap()
                > PackageVersion::parse("1.29.4-1.1").unwrap()
        );
        assert!(
            PackageVersion::parse("1.29.5-1.1").unwrap()
                > PackageVersion::parse("1.29.4-2.1").unwrap()
        );
        for bad in ["v1.31.2-1.1", "1.31-1.1", "1.31.2-", "kubeadm"] {
            let err = PackageVersion::parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn serde_round_trip() {
        let json = serde_json::to_string(&v("v1.31.2+k3s1")).unwrap();
        assert_eq!(json, "\"v1.31.2+k3s1\"");
        let back: KubeVersion = serde_json::from_str(&json).unwrap();
        assert_eq!(back, v("v1.31.2+k3s1"));
        let m: MinorVersion = serde_json::from_str("\"v1.30\"").unwrap();
        assert_eq!(m, MinorVersion::new(1, 30));
        assert!(serde_json::from_str::<KubeVersion>("\"nope\"").is_err());
    }
}
