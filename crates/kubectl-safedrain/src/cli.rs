//! The command line of `kubectl safedrain`: every flag and its help in one place.

use upkeep::cli::{self, ConfirmArgs, DrainFlags, Limit, NodeSelection, OutputArgs};
use upkeep::connect::KubeFlags;
use upkeep::drain;
use upkeep::output::DryRun;

const EXAMPLES: &str = "\
Examples:
  # Show what a drain of node01 would do, change nothing (exit 0: it would go through, 1: refused)
  kubectl safedrain node01 --dry-run

  # Drain node02: cordon, evict, wait until its workloads are Ready elsewhere
  kubectl safedrain node02 --yes

  # Evict as fast as the PodDisruptionBudgets allow (the default), give up after 10 minutes
  kubectl safedrain node02 --timeout 10m -y

  # Refuse instead when a budget cannot let all of node02's pods go at once
  kubectl safedrain node02 --pdb=refuse -y

  # Accept losing emptyDir data, and delete a bare pod for good (listed in the plan first)
  kubectl safedrain node01 --delete-emptydir-data --delete-unmanaged -y

  # Drain every worker, one node at a time, as JSON
  kubectl safedrain -l node-role.kubernetes.io/worker= --max-unavailable 1 -y -o json

  # Return node02 to service and see where its former pods run now
  kubectl safedrain node02 --uncordon

Exit codes: 0 drained (or would be), 1 refused (nothing changed), 2 error, timeout or interrupted.
Unlike `kubectl drain`, --force never deletes pods that no controller would recreate:
that takes --delete-unmanaged. DaemonSet pods are always left in place.";

/// Drain a node without losing a pod: plan first, refuse what would be lost,
/// evict with PodDisruptionBudgets in mind, wait for the replacements.
#[derive(Debug, clap::Parser)]
#[command(
    name = "kubectl-safedrain",
    bin_name = "kubectl safedrain",
    version,
    override_usage = "kubectl safedrain [OPTIONS] NODE\n       kubectl safedrain [OPTIONS] (-l SELECTOR | --all)",
    after_help = EXAMPLES,
    after_long_help = long_help()
)]
pub struct Cli {
    #[command(flatten)]
    pub nodes: NodeSelection,

    #[command(flatten)]
    pub dry_run: DryRun,

    #[command(flatten)]
    pub drain: DrainFlags,

    /// Accepted for kubectl compatibility. It does NOT delete pods without a controller
    /// (kubectl drain --force does): use --delete-unmanaged for that
    #[arg(long)]
    pub force: bool,

    /// Give up after this long for the whole run (e.g. 5m, 90s; 0 = no limit); the node stays cordoned
    #[arg(long, value_name = "DURATION", default_value = "0", value_parser = cli::duration, allow_hyphen_values = true)]
    pub timeout: Limit,

    /// Only these pods (label selector) are considered
    #[arg(long, value_name = "SELECTOR", value_parser = cli::label_selector)]
    pub pod_selector: Option<String>,

    /// Do not wait for the evicted pods' workloads to be whole again
    #[arg(long)]
    pub no_wait_workloads: bool,

    #[command(flatten)]
    pub confirm: ConfirmArgs,

    /// Return the node to service (and show where its former pods run now)
    #[arg(long, conflicts_with_all = ["dry_run", "delete_unmanaged", "delete_emptydir_data", "wait_for_pdb", "pdb"])]
    pub uncordon: bool,

    #[command(flatten)]
    pub out: OutputArgs,

    #[command(flatten)]
    pub kube: KubeFlags,
}

impl Cli {
    pub fn dry_run(&self) -> bool {
        self.dry_run.enabled()
    }
}

/// `--help` lists the rules from their one definition.
fn long_help() -> String {
    let mut rules = String::from("Rules (each pod is judged by these, in the core library):\n");
    for rule in drain::Rule::ALL {
        rules.push_str(&format!("  {}: {}\n", rule.name(), rule.summary()));
    }
    format!("{rules}\n{EXAMPLES}")
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
