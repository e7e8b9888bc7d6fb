//! Simulated kubelets — one task for every node.
//!
//! * Node registration and status (pkg/kubelet/kubelet_node_status.go): nodeInfo, capacity,
//!   allocatable, addresses, the well-known labels and the four conditions — each filled only
//!   where absent, so versions set through the API (or by the node shell) stay.
//! * Heartbeats: the node Lease in kube-node-lease (pkg/kubelet/nodelease, renewed every
//!   10 s) and the Ready condition's lastHeartbeatTime (nodeStatusReportFrequency).
//! * Pods (pkg/kubelet/status/status_manager.go, kubelet_pods.go generateAPIPodStatus):
//!   bound → ContainerCreating → Running → Ready after the configured delays; pods with
//!   restartPolicy Never/OnFailure end Succeeded (or Failed) after their run time; a
//!   terminating pod is removed after its grace period (capped by the lab setting).
//! * Mirror pods for the static control-plane pods of kubeadm control-plane nodes.
//! * Privileged `nsenter ... --` host pods run their command through the node shell.
//!
//! All pod timing runs from one timer heap; there is no task per pod or per node.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::resources;
use crate::store::DeleteOpts;

use super::{Ctx, Key, KubeletControl, KubeletMode, StaticPods, util};

pub const ANNOTATION_RUN_SECONDS: &str = "lab.upkeep.dev/run-seconds";
pub const ANNOTATION_EXIT_CODE: &str = "lab.upkeep.dev/exit-code";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Stage {
    Start,
    Ready,
    Complete,
    Remove,
}

type Job = (String, String, String, Stage); // ns, name, uid, stage

#[derive(Default)]
pub struct Kubelet {
    instant: AtomicBool,
    heap: Mutex<BinaryHeap<Reverse<(Instant, u64)>>>,
    jobs: Mutex<HashMap<u64, Job>>,
    pending: Mutex<HashSet<Job>>,
    seq: AtomicU64,
    pub wake: tokio::sync::Notify,
    /// (node, component) → the manifest image last applied to the mirror pod.
    mirror_applied: Mutex<HashMap<(String, String), String>>,
    /// lab milliseconds of the last lease renewal / status report per node
    last_lease: Mutex<HashMap<String, i64>>,
    last_status: Mutex<HashMap<String, i64>>,
    ip_seq: AtomicU64,
    /// The last pod address handed out on each node's podCIDR.
    last_pod_ip: Mutex<HashMap<String, u32>>,
    /// Host commands still running, by pod UID (their pod completes when they end).
    host_running: Mutex<HashMap<String, HostRun>>,
    /// Pods being killed, by UID: when their containers will have stopped.
    killing: Mutex<HashMap<String, Kill>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KillChange {
    Started,
    Shortened,
    Unchanged,
}

/// A kill in progress (pkg/kubelet/pod_workers.go, kuberuntime killContainer). The kubelet
/// counts the grace period from when it starts killing, with sub-second precision; it does
/// not read the deletionTimestamp, which the API rounds to whole seconds.
#[derive(Debug, Clone, Copy)]
struct Kill {
    /// The effective grace period (calculateEffectiveGracePeriod: it only ever decreases).
    grace: i64,
    /// Lab time at which the containers have stopped and the pod may be removed.
    done_at: jiff::Timestamp,
}

/// Lab seconds a host command runs on once the API is back (kubeadm's phases after the
/// control-plane restart: uploading its configuration, the kubelet config, the addons).
const AFTER_RESTART_SECONDS: f64 = 5.0;

/// A host command whose pod is still Running.
struct HostRun {
    code: i64,
    command: String,
}

/// A pod the kubelet has nothing more to do for (running and ready, or finished).
pub fn settled(p: &Value) -> bool {
    util::terminal(p)
        || (util::phase(p) == "Running"
            && util::pod_ready(p)
            && !util::terminating(p)
            && restart_always(p))
}

fn restart_always(p: &Value) -> bool {
    matches!(util::s(p, "/spec/restartPolicy"), "" | "Always")
}

fn is_mirror(p: &Value) -> bool {
    p.pointer("/metadata/annotations")
        .and_then(|a| a.get(util::ANNOTATION_MIRROR))
        .is_some()
}

fn annotation_f64(p: &Value, key: &str) -> Option<f64> {
    p.pointer("/metadata/annotations")
        .and_then(|a| a.get(key))
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

/// A stable small number from a name (addresses).
fn name_hash(s: &str) -> u32 {
    s.bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619))
}

/// The node's InternalIP, or one derived from its name.
pub fn node_ip(node: &Value) -> String {
    util::arr(node, "/status/addresses")
        .iter()
        .find(|a| util::s(a, "/type") == "InternalIP")
        .map(|a| util::s(a, "/address").to_string())
        .unwrap_or_else(|| {
            let h = name_hash(util::name(node));
            format!("127.10.{}.{}", (h >> 8) % 250 + 1, h % 250 + 2)
        })
}

