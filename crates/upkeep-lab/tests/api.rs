//! The lab's API server through kube-rs, over HTTPS (client certificate, tokens) and HTTP.
#![allow(clippy::result_large_err)] // store closures return the API Status error

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::api::{
    Api, DeleteParams, EvictParams, ListParams, Patch, PatchParams, PostParams, Preconditions,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde_json::{Value, json};
use upkeep_lab::server::{RunningServer, ServerOptions, start};
use upkeep_lab::{Lab, LabOptions, resources};

async fn lab_server(tls: bool, opts: LabOptions) -> RunningServer {
    let lab = Lab::new(opts);
    start(
        lab,
        ServerOptions {
            listen: "127.0.0.1:0".parse().unwrap(),
            tls,
        },
        &[],
    )
    .await
    .expect("server starts")
}

async fn client(srv: &RunningServer, context: &str) -> Client {
    let kc = Kubeconfig::from_yaml(&srv.kubeconfig()).expect("kubeconfig parses");
    let mut cfg = Config::from_custom_kubeconfig(
        kc,
        &KubeConfigOptions {
            context: Some(context.into()),
            ..Default::default()
        },
    )
    .await
    .expect("kubeconfig loads");
    // kube 5 retries 429/503/504 with backoff by default; these tests assert the raw answers.
    cfg.default_retry = false;
    Client::try_from(cfg).expect("client builds")
}

fn pod(name: &str, labels: Value, node: Option<&str>) -> Pod {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}});
    if let Some(n) = node {
        p["spec"]["nodeName"] = json!(n);
    }
    serde_json::from_value(p).unwrap()
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn https_client_cert_create_get_list_selectors_and_paging() {
    let srv = lab_server(true, LabOptions::default()).await;
    assert!(srv.url().starts_with("https://127.0.0.1:"));
    let c = client(&srv, "upkeep-lab").await;
    let ns: Api<Namespace> = Api::all(c.clone());
    let names: Vec<String> = ns
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );

    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "web" } else { "db" };
        let node = if i < 3 { Some("n1") } else { None };
        pods.create(
            &PostParams::default(),
            &pod(
                &format!("p{i}"),
                json!({"tier": tier, "idx": i.to_string()}),
                node,
            ),
        )
        .await
        .unwrap();
    }
    let e = api_err(
        pods.create(&PostParams::default(), &pod("p0", json!({}), None))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (409, "AlreadyExists", "pods \"p0\" already exists")
    );
    let got = pods.get("p3").await.unwrap();
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Pending"));
    assert_eq!(got.metadata.generation, Some(1));
    let e = api_err(pods.get("nope").await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"nope\" not found")
    );

    let sel = |l: &str| ListParams::default().labels(l);
    assert_eq!(pods.list(&sel("tier=web")).await.unwrap().items.len(), 4);
    assert_eq!(
        pods.list(&sel("tier in (web,db),idx notin (0,1)"))
            .await
            .unwrap()
            .items
            .len(),
        5
    );
    assert_eq!(pods.list(&sel("!tier")).await.unwrap().items.len(), 0);
    let on_n1 = Api::<Pod>::all(c.clone())
        .list(&ListParams::default().fields("spec.nodeName=n1"))
        .await
        .unwrap();
    assert_eq!(on_n1.items.len(), 3);
    let by_name = pods
        .list(&ListParams::default().fields("metadata.name=p5"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let e = api_err(
        pods.list(&ListParams::default().fields("spec.bogus=1"))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.message.as_str()),
        (400, "field label not supported: spec.bogus")
    );

    // Paging: three pages of 3,3,1 with one snapshot resourceVersion, even while writes happen.
    let first = pods.list(&ListParams::default().limit(3)).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    pods.create(&PostParams::default(), &pod("p9", json!({}), None))
        .await
        .unwrap();
    let mut all: Vec<String> = first
        .items
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let mut token = first.metadata.continue_.clone();
    while let Some(t) = token.filter(|t| !t.is_empty()) {
        let page = pods
            .list(&ListParams::default().limit(3).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        all.extend(page.items.iter().filter_map(|p| p.metadata.name.clone()));
        token = page.metadata.continue_.clone();
    }
    assert_eq!(all, ["p0", "p1", "p2", "p3", "p4", "p5", "p6"]);
    srv.shutdown();
}

#[tokio::test]
async fn tokens_and_readonly_forbidden_over_https_and_http() {
    for tls in [true, false] {
        let srv = lab_server(tls, LabOptions::default()).await;
        let admin = client(&srv, "upkeep-lab-token").await;
        let ro = client(&srv, "readonly").await;
        let pods: Api<Pod> = Api::namespaced(admin, "default");
        pods.create(&PostParams::default(), &pod("x", json!({}), None))
            .await
            .unwrap();
        let ro_pods: Api<Pod> = Api::namespaced(ro, "default");
        assert_eq!(
            ro_pods
                .list(&ListParams::default())
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        let e = api_err(
            ro_pods
                .create(&PostParams::default(), &pod("y", json!({}), None))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code, 403);
        assert_eq!(e.reason, "Forbidden");
        assert_eq!(
            e.message,
            "pods is forbidden: User \"readonly\" cannot create resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        let e = api_err(
            ro_pods
                .delete("x", &DeleteParams::default())
                .await
                .unwrap_err(),
        );
        assert_eq!(
            e.message,
            "pods \"x\" is forbidden: User \"readonly\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
        );
        srv.shutdown();
    }
}

#[tokio::test]
async fn plain_http_client_sees_configured_version() {
    let opts = LabOptions {
        version: upkeep_lab::ServerVersion::parse("v1.33.4").unwrap(),
        ..Default::default()
    };
    let srv = lab_server(false, opts).await;
    assert!(srv.url().starts_with("http://"));
    let c = client(&srv, "upkeep-lab").await;
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(
        (v.git_version.as_str(), v.major.as_str(), v.minor.as_str()),
        ("v1.33.4", "1", "33")
    );
    let nodes: Api<Node> = Api::all(c);
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n1"}})).unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(
        nodes
            .list(&ListParams::default().fields("spec.unschedulable=false"))
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    srv.shutdown();
}

#[tokio::test]
async fn watch_resumes_from_resource_version_and_reports_gone() {
    let srv = lab_server(
        true,
        LabOptions {
            history: 6,
            ..Default::default()
        },
    )
    .await;
    let c = client(&srv, "upkeep-lab").await;
    let pods: Api<Pod> = Api::namespaced(c, "default");
    let start = pods
        .create(
            &PostParams::default(),
            &pod("w0", json!({"app": "w"}), None),
        )
        .await
        .unwrap();
    let rv0 = start.metadata.resource_version.clone().unwrap();
    pods.create(
        &PostParams::default(),
        &pod("w1", json!({"app": "w"}), None),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("other", json!({"app": "x"}), None),
    )
    .await
    .unwrap();
    pods.delete("w0", &DeleteParams::default()).await.unwrap();

    // Resume after rv0: w1 ADDED then w0 DELETED (the other pod is filtered out).
    let wp = WatchParams::default().labels("app=w").timeout(5);
    let mut s = pods.watch(&wp, &rv0).await.unwrap().boxed();
    let mut seen = Vec::new();
    while seen.len() < 2 {
        match tokio::time::timeout(Duration::from_secs(5), s.try_next())
            .await
            .expect("event in time")
            .unwrap()
            .unwrap()
        {
            WatchEvent::Added(p) => seen.push(format!("ADDED {}", p.metadata.name.unwrap())),
            WatchEvent::Deleted(p) => seen.push(format!("DELETED {}", p.metadata.name.unwrap())),
            WatchEvent::Modified(p) => seen.push(format!("MODIFIED {}", p.metadata.name.unwrap())),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(seen, ["ADDED w1", "DELETED w0"]);
    // Live events arrive too.
    pods.patch(
        "w1",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"k": "v"}}})),
    )
    .await
    .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .expect("live event")
        .unwrap()
        .unwrap()
    {
        WatchEvent::Modified(p) => assert_eq!(p.metadata.labels.unwrap()["k"], "v"),
        other => panic!("unexpected {other:?}"),
    }

    // Push rv0 out of the history: the watch answers with an ERROR event carrying 410.
    for i in 0..10 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("f{i}"), json!({}), None),
        )
        .await
        .unwrap();
    }
    let mut s = pods
        .watch(&WatchParams::default().timeout(5), &rv0)
        .await
        .unwrap()
        .boxed();
    match tokio::time::timeout(Duration::from_secs(5), s.try_next())
        .await
        .expect("error event")
        .unwrap()
        .unwrap()
    {
        WatchEvent::Error(st) => {
            assert_eq!(st.code, 410);
            assert_eq!(st.reason, "Expired");
            assert!(
                st.message.starts_with("too old resource version:"),
                "{}",
                st.message
            );
        }
        other => panic!("expected 410, got {other:?}"),
    }
    srv.shutdown();
}

