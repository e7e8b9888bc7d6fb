//! Package-manager recipes: the exact commands an upgrade runs on a node,
//! per OS family, as argv vectors.
//!
//! The commands are those of the kubeadm upgrade document
//! (kubernetes/website `content/en/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade.md`)
//! and the pkgs.k8s.io change-package-repository page: one repository per
//! minor, so a minor upgrade first points the repository file at the target
//! minor; packages are held between upgrades and installed with a version
//! glob because the revision is not always `-1.1`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::version::{MinorVersion, PackageVersion, Release};

/// The packages kubeadm clusters install from pkgs.k8s.io.
pub const PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];

/// The repository file kubeadm's install guide writes for Debian-family systems.
pub const APT_REPO_FILE: &str = "/etc/apt/sources.list.d/kubernetes.list";
/// The repository file kubeadm's install guide writes for RPM-family systems.
pub const RPM_REPO_FILE: &str = "/etc/yum.repos.d/kubernetes.repo";
/// Where kubeadm leaves its backups (kubeadm-upgrade.md, "Recovering from a failure state").
pub const KUBEADM_BACKUPS: &str = "/etc/kubernetes/tmp/kubeadm-backup-*";

/// One command as an argument vector: never a shell string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Cmd(pub Vec<String>);

impl Cmd {
    pub fn new<I, S>(args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Cmd(args.into_iter().map(Into::into).collect())
    }

    pub fn argv(&self) -> &[String] {
        &self.0
    }

    /// The command as one POSIX-shell line, each word quoted where needed,
    /// for a remote shell (ssh joins its arguments into one string) and for
    /// people to read. Errors only on a NUL byte, which no validated value holds.
    pub fn shell_line(&self) -> Result<String, String> {
        shlex::try_join(self.0.iter().map(String::as_str))
            .map_err(|e| format!("cannot quote {:?}: {e}", self.0))
    }

    /// `sudo` in front, for a remote user who is not root.
    pub fn with_sudo(&self) -> Cmd {
        let mut v = Vec::with_capacity(self.0.len() + 1);
        v.push("sudo".to_string());
        v.extend(self.0.iter().cloned());
        Cmd(v)
    }
}

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.shell_line() {
            Ok(line) => f.write_str(&line),
            Err(_) => write!(f, "{:?}", self.0),
        }
    }
}

/// The package manager on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PackageManager {
    /// Debian, Ubuntu (apt-get, apt-mark, apt-cache)
    Apt,
    /// RHEL/Rocky/Alma 8-9, CentOS Stream, Fedora up to 40 (dnf 4)
    Dnf,
    /// Fedora 41+ and other DNF5 systems (`--setopt=disable_excludes=...`)
    Dnf5,
    /// RHEL/CentOS 7 (yum)
    Yum,
}

impl fmt::Display for PackageManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PackageManager::Apt => "apt",
            PackageManager::Dnf => "dnf",
            PackageManager::Dnf5 => "dnf5",
            PackageManager::Yum => "yum",
        })
    }
}

impl PackageManager {
    pub fn repo_file(self) -> &'static str {
        match self {
            PackageManager::Apt => APT_REPO_FILE,
            _ => RPM_REPO_FILE,
        }
    }

    fn binary(self) -> &'static str {
        match self {
            PackageManager::Apt => "apt-get",
            PackageManager::Dnf | PackageManager::Dnf5 => "dnf",
            PackageManager::Yum => "yum",
        }
    }

    /// How the `exclude=` line of kubernetes.repo is lifted for one command.
    fn disable_excludes(self) -> &'static str {
        match self {
            PackageManager::Dnf5 => "--setopt=disable_excludes=kubernetes",
            _ => "--disableexcludes=kubernetes",
        }
    }

    /// The package argument pinning a version by glob: `kubeadm=1.34.1-*`
    /// (apt) or `kubeadm-1.34.1-*` (rpm).
    fn pin(self, package: &str, release: Release) -> String {
        match self {
            PackageManager::Apt => format!("{package}={}-*", release.bare()),
            _ => format!("{package}-{}-*", release.bare()),
        }
    }

    /// Guesses from `status.nodeInfo.osImage` ("Ubuntu 24.04.1 LTS",
    /// "Rocky Linux 9.4 (Blue Onyx)", "Fedora Linux 41 (Server Edition)").
    pub fn from_os_image(os_image: &str) -> Option<PackageManager> {
        let lower = os_image.to_ascii_lowercase();
        let version = first_number(&lower);
        if [
            "debian",
            "ubuntu",
            "hypriot",
            "raspbian",
            "linux mint",
            "pop!_os",
        ]
        .iter()
        .any(|d| lower.contains(d))
        {
            return Some(PackageManager::Apt);
        }
        if lower.contains("fedora") {
            return Some(fedora(version));
        }
        if [
            "red hat",
            "rhel",
            "centos",
            "rocky",
            "alma",
            "oracle linux",
            "amazon linux",
        ]
        .iter()
        .any(|d| lower.contains(d))
        {
            return Some(el(version, lower.contains("stream")));
        }
        None
    }

    /// Decides from the node's own `/etc/os-release` (ID, ID_LIKE, VERSION_ID).
    pub fn from_os_release(text: &str) -> Option<PackageManager> {
        let field = |key: &str| {
            text.lines().find_map(|line| {
                let (k, v) = line.split_once('=')?;
                (k.trim() == key).then(|| v.trim().trim_matches('"').to_ascii_lowercase())
            })
        };
        let id = field("ID").unwrap_or_default();
        let like = field("ID_LIKE").unwrap_or_default();
        let version = field("VERSION_ID").and_then(|v| first_number(&v));
        let ids: Vec<&str> = std::iter::once(id.as_str())
            .chain(like.split_whitespace())
            .collect();
        if id == "fedora" {
            return Some(fedora(version));
        }
        if ids.iter().any(|i| matches!(*i, "debian" | "ubuntu")) {
            return Some(PackageManager::Apt);
        }
        if id == "amzn" {
            // Amazon Linux 2 has yum, 2023 has dnf.
            return Some(if version == Some(2) {
                PackageManager::Yum
            } else {
                PackageManager::Dnf
            });
        }
        if ids.iter().any(|i| {
            matches!(
                *i,
                "rhel" | "centos" | "rocky" | "almalinux" | "ol" | "fedora"
            )
        }) {
            return Some(el(version, false));
        }
        None
    }
}

