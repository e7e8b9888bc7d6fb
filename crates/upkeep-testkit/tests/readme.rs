//! The READMEs' transcripts, run against the built binaries: every fenced block whose
//! first line is `$ COMMAND` is a transcript, and its output must be what the
//! binaries print today, so the READMEs cannot drift from them.
//!
//! A transcript block says what it runs against in an HTML comment on the line
//! before its fence (blocks without one continue on the previous block's setup):
//!
//! - `<!-- transcript: lab SCENARIO -->`: a fresh `upkeep-lab serve --scenario
//!   SCENARIO` (a built-in name, or a file's path from the workspace root),
//!   `KUBECONFIG` pointing at it, the plugins and real kubectl on `PATH`;
//! - `<!-- transcript: etcd -->`: a real etcd (Debian's 3.4) with TLS and
//!   client-certificate auth, 40 keys written, `ETCDCTL_*` pointing at it, and a
//!   kubeadm layout (`/etc/kubernetes/manifests/{etcd,kube-apiserver}.yaml`).
//!   Each command runs as root in its own mount namespace with overlays on `/etc`
//!   and `/var` that persist across the setup's commands, so `/var/backups` and
//!   `/etc/kubernetes` read as on a control plane and the host is never written;
//!   `sudo` runs the command as is (with the environment, as `sudo -E` would);
//! - `<!-- transcript: not run: REASON -->`: shown, not run (a real kubeadm node,
//!   say). The test prints each one with its reason, and a transcript with neither
//!   marker nor a previous setup fails the test: nothing is skipped silently.
//!
//! Each command runs with `sh -c` (stdout and stderr into one pipe, as a terminal
//! shows them) after a `(exit N)` that restores the previous command's exit code
//! for a `$ echo $?`. A line `(exit code N)` after a command's output, or the
//! output of a `$ echo $?` after it, is its expected non-zero exit code; a line
//! `...` stands for any number of lines (output shortened by hand). Before
//! comparing, both sides go through the same filters (`upkeep_testkit::snapshot::FILTERS`): the lab's port,
//! random name suffixes, durations, and the order of what runs concurrently
//! (`snapshot::UNORDERED`). `UPKEEP_README_BLESS=1` writes what the binaries print into the
//! READMEs in place of the transcripts that differ.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use upkeep_testkit::etcd::{Etcd, KUBEADM_ETCD_MANIFEST, Pki, etcdctl_ok, free_port};
use upkeep_testkit::{Lab, bin, kubectl_path, run_bounded, wait_for, workspace_root};

/// The README files whose transcripts are checked: the workspace's and every crate's.
fn readmes(root: &Path) -> Vec<String> {
    let mut files = vec!["README.md".to_string()];
    let mut crates: Vec<String> = std::fs::read_dir(root.join("crates"))
        .expect("read crates/")
        .filter_map(|e| e.ok())
        .map(|e| format!("crates/{}/README.md", e.file_name().to_string_lossy()))
        .filter(|f| root.join(f).is_file())
        .collect();
    crates.sort();
    files.extend(crates);
    files
}

#[derive(Debug, Clone, PartialEq)]
enum Setup {
    Lab(String),
    Etcd,
    NotRun(String),
}

#[derive(Debug)]
struct Step {
    /// 1-based line of the `$ ` command; its output follows, up to `end`.
    line: usize,
    /// 0-based index of the first line after the output (next command or fence).
    end: usize,
    command: String,
    expected: String,
    exit: i32,
}

#[derive(Debug)]
struct Transcript {
    file: String,
    line: usize,
    /// `None`: continues on the previous transcript's setup.
    setup: Option<Setup>,
    steps: Vec<Step>,
}

