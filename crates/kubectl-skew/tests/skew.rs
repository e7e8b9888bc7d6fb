//! `kubectl skew` end to end: a cluster built with real kubectl in the lab
//! (nodes, node status, kubeadm-style static pods, kube-proxy pods), then
//! the built plugin's verdicts, JSON document and exit codes.

use std::process::Output;

use serde_json::Value;
use upkeep_testkit::{Lab, LabOptions, assert_output, json, show, stderr, stdout};

/// This package's own binary, built by cargo for these tests.
const SKEW: &str = env!("CARGO_BIN_EXE_kubectl-skew");

/// A lab whose `/version` reports `version`.
fn lab(version: &str) -> Lab {
    Lab::with(LabOptions {
        version: Some(version.to_string()),
        ..Default::default()
    })
}

fn node(name: &str, control_plane: bool) -> String {
    let role = if control_plane {
        "\n    node-role.kubernetes.io/control-plane: \"\""
    } else {
        ""
    };
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}{role}\n---\n"
    )
}

/// A kubeadm-style static pod: `component=<c>,tier=control-plane` in kube-system.
fn static_pod(component: &str, node: &str, tag: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {component}-{node}\n  namespace: kube-system\n  labels:\n    component: {component}\n    tier: control-plane\nspec:\n  nodeName: {node}\n  containers:\n  - name: {component}\n    image: registry.k8s.io/{component}:{tag}\n---\n"
    )
}

fn proxy_pod(node: &str, tag: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-proxy-{node}\n  namespace: kube-system\n  labels:\n    k8s-app: kube-proxy\nspec:\n  nodeName: {node}\n  containers:\n  - name: kube-proxy\n    image: registry.k8s.io/kube-proxy:{tag}\n---\n"
    )
}

/// Sets a node's `status.nodeInfo.kubeletVersion` the way a kubelet reports it,
/// and checks that the server kept it.
fn set_kubelet(lab: &Lab, node: &str, version: &str) {
    let patch = format!(r#"{{"status":{{"nodeInfo":{{"kubeletVersion":"{version}"}}}}}}"#);
    lab.kubectl_ok([
        "patch",
        "node",
        node,
        "--subresource=status",
        "--type=merge",
        "-p",
        &patch,
    ]);
    let got = lab.kubectl_ok([
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.nodeInfo.kubeletVersion}",
    ]);
    assert_eq!(
        got.trim(),
        version,
        "the lab did not keep {node}'s kubeletVersion"
    );
}

/// A kubeadm cluster: one control-plane node and workers `(name, kubelet version)`,
/// each with a kube-proxy pod at its kubelet's release.
fn kubeadm_cluster(lab: &Lab, control_plane: &str, workers: &[(&str, &str)]) {
    let mut yaml = node("cp1", true);
    for (name, _) in workers {
        yaml.push_str(&node(name, false));
    }
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        yaml.push_str(&static_pod(c, "cp1", control_plane));
    }
    yaml.push_str(&static_pod("etcd", "cp1", "3.5.15-0"));
    yaml.push_str(&proxy_pod("cp1", control_plane));
    for (name, version) in workers {
        yaml.push_str(&proxy_pod(name, version));
    }
    lab.apply(&yaml);
    set_kubelet(lab, "cp1", control_plane);
    for (name, version) in workers {
        set_kubelet(lab, name, version);
    }
}

/// Runs the plugin with a fixed kubectl version and day, so the result does
/// not depend on the machine's kubectl or the date.
fn skew(lab: &Lab, args: &[&str]) -> Output {
    lab.plugin(SKEW)
        .args(["--kubectl-version", "v1.31.0", "--as-of", "2025-05-01"])
        .args(args)
        .output()
        .expect("run kubectl-skew")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

fn find<'a>(list: &'a Value, component: &str, node: Option<&str>) -> &'a Value {
    list.as_array()
        .expect("an array")
        .iter()
        .find(|v| v["component"] == component && v["node"].as_str() == node)
        .unwrap_or_else(|| panic!("no {component} on {node:?} in {list:#}"))
}

