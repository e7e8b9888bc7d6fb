//! Can the evicted pods be placed elsewhere? A simulation of the scheduler's
//! filters over the remaining nodes, each pod placed in turn (earlier
//! placements count for the later ones). Each filter cites its plugin under
//! kubernetes `pkg/scheduler/framework/plugins/`; a node that fails names the
//! filter. cluster-autoscaler runs the same filters before a scale-down
//! (NoPlaceToMovePods). Not simulated: preferred terms (scores only),
//! `matchLabelKeys`, namespace selectors other than empty (read as "every
//! namespace"), volume limits and unbound claims (WaitForFirstConsumer).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodAffinityTerm, TopologySpreadConstraint,
};

use super::quantity::{human, milli};
use super::rules::{is_finished, is_terminating, pod_key};
use super::selector::{label_selector_matches, node_selector_term_matches, tolerates};

/// The scheduler filters the simulation runs, in the default profile's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// nodeunschedulable/node_unschedulable.go (and the node's Ready condition).
    NodeUnschedulable,
    /// tainttoleration/taint_toleration.go Filter.
    TaintToleration,
    /// nodeaffinity/node_affinity.go Filter (nodeSelector and required terms).
    NodeAffinity,
    /// nodeports/node_ports.go fitsPorts.
    NodePorts,
    /// noderesources/fit.go fitsRequest.
    NodeResourcesFit,
    /// volumebinding/binder.go checkBoundClaims (bound PersistentVolumes' nodeAffinity).
    VolumeBinding,
    /// podtopologyspread/filtering.go Filter (whenUnsatisfiable DoNotSchedule).
    PodTopologySpread,
    /// interpodaffinity/filtering.go Filter (required affinity and anti-affinity).
    InterPodAffinity,
}

impl Filter {
    pub fn name(self) -> &'static str {
        match self {
            Filter::NodeUnschedulable => "NodeUnschedulable",
            Filter::TaintToleration => "TaintToleration",
            Filter::NodeAffinity => "NodeAffinity",
            Filter::NodePorts => "NodePorts",
            Filter::NodeResourcesFit => "NodeResourcesFit",
            Filter::VolumeBinding => "VolumeBinding",
            Filter::PodTopologySpread => "PodTopologySpread",
            Filter::InterPodAffinity => "InterPodAffinity",
        }
    }
}

/// The cluster as the simulation sees it.
pub struct Cluster<'a> {
    pub nodes: &'a [Node],
    /// Every pod of the cluster.
    pub pods: &'a [Pod],
    pub pvcs: &'a [PersistentVolumeClaim],
    pub pvs: &'a [PersistentVolume],
    /// Nodes being drained: not destinations.
    pub leaving: &'a BTreeSet<String>,
}

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

/// Why `pod` may not run on `node` by its taints, selectors and node
/// affinity; `None` when it may.
fn static_misfit(pod: &Pod, node: &Node) -> Option<(Filter, String)> {
    if let Some(why) = untolerated(pod, node) {
        return Some((Filter::TaintToleration, why));
    }
    node_affinity_misfit(pod, node).map(|why| (Filter::NodeAffinity, why))
}

fn untolerated(pod: &Pod, node: &Node) -> Option<String> {
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
    None
}

/// nodeSelector and required node affinity (NodeAffinity).
fn node_affinity_misfit(pod: &Pod, node: &Node) -> Option<String> {
    let spec = pod.spec.clone().unwrap_or_default();
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

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

fn label<'a>(node: &'a Node, key: &str) -> Option<&'a String> {
    node.metadata.labels.as_ref().and_then(|l| l.get(key))
}

/// The host ports a pod asks for: (protocol, hostIP, port).
fn host_ports(pod: &Pod) -> Vec<(String, String, i32)> {
    pod.spec
        .iter()
        .flat_map(|s| s.containers.iter())
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            let ip = p.host_ip.clone().filter(|ip| !ip.is_empty());
            Some((
                p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                ip.unwrap_or_else(|| "0.0.0.0".into()),
                port,
            ))
        })
        .collect()
}

/// NodePorts: a wanted host port conflicts with one in use on the node when
/// protocol and port are equal and either address is the wildcard or both
/// are the same (nodeports/node_ports.go fitsPorts, HostPortInfo.CheckConflict).
fn port_conflict(pod: &Pod, here: &[&Pod]) -> Option<String> {
    let wanted = host_ports(pod);
    for other in here {
        for (proto, ip, port) in host_ports(other) {
            if let Some((p, _, n)) = wanted.iter().find(|(p, wip, n)| {
                *p == proto && *n == port && (wip == "0.0.0.0" || ip == "0.0.0.0" || *wip == ip)
            }) {
                return Some(format!("host port {n}/{p} is taken by {}", pod_key(other)));
            }
        }
    }
    None
}