/// Images of the kubeadm control-plane static pods for a Kubernetes version
/// (cmd/kubeadm/app/constants: etcd versions per minor, approximated).
pub fn control_plane_images(version: &str) -> Vec<(String, String)> {
    let v = if version.starts_with('v') {
        version.to_string()
    } else {
        format!("v{version}")
    };
    let minor: u64 = v
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(34);
    let etcd = match minor {
        0..=30 => "3.5.12-0",
        31 => "3.5.15-0",
        32 => "3.5.16-0",
        33 => "3.5.21-0",
        34 => "3.6.4-0",
        _ => "3.6.5-0",
    };
    vec![
        ("etcd".into(), format!("registry.k8s.io/etcd:{etcd}")),
        (
            "kube-apiserver".into(),
            format!("registry.k8s.io/kube-apiserver:{v}"),
        ),
        (
            "kube-controller-manager".into(),
            format!("registry.k8s.io/kube-controller-manager:{v}"),
        ),
        (
            "kube-scheduler".into(),
            format!("registry.k8s.io/kube-scheduler:{v}"),
        ),
    ]
}

impl Kubelet {
    pub fn set_instant(&self, on: bool) {
        self.instant.store(on, Ordering::SeqCst);
    }

    fn schedule(&self, ctx: &Ctx, job: Job, lab_secs: f64) {
        if !self.pending.lock().insert(job.clone()) {
            return;
        }
        let due = Instant::now()
            + ctx
                .lab
                .clock
                .real_duration(Duration::from_secs_f64(lab_secs.max(0.0)));
        let id = self.seq.fetch_add(1, Ordering::Relaxed);
        self.jobs.lock().insert(id, job);
        self.heap.lock().push(Reverse((due, id)));
        self.wake.notify_one();
    }

    /// Run or schedule a stage (at once while settling).
    fn stage(&self, ctx: &Ctx, job: Job, lab_secs: f64) {
        if self.instant.load(Ordering::SeqCst) || lab_secs <= 0.0 {
            self.pending.lock().remove(&job);
            self.fire(ctx, &job);
        } else {
            self.schedule(ctx, job, lab_secs);
        }
    }

    /// Fire due timers; returns the next due instant.
    fn fire_due(&self, ctx: &Ctx) -> Option<Instant> {
        loop {
            let now = Instant::now();
            let next = {
                let mut h = self.heap.lock();
                match h.peek() {
                    Some(Reverse((due, id))) if *due <= now => {
                        let id = *id;
                        h.pop();
                        Some(id)
                    }
                    Some(Reverse((due, _))) => return Some(*due),
                    None => return None,
                }
            };
            if let Some(id) = next {
                let job = self.jobs.lock().remove(&id);
                if let Some(job) = job {
                    self.pending.lock().remove(&job);
                    self.fire(ctx, &job);
                }
            }
        }
    }

    /// Look at one pod and move it along.
    pub fn sync_pod(&self, ctx: &Ctx, key: &Key) {
        let Some(pod) = ctx.lab.store.get(&resources::POD, &key.0, &key.1) else {
            return;
        };
        let node = util::node_name(&pod).to_string();
        if node.is_empty() || ctx.lab.store.get(&resources::NODE, "", &node).is_none() {
            return;
        }
        if !KubeletControl::get(&ctx.lab).running(&node) {
            return;
        }
        let cfg = ctx.cfg();
        let job = |st: Stage| {
            (
                key.0.clone(),
                key.1.clone(),
                util::uid(&pod).to_string(),
                st,
            )
        };
        if util::terminating(&pod) {
            self.kill_host_command(ctx, &pod, &node);
            let (done_at, kill) = self.kill(ctx, &pod);
            if kill == KillChange::Started {
                for c in util::arr(&pod, "/spec/containers") {
                    ctx.events.record(
                        &ctx.lab,
                        &pod,
                        "Normal",
                        "Killing",
                        &format!("Stopping container {}", util::s(c, "/name")),
                        "kubelet",
                        Some(&node),
                    );
                }
            }
            if kill == KillChange::Shortened {
                // the timer already set is too late: set another (the late one finds the pod gone)
                self.pending.lock().remove(&job(Stage::Remove));
            }
            let wait = done_at.duration_since(ctx.lab.clock.now()).as_secs_f64();
            self.stage(ctx, job(Stage::Remove), wait);
            return;
        }
        if util::terminal(&pod) || is_mirror(&pod) {
            return;
        }
        match util::phase(&pod) {
            "Running" => {
                if !util::pod_ready(&pod) {
                    self.stage(ctx, job(Stage::Ready), cfg.ready_seconds(&pod));
                }
                if self.host_running.lock().contains_key(util::uid(&pod)) {
                    return;
                }
                if !restart_always(&pod) {
                    let run =
                        annotation_f64(&pod, ANNOTATION_RUN_SECONDS).unwrap_or(cfg.job_run_seconds);
                    let started =
                        util::s(&pod, "/status/containerStatuses/0/state/running/startedAt");
                    let elapsed = util::seconds_since(ctx.lab.clock.now(), started).unwrap_or(0.0);
                    self.stage(ctx, job(Stage::Complete), run - elapsed);
                }
            }
            _ => {
                if pod.pointer("/status/hostIP").is_none() {
                    self.accept(ctx, &pod, &node);
                }
                self.stage(ctx, job(Stage::Start), cfg.pod_start_seconds);
            }
        }
    }