#[test]
fn a_kubelet_four_minors_behind_is_a_violation_and_one_at_the_edge_a_warning() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(
        &lab,
        "v1.31.2",
        &[("w1", "v1.28.3"), ("w2", "v1.27.1"), ("w3", "v1.31.2")],
    );

    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(
        code(&out),
        1,
        "a violation exits 1; stderr: {}",
        stderr(&out)
    );
    let doc = json(&out);

    // Exactly w2's kubelet and kube-proxy violate, each naming its rule.
    let violations: Vec<(String, String, String)> = doc["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["component"].as_str().unwrap().to_string(),
                v["node"].as_str().unwrap().to_string(),
                v["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        violations,
        [
            ("kubelet".into(), "w2".into(), "kubelet-vs-apiserver".into()),
            (
                "kube-proxy".into(),
                "w2".into(),
                "kube-proxy-vs-apiserver".into()
            ),
        ]
    );
    let v = find(&doc["violations"], "kubelet", Some("w2"));
    assert_eq!(v["version"], "v1.27.1");

    // w1 sits at the oldest allowed minor: it blocks the next control-plane upgrade.
    find(&doc["warnings"], "kubelet", Some("w1"));
    assert_eq!(
        find(&doc["components"], "kubelet", Some("w1"))["verdict"],
        "warning"
    );
    assert_eq!(
        find(&doc["components"], "kubelet", Some("w3"))["verdict"],
        "ok"
    );

    // Every observed component is listed, the control plane from its static pods.
    let apiserver = find(&doc["components"], "kube-apiserver", Some("cp1"));
    assert_eq!(apiserver["version"], "v1.31.2");
    assert_eq!(apiserver["verdict"], "ok");
    assert_eq!(
        find(&doc["components"], "etcd", Some("cp1"))["verdict"],
        "info"
    );
    assert_eq!(
        find(&doc["components"], "kubectl", None)["allowed"]["oldest"],
        "v1.30"
    );
    assert_eq!(doc["components"].as_array().unwrap().len(), 13);
    assert_eq!(doc["apiserver"]["served"], "v1.31.2");
    assert_eq!(doc["apiserver"]["control_plane_visible"], true);
    assert_eq!(doc["support"]["minor"], "v1.31");
    assert_eq!(doc["support"]["status"], "supported");
    assert_eq!(doc["summary"]["verdict"], "violation");

    // People read the same verdicts, each with its reason: w2's kubelet 4 minors
    // older, w1's blocking the upgrade to v1.32.
    let out = skew(&lab, &[]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "check_kubelet_four_minors_behind", show(&out));
}

#[test]
fn upgrading_the_lagging_node_clears_the_violation() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.30.4"), ("w2", "v1.27.1")]);
    assert_eq!(code(&skew(&lab, &[])), 1);

    // The node is upgraded: new kubelet, the kube-proxy pod's new image.
    set_kubelet(&lab, "w2", "v1.31.2");
    lab.kubectl_ok([
        "set",
        "image",
        "-n",
        "kube-system",
        "pod/kube-proxy-w2",
        "kube-proxy=registry.k8s.io/kube-proxy:v1.31.2",
    ]);

    let out = skew(&lab, &[]);
    assert_eq!(code(&out), 0, "nothing violates now:\n{}", show(&out));
    // The table names each node's kubelet with its verdict, w2's now ok at v1.31.2.
    assert_output!(&lab, "check_after_upgrading_the_lagging_node", show(&out));
}