fn parse(file: &str, text: &str) -> Vec<Transcript> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let fence = lines[i].trim_start();
        if !fence.starts_with("```") || !lines.get(i + 1).is_some_and(|l| l.starts_with("$ ")) {
            i += 1;
            continue;
        }
        let setup = i
            .checked_sub(1)
            .and_then(|p| lines[p].trim().strip_prefix("<!-- transcript:"))
            .and_then(|m| m.strip_suffix("-->"))
            .map(|m| {
                let m = m.trim();
                if let Some(reason) = m.strip_prefix("not run:") {
                    Setup::NotRun(reason.trim().to_string())
                } else if m == "etcd" {
                    Setup::Etcd
                } else if let Some(scenario) = m.strip_prefix("lab ") {
                    Setup::Lab(scenario.trim().to_string())
                } else {
                    panic!("{file}:{i}: unknown transcript marker {m:?}")
                }
            });
        let start = i + 1;
        let mut end = start;
        while end < lines.len() && !lines[end].trim_start().starts_with("```") {
            end += 1;
        }
        let mut steps: Vec<Step> = Vec::new();
        for (n, l) in lines[start..end].iter().enumerate() {
            if let Some(cmd) = l.strip_prefix("$ ") {
                steps.push(Step {
                    line: start + n + 1,
                    end: start + n + 1,
                    command: cmd.to_string(),
                    expected: String::new(),
                    exit: 0,
                });
            } else {
                let step = steps.last_mut().expect("a transcript starts with `$ `");
                step.end = start + n + 1;
                step.expected.push_str(l);
                step.expected.push('\n');
            }
        }
        for step in &mut steps {
            let mut body: Vec<&str> = step.expected.lines().collect();
            while body.last().is_some_and(|l| l.trim().is_empty()) {
                body.pop();
            }
            if let Some(code) = body
                .last()
                .and_then(|l| l.strip_prefix("(exit code "))
                .and_then(|l| l.strip_suffix(')'))
            {
                step.exit = code.parse().expect("(exit code N)");
                body.pop();
                while body.last().is_some_and(|l| l.trim().is_empty()) {
                    body.pop();
                }
            }
            step.expected = body.iter().map(|l| format!("{l}\n")).collect();
        }
        // `$ echo $?` shows the previous command's exit code.
        for n in 1..steps.len() {
            if steps[n].command.trim() == "echo $?" {
                steps[n - 1].exit = steps[n]
                    .expected
                    .trim()
                    .parse()
                    .expect("`echo $?` prints a code");
            }
        }
        out.push(Transcript {
            file: file.to_string(),
            line: i + 1,
            setup,
            steps,
        });
        i = end + 1;
    }
    out
}

fn filtered(text: &str) -> String {
    upkeep_testkit::snapshot::normalize(None, text)
}

/// `want` (a README's output, filtered) against `got`: line for line, where a line
/// `...` in `want` stands for any number of lines (output shortened by hand).
fn matches(want: &str, got: &str) -> bool {
    fn lines(want: &[&str], got: &[&str]) -> bool {
        match want.split_first() {
            None => got.is_empty(),
            Some((&"...", rest)) => (0..=got.len()).any(|k| lines(rest, &got[k..])),
            Some((w, rest)) => got.first() == Some(w) && lines(rest, &got[1..]),
        }
    }
    let want: Vec<&str> = want.lines().collect();
    let got: Vec<&str> = got.lines().collect();
    lines(&want, &got)
}

