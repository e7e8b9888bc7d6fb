//! The pkgs.k8s.io package repositories a simulated node can use: one repository per
//! Kubernetes minor (skew-and-upgrade reference §4), configured by a file on the node, each
//! publishing some patch versions of kubeadm, kubelet and kubectl with their revisions.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::version::{KubeVersion, PkgVersion};

/// The packages the Kubernetes repositories publish (and the only ones the lab models).
pub const K8S_PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];

/// The repository id in `/etc/yum.repos.d/kubernetes.repo` (`--disableexcludes=kubernetes`).
pub const YUM_REPO_ID: &str = "kubernetes";

pub const APT_LIST_PATH: &str = "/etc/apt/sources.list.d/kubernetes.list";
pub const YUM_REPO_PATH: &str = "/etc/yum.repos.d/kubernetes.repo";

/// Package format of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PkgFormat {
    Deb,
    Rpm,
}

/// A Kubernetes minor: (major, minor).
pub type Minor = (u32, u32);

/// The base URL of a minor's repository, as the upstream install docs write it.
pub fn repo_url(minor: Minor, format: PkgFormat) -> String {
    let kind = match format {
        PkgFormat::Deb => "deb",
        PkgFormat::Rpm => "rpm",
    };
    format!(
        "https://pkgs.k8s.io/core:/stable:/v{}.{}/{kind}/",
        minor.0, minor.1
    )
}

/// `/etc/apt/sources.list.d/kubernetes.list` for a minor (kubernetes/website
/// content/en/docs/setup/production-environment/tools/kubeadm/install-kubeadm.md).
pub fn apt_list_text(minor: Minor) -> String {
    format!(
        "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] {} /\n",
        repo_url(minor, PkgFormat::Deb)
    )
}

/// `/etc/yum.repos.d/kubernetes.repo` for a minor (same upstream page, the RPM tab).
pub fn yum_repo_text(minor: Minor) -> String {
    let url = repo_url(minor, PkgFormat::Rpm);
    format!(
        "[{YUM_REPO_ID}]\nname=Kubernetes\nbaseurl={url}\nenabled=1\ngpgcheck=1\n\
         gpgkey={url}repodata/repomd.xml.key\nexclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
    )
}

/// Find `/core:/stable:/vX.Y/<kind>` in a URL and return the minor.
fn minor_in_url(url: &str, kind: &str) -> Option<Minor> {
    let rest = &url[url.find("/core:/stable:/v")? + "/core:/stable:/v".len()..];
    let (ver, tail) = rest.split_once('/')?;
    if !tail.starts_with(kind) {
        return None;
    }
    let (maj, min) = ver.split_once('.')?;
    Some((maj.parse().ok()?, min.parse().ok()?))
}

/// The minor an apt sources list points at: the first active `deb` line naming a
/// pkgs.k8s.io-style stable repository. `None` when there is none (or the file is garbled).
pub fn parse_apt_list(text: &str) -> Option<Minor> {
    text.lines()
        .map(str::trim)
        .filter(|l| l.starts_with("deb ") || l.starts_with("deb\t"))
        .find_map(|l| l.split_whitespace().find_map(|w| minor_in_url(w, "deb")))
}

/// A parsed yum/dnf repository section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YumRepo {
    pub id: String,
    pub minor: Option<Minor>,
    pub enabled: bool,
    pub exclude: Vec<String>,
}

