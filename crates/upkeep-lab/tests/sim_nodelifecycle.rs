//! Node lifecycle as upstream's controllers run it: disruption modes
//! (pkg/controller/nodelifecycle/node_lifecycle_controller.go handleDisruption) and the
//! per-pod taint-eviction clock (pkg/controller/tainteviction/taint_eviction.go
//! processPodOnNode), on the scaled lab clock.

mod sim_support;

use serde_json::json;
use sim_support::{cluster, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::{KubeletControl, KubeletMode, util};

fn no_execute(n: &serde_json::Value, key: &str) -> Option<jiff::Timestamp> {
    util::node_taints(n)
        .iter()
        .find(|t| t["key"] == key && t["effect"] == "NoExecute")
        .map(|t| util::s(t, "/timeAdded").parse().expect("timeAdded"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_arriving_on_a_tainted_node_gets_its_own_toleration_time() {
    // one NotReady node of three: normal mode, the node is tainted
    let t = start(&cluster(2, ""), 20.0);
    KubeletControl::get(&t.lab).set_mode("node01", KubeletMode::NotReady);
    let added = wait("node01's not-ready NoExecute taint", 10, || {
        no_execute(
            t.get(&resources::NODE, "", "node01")?.as_ref(),
            util::TAINT_NOT_READY,
        )
    })
    .await;
    wait("100 lab seconds after the taint", 20, || {
        (t.lab.clock.now().duration_since(added).as_secs_f64() >= 100.0).then_some(())
    })
    .await;
    t.create(
        &resources::POD,
        json!({"metadata": {"name": "late", "namespace": "default"},
               "spec": {"nodeName": "node01",
                        "tolerations": [{"key": util::TAINT_NOT_READY, "operator": "Exists",
                                         "effect": "NoExecute", "tolerationSeconds": 60}],
                        "containers": [{"name": "c", "image": "nginx"}]}}),
    );
    let created = t.lab.clock.now();
    wait("the late pod evicted", 20, || {
        t.get(&resources::POD, "default", "late")
            .is_none_or(|p| util::terminating(&p))
            .then_some(())
    })
    .await;
    let after = t.lab.clock.now().duration_since(created).as_secs_f64();
    // counted from the taint, its 60 s had run out before it arrived
    assert!(
        after >= 60.0,
        "evicted {after:.0} lab s after it arrived, before its 60 s toleration"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_node_is_not_ready_nothing_is_evicted() {
    let web = "---\napiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: default}\nspec:\n  nodeName: node01\n  containers: [{name: c, image: nginx}]\n";
    let t = start(&cluster(1, web), 100.0);
    let kubelets = KubeletControl::get(&t.lab);
    kubelets.set_mode("controlplane", KubeletMode::Stopped);
    kubelets.set_mode("node01", KubeletMode::Stopped);
    let down = wait("both nodes Unknown", 20, || {
        let all_unknown = ["controlplane", "node01"].iter().all(|n| {
            t.get(&resources::NODE, "", n)
                .is_some_and(|n| util::condition_status(&n, "Ready") == "Unknown")
        });
        all_unknown.then(|| t.lab.clock.now())
    })
    .await;
    // well past the 300 s default toleration
    wait("400 lab seconds", 20, || {
        (t.lab.clock.now().duration_since(down).as_secs_f64() >= 400.0).then_some(())
    })
    .await;
    for n in ["controlplane", "node01"] {
        let node = t.get(&resources::NODE, "", n).unwrap();
        assert_eq!(
            no_execute(&node, util::TAINT_UNREACHABLE),
            None,
            "master disruption mode: {n} keeps no NoExecute taint"
        );
        assert!(
            util::node_taints(&node)
                .iter()
                .any(|x| x["key"] == util::TAINT_UNREACHABLE && x["effect"] == "NoSchedule"),
            "{n} still gets the NoSchedule taint"
        );
    }
    let pod = t.get(&resources::POD, "default", "web").unwrap();
    assert!(!util::terminating(&pod), "the pod was evicted");
}
