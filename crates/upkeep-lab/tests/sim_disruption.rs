//! PodDisruptionBudget status as the disruption controller computes it
//! (pkg/controller/disruption/disruption.go): the arithmetic for minAvailable and
//! maxUnavailable as numbers and percentages, pods without a controller, the empty policy/v1
//! spec, the failsafe, and disruptedPods expiry.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use serde_json::{Value, json};
use sim_support::{TestLab, cluster, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::util;

const WORKLOADS: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web, tier: front}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\nspec:\n  replicas: 4\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: postgres}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: default, labels: {app: bare, tier: front}}\nspec:\n  containers: [{name: c, image: nginx}]\n";

fn pdb(name: &str, app: &str, key: &str, v: Value) -> Value {
    json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": "default"},
           "spec": {key: v, "selector": {"matchLabels": {"app": app}}}})
}

async fn status(t: &TestLab, name: &str) -> Value {
    wait(&format!("{name} status observed"), 10, || {
        let p = t.get(&resources::PDB, "default", name)?;
        (p["status"]["observedGeneration"] == p["metadata"]["generation"]
            && p["status"]["currentHealthy"].is_i64()
            || util::condition(&p, "DisruptionAllowed")
                .is_some_and(|c| c["reason"] == "SyncFailed"))
        .then(|| p["status"].clone())
    })
    .await
}

