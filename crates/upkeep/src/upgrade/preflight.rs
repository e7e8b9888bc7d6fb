//! Preflight: pure checks over a snapshot of the cluster and a read-only look
//! at the node. Nothing is changed before every check has passed.
//!
//! Each rule is written once in [`RULES`] with the upstream fact it encodes;
//! a finding carries the rule id, so help, JSON and messages agree.

use serde::Serialize;

use super::plan::{PlanInput, Progress, Role};
use super::recipe::{Dependent, Offered, PackageManager, Recipe, VersionOp};
use super::target::TargetSpec;
use crate::version::{MinorVersion, Release};

/// One preflight rule.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub source: &'static str,
}

/// Every preflight rule, in the order they are checked.
pub const RULES: &[Rule] = &[
    Rule {
        id: "node-missing",
        summary: "the node must exist",
        source: "",
    },
    Rule {
        id: "upgrade-lock",
        summary: "one upgrade at a time: the Lease kube-system/upkeep-upgrade must be free or expired",
        source: "kured's cluster lock (kubereboot/kured pkg/daemonsetlock)",
    },
    Rule {
        id: "other-upgrade-in-progress",
        summary: "a node recording an unfinished upgrade to another version must finish it first",
        source: "",
    },
    Rule {
        id: "kubelet-version-unknown",
        summary: "the node must report status.nodeInfo.kubeletVersion",
        source: "kubernetes cmd/kubeadm/app/phases/upgrade/versiongetter.go KubeletVersions",
    },
    Rule {
        id: "downgrade",
        summary: "the target must not be older than the node's kubelet",
        source: "kubernetes cmd/kubeadm/app/phases/upgrade/policy.go (downgrades are a separate, one-minor procedure)",
    },
    Rule {
        id: "minor-skip",
        summary: "one minor at a time: the target is at most one minor above the node's kubelet",
        source: "kubeadm-upgrade.md: skipping MINOR versions when upgrading is unsupported",
    },
    Rule {
        id: "node-not-ready",
        summary: "the node must be Ready before its upgrade starts",
        source: "kubeadm-upgrade.md (how it works: all nodes are in the Ready state)",
    },
    Rule {
        id: "control-plane-not-ready",
        summary: "every control-plane node must be Ready",
        source: "kubernetes cmd/kubeadm/app/phases/upgrade/health.go controlPlaneNodesReady",
    },
    Rule {
        id: "apply-too-far",
        summary: "kubeadm upgrade apply: the target is at most one minor above every kube-apiserver (mandatory in kubeadm)",
        source: "kubernetes cmd/kubeadm/app/phases/upgrade/policy.go MaximumAllowedMinorVersionUpgradeSkew",
    },
    Rule {
        id: "kubelets-too-old",
        summary: "kubeadm upgrade apply: no kubelet more than 3 minors (1 before v1.29) below the target",
        source: "kubernetes cmd/kubeadm/app/phases/upgrade/policy.go MaximumAllowedMinorVersionKubeletSkew",
    },
    Rule {
        id: "follow-first-control-plane",
        summary: "kubeadm upgrade node: the target is the version the first control-plane node applied",
        source: "kubernetes cmd/kubeadm/app/cmd/upgrade/node.go (the version comes from the ClusterConfiguration)",
    },
    Rule {
        id: "worker-above-apiserver",
        summary: "a kubelet is never newer than the oldest kube-apiserver: upgrade the control plane first",
        source: "kubernetes/website content/en/releases/version-skew-policy.md (kubelet)",
    },
    Rule {
        id: "skew-policy",
        summary: "the kubelet at the target must not create a version skew violation (the skew engine, over the cluster as it would be afterwards); on control-plane nodes a warning",
        source: "kubernetes/website content/en/releases/version-skew-policy.md, via upkeep::skew RULES; kubernetes/kubernetes#127316 (HA: a new kubelet reaching an older apiserver)",
    },
    Rule {
        id: "upgrade-readiness",
        summary: "the first control-plane node of a minor upgrade refuses on the hop's blocking readiness findings (removed APIs still recorded, the etcd 3.6 gate, expiring certificates) and warns on the rest, exactly as `kubectl skew plan` reports them",
        source: "upkeep::skew::readiness (one code path with kubectl skew plan)",
    },
    Rule {
        id: "etcd-backup",
        summary: "before kubeadm upgrade apply, a recent etcd snapshot (warning only)",
        source: "kubeadm-upgrade.md prerequisites: back up important components",
    },
    Rule {
        id: "drain",
        summary: "the node must drain by the safedrain rules (the same rules, the same refusals)",
        source: "kubeadm-upgrade.md: drain the node before upgrading the kubelet; upkeep drain rules",
    },
    Rule {
        id: "package-manager-unknown",
        summary: "the node's package manager must be apt, dnf, dnf5 or yum",
        source: "",
    },
    Rule {
        id: "repository",
        summary: "the node must use a pkgs.k8s.io repository file (the legacy repositories were removed on 2024-03-04)",
        source: "kubernetes/website content/en/blog/_posts/2023-08-15-pkgs-k8s-io-introduction.md",
    },
    Rule {
        id: "minor-not-published",
        summary: "the repository must carry the target minor (pkgs.k8s.io has one repository per minor; a 404 means it is not published there)",
        source: "kubernetes/website content/en/docs/tasks/administer-cluster/kubeadm/change-package-repository.md",
    },
    Rule {
        id: "package-not-offered",
        summary: "kubeadm, kubelet and kubectl at the target must be offered by the node's repository",
        source: "kubeadm-upgrade.md (apt-cache madison / yum list --showduplicates)",
    },
    Rule {
        id: "package-pinned",
        summary: "no installed package may require kubeadm, kubelet or kubectl at a version other than the target (apt-get install -y would remove it, dnf install refuses)",
        source: "deb-control(5) Depends and apt-get(8) (the resolver removes what the install breaks); rpm Requires and dnf's problem report",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Refuse,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    /// On `upgrade-readiness`: the readiness finding itself (its rule, object,
    /// source and fix, as `kubectl skew plan` reports it), so a reader never
    /// has to take `message` apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub readiness: Option<crate::skew::readiness::Finding>,
}

impl Finding {
    pub fn new(rule: &'static str, severity: Severity, message: String) -> Self {
        Finding {
            rule,
            severity,
            message,
            readiness: None,
        }
    }
}

/// One node as preflight sees it.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub name: String,
    pub control_plane: bool,
    pub ready: bool,
    pub unschedulable: bool,
    pub kubelet_version: Option<Release>,
    pub os_image: String,
    pub internal_ip: Option<String>,
    /// The progress annotation: absent, parsed, or unreadable (with why).
    pub progress: Option<Result<Progress, String>>,
}

/// The upgrade Lease as found.
#[derive(Debug, Clone)]
pub struct LeaseView {
    pub holder: String,
    /// Seconds until it expires (negative: expired).
    pub expires_in: i64,
    /// The holder is an earlier run of this user on this host whose process is no longer
    /// running (killed, or its machine restarted): it will never release the lock.
    pub holder_gone: bool,
}

/// What a run may do with the lock as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockVerdict {
    /// Absent or expired: take it.
    Free,
    /// Still valid but this run's own to take, with the note to print.
    TakeOver(String),
    /// Another run holds it: the refusal.
    Held(String),
}

