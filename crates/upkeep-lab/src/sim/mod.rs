//! The simulated rest of the cluster: controllers, the scheduler, kubelets and node lifecycle.
//!
//! Everything runs as a handful of tokio tasks over the shared [`Lab`]:
//!
//! * one **dispatcher** reads the store's event stream, keeps the ownership [`index::Index`]
//!   and puts keys on the work queues of the components an event concerns;
//! * each **controller** (ReplicaSet, Deployment, DaemonSet, StatefulSet, Job, disruption,
//!   garbage collector, scheduler) is one task that drains its queue and also resyncs every
//!   object periodically (level-triggered, idempotent — like upstream informers' resync);
//! * the **kubelet** is one task for all nodes: pod state changes run from a single timer
//!   heap (no task per pod), heartbeats are batched;
//! * **node lifecycle** (pkg/controller/nodelifecycle) is one periodic task.
//!
//! Lab-facing seams (documented in the crate README): [`SimConfig`] (extension
//! `"sim.config"`), [`KubeletControl`] (`"sim.kubelets"`, also
//! `POST /lab/v1/nodes/{node}/kubelet`), [`StaticPods`] (`"static-pods"`), and the node shell's
//! exec hook ([`crate::exec`]).

// Store errors are the API's Status objects; the simulation passes them through unboxed.
#![allow(clippy::result_large_err)]

pub mod controlplane;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod events;
pub mod gc;
pub mod index;
pub mod job;
pub mod kubelet;
pub mod namespace;
pub mod nodelifecycle;
pub mod replicaset;
pub mod revision;
pub mod scheduler;
pub mod statefulset;
pub mod util;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::Notify;
use tokio::sync::broadcast::error::RecvError;

use crate::lab::{Lab, LabPlugin};
use crate::resources::{self, Resource};
use crate::store::{EventKind, WatchEvent};

use index::Index;

/// Timing and behaviour of the simulation, in **lab seconds** (scaled by the lab clock).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct SimConfig {
    /// Bound pod → containers running.
    pub pod_start_seconds: f64,
    /// Running → Ready (on top of the start delay).
    pub pod_ready_seconds: f64,
    /// Upper bound on how long the kubelet honours a pod's grace period before removing it.
    pub termination_cap_seconds: f64,
    /// Run time of pods that run to completion (restartPolicy Never/OnFailure) when the pod
    /// has no `lab.upkeep.dev/run-seconds` annotation.
    pub job_run_seconds: f64,
    /// Kubelet lease renewal (pkg/kubelet/nodelease: 10 s = 40 s lease duration / 4).
    pub lease_renew_seconds: f64,
    /// Node status report frequency when nothing changes (kubelet nodeStatusReportFrequency 5m).
    pub node_status_seconds: f64,
    /// Node lifecycle: --node-monitor-grace-period (50 s since v1.32; 40 s before).
    pub node_monitor_grace_seconds: f64,
    /// Node lifecycle: --node-monitor-period.
    pub node_monitor_period_seconds: f64,
    /// DefaultTolerationSeconds admission (--default-not-ready-toleration-seconds).
    pub default_toleration_seconds: i64,
    /// Controller resync period.
    pub resync_seconds: f64,
    /// kubeadm-style cluster: mirror pods for control-plane static pods on control-plane nodes.
    pub kubeadm: bool,
    /// Event TTL (kube-apiserver --event-ttl).
    pub event_ttl_seconds: f64,
    /// `fast` (default: containers stop within `terminationCapSeconds`, probes are not
    /// waited for) or `realistic` (termination takes the pod's grace period unless
    /// `containerStopSeconds` says the containers exit sooner; readiness waits for
    /// `readinessProbe.initialDelaySeconds`).
    pub profile: Profile,
    /// Realistic profile: containers exit this long after SIGTERM (none: they use the whole
    /// grace period, like a process that ignores SIGTERM until SIGKILL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_stop_seconds: Option<f64>,
    /// How long a control-plane node's static pods take to restart during `kubeadm upgrade
    /// apply|node`; with a single control plane the API refuses connections meanwhile.
    pub control_plane_restart_seconds: f64,
}

