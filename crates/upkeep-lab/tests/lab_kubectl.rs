//! Real kubectl against upkeep-lab: kubectl's own behaviour (exit codes, the
//! key wording of its messages, its tables) is the judge of whether the lab
//! behaves like a kube-apiserver with its controllers, scheduler and kubelets.
//!
//! Every test starts its own lab. Scenario tests use the built-in
//! `os-upgrade` cluster (controlplane, node01, node02, a Deployment and the bare
//! pod hr-app on node01); the API tests start an empty lab.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;
use std::time::Duration;

use serde_json::Value;
use upkeep_testkit::{
    Background, Lab, LabOptions, deployment_on, deployments, name, namespace, node_of, owner_kind,
    running_ready, stderr, stdout, uid, wait_for,
};

/// How long a freshly started lab may take until its pods run.
const SETTLE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// stdout and stderr of a kubectl run, for failure messages.
fn show(out: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        stdout(out),
        stderr(out)
    )
}

/// Runs kubectl, which must fail with exit code `code`; returns stderr.
fn kubectl_fails(lab: &Lab, args: &[&str], code: i32) -> String {
    let out = lab.kubectl(args);
    assert_eq!(
        out.status.code(),
        Some(code),
        "kubectl {} should exit {code}\n{}",
        args.join(" "),
        show(&out)
    );
    stderr(&out)
}

/// kubectl runs as a user reads them, for one whole-output snapshot per test: each
/// command, what it printed on stdout, then on stderr, then its exit code when not 0.
struct Transcript<'a> {
    lab: &'a Lab,
    text: String,
}

impl<'a> Transcript<'a> {
    fn new(lab: &'a Lab) -> Transcript<'a> {
        Transcript {
            lab,
            text: String::new(),
        }
    }

    /// Runs kubectl, records the run and returns its output.
    fn run<S: AsRef<str>>(&mut self, args: &[S]) -> Output {
        let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
        let out = self.lab.kubectl(&args);
        self.record(&format!("kubectl {}", args.join(" ")), &out);
        out
    }

    /// Runs kubectl, which must exit `code`; records the run and returns stderr.
    fn fails<S: AsRef<str>>(&mut self, args: &[S], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "kubectl should exit {code}\n{}",
            show(&out)
        );
        stderr(&out)
    }

    /// Records a finished command's output under `command`.
    fn record(&mut self, command: &str, out: &Output) {
        let block = |text: String| {
            if text.is_empty() || text.ends_with('\n') {
                text
            } else {
                text + "\n"
            }
        };
        self.text
            .push_str(&format!("$ {command}\n{}", block(stdout(out))));
        let err = stderr(out);
        if !err.is_empty() {
            self.text
                .push_str(&format!("--- stderr ---\n{}", block(err)));
        }
        if !out.status.success() {
            self.text
                .push_str(&format!("--- exit {} ---\n", upkeep_testkit::code(out)));
        }
    }
}

