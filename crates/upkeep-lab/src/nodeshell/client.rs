//! `upkeep-lab node-shell --kubeconfig K NODE -- CMD...`: run a command on a lab node through
//! `POST /lab/v1/nodes/{node}/exec`, print its output and exit with its code. One CMD word is
//! a shell line (`sh -c`, as ssh runs its remote command); several are an argv. Without CMD,
//! read command lines from stdin (each runs as `sh -c LINE`) until end of input or `exit`.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context as _;

use super::http::{ExecRequest, ExecResponse};

/// Arguments of the `node-shell` subcommand.
#[derive(Debug, Clone, clap::Args)]
pub struct NodeShellArgs {
    /// The kubeconfig `upkeep-lab serve` wrote.
    #[arg(long, value_name = "PATH", env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Kubeconfig context (default: the current one).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// For a real node whose kubeadm, kubelet, kubectl and systemctl are stand-ins calling
    /// this command: send the versions of those packages this machine's dpkg (else rpm)
    /// database holds, so the lab's kubeadm and kubelet act as the installed packages would.
    #[arg(long)]
    pub report_installed: bool,
    /// The node to run on.
    pub node: String,
    /// The command and its arguments (after `--`); a single word is a shell line, like
    /// ssh's remote command. Empty: read lines from stdin.
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// A client for one lab's node-shell endpoint.
pub struct NodeShellClient {
    client: kube::Client,
}

impl NodeShellClient {
    /// From a kubeconfig file (the server address and credentials of its context).
    pub async fn from_kubeconfig(
        path: &std::path::Path,
        context: Option<String>,
    ) -> anyhow::Result<Self> {
        // A program embedding the lab may link a second rustls provider; name the
        // process default (ring, as the server uses) before building a client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kc = kube::config::Kubeconfig::read_from(path).with_context(|| {
            format!(
                "reading kubeconfig {} (write one with upkeep-lab serve --kubeconfig)",
                path.display()
            )
        })?;
        let opts = kube::config::KubeConfigOptions {
            context,
            ..Default::default()
        };
        let cfg = kube::Config::from_custom_kubeconfig(kc, &opts)
            .await
            .with_context(|| format!("loading kubeconfig {}", path.display()))?;
        Ok(NodeShellClient {
            client: kube::Client::try_from(cfg).context("building the API client")?,
        })
    }

    /// Run `argv` on `node`.
    pub async fn exec(
        &self,
        node: &str,
        argv: &[String],
        stdin: &str,
    ) -> anyhow::Result<ExecResponse> {
        self.exec_reporting(node, argv, stdin, BTreeMap::new())
            .await
    }

    /// Run `argv` on `node`, after reporting a real node's installed package versions.
    pub async fn exec_reporting(
        &self,
        node: &str,
        argv: &[String],
        stdin: &str,
        installed: BTreeMap<String, String>,
    ) -> anyhow::Result<ExecResponse> {
        let body = serde_json::to_vec(&ExecRequest {
            argv: argv.to_vec(),
            stdin: stdin.to_string(),
            installed,
        })?;
        let req = http::Request::post(format!("/lab/v1/nodes/{node}/exec"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)?;
        match self.client.request::<ExecResponse>(req).await {
            Ok(r) => Ok(r),
            // The lab names the missing node in the Status details.
            Err(kube::Error::Api(s))
                if s.code == 404 && s.details.as_ref().is_some_and(|d| d.kind == "nodes") =>
            {
                anyhow::bail!("{}", s.message)
            }
            Err(kube::Error::Api(s)) if s.code == 404 => anyhow::bail!(
                "{}: this server has no node-shell endpoint (is it an upkeep-lab?)",
                s.message
            ),
            Err(kube::Error::Api(s)) => anyhow::bail!("{} ({})", s.message, s.reason),
            Err(e) => {
                Err(anyhow::Error::new(e).context(format!("running a command on node {node}")))
            }
        }
    }
}

/// Run the subcommand; returns the exit code to use.
pub async fn run(args: NodeShellArgs) -> anyhow::Result<i32> {
    let client = NodeShellClient::from_kubeconfig(&args.kubeconfig, args.context.clone()).await?;
    if !args.command.is_empty() {
        // One argument is a shell line, as ssh takes its remote command (remote-shell
        // templates append `cmd.shell_line()` as one word); several are an argv.
        let argv = match args.command.as_slice() {
            [line] => vec!["sh".to_string(), "-c".to_string(), line.clone()],
            many => many.to_vec(),
        };
        let installed = if args.report_installed {
            installed_packages()?
        } else {
            BTreeMap::new()
        };
        let r = client
            .exec_reporting(&args.node, &argv, "", installed)
            .await?;
        print_output(&r);
        return Ok(r.code);
    }
    // Line mode: one `sh -c` per line.
    let stdin = std::io::stdin();
    let interactive = stdin.is_terminal();
    let mut last = 0;
    loop {
        if interactive {
            print!("root@{}:~# ", args.node);
            std::io::stdout().flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if line == "exit" || line == "logout" {
            break;
        }
        let r = client
            .exec(
                &args.node,
                &["sh".to_string(), "-c".to_string(), line.to_string()],
                "",
            )
            .await?;
        print_output(&r);
        last = r.code;
    }
    Ok(last)
}

/// The Kubernetes packages this machine's package databases hold: dpkg's (`dpkg-query`),
/// then rpm's (`rpm -q`), each where that tool exists; a machine may carry both (Debian's
/// rpm on a Debian root), so the answers are merged. Packages not installed are left out.
fn installed_packages() -> anyhow::Result<BTreeMap<String, String>> {
    const PACKAGES: [&str; 3] = ["kubeadm", "kubelet", "kubectl"];
    let queries: [(&str, &[&str]); 2] = [
        (
            "dpkg-query",
            &["-W", "-f", "${db:Status-Status} ${Package} ${Version}\\n"],
        ),
        (
            "rpm",
            &["-q", "--qf", "installed %{NAME} %{VERSION}-%{RELEASE}\\n"],
        ),
    ];
    let mut found = BTreeMap::new();
    let mut ran = Vec::new();
    for (tool, args) in queries {
        // Both exit non-zero when one of the packages is absent; the others are still listed.
        let Ok(out) = std::process::Command::new(tool)
            .args(args)
            .args(PACKAGES)
            .stderr(std::process::Stdio::null())
            .output()
        else {
            continue;
        };
        ran.push(tool);
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let mut w = l.split_whitespace();
            if let (Some("installed"), Some(p), Some(v)) = (w.next(), w.next(), w.next()) {
                found.entry(p.to_string()).or_insert_with(|| v.to_string());
            }
        }
    }
    if ran.is_empty() {
        anyhow::bail!(
            "--report-installed: neither dpkg-query nor rpm runs here; it reads a real node's package database"
        );
    }
    Ok(found)
}

fn print_output(r: &ExecResponse) {
    print!("{}", r.stdout);
    eprint!("{}", r.stderr);
    let _ = std::io::stdout().flush();
}
