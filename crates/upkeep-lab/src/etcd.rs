//! The lab's objects in a real etcd, laid out as kube-apiserver lays them out.
//!
//! * Keys: `/registry/<resource prefix>/<namespace>/<name>` (cluster-scoped: no namespace),
//!   see [`object_key`]. `etcdctl get /registry/ --prefix --keys-only` lists what a real
//!   cluster's etcd would.
//! * Values: the object as JSON without `metadata.resourceVersion`, as kube-apiserver stores
//!   it with `--storage-media-type=application/json` (its default is protobuf).
//! * resourceVersion = etcd revision: the store is the lab's cache (lists, gets, the
//!   controllers); every committed change becomes exactly one etcd put or delete, written in
//!   resourceVersion order by one task, so etcd's revision after the write equals the
//!   resourceVersion the store gave the change. API requests answer only once etcd holds
//!   every change made so far (see `server.rs`); controllers do not wait.
//! * Watches come from etcd's own watch, one per watch request, as kube-apiserver's etcd3
//!   watcher opens them (see [`EtcdWatcher`]): a change someone else writes under
//!   `/registry/` (etcdctl, a second lab) reaches every watcher, and a watch from a
//!   compacted revision answers 410 Gone.
//! * Other writers: one more etcd watch on `/registry/` brings their changes into the store
//!   ([`crate::Store::follow`]) with etcd's revision, so lists, gets and the controllers see
//!   them too and a list's resourceVersion is not older than etcd's. A foreign write that
//!   lands while one of the lab's own writes is in flight shifts that write's revision: its
//!   object then carries a resourceVersion one or more below etcd's until it changes again.
//! * Start: every object under `/registry/` is loaded with its mod_revision as its
//!   resourceVersion, and the etcd revision becomes the store's current resourceVersion.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{
    Client, ConnectOptions, EventType, GetOptions, KeyValue, KvClient, WatchOptions, WatchStream,
};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::error::ApiError;
use crate::resources::{self, Resource};
use crate::store::{EventKind, Obj, Persist, Seed, WatchEvent, meta_str};

/// kube-apiserver's `--etcd-prefix` default (apiserver pkg/server/options/etcd.go
/// `DefaultEtcdPathPrefix`).
pub const PREFIX: &str = "/registry";

/// The etcd resource prefix of `res`: kube-apiserver's special prefixes
/// (pkg/kubeapiserver/default_storage_factory_builder.go `SpecialDefaultResourcePrefixes`),
/// else the lower-case resource name (apiserver pkg/server/storage/storage_factory.go
/// `DefaultStorageFactory.ResourcePrefix`).
pub fn resource_prefix(res: &Resource) -> &'static str {
    match (res.group, res.plural) {
        ("", "nodes") => "minions",
        ("", "services") => "services/specs",
        ("", "endpoints") => "services/endpoints",
        // Upstream stores both Event APIs as one object under /registry/events (cohabiting
        // resources); the lab keeps events.k8s.io Events apart, so they get their own prefix.
        ("events.k8s.io", "events") => "events.k8s.io/events",
        _ => res.plural,
    }
}

/// The key of one object: apiserver pkg/registry/generic/registry/store.go
/// `NamespaceKeyFunc` (prefix/namespace/name) and `NoNamespaceKeyFunc` (prefix/name).
pub fn object_key(res: &Resource, ns: &str, name: &str) -> String {
    let prefix = resource_prefix(res);
    if res.namespaced {
        format!("{PREFIX}/{prefix}/{ns}/{name}")
    } else {
        format!("{PREFIX}/{prefix}/{name}")
    }
}

/// The resource, namespace and name a key stands for (None: not a lab resource).
pub fn parse_key(key: &str) -> Option<(&'static Resource, String, String)> {
    let rest = key.strip_prefix(PREFIX)?.strip_prefix('/')?;
    resources::ALL.iter().copied().find_map(|res| {
        let tail = rest.strip_prefix(resource_prefix(res))?.strip_prefix('/')?;
        if res.namespaced {
            let (ns, name) = tail.split_once('/')?;
            (!ns.is_empty() && !name.is_empty() && !name.contains('/'))
                .then(|| (res, ns.to_string(), name.to_string()))
        } else {
            (!tail.is_empty() && !tail.contains('/'))
                .then(|| (res, String::new(), tail.to_string()))
        }
    })
}

