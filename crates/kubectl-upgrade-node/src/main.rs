//! `kubectl upgrade-node NODE --to vX.Y[.Z]`: one node (or a whole cluster,
//! node by node) through the kubeadm upgrade, safely and resumably.
//! CLI definition and glue only; the decisions live in `upkeep::upgrade`.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser as _;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::sync::watch;
use upkeep::connect::{Connection, Retries, parse_request_timeout};
use upkeep::drain::DrainOptions;
use upkeep::output::{self, Outcome, Printer};
use upkeep::upgrade::pod::PodShell;
use upkeep::upgrade::preflight::{Backup, ClusterSnapshot, Finding, Severity};
use upkeep::upgrade::run::{self, ExecSettings, Failure, Progressed, RequestBase};
use upkeep::upgrade::transport::{Local, Manual, RemoteShell, Transport};
use upkeep::upgrade::{NodePlan, Release, Role, TargetSpec, rolling, validate};

use kubectl_upgrade_node::cli::{Cli, Strategy, ViaKind};
use kubectl_upgrade_node::via::Via;

/// The machine-readable result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Report {
    dry_run: bool,
    target: String,
    transport: String,
    outcome: Outcome,
    nodes: Vec<NodeResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    surge: Vec<rolling::SurgeStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
enum NodeStatus {
    Planned,
    UpToDate,
    Upgraded,
    Refused,
    Failed,
    Interrupted,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct NodeResult {
    node: String,
    result: NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<Release>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plan: Option<NodePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failure: Option<Failure>,
}

fn main() -> ExitCode {
    output::init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return output::finish(Err(e.into())),
    };
    let result = runtime.block_on(run_cli(cli));
    // An interrupted `--via manual` prompt may still wait for a line: do not wait for it.
    runtime.shutdown_background();
    output::finish(result)
}

fn duration(flag: &str, text: &str) -> anyhow::Result<Option<Duration>> {
    parse_request_timeout(text).with_context(|| format!("{flag} {text:?}"))
}

