//! Upgrade readiness: for every hop of an [`UpgradePlan`], what the hop would
//! break, as findings over a plain [`ReadinessSnapshot`], and a verdict.
//!
//! Pure decisions here ([`evaluate`]); what the findings are made of comes
//! from [`apis`] (removed API versions, Helm releases, the deprecated-API
//! metric), [`certs`] (certificate expiry) and safedrain's own drain plan
//! (`crate::drain::plan`, same rules, same code). [`gather`] reads the cluster.
//!
//! Verdicts: a hop is NOT READY when any finding blocks it, WARN when only
//! warnings remain, READY when nothing was found, UNKNOWN when nothing blocks
//! but something could not be read (so the answer is not known).

pub mod apis;
pub mod certs;
pub mod drains;
pub mod gather;

use std::fmt;

use jiff::Timestamp;
use jiff::civil::Date;
use serde::Serialize;

use super::calendar::{Calendar, SupportStatus};
use super::plan::UpgradePlan;
use super::snapshot::{ClusterVersions, Component};
use crate::version::MinorVersion;

pub use apis::{ApiUse, Removal, Removals, RequestedDeprecated};
pub use certs::Certificate;

/// A hop's (or the whole report's) verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    Ready,
    Warn,
    /// Nothing blocks, but something could not be read.
    Unknown,
    NotReady,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Ready => "READY",
            Level::Warn => "WARN",
            Level::Unknown => "UNKNOWN",
            Level::NotReady => "NOT READY",
        })
    }
}

/// Whether a finding stops the hop or only warns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warn,
    Block,
}

/// One thing a hop would break, naming its object and where it was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The node whose own upgrade this stops (a drain, a lagging kubelet); absent when
    /// it concerns the whole hop (removed APIs, etcd, certificates, the calendar).
    /// See [`Finding::concerns`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The object's kind (`PodDisruptionBudget`, `Pod`, `Node`, `Certificate`, ...).
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    /// Where it was seen (`last-applied-configuration`, `managedFields (manager kubectl)`,
    /// `Helm release web revision 3`, `/metrics`, `drain plan of node01`, ...).
    pub source: String,
    /// The rule id ([`RULES`]).
    pub rule: &'static str,
    pub severity: Severity,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Finding {
    /// Whether this finding stops an upgrade of the nodes in `selection`: a finding
    /// about one node's own upgrade (its drain, its kubelet) only when that node is
    /// selected; a finding about the hop always, since the hop starts with the first
    /// control-plane node whatever else is selected. `kubectl skew plan` plans every
    /// node (no selection); `kubectl upgrade-node` passes the nodes it was given.
    pub fn concerns(&self, selection: Option<&[String]>) -> bool {
        match (&self.node, selection) {
            (Some(node), Some(selected)) => selected.iter().any(|s| s == node),
            _ => true,
        }
    }
}

/// Something the report could not read, so its verdict is not known.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    /// What was being read (`list secrets`, `TLS handshake with https://...`).
    pub what: String,
    pub error: String,
}

/// One readiness rule: its id, what it decides and the upstream fact behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub summary: &'static str,
    pub source: &'static str,
}

pub const REMOVED_API: &str = "removed-api";
pub const REMOVED_API_ALREADY: &str = "removed-api-already";
pub const DEPRECATED_API_REQUESTED: &str = "deprecated-api-requested";
pub const DRAIN_BLOCKED: &str = "drain-blocked";
pub const DRAIN_WARNING: &str = "drain-warning";
pub const SKEW_PRECONDITION: &str = "skew-precondition";
pub const SKEW_AFTER_HOP: &str = "skew-after-hop";
pub const ETCD_36_GATE: &str = "etcd-3.6-gate";
pub const EMULATED_VERSION: &str = "emulated-version";
pub const CERTIFICATE_EXPIRY: &str = "certificate-expiry";
pub const SUPPORT_WINDOW: &str = "support-window";

