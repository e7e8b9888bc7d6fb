//! Versions as a kubeadm node sees them: Kubernetes release versions (`v1.34.1`) and
//! package versions with a revision (`1.34.1-1.1`, `1.34.1-150500.1.1`), plus the shell-style
//! globs that apt and dnf accept (`1.34.1-*`).

use std::cmp::Ordering;
use std::fmt;

/// A Kubernetes release version: `v1.34.1`, `v1.35.0-rc.1` (k8s.io/apimachinery
/// pkg/util/version semantics, the parts kubeadm's policy uses).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KubeVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// Pre-release part without the dash ("rc.1"); empty for a release.
    pub pre: String,
}

impl KubeVersion {
    /// Parse `v1.34.1`, `1.34.1`, `v1.34.1-rc.1`. Build metadata (`+k3s1`) is ignored.
    pub fn parse(s: &str) -> Option<KubeVersion> {
        let s = s.trim();
        let s = s.strip_prefix('v').unwrap_or(s);
        let s = s.split('+').next()?;
        let (core, pre) = match s.split_once('-') {
            Some((c, p)) => (c, p.to_string()),
            None => (s, String::new()),
        };
        let mut it = core.split('.');
        let major = it.next()?.parse().ok()?;
        let minor = it.next()?.parse().ok()?;
        let patch = it.next()?.parse().ok()?;
        if it.next().is_some() {
            return None;
        }
        Some(KubeVersion {
            major,
            minor,
            patch,
            pre,
        })
    }

    pub fn new(major: u32, minor: u32, patch: u32) -> Self {
        KubeVersion {
            major,
            minor,
            patch,
            pre: String::new(),
        }
    }

    /// `v1.34.1`
    pub fn tag(&self) -> String {
        self.to_string()
    }

    /// `1.34.1` (no leading v).
    pub fn plain(&self) -> String {
        self.to_string().trim_start_matches('v').to_string()
    }

    /// `v1.34`
    pub fn minor_tag(&self) -> String {
        format!("v{}.{}", self.major, self.minor)
    }

    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre)?;
        }
        Ok(())
    }
}

impl PartialOrd for KubeVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KubeVersion {
    // Semantic-version order: a pre-release sorts before its release.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
    }
}

/// A package version: upstream version plus revision, `1.34.1-1.1` (deb) or
/// `1.34.1-150500.1.1` (rpm release).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PkgVersion {
    pub upstream: KubeVersion,
    pub revision: String,
}

impl PkgVersion {
    /// Parse `1.34.1-1.1`. The revision is required (packages always carry one).
    pub fn parse(s: &str) -> Option<PkgVersion> {
        let s = s.trim();
        // The revision starts at the first dash after the numeric core; pkgs.k8s.io
        // pre-releases look like 1.35.0~rc.1-1.1 in Debian, so split on the last dash.
        let (up, rev) = s.rsplit_once('-')?;
        if rev.is_empty() || !rev.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
            return None;
        }
        let upstream = KubeVersion::parse(&up.replace('~', "-"))?;
        Some(PkgVersion {
            upstream,
            revision: rev.to_string(),
        })
    }

    pub fn new(upstream: KubeVersion, revision: &str) -> Self {
        PkgVersion {
            upstream,
            revision: revision.to_string(),
        }
    }
}

impl fmt::Display for PkgVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let up = self.upstream.plain().replacen('-', "~", 1);
        write!(f, "{up}-{}", self.revision)
    }
}

impl PartialOrd for PkgVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PkgVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        self.upstream
            .cmp(&other.upstream)
            .then_with(|| cmp_revision(&self.revision, &other.revision))
    }
}

/// Compare dotted numeric revisions ("1.1" < "2.1" < "150500.1.1"), falling back to text.
fn cmp_revision(a: &str, b: &str) -> Ordering {
    let pa: Vec<&str> = a.split('.').collect();
    let pb: Vec<&str> = b.split('.').collect();
    for (x, y) in pa.iter().zip(pb.iter()) {
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    pa.len().cmp(&pb.len())
}

/// Shell-style glob (`*`, `?`, `[...]` classes) as apt and dnf apply them to versions and
/// package specs (both use fnmatch(3)).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn rec(p: &[char], t: &[char]) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some('*') => (0..=t.len()).any(|i| rec(&p[1..], &t[i..])),
            Some('?') => !t.is_empty() && rec(&p[1..], &t[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(1).position(|&c| c == ']').map(|i| i + 1) else {
                    return t.first() == Some(&'[') && rec(&p[1..], &t[1..]);
                };
                let Some(&c) = t.first() else { return false };
                let class = &p[1..end];
                let (neg, class) = match class.first() {
                    Some('!') | Some('^') => (true, &class[1..]),
                    _ => (false, class),
                };
                let mut hit = false;
                let mut i = 0;
                while i < class.len() {
                    if i + 2 < class.len() && class[i + 1] == '-' {
                        hit |= class[i] <= c && c <= class[i + 2];
                        i += 3;
                    } else {
                        hit |= class[i] == c;
                        i += 1;
                    }
                }
                hit != neg && rec(&p[end + 1..], &t[1..])
            }
            Some(&c) => t.first() == Some(&c) && rec(&p[1..], &t[1..]),
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    rec(&p, &t)
}

/// Whether a string carries glob characters.
pub fn is_glob(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_versions_parse_and_order() {
        let v = KubeVersion::parse("v1.34.1").unwrap();
        assert_eq!((v.major, v.minor, v.patch), (1, 34, 1));
        assert_eq!(v.tag(), "v1.34.1");
        assert_eq!(KubeVersion::parse("1.34.1").unwrap(), v);
        assert_eq!(KubeVersion::parse("v1.34.1+k3s1").unwrap(), v);
        let rc = KubeVersion::parse("v1.35.0-rc.1").unwrap();
        assert!(rc.is_prerelease());
        assert!(rc < KubeVersion::parse("v1.35.0").unwrap());
        assert!(rc > KubeVersion::parse("v1.34.9").unwrap());
        assert!(KubeVersion::parse("v1.34").is_none());
        assert!(KubeVersion::parse("latest").is_none());
    }

    #[test]
    fn package_versions_keep_their_revision() {
        let p = PkgVersion::parse("1.34.1-1.1").unwrap();
        assert_eq!(p.upstream, KubeVersion::new(1, 34, 1));
        assert_eq!(p.revision, "1.1");
        assert_eq!(p.to_string(), "1.34.1-1.1");
        let r = PkgVersion::parse("1.31.11-150500.1.1").unwrap();
        assert_eq!(r.to_string(), "1.31.11-150500.1.1");
        assert!(PkgVersion::parse("1.34.1-2.1").unwrap() > p);
        assert!(
            PkgVersion::parse("1.34.2-1.1").unwrap() > PkgVersion::parse("1.34.1-2.1").unwrap()
        );
        assert!(PkgVersion::parse("1.34.1").is_none());
    }

    #[test]
    fn globs_match_like_fnmatch() {
        assert!(glob_match("1.34.1-*", "1.34.1-1.1"));
        assert!(glob_match("1.34.1-*", "1.34.1-150500.1.1"));
        assert!(!glob_match("1.34.1-*", "1.34.10-1.1"));
        assert!(glob_match("1.34.*", "1.34.10-1.1"));
        assert!(glob_match("kubeadm-1.34.?-*", "kubeadm-1.34.2-1.1"));
        assert!(glob_match("1.3[0-4].1-*", "1.33.1-1.1"));
        assert!(!glob_match("1.3[!3].1-*", "1.33.1-1.1"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }
}
