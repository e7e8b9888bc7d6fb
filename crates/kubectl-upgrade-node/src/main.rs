//! `kubectl upgrade-node NODE --to vX.Y[.Z]`: one node (or a whole cluster,
//! node by node) through the kubeadm upgrade, safely and resumably.
//! Wiring only; the decisions and the rollout live in `upkeep::upgrade`.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser as _;
use kubectl_upgrade_node::cli::{Cli, Strategy};
use upkeep::connect::parse_request_timeout;
use upkeep::drain::DrainOptions;
use upkeep::output::{self, Outcome, Printer};
use upkeep::upgrade::rollout::{self, RolloutOptions};
use upkeep::upgrade::run::RequestBase;
use upkeep::upgrade::via::Via;
use upkeep::upgrade::{TargetSpec, validate};

fn main() -> ExitCode {
    if let Some(code) = upkeep::complete::intercept(
        <kubectl_upgrade_node::cli::Cli as clap::CommandFactory>::command,
    ) {
        return code;
    }
    output::init_logging();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => return output::finish(Err(e.into())),
    };
    let result = runtime.block_on(run(cli));
    // An interrupted `--via manual` prompt may still wait for a line: do not wait for it.
    runtime.shutdown_background();
    output::finish(result)
}

fn duration(flag: &str, text: &str) -> anyhow::Result<Option<Duration>> {
    parse_request_timeout(text).with_context(|| format!("{flag} {text:?}"))
}

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
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
    let command_timeout = duration("--command-timeout", &cli.command_timeout)?;
    let transport = Via::new(
        cli.via,
        &conn.client,
        &cli.remote_shell,
        &cli.pod_image,
        command_timeout,
    )?;
    let options = RolloutOptions {
        to,
        node: cli.node.clone(),
        selector: cli.selector.clone(),
        max_unavailable: cli.max_unavailable as usize,
        surge: (cli.strategy == Strategy::Surge).then_some(cli.max_surge as usize),
        dry_run: cli.dry_run.enabled(),
        yes: cli.yes,
        base: RequestBase {
            manager: cli.package_manager,
            sudo: cli.sudo,
            me: rollout::identity(),
            backup: rollout::backup_evidence(cli.etcd_backup.as_deref())?,
            max_backup_age_secs: duration("--backup-max-age", &cli.backup_max_age)?
                .map_or(u64::MAX, |d| d.as_secs()),
        },
        drain: DrainOptions {
            delete_emptydir_data: cli.delete_emptydir_data,
            delete_unmanaged: cli.delete_unmanaged,
            pdb: cli.pdb_policy(),
            no_downtime: cli.no_downtime,
            also_leaving: Vec::new(),
        },
        drain_timeout: duration("--drain-timeout", &cli.drain_timeout)?,
        ready_timeout: duration("--ready-timeout", &cli.ready_timeout)?
            .unwrap_or(Duration::from_secs(600)),
        lock_seconds: cli.lock_seconds,
    };
    rollout::run(&conn, &transport, &options, &printer).await
}
