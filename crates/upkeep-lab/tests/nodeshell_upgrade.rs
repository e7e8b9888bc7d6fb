//! A full kubeadm upgrade of one control-plane node and one worker of the `cluster-upgrade`
//! scenario, driven through the node-shell endpoint over HTTPS, checked through the API:
//! `/version`, the mirror pods' images, the Node's kubeletVersion, the kubeadm-config
//! ConfigMap and the kube-proxy DaemonSet; plus faults, unknown nodes and a privileged pod.

use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::{Api, PostParams};
use serde_json::json;
use upkeep_lab::nodeshell::http::ExecResponse;

mod served;
use served::{Scenario, Served as Harness};
use upkeep_lab::{Lab, LabOptions};

async fn harness() -> Harness {
    served::serve(Scenario::Builtin("cluster-upgrade"), 20.0).await
}

impl Harness {
    async fn sh(&self, node: &str, script: &str) -> ExecResponse {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        self.shell
            .exec(node, &argv, "")
            .await
            .expect("exec request")
    }

    async fn ok(&self, node: &str, script: &str) -> ExecResponse {
        let r = self.sh(node, script).await;
        assert_eq!(
            r.code, 0,
            "{node}: {script}\nstdout:\n{}\nstderr:\n{}",
            r.stdout, r.stderr
        );
        r
    }

    async fn kubelet_version(&self, node: &str) -> String {
        let n = Api::<Node>::all(self.kube.clone()).get(node).await.unwrap();
        n.status
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version)
            .unwrap_or_default()
    }

    async fn image(&self, pod: &str) -> String {
        let p = Api::<Pod>::namespaced(self.kube.clone(), "kube-system")
            .get(pod)
            .await
            .unwrap();
        p.spec.unwrap().containers[0]
            .image
            .clone()
            .unwrap_or_default()
    }

    async fn server_version(&self) -> String {
        self.kube.apiserver_version().await.unwrap().git_version
    }

    async fn kube_proxy_image(&self) -> String {
        let ds = Api::<DaemonSet>::namespaced(self.kube.clone(), "kube-system")
            .get("kube-proxy")
            .await
            .unwrap();
        let v = serde_json::to_value(ds).unwrap();
        v.pointer("/spec/template/spec/containers/0/image")
            .and_then(|i| i.as_str())
            .unwrap_or_default()
            .to_string()
    }
}

/// A node-shell run as a user reads it, for a whole-output snapshot: the command, its
/// stdout, its stderr, and its exit code when not 0.
fn shown(node: &str, script: &str, r: &ExecResponse) -> String {
    let block = |text: &str| {
        if text.is_empty() || text.ends_with('\n') {
            text.to_string()
        } else {
            format!("{text}\n")
        }
    };
    let mut text = format!("{node}$ {script}\n{}", block(&r.stdout));
    if !r.stderr.is_empty() {
        text.push_str(&format!("--- stderr ---\n{}", block(&r.stderr)));
    }
    if r.code != 0 {
        text.push_str(&format!("--- exit {} ---\n", r.code));
    }
    text
}

