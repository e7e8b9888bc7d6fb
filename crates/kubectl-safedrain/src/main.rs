//! `kubectl safedrain NODE`: a drain that never loses a pod, names what
//! blocks it, and waits until the workloads are whole again.
//! CLI definition and glue only; the rules and the engine live in `upkeep::drain`.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser as _;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use kubectl_safedrain::cli::Cli;
use serde::Serialize;
use tokio::sync::watch;
use upkeep::connect::{Retries, parse_request_timeout};
use upkeep::drain::{self, DrainEvent, DrainOutcome, DrainPlan, DrainReport, ExecOptions, record};
use upkeep::output::{self, Outcome, OutputFormat, Printer};

/// The document printed with `-o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Result {
    context: String,
    dry_run: bool,
    /// would-drain, drained, refused, declined, interrupted, timed-out, failed
    outcome: String,
    nodes: Vec<NodeResult>,
}

#[derive(Debug, Serialize)]
struct NodeResult {
    plan: DrainPlan,
    /// The node as gathered (its record annotation is merged on cordon).
    #[serde(skip)]
    node: Node,
    #[serde(skip_serializing_if = "Option::is_none")]
    report: Option<DrainReport>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    output::init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return output::finish(Err(e.into())),
    };
    output::finish(runtime.block_on(run(cli)))
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let timeout = parse_request_timeout(&cli.timeout).context("--timeout")?;
    let printer = Printer::new(cli.output);
    // The eviction engine handles 429/503 itself (naming the PDB, reacting as
    // soon as it frees), so the client's own silent retry layer is turned off.
    let conn = cli.kube.connect_with(Retries::Explicit).await?;
    let client = conn.client.clone();
    let nodes = resolve_nodes(&client, &cli).await?;

    if cli.uncordon {
        return uncordon(&client, &nodes, &printer).await;
    }
    if cli.force {
        printer.warn("--force does not delete pods without a controller (kubectl drain's --force does); --delete-unmanaged does, after listing them");
    }
    printer.note(format!(
        "context {:?} (server {})",
        conn.context, conn.server
    ));

    // 1. Plan every node first; with -l, the other selected nodes are not destinations.
    let mut results = Vec::new();
    for node in &nodes {
        let others: Vec<String> = nodes.iter().filter(|n| *n != node).cloned().collect();
        let gather = drain::gather(&client, node, cli.pod_selector.as_deref());
        let snapshot = match timeout {
            Some(t) => tokio::time::timeout(t.saturating_sub(started.elapsed()), gather)
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "--timeout reached while planning node/{node}; nothing was changed"
                    )
                })??,
            None => gather.await?,
        };
        let plan = drain::plan(&snapshot, &cli.drain_options(others));
        results.push(NodeResult {
            plan,
            node: snapshot.node,
            report: None,
        });
    }
    let refused = results.iter().any(|r| r.plan.refused());
    let table = cli.output == OutputFormat::Table;
    if table {
        let text: Vec<String> = results.iter().map(|r| r.plan.render()).collect();
        output::write_stdout(&text.join("\n"))?;
    }
    let finish = |outcome: &str, results: Vec<NodeResult>| -> anyhow::Result<()> {
        if table {
            return Ok(());
        }
        printer.result(
            &Result {
                context: conn.context.clone(),
                dry_run: cli.dry_run(),
                outcome: outcome.to_string(),
                nodes: results,
            },
            String::new,
        )
    };
    if refused {
        finish("refused", results)?;
        return Ok(Outcome::Refused);
    }
    if cli.dry_run() {
        finish("would-drain", results)?;
        return Ok(Outcome::Ok);
    }

    // 2. Confirm (never prompts without a terminal: --yes is required there).
    let names = nodes.join(", ");
    let question = format!("Drain {names} in context {:?}?", conn.context);
    if !output::confirm(&question, cli.yes)? {
        printer.note("not drained: nothing was changed");
        finish("declined", results)?;
        return Ok(Outcome::Refused);
    }

    // 3. Execute, --max-unavailable nodes at a time; Ctrl-C stops cleanly.
    let (cancel_tx, cancel_rx) = watch::channel(false);
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            let _ = cancel_tx.send(true);
        }
    });
    // A bar on a terminal (hidden otherwise); every event also as a line.
    let moving: usize = results
        .iter()
        .map(|r| {
            r.plan.summary.evict
                + r.plan.summary.delete
                + r.plan.summary.destroy
                + r.plan.summary.wait
        })
        .sum();
    let bar = printer.progress(moving as u64, "pods moved");
    let progress = |e: &DrainEvent| {
        if let DrainEvent::Gone { .. } = e {
            bar.inc(1);
        }
        bar.suspend(|| printer.note(e.line()));
    };
    let batch = cli.max_unavailable as usize;
    let mut outcome = DrainOutcome::Drained;
    let mut index = 0;
    while index < results.len() {
        let end = (index + batch).min(results.len());
        if index > 0 {
            // Later batches are planned again against the cluster as it is now.
            for r in &mut results[index..end] {
                let others: Vec<String> = nodes
                    .iter()
                    .filter(|n| **n != r.plan.node)
                    .cloned()
                    .collect();
                let snapshot =
                    drain::gather(&client, &r.plan.node, cli.pod_selector.as_deref()).await?;
                r.plan = drain::plan(&snapshot, &cli.drain_options(others));
                r.node = snapshot.node;
                if r.plan.refused() {
                    output::write_stdout(&r.plan.render())?;
                    printer.note(format!(
                        "stopped before node/{}: {} drained and stay cordoned",
                        r.plan.node,
                        nodes[..index].join(", ")
                    ));
                    finish("refused", results)?;
                    return Ok(Outcome::Refused);
                }
            }
        }
        let remaining = timeout.map(|t| t.saturating_sub(started.elapsed()));
        let opts = ExecOptions {
            grace_period: u32::try_from(cli.grace_period).ok(),
            concurrency: cli.concurrency as usize,
            wait_workloads: !cli.no_wait_workloads,
            timeout: remaining,
            cancel: Some(cancel_rx.clone()),
            pod_selector: cli.pod_selector.clone(),
            ..Default::default()
        };
        let reports = futures::future::join_all(
            results[index..end]
                .iter()
                .map(|r| drain::execute(&client, &r.plan, &r.node, &opts, &progress)),
        )
        .await;
        for (r, report) in results[index..end].iter_mut().zip(reports) {
            if report.outcome != DrainOutcome::Drained && outcome == DrainOutcome::Drained {
                outcome = report.outcome;
            }
            if table {
                output::write_stdout(&render_report(&report, timeout))?;
            } else {
                printer.note(render_report(&report, timeout).trim_end());
            }
            r.report = Some(report);
        }
        if outcome != DrainOutcome::Drained {
            if end < results.len() {
                let rest: Vec<&str> = results[end..]
                    .iter()
                    .map(|r| r.plan.node.as_str())
                    .collect();
                printer.note(format!("not started: {}", rest.join(", ")));
            }
            break;
        }
        index = end;
    }
    bar.finish_and_clear();
    let word = match outcome {
        DrainOutcome::Drained => "drained",
        DrainOutcome::Interrupted => "interrupted",
        DrainOutcome::TimedOut => "timed-out",
        DrainOutcome::Failed => "failed",
    };
    finish(word, results)?;
    Ok(if outcome == DrainOutcome::Drained {
        Outcome::Ok
    } else {
        Outcome::Error
    })
}

