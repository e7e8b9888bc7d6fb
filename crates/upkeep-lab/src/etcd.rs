//! The lab's objects in a real etcd, laid out as kube-apiserver lays them out.
//!
//! * Keys: `/registry/<resource prefix>/<namespace>/<name>` (cluster-scoped: no namespace),
//!   see [`object_key`]. `etcdctl get /registry/ --prefix --keys-only` lists what a real
//!   cluster's etcd would.
//! * Values: the object as JSON without `metadata.resourceVersion`, as kube-apiserver stores
//!   it with `--storage-media-type=application/json` (its default is protobuf).
//! * resourceVersion = etcd revision: the store stays the lab's cache and the source of its
//!   watches; every committed change becomes exactly one etcd put or delete, written in
//!   resourceVersion order by one task, so etcd's revision after the write equals the
//!   resourceVersion the store gave the change (checked on each write). API requests answer
//!   only once etcd holds every change made so far (see `server.rs`); controllers do not wait.
//! * Watches are served from the store's own history, not from etcd's watch: the lab must be
//!   the only writer of its etcd.
//! * Start: every object under `/registry/` is loaded with its mod_revision as its
//!   resourceVersion, and the etcd revision becomes the store's current resourceVersion.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use etcd_client::{Client, ConnectOptions, GetOptions, KvClient};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use crate::resources::{self, Resource};
use crate::store::{Obj, Persist, Seed, meta_str};

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

/// The store's [`Persist`] sink: hands changes to the writer task.
struct Sink {
    tx: mpsc::UnboundedSender<Change>,
    durable: watch::Receiver<u64>,
}

impl Persist for Sink {
    fn put(&self, res: &'static Resource, obj: &Obj) {
        let rv = crate::store::rv_of(obj);
        let key = object_key(res, meta_str(obj, "namespace"), meta_str(obj, "name"));
        let _ = self.tx.send(Change {
            key,
            obj: Some(obj.clone()),
            rv,
        });
    }
    fn delete(&self, res: &'static Resource, ns: &str, name: &str, rv: u64) {
        let _ = self.tx.send(Change {
            key: object_key(res, ns, name),
            obj: None,
            rv,
        });
    }
    fn durable(&self) -> watch::Receiver<u64> {
        self.durable.clone()
    }
}

/// Connect to the etcd at `endpoint` (plain http, as a lab's loopback etcd) and load what it
/// holds. The returned seed's sink writes every later change back.
pub async fn open(endpoint: &str) -> anyhow::Result<Seed> {
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
    tokio::spawn(write_loop(client.kv_client(), rx, durable_tx));
    Ok(Seed {
        persist: Arc::new(Sink { tx, durable }),
        rv,
        objects,
    })
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
    durable: watch::Sender<u64>,
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
                        tracing::error!(
                            "etcd wrote {} at revision {rev}, the lab gave it resourceVersion {}: \
                             something else writes to this etcd; from now on resourceVersions \
                             differ from etcd revisions (give the lab an etcd of its own)",
                            c.key,
                            c.rv
                        );
                    }
                    durable.send_replace(c.rv);
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
