//! The command line of `kubectl upgrade-node`: every flag and its help in one place.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use upkeep::cli::{
    self, ConfirmArgs, DrainFlags, Limit, NodeSelection, NodeTransportArgs, OutputArgs,
};
use upkeep::connect::KubeFlags;
use upkeep::output::DryRun;
use upkeep::upgrade::{PackageManager, TargetSpec};

const EXAMPLES: &str = "\
Examples:
  # Show the plan for node01: every step with the exact commands, nothing changed
  kubectl upgrade-node node01 --to v1.34.1 --dry-run

  # Upgrade the first control-plane node (kubeadm upgrade apply), over ssh as a sudoer
  kubectl upgrade-node controlplane --to v1.34.1 --remote-shell 'ssh -o BatchMode=yes admin@{address}' --sudo --yes

  # A worker, to the newest v1.34 patch its repository offers, through a privileged pod
  kubectl upgrade-node node01 --to v1.34 --via pod --yes

  # Exam style: print each block of commands, wait until you ran them on the node
  kubectl upgrade-node node01 --to v1.34.1 --via manual

  # The whole cluster: control-plane nodes one at a time, then workers two at a time
  kubectl upgrade-node --all --to v1.34.1 --max-unavailable 2 --yes

  # The surge alternative: new nodes at the target, then drain and remove the old ones
  kubectl upgrade-node --all --to v1.34.1 --strategy surge

Interrupted or failed? Run the same command again: progress is recorded on the node
(annotation upkeep.dev/upgrade) and the run resumes after the last completed step.

Exit codes: 0 done (or nothing to do), 1 refused by preflight (nothing changed),
2 failed or interrupted midway (the message names the step, what was done, how to retry).";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Strategy {
    /// Upgrade the nodes where they are, one (or a few) at a time
    InPlace,
    /// Print the plan for replacing workers with new nodes at the target
    Surge,
}

/// Upgrade a node through kubeadm: kubeadm package, kubeadm upgrade apply|node,
/// drain, kubelet and kubectl packages, restart the kubelet, wait for Ready, uncordon.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-upgrade_node",
    bin_name = "kubectl upgrade-node",
    version,
    override_usage = "kubectl upgrade-node NODE --to vX.Y[.Z] [OPTIONS]\n       kubectl upgrade-node (--all | -l SELECTOR) --to vX.Y[.Z] [OPTIONS]",
    after_help = EXAMPLES
)]
pub struct Cli {
    /// Control-plane nodes go first, one at a time; --max-unavailable applies to the workers
    #[command(flatten)]
    pub nodes: NodeSelection,

    /// The target: vX.Y.Z, or vX.Y for the newest patch the node's repository offers
    #[arg(long, value_name = "VERSION", value_parser = cli::target)]
    pub to: TargetSpec,

    /// in-place (default) or surge (print the replace-nodes plan)
    #[arg(long, value_enum, default_value_t = Strategy::InPlace)]
    pub strategy: Strategy,

    /// With --strategy surge: how many new nodes at a time
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = cli::at_least_one, allow_negative_numbers = true)]
    pub max_surge: u32,

    #[command(flatten)]
    pub dry_run: DryRun,

    #[command(flatten)]
    pub confirm: ConfirmArgs,

    #[command(flatten)]
    pub node_access: NodeTransportArgs,

    /// The node's package manager, when it cannot be told from the node
    #[arg(long, value_enum, value_name = "NAME")]
    pub package_manager: Option<PackageManager>,

    /// An etcd snapshot taken for this upgrade (kubectl backup etcd save FILE); warns when missing or old
    #[arg(long, value_name = "FILE")]
    pub etcd_backup: Option<PathBuf>,

    /// How old the etcd snapshot may be
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = cli::duration, allow_hyphen_values = true)]
    pub backup_max_age: Limit,

    #[command(flatten)]
    pub drain: DrainFlags,

    /// Give up draining a node after this long (0 = no limit)
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = cli::duration, allow_hyphen_values = true, help_heading = "Drain")]
    pub drain_timeout: Limit,

    /// How long to wait for the node to be Ready at the target after the kubelet restart
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = cli::duration, allow_hyphen_values = true)]
    pub ready_timeout: Limit,

    /// How long one node command may run (0 = no limit)
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = cli::duration, allow_hyphen_values = true)]
    pub command_timeout: Limit,

    /// Seconds the cluster lock (Lease kube-system/upkeep-upgrade) lasts without renewal
    #[arg(long, value_name = "SECONDS", default_value_t = 60, hide = true)]
    pub lock_seconds: i32,

    #[command(flatten)]
    pub out: OutputArgs,

    #[command(flatten)]
    pub kube: KubeFlags,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }
}