async fn run_cli(cli: Cli) -> anyhow::Result<Outcome> {
    let printer = Printer::new(cli.output);
    // A target or node name that does not parse is a refusal: nothing was touched.
    let to = match TargetSpec::parse(&cli.to) {
        Ok(t) => t,
        Err(e) => {
            printer.warn(format!("refused: {e}"));
            return Ok(Outcome::Refused);
        }
    };
    if let Some(node) = &cli.node
        && let Err(e) = validate::node_name(node)
    {
        printer.warn(format!("refused: {e}"));
        return Ok(Outcome::Refused);
    }
    let conn = cli.kube.connect().await?;
    let client = conn.client.clone();
    let transport = build_transport(&cli, &client)?;
    let base = RequestBase {
        manager: cli.package_manager,
        sudo: cli.sudo,
        me: identity(),
        backup: backup_evidence(&cli)?,
        max_backup_age_secs: duration("--backup-max-age", &cli.backup_max_age)?
            .map_or(u64::MAX, |d| d.as_secs()),
    };
    let mut report = Report {
        dry_run: cli.dry_run.enabled(),
        target: to.to_string(),
        transport: transport.describe(),
        outcome: Outcome::Ok,
        nodes: Vec::new(),
        surge: Vec::new(),
    };
    let snap = run::snapshot(&client).await?;
    let names = selected_nodes(&cli, &client, &snap).await?;

    if cli.strategy == Strategy::Surge {
        let target = match to {
            TargetSpec::Exact(r) => r,
            TargetSpec::NewestOf(m) => {
                bail!("--strategy surge needs an exact target: --to {m}.Z")
            }
        };
        let (cps, workers): (Vec<String>, Vec<String>) = names
            .iter()
            .cloned()
            .partition(|n| snap.node(n).is_some_and(|f| f.control_plane));
        report.surge = rolling::surge_plan(&cps, &workers, target, cli.max_surge as usize);
        printer.result(&report, || rolling::render_surge(&report.surge))?;
        return Ok(Outcome::Ok);
    }

    // Interrupts flip this; the run stops at a safe point and says where.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let lock = if cli.dry_run.enabled() {
        None
    } else {
        match run::acquire_lock(&client, &base.me, cli.lock_seconds).await? {
            Ok(lock) => Some(lock),
            Err(holder) => {
                report.outcome = Outcome::Refused;
                for n in &names {
                    report.nodes.push(NodeResult {
                        node: n.clone(),
                        result: NodeStatus::Refused,
                        role: None,
                        target: None,
                        findings: vec![Finding {
                            rule: "upgrade-lock",
                            severity: Severity::Refuse,
                            message: holder.clone(),
                        }],
                        plan: None,
                        failure: None,
                    });
                }
                print_report(&printer, &report)?;
                return Ok(Outcome::Refused);
            }
        }
    };
    let interrupted = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
            eprintln!("interrupting at the next safe point (Ctrl-C again to quit at once)");
            if tokio::signal::ctrl_c().await.is_ok() {
                // The lock then stays until it expires; the node records its progress.
                std::process::exit(130);
            }
        }
    });
    let tracker: Tracker = Arc::default();
    let work = upgrade_all(
        &cli,
        &conn,
        &transport,
        to,
        &base,
        &names,
        &mut report,
        cancel_rx.clone(),
        &tracker,
    );
    // upgrade_all stops at a safe point once cancelled: the read-only probe
    // finishes (and points a repository file back), a running step is dropped.
    let result = work.await;
    interrupted.abort();
    transport.cleanup().await;
    if let Some(lock) = lock {
        lock.release().await;
    }
    if *cancel_rx.borrow() {
        report.outcome = Outcome::Error;
        let mut lines = Vec::new();
        for (node, progressed) in tracker.lock().expect("tracker").iter() {
            let p = progressed.lock().expect("progress").clone();
            let Some(step) = p.current else { continue };
            if let Some(n) = report.nodes.iter_mut().rev().find(|n| &n.node == node) {
                n.result = NodeStatus::Interrupted;
            }
            let done: Vec<&str> = p.done.iter().map(|s| s.as_str()).collect();
            lines.push(format!(
                "interrupted: node {node} during step {step} (done: {}). The completed steps are recorded on the node (annotation {}); it stays cordoned. Run the same command again to resume at {step}.",
                if done.is_empty() { "nothing".to_string() } else { done.join(", ") },
                upkeep::upgrade::PROGRESS_ANNOTATION,
            ));
        }
        if lines.is_empty() {
            let upgraded: Vec<&str> = report
                .nodes
                .iter()
                .filter(|n| n.result == NodeStatus::Upgraded)
                .map(|n| n.node.as_str())
                .collect();
            lines.push(if upgraded.is_empty() {
                "interrupted before any node was changed".to_string()
            } else {
                format!(
                    "interrupted between nodes: upgraded so far: {}. Run the same command again to continue with the rest.",
                    upgraded.join(", ")
                )
            });
        }
        print_report(&printer, &report)?;
        for l in lines {
            printer.warn(l);
        }
        return Ok(Outcome::Error);
    }
    result?;
    print_report(&printer, &report)?;
    Ok(report.outcome)
}

/// The nodes the command is about, by name.
async fn selected_nodes(
    cli: &Cli,
    client: &Client,
    snap: &ClusterSnapshot,
) -> anyhow::Result<Vec<String>> {
    if let Some(node) = &cli.node {
        return Ok(vec![node.clone()]);
    }
    if let Some(sel) = &cli.selector {
        let api: Api<Node> = Api::all(client.clone());
        let list = api
            .list(&ListParams::default().labels(sel))
            .await
            .with_context(|| format!("could not list the nodes matching {sel:?}"))?;
        let names: Vec<String> = list
            .items
            .iter()
            .filter_map(|n| n.metadata.name.clone())
            .collect();
        if names.is_empty() {
            bail!("no node matches the selector {sel:?}");
        }
        return Ok(names);
    }
    Ok(snap.nodes.iter().map(|n| n.name.clone()).collect())
}

fn build_transport(cli: &Cli, client: &Client) -> anyhow::Result<Via> {
    let timeout = duration("--command-timeout", &cli.command_timeout)?;
    Ok(match cli.via {
        ViaKind::Shell => {
            let mut rs = RemoteShell::parse(&cli.remote_shell)?;
            rs.timeout = timeout;
            Via::Shell(rs)
        }
        ViaKind::Pod => Via::Pod(PodShell::new(
            client.clone(),
            cli.pod_image.clone(),
            timeout.unwrap_or(Duration::from_secs(24 * 3600)),
        )),
        ViaKind::Manual => Via::Manual(Manual),
        ViaKind::Local => Via::Local(Local { timeout }),
    })
}

