//! The drain plan: every pod of the node with its action and reason, the
//! blockers and warnings, and what to do instead. Pure: a function of the
//! snapshot and the options.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Pod;
use serde::Serialize;

use super::budget;
use super::capacity::{Cluster, node_unschedulable, place};
use super::index::ClusterIndex;
use super::rules::{
    Finding, Rule, Severity, controller_ref, do_not_disrupt, is_critical, is_daemonset_pod,
    is_finished, is_mirror, is_ready, is_terminating, local_volumes, pod_key, safe_to_evict_false,
};
use super::selector::label_selector_matches;
use super::snapshot::{DrainSnapshot, OwnerState, Workload};

/// The overrides and strictness switches, as the flags set them.
#[derive(Debug, Clone, Default)]
pub struct DrainOptions {
    /// Accept losing emptyDir/hostPath data.
    pub delete_emptydir_data: bool,
    /// Delete pods that nothing would recreate (bare or orphaned pods).
    pub delete_unmanaged: bool,
    /// What to do when a PodDisruptionBudget has no room for the node's pods.
    pub pdb: PdbPolicy,
    /// Refuse rather than warn when a workload would have no ready replica.
    pub no_downtime: bool,
    /// Nodes leaving at the same time (multi-node drains): not destinations.
    pub also_leaving: Vec<String>,
}

/// `--pdb`: how the plan treats a PodDisruptionBudget without room for all
/// of the node's pods at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PdbPolicy {
    /// Evict as fast as the budgets allow; refuse only a budget that never
    /// allows the eviction (`kubectl drain` would retry it forever).
    #[default]
    Pace,
    /// Refuse whenever a budget cannot cover all of the node's pods at once.
    Refuse,
    /// Wait for every budget, even one that only a change (a scale-up, a
    /// relaxed budget) can free (`--wait-for-pdb`).
    Wait,
}

