//! `kubectl backup resources DIR`: every listable resource of every API group
//! the server advertises, one YAML file per object.
//!
//! `kubectl get all` covers only the `all` category (pods, services,
//! deployments...), missing ConfigMaps, RBAC, CRDs and their objects, so the
//! list of resources comes from discovery: each group's preferred version,
//! every resource whose verbs include `list` (kubectl `api-resources
//! --verbs=list`, kubernetes/kubectl `pkg/cmd/apiresources/apiresources.go`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use kube::api::{Api, DynamicObject, ListParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, discovery::verbs};
use serde::Serialize;
use serde_json::{Map, Value};
use upkeep::output::Printer;

/// The directory name of objects that belong to no namespace.
pub const CLUSTER_SCOPED: &str = "_cluster";
/// The directory name of the core ("") group.
pub const CORE_GROUP: &str = "core";

/// A resource type found by discovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResourceType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub resource: String,
    pub namespaced: bool,
}

impl ResourceType {
    pub(crate) fn api_resource(&self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(&self.group, &self.version, &self.kind),
            &self.resource,
        )
    }

    fn is_secret(&self) -> bool {
        self.group.is_empty() && self.resource == "secrets"
    }

    /// `deployments.apps`, `pods` (kubectl's resource.group spelling).
    pub fn display(&self) -> String {
        if self.group.is_empty() {
            self.resource.clone()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }
}

/// One line of the index: what was exported for a resource type.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exported {
    #[serde(flatten)]
    pub resource: ResourceType,
    pub count: usize,
}

/// A resource type (or group) that could not be exported, and why.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Failed {
    /// `deployments.apps`, or a group version whose discovery failed.
    pub what: String,
    /// The HTTP status the server answered with, when it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    pub error: String,
}

/// A resource type left out on purpose.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Skipped {
    #[serde(flatten)]
    pub resource: ResourceType,
    pub reason: String,
}

/// `index.json`: the whole account of an export.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub directory: String,
    pub server: String,
    pub context: String,
    pub exported_at: String,
    pub include_secrets: bool,
    pub total_objects: usize,
    pub exported: Vec<Exported>,
    pub skipped: Vec<Skipped>,
    pub failed: Vec<Failed>,
}

/// Where an object's file goes: `<group>/<kind>/<namespace>/<name>.yaml`,
/// the core group as `core`, cluster-scoped objects under `_cluster`.
/// Names are DNS subdomains or path segments; anything that could escape
/// the directory (`/`, `..`, a leading `.`) is percent-encoded.
pub fn object_path(group: &str, kind: &str, namespace: Option<&str>, name: &str) -> PathBuf {
    let group = if group.is_empty() { CORE_GROUP } else { group };
    let namespace = namespace
        .filter(|n| !n.is_empty())
        .unwrap_or(CLUSTER_SCOPED);
    [
        safe_segment(group),
        safe_segment(kind),
        safe_segment(namespace),
        format!("{}.yaml", safe_segment(name)),
    ]
    .iter()
    .collect()
}

fn safe_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '/' | '\\' | '%' | '\0' => out.push_str(&format!("%{:02X}", c as u32)),
            '.' if i == 0 => out.push_str("%2E"),
            c => out.push(c),
        }
    }
    if out.is_empty() {
        out.push_str("%00");
    }
    out
}

/// Strips what the server owns, so the file can be applied again: status
/// goes, and metadata keeps only name, namespace, labels and annotations (as
/// kubectl-neat's `neatMetadata`/`neatStatus`, itaysk/kubectl-neat
/// `cmd/neat.go`), so uid, resourceVersion, managedFields, creationTimestamp
/// and generation go. One difference: ownerReferences stay. Applied again,
/// a Pod whose ReplicaSet was recreated points at an owner uid that no longer
/// exists, so the garbage collector removes it and the controller makes a
/// fresh one; without the reference it would live on as an orphan duplicate.
pub fn neat(mut object: Value, api_version: &str, kind: &str) -> Value {
    let Some(obj) = object.as_object_mut() else {
        return object;
    };
    obj.remove("status");
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(api_version.into()));
    out.insert("kind".into(), Value::String(kind.into()));
    if let Some(Value::Object(meta)) = obj.remove("metadata") {
        let mut kept = Map::new();
        for field in [
            "name",
            "namespace",
            "labels",
            "annotations",
            "ownerReferences",
        ] {
            if let Some(v) = meta.get(field) {
                kept.insert(field.into(), v.clone());
            }
        }
        out.insert("metadata".into(), Value::Object(kept));
    }
    for (k, v) in std::mem::take(obj) {
        if k != "apiVersion" && k != "kind" {
            out.insert(k, v);
        }
    }
    Value::Object(out)
}

/// Options of an export.
#[derive(Debug, Clone)]
pub struct ExportOptions {
    pub dir: PathBuf,
    pub include_secrets: bool,
    pub overwrite: bool,
}

