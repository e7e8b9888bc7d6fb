//! "Whole again": a drained workload counts its Ready, Running, not
//! terminating pods on nodes other than the drained ones, from a watch of its
//! pods (not the workload's status, which lags the pods it counts).

use std::collections::BTreeMap;

use anyhow::Context as _;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::Client;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;

use super::reach::{LOST_AFTER, Reachability};
use super::rules::{is_ready, is_terminating};
use super::snapshot::Workload;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadState {
    pub namespace: String,
    /// `Deployment/web`.
    pub workload: String,
    pub replicas: i32,
    /// Ready replicas on other nodes.
    pub ready: i32,
    pub whole: bool,
}

/// The desired replicas now (a scale-up during the drain counts).
async fn desired(client: &Client, w: &Workload) -> anyhow::Result<i32> {
    let ns = w.namespace.as_str();
    let replicas = match w.kind.as_str() {
        "Deployment" => {
            Api::<Deployment>::namespaced(client.clone(), ns)
                .get(&w.name)
                .await?
                .spec
                .replicas
        }
        "ReplicaSet" => {
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get(&w.name)
                .await?
                .spec
                .replicas
        }
        "StatefulSet" => {
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get(&w.name)
                .await?
                .spec
                .replicas
        }
        "ReplicationController" => Api::<ReplicationController>::namespaced(client.clone(), ns)
            .get(&w.name)
            .await?
            .spec
            .and_then(|s| s.replicas),
        _ => Some(w.replicas),
    };
    Ok(replicas.unwrap_or(1))
}

/// Told each time a workload's count of ready replicas changes.
pub type WorkloadProgress<'a> = dyn Fn(&WorkloadState) + Send + Sync + 'a;

/// Ready, running, not terminating, and not on a drained node.
pub fn counts_as_ready(pod: &Pod, drained: &[String]) -> bool {
    let on = pod.spec.as_ref().and_then(|s| s.node_name.as_ref());
    let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    running && is_ready(pod) && !is_terminating(pod) && on.is_some_and(|n| !drained.contains(n))
}

/// Waits until every workload has its desired replicas Ready off the drained
/// nodes. Unbounded: the caller's `--timeout` bounds it.
pub async fn wait_workloads_whole(
    client: &Client,
    workloads: &[Workload],
    drained: &[String],
    progress: &WorkloadProgress<'_>,
) -> anyhow::Result<Vec<WorkloadState>> {
    let waits = workloads
        .iter()
        .map(|w| wait_one(client, w, drained, progress));
    futures::future::try_join_all(waits).await
}

async fn wait_one(
    client: &Client,
    w: &Workload,
    drained: &[String],
    progress: &WorkloadProgress<'_>,
) -> anyhow::Result<WorkloadState> {
    let replicas = desired(client, w)
        .await
        .with_context(|| format!("could not read {}/{}", w.namespace, w.id()))?;
    let mut state = WorkloadState {
        namespace: w.namespace.clone(),
        workload: w.id(),
        replicas,
        ready: -1,
        whole: false,
    };
    let api: Api<Pod> = Api::namespaced(client.clone(), &w.namespace);
    let mut config = watcher::Config::default();
    if !w.selector.is_empty() {
        config = config.labels(&w.selector);
    }
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut pods: BTreeMap<String, bool> = BTreeMap::new();
    let mut building: BTreeMap<String, bool> = BTreeMap::new();
    let mut listed = false;
    let mut reach = Reachability::default();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            if reach.lost(LOST_AFTER) {
                anyhow::bail!(
                    "lost the connection to the API server while waiting for {}/{}",
                    w.namespace,
                    w.id()
                );
            }
            continue;
        };
        reach.reached();
        let key = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => building.clear(),
            watcher::Event::InitApply(p) => {
                building.insert(key(&p), counts_as_ready(&p, drained));
            }
            watcher::Event::InitDone => {
                pods = std::mem::take(&mut building);
                listed = true;
            }
            watcher::Event::Apply(p) => {
                pods.insert(key(&p), counts_as_ready(&p, drained));
            }
            watcher::Event::Delete(p) => {
                pods.remove(&key(&p));
            }
        }
        if !listed {
            continue;
        }
        let ready = pods.values().filter(|r| **r).count() as i32;
        if ready != state.ready {
            state.ready = ready;
            state.whole = ready >= replicas;
            progress(&state);
        }
        if state.whole {
            return Ok(state);
        }
    }
    anyhow::bail!("the watch on the pods of {}/{} ended", w.namespace, w.id())
}
