use std::process::ExitCode;

use clap::Parser as _;
use kubectl_skew::{cli::Cli, run};
use upkeep::output::{finish, init_logging};

// One thread: the requests are sequential, and one allocator arena keeps the
// readiness report's peak memory down (the pages of a large cluster's lists
// are parsed and dropped one after another).
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    if let Some(code) =
        upkeep::complete::intercept(<kubectl_skew::cli::Cli as clap::CommandFactory>::command)
    {
        return code;
    }
    init_logging();
    finish(run(Cli::parse()).await)
}
