//! Real test nodes: a lab cluster whose nodes are real Debian roots with real apt and dpkg,
//! reached over real ssh, so `kubectl upgrade-node`'s commands meet a real package manager.
//!
//! What one [`RealCluster`] is made of:
//! * **A Debian root** made once with `debootstrap --variant=minbase` for this machine's own
//!   release (its `VERSION_CODENAME`, from the mirror this machine's apt configuration names),
//!   cached under `target/realnode/` and copied (`cp -a --reflink=auto`) for every node.
//! * **A package mirror laid out like pkgs.k8s.io** (`core:/stable:/v1.N/deb/`, `Packages` from
//!   `dpkg-scanpackages`, `Release` from `apt-ftparchive`), copied into each root at
//!   `/srv/mirror` and named by a `file:` line in `/etc/apt/sources.list.d/kubernetes.list`.
//!   It carries stand-in kubeadm, kubelet and kubectl `.deb`s built with `dpkg-deb` for the
//!   versions the cluster publishes. Their binaries are two-line shell scripts: they run
//!   `upkeep-lab node-shell --report-installed NODE -- kubeadm ARGS...`, so the lab applies
//!   `kubeadm upgrade apply|node`, `kubeadm upgrade plan` and the kubelet's version as its
//!   simulated node shell does, with the versions the real dpkg database holds.
//! * **No systemd runs in a root**: `/usr/local/bin/systemctl` is the same kind of stand-in,
//!   so `systemctl restart kubelet` makes the lab's kubelet report the installed version.
//! * **A network namespace per node** holding the node's InternalIP (the lab's scenario
//!   names it), a veth to a bridge on this machine, and Debian's `sshd` listening on that
//!   address; every session runs in the node's root (`ForceCommand chroot ROOT sh -c
//!   "$SSH_ORIGINAL_COMMAND"`). The lab listens on the bridge address.
//! * **The test's own ssh configuration**: a directory holding an `ssh` that runs
//!   `ssh -F CONFIG`, put first on the plugin's PATH (ssh reads `~/.ssh` from the password
//!   database, not from `$HOME`), so the default transport (`ssh -o BatchMode=yes
//!   {address}`) works with no `--remote-shell`.
//!
//! Bridges, namespaces and veths are named `upk<K>...`, K being the first free index
//! (creating the bridge is the claim), and removed when the cluster is dropped, on failure
//! too. Addresses come from 198.18.K.0/24 (RFC 2544's benchmarking range).
//!
//! Needs root and debootstrap, openssh-server, dpkg-dev, apt-utils and iproute2
//! (`scripts/setup.sh` installs them); a missing piece fails the test, it never skips.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::{Lab, LabOptions, bin, wait_for};

/// The packages the stand-in mirror carries (those `kubectl upgrade-node` installs).
pub const PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];

/// One node of a [`RealCluster`].
#[derive(Debug, Clone)]
pub struct NodeSpec {
    pub name: String,
    pub control_plane: bool,
    pub family: Family,
    /// The installed (and held) package version, e.g. `1.34.3-1.1`.
    pub installed: String,
}

/// A node's package manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// The Debian root: apt and dpkg, the repository a `file:` mirror.
    Apt,
    /// The RPM root ([`dnf_base`]): dnf and rpm, `/etc/os-release` of Rocky Linux 9, the
    /// repository served over HTTP from this machine.
    Dnf,
}

/// The label every real node carries in the lab (`-l upkeep.dev/real-node=true` selects
/// them, leaving out [`ClusterSpec::simulated`] nodes, which have no sshd).
pub const REAL_NODE_LABEL: &str = "upkeep.dev/real-node";

/// `/etc/os-release` of an RPM node, so that tools pick dnf as they would on Rocky Linux.
pub const ROCKY_OS_RELEASE: &str = "NAME=\"Rocky Linux\"\nVERSION=\"9.6 (Blue Onyx)\"\nID=\"rocky\"\n\
ID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.6\"\nPLATFORM_ID=\"platform:el9\"\n\
PRETTY_NAME=\"Rocky Linux 9.6 (Blue Onyx)\"\n";

/// What a [`RealCluster`] is started with.
#[derive(Debug, Clone)]
pub struct ClusterSpec {
    pub nodes: Vec<NodeSpec>,
    /// What each minor repository publishes: `("v1.35", ["1.35.2-1.1"])`.
    pub published: Vec<(String, Vec<String>)>,
    /// Extra `upkeep-lab serve` arguments (e.g. `--time-scale`).
    pub lab_args: Vec<String>,
    /// Nodes only the lab's simulated node shell serves (no root, no sshd), with the same
    /// osImage as a real node of their family: the other side of a conformance comparison.
    pub simulated: Vec<NodeSpec>,
    /// Site packages on simulated nodes (the scenario's `sitePackages`); on a real node,
    /// [`RealNode::install_site_package`] installs the same package for real.
    pub site_packages: Vec<SitePackage>,
}

/// A package beside kubeadm's three that requires `pins` at exactly the node's installed
/// versions, as a site meta-package does (`Depends: kubeadm (= 1.34.3-1.1)`; rpm
/// `Requires: kubeadm = 1.34.3-150500.1.1`): it stands in the way of an upgrade.
#[derive(Debug, Clone)]
pub struct SitePackage {
    pub node: String,
    pub name: String,
    pub pins: Vec<String>,
}