/// Poll an async condition until it holds, failing after `secs`.
macro_rules! wait_for {
    ($what:expr, $secs:expr, $cond:expr) => {{
        let deadline = Instant::now() + Duration::from_secs($secs);
        loop {
            if $cond {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {}s waiting for {}",
                $secs,
                $what
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }};
}

/// The package steps of the upgrade page for one node (apt, Debian/Ubuntu tab).
const KUBEADM_PACKAGE: &str = "sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && \
     apt-mark unhold kubeadm && apt-get update && apt-get install -y kubeadm='1.35.2-*' && apt-mark hold kubeadm";
const KUBELET_PACKAGES: &str = "apt-mark unhold kubelet kubectl && apt-get update && \
     apt-get install -y kubelet='1.35.2-*' kubectl='1.35.2-*' && apt-mark hold kubelet kubectl";
const RESTART: &str = "sudo systemctl daemon-reload && sudo systemctl restart kubelet";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeadm_upgrade_of_a_control_plane_node_and_a_worker() {
    let h = harness().await;
    assert_eq!(h.server_version().await, "v1.34.3");
    assert_eq!(
        h.image("kube-apiserver-controlplane01").await,
        "registry.k8s.io/kube-apiserver:v1.34.3"
    );

    // The first control plane: kubeadm package, plan, apply, kubelet packages, restart.
    let cp = "controlplane01";
    assert_eq!(
        h.ok(cp, "cat /etc/os-release").await.stdout.lines().next(),
        Some("PRETTY_NAME=\"Ubuntu 24.04.3 LTS\"")
    );
    // The repositories are the scenario's: v1.34 publishes .0 to .4.
    let madison = h.ok(cp, "apt-cache madison kubeadm").await;
    let published: Vec<&str> = madison
        .stdout
        .lines()
        .map(|l| l.split('|').nth(1).unwrap_or("").trim())
        .collect();
    assert_eq!(
        published,
        [
            "1.34.4-1.1",
            "1.34.3-1.1",
            "1.34.2-1.1",
            "1.34.1-1.1",
            "1.34.0-1.1"
        ]
    );
    h.ok(cp, KUBEADM_PACKAGE).await;
    assert_eq!(
        h.ok(cp, "kubeadm version -o short").await.stdout,
        "v1.35.2\n"
    );
    // The plan names the command to run; apply ends in "[upgrade] SUCCESS!".
    let mut said = String::new();
    for script in [
        "sudo kubeadm upgrade plan",
        "sudo kubeadm upgrade apply v1.35.2 --yes",
    ] {
        said.push_str(&shown(cp, script, &h.ok(cp, script).await));
    }
    upkeep_testkit::assert_output!("kubeadm_upgrade_plan_and_apply_v1_35", said);
    // The cluster answers with the new version; this node's control plane runs it.
    assert_eq!(h.server_version().await, "v1.35.2");
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        assert_eq!(
            h.image(&format!("{c}-{cp}")).await,
            format!("registry.k8s.io/{c}:v1.35.2")
        );
        assert_eq!(
            h.image(&format!("{c}-controlplane02")).await,
            format!("registry.k8s.io/{c}:v1.34.3")
        );
    }
    // etcd follows the version kubeadm pins for v1.35.
    assert_eq!(
        h.image(&format!("etcd-{cp}")).await,
        "registry.k8s.io/etcd:3.6.5-0"
    );
    assert_eq!(
        h.image("etcd-controlplane02").await,
        "registry.k8s.io/etcd:3.6.4-0"
    );
    let cm = Api::<ConfigMap>::namespaced(h.kube.clone(), "kube-system")
        .get("kubeadm-config")
        .await
        .unwrap();
    let cc = cm
        .data
        .unwrap_or_default()
        .get("ClusterConfiguration")
        .cloned()
        .unwrap_or_default();
    let cc: serde_json::Value = serde_saphyr::from_str(&cc).expect("ClusterConfiguration is YAML");
    assert_eq!(cc["kubernetesVersion"], "v1.35.2", "{cc:#}");
    // Addons wait for every control plane (kubeadm since v1.28).
    assert!(h.kube_proxy_image().await.ends_with(":v1.34.3"));
    let backups = h.ok(cp, "ls /etc/kubernetes/tmp").await;
    upkeep_testkit::assert_output!(
        "kubeadm_backup_directories",
        shown(cp, "ls /etc/kubernetes/tmp", &backups)
    );
    // kubeadm does not touch the kubelet: the Node still reports v1.34.3 until the restart.
    assert_eq!(h.kubelet_version(cp).await, "v1.34.3");
    h.ok(cp, KUBELET_PACKAGES).await;
    assert_eq!(h.kubelet_version(cp).await, "v1.34.3");
    h.ok(cp, RESTART).await;
    wait_for!(
        "controlplane01 to report kubelet v1.35.2",
        10,
        h.kubelet_version(cp).await == "v1.35.2"
    );

    // A worker, with a fault on the first `kubeadm upgrade node`.
    let w = "node01";
    h.ok(w, KUBEADM_PACKAGE).await;
    let fault: serde_json::Value = h
        .kube
        .request(
            http::Request::post(format!("/lab/v1/nodes/{w}/faults"))
                .header("content-type", "application/json")
                .body(
                    serde_json::to_vec(&json!({"fail": "kubeadm upgrade node", "times": 1}))
                        .unwrap(),
                )
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(fault["faults"][0]["fail"], "kubeadm upgrade node");
    // The fault fails the first run, naming the command; the second upgrades the worker
    // ("Skipping phase. Not a control plane node.").
    let failed = h.sh(w, "sudo kubeadm upgrade node").await;
    assert_eq!(failed.code, 1);
    let node = h.ok(w, "sudo kubeadm upgrade node").await;
    upkeep_testkit::assert_output!(
        "kubeadm_upgrade_node_worker_after_a_fault",
        shown(w, "sudo kubeadm upgrade node", &failed)
            + &shown(w, "sudo kubeadm upgrade node", &node)
    );
    h.ok(w, KUBELET_PACKAGES).await;
    h.ok(w, RESTART).await;
    wait_for!(
        "node01 to report kubelet v1.35.2",
        10,
        h.kubelet_version(w).await == "v1.35.2"
    );
    // The host as the endpoint reports it.
    let host: serde_json::Value = h
        .kube
        .request(
            http::Request::get(format!("/lab/v1/nodes/{w}/host"))
                .body(Vec::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(host["osFamily"], "apt");
    assert_eq!(host["repository"], "v1.35");
    assert_eq!(host["installed"]["kubelet"], "1.35.2-1.1");
    assert_eq!(host["holds"], json!(["kubeadm", "kubectl", "kubelet"]));
    assert_eq!(host["kubeletRunning"], "v1.35.2");
    assert_eq!(host["faults"], json!([]), "the one-time fault is used up");
    // A field of the endpoint's JSON: the command lines run on the node, one of them this.
    assert!(
        host["history"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c.as_str().unwrap().contains("kubeadm upgrade node"))
    );
    // The other workers are untouched.
    assert_eq!(h.kubelet_version("node02").await, "v1.34.3");

    // The second control plane finishes the control plane; then the addons follow.
    h.ok("controlplane02", KUBEADM_PACKAGE).await;
    let n2 = h.ok("controlplane02", "sudo kubeadm upgrade node").await;
    // The last control plane applies the addons ("Applied essential addon: kube-proxy").
    upkeep_testkit::assert_output!(
        "kubeadm_upgrade_node_last_control_plane",
        shown("controlplane02", "sudo kubeadm upgrade node", &n2)
    );
    assert_eq!(
        h.image("kube-apiserver-controlplane02").await,
        "registry.k8s.io/kube-apiserver:v1.35.2"
    );
    assert!(h.kube_proxy_image().await.ends_with(":v1.35.2"));
    h.srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_unknown_nodes_and_privileged_pods() {
    let h = harness().await;
    let mut said = String::new();
    // v1.36 is not released: its repository does not exist ("... does not have a Release
    // file.").
    let script =
        "sed -i 's/v1.34/v1.36/' /etc/apt/sources.list.d/kubernetes.list && apt-get update";
    let r = h.sh("controlplane01", script).await;
    assert_eq!(r.code, 100);
    said.push_str(&shown("controlplane01", script, &r));
    // Two minors up is refused by kubeadm itself ("is too high; kubeadm can upgrade only 1
    // minor version at a time"), and kubeadm 1.35 cannot target 1.36 either ("(36 > 35)");
    // nothing changes.
    let script = "sed -i 's/v1.36/v1.35/' /etc/apt/sources.list.d/kubernetes.list && apt-get update && \
                  apt-get install -y --allow-change-held-packages kubeadm='1.35.2-*' && kubeadm upgrade apply v1.36.0 -y";
    let r = h.sh("controlplane01", script).await;
    assert_eq!(r.code, 1);
    said.push_str(&shown("controlplane01", script, &r));
    upkeep_testkit::assert_output!("refused_unreleased_repository_and_two_minors_up", said);
    assert_eq!(h.server_version().await, "v1.34.3");
    assert_eq!(
        h.image("kube-apiserver-controlplane01").await,
        "registry.k8s.io/kube-apiserver:v1.34.3"
    );
    // A version the repository does not publish.
    let missing = h
        .sh(
            "node02",
            "apt-get install -y --allow-change-held-packages kubeadm='1.34.9-*'",
        )
        .await;
    assert_eq!(
        (missing.code, missing.stderr.as_str()),
        (100, "E: Version '1.34.9-*' for 'kubeadm' was not found\n")
    );
    // An unknown node is a 404 that names it.
    let err = h
        .shell
        .exec("nosuchnode", &["true".to_string()], "")
        .await
        .unwrap_err();
    upkeep_testkit::assert_output!("exec_on_an_unknown_node", format!("{err:#}"));
    // A privileged hostPID pod that nsenters into node03 runs through the same shell.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "host-cmd", "namespace": "kube-system"},
        "spec": {"nodeName": "node03", "hostPID": true, "restartPolicy": "Never",
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "shell", "image": "busybox:1.36",
                                 "securityContext": {"privileged": true},
                                 "command": ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--",
                                             "sh", "-c", "cat /etc/hostname && kubeadm version -o short"]}]}
    }))
    .unwrap();
    let pods = Api::<Pod>::namespaced(h.kube.clone(), "kube-system");
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let phase = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default()
    };
    wait_for!(
        "the host pod to succeed",
        20,
        phase(&pods.get("host-cmd").await.unwrap()) == "Succeeded"
    );
    let log = pods.logs("host-cmd", &Default::default()).await.unwrap();
    assert_eq!(log, "node03\nv1.34.3\n");
    h.srv.shutdown();
}