/// The stored value: the object without resourceVersion (apiserver pkg/storage/etcd3/store.go
/// `Create`/`GuaranteedUpdate` call `versioner.PrepareObjectForStorage`).
fn encode(obj: &Value) -> Vec<u8> {
    let mut v = obj.clone();
    if let Some(md) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        md.remove("resourceVersion");
    }
    serde_json::to_vec(&v).unwrap_or_default()
}

/// One committed change for the writer.
struct Change {
    key: String,
    /// None: delete.
    obj: Option<Obj>,
    rv: u64,
}

/// The lab's own changes per key that etcd's watch has not shown yet: the follower skips
/// those events and takes every other one as a foreign write.
type Ours = Arc<Mutex<std::collections::HashMap<String, u32>>>;

fn mine(ours: &Ours, key: &str) {
    *ours.lock().entry(key.to_string()).or_default() += 1;
}

/// The store's [`Persist`] sink: hands changes to the writer task.
struct Sink {
    tx: mpsc::UnboundedSender<Change>,
    durable: watch::Receiver<u64>,
    ours: Ours,
}

impl Persist for Sink {
    fn put(&self, res: &'static Resource, obj: &Obj) {
        let rv = crate::store::rv_of(obj);
        let key = object_key(res, meta_str(obj, "namespace"), meta_str(obj, "name"));
        mine(&self.ours, &key);
        let _ = self.tx.send(Change {
            key,
            obj: Some(obj.clone()),
            rv,
        });
    }
    fn delete(&self, res: &'static Resource, ns: &str, name: &str, rv: u64) {
        let key = object_key(res, ns, name);
        mine(&self.ours, &key);
        let _ = self.tx.send(Change { key, obj: None, rv });
    }
    fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }
}

/// Connect to the etcd at `endpoint` (plain http, as a lab's loopback etcd) and load what it
/// holds. The returned seed's sink writes every later change back; the watcher serves the
/// lab's watch requests from etcd (install it with [`EtcdWatcher::install`]).
pub async fn open(endpoint: &str) -> anyhow::Result<(Seed, EtcdWatcher)> {
    let hint = "check that etcd runs there (--etcd-endpoints), or let the lab start one with --etcd-data-dir DIR";
    let opts = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(5))
        .with_timeout(Duration::from_secs(30));
    let mut client = tokio::time::timeout(
        Duration::from_secs(10),
        Client::connect([endpoint], Some(opts)),
    )
    .await
    .map_err(|_| anyhow::anyhow!("etcd at {endpoint} did not answer within 10 s: {hint}"))?
    .with_context(|| format!("connecting to etcd at {endpoint}: {hint}"))?;
    let (objects, rv) = load(&mut client)
        .await
        .with_context(|| format!("reading {PREFIX}/ from etcd at {endpoint}: {hint}"))?;
    tracing::info!(
        "etcd at {endpoint}: {} objects at revision {rv}",
        objects.len()
    );
    let (tx, rx) = mpsc::unbounded_channel();
    let (durable_tx, durable) = watch::channel(rv);
    let durable_tx = Arc::new(durable_tx);
    let ours = Ours::default();
    tokio::spawn(write_loop(client.kv_client(), rx, durable_tx.clone()));
    let seed = Seed {
        persist: Arc::new(Sink {
            tx,
            durable,
            ours: ours.clone(),
        }),
        rv,
        objects,
    };
    let watcher = EtcdWatcher {
        client,
        follow: Mutex::new(Some(Follow {
            ours,
            durable: durable_tx,
            from: rv,
        })),
    };
    Ok((seed, watcher))
}

/// The lab's watch requests served by etcd's watch, as kube-apiserver serves them without
/// its watch cache (apiserver pkg/storage/etcd3/watcher.go).
pub struct EtcdWatcher {
    client: Client,
    /// What the follower of foreign writes needs; taken when it starts.
    follow: Mutex<Option<Follow>>,
}

struct Follow {
    ours: Ours,
    durable: Arc<watch::Sender<u64>>,
    /// The revision the store was loaded at.
    from: u64,
}

/// The lab extension holding the [`EtcdWatcher`] of a lab on etcd.
const WATCHER: &str = "etcd.watcher";

