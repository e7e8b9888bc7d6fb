//! The ReplicaSet controller (pkg/controller/replicaset/replica_set.go).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources;
use crate::store::Obj;

use super::{Ctx, Key, util};

/// Pods controlled by the owner with `uid` (from the ownership index).
pub fn owned_pods(ctx: &Ctx, owner_uid: &str) -> Vec<Obj> {
    let pod_idx = resources::index_of(&resources::POD);
    ctx.index
        .dependents(owner_uid)
        .into_iter()
        .filter(|(r, _, _)| *r == pod_idx)
        .filter_map(|(_, ns, name)| ctx.lab.store.get(&resources::POD, &ns, &name))
        .filter(|p| util::owned_by(p, owner_uid))
        .collect()
}

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    keys_of(ctx, &resources::REPLICASET)
}

pub fn keys_of(ctx: &Ctx, res: &'static resources::Resource) -> Vec<Key> {
    ctx.lab
        .store
        .list(res, &Default::default())
        .0
        .iter()
        .map(|o| (util::namespace(o).to_string(), util::name(o).to_string()))
        .collect()
}

/// Rank for deletion (replica_set.go getPodsToDelete / controller.ActivePodsWithRanks):
/// unassigned before assigned, Pending before Unknown before Running, not ready before
/// ready, then the most recently created first.
fn deletion_rank(p: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let assigned = u8::from(!util::node_name(p).is_empty());
    let phase = match util::phase(p) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 0,
    };
    let ready = u8::from(util::pod_ready(p));
    (
        assigned,
        phase,
        ready,
        std::cmp::Reverse(util::s(p, "/metadata/creationTimestamp").to_string()),
    )
}

/// Reconcile one ReplicaSet: create or delete pods to match `spec.replicas`, then update status.
pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(rs) = store.get(&resources::REPLICASET, &key.0, &key.1) else {
        return;
    };
    if util::terminating(&rs) {
        update_status(ctx, &rs, &owned_pods(ctx, util::uid(&rs)));
        return;
    }
    let pods = owned_pods(ctx, util::uid(&rs));
    let active: Vec<&Obj> = pods.iter().filter(|p| util::pod_active(p)).collect();
    let want = util::i(&rs, "/spec/replicas").unwrap_or(1);
    let diff = active.len() as i64 - want;
    if diff < 0 {
        let template = rs
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        let tol = ctx.cfg().default_toleration_seconds;
        for _ in 0..(-diff).min(500) {
            let mut pod = util::pod_from_template(
                &template,
                &rs,
                None,
                Some(&format!("{}-", util::name(&rs))),
            );
            util::add_default_toleration_seconds(&mut pod, tol);
            match ctx.create(&resources::POD, pod) {
                Ok(p) => ctx.event(
                    &rs,
                    "Normal",
                    "SuccessfulCreate",
                    &format!("Created pod: {}", util::name(&p)),
                    "replicaset-controller",
                ),
                Err(e) => {
                    ctx.event(
                        &rs,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                        "replicaset-controller",
                    );
                    break;
                }
            }
        }
    } else if diff > 0 {
        let mut victims: Vec<&Obj> = active.clone();
        victims.sort_by_key(|p| deletion_rank(p));
        for p in victims.into_iter().take(diff as usize) {
            ctx.delete_owned_pod(
                &rs,
                p,
                &format!("Deleted pod: {}", util::name(p)),
                "replicaset-controller",
            );
        }
    }
    let pods = owned_pods(ctx, util::uid(&rs));
    update_status(ctx, &rs, &pods);
}

/// replica_set_utils.go calculateStatus.
fn update_status(ctx: &Ctx, rs: &Value, pods: &[Obj]) {
    let now = ctx.lab.clock.now();
    let min_ready = util::i(rs, "/spec/minReadySeconds").unwrap_or(0);
    let template_labels = rs
        .pointer("/spec/template/metadata/labels")
        .and_then(Value::as_object);
    let active: Vec<&Obj> = pods.iter().filter(|p| util::pod_active(p)).collect();
    let fully_labeled = active
        .iter()
        .filter(|p| {
            template_labels.is_none_or(|tl| tl.iter().all(|(k, v)| util::label(p, k) == v.as_str()))
        })
        .count();
    let ready = active.iter().filter(|p| util::pod_ready(p)).count();
    let available = active
        .iter()
        .filter(|p| util::pod_available(p, min_ready, now))
        .count();
    let terminating = pods
        .iter()
        .filter(|p| util::terminating(p) && !util::terminal(p))
        .count();
    let generation = util::i(rs, "/metadata/generation").unwrap_or(0);
    let (ns, name) = (util::namespace(rs).to_string(), util::name(rs).to_string());
    let _ = ctx
        .lab
        .store
        .mutate(&resources::REPLICASET, &ns, &name, |o| {
            let mut st = o.get("status").cloned().unwrap_or_else(|| json!({}));
            st["replicas"] = json!(active.len());
            st["fullyLabeledReplicas"] = json!(fully_labeled);
            st["readyReplicas"] = json!(ready);
            st["availableReplicas"] = json!(available);
            st["terminatingReplicas"] = json!(terminating);
            st["observedGeneration"] = json!(generation);
            // omitempty on the wire, like upstream
            for f in [
                "fullyLabeledReplicas",
                "readyReplicas",
                "availableReplicas",
                "terminatingReplicas",
            ] {
                if st[f] == json!(0) {
                    st.as_object_mut().map(|m| m.remove(f));
                }
            }
            o["status"] = st;
            Ok(())
        });
}