/// The `upkeep-lab node-shell` command: output, exit codes, line mode, unknown nodes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_shell_command_line() {
    let h = harness().await;
    let kc = h.dir.path().join("kubeconfig");
    let run = |args: &[&str], stdin: &str| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_upkeep-lab"));
        cmd.arg("node-shell")
            .arg("--kubeconfig")
            .arg(&kc)
            .args(args);
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .env("RUST_BACKTRACE", "0");
        let stdin = stdin.to_string();
        async move {
            use tokio::io::AsyncWriteExt;
            let mut child = cmd.spawn().expect("the upkeep-lab binary runs");
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(stdin.as_bytes()).await.unwrap();
            drop(pipe);
            let out = child.wait_with_output().await.unwrap();
            (
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stdout).to_string(),
                String::from_utf8_lossy(&out.stderr).to_string(),
            )
        }
    };
    let (code, out, _) = run(&["node02", "--", "kubeadm", "version", "-o", "short"], "").await;
    assert_eq!((code, out.as_str()), (0, "v1.34.3\n"));
    let (code, _, err) = run(&["node02", "--", "sh", "-c", "echo oops >&2; exit 7"], "").await;
    assert_eq!((code, err.as_str()), (7, "oops\n"));
    let (code, _, err) = run(&["node02", "--", "kubeadmm", "version"], "").await;
    assert_eq!((code, err.as_str()), (127, "sh: 1: kubeadmm: not found\n"));
    let (code, _, unknown) = run(&["node9", "--", "true"], "").await;
    assert_eq!(code, 1);
    // Authenticated like the API: the read-only user may not run commands.
    let (code, _, readonly) = run(&["--context", "readonly", "node02", "--", "true"], "").await;
    assert_eq!(code, 1);
    upkeep_testkit::assert_output!(
        "node_shell_refusals",
        format!(
            "$ upkeep-lab node-shell node9 -- true\n{unknown}\
             $ upkeep-lab node-shell --context readonly node02 -- true\n{readonly}"
        )
    );
    // One word is a shell line, as a remote-shell template sends it.
    let (code, out, _) = run(
        &[
            "node02",
            "--",
            "apt-mark showhold | grep -c kube && echo 'a  b'",
        ],
        "",
    )
    .await;
    assert_eq!((code, out.as_str()), (0, "3\na  b\n"));
    // Line mode: each line is one `sh -c`; the last line's code is the exit code.
    let (code, out, _) = run(
        &["node02"],
        "cat /etc/hostname\napt-mark showhold | grep kubelet\nfalse\n",
    )
    .await;
    assert_eq!((code, out.as_str()), (1, "node02\nkubelet\n"));
    h.srv.shutdown();
}

