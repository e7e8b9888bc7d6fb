//! The PodDisruptionBudget status controller (pkg/controller/disruption/disruption.go):
//! currentHealthy, desiredHealthy, disruptionsAllowed, expectedPods, observedGeneration,
//! the DisruptionAllowed condition and expiry of `disruptedPods`.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::ListQuery;
use crate::resources;
use crate::store::Obj;

use super::{Ctx, Key, util};

/// disruption.go DeletionTimeout: an evicted pod counts as disrupted for at most 2 minutes.
pub const DELETION_TIMEOUT_SECONDS: f64 = 120.0;

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    super::replicaset::keys_of(ctx, &resources::PDB)
}

/// The numbers a PDB's status is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub current_healthy: i64,
    pub desired_healthy: i64,
    pub expected_pods: i64,
    pub disruptions_allowed: i64,
}

/// Scale of the controller of a pod, looked up like disruption.go's finders
/// (getPodReplicaSet — a ReplicaSet owned by a Deployment answers the Deployment's scale —,
/// getPodStatefulSet, getPodReplicationController). Returns (controller uid, scale).
fn controller_scale(ctx: &Ctx, pod: &Value) -> Result<Option<(String, i64)>, String> {
    let Some(cref) = util::controller_ref(pod) else {
        return Err(format!(
            "found no controller ref for pod {:?}",
            util::name(pod)
        ));
    };
    let ns = util::namespace(pod);
    let (kind, name, uid) = (
        util::s(cref, "/kind"),
        util::s(cref, "/name"),
        util::s(cref, "/uid"),
    );
    let store = &ctx.lab.store;
    let scale =
        |res: &'static resources::Resource, name: &str, uid: &str| -> Option<(String, i64)> {
            let o = store.get(res, ns, name)?;
            (util::uid(&o) == uid)
                .then(|| (uid.to_string(), util::i(&o, "/spec/replicas").unwrap_or(1)))
        };
    match kind {
        "ReplicaSet" => {
            let Some(rs) = store
                .get(&resources::REPLICASET, ns, name)
                .filter(|r| util::uid(r) == uid)
            else {
                return Err(format!(
                    "found no controllers for pod {:?}",
                    util::name(pod)
                ));
            };
            if let Some(("Deployment", dname, duid)) = util::controller_of(&rs)
                && let Some(s) = scale(&resources::DEPLOYMENT, dname, duid)
            {
                return Ok(Some(s));
            }
            Ok(Some((
                uid.to_string(),
                util::i(&rs, "/spec/replicas").unwrap_or(1),
            )))
        }
        "StatefulSet" => scale(&resources::STATEFULSET, name, uid)
            .map(Some)
            .ok_or_else(|| format!("found no controllers for pod {:?}", util::name(pod))),
        _ => Err(format!(
            "found no controllers for pod {:?}",
            util::name(pod)
        )),
    }
}

/// disruption.go getExpectedScale: the sum of the distinct controllers' scales.
fn expected_scale(ctx: &Ctx, pods: &[Obj]) -> Result<i64, String> {
    let mut seen = BTreeMap::new();
    for p in pods {
        if let Some((uid, s)) = controller_scale(ctx, p)? {
            seen.insert(uid, s);
        }
    }
    Ok(seen.values().sum())
}

/// disruption.go getExpectedPodCount + updatePdbStatus arithmetic. `pods` are the pods the
/// selector matches; `healthy` is countHealthyPods' result.
pub fn compute(ctx: &Ctx, pdb: &Value, pods: &[Obj], healthy: i64) -> Result<Budget, String> {
    let (expected, desired) = if let Some(mu) = pdb.pointer("/spec/maxUnavailable") {
        let expected = expected_scale(ctx, pods)?;
        let mu = util::scaled_int_or_percent(mu, expected, true)?;
        (expected, (expected - mu).max(0))
    } else if let Some(ma) = pdb.pointer("/spec/minAvailable") {
        match ma {
            Value::Number(n) => (pods.len() as i64, n.as_i64().unwrap_or(0)),
            Value::String(s) if !s.ends_with('%') => (
                pods.len() as i64,
                s.parse()
                    .map_err(|_| format!("invalid minAvailable {s:?}"))?,
            ),
            _ => {
                let expected = expected_scale(ctx, pods)?;
                (expected, util::scaled_int_or_percent(ma, expected, true)?)
            }
        }
    } else {
        // neither set: policy/v1 defaulting leaves minAvailable=1 on create; treat as that
        (pods.len() as i64, 1)
    };
    let mut allowed = healthy - desired;
    if expected <= 0 || allowed <= 0 {
        allowed = 0;
    }
    Ok(Budget {
        current_healthy: healthy,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
    })
}

pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(pdb) = store.get(&resources::PDB, &key.0, &key.1) else {
        return;
    };
    let sel = util::spec_selector(&pdb);
    let (pods, _) = store.list(
        &resources::POD,
        &ListQuery::in_namespace(&key.0).labels(sel),
    );
    let now = ctx.lab.clock.now();
    // buildDisruptedPodMap: drop entries whose pod is gone, being deleted, or expired.
    let mut disrupted = Map::new();
    if let Some(m) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    {
        for (name, t) in m {
            let Some(p) = pods.iter().find(|p| util::name(p) == name) else {
                continue;
            };
            if util::terminating(p) {
                continue;
            }
            let expired = t
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| now.duration_since(t).as_secs_f64() >= DELETION_TIMEOUT_SECONDS);
            if !expired {
                disrupted.insert(name.clone(), t.clone());
            }
        }
    }
    // countHealthyPods
    let healthy = pods
        .iter()
        .filter(|p| !util::terminating(p))
        .filter(|p| !disrupted.contains_key(util::name(p)))
        .filter(|p| util::pod_ready(p))
        .count() as i64;
    let generation = util::i(&pdb, "/metadata/generation").unwrap_or(0);
    let now_s = ctx.lab.clock.now_rfc3339();
    let result = compute(ctx, &pdb, &pods, healthy);
    if let Err(e) = &result {
        ctx.event(
            &pdb,
            "Warning",
            if e.starts_with("found no controller ref") {
                "NoControllerRef"
            } else {
                "CalculateExpectedPodCountFailed"
            },
            e,
            "controllermanager",
        );
    }
    let _ = store.mutate(&resources::PDB, &key.0, &key.1, |o| {
        let mut s = o.get("status").cloned().unwrap_or_else(|| json!({}));
        match &result {
            Ok(b) => {
                s["currentHealthy"] = json!(b.current_healthy);
                s["desiredHealthy"] = json!(b.desired_healthy);
                s["expectedPods"] = json!(b.expected_pods);
                s["disruptionsAllowed"] = json!(b.disruptions_allowed);
                s["observedGeneration"] = json!(generation);
                if disrupted.is_empty() {
                    s.as_object_mut().map(|m| m.remove("disruptedPods"));
                } else {
                    s["disruptedPods"] = Value::Object(disrupted.clone());
                }
                o["status"] = s;
                // pdb/helpers UpdateDisruptionAllowedCondition
                let (st, reason) = if b.disruptions_allowed > 0 {
                    ("True", "SufficientPods")
                } else {
                    ("False", "InsufficientPods")
                };
                set_pdb_condition(o, st, reason, "", generation, &now_s);
            }
            Err(e) => {
                // disruption.go failSafe
                s["disruptionsAllowed"] = json!(0);
                s["observedGeneration"] = json!(generation);
                o["status"] = s;
                set_pdb_condition(o, "False", "SyncFailed", e, generation, &now_s);
            }
        }
        Ok(())
    });
}

fn set_pdb_condition(
    o: &mut Value,
    status: &str,
    reason: &str,
    message: &str,
    generation: i64,
    now: &str,
) {
    util::set_condition(
        o,
        json!({"type": "DisruptionAllowed", "status": status, "reason": reason, "message": message, "observedGeneration": generation}),
        now,
    );
}