/// kubectl drain's output with what kubectl itself prints in Go map order sorted: the parts of
/// its one Warning line and the kinds of pods it cannot delete (kubectl pkg/drain/filters.go
/// PodDeleteList.Warnings and PodDeleteList.errors group pods in a map).
fn map_order_sorted(text: &str) -> String {
    let mut lines: Vec<String> = text
        .lines()
        .map(|l| {
            if let Some(parts) = l.strip_prefix("Warning: ") {
                let mut parts: Vec<&str> = parts.split("; ").collect();
                parts.sort_unstable();
                return format!("Warning: {}", parts.join("; "));
            }
            if let Some((head, rest)) = l.split_once("[cannot delete ")
                && let Some((list, tail)) = rest.split_once(']')
            {
                let mut parts: Vec<&str> = list.split(", cannot delete ").collect();
                parts.sort_unstable();
                return format!(
                    "{head}[cannot delete {}]{tail}",
                    parts.join(", cannot delete ")
                );
            }
            l.to_string()
        })
        .collect();
    let mut i = 0;
    while i < lines.len() {
        let run = lines[i..]
            .iter()
            .take_while(|l| l.starts_with("cannot delete "))
            .count();
        lines[i..i + run].sort_unstable();
        i += run.max(1);
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Writes `text` into the lab's scratch directory and returns the path, for `-f`.
fn file(lab: &Lab, name: &str, text: &str) -> String {
    let path = lab.dir().join(name);
    std::fs::write(&path, text).expect("write manifest");
    path.to_string_lossy().into_owned()
}

/// A kubectl table (`get`), cut at the header's column offsets the way
/// kubectl's tabwriter aligns them (columns are at least two spaces apart,
/// so headers such as `NOMINATED NODE` stay whole).
struct Table {
    text: String,
    names: Vec<String>,
    rows: Vec<BTreeMap<String, String>>,
}

impl Table {
    fn parse(text: &str) -> Table {
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        let header = lines.next().unwrap_or_default();
        let bytes = header.as_bytes();
        let mut starts = vec![0];
        for i in 2..bytes.len() {
            if bytes[i] != b' ' && bytes[i - 1] == b' ' && bytes[i - 2] == b' ' {
                starts.push(i);
            }
        }
        let cut = |line: &str, k: usize| -> String {
            let from = starts[k].min(line.len());
            let to = starts
                .get(k + 1)
                .copied()
                .unwrap_or(line.len())
                .min(line.len());
            line[from..to].trim().to_string()
        };
        let names: Vec<String> = (0..starts.len()).map(|k| cut(header, k)).collect();
        let rows = lines
            .map(|line| {
                names
                    .iter()
                    .enumerate()
                    .map(|(k, n)| (n.clone(), cut(line, k)))
                    .collect()
            })
            .collect();
        Table {
            text: text.to_string(),
            names,
            rows,
        }
    }

    /// The row whose `col` is `value`; panics with the table when absent.
    fn row(&self, col: &str, value: &str) -> &BTreeMap<String, String> {
        self.find(col, value)
            .unwrap_or_else(|| panic!("no row with {col}={value} in:\n{}", self.text))
    }

    fn find(&self, col: &str, value: &str) -> Option<&BTreeMap<String, String>> {
        self.rows
            .iter()
            .find(|r| r.get(col).map(String::as_str) == Some(value))
    }

    fn assert_columns(&self, want: &[&str]) {
        assert_eq!(self.names, want, "table columns of:\n{}", self.text);
    }
}

/// `kubectl get ARGS` as a table.
fn table(lab: &Lab, args: &[&str]) -> Table {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    Table::parse(&lab.kubectl_ok(&all))
}

/// The value of a `describe` field such as `Unschedulable:` (first occurrence).
fn described(text: &str, field: &str) -> String {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in describe output:\n{text}"))
        .trim()
        .to_string()
}

/// `kubectl describe` output with the ages it prints shown as `[AGE]`: the last column of a
/// table that ends in one ("3s", "2m5s"; apimachinery duration.HumanDuration). Only here, by
/// position: a whole-second value elsewhere is a grace period or a timeout, and stays.
fn described_now(text: &str) -> String {
    let age = regex::Regex::new(r"(?m)(\s{2})\d+[smhdy](\d+[smh])?$").expect("age");
    age.replace_all(text, "$1[AGE]").into_owned()
}

fn selector_yaml(labels: &BTreeMap<String, String>) -> String {
    labels
        .iter()
        .map(|(k, v)| format!("      {k}: \"{v}\"\n"))
        .collect()
}

fn pdb_yaml(name: &str, min_available: i64, labels: &BTreeMap<String, String>) -> String {
    format!(
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {name}\n  namespace: default\nspec:\n  minAvailable: {min_available}\n  selector:\n    matchLabels:\n{}",
        selector_yaml(labels)
    )
}

/// Waits until the disruption controller has processed PDB `name` and reports
/// `allowed` disruptions.
fn wait_pdb(lab: &Lab, name: &str, allowed: i64) {
    wait_for(
        &format!("PDB {name} processed with disruptionsAllowed={allowed}"),
        SETTLE,
        || {
            let p = lab.get_json(["pdb", name, "-n", "default"]);
            let synced = p["status"]["observedGeneration"] == p["metadata"]["generation"];
            (synced && p["status"]["disruptionsAllowed"].as_i64() == Some(allowed)).then_some(())
        },
    );
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
  labels:
    app: web
spec:
  replicas: 2
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.27
";

fn node_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    kubernetes.io/hostname: {name}\n"
    )
}

// ---------------------------------------------------------------------------
// kubectl version
// ---------------------------------------------------------------------------

#[test]
fn version_reports_the_configured_server_version_and_the_skew_warning() {
    let lab = Lab::with(LabOptions {
        version: Some("v1.33.4".into()),
        ..Default::default()
    });
    let out = lab.kubectl(["version", "-o", "json"]);
    assert!(out.status.success(), "{}", show(&out));
    let v: Value = serde_json::from_str(&stdout(&out)).expect("kubectl version -o json");
    assert_eq!(v["serverVersion"]["gitVersion"], "v1.33.4", "{v:#}");
    assert_eq!(v["serverVersion"]["major"], "1", "{v:#}");
    assert_eq!(v["serverVersion"]["minor"], "33", "{v:#}");
    let client_minor: u32 = v["clientVersion"]["minor"]
        .as_str()
        .and_then(|m| m.trim_end_matches('+').parse().ok())
        .expect("client minor");
    assert!(
        client_minor > 34,
        "this test expects a kubectl newer than 1.34 (found 1.{client_minor})"
    );
    // kubectl pkg/cmd/version/version.go: a warning beyond ±1 minor. The client's
    // version is whichever kubectl is installed; the snapshot shows it as a placeholder.
    let installed = |text: &str| {
        text.lines()
            .map(|l| match l.split_once(" Version: ") {
                Some((what @ ("Client" | "Kustomize"), _)) => {
                    format!("{what} Version: [INSTALLED]\n")
                }
                _ => format!("{l}\n"),
            })
            .collect::<String>()
            .replace(&format!("1.{client_minor}"), "1.[CLIENT]")
            .replace(&format!("1.{}", client_minor - 1), "1.[CLIENT-1]")
    };
    upkeep_testkit::assert_output!(
        &lab,
        "version_beyond_the_skew_warns",
        installed(&stderr(&out))
    );

    // One minor behind the client: within the skew, no warning.
    let near = format!("v1.{}.2", client_minor - 1);
    let lab = Lab::with(LabOptions {
        version: Some(near.clone()),
        ..Default::default()
    });
    let mut t = Transcript::new(&lab);
    let out = t.run(&["version"]);
    assert!(out.status.success(), "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "version_within_the_skew", installed(&t.text));
}

// ---------------------------------------------------------------------------
// Nodes: get, -o wide, describe, cordon and uncordon
// ---------------------------------------------------------------------------

#[test]
fn node_tables_describe_and_cordon_uncordon() {
    let lab = Lab::os_upgrade();
    let nodes = lab.get_json(["nodes"]);
    let t = table(&lab, &["nodes"]);
    t.assert_columns(&["NAME", "STATUS", "ROLES", "AGE", "VERSION"]);
    for n in nodes["items"].as_array().expect("items") {
        let row = t.row("NAME", &name(n));
        assert_eq!(row["STATUS"], "Ready", "{}", t.text);
        let kubelet = n["status"]["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap_or_default();
        assert!(kubelet.starts_with('v'), "kubeletVersion of {n:#}");
        assert_eq!(row["VERSION"], kubelet, "{}", t.text);
    }
    assert_eq!(
        t.row("NAME", "controlplane")["ROLES"],
        "control-plane",
        "{}",
        t.text
    );
    assert_eq!(t.row("NAME", "node01")["ROLES"], "<none>", "{}", t.text);
    assert_eq!(t.row("NAME", "node02")["ROLES"], "<none>", "{}", t.text);

    let wide = table(&lab, &["nodes", "-o", "wide"]);
    wide.assert_columns(&[
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]);
    for n in nodes["items"].as_array().expect("items") {
        let row = wide.row("NAME", &name(n));
        let internal = n["status"]["addresses"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["type"] == "InternalIP"))
            .and_then(|a| a["address"].as_str())
            .unwrap_or_else(|| panic!("{} has no InternalIP: {n:#}", name(n)));
        assert_eq!(row["INTERNAL-IP"], internal, "{}", wide.text);
        let info = &n["status"]["nodeInfo"];
        for (col, field) in [
            ("OS-IMAGE", "osImage"),
            ("KERNEL-VERSION", "kernelVersion"),
            ("CONTAINER-RUNTIME", "containerRuntimeVersion"),
        ] {
            let want = info[field].as_str().unwrap_or_default();
            assert!(!want.is_empty(), "{} reports no {field}", name(n));
            assert_eq!(row[col], want, "{}", wide.text);
        }
    }

    let d = lab.kubectl_ok(["describe", "node", "node01"]);
    assert_eq!(described(&d, "Name:"), "node01");
    assert_eq!(described(&d, "Roles:"), "<none>");
    assert_eq!(described(&d, "Unschedulable:"), "false");
    assert_eq!(
        described(&d, "  Kubelet Version:"),
        t.row("NAME", "node01")["VERSION"]
    );
    // node01 runs hr-app, among its other pods.
    upkeep_testkit::assert_output!(&lab, "describe_node_node01", described_now(&d));
    let cp = lab.kubectl_ok(["describe", "node", "controlplane"]);
    assert_eq!(described(&cp, "Roles:"), "control-plane");
    // kubeadm taints its control-plane nodes.
    assert_eq!(
        described(&cp, "Taints:"),
        "node-role.kubernetes.io/control-plane:NoSchedule"
    );

    // Cordon: kubectl pkg/drain/cordon.go patches spec.unschedulable and says so once.
    assert_eq!(
        lab.kubectl_ok(["cordon", "node01"]).trim(),
        "node/node01 cordoned"
    );
    assert_eq!(
        lab.kubectl_ok(["cordon", "node01"]).trim(),
        "node/node01 already cordoned"
    );
    assert_eq!(
        lab.get_json(["node", "node01"])["spec"]["unschedulable"],
        true
    );
    let t = table(&lab, &["nodes"]);
    assert_eq!(
        t.row("NAME", "node01")["STATUS"],
        "Ready,SchedulingDisabled",
        "{}",
        t.text
    );
    assert_eq!(t.row("NAME", "node02")["STATUS"], "Ready", "{}", t.text);
    let d = lab.kubectl_ok(["describe", "node", "node01"]);
    assert_eq!(described(&d, "Unschedulable:"), "true");
    // The node lifecycle controller taints a cordoned node (TaintNodesByCondition,
    // pkg/controller/nodelifecycle) and lifts the taint on uncordon.
    let taints = |lab: &Lab| described(&lab.kubectl_ok(["describe", "node", "node01"]), "Taints:");
    wait_for("the unschedulable taint on node01", SETTLE, || {
        (taints(&lab) == "node.kubernetes.io/unschedulable:NoSchedule").then_some(())
    });

    assert_eq!(
        lab.kubectl_ok(["uncordon", "node01"]).trim(),
        "node/node01 uncordoned"
    );
    assert_eq!(
        lab.kubectl_ok(["uncordon", "node01"]).trim(),
        "node/node01 already uncordoned"
    );
    assert_ne!(
        lab.get_json(["node", "node01"])["spec"]["unschedulable"],
        true
    );
    let t = table(&lab, &["nodes"]);
    assert_eq!(t.row("NAME", "node01")["STATUS"], "Ready", "{}", t.text);
    wait_for("node01 without taints", SETTLE, || {
        (taints(&lab) == "<none>").then_some(())
    });
}

/// A Node created with `kubectl create -f` gets a simulated kubelet: it turns
/// Ready and reports a version.
#[test]
fn a_node_created_with_kubectl_comes_to_life() {
    let lab = Lab::start();
    let f = file(&lab, "node.yaml", &node_yaml("worker1"));
    let mut t = Transcript::new(&lab);
    assert!(t.run(&["create", "-f", &f]).status.success(), "{}", t.text);
    t.fails(&["create", "-f", &f], 1);
    upkeep_testkit::assert_output!(&lab, "create_a_node_twice", t.text);
    let row = wait_for("worker1 Ready in kubectl get nodes", SETTLE, || {
        let t = table(&lab, &["nodes"]);
        let row = t.find("NAME", "worker1")?.clone();
        (row["STATUS"] == "Ready").then_some(row)
    });
    assert!(row["VERSION"].starts_with('v'), "{row:?}");
}

// ---------------------------------------------------------------------------
// create, apply, get -o yaml, replace, label, annotate, scale, delete
// ---------------------------------------------------------------------------

#[test]
fn create_apply_get_yaml_label_annotate_scale_delete() {
    let lab = Lab::start();
    // The messages kubectl prints on the way, compared whole at the end.
    let mut t = Transcript::new(&lab);
    let dep = file(&lab, "web.yaml", DEPLOYMENT);
    assert_eq!(
        lab.kubectl_ok(["create", "-f", &dep]).trim(),
        "deployment.apps/web created"
    );
    t.fails(&["create", "-f", &dep], 1);

    // apply on an object created without it: configured, with kubectl's warning.
    let out = t.run(&["apply", "-f", &dep]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "deployment.apps/web configured");
    assert_eq!(
        lab.kubectl_ok(["apply", "-f", &dep]).trim(),
        "deployment.apps/web unchanged"
    );
    let dep3 = file(
        &lab,
        "web3.yaml",
        &DEPLOYMENT.replace("replicas: 2", "replicas: 3"),
    );
    assert_eq!(
        lab.kubectl_ok(["apply", "-f", &dep3]).trim(),
        "deployment.apps/web configured"
    );

    // get -o yaml: the server's defaults and metadata, then a round trip.
    let yaml = lab.kubectl_ok(["get", "deployment", "web", "-o", "yaml"]);
    let got: Value = serde_saphyr::from_str(&yaml).expect("kubectl get -o yaml is YAML");
    assert_eq!(got["kind"], "Deployment");
    assert_eq!(got["spec"]["replicas"], 3);
    assert_eq!(got["spec"]["strategy"]["type"], "RollingUpdate");
    assert_eq!(got["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
    assert_eq!(
        got["spec"]["template"]["spec"]["terminationGracePeriodSeconds"],
        30
    );
    assert!(got["metadata"]["creationTimestamp"].is_string(), "{yaml}");
    assert!(got["metadata"]["resourceVersion"].is_string(), "{yaml}");
    let uid_text = uid(&got);
    let groups: Vec<usize> = uid_text.split('-').map(str::len).collect();
    assert_eq!(groups, [8, 4, 4, 4, 12], "uid {uid_text} is not a UUID");
    let exported = file(&lab, "exported.yaml", &yaml);
    assert_eq!(
        lab.kubectl_ok(["replace", "-f", &exported]).trim(),
        "deployment.apps/web replaced"
    );
    // The export now carries a stale resourceVersion: optimistic concurrency says no.
    t.fails(&["replace", "-f", &exported], 1);

    // label / annotate
    assert_eq!(
        lab.kubectl_ok(["label", "deployment", "web", "tier=frontend"])
            .trim(),
        "deployment.apps/web labeled"
    );
    assert_eq!(
        lab.kubectl_ok(["label", "deployment", "web", "tier=frontend"])
            .trim(),
        "deployment.apps/web not labeled"
    );
    t.fails(&["label", "deployment", "web", "tier=backend"], 1);
    lab.kubectl_ok(["label", "deployment", "web", "tier=backend", "--overwrite"]);
    assert_eq!(
        lab.kubectl_ok(["get", "deployments", "-l", "tier=backend", "-o", "name"])
            .trim(),
        "deployment.apps/web"
    );
    assert_eq!(
        lab.kubectl_ok(["get", "deployments", "-l", "tier=frontend", "-o", "name"])
            .trim(),
        ""
    );
    assert_eq!(
        lab.kubectl_ok(["annotate", "deployment", "web", "owner=team-a"])
            .trim(),
        "deployment.apps/web annotated"
    );
    let got = lab.get_json(["deployment", "web"]);
    assert_eq!(got["metadata"]["annotations"]["owner"], "team-a");
    assert_eq!(got["metadata"]["labels"]["tier"], "backend");

    // scale (the scale subresource) with and without a precondition.
    assert_eq!(
        lab.kubectl_ok(["scale", "deployment", "web", "--replicas=5"])
            .trim(),
        "deployment.apps/web scaled"
    );
    assert_eq!(lab.get_json(["deployment", "web"])["spec"]["replicas"], 5);
    t.fails(
        &[
            "scale",
            "deployment",
            "web",
            "--replicas=1",
            "--current-replicas=4",
        ],
        1,
    );

    // A bare Pod and a PDB from files.
    let pod = file(
        &lab,
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: solo\nspec:\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    );
    assert_eq!(
        lab.kubectl_ok(["create", "-f", &pod]).trim(),
        "pod/solo created"
    );
    let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
    let pdb = file(&lab, "pdb.yaml", &pdb_yaml("web", 1, &labels));
    assert_eq!(
        lab.kubectl_ok(["create", "-f", &pdb]).trim(),
        "poddisruptionbudget.policy/web created"
    );
    let pdbs = table(&lab, &["pdb"]);
    pdbs.assert_columns(&[
        "NAME",
        "MIN AVAILABLE",
        "MAX UNAVAILABLE",
        "ALLOWED DISRUPTIONS",
        "AGE",
    ]);
    assert_eq!(
        pdbs.row("NAME", "web")["MIN AVAILABLE"],
        "1",
        "{}",
        pdbs.text
    );

    // delete
    assert_eq!(
        lab.kubectl_ok(["delete", "deployment", "web"]).trim(),
        r#"deployment.apps "web" deleted from default namespace"#
    );
    t.fails(&["get", "deployment", "web"], 1);
    upkeep_testkit::assert_output!(&lab, "create_apply_replace_label_scale_refusals", t.text);
}

/// `kubectl get -o yaml` then `kubectl create -f` of the export under another
/// name: kubectl clears metadata.resourceVersion before it posts (kubectl
/// pkg/resource/helper.go CreateWithOptions), so the create works and the copy is
/// a new object.
#[test]
fn an_exported_object_can_be_created_again_under_another_name() {
    let lab = Lab::start();
    let dep = file(&lab, "web.yaml", DEPLOYMENT);
    lab.kubectl_ok(["create", "-f", &dep]);
    let yaml = lab.kubectl_ok(["get", "deployment", "web", "-o", "yaml"]);
    let got: Value = serde_saphyr::from_str(&yaml).expect("kubectl get -o yaml is YAML");
    assert!(got["metadata"]["resourceVersion"].is_string(), "{yaml}");
    let exported = file(
        &lab,
        "exported.yaml",
        &yaml.replace("name: web\n", "name: web2\n"),
    );
    assert_eq!(
        lab.kubectl_ok(["create", "-f", &exported]).trim(),
        "deployment.apps/web2 created"
    );
    let (web, web2) = (
        lab.get_json(["deployment", "web"]),
        lab.get_json(["deployment", "web2"]),
    );
    assert_ne!(uid(&web), uid(&web2));
    assert_eq!(web2["metadata"]["generation"], 1, "{web2:#}");
    assert_eq!(web2["spec"], web["spec"]);
}

// ---------------------------------------------------------------------------
// Status subresource
// ---------------------------------------------------------------------------

#[test]
fn node_status_changes_only_through_the_status_subresource() {
    let lab = Lab::start();
    let f = file(&lab, "node.yaml", &node_yaml("worker1"));
    lab.kubectl_ok(["create", "-f", &f]);

    let out = lab.kubectl([
        "patch",
        "node",
        "worker1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"nodeInfo":{"kubeletVersion":"v1.31.0"}}}"#,
        "-o",
        "jsonpath={.status.nodeInfo.kubeletVersion}",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "v1.31.0", "the status patch's answer");

    // The main resource ignores status (pkg/registry/core/node/strategy.go PrepareForUpdate).
    let out = lab.kubectl([
        "patch",
        "node",
        "worker1",
        "--type=merge",
        "-p",
        r#"{"status":{"nodeInfo":{"kubeletVersion":"v1.30.0"}}}"#,
    ]);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(stdout(&out).trim(), "node/worker1 patched (no change)");
    assert_ne!(
        lab.get_json(["node", "worker1"])["status"]["nodeInfo"]["kubeletVersion"],
        "v1.30.0",
        "a patch without --subresource=status changed status"
    );

    // And the status subresource ignores spec.
    lab.kubectl_ok([
        "patch",
        "node",
        "worker1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"spec":{"unschedulable":true}}"#,
    ]);
    assert_ne!(
        lab.get_json(["node", "worker1"])["spec"]["unschedulable"],
        true
    );
}

// ---------------------------------------------------------------------------
// Permissions and dry run
// ---------------------------------------------------------------------------

#[test]
fn the_read_only_user_is_forbidden_to_write() {
    let lab = Lab::start();
    let f = file(&lab, "node.yaml", &node_yaml("worker1"));
    lab.kubectl_ok(["create", "-f", &f]);
    let ro = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--context".to_string(), "readonly".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };

    let t = Table::parse(&lab.kubectl_ok(ro(&["get", "nodes"])));
    t.row("NAME", "worker1");

    // kubectl auth can-i (a SelfSubjectAccessReview): "yes" exits 0, "no" exits 1.
    assert_eq!(
        lab.kubectl_ok(["auth", "can-i", "create", "pods"]).trim(),
        "yes"
    );
    assert_eq!(
        lab.kubectl_ok(ro(&["auth", "can-i", "list", "pods"]))
            .trim(),
        "yes"
    );
    let mut t = Transcript::new(&lab);
    let out = t.run(&ro(&["auth", "can-i", "create", "pods"]));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));

    std::fs::write(
        lab.dir().join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n",
    )
    .expect("write");
    let ns = lab.dir().join("ns.yaml").to_string_lossy().into_owned();
    // Each write is Forbidden, naming the user, the verb and the resource.
    for args in [
        vec!["create", "-f", ns.as_str()],
        vec!["label", "node", "worker1", "a=b"],
        vec!["delete", "node", "worker1"],
    ] {
        t.fails(&ro(&args), 1);
    }
    // kubectl cordon prints the failure but exits 0 (pkg/cmd/drain/drain.go
    // RunCordonOrUncordon returns nil after printing).
    let out = t.run(&ro(&["cordon", "worker1"]));
    assert!(out.status.success(), "{}", show(&out));
    upkeep_testkit::assert_output!(&lab, "readonly_user_writes_forbidden", t.text);
    assert_ne!(
        lab.get_json(["node", "worker1"])["spec"]["unschedulable"],
        true
    );
    kubectl_fails(&lab, &["get", "namespace", "team-a"], 1);
}

#[test]
fn server_dry_run_changes_nothing() {
    let lab = Lab::start();
    let dep = file(&lab, "web.yaml", DEPLOYMENT);
    let mut t = Transcript::new(&lab);
    let ok = |out: Output| assert!(out.status.success(), "{}", show(&out));
    ok(t.run(&["create", "-f", &dep, "--dry-run=server"]));
    t.fails(&["get", "deployment", "web"], 1);
    lab.kubectl_ok(["create", "-f", &dep]);
    ok(t.run(&["label", "deployment", "web", "tier=x", "--dry-run=server"]));
    ok(t.run(&["delete", "deployment", "web", "--dry-run=server"]));
    // Each write says "(server dry run)"; the get between them finds nothing.
    upkeep_testkit::assert_output!(&lab, "server_dry_run", t.text);
    let got = lab.get_json(["deployment", "web"]);
    assert!(got["metadata"]["labels"]["tier"].is_null(), "{got:#}");
    assert!(got["metadata"]["deletionTimestamp"].is_null(), "{got:#}");
}

/// kubectl's generators (`kubectl create namespace|deployment|configmap|secret|pdb`) go
/// through client-go's typed clients, which send protobuf request bodies
/// (`Content-Type: application/vnd.kubernetes.protobuf`).
#[test]
fn kubectl_create_generators_work() {
    let lab = Lab::start();
    assert_eq!(
        lab.kubectl_ok(["create", "namespace", "team-a"]).trim(),
        "namespace/team-a created"
    );
    assert_eq!(
        lab.kubectl_ok([
            "create",
            "deployment",
            "dry",
            "--image=nginx:1.27",
            "--dry-run=server"
        ])
        .trim(),
        "deployment.apps/dry created (server dry run)"
    );
    kubectl_fails(&lab, &["get", "deployment", "dry"], 1);
    assert_eq!(
        lab.kubectl_ok([
            "create",
            "deployment",
            "web",
            "--image=nginx:1.27",
            "--replicas=2",
            "--port=8080"
        ])
        .trim(),
        "deployment.apps/web created"
    );
    let d = lab.get_json(["deployment", "web"]);
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(d["spec"]["selector"]["matchLabels"]["app"], "web");
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "nginx:1.27");
    assert_eq!(c["ports"][0]["containerPort"], 8080);

    assert_eq!(
        lab.kubectl_ok(["create", "configmap", "cfg", "--from-literal=a=b"])
            .trim(),
        "configmap/cfg created"
    );
    assert_eq!(lab.get_json(["configmap", "cfg"])["data"]["a"], "b");
    assert_eq!(
        lab.kubectl_ok([
            "create",
            "secret",
            "generic",
            "pw",
            "--from-literal=user=admin"
        ])
        .trim(),
        "secret/pw created"
    );
    // "admin", base64-encoded as every Secret's data is.
    assert_eq!(lab.get_json(["secret", "pw"])["data"]["user"], "YWRtaW4=");

    assert_eq!(
        lab.kubectl_ok([
            "create",
            "pdb",
            "web",
            "--selector=app=web",
            "--min-available=1"
        ])
        .trim(),
        "poddisruptionbudget.policy/web created"
    );
    let pdb = lab.get_json(["pdb", "web"]);
    assert_eq!(pdb["spec"]["minAvailable"], 1, "{pdb:#}");
    assert_eq!(
        pdb["spec"]["selector"]["matchLabels"]["app"], "web",
        "{pdb:#}"
    );
}

// ---------------------------------------------------------------------------
// Pods: tables, describe, graceful delete
// ---------------------------------------------------------------------------

#[test]
fn pod_tables_and_describe_on_os_upgrade() {
    let lab = Lab::os_upgrade();
    let pods = lab.pods();
    let t = table(&lab, &["pods", "-A", "-o", "wide"]);
    t.assert_columns(&[
        "NAMESPACE",
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]);
    assert_eq!(t.rows.len(), pods.len(), "{}", t.text);
    for p in &pods {
        let row = t
            .rows
            .iter()
            .find(|r| {
                r["NAMESPACE"] == p["metadata"]["namespace"].as_str().unwrap_or("")
                    && r["NAME"] == name(p)
            })
            .unwrap_or_else(|| panic!("{} missing from:\n{}", name(p), t.text));
        let containers = p["spec"]["containers"].as_array().map_or(0, Vec::len);
        assert_eq!(
            row["READY"],
            format!("{containers}/{containers}"),
            "{}",
            t.text
        );
        assert_eq!(row["STATUS"], "Running", "{}", t.text);
        assert_eq!(row["NODE"], node_of(p), "{}", t.text);
        let ip = p["status"]["podIP"].as_str().unwrap_or_default();
        assert!(!ip.is_empty(), "{} has no podIP", name(p));
        assert_eq!(row["IP"], ip, "{}", t.text);
        // On the pod network, an address from the node's podCIDR; on the host's, the node's.
        let node = lab.get_json(["node", &node_of(p)]);
        if p["spec"]["hostNetwork"] == true {
            assert_eq!(p["status"]["hostIP"], ip, "{p:#}");
        } else {
            let cidr = node["spec"]["podCIDR"].as_str().unwrap_or_default();
            let net = cidr.strip_suffix("0/24").expect("a /24 podCIDR");
            assert!(ip.starts_with(net), "{} at {ip}, outside {cidr}", name(p));
        }
    }
    let hr = t
        .rows
        .iter()
        .find(|r| r["NAMESPACE"] == "default" && r["NAME"] == "hr-app")
        .unwrap_or_else(|| panic!("hr-app missing:\n{}", t.text));
    assert_eq!(hr["NODE"], "node01");

    let d = lab.kubectl_ok(["describe", "pod", "hr-app", "-n", "default"]);
    assert_eq!(described(&d, "Status:"), "Running");
    assert!(described(&d, "Node:").starts_with("node01/"), "{d}");
    assert!(
        !d.lines().any(|l| l.starts_with("Controlled By:")),
        "hr-app is a bare pod:\n{d}"
    );
    let managed = pods
        .iter()
        .find(|p| owner_kind(p) == "ReplicaSet")
        .expect("a ReplicaSet pod");
    let rs = managed["metadata"]["ownerReferences"][0]["name"]
        .as_str()
        .unwrap_or_default();
    let d = lab.kubectl_ok([
        "describe",
        "pod",
        &name(managed),
        "-n",
        managed["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default"),
    ]);
    assert_eq!(described(&d, "Controlled By:"), format!("ReplicaSet/{rs}"));
    assert_eq!(described(&d, "Status:"), "Running");
}

#[test]
fn deleting_a_bound_pod_with_a_grace_period_shows_terminating_then_it_is_gone() {
    // os-upgrade caps termination at 2 lab seconds; let this lab honour 5 s
    // grace periods so that Terminating can be seen.
    let scenario =
        upkeep_testkit::workspace_root().join("crates/upkeep-lab/scenarios/os-upgrade.yaml");
    let text = std::fs::read_to_string(&scenario).expect("read the os-upgrade scenario");
    assert!(
        text.contains("terminationCapSeconds: 2\n"),
        "os-upgrade.yaml no longer sets terminationCapSeconds: 2; adjust this test"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let slow = dir.path().join("os-upgrade-slow-termination.yaml");
    std::fs::write(
        &slow,
        text.replace("terminationCapSeconds: 2\n", "terminationCapSeconds: 60\n"),
    )
    .expect("write scenario");
    let lab = Lab::scenario(&slow.to_string_lossy()).settled();

    let pod = lab
        .pods_on("node02")
        .into_iter()
        .find(|p| owner_kind(p) == "ReplicaSet")
        .expect("a ReplicaSet pod on node02");
    let pod_name = name(&pod);
    assert_eq!(
        lab.kubectl_ok([
            "delete",
            "pod",
            &pod_name,
            "--grace-period=5",
            "--wait=false"
        ])
        .trim(),
        format!(r#"pod "{pod_name}" deleted from default namespace"#)
    );
    // pkg/registry/core/pod/strategy.go CheckGracefulDelete: a bound pod gets a
    // deletionTimestamp and stays, Terminating, until the kubelet finishes it.
    let t = table(&lab, &["pod", &pod_name]);
    assert_eq!(
        t.row("NAME", &pod_name)["STATUS"],
        "Terminating",
        "{}",
        t.text
    );
    let got = lab.get_json(["pod", &pod_name]);
    assert_eq!(got["metadata"]["deletionGracePeriodSeconds"], 5, "{got:#}");
    assert!(got["metadata"]["deletionTimestamp"].is_string(), "{got:#}");
    wait_for(&format!("{pod_name} gone"), SETTLE, || {
        let out = lab.kubectl(["get", "pod", &pod_name, "--ignore-not-found", "-o", "name"]);
        (out.status.success() && stdout(&out).trim().is_empty()).then_some(())
    });

    // An unbound pod has no kubelet to wait for: it goes at once.
    let f = file(
        &lab,
        "nowhere.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: nowhere\nspec:\n  nodeSelector:\n    no-such-label: \"x\"\n  containers:\n  - name: c\n    image: busybox:1.36\n",
    );
    lab.kubectl_ok(["create", "-f", &f]);
    lab.kubectl_ok([
        "delete",
        "pod",
        "nowhere",
        "--grace-period=30",
        "--wait=false",
    ]);
    kubectl_fails(&lab, &["get", "pod", "nowhere"], 1);
}

/// Under the realistic profile an evicted pod with a 5 s grace period is still there 5 s after
/// the eviction. The API rounds deletionTimestamp down to the second (metav1.Time), but the
/// kubelet counts the grace period from when it sees the deletion (pkg/kubelet/kuberuntime
/// killContainer), so an eviction late in a second must not end the pod early.
#[test]
fn an_evicted_pod_is_gone_no_earlier_than_its_grace_period() {
    let lab = Lab::with(LabOptions {
        scenario: Some("os-upgrade".into()),
        extra: ["--profile", "realistic", "--time-scale", "1"]
            .map(String::from)
            .to_vec(),
        ..Default::default()
    })
    .settled();
    let f = file(
        &lab,
        "slow.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: slow\nspec:\n  nodeName: node01\n  terminationGracePeriodSeconds: 5\n  containers:\n  - name: c\n    image: nginx\n",
    );
    lab.kubectl_ok(["create", "-f", &f]);
    wait_for("slow running", SETTLE, || {
        Some(lab.get_json(["pod", "slow"])).filter(running_ready)
    });
    let ev = file(
        &lab,
        "evict.json",
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "slow", "namespace": "default"}}"#,
    );
    // The lab clock runs at the wall clock's pace from the wall clock's time (time scale 1):
    // start the eviction late enough in a second that a deadline rounded down to the second
    // would end the pod about half a second early.
    wait_for("the clock half-way through a second", SETTLE, || {
        let sub = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .subsec_millis();
        (450..650).contains(&sub).then_some(())
    });
    // Taken before the request, so the measured time is never shorter than the real one.
    let asked = std::time::Instant::now();
    lab.kubectl_ok([
        "create",
        "--raw",
        "/api/v1/namespaces/default/pods/slow/eviction",
        "-f",
        &ev,
    ]);
    let got = lab.get_json(["pod", "slow"]);
    assert_eq!(got["metadata"]["deletionGracePeriodSeconds"], 5, "{got:#}");
    lab.kubectl_ok(["wait", "--for=delete", "pod/slow", "--timeout=30s"]);
    let gone = asked.elapsed().as_secs_f64();
    assert!(
        (5.0..8.0).contains(&gone),
        "gone {gone:.2} s after the eviction with a 5 s grace period (deletionTimestamp {})",
        got["metadata"]["deletionTimestamp"]
    );
}

// ---------------------------------------------------------------------------
// kubectl drain
// ---------------------------------------------------------------------------

#[test]
fn kubectl_drain_refuses_the_bare_pod_after_cordoning() {
    let lab = Lab::os_upgrade();
    let before: BTreeSet<String> = lab.pods_on("node01").iter().map(uid).collect();
    let mut t = Transcript::new(&lab);
    // kubectl pkg/drain/filters.go unreplicatedFilter; pkg/cmd/drain/drain.go RunDrain:
    // kubectl cordons every node first and does not undo it when it refuses.
    t.fails(&["drain", "node01", "--ignore-daemonsets"], 1);
    assert_eq!(
        lab.get_json(["node", "node01"])["spec"]["unschedulable"],
        true
    );
    // Nothing was evicted.
    let after = lab.pods_on("node01");
    assert_eq!(after.iter().map(uid).collect::<BTreeSet<_>>(), before);
    assert!(after.iter().all(running_ready), "{after:#?}");

    // Without --ignore-daemonsets the DaemonSet pods are named too.
    t.fails(&["drain", "node01"], 1);
    upkeep_testkit::assert_output!(
        &lab,
        "kubectl_drain_refuses_the_bare_pod",
        map_order_sorted(&t.text)
    );
}

#[test]
fn kubectl_drain_moves_replicaset_pods_and_leaves_daemonset_pods() {
    let lab = Lab::os_upgrade();
    let moved: Vec<(String, String)> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "ReplicaSet")
        .map(|p| (namespace(p), name(p)))
        .collect();
    let daemons: BTreeSet<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "DaemonSet")
        .map(uid)
        .collect();
    assert!(
        !daemons.is_empty(),
        "os-upgrade runs a DaemonSet (kube-proxy) on node02"
    );

    let mut transcript = Transcript::new(&lab);
    let out = transcript.run(&["drain", "node02", "--ignore-daemonsets", "--timeout=60s"]);
    assert!(out.status.success(), "{}", show(&out));
    // The snapshot shows names without their generated suffixes: each evicted pod by name.
    let all = format!("{}{}", stdout(&out), stderr(&out));
    for (ns, p) in &moved {
        for line in [format!("evicting pod {ns}/{p}"), format!("pod/{p} evicted")] {
            assert!(all.lines().any(|l| l == line), "{line}:\n{}", show(&out));
        }
    }
    upkeep_testkit::assert_output!(
        &lab,
        "kubectl_drain_evicts_replicaset_pods",
        transcript.text
    );

    // The ReplicaSets bring their pods back, on the other nodes.
    let t = wait_for(
        "every Deployment whole again, Running and Ready off node02",
        SETTLE,
        || {
            let pods = lab.pods();
            let whole = deployments(&lab).iter().all(|d| {
                let mine: Vec<&Value> = pods.iter().filter(|p| d.selects(p)).collect();
                mine.len() as i64 == d.replicas
                    && mine
                        .iter()
                        .all(|p| running_ready(p) && node_of(p) != "node02")
            });
            whole.then(|| table(&lab, &["pods", "-A", "-o", "wide"]))
        },
    );
    for (ns, p) in &moved {
        assert!(
            !t.rows
                .iter()
                .any(|r| &r["NAMESPACE"] == ns && &r["NAME"] == p),
            "{ns}/{p} was evicted but is still listed:\n{}",
            t.text
        );
    }
    for row in &t.rows {
        if row["NODE"] == "node02" {
            let pod = lab.get_json(["pod", &row["NAME"], "-n", &row["NAMESPACE"]]);
            assert_eq!(
                owner_kind(&pod),
                "DaemonSet",
                "only DaemonSet pods stay:\n{}",
                t.text
            );
        }
        assert_eq!(row["STATUS"], "Running", "{}", t.text);
    }
    let daemons_now: BTreeSet<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| owner_kind(p) == "DaemonSet" && running_ready(p))
        .map(uid)
        .collect();
    assert_eq!(
        daemons_now, daemons,
        "DaemonSet pods stay on node02, untouched"
    );
    let nodes = table(&lab, &["nodes"]);
    assert_eq!(
        nodes.row("NAME", "node02")["STATUS"],
        "Ready,SchedulingDisabled",
        "{}",
        nodes.text
    );
}

