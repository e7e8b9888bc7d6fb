//! The Deployment controller (pkg/controller/deployment: deployment_controller.go, sync.go,
//! rolling.go, recreate.go, progress.go, util/deployment_util.go).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources;
use crate::store::{DeleteOpts, Obj};

use super::{Ctx, Key, util};

const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
const HASH_LABEL: &str = "pod-template-hash";

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    super::replicaset::keys_of(ctx, &resources::DEPLOYMENT)
}

fn owned_rss(ctx: &Ctx, d: &Value) -> Vec<Obj> {
    let idx = resources::index_of(&resources::REPLICASET);
    let duid = util::uid(d);
    let mut v: Vec<Obj> = ctx
        .index
        .dependents(duid)
        .into_iter()
        .filter(|(r, _, _)| *r == idx)
        .filter_map(|(_, ns, name)| ctx.lab.store.get(&resources::REPLICASET, &ns, &name))
        .filter(|rs| util::owned_by(rs, duid))
        .collect();
    // controller.ReplicaSetsByCreationTimestamp
    v.sort_by(|a, b| {
        util::s(a, "/metadata/creationTimestamp")
            .cmp(util::s(b, "/metadata/creationTimestamp"))
            .then(util::name(a).cmp(util::name(b)))
    });
    v
}

fn spec_replicas(o: &Value) -> i64 {
    util::i(o, "/spec/replicas").unwrap_or(1)
}

fn st(o: &Value, f: &str) -> i64 {
    util::i(o, &format!("/status/{f}")).unwrap_or(0)
}

/// The template without the pod-template-hash label (deployment_util.go EqualIgnoreHash).
fn template_ignoring_hash(t: &Value) -> Value {
    let mut t = t.clone();
    if let Some(l) = t
        .pointer_mut("/metadata/labels")
        .and_then(Value::as_object_mut)
    {
        l.remove(HASH_LABEL);
        if l.is_empty() {
            t["metadata"].as_object_mut().map(|m| m.remove("labels"));
        }
    }
    t
}

fn rolling(d: &Value) -> bool {
    util::s(d, "/spec/strategy/type") != "Recreate"
}

/// deployment_util.go ResolveFenceposts: (maxSurge, maxUnavailable).
fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = spec_replicas(d);
    let surge_v = d
        .pointer("/spec/strategy/rollingUpdate/maxSurge")
        .cloned()
        .unwrap_or(json!("25%"));
    let unav_v = d
        .pointer("/spec/strategy/rollingUpdate/maxUnavailable")
        .cloned()
        .unwrap_or(json!("25%"));
    let surge = util::scaled_int_or_percent(&surge_v, desired, true).unwrap_or(0);
    let mut unavailable = util::scaled_int_or_percent(&unav_v, desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (surge, unavailable)
}

/// deployment_util.go MaxUnavailable.
fn max_unavailable(d: &Value) -> i64 {
    if !rolling(d) || spec_replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(spec_replicas(d))
}

