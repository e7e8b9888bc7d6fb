//! Control-plane restarts during `kubeadm upgrade apply`, through the node-shell endpoint and
//! a privileged host pod, against the lab's HTTPS server (cmd/kubeadm/app/phases/upgrade/
//! staticpods.go: the kubelet restarts the rewritten static pods; a single kube-apiserver is
//! gone meanwhile, several stay up behind the load balancer).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use upkeep_lab::sim::controlplane::{Interruptions, REASON_INTERRUPTED};

mod served;
use served::{Scenario, Served as Harness};

/// One or two control-plane nodes and a worker at v1.34.3, the v1.35 repository published.
fn scenario(control_planes: u32, restart_seconds: f64) -> String {
    format!(
        "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {{name: restart}}\nspec:\n  version: v1.34.3\n  kubeadm: true\n  timing: {{podStartSeconds: 1, controlPlaneRestartSeconds: {restart_seconds}}}\n  nodes:\n  - name: controlplane{{index:02}}\n    count: {control_planes}\n    role: control-plane\n    kubeletVersion: v1.34.3\n    controlPlaneVersion: v1.34.3\n    osImage: Ubuntu 24.04.3 LTS\n  - name: node01\n    kubeletVersion: v1.34.3\n    osImage: Ubuntu 24.04.3 LTS\n  packages:\n    repositories:\n    - minor: v1.34\n      versions: [1.34.3-1.1]\n    - minor: v1.35\n      versions: [1.35.2-1.1]\n"
    )
}

async fn harness(control_planes: u32, restart_seconds: f64, scale: f64) -> Harness {
    served::serve(
        Scenario::Document(&scenario(control_planes, restart_seconds)),
        scale,
    )
    .await
}

const KUBEADM_PACKAGE: &str = "sed -i 's/v1.34/v1.35/' /etc/apt/sources.list.d/kubernetes.list && \
     apt-mark unhold kubeadm && apt-get update && apt-get install -y kubeadm='1.35.2-*' && apt-mark hold kubeadm";

impl Harness {
    async fn ok(&self, node: &str, script: &str) {
        let argv = vec!["sh".to_string(), "-c".to_string(), script.to_string()];
        let r = self
            .shell
            .exec(node, &argv, "")
            .await
            .expect("exec request");
        assert_eq!(r.code, 0, "{script}: {}{}", r.stdout, r.stderr);
    }

    async fn mirror_uid(&self, name: &str) -> String {
        let p = Api::<Pod>::namespaced(self.kube.clone(), "kube-system")
            .get(name)
            .await
            .unwrap();
        p.metadata.uid.unwrap()
    }