/// VolumeBinding: every bound PersistentVolume the pod's claims use must
/// admit the node by its nodeAffinity (volumebinding/binder.go checkBoundClaims).
fn volume_misfit(pod: &Pod, node: &Node, cluster: &Cluster) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let Some(claim) = &v.persistent_volume_claim else {
            continue;
        };
        let pv_name = cluster
            .pvcs
            .iter()
            .find(|c| {
                c.metadata.namespace.as_deref() == Some(ns)
                    && c.metadata.name.as_deref() == Some(claim.claim_name.as_str())
            })
            .and_then(|c| c.spec.as_ref())
            .and_then(|s| s.volume_name.as_deref());
        let Some(pv) = pv_name.and_then(|n| {
            cluster
                .pvs
                .iter()
                .find(|pv| pv.metadata.name.as_deref() == Some(n))
        }) else {
            continue;
        };
        let required = pv
            .spec
            .as_ref()
            .and_then(|s| s.node_affinity.as_ref())
            .and_then(|a| a.required.as_ref());
        if let Some(req) = required
            && !req
                .node_selector_terms
                .iter()
                .any(|t| node_selector_term_matches(t, node))
        {
            return Some(format!(
                "PersistentVolume {} (claim {}) has a node affinity this node does not match",
                pv.metadata.name.as_deref().unwrap_or_default(),
                claim.claim_name
            ));
        }
    }
    None
}

/// PodTopologySpread with whenUnsatisfiable DoNotSchedule: placing the pod
/// on `node` must keep its domain within maxSkew of the least loaded
/// eligible domain (podtopologyspread/filtering.go Filter; nodes count when
/// they match the pod's node affinity, nodeAffinityPolicy Honor, and their
/// taints only with nodeTaintsPolicy Honor, a cordon counting as a taint).
fn spread_misfit(
    pod: &Pod,
    node: &Node,
    cluster: &Cluster,
    staying: &[(String, Pod)],
) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let own = pod.metadata.labels.clone().unwrap_or_default();
    let constraints: Vec<&TopologySpreadConstraint> = pod
        .spec
        .iter()
        .flat_map(|s| s.topology_spread_constraints.iter().flatten())
        .filter(|c| c.when_unsatisfiable == "DoNotSchedule")
        .collect();
    for c in constraints {
        let key = c.topology_key.as_str();
        let Some(value) = label(node, key) else {
            return Some(format!("topology spread: the node has no label {key}"));
        };
        let eligible = |n: &Node| {
            label(n, key).is_some()
                && (c.node_affinity_policy.as_deref() == Some("Ignore")
                    || node_affinity_misfit(pod, n).is_none())
                && (c.node_taints_policy.as_deref() != Some("Honor")
                    || (untolerated(pod, n).is_none() && !cordon_untolerated(pod, n)))
        };
        let mut counts: BTreeMap<&str, i32> = cluster
            .nodes
            .iter()
            .filter(|n| eligible(n))
            .filter_map(|n| label(n, key).map(|v| (v.as_str(), 0)))
            .collect();
        let domain_of: BTreeMap<&str, &str> = cluster
            .nodes
            .iter()
            .filter(|n| eligible(n))
            .filter_map(|n| Some((n.metadata.name.as_deref()?, label(n, key)?.as_str())))
            .collect();
        let selects = |labels: &BTreeMap<String, String>| {
            c.label_selector
                .as_ref()
                .is_some_and(|s| label_selector_matches(s, labels))
        };
        for (on, p) in staying {
            if p.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            if !selects(&p.metadata.labels.clone().unwrap_or_default()) {
                continue;
            }
            if let Some(d) = domain_of.get(on.as_str()) {
                *counts.entry(d).or_default() += 1;
            }
        }
        let mut min = counts.values().copied().min().unwrap_or(0);
        if c.min_domains.is_some_and(|m| (counts.len() as i32) < m) {
            min = 0;
        }
        let here = counts.get(value.as_str()).copied().unwrap_or(0) + i32::from(selects(&own));
        if here - min > c.max_skew {
            return Some(format!(
                "topology spread on {key}: skew {} would exceed maxSkew {}",
                here - min,
                c.max_skew
            ));
        }
    }
    None
}

/// A cordoned node carries node.kubernetes.io/unschedulable:NoSchedule.
fn cordon_untolerated(pod: &Pod, node: &Node) -> bool {
    if !node_unschedulable(node) {
        return false;
    }
    let taint = k8s_openapi::api::core::v1::Taint {
        key: "node.kubernetes.io/unschedulable".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    };
    !pod.spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .any(|t| tolerates(t, &taint))
}

/// Whether `term` (written in a pod of `owner_ns`) selects `other`: its
/// namespaces (empty: the owner's; an empty namespaceSelector: all) and its
/// label selector (none selects nothing). interpodaffinity: framework.AffinityTerm.Matches.
fn term_selects(term: &PodAffinityTerm, owner_ns: &str, other: &Pod) -> bool {
    let ns = other.metadata.namespace.as_deref().unwrap_or("default");
    let listed = term.namespaces.clone().unwrap_or_default();
    let in_ns = if term.namespace_selector.is_some() {
        true
    } else if listed.is_empty() {
        ns == owner_ns
    } else {
        listed.iter().any(|n| n == ns)
    };
    in_ns
        && term.label_selector.as_ref().is_some_and(|s| {
            label_selector_matches(s, &other.metadata.labels.clone().unwrap_or_default())
        })
}

