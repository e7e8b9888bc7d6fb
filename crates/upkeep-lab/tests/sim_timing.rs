//! The timing profiles: `fast` (the default: containers stop within terminationCapSeconds,
//! readiness at once) and `realistic` (pkg/kubelet/kuberuntime killContainer: SIGKILL only
//! when the grace period is over; pkg/kubelet/prober/worker.go: no readiness before
//! initialDelaySeconds), measured on the lab clock.

mod sim_support;

use serde_json::json;
use sim_support::{cluster, start, wait};
use upkeep_lab::resources;
use upkeep_lab::sim::util;
use upkeep_lab::store::DeleteOpts;

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
        (29.0..35.0).contains(&gone),
        "removed after {gone:.1} lab s, not the 30 s grace period"
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