#[test]
fn ha_apiservers_at_two_minors_narrow_the_kubelet_range() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.31.2")]);
    // A second control-plane node still at v1.30: kubelets may not exceed v1.30.
    let mut yaml = node("cp2", true);
    yaml.push_str(&static_pod("kube-apiserver", "cp2", "v1.30.5"));
    yaml.push_str(&static_pod("kube-controller-manager", "cp2", "v1.30.5"));
    // Upgraded ahead of the apiserver on its own node: a violation.
    yaml.push_str(&static_pod("kube-scheduler", "cp2", "v1.31.2"));
    lab.apply(&yaml);
    set_kubelet(&lab, "cp2", "v1.30.5");

    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["apiserver"]["oldest"], "v1.30");
    assert_eq!(doc["apiserver"]["newest"], "v1.31");
    let w1 = find(&doc["components"], "kubelet", Some("w1"));
    assert_eq!(w1["verdict"], "violation");
    assert_eq!(w1["allowed"]["newest"], "v1.30");
    // Controllers talk to the apiserver on their own node (kubeadm's local
    // endpoint): cp1's v1.31 controller-manager is fine, cp2's v1.31 scheduler is not.
    let kcm = find(&doc["components"], "kube-controller-manager", Some("cp1"));
    assert_eq!(kcm["verdict"], "ok", "{kcm}");
    let sched = find(&doc["violations"], "kube-scheduler", Some("cp2"));
    assert_eq!(sched["rule"], "controllers-vs-apiserver");
    // The older apiserver is told the upgrade is half done.
    assert_eq!(
        find(&doc["components"], "kube-apiserver", Some("cp2"))["verdict"],
        "warning"
    );
    // The scheduler's reason names the kube-apiserver on its node (v1.30).
    let out = skew(&lab, &[]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "check_ha_apiservers_at_two_minors", show(&out));
}

#[test]
fn yaml_output_carries_the_same_document() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.31.2")]);
    let out = skew(&lab, &["-o", "yaml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_output!(&lab, "check_yaml", show(&out));
}

#[test]
fn a_managed_cluster_is_checked_from_version_and_the_daemonset() {
    // No static pods, no kube-proxy pods: the apiserver is /version, kube-proxy the DaemonSet.
    let lab = lab("v1.30.4");
    let mut yaml = node("n1", false);
    yaml.push_str(
        "apiVersion: apps/v1\nkind: DaemonSet\nmetadata:\n  name: kube-proxy\n  namespace: kube-system\nspec:\n  selector:\n    matchLabels:\n      app: proxy-not-labelled-k8s-app\n  template:\n    metadata:\n      labels:\n        app: proxy-not-labelled-k8s-app\n    spec:\n      containers:\n      - name: kube-proxy\n        image: registry.k8s.io/kube-proxy:v1.29.6\n",
    );
    lab.apply(&yaml);
    set_kubelet(&lab, "n1", "v1.30.4");

    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["apiserver"]["control_plane_visible"], false);
    let apiserver = find(&doc["components"], "kube-apiserver", None);
    assert_eq!(apiserver["version"], "v1.30.4");
    let proxy = find(&doc["components"], "kube-proxy", None);
    assert_eq!(proxy["version"], "v1.29.6");
    assert_eq!(proxy["source"], "daemonset kube-system/kube-proxy image");
    // A note says the control plane is not visible.
    let out = skew(&lab, &[]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_output!(&lab, "check_managed_cluster", show(&out));
}

#[test]
fn read_only_access_is_enough() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.27.0")]);
    let out = skew(&lab, &["--context", "readonly", "-o", "json"]);
    assert_eq!(code(&out), 1, "read-only users can check: {}", stderr(&out));
    assert_eq!(
        find(&json(&out)["violations"], "kubelet", Some("w1"))["rule"],
        "kubelet-vs-apiserver"
    );
}

#[test]
fn a_forbidden_node_list_exits_2_naming_the_missing_permission() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.31.2")]);
    // The lab answers the next node list with a real 403 Status, as an RBAC
    // denial would.
    let fault = serde_json::json!({"rules": [{
        "verb": "list", "resource": "nodes", "code": 403,
        "message": "nodes is forbidden: User \"auditor\" cannot list resource \"nodes\" in API group \"\" at the cluster scope",
        "count": 1
    }]});
    lab.kubectl_stdin(
        ["create", "--raw", "/lab/v1/faults", "-f", "-"],
        &fault.to_string(),
    )
    .expect("inject a 403 for listing nodes");
    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    // The message names the missing permission (list nodes).
    assert_output!(&lab, "check_forbidden_node_list", show(&out));
    assert!(
        stdout(&out).trim().is_empty(),
        "no verdict is printed when the check could not run: {}",
        stdout(&out)
    );
}

