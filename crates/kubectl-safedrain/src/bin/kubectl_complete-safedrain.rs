//! `kubectl_complete-safedrain`: kubectl (1.26+) runs it from PATH to complete
//! `kubectl safedrain ...`; the answer comes from the one clap definition.

use clap::CommandFactory;

fn main() -> std::process::ExitCode {
    upkeep::complete::run_kubectl_complete(kubectl_safedrain::cli::Cli::command())
}