/// A scenario's `shellFaults`, `osImage` and package repositories reach the node shells.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scenario_settings_reach_the_node_shells() {
    let yaml = r#"
apiVersion: lab.upkeep.dev/v1alpha1
kind: LabScenario
metadata: {name: shells}
spec:
  version: v1.33.2
  nodes:
  - name: rocky
    osImage: Rocky Linux 9.6 (Blue Onyx)
    shellFaults:
    - {fail: "dnf install", times: 2, code: 1, message: "Error: Failed to download metadata for repo 'kubernetes'"}
  - name: fedora
    osImage: Fedora Linux 42 (Server Edition)
  packages:
    repositories:
    - minor: v1.33
      versions: [1.33.2-1.1, 1.33.3-2.1]
"#;
    let lab = Lab::new(LabOptions::default());
    let sc = upkeep_lab::scenario::Scenario::parse("shells", yaml).expect("scenario parses");
    sc.apply(&lab).expect("scenario applies");
    let shells = upkeep_lab::nodeshell::NodeShells::get(&lab);
    let sh = |node: &str, script: &str| {
        shells
            .exec(
                &lab,
                node,
                &["sh".to_string(), "-c".to_string(), script.to_string()],
                "",
            )
            .map(ExecResponse::from)
            .expect("node exists")
    };
    let script = "dnf list --showduplicates kubeadm --disableexcludes=kubernetes";
    let list = sh("rocky", script);
    assert_eq!(list.code, 0, "{}", list.stderr);
    // Only the declared versions (1.33.3-150500.2.1, no 1.33.4).
    upkeep_testkit::assert_output!(
        "dnf_lists_the_declared_versions",
        shown("rocky", script, &list)
    );
    for _ in 0..2 {
        let r = sh(
            "rocky",
            "dnf install -y 'kubeadm-1.33.3-*' --disableexcludes=kubernetes",
        );
        assert_eq!(
            (r.code, r.stderr.as_str()),
            (
                1,
                "Error: Failed to download metadata for repo 'kubernetes'\n"
            )
        );
    }
    let r = sh(
        "rocky",
        "dnf install -y 'kubeadm-1.33.3-*' --disableexcludes=kubernetes",
    );
    assert_eq!(r.code, 0, "{}", r.stdout);
    // Fedora 42 is DNF5.
    let script = "dnf install -y 'kubeadm-1.33.3-*' --disableexcludes=kubernetes";
    let r = sh("fedora", script);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let release = sh("fedora", "cat /etc/os-release");
    upkeep_testkit::assert_output!(
        "fedora_is_dnf5",
        shown("fedora", script, &r) + &shown("fedora", "cat /etc/os-release", &release)
    );
}