/// What happens to a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Stays on the node (DaemonSet, static pods).
    Leave,
    /// Deleted: finished, nothing runs in it.
    Delete,
    /// Evicted; its controller recreates it elsewhere.
    Evict,
    /// Evicted and NOT recreated: lost for good (`--delete-unmanaged`).
    Destroy,
    /// Already being deleted: waited for.
    Wait,
    /// Refuses the drain.
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Leave => "leave",
            Action::Delete => "delete",
            Action::Evict => "evict",
            Action::Destroy => "destroy",
            Action::Wait => "wait",
            Action::Block => "BLOCK",
        }
    }

    /// Whether the pod leaves the node through this drain (evicted, deleted
    /// or waited for): what the engine acts on and a progress bar counts.
    pub fn moves(self) -> bool {
        matches!(
            self,
            Action::Evict | Action::Destroy | Action::Delete | Action::Wait
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PodPlan {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// The controller, `ReplicaSet/web-7d9f`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The replicated workload to wait for, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub action: Action,
    /// The rule that decided the action.
    pub rule: Rule,
    pub reason: String,
    /// System-critical: evicted last.
    pub critical: bool,
    /// The PodDisruptionBudgets selecting it (`ns/name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pdbs: Vec<String>,
    /// Where the capacity check placed its replacement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fits_on: Option<String>,
    /// Every rule that spoke about this pod.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

impl PodPlan {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Drain,
    Refused,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub pods: usize,
    pub evict: usize,
    pub delete: usize,
    pub destroy: usize,
    pub wait: usize,
    pub leave: usize,
    pub blocked: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainPlan {
    pub node: String,
    pub verdict: Verdict,
    pub already_cordoned: bool,
    pub pods: Vec<PodPlan>,
    pub blockers: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// What to do instead, or how to proceed.
    pub advice: Vec<String>,
    pub summary: Summary,
    /// The node is not Ready: when its pods are evicted anyway, and that
    /// the drain does not wait for them to vanish.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_ready: Option<super::lifecycle::NotReady>,
}

impl DrainPlan {
    pub fn refused(&self) -> bool {
        self.verdict == Verdict::Refused
    }

    /// The replicated workloads whose pods this drain evicts (or waits for:
    /// pods an interrupted run evicted).
    pub fn workloads(&self) -> Vec<Workload> {
        let mut seen = BTreeMap::new();
        for p in self
            .pods
            .iter()
            .filter(|p| matches!(p.action, Action::Evict | Action::Wait))
        {
            if let Some(w) = &p.workload {
                seen.entry((w.namespace.clone(), w.id()))
                    .or_insert_with(|| w.clone());
            }
        }
        seen.into_values().collect()
    }

    /// The human table: NAMESPACE POD OWNER ACTION REASON, then a summary.
    pub fn render(&self) -> String {
        let mut t = crate::output::table(["NAMESPACE", "POD", "OWNER", "ACTION", "REASON"]);
        for p in &self.pods {
            t.add_row([
                p.namespace.as_str(),
                p.name.as_str(),
                p.owner.as_deref().unwrap_or("<none>"),
                p.action.as_str(),
                p.reason.as_str(),
            ]);
        }
        let mut out = if self.pods.is_empty() {
            format!("node/{} has no pods\n", self.node)
        } else {
            crate::output::render(&t)
        };
        let s = &self.summary;
        out.push_str(&format!(
            "\nnode/{}: {} pods: {} to evict, {} to delete, {} to destroy, {} terminating, {} left in place, {} blocking\n",
            self.node, s.pods, s.evict, s.delete, s.destroy, s.wait, s.leave, s.blocked
        ));
        for b in &self.blockers {
            out.push_str(&format!("refused [{}]: {}\n", b.rule.name(), b.message));
        }
        for w in &self.warnings {
            out.push_str(&format!("warning [{}]: {}\n", w.rule.name(), w.message));
        }
        for a in &self.advice {
            out.push_str(&format!("hint: {a}\n"));
        }
        if let Some(n) = &self.not_ready {
            out.push_str(&format!("note: {}\n", n.render(&self.node)));
        }
        out.push_str(&match self.verdict {
            Verdict::Refused if self.already_cordoned => format!(
                "REFUSED: node/{} was not drained; nothing was changed (it was already cordoned; nothing evicted)\n",
                self.node
            ),
            Verdict::Refused => format!(
                "REFUSED: node/{} was not drained; nothing was changed (not cordoned, nothing evicted)\n",
                self.node
            ),
            Verdict::Drain => format!("node/{} can be drained\n", self.node),
        });
        out
    }
}

fn pdb_key(pdb: &k8s_openapi::api::policy::v1::PodDisruptionBudget) -> String {
    format!(
        "{}/{}",
        pdb.metadata.namespace.as_deref().unwrap_or_default(),
        pdb.metadata.name.as_deref().unwrap_or_default()
    )
}

/// The PDBs selecting `pod`. policy/v1: an empty selector selects every pod
/// of the namespace; no selector selects none.
/// kube-apiserver `pkg/registry/core/pod/storage/eviction.go` getPodDisruptionBudgets.
fn pdbs_for<'a>(
    pdbs: &'a [k8s_openapi::api::policy::v1::PodDisruptionBudget],
    pod: &Pod,
) -> Vec<&'a k8s_openapi::api::policy::v1::PodDisruptionBudget> {
    let labels = pod.metadata.labels.clone().unwrap_or_default();
    pdbs.iter()
        .filter(|b| b.metadata.namespace == pod.metadata.namespace)
        .filter(|b| {
            b.spec
                .as_ref()
                .and_then(|s| s.selector.as_ref())
                .is_some_and(|s| label_selector_matches(s, &labels))
        })
        .collect()
}

fn block(rule: Rule, message: String, pods: Vec<String>) -> Finding {
    Finding {
        rule,
        severity: Severity::Block,
        message,
        pods,
    }
}

fn warn(rule: Rule, message: String, pods: Vec<String>) -> Finding {
    Finding {
        rule,
        severity: Severity::Warning,
        message,
        pods,
    }
}

/// Computes the plan. Every rule of [`Rule`] is applied in [`plan_node`], once.
pub fn plan(snapshot: &DrainSnapshot, options: &DrainOptions) -> DrainPlan {
    let index = ClusterIndex::of(
        &snapshot.nodes,
        &snapshot.cluster_pods,
        &snapshot.pdbs,
        &snapshot.pvcs,
        &snapshot.pvs,
    );
    let node = NodePods {
        node: &snapshot.node,
        pods: &snapshot.pods,
        owners: &snapshot.owners,
        taken_at: snapshot.taken_at,
    };
    plan_node(&node, &index, options)
}

/// One node's half of a drain plan: the node, its pods, their controllers.
#[derive(Debug, Clone, Copy)]
pub struct NodePods<'a> {
    pub node: &'a k8s_openapi::api::core::v1::Node,
    /// The node's pods (after `--pod-selector`).
    pub pods: &'a [Pod],
    /// Keyed by owner uid; at least the controllers of `pods`.
    pub owners: &'a BTreeMap<String, OwnerState>,
    /// When it was gathered (the NotReady countdown counts from it).
    pub taken_at: jiff::Timestamp,
}

/// Computes the plan of one node against the cluster's [`ClusterIndex`]
/// (built once for any number of nodes). Every rule of [`Rule`] is applied
/// here, once.
pub fn plan_node(input: &NodePods, cluster: &ClusterIndex, options: &DrainOptions) -> DrainPlan {
    let snapshot = input;
    let node = snapshot.node.metadata.name.clone().unwrap_or_default();
    let mut pods: Vec<PodPlan> = Vec::new();
    let mut blockers: Vec<Finding> = Vec::new();
    let mut warnings: Vec<Finding> = Vec::new();
    let mut sorted: Vec<&Pod> = snapshot.pods.iter().collect();
    sorted.sort_by_key(|p| pod_key(p));

    // 1. Each pod on its own: the kubectl filters, the opt-outs, one PDB at most.
    for pod in &sorted {
        let key = pod_key(pod);
        let cref = controller_ref(pod);
        let owner = cref.map(|o| format!("{}/{}", o.kind, o.name));
        let state = cref.and_then(|o| snapshot.owners.get(&o.uid));
        let workload = state.and_then(|s| s.workload.clone());
        let mut findings = Vec::new();
        let (action, rule, reason) = if is_mirror(pod) {
            (
                Action::Leave,
                Rule::MirrorPod,
                "static pod: the kubelet runs it".to_string(),
            )
        } else if is_finished(pod) {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_default();
            (
                Action::Delete,
                Rule::FinishedPod,
                format!("finished ({phase})"),
            )
        } else if is_daemonset_pod(pod) {
            (
                Action::Leave,
                Rule::DaemonSetPod,
                "DaemonSet-managed: stays".to_string(),
            )
        } else if is_terminating(pod) {
            (
                Action::Wait,
                Rule::Terminating,
                "already terminating: waited for".to_string(),
            )
        } else if let (Some(o), Some(s)) = (cref, state.filter(|s| s.exists)) {
            let by = s
                .workload
                .as_ref()
                .map(Workload::id)
                .unwrap_or_else(|| format!("{}/{}", o.kind, o.name));
            (
                Action::Evict,
                Rule::Replicated,
                format!("recreated by {by}"),
            )
        } else if let Some(o) = cref {
            let message = format!(
                "{key}: its controller {}/{} no longer exists, nothing would recreate it",
                o.kind, o.name
            );
            if options.delete_unmanaged {
                findings.push(warn(
                    Rule::OrphanedController,
                    format!("{message}: deleted for good (--delete-unmanaged)"),
                    vec![key.clone()],
                ));
                (
                    Action::Destroy,
                    Rule::OrphanedController,
                    "orphaned: deleted for good".to_string(),
                )
            } else {
                findings.push(block(
                    Rule::OrphanedController,
                    format!("{message}: evicting it would lose it"),
                    vec![key.clone()],
                ));
                (
                    Action::Block,
                    Rule::OrphanedController,
                    "orphaned: its controller is gone".to_string(),
                )
            }
        } else if options.delete_unmanaged {
            findings.push(warn(
                Rule::Unmanaged,
                format!("{key} declares no controller: deleted for good (--delete-unmanaged)"),
                vec![key.clone()],
            ));
            (
                Action::Destroy,
                Rule::Unmanaged,
                "no controller: deleted for good".to_string(),
            )
        } else {
            findings.push(block(
                Rule::Unmanaged,
                format!("{key} declares no controller: evicted, it would be lost for good"),
                vec![key.clone()],
            ));
            (
                Action::Block,
                Rule::Unmanaged,
                "no controller: would be lost".to_string(),
            )
        };
        let moving = matches!(action, Action::Evict | Action::Destroy | Action::Block);
        let matching = pdbs_for(&cluster.pdbs, pod);
        if moving {
            let volumes = local_volumes(pod);
            if !volumes.is_empty() {
                let list = volumes.join(", ");
                if options.delete_emptydir_data {
                    findings.push(warn(
                        Rule::LocalStorage,
                        format!("{key}: the data in {list} is deleted (--delete-emptydir-data)"),
                        vec![key.clone()],
                    ));
                } else {
                    findings.push(block(
                        Rule::LocalStorage,
                        format!("{key} keeps data on the node in {list}: it is lost with the pod"),
                        vec![key.clone()],
                    ));
                }
            }
            if safe_to_evict_false(pod) {
                findings.push(block(
                    Rule::SafeToEvictFalse,
                    format!(
                        "{key} is annotated {}=\"false\"",
                        super::rules::SAFE_TO_EVICT
                    ),
                    vec![key.clone()],
                ));
            }
            if do_not_disrupt(pod) {
                findings.push(block(
                    Rule::DoNotDisrupt,
                    format!("{key} is annotated {}", super::rules::DO_NOT_DISRUPT),
                    vec![key.clone()],
                ));
            }
            if matching.len() > 1 {
                let names: Vec<String> = matching.iter().map(|b| pdb_key(b)).collect();
                findings.push(block(
                    Rule::MultiplePdbs,
                    format!(
                        "{key} is selected by {} PodDisruptionBudgets ({}): the eviction API refuses such a pod (500 \"This pod has more than one PodDisruptionBudget\")",
                        names.len(),
                        names.join(", ")
                    ),
                    vec![key.clone()],
                ));
            }
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        pods.push(PodPlan {
            namespace: ns,
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            owner,
            workload: if action == Action::Evict {
                workload
            } else {
                None
            },
            action,
            rule,
            reason,
            critical: is_critical(pod),
            pdbs: matching.iter().map(|b| pdb_key(b)).collect(),
            fits_on: None,
            findings,
        });
    }
    let by_key: BTreeMap<String, &Pod> = sorted.iter().map(|p| (pod_key(p), *p)).collect();
    let index: BTreeMap<String, usize> =
        pods.iter().enumerate().map(|(i, p)| (p.key(), i)).collect();

    // 2. PodDisruptionBudgets jointly: the node's healthy pods a PDB selects
    // go as fast as its disruptionsAllowed frees; a budget that can never
    // free refuses (unless --pdb=wait), as does any shortfall with --pdb=refuse.
    for (pdb_ix, pdb) in cluster.pdbs.iter().enumerate() {
        let key = pdb_key(pdb);
        let always_allow = pdb
            .spec
            .as_ref()
            .and_then(|s| s.unhealthy_pod_eviction_policy.as_deref())
            == Some("AlwaysAllow");
        // kube-apiserver eviction.go: an unready pod under AlwaysAllow is
        // deleted without the budget; any other pod needs it.
        let affected: Vec<(&PodPlan, bool)> = pods
            .iter()
            .filter(|p| matches!(p.action, Action::Evict | Action::Destroy | Action::Block))
            .filter(|p| p.pdbs.contains(&key))
            .map(|p| (p, by_key.get(&p.key()).is_some_and(|pod| is_ready(pod))))
            .filter(|(_, ready)| *ready || !always_allow)
            .collect();
        if affected.is_empty() {
            continue;
        }
        let healthy: Vec<String> = affected
            .iter()
            .filter(|(_, ready)| *ready)
            .map(|(p, _)| p.key())
            .collect();
        // The unfinished pods of the cluster it selects.
        let selected = cluster.pdb_selected(pdb_ix);
        let status = pdb.status.clone().unwrap_or_default();
        let allowed = status.disruptions_allowed.unwrap_or(0);
        let need = healthy.len() as i32;
        let numbers = format!(
            "PodDisruptionBudget {key} allows {allowed} disruption(s) (currentHealthy {}, desiredHealthy {}, expectedPods {})",
            status.current_healthy.unwrap_or(0),
            status.desired_healthy.unwrap_or(0),
            status.expected_pods.unwrap_or(0),
        );
        let finding = match budget::outlook(pdb, need, selected) {
            budget::Outlook::Room => continue,
            budget::Outlook::Never { why, fix } => {
                let names: Vec<String> = affected.iter().map(|(p, _)| p.key()).collect();
                let message = format!(
                    "{numbers} and never will for {}: {why}; fix: {fix}",
                    names.join(", ")
                );
                if options.pdb == PdbPolicy::Wait {
                    warn(
                        Rule::PdbNeverAllows,
                        format!("{message}; waiting anyway (--wait-for-pdb)"),
                        names,
                    )
                } else {
                    block(Rule::PdbNeverAllows, message, names)
                }
            }
            budget::Outlook::Paced => {
                let message = format!(
                    "{numbers} but this node runs {need} of its healthy pods ({})",
                    healthy.join(", ")
                );
                if options.pdb == PdbPolicy::Refuse {
                    block(
                        Rule::PdbBudget,
                        format!("{message} (--pdb=refuse)"),
                        healthy,
                    )
                } else {
                    warn(
                        Rule::PdbBudget,
                        format!("{message}: evicted as the budget frees"),
                        healthy,
                    )
                }
            }
        };
        for n in &finding.pods {
            pods[index[n]].findings.push(finding.clone());
        }
    }

    // 3. Downtime: single replicas, or every ready replica on this node.
    let mut leaving: BTreeSet<String> = options.also_leaving.iter().cloned().collect();
    leaving.insert(node.clone());
    let mut by_workload: BTreeMap<(String, String), (Workload, Vec<String>)> = BTreeMap::new();
    for p in pods.iter().filter(|p| p.action == Action::Evict) {
        if let Some(w) = &p.workload {
            by_workload
                .entry((w.namespace.clone(), w.id()))
                .or_insert_with(|| (w.clone(), Vec::new()))
                .1
                .push(p.key());
        }
    }
    for (w, names) in by_workload.values() {
        let ready_elsewhere = cluster
            .selected(&w.namespace, &w.label_selector)
            .filter(|p| p.ready && !p.terminating)
            .filter(|p| p.node.as_deref().is_some_and(|n| !leaving.contains(n)))
            .count();
        let what = format!("{} {}/{}", w.kind, w.namespace, w.name);
        let message = if w.replicas <= 1 {
            format!(
                "{what} has {} replica: it is unavailable until its replacement is Ready",
                w.replicas
            )
        } else if ready_elsewhere == 0 {
            format!(
                "every ready replica of {what} runs on {node}: it is unavailable until a replacement is Ready"
            )
        } else {
            continue;
        };
        let finding = if options.no_downtime {
            block(
                Rule::Downtime,
                format!("{message} (--no-downtime)"),
                names.clone(),
            )
        } else {
            warn(Rule::Downtime, message, names.clone())
        };
        for n in names {
            pods[index[n]].findings.push(finding.clone());
        }
    }

    // 4. Capacity: the pods that will be recreated must fit somewhere else.
    let to_place: Vec<&Pod> = pods
        .iter()
        .filter(|p| p.action == Action::Evict)
        .filter_map(|p| by_key.get(&p.key()).copied())
        .collect();
    let cluster = Cluster {
        index: cluster,
        leaving: &leaving,
    };
    for placement in place(&to_place, &cluster) {
        let p = &mut pods[index[&placement.pod]];
        match &placement.node {
            Some(n) => p.fits_on = Some(n.clone()),
            None => {
                let f = block(
                    Rule::NoCapacity,
                    format!(
                        "{} fits on no other node: {}",
                        placement.pod,
                        placement.explain()
                    ),
                    vec![placement.pod.clone()],
                );
                p.findings.push(f);
            }
        }
    }

    // 5. Decide each pod, collect node-level findings (each finding once).
    let mut seen = BTreeSet::new();
    for p in &mut pods {
        if let Some(b) = p.findings.iter().find(|f| f.severity == Severity::Block) {
            p.action = Action::Block;
            p.rule = b.rule;
            p.reason = short_reason(b);
        }
        for f in &p.findings {
            if seen.insert((f.rule, f.message.clone())) {
                match f.severity {
                    Severity::Block => blockers.push(f.clone()),
                    _ => warnings.push(f.clone()),
                }
            }
        }
    }
    let verdict = if blockers.is_empty() {
        Verdict::Drain
    } else {
        Verdict::Refused
    };
    let advice = advise(&node, &pods, &blockers, options);
    let count = |a: Action| pods.iter().filter(|p| p.action == a).count();
    let summary = Summary {
        pods: pods.len(),
        evict: count(Action::Evict),
        delete: count(Action::Delete),
        destroy: count(Action::Destroy),
        wait: count(Action::Wait),
        leave: count(Action::Leave),
        blocked: count(Action::Block),
    };
    DrainPlan {
        node,
        verdict,
        already_cordoned: node_unschedulable(snapshot.node),
        pods,
        blockers,
        warnings,
        advice,
        summary,
        not_ready: super::lifecycle::not_ready(snapshot.node, snapshot.pods, snapshot.taken_at),
    }
}

/// The REASON column for a blocked pod.
fn short_reason(f: &Finding) -> String {
    match f.rule {
        Rule::Unmanaged => "no controller: would be lost".into(),
        Rule::OrphanedController => "orphaned: its controller is gone".into(),
        Rule::LocalStorage => {
            let vols = f
                .message
                .split(" in ")
                .nth(1)
                .and_then(|s| s.split(':').next())
                .unwrap_or("local data");
            format!("local data in {vols}")
        }
        Rule::SafeToEvictFalse => format!("{}=\"false\"", super::rules::SAFE_TO_EVICT),
        Rule::DoNotDisrupt => super::rules::DO_NOT_DISRUPT.to_string(),
        Rule::MultiplePdbs => "selected by several PodDisruptionBudgets".into(),
        Rule::PdbBudget | Rule::PdbNeverAllows => {
            let name = f
                .message
                .split_whitespace()
                .nth(1)
                .unwrap_or("PodDisruptionBudget");
            if f.rule == Rule::PdbBudget {
                format!("PodDisruptionBudget {name} has no room")
            } else {
                format!("PodDisruptionBudget {name} never allows it")
            }
        }
        Rule::Downtime => "no ready replica would remain".into(),
        Rule::NoCapacity => "fits on no other node".into(),
        _ => f.message.clone(),
    }
}

/// What to do instead of (or before) the refused drain.
fn advise(
    node: &str,
    pods: &[PodPlan],
    blockers: &[Finding],
    options: &DrainOptions,
) -> Vec<String> {
    let mut advice = Vec::new();
    let has = |r: Rule| blockers.iter().any(|b| b.rule == r);
    let pods_of = |r: Rule| -> String {
        let mut v: Vec<String> = blockers
            .iter()
            .filter(|b| b.rule == r)
            .flat_map(|b| b.pods.clone())
            .collect();
        v.dedup();
        v.join(", ")
    };
    if has(Rule::Unmanaged) || has(Rule::OrphanedController) {
        let mut names = pods_of(Rule::Unmanaged);
        let orphans = pods_of(Rule::OrphanedController);
        if !orphans.is_empty() {
            if !names.is_empty() {
                names.push_str(", ");
            }
            names.push_str(&orphans);
        }
        advice.push(format!(
            "`kubectl cordon {node}` keeps {names} running and stops new pods landing on {node}; to move such a pod, recreate it under a Deployment or StatefulSet; `--delete-unmanaged` deletes it for good (`--force` does not)"
        ));
    }
    if has(Rule::LocalStorage) {
        advice.push(format!(
            "`--delete-emptydir-data` accepts losing the node-local data of {}",
            pods_of(Rule::LocalStorage)
        ));
    }
    if has(Rule::SafeToEvictFalse) || has(Rule::DoNotDisrupt) {
        advice.push("the pod's owner opted out of eviction; remove the annotation (`kubectl annotate pod -n NS NAME KEY-`) if it may move now".into());
    }
    if has(Rule::MultiplePdbs) {
        advice.push("make each pod selected by one PodDisruptionBudget at most (delete or narrow the others)".into());
    }
    if has(Rule::PdbBudget) {
        advice.push("without --pdb=refuse the drain evicts as the budget frees; scale the workload up (`kubectl scale`) or relax the PodDisruptionBudget to make room".into());
    }
    if has(Rule::PdbNeverAllows) {
        advice.push("apply the fix named above, then drain again; `--wait-for-pdb` waits for such a budget instead (until you scale up or relax it)".into());
    }
    if has(Rule::Downtime) && options.no_downtime {
        advice.push("scale the workload so a replica runs on another node (`kubectl scale --replicas=2`), then drain again; or drop --no-downtime to accept the gap".into());
    }
    if has(Rule::NoCapacity) {
        advice.push(
            "make room first: add or uncordon a node, or free resources on the others".into(),
        );
    }
    let destroyed: Vec<String> = pods
        .iter()
        .filter(|p| p.action == Action::Destroy)
        .map(PodPlan::key)
        .collect();
    if !destroyed.is_empty() {
        advice.push(format!(
            "--delete-unmanaged: these pods will be deleted for good: {}",
            destroyed.join(", ")
        ));
    }
    advice
}
