//! The command line of `kubectl safedrain`: every flag and its help in one place.

use upkeep::connect::KubeFlags;
use upkeep::drain::{self, DrainOptions, PdbPolicy};
use upkeep::output::{DryRun, OutputFormat};

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
    override_usage = "kubectl safedrain [OPTIONS] NODE\n       kubectl safedrain [OPTIONS] -l SELECTOR",
    after_help = EXAMPLES,
    after_long_help = long_help()
)]
pub struct Cli {
    /// The node to drain (or with --uncordon, to return to service)
    #[arg(
        value_name = "NODE",
        required_unless_present = "selector",
        conflicts_with = "selector"
    )]
    pub node: Option<String>,

    /// Drain the nodes matching this label selector, one batch after another
    #[arg(short = 'l', long, value_name = "SELECTOR")]
    pub selector: Option<String>,

    /// With -l: how many nodes may be draining at once
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unavailable: u32,

    #[command(flatten)]
    pub dry_run: DryRun,

    /// Continue even if pods keep data in emptyDir or hostPath volumes (the data is deleted)
    #[arg(long)]
    pub delete_emptydir_data: bool,

    /// Delete pods that nothing would recreate (bare pods, orphaned pods): they are lost for good.
    /// The plan lists each of them first.
    #[arg(long)]
    pub delete_unmanaged: bool,

    /// Accepted for kubectl compatibility. It does NOT delete pods without a controller
    /// (kubectl drain --force does): use --delete-unmanaged for that
    #[arg(long)]
    pub force: bool,

    /// Seconds each pod gets to terminate; -1 uses the pod's own terminationGracePeriodSeconds
    #[arg(long, value_name = "SECONDS", default_value_t = -1, allow_negative_numbers = true)]
    pub grace_period: i64,

    /// Give up after this long for the whole run (e.g. 5m, 90s; 0 = no limit); the node stays cordoned
    #[arg(long, value_name = "DURATION", default_value = "0")]
    pub timeout: String,

    /// Only these pods (label selector) are considered
    #[arg(long, value_name = "SELECTOR")]
    pub pod_selector: Option<String>,

    /// PodDisruptionBudgets without room for all of the node's pods at once: pace the
    /// evictions as they free (refusing only a budget that never allows one), refuse, or
    /// wait even for a budget that only a change can free
    #[arg(long, value_enum, value_name = "POLICY", default_value_t = PdbPolicy::Pace)]
    pub pdb: PdbPolicy,

    /// The same as --pdb=wait
    #[arg(long, conflicts_with = "pdb")]
    pub wait_for_pdb: bool,

    /// Refuse when a workload would have no ready replica during the drain (default: warn)
    #[arg(long)]
    pub no_downtime: bool,

    /// Do not wait for the evicted pods' workloads to be whole again
    #[arg(long)]
    pub no_wait_workloads: bool,

    /// At most this many evictions in flight
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Do not ask for confirmation (required without a terminal)
    #[arg(short = 'y', long)]
    pub yes: bool,

    /// Return the node to service (and show where its former pods run now)
    #[arg(long, conflicts_with_all = ["dry_run", "delete_unmanaged", "delete_emptydir_data", "wait_for_pdb", "pdb"])]
    pub uncordon: bool,

    /// Output format of the result on stdout
    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub kube: KubeFlags,
}

impl Cli {
    pub fn dry_run(&self) -> bool {
        self.dry_run.enabled()
    }

    pub fn drain_options(&self, also_leaving: Vec<String>) -> DrainOptions {
        DrainOptions {
            delete_emptydir_data: self.delete_emptydir_data,
            delete_unmanaged: self.delete_unmanaged,
            pdb: if self.wait_for_pdb {
                PdbPolicy::Wait
            } else {
                self.pdb
            },
            no_downtime: self.no_downtime,
            also_leaving,
        }
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
