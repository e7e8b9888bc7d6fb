//! The eviction engine: cordon, evict (bounded, normal pods before
//! system-critical ones, uid preconditions), react to PodDisruptionBudgets as
//! soon as they free, watch until the pods are gone, then wait until the
//! workloads are whole again. Every step is idempotent, so a re-run after an
//! interruption finishes the job without repeating it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, anyhow, bail};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, watcher};
use serde::Serialize;
use tokio::sync::watch;
use tokio::time::Instant;

use super::plan::{Action, DrainPlan, PodPlan};
use super::record::{DRAINED_PODS, merged};
use super::workloads::{WorkloadState, wait_workloads_whole};

pub use super::reach::LOST_AFTER;
pub(crate) use super::reach::Reachability;

/// How to carry out a plan.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// `--grace-period`: `None` uses each pod's own terminationGracePeriodSeconds.
    pub grace_period: Option<u32>,
    /// At most this many evictions in flight.
    pub concurrency: usize,
    /// Wait until the evicted pods' workloads are whole again.
    pub wait_workloads: bool,
    /// Bounds the whole run.
    pub timeout: Option<Duration>,
    /// The flag that set `timeout`, as the user typed it, for the message
    /// when it is reached (`--drain-timeout` in upgrade-node).
    pub timeout_flag: &'static str,
    /// The delay kubectl announces after a refused eviction.
    pub retry_after: Duration,
    /// Flips to `true` on Ctrl-C: stop, leave the node cordoned.
    pub cancel: Option<watch::Receiver<bool>>,
    /// The `--pod-selector` the plan was made with.
    pub pod_selector: Option<String>,
    /// Give up when the API server has been unreachable this long.
    pub lost_after: Duration,
    /// The other nodes drained at the same time: replicas there do not
    /// count towards a workload being whole again.
    pub also_leaving: Vec<String>,
}

impl Default for ExecOptions {
    fn default() -> Self {
        Self {
            grace_period: None,
            concurrency: crate::cli::DEFAULT_CONCURRENCY as usize,
            wait_workloads: true,
            timeout: None,
            timeout_flag: "--timeout",
            retry_after: Duration::from_secs(5),
            cancel: None,
            pod_selector: None,
            lost_after: LOST_AFTER,
            also_leaving: Vec::new(),
        }
    }
}

/// What happens, as it happens (printed on stderr by the plugins).
#[derive(Debug, Clone)]
pub enum DrainEvent {
    Cordoned {
        node: String,
        already: bool,
    },
    Evicting {
        pod: String,
    },
    Deleting {
        pod: String,
    },
    /// The eviction was refused (409, or 403 NamespaceTerminating) but the pod is already
    /// being deleted: it is waited for like an evicted pod.
    AlreadyDeleting {
        namespace: String,
        name: String,
        message: String,
    },
    /// kubectl's wording: `error when evicting pods/"p" -n "ns" (will retry after 5s): ...`.
    Retry {
        namespace: String,
        name: String,
        after: Duration,
        message: String,
    },
    /// The pod is gone (uid no longer on the node).
    Gone {
        pod: String,
        action: Action,
    },
    WaitingWorkloads {
        workloads: Vec<String>,
    },
    /// A workload that cannot be whole again until the operator acts, and why.
    Held {
        workload: String,
        why: String,
    },
    Workload(WorkloadState),
}

impl DrainEvent {
    /// The line kubectl drain would print for it.
    pub fn line(&self) -> String {
        match self {
            DrainEvent::Cordoned {
                node,
                already: false,
            } => format!("node/{node} cordoned"),
            DrainEvent::Cordoned {
                node,
                already: true,
            } => format!("node/{node} already cordoned"),
            DrainEvent::Evicting { pod } => format!("evicting pod {pod}"),
            DrainEvent::Deleting { pod } => format!("deleting finished pod {pod}"),
            DrainEvent::Retry {
                namespace,
                name,
                after,
                message,
            } => format!(
                "error when evicting pods/{name:?} -n {namespace:?} (will retry after {}): {message}",
                humantime::format_duration(*after)
            ),
            DrainEvent::AlreadyDeleting {
                namespace,
                name,
                message,
            } => format!(
                "pod/{name} -n {namespace} is already being deleted ({message}): waiting for it to go"
            ),
            DrainEvent::Gone {
                pod,
                action: Action::Delete,
            } => format!("pod/{} deleted", short(pod)),
            DrainEvent::Gone {
                pod,
                action: Action::Wait,
            } => format!("pod/{} terminated", short(pod)),
            DrainEvent::Gone { pod, .. } => format!("pod/{} evicted", short(pod)),
            DrainEvent::Held { workload, why } => format!("{workload}: {why}"),
            DrainEvent::WaitingWorkloads { workloads } => {
                format!("waiting for {} to be whole again", workloads.join(", "))
            }
            DrainEvent::Workload(w) if w.deleted => format!(
                "{}/{}: deleted, its pods are not coming back: nothing to wait for",
                w.namespace, w.workload
            ),
            DrainEvent::Workload(w) => format!(
                "{}/{}: {}/{} ready elsewhere{}",
                w.namespace,
                w.workload,
                w.ready,
                w.replicas,
                if w.whole { " (whole)" } else { "" }
            ),
        }
    }
}

