use std::process::ExitCode;

use clap::Parser as _;
use kubectl_backup::cli::{Cli, run};
use upkeep::output::{finish, init_logging};

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) =
        upkeep::complete::intercept(<kubectl_backup::cli::Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    init_logging();
    let cli = Cli::parse();
    finish(run(cli).await)
}
