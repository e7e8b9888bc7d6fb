//! The StatefulSet controller (pkg/controller/statefulset/stateful_set_control.go,
//! stateful_set_utils.go): pods `<name>-<ordinal>`, created in order with OrderedReady, a
//! deleted pod comes back under the same name.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources;
use crate::store::{DeleteOpts, Obj};

use super::{Ctx, Key, util};

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    super::replicaset::keys_of(ctx, &resources::STATEFULSET)
}

fn ordinal(set: &str, pod: &str) -> Option<i64> {
    pod.strip_prefix(set)?.strip_prefix('-')?.parse().ok()
}

fn revision(sts: &Value) -> String {
    format!(
        "{}-{}",
        util::name(sts),
        util::compute_hash(
            sts.pointer("/spec/template").unwrap_or(&Value::Null),
            util::i(sts, "/status/collisionCount").unwrap_or(0)
        )
    )
}

fn running_and_ready(p: &Value) -> bool {
    util::phase(p) == "Running" && util::pod_ready(p)
}

pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(sts) = store.get(&resources::STATEFULSET, &key.0, &key.1) else {
        return;
    };
    let set = util::name(&sts).to_string();
    let replicas = util::i(&sts, "/spec/replicas").unwrap_or(1);
    let parallel = util::s(&sts, "/spec/podManagementPolicy") == "Parallel";
    let update_rev = revision(&sts);
    let mut pods: Vec<(i64, Obj)> = super::replicaset::owned_pods(ctx, util::uid(&sts))
        .into_iter()
        .filter_map(|p| ordinal(&set, util::name(&p)).map(|o| (o, p)))
        .collect();
    pods.sort_by_key(|(o, _)| *o);
    let tol = ctx.cfg().default_toleration_seconds;
    if !util::terminating(&sts) {
        // Failed pods are deleted and recreated (stateful_set_control.go processReplica).
        for (_, p) in &pods {
            if util::phase(p) == "Failed" && !util::terminating(p) {
                let _ = store.delete(
                    &resources::POD,
                    util::namespace(p),
                    util::name(p),
                    &DeleteOpts::default(),
                );
            }
        }
        // Create missing ordinals in order; with OrderedReady wait for each predecessor.
        for ord in 0..replicas {
            let existing = pods.iter().find(|(o, _)| *o == ord).map(|(_, p)| p.clone());
            match existing {
                None => {
                    let name = format!("{set}-{ord}");
                    if store.get(&resources::POD, &key.0, &name).is_some() {
                        // the old pod of that name is still terminating (or not ours)
                        if !parallel {
                            break;
                        }
                        continue;
                    }
                    let t = util::template_labelled(
                        &sts,
                        &[
                            ("statefulset.kubernetes.io/pod-name", json!(name)),
                            ("apps.kubernetes.io/pod-index", json!(ord.to_string())),
                            ("controller-revision-hash", json!(update_rev)),
                        ],
                    );
                    let mut pod = util::pod_from_template(&t, &sts, Some(&name), None);
                    pod["spec"]["hostname"] = json!(name);
                    if let Some(svc) = sts
                        .pointer("/spec/serviceName")
                        .and_then(Value::as_str)
                        .filter(|s| !s.is_empty())
                    {
                        pod["spec"]["subdomain"] = json!(svc);
                    }
                    util::add_default_toleration_seconds(&mut pod, tol);
                    match ctx.create(&resources::POD, pod) {
                        Ok(_) => ctx.event(
                            &sts,
                            "Normal",
                            "SuccessfulCreate",
                            &format!("create Pod {name} in StatefulSet {set} successful"),
                            "statefulset-controller",
                        ),
                        Err(e) => {
                            ctx.event(
                                &sts,
                                "Warning",
                                "FailedCreate",
                                &format!(
                                    "create Pod {name} in StatefulSet {set} failed error: {}",
                                    e.message
                                ),
                                "statefulset-controller",
                            );
                            break;
                        }
                    }
                    if !parallel {
                        break;
                    }
                }
                Some(p) => {
                    if !parallel && (!running_and_ready(&p) || util::terminating(&p)) {
                        break;
                    }
                }
            }
        }
        // Scale down: highest ordinal first, one at a time unless Parallel.
        let mut condemned: Vec<&(i64, Obj)> = pods
            .iter()
            .filter(|(o, p)| *o >= replicas && !util::terminating(p))
            .collect();
        condemned.sort_by_key(|(o, _)| std::cmp::Reverse(*o));
        let all_ok = pods
            .iter()
            .filter(|(o, _)| *o < replicas)
            .all(|(_, p)| running_and_ready(p));
        for (_, p) in condemned {
            if !parallel && (!all_ok || pods.iter().any(|(_, q)| util::terminating(q))) {
                break;
            }
            ctx.delete_owned_pod(
                &sts,
                p,
                &format!(
                    "delete Pod {} in StatefulSet {set} successful",
                    util::name(p)
                ),
                "statefulset-controller",
            );
            if !parallel {
                break;
            }
        }
        // RollingUpdate: with everything ready, replace the highest-ordinal outdated pod.
        if util::s(&sts, "/spec/updateStrategy/type") != "OnDelete"
            && all_ok
            && pods.len() as i64 >= replicas
            && !pods.iter().any(|(_, q)| util::terminating(q))
        {
            let partition =
                util::i(&sts, "/spec/updateStrategy/rollingUpdate/partition").unwrap_or(0);
            if let Some((_, p)) = pods.iter().rev().find(|(o, p)| {
                *o < replicas
                    && *o >= partition
                    && util::label(p, "controller-revision-hash") != Some(update_rev.as_str())
            }) {
                let _ = store.delete(
                    &resources::POD,
                    util::namespace(p),
                    util::name(p),
                    &DeleteOpts::default(),
                );
            }
        }
    }
    if !util::terminating(&sts) {
        let hash = update_rev
            .trim_start_matches(&format!("{set}-"))
            .to_string();
        super::revision::ensure(ctx, &sts, &hash);
    }
    update_status(ctx, &sts, &update_rev);
}