fn short(key: &str) -> &str {
    key.split_once('/').map(|(_, n)| n).unwrap_or(key)
}

pub type Progress<'a> = dyn Fn(&DrainEvent) + Send + Sync + 'a;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DrainOutcome {
    Drained,
    Interrupted,
    TimedOut,
    Failed,
}

/// The result of executing a plan.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DrainReport {
    pub node: String,
    pub outcome: DrainOutcome,
    pub cordoned: bool,
    /// Pods evicted and gone.
    pub evicted: Vec<String>,
    /// Finished pods deleted.
    pub deleted: Vec<String>,
    /// Pods still on the node that this drain should have moved.
    pub left: Vec<String>,
    pub workloads: Vec<WorkloadState>,
    /// Workloads that cannot be whole again until the operator acts: why, and what frees them.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub seconds: f64,
}

impl DrainReport {
    /// What is left undone, for people.
    pub fn undone(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .left
            .iter()
            .map(|p| format!("pod {p} still on the node"))
            .collect();
        v.extend(self.workloads.iter().filter(|w| !w.settled()).map(|w| {
            let key = format!("{}/{}", w.namespace, w.workload);
            let why = self
                .held
                .get(&key)
                .map(|why| format!(": {why}"))
                .unwrap_or_default();
            format!("{key} has {}/{} ready replicas{why}", w.ready, w.replicas)
        }));
        v
    }
}

#[derive(Default)]
struct State {
    cordoned: bool,
    gone: BTreeMap<String, Action>,
    workloads: BTreeMap<String, WorkloadState>,
    held: BTreeMap<String, String>,
}

/// Executes a plan that was not refused. Never panics on cluster errors:
/// the report says how far it got and what is left.
pub async fn execute(
    client: &Client,
    plan: &DrainPlan,
    node: &Node,
    opts: &ExecOptions,
    progress: &Progress<'_>,
) -> DrainReport {
    let started = Instant::now();
    let state = Arc::new(Mutex::new(State::default()));
    let record = {
        let state = state.clone();
        move |e: &DrainEvent| {
            let mut s = state.lock().expect("state");
            match e {
                DrainEvent::Cordoned { .. } => s.cordoned = true,
                DrainEvent::Gone { pod, action } => {
                    s.gone.insert(pod.clone(), *action);
                }
                DrainEvent::Workload(w) => {
                    s.workloads
                        .insert(format!("{}/{}", w.namespace, w.workload), w.clone());
                }
                DrainEvent::Held { workload, why } => {
                    s.held.insert(workload.clone(), why.clone());
                }
                _ => {}
            }
            drop(s);
            progress(e);
        }
    };
    let deadline = opts.timeout.map(|t| started + t);
    let mut cancel = opts.cancel.clone();
    let work = run(client, plan, node, opts, &record);
    let (outcome, error) = tokio::select! {
        r = work => match r {
            Ok(()) => (DrainOutcome::Drained, None),
            Err(e) => (DrainOutcome::Failed, Some(format!("{e:#}"))),
        },
        _ = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        } => (DrainOutcome::TimedOut, Some(format!(
            "{} {} reached", opts.timeout_flag, humantime::format_duration(opts.timeout.unwrap_or_default())
        ))),
        _ = async {
            match cancel.as_mut() {
                Some(rx) => { let _ = rx.wait_for(|v| *v).await; }
                None => std::future::pending().await,
            }
        } => (DrainOutcome::Interrupted, Some("interrupted".to_string())),
    };
    let s = state.lock().expect("state");
    let moving = |p: &&PodPlan| p.action.moves();
    let pick = |want: &[Action]| -> Vec<String> {
        s.gone
            .iter()
            .filter(|(_, a)| want.contains(a))
            .map(|(k, _)| k.clone())
            .collect()
    };
    DrainReport {
        node: plan.node.clone(),
        outcome,
        cordoned: s.cordoned || plan.already_cordoned,
        evicted: pick(&[Action::Evict, Action::Destroy, Action::Wait]),
        deleted: pick(&[Action::Delete]),
        left: plan
            .pods
            .iter()
            .filter(moving)
            .map(PodPlan::key)
            .filter(|k| !s.gone.contains_key(k))
            .collect(),
        workloads: s.workloads.values().cloned().collect(),
        held: s.held.clone(),
        error,
        seconds: started.elapsed().as_secs_f64(),
    }
}