/// Every readiness rule.
pub const RULES: &[Rule] = &[
    Rule {
        id: REMOVED_API,
        summary: "an object recorded at an API version the hop's target no longer serves blocks the hop",
        source: "kubernetes.io/docs/reference/using-api/deprecation-guide (per release); the table is data: --removed-apis",
    },
    Rule {
        id: REMOVED_API_ALREADY,
        summary: "an object recorded at a version removed before today's minor: its manifest can no longer be applied (warning)",
        source: "same table",
    },
    Rule {
        id: DEPRECATED_API_REQUESTED,
        summary: "a client still calls an API version the hop removes (apiserver_requested_deprecated_apis on /metrics)",
        source: "kubernetes.io/blog/2020/09/03/warnings; staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go",
    },
    Rule {
        id: DRAIN_BLOCKED,
        summary: "a node whose drain safedrain refuses stops the rolling upgrade (every node is drained)",
        source: "version-skew-policy.md: drain before a minor kubelet upgrade; safedrain's rules (kubectl safedrain --help)",
    },
    Rule {
        id: DRAIN_WARNING,
        summary: "a drain that goes through with downtime (single-replica workloads) is a warning",
        source: "safedrain's downtime rule",
    },
    Rule {
        id: SKEW_PRECONDITION,
        summary: "kubelets and kube-proxies (and controllers) that would fall out of skew when the control plane moves: a warning, the plan upgrades them first",
        source: "kubernetes/website content/en/releases/version-skew-policy.md (kubectl skew rules)",
    },
    Rule {
        id: SKEW_AFTER_HOP,
        summary: "what stays out of skew once the hop is done (kubectl is a warning: it is local)",
        source: "kubernetes/website content/en/releases/version-skew-policy.md",
    },
    Rule {
        id: ETCD_36_GATE,
        summary: "a hop that brings etcd 3.6 (kubeadm from v1.34) needs every etcd at 3.5.26 or newer first",
        source: "etcd.io blog 2025 (upgrade to 3.6: 3.5.26+ first); etcd-io/etcd Documentation/contributor-guide/bump_etcd_version_k8s.md",
    },
    Rule {
        id: EMULATED_VERSION,
        summary: "the API server emulates an older minor than its binary: removed APIs follow the emulated version",
        source: "KEP-4330; kubernetes/website concepts/cluster-administration/compatibility-version.md",
    },
    Rule {
        id: CERTIFICATE_EXPIRY,
        summary: "a certificate that expires within 30 days, or before the planned upgrade could finish, blocks",
        source: "kubeadm certs check-expiration; kubernetes.io/docs/tasks/administer-cluster/kubeadm/kubeadm-certs",
    },
    Rule {
        id: SUPPORT_WINDOW,
        summary: "today's calendar: an unreleased, end-of-life or unknown minor warns (the current minor, each hop's target, the last target's maintenance mode)",
        source: "kubernetes/website content/en/releases/patch-releases.md (KEP-1498); the embedded calendar",
    },
];

/// One node's drain as safedrain decides it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeDrain {
    pub node: String,
    pub blockers: Vec<crate::drain::Finding>,
    pub warnings: Vec<crate::drain::Finding>,
}

impl NodeDrain {
    /// Keeps what the report needs from safedrain's plan.
    pub fn from_plan(plan: &crate::drain::DrainPlan) -> NodeDrain {
        use crate::drain::Severity;
        NodeDrain {
            node: plan.node.clone(),
            blockers: plan
                .blockers
                .iter()
                .filter(|f| f.severity == Severity::Block)
                .cloned()
                .collect(),
            warnings: plan
                .warnings
                .iter()
                .filter(|f| f.severity == Severity::Warning)
                .cloned()
                .collect(),
        }
    }
}