#[test]
fn a_pdb_makes_kubectl_drain_retry_until_a_scale_up_lets_it_finish() {
    let lab = Lab::os_upgrade();
    let d = deployment_on(&lab, "node02");
    let pdb = file(&lab, "pdb.yaml", &pdb_yaml("all-up", d.replicas, &d.labels));
    lab.kubectl_ok(["create", "-f", &pdb]);
    wait_pdb(&lab, "all-up", 0);
    let blocked: Vec<String> = lab
        .pods_on("node02")
        .iter()
        .filter(|p| d.selects(p))
        .map(name)
        .collect();
    let before: BTreeSet<String> = lab
        .pods()
        .iter()
        .filter(|p| d.selects(p))
        .map(uid)
        .collect();

    // A short drain of the protected pods: kubectl retries the 429 after 5 s (kubectl
    // pkg/drain/drain.go evictPods), but its 3 s timeout comes first: each pod is tried,
    // retried once when the sleep ends, and given up on.
    let selector = d
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut t = Transcript::new(&lab);
    t.fails(
        &[
            "drain",
            "node02",
            "--ignore-daemonsets",
            &format!("--pod-selector={selector}"),
            "--timeout=3s",
        ],
        1,
    );
    upkeep_testkit::assert_output!(&lab, "kubectl_drain_blocked_by_a_pdb_times_out", t.text);
    let mine: Vec<Value> = lab.pods().into_iter().filter(|p| d.selects(p)).collect();
    let after: BTreeSet<String> = mine.iter().map(uid).collect();
    assert_eq!(after, before, "a blocked drain evicted a protected pod");
    assert!(mine.iter().all(running_ready), "{mine:#?}");
    assert_eq!(
        lab.get_json(["node", "node02"])["spec"]["unschedulable"],
        true
    );

    // A longer drain finishes once a scale-up gives the budget room.
    let drain = Background::start(
        &lab,
        &["drain", "node02", "--ignore-daemonsets", "--timeout=60s"],
    );
    wait_for(
        "kubectl drain to hit the PDB",
        Duration::from_secs(20),
        // Live output, read while kubectl runs.
        || drain.text().contains("will retry after 5s").then_some(()),
    );
    let more = d.replicas + blocked.len() as i64;
    lab.kubectl_ok([
        "scale",
        "deployment",
        &d.name,
        &format!("--replicas={more}"),
    ]);
    let (code, text) = drain.finish(Duration::from_secs(60));
    assert_eq!(code, Some(0), "{text}");
    // Stays a .contains: how many retry lines come first depends on when the scale-up lands.
    assert!(text.contains("node/node02 drained"), "{text}");
    for p in &blocked {
        assert!(text.contains(&format!("pod/{p} evicted")), "{text}");
    }
    assert!(lab.pods_on("node02").iter().all(|p| !d.selects(p)));
}

