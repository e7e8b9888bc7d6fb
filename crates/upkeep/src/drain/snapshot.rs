//! What the plan needs to know, gathered once: the node, its pods, every
//! node, every pod (for free capacity and where replicas run), the PDBs, and
//! the owners of the node's pods (do they exist, which workload, how many
//! replicas).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Node, PersistentVolume, PersistentVolumeClaim, Pod, ReplicationController,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Resource};
use serde::{Deserialize, Serialize};

use super::rules::{controller_ref, is_daemonset_pod, is_mirror};
use crate::list::list_all;

/// A replicated workload: what must be whole again after the drain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// `Deployment`, `ReplicaSet`, `StatefulSet` or `ReplicationController`.
    pub kind: String,
    pub namespace: String,
    pub name: String,
    /// Desired replicas (`spec.replicas`, 1 when unset).
    pub replicas: i32,
    /// Its pod selector in `-l` form.
    pub selector: String,
    #[serde(skip)]
    pub label_selector: LabelSelector,
}

impl Workload {
    /// `Deployment/web`.
    pub fn id(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// The controller of a pod on the node, as looked up in the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct OwnerState {
    pub namespace: String,
    pub kind: String,
    pub name: String,
    /// The uid the pod's ownerRef names.
    pub uid: String,
    /// An object of that name and uid exists (a same-name object with
    /// another uid does not count).
    pub exists: bool,
    /// The replicated workload at the top (the Deployment above a ReplicaSet).
    pub workload: Option<Workload>,
}

/// The cluster as the drain rules see it.
#[derive(Debug, Clone, Default)]
pub struct DrainSnapshot {
    pub node: Node,
    /// The node's pods (after `--pod-selector`).
    pub pods: Vec<Pod>,
    /// Every node of the cluster.
    pub nodes: Vec<Node>,
    /// Every pod of the cluster.
    pub cluster_pods: Vec<Pod>,
    pub pdbs: Vec<PodDisruptionBudget>,
    /// Every PersistentVolumeClaim and PersistentVolume (volume node affinity).
    pub pvcs: Vec<PersistentVolumeClaim>,
    pub pvs: Vec<PersistentVolume>,
    /// When it was gathered (the NotReady countdown counts from it).
    pub taken_at: jiff::Timestamp,
    /// Keyed by owner uid.
    pub owners: BTreeMap<String, OwnerState>,
}

impl DrainSnapshot {
    pub fn node_name(&self) -> &str {
        self.node.metadata.name.as_deref().unwrap_or_default()
    }
}

/// Gathers the snapshot for draining `node`. `pod_selector` is the
/// `--pod-selector` label selector (kubectl drain applies it to the list).
pub async fn gather(
    client: &Client,
    node: &str,
    pod_selector: Option<&str>,
) -> anyhow::Result<DrainSnapshot> {
    let nodes_api: Api<Node> = Api::all(client.clone());
    let nodes = list_all(&nodes_api, &ListParams::default())
        .await
        .context("could not list the nodes")?;
    let this = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(node))
        .cloned()
        .with_context(|| {
            let known: Vec<_> = nodes
                .iter()
                .filter_map(|n| n.metadata.name.as_deref())
                .collect();
            format!(
                "node {node:?} not found (nodes: {}); check the name with `kubectl get nodes`",
                known.join(", ")
            )
        })?;
    let pods_api: Api<Pod> = Api::all(client.clone());
    let cluster_pods = list_all(&pods_api, &ListParams::default())
        .await
        .context("could not list the pods")?;
    let mut params = ListParams::default().fields(&format!("spec.nodeName={node}"));
    if let Some(sel) = pod_selector.filter(|s| !s.trim().is_empty()) {
        parse_selector(sel).context("--pod-selector")?;
        params = params.labels(sel);
    }
    let pods = list_all(&pods_api, &params)
        .await
        .with_context(|| format!("could not list the pods on {node}"))?;
    let pdbs = list_all(
        &Api::<PodDisruptionBudget>::all(client.clone()),
        &ListParams::default(),
    )
    .await
    .context("could not list the PodDisruptionBudgets")?;
    let pvcs = list_all(
        &Api::<PersistentVolumeClaim>::all(client.clone()),
        &ListParams::default(),
    )
    .await
    .context("could not list the PersistentVolumeClaims")?;
    let pvs = list_all(
        &Api::<PersistentVolume>::all(client.clone()),
        &ListParams::default(),
    )
    .await
    .context("could not list the PersistentVolumes")?;