/// Runs a command that must succeed; panics with its output otherwise.
pub fn must(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{what}: {cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> Output {
    Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (iproute2: scripts/setup.sh installs it)")
}

fn require_root() {
    let uid = must(Command::new("id").arg("-u"), "id -u");
    assert_eq!(
        uid.trim(),
        "0",
        "real-node tests need root (network namespaces, debootstrap, chroot): run them as root, \
         as scripts/test.sh does in CI"
    );
    for tool in [
        "debootstrap",
        "/usr/sbin/sshd",
        "ssh",
        "ssh-keygen",
        "dpkg-deb",
        "dpkg-scanpackages",
        "apt-ftparchive",
        "ip",
        "rpmbuild",
        "createrepo_c",
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{tool} is missing: run scripts/setup.sh, which installs debootstrap, openssh-server, \
             dpkg-dev, apt-utils, iproute2, rpm (rpmbuild) and createrepo-c"
        );
    }
}

/// The directory real-node data lives in: `target/realnode` (beside the built binaries).
fn cache_root() -> PathBuf {
    let target = crate::bin_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .to_path_buf();
    target.join("realnode")
}

/// This machine's release codename and the apt mirror its configuration uses for it.
pub fn host_release() -> (String, String) {
    let os = std::fs::read_to_string("/etc/os-release").expect("read /etc/os-release");
    let suite = os
        .lines()
        .find_map(|l| l.strip_prefix("VERSION_CODENAME="))
        .map(|s| s.trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .expect("/etc/os-release names no VERSION_CODENAME: real-node tests need a Debian or Ubuntu machine");
    let mut texts = Vec::new();
    if let Ok(t) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push((false, t));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.flatten().map(|e| e.path()).collect();
        paths.sort();
        for p in paths {
            let name = p.to_string_lossy().into_owned();
            if (name.ends_with(".sources") || name.ends_with(".list"))
                && let Ok(t) = std::fs::read_to_string(&p)
            {
                texts.push((name.ends_with(".sources"), t));
            }
        }
    }
    for (deb822, text) in &texts {
        if let Some(uri) = if *deb822 {
            deb822_uri(text, &suite)
        } else {
            one_line_uri(text, &suite)
        } {
            return (suite, uri);
        }
    }
    panic!(
        "this machine's apt configuration names no mirror for {suite} (deb lines in \
         /etc/apt/sources.list or /etc/apt/sources.list.d): debootstrap needs one"
    )
}

fn one_line_uri(text: &str, suite: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("deb ")?;
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']')?.1,
            None => rest,
        };
        let mut w = rest.split_whitespace();
        let (uri, s) = (w.next()?, w.next()?);
        (s == suite).then(|| uri.to_string())
    })
}

fn deb822_uri(text: &str, suite: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().to_string())
            })
        };
        let types = field("Types")?;
        let suites = field("Suites")?;
        let enabled = field("Enabled").is_none_or(|e| e != "no");
        (enabled
            && types.split_whitespace().any(|t| t == "deb")
            && suites.split_whitespace().any(|s| s == suite))
        .then(|| field("URIs"))
        .flatten()
        .and_then(|u| u.split_whitespace().next().map(str::to_string))
    })
}

/// The cached minbase root for this machine's release, made on first use. Callers copy it.
pub fn debian_base() -> PathBuf {
    require_root();
    let (suite, mirror) = host_release();
    cached(&format!("debian-{suite}-minbase"), |tmp| {
        must(
            Command::new("debootstrap")
                .args(["--variant=minbase", &suite])
                .arg(tmp)
                .arg(&mirror),
            &format!("debootstrap --variant=minbase {suite} from {mirror}"),
        );
        offline(tmp);
    })
}

/// The root of an RPM node: the minbase root with Debian's dnf and rpm (installed from this
/// machine's mirror), rpm's database at `/var/lib/rpm` as on RHEL (Debian's rpm defaults to
/// `~/.rpmdb`), and no apt sources. Made once, cached beside [`debian_base`].
pub fn dnf_base() -> PathBuf {
    let base = debian_base();
    let (suite, mirror) = host_release();
    cached(&format!("debian-{suite}-minbase-dnf"), |tmp| {
        must(
            Command::new("cp")
                .args(["-a", "--reflink=auto", "-T"])
                .arg(&base)
                .arg(tmp),
            "copy the base root",
        );
        std::fs::write(
            tmp.join("etc/apt/sources.list"),
            format!("deb {mirror} {suite} main\n"),
        )
        .unwrap();
        must(
            Command::new("chroot")
                .arg(tmp)
                .args(["apt-get", "-q", "update"]),
            "apt-get update in the dnf root",
        );
        must(
            Command::new("chroot")
                .arg(tmp)
                .args([
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    "dnf",
                    "rpm",
                ])
                .env("DEBIAN_FRONTEND", "noninteractive"),
            "apt-get install dnf rpm in the dnf root",
        );
        std::fs::create_dir_all(tmp.join("etc/rpm")).unwrap();
        std::fs::write(tmp.join("etc/rpm/macros"), "%_dbpath /var/lib/rpm\n").unwrap();
        std::fs::create_dir_all(tmp.join("var/lib/rpm")).unwrap();
        must(
            Command::new("chroot").arg(tmp).args(["rpm", "--initdb"]),
            "rpm --initdb",
        );
        std::fs::create_dir_all(tmp.join("etc/yum.repos.d")).unwrap();
        offline(tmp);
    })
}

