//! The cluster-wide half of a drain plan, built once: every node with its
//! free capacity, every pod in a slim form, the PodDisruptionBudgets with the
//! number of pods each selects, and indexes by node and by namespace and
//! label set. One node's plan ([`super::plan_node`]) reads it without
//! rescanning the cluster, so the plans of every node of a large cluster
//! (the upgrade readiness report) share one listing and one index.
//!
//! A [`SlimPod`] keeps only the fields the drain rules read; pods of one
//! template share their spec, labels and owner references (interned), so
//! 150,000 pods take tens of megabytes, not gigabytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Node, NodeCondition, NodeSpec, NodeStatus, PersistentVolume,
    PersistentVolumeClaim, Pod, PodCondition, PodSpec, PodStatus, ResourceRequirements, Volume,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, ObjectMeta, OwnerReference, Time,
};

use super::capacity::{Resources, allocatable, pod_requests};
use super::rules::{
    DO_NOT_DISRUPT, MIRROR, SAFE_TO_EVICT, SAFE_TO_EVICT_LOCAL_VOLUMES, is_finished, is_ready,
    is_terminating,
};
use super::selector::label_selector_matches;

pub type Labels = BTreeMap<String, String>;

/// The annotations a drain rule reads; the others are dropped.
const KEPT_ANNOTATIONS: [&str; 4] = [
    MIRROR,
    SAFE_TO_EVICT,
    SAFE_TO_EVICT_LOCAL_VOLUMES,
    DO_NOT_DISRUPT,
];

/// A pod reduced to what the drain rules read. [`SlimPod::to_pod`] gives the
/// rules a [`Pod`] again, so each rule stays written once, over `Pod`.
///
/// Kept small on purpose: the report holds one for every pod of the cluster
/// (104 bytes and one allocation of its own, for the name and uid: every
/// other field is shared with the pods of the same template or state).
#[derive(Debug, Clone)]
pub struct SlimPod {
    /// The name, then the uid (when the pod has one): one allocation, not two.
    name_uid: Box<str>,
    /// Where the name ends in `name_uid`.
    name_len: u32,
    has_uid: bool,
    pub finished: bool,
    pub terminating: bool,
    pub ready: bool,
    pub namespace: Option<Arc<str>>,
    pub node: Option<Arc<str>>,
    pub labels: Arc<Labels>,
    annotations: Option<Arc<Labels>>,
    owner_references: Option<Arc<Vec<OwnerReference>>>,
    deletion_timestamp: Option<Box<Time>>,
    /// The spec without `nodeName` (that is [`SlimPod::node`]), shared by the
    /// pods of one template.
    pub spec: Arc<PodSpec>,
    /// The phase and the Ready condition's status, shared by the pods in the
    /// same state.
    status: Arc<SlimStatus>,
}

/// A pod's phase and its Ready condition's status.
#[derive(Debug, Default, Clone, PartialEq, Eq, Hash)]
struct SlimStatus {
    phase: Option<String>,
    ready: Option<String>,
}

impl SlimPod {
    pub fn name(&self) -> &str {
        &self.name_uid[..self.name_len as usize]
    }

    pub fn uid(&self) -> Option<&str> {
        self.has_uid
            .then(|| &self.name_uid[self.name_len as usize..])
    }

    /// `namespace/name`, as [`super::rules::pod_key`].
    pub fn key(&self) -> String {
        format!("{}/{}", self.ns(), self.name())
    }