// Fedora switched its dnf command to DNF5 in Fedora 41.
fn fedora(version: Option<u32>) -> PackageManager {
    match version {
        Some(v) if v >= 41 => PackageManager::Dnf5,
        _ => PackageManager::Dnf,
    }
}

// Enterprise Linux: yum up to 7, dnf from 8 (CentOS Stream is 8+).
fn el(version: Option<u32>, stream: bool) -> PackageManager {
    match version {
        Some(v) if v <= 7 && !stream => PackageManager::Yum,
        _ => PackageManager::Dnf,
    }
}

fn first_number(s: &str) -> Option<u32> {
    let start = s.find(|c: char| c.is_ascii_digit())?;
    let digits: String = s[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

/// The recipes of one package manager, with or without `sudo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipe {
    pub manager: PackageManager,
    pub sudo: bool,
}

impl Recipe {
    pub fn new(manager: PackageManager) -> Recipe {
        Recipe {
            manager,
            sudo: false,
        }
    }

    fn cmd<I, S>(&self, args: I) -> Cmd
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let c = Cmd::new(args);
        if self.sudo { c.with_sudo() } else { c }
    }

    /// Read-only look at the node: its OS.
    pub fn read_os_release(&self) -> Cmd {
        self.cmd(["cat", "/etc/os-release"])
    }

    /// Read-only look at the node: the repository file (which minor it serves).
    pub fn read_repo_file(&self) -> Cmd {
        self.cmd(["cat", self.manager.repo_file()])
    }

    /// The read-only probe, one command: prints `/etc/os-release` and the
    /// repository file, then lists what the target minor's repository offers
    /// through a copy of that file in `dir` (a fresh directory, removed when
    /// the script ends or is signalled). The node's own repository file,
    /// package lists, caches and package database are never written:
    ///
    /// * apt reads the copy as its only source list and keeps its lists in
    ///   `dir` (`Dir::Etc::SourceList`, `Dir::Etc::SourceParts=-`,
    ///   `Dir::State::Lists`; apt.conf(5)), with no binary caches
    ///   (`Dir::Cache::pkgcache=`, `Dir::Cache::srcpkgcache=`);
    /// * dnf, DNF5 and yum read the copy as their only repository directory
    ///   and cache and keep their history in `dir` (`--setopt=reposdir=`,
    ///   `--setopt=cachedir=`, `--setopt=persistdir=`; dnf.conf(5), yum.conf(5));
    ///   the copy keeps the repository id, so the
    ///   `exclude=` line is lifted as for an install.
    ///
    /// Each stage exits with its own code ([`ProbeStage`]), so a refusal can
    /// say which answer was missing. `dir` must be a plain absolute path.
    pub fn probe(&self, to: MinorVersion, dir: &str) -> Cmd {
        let m = self.manager;
        let file = m.repo_file();
        let line = |words: &[&str], stage: Option<ProbeStage>| {
            let mut l = shlex::try_join(words.iter().copied()).unwrap_or_default();
            if let Some(s) = stage {
                l.push_str(&format!(" || exit {}", s.code()));
            }
            l
        };
        let copy = match m {
            PackageManager::Apt => format!("{dir}/sources.list"),
            _ => format!("{dir}/kubernetes.repo"),
        };
        let expr = switch_expr(to);
        let cleanup = format!("rm -rf {dir}");
        let mut s = vec![
            line(&["cat", "/etc/os-release"], Some(ProbeStage::OsRelease)),
            // A file without a final newline must not hide the marker.
            line(&["echo"], None),
            line(&["echo", PROBE_REPO_MARK], None),
            line(&["cat", file], Some(ProbeStage::RepoFile)),
            line(&["echo"], None),
            line(&["mkdir", dir], Some(ProbeStage::Scratch)),
            line(&["trap", &cleanup, "EXIT"], None),
            // Without this, dash leaves on a signal without the EXIT trap.
            line(&["trap", "exit 130", "HUP", "INT", "TERM"], None),
            line(&["echo", PROBE_DEPENDENTS_MARK], None),
        ];
        // The installed packages' versioned dependencies on the three packages, one
        // line each, read from the package database (never written): what an
        // install at the target would break. Kept in the scratch directory and
        // filtered there, so a node with thousands of packages sends a few lines.
        let deps_file = format!("{dir}/dependencies");
        let query: Vec<String> = match m {
            // dpkg-query(1) --showformat; db:Status-Status tells installed
            // packages from removed ones whose configuration files remain.
            PackageManager::Apt => [
                "dpkg-query",
                "-W",
                "-f",
                "${db:Status-Status} ${Package} ${Version} ${Depends}, ${Pre-Depends}\\n",
            ]
            .map(String::from)
            .to_vec(),
            // rpm's query format: one line per Requires entry (`[...]` iterates
            // the Requires array, `%{=TAG}` repeats a scalar on each line; rpm(8)
            // "Query formats"), the comparison by the depflags formatter.
            _ => [
                "rpm",
                "-qa",
                "--qf",
                "[%{=NAME} %{=VERSION}-%{=RELEASE} %{REQUIRENAME} %{REQUIREFLAGS:depflags} %{REQUIREVERSION}\\n]",
            ]
            .map(String::from)
            .to_vec(),
        };
        let q: Vec<&str> = query.iter().map(String::as_str).collect();
        let mut query_line = line(&q, None);
        query_line = format!(
            "{query_line} > {} || exit {}",
            shlex::try_quote(&deps_file).unwrap_or_default(),
            ProbeStage::Installed.code()
        );
        s.push(query_line);
        // grep exits 1 when no line matches: that is the usual answer.
        s.push(format!(
            "{} || test $? = 1 || exit {}",
            line(&["grep", "-E", DEPENDENCY_PATTERN, &deps_file], None),
            ProbeStage::Installed.code()
        ));
        s.push(line(&["echo", PROBE_LIST_MARK], None));
        let list_words: Vec<String> = match m {
            PackageManager::Apt => {
                let lists = format!("{dir}/lists");
                let partial = format!("{dir}/lists/partial");
                s.push(line(
                    &["mkdir", &lists, &partial],
                    Some(ProbeStage::Scratch),
                ));
                s.push(line(&["cp", file, &copy], Some(ProbeStage::Scratch)));
                s.push(line(
                    &["sed", "-i", &expr, &copy],
                    Some(ProbeStage::Scratch),
                ));
                let opts = [
                    "-o".to_string(),
                    format!("Dir::Etc::SourceList={copy}"),
                    "-o".into(),
                    "Dir::Etc::SourceParts=-".into(),
                    "-o".into(),
                    format!("Dir::State::Lists={lists}"),
                    "-o".into(),
                    "Dir::Cache::pkgcache=".into(),
                    "-o".into(),
                    "Dir::Cache::srcpkgcache=".into(),
                ];
                let update: Vec<String> = ["apt-get".to_string(), "-q".into()]
                    .into_iter()
                    .chain(opts.iter().cloned())
                    .chain(["update".to_string()])
                    .collect();
                let u: Vec<&str> = update.iter().map(String::as_str).collect();
                s.push(line(&u, Some(ProbeStage::Refresh)));
                ["apt-cache".to_string()]
                    .into_iter()
                    .chain(opts)
                    .chain(["madison".to_string()])
                    .chain(PACKAGES.map(String::from))
                    .collect()
            }
            _ => {
                s.push(line(&["cp", file, &copy], Some(ProbeStage::Scratch)));
                s.push(line(
                    &["sed", "-i", &expr, &copy],
                    Some(ProbeStage::Scratch),
                ));
                // Not -q: it hides the "Status code: 404" line that tells a
                // missing minor from an unreachable repository.
                [
                    m.binary().to_string(),
                    format!("--setopt=reposdir={dir}"),
                    format!("--setopt=cachedir={dir}/cache"),
                    // dnf opens its history database in persistdir (/var/lib/dnf) even to
                    // list, and sqlite writes it on close: measured on a real dnf 4 root.
                    format!("--setopt=persistdir={dir}/persist"),
                    // A repository that cannot be read is an error, not an empty list.
                    "--setopt=skip_if_unavailable=False".into(),
                    m.disable_excludes().into(),
                    "list".into(),
                    "--showduplicates".into(),
                ]
                .into_iter()
                .chain(PACKAGES.map(String::from))
                .collect()
            }
        };
        let l: Vec<&str> = list_words.iter().map(String::as_str).collect();
        s.push(line(&l, Some(ProbeStage::List)));
        self.cmd(["sh".to_string(), "-c".to_string(), s.join("\n")])
    }

    /// Points the repository file at the target minor: the pkgs.k8s.io path
    /// `/core:/stable:/vX.Y/` appears in the deb line, and in the rpm
    /// `baseurl=` and `gpgkey=` lines; the signing key is the same for every
    /// minor. The second command verifies the file now names the target.
    pub fn repo_switch(&self, to: MinorVersion) -> Vec<Cmd> {
        let file = self.manager.repo_file();
        vec![
            self.cmd(["sed", "-i", switch_expr(to).as_str(), file]),
            self.cmd(["grep", "-F", format!("/core:/stable:/{to}/").as_str(), file]),
        ]
    }

    /// Installs `packages` at `release`, lifting and restoring the hold
    /// (apt-mark) or the repository's `exclude=` (rpm); on apt, first finishes
    /// what an interrupted dpkg left (`dpkg --configure -a`).
    pub fn install(&self, packages: &[&str], release: Release) -> Vec<Cmd> {
        let m = self.manager;
        let pins = packages.iter().map(|p| m.pin(p, release));
        match m {
            PackageManager::Apt => {
                let mut out = vec![
                    // An install interrupted earlier (Ctrl-C, a lost session) leaves dpkg
                    // half done, and apt-get refuses every install until it is finished:
                    // "E: dpkg was interrupted, you must manually run 'dpkg --configure -a'"
                    // (apt-pkg deb/debsystem.cc). With nothing pending it does nothing.
                    // Found on a real node: crates/kubectl-upgrade-node/tests/realnode.rs.
                    self.cmd(["dpkg", "--configure", "-a"]),
                    self.cmd(
                        ["apt-mark", "unhold"]
                            .into_iter()
                            .map(String::from)
                            .chain(packages.iter().map(|p| p.to_string())),
                    ),
                    self.cmd(["apt-get", "update"]),
                ];
                out.push(
                    self.cmd(
                        ["apt-get", "install", "-y"]
                            .into_iter()
                            .map(String::from)
                            .chain(pins),
                    ),
                );
                out.push(
                    self.cmd(
                        ["apt-mark", "hold"]
                            .into_iter()
                            .map(String::from)
                            .chain(packages.iter().map(|p| p.to_string())),
                    ),
                );
                out
            }
            _ => vec![
                self.cmd(
                    [m.binary(), "install", "-y"]
                        .into_iter()
                        .map(String::from)
                        .chain(pins)
                        .chain([m.disable_excludes().to_string()]),
                ),
            ],
        }
    }

    /// `kubeadm version -o short`, to check the package really brought the target.
    pub fn kubeadm_version(&self) -> Cmd {
        self.cmd(["kubeadm", "version", "-o", "short"])
    }

    /// `kubeadm upgrade plan vX.Y.Z`: read-only, prints kubeadm's own checks.
    pub fn kubeadm_plan(&self, to: Release) -> Cmd {
        self.cmd(["kubeadm", "upgrade", "plan", to.to_string().as_str()])
    }

    /// `kubeadm upgrade apply vX.Y.Z --yes` on the first control-plane node.
    pub fn kubeadm_apply(&self, to: Release) -> Cmd {
        self.cmd([
            "kubeadm",
            "upgrade",
            "apply",
            to.to_string().as_str(),
            "--yes",
        ])
    }

    /// `kubeadm upgrade node` on every other node.
    pub fn kubeadm_node(&self) -> Cmd {
        self.cmd(["kubeadm", "upgrade", "node"])
    }

    /// `systemctl daemon-reload && systemctl restart kubelet`.
    pub fn restart_kubelet(&self) -> Vec<Cmd> {
        vec![
            self.cmd(["systemctl", "daemon-reload"]),
            self.cmd(["systemctl", "restart", "kubelet"]),
        ]
    }
}

