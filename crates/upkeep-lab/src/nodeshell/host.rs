//! The state of one simulated kubeadm node: its OS, its files (repository configuration,
//! static pod manifests, kubelet config, kubeadm's backups), its installed packages and holds,
//! the running kubelet, and the faults it has been told to inject. Plain data; the
//! interpreter ([`super::interp`]) changes it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::repo::{self, Minor, PkgFormat, Repos, YumRepo};
use super::version::{KubeVersion, PkgVersion};

/// Package manager family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OsFamily {
    /// Debian, Ubuntu: apt-get, apt-mark, apt-cache, apt.
    Apt,
    /// RHEL/Rocky/Alma 8-9, CentOS Stream, Amazon Linux 2023: dnf 4 (`yum` is dnf).
    Dnf,
    /// CentOS 7, Amazon Linux 2: yum 3 only.
    Yum,
    /// Fedora 41+: DNF5 (`dnf` and `yum` are dnf5; `--disableexcludes` is gone).
    Dnf5,
}

impl OsFamily {
    /// Guess the family from a Node's `status.nodeInfo.osImage`.
    pub fn from_os_image(os_image: &str) -> OsFamily {
        let l = os_image.to_ascii_lowercase();
        let version_after = |name: &str| -> Option<u32> {
            let rest = &l[l.find(name)? + name.len()..];
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        };
        if l.contains("fedora") {
            // DNF5 became Fedora's dnf in Fedora 41.
            return if version_after("fedora linux")
                .or_else(|| version_after("fedora"))
                .unwrap_or(41)
                >= 41
            {
                OsFamily::Dnf5
            } else {
                OsFamily::Dnf
            };
        }
        if l.contains("centos linux 7")
            || l.contains("amazon linux 2 ")
            || l.trim_end() == "amazon linux 2"
        {
            return OsFamily::Yum;
        }
        if [
            "red hat",
            "rhel",
            "rocky",
            "alma",
            "centos",
            "amazon linux",
            "oracle linux",
            "suse",
        ]
        .iter()
        .any(|k| l.contains(k))
        {
            return OsFamily::Dnf;
        }
        OsFamily::Apt
    }

    pub fn format(self) -> PkgFormat {
        match self {
            OsFamily::Apt => PkgFormat::Deb,
            _ => PkgFormat::Rpm,
        }
    }

    /// An osImage for a node declared only by family.
    pub fn default_os_image(self) -> &'static str {
        match self {
            OsFamily::Apt => "Ubuntu 24.04.3 LTS",
            OsFamily::Dnf => "Rocky Linux 9.6 (Blue Onyx)",
            OsFamily::Yum => "CentOS Linux 7 (Core)",
            OsFamily::Dnf5 => "Fedora Linux 42 (Server Edition)",
        }
    }

    /// The package-manager commands this family has.
    pub fn has_command(self, cmd: &str) -> bool {
        match self {
            OsFamily::Apt => matches!(
                cmd,
                "apt-get" | "apt" | "apt-cache" | "apt-mark" | "dpkg" | "dpkg-query"
            ),
            OsFamily::Dnf => matches!(cmd, "dnf" | "yum" | "rpm"),
            OsFamily::Dnf5 => matches!(cmd, "dnf" | "dnf5" | "yum" | "rpm"),
            OsFamily::Yum => matches!(cmd, "yum" | "rpm"),
        }
    }
}