/// The timing profile of the simulation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Profile {
    /// Quick termination and readiness, for fast tests.
    #[default]
    Fast,
    /// Real pods' timing: grace periods honoured, readiness probe delays waited for.
    Realistic,
}

impl std::str::FromStr for Profile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "fast" => Ok(Profile::Fast),
            "realistic" => Ok(Profile::Realistic),
            other => Err(format!(
                "unknown profile {other:?}: expected fast or realistic"
            )),
        }
    }
}

impl SimConfig {
    /// Lab seconds the kubelet takes to stop a terminating pod with `left` seconds of grace
    /// period remaining (pkg/kubelet/kuberuntime/kuberuntime_container.go `killContainer`:
    /// SIGTERM, then SIGKILL when the grace period is over).
    pub fn termination_seconds(&self, left: f64) -> f64 {
        let stop = match self.profile {
            Profile::Fast => self.termination_cap_seconds,
            Profile::Realistic => self.container_stop_seconds.unwrap_or(f64::INFINITY),
        };
        left.min(stop).max(0.0)
    }

    /// Lab seconds from Running to Ready. Realistic: the largest
    /// `readinessProbe.initialDelaySeconds` of the containers comes first
    /// (pkg/kubelet/prober/worker.go `doProbe`: no probe before initialDelaySeconds, and the
    /// container is not Ready until a probe succeeds).
    pub fn ready_seconds(&self, pod: &Value) -> f64 {
        let probe_delay = match self.profile {
            Profile::Fast => 0.0,
            Profile::Realistic => util::arr(pod, "/spec/containers")
                .iter()
                .filter_map(|c| c.pointer("/readinessProbe/initialDelaySeconds"))
                .filter_map(Value::as_f64)
                .fold(0.0, f64::max),
        };
        self.pod_ready_seconds + probe_delay
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            pod_start_seconds: 1.0,
            pod_ready_seconds: 0.0,
            termination_cap_seconds: 2.0,
            job_run_seconds: 5.0,
            lease_renew_seconds: 10.0,
            node_status_seconds: 300.0,
            node_monitor_grace_seconds: 50.0,
            node_monitor_period_seconds: 5.0,
            default_toleration_seconds: 300,
            resync_seconds: 30.0,
            kubeadm: false,
            event_ttl_seconds: 3600.0,
            profile: Profile::Fast,
            container_stop_seconds: None,
            control_plane_restart_seconds: 20.0,
        }
    }
}

/// The simulation's configuration slot in the lab (`lab.extension("sim.config")`).
pub fn config_slot(lab: &Lab) -> Arc<RwLock<SimConfig>> {
    lab.extension("sim.config", || RwLock::new(SimConfig::default()))
}

pub fn config(lab: &Lab) -> SimConfig {
    config_slot(lab).read().clone()
}

/// What a node's simulated kubelet is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum KubeletMode {
    /// Heartbeats, reports Ready, runs pods.
    Running,
    /// Reports `Ready=False` (reason KubeletNotReady) but keeps heartbeating.
    NotReady,
    /// Stopped: no heartbeats (the node goes `Unknown` after the grace period), no pod changes.
    Stopped,
}

/// Per-node kubelet modes (`lab.extension("sim.kubelets")`); nodes not listed run.
#[derive(Default)]
pub struct KubeletControl {
    modes: Mutex<HashMap<String, KubeletMode>>,
    /// Bumped on every change, so the kubelet notices.
    pub generation: AtomicU64,
    pub changed: Notify,
}

impl KubeletControl {
    pub fn get(lab: &Lab) -> Arc<KubeletControl> {
        lab.extension("sim.kubelets", KubeletControl::default)
    }
    pub fn mode(&self, node: &str) -> KubeletMode {
        self.modes
            .lock()
            .get(node)
            .copied()
            .unwrap_or(KubeletMode::Running)
    }
    pub fn set_mode(&self, node: &str, mode: KubeletMode) {
        self.modes.lock().insert(node.to_string(), mode);
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
    }
    pub fn running(&self, node: &str) -> bool {
        self.mode(node) != KubeletMode::Stopped
    }
}