fn scale_rs(ctx: &Ctx, d: &Value, rs: &Value, to: i64) -> bool {
    let from = spec_replicas(rs);
    let (surge, _) = if rolling(d) { fenceposts(d) } else { (0, 0) };
    let dreps = spec_replicas(d);
    let ann = |k: &str| {
        rs.pointer("/metadata/annotations")
            .and_then(|a| a.get(k))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    // sync.go scaleReplicaSet: the size and the desired/max annotations are kept together
    let annotations_stale = ann(DESIRED) != Some(dreps.to_string())
        || ann(MAX_REPLICAS) != Some((dreps + surge).to_string());
    if from == to && !annotations_stale {
        return false;
    }
    let r = ctx.lab.store.mutate(
        &resources::REPLICASET,
        util::namespace(rs),
        util::name(rs),
        |o| {
            o["spec"]["replicas"] = json!(to);
            let ann = o["metadata"]
                .as_object_mut()
                .expect("metadata")
                .entry("annotations")
                .or_insert_with(|| json!({}));
            ann[DESIRED] = json!(dreps.to_string());
            ann[MAX_REPLICAS] = json!((dreps + surge).to_string());
            Ok(())
        },
    );
    if r.is_ok() && from != to {
        let dir = if to > from { "up" } else { "down" };
        ctx.event(
            d,
            "Normal",
            "ScalingReplicaSet",
            &format!(
                "Scaled {dir} replica set {} from {from} to {to}",
                util::name(rs)
            ),
            "deployment-controller",
        );
    }
    r.is_ok() && from != to
}

pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(d) = store.get(&resources::DEPLOYMENT, &key.0, &key.1) else {
        return;
    };
    let rss = owned_rss(ctx, &d);
    if util::terminating(&d) {
        update_status(ctx, &d, &rss, None);
        return;
    }
    let template = d
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let plain = template_ignoring_hash(&template);
    let mut new_rs: Option<Obj> = rss
        .iter()
        .find(|rs| {
            template_ignoring_hash(rs.pointer("/spec/template").unwrap_or(&Value::Null)) == plain
        })
        .cloned();
    let old_rss: Vec<Obj> = rss
        .iter()
        .filter(|rs| {
            new_rs
                .as_ref()
                .is_none_or(|n| util::uid(n) != util::uid(rs))
        })
        .cloned()
        .collect();
    let paused = d
        .pointer("/spec/paused")
        .and_then(Value::as_bool)
        .unwrap_or(false);

    if new_rs.is_none() && !paused {
        new_rs = create_new_rs(ctx, &d, &template, &rss);
        let Some(n) = &new_rs else { return };
        if rolling(&d) {
            // the new RS is created with NewRSNewReplicas already; continue to status
            let _ = n;
        }
    } else if let Some(n) = &new_rs {
        // Keep the revision annotation in step (sync.go getNewReplicaSet).
        let rev = util::s(
            n,
            &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
        )
        .to_string();
        if !rev.is_empty()
            && util::s(
                &d,
                &format!("/metadata/annotations/{}", REVISION.replace('/', "~1")),
            ) != rev
        {
            let _ = store.mutate(&resources::DEPLOYMENT, &key.0, &key.1, |o| {
                let ann = o["metadata"]
                    .as_object_mut()
                    .expect("metadata")
                    .entry("annotations")
                    .or_insert_with(|| json!({}));
                ann[REVISION] = json!(rev);
                Ok(())
            });
        }
    }
    if paused {
        update_status(ctx, &d, &rss, new_rs.as_ref());
        return;
    }
    let new_rs = new_rs.expect("created above");
    // sync.go isScalingEvent: a replica count change outside a template change is spread
    // over the active ReplicaSets before any rollout step.
    if is_scaling_event(&d, &new_rs, &old_rss) {
        scale(ctx, &d, &new_rs, &old_rss);
        let rss = owned_rss(ctx, &d);
        let new_rs = rss
            .iter()
            .find(|r| util::uid(r) == util::uid(&new_rs))
            .cloned();
        update_status(ctx, &d, &rss, new_rs.as_ref());
        return;
    }
    let changed = if rolling(&d) {
        rollout_rolling(ctx, &d, &new_rs, &old_rss)
    } else {
        rollout_recreate(ctx, &d, &new_rs, &old_rss)
    };
    let rss = owned_rss(ctx, &d);
    let new_rs = rss
        .iter()
        .find(|r| util::uid(r) == util::uid(&new_rs))
        .cloned();
    if !changed {
        cleanup(ctx, &d, &rss, new_rs.as_ref());
    }
    update_status(ctx, &d, &rss, new_rs.as_ref());
}