/// Everything the readiness rules decide over, as plain data.
#[derive(Debug, Clone, Default)]
pub struct ReadinessSnapshot {
    pub versions: ClusterVersions,
    /// `group/version`s the server serves today (discovery).
    pub served: std::collections::BTreeSet<String>,
    /// Recorded uses of API versions the removal table knows.
    pub api_uses: Vec<ApiUse>,
    /// `apiserver_requested_deprecated_apis` series; `None` when /metrics was not readable.
    pub requested_deprecated: Option<Vec<RequestedDeprecated>>,
    pub drains: Vec<NodeDrain>,
    /// `/version` `emulationMajor/emulationMinor` and the binary's minor.
    pub emulated: Option<MinorVersion>,
    pub binary: Option<MinorVersion>,
    pub certificates: Vec<Certificate>,
    pub unreadable: Vec<Unreadable>,
    pub notes: Vec<String>,
}

/// Settings of the evaluation.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The day the calendar is read on.
    pub as_of: Date,
    /// Now, for certificate expiry.
    pub now: Timestamp,
    /// How long the whole upgrade is planned to take (days); a certificate that
    /// expires within `max(30, upgrade_days)` days is a finding.
    pub upgrade_days: i64,
}

/// The verdict of one hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HopReadiness {
    pub hop: usize,
    pub from: MinorVersion,
    pub to: MinorVersion,
    pub verdict: Level,
    pub findings: Vec<Finding>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Readiness {
    pub verdict: Level,
    pub hops: Vec<HopReadiness>,
    /// What could not be read (the reason for UNKNOWN).
    pub unreadable: Vec<Unreadable>,
    pub notes: Vec<String>,
}

impl Readiness {
    /// 0: every hop READY or WARN; 1: a hop is NOT READY; 2: could not tell.
    pub fn exit_code(&self) -> u8 {
        match self.verdict {
            Level::Ready | Level::Warn => 0,
            Level::NotReady => 1,
            Level::Unknown => 2,
        }
    }
}

/// The first etcd release that may move to 3.6.
const ETCD_36_MINIMUM_PATCH: u64 = 26;
/// kubeadm's etcd is 3.6 from Kubernetes v1.34 (etcd-io/etcd
/// `Documentation/contributor-guide/bump_etcd_version_k8s.md`).
const ETCD_36_FROM: MinorVersion = MinorVersion::new(1, 34);
/// Certificates expiring within this many days are findings.
pub const CERTIFICATE_DAYS: i64 = 30;

/// Decides every hop of `plan`.
pub fn evaluate(
    snapshot: &ReadinessSnapshot,
    plan: &UpgradePlan,
    removals: &Removals,
    calendar: &Calendar,
    settings: &Settings,
) -> Readiness {
    let mut hops = Vec::new();
    for (i, hop) in plan.hops.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == plan.hops.len();
        let mut findings = Vec::new();
        removed_apis(snapshot, removals, hop.from, hop.to, first, &mut findings);
        drains(snapshot, &mut findings);
        versions(snapshot, hop, &mut findings);
        if first {
            certificates(snapshot, settings, &mut findings);
        }
        support(
            calendar,
            settings.as_of,
            hop.from,
            hop.to,
            first,
            last,
            &mut findings,
        );
        findings.sort_by(|a, b| {
            (
                std::cmp::Reverse(a.severity),
                a.rule,
                &a.namespace,
                &a.name,
                &a.source,
            )
                .cmp(&(
                    std::cmp::Reverse(b.severity),
                    b.rule,
                    &b.namespace,
                    &b.name,
                    &b.source,
                ))
        });
        findings.dedup();
        let verdict = verdict_of(&findings, !snapshot.unreadable.is_empty());
        hops.push(HopReadiness {
            hop: i + 1,
            from: hop.from,
            to: hop.to,
            verdict,
            findings,
        });
    }
    let verdict =
        hops.iter()
            .map(|h| h.verdict)
            .max()
            .unwrap_or(if snapshot.unreadable.is_empty() {
                Level::Ready
            } else {
                Level::Unknown
            });
    Readiness {
        verdict,
        hops,
        unreadable: snapshot.unreadable.clone(),
        notes: snapshot.notes.clone(),
    }
}