/// Static pod manifests per control-plane node: component → image
/// (`lab.extension("static-pods")`). The kubelet creates a mirror pod for each entry that has
/// none, and when an entry changes (e.g. `kubeadm upgrade apply` writes a new manifest) it
/// updates that mirror pod's image. It never reverts a mirror pod edited through the API.
#[derive(Default)]
pub struct StaticPods {
    manifests: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    pub generation: AtomicU64,
}

impl StaticPods {
    pub fn get(lab: &Lab) -> Arc<StaticPods> {
        lab.extension("static-pods", StaticPods::default)
    }
    /// Set the image of one static pod (`component` is e.g. "kube-apiserver").
    pub fn set_image(&self, node: &str, component: &str, image: &str) {
        self.manifests
            .lock()
            .entry(node.to_string())
            .or_default()
            .insert(component.to_string(), image.to_string());
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
    /// Remove a static pod manifest (the kubelet deletes the mirror pod).
    pub fn remove(&self, node: &str, component: &str) {
        if let Some(m) = self.manifests.lock().get_mut(node) {
            m.remove(component);
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
    }
    /// The manifests of one node.
    pub fn for_node(&self, node: &str) -> BTreeMap<String, String> {
        self.manifests.lock().get(node).cloned().unwrap_or_default()
    }
    pub fn has_node(&self, node: &str) -> bool {
        self.manifests.lock().contains_key(node)
    }
    /// How many nodes have a manifest for `component`.
    pub fn nodes_with(&self, component: &str) -> usize {
        self.manifests
            .lock()
            .values()
            .filter(|m| m.contains_key(component))
            .count()
    }
}

/// A deduplicating work queue.
pub struct Queue<K> {
    set: Mutex<BTreeSet<K>>,
    pub notify: Notify,
}

impl<K: Ord + Clone> Default for Queue<K> {
    fn default() -> Self {
        Queue {
            set: Mutex::new(BTreeSet::new()),
            notify: Notify::new(),
        }
    }
}

impl<K: Ord + Clone + Hash> Queue<K> {
    pub fn add(&self, k: K) {
        if self.set.lock().insert(k) {
            self.notify.notify_one();
        }
    }
    pub fn take(&self) -> Vec<K> {
        std::mem::take(&mut *self.set.lock()).into_iter().collect()
    }
    pub fn is_empty(&self) -> bool {
        self.set.lock().is_empty()
    }
}

/// (namespace, name)
pub type Key = (String, String);

/// Work queues of every component.
#[derive(Default)]
pub struct Queues {
    pub replicaset: Queue<Key>,
    pub deployment: Queue<Key>,
    pub daemonset: Queue<Key>,
    pub statefulset: Queue<Key>,
    pub job: Queue<Key>,
    pub disruption: Queue<Key>,
    pub gc: Queue<index::ObjKey>,
    pub scheduler: Queue<Key>,
    /// Pods the kubelet should look at.
    pub kubelet_pods: Queue<Key>,
    /// Nodes the kubelet should (re)register: status defaults, lease, mirror pods.
    pub kubelet_nodes: Queue<String>,
}

/// Shared state of all simulation components.
pub struct Ctx {
    pub lab: Arc<Lab>,
    pub index: Index,
    pub q: Queues,
    pub events: events::Recorder,
    pub kubelet: kubelet::Kubelet,
    pub scheduler: scheduler::Scheduler,
    /// Node fingerprints (labels, taints, unschedulable, readiness, allocatable) so node
    /// heartbeats do not wake every DaemonSet and the scheduler.
    node_prints: Mutex<HashMap<String, u64>>,
}

impl Ctx {
    pub fn new(lab: Arc<Lab>) -> Arc<Ctx> {
        Arc::new(Ctx {
            lab,
            index: Index::default(),
            q: Queues::default(),
            events: events::Recorder::default(),
            kubelet: kubelet::Kubelet::default(),
            scheduler: scheduler::Scheduler::default(),
            node_prints: Mutex::new(HashMap::new()),
        })
    }

    pub fn cfg(&self) -> SimConfig {
        config(&self.lab)
    }

    /// Create an object in-process and record it in the index at once.
    pub fn create(&self, res: &'static Resource, obj: Value) -> crate::ApiResult<crate::Obj> {
        let ns = util::namespace(&obj).to_string();
        let o = self.lab.store.create(res, &ns, obj, false)?;
        self.index.observe(res, &o);
        Ok(o)
    }

    /// Delete a pod a controller owns, as its controller does (graceful), and
    /// record the controller's `SuccessfulDelete` event on the owner.
    pub fn delete_owned_pod(&self, owner: &Value, pod: &Value, message: &str, component: &str) {
        let deleted = self.lab.store.delete(
            &crate::resources::POD,
            util::namespace(pod),
            util::name(pod),
            &crate::store::DeleteOpts::default(),
        );
        if deleted.is_ok() {
            self.event(owner, "Normal", "SuccessfulDelete", message, component);
        }
    }

    pub fn event(&self, involved: &Value, ty: &str, reason: &str, message: &str, component: &str) {
        self.events
            .record(&self.lab, involved, ty, reason, message, component, None);
    }

    /// Route one store event to the queues that care (the informer event handlers of each
    /// upstream controller, condensed).
    fn dispatch(&self, ev: &WatchEvent) {
        let res = ev.resource;
        let obj = &ev.object;
        match ev.kind {
            EventKind::Deleted => self.index.forget(res, obj),
            _ => self.index.observe(res, obj),
        }
        let ns = util::namespace(obj).to_string();
        let name = util::name(obj).to_string();
        // Garbage collector: owners that go away, objects that arrive with owners, objects
        // waiting on deletion finalizers.
        if index::indexed(res) {
            match ev.kind {
                EventKind::Deleted => {
                    for d in self.index.dependents(util::uid(obj)) {
                        self.q.gc.add(d);
                    }
                }
                _ => {
                    let has_owner = !util::arr(obj, "/metadata/ownerReferences").is_empty();
                    let fin = util::terminating(obj)
                        && !util::arr(obj, "/metadata/finalizers").is_empty();
                    if (ev.kind == EventKind::Added && has_owner) || fin {
                        self.q.gc.add(index::okey(res, obj));
                    }
                }
            }
        }
        if res == &resources::POD {
            self.dispatch_pod(ev, &ns, &name);
        } else if res == &resources::REPLICASET {
            self.q.replicaset.add((ns.clone(), name));
            if let Some(("Deployment", owner, _)) = util::controller_of(obj) {
                self.q.deployment.add((ns.clone(), owner.to_string()));
            }
            self.pdbs_in_namespace(&ns);
        } else if res == &resources::DEPLOYMENT {
            self.q.deployment.add((ns.clone(), name));
            self.pdbs_in_namespace(&ns);
        } else if res == &resources::DAEMONSET {
            self.q.daemonset.add((ns, name));
        } else if res == &resources::STATEFULSET {
            self.q.statefulset.add((ns.clone(), name));
            self.pdbs_in_namespace(&ns);
        } else if res == &resources::JOB {
            self.q.job.add((ns, name));
        } else if res == &resources::PDB {
            self.q.disruption.add((ns, name));
        } else if res == &resources::NODE {
            let print = if ev.kind == EventKind::Deleted {
                0
            } else {
                node_fingerprint(obj)
            };
            let changed = self.node_prints.lock().insert(name.clone(), print) != Some(print);
            if ev.kind == EventKind::Deleted {
                self.node_prints.lock().remove(&name);
            }
            if changed && ev.kind != EventKind::Deleted {
                // condition and cordon taints follow at once (the lifecycle controller's
                // node informer), not only on its monitor period
                nodelifecycle::reconcile_taints(self, obj, &self.lab.clock.now_rfc3339());
            }
            if changed {
                for k in daemonset::all_keys(self) {
                    self.q.daemonset.add(k);
                }
                self.scheduler.retry_all(self);
            }
            if ev.kind == EventKind::Added || (changed && ev.kind != EventKind::Deleted) {
                self.q.kubelet_nodes.add(name);
            }
        }
    }

    fn dispatch_pod(&self, ev: &WatchEvent, ns: &str, name: &str) {
        let pod = &ev.object;
        let key = (ns.to_string(), name.to_string());
        if let Some((kind, owner, _)) = util::controller_of(pod) {
            let k = (ns.to_string(), owner.to_string());
            match kind {
                "ReplicaSet" => self.q.replicaset.add(k),
                "DaemonSet" => self.q.daemonset.add(k),
                "StatefulSet" => self.q.statefulset.add(k),
                "Job" => self.q.job.add(k),
                _ => {}
            }
        }
        // PDBs whose selector matches the pod.
        let (pdbs, _) = self
            .lab
            .store
            .list(&resources::PDB, &crate::ListQuery::in_namespace(ns));
        for p in pdbs {
            if util::spec_selector(&p).matches(pod) {
                self.q
                    .disruption
                    .add((ns.to_string(), util::name(&p).to_string()));
            }
        }
        let bound = !util::node_name(pod).is_empty();
        match ev.kind {
            EventKind::Deleted => {
                self.scheduler.retry_all(self);
                // deleted at once (grace 0): the kubelet kills what still runs in it
                self.kubelet
                    .kill_host_command(self, pod, util::node_name(pod));
                if pod
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(util::ANNOTATION_MIRROR))
                    .is_some()
                {
                    self.q.kubelet_nodes.add(util::node_name(pod).to_string());
                }
            }
            _ => {
                if ev.kind == EventKind::Added && !util::terminating(pod) {
                    // plugin/pkg/admission/defaulttolerationseconds: API-created pods get the
                    // default NoExecute tolerations (the simulation's own pods have them).
                    let secs = self.cfg().default_toleration_seconds;
                    let mut probe = (**pod).clone();
                    if util::add_default_toleration_seconds(&mut probe, secs) {
                        let _ = self.lab.store.mutate(&resources::POD, ns, name, |p| {
                            util::add_default_toleration_seconds(p, secs);
                            Ok(())
                        });
                    }
                }
                if !bound
                    && !util::terminating(pod)
                    && !util::terminal(pod)
                    && !self.scheduler.is_parked(&key)
                {
                    self.q.scheduler.add(key.clone());
                }
                if bound {
                    self.q.kubelet_pods.add(key);
                }
                if util::terminating(pod) || util::terminal(pod) {
                    self.scheduler.retry_all(self);
                }
            }
        }
    }

    fn pdbs_in_namespace(&self, ns: &str) {
        let (pdbs, _) = self
            .lab
            .store
            .list(&resources::PDB, &crate::ListQuery::in_namespace(ns));
        for p in pdbs {
            self.q
                .disruption
                .add((ns.to_string(), util::name(&p).to_string()));
        }
    }

    /// Put every object of every controller on its queue (a full resync).
    pub fn enqueue_all(&self) {
        let st = &self.lab.store;
        let keys = |res: &'static Resource| -> Vec<Key> {
            st.list(res, &Default::default())
                .0
                .iter()
                .map(|o| (util::namespace(o).to_string(), util::name(o).to_string()))
                .collect()
        };
        for k in keys(&resources::REPLICASET) {
            self.q.replicaset.add(k);
        }
        for k in keys(&resources::DEPLOYMENT) {
            self.q.deployment.add(k);
        }
        for k in keys(&resources::DAEMONSET) {
            self.q.daemonset.add(k);
        }
        for k in keys(&resources::STATEFULSET) {
            self.q.statefulset.add(k);
        }
        for k in keys(&resources::JOB) {
            self.q.job.add(k);
        }
        for k in keys(&resources::PDB) {
            self.q.disruption.add(k);
        }
        for n in st.list(&resources::NODE, &Default::default()).0 {
            self.q.kubelet_nodes.add(util::name(&n).to_string());
        }
        self.scheduler.retry_all(self);
        let q = crate::ListQuery::all()
            .fields(crate::selector::FieldSelector::parse("spec.nodeName=").expect("valid"));
        for p in st.list(&resources::POD, &q).0 {
            if !util::terminating(&p) && !util::terminal(&p) {
                self.q
                    .scheduler
                    .add((util::namespace(&p).to_string(), util::name(&p).to_string()));
            }
        }
    }