    /// Runs `kubeadm upgrade apply` through the node shell while probing the API's address
    /// with fresh TCP connections; returns how many were refused.
    async fn apply_while_probing(&self, node: &str) -> usize {
        let addr: SocketAddr = self.srv.addr;
        let argv: Vec<String> = ["sh", "-c", "kubeadm upgrade apply v1.35.2 --yes"]
            .map(String::from)
            .to_vec();
        let shell = &self.shell;
        let apply = shell.exec(node, &argv, "");
        tokio::pin!(apply);
        let mut refused = 0;
        loop {
            tokio::select! {
                r = &mut apply => {
                    let r = r.expect("exec request");
                    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
                    return refused;
                }
                _ = tokio::time::sleep(Duration::from_millis(10)) => {
                    if let Err(e) = tokio::net::TcpStream::connect(addr).await {
                        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
                        refused += 1;
                    }
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_control_plane_refuses_connections_while_its_apiserver_restarts() {
    // 20 lab seconds (the default restart) at 20x: about one real second
    let h = harness(1, 20.0, 20.0).await;
    let cp = "controlplane01";
    h.ok(cp, KUBEADM_PACKAGE).await;
    let before = h.mirror_uid(&format!("kube-apiserver-{cp}")).await;
    let started = Instant::now();
    let refused = h.apply_while_probing(cp).await;
    assert!(
        refused > 0,
        "the API accepted every connection during the restart"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "kubeadm returned before the API was back: {:?}",
        started.elapsed()
    );
    // back on the same address; the mirror pod is a new pod with the new image
    let after = h.mirror_uid(&format!("kube-apiserver-{cp}")).await;
    assert_ne!(before, after, "the restarted mirror pod keeps its UID");
    let p = Api::<Pod>::namespaced(h.kube.clone(), "kube-system")
        .get(&format!("kube-apiserver-{cp}"))
        .await
        .unwrap();
    assert_eq!(
        p.spec.unwrap().containers[0].image.as_deref(),
        Some("registry.k8s.io/kube-apiserver:v1.35.2")
    );
    assert_eq!(
        h.kube.apiserver_version().await.unwrap().git_version,
        "v1.35.2"
    );
    h.srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_control_planes_the_api_stays_up_and_the_mirror_pods_are_replaced() {
    let h = harness(2, 20.0, 20.0).await;
    let cp = "controlplane01";
    h.ok(cp, KUBEADM_PACKAGE).await;
    let names = [
        format!("kube-apiserver-{cp}"),
        format!("etcd-{cp}"),
        "kube-apiserver-controlplane02".to_string(),
    ];
    let mut before = Vec::new();
    for n in &names {
        before.push(h.mirror_uid(n).await);
    }
    let refused = h.apply_while_probing(cp).await;
    assert_eq!(
        refused, 0,
        "the API refused connections behind the load balancer"
    );
    assert_ne!(h.mirror_uid(&names[0]).await, before[0]);
    assert_ne!(h.mirror_uid(&names[1]).await, before[1]);
    assert_eq!(
        h.mirror_uid(&names[2]).await,
        before[2],
        "the other control plane's pods did not restart"
    );
    h.srv.shutdown();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_host_pod_while_kubeadm_runs_is_recorded_as_an_interruption() {
    // real time: a 2 s outage, then kubeadm's 5 lab seconds after it
    let h = harness(1, 2.0, 1.0).await;
    let cp = "controlplane01";
    h.ok(cp, KUBEADM_PACKAGE).await;
    let pods = Api::<Pod>::namespaced(h.kube.clone(), "kube-system");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "apply", "namespace": "kube-system"},
        "spec": {"nodeName": cp, "hostPID": true, "restartPolicy": "Never",
                 "terminationGracePeriodSeconds": 0,
                 "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "nsenter", "image": "busybox:1.36",
                                 "securityContext": {"privileged": true},
                                 "command": ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--",
                                             "kubeadm", "upgrade", "apply", "v1.35.2", "--yes"]}]}
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    // The API goes away while kubeadm runs; once it is back the pod is still Running.
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = loop {
        assert!(Instant::now() < deadline, "the API did not come back");
        match pods.get("apply").await {
            Ok(p)
                if h.kube
                    .apiserver_version()
                    .await
                    .is_ok_and(|v| v.git_version == "v1.35.2") =>
            {
                break p;
            }
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let phase = running.status.and_then(|s| s.phase).unwrap_or_default();
    assert_eq!(phase, "Running", "kubeadm already finished");
    assert!(Interruptions::get(&h.srv.lab).all().is_empty());
    pods.delete("apply", &DeleteParams::default().grace_period(0))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let recorded = loop {
        let all = Interruptions::get(&h.srv.lab).all();
        if !all.is_empty() {
            break all;
        }
        assert!(Instant::now() < deadline, "no interruption recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(recorded.len(), 1);
    assert_eq!(recorded[0].node, cp);
    assert_eq!(recorded[0].command, "kubeadm upgrade apply v1.35.2 --yes");
    // ... and as a Warning event on the pod, which kubectl shows
    let events = Api::<Event>::namespaced(h.kube.clone(), "kube-system")
        .list(&ListParams::default().fields(&format!("reason={REASON_INTERRUPTED}")))
        .await
        .unwrap();
    assert_eq!(events.items.len(), 1, "{:?}", events.items);
    assert_eq!(
        events.items[0].involved_object.name.as_deref(),
        Some("apply")
    );
    h.srv.shutdown();
}
