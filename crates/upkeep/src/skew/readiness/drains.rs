//! Every node's drain, as safedrain plans it, from the one listing of every
//! kind the report makes anyway: nodes, pods, PodDisruptionBudgets, volumes
//! and the controllers are taken from the pages as they go by (pods reduced
//! to [`SlimPod`](crate::drain::index::SlimPod)s), indexed once
//! ([`ClusterIndex`]), and each node is planned against that index with
//! safedrain's own [`plan_node`]. No object is listed twice and no controller
//! is fetched one at a time.

use std::collections::{BTreeMap, HashMap, HashSet};

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, ReplicaSet, ReplicaSetSpec, StatefulSet, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, PodSpec, PodStatus, ReplicationController,
    ReplicationControllerSpec,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Client;
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use serde::de::DeserializeOwned;

use super::NodeDrain;
use crate::drain::index::{IndexBuilder, slim_node};
use crate::drain::rules::{controller_ref, is_daemonset_pod, is_mirror};
use crate::drain::snapshot::{
    FoundOwner, OwnerKind, OwnerState, deployment_ref, lookup_owner, owner_kind, owner_state,
};
use crate::drain::{ClusterIndex, DrainOptions, NodePods, plan_node};
use crate::list::for_each_page;
use crate::skew::collect::api_error;

type Key = (String, String);

/// The kinds the drain plans read, listed or not yet.
const NEEDED: [&str; 3] = ["nodes", "pods", "poddisruptionbudgets.policy"];

/// Collects what the drain plans need from the pages of the report's listing.
#[derive(Debug, Default)]
pub struct DrainCollector {
    pods: IndexBuilder,
    nodes: Vec<Node>,
    pdbs: Vec<PodDisruptionBudget>,
    pvcs: Vec<PersistentVolumeClaim>,
    pvs: Vec<PersistentVolume>,
    replicasets: HashMap<Key, Controller>,
    deployments: HashMap<Key, Controller>,
    statefulsets: HashMap<Key, Controller>,
    rcs: HashMap<Key, Controller>,
    /// The uids of every other object listed (controllers of other kinds).
    uids: HashSet<String>,
    /// Which of [`NEEDED`] were listed whole.
    listed: HashSet<String>,
    /// Objects that could not be read as their kind.
    errors: Vec<String>,
}

fn typed<K: DeserializeOwned>(obj: DynamicObject) -> anyhow::Result<K> {
    Ok(serde_json::from_value(serde_json::to_value(obj)?)?)
}

/// A replicated controller as [`owner_state`] reads it: uid, owner
/// references, replicas and selector (its namespace and name are its key).
/// Not the typed object: a `ReplicaSet` or `Deployment` is over 2 KB inline
/// (every optional field of its spec and pod template), and a cluster of
/// 150,000 pods has thousands of each.
#[derive(Debug, Clone)]
struct Controller {
    uid: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    replicas: Option<i32>,
    selector: LabelSelector,
}

impl Controller {
    fn new(meta: ObjectMeta, replicas: Option<i32>, selector: LabelSelector) -> Controller {
        Controller {
            uid: meta.uid,
            owner_references: meta.owner_references,
            replicas,
            selector,
        }
    }