async fn run(
    client: &Client,
    plan: &DrainPlan,
    node: &Node,
    opts: &ExecOptions,
    progress: &Progress<'_>,
) -> anyhow::Result<()> {
    if plan.refused() {
        bail!(
            "the plan for node/{} was refused; nothing to execute",
            plan.node
        );
    }
    let name = plan.node.as_str();
    // 1. Cordon, recording the pods this drain moves (merged with any earlier run's).
    let record = serde_json::to_string(&merged(node, &plan.pods))?;
    let patch = serde_json::json!({
        "spec": { "unschedulable": true },
        "metadata": { "annotations": { DRAINED_PODS: record } },
    });
    retry_transient(opts, || async {
        Api::<Node>::all(client.clone())
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
    })
    .await
    .with_context(|| format!("could not cordon node/{name}"))?;
    progress(&DrainEvent::Cordoned {
        node: name.to_string(),
        already: plan.already_cordoned,
    });
    // A pod that landed between the plan and the cordon was never judged:
    // stop rather than evict it unseen (the cordon keeps more from landing).
    let planned: BTreeSet<&str> = plan.pods.iter().map(|p| p.uid.as_str()).collect();
    let mut params = kube::api::ListParams::default().fields(&format!("spec.nodeName={name}"));
    if let Some(sel) = opts
        .pod_selector
        .as_deref()
        .filter(|s| !s.trim().is_empty())
    {
        params = params.labels(sel);
    }
    let now = crate::list::list_all(&Api::<Pod>::all(client.clone()), &params)
        .await
        .with_context(|| format!("could not list the pods on node/{name}"))?;
    let unplanned: Vec<String> = now
        .iter()
        .filter(|p| !planned.contains(p.metadata.uid.as_deref().unwrap_or_default()))
        .filter(|p| !super::rules::is_daemonset_pod(p) && !super::rules::is_mirror(p))
        .map(super::rules::pod_key)
        .collect();
    if !unplanned.is_empty() {
        bail!(
            "pods landed on node/{name} after the plan was made: {}; run the same command again to plan them too",
            unplanned.join(", ")
        );
    }

    let movers: Vec<&PodPlan> = plan.pods.iter().filter(|p| p.action.moves()).collect();
    if !movers.is_empty() {
        let version = eviction_version(client).await?;
        // 2. Watch the node's pods: "gone" is judged by uid from this stream.
        let (present_tx, present_rx) = watch::channel(None);
        let pod_watch = AbortOnDrop(tokio::spawn(watch_node_pods(
            client.clone(),
            name.to_string(),
            present_tx,
            opts.lost_after,
            // On a NotReady node nothing confirms a deletion: a pod counts as
            // gone once it is terminating (kubectl --skip-wait-for-delete-timeout).
            !super::capacity::node_ready(node),
        )));
        // 3. Watch the PDBs involved, to retry the moment a budget frees.
        let (pdb_tx, pdb_rx) = watch::channel(PdbView::default());
        let _pdb_watch = movers
            .iter()
            .any(|p| !p.pdbs.is_empty())
            .then(|| AbortOnDrop(tokio::spawn(watch_pdbs(client.clone(), pdb_tx))));
        let turns: Turns = movers
            .iter()
            .flat_map(|p| p.pdbs.iter())
            .map(|k| (k.clone(), Arc::new(tokio::sync::Mutex::new(()))))
            .collect();

        // Finished pods first (nothing runs in them), then normal, then critical.
        let finished: Vec<&PodPlan> = movers
            .iter()
            .copied()
            .filter(|p| p.action == Action::Delete)
            .collect();
        for p in &finished {
            progress(&DrainEvent::Deleting { pod: p.key() });
            delete_finished(client, p, opts).await?;
        }
        let waiting: Vec<&PodPlan> = movers
            .iter()
            .copied()
            .filter(|p| p.action == Action::Wait)
            .collect();
        let tiers: [Vec<&PodPlan>; 2] = [false, true].map(|critical| {
            movers
                .iter()
                .copied()
                .filter(|p| {
                    matches!(p.action, Action::Evict | Action::Destroy) && p.critical == critical
                })
                .collect()
        });
        let mut first = true;
        for tier in tiers {
            let evictions = futures::stream::iter(tier.iter().map(|p| async {
                evict(client, version, p, opts, &pdb_rx, &turns, progress)
                    .await
                    .map(|e| (p.uid.clone(), e))
            }))
            .buffer_unordered(opts.concurrency.max(1))
            .try_collect::<Vec<(String, Evicted)>>();
            // kubectl evictPods: a 404 is success with no wait for deletion.
            let gone: BTreeSet<String> = evictions
                .await?
                .into_iter()
                .filter(|(_, e)| *e == Evicted::Gone)
                .map(|(uid, _)| uid)
                .collect();
            for p in tier.iter().filter(|p| gone.contains(&p.uid)) {
                progress(&DrainEvent::Gone {
                    pod: p.key(),
                    action: p.action,
                });
            }
            let mut expect: Vec<&PodPlan> = tier
                .iter()
                .copied()
                .filter(|p| !gone.contains(&p.uid))
                .collect();
            if first {
                expect.extend(finished.iter().copied());
                expect.extend(waiting.iter().copied());
                first = false;
            }
            wait_gone(&expect, present_rx.clone(), progress).await?;
        }
        drop(pod_watch);
    }

    // 4. The workloads whole again, ready replicas elsewhere.
    let workloads = plan.workloads();
    if opts.wait_workloads && !workloads.is_empty() {
        progress(&DrainEvent::WaitingWorkloads {
            workloads: workloads
                .iter()
                .map(|w| format!("{}/{}", w.namespace, w.id()))
                .collect(),
        });
        if plan.not_ready.is_some() {
            for (workload, why) in super::lifecycle::statefulset_waits(&plan.node, &plan.pods) {
                progress(&DrainEvent::Held { workload, why });
            }
        }
        let mut leaving = vec![name.to_string()];
        leaving.extend(opts.also_leaving.iter().cloned());
        let report = |w: &WorkloadState| progress(&DrainEvent::Workload(w.clone()));
        wait_workloads_whole(client, &workloads, &leaving, &report).await?;
    }
    Ok(())
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// policy/v1 when discovery advertises it for pods/eviction, else policy/v1beta1.
/// kubernetes/kubectl pkg/drain/drain.go CheckEvictionSupport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvictionVersion {
    V1,
    V1beta1,
}