impl EtcdWatcher {
    /// Serve `lab`'s watch requests from this etcd from now on, and bring what other writers
    /// change in etcd into its store.
    pub fn install(self, lab: &Arc<crate::Lab>) {
        if let Some(f) = self.follow.lock().take() {
            tokio::spawn(follow(self.client.clone(), Arc::downgrade(lab), f));
        }
        lab.extensions.lock().insert(WATCHER, Arc::new(self));
    }

    /// The watcher of a lab on etcd (None: the in-memory store serves watches).
    pub fn of(lab: &crate::Lab) -> Option<Arc<EtcdWatcher>> {
        let ext = lab.extensions.lock().get(WATCHER).cloned()?;
        ext.downcast::<EtcdWatcher>().ok()
    }

    /// A watch of `res` (in namespace `ns`, None: all), as watcher.go `startWatching`:
    /// `after` None (resourceVersion "" or "0", or sendInitialEvents) first reads every object
    /// at the latest revision as ADDED events (`sync`), then watches from that revision + 1;
    /// `after` Some(rv) watches from rv + 1, the client's resourceVersion being the last
    /// revision it has seen. Returns the initial events, the revision they are at, and the
    /// stream of changes. A compacted start revision shows as 410 Gone from the stream.
    pub async fn watch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        after: Option<u64>,
    ) -> Result<(Vec<WatchEvent>, u64, EtcdEvents), ApiError> {
        let prefix = match ns.filter(|_| res.namespaced) {
            Some(ns) => format!("{PREFIX}/{}/{ns}/", resource_prefix(res)),
            None => format!("{PREFIX}/{}/", resource_prefix(res)),
        };
        let mut client = self.client.clone();
        let unreachable =
            |e: etcd_client::Error| ApiError::internal(format!("etcd watch on {prefix}: {e}"));
        let (initial, rev) = match after {
            Some(rv) => (Vec::new(), rv),
            None => {
                let resp = client
                    .get(prefix.as_str(), Some(GetOptions::new().with_prefix()))
                    .await
                    .map_err(unreachable)?;
                let rev = resp.header().map_or(0, |h| h.revision());
                let mut initial = Vec::new();
                for kv in resp.kvs() {
                    if let Some(ev) = created(res, kv)? {
                        initial.push(ev);
                    }
                }
                (initial, u64::try_from(rev).unwrap_or(0))
            }
        };
        let start = i64::try_from(rev.saturating_add(1)).unwrap_or(i64::MAX);
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(start)
            .with_prev_key();
        let stream = client
            .watch(prefix.as_str(), Some(opts))
            .await
            .map_err(unreachable)?;
        Ok((
            initial,
            rev,
            EtcdEvents {
                stream,
                res,
                pending: VecDeque::new(),
            },
        ))
    }
}

/// The changes of one etcd watch, as the lab's watch events.
pub struct EtcdEvents {
    stream: WatchStream,
    res: &'static Resource,
    pending: VecDeque<WatchEvent>,
}

impl EtcdEvents {
    /// The next change; Some(Err) ends the watch with that Status (410 Gone for a compacted
    /// revision), None when etcd closed the stream.
    pub async fn next(&mut self) -> Option<Result<WatchEvent, ApiError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            let resp = match self.stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => return None,
                Err(e) => return Some(Err(ApiError::internal(format!("etcd watch: {e}")))),
            };
            // etcd answers a watch from a compacted revision with compact_revision set (and
            // cancels it); client-go's WatchResponse.Err gives ErrCompacted, which
            // apiserver pkg/storage/etcd3/errors.go interpretWatchError turns into
            // NewResourceExpired: 410, reason Expired, sent as an ERROR event
            // (watcher.go transformErrorToEvent).
            if resp.compact_revision() != 0 {
                return Some(Err(ApiError::gone(
                    "The resourceVersion for the provided watch is too old.",
                )));
            }
            if resp.canceled() {
                return Some(Err(ApiError::internal(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                ))));
            }
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                let parsed = match e.event_type() {
                    // apiserver pkg/storage/etcd3/event.go parseEvent: isCreated when the key
                    // was created by this put (create revision = mod revision).
                    EventType::Put if kv.create_revision() == kv.mod_revision() => {
                        created(self.res, kv)
                    }
                    EventType::Put => modified(self.res, kv, e.prev_kv()),
                    EventType::Delete => deleted(self.res, kv, e.prev_kv()),
                };
                match parsed {
                    Ok(Some(ev)) => self.pending.push_back(ev),
                    Ok(None) => {}
                    Err(err) => return Some(Err(err)),
                }
            }
        }
    }
}

