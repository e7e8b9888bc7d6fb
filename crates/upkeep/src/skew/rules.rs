//! The version skew policy as one table of data ([`RULES`]) and the one
//! function that evaluates it ([`evaluate`]).
//!
//! Source of every rule: kubernetes/website
//! `content/en/releases/version-skew-policy.md` (the "Supported version skew"
//! section; n-3 for kubelet and kube-proxy since website PR #42218, KEP-3935).

use std::fmt;

use serde::Serialize;

use super::snapshot::{ClusterVersions, Component, Observed};
use crate::version::MinorVersion;

/// Where every rule comes from.
pub const POLICY_SOURCE: &str = "kubernetes/website content/en/releases/version-skew-policy.md";
/// The same page, as people read it.
pub const POLICY_URL: &str = "https://kubernetes.io/releases/version-skew-policy/";

/// What a rule measures a component against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Reference {
    /// The kube-apiserver instances: `newer` counts from the oldest instance,
    /// `older` from the newest (that is the HA narrowing).
    Apiservers,
    /// The kube-apiservers the component talks to: the one on its own node
    /// when there is one (kubeadm points controller-manager.conf and
    /// scheduler.conf at the node's local API endpoint, kubernetes PR #94398),
    /// else all of them (as through a load balancer).
    ApiserversReached,
    /// The kubelet on the same node.
    KubeletOnSameNode,
}

/// How many minors a component may be away from its reference, with the
/// narrower window the policy gives components older than a given minor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    pub minors: u64,
    /// `(v, n)`: a component older than `v` may only be `n` minors away.
    pub narrower_before: Option<(MinorVersion, u64)>,
}

const fn window(minors: u64) -> Window {
    Window {
        minors,
        narrower_before: None,
    }
}

/// "`kubelet` < 1.25 may only be up to two minor versions older" (and the
/// same for kube-proxy).
const BEFORE_1_25: Option<(MinorVersion, u64)> = Some((MinorVersion::new(1, 25), 2));

/// One skew rule: its id (used in output), the components it governs, the
/// allowed window, and the upstream sentence it encodes.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Rule {
    pub id: &'static str,
    pub components: &'static [Component],
    pub against: Reference,
    /// How many minors newer than the reference (the oldest apiserver) is allowed.
    pub newer: Window,
    /// How many minors older than the reference (the newest apiserver) is allowed.
    pub older: Window,
    /// When an instance sits at the oldest allowed minor, the next
    /// control-plane upgrade would put it out of range: warn about it.
    pub blocks_next_upgrade: bool,
    /// The rule in one line, as reports show it.
    pub summary: &'static str,
    /// The sentence of the policy page this rule encodes.
    pub policy: &'static str,
    pub source: &'static str,
}

/// The skew policy, each rule once.
pub const RULES: &[Rule] = &[
    Rule {
        id: "apiserver-ha",
        components: &[Component::KubeApiserver],
        against: Reference::Apiservers,
        newer: window(1),
        older: window(1),
        blocks_next_upgrade: false,
        summary: "all kube-apiserver instances within one minor of each other",
        policy: "In highly-available (HA) clusters, the newest and oldest kube-apiserver instances must be within one minor version.",
        source: POLICY_SOURCE,
    },
    Rule {
        id: "controllers-vs-apiserver",
        components: &[
            Component::KubeControllerManager,
            Component::KubeScheduler,
            Component::CloudControllerManager,
        ],
        against: Reference::ApiserversReached,
        newer: window(0),
        older: window(1),
        blocks_next_upgrade: false,
        summary: "not newer than the kube-apiserver it talks to (the one on its node, else every one), at most one minor older",
        policy: "kube-controller-manager, kube-scheduler, and cloud-controller-manager must not be newer than the kube-apiserver instances they communicate with. They are expected to match the kube-apiserver minor version, but may be up to one minor version older (to allow live upgrades).",
        source: POLICY_SOURCE,
    },
    Rule {
        id: "kubelet-vs-apiserver",
        components: &[Component::Kubelet],
        against: Reference::Apiservers,
        newer: window(0),
        older: Window {
            minors: 3,
            narrower_before: BEFORE_1_25,
        },
        blocks_next_upgrade: true,
        summary: "not newer than the oldest kube-apiserver, at most 3 minors older than the newest (2 for kubelets older than v1.25)",
        policy: "kubelet must not be newer than kube-apiserver. kubelet may be up to three minor versions older than kube-apiserver (kubelet < 1.25 may only be up to two minor versions older than kube-apiserver).",
        source: POLICY_SOURCE,
    },
    Rule {
        id: "kube-proxy-vs-apiserver",
        components: &[Component::KubeProxy],
        against: Reference::Apiservers,
        newer: window(0),
        older: Window {
            minors: 3,
            narrower_before: BEFORE_1_25,
        },
        blocks_next_upgrade: true,
        summary: "not newer than the oldest kube-apiserver, at most 3 minors older than the newest (2 for kube-proxy older than v1.25)",
        policy: "kube-proxy must not be newer than kube-apiserver. kube-proxy may be up to three minor versions older than kube-apiserver (kube-proxy < 1.25 may only be up to two minor versions older than kube-apiserver).",
        source: POLICY_SOURCE,
    },
    Rule {
        id: "kube-proxy-vs-kubelet",
        components: &[Component::KubeProxy],
        against: Reference::KubeletOnSameNode,
        newer: Window {
            minors: 3,
            narrower_before: BEFORE_1_25,
        },
        older: Window {
            minors: 3,
            narrower_before: BEFORE_1_25,
        },
        blocks_next_upgrade: false,
        summary: "within 3 minors of the kubelet on its node (2 for kube-proxy older than v1.25)",
        policy: "kube-proxy may be up to three minor versions older or newer than the kubelet instance it runs alongside (kube-proxy < 1.25 may only be up to two minor versions older or newer than the kubelet instance it runs alongside).",
        source: POLICY_SOURCE,
    },
    Rule {
        id: "kubectl-vs-apiserver",
        components: &[Component::Kubectl],
        against: Reference::Apiservers,
        newer: window(1),
        older: window(1),
        blocks_next_upgrade: false,
        summary: "within one minor (older or newer) of every kube-apiserver",
        policy: "kubectl is supported within one minor version (older or newer) of kube-apiserver.",
        source: POLICY_SOURCE,
    },
];

