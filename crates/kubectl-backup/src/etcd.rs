//! The I/O of `kubectl backup etcd`: talking to etcd over TLS, writing the
//! snapshot file safely, driving etcdutl/etcdctl for a restore, and moving
//! static pod manifests on a kubeadm control plane.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use clap::Args;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use serde::Serialize;

use crate::manifest::{self, Change};
use crate::snapshot::{self, Assembler, Chunk, SnapshotStatus};

/// kubeadm's etcd PKI (`kubeadm init phase certs etcd-ca` and
/// `etcd-healthcheck-client`): the healthcheck client certificate is the
/// client-only certificate kubeadm issues from the etcd CA. The CKA habit of
/// `server.crt`/`server.key` works too (kubeadm gives the server certificate
/// client usage as well) but hands out the server's own identity.
pub const DEFAULT_CACERT: &str = "/etc/kubernetes/pki/etcd/ca.crt";
pub const DEFAULT_CERT: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.crt";
pub const DEFAULT_KEY: &str = "/etc/kubernetes/pki/etcd/healthcheck-client.key";
pub const DEFAULT_ENDPOINT: &str = "https://127.0.0.1:2379";

/// How to reach etcd: the flags and environment variables of etcdctl.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "etcd connection (as etcdctl)")]
pub struct EtcdFlags {
    /// The etcd member to talk to (one: a snapshot is one member's state)
    #[arg(long, value_name = "URL", env = "ETCDCTL_ENDPOINTS", default_value = DEFAULT_ENDPOINT)]
    pub endpoints: String,
    /// CA bundle that signed etcd's serving certificate
    #[arg(long, value_name = "PATH", env = "ETCDCTL_CACERT", default_value = DEFAULT_CACERT)]
    pub cacert: PathBuf,
    /// Client certificate signed by the etcd CA
    #[arg(long, value_name = "PATH", env = "ETCDCTL_CERT", default_value = DEFAULT_CERT)]
    pub cert: PathBuf,
    /// Key of the client certificate
    #[arg(long, value_name = "PATH", env = "ETCDCTL_KEY", default_value = DEFAULT_KEY)]
    pub key: PathBuf,
    /// How long to wait for a connection, e.g. 2s
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = humantime::parse_duration)]
    pub dial_timeout: Duration,
    /// How long the whole command may take (the snapshot transfer included), e.g. 5m
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = humantime::parse_duration)]
    pub command_timeout: Duration,
}

impl EtcdFlags {
    /// The one endpoint: etcdctl refuses several for a snapshot too
    /// (etcd `client/v3/snapshot/v3_snapshot.go`).
    pub fn endpoint(&self) -> Result<String> {
        let eps: Vec<&str> = self
            .endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .collect();
        match eps.as_slice() {
            [one] => Ok(one.to_string()),
            [] => bail!("--endpoints is empty: give one etcd member, e.g. {DEFAULT_ENDPOINT}"),
            many => bail!(
                "a snapshot must be taken from one member, not {} ({}): pass one --endpoints",
                many.len(),
                many.join(", ")
            ),
        }
    }

    fn read(path: &Path, what: &str, flag: &str) -> Result<Vec<u8>> {
        std::fs::read(path).with_context(|| {
            format!(
                "could not read the {what} {} (set {flag}; on a kubeadm control plane run as root)",
                path.display()
            )
        })
    }

