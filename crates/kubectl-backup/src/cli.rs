//! The command line: clap definitions and the glue from each subcommand to
//! the modules that do the work.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;
use upkeep::cli::OutputArgs;
use upkeep::connect::KubeFlags;
use upkeep::output::{self, Outcome, Printer};

use crate::etcd::{self, EtcdFlags, RestoreOptions};
use crate::export::{self, ExportOptions};
use crate::import;
use crate::manifest::Change;
use crate::snapshot::{Integrity, SnapshotStatus};

const AFTER_HELP: &str = "\
Examples:
  # Save a snapshot on a kubeadm control plane (kubeadm's etcd certificates are the defaults)
  sudo kubectl backup etcd save /var/backups/etcd-$(date +%F).db

  # Check a snapshot: integrity, revision, keys, size
  kubectl backup etcd status /var/backups/etcd-2024-05-01.db

  # Restore into a new data directory and switch the etcd static pod to it
  sudo kubectl backup etcd restore /var/backups/etcd-2024-05-01.db \\
      --data-dir /var/lib/etcd-from-backup --apply

  # Export every listable object of every API group as YAML files
  kubectl backup resources ./cluster-backup

Exit status: 0 done; 1 refused (nothing changed: a corrupted snapshot, an existing
data directory, a non-empty export directory); 2 error (unreachable etcd, a failed
request, an export that missed some resource types).";

/// Backups you can trust: etcd snapshots (save, check, restore) and a full
/// export of the cluster's objects.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-backup",
    bin_name = "kubectl backup",
    version,
    after_help = AFTER_HELP
)]
pub struct Cli {
    #[command(flatten)]
    pub out: OutputArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// etcd snapshots through etcd's Maintenance API
    #[command(
        subcommand,
        after_help = "\
Examples:
  sudo kubectl backup etcd save /var/backups/etcd.db
  kubectl backup etcd status /var/backups/etcd.db
  sudo kubectl backup etcd restore /var/backups/etcd.db \\
      --data-dir /var/lib/etcd-from-backup"
    )]
    Etcd(EtcdCommand),
    /// Export every listable object of every API group, one YAML file each
    #[command(after_help = "\
Examples:
  # Everything but Secrets
  kubectl backup resources ./cluster-backup

  # Secrets too (their files get mode 0600)
  kubectl backup resources ./cluster-backup --include-secrets

  # Into an existing export directory
  kubectl backup resources ./cluster-backup --overwrite

Layout: DIR/<group>/<Kind>/<namespace>/<name>.yaml (the core group as \"core\",
cluster-scoped objects under \"_cluster\"), and DIR/index.json listing what was
exported per kind, what was skipped and what failed (e.g. 403 Forbidden).")]
    Resources(ResourcesArgs),
}

#[derive(Debug, Subcommand)]
pub enum EtcdCommand {
    /// Stream a snapshot from one etcd member into FILE (mode 0600, written atomically)
    #[command(after_help = "\
Examples:
  # On a kubeadm control plane: the defaults are kubeadm's certificates and https://127.0.0.1:2379
  sudo kubectl backup etcd save /var/backups/etcd.db

  # Another member, other certificates
  kubectl backup etcd save snap.db --endpoints https://10.0.0.11:2379 \\
    --cacert ca.crt --cert client.crt --key client.key

The file is etcd's database followed by its sha256, exactly what etcdctl writes;
the checksum etcd sends is verified before the file is moved into place.")]
    Save(SaveArgs),
    /// Check a snapshot file: integrity, hash, revision, keys, size (as etcdutl snapshot status)
    #[command(after_help = "\
Examples:
  kubectl backup etcd status /var/backups/etcd.db
  kubectl backup etcd status /var/backups/etcd.db -o json

hash, revision, totalKey and totalSize are computed exactly as `etcdutl snapshot
status` computes them; a corrupted file exits 1.")]
    Status(StatusArgs),
    /// Restore a snapshot into a new data directory (and switch a kubeadm etcd to it)
    #[command(after_help = "\
Examples:
  # Restore, and print how to switch the kubeadm etcd static pod to the new directory
  sudo kubectl backup etcd restore /var/backups/etcd.db \\
      --data-dir /var/lib/etcd-from-backup