/// The rule with this id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// The rules that govern a component.
pub fn rules_for(component: Component) -> impl Iterator<Item = &'static Rule> {
    RULES
        .iter()
        .filter(move |r| r.components.contains(&component))
}

/// An inclusive range of minors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AllowedRange {
    pub oldest: MinorVersion,
    pub newest: MinorVersion,
}

impl AllowedRange {
    pub fn contains(&self, m: MinorVersion) -> bool {
        self.oldest <= m && m <= self.newest
    }

    fn intersect(self, other: AllowedRange) -> AllowedRange {
        AllowedRange {
            oldest: self.oldest.max(other.oldest),
            newest: self.newest.min(other.newest),
        }
    }
}

impl fmt::Display for AllowedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.oldest > self.newest {
            f.write_str("none")
        } else if self.oldest == self.newest {
            write!(f, "{}", self.oldest)
        } else {
            write!(f, "{}-{}", self.oldest, self.newest)
        }
    }
}

/// The minor versions `rule` allows when its reference spans `low..=high`
/// (for [`Reference::Apiservers`]: the oldest and newest instance).
pub fn allowed_range(rule: &Rule, low: MinorVersion, high: MinorVersion) -> AllowedRange {
    // The window depends on the checked component's own version ("kubelet <
    // 1.25 may only be ..."), which keeps the allowed set contiguous: at the
    // edge, use the full window only if the edge itself is past the threshold.
    let oldest = {
        let wide = high.offset(-(rule.older.minors as i64));
        match (wide, rule.older.narrower_before) {
            (Some(w), Some((threshold, narrow))) if w < threshold => high.offset(-(narrow as i64)),
            (None, Some((_, narrow))) => high.offset(-(narrow as i64)),
            (w, _) => w,
        }
        .unwrap_or(MinorVersion::new(high.major, 0))
    };
    let newest = {
        let wide = low.offset(rule.newer.minors as i64).unwrap_or(low);
        match rule.newer.narrower_before {
            Some((threshold, narrow)) if wide < threshold => {
                low.offset(narrow as i64).unwrap_or(low)
            }
            _ => wide,
        }
    };
    AllowedRange { oldest, newest }
}

/// The verdict for one observed instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Within every rule that applies.
    Ok,
    /// Outside a rule.
    Violation,
    /// Allowed now, but the next control-plane upgrade would put it out of
    /// range (or a control-plane upgrade is half done).
    Warning,
    /// The version (or its reference) could not be read.
    Unknown,
    /// Shown for information; no skew rule covers it (etcd).
    Info,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok",
            Verdict::Violation => "violation",
            Verdict::Warning => "warning",
            Verdict::Unknown => "unknown",
            Verdict::Info => "info",
        })
    }
}

/// One row of the report: an observed instance and what the policy says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub component: Component,
    pub node: Option<String>,
    pub version: String,
    /// The minors allowed for this instance (every applicable rule intersected).
    pub allowed: Option<AllowedRange>,
    pub verdict: Verdict,
    pub reason: String,
    /// The deciding rule's id (the first broken one, or the governing one).
    pub rule: Option<&'static str>,
    pub source: String,
}

