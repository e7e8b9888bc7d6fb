//! The upgrade path planner: from today's versions to a target, one minor at
//! a time, in the supported component order.
//!
//! Upstream facts encoded here (kubernetes/website
//! `content/en/releases/version-skew-policy.md`, "Supported component upgrade
//! order"): kube-apiserver must not skip minors, even single-instance;
//! before it moves, every apiserver is at N-1 (or N), the controllers at N-1,
//! and the kubelets and kube-proxies within range of the new apiserver;
//! then kube-controller-manager, kube-scheduler and cloud-controller-manager;
//! then kubelets, each node drained first ("In-place minor version kubelet
//! upgrades are not supported"). kubeadm's procedure
//! (kubernetes/website `content/en/docs/tasks/administer-cluster/kubeadm/kubeadm-upgrade.md`):
//! `kubeadm upgrade apply` on the first control-plane node, `kubeadm upgrade
//! node` on the others, then the workers one at a time.

use std::fmt;

use serde::Serialize;

use super::rules::{Finding, RULES, allowed_range, evaluate};
use super::snapshot::{ClusterVersions, Component, Observed};
use crate::version::{KubeVersion, MinorVersion, VersionError};

/// Where to go: a minor (`v1.33`: its `.0` for the last hop) or an exact
/// release (`v1.33.2`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Minor(MinorVersion),
    Exact(KubeVersion),
}

impl Target {
    /// Parses `v1.33` or `v1.33.2`.
    pub fn parse(input: &str) -> Result<Target, VersionError> {
        match KubeVersion::parse(input) {
            Ok(v) => Ok(Target::Exact(v)),
            Err(_) => MinorVersion::parse(input).map(Target::Minor),
        }
    }

    pub fn minor(&self) -> MinorVersion {
        match self {
            Target::Minor(m) => *m,
            Target::Exact(v) => v.minor_version(),
        }
    }

    /// The release the last hop installs: the given one, or `vX.Y.0`.
    pub fn release(&self) -> KubeVersion {
        match self {
            Target::Minor(m) => m.first_patch(),
            Target::Exact(v) => v.clone(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Minor(m) => write!(f, "{m}"),
            Target::Exact(v) => write!(f, "{v}"),
        }
    }
}

/// Why there is no plan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The target is older than what runs.
    #[error(
        "{target} is older than the control plane ({current}): downgrades are not planned. \
         Kubernetes supports upgrading kube-apiserver one minor at a time, forwards only; \
         allowed targets are {allowed}. To go back, restore an etcd snapshot taken before the upgrade"
    )]
    Downgrade {
        target: String,
        current: String,
        allowed: String,
    },
    /// A different major version: no skew or upgrade path is defined.
    #[error(
        "{target} is a different major version from the control plane ({current}): no upgrade path is defined"
    )]
    MajorChange { target: String, current: String },
    /// Without an apiserver version there is nothing to plan from.
    #[error(
        "no kube-apiserver version is known, so there is no starting point for a plan \
         (check that /version answers and that kube-system pods are readable)"
    )]
    NoApiserverVersion,
}

/// The whole path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpgradePlan {
    /// The control plane's minor today (the oldest kube-apiserver).
    pub from: MinorVersion,
    pub to: String,
    pub hops: Vec<Hop>,
    /// Things to know about the whole plan.
    pub notes: Vec<String>,
}

/// One minor (or, for a patch-only plan, one patch) forward.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hop {
    pub from: MinorVersion,
    pub to: MinorVersion,
    /// The release to install: `v1.33.0`/the given patch on the last hop,
    /// "newest patch of v1.32" on intermediate ones (the repositories are not
    /// visible from here).
    pub target: String,
    /// The exact release, when known.
    pub target_version: Option<KubeVersion>,
    pub preconditions: Vec<Precondition>,
    pub steps: Vec<Step>,
    /// The skew once this hop is done (violations and warnings that remain).
    pub projected: Projected,
}

/// Something that must hold before the hop's control-plane upgrade.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Precondition {
    /// The skew rule it comes from.
    pub rule: &'static str,
    pub message: String,
    /// The nodes it concerns (empty when not node-bound).
    pub nodes: Vec<String>,
}

