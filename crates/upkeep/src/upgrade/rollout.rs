//! One node, or a whole cluster node by node: take the cluster lock, run the
//! waves (control-plane nodes one at a time, then workers), preflight each
//! wave before touching it, ask, execute, and on Ctrl-C say exactly where the
//! run stopped and how to resume.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::sync::watch;

use super::plan::{NodePlan, PROGRESS_ANNOTATION, Role, StepId};
use super::preflight::{Backup, ClusterSnapshot, Finding, Severity};
use super::rolling;
use super::run::{self, ExecSettings, Failure, Progressed, RequestBase};
use super::target::TargetSpec;
use super::transport::Transport;
use super::via::Via;
use crate::connect::{Connection, Retries};
use crate::drain::DrainOptions;
use crate::output::{self, Outcome, Printer};
use crate::version::Release;

/// Which nodes, in what manner.
#[derive(Debug, Clone)]
pub struct RolloutOptions {
    pub to: TargetSpec,
    /// One node by name; else `selector`; else every node.
    pub node: Option<String>,
    pub selector: Option<String>,
    /// How many workers at once.
    pub max_unavailable: usize,
    /// `--strategy surge`: print the replace-nodes plan, `max_surge` new nodes at a time.
    pub surge: Option<usize>,
    pub dry_run: bool,
    pub yes: bool,
    pub base: RequestBase,
    /// The drain rules; the nodes leaving with each node are filled in per wave.
    pub drain: DrainOptions,
    /// How the drain's evictions run (`--grace-period`, `--concurrency`).
    pub evictions: crate::drain::ExecOptions,
    pub drain_timeout: Option<Duration>,
    pub ready_timeout: Duration,
    /// Seconds the cluster lock lasts without renewal.
    pub lock_seconds: i32,
}

/// The machine-readable result.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub dry_run: bool,
    pub target: String,
    pub transport: String,
    pub outcome: Outcome,
    pub nodes: Vec<NodeResult>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub surge: Vec<rolling::SurgeStep>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeStatus {
    Planned,
    UpToDate,
    Upgraded,
    Refused,
    Failed,
    Interrupted,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeResult {
    pub node: String,
    pub result: NodeStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Release>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<NodePlan>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
}

/// Runs the upgrade and prints its report; the outcome is the exit code.
pub async fn run(
    conn: &Connection,
    transport: &Via,
    opts: &RolloutOptions,
    printer: &Printer,
) -> anyhow::Result<Outcome> {
    let client = conn.client.clone();
    let mut report = Report {
        dry_run: opts.dry_run,
        target: opts.to.to_string(),
        transport: transport.describe(),
        outcome: Outcome::Ok,
        nodes: Vec::new(),
        surge: Vec::new(),
    };
    let snap = run::snapshot(&client).await?;
    let names = selected_nodes(opts, &client, &snap).await?;

    if let Some(max_surge) = opts.surge {
        let target = match opts.to {
            TargetSpec::Exact(r) => r,
            TargetSpec::NewestOf(m) => {
                bail!("--strategy surge needs an exact target: --to {m}.Z")
            }
        };
        let (cps, workers): (Vec<String>, Vec<String>) = names
            .iter()
            .cloned()
            .partition(|n| snap.node(n).is_some_and(|f| f.control_plane));
        report.surge = rolling::surge_plan(&cps, &workers, target, max_surge);
        printer.result(&report, || rolling::render_surge(&report.surge))?;
        return Ok(Outcome::Ok);
    }

    // Interrupts flip this; the run stops at a safe point and says where.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    let lock = if opts.dry_run {
        None
    } else {
        match run::acquire_lock(&client, &opts.base.me, opts.lock_seconds).await? {
            Ok(lock) => {
                if let Some(note) = &lock.took_over {
                    printer.note(note);
                }
                Some(lock)
            }
            Err(holder) => {
                report.outcome = Outcome::Refused;
                report.nodes = names
                    .iter()
                    .map(|n| NodeResult {
                        node: n.clone(),
                        result: NodeStatus::Refused,
                        role: None,
                        target: None,
                        findings: vec![Finding::new(
                            "upgrade-lock",
                            Severity::Refuse,
                            holder.clone(),
                        )],
                        plan: None,
                        failure: None,
                    })
                    .collect();
                print_report(printer, &report)?;
                return Ok(Outcome::Refused);
            }
        }
    };
    let say = *printer;
    let interrupted = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            // Said before the cancel: the run's own report of the interrupt follows it.
            say.note("interrupting at the next safe point (Ctrl-C again to quit at once)");
            let _ = cancel_tx.send(true);
            if tokio::signal::ctrl_c().await.is_ok() {
                // The lock then stays until it expires; the node records its progress.
                std::process::exit(130);
            }
        }
    });
    let tracker: Tracker = Arc::default();
    let settings = ExecSettings {
        drain_client: conn.client_with(Retries::Explicit)?,
        drain: opts.drain.clone(),
        evictions: opts.evictions.clone(),
        drain_timeout: opts.drain_timeout,
        ready_timeout: opts.ready_timeout,
        cancel: Some(cancel_rx.clone()),
    };
    let rollout = Rollout {
        client: &client,
        config: conn.config(),
        transport,
        opts,
        printer,
        settings,
        tracker: &tracker,
        cancel: cancel_rx.clone(),
    };
    // upgrade_all stops at a safe point once cancelled: the read-only probe
    // finishes, a running step is dropped.
    let result = rollout.upgrade_all(&names, &mut report).await;
    interrupted.abort();
    transport.cleanup().await;
    if let Some(lock) = lock
        && let Err(e) = lock.release().await
    {
        printer.warn(e);
    }
    if *cancel_rx.borrow() {
        report.outcome = Outcome::Error;
        let lines = interrupt_summary(&tracker, &mut report);
        print_report(printer, &report)?;
        for l in lines {
            printer.warn(l);
        }
        return Ok(Outcome::Error);
    }
    result?;
    print_report(printer, &report)?;
    Ok(report.outcome)
}