fn create_new_rs(ctx: &Arc<Ctx>, d: &Value, template: &Value, rss: &[Obj]) -> Option<Obj> {
    let collision = util::i(d, "/status/collisionCount").unwrap_or(0);
    let hash = util::compute_hash(template, collision);
    let mut t = template.clone();
    t.as_object_mut()?
        .entry("metadata")
        .or_insert_with(|| json!({}));
    t["metadata"]
        .as_object_mut()?
        .entry("labels")
        .or_insert_with(|| json!({}));
    t["metadata"]["labels"][HASH_LABEL] = json!(hash);
    let mut selector = d
        .pointer("/spec/selector")
        .cloned()
        .unwrap_or_else(|| json!({}));
    selector
        .as_object_mut()?
        .entry("matchLabels")
        .or_insert_with(|| json!({}));
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let max_rev = rss
        .iter()
        .filter_map(|r| {
            r.pointer("/metadata/annotations")
                .and_then(|a| a.get(REVISION))
                .and_then(Value::as_str)?
                .parse::<i64>()
                .ok()
        })
        .max()
        .unwrap_or(0);
    let dreps = spec_replicas(d);
    let replicas = if rolling(d) {
        // rolling.go NewRSNewReplicas with the new RS at 0
        let (surge, _) = fenceposts(d);
        let current: i64 = rss.iter().map(|r| spec_replicas(r)).sum();
        let max_total = dreps + surge;
        if current >= max_total {
            0
        } else {
            (max_total - current).min(dreps)
        }
    } else if rss
        .iter()
        .any(|r| spec_replicas(r) > 0 || st(r, "replicas") > 0)
    {
        0
    } else {
        dreps
    };
    let mut labels = t["metadata"]["labels"].clone();
    if labels.is_null() {
        labels = json!({});
    }
    let (surge, _) = if rolling(d) { fenceposts(d) } else { (0, 0) };
    let rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{}", util::name(d), hash),
            "namespace": util::namespace(d),
            "labels": labels,
            "annotations": {
                REVISION: (max_rev + 1).to_string(),
                DESIRED: dreps.to_string(),
                MAX_REPLICAS: (dreps + surge).to_string(),
            },
            "ownerReferences": [util::controller_ref_to(d)],
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": util::i(d, "/spec/minReadySeconds").unwrap_or(0),
            "selector": selector,
            "template": t,
        },
        "status": {"replicas": 0},
    });
    match ctx.create(&resources::REPLICASET, rs) {
        Ok(o) => {
            ctx.event(
                d,
                "Normal",
                "ScalingReplicaSet",
                &format!(
                    "Scaled up replica set {} from 0 to {replicas}",
                    util::name(&o)
                ),
                "deployment-controller",
            );
            let rev = (max_rev + 1).to_string();
            let _ = ctx.lab.store.mutate(
                &resources::DEPLOYMENT,
                util::namespace(d),
                util::name(d),
                |o| {
                    let ann = o["metadata"]
                        .as_object_mut()
                        .expect("metadata")
                        .entry("annotations")
                        .or_insert_with(|| json!({}));
                    ann[REVISION] = json!(rev);
                    Ok(())
                },
            );
            Some(o)
        }
        Err(e) if e.code == 409 => {
            // sync.go: a hash collision bumps status.collisionCount and retries next sync.
            let _ = ctx.lab.store.mutate(
                &resources::DEPLOYMENT,
                util::namespace(d),
                util::name(d),
                |o| {
                    o["status"]["collisionCount"] = json!(collision + 1);
                    Ok(())
                },
            );
            None
        }
        Err(_) => None,
    }
}

fn desired_annotation(rs: &Value) -> Option<i64> {
    rs.pointer("/metadata/annotations")
        .and_then(|a| a.get(DESIRED))
        .and_then(Value::as_str)
        .and_then(|v| v.parse().ok())
}

/// sync.go isScalingEvent.
fn is_scaling_event(d: &Value, new_rs: &Obj, old_rss: &[Obj]) -> bool {
    std::iter::once(new_rs)
        .chain(old_rss)
        .filter(|r| spec_replicas(r) > 0)
        .any(|r| desired_annotation(r).is_some_and(|want| want != spec_replicas(d)))
}

/// sync.go scale: one active ReplicaSet takes the whole count; otherwise a rolling
/// Deployment's extra (or missing) replicas are shared in proportion
/// (deployment_util.go GetProportion / getReplicaSetFraction).
fn scale(ctx: &Ctx, d: &Value, new_rs: &Obj, old_rss: &[Obj]) {
    let dreps = spec_replicas(d);
    let all: Vec<&Obj> = std::iter::once(new_rs).chain(old_rss).collect();
    let mut active: Vec<&Obj> = all
        .iter()
        .copied()
        .filter(|r| spec_replicas(r) > 0)
        .collect();
    // FindActiveOrLatest
    match active.len() {
        0 => {
            scale_rs(ctx, d, new_rs, dreps);
            return;
        }
        1 => {
            scale_rs(ctx, d, active[0], dreps);
            return;
        }
        _ => {}
    }
    // IsSaturated(newRS): old ones go to zero
    if spec_replicas(new_rs) == dreps
        && desired_annotation(new_rs) == Some(dreps)
        && st(new_rs, "availableReplicas") == dreps
    {
        for rs in old_rss.iter().filter(|r| spec_replicas(r) > 0) {
            scale_rs(ctx, d, rs, 0);
        }
        return;
    }
    if !rolling(d) {
        return;
    }
    let total: i64 = active.iter().map(|r| spec_replicas(r)).sum();
    let allowed = if dreps > 0 {
        dreps + fenceposts(d).0
    } else {
        0
    };
    let to_add = allowed - total;
    // ReplicaSetsBySizeNewer when adding, BySizeOlder when removing
    active.sort_by(|a, b| {
        let by_size = spec_replicas(b).cmp(&spec_replicas(a));
        let (ca, cb) = (
            util::s(a, "/metadata/creationTimestamp"),
            util::s(b, "/metadata/creationTimestamp"),
        );
        by_size.then(if to_add > 0 { cb.cmp(ca) } else { ca.cmp(cb) })
    });
    let mut sizes: Vec<i64> = Vec::new();
    let mut added = 0;
    for rs in &active {
        let reps = spec_replicas(rs);
        let mut prop = 0;
        if to_add != 0 && reps != 0 && to_add != added {
            // getReplicaSetFraction
            let fraction = if dreps == 0 {
                -reps
            } else {
                let annotated = rs
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(MAX_REPLICAS))
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or_else(|| util::i(d, "/status/replicas").unwrap_or(0));
                if annotated <= 0 {
                    0
                } else {
                    ((reps * (dreps + fenceposts(d).0)) as f64 / annotated as f64).round() as i64
                        - reps
                }
            };
            let left = to_add - added;
            prop = if to_add > 0 {
                fraction.min(left)
            } else {
                fraction.max(left)
            };
        }
        added += prop;
        sizes.push(reps + prop);
    }
    if to_add != 0 {
        sizes[0] = (sizes[0] + to_add - added).max(0);
    }
    for (rs, size) in active.iter().zip(sizes) {
        scale_rs(ctx, d, rs, size);
    }
}

