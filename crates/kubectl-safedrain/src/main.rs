//! `kubectl safedrain NODE`: a drain that never loses a pod, names what
//! blocks it, and waits until the workloads are whole again.
//! Wiring and rendering only; the rules and the session live in `upkeep::drain`.

use std::process::ExitCode;
use std::time::Instant;

use clap::{CommandFactory as _, Parser as _};
use kubectl_safedrain::cli::Cli;
use serde::Serialize;
use upkeep::connect::Retries;
use upkeep::drain::session::{self, NodeDrain, Session, SessionEvent, SessionOptions};
use upkeep::drain::{DrainEvent, ExecOptions};
use upkeep::output::{self, Outcome, OutputFormat};

/// The document printed with `-o json|yaml`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Result<'a> {
    context: &'a str,
    dry_run: bool,
    /// would-drain, drained, refused, declined, interrupted, timed-out, failed
    outcome: &'a str,
    nodes: &'a [NodeDrain],
}

fn main() -> ExitCode {
    if let Some(code) = upkeep::complete::intercept(Cli::command) {
        return code;
    }
    let cli = Cli::parse();
    output::init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return output::finish(Err(e.into())),
    };
    output::finish(runtime.block_on(run(cli)))
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let timeout = cli.timeout.get();
    let printer = cli.out.printer();
    // The eviction engine handles 429/503 itself (naming the PDB, reacting as
    // soon as it frees), so the client's own silent retry layer is turned off.
    let conn = cli.kube.connect_with(Retries::Explicit).await?;
    let client = conn.client.clone();
    let names = session::select_nodes(
        &client,
        cli.nodes.node.as_deref(),
        cli.nodes.selector.as_deref(),
    )
    .await?;
    if cli.uncordon {
        let reports = session::uncordon_all(&client, &names).await?;
        printer.result(&reports, || session::render_uncordoned(&reports))?;
        return Ok(Outcome::Ok);
    }
    if cli.force {
        printer.warn("--force does not delete pods without a controller (kubectl drain's --force does); --delete-unmanaged does, after listing them");
    }
    printer.note(format!(
        "context {:?} (server {})",
        conn.context, conn.server
    ));

    // 1. Plan every node first; with -l, the other selected nodes are not destinations.
    let options = SessionOptions {
        pod_selector: cli.pod_selector.clone(),
        drain: cli.drain.options(Vec::new()),
        exec: ExecOptions {
            wait_workloads: !cli.no_wait_workloads,
            ..cli.drain.exec()
        },
        max_unavailable: cli.nodes.max_unavailable as usize,
        timeout,
    };
    let mut session = Session::plan(&client, &names, options, started).await?;
    let table = cli.out.output == OutputFormat::Table;
    if table {
        printer.text(&session.render_plans())?;
    }
    let finish = |outcome: &str, nodes: &[NodeDrain]| -> anyhow::Result<()> {
        let doc = Result {
            context: &conn.context,
            dry_run: cli.dry_run(),
            outcome,
            nodes,
        };
        if table {
            Ok(())
        } else {
            printer.result(&doc, String::new)
        }
    };
    if session.refused() {
        finish("refused", &session.nodes)?;
        return Ok(Outcome::Refused);
    }
    if cli.dry_run() {
        finish("would-drain", &session.nodes)?;
        return Ok(Outcome::Ok);
    }

    // 2. Confirm (never prompts without a terminal: --yes is required there).
    let question = format!("Drain {} in context {:?}?", names.join(", "), conn.context);
    if !output::confirm(&question, cli.confirm.yes)? {
        printer.note("not drained: nothing was changed");
        finish("declined", &session.nodes)?;
        return Ok(Outcome::Refused);
    }

    // 3. Execute, --max-unavailable nodes at a time; Ctrl-C stops cleanly.
    session.stop_on_ctrl_c();
    // A bar on a terminal (hidden otherwise); every event also as a line.
    let bar = printer.progress(session.moving() as u64, "pods moved");
    let events = |e: SessionEvent<'_>| match e {
        SessionEvent::Drain(e) => {
            if let DrainEvent::Gone { .. } = e {
                bar.inc(1);
            }
            bar.suspend(|| printer.note(e.line()));
        }
        SessionEvent::Finished(report) => {
            let text = report.render(timeout);
            bar.suspend(|| {
                if table {
                    let _ = printer.text(&text);
                } else {
                    printer.note(text.trim_end());
                }
            });
        }
        SessionEvent::RefusedBefore { plan, drained } => {
            let _ = printer.text(&plan.render());
            printer.note(format!(
                "stopped before node/{}: {} drained and stay cordoned",
                plan.node,
                drained.join(", ")
            ));
        }
        SessionEvent::NotStarted(rest) => printer.note(format!("not started: {}", rest.join(", "))),
    };
    let end = session.run(&client, &events).await?;
    bar.finish_and_clear();
    finish(end.as_str(), &session.nodes)?;
    Ok(end.into())
}