/// Where an interrupted run stopped, node by node, and how to resume.
fn interrupt_summary(tracker: &Tracker, report: &mut Report) -> Vec<String> {
    let mut lines = Vec::new();
    for (node, progressed) in tracker.lock().expect("tracker").iter() {
        let p = progressed.lock().expect("progress").clone();
        let Some(step) = p.current else { continue };
        if let Some(n) = report.nodes.iter_mut().rev().find(|n| &n.node == node) {
            n.result = NodeStatus::Interrupted;
        }
        let done: Vec<&str> = p.done.iter().map(|s| s.as_str()).collect();
        // The cordon and its record are one write: it happened whole or not at all.
        let state = if step == StepId::Cordon && done.is_empty() {
            "it is either untouched or cordoned with that record"
        } else {
            "it stays cordoned"
        };
        lines.push(format!(
            "interrupted: node {node} during step {step} (done: {}). The completed steps are recorded on the node (annotation {}); {state}. Run the same command again to resume at {step}.",
            if done.is_empty() { "nothing".to_string() } else { done.join(", ") },
            PROGRESS_ANNOTATION,
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
    lines
}

/// The nodes the command is about, by name.
async fn selected_nodes(
    opts: &RolloutOptions,
    client: &Client,
    snap: &ClusterSnapshot,
) -> anyhow::Result<Vec<String>> {
    if let Some(node) = &opts.node {
        // A name that is not there is a mistake in the input, not a refusal.
        if snap.node(node).is_none() {
            let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
            bail!(
                "node {node:?} does not exist; the cluster has: {} (`kubectl get nodes`)",
                names.join(", ")
            );
        }
        return Ok(vec![node.clone()]);
    }
    if let Some(sel) = &opts.selector {
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

/// `--etcd-backup FILE`: checked as `kubectl backup etcd status` checks it
/// (integrity, revision, keys; one implementation, [`crate::etcdsnap`]),
/// then how old it is. Only a file that passes silences the "no recent etcd
/// snapshot" warning; anything else is named as not a usable snapshot.
pub fn backup_evidence(path: Option<&Path>) -> anyhow::Result<Option<Backup>> {
    let Some(path) = path else {
        return Ok(Some(Backup::Missing));
    };
    let shown = path.display().to_string();
    let checked = crate::etcdsnap::status_of_file(path).and_then(|st| {
        anyhow::ensure!(
            st.integrity != crate::etcdsnap::Integrity::NoChecksum,
            "it has no appended sha256 (a member/snap/db copied out of a data directory?), \
             so its integrity cannot be verified and a restore would refuse it"
        );
        Ok(st)
    });
    if let Err(e) = checked {
        return Ok(Some(Backup::Unusable {
            path: shown,
            reason: format!("{e:#}"),
        }));
    }
    let age = std::fs::metadata(path)
        .ok()
        .and_then(|m| m.modified().ok())
        .and_then(|m| m.elapsed().ok())
        .map_or(0, |d| d.as_secs());
    Ok(Some(Backup::Found {
        path: shown,
        age_secs: age,
    }))
}

/// Who holds the lock, for the refusal another run prints.
pub fn identity() -> String {
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

/// One run across its waves.
struct Rollout<'a> {
    client: &'a Client,
    /// The connection's configuration, for the readiness certificate checks.
    config: &'a kube::Config,
    transport: &'a Via,
    opts: &'a RolloutOptions,
    printer: &'a Printer,
    settings: ExecSettings,
    tracker: &'a Tracker,
    cancel: watch::Receiver<bool>,
}

impl Rollout<'_> {
    async fn upgrade_all(&self, names: &[String], report: &mut Report) -> anyhow::Result<()> {
        let (opts, printer, client, cancel) = (self.opts, self.printer, self.client, &self.cancel);
        let snap = run::snapshot(client).await?;
        let facts: Vec<_> = names.iter().filter_map(|n| snap.node(n)).collect();
        let waves = if names.len() == 1 {
            vec![names.to_vec()]
        } else {
            let max = if matches!(self.transport, Via::Manual(_)) {
                1
            } else {
                opts.max_unavailable
            };
            rolling::waves(&facts, max)
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
                let mut live = if opts.dry_run {
                    projected.clone()
                } else {
                    run::snapshot(client).await?
                };
                if run::needs_readiness(&live, name, opts.to) {
                    run::add_readiness(client, Some(self.config), &mut live).await;
                }
                let req = run::request(name, opts.to, &opts.base);
                let drain = leaving_with(&opts.drain, wave, name);
                let prepared =
                    run::prepare(client, self.transport, &live, &req, &drain, names).await?;
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
                    printer.note(format!(
                        "node {name} already runs {}: nothing to do",
                        opts.to
                    ));
                    report.nodes.push(result);
                    continue;
                }
                let plan = prepared.plan.expect("a plan when not refused");
                // A dry run, and the plan shown before the question, carry the warnings.
                if opts.yes && !opts.dry_run {
                    for w in &plan.warnings {
                        printer.warn(w);
                    }
                }
                projected = projected.with_node_upgraded(&plan.node, plan.target);
                ready.push(plan);
                report.nodes.push(result);
            }
            if opts.dry_run || ready.is_empty() {
                continue;
            }
            if !opts.yes {
                for plan in &ready {
                    printer.show(&plan.render())?;
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
            if !self.run_wave(&snap, wave, &ready, report).await {
                return Ok(());
            }
            if report.outcome == Outcome::Error {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Executes the planned nodes of a wave at once. False when interrupted.
    async fn run_wave(
        &self,
        snap: &ClusterSnapshot,
        wave: &[String],
        ready: &[NodePlan],
        report: &mut Report,
    ) -> bool {
        let printer = self.printer;
        let runs = ready.iter().map(|plan| {
            let facts = snap.node(&plan.node).cloned().unwrap_or_default();
            let target = run::node_target(&facts);
            let progressed = Arc::new(Mutex::new(Progressed::default()));
            self.tracker
                .lock()
                .expect("tracker")
                .push((plan.node.clone(), progressed.clone()));
            // The nodes of the wave leave together: none is a destination
            // for another's pods, nor counts towards their workloads.
            let settings = ExecSettings {
                drain: leaving_with(&self.settings.drain, wave, &plan.node),
                ..self.settings.clone()
            };
            async move {
                let say = move |line: String| printer.note(line);
                let r = run::execute(
                    self.client,
                    self.transport,
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
        let mut cancelled = self.cancel.clone();
        let results = tokio::select! {
            _ = cancelled.wait_for(|c| *c) => return false,
            r = futures::future::join_all(runs) => r,
        };
        // A step the interrupt stopped (a drain) ends too, possibly first: the interrupt
        // summary reports it, not as a failure.
        let interrupted = *self.cancel.borrow();
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
                Err(_) if interrupted => {}
                Err(f) => {
                    printer.error(f.render());
                    entry.result = NodeStatus::Failed;
                    entry.failure = Some(f);
                    report.outcome = Outcome::Error;
                }
            }
        }
        !interrupted
    }
}

/// The drain rules for `node`, with the rest of its wave leaving too.
fn leaving_with(drain: &DrainOptions, wave: &[String], node: &str) -> DrainOptions {
    DrainOptions {
        also_leaving: wave.iter().filter(|n| *n != node).cloned().collect(),
        ..drain.clone()
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