    /// Drain every queue once, synchronously. Returns true when anything was processed.
    pub fn drain_once(self: &Arc<Self>) -> bool {
        let mut any = false;
        for k in self.q.kubelet_nodes.take() {
            any = true;
            self.kubelet.sync_node(self, &k);
        }
        for k in self.q.deployment.take() {
            any = true;
            deployment::sync(self, &k);
        }
        for k in self.q.replicaset.take() {
            any = true;
            replicaset::sync(self, &k);
        }
        for k in self.q.daemonset.take() {
            any = true;
            daemonset::sync(self, &k);
        }
        for k in self.q.statefulset.take() {
            any = true;
            statefulset::sync(self, &k);
        }
        for k in self.q.job.take() {
            any = true;
            job::sync(self, &k);
        }
        let pending = self.q.scheduler.take();
        if !pending.is_empty() {
            any = true;
            self.scheduler.schedule(self, pending);
        }
        for k in self.q.kubelet_pods.take() {
            any = true;
            self.kubelet.sync_pod(self, &k);
        }
        for k in self.q.disruption.take() {
            any = true;
            disruption::sync(self, &k);
        }
        for k in self.q.gc.take() {
            any = true;
            gc::sync(self, &k);
        }
        any
    }

    /// Run everything synchronously until the cluster stops changing, with pods starting at
    /// once: a scenario's initial state is then already settled when the server starts.
    pub fn settle(self: &Arc<Self>, max_rounds: usize) {
        self.kubelet.set_instant(true);
        for _ in 0..max_rounds {
            let before = self.lab.store.current_rv();
            self.index.rebuild(&self.lab.store);
            self.enqueue_all();
            for n in self.lab.store.list(&resources::POD, &Default::default()).0 {
                if !util::node_name(&n).is_empty() {
                    self.q
                        .kubelet_pods
                        .add((util::namespace(&n).to_string(), util::name(&n).to_string()));
                }
            }
            while self.drain_once() {}
            if self.lab.store.current_rv() == before {
                break;
            }
        }
        self.kubelet.set_instant(false);
    }
}