/// One step, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub action: StepAction,
    pub node: Option<String>,
    /// The command that does it, where there is one.
    pub command: Option<String>,
    pub description: String,
}

/// What a step does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepAction {
    /// A lagging node brought into range before the control plane moves.
    UpgradeLaggingNode,
    /// `kubeadm upgrade apply` on the first control-plane node.
    UpgradeFirstControlPlane,
    /// `kubeadm upgrade node` on another control-plane node.
    UpgradeOtherControlPlane,
    /// The provider upgrades a control plane we cannot see.
    UpgradeManagedControlPlane,
    /// A worker: drain, `kubeadm upgrade node`, kubelet, uncordon.
    UpgradeWorker,
}

impl fmt::Display for StepAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StepAction::UpgradeLaggingNode => "upgrade-lagging-node",
            StepAction::UpgradeFirstControlPlane => "upgrade-first-control-plane",
            StepAction::UpgradeOtherControlPlane => "upgrade-other-control-plane",
            StepAction::UpgradeManagedControlPlane => "upgrade-managed-control-plane",
            StepAction::UpgradeWorker => "upgrade-worker",
        })
    }
}

/// The skew after a hop.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Projected {
    pub violations: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

/// Plans the upgrade from `snapshot` to `target`.
pub fn plan(snapshot: &ClusterVersions, target: &Target) -> Result<UpgradePlan, PlanError> {
    let (oldest, newest) = snapshot
        .apiserver_span()
        .ok_or(PlanError::NoApiserverVersion)?;
    let to = target.minor();
    let newest_release = snapshot
        .of(Component::KubeApiserver)
        .filter_map(|o| o.version.as_ref())
        .max()
        .cloned()
        .expect("a span implies a version");

    let refuse = || PlanError::Downgrade {
        target: target.to_string(),
        current: if oldest == newest {
            newest_release.to_string()
        } else {
            format!("{oldest} to {newest}")
        },
        allowed: format!(
            "{} or a later patch of {newest}, and newer minors ({}, then {} and so on, one hop each)",
            newest_release.release(),
            newest.next(),
            newest.next().next()
        ),
    };
    if to.major != newest.major {
        return Err(PlanError::MajorChange {
            target: target.to_string(),
            current: newest_release.to_string(),
        });
    }
    if to < newest {
        return Err(refuse());
    }
    if let Target::Exact(v) = target
        && to == newest
        && v.release() < newest_release.release()
    {
        return Err(refuse());
    }

    let mut notes = Vec::new();
    if !snapshot.control_plane_visible {
        notes.push(
            "the control plane is not visible (managed cluster): its upgrade steps are the \
             provider's; the node steps still apply"
                .to_string(),
        );
    }
    if oldest != newest {
        notes.push(format!(
            "kube-apiserver instances run {oldest} and {newest}: the first hop finishes that upgrade"
        ));
    }

    let mut state = snapshot.clone();
    let mut hops = Vec::new();
    let mut from = oldest;
    // Each hop is one minor; a same-minor target is one patch hop.
    let mut hop_minors: Vec<MinorVersion> = Vec::new();
    let mut m = oldest;
    while m < to {
        m = m.next();
        hop_minors.push(m);
    }
    if hop_minors.is_empty() {
        let needs_patch = match target {
            Target::Exact(v) => snapshot
                .components
                .iter()
                .filter(|o| matches!(o.component, Component::KubeApiserver | Component::Kubelet))
                .filter_map(|o| o.version.as_ref())
                .any(|ov| ov.minor_version() == to && ov.release() < v.release()),
            Target::Minor(_) => false,
        };
        if needs_patch {
            hop_minors.push(to);
        } else {
            notes.push(format!(
                "the control plane already runs {newest_release}: no control-plane upgrade to plan"
            ));
        }
    }

    for (i, &hop_to) in hop_minors.iter().enumerate() {
        let last = i + 1 == hop_minors.len();
        let (target_text, target_version) = if last {
            let r = target.release();
            (r.to_string(), Some(r))
        } else {
            (format!("newest patch of {hop_to}"), None)
        };
        let hop = plan_hop(&mut state, from, hop_to, &target_text, target_version);
        from = hop_to;
        hops.push(hop);
    }

    Ok(UpgradePlan {
        from: oldest,
        to: target.to_string(),
        hops,
        notes,
    })
}