impl EvictionVersion {
    pub fn api_version(self) -> &'static str {
        match self {
            EvictionVersion::V1 => "policy/v1",
            EvictionVersion::V1beta1 => "policy/v1beta1",
        }
    }
}

pub async fn eviction_version(client: &Client) -> anyhow::Result<EvictionVersion> {
    let list = client
        .list_core_api_resources("v1")
        .await
        .context("could not read the API discovery (/api/v1)")?;
    let eviction = list
        .resources
        .iter()
        .find(|r| r.name == "pods/eviction" && r.kind == "Eviction")
        .context("the server offers no pods/eviction subresource; safedrain only evicts through it (PodDisruptionBudgets would be bypassed otherwise)")?;
    Ok(
        match (eviction.group.as_deref(), eviction.version.as_deref()) {
            (Some("policy"), Some("v1")) => EvictionVersion::V1,
            _ => EvictionVersion::V1beta1,
        },
    )
}

/// How an eviction (or delete) answer is handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 404: the pod is gone; nothing to wait for.
    AlreadyGone,
    /// 409: the uid precondition failed (a same-name pod replaced it), or a
    /// conflicting delete or PDB update: the pod may still exist, re-read it.
    Conflict(String),
    /// 403 with cause NamespaceTerminating: its namespace is being deleted.
    NamespaceTerminating(String),
    /// 429: a PodDisruptionBudget (or the server) says not now.
    Retry(String),
    /// 500 "more than one PodDisruptionBudget": stop.
    MultiplePdbs(String),
    /// 5xx and timeouts from the server: try again.
    Transient(String),
    /// The server could not be reached: try again, for a while.
    Unreachable(String),
    /// Anything else (403, 422...): stop.
    Fatal(String),
}

/// The pod an eviction was for, as read again after a 409 or a 403.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNow {
    /// Not found, or a same-name pod with another uid.
    Gone,
    /// Still there, and whether it is being deleted.
    Present { terminating: bool },
}

impl PodNow {
    pub fn of(pod: Option<&Pod>, uid: &str) -> PodNow {
        match pod {
            Some(p) if p.metadata.uid.as_deref() == Some(uid) => PodNow::Present {
                terminating: super::rules::is_terminating(p),
            },
            _ => PodNow::Gone,
        }
    }
}

/// What the engine does after an answer that needed the pod read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterReread {
    /// Gone: count it, nothing to wait for.
    Gone,
    /// Being deleted: wait for it to go, as after an accepted eviction.
    WaitDeletion,
    /// Still running: ask again.
    Retry,
}

/// kubernetes/kubectl `pkg/drain/drain.go` evictPods: a NamespaceTerminating
/// 403 is waited through when the pod is already terminating and retried
/// otherwise; a 409 re-reads the pod (its uid decides whether it is gone).
pub fn after_reread(now: PodNow) -> AfterReread {
    match now {
        PodNow::Gone => AfterReread::Gone,
        PodNow::Present { terminating: true } => AfterReread::WaitDeletion,
        PodNow::Present { terminating: false } => AfterReread::Retry,
    }
}

/// How an eviction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evicted {
    /// Accepted (or the pod is being deleted): wait for it to go.
    Requested,
    /// Already gone: no wait.
    Gone,
}