    let mut owners = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for pod in &pods {
        let Some(owner) = controller_ref(pod) else {
            continue;
        };
        // DaemonSet and static pods stay whatever their owner: no lookup.
        if is_mirror(pod) || is_daemonset_pod(pod) || !seen.insert(owner.uid.clone()) {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let state = lookup_owner(client, &ns, owner)
            .await
            .with_context(|| format!("could not look up {} {ns}/{}", owner.kind, owner.name))?;
        owners.insert(owner.uid.clone(), state);
    }
    Ok(DrainSnapshot {
        node: this,
        pods,
        nodes,
        cluster_pods,
        pdbs,
        pvcs,
        pvs,
        taken_at: jiff::Timestamp::now(),
        owners,
    })
}

/// Parses a `-l` style selector (`a=b,c!=d,e in (x,y),f,!g`) into a
/// LabelSelector, with the API server's own grammar ([`crate::labels`]).
pub fn parse_selector(text: &str) -> anyhow::Result<LabelSelector> {
    use crate::labels::Op;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement as Req;
    let reqs = crate::labels::parse(text)
        .map_err(|e| anyhow::anyhow!("could not parse the label selector {text:?}: {e}"))?;
    let mut labels = BTreeMap::new();
    let mut exprs = Vec::new();
    for r in reqs {
        let operator = match r.op {
            Op::Equals => {
                labels.insert(r.key, r.values.into_iter().next().unwrap_or_default());
                continue;
            }
            Op::NotEquals | Op::NotIn => "NotIn",
            Op::In => "In",
            Op::Exists => "Exists",
            Op::DoesNotExist => "DoesNotExist",
            Op::GreaterThan | Op::LessThan => anyhow::bail!(
                "the label selector {text:?} compares numbers (> or <), which a pod selector cannot express"
            ),
        };
        exprs.push(Req {
            key: r.key,
            operator: operator.to_string(),
            values: Some(r.values),
        });
    }
    Ok(LabelSelector {
        match_labels: Some(labels),
        match_expressions: Some(exprs),
    })
}

fn replicated(
    kind: &str,
    ns: &str,
    name: &str,
    replicas: Option<i32>,
    selector: Option<LabelSelector>,
) -> Workload {
    let label_selector = selector.unwrap_or_default();
    Workload {
        kind: kind.to_string(),
        namespace: ns.to_string(),
        name: name.to_string(),
        replicas: replicas.unwrap_or(1),
        selector: super::selector::label_selector_string(&label_selector),
        label_selector,
    }
}

fn same_uid<K: Resource>(obj: &Option<Box<K>>, uid: &str) -> bool {
    obj.as_ref()
        .is_some_and(|o| o.meta().uid.as_deref() == Some(uid))
}

/// Which lookup a controller reference needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    ReplicaSet,
    StatefulSet,
    ReplicationController,
    /// Jobs, DaemonSets and any other controller: existence only.
    Other,
}

pub fn owner_kind(owner: &OwnerReference) -> OwnerKind {
    let group = owner.api_version.split('/').next().unwrap_or_default();
    match (group, owner.kind.as_str()) {
        ("apps", "ReplicaSet") => OwnerKind::ReplicaSet,
        ("apps", "StatefulSet") => OwnerKind::StatefulSet,
        ("v1", "ReplicationController") => OwnerKind::ReplicationController,
        _ => OwnerKind::Other,
    }
}

/// The Deployment a ReplicaSet's controller reference names.
pub fn deployment_ref(rs: &ReplicaSet) -> Option<&OwnerReference> {
    rs.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true) && o.kind == "Deployment")
}

/// What the cluster holds under a controller reference's kind and name (a
/// GET, or a listing): for a ReplicaSet also the Deployment of the name its
/// own controller reference gives.
#[derive(Debug, Clone)]
pub enum FoundOwner {
    ReplicaSet {
        rs: Option<Box<ReplicaSet>>,
        deployment: Option<Box<Deployment>>,
    },
    StatefulSet(Option<Box<StatefulSet>>),
    ReplicationController(Option<Box<ReplicationController>>),
    /// The uid of the object of that kind and name.
    Other(Option<String>),
}