/// What `kubectl upgrade-node` checks before a control-plane node moves the
/// cluster from `from` to `to` (`kubeadm upgrade apply`): the same rules as
/// the plan's hop, without the drains and the skew (upgrade-node applies
/// safedrain and the skew engine to the node itself).
#[derive(Debug, Clone)]
pub struct PreflightInput {
    pub snapshot: ReadinessSnapshot,
    pub removals: Removals,
    pub calendar: Calendar,
    pub settings: Settings,
    /// The other nodes this run upgrades (their drains are in the snapshot): findings
    /// about any other node's own upgrade are left to that node ([`Finding::concerns`]).
    pub selection: Vec<String>,
}

/// The findings of one hop, for upgrade-node's preflight (see [`PreflightInput`]):
/// those that concern the hop, and the drains of the other selected nodes.
pub fn hop_findings(input: &PreflightInput, from: MinorVersion, to: MinorVersion) -> Vec<Finding> {
    let snapshot = &input.snapshot;
    let mut out = Vec::new();
    removed_apis(snapshot, &input.removals, from, to, false, &mut out);
    drains(snapshot, &mut out);
    etcd_and_emulation(snapshot, from, to, &mut out);
    certificates(snapshot, &input.settings, &mut out);
    support(
        &input.calendar,
        input.settings.as_of,
        from,
        to,
        false,
        true,
        &mut out,
    );
    out.retain(|f| f.concerns(Some(&input.selection)));
    out
}

fn verdict_of(findings: &[Finding], unreadable: bool) -> Level {
    if findings.iter().any(|f| f.severity == Severity::Block) {
        Level::NotReady
    } else if unreadable {
        Level::Unknown
    } else if findings.is_empty() {
        Level::Ready
    } else {
        Level::Warn
    }
}

fn removed_apis(
    snapshot: &ReadinessSnapshot,
    removals: &Removals,
    from: MinorVersion,
    to: MinorVersion,
    first: bool,
    out: &mut Vec<Finding>,
) {
    // Removed APIs follow the emulated version when it is older (KEP-4330).
    let from = snapshot.emulated.map_or(from, |e| e.min(from));
    for u in &snapshot.api_uses {
        let Some(r) = removals.find(&u.api_version, &u.kind) else {
            continue;
        };
        let served = if snapshot.served.contains(&u.api_version) {
            "the server still serves it today"
        } else {
            "the server no longer serves it today (discovery)"
        };
        if r.removed_in > from && r.removed_in <= to {
            out.push(Finding {
                node: None,
                kind: u.kind.clone(),
                namespace: u.namespace.clone(),
                name: u.name.clone(),
                source: u.source.clone(),
                rule: REMOVED_API,
                severity: Severity::Block,
                message: format!(
                    "{} {} is recorded at {}, which {} removes ({served}; {})",
                    u.kind, u.name, u.api_version, r.removed_in, r.source
                ),
                fix: format!(
                    "rewrite the manifest (and whatever applies it) at {} and apply it again before the upgrade{}",
                    r.replacement,
                    if u.source.starts_with("Helm") {
                        "; for a Helm release, upgrade the chart (or use the helm-mapkubeapis plugin) so the stored release no longer holds the old version"
                    } else {
                        ""
                    }
                ),
            });
        } else if first && r.removed_in <= from {
            out.push(Finding {
                node: None,
                kind: u.kind.clone(),
                namespace: u.namespace.clone(),
                name: u.name.clone(),
                source: u.source.clone(),
                rule: REMOVED_API_ALREADY,
                severity: Severity::Warn,
                message: format!(
                    "{} {} is recorded at {}, removed in {} already ({served}): applying that manifest again fails",
                    u.kind, u.name, u.api_version, r.removed_in
                ),
                fix: format!("update the manifest to {}", r.replacement),
            });
        }
    }
    for d in snapshot.requested_deprecated.iter().flatten() {
        let Some(removed) = d.removed_release else {
            continue;
        };
        if removed > from && removed <= to {
            let gv = d.group_version();
            out.push(Finding {
                node: None,
                kind: d.resource.clone(),
                namespace: None,
                name: String::new(),
                source: "/metrics apiserver_requested_deprecated_apis".into(),
                rule: DEPRECATED_API_REQUESTED,
                severity: Severity::Block,
                message: format!(
                    "a client still requests {} at {gv}, which {removed} removes",
                    d.resource
                ),
                fix: format!(
                    "find the client in the audit log (annotation k8s.io/deprecated) and move it off {gv} before the upgrade"
                ),
            });
        }
    }
}

