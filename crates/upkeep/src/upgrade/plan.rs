//! The upgrade of one node as a list of named steps, in the order of the
//! kubeadm upgrade document: kubeadm package, `kubeadm upgrade apply|node`,
//! drain, kubelet and kubectl packages, restart the kubelet, wait for Ready,
//! uncordon. The drain comes after `kubeadm upgrade` since website #25732;
//! the node is cordoned first, so that a node whose upgrade fails midway is
//! never handed new pods (kubespray cordons first too).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::recipe::{Cmd, KUBEADM_BACKUPS, PackageManager, Recipe};
use crate::version::{MinorVersion, Release};

/// The steps, each written once: id, title, and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepId {
    Cordon,
    RepoSwitch,
    KubeadmPkg,
    KubeadmPlan,
    KubeadmUpgrade,
    Drain,
    KubeletPkg,
    RestartKubelet,
    WaitReady,
    Uncordon,
}

impl StepId {
    pub const ALL: [StepId; 10] = [
        StepId::Cordon,
        StepId::RepoSwitch,
        StepId::KubeadmPkg,
        StepId::KubeadmPlan,
        StepId::KubeadmUpgrade,
        StepId::Drain,
        StepId::KubeletPkg,
        StepId::RestartKubelet,
        StepId::WaitReady,
        StepId::Uncordon,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepId::Cordon => "cordon",
            StepId::RepoSwitch => "repo-switch",
            StepId::KubeadmPkg => "kubeadm-pkg",
            StepId::KubeadmPlan => "kubeadm-plan",
            StepId::KubeadmUpgrade => "kubeadm-upgrade",
            StepId::Drain => "drain",
            StepId::KubeletPkg => "kubelet-pkg",
            StepId::RestartKubelet => "restart-kubelet",
            StepId::WaitReady => "wait-ready",
            StepId::Uncordon => "uncordon",
        }
    }

    /// Whether the step changes the node itself (so a failure after it means
    /// the node is partly upgraded).
    pub fn changes_node(self) -> bool {
        !matches!(self, StepId::KubeadmPlan | StepId::WaitReady)
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepId {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        StepId::ALL
            .into_iter()
            .find(|id| id.as_str() == s)
            .ok_or_else(|| format!("unknown upgrade step {s:?}"))
    }
}

/// Which kubeadm path the node takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The first control-plane node: `kubeadm upgrade apply`.
    FirstControlPlane,
    /// Another control-plane node, after the first: `kubeadm upgrade node`.
    ControlPlane,
    /// A worker: `kubeadm upgrade node` rewrites the kubelet configuration.
    Worker,
}

impl Role {
    pub fn is_control_plane(self) -> bool {
        !matches!(self, Role::Worker)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::FirstControlPlane => "first control-plane node (kubeadm upgrade apply)",
            Role::ControlPlane => "control-plane node (kubeadm upgrade node)",
            Role::Worker => "worker (kubeadm upgrade node)",
        })
    }
}

/// Where a step runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "on", rename_all = "kebab-case")]
pub enum Action {
    /// Mark the node unschedulable.
    Cordon,
    /// Commands run in order on the node; the first failure stops the step.
    Node { commands: Vec<Cmd> },
    /// Cordon, then drain with the drain core (the same rules and refusals as
    /// `kubectl safedrain`), waiting until the node's workloads are whole.
    Drain,
    /// Wait until the node is Ready and reports `kubeletVersion` = target.
    WaitReady {
        #[serde(rename = "kubeletVersion")]
        kubelet_version: Release,
    },
    /// Make the node schedulable again.
    Uncordon,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    pub id: StepId,
    pub title: String,
    #[serde(flatten)]
    pub action: Action,
    /// Completed by an earlier run (from the node's progress annotation).
    pub done: bool,
}