/// A directory holding only what the transcripts run: the plugins, the lab and real
/// kubectl (kubectl treats every `kubectl-*` on PATH as a plugin).
fn path_dir(dir: &Path) -> PathBuf {
    let bin_dir = dir.join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    for b in [
        "upkeep-lab",
        "kubectl-skew",
        "kubectl-safedrain",
        "kubectl-upgrade_node",
        "kubectl-backup",
    ] {
        std::os::unix::fs::symlink(bin(b), bin_dir.join(b)).expect("link a binary");
    }
    std::os::unix::fs::symlink(kubectl_path(), bin_dir.join("kubectl")).expect("link kubectl");
    // The etcd transcripts show `sudo`, as a user runs them; the test runs as root.
    let sudo = bin_dir.join("sudo");
    std::fs::write(&sudo, "#!/bin/sh\nexec \"$@\"\n").expect("sudo");
    std::fs::set_permissions(&sudo, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod sudo");
    bin_dir
}

/// A lab for the transcripts, its pods Ready as the README shows them.
fn start_lab(scenario: &str) -> Lab {
    // A built-in scenario's name, or a scenario file's path from the workspace root.
    let lab = if scenario.contains('/') {
        Lab::scenario(&workspace_root().join(scenario).display().to_string())
    } else {
        Lab::scenario(scenario)
    };
    wait_for(
        "the scenario's pods to be Ready",
        Duration::from_secs(60),
        || {
            let pods = lab.pods();
            (!pods.is_empty() && pods.iter().all(upkeep_testkit::running_ready)).then_some(())
        },
    );
    lab
}

/// What a transcript's commands run against.
enum Rig {
    Lab(Lab),
    Etcd(EtcdRig),
}

impl Rig {
    fn dir(&self) -> &Path {
        match self {
            Rig::Lab(lab) => lab.dir(),
            Rig::Etcd(rig) => rig.dir.path(),
        }
    }
}

/// A real etcd member and a control plane's `/etc` and `/var` as overlays.
struct EtcdRig {
    dir: tempfile::TempDir,
    etcd: Etcd,
    pki: Pki,
}

impl EtcdRig {
    fn start() -> EtcdRig {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        for d in ["pki", "etc-up", "etc-work", "var-up/backups", "var-work"] {
            std::fs::create_dir_all(root.join(d)).expect("etcd rig dirs");
        }
        let manifests = root.join("etc-up/kubernetes/manifests");
        std::fs::create_dir_all(&manifests).expect("manifests dir");
        std::fs::write(manifests.join("etcd.yaml"), KUBEADM_ETCD_MANIFEST).expect("etcd.yaml");
        std::fs::write(manifests.join("kube-apiserver.yaml"), "kind: Pod\n").expect("apiserver");
        let pki = Pki::generate(&root.join("pki"));
        let etcd = Etcd::start(
            &pki,
            &root.join("member"),
            "default",
            free_port(),
            root.join("etcd.log"),
        );
        for i in 1..=40 {
            etcdctl_ok(
                &pki,
                &etcd.endpoint,
                &["put", &format!("/registry/k{i:02}"), &format!("v{i:02}")],
            );
        }
        EtcdRig { dir, etcd, pki }
    }
}

/// Filters for a real etcd's snapshots only: its member id comes from the peer
/// URL (a free port), so the bytes, their sha256 and etcdutl's crc32 vary.
const ETCD_FILTERS: &[(&str, &str)] = &[
    (r"\b[0-9a-f]{64}\b", "[SHA256]"),
    (r"sha256 ok \([0-9a-f]{12}\)", "sha256 ok ([SHA256])"),
    (r"\b[0-9a-f]{8}\b", "[CRC32]"),
    // `ls -l`: size and modification time.
    (
        r"root root +\d+ \w{3} [ \d]\d \d{2}:\d{2}",
        "root root [SIZE] [MTIME]",
    ),
    // The backup copy of etcd.yaml is named after the time of the restore.
    (r"\d{8}T\d{6}Z", "[TIME]"),
];

fn filtered_for(setup: &Setup, text: &str) -> String {
    let text = filtered(text);
    if *setup == Setup::Etcd {
        upkeep_testkit::snapshot::replace(&text, ETCD_FILTERS)
    } else {
        text
    }
}

fn run_step(rig: &Rig, path: &Path, prev_exit: i32, step: &Step) -> (i32, String) {
    let script = format!("exec 2>&1\n(exit {prev_exit})\n{}", step.command);
    let mut cmd = Command::new("sh");
    match rig {
        Rig::Lab(lab) => {
            cmd.arg("-c").arg(script).env("KUBECONFIG", &lab.kubeconfig);
        }
        Rig::Etcd(e) => {
            // Overlays, not bind mounts: /etc/kubernetes need not exist on the host.
            let d = e.dir.path().display();
            let mounts = format!(
                "mount -t overlay overlay -o lowerdir=/etc,upperdir={d}/etc-up,workdir={d}/etc-work /etc \
                 && mount -t overlay overlay -o lowerdir=/var,upperdir={d}/var-up,workdir={d}/var-work /var \
                 && exec sh -c \"$0\""
            );
            cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg(mounts)
                .arg(script)
                .env("ETCDCTL_API", "3")
                .env("ETCDCTL_ENDPOINTS", &e.etcd.endpoint)
                .env("ETCDCTL_CACERT", &e.pki.ca)
                .env("ETCDCTL_CERT", &e.pki.client_cert)
                .env("ETCDCTL_KEY", &e.pki.client_key);
        }
    }
    cmd.current_dir(rig.dir())
        .env("PATH", format!("{}:/usr/bin:/bin", path.display()))
        .env("NO_COLOR", "1")
        .env_remove("KUBECTL_EXTERNAL_DIFF")
        .stdin(Stdio::null());
    let out = run_bounded(cmd, Duration::from_secs(120));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn the_readme_transcripts_are_what_the_binaries_print() {
    let root = workspace_root();
    let mut transcripts = Vec::new();
    let files = readmes(&root);
    for file in &files {
        let text = std::fs::read_to_string(root.join(file)).expect("read a README");
        transcripts.extend(parse(file, &text));
    }
    assert!(
        transcripts.len() >= 6,
        "the READMEs' transcripts were not found: {transcripts:?}"
    );

    let scratch = tempfile::tempdir().expect("tempdir");
    let path = path_dir(scratch.path());
    let mut rig: Option<Rig> = None;
    let mut current: Option<Setup> = None;
    let mut failures = Vec::new();
    let mut ran = 0;
    // (file, step line) -> what the binaries printed, for UPKEEP_README_BLESS.
    let mut actual: Vec<(String, usize, i32, String)> = Vec::new();
    let mut file = "";
    for t in &transcripts {
        // A README's first transcript names its setup: nothing carries over from another file.
        if t.file != file {
            file = &t.file;
            current = None;
            rig = None;
        }
        if t.setup.is_some() {
            current = t.setup.clone();
            rig = match &current {
                Some(Setup::Lab(scenario)) => Some(Rig::Lab(start_lab(scenario))),
                Some(Setup::Etcd) => Some(Rig::Etcd(EtcdRig::start())),
                _ => None,
            };
        }
        let at = format!("{}:{}", t.file, t.line);
        match &current {
            None => panic!(
                "{at}: a transcript without a setup: put `<!-- transcript: lab SCENARIO -->` \
                 or `<!-- transcript: not run: REASON -->` on the line before its fence"
            ),
            Some(Setup::NotRun(reason)) => {
                eprintln!("{at}: not run: {reason}");
                continue;
            }
            Some(Setup::Lab(_) | Setup::Etcd) => {}
        }
        let setup = current.as_ref().expect("a setup");
        let rig = rig.as_ref().expect("a lab or an etcd");
        let mut prev_exit = 0;
        for step in &t.steps {
            let (exit, output) = run_step(rig, &path, prev_exit, step);
            prev_exit = exit;
            ran += 1;
            let (want, got) = (
                filtered_for(setup, &step.expected),
                filtered_for(setup, &output),
            );
            if exit != step.exit || !matches(&want, &got) {
                actual.push((t.file.clone(), step.line, exit, output.clone()));
                let first = want
                    .lines()
                    .zip(got.lines().chain(std::iter::repeat("<end>")))
                    .position(|(w, g)| w != g)
                    .unwrap_or(want.lines().count());
                failures.push(format!(
                    "{}:{}: $ {}\n--- README (exit {}, filtered)\n{want}--- binaries (exit {exit}, filtered)\n{got}\
                     --- first difference at output line {}\n",
                    t.file,
                    step.line,
                    step.command,
                    step.exit,
                    first + 1
                ));
            }
        }
    }
    assert!(ran > 0, "no transcript ran");
    if std::env::var_os("UPKEEP_README_BLESS").is_some() {
        bless(&root, &files, &transcripts, &actual);
    }
    assert!(
        failures.is_empty(),
        "{} of {ran} README commands print something else today (fix the README to the \
         binaries' output, or the binaries; UPKEEP_README_BLESS=1 writes their output \
         into the READMEs):\n\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Writes what the binaries printed into the READMEs, in place of the transcripts
/// that differ (UPKEEP_README_BLESS=1); review the diff before committing it.
fn bless(
    root: &Path,
    files: &[String],
    transcripts: &[Transcript],
    actual: &[(String, usize, i32, String)],
) {
    for file in files {
        let path = root.join(file);
        let text = std::fs::read_to_string(&path).expect("read a README");
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let steps = transcripts
            .iter()
            .filter(|t| t.file == *file)
            .flat_map(|t| {
                t.steps
                    .iter()
                    .zip(t.steps.iter().skip(1).map(Some).chain([None]))
            });
        let mut edits: Vec<(usize, usize, Vec<String>)> = Vec::new();
        for (step, next) in steps {
            let Some((_, _, exit, output)) = actual
                .iter()
                .find(|(f, line, _, _)| f == file && *line == step.line)
            else {
                continue;
            };
            let mut new: Vec<String> = output.lines().map(|l| l.trim_end().to_string()).collect();
            while new.last().is_some_and(|l| l.is_empty()) {
                new.pop();
            }
            let echoed = next.is_some_and(|n| n.command.trim() == "echo $?");
            if *exit != 0 && !echoed {
                new.push(format!("(exit code {exit})"));
            }
            if step.end > step.line && lines[step.end - 1].trim().is_empty() {
                new.push(String::new());
            }
            edits.push((step.line, step.end, new));
        }
        for (start, end, new) in edits.into_iter().rev() {
            lines.splice(start..end, new);
        }
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).expect("write a README");
    }
}

#[test]
fn the_filters_hide_only_what_changes_between_runs_and_the_order_of_concurrent_work() {
    assert_eq!(
        filtered(
            "context \"upkeep-lab\" (server https://127.0.0.1:40125/)\n \
             default  blue-7499c9d699-9rghn  ReplicaSet/blue-7499c9d699  evict\n \
             kube-proxy-6vwc8 coredns-697ffcd56b-w5pgk node01 hr-app\n\
             drained in 4.1s  \n\
             evicting pod default/b\n\
             pod/b evicted\n\
             evicting pod default/a\n\
             x/Deployment/b: 1/1 ready elsewhere (whole)\n\
             x/Deployment/a: 1/1 ready elsewhere (whole)\n\
             default  blue-7499c9d699-9rghn  Deployment/blue  y@node02, x@node01\n"
        ),
        "context \"upkeep-lab\" (server https://127.0.0.1:[PORT]/)\n \
         default  blue-[ID]  ReplicaSet/blue-7499c9d699  evict\n \
         kube-proxy-[ID] coredns-[ID] node01 hr-app\n\
         drained in [DURATION]\n\
         evicting pod default/a\n\
         evicting pod default/b\n\
         pod/b evicted\n\
         x/Deployment/a: 1/1 ready elsewhere (whole)\n\
         x/Deployment/b: 1/1 ready elsewhere (whole)\n\
         default  blue-[ID]  Deployment/blue  x@node01, y@node02\n"
    );
}

#[test]
fn an_ellipsis_line_stands_for_any_lines() {
    assert!(matches("a\n...\nd\n", "a\nb\nc\nd\n"));
    assert!(matches("a\n...\nd\n", "a\nd\n"));
    assert!(!matches("a\n...\nd\n", "a\nb\n"));
    assert!(!matches("a\nd\n", "a\nb\nd\n"));
}

#[test]
fn transcripts_are_parsed_with_their_exit_codes_and_markers() {
    let md = "text\n<!-- transcript: lab os-upgrade -->\n```\n$ kubectl skew\nA\n\n(exit code 1)\n\n$ echo $?\n1\n```\n```sh\nnot a transcript\n```\n```\n$ true\n```\n";
    let t = parse("X.md", md);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].setup, Some(Setup::Lab("os-upgrade".into())));
    assert_eq!(t[0].steps[0].command, "kubectl skew");
    assert_eq!(t[0].steps[0].expected, "A\n");
    assert_eq!(t[0].steps[0].exit, 1);
    let shown = parse("Y.md", "```\n$ false\n$ echo $?\n1\n```\n");
    assert_eq!(shown[0].steps[0].exit, 1, "`echo $?` shows the exit code");
    assert_eq!(t[0].steps[1].expected, "1\n");
    assert_eq!(t[0].steps[1].exit, 0);
    assert_eq!(t[1].setup, None);
}
