use std::process::ExitCode;

use clap::Parser as _;
use kubectl_skew::{cli::Cli, run};
use upkeep::output::{finish, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) =
        upkeep::complete::intercept(<kubectl_skew::cli::Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    init_logging();
    finish(run(Cli::parse()).await)
}
