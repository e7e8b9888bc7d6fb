//! The object store: every API object as a `serde_json::Value`, one table per resource.
//!
//! # Store API (for the HTTP layer, the simulation and the node shells)
//!
//! * Objects are `Arc<Value>` ([`Obj`]); reading never deep-copies. Keys are
//!   (`&'static Resource`, namespace, name); cluster-scoped objects use namespace "".
//! * The store owns `metadata.uid`, `creationTimestamp`, `resourceVersion` (one global counter)
//!   and `generation` (bumped when anything outside metadata/status changes, for resources whose
//!   table entry says so).
//! * All methods are synchronous and take one short lock; call them from async code freely.
//! * [`Store::create`], [`Store::update`] (optimistic concurrency when the object carries a
//!   `metadata.resourceVersion`), [`Store::update_status`], [`Store::patch`],
//!   [`Store::mutate`] (read-modify-write under the lock: no conflicts, ideal for
//!   controllers), [`Store::delete`] (graceful deletion, finalizers, preconditions) and
//!   [`Store::remove`] (immediate removal, e.g. the kubelet finishing a pod).
//! * API strategies (status reset on create, default fields) live in `api::strategy`
//!   and run only for HTTP requests; in-process callers write exactly what they pass
//!   (a controller may create a pod with a status).
//! * Events: [`Store::subscribe`] gives every change as a [`WatchEvent`]; a lagging receiver
//!   gets `RecvError::Lagged` and should re-list. [`Store::watch_from`] atomically returns the
//!   backlog after a resourceVersion plus a receiver, or 410 Gone when the history no longer
//!   reaches back that far.
//! * Persistence (optional, `crate::etcd`): a [`Persist`] sink sees every committed change in
//!   order, under the lock, and must not block. Without one (the default) nothing else runs.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;

use parking_lot::RwLock;
use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use crate::clock::Clock;
use crate::error::{ApiError, ApiResult};
use crate::patch::{PatchKind, apply_patch};
use crate::resources::{self, Resource};
use crate::selector::{FieldSelector, LabelSelector};

/// A stored object. Cheap to clone.
pub type Obj = Arc<Value>;

/// Watch event type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// One change in the store. `rv` is the resourceVersion the change produced (for DELETED, the
/// object carries that resourceVersion too, like upstream).
#[derive(Debug, Clone)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub resource: &'static Resource,
    pub object: Obj,
    /// The previous state for MODIFIED and DELETED (lets field-selector watches turn a
    /// change that leaves the selection into DELETED, like the watch cache does).
    pub old: Option<Obj>,
    pub rv: u64,
}

impl WatchEvent {
    pub fn namespace(&self) -> &str {
        meta_str(&self.object, "namespace")
    }
    pub fn name(&self) -> &str {
        meta_str(&self.object, "name")
    }
}

/// `metadata.<field>` as &str ("" when absent).
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    obj.get("metadata")
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// None: all namespaces.
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl ListQuery {
    pub fn all() -> Self {
        Self::default()
    }
    pub fn in_namespace(ns: &str) -> Self {
        ListQuery {
            namespace: Some(ns.to_string()),
            ..Default::default()
        }
    }
    pub fn labels(mut self, sel: LabelSelector) -> Self {
        self.labels = sel;
        self
    }
    pub fn fields(mut self, sel: FieldSelector) -> Self {
        self.fields = sel;
        self
    }
    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && meta_str(obj, "namespace") != ns
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// Delete options (meta/v1 DeleteOptions, the parts the lab honours).
#[derive(Debug, Clone, Default)]
pub struct DeleteOpts {
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    /// "Orphan" | "Background" | "Foreground"
    pub propagation_policy: Option<String>,
    pub dry_run: bool,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// Removed from the store (the last state is returned).
    Removed(Obj),
    /// Still present with deletionTimestamp set (graceful deletion or finalizers).
    Terminating(Obj),
}

impl DeleteOutcome {
    pub fn object(&self) -> &Obj {
        match self {
            DeleteOutcome::Removed(o) | DeleteOutcome::Terminating(o) => o,
        }
    }
}

/// Which part of an object a write may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteScope {
    /// Main resource through the API: `.status` changes are ignored for resources with a
    /// status subresource.
    Main,
    /// The `/status` subresource: only `.status` changes are kept.
    Status,
    /// Everything (in-process controllers).
    Whole,
}

type Key = (String, String);

struct Inner {
    rv: u64,
    tables: Vec<BTreeMap<Key, Obj>>,
    /// Pods by spec.nodeName ("" = unbound).
    pods_by_node: HashMap<String, BTreeSet<Key>>,
    history: VecDeque<WatchEvent>,
    /// All events with rv <= compacted_rv have left the history.
    compacted_rv: u64,
    uid_seq: u64,
}