/// Whether the directory may be written: absent or empty, or `--overwrite`.
pub fn directory_refusal(dir: &Path, overwrite: bool) -> Result<Option<String>> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !overwrite {
                return Ok(Some(format!(
                    "{} is not empty: choose a new directory, or pass --overwrite to write into it \
                     (files of objects that no longer exist are not removed)",
                    dir.display()
                )));
            }
            Ok(None)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(Some(format!(
            "{} exists and is not a directory",
            dir.display()
        ))),
        Err(e) => Err(e).with_context(|| format!("could not read {}", dir.display())),
    }
}

pub(crate) fn api_error(e: &kube::Error) -> (Option<u16>, String) {
    match e {
        kube::Error::Api(status) => (Some(status.code), status.message.clone()),
        other => (None, format!("{other:#}")),
    }
}

/// Every listable resource type: each group at its preferred version (the
/// core group at v1). Groups whose discovery fails are reported, not fatal
/// (an unavailable aggregated API such as metrics.k8s.io answers 503).
pub async fn discover(client: &Client) -> Result<(Vec<ResourceType>, Vec<Failed>)> {
    let mut found = Vec::new();
    let mut failed = Vec::new();
    let mut versions = vec![(String::new(), "v1".to_string())];
    let groups = client
        .list_api_groups()
        .await
        .context("discovery failed: could not list the API groups (GET /apis)")?;
    for g in groups.groups {
        let version = g
            .preferred_version
            .as_ref()
            .map(|v| v.version.clone())
            .or_else(|| g.versions.first().map(|v| v.version.clone()));
        if let Some(version) = version {
            versions.push((g.name.clone(), version));
        }
    }
    for (group, version) in versions {
        let gv = if group.is_empty() {
            version.clone()
        } else {
            format!("{group}/{version}")
        };
        let list = if group.is_empty() {
            client.list_core_api_resources(&version).await
        } else {
            client.list_api_group_resources(&gv).await
        };
        let list = match list {
            Ok(l) => l,
            Err(e) => {
                let (code, error) = api_error(&e);
                failed.push(Failed {
                    what: gv,
                    code,
                    error: format!("discovery failed: {error}"),
                });
                continue;
            }
        };
        for r in list.resources {
            // Subresources (pods/log, deployments/scale) are not objects.
            if r.name.contains('/') || !r.verbs.iter().any(|v| v == verbs::LIST) {
                continue;
            }
            found.push(ResourceType {
                group: group.clone(),
                version: r.version.clone().unwrap_or_else(|| version.clone()),
                kind: r.kind.clone(),
                resource: r.name.clone(),
                namespaced: r.namespaced,
            });
        }
    }
    found.sort_by(|a, b| (&a.group, &a.resource).cmp(&(&b.group, &b.resource)));
    Ok((found, failed))
}

/// Lists one resource type across all namespaces, page by page; each object
/// is turned into JSON as its page arrives.
async fn list_all(client: &Client, rt: &ResourceType) -> Result<Vec<Value>, kube::Error> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &rt.api_resource());
    let mut out = Vec::new();
    let mut bad = None;
    upkeep::list::for_each_page(
        &api,
        &ListParams::default(),
        |item| match serde_json::to_value(item) {
            Ok(v) => out.push(v),
            Err(e) => {
                bad.get_or_insert(e);
            }
        },
    )
    .await?;
    match bad {
        Some(e) => Err(kube::Error::SerdeError(e)),
        None => Ok(out),
    }
}

fn write_object(root: &Path, relative: &Path, text: &str, private: bool) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let path = root.join(relative);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("could not create {}", parent.display()))?;
    }
    let mode = if private { 0o600 } else { 0o644 };
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&path)
        .with_context(|| format!("could not write {}", path.display()))?;
    // An existing file keeps its old mode on open: set it.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

