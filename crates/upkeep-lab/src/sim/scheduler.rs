//! The scheduler: binds pending pods to nodes (pkg/scheduler/schedule_one.go) with the
//! default profile's filters in upstream order (pkg/scheduler/framework/plugins/...):
//! NodeUnschedulable, NodeName, TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit,
//! VolumeBinding (bound PersistentVolumes' node affinity), PodTopologySpread (DoNotSchedule)
//! and InterPodAffinity (required affinity and anti-affinity, the existing pods' too); and a
//! score that spreads replicas of one controller and prefers the least allocated node
//! (plugins/noderesources/least_allocated.go, plugins/podtopologyspread's system default
//! spreading, simplified). A pod that fits nowhere gets `PodScheduled=False` (reason
//! Unschedulable) and a `FailedScheduling` event with FitError's message.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::resources;
use crate::selector::LabelSelector;
use crate::store::{Obj, Store};

use super::{Ctx, Key, util};

#[derive(Default)]
pub struct Scheduler {
    /// Pods that did not fit; retried when nodes change or capacity frees up.
    unschedulable: Mutex<HashSet<Key>>,
}

/// Why one node was rejected: the Status reasons of each filter plugin
/// (pkg/scheduler/framework/plugins/...).
#[derive(Debug, Clone, PartialEq)]
pub enum Reject {
    /// nodeunschedulable: ErrReasonUnschedulable (UnschedulableAndUnresolvable).
    Unschedulable,
    /// nodename: ErrReason.
    NodeName,
    /// tainttoleration: the first untolerated taint.
    Taint(String, String),
    /// nodeaffinity: ErrReasonPod.
    Affinity,
    /// nodeports: ErrReason (Unschedulable).
    NodePorts,
    /// noderesources/fit.go: "Insufficient cpu", "Too many pods", ...
    Resources(Vec<String>),
    /// volumebinding: ErrReasonPVNotExist (UnschedulableAndUnresolvable).
    PvNotExist,
    /// volumebinding: ErrReasonNodeConflict (UnschedulableAndUnresolvable).
    VolumeNodeConflict,
    /// podtopologyspread: ErrReasonNodeLabelNotMatch (UnschedulableAndUnresolvable).
    SpreadMissingLabel,
    /// podtopologyspread: ErrReasonConstraintsNotMatch (Unschedulable).
    Spread,
    /// interpodaffinity: ErrReasonAffinityRulesNotMatch (UnschedulableAndUnresolvable).
    PodAffinity,
    /// interpodaffinity: ErrReasonAntiAffinityRulesNotMatch (Unschedulable).
    PodAntiAffinity,
    /// interpodaffinity: ErrReasonExistingAntiAffinityRulesNotMatch (Unschedulable).
    ExistingAntiAffinity,
}

