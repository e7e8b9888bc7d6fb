use std::process::ExitCode;

use clap::Parser as _;
use kubectl_backup::cli::{Cli, run};
use upkeep::output::{finish, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    // kube and tonic both use rustls; when the workspace is built together,
    // rustls may see both of its providers enabled and refuse to pick one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    finish(run(cli).await)
}