/// InterPodAffinity: the pod's required affinity terms each need a matching
/// pod in the node's topology domain (unless no pod matches anywhere and the
/// pod matches its own terms); its required anti-affinity terms and those of
/// the pods already there must find no match in the domain
/// (interpodaffinity/filtering.go satisfyPodAffinity, satisfyPodAntiAffinity,
/// satisfyExistingPodsAntiAffinity).
fn interpod_misfit(
    pod: &Pod,
    node: &Node,
    by_name: &BTreeMap<&str, &Node>,
    staying: &[(String, Pod)],
) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let same_domain = |key: &str, on: &str| {
        let here = label(node, key);
        here.is_some() && by_name.get(on).and_then(|n| label(n, key)) == here
    };
    let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
    let required = |terms: Option<&Vec<PodAffinityTerm>>| terms.cloned().unwrap_or_default();
    let affinity_terms = required(
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
    );
    let anti_terms = required(
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            }),
    );
    if !affinity_terms.is_empty() {
        let none_anywhere = affinity_terms
            .iter()
            .all(|t| !staying.iter().any(|(_, p)| term_selects(t, ns, p)));
        let matches_itself = affinity_terms.iter().all(|t| term_selects(t, ns, pod));
        if !(none_anywhere && matches_itself) {
            for t in &affinity_terms {
                let met = staying
                    .iter()
                    .any(|(on, p)| same_domain(&t.topology_key, on) && term_selects(t, ns, p));
                if !met {
                    return Some(format!(
                        "required pod affinity on {}: no matching pod in this node's domain",
                        t.topology_key
                    ));
                }
            }
        }
    }
    for t in &anti_terms {
        if let Some((_, p)) = staying
            .iter()
            .find(|(on, p)| same_domain(&t.topology_key, on) && term_selects(t, ns, p))
        {
            return Some(format!(
                "required pod anti-affinity on {} against {}",
                t.topology_key,
                pod_key(p)
            ));
        }
    }
    for (on, p) in staying {
        let p_ns = p.metadata.namespace.as_deref().unwrap_or("default");
        let terms = p
            .spec
            .as_ref()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        for t in terms.into_iter().flatten() {
            if same_domain(&t.topology_key, on) && term_selects(t, p_ns, pod) {
                return Some(format!(
                    "{}'s required pod anti-affinity on {} excludes it",
                    pod_key(p),
                    t.topology_key
                ));
            }
        }
    }
    None
}

/// Places `pods` (biggest CPU request first) onto the Ready, schedulable
/// nodes not leaving, against allocatable minus the requests of the
/// unfinished pods already bound there, through every [`Filter`]. The pods
/// being placed no longer count where they run now; each placement counts
/// for the next.
pub fn place(pods: &[&Pod], cluster: &Cluster) -> Vec<Placement> {
    let moving: BTreeSet<String> = pods.iter().map(|p| pod_key(p)).collect();
    let mut staying: Vec<(String, Pod)> = cluster
        .pods
        .iter()
        .filter(|p| !is_finished(p) && !is_terminating(p) && !moving.contains(&pod_key(p)))
        .filter_map(|p| Some((node_of(p)?.to_string(), p.clone())))
        .collect();
    let by_name: BTreeMap<&str, &Node> = cluster
        .nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .collect();
    let candidates: Vec<&Node> = cluster
        .nodes
        .iter()
        .filter(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            !cluster.leaving.contains(&name)
        })
        .collect();
    let mut free: BTreeMap<String, Resources> = candidates
        .iter()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), allocatable(n)))
        .collect();
    for p in cluster.pods.iter().filter(|p| !is_finished(p)) {
        let Some(bound) = node_of(p) else {
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
            let mut reject = |filter: Filter, why: String| {
                why_not.push((name.clone(), format!("{why} [{}]", filter.name())));
            };
            if !node_ready(node) {
                reject(Filter::NodeUnschedulable, "not Ready".into());
                continue;
            }
            if node_unschedulable(node) {
                reject(Filter::NodeUnschedulable, "unschedulable (cordoned)".into());
                continue;
            }
            if let Some((filter, why)) = static_misfit(pod, node) {
                reject(filter, why);
                continue;
            }
            let here: Vec<&Pod> = staying
                .iter()
                .filter(|(on, _)| *on == name)
                .map(|(_, p)| p)
                .collect();
            if let Some(why) = port_conflict(pod, &here) {
                reject(Filter::NodePorts, why);
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
                reject(Filter::NodeResourcesFit, short.join(", "));
                continue;
            }
            if let Some(why) = volume_misfit(pod, node, cluster) {
                reject(Filter::VolumeBinding, why);
                continue;
            }
            if let Some(why) = spread_misfit(pod, node, cluster, &staying) {
                reject(Filter::PodTopologySpread, why);
                continue;
            }
            if let Some(why) = interpod_misfit(pod, node, &by_name, &staying) {
                reject(Filter::InterPodAffinity, why);
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
                staying.push((name.clone(), (*pod).clone()));
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