/// Where committed changes also go (the etcd backend). Called under the store's write lock,
/// in resourceVersion order, exactly once per resourceVersion: must be cheap and never block.
pub trait Persist: Send + Sync {
    /// `obj` was created or changed; it carries its new resourceVersion.
    fn put(&self, res: &'static Resource, obj: &Obj);
    /// The object was removed at resourceVersion `rv`.
    fn delete(&self, res: &'static Resource, ns: &str, name: &str, rv: u64);
    /// The last resourceVersion the sink has made durable (API writes wait for it).
    fn durable(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// What a store starts from when it is backed by a database that already holds data.
pub struct Seed {
    pub persist: Arc<dyn Persist>,
    /// The database's revision: the next change gets `rv + 1`.
    pub rv: u64,
    /// Objects as stored, each carrying its resourceVersion.
    pub objects: Vec<(&'static Resource, Value)>,
}

/// The store. Share it through [`crate::Lab`].
pub struct Store {
    persist: Option<Arc<dyn Persist>>,
    inner: RwLock<Inner>,
    tx: broadcast::Sender<WatchEvent>,
    clock: Arc<Clock>,
    history_cap: usize,
    uid_prefix: String,
}

/// Events buffered per subscriber before it lags. Each buffered event keeps its object and the
/// previous version alive, but a smaller buffer makes the simulation's dispatcher lag and
/// resync over and over at scale (tried: 4,096 starves the server with 150,000 pods).
pub const BROADCAST_CAPACITY: usize = 1 << 16;

/// Default number of events kept for watch resumption.
pub const DEFAULT_HISTORY: usize = 20_000;

impl Store {
    pub fn new(clock: Arc<Clock>) -> Self {
        Self::with_history(clock, DEFAULT_HISTORY)
    }

    pub fn with_history(clock: Arc<Clock>, history_cap: usize) -> Self {
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let mut seed = [0u8; 6];
        let _ = getrandom::fill(&mut seed);
        Store {
            persist: None,
            inner: RwLock::new(Inner {
                rv: 1000,
                tables: resources::ALL.iter().map(|_| BTreeMap::new()).collect(),
                pods_by_node: HashMap::new(),
                history: VecDeque::new(),
                compacted_rv: 1000,
                uid_seq: 0,
            }),
            tx,
            clock,
            history_cap: history_cap.max(1),
            uid_prefix: seed.iter().map(|b| format!("{b:02x}")).collect(),
        }
    }

    pub fn clock(&self) -> &Arc<Clock> {
        &self.clock
    }

    /// Start from `seed` (a persisted cluster): its objects, its revision as the current
    /// resourceVersion (older ones answer 410 Gone: there is no history before it), and its
    /// sink for every later change.
    pub fn seed(&mut self, seed: Seed) {
        let inner = self.inner.get_mut();
        for (res, obj) in seed.objects {
            let k = key(res, meta_str(&obj, "namespace"), meta_str(&obj, "name"));
            if res == &resources::POD {
                inner
                    .pods_by_node
                    .entry(node_of(&obj).to_string())
                    .or_default()
                    .insert(k.clone());
            }
            inner.tables[idx(res)].insert(k, Arc::new(obj));
        }
        inner.rv = seed.rv;
        inner.compacted_rv = seed.rv;
        self.persist = Some(seed.persist);
    }

    /// The durable resourceVersion of a persisted store (None: in memory only).
    pub fn durable(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.persist.as_ref().map(|p| p.durable())
    }

    /// Whether the store holds no object at all.
    pub fn is_empty(&self) -> bool {
        self.inner.read().tables.iter().all(BTreeMap::is_empty)
    }

    /// The current (latest) resourceVersion.
    pub fn current_rv(&self) -> u64 {
        self.inner.read().rv
    }

    /// Oldest resourceVersion a watch may resume from.
    pub fn oldest_resumable_rv(&self) -> u64 {
        self.inner.read().compacted_rv
    }

    /// Receive every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<WatchEvent> {
        self.tx.subscribe()
    }

    /// Events of `res` after `rv` from the history, plus a receiver for the future, taken
    /// atomically. 410 Gone when `rv` is older than the history.
    pub fn watch_from(
        &self,
        res: &'static Resource,
        rv: u64,
    ) -> ApiResult<(Vec<WatchEvent>, broadcast::Receiver<WatchEvent>)> {
        let inner = self.inner.read();
        if rv < inner.compacted_rv {
            return Err(ApiError::gone(format!(
                "too old resource version: {} ({})",
                rv, inner.compacted_rv
            )));
        }
        let start = inner.history.partition_point(|e| e.rv <= rv);
        let backlog = inner
            .history
            .range(start..)
            .filter(|e| std::ptr::eq(e.resource, res))
            .cloned()
            .collect();
        Ok((backlog, self.tx.subscribe()))
    }

    /// Current objects matching `q` as ADDED events plus a receiver, atomically (a watch
    /// without resourceVersion: initial state, then changes).
    pub fn watch_with_initial(
        &self,
        res: &'static Resource,
        q: &ListQuery,
    ) -> (Vec<WatchEvent>, u64, broadcast::Receiver<WatchEvent>) {
        let inner = self.inner.read();
        let objs = list_locked(&inner, res, q);
        let evs = objs
            .into_iter()
            .map(|o| WatchEvent {
                kind: EventKind::Added,
                resource: res,
                rv: rv_of(&o),
                object: o,
                old: None,
            })
            .collect();
        (evs, inner.rv, self.tx.subscribe())
    }

    pub fn get(&self, res: &'static Resource, ns: &str, name: &str) -> Option<Obj> {
        let inner = self.inner.read();
        inner.tables[idx(res)].get(&key(res, ns, name)).cloned()
    }

    /// Get or 404 with the upstream message.
    pub fn get_or_404(&self, res: &'static Resource, ns: &str, name: &str) -> ApiResult<Obj> {
        self.get(res, ns, name)
            .ok_or_else(|| ApiError::not_found(res, name))
    }

    /// Matching objects in (namespace, name) order, and the resourceVersion of the snapshot.
    pub fn list(&self, res: &'static Resource, q: &ListQuery) -> (Vec<Obj>, u64) {
        let inner = self.inner.read();
        (list_locked(&inner, res, q), inner.rv)
    }

    /// Number of objects of a resource.
    pub fn count(&self, res: &'static Resource) -> usize {
        self.inner.read().tables[idx(res)].len()
    }

    /// Create. Sets uid, creationTimestamp, resourceVersion, generation; handles
    /// `generateName`. The namespace comes from `ns` (or the object, if `ns` is empty) and must
    /// exist. `dry_run` validates and returns the would-be object without storing it.
    pub fn create(
        &self,
        res: &'static Resource,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> ApiResult<Obj> {
        self.create_with(res, ns, obj, dry_run, |_| {})
    }

    /// [`Store::create`] with a last step that sees the object with its final name, namespace
    /// and uid before it is stored (e.g. the Job strategy's uid-based selector).
    pub fn create_with(
        &self,
        res: &'static Resource,
        ns: &str,
        mut obj: Value,
        dry_run: bool,
        finish: impl FnOnce(&mut Value),
    ) -> ApiResult<Obj> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        }
        let body_ns = meta_str(&obj, "namespace").to_string();
        let ns = if res.namespaced {
            if !ns.is_empty() && !body_ns.is_empty() && body_ns != ns {
                return Err(ApiError::bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request",
                ));
            }
            if ns.is_empty() {
                if body_ns.is_empty() {
                    "default".to_string()
                } else {
                    body_ns
                }
            } else {
                ns.to_string()
            }
        } else {
            String::new()
        };
        let mut inner = self.inner.write();
        if res.namespaced
            && !inner.tables[idx(&resources::NAMESPACE)].contains_key(&(String::new(), ns.clone()))
        {
            return Err(ApiError::not_found(&resources::NAMESPACE, &ns));
        }
        if res.namespaced
            && let Some(nso) =
                inner.tables[idx(&resources::NAMESPACE)].get(&(String::new(), ns.clone()))
            && nso
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
        {
            // plugin/pkg/admission/namespace/lifecycle/admission.go
            return Err(ApiError::forbidden(
                res,
                meta_str(&obj, "name"),
                format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            )
            .with_cause(
                "NamespaceTerminating",
                format!("namespace {ns} is being terminated"),
                Some("metadata.namespace"),
            ));
        }
        let mut name = meta_str(&obj, "name").to_string();
        if name.is_empty() {
            let gen_name = meta_str(&obj, "generateName").to_string();
            if gen_name.is_empty() {
                return Err(ApiError::invalid_field(
                    res,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
            // apiserver pkg/storage/names/generate.go: base (max 58 chars) + 5 random chars
            let base: String = gen_name.chars().take(58).collect();
            loop {
                let cand = format!("{base}{}", random_suffix(5));
                if !inner.tables[idx(res)].contains_key(&key(res, &ns, &cand)) {
                    name = cand;
                    break;
                }
            }
        }
        validate_name(res, &name)?;
        if inner.tables[idx(res)].contains_key(&key(res, &ns, &name)) {
            return Err(ApiError::already_exists(res, &name));
        }
        inner.uid_seq += 1;
        let uid = format_uid(&self.uid_prefix, inner.uid_seq);
        let now = self.clock.now_rfc3339();
        {
            let o = obj.as_object_mut().expect("checked above");
            o.insert("apiVersion".into(), json!(res.api_version()));
            o.insert("kind".into(), json!(res.kind));
            // keep apiVersion/kind first, like upstream serialisation
            let mut ordered = Map::new();
            for k in ["apiVersion", "kind", "metadata"] {
                if let Some(v) = o.remove(k) {
                    ordered.insert(k.into(), v);
                }
            }
            ordered.extend(std::mem::take(o));
            *o = ordered;
        }
        let md = metadata_mut(&mut obj);
        md.insert("name".into(), json!(name));
        if res.namespaced {
            md.insert("namespace".into(), json!(ns));
        } else {
            md.remove("namespace");
        }
        md.insert("uid".into(), json!(uid));
        md.insert("creationTimestamp".into(), json!(now));
        md.remove("deletionTimestamp");
        md.remove("deletionGracePeriodSeconds");
        md.remove("resourceVersion");
        if res.generation {
            md.insert("generation".into(), json!(1));
        } else {
            md.remove("generation");
        }
        finish(&mut obj);
        if dry_run {
            metadata_mut(&mut obj).insert("resourceVersion".into(), json!(inner.rv.to_string()));
            return Ok(Arc::new(obj));
        }
        Ok(self.commit(&mut inner, res, None, obj, EventKind::Added))
    }

    /// Replace an object (PUT). With `metadata.resourceVersion` set, it must match the stored
    /// one (409 Conflict otherwise). `scope` decides which fields may change.
    pub fn update(
        &self,
        res: &'static Resource,
        ns: &str,
        obj: Value,
        scope: WriteScope,
        dry_run: bool,
    ) -> ApiResult<Obj> {
        let name = meta_str(&obj, "name").to_string();
        let ns = if res.namespaced {
            ns.to_string()
        } else {
            String::new()
        };
        let mut inner = self.inner.write();
        let old = inner.tables[idx(res)]
            .get(&key(res, &ns, &name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, &name))?;
        let want_rv = meta_str(&obj, "resourceVersion");
        if !want_rv.is_empty() && want_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(res, &name));
        }
        let want_uid = meta_str(&obj, "uid");
        if !want_uid.is_empty() && want_uid != meta_str(&old, "uid") {
            return Err(ApiError::conflict(
                res,
                &name,
                &format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    want_uid,
                    meta_str(&old, "uid")
                ),
            ));
        }
        let new = merge_scope(res, &old, obj, scope);
        self.write_existing(&mut inner, res, old, new, dry_run)
    }

    /// Replace only `.status` (the `/status` subresource).
    pub fn update_status(
        &self,
        res: &'static Resource,
        ns: &str,
        obj: Value,
        dry_run: bool,
    ) -> ApiResult<Obj> {
        self.update(res, ns, obj, WriteScope::Status, dry_run)
    }

    /// Read-modify-write under the store lock. The closure sees the current object and may
    /// change anything but uid/name/namespace/creationTimestamp; returning an error aborts.
    /// No write (and no event) happens when the object is unchanged.
    pub fn mutate<F>(&self, res: &'static Resource, ns: &str, name: &str, f: F) -> ApiResult<Obj>
    where
        F: FnOnce(&mut Value) -> ApiResult<()>,
    {
        self.mutate_scoped(res, ns, name, WriteScope::Whole, false, f)
    }

    /// [`Store::mutate`] with a write scope and dry-run flag (used by the API layer).
    pub fn mutate_scoped<F>(
        &self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        scope: WriteScope,
        dry_run: bool,
        f: F,
    ) -> ApiResult<Obj>
    where
        F: FnOnce(&mut Value) -> ApiResult<()>,
    {
        let ns = if res.namespaced { ns } else { "" };
        let mut inner = self.inner.write();
        let old = inner.tables[idx(res)]
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let mut new = (*old).clone();
        f(&mut new)?;
        let new = merge_scope(res, &old, new, scope);
        self.write_existing(&mut inner, res, old, new, dry_run)
    }

    /// Apply a patch (JSON merge, JSON patch or strategic merge) and store the result.
    /// A `metadata.resourceVersion` inside the patched result that differs from the stored one
    /// is a conflict (upstream: the patch carried a stale resourceVersion).
    #[allow(clippy::too_many_arguments)] // mirrors the PATCH request's parts one to one
    pub fn patch(
        &self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        kind: PatchKind,
        patch: &Value,
        scope: WriteScope,
        dry_run: bool,
    ) -> ApiResult<Obj> {
        let ns = if res.namespaced { ns } else { "" };
        let mut inner = self.inner.write();
        let old = inner.tables[idx(res)]
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        let mut new = (*old).clone();
        apply_patch(&mut new, kind, patch).map_err(|m| ApiError::new(422, "Invalid", m))?;
        let rv = meta_str(&new, "resourceVersion");
        if !rv.is_empty() && rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(res, name));
        }
        if meta_str(&new, "name") != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&new, "name")
            )));
        }
        let new = merge_scope(res, &old, new, scope);
        self.write_existing(&mut inner, res, old, new, dry_run)
    }

    /// Delete with upstream semantics (apiserver pkg/registry/rest/delete.go BeforeDelete,
    /// pkg/registry/core/pod/strategy.go CheckGracefulDelete):
    /// preconditions → 409; pods bound to a node and not terminal get a deletionTimestamp of
    /// now + grace (grace from the options, else spec.terminationGracePeriodSeconds, else 30)
    /// and stay until deleted with grace 0; objects with finalizers get a deletionTimestamp and
    /// stay until their finalizers are removed; everything else is removed at once.
    /// propagationPolicy Orphan strips the owner reference from dependents first; Foreground
    /// adds the `foregroundDeletion` finalizer (the garbage collector finishes it).
    pub fn delete(
        &self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        opts: &DeleteOpts,
    ) -> ApiResult<DeleteOutcome> {
        let ns = if res.namespaced { ns } else { "" };
        let mut inner = self.inner.write();
        let old = inner.tables[idx(res)]
            .get(&key(res, ns, name))
            .cloned()
            .ok_or_else(|| ApiError::not_found(res, name))?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {}, UID in object meta: {}",
                    uid,
                    meta_str(&old, "uid")
                ),
            ));
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                res,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {}, ResourceVersion in object meta: {}",
                    rv,
                    meta_str(&old, "resourceVersion")
                ),
            ));
        }
        let terminating = old
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let now = self.clock.now();

        // pkg/registry/core/namespace/storage/storage.go Delete: the first delete only starts
        // termination (deletionTimestamp, phase Terminating); the namespace controller empties
        // it and removes its spec.finalizers; a delete while spec.finalizers remain changes
        // nothing.
        if res == &resources::NAMESPACE {
            if !terminating {
                let mut new = (*old).clone();
                metadata_mut(&mut new).insert(
                    "deletionTimestamp".into(),
                    json!(crate::clock::format_time(now)),
                );
                metadata_mut(&mut new).insert("deletionGracePeriodSeconds".into(), json!(0));
                new["status"]["phase"] = json!("Terminating");
                if opts.dry_run {
                    return Ok(DeleteOutcome::Terminating(Arc::new(new)));
                }
                let o = self.commit(&mut inner, res, Some(&old), new, EventKind::Modified);
                return Ok(DeleteOutcome::Terminating(o));
            }
            if !spec_finalizers(&old).is_empty() {
                return Ok(DeleteOutcome::Terminating(old));
            }
        }

        // Graceful period for pods (pod/strategy.go CheckGracefulDelete).
        let mut grace: i64 = 0;
        if std::ptr::eq(res, &resources::POD) || res == &resources::POD {
            grace = opts
                .grace_period_seconds
                .or_else(|| {
                    old.pointer("/spec/terminationGracePeriodSeconds")
                        .and_then(Value::as_i64)
                })
                .unwrap_or(30);
            let phase = old
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or("");
            let node = old
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if node.is_empty() || phase == "Succeeded" || phase == "Failed" {
                grace = 0;
            }
            if grace < 0 {
                grace = 1;
            }
        } else if let Some(g) = opts.grace_period_seconds {
            // Only pods implement graceful deletion; others ignore the period.
            let _ = g;
        }

        let mut new = (*old).clone();
        let mut finalizers: Vec<String> = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        match opts.propagation_policy.as_deref() {
            Some("Foreground") if !finalizers.iter().any(|f| f == "foregroundDeletion") => {
                finalizers.push("foregroundDeletion".into());
            }
            Some("Orphan") => {
                if !dry_run_noop(opts) {
                    self.orphan_dependents(&mut inner, meta_str(&old, "uid"));
                }
                finalizers.retain(|f| f != "foregroundDeletion");
            }
            _ => {}
        }

        if terminating {
            // Already terminating (rest/delete.go BeforeDelete): a recorded grace period of 0
            // (or none) deletes now; otherwise only a shorter grace given in the options
            // changes anything, moving the deadline earlier: old deadline - old grace + new
            // grace. No grace given, or a longer one, leaves the object as it is. A shorter
            // grace of 0 removes it when no finalizers remain.
            let cur = old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let given = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
            let grace = match given {
                _ if cur <= 0 => 0,
                Some(g) if g < cur => g,
                _ => cur,
            };
            if grace == 0 && finalizers.is_empty() {
                if opts.dry_run {
                    return Ok(DeleteOutcome::Removed(old));
                }
                return Ok(DeleteOutcome::Removed(
                    self.remove_locked(&mut inner, res, ns, name)
                        .expect("present"),
                ));
            }
            if grace < cur {
                let old_ts = meta_str(&old, "deletionTimestamp")
                    .parse::<jiff::Timestamp>()
                    .unwrap_or(now);
                let md = metadata_mut(&mut new);
                let ts = old_ts - jiff::SignedDuration::from_secs(cur)
                    + jiff::SignedDuration::from_secs(grace);
                md.insert(
                    "deletionTimestamp".into(),
                    json!(crate::clock::format_time(ts)),
                );
                md.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            set_finalizers(&mut new, &finalizers);
            if new == *old || opts.dry_run {
                return Ok(DeleteOutcome::Terminating(if opts.dry_run {
                    Arc::new(new)
                } else {
                    old
                }));
            }
            let o = self.commit(&mut inner, res, Some(&old), new, EventKind::Modified);
            return Ok(DeleteOutcome::Terminating(o));
        }

        if grace == 0 && finalizers.is_empty() {
            if opts.dry_run {
                return Ok(DeleteOutcome::Removed(old));
            }
            return Ok(DeleteOutcome::Removed(
                self.remove_locked(&mut inner, res, ns, name)
                    .expect("present"),
            ));
        }
        let md = metadata_mut(&mut new);
        let ts = now + jiff::SignedDuration::from_secs(grace);
        md.insert(
            "deletionTimestamp".into(),
            json!(crate::clock::format_time(ts)),
        );
        md.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if res.generation {
            let g = md.get("generation").and_then(Value::as_i64).unwrap_or(0);
            md.insert("generation".into(), json!(g + 1));
        }
        set_finalizers(&mut new, &finalizers);
        if opts.dry_run {
            return Ok(DeleteOutcome::Terminating(Arc::new(new)));
        }
        let o = self.commit(&mut inner, res, Some(&old), new, EventKind::Modified);
        Ok(DeleteOutcome::Terminating(o))
    }

    /// Remove at once, ignoring grace periods and finalizers. None if absent.
    pub fn remove(&self, res: &'static Resource, ns: &str, name: &str) -> Option<Obj> {
        let ns = if res.namespaced { ns } else { "" };
        let mut inner = self.inner.write();
        self.remove_locked(&mut inner, res, ns, name)
    }

    /// Take a change another writer made to the backing database (etcd) at revision `rv`:
    /// `obj` (carrying `rv` as its resourceVersion) replaces the object, or None removes it.
    /// The change is not written back; the current resourceVersion moves up to `rv`, so
    /// lists answer at a revision that includes it. Subscribers (the controllers) see it as
    /// any other change. No cascade: a namespace removed this way leaves its objects, as an
    /// etcd delete does.
    pub fn follow(
        &self,
        res: &'static Resource,
        ns: &str,
        name: &str,
        obj: Option<Value>,
        rv: u64,
    ) {
        let ns = if res.namespaced { ns } else { "" };
        let mut inner = self.inner.write();
        inner.rv = inner.rv.max(rv);
        let k = key(res, ns, name);
        let new = obj.map(Arc::new);
        let old = match &new {
            Some(o) => inner.tables[idx(res)].insert(k.clone(), o.clone()),
            None => inner.tables[idx(res)].remove(&k),
        };
        if res == &resources::POD {
            if let Some(o) = &old
                && let Some(set) = inner.pods_by_node.get_mut(node_of(o))
            {
                set.remove(&k);
            }
            if let Some(o) = &new {
                inner
                    .pods_by_node
                    .entry(node_of(o).to_string())
                    .or_default()
                    .insert(k.clone());
            }
        }
        let ev = match (new, old) {
            (Some(object), old) => WatchEvent {
                kind: if old.is_some() {
                    EventKind::Modified
                } else {
                    EventKind::Added
                },
                resource: res,
                object,
                old,
                rv,
            },
            (None, Some(old)) => {
                let mut last = (*old).clone();
                metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
                WatchEvent {
                    kind: EventKind::Deleted,
                    resource: res,
                    object: Arc::new(last),
                    old: Some(old),
                    rv,
                }
            }
            (None, None) => return,
        };
        self.emit(&mut inner, ev);
    }

    /// Insert many objects at once with minimal locking (scenario loading, benchmarks).
    /// Each goes through [`Store::create`]'s rules; errors are returned per object.
    pub fn create_many(&self, items: Vec<(&'static Resource, Value)>) -> Vec<ApiResult<Obj>> {
        items
            .into_iter()
            .map(|(res, obj)| {
                let ns = meta_str(&obj, "namespace").to_string();
                self.create(res, &ns, obj, false)
            })
            .collect()
    }

    // ---- internals ----

    fn orphan_dependents(&self, inner: &mut Inner, uid: &str) {
        if uid.is_empty() {
            return;
        }
        for (i, res) in resources::ALL.iter().enumerate() {
            let hits: Vec<Obj> = inner.tables[i]
                .values()
                .filter(|o| {
                    o.pointer("/metadata/ownerReferences")
                        .and_then(Value::as_array)
                        .is_some_and(|refs| {
                            refs.iter()
                                .any(|r| r.get("uid").and_then(Value::as_str) == Some(uid))
                        })
                })
                .cloned()
                .collect();
            for old in hits {
                let mut new = (*old).clone();
                if let Some(refs) = new
                    .pointer_mut("/metadata/ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid));
                }
                self.commit(inner, res, Some(&old), new, EventKind::Modified);
            }
        }
    }

    fn write_existing(
        &self,
        inner: &mut Inner,
        res: &'static Resource,
        old: Obj,
        mut new: Value,
        dry_run: bool,
    ) -> ApiResult<Obj> {
        // identity fields are immutable
        {
            let md = metadata_mut(&mut new);
            for f in [
                "name",
                "namespace",
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                match old.get("metadata").and_then(|m| m.get(f)) {
                    Some(v) => {
                        md.insert(f.into(), v.clone());
                    }
                    None => {
                        md.remove(f);
                    }
                }
            }
            md.insert(
                "resourceVersion".into(),
                old["metadata"]["resourceVersion"].clone(),
            );
            match old.pointer("/metadata/generation") {
                Some(g) => {
                    md.insert("generation".into(), g.clone());
                }
                None => {
                    md.remove("generation");
                }
            }
            if let Some(o) = new.as_object_mut() {
                o.insert("apiVersion".into(), json!(res.api_version()));
                o.insert("kind".into(), json!(res.kind));
            }
        }
        if new == *old {
            return Ok(old);
        }
        if res.generation && spec_changed(&old, &new) {
            let g = old
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            metadata_mut(&mut new).insert("generation".into(), json!(g + 1));
        }
        // An object being deleted goes away once its last finalizer is removed.
        let terminating = old
            .pointer("/metadata/deletionTimestamp")
            .is_some_and(|v| !v.is_null());
        let no_finalizers = new
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_none_or(|a| a.is_empty());
        let graceful_pod = terminating
            && res == &resources::POD
            && old
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                > 0;
        if dry_run {
            return Ok(Arc::new(new));
        }
        if terminating && no_finalizers && !graceful_pod {
            let ns = meta_str(&old, "namespace").to_string();
            let name = meta_str(&old, "name").to_string();
            let had = old
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            // a Namespace also waits for its spec.finalizers (the namespace controller's
            // `finalize`): pkg/registry/core/namespace/strategy.go ShouldDeleteNamespaceDuringUpdate
            let ns_spec_done = res == &resources::NAMESPACE
                && !spec_finalizers(&old).is_empty()
                && spec_finalizers(&new).is_empty();
            let ns_waits = res == &resources::NAMESPACE && !spec_finalizers(&new).is_empty();
            if (had || ns_spec_done) && !ns_waits {
                let o = self.commit(inner, res, Some(&old), new, EventKind::Modified);
                let _ = o;
                return Ok(self.remove_locked(inner, res, &ns, &name).expect("present"));
            }
        }
        Ok(self.commit(inner, res, Some(&old), new, EventKind::Modified))
    }

    fn commit(
        &self,
        inner: &mut Inner,
        res: &'static Resource,
        old: Option<&Obj>,
        mut obj: Value,
        kind: EventKind,
    ) -> Obj {
        inner.rv += 1;
        let rv = inner.rv;
        metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rv.to_string()));
        let obj = Arc::new(obj);
        let k = key(res, meta_str(&obj, "namespace"), meta_str(&obj, "name"));
        if res == &resources::POD {
            if let Some(old) = old {
                let n = node_of(old).to_string();
                if let Some(set) = inner.pods_by_node.get_mut(&n) {
                    set.remove(&k);
                }
            }
            inner
                .pods_by_node
                .entry(node_of(&obj).to_string())
                .or_default()
                .insert(k.clone());
        }
        inner.tables[idx(res)].insert(k, obj.clone());
        if let Some(p) = &self.persist {
            p.put(res, &obj);
        }
        self.emit(
            inner,
            WatchEvent {
                kind,
                resource: res,
                object: obj.clone(),
                old: old.cloned(),
                rv,
            },
        );
        obj
    }

    fn remove_locked(
        &self,
        inner: &mut Inner,
        res: &'static Resource,
        ns: &str,
        name: &str,
    ) -> Option<Obj> {
        let k = key(res, ns, name);
        let old = inner.tables[idx(res)].remove(&k)?;
        if res == &resources::POD
            && let Some(set) = inner.pods_by_node.get_mut(node_of(&old))
        {
            set.remove(&k);
            if set.is_empty() {
                inner.pods_by_node.remove(node_of(&old));
            }
        }
        inner.rv += 1;
        let rv = inner.rv;
        let mut last = (*old).clone();
        metadata_mut(&mut last).insert("resourceVersion".into(), json!(rv.to_string()));
        let last = Arc::new(last);
        if let Some(p) = &self.persist {
            p.delete(res, ns, name, rv);
        }
        self.emit(
            inner,
            WatchEvent {
                kind: EventKind::Deleted,
                resource: res,
                object: last.clone(),
                old: Some(old.clone()),
                rv,
            },
        );
        // Namespaces take their content with them (the namespace controller, simplified).
        if res == &resources::NAMESPACE {
            for (i, r) in resources::ALL.iter().enumerate() {
                if !r.namespaced {
                    continue;
                }
                let names: Vec<String> = inner.tables[i]
                    .range((name.to_string(), String::new())..)
                    .take_while(|((n, _), _)| n == name)
                    .map(|((_, nm), _)| nm.clone())
                    .collect();
                for nm in names {
                    self.remove_locked(inner, r, name, &nm);
                }
            }
        }
        Some(last)
    }

    fn emit(&self, inner: &mut Inner, ev: WatchEvent) {
        inner.history.push_back(ev.clone());
        while inner.history.len() > self.history_cap {
            if let Some(e) = inner.history.pop_front() {
                inner.compacted_rv = e.rv;
            }
        }
        let _ = self.tx.send(ev);
    }
}