/// Classifies a failed request. kube-apiserver `pkg/registry/core/pod/storage/eviction.go`.
pub fn classify(err: &kube::Error) -> Answer {
    match err {
        kube::Error::Api(s) => {
            let causes: Vec<String> = s
                .details
                .iter()
                .flat_map(|d| d.causes.iter())
                .map(|c| c.message.clone())
                .filter(|m| !m.is_empty())
                .collect();
            let message = if causes.is_empty() {
                s.message.clone()
            } else {
                format!("{} ({})", s.message, causes.join("; "))
            };
            match s.code {
                404 => Answer::AlreadyGone,
                409 => Answer::Conflict(message),
                // k8s.io/api core/v1 NamespaceTerminatingCause, set by the
                // namespace lifecycle admission plugin.
                403 if s
                    .details
                    .iter()
                    .flat_map(|d| d.causes.iter())
                    .any(|c| c.reason == "NamespaceTerminating") =>
                {
                    Answer::NamespaceTerminating(message)
                }
                429 => Answer::Retry(message),
                500 if s.message.contains("more than one PodDisruptionBudget") => {
                    Answer::MultiplePdbs(message)
                }
                408 | 500..=599 => Answer::Transient(message),
                _ => Answer::Fatal(message),
            }
        }
        other => Answer::Unreachable(other.to_string()),
    }
}

pub(crate) fn eviction_request(
    version: EvictionVersion,
    pod: &PodPlan,
    grace: Option<u32>,
) -> anyhow::Result<http::Request<Vec<u8>>> {
    let mut delete_options = serde_json::json!({ "preconditions": { "uid": pod.uid } });
    if let Some(g) = grace {
        delete_options["gracePeriodSeconds"] = g.into();
    }
    let body = serde_json::json!({
        "apiVersion": version.api_version(),
        "kind": "Eviction",
        "metadata": { "name": pod.name, "namespace": pod.namespace },
        "deleteOptions": delete_options,
    });
    let url = format!(
        "/api/v1/namespaces/{}/pods/{}/eviction",
        pod.namespace, pod.name
    );
    http::Request::post(url)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(serde_json::to_vec(&body)?)
        .context("could not build the eviction request")
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64.saturating_mul(1 << attempt.min(5))).min(Duration::from_secs(5))
}

