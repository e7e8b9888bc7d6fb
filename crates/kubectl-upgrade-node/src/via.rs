//! The transport chosen on the command line.

use upkeep::upgrade::Cmd;
use upkeep::upgrade::pod::PodShell;
use upkeep::upgrade::transport::{
    CmdOutput, Local, Manual, NodeTarget, RemoteShell, StepRun, Transport,
};

pub enum Via {
    Shell(RemoteShell),
    Pod(PodShell),
    Manual(Manual),
    Local(Local),
}

impl Transport for Via {
    fn describe(&self) -> String {
        match self {
            Via::Shell(t) => t.describe(),
            Via::Pod(t) => t.describe(),
            Via::Manual(t) => t.describe(),
            Via::Local(t) => t.describe(),
        }
    }

    fn captures_output(&self) -> bool {
        !matches!(self, Via::Manual(_))
    }

    async fn run(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        match self {
            Via::Shell(t) => t.run(node, cmd).await,
            Via::Pod(t) => t.run(node, cmd).await,
            Via::Manual(t) => t.run(node, cmd).await,
            Via::Local(t) => t.run(node, cmd).await,
        }
    }

    async fn run_step(
        &self,
        node: &NodeTarget,
        title: &str,
        cmds: &[Cmd],
    ) -> anyhow::Result<StepRun> {
        match self {
            Via::Shell(t) => t.run_step(node, title, cmds).await,
            Via::Pod(t) => t.run_step(node, title, cmds).await,
            Via::Manual(t) => t.run_step(node, title, cmds).await,
            Via::Local(t) => t.run_step(node, title, cmds).await,
        }
    }

    async fn cleanup(&self) {
        if let Via::Pod(t) = self {
            t.cleanup().await;
        }
    }
}
