//! Removed API versions: the table (data, like the release calendar) and where
//! the cluster still records a version: the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation, `metadata.managedFields[].apiVersion`, Helm 3 release Secrets,
//! and the API server's `apiserver_requested_deprecated_apis` metric. The
//! places are the ones Pluto (FairwindsOps/pluto `pkg/finder`, `pkg/helm`)
//! and kubent (doitintl/kube-no-trouble `pkg/collector`) read.

use std::io::Read as _;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

use crate::version::MinorVersion;

const EMBEDDED: &str = include_str!("../../../data/removed-apis.json");

/// The annotation `kubectl apply` keeps (kubernetes/kubectl `pkg/util/apply.go`
/// `LastAppliedConfigAnnotation`).
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Helm 3's release Secret type (helm/helm `pkg/storage/driver/secrets.go`).
pub const HELM_RELEASE_TYPE: &str = "helm.sh/release.v1";

/// One removed API version of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Removal {
    pub api_version: String,
    pub kind: String,
    /// Whether objects of the kind live in a namespace (a Helm manifest's
    /// cluster-scoped document gets no namespace).
    #[serde(default = "yes")]
    pub namespaced: bool,
    pub removed_in: MinorVersion,
    pub replacement: String,
    /// The deprecation guide section or changelog this entry comes from.
    pub source: String,
}

fn yes() -> bool {
    true
}

/// The removal table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removals {
    pub schema: u32,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub sources: Vec<String>,
    pub removals: Vec<Removal>,
}

impl Removals {
    /// The embedded table (`crates/upkeep/data/removed-apis.json`).
    pub fn embedded() -> Removals {
        Removals::from_json(EMBEDDED).expect("the embedded removal table is valid")
    }

    pub fn from_json(text: &str) -> anyhow::Result<Removals> {
        let table: Removals = serde_json::from_str(text)
            .context("the removed-API table is not valid JSON of the expected shape")?;
        if table.schema != 1 {
            anyhow::bail!(
                "the removed-API table has schema {}, this version reads schema 1",
                table.schema
            );
        }
        Ok(table)
    }

    /// A table file given with `--removed-apis`.
    pub fn load(path: &Path) -> anyhow::Result<Removals> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("could not read the removed-API table {}", path.display()))?;
        Removals::from_json(&text).with_context(|| format!("in {}", path.display()))
    }

    /// The removal of `kind` at `api_version`, if any.
    pub fn find(&self, api_version: &str, kind: &str) -> Option<&Removal> {
        self.removals
            .iter()
            .find(|r| r.api_version == api_version && r.kind == kind)
    }

    /// Whether any kind at `api_version` was removed (cheap pre-filter).
    pub fn knows_version(&self, api_version: &str) -> bool {
        self.removals.iter().any(|r| r.api_version == api_version)
    }
}

/// One place the cluster records an object at a removed API version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiUse {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub source: String,
}

/// The uses recorded on one object (its annotation and managedFields) that
/// the table knows. `kind` is the object's kind from discovery.
pub fn uses_in_object(meta: &ObjectMeta, kind: &str, removals: &Removals) -> Vec<ApiUse> {
    let mut out = Vec::new();
    let name = meta.name.clone().unwrap_or_default();
    let push = |out: &mut Vec<ApiUse>, api_version: &str, kind: &str, source: String| {
        if removals.find(api_version, kind).is_some() {
            out.push(ApiUse {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
                namespace: meta.namespace.clone(),
                name: name.clone(),
                source,
            });
        }
    };
    if let Some(text) = meta.annotations.as_ref().and_then(|a| a.get(LAST_APPLIED))
        && let Ok(applied) = serde_json::from_str::<serde_json::Value>(text)
    {
        let v = applied.get("apiVersion").and_then(|v| v.as_str());
        let k = applied.get("kind").and_then(|v| v.as_str()).unwrap_or(kind);
        if let Some(v) = v {
            push(&mut out, v, k, format!("annotation {LAST_APPLIED}"));
        }
    }
    for m in meta.managed_fields.iter().flatten() {
        if let Some(v) = &m.api_version {
            push(
                &mut out,
                v,
                kind,
                format!(
                    "metadata.managedFields (manager {}, {})",
                    m.manager.as_deref().unwrap_or("?"),
                    m.operation.as_deref().unwrap_or("?")
                ),
            );
        }
    }
    out
}

/// The release as Helm stores it (helm/helm `pkg/release/release.go`, the
/// fields read here).
#[derive(Debug, Deserialize)]
struct HelmRelease {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    version: i64,
    #[serde(default)]
    manifest: String,
}

