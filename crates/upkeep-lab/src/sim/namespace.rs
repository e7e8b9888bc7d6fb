//! The namespace controller (pkg/controller/namespace/deletion/namespaced_resources_deleter.go
//! Delete, deleteAllContent, finalizeNamespace): a Terminating namespace has every object in
//! it deleted (pods gracefully, so they finish terminating first); once nothing is left, the
//! `kubernetes` entry of spec.finalizers is removed and the store lets the namespace go.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;

use crate::resources;
use crate::store::DeleteOpts;

use super::{Ctx, util};

/// pkg/apis/core FinalizerKubernetes
const FINALIZER: &str = "kubernetes";

/// Delete what remains in `ns` and finalize it when empty. Returns whether anything remains.
pub fn sync(ctx: &Ctx, ns: &str) -> bool {
    let store = &ctx.lab.store;
    let Some(nso) = store.get(&resources::NAMESPACE, "", ns) else {
        return false;
    };
    if !util::terminating(&nso) {
        return false;
    }
    // deleteAllContent: every namespaced resource, deletecollection-style
    let mut remaining = 0;
    for r in resources::ALL.iter().copied().filter(|r| r.namespaced) {
        if !r.verbs.contains(&"delete") {
            continue;
        }
        let (objs, _) = store.list(r, &crate::ListQuery::in_namespace(ns));
        for o in &objs {
            remaining += 1;
            if !util::terminating(o) {
                let _ = store.delete(r, ns, util::name(o), &DeleteOpts::default());
            }
        }
    }
    if remaining > 0 {
        return true;
    }
    // finalizeNamespace: drop our finalizer (the store removes the namespace once
    // spec.finalizers and metadata.finalizers are empty); a namespace that never had it
    // is deleted again, which now removes it.
    let ours = util::arr(&nso, "/spec/finalizers")
        .iter()
        .any(|f| f.as_str() == Some(FINALIZER));
    if ours {
        let _ = store.mutate(&resources::NAMESPACE, "", ns, |o| {
            if let Some(a) = o
                .pointer_mut("/spec/finalizers")
                .and_then(Value::as_array_mut)
            {
                a.retain(|f| f.as_str() != Some(FINALIZER));
            }
            Ok(())
        });
    } else if util::arr(&nso, "/spec/finalizers").is_empty() {
        let _ = store.delete(&resources::NAMESPACE, "", ns, &DeleteOpts::default());
    }
    false
}

/// Watch for Terminating namespaces and for changes inside them; resync every few seconds
/// of lab time (upstream requeues with the estimated remaining grace).
pub fn spawn(ctx: Arc<Ctx>) {
    tokio::spawn(async move {
        let mut rx = ctx.lab.store.subscribe();
        let mut terminating: BTreeSet<String> = BTreeSet::new();
        for n in ctx
            .lab
            .store
            .list(&resources::NAMESPACE, &Default::default())
            .0
        {
            if util::terminating(&n) {
                terminating.insert(util::name(&n).to_string());
            }
        }
        loop {
            let mut dirty = !terminating.is_empty();
            let period = ctx
                .lab
                .clock
                .real_duration(Duration::from_secs(5))
                .max(Duration::from_millis(100));
            match tokio::time::timeout(period, rx.recv()).await {
                Ok(Ok(ev)) => {
                    let o = &ev.object;
                    if ev.resource == &resources::NAMESPACE {
                        if util::terminating(o) && ev.kind != crate::EventKind::Deleted {
                            terminating.insert(util::name(o).to_string());
                        } else {
                            terminating.remove(util::name(o));
                        }
                    }
                    dirty = terminating.contains(util::name(o))
                        || terminating.contains(util::namespace(o));
                }
                Ok(Err(RecvError::Lagged(_))) => {}
                Ok(Err(RecvError::Closed)) => return,
                Err(_) => {}
            }
            if dirty {
                for ns in terminating.clone() {
                    sync(&ctx, &ns);
                }
            }
        }
    });
}