fn backup_evidence(cli: &Cli) -> anyhow::Result<Option<Backup>> {
    let Some(path) = &cli.etcd_backup else {
        return Ok(Some(Backup::Missing));
    };
    let meta = std::fs::metadata(path)
        .with_context(|| format!("--etcd-backup {}: cannot read it", path.display()))?;
    let age = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .map_or(0, |d| d.as_secs());
    Ok(Some(Backup::Found {
        path: path.display().to_string(),
        age_secs: age,
    }))
}

/// Who holds the lock, for the refusal another run prints.
fn identity() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into());
    format!(
        "kubectl upgrade-node, {user}@{host}, pid {}",
        std::process::id()
    )
}

/// Each running node's progress, for the interrupt message.
type Tracker = Arc<Mutex<Vec<(String, Arc<Mutex<Progressed>>)>>>;

#[allow(clippy::too_many_arguments)]
async fn upgrade_all(
    cli: &Cli,
    conn: &Connection,
    transport: &Via,
    to: TargetSpec,
    base: &RequestBase,
    names: &[String],
    report: &mut Report,
    cancel: watch::Receiver<bool>,
    tracker: &Tracker,
) -> anyhow::Result<()> {
    let printer = Printer::new(cli.output);
    let client = &conn.client;
    let snap = run::snapshot(client).await?;
    let facts: Vec<_> = names.iter().filter_map(|n| snap.node(n)).collect();
    let waves = if names.len() == 1 {
        vec![names.to_vec()]
    } else {
        let max = if matches!(transport, Via::Manual(_)) {
            1
        } else {
            cli.max_unavailable as usize
        };
        rolling::waves(&facts, max)
    };
    let settings = ExecSettings {
        drain_client: conn.client_with(Retries::Explicit)?,
        drain: drain_options(cli, Vec::new()),
        drain_timeout: duration("--drain-timeout", &cli.drain_timeout)?,
        ready_timeout: duration("--ready-timeout", &cli.ready_timeout)?
            .unwrap_or(Duration::from_secs(600)),
        cancel: Some(cancel.clone()),
    };
    // Dry runs and the up-front check see the cluster as it will be once
    // the nodes before them are done.
    let mut projected = snap.clone();
    let mut changed_any = false;
    for wave in &waves {
        // Preflight every node of the wave before touching any of them.
        let mut ready = Vec::new();
        for name in wave {
            if *cancel.borrow() {
                return Ok(());
            }
            let live = if cli.dry_run.enabled() {
                projected.clone()
            } else {
                run::snapshot(client).await?
            };
            let req = run::request(name, to, base);
            let also: Vec<String> = wave.iter().filter(|n| *n != name).cloned().collect();
            let prepared =
                run::prepare(client, transport, &live, &req, &drain_options(cli, also)).await?;
            let r = &prepared.report;
            let mut result = NodeResult {
                node: name.clone(),
                result: NodeStatus::Planned,
                role: r.role,
                target: r.target.or(prepared.plan.as_ref().map(|p| p.target)),
                findings: r.findings.clone(),
                plan: prepared.plan.clone(),
                failure: None,
            };
            if r.refused() {
                result.result = NodeStatus::Refused;
                result.plan = None;
                report.nodes.push(result);
                report.outcome = if changed_any {
                    Outcome::Error
                } else {
                    Outcome::Refused
                };
                if changed_any {
                    printer.warn(format!(
                        "stopping: node {name} is refused after other nodes were upgraded (see above)"
                    ));
                }
                return Ok(());
            }
            if r.nothing_to_do {
                result.result = NodeStatus::UpToDate;
                printer.note(format!("node {name} already runs {to}: nothing to do"));
                report.nodes.push(result);
                continue;
            }
            let plan = prepared.plan.expect("a plan when not refused");
            // A dry run, and the plan shown before the question, carry the warnings.
            if cli.yes && !cli.dry_run.enabled() {
                for w in &plan.warnings {
                    printer.warn(w);
                }
            }
            projected = project(&projected, &plan);
            ready.push(plan);
            report.nodes.push(result);
        }
        if cli.dry_run.enabled() || ready.is_empty() {
            continue;
        }
        if !cli.yes {
            for plan in &ready {
                anstream_eprint(&plan.render());
            }
            let names: Vec<&str> = ready.iter().map(|p| p.node.as_str()).collect();
            let question = format!("Upgrade {} now?", names.join(", "));
            if !output::confirm(&question, false)? {
                printer.warn("not confirmed: nothing was changed on these nodes");
                report.outcome = Outcome::Refused;
                return Ok(());
            }
        }
        if *cancel.borrow() {
            return Ok(());
        }
        changed_any = true;
        let runs = ready.iter().map(|plan| {
            let facts = snap.node(&plan.node).cloned().unwrap_or_default();
            let target = run::node_target(&facts);
            let progressed = Arc::new(Mutex::new(Progressed::default()));
            tracker
                .lock()
                .expect("tracker")
                .push((plan.node.clone(), progressed.clone()));
            let settings = settings.clone();
            async move {
                let say = move |line: String| printer.note(line);
                let r = run::execute(
                    client,
                    transport,
                    plan,
                    &target,
                    &settings,
                    &progressed,
                    &say,
                )
                .await;
                (plan.node.clone(), r)
            }
        });
        let mut cancelled = cancel.clone();
        let results = tokio::select! {
            r = futures::future::join_all(runs) => r,
            _ = cancelled.wait_for(|c| *c) => return Ok(()),
        };
        let mut failed = false;
        for (node, r) in results {
            let entry = report
                .nodes
                .iter_mut()
                .rev()
                .find(|n| n.node == node)
                .expect("entry");
            match r {
                Ok(()) => {
                    entry.result = NodeStatus::Upgraded;
                    printer.note(format!(
                        "node {node} upgraded to {}",
                        entry.target.map_or_else(String::new, |t| t.to_string())
                    ));
                }
                Err(f) => {
                    eprintln!("error: {}", f.render());
                    entry.result = NodeStatus::Failed;
                    entry.failure = Some(f);
                    failed = true;
                }
            }
        }
        if failed {
            report.outcome = Outcome::Error;
            return Ok(());
        }
    }
    Ok(())
}