/// Take every change under `/registry/` that the lab did not write into its store, from the
/// revision it was loaded at, until the lab is gone.
async fn follow(mut client: Client, lab: std::sync::Weak<crate::Lab>, f: Follow) {
    let mut rev = i64::try_from(f.from).unwrap_or(0);
    let mut backoff = Duration::from_millis(100);
    loop {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(rev + 1)
            .with_prev_key();
        let mut stream = match client.watch(format!("{PREFIX}/"), Some(opts)).await {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!("watching etcd for other writers failed (retrying): {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("the etcd watch for other writers ended (resuming): {e}");
                    break;
                }
            };
            if resp.compact_revision() != 0 {
                tracing::error!(
                    "etcd compacted revision {} before the lab read what other writers changed \
                     after {rev}; those changes are missing from the lab's lists until it \
                     restarts",
                    resp.compact_revision()
                );
                rev = resp.compact_revision() - 1;
                break;
            }
            let Some(lab) = lab.upgrade() else { return };
            for e in resp.events() {
                let Some(kv) = e.kv() else { continue };
                rev = kv.mod_revision();
                let key = String::from_utf8_lossy(kv.key());
                {
                    let mut ours = f.ours.lock();
                    if let Some(n) = ours.get_mut(key.as_ref()) {
                        *n -= 1;
                        if *n == 0 {
                            ours.remove(key.as_ref());
                        }
                        continue;
                    }
                }
                let Some((res, ns, name)) = parse_key(&key) else {
                    continue;
                };
                let obj = match e.event_type() {
                    EventType::Put => match decode_at(kv.key(), kv.value(), rev) {
                        Ok(obj) => Some(obj),
                        Err(err) => {
                            tracing::warn!("{}; left out of the lab's store", err.message);
                            continue;
                        }
                    },
                    EventType::Delete => None,
                };
                let rv = u64::try_from(rev).unwrap_or(0);
                lab.store.follow(res, &ns, &name, obj, rv);
                f.durable.send_modify(|d| *d = (*d).max(rv));
            }
            backoff = Duration::from_millis(100);
        }
        tokio::time::sleep(backoff).await;
    }
}

/// The object stored in `value`, with `rev` as its resourceVersion (watcher.go `decodeObj`).
fn decode_at(key: &[u8], value: &[u8], rev: i64) -> Result<Value, ApiError> {
    let mut obj: Value = serde_json::from_slice(value).map_err(|e| {
        ApiError::internal(format!(
            "{} is not a JSON object ({e}): the lab reads objects stored as JSON",
            String::from_utf8_lossy(key)
        ))
    })?;
    if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        md.insert("resourceVersion".into(), json!(rev.to_string()));
    }
    Ok(obj)
}

/// The resource of `kv`'s key if it is `res` (a prefix watch may see other keys below it).
fn is_of(res: &'static Resource, key: &[u8]) -> bool {
    parse_key(&String::from_utf8_lossy(key)).is_some_and(|(r, _, _)| std::ptr::eq(r, res))
}

fn event(
    res: &'static Resource,
    kind: EventKind,
    obj: Value,
    old: Option<Value>,
    rev: i64,
) -> WatchEvent {
    WatchEvent {
        kind,
        resource: res,
        object: Arc::new(obj),
        old: old.map(Arc::new),
        rv: u64::try_from(rev).unwrap_or(0),
    }
}

fn created(res: &'static Resource, kv: &KeyValue) -> Result<Option<WatchEvent>, ApiError> {
    if !is_of(res, kv.key()) {
        return Ok(None);
    }
    let obj = decode_at(kv.key(), kv.value(), kv.mod_revision())?;
    Ok(Some(event(
        res,
        EventKind::Added,
        obj,
        None,
        kv.mod_revision(),
    )))
}