impl Reject {
    fn reasons(&self) -> Vec<String> {
        let one = |s: &str| vec![s.to_string()];
        match self {
            Reject::Unschedulable => one("node(s) were unschedulable"),
            Reject::NodeName => one("node(s) didn't match the requested node name"),
            Reject::Taint(k, v) => vec![format!("node(s) had untolerated taint {{{k}: {v}}}")],
            Reject::Affinity => one("node(s) didn't match Pod's node affinity/selector"),
            Reject::NodePorts => one("node(s) didn't have free ports for the requested pod ports"),
            Reject::Resources(r) => r.clone(),
            Reject::PvNotExist => {
                one("node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)")
            }
            Reject::VolumeNodeConflict => one("node(s) had volume node affinity conflict"),
            Reject::SpreadMissingLabel => {
                one("node(s) didn't match pod topology spread constraints (missing required label)")
            }
            Reject::Spread => one("node(s) didn't match pod topology spread constraints"),
            Reject::PodAffinity => one("node(s) didn't match pod affinity rules"),
            Reject::PodAntiAffinity => one("node(s) didn't match pod anti-affinity rules"),
            Reject::ExistingAntiAffinity => {
                one("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
    /// Status code Unschedulable (preemption might help) rather than
    /// UnschedulableAndUnresolvable (preemption.go nodesWherePreemptionMightHelp).
    fn resolvable(&self) -> bool {
        matches!(
            self,
            Reject::Resources(_)
                | Reject::NodePorts
                | Reject::Spread
                | Reject::PodAntiAffinity
                | Reject::ExistingAntiAffinity
        )
    }
}

/// A node and the pods bound to it (framework.NodeInfo).
pub struct NodeInfo {
    pub node: Obj,
    pub pods: Vec<Obj>,
    pub used: util::Resources,
}

impl NodeInfo {
    fn label(&self, key: &str) -> Option<&str> {
        util::label(&self.node, key)
    }
}

/// Labels of every namespace, for affinity terms' namespaceSelector.
pub type NamespaceLabels = HashMap<String, Value>;

/// framework.AffinityTerm: the namespaces a pod affinity term selects and its selector.
struct Term {
    namespaces: HashSet<String>,
    ns_selector: Option<LabelSelector>,
    selector: LabelSelector,
    key: String,
}

impl Term {
    /// schedutil GetNamespacesFromPodAffinityTerm: no namespaces and no namespaceSelector
    /// mean the owning pod's namespace; a nil labelSelector selects nothing.
    fn new(owner: &Value, t: &Value) -> Term {
        let mut namespaces: HashSet<String> = util::arr(t, "/namespaces")
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect();
        let ns_sel = t.get("namespaceSelector").filter(|v| v.is_object());
        if namespaces.is_empty() && ns_sel.is_none() {
            namespaces.insert(util::namespace(owner).to_string());
        }
        Term {
            namespaces,
            ns_selector: ns_sel.map(|s| LabelSelector::from_object(Some(s))),
            selector: LabelSelector::from_object(t.get("labelSelector")),
            key: util::s(t, "/topologyKey").to_string(),
        }
    }
    /// AffinityTerm.Matches
    fn matches(&self, pod: &Value, ns: &NamespaceLabels) -> bool {
        let pns = util::namespace(pod);
        (self.namespaces.contains(pns)
            || self
                .ns_selector
                .as_ref()
                .is_some_and(|s| s.matches_labels(ns.get(pns))))
            && self.selector.matches(pod)
    }
}

fn terms(pod: &Value, path: &str) -> Vec<Term> {
    util::arr(pod, path)
        .iter()
        .map(|t| Term::new(pod, t))
        .collect()
}

const AFFINITY: &str = "/spec/affinity/podAffinity/requiredDuringSchedulingIgnoredDuringExecution";
const ANTI_AFFINITY: &str =
    "/spec/affinity/podAntiAffinity/requiredDuringSchedulingIgnoredDuringExecution";

/// A topology domain: (topology key, value).
type Pair = (String, String);

/// One DoNotSchedule constraint of plugins/podtopologyspread (common.go
/// filterTopologySpreadConstraints, with matchLabelKeys merged into the selector).
struct Spread {
    key: String,
    max_skew: i64,
    min_domains: Option<i64>,
    selector: LabelSelector,
    honor_affinity: bool,
    honor_taints: bool,
}

/// What PreFilter computes once per pod (each plugin's preFilterState).
#[derive(Default)]
pub struct PreState {
    affinity: Vec<Term>,
    anti: Vec<Term>,
    /// interpodaffinity: existing pods matching all affinity terms, per domain.
    affinity_counts: HashMap<Pair, i64>,
    /// podMatchesAllAffinityTerms of the incoming pod itself.
    self_affinity: bool,
    /// existing pods matching an anti-affinity term, per domain.
    anti_counts: HashMap<Pair, i64>,
    /// existing pods whose anti-affinity terms match the incoming pod, per domain.
    existing_anti: HashMap<Pair, i64>,
    spread: Vec<Spread>,
    /// podtopologyspread TpValueToMatchNum, per constraint.
    spread_counts: Vec<HashMap<String, i64>>,
    /// volumebinding: the required node affinity of each bound PV (None: PV missing).
    bound_pvs: Vec<Option<Vec<Value>>>,
}

/// PreFilter of the plugins that look beyond one node: volumebinding (volume_binding.go
/// PreFilter/podHasPVCs), interpodaffinity (filtering.go PreFilter) and podtopologyspread
/// (filtering.go calPreFilterState). `Err` is a PreFilter rejection: its message and
/// whether the pod failed as UnschedulableAndUnresolvable.
pub fn pre_filter(
    store: &Store,
    pod: &Value,
    nodes: &[NodeInfo],
    with_anti_affinity: &[(usize, Obj)],
    ns: &NamespaceLabels,
) -> Result<PreState, String> {
    let mut st = PreState::default();
    // volumebinding: every PVC must exist; a claim without spec.volumeName is unbound, and
    // with no StorageClass served every claim binds immediately or never.
    let mut unbound = false;
    for v in util::arr(pod, "/spec/volumes") {
        let claim = util::s(v, "/persistentVolumeClaim/claimName");
        if claim.is_empty() {
            continue;
        }
        let Some(pvc) = store.get(
            &resources::PERSISTENTVOLUMECLAIM,
            util::namespace(pod),
            claim,
        ) else {
            return Err(format!("persistentvolumeclaim {claim:?} not found"));
        };
        if util::terminating(&pvc) {
            return Err(format!("persistentvolumeclaim {claim:?} is being deleted"));
        }
        let pv = util::s(&pvc, "/spec/volumeName");
        if pv.is_empty() {
            unbound = true;
            continue;
        }
        st.bound_pvs.push(
            store
                .get(&resources::PERSISTENTVOLUME, "", pv)
                .map(|pv| util::arr(&pv, "/spec/nodeAffinity/required/nodeSelectorTerms").to_vec()),
        );
    }
    if unbound {
        return Err("pod has unbound immediate PersistentVolumeClaims".into());
    }
    // interpodaffinity
    st.affinity = terms(pod, AFFINITY);
    st.anti = terms(pod, ANTI_AFFINITY);
    st.self_affinity = !st.affinity.is_empty() && st.affinity.iter().all(|t| t.matches(pod, ns));
    if !st.affinity.is_empty() || !st.anti.is_empty() {
        for ni in nodes {
            for existing in &ni.pods {
                // updateWithAffinityTerms: the existing pod must match all terms
                if !st.affinity.is_empty() && st.affinity.iter().all(|t| t.matches(existing, ns)) {
                    for t in &st.affinity {
                        if let Some(v) = ni.label(&t.key) {
                            *st.affinity_counts
                                .entry((t.key.clone(), v.into()))
                                .or_default() += 1;
                        }
                    }
                }
                for t in st.anti.iter().filter(|t| t.matches(existing, ns)) {
                    if let Some(v) = ni.label(&t.key) {
                        *st.anti_counts.entry((t.key.clone(), v.into())).or_default() += 1;
                    }
                }
            }
        }
    }
    // getExistingAntiAffinityCounts: the existing pods' anti-affinity terms against this pod
    // (only pods that have such terms: HavePodsWithRequiredAntiAffinityList)
    for (i, existing) in with_anti_affinity {
        for t in terms(existing, ANTI_AFFINITY) {
            if t.matches(pod, ns)
                && let Some(v) = nodes[*i].label(&t.key)
            {
                *st.existing_anti
                    .entry((t.key.clone(), v.into()))
                    .or_default() += 1;
            }
        }
    }
    // podtopologyspread: DoNotSchedule constraints only (ScheduleAnyway is scoring)
    for c in util::arr(pod, "/spec/topologySpreadConstraints") {
        if util::s(c, "/whenUnsatisfiable") != "DoNotSchedule" {
            continue;
        }
        let mut sel = c.get("labelSelector").cloned().unwrap_or(Value::Null);
        for k in util::arr(c, "/matchLabelKeys")
            .iter()
            .filter_map(Value::as_str)
        {
            if let Some(v) = util::label(pod, k)
                && sel.is_object()
            {
                let req = json!({"key": k, "operator": "In", "values": [v]});
                match sel
                    .get_mut("matchExpressions")
                    .and_then(Value::as_array_mut)
                {
                    Some(a) => a.push(req),
                    None => sel["matchExpressions"] = json!([req]),
                }
            }
        }
        st.spread.push(Spread {
            key: util::s(c, "/topologyKey").to_string(),
            max_skew: util::i(c, "/maxSkew").unwrap_or(1),
            min_domains: util::i(c, "/minDomains"),
            selector: LabelSelector::from_object(Some(&sel).filter(|v| v.is_object())),
            honor_affinity: util::s(c, "/nodeAffinityPolicy") != "Ignore",
            honor_taints: util::s(c, "/nodeTaintsPolicy") == "Honor",
        });
    }
    if !st.spread.is_empty() {
        st.spread_counts = vec![HashMap::new(); st.spread.len()];
        let spec = pod.get("spec").unwrap_or(&Value::Null);
        for ni in nodes {
            // only nodes that pass the pod's node affinity (nodeAffinityPolicy Honor) and,
            // with nodeTaintsPolicy Honor, its tolerations, and carry every topology key
            let keys_ok = st.spread.iter().all(|c| ni.label(&c.key).is_some());
            if !keys_ok {
                continue;
            }
            for (i, c) in st.spread.iter().enumerate() {
                if c.honor_affinity && !util::pod_spec_matches_node(spec, &ni.node) {
                    continue;
                }
                if c.honor_taints
                    && util::untolerated_schedule_taint(
                        util::node_taints(&ni.node),
                        util::pod_tolerations(pod),
                    )
                    .is_some()
                {
                    continue;
                }
                // countPodsMatchSelector: same namespace, not terminating
                let n = ni
                    .pods
                    .iter()
                    .filter(|p| {
                        util::namespace(p) == util::namespace(pod)
                            && !util::terminating(p)
                            && c.selector.matches(p)
                    })
                    .count() as i64;
                let v = ni.label(&c.key).expect("checked").to_string();
                *st.spread_counts[i].entry(v).or_default() += n;
            }
        }
    }
    Ok(st)
}

/// The host ports a pod asks for: (protocol, hostIP, port) of its containers and
/// restartable init containers (plugins/nodeports getContainerPorts).
fn host_ports(pod: &Value) -> Vec<(String, String, i64)> {
    let mut out = Vec::new();
    let inits = util::arr(pod, "/spec/initContainers")
        .iter()
        .filter(|c| util::s(c, "/restartPolicy") == "Always");
    for c in util::arr(pod, "/spec/containers").iter().chain(inits) {
        for p in util::arr(c, "/ports") {
            let port = util::i(p, "/hostPort").unwrap_or(0);
            if port <= 0 {
                continue;
            }
            let proto = match util::s(p, "/protocol") {
                "" => "TCP",
                x => x,
            };
            let ip = match util::s(p, "/hostIP") {
                "" => "0.0.0.0",
                x => x,
            };
            out.push((proto.to_string(), ip.to_string(), port));
        }
    }
    out
}

/// framework.HostPortInfo CheckConflict: same protocol and port, and the same IP or either
/// one the wildcard 0.0.0.0.
fn ports_conflict(want: &[(String, String, i64)], node: &NodeInfo) -> bool {
    if want.is_empty() {
        return false;
    }
    let used: Vec<_> = node.pods.iter().flat_map(|p| host_ports(p)).collect();
    want.iter().any(|(proto, ip, port)| {
        used.iter().any(|(up, uip, uport)| {
            up == proto && uport == port && (ip == uip || ip == "0.0.0.0" || uip == "0.0.0.0")
        })
    })
}

/// The default profile's filters for one pod on one node, in upstream order
/// (pkg/scheduler/apis/config/v1/default_plugins.go): NodeUnschedulable, NodeName,
/// TaintToleration, NodeAffinity, NodePorts, NodeResourcesFit, VolumeBinding,
/// PodTopologySpread, InterPodAffinity. The first failing plugin answers.
pub fn filter_all(pod: &Value, st: &PreState, ni: &NodeInfo) -> Result<(), Reject> {
    let node = &ni.node;
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
    // NodePorts
    if ports_conflict(&host_ports(pod), ni) {
        return Err(Reject::NodePorts);
    }
    // NodeResourcesFit (fit.go fitsRequest): pods count first, then cpu, memory.
    let alloc = util::node_allocatable(node);
    let req = util::pod_requests(pod);
    let used = &ni.used;
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
    // VolumeBinding (binder.go checkBoundClaims): a bound PV's required node affinity.
    for pv in &st.bound_pvs {
        match pv {
            None => return Err(Reject::PvNotExist),
            Some(terms) if !terms.is_empty() && !util::node_selector_terms_match(terms, node) => {
                return Err(Reject::VolumeNodeConflict);
            }
            Some(_) => {}
        }
    }
    // PodTopologySpread (filtering.go Filter): matching pods in the node's domain, plus the
    // pod itself if it matches, minus the global minimum, must not exceed maxSkew.
    for (i, c) in st.spread.iter().enumerate() {
        let Some(v) = ni.label(&c.key) else {
            return Err(Reject::SpreadMissingLabel);
        };
        let counts = &st.spread_counts[i];
        let mut min = counts.values().copied().min().unwrap_or(0);
        if c.min_domains.is_some_and(|m| (counts.len() as i64) < m) {
            min = 0;
        }
        let self_match = i64::from(c.selector.matches(pod));
        let skew = counts.get(v).copied().unwrap_or(0) + self_match - min;
        if skew > c.max_skew {
            return Err(Reject::Spread);
        }
    }
    // InterPodAffinity (filtering.go Filter)
    if !satisfies_affinity(st, ni) {
        return Err(Reject::PodAffinity);
    }
    let conflicts = |counts: &HashMap<Pair, i64>, key: &str| {
        ni.label(key).is_some_and(|v| {
            counts
                .get(&(key.to_string(), v.to_string()))
                .is_some_and(|n| *n > 0)
        })
    };
    if st.anti.iter().any(|t| conflicts(&st.anti_counts, &t.key)) {
        return Err(Reject::PodAntiAffinity);
    }
    // satisfyExistingPodsAntiAffinity: any of the node's labels in a counted domain
    if !st.existing_anti.is_empty()
        && util::labels(node)
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .any(|(k, v)| {
                v.as_str().is_some_and(|v| {
                    st.existing_anti
                        .get(&(k.clone(), v.to_string()))
                        .is_some_and(|n| *n > 0)
                })
            })
    {
        return Err(Reject::ExistingAntiAffinity);
    }
    Ok(())
}

/// filtering.go satisfyPodAffinity: every term's domain on this node holds a matching pod;
/// the first pod of a group with affinity to itself may go anywhere with the keys.
fn satisfies_affinity(st: &PreState, ni: &NodeInfo) -> bool {
    let mut pods_exist = true;
    for t in &st.affinity {
        let Some(v) = ni.label(&t.key) else {
            return false;
        };
        if st
            .affinity_counts
            .get(&(t.key.clone(), v.to_string()))
            .is_none_or(|n| *n <= 0)
        {
            pods_exist = false;
        }
    }
    pods_exist || (st.affinity_counts.is_empty() && st.self_affinity)
}

/// types.go FitError.Error() with the preemption PostFilter's message: "0/3 nodes are
/// available: 1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are
/// available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for
/// incoming pod." A PreFilter rejection (`pre_filter`) replaces the per-node reasons, and
/// every node is then one where preemption is not helpful.
pub fn fit_error(total: usize, pre_filter: Option<&str>, rejects: &[Reject]) -> String {
    let summarize = |m: BTreeMap<String, usize>| -> String {
        let mut v: Vec<String> = m.into_iter().map(|(r, c)| format!("{c} {r}")).collect();
        v.sort();
        v.join(", ")
    };
    if total == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    if let Some(msg) = pre_filter {
        return format!(
            "0/{total} nodes are available: {msg}. preemption: 0/{total} nodes are available: {total} Preemption is not helpful for scheduling."
        );
    }
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
        // The scheduler cache: each node's pods and what they request (NodeInfo), and
        // per-node counts of pods per controller for spreading.
        let mut infos: Vec<NodeInfo> = Vec::with_capacity(nodes.len());
        let mut owners: HashMap<(String, String), i64> = HashMap::new();
        for n in &nodes {
            let nn = util::name(n).to_string();
            let q = crate::ListQuery::all().fields(
                crate::selector::FieldSelector::parse(&format!("spec.nodeName={nn}"))
                    .expect("valid"),
            );
            let mut u = util::Resources::default();
            let mut on_node = Vec::new();
            for p in store.list(&resources::POD, &q).0 {
                if util::terminal(&p) {
                    continue;
                }
                u.add(&util::pod_requests(&p));
                if let Some((_, _, uid)) = util::controller_of(&p) {
                    *owners.entry((nn.clone(), uid.to_string())).or_default() += 1;
                }
                on_node.push(p);
            }
            infos.push(NodeInfo {
                node: n.clone(),
                pods: on_node,
                used: u,
            });
        }
        let mut with_anti: Vec<(usize, Obj)> = infos
            .iter()
            .enumerate()
            .flat_map(|(i, ni)| ni.pods.iter().map(move |p| (i, p.clone())))
            .filter(|(_, p)| !util::arr(p, ANTI_AFFINITY).is_empty())
            .collect();
        let index: HashMap<String, usize> = infos
            .iter()
            .enumerate()
            .map(|(i, ni)| (util::name(&ni.node).to_string(), i))
            .collect();
        let ns_labels: NamespaceLabels = store
            .list(&resources::NAMESPACE, &Default::default())
            .0
            .iter()
            .map(|n| {
                (
                    util::name(n).to_string(),
                    util::labels(n).cloned().unwrap_or(Value::Null),
                )
            })
            .collect();
        for pod in pods {
            let key = (
                util::namespace(&pod).to_string(),
                util::name(&pod).to_string(),
            );
            let pre = pre_filter(store, &pod, &infos, &with_anti, &ns_labels);
            let mut feasible: Vec<usize> = Vec::new();
            if let Ok(st) = &pre {
                // plugins/nodeaffinity PreFilter: a pod pinned by `matchFields metadata.name`
                // (every DaemonSet pod) is only checked against the nodes it names.
                let candidates: Vec<usize> = match pinned_node_names(&pod) {
                    Some(names) => names.iter().filter_map(|n| index.get(n).copied()).collect(),
                    None => (0..infos.len()).collect(),
                };
                feasible = candidates
                    .into_iter()
                    .filter(|i| filter_all(&pod, st, &infos[*i]).is_ok())
                    .collect();
            }
            if feasible.is_empty() {
                let msg = match &pre {
                    Err(m) => fit_error(infos.len(), Some(m), &[]),
                    Ok(st) => {
                        // every node's reason, for the message (rare: the pod is parked after this)
                        let rejects: Vec<Reject> = infos
                            .iter()
                            .filter_map(|ni| filter_all(&pod, st, ni).err())
                            .collect();
                        fit_error(infos.len(), None, &rejects)
                    }
                };
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
                .map(|i| {
                    let ni = &infos[*i];
                    let nn = util::name(&ni.node);
                    let same = owner
                        .as_ref()
                        .map(|o| {
                            owners
                                .get(&(nn.to_string(), o.clone()))
                                .copied()
                                .unwrap_or(0)
                        })
                        .unwrap_or(0);
                    let a = util::node_allocatable(&ni.node);
                    let u = &ni.used;
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
                // the cache assumes the pod on its node for the rest of the batch
                let ni = &mut infos[index[&node]];
                ni.used.add(&req);
                ni.pods.push(p.clone());
                if !util::arr(&p, ANTI_AFFINITY).is_empty() {
                    with_anti.push((index[&node], p.clone()));
                }
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
            None,
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
        let msg = fit_error(
            2,
            None,
            &[Reject::PodAntiAffinity, Reject::VolumeNodeConflict],
        );
        assert_eq!(
            msg,
            "0/2 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) had volume node affinity conflict. preemption: 0/2 nodes are available: 1 No preemption victims found for incoming pod, 1 Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error(
                2,
                Some("pod has unbound immediate PersistentVolumeClaims"),
                &[]
            ),
            "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        );
    }

    fn node(name: &str, zone: Option<&str>) -> Obj {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["topology.kubernetes.io/zone"] = json!(z);
        }
        Arc::new(json!({"metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": "True"}],
                       "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
    }

    fn pod(name: &str, app: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "nginx"}]);
        json!({"metadata": {"name": name, "namespace": "default", "labels": {"app": app}}, "spec": spec})
    }

    /// Nodes a (zone z1), b (z1), c (z2), d (no zone label); `placed` are (node, pod).
    fn cluster(placed: &[(usize, Value)]) -> Vec<NodeInfo> {
        let mut infos: Vec<NodeInfo> = [
            ("a", Some("z1")),
            ("b", Some("z1")),
            ("c", Some("z2")),
            ("d", None),
        ]
        .iter()
        .map(|(n, z)| NodeInfo {
            node: node(n, *z),
            pods: Vec::new(),
            used: util::Resources::default(),
        })
        .collect();
        for (i, p) in placed {
            infos[*i].pods.push(Arc::new(p.clone()));
        }
        infos
    }

    /// The reject of each node a..d for `pod` (None: fits).
    fn verdicts(pod: &Value, placed: &[(usize, Value)]) -> Vec<Option<Reject>> {
        let infos = cluster(placed);
        let with_anti: Vec<(usize, Obj)> = infos
            .iter()
            .enumerate()
            .flat_map(|(i, ni)| ni.pods.iter().map(move |p| (i, p.clone())))
            .filter(|(_, p)| !util::arr(p, ANTI_AFFINITY).is_empty())
            .collect();
        let store = Store::new(Arc::new(crate::clock::Clock::new(1.0)));
        let st = pre_filter(&store, pod, &infos, &with_anti, &HashMap::new()).expect("prefilter");
        infos
            .iter()
            .map(|ni| filter_all(pod, &st, ni).err())
            .collect()
    }

    fn term(key: &str, app: &str) -> Value {
        json!([{"topologyKey": key, "labelSelector": {"matchLabels": {"app": app}}}])
    }

    #[test]
    fn required_anti_affinity_of_the_pod_and_of_existing_pods() {
        let web = |n: &str| {
            pod(
                n,
                "web",
                json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("kubernetes.io/hostname", "web")}}}),
            )
        };
        // one replica per node: a and c taken, b and d free
        let v = verdicts(&web("new"), &[(0, web("w1")), (2, web("w2"))]);
        assert_eq!(
            v,
            vec![
                Some(Reject::PodAntiAffinity),
                None,
                Some(Reject::PodAntiAffinity),
                None
            ]
        );
        // an existing pod's zone anti-affinity keeps a plain web pod out of its whole zone
        let guard = pod(
            "guard",
            "db",
            json!({"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("topology.kubernetes.io/zone", "web")}}}),
        );
        let v = verdicts(&pod("plain", "web", json!({})), &[(0, guard)]);
        assert_eq!(
            v,
            vec![
                Some(Reject::ExistingAntiAffinity),
                Some(Reject::ExistingAntiAffinity),
                None,
                None
            ]
        );
    }

    #[test]
    fn required_affinity_follows_the_matching_pods_domain() {
        let spec = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("topology.kubernetes.io/zone", "db")}}});
        let v = verdicts(
            &pod("api", "api", spec.clone()),
            &[(2, pod("db", "db", json!({})))],
        );
        assert_eq!(
            v,
            vec![
                Some(Reject::PodAffinity),
                Some(Reject::PodAffinity),
                None,
                Some(Reject::PodAffinity)
            ]
        );
        // no db pod anywhere and the pod does not match its own term: nowhere
        let v = verdicts(&pod("api", "api", spec), &[]);
        assert!(v.iter().all(|r| *r == Some(Reject::PodAffinity)), "{v:?}");
        // the first pod of a group with affinity to itself goes where the key exists
        let own = json!({"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term("topology.kubernetes.io/zone", "db")}}});
        let v = verdicts(&pod("db0", "db", own), &[]);
        assert_eq!(v, vec![None, None, None, Some(Reject::PodAffinity)]);
    }

    #[test]
    fn topology_spread_do_not_schedule() {
        let spec = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let web = |n: &str| pod(n, "web", json!({}));
        // z1 has 1, z2 has 0: a new one in z1 makes skew 2
        let v = verdicts(&pod("new", "web", spec.clone()), &[(0, web("w1"))]);
        assert_eq!(
            v,
            vec![
                Some(Reject::Spread),
                Some(Reject::Spread),
                None,
                Some(Reject::SpreadMissingLabel)
            ]
        );
        // ScheduleAnyway does not filter
        let soft = json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
            "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]});
        let v = verdicts(&pod("new", "web", soft), &[(0, web("w1"))]);
        assert!(v.iter().all(Option::is_none), "{v:?}");
        // minDomains 3 with 2 zones: the global minimum counts as 0
        let mut md = spec.clone();
        md["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let v = verdicts(&pod("new", "web", md), &[(2, web("w2"))]);
        assert_eq!(
            v,
            vec![
                None,
                None,
                Some(Reject::Spread),
                Some(Reject::SpreadMissingLabel)
            ]
        );
    }

    #[test]
    fn host_ports_conflict_by_protocol_ip_and_port() {
        let with_port = |n: &str, port: Value| {
            let mut p = pod(n, "x", json!({}));
            p["spec"]["containers"][0]["ports"] = json!([port]);
            p
        };
        let placed = [
            (
                0,
                with_port("p0", json!({"containerPort": 80, "hostPort": 8080})),
            ),
            (
                1,
                with_port(
                    "p1",
                    json!({"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}),
                ),
            ),
            (
                2,
                with_port(
                    "p2",
                    json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.1"}),
                ),
            ),
        ];
        let v = verdicts(
            &with_port("new", json!({"containerPort": 80, "hostPort": 8080})),
            &placed,
        );
        assert_eq!(
            v,
            vec![Some(Reject::NodePorts), None, Some(Reject::NodePorts), None]
        );
        let v = verdicts(
            &with_port(
                "new",
                json!({"containerPort": 80, "hostPort": 8080, "hostIP": "10.0.0.2"}),
            ),
            &placed,
        );
        assert_eq!(v, vec![Some(Reject::NodePorts), None, None, None]);
    }
}