/// `/etc/os-release` for an osImage (os-release(5) fields the install scripts read).
pub fn os_release(os_image: &str, family: OsFamily) -> String {
    let l = os_image.to_ascii_lowercase();
    let version_id: String = os_image
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()))
        .map(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            // Ubuntu keeps "24.04"; the RPM distributions keep "9.6"; Debian and Fedora "12".
            parts.iter().take(2).cloned().collect::<Vec<_>>().join(".")
        })
        .unwrap_or_default();
    let (id, id_like, name) = if l.contains("ubuntu") {
        ("ubuntu", "debian", "Ubuntu")
    } else if l.contains("debian") {
        ("debian", "", "Debian GNU/Linux")
    } else if l.contains("rocky") {
        ("rocky", "rhel centos fedora", "Rocky Linux")
    } else if l.contains("alma") {
        ("almalinux", "rhel centos fedora", "AlmaLinux")
    } else if l.contains("red hat") || l.contains("rhel") {
        ("rhel", "fedora", "Red Hat Enterprise Linux")
    } else if l.contains("centos") {
        ("centos", "rhel fedora", "CentOS Linux")
    } else if l.contains("fedora") {
        ("fedora", "", "Fedora Linux")
    } else if l.contains("amazon") {
        ("amzn", "fedora", "Amazon Linux")
    } else {
        match family {
            OsFamily::Apt => ("debian", "", "Debian GNU/Linux"),
            _ => ("rhel", "fedora", "Linux"),
        }
    };
    let mut out = format!(
        "PRETTY_NAME=\"{os_image}\"\nNAME=\"{name}\"\nVERSION_ID=\"{version_id}\"\nID={id}\n"
    );
    if !id_like.is_empty() {
        out.push_str(&format!("ID_LIKE=\"{id_like}\"\n"));
    }
    out
}

/// A failure the node injects into a command, set by the lab's fault endpoint or scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShellFault {
    /// The command words that trigger it, matched as a prefix of the argv after `sudo`:
    /// "kubeadm upgrade node", "apt-get install", "systemctl restart kubelet".
    pub fail: String,
    /// How many times to fail; absent means always.
    #[serde(default)]
    pub times: Option<u32>,
    /// Exit code (default 1).
    #[serde(default)]
    pub code: Option<i32>,
    /// What to print on stderr (default: a line naming the command and the fault).
    #[serde(default)]
    pub message: Option<String>,
}

/// How a node is first set up (from its Node object and the scenario).
#[derive(Debug, Clone)]
pub struct HostSpec {
    pub node: String,
    pub control_plane: bool,
    pub os_image: String,
    pub family: OsFamily,
    /// The kubelet (and kubeadm, kubectl) version installed and running.
    pub kubelet_version: KubeVersion,
    /// The control-plane static pods' version (control-plane nodes only).
    pub control_plane_version: Option<KubeVersion>,
    /// The etcd image tag of a control-plane node.
    pub etcd_tag: String,
    pub kernel: String,
}

/// The control-plane components kubeadm runs as static pods and upgrades (etcd is kept).
pub const CONTROL_PLANE_COMPONENTS: [&str; 3] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
pub const KUBEADM_TMP_DIR: &str = "/etc/kubernetes/tmp";
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// A package beside kubeadm's three that requires some of them at exactly the versions the
/// node had when it was set up: a site meta-package (`sitePackages` of a scenario node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SitePackageSpec {
    pub name: String,
    /// Its own version (default `1.0`; rpm: release `1`).
    #[serde(default = "site_version")]
    pub version: String,
    /// The packages it requires at their installed versions (`kubeadm`, `kubelet`, `kubectl`).
    pub pins: Vec<String>,
}

fn site_version() -> String {
    "1.0".to_string()
}

/// An installed site package: what it requires, exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePackage {
    pub name: String,
    pub version: String,
    pub requires: Vec<(String, PkgVersion)>,
}

impl SitePackage {
    /// The version as the package database shows it: `1.0` (dpkg), `1.0-1` (rpm).
    pub fn shown_version(&self, family: OsFamily) -> String {
        match family {
            OsFamily::Apt => self.version.clone(),
            _ => format!("{}-1", self.version),
        }
    }

    /// The installed packages whose new version (in `changes`) it does not accept.
    pub fn broken_by<'a>(
        &self,
        changes: &'a [(String, PkgVersion)],
    ) -> Vec<&'a (String, PkgVersion)> {
        changes
            .iter()
            .filter(|(p, v)| self.requires.iter().any(|(rp, rv)| rp == p && rv != v))
            .collect()
    }
}