fn anstream_eprint(text: &str) {
    use std::io::Write as _;
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
}

/// The snapshot as it will be once `plan` is done.
fn project(snap: &ClusterSnapshot, plan: &NodePlan) -> ClusterSnapshot {
    snap.with_node_upgraded(&plan.node, plan.target)
}

fn drain_options(cli: &Cli, also_leaving: Vec<String>) -> DrainOptions {
    DrainOptions {
        delete_emptydir_data: cli.delete_emptydir_data,
        delete_unmanaged: cli.delete_unmanaged,
        wait_for_pdb: cli.wait_for_pdb,
        no_downtime: cli.no_downtime,
        also_leaving,
    }
}

fn print_report(printer: &Printer, report: &Report) -> anyhow::Result<()> {
    printer.result(report, || human(report))
}

fn human(report: &Report) -> String {
    let mut out = String::new();
    if report.dry_run {
        for n in &report.nodes {
            match (&n.plan, n.result) {
                (Some(plan), _) => {
                    out.push_str(&plan.render());
                    out.push('\n');
                }
                (None, NodeStatus::UpToDate) => out.push_str(&format!(
                    "node {}: already at {}, nothing to do\n\n",
                    n.node, report.target
                )),
                _ => {}
            }
        }
    }
    for n in &report.nodes {
        if n.result == NodeStatus::Refused {
            out.push_str(&format!(
                "upgrade of node {} to {} refused (nothing changed):\n",
                n.node, report.target
            ));
            for f in n.findings.iter().filter(|f| f.severity == Severity::Refuse) {
                out.push_str(&format!(
                    "  - [{}] {}\n",
                    f.rule,
                    f.message.replace('\n', "\n    ")
                ));
            }
        }
    }
    if !report.dry_run && report.nodes.iter().any(|n| n.result != NodeStatus::Refused) {
        let mut t = output::table(["NODE", "ROLE", "TARGET", "RESULT"]);
        for n in &report.nodes {
            t.add_row([
                n.node.clone(),
                match n.role {
                    Some(Role::FirstControlPlane) => "control-plane (apply)".to_string(),
                    Some(Role::ControlPlane) => "control-plane".to_string(),
                    Some(Role::Worker) => "worker".to_string(),
                    None => "-".to_string(),
                },
                n.target.map_or_else(|| "-".to_string(), |t| t.to_string()),
                serde_json::to_value(n.result)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            ]);
        }
        out.push_str(&output::render(&t));
    }
    out
}
