//! `kubectl safedrain` end to end: the built plugin against the lab.
//!
//! Every command runs under a deadline (a hung drain fails the test), and
//! every assertion is about what a user sees: exit codes, output, and the
//! cluster afterwards (read back through real kubectl).

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use upkeep_testkit::{
    Deployment, Lab, SeedRun, code, deployment_on, deployments_whole_off, json, name, node_of,
    owner_kind, run_bounded, running_ready, said, show, stderr, stdout, uid, wait_for,
};

/// This package's own binary, built by cargo for these tests.
const SAFEDRAIN: &str = env!("CARGO_BIN_EXE_kubectl-safedrain");

const SETTLE: Duration = Duration::from_secs(60);

// ---------- helpers ----------

fn safedrain(lab: &Lab, args: &[&str]) -> Output {
    let mut cmd = lab.plugin(SAFEDRAIN);
    cmd.args(args);
    run_bounded(cmd, Duration::from_secs(180))
}

fn unschedulable(lab: &Lab, node: &str) -> bool {
    lab.get_json(["node", node])["spec"]["unschedulable"] == true
}

/// The pods of `node` by uid, to show that nothing there changed.
fn uids_on(lab: &Lab, node: &str) -> BTreeSet<String> {
    lab.pods_on(node).iter().map(uid).collect()
}

fn assert_nothing_changed(lab: &Lab, node: &str, before: &BTreeSet<String>, out: &Output) {
    assert!(
        !unschedulable(lab, node),
        "{node} was cordoned by a refused drain\n{}",
        show(out)
    );
    let now = uids_on(lab, node);
    assert_eq!(
        &now,
        before,
        "pods on {node} changed after a refusal\n{}",
        show(out)
    );
    for p in lab.pods_on(node) {
        assert!(
            p["metadata"]["deletionTimestamp"].is_null(),
            "{} is being deleted after a refusal",
            name(&p)
        );
    }
}

fn blocker_rules(plan_json: &Value) -> Vec<String> {
    plan_json["nodes"][0]["plan"]["blockers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|b| b["rule"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Each node's blockers as `node [rule]: message` lines, as a user reads them in `-o json`.
fn blocker_text(plan_json: &Value) -> String {
    plan_json["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|n| {
            let node = n["plan"]["node"].as_str().unwrap_or_default().to_string();
            n["plan"]["blockers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(move |b| {
                    format!(
                        "{node} [{}]: {}\n",
                        b["rule"].as_str().unwrap_or_default(),
                        b["message"].as_str().unwrap_or_default()
                    )
                })
        })
        .collect()
}

/// Sets the lab's fault rules (`POST /lab/v1/faults`) through kubectl.
fn set_faults(lab: &Lab, rules: Value) {
    let path = lab.dir().join("faults.json");
    std::fs::write(
        &path,
        serde_json::json!({ "seed": 7, "rules": rules }).to_string(),
    )
    .unwrap();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/lab/v1/faults",
        "-f",
        path.to_str().unwrap(),
    ]);
}

