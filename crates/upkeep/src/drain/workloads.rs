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
    /// The workload was deleted (or is being deleted, its namespace with it): its pods are
    /// not coming back, so there is nothing to wait for.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
}

impl WorkloadState {
    /// Nothing more to wait for.
    pub fn settled(&self) -> bool {
        self.whole || self.deleted
    }
}

/// What a workload asks for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wanted {
    Replicas(i32),
    /// Not found, or carrying a deletionTimestamp: its controller makes no more pods
    /// (the garbage collector or the namespace controller removes the rest).
    Deleted,
}

impl Wanted {
    fn of<K: kube::Resource>(obj: Option<K>, replicas: impl FnOnce(&K) -> Option<i32>) -> Wanted {
        match obj {
            Some(o) if o.meta().deletion_timestamp.is_none() => {
                Wanted::Replicas(replicas(&o).unwrap_or(1))
            }
            _ => Wanted::Deleted,
        }
    }
}

/// The workload's state from what it wants and its ready replicas elsewhere.
pub fn judge(w: &Workload, wanted: Wanted, ready: i32) -> WorkloadState {
    let (replicas, deleted) = match wanted {
        Wanted::Replicas(n) => (n, false),
        Wanted::Deleted => (0, true),
    };
    WorkloadState {
        namespace: w.namespace.clone(),
        workload: w.id(),
        replicas,
        ready,
        whole: !deleted && ready >= replicas,
        deleted,
    }
}

/// The desired replicas now (a scale-up during the drain counts), or that the workload is
/// gone.
async fn desired(client: &Client, w: &Workload) -> anyhow::Result<Wanted> {
    let ns = w.namespace.as_str();
    Ok(match w.kind.as_str() {
        "Deployment" => Wanted::of(
            Api::<Deployment>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await?,
            |d| d.spec.replicas,
        ),
        "ReplicaSet" => Wanted::of(
            Api::<ReplicaSet>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await?,
            |r| r.spec.replicas,
        ),
        "StatefulSet" => Wanted::of(
            Api::<StatefulSet>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await?,
            |s| s.spec.replicas,
        ),
        "ReplicationController" => Wanted::of(
            Api::<ReplicationController>::namespaced(client.clone(), ns)
                .get_opt(&w.name)
                .await?,
            |r| r.spec.as_ref().and_then(|s| s.replicas),
        ),
        _ => Wanted::Replicas(w.replicas),
    })
}

/// How often the workload itself is read again while its pods are watched: a scale change or
/// a deletion (the namespace's included) is seen within this.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(5);

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
    let mut wanted = desired(client, w)
        .await
        .with_context(|| format!("could not read {}/{}", w.namespace, w.id()))?;
    let mut state = judge(w, wanted, -1);
    if state.deleted {
        progress(&state);
        return Ok(state);
    }
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
    let mut recheck = tokio::time::interval(RECHECK);
    recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    recheck.tick().await;
    loop {
        let event = tokio::select! {
            e = stream.next() => match e {
                Some(e) => Some(e),
                None => anyhow::bail!("the watch on the pods of {}/{} ended", w.namespace, w.id()),
            },
            _ = recheck.tick() => {
                // A failed read changes nothing: the watch notices an unreachable server.
                if let Ok(now) = desired(client, w).await {
                    wanted = now;
                }
                None
            }
        };
        if let Some(event) = event {
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
        }
        if !listed && wanted != Wanted::Deleted {
            continue;
        }
        let ready = pods.values().filter(|r| **r).count() as i32;
        let now = judge(w, wanted, ready);
        if now != state {
            state = now;
            progress(&state);
        }
        if state.settled() {
            return Ok(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Workload {
        Workload {
            namespace: "shop".into(),
            kind: "Deployment".into(),
            name: "web".into(),
            replicas: 3,
            selector: "app=web".into(),
            label_selector: Default::default(),
        }
    }

    #[test]
    fn a_workload_is_whole_with_its_replicas_ready_elsewhere() {
        assert!(!judge(&web(), Wanted::Replicas(3), 2).settled());
        let s = judge(&web(), Wanted::Replicas(3), 3);
        assert!(s.whole && !s.deleted);
        // scaled down during the drain: fewer suffice
        assert!(judge(&web(), Wanted::Replicas(1), 1).whole);
    }

    #[test]
    fn a_deleted_workload_is_not_waited_for_and_is_not_called_whole() {
        let s = judge(&web(), Wanted::Deleted, 0);
        assert!(s.settled());
        assert!(s.deleted && !s.whole);
    }
}