    /// Connects and checks that the member answers within `--dial-timeout`.
    pub async fn connect(&self) -> Result<(Client, String, String)> {
        let endpoint = self.endpoint()?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(self.dial_timeout)
            .with_timeout(self.command_timeout);
        if endpoint.starts_with("https://") {
            let ca = Self::read(&self.cacert, "CA certificate", "--cacert")?;
            let cert = Self::read(&self.cert, "client certificate", "--cert")?;
            let key = Self::read(&self.key, "client key", "--key")?;
            options = options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .identity(Identity::from_pem(cert, key)),
            );
        }
        let hint = "check that etcd runs and listens there (--endpoints), and that \
                    --cacert/--cert/--key belong to its CA";
        let silent = || {
            anyhow::anyhow!(
                "etcd at {endpoint} did not answer within {} (--dial-timeout): {hint}",
                humantime::format_duration(self.dial_timeout)
            )
        };
        let unreachable = |e: etcd_client::Error| {
            anyhow::anyhow!(
                "could not reach etcd at {endpoint}: {}: {hint}",
                root_cause(&e)
            )
        };
        let mut client = tokio::time::timeout(
            self.dial_timeout,
            Client::connect([endpoint.as_str()], Some(options)),
        )
        .await
        .map_err(|_| silent())?
        .map_err(unreachable)?;
        // The channel connects lazily: one status call proves the member answers.
        let status = tokio::time::timeout(self.dial_timeout, client.status())
            .await
            .map_err(|_| silent())?
            .map_err(unreachable)?;
        Ok((client, endpoint, status.version().to_string()))
    }
}

/// The result of `etcd save`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub file: String,
    pub endpoint: String,
    pub etcd_version: String,
    pub sha256: String,
    pub size: u64,
    pub revision: i64,
    pub total_key: u64,
    pub hash: u32,
    /// Revisions held in etcd's `key` bucket.
    pub key_revisions: u64,
}

/// Why `target` cannot receive a snapshot, checked before anything is
/// streamed: a missing or unwritable directory, or a target that is a
/// directory or not a regular file.
pub fn target_refusal(target: &Path) -> Option<String> {
    let dir = parent_dir(target);
    if target.file_name().is_none() {
        return Some(format!("{} is not a file path", target.display()));
    }
    if !dir.is_dir() {
        return Some(format!(
            "the directory {} does not exist: create it first",
            dir.display()
        ));
    }
    match std::fs::metadata(target) {
        Ok(m) if m.is_dir() => Some(format!(
            "{} is a directory: name a file, e.g. {}",
            target.display(),
            target.join("etcd-snapshot.db").display()
        )),
        Ok(m) if !m.is_file() => Some(format!(
            "{} exists and is not a regular file: name another path",
            target.display()
        )),
        _ => None,
    }
}

fn parent_dir(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Temporary files a killed save left beside `target` (`.FILE.XXXX.part`).
pub fn stale_parts(target: &Path) -> Vec<PathBuf> {
    let Some(name) = target.file_name() else {
        return Vec::new();
    };
    let prefix = format!(".{}.", name.to_string_lossy());
    let mut found: Vec<PathBuf> = std::fs::read_dir(parent_dir(target))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with(&prefix) && n.ends_with(".part")
        })
        .map(|e| e.path())
        .collect();
    found.sort();
    found
}

