//! What a drain leaves on the node for later: the pods it moved (annotation
//! `upkeep.dev/drained-pods`), so `--uncordon` can say where they run now
//! and a re-run after an interruption keeps the full list.

use std::collections::BTreeMap;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde::{Deserialize, Serialize};

use super::plan::{Action, PodPlan};
use super::rules::is_ready;
use crate::list::list_all;

/// The node annotation holding the former pods (JSON).
pub const DRAINED_PODS: &str = "upkeep.dev/drained-pods";

/// A pod a drain moved off the node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FormerPod {
    pub namespace: String,
    pub name: String,
    /// `Deployment/web`; absent for pods nothing recreates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// The workload's pod selector, to find its pods now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
}

/// The former pods recorded on the node, if any.
pub fn recorded(node: &Node) -> Vec<FormerPod> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRAINED_PODS))
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default()
}

/// The record after this drain: what earlier (interrupted) runs recorded,
/// plus every pod this plan moves or deletes.
pub fn merged(node: &Node, pods: &[PodPlan]) -> Vec<FormerPod> {
    let mut all: BTreeMap<(String, String), FormerPod> = recorded(node)
        .into_iter()
        .map(|f| ((f.namespace.clone(), f.name.clone()), f))
        .collect();
    for p in pods
        .iter()
        .filter(|p| matches!(p.action, Action::Evict | Action::Destroy | Action::Wait))
    {
        let former = FormerPod {
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            workload: p.workload.as_ref().map(|w| w.id()),
            selector: p.workload.as_ref().map(|w| w.selector.clone()),
        };
        // An earlier run's entry may know more (the workload of a pod that
        // is now only terminating): keep it.
        all.entry((p.namespace.clone(), p.name.clone()))
            .and_modify(|f| {
                if f.workload.is_none() {
                    *f = former.clone();
                }
            })
            .or_insert(former);
    }
    all.into_values().collect()
}

/// Where a former pod's workload runs now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FormerPodNow {
    pub namespace: String,
    pub pod: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// `pod@node` for each ready pod of the workload now.
    pub now: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UncordonReport {
    pub node: String,
    /// It was cordoned before this command.
    pub was_cordoned: bool,
    pub former_pods: Vec<FormerPodNow>,
}

impl UncordonReport {
    pub fn render(&self) -> String {
        let mut out = String::new();
        if !self.former_pods.is_empty() {
            let mut t =
                crate::output::table(["NAMESPACE", "FORMER POD", "WORKLOAD", "RUNS NOW ON"]);
            for f in &self.former_pods {
                let now = if f.now.is_empty() {
                    "<nowhere>".to_string()
                } else {
                    f.now.join(", ")
                };
                t.add_row([
                    f.namespace.as_str(),
                    f.pod.as_str(),
                    f.workload.as_deref().unwrap_or("<none: deleted>"),
                    now.as_str(),
                ]);
            }
            out.push_str(&crate::output::render(&t));
        }
        out.push_str(&if self.was_cordoned {
            format!("node/{} uncordoned\n", self.node)
        } else {
            format!("node/{} already uncordoned\n", self.node)
        });
        out
    }
}

/// Returns the node to service: unschedulable=false, the record removed,
/// and a report of where the former pods' workloads run now.
pub async fn uncordon(client: &Client, node: &str) -> anyhow::Result<UncordonReport> {
    let nodes: Api<Node> = Api::all(client.clone());
    let current = nodes.get(node).await.with_context(|| {
        format!("could not read node/{node}; check the name with `kubectl get nodes`")
    })?;
    let was_cordoned = super::capacity::node_unschedulable(&current);
    let former = recorded(&current);
    let patch = serde_json::json!({
        "spec": { "unschedulable": false },
        "metadata": { "annotations": { DRAINED_PODS: null } },
    });
    nodes
        .patch(node, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .with_context(|| format!("could not uncordon node/{node}"))?;
    let mut former_pods = Vec::new();
    let mut cache: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in former {
        let now = match &f.selector {
            Some(sel) => {
                let key = (f.namespace.clone(), sel.clone());
                if !cache.contains_key(&key) {
                    let pods: Api<Pod> = Api::namespaced(client.clone(), &f.namespace);
                    let list = list_all(&pods, &ListParams::default().labels(sel))
                        .await
                        .with_context(|| {
                            format!(
                                "could not list the pods of {}",
                                f.workload.as_deref().unwrap_or("?")
                            )
                        })?;
                    let mut where_: Vec<String> = list
                        .iter()
                        .filter(|p| is_ready(p) && p.metadata.deletion_timestamp.is_none())
                        .map(|p| {
                            format!(
                                "{}@{}",
                                p.metadata.name.as_deref().unwrap_or_default(),
                                p.spec
                                    .as_ref()
                                    .and_then(|s| s.node_name.as_deref())
                                    .unwrap_or("?")
                            )
                        })
                        .collect();
                    where_.sort();
                    cache.insert(key.clone(), where_);
                }
                cache[&key].clone()
            }
            None => Vec::new(),
        };
        former_pods.push(FormerPodNow {
            namespace: f.namespace,
            pod: f.name,
            workload: f.workload,
            now,
        });
    }
    Ok(UncordonReport {
        node: node.to_string(),
        was_cordoned,
        former_pods,
    })
}