    /// Start or shorten the kill of a terminating pod; returns when its containers will have
    /// stopped, and whether the kill started or was shortened now. The grace period is the pod's
    /// deletionGracePeriodSeconds, counted from the moment the kubelet sees the deletion
    /// (kuberuntime_container.go killContainer: `gracePeriod = *pod.DeletionGracePeriodSeconds`,
    /// then StopContainer(gracePeriod)). A later, shorter grace period cancels the running
    /// kill and starts a new one with it (pod_workers.go UpdatePod `wasGracePeriodShortened`,
    /// calculateEffectiveGracePeriod), so the end moves earlier, never later.
    fn kill(&self, ctx: &Ctx, pod: &Value) -> (jiff::Timestamp, KillChange) {
        let now = ctx.lab.clock.now();
        let grace = pod
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0);
        let ends = |g: i64| {
            now + jiff::SignedDuration::from_secs_f64(ctx.cfg().termination_seconds(g as f64))
        };
        let mut killing = self.killing.lock();
        match killing.get_mut(util::uid(pod)) {
            Some(k) => {
                if grace < k.grace {
                    k.grace = grace;
                    if ends(grace) < k.done_at {
                        k.done_at = ends(grace);
                        return (k.done_at, KillChange::Shortened);
                    }
                }
                (k.done_at, KillChange::Unchanged)
            }
            None => {
                let k = Kill {
                    grace,
                    done_at: ends(grace),
                };
                killing.insert(util::uid(pod).to_string(), k);
                (k.done_at, KillChange::Started)
            }
        }
    }

    /// The pod is admitted on the node: ContainerCreating.
    fn accept(&self, ctx: &Ctx, pod: &Value, node: &str) {
        let Some(n) = ctx.lab.store.get(&resources::NODE, "", node) else {
            return;
        };
        let host_ip = node_ip(&n);
        let now = ctx.lab.clock.now_rfc3339();
        let statuses: Vec<Value> = util::arr(pod, "/spec/containers")
            .iter()
            .map(|c| {
                json!({"name": util::s(c, "/name"), "image": util::s(c, "/image"), "imageID": "", "ready": false, "restartCount": 0, "started": false,
                       "state": {"waiting": {"reason": "ContainerCreating"}}})
            })
            .collect();
        let _ = ctx.lab.store.mutate(
            &resources::POD,
            util::namespace(pod),
            util::name(pod),
            |p| {
                if util::terminating(p) || util::uid(p) != util::uid(pod) {
                    return Ok(());
                }
                p["status"]["phase"] = json!("Pending");
                p["status"]["hostIP"] = json!(host_ip);
                p["status"]["hostIPs"] = json!([{"ip": host_ip}]);
                p["status"]["startTime"] = json!(now);
                p["status"]["containerStatuses"] = json!(statuses);
                p["status"]["qosClass"] = json!(util::qos_class(p));
                for (t, s) in [
                    ("PodReadyToStartContainers", "False"),
                    ("Initialized", "True"),
                    ("Ready", "False"),
                    ("ContainersReady", "False"),
                    ("PodScheduled", "True"),
                ] {
                    let mut c = json!({"type": t, "status": s, "lastProbeTime": null});
                    if t == "Ready" || t == "ContainersReady" {
                        c["reason"] = json!("ContainersNotReady");
                        let names: Vec<&str> = util::arr(p, "/spec/containers")
                            .iter()
                            .map(|c| util::s(c, "/name"))
                            .collect();
                        c["message"] = json!(format!(
                            "containers with unready status: [{}]",
                            names.join(" ")
                        ));
                    }
                    util::set_condition(p, c, &now);
                }
                Ok(())
            },
        );
    }

    /// A pod's address: the next one in its node's podCIDR, the range the node IPAM
    /// controller gave the node (pkg/controller/nodeipam) and which a host-local CNI hands
    /// out in turn after the last one it gave, skipping the gateway `.1`
    /// (containernetworking/plugins plugins/ipam/host-local/backend/allocator/allocator.go
    /// Get). A node without a /24 podCIDR gets one derived from its name.
    fn pod_ip(&self, pod: &Value, node: &Value) -> String {
        if pod.pointer("/spec/hostNetwork").and_then(Value::as_bool) == Some(true) {
            return node_ip(node);
        }
        if let Some(net) = node
            .pointer("/spec/podCIDR")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_suffix(".0/24"))
        {
            let mut last = self.last_pod_ip.lock();
            let host = last.entry(util::name(node).to_string()).or_insert(1);
            *host = if *host >= 254 { 2 } else { *host + 1 };
            return format!("{net}.{host}");
        }
        let h = name_hash(util::name(node));
        let n = self.ip_seq.fetch_add(1, Ordering::Relaxed);
        format!("10.{}.{}.{}", 244 + (h % 10), (h >> 4) % 250, n % 250 + 2)
    }

    fn fire(&self, ctx: &Ctx, job: &Job) {
        let (ns, name, uid, stage) = job;
        let store = &ctx.lab.store;
        let Some(pod) = store
            .get(&resources::POD, ns, name)
            .filter(|p| util::uid(p) == uid)
        else {
            self.killing.lock().remove(uid.as_str());
            return;
        };
        let node = util::node_name(&pod).to_string();
        if !KubeletControl::get(&ctx.lab).running(&node) {
            return;
        }
        let now = ctx.lab.clock.now_rfc3339();
        match stage {
            Stage::Remove => {
                // a shortened grace period or a slower clock: not yet
                let done_at = self.killing.lock().get(uid.as_str()).map(|k| k.done_at);
                if let Some(left) = done_at
                    .map(|t| t.duration_since(ctx.lab.clock.now()).as_secs_f64())
                    .filter(|l| *l > 0.0 && !self.instant.load(Ordering::SeqCst))
                {
                    self.schedule(ctx, job.clone(), left);
                    return;
                }
                self.killing.lock().remove(uid.as_str());
                // kubelet status_manager: once containers stopped, delete with grace 0
                let _ = store.delete(
                    &resources::POD,
                    ns,
                    name,
                    &DeleteOpts {
                        grace_period_seconds: Some(0),
                        uid: Some(uid.clone()),
                        ..Default::default()
                    },
                );
            }
            _ if util::terminating(&pod) || util::terminal(&pod) => {}
            Stage::Start => {
                if util::phase(&pod) == "Running" {
                    return;
                }
                if self.run_host_command(ctx, &pod, &node) {
                    return;
                }
                let Some(n) = store.get(&resources::NODE, "", &node) else {
                    return;
                };
                let ip = self.pod_ip(&pod, &n);
                let ready_now =
                    ctx.cfg().ready_seconds(&pod) <= 0.0 || self.instant.load(Ordering::SeqCst);
                let _ = store.mutate(&resources::POD, ns, name, |p| {
                    set_running(p, &ip, ready_now, &now);
                    Ok(())
                });
                for c in util::arr(&pod, "/spec/containers") {
                    let cname = util::s(c, "/name");
                    ctx.events.record(
                        &ctx.lab,
                        &pod,
                        "Normal",
                        "Pulled",
                        &format!(
                            "Container image \"{}\" already present on machine",
                            util::s(c, "/image")
                        ),
                        "kubelet",
                        Some(&node),
                    );
                    ctx.events.record(
                        &ctx.lab,
                        &pod,
                        "Normal",
                        "Created",
                        &format!("Created container: {cname}"),
                        "kubelet",
                        Some(&node),
                    );
                    ctx.events.record(
                        &ctx.lab,
                        &pod,
                        "Normal",
                        "Started",
                        &format!("Started container {cname}"),
                        "kubelet",
                        Some(&node),
                    );
                }
                if let Some(p) = store.get(&resources::POD, ns, name) {
                    self.sync_pod(ctx, &(ns.clone(), name.clone()));
                    let _ = p;
                }
            }
            Stage::Ready => {
                let _ = store.mutate(&resources::POD, ns, name, |p| {
                    if util::phase(p) == "Running" {
                        set_ready(p, true, &now);
                    }
                    Ok(())
                });
            }
            Stage::Complete => {
                let host = self.host_running.lock().remove(uid.as_str());
                let code = match host {
                    Some(h) => h.code,
                    None => annotation_f64(&pod, ANNOTATION_EXIT_CODE).unwrap_or(0.0) as i64,
                };
                let _ = store.mutate(&resources::POD, ns, name, |p| {
                    set_terminated(p, code, &now);
                    Ok(())
                });
            }
        }
    }

    /// `hostPID` + privileged + `nsenter ... -- CMD`: run CMD through the node shell, log
    /// its output, end the pod with its exit code. Returns true when handled.
    fn run_host_command(&self, ctx: &Ctx, pod: &Value, node: &str) -> bool {
        if pod.pointer("/spec/hostPID").and_then(Value::as_bool) != Some(true) {
            return false;
        }
        let Some(c) = util::arr(pod, "/spec/containers").first() else {
            return false;
        };
        if c.pointer("/securityContext/privileged")
            .and_then(Value::as_bool)
            != Some(true)
        {
            return false;
        }
        let argv: Vec<String> = util::arr(c, "/command")
            .iter()
            .chain(util::arr(c, "/args"))
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect();
        let Some(cmd) = crate::exec::strip_nsenter(&argv) else {
            return false;
        };
        let out = match crate::exec::lookup(&ctx.lab) {
            Some(f) => f(node, &cmd),
            None => crate::exec::ExecOutput::fail(
                127,
                format!(
                    "nsenter: failed to execute {}: No such file or directory\n",
                    cmd[0]
                ),
            ),
        };
        let mut log = out.stdout.clone();
        log.push_str(&out.stderr);
        ctx.lab
            .append_pod_log(util::namespace(pod), util::name(pod), &log);
        let now = ctx.lab.clock.now_rfc3339();
        let ip = node_ip(
            &ctx.lab
                .store
                .get(&resources::NODE, "", node)
                .unwrap_or_else(|| Arc::new(json!({}))),
        );
        // A command that restarted the only kube-apiserver (kubeadm upgrade apply) runs on
        // until the API is back: kubeadm waits for the new static pods through the API
        // (cmd/kubeadm/app/phases/upgrade/staticpods.go upgradeComponent).
        let outage = super::controlplane::ApiOutage::get(&ctx.lab);
        let still_running = outage.down_until(&ctx.lab).map(|until| {
            until
                .duration_since(ctx.lab.clock.now())
                .as_secs_f64()
                .max(0.0)
        });
        let _ = ctx.lab.store.mutate(
            &resources::POD,
            util::namespace(pod),
            util::name(pod),
            |p| {
                set_running(p, &ip, false, &now);
                if still_running.is_none() {
                    set_terminated(p, out.code as i64, &now);
                }
                Ok(())
            },
        );
        if let Some(left) = still_running {
            self.host_running.lock().insert(
                util::uid(pod).to_string(),
                HostRun {
                    code: out.code as i64,
                    command: cmd.join(" "),
                },
            );
            let job = (
                util::namespace(pod).to_string(),
                util::name(pod).to_string(),
                util::uid(pod).to_string(),
                Stage::Complete,
            );
            self.schedule(ctx, job, left + AFTER_RESTART_SECONDS);
        }
        true
    }

    /// A terminating pod whose host command still runs: the kubelet kills the command
    /// (pkg/kubelet/kuberuntime killContainer). Recorded, so tests can assert it never
    /// happens to kubeadm.
    pub fn kill_host_command(&self, ctx: &Ctx, pod: &Value, node: &str) {
        let Some(run) = self.host_running.lock().remove(util::uid(pod)) else {
            return;
        };
        let msg = format!(
            "the pod was deleted while `{}` was still running: the kubelet killed it",
            run.command
        );
        ctx.events.record(
            &ctx.lab,
            pod,
            "Warning",
            super::controlplane::REASON_INTERRUPTED,
            &msg,
            "kubelet",
            Some(node),
        );
        super::controlplane::Interruptions::get(&ctx.lab).record(
            super::controlplane::Interruption {
                node: node.to_string(),
                namespace: util::namespace(pod).to_string(),
                pod: util::name(pod).to_string(),
                command: run.command,
                time: ctx.lab.clock.now_rfc3339(),
            },
        );
    }

    /// Register a node (fill what is absent), keep its lease, and its mirror pods.
    pub fn sync_node(&self, ctx: &Ctx, node: &str) {
        let mode = KubeletControl::get(&ctx.lab).mode(node);
        if mode == KubeletMode::Stopped {
            return;
        }
        let Some(n) = ctx.lab.store.get(&resources::NODE, "", node) else {
            return;
        };
        let wrong = match mode {
            KubeletMode::Running => !util::node_ready(&n),
            _ => util::condition_status(&n, "Ready") != "False",
        };
        if wrong || needs_registration(&n) {
            self.report_status(ctx, &n, mode, true);
        }
        if ctx
            .lab
            .store
            .get(&resources::LEASE, "kube-node-lease", node)
            .is_none()
        {
            self.renew_lease(ctx, &n);
        }
        self.sync_mirror_pods(ctx, node);
    }

    fn report_status(&self, ctx: &Ctx, n: &Value, mode: KubeletMode, register: bool) {
        let now = ctx.lab.clock.now_rfc3339();
        let version = ctx.lab.version().git_version;
        let ip = node_ip(n);
        let name = util::name(n).to_string();
        let _ = ctx.lab.store.mutate(&resources::NODE, "", &name, |o| {
            if register {
                register_defaults(o, &name, &version, &ip);
            }
            let ready = mode == KubeletMode::Running;
            let conds = [
                ("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                if ready {
                    ("Ready", "True", "KubeletReady", "kubelet is posting ready status")
                } else {
                    ("Ready", "False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized")
                },
            ];
            for (t, s, r, m) in conds {
                util::set_condition(o, json!({"type": t, "status": s, "reason": r, "message": m, "lastHeartbeatTime": now}), &now);
            }
            Ok(())
        });
        self.last_status
            .lock()
            .insert(name, ctx.lab.clock.now().as_millisecond());
    }

    fn renew_lease(&self, ctx: &Ctx, n: &Value) {
        let name = util::name(n);
        let now = ctx.lab.clock.now_micro();
        let st = &ctx.lab.store;
        if st
            .mutate(&resources::LEASE, "kube-node-lease", name, |l| {
                l["spec"]["renewTime"] = json!(now);
                Ok(())
            })
            .is_err()
        {
            let lease = json!({
                "metadata": {"name": name, "namespace": "kube-node-lease",
                             "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": name, "uid": util::uid(n)}]},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now},
            });
            let _ = ctx.create(&resources::LEASE, lease);
        }
        self.last_lease
            .lock()
            .insert(name.to_string(), ctx.lab.clock.now().as_millisecond());
    }

    /// Heartbeats of every running kubelet that is due (batched).
    fn heartbeat(&self, ctx: &Ctx) {
        let cfg = ctx.cfg();
        let ctl = KubeletControl::get(&ctx.lab);
        let now = ctx.lab.clock.now().as_millisecond();
        let (nodes, _) = ctx.lab.store.list(&resources::NODE, &Default::default());
        for n in nodes {
            let name = util::name(&n);
            let mode = ctl.mode(name);
            if mode == KubeletMode::Stopped {
                continue;
            }
            let lease_due = self
                .last_lease
                .lock()
                .get(name)
                .is_none_or(|t| (now - t) as f64 >= cfg.lease_renew_seconds * 1000.0);
            if lease_due {
                self.renew_lease(ctx, &n);
            }
            let wrong = match mode {
                KubeletMode::Running => !util::node_ready(&n),
                _ => util::condition_status(&n, "Ready") != "False",
            };
            let status_due = self
                .last_status
                .lock()
                .get(name)
                .is_none_or(|t| (now - t) as f64 >= cfg.node_status_seconds * 1000.0);
            if wrong || status_due {
                self.report_status(ctx, &n, mode, wrong);
            }
        }
    }

    /// Mirror pods of the node's static pods (pkg/kubelet/pod/mirror_client.go).
    fn sync_mirror_pods(&self, ctx: &Ctx, node: &str) {
        let Some(n) = ctx.lab.store.get(&resources::NODE, "", node) else {
            return;
        };
        let sp = StaticPods::get(&ctx.lab);
        if !sp.has_node(node) {
            if !(ctx.cfg().kubeadm && util::is_control_plane(&n)) {
                return;
            }
            for (c, img) in control_plane_images(&ctx.lab.version().git_version) {
                sp.set_image(node, &c, &img);
            }
        }
        let now = ctx.lab.clock.now_rfc3339();
        let ip = node_ip(&n);
        let manifests = sp.for_node(node);
        // a manifest removed from the node: the kubelet stops the static pod and deletes its
        // mirror pod
        let gone: Vec<(String, String)> = self
            .mirror_applied
            .lock()
            .keys()
            .filter(|(nn, c)| nn == node && !manifests.contains_key(c))
            .cloned()
            .collect();
        for key in gone {
            self.mirror_applied.lock().remove(&key);
            ctx.lab
                .store
                .remove(&resources::POD, "kube-system", &format!("{}-{node}", key.1));
        }
        for (component, image) in manifests {
            let pname = format!("{component}-{node}");
            let key = (node.to_string(), component.clone());
            match ctx.lab.store.get(&resources::POD, "kube-system", &pname) {
                None => {
                    let pod = mirror_pod(&n, &component, &image, &ip, &now);
                    if ctx.create(&resources::POD, pod).is_ok() {
                        self.mirror_applied.lock().insert(key, image);
                    }
                }
                Some(p) => {
                    let applied = self.mirror_applied.lock().get(&key).cloned();
                    match applied {
                        None => {
                            self.mirror_applied.lock().insert(key, image);
                        }
                        Some(a) if a != image => {
                            // the manifest changed: the kubelet restarts the static pod, whose
                            // mirror pod comes back with a new UID (unless kubeadm's restart
                            // already replaced it)
                            if util::s(&p, "/spec/containers/0/image") != image {
                                replace_mirror_pod(&ctx.lab, node, &component, &image);
                            }
                            self.mirror_applied.lock().insert(key, image);
                        }
                        Some(_) => {}
                    }
                    let _ = p;
                }
            }
        }
    }
}