/// client-go `tools/leaderelection/leaderelection.go` tryAcquireOrRenew: a valid record is
/// refused unless its holderIdentity is the candidate's own, which renews it at once. An
/// identity here names user, host and process; an earlier run of the same user on the same
/// host whose process is gone is this run's own too, so a killed run does not lock everyone
/// out until the Lease expires.
pub fn lock_verdict(lease: Option<&LeaseView>, me: &str) -> LockVerdict {
    let Some(l) = lease.filter(|l| l.expires_in > 0) else {
        return LockVerdict::Free;
    };
    if l.holder == me {
        LockVerdict::TakeOver(format!(
            "took over the lock kube-system/upkeep-upgrade still held by this identity ({me:?}, {} s left): an earlier run of it stopped without releasing it",
            l.expires_in
        ))
    } else if l.holder_gone {
        LockVerdict::TakeOver(format!(
            "took over the lock kube-system/upkeep-upgrade from {:?} ({} s left): that earlier run on this host is no longer running",
            l.holder, l.expires_in
        ))
    } else {
        LockVerdict::Held(format!(
            "another upgrade holds the lock kube-system/upkeep-upgrade: {:?} (expires in {} s unless renewed); wait for it to finish, or delete the Lease if that run is gone",
            l.holder, l.expires_in
        ))
    }
}

/// Evidence of an etcd backup.
#[derive(Debug, Clone)]
pub enum Backup {
    /// A snapshot file that checked out (as `kubectl backup etcd status`
    /// checks it) and its age in seconds.
    Found {
        path: String,
        age_secs: u64,
    },
    /// A path that was named but is not a usable snapshot, and why.
    Unusable {
        path: String,
        reason: String,
    },
    Missing,
}

/// Everything preflight reads from the cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterSnapshot {
    pub nodes: Vec<NodeFacts>,
    /// kube-apiserver instances: (node, version) from the static-pod image
    /// tags, the way kubeadm's versiongetter sees every HA instance.
    pub apiservers: Vec<(String, Release)>,
    /// `/version`: used when no apiserver static pod is visible.
    pub server_version: Option<Release>,
    pub lease: Option<LeaseView>,
    /// Every component's version as the skew engine sees it (None: not collected).
    pub skew: Option<crate::skew::ClusterVersions>,
    /// What `kubectl skew plan` judges a hop by (None: not collected).
    pub readiness: Option<crate::skew::readiness::PreflightInput>,
}

impl ClusterSnapshot {
    pub fn node(&self, name: &str) -> Option<&NodeFacts> {
        self.nodes.iter().find(|n| n.name == name)
    }

    fn apiserver_versions(&self) -> Vec<Release> {
        if self.apiservers.is_empty() {
            self.server_version.into_iter().collect()
        } else {
            self.apiservers.iter().map(|(_, v)| *v).collect()
        }
    }

    /// The cluster as it will be once `node` runs `target`: its kubelet, and
    /// on a control-plane node its control-plane components (for dry runs of
    /// a rolling upgrade, which plan each node after the ones before it).
    pub fn with_node_upgraded(&self, node: &str, target: Release) -> ClusterSnapshot {
        use crate::skew::Component;
        let mut s = self.clone();
        let control_plane = s.node(node).is_some_and(|n| n.control_plane);
        for (n, v) in &mut s.apiservers {
            if n == node {
                *v = target;
            }
        }
        if control_plane && s.apiservers.is_empty() {
            s.server_version = Some(target);
        }
        for n in &mut s.nodes {
            if n.name == node {
                n.kubelet_version = Some(target);
            }
        }
        if let Some(versions) = &mut s.skew {
            let v = crate::version::KubeVersion::from(target);
            for o in &mut versions.components {
                let moved = o.component == Component::Kubelet
                    || (control_plane
                        && matches!(
                            o.component,
                            Component::KubeApiserver
                                | Component::KubeControllerManager
                                | Component::KubeScheduler
                        ));
                if o.node.as_deref() == Some(node) && moved {
                    o.reported = target.to_string();
                    o.version = Some(v.clone());
                    o.unknown = None;
                }
            }
        }
        s
    }

    pub fn oldest_apiserver(&self) -> Option<Release> {
        self.apiserver_versions().into_iter().min()
    }

    pub fn newest_apiserver(&self) -> Option<Release> {
        self.apiserver_versions().into_iter().max()
    }
}

/// What the node told us (read-only commands), or why we could not ask.
#[derive(Debug, Clone)]
pub enum Probe {
    /// Not asked yet: only the cluster checks run.
    NotYet,
    /// The transport cannot capture output (`--via manual`): decide from the
    /// node object and the operator's flags.
    Unavailable,
    Done(NodeProbe),
}

#[derive(Debug, Clone, Default)]
pub struct NodeProbe {
    pub manager: Option<PackageManager>,
    /// The repository file's minor, when it uses the pkgs.k8s.io layout.
    pub repo_minor: Option<MinorVersion>,
    /// Whether the repository file exists.
    pub repo_file_found: bool,
    /// The versions the target minor's repository offers.
    pub offered: Offered,
    /// The target minor's repository does not exist (404), in the package
    /// manager's words.
    pub minor_missing: Option<String>,
    /// Installed packages with a versioned dependency on kubeadm, kubelet or kubectl.
    pub dependents: Vec<Dependent>,
}

/// The request.
#[derive(Debug, Clone)]
pub struct Request {
    pub node: String,
    pub to: TargetSpec,
    /// `--package-manager`, when the operator knows better.
    pub manager: Option<PackageManager>,
    pub sudo: bool,
    /// This run's identity, as written into the Lease.
    pub me: String,
    /// etcd backup evidence (checked before `kubeadm upgrade apply` only).
    pub backup: Option<Backup>,
    pub max_backup_age_secs: u64,
}

/// The outcome: findings, and what was decided when nothing refuses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    /// The node already runs the target and records no unfinished upgrade.
    pub nothing_to_do: bool,
    #[serde(skip)]
    pub decided: Option<PlanInput>,
    pub role: Option<Role>,
    pub target: Option<Release>,
}

impl Report {
    pub fn refused(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Refuse)
    }

    pub fn refusals(&self) -> impl Iterator<Item = &Finding> {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Refuse)
    }

    /// The drain core refuses this node's drain.
    pub fn refuse_drain(&mut self, message: String) {
        self.refuse("drain", message);
        self.decided = None;
    }

    fn refuse(&mut self, rule: &'static str, message: String) {
        self.push(Finding::new(rule, Severity::Refuse, message));
    }

    fn warn(&mut self, rule: &'static str, message: String) {
        self.push(Finding::new(rule, Severity::Warn, message));
    }

    fn push(&mut self, finding: Finding) {
        debug_assert!(
            RULES.iter().any(|r| r.id == finding.rule),
            "{}",
            finding.rule
        );
        self.findings.push(finding);
    }
}

/// Which kubeadm path a node takes: the first control-plane node applies,
/// the others follow once another kube-apiserver already runs the target
/// (`--to vX.Y`: a newer patch of that minor than this node's own).
pub fn role_of(snap: &ClusterSnapshot, node: &NodeFacts, spec: TargetSpec) -> Role {
    if !node.control_plane {
        return Role::Worker;
    }
    let own = snap
        .apiservers
        .iter()
        .find(|(n, _)| n == &node.name)
        .map(|(_, v)| *v)
        .or(node.kubelet_version);
    let other_done =
        snap.apiservers
            .iter()
            .filter(|(n, _)| n != &node.name)
            .any(|(_, v)| match spec {
                TargetSpec::Exact(t) => *v >= t,
                TargetSpec::NewestOf(m) => {
                    v.minor_line() > m || (v.minor_line() == m && own.is_none_or(|o| *v > o))
                }
            });
    if other_done {
        Role::ControlPlane
    } else {
        Role::FirstControlPlane
    }
}

