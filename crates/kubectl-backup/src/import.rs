//! `kubectl backup resources restore DIR`: applies an export back.
//!
//! The order is velero's (`pkg/cmd/server/config/config.go`
//! `defaultRestorePriorities`: CRDs, namespaces, storage, service accounts,
//! secrets, config maps, limit ranges, pods, replica sets, endpoints,
//! services), then every other cluster-scoped type, then every other
//! namespaced type. What a controller recreates is left to it, what cannot
//! be restored at all is named (velero's `nonRestorableResources` in
//! `pkg/restore/restore.go`), the server checks every object with a dry run
//! before anything is created, and existing objects are left alone unless
//! `--overwrite`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use kube::Client;
use kube::api::{Api, DynamicObject, PostParams};
use serde::Serialize;
use serde_json::Value;
use upkeep::output::Printer;

use crate::export::{self, ResourceType};

/// velero's high restore priorities, as `resource.group`.
const PRIORITIES: [&str; 16] = [
    "customresourcedefinitions.apiextensions.k8s.io",
    "namespaces",
    "storageclasses.storage.k8s.io",
    "volumesnapshotclasses.snapshot.storage.k8s.io",
    "volumesnapshotcontents.snapshot.storage.k8s.io",
    "volumesnapshots.snapshot.storage.k8s.io",
    "persistentvolumes",
    "persistentvolumeclaims",
    "serviceaccounts",
    "secrets",
    "configmaps",
    "limitranges",
    "pods",
    "replicasets.apps",
    "endpoints",
    "services",
];

/// velero's `nonRestorableResources` (those that exist in a plain cluster):
/// each registers or records itself.
const NOT_RESTORABLE: [(&str, &str); 5] = [
    ("nodes", "a node registers itself (its kubelet)"),
    (
        "events",
        "events are recorded by the components that emit them",
    ),
    (
        "events.events.k8s.io",
        "events are recorded by the components that emit them",
    ),
    (
        "csinodes.storage.k8s.io",
        "each kubelet publishes its CSINode",
    ),
    (
        "volumeattachments.storage.k8s.io",
        "the attach/detach controller creates them",
    ),
];

/// Sort key of a resource type in the restore order.
pub fn order_key(rt: &ResourceType) -> (u8, usize, String) {
    let name = rt.display();
    match PRIORITIES.iter().position(|p| *p == name) {
        Some(i) => (0, i, name),
        None if !rt.namespaced => (1, 0, name),
        None => (2, 0, name),
    }
}

/// What happens to one exported object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Restore,
    /// A controller recreates it; restoring it would duplicate or fight it.
    LeftToController(String),
    /// It cannot be restored (velero's non-restorable resources).
    NotRestorable(String),
}