/// The sed expression pointing a pkgs.k8s.io repository file at `to`: the
/// one rule for the real switch and for the probe's copy.
fn switch_expr(to: MinorVersion) -> String {
    // `[.]` rather than `\.`: a bracket needs no backslash, so the quoted
    // form stays a plain single-quoted word.
    format!("s#/core:/stable:/v[0-9][0-9]*[.][0-9][0-9]*/#/core:/stable:/{to}/#g")
}

/// The line the probe prints before the repository file.
pub const PROBE_REPO_MARK: &str = "--- upkeep: repository file";
/// The line the probe prints before the listing.
pub const PROBE_LIST_MARK: &str = "--- upkeep: versions";
/// The line the probe prints before the installed packages' dependencies.
pub const PROBE_DEPENDENTS_MARK: &str = "--- upkeep: dependencies";
/// A versioned dependency on one of [`PACKAGES`] in the probe's query output:
/// `kubelet (= 1.34.3-1.1)` (dpkg) or `kubelet = 1.34.3-150500.1.1` (rpm).
pub const DEPENDENCY_PATTERN: &str = " (kubeadm|kubelet|kubectl) [(<>=]";

/// Where the probe script stopped, by its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeStage {
    OsRelease,
    RepoFile,
    Scratch,
    Installed,
    Refresh,
    List,
}

