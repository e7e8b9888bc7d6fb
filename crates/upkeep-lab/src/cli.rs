//! The command line of `upkeep-lab`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "upkeep-lab",
    version,
    about = "A simulated Kubernetes cluster in one process, for tests, demos, practice and benchmarks"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve a simulated cluster until SIGINT or SIGTERM.
    #[command(after_help = "Examples:
  # an empty cluster (namespaces only) over HTTPS on a free port
  upkeep-lab serve --kubeconfig /tmp/lab.kubeconfig
  kubectl --kubeconfig /tmp/lab.kubeconfig get namespaces

  # a fixed port, an older server version, plain HTTP
  upkeep-lab serve --listen 127.0.0.1:6443 --version v1.33.4 --insecure-http --kubeconfig ./kubeconfig

  # a scenario (built-in name or a YAML file), 100x faster lab time
  upkeep-lab serve --scenario os-upgrade --time-scale 100 --kubeconfig ./kubeconfig

  # objects in a real etcd the lab starts on ./etcd-data (a later run serves what is there)
  upkeep-lab serve --scenario backup-restore --etcd-data-dir ./etcd-data --kubeconfig ./kubeconfig

The kubeconfig is written only once the server answers. Contexts: upkeep-lab (admin,
client certificate), upkeep-lab-token (admin, bearer token), readonly (token; writes get 403).")]
    Serve(ServeArgs),
    /// Run a command on a lab node, as if logged in to it (apt, dnf, kubeadm, systemctl...).
    #[command(after_help = "Examples:
  # the package versions the node's configured repository offers
  upkeep-lab node-shell --kubeconfig ./kubeconfig node01 -- apt-cache madison kubeadm

  # a whole script, as an upgrade tool would send it
  upkeep-lab node-shell --kubeconfig ./kubeconfig node01 -- sh -c \\
    'apt-mark unhold kubeadm && apt-get update && apt-get install -y kubeadm=1.35.1-* && apt-mark hold kubeadm'

  # switch the node to the v1.35 repository, then upgrade it
  upkeep-lab node-shell --kubeconfig ./kubeconfig node01 -- sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list
  upkeep-lab node-shell --kubeconfig ./kubeconfig node01 -- kubeadm upgrade node

  # line by line from stdin (no command after --)
  printf 'kubeadm version -o short\\nsystemctl restart kubelet\\n' | upkeep-lab node-shell --kubeconfig ./kubeconfig node01

Prints the command's stdout and stderr and exits with its code (127: command not found).
Faults: POST /lab/v1/nodes/NODE/faults with {\"fail\": \"kubeadm upgrade node\", \"times\": 1}.")]
    NodeShell(crate::nodeshell::client::NodeShellArgs),
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Scenario to load: a built-in name or a multi-document YAML file.
    #[arg(long, value_name = "FILE|NAME")]
    pub scenario: Option<String>,
    /// Server version reported by /version, e.g. v1.34.2 (overrides the scenario's).
    #[arg(long, value_name = "vX.Y.Z")]
    pub version: Option<String>,
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Serve plain HTTP instead of HTTPS (no client certificates; tokens still apply).
    #[arg(long)]
    pub insecure_http: bool,
    /// Lab seconds per real second (e.g. 100: five lab minutes pass in 3 s).
    #[arg(long, value_name = "X")]
    pub time_scale: Option<f64>,
    /// Timing profile: fast (default) or realistic (grace periods honoured, readiness probe
    /// delays waited for; overrides the scenario's `timing.profile`).
    #[arg(long, value_name = "fast|realistic")]
    pub profile: Option<crate::sim::Profile>,
    /// Changes kept for resuming watches (older resourceVersions get 410 Gone).
    #[arg(long, value_name = "N", default_value_t = upkeep_lab_default_history())]
    pub watch_history: usize,
    /// Keep every object in this etcd (plain http), laid out as kube-apiserver does; a
    /// cluster already there is served as it is, the scenario applies only to an empty etcd.
    #[arg(long, value_name = "URL", conflicts_with = "etcd_data_dir")]
    pub etcd_endpoints: Option<String>,
    /// Start the installed etcd on loopback on this data directory (created if missing, e.g.
    /// one `kubectl backup etcd restore` wrote), keep every object there, stop it on exit.
    #[arg(long, value_name = "DIR")]
    pub etcd_data_dir: Option<PathBuf>,
    /// The etcd to start for --etcd-data-dir.
    #[arg(
        long,
        value_name = "PATH",
        default_value = "etcd",
        requires = "etcd_data_dir"
    )]
    pub etcd_binary: PathBuf,
    /// Where to write the kubeconfig for this lab.
    #[arg(long, value_name = "PATH")]
    pub kubeconfig: PathBuf,
}

fn upkeep_lab_default_history() -> usize {
    crate::store::DEFAULT_HISTORY
}

impl ServeArgs {
    /// What `upkeep-lab serve` runs (also how the tests' kit starts a lab in-process).
    pub fn into_command(self) -> crate::server::ServeCommand {
        use crate::server::EtcdTarget;
        crate::server::ServeCommand {
            scenario: self.scenario,
            version: self.version,
            listen: self.listen,
            tls: !self.insecure_http,
            kubeconfig: self.kubeconfig,
            time_scale: self.time_scale,
            profile: self.profile,
            watch_history: self.watch_history,
            etcd: match (self.etcd_endpoints, self.etcd_data_dir) {
                (Some(url), _) => Some(EtcdTarget::Endpoint(url)),
                (None, Some(dir)) => Some(EtcdTarget::DataDir(dir, self.etcd_binary)),
                (None, None) => None,
            },
        }
    }
}