    /// The object's metadata as [`owner_state`] reads it.
    fn meta(&self, (ns, name): &Key) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(ns.clone()),
            uid: self.uid.clone(),
            owner_references: self.owner_references.clone(),
            ..Default::default()
        }
    }

    fn replica_set(&self, key: &Key) -> ReplicaSet {
        ReplicaSet {
            metadata: self.meta(key),
            spec: ReplicaSetSpec {
                replicas: self.replicas,
                selector: self.selector.clone(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn deployment(&self, key: &Key) -> Deployment {
        Deployment {
            metadata: self.meta(key),
            spec: DeploymentSpec {
                replicas: self.replicas,
                selector: self.selector.clone(),
                ..Default::default()
            },
            status: None,
        }
    }

    fn stateful_set(&self, key: &Key) -> StatefulSet {
        StatefulSet {
            metadata: self.meta(key),
            spec: StatefulSetSpec {
                replicas: self.replicas,
                selector: self.selector.clone(),
                ..Default::default()
            },
            status: None,
        }
    }

    /// A ReplicationController's selector is a plain label map.
    fn replication_controller(&self, key: &Key) -> ReplicationController {
        ReplicationController {
            metadata: self.meta(key),
            spec: Some(ReplicationControllerSpec {
                replicas: self.replicas,
                selector: self.selector.match_labels.clone(),
                ..Default::default()
            }),
            status: None,
        }
    }
}

fn key_of(obj: &DynamicObject) -> Key {
    (
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    )
}

impl DrainCollector {
    /// Takes what the drain plans need from one listed object of `ar`.
    pub fn offer(&mut self, ar: &ApiResource, mut obj: DynamicObject) {
        let key = key_of(&obj);
        let uid = obj.metadata.uid.clone();
        let what = format!("{} {}", ar.kind, key.1);
        let result: anyhow::Result<()> = (|| {
            match (ar.group.as_str(), ar.kind.as_str()) {
                ("", "Pod") => {
                    let spec: Option<PodSpec> = match obj.data.get_mut("spec") {
                        Some(v) => Some(serde_json::from_value(v.take())?),
                        None => None,
                    };
                    let status: Option<PodStatus> = match obj.data.get_mut("status") {
                        Some(v) => Some(serde_json::from_value(v.take())?),
                        None => None,
                    };
                    self.add_pod(Pod {
                        metadata: obj.metadata,
                        spec,
                        status,
                    });
                    return Ok(());
                }
                ("", "Event") | ("events.k8s.io", "Event") => return Ok(()),
                ("", "Node") => self.nodes.push(slim_node(typed(obj)?)),
                ("policy", "PodDisruptionBudget") => self.pdbs.push(typed(obj)?),
                ("", "PersistentVolumeClaim") => self.pvcs.push(typed(obj)?),
                ("", "PersistentVolume") => self.pvs.push(typed(obj)?),
                // The controllers: what owner_state reads, nothing else.
                ("apps", "ReplicaSet") => {
                    let rs: ReplicaSet = typed(obj)?;
                    let c = Controller::new(rs.metadata, rs.spec.replicas, rs.spec.selector);
                    self.replicasets.insert(key, c);
                }
                ("apps", "Deployment") => {
                    let d: Deployment = typed(obj)?;
                    let c = Controller::new(d.metadata, d.spec.replicas, d.spec.selector);
                    self.deployments.insert(key, c);
                }
                ("apps", "StatefulSet") => {
                    let s: StatefulSet = typed(obj)?;
                    let c = Controller::new(s.metadata, s.spec.replicas, s.spec.selector);
                    self.statefulsets.insert(key, c);
                }
                ("", "ReplicationController") => {
                    let rc: ReplicationController = typed(obj)?;
                    let spec = rc.spec.unwrap_or_default();
                    let selector = LabelSelector {
                        match_labels: spec.selector,
                        match_expressions: None,
                    };
                    self.rcs
                        .insert(key, Controller::new(rc.metadata, spec.replicas, selector));
                }
                _ => {}
            }
            if let Some(uid) = uid {
                self.uids.insert(uid);
            }
            Ok(())
        })();
        if let Err(e) = result {
            self.errors.push(format!("{what}: {e:#}"));
        }
    }

    /// Takes one listed pod (reduced at once to what the rules read).
    pub fn add_pod(&mut self, mut pod: Pod) {
        pod.metadata.managed_fields = None;
        self.pods.add_pod(pod);
    }

    /// Marks the listing of `what` (`nodes`, `pods`, `poddisruptionbudgets.policy`) complete.
    pub fn listed(&mut self, what: &str) {
        self.listed.insert(what.to_string());
    }

    /// What the controller reference of a pod in `ns` names, from the listings.
    fn found(&self, ns: &str, owner: &OwnerReference) -> FoundOwner {
        let key = (ns.to_string(), owner.name.clone());
        match owner_kind(owner) {
            OwnerKind::ReplicaSet => {
                let rs = self.replicasets.get(&key).map(|c| c.replica_set(&key));
                let deployment = rs.as_ref().and_then(deployment_ref).and_then(|d| {
                    let key = (ns.to_string(), d.name.clone());
                    self.deployments.get(&key).map(|c| c.deployment(&key))
                });
                FoundOwner::ReplicaSet {
                    rs: rs.map(Box::new),
                    deployment: deployment.map(Box::new),
                }
            }
            OwnerKind::StatefulSet => FoundOwner::StatefulSet(
                self.statefulsets
                    .get(&key)
                    .map(|c| Box::new(c.stateful_set(&key))),
            ),
            OwnerKind::ReplicationController => FoundOwner::ReplicationController(
                self.rcs
                    .get(&key)
                    .map(|c| Box::new(c.replication_controller(&key))),
            ),
            OwnerKind::Other => {
                FoundOwner::Other(self.uids.contains(&owner.uid).then(|| owner.uid.clone()))
            }
        }
    }

    /// Lists what the plans read, on its own (when the report's listing of
    /// every kind is not made): nodes, pods, PodDisruptionBudgets, volumes and
    /// the replicated controllers; controllers of other kinds (Jobs, custom
    /// ones) are looked up one by one, as safedrain does.
    pub async fn list(&mut self, client: &Client) -> anyhow::Result<()> {
        use anyhow::Context as _;
        /// Lists `K` into the collector; a kind the server does not serve
        /// (404) holds nothing, unless it is `required`.
        async fn each<K>(
            c: &mut DrainCollector,
            client: &Client,
            what: &str,
            required: bool,
        ) -> anyhow::Result<()>
        where
            K: kube::Resource<DynamicType = ()>,
        {
            let ar = ApiResource::erase::<K>(&());
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            match for_each_page(&api, &ListParams::default(), |obj| c.offer(&ar, obj)).await {
                Ok(()) => {}
                Err(kube::Error::Api(s)) if s.code == 404 && !required => {}
                Err(e) => return Err(api_error(e, &format!("list {what}"))),
            }
            c.listed(what);
            Ok(())
        }
        each::<Node>(self, client, "nodes", true).await?;
        each::<Pod>(self, client, "pods", true).await?;
        each::<PodDisruptionBudget>(self, client, "poddisruptionbudgets.policy", true).await?;
        each::<PersistentVolumeClaim>(self, client, "persistentvolumeclaims", false).await?;
        each::<PersistentVolume>(self, client, "persistentvolumes", false).await?;
        each::<ReplicaSet>(self, client, "replicasets.apps", false).await?;
        each::<Deployment>(self, client, "deployments.apps", false).await?;
        each::<StatefulSet>(self, client, "statefulsets.apps", false).await?;
        each::<ReplicationController>(self, client, "replicationcontrollers", false).await?;
        let mut others: BTreeMap<String, (String, OwnerReference)> = BTreeMap::new();
        for p in self.pods.pods() {
            if let Some(o) = p
                .controller_ref()
                .filter(|o| owner_kind(o) == OwnerKind::Other)
            {
                others
                    .entry(o.uid.clone())
                    .or_insert_with(|| (p.ns().to_string(), o.clone()));
            }
        }
        for (ns, owner) in others.values() {
            let state = lookup_owner(client, ns, owner)
                .await
                .with_context(|| format!("could not look up {} {ns}/{}", owner.kind, owner.name))?;
            if state.exists {
                self.uids.insert(owner.uid.clone());
            }
        }
        Ok(())
    }

    /// Plans the drain of every node (or only of those in `only`), in listing order.
    pub fn plan(
        mut self,
        only: Option<&[String]>,
        options: &DrainOptions,
    ) -> anyhow::Result<Vec<NodeDrain>> {
        let missing: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|k| !self.listed.contains(*k))
            .collect();
        if !missing.is_empty() {
            anyhow::bail!(
                "{} could not be listed whole (see the other unreadable entries)",
                missing.join(", ")
            );
        }
        if let Some(e) = self.errors.first() {
            anyhow::bail!("could not read {e} ({} such objects)", self.errors.len());
        }
        let taken_at = jiff::Timestamp::now();
        let pods = std::mem::take(&mut self.pods);
        let index: ClusterIndex = pods.build(
            std::mem::take(&mut self.nodes),
            std::mem::take(&mut self.pdbs),
            std::mem::take(&mut self.pvcs),
            std::mem::take(&mut self.pvs),
        );
        let mut owners_cache: HashMap<String, OwnerState> = HashMap::new();
        let mut out = Vec::with_capacity(index.nodes.len());
        for node in &index.nodes {
            let name = node.metadata.name.as_deref().unwrap_or_default();
            if only.is_some_and(|o| !o.iter().any(|n| n == name)) {
                continue;
            }
            let pods = index.pods_on(name);
            let mut owners = BTreeMap::new();
            for pod in &pods {
                let Some(owner) = controller_ref(pod) else {
                    continue;
                };
                // DaemonSet and static pods stay whatever their owner: no lookup.
                if is_mirror(pod) || is_daemonset_pod(pod) {
                    continue;
                }
                let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                let state = owners_cache
                    .entry(owner.uid.clone())
                    .or_insert_with(|| owner_state(ns, owner, self.found(ns, owner)));
                owners.insert(owner.uid.clone(), state.clone());
            }
            let plan = plan_node(
                &NodePods {
                    node,
                    pods: &pods,
                    owners: &owners,
                    taken_at,
                },
                &index,
                options,
            );
            out.push(NodeDrain::from_plan(&plan));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{DrainSnapshot, Rule, plan};
    use kube::Resource;
    use serde_json::{Value, json};

    /// A small deterministic generator (no dependency for one test).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % n
        }
    }

    struct Generated {
        nodes: Vec<Node>,
        pods: Vec<Pod>,
        pdbs: Vec<PodDisruptionBudget>,
        replicasets: Vec<ReplicaSet>,
        deployments: Vec<Deployment>,
        statefulsets: Vec<StatefulSet>,
        /// Other controllers (DaemonSets): kind, namespace, name, uid.
        others: Vec<DynamicObject>,
    }

    fn from<K: DeserializeOwned>(v: Value) -> K {
        serde_json::from_value(v).expect("valid object")
    }

    /// 24 nodes (some tainted, one cordoned, one NotReady, one small) and
    /// about 200 pods: Deployments of 1 to 9 replicas (host ports,
    /// anti-affinity, topology spread, tolerations, emptyDir), a StatefulSet,
    /// DaemonSet and mirror pods, bare and orphaned pods, finished pods, and
    /// PodDisruptionBudgets that allow, pace and never allow.
    fn cluster(seed: u64) -> Generated {
        let mut r = Lcg(seed);
        let n_nodes = 24;
        let node_name = |i: usize| format!("node-{i:02}");
        let mut nodes = Vec::new();
        for i in 0..n_nodes {
            let small = i == 5;
            let mut n = json!({
                "metadata": {"name": node_name(i), "uid": format!("node-uid-{i}"),
                             "labels": {"kubernetes.io/hostname": node_name(i), "zone": format!("z{}", i % 3)}},
                "spec": {},
                "status": {
                    "allocatable": {"cpu": if small {"500m"} else {"4"}, "memory": "8Gi", "pods": "20"},
                    "conditions": [{"type": "Ready", "status": if i == 7 {"False"} else {"True"}}],
                },
            });
            if i % 8 == 3 {
                n["spec"]["taints"] =
                    json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
            }
            if i == 9 {
                n["spec"]["unschedulable"] = json!(true);
            }
            nodes.push(from::<Node>(n));
        }
        let mut pods = Vec::new();
        let mut pdbs = Vec::new();
        let mut replicasets = Vec::new();
        let mut deployments = Vec::new();
        let mut pod_ix = 0;
        let mut pod = |ns: &str,
                       name: String,
                       node: usize,
                       labels: Value,
                       owner: Option<Value>,
                       extra: Value| {
            pod_ix += 1;
            let mut p = json!({
                "metadata": {"name": name, "namespace": ns, "uid": format!("pod-uid-{pod_ix}"), "labels": labels},
                "spec": {"nodeName": node_name(node), "containers": [{"name": "c", "image": "x",
                          "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}}}]},
                "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
            });
            if let Some(o) = owner {
                p["metadata"]["ownerReferences"] = json!([o]);
            }
            merge(&mut p, extra);
            from::<Pod>(p)
        };
        for d in 0..16 {
            let ns = if d % 2 == 0 { "team-a" } else { "team-b" };
            let name = format!("web-{d}");
            // web-2 has one replica (downtime); the others 1 to 9.
            let replicas = if d == 2 { 1 } else { 1 + r.next(9) as i32 };
            let rs_name = format!("{name}-abc");
            let labels = json!({"app": name});
            let dep_uid = format!("dep-uid-{d}");
            let rs_uid = format!("rs-uid-{d}");
            deployments.push(from::<Deployment>(json!({
                "metadata": {"name": name, "namespace": ns, "uid": dep_uid},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {}},
            })));
            replicasets.push(from::<ReplicaSet>(json!({
                "metadata": {"name": rs_name, "namespace": ns, "uid": rs_uid,
                             "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": dep_uid, "controller": true}]},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}},
            })));
            // Deployment 13's ReplicaSet is gone: its pods are orphans.
            if d == 13 {
                replicasets.pop();
            }
            let owner = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs_name, "uid": rs_uid, "controller": true});
            let cpu = ["100m", "250m", "900m", "1500m"][r.next(4) as usize];
            let mut spec = json!({"containers": [{"name": "c", "image": "x",
                                   "resources": {"requests": {"cpu": cpu, "memory": "512Mi"}}}]});
            match d % 6 {
                1 => {
                    spec["containers"][0]["ports"] =
                        json!([{"containerPort": 80, "hostPort": 8080}])
                }
                2 => {
                    spec["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": labels}}]}})
                }
                3 => {
                    spec["topologySpreadConstraints"] = json!([{"maxSkew": 1, "topologyKey": "zone",
                        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": labels}}])
                }
                4 => spec["tolerations"] = json!([{"key": "dedicated", "operator": "Exists"}]),
                5 => spec["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]),
                _ => {}
            }
            for k in 0..replicas {
                let node = r.next(n_nodes as u64) as usize;
                let mut p = pod(
                    ns,
                    format!("{rs_name}-{k}"),
                    node,
                    labels.clone(),
                    Some(owner.clone()),
                    json!({"spec": spec.clone()}),
                );
                if k == 0 && d % 5 == 4 {
                    p.status.as_mut().unwrap().conditions = Some(vec![]);
                }
                pods.push(p);
            }
            match d % 4 {
                0 => pdbs.push(from::<PodDisruptionBudget>(json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"minAvailable": replicas, "selector": {"matchLabels": labels}},
                    "status": {"disruptionsAllowed": 0, "currentHealthy": replicas, "desiredHealthy": replicas, "expectedPods": replicas},
                }))),
                1 => pdbs.push(from::<PodDisruptionBudget>(json!({
                    "metadata": {"name": name, "namespace": ns},
                    "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels}},
                    "status": {"disruptionsAllowed": 1, "currentHealthy": replicas, "desiredHealthy": replicas - 1, "expectedPods": replicas},
                }))),
                _ => {}
            }
        }
        // A StatefulSet of 3 with local data.
        let sts_labels = json!({"app": "db"});
        let statefulsets = vec![from::<StatefulSet>(json!({
            "metadata": {"name": "db", "namespace": "team-a", "uid": "sts-uid"},
            "spec": {"replicas": 3, "selector": {"matchLabels": sts_labels}, "serviceName": "db", "template": {}},
        }))];
        for k in 0..3 {
            let owner = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "uid": "sts-uid", "controller": true});
            pods.push(pod(
                "team-a",
                format!("db-{k}"),
                2 * k + 1,
                sts_labels.clone(),
                Some(owner),
                json!({"spec": {"volumes": [{"name": "data", "hostPath": {"path": "/data"}}]}}),
            ));
        }
        // DaemonSet and mirror pods on every node; a few bare and finished pods.
        let ds_owner = json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "proxy", "uid": "ds-uid", "controller": true});
        for i in 0..n_nodes {
            pods.push(pod(
                "kube-system",
                format!("proxy-{i}"),
                i,
                json!({"k8s-app": "proxy"}),
                Some(ds_owner.clone()),
                json!({}),
            ));
            if i % 6 == 0 {
                pods.push(pod(
                    "kube-system",
                    format!("etcd-{i}"),
                    i,
                    json!({}),
                    None,
                    json!({"metadata": {"annotations": {"kubernetes.io/config.mirror": "x"}}}),
                ));
            }
            if i % 7 == 2 {
                pods.push(pod(
                    "default",
                    format!("bare-{i}"),
                    i,
                    json!({}),
                    None,
                    json!({}),
                ));
            }
            if i % 5 == 1 {
                pods.push(pod(
                    "default",
                    format!("job-{i}"),
                    i,
                    json!({}),
                    None,
                    json!({"status": {"phase": "Succeeded"}}),
                ));
            }
        }
        let others = vec![from::<DynamicObject>(json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "proxy", "namespace": "kube-system", "uid": "ds-uid"},
        }))];
        Generated {
            nodes,
            pods,
            pdbs,
            replicasets,
            deployments,
            statefulsets,
            others,
        }
    }

    fn merge(into: &mut Value, extra: Value) {
        match (into, extra) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn dynamic<K: Resource<DynamicType = ()> + serde::Serialize>(
        obj: &K,
    ) -> (ApiResource, DynamicObject) {
        (
            ApiResource::erase::<K>(&()),
            from(serde_json::to_value(obj).unwrap()),
        )
    }

    /// The shared-snapshot path: every object offered once, as the report's listing does.
    fn shared(g: &Generated) -> Vec<NodeDrain> {
        let mut c = DrainCollector::default();
        let mut offer = |(ar, obj): (ApiResource, DynamicObject)| c.offer(&ar, obj);
        g.nodes.iter().map(dynamic).for_each(&mut offer);
        g.pods.iter().map(dynamic).for_each(&mut offer);
        g.pdbs.iter().map(dynamic).for_each(&mut offer);
        g.replicasets.iter().map(dynamic).for_each(&mut offer);
        g.deployments.iter().map(dynamic).for_each(&mut offer);
        g.statefulsets.iter().map(dynamic).for_each(&mut offer);
        for o in &g.others {
            let ar = ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
                "apps",
                "v1",
                "DaemonSet",
            ));
            offer((ar, o.clone()));
        }
        for k in NEEDED {
            c.listed(k);
        }
        c.plan(None, &DrainOptions::default()).expect("planned")
    }

    /// The per-node path: what `kubectl safedrain NODE --dry-run` plans for
    /// each node, its controllers looked up one by one (a GET answered from
    /// the generated objects).
    fn per_node(g: &Generated) -> Vec<NodeDrain> {
        let get =
            |ns: &str, owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
                let named = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
                             name: &str| {
                    m.namespace.as_deref() == Some(ns) && m.name.as_deref() == Some(name)
                };
                match owner_kind(owner) {
                    OwnerKind::ReplicaSet => {
                        let rs = g
                            .replicasets
                            .iter()
                            .find(|r| named(&r.metadata, &owner.name))
                            .cloned();
                        let deployment = rs.as_ref().and_then(deployment_ref).and_then(|d| {
                            g.deployments
                                .iter()
                                .find(|x| named(&x.metadata, &d.name))
                                .cloned()
                        });
                        FoundOwner::ReplicaSet {
                            rs: rs.map(Box::new),
                            deployment: deployment.map(Box::new),
                        }
                    }
                    OwnerKind::StatefulSet => FoundOwner::StatefulSet(
                        g.statefulsets
                            .iter()
                            .find(|s| named(&s.metadata, &owner.name))
                            .cloned()
                            .map(Box::new),
                    ),
                    OwnerKind::ReplicationController => FoundOwner::ReplicationController(None),
                    OwnerKind::Other => FoundOwner::Other(
                        g.others
                            .iter()
                            .find(|o| named(&o.metadata, &owner.name))
                            .and_then(|o| o.metadata.uid.clone()),
                    ),
                }
            };
        g.nodes
            .iter()
            .map(|node| {
                let name = node.metadata.name.as_deref().unwrap();
                let pods: Vec<Pod> = g
                    .pods
                    .iter()
                    .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(name))
                    .cloned()
                    .collect();
                let mut owners = BTreeMap::new();
                for p in &pods {
                    let Some(o) = controller_ref(p) else { continue };
                    if is_mirror(p) || is_daemonset_pod(p) {
                        continue;
                    }
                    let ns = p.metadata.namespace.as_deref().unwrap();
                    owners.insert(o.uid.clone(), owner_state(ns, o, get(ns, o)));
                }
                let snapshot = DrainSnapshot {
                    node: node.clone(),
                    pods,
                    nodes: g.nodes.clone(),
                    cluster_pods: g.pods.clone(),
                    pdbs: g.pdbs.clone(),
                    taken_at: jiff::Timestamp::now(),
                    owners,
                    ..Default::default()
                };
                NodeDrain::from_plan(&plan(&snapshot, &DrainOptions::default()))
            })
            .collect()
    }

    #[test]
    fn shared_snapshot_verdicts_equal_per_node_plans() {
        for seed in [1, 7, 42] {
            let g = cluster(seed);
            let expected = per_node(&g);
            assert_eq!(shared(&g), expected, "seed {seed}");
            // The cluster exercises the rules: blockers of several kinds and warnings.
            let rules: HashSet<Rule> = expected
                .iter()
                .flat_map(|d| d.blockers.iter().chain(&d.warnings))
                .map(|f| f.rule)
                .collect();
            for r in [
                Rule::Unmanaged,
                Rule::OrphanedController,
                Rule::LocalStorage,
                Rule::PdbNeverAllows,
                Rule::Downtime,
            ] {
                assert!(
                    rules.contains(&r),
                    "seed {seed}: no {r:?} finding in {rules:?}"
                );
            }
            assert!(
                expected.iter().any(|d| d.blockers.is_empty()),
                "seed {seed}: some node must be drainable"
            );
        }
    }

    #[test]
    fn a_pod_that_fits_nowhere_is_found_by_both_paths() {
        let mut g = cluster(3);
        // Fill every node but node-00: node-00's big pod has nowhere to go.
        let big = json!({"spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "3900m"}}}]}});
        let mut p = g
            .pods
            .iter()
            .find(|p| p.metadata.name.as_deref() == Some("web-0-abc-0"))
            .unwrap()
            .clone();
        let mut v = serde_json::to_value(&p).unwrap();
        merge(&mut v, big);
        v["spec"]["nodeName"] = json!("node-00");
        v["metadata"]["name"] = json!("web-0-abc-big");
        p = from(v);
        g.pods.push(p);
        let expected = per_node(&g);
        assert_eq!(shared(&g), expected);
        let node0 = expected.iter().find(|d| d.node == "node-00").unwrap();
        assert!(
            node0.blockers.iter().any(|f| f.rule == Rule::NoCapacity),
            "{node0:?}"
        );
    }
}