fn numbers(s: &Value) -> (i64, i64, i64, i64) {
    let n = |k: &str| s[k].as_i64().unwrap_or(-1);
    (
        n("currentHealthy"),
        n("desiredHealthy"),
        n("expectedPods"),
        n("disruptionsAllowed"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn budgets_follow_the_upstream_arithmetic() {
    let t = start(&cluster(3, WORKLOADS), 50.0);
    t.wait_ready("all pods ready", 15, "default", None, 8).await;
    let cases = [
        // (name, app, field, value, (currentHealthy, desiredHealthy, expectedPods, disruptionsAllowed))
        ("min-int", "web", "minAvailable", json!(2), (3, 2, 3, 1)),
        ("min-pct", "web", "minAvailable", json!("50%"), (3, 2, 3, 1)), // ceil(1.5)
        ("max-int", "web", "maxUnavailable", json!(1), (3, 2, 3, 1)),
        (
            "max-pct",
            "web",
            "maxUnavailable",
            json!("34%"),
            (3, 1, 3, 2),
        ), // ceil(1.02) = 2 unavailable
        ("too-many", "web", "minAvailable", json!(4), (3, 4, 3, 0)),
        (
            "sts-max",
            "db",
            "maxUnavailable",
            json!("25%"),
            (4, 3, 4, 1),
        ),
        ("sts-min0", "db", "minAvailable", json!("0%"), (4, 0, 4, 4)),
        ("none", "nothing", "maxUnavailable", json!(1), (0, 0, 0, 0)),
    ];
    for (name, app, key, v, _) in &cases {
        t.create(&resources::PDB, pdb(name, app, key, v.clone()));
    }
    for (name, _, _, _, want) in &cases {
        let s = status(&t, name).await;
        assert_eq!(numbers(&s), *want, "{name}: {s}");
        let p = t.get(&resources::PDB, "default", name).unwrap();
        let c = util::condition(&p, "DisruptionAllowed").unwrap();
        let (st, reason) = if want.3 > 0 {
            ("True", "SufficientPods")
        } else {
            ("False", "InsufficientPods")
        };
        assert_eq!(
            (c["status"].as_str().unwrap(), c["reason"].as_str().unwrap()),
            (st, reason),
            "{name}"
        );
    }
    // Pods without a controllerRef under maxUnavailable or a percentage minAvailable are
    // skipped by getExpectedScale since kubernetes/kubernetes#103414 (this used to fail the
    // sync): 3 Deployment pods + 1 bare pod, maxUnavailable 1 -> expected 3, desired 2,
    // healthy 4, allowed 2.
    t.create(
        &resources::PDB,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "front", "namespace": "default"},
               "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"tier": "front"}}}}),
    );
    assert_eq!(numbers(&status(&t, "front").await), (4, 2, 3, 2));
    let p = t.get(&resources::PDB, "default", "front").unwrap();
    assert_eq!(
        util::condition(&p, "DisruptionAllowed").unwrap()["reason"],
        "SufficientPods"
    );
    let ev = wait("UnmanagedPods event", 10, || {
        t.lab
            .store
            .list(
                &resources::EVENT,
                &upkeep_lab::ListQuery::in_namespace("default"),
            )
            .0
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == "front" && e["reason"] == "UnmanagedPods")
    })
    .await;
    assert_eq!(ev["type"], "Warning");
    assert!(
        ev["message"].as_str().unwrap().starts_with(
            "Pods selected by this PodDisruptionBudget (selector: &LabelSelector{MatchLabels:map[string]string{tier: front,},MatchExpressions:[]LabelSelectorRequirement{},}) were found to be unmanaged."
        ),
        "{ev}"
    );
    // the same pods under a percentage minAvailable: ceil(50% of 3) = 2
    t.create(
        &resources::PDB,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "front-pct", "namespace": "default"},
               "spec": {"minAvailable": "50%", "selector": {"matchLabels": {"tier": "front"}}}}),
    );
    assert_eq!(numbers(&status(&t, "front-pct").await), (4, 2, 3, 2));
    // only bare pods: expected 0 forces allowed 0
    t.create(
        &resources::PDB,
        pdb("bare", "bare", "maxUnavailable", json!(1)),
    );
    assert_eq!(numbers(&status(&t, "bare").await), (1, 0, 0, 0));
    // policy/v1 with neither field has no defaulting: expected 0, desired 0, allowed 0
    t.create(
        &resources::PDB,
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "empty", "namespace": "default"},
               "spec": {"selector": {"matchLabels": {"app": "web"}}}}),
    );
    assert_eq!(numbers(&status(&t, "empty").await), (3, 0, 0, 0));
    // ... while minAvailable as a number counts pods and needs no controller
    t.create(
        &resources::PDB,
        pdb("bare-min", "bare", "minAvailable", json!(1)),
    );
    assert_eq!(numbers(&status(&t, "bare-min").await), (1, 1, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disrupted_pods_are_not_counted_and_stale_entries_cleared() {
    let t = start(&cluster(3, WORKLOADS), 50.0);
    t.wait_ready("web ready", 15, "default", Some("app=web"), 3)
        .await;
    t.create(&resources::PDB, pdb("web", "web", "minAvailable", json!(1)));
    assert_eq!(numbers(&status(&t, "web").await), (3, 1, 3, 2));
    let web = t.pods_with("default", "app=web");
    let victim = util::name(&web[0]).to_string();
    let stale = util::name(&web[1]).to_string();
    let now = t.lab.clock.now_rfc3339();
    // evicted just over DeletionTimeout (2 minutes) ago and still there: dropped, NotDeleted
    let old = (t.lab.clock.now() - jiff::SignedDuration::from_secs(121)).to_string();
    // what the eviction subresource writes: the pod is about to go, the budget shrinks
    t.lab
        .store
        .mutate(&resources::PDB, "default", "web", |p| {
            p["status"]["disruptedPods"] =
                json!({victim.clone(): now, "gone-pod": now, stale.clone(): old});
            p["status"]["disruptionsAllowed"] = json!(1);
            Ok(())
        })
        .unwrap();
    let s = wait("recount", 10, || {
        let p = t.get(&resources::PDB, "default", "web")?;
        (p["status"]["currentHealthy"] == 2).then(|| p["status"].clone())
    })
    .await;
    assert_eq!(numbers(&s), (2, 1, 3, 1));
    assert!(
        s["disruptedPods"].get("gone-pod").is_none(),
        "entries for missing pods are dropped: {s}"
    );
    assert!(s["disruptedPods"].get(victim.as_str()).is_some());
    assert!(
        s["disruptedPods"].get(stale.as_str()).is_none(),
        "expired: {s}"
    );
    let ev = wait("NotDeleted event", 10, || {
        t.lab
            .store
            .list(
                &resources::EVENT,
                &upkeep_lab::ListQuery::in_namespace("default"),
            )
            .0
            .into_iter()
            .find(|e| e["involvedObject"]["name"] == stale.as_str() && e["reason"] == "NotDeleted")
    })
    .await;
    assert_eq!(
        ev["message"],
        "Pod was expected by PDB default/default to be deleted but it wasn't"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_without_scale_fails_the_sync_safe() {
    let job = "---\napiVersion: batch/v1\nkind: Job\nmetadata: {name: batch, namespace: default}\nspec:\n  parallelism: 2\n  completions: 2\n  template:\n    metadata: {labels: {app: batch}}\n    spec:\n      restartPolicy: Never\n      containers: [{name: c, image: busybox}]\n";
    let t = start(&cluster(2, job), 50.0);
    wait("job pods", 15, || {
        (t.pods_with("default", "app=batch").len() == 2).then_some(())
    })
    .await;
    t.create(
        &resources::PDB,
        pdb("batch", "batch", "maxUnavailable", json!(1)),
    );
    let s = status(&t, "batch").await;
    assert_eq!(s["disruptionsAllowed"], 0);
    let p = t.get(&resources::PDB, "default", "batch").unwrap();
    let c = util::condition(&p, "DisruptionAllowed").unwrap();
    // getScaleController: a Job has no scale subresource
    assert_eq!(
        (c["status"].as_str(), c["reason"].as_str()),
        (Some("False"), Some("SyncFailed"))
    );
    assert_eq!(
        c["message"],
        "jobs.batch does not implement the scale subresource"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disrupted_pod_counts_again_at_two_minutes_not_at_the_next_resync() {
    // real time: the resync is 30 s away, the entry expires 3 s from now
    let t = start(&cluster(3, WORKLOADS), 1.0);
    t.wait_ready("web ready", 20, "default", Some("app=web"), 3)
        .await;
    t.create(&resources::PDB, pdb("web", "web", "minAvailable", json!(1)));
    assert_eq!(numbers(&status(&t, "web").await), (3, 1, 3, 2));
    let victim = util::name(&t.pods_with("default", "app=web")[0]).to_string();
    let evicted = (t.lab.clock.now() - jiff::SignedDuration::from_secs(117)).to_string();
    t.lab
        .store
        .mutate(&resources::PDB, "default", "web", |p| {
            p["status"]["disruptedPods"] = json!({victim.clone(): evicted});
            Ok(())
        })
        .unwrap();
    wait("the disrupted pod not counted", 5, || {
        let p = t.get(&resources::PDB, "default", "web")?;
        (p["status"]["currentHealthy"] == 2).then_some(())
    })
    .await;
    // disruption.go enqueuePdbForRecheck: synced again when the entry expires
    let s = wait("the entry expired and the pod counted again", 10, || {
        let p = t.get(&resources::PDB, "default", "web")?;
        (p["status"]["currentHealthy"] == 3).then(|| p["status"].clone())
    })
    .await;
    assert!(s.get("disruptedPods").is_none(), "{s}");
    assert_eq!(numbers(&s), (3, 1, 3, 2));
}