fn modified(
    res: &'static Resource,
    kv: &KeyValue,
    prev: Option<&KeyValue>,
) -> Result<Option<WatchEvent>, ApiError> {
    if !is_of(res, kv.key()) {
        return Ok(None);
    }
    let obj = decode_at(kv.key(), kv.value(), kv.mod_revision())?;
    // The previous object (for selector transitions) at the event's revision, as
    // watcher.go prepareObjs decodes it.
    let old = prev
        .map(|p| decode_at(p.key(), p.value(), kv.mod_revision()))
        .transpose()?;
    Ok(Some(event(
        res,
        EventKind::Modified,
        obj,
        old,
        kv.mod_revision(),
    )))
}

/// A DELETED event carries the last stored object at the deletion's revision (watcher.go
/// prepareObjs); without the previous value (compacted) upstream fails the watch too.
fn deleted(
    res: &'static Resource,
    kv: &KeyValue,
    prev: Option<&KeyValue>,
) -> Result<Option<WatchEvent>, ApiError> {
    if !is_of(res, kv.key()) {
        return Ok(None);
    }
    let Some(prev) = prev else {
        return Err(ApiError::internal(format!(
            "etcd event received with PrevKv=nil (key={})",
            String::from_utf8_lossy(kv.key())
        )));
    };
    let obj = decode_at(prev.key(), prev.value(), kv.mod_revision())?;
    Ok(Some(event(
        res,
        EventKind::Deleted,
        obj.clone(),
        Some(obj),
        kv.mod_revision(),
    )))
}

/// Every lab object under `/registry/` at one revision, and that revision.
async fn load(client: &mut Client) -> anyhow::Result<(Vec<(&'static Resource, Value)>, u64)> {
    const PAGE: i64 = 1000;
    let end = format!("{PREFIX}0"); // '0' follows '/': the range is the whole prefix
    let mut from = format!("{PREFIX}/").into_bytes();
    let mut revision = 0i64;
    let mut objects = Vec::new();
    let mut foreign = 0usize;
    loop {
        let opts = GetOptions::new()
            .with_range(end.clone())
            .with_limit(PAGE)
            .with_revision(revision);
        let resp = client.get(from.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or(0);
        }
        for kv in resp.kvs() {
            let key = String::from_utf8_lossy(kv.key());
            let Some((res, _, _)) = parse_key(&key) else {
                foreign += 1;
                continue;
            };
            let mut obj: Value = serde_json::from_slice(kv.value()).with_context(|| {
                format!(
                    "{key} is not JSON: the lab reads objects stored as JSON \
                     (kube-apiserver --storage-media-type=application/json), not protobuf"
                )
            })?;
            // apiserver pkg/storage/etcd3/store.go decode: resourceVersion = mod_revision
            if let Some(md) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                md.insert(
                    "resourceVersion".into(),
                    json!(kv.mod_revision().to_string()),
                );
            }
            objects.push((res, obj));
        }
        match resp.kvs().last() {
            Some(last) if resp.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => break,
        }
    }
    if foreign > 0 {
        tracing::warn!(
            "{foreign} keys under {PREFIX}/ are not resources the lab serves; they are left as they are"
        );
    }
    Ok((objects, u64::try_from(revision).unwrap_or(0)))
}

