//! The scheduler: taints and tolerations, nodeSelector, required node affinity, resources,
//! and the FailedScheduling report of a pod that fits nowhere.

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
