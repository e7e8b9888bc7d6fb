//! The built-in scenarios load and settle; the generator builds a running cluster.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use upkeep_lab::scenario::{self, BUILTIN, Scenario};
use upkeep_lab::sim::{Sim, util};
use upkeep_lab::{Lab, LabOptions, LabPlugin, ListQuery, resources};

fn load(name: &str) -> std::sync::Arc<Lab> {
    let lab = Lab::new(LabOptions::default());
    let sim = Sim::default();
    assert!(sim.load_scenario(&lab, name).expect("scenario loads"));
    lab
}

fn pods(lab: &Lab, ns: &str) -> Vec<upkeep_lab::Obj> {
    lab.store
        .list(&resources::POD, &ListQuery::in_namespace(ns))
        .0
}

#[test]
fn os_upgrade_matches_the_practice_lab() {
    let lab = load("os-upgrade");
    assert_eq!(lab.version().git_version, "v1.34.1");
    let (nodes, _) = lab.store.list(&resources::NODE, &ListQuery::all());
    let names: Vec<&str> = nodes.iter().map(|n| util::name(n)).collect();
    assert_eq!(names, ["controlplane", "node01", "node02"]);
    assert!(nodes.iter().all(|n| util::node_ready(n)));
    let hr = lab.store.get(&resources::POD, "default", "hr-app").unwrap();
    assert_eq!(util::node_name(&hr), "node01");
    assert!(util::controller_ref(&hr).is_none());
    assert_eq!(util::phase(&hr), "Running");
    let blue: Vec<_> = pods(&lab, "default")
        .into_iter()
        .filter(|p| util::label(p, "app") == Some("blue"))
        .collect();
    assert_eq!(blue.len(), 3);
    assert!(
        blue.iter()
            .all(|p| util::pod_ready(p) && util::node_name(p) != "controlplane")
    );
    assert!(
        blue.iter().any(|p| util::node_name(p) == "node01")
            && blue.iter().any(|p| util::node_name(p) == "node02")
    );
    let ks = pods(&lab, "kube-system");
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "etcd",
    ] {
        let p = ks
            .iter()
            .find(|p| util::name(p) == format!("{c}-controlplane"))
            .unwrap_or_else(|| panic!("{c} mirror pod"));
        assert!(p["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    }
    assert_eq!(
        ks.iter()
            .filter(|p| util::label(p, "k8s-app") == Some("kube-proxy"))
            .count(),
        3
    );
    assert!(
        ks.iter()
            .filter(|p| util::label(p, "k8s-app") == Some("kube-dns"))
            .all(|p| util::pod_ready(p))
    );
    let loaded = scenario::loaded(&lab);
    let l = loaded.read();
    assert_eq!(l.spec.packages.repositories[0].minor, "v1.34");
    assert_eq!(
        scenario::package_family(l.nodes[0].template.os_image.as_deref().unwrap()),
        "apt"
    );
}

#[test]
fn cluster_upgrade_is_one_minor_behind_its_newest_repository() {
    let lab = load("cluster-upgrade");
    let (nodes, _) = lab.store.list(&resources::NODE, &ListQuery::all());
    assert_eq!(
        nodes.iter().filter(|n| util::is_control_plane(n)).count(),
        2
    );
    assert_eq!(nodes.len(), 5);
    let l = scenario::loaded(&lab);
    let newest = l
        .read()
        .spec
        .packages
        .repositories
        .iter()
        .map(|r| r.minor.clone())
        .max()
        .unwrap();
    assert_eq!(newest, "v1.35");
    assert!(lab.version().git_version.starts_with("v1.34."));
    for cp in ["controlplane01", "controlplane02"] {
        let p = lab
            .store
            .get(
                &resources::POD,
                "kube-system",
                &format!("kube-apiserver-{cp}"),
            )
            .unwrap();
        assert_eq!(
            p["spec"]["containers"][0]["image"],
            format!(
                "registry.k8s.io/kube-apiserver:{}",
                lab.version().git_version
            )
        );
    }
    let pdb = lab.store.get(&resources::PDB, "default", "web").unwrap();
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1);
    let db0 = lab.store.get(&resources::POD, "default", "db-0").unwrap();
    assert!(util::pod_ready(&db0));
    let cm = lab
        .store
        .get(&resources::CONFIGMAP, "kube-system", "kubeadm-config")
        .unwrap();
    assert!(
        cm["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap()
            .contains("kubernetesVersion: v1.34.3")
    );
}

#[test]
fn skew_violations_carry_the_declared_versions() {
    let lab = load("skew-violations");
    let kv = |n: &str| {
        lab.store.get(&resources::NODE, "", n).unwrap()["status"]["nodeInfo"]["kubeletVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(kv("node02"), "v1.29.15");
    assert_eq!(kv("node03"), "v1.35.0");
    let img = |p: &str| {
        lab.store.get(&resources::POD, "kube-system", p).unwrap()["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        img("kube-apiserver-controlplane02"),
        "registry.k8s.io/kube-apiserver:v1.33.5"
    );
    assert_eq!(
        img("kube-controller-manager-controlplane02"),
        "registry.k8s.io/kube-controller-manager:v1.34.2"
    );
    assert_eq!(
        img("kube-apiserver-controlplane01"),
        "registry.k8s.io/kube-apiserver:v1.34.2"
    );
}

#[test]
fn ha_control_plane_has_three_control_planes() {
    let lab = load("ha-control-plane");
    let apiservers: Vec<_> = pods(&lab, "kube-system")
        .into_iter()
        .filter(|p| util::label(p, "component") == Some("kube-apiserver"))
        .collect();
    assert_eq!(apiservers.len(), 3);
    let pdb = lab.store.get(&resources::PDB, "default", "api").unwrap();
    assert_eq!(pdb["status"]["expectedPods"], 3);
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1);
}

#[test]
fn every_builtin_parses_and_unknown_names_say_what_exists() {
    for (name, _) in BUILTIN {
        Scenario::resolve(name).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    }
    let err = format!("{:#}", Scenario::resolve("no-such-scenario").unwrap_err());
    assert!(
        err.contains("os-upgrade") && err.contains("generate:nodes=N,pods=M"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        Scenario::parse(
            "x",
            "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nspec: {nodez: []}\n"
        )
        .unwrap_err()
    );
    assert!(err.contains("nodez"), "{err}");
}

#[test]
fn generator_builds_a_running_cluster() {
    let lab = load("generate:nodes=20,pods=450,replicas=30,namespaces=3");
    let (nodes, _) = lab.store.list(&resources::NODE, &ListQuery::all());
    assert_eq!(nodes.len(), 21);
    let (all, _) = lab.store.list(&resources::POD, &ListQuery::all());
    assert_eq!(all.len(), 450);
    assert!(all.iter().all(|p| util::phase(p) == "Running"
        && util::pod_ready(p)
        && util::node_name(p).starts_with("worker-")));
    let (deps, _) = lab.store.list(&resources::DEPLOYMENT, &ListQuery::all());
    assert_eq!(deps.len(), 15);
    assert!(Scenario::resolve("generate:nodes=0,pods=5").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_cluster_is_steady_under_the_controllers() {
    let lab = Lab::new(LabOptions {
        time_scale: 20.0,
        ..Default::default()
    });
    let sim = Sim::default();
    sim.load_scenario(&lab, "generate:nodes=10,pods=100,replicas=10")
        .unwrap();
    sim.start(&lab);
    // a deployment scaled up gets its extra pods from the running controllers
    lab.store
        .mutate(&resources::DEPLOYMENT, "load-00", "app-00000", |d| {
            d["spec"]["replicas"] = serde_json::json!(12);
            Ok(())
        })
        .unwrap();
    sim_support::wait("12 ready pods of app-00000", 15, || {
        let sel = upkeep_lab::selector::LabelSelector::parse("app=app-00000").unwrap();
        let p = lab
            .store
            .list(
                &resources::POD,
                &ListQuery::in_namespace("load-00").labels(sel),
            )
            .0;
        (p.iter().filter(|p| sim_support::running_ready(p)).count() == 12).then_some(())
    })
    .await;
    let (all, _) = lab.store.list(&resources::POD, &ListQuery::all());
    assert_eq!(all.len(), 102, "nothing else was created or removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_declares_stopped_kubelets_faults_and_timing() {
    let yaml = "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {name: t}\nspec:\n  timeScale: 100\n  timing: {podStartSeconds: 3, nodeMonitorGraceSeconds: 40}\n  faults:\n    rules:\n    - {verb: create, resource: pods/eviction, code: 429, count: 2}\n  nodes:\n  - name: up\n  - name: down\n    kubelet: stopped\n";
    let lab = Lab::new(LabOptions::default());
    let sim = Sim::default();
    let sc = Scenario::parse("t", yaml).unwrap();
    assert!(sc.apply(&lab).unwrap());
    assert_eq!(lab.clock.time_scale(), 100.0);
    let cfg = upkeep_lab::sim::config(&lab);
    assert_eq!(
        (cfg.pod_start_seconds, cfg.node_monitor_grace_seconds),
        (3.0, 40.0)
    );
    assert_eq!(
        cfg.lease_renew_seconds, 10.0,
        "unset timing keeps its default"
    );
    let faults = lab.faults.config();
    assert_eq!(faults.rules.len(), 1);
    assert_eq!(faults.rules[0].resource, "pods/eviction");
    sim.ctx(&lab).settle(10);
    sim.start(&lab);
    let node = sim_support::wait("the stopped node goes Unknown", 10, || {
        let n = lab.store.get(&resources::NODE, "", "down")?;
        (util::condition_status(&n, "Ready") == "Unknown").then_some(n)
    })
    .await;
    assert!(
        util::node_taints(&node)
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/unreachable")
    );
    assert!(util::node_ready(
        &lab.store.get(&resources::NODE, "", "up").unwrap()
    ));
}

#[test]
fn a_scenario_file_may_hold_more_than_a_thousand_documents() {
    let mut yaml = String::from(
        "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {name: many}\nspec:\n  nodes:\n  - name: node01\n",
    );
    for i in 0..3000 {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: default}}\ndata: {{k: v}}\n"
        ));
    }
    let objects = Scenario::parse_objects(&yaml).expect("3,000 documents parse");
    assert_eq!(objects.len(), 3000);
}

#[test]
fn a_kubeadm_cluster_of_a_thousand_nodes_runs_one_kube_proxy_pod_per_node() {
    let yaml = "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {name: t}\nspec:\n  kubeadm: true\n  nodes:\n  - name: controlplane\n    role: control-plane\n  - name: worker-{index:04}\n    count: 1000\n";
    let lab = Lab::new(LabOptions::default());
    let sim = Sim::default();
    let sc = Scenario::parse("t", yaml).unwrap();
    assert!(sc.apply(&lab).unwrap());
    let started = std::time::Instant::now();
    sim.ctx(&lab).settle(30);
    let proxies: Vec<_> = pods(&lab, "kube-system")
        .into_iter()
        .filter(|p| util::label(p, "k8s-app") == Some("kube-proxy"))
        .collect();
    assert_eq!(proxies.len(), 1001, "one kube-proxy pod per node");
    let mut nodes: Vec<&str> = proxies.iter().map(|p| util::node_name(p)).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 1001, "on 1,001 distinct nodes");
    assert!(proxies.iter().all(|p| util::phase(p) == "Running"));
    assert!(
        proxies
            .iter()
            .all(|p| util::controller_of(p).map(|c| c.0) == Some("DaemonSet"))
    );
    let ds = lab
        .store
        .get(&resources::DAEMONSET, "kube-system", "kube-proxy")
        .unwrap();
    assert_eq!(util::i(&ds, "/status/desiredNumberScheduled"), Some(1001));
    assert_eq!(util::i(&ds, "/status/numberReady"), Some(1001));
    // a generous bound for a debug build on a shared machine; it guards against the
    // per-node scans over all pods and nodes coming back
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "settling 1,001 nodes took {:?}",
        started.elapsed()
    );
}

/// A node may name its InternalIP (a real node behind the lab is reached there); an address
/// on a template of several nodes is refused, naming the node.
#[test]
fn a_scenario_node_may_name_its_internal_ip() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("addressed.yaml");
    std::fs::write(
        &file,
        "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {name: addressed}\nspec:\n  nodes:\n  - name: node01\n    internalIP: 198.18.7.11\n  - name: node02\n",
    )
    .unwrap();
    let lab = load(file.to_str().unwrap());
    let address = |name: &str| {
        let n = lab.store.get(&resources::NODE, "", name).unwrap();
        n.pointer("/status/addresses/0/address")
            .and_then(|a| a.as_str())
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(address("node01"), "198.18.7.11");
    assert!(
        address("node02").starts_with("127."),
        "{}",
        address("node02")
    );

    std::fs::write(
        &file,
        "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {name: addressed}\nspec:\n  nodes:\n  - name: node{index:02}\n    count: 2\n    internalIP: 198.18.7.11\n",
    )
    .unwrap();
    let lab = Lab::new(LabOptions::default());
    let err = format!(
        "{:#}",
        Sim::default()
            .load_scenario(&lab, file.to_str().unwrap())
            .unwrap_err()
    );
    assert!(
        err.contains("internalIP") && err.contains("node{index:02}"),
        "{err}"
    );
}
