//! ControllerRevisions of DaemonSets and StatefulSets (pkg/controller/history
//! controller_history.go; daemon/update.go and statefulset/stateful_set_utils.go getPatch):
//! one object per template, named `<owner>-<hash>`, holding the template as a patch, so
//! `kubectl rollout history` and `rollout undo` find them.

use serde_json::{Value, json};

use crate::resources;

use super::{Ctx, util};

/// Make sure the revision for the owner's current template exists; old ones beyond
/// `spec.revisionHistoryLimit` (default 10) are removed.
pub fn ensure(ctx: &Ctx, owner: &Value, hash: &str) {
    let store = &ctx.lab.store;
    let ns = util::namespace(owner);
    let name = format!("{}-{hash}", util::name(owner));
    let idx = resources::index_of(&resources::CONTROLLERREVISION);
    let mut owned: Vec<crate::Obj> = ctx
        .index
        .dependents(util::uid(owner))
        .into_iter()
        .filter(|(r, _, _)| *r == idx)
        .filter_map(|(_, ns, n)| store.get(&resources::CONTROLLERREVISION, &ns, &n))
        .filter(|r| util::owned_by(r, util::uid(owner)))
        .collect();
    if !owned.iter().any(|r| util::name(r) == name) {
        let next = owned
            .iter()
            .filter_map(|r| r.get("revision").and_then(Value::as_i64))
            .max()
            .unwrap_or(0)
            + 1;
        let mut template = owner
            .pointer("/spec/template")
            .cloned()
            .unwrap_or_else(|| json!({}));
        template["$patch"] = json!("replace");
        let mut labels = owner
            .pointer("/spec/template/metadata/labels")
            .cloned()
            .unwrap_or_else(|| json!({}));
        labels["controller-revision-hash"] = json!(hash);
        let cr = json!({
            "apiVersion": "apps/v1",
            "kind": "ControllerRevision",
            "metadata": {"name": name, "namespace": ns, "labels": labels, "ownerReferences": [util::controller_ref_to(owner)]},
            "data": {"spec": {"template": template}},
            "revision": next,
        });
        if let Ok(o) = ctx.create(&resources::CONTROLLERREVISION, cr) {
            owned.push(o);
        }
    }
    let limit = util::i(owner, "/spec/revisionHistoryLimit")
        .unwrap_or(10)
        .max(0) as usize;
    if owned.len() > limit + 1 {
        owned.sort_by_key(|r| r.get("revision").and_then(Value::as_i64).unwrap_or(0));
        let excess = owned.len() - limit - 1;
        for r in owned.iter().filter(|r| util::name(r) != name).take(excess) {
            store.remove(
                &resources::CONTROLLERREVISION,
                util::namespace(r),
                util::name(r),
            );
        }
    }
}