fn dry_run_noop(opts: &DeleteOpts) -> bool {
    opts.dry_run
}

fn list_locked(inner: &Inner, res: &'static Resource, q: &ListQuery) -> Vec<Obj> {
    let table = &inner.tables[idx(res)];
    // Pods pinned to a node: use the node index.
    if res == &resources::POD
        && let Some(node) = q.fields.equals("spec.nodeName")
    {
        let Some(keys) = inner.pods_by_node.get(node) else {
            return Vec::new();
        };
        return keys
            .iter()
            .filter(|(ns, _)| q.namespace.as_ref().is_none_or(|n| n == ns))
            .filter_map(|k| table.get(k))
            .filter(|o| q.labels.matches(o) && q.fields.matches(o))
            .cloned()
            .collect();
    }
    // One object by name (kubectl wait/delete watch with metadata.name=...).
    if let Some(name) = q.fields.equals("metadata.name")
        && (!res.namespaced || q.namespace.is_some())
    {
        let ns = if res.namespaced {
            q.namespace.clone().unwrap_or_default()
        } else {
            String::new()
        };
        return table
            .get(&(ns, name.to_string()))
            .filter(|o| q.matches(o))
            .cloned()
            .into_iter()
            .collect();
    }
    let filter = |o: &&Obj| q.labels.matches(o) && q.fields.matches(o);
    match q.namespace.as_ref().filter(|_| res.namespaced) {
        Some(ns) => table
            .range((ns.clone(), String::new())..)
            .take_while(|((n, _), _)| n == ns)
            .map(|(_, o)| o)
            .filter(filter)
            .cloned()
            .collect(),
        None => table.values().filter(filter).cloned().collect(),
    }
}

