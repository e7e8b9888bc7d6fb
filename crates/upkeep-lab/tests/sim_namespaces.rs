//! Namespace termination (the namespace controller and namespace lifecycle admission):
//! a deleted namespace stays Terminating while it has content, creates and evictions in it
//! are forbidden with the NamespaceTerminating cause, and it goes once empty.

// The store's errors are full Status objects; closures return them unboxed.
#![allow(clippy::result_large_err)]

mod sim_support;

use serde_json::json;
use sim_support::{cluster, running_ready, start, wait};
use upkeep_lab::api::eviction;
use upkeep_lab::resources;
use upkeep_lab::sim::util;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminating_namespace_refuses_evictions_until_it_is_gone() {
    let t = start(&cluster(1, ""), 50.0);
    t.create(
        &resources::NAMESPACE,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"},
               "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
    );
    // a pod that a finalizer keeps after its deletion, and a plain ConfigMap
    t.create(
        &resources::POD,
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "held", "namespace": "doomed", "finalizers": ["example.com/hold"]},
               "spec": {"containers": [{"name": "c", "image": "nginx"}]}}),
    );
    t.create(
        &resources::CONFIGMAP,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "doomed"}}),
    );
    wait("held running", 15, || {
        t.get(&resources::POD, "doomed", "held")
            .filter(|p| running_ready(p))
    })
    .await;

    t.lab
        .store
        .delete(&resources::NAMESPACE, "", "doomed", &Default::default())
        .unwrap();
    let ns = t.get(&resources::NAMESPACE, "", "doomed").unwrap();
    assert_eq!(ns["status"]["phase"], "Terminating");

    // an eviction is a create: namespace lifecycle admission answers 403 first
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "held", "namespace": "doomed"}});
    let e = eviction::evict(&t.lab, "doomed", "held", &body, false).unwrap_err();
    assert_eq!(e.code, 403);
    assert_eq!(
        e.message,
        "pods \"held\" is forbidden: unable to create new content in namespace doomed because it is being terminated"
    );
    assert_eq!(e.causes[0].reason, "NamespaceTerminating");
    assert_eq!(e.causes[0].message, "namespace doomed is being terminated");
    assert_eq!(e.causes[0].field.as_deref(), Some("metadata.namespace"));

    // the controller deletes the content; the held pod stays terminating, and so does the
    // namespace
    wait("content deleted", 15, || {
        let cm_gone = t.get(&resources::CONFIGMAP, "doomed", "cm").is_none();
        let pod_deleting = t
            .get(&resources::POD, "doomed", "held")
            .is_some_and(|p| util::terminating(&p));
        (cm_gone && pod_deleting).then_some(())
    })
    .await;
    let ns = t.get(&resources::NAMESPACE, "", "doomed").unwrap();
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    // still 403 while the pod is terminating
    assert_eq!(
        eviction::evict(&t.lab, "doomed", "held", &body, false)
            .unwrap_err()
            .code,
        403
    );

    // release the pod: the namespace is finalized and goes
    t.lab
        .store
        .mutate(&resources::POD, "doomed", "held", |p| {
            p["metadata"]["finalizers"] = json!([]);
            Ok(())
        })
        .unwrap();
    wait("namespace gone", 15, || {
        t.get(&resources::NAMESPACE, "", "doomed")
            .is_none()
            .then_some(())
    })
    .await;
}
