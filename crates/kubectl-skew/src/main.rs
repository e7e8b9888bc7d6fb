use std::process::ExitCode;

use clap::Parser as _;
use kubectl_skew::{cli::Cli, run};
use upkeep::output::{finish, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    // Builds of the whole workspace link two rustls crypto providers (ring
    // and aws-lc-rs, through other crates' features); rustls then refuses to
    // pick one by itself, so choose explicitly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    finish(run(Cli::parse()).await)
}
