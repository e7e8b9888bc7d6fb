//! Kubelets and node lifecycle: NotReady/unreachable nodes, taint-based eviction on the
//! scaled clock, nodes created through the API, mirror pods, host commands.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use std::sync::Arc;

use serde_json::json;
use sim_support::{cluster, running_ready, start, wait};
use upkeep_lab::exec::{self, ExecOutput};
use upkeep_lab::resources;
use upkeep_lab::sim::{KubeletControl, KubeletMode, StaticPods, util};

const WEB: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: patient, namespace: default}\nspec:\n  nodeName: node01\n  tolerations: [{key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 100000}]\n  containers: [{name: c, image: nginx}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_node_is_tainted_and_its_pods_evicted_after_the_toleration() {
    // 300 lab seconds of toleration pass in 1 s
    let t = start(&cluster(2, WEB), 300.0);
    t.wait_ready("web ready", 10, "default", Some("app=web"), 4)
        .await;
    let on_node01: Vec<String> = t
        .pods_with("default", "app=web")
        .iter()
        .filter(|p| util::node_name(p) == "node01")
        .map(|p| util::name(p).to_string())
        .collect();
    assert!(!on_node01.is_empty());
    let stopped_at = t.lab.clock.now();
    KubeletControl::get(&t.lab).set_mode("node01", KubeletMode::Stopped);
    let node = wait(
        "node01 Unknown with the unreachable NoExecute taint",
        10,
        || {
            let n = t.get(&resources::NODE, "", "node01")?;
            let tainted = util::node_taints(&n).iter().any(|x| {
                x["key"] == "node.kubernetes.io/unreachable" && x["effect"] == "NoExecute"
            });
            (util::condition_status(&n, "Ready") == "Unknown" && tainted).then_some(n)
        },
    )
    .await;
    let ready = util::condition(&node, "Ready").unwrap();
    assert_eq!(ready["reason"], "NodeStatusUnknown");
    assert_eq!(ready["message"], "Kubelet stopped posting node status.");
    assert!(
        util::node_taints(&node)
            .iter()
            .any(|x| x["key"] == "node.kubernetes.io/unreachable" && x["effect"] == "NoSchedule")
    );
    // the pods go Terminating once their 300 s default toleration has run out
    wait("node01's web pods marked for deletion", 15, || {
        on_node01
            .iter()
            .all(|n| {
                t.get(&resources::POD, "default", n)
                    .is_none_or(|p| util::terminating(&p))
            })
            .then_some(())
    })
    .await;
    let elapsed = t.lab.clock.now().duration_since(stopped_at).as_secs_f64();
    assert!(
        elapsed >= 300.0,
        "evicted after {elapsed} lab seconds, before the 300 s toleration"
    );
    let p = t.get(&resources::POD, "default", &on_node01[0]).unwrap();
    assert_eq!(
        util::condition(&p, "DisruptionTarget").unwrap()["reason"],
        "DeletionByTaintManager"
    );
    // a stopped kubelet cannot finish them: they stay Terminating; replacements run on node02
    wait("4 web pods ready on node02", 10, || {
        let live: Vec<_> = t
            .pods_with("default", "app=web")
            .into_iter()
            .filter(|p| !util::terminating(p))
            .collect();
        (live.len() == 4
            && live
                .iter()
                .all(|p| running_ready(p) && util::node_name(p) == "node02"))
        .then_some(())
    })
    .await;
    // the pod with a long toleration stays
    let patient = t.get(&resources::POD, "default", "patient").unwrap();
    assert!(!util::terminating(&patient));
    // kubelet back: Ready, taints gone, terminating pods finished
    KubeletControl::get(&t.lab).set_mode("node01", KubeletMode::Running);
    wait("node01 recovered", 10, || {
        let n = t.get(&resources::NODE, "", "node01")?;
        let clean = !util::node_taints(&n)
            .iter()
            .any(|x| x["key"] == "node.kubernetes.io/unreachable");
        let gone = on_node01
            .iter()
            .all(|n| t.get(&resources::POD, "default", n).is_none());
        (util::node_ready(&n) && clean && gone).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_kubelet_gets_the_not_ready_taint() {
    let t = start(&cluster(1, ""), 100.0);
    KubeletControl::get(&t.lab).set_mode("node01", KubeletMode::NotReady);
    let n = wait("not-ready taint", 10, || {
        let n = t.get(&resources::NODE, "", "node01")?;
        util::node_taints(&n)
            .iter()
            .any(|x| x["key"] == "node.kubernetes.io/not-ready" && x["effect"] == "NoExecute")
            .then_some(n)
    })
    .await;
    assert_eq!(util::condition_status(&n, "Ready"), "False");
    assert_eq!(
        util::condition(&n, "Ready").unwrap()["reason"],
        "KubeletNotReady"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_created_through_the_api_come_alive_and_keep_their_versions() {
    let t = start(&cluster(1, ""), 50.0);
    t.create(&resources::NODE, json!({"metadata": {"name": "bare"}}));
    t.create(
        &resources::NODE,
        json!({"metadata": {"name": "old"}, "status": {"nodeInfo": {"kubeletVersion": "v1.31.4"}}}),
    );
    let bare = wait("bare registered and Ready", 10, || {
        t.get(&resources::NODE, "", "bare")
            .filter(|n| util::node_ready(n))
    })
    .await;
    assert_eq!(
        bare["status"]["nodeInfo"]["kubeletVersion"], "v1.34.2",
        "defaults to the apiserver version"
    );
    assert!(bare["status"]["nodeInfo"]["osImage"].is_string());
    assert!(bare["status"]["nodeInfo"]["containerRuntimeVersion"].is_string());
    assert_eq!(bare["status"]["capacity"]["pods"], "110");
    assert!(
        util::arr(&bare, "/status/addresses")
            .iter()
            .any(|a| a["type"] == "InternalIP")
    );
    assert!(
        t.get(&resources::LEASE, "kube-node-lease", "bare")
            .is_some()
    );
    let old = wait("old Ready", 10, || {
        t.get(&resources::NODE, "", "old")
            .filter(|n| util::node_ready(n))
    })
    .await;
    assert_eq!(old["status"]["nodeInfo"]["kubeletVersion"], "v1.31.4");
    // a later status patch (what the node shell does on kubelet restart) sticks
    t.lab
        .store
        .mutate(&resources::NODE, "", "old", |n| {
            n["status"]["nodeInfo"]["kubeletVersion"] = json!("v1.32.0");
            Ok(())
        })
        .unwrap();
    let renewed =
        t.get(&resources::LEASE, "kube-node-lease", "old").unwrap()["spec"]["renewTime"].clone();
    wait("a lease renewal after the patch", 10, || {
        (t.get(&resources::LEASE, "kube-node-lease", "old")?["spec"]["renewTime"] != renewed)
            .then_some(())
    })
    .await;
    assert_eq!(
        t.get(&resources::NODE, "", "old").unwrap()["status"]["nodeInfo"]["kubeletVersion"],
        "v1.32.0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubeadm_clusters_have_mirror_pods_and_kube_proxy() {
    let yaml = cluster(2, "").replace(
        "  version: v1.34.2\n",
        "  version: v1.34.2\n  kubeadm: true\n",
    );
    let t = start(&yaml, 50.0);
    let cp = t
        .get(
            &resources::POD,
            "kube-system",
            "kube-apiserver-controlplane",
        )
        .expect("mirror pod");
    assert_eq!(
        cp["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-apiserver:v1.34.2"
    );
    assert_eq!(cp["metadata"]["labels"]["component"], "kube-apiserver");
    assert_eq!(cp["metadata"]["labels"]["tier"], "control-plane");
    assert!(cp["metadata"]["annotations"]["kubernetes.io/config.mirror"].is_string());
    assert_eq!(cp["metadata"]["ownerReferences"][0]["kind"], "Node");
    assert!(running_ready(&cp));
    for c in ["etcd", "kube-controller-manager", "kube-scheduler"] {
        assert!(
            t.get(&resources::POD, "kube-system", &format!("{c}-controlplane"))
                .is_some(),
            "{c}"
        );
    }
    assert!(
        t.get(&resources::POD, "kube-system", "kube-apiserver-node01")
            .is_none(),
        "workers have no static pods"
    );
    let proxies = t.pods_with("kube-system", "k8s-app=kube-proxy");
    assert_eq!(proxies.len(), 3);
    assert!(proxies.iter().all(|p| p["spec"]["containers"][0]["image"]
        == "registry.k8s.io/kube-proxy:v1.34.2"
        && running_ready(p)));
    // an image patched through the API is kept; a changed manifest is applied
    t.lab
        .store
        .mutate(
            &resources::POD,
            "kube-system",
            "kube-scheduler-controlplane",
            |p| {
                p["spec"]["containers"][0]["image"] =
                    json!("registry.k8s.io/kube-scheduler:v1.35.0");
                Ok(())
            },
        )
        .unwrap();
    StaticPods::get(&t.lab).set_image(
        "controlplane",
        "kube-apiserver",
        "registry.k8s.io/kube-apiserver:v1.35.0",
    );
    wait("apiserver manifest applied", 10, || {
        (t.get(
            &resources::POD,
            "kube-system",
            "kube-apiserver-controlplane",
        )?["spec"]["containers"][0]["image"]
            == "registry.k8s.io/kube-apiserver:v1.35.0")
            .then_some(())
    })
    .await;
    assert_eq!(
        t.get(
            &resources::POD,
            "kube-system",
            "kube-scheduler-controlplane"
        )
        .unwrap()["spec"]["containers"][0]["image"],
        "registry.k8s.io/kube-scheduler:v1.35.0"
    );
    // a removed manifest takes its mirror pod away
    StaticPods::get(&t.lab).remove("controlplane", "kube-scheduler");
    wait("scheduler mirror pod gone", 10, || {
        t.get(
            &resources::POD,
            "kube-system",
            "kube-scheduler-controlplane",
        )
        .is_none()
        .then_some(())
    })
    .await;
    // a deleted mirror pod comes back
    t.lab
        .store
        .remove(&resources::POD, "kube-system", "etcd-controlplane");
    wait("etcd mirror pod recreated", 10, || {
        t.get(&resources::POD, "kube-system", "etcd-controlplane")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_nsenter_pods_run_through_the_node_shell() {
    let t = start(&cluster(1, ""), 50.0);
    exec::register(
        &t.lab,
        Arc::new(|node: &str, argv: &[String]| {
            if argv[0] == "false" {
                ExecOutput::fail(3, "nope\n")
            } else {
                ExecOutput::ok(format!("{node}: {}\n", argv.join(" ")))
            }
        }),
    );
    for (name, cmd) in [
        (
            "ok",
            json!([
                "nsenter",
                "-t",
                "1",
                "-m",
                "-u",
                "-i",
                "-n",
                "-p",
                "--",
                "sh",
                "-c",
                "cat /etc/os-release"
            ]),
        ),
        ("bad", json!(["nsenter", "-t", "1", "-m", "--", "false"])),
    ] {
        t.create(
            &resources::POD,
            json!({"metadata": {"name": name, "namespace": "default"},
                   "spec": {"nodeName": "node01", "hostPID": true, "restartPolicy": "Never",
                            "containers": [{"name": "shell", "image": "busybox", "command": cmd, "securityContext": {"privileged": true}}]},
                   "status": {"phase": "Pending"}}),
        );
    }
    let ok = wait("ok succeeded", 10, || {
        t.get(&resources::POD, "default", "ok")
            .filter(|p| util::phase(p) == "Succeeded")
    })
    .await;
    assert_eq!(
        ok["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
    assert_eq!(
        t.lab
            .pod_logs
            .lock()
            .get(&("default".to_string(), "ok".to_string()))
            .unwrap(),
        "node01: sh -c cat /etc/os-release\n"
    );
    let bad = wait("bad failed", 10, || {
        t.get(&resources::POD, "default", "bad")
            .filter(|p| util::phase(p) == "Failed")
    })
    .await;
    assert_eq!(
        bad["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        3
    );
    assert_eq!(
        t.lab
            .pod_logs
            .lock()
            .get(&("default".to_string(), "bad".to_string()))
            .unwrap(),
        "nope\n"
    );
}