/// The whole upgrade of one node: printable, serialisable, executable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodePlan {
    pub node: String,
    pub role: Role,
    /// The kubelet version the node reports now.
    pub from: Release,
    pub target: Release,
    pub package_manager: PackageManager,
    pub repository: RepoChange,
    /// The revision the repository offers for the target (never assumed).
    pub revision: Option<String>,
    pub steps: Vec<Step>,
    /// Leave the node cordoned at the end: it was cordoned before the upgrade began.
    pub keep_cordoned: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RepoChange {
    pub file: String,
    pub from: Option<MinorVersion>,
    pub to: MinorVersion,
}

/// What the plan is built from; every field decided by preflight.
#[derive(Debug, Clone)]
pub struct PlanInput {
    pub node: String,
    pub role: Role,
    pub from: Release,
    pub target: Release,
    pub recipe: Recipe,
    pub repo_minor: Option<MinorVersion>,
    pub revision: Option<String>,
    pub progress: Option<Progress>,
    pub keep_cordoned: bool,
    pub warnings: Vec<String>,
}

pub fn build(input: PlanInput) -> NodePlan {
    let r = &input.recipe;
    let to = input.target;
    let mut steps: Vec<(StepId, String, Action)> = Vec::new();
    steps.push((
        StepId::Cordon,
        "no new pods land on the node while it is upgraded".to_string(),
        Action::Cordon,
    ));
    // A resumed run keeps the switch it already made in its plan (as done),
    // so step numbers stay the same across runs.
    let switched_before = input
        .progress
        .is_some_and(|p| p.target == to && p.done >= StepId::RepoSwitch);
    if input.repo_minor != Some(to.minor_line()) || switched_before {
        steps.push((
            StepId::RepoSwitch,
            format!(
                "point {} at the {} repository",
                r.manager.repo_file(),
                to.minor_line()
            ),
            Action::Node {
                commands: r.repo_switch(to.minor_line()),
            },
        ));
    }
    let mut kubeadm = r.install(&["kubeadm"], to);
    kubeadm.push(r.kubeadm_version());
    steps.push((
        StepId::KubeadmPkg,
        format!("install kubeadm {to}"),
        Action::Node { commands: kubeadm },
    ));
    match input.role {
        Role::FirstControlPlane => {
            steps.push((
                StepId::KubeadmPlan,
                "kubeadm's own checks (read-only)".to_string(),
                Action::Node {
                    commands: vec![r.kubeadm_plan(to)],
                },
            ));
            steps.push((
                StepId::KubeadmUpgrade,
                format!("upgrade the control plane to {to}"),
                Action::Node {
                    commands: vec![r.kubeadm_apply(to)],
                },
            ));
        }
        Role::ControlPlane => steps.push((
            StepId::KubeadmUpgrade,
            "upgrade this control-plane instance and its kubelet configuration".to_string(),
            Action::Node {
                commands: vec![r.kubeadm_node()],
            },
        )),
        Role::Worker => steps.push((
            StepId::KubeadmUpgrade,
            "upgrade the kubelet configuration".to_string(),
            Action::Node {
                commands: vec![r.kubeadm_node()],
            },
        )),
    }
    steps.push((
        StepId::Drain,
        "cordon and drain (safedrain rules), wait until the workloads are whole".to_string(),
        Action::Drain,
    ));
    steps.push((
        StepId::KubeletPkg,
        format!("install kubelet and kubectl {to}"),
        Action::Node {
            commands: r.install(&["kubelet", "kubectl"], to),
        },
    ));
    steps.push((
        StepId::RestartKubelet,
        "restart the kubelet".to_string(),
        Action::Node {
            commands: r.restart_kubelet(),
        },
    ));
    steps.push((
        StepId::WaitReady,
        format!("wait for Ready with kubelet {to}"),
        Action::WaitReady {
            kubelet_version: to,
        },
    ));
    if !input.keep_cordoned {
        steps.push((StepId::Uncordon, "uncordon".to_string(), Action::Uncordon));
    }
    let done_through = input
        .progress
        .as_ref()
        .filter(|p| p.target == to)
        .map(|p| p.done);
    let steps = steps
        .into_iter()
        .map(|(id, title, action)| Step {
            id,
            title,
            action,
            done: done_through.is_some_and(|d| id <= d),
        })
        .collect();
    NodePlan {
        node: input.node,
        role: input.role,
        from: input.from,
        target: to,
        package_manager: r.manager,
        repository: RepoChange {
            file: r.manager.repo_file().to_string(),
            from: input.repo_minor,
            to: to.minor_line(),
        },
        revision: input.revision,
        steps,
        keep_cordoned: input.keep_cordoned,
        warnings: input.warnings,
    }
}