/// Runs an export. The caller has checked the directory.
pub async fn export(
    client: &Client,
    server: &str,
    context: &str,
    opts: &ExportOptions,
    printer: &Printer,
) -> Result<Index> {
    // Nothing is created until discovery has succeeded: an unreachable
    // server or a rejected token leaves no empty export directory behind.
    let (types, mut failed) = discover(client).await?;
    std::fs::create_dir_all(&opts.dir)
        .with_context(|| format!("could not create {}", opts.dir.display()))?;
    printer.note(format!(
        "exporting {} resource types from {server} to {}",
        types.len(),
        opts.dir.display()
    ));
    let bar = printer.progress(types.len() as u64, "exporting");
    let mut exported = Vec::new();
    let mut skipped = Vec::new();
    let mut total = 0;
    for rt in types {
        bar.set_message(rt.display());
        if rt.is_secret() && !opts.include_secrets {
            skipped.push(Skipped {
                resource: rt,
                reason: "Secrets are exported only with --include-secrets".into(),
            });
            bar.inc(1);
            continue;
        }
        match list_all(client, &rt).await {
            Ok(items) => {
                let api_version = if rt.group.is_empty() {
                    rt.version.clone()
                } else {
                    format!("{}/{}", rt.group, rt.version)
                };
                for item in &items {
                    let meta = &item["metadata"];
                    let name = meta["name"].as_str().unwrap_or_default();
                    let namespace = meta["namespace"].as_str().filter(|_| rt.namespaced);
                    let rel = object_path(&rt.group, &rt.kind, namespace, name);
                    let doc = neat(item.clone(), &api_version, &rt.kind);
                    let mut text = serde_saphyr::to_string(&doc)
                        .with_context(|| format!("could not encode {}", rel.display()))?;
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    write_object(&opts.dir, &rel, &text, rt.is_secret())?;
                }
                if !items.is_empty() {
                    bar.suspend(|| printer.note(format!("{}: {}", rt.display(), items.len())));
                }
                total += items.len();
                exported.push(Exported {
                    resource: rt,
                    count: items.len(),
                });
            }
            Err(e) => {
                let (code, error) = api_error(&e);
                bar.suspend(|| {
                    printer.warn(format!("could not list {}: {error}", rt.display()));
                });
                failed.push(Failed {
                    what: rt.display(),
                    code,
                    error,
                });
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    let index = Index {
        directory: opts.dir.display().to_string(),
        server: server.to_string(),
        context: context.to_string(),
        exported_at: jiff::Timestamp::now().to_string(),
        include_secrets: opts.include_secrets,
        total_objects: total,
        exported,
        skipped,
        failed,
    };
    let mut text = serde_json::to_string_pretty(&index).context("could not encode the index")?;
    text.push('\n');
    write_object(&opts.dir, Path::new("index.json"), &text, false)?;
    Ok(index)
}

/// Object counts per `kind.group` (for the summary table).
pub fn counts(index: &Index) -> BTreeMap<String, usize> {
    index
        .exported
        .iter()
        .filter(|e| e.count > 0)
        .map(|e| (e.resource.display(), e.count))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_group_by_kind_and_namespace() {
        assert_eq!(
            object_path("apps", "Deployment", Some("default"), "web"),
            PathBuf::from("apps/Deployment/default/web.yaml")
        );
        assert_eq!(
            object_path("", "Namespace", None, "kube-system"),
            PathBuf::from("core/Namespace/_cluster/kube-system.yaml")
        );
        assert_eq!(
            object_path(
                "rbac.authorization.k8s.io",
                "ClusterRole",
                None,
                "system:basic-user"
            ),
            PathBuf::from("rbac.authorization.k8s.io/ClusterRole/_cluster/system:basic-user.yaml")
        );
    }

    #[test]
    fn names_cannot_escape_the_directory() {
        let p = object_path("", "ConfigMap", Some(".."), "../../etc/passwd");
        assert_eq!(p.components().count(), 4);
        assert!(
            p.to_str()
                .unwrap()
                .starts_with("core/ConfigMap/%2E./%2E.%2F")
        );
        assert!(!p.to_str().unwrap().contains("/../"));
        assert_eq!(
            object_path("", "ConfigMap", Some("default"), ""),
            PathBuf::from("core/ConfigMap/default/%00.yaml")
        );
    }

    #[test]
    fn neat_keeps_what_can_be_applied_again() {
        let raw = json!({
            "metadata": {
                "name": "web", "namespace": "default",
                "labels": {"app": "web"},
                "annotations": {"note": "kept"},
                "uid": "1234", "resourceVersion": "99", "generation": 3,
                "creationTimestamp": "2024-01-01T00:00:00Z",
                "managedFields": [{"manager": "kubectl"}],
                "ownerReferences": [{"kind": "ReplicaSet", "uid": "abcd"}],
                "finalizers": ["x"]
            },
            "spec": {"replicas": 2},
            "status": {"readyReplicas": 2}
        });
        let out = neat(raw, "apps/v1", "Deployment");
        assert_eq!(
            out,
            json!({
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {
                    "name": "web", "namespace": "default",
                    "labels": {"app": "web"}, "annotations": {"note": "kept"},
                    "ownerReferences": [{"kind": "ReplicaSet", "uid": "abcd"}]
                },
                "spec": {"replicas": 2}
            })
        );
        let keys: Vec<_> = out.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "spec"]);
    }

    #[test]
    fn a_non_empty_directory_is_refused_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        assert!(directory_refusal(dir.path(), false).unwrap().is_none());
        assert!(
            directory_refusal(&dir.path().join("new"), false)
                .unwrap()
                .is_none()
        );
        std::fs::write(dir.path().join("x"), "x").unwrap();
        let msg = directory_refusal(dir.path(), false).unwrap().unwrap();
        assert!(msg.contains("--overwrite"));
        assert!(directory_refusal(dir.path(), true).unwrap().is_none());
        let file = dir.path().join("x");
        assert!(directory_refusal(&file, true).unwrap().is_some());
    }
}