/// `text` without the lines starting with one of `prefixes`: what depends on timing the
/// normalization cannot fix.
fn without(text: &str, prefixes: &[&str]) -> String {
    text.lines()
        .filter(|l| !prefixes.iter().any(|p| l.starts_with(p)))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Progress on stderr without a workload's partial counts (`2/3 ready elsewhere`): how
/// many of them show depends on whether replacements turn Ready together. The whole
/// ones stay.
fn settled_progress(out: &Output) -> String {
    stderr(out)
        .lines()
        .filter(|l| !l.ends_with(" ready elsewhere"))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn selector_yaml(labels: &std::collections::BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("      {k}: {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------- the os-upgrade practice test ----------

#[test]
fn node01_is_refused_because_of_the_bare_pod_and_nothing_changes() {
    let lab = Lab::os_upgrade();
    let hr = lab
        .pods()
        .into_iter()
        .find(|p| name(p) == "hr-app")
        .expect("the os-upgrade scenario has hr-app");
    assert_eq!(node_of(&hr), "node01");
    let before = uids_on(&lab, "node01");

    let dry = safedrain(&lab, &["node01", "--dry-run"]);
    assert_eq!(code(&dry), 1, "{}", show(&dry));

    let out = safedrain(&lab, &["node01", "--yes"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    // Names hr-app, why it is refused, what to do instead, and that nothing changed.
    upkeep_testkit::assert_output!(&lab, "refused_bare_pod_on_node01", said(&out));
    // --force is not the override.
    let forced = safedrain(&lab, &["node01", "--yes", "--force"]);
    assert_eq!(code(&forced), 1, "{}", show(&forced));

    assert_nothing_changed(&lab, "node01", &before, &out);
    let hr_now = lab.get_json([
        "pod",
        "hr-app",
        "-n",
        hr["metadata"]["namespace"].as_str().unwrap(),
    ]);
    assert_eq!(uid(&hr_now), uid(&hr), "hr-app is the same pod");
    assert!(running_ready(&hr_now));
}

#[test]
fn node02_drains_and_its_workloads_are_whole_when_the_command_returns() {
    let lab = Lab::os_upgrade();
    let before = lab.pods_on("node02");
    let rs_uids: BTreeSet<String> = before
        .iter()
        .filter(|p| owner_kind(p) == "ReplicaSet")
        .map(uid)
        .collect();
    let ds_uids: BTreeSet<String> = before
        .iter()
        .filter(|p| owner_kind(p) == "DaemonSet")
        .map(uid)
        .collect();
    assert!(!rs_uids.is_empty());

    let dry = safedrain(&lab, &["node02", "--dry-run", "-o", "json"]);
    assert_eq!(code(&dry), 0, "{}", show(&dry));
    assert_eq!(json(&dry)["outcome"], "would-drain");
    assert!(!unschedulable(&lab, "node02"), "--dry-run changes nothing");

    let out = safedrain(
        &lab,
        &["node02", "--yes", "--timeout", "120s", "-o", "json"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    let doc = json(&out);
    assert_eq!(doc["outcome"], "drained", "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "drain_node02_progress", settled_progress(&out));

    // Checked at once, no waiting: the command returned only when whole.
    deployments_whole_off(&lab, "node02").unwrap_or_else(|e| panic!("{e}\n{}", show(&out)));
    let pods = lab.pods();
    let all_uids: BTreeSet<String> = pods.iter().map(uid).collect();
    assert!(
        rs_uids.is_disjoint(&all_uids),
        "every ReplicaSet pod from node02 is gone"
    );
    let ds_now: BTreeSet<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "DaemonSet")
        .map(uid)
        .collect();
    assert_eq!(ds_now, ds_uids, "DaemonSet pods untouched");
    assert!(unschedulable(&lab, "node02"), "node02 stays cordoned");
    assert!(
        pods.iter().any(|p| name(p) == "hr-app"),
        "hr-app is still there"
    );

    // A second run finds nothing to do and succeeds.
    let again = safedrain(&lab, &["node02", "--yes", "-o", "json"]);
    assert_eq!(code(&again), 0, "{}", show(&again));
    assert_eq!(json(&again)["nodes"][0]["plan"]["summary"]["evict"], 0);

    // --uncordon: back in service, and where the former pods run now.
    let back = safedrain(&lab, &["node02", "--uncordon"]);
    assert_eq!(code(&back), 0, "{}", show(&back));
    assert!(!unschedulable(&lab, "node02"));
    // Names each former ReplicaSet pod and where its workload runs now.
    upkeep_testkit::assert_output!(&lab, "uncordon_node02_former_pods", said(&back));
}

// ---------- PodDisruptionBudgets ----------

#[test]
fn a_full_pdb_is_refused_by_name_and_wait_for_pdb_completes_after_a_scale_up() {
    let lab = Lab::os_upgrade();
    let Deployment {
        namespace: ns,
        name: deploy,
        replicas,
        labels,
    } = deployment_on(&lab, "node02");
    lab.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web-pdb\n  namespace: {ns}\nspec:\n  minAvailable: {replicas}\n  selector:\n    matchLabels:\n{}\n",
        selector_yaml(&labels)
    ));
    wait_for("the PDB's status", SETTLE, || {
        let b = lab.get_json(["pdb", "web-pdb", "-n", &ns]);
        (b["status"]["currentHealthy"].as_i64() == Some(replicas)
            && b["status"]["disruptionsAllowed"].as_i64() == Some(0))
        .then_some(())
    });
    let before = uids_on(&lab, "node02");
    let out = safedrain(&lab, &["node02", "--yes"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    // Names the budget and offers --wait-for-pdb.
    upkeep_testkit::assert_output!(&lab, "refused_full_pdb", said(&out));
    assert_nothing_changed(&lab, "node02", &before, &out);

    // With --wait-for-pdb the drain waits; a scale-up frees the budget.
    let here = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "ReplicaSet")
        .count() as i64;
    let log = lab.dir().join("wait-for-pdb.stderr");
    let mut child: Child = lab
        .plugin(SAFEDRAIN)
        .args(["node02", "--wait-for-pdb", "--yes", "--timeout", "150s"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(
        "a refused eviction naming the PDB",
        Duration::from_secs(60),
        || {
            // Live progress while the drain waits: read as it is written.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            (text.contains("error when evicting pods/")
                && text.contains("will retry after")
                && text.contains("web-pdb"))
            .then_some(())
        },
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still waiting for the budget"
    );
    lab.kubectl_ok([
        "scale",
        "deployment",
        &deploy,
        "-n",
        &ns,
        &format!("--replicas={}", replicas + here),
    ]);
    let status = wait_for(
        "the drain to finish after the scale-up",
        Duration::from_secs(160),
        || child.try_wait().unwrap(),
    );
    let mut rest = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut rest).unwrap();
    assert!(
        status.success(),
        "exit {status}\n{rest}\n{}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(unschedulable(&lab, "node02"));
    deployments_whole_off(&lab, "node02").unwrap();
}

#[test]
fn a_budget_with_room_for_one_paces_the_drain_by_default_and_pdb_refuse_refuses() {
    let lab = Lab::os_upgrade();
    let Deployment {
        namespace: ns,
        name: deploy,
        replicas,
        labels,
    } = deployment_on(&lab, "node02");
    // Two or more of its pods on node02: node01 cordoned while one more lands.
    lab.kubectl_ok(["cordon", "node01"]);
    lab.kubectl_ok([
        "scale",
        "deployment",
        &deploy,
        "-n",
        &ns,
        &format!("--replicas={}", replicas + 1),
    ]);
    wait_for("two of its pods Ready on node02", SETTLE, || {
        let here = lab
            .pods_on("node02")
            .iter()
            .filter(|p| owner_kind(p) == "ReplicaSet" && running_ready(p))
            .count();
        (here >= 2).then_some(())
    });
    lab.kubectl_ok(["uncordon", "node01"]);
    lab.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web-pdb\n  namespace: {ns}\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n{}\n",
        selector_yaml(&labels)
    ));
    wait_for("the PDB's status", SETTLE, || {
        let b = lab.get_json(["pdb", "web-pdb", "-n", &ns]);
        (b["status"]["currentHealthy"].as_i64() == Some(replicas + 1)
            && b["status"]["disruptionsAllowed"].as_i64() == Some(1))
        .then_some(())
    });

    // --pdb=refuse: today's strict answer, nothing changed.
    let before = uids_on(&lab, "node02");
    let out = safedrain(&lab, &["node02", "--yes", "--pdb=refuse"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "refused_pdb_refuse_room_for_one", said(&out));
    assert_nothing_changed(&lab, "node02", &before, &out);

    // The default: evicted as the budget frees, whole again when it returns.
    let out = safedrain(&lab, &["node02", "--yes", "--timeout", "150s"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "paced_by_a_budget_with_room_for_one", stdout(&out));
    // How many times an eviction is refused depends on when the replacement turns Ready.
    let err = stderr(&out);
    assert!(
        err.contains("error when evicting pods/")
            && err.contains(&format!("PodDisruptionBudget {ns}/web-pdb")),
        "a paced eviction names the budget:\n{}",
        show(&out)
    );
    assert!(unschedulable(&lab, "node02"));
    assert!(
        lab.pods_on("node02")
            .iter()
            .all(|p| owner_kind(p) != "ReplicaSet"),
        "no ReplicaSet pod left on node02"
    );
    deployments_whole_off(&lab, "node02").unwrap();
}

/// A budget that stays full for longer than kubectl's 5 s retry: the refused pod
/// waits on the watched PodDisruptionBudget and is asked for again once, when the
/// replacement is Ready, not every 5 s as kubectl drain asks (pkg/drain/drain.go
/// evictPods).
#[test]
fn a_refused_eviction_waits_on_the_watched_budget_instead_of_asking_every_5s() {
    let lab = Lab::scenario(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/paced-watch.yaml"
    ));
    wait_for("both web pods Ready on node01", SETTLE, || {
        let ready = lab
            .pods_on("node01")
            .iter()
            .filter(|p| owner_kind(p) == "ReplicaSet" && running_ready(p))
            .count();
        (ready == 2).then_some(())
    });
    lab.kubectl_ok(["uncordon", "node02"]);
    wait_for("the PDB's status", SETTLE, || {
        let b = lab.get_json(["pdb", "web", "-n", "default"]);
        (b["status"]["disruptionsAllowed"].as_i64() == Some(1)).then_some(())
    });

    let started = Instant::now();
    let out = safedrain(&lab, &["node01", "--yes", "--timeout", "120s"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert!(
        lab.pods_on("node01")
            .iter()
            .all(|p| owner_kind(p) != "ReplicaSet"),
        "no web pod left on node01"
    );
    deployments_whole_off(&lab, "node01").unwrap();
    // The second pod waited for the first replacement's readiness (8 s and more)...
    assert!(
        took >= Duration::from_secs(8),
        "took {took:?}:\n{}",
        show(&out)
    );
    // ...and was refused once, not again every 5 s while the budget was full (a count of
    // lines: the rest of the progress is timed by readiness).
    let refused = stderr(&out)
        .lines()
        .filter(|l| l.contains("error when evicting pods/"))
        .count();
    assert_eq!(refused, 1, "{}", show(&out));
}

// ---------- each blocker, refused with its own reason ----------

/// Refused with a `rule` blocker; the blockers' messages (which name the pods and what keeps
/// them) are the snapshot `snapshot`.
fn refused_with(lab: &Lab, rule: &str, snapshot: &str) {
    let before = uids_on(lab, "node02");
    let out = safedrain(lab, &["node02", "--yes", "-o", "json"]);
    assert_eq!(code(&out), 1, "{}", show(&out));
    let doc = json(&out);
    assert_eq!(doc["outcome"], "refused");
    let rules = blocker_rules(&doc);
    assert!(
        rules.iter().any(|r| r == rule),
        "expected a {rule} blocker, got {rules:?}\n{}",
        show(&out)
    );
    upkeep_testkit::assert_output!(lab, snapshot, blocker_text(&doc));
    assert_nothing_changed(lab, "node02", &before, &out);
}

/// A one-replica Deployment whose pod runs on node02. With `pin` it is held
/// there by a nodeSelector; without, node01 is cordoned only while the pod is
/// scheduled, so the pod could move later and only the rule under test blocks.
fn on_node02(lab: &Lab, app: &str, extra_meta: &str, extra_spec: &str, pin: bool) {
    let selector = if pin {
        "      nodeSelector:\n        kubernetes.io/hostname: node02\n"
    } else {
        ""
    };
    if !pin {
        lab.kubectl_ok(["cordon", "node01"]);
    }
    lab.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: default\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n{extra_meta}    spec:\n{selector}      containers:\n      - name: main\n        image: nginx\n{extra_spec}"
    ));
    wait_for(
        &format!("{app} Running and Ready on node02"),
        SETTLE,
        || {
            lab.pods()
                .iter()
                .any(|p| name(p).starts_with(app) && node_of(p) == "node02" && running_ready(p))
                .then_some(())
        },
    );
    if !pin {
        lab.kubectl_ok(["uncordon", "node01"]);
    }
}

#[test]
fn two_pdbs_on_one_pod_are_refused() {
    let lab = Lab::os_upgrade();
    let Deployment {
        namespace: ns,
        labels,
        ..
    } = deployment_on(&lab, "node02");
    for pdb in ["first-pdb", "second-pdb"] {
        lab.apply(&format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {pdb}\n  namespace: {ns}\nspec:\n  maxUnavailable: 5\n  selector:\n    matchLabels:\n{}\n",
            selector_yaml(&labels)
        ));
    }
    // Names both budgets.
    refused_with(&lab, "multiple-pdbs", "refused_two_pdbs_on_one_pod");
}

#[test]
fn an_emptydir_pod_is_refused_naming_the_volume() {
    let lab = Lab::os_upgrade();
    on_node02(
        &lab,
        "cache",
        "",
        "        volumeMounts:\n        - {name: scratch, mountPath: /scratch}\n      volumes:\n      - name: scratch\n        emptyDir: {}\n",
        false,
    );
    refused_with(&lab, "local-storage", "refused_emptydir_names_the_volume");
}

#[test]
fn a_safe_to_evict_false_pod_is_refused_naming_the_annotation() {
    let lab = Lab::os_upgrade();
    on_node02(
        &lab,
        "batch",
        "      annotations:\n        cluster-autoscaler.kubernetes.io/safe-to-evict: \"false\"\n",
        "",
        false,
    );
    refused_with(
        &lab,
        "safe-to-evict-false",
        "refused_safe_to_evict_false_names_the_annotation",
    );
}

#[test]
fn a_pod_that_fits_nowhere_else_is_refused_naming_what_is_missing() {
    let lab = Lab::os_upgrade();
    on_node02(&lab, "pinned", "", "", true);
    refused_with(&lab, "no-capacity", "refused_pinned_pod_fits_nowhere_else");
}

/// A two-replica Deployment `app` with `spec` (a pod template spec fragment) spread over
/// node01 and node02, Running and Ready.
fn on_both_workers(lab: &Lab, app: &str, spec: &str) {
    lab.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: default\nspec:\n  replicas: 2\n  selector:\n    matchLabels:\n      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n    spec:\n{spec}"
    ));
    wait_for(&format!("{app} on node01 and node02"), SETTLE, || {
        let on: BTreeSet<String> = lab
            .pods()
            .iter()
            .filter(|p| name(p).starts_with(app) && running_ready(p))
            .map(node_of)
            .collect();
        (on == BTreeSet::from(["node01".to_string(), "node02".to_string()])).then_some(())
    });
}

/// The scheduler's filters beyond resources and selectors (InterPodAffinity, NodePorts): the
/// replacements could go nowhere, so the drain is refused before it touches the node, naming
/// each pod and the filter that keeps it out
/// (pkg/scheduler/framework/plugins/interpodaffinity, nodeports).
#[test]
fn pods_that_anti_affinity_or_a_host_port_keep_off_every_other_node_refuse_the_drain() {
    let lab = Lab::os_upgrade();
    on_both_workers(
        &lab,
        "solo",
        "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - topologyKey: kubernetes.io/hostname\n            labelSelector:\n              matchLabels:\n                app: solo\n      containers:\n      - name: main\n        image: nginx\n",
    );
    on_both_workers(
        &lab,
        "porty",
        "      containers:\n      - name: main\n        image: nginx\n        ports:\n        - containerPort: 80\n          hostPort: 8080\n",
    );
    // Each pod, and the filter that keeps it out: [InterPodAffinity] for solo, [NodePorts]
    // for porty.
    refused_with(&lab, "no-capacity", "refused_anti_affinity_and_host_port");
}

/// A namespace being deleted while its pod is drained: the eviction is refused with 403
/// NamespaceTerminating (the namespace lifecycle admission plugin,
/// k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle admission.go), the namespace
/// controller is already deleting the pod, and the drain waits for it to go as kubectl does
/// (kubernetes/kubectl pkg/drain/drain.go evictPods, TestEvictDuringNamespaceTerminating)
/// instead of stopping.
#[test]
fn an_eviction_refused_because_the_namespace_is_terminating_waits_for_the_pod() {
    let lab = Lab::os_upgrade();
    // A ConfigMap with a finalizer keeps the namespace Terminating after its pods are gone.
    lab.apply("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: closing\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: held\n  namespace: closing\n  finalizers:\n  - example.com/hold\n");
    lab.kubectl_ok(["cordon", "node01"]);
    lab.apply("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: leaving\n  namespace: closing\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: leaving\n  template:\n    metadata:\n      labels:\n        app: leaving\n    spec:\n      containers:\n      - name: main\n        image: nginx\n");
    let pod = wait_for("leaving Running and Ready on node02", SETTLE, || {
        lab.pods()
            .into_iter()
            .find(|p| name(p).starts_with("leaving-") && node_of(p) == "node02" && running_ready(p))
    });
    lab.kubectl_ok(["uncordon", "node01"]);
    // A finalizer keeps the pod Terminating until the test has seen what the drain says.
    lab.kubectl_ok([
        "patch",
        "pod",
        &name(&pod),
        "-n",
        "closing",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    // Its eviction is held on the way in until the namespace is being deleted.
    set_faults(
        &lab,
        serde_json::json!([{ "verb": "create", "resource": "pods/eviction", "namespace": "closing",
                             "latencyMs": 4000, "count": 1 }]),
    );
    let log = lab.dir().join("closing.stderr");
    let out_file = lab.dir().join("closing.stdout");
    let mut child = lab
        .plugin(SAFEDRAIN)
        .args(["node02", "--yes", "--timeout", "120s"])
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for("node02 cordoned by the drain", SETTLE, || {
        unschedulable(&lab, "node02").then_some(())
    });
    lab.kubectl_ok(["delete", "namespace", "closing", "--wait=false"]);
    let said = format!("pod/{} -n closing is already being deleted (", name(&pod));
    // The drain is still running: its stderr is read as it is written, a whole line at a time.
    let line = wait_for("the drain to say why it waits", SETTLE, || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .split_inclusive('\n')
            .find(|l| l.starts_with(&said) && l.ends_with('\n'))
            .map(str::to_string)
    });
    // The 403's own words ("because it is being terminated"), and that it waits.
    upkeep_testkit::assert_output!(&lab, "waits_for_a_pod_in_a_terminating_namespace", line);
    assert!(
        child.try_wait().unwrap().is_none(),
        "the drain waits for the Terminating pod"
    );
    lab.kubectl_ok([
        "patch",
        "pod",
        &name(&pod),
        "-n",
        "closing",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    let status = wait_for("the drain to end", Duration::from_secs(150), || {
        child.try_wait().unwrap()
    });
    let said = std::fs::read_to_string(&out_file).unwrap_or_default();
    let text = format!(
        "stdout:\n{said}\nstderr:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert_eq!(status.code(), Some(0), "{text}");
    // The deleted Deployment is counted as deleted. Stdout only: where the namespace's 403
    // falls among the concurrent evictions on stderr is timing; the line saying the
    // Deployment is not waited for is checked whole.
    upkeep_testkit::assert_output!(&lab, "drain_through_a_terminating_namespace", said);
    assert!(
        text.lines().any(|l| l
            == "closing/Deployment/leaving: deleted, its pods are not coming back: nothing to wait for"),
        "the deleted Deployment is not waited for:\n{text}"
    );
    let metrics = lab.kubectl_ok(["get", "--raw", "/metrics"]);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("apiserver_request_total{")
                && l.to_lowercase().contains(r#"verb="create""#)
                && l.contains(r#"subresource="eviction""#)
                && l.contains(r#"code="403""#)),
        "the eviction met the terminating namespace (a 403):\n{metrics}\n{text}"
    );
    assert!(
        !lab.pods().iter().any(|p| uid(p) == uid(&pod)),
        "{} is gone\n{text}",
        name(&pod)
    );
    let ns = lab.get_json(["namespace", "closing"]);
    assert_eq!(ns["status"]["phase"], "Terminating", "{ns:#}");
    deployments_whole_off(&lab, "node02").unwrap_or_else(|e| panic!("{e}\n{text}"));
}

// ---------- faults ----------

#[test]
fn injected_faults_lose_no_pod() {
    let lab = Lab::os_upgrade();
    let rs_before: BTreeSet<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "ReplicaSet")
        .map(uid)
        .collect();
    let others_before: BTreeSet<String> = lab
        .pods()
        .iter()
        .filter(|p| owner_kind(p) != "ReplicaSet")
        .map(uid)
        .collect();
    set_faults(
        &lab,
        serde_json::json!([
            { "verb": "create", "resource": "pods/eviction", "code": 429, "count": 2 },
            { "verb": "create", "resource": "pods/eviction", "code": 500, "message": "injected", "count": 2 },
            { "verb": "create", "resource": "pods/eviction", "code": 503, "count": 2 },
            { "verb": "watch", "resource": "pods", "cutWatchAfter": 2 },
            { "verb": "patch", "resource": "nodes", "code": 503, "count": 1 }
        ]),
    );
    let out = safedrain(
        &lab,
        &["node02", "--yes", "--timeout", "120s", "-o", "json"],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    // Which pod meets which injected answer depends on the order concurrent evictions reach
    // the API server: only that the faults were met and retried.
    assert!(
        stderr(&out).contains("will retry after"),
        "the faults were met:\n{}",
        show(&out)
    );
    set_faults(&lab, serde_json::json!([]));
    deployments_whole_off(&lab, "node02").unwrap_or_else(|e| panic!("{e}\n{}", show(&out)));
    let uids: BTreeSet<String> = lab.pods().iter().map(uid).collect();
    assert!(rs_before.is_disjoint(&uids));
    // Nothing outside the ReplicaSets disappeared (DaemonSet, static and bare pods).
    assert!(
        others_before.is_subset(&uids),
        "a pod was lost\n{}",
        show(&out)
    );
}

#[test]
fn a_permanent_fault_ends_at_the_timeout_and_says_what_is_left() {
    let lab = Lab::os_upgrade();
    let before = lab.pods().len();
    set_faults(
        &lab,
        serde_json::json!([{ "verb": "create", "resource": "pods/eviction", "code": 503 }]),
    );
    let started = Instant::now();
    let out = safedrain(&lab, &["node02", "--yes", "--timeout", "4s"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert!(took < Duration::from_secs(30), "--timeout 4s took {took:?}");
    // NOT drained (timed out after 4s), each pod left undone, node02 stays cordoned.
    upkeep_testkit::assert_output!(&lab, "timed_out_on_a_permanent_fault", stdout(&out));
    set_faults(&lab, serde_json::json!([]));
    assert!(unschedulable(&lab, "node02"));
    assert_eq!(lab.pods().len(), before, "no pod lost");
}

// ---------- interruption ----------

#[test]
fn ctrl_c_midway_then_the_same_command_finishes_without_repeating() {
    let lab = Lab::os_upgrade();
    let rs_before: Vec<Value> = lab
        .pods_on("node02")
        .into_iter()
        .filter(|p| owner_kind(p) == "ReplicaSet")
        .collect();
    assert!(
        rs_before.len() >= 2,
        "os-upgrade puts several ReplicaSet pods on node02: {rs_before:?}"
    );
    // Hold one pod's eviction so the drain is surely midway.
    let held = name(&rs_before[0]);
    set_faults(
        &lab,
        serde_json::json!([{ "verb": "create", "resource": "pods/eviction", "name": held, "code": 429 }]),
    );
    let log = lab.dir().join("interrupted.stderr");
    let child = lab
        .plugin(SAFEDRAIN)
        .args(["node02", "--yes", "--timeout", "120s"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    // Interrupt only once another pod has gone (or is going), so the resume below has
    // something it must not redo.
    wait_for(
        "the held eviction to be retried and another pod evicted",
        Duration::from_secs(60),
        || {
            // Live progress: read as it is written.
            let retried = std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&format!("error when evicting pods/\"{held}\""));
            let still_running: BTreeSet<String> = lab
                .pods_on("node02")
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(uid)
                .collect();
            let another_left = rs_before
                .iter()
                .any(|p| name(p) != held && !still_running.contains(&uid(p)));
            (retried && another_left).then_some(())
        },
    );
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let out = {
        let mut child = child;
        let status = wait_for(
            "the interrupted drain to exit",
            Duration::from_secs(30),
            || child.try_wait().unwrap(),
        );
        let mut text = String::new();
        std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut text).unwrap();
        (status, text)
    };
    assert_eq!(out.0.code(), Some(2), "{}", out.1);
    // Interrupted, node02 stays cordoned, run the same command again. Which evicted pods
    // were gone by the interrupt (done, left undone) is timing.
    upkeep_testkit::assert_output!(
        &lab,
        "interrupted_by_ctrl_c",
        without(&out.1, &["done: ", "left undone: "])
    );
    assert!(unschedulable(&lab, "node02"));
    // What the first run evicted: gone from node02 or terminating, by uid.
    let running_there: BTreeSet<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .map(uid)
        .collect();
    let evicted_first: BTreeSet<String> = rs_before
        .iter()
        .map(uid)
        .filter(|u| !running_there.contains(u))
        .collect();
    let held_pod = lab.pods().into_iter().find(|p| name(p) == held);
    assert!(
        held_pod.is_some_and(|p| running_ready(&p)),
        "the held pod still runs"
    );

    set_faults(&lab, serde_json::json!([]));
    let again = safedrain(
        &lab,
        &["node02", "--yes", "--timeout", "120s", "-o", "json"],
    );
    assert_eq!(code(&again), 0, "{}", show(&again));
    let doc = json(&again);
    // Nothing done twice: the second plan only holds what the first left.
    let planned: BTreeSet<String> = doc["nodes"][0]["plan"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["action"] == "evict")
        .map(|p| p["uid"].as_str().unwrap().to_string())
        .collect();
    assert!(
        planned.contains(&uid(&rs_before[0])),
        "the held pod is evicted by the second run"
    );
    assert!(
        planned.is_disjoint(&evicted_first),
        "pods the first run evicted are not evicted again: {planned:?} vs {evicted_first:?}"
    );
    // With nothing evicted by the first run the check above proves nothing.
    assert!(
        !evicted_first.is_empty(),
        "the first run evicted some pods before the held one: {rs_before:?}"
    );
    deployments_whole_off(&lab, "node02").unwrap();
    assert!(lab.pods().iter().any(|p| name(p) == "hr-app"));
    // The record on the node lists every pod moved, across both runs.
    let back = safedrain(&lab, &["node02", "--uncordon", "-o", "json"]);
    let former: BTreeSet<String> = json(&back)[0]["formerPods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["pod"].as_str().unwrap().to_string())
        .collect();
    for p in &rs_before {
        assert!(former.contains(&name(p)), "{} recorded", name(p));
    }
}

/// Every value is checked before the first request that changes anything:
/// each bad input exits 2 naming the flag typed, and node02 stays as it was.
#[test]
fn bad_inputs_exit_2_naming_the_flag_and_change_nothing() {
    let lab = Lab::os_upgrade();
    let before = uids_on(&lab, "node02");
    let cases: [&[&str]; 9] = [
        &["--pod-selector", "==bad"],
        &["--pod-selector", "a in (b"],
        &["--timeout", "5"],
        &["--timeout", "banana"],
        &["--timeout", "-5s"],
        &["--grace-period", "-7"],
        &["--concurrency", "0"],
        &["--max-unavailable", "-1"],
        &["--request-timeout", "soon"],
    ];
    // Each error names the flag as typed, with no clap tip ("use '--...") after it.
    let mut transcript = String::new();
    for flags in cases {
        let mut args = vec!["node02", "--yes"];
        args.extend_from_slice(flags);
        let out = safedrain(&lab, &args);
        assert_eq!(code(&out), 2, "{args:?}: {}", show(&out));
        transcript += &format!("$ kubectl safedrain {}\n{}\n", args.join(" "), said(&out));
        assert_nothing_changed(&lab, "node02", &before, &out);
    }
    // A selector the API server rejects never reaches it.
    let out = safedrain(&lab, &["-l", "==bad", "--yes"]);
    assert_eq!(code(&out), 2, "{}", show(&out));
    transcript += &format!("$ kubectl safedrain -l ==bad --yes\n{}\n", said(&out));
    assert_nothing_changed(&lab, "node02", &before, &out);
    // A node that is not there could not be drained: exit 2, naming the nodes there are,
    // with no API Status dump or client internals.
    let out = safedrain(&lab, &["node99", "--yes"]);
    assert_eq!(code(&out), 2, "{}", show(&out));
    transcript += &format!("$ kubectl safedrain node99 --yes\n{}", said(&out));
    upkeep_testkit::assert_output!(&lab, "bad_inputs_name_the_flag", transcript);
}

// ---------- the same situations through real kubectl drain (README comparison) ----------

fn kubectl_bounded(lab: &Lab, args: &[&str]) -> Output {
    run_bounded(lab.kubectl_cmd(args), Duration::from_secs(120))
}

#[test]
fn kubectl_drain_cordons_before_refusing_and_force_loses_the_bare_pod() {
    let lab = Lab::os_upgrade();
    let out = kubectl_bounded(&lab, &["drain", "node01", "--ignore-daemonsets"]);
    assert!(!out.status.success(), "{}", show(&out));
    // Cordons first, then refuses: the Pods "declare no controller".
    upkeep_testkit::assert_output!(&lab, "kubectl_drain_refuses_the_bare_pod", said(&out));
    assert!(
        unschedulable(&lab, "node01"),
        "kubectl drain refuses but leaves node01 cordoned"
    );

    let forced = kubectl_bounded(
        &lab,
        &[
            "drain",
            "node01",
            "--ignore-daemonsets",
            "--force",
            "--timeout",
            "60s",
        ],
    );
    assert!(forced.status.success(), "{}", show(&forced));
    assert!(
        !lab.pods().iter().any(|p| name(p) == "hr-app"),
        "kubectl drain --force deleted hr-app for good"
    );
}

#[test]
fn kubectl_drain_meets_two_pdbs_midway_and_leaves_the_node_cordoned() {
    let lab = Lab::os_upgrade();
    let Deployment {
        namespace: ns,
        labels,
        ..
    } = deployment_on(&lab, "node02");
    for pdb in ["first-pdb", "second-pdb"] {
        lab.apply(&format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {pdb}\n  namespace: {ns}\nspec:\n  maxUnavailable: 5\n  selector:\n    matchLabels:\n{}\n",
            selector_yaml(&labels)
        ));
    }
    let out = kubectl_bounded(
        &lab,
        &["drain", "node02", "--ignore-daemonsets", "--timeout", "30s"],
    );
    assert!(!out.status.success(), "{}", show(&out));
    // "more than one PodDisruptionBudget", after evicting what it could.
    upkeep_testkit::assert_output!(&lab, "kubectl_drain_meets_two_pdbs", said(&out));
    assert!(
        unschedulable(&lab, "node02"),
        "kubectl drain leaves node02 cordoned"
    );
}

// ---------- several nodes ----------

#[test]
fn a_selector_plans_every_node_first_and_refuses_before_touching_any() {
    let lab = Lab::os_upgrade();
    let before1 = uids_on(&lab, "node01");
    let before2 = uids_on(&lab, "node02");
    // Both workers at once: only the tainted control plane would remain.
    let out = safedrain(
        &lab,
        &[
            "-l",
            "!node-role.kubernetes.io/control-plane",
            "--delete-unmanaged",
            "--yes",
            "-o",
            "json",
        ],
    );
    assert_eq!(code(&out), 1, "{}", show(&out));
    let doc = json(&out);
    let nodes: Vec<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["plan"]["node"].as_str().unwrap())
        .collect();
    assert_eq!(nodes, ["node01", "node02"]);
    // no-capacity: the control plane's untolerated taint is all that would remain.
    upkeep_testkit::assert_output!(&lab, "selector_refuses_both_workers", blocker_text(&doc));
    assert_nothing_changed(&lab, "node01", &before1, &out);
    assert_nothing_changed(&lab, "node02", &before2, &out);
}

#[test]
fn a_selector_drains_nodes_one_after_another() {
    let lab = Lab::os_upgrade();
    let out = safedrain(
        &lab,
        &[
            "-l",
            "kubernetes.io/hostname in (node02)",
            "--yes",
            "--timeout",
            "120s",
        ],
    );
    assert_eq!(code(&out), 0, "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "selector_drains_node02", stdout(&out));
    assert!(unschedulable(&lab, "node02"));
    assert!(!unschedulable(&lab, "node01"));
    deployments_whole_off(&lab, "node02").unwrap();
}

#[test]
fn a_lost_api_server_ends_the_drain_with_the_node_cordoned_and_a_way_to_resume() {
    let lab = Lab::os_upgrade();
    let held = lab
        .pods_on("node02")
        .into_iter()
        .find(|p| owner_kind(p) == "ReplicaSet")
        .map(|p| name(&p))
        .unwrap();
    set_faults(
        &lab,
        serde_json::json!([{ "verb": "create", "resource": "pods/eviction", "name": held, "code": 429 }]),
    );
    let log = lab.dir().join("lost.stderr");
    let mut child = lab
        .plugin(SAFEDRAIN)
        .args(["node02", "--yes"])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for(
        "the held eviction to be retried",
        Duration::from_secs(60),
        || {
            // Live progress: read as it is written.
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains(&format!("error when evicting pods/\"{held}\""))
                .then_some(())
        },
    );
    drop(lab); // the API server goes away
    let status = wait_for("the drain to give up", Duration::from_secs(90), || {
        child.try_wait().unwrap()
    });
    let mut text = String::new();
    std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut text).unwrap();
    assert_eq!(status.code(), Some(2), "{text}");
    // Not a snapshot: which request notices the lost server first (an eviction, the watch
    // on the node's pods, a workload's watch) is timing, and each says so in its own words.
    assert!(
        text.contains("lost the connection to the API server"),
        "{text}"
    );
    assert!(text.contains("stays cordoned"), "{text}");
    assert!(text.contains("run the same command again"), "{text}");
}

#[test]
fn help_reads_as_a_kubectl_plugin_and_lists_the_rules() {
    let out = Command::new(upkeep_testkit::bin(SAFEDRAIN))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    // Usage as a kubectl plugin, an example, the rules, and what it does NOT do.
    upkeep_testkit::assert_output!("help", stdout(&out));
    let missing = Command::new(upkeep_testkit::bin(SAFEDRAIN))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2), "a node or -l is required");
}

#[test]
fn statefulset_pods_recreated_under_the_same_name_count_as_gone_by_uid() {
    let lab = Lab::os_upgrade();
    lab.apply(
        "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: default\nspec:\n  replicas: 3\n  serviceName: db\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      containers:\n      - name: main\n        image: postgres\n",
    );
    let on_node02 = wait_for("db pods Running, one on node02", SETTLE, || {
        let pods: Vec<Value> = lab
            .pods()
            .into_iter()
            .filter(|p| name(p).starts_with("db-"))
            .collect();
        let ready = pods.len() == 3 && pods.iter().all(running_ready);
        let here: Vec<Value> = pods
            .into_iter()
            .filter(|p| node_of(p) == "node02")
            .collect();
        (ready && !here.is_empty()).then_some(here)
    });
    let out = safedrain(&lab, &["node02", "--yes", "--timeout", "120s"]);
    assert_eq!(code(&out), 0, "{}", show(&out));
    let pods = lab.pods();
    for old in &on_node02 {
        let now = pods
            .iter()
            .find(|p| name(p) == name(old))
            .unwrap_or_else(|| {
                panic!(
                    "{} recreated before the command returned\n{}",
                    name(old),
                    show(&out)
                )
            });
        assert_ne!(uid(now), uid(old), "a new pod under the same name");
        assert_ne!(node_of(now), "node02");
        assert!(
            running_ready(now),
            "{} Ready when the command returns",
            name(now)
        );
    }
}

#[test]
fn a_multiple_pdb_answer_during_the_drain_stops_it_and_says_so() {
    // A second PDB created between the plan and the eviction: the API server
    // answers 500 with its upstream message (injected here at that moment).
    let lab = Lab::os_upgrade();
    set_faults(
        &lab,
        serde_json::json!([{
            "verb": "create", "resource": "pods/eviction", "code": 500,
            "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        }]),
    );
    let before = lab.pods().len();
    // One eviction at a time, so the pod that meets the answer first is the plan's first.
    let out = safedrain(
        &lab,
        &["node02", "--yes", "--timeout", "60s", "--concurrency", "1"],
    );
    assert_eq!(code(&out), 2, "{}", show(&out));
    // NOT drained (failed: ...several PodDisruptionBudgets), node02 stays cordoned.
    upkeep_testkit::assert_output!(&lab, "stopped_by_a_multiple_pdb_answer", stdout(&out));
    set_faults(&lab, serde_json::json!([]));
    assert_eq!(lab.pods().len(), before, "no pod lost");
}

#[test]
fn kubectl_drain_retries_a_full_pdb_without_naming_it_and_leaves_the_node_cordoned() {
    let lab = Lab::os_upgrade();
    let Deployment {
        namespace: ns,
        replicas,
        labels,
        ..
    } = deployment_on(&lab, "node02");
    lab.apply(&format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web-pdb\n  namespace: {ns}\nspec:\n  minAvailable: {replicas}\n  selector:\n    matchLabels:\n{}\n",
        selector_yaml(&labels)
    ));
    wait_for("the PDB's status", SETTLE, || {
        let b = lab.get_json(["pdb", "web-pdb", "-n", &ns]);
        (b["status"]["currentHealthy"].as_i64() == Some(replicas)).then_some(())
    });
    let out = kubectl_bounded(
        &lab,
        &["drain", "node02", "--ignore-daemonsets", "--timeout", "8s"],
    );
    assert!(!out.status.success(), "{}", show(&out));
    // kubectl retries every 5 s until its --timeout: how many retries fit is timing.
    let err = stderr(&out);
    assert!(err.contains("(will retry after 5s): Cannot evict pod as it would violate the pod's disruption budget."), "{}", show(&out));
    assert!(
        !err.contains("web-pdb"),
        "kubectl does not name the PDB:\n{}",
        show(&out)
    );
    assert!(
        unschedulable(&lab, "node02"),
        "kubectl drain leaves node02 cordoned"
    );
    // safedrain names it and changes nothing (see a_full_pdb_is_refused_by_name_...).
    lab.kubectl_ok(["uncordon", "node02"]);
    let ours = safedrain(&lab, &["node02", "--yes"]);
    assert_eq!(code(&ours), 1, "{}", show(&ours));
    upkeep_testkit::assert_output!(&lab, "refused_full_pdb_after_kubectl_drain", said(&ours));
    assert!(!unschedulable(&lab, "node02"));
}

/// Fault campaign: each seed drains node02 with about 10 % of API requests failing
/// (429, 500, 503, hung and dropped connections, cut watches) and SIGINT at a step chosen by
/// the seed, then, if that run stopped, runs the same command again on a healthy API. 20
/// seeds, each on its own lab, a few at once. Figures for RELIABILITY.md: `cargo test -p
/// kubectl-safedrain --test safedrain fault_campaign -- --nocapture`.
#[test]
fn fault_campaign_no_pod_is_lost_and_the_same_command_finishes() {
    let seeds = upkeep_testkit::campaign_seeds(20);
    let results = upkeep_testkit::run_campaign(&seeds, drain_campaign_seed);
    upkeep_testkit::report_campaign(
        &results,
        "fault campaign",
        "drained",
        "0 pods lost, no node cordoned without the drain's record, no run past its bound",
    );
}

fn drain_campaign_seed(seed: u64) -> SeedRun {
    // A run may overrun its --timeout by the time it takes to stop and report.
    const BOUND: Duration = Duration::from_secs(105);
    let lab = Lab::os_upgrade();
    let bare: Vec<String> = lab
        .pods()
        .into_iter()
        .filter(|p| node_of(p) != "node02" && owner_kind(p).is_empty())
        .map(|p| name(&p))
        .collect();
    let on_node: BTreeSet<String> = uids_on(&lab, "node02");
    let path = lab.dir().join("faults.json");
    std::fs::write(
        &path,
        serde_json::json!({ "seed": seed, "rules": campaign_faults() }).to_string(),
    )
    .unwrap();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/lab/v1/faults",
        "-f",
        path.to_str().unwrap(),
    ]);
    // SIGINT at a step chosen by the seed: right after the cordon, once a pod has left
    // the node, or never.
    let step = seed % 3;
    let log = lab.dir().join("first.stderr");
    let started = Instant::now();
    let mut child = lab
        .plugin(SAFEDRAIN)
        .args(["node02", "--yes", "--timeout", "90s"])
        // The retry layer's debug lines show the injected answers were met.
        .env("RUST_LOG", "upkeep=debug")
        .stdout(std::fs::File::create(lab.dir().join("first.stdout")).unwrap())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    if step != 0 {
        let reached = wait_for("the step to interrupt at", BOUND, || {
            if child.try_wait().unwrap().is_some() {
                return Some(false);
            }
            let at_step = match step {
                1 => std::fs::read_to_string(&log)
                    .unwrap_or_default()
                    .contains("node/node02 cordoned"),
                // Read through the same faults: a failed read just tries again.
                _ => {
                    let out = lab.kubectl([
                        "get",
                        "pods",
                        "-A",
                        "-o",
                        "json",
                        "--field-selector",
                        "spec.nodeName=node02",
                    ]);
                    let now: Option<BTreeSet<String>> = out
                        .status
                        .success()
                        .then(|| serde_json::from_slice::<Value>(&out.stdout).ok())
                        .flatten()
                        .map(|v| {
                            v["items"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                                .map(uid)
                                .collect()
                        });
                    now.is_some_and(|now| on_node.iter().any(|u| !now.contains(u)))
                }
            };
            at_step.then_some(true)
        });
        if reached {
            let status = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .expect("kill -INT");
            assert!(status.success());
        }
    }
    let status = wait_for("the first run to end", BOUND, || child.try_wait().unwrap());
    let first_took = started.elapsed();
    let text = std::fs::read_to_string(&log).unwrap_or_default()
        + &std::fs::read_to_string(lab.dir().join("first.stdout")).unwrap_or_default();
    assert!(
        started.elapsed() < BOUND,
        "seed {seed}: past its timeout\n{text}"
    );
    let mut result = SeedRun::first(status.code(), first_took, &text);
    set_faults(&lab, serde_json::json!([]));
    let n = lab.get_json(["node", "node02"]);
    assert!(
        n["spec"]["unschedulable"] != true
            || n["metadata"]["annotations"]["upkeep.dev/drained-pods"].is_string(),
        "seed {seed}: node02 cordoned without the drain's record\n{text}"
    );
    match status.code() {
        Some(0) => {}
        Some(2) => {
            result.interrupted = text.contains("interrupted");
            if !result.interrupted {
                let why: Vec<&str> = text
                    .lines()
                    .filter(|l| l.contains("error") || l.contains("NOT drained"))
                    .collect();
                println!("seed {seed}: stopped by the faults: {why:?}");
            }
            let mut cmd = lab.plugin(SAFEDRAIN);
            cmd.args(["node02", "--yes", "--timeout", "90s"]);
            let started = Instant::now();
            let again = run_bounded(cmd, BOUND);
            result.again_took = started.elapsed();
            assert!(
                result.again_took < BOUND,
                "seed {seed}, again: past its timeout"
            );
            assert_eq!(code(&again), 0, "seed {seed}, again: {}", show(&again));
            result.again = Some(0);
        }
        other => panic!("seed {seed}: exit {other:?}\n{text}"),
    }
    let n = lab.get_json(["node", "node02"]);
    assert!(
        n["spec"]["unschedulable"] == true
            && n["metadata"]["annotations"]["upkeep.dev/drained-pods"].is_string(),
        "seed {seed}: the drained node stays cordoned, with the drain's record: {n:#}"
    );
    wait_for("the workloads whole", Duration::from_secs(60), || {
        deployments_whole_off(&lab, "node02").ok()
    });
    let now: BTreeSet<String> = lab.pods().iter().map(name).collect();
    for b in &bare {
        assert!(now.contains(b), "seed {seed}: bare pod {b} lost");
    }
    result
}

/// About 10 % of requests fail: 503, 500, 429 (with Retry-After), connections that hang and
/// drop; and half the watches are cut after a few events.
fn campaign_faults() -> Value {
    serde_json::json!([
        { "verb": "*", "resource": "*", "code": 503, "rate": 0.03 },
        { "verb": "*", "resource": "*", "code": 500, "rate": 0.03 },
        { "verb": "*", "resource": "*", "code": 429, "rate": 0.03 },
        { "verb": "*", "resource": "*", "timeout": true, "latencyMs": 1500, "rate": 0.01 },
        { "verb": "watch", "resource": "*", "cutWatchAfter": 3, "rate": 0.5 },
    ])
}

/// A StatefulSet pod on a node whose kubelet stopped: evicted, it stays Terminating (nothing on
/// the node confirms the deletion), and the StatefulSet controller creates a pod under the same
/// name only once the old one is gone (pkg/controller/statefulset stateful_set_control.go
/// updateStatefulSet: a terminating replica is waited for, not replaced). The drain does not
/// wait on the pod itself, waits for the StatefulSet to its --timeout, and says why and what
/// frees it.
#[test]
fn a_statefulset_pod_on_a_stopped_node_holds_the_drain_to_its_timeout_and_it_says_why() {
    let lab = Lab::os_upgrade();
    lab.kubectl_ok(["cordon", "node01"]);
    lab.apply("apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\n  namespace: default\nspec:\n  serviceName: db\n  replicas: 1\n  selector:\n    matchLabels:\n      app: db\n  template:\n    metadata:\n      labels:\n        app: db\n    spec:\n      containers:\n      - name: main\n        image: postgres\n");
    wait_for("db-0 Running and Ready on node02", SETTLE, || {
        lab.pods()
            .iter()
            .any(|p| name(p) == "db-0" && node_of(p) == "node02" && running_ready(p))
            .then_some(())
    });
    lab.kubectl_ok(["uncordon", "node01"]);
    let body = lab.dir().join("stop.json");
    std::fs::write(&body, r#"{"running": false}"#).unwrap();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/lab/v1/nodes/node02/kubelet",
        "-f",
        body.to_str().unwrap(),
    ]);
    // Past the node monitor's grace period (40 s) on the lab clock, short of the 300 s the
    // taint manager gives the pods.
    let clock = lab.dir().join("clock.json");
    std::fs::write(&clock, r#"{"advanceSeconds": 45}"#).unwrap();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/lab/v1/clock",
        "-f",
        clock.to_str().unwrap(),
    ]);
    wait_for("node02 not Ready", Duration::from_secs(120), || {
        let n = lab.get_json(["node", "node02"]);
        n["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] != "True")
            .then_some(())
    });
    let started = Instant::now();
    let out = safedrain(&lab, &["node02", "--yes", "--timeout", "15s"]);
    let took = started.elapsed();
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert!(
        took < Duration::from_secs(45),
        "--timeout 15s took {took:?}"
    );
    // Why it waited (db-0 still Terminating on NotReady node02) and what frees it. Stdout
    // only: the replacements' progress on stderr is timed by readiness.
    upkeep_testkit::assert_output!(&lab, "statefulset_on_a_stopped_node", stdout(&out));
    let db0 = lab.get_json(["pod", "db-0"]);
    assert!(
        db0["metadata"]["deletionTimestamp"].is_string(),
        "evicted, Terminating: {db0:#}"
    );
}