/// Decides one controller from what was found: does it exist (same uid),
/// and which replicated workload sits on top of it.
pub fn owner_state(ns: &str, owner: &OwnerReference, found: FoundOwner) -> OwnerState {
    let mut state = OwnerState {
        namespace: ns.to_string(),
        kind: owner.kind.clone(),
        name: owner.name.clone(),
        uid: owner.uid.clone(),
        exists: false,
        workload: None,
    };
    match found {
        FoundOwner::ReplicaSet { rs, deployment } => {
            state.exists = same_uid(&rs, &owner.uid);
            if let Some(rs) = rs.filter(|_| state.exists) {
                let deploy = deployment.filter(|dep| {
                    deployment_ref(&rs)
                        .is_some_and(|d| dep.metadata.uid.as_deref() == Some(d.uid.as_str()))
                });
                let spec = rs.spec;
                state.workload = Some(match deploy {
                    Some(d) => {
                        let ds = d.spec;
                        replicated(
                            "Deployment",
                            ns,
                            d.metadata.name.as_deref().unwrap_or_default(),
                            ds.replicas,
                            Some(ds.selector),
                        )
                    }
                    None => replicated(
                        "ReplicaSet",
                        ns,
                        &owner.name,
                        spec.replicas,
                        Some(spec.selector),
                    ),
                });
            }
        }
        FoundOwner::StatefulSet(sts) => {
            state.exists = same_uid(&sts, &owner.uid);
            if let Some(s) = sts.filter(|_| state.exists) {
                let spec = s.spec;
                state.workload = Some(replicated(
                    "StatefulSet",
                    ns,
                    &owner.name,
                    spec.replicas,
                    Some(spec.selector),
                ));
            }
        }
        FoundOwner::ReplicationController(rc) => {
            state.exists = same_uid(&rc, &owner.uid);
            if let Some(rc) = rc.filter(|_| state.exists) {
                let spec = rc.spec.unwrap_or_default();
                let selector = LabelSelector {
                    match_labels: spec.selector,
                    match_expressions: None,
                };
                state.workload = Some(replicated(
                    "ReplicationController",
                    ns,
                    &owner.name,
                    spec.replicas,
                    Some(selector),
                ));
            }
        }
        FoundOwner::Other(uid) => state.exists = uid.as_deref() == Some(owner.uid.as_str()),
    }
    state
}

/// Looks up one controller (GETs) and decides it with [`owner_state`].
pub async fn lookup_owner(
    client: &Client,
    ns: &str,
    owner: &OwnerReference,
) -> anyhow::Result<OwnerState> {
    let found = match owner_kind(owner) {
        OwnerKind::ReplicaSet => {
            let rs = Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?;
            let deployment = match rs.as_ref().and_then(deployment_ref) {
                Some(d) => {
                    Api::<Deployment>::namespaced(client.clone(), ns)
                        .get_opt(&d.name)
                        .await?
                }
                None => None,
            };
            FoundOwner::ReplicaSet {
                rs: rs.map(Box::new),
                deployment: deployment.map(Box::new),
            }
        }
        OwnerKind::StatefulSet => FoundOwner::StatefulSet(
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?
                .map(Box::new),
        ),
        OwnerKind::ReplicationController => FoundOwner::ReplicationController(
            Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get_opt(&owner.name)
                .await?
                .map(Box::new),
        ),
        OwnerKind::Other => {
            let (group, version) = match owner.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", owner.api_version.as_str()),
            };
            let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
            let api: Api<DynamicObject> =
                Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk));
            let obj = match api.get_opt(&owner.name).await {
                Ok(obj) => obj,
                // An unknown resource type (a CRD that was removed): gone.
                Err(kube::Error::Api(s)) if s.code == 404 => None,
                Err(e) => return Err(e.into()),
            };
            FoundOwner::Other(obj.and_then(|o| o.metadata.uid))
        }
    };
    Ok(owner_state(ns, owner, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::selector::{label_selector_matches, label_selector_string};

    #[test]
    fn parses_kubectl_selectors() {
        let s = parse_selector("app=web,tier!=db,zone in (a, b),gpu,!spot").unwrap();
        assert_eq!(
            label_selector_string(&s),
            "app=web,tier notin (db),zone in (a,b),gpu,!spot"
        );
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert!(label_selector_matches(
            &s,
            &labels(&[("app", "web"), ("zone", "a"), ("gpu", "1")])
        ));
        assert!(!label_selector_matches(
            &s,
            &labels(&[("app", "web"), ("zone", "c"), ("gpu", "1")])
        ));
        assert!(parse_selector("a in b").is_err());
    }
}