/// Decodes a Helm 3 release Secret's `data.release` (already base64-decoded
/// once from the API's wire form): Helm's own base64 of a gzip of the release
/// JSON (helm/helm `pkg/storage/driver/util.go` `encodeRelease`/`decodeRelease`;
/// a payload without the gzip magic is plain JSON there too). Returns the
/// release name, revision and every manifest document's removed-API uses.
pub fn helm_release_uses(
    secret_namespace: &str,
    secret_name: &str,
    release: &[u8],
    removals: &Removals,
) -> anyhow::Result<Vec<ApiUse>> {
    let text: Vec<u8> = release
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&text)
        .context("data.release is not base64 (Helm's encoding)")?;
    let json = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .read_to_end(&mut out)
            .context("data.release is not a valid gzip stream")?;
        out
    } else {
        raw
    };
    let rel: HelmRelease =
        serde_json::from_slice(&json).context("the Helm release is not the expected JSON")?;
    let namespace = if rel.namespace.is_empty() {
        secret_namespace.to_string()
    } else {
        rel.namespace.clone()
    };
    let source = format!(
        "Helm release {} revision {} (Secret {secret_namespace}/{secret_name})",
        rel.name, rel.version
    );
    let mut out = Vec::new();
    for (api_version, kind, ns, name) in manifest_heads(&rel.manifest) {
        let Some(removal) = removals.find(&api_version, &kind) else {
            continue;
        };
        let namespace = removal
            .namespaced
            .then(|| ns.unwrap_or_else(|| namespace.clone()));
        out.push(ApiUse {
            api_version,
            kind,
            namespace,
            name,
            source: source.clone(),
        });
    }
    Ok(out)
}

/// `apiVersion`, `kind`, `metadata.namespace` and `metadata.name` of every
/// document of a rendered manifest. Read line by line at the top level (and
/// the first level under `metadata`) rather than as YAML: templates render
/// documents Helm itself accepted, and a broken one must not hide the rest.
pub fn manifest_heads(manifest: &str) -> Vec<(String, String, Option<String>, String)> {
    let mut out = Vec::new();
    for doc in manifest.split("\n---") {
        let (mut api_version, mut kind, mut ns, mut name) = (None, None, None, None);
        let mut in_metadata = false;
        for line in doc.lines() {
            let trimmed = line.trim_end();
            if trimmed.is_empty() || trimmed.trim_start().starts_with('#') || trimmed == "---" {
                continue;
            }
            let indented = line.starts_with(' ');
            let value = |l: &str, key: &str| {
                l.trim_start()
                    .strip_prefix(key)
                    .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
            };
            if !indented {
                in_metadata = trimmed == "metadata:";
                if let Some(v) = value(trimmed, "apiVersion:") {
                    api_version = Some(v);
                } else if let Some(v) = value(trimmed, "kind:") {
                    kind = Some(v);
                }
            } else if in_metadata {
                // Only direct children of metadata (two-space or any single level).
                let depth = line.len() - line.trim_start().len();
                if depth <= 2 {
                    if let Some(v) = value(trimmed, "name:") {
                        name = Some(v);
                    } else if let Some(v) = value(trimmed, "namespace:") {
                        ns = Some(v);
                    }
                }
            }
        }
        if let (Some(a), Some(k)) = (api_version, kind) {
            out.push((a, k, ns, name.unwrap_or_default()));
        }
    }
    out
}

/// One `apiserver_requested_deprecated_apis` series: someone called a
/// deprecated version since the API server started
/// (staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go
/// `deprecatedRequestGauge`: labels group, version, resource, subresource,
/// removed_release).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RequestedDeprecated {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub removed_release: Option<MinorVersion>,
}

impl RequestedDeprecated {
    pub fn group_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }
}

/// Reads every `apiserver_requested_deprecated_apis` series with a value
/// above 0 from Prometheus text.
pub fn parse_deprecated_metrics(text: &str) -> Vec<RequestedDeprecated> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("apiserver_requested_deprecated_apis{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once('}') else {
            continue;
        };
        if value.trim().parse::<f64>().map_or(true, |v| v <= 0.0) {
            continue;
        }
        let label = |key: &str| -> String {
            labels
                .split(',')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| k.trim() == key)
                .map(|(_, v)| v.trim().trim_matches('"').to_string())
                .unwrap_or_default()
        };
        out.push(RequestedDeprecated {
            group: label("group"),
            version: label("version"),
            resource: label("resource"),
            subresource: label("subresource"),
            removed_release: MinorVersion::parse(&label("removed_release")).ok(),
        });
    }
    out
}