/// No apt sources and no package lists: the nodes have no route to the outside.
fn offline(root: &Path) {
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list"));
    let _ = std::fs::remove_file(root.join("etc/apt/sources.list.d/debian.sources"));
    must(
        Command::new("chroot").arg(root).args(["apt-get", "clean"]),
        "apt-get clean in the new root",
    );
    if let Ok(lists) = std::fs::read_dir(root.join("var/lib/apt/lists")) {
        for e in lists.flatten() {
            if e.path().is_file() && e.file_name() != "lock" {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

/// `target/realnode/NAME`, made by `make` in a scratch directory on first use; one test (or
/// test process) makes it while the others wait on a lock.
fn cached(name: &str, make: impl FnOnce(&Path)) -> PathBuf {
    let root = cache_root();
    std::fs::create_dir_all(&root).expect("create target/realnode");
    let done = root.join(name);
    let lock = std::fs::File::create(root.join(format!(".{name}.lock"))).expect("lock file");
    lock.lock().expect("lock the cached root");
    if done.join(".upkeep-ready").exists() {
        return done;
    }
    let tmp = root.join(format!("{name}.partial"));
    let _ = std::fs::remove_dir_all(&tmp);
    let _ = std::fs::remove_dir_all(&done);
    make(&tmp);
    std::fs::write(tmp.join(".upkeep-ready"), "").expect("mark the root ready");
    std::fs::rename(&tmp, &done).expect("move the new root in place");
    done
}

/// The stand-in for a node binary: the lab runs it, told what dpkg or rpm installed.
fn stand_in(name: &str) -> String {
    format!(
        "#!/bin/sh\n# Stand-in {name} for upkeep's real-node tests: the lab applies what {name} would do.\n\
         exec /usr/local/lib/upkeep/upkeep-lab node-shell --kubeconfig /etc/upkeep/lab.kubeconfig \
         --report-installed \"$(cat /etc/upkeep/node)\" -- {name} \"$@\"\n"
    )
}

/// The stand-in debs' postinst: it waits while [`INSTALL_GATE`] exists in the root, so a
/// test can interrupt a real `apt-get install` while dpkg is configuring the package.
pub const INSTALL_GATE_SCRIPT: &str = "#!/bin/sh\n# upkeep tests: hold the configuration while the gate file exists (never on a real node).\n\
while [ -e /etc/upkeep/hold-install ]; do sleep 0.1; done\nexit 0\n";

/// The gate file [`INSTALL_GATE_SCRIPT`] waits on, relative to a node's root.
pub const INSTALL_GATE: &str = "etc/upkeep/hold-install";

/// Builds the pkgs.k8s.io-shaped deb mirror in `dir` (`dir/core:/stable:/v1.N/deb/`).
pub fn build_deb_mirror(dir: &Path, published: &[(String, Vec<String>)]) {
    let arch = must(
        Command::new("dpkg").arg("--print-architecture"),
        "dpkg --print-architecture",
    );
    let arch = arch.trim();
    let work = dir.join(".build");
    for (minor, versions) in published {
        let repo = dir.join(format!("core:/stable:/{minor}/deb"));
        std::fs::create_dir_all(&repo).expect("mirror dir");
        for v in versions {
            for pkg in PACKAGES {
                let d = work.join(format!("{pkg}-{v}"));
                std::fs::create_dir_all(d.join("DEBIAN")).unwrap();
                std::fs::create_dir_all(d.join("usr/bin")).unwrap();
                std::fs::write(
                    d.join("DEBIAN/control"),
                    format!(
                        "Package: {pkg}\nVersion: {v}\nArchitecture: {arch}\nMaintainer: upkeep tests <tests@upkeep.invalid>\n\
                         Section: admin\nPriority: optional\nDescription: stand-in {pkg} for upkeep's real-node tests\n"
                    ),
                )
                .unwrap();
                let exe = d.join(format!("usr/bin/{pkg}"));
                std::fs::write(&exe, stand_in(pkg)).unwrap();
                must(Command::new("chmod").arg("755").arg(&exe), "chmod");
                let postinst = d.join("DEBIAN/postinst");
                std::fs::write(&postinst, INSTALL_GATE_SCRIPT).unwrap();
                must(Command::new("chmod").arg("755").arg(&postinst), "chmod");
                must(
                    Command::new("dpkg-deb")
                        .args(["--root-owner-group", "-b"])
                        .arg(&d)
                        .arg(repo.join(format!("{pkg}_{v}_{arch}.deb"))),
                    "dpkg-deb -b",
                );
            }
        }
        let packages = must(
            Command::new("dpkg-scanpackages")
                .args(["-m", "."])
                .current_dir(&repo),
            "dpkg-scanpackages",
        );
        std::fs::write(repo.join("Packages"), packages).unwrap();
        let release = must(
            Command::new("apt-ftparchive")
                .args(["release", "."])
                .current_dir(&repo),
            "apt-ftparchive release",
        );
        std::fs::write(repo.join("Release"), release).unwrap();
    }
    let _ = std::fs::remove_dir_all(&work);
}

/// The RPM version of a published version: pkgs.k8s.io's RPMs carry OBS release numbers
/// (`1.35.2-150500.1.1`) where the debs have `1.35.2-1.1`, as the lab's repositories do.
pub fn rpm_version(published: &str) -> String {
    let upstream = published.split('-').next().unwrap_or(published);
    format!("{upstream}-150500.1.1")
}

/// Builds the pkgs.k8s.io-shaped RPM mirror in `dir` (`dir/core:/stable:/v1.N/rpm/`, with
/// `repodata/` from `createrepo_c`), stand-in packages built with `rpmbuild`.
pub fn build_rpm_mirror(dir: &Path, published: &[(String, Vec<String>)]) {
    let top = dir.join(".rpmbuild");
    for (minor, versions) in published {
        let repo = dir.join(format!("core:/stable:/{minor}/rpm"));
        std::fs::create_dir_all(&repo).expect("mirror dir");
        for v in versions {
            let rv = rpm_version(v);
            let (version, release) = rv.split_once('-').expect("version-release");
            for pkg in PACKAGES {
                let spec = top.join(format!("{pkg}-{rv}.spec"));
                std::fs::create_dir_all(&top).unwrap();
                let script = stand_in(pkg).replace('%', "%%");
                std::fs::write(
                    &spec,
                    format!(
                        "Name: {pkg}\nVersion: {version}\nRelease: {release}\nSummary: stand-in {pkg} for upkeep's real-node tests\n\
                         License: Apache-2.0\nBuildArch: noarch\nAutoReqProv: no\n%description\nstand-in {pkg}\n\
                         %install\nmkdir -p %{{buildroot}}/usr/bin\ncat > %{{buildroot}}/usr/bin/{pkg} <<'UPKEEP_EOF'\n{script}UPKEEP_EOF\n\
                         chmod 755 %{{buildroot}}/usr/bin/{pkg}\n%files\n/usr/bin/{pkg}\n"
                    ),
                )
                .unwrap();
                must(
                    Command::new("rpmbuild")
                        .arg("--define")
                        .arg(format!("_topdir {}", top.display()))
                        .arg("--define")
                        .arg(format!("_rpmdir {}", repo.display()))
                        .arg("--define")
                        .arg("_build_name_fmt %%{NAME}-%%{VERSION}-%%{RELEASE}.%%{ARCH}.rpm")
                        .arg("-bb")
                        .arg(&spec),
                    "rpmbuild -bb",
                );
            }
        }
        must(
            Command::new("createrepo_c").arg("-q").arg(&repo),
            "createrepo_c",
        );
    }
    let _ = std::fs::remove_dir_all(&top);
}

/// A static file server on `addr` (port 0: any) for the RPM mirror, as pkgs.k8s.io answers
/// over HTTP: the file, or 404 for a path it does not have (dnf's "Status code: 404").
/// Runs until the process ends; returns the bound address.
pub fn serve_dir(dir: &Path, addr: &str) -> std::net::SocketAddr {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind(addr).expect("bind the mirror server");
    let bound = listener.local_addr().unwrap();
    let dir = dir.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let dir = dir.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(match conn.try_clone() {
                    Ok(c) => c,
                    Err(_) => return,
                });
                let mut conn = conn;
                loop {
                    let mut request = String::new();
                    if reader.read_line(&mut request).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut header = String::new();
                    while reader.read_line(&mut header).unwrap_or(0) > 2 {
                        header.clear();
                    }
                    let mut words = request.split_whitespace();
                    let (method, target) =
                        (words.next().unwrap_or(""), words.next().unwrap_or("/"));
                    let path = target
                        .split('?')
                        .next()
                        .unwrap_or("/")
                        .replace("%3A", ":")
                        .replace("%3a", ":");
                    let file = dir.join(path.trim_start_matches('/'));
                    let safe = !path.split('/').any(|c| c == "..");
                    let (status, body) = match std::fs::read(&file) {
                        Ok(b) if safe && file.is_file() => ("200 OK", b),
                        _ => ("404 Not Found", b"404 page not found\n".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\r\n",
                        body.len()
                    );
                    if conn.write_all(head.as_bytes()).is_err()
                        || (method != "HEAD" && conn.write_all(&body).is_err())
                    {
                        return;
                    }
                }
            });
        }
    });
    bound
}