fn needs_registration(n: &Value) -> bool {
    util::s(n, "/status/nodeInfo/kubeletVersion").is_empty()
        || n.pointer("/status/capacity")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        || util::arr(n, "/status/addresses").is_empty()
        || util::condition(n, "Ready").is_none()
}

fn register_defaults(o: &mut Value, name: &str, version: &str, ip: &str) {
    let md = o["metadata"].as_object_mut().expect("metadata");
    let labels = md.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    for (k, v) in [
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/arch", "amd64"),
    ] {
        labels
            .as_object_mut()
            .expect("object")
            .entry(k)
            .or_insert(json!(v));
    }
    let ann = md.entry("annotations").or_insert_with(|| json!({}));
    if let Some(a) = ann.as_object_mut() {
        a.entry("node.alpha.kubernetes.io/ttl")
            .or_insert(json!("0"));
        a.entry("volumes.kubernetes.io/controller-managed-attach-detach")
            .or_insert(json!("true"));
    }
    let obj = o.as_object_mut().expect("object");
    let status = obj.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let s = status.as_object_mut().expect("object");
    let cap = s.entry("capacity").or_insert_with(|| json!({}));
    if cap.as_object().is_some_and(|m| m.is_empty()) {
        *cap = json!({"cpu": "4", "memory": "8148056Ki", "pods": "110", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"});
    }
    let cap = cap.clone();
    let alloc = s.entry("allocatable").or_insert_with(|| json!({}));
    if alloc.as_object().is_some_and(|m| m.is_empty()) {
        *alloc = cap;
    }
    let info = s.entry("nodeInfo").or_insert_with(|| json!({}));
    if !info.is_object() {
        *info = json!({});
    }
    let h = name_hash(name);
    let kv = info
        .get("kubeletVersion")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(version)
        .to_string();
    let i = info.as_object_mut().expect("object");
    for (k, v) in [
        ("kubeletVersion", kv.clone()),
        ("kubeProxyVersion", kv),
        ("osImage", "Ubuntu 24.04.3 LTS".to_string()),
        ("containerRuntimeVersion", "containerd://1.7.28".to_string()),
        ("kernelVersion", "6.8.0-79-generic".to_string()),
        ("operatingSystem", "linux".to_string()),
        ("architecture", "amd64".to_string()),
        ("machineID", format!("{h:08x}{:024x}", h as u128 * 7919)),
        (
            "systemUUID",
            format!("{h:08x}-0000-4000-8000-{:012x}", h as u64 * 31),
        ),
        (
            "bootID",
            format!("{:08x}-1111-4000-8000-{h:012x}", h.rotate_left(7)),
        ),
    ] {
        let empty = i.get(k).and_then(Value::as_str).is_none_or(str::is_empty);
        if empty {
            i.insert(k.into(), json!(v));
        }
    }
    let addrs = s.entry("addresses").or_insert_with(|| json!([]));
    if addrs.as_array().is_some_and(|a| a.is_empty()) {
        *addrs =
            json!([{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}]);
    }
    s.entry("daemonEndpoints")
        .or_insert(json!({"kubeletEndpoint": {"Port": 10250}}));
}

/// Replace the mirror pod of a static pod whose manifest changed. A static pod's UID is a
/// hash of its manifest (pkg/kubelet/config/common.go `applyDefaults`), so the kubelet deletes
/// the outdated mirror pod and creates one with a new UID (pkg/kubelet/kubelet.go `SyncPod`).
pub fn replace_mirror_pod(lab: &crate::lab::Lab, node: &str, component: &str, image: &str) {
    let Some(n) = lab.store.get(&resources::NODE, "", node) else {
        return;
    };
    let name = format!("{component}-{node}");
    lab.store.remove(&resources::POD, "kube-system", &name);
    let pod = mirror_pod(&n, component, image, &node_ip(&n), &lab.clock.now_rfc3339());
    if let Err(e) = lab.store.create(&resources::POD, "kube-system", pod, false) {
        tracing::warn!("could not recreate mirror pod kube-system/{name}: {e:?}");
    }
}

fn mirror_pod(node: &Value, component: &str, image: &str, ip: &str, now: &str) -> Value {
    let nn = util::name(node);
    let hash = format!(
        "{:032x}",
        (name_hash(&format!("{nn}/{component}/{image}")) as u128) * 0x9e3779b97f4a7c15
    );
    let mut ann = json!({
        util::ANNOTATION_MIRROR: hash,
        "kubernetes.io/config.hash": hash,
        "kubernetes.io/config.seen": now,
        "kubernetes.io/config.source": "file",
    });
    if component == "kube-apiserver" {
        ann["kubeadm.kubernetes.io/kube-apiserver.advertise-address.endpoint"] =
            json!(format!("{ip}:6443"));
    }
    if component == "etcd" {
        ann["kubeadm.kubernetes.io/etcd.advertise-client-urls"] =
            json!(format!("https://{ip}:2379"));
    }
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("{component}-{nn}"),
            "namespace": "kube-system",
            "labels": {"component": component, "tier": "control-plane"},
            "annotations": ann,
            "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": nn, "uid": util::uid(node), "controller": true}],
        },
        "spec": {
            "nodeName": nn,
            "hostNetwork": true,
            "priorityClassName": "system-node-critical",
            "priority": 2000001000,
            "containers": [{"name": component, "image": image, "command": [component], "resources": {"requests": {"cpu": if component == "kube-apiserver" { "250m" } else { "100m" }}}}],
            "tolerations": [{"operator": "Exists", "effect": "NoExecute"}],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        },
        "status": {"phase": "Pending"},
    });
    util::default_pod_spec(&mut pod["spec"]);
    set_running(&mut pod, ip, true, now);
    pod["status"]["hostIP"] = json!(ip);
    pod["status"]["hostIPs"] = json!([{"ip": ip}]);
    pod["status"]["startTime"] = json!(now);
    pod
}

