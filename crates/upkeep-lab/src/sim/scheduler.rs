//! The scheduler: binds pending pods to nodes (pkg/scheduler/schedule_one.go) with the
//! default profile's filters in upstream order — NodeUnschedulable, NodeName, TaintToleration,
//! NodeAffinity, NodeResourcesFit — and a score that spreads replicas of one controller and
//! prefers the least allocated node (plugins/noderesources/least_allocated.go,
//! plugins/podtopologyspread's system default spreading, simplified).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::resources;
use crate::store::Obj;

use super::{Ctx, Key, util};

#[derive(Default)]
pub struct Scheduler {
    /// Pods that did not fit; retried when nodes change or capacity frees up.
    unschedulable: Mutex<HashSet<Key>>,
}

/// Why one node was rejected (the Status reasons of each filter plugin).
#[derive(Debug, Clone, PartialEq)]
pub enum Reject {
    /// plugins/nodeunschedulable: ErrReasonUnschedulable (UnschedulableAndUnresolvable).
    Unschedulable,
    /// plugins/nodename: ErrReason.
    NodeName,
    /// plugins/tainttoleration: the first untolerated taint.
    Taint(String, String),
    /// plugins/nodeaffinity: ErrReasonPod.
    Affinity,
    /// plugins/noderesources/fit.go: "Insufficient cpu", "Too many pods", ...
    Resources(Vec<String>),
}

impl Reject {
    fn reasons(&self) -> Vec<String> {
        match self {
            Reject::Unschedulable => vec!["node(s) were unschedulable".into()],
            Reject::NodeName => vec!["node(s) didn't match the requested node name".into()],
            Reject::Taint(k, v) => vec![format!("node(s) had untolerated taint {{{k}: {v}}}")],
            Reject::Affinity => vec!["node(s) didn't match Pod's node affinity/selector".into()],
            Reject::Resources(r) => r.clone(),
        }
    }
    /// Preemption could help only when resources were short.
    fn resolvable(&self) -> bool {
        matches!(self, Reject::Resources(_))
    }
}

/// Run the filters for one pod on one node. `used` is what pods bound to the node request.
pub fn filter(pod: &Value, node: &Value, used: &util::Resources) -> Result<(), Reject> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let tolerations = util::pod_tolerations(pod);
    // NodeUnschedulable: spec.unschedulable unless the pod tolerates the unschedulable taint.
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        let taint = json!({"key": util::TAINT_UNSCHEDULABLE, "effect": "NoSchedule"});
        if !util::tolerated_by(tolerations, &taint) {
            return Err(Reject::Unschedulable);
        }
    }
    // NodeName
    let want = util::s(spec, "/nodeName");
    if !want.is_empty() && want != util::name(node) {
        return Err(Reject::NodeName);
    }
    // TaintToleration (a node whose Ready condition is not True but has no taint yet is
    // treated as carrying the not-ready taint the kubelet registers with).
    let mut taints = util::node_taints(node).to_vec();
    if !util::node_ready(node)
        && !taints.iter().any(|t| {
            util::s(t, "/key") == util::TAINT_NOT_READY
                || util::s(t, "/key") == util::TAINT_UNREACHABLE
        })
    {
        taints.push(json!({"key": util::TAINT_NOT_READY, "effect": "NoSchedule"}));
    }
    if let Some(t) = util::untolerated_schedule_taint(&taints, tolerations) {
        return Err(Reject::Taint(
            util::s(t, "/key").into(),
            util::s(t, "/value").into(),
        ));
    }
    // NodeAffinity
    if !util::pod_spec_matches_node(spec, node) {
        return Err(Reject::Affinity);
    }
    // NodeResourcesFit (fit.go fitsRequest): pods count first, then cpu, memory.
    let alloc = util::node_allocatable(node);
    let req = util::pod_requests(pod);
    let mut short = Vec::new();
    if used.pods + 1 > alloc.pods {
        short.push("Too many pods".to_string());
    }
    if req.milli_cpu > 0 && used.milli_cpu + req.milli_cpu > alloc.milli_cpu {
        short.push("Insufficient cpu".to_string());
    }
    if req.memory > 0 && used.memory + req.memory > alloc.memory {
        short.push("Insufficient memory".to_string());
    }
    if !short.is_empty() {
        return Err(Reject::Resources(short));
    }
    Ok(())
}