/// rolling.go rolloutRolling. Returns true when something was scaled.
fn rollout_rolling(ctx: &Ctx, d: &Value, new_rs: &Obj, old_rss: &[Obj]) -> bool {
    let dreps = spec_replicas(d);
    let all: Vec<&Obj> = old_rss.iter().chain(std::iter::once(new_rs)).collect();
    // reconcileNewReplicaSet
    let nrep = spec_replicas(new_rs);
    if nrep > dreps {
        return scale_rs(ctx, d, new_rs, dreps);
    }
    if nrep < dreps {
        let (surge, _) = fenceposts(d);
        let current: i64 = all.iter().map(|r| spec_replicas(r)).sum();
        let max_total = dreps + surge;
        if current < max_total {
            let up = (max_total - current).min(dreps - nrep);
            if scale_rs(ctx, d, new_rs, nrep + up) {
                return true;
            }
        }
    }
    // reconcileOldReplicaSets
    let old_pods: i64 = old_rss.iter().map(|r| spec_replicas(r)).sum();
    if old_pods == 0 {
        return false;
    }
    let all_pods: i64 = all.iter().map(|r| spec_replicas(r)).sum();
    let min_available = dreps - max_unavailable(d);
    let new_unavailable = spec_replicas(new_rs) - st(new_rs, "availableReplicas");
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return false;
    }
    // cleanupUnhealthyReplicas
    let mut scaled = 0;
    let mut olds: Vec<(Obj, i64)> = old_rss
        .iter()
        .map(|r| (r.clone(), spec_replicas(r)))
        .collect();
    for (rs, reps) in olds.iter_mut() {
        if scaled >= max_scaled_down {
            break;
        }
        if *reps == 0 || st(rs, "availableReplicas") == *reps {
            continue;
        }
        let down = (max_scaled_down - scaled).min(*reps - st(rs, "availableReplicas"));
        if down > 0 && scale_rs(ctx, d, rs, *reps - down) {
            *reps -= down;
            scaled += down;
        }
    }
    // scaleDownOldReplicaSetsForRollingUpdate
    let available: i64 = all.iter().map(|r| st(r, "availableReplicas")).sum();
    if available > min_available {
        let total = available - min_available;
        let mut done = 0;
        for (rs, reps) in olds.iter_mut() {
            if done >= total {
                break;
            }
            if *reps == 0 {
                continue;
            }
            let down = (*reps).min(total - done);
            if scale_rs(ctx, d, rs, *reps - down) {
                *reps -= down;
                done += down;
            }
        }
        scaled += done;
    }
    scaled > 0
}

/// recreate.go rolloutRecreate.
fn rollout_recreate(ctx: &Ctx, d: &Value, new_rs: &Obj, old_rss: &[Obj]) -> bool {
    let mut scaled = false;
    for rs in old_rss {
        if spec_replicas(rs) > 0 {
            scaled |= scale_rs(ctx, d, rs, 0);
        }
    }
    if scaled {
        return true;
    }
    // oldPodsRunning: wait until no old pod is left running (terminating ones count).
    let running = old_rss.iter().any(|rs| {
        super::replicaset::owned_pods(ctx, util::uid(rs))
            .iter()
            .any(|p| !util::terminal(p))
    });
    if running {
        return false;
    }
    scale_rs(ctx, d, new_rs, spec_replicas(d))
}

