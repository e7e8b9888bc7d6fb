//! The PodDisruptionBudget status controller (pkg/controller/disruption/disruption.go):
//! currentHealthy, desiredHealthy, disruptionsAllowed, expectedPods, observedGeneration,
//! the DisruptionAllowed condition and expiry of `disruptedPods`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use parking_lot::Mutex;

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
    /// Pods without a controllerRef that getExpectedScale skipped (event `UnmanagedPods`).
    pub unmanaged: Vec<String>,
}

/// disruption.go verifyGroupKind: the ref's kind, and its apiVersion's group among `groups`.
fn is_kind(cref: &Value, kind: &str, groups: &[&str]) -> bool {
    let api_version = util::s(cref, "/apiVersion");
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    util::s(cref, "/kind") == kind && groups.contains(&group)
}

/// One controller and its scale: (uid, replicas).
type Scale = (String, i64);

/// disruption.go finders(), in upstream order: getPodReplicationController (not served by
/// the lab), getPodDeployment, getPodReplicaSet, getPodStatefulSet, getScaleController.
/// `Ok(None)` is "no finder knows this controller".
fn find_controller(ctx: &Ctx, cref: &Value, ns: &str) -> Result<Option<Scale>, String> {
    let store = &ctx.lab.store;
    let (name, uid) = (util::s(cref, "/name"), util::s(cref, "/uid"));
    let replicas = |o: &Value| util::i(o, "/spec/replicas").unwrap_or(1);
    if is_kind(cref, "ReplicaSet", &["apps", "extensions"])
        && let Some(rs) = store
            .get(&resources::REPLICASET, ns, name)
            .filter(|rs| util::uid(rs) == uid)
    {
        match util::controller_ref(&rs) {
            // getPodDeployment: a ReplicaSet a Deployment controls answers its scale.
            Some(dref) if is_kind(dref, "Deployment", &["apps", "extensions"]) => {
                if let Some(d) = store
                    .get(&resources::DEPLOYMENT, ns, util::s(dref, "/name"))
                    .filter(|d| util::uid(d) == util::s(dref, "/uid"))
                {
                    return Ok(Some((util::uid(&d).to_string(), replicas(&d))));
                }
            }
            // getPodReplicaSet skips a ReplicaSet controlled by any Deployment
            Some(dref) if util::s(dref, "/kind") == "Deployment" => {}
            _ => return Ok(Some((uid.to_string(), replicas(&rs)))),
        }
    }
    if is_kind(cref, "StatefulSet", &["apps"])
        && let Some(ss) = store
            .get(&resources::STATEFULSET, ns, name)
            .filter(|ss| util::uid(ss) == uid)
    {
        return Ok(Some((uid.to_string(), replicas(&ss))));
    }
    // getScaleController: the REST mapping of the ref, then its scale subresource.
    let api_version = util::s(cref, "/apiVersion");
    let kind = util::s(cref, "/kind");
    let Some(res) = resources::by_kind(api_version, kind) else {
        // meta.NoKindMatchError
        return Err(format!(
            "no matches for kind {kind:?} in version {api_version:?}"
        ));
    };
    if !res.has_subresource("scale") {
        return Err(format!(
            "{} does not implement the scale subresource",
            res.qualified()
        ));
    }
    Ok(store
        .get(res, ns, name)
        .filter(|o| util::uid(o) == uid)
        .map(|o| (uid.to_string(), replicas(&o))))
}

/// disruption.go getExpectedScale: the sum of the distinct controllers' scales. Pods without
/// a controllerRef are skipped and reported (kubernetes/kubernetes#103414).
fn expected_scale(ctx: &Ctx, pods: &[Obj]) -> Result<(i64, Vec<String>), String> {
    let mut seen = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for p in pods {
        let Some(cref) = util::controller_ref(p) else {
            unmanaged.push(util::name(p).to_string());
            continue;
        };
        if seen.contains_key(util::s(cref, "/uid")) {
            continue;
        }
        match find_controller(ctx, cref, util::namespace(p))? {
            Some((uid, s)) => {
                seen.insert(uid, s);
            }
            None => return Err(format!("found no controllers for pod {:?}", util::name(p))),
        }
    }
    Ok((seen.values().sum(), unmanaged))
}