impl ProbeStage {
    const ALL: [ProbeStage; 6] = [
        ProbeStage::OsRelease,
        ProbeStage::RepoFile,
        ProbeStage::Scratch,
        ProbeStage::Installed,
        ProbeStage::Refresh,
        ProbeStage::List,
    ];

    /// Exit codes no tool the script runs uses for itself (apt 100, dnf 1/2).
    pub fn code(self) -> i32 {
        match self {
            ProbeStage::OsRelease => 91,
            ProbeStage::RepoFile => 92,
            ProbeStage::Scratch => 93,
            ProbeStage::Refresh => 94,
            ProbeStage::List => 95,
            ProbeStage::Installed => 96,
        }
    }

    /// For messages: what the stage does.
    pub fn describe(self, m: PackageManager) -> String {
        match self {
            ProbeStage::OsRelease => "reading /etc/os-release".into(),
            ProbeStage::RepoFile => format!("reading {}", m.repo_file()),
            ProbeStage::Scratch => {
                "preparing a scratch copy of the repository file under /tmp".into()
            }
            ProbeStage::Installed => match m {
                PackageManager::Apt => {
                    "reading the installed packages' dependencies with dpkg-query".into()
                }
                _ => "reading the installed packages' dependencies with rpm -qa".into(),
            },
            ProbeStage::Refresh => "`apt-get update` on the scratch copy".into(),
            ProbeStage::List => format!("listing the versions with {}", m.binary()),
        }
    }

    fn from_code(code: i32) -> Option<ProbeStage> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }
}

/// What the probe script answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeAnswer {
    pub os_release: Option<String>,
    /// The repository file, when it exists.
    pub repo_file: Option<String>,
    /// Installed packages with a versioned dependency on kubeadm, kubelet or kubectl.
    pub dependents: Vec<Dependent>,
    pub listing: Listing,
}

/// The target minor's repository, as the package manager saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    Offered(Offered),
    /// The repository does not exist: apt's missing Release file, dnf's and
    /// yum's 404 on repomd.xml. The text is the manager's own words.
    MinorMissing(String),
    /// The script stopped at `stage`, for another reason.
    Failed {
        stage: ProbeStage,
        detail: String,
    },
    /// Not reached (the OS or the repository file was missing).
    NotRun,
}

