//! `kubectl skew plan` readiness end to end: the built plugin against lab
//! scenarios that each hold one thing a hop would break, then the hop's
//! verdict, the named findings in the JSON document, and the exit code.

use std::process::Output;

use serde_json::Value;
use upkeep_testkit::{Lab, LabOptions, assert_output, json, show, stderr, stdout, workspace_root};

/// This package's own binary, built by cargo for these tests.
const SKEW: &str = env!("CARGO_BIN_EXE_kubectl-skew");

/// Runs `kubectl skew plan --to <to>` on a fixed day with a kubectl in range.
fn plan(lab: &Lab, to: &str, kubectl: &str, extra: &[&str]) -> Output {
    lab.plugin(SKEW)
        .args([
            "plan",
            "--to",
            to,
            "--as-of",
            "2026-12-05",
            "--kubectl-version",
            kubectl,
        ])
        .args(extra)
        .output()
        .expect("run kubectl-skew")
}

fn code(out: &Output) -> i32 {
    out.status.code().expect("exited normally")
}

/// The findings of hop 1, after checking its verdict.
fn hop1(doc: &Value, verdict: &str) -> Vec<Value> {
    let r = &doc["readiness"];
    let hop = &r["hops"][0];
    assert_eq!(hop["verdict"], verdict, "{:#}", r);
    hop["findings"].as_array().unwrap().clone()
}

/// The messages of an upgrade-node report's refusals that come from the readiness findings.
fn readiness_refusals(node: &Value) -> Vec<&str> {
    node["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "upgrade-readiness" && f["severity"] == "refuse")
        .map(|f| f["message"].as_str().unwrap())
        .collect()
}

/// The finding with this rule about this object, or a panic listing all.
fn find<'a>(findings: &'a [Value], rule: &str, kind: &str, name: &str) -> &'a Value {
    findings
        .iter()
        .find(|f| f["rule"] == rule && f["kind"] == kind && f["name"] == name)
        .unwrap_or_else(|| {
            panic!(
                "no {rule} finding for {kind} {name} in:\n{:#}",
                Value::from(findings.to_vec())
            )
        })
}