/// `systemctl stop kubelet` on a node makes it NotReady the way a real one goes; `start`
/// brings it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_kubelet_makes_the_node_not_ready() {
    let h = harness().await;
    let ready = |n: &Node| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status.clone())
            .unwrap_or_default()
    };
    let nodes = Api::<Node>::all(h.kube.clone());
    assert_eq!(ready(&nodes.get("node03").await.unwrap()), "True");
    h.ok("node03", "sudo systemctl stop kubelet").await;
    assert_eq!(
        h.sh("node03", "systemctl is-active kubelet").await.stdout,
        "inactive\n"
    );
    wait_for!(
        "node03 to stop being Ready",
        30,
        ready(&nodes.get("node03").await.unwrap()) != "True"
    );
    h.ok("node03", "sudo systemctl start kubelet").await;
    wait_for!(
        "node03 to be Ready again",
        30,
        ready(&nodes.get("node03").await.unwrap()) == "True"
    );
    h.srv.shutdown();
}

/// A real node reports what its dpkg installed: the lab's kubeadm and kubelet then act as
/// those packages would (the kubeadm version kubeadm's policy reads, the kubelet version a
/// restart brings), and a version that is not one is refused, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_node_reports_its_installed_packages() {
    let h = harness().await;
    let installed: std::collections::BTreeMap<String, String> = [
        ("kubeadm".to_string(), "1.35.2-1.1".to_string()),
        ("kubelet".to_string(), "1.34.4-1.1".to_string()),
    ]
    .into();
    let argv = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let r = h
        .shell
        .exec_reporting(
            "node01",
            &argv(&["kubeadm", "version", "-o", "short"]),
            "",
            installed.clone(),
        )
        .await
        .unwrap();
    assert_eq!((r.code, r.stdout.as_str()), (0, "v1.35.2\n"), "{r:?}");
    let r = h
        .shell
        .exec_reporting(
            "node01",
            &argv(&["systemctl", "restart", "kubelet"]),
            "",
            installed,
        )
        .await
        .unwrap();
    assert_eq!(r.code, 0, "{r:?}");
    let nodes: Api<Node> = Api::all(h.kube.clone());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n = nodes.get("node01").await.unwrap();
        let v = n
            .status
            .and_then(|s| s.node_info)
            .map(|i| i.kubelet_version);
        if v.as_deref() == Some("v1.34.4") {
            break;
        }
        assert!(Instant::now() < deadline, "kubelet still reports {v:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let bad: std::collections::BTreeMap<String, String> =
        [("kubeadm".to_string(), "latest".to_string())].into();
    let err = h
        .shell
        .exec_reporting("node01", &argv(&["kubeadm", "version"]), "", bad)
        .await
        .unwrap_err();
    upkeep_testkit::assert_output!("a_reported_version_that_is_not_one", format!("{err:#}"));
}