/// Splits the probe's output (see [`Recipe::probe`]) into its answers.
pub fn parse_probe(code: Option<i32>, stdout: &str, stderr: &str) -> ProbeAnswer {
    let (os, rest) = match stdout.split_once(&format!("{PROBE_REPO_MARK}\n")) {
        Some((os, rest)) => (Some(os.to_string()), Some(rest)),
        None => (None, None),
    };
    let (before, listing) = match rest.map(|r| r.split_once(&format!("{PROBE_LIST_MARK}\n"))) {
        Some(Some((b, l))) => (Some(b), l),
        Some(None) => (rest, ""),
        None => (None, ""),
    };
    let (file, dependents) =
        match before.map(|b| b.split_once(&format!("{PROBE_DEPENDENTS_MARK}\n"))) {
            Some(Some((f, d))) => (Some(f.to_string()), parse_dependents(d)),
            Some(None) => (before.map(str::to_string), Vec::new()),
            None => (None, Vec::new()),
        };
    let stage = code.and_then(ProbeStage::from_code);
    let detail = || {
        let mut t = listing.trim_end().to_string();
        if !stderr.trim().is_empty() {
            if !t.is_empty() {
                t.push('\n');
            }
            t.push_str(stderr.trim_end());
        }
        t
    };
    let answer = |os: Option<String>, file: Option<String>, listing| ProbeAnswer {
        os_release: os,
        repo_file: file,
        dependents: dependents.clone(),
        listing,
    };
    match (code, stage) {
        (Some(0), _) => answer(os, file, Listing::Offered(parse_listing(listing))),
        (_, Some(ProbeStage::OsRelease)) => answer(None, None, Listing::NotRun),
        (_, Some(ProbeStage::RepoFile)) => answer(os, None, Listing::NotRun),
        (_, Some(ProbeStage::Refresh | ProbeStage::List)) if repository_missing(&detail()) => {
            answer(os, file, Listing::MinorMissing(detail()))
        }
        (_, Some(stage)) => answer(
            os,
            file,
            Listing::Failed {
                stage,
                detail: detail(),
            },
        ),
        (_, None) => answer(
            os,
            file,
            Listing::Failed {
                stage: ProbeStage::List,
                detail: detail(),
            },
        ),
    }
}

/// An installed package with a versioned dependency on kubeadm, kubelet or
/// kubectl (a site meta-package, an agent built for one release): an install
/// at a version it does not accept breaks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dependent {
    pub package: String,
    pub version: String,
    /// The dependency as the package database states it, for messages:
    /// `kubelet (= 1.34.3-1.1)`, `kubelet = 1.34.3-150500.1.1`.
    pub requires: String,
    /// The alternatives that satisfy it (one unless dpkg's `a | b`); each a
    /// versioned constraint on one of [`PACKAGES`].
    pub alternatives: Vec<Constraint>,
}

/// `package op version`, with the operator's meaning already settled
/// (dpkg's deprecated `<` and `>` mean `<=` and `>=`, rpm's are strict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Constraint {
    pub package: String,
    pub op: VersionOp,
    pub version: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum VersionOp {
    Less,
    LessEq,
    Eq,
    GreaterEq,
    Greater,
}

impl VersionOp {
    fn parse(text: &str, rpm: bool) -> Option<VersionOp> {
        // deb-control(5): `<` and `>` are deprecated spellings of `<=` and `>=`;
        // rpm's are strict.
        Some(match (text, rpm) {
            ("<<", _) | ("<", true) => VersionOp::Less,
            ("<=", _) | ("<", false) => VersionOp::LessEq,
            ("=", _) | ("==", _) => VersionOp::Eq,
            (">=", _) | (">", false) => VersionOp::GreaterEq,
            (">>", _) | (">", true) => VersionOp::Greater,
            _ => return None,
        })
    }

    pub fn symbol(self) -> &'static str {
        match self {
            VersionOp::Less => "<",
            VersionOp::LessEq => "<=",
            VersionOp::Eq => "=",
            VersionOp::GreaterEq => ">=",
            VersionOp::Greater => ">",
        }
    }
}