fn node_fingerprint(node: &Value) -> u64 {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    h.write(
        util::labels(node)
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    h.write(
        node.pointer("/spec/taints")
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    h.write(
        node.pointer("/spec/unschedulable")
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    h.write(
        node.pointer("/status/allocatable")
            .map(|l| l.to_string())
            .unwrap_or_default()
            .as_bytes(),
    );
    for c in util::arr(node, "/status/conditions") {
        h.write(util::s(c, "/type").as_bytes());
        h.write(util::s(c, "/status").as_bytes());
    }
    h.finish()
}

/// The simulation as a lab plugin: loads scenarios and runs the cluster's components.
#[derive(Default)]
pub struct Sim {
    ctx: Mutex<Option<Arc<Ctx>>>,
}

impl Sim {
    /// The shared context, created on first use.
    pub fn ctx(&self, lab: &Arc<Lab>) -> Arc<Ctx> {
        self.ctx
            .lock()
            .get_or_insert_with(|| Ctx::new(lab.clone()))
            .clone()
    }
}

impl LabPlugin for Sim {
    fn name(&self) -> &'static str {
        "sim"
    }

    fn load_scenario(&self, lab: &Arc<Lab>, scenario: &str) -> anyhow::Result<bool> {
        let sc = crate::scenario::Scenario::resolve(scenario)?;
        let settle = sc.apply(lab)?;
        if settle {
            self.ctx(lab).settle(30);
        }
        Ok(true)
    }

    fn start(&self, lab: &Arc<Lab>) {
        let ctx = self.ctx(lab);
        start(ctx);
    }

    fn routes(&self) -> Option<axum::Router<Arc<Lab>>> {
        Some(routes())
    }
}

/// Start every component on the simulation's own thread (a single-threaded tokio runtime),
/// so controller work never occupies the runtime workers that answer the API: at thousands
/// of nodes a DaemonSet sync or a scheduling batch takes milliseconds of CPU each, and on
/// the server's workers that delayed TLS handshakes past clients' timeouts.
///
/// Must be called within a tokio runtime: the simulation stops when that runtime shuts
/// down (a task of it holds the thread's stop signal).
pub fn start(ctx: Arc<Ctx>) {
    // Subscribed here, before this returns: a change made right after start (by a test or
    // a client) reaches the dispatcher even if the thread has not run yet.
    let rx = ctx.lab.store.subscribe();
    ctx.index.rebuild(&ctx.lab.store);
    ctx.enqueue_all();
    for p in ctx.lab.store.list(&resources::POD, &Default::default()).0 {
        if !util::node_name(&p).is_empty() && !kubelet::settled(&p) {
            ctx.q
                .kubelet_pods
                .add((util::namespace(&p).to_string(), util::name(&p).to_string()));
        }
    }
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _stop_when_dropped = stop_tx;
        std::future::pending::<()>().await;
    });
    std::thread::Builder::new()
        .name("upkeep-lab-sim".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("building the simulation's runtime");
            rt.block_on(async move {
                spawn_components(ctx, rx);
                let _ = stop_rx.await;
            });
        })
        .expect("starting the simulation thread");
}