#[test]
fn eviction_with_two_pdbs_is_a_500_that_kubectl_does_not_retry() {
    let lab = Lab::os_upgrade();
    let d = deployment_on(&lab, "node02");
    for n in ["one", "two"] {
        let f = file(&lab, &format!("{n}.yaml"), &pdb_yaml(n, 1, &d.labels));
        lab.kubectl_ok(["create", "-f", &f]);
    }
    wait_pdb(&lab, "two", d.replicas - 1);
    let before: BTreeSet<String> = lab
        .pods()
        .iter()
        .filter(|p| d.selects(p))
        .map(uid)
        .collect();
    // pkg/registry/core/pod/storage/eviction.go: more than one matching PDB is a 500,
    // which kubectl treats as fatal for the pod (no retry line, no timeout).
    let mut t = Transcript::new(&lab);
    t.fails(
        &["drain", "node02", "--ignore-daemonsets", "--timeout=20s"],
        1,
    );
    upkeep_testkit::assert_output!(&lab, "kubectl_drain_two_pdbs_is_not_retried", t.text);
    let after: BTreeSet<String> = lab
        .pods()
        .iter()
        .filter(|p| d.selects(p))
        .map(uid)
        .collect();
    assert_eq!(after, before, "a pod under two PDBs was evicted");
}