/// Parse the sections of a `.repo` file.
pub fn parse_yum_repo(text: &str) -> Vec<YumRepo> {
    let mut out: Vec<YumRepo> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(id) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            out.push(YumRepo {
                id: id.to_string(),
                minor: None,
                enabled: true,
                exclude: Vec::new(),
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        let Some((k, v)) = line.split_once('=') else {
            continue;
        };
        match k.trim() {
            "baseurl" => cur.minor = minor_in_url(v.trim(), "rpm"),
            "enabled" => cur.enabled = v.trim() != "0",
            // dnf accepts space- or comma-separated globs (dnf.conf(5) "exclude").
            "exclude" | "excludepkgs" => {
                cur.exclude = v
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            _ => {}
        }
    }
    out
}

/// What one minor's repository publishes, as a scenario declares it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RepoSpec {
    /// `v1.34` or `1.34`.
    pub minor: String,
    /// Package versions, `1.34.1-1.1`, or `1.34.1` for the default revision. Deb revisions;
    /// RPM revisions are derived (`1.1` becomes `150500.1.1`, as the openSUSE build service
    /// names them).
    pub versions: Vec<String>,
}

/// Every repository the lab's nodes can reach.
#[derive(Debug, Clone, Default)]
pub struct Repos {
    declared: BTreeMap<Minor, Vec<(KubeVersion, String)>>,
}

/// The first minor with a pkgs.k8s.io repository (packages exist from v1.24.0 on).
pub const FIRST_MINOR: Minor = (1, 24);

/// Patch releases a minor publishes when no scenario declares it: .0 to .5.
pub const DEFAULT_PATCHES: u32 = 5;

impl Repos {
    /// Repositories from scenario declarations; undeclared minors get defaults.
    pub fn from_specs(specs: &[RepoSpec]) -> Result<Repos, String> {
        let mut repos = Repos::default();
        for s in specs {
            let m = s.minor.trim_start_matches('v');
            let minor = m
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or_else(|| format!("package repository minor {:?}: expected v1.34", s.minor))?;
            let mut list = Vec::new();
            for v in &s.versions {
                let (up, rev) = match PkgVersion::parse(v) {
                    Some(p) => (p.upstream, p.revision),
                    None => (
                        KubeVersion::parse(v).ok_or_else(|| {
                            format!("package version {v:?} in repository {}: expected 1.34.1-1.1 or 1.34.1", s.minor)
                        })?,
                        "1.1".to_string(),
                    ),
                };
                if (up.major, up.minor) != minor {
                    return Err(format!(
                        "package version {v} does not belong to the {} repository",
                        s.minor
                    ));
                }
                list.push((up, rev));
            }
            repos.declared.insert(minor, list);
        }
        Ok(repos)
    }

    /// The versions one minor's repository publishes for a package format, oldest first.
    /// Whether a minor's repository exists: from v1.24 on, and, when a scenario declares
    /// repositories, up to the newest declared minor (later ones are not released yet).
    pub fn exists(&self, minor: Minor) -> bool {
        minor >= FIRST_MINOR && self.declared.keys().max().is_none_or(|max| minor <= *max)
    }

    pub fn versions(&self, minor: Minor, format: PkgFormat) -> Vec<PkgVersion> {
        if !self.exists(minor) {
            return Vec::new();
        }
        let base: Vec<(KubeVersion, String)> = match self.declared.get(&minor) {
            Some(l) => l.clone(),
            // Revisions are not always -1.1 (1.29.4-2.1 exists upstream): the defaults include
            // a -2.1 rebuild so that callers who hard-code "-1.1" find out here.
            None => (0..=DEFAULT_PATCHES)
                .map(|p| {
                    (
                        KubeVersion::new(minor.0, minor.1, p),
                        if p == 2 { "2.1" } else { "1.1" }.to_string(),
                    )
                })
                .collect(),
        };
        let mut out: Vec<PkgVersion> = base
            .into_iter()
            .map(|(up, rev)| {
                let rev = match format {
                    PkgFormat::Deb => rev,
                    PkgFormat::Rpm => format!("150500.{rev}"),
                };
                PkgVersion {
                    upstream: up,
                    revision: rev,
                }
            })
            .collect();
        out.sort();
        out
    }

    /// The revision a package version of `upstream` carries in its repository (used for what
    /// a node has installed when a scenario gives only a kubelet version).
    pub fn revision_for(&self, upstream: &KubeVersion, format: PkgFormat) -> String {
        self.versions((upstream.major, upstream.minor), format)
            .into_iter()
            .find(|p| &p.upstream == upstream)
            .map(|p| p.revision)
            .unwrap_or_else(|| match format {
                PkgFormat::Deb => "1.1".to_string(),
                PkgFormat::Rpm => "150500.1.1".to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_list_round_trips_and_follows_edits() {
        let text = apt_list_text((1, 33));
        assert_eq!(
            text,
            "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n"
        );
        assert_eq!(parse_apt_list(&text), Some((1, 33)));
        assert_eq!(
            parse_apt_list(&text.replace("v1.33", "v1.34")),
            Some((1, 34))
        );
        assert_eq!(parse_apt_list(&format!("# {text}")), None);
        assert_eq!(parse_apt_list(""), None);
    }

    #[test]
    fn yum_repo_parses_minor_and_excludes() {
        let repos = parse_yum_repo(&yum_repo_text((1, 33)));
        assert_eq!(repos.len(), 1);
        assert_eq!(repos[0].id, "kubernetes");
        assert_eq!(repos[0].minor, Some((1, 33)));
        assert!(repos[0].enabled);
        assert_eq!(
            repos[0].exclude,
            [
                "kubelet",
                "kubeadm",
                "kubectl",
                "cri-tools",
                "kubernetes-cni"
            ]
        );
        let switched = parse_yum_repo(&yum_repo_text((1, 33)).replace("v1.33", "v1.34"));
        assert_eq!(switched[0].minor, Some((1, 34)));
    }

    #[test]
    fn default_repositories_publish_patches_with_mixed_revisions() {
        let repos = Repos::default();
        let deb: Vec<String> = repos
            .versions((1, 34), PkgFormat::Deb)
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(
            deb,
            [
                "1.34.0-1.1",
                "1.34.1-1.1",
                "1.34.2-2.1",
                "1.34.3-1.1",
                "1.34.4-1.1",
                "1.34.5-1.1"
            ]
        );
        let rpm = repos.versions((1, 34), PkgFormat::Rpm);
        assert_eq!(rpm[2].to_string(), "1.34.2-150500.2.1");
    }

    #[test]
    fn declared_repositories_replace_the_defaults() {
        let repos = Repos::from_specs(&[RepoSpec {
            minor: "v1.35".into(),
            versions: vec!["1.35.0-1.1".into(), "1.35.1".into(), "1.35.2-2.1".into()],
        }])
        .unwrap();
        let deb: Vec<String> = repos
            .versions((1, 35), PkgFormat::Deb)
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(deb, ["1.35.0-1.1", "1.35.1-1.1", "1.35.2-2.1"]);
        assert_eq!(
            repos.revision_for(&KubeVersion::new(1, 35, 2), PkgFormat::Deb),
            "2.1"
        );
        assert!(repos.exists((1, 30)) && repos.exists((1, 35)));
        assert!(!repos.exists((1, 36)), "not released yet");
        assert!(!repos.exists((1, 23)), "before pkgs.k8s.io");
        assert!(Repos::default().exists((1, 40)));
        let err = Repos::from_specs(&[RepoSpec {
            minor: "v1.35".into(),
            versions: vec!["1.34.1-1.1".into()],
        }]);
        assert!(err.unwrap_err().contains("does not belong"));
    }
}