fn drains(snapshot: &ReadinessSnapshot, out: &mut Vec<Finding>) {
    for d in &snapshot.drains {
        let source = format!("drain plan of node {}", d.node);
        for (list, rule, severity) in [
            (&d.blockers, DRAIN_BLOCKED, Severity::Block),
            (&d.warnings, DRAIN_WARNING, Severity::Warn),
        ] {
            for f in list {
                let fix = match f.rule {
                    crate::drain::Rule::Downtime => {
                        "scale the workload to 2 or more replicas, or accept the downtime"
                            .to_string()
                    }
                    r => format!(
                        "see `kubectl safedrain {} --dry-run` ({}): {}",
                        d.node,
                        r.name(),
                        r.summary()
                    ),
                };
                let objects: Vec<(Option<String>, String)> = if f.pods.is_empty() {
                    vec![(None, d.node.clone())]
                } else {
                    f.pods
                        .iter()
                        .map(|p| match p.split_once('/') {
                            Some((ns, n)) => (Some(ns.to_string()), n.to_string()),
                            None => (None, p.clone()),
                        })
                        .collect()
                };
                for (namespace, name) in objects {
                    out.push(Finding {
                        node: Some(d.node.clone()),
                        kind: if namespace.is_some() { "Pod" } else { "Node" }.into(),
                        namespace,
                        name,
                        source: source.clone(),
                        rule,
                        severity,
                        message: format!("[{}] {}", f.rule.name(), f.message),
                        fix: fix.clone(),
                    });
                }
            }
        }
    }
}

fn versions(snapshot: &ReadinessSnapshot, hop: &super::plan::Hop, out: &mut Vec<Finding>) {
    for p in &hop.preconditions {
        let nodes = if p.nodes.is_empty() {
            vec![String::new()]
        } else {
            p.nodes.clone()
        };
        for node in nodes {
            out.push(Finding {
                node: (!node.is_empty()).then(|| node.clone()),
                kind: "Node".into(),
                namespace: None,
                name: node,
                source: format!("skew rule {}", p.rule),
                rule: SKEW_PRECONDITION,
                // The plan upgrades these nodes first (its lagging-node steps).
                severity: Severity::Warn,
                message: p.message.clone(),
                fix: format!(
                    "upgrade the node first: `kubectl upgrade-node NODE --to {}`",
                    hop.from
                ),
            });
        }
    }
    for v in &hop.projected.violations {
        let kubectl = v.component == Component::Kubectl;
        out.push(Finding {
            node: v.node.clone().filter(|_| !kubectl),
            kind: v.component.to_string(),
            namespace: None,
            name: v.node.clone().unwrap_or_default(),
            source: format!("skew rule {}", v.rule),
            rule: SKEW_AFTER_HOP,
            severity: if kubectl {
                Severity::Warn
            } else {
                Severity::Block
            },
            message: format!("after the hop to {}: {}", hop.to, v.message),
            fix: if kubectl {
                format!(
                    "install kubectl {} (within one minor of the API server)",
                    hop.to
                )
            } else {
                "see `kubectl skew plan` for the steps that bring it into range".into()
            },
        });
    }
    etcd_and_emulation(snapshot, hop.from, hop.to, out);
}

