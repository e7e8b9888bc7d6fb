//! Node lifecycle (pkg/controller/nodelifecycle/node_lifecycle_controller.go) and NoExecute
//! taint eviction (pkg/controller/tainteviction/taint_eviction.go).
//!
//! * A node whose kubelet stopped posting (no lease renewal, no Ready heartbeat) for
//!   --node-monitor-grace-period gets every condition set to Unknown, and its pods are
//!   marked not ready (MarkPodsNotReady).
//! * Condition taints (TaintNodesByCondition and the NoExecute taints): Ready=False →
//!   `node.kubernetes.io/not-ready`, Ready=Unknown → `node.kubernetes.io/unreachable`
//!   (NoSchedule and NoExecute), pressure conditions and `spec.unschedulable` → their
//!   NoSchedule taints.
//! * The taint manager deletes pods that do not tolerate a NoExecute taint, at once or when
//!   their smallest matching tolerationSeconds has passed since the taint was added.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::resources;
use crate::store::DeleteOpts;

use super::{Ctx, util};

/// --node-startup-grace-period
const STARTUP_GRACE_SECONDS: f64 = 60.0;

pub fn spawn(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        loop {
            let period = ctx.lab.clock.real_duration(Duration::from_secs_f64(
                ctx.cfg().node_monitor_period_seconds,
            ));
            tokio::time::sleep(period.clamp(Duration::from_millis(20), Duration::from_secs(5)))
                .await;
            monitor(&ctx);
            evict(&ctx);
        }
    });
}

fn ts(s: &str) -> Option<jiff::Timestamp> {
    s.parse().ok()
}

/// monitorNodeHealth / tryUpdateNodeHealth.
pub fn monitor(ctx: &Ctx) {
    let cfg = ctx.cfg();
    let store = &ctx.lab.store;
    let now = ctx.lab.clock.now();
    let now_s = ctx.lab.clock.now_rfc3339();
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    for n in nodes {
        let name = util::name(&n).to_string();
        let ready = util::condition(&n, "Ready");
        let heartbeat = ready.and_then(|c| ts(util::s(c, "/lastHeartbeatTime")));
        let lease = store
            .get(&resources::LEASE, "kube-node-lease", &name)
            .and_then(|l| ts(util::s(&l, "/spec/renewTime")));
        let created = ts(util::s(&n, "/metadata/creationTimestamp"));
        let probe = [heartbeat, lease, created].into_iter().flatten().max();
        let grace = if ready.is_none() {
            STARTUP_GRACE_SECONDS
        } else {
            cfg.node_monitor_grace_seconds
        };
        let stale = probe.is_none_or(|p| now.duration_since(p).as_secs_f64() > grace);
        if stale && util::condition_status(&n, "Ready") != "Unknown" {
            let never = ready.is_none();
            let updated = store.mutate(&resources::NODE, "", &name, |o| {
                for t in ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"] {
                    let old = util::condition(o, t).cloned();
                    let mut c = json!({"type": t, "status": "Unknown", "reason": "NodeStatusUnknown",
                        "message": if never { "Kubelet never posted node status." } else { "Kubelet stopped posting node status." },
                        "lastTransitionTime": now_s});
                    c["lastHeartbeatTime"] = old.as_ref().and_then(|c| c.get("lastHeartbeatTime").cloned()).unwrap_or(json!(now_s));
                    util::set_condition(o, c, &now_s);
                }
                Ok(())
            });
            if let Ok(node) = updated {
                ctx.events.record(
                    &ctx.lab,
                    &node,
                    "Normal",
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                    "node-controller",
                    None,
                );
                mark_pods_not_ready(ctx, &name);
            }
        }
        if let Some(n) = store.get(&resources::NODE, "", &name) {
            reconcile_taints(ctx, &n, &now_s);
        }
    }
}

/// controller/util/node MarkPodsNotReady.
fn mark_pods_not_ready(ctx: &Ctx, node: &str) {
    let now = ctx.lab.clock.now_rfc3339();
    let q = crate::ListQuery::all().fields(
        crate::selector::FieldSelector::parse(&format!("spec.nodeName={node}")).expect("valid"),
    );
    for p in ctx.lab.store.list(&resources::POD, &q).0 {
        if util::pod_ready(&p) {
            let _ =
                ctx.lab
                    .store
                    .mutate(&resources::POD, util::namespace(&p), util::name(&p), |o| {
                        util::set_condition(
                            o,
                            json!({"type": "Ready", "status": "False", "lastProbeTime": null}),
                            &now,
                        );
                        Ok(())
                    });
        }
    }
}

/// The taints a node's state calls for (key, effect).
pub fn desired_taints(n: &Value) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    match util::condition_status(n, "Ready") {
        "False" => {
            out.push((util::TAINT_NOT_READY, "NoSchedule"));
            out.push((util::TAINT_NOT_READY, "NoExecute"));
        }
        "Unknown" => {
            out.push((util::TAINT_UNREACHABLE, "NoSchedule"));
            out.push((util::TAINT_UNREACHABLE, "NoExecute"));
        }
        _ => {}
    }
    for (cond, key) in [
        ("MemoryPressure", util::TAINT_MEMORY_PRESSURE),
        ("DiskPressure", util::TAINT_DISK_PRESSURE),
        ("PIDPressure", util::TAINT_PID_PRESSURE),
        ("NetworkUnavailable", util::TAINT_NETWORK_UNAVAILABLE),
    ] {
        if util::condition_status(n, cond) == "True" {
            out.push((key, "NoSchedule"));
        }
    }
    if n.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        out.push((util::TAINT_UNSCHEDULABLE, "NoSchedule"));
    }
    out
}