/// Retries an idempotent call through transient failures (bounded by the caller's deadline).
async fn retry_transient<F, Fut>(opts: &ExecOptions, mut call: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = kube::Result<()>>,
{
    let mut attempt = 0;
    let mut reach = Reachability::default();
    loop {
        match call().await {
            Ok(()) => return Ok(()),
            Err(e) => match classify(&e) {
                Answer::Unreachable(m) => {
                    if reach.lost(opts.lost_after) {
                        return Err(lost(opts, &m));
                    }
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                Answer::Transient(m) | Answer::Retry(m) => {
                    reach.reached();
                    tracing::debug!("retrying after {m}");
                    tokio::time::sleep(backoff(attempt)).await;
                    attempt += 1;
                }
                _ => return Err(e.into()),
            },
        }
    }
}

fn lost(opts: &ExecOptions, message: &str) -> anyhow::Error {
    anyhow!(
        "lost the connection to the API server (unreachable for {}): {message}",
        humantime::format_duration(opts.lost_after)
    )
}

/// What the PodDisruptionBudget watch has shown: each budget's last status, and
/// whether the watch is current (listed, and no error since its last event).
#[derive(Debug, Clone, Default)]
struct PdbView {
    budgets: BTreeMap<String, PdbSeen>,
    current: bool,
}

/// While the PDB watch is current, a refused pod asks again when the watched budget
/// frees (a status write reaches the watch as the eviction API reads it: eviction.go
/// checkAndDecrement goes by `status.disruptionsAllowed`), and otherwise only this
/// often, in case the connection died without an error.
const PDB_RECHECK: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
struct PdbSeen {
    resource_version: String,
    allowed: i32,
    healthy: i32,
    desired: i32,
}

async fn evict(
    client: &Client,
    version: EvictionVersion,
    pod: &PodPlan,
    opts: &ExecOptions,
    pdbs: &watch::Receiver<PdbView>,
    turns: &Turns,
    progress: &Progress<'_>,
) -> anyhow::Result<Evicted> {
    progress(&DrainEvent::Evicting { pod: pod.key() });
    let pods: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let mut attempt = 0;
    let mut reach = Reachability::default();
    let mut refused_at: Option<Instant> = None;
    loop {
        // Once refused by a budget, pods of the same PDB take turns, and skip
        // asking while the watched budget shows no room: kubectl drain asks
        // every 5 s (pkg/drain/drain.go evictPods); here the watch says when.
        // Still ask every retry delay while the watch is failing or relisting,
        // and every PDB_RECHECK while it is current.
        let turn = match (refused_at, pod.pdbs.first().and_then(|k| turns.get(k))) {
            (Some(at), Some(turn)) => {
                let guard = turn.clone().lock_owned().await;
                let key = &pod.pdbs[0];
                let (seen, current) = {
                    let view = pdbs.borrow();
                    (view.budgets.get(key).cloned(), view.current)
                };
                let patience = if current {
                    PDB_RECHECK
                } else {
                    opts.retry_after
                };
                if let Some(seen) = seen.filter(|s| s.allowed <= 0)
                    && at.elapsed() < patience
                {
                    drop(guard);
                    let left = patience.saturating_sub(at.elapsed());
                    wait_for_budget(pdbs, &[(key.clone(), Some(seen))], left).await;
                    continue;
                }
                Some(guard)
            }
            _ => None,
        };
        let request = eviction_request(version, pod, opts.grace_period)?;
        let err = match client.request::<serde_json::Value>(request).await {
            Ok(_) => return Ok(Evicted::Requested),
            Err(e) => e,
        };
        drop(turn);
        match classify(&err) {
            Answer::AlreadyGone => return Ok(Evicted::Gone),
            Answer::Conflict(m) | Answer::NamespaceTerminating(m) => {
                let namespace_terminating =
                    matches!(classify(&err), Answer::NamespaceTerminating(_));
                let now = match pods.get_opt(&pod.name).await {
                    Ok(p) => PodNow::of(p.as_ref(), &pod.uid),
                    // Could not read it: ask again after a pause.
                    Err(_) => PodNow::Present { terminating: false },
                };
                match after_reread(now) {
                    AfterReread::Gone => return Ok(Evicted::Gone),
                    AfterReread::WaitDeletion => {
                        progress(&DrainEvent::AlreadyDeleting {
                            namespace: pod.namespace.clone(),
                            name: pod.name.clone(),
                            message: m,
                        });
                        return Ok(Evicted::Requested);
                    }
                    AfterReread::Retry => {
                        // kubectl retries a terminating namespace after its
                        // retry delay; a conflict clears in moments.
                        let after = if namespace_terminating {
                            opts.retry_after
                        } else {
                            backoff(attempt)
                        };
                        attempt += 1;
                        retry_in(progress, pod, after, m).await;
                    }
                }
            }
            Answer::MultiplePdbs(m) => {
                // The plan may have seen none of them (created since): then no empty list.
                let which = if pod.pdbs.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", pod.pdbs.join(", "))
                };
                return Err(anyhow!(
                    "error when evicting pods/{:?} -n {:?}: {m}; stopped: the eviction API cannot evict a pod selected by several PodDisruptionBudgets{which}",
                    pod.name,
                    pod.namespace,
                ));
            }
            Answer::Fatal(m) => {
                return Err(anyhow!(
                    "error when evicting pods/{:?} -n {:?}: {m}",
                    pod.name,
                    pod.namespace
                ));
            }
            Answer::Retry(m) => {
                reach.reached();
                // Name the budget with its numbers (kubectl shows only the message).
                let seen_now: Vec<(String, Option<PdbSeen>)> = {
                    let view = pdbs.borrow();
                    pod.pdbs
                        .iter()
                        .map(|k| (k.clone(), view.budgets.get(k).cloned()))
                        .collect()
                };
                let detail: Vec<String> = seen_now
                    .iter()
                    .map(|(k, s)| match s {
                        Some(s) => format!(
                            "PodDisruptionBudget {k}: {} disruption(s) allowed, {} healthy, {} desired",
                            s.allowed, s.healthy, s.desired
                        ),
                        None => format!("PodDisruptionBudget {k}"),
                    })
                    .collect();
                let message = if detail.is_empty() {
                    m
                } else {
                    format!("{m} [{}]", detail.join("; "))
                };
                progress(&DrainEvent::Retry {
                    namespace: pod.namespace.clone(),
                    name: pod.name.clone(),
                    after: opts.retry_after,
                    message,
                });
                refused_at = Some(Instant::now());
                wait_for_budget(pdbs, &seen_now, opts.retry_after).await;
            }
            Answer::Transient(m) | Answer::Unreachable(m) => {
                if matches!(classify(&err), Answer::Unreachable(_)) {
                    if reach.lost(opts.lost_after) {
                        return Err(lost(opts, &m));
                    }
                } else {
                    reach.reached();
                }
                let after = backoff(attempt);
                attempt += 1;
                retry_in(progress, pod, after, m).await;
            }
        }
    }
}

/// Says that `pod`'s eviction is asked again after `after`, and waits that long.
async fn retry_in(progress: &Progress<'_>, pod: &PodPlan, after: Duration, message: String) {
    progress(&DrainEvent::Retry {
        namespace: pod.namespace.clone(),
        name: pod.name.clone(),
        after,
        message,
    });
    tokio::time::sleep(after).await;
}

/// One turn per PodDisruptionBudget: pods waiting on the same budget retry one at a time.
type Turns = BTreeMap<String, Arc<tokio::sync::Mutex<()>>>;

/// Returns after `delay`, or as soon as one of the budgets shows room in a
/// newer status than the one seen (`seen`: PDB key and the status then), or
/// when the watch becomes or stops being current (the caller's patience
/// depends on it).
async fn wait_for_budget(
    pdbs: &watch::Receiver<PdbView>,
    seen: &[(String, Option<PdbSeen>)],
    delay: Duration,
) {
    let mut rx = pdbs.clone();
    let was_current = rx.borrow().current;
    let freed = rx.wait_for(|view| {
        view.current != was_current
            || seen.iter().any(|(k, before)| {
                view.budgets.get(k).is_some_and(|s| {
                    s.allowed > 0
                        && Some(&s.resource_version) != before.as_ref().map(|b| &b.resource_version)
                })
            })
    });
    tokio::select! {
        _ = tokio::time::sleep(delay) => {}
        r = freed, if !seen.is_empty() => {
            if r.is_err() {
                tokio::time::sleep(delay).await;
            }
        }
    }
}

async fn delete_finished(client: &Client, pod: &PodPlan, opts: &ExecOptions) -> anyhow::Result<()> {
    let api: Api<Pod> = Api::namespaced(client.clone(), &pod.namespace);
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(pod.uid.clone()),
            resource_version: None,
        }),
        grace_period_seconds: opts.grace_period,
        ..Default::default()
    };
    retry_transient(opts, || async {
        match api.delete(&pod.name, &params).await {
            Ok(_) => Ok(()),
            // 409 here is the uid precondition: a same-name pod replaced it.
            Err(e) if matches!(classify(&e), Answer::AlreadyGone | Answer::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    })
    .await
    .with_context(|| format!("could not delete the finished pod {}", pod.key()))
}

/// Keeps the set of pod uids on the node current (None until the first list).
/// The watcher re-lists on a cut watch or a 410, so the set stays true.
async fn watch_node_pods(
    client: Client,
    node: String,
    tx: watch::Sender<Option<BTreeSet<String>>>,
    lost_after: Duration,
    terminating_is_gone: bool,
) {
    let api: Api<Pod> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("spec.nodeName={node}"));
    let mut stream = watcher(api, config).default_backoff().boxed();
    let mut building: BTreeSet<String> = BTreeSet::new();
    let mut reach = Reachability::default();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            if reach.lost(lost_after) {
                // Ends the watch: the waiter reports the lost connection.
                return;
            }
            continue;
        };
        reach.reached();
        let uid = |p: &Pod| p.metadata.uid.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => building.clear(),
            watcher::Event::InitApply(p) => {
                if !(terminating_is_gone && super::rules::is_terminating(&p)) {
                    building.insert(uid(&p));
                }
            }
            watcher::Event::InitDone => {
                let _ = tx.send(Some(std::mem::take(&mut building)));
            }
            watcher::Event::Apply(p) => tx.send_modify(|s| {
                if let Some(s) = s {
                    if terminating_is_gone && super::rules::is_terminating(&p) {
                        s.remove(&uid(&p));
                    } else {
                        s.insert(uid(&p));
                    }
                }
            }),
            watcher::Event::Delete(p) => tx.send_modify(|s| {
                if let Some(s) = s {
                    s.remove(&uid(&p));
                }
            }),
        }
    }
}

