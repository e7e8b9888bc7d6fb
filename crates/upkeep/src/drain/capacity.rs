//! Can the evicted pods be placed elsewhere? A simulation of the scheduler's
//! filters over the remaining nodes, each pod placed in turn (earlier
//! placements count for the later ones). Each filter cites its plugin under
//! kubernetes `pkg/scheduler/framework/plugins/`; a node that fails names the
//! filter. cluster-autoscaler runs the same filters before a scale-down
//! (NoPlaceToMovePods). Not simulated: preferred terms (scores only),
//! `matchLabelKeys`, namespace selectors other than empty (read as "every
//! namespace"), volume limits and unbound claims (WaitForFirstConsumer).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node, Pod, PodAffinityTerm, PodSpec, TopologySpreadConstraint};

use super::index::{ClusterIndex, Interner, SlimPod, cpu};
use super::quantity::{human, milli};
use super::rules::pod_key;
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
    /// Every node and pod of the cluster, indexed.
    pub index: &'a ClusterIndex,
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
    let tolerations: &[_] = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default();
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
    let spec = pod.spec.as_ref()?;
    let labels = node.metadata.labels.as_ref();
    for (k, v) in spec.node_selector.iter().flatten() {
        if labels.and_then(|l| l.get(k)) != Some(v) {
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

pub(crate) fn allocatable(node: &Node) -> Resources {
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
fn host_ports(spec: Option<&PodSpec>) -> Vec<(String, String, i32)> {
    spec.into_iter()
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
fn port_conflict<'a>(pod: &Pod, here: impl Iterator<Item = &'a SlimPod>) -> Option<String> {
    let wanted = host_ports(pod.spec.as_ref());
    if wanted.is_empty() {
        return None;
    }
    for other in here {
        for (proto, ip, port) in host_ports(Some(&other.spec)) {
            if let Some((p, _, n)) = wanted.iter().find(|(p, wip, n)| {
                *p == proto && *n == port && (wip == "0.0.0.0" || ip == "0.0.0.0" || *wip == ip)
            }) {
                return Some(format!("host port {n}/{p} is taken by {}", other.key()));
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
            .index
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
                .index
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

/// The pods that stay where they are during the drain (unfinished, not
/// terminating, bound, not being moved), in cluster order, then each
/// replacement placed so far: what the filters count.
struct Staying<'a> {
    index: &'a ClusterIndex,
    moving: &'a BTreeSet<String>,
    /// The nodes the moving pods are bound to (only there can a pod be moving).
    moving_nodes: BTreeSet<&'a str>,
    added: Vec<(String, SlimPod)>,
}

impl<'a> Staying<'a> {
    fn counts(&self, p: &SlimPod) -> bool {
        let Some(on) = p.node.as_deref() else {
            return false;
        };
        let moving = self.moving_nodes.contains(on) && self.moving.contains(&p.key());
        !(p.finished || p.terminating || moving)
    }

    fn all(&self) -> impl Iterator<Item = (&str, &SlimPod)> + '_ {
        self.index
            .pods
            .iter()
            .filter(|p| self.counts(p))
            .map(|p| (p.node.as_deref().unwrap_or_default(), p))
            .chain(self.added.iter().map(|(n, p)| (n.as_str(), p)))
    }

    fn on<'s>(&'s self, node: &'s str) -> impl Iterator<Item = &'s SlimPod> + 's {
        self.index.bound_to(node).filter(|p| self.counts(p)).chain(
            self.added
                .iter()
                .filter(move |(n, _)| n == node)
                .map(|(_, p)| p),
        )
    }

    /// Those with required anti-affinity terms.
    fn with_anti(&self) -> impl Iterator<Item = (&str, &SlimPod)> + '_ {
        self.index
            .anti_affinity_pods()
            .filter(|p| self.counts(p))
            .map(|p| (p.node.as_deref().unwrap_or_default(), p))
            .chain(
                self.added
                    .iter()
                    .filter(|(_, p)| p.has_required_anti_affinity())
                    .map(|(n, p)| (n.as_str(), p)),
            )
    }
}

/// PodTopologySpread with whenUnsatisfiable DoNotSchedule: placing the pod
/// on `node` must keep its domain within maxSkew of the least loaded
/// eligible domain (podtopologyspread/filtering.go Filter; nodes count when
/// they match the pod's node affinity, nodeAffinityPolicy Honor, and their
/// taints only with nodeTaintsPolicy Honor, a cordon counting as a taint).
fn spread_misfit(pod: &Pod, node: &Node, cluster: &Cluster, staying: &Staying) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let empty = BTreeMap::new();
    let own = pod.metadata.labels.as_ref().unwrap_or(&empty);
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
            .index
            .nodes
            .iter()
            .filter(|n| eligible(n))
            .filter_map(|n| label(n, key).map(|v| (v.as_str(), 0)))
            .collect();
        let domain_of: BTreeMap<&str, &str> = cluster
            .index
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
        for (on, p) in staying.all() {
            if p.ns() != ns {
                continue;
            }
            if !selects(&p.labels) {
                continue;
            }
            if let Some(d) = domain_of.get(on) {
                *counts.entry(d).or_default() += 1;
            }
        }
        let mut min = counts.values().copied().min().unwrap_or(0);
        if c.min_domains.is_some_and(|m| (counts.len() as i32) < m) {
            min = 0;
        }
        let here = counts.get(value.as_str()).copied().unwrap_or(0) + i32::from(selects(own));
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

/// Whether `term` (written in a pod of `owner_ns`) selects a pod of
/// namespace `ns` with `labels`: its namespaces (empty: the owner's; an empty
/// namespaceSelector: all) and its label selector (none selects nothing).
/// interpodaffinity: framework.AffinityTerm.Matches.
fn term_selects(
    term: &PodAffinityTerm,
    owner_ns: &str,
    ns: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let in_ns = if term.namespace_selector.is_some() {
        true
    } else {
        match term.namespaces.as_deref() {
            None | Some([]) => ns == owner_ns,
            Some(listed) => listed.iter().any(|n| n == ns),
        }
    };
    in_ns
        && term
            .label_selector
            .as_ref()
            .is_some_and(|s| label_selector_matches(s, labels))
}

fn required_terms(spec: Option<&PodSpec>, anti: bool) -> &[PodAffinityTerm] {
    let affinity = spec.and_then(|s| s.affinity.as_ref());
    let terms = if anti {
        affinity
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
    } else {
        affinity
            .and_then(|a| a.pod_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_deref()
            })
    };
    terms.unwrap_or_default()
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
    index: &ClusterIndex,
    staying: &Staying,
) -> Option<String> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let empty = BTreeMap::new();
    let own = pod.metadata.labels.as_ref().unwrap_or(&empty);
    let same_domain = |key: &str, on: &str| {
        let here = label(node, key);
        here.is_some() && index.node(on).and_then(|n| label(n, key)) == here
    };
    let affinity_terms = required_terms(pod.spec.as_ref(), false);
    let anti_terms = required_terms(pod.spec.as_ref(), true);
    if !affinity_terms.is_empty() {
        let none_anywhere = affinity_terms.iter().all(|t| {
            !staying
                .all()
                .any(|(_, p)| term_selects(t, ns, p.ns(), &p.labels))
        });
        let matches_itself = affinity_terms.iter().all(|t| term_selects(t, ns, ns, own));
        if !(none_anywhere && matches_itself) {
            for t in affinity_terms {
                let met = staying.all().any(|(on, p)| {
                    same_domain(&t.topology_key, on) && term_selects(t, ns, p.ns(), &p.labels)
                });
                if !met {
                    return Some(format!(
                        "required pod affinity on {}: no matching pod in this node's domain",
                        t.topology_key
                    ));
                }
            }
        }
    }
    for t in anti_terms {
        if let Some((_, p)) = staying.all().find(|(on, p)| {
            same_domain(&t.topology_key, on) && term_selects(t, ns, p.ns(), &p.labels)
        }) {
            return Some(format!(
                "required pod anti-affinity on {} against {}",
                t.topology_key,
                p.key()
            ));
        }
    }
    for (on, p) in staying.with_anti() {
        for t in required_terms(Some(&p.spec), true) {
            if same_domain(&t.topology_key, on) && term_selects(t, p.ns(), ns, own) {
                return Some(format!(
                    "{}'s required pod anti-affinity on {} excludes it",
                    p.key(),
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
///
/// Each pod goes to the node with the most CPU left that passes every
/// filter (LeastAllocated; ties to the earlier node): nodes are tried in
/// that order and the first that passes is taken, so a cluster of
/// thousands of nodes is not filtered whole for every pod. Only a pod that
/// fits nowhere is tried against every node (to say why on each).
pub fn place(pods: &[&Pod], cluster: &Cluster) -> Vec<Placement> {
    let index = cluster.index;
    let moving: BTreeSet<String> = pods.iter().map(|p| pod_key(p)).collect();
    let mut staying = Staying {
        index,
        moving: &moving,
        moving_nodes: pods.iter().filter_map(|p| node_of(p)).collect(),
        added: Vec::new(),
    };
    let mut interner = Interner::default();
    // Free resources of the nodes that received a replacement (the others: the index's).
    let mut touched: BTreeMap<usize, Resources> = BTreeMap::new();
    let leaving = |i: usize| {
        cluster
            .leaving
            .contains(index.nodes[i].metadata.name.as_deref().unwrap_or_default())
    };
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
        let mut rejected: Vec<(usize, String)> = Vec::new();
        let mut best: Option<usize> = None;
        // Candidates by (most free CPU, node order): the index's order for
        // untouched nodes, merged with the touched ones.
        let mut over: Vec<(std::cmp::Reverse<i128>, usize)> = touched
            .iter()
            .map(|(&i, r)| (std::cmp::Reverse(cpu(r)), i))
            .collect();
        over.sort();
        let mut over = over.into_iter().peekable();
        let mut base = index
            .by_score()
            .iter()
            .map(|&i| i as usize)
            .filter(|i| !touched.contains_key(i))
            .map(|i| (std::cmp::Reverse(cpu(index.free(i))), i))
            .peekable();
        loop {
            let next = match (base.peek(), over.peek()) {
                (Some(b), Some(o)) if o < b => over.next(),
                (Some(_), _) => base.next(),
                (None, _) => over.next(),
            };
            let Some((_, ni)) = next else { break };
            if leaving(ni) {
                continue;
            }
            let node = &index.nodes[ni];
            let name = node.metadata.name.as_deref().unwrap_or_default();
            let mut reject = |filter: Filter, why: String| {
                rejected.push((ni, format!("{why} [{}]", filter.name())));
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
            if let Some(why) = port_conflict(pod, staying.on(name)) {
                reject(Filter::NodePorts, why);
                continue;
            }
            let have = touched.get(&ni).unwrap_or_else(|| index.free(ni));
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
            if let Some(why) = interpod_misfit(pod, node, index, &staying) {
                reject(Filter::InterPodAffinity, why);
                continue;
            }
            best = Some(ni);
            break;
        }
        let key = pod_key(pod);
        match best {
            Some(ni) => {
                let name = index.nodes[ni].metadata.name.clone().unwrap_or_default();
                let f = touched.entry(ni).or_insert_with(|| index.free(ni).clone());
                for (k, v) in &need {
                    *f.entry(k.clone()).or_default() -= v;
                }
                let (slim, _) = interner.slim((*pod).clone());
                staying.added.push((name.clone(), slim));
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
                rejected.sort_by_key(|(i, _)| *i);
                let why_not = rejected
                    .into_iter()
                    .map(|(i, why)| {
                        (
                            index.nodes[i].metadata.name.clone().unwrap_or_default(),
                            why,
                        )
                    })
                    .collect();
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