/// Streams a snapshot into `target`: a temporary file beside it (mode 0600),
/// fsync, checks, rename, fsync of the directory. On any failure, and on
/// SIGINT or SIGTERM, the temporary file is removed and `target` is
/// untouched.
///
/// `progress(received, total)` is called after each chunk of the database.
pub async fn save(
    flags: &EtcdFlags,
    target: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Saved> {
    use tokio::signal::unix::{SignalKind, signal};
    if let Some(why) = target_refusal(target) {
        bail!("{why}");
    }
    // Handlers installed explicitly: a shell running `cmd &` or nohup starts
    // us with SIGINT ignored, and an ignored SIGINT would leave a stalled
    // save running until --command-timeout.
    let mut sigint = signal(SignalKind::interrupt()).context("could not handle SIGINT")?;
    let mut sigterm = signal(SignalKind::terminate()).context("could not handle SIGTERM")?;
    let dir = parent_dir(target);
    let file_name = target
        .file_name()
        .context("not a file path")?
        .to_string_lossy()
        .into_owned();
    // Created before etcd is asked for anything: an unwritable directory
    // fails here, not after the whole database has been streamed.
    // tempfile creates the file with mode 0600: a snapshot holds every Secret.
    let mut part = tempfile::Builder::new()
        .prefix(&format!(".{file_name}."))
        .suffix(".part")
        .tempfile_in(&dir)
        .with_context(|| format!("could not create a temporary file in {}", dir.display()))?;
    let part_path = part.path().to_path_buf();
    let work = async {
        let (mut client, endpoint, version) = flags.connect().await?;
        let transfer = async {
            let mut stream = client
                .snapshot()
                .await
                .with_context(|| format!("etcd at {endpoint} refused the snapshot request"))?;
            let mut assembler = Assembler::new();
            while let Some(msg) = stream
                .message()
                .await
                .map_err(|e| anyhow::anyhow!("{}", stream_error(&e)))
                .with_context(|| format!("the snapshot stream from {endpoint} failed"))?
            {
                let chunk = assembler.push(msg.blob(), msg.remaining_bytes())?;
                part.write_all(msg.blob())
                    .context("could not write the snapshot")?;
                if chunk == Chunk::Data {
                    let received = assembler.data_bytes();
                    progress(received, received + msg.remaining_bytes());
                }
            }
            assembler.finish()
        };
        let sha256 = tokio::time::timeout(flags.command_timeout, transfer)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "the snapshot did not complete within {} (--command-timeout); nothing was written",
                    humantime::format_duration(flags.command_timeout)
                )
            })??;
        part.as_file()
            .sync_all()
            .context("could not fsync the snapshot")?;
        // Read back in a streaming pass: memory stays bounded for any size.
        let path = part_path.clone();
        let status = tokio::task::spawn_blocking(move || snapshot::status_of_file(&path))
            .await
            .context("the snapshot check stopped")?
            .context("the snapshot etcd sent does not check out")?;
        anyhow::Ok((endpoint, version, sha256, status))
    };
    let interrupted = |signal: &str| {
        anyhow::anyhow!(
            "interrupted by {signal}: the partial snapshot was removed; {} was not touched",
            target.display()
        )
    };
    let (endpoint, version, sha256, status) = tokio::select! {
        done = work => done?,
        _ = sigint.recv() => return Err(interrupted("SIGINT")),
        _ = sigterm.recv() => return Err(interrupted("SIGTERM")),
    };
    part.persist(target).with_context(|| {
        format!(
            "could not move the snapshot into place at {}",
            target.display()
        )
    })?;
    sync_dir(&dir)?;
    Ok(Saved {
        file: target.display().to_string(),
        endpoint,
        etcd_version: version,
        sha256,
        size: status.file_size,
        revision: status.revision,
        total_key: status.total_key,
        hash: status.hash,
        key_revisions: status.buckets.get("key").copied().unwrap_or(0),
    })
}

/// The innermost cause of an etcd client error: tonic wraps "connection
/// refused" in a status and three layers of transport errors, and the
/// client's own error type does not expose them as sources.
fn root_cause(e: &etcd_client::Error) -> String {
    let inner: &(dyn std::error::Error + 'static) = match e {
        etcd_client::Error::GRpcStatus(status) => status,
        etcd_client::Error::TransportError(t) => t,
        other => return other.to_string(),
    };
    let mut cur = inner;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let root = cur.to_string();
    match e {
        etcd_client::Error::GRpcStatus(status) if root == status.to_string() => {
            status.message().to_string()
        }
        _ => root,
    }
}

/// A broken snapshot stream as the server or the transport said it: the gRPC status's
/// message, not its debug dump of the transport error chain.
fn stream_error(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(status) => status.message().to_string(),
        other => root_cause(other),
    }
}

/// fsync of a directory, so a rename inside it survives a crash.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("could not fsync {}", dir.display()))
}

/// Reads and checks a snapshot file in bounded memory. The inner error is a
/// refusal: the path is not a usable snapshot, and says why.
pub fn status_of(file: &Path) -> Result<Result<SnapshotStatus, anyhow::Error>> {
    Ok(snapshot::status_of_file(file)
        .with_context(|| format!("{} is not a usable etcd snapshot", file.display())))
}

/// The tool that rewrites a snapshot into a data directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTool {
    pub path: PathBuf,
    /// `etcdutl` (etcd >= 3.5) or `etcdctl` (3.4 and earlier).
    pub kind: String,
    /// Whether it takes `--bump-revision` and `--mark-compacted`.
    pub bumps_revision: bool,
}