/// One node's host.
#[derive(Debug, Clone)]
pub struct Host {
    pub node: String,
    pub control_plane: bool,
    pub family: OsFamily,
    pub os_image: String,
    pub kernel: String,
    /// Regular files by absolute path.
    pub files: BTreeMap<String, String>,
    /// Directories that exist beyond those implied by files (e.g. an empty backup dir).
    pub dirs: BTreeSet<String>,
    /// Installed Kubernetes packages.
    pub installed: BTreeMap<String, PkgVersion>,
    /// Installed site packages requiring some of them (see [`SitePackageSpec`]).
    pub site_packages: Vec<SitePackage>,
    /// apt-mark holds.
    pub holds: BTreeSet<String>,
    /// The minor whose package lists `apt-get update` last fetched (apt only; dnf reads the
    /// repository file on every run, as its metadata cache expires).
    pub apt_lists: Option<Minor>,
    /// The kubelet version running now (changes on `systemctl restart kubelet`).
    pub kubelet_running: KubeVersion,
    pub kubelet_active: bool,
    /// A package changed kubelet's unit files since the last `systemctl daemon-reload`.
    pub units_changed: bool,
    pub faults: Vec<ShellFault>,
    /// Every command line run on this node, for tests and `history`.
    pub history: Vec<String>,
    /// kubeadm's certificates (control-plane nodes; empty on workers).
    pub pki: super::pki::Pki,
}

impl Host {
    pub fn new(spec: &HostSpec, repos: &Repos) -> Host {
        let format = spec.family.format();
        let minor = (spec.kubelet_version.major, spec.kubelet_version.minor);
        let pkg = PkgVersion::new(
            spec.kubelet_version.clone(),
            &repos.revision_for(&spec.kubelet_version, format),
        );
        let mut files = BTreeMap::new();
        files.insert(
            "/etc/os-release".to_string(),
            os_release(&spec.os_image, spec.family),
        );
        files.insert("/etc/hostname".to_string(), format!("{}\n", spec.node));
        let mut holds = BTreeSet::new();
        match spec.family {
            OsFamily::Apt => {
                files.insert(repo::APT_LIST_PATH.to_string(), repo::apt_list_text(minor));
                files.insert(
                    "/etc/apt/keyrings/kubernetes-apt-keyring.gpg".to_string(),
                    "(binary OpenPGP keyring)\n".to_string(),
                );
                // The install docs hold all three after installing them.
                holds.extend(repo::K8S_PACKAGES.iter().map(|s| s.to_string()));
            }
            _ => {
                files.insert(repo::YUM_REPO_PATH.to_string(), repo::yum_repo_text(minor));
            }
        }
        files.insert(KUBELET_CONFIG.to_string(), kubelet_config_text());
        files.insert(
            "/etc/kubernetes/kubelet.conf".to_string(),
            "apiVersion: v1\nkind: Config\n# kubelet client credentials\n".to_string(),
        );
        if spec.control_plane {
            let v = spec
                .control_plane_version
                .clone()
                .unwrap_or_else(|| spec.kubelet_version.clone());
            for c in CONTROL_PLANE_COMPONENTS {
                files.insert(
                    format!("{MANIFESTS_DIR}/{c}.yaml"),
                    static_pod_manifest(c, &format!("registry.k8s.io/{c}:{v}")),
                );
            }
            files.insert(
                format!("{MANIFESTS_DIR}/etcd.yaml"),
                static_pod_manifest("etcd", &format!("registry.k8s.io/etcd:{}", spec.etcd_tag)),
            );
            files.insert(
                "/etc/kubernetes/admin.conf".to_string(),
                "apiVersion: v1\nkind: Config\n".to_string(),
            );
        }
        let mut dirs = BTreeSet::new();
        for d in [
            MANIFESTS_DIR,
            KUBEADM_TMP_DIR,
            "/tmp",
            "/root",
            "/home",
            "/var/tmp",
            "/etc/apt/sources.list.d",
            "/etc/yum.repos.d",
        ] {
            if d.starts_with("/etc/apt") && spec.family != OsFamily::Apt
                || d.starts_with("/etc/yum") && spec.family == OsFamily::Apt
            {
                continue;
            }
            dirs.insert(d.to_string());
        }
        Host {
            node: spec.node.clone(),
            control_plane: spec.control_plane,
            family: spec.family,
            os_image: spec.os_image.clone(),
            kernel: spec.kernel.clone(),
            files,
            dirs,
            installed: repo::K8S_PACKAGES
                .iter()
                .map(|p| (p.to_string(), pkg.clone()))
                .collect(),
            site_packages: Vec::new(),
            holds,
            apt_lists: Some(minor),
            kubelet_running: spec.kubelet_version.clone(),
            kubelet_active: true,
            units_changed: false,
            faults: Vec::new(),
            history: Vec::new(),
            pki: Default::default(),
        }
    }