/// Spawn every component's task on the current runtime.
fn spawn_components(ctx: Arc<Ctx>, rx: tokio::sync::broadcast::Receiver<WatchEvent>) {
    tokio::spawn(dispatcher(ctx.clone(), rx));
    macro_rules! controller {
        ($q:ident, $sync:path, $resync:expr) => {
            controller!($q, $sync, $resync, Duration::ZERO)
        };
        // `tick`: at most one pass over the queue per tick, so a burst of events about one
        // object (every pod event of a DaemonSet's thousands of pods) coalesces into one sync
        // per tick instead of one per event.
        ($q:ident, $sync:path, $resync:expr, $tick:expr) => {{
            let ctx = ctx.clone();
            tokio::spawn(async move {
                let resync: fn(&Ctx) -> Vec<_> = $resync;
                let tick: Duration = $tick;
                let mut last = tokio::time::Instant::now();
                loop {
                    let since = last.elapsed();
                    if since < tick {
                        tokio::time::sleep(tick - since).await;
                    }
                    let period = ctx
                        .lab
                        .clock
                        .real_duration(Duration::from_secs_f64(ctx.cfg().resync_seconds));
                    let notified = ctx.q.$q.notify.notified();
                    if ctx.q.$q.is_empty()
                        && tokio::time::timeout(period.max(Duration::from_millis(200)), notified)
                            .await
                            .is_err()
                    {
                        for k in resync(&ctx) {
                            ctx.q.$q.add(k);
                        }
                    }
                    last = tokio::time::Instant::now();
                    for k in ctx.q.$q.take() {
                        $sync(&ctx, &k);
                    }
                    tokio::task::yield_now().await;
                }
            });
        }};
    }
    controller!(replicaset, replicaset::sync, replicaset::all_keys);
    controller!(deployment, deployment::sync, deployment::all_keys);
    controller!(
        daemonset,
        daemonset::sync,
        daemonset::all_keys,
        Duration::from_millis(50)
    );
    controller!(statefulset, statefulset::sync, statefulset::all_keys);
    controller!(job, job::sync, job::all_keys);
    controller!(disruption, disruption::sync, disruption::all_keys);
    controller!(gc, gc::sync, |_| Vec::new());
    scheduler::spawn(ctx.clone());
    kubelet::spawn(ctx.clone());
    nodelifecycle::spawn(ctx.clone());
    namespace::spawn(ctx.clone());
    gc::spawn_pod_gc(ctx);
}