async fn watch_pdbs(client: Client, tx: watch::Sender<PdbView>) {
    let api: Api<PodDisruptionBudget> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let Ok(event) = event else {
            // Cut or refused: the statuses may be behind until the next event.
            tx.send_if_modified(|v| std::mem::replace(&mut v.current, false));
            continue;
        };
        let seen = |b: &PodDisruptionBudget| {
            let s = b.status.clone().unwrap_or_default();
            (
                format!(
                    "{}/{}",
                    b.metadata.namespace.as_deref().unwrap_or_default(),
                    b.metadata.name.as_deref().unwrap_or_default()
                ),
                PdbSeen {
                    resource_version: b.metadata.resource_version.clone().unwrap_or_default(),
                    allowed: s.disruptions_allowed.unwrap_or(0),
                    healthy: s.current_healthy.unwrap_or(0),
                    desired: s.desired_healthy.unwrap_or(0),
                },
            )
        };
        match event {
            watcher::Event::Apply(b) => {
                let (k, v) = seen(&b);
                tx.send_modify(|view| {
                    view.budgets.insert(k, v);
                    view.current = true;
                });
            }
            watcher::Event::InitApply(b) => {
                let (k, v) = seen(&b);
                tx.send_modify(|view| {
                    view.budgets.insert(k, v);
                });
            }
            watcher::Event::Delete(b) => {
                let (k, _) = seen(&b);
                tx.send_modify(|view| {
                    view.budgets.remove(&k);
                    view.current = true;
                });
            }
            // A relist: current once it is complete.
            watcher::Event::Init => {
                tx.send_if_modified(|v| std::mem::replace(&mut v.current, false));
            }
            watcher::Event::InitDone => tx.send_modify(|v| v.current = true),
        }
    }
}

