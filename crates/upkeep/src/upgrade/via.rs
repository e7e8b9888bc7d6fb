//! The transport chosen on the command line, as one type.

use std::time::Duration;

use kube::Client;

use super::Cmd;
use super::pod::PodShell;
use super::transport::{CmdOutput, Local, Manual, NodeTarget, RemoteShell, StepRun, Transport};

/// `--via`: how commands reach a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ViaKind {
    /// Run each command through --remote-shell (default: ssh to the node's InternalIP)
    Shell,
    /// A privileged pod pinned to the node, entering the host with nsenter
    Pod,
    /// Print each block of commands and wait for the operator to run them
    Manual,
    /// This machine is the node
    Local,
}

/// One of the transports, picked at run time.
pub enum Via {
    Shell(RemoteShell),
    Pod(PodShell),
    Manual(Manual),
    Local(Local),
}

impl Via {
    /// The transport `kind` names. `remote_shell` is the `--remote-shell`
    /// template, `pod_image` the `--pod-image`; `timeout` bounds one command.
    pub fn new(
        kind: ViaKind,
        client: &Client,
        remote_shell: &str,
        pod_image: &str,
        timeout: Option<Duration>,
    ) -> anyhow::Result<Via> {
        Ok(match kind {
            ViaKind::Shell => {
                let mut rs = RemoteShell::parse(remote_shell)?;
                rs.timeout = timeout;
                Via::Shell(rs)
            }
            ViaKind::Pod => Via::Pod(PodShell::new(
                client.clone(),
                pod_image,
                timeout.unwrap_or(Duration::from_secs(24 * 3600)),
            )),
            ViaKind::Manual => Via::Manual(Manual),
            ViaKind::Local => Via::Local(Local { timeout }),
        })
    }
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