fn idx(res: &Resource) -> usize {
    resources::index_of(res)
}

fn key(res: &Resource, ns: &str, name: &str) -> Key {
    (
        if res.namespaced {
            ns.to_string()
        } else {
            String::new()
        },
        name.to_string(),
    )
}

fn node_of(o: &Value) -> &str {
    o.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The object's resourceVersion as a number (0 if absent).
pub fn rv_of(o: &Value) -> u64 {
    meta_str(o, "resourceVersion").parse().unwrap_or(0)
}

/// `metadata` as a mutable map, created if missing.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj.as_object_mut()
            .expect("object")
            .insert("metadata".into(), json!({}));
    }
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata object")
}

/// A Namespace's spec.finalizers (what the namespace controller must finish).
fn spec_finalizers(obj: &Value) -> Vec<&str> {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn set_finalizers(obj: &mut Value, f: &[String]) {
    let md = metadata_mut(obj);
    if f.is_empty() {
        md.remove("finalizers");
    } else {
        md.insert("finalizers".into(), json!(f));
    }
}

/// Keep what `scope` allows from `new`, the rest from `old`.
fn merge_scope(res: &Resource, old: &Value, mut new: Value, scope: WriteScope) -> Value {
    match scope {
        WriteScope::Whole => new,
        WriteScope::Main => {
            if res.has_status {
                match old.get("status") {
                    Some(s) => {
                        new.as_object_mut()
                            .map(|o| o.insert("status".into(), s.clone()));
                    }
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            new
        }
        WriteScope::Status => {
            let mut out = old.clone();
            match new.as_object_mut().and_then(|o| o.remove("status")) {
                Some(s) => {
                    out.as_object_mut().map(|o| o.insert("status".into(), s));
                }
                None => {
                    out.as_object_mut().map(|o| o.remove("status"));
                }
            }
            out
        }
    }
}

fn spec_changed(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| -> Map<String, Value> {
        let mut m = v.as_object().cloned().unwrap_or_default();
        m.remove("metadata");
        m.remove("status");
        m
    };
    strip(old) != strip(new)
}

/// DNS-1123 subdomain check (apimachinery pkg/util/validation).
fn validate_name(res: &'static Resource, name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid_field(
            res,
            name,
            "metadata.name",
            format!(
                "Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
            ),
        ))
    }
}

