//! Who owns whom: an index from owner uid to dependents, kept from the store's event stream
//! and written through by the controllers after their own creations (so a controller never
//! misses the pod it just made — upstream uses "expectations" for the same purpose,
//! pkg/controller/controller_utils.go ControllerExpectations).

use std::collections::{HashMap, HashSet};

use parking_lot::RwLock;
use serde_json::Value;

use crate::resources::{self, Resource};
use crate::store::{Store, rv_of};

use super::util;

/// (resource index in `resources::ALL`, namespace, name).
pub type ObjKey = (usize, String, String);

#[derive(Default)]
struct Inner {
    /// object → (uid, owner uids, resourceVersion)
    objs: HashMap<ObjKey, (String, Vec<String>, u64)>,
    dependents: HashMap<String, HashSet<ObjKey>>,
}

#[derive(Default)]
pub struct Index {
    inner: RwLock<Inner>,
}

/// Resources whose objects take part in ownership (events are left out: they are many and
/// never own anything).
pub fn indexed(res: &Resource) -> bool {
    res != &resources::EVENT && res != &resources::EVENT_EVENTS
}

pub fn okey(res: &'static Resource, obj: &Value) -> ObjKey {
    (
        resources::index_of(res),
        util::namespace(obj).to_string(),
        util::name(obj).to_string(),
    )
}

impl Index {
    /// Record an object's current owners (ignored if older than what is known).
    pub fn observe(&self, res: &'static Resource, obj: &Value) {
        if !indexed(res) {
            return;
        }
        let k = okey(res, obj);
        let rv = rv_of(obj);
        let uid = util::uid(obj).to_string();
        let owners: Vec<String> = util::arr(obj, "/metadata/ownerReferences")
            .iter()
            .map(|r| util::s(r, "/uid").to_string())
            .collect();
        let mut g = self.inner.write();
        if let Some((old_uid, old_owners, old_rv)) = g.objs.get(&k).cloned() {
            if old_rv > rv && old_uid == uid {
                return;
            }
            for o in &old_owners {
                if let Some(set) = g.dependents.get_mut(o) {
                    set.remove(&k);
                    if set.is_empty() {
                        g.dependents.remove(o);
                    }
                }
            }
        }
        for o in &owners {
            g.dependents.entry(o.clone()).or_default().insert(k.clone());
        }
        g.objs.insert(k, (uid, owners, rv));
    }

    /// Forget an object deleted at `rv` (unless a newer object of the same name is known).
    pub fn forget(&self, res: &'static Resource, obj: &Value) {
        if !indexed(res) {
            return;
        }
        let k = okey(res, obj);
        let rv = rv_of(obj);
        let mut g = self.inner.write();
        let Some((uid, owners, old_rv)) = g.objs.get(&k).cloned() else {
            return;
        };
        if old_rv > rv && uid != util::uid(obj) {
            return;
        }
        for o in &owners {
            if let Some(set) = g.dependents.get_mut(o) {
                set.remove(&k);
                if set.is_empty() {
                    g.dependents.remove(o);
                }
            }
        }
        g.objs.remove(&k);
    }

    /// Dependents of an owner uid.
    pub fn dependents(&self, owner_uid: &str) -> Vec<ObjKey> {
        self.inner
            .read()
            .dependents
            .get(owner_uid)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Rebuild from the store (start-up and after the event stream lagged).
    pub fn rebuild(&self, store: &Store) {
        *self.inner.write() = Inner::default();
        for res in resources::ALL.iter().copied().filter(|r| indexed(r)) {
            let (objs, _) = store.list(res, &Default::default());
            for o in objs {
                self.observe(res, &o);
            }
        }
    }
}