/// How many minors `a` is above `b`. Kubernetes has had one major; another
/// major counts as far away in its direction.
fn minors_above(a: MinorVersion, b: MinorVersion) -> i64 {
    a.minus(b)
        .unwrap_or(if a > b { i64::MAX } else { i64::MIN })
}

/// kubeadm's kubelet skew for `upgrade apply` to `target`: 3 minors from
/// v1.29, 1 before (kubernetes PR #120825).
pub fn kubeadm_kubelet_skew(target: MinorVersion) -> i64 {
    if target.major == 1 && target.minor < 29 {
        1
    } else {
        3
    }
}

/// The installed packages the install of `installing` (package, full
/// version) breaks: each a dependency none of whose alternatives the new
/// version satisfies, described for the refusal. Pure: the probe's parsed
/// answer in, the verdict out.
pub fn pinning(dependents: &[Dependent], installing: &[(&str, String)], rpm: bool) -> Vec<String> {
    let mut out = Vec::new();
    for d in dependents {
        let broken = d.alternatives.iter().all(|c| {
            installing
                .iter()
                .find(|(p, _)| *p == c.package)
                .is_some_and(|(_, new)| !satisfies(new, c.op, &c.version, rpm))
        });
        if broken {
            let new: Vec<String> = d
                .alternatives
                .iter()
                .filter_map(|c| installing.iter().find(|(p, _)| *p == c.package))
                .map(|(p, v)| format!("{p} {v}"))
                .collect();
            out.push(format!(
                "{} {} requires {} (the upgrade installs {})",
                d.package,
                d.version,
                d.requires,
                new.join(", ")
            ));
        }
    }
    out
}

/// Whether `version` meets `op wanted`. rpm compares the release only when
/// the requirement names one (rpm's rpmdsCompare); dpkg always compares the
/// whole version.
fn satisfies(version: &str, op: VersionOp, wanted: &str, rpm: bool) -> bool {
    let version = if rpm && !wanted.contains('-') {
        version.split_once('-').map_or(version, |(v, _)| v)
    } else {
        version
    };
    let order = compare_package_versions(version, wanted);
    match op {
        VersionOp::Less => order.is_lt(),
        VersionOp::LessEq => order.is_le(),
        VersionOp::Eq => order.is_eq(),
        VersionOp::GreaterEq => order.is_ge(),
        VersionOp::Greater => order.is_gt(),
    }
}

/// Orders two package versions `[epoch:]upstream[-revision]` as dpkg does
/// (dpkg lib/dpkg/version.c dpkg_version_compare, verrevcmp): epochs
/// numerically, then upstream and revision by alternating non-digit runs
/// (`~` first, then the end, letters, other characters) and digit runs
/// (numerically). rpm's rpmvercmp orders the versions kubeadm packages carry
/// (digits and dots) the same way.
pub fn compare_package_versions(a: &str, b: &str) -> std::cmp::Ordering {
    fn split(v: &str) -> (u64, &str, &str) {
        let (epoch, rest) = match v.split_once(':') {
            Some((e, r)) if e.bytes().all(|c| c.is_ascii_digit()) => (e.parse().unwrap_or(0), r),
            _ => (0, v),
        };
        match rest.rsplit_once('-') {
            Some((u, r)) => (epoch, u, r),
            None => (epoch, rest, ""),
        }
    }
    fn order(c: Option<u8>) -> i32 {
        match c {
            None => 0,
            Some(b'~') => -1,
            Some(c) if c.is_ascii_digit() => 0,
            Some(c) if c.is_ascii_alphabetic() => i32::from(c),
            Some(c) => i32::from(c) + 256,
        }
    }
    fn verrevcmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
        let (mut i, mut j) = (0, 0);
        let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
        while i < a.len() || j < b.len() {
            while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
                let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
                if ac != bc {
                    return ac.cmp(&bc);
                }
                i += 1;
                j += 1;
            }
            while a.get(i) == Some(&b'0') {
                i += 1;
            }
            while b.get(j) == Some(&b'0') {
                j += 1;
            }
            let mut first_diff = std::cmp::Ordering::Equal;
            while digit(a, i) && digit(b, j) {
                if first_diff.is_eq() {
                    first_diff = a[i].cmp(&b[j]);
                }
                i += 1;
                j += 1;
            }
            if digit(a, i) {
                return std::cmp::Ordering::Greater;
            }
            if digit(b, j) {
                return std::cmp::Ordering::Less;
            }
            if !first_diff.is_eq() {
                return first_diff;
            }
        }
        std::cmp::Ordering::Equal
    }
    let (ea, ua, ra) = split(a);
    let (eb, ub, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| verrevcmp(ua.as_bytes(), ub.as_bytes()))
        .then_with(|| verrevcmp(ra.as_bytes(), rb.as_bytes()))
}

/// Decides the package manager: the node's own /etc/os-release wins over
/// its osImage; an operator's `--package-manager` wins over both.
pub fn decide_manager(
    forced: Option<PackageManager>,
    os_release: Option<&str>,
    os_image: &str,
) -> (Option<PackageManager>, Option<String>) {
    if forced.is_some() {
        return (forced, None);
    }
    let from_image = PackageManager::from_os_image(os_image);
    let from_node = os_release.and_then(PackageManager::from_os_release);
    match (from_node, from_image) {
        (Some(n), Some(i)) if n != i => (
            Some(n),
            Some(format!(
                "the node's osImage {os_image:?} suggests {i}, but its /etc/os-release says {n}: using {n}"
            )),
        ),
        (Some(n), _) => (Some(n), None),
        (None, i) => (i, None),
    }
}

