//! The scheduler: taints and tolerations, nodeSelector, required node affinity, resources,
//! pod anti-affinity, host ports, local PersistentVolumes, and the FailedScheduling report of
//! a pod that fits nowhere.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use serde_json::{Value, json};
use sim_support::{TestLab, cluster, running_ready, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::util;

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "nginx", "resources": spec.get("req").cloned().unwrap_or(json!({}))}]);
    spec.as_object_mut().unwrap().remove("req");
    json!({"metadata": {"name": name, "namespace": "default"}, "spec": spec, "status": {"phase": "Pending"}})
}

async fn placed(t: &TestLab, name: &str) -> String {
    let p = wait(&format!("{name} running"), 10, || {
        t.get(&resources::POD, "default", name)
            .filter(|p| running_ready(p))
    })
    .await;
    util::node_name(&p).to_string()
}

async fn unschedulable(t: &TestLab, name: &str) -> String {
    let p = wait(&format!("{name} unschedulable"), 10, || {
        t.get(&resources::POD, "default", name)
            .filter(|p| util::condition(p, "PodScheduled").is_some_and(|c| c["status"] == "False"))
    })
    .await;
    let c = util::condition(&p, "PodScheduled").unwrap();
    assert_eq!(c["reason"], "Unschedulable");
    assert_eq!(util::phase(&p), "Pending");
    assert!(util::node_name(&p).is_empty());
    c["message"].as_str().unwrap().to_string()
}