  # Restore and switch: stop kube-apiserver, restore, point etcd at the new
  # directory, wait for etcd, start kube-apiserver
  sudo kubectl backup etcd restore /var/backups/etcd.db \\
      --data-dir /var/lib/etcd-from-backup --apply

The database rewrite is done by the installed etcdutl (etcd >= 3.5) or else
etcdctl. The snapshot is verified first; an existing data directory is refused.")]
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct SaveArgs {
    /// Where to write the snapshot
    pub file: PathBuf,
    /// Remove temporary `.FILE.*.part` files a killed save left beside FILE
    /// (they are reported either way)
    #[arg(long)]
    pub remove_stale_parts: bool,
    #[command(flatten)]
    pub etcd: EtcdFlags,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The snapshot file
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The snapshot file
    pub file: PathBuf,
    /// The new data directory (must not exist)
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
    /// Member name for the restored cluster (passed through)
    #[arg(long)]
    pub name: Option<String>,
    /// Initial cluster configuration, e.g. cp1=https://10.0.0.10:2380 (passed through)
    #[arg(long, value_name = "NAME=URL,...")]
    pub initial_cluster: Option<String>,
    /// Initial cluster token (passed through)
    #[arg(long, value_name = "TOKEN")]
    pub initial_cluster_token: Option<String>,
    /// This member's peer URLs (passed through)
    #[arg(long, value_name = "URLS")]
    pub initial_advertise_peer_urls: Option<String>,
    /// The etcd static pod manifest of a kubeadm control plane
    #[arg(
        long,
        value_name = "PATH",
        default_value = "/etc/kubernetes/manifests/etcd.yaml"
    )]
    pub manifest: PathBuf,
    /// Also switch the control plane: stop kube-apiserver, restore, edit etcd.yaml, start kube-apiserver
    #[arg(long)]
    pub apply: bool,
    /// With --apply: how long to wait for etcd to answer before starting kube-apiserver ("0" skips waiting)
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = parse_wait)]
    pub wait_timeout: Duration,
    #[command(flatten)]
    pub etcd: EtcdFlags,
}

fn parse_wait(text: &str) -> Result<Duration, humantime::DurationError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text)
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ResourcesArgs {
    #[command(subcommand)]
    pub action: Option<ResourcesAction>,
    /// The directory to write into (created; must be empty unless --overwrite)
    #[arg(required = true)]
    pub dir: Option<PathBuf>,
    /// Export Secrets too (their files get mode 0600)
    #[arg(long)]
    pub include_secrets: bool,
    /// Write into a non-empty directory
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub kube: KubeFlags,
}

/// Bytes as people read them (SI units, as etcdutl's table prints sizes).
#[derive(Debug, Subcommand)]
pub enum ResourcesAction {
    /// Apply an export back: a server-side dry run of every object first,
    /// then namespaces and cluster-scoped types before namespaced objects
    #[command(after_help = "\
Examples:
  # Into a new or emptied cluster: existing objects are left alone
  kubectl backup resources restore ./cluster-backup

  # Replace objects that exist with the exported ones
  kubectl backup resources restore ./cluster-backup --overwrite

Objects a controller recreates (pods of a ReplicaSet, ReplicaSets of a
Deployment, Endpoints, EndpointSlices) are left to it; Nodes and Events are not
restored. The report counts, per kind, what was created, skipped, overwritten,
left to controllers, not restorable and refused. Exit status 2 if the server
refused any object.")]
    Restore(ResourcesRestoreArgs),
}

#[derive(Debug, Args)]
pub struct ResourcesRestoreArgs {
    /// An export written by `kubectl backup resources DIR`
    pub dir: PathBuf,
    /// Replace objects that already exist (otherwise they are skipped)
    #[arg(long)]
    pub overwrite: bool,
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[unit])
    } else {
        format!("{value:.0} {}", UNITS[unit])
    }
}