    /// Installs the site packages of `specs`, each requiring its pins at their installed versions.
    pub fn add_site_packages(&mut self, specs: &[SitePackageSpec]) {
        for s in specs {
            let requires = s
                .pins
                .iter()
                .filter_map(|p| Some((p.clone(), self.installed.get(p)?.clone())))
                .collect();
            self.site_packages.push(SitePackage {
                name: s.name.clone(),
                version: s.version.clone(),
                requires,
            });
        }
    }

    /// The minor the configured repository file points at (None: no usable repository).
    pub fn repo_minor(&self) -> Option<Minor> {
        match self.family {
            OsFamily::Apt => self
                .files
                .get(repo::APT_LIST_PATH)
                .and_then(|t| repo::parse_apt_list(t)),
            _ => self.yum_repo().and_then(|r| r.minor),
        }
    }

    /// The `[kubernetes]` section of the yum repository file.
    pub fn yum_repo(&self) -> Option<YumRepo> {
        let text = self.files.get(repo::YUM_REPO_PATH)?;
        repo::parse_yum_repo(text)
            .into_iter()
            .find(|r| r.id == repo::YUM_REPO_ID)
    }

    /// The version of a control-plane static pod, from its manifest's image tag.
    pub fn static_pod_version(&self, component: &str) -> Option<KubeVersion> {
        let text = self
            .files
            .get(&format!("{MANIFESTS_DIR}/{component}.yaml"))?;
        image_tag(text).and_then(|t| KubeVersion::parse(&t))
    }

    /// The image tag of a static pod manifest (`3.6.4-0` for etcd).
    pub fn static_pod_tag(&self, component: &str) -> Option<String> {
        image_tag(
            self.files
                .get(&format!("{MANIFESTS_DIR}/{component}.yaml"))?,
        )
    }

    /// The installed kubeadm binary's version.
    pub fn kubeadm_version(&self) -> Option<KubeVersion> {
        self.installed.get("kubeadm").map(|p| p.upstream.clone())
    }

    /// Whether `path` is a directory (explicit or implied by a file below it).
    pub fn is_dir(&self, path: &str) -> bool {
        let p = path.trim_end_matches('/');
        if p.is_empty() {
            return true;
        }
        let prefix = format!("{p}/");
        self.dirs.contains(p)
            || self.dirs.iter().any(|d| d.starts_with(&prefix))
            || self.files.keys().any(|f| f.starts_with(&prefix))
    }

    /// Direct children names of a directory, sorted.
    pub fn list_dir(&self, path: &str) -> Vec<String> {
        let p = path.trim_end_matches('/');
        let prefix = format!("{p}/");
        let mut out = BTreeSet::new();
        for k in self.files.keys().chain(self.dirs.iter()) {
            if let Some(rest) = k.strip_prefix(&prefix)
                && let Some(first) = rest.split('/').next().filter(|s| !s.is_empty())
            {
                out.insert(first.to_string());
            }
        }
        out.into_iter().collect()
    }

    /// Take the first matching fault (decrementing its count). `words` is the argv.
    pub fn take_fault(&mut self, words: &[String]) -> Option<ShellFault> {
        let idx = self.faults.iter().position(|f| {
            let want: Vec<&str> = f.fail.split_whitespace().collect();
            !want.is_empty()
                && words.len() >= want.len()
                && want.iter().zip(words).all(|(a, b)| *a == b)
        })?;
        let f = self.faults[idx].clone();
        if let Some(n) = self.faults[idx].times.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.faults.remove(idx);
            }
        }
        Some(f)
    }
}

/// A minimal static pod manifest, enough for `cat` and for kubeadm to read its image.
pub fn static_pod_manifest(component: &str, image: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    component: {component}\n    tier: control-plane\n  \
         name: {component}\n  namespace: kube-system\nspec:\n  containers:\n  - name: {component}\n    image: {image}\n  \
         hostNetwork: true\n  priorityClassName: system-node-critical\n"
    )
}

