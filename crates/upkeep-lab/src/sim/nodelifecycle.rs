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
//! * Disruption modes (handleDisruption, ComputeZoneState, setLimiterInZone): the NoExecute
//!   `not-ready`/`unreachable` taints are added through a per-zone rate limiter. A zone with
//!   more than 2 NotReady nodes and at least 55 % of them NotReady is partially disrupted:
//!   in a zone of 50 nodes or fewer its rate is 0 (ReducedQPSFunc), so no node gets a new
//!   NoExecute taint. When every zone is fully disrupted (no Ready node at all) the
//!   controller enters "master disruption mode": it removes those taints from every node
//!   (markNodeAsReachable) and evicts nothing. The normal rate (0.1 node/s) is not modelled.
//! * The taint manager deletes pods that do not tolerate a NoExecute taint, at once or when
//!   their smallest matching tolerationSeconds has passed since the taint eviction controller
//!   first saw the pod on a NoExecute-tainted node (taint_eviction.go processPodOnNode: the
//!   scheduled eviction keeps its CreatedAt while taints stay, and is cancelled when they go).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use serde_json::{Value, json};

use crate::resources;
use crate::store::DeleteOpts;

use super::{Ctx, util};

/// --node-startup-grace-period
const STARTUP_GRACE_SECONDS: f64 = 60.0;
/// --unhealthy-zone-threshold
const UNHEALTHY_ZONE_THRESHOLD: f64 = 0.55;
/// --large-cluster-size-threshold
const LARGE_CLUSTER_THRESHOLD: usize = 50;

/// A zone's state (node_lifecycle_controller.go ComputeZoneState).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// ComputeZoneState: no Ready node at all is full disruption; more than 2 NotReady nodes
/// making at least 55 % of the zone is partial disruption.
pub fn zone_state(ready: usize, not_ready: usize) -> ZoneState {
    if ready == 0 && not_ready > 0 {
        ZoneState::FullDisruption
    } else if not_ready > 2
        && not_ready as f64 / (not_ready + ready) as f64 >= UNHEALTHY_ZONE_THRESHOLD
    {
        ZoneState::PartialDisruption
    } else {
        ZoneState::Normal
    }
}

/// What the NoExecute tainting of a zone's NotReady nodes may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tainting {
    /// Taint at the zone's rate.
    Allowed,
    /// Rate 0: no node gets a new NoExecute taint; taints already there stay.
    Frozen,
    /// Master disruption mode: the NoExecute taints are removed from every node.
    Lifted,
}

/// handleDisruption + setLimiterInZone, for every zone given as (ready, not ready).
pub fn tainting(zones: &BTreeMap<String, (usize, usize)>) -> BTreeMap<String, Tainting> {
    let states: BTreeMap<&String, ZoneState> = zones
        .iter()
        .map(|(z, (r, n))| (z, zone_state(*r, *n)))
        .collect();
    let all_full = !states.is_empty() && states.values().all(|s| *s == ZoneState::FullDisruption);
    zones
        .iter()
        .map(|(z, (r, n))| {
            let t = match states[z] {
                _ if all_full => Tainting::Lifted,
                // ReducedQPSFunc: 0 in clusters up to --large-cluster-size-threshold
                ZoneState::PartialDisruption if r + n <= LARGE_CLUSTER_THRESHOLD => {
                    Tainting::Frozen
                }
                // HealthyQPSFunc for a fully disrupted zone among healthy ones; the
                // secondary rate (0.01/s) for large partially disrupted zones
                _ => Tainting::Allowed,
            };
            (z.clone(), t)
        })
        .collect()
}

/// A node's zone key (k8s.io/component-helpers/node/topology GetZoneKey: region and zone).
pub fn zone_key(n: &Value) -> String {
    let get = |keys: [&str; 2]| {
        keys.iter()
            .find_map(|k| util::label(n, k))
            .unwrap_or("")
            .to_string()
    };
    let region = get([
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/region",
    ]);
    let zone = get([
        "topology.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/zone",
    ]);
    if region.is_empty() && zone.is_empty() {
        String::new()
    } else {
        format!("{region}:\x00:{zone}")
    }
}

/// The controller's memory between passes: each zone's tainting, and when the taint
/// eviction controller first saw each pod (by UID) on a NoExecute-tainted node.
#[derive(Default)]
pub struct LifecycleState {
    zones: Mutex<BTreeMap<String, Tainting>>,
    first_seen: Mutex<HashMap<String, jiff::Timestamp>>,
}

