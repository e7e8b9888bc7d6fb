use std::process::ExitCode;

use clap::Parser as _;
use kubectl_skew::{cli::Cli, run};
use upkeep::output::{finish, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    init_logging();
    finish(run(Cli::parse()).await)
}