fn update_status(ctx: &Ctx, sts: &Value, update_rev: &str) {
    let pods = super::replicaset::owned_pods(ctx, util::uid(sts));
    let now = ctx.lab.clock.now();
    let min_ready = util::i(sts, "/spec/minReadySeconds").unwrap_or(0);
    let live: Vec<&Obj> = pods
        .iter()
        .filter(|p| !util::terminating(p) && !util::terminal(p))
        .collect();
    let ready = live.iter().filter(|p| util::pod_ready(p)).count();
    let available = live
        .iter()
        .filter(|p| util::pod_available(p, min_ready, now))
        .count();
    let updated = live
        .iter()
        .filter(|p| util::label(p, "controller-revision-hash") == Some(update_rev))
        .count();
    let generation = util::i(sts, "/metadata/generation").unwrap_or(0);
    let current_rev = if updated == live.len() {
        update_rev.to_string()
    } else {
        util::s(sts, "/status/currentRevision").to_string()
    };
    let current_rev = if current_rev.is_empty() {
        update_rev.to_string()
    } else {
        current_rev
    };
    let current = live
        .iter()
        .filter(|p| util::label(p, "controller-revision-hash") == Some(current_rev.as_str()))
        .count();
    let _ = ctx.lab.store.mutate(
        &resources::STATEFULSET,
        util::namespace(sts),
        util::name(sts),
        |o| {
            let mut s = json!({
                "observedGeneration": generation,
                "replicas": live.len(),
                "readyReplicas": ready,
                "currentReplicas": current,
                "updatedReplicas": updated,
                "availableReplicas": available,
                "currentRevision": current_rev,
                "updateRevision": update_rev,
                "collisionCount": o.pointer("/status/collisionCount").cloned().unwrap_or(json!(0)),
            });
            for f in ["readyReplicas", "currentReplicas", "updatedReplicas"] {
                if s[f] == json!(0) {
                    s.as_object_mut().map(|m| m.remove(f));
                }
            }
            o["status"] = s;
            Ok(())
        },
    );
}