/// The pure rule for one object of type `rt`.
pub fn disposition(rt: &ResourceType, object: &Value) -> Disposition {
    let name = rt.display();
    if let Some((_, why)) = NOT_RESTORABLE.iter().find(|(r, _)| *r == name) {
        return Disposition::NotRestorable((*why).to_string());
    }
    let meta = &object["metadata"];
    // A controller owner recreates its objects: pods of a ReplicaSet,
    // ReplicaSets of a Deployment, pods of a StatefulSet or DaemonSet, Jobs
    // of a CronJob (apimachinery `metav1.GetControllerOf`).
    if let Some(owner) = meta["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|o| o["controller"] == true)
    {
        return Disposition::LeftToController(format!(
            "owned by {} {}, which recreates it",
            owner["kind"].as_str().unwrap_or("?"),
            owner["name"].as_str().unwrap_or("?")
        ));
    }
    let obj_name = meta["name"].as_str().unwrap_or_default();
    let why = match name.as_str() {
        // pkg/controller/endpoint and pkg/controller/endpointslice.
        "endpoints" | "endpointslices.discovery.k8s.io" => {
            Some("the endpoints controllers derive them from Services")
        }
        // pkg/controller/certificates/rootcacertpublisher.
        "configmaps" if obj_name == "kube-root-ca.crt" => {
            Some("kube-controller-manager publishes it in every namespace")
        }
        // pkg/controller/serviceaccount serviceaccounts_controller.go.
        "serviceaccounts" if obj_name == "default" => {
            Some("kube-controller-manager creates it in every namespace")
        }
        // pkg/controlplane/controller/kubernetesservice.
        "services" if obj_name == "kubernetes" && meta["namespace"] == "default" => {
            Some("kube-apiserver maintains it")
        }
        _ => None,
    };
    match why {
        Some(w) => Disposition::LeftToController(w.to_string()),
        None => Disposition::Restore,
    }
}

/// The body to create from an exported object: cluster-specific fields the
/// new cluster assigns itself are dropped, as velero's restore item actions
/// do (`pkg/restore/actions/service_action.go`: the cluster IP unless
/// headless; `pod_action.go`: the node name). Owner references left after
/// [`disposition`] point at uids of the old cluster: the garbage collector
/// would delete the object, so they go too.
pub fn prepare(rt: &ResourceType, mut object: Value) -> Value {
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("ownerReferences");
    }
    let spec = object.get_mut("spec").and_then(Value::as_object_mut);
    match (rt.display().as_str(), spec) {
        ("services", Some(spec))
            if spec.get("clusterIP").and_then(Value::as_str) != Some("None") =>
        {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        ("pods", Some(spec)) => {
            spec.remove("nodeName");
        }
        _ => {}
    }
    object
}

/// One object read from an export.
#[derive(Debug, Clone)]
pub struct Exported {
    pub file: PathBuf,
    pub object: Value,
}

/// Reads every object file of an export (`DIR/<group>/<Kind>/...yaml`).
pub fn read_export(dir: &Path) -> Result<Vec<Exported>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries =
            std::fs::read_dir(&d).with_context(|| format!("could not read {}", d.display()))?;
        for e in entries {
            let path = e?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "yaml") {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("could not read {}", path.display()))?;
                let object: Value = serde_saphyr::from_str(&text)
                    .with_context(|| format!("{} is not valid YAML", path.display()))?;
                out.push(Exported { file: path, object });
            }
        }
    }
    out.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(out)
}

/// Counts for one resource type.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    /// `deployments.apps`, `pods` (resource.group).
    pub resource: String,
    pub kind: String,
    pub created: usize,
    /// Already there (left alone without `--overwrite`).
    pub skipped: usize,
    /// Already there and replaced (`--overwrite`).
    pub overwritten: usize,
    pub left_to_controllers: usize,
    pub not_restorable: usize,
    pub refused: usize,
}

impl KindCounts {
    pub fn total(&self) -> usize {
        self.created
            + self.skipped
            + self.overwritten
            + self.left_to_controllers
            + self.not_restorable
            + self.refused
    }
}

/// An object the server refused (in the dry run or when created).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    pub object: String,
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub reason: String,
}

/// The account of a restore.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub directory: String,
    pub server: String,
    /// Per resource type, in restore order.
    pub kinds: Vec<KindCounts>,
    pub refused: Vec<Refusal>,
    /// Why objects were left to controllers or not restored, with counts.
    pub left: BTreeMap<String, usize>,
}

enum Plan {
    Create,
    Overwrite,
    Skip,
}

fn object_name(rt: &ResourceType, object: &Value) -> String {
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or("?");
    match meta["namespace"].as_str().filter(|_| rt.namespaced) {
        Some(ns) => format!("{} {ns}/{name}", rt.display()),
        None => format!("{} {name}", rt.display()),
    }
}