/// The network of one cluster: a bridge on this machine and a namespace per node.
/// Dropping it removes them.
pub struct Net {
    pub index: u32,
    pub bridge: String,
    namespaces: Vec<String>,
}

impl Net {
    /// Claims the first free `upk<K>br` and gives it 198.18.K.1/24.
    pub fn create() -> Net {
        let start = std::process::id() % 200;
        for i in 0..200 {
            let k = (start + i) % 200 + 20;
            let bridge = format!("upk{k}br");
            if ip(&["link", "add", &bridge, "type", "bridge"])
                .status
                .success()
            {
                let net = Net {
                    index: k,
                    bridge: bridge.clone(),
                    namespaces: Vec::new(),
                };
                must(
                    Command::new("ip").args([
                        "addr",
                        "add",
                        &format!("{}/24", net.gateway()),
                        "dev",
                        &bridge,
                    ]),
                    "address the bridge",
                );
                must(
                    Command::new("ip").args(["link", "set", &bridge, "up"]),
                    "bridge up",
                );
                return net;
            }
        }
        panic!("no free upk<K>br bridge name among 200: remove stale ones with `ip link del`")
    }

    /// This machine's address on the bridge (where the lab listens).
    pub fn gateway(&self) -> String {
        format!("198.18.{}.1", self.index)
    }

    /// The address of node number `i`.
    pub fn address(&self, i: usize) -> String {
        format!("198.18.{}.{}", self.index, 11 + i)
    }