/// Finds etcdutl, else etcdctl, on PATH: `snapshot restore` moved to etcdutl
/// in etcd 3.5 and was removed from etcdctl in 3.6 (etcd `CHANGELOG-3.6.md`).
/// For etcdutl, its own help says whether it can bump the revision.
pub fn find_restore_tool() -> Option<RestoreTool> {
    let path = std::env::var_os("PATH")?;
    for kind in ["etcdutl", "etcdctl"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(kind);
            if candidate.is_file() {
                let bumps_revision = kind == "etcdutl"
                    && Command::new(&candidate)
                        .args(["snapshot", "restore", "--help"])
                        .output()
                        .map(|o| {
                            supports_revision_bump(&format!(
                                "{}{}",
                                String::from_utf8_lossy(&o.stdout),
                                String::from_utf8_lossy(&o.stderr)
                            ))
                        })
                        .unwrap_or(false);
                return Some(RestoreTool {
                    path: candidate,
                    kind: kind.into(),
                    bumps_revision,
                });
            }
        }
    }
    None
}

/// Whether `etcdutl snapshot restore --help` lists both flags of
/// etcd-io/etcd#16029 (etcd 3.5.10+, 3.6): older etcdutl lacks them.
pub fn supports_revision_bump(help: &str) -> bool {
    help.contains("--bump-revision") && help.contains("--mark-compacted")
}

/// How far a restore moves the revision forward. Kubernetes' etcd task page
/// (website `docs/tasks/administer-cluster/configure-upgrade-etcd.md`) uses
/// 1,000,000,000: more than any cluster writes between a snapshot and its
/// restore, so every resourceVersion a watcher holds is older than the
/// restored data and, with `--mark-compacted`, answers 410 Gone and relists.
pub const BUMP_REVISION: u64 = 1_000_000_000;

/// Pass-through options of `snapshot restore`.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_cluster_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_advertise_peer_urls: Option<String>,
}

/// The arguments of `etcdutl|etcdctl snapshot restore`.
pub fn restore_args(
    snapshot: &Path,
    data_dir: &Path,
    opts: &RestoreOptions,
    bump_revision: bool,
) -> Vec<String> {
    let mut args = vec![
        "snapshot".to_string(),
        "restore".to_string(),
        snapshot.display().to_string(),
        format!("--data-dir={}", data_dir.display()),
    ];
    if bump_revision {
        args.push(format!("--bump-revision={BUMP_REVISION}"));
        args.push("--mark-compacted".to_string());
    }
    let pairs = [
        ("--name", &opts.name),
        ("--initial-cluster", &opts.initial_cluster),
        ("--initial-cluster-token", &opts.initial_cluster_token),
        (
            "--initial-advertise-peer-urls",
            &opts.initial_advertise_peer_urls,
        ),
    ];
    for (flag, value) in pairs {
        if let Some(v) = value {
            args.push(format!("{flag}={v}"));
        }
    }
    args
}

/// Why a data directory may not be restored into, if it may not: etcd
/// refuses a non-empty one; this refuses any that exists, so a typo can
/// never reuse a live member's directory.
pub fn data_dir_refusal(dir: &Path) -> Option<String> {
    match std::fs::symlink_metadata(dir) {
        Ok(_) => Some(format!(
            "the data directory {} already exists: restore writes only into a new directory; \
             pass a --data-dir that does not exist yet, or move the existing one away first",
            dir.display()
        )),
        Err(_) => None,
    }
}