#[tokio::test]
async fn patch_merge_json_strategic_and_status() {
    let srv = lab_server(true, LabOptions::default()).await;
    let c = client(&srv, "upkeep-lab").await;
    let pods: Api<Pod> = Api::namespaced(c, "default");
    let mut p = pod("pp", json!({"a": "1"}), None);
    p.spec
        .as_mut()
        .unwrap()
        .containers
        .push(serde_json::from_value(json!({"name": "side", "image": "busybox:1"})).unwrap());
    pods.create(&PostParams::default(), &p).await.unwrap();
    let pp = PatchParams::default();

    let got = pods
        .patch(
            "pp",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"a": null, "b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(
        got.metadata.labels.unwrap().into_iter().collect::<Vec<_>>(),
        [("b".to_string(), "2".to_string())]
    );

    let jp: json_patch::Patch = serde_json::from_value(json!([{"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}}, {"op": "replace", "path": "/spec/containers/1/image", "value": "busybox:2"}])).unwrap();
    let got = pods.patch("pp", &pp, &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(got.metadata.annotations.unwrap()["x"], "y");
    assert_eq!(
        got.spec.as_ref().unwrap().containers[1].image.as_deref(),
        Some("busybox:2")
    );

    // Strategic merge: containers merge by name, the other container is untouched.
    let got = pods
        .patch(
            "pp",
            &pp,
            &Patch::Strategic(
                json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}),
            ),
        )
        .await
        .unwrap();
    let cs = got.spec.unwrap().containers;
    assert_eq!(cs.len(), 2);
    assert_eq!(
        (cs[0].image.as_deref(), cs[1].image.as_deref()),
        (Some("nginx:1.28"), Some("busybox:2"))
    );
    assert_eq!(
        got.metadata.generation,
        Some(3),
        "spec changes bump generation"
    );

    // The main resource ignores status; /status changes only status.
    let got = pods
        .patch(
            "pp",
            &pp,
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await
        .unwrap();
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Pending"));
    let got = pods.patch_status("pp", &pp, &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}, "metadata": {"labels": {"ignored": "yes"}}}))).await.unwrap();
    assert_eq!(got.status.unwrap().phase.as_deref(), Some("Running"));
    assert!(!got.metadata.labels.unwrap().contains_key("ignored"));

    // A stale resourceVersion in a patch is a conflict with the upstream message.
    let e = api_err(
        pods.patch(
            "pp",
            &pp,
            &Patch::Merge(json!({"metadata": {"resourceVersion": "1", "labels": {"c": "3"}}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on pods \"pp\": the object has been modified; please apply your changes to the latest version and try again"
    );
    srv.shutdown();
}

#[tokio::test]
async fn delete_grace_preconditions_and_dry_run() {
    let srv = lab_server(true, LabOptions::default()).await;
    let c = client(&srv, "upkeep-lab").await;
    let pods: Api<Pod> = Api::namespaced(c, "default");
    let bound = pods
        .create(&PostParams::default(), &pod("bound", json!({}), Some("n1")))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &pod("unbound", json!({}), None))
        .await
        .unwrap();

    // dryRun=All answers but stores nothing.
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    pods.create(&dry, &pod("ghost", json!({}), None))
        .await
        .unwrap();
    assert!(pods.get_opt("ghost").await.unwrap().is_none());
    pods.delete(
        "unbound",
        &DeleteParams {
            dry_run: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_some());
    pods.patch(
        "unbound",
        &PatchParams {
            dry_run: true,
            ..Default::default()
        },
        &Patch::Merge(json!({"metadata": {"labels": {"d": "1"}}})),
    )
    .await
    .unwrap();
    assert!(
        pods.get("unbound")
            .await
            .unwrap()
            .metadata
            .labels
            .is_none_or(|l| !l.contains_key("d"))
    );

    // Preconditions.
    let wrong_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some("nope".into()),
            resource_version: None,
        }),
        ..Default::default()
    };
    let e = api_err(pods.delete("bound", &wrong_uid).await.unwrap_err());
    assert_eq!(e.code, 409);
    assert_eq!(
        e.message,
        format!(
            "Operation cannot be fulfilled on pods \"bound\": Precondition failed: UID in precondition: nope, UID in object meta: {}",
            bound.metadata.uid.clone().unwrap()
        )
    );
    let wrong_rv = DeleteParams {
        preconditions: Some(Preconditions {
            uid: None,
            resource_version: Some("1".into()),
        }),
        ..Default::default()
    };
    let e = api_err(pods.delete("bound", &wrong_rv).await.unwrap_err());
    assert!(e.message.contains("Precondition failed: ResourceVersion in precondition: 1, ResourceVersion in object meta:"), "{}", e.message);

    // An unbound pod goes at once; a bound one gets a deletionTimestamp and the default 30 s.
    pods.delete("unbound", &DeleteParams::default())
        .await
        .unwrap();
    assert!(pods.get_opt("unbound").await.unwrap().is_none());
    let right_uid = DeleteParams {
        preconditions: Some(Preconditions {
            uid: bound.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    pods.delete("bound", &right_uid).await.unwrap();
    let t = pods.get("bound").await.unwrap();
    assert!(t.metadata.deletion_timestamp.is_some());
    assert_eq!(t.metadata.deletion_grace_period_seconds, Some(30));
    // A later delete may shorten the grace period; 0 removes it (what the kubelet does).
    pods.delete(
        "bound",
        &DeleteParams {
            grace_period_seconds: Some(5),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        pods.get("bound")
            .await
            .unwrap()
            .metadata
            .deletion_grace_period_seconds,
        Some(5)
    );
    pods.delete("bound", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    assert!(pods.get_opt("bound").await.unwrap().is_none());

    // Terminal pods go at once even when bound.
    pods.create(&PostParams::default(), &pod("done", json!({}), Some("n1")))
        .await
        .unwrap();
    pods.patch_status(
        "done",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    pods.delete("done", &DeleteParams::default()).await.unwrap();
    assert!(pods.get_opt("done").await.unwrap().is_none());
    srv.shutdown();
}

fn set_pdb_status(lab: &Lab, name: &str, allowed: i64, current: i64, desired: i64) {
    lab.store
        .mutate(&resources::PDB, "default", name, |p| {
            let generation = p["metadata"]["generation"].clone();
            p["status"] = json!({"observedGeneration": generation, "disruptionsAllowed": allowed, "currentHealthy": current, "desiredHealthy": desired, "expectedPods": current});
            Ok(())
        })
        .unwrap();
}

async fn running_ready(pods: &Api<Pod>, name: &str, labels: Value, ready: bool) {
    pods.create(&PostParams::default(), &pod(name, labels, Some("n1")))
        .await
        .unwrap();
    let st = if ready { "True" } else { "False" };
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": st}]}}))).await.unwrap();
}

#[tokio::test]
async fn eviction_honours_disruption_budgets() {
    let srv = lab_server(true, LabOptions::default()).await;
    let lab = srv.lab.clone();
    let c = client(&srv, "upkeep-lab").await;
    let pods: Api<Pod> = Api::namespaced(c.clone(), "default");
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(c.clone(), "default");
    let mk_pdb = |name: &str, app: &str, extra: Value| {
        let mut v = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": app}}}});
        if let (Some(s), Some(e)) = (v["spec"].as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        serde_json::from_value::<PodDisruptionBudget>(v).unwrap()
    };
    let ep = EvictParams::default();

    // No PDB: evicted (graceful delete of a bound pod) with the DisruptionTarget condition.
    running_ready(&pods, "free", json!({"app": "free"}), true).await;
    let st = pods.evict("free", &ep).await.unwrap();
    assert_eq!(st.code, 201);
    let p = pods.get("free").await.unwrap();
    assert!(p.metadata.deletion_timestamp.is_some());
    let conds = p.status.unwrap().conditions.unwrap();
    let dt = conds
        .iter()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget condition");
    assert_eq!(
        (dt.status.as_str(), dt.reason.as_deref()),
        ("True", Some("EvictionByEvictionAPI"))
    );

    // A PDB the controller has not observed yet: 429, "still being processed".
    running_ready(&pods, "web-0", json!({"app": "web"}), true).await;
    pdbs.create(&PostParams::default(), &mk_pdb("web-pdb", "web", json!({})))
        .await
        .unwrap();
    let e = api_err(pods.evict("web-0", &ep).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(
        e.details.unwrap().causes[0].message,
        "The disruption budget web-pdb is still being processed by the server."
    );

    // Observed but no disruptions allowed: 429 with the upstream message and cause.
    set_pdb_status(&lab, "web-pdb", 0, 1, 1);
    let e = api_err(pods.evict("web-0", &ep).await.unwrap_err());
    assert_eq!(e.code, 429);
    assert_eq!(
        e.message,
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    let cause = &e.details.unwrap().causes[0];
    assert_eq!(
        (cause.reason.as_str(), cause.message.as_str()),
        (
            "DisruptionBudget",
            "The disruption budget web-pdb needs 1 healthy pods and has 1 currently"
        )
    );
    assert!(
        pods.get("web-0")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );

    // dryRun with a budget: answered, nothing changes.
    set_pdb_status(&lab, "web-pdb", 1, 2, 1);
    let dry = EvictParams {
        post_options: PostParams {
            dry_run: true,
            ..Default::default()
        },
        ..Default::default()
    };
    pods.evict("web-0", &dry).await.unwrap();
    assert!(
        pods.get("web-0")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_none()
    );
    assert_eq!(
        pdbs.get("web-pdb")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        Some(1)
    );

    // Allowed: decremented, recorded in disruptedPods, pod terminating.
    pods.evict("web-0", &ep).await.unwrap();
    let st = pdbs.get("web-pdb").await.unwrap().status.unwrap();
    assert_eq!(st.disruptions_allowed, Some(0));
    assert!(st.disrupted_pods.unwrap().contains_key("web-0"));
    assert!(
        pods.get("web-0")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );

    // Two PDBs select the pod: 500 with the upstream message.
    running_ready(&pods, "api-0", json!({"app": "api"}), true).await;
    pdbs.create(&PostParams::default(), &mk_pdb("api-a", "api", json!({})))
        .await
        .unwrap();
    pdbs.create(&PostParams::default(), &mk_pdb("api-b", "api", json!({})))
        .await
        .unwrap();
    let e = api_err(pods.evict("api-0", &ep).await.unwrap_err());
    assert_eq!(
        (e.code, e.message.as_str()),
        (
            500,
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
        )
    );

    // Pending pods skip the PDB check.
    pods.create(
        &PostParams::default(),
        &pod("api-pending", json!({"app": "api"}), None),
    )
    .await
    .unwrap();
    pods.evict("api-pending", &ep).await.unwrap();
    assert!(
        pods.get_opt("api-pending").await.unwrap().is_none(),
        "unbound pending pod is deleted at once"
    );

    // Not-ready pods: IfHealthyBudget needs the budget met; AlwaysAllow always lets them go.
    running_ready(&pods, "db-0", json!({"app": "db"}), false).await;
    pdbs.create(&PostParams::default(), &mk_pdb("db-pdb", "db", json!({})))
        .await
        .unwrap();
    set_pdb_status(&lab, "db-pdb", 0, 0, 1);
    assert_eq!(
        api_err(pods.evict("db-0", &ep).await.unwrap_err()).code,
        429
    );
    pdbs.patch(
        "db-pdb",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"unhealthyPodEvictionPolicy": "AlwaysAllow"}})),
    )
    .await
    .unwrap();
    set_pdb_status(&lab, "db-pdb", 0, 0, 1);
    pods.evict("db-0", &ep).await.unwrap();
    assert!(
        pods.get("db-0")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    assert_eq!(
        pdbs.get("db-pdb")
            .await
            .unwrap()
            .status
            .unwrap()
            .disruptions_allowed,
        Some(0),
        "budget untouched"
    );

    // Metrics counted the evictions.
    assert!(lab.metrics.total("create", "pods") >= 8);
    srv.shutdown();
}

#[tokio::test]
async fn injected_faults_are_deterministic() {
    let srv = lab_server(false, LabOptions::default()).await;
    let c = client(&srv, "upkeep-lab").await;
    srv.lab.faults.set(
        serde_json::from_value(
            json!({"rules": [{"verb": "list", "resource": "pods", "code": 503, "count": 2}]}),
        )
        .unwrap(),
    );
    let pods: Api<Pod> = Api::namespaced(c, "default");
    for _ in 0..2 {
        assert_eq!(
            api_err(pods.list(&ListParams::default()).await.unwrap_err()).code,
            503
        );
    }
    pods.list(&ListParams::default()).await.unwrap();
    assert_eq!(srv.lab.metrics.total("list", "pods"), 3);
    srv.shutdown();
}

#[tokio::test]
async fn kubeconfig_is_written_atomically() {
    let srv = lab_server(true, LabOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("kc");
    srv.write_kubeconfig(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(&srv.url()));
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1,
        "no temporary file left behind"
    );
    let names: Vec<_> = futures::stream::iter(["upkeep-lab", "upkeep-lab-token", "readonly"])
        .collect()
        .await;
    for ctx in names {
        let kc = Kubeconfig::from_yaml(&text).unwrap();
        Config::from_custom_kubeconfig(
            kc,
            &KubeConfigOptions {
                context: Some(ctx.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    srv.shutdown();
}

#[tokio::test]
async fn self_subject_access_reviews_answer_per_user() {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let srv = lab_server(true, LabOptions::default()).await;
    let review = |verb: &str| -> SelfSubjectAccessReview {
        serde_json::from_value(json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": {"resourceAttributes": {"verb": verb, "resource": "pods", "namespace": "default"}}}))
        .unwrap()
    };
    let mut answers = Vec::new();
    for ctx in ["upkeep-lab", "readonly"] {
        let api: Api<SelfSubjectAccessReview> = Api::all(client(&srv, ctx).await);
        for verb in ["create", "list"] {
            let r = api
                .create(&PostParams::default(), &review(verb))
                .await
                .unwrap();
            answers.push((ctx, verb, r.status.unwrap().allowed));
        }
    }
    assert_eq!(
        answers,
        [
            ("upkeep-lab", "create", true),
            ("upkeep-lab", "list", true),
            ("readonly", "create", false),
            ("readonly", "list", true)
        ]
    );
    srv.shutdown();
}

#[tokio::test]
async fn https_without_credentials_is_unauthorized_except_health() {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let srv = lab_server(true, LabOptions::default()).await;
    let ca = CertificateDer::from_pem_slice(srv.credentials.ca_pem.as_bytes()).unwrap();
    let mut cfg = Config::new(srv.url().parse().unwrap());
    cfg.root_cert = Some(vec![ca.to_vec()]);
    cfg.default_retry = false;
    let anon = Client::try_from(cfg).unwrap();
    // /version is public (system:public-info-viewer upstream).
    assert!(anon.apiserver_version().await.is_ok());
    let e = api_err(
        Api::<Pod>::namespaced(anon, "default")
            .list(&ListParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (401, "Unauthorized", "Unauthorized")
    );
    srv.shutdown();
}

#[tokio::test]
async fn pod_spec_updates_are_limited_like_upstream() {
    let srv = lab_server(false, LabOptions::default()).await;
    let pods: Api<Pod> = Api::namespaced(client(&srv, "upkeep-lab").await, "default");
    pods.create(&PostParams::default(), &pod("im", json!({}), None))
        .await
        .unwrap();
    let pp = PatchParams::default();
    // Allowed: image, activeDeadlineSeconds, metadata.
    pods.patch("im", &pp, &Patch::Strategic(json!({"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}], "activeDeadlineSeconds": 60}}))).await.unwrap();
    // Forbidden: anything else in the spec.
    let e = api_err(
        pods.patch(
            "im",
            &pp,
            &Patch::Merge(json!({"spec": {"nodeName": "n9"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message.starts_with(
            "Pod \"im\" is invalid: spec: Forbidden: pod updates may not change fields other than"
        ),
        "{}",
        e.message
    );
    let mut p = pods.get("im").await.unwrap();
    p.spec.as_mut().unwrap().containers[0].args = Some(vec!["x".into()]);
    assert_eq!(
        api_err(
            pods.replace("im", &PostParams::default(), &p)
                .await
                .unwrap_err()
        )
        .code,
        422
    );
    assert_eq!(
        pods.get("im").await.unwrap().spec.unwrap().containers[0]
            .image
            .as_deref(),
        Some("nginx:1.28")
    );
    srv.shutdown();
}

#[tokio::test]
async fn kube_runtime_watcher_lists_pages_and_follows_changes() {
    use kube::runtime::watcher;
    let srv = lab_server(true, LabOptions::default()).await;
    let c = client(&srv, "upkeep-lab").await;
    let pods: Api<Pod> = Api::namespaced(c, "default");
    for i in 0..3 {
        pods.create(
            &PostParams::default(),
            &pod(&format!("r{i}"), json!({"app": "r"}), None),
        )
        .await
        .unwrap();
    }
    let cfg = watcher::Config::default().labels("app=r").page_size(2);
    let mut w = watcher(pods.clone(), cfg).boxed();
    let mut initial = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(5), w.try_next())
            .await
            .expect("watcher event")
            .unwrap()
            .unwrap()
        {
            watcher::Event::InitApply(p) => initial.push(p.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(initial, ["r0", "r1", "r2"]);
    pods.delete("r1", &DeleteParams::default()).await.unwrap();
    let next = tokio::time::timeout(Duration::from_secs(5), w.try_next())
        .await
        .expect("delete event");
    match next.unwrap().unwrap() {
        watcher::Event::Delete(p) => assert_eq!(p.metadata.name.as_deref(), Some("r1")),
        other => panic!("unexpected {other:?}"),
    }
    srv.shutdown();
}

#[tokio::test]
async fn tables_scale_generate_name_finalizers_and_deletecollection() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::ConfigMap;
    let srv = lab_server(true, LabOptions::default()).await;
    let c = client(&srv, "upkeep-lab").await;

    // generateName
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let generated: ConfigMap = serde_json::from_value(
        json!({"metadata": {"generateName": "cfg-", "labels": {"batch": "1"}}}),
    )
    .unwrap();
    let made = cms
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let name = made.metadata.name.unwrap();
    assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");

    // Table with kubectl's columns; the node shows SchedulingDisabled when cordoned.
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "w1"}, "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.34.2"}}})).unwrap())
        .await
        .unwrap();
    let req = http::Request::get("/api/v1/nodes?includeObject=None")
        .header(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: Value = c.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let cols: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["priority"] == 0)
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(cols, ["Name", "Status", "Roles", "Age", "Version"]);
    let cells = &table["rows"][0]["cells"];
    assert_eq!(
        (cells[0].as_str(), cells[1].as_str(), cells[4].as_str()),
        (
            Some("w1"),
            Some("Ready,SchedulingDisabled"),
            Some("v1.34.2")
        )
    );
    assert!(
        table["rows"][0].get("object").is_none(),
        "includeObject=None"
    );

    // Scale subresource.
    let deps: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
        "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]}}}}))
    .unwrap();
    deps.create(&PostParams::default(), &d).await.unwrap();
    let sc = deps
        .patch_scale(
            "d",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(sc.spec.unwrap().replicas, Some(4));
    assert_eq!(deps.get("d").await.unwrap().spec.replicas, Some(4));
    assert_eq!(
        deps.get_scale("d")
            .await
            .unwrap()
            .status
            .unwrap()
            .selector
            .as_deref(),
        Some("app=d")
    );

    // Finalizers hold a deleted object until the last one is removed.
    let held: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "held", "finalizers": ["lab.upkeep.dev/hold"]}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &held).await.unwrap();
    cms.delete("held", &DeleteParams::default()).await.unwrap();
    assert!(
        cms.get("held")
            .await
            .unwrap()
            .metadata
            .deletion_timestamp
            .is_some()
    );
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert!(cms.get_opt("held").await.unwrap().is_none());

    // deletecollection by label.
    cms.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "keep"}})).unwrap(),
    )
    .await
    .unwrap();
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=1"),
    )
    .await
    .unwrap();
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(left, ["keep"]);
    srv.shutdown();
}