impl LifecycleState {
    pub fn get(lab: &crate::lab::Lab) -> Arc<LifecycleState> {
        lab.extension("sim.nodelifecycle", LifecycleState::default)
    }
    fn tainting(&self, zone: &str) -> Tainting {
        self.zones
            .lock()
            .get(zone)
            .copied()
            .unwrap_or(Tainting::Allowed)
    }
}

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
    }
    // handleDisruption: zone states from the Ready conditions, then the taints
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    let mut zones: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for n in &nodes {
        let e = zones.entry(zone_key(n)).or_default();
        if util::condition_status(n, "Ready") == "True" {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }
    let modes = tainting(&zones);
    let state = LifecycleState::get(&ctx.lab);
    {
        let mut known = state.zones.lock();
        for (z, t) in &modes {
            if known.get(z) != Some(t) {
                tracing::info!(
                    "node lifecycle: zone {z:?} ({} ready, {} not ready): NoExecute tainting {t:?}",
                    zones[z].0,
                    zones[z].1
                );
            }
        }
        *known = modes;
    }
    for n in &nodes {
        reconcile_taints(ctx, n, &now_s);
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

/// The NoExecute `not-ready`/`unreachable` taints under the zone's tainting: frozen keeps
/// only those already on the node, lifted removes them. Removal when the node is Ready again
/// is never limited (markNodeAsReachable).
pub fn limit_no_execute(
    want: Vec<(&'static str, &'static str)>,
    have: &[Value],
    mode: Tainting,
) -> Vec<(&'static str, &'static str)> {
    let rate_limited = |k: &str, e: &str| {
        e == "NoExecute" && (k == util::TAINT_NOT_READY || k == util::TAINT_UNREACHABLE)
    };
    want.into_iter()
        .filter(|(k, e)| match mode {
            Tainting::Allowed => true,
            Tainting::Lifted => !rate_limited(k, e),
            Tainting::Frozen => {
                !rate_limited(k, e)
                    || have
                        .iter()
                        .any(|t| util::s(t, "/key") == *k && util::s(t, "/effect") == *e)
            }
        })
        .collect()
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
    let mode = LifecycleState::get(&ctx.lab).tainting(&zone_key(n));
    let want = limit_no_execute(desired_taints(n), util::node_taints(n), mode);
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

/// taint_eviction.go processPodOnNode: when must this pod go (None: never; Some(None): now)?
/// `seen` is when the controller first saw the pod on a node with NoExecute taints: the
/// smallest matching tolerationSeconds counts from then.
pub fn eviction_due(
    pod: &Value,
    taints: &[Value],
    seen: jiff::Timestamp,
) -> Option<Option<jiff::Timestamp>> {
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
    let secs = min.unwrap_or(0).max(0);
    Some(Some(seen + jiff::SignedDuration::from_secs(secs)))
}

/// When the controller would first have seen the pod on the tainted node: when the earliest
/// NoExecute taint was added, or when the pod arrived on the node if later (the informer
/// events that call processPodOnNode), never after `now`.
fn first_seen(pod: &Value, taints: &[Value], now: jiff::Timestamp) -> jiff::Timestamp {
    let tainted = taints
        .iter()
        .filter(|t| util::s(t, "/effect") == "NoExecute")
        .filter_map(|t| ts(util::s(t, "/timeAdded")))
        .min();
    let arrived = util::condition(pod, "PodScheduled")
        .and_then(|c| ts(util::s(c, "/lastTransitionTime")))
        .or_else(|| ts(util::s(pod, "/metadata/creationTimestamp")));
    [tainted, arrived]
        .into_iter()
        .flatten()
        .max()
        .unwrap_or(now)
        .min(now)
}

/// The taint manager's pass over nodes with NoExecute taints.
pub fn evict(ctx: &Ctx) {
    let store = &ctx.lab.store;
    let now = ctx.lab.clock.now();
    let now_s = ctx.lab.clock.now_rfc3339();
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    let state = LifecycleState::get(&ctx.lab);
    let mut still_tainted: HashMap<String, jiff::Timestamp> = HashMap::new();
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
            let seen = state
                .first_seen
                .lock()
                .get(util::uid(&p))
                .copied()
                .unwrap_or_else(|| first_seen(&p, util::node_taints(n), now));
            still_tainted.insert(util::uid(&p).to_string(), seen);
            let due = match eviction_due(&p, util::node_taints(n), seen) {
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
    // pods no longer on a NoExecute-tainted node: their scheduled eviction is cancelled
    *state.first_seen.lock() = still_tainted;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(list: &[(&str, usize, usize)]) -> BTreeMap<String, (usize, usize)> {
        list.iter()
            .map(|(z, r, n)| (z.to_string(), (*r, *n)))
            .collect()
    }

    #[test]
    fn zone_states_follow_compute_zone_state() {
        assert_eq!(zone_state(3, 0), ZoneState::Normal);
        assert_eq!(zone_state(0, 1), ZoneState::FullDisruption);
        // at most 2 NotReady nodes is never partial disruption, whatever the share
        assert_eq!(zone_state(1, 2), ZoneState::Normal);
        // 3 of 5 = 60 % >= 55 %
        assert_eq!(zone_state(2, 3), ZoneState::PartialDisruption);
        // 3 of 6 = 50 % < 55 %
        assert_eq!(zone_state(3, 3), ZoneState::Normal);
    }

    #[test]
    fn disruption_modes_freeze_or_lift_the_no_execute_tainting() {
        // every node NotReady: master disruption mode, taints lifted everywhere
        let t = tainting(&zones(&[("", 0, 4)]));
        assert_eq!(t[""], Tainting::Lifted);
        // partial disruption in a small cluster: rate 0
        let t = tainting(&zones(&[("", 2, 3)]));
        assert_eq!(t[""], Tainting::Frozen);
        // ... but not in a large one (secondary rate)
        let t = tainting(&zones(&[("", 40, 60)]));
        assert_eq!(t[""], Tainting::Allowed);
        // one zone fully down among healthy ones: that zone is tainted at the normal rate
        let t = tainting(&zones(&[("a", 0, 3), ("b", 3, 0)]));
        assert_eq!((t["a"], t["b"]), (Tainting::Allowed, Tainting::Allowed));
        // a single NotReady node among healthy ones
        assert_eq!(tainting(&zones(&[("", 2, 1)]))[""], Tainting::Allowed);
    }

    #[test]
    fn frozen_keeps_existing_taints_and_lifted_removes_them() {
        let want = vec![
            (util::TAINT_UNREACHABLE, "NoSchedule"),
            (util::TAINT_UNREACHABLE, "NoExecute"),
        ];
        let none: Vec<Value> = vec![];
        let had = vec![json!({"key": util::TAINT_UNREACHABLE, "effect": "NoExecute"})];
        assert_eq!(
            limit_no_execute(want.clone(), &none, Tainting::Allowed),
            want
        );
        assert_eq!(
            limit_no_execute(want.clone(), &none, Tainting::Frozen),
            vec![(util::TAINT_UNREACHABLE, "NoSchedule")]
        );
        assert_eq!(limit_no_execute(want.clone(), &had, Tainting::Frozen), want);
        assert_eq!(
            limit_no_execute(want, &had, Tainting::Lifted),
            vec![(util::TAINT_UNREACHABLE, "NoSchedule")]
        );
    }

    #[test]
    fn the_eviction_clock_starts_when_the_pod_is_seen_on_the_tainted_node() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let later = |s: i64| t0 + jiff::SignedDuration::from_secs(s);
        let taints = vec![
            json!({"key": util::TAINT_UNREACHABLE, "effect": "NoExecute",
                                 "timeAdded": "2026-01-01T00:00:00Z"}),
        ];
        let pod = |scheduled: &str| {
            json!({"metadata": {"creationTimestamp": scheduled},
                   "spec": {"tolerations": [{"key": util::TAINT_UNREACHABLE, "operator": "Exists",
                                             "effect": "NoExecute", "tolerationSeconds": 300}]},
                   "status": {"conditions": [{"type": "PodScheduled", "status": "True",
                                              "lastTransitionTime": scheduled}]}})
        };
        // on the node before the taint: 300 s from the taint
        let old = pod("2025-12-31T23:00:00Z");
        let seen = first_seen(&old, &taints, later(1000));
        assert_eq!(seen, t0);
        assert_eq!(eviction_due(&old, &taints, seen), Some(Some(later(300))));
        // arrived 200 s after the taint: its own 300 s from then, not 100 s
        let new = pod("2026-01-01T00:03:20Z");
        let seen = first_seen(&new, &taints, later(1000));
        assert_eq!(seen, later(200));
        assert_eq!(eviction_due(&new, &taints, seen), Some(Some(later(500))));
        // not tolerated: at once
        let bare = json!({"metadata": {}, "spec": {}});
        assert_eq!(eviction_due(&bare, &taints, t0), Some(None));
    }
}