fn lab() -> TestLab {
    let extra = "  - name: gpu\n    labels: {hw: gpu, zone: b}\n    taints: [{key: dedicated, value: gpu, effect: NoSchedule}]\n    capacity: {cpu: \"2\", memory: 4Gi}\n";
    let yaml = cluster(2, "").replace(
        "  - name: node{index:02}\n",
        &format!("{extra}  - name: node{{index:02}}\n"),
    );
    let yaml = yaml.replace(
        "    count: 2\n",
        "    count: 2\n    labels: {zone: a}\n    capacity: {cpu: \"1\", memory: 2Gi}\n",
    );
    start(&yaml, 50.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_selectors_affinity_and_resources() {
    let t = lab();
    // a toleration + nodeSelector lands on the tainted gpu node
    t.create(&resources::POD, pod("gpu-job", json!({"nodeSelector": {"hw": "gpu"}, "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]})));
    assert_eq!(placed(&t, "gpu-job").await, "gpu");
    // required node affinity with matchExpressions
    t.create(&resources::POD, pod("zone-a", json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}})));
    assert!(placed(&t, "zone-a").await.starts_with("node0"));
    // matchFields pins to one node
    t.create(&resources::POD, pod("pinned", json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node02"]}]}]}}}})));
    assert_eq!(placed(&t, "pinned").await, "node02");
    // without a toleration the gpu node and the control plane are out; selector for gpu fails
    t.create(
        &resources::POD,
        pod("no-tol", json!({"nodeSelector": {"hw": "gpu"}})),
    );
    let msg = unschedulable(&t, "no-tol").await;
    assert_eq!(
        msg,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
    // resources: 800m fits on a 1-cpu worker once, not twice on the same one
    t.create(
        &resources::POD,
        pod("big-1", json!({"req": {"requests": {"cpu": "800m"}}})),
    );
    t.create(
        &resources::POD,
        pod("big-2", json!({"req": {"requests": {"cpu": "800m"}}})),
    );
    let (a, b) = (placed(&t, "big-1").await, placed(&t, "big-2").await);
    assert_ne!(a, b, "two 800m pods cannot share a 1-cpu node");
    t.create(
        &resources::POD,
        pod("big-3", json!({"req": {"requests": {"cpu": "800m"}}})),
    );
    let msg = unschedulable(&t, "big-3").await;
    assert_eq!(
        msg,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu. preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    // the FailedScheduling event carries the same words
    let (evs, _) = t.lab.store.list(
        &resources::EVENT,
        &upkeep_lab::ListQuery::in_namespace("default"),
    );
    let ev = evs
        .iter()
        .find(|e| e["involvedObject"]["name"] == "big-3" && e["reason"] == "FailedScheduling")
        .expect("FailedScheduling event");
    assert_eq!(ev["message"], msg);
    assert_eq!(ev["type"], "Warning");
    assert!(
        evs.iter()
            .any(|e| e["involvedObject"]["name"] == "big-1" && e["reason"] == "Scheduled")
    );
    // freeing capacity lets the pending pod in
    t.lab
        .store
        .delete(&resources::POD, "default", "big-1", &Default::default())
        .unwrap();
    assert_eq!(placed(&t, "big-3").await, a);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cordoned_nodes_get_no_new_pods() {
    let t = lab();
    for n in ["node01", "node02", "gpu"] {
        t.lab
            .store
            .mutate(&resources::NODE, "", n, |o| {
                o["spec"]["unschedulable"] = json!(true);
                Ok(())
            })
            .unwrap();
    }
    t.create(&resources::POD, pod("nowhere", json!({})));
    let msg = unschedulable(&t, "nowhere").await;
    assert!(msg.starts_with("0/4 nodes are available: "), "{msg}");
    assert!(msg.contains("3 node(s) were unschedulable"), "{msg}");
    t.lab
        .store
        .mutate(&resources::NODE, "", "node02", |o| {
            o["spec"].as_object_mut().unwrap().remove("unschedulable");
            Ok(())
        })
        .unwrap();
    assert_eq!(placed(&t, "nowhere").await, "node02");
}

/// A pod with labels `app` and `spec` (containers added).
fn app_pod(name: &str, app: &str, spec: Value) -> Value {
    let mut p = pod(name, spec);
    p["metadata"]["labels"] = json!({"app": app});
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anti_affinity_and_host_ports_keep_a_pod_pending() {
    let t = lab();
    // one replica per worker (plugins/interpodaffinity): the third has nowhere to go
    let spec = json!({"nodeSelector": {"zone": "a"}, "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "r"}}}]}}});
    t.create(&resources::POD, app_pod("r1", "r", spec.clone()));
    let n1 = placed(&t, "r1").await;
    t.create(&resources::POD, app_pod("r2", "r", spec.clone()));
    let n2 = placed(&t, "r2").await;
    assert_ne!(
        n1, n2,
        "required anti-affinity puts the replicas on different nodes"
    );
    t.create(&resources::POD, app_pod("r3", "r", spec));
    assert_eq!(
        unschedulable(&t, "r3").await,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 node(s) didn't match pod anti-affinity rules. preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
    );
    // once r1 is gone, r3 takes its node
    t.lab
        .store
        .delete(&resources::POD, "default", "r1", &Default::default())
        .unwrap();
    assert_eq!(placed(&t, "r3").await, n1);

    // plugins/nodeports: the same host port on the same node
    let port = |n: &str| {
        let mut p = pod(
            n,
            json!({"nodeSelector": {"kubernetes.io/hostname": "node01"}}),
        );
        p["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 8080}]);
        p
    };
    t.create(&resources::POD, port("hp1"));
    assert_eq!(placed(&t, "hp1").await, "node01");
    t.create(&resources::POD, port("hp2"));
    assert_eq!(
        unschedulable(&t, "hp2").await,
        "0/4 nodes are available: 1 node(s) didn't have free ports for the requested pod ports, 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }. preemption: 0/4 nodes are available: 1 No preemption victims found for incoming pod, 3 Preemption is not helpful for scheduling."
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_persistent_volume_binds_its_pod_to_the_node() {
    let t = lab();
    t.create(
        &resources::PERSISTENTVOLUME,
        json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "local-1"},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt/disk"},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["node02"]}]}]}}}}),
    );
    t.create(
        &resources::PERSISTENTVOLUMECLAIM,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}, "volumeName": "local-1"}}),
    );
    let with_claim = |n: &str, claim: &str| {
        pod(
            n,
            json!({"volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": claim}}]}),
        )
    };
    t.create(&resources::POD, with_claim("db", "data"));
    assert_eq!(placed(&t, "db").await, "node02");
    // plugins/volumebinding PreFilter: a missing claim, an unbound claim
    t.create(&resources::POD, with_claim("no-claim", "missing"));
    assert_eq!(
        unschedulable(&t, "no-claim").await,
        "0/4 nodes are available: persistentvolumeclaim \"missing\" not found. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
    t.create(
        &resources::PERSISTENTVOLUMECLAIM,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "loose", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    );
    t.create(&resources::POD, with_claim("unbound", "loose"));
    assert_eq!(
        unschedulable(&t, "unbound").await,
        "0/4 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
    // with node02 cordoned the volume's pod cannot move anywhere else
    t.lab
        .store
        .mutate(&resources::NODE, "", "node02", |o| {
            o["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .unwrap();
    t.create(&resources::POD, with_claim("db-2", "data"));
    assert_eq!(
        unschedulable(&t, "db-2").await,
        "0/4 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 1 node(s) had volume node affinity conflict, 1 node(s) were unschedulable. preemption: 0/4 nodes are available: 4 Preemption is not helpful for scheduling."
    );
}