/// A violation or a warning, as the top-level `violations`/`warnings` lists
/// carry them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub component: Component,
    pub node: Option<String>,
    pub version: String,
    pub rule: &'static str,
    pub message: String,
}

/// What the apiservers look like, for the report header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiserverSummary {
    /// What `/version` answered (one instance).
    pub served: Option<String>,
    /// The oldest and newest known instance minors.
    pub oldest: Option<MinorVersion>,
    pub newest: Option<MinorVersion>,
    /// How many instances were seen (static pods, else `/version` alone).
    pub instances: usize,
    pub control_plane_visible: bool,
}

/// The whole evaluation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkewReport {
    pub apiserver: ApiserverSummary,
    pub violations: Vec<Finding>,
    pub warnings: Vec<Finding>,
    pub components: Vec<Check>,
    /// Things people should know that are not about one instance.
    pub notes: Vec<String>,
}

impl SkewReport {
    pub fn has_violations(&self) -> bool {
        !self.violations.is_empty()
    }
}

/// Evaluates every observed instance against every rule that governs it.
pub fn evaluate(snapshot: &ClusterVersions) -> SkewReport {
    let span = snapshot.apiserver_span();
    let mut components = Vec::new();
    let mut violations = Vec::new();
    let mut warnings = Vec::new();
    let mut notes = Vec::new();

    if !snapshot.control_plane_visible {
        notes.push(
            "the control plane is not visible (no kube-system pods labelled tier=control-plane, \
             as on managed clusters): kube-apiserver is known only from /version, and \
             kube-controller-manager, kube-scheduler and etcd are not checked"
                .to_string(),
        );
    }
    if span.is_none() {
        notes.push(
            "no kube-apiserver version is known, so nothing can be checked against it".to_string(),
        );
    }

    let mut order: Vec<&Observed> = snapshot.components.iter().collect();
    order.sort_by(|a, b| {
        (a.component, &a.node, &a.reported).cmp(&(b.component, &b.node, &b.reported))
    });

    for observed in order {
        let check = check_one(snapshot, observed, span);
        for (rule, message) in &check.broken {
            violations.push(Finding {
                component: observed.component,
                node: observed.node.clone(),
                version: observed.shown_version(),
                rule: rule.id,
                message: message.clone(),
            });
        }
        if let Some((rule, message)) = &check.warning {
            warnings.push(Finding {
                component: observed.component,
                node: observed.node.clone(),
                version: observed.shown_version(),
                rule: rule.id,
                message: message.clone(),
            });
        }
        components.push(check.row);
    }

    SkewReport {
        apiserver: ApiserverSummary {
            served: snapshot.served.as_ref().map(Observed::shown_version),
            oldest: span.map(|s| s.0),
            newest: span.map(|s| s.1),
            instances: snapshot.of(Component::KubeApiserver).count(),
            control_plane_visible: snapshot.control_plane_visible,
        },
        violations,
        warnings,
        components,
        notes,
    }
}