// ---------------------------------------------------------------------------
// Rollouts, wait, watch, paging
// ---------------------------------------------------------------------------

#[test]
fn rollout_set_image_status_history_and_undo() {
    let lab = Lab::os_upgrade();
    let d = deployment_on(&lab, "node02");
    let json = lab.get_json(["deployment", &d.name]);
    let container = json["spec"]["template"]["spec"]["containers"][0]["name"]
        .as_str()
        .expect("container name")
        .to_string();
    let old_image = json["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .expect("image")
        .to_string();
    let new_image = "registry.example/web:2.0";
    let target = format!("deployment/{}", d.name);
    assert_eq!(
        lab.kubectl_ok(["set", "image", &target, &format!("{container}={new_image}")])
            .trim(),
        format!("deployment.apps/{} image updated", d.name)
    );
    let status = lab.kubectl_ok(["rollout", "status", &target, "--timeout=60s"]);
    assert!(
        status.trim_end().ends_with(&format!(
            r#"deployment "{}" successfully rolled out"#,
            d.name
        )),
        "{status}"
    );
    let images_settle = |image: &str| {
        wait_for(
            &format!(
                "{}: {} Running and Ready pods of {image}",
                d.name, d.replicas
            ),
            SETTLE,
            || {
                let pods: Vec<Value> = lab.pods().into_iter().filter(|p| d.selects(p)).collect();
                let ok = pods.len() as i64 == d.replicas
                    && pods
                        .iter()
                        .all(|p| running_ready(p) && p["spec"]["containers"][0]["image"] == image);
                ok.then_some(())
            },
        )
    };
    images_settle(new_image);
    // `deployment.apps/NAME` on the first line, then the REVISION table.
    let history = lab.kubectl_ok(["rollout", "history", &target]);
    let (first, rest) = history.split_once('\n').expect("two parts");
    assert_eq!(first.trim(), format!("deployment.apps/{}", d.name));
    let history = Table::parse(rest);
    let revisions: Vec<&str> = history
        .rows
        .iter()
        .map(|r| r["REVISION"].as_str())
        .collect();
    assert_eq!(revisions, ["1", "2"], "{}", history.text);

    assert_eq!(
        lab.kubectl_ok(["rollout", "undo", &target]).trim(),
        format!("deployment.apps/{} rolled back", d.name)
    );
    lab.kubectl_ok(["rollout", "status", &target, "--timeout=60s"]);
    images_settle(&old_image);
    let rs = table(&lab, &["replicasets", "-l", &format!("app={}", d.name)]);
    assert_eq!(
        rs.rows.len(),
        2,
        "two ReplicaSets, one scaled to zero:\n{}",
        rs.text
    );
    assert!(
        rs.rows
            .iter()
            .any(|r| r["DESIRED"] == "0" && r["CURRENT"] == "0"),
        "{}",
        rs.text
    );
}

#[test]
fn wait_and_watch_follow_a_deletion() {
    let lab = Lab::os_upgrade();
    assert_eq!(
        lab.kubectl_ok([
            "wait",
            "--for=condition=Ready",
            "pod/hr-app",
            "--timeout=30s"
        ])
        .trim(),
        "pod/hr-app condition met"
    );
    let d = deployment_on(&lab, "node02");
    lab.kubectl_ok([
        "wait",
        "--for=condition=Available",
        &format!("deployment/{}", d.name),
        "--timeout=30s",
    ]);

    let watch = Background::start(
        &lab,
        &[
            "get",
            "pods",
            "-w",
            "--output-watch-events",
            "--request-timeout=60s",
        ],
    );
    // The watch's lines are read live, while it runs: they stay .contains checks.
    wait_for("the watch to list hr-app", Duration::from_secs(20), || {
        watch
            .text()
            .lines()
            .any(|l| l.starts_with("ADDED") && l.contains(" hr-app "))
            .then_some(())
    });
    lab.kubectl_ok(["delete", "pod", "hr-app", "--wait=false"]);
    assert_eq!(
        lab.kubectl_ok(["wait", "--for=delete", "pod/hr-app", "--timeout=30s"])
            .trim(),
        "pod/hr-app condition met"
    );
    let seen = wait_for(
        "the watch to report hr-app DELETED",
        Duration::from_secs(20),
        || {
            let text = watch.text();
            text.lines()
                .any(|l| l.starts_with("DELETED") && l.contains(" hr-app "))
                .then_some(text)
        },
    );
    let modified = seen
        .lines()
        .find(|l| l.starts_with("MODIFIED") && l.contains(" hr-app "))
        .unwrap_or_else(|| panic!("no MODIFIED event for hr-app before DELETED:\n{seen}"));
    assert!(modified.contains("Terminating"), "{seen}");
}

/// `--chunk-size` makes kubectl page with limit/continue (it does not with
/// `--sort-by`); the pages together are the whole filtered list.
#[test]
fn chunked_lists_with_field_selectors_page_through_continue_tokens() {
    let lab = Lab::os_upgrade();
    let mut want: Vec<String> = lab
        .pods_on("node01")
        .iter()
        .map(|p| format!("pod/{}", name(p)))
        .collect();
    want.sort();
    assert!(
        want.len() > 2,
        "node01 runs more than one page of pods: {want:?}"
    );
    let out = lab.kubectl([
        "get",
        "pods",
        "-A",
        "--chunk-size=2",
        "--field-selector=spec.nodeName=node01",
        "-o",
        "name",
        "-v=6",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    let mut got: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    got.sort();
    assert_eq!(got, want);
    // kubectl's -v=6 request log (klog lines with times, a PID and the installed kubectl's
    // feature gates) is searched, not compared whole.
    let pages = stderr(&out)
        .lines()
        .filter(|l| l.contains("/api/v1/pods?") && l.contains("limit=2"))
        .count();
    assert!(
        pages >= 2,
        "kubectl asked for one page only:\n{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("continue="), "{}", stderr(&out));
}

/// What kubectl drain does with its overrides, the behaviour safedrain is
/// compared with: a server dry run changes nothing; `--force` deletes the bare
/// pod for good; `--disable-eviction` deletes through a PodDisruptionBudget.
#[test]
fn kubectl_drain_server_dry_run_force_and_disable_eviction() {
    let lab = Lab::os_upgrade();
    let before: BTreeSet<String> = lab.pods().iter().map(uid).collect();
    let mut t = Transcript::new(&lab);
    let out = t.run(&[
        "drain",
        "node01",
        "--ignore-daemonsets",
        "--force",
        "--dry-run=server",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    upkeep_testkit::assert_output!(
        &lab,
        "kubectl_drain_server_dry_run",
        map_order_sorted(&t.text)
    );
    assert_ne!(
        lab.get_json(["node", "node01"])["spec"]["unschedulable"],
        true
    );
    let now: BTreeSet<String> = lab.pods().iter().map(uid).collect();
    assert_eq!(now, before, "a server dry run evicted something");

    // A budget on hr-app that allows no disruption, then a drain that deletes
    // instead of evicting: every non-DaemonSet pod of node01 goes, hr-app included.
    let hr = lab.get_json(["pod", "hr-app"]);
    let hr_labels: BTreeMap<String, String> = hr["metadata"]["labels"]
        .as_object()
        .expect("hr-app has labels")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let pdb = file(&lab, "pdb.yaml", &pdb_yaml("hr-app", 1, &hr_labels));
    lab.kubectl_ok(["create", "-f", &pdb]);
    wait_pdb(&lab, "hr-app", 0);
    let doomed: Vec<String> = lab
        .pods_on("node01")
        .iter()
        .filter(|p| owner_kind(p) != "DaemonSet")
        .map(name)
        .collect();
    let mut t = Transcript::new(&lab);
    let out = t.run(&[
        "drain",
        "node01",
        "--ignore-daemonsets",
        "--force",
        "--disable-eviction",
        "--timeout=60s",
    ]);
    assert!(out.status.success(), "{}", show(&out));
    // The snapshot shows names without their generated suffixes: each deleted pod by name.
    for p in &doomed {
        let line = format!("pod/{p} deleted");
        assert!(
            stdout(&out).lines().any(|l| l == line),
            "{line}:\n{}",
            show(&out)
        );
    }
    t.fails(&["get", "pod", "hr-app"], 1);
    upkeep_testkit::assert_output!(
        &lab,
        "kubectl_drain_disable_eviction_force",
        map_order_sorted(&t.text)
    );
    // The Deployments come back on node02; hr-app had no controller and is lost.
    wait_for("every Deployment whole again off node01", SETTLE, || {
        let pods = lab.pods();
        deployments(&lab)
            .iter()
            .all(|d| {
                let mine: Vec<&Value> = pods.iter().filter(|p| d.selects(p)).collect();
                mine.len() as i64 == d.replicas
                    && mine
                        .iter()
                        .all(|p| running_ready(p) && node_of(p) != "node01")
            })
            .then_some(())
    });
    assert!(
        !lab.pods().iter().any(|p| name(p) == "hr-app"),
        "hr-app came back"
    );
}

// ---------------------------------------------------------------------------
// Where a real cluster is less kind: Pending replacements, PDB numbers,
// terminating namespaces
// ---------------------------------------------------------------------------

/// The pods of namespace `ns` with label `app`.
fn app_pods(lab: &Lab, ns: &str, app: &str) -> Vec<Value> {
    lab.get_json(["pods", "-n", ns, "-l", &format!("app={app}")])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A Deployment of `replicas` nginx pods labelled `app`, with `extra` YAML under the pod spec.
fn deployment_yaml(ns: &str, app: &str, replicas: i64, extra: &str) -> String {
    format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: {ns}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels:\n      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n    spec:\n      containers:\n      - name: web\n        image: nginx\n{extra}"
    )
}

#[test]
fn a_replacement_that_fits_nowhere_stays_pending_with_the_schedulers_words() {
    let lab = Lab::os_upgrade();
    // one replica per node (required pod anti-affinity on the hostname)
    let anti = "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - topologyKey: kubernetes.io/hostname\n            labelSelector:\n              matchLabels:\n                app: solo\n";
    let f = file(
        &lab,
        "solo.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fid\n---\n{}",
            deployment_yaml("fid", "solo", 2, anti)
        ),
    );
    lab.kubectl_ok(["apply", "-f", &f]);
    wait_for("both solo replicas running", SETTLE, || {
        let pods = app_pods(&lab, "fid", "solo");
        let nodes: BTreeSet<String> = pods.iter().map(node_of).collect();
        (pods.len() == 2 && pods.iter().all(running_ready) && nodes.len() == 2).then_some(())
    });
    let on_node02 = app_pods(&lab, "fid", "solo")
        .into_iter()
        .find(|p| node_of(p) == "node02")
        .map(|p| name(&p))
        .expect("a replica on node02");

    // kubectl drain evicts it; the scheduler has nowhere to put the replacement
    let out = lab.kubectl([
        "drain",
        "node02",
        "--ignore-daemonsets",
        "--pod-selector=app=solo",
        "--timeout=60s",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let want = "0/3 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) were unschedulable. preemption: 0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.";
    let pending = wait_for("the replacement reported unschedulable", SETTLE, || {
        app_pods(&lab, "fid", "solo").into_iter().find(|p| {
            name(p) != on_node02
                && p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "PodScheduled" && c["status"] == "False")
        })
    });
    let pname = name(&pending);
    let t = table(&lab, &["pods", "-n", "fid", "-o", "wide"]);
    assert_eq!(t.row("NAME", &pname)["STATUS"], "Pending");
    assert_eq!(t.row("NAME", &pname)["NODE"], "<none>");
    let cond = lab.kubectl_ok([
        "get",
        "pod",
        &pname,
        "-n",
        "fid",
        "-o",
        r#"jsonpath={range .status.conditions[?(@.type=="PodScheduled")]}{.status}|{.reason}|{.message}{end}"#,
    ]);
    assert_eq!(cond, format!("False|Unschedulable|{want}"));
    // the FailedScheduling event, as kubectl describe shows it; searched, not compared
    // whole: the scheduler's retries add "(xN over …)" and widen the Age column by timing
    let described = lab.kubectl_ok(["describe", "pod", &pname, "-n", "fid"]);
    let line = described
        .lines()
        .find(|l| l.contains("FailedScheduling"))
        .unwrap_or_else(|| panic!("no FailedScheduling event:\n{described}"));
    assert!(line.trim_start().starts_with("Warning"), "{line}");
    assert!(line.contains("default-scheduler"), "{line}");
    assert!(line.ends_with(want), "{line}");

    // uncordoning gives it a place
    lab.kubectl_ok(["uncordon", "node02"]);
    wait_for("the replacement running on node02", SETTLE, || {
        lab.get_json(["pod", &pname, "-n", "fid"])
            .as_object()
            .map(|_| lab.get_json(["pod", &pname, "-n", "fid"]))
            .filter(|p| running_ready(p) && node_of(p) == "node02")
    });
}

#[test]
fn pdb_numbers_follow_the_disruption_controller() {
    let lab = Lab::os_upgrade();
    // 3 Deployment pods + 1 bare pod; a maxUnavailable budget and an empty policy/v1 one
    let f = file(
        &lab,
        "m2.yaml",
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fid\n---\n{}---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: bare\n  namespace: fid\n  labels:\n    app: m2\nspec:\n  containers:\n  - name: c\n    image: nginx\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: m2\n  namespace: fid\nspec:\n  maxUnavailable: 1\n  selector:\n    matchLabels:\n      app: m2\n---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: m1\n  namespace: fid\nspec:\n  selector:\n    matchLabels:\n      app: m2\n",
            deployment_yaml("fid", "m2", 3, "")
        ),
    );
    lab.kubectl_ok(["apply", "-f", &f]);
    wait_for("4 pods ready and the budget counted", SETTLE, || {
        let pods = app_pods(&lab, "fid", "m2");
        let p = lab.get_json(["pdb", "m2", "-n", "fid"]);
        (pods.len() == 4 && pods.iter().all(running_ready) && p["status"]["currentHealthy"] == 4)
            .then_some(())
    });
    // kubernetes/kubernetes#103414: the bare pod is skipped in expectedPods
    let s = &lab.get_json(["pdb", "m2", "-n", "fid"])["status"];
    let n = |k: &str| s[k].as_i64();
    assert_eq!(
        (
            n("expectedPods"),
            n("desiredHealthy"),
            n("currentHealthy"),
            n("disruptionsAllowed")
        ),
        (Some(3), Some(2), Some(4), Some(2)),
        "{s}"
    );
    // policy/v1 without minAvailable or maxUnavailable allows nothing
    let s = &lab.get_json(["pdb", "m1", "-n", "fid"])["status"];
    assert_eq!(
        (s["expectedPods"].as_i64(), s["disruptionsAllowed"].as_i64()),
        (Some(0), Some(0)),
        "{s}"
    );
    let t = table(&lab, &["pdb", "-n", "fid"]);
    assert_eq!(t.row("NAME", "m2")["ALLOWED DISRUPTIONS"], "2");
    assert_eq!(t.row("NAME", "m2")["MAX UNAVAILABLE"], "1");
    assert_eq!(t.row("NAME", "m1")["ALLOWED DISRUPTIONS"], "0");
    assert_eq!(t.row("NAME", "m1")["MIN AVAILABLE"], "N/A");
    // the controller says why the numbers may surprise
    let events = lab.get_json(["events", "-n", "fid"]);
    let unmanaged = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|e| e["reason"] == "UnmanagedPods" && e["involvedObject"]["name"] == "m2")
        .unwrap_or_else(|| panic!("no UnmanagedPods event: {events}"));
    assert_eq!(unmanaged["type"], "Warning");
}

#[test]
fn eviction_in_a_terminating_namespace_is_forbidden() {
    let lab = Lab::os_upgrade();
    let f = file(
        &lab,
        "held.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fid\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: held\n  namespace: fid\n  finalizers:\n  - example.com/hold\nspec:\n  containers:\n  - name: c\n    image: nginx\n",
    );
    lab.kubectl_ok(["apply", "-f", &f]);
    wait_for("held running", SETTLE, || {
        Some(lab.get_json(["pod", "held", "-n", "fid"])).filter(running_ready)
    });
    lab.kubectl_ok(["delete", "namespace", "fid", "--wait=false"]);
    let t = table(&lab, &["namespace", "fid"]);
    assert_eq!(t.row("NAME", "fid")["STATUS"], "Terminating");
    let ev = file(
        &lab,
        "evict.json",
        r#"{"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "held", "namespace": "fid"}}"#,
    );
    // The eviction, and any create, is Forbidden (k8s.io/apiserver
    // pkg/admission/plugin/namespace/lifecycle/admission.go Admit).
    let mut t = Transcript::new(&lab);
    t.fails(
        &[
            "create",
            "--raw",
            "/api/v1/namespaces/fid/pods/held/eviction",
            "-f",
            &ev,
        ],
        1,
    );
    t.fails(&["create", "configmap", "late", "-n", "fid"], 1);
    upkeep_testkit::assert_output!(&lab, "create_in_a_terminating_namespace", t.text);
    // once the held pod is released the namespace goes
    lab.kubectl_ok([
        "patch",
        "pod",
        "held",
        "-n",
        "fid",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    lab.kubectl_ok(["wait", "--for=delete", "namespace/fid", "--timeout=30s"]);
}