impl NodePlan {
    /// The steps still to run.
    pub fn pending(&self) -> impl Iterator<Item = &Step> {
        self.steps.iter().filter(|s| !s.done)
    }

    /// The human form: every step with its exact commands.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Upgrade plan for node {} ({}): {} -> {}, packages via {} ({} -> {}{})\n",
            self.node,
            self.role,
            self.from,
            self.target,
            self.package_manager,
            self.repository
                .from
                .map_or_else(|| "?".to_string(), |m| m.to_string()),
            self.repository.to,
            self.revision
                .as_ref()
                .map(|r| format!(", revision {r}"))
                .unwrap_or_default(),
        );
        for (i, step) in self.steps.iter().enumerate() {
            let mark = if step.done { " (done)" } else { "" };
            out.push_str(&format!(
                "{:>2}. {:<16} {}{mark}\n",
                i + 1,
                step.id.as_str(),
                step.title
            ));
            match &step.action {
                Action::Node { commands } => {
                    for c in commands {
                        out.push_str(&format!("      $ {c}\n"));
                    }
                }
                Action::Cordon => {
                    out.push_str(&format!("      [cluster] cordon {}\n", self.node))
                }
                Action::Drain => out.push_str(&format!(
                    "      [cluster] cordon {0}; evict its pods by the safedrain rules; wait until their workloads are whole\n",
                    self.node
                )),
                Action::WaitReady { kubelet_version } => out.push_str(&format!(
                    "      [cluster] wait until {} is Ready and reports kubelet {kubelet_version}\n",
                    self.node
                )),
                Action::Uncordon => {
                    out.push_str(&format!("      [cluster] uncordon {}\n", self.node))
                }
            }
        }
        if self.keep_cordoned {
            out.push_str(&format!(
                "    {} was cordoned before the upgrade began: it stays cordoned\n",
                self.node
            ));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning: {w}\n"));
        }
        out
    }
}

/// The progress annotation on the node.
pub const PROGRESS_ANNOTATION: &str = "upkeep.dev/upgrade";

/// What the node's annotation records: the target and the last completed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub target: Release,
    pub done: StepId,
    /// The node was already cordoned when the upgrade began.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub was_cordoned: bool,
}

impl Progress {
    pub fn parse(text: &str) -> Result<Progress, String> {
        serde_json::from_str(text).map_err(|e| {
            format!("the {PROGRESS_ANNOTATION} annotation {text:?} is not an upgrade record: {e}; remove it with `kubectl annotate node NODE {PROGRESS_ANNOTATION}-` if it is stale")
        })
    }

    pub fn to_json(self) -> String {
        serde_json::to_string(&self).expect("progress serialises")
    }
}