/// Runs the restore tool; its output becomes the error when it fails.
pub fn run_restore(tool: &RestoreTool, args: &[String]) -> Result<()> {
    let out = Command::new(&tool.path)
        .args(args)
        .env("ETCDCTL_API", "3")
        .output()
        .with_context(|| format!("could not run {}", tool.path.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed ({}):\n{}{}",
            tool.kind,
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The static pod manifests of a kubeadm control plane.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlPlane {
    pub etcd_manifest: PathBuf,
    pub apiserver_manifest: PathBuf,
    /// Where kube-apiserver.yaml waits while etcd is switched: outside the
    /// manifests directory, since the kubelet runs every file inside it.
    pub apiserver_parked: PathBuf,
    /// The copy of etcd.yaml taken before it is edited (also outside).
    pub etcd_backup: PathBuf,
}

impl ControlPlane {
    pub fn new(etcd_manifest: &Path, stamp: &str) -> ControlPlane {
        let manifests = etcd_manifest.parent().unwrap_or(Path::new("."));
        let outside = manifests.parent().unwrap_or(Path::new("."));
        ControlPlane {
            etcd_manifest: etcd_manifest.to_path_buf(),
            apiserver_manifest: manifests.join("kube-apiserver.yaml"),
            apiserver_parked: outside.join("kube-apiserver.yaml.stopped-for-restore"),
            etcd_backup: outside.join(format!("etcd.yaml.before-restore-{stamp}")),
        }
    }
}

/// One step of switching a kubeadm control plane to a restored directory,
/// in the order of the seeds (stop the apiserver, restore, point etcd at the
/// new directory, start the apiserver).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub n: usize,
    pub action: String,
    /// The shell command a person would run for it.
    pub command: String,
    pub done: bool,
}

/// The switch plan (pure): what would be done, and how by hand.
pub fn switch_steps(
    cp: &ControlPlane,
    data_dir: &Path,
    changes: &[Change],
    restore_cmd: &str,
) -> Vec<Step> {
    let mut edit = format!(
        "cp {} {}",
        cp.etcd_manifest.display(),
        cp.etcd_backup.display()
    );
    for c in changes {
        edit.push_str(&format!(
            "\nin {}: {}: {} -> {}",
            cp.etcd_manifest.display(),
            c.field,
            c.from,
            c.to
        ));
    }
    let steps = [
        (
            "stop kube-apiserver (move its static pod manifest out)".to_string(),
            format!(
                "mv {} {}",
                cp.apiserver_manifest.display(),
                cp.apiserver_parked.display()
            ),
        ),
        (
            format!("restore the snapshot into {}", data_dir.display()),
            restore_cmd.to_string(),
        ),
        (
            format!(
                "point etcd at {} (the kubelet restarts it)",
                data_dir.display()
            ),
            edit,
        ),
        (
            "start kube-apiserver again once etcd answers".to_string(),
            format!(
                "mv {} {}",
                cp.apiserver_parked.display(),
                cp.apiserver_manifest.display()
            ),
        ),
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(i, (action, command))| Step {
            n: i + 1,
            action,
            command,
            done: false,
        })
        .collect()
}

/// Writes a file atomically (temporary file beside it, fsync, rename) with `mode`.
pub fn write_atomic(path: &Path, text: &str, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".upkeep-")
        .tempfile_in(dir)
        .with_context(|| format!("could not create a temporary file in {}", dir.display()))?;
    tmp.write_all(text.as_bytes())?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(mode))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("could not replace {}", path.display()))?;
    sync_dir(dir)
}

