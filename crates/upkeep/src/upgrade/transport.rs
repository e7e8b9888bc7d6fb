//! How commands reach a node: a remote-shell template (ssh by default), a
//! privileged pod that nsenters into the host, the operator at a terminal
//! (`--via manual`), or this machine (`--via local`).
//!
//! Commands are argv vectors. A remote shell receives one string, quoted
//! word by word (ssh joins its arguments and hands them to the login shell);
//! the template's own words are split once, with `{node}` and `{address}`
//! replaced by validated values inside single words.

use std::future::Future;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde::Serialize;

use super::recipe::Cmd;
use super::validate;

/// The node a command is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    pub name: String,
    /// The node's InternalIP (or another address), when it has one.
    pub address: Option<String>,
}

/// What a command left behind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CmdOutput {
    /// The exit code; None when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn ok(stdout: impl Into<String>) -> CmdOutput {
        CmdOutput {
            code: Some(0),
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The output for a failure message, indented, the tail kept when long.
    pub fn excerpt(&self) -> String {
        let mut text = String::new();
        for part in [&self.stdout, &self.stderr] {
            let t = part.trim_end();
            if !t.is_empty() {
                text.push_str(t);
                text.push('\n');
            }
        }
        let lines: Vec<&str> = text.lines().collect();
        let keep = &lines[lines.len().saturating_sub(40)..];
        keep.iter()
            .map(|l| format!("    | {l}\n"))
            .collect::<String>()
    }
}

/// The outcome of one step's commands, run in order until one fails.
#[derive(Debug, Clone, Default)]
pub struct StepRun {
    pub outputs: Vec<(Cmd, CmdOutput)>,
}

impl StepRun {
    /// The failing command and its output, if any.
    pub fn failure(&self) -> Option<&(Cmd, CmdOutput)> {
        self.outputs.iter().find(|(_, o)| !o.success())
    }
}

/// A way to run commands on a node.
pub trait Transport: Send + Sync {
    /// For messages: "ssh -o BatchMode=yes {address}", "pod", ...
    fn describe(&self) -> String;

    /// Whether command output can be read back (not so for `--via manual`).
    fn captures_output(&self) -> bool {
        true
    }

    /// Runs one command; Err only when it could not be run at all.
    fn run(
        &self,
        node: &NodeTarget,
        cmd: &Cmd,
    ) -> impl Future<Output = anyhow::Result<CmdOutput>> + Send;

    /// Runs a step's commands in order and stops at the first failure.
    fn run_step(
        &self,
        node: &NodeTarget,
        title: &str,
        cmds: &[Cmd],
    ) -> impl Future<Output = anyhow::Result<StepRun>> + Send {
        let _ = title;
        async move {
            let mut run = StepRun::default();
            for cmd in cmds {
                let out = self.run(node, cmd).await?;
                let failed = !out.success();
                run.outputs.push((cmd.clone(), out));
                if failed {
                    break;
                }
            }
            Ok(run)
        }
    }