    /// A namespace for node `i` holding its address, reached through a veth on the bridge.
    pub fn add_node(&mut self, i: usize) -> String {
        let ns = format!("upk{}n{i}", self.index);
        let host_end = format!("upk{}v{i}", self.index);
        must(
            Command::new("ip").args(["netns", "add", &ns]),
            "ip netns add",
        );
        self.namespaces.push(ns.clone());
        must(
            Command::new("ip").args([
                "link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]),
            "veth pair",
        );
        must(
            Command::new("ip").args(["link", "set", &host_end, "master", &self.bridge, "up"]),
            "veth on the bridge",
        );
        let addr = format!("{}/24", self.address(i));
        for args in [
            vec!["addr", "add", addr.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "lo", "up"],
        ] {
            let mut full = vec!["-n", ns.as_str()];
            full.extend(args);
            must(
                Command::new("ip").args(&full),
                "configure the node namespace",
            );
        }
        ns
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (i, ns) in self.namespaces.iter().enumerate() {
            // Deleting one end deletes the pair, even while a process still holds the
            // namespace (which keeps it, and so its end, alive after `netns del`).
            let _ = ip(&["link", "del", &format!("upk{}v{i}", self.index)]);
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}

/// A child process killed when dropped (sshd).
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One real node: its root, address and sshd.
pub struct RealNode {
    pub name: String,
    pub family: Family,
    pub address: String,
    pub root: PathBuf,
    pub namespace: String,
    _sshd: Daemon,
}

impl RealNode {
    /// Runs `argv` inside the node's root (`chroot`), as the test's own look at the node.
    pub fn chroot(&self, argv: &[&str]) -> Output {
        Command::new("chroot")
            .arg(&self.root)
            .args(argv)
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .expect("run chroot")
    }

    /// Like [`RealNode::chroot`]; the command must succeed. Returns stdout.
    pub fn chroot_ok(&self, argv: &[&str]) -> String {
        let out = self.chroot(argv);
        assert!(
            out.status.success(),
            "{argv:?} in node {} failed ({}):\nstdout: {}\nstderr: {}",
            self.name,
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Installed versions of [`PACKAGES`] by dpkg or rpm (absent when not installed).
    pub fn installed(&self) -> BTreeMap<String, String> {
        let query: &[&str] = match self.family {
            Family::Apt => &[
                "dpkg-query",
                "-W",
                "-f",
                "${db:Status-Status} ${Package} ${Version}\\n",
            ],
            Family::Dnf => &[
                "rpm",
                "-q",
                "--qf",
                "installed %{NAME} %{VERSION}-%{RELEASE}\\n",
            ],
        };
        let out = self.chroot(&[query, &PACKAGES[..]].concat());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut w = l.split_whitespace();
                match (w.next(), w.next(), w.next()) {
                    (Some("installed"), Some(p), Some(v)) => Some((p.to_string(), v.to_string())),
                    _ => None,
                }
            })
            .collect()
    }

    /// Installs [`SitePackage`] `name` (version 1.0) requiring `pins` at exactly the versions
    /// installed now: a `.deb` from `dpkg-deb` installed with `dpkg -i`, or an `.rpm` from
    /// `rpmbuild` installed with `rpm -i`.
    pub fn install_site_package(&self, name: &str, pins: &[&str]) {
        let installed = self.installed();
        let version = |p: &str| {
            installed
                .get(p)
                .unwrap_or_else(|| panic!("{p} is not installed on {}", self.name))
                .clone()
        };
        let work = tempfile::tempdir().expect("build dir");
        let file = match self.family {
            Family::Apt => {
                let d = work.path().join("pkg");
                std::fs::create_dir_all(d.join("DEBIAN")).unwrap();
                let depends: Vec<String> = pins
                    .iter()
                    .map(|p| format!("{p} (= {})", version(p)))
                    .collect();
                std::fs::write(
                    d.join("DEBIAN/control"),
                    format!(
                        "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: upkeep tests <tests@upkeep.invalid>\n\
                         Depends: {}\nDescription: site package pinning {} for upkeep's real-node tests\n",
                        depends.join(", "),
                        pins.join(", ")
                    ),
                )
                .unwrap();
                let deb = work.path().join(format!("{name}_1.0_all.deb"));
                must(
                    Command::new("dpkg-deb")
                        .args(["--root-owner-group", "-b"])
                        .arg(&d)
                        .arg(&deb),
                    "dpkg-deb -b",
                );
                deb
            }
            Family::Dnf => {
                let requires: String = pins
                    .iter()
                    .map(|p| format!("Requires: {p} = {}\n", version(p)))
                    .collect();
                let spec = work.path().join(format!("{name}.spec"));
                std::fs::write(
                    &spec,
                    format!(
                        "Name: {name}\nVersion: 1.0\nRelease: 1\nSummary: site package for upkeep's real-node tests\n\
                         License: Apache-2.0\nBuildArch: noarch\nAutoReqProv: no\n{requires}%description\nsite package\n%files\n"
                    ),
                )
                .unwrap();
                must(
                    Command::new("rpmbuild")
                        .arg("--define")
                        .arg(format!("_topdir {}", work.path().join("top").display()))
                        .arg("--define")
                        .arg(format!("_rpmdir {}", work.path().display()))
                        .arg("--define")
                        .arg("_build_name_fmt %%{NAME}.rpm")
                        .arg("-bb")
                        .arg(&spec),
                    "rpmbuild -bb",
                );
                work.path().join(format!("{name}.rpm"))
            }
        };
        let inside = format!("tmp/{}", file.file_name().unwrap().to_string_lossy());
        std::fs::copy(&file, self.root.join(&inside)).unwrap();
        let path = format!("/{inside}");
        match self.family {
            Family::Apt => self.chroot_ok(&["dpkg", "-i", &path]),
            Family::Dnf => self.chroot_ok(&["rpm", "-i", &path]),
        };
        let _ = std::fs::remove_file(self.root.join(&inside));
    }

    /// Removes a package [`RealNode::install_site_package`] installed.
    pub fn remove_site_package(&self, name: &str) {
        match self.family {
            Family::Apt => self.chroot_ok(&["dpkg", "-r", name]),
            Family::Dnf => self.chroot_ok(&["rpm", "-e", name]),
        };
    }

    /// Processes running in this node's root whose command line contains `needle`.
    pub fn processes(&self, needle: &str) -> Vec<u32> {
        let root = std::fs::canonicalize(&self.root).unwrap_or_else(|_| self.root.clone());
        std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/root")).is_ok_and(|r| r == root)
                    && std::fs::read(format!("/proc/{pid}/cmdline"))
                        .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
            })
            .collect()
    }

    /// `dpkg --audit`: empty when dpkg's database is consistent.
    pub fn dpkg_audit(&self) -> String {
        let out = self.chroot(&["dpkg", "--audit"]);
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `apt-mark showhold`, sorted.
    pub fn holds(&self) -> Vec<String> {
        let mut h: Vec<String> = self
            .chroot_ok(&["apt-mark", "showhold"])
            .lines()
            .map(str::to_string)
            .collect();
        h.sort();
        h
    }

    /// The repository file the node's package manager reads.
    pub fn repo_file(&self) -> String {
        let path = match self.family {
            Family::Apt => "etc/apt/sources.list.d/kubernetes.list",
            Family::Dnf => "etc/yum.repos.d/kubernetes.repo",
        };
        std::fs::read_to_string(self.root.join(path)).unwrap_or_default()
    }

    /// Path, inode, mtime and content of every file and directory under the package
    /// manager's configuration and state (`/etc/apt`, `/var/lib/apt/lists`,
    /// `/var/lib/dpkg/status`; dnf: `/etc/yum.repos.d`, `/etc/dnf`, the rpm database, dnf's
    /// history): equal snapshots mean the node was not written, not even rewritten with the
    /// same bytes. SQLite's `*-shm` wal-index files are left out (see [`walk`]).
    pub fn package_state(&self) -> BTreeMap<String, (u64, i64, i64, Vec<u8>)> {
        let mut out = BTreeMap::new();
        let tops: &[&str] = match self.family {
            Family::Apt => &["etc/apt", "var/lib/apt/lists", "var/lib/dpkg/status"],
            Family::Dnf => &["etc/yum.repos.d", "etc/dnf", "var/lib/rpm", "var/lib/dnf"],
        };
        for top in tops {
            walk(&self.root, &self.root.join(top), &mut out);
        }
        out
    }
}

fn walk(root: &Path, p: &Path, out: &mut BTreeMap<String, (u64, i64, i64, Vec<u8>)>) {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return;
    };
    let content = if meta.is_file() {
        std::fs::read(p).unwrap_or_default()
    } else {
        Vec::new()
    };
    let rel = p.strip_prefix(root).unwrap_or(p).display().to_string();
    // SQLite's wal-index (`*-shm`, the rpm and dnf databases) is shared memory that every
    // reader maps and writes; it holds no database content (sqlite.org/walformat.html).
    if rel.ends_with("-shm") {
        return;
    }
    out.insert(rel, (meta.ino(), meta.mtime(), meta.mtime_nsec(), content));
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for e in entries {
            walk(root, &e, out);
        }
    }
}

/// A lab whose nodes are real apt nodes over ssh. Dropping it stops the lab and the sshds
/// and removes the network and the roots.
pub struct RealCluster {
    pub lab: Lab,
    pub nodes: Vec<RealNode>,
    /// Holds `ssh` (the wrapper using [`RealCluster::ssh_config`]) for the plugin's PATH.
    pub ssh_bin: PathBuf,
    pub ssh_config: PathBuf,
    net: Net,
    dir: tempfile::TempDir,
}

impl RealCluster {
    pub fn start(spec: &ClusterSpec) -> RealCluster {
        let base = debian_base();
        let rpm_base = spec
            .nodes
            .iter()
            .any(|n| n.family == Family::Dnf)
            .then(dnf_base);
        let runs = cache_root().join("run");
        std::fs::create_dir_all(&runs).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("cluster-")
            .tempdir_in(&runs)
            .expect("cluster dir");
        let mut net = Net::create();

        // The lab, its scenario naming each node's address.
        let os_image = std::fs::read_to_string(base.join("etc/os-release"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| "Debian GNU/Linux".into());
        let version_of = |pkg: &str| format!("v{}", pkg.split('-').next().unwrap_or(pkg));
        let api_version = spec
            .nodes
            .iter()
            .find(|n| n.control_plane)
            .map(|n| version_of(&n.installed))
            .expect("a control-plane node");
        let mut scenario = format!(
            "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {{name: real-nodes}}\n\
             spec:\n  version: {api_version}\n  kubeadm: true\n  nodes:\n"
        );
        for (i, n) in spec.nodes.iter().enumerate() {
            let v = version_of(&n.installed);
            scenario.push_str(&format!(
                "  - name: {}\n    role: {}\n    kubeletVersion: {v}\n{}    osImage: {}\n    internalIP: {}\n    labels: {{{REAL_NODE_LABEL}: \"true\"}}\n",
                n.name,
                if n.control_plane { "control-plane" } else { "worker" },
                if n.control_plane {
                    format!("    controlPlaneVersion: {v}\n")
                } else {
                    String::new()
                },
                match n.family {
                    Family::Apt => os_image.as_str(),
                    Family::Dnf => "Rocky Linux 9.6 (Blue Onyx)",
                },
                net.address(i)
            ));
        }
        for n in &spec.simulated {
            let v = version_of(&n.installed);
            scenario.push_str(&format!(
                "  - name: {}\n    role: {}\n    kubeletVersion: {v}\n{}    osImage: {}\n",
                n.name,
                if n.control_plane {
                    "control-plane"
                } else {
                    "worker"
                },
                if n.control_plane {
                    format!("    controlPlaneVersion: {v}\n")
                } else {
                    String::new()
                },
                match n.family {
                    Family::Apt => os_image.as_str(),
                    Family::Dnf => "Rocky Linux 9.6 (Blue Onyx)",
                },
            ));
            let site: Vec<String> = spec
                .site_packages
                .iter()
                .filter(|s| s.node == n.name)
                .map(|s| format!("{{name: {}, pins: [{}]}}", s.name, s.pins.join(", ")))
                .collect();
            if !site.is_empty() {
                scenario.push_str(&format!("    sitePackages: [{}]\n", site.join(", ")));
            }
        }
        scenario.push_str("  packages:\n    repositories:\n");
        for (minor, versions) in &spec.published {
            scenario.push_str(&format!(
                "    - minor: {minor}\n      versions: [{}]\n",
                versions.join(", ")
            ));
        }
        let scenario_file = dir.path().join("scenario.yaml");
        std::fs::write(&scenario_file, &scenario).unwrap();
        let lab = Lab::with(LabOptions {
            scenario: Some(scenario_file.display().to_string()),
            listen: Some(format!("{}:0", net.gateway())),
            extra: spec.lab_args.clone(),
            ..Default::default()
        });

        // The mirror, once per cluster.
        let mirror = dir.path().join("mirror");
        build_deb_mirror(&mirror, &spec.published);
        let rpm_mirror = rpm_base.as_ref().map(|_| {
            let d = dir.path().join("rpm-mirror");
            build_rpm_mirror(&d, &spec.published);
            serve_dir(&d, &format!("{}:0", net.gateway()))
        });

        // ssh: one host key and one client key for the cluster, the test's own config.
        let ssh = dir.path().join("ssh");
        std::fs::create_dir_all(&ssh).unwrap();
        for key in ["host_key", "client_key"] {
            must(
                Command::new("ssh-keygen")
                    .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                    .arg(ssh.join(key)),
                "ssh-keygen",
            );
        }
        std::fs::copy(ssh.join("client_key.pub"), ssh.join("authorized_keys")).unwrap();
        let ssh_config = ssh.join("config");
        std::fs::write(
            &ssh_config,
            format!(
                "Host *\n  User root\n  IdentityFile {}\n  IdentitiesOnly yes\n  StrictHostKeyChecking no\n  \
                 UserKnownHostsFile /dev/null\n  LogLevel ERROR\n  ConnectTimeout 10\n",
                ssh.join("client_key").display()
            ),
        )
        .unwrap();
        let ssh_bin = ssh.join("bin");
        std::fs::create_dir_all(&ssh_bin).unwrap();
        std::fs::write(
            ssh_bin.join("ssh"),
            format!(
                "#!/bin/sh\nexec /usr/bin/ssh -F '{}' \"$@\"\n",
                ssh_config.display()
            ),
        )
        .unwrap();
        must(
            Command::new("chmod").arg("755").arg(ssh_bin.join("ssh")),
            "chmod",
        );
        // sshd's privilege separation directory on this machine.
        std::fs::create_dir_all("/run/sshd").unwrap();

        let lab_exe = bin("upkeep-lab");
        let mut nodes = Vec::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let root = dir.path().join(format!("root-{}", n.name));
            let node_base = match n.family {
                Family::Apt => &base,
                Family::Dnf => rpm_base.as_ref().expect("made above"),
            };
            must(
                Command::new("cp")
                    .args(["-a", "--reflink=auto"])
                    .arg(node_base)
                    .arg(&root),
                "copy the base root",
            );
            let upkeep_dir = root.join("usr/local/lib/upkeep");
            std::fs::create_dir_all(&upkeep_dir).unwrap();
            if std::fs::hard_link(&lab_exe, upkeep_dir.join("upkeep-lab")).is_err() {
                std::fs::copy(&lab_exe, upkeep_dir.join("upkeep-lab")).unwrap();
            }
            std::fs::create_dir_all(root.join("etc/upkeep")).unwrap();
            std::fs::write(root.join("etc/upkeep/node"), format!("{}\n", n.name)).unwrap();
            std::fs::copy(&lab.kubeconfig, root.join("etc/upkeep/lab.kubeconfig")).unwrap();
            let systemctl = root.join("usr/local/bin/systemctl");
            std::fs::write(&systemctl, stand_in("systemctl")).unwrap();
            must(Command::new("chmod").arg("755").arg(&systemctl), "chmod");
            let minor = format!(
                "v{}",
                n.installed
                    .splitn(3, '.')
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(".")
            );
            match n.family {
                Family::Apt => {
                    must(
                        Command::new("cp")
                            .arg("-a")
                            .arg(&mirror)
                            .arg(root.join("srv/mirror")),
                        "copy the mirror into the root",
                    );
                    std::fs::write(
                        root.join("etc/apt/sources.list.d/kubernetes.list"),
                        format!(
                            "deb [trusted=yes] file:/srv/mirror/core:/stable:/{minor}/deb/ /\n"
                        ),
                    )
                    .unwrap();
                }
                Family::Dnf => {
                    let os_release = root.join("etc/os-release");
                    let _ = std::fs::remove_file(&os_release);
                    std::fs::write(&os_release, ROCKY_OS_RELEASE).unwrap();
                    // Rocky Linux 9's yum package: `yum` is dnf 4 (/usr/bin/yum -> dnf-3).
                    std::os::unix::fs::symlink("dnf-3", root.join("usr/bin/yum")).unwrap();
                    let served = rpm_mirror.expect("served above");
                    std::fs::write(
                        root.join("etc/yum.repos.d/kubernetes.repo"),
                        format!(
                            "[kubernetes]\nname=Kubernetes\nbaseurl=http://{served}/core:/stable:/{minor}/rpm/\n\
                             enabled=1\ngpgcheck=0\nexclude=kubelet kubeadm kubectl cri-tools kubernetes-cni\n"
                        ),
                    )
                    .unwrap();
                }
            }
            let address = net.address(i);
            let namespace = net.add_node(i);
            let sshd = start_sshd(&n.name, &address, &namespace, &root, &ssh);
            let node = RealNode {
                name: n.name.clone(),
                family: n.family,
                address,
                namespace,
                _sshd: sshd,
                root,
            };
            match n.family {
                Family::Apt => {
                    let pins: Vec<String> = PACKAGES
                        .iter()
                        .map(|p| format!("{p}={}", n.installed))
                        .collect();
                    node.chroot_ok(&["apt-get", "-q", "update"]);
                    let mut install = vec!["apt-get", "-q", "install", "-y"];
                    install.extend(pins.iter().map(String::as_str));
                    node.chroot_ok(&install);
                    let mut hold = vec!["apt-mark", "hold"];
                    hold.extend(PACKAGES);
                    node.chroot_ok(&hold);
                }
                Family::Dnf => {
                    // The repository's exclude= is the hold; the install lifts it.
                    let pins: Vec<String> = PACKAGES
                        .iter()
                        .map(|p| format!("{p}-{}", rpm_version(&n.installed)))
                        .collect();
                    let mut install = vec!["dnf", "-q", "install", "-y"];
                    install.extend(pins.iter().map(String::as_str));
                    install.push("--disableexcludes=kubernetes");
                    node.chroot_ok(&install);
                }
            }
            nodes.push(node);
        }
        let cluster = RealCluster {
            lab,
            nodes,
            ssh_bin,
            ssh_config,
            net,
            dir,
        };
        for n in &cluster.nodes {
            wait_for(
                &format!("sshd of {} at {}", n.name, n.address),
                Duration::from_secs(30),
                || cluster.ssh(n, "true").status.success().then_some(()),
            );
        }
        cluster
    }

