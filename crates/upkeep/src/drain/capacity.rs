//! Can the evicted pods be placed elsewhere? A first-fit simulation of the
//! scheduler's filters over the remaining nodes: NodeUnschedulable, Ready,
//! TaintToleration (NoSchedule/NoExecute), NodeAffinity (nodeSelector and
//! required node affinity) and NodeResourcesFit (requests against free
//! allocatable, pod count included).
//! kubernetes `pkg/scheduler/framework/plugins/{nodeunschedulable,tainttoleration,nodeaffinity,noderesources}`;
//! cluster-autoscaler runs the same filters before a scale-down (NoPlaceToMovePods).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod};

use super::quantity::{human, milli};
use super::rules::{is_finished, pod_key};
use super::selector::{node_selector_term_matches, tolerates};

/// Resource amounts in milli-units by resource name.
pub type Resources = BTreeMap<String, i128>;

/// Where a pod would go, or why it fits nowhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub pod: String,
    /// The node it would land on.
    pub node: Option<String>,
    /// Per candidate node, what is missing (empty when placed).
    pub why_not: Vec<(String, String)>,
}

impl Placement {
    /// The scheduler's style: `0/2 nodes are available: node02: insufficient cpu ...`.
    pub fn explain(&self) -> String {
        if self.why_not.is_empty() {
            return "no other node is Ready and schedulable".to_string();
        }
        let parts: Vec<String> = self
            .why_not
            .iter()
            .map(|(n, why)| format!("{n}: {why}"))
            .collect();
        format!(
            "0/{} other nodes can take it: {}",
            self.why_not.len(),
            parts.join("; ")
        )
    }
}

/// A pod's effective requests: the sum of its containers, or the largest
/// init container if bigger, plus overhead; every pod also takes one "pods" slot.
/// kubernetes `pkg/api/v1/resource/helpers.go` PodRequests.
pub fn pod_requests(pod: &Pod) -> Resources {
    let mut total = Resources::new();
    let Some(spec) = &pod.spec else {
        return total;
    };
    let requests = |c: &k8s_openapi::api::core::v1::Container| -> Resources {
        c.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .map(|r| {
                r.iter()
                    .filter_map(|(k, q)| milli(&q.0).map(|v| (k.clone(), v)))
                    .collect()
            })
            .unwrap_or_default()
    };
    for c in &spec.containers {
        for (k, v) in requests(c) {
            *total.entry(k).or_default() += v;
        }
    }
    for c in spec.init_containers.iter().flatten() {
        for (k, v) in requests(c) {
            let e = total.entry(k).or_default();
            *e = (*e).max(v);
        }
    }
    for (k, q) in spec.overhead.iter().flatten() {
        if let Some(v) = milli(&q.0) {
            *total.entry(k.clone()).or_default() += v;
        }
    }
    total.insert("pods".into(), 1000);
    total
}

pub fn node_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn node_unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

/// Why `pod` may not run on `node`, ignoring resources; `None` when it may.
fn static_misfit(pod: &Pod, node: &Node) -> Option<String> {
    let spec = pod.spec.clone().unwrap_or_default();
    let tolerations = spec.tolerations.unwrap_or_default();
    for taint in node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
    {
        if taint.effect == "PreferNoSchedule" {
            continue;
        }
        if !tolerations.iter().any(|t| tolerates(t, taint)) {
            let value = taint
                .value
                .as_deref()
                .map(|v| format!("={v}"))
                .unwrap_or_default();
            return Some(format!(
                "untolerated taint {}{value}:{}",
                taint.key, taint.effect
            ));
        }
    }
    let labels = node.metadata.labels.clone().unwrap_or_default();
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Some(format!("nodeSelector {k}={v} not matched"));
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if let Some(req) = required
        && !req
            .node_selector_terms
            .iter()
            .any(|t| node_selector_term_matches(t, node))
    {
        return Some("required node affinity not matched".into());
    }
    None
}

fn allocatable(node: &Node) -> Resources {
    node.status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref().or(s.capacity.as_ref()))
        .map(|a| {
            a.iter()
                .filter_map(|(k, q)| milli(&q.0).map(|v| (k.clone(), v)))
                .collect()
        })
        .unwrap_or_default()
}

/// Places `pods` (in the order given, biggest CPU request first) onto the
/// Ready, schedulable nodes not in `leaving`, against allocatable minus the
/// requests of the unfinished pods already bound there.
pub fn place(
    pods: &[&Pod],
    nodes: &[Node],
    cluster_pods: &[Pod],
    leaving: &BTreeSet<String>,
) -> Vec<Placement> {
    let candidates: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            !leaving.contains(&name)
        })
        .collect();
    let mut free: BTreeMap<String, Resources> = candidates
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), allocatable(n)))
        .collect();
    for p in cluster_pods.iter().filter(|p| !is_finished(p)) {
        let Some(bound) = p.spec.as_ref().and_then(|s| s.node_name.as_ref()) else {
            continue;
        };
        if let Some(f) = free.get_mut(bound) {
            for (k, v) in pod_requests(p) {
                *f.entry(k).or_default() -= v;
            }
        }
    }
    let mut order: Vec<&Pod> = pods.to_vec();
    order.sort_by_key(|p| {
        let r = pod_requests(p);
        std::cmp::Reverse((
            r.get("cpu").copied().unwrap_or(0),
            r.get("memory").copied().unwrap_or(0),
        ))
    });
    let mut placements = BTreeMap::new();
    for pod in order {
        let need = pod_requests(pod);
        let mut why_not = Vec::new();
        let mut best: Option<(String, i128)> = None;
        for node in &candidates {
            let name = node.metadata.name.clone().unwrap_or_default();
            if !node_ready(node) {
                why_not.push((name, "not Ready".into()));
                continue;
            }
            if node_unschedulable(node) {
                why_not.push((name, "unschedulable (cordoned)".into()));
                continue;
            }
            if let Some(why) = static_misfit(pod, node) {
                why_not.push((name, why));
                continue;
            }
            let have = &free[&name];
            let short: Vec<String> = need
                .iter()
                .filter(|(k, v)| **v > 0 && have.get(*k).copied().unwrap_or(0) < **v)
                .map(|(k, v)| {
                    let left = have.get(k).copied().unwrap_or(0).max(0);
                    if k == "pods" {
                        "too many pods".to_string()
                    } else {
                        format!(
                            "insufficient {k} (requests {}, {} free)",
                            human(k, *v),
                            human(k, left)
                        )
                    }
                })
                .collect();
            if !short.is_empty() {
                why_not.push((name, short.join(", ")));
                continue;
            }
            // Prefer the node with the most CPU left (LeastAllocated).
            let score = have.get("cpu").copied().unwrap_or(0);
            if best.as_ref().is_none_or(|(_, s)| score > *s) {
                best = Some((name, score));
            }
        }
        let key = pod_key(pod);
        match best {
            Some((name, _)) => {
                let f = free.get_mut(&name).expect("candidate");
                for (k, v) in &need {
                    *f.entry(k.clone()).or_default() -= v;
                }
                placements.insert(
                    key.clone(),
                    Placement {
                        pod: key,
                        node: Some(name),
                        why_not: Vec::new(),
                    },
                );
            }
            None => {
                placements.insert(
                    key.clone(),
                    Placement {
                        pod: key,
                        node: None,
                        why_not,
                    },
                );
            }
        }
    }
    pods.iter()
        .filter_map(|p| placements.get(&pod_key(p)).cloned())
        .collect()
}