/// The tag of the first `image:` line of a manifest.
pub fn image_tag(manifest: &str) -> Option<String> {
    let line = manifest
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("image:"))?;
    let image = line.trim();
    let name_end = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    image[name_end..]
        .split_once(':')
        .map(|(_, t)| t.to_string())
}

fn kubelet_config_text() -> String {
    "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\ncgroupDriver: systemd\n\
     clusterDNS:\n- 10.96.0.10\nclusterDomain: cluster.local\nstaticPodPath: /etc/kubernetes/manifests\n"
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_from_os_images() {
        assert_eq!(OsFamily::from_os_image("Ubuntu 22.04.4 LTS"), OsFamily::Apt);
        assert_eq!(
            OsFamily::from_os_image("Debian GNU/Linux 12 (bookworm)"),
            OsFamily::Apt
        );
        assert_eq!(
            OsFamily::from_os_image("Rocky Linux 9.4 (Blue Onyx)"),
            OsFamily::Dnf
        );
        assert_eq!(
            OsFamily::from_os_image("Red Hat Enterprise Linux 9.4 (Plow)"),
            OsFamily::Dnf
        );
        assert_eq!(
            OsFamily::from_os_image("Amazon Linux 2023.5.20240819"),
            OsFamily::Dnf
        );
        assert_eq!(OsFamily::from_os_image("Amazon Linux 2"), OsFamily::Yum);
        assert_eq!(
            OsFamily::from_os_image("CentOS Linux 7 (Core)"),
            OsFamily::Yum
        );
        assert_eq!(
            OsFamily::from_os_image("Fedora Linux 42 (Server Edition)"),
            OsFamily::Dnf5
        );
        assert_eq!(
            OsFamily::from_os_image("Fedora Linux 40 (Server Edition)"),
            OsFamily::Dnf
        );
        assert_eq!(OsFamily::from_os_image("linux"), OsFamily::Apt);
    }

    #[test]
    fn os_release_names_the_distribution() {
        let t = os_release("Ubuntu 22.04.4 LTS", OsFamily::Apt);
        assert!(t.contains("PRETTY_NAME=\"Ubuntu 22.04.4 LTS\""), "{t}");
        assert!(t.contains("VERSION_ID=\"22.04\""), "{t}");
        assert!(t.contains("ID=ubuntu"), "{t}");
        let r = os_release("Rocky Linux 9.4 (Blue Onyx)", OsFamily::Dnf);
        assert!(
            r.contains("ID=rocky") && r.contains("VERSION_ID=\"9.4\""),
            "{r}"
        );
    }

    #[test]
    fn image_tags_come_from_manifests() {
        let m = static_pod_manifest("kube-apiserver", "registry.k8s.io/kube-apiserver:v1.33.4");
        assert_eq!(image_tag(&m).as_deref(), Some("v1.33.4"));
        let m = static_pod_manifest("etcd", "localhost:5000/etcd:3.5.21-0");
        assert_eq!(image_tag(&m).as_deref(), Some("3.5.21-0"));
    }

    #[test]
    fn faults_count_down() {
        let spec = HostSpec {
            node: "n".into(),
            control_plane: false,
            os_image: "Ubuntu 24.04.3 LTS".into(),
            family: OsFamily::Apt,
            kubelet_version: KubeVersion::new(1, 33, 4),
            control_plane_version: None,
            etcd_tag: "3.5.21-0".into(),
            kernel: "6.8.0-79-generic".into(),
        };
        let mut h = Host::new(&spec, &Repos::default());
        h.faults.push(ShellFault {
            fail: "kubeadm upgrade node".into(),
            times: Some(1),
            code: None,
            message: None,
        });
        let argv: Vec<String> = ["kubeadm", "upgrade", "plan"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(h.take_fault(&argv).is_none());
        let argv: Vec<String> = ["kubeadm", "upgrade", "node"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(h.take_fault(&argv).is_some());
        assert!(h.take_fault(&argv).is_none());
    }
}