    /// Runs `line` on `node` over ssh, as the plugin does.
    /// The test's own sessions share one connection per node (ssh_config(5) ControlMaster,
    /// ControlPersist): a handshake costs most of a short command's time on a busy machine.
    /// The master leaves with the node's sshd, or 30 s after its last session.
    pub fn ssh(&self, node: &RealNode, line: &str) -> Output {
        let control = self.control_path(node);
        Command::new(self.ssh_bin.join("ssh"))
            .args(["-o", "BatchMode=yes", "-o", "ControlMaster=auto", "-o"])
            .arg(format!("ControlPath={}", control.display()))
            .args(["-o", "ControlPersist=30", &node.address, line])
            .stdin(Stdio::null())
            .output()
            .expect("run ssh")
    }

    fn control_path(&self, node: &RealNode) -> PathBuf {
        self.dir
            .path()
            .join("ssh")
            .join(format!("cm-{}", node.name))
    }

    pub fn node(&self, name: &str) -> &RealNode {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no real node {name}"))
    }

    /// `kubectl upgrade-node` against the lab with the test's ssh first on PATH and no
    /// `--remote-shell`: the default transport.
    pub fn upgrade_node(&self, args: &[&str]) -> Command {
        let mut cmd = self.lab.plugin("kubectl-upgrade_node");
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", self.ssh_bin.display()))
            .args(args);
        cmd
    }

