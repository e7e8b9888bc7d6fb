//! PodDisruptionBudget status as the disruption controller computes it
//! (pkg/controller/disruption/disruption.go): the arithmetic for minAvailable and
//! maxUnavailable as numbers and percentages, the failsafe, and disruptedPods expiry.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use serde_json::{Value, json};
use sim_support::{TestLab, cluster, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::util;

const WORKLOADS: &str = "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: default}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: nginx}]\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: default}\nspec:\n  replicas: 4\n  serviceName: db\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      containers: [{name: db, image: postgres}]\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: bare, namespace: default, labels: {app: bare}}\nspec:\n  containers: [{name: c, image: nginx}]\n";

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
    // a bare pod under a percentage/maxUnavailable budget: no controller → failsafe
    t.create(
        &resources::PDB,
        pdb("bare", "bare", "maxUnavailable", json!(1)),
    );
    let s = status(&t, "bare").await;
    assert_eq!(s["disruptionsAllowed"], 0);
    let p = t.get(&resources::PDB, "default", "bare").unwrap();
    let c = util::condition(&p, "DisruptionAllowed").unwrap();
    assert_eq!(c["reason"], "SyncFailed");
    assert_eq!(c["message"], "found no controller ref for pod \"bare\"");
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
    let victim = util::name(&t.pods_with("default", "app=web")[0]).to_string();
    let now = t.lab.clock.now_rfc3339();
    // what the eviction subresource writes: the pod is about to go, the budget shrinks
    t.lab
        .store
        .mutate(&resources::PDB, "default", "web", |p| {
            p["status"]["disruptedPods"] = json!({victim.clone(): now, "gone-pod": now});
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
}