fn render_report(r: &DrainReport, timeout: Option<Duration>) -> String {
    let mut out = String::new();
    let whole: Vec<String> = r
        .workloads
        .iter()
        .map(|w| {
            format!(
                "{}/{} {}/{} ready elsewhere",
                w.namespace, w.workload, w.ready, w.replicas
            )
        })
        .collect();
    match r.outcome {
        DrainOutcome::Drained => {
            out.push_str(&format!(
                "node/{} drained: {} pod(s) evicted, {} deleted{} in {:.1}s\n",
                r.node,
                r.evicted.len(),
                r.deleted.len(),
                if whole.is_empty() {
                    String::new()
                } else {
                    format!("; {}", whole.join(", "))
                },
                r.seconds
            ));
            out.push_str(&format!(
                "node/{} stays cordoned; `kubectl safedrain {} --uncordon` returns it to service\n",
                r.node, r.node
            ));
        }
        other => {
            let why = match other {
                DrainOutcome::Interrupted => "interrupted".to_string(),
                DrainOutcome::TimedOut => format!(
                    "timed out after {}",
                    humantime::format_duration(timeout.unwrap_or_default())
                ),
                _ => format!("failed: {}", r.error.as_deref().unwrap_or("unknown error")),
            };
            out.push_str(&format!("node/{} NOT drained ({why})\n", r.node));
            if !r.evicted.is_empty() {
                out.push_str(&format!(
                    "done: {} pod(s) evicted: {}\n",
                    r.evicted.len(),
                    r.evicted.join(", ")
                ));
            }
            let undone = r.undone();
            if !undone.is_empty() {
                out.push_str(&format!("left undone: {}\n", undone.join("; ")));
            }
            if r.cordoned {
                out.push_str(&format!(
                    "node/{} stays cordoned (no new pods land there); run the same command again to finish: pods already gone are not evicted twice\n",
                    r.node
                ));
            }
        }
    }
    out
}

async fn resolve_nodes(client: &Client, cli: &Cli) -> anyhow::Result<Vec<String>> {
    if let Some(node) = &cli.node {
        return Ok(vec![node.clone()]);
    }
    let selector = cli.selector.as_deref().unwrap_or_default();
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(selector))
        .await
        .context("could not list the nodes")?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "no node matches the selector {selector:?}; check it with `kubectl get nodes -l {selector:?}`"
        );
    }
    Ok(names)
}

async fn uncordon(client: &Client, nodes: &[String], printer: &Printer) -> anyhow::Result<Outcome> {
    let mut reports = Vec::new();
    for node in nodes {
        reports.push(record::uncordon(client, node).await?);
    }
    printer.result(&reports, || {
        reports
            .iter()
            .map(|r| r.render())
            .collect::<Vec<_>>()
            .join("\n")
    })?;
    Ok(Outcome::Ok)
}