#[test]
fn a_budget_last_applied_at_policy_v1beta1_and_one_written_at_it_stop_the_hop_to_v1_25() {
    let lab = Lab::scenario("readiness-removed-apis");
    let out = plan(&lab, "v1.25", "v1.25.0", &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    let applied = find(&findings, "removed-api", "PodDisruptionBudget", "web");
    assert_eq!(applied["namespace"], "default");
    assert_eq!(applied["severity"], "block");
    assert_eq!(
        applied["source"],
        "annotation kubectl.kubernetes.io/last-applied-configuration"
    );
    let written = find(&findings, "removed-api", "PodDisruptionBudget", "legacy");
    assert_eq!(
        written["source"],
        "metadata.managedFields (manager legacy-operator, Update)"
    );
    assert!(
        doc["readiness"]["unreadable"]
            .as_array()
            .unwrap()
            .is_empty(),
        "{:#}",
        doc["readiness"]
    );
    // People read each budget with the version v1.25 removes (policy/v1beta1) and the
    // fix (policy/v1).
    let out = plan(&lab, "v1.25", "v1.25.0", &[]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_removed_apis", show(&out));
}

#[test]
fn a_helm_release_holding_flowcontrol_v1beta3_stops_the_hop_to_v1_32() {
    let lab = Lab::scenario("readiness-helm");
    let out = plan(&lab, "v1.32", "v1.32.0", &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    let f = find(&findings, "removed-api", "FlowSchema", "traffic-batch");
    assert_eq!(
        f["source"],
        "Helm release traffic revision 3 (Secret default/sh.helm.release.v1.traffic.v3)"
    );
    assert_eq!(f["namespace"], Value::Null, "FlowSchema is cluster-scoped");
    // The chart's ConfigMap at v1 is not a finding.
    assert!(!findings.iter().any(|f| f["name"] == "traffic-settings"));
    // The message names flowcontrol.apiserver.k8s.io/v1beta3, which v1.32 removes.
    let out = plan(&lab, "v1.32", "v1.32.0", &[]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_helm_release", show(&out));
}

#[test]
fn a_bare_pod_a_budget_at_its_replicas_and_a_certificate_ending_in_ten_days_stop_the_hop() {
    let lab = Lab::scenario("readiness-drains");
    let out = plan(&lab, "v1.36", "v1.36.0", &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");

    let bare = find(&findings, "drain-blocked", "Pod", "scratch");
    assert_eq!(bare["namespace"], "default");
    assert_eq!(bare["source"], "drain plan of node node01");
    // Both db pods are held by db-budget (the snapshot below shows the budget named).
    for pod in ["db-0", "db-1"] {
        assert_eq!(
            find(&findings, "drain-blocked", "Pod", pod)["namespace"],
            "default"
        );
    }

    let cert = find(
        &findings,
        "certificate-expiry",
        "Certificate",
        "kube-apiserver",
    );
    assert_days_left(cert);
    assert!(
        cert["source"]
            .as_str()
            .unwrap()
            .starts_with("TLS handshake with https://127.0.0.1:"),
        "{cert:#}"
    );

    // Without the drain plans the certificate still stops the hop, and a note says
    // drains were not checked.
    let out = plan(&lab, "v1.36", "v1.36.0", &["--no-drains", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    assert!(
        !findings.iter().any(|f| f["rule"] == "drain-blocked"),
        "{findings:#?}"
    );
    find(
        &findings,
        "certificate-expiry",
        "Certificate",
        "kube-apiserver",
    );
    assert!(
        doc["readiness"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n == "drains were not checked (--no-drains)"),
        "{:#}",
        doc["readiness"]
    );

    // People get the same findings as a table per hop: the bare pod [unmanaged], the
    // budget holding db-0 and db-1, the API server serving certificate.
    let out = plan(&lab, "v1.36", "v1.36.0", &[]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_drains", show(&out));
}

/// A certificate the lab issued when it started, to run out in 10 days: 9 or 10 whole
/// days are left, depending on the second this runs (snapshots show `[DAYS]`).
fn assert_days_left(cert: &Value) {
    let message = cert["message"].as_str().unwrap();
    let days: i64 = message
        .split(", in ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("a number of days: {message}"));
    assert!(days == 9 || days == 10, "{message}");
}

#[test]
fn kubeadm_certificates_on_control_plane_nodes_are_read_through_the_node_transport() {
    let lab = Lab::scenario("readiness-drains");
    let shell = lab.remote_shell();
    let out = plan(
        &lab,
        "v1.36",
        "v1.36.0",
        &["--no-drains", "--remote-shell", &shell, "-o", "json"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    let apiserver = find(&findings, "certificate-expiry", "Certificate", "apiserver");
    assert_eq!(
        apiserver["source"],
        "kubeadm certs check-expiration on node controlplane"
    );
    assert_days_left(apiserver);
    find(&findings, "certificate-expiry", "Certificate", "ca");
    // Certificates a year away are not findings; workers are not asked.
    for name in ["admin.conf", "etcd-server", "etcd-ca"] {
        assert!(
            !findings.iter().any(|f| f["name"] == name),
            "{name}: {findings:#?}"
        );
    }
    // kubeadm's apiserver certificate and CA on node controlplane, each with its fix
    // (`kubeadm certs renew apiserver`; a CA is rotated), and no note that certificates
    // were not checked. The document, not the table: the apiserver certificate has 9 or
    // 10 days left by the second this runs, and the table's padding would follow.
    assert_output!(&lab, "plan_readiness_kubeadm_certificates", show(&out));

    // Without a transport the plan says so instead of staying silent.
    let out = plan(&lab, "v1.36", "v1.36.0", &["--no-drains", "-o", "json"]);
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    assert!(
        !findings.iter().any(|f| f["name"] == "apiserver"),
        "{findings:#?}"
    );
    let notes = doc["readiness"]["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            == "certificates on the control-plane nodes were not checked: no node transport (pass --via or --remote-shell, as for kubectl upgrade-node)"),
        "{notes:#?}"
    );
    let out = plan(&lab, "v1.36", "v1.36.0", &["--no-drains"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_without_a_node_transport", show(&out));

    // A node whose kubeadm cannot answer: the report could not tell, and names it.
    let out = plan(
        &lab,
        "v1.36",
        "v1.36.0",
        &[
            "--no-drains",
            "--remote-shell",
            "false {node}",
            "-o",
            "json",
        ],
    );
    let doc = json(&out);
    let unreadable = doc["readiness"]["unreadable"].as_array().unwrap();
    assert!(
        unreadable
            .iter()
            .any(|u| u["what"] == "kubeadm certs check-expiration on node controlplane"),
        "{unreadable:#?}"
    );
}

#[test]
fn a_healthy_cluster_is_ready_at_every_hop_with_no_finding() {
    let lab = Lab::scenario("readiness-healthy");
    let out = plan(&lab, "v1.36", "v1.36.0", &["-o", "json"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));
    let doc = json(&out);
    let r = &doc["readiness"];
    assert_eq!(r["verdict"], "READY", "{r:#}");
    let hops = r["hops"].as_array().unwrap();
    assert_eq!(hops.len(), 1);
    for hop in hops {
        assert_eq!(hop["verdict"], "READY", "{r:#}");
        assert_eq!(hop["findings"], serde_json::json!([]), "{r:#}");
    }
    let out = plan(&lab, "v1.36", "v1.36.0", &[]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_healthy", show(&out));
}

#[test]
fn a_forbidden_list_means_it_could_not_tell_and_names_what() {
    // The healthy scenario, with every list of Secrets answered 403.
    let text = std::fs::read_to_string(
        workspace_root().join("crates/upkeep-lab/scenarios/readiness-healthy.yaml"),
    )
    .unwrap();
    let faulty = text.replacen(
        "spec:\n  version:",
        "spec:\n  faults:\n    rules:\n    - verb: list\n      resource: secrets\n      code: 403\n  version:",
        1,
    );
    assert_ne!(faulty, text);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("forbidden-secrets.yaml");
    std::fs::write(&path, faulty).unwrap();
    let lab = Lab::with(LabOptions {
        scenario: Some(path.display().to_string()),
        ..Default::default()
    });
    let out = plan(&lab, "v1.36", "v1.36.0", &["-o", "json"]);
    assert_eq!(code(&out), 2, "{}\n{}", stdout(&out), stderr(&out));
    let doc = json(&out);
    assert_eq!(doc["readiness"]["verdict"], "UNKNOWN");
    let unreadable = doc["readiness"]["unreadable"].as_array().unwrap();
    assert!(
        unreadable.iter().any(|u| u["what"] == "list secrets"),
        "{unreadable:#?}"
    );
}

/// `kubectl upgrade-node` on the first control-plane node of a minor upgrade refuses with
/// the hop's findings, kubeadm's certificates on the node among them, from the same code.
#[test]
fn upgrade_node_refuses_the_first_control_plane_with_the_same_certificate_findings() {
    let lab = Lab::scenario("readiness-drains");
    let out = lab
        .plugin("kubectl-upgrade_node")
        .args(["controlplane", "--to", "v1.36.0", "--dry-run", "-o", "json"])
        .arg("--remote-shell")
        .arg(lab.remote_shell())
        .output()
        .expect("run kubectl-upgrade_node");
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let doc = json(&out);
    let node = &doc["nodes"][0];
    assert_eq!(node["node"], "controlplane", "{doc:#}");
    assert_eq!(node["result"], "refused", "{doc:#}");
    assert_eq!(readiness_refusals(node).len(), 3, "{node:#}");
    // People read the three: kubeadm's apiserver certificate and CA on node
    // controlplane, and the API server's own certificate from the TLS handshake.
    let out = lab
        .plugin("kubectl-upgrade_node")
        .args(["controlplane", "--to", "v1.36.0", "--dry-run"])
        .arg("--remote-shell")
        .arg(lab.remote_shell())
        .output()
        .expect("run kubectl-upgrade_node");
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(
        &lab,
        "upgrade_node_refuses_the_first_control_plane_for_certificates",
        show(&out)
    );
}

/// A client that still calls `policy/v1beta1` on a v1.24 cluster: the API server's
/// `apiserver_requested_deprecated_apis` gauge says so, and the hop to v1.25 names it.
#[test]
fn a_client_requesting_a_deprecated_version_is_named_from_the_metric() {
    let lab = Lab::scenario("readiness-removed-apis");
    let requested = |doc: &Value| -> Vec<Value> {
        doc["readiness"]["hops"][0]["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "deprecated-api-requested")
            .cloned()
            .collect()
    };
    let before = json(&plan(
        &lab,
        "v1.25",
        "v1.25.0",
        &["--no-drains", "-o", "json"],
    ));
    assert_eq!(requested(&before), Vec::<Value>::new());

    let listed: Value = serde_json::from_str(&lab.kubectl_ok([
        "get",
        "--raw",
        "/apis/policy/v1beta1/namespaces/default/poddisruptionbudgets",
    ]))
    .unwrap();
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["metadata"]["name"] == "web"),
        "{listed:#}"
    );
    let metrics = lab.kubectl_ok(["get", "--raw", "/metrics"]);
    assert!(
        metrics.lines().any(|l| l == "apiserver_requested_deprecated_apis{group=\"policy\",removed_release=\"1.25\",resource=\"poddisruptionbudgets\",subresource=\"\",version=\"v1beta1\"} 1"),
        "{metrics}"
    );

    let out = plan(&lab, "v1.25", "v1.25.0", &["--no-drains", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let after = requested(&json(&out));
    assert_eq!(after.len(), 1, "{after:#?}");
    let f = &after[0];
    assert_eq!(f["kind"], "poddisruptionbudgets");
    assert_eq!(f["source"], "/metrics apiserver_requested_deprecated_apis");
    assert_eq!(f["severity"], "block");
    // The message names policy/v1beta1, which v1.25 removes.
    let out = plan(&lab, "v1.25", "v1.25.0", &["--no-drains"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    assert_output!(&lab, "plan_readiness_deprecated_api_requested", show(&out));
}

/// The demo's cluster: hr-app on node01 has no controller. `kubectl skew plan` upgrades
/// every node, so node01's refused drain stops the hop. `kubectl upgrade-node controlplane`
/// upgrades only the control plane: node01's drain is not its concern (it is refused when
/// node01 is upgraded). `--all` takes node01 too, so the first control-plane node is
/// refused before anything changes. One rule decides all three (readiness Finding::concerns).
#[test]
fn findings_about_one_nodes_drain_stop_only_the_upgrades_that_include_that_node() {
    let lab = Lab::scenario("os-upgrade");
    let out = plan(&lab, "v1.35", "v1.35.0", &["-o", "json"]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let doc = json(&out);
    let findings = hop1(&doc, "NOT_READY");
    let hr = find(&findings, "drain-blocked", "Pod", "hr-app");
    assert_eq!(hr["node"], "node01", "{hr:#}");

    let upgrade = |args: &[&str]| {
        lab.plugin("kubectl-upgrade_node")
            .args(args)
            .args(["--to", "v1.35", "--dry-run", "-o", "json", "--remote-shell"])
            .arg(lab.remote_shell())
            .output()
            .expect("run kubectl-upgrade_node")
    };
    let out = upgrade(&["controlplane"]);
    assert_eq!(code(&out), 0, "{}\n{}", stdout(&out), stderr(&out));

    let out = upgrade(&["--all"]);
    assert_eq!(code(&out), 1, "{}\n{}", stdout(&out), stderr(&out));
    let doc = json(&out);
    let first = &doc["nodes"][0];
    assert_eq!(first["node"], "controlplane", "{doc:#}");
    assert_eq!(first["result"], "refused", "{doc:#}");
    let refusals = readiness_refusals(first);
    assert!(
        refusals.iter().any(
            |m| m.starts_with("[drain-blocked] Pod default/hr-app (drain plan of node node01)")
        ),
        "{refusals:#?}"
    );
    // The same finding, structured: no reader has to take the message apart.
    assert!(
        first["findings"].as_array().unwrap().iter().any(|f| {
            let r = &f["readiness"];
            f["rule"] == "upgrade-readiness"
                && r["rule"] == "drain-blocked"
                && r["kind"] == "Pod"
                && r["namespace"] == "default"
                && r["name"] == "hr-app"
                && r["node"] == "node01"
        }),
        "{first:#}"
    );
    assert_eq!(
        doc["nodes"].as_array().unwrap().len(),
        1,
        "stops there: {doc:#}"
    );
}
