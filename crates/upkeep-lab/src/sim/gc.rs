//! The garbage collector (pkg/controller/garbagecollector/garbagecollector.go
//! attemptToDeleteItem / processDeletingDependentsItem / orphanDependents) and the pod GC's
//! orphaned-pod rule (pkg/controller/podgc/gc_controller.go gcOrphaned).

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::resources::{self, Resource};
use crate::store::{DeleteOpts, Obj};

use super::index::ObjKey;
use super::{Ctx, util};

const FOREGROUND: &str = "foregroundDeletion";
const ORPHAN: &str = "orphan";

/// The resource an owner reference points at (None: a kind the lab does not serve — such
/// owners are assumed to exist, so nothing is collected on a guess).
fn owner_resource(r: &Value) -> Option<&'static Resource> {
    resources::by_kind(util::s(r, "/apiVersion"), util::s(r, "/kind"))
}

/// The live owner object of a reference, if it exists with that uid.
fn owner_of(ctx: &Ctx, ns: &str, r: &Value) -> Option<Option<Obj>> {
    let res = owner_resource(r)?;
    let ns = if res.namespaced { ns } else { "" };
    Some(
        ctx.lab
            .store
            .get(res, ns, util::s(r, "/name"))
            .filter(|o| util::uid(o) == util::s(r, "/uid")),
    )
}

fn has_finalizer(o: &Value, f: &str) -> bool {
    util::arr(o, "/metadata/finalizers")
        .iter()
        .any(|x| x.as_str() == Some(f))
}

fn remove_finalizer(ctx: &Ctx, res: &'static Resource, o: &Value, f: &str) {
    let _ = ctx
        .lab
        .store
        .mutate(res, util::namespace(o), util::name(o), |x| {
            if let Some(list) = x
                .pointer_mut("/metadata/finalizers")
                .and_then(Value::as_array_mut)
            {
                list.retain(|v| v.as_str() != Some(f));
            }
            Ok(())
        });
}

fn live_dependents(ctx: &Ctx, owner_uid: &str) -> Vec<(&'static Resource, Obj)> {
    ctx.index
        .dependents(owner_uid)
        .into_iter()
        .filter_map(|(r, ns, name)| {
            let res = resources::ALL[r];
            let o = ctx.lab.store.get(res, &ns, &name)?;
            util::arr(&o, "/metadata/ownerReferences")
                .iter()
                .any(|x| util::s(x, "/uid") == owner_uid)
                .then_some((res, o))
        })
        .collect()
}

pub fn sync(ctx: &Arc<Ctx>, key: &ObjKey) {
    let res = resources::ALL[key.0];
    let Some(obj) = ctx.lab.store.get(res, &key.1, &key.2) else {
        return;
    };
    let uid = util::uid(&obj).to_string();
    if util::terminating(&obj) {
        if has_finalizer(&obj, ORPHAN) {
            // orphanDependents: strip the owner reference, then drop the finalizer.
            for (dres, d) in live_dependents(ctx, &uid) {
                let _ = ctx
                    .lab
                    .store
                    .mutate(dres, util::namespace(&d), util::name(&d), |x| {
                        if let Some(refs) = x
                            .pointer_mut("/metadata/ownerReferences")
                            .and_then(Value::as_array_mut)
                        {
                            refs.retain(|r| util::s(r, "/uid") != uid);
                        }
                        Ok(())
                    });
            }
            remove_finalizer(ctx, res, &obj, ORPHAN);
            return;
        }
        if has_finalizer(&obj, FOREGROUND) {
            // processDeletingDependentsItem: delete dependents; the owner goes once no
            // dependent with blockOwnerDeletion is left.
            let deps = live_dependents(ctx, &uid);
            let mut blocking = 0;
            for (dres, d) in &deps {
                let blocks = util::arr(d, "/metadata/ownerReferences").iter().any(|r| {
                    util::s(r, "/uid") == uid
                        && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
                });
                if blocks {
                    blocking += 1;
                }
                if !util::terminating(d) {
                    let policy = if ctx.index.dependents(util::uid(d)).is_empty() {
                        "Background"
                    } else {
                        "Foreground"
                    };
                    let _ = ctx.lab.store.delete(
                        dres,
                        util::namespace(d),
                        util::name(d),
                        &DeleteOpts {
                            propagation_policy: Some(policy.into()),
                            ..Default::default()
                        },
                    );
                }
            }
            if blocking == 0 {
                remove_finalizer(ctx, res, &obj, FOREGROUND);
            }
            return;
        }
    }
    // attemptToDeleteItem: dangling owner references.
    let refs = util::arr(&obj, "/metadata/ownerReferences").to_vec();
    if refs.is_empty() {
        return;
    }
    let ns = util::namespace(&obj).to_string();
    let mut dangling = Vec::new();
    let mut waiting_foreground = false;
    let mut solid = 0;
    for r in &refs {
        match owner_of(ctx, &ns, r) {
            None => solid += 1,
            Some(None) => dangling.push(util::s(r, "/uid").to_string()),
            Some(Some(owner)) => {
                solid += 1;
                if util::terminating(&owner) && has_finalizer(&owner, FOREGROUND) {
                    waiting_foreground = true;
                }
            }
        }
    }
    if dangling.is_empty() {
        if waiting_foreground && !util::terminating(&obj) {
            // the owner is being deleted in the foreground: its dependents go first
            let _ = ctx
                .lab
                .store
                .delete(res, &ns, util::name(&obj), &DeleteOpts::default());
        }
        return;
    }
    if solid > 0 {
        // Some owners remain: remove only the dangling references.
        let _ = ctx.lab.store.mutate(res, &ns, util::name(&obj), |x| {
            if let Some(list) = x
                .pointer_mut("/metadata/ownerReferences")
                .and_then(Value::as_array_mut)
            {
                list.retain(|r| !dangling.contains(&util::s(r, "/uid").to_string()));
            }
            Ok(())
        });
        return;
    }
    if !util::terminating(&obj) {
        let _ = ctx.lab.store.delete(
            res,
            &ns,
            util::name(&obj),
            &DeleteOpts {
                propagation_policy: Some("Background".into()),
                ..Default::default()
            },
        );
    }
}

/// podgc gcOrphaned: pods bound to a node that no longer exists are deleted at once
/// (upstream waits a 40 s quarantine; checked every 20 s of lab time here).
pub fn spawn_pod_gc(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        loop {
            ctx.lab.clock.sleep(Duration::from_secs(20)).await;
            collect_orphaned_pods(&ctx);
            ctx.events.expire(&ctx.lab, ctx.cfg().event_ttl_seconds);
        }
    });
}

pub fn collect_orphaned_pods(ctx: &Ctx) {
    let store = &ctx.lab.store;
    let (nodes, _) = store.list(&resources::NODE, &Default::default());
    let names: std::collections::HashSet<&str> = nodes.iter().map(|n| util::name(n)).collect();
    let (pods, _) = store.list(&resources::POD, &Default::default());
    for p in pods {
        let n = util::node_name(&p);
        if !n.is_empty() && !names.contains(n) {
            let _ = store.delete(
                &resources::POD,
                util::namespace(&p),
                util::name(&p),
                &DeleteOpts {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            );
        }
    }
}