    /// Removes whatever the transport left on the cluster (an interrupted pod).
    fn cleanup(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// `--remote-shell TEMPLATE`: any command template, e.g.
/// `ssh -o BatchMode=yes {node}`; the quoted command is its last argument.
#[derive(Debug, Clone)]
pub struct RemoteShell {
    template: Vec<String>,
    pub timeout: Option<Duration>,
}

impl RemoteShell {
    /// The default: ssh to the node's InternalIP, never prompting.
    pub const DEFAULT: &'static str = "ssh -o BatchMode=yes {address}";

    pub fn parse(template: &str) -> anyhow::Result<RemoteShell> {
        let words = shlex::split(template).with_context(|| {
            format!("--remote-shell {template:?} is not a valid command line (unbalanced quotes?)")
        })?;
        if words.is_empty() {
            bail!(
                "--remote-shell is empty: give a command such as {:?}",
                Self::DEFAULT
            );
        }
        Ok(RemoteShell {
            template: words,
            timeout: None,
        })
    }

    /// The argv for `cmd` on `node`: the template with its placeholders
    /// filled in, then the command as one quoted string.
    pub fn argv(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<Vec<String>> {
        let name = validate::node_name(&node.name).map_err(anyhow::Error::msg)?;
        let needs_address = self.template.iter().any(|w| w.contains("{address}"));
        let address = match (&node.address, needs_address) {
            (Some(a), _) => validate::address(a).map_err(anyhow::Error::msg)?,
            (None, true) => bail!(
                "node {name} reports no InternalIP for {{address}}: use --remote-shell with {{node}}, e.g. 'ssh -o BatchMode=yes {{node}}'"
            ),
            (None, false) => "",
        };
        let mut argv: Vec<String> = self
            .template
            .iter()
            .map(|w| w.replace("{node}", name).replace("{address}", address))
            .collect();
        argv.push(cmd.shell_line().map_err(anyhow::Error::msg)?);
        Ok(argv)
    }
}

impl Transport for RemoteShell {
    fn describe(&self) -> String {
        shlex::try_join(self.template.iter().map(String::as_str)).unwrap_or_default()
    }

    async fn run(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        let argv = self.argv(node, cmd)?;
        spawn(&argv, self.timeout).await
    }
}

/// `--via local`: this machine is the node.
#[derive(Debug, Clone, Default)]
pub struct Local {
    pub timeout: Option<Duration>,
}

impl Transport for Local {
    fn describe(&self) -> String {
        "local".to_string()
    }

    async fn run(&self, _node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        spawn(cmd.argv(), self.timeout).await
    }
}

async fn spawn(argv: &[String], timeout: Option<Duration>) -> anyhow::Result<CmdOutput> {
    let (program, args) = argv.split_first().context("empty command")?;
    let child = tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // An interrupted run must not leave the command running.
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("could not start {program:?}"))?;
    let wait = child.wait_with_output();
    let out = match timeout {
        Some(t) => tokio::time::timeout(t, wait)
            .await
            .with_context(|| format!("{program} did not finish within {t:?}"))?,
        None => wait.await,
    }
    .with_context(|| format!("could not run {program:?}"))?;
    Ok(CmdOutput {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// `--via manual`: prints each step's commands and waits for the operator
/// to run them on the node and answer (exam-style).
#[derive(Debug, Clone, Default)]
pub struct Manual;

impl Manual {
    fn ask(node: &NodeTarget, title: &str, cmds: &[Cmd]) -> anyhow::Result<bool> {
        // stderr is locked only while writing: the wait for the answer must
        // not keep other threads (an interrupt's message) from printing.
        let printer = crate::output::Printer::new(crate::output::OutputFormat::Table);
        let say = |text: &str| printer.show(text);
        let mut block = format!("\n== on node {}: {title}\n", node.name);
        for c in cmds {
            block.push_str(&format!("   {c}\n"));
        }
        say(&block)?;
        loop {
            say(&format!(
                "Run these on {} now. Did they succeed? [y = yes, continue / n = no, stop]: ",
                node.name
            ))?;
            let mut line = String::new();
            let n = std::io::stdin()
                .read_line(&mut line)
                .context("could not read the answer")?;
            if n == 0 {
                bail!("no answer (end of input): stopping; the same command resumes here");
            }
            match line.trim().to_ascii_lowercase().as_str() {
                "y" | "yes" => return Ok(true),
                "n" | "no" => return Ok(false),
                _ => say("please answer y or n\n")?,
            }
        }
    }
}

impl Transport for Manual {
    fn describe(&self) -> String {
        "manual".to_string()
    }

    fn captures_output(&self) -> bool {
        false
    }

    async fn run(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        let step = self
            .run_step(node, "run", std::slice::from_ref(cmd))
            .await?;
        Ok(step
            .outputs
            .into_iter()
            .next()
            .map(|(_, o)| o)
            .unwrap_or_default())
    }

    async fn run_step(
        &self,
        node: &NodeTarget,
        title: &str,
        cmds: &[Cmd],
    ) -> anyhow::Result<StepRun> {
        let (node, title, cmds) = (node.clone(), title.to_string(), cmds.to_vec());
        let ok = tokio::task::spawn_blocking(move || {
            Manual::ask(&node, &title, &cmds).map(|ok| (ok, cmds))
        })
        .await
        .context("the prompt was interrupted")??;
        let (ok, cmds) = ok;
        let mut run = StepRun::default();
        let last = cmds.len().saturating_sub(1);
        for (i, c) in cmds.into_iter().enumerate() {
            let out = if ok || i < last {
                CmdOutput::ok("")
            } else {
                CmdOutput {
                    code: Some(1),
                    stdout: String::new(),
                    stderr: "the operator reported a failure".to_string(),
                }
            };
            run.outputs.push((c, out));
        }
        Ok(run)
    }
}

/// A recording transport for tests: answers from a script, records every
/// command with its node.
#[derive(Debug, Default)]
pub struct Recording {
    pub log: std::sync::Mutex<Vec<(String, String)>>,
    /// (substring of the command line, output): the first match answers.
    pub answers: Vec<(String, CmdOutput)>,
}

impl Recording {
    pub fn answer(mut self, contains: &str, out: CmdOutput) -> Self {
        self.answers.push((contains.to_string(), out));
        self
    }

    pub fn commands(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("log")
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }
}

impl Transport for Recording {
    fn describe(&self) -> String {
        "recording".to_string()
    }

    async fn run(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        let line = cmd.shell_line().map_err(anyhow::Error::msg)?;
        self.log
            .lock()
            .expect("log")
            .push((node.name.clone(), line.clone()));
        Ok(self
            .answers
            .iter()
            .find(|(k, _)| line.contains(k.as_str()))
            .map(|(_, o)| o.clone())
            .unwrap_or_else(|| CmdOutput::ok("")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeTarget {
        NodeTarget {
            name: "node01".into(),
            address: Some("10.0.0.7".into()),
        }
    }

    #[test]
    fn template_placeholders_and_quoting() {
        let rs = RemoteShell::parse("ssh -o BatchMode=yes -l admin {address}").unwrap();
        let cmd = Cmd::new(["apt-get", "install", "-y", "kubeadm=1.34.1-*"]);
        assert_eq!(
            rs.argv(&node(), &cmd).unwrap(),
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-l",
                "admin",
                "10.0.0.7",
                "apt-get install -y 'kubeadm=1.34.1-*'"
            ]
        );
        let lab = RemoteShell::parse("'/opt/upkeep lab' node-shell --kubeconfig 'k c' {node} --")
            .unwrap();
        let argv = lab
            .argv(&node(), &Cmd::new(["kubeadm", "upgrade", "node"]))
            .unwrap();
        assert_eq!(argv[0], "/opt/upkeep lab");
        assert_eq!(argv[3], "k c");
        assert_eq!(argv[4], "node01");
        assert_eq!(argv.last().unwrap(), "kubeadm upgrade node");
    }

    #[test]
    fn hostile_values_never_reach_a_command() {
        let rs = RemoteShell::parse(RemoteShell::DEFAULT).unwrap();
        let cmd = Cmd::new(["true"]);
        let bad_addr = NodeTarget {
            name: "node01".into(),
            address: Some("10.0.0.7;reboot".into()),
        };
        assert!(rs.argv(&bad_addr, &cmd).is_err());
        let bad_name = NodeTarget {
            name: "$(reboot)".into(),
            address: None,
        };
        assert!(
            RemoteShell::parse("ssh {node}")
                .unwrap()
                .argv(&bad_name, &cmd)
                .is_err()
        );
        let no_ip = NodeTarget {
            name: "node01".into(),
            address: None,
        };
        let err = rs.argv(&no_ip, &cmd).unwrap_err().to_string();
        assert!(err.contains("{node}"), "{err}");
        assert!(RemoteShell::parse("ssh 'unbalanced").is_err());
        assert!(RemoteShell::parse("  ").is_err());
    }

    #[tokio::test]
    async fn local_runs_argv_and_stops_at_the_first_failure() {
        let local = Local::default();
        let run = local
            .run_step(
                &node(),
                "t",
                &[
                    Cmd::new(["sh", "-c", "echo one"]),
                    Cmd::new(["sh", "-c", "echo bad >&2; exit 3"]),
                    Cmd::new(["sh", "-c", "echo never"]),
                ],
            )
            .await
            .unwrap();
        assert_eq!(run.outputs.len(), 2);
        let (cmd, out) = run.failure().unwrap();
        assert_eq!(cmd.argv()[2], "echo bad >&2; exit 3");
        assert_eq!(out.code, Some(3));
        assert!(out.excerpt().contains("| bad"));
        // A glob in argv stays literal: no shell sees it.
        let out = local
            .run(&node(), &Cmd::new(["echo", "kubeadm=1.34.1-*"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "kubeadm=1.34.1-*\n");
    }

    #[tokio::test]
    async fn remote_shell_hands_one_quoted_string_to_a_shell() {
        // `sh -c` plays ssh's remote side: it must see the glob quoted.
        let rs = RemoteShell::parse("sh -c").unwrap();
        let out = rs
            .run(&node(), &Cmd::new(["echo", "kubeadm=1.34.1-*", "it's"]))
            .await
            .unwrap();
        assert_eq!(out.stdout, "kubeadm=1.34.1-* it's\n");
    }
}