/// Random lowercase suffix like apiserver names.SimpleNameGenerator (no vowels).
pub fn random_suffix(n: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut buf = vec![0u8; n];
    let _ = getrandom::fill(&mut buf);
    buf.iter()
        .map(|b| ALPHA[(*b as usize) % ALPHA.len()] as char)
        .collect()
}

/// An RFC 4122 version-4 shaped UUID (8-4-4-4-12 hex digits): a per-lab random prefix and
/// the sequence number, which needs at most 16 of the 18 free digits.
fn format_uid(prefix: &str, seq: u64) -> String {
    let h = format!("{seq:018x}");
    format!(
        "{}-{}-4{}-8{}-{}",
        &prefix[..8],
        &prefix[8..12],
        &h[0..3],
        &h[3..6],
        &h[6..18]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_uuid_shaped_and_distinct() {
        let prefix = "0123456789abcdef";
        let a = format_uid(prefix, 1);
        let groups: Vec<usize> = a.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{a}");
        assert!(a.chars().all(|c| c == '-' || c.is_ascii_hexdigit()), "{a}");
        assert_ne!(
            format_uid(prefix, 0x1_0000_0000_0000),
            format_uid(prefix, 0)
        );
        assert_eq!(format_uid(prefix, u64::MAX).len(), 36);
    }

    fn store() -> Store {
        let s = Store::new(Arc::new(Clock::new(1.0)));
        s.create(
            &resources::NAMESPACE,
            "",
            json!({"metadata":{"name":"default"}}),
            false,
        )
        .unwrap();
        s
    }

    #[test]
    fn create_get_update_conflict() {
        let s = store();
        let p = s
            .create(
                &resources::POD,
                "default",
                json!({"metadata":{"name":"a"},"spec":{"containers":[]}}),
                false,
            )
            .unwrap();
        assert_eq!(meta_str(&p, "namespace"), "default");
        assert_eq!(p["metadata"]["generation"], 1);
        let mut stale = (*p).clone();
        s.mutate(&resources::POD, "default", "a", |o| {
            o["metadata"]["labels"] = json!({"x":"y"});
            Ok(())
        })
        .unwrap();
        stale["spec"]["nodeName"] = json!("n1");
        let e = s
            .update(&resources::POD, "default", stale, WriteScope::Main, false)
            .unwrap_err();
        assert_eq!(e.code, 409);
        assert_eq!(
            e.message,
            "Operation cannot be fulfilled on pods \"a\": the object has been modified; please apply your changes to the latest version and try again"
        );
    }

    #[test]
    fn graceful_pod_delete_and_node_index() {
        let s = store();
        s.create(
            &resources::POD,
            "default",
            json!({"metadata":{"name":"b"},"spec":{"nodeName":"n1"}}),
            false,
        )
        .unwrap();
        s.create(
            &resources::POD,
            "default",
            json!({"metadata":{"name":"u"},"spec":{}}),
            false,
        )
        .unwrap();
        let q = ListQuery::all().fields(FieldSelector::parse("spec.nodeName=n1").unwrap());
        assert_eq!(s.list(&resources::POD, &q).0.len(), 1);
        let out = s
            .delete(&resources::POD, "default", "b", &DeleteOpts::default())
            .unwrap();
        assert!(matches!(out, DeleteOutcome::Terminating(_)));
        assert_eq!(out.object()["metadata"]["deletionGracePeriodSeconds"], 30);
        let out = s
            .delete(&resources::POD, "default", "u", &DeleteOpts::default())
            .unwrap();
        assert!(matches!(out, DeleteOutcome::Removed(_)));
        let out = s
            .delete(
                &resources::POD,
                "default",
                "b",
                &DeleteOpts {
                    grace_period_seconds: Some(0),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(matches!(out, DeleteOutcome::Removed(_)));
        assert_eq!(s.list(&resources::POD, &q).0.len(), 0);
    }

    #[test]
    fn re_deleting_a_terminating_pod_only_moves_its_deadline_earlier() {
        // rest/delete.go BeforeDelete on an object that already has a deletionTimestamp
        let s = store();
        s.create(
            &resources::POD,
            "default",
            json!({"metadata":{"name":"b"},"spec":{"nodeName":"n1"},"status":{"phase":"Running"}}),
            false,
        )
        .unwrap();
        let del = |grace: Option<i64>| {
            s.delete(
                &resources::POD,
                "default",
                "b",
                &DeleteOpts {
                    grace_period_seconds: grace,
                    ..Default::default()
                },
            )
            .unwrap()
        };
        let first = del(Some(30)).object().clone();
        let deadline = |o: &Value| {
            meta_str(o, "deletionTimestamp")
                .parse::<jiff::Timestamp>()
                .unwrap()
        };
        let t0 = deadline(&first);
        // no grace given: nothing changes (not even the resourceVersion)
        assert_eq!(*del(None).object(), first);
        // a longer grace: nothing changes
        assert_eq!(*del(Some(60)).object(), first);
        // a shorter grace: old deadline - old grace + new grace
        let shorter = del(Some(10)).object().clone();
        assert_eq!(deadline(&shorter), t0 - jiff::SignedDuration::from_secs(20));
        assert_eq!(shorter["metadata"]["deletionGracePeriodSeconds"], 10);
        // grace 0 deletes it
        assert!(matches!(del(Some(0)), DeleteOutcome::Removed(_)));
    }

    #[test]
    fn a_namespace_terminates_until_its_finalizers_are_gone() {
        let s = store();
        s.create(
            &resources::NAMESPACE,
            "",
            json!({"metadata":{"name":"doomed"},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}),
            false,
        )
        .unwrap();
        let out = s
            .delete(&resources::NAMESPACE, "", "doomed", &DeleteOpts::default())
            .unwrap();
        let ns = out.object().clone();
        assert!(matches!(out, DeleteOutcome::Terminating(_)));
        assert_eq!(ns["status"]["phase"], "Terminating");
        assert!(ns["metadata"]["deletionTimestamp"].is_string());
        // creates in it: 403 with the NamespaceTerminating cause
        let e = s
            .create(
                &resources::CONFIGMAP,
                "doomed",
                json!({"metadata":{"name":"c"}}),
                false,
            )
            .unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "configmaps \"c\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
        );
        assert_eq!(e.causes[0].reason, "NamespaceTerminating");
        // deleting again while spec.finalizers remain changes nothing
        let again = s
            .delete(&resources::NAMESPACE, "", "doomed", &DeleteOpts::default())
            .unwrap();
        assert_eq!(*again.object(), ns);
        // the namespace controller's finalize: gone once spec.finalizers is empty
        s.mutate(&resources::NAMESPACE, "", "doomed", |o| {
            o["spec"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
        assert!(s.get(&resources::NAMESPACE, "", "doomed").is_none());
    }

    #[test]
    fn another_writers_changes_are_followed_at_their_revision() {
        let on_n1 = |s: &Store| {
            let q = ListQuery::all().fields(FieldSelector::parse("spec.nodeName=n1").unwrap());
            s.list(&resources::POD, &q).0.len()
        };
        let s = store();
        let mut rx = s.subscribe();
        let at = s.current_rv() + 5;
        let pod = json!({"metadata": {"name": "p", "namespace": "default",
                          "resourceVersion": at.to_string()},
                          "spec": {"nodeName": "n1"}});
        s.follow(&resources::POD, "default", "p", Some(pod), at);
        assert_eq!(
            s.current_rv(),
            at,
            "a list answers at the followed revision"
        );
        assert_eq!(
            rv_of(&s.get_or_404(&resources::POD, "default", "p").unwrap()),
            at
        );
        assert_eq!(on_n1(&s), 1, "the node index knows it");
        let ev = rx.try_recv().expect("controllers see it");
        assert_eq!((ev.kind, ev.rv), (EventKind::Added, at));
        // The lab's next change comes after it.
        let ns = s
            .create(
                &resources::NAMESPACE,
                "",
                json!({"metadata":{"name":"x"}}),
                false,
            )
            .unwrap();
        assert_eq!(rv_of(&ns), at + 1);
        s.follow(&resources::POD, "default", "p", None, at + 3);
        assert!(s.get(&resources::POD, "default", "p").is_none());
        assert_eq!(on_n1(&s), 0);
        let ev = rx.try_recv().expect("ADDED namespace x");
        assert_eq!(ev.kind, EventKind::Added);
        let ev = rx.try_recv().expect("DELETED p");
        assert_eq!(
            (ev.kind, ev.rv, ev.name()),
            (EventKind::Deleted, at + 3, "p")
        );
        // Removing what is not there changes nothing but the revision.
        s.follow(&resources::POD, "default", "gone", None, at + 4);
        assert!(rx.try_recv().is_err());
        assert_eq!(s.current_rv(), at + 4);
    }

    #[test]
    fn watch_resume_and_gone() {
        let s = Store::with_history(Arc::new(Clock::new(1.0)), 3);
        let rv0 = s.current_rv();
        for n in ["a", "b", "c", "d", "e"] {
            s.create(
                &resources::NAMESPACE,
                "",
                json!({"metadata":{"name":n}}),
                false,
            )
            .unwrap();
        }
        assert_eq!(
            s.watch_from(&resources::NAMESPACE, rv0).unwrap_err().code,
            410
        );
        let (backlog, _rx) = s.watch_from(&resources::NAMESPACE, rv0 + 3).unwrap();
        assert_eq!(backlog.len(), 2);
    }
}