struct Evaluated {
    row: Check,
    broken: Vec<(&'static Rule, String)>,
    warning: Option<(&'static Rule, String)>,
}

fn check_one(
    snapshot: &ClusterVersions,
    observed: &Observed,
    span: Option<(MinorVersion, MinorVersion)>,
) -> Evaluated {
    let mut row = Check {
        component: observed.component,
        node: observed.node.clone(),
        version: observed.shown_version(),
        allowed: None,
        verdict: Verdict::Unknown,
        reason: String::new(),
        rule: None,
        source: observed.source.clone(),
    };
    let done = |row: Check| Evaluated {
        row,
        broken: Vec::new(),
        warning: None,
    };
    let mut rules = rules_for(observed.component).peekable();
    if rules.peek().is_none() {
        row.verdict = Verdict::Info;
        row.reason = "no skew rule covers it; shown for information".into();
        return done(row);
    }
    let Some(minor) = observed.minor() else {
        row.reason = observed
            .unknown
            .clone()
            .unwrap_or_else(|| "the version is unknown".into());
        return done(row);
    };

    let mut allowed: Option<AllowedRange> = None;
    let mut broken = Vec::new();
    let mut governing = None;
    let mut skipped = Vec::new();
    for rule in rules {
        let local_apiserver = || {
            let node = observed.node.as_deref()?;
            snapshot
                .of(Component::KubeApiserver)
                .filter(|a| a.node.as_deref() == Some(node))
                .filter_map(Observed::minor)
                .min()
        };
        let (low, high, what) = match (rule.against, span) {
            (Reference::KubeletOnSameNode, _) => {
                let kubelet = observed
                    .node
                    .as_deref()
                    .and_then(|n| snapshot.kubelet_on(n))
                    .and_then(Observed::minor);
                match kubelet {
                    Some(k) => (k, k, Some((k, "the kubelet on its node"))),
                    None => continue,
                }
            }
            (_, None) => {
                skipped.push("no kube-apiserver version is known");
                continue;
            }
            (Reference::ApiserversReached, Some(span)) => match local_apiserver() {
                Some(a) => (a, a, Some((a, "the kube-apiserver on its node"))),
                None => (span.0, span.1, None),
            },
            (Reference::Apiservers, Some((o, n))) => (o, n, None),
        };
        if low.major != minor.major || high.major != minor.major {
            broken.push((
                rule,
                format!(
                    "major version {} differs from its reference ({}); no skew is supported across majors",
                    minor.major, high.major
                ),
            ));
            continue;
        }
        let range = allowed_range(rule, low, high);
        allowed = Some(allowed.map_or(range, |a| a.intersect(range)));
        governing.get_or_insert(rule);
        if !range.contains(minor) {
            broken.push((
                rule,
                explain(rule, observed.component, minor, low, high, what, range),
            ));
        }
    }

    row.allowed = allowed;
    if !broken.is_empty() {
        row.verdict = Verdict::Violation;
        row.rule = Some(broken[0].0.id);
        row.reason = broken
            .iter()
            .map(|(_, m)| m.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        return Evaluated {
            row,
            broken,
            warning: None,
        };
    }
    let Some(governing) = governing else {
        row.reason = skipped
            .first()
            .copied()
            .unwrap_or("nothing to compare it with")
            .to_string();
        return done(row);
    };
    row.rule = Some(governing.id);
    row.verdict = Verdict::Ok;
    row.reason = governing.summary.to_string();

    let warning = warn_one(observed.component, minor, span);
    if let Some((rule, message)) = &warning {
        row.verdict = Verdict::Warning;
        row.rule = Some(rule.id);
        row.reason = message.clone();
    }
    Evaluated {
        row,
        broken,
        warning,
    }
}

/// What is one upgrade away from violating: an instance at the oldest minor
/// its rule allows would fall out of range once every kube-apiserver is one
/// minor newer ("kubelet instances that are persistently three minor versions
/// behind kube-apiserver ... must be upgraded before the control plane can be
/// upgraded"); and a half-finished HA control-plane upgrade.
fn warn_one(
    component: Component,
    minor: MinorVersion,
    span: Option<(MinorVersion, MinorVersion)>,
) -> Option<(&'static Rule, String)> {
    let (oldest, newest) = span?;
    if component == Component::KubeApiserver && oldest != newest && minor == oldest {
        return Some((
            rule("apiserver-ha").expect("rule exists"),
            format!(
                "kube-apiserver instances run {oldest} and {newest}: a control-plane upgrade is half done; \
                 finish it (the skew narrows every other range meanwhile)"
            ),
        ));
    }
    let next = newest.next();
    for rule in rules_for(component).filter(|r| r.blocks_next_upgrade) {
        let now = allowed_range(rule, oldest, newest);
        let after = allowed_range(rule, next, next);
        if now.contains(minor) && !after.contains(minor) {
            return Some((
                rule,
                format!(
                    "{component} {minor} is the oldest minor allowed now; it blocks the next \
                     control-plane upgrade to {next} (allowed then: {after}): upgrade it first"
                ),
            ));
        }
    }
    None
}

fn explain(
    rule: &Rule,
    component: Component,
    minor: MinorVersion,
    low: MinorVersion,
    high: MinorVersion,
    local: Option<(MinorVersion, &str)>,
    range: AllowedRange,
) -> String {
    let plural = |n: i64| if n == 1 { "minor" } else { "minors" };
    if component == Component::KubeApiserver {
        let d = high.minus(low).unwrap_or(0);
        return format!(
            "kube-apiserver instances span {low} to {high}, {d} {} apart; at most 1 is allowed",
            plural(d)
        );
    }
    let newer = minor > range.newest;
    let (window, direction) = if newer {
        (&rule.newer, "newer")
    } else {
        (&rule.older, "older")
    };
    let (reference_minor, reference) = match local {
        Some((k, what)) => (k, format!("{what} ({k})")),
        None if newer => (low, format!("the oldest kube-apiserver ({low})")),
        None => (high, format!("the newest kube-apiserver ({high})")),
    };
    let d = minor.minus(reference_minor).unwrap_or(0).abs();
    let limit = match window.narrower_before {
        Some((threshold, narrow)) if minor < threshold => {
            format!("at most {narrow} allowed for {component} older than {threshold}")
        }
        _ if window.minors == 0 => format!("{component} must not be newer"),
        _ => format!("at most {} allowed", window.minors),
    };
    format!(
        "{component} {minor} is {d} {} {direction} than {reference}; {limit} (allowed: {range})",
        plural(d)
    )
}