fn etcd_and_emulation(
    snapshot: &ReadinessSnapshot,
    from: MinorVersion,
    to: MinorVersion,
    out: &mut Vec<Finding>,
) {
    // etcd: kubeadm moves to 3.6 at v1.34.
    if from < ETCD_36_FROM && to >= ETCD_36_FROM {
        for e in snapshot.versions.of(Component::Etcd) {
            let Some(v) = &e.version else { continue };
            if v.major == 3 && v.minor == 5 && v.patch < ETCD_36_MINIMUM_PATCH {
                out.push(Finding {
                    node: None,
                    kind: "Pod".into(),
                    namespace: Some("kube-system".into()),
                    name: format!("etcd-{}", e.node.as_deref().unwrap_or("?")),
                    source: e.source.clone(),
                    rule: ETCD_36_GATE,
                    severity: Severity::Block,
                    message: format!(
                        "etcd on {} runs {}; the hop to {} brings etcd 3.6, which needs 3.5.{ETCD_36_MINIMUM_PATCH} or newer first, every member healthy",
                        e.node.as_deref().unwrap_or("?"),
                        e.shown_version(),
                        to
                    ),
                    fix: format!(
                        "upgrade etcd to 3.5.{ETCD_36_MINIMUM_PATCH} or newer (the newest v{}.{} patch's kubeadm does) before the hop",
                        from.major, from.minor
                    ),
                });
            }
        }
    }
    if let (Some(e), Some(b)) = (snapshot.emulated, snapshot.binary)
        && e != b
    {
        out.push(Finding {
            node: None,
            kind: "APIServer".into(),
            namespace: None,
            name: String::new(),
            source: "/version emulationMajor/emulationMinor".into(),
            rule: EMULATED_VERSION,
            severity: Severity::Warn,
            message: format!(
                "the API server binary is {b} but emulates {e}: APIs removed after {e} are still served, and go away when the emulated version moves"
            ),
            fix: "plan the removed-API work against the emulated version; raise --emulated-version one minor at a time".into(),
        });
    }
}

fn certificates(snapshot: &ReadinessSnapshot, settings: &Settings, out: &mut Vec<Finding>) {
    let window = CERTIFICATE_DAYS.max(settings.upgrade_days);
    for c in &snapshot.certificates {
        let Some(f) = certs::expiry_finding(c, settings.now, window) else {
            continue;
        };
        out.push(f);
    }
}

fn support(
    calendar: &Calendar,
    as_of: Date,
    from: MinorVersion,
    to: MinorVersion,
    first: bool,
    last: bool,
    out: &mut Vec<Finding>,
) {
    let finding = |minor: MinorVersion, severity, message: String, fix: String| Finding {
        node: None,
        kind: "Release".into(),
        namespace: None,
        name: minor.to_string(),
        source: "release calendar".into(),
        rule: SUPPORT_WINDOW,
        severity,
        message,
        fix,
    };
    if first {
        let s = calendar.support(from, as_of);
        if matches!(
            s.status,
            SupportStatus::EndOfLife | SupportStatus::NotInCalendar
        ) {
            out.push(finding(
                from,
                Severity::Warn,
                s.message,
                "the upgrade is the fix; until then no patches (security fixes included) come"
                    .into(),
            ));
        }
    }
    if to == from {
        return;
    }
    let s = calendar.support(to, as_of);
    match s.status {
        // Planning ahead for a release to come is legitimate: say so, do not block.
        SupportStatus::Unreleased => out.push(finding(
            to,
            Severity::Warn,
            s.message,
            format!("wait for {to} to be released, or plan to an earlier minor"),
        )),
        SupportStatus::NotInCalendar => out.push(finding(
            to,
            Severity::Warn,
            s.message,
            "pass --calendar with the release dates".into(),
        )),
        SupportStatus::EndOfLife | SupportStatus::MaintenanceMode if last => out.push(finding(
            to,
            Severity::Warn,
            s.message,
            "plan further, to a supported minor".into(),
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