/// Parses the probe's dependency lines: dpkg-query's
/// `installed site-k8s 1.0 kubeadm (= 1.34.3-1.1), kubelet (>= 1.34), coreutils, `
/// and rpm's `site-k8s 1.0-1 kubelet = 1.34.3-150500.1.1`. The packages
/// themselves and dependencies that any version satisfies are left out.
pub fn parse_dependents(text: &str) -> Vec<Dependent> {
    let mut out: Vec<Dependent> = Vec::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let found: Vec<Dependent> = match words.first() {
            // dpkg: status, package, version, then the Depends and Pre-Depends text.
            Some(&status) if DPKG_STATUSES.contains(&status) && words.len() >= 3 => {
                // Only unpacked or configured packages count; `config-files` and
                // `not-installed` are gone.
                if matches!(status, "config-files" | "not-installed") {
                    continue;
                }
                let (package, version) = (words[1], words[2]);
                let deps = line.splitn(4, ' ').nth(3).unwrap_or_default();
                deps.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .filter_map(|group| {
                        let alternatives: Option<Vec<Constraint>> =
                            group.split('|').map(|a| deb_constraint(a.trim())).collect();
                        Some(Dependent {
                            package: package.to_string(),
                            version: version.to_string(),
                            requires: group.to_string(),
                            alternatives: alternatives?,
                        })
                    })
                    .collect()
            }
            // rpm: name, version-release, required name, comparison, version.
            Some(_) if words.len() == 5 => {
                let op = VersionOp::parse(words[3], true);
                match op {
                    Some(op) if PACKAGES.contains(&words[2]) => vec![Dependent {
                        package: words[0].to_string(),
                        version: words[1].to_string(),
                        requires: words[2..].join(" "),
                        alternatives: vec![Constraint {
                            package: words[2].to_string(),
                            op,
                            version: words[4].to_string(),
                        }],
                    }],
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        for d in found {
            if !PACKAGES.contains(&d.package.as_str()) && !out.contains(&d) {
                out.push(d);
            }
        }
    }
    out
}

/// dpkg's package states (dpkg-query(1), `db:Status-Status`).
const DPKG_STATUSES: [&str; 8] = [
    "installed",
    "unpacked",
    "half-configured",
    "half-installed",
    "triggers-awaited",
    "triggers-pending",
    "config-files",
    "not-installed",
];

/// One dpkg alternative, `kubelet (= 1.34.3-1.1)` or `kubelet:amd64 (>= 1.34)`,
/// when it constrains one of [`PACKAGES`] by version.
fn deb_constraint(text: &str) -> Option<Constraint> {
    let (name, rest) = text.split_once('(')?;
    let name = name.trim();
    let name = name.split_once(':').map_or(name, |(n, _arch)| n);
    if !PACKAGES.contains(&name) {
        return None;
    }
    let rest = rest.trim_end().strip_suffix(')')?.trim();
    let split = rest.find(|c: char| !matches!(c, '<' | '>' | '='))?;
    let (op, version) = rest.split_at(split);
    Some(Constraint {
        package: name.to_string(),
        op: VersionOp::parse(op.trim(), false)?,
        version: version.trim().to_string(),
    })
}

/// Whether a package manager's failure says the repository is not there:
/// apt-pkg's "does not have a Release file" (acquire-item.cc) after a 404,
/// apt's "File not found" for a `file:` mirror without that minor, dnf's and
/// yum's 404 on `repodata/repomd.xml`.
fn repository_missing(text: &str) -> bool {
    text.contains("does not have a Release file")
        || (text.contains("Failed to fetch") && text.contains("File not found"))
        || (text.contains("404") && (text.contains("repomd.xml") || text.contains("Not Found")))
}

/// Which minor a repository file serves (`/core:/stable:/v1.33/`), if it
/// uses the pkgs.k8s.io layout at all.
pub fn repo_minor(file: &str) -> Option<MinorVersion> {
    let marker = "/core:/stable:/v";
    let mut found = None;
    for line in file.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        if let Some(i) = line.find(marker) {
            let rest = &line[i + marker.len()..];
            let end = rest.find('/')?;
            let (major, minor) = rest[..end].split_once('.')?;
            found = Some(MinorVersion::new(major.parse().ok()?, minor.parse().ok()?));
            break;
        }
    }
    found
}

/// The versions of one package in a repository listing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Offered {
    pub kubeadm: Vec<PackageVersion>,
    pub kubelet: Vec<PackageVersion>,
    pub kubectl: Vec<PackageVersion>,
}

impl Offered {
    pub fn of(&self, package: &str) -> &[PackageVersion] {
        match package {
            "kubeadm" => &self.kubeadm,
            "kubelet" => &self.kubelet,
            _ => &self.kubectl,
        }
    }

    /// The version matching `release` with any revision: what the install
    /// glob `1.34.1-*` will pick.
    pub fn find(&self, package: &str, release: Release) -> Option<&PackageVersion> {
        self.of(package)
            .iter()
            .filter(|v| v.release() == release)
            .max_by(|a, b| a.revision.cmp(&b.revision))
    }

    /// The newest release of `minor` offered for all three packages.
    pub fn newest_of(&self, minor: MinorVersion, at_most: Option<Release>) -> Option<Release> {
        self.kubeadm
            .iter()
            .map(PackageVersion::release)
            .filter(|r| r.minor_line() == minor)
            .filter(|r| at_most.is_none_or(|m| *r <= m))
            .filter(|r| PACKAGES.iter().all(|p| self.find(p, *r).is_some()))
            .max()
    }
}