/// Apply changes one by one, in order, so that each takes exactly one etcd revision.
async fn write_loop(
    mut kv: KvClient,
    mut rx: mpsc::UnboundedReceiver<Change>,
    durable: Arc<watch::Sender<u64>>,
) {
    let diverged = AtomicBool::new(false);
    while let Some(c) = rx.recv().await {
        let mut backoff = Duration::from_millis(100);
        loop {
            let result = match &c.obj {
                Some(obj) => kv
                    .put(c.key.as_str(), encode(obj), None)
                    .await
                    .map(|r| r.header().map(|h| h.revision())),
                None => kv
                    .delete(c.key.as_str(), None)
                    .await
                    .map(|r| r.header().map(|h| h.revision())),
            };
            match result {
                Ok(rev) => {
                    let rev = rev.and_then(|r| u64::try_from(r).ok()).unwrap_or(0);
                    if rev != c.rv && !diverged.swap(true, Ordering::Relaxed) {
                        tracing::warn!(
                            "etcd wrote {} at revision {rev}, the lab gave it resourceVersion {}: \
                             another client wrote to this etcd meanwhile; that object's \
                             resourceVersion stays behind etcd's until it changes again",
                            c.key,
                            c.rv
                        );
                    }
                    durable.send_modify(|d| *d = (*d).max(c.rv));
                    break;
                }
                Err(e) => {
                    tracing::warn!("writing {} to etcd failed (retrying): {e}", c.key);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

/// Wait until `store` has written everything committed so far to etcd, up to `timeout`.
/// Ok(true) at once for an in-memory store.
pub async fn flush(store: &crate::Store, timeout: Duration) -> bool {
    let Some(mut durable) = store.durable() else {
        return true;
    };
    let target = store.current_rv();
    tokio::time::timeout(timeout, durable.wait_for(|rv| *rv >= target))
        .await
        .is_ok_and(|r| r.is_ok())
}

/// An etcd the lab started itself on loopback (`--etcd-data-dir`), as kubeadm runs a local
/// etcd beside the API server. Killed when dropped.
pub struct EtcdProcess {
    child: tokio::process::Child,
    pub endpoint: String,
    pub log: PathBuf,
}

impl EtcdProcess {
    /// Start `binary` (etcd) on `data_dir` (created if missing; a restored snapshot's
    /// directory works as is) on two free loopback ports; return once it answers.
    pub async fn start(binary: &Path, data_dir: &Path) -> anyhow::Result<EtcdProcess> {
        if !data_dir.exists() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .with_context(|| {
                    format!("creating the etcd data directory {}", data_dir.display())
                })?;
        }
        let log = data_dir.join("upkeep-lab-etcd.log");
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let client_port = free_port()?;
        let peer_port = free_port()?;
        let client_url = format!("http://127.0.0.1:{client_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        // Member name "default" is what `etcdctl/etcdutl snapshot restore` gives a restored
        // member unless told otherwise.
        let mut child = tokio::process::Command::new(binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            // Its own process group: Ctrl-C on the lab must not stop etcd before the lab has
            // written its last changes.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (is etcd installed? scripts/setup.sh installs it; --etcd-binary names another)",
                    binary.display()
                )
            })?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "etcd exited ({status}) before answering; its log: {}\n{}",
                    log.display(),
                    tail(&log)
                );
            }
            if answers(&client_url).await {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "etcd did not answer on {client_url} within 30 s; its log: {}\n{}",
                    log.display(),
                    tail(&log)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(EtcdProcess {
            child,
            endpoint: client_url,
            log,
        })
    }

    /// Stop etcd and wait for it (it is crash-safe: what it acknowledged is in its WAL).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }
}

async fn answers(url: &str) -> bool {
    let opts = ConnectOptions::new().with_connect_timeout(Duration::from_millis(500));
    let Ok(Ok(mut c)) =
        tokio::time::timeout(Duration::from_secs(1), Client::connect([url], Some(opts))).await
    else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), c.status()).await,
        Ok(Ok(_))
    )
}

fn free_port() -> anyhow::Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port for etcd")?;
    Ok(l.local_addr()?.port())
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_follow_kube_apiserver() {
        assert_eq!(
            object_key(&resources::POD, "default", "hr-app"),
            "/registry/pods/default/hr-app"
        );
        assert_eq!(
            object_key(&resources::DEPLOYMENT, "default", "web"),
            "/registry/deployments/default/web"
        );
        assert_eq!(
            object_key(&resources::NODE, "", "node01"),
            "/registry/minions/node01"
        );
        assert_eq!(
            object_key(&resources::SERVICE, "default", "kubernetes"),
            "/registry/services/specs/default/kubernetes"
        );
        assert_eq!(
            object_key(&resources::ENDPOINTS, "default", "kubernetes"),
            "/registry/services/endpoints/default/kubernetes"
        );
        assert_eq!(
            object_key(&resources::NAMESPACE, "", "kube-system"),
            "/registry/namespaces/kube-system"
        );
        for res in resources::ALL {
            let (ns, name) = if res.namespaced {
                ("kube-system", "x.y")
            } else {
                ("", "x.y")
            };
            let (back, bns, bname) = parse_key(&object_key(res, ns, name)).expect("parses");
            assert!(std::ptr::eq(back, *res), "{}", res.qualified());
            assert_eq!((bns.as_str(), bname.as_str()), (ns, name));
        }
        assert!(parse_key("/registry/ranges/serviceips").is_none());
        assert!(parse_key("/registry/pods/default").is_none());
    }
}
