//! `kubectl_complete-backup`: kubectl (1.26+) runs it from PATH to complete
//! `kubectl backup ...`; the answer comes from the one clap definition.

use clap::CommandFactory;

fn main() -> std::process::ExitCode {
    upkeep::complete::run_kubectl_complete(kubectl_backup::cli::Cli::command())
}