/// Polls etcd until it answers or `deadline` passes.
pub async fn wait_for_etcd(flags: &EtcdFlags, deadline: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        let last = match flags.connect().await {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if start.elapsed() > deadline {
            return Err(last.context(format!(
                "etcd did not answer within {} after the switch",
                humantime::format_duration(deadline)
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads a manifest and computes the edit for `data_dir`.
pub fn plan_manifest_edit(etcd_manifest: &Path, data_dir: &Path) -> Result<manifest::ManifestEdit> {
    let text = std::fs::read_to_string(etcd_manifest)
        .with_context(|| format!("could not read {}", etcd_manifest.display()))?;
    let new_dir = data_dir
        .to_str()
        .context("the data directory is not valid UTF-8")?;
    manifest::point_at_data_dir(&text, new_dir)
        .with_context(|| format!("could not edit {}", etcd_manifest.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_arguments_pass_through() {
        let args = restore_args(
            Path::new("/backup/snap.db"),
            Path::new("/var/lib/etcd-new"),
            &RestoreOptions {
                name: Some("cp1".into()),
                initial_cluster: Some("cp1=https://10.0.0.1:2380".into()),
                initial_advertise_peer_urls: Some("https://10.0.0.1:2380".into()),
                initial_cluster_token: None,
            },
            false,
        );
        assert_eq!(
            args,
            [
                "snapshot",
                "restore",
                "/backup/snap.db",
                "--data-dir=/var/lib/etcd-new",
                "--name=cp1",
                "--initial-cluster=cp1=https://10.0.0.1:2380",
                "--initial-advertise-peer-urls=https://10.0.0.1:2380",
            ]
        );
    }

    #[test]
    fn the_revision_is_bumped_only_where_etcdutl_can() {
        let old = "      --data-dir string   Path to the output data directory\n      --skip-hash-check\n";
        let new = "      --bump-revision uint   How much to increase the latest revision after restore\n      --mark-compacted   Mark the latest revision after restore as the point of scheduled compaction\n";
        assert!(!supports_revision_bump(old));
        assert!(supports_revision_bump(new));
        let args = restore_args(
            Path::new("/s.db"),
            Path::new("/d"),
            &RestoreOptions::default(),
            true,
        );
        assert_eq!(
            &args[4..],
            ["--bump-revision=1000000000", "--mark-compacted"]
        );
    }

    #[test]
    fn only_one_endpoint_is_accepted() {
        let mut f = EtcdFlags {
            endpoints: "https://a:2379,https://b:2379".into(),
            cacert: DEFAULT_CACERT.into(),
            cert: DEFAULT_CERT.into(),
            key: DEFAULT_KEY.into(),
            dial_timeout: Duration::from_secs(2),
            command_timeout: Duration::from_secs(2),
        };
        assert!(format!("{:#}", f.endpoint().unwrap_err()).contains("one member"));
        f.endpoints = " https://a:2379 ".into();
        assert_eq!(f.endpoint().unwrap(), "https://a:2379");
    }

    #[test]
    fn the_switch_plan_follows_the_seed_order() {
        let cp = ControlPlane::new(
            Path::new("/etc/kubernetes/manifests/etcd.yaml"),
            "20240101T000000Z",
        );
        assert_eq!(
            cp.apiserver_parked,
            Path::new("/etc/kubernetes/kube-apiserver.yaml.stopped-for-restore")
        );
        assert_eq!(
            cp.etcd_backup.parent().unwrap(),
            Path::new("/etc/kubernetes"),
            "the backup copy must not sit in the manifests directory"
        );
        let steps = switch_steps(&cp, Path::new("/var/lib/etcd-new"), &[], "etcdutl ...");
        let actions: Vec<_> = steps.iter().map(|s| s.action.as_str()).collect();
        assert!(actions[0].starts_with("stop kube-apiserver"));
        assert!(actions[1].starts_with("restore"));
        assert!(actions[2].starts_with("point etcd"));
        assert!(actions[3].starts_with("start kube-apiserver"));
    }

    #[test]
    fn targets_are_checked_and_leftovers_found() {
        let dir = tempfile::tempdir().unwrap();
        let why = target_refusal(dir.path()).unwrap();
        assert!(why.contains("is a directory"), "{why}");
        let missing = dir.path().join("no/such/snap.db");
        assert!(target_refusal(&missing).unwrap().contains("does not exist"));
        let target = dir.path().join("snap.db");
        assert!(target_refusal(&target).is_none());
        std::fs::write(dir.path().join(".snap.db.a1b2.part"), "x").unwrap();
        std::fs::write(dir.path().join(".other.db.a1b2.part"), "x").unwrap();
        let parts = stale_parts(&target);
        assert_eq!(parts, [dir.path().join(".snap.db.a1b2.part")]);
    }

    #[test]
    fn existing_data_dirs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            data_dir_refusal(dir.path())
                .unwrap()
                .contains("already exists")
        );
        assert!(data_dir_refusal(&dir.path().join("new")).is_none());
    }
}
