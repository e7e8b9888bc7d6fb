//! kube-rs against upkeep-lab over each transport the lab's kubeconfig offers:
//! HTTPS with a client certificate, HTTPS with a bearer token, plain HTTP with a
//! token, and the read-only token.

use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::json;
use upkeep_testkit::{Lab, LabOptions};

/// A client for `context` of the lab's kubeconfig.
async fn client(lab: &Lab, context: &str) -> Client {
    let kc = Kubeconfig::read_from(&lab.kubeconfig).expect("read the lab's kubeconfig");
    let opts = KubeConfigOptions {
        context: Some(context.to_string()),
        ..Default::default()
    };
    let cfg = Config::from_custom_kubeconfig(kc, &opts)
        .await
        .unwrap_or_else(|e| panic!("kubeconfig context {context}: {e}"));
    Client::try_from(cfg).expect("build the client")
}

fn api_status(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error Status, got {other:?}"),
    }
}

/// What every transport must do: version, CRUD, selectors, the status
/// subresource, a watch, and upstream-worded errors.
async fn exercise(lab: &Lab, context: &str, version: &str) {
    let client = client(lab, context).await;
    let info = client
        .apiserver_version()
        .await
        .unwrap_or_else(|e| panic!("{context}: /version: {e}"));
    assert_eq!(info.git_version, version, "{context}");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .expect("list namespaces")
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    for want in ["default", "kube-system"] {
        assert!(names.iter().any(|n| n == want), "{context}: {names:?}");
    }

    // Create, get, list by field selector, status subresource.
    let nodes: Api<Node> = Api::all(client.clone());
    let node_name = format!("kube-rs-{context}");
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name, "labels": {"transport": "test"}}
    }))
    .expect("node");
    let created = nodes
        .create(&PostParams::default(), &node)
        .await
        .unwrap_or_else(|e| panic!("{context}: create node: {e}"));
    assert!(created.metadata.uid.is_some());
    let again = api_status(
        nodes
            .create(&PostParams::default(), &node)
            .await
            .expect_err("a second create conflicts"),
    );
    assert_eq!((again.code, again.reason.as_str()), (409, "AlreadyExists"));
    let listed = nodes
        .list(&ListParams::default().fields(&format!("metadata.name={node_name}")))
        .await
        .expect("list by field selector");
    assert_eq!(listed.items.len(), 1, "{context}");
    let by_label = nodes
        .list(&ListParams::default().labels("transport=test"))
        .await
        .expect("list by label selector");
    assert_eq!(by_label.items.len(), 1, "{context}");

    let patched = nodes
        .patch_status(
            &node_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"nodeInfo": {"kubeletVersion": "v1.31.0"}}})),
        )
        .await
        .expect("patch status");
    let info = patched.status.and_then(|s| s.node_info).expect("nodeInfo");
    assert_eq!(info.kubelet_version, "v1.31.0", "{context}");

    // A watch sees what is created after it started.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms
        .list(&ListParams::default())
        .await
        .expect("list configmaps")
        .metadata
        .resource_version
        .expect("list resourceVersion");
    let stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .expect("watch configmaps");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": format!("seen-{context}")}, "data": {"k": "v"}}),
    )
    .expect("configmap");
    cms.create(&PostParams::default(), &cm)
        .await
        .expect("create configmap");
    let event = next_event(stream, Duration::from_secs(10)).await;
    match event {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name, cm.metadata.name),
        other => panic!("{context}: expected Added, got {other:?}"),
    }

    // kube-apiserver refuses a create that carries a resourceVersion
    // (storage/etcd3/store.go Create: a 500 without a reason).
    let mut stale = cm.clone();
    stale.metadata.name = Some(format!("stale-{context}"));
    stale.metadata.resource_version = Some(rv.clone());
    let err = api_status(
        cms.create(&PostParams::default(), &stale)
            .await
            .expect_err("a create with a resourceVersion is refused"),
    );
    assert_eq!(err.code, 500, "{err:?}");
    assert_eq!(
        err.message, "resourceVersion should not be set on objects to be created",
        "{err:?}"
    );

    let missing = api_status(cms.get("no-such").await.expect_err("404"));
    assert_eq!((missing.code, missing.reason.as_str()), (404, "NotFound"));
    assert_eq!(missing.message, r#"configmaps "no-such" not found"#);

    nodes
        .delete(&node_name, &DeleteParams::default())
        .await
        .expect("delete node");
}

async fn readonly_is_forbidden(lab: &Lab) {
    let client = client(lab, "readonly").await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "default");
    cms.list(&ListParams::default())
        .await
        .expect("the read-only user may list");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "nope"}})).expect("configmap");
    let err = api_status(
        cms.create(&PostParams::default(), &cm)
            .await
            .expect_err("the read-only user may not create"),
    );
    assert_eq!(
        (err.code, err.reason.as_str()),
        (403, "Forbidden"),
        "{err:?}"
    );
    assert!(
        err.message
            .contains(r#"User "readonly" cannot create resource "configmaps""#),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_over_https_with_a_client_certificate_and_with_a_token() {
    let lab = Lab::with(LabOptions {
        version: Some("v1.34.2".into()),
        ..Default::default()
    });
    let kc = std::fs::read_to_string(&lab.kubeconfig).expect("kubeconfig");
    assert!(kc.contains("server: https://"), "{kc}");
    assert!(kc.contains("certificate-authority-data:"), "{kc}");
    assert!(kc.contains("client-certificate-data:"), "{kc}");
    exercise(&lab, "upkeep-lab", "v1.34.2").await;
    exercise(&lab, "upkeep-lab-token", "v1.34.2").await;
    readonly_is_forbidden(&lab).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_over_plain_http() {
    let lab = Lab::with(LabOptions {
        version: Some("v1.33.4".into()),
        extra: vec!["--insecure-http".into()],
        ..Default::default()
    });
    let kc = std::fs::read_to_string(&lab.kubeconfig).expect("kubeconfig");
    assert!(kc.contains("server: http://"), "{kc}");
    exercise(&lab, "upkeep-lab", "v1.33.4").await;
    readonly_is_forbidden(&lab).await;
}

/// The first event of a watch stream, within `deadline`.
async fn next_event<K>(
    stream: impl Stream<Item = kube::Result<WatchEvent<K>>>,
    deadline: Duration,
) -> WatchEvent<K> {
    let mut stream = Box::pin(stream);
    tokio::time::timeout(deadline, stream.next())
        .await
        .expect("a watch event within the deadline")
        .expect("the watch stream ended")
        .expect("a watch event, not an error")
}
