//! The command line of `kubectl skew`: every flag and its help in one place.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use upkeep::cli::{NodeTransportArgs, OutputArgs};
use upkeep::connect::KubeFlags;

const EXAMPLES: &str = "\
Examples:
  # Check every component against the version skew policy
  kubectl skew

  # The same as JSON, for scripts (exit 1 when something violates)
  kubectl skew -o json | jq '.violations'

  # Would the cluster still be supported on a given day?
  kubectl skew --as-of 2026-12-31

  # Check a kubectl that is not the one on PATH
  kubectl skew --kubectl-version v1.33.1

  # The path to a newer minor, one hop at a time
  kubectl skew plan --to v1.33

  # The rules, with the policy sentences they encode
  kubectl skew rules

Exit codes: 0 nothing violates the policy, 1 something does (or a plan was
refused), 2 the check could not be done (connection, permission).";

const PLAN_EXAMPLES: &str = "\
Examples:
  # Every hop from today's control plane to v1.33.0
  kubectl skew plan --to v1.33

  # A specific patch for the last hop, as JSON
  kubectl skew plan --to v1.33.4 -o json

  # Also the kubeadm certificates of every control-plane node, over ssh as a sudoer
  kubectl skew plan --to v1.33 --remote-shell 'ssh -o BatchMode=yes admin@{address}' --sudo

Every hop gets a readiness verdict (READY, WARN, NOT READY) from findings:
removed APIs still recorded in the cluster (last-applied-configuration,
managedFields, Helm release Secrets, /metrics), nodes whose drain would be
refused, skew and etcd gates, expiring certificates (the API server's, the
kubeconfig's and, with a node transport, kubeadm's on every control-plane
node), the support window.

Exit codes: 0 every hop READY or WARN, 1 a hop is NOT READY (or the plan was
refused: downgrades are refused with what is allowed instead), 2 it could not
tell (the report names what it could not read).";

/// Checks component versions against the Kubernetes version skew policy,
/// shows the support window, and plans upgrades one minor at a time.
#[derive(Debug, Parser)]
#[command(
    name = "kubectl-skew",
    bin_name = "kubectl skew",
    version,
    after_help = EXAMPLES,
    args_conflicts_with_subcommands = false
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub common: Common,

    #[command(flatten)]
    pub kube: KubeFlags,
}

/// Flags shared by the check and `plan`.
#[derive(Debug, Clone, Args)]
pub struct Common {
    #[command(flatten)]
    pub out: OutputArgs,

    /// The day to judge the support window on (YYYY-MM-DD; default: today, UTC)
    #[arg(long, value_name = "DATE", global = true)]
    pub as_of: Option<String>,

    /// A release calendar file to use instead of the embedded one (same JSON format)
    #[arg(long, value_name = "FILE", global = true)]
    pub calendar: Option<PathBuf>,

    /// The kubectl version to check, instead of asking the kubectl on PATH
    #[arg(long, value_name = "VERSION", global = true)]
    pub kubectl_version: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The ordered upgrade path from today's versions to a target, one minor per hop
    #[command(after_help = PLAN_EXAMPLES)]
    Plan(PlanArgs),
    /// The skew rules this plugin checks, each with the policy sentence it encodes (no cluster needed)
    Rules,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    /// The target: a minor (v1.33, meaning v1.33.0 for the last hop) or a release (v1.33.4)
    #[arg(long, value_name = "VERSION")]
    pub to: String,

    /// A removed-API table to use instead of the embedded one (same JSON format)
    #[arg(long, value_name = "FILE")]
    pub removed_apis: Option<PathBuf>,

    /// How many days the whole upgrade is planned to take: certificates expiring
    /// within max(30, DAYS) days are findings
    #[arg(long, value_name = "DAYS", default_value_t = 0)]
    pub upgrade_days: i64,

    /// Only the path: skip the readiness checks (removed APIs, drains, certificates)
    #[arg(long)]
    pub no_readiness: bool,

    /// Readiness without the per-node drain plans (they read every pod and cost
    /// time on large clusters)
    #[arg(long)]
    pub no_drains: bool,

    /// With --via or --remote-shell: `kubeadm certs check-expiration` runs on each
    /// control-plane node (without them, those certificates are not checked)
    #[command(flatten)]
    pub node_access: NodeTransportArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_reads_as_a_kubectl_plugin() {
        let help = Cli::command().render_help().to_string();
        assert!(help.contains("Usage: kubectl skew"), "{help}");
        assert!(help.contains("kubectl skew plan --to v1.33"), "{help}");
        assert!(help.contains("--kubeconfig"), "{help}");
    }
}
