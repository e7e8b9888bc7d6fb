//! Workload controllers in a running in-process lab: Deployment/ReplicaSet, DaemonSet,
//! StatefulSet, Job, garbage collection.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use serde_json::json;
use sim_support::{cluster, running_ready, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::util;
use upkeep_lab::store::DeleteOpts;

const WEB: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 4\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx:1.27}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_pods_run_and_are_ready_on_workers() {
    let t = start(&cluster(2, WEB), 50.0);
    let pods = wait("4 ready web pods", 10, || {
        let p = t.pods_with("default", "app=web");
        (p.len() == 4 && p.iter().all(|p| running_ready(p))).then_some(p)
    })
    .await;
    // the control plane is tainted NoSchedule: every pod runs on a worker, spread 2/2
    let on1 = pods
        .iter()
        .filter(|p| util::node_name(p) == "node01")
        .count();
    let on2 = pods
        .iter()
        .filter(|p| util::node_name(p) == "node02")
        .count();
    assert_eq!((on1, on2), (2, 2), "pods spread over the workers");
    for p in &pods {
        assert!(p["metadata"]["labels"]["pod-template-hash"].is_string());
        assert_eq!(util::controller_of(p).unwrap().0, "ReplicaSet");
        assert!(p["status"]["podIP"].is_string() && p["status"]["hostIP"].is_string());
    }
    let d = wait("deployment status", 10, || {
        let d = t.get(&resources::DEPLOYMENT, "default", "web")?;
        (d["status"]["availableReplicas"] == 4).then_some(d)
    })
    .await;
    assert_eq!(d["status"]["updatedReplicas"], 4);
    assert_eq!(d["status"]["readyReplicas"], 4);
    assert_eq!(
        d["status"]["observedGeneration"],
        d["metadata"]["generation"]
    );
    assert_eq!(util::condition_status(&d, "Available"), "True");
    assert_eq!(
        util::condition(&d, "Progressing").unwrap()["reason"],
        "NewReplicaSetAvailable"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_replicaset_pod_is_replaced_on_another_node_when_its_node_is_cordoned() {
    let t = start(&cluster(2, WEB), 50.0);
    t.wait_ready("4 ready pods", 10, "default", Some("app=web"), 4)
        .await;
    t.lab
        .store
        .mutate(&resources::NODE, "", "node01", |n| {
            n["spec"]["unschedulable"] = json!(true);
            Ok(())
        })
        .unwrap();
    let victim = t
        .pods_with("default", "app=web")
        .into_iter()
        .find(|p| util::node_name(p) == "node01")
        .unwrap();
    t.lab
        .store
        .delete(
            &resources::POD,
            "default",
            util::name(&victim),
            &DeleteOpts::default(),
        )
        .unwrap();
    let pods = wait("a replacement running on node02", 10, || {
        let p = t.pods_with("default", "app=web");
        let gone = !p.iter().any(|x| util::uid(x) == util::uid(&victim));
        (gone && p.len() == 4 && p.iter().all(|p| running_ready(p))).then_some(p)
    })
    .await;
    assert_eq!(
        pods.iter()
            .filter(|p| util::node_name(p) == "node02")
            .count(),
        3
    );
    // the lifecycle controller taints the cordoned node
    wait("unschedulable taint", 10, || {
        let n = t.get(&resources::NODE, "", "node01")?;
        util::node_taints(&n)
            .iter()
            .any(|x| x["key"] == "node.kubernetes.io/unschedulable")
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_rolling_update() {
    let t = start(&cluster(2, WEB), 50.0);
    t.wait_ready("4 ready pods", 10, "default", Some("app=web"), 4)
        .await;
    t.lab
        .store
        .mutate(&resources::DEPLOYMENT, "default", "web", |d| {
            d["spec"]["replicas"] = json!(2);
            Ok(())
        })
        .unwrap();
    wait("scaled down to 2", 10, || {
        (t.pods_with("default", "app=web")
            .iter()
            .filter(|p| !util::terminating(p))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    t.lab
        .store
        .mutate(&resources::DEPLOYMENT, "default", "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
            Ok(())
        })
        .unwrap();
    let d = wait("rollout complete", 15, || {
        let d = t.get(&resources::DEPLOYMENT, "default", "web")?;
        let pods = t.pods_with("default", "app=web");
        let done = d["status"]["updatedReplicas"] == 2
            && d["status"]["availableReplicas"] == 2
            && d["status"]["replicas"] == 2
            && pods.len() == 2
            && pods
                .iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.28" && running_ready(p));
        done.then_some(d)
    })
    .await;
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let (rss, _) = t.lab.store.list(
        &resources::REPLICASET,
        &upkeep_lab::ListQuery::in_namespace("default"),
    );
    assert_eq!(rss.len(), 2, "the old ReplicaSet is kept at 0 replicas");
    assert!(rss.iter().any(|r| r["spec"]["replicas"] == 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_covers_every_node_including_cordoned_ones() {
    let ds = "---\napiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: agent, namespace: kube-system}\nspec:\n  selector: {matchLabels: {app: agent}}\n  template:\n    metadata: {labels: {app: agent}}\n    spec:\n      tolerations: [{key: node-role.kubernetes.io/control-plane, operator: Exists, effect: NoSchedule}]\n      containers: [{name: a, image: agent:1}]\n";
    let mut yaml = cluster(3, ds);
    yaml = yaml.replace(
        "    count: 3\n",
        "    count: 3\n  - name: cordoned\n    unschedulable: true\n",
    );
    let t = start(&yaml, 50.0);
    let pods = wait("5 agent pods running", 10, || {
        let p = t.pods_with("kube-system", "app=agent");
        (p.len() == 5 && p.iter().all(|p| running_ready(p))).then_some(p)
    })
    .await;
    let mut nodes: Vec<&str> = pods.iter().map(|p| util::node_name(p)).collect();
    nodes.sort();
    assert_eq!(
        nodes,
        ["controlplane", "cordoned", "node01", "node02", "node03"]
    );
    for p in &pods {
        let pin = &p["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0];
        assert_eq!(pin["key"], "metadata.name");
        assert_eq!(pin["values"][0], util::node_name(p));
        assert!(
            util::pod_tolerations(p)
                .iter()
                .any(|x| x["key"] == "node.kubernetes.io/unschedulable")
        );
    }
    let d = wait("status", 10, || {
        let d = t.get(&resources::DAEMONSET, "kube-system", "agent")?;
        (d["status"]["numberReady"] == 5).then_some(d)
    })
    .await;
    assert_eq!(d["status"]["desiredNumberScheduled"], 5);
    assert_eq!(d["status"]["currentNumberScheduled"], 5);
    assert_eq!(d["status"]["numberMisscheduled"], 0);
    // one ControllerRevision per template, its hash on the pods
    let (revs, _) = t.lab.store.list(
        &resources::CONTROLLERREVISION,
        &upkeep_lab::ListQuery::in_namespace("kube-system"),
    );
    assert_eq!(revs.len(), 1);
    assert_eq!(revs[0]["revision"], 1);
    let hash = revs[0]["metadata"]["labels"]["controller-revision-hash"]
        .as_str()
        .unwrap();
    assert_eq!(util::name(&revs[0]), format!("agent-{hash}"));
    assert!(
        pods.iter()
            .all(|p| p["metadata"]["labels"]["controller-revision-hash"] == hash)
    );
    // a new node gets a pod too
    t.create(&resources::NODE, json!({"metadata": {"name": "late"}}));
    wait("pod on the new node", 10, || {
        t.pods_with("kube-system", "app=agent")
            .iter()
            .any(|p| util::node_name(p) == "late" && running_ready(p))
            .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulset_pod_deleted_comes_back_with_the_same_name() {
    let sts = "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\nspec:\n  serviceName: db\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: postgres:17}]\n";
    let t = start(&cluster(2, sts), 50.0);
    let pods = wait("db-0..2 ready", 10, || {
        let p = t.pods_with("default", "app=db");
        (p.len() == 3 && p.iter().all(|p| running_ready(p))).then_some(p)
    })
    .await;
    let mut names: Vec<&str> = pods.iter().map(|p| util::name(p)).collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    let old = t.get(&resources::POD, "default", "db-1").unwrap();
    t.lab
        .store
        .delete(&resources::POD, "default", "db-1", &DeleteOpts::default())
        .unwrap();
    let new = wait("db-1 recreated", 10, || {
        let p = t.get(&resources::POD, "default", "db-1")?;
        (util::uid(&p) != util::uid(&old) && running_ready(&p)).then_some(p)
    })
    .await;
    assert_eq!(new["spec"]["hostname"], "db-1");
    assert_eq!(
        new["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "db-1"
    );
    let s = wait("sts status", 10, || {
        let s = t.get(&resources::STATEFULSET, "default", "db")?;
        (s["status"]["readyReplicas"] == 3).then_some(s)
    })
    .await;
    assert_eq!(s["status"]["replicas"], 3);
    assert_eq!(
        s["status"]["currentRevision"],
        s["status"]["updateRevision"]
    );
    let rev = t
        .get(
            &resources::CONTROLLERREVISION,
            "default",
            s["status"]["updateRevision"].as_str().unwrap(),
        )
        .expect("the revision object");
    assert_eq!(rev["revision"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn job_pods_run_to_completion() {
    let job = "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: once, namespace: default}\nspec:\n  completions: 3\n  parallelism: 2\n  template:\n    metadata:\n      annotations: {lab.upkeep.dev/run-seconds: \"5\"}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    let t = start(&cluster(2, job), 50.0);
    let j = wait("job complete", 15, || {
        let j = t.get(&resources::JOB, "default", "once")?;
        (util::condition_status(&j, "Complete") == "True").then_some(j)
    })
    .await;
    assert_eq!(j["status"]["succeeded"], 3);
    assert!(j["status"]["completionTime"].is_string());
    let pods = t.pods_with("default", "job-name=once");
    assert_eq!(pods.len(), 3);
    assert!(pods.iter().all(|p| util::phase(p) == "Succeeded"));
    assert_eq!(
        pods[0]["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"],
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collector_removes_dependents_and_honours_orphan() {
    let t = start(&cluster(2, WEB), 50.0);
    t.wait_ready("4 ready pods", 10, "default", Some("app=web"), 4)
        .await;
    // Background: deleting the Deployment removes its ReplicaSet and then the pods.
    t.lab
        .store
        .delete(
            &resources::DEPLOYMENT,
            "default",
            "web",
            &DeleteOpts::default(),
        )
        .unwrap();
    wait("replicaset and pods gone", 15, || {
        let (rss, _) = t.lab.store.list(
            &resources::REPLICASET,
            &upkeep_lab::ListQuery::in_namespace("default"),
        );
        (rss.is_empty() && t.pods_with("default", "app=web").is_empty()).then_some(())
    })
    .await;
    // Orphan: a ReplicaSet deleted with propagationPolicy=Orphan leaves its pods, ownerless.
    let rs = "---\napiVersion: apps/v1\nkind: ReplicaSet\nmetadata: {name: solo, namespace: default}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: solo}}\n  template:\n    metadata: {labels: {app: solo}}\n    spec:\n      containers: [{name: c, image: nginx}]\n";
    upkeep_lab::scenario::create_objects(
        &t.lab,
        &upkeep_lab::scenario::Scenario::parse_objects(rs).unwrap(),
    )
    .unwrap();
    t.wait_ready("2 solo pods", 10, "default", Some("app=solo"), 2)
        .await;
    t.lab
        .store
        .delete(
            &resources::REPLICASET,
            "default",
            "solo",
            &DeleteOpts {
                propagation_policy: Some("Orphan".into()),
                ..Default::default()
            },
        )
        .unwrap();
    // A canary whose owner never existed: once the collector removed it, it has seen the
    // orphaning too.
    t.create(
        &resources::CONFIGMAP,
        json!({"metadata": {"name": "canary", "namespace": "default",
               "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost", "uid": "0000-ghost"}]}}),
    );
    wait("canary collected", 10, || {
        t.get(&resources::CONFIGMAP, "default", "canary")
            .is_none()
            .then_some(())
    })
    .await;
    let pods = t.pods_with("default", "app=solo");
    assert_eq!(pods.len(), 2);
    assert!(
        pods.iter()
            .all(|p| util::controller_ref(p).is_none() && !util::terminating(p))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_during_a_rollout_is_proportional() {
    let dep = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 4\n  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx:1.27}]\n";
    // pods take 20 lab seconds (2 s) to start, so the rollout is still under way when scaled
    let yaml = cluster(2, dep).replace("podStartSeconds: 1", "podStartSeconds: 20");
    let t = start(&yaml, 10.0);
    t.lab
        .store
        .mutate(&resources::DEPLOYMENT, "default", "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
            Ok(())
        })
        .unwrap();
    let rs_sizes = |t: &sim_support::TestLab| -> (i64, i64) {
        let (rss, _) = t.lab.store.list(
            &resources::REPLICASET,
            &upkeep_lab::ListQuery::in_namespace("default"),
        );
        let size = |img: &str| {
            rss.iter()
                .find(|r| r["spec"]["template"]["spec"]["containers"][0]["image"] == img)
                .map_or(0, |r| r["spec"]["replicas"].as_i64().unwrap())
        };
        (size("nginx:1.27"), size("nginx:1.28"))
    };
    wait("the surge pod of the new ReplicaSet", 10, || {
        (rs_sizes(&t) == (4, 1)).then_some(())
    })
    .await;
    t.lab
        .store
        .mutate(&resources::DEPLOYMENT, "default", "web", |d| {
            d["spec"]["replicas"] = json!(8);
            Ok(())
        })
        .unwrap();
    // allowed 8 + 1 surge = 9; old 4 * 9/5 = 7.2 → 7, new 1 * 9/5 = 1.8 → 2 (sync.go scale)
    wait("proportional sizes", 10, || {
        (rs_sizes(&t) == (7, 2)).then_some(())
    })
    .await;
    wait("rollout to 8 new pods", 60, || {
        let d = t.get(&resources::DEPLOYMENT, "default", "web")?;
        (rs_sizes(&t) == (0, 8)
            && d["status"]["updatedReplicas"] == 8
            && d["status"]["availableReplicas"] == 8)
            .then_some(())
    })
    .await;
}