/// schedule_one.go FitError.Error(): "0/3 nodes are available: 1 node(s) were
/// unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is
/// not helpful for scheduling, 2 No preemption victims found for incoming pod."
pub fn fit_error(total: usize, rejects: &[Reject]) -> String {
    let summarize = |m: BTreeMap<String, usize>| -> String {
        let mut v: Vec<String> = m.into_iter().map(|(r, c)| format!("{c} {r}")).collect();
        v.sort();
        v.join(", ")
    };
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    let mut pre: BTreeMap<String, usize> = BTreeMap::new();
    for r in rejects {
        for s in r.reasons() {
            *reasons.entry(s).or_default() += 1;
        }
        let p = if r.resolvable() {
            "No preemption victims found for incoming pod"
        } else {
            "Preemption is not helpful for scheduling"
        };
        *pre.entry(p.to_string()).or_default() += 1;
    }
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    format!(
        "0/{total} nodes are available: {}. preemption: 0/{total} nodes are available: {}.",
        summarize(reasons),
        summarize(pre)
    )
}

impl Scheduler {
    /// Retry every pod that did not fit before.
    pub fn retry_all(&self, ctx: &Ctx) {
        let keys: Vec<Key> = self.unschedulable.lock().drain().collect();
        for k in keys {
            ctx.q.scheduler.add(k);
        }
    }

    pub fn is_parked(&self, key: &Key) -> bool {
        self.unschedulable.lock().contains(key)
    }