/// Waits (on the watch, no polling) until none of `pods` is on the node by uid.
async fn wait_gone(
    pods: &[&PodPlan],
    mut present: watch::Receiver<Option<BTreeSet<String>>>,
    progress: &Progress<'_>,
) -> anyhow::Result<()> {
    let mut left: BTreeMap<&str, &PodPlan> = pods.iter().map(|p| (p.uid.as_str(), *p)).collect();
    loop {
        {
            let current = present.borrow_and_update();
            if let Some(set) = current.as_ref() {
                let gone: Vec<&str> = left.keys().copied().filter(|u| !set.contains(*u)).collect();
                for uid in gone {
                    let p = left.remove(uid).expect("present");
                    progress(&DrainEvent::Gone {
                        pod: p.key(),
                        action: p.action,
                    });
                }
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        present.changed().await.map_err(|_| {
            anyhow!(
                "lost the connection to the API server: the watch on the node's pods kept failing"
            )
        })?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, message: &str, cause: Option<&str>) -> kube::Error {
        let mut status = serde_json::json!({ "code": code, "message": message });
        if let Some(c) = cause {
            status["details"] =
                serde_json::json!({ "causes": [{ "reason": "DisruptionBudget", "message": c }] });
        }
        kube::Error::Api(Box::new(serde_json::from_value::<Status>(status).unwrap()))
    }

    #[test]
    fn answers_are_classified_like_the_apiserver_means_them() {
        assert_eq!(classify(&api(404, "not found", None)), Answer::AlreadyGone);
        assert!(matches!(
            classify(&api(409, "Precondition failed: UID in precondition", None)),
            Answer::Conflict(_)
        ));
        assert_eq!(
            classify(&api(429, "Cannot evict pod as it would violate the pod's disruption budget.", Some("The disruption budget web needs 3 healthy pods and has 3 currently"))),
            Answer::Retry("Cannot evict pod as it would violate the pod's disruption budget. (The disruption budget web needs 3 healthy pods and has 3 currently)".into())
        );
        assert!(matches!(
            classify(&api(
                500,
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                None
            )),
            Answer::MultiplePdbs(_)
        ));
        assert!(matches!(
            classify(&api(500, "etcd hiccup", None)),
            Answer::Transient(_)
        ));
        assert!(matches!(
            classify(&api(503, "unavailable", None)),
            Answer::Transient(_)
        ));
        assert!(matches!(
            classify(&api(403, "forbidden", None)),
            Answer::Fatal(_)
        ));
    }

    #[test]
    fn eviction_body_carries_the_uid_precondition() {
        let pod = PodPlan {
            namespace: "default".into(),
            name: "web-1".into(),
            uid: "u-1".into(),
            owner: None,
            workload: None,
            action: Action::Evict,
            rule: super::super::Rule::Replicated,
            reason: String::new(),
            critical: false,
            pdbs: vec![],
            fits_on: None,
            findings: vec![],
        };
        let req = eviction_request(EvictionVersion::V1beta1, &pod, Some(0)).unwrap();
        assert_eq!(req.uri(), "/api/v1/namespaces/default/pods/web-1/eviction");
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        assert_eq!(body["apiVersion"], "policy/v1beta1");
        assert_eq!(body["deleteOptions"]["preconditions"]["uid"], "u-1");
        assert_eq!(body["deleteOptions"]["gracePeriodSeconds"], 0);
    }

    #[test]
    fn kubectl_wording() {
        let e = DrainEvent::Retry {
            namespace: "ns".into(),
            name: "p".into(),
            after: Duration::from_secs(5),
            message: "m".into(),
        };
        assert_eq!(
            e.line(),
            "error when evicting pods/\"p\" -n \"ns\" (will retry after 5s): m"
        );
        assert_eq!(
            DrainEvent::Gone {
                pod: "ns/p".into(),
                action: Action::Evict
            }
            .line(),
            "pod/p evicted"
        );
        assert_eq!(
            DrainEvent::Cordoned {
                node: "n".into(),
                already: false
            }
            .line(),
            "node/n cordoned"
        );
    }

    #[test]
    fn an_unreachable_server_is_given_up_after_a_while() {
        let refused = kube::Error::ReadEvents(std::io::Error::other("connection reset"));
        assert!(matches!(classify(&refused), Answer::Unreachable(_)));
        let mut reach = Reachability::default();
        assert!(!reach.lost(Duration::from_secs(60)));
        assert!(
            reach.lost(Duration::ZERO),
            "failing since the first failure"
        );
        reach.reached();
        assert!(!reach.lost(Duration::from_secs(60)), "a success resets it");
    }

    #[test]
    fn backoff_is_bounded() {
        assert_eq!(backoff(0), Duration::from_millis(250));
        assert_eq!(backoff(20), Duration::from_secs(5));
    }
}