/// intstr.GetScaledValueFromIntOrPercent for a percentage (a string must end in `%`),
/// rounding up as disruption.go asks.
fn scaled_percent(v: &Value, total: i64) -> Result<i64, String> {
    if let Value::String(s) = v
        && !s.ends_with('%')
    {
        return Err(
            "invalid value for IntOrString: invalid type: string is not a percentage".into(),
        );
    }
    util::scaled_int_or_percent(v, total, true)
}

/// disruption.go getExpectedPodCount and updatePdbStatus's arithmetic. `pods` are the pods
/// the selector matches; `healthy` is countHealthyPods' result.
pub fn compute(ctx: &Ctx, pdb: &Value, pods: &[Obj], healthy: i64) -> Result<Budget, String> {
    let mut unmanaged = Vec::new();
    let (expected, desired) =
        if let Some(mu) = pdb.pointer("/spec/maxUnavailable").filter(|v| !v.is_null()) {
            let (expected, u) = expected_scale(ctx, pods)?;
            unmanaged = u;
            let mu = match mu {
                Value::Number(_) => util::scaled_int_or_percent(mu, expected, true)?,
                _ => scaled_percent(mu, expected)?,
            };
            (expected, (expected - mu).max(0))
        } else if let Some(ma) = pdb.pointer("/spec/minAvailable").filter(|v| !v.is_null()) {
            match ma {
                // an integer counts the matching pods, controller or not
                Value::Number(n) => (pods.len() as i64, n.as_i64().unwrap_or(0)),
                _ => {
                    let (expected, u) = expected_scale(ctx, pods)?;
                    unmanaged = u;
                    (expected, scaled_percent(ma, expected)?)
                }
            }
        } else {
            // policy/v1 has no defaulting (only v1beta1 defaults minAvailable to 1): neither
            // field leaves expected 0 and desired 0, and expected <= 0 forces allowed 0 below.
            (0, 0)
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
        unmanaged,
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
    // trySync
    if pods.is_empty() {
        ctx.event(
            &pdb,
            "Normal",
            "NoPods",
            "No matching pods found",
            COMPONENT,
        );
    }
    let now = ctx.lab.clock.now();
    // buildDisruptedPodMap: keep entries of pods that exist, are not being deleted and whose
    // 2 minutes have not passed (`expectedDeletion.Before(currentTime)` drops them).
    let mut disrupted = Map::new();
    let mut recheck: Option<jiff::Timestamp> = None;
    if let Some(m) = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
    {
        for p in pods.iter().filter(|p| !util::terminating(p)) {
            let Some(t) = m.get(util::name(p)) else {
                continue;
            };
            let expired = t
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .is_none_or(|t| now.duration_since(t).as_secs_f64() > DELETION_TIMEOUT_SECONDS);
            if expired {
                // upstream prints the PDB's namespace twice
                let msg = format!(
                    "Pod was expected by PDB {}/{} to be deleted but it wasn't",
                    key.0, key.0
                );
                ctx.event(p, "Warning", "NotDeleted", &msg, COMPONENT);
            } else {
                disrupted.insert(util::name(p).to_string(), t.clone());
                // the earliest expiry: when this budget must be looked at again
                if let Some(at) = t.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()) {
                    let at = at + jiff::SignedDuration::from_secs_f64(DELETION_TIMEOUT_SECONDS);
                    recheck = Some(recheck.map_or(at, |r| r.min(at)));
                }
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
    let result = compute(ctx, &pdb, &pods, healthy);
    if let Ok(b) = &result
        && !b.unmanaged.is_empty()
    {
        let msg = format!(
            "Pods selected by this PodDisruptionBudget (selector: {}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value.",
            go_label_selector(pdb.pointer("/spec/selector"))
        );
        ctx.event(&pdb, "Warning", "UnmanagedPods", &msg, COMPONENT);
    }
    if let (Ok(_), Some(at)) = (&result, recheck) {
        enqueue_for_recheck(ctx, key, at);
    }
    let generation = util::i(&pdb, "/metadata/generation").unwrap_or(0);
    let now_s = ctx.lab.clock.now_rfc3339();
    if let Err(e) = &result {
        ctx.event(
            &pdb,
            "Warning",
            "CalculateExpectedPodCountFailed",
            &format!("Failed to calculate the number of expected pods: {e}"),
            COMPONENT,
        );
    }
    let _ = store.mutate(&resources::PDB, &key.0, &key.1, |o| {
        // updatePdbStatus writes with the resourceVersion it read: when an eviction took a
        // disruption meanwhile, the write is a Conflict and the changed PDB is synced again
        // (its Modified event requeues it). Overwriting would hand the disruption back.
        if o.pointer("/metadata/resourceVersion") != pdb.pointer("/metadata/resourceVersion") {
            return Err(crate::error::ApiError::stale(&resources::PDB, &key.1));
        }
        match &result {
            Ok(b) => {
                // updatePdbStatus replaces the status, keeping only the conditions
                let mut s = json!({
                    "currentHealthy": b.current_healthy,
                    "desiredHealthy": b.desired_healthy,
                    "expectedPods": b.expected_pods,
                    "disruptionsAllowed": b.disruptions_allowed,
                    "observedGeneration": generation,
                });
                if !disrupted.is_empty() {
                    s["disruptedPods"] = Value::Object(disrupted.clone());
                }
                if let Some(c) = o.pointer("/status/conditions") {
                    s["conditions"] = c.clone();
                }
                o["status"] = s;
                // component-helpers apps/poddisruptionbudget UpdateDisruptionAllowedCondition
                let (st, reason) = if b.disruptions_allowed > 0 {
                    ("True", "SufficientPods")
                } else {
                    ("False", "InsufficientPods")
                };
                set_pdb_condition(o, st, reason, "", generation, &now_s);
            }
            Err(e) => {
                // failSafe: only disruptionsAllowed and the condition, whose
                // observedGeneration is the status's (not the object's)
                let observed = util::i(o, "/status/observedGeneration").unwrap_or(0);
                if !o.get("status").is_some_and(Value::is_object) {
                    o["status"] = json!({});
                }
                o["status"]["disruptionsAllowed"] = json!(0);
                set_pdb_condition(o, "False", "SyncFailed", e, observed, &now_s);
            }
        }
        Ok(())
    });
}

/// PDBs waiting for a recheck, per simulation: (ctx address, key) -> when. Like upstream's
/// delaying queue, one pending recheck per PDB, the earliest.
static RECHECKS: LazyLock<Mutex<HashMap<(usize, Key), jiff::Timestamp>>> =
    LazyLock::new(Default::default);

/// disruption.go enqueuePdbForRecheck: sync `key` again when its first `disruptedPods`
/// entry expires, not only at the next resync. Needs a tokio runtime (the simulation's).
fn enqueue_for_recheck(ctx: &Arc<Ctx>, key: &Key, at: jiff::Timestamp) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let id = (Arc::as_ptr(ctx) as usize, key.clone());
    {
        let mut pending = RECHECKS.lock();
        if pending.get(&id).is_some_and(|t| *t <= at) {
            return;
        }
        pending.insert(id.clone(), at);
    }
    let ctx = ctx.clone();
    rt.spawn(async move {
        let wait = ctx
            .lab
            .clock
            .now()
            .duration_until(at)
            .as_secs_f64()
            .max(0.0);
        // a little past the expiry: upstream drops entries strictly after 2 minutes
        ctx.lab
            .clock
            .sleep(Duration::from_secs_f64(wait + 0.01))
            .await;
        let mut pending = RECHECKS.lock();
        if pending.get(&id) == Some(&at) {
            pending.remove(&id);
        }
        drop(pending);
        ctx.q.disruption.add(id.1);
    });
}

/// The event source of the disruption controller (kube-controller-manager's recorder).
const COMPONENT: &str = "controllermanager";

/// A `*metav1.LabelSelector` printed with `%v` (its generated String method), as the
/// UnmanagedPods event shows it.
fn go_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|v| v.is_object()) else {
        return "nil".into();
    };
    let labels: BTreeMap<&str, &str> = sel
        .get("matchLabels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.as_str(), v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let exprs: String = util::arr(sel, "/matchExpressions")
        .iter()
        .map(|e| {
            let vals: Vec<&str> = util::arr(e, "/values")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                util::s(e, "/key"),
                util::s(e, "/operator"),
                vals.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
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