#[test]
fn transient_server_errors_on_the_node_list_are_retried() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.31.2")]);
    // A 500 on the next node list: a read is sent again, as client-go does.
    let fault = serde_json::json!({"rules": [
        {"verb": "list", "resource": "nodes", "code": 500, "message": "injected", "count": 1}
    ]});
    lab.kubectl_stdin(
        ["create", "--raw", "/lab/v1/faults", "-f", "-"],
        &fault.to_string(),
    )
    .expect("inject the faults");
    lab.kubectl_stdin(
        ["create", "--raw", "/lab/v1/metrics/reset", "-f", "-"],
        "{}",
    )
    .expect("reset the lab's request counters");
    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let metrics: Value =
        serde_json::from_str(&lab.kubectl_ok(["get", "--raw", "/lab/v1/metrics"])).unwrap();
    let answered = |code: u64| {
        metrics["requests"].as_array().unwrap().iter().any(|r| {
            r["verb"] == "list" && r["resource"] == "nodes" && r["code"].as_u64() == Some(code)
        })
    };
    assert!(
        answered(500) && answered(200),
        "the faults were met, then the list succeeded: {metrics:#}"
    );
}

#[test]
fn an_unreachable_server_exits_2() {
    let lab = lab("v1.31.2");
    // A port that was free a moment ago and has nothing listening now.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = skew(
        &lab,
        &[
            "--server",
            &format!("https://127.0.0.1:{port}"),
            "--request-timeout",
            "5s",
        ],
    );
    assert_eq!(code(&out), 2, "stdout: {}", stdout(&out));
    assert!(stdout(&out).is_empty());
    assert_output!(&lab, "check_unreachable_server", show(&out));
}