/// Runs every check. With [`Probe::NotYet`] only the cluster checks run and
/// nothing is decided; call again with the probe.
pub fn preflight(snap: &ClusterSnapshot, req: &Request, probe: &Probe) -> Report {
    let mut r = Report::default();
    let Some(node) = snap.node(&req.node) else {
        let mut known: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
        known.sort();
        r.refuse(
            "node-missing",
            format!(
                "node {:?} does not exist (nodes: {})",
                req.node,
                known.join(", ")
            ),
        );
        return r;
    };
    if let LockVerdict::Held(why) = lock_verdict(snap.lease.as_ref(), &req.me) {
        r.refuse("upgrade-lock", why);
    }
    let progress = match &node.progress {
        None => None,
        Some(Ok(p)) => Some(*p),
        Some(Err(why)) => {
            r.refuse("other-upgrade-in-progress", why.clone());
            None
        }
    };
    let Some(kubelet) = node.kubelet_version else {
        r.refuse(
            "kubelet-version-unknown",
            format!(
                "node {} reports no parsable kubelet version in status.nodeInfo.kubeletVersion",
                node.name
            ),
        );
        return r;
    };
    let target_minor = req.to.minor_line();
    if let Some(p) = progress {
        let conflicts = p.target.minor_line() != target_minor
            || matches!(req.to, TargetSpec::Exact(t) if t != p.target);
        if conflicts {
            r.refuse(
                "other-upgrade-in-progress",
                format!(
                    "node {} records an unfinished upgrade to {} (last completed step: {}): finish it with --to {} first",
                    node.name, p.target, p.done, p.target
                ),
            );
        }
    }
    // With `--to vX.Y`, an unfinished upgrade pins the patch.
    let spec = match (req.to, progress) {
        (TargetSpec::NewestOf(m), Some(p)) if p.target.minor_line() == m => {
            TargetSpec::Exact(p.target)
        }
        (spec, _) => spec,
    };
    let kminor = kubelet.minor_line();
    if target_minor < kminor || matches!(spec, TargetSpec::Exact(t) if t < kubelet) {
        r.refuse(
            "downgrade",
            format!(
                "node {} runs kubelet {kubelet}; {} would be a downgrade, which this tool does not do",
                node.name, req.to
            ),
        );
    }
    if minors_above(target_minor, kminor) > 1 {
        r.refuse(
            "minor-skip",
            format!(
                "node {} runs kubelet {kubelet}; {} skips a minor. Upgrade one minor at a time: first to v{}.{}",
                node.name,
                req.to,
                kminor.major,
                kminor.minor + 1
            ),
        );
    }
    if progress.is_none() && matches!(spec, TargetSpec::Exact(t) if t == kubelet) {
        r.nothing_to_do = true;
    }
    if !node.ready && progress.is_none() && !r.nothing_to_do {
        r.refuse(
            "node-not-ready",
            format!(
                "node {} is not Ready: find out why (kubectl describe node {}) before upgrading it",
                node.name, node.name
            ),
        );
    }
    let not_ready: Vec<&str> = snap
        .nodes
        .iter()
        .filter(|n| n.control_plane && !n.ready && n.name != node.name)
        .map(|n| n.name.as_str())
        .collect();
    if !not_ready.is_empty() && !r.nothing_to_do {
        r.refuse(
            "control-plane-not-ready",
            format!(
                "control-plane node(s) not Ready: {} (kubeadm's health check requires all of them Ready)",
                not_ready.join(", ")
            ),
        );
    }
    let role = role_of(snap, node, spec);
    r.role = Some(role);
    let (Some(oldest), Some(newest)) = (snap.oldest_apiserver(), snap.newest_apiserver()) else {
        r.refuse(
            "kubelet-version-unknown",
            "no kube-apiserver version found (neither static pods nor /version)".to_string(),
        );
        return r;
    };
    match role {
        Role::Worker => {
            if target_minor > oldest.minor_line()
                || matches!(spec, TargetSpec::Exact(t) if t > oldest)
            {
                r.refuse(
                    "worker-above-apiserver",
                    format!(
                        "{} on worker {} would be newer than the oldest kube-apiserver ({oldest}): upgrade the control-plane nodes first",
                        req.to, node.name
                    ),
                );
            }
        }
        Role::FirstControlPlane => {
            if minors_above(target_minor, oldest.minor_line()) > 1 {
                r.refuse(
                    "apply-too-far",
                    format!(
                        "kubeadm can upgrade only 1 minor version at a time: the oldest kube-apiserver runs {oldest}, so {} is too high; go to v{}.{} first",
                        req.to,
                        oldest.major,
                        oldest.minor + 1
                    ),
                );
            }
            let skew = kubeadm_kubelet_skew(target_minor);
            let mut too_old: Vec<String> = snap
                .nodes
                .iter()
                .filter_map(|n| {
                    let v = n.kubelet_version?;
                    (minors_above(target_minor, v.minor_line()) > skew)
                        .then(|| format!("{} ({v})", n.name))
                })
                .collect();
            too_old.sort();
            if !too_old.is_empty() {
                r.refuse(
                    "kubelets-too-old",
                    format!(
                        "there are kubelets in this cluster that are too old for {}: {}; a kubelet may be at most {skew} minor(s) older. Upgrade them first",
                        req.to,
                        too_old.join(", ")
                    ),
                );
            }
            if !r.nothing_to_do && progress.is_none() {
                match &req.backup {
                    Some(Backup::Found { path, age_secs }) if *age_secs > req.max_backup_age_secs => {
                        r.warn("etcd-backup", format!("the etcd snapshot {path} is {} h old; take a fresh one (kubectl backup etcd save FILE) before kubeadm upgrade apply", age_secs / 3600));
                    }
                    Some(Backup::Found { .. }) => {}
                    Some(Backup::Unusable { path, reason }) => r.warn(
                        "etcd-backup",
                        format!("{path} is not a usable etcd snapshot: {reason}; take one with `kubectl backup etcd save FILE` and check it with `kubectl backup etcd status FILE` before kubeadm upgrade apply"),
                    ),
                    Some(Backup::Missing) | None => r.warn(
                        "etcd-backup",
                        "no recent etcd snapshot was named (--etcd-backup FILE): take one with `kubectl backup etcd save FILE` before kubeadm upgrade apply; kubeadm also keeps a copy of local etcd data under /etc/kubernetes/tmp/kubeadm-backup-etcd-*".to_string(),
                    ),
                }
            }
        }
        Role::ControlPlane => {
            if let TargetSpec::Exact(t) = spec
                && t != newest
                && t.minor_line() == newest.minor_line()
            {
                r.refuse(
                    "follow-first-control-plane",
                    format!(
                        "the first control-plane node applied {newest}; kubeadm upgrade node on {} brings it to that version, not {t}: use --to {newest}",
                        node.name
                    ),
                );
            }
        }
    }
    if r.refused() || r.nothing_to_do {
        return r;
    }

    // The node's own answers.
    let (manager, repo_minor, offered) = match probe {
        Probe::NotYet => return r,
        Probe::Unavailable => {
            let (m, _) = decide_manager(req.manager, None, &node.os_image);
            (m, None, None)
        }
        Probe::Done(p) => (p.manager, p.repo_minor, Some(&p.offered)),
    };
    let Some(manager) = manager else {
        r.refuse(
            "package-manager-unknown",
            format!(
                "cannot tell the package manager of node {} (osImage {:?}); pass --package-manager apt|dnf|dnf5|yum",
                node.name, node.os_image
            ),
        );
        return r;
    };
    if let Probe::Done(p) = probe
        && (!p.repo_file_found || p.repo_minor.is_none())
    {
        let why = if p.repo_file_found {
            "does not use the pkgs.k8s.io layout (/core:/stable:/vX.Y/)"
        } else {
            "is missing"
        };
        r.refuse(
            "repository",
            format!(
                "the repository file {} on node {} {why}; the legacy apt/yum.kubernetes.io repositories were removed on 2024-03-04. Set up the pkgs.k8s.io repository as in the kubeadm install guide, then retry",
                manager.repo_file(),
                node.name
            ),
        );
        return r;
    }
    if let Probe::Done(NodeProbe {
        minor_missing: Some(why),
        ..
    }) = probe
    {
        r.refuse(
            "minor-not-published",
            format!(
                "the repository of node {} ({}) does not carry {target_minor}: the {target_minor} repository answered that it does not exist. Nothing was changed on the node. Check that {target_minor} is released and that the repository file points at pkgs.k8s.io or a mirror that carries it, or pick another --to:\n{}",
                node.name,
                manager.repo_file(),
                why.lines()
                    .rev()
                    .take(6)
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .map(|l| format!("    | {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        );
        return r;
    }
    // An upgrade whose apiserver bound is below the newest patch (workers).
    let at_most = (role == Role::Worker).then_some(oldest);
    let (target, revision) = match (spec, offered) {
        (TargetSpec::Exact(t), None) => (t, None),
        (TargetSpec::NewestOf(m), None) => {
            r.refuse(
                "package-not-offered",
                format!(
                    "without a way to ask the node's repository (--via manual), --to {m} cannot pick a patch: pass --to {m}.Z"
                ),
            );
            return r;
        }
        (spec, Some(offered)) => {
            let t = match spec {
                TargetSpec::Exact(t) => Some(t),
                TargetSpec::NewestOf(m) => offered.newest_of(m, at_most),
            };
            let missing: Vec<&str> = match t {
                Some(t) => ["kubeadm", "kubelet", "kubectl"]
                    .into_iter()
                    .filter(|p| offered.find(p, t).is_none())
                    .collect(),
                None => vec!["kubeadm"],
            };
            if let (Some(t), true) = (t, missing.is_empty()) {
                (
                    t,
                    offered.find("kubeadm", t).and_then(|v| v.revision.clone()),
                )
            } else {
                let mut listed: Vec<String> = offered
                    .kubeadm
                    .iter()
                    .filter(|v| v.release().minor_line() == target_minor)
                    .map(ToString::to_string)
                    .collect();
                listed.sort();
                listed.dedup();
                let what = t.map_or_else(|| spec.to_string(), |t| t.to_string());
                r.refuse(
                    "package-not-offered",
                    format!(
                        "the {target_minor} repository of node {} does not offer {} at {what} (kubeadm versions offered: {})",
                        node.name,
                        missing.join(", "),
                        if listed.is_empty() { "none".to_string() } else { listed.join(", ") }
                    ),
                );
                return r;
            }
        }
    };
    r.target = Some(target);
    // With `--to vX.Y` the patch is known only now.
    let role = role_of(snap, node, TargetSpec::Exact(target));
    r.role = Some(role);
    if progress.is_none() && target == kubelet {
        r.nothing_to_do = true;
        return r;
    }
    if let (Probe::Done(p), Some(offered)) = (probe, offered) {
        let installing: Vec<(&str, String)> = super::recipe::PACKAGES
            .iter()
            .filter_map(|pkg| Some((*pkg, offered.find(pkg, target)?.to_string())))
            .collect();
        let rpm = manager != PackageManager::Apt;
        let pins = pinning(&p.dependents, &installing, rpm);
        if !pins.is_empty() {
            let what = if rpm {
                format!("{} install would refuse", manager)
            } else {
                "apt-get install -y would remove them".to_string()
            };
            r.refuse(
                "package-pinned",
                format!(
                    "on node {}, installed packages require another version than {target}: {}. The upgrade would break them ({what}). Upgrade those packages to versions that allow {target}, or remove them, first; then retry. Nothing was changed on the node",
                    node.name,
                    pins.join("; ")
                ),
            );
            return r;
        }
    }
    if role == Role::Worker && target > oldest {
        r.refuse(
            "worker-above-apiserver",
            format!(
                "{target} on worker {} would be newer than the oldest kube-apiserver ({oldest}): upgrade the control-plane nodes first",
                node.name
            ),
        );
        return r;
    }
    if role == Role::ControlPlane && target != newest {
        r.refuse(
            "follow-first-control-plane",
            format!(
                "the first control-plane node applied {newest}; use --to {newest} for {}",
                node.name
            ),
        );
        return r;
    }
    if let Some(versions) = &snap.skew {
        for message in new_skew_violations(versions, &node.name, role, target) {
            if role == Role::Worker {
                r.refuse("skew-policy", message);
            } else {
                r.warn(
                    "skew-policy",
                    format!(
                        "{message}; during an HA control-plane rollout a new kubelet may reach an older kube-apiserver through the load balancer (kubernetes#127316): upgrade the remaining control-plane nodes right after this one"
                    ),
                );
            }
        }
        if r.refused() {
            return r;
        }
    }
    // The control plane moves to a new minor: the plan's readiness rules for
    // that hop, from the same code as `kubectl skew plan`.
    if let (Role::FirstControlPlane, Some(input)) = (role, &snap.readiness) {
        let (from, to) = (oldest.minor_line(), target.minor_line());
        if to > from {
            for f in crate::skew::readiness::hop_findings(input, from, to) {
                let object = match (&f.namespace, f.name.is_empty()) {
                    (Some(ns), _) => format!("{} {ns}/{}", f.kind, f.name),
                    (None, false) => format!("{} {}", f.kind, f.name),
                    (None, true) => f.kind.clone(),
                };
                let message = format!(
                    "[{}] {object} ({}): {}; fix: {}",
                    f.rule, f.source, f.message, f.fix
                );
                let severity = match f.severity {
                    crate::skew::readiness::Severity::Block => Severity::Refuse,
                    crate::skew::readiness::Severity::Warn => Severity::Warn,
                };
                r.push(Finding {
                    readiness: Some(f),
                    ..Finding::new("upgrade-readiness", severity, message)
                });
            }
            if r.refused() {
                return r;
            }
        }
    }
    let mut warnings: Vec<String> = r
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Warn)
        .map(|f| f.message.clone())
        .collect();
    if let Probe::Unavailable = probe {
        warnings.push(
            "the repository could not be queried (--via manual): the install commands fail if it does not offer the target".to_string(),
        );
    }
    let keep_cordoned = match progress {
        Some(p) => p.was_cordoned,
        None => node.unschedulable,
    };
    r.decided = Some(PlanInput {
        node: node.name.clone(),
        role,
        from: kubelet,
        target,
        recipe: Recipe {
            manager,
            sudo: req.sudo,
        },
        // Manual: assume the repository still serves the node's minor.
        repo_minor: repo_minor.or(match probe {
            Probe::Unavailable => Some(kminor),
            _ => None,
        }),
        revision,
        progress: progress.filter(|p| p.target == target),
        keep_cordoned,
        warnings,
    });
    r
}

/// The skew violations about this node's kubelet that the upgrade would
/// create: the skew engine evaluates the cluster as it is and as it would be
/// with this node's kubelet (and, on a control-plane node, its control-plane
/// components) at the target. The transient states kubeadm's own procedure
/// passes through (controller-manager ahead of the other apiserver) are not
/// reported: only the kubelet's.
pub fn new_skew_violations(
    versions: &crate::skew::ClusterVersions,
    node: &str,
    role: Role,
    target: Release,
) -> Vec<String> {
    use crate::skew::{Component, evaluate};
    let mut projected = versions.clone();
    projected
        .components
        .retain(|o| o.component != Component::Kubectl);
    let mut before_input = versions.clone();
    before_input
        .components
        .retain(|o| o.component != Component::Kubectl);
    let moved = |c: Component| {
        c == Component::Kubelet
            || (role.is_control_plane()
                && matches!(
                    c,
                    Component::KubeApiserver
                        | Component::KubeControllerManager
                        | Component::KubeScheduler
                ))
    };
    let v = crate::version::KubeVersion::from(target);
    for o in &mut projected.components {
        if o.node.as_deref() == Some(node) && moved(o.component) {
            o.reported = target.to_string();
            o.version = Some(v.clone());
            o.unknown = None;
        }
    }
    let key = |f: &crate::skew::Finding| (f.rule, f.component, f.node.clone());
    let before: Vec<_> = evaluate(&before_input).violations.iter().map(key).collect();
    evaluate(&projected)
        .violations
        .into_iter()
        .filter(|f| f.component == Component::Kubelet && f.node.as_deref() == Some(node))
        .filter(|f| !before.contains(&key(f)))
        .map(|f| format!("after the upgrade, {} ({})", f.message, f.rule))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::plan::StepId;
    use crate::upgrade::recipe::parse_listing;

    fn v(s: &str) -> Release {
        Release::parse_reported(s).unwrap()
    }

    fn node(name: &str, cp: bool, kubelet: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            control_plane: cp,
            ready: true,
            unschedulable: false,
            kubelet_version: Some(v(kubelet)),
            os_image: "Ubuntu 24.04.1 LTS".into(),
            internal_ip: Some("10.0.0.1".into()),
            progress: None,
        }
    }

    /// The cluster-upgrade shape: two control planes and three workers at v1.33.5.
    fn cluster() -> ClusterSnapshot {
        ClusterSnapshot {
            nodes: vec![
                node("cp1", true, "v1.33.5"),
                node("cp2", true, "v1.33.5"),
                node("w1", false, "v1.33.5"),
                node("w2", false, "v1.33.5"),
                node("w3", false, "v1.33.5"),
            ],
            apiservers: vec![("cp1".into(), v("v1.33.5")), ("cp2".into(), v("v1.33.5"))],
            server_version: Some(v("v1.33.5")),
            lease: None,
            skew: None,
            readiness: None,
        }
    }

    fn req(node: &str, to: &str) -> Request {
        Request {
            node: node.into(),
            to: TargetSpec::parse(to).unwrap(),
            manager: None,
            sudo: false,
            me: "me".into(),
            backup: Some(Backup::Found {
                path: "/tmp/snap.db".into(),
                age_secs: 60,
            }),
            max_backup_age_secs: 86400,
        }
    }

    fn probe(listing: &str, repo: Option<MinorVersion>) -> Probe {
        Probe::Done(NodeProbe {
            manager: Some(PackageManager::Apt),
            repo_minor: repo,
            repo_file_found: true,
            offered: parse_listing(listing),
            minor_missing: None,
            dependents: Vec::new(),
        })
    }

    const V134: &str = "kubeadm | 1.34.1-1.1 | x\nkubeadm | 1.34.0-2.1 | x\nkubelet | 1.34.1-1.1 | x\nkubelet | 1.34.0-2.1 | x\nkubectl | 1.34.1-1.1 | x\nkubectl | 1.34.0-2.1 | x\n";
    const M133: MinorVersion = MinorVersion::new(1, 33);

    fn rules(r: &Report) -> Vec<&'static str> {
        r.refusals().map(|f| f.rule).collect()
    }

    #[test]
    fn first_control_plane_applies() {
        let r = preflight(&cluster(), &req("cp1", "v1.34.1"), &probe(V134, Some(M133)));
        assert!(!r.refused(), "{:?}", r.findings);
        let d = r.decided.unwrap();
        assert_eq!(d.role, Role::FirstControlPlane);
        assert_eq!(d.target, v("v1.34.1"));
        assert_eq!(d.revision.as_deref(), Some("1.1"));
    }

    #[test]
    fn the_first_control_plane_refuses_on_the_hops_readiness_findings() {
        use crate::skew::readiness::{
            ApiUse, PreflightInput, ReadinessSnapshot, Removals, Settings,
        };
        let now: jiff::Timestamp = "2025-10-01T00:00:00Z".parse().unwrap();
        let input = |uses: Vec<ApiUse>| PreflightInput {
            snapshot: ReadinessSnapshot {
                api_uses: uses,
                ..Default::default()
            },
            removals: Removals::embedded(),
            calendar: crate::skew::Calendar::embedded(),
            settings: Settings {
                as_of: jiff::civil::date(2025, 10, 1),
                now,
                upgrade_days: 0,
            },
            selection: Vec::new(),
        };
        let flowschema = ApiUse {
            api_version: "flowcontrol.apiserver.k8s.io/v1beta3".into(),
            kind: "FlowSchema".into(),
            namespace: None,
            name: "batch".into(),
            source: "annotation".into(),
        };
        // v1.32 removed v1beta3; the hop v1.33 -> v1.34 has nothing to say about it
        // but that it can no longer be applied, so nothing refuses.
        let mut c = cluster();
        c.readiness = Some(input(vec![flowschema.clone()]));
        let r = preflight(&c, &req("cp1", "v1.34.1"), &probe(V134, Some(M133)));
        assert!(!r.refused(), "{:?}", r.findings);

        // A removal in the hop itself refuses, naming the object and its fix.
        let pdb = ApiUse {
            api_version: "storage.k8s.io/v1beta1".into(),
            kind: "CSIStorageCapacity".into(),
            namespace: Some("kube-system".into()),
            name: "cap".into(),
            source: "annotation".into(),
        };
        let mut removals = Removals::embedded();
        for r in &mut removals.removals {
            if r.kind == "CSIStorageCapacity" {
                r.removed_in = crate::version::MinorVersion::new(1, 34);
            }
        }
        let mut i = input(vec![pdb]);
        i.removals = removals;
        c.readiness = Some(i);
        let r = preflight(&c, &req("cp1", "v1.34.1"), &probe(V134, Some(M133)));
        assert_eq!(rules(&r), ["upgrade-readiness"], "{:?}", r.findings);
        let refusal = r.refusals().next().unwrap();
        let found = refusal
            .readiness
            .as_ref()
            .expect("the readiness finding, structured");
        assert_eq!(
            (
                found.rule,
                found.kind.as_str(),
                found.namespace.as_deref(),
                found.name.as_str(),
                found.source.as_str()
            ),
            (
                "removed-api",
                "CSIStorageCapacity",
                Some("kube-system"),
                "cap",
                "annotation"
            )
        );
        assert!(
            found.fix.starts_with("rewrite the manifest"),
            "{}",
            found.fix
        );
        let m = &refusal.message;
        assert!(
            m.starts_with("[removed-api] CSIStorageCapacity kube-system/cap (annotation)"),
            "{m}"
        );
        assert!(m.contains("fix: rewrite the manifest"), "{m}");
        assert!(r.decided.is_none());
        // Workers do not move the control plane: not theirs to check.
        let mut w = c.clone();
        w.apiservers = vec![("cp1".into(), v("v1.34.1")), ("cp2".into(), v("v1.34.1"))];
        w.server_version = Some(v("v1.34.1"));
        let r = preflight(&w, &req("w1", "v1.34.1"), &probe(V134, Some(M133)));
        assert!(
            !rules(&r).contains(&"upgrade-readiness"),
            "{:?}",
            r.findings
        );
    }

    #[test]
    fn second_control_plane_follows() {
        let mut c = cluster();
        c.apiservers[0].1 = v("v1.34.1");
        c.nodes[0].kubelet_version = Some(v("v1.34.1"));
        let r = preflight(&c, &req("cp2", "v1.34"), &probe(V134, Some(M133)));
        assert!(!r.refused(), "{:?}", r.findings);
        let d = r.decided.unwrap();
        assert_eq!(d.role, Role::ControlPlane);
        assert_eq!(d.target, v("v1.34.1"));
        // Another patch than the first applied is refused.
        let r = preflight(&c, &req("cp2", "v1.34.0"), &probe(V134, Some(M133)));
        assert_eq!(rules(&r), ["follow-first-control-plane"]);
    }

    #[test]
    fn refusals() {
        let c = cluster();
        let p = probe(V134, Some(M133));
        let cases = [
            ("cp1", "v1.35.0", vec!["minor-skip", "apply-too-far"]),
            ("w1", "v1.34.1", vec!["worker-above-apiserver"]),
            ("nope", "v1.34.1", vec!["node-missing"]),
            ("cp1", "v1.34.7", vec!["package-not-offered"]),
            ("cp1", "v1.32.0", vec!["downgrade"]),
        ];
        for (n, to, want) in cases {
            let r = preflight(&c, &req(n, to), &p);
            assert_eq!(rules(&r), want, "{n} {to}: {:?}", r.findings);
            assert!(r.decided.is_none());
        }
        let r = preflight(&c, &req("cp1", "v1.34.7"), &p);
        let msg = &r.findings[0].message;
        assert!(msg.contains("1.34.0-2.1, 1.34.1-1.1"), "{msg}");
    }

    #[test]
    fn newest_patch_bounded_by_apiserver_for_workers() {
        let mut c = cluster();
        for (_, a) in &mut c.apiservers {
            *a = v("v1.34.0");
        }
        let r = preflight(&c, &req("w1", "v1.34"), &probe(V134, Some(M133)));
        assert_eq!(r.decided.unwrap().target, v("v1.34.0"));
        let r = preflight(&c, &req("cp1", "v1.34"), &probe(V134, Some(M133)));
        assert_eq!(r.target, Some(v("v1.34.1")));
    }

    #[test]
    fn lock_names_the_holder() {
        let mut c = cluster();
        c.lease = Some(LeaseView {
            holder: "alice@bastion pid 42".into(),
            expires_in: 30,
            holder_gone: false,
        });
        let r = preflight(&c, &req("cp1", "v1.34.1"), &Probe::NotYet);
        assert_eq!(rules(&r), ["upgrade-lock"]);
        assert!(r.findings[0].message.contains("alice@bastion pid 42"));
        // An expired lease is taken over.
        c.lease.as_mut().unwrap().expires_in = -1;
        assert!(!preflight(&c, &req("cp1", "v1.34.1"), &Probe::NotYet).refused());
    }

    #[test]
    fn a_lock_is_taken_over_from_this_identity_or_a_gone_earlier_run_only() {
        let me = "kubectl upgrade-node, bob@jump, pid 7";
        let held = |holder: &str, expires_in, holder_gone| LeaseView {
            holder: holder.into(),
            expires_in,
            holder_gone,
        };
        assert_eq!(lock_verdict(None, me), LockVerdict::Free);
        let other = held("kubectl upgrade-node, alice@bastion, pid 42", 30, false);
        assert!(
            matches!(lock_verdict(Some(&other), me), LockVerdict::Held(m) if m.contains("alice@bastion"))
        );
        // expired: free for anyone
        let expired = held("kubectl upgrade-node, alice@bastion, pid 42", 0, false);
        assert_eq!(lock_verdict(Some(&expired), me), LockVerdict::Free);
        // the same identity renews at once, as client-go's leader election does
        let mine = held(me, 50, false);
        assert!(
            matches!(lock_verdict(Some(&mine), me), LockVerdict::TakeOver(m) if m.contains("50 s left"))
        );
        // an earlier run of this user on this host, still running: refused (two runs at once)
        let sibling = held("kubectl upgrade-node, bob@jump, pid 6", 50, false);
        assert!(matches!(
            lock_verdict(Some(&sibling), me),
            LockVerdict::Held(_)
        ));
        // the same, its process gone: taken over, saying from whom
        let gone = held("kubectl upgrade-node, bob@jump, pid 6", 50, true);
        assert!(
            matches!(lock_verdict(Some(&gone), me), LockVerdict::TakeOver(m) if m.contains("pid 6") && m.contains("no longer running"))
        );
        let mut c = cluster();
        c.lease = Some(gone);
        let r = preflight(&c, &req("cp1", "v1.34.1"), &Probe::NotYet);
        assert!(!rules(&r).contains(&"upgrade-lock"), "{:?}", rules(&r));
    }

    #[test]
    fn kubelets_too_old_are_named() {
        let mut c = cluster();
        for n in &mut c.nodes {
            n.kubelet_version = Some(v("v1.30.2"));
        }
        c.nodes[0].kubelet_version = Some(v("v1.33.5"));
        c.nodes[1].kubelet_version = Some(v("v1.33.5"));
        let r = preflight(&c, &req("cp1", "v1.34.1"), &Probe::NotYet);
        assert_eq!(rules(&r), ["kubelets-too-old"]);
        assert!(
            r.findings[0]
                .message
                .contains("w1 (v1.30.2), w2 (v1.30.2), w3 (v1.30.2)")
        );
        assert_eq!(kubeadm_kubelet_skew(MinorVersion::new(1, 28)), 1);
    }

    #[test]
    fn control_planes_must_be_ready() {
        let mut c = cluster();
        c.nodes[1].ready = false;
        let r = preflight(&c, &req("cp1", "v1.34.1"), &Probe::NotYet);
        assert_eq!(rules(&r), ["control-plane-not-ready"]);
        c.nodes[1].ready = true;
        c.nodes[2].ready = false;
        let r = preflight(&c, &req("w1", "v1.33.5"), &Probe::NotYet);
        assert!(r.nothing_to_do);
    }

    #[test]
    fn backup_warning_only_for_apply() {
        let mut q = req("cp1", "v1.34.1");
        q.backup = Some(Backup::Missing);
        let r = preflight(&cluster(), &q, &probe(V134, Some(M133)));
        assert!(!r.refused());
        assert_eq!(r.findings[0].rule, "etcd-backup");
        assert!(r.decided.unwrap().warnings[0].contains("kubectl backup etcd save"));
        q.backup = Some(Backup::Unusable {
            path: "/dev/null".into(),
            reason: "it is not a regular file".into(),
        });
        let r = preflight(&cluster(), &q, &probe(V134, Some(M133)));
        assert_eq!(r.findings[0].rule, "etcd-backup");
        let w = &r.decided.unwrap().warnings[0];
        assert!(
            w.contains("/dev/null is not a usable etcd snapshot: it is not a regular file"),
            "{w}"
        );
    }

    #[test]
    fn resume_pins_the_recorded_target() {
        let mut c = cluster();
        for (_, a) in &mut c.apiservers {
            *a = v("v1.34.1");
        }
        c.nodes[2].progress = Some(Ok(Progress {
            target: v("v1.34.0"),
            done: StepId::Drain,
            was_cordoned: false,
        }));
        c.nodes[2].unschedulable = true;
        let r = preflight(&c, &req("w1", "v1.34"), &probe(V134, Some(M133)));
        let d = r.decided.expect("decided");
        assert_eq!(d.target, v("v1.34.0"));
        assert!(!d.keep_cordoned, "cordoned by the upgrade itself");
        let r = preflight(&c, &req("w1", "v1.34.1"), &Probe::NotYet);
        assert_eq!(rules(&r), ["other-upgrade-in-progress"]);
    }

    #[test]
    fn a_minor_the_repository_does_not_carry_is_refused() {
        let p = Probe::Done(NodeProbe {
            manager: Some(PackageManager::Apt),
            repo_minor: Some(M133),
            repo_file_found: true,
            offered: Offered::default(),
            minor_missing: Some("E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.34/deb  Release' does not have a Release file.".into()),
            dependents: Vec::new(),
        });
        let r = preflight(&cluster(), &req("cp1", "v1.34.1"), &p);
        assert_eq!(rules(&r), ["minor-not-published"]);
        let msg = &r.findings[0].message;
        assert!(msg.contains("does not carry v1.34"), "{msg}");
        assert!(msg.contains("Nothing was changed"), "{msg}");
        assert!(msg.contains("does not have a Release file"), "{msg}");
    }

    #[test]
    fn a_package_pinning_the_old_version_is_refused() {
        let deps = crate::upgrade::recipe::parse_dependents(
            "installed site-kubernetes 1.0 kubeadm (= 1.33.5-1.1), kubelet (= 1.33.5-1.1), coreutils, \n",
        );
        let p = Probe::Done(NodeProbe {
            dependents: deps.clone(),
            ..match probe(V134, Some(M133)) {
                Probe::Done(p) => p,
                _ => unreachable!(),
            }
        });
        let r = preflight(&cluster(), &req("cp1", "v1.34.1"), &p);
        assert_eq!(rules(&r), ["package-pinned"]);
        let msg = &r.findings[0].message;
        assert!(
            msg.contains("site-kubernetes 1.0 requires kubeadm (= 1.33.5-1.1) (the upgrade installs kubeadm 1.34.1-1.1)"),
            "{msg}"
        );
        assert!(msg.contains("kubelet (= 1.33.5-1.1)"), "{msg}");
        assert!(
            msg.contains("apt-get install -y would remove them"),
            "{msg}"
        );
        assert!(msg.contains("Nothing was changed"), "{msg}");
        assert!(r.decided.is_none());
        // A range the target falls in is no pin.
        let ok = crate::upgrade::recipe::parse_dependents(
            "installed agent 2 kubelet (>= 1.33), kubelet (<< 1.35~), \n",
        );
        assert!(pinning(&ok, &[("kubelet", "1.34.1-1.1".into())], false).is_empty());
        assert_eq!(
            pinning(&ok, &[("kubelet", "1.35.0-1.1".into())], false).len(),
            1
        );
        // rpm: a requirement without a release compares the version only.
        let rpm = crate::upgrade::recipe::parse_dependents(
            "site 1.0-1 kubelet = 1.34.1\nsite 1.0-1 kubeadm = 1.34.1-150500.1.1\n",
        );
        assert!(
            pinning(
                &rpm,
                &[
                    ("kubelet", "1.34.1-150500.2.1".into()),
                    ("kubeadm", "1.34.1-150500.1.1".into())
                ],
                true
            )
            .is_empty()
        );
        let broken = pinning(&rpm, &[("kubelet", "1.35.2-150500.1.1".into())], true);
        assert_eq!(broken.len(), 1, "{broken:?}");
    }

    #[test]
    fn package_versions_order_as_dpkg_orders_them() {
        use std::cmp::Ordering::*;
        for (a, b, want) in [
            ("1.34.3-1.1", "1.34.3-1.1", Equal),
            ("1.34.10-1.1", "1.34.9-1.1", Greater),
            ("1.35.0~rc.1-1.1", "1.35.0-1.1", Less),
            ("1.35.0-1.1", "1.35~", Greater),
            ("1:1.0-1", "2.0-1", Greater),
            ("1.34.3", "1.34.3-1.1", Less),
            ("1.34.3-2.1", "1.34.3-10.1", Less),
            ("1.0a", "1.0", Greater),
        ] {
            assert_eq!(compare_package_versions(a, b), want, "{a} vs {b}");
        }
    }

    #[test]
    fn missing_or_legacy_repository() {
        let p = Probe::Done(NodeProbe {
            manager: Some(PackageManager::Apt),
            repo_minor: None,
            repo_file_found: true,
            offered: Offered::default(),
            minor_missing: None,
            dependents: Vec::new(),
        });
        let r = preflight(&cluster(), &req("cp1", "v1.34.1"), &p);
        assert_eq!(rules(&r), ["repository"]);
        assert!(r.findings[0].message.contains("pkgs.k8s.io layout"));
    }

    #[test]
    fn manual_needs_an_exact_target() {
        let r = preflight(&cluster(), &req("cp1", "v1.34"), &Probe::Unavailable);
        assert_eq!(rules(&r), ["package-not-offered"]);
        let r = preflight(&cluster(), &req("cp1", "v1.34.1"), &Probe::Unavailable);
        let d = r.decided.unwrap();
        assert_eq!(d.recipe.manager, PackageManager::Apt);
        assert_eq!(d.repo_minor, Some(M133));
    }

    #[test]
    fn manager_decision() {
        assert_eq!(
            decide_manager(None, Some("ID=fedora\nVERSION_ID=41\n"), "Fedora Linux 40").0,
            Some(PackageManager::Dnf5)
        );
        assert_eq!(
            decide_manager(Some(PackageManager::Yum), None, "Ubuntu").0,
            Some(PackageManager::Yum)
        );
        assert_eq!(decide_manager(None, None, "Talos").0, None);
    }

    #[test]
    fn the_skew_engine_judges_the_kubelet_afterwards() {
        use crate::skew::{ClusterVersions, Component, Observed};
        let versions = ClusterVersions {
            control_plane_visible: true,
            control_plane_nodes: vec!["cp1".into(), "cp2".into()],
            components: vec![
                Observed::from_image(
                    Component::KubeApiserver,
                    Some("cp1"),
                    "registry.k8s.io/kube-apiserver:v1.34.1",
                    "pod",
                ),
                Observed::from_image(
                    Component::KubeApiserver,
                    Some("cp2"),
                    "registry.k8s.io/kube-apiserver:v1.33.5",
                    "pod",
                ),
                Observed::from_version(Component::Kubelet, Some("cp1"), "v1.33.5", "node"),
                Observed::from_version(Component::Kubelet, Some("cp2"), "v1.33.5", "node"),
                Observed::from_version(Component::Kubelet, Some("w1"), "v1.33.5", "node"),
            ],
            ..ClusterVersions::default()
        };
        // A worker at v1.34 while cp2's apiserver is still v1.33: a violation.
        let found = new_skew_violations(&versions, "w1", Role::Worker, v("v1.34.1"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("after the upgrade,"), "{found:?}");
        // Within the minor: none.
        assert!(new_skew_violations(&versions, "w1", Role::Worker, v("v1.33.6")).is_empty());

        // In preflight, on the first control-plane node: its own kubelet
        // runs ahead of cp2's apiserver until cp2 follows, a warning.
        let mut versions = versions;
        for o in &mut versions.components {
            if o.component == Component::KubeApiserver {
                *o = Observed::from_image(
                    Component::KubeApiserver,
                    o.node.as_deref(),
                    "registry.k8s.io/kube-apiserver:v1.33.5",
                    "pod",
                );
            }
        }
        let mut c = cluster();
        c.skew = Some(versions);
        let r = preflight(&c, &req("cp1", "v1.34.1"), &probe(V134, Some(M133)));
        assert!(!r.refused(), "{:?}", r.findings);
        let warn = r
            .findings
            .iter()
            .find(|f| f.rule == "skew-policy")
            .expect("warned");
        assert_eq!(warn.severity, Severity::Warn);
        assert!(
            warn.message.contains("kubernetes#127316"),
            "{}",
            warn.message
        );
    }

    #[test]
    fn a_rolling_dry_run_sees_the_nodes_before_as_done() {
        let c = cluster()
            .with_node_upgraded("cp1", v("v1.34.1"))
            .with_node_upgraded("cp2", v("v1.34.1"));
        assert_eq!(c.oldest_apiserver(), Some(v("v1.34.1")));
        let r = preflight(&c, &req("w1", "v1.34.1"), &probe(V134, Some(M133)));
        assert!(!r.refused(), "{:?}", r.findings);
        assert_eq!(r.decided.unwrap().role, Role::Worker);
        // Only cp1 done: cp2 follows it.
        let c = cluster().with_node_upgraded("cp1", v("v1.34.1"));
        let r = preflight(&c, &req("cp2", "v1.34.1"), &probe(V134, Some(M133)));
        assert_eq!(r.role, Some(Role::ControlPlane));
    }

    #[test]
    fn a_patch_upgrade_starts_with_kubeadm_upgrade_apply() {
        // Both apiservers at v1.33.5: whichever goes first to v1.33.6 applies.
        let p = probe(
            "kubeadm | 1.33.6-1.1 | x\nkubelet | 1.33.6-1.1 | x\nkubectl | 1.33.6-1.1 | x\n",
            Some(M133),
        );
        let r = preflight(&cluster(), &req("cp2", "v1.33.6"), &p);
        assert_eq!(r.decided.expect("decided").role, Role::FirstControlPlane);
        let r = preflight(&cluster(), &req("cp2", "v1.33"), &p);
        assert_eq!(r.decided.expect("decided").role, Role::FirstControlPlane);
        // Once cp1 runs v1.33.6, cp2 follows.
        let c = cluster().with_node_upgraded("cp1", v("v1.33.6"));
        let r = preflight(&c, &req("cp2", "v1.33"), &p);
        assert_eq!(r.decided.expect("decided").role, Role::ControlPlane);
    }

    #[test]
    fn every_rule_is_unique() {
        let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), RULES.len());
    }
}