fn plan_hop(
    state: &mut ClusterVersions,
    from: MinorVersion,
    to: MinorVersion,
    target_text: &str,
    target_version: Option<KubeVersion>,
) -> Hop {
    let mut preconditions = Vec::new();
    let mut steps = Vec::new();
    let rule = |id: &str| RULES.iter().find(|r| r.id == id).expect("rule exists");

    // Whether an instance already runs this hop's release (or something newer,
    // which is never taken back).
    let reached = |o: &Observed| match (o.minor(), &target_version, &o.version) {
        (Some(m), _, _) if m > to => true,
        (Some(m), Some(t), Some(v)) if m == to => v.release() >= t.release(),
        (Some(m), _, _) => m == to,
        (None, _, _) => false,
    };

    // HA apiservers aligned: every instance at N-1 or N before one moves to N.
    let behind: Vec<&Observed> = state
        .of(Component::KubeApiserver)
        .filter(|o| o.minor().is_some_and(|m| m < from || m > to))
        .collect();
    if !behind.is_empty() {
        preconditions.push(Precondition {
            rule: "apiserver-ha",
            message: format!(
                "every kube-apiserver must be at {from} or {to} before any moves to {to}"
            ),
            nodes: nodes_of(&behind),
        });
    }
    // Controllers at N-1: kubeadm upgrades them with their apiserver.
    let controllers: Vec<&Observed> = state
        .components
        .iter()
        .filter(|o| {
            rule("controllers-vs-apiserver")
                .components
                .contains(&o.component)
        })
        .filter(|o| o.minor().is_some_and(|m| m < from))
        .collect();
    if !controllers.is_empty() {
        preconditions.push(Precondition {
            rule: "controllers-vs-apiserver",
            message: format!(
                "kube-controller-manager, kube-scheduler and cloud-controller-manager must be at {from} \
                 before kube-apiserver moves to {to}"
            ),
            nodes: nodes_of(&controllers),
        });
    }
    // Kubelets and kube-proxies must be within range of the new apiserver.
    let mut lagging: Vec<String> = Vec::new();
    for id in ["kubelet-vs-apiserver", "kube-proxy-vs-apiserver"] {
        let r = rule(id);
        let range = allowed_range(r, to, to);
        let too_old: Vec<&Observed> = state
            .components
            .iter()
            .filter(|o| r.components.contains(&o.component))
            .filter(|o| o.minor().is_some_and(|m| m < range.oldest))
            .collect();
        if !too_old.is_empty() {
            let component = r.components[0];
            preconditions.push(Precondition {
                rule: r.id,
                message: format!(
                    "{component} older than {} would be out of range of a {to} kube-apiserver: \
                     upgrade these nodes to {from} (drained) before the control plane moves",
                    range.oldest
                ),
                nodes: nodes_of(&too_old),
            });
            for o in too_old {
                if let Some(n) = &o.node
                    && !lagging.contains(n)
                {
                    lagging.push(n.clone());
                }
            }
        }
    }
    lagging.sort();
    let floor = allowed_range(rule("kubelet-vs-apiserver"), to, to).oldest;
    for node in &lagging {
        steps.push(Step {
            action: StepAction::UpgradeLaggingNode,
            node: Some(node.clone()),
            command: Some("kubeadm upgrade node".into()),
            description: format!(
                "before the control plane moves: drain {node}, upgrade kubeadm, kubelet and kubectl to \
                 the newest patch of {from} ({floor} at the least), run kubeadm upgrade node, restart \
                 kubelet, uncordon"
            ),
        });
    }

    // The control plane.
    let cp_nodes = control_plane_order(state);
    let shown = target_text.to_string();
    if state.control_plane_visible && !cp_nodes.is_empty() {
        // `kubeadm upgrade apply` for this hop already ran if an apiserver
        // is on the hop's release (one further ahead does not count).
        let already_started = state
            .of(Component::KubeApiserver)
            .any(|o| o.minor() == Some(to) && reached(o));
        let mut first = !already_started;
        for node in &cp_nodes {
            let mut here = state
                .of(Component::KubeApiserver)
                .filter(|o| o.node.as_deref() == Some(node))
                .peekable();
            if here.peek().is_some() && here.all(reached) {
                continue;
            }
            if first {
                let version = target_version
                    .as_ref()
                    .map(|v| v.release().to_string())
                    .unwrap_or_else(|| format!("{to}.<newest patch>"));
                steps.push(Step {
                    action: StepAction::UpgradeFirstControlPlane,
                    node: Some(node.clone()),
                    command: Some(format!("kubeadm upgrade apply {version}")),
                    description: format!(
                        "upgrade kubeadm to {shown}, run kubeadm upgrade plan then kubeadm upgrade apply; \
                         then drain {node}, upgrade kubelet and kubectl, restart kubelet, uncordon"
                    ),
                });
                first = false;
            } else {
                steps.push(Step {
                    action: StepAction::UpgradeOtherControlPlane,
                    node: Some(node.clone()),
                    command: Some("kubeadm upgrade node".into()),
                    description: format!(
                        "upgrade kubeadm to {shown}, run kubeadm upgrade node; then drain {node}, \
                         upgrade kubelet and kubectl, restart kubelet, uncordon"
                    ),
                });
            }
        }
    } else {
        steps.push(Step {
            action: StepAction::UpgradeManagedControlPlane,
            node: None,
            command: None,
            description: format!(
                "upgrade the control plane to {shown} with the provider's tooling (it is not visible here)"
            ),
        });
    }

    // Workers, one at a time.
    let mut workers: Vec<String> = state
        .of(Component::Kubelet)
        .filter_map(|o| o.node.clone())
        .filter(|n| !cp_nodes.contains(n))
        .filter(|n| !state.kubelet_on(n).is_some_and(reached))
        .collect();
    workers.sort();
    workers.dedup();
    for node in &workers {
        steps.push(Step {
            action: StepAction::UpgradeWorker,
            node: Some(node.clone()),
            command: Some("kubeadm upgrade node".into()),
            description: format!(
                "drain {node}; upgrade kubeadm to {shown}, run kubeadm upgrade node; upgrade kubelet and \
                 kubectl, restart kubelet; wait for Ready; uncordon"
            ),
        });
    }

    // Project: the whole cluster at the hop's release; kubectl stays.
    let version = target_version.clone().unwrap_or_else(|| to.first_patch());
    for o in state.components.iter_mut() {
        if matches!(o.component, Component::Kubectl | Component::Etcd) || reached(o) {
            continue;
        }
        o.version = Some(version.clone());
        o.unknown = None;
        o.reported = version.to_string();
    }
    let report = evaluate(state);
    Hop {
        from,
        to,
        target: target_text.to_string(),
        target_version,
        preconditions,
        steps,
        projected: Projected {
            violations: report.violations,
            warnings: report.warnings,
        },
    }
}

/// Control-plane nodes (labelled, or running a kube-apiserver) in upgrade
/// order, by [`crate::controlplane::control_plane_order`] on their
/// kube-apiserver versions: the first is where `kubeadm upgrade apply` runs.
fn control_plane_order(state: &ClusterVersions) -> Vec<String> {
    let labelled = state.control_plane_nodes.iter().map(|n| (n.clone(), None));
    let apiservers = state
        .of(Component::KubeApiserver)
        .filter_map(|o| Some((o.node.clone()?, o.version.clone())));
    crate::controlplane::control_plane_order(labelled.chain(apiservers))
}

fn nodes_of(observed: &[&Observed]) -> Vec<String> {
    let mut nodes: Vec<String> = observed
        .iter()
        .map(|o| {
            o.node
                .clone()
                .unwrap_or_else(|| o.component.name().to_string())
        })
        .collect();
    nodes.sort();
    nodes.dedup();
    nodes
}