    /// Schedule a batch of pending pods.
    pub fn schedule(&self, ctx: &Arc<Ctx>, keys: Vec<Key>) {
        let store = &ctx.lab.store;
        let mut pods: Vec<Obj> = keys
            .iter()
            .filter_map(|(ns, n)| store.get(&resources::POD, ns, n))
            .filter(|p| {
                util::node_name(p).is_empty() && !util::terminating(p) && !util::terminal(p)
            })
            .filter(|p| matches!(util::s(p, "/spec/schedulerName"), "" | "default-scheduler"))
            .collect();
        if pods.is_empty() {
            return;
        }
        // priority queue order: higher priority first, then older first
        pods.sort_by_key(|p| {
            (
                std::cmp::Reverse(util::i(p, "/spec/priority").unwrap_or(0)),
                util::s(p, "/metadata/creationTimestamp").to_string(),
            )
        });
        let (nodes, _) = store.list(&resources::NODE, &Default::default());
        // What each node already runs (NodeInfo.Requested), and per-node counts of pods per
        // controller for spreading.
        let mut used: HashMap<String, util::Resources> = HashMap::new();
        let mut owners: HashMap<(String, String), i64> = HashMap::new();
        for n in &nodes {
            let nn = util::name(n).to_string();
            let q = crate::ListQuery::all().fields(
                crate::selector::FieldSelector::parse(&format!("spec.nodeName={nn}"))
                    .expect("valid"),
            );
            let mut u = util::Resources::default();
            for p in store.list(&resources::POD, &q).0 {
                if util::terminal(&p) {
                    continue;
                }
                u.add(&util::pod_requests(&p));
                if let Some((_, _, uid)) = util::controller_of(&p) {
                    *owners.entry((nn.clone(), uid.to_string())).or_default() += 1;
                }
            }
            used.insert(nn, u);
        }
        let by_name: HashMap<&str, &Obj> = nodes.iter().map(|n| (util::name(n), n)).collect();
        for pod in pods {
            let mut feasible: Vec<&Obj> = Vec::new();
            // plugins/nodeaffinity PreFilter: a pod pinned by `matchFields metadata.name`
            // (every DaemonSet pod) is only checked against the nodes it names.
            let candidates: Vec<&Obj> = match pinned_node_names(&pod) {
                Some(names) => names
                    .iter()
                    .filter_map(|n| by_name.get(n.as_str()).copied())
                    .collect(),
                None => nodes.iter().collect(),
            };
            for n in candidates {
                if filter(&pod, n, &used[util::name(n)]).is_ok() {
                    feasible.push(n);
                }
            }
            let key = (
                util::namespace(&pod).to_string(),
                util::name(&pod).to_string(),
            );
            if feasible.is_empty() {
                // every node's reason, for the message (rare: the pod is parked after this)
                let rejects: Vec<Reject> = nodes
                    .iter()
                    .filter_map(|n| filter(&pod, n, &used[util::name(n)]).err())
                    .collect();
                let msg = fit_error(nodes.len(), &rejects);
                // parked before the status write, so the resulting event does not requeue it
                self.unschedulable.lock().insert(key.clone());
                let now = ctx.lab.clock.now_rfc3339();
                let _ = store.mutate(&resources::POD, &key.0, &key.1, |p| {
                    util::set_condition(
                        p,
                        json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": msg, "lastProbeTime": null}),
                        &now,
                    );
                    if p.pointer("/status/phase").is_none() {
                        p["status"]["phase"] = json!("Pending");
                    }
                    Ok(())
                });
                ctx.event(
                    &pod,
                    "Warning",
                    "FailedScheduling",
                    &msg,
                    "default-scheduler",
                );
                continue;
            }
            let owner = util::controller_of(&pod).map(|(_, _, u)| u.to_string());
            let req = util::pod_requests(&pod);
            // Score: fewer pods of the same controller first, then least allocated
            // (mean free fraction of cpu and memory), then the name for determinism.
            let best = feasible
                .iter()
                .map(|n| {
                    let nn = util::name(n);
                    let same = owner
                        .as_ref()
                        .map(|o| {
                            owners
                                .get(&(nn.to_string(), o.clone()))
                                .copied()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0);
                    let a = util::node_allocatable(n);
                    let u = &used[nn];
                    let free = |cap: i64, used: i64| {
                        if cap <= 0 {
                            0.0
                        } else {
                            (cap - used) as f64 / cap as f64
                        }
                    };
                    let score = (free(a.milli_cpu, u.milli_cpu + req.milli_cpu)
                        + free(a.memory, u.memory + req.memory))
                        / 2.0;
                    (same, -((score * 1e6) as i64), u.pods, nn.to_string())
                })
                .min()
                .expect("non-empty");
            let node = best.3;
            let now = ctx.lab.clock.now_rfc3339();
            let bound = store.mutate(&resources::POD, &key.0, &key.1, |p| {
                if !util::node_name(p).is_empty() {
                    return Err(crate::ApiError::conflict(
                        &resources::POD,
                        &key.1,
                        "pod is already assigned",
                    ));
                }
                p["spec"]["nodeName"] = json!(node);
                util::set_condition(
                    p,
                    json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
                    &now,
                );
                Ok(())
            });
            if let Ok(p) = bound {
                used.get_mut(&node).expect("known node").add(&req);
                if let Some(o) = owner {
                    *owners.entry((node.clone(), o)).or_default() += 1;
                }
                ctx.event(
                    &p,
                    "Normal",
                    "Scheduled",
                    &format!("Successfully assigned {}/{} to {node}", key.0, key.1),
                    "default-scheduler",
                );
            }
        }
    }
}

/// The node names a pod's required node affinity restricts it to, when every term carries
/// a `matchFields metadata.name In` requirement (plugins/nodeaffinity/node_affinity.go
/// PreFilter); `None` when any node may fit.
fn pinned_node_names(pod: &Value) -> Option<HashSet<String>> {
    let terms = util::required_affinity_terms(pod.get("spec")?)?;
    if terms.is_empty() {
        return None;
    }
    let mut names = HashSet::new();
    for t in terms {
        let mut term_names: Option<HashSet<String>> = None;
        for r in util::arr(t, "/matchFields") {
            if util::s(r, "/key") != "metadata.name" || util::s(r, "/operator") != "In" {
                continue;
            }
            let vals: HashSet<String> = util::arr(r, "/values")
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect();
            // requirements of one term are ANDed
            term_names = Some(match term_names {
                Some(prev) => prev.intersection(&vals).cloned().collect(),
                None => vals,
            });
        }
        // a term without such a requirement may match any node
        names.extend(term_names?);
    }
    Some(names)
}

/// The scheduler task: drains its queue, and retries unschedulable pods periodically
/// (upstream: podMaxInUnschedulablePodsDuration, 5 minutes; here every resync).
pub fn spawn(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        loop {
            let notified = ctx.q.scheduler.notify.notified();
            if ctx.q.scheduler.is_empty() {
                let period = ctx
                    .lab
                    .clock
                    .real_duration(Duration::from_secs_f64(ctx.cfg().resync_seconds))
                    .max(Duration::from_millis(200));
                if tokio::time::timeout(period, notified).await.is_err() {
                    ctx.scheduler.retry_all(&ctx);
                }
            }
            // batch what arrives together
            tokio::time::sleep(Duration::from_millis(10)).await;
            let keys = ctx.q.scheduler.take();
            if !keys.is_empty() {
                ctx.scheduler.schedule(&ctx, keys);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_error_wording() {
        let msg = fit_error(
            3,
            &[
                Reject::Unschedulable,
                Reject::Resources(vec!["Insufficient cpu".into()]),
                Reject::Resources(vec!["Insufficient cpu".into()]),
            ],
        );
        assert_eq!(
            msg,
            "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
        );
    }
}
