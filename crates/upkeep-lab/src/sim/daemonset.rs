//! The DaemonSet controller (pkg/controller/daemon/daemon_controller.go, util/daemonset_util.go).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources;
use crate::store::Obj;

use super::{Ctx, Key, util};

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    super::replicaset::keys_of(ctx, &resources::DAEMONSET)
}

/// daemonset_util.go AddOrUpdateDaemonPodTolerations: what every daemon pod tolerates.
pub fn add_daemon_tolerations(spec: &mut Value) {
    let mut add = vec![
        json!({"key": util::TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": util::TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}),
        json!({"key": util::TAINT_DISK_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": util::TAINT_MEMORY_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": util::TAINT_PID_PRESSURE, "operator": "Exists", "effect": "NoSchedule"}),
        json!({"key": util::TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}),
    ];
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        add.push(json!({"key": util::TAINT_NETWORK_UNAVAILABLE, "operator": "Exists", "effect": "NoSchedule"}));
    }
    let tols = spec
        .as_object_mut()
        .expect("spec")
        .entry("tolerations")
        .or_insert_with(|| json!([]));
    if !tols.is_array() {
        *tols = json!([]);
    }
    let list = tols.as_array_mut().expect("array");
    for t in add {
        let exists = list.iter().any(|x| {
            util::s(x, "/key") == util::s(&t, "/key")
                && util::s(x, "/effect") == util::s(&t, "/effect")
        });
        if !exists {
            list.push(t);
        }
    }
}

/// daemonset_util.go ReplaceDaemonSetPodNodeNameNodeAffinity: pin to one node by
/// `matchFields metadata.name`, replacing other required terms.
fn pin_to_node(spec: &mut Value, node: &str) {
    let term =
        json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]});
    let m = spec.as_object_mut().expect("spec");
    let aff = m.entry("affinity").or_insert_with(|| json!({}));
    if !aff.is_object() {
        *aff = json!({});
    }
    let na = aff
        .as_object_mut()
        .expect("object")
        .entry("nodeAffinity")
        .or_insert_with(|| json!({}));
    na["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [term]});
}

/// daemon_controller.go NodeShouldRunDaemonPod: nodeSelector, required affinity, and every
/// NoSchedule/NoExecute taint tolerated (with the daemon tolerations).
pub fn should_run(template_spec: &Value, node: &Value) -> bool {
    let mut spec = template_spec.clone();
    add_daemon_tolerations(&mut spec);
    should_run_with_tolerations(&spec, node)
}

/// [`should_run`] for a spec that already carries the daemon tolerations (computed once per
/// sync rather than once per node).
fn should_run_with_tolerations(spec: &Value, node: &Value) -> bool {
    util::pod_spec_matches_node(spec, node)
        && util::untolerated_schedule_taint(
            util::node_taints(node),
            util::arr(spec, "/tolerations"),
        )
        .is_none()
}

fn template_hash(ds: &Value) -> String {
    util::compute_hash(
        ds.pointer("/spec/template").unwrap_or(&Value::Null),
        util::i(ds, "/status/collisionCount").unwrap_or(0),
    )
}

pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(ds) = store.get(&resources::DAEMONSET, &key.0, &key.1) else {
        return;
    };
    let pods = super::replicaset::owned_pods(ctx, util::uid(&ds));
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    let hash = template_hash(&ds);
    let template = ds
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    let tspec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut tspec_tol = tspec.clone();
    add_daemon_tolerations(&mut tspec_tol);
    // Which nodes should run a daemon pod, decided once per sync; status reuses it.
    let runs: Vec<bool> = nodes
        .iter()
        .map(|n| should_run_with_tolerations(&tspec_tol, n))
        .collect();
    let node_names: HashSet<&str> = nodes.iter().map(|n| util::name(n)).collect();
    let mut by_node: HashMap<String, Vec<&Obj>> = HashMap::new();
    for p in &pods {
        by_node
            .entry(pinned_node(p).to_string())
            .or_default()
            .push(p);
    }
    let terminating_ds = util::terminating(&ds);
    let tol = ctx.cfg().default_toleration_seconds;
    // manage(): create on nodes that should run one and have none; delete extras, failed
    // pods, and pods on nodes that should not run one.
    let mut to_delete: Vec<&Obj> = Vec::new();
    for (n, &should) in nodes.iter().zip(&runs) {
        let nn = util::name(n);
        let run = !terminating_ds && should;
        let here: Vec<&Obj> = by_node.get(nn).cloned().unwrap_or_default();
        let live: Vec<&Obj> = here
            .iter()
            .copied()
            .filter(|p| !util::terminating(p))
            .collect();
        for p in &live {
            if util::phase(p) == "Failed" {
                to_delete.push(p);
            }
        }
        let healthy: Vec<&Obj> = live
            .iter()
            .copied()
            .filter(|p| util::phase(p) != "Failed")
            .collect();
        if run {
            if healthy.is_empty() && !here.iter().any(|p| util::terminating(p)) {
                let mut t = template.clone();
                let labels = t
                    .pointer_mut("/metadata")
                    .and_then(Value::as_object_mut)
                    .map(|m| m.entry("labels").or_insert_with(|| json!({})));
                if let Some(l) = labels {
                    l["controller-revision-hash"] = json!(hash);
                    l["pod-template-generation"] = json!(
                        util::i(&ds, "/metadata/generation")
                            .unwrap_or(1)
                            .to_string()
                    );
                }
                let mut pod =
                    util::pod_from_template(&t, &ds, None, Some(&format!("{}-", util::name(&ds))));
                add_daemon_tolerations(&mut pod["spec"]);
                pin_to_node(&mut pod["spec"], nn);
                util::add_default_toleration_seconds(&mut pod, tol);
                match ctx.create(&resources::POD, pod) {
                    Ok(p) => ctx.event(
                        &ds,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", util::name(&p)),
                        "daemonset-controller",
                    ),
                    Err(e) => ctx.event(
                        &ds,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {}", e.message),
                        "daemonset-controller",
                    ),
                }
            } else if healthy.len() > 1 {
                // keep the oldest
                let mut h = healthy.clone();
                h.sort_by_key(|p| util::s(p, "/metadata/creationTimestamp").to_string());
                to_delete.extend(h.into_iter().skip(1));
            }
        } else {
            to_delete.extend(healthy);
        }
    }
    // pods pinned to nodes that no longer exist
    for (n, ps) in &by_node {
        if !n.is_empty() && !node_names.contains(n.as_str()) {
            to_delete.extend(ps.iter().copied().filter(|p| !util::terminating(p)));
        }
    }
    // RollingUpdate (update.go rollingUpdate): replace old-template pods, at most
    // maxUnavailable (default 1) unavailable at a time.
    if util::s(&ds, "/spec/updateStrategy/type") != "OnDelete" && !terminating_ds {
        let desired = runs.iter().filter(|r| **r).count() as i64;
        let mu = ds
            .pointer("/spec/updateStrategy/rollingUpdate/maxUnavailable")
            .cloned()
            .unwrap_or(json!(1));
        let max_unavailable = util::scaled_int_or_percent(&mu, desired, true)
            .unwrap_or(1)
            .max(1);
        let unavailable = pods
            .iter()
            .filter(|p| !util::terminating(p) && !util::pod_ready(p))
            .count() as i64
            + pods.iter().filter(|p| util::terminating(p)).count() as i64;
        let mut budget = max_unavailable - unavailable;
        let deleting: HashSet<&str> = to_delete.iter().map(|d| util::uid(d)).collect();
        for p in pods.iter().filter(|p| {
            !util::terminating(p)
                && util::label(p, "controller-revision-hash") != Some(hash.as_str())
        }) {
            if budget <= 0 {
                break;
            }
            if !deleting.contains(util::uid(p)) {
                to_delete.push(p);
                budget -= 1;
            }
        }
    }
    for p in to_delete {
        ctx.delete_owned_pod(
            &ds,
            p,
            &format!("Deleted pod: {}", util::name(p)),
            "daemonset-controller",
        );
    }
    if !terminating_ds {
        super::revision::ensure(ctx, &ds, &hash);
    }
    update_status(ctx, &ds, &nodes, &runs, &hash);
}

/// The node a daemon pod belongs to: its nodeName, else its matchFields pin.
fn pinned_node(p: &Value) -> &str {
    let n = util::node_name(p);
    if !n.is_empty() {
        return n;
    }
    p.pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields/0/values/0")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// daemon_controller.go updateDaemonSetStatus.
/// `runs[i]` says whether `nodes[i]` should run a daemon pod.
fn update_status(ctx: &Ctx, ds: &Value, nodes: &[Obj], runs: &[bool], hash: &str) {
    let pods = super::replicaset::owned_pods(ctx, util::uid(ds));
    // live pods by the node they are bound to (one pass, not one scan per node)
    let mut on_node: HashMap<&str, Vec<&Obj>> = HashMap::new();
    for p in pods.iter().filter(|p| !util::terminating(p)) {
        on_node.entry(util::node_name(p)).or_default().push(p);
    }
    let now = ctx.lab.clock.now();
    let min_ready = util::i(ds, "/spec/minReadySeconds").unwrap_or(0);
    let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
        (0, 0, 0, 0, 0, 0);
    for (n, &run) in nodes.iter().zip(runs) {
        let here: &[&Obj] = on_node.get(util::name(n)).map_or(&[], Vec::as_slice);
        if run {
            desired += 1;
            if !here.is_empty() {
                current += 1;
                let mut h = here.to_vec();
                h.sort_by_key(|p| util::s(p, "/metadata/creationTimestamp").to_string());
                let p = h[0];
                if util::pod_ready(p) {
                    ready += 1;
                    if util::pod_available(p, min_ready, now) {
                        available += 1;
                    }
                }
                if util::label(p, "controller-revision-hash") == Some(hash) {
                    updated += 1;
                }
            }
        } else if !here.is_empty() {
            misscheduled += 1;
        }
    }
    let generation = util::i(ds, "/metadata/generation").unwrap_or(0);
    let _ = ctx.lab.store.mutate(
        &resources::DAEMONSET,
        util::namespace(ds),
        util::name(ds),
        |o| {
            let mut s = json!({
                "currentNumberScheduled": current,
                "numberMisscheduled": misscheduled,
                "desiredNumberScheduled": desired,
                "numberReady": ready,
                "observedGeneration": generation,
                "updatedNumberScheduled": updated,
                "numberAvailable": available,
                "numberUnavailable": desired - available,
            });
            for f in [
                "updatedNumberScheduled",
                "numberAvailable",
                "numberUnavailable",
            ] {
                if s[f] == json!(0) {
                    s.as_object_mut().map(|m| m.remove(f));
                }
            }
            if let Some(c) = o.pointer("/status/collisionCount") {
                s["collisionCount"] = c.clone();
            }
            o["status"] = s;
            Ok(())
        },
    );
}