    /// The namespace, `default` when unset (as [`super::rules::pod_key`]).
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("default")
    }

    /// The pod the rules read: the kept fields, nothing else.
    pub fn to_pod(&self) -> Pod {
        let mut spec = (*self.spec).clone();
        spec.node_name = self.node.as_deref().map(str::to_string);
        Pod {
            metadata: ObjectMeta {
                name: Some(self.name().to_string()),
                namespace: self.namespace.as_deref().map(str::to_string),
                uid: self.uid().map(str::to_string),
                labels: Some((*self.labels).clone()).filter(|l| !l.is_empty()),
                annotations: self.annotations.as_deref().cloned(),
                owner_references: self.owner_references.as_deref().cloned(),
                deletion_timestamp: self.deletion_timestamp.as_deref().cloned(),
                ..Default::default()
            },
            spec: Some(spec),
            status: Some(PodStatus {
                phase: self.status.phase.clone(),
                conditions: self.status.ready.as_ref().map(|s| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: s.clone(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        }
    }

    /// Its controller reference, as [`super::rules::controller_ref`] reads it.
    pub fn controller_ref(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .flat_map(|o| o.iter())
            .find(|o| o.controller == Some(true))
    }

    /// Its required pod anti-affinity terms (InterPodAffinity).
    pub fn has_required_anti_affinity(&self) -> bool {
        self.spec
            .affinity
            .as_ref()
            .and_then(|a| a.pod_anti_affinity.as_ref())
            .and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .is_some_and(|t| !t.is_empty())
    }
}

/// Shares equal specs, label sets, owner references and strings between pods.
#[derive(Debug, Default)]
pub struct Interner {
    specs: HashMap<String, (Arc<PodSpec>, Arc<Resources>)>,
    labels: HashMap<Labels, Arc<Labels>>,
    owners: HashMap<String, Arc<Vec<OwnerReference>>>,
    strs: HashMap<String, Arc<str>>,
    statuses: HashMap<SlimStatus, Arc<SlimStatus>>,
}

impl Interner {
    fn str(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.strs.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.strs.insert(s.to_string(), a.clone());
        a
    }

    /// Reduces `pod` to a [`SlimPod`] and its effective requests.
    pub fn slim(&mut self, pod: Pod) -> (SlimPod, Arc<Resources>) {
        let finished = is_finished(&pod);
        let terminating = is_terminating(&pod);
        let ready = is_ready(&pod);
        let Pod {
            metadata,
            spec,
            status,
        } = pod;
        let mut spec = strip_spec(spec.unwrap_or_default());
        let node = spec.node_name.take().map(|n| self.str(&n));
        let key = serde_json::to_string(&spec).unwrap_or_default();
        let (spec, requests) = match self.specs.get(&key) {
            Some(s) => s.clone(),
            None => {
                let requests = Arc::new(pod_requests(&Pod {
                    spec: Some(spec.clone()),
                    ..Default::default()
                }));
                let s = (Arc::new(spec), requests);
                self.specs.insert(key, s.clone());
                s
            }
        };
        let labels = metadata.labels.unwrap_or_default();
        let labels = match self.labels.get(&labels) {
            Some(l) => l.clone(),
            None => {
                let l = Arc::new(labels.clone());
                self.labels.insert(labels, l.clone());
                l
            }
        };
        let annotations: Labels = metadata
            .annotations
            .unwrap_or_default()
            .into_iter()
            .filter(|(k, _)| KEPT_ANNOTATIONS.contains(&k.as_str()))
            .collect();
        let owner_references = metadata.owner_references.map(|o| {
            let key = serde_json::to_string(&o).unwrap_or_default();
            self.owners
                .entry(key)
                .or_insert_with(|| Arc::new(o))
                .clone()
        });
        let status = status.unwrap_or_default();
        let status = SlimStatus {
            ready: status
                .conditions
                .into_iter()
                .flatten()
                .find(|c| c.type_ == "Ready")
                .map(|c| c.status),
            phase: status.phase,
        };
        let status = self
            .statuses
            .entry(status)
            .or_insert_with_key(|s| Arc::new(s.clone()))
            .clone();
        let mut name_uid = metadata.name.unwrap_or_default();
        let name_len = u32::try_from(name_uid.len()).expect("a name shorter than 4 GiB");
        let has_uid = metadata.uid.is_some();
        name_uid.push_str(metadata.uid.as_deref().unwrap_or_default());
        let slim = SlimPod {
            name_uid: name_uid.into_boxed_str(),
            name_len,
            has_uid,
            finished,
            terminating,
            ready,
            namespace: metadata.namespace.map(|n| self.str(&n)),
            node,
            labels,
            annotations: (!annotations.is_empty()).then(|| Arc::new(annotations)),
            owner_references,
            deletion_timestamp: metadata.deletion_timestamp.map(Box::new),
            spec,
            status,
        };
        (slim, requests)
    }
}

/// The spec fields the drain rules and the capacity filters read.
fn strip_spec(spec: PodSpec) -> PodSpec {
    let container = |c: Container| Container {
        name: c.name,
        resources: c.resources.map(|r| ResourceRequirements {
            requests: r.requests,
            ..Default::default()
        }),
        ports: c.ports.map(|ports| {
            ports
                .into_iter()
                .filter(|p| p.host_port.is_some_and(|h| h > 0))
                .map(|p| ContainerPort {
                    container_port: p.container_port,
                    host_ip: p.host_ip,
                    host_port: p.host_port,
                    protocol: p.protocol,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    };
    PodSpec {
        containers: spec.containers.into_iter().map(container).collect(),
        init_containers: spec
            .init_containers
            .map(|c| c.into_iter().map(container).collect()),
        overhead: spec.overhead,
        tolerations: spec.tolerations,
        node_selector: spec.node_selector,
        node_name: spec.node_name,
        affinity: spec.affinity,
        topology_spread_constraints: spec.topology_spread_constraints,
        priority_class_name: spec.priority_class_name,
        volumes: spec.volumes.map(|v| {
            v.into_iter()
                .filter(|v| {
                    v.empty_dir.is_some()
                        || v.host_path.is_some()
                        || v.persistent_volume_claim.is_some()
                })
                .map(|v| Volume {
                    name: v.name,
                    empty_dir: v.empty_dir,
                    host_path: v.host_path,
                    persistent_volume_claim: v.persistent_volume_claim,
                    ..Default::default()
                })
                .collect()
        }),
        ..Default::default()
    }
}

/// A node reduced to what the drain rules read (name, labels, taints,
/// unschedulable, allocatable, the Ready condition's status; the capacity
/// only when there is no allocatable, as [`allocatable`] reads it).
pub fn slim_node(node: Node) -> Node {
    let Node {
        metadata,
        spec,
        status,
    } = node;
    Node {
        metadata: ObjectMeta {
            name: metadata.name,
            labels: metadata.labels,
            uid: metadata.uid,
            ..Default::default()
        },
        spec: spec.map(|s| NodeSpec {
            taints: s.taints,
            unschedulable: s.unschedulable,
            ..Default::default()
        }),
        status: status.map(|s| NodeStatus {
            capacity: s.capacity.filter(|_| s.allocatable.is_none()),
            allocatable: s.allocatable,
            conditions: s.conditions.map(|c| {
                c.into_iter()
                    .filter(|c| c.type_ == "Ready")
                    .map(|c| NodeCondition {
                        type_: c.type_,
                        status: c.status,
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        }),
    }
}

/// Pods of one namespace with one label set.
#[derive(Debug)]
struct Group {
    labels: Arc<Labels>,
    pods: Vec<u32>,
}

/// The cluster as every node's drain plan sees it; see the module docs.
#[derive(Debug, Default)]
pub struct ClusterIndex {
    pub nodes: Vec<Node>,
    node_ix: HashMap<String, usize>,
    pub pods: Vec<SlimPod>,
    by_node: HashMap<Arc<str>, Vec<u32>>,
    groups: Vec<Group>,
    groups_by_ns: HashMap<Arc<str>, Vec<u32>>,
    /// Groups by namespace and one of their labels (`ns`, `key`, `value`).
    groups_by_label: HashMap<(Arc<str>, String, String), Vec<u32>>,
    /// Unfinished, not terminating pods with required anti-affinity terms.
    anti: Vec<u32>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// Per PDB (same order): the unfinished pods it selects.
    pdb_selected: Vec<i32>,
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub pvs: Vec<PersistentVolume>,
    /// Per node (same order): allocatable minus the requests of the
    /// unfinished pods bound to it.
    free: Vec<Resources>,
    /// Node indexes by free CPU, most first (ties in node order).
    by_score: Vec<u32>,
}

/// Collects pods into a [`ClusterIndex`] one at a time (a list page at a time).
#[derive(Debug, Default)]
pub struct IndexBuilder {
    interner: Interner,
    pods: Vec<SlimPod>,
    requests: Vec<Arc<Resources>>,
}

impl IndexBuilder {
    /// The pods added so far.
    pub fn pods(&self) -> &[SlimPod] {
        &self.pods
    }

    pub fn add_pod(&mut self, pod: Pod) {
        let (slim, requests) = self.interner.slim(pod);
        self.pods.push(slim);
        self.requests.push(requests);
    }

    pub fn build(
        self,
        nodes: Vec<Node>,
        pdbs: Vec<PodDisruptionBudget>,
        pvcs: Vec<PersistentVolumeClaim>,
        pvs: Vec<PersistentVolume>,
    ) -> ClusterIndex {
        let IndexBuilder {
            mut interner,
            mut pods,
            requests,
        } = self;
        pods.shrink_to_fit();
        let node_ix: HashMap<String, usize> = nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| Some((n.metadata.name.clone()?, i)))
            .collect();
        let mut free: Vec<Resources> = nodes.iter().map(allocatable).collect();
        let mut by_node: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        let mut group_ix: HashMap<(Arc<str>, *const Labels), u32> = HashMap::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut groups_by_ns: HashMap<Arc<str>, Vec<u32>> = HashMap::new();
        let mut groups_by_label: HashMap<(Arc<str>, String, String), Vec<u32>> = HashMap::new();
        let mut anti = Vec::new();
        for (i, (p, req)) in pods.iter().zip(&requests).enumerate() {
            let i = i as u32;
            if let Some(n) = &p.node {
                by_node.entry(n.clone()).or_default().push(i);
                if !p.finished
                    && let Some(&ni) = node_ix.get(&**n)
                {
                    for (k, v) in req.iter() {
                        *free[ni].entry(k.clone()).or_default() -= v;
                    }
                }
            }
            let ns = p.namespace.clone().unwrap_or_else(|| interner.str(""));
            let g = *group_ix
                .entry((ns.clone(), Arc::as_ptr(&p.labels)))
                .or_insert_with(|| {
                    groups.push(Group {
                        labels: p.labels.clone(),
                        pods: Vec::new(),
                    });
                    let g = (groups.len() - 1) as u32;
                    for (k, v) in p.labels.iter() {
                        groups_by_label
                            .entry((ns.clone(), k.clone(), v.clone()))
                            .or_default()
                            .push(g);
                    }
                    groups_by_ns.entry(ns).or_default().push(g);
                    g
                });
            groups[g as usize].pods.push(i);
            if !p.finished && !p.terminating && p.has_required_anti_affinity() {
                anti.push(i);
            }
        }
        let mut by_score: Vec<u32> = (0..nodes.len() as u32).collect();
        by_score.sort_by_key(|&i| std::cmp::Reverse(cpu(&free[i as usize])));
        let mut index = ClusterIndex {
            nodes,
            node_ix,
            pods,
            by_node,
            groups,
            groups_by_ns,
            groups_by_label,
            anti,
            pdbs,
            pdb_selected: Vec::new(),
            pvcs,
            pvs,
            free,
            by_score,
        };
        index.pdb_selected = index
            .pdbs
            .iter()
            .map(
                |b| match b.spec.as_ref().and_then(|s| s.selector.as_ref()) {
                    // policy/v1: no selector selects no pod.
                    None => 0,
                    Some(sel) => index
                        .selected(b.metadata.namespace.as_deref().unwrap_or_default(), sel)
                        .filter(|p| !p.finished)
                        .count() as i32,
                },
            )
            .collect();
        index
    }
}

pub(crate) fn cpu(r: &Resources) -> i128 {
    r.get("cpu").copied().unwrap_or(0)
}

impl ClusterIndex {
    /// The index of a whole [`super::DrainSnapshot`]'s cluster (safedrain: one node).
    pub fn of(
        nodes: &[Node],
        pods: &[Pod],
        pdbs: &[PodDisruptionBudget],
        pvcs: &[PersistentVolumeClaim],
        pvs: &[PersistentVolume],
    ) -> ClusterIndex {
        let mut b = IndexBuilder::default();
        for p in pods {
            b.add_pod(p.clone());
        }
        b.build(nodes.to_vec(), pdbs.to_vec(), pvcs.to_vec(), pvs.to_vec())
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.node_ix.get(name).map(|&i| &self.nodes[i])
    }

    /// The pods bound to `node`, as the rules read them.
    pub fn pods_on(&self, node: &str) -> Vec<Pod> {
        self.bound_to(node).map(SlimPod::to_pod).collect()
    }

    pub(crate) fn bound_to<'a>(&'a self, node: &str) -> impl Iterator<Item = &'a SlimPod> + 'a {
        self.by_node
            .get(node)
            .into_iter()
            .flatten()
            .map(|&i| &self.pods[i as usize])
    }

    /// The pods of namespace `ns` that `selector` selects.
    pub fn selected<'a>(
        &'a self,
        ns: &str,
        selector: &'a LabelSelector,
    ) -> impl Iterator<Item = &'a SlimPod> + 'a {
        // A required label narrows the candidates to the groups carrying it;
        // the whole selector is still matched against each.
        let candidates = match selector.match_labels.as_ref().and_then(|m| m.iter().next()) {
            Some((k, v)) => self
                .groups_by_label
                .get(&(Arc::from(ns), k.clone(), v.clone())),
            None => self.groups_by_ns.get(ns),
        };
        candidates
            .into_iter()
            .flatten()
            .map(|&g| &self.groups[g as usize])
            .filter(|g| label_selector_matches(selector, &g.labels))
            .flat_map(|g| g.pods.iter().map(|&i| &self.pods[i as usize]))
    }

    /// How many unfinished pods of the cluster the PDB at `pdb` (an index
    /// into [`ClusterIndex::pdbs`]) selects.
    pub fn pdb_selected(&self, pdb: usize) -> i32 {
        self.pdb_selected[pdb]
    }

    pub(crate) fn anti_affinity_pods(&self) -> impl Iterator<Item = &SlimPod> {
        self.anti.iter().map(|&i| &self.pods[i as usize])
    }

    pub(crate) fn free(&self, node: usize) -> &Resources {
        &self.free[node]
    }

    pub(crate) fn by_score(&self) -> &[u32] {
        &self.by_score
    }
}