/// Parses `apt-cache madison kubeadm kubelet kubectl`:
/// `   kubeadm | 1.34.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages`,
/// and `dnf|yum list --showduplicates ...`:
/// `kubeadm.x86_64        1.34.1-150500.1.1        kubernetes`.
pub fn parse_listing(text: &str) -> Offered {
    let mut offered = Offered::default();
    for line in text.lines() {
        let (name, version) = if line.contains('|') {
            let mut cols = line.split('|').map(str::trim);
            match (cols.next(), cols.next()) {
                (Some(n), Some(v)) => (n.to_string(), v),
                _ => continue,
            }
        } else {
            let mut cols = line.split_whitespace();
            match (cols.next(), cols.next()) {
                // "kubeadm.x86_64" -> "kubeadm"
                (Some(n), Some(v)) => (
                    n.rsplit_once('.')
                        .map_or(n, |(base, _arch)| base)
                        .to_string(),
                    v,
                ),
                _ => continue,
            }
        };
        // A listed version always has its packaging revision; anything else
        // is not a package line.
        let Some(version) = PackageVersion::parse(version)
            .ok()
            .filter(|v| v.revision.is_some())
        else {
            continue;
        };
        let list = match name.as_str() {
            "kubeadm" => &mut offered.kubeadm,
            "kubelet" => &mut offered.kubelet,
            "kubectl" => &mut offered.kubectl,
            _ => continue,
        };
        if !list.contains(&version) {
            list.push(version);
        }
    }
    offered
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(cmds: &[Cmd]) -> String {
        cmds.iter()
            .map(|c| c.shell_line().unwrap())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn full_recipe(m: PackageManager) -> String {
        let r = Recipe::new(m);
        let to = Release::new(1, 34, 1);
        let mut out = vec![r.probe(to.minor_line(), "/tmp/upkeep-probe.1")];
        out.extend(r.repo_switch(to.minor_line()));
        out.extend(r.install(&["kubeadm"], to));
        out.push(r.kubeadm_version());
        out.push(r.kubeadm_plan(to));
        out.push(r.kubeadm_apply(to));
        out.push(r.kubeadm_node());
        out.extend(r.install(&["kubelet", "kubectl"], to));
        out.extend(r.restart_kubelet());
        lines(&out)
    }

    #[test]
    fn apt_recipe() {
        insta::assert_snapshot!(full_recipe(PackageManager::Apt));
    }

    #[test]
    fn dnf_recipe() {
        insta::assert_snapshot!(full_recipe(PackageManager::Dnf));
    }

    #[test]
    fn dnf5_recipe() {
        insta::assert_snapshot!(full_recipe(PackageManager::Dnf5));
    }

    #[test]
    fn yum_recipe() {
        insta::assert_snapshot!(full_recipe(PackageManager::Yum));
    }

    #[test]
    fn sudo_prefixes_every_command() {
        let r = Recipe {
            manager: PackageManager::Apt,
            sudo: true,
        };
        let cmds = r.install(&["kubeadm"], Release::new(1, 34, 1));
        assert!(cmds.iter().all(|c| c.argv()[0] == "sudo"));
        assert_eq!(cmds[0].shell_line().unwrap(), "sudo dpkg --configure -a");
        assert_eq!(
            cmds[3].shell_line().unwrap(),
            "sudo apt-get install -y 'kubeadm=1.34.1-*'"
        );
    }

    #[test]
    fn os_detection() {
        use PackageManager::*;
        for (image, want) in [
            ("Ubuntu 24.04.1 LTS", Some(Apt)),
            ("Debian GNU/Linux 12 (bookworm)", Some(Apt)),
            ("Rocky Linux 9.4 (Blue Onyx)", Some(Dnf)),
            ("CentOS Linux 7 (Core)", Some(Yum)),
            ("CentOS Stream 9", Some(Dnf)),
            ("Red Hat Enterprise Linux 8.10 (Ootpa)", Some(Dnf)),
            ("Fedora Linux 40 (Server Edition)", Some(Dnf)),
            ("Fedora Linux 41 (Server Edition)", Some(Dnf5)),
            ("Talos (v1.8.0)", None),
        ] {
            assert_eq!(PackageManager::from_os_image(image), want, "{image}");
        }
        let ubuntu = "NAME=\"Ubuntu\"\nVERSION_ID=\"24.04\"\nID=ubuntu\nID_LIKE=debian\n";
        assert_eq!(PackageManager::from_os_release(ubuntu), Some(Apt));
        let rocky = "NAME=\"Rocky Linux\"\nID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n";
        assert_eq!(PackageManager::from_os_release(rocky), Some(Dnf));
        let fedora = "NAME=\"Fedora Linux\"\nID=fedora\nVERSION_ID=42\n";
        assert_eq!(PackageManager::from_os_release(fedora), Some(Dnf5));
        let centos7 = "ID=\"centos\"\nID_LIKE=\"rhel fedora\"\nVERSION_ID=\"7\"\n";
        assert_eq!(PackageManager::from_os_release(centos7), Some(Yum));
        assert_eq!(PackageManager::from_os_release("ID=alpine\n"), None);
    }

    #[test]
    fn probe_answers_from_real_apt() {
        // Debian 12's apt 2.6 against a local mirror without the v1.36 directory.
        let stdout = format!(
            "ID=debian\n\n{PROBE_REPO_MARK}\ndeb [trusted=yes] file:///srv/mirror/core:/stable:/v1.34/deb/ /\n\n{PROBE_LIST_MARK}\nGet:3 file:/srv/mirror/core:/stable:/v1.36/deb  Packages\nErr:3 file:/srv/mirror/core:/stable:/v1.36/deb  Packages\n  File not found - /srv/mirror/core:/stable:/v1.36/deb/Packages (2: No such file or directory)\nReading package lists...\n"
        );
        let stderr = "E: Failed to fetch file:/srv/mirror/core:/stable:/v1.36/deb/Packages  File not found - /srv/mirror/core:/stable:/v1.36/deb/Packages (2: No such file or directory)\nE: Some index files failed to download. They have been ignored, or old ones used instead.\n";
        let a = parse_probe(Some(94), &stdout, stderr);
        assert_eq!(
            repo_minor(a.repo_file.as_deref().unwrap())
                .unwrap()
                .to_string(),
            "v1.34"
        );
        assert!(
            matches!(a.listing, Listing::MinorMissing(ref t) if t.contains("File not found")),
            "{a:?}"
        );
        // pkgs.k8s.io answers 404 for an unpublished minor.
        let a = parse_probe(
            Some(94),
            &format!(
                "ID=debian\n{PROBE_REPO_MARK}\ndeb x\n{PROBE_LIST_MARK}\nErr:2 https://pkgs.k8s.io/core:/stable:/v1.40/deb  Release\n  404  Not Found [IP: 1.2.3.4 443]\n"
            ),
            "E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.40/deb  Release' does not have a Release file.\n",
        );
        assert!(matches!(a.listing, Listing::MinorMissing(_)), "{a:?}");
        // The same apt listing with the minor present.
        let a = parse_probe(
            Some(0),
            &format!(
                "ID=debian\n{PROBE_REPO_MARK}\ndeb x\n{PROBE_LIST_MARK}\n   kubeadm | 1.34.3-1.1 | file:/srv/mirror/core:/stable:/v1.34/deb  Packages\n"
            ),
            "",
        );
        assert!(
            matches!(a.listing, Listing::Offered(ref o) if o.kubeadm.len() == 1),
            "{a:?}"
        );
        // A lock or a full disk is not a missing minor.
        let a = parse_probe(
            Some(93),
            &format!("ID=debian\n{PROBE_REPO_MARK}\ndeb x\n{PROBE_LIST_MARK}\n"),
            "mkdir: cannot create directory: No space left on device\n",
        );
        assert!(
            matches!(
                a.listing,
                Listing::Failed {
                    stage: ProbeStage::Scratch,
                    ..
                }
            ),
            "{a:?}"
        );
        // The transport failed before the script printed anything.
        let a = parse_probe(
            Some(255),
            "",
            "ssh: connect to host 10.0.0.7 port 22: Connection refused\n",
        );
        assert_eq!(a.os_release, None);
    }

    #[test]
    fn dependents_from_real_dpkg_query_and_rpm() {
        // Debian 12's dpkg-query 1.21 on a node with a site meta-package, the
        // probe's grep applied (an installed package that only names
        // kubelet without a version is no pin).
        let deb = "installed site-kubernetes 1.0 kubeadm (= 1.34.3-1.1), kubelet (= 1.34.3-1.1), coreutils, \n\
                   config-files old-agent 0.9 kubelet (<< 1.30), \n\
                   installed agent 2.1 kubelet (>= 1.34) | kubelet-compat, kubectl (<< 1.36~), \n";
        let d = parse_dependents(deb);
        assert_eq!(
            d.iter()
                .map(|d| (d.package.as_str(), d.requires.as_str()))
                .collect::<Vec<_>>(),
            [
                ("site-kubernetes", "kubeadm (= 1.34.3-1.1)"),
                ("site-kubernetes", "kubelet (= 1.34.3-1.1)"),
                ("agent", "kubectl (<< 1.36~)"),
            ]
        );
        assert_eq!(
            d[0].alternatives,
            [Constraint {
                package: "kubeadm".into(),
                op: VersionOp::Eq,
                version: "1.34.3-1.1".into()
            }]
        );
        assert_eq!(d[2].alternatives[0].op, VersionOp::Less);
        // Debian 12's rpm 4.18 (`rpm -qa --qf '[%{=NAME} ...]'`) on the dnf node.
        let rpm = "site-kubernetes 1.0-1 kubeadm = 1.34.3-150500.1.1\n\
                   site-kubernetes 1.0-1 kubelet = 1.34.3\n\
                   cni-plugin 1.0-1 kubelet < 1.35\n";
        let d = parse_dependents(rpm);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(d[1].requires, "kubelet = 1.34.3");
        assert_eq!(
            d[2].alternatives[0].op,
            VersionOp::Less,
            "rpm's < is strict"
        );
        // The packages themselves are never their own pins.
        assert!(parse_dependents("installed kubeadm 1.34.3-1.1 kubelet (>= 1.34), \n").is_empty());
        // The whole probe: the section between its marks.
        let stdout = format!(
            "ID=debian\n\n{PROBE_REPO_MARK}\ndeb x\n\n{PROBE_DEPENDENTS_MARK}\n{deb}{PROBE_LIST_MARK}\n   kubeadm | 1.35.2-1.1 | file:/srv/mirror/core:/stable:/v1.35/deb  Packages\n"
        );
        let a = parse_probe(Some(0), &stdout, "");
        assert_eq!(a.dependents.len(), 3);
        assert_eq!(a.repo_file.as_deref(), Some("deb x\n\n"));
        assert!(matches!(a.listing, Listing::Offered(ref o) if o.kubeadm.len() == 1));
    }

    #[test]
    fn repo_minor_from_files() {
        let deb = "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n";
        assert_eq!(repo_minor(deb), Some(MinorVersion::new(1, 33)));
        let rpm = "[kubernetes]\nname=Kubernetes\nbaseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/\nenabled=1\ngpgcheck=1\ngpgkey=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/repodata/repomd.xml.key\nexclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n";
        assert_eq!(repo_minor(rpm), Some(MinorVersion::new(1, 34)));
        let legacy = "deb https://apt.kubernetes.io/ kubernetes-xenial main\n";
        assert_eq!(repo_minor(legacy), None);
        let commented = "# https://pkgs.k8s.io/core:/stable:/v1.30/deb/\n";
        assert_eq!(repo_minor(commented), None);
    }

    #[test]
    fn listings_parse_with_real_revisions() {
        let madison = "   kubeadm | 1.34.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages\n   kubeadm | 1.34.0-2.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages\n   kubelet | 1.34.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages\n   kubelet | 1.34.0-2.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages\n   kubectl | 1.34.1-1.1 | https://pkgs.k8s.io/core:/stable:/v1.34/deb  Packages\n";
        let o = parse_listing(madison);
        assert_eq!(o.kubeadm.len(), 2);
        assert_eq!(
            o.find("kubeadm", Release::new(1, 34, 0)).unwrap().revision,
            Some("2.1".into())
        );
        let minor = MinorVersion::new(1, 34);
        assert_eq!(o.newest_of(minor, None), Some(Release::new(1, 34, 1)));
        // kubectl 1.34.0 is missing, so 1.34.0 is not complete.
        assert_eq!(o.newest_of(minor, Some(Release::new(1, 34, 0))), None);

        let dnf = "Last metadata expiration check: 0:01:02 ago.\nAvailable Packages\nkubeadm.x86_64   1.34.1-150500.1.1   kubernetes\nkubelet.x86_64   1.34.1-150500.1.1   kubernetes\nkubectl.x86_64   1.34.1-150500.1.1   kubernetes\n";
        let o = parse_listing(dnf);
        assert_eq!(
            o.find("kubelet", Release::new(1, 34, 1)).unwrap().revision,
            Some("150500.1.1".into())
        );
        assert_eq!(o.newest_of(minor, None), Some(Release::new(1, 34, 1)));

        // A version without its packaging revision (or with an empty one) is
        // not a package line: the revision is never assumed.
        let o = parse_listing("   kubeadm | 1.34.2 | x\n   kubeadm | 1.34.3- | x\n");
        assert!(o.kubeadm.is_empty(), "{o:?}");
    }
}
