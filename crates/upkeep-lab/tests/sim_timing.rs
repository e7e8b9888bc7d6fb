//! The timing profiles: `fast` (the default: containers stop within terminationCapSeconds,
//! readiness at once) and `realistic` (pkg/kubelet/kuberuntime killContainer: SIGKILL only
//! when the grace period is over; pkg/kubelet/prober/worker.go: no readiness before
//! initialDelaySeconds), measured on the lab clock.

mod sim_support;

use serde_json::json;
use sim_support::{cluster, start, wait};
use upkeep_lab::sim::util;
use upkeep_lab::store::DeleteOpts;
use upkeep_lab::{ListQuery, resources};

/// A pod on node01 with a 30 s grace period and a readiness probe delayed by 8 s.
fn pod() -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "slow", "namespace": "default"},
        "spec": {"nodeName": "node01", "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "app", "image": "nginx:1.27",
                                 "readinessProbe": {"httpGet": {"path": "/", "port": 80},
                                                    "initialDelaySeconds": 8}}]}
    })
}

/// Lab seconds from creation to Ready, and from a default (graceful) delete to removal.
async fn measure(profile_timing: &str) -> (f64, f64) {
    let extra = "";
    let yaml = cluster(1, extra).replace(
        "timing: {podStartSeconds: 1, terminationCapSeconds: 1}",
        profile_timing,
    );
    let t = start(&yaml, 20.0);
    let created = t.lab.clock.now();
    t.create(&resources::POD, pod());
    wait("the pod Ready", 20, || {
        t.get(&resources::POD, "default", "slow")
            .filter(|p| util::pod_ready(p))
            .map(|_| ())
    })
    .await;
    let ready = t.lab.clock.now().duration_since(created).as_secs_f64();
    let deleted = t.lab.clock.now();
    t.lab
        .store
        .delete(&resources::POD, "default", "slow", &DeleteOpts::default())
        .expect("delete");
    wait("the pod removed", 20, || {
        t.get(&resources::POD, "default", "slow")
            .is_none()
            .then_some(())
    })
    .await;
    let gone = t.lab.clock.now().duration_since(deleted).as_secs_f64();
    (ready, gone)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fast_profile_stops_containers_quickly_and_ignores_probe_delays() {
    let (ready, gone) = measure("timing: {podStartSeconds: 1, terminationCapSeconds: 1}").await;
    assert!(ready < 5.0, "ready after {ready:.1} lab s");
    assert!(gone < 5.0, "removed after {gone:.1} lab s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_realistic_profile_honours_the_grace_period_and_the_probe_delay() {
    let (ready, gone) = measure("timing: {podStartSeconds: 1, profile: realistic}").await;
    assert!(
        (9.0..14.0).contains(&ready),
        "ready after {ready:.1} lab s, not start 1 s + initialDelaySeconds 8"
    );
    assert!(
        (30.0..35.0).contains(&gone),
        "removed after {gone:.2} lab s, not the 30 s grace period"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scenario_can_say_containers_stop_sooner_than_their_grace_period() {
    let (_, gone) =
        measure("timing: {podStartSeconds: 1, profile: realistic, containerStopSeconds: 4}").await;
    assert!(
        (3.5..8.0).contains(&gone),
        "removed after {gone:.1} lab s, not containerStopSeconds 4"
    );
}

/// Realistic profile at `scale`, with one Running pod "slow" on node01 (30 s grace).
async fn realistic_with_slow_pod(scale: f64) -> sim_support::TestLab {
    let yaml = cluster(1, "").replace(
        "timing: {podStartSeconds: 1, terminationCapSeconds: 1}",
        "timing: {podStartSeconds: 1, profile: realistic}",
    );
    let t = start(&yaml, scale);
    let mut p = pod();
    p["spec"]["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("readinessProbe");
    t.create(&resources::POD, p);
    wait("the pod Running", 20, || {
        t.get(&resources::POD, "default", "slow")
            .filter(|p| util::phase(p) == "Running")
            .map(|_| ())
    })
    .await;
    t
}

/// Waits until the lab clock is at least `from` of the way into a second, so that a
/// deletionTimestamp rounded down to the second lies `from` s or more before the deadline.
async fn late_in_a_second(t: &sim_support::TestLab, from: f64) {
    wait("the lab clock late in a second", 20, || {
        let sub = t.lab.clock.now().subsec_nanosecond() as f64 / 1e9;
        (from..from + 0.2).contains(&sub).then_some(())
    })
    .await;
}

/// Deletes "slow" with `grace`, then returns the lab time the delete returned at.
fn delete_slow(t: &sim_support::TestLab, grace: i64) -> jiff::Timestamp {
    t.lab
        .store
        .delete(
            &resources::POD,
            "default",
            "slow",
            &DeleteOpts {
                grace_period_seconds: Some(grace),
                ..Default::default()
            },
        )
        .expect("delete");
    t.lab.clock.now()
}

async fn removed_at(t: &sim_support::TestLab) -> jiff::Timestamp {
    wait("the pod removed", 60, || {
        t.get(&resources::POD, "default", "slow")
            .is_none()
            .then_some(())
    })
    .await;
    t.lab.clock.now()
}

/// The API keeps deletionTimestamp to whole seconds (metav1.Time); the kubelet counts the grace
/// period from when it sees the deletion (kuberuntime killContainer), so a pod deleted late in
/// a second is still there a full grace period later.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_is_removed_no_earlier_than_its_grace_period_after_the_delete() {
    let t = realistic_with_slow_pod(2.0).await;
    late_in_a_second(&t, 0.6).await;
    let deleted = delete_slow(&t, 5);
    let stamp = t
        .get(&resources::POD, "default", "slow")
        .map(|p| util::s(&p, "/metadata/deletionTimestamp").to_string())
        .expect("terminating");
    let gone = removed_at(&t).await.duration_since(deleted).as_secs_f64();
    assert!(
        (5.0..5.6).contains(&gone),
        "removed {gone:.2} lab s after a delete with grace 5 (deletionTimestamp {stamp})"
    );
}

/// A second delete with a shorter grace period starts a new, shorter kill from when the kubelet
/// sees it (pod_workers.go calculateEffectiveGracePeriod, `wasGracePeriodShortened`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shorter_grace_period_given_later_ends_the_kill_sooner() {
    let t = realistic_with_slow_pod(4.0).await;
    delete_slow(&t, 30);
    wait("the kill started", 20, || {
        t.lab
            .store
            .list(&resources::EVENT, &ListQuery::in_namespace("default"))
            .0
            .iter()
            .any(|e| {
                util::s(e, "/reason") == "Killing" && util::s(e, "/involvedObject/name") == "slow"
            })
            .then_some(())
    })
    .await;
    let shortened = delete_slow(&t, 3);
    let gone = removed_at(&t).await.duration_since(shortened).as_secs_f64();
    assert!(
        (3.0..4.0).contains(&gone),
        "removed {gone:.2} lab s after the delete with grace 3, not 3 s (the first delete gave 30)"
    );
}