/// sync.go cleanupDeployment: keep revisionHistoryLimit old, empty ReplicaSets.
fn cleanup(ctx: &Ctx, d: &Value, rss: &[Obj], new_rs: Option<&Obj>) {
    let limit = util::i(d, "/spec/revisionHistoryLimit").unwrap_or(10);
    let olds: Vec<&Obj> = rss
        .iter()
        .filter(|r| new_rs.is_none_or(|n| util::uid(n) != util::uid(r)))
        .filter(|r| spec_replicas(r) == 0 && st(r, "replicas") == 0 && !util::terminating(r))
        .collect();
    let excess = olds.len() as i64 - limit;
    for rs in olds.into_iter().take(excess.max(0) as usize) {
        let _ = ctx.lab.store.delete(
            &resources::REPLICASET,
            util::namespace(rs),
            util::name(rs),
            &DeleteOpts::default(),
        );
    }
}

/// sync.go calculateStatus + progress.go conditions.
fn update_status(ctx: &Ctx, d: &Value, rss: &[Obj], new_rs: Option<&Obj>) {
    let dreps = spec_replicas(d);
    let replicas: i64 = rss.iter().map(|r| st(r, "replicas")).sum();
    let updated = new_rs.map(|n| st(n, "replicas")).unwrap_or(0);
    let ready: i64 = rss.iter().map(|r| st(r, "readyReplicas")).sum();
    let available: i64 = rss.iter().map(|r| st(r, "availableReplicas")).sum();
    let total_spec: i64 = rss.iter().map(|r| spec_replicas(r)).sum();
    let unavailable = (total_spec - available).max(0);
    let terminating: i64 = rss.iter().map(|r| st(r, "terminatingReplicas")).sum();
    let generation = util::i(d, "/metadata/generation").unwrap_or(0);
    let now = ctx.lab.clock.now_rfc3339();
    let min_ok = available >= dreps - max_unavailable(d);
    let complete = updated == dreps && replicas == dreps && available == dreps;
    let new_name = new_rs
        .map(|n| util::name(n).to_string())
        .unwrap_or_default();
    let _ = ctx.lab.store.mutate(
        &resources::DEPLOYMENT,
        util::namespace(d),
        util::name(d),
        |o| {
            let mut s = o.get("status").cloned().unwrap_or_else(|| json!({}));
            s["observedGeneration"] = json!(generation);
            s["replicas"] = json!(replicas);
            s["updatedReplicas"] = json!(updated);
            s["readyReplicas"] = json!(ready);
            s["availableReplicas"] = json!(available);
            s["unavailableReplicas"] = json!(unavailable);
            s["terminatingReplicas"] = json!(terminating);
            for f in [
                "replicas",
                "updatedReplicas",
                "readyReplicas",
                "availableReplicas",
                "unavailableReplicas",
                "terminatingReplicas",
            ] {
                if s[f] == json!(0) {
                    s.as_object_mut().map(|m| m.remove(f));
                }
            }
            o["status"] = s;
            let (st_, reason, msg) = if min_ok {
                (
                    "True",
                    "MinimumReplicasAvailable",
                    "Deployment has minimum availability.",
                )
            } else {
                (
                    "False",
                    "MinimumReplicasUnavailable",
                    "Deployment does not have minimum availability.",
                )
            };
            set_dep_condition(o, "Available", st_, reason, msg, &now);
            if !new_name.is_empty() {
                let (reason, msg) = if complete {
                    (
                        "NewReplicaSetAvailable",
                        format!("ReplicaSet \"{new_name}\" has successfully progressed."),
                    )
                } else {
                    (
                        "ReplicaSetUpdated",
                        format!("ReplicaSet \"{new_name}\" is progressing."),
                    )
                };
                set_dep_condition(o, "Progressing", "True", reason, &msg, &now);
            }
            Ok(())
        },
    );
}

/// Deployment conditions carry lastUpdateTime (changed when reason/message change) and
/// lastTransitionTime (changed when status changes) — deployment_util.go SetDeploymentCondition.
fn set_dep_condition(o: &mut Value, ty: &str, status: &str, reason: &str, msg: &str, now: &str) {
    let old = util::condition(o, ty).cloned();
    let mut c = json!({"type": ty, "status": status, "reason": reason, "message": msg, "lastUpdateTime": now, "lastTransitionTime": now});
    if let Some(old) = old
        && util::s(&old, "/status") == status
    {
        c["lastTransitionTime"] = old["lastTransitionTime"].clone();
        if util::s(&old, "/reason") == reason && util::s(&old, "/message") == msg {
            c["lastUpdateTime"] = old["lastUpdateTime"].clone();
        }
    }
    util::set_condition(o, c, now);
}
