//! `kubectl upgrade-node NODE --to vX.Y[.Z]`: one node (or a whole cluster,
//! node by node) through the kubeadm upgrade, safely and resumably.
//! Wiring only; the decisions and the rollout live in `upkeep::upgrade`.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser as _;
use kubectl_upgrade_node::cli::{Cli, Strategy};
use upkeep::output::{self, Outcome};
use upkeep::upgrade::rollout::{self, RolloutOptions};
use upkeep::upgrade::run::RequestBase;

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

async fn run(cli: Cli) -> anyhow::Result<Outcome> {
    let printer = cli.out.printer();
    let conn = cli.kube.connect().await?;
    let command_timeout = cli.command_timeout.get();
    let transport = cli.node_access.transport(&conn.client, command_timeout)?;
    let options = RolloutOptions {
        to: cli.to,
        node: cli.nodes.node.clone(),
        selector: cli.nodes.selector.clone(),
        max_unavailable: cli.nodes.max_unavailable as usize,
        surge: (cli.strategy == Strategy::Surge).then_some(cli.max_surge as usize),
        dry_run: cli.dry_run.enabled(),
        yes: cli.confirm.yes,
        base: RequestBase {
            manager: cli.package_manager,
            sudo: cli.node_access.sudo,
            me: rollout::identity(),
            backup: rollout::backup_evidence(cli.etcd_backup.as_deref())?,
            max_backup_age_secs: cli.backup_max_age.get().map_or(u64::MAX, |d| d.as_secs()),
        },
        drain: cli.drain.options(Vec::new()),
        evictions: cli.drain.exec(),
        drain_timeout: cli.drain_timeout.get(),
        ready_timeout: cli.ready_timeout.get().unwrap_or(Duration::from_secs(600)),
        lock_seconds: cli.lock_seconds,
    };
    rollout::run(&conn, &transport, &options, &printer).await
}