/// How to recover, for failure messages (kubeadm-upgrade.md, "Recovering
/// from a failure state").
pub fn recovery_hint(plan: &NodePlan, failed: StepId) -> String {
    let mut s = String::new();
    if matches!(failed, StepId::KubeadmUpgrade) {
        s.push_str(&format!(
            "kubeadm upgrade is idempotent: re-running it is the documented recovery. \
             kubeadm keeps its backups on the node under {KUBEADM_BACKUPS} \
             (etcd data: restore into /var/lib/etcd; static pod manifests: restore into /etc/kubernetes/manifests)."
        ));
    } else {
        s.push_str(&format!(
            "kubeadm's own backups (if it got that far) are on the node under {KUBEADM_BACKUPS}."
        ));
    }
    s.push_str(&format!(
        " Progress is recorded on the node ({PROGRESS_ANNOTATION}); retry with the same command (--to {}) to resume at {failed}.",
        plan.target
    ));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(role: Role, manager: PackageManager) -> PlanInput {
        PlanInput {
            node: "node01".into(),
            role,
            from: Release::new(1, 33, 5),
            target: Release::new(1, 34, 1),
            recipe: Recipe::new(manager),
            repo_minor: Some(MinorVersion::new(1, 33)),
            revision: Some("1.1".into()),
            progress: None,
            keep_cordoned: false,
            warnings: vec![],
        }
    }

    #[test]
    fn worker_plan_apt() {
        insta::assert_snapshot!(build(input(Role::Worker, PackageManager::Apt)).render());
    }

    #[test]
    fn first_control_plane_plan_dnf() {
        insta::assert_snapshot!(
            build(input(Role::FirstControlPlane, PackageManager::Dnf)).render()
        );
    }

    #[test]
    fn second_control_plane_plan_dnf5_json() {
        let plan = build(input(Role::ControlPlane, PackageManager::Dnf5));
        insta::assert_json_snapshot!(plan);
    }

    #[test]
    fn documented_order() {
        let plan = build(input(Role::Worker, PackageManager::Apt));
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "cordon",
                "repo-switch",
                "kubeadm-pkg",
                "kubeadm-upgrade",
                "drain",
                "kubelet-pkg",
                "restart-kubelet",
                "wait-ready",
                "uncordon"
            ]
        );
        // Ids parse back.
        for id in StepId::ALL {
            assert_eq!(id.as_str().parse::<StepId>().unwrap(), id);
        }
    }

    #[test]
    fn no_repo_switch_within_a_minor() {
        let mut i = input(Role::Worker, PackageManager::Apt);
        i.repo_minor = Some(MinorVersion::new(1, 34));
        let plan = build(i);
        assert_eq!(plan.steps[1].id, StepId::KubeadmPkg);
    }

    #[test]
    fn resume_marks_completed_steps() {
        let mut i = input(Role::Worker, PackageManager::Apt);
        i.progress = Some(Progress {
            target: Release::new(1, 34, 1),
            done: StepId::Drain,
            was_cordoned: false,
        });
        i.repo_minor = Some(MinorVersion::new(1, 34));
        let plan = build(i);
        assert_eq!(plan.steps[1].id, StepId::RepoSwitch, "kept, as done");
        assert!(plan.steps[1].done);
        let pending: Vec<StepId> = plan.pending().map(|s| s.id).collect();
        assert_eq!(
            pending,
            [
                StepId::KubeletPkg,
                StepId::RestartKubelet,
                StepId::WaitReady,
                StepId::Uncordon
            ]
        );
        // A record for another target resumes nothing.
        let mut i = input(Role::Worker, PackageManager::Apt);
        i.progress = Some(Progress {
            target: Release::new(1, 34, 0),
            done: StepId::Drain,
            was_cordoned: false,
        });
        assert_eq!(build(i).pending().count(), 9);
    }

    #[test]
    fn a_node_cordoned_before_stays_cordoned() {
        let mut i = input(Role::Worker, PackageManager::Apt);
        i.keep_cordoned = true;
        let plan = build(i);
        assert!(plan.steps.iter().all(|s| s.id != StepId::Uncordon));
    }

    #[test]
    fn progress_round_trip() {
        let p = Progress {
            target: Release::new(1, 34, 1),
            done: StepId::KubeadmUpgrade,
            was_cordoned: false,
        };
        assert_eq!(
            p.to_json(),
            r#"{"target":"v1.34.1","done":"kubeadm-upgrade"}"#
        );
        assert_eq!(Progress::parse(&p.to_json()).unwrap(), p);
        let err = Progress::parse("{}").unwrap_err();
        assert!(err.contains("kubectl annotate node"));
    }
}