const MANAGED: &[&str] = &[
    util::TAINT_NOT_READY,
    util::TAINT_UNREACHABLE,
    util::TAINT_MEMORY_PRESSURE,
    util::TAINT_DISK_PRESSURE,
    util::TAINT_PID_PRESSURE,
    util::TAINT_NETWORK_UNAVAILABLE,
    util::TAINT_UNSCHEDULABLE,
];

pub fn reconcile_taints(ctx: &Ctx, n: &Value, now: &str) {
    let want = desired_taints(n);
    let have: Vec<(String, String)> = util::node_taints(n)
        .iter()
        .filter(|t| MANAGED.contains(&util::s(t, "/key")))
        .map(|t| {
            (
                util::s(t, "/key").to_string(),
                util::s(t, "/effect").to_string(),
            )
        })
        .collect();
    let same = want.len() == have.len()
        && want
            .iter()
            .all(|(k, e)| have.iter().any(|(hk, he)| hk == k && he == e));
    if same {
        return;
    }
    let _ = ctx
        .lab
        .store
        .mutate(&resources::NODE, "", util::name(n), |o| {
            let mut taints: Vec<Value> = util::node_taints(o)
                .iter()
                .filter(|t| {
                    let k = util::s(t, "/key");
                    !MANAGED.contains(&k)
                        || want
                            .iter()
                            .any(|(wk, we)| *wk == k && *we == util::s(t, "/effect"))
                })
                .cloned()
                .collect();
            for (k, e) in &want {
                if !taints
                    .iter()
                    .any(|t| util::s(t, "/key") == *k && util::s(t, "/effect") == *e)
                {
                    let mut t = json!({"key": k, "effect": e});
                    if *e == "NoExecute" {
                        t["timeAdded"] = json!(now);
                    }
                    taints.push(t);
                }
            }
            if taints.is_empty() {
                o["spec"].as_object_mut().map(|m| m.remove("taints"));
            } else {
                o["spec"]["taints"] = json!(taints);
            }
            Ok(())
        });
}

/// taint_eviction.go processPodOnNode: when must this pod go (None: never)?
pub fn eviction_due(pod: &Value, taints: &[Value]) -> Option<Option<jiff::Timestamp>> {
    let noexec: Vec<&Value> = taints
        .iter()
        .filter(|t| util::s(t, "/effect") == "NoExecute")
        .collect();
    if noexec.is_empty() {
        return None;
    }
    let tols = util::pod_tolerations(pod);
    let mut min: Option<i64> = None;
    let mut forever = true;
    for t in &noexec {
        let used: Vec<&Value> = tols.iter().filter(|x| util::tolerates(x, t)).collect();
        if used.is_empty() {
            return Some(None); // not tolerated: evict now
        }
        for u in used {
            if let Some(secs) = u.get("tolerationSeconds").and_then(Value::as_i64) {
                forever = false;
                min = Some(min.map_or(secs, |m: i64| m.min(secs)));
            }
        }
    }
    if forever {
        return None;
    }
    let added = noexec
        .iter()
        .filter_map(|t| ts(util::s(t, "/timeAdded")))
        .max();
    let secs = min.unwrap_or(0).max(0);
    Some(Some(added.map_or_else(jiff::Timestamp::now, |a| {
        a + jiff::SignedDuration::from_secs(secs)
    })))
}

/// The taint manager's pass over nodes with NoExecute taints.
pub fn evict(ctx: &Ctx) {
    let store = &ctx.lab.store;
    let now = ctx.lab.clock.now();
    let now_s = ctx.lab.clock.now_rfc3339();
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    for n in nodes.iter().filter(|n| {
        util::node_taints(n)
            .iter()
            .any(|t| util::s(t, "/effect") == "NoExecute")
    }) {
        let q = crate::ListQuery::all().fields(
            crate::selector::FieldSelector::parse(&format!("spec.nodeName={}", util::name(n)))
                .expect("valid"),
        );
        for p in store.list(&resources::POD, &q).0 {
            if util::terminating(&p) {
                continue;
            }
            let due = match eviction_due(&p, util::node_taints(n)) {
                None => continue,
                Some(None) => true,
                Some(Some(t)) => t <= now,
            };
            if !due {
                continue;
            }
            let (ns, name) = (util::namespace(&p).to_string(), util::name(&p).to_string());
            let _ = store.mutate(&resources::POD, &ns, &name, |o| {
                util::set_condition(
                    o,
                    json!({"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager", "message": "Taint manager: deleting due to NoExecute taint", "lastProbeTime": null}),
                    &now_s,
                );
                Ok(())
            });
            if store
                .delete(&resources::POD, &ns, &name, &DeleteOpts::default())
                .is_ok()
            {
                ctx.events.record(
                    &ctx.lab,
                    &p,
                    "Normal",
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                    "taint-eviction-controller",
                    None,
                );
            }
        }
    }
}