async fn dispatcher(ctx: Arc<Ctx>, mut rx: tokio::sync::broadcast::Receiver<WatchEvent>) {
    loop {
        match rx.recv().await {
            Ok(ev) => ctx.dispatch(&ev),
            Err(RecvError::Lagged(n)) => {
                tracing::debug!("simulation event stream lagged by {n}; resyncing");
                ctx.index.rebuild(&ctx.lab.store);
                ctx.enqueue_all();
                for p in ctx.lab.store.list(&resources::POD, &Default::default()).0 {
                    if !util::node_name(&p).is_empty() && !kubelet::settled(&p) {
                        ctx.q
                            .kubelet_pods
                            .add((util::namespace(&p).to_string(), util::name(&p).to_string()));
                    }
                }
            }
            Err(RecvError::Closed) => return,
        }
    }
}

#[derive(Deserialize)]
struct KubeletBody {
    running: Option<bool>,
    ready: Option<bool>,
}

/// `POST /lab/v1/nodes/{node}/kubelet` `{"running": false}` stops a node's kubelet
/// (`{"running": true}` starts it again; `{"ready": false}` keeps it heartbeating but
/// reporting NotReady). `GET` answers the current mode.
pub fn routes() -> axum::Router<Arc<Lab>> {
    use axum::extract::{Path, State};
    use axum::routing::get;
    async fn get_mode(State(lab): State<Arc<Lab>>, Path(node): Path<String>) -> axum::Json<Value> {
        axum::Json(json!({"node": node, "mode": KubeletControl::get(&lab).mode(&node)}))
    }
    async fn set_mode(
        State(lab): State<Arc<Lab>>,
        Path(node): Path<String>,
        body: axum::body::Bytes,
    ) -> (http::StatusCode, axum::Json<Value>) {
        // Any content type: `kubectl create --raw -f` sends none that axum's Json accepts.
        let body: KubeletBody = match serde_json::from_slice(&body) {
            Ok(b) => b,
            Err(e) => {
                return (
                    http::StatusCode::BAD_REQUEST,
                    axum::Json(
                        json!({"error": format!("expected {{\"running\": bool}} or {{\"ready\": bool}}: {e}")}),
                    ),
                );
            }
        };
        if lab.store.get(&resources::NODE, "", &node).is_none() {
            return (
                http::StatusCode::NOT_FOUND,
                axum::Json(json!({"error": format!("node {node:?} not found")})),
            );
        }
        let mode = match (body.running, body.ready) {
            (Some(false), _) => KubeletMode::Stopped,
            (_, Some(false)) => KubeletMode::NotReady,
            _ => KubeletMode::Running,
        };
        KubeletControl::get(&lab).set_mode(&node, mode);
        (
            http::StatusCode::OK,
            axum::Json(json!({"node": node, "mode": mode})),
        )
    }
    /// Host commands a kubelet killed while they ran, and the API outages so far
    /// (`kubectl get --raw /lab/v1/interruptions`).
    async fn interruptions(State(lab): State<Arc<Lab>>) -> axum::Json<Value> {
        let outages: Vec<Value> = controlplane::ApiOutage::get(&lab)
            .history()
            .iter()
            .map(|(start, end)| {
                json!({"start": crate::clock::format_time(*start), "end": crate::clock::format_time(*end),
                       "seconds": end.duration_since(*start).as_secs_f64()})
            })
            .collect();
        axum::Json(
            json!({"items": controlplane::Interruptions::get(&lab).all(), "apiserverOutages": outages}),
        )
    }
    axum::Router::new()
        .route("/lab/v1/nodes/{node}/kubelet", get(get_mode).post(set_mode))
        .route("/lab/v1/interruptions", get(interruptions))
}