    /// The bridge index (names and addresses carry it).
    pub fn net_index(&self) -> u32 {
        self.net.index
    }

    /// The cluster's scratch directory (roots, mirror, ssh keys).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RealCluster {
    /// Ends the shared connections of [`RealCluster::ssh`] first: their sessions would keep
    /// the node's namespace alive after sshd is gone.
    fn drop(&mut self) {
        for n in &self.nodes {
            let control = self.control_path(n);
            if control.exists() {
                let _ = Command::new("/usr/bin/ssh")
                    .args(["-F", "/dev/null", "-o"])
                    .arg(format!("ControlPath={}", control.display()))
                    .args(["-O", "exit", &n.address])
                    .stdin(Stdio::null())
                    .output();
            }
        }
    }
}

/// Starts Debian's sshd in the node's namespace, every session in the node's root.
fn start_sshd(name: &str, address: &str, namespace: &str, root: &Path, ssh: &Path) -> Daemon {
    {
        let config = ssh.join(format!("sshd_config-{name}"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {addr}:22\nHostKey {hk}\nPidFile none\nAuthorizedKeysFile {ak}\n\
                 StrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 PermitRootLogin prohibit-password\n\
                 ForceCommand exec /usr/sbin/chroot {root} /usr/bin/env -i \
                 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 \
                 /bin/sh -c \"${{SSH_ORIGINAL_COMMAND:-exec /bin/bash -l}}\"\n",
                addr = address,
                hk = ssh.join("host_key").display(),
                ak = ssh.join("authorized_keys").display(),
                root = root.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(ssh.join(format!("sshd-{name}.log"))).unwrap();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                namespace,
                "/usr/sbin/sshd",
                "-D",
                "-e",
                "-f",
            ])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start sshd");
        Daemon(child)
    }
}