/// Status of a pod whose containers run (generateAPIPodStatus).
pub fn set_running(p: &mut Value, ip: &str, ready: bool, now: &str) {
    let statuses: Vec<Value> = util::arr(p, "/spec/containers")
        .iter()
        .map(|c| {
            json!({"name": util::s(c, "/name"), "image": util::s(c, "/image"),
                   "imageID": format!("{}@sha256:{:064x}", util::s(c, "/image").split(':').next().unwrap_or(""), name_hash(util::s(c, "/image"))),
                   "containerID": format!("containerd://{:064x}", (name_hash(util::s(c, "/name")) as u128) << 32 | name_hash(now) as u128),
                   "ready": ready, "started": true, "restartCount": 0,
                   "state": {"running": {"startedAt": now}}})
        })
        .collect();
    let st = p
        .as_object_mut()
        .expect("object")
        .entry("status")
        .or_insert_with(|| json!({}));
    st["phase"] = json!("Running");
    st["podIP"] = json!(ip);
    st["podIPs"] = json!([{"ip": ip}]);
    st["containerStatuses"] = json!(statuses);
    if st.get("startTime").is_none() {
        st["startTime"] = json!(now);
    }
    util::set_condition(
        p,
        json!({"type": "PodReadyToStartContainers", "status": "True", "lastProbeTime": null}),
        now,
    );
    util::set_condition(
        p,
        json!({"type": "Initialized", "status": "True", "lastProbeTime": null}),
        now,
    );
    util::set_condition(
        p,
        json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null}),
        now,
    );
    set_ready(p, ready, now);
}

