//! `kubectl_complete-upgrade_node`: kubectl (1.26+) runs it from PATH to complete
//! `kubectl upgrade-node ...`; the answer comes from the one clap definition.

use clap::CommandFactory;

fn main() -> std::process::ExitCode {
    upkeep::complete::run_kubectl_complete(kubectl_upgrade_node::cli::Cli::command())
}