#[test]
fn lists_are_paged_past_500_nodes() {
    let lab = lab("v1.31.2");
    let count = 620;
    let list: String = (0..count)
        .map(|i| node(&format!("n{i:04}"), false))
        .collect();
    lab.kubectl_stdin(["create", "-f", "-"], &list)
        .expect("kubectl create the nodes");
    let listed = lab.get_json(["nodes"]);
    assert_eq!(listed["items"].as_array().unwrap().len(), count);

    // The last node by name lands on the second page of 500.
    set_kubelet(&lab, "n0619", "v1.27.0");

    lab.kubectl_stdin(
        ["create", "--raw", "/lab/v1/metrics/reset", "-f", "-"],
        "{}",
    )
    .expect("reset the lab's request counters");
    let out = skew(&lab, &["-o", "json"]);
    // 620 nodes at 500 a page: two list requests.
    let metrics: Value =
        serde_json::from_str(&lab.kubectl_ok(["get", "--raw", "/lab/v1/metrics"])).unwrap();
    let node_lists: u64 = metrics["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["verb"] == "list" && r["resource"] == "nodes")
        .map(|r| r["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        node_lists, 2,
        "nodes are listed in pages of 500: {metrics:#}"
    );
    let doc = json(&out);
    let kubelets = doc["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["component"] == "kubelet")
        .count();
    assert_eq!(kubelets, count, "every node's kubelet is seen across pages");
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let violations = doc["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(violations[0]["node"], "n0619");
}

#[test]
fn plan_lists_hops_preconditions_and_steps() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.28.3"), ("w2", "v1.31.2")]);

    // The path alone: this hand-built cluster's control-plane and kube-proxy pods
    // carry no mirror annotation or controller, so safedrain would refuse every node
    // (readiness is shown on lab scenarios in readiness.rs).
    let out = skew(
        &lab,
        &["plan", "--to", "v1.33", "--no-readiness", "-o", "json"],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["planned"], true);
    assert_eq!(doc["readiness"], Value::Null);
    let hops = doc["plan"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    assert_eq!(hops[0]["to"], "v1.32");
    assert_eq!(hops[0]["target"], "newest patch of v1.32");
    assert_eq!(hops[1]["target"], "v1.33.0");
    // w1 (v1.28) is too old for a v1.32 apiserver and must be upgraded first.
    let pre = &hops[0]["preconditions"][0];
    assert_eq!(pre["rule"], "kubelet-vs-apiserver");
    assert_eq!(pre["nodes"], serde_json::json!(["w1"]));
    let steps: Vec<(String, String)> = hops[1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["action"].as_str().unwrap().to_string(),
                s["node"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("upgrade-first-control-plane".into(), "cp1".into()),
            ("upgrade-worker".into(), "w1".into()),
            ("upgrade-worker".into(), "w2".into()),
        ]
    );
    assert_eq!(
        hops[1]["steps"][0]["command"],
        "kubeadm upgrade apply v1.33.0"
    );

    // The human form names the same, and no readiness section under --no-readiness.
    let out = skew(&lab, &["plan", "--to", "v1.32.4", "--no-readiness"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_output!(&lab, "plan_to_v1_32_4_without_readiness", show(&out));
}

#[test]
fn plan_refuses_a_downgrade() {
    let lab = lab("v1.31.2");
    kubeadm_cluster(&lab, "v1.31.2", &[("w1", "v1.31.2")]);
    let out = skew(&lab, &["plan", "--to", "v1.30"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    // Says what is allowed instead (v1.32).
    assert_output!(&lab, "plan_refuses_a_downgrade", show(&out));
    let out = skew(&lab, &["plan", "--to", "v1.30", "-o", "json"]);
    assert_eq!(code(&out), 1);
    assert_eq!(json(&out)["planned"], false);
}

#[test]
fn help_reads_as_a_kubectl_plugin() {
    let out = std::process::Command::new(upkeep_testkit::bin(SKEW))
        .arg("--help")
        .output()
        .unwrap();
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_output!("help", show(&out));
}

#[test]
fn the_kubectl_on_path_is_checked() {
    // Real kubectl (1.37) against a v1.36 lab: within one minor. Against v1.35: too far.
    let kubectl_dir = upkeep_testkit::kubectl_path()
        .parent()
        .expect("kubectl lives in a directory")
        .to_path_buf();
    let real = std::process::Command::new(upkeep_testkit::kubectl_path())
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("run kubectl version");
    let real: Value = serde_json::from_slice(&real.stdout).unwrap();
    let client = real["clientVersion"]["gitVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let minor: u64 = real["clientVersion"]["minor"]
        .as_str()
        .unwrap()
        .trim_end_matches('+')
        .parse()
        .unwrap();
    for (server_minor, expected) in [(minor - 1, 0), (minor - 2, 1)] {
        let lab = lab(&format!("v1.{server_minor}.0"));
        let out = lab
            .plugin(SKEW)
            .env("PATH", &kubectl_dir)
            .args(["--as-of", "2025-05-01", "-o", "json"])
            .output()
            .unwrap();
        assert_eq!(code(&out), expected, "{}", stderr(&out));
        let doc = json(&out);
        let kubectl = find(&doc["components"], "kubectl", None);
        assert_eq!(kubectl["version"], client.as_str());
        assert_eq!(kubectl["source"], "kubectl version --client");
    }
}

#[test]
fn a_newer_calendar_can_be_supplied() {
    let lab = lab("v1.31.2");
    let calendar = lab.dir().join("calendar.json");
    std::fs::write(
        &calendar,
        r#"{"releases":[{"minor":"v1.31","released":"2024-08-13","end_of_standard_support":"2030-01-28","end_of_life":"2030-03-28"}]}"#,
    )
    .unwrap();
    let run = |extra: &[&str]| {
        lab.plugin(SKEW)
            .args([
                "--kubectl-version",
                "v1.31.0",
                "--as-of",
                "2029-01-01",
                "-o",
                "json",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = run(&["--calendar", calendar.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let support = &json(&out)["support"];
    assert_eq!(support["status"], "supported");
    assert_eq!(support["end_of_life"], "2030-03-28");
    // The embedded calendar says v1.31 is long past its end of life by then.
    let doc = json(&run(&[]));
    assert_eq!(doc["support"]["status"], "end-of-life");
    assert_eq!(
        find(&doc["warnings"], "kube-apiserver", None)["rule"],
        "support-window"
    );
}

#[test]
fn the_labs_skew_violations_scenario() {
    let lab = Lab::scenario("skew-violations");
    let out = skew(&lab, &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let v = |component: &str, node: &str| {
        find(&doc["violations"], component, Some(node))["rule"].clone()
    };
    // controlplane02's controller-manager is newer than the apiserver on its node.
    assert_eq!(
        v("kube-controller-manager", "controlplane02"),
        "controllers-vs-apiserver"
    );
    // node02's kubelet is too old, node03's newer than any apiserver.
    assert_eq!(v("kubelet", "node02"), "kubelet-vs-apiserver");
    assert_eq!(v("kubelet", "node03"), "kubelet-vs-apiserver");
    // The apiservers are one minor apart: allowed, but a half-done upgrade.
    assert_eq!(doc["apiserver"]["instances"], 2);
    assert_eq!(
        find(&doc["warnings"], "kube-apiserver", Some("controlplane02"))["rule"],
        "apiserver-ha"
    );

    // The plan is made, and its first hop is NOT READY (exit 1): the hop to v1.34
    // brings etcd 3.6 while controlplane02's etcd is 3.5.21, and node03's kubelet
    // would still be newer than the apiserver after it.
    let out = skew(&lab, &["plan", "--to", "v1.35", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let hops = doc["plan"]["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 2);
    let pre = &hops[0]["preconditions"][0];
    assert_eq!(pre["rule"], "kubelet-vs-apiserver");
    assert_eq!(pre["nodes"], serde_json::json!(["node02"]));
    let hop1 = &doc["readiness"]["hops"][0];
    assert_eq!(hop1["verdict"], "NOT_READY", "{hop1:#}");
    let rules: Vec<(&str, &str)> = hop1["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "block")
        .map(|f| (f["rule"].as_str().unwrap(), f["name"].as_str().unwrap()))
        .collect();
    assert_eq!(
        rules,
        [
            ("etcd-3.6-gate", "etcd-controlplane02"),
            ("skew-after-hop", "node03")
        ],
        "{hop1:#}"
    );
    assert_eq!(doc["readiness"]["hops"][1]["verdict"], "WARN");
}

/// A node that stops reporting Ready: the node lifecycle controller taints it
/// `node.kubernetes.io/not-ready:NoExecute` (pkg/controller/nodelifecycle
/// doNoExecuteTaintingPass) and the taint manager evicts its pods once their toleration runs
/// out: 300 s, given to every pod by the DefaultTolerationSeconds admission plugin
/// (plugin/pkg/admission/defaulttolerationseconds). `kubectl skew` says so beside the versions.
#[test]
fn a_not_ready_node_is_named_with_its_eviction_countdown() {
    let lab = upkeep_testkit::Lab::scenario("os-upgrade");
    upkeep_testkit::wait_for(
        "node02 running pods",
        std::time::Duration::from_secs(60),
        || (!lab.pods_on("node02").is_empty()).then_some(()),
    );
    let body = lab.dir().join("not-ready.json");
    std::fs::write(&body, r#"{"ready": false}"#).unwrap();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/lab/v1/nodes/node02/kubelet",
        "-f",
        body.to_str().unwrap(),
    ]);
    upkeep_testkit::wait_for(
        "node02 tainted not-ready:NoExecute",
        std::time::Duration::from_secs(60),
        || {
            let n = lab.get_json(["node", "node02"]);
            n["spec"]["taints"]
                .as_array()?
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["effect"] == "NoExecute")
                .then_some(())
        },
    );
    // A kubectl in range and a fixed day: only the note depends on this run.
    let out = lab
        .plugin(SKEW)
        .args(["--kubectl-version", "v1.34.0", "--as-of", "2025-10-01"])
        .output()
        .expect("run kubectl-skew");
    // Only node02 is named, with its taint, since when, and the countdown.
    assert_output!(&lab, "check_not_ready_node", show(&out));
    // The snapshot hides the countdown, which depends on when this runs: it started
    // at the toleration's 300 s and has not run far.
    let text = stdout(&out);
    let left: i64 = text
        .split("evicts its pods in ")
        .nth(1)
        .and_then(|r| r.split('s').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number of seconds:\n{}", show(&out)));
    assert!((200..=300).contains(&left), "{text}");
}