/// Prints a refusal (nothing was changed) and returns exit status 1.
fn refuse(message: impl AsRef<str>) -> Outcome {
    Printer::new(upkeep::output::OutputFormat::Table).refuse(message);
    Outcome::Refused
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> Result<Outcome> {
    let printer = cli.out.printer();
    match cli.command {
        Command::Etcd(EtcdCommand::Save(args)) => save(args, &printer).await,
        Command::Etcd(EtcdCommand::Status(args)) => status(args, &printer),
        Command::Etcd(EtcdCommand::Restore(args)) => restore(args, &printer).await,
        Command::Resources(args) => resources(args, &printer).await,
    }
}

async fn save(args: SaveArgs, printer: &Printer) -> Result<Outcome> {
    if let Some(why) = etcd::target_refusal(&args.file) {
        return Ok(refuse(format!("{why}; nothing was saved")));
    }
    for part in etcd::stale_parts(&args.file) {
        if args.remove_stale_parts {
            std::fs::remove_file(&part)
                .with_context(|| format!("could not remove {}", part.display()))?;
            printer.note(format!(
                "removed {}, left by an earlier save",
                part.display()
            ));
        } else {
            printer.warn(format!(
                "{} was left by an earlier save that was killed or is still running; \
                 remove it, or pass --remove-stale-parts",
                part.display()
            ));
        }
    }
    let bar = printer.progress(0, &format!("saving a snapshot to {}", args.file.display()));
    let saved = etcd::save(&args.etcd, &args.file, |received, total| {
        bar.set_length(total);
        bar.set_position(received);
    })
    .await;
    bar.finish_and_clear();
    let saved = saved?;
    printer.result(&saved, || {
        let mut t = output::table(["FILE", "SIZE", "REVISION", "TOTAL KEYS", "HASH"]);
        t.add_row([
            saved.file.clone(),
            human_bytes(saved.size),
            saved.revision.to_string(),
            saved.total_key.to_string(),
            format!("{:x}", saved.hash),
        ]);
        format!(
            "{}Snapshot saved from {} (etcd {}); sha256 {} verified; mode 0600.\n",
            output::render(&t),
            saved.endpoint,
            if saved.etcd_version.is_empty() {
                "?"
            } else {
                &saved.etcd_version
            },
            saved.sha256
        )
    })?;
    Ok(Outcome::Ok)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusReport<'a> {
    file: String,
    #[serde(flatten)]
    status: &'a SnapshotStatus,
}

fn integrity_text(i: &Integrity) -> String {
    match i {
        Integrity::Verified { sha256 } => format!("sha256 ok ({})", &sha256[..12]),
        Integrity::NoChecksum => "no sha256 appended (a copied db file?)".into(),
    }
}

fn status(args: StatusArgs, printer: &Printer) -> Result<Outcome> {
    let st = match etcd::status_of(&args.file)? {
        Ok(st) => st,
        Err(e) => return Ok(refuse(format!("{e:#}"))),
    };
    let report = StatusReport {
        file: args.file.display().to_string(),
        status: &st,
    };
    printer.result(&report, || {
        let mut t = output::table(["HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "INTEGRITY"]);
        t.add_row([
            format!("{:x}", st.hash),
            st.revision.to_string(),
            st.total_key.to_string(),
            human_bytes(st.total_size),
            integrity_text(&st.integrity),
        ]);
        output::render(&t)
    })?;
    Ok(Outcome::Ok)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct RestoreReport {
    snapshot: String,
    data_dir: String,
    tool: String,
    /// `--bump-revision --mark-compacted` were passed (etcd-io/etcd#16029).
    revision_bumped: bool,
    command: String,
    status: SnapshotStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    control_plane: Option<ControlPlaneReport>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ControlPlaneReport {
    #[serde(flatten)]
    paths: etcd::ControlPlane,
    changes: Vec<Change>,
    applied: bool,
    steps: Vec<etcd::Step>,
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("could not read the current directory")?
            .join(path))
    }
}

async fn restore(args: RestoreArgs, printer: &Printer) -> Result<Outcome> {
    // 1. The snapshot must check out before anything is touched.
    let st = match etcd::status_of(&args.file)? {
        Ok(st) => st,
        Err(e) => {
            return Ok(refuse(format!(
                "{e:#}\nnothing was restored; use another snapshot"
            )));
        }
    };
    if st.integrity == Integrity::NoChecksum {
        return Ok(refuse(format!(
            "{} has no appended sha256, so its integrity cannot be verified; \
             take a snapshot with `kubectl backup etcd save` (or etcdctl snapshot save)",
            args.file.display()
        )));
    }
    let data_dir = absolute(&args.data_dir)?;
    if let Some(why) = etcd::data_dir_refusal(&data_dir) {
        return Ok(refuse(why));
    }
    let tool = etcd::find_restore_tool().context(
        "neither etcdutl nor etcdctl is on PATH: install etcd's tools \
         (Debian/Ubuntu: apt-get install etcd-client; or the etcd release archive)",
    )?;
    let opts = RestoreOptions {
        name: args.name.clone(),
        initial_cluster: args.initial_cluster.clone(),
        initial_cluster_token: args.initial_cluster_token.clone(),
        initial_advertise_peer_urls: args.initial_advertise_peer_urls.clone(),
    };
    let snapshot_path = absolute(&args.file)?;
    let restore_args = etcd::restore_args(&snapshot_path, &data_dir, &opts, tool.bumps_revision);
    let command = format!("{} {}", tool.path.display(), restore_args.join(" "));

    // 2. A kubeadm control plane? Plan the manifest edit before acting.
    let kubeadm = args.manifest.exists();
    if args.apply && !kubeadm {
        return Ok(refuse(format!(
            "--apply needs the etcd static pod manifest, and {} does not exist \
             (pass --manifest PATH; without a kubeadm control plane, restore without --apply)",
            args.manifest.display()
        )));
    }
    let plan = if kubeadm {
        let edit = etcd::plan_manifest_edit(&args.manifest, &data_dir)?;
        let stamp = jiff::Timestamp::now()
            .strftime("%Y%m%dT%H%M%SZ")
            .to_string();
        let cp = etcd::ControlPlane::new(&args.manifest, &stamp);
        Some((cp, edit))
    } else {
        None
    };

    let mut control_plane = None;
    if let (Some((cp, edit)), true) = (&plan, args.apply) {
        let mut steps = etcd::switch_steps(cp, &data_dir, &edit.changes, &command);
        // Step 1: stop kube-apiserver.
        let parked = if cp.apiserver_manifest.exists() {
            printer.note(format!("1. {}", steps[0].command));
            std::fs::rename(&cp.apiserver_manifest, &cp.apiserver_parked).with_context(|| {
                format!(
                    "could not move {} out of the manifests directory",
                    cp.apiserver_manifest.display()
                )
            })?;
            steps[0].done = true;
            true
        } else {
            printer.warn(format!(
                "{} not found: kube-apiserver is not stopped",
                cp.apiserver_manifest.display()
            ));
            false
        };
        let bring_back = |steps: &mut Vec<etcd::Step>| -> Result<()> {
            if parked {
                std::fs::rename(&cp.apiserver_parked, &cp.apiserver_manifest).with_context(
                    || {
                        format!(
                            "could not move {} back to {}: do it by hand",
                            cp.apiserver_parked.display(),
                            cp.apiserver_manifest.display()
                        )
                    },
                )?;
                steps[3].done = true;
            }
            Ok(())
        };
        // Step 2: restore.
        printer.note(format!("2. {command}"));
        if let Err(e) = etcd::run_restore(&tool, &restore_args) {
            bring_back(&mut steps)?;
            return Err(e.context("the restore failed; kube-apiserver was started again"));
        }
        steps[1].done = true;
        // Step 3: back up and edit etcd.yaml.
        printer.note(format!("3. {}", steps[2].command.replace('\n', "\n   ")));
        let switched = std::fs::copy(&cp.etcd_manifest, &cp.etcd_backup)
            .with_context(|| format!("could not back up {}", cp.etcd_manifest.display()))
            .and_then(|_| etcd::write_atomic(&cp.etcd_manifest, &edit.text, 0o600));
        if let Err(e) = switched {
            bring_back(&mut steps)?;
            return Err(e.context(format!(
                "etcd still runs on its old data directory and kube-apiserver was started again; \
                 the restored data is in {}",
                data_dir.display()
            )));
        }
        steps[2].done = true;
        // Step 4: wait for etcd, then start kube-apiserver.
        if !args.wait_timeout.is_zero() {
            let spinner = printer.spinner("waiting for etcd to answer on the restored data");
            let waited = etcd::wait_for_etcd(&args.etcd, args.wait_timeout).await;
            spinner.finish_and_clear();
            if let Err(e) = waited {
                printer.warn(format!(
                    "{e:#}; starting kube-apiserver anyway (check `crictl ps` and the etcd pod's logs)"
                ));
            }
        }
        printer.note(format!("4. {}", steps[3].command));
        bring_back(&mut steps)?;
        control_plane = Some(ControlPlaneReport {
            paths: cp.clone(),
            changes: edit.changes.clone(),
            applied: true,
            steps,
        });
    } else {
        etcd::run_restore(&tool, &restore_args)?;
        if let Some((cp, edit)) = &plan {
            let mut steps = etcd::switch_steps(cp, &data_dir, &edit.changes, &command);
            steps[1].done = true;
            control_plane = Some(ControlPlaneReport {
                paths: cp.clone(),
                changes: edit.changes.clone(),
                applied: false,
                steps,
            });
        }
    }

    let report = RestoreReport {
        snapshot: snapshot_path.display().to_string(),
        data_dir: data_dir.display().to_string(),
        tool: tool.kind.clone(),
        revision_bumped: tool.bumps_revision,
        command,
        status: st,
        control_plane,
    };
    printer.result(&report, || restore_text(&report, &args.manifest))?;
    Ok(Outcome::Ok)
}

fn restore_text(r: &RestoreReport, manifest: &Path) -> String {
    let mut out = format!(
        "Restored {} into {} with {} (revision {}, {} keys).\n",
        r.snapshot, r.data_dir, r.tool, r.status.revision, r.status.total_key
    );
    match &r.control_plane {
        Some(cp) if cp.applied => {
            out.push_str(&format!(
                "Switched the control plane: {} now uses {} (previous manifest kept at {}).\n",
                cp.paths.etcd_manifest.display(),
                r.data_dir,
                cp.paths.etcd_backup.display()
            ));
            for s in &cp.steps {
                out.push_str(&format!(
                    "  {}. [{}] {}\n",
                    s.n,
                    if s.done { "done" } else { "skipped" },
                    s.action
                ));
            }
        }
        Some(cp) => {
            out.push_str(
                "To switch this kubeadm control plane to it, in this order (or re-run with --apply \
                 and a new --data-dir):\n",
            );
            for s in &cp.steps {
                let mark = if s.done { " (done)" } else { "" };
                out.push_str(&format!("  {}. {}{mark}\n", s.n, s.action));
                for line in s.command.lines() {
                    out.push_str(&format!("     {line}\n"));
                }
            }
        }
        None => out.push_str(&format!(
            "No kubeadm manifest at {}: point etcd at the new directory yourself, in this order:\n  \
             1. stop kube-apiserver (systemctl stop kube-apiserver)\n  \
             2. set --data-dir={} for etcd (e.g. in etcd.service's ExecStart)\n  \
             3. systemctl daemon-reload && systemctl restart etcd\n  \
             4. once etcd answers: systemctl start kube-apiserver\n",
            manifest.display(),
            r.data_dir
        )),
    }
    out
}

async fn resources_restore(
    args: ResourcesRestoreArgs,
    kube: &KubeFlags,
    printer: &Printer,
) -> Result<Outcome> {
    if !args.dir.join("index.json").is_file() {
        return Ok(refuse(format!(
            "{} is not an export: it has no index.json (write one with `kubectl backup resources DIR`)",
            args.dir.display()
        )));
    }
    let conn = kube.connect().await?;
    let report = import::restore(
        &conn.client,
        &conn.server,
        &args.dir,
        args.overwrite,
        printer,
    )
    .await?;
    printer.result(&report, || {
        let mut t = output::table([
            "RESOURCE",
            "KIND",
            "CREATED",
            "SKIPPED",
            "OVERWRITTEN",
            "LEFT TO CONTROLLERS",
            "NOT RESTORABLE",
            "REFUSED",
        ]);
        for k in &report.kinds {
            t.add_row([
                k.resource.clone(),
                k.kind.clone(),
                k.created.to_string(),
                k.skipped.to_string(),
                k.overwritten.to_string(),
                k.left_to_controllers.to_string(),
                k.not_restorable.to_string(),
                k.refused.to_string(),
            ]);
        }
        let mut out = output::render(&t);
        let sum = |f: fn(&import::KindCounts) -> usize| report.kinds.iter().map(f).sum::<usize>();
        out.push_str(&format!(
            "Restored {} into {}: {} created, {} skipped (already there), {} overwritten, \
             {} left to controllers, {} not restorable, {} refused.\n",
            report.directory,
            report.server,
            sum(|k| k.created),
            sum(|k| k.skipped),
            sum(|k| k.overwritten),
            sum(|k| k.left_to_controllers),
            sum(|k| k.not_restorable),
            sum(|k| k.refused),
        ));
        for (why, n) in &report.left {
            out.push_str(&format!("Not restored: {why} ({n})\n"));
        }
        for r in &report.refused {
            out.push_str(&format!(
                "Refused {}{}: {} ({})\n",
                r.object,
                r.code.map(|c| format!(" ({c})")).unwrap_or_default(),
                r.reason,
                r.file
            ));
        }
        out
    })?;
    Ok(if report.refused.is_empty() {
        Outcome::Ok
    } else {
        Outcome::Error
    })
}

async fn resources(args: ResourcesArgs, printer: &Printer) -> Result<Outcome> {
    let dir = match args.action {
        Some(ResourcesAction::Restore(r)) => {
            return resources_restore(r, &args.kube, printer).await;
        }
        None => args
            .dir
            .context("name the export directory: kubectl backup resources DIR")?,
    };
    if let Some(why) = export::directory_refusal(&dir, args.overwrite)? {
        return Ok(refuse(why));
    }
    let conn = args.kube.connect().await?;
    let opts = ExportOptions {
        dir: dir.clone(),
        include_secrets: args.include_secrets,
        overwrite: args.overwrite,
    };
    let index = export::export(&conn.client, &conn.server, &conn.context, &opts, printer).await?;
    printer.result(&index, || {
        let mut t = output::table(["RESOURCE", "KIND", "OBJECTS"]);
        for e in index.exported.iter().filter(|e| e.count > 0) {
            t.add_row([
                e.resource.display(),
                e.resource.kind.clone(),
                e.count.to_string(),
            ]);
        }
        let mut out = output::render(&t);
        out.push_str(&format!(
            "Exported {} objects of {} kinds to {} (index.json lists them).\n",
            index.total_objects,
            index.exported.iter().filter(|e| e.count > 0).count(),
            index.directory
        ));
        for s in &index.skipped {
            out.push_str(&format!("Skipped {}: {}\n", s.resource.display(), s.reason));
        }
        for f in &index.failed {
            out.push_str(&format!(
                "Could not export {}{}: {}\n",
                f.what,
                f.code.map(|c| format!(" ({c})")).unwrap_or_default(),
                f.error
            ));
        }
        out
    })?;
    if index.failed.is_empty() {
        Ok(Outcome::Ok)
    } else {
        let n = index.failed.len();
        printer.warn(format!(
            "{n} resource {} could not be exported (see {}/index.json)",
            if n == 1 { "type" } else { "types" },
            index.directory
        ));
        Ok(Outcome::Error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_reads_as_a_kubectl_plugin() {
        let mut cmd = Cli::command();
        let help = cmd.render_help().to_string();
        assert!(help.contains("Usage: kubectl backup"), "{help}");
        for sub in ["etcd", "resources"] {
            let mut c = Cli::command();
            c.build();
            let s = c.find_subcommand_mut(sub).unwrap();
            let text = s.render_long_help().to_string();
            assert!(text.contains("Examples:"), "{sub}: {text}");
            assert!(
                text.contains(&format!("Usage: kubectl backup {sub}")),
                "{text}"
            );
        }
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_read_like_etcdutl() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(20_480), "20 kB");
        assert_eq!(human_bytes(2_500_000), "2.5 MB");
    }

    #[test]
    fn wait_accepts_zero() {
        assert_eq!(parse_wait("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_wait("2m").unwrap(), Duration::from_secs(120));
    }
}