fn api_for(client: &Client, rt: &ResourceType, object: &Value) -> Api<DynamicObject> {
    let ar = rt.api_resource();
    match object["metadata"]["namespace"]
        .as_str()
        .filter(|_| rt.namespaced)
    {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

/// Creates (or, with `overwrite`, replaces) one object; `dry_run` asks the
/// server to check it and persist nothing.
async fn put(
    api: &Api<DynamicObject>,
    body: &DynamicObject,
    exists: bool,
    dry_run: bool,
) -> Result<(), kube::Error> {
    let pp = PostParams {
        dry_run,
        field_manager: Some("kubectl-backup".into()),
    };
    if !exists {
        return api.create(&pp, body).await.map(|_| ());
    }
    let name = body.metadata.name.clone().unwrap_or_default();
    let current = api.get(&name).await?;
    let mut body = body.clone();
    body.metadata.resource_version = current.metadata.resource_version;
    api.replace(&name, &pp, &body).await.map(|_| ())
}

/// Runs a restore.
pub async fn restore(
    client: &Client,
    server: &str,
    dir: &Path,
    overwrite: bool,
    printer: &Printer,
) -> Result<RestoreReport> {
    let exported = read_export(dir)?;
    let (types, _) = export::discover(client).await?;
    let by_kind: BTreeMap<(String, String), ResourceType> = types
        .into_iter()
        .map(|rt| ((rt.group.clone(), rt.kind.clone()), rt))
        .collect();
    let mut counts: BTreeMap<String, (ResourceType, KindCounts)> = BTreeMap::new();
    let mut refused = Vec::new();
    let mut left: BTreeMap<String, usize> = BTreeMap::new();
    let mut todo: Vec<(ResourceType, Value, String, String)> = Vec::new();
    for e in exported {
        let api_version = e.object["apiVersion"].as_str().unwrap_or_default();
        let kind = e.object["kind"].as_str().unwrap_or_default().to_string();
        let group = api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default();
        let file = e.file.display().to_string();
        let Some(rt) = by_kind.get(&(group.clone(), kind.clone())) else {
            let what = if group.is_empty() {
                kind.clone()
            } else {
                format!("{kind}.{group}")
            };
            let entry = counts.entry(what.clone()).or_insert_with(|| {
                (
                    ResourceType {
                        group: group.clone(),
                        version: String::new(),
                        kind: kind.clone(),
                        resource: kind.to_lowercase(),
                        namespaced: true,
                    },
                    KindCounts {
                        resource: what.clone(),
                        kind: kind.clone(),
                        ..KindCounts::default()
                    },
                )
            });
            entry.1.refused += 1;
            refused.push(Refusal {
                object: format!(
                    "{what} {}",
                    e.object["metadata"]["name"].as_str().unwrap_or("?")
                ),
                file,
                code: None,
                reason: format!(
                    "this server serves no {what} (install its CustomResourceDefinition or API, \
                     then run the restore again: what exists is skipped)"
                ),
            });
            continue;
        };
        let slot = &mut counts
            .entry(rt.display())
            .or_insert_with(|| {
                (
                    rt.clone(),
                    KindCounts {
                        resource: rt.display(),
                        kind: rt.kind.clone(),
                        ..KindCounts::default()
                    },
                )
            })
            .1;
        match disposition(rt, &e.object) {
            Disposition::Restore => {
                let name = object_name(rt, &e.object);
                todo.push((rt.clone(), prepare(rt, e.object), name, file));
            }
            Disposition::LeftToController(why) => {
                slot.left_to_controllers += 1;
                *left.entry(format!("{}: {why}", rt.display())).or_default() += 1;
            }
            Disposition::NotRestorable(why) => {
                slot.not_restorable += 1;
                *left.entry(format!("{}: {why}", rt.display())).or_default() += 1;
            }
        }
    }
    todo.sort_by(|a, b| (order_key(&a.0), &a.2).cmp(&(order_key(&b.0), &b.2)));
    let new_namespaces: BTreeSet<String> = todo
        .iter()
        .filter(|t| t.0.group.is_empty() && t.0.resource == "namespaces")
        .filter_map(|t| t.1["metadata"]["name"].as_str().map(str::to_string))
        .collect();

    // 1. The server checks everything first (dryRun=All): nothing is created yet.
    let bar = printer.progress(todo.len() as u64, "checking with a server-side dry run");
    let mut plans = Vec::with_capacity(todo.len());
    for (rt, body, name, file) in &todo {
        bar.inc(1);
        let api = api_for(client, rt, body);
        let obj: DynamicObject = serde_json::from_value(body.clone())
            .with_context(|| format!("{file} is not a Kubernetes object"))?;
        let plan = match put(&api, &obj, false, true).await {
            Ok(()) => Ok(Plan::Create),
            Err(kube::Error::Api(s)) if s.code == 409 => {
                if overwrite {
                    put(&api, &obj, true, true).await.map(|()| Plan::Overwrite)
                } else {
                    Ok(Plan::Skip)
                }
            }
            // Its namespace is created by this restore, before it.
            Err(kube::Error::Api(s))
                if s.code == 404
                    && body["metadata"]["namespace"]
                        .as_str()
                        .is_some_and(|ns| new_namespaces.contains(ns)) =>
            {
                Ok(Plan::Create)
            }
            Err(e) => Err(e),
        };
        plans.push((plan, obj, api, name.clone(), file.clone(), rt.display()));
    }
    bar.finish_and_clear();

    // 2. In order: create what passed, replace with --overwrite, skip the rest.
    let bar = printer.progress(plans.len() as u64, "restoring");
    for (plan, obj, api, name, file, kind) in plans {
        bar.inc(1);
        let slot = &mut counts.get_mut(&kind).expect("counted above").1;
        let done = match plan {
            Ok(Plan::Skip) => {
                slot.skipped += 1;
                continue;
            }
            Ok(Plan::Create) => put(&api, &obj, false, false).await.map(|()| false),
            Ok(Plan::Overwrite) => put(&api, &obj, true, false).await.map(|()| true),
            Err(e) => Err(e),
        };
        match done {
            Ok(false) => slot.created += 1,
            Ok(true) => slot.overwritten += 1,
            Err(e) => {
                slot.refused += 1;
                let (code, reason) = export::api_error(&e);
                bar.suspend(|| printer.warn(format!("{name}: refused: {reason}")));
                refused.push(Refusal {
                    object: name,
                    file,
                    code,
                    reason,
                });
            }
        }
    }
    bar.finish_and_clear();
    let mut kinds: Vec<(ResourceType, KindCounts)> = counts.into_values().collect();
    kinds.sort_by_key(|k| order_key(&k.0));
    Ok(RestoreReport {
        directory: dir.display().to_string(),
        server: server.to_string(),
        kinds: kinds.into_iter().map(|(_, c)| c).collect(),
        refused,
        left,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(group: &str, resource: &str, kind: &str, namespaced: bool) -> ResourceType {
        ResourceType {
            group: group.into(),
            version: "v1".into(),
            kind: kind.into(),
            resource: resource.into(),
            namespaced,
        }
    }

    #[test]
    fn namespaces_and_cluster_scoped_types_come_before_namespaced_objects() {
        let mut types = [
            rt("apps", "deployments", "Deployment", true),
            rt("", "services", "Service", true),
            rt(
                "rbac.authorization.k8s.io",
                "clusterroles",
                "ClusterRole",
                false,
            ),
            rt("", "configmaps", "ConfigMap", true),
            rt("", "namespaces", "Namespace", false),
            rt(
                "apiextensions.k8s.io",
                "customresourcedefinitions",
                "CustomResourceDefinition",
                false,
            ),
        ];
        types.sort_by_key(order_key);
        let order: Vec<String> = types.iter().map(ResourceType::display).collect();
        assert_eq!(
            order,
            [
                "customresourcedefinitions.apiextensions.k8s.io",
                "namespaces",
                "configmaps",
                "services",
                "clusterroles.rbac.authorization.k8s.io",
                "deployments.apps",
            ]
        );
    }

    #[test]
    fn what_controllers_recreate_is_left_to_them() {
        let pods = rt("", "pods", "Pod", true);
        let owned = json!({"metadata": {"name": "web-1", "namespace": "shop",
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-6c5", "controller": true}]}});
        assert_eq!(
            disposition(&pods, &owned),
            Disposition::LeftToController("owned by ReplicaSet web-6c5, which recreates it".into())
        );
        let bare = json!({"metadata": {"name": "debug", "namespace": "shop"}});
        assert_eq!(disposition(&pods, &bare), Disposition::Restore);
        let eps = rt("", "endpoints", "Endpoints", true);
        assert!(matches!(
            disposition(&eps, &bare),
            Disposition::LeftToController(_)
        ));
        let nodes = rt("", "nodes", "Node", false);
        assert!(matches!(
            disposition(&nodes, &json!({"metadata": {"name": "n1"}})),
            Disposition::NotRestorable(_)
        ));
        let events = rt("", "events", "Event", true);
        assert!(matches!(
            disposition(&events, &bare),
            Disposition::NotRestorable(_)
        ));
    }

    #[test]
    fn cluster_assigned_fields_are_dropped() {
        let svc = rt("", "services", "Service", true);
        let body = prepare(
            &svc,
            json!({"metadata": {"name": "web", "ownerReferences": [{"kind": "X"}]},
                   "spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7"], "ports": []}}),
        );
        assert_eq!(
            body,
            json!({"metadata": {"name": "web"}, "spec": {"ports": []}})
        );
        let headless = prepare(&svc, json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(headless["spec"]["clusterIP"], "None");
        let pod = prepare(
            &rt("", "pods", "Pod", true),
            json!({"spec": {"nodeName": "n1", "containers": []}}),
        );
        assert_eq!(pod, json!({"spec": {"containers": []}}));
    }
}