pub fn set_ready(p: &mut Value, ready: bool, now: &str) {
    if let Some(cs) = p
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            c["ready"] = json!(ready);
        }
    }
    for t in ["ContainersReady", "Ready"] {
        let mut c = json!({"type": t, "status": if ready { "True" } else { "False" }, "lastProbeTime": null});
        if !ready {
            let names: Vec<&str> = util::arr(p, "/spec/containers")
                .iter()
                .map(|c| util::s(c, "/name"))
                .collect();
            c["reason"] = json!("ContainersNotReady");
            c["message"] = json!(format!(
                "containers with unready status: [{}]",
                names.join(" ")
            ));
        }
        util::set_condition(p, c, now);
    }
}

fn set_terminated(p: &mut Value, code: i64, now: &str) {
    let started = util::s(p, "/status/containerStatuses/0/state/running/startedAt").to_string();
    let reason = if code == 0 { "Completed" } else { "Error" };
    if let Some(cs) = p
        .pointer_mut("/status/containerStatuses")
        .and_then(Value::as_array_mut)
    {
        for c in cs {
            c["ready"] = json!(false);
            c["started"] = json!(false);
            c["state"] = json!({"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now, "containerID": c["containerID"].clone()}});
        }
    }
    p["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
    for t in ["ContainersReady", "Ready"] {
        util::set_condition(
            p,
            json!({"type": t, "status": "False", "reason": "PodCompleted", "lastProbeTime": null}),
            now,
        );
    }
    util::set_condition(
        p,
        json!({"type": "PodReadyToStartContainers", "status": "False", "lastProbeTime": null}),
        now,
    );
}

/// The kubelet task.
pub fn spawn(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        let ctl = KubeletControl::get(&ctx.lab);
        let mut seen_ctl = ctl.generation.load(Ordering::SeqCst);
        let sp = StaticPods::get(&ctx.lab);
        let mut seen_static = sp.generation.load(Ordering::SeqCst);
        let mut next_beat = Instant::now();
        loop {
            for n in ctx.q.kubelet_nodes.take() {
                ctx.kubelet.sync_node(&ctx, &n);
            }
            for k in ctx.q.kubelet_pods.take() {
                ctx.kubelet.sync_pod(&ctx, &k);
            }
            let g = ctl.generation.load(Ordering::SeqCst);
            if g != seen_ctl {
                seen_ctl = g;
                // a kubelet started again: look at its node and every pod on it
                for n in ctx.lab.store.list(&resources::NODE, &Default::default()).0 {
                    ctx.q.kubelet_nodes.add(util::name(&n).to_string());
                }
                for p in ctx.lab.store.list(&resources::POD, &Default::default()).0 {
                    if !util::node_name(&p).is_empty() && !settled(&p) {
                        ctx.q
                            .kubelet_pods
                            .add((util::namespace(&p).to_string(), util::name(&p).to_string()));
                    }
                }
                ctx.kubelet.heartbeat(&ctx);
                continue;
            }
            let g = sp.generation.load(Ordering::SeqCst);
            if g != seen_static {
                seen_static = g;
                for n in ctx.lab.store.list(&resources::NODE, &Default::default()).0 {
                    ctx.kubelet.sync_mirror_pods(&ctx, util::name(&n));
                }
            }
            let next_timer = ctx.kubelet.fire_due(&ctx);
            if Instant::now() >= next_beat {
                ctx.kubelet.heartbeat(&ctx);
                let tick = ctx
                    .lab
                    .clock
                    .real_duration(Duration::from_secs(1))
                    .clamp(Duration::from_millis(50), Duration::from_secs(1));
                next_beat = Instant::now() + tick;
            }
            let until = next_timer.map_or(next_beat, |t| t.min(next_beat));
            let sleep = until.saturating_duration_since(Instant::now());
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = ctx.q.kubelet_pods.notify.notified() => {}
                _ = ctx.q.kubelet_nodes.notify.notified() => {}
                _ = ctx.kubelet.wake.notified() => {}
                _ = ctl.changed.notified() => {}
            }
        }
    });
}
