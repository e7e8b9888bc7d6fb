//! The rules and the plan over hand-built snapshots.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, HostPathVolumeSource, Node, NodeCondition, NodeSpec,
    NodeStatus, Pod, PodCondition, PodSpec, PodStatus, ResourceRequirements, Taint, Toleration,
    Volume,
};
use k8s_openapi::api::policy::v1::{
    PodDisruptionBudget, PodDisruptionBudgetSpec, PodDisruptionBudgetStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::*;

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn node(name: &str, cpu: &str) -> Node {
    let mut n = Node::default();
    n.metadata.name = Some(name.into());
    n.metadata.labels = Some(map(&[("kubernetes.io/hostname", name)]));
    n.spec = Some(NodeSpec::default());
    n.status = Some(NodeStatus {
        allocatable: Some(
            [("cpu", cpu), ("memory", "8Gi"), ("pods", "110")]
                .iter()
                .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                .collect(),
        ),
        conditions: Some(vec![NodeCondition {
            type_: "Ready".into(),
            status: "True".into(),
            ..Default::default()
        }]),
        ..Default::default()
    });
    n
}

fn tainted(mut n: Node, key: &str) -> Node {
    n.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: key.into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }]);
    n
}

struct P(Pod);

impl P {
    fn new(ns: &str, name: &str, node: &str) -> P {
        let mut p = Pod::default();
        p.metadata.namespace = Some(ns.into());
        p.metadata.name = Some(name.into());
        p.metadata.uid = Some(format!("uid-{name}"));
        p.metadata.labels = Some(map(&[("app", name)]));
        p.spec = Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "c".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        [("cpu", "100m")]
                            .iter()
                            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition {
                type_: "Ready".into(),
                status: "True".into(),
                ..Default::default()
            }]),
            ..Default::default()
        });
        P(p)
    }
    fn labels(mut self, pairs: &[(&str, &str)]) -> P {
        self.0.metadata.labels = Some(map(pairs));
        self
    }
    fn owned(mut self, api_version: &str, kind: &str, name: &str) -> P {
        self.0.metadata.owner_references = Some(vec![OwnerReference {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{kind}-{name}"),
            controller: Some(true),
            ..Default::default()
        }]);
        self
    }
    fn rs(self, name: &str) -> P {
        self.owned("apps/v1", "ReplicaSet", name)
    }
    fn annotate(mut self, k: &str, v: &str) -> P {
        self.0
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(k.into(), v.into());
        self
    }
    fn phase(mut self, phase: &str) -> P {
        self.0.status.as_mut().unwrap().phase = Some(phase.into());
        self
    }
    fn cpu(mut self, cpu: &str) -> P {
        let spec = self.0.spec.as_mut().unwrap();
        spec.containers[0].resources = Some(ResourceRequirements {
            requests: Some(
                [("cpu".to_string(), Quantity(cpu.into()))]
                    .into_iter()
                    .collect(),
            ),
            ..Default::default()
        });
        self
    }
    fn volume(mut self, v: Volume) -> P {
        self.0
            .spec
            .as_mut()
            .unwrap()
            .volumes
            .get_or_insert_with(Vec::new)
            .push(v);
        self
    }
    fn spec(mut self, f: impl FnOnce(&mut PodSpec)) -> P {
        f(self.0.spec.as_mut().unwrap());
        self
    }
    fn unready(mut self) -> P {
        self.0.status.as_mut().unwrap().conditions = None;
        self
    }
    fn pod(self) -> Pod {
        self.0
    }
}

fn workload(ns: &str, kind: &str, name: &str, replicas: i32, app: &str) -> Workload {
    let label_selector = LabelSelector {
        match_labels: Some(map(&[("app", app)])),
        match_expressions: None,
    };
    Workload {
        kind: kind.into(),
        namespace: ns.into(),
        name: name.into(),
        replicas,
        selector: format!("app={app}"),
        label_selector,
    }
}

fn owner(
    ns: &str,
    kind: &str,
    name: &str,
    exists: bool,
    w: Option<Workload>,
) -> (String, OwnerState) {
    let uid = format!("uid-{kind}-{name}");
    (
        uid.clone(),
        OwnerState {
            namespace: ns.into(),
            kind: kind.into(),
            name: name.into(),
            uid,
            exists,
            workload: w,
        },
    )
}

fn pdb(
    ns: &str,
    name: &str,
    app: &str,
    allowed: i32,
    healthy: i32,
    desired: i32,
) -> PodDisruptionBudget {
    let mut b = PodDisruptionBudget::default();
    b.metadata.namespace = Some(ns.into());
    b.metadata.name = Some(name.into());
    b.spec = Some(PodDisruptionBudgetSpec {
        selector: Some(LabelSelector {
            match_labels: Some(map(&[("app", app)])),
            match_expressions: None,
        }),
        min_available: Some(IntOrString::Int(desired)),
        ..Default::default()
    });
    b.status = Some(PodDisruptionBudgetStatus {
        disruptions_allowed: Some(allowed),
        current_healthy: Some(healthy),
        desired_healthy: Some(desired),
        expected_pods: Some(healthy),
        ..Default::default()
    });
    b
}

/// The os-upgrade practice lab: controlplane (tainted), node01 with the bare
/// pod hr-app and a web replica, node02 with the other web replicas.
fn os_upgrade(drain: &str) -> DrainSnapshot {
    let nodes = vec![
        tainted(
            node("controlplane", "2"),
            "node-role.kubernetes.io/control-plane",
        ),
        node("node01", "2"),
        node("node02", "2"),
    ];
    let web = |name: &str, on: &str| {
        P::new("default", name, on)
            .labels(&[("app", "web")])
            .rs("web-6f7c")
            .pod()
    };
    let cluster_pods = vec![
        P::new("default", "hr-app", "node01").pod(),
        web("web-6f7c-a", "node01"),
        web("web-6f7c-b", "node02"),
        web("web-6f7c-c", "node02"),
        P::new("kube-system", "kube-proxy-1", "node01")
            .owned("apps/v1", "DaemonSet", "kube-proxy")
            .pod(),
        P::new("kube-system", "kube-proxy-2", "node02")
            .owned("apps/v1", "DaemonSet", "kube-proxy")
            .pod(),
        P::new("kube-system", "etcd-controlplane", "controlplane")
            .annotate(rules::MIRROR, "abc")
            .owned("v1", "Node", "controlplane")
            .pod(),
    ];
    snapshot(
        drain,
        nodes,
        cluster_pods,
        vec![
            owner(
                "default",
                "ReplicaSet",
                "web-6f7c",
                true,
                Some(workload("default", "Deployment", "web", 3, "web")),
            ),
            owner("kube-system", "DaemonSet", "kube-proxy", true, None),
        ],
    )
}

fn snapshot(
    drain: &str,
    nodes: Vec<Node>,
    cluster_pods: Vec<Pod>,
    owners: Vec<(String, OwnerState)>,
) -> DrainSnapshot {
    DrainSnapshot {
        node: nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(drain))
            .unwrap()
            .clone(),
        pods: cluster_pods
            .iter()
            .filter(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some(drain))
            .cloned()
            .collect(),
        nodes,
        cluster_pods,
        pdbs: vec![],
        pvcs: vec![],
        pvs: vec![],
        taken_at: jiff::Timestamp::now(),
        owners: owners.into_iter().collect(),
    }
}

fn pod_plan<'a>(plan: &'a DrainPlan, name: &str) -> &'a PodPlan {
    plan.pods
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("{name} in plan"))
}

fn blocker(plan: &DrainPlan, rule: Rule) -> &Finding {
    plan.blockers
        .iter()
        .find(|b| b.rule == rule)
        .unwrap_or_else(|| panic!("no {} blocker in {:#?}", rule.name(), plan.blockers))
}

#[test]
fn bare_pod_refuses_and_advises_cordon() {
    let p = plan(&os_upgrade("node01"), &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Refused);
    let hr = pod_plan(&p, "hr-app");
    assert_eq!((hr.action, hr.rule), (Action::Block, Rule::Unmanaged));
    assert!(
        blocker(&p, Rule::Unmanaged)
            .message
            .contains("default/hr-app declares no controller")
    );
    assert!(
        p.advice
            .iter()
            .any(|a| a.contains("kubectl cordon node01") && a.contains("default/hr-app"))
    );
    // The rest of the plan is still computed and shown.
    let web = pod_plan(&p, "web-6f7c-a");
    assert_eq!(web.action, Action::Evict);
    assert_eq!(web.fits_on.as_deref(), Some("node02"));
    assert_eq!(pod_plan(&p, "kube-proxy-1").action, Action::Leave);
    assert_eq!(p.summary.blocked, 1);
    assert!(p.render().contains("REFUSED: node/node01 was not drained"));
}

#[test]
fn delete_unmanaged_lists_what_it_destroys() {
    let opts = DrainOptions {
        delete_unmanaged: true,
        ..Default::default()
    };
    let p = plan(&os_upgrade("node01"), &opts);
    assert_eq!(p.verdict, Verdict::Drain);
    assert_eq!(pod_plan(&p, "hr-app").action, Action::Destroy);
    assert!(
        p.advice
            .iter()
            .any(|a| a.contains("deleted for good: default/hr-app"))
    );
    assert_eq!(p.summary.destroy, 1);
}

#[test]
fn replicated_node_drains_and_leaves_daemonsets() {
    let p = plan(&os_upgrade("node02"), &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Drain, "{:#?}", p.blockers);
    assert_eq!(p.summary.evict, 2);
    assert_eq!(p.summary.leave, 1);
    assert!(
        p.warnings.is_empty(),
        "a replica remains on node01: {:#?}",
        p.warnings
    );
    let w = p.workloads();
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].id(), "Deployment/web");
    assert_eq!(
        pod_plan(&p, "web-6f7c-b").reason,
        "recreated by Deployment/web"
    );
}

#[test]
fn orphaned_controller_blocks() {
    let mut s = os_upgrade("node02");
    s.owners.get_mut("uid-ReplicaSet-web-6f7c").unwrap().exists = false;
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Refused);
    assert_eq!(pod_plan(&p, "web-6f7c-b").rule, Rule::OrphanedController);
    assert!(
        blocker(&p, Rule::OrphanedController)
            .message
            .contains("ReplicaSet/web-6f7c no longer exists")
    );
    // An owner that was never looked up is treated as gone: never lose a pod.
    s.owners.clear();
    assert_eq!(plan(&s, &DrainOptions::default()).verdict, Verdict::Refused);
}

#[test]
fn mirror_finished_and_terminating_pods() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let mut terminating = P::new("default", "going", "n1").rs("rs").pod();
    terminating.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let pods = vec![
        P::new("kube-system", "kube-apiserver-n1", "n1")
            .annotate(rules::MIRROR, "x")
            .pod(),
        P::new("default", "job-done", "n1").phase("Succeeded").pod(),
        P::new("default", "crashed", "n1").phase("Failed").pod(),
        terminating,
        // A finished DaemonSet pod is deleted, not left (kubectl daemonSetFilter).
        P::new("default", "ds-done", "n1")
            .owned("apps/v1", "DaemonSet", "ds")
            .phase("Failed")
            .pod(),
    ];
    let p = plan(
        &snapshot(
            "n1",
            nodes,
            pods,
            vec![owner("default", "ReplicaSet", "rs", true, None)],
        ),
        &DrainOptions::default(),
    );
    assert_eq!(p.verdict, Verdict::Drain, "{:#?}", p.blockers);
    assert_eq!(pod_plan(&p, "kube-apiserver-n1").action, Action::Leave);
    assert_eq!(pod_plan(&p, "job-done").action, Action::Delete);
    assert_eq!(pod_plan(&p, "crashed").reason, "finished (Failed)");
    assert_eq!(pod_plan(&p, "going").action, Action::Wait);
    assert_eq!(pod_plan(&p, "ds-done").action, Action::Delete);
}

#[test]
fn a_daemonset_kind_from_another_group_is_not_a_daemonset() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let pods = vec![
        P::new("default", "x", "n1")
            .owned("example.com/v1", "DaemonSet", "ds")
            .pod(),
    ];
    let own = owner("default", "DaemonSet", "ds", true, None);
    let p = plan(
        &snapshot("n1", nodes, pods, vec![own]),
        &DrainOptions::default(),
    );
    assert_eq!(pod_plan(&p, "x").action, Action::Evict);
}

#[test]
fn local_storage_blocks_naming_volumes() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let pods = vec![
        P::new("default", "cache", "n1")
            .rs("rs")
            .volume(Volume {
                name: "scratch".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            })
            .pod(),
        P::new("default", "logs", "n1")
            .rs("rs")
            .volume(Volume {
                name: "varlog".into(),
                host_path: Some(HostPathVolumeSource {
                    path: "/var/log".into(),
                    type_: None,
                }),
                ..Default::default()
            })
            .pod(),
    ];
    let s = snapshot(
        "n1",
        nodes,
        pods,
        vec![owner("default", "ReplicaSet", "rs", true, None)],
    );
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Refused);
    let msgs: Vec<&str> = p
        .blockers
        .iter()
        .filter(|b| b.rule == Rule::LocalStorage)
        .map(|b| b.message.as_str())
        .collect();
    assert!(
        msgs.iter().any(|m| m.contains("scratch (emptyDir)")),
        "{msgs:?}"
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("varlog (hostPath /var/log)")),
        "{msgs:?}"
    );
    assert_eq!(
        pod_plan(&p, "cache").reason,
        "local data in scratch (emptyDir)"
    );
    assert!(
        p.advice
            .iter()
            .any(|a| a.contains("--delete-emptydir-data"))
    );
    let p = plan(
        &s,
        &DrainOptions {
            delete_emptydir_data: true,
            ..Default::default()
        },
    );
    assert_eq!(p.verdict, Verdict::Drain);
    assert!(p.warnings.iter().any(|w| w.rule == Rule::LocalStorage));
}

#[test]
fn the_owners_local_volume_opt_ins_are_honoured() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let scratch = || Volume {
        name: "scratch".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let cache = || Volume {
        name: "cache".into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    };
    let pods = vec![
        P::new("default", "listed", "n1")
            .rs("rs")
            .volume(scratch())
            .annotate(rules::SAFE_TO_EVICT_LOCAL_VOLUMES, "scratch")
            .pod(),
        P::new("default", "partly", "n1")
            .rs("rs")
            .volume(scratch())
            .volume(cache())
            .annotate(rules::SAFE_TO_EVICT_LOCAL_VOLUMES, "scratch")
            .pod(),
        P::new("default", "all", "n1")
            .rs("rs")
            .volume(cache())
            .annotate(rules::SAFE_TO_EVICT, "true")
            .pod(),
    ];
    let p = plan(
        &snapshot(
            "n1",
            nodes,
            pods,
            vec![owner("default", "ReplicaSet", "rs", true, None)],
        ),
        &DrainOptions::default(),
    );
    assert_eq!(pod_plan(&p, "listed").action, Action::Evict);
    assert_eq!(pod_plan(&p, "all").action, Action::Evict);
    assert_eq!(pod_plan(&p, "partly").action, Action::Block);
    assert_eq!(
        pod_plan(&p, "partly").reason,
        "local data in cache (emptyDir)"
    );
}

#[test]
fn opt_out_annotations_block() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let pods = vec![
        P::new("default", "ca", "n1")
            .rs("rs")
            .annotate(rules::SAFE_TO_EVICT, "false")
            .pod(),
        P::new("default", "karp", "n1")
            .rs("rs")
            .annotate(rules::DO_NOT_DISRUPT, "true")
            .pod(),
        P::new("default", "fine", "n1")
            .rs("rs")
            .annotate(rules::SAFE_TO_EVICT, "true")
            .pod(),
    ];
    let p = plan(
        &snapshot(
            "n1",
            nodes,
            pods,
            vec![owner("default", "ReplicaSet", "rs", true, None)],
        ),
        &DrainOptions::default(),
    );
    assert_eq!(pod_plan(&p, "ca").rule, Rule::SafeToEvictFalse);
    assert!(
        blocker(&p, Rule::SafeToEvictFalse)
            .message
            .contains("cluster-autoscaler.kubernetes.io/safe-to-evict=\"false\"")
    );
    assert_eq!(pod_plan(&p, "karp").rule, Rule::DoNotDisrupt);
    assert!(
        blocker(&p, Rule::DoNotDisrupt)
            .message
            .contains("karpenter.sh/do-not-disrupt")
    );
    assert_eq!(pod_plan(&p, "fine").action, Action::Evict);
}

#[test]
fn two_pdbs_on_one_pod_block() {
    let mut s = os_upgrade("node02");
    s.pdbs = vec![
        pdb("default", "web-a", "web", 5, 3, 1),
        pdb("default", "web-b", "web", 5, 3, 1),
    ];
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Refused);
    let b = blocker(&p, Rule::MultiplePdbs);
    assert!(
        b.message.contains("default/web-a, default/web-b"),
        "{}",
        b.message
    );
    assert_eq!(
        pod_plan(&p, "web-6f7c-b").pdbs,
        vec!["default/web-a", "default/web-b"]
    );
}

#[test]
fn pdb_budget_is_judged_jointly_and_paced_by_default() {
    // One disruption allowed, two of its pods on the node: each alone would
    // pass (server dry-run says yes twice), together they cannot. The budget
    // frees as the first replacement becomes healthy: paced, not refused.
    let mut s = os_upgrade("node02");
    s.pdbs = vec![
        pdb("default", "web-pdb", "web", 1, 3, 2),
        pdb("other", "web-pdb", "web", 0, 0, 0),
    ];
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Drain, "{:#?}", p.blockers);
    let w = p
        .warnings
        .iter()
        .find(|w| w.rule == Rule::PdbBudget)
        .expect("a pacing warning");
    assert!(w.message.starts_with("PodDisruptionBudget default/web-pdb allows 1 disruption(s) (currentHealthy 3, desiredHealthy 2, expectedPods 3) but this node runs 2"), "{}", w.message);
    assert!(
        w.message.ends_with("evicted as the budget frees"),
        "{}",
        w.message
    );
    assert_eq!(pod_plan(&p, "web-6f7c-b").action, Action::Evict);
    assert_eq!(
        p.warnings
            .iter()
            .filter(|w| w.rule == Rule::PdbBudget)
            .count(),
        1,
        "a PDB of another namespace does not count"
    );

    // --pdb=refuse: today's strict behaviour.
    let refuse = DrainOptions {
        pdb: PdbPolicy::Refuse,
        ..Default::default()
    };
    let p = plan(&s, &refuse);
    assert_eq!(p.verdict, Verdict::Refused);
    let b = blocker(&p, Rule::PdbBudget);
    assert!(
        b.message
            .starts_with("PodDisruptionBudget default/web-pdb allows 1 disruption(s)"),
        "{}",
        b.message
    );
    assert_eq!(
        pod_plan(&p, "web-6f7c-b").reason,
        "PodDisruptionBudget default/web-pdb has no room"
    );
    assert!(
        p.advice.iter().any(|a| a.contains("--pdb=refuse")),
        "{:?}",
        p.advice
    );

    // Enough budget: no finding. Unready pods do not consume it.
    s.pdbs = vec![pdb("default", "web-pdb", "web", 2, 3, 1)];
    let p = plan(&s, &refuse);
    assert_eq!(p.verdict, Verdict::Drain);
    assert!(p.warnings.iter().all(|w| w.rule != Rule::PdbBudget));
    s.pdbs = vec![pdb("default", "web-pdb", "web", 1, 3, 2)];
    let idx = s
        .pods
        .iter()
        .position(|p| p.metadata.name.as_deref() == Some("web-6f7c-b"))
        .unwrap();
    s.pods[idx] = P(s.pods[idx].clone()).unready().pod();
    assert_eq!(plan(&s, &refuse).verdict, Verdict::Drain);
}

#[test]
fn a_budget_that_never_allows_is_refused_naming_the_fix() {
    let mut s = os_upgrade("node02");
    // minAvailable 3 of 3 web pods: the budget never frees by itself.
    s.pdbs = vec![pdb("default", "web-pdb", "web", 0, 3, 3)];
    for policy in [PdbPolicy::Pace, PdbPolicy::Refuse] {
        let p = plan(
            &s,
            &DrainOptions {
                pdb: policy,
                ..Default::default()
            },
        );
        assert_eq!(p.verdict, Verdict::Refused, "{policy:?}");
        let b = blocker(&p, Rule::PdbNeverAllows);
        assert!(
            b.message
                .starts_with("PodDisruptionBudget default/web-pdb allows 0 disruption(s)"),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("minAvailable 3 keeps all 3"),
            "{}",
            b.message
        );
        assert!(
            b.message.contains("scale the workload to 4 replicas"),
            "{}",
            b.message
        );
        assert_eq!(
            pod_plan(&p, "web-6f7c-b").reason,
            "PodDisruptionBudget default/web-pdb never allows it"
        );
    }
    // An empty policy/v1 spec, and maxUnavailable 0.
    let mut empty = pdb("default", "web-pdb", "web", 0, 3, 0);
    empty.spec.as_mut().unwrap().min_available = None;
    s.pdbs = vec![empty.clone()];
    let b = plan(&s, &DrainOptions::default());
    assert!(
        blocker(&b, Rule::PdbNeverAllows)
            .message
            .contains("neither minAvailable nor maxUnavailable")
    );
    let mut zero = empty;
    zero.spec.as_mut().unwrap().max_unavailable = Some(IntOrString::Int(0));
    s.pdbs = vec![zero];
    let b = plan(&s, &DrainOptions::default());
    assert!(
        blocker(&b, Rule::PdbNeverAllows)
            .message
            .contains("maxUnavailable 0 never allows")
    );
    // --wait-for-pdb waits for it anyway (someone may scale up).
    let p = plan(
        &s,
        &DrainOptions {
            pdb: PdbPolicy::Wait,
            ..Default::default()
        },
    );
    assert_eq!(p.verdict, Verdict::Drain);
    assert!(
        p.warnings
            .iter()
            .any(|w| w.rule == Rule::PdbNeverAllows && w.message.contains("--wait-for-pdb"))
    );
}

#[test]
fn downtime_warns_or_blocks() {
    let nodes = vec![node("n1", "4"), node("n2", "4")];
    let pods = vec![
        P::new("default", "solo-1", "n1")
            .labels(&[("app", "solo")])
            .rs("solo-1")
            .pod(),
        P::new("default", "pair-1", "n1")
            .labels(&[("app", "pair")])
            .rs("pair")
            .pod(),
        P::new("default", "pair-2", "n1")
            .labels(&[("app", "pair")])
            .rs("pair")
            .pod(),
        P::new("default", "spread-1", "n1")
            .labels(&[("app", "spread")])
            .rs("spread")
            .pod(),
        P::new("default", "spread-2", "n2")
            .labels(&[("app", "spread")])
            .rs("spread")
            .pod(),
    ];
    let s = snapshot(
        "n1",
        nodes,
        pods,
        vec![
            owner(
                "default",
                "ReplicaSet",
                "solo-1",
                true,
                Some(workload("default", "Deployment", "solo", 1, "solo")),
            ),
            owner(
                "default",
                "ReplicaSet",
                "pair",
                true,
                Some(workload("default", "ReplicaSet", "pair", 2, "pair")),
            ),
            owner(
                "default",
                "ReplicaSet",
                "spread",
                true,
                Some(workload("default", "StatefulSet", "spread", 2, "spread")),
            ),
        ],
    );
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Drain);
    let msgs: Vec<&str> = p
        .warnings
        .iter()
        .filter(|w| w.rule == Rule::Downtime)
        .map(|w| w.message.as_str())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs.iter()
            .any(|m| m.contains("Deployment default/solo has 1 replica"))
    );
    assert!(
        msgs.iter()
            .any(|m| m.contains("every ready replica of ReplicaSet default/pair runs on n1"))
    );
    let strict = plan(
        &s,
        &DrainOptions {
            no_downtime: true,
            ..Default::default()
        },
    );
    assert_eq!(strict.verdict, Verdict::Refused);
    assert_eq!(pod_plan(&strict, "pair-2").rule, Rule::Downtime);
    assert_eq!(pod_plan(&strict, "spread-1").action, Action::Evict);
    // A replica elsewhere that is itself leaving does not count.
    let leaving = plan(
        &s,
        &DrainOptions {
            no_downtime: true,
            also_leaving: vec!["n2".into()],
            ..Default::default()
        },
    );
    assert_eq!(pod_plan(&leaving, "spread-1").action, Action::Block);
}

#[test]
fn capacity_names_what_is_missing_on_each_node() {
    let nodes = vec![
        node("n1", "4"),
        node("small", "1"),
        tainted(node("gpu", "8"), "dedicated"),
        {
            let mut n = node("down", "8");
            n.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "False".into();
            n
        },
        {
            let mut n = node("cordoned", "8");
            n.spec.as_mut().unwrap().unschedulable = Some(true);
            n
        },
    ];
    let pods = vec![
        P::new("default", "big", "n1").rs("rs").cpu("2").pod(),
        P::new("default", "busy", "small")
            .rs("other")
            .cpu("500m")
            .pod(),
    ];
    let s = snapshot(
        "n1",
        nodes,
        pods,
        vec![owner("default", "ReplicaSet", "rs", true, None)],
    );
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(p.verdict, Verdict::Refused);
    let m = &blocker(&p, Rule::NoCapacity).message;
    assert!(
        m.starts_with("default/big fits on no other node: 0/4 other nodes can take it"),
        "{m}"
    );
    assert!(
        m.contains("small: insufficient cpu (requests 2, 500m free)"),
        "{m}"
    );
    assert!(
        m.contains("gpu: untolerated taint dedicated:NoSchedule"),
        "{m}"
    );
    assert!(m.contains("down: not Ready"), "{m}");
    assert!(m.contains("cordoned: unschedulable (cordoned)"), "{m}");
    // Tolerating the taint makes room.
    let mut s2 = s.clone();
    s2.pods[0] = P(s2.pods[0].clone())
        .spec(|sp| {
            sp.tolerations = Some(vec![Toleration {
                key: Some("dedicated".into()),
                operator: Some("Exists".into()),
                ..Default::default()
            }])
        })
        .pod();
    let p2 = plan(&s2, &DrainOptions::default());
    assert_eq!(p2.verdict, Verdict::Drain, "{:#?}", p2.blockers);
    assert_eq!(pod_plan(&p2, "big").fits_on.as_deref(), Some("gpu"));
}

#[test]
fn capacity_counts_the_evicted_pods_together_and_honours_selectors() {
    let nodes = vec![node("n1", "4"), node("n2", "1")];
    let pods = vec![
        P::new("default", "a", "n1").rs("rs").cpu("600m").pod(),
        P::new("default", "b", "n1").rs("rs").cpu("600m").pod(),
        P::new("default", "pinned", "n1")
            .rs("rs")
            .spec(|s| s.node_selector = Some(map(&[("disk", "ssd")])))
            .pod(),
    ];
    let p = plan(
        &snapshot(
            "n1",
            nodes,
            pods,
            vec![owner("default", "ReplicaSet", "rs", true, None)],
        ),
        &DrainOptions::default(),
    );
    let blocked: Vec<&str> = p
        .pods
        .iter()
        .filter(|p| p.rule == Rule::NoCapacity)
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(blocked.len(), 2, "{blocked:?}");
    assert!(blocked.contains(&"pinned"));
    assert!(
        p.blockers
            .iter()
            .any(|b| b.message.contains("nodeSelector disk=ssd not matched"))
    );
}

#[test]
fn critical_pods_are_marked_and_cordon_state_is_known() {
    let mut nodes = vec![node("n1", "4"), node("n2", "4")];
    nodes[0].spec.as_mut().unwrap().unschedulable = Some(true);
    let pods = vec![
        P::new("kube-system", "coredns", "n1")
            .rs("coredns")
            .spec(|s| s.priority_class_name = Some("system-cluster-critical".into()))
            .pod(),
    ];
    let p = plan(
        &snapshot(
            "n1",
            nodes,
            pods,
            vec![owner("kube-system", "ReplicaSet", "coredns", true, None)],
        ),
        &DrainOptions::default(),
    );
    assert!(pod_plan(&p, "coredns").critical);
    assert!(p.already_cordoned);
}

#[test]
fn json_plan_is_stable() {
    let p = plan(&os_upgrade("node01"), &DrainOptions::default());
    let v = serde_json::to_value(&p).unwrap();
    assert_eq!(v["verdict"], "refused");
    assert_eq!(v["node"], "node01");
    assert_eq!(v["summary"]["blocked"], 1);
    let hr = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "hr-app")
        .unwrap();
    assert_eq!(hr["action"], "block");
    assert_eq!(hr["rule"], "unmanaged");
    assert_eq!(v["blockers"][0]["severity"], "block");
    let web = v["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "web-6f7c-a")
        .unwrap();
    assert_eq!(web["workload"]["kind"], "Deployment");
    assert_eq!(web["fitsOn"], "node02");
}

#[test]
fn the_record_keeps_earlier_runs_and_what_they_knew() {
    let mut s = os_upgrade("node02");
    let earlier = r#"[{"namespace":"default","name":"web-6f7c-old","workload":"Deployment/web","selector":"app=web"},
                      {"namespace":"default","name":"web-6f7c-b","workload":"Deployment/web","selector":"app=web"}]"#;
    s.node.metadata.annotations = Some(map(&[(record::DRAINED_PODS, earlier)]));
    // web-6f7c-b is now terminating (an interrupted run evicted it).
    s.pods[0].metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    let p = plan(&s, &DrainOptions::default());
    assert_eq!(pod_plan(&p, "web-6f7c-b").action, Action::Wait);
    assert_eq!(
        p.workloads().len(),
        1,
        "a terminating pod's workload is still waited for"
    );
    let merged = record::merged(&s.node, &p.pods);
    let names: Vec<&str> = merged.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["web-6f7c-b", "web-6f7c-c", "web-6f7c-old"]);
    assert!(
        merged
            .iter()
            .all(|f| f.workload.as_deref() == Some("Deployment/web"))
    );
    assert_eq!(record::recorded(&s.node).len(), 2);
}

#[test]
fn capacity_runs_the_schedulers_filters_and_names_the_one_that_rejects() {
    use k8s_openapi::api::core::v1::{
        Affinity, ContainerPort, PersistentVolume, PersistentVolumeClaim,
        PersistentVolumeClaimSpec, PersistentVolumeClaimVolumeSource, PersistentVolumeSpec,
        PodAffinityTerm, PodAntiAffinity, TopologySpreadConstraint, VolumeNodeAffinity,
    };
    let nodes = vec![node("w1", "4"), node("w2", "4"), node("w3", "4")];
    let sel = LabelSelector {
        match_labels: Some(map(&[("app", "web")])),
        match_expressions: None,
    };
    let web = |name: &str, on: &str, f: &dyn Fn(&mut PodSpec)| {
        P::new("default", name, on)
            .labels(&[("app", "web")])
            .rs("web-1")
            .spec(f)
            .pod()
    };
    let owners = || {
        vec![owner(
            "default",
            "ReplicaSet",
            "web-1",
            true,
            Some(workload("default", "Deployment", "web", 3, "web")),
        )]
    };
    let judge = |f: &dyn Fn(&mut PodSpec), extra: Vec<Pod>| {
        let mut pods = vec![
            web("web-a", "w1", f),
            web("web-b", "w2", f),
            web("web-c", "w3", f),
        ];
        pods.extend(extra);
        plan(
            &snapshot("w2", nodes.clone(), pods, owners()),
            &DrainOptions::default(),
        )
    };

    // One replica per worker (required anti-affinity on the hostname): Pending.
    let anti = |s: &mut PodSpec| {
        s.affinity = Some(Affinity {
            pod_anti_affinity: Some(PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![PodAffinityTerm {
                    label_selector: Some(sel.clone()),
                    topology_key: "kubernetes.io/hostname".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        })
    };
    let p = judge(&anti, vec![]);
    assert_eq!(p.verdict, Verdict::Refused);
    let m = &blocker(&p, Rule::NoCapacity).message;
    assert!(m.starts_with("default/web-b fits on no other node"), "{m}");
    assert!(m.contains("w1: required pod anti-affinity on kubernetes.io/hostname against default/web-a [InterPodAffinity]"), "{m}");
    // A fourth worker: it fits there.
    let mut more = nodes.clone();
    more.push(node("w4", "4"));
    let pods = vec![
        web("web-a", "w1", &anti),
        web("web-b", "w2", &anti),
        web("web-c", "w3", &anti),
    ];
    let p = plan(
        &snapshot("w2", more, pods, owners()),
        &DrainOptions::default(),
    );
    assert_eq!(pod_plan(&p, "web-b").fits_on.as_deref(), Some("w4"));

    // The host port taken on every other node.
    let port = |s: &mut PodSpec| {
        s.containers[0].ports = Some(vec![ContainerPort {
            container_port: 80,
            host_port: Some(8080),
            ..Default::default()
        }])
    };
    let m = blocker(&judge(&port, vec![]), Rule::NoCapacity)
        .message
        .clone();
    assert!(
        m.contains("w3: host port 8080/TCP is taken by default/web-c [NodePorts]"),
        "{m}"
    );

    // Spread over hostnames with maxSkew 1: the drained node's domain counts
    // (a cordon is no taint for nodeTaintsPolicy Ignore), so w1 and w3 would
    // reach 2 against its 0.
    let spread = |s: &mut PodSpec| {
        s.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 1,
            topology_key: "kubernetes.io/hostname".into(),
            when_unsatisfiable: "DoNotSchedule".into(),
            label_selector: Some(sel.clone()),
            ..Default::default()
        }])
    };
    let m = blocker(&judge(&spread, vec![]), Rule::NoCapacity)
        .message
        .clone();
    assert!(m.contains("topology spread on kubernetes.io/hostname: skew 2 would exceed maxSkew 1 [PodTopologySpread]"), "{m}");
    // ScheduleAnyway only scores.
    let anyway = |s: &mut PodSpec| {
        spread(s);
        s.topology_spread_constraints.as_mut().unwrap()[0].when_unsatisfiable =
            "ScheduleAnyway".into();
    };
    assert_eq!(judge(&anyway, vec![]).verdict, Verdict::Drain);

    // A local PersistentVolume bound to w2.
    let claim = |s: &mut PodSpec| {
        s.volumes = Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: "data-web".into(),
                ..Default::default()
            }),
            ..Default::default()
        }])
    };
    let mut snap = snapshot(
        "w2",
        nodes.clone(),
        vec![
            web("web-a", "w1", &|_| {}),
            web("web-b", "w2", &claim),
            web("web-c", "w3", &|_| {}),
        ],
        owners(),
    );
    let mut pvc = PersistentVolumeClaim::default();
    pvc.metadata.namespace = Some("default".into());
    pvc.metadata.name = Some("data-web".into());
    pvc.spec = Some(PersistentVolumeClaimSpec {
        volume_name: Some("local-w2".into()),
        ..Default::default()
    });
    let mut pv = PersistentVolume::default();
    pv.metadata.name = Some("local-w2".into());
    pv.spec = Some(PersistentVolumeSpec {
        node_affinity: Some(VolumeNodeAffinity {
            required: Some(k8s_openapi::api::core::v1::NodeSelector {
                node_selector_terms: vec![k8s_openapi::api::core::v1::NodeSelectorTerm {
                    match_expressions: Some(vec![
                        k8s_openapi::api::core::v1::NodeSelectorRequirement {
                            key: "kubernetes.io/hostname".into(),
                            operator: "In".into(),
                            values: Some(vec!["w2".into()]),
                        },
                    ]),
                    ..Default::default()
                }],
            }),
        }),
        ..Default::default()
    });
    snap.pvcs = vec![pvc];
    snap.pvs = vec![pv];
    let p = plan(&snap, &DrainOptions::default());
    let m = &blocker(&p, Rule::NoCapacity).message;
    assert!(m.contains("w1: PersistentVolume local-w2 (claim data-web) has a node affinity this node does not match [VolumeBinding]"), "{m}");
    assert_eq!(p.summary.blocked, 1, "the other pods are not blocked");
}

// ---------- kubectl drain's reference cases ----------
//
// The table of `lab-fidelity.md` ("kubectl drain reference cases": kubectl
// `pkg/drain`, `pkg/cmd/drain`, kube-apiserver `eviction_test.go`), each row
// with the outcome safedrain gives and what it observes: the plan's action
// and rule, the engine's reading of the API answer, or a call against a fake
// API. Where safedrain differs from kubectl on purpose, the row says so.

mod reference {
    use super::*;
    use crate::drain::execute::{
        AfterReread, Answer, EvictionVersion, PodNow, after_reread, classify, eviction_version,
    };

    /// The plan's verdict on one pod `p` on node n1 (n2 takes replacements).
    fn judged(p: Pod, owners: Vec<(String, OwnerState)>, opts: DrainOptions) -> String {
        let name = p.metadata.name.clone().unwrap();
        let pdbs = PDBS.with(|b| b.borrow().clone());
        let mut pods = vec![p];
        if !pdbs.is_empty() {
            // The budget's other two pods run on n2.
            pods.extend(["web-x", "web-y"].map(|n| {
                P::new("default", n, "n2")
                    .labels(&[("app", "web")])
                    .rs("web-1")
                    .pod()
            }));
        }
        let mut s = snapshot("n1", vec![node("n1", "4"), node("n2", "4")], pods, owners);
        s.pdbs = pdbs;
        let plan = plan(&s, &opts);
        let pp = pod_plan(&plan, &name);
        let pdb_notes: Vec<&str> = pp
            .findings
            .iter()
            .filter(|f| matches!(f.rule, Rule::PdbBudget | Rule::PdbNeverAllows))
            .map(|f| f.rule.name())
            .collect();
        let mut out = format!("{} [{}]", pp.action.as_str(), pp.rule.name());
        if !pdb_notes.is_empty() {
            out.push_str(&format!(" +{}", pdb_notes.join(",")));
        }
        out
    }

    thread_local! {
        static PDBS: std::cell::RefCell<Vec<PodDisruptionBudget>> = const { std::cell::RefCell::new(Vec::new()) };
    }

    fn with_pdb<T>(b: PodDisruptionBudget, f: impl FnOnce() -> T) -> T {
        PDBS.with(|p| *p.borrow_mut() = vec![b]);
        let out = f();
        PDBS.with(|p| p.borrow_mut().clear());
        out
    }

    fn rs_owner() -> Vec<(String, OwnerState)> {
        vec![owner(
            "default",
            "ReplicaSet",
            "web-1",
            true,
            Some(workload("default", "Deployment", "web", 3, "web")),
        )]
    }

    fn web(name: &str) -> P {
        P::new("default", name, "n1")
            .labels(&[("app", "web")])
            .rs("web-1")
    }

    fn empty_dir(p: P) -> P {
        p.volume(Volume {
            name: "scratch".into(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Default::default()
        })
    }

    fn terminating(p: P, seconds_ago: i64) -> P {
        let mut pod = p.pod();
        pod.metadata.deletion_timestamp = Some(Time(
            jiff::Timestamp::now() - jiff::SignedDuration::from_secs(seconds_ago),
        ));
        P(pod)
    }

    fn force() -> DrainOptions {
        DrainOptions::default()
    }

    fn unmanaged() -> DrainOptions {
        DrainOptions {
            delete_unmanaged: true,
            ..Default::default()
        }
    }

    fn status(code: u16, message: &str, cause: Option<(&str, &str)>) -> kube::Error {
        let mut s = serde_json::json!({ "code": code, "message": message });
        if let Some((reason, m)) = cause {
            s["details"] = serde_json::json!({ "causes": [{ "reason": reason, "message": m }] });
        }
        kube::Error::Api(Box::new(serde_json::from_value(s).unwrap()))
    }

    /// The engine's step after an answer (re-reading the pod where it does).
    fn answered(err: kube::Error, now: PodNow) -> String {
        match classify(&err) {
            Answer::AlreadyGone => "gone, no wait".into(),
            Answer::Retry(_) => "paced: retried as the budget frees".into(),
            Answer::Conflict(_) | Answer::NamespaceTerminating(_) => match after_reread(now) {
                AfterReread::Gone => "re-read: gone".into(),
                AfterReread::WaitDeletion => "re-read: wait for deletion".into(),
                AfterReread::Retry => "re-read: retry".into(),
            },
            Answer::MultiplePdbs(_) => "stop, naming the PDBs".into(),
            Answer::Fatal(_) => "stop, naming the pod".into(),
            Answer::Transient(_) | Answer::Unreachable(_) => "transient: retried".into(),
        }
    }

    /// A client whose API answers every path with `route(path)`.
    fn fake(route: fn(&str) -> (u16, serde_json::Value)) -> kube::Client {
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let (code, body) = route(req.uri().path());
            async move {
                Ok::<_, std::convert::Infallible>(
                    http::Response::builder()
                        .status(code)
                        .body(kube::client::Body::from(body.to_string().into_bytes()))
                        .unwrap(),
                )
            }
        });
        kube::Client::new(service, "default")
    }

    fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn discovery(with: Option<(&str, &str)>) -> serde_json::Value {
        let mut resources = vec![serde_json::json!({
            "name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod", "verbs": ["get", "list"]
        })];
        if let Some((group, version)) = with {
            resources.push(serde_json::json!({
                "name": "pods/eviction", "singularName": "", "namespaced": true, "kind": "Eviction",
                "group": group, "version": version, "verbs": ["create"]
            }));
        }
        serde_json::json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": "v1", "resources": resources })
    }

    fn version_offered(route: fn(&str) -> (u16, serde_json::Value)) -> String {
        match block_on(async { eviction_version(&fake(route)).await }) {
            Ok(EvictionVersion::V1) => "policy/v1".into(),
            Ok(EvictionVersion::V1beta1) => "policy/v1beta1".into(),
            Err(e) => format!("refused: {e:#}"),
        }
    }

    fn request_for(grace: Option<u32>) -> serde_json::Value {
        let pod = PodPlan {
            namespace: "default".into(),
            name: "web-a".into(),
            uid: "u-1".into(),
            owner: None,
            workload: None,
            action: Action::Evict,
            rule: Rule::Replicated,
            reason: String::new(),
            critical: false,
            pdbs: vec![],
            fits_on: None,
            findings: vec![],
        };
        let req =
            crate::drain::execute::eviction_request(EvictionVersion::V1, &pod, grace).unwrap();
        let body: serde_json::Value = serde_json::from_slice(req.body()).unwrap();
        serde_json::json!({ "uri": req.uri().to_string(), "body": body })
    }

    fn pdb_with(
        min: IntOrString,
        allowed: i32,
        healthy: i32,
        expected: i32,
    ) -> PodDisruptionBudget {
        let mut b = pdb("default", "web-pdb", "web", allowed, healthy, 0);
        b.spec.as_mut().unwrap().min_available = Some(min);
        let st = b.status.as_mut().unwrap();
        st.expected_pods = Some(expected);
        st.desired_healthy = Some(healthy - allowed);
        b
    }

    #[test]
    fn kubectl_drain_reference_cases() {
        type Case = (u8, &'static str, &'static str, Box<dyn Fn() -> String>);
        let cases: Vec<Case> = vec![
            (
                1,
                "pod with RC controllerRef",
                "evict [replicated]",
                Box::new(|| {
                    let p =
                        P::new("default", "rc-a", "n1").owned("v1", "ReplicationController", "rc");
                    judged(
                        p.pod(),
                        vec![owner(
                            "default",
                            "ReplicationController",
                            "rc",
                            true,
                            Some(workload(
                                "default",
                                "ReplicationController",
                                "rc",
                                2,
                                "rc-a",
                            )),
                        )],
                        force(),
                    )
                }),
            ),
            (
                2,
                "pod with RS controllerRef",
                "evict [replicated]",
                Box::new(|| judged(web("web-a").pod(), rs_owner(), force())),
            ),
            // kubectl: fatal without --ignore-daemonsets. safedrain always leaves them.
            (
                3,
                "DaemonSet pod, Running",
                "leave [daemonset-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "proxy-a", "n1")
                            .owned("apps/v1", "DaemonSet", "proxy")
                            .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            (
                4,
                "same, --ignore-daemonsets (safedrain: implied)",
                "leave [daemonset-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "proxy-a", "n1")
                            .owned("apps/v1", "DaemonSet", "proxy")
                            .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            (
                5,
                "DaemonSet pod with emptyDir",
                "leave [daemonset-pod]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("kube-system", "proxy-a", "n1").owned(
                            "apps/v1",
                            "DaemonSet",
                            "proxy",
                        ))
                        .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            (
                6,
                "DaemonSet pod, Succeeded",
                "delete [finished-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "proxy-a", "n1")
                            .owned("apps/v1", "DaemonSet", "proxy")
                            .phase("Succeeded")
                            .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            // kubectl: NotFound error (deleted with --force). safedrain leaves DaemonSet pods without a lookup.
            (
                7,
                "DaemonSet controllerRef NotFound",
                "leave [daemonset-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "proxy-a", "n1")
                            .owned("apps/v1", "DaemonSet", "gone")
                            .pod(),
                        vec![owner("kube-system", "DaemonSet", "gone", false, None)],
                        force(),
                    )
                }),
            ),
            (
                8,
                "same, --force",
                "leave [daemonset-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "proxy-a", "n1")
                            .owned("apps/v1", "DaemonSet", "gone")
                            .pod(),
                        vec![owner("kube-system", "DaemonSet", "gone", false, None)],
                        force(),
                    )
                }),
            ),
            (
                9,
                "pod without ownerReferences",
                "BLOCK [unmanaged]",
                Box::new(|| judged(P::new("default", "bare", "n1").pod(), vec![], force())),
            ),
            // kubectl --force evicts it for good; safedrain's --force does not, --delete-unmanaged does.
            (
                10,
                "same, --force / --delete-unmanaged",
                "BLOCK [unmanaged] / destroy [unmanaged]",
                Box::new(|| {
                    format!(
                        "{} / {}",
                        judged(P::new("default", "bare", "n1").pod(), vec![], force()),
                        judged(P::new("default", "bare", "n1").pod(), vec![], unmanaged())
                    )
                }),
            ),
            (
                11,
                "bare pod with emptyDir, --delete-unmanaged",
                "BLOCK [local-storage]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("default", "bare", "n1")).pod(),
                        vec![],
                        unmanaged(),
                    )
                }),
            ),
            (
                12,
                "same, --delete-emptydir-data",
                "destroy [unmanaged]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("default", "bare", "n1")).pod(),
                        vec![],
                        DrainOptions {
                            delete_emptydir_data: true,
                            ..unmanaged()
                        },
                    )
                }),
            ),
            (
                13,
                "bare pod with emptyDir, Failed",
                "delete [finished-pod]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("default", "bare", "n1"))
                            .phase("Failed")
                            .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            (
                14,
                "Job pod with emptyDir, --delete-emptydir-data",
                "evict [replicated]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("default", "job-a", "n1").owned("batch/v1", "Job", "job"))
                            .pod(),
                        vec![owner("default", "Job", "job", true, None)],
                        DrainOptions {
                            delete_emptydir_data: true,
                            ..force()
                        },
                    )
                }),
            ),
            (
                15,
                "Job pod with emptyDir, Succeeded",
                "delete [finished-pod]",
                Box::new(|| {
                    judged(
                        empty_dir(P::new("default", "job-a", "n1").owned("batch/v1", "Job", "job"))
                            .phase("Succeeded")
                            .pod(),
                        vec![owner("default", "Job", "job", true, None)],
                        force(),
                    )
                }),
            ),
            (
                16,
                "mirror pod",
                "leave [mirror-pod]",
                Box::new(|| {
                    judged(
                        P::new("kube-system", "etcd-n1", "n1")
                            .annotate(rules::MIRROR, "x")
                            .pod(),
                        vec![],
                        force(),
                    )
                }),
            ),
            // kubectl skips it with --skip-wait-for-delete-timeout=20; safedrain waits, bounded by --timeout.
            (
                17,
                "deletionTimestamp 100 s old",
                "wait [terminating]",
                Box::new(|| judged(terminating(web("web-a"), 100).pod(), rs_owner(), force())),
            ),
            (
                18,
                "deletionTimestamp 0-1 s old",
                "wait [terminating]",
                Box::new(|| judged(terminating(web("web-a"), 0).pod(), rs_owner(), force())),
            ),
            (
                19,
                "empty node",
                "drain, 0 pods",
                Box::new(|| {
                    let s = snapshot("n1", vec![node("n1", "4"), node("n2", "4")], vec![], vec![]);
                    let p = plan(&s, &force());
                    format!(
                        "{}, {} pods",
                        serde_json::to_value(p.verdict).unwrap().as_str().unwrap(),
                        p.summary.pods
                    )
                }),
            ),
            (
                20,
                "pod list fails",
                "error: could not list the pods",
                Box::new(|| {
                    fn route(path: &str) -> (u16, serde_json::Value) {
                        match path {
                            "/api/v1/nodes" => (
                                200,
                                serde_json::json!({"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": [{"metadata": {"name": "n1"}}]}),
                            ),
                            _ => (
                                500,
                                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 500, "message": "etcd down"}),
                            ),
                        }
                    }
                    match block_on(async { gather(&fake(route), "n1", None).await }) {
                        Ok(_) => "gathered".into(),
                        Err(e) => format!("error: {e}"),
                    }
                }),
            ),
            (
                21,
                "wait: same name, different uid",
                "re-read: gone",
                Box::new(|| {
                    let mut other = web("web-a").pod();
                    other.metadata.uid = Some("another".into());
                    answered(
                        status(409, "Precondition failed: UID in precondition", None),
                        PodNow::of(Some(&other), "uid-web-a"),
                    )
                }),
            ),
            (
                22,
                "wait: NotFound / still there",
                "re-read: gone / re-read: retry",
                Box::new(|| {
                    let here = web("web-a").pod();
                    format!(
                        "{} / {}",
                        answered(status(409, "conflict", None), PodNow::of(None, "uid-web-a")),
                        answered(
                            status(409, "conflict", None),
                            PodNow::of(Some(&here), "uid-web-a")
                        )
                    )
                }),
            ),
            (
                23,
                "eviction 429",
                "paced: retried as the budget frees",
                Box::new(|| {
                    answered(
                        status(
                            429,
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            Some((
                                "DisruptionBudget",
                                "The disruption budget web-pdb needs 2 healthy pods and has 2 currently",
                            )),
                        ),
                        PodNow::Gone,
                    )
                }),
            ),
            (
                24,
                "eviction 404",
                "gone, no wait",
                Box::new(|| answered(status(404, "pods \"web-a\" not found", None), PodNow::Gone)),
            ),
            (
                25,
                "403 NamespaceTerminating, pod terminating / not",
                "re-read: wait for deletion / re-read: retry",
                Box::new(|| {
                    let forbidden = || {
                        status(
                            403,
                            "pods \"web-a\" is forbidden: unable to create new content in namespace default because it is being terminated",
                            Some((
                                "NamespaceTerminating",
                                "namespace default is being terminated",
                            )),
                        )
                    };
                    format!(
                        "{} / {}",
                        answered(forbidden(), PodNow::Present { terminating: true }),
                        answered(forbidden(), PodNow::Present { terminating: false })
                    )
                }),
            ),
            (
                26,
                "500 several PDBs / other 403",
                "stop, naming the PDBs / stop, naming the pod",
                Box::new(|| {
                    format!(
                        "{} / {}",
                        answered(
                            status(
                                500,
                                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
                                None
                            ),
                            PodNow::Gone
                        ),
                        answered(
                            status(403, "pdb disruptions allowed is negative", None),
                            PodNow::Gone
                        )
                    )
                }),
            ),
            // kubectl falls back to DELETE without the subresource; safedrain refuses (PDBs would be bypassed).
            (
                27,
                "discovery: policy/v1 / v1beta1 / absent",
                "policy/v1 / policy/v1beta1 / refused",
                Box::new(|| {
                    let v1 = version_offered(|_| (200, discovery(Some(("policy", "v1")))));
                    let beta = version_offered(|_| (200, discovery(Some(("policy", "v1beta1")))));
                    let none = version_offered(|_| (200, discovery(None)));
                    format!(
                        "{v1} / {beta} / {}",
                        if none.contains("offers no pods/eviction") {
                            "refused"
                        } else {
                            none.as_str()
                        }
                    )
                }),
            ),
            (
                28,
                "--grace-period -1 / 5",
                "no gracePeriodSeconds / 5",
                Box::new(|| {
                    let none = request_for(None);
                    let five = request_for(Some(5));
                    format!(
                        "{} / {}",
                        if none["body"]["deleteOptions"]
                            .get("gracePeriodSeconds")
                            .is_none()
                        {
                            "no gracePeriodSeconds".to_string()
                        } else {
                            none.to_string()
                        },
                        five["body"]["deleteOptions"]["gracePeriodSeconds"]
                    )
                }),
            ),
            // kubectl --disable-eviction deletes through PDBs; safedrain has no such switch.
            (
                29,
                "--disable-eviction (not offered)",
                "POST pods/eviction",
                Box::new(|| {
                    let r = request_for(None);
                    let uri = r["uri"].as_str().unwrap().to_string();
                    if uri.ends_with("/pods/web-a/eviction") && r["body"]["kind"] == "Eviction" {
                        "POST pods/eviction".into()
                    } else {
                        uri
                    }
                }),
            ),
            // safedrain's --dry-run is the plan, which reads a snapshot and writes nothing.
            (
                30,
                "--dry-run",
                "plan only",
                Box::new(|| {
                    let p = plan(
                        &snapshot(
                            "n1",
                            vec![node("n1", "4"), node("n2", "4")],
                            vec![web("web-a").pod()],
                            rs_owner(),
                        ),
                        &force(),
                    );
                    if p.verdict == Verdict::Drain && p.summary.evict == 1 {
                        "plan only".into()
                    } else {
                        format!("{:?}", p.verdict)
                    }
                }),
            ),
            (
                31,
                "--pod-selector app=web",
                "web-a listed, db-a not",
                Box::new(|| {
                    let sel = crate::drain::snapshot::parse_selector("app=web").unwrap();
                    let listed: Vec<String> = [
                        web("web-a").pod(),
                        P::new("default", "db-a", "n1")
                            .labels(&[("app", "db")])
                            .pod(),
                    ]
                    .iter()
                    .filter(|p| {
                        crate::drain::selector::label_selector_matches(
                            &sel,
                            p.metadata.labels.as_ref().unwrap(),
                        )
                    })
                    .map(|p| p.metadata.name.clone().unwrap())
                    .collect();
                    if listed == ["web-a"] {
                        "web-a listed, db-a not".into()
                    } else {
                        listed.join(",")
                    }
                }),
            ),
            // Server rows: what the plan expects of the answer it will get.
            (
                32,
                "server: Running pod, PDB allows 0 (minAvailable 2 of 3)",
                "evict [replicated] +pdb-budget",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(2), 0, 2, 3), || {
                        judged(web("web-a").pod(), rs_owner(), force())
                    })
                }),
            ),
            (
                33,
                "server: Pending / Succeeded pod, PDB allows 0",
                "evict [replicated] / delete [finished-pod]",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(2), 0, 2, 3), || {
                        format!(
                            "{} / {}",
                            judged(
                                web("web-a").phase("Pending").unready().pod(),
                                rs_owner(),
                                force()
                            ),
                            judged(web("web-a").phase("Succeeded").pod(), rs_owner(), force())
                        )
                    })
                }),
            ),
            (
                34,
                "server: PDB allows 1",
                "evict [replicated]",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(2), 1, 3, 3), || {
                        judged(web("web-a").pod(), rs_owner(), force())
                    })
                }),
            ),
            (
                35,
                "server: unready pod, current 2 = desired 2, allowed 0",
                "evict [replicated]",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(2), 0, 2, 3), || {
                        judged(web("web-a").unready().pod(), rs_owner(), force())
                    })
                }),
            ),
            (
                36,
                "server: same, the delete conflicts (429 still being processed)",
                "paced: retried as the budget frees",
                Box::new(|| {
                    answered(
                        status(
                            429,
                            "Cannot evict pod as it would violate the pod's disruption budget.",
                            Some((
                                "DisruptionBudget",
                                "The disruption budget web-pdb is still being processed by the server.",
                            )),
                        ),
                        PodNow::Gone,
                    )
                }),
            ),
            (
                37,
                "server: ready pod, current = desired (minAvailable 3 of 3)",
                "BLOCK [pdb-never-allows] +pdb-never-allows",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(3), 0, 3, 3), || {
                        judged(web("web-a").pod(), rs_owner(), force())
                    })
                }),
            ),
            (
                38,
                "server: terminating pod, allowed 0",
                "wait [terminating]",
                Box::new(|| {
                    with_pdb(pdb_with(IntOrString::Int(2), 0, 2, 2), || {
                        judged(terminating(web("web-a"), 1).pod(), rs_owner(), force())
                    })
                }),
            ),
            (
                39,
                "server: name in URL differs from body",
                "same name in URL and body",
                Box::new(|| {
                    let r = request_for(None);
                    let name = r["body"]["metadata"]["name"].as_str().unwrap().to_string();
                    if r["uri"]
                        .as_str()
                        .unwrap()
                        .ends_with(&format!("/pods/{name}/eviction"))
                    {
                        "same name in URL and body".into()
                    } else {
                        r.to_string()
                    }
                }),
            ),
            (
                40,
                "server: Pending pod, every delete conflicts (409)",
                "re-read: retry",
                Box::new(|| {
                    let pending = web("web-a").phase("Pending").pod();
                    answered(
                        status(
                            409,
                            "Operation cannot be fulfilled on pods \"web-a\": the object has been modified",
                            None,
                        ),
                        PodNow::of(Some(&pending), "uid-web-a"),
                    )
                }),
            ),
        ];
        assert_eq!(cases.len(), 40, "every reference case has a row");
        let mut wrong = Vec::new();
        for (n, situation, want, observe) in &cases {
            let got = observe();
            let ok = if want.starts_with("error: ") {
                got.starts_with(want)
            } else {
                got == *want
            };
            if !ok {
                wrong.push(format!("#{n} {situation}: want {want:?}, got {got:?}"));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }
}

#[test]
fn a_notready_node_shows_the_eviction_countdown_in_the_plan() {
    let mut down = node("n1", "4");
    down.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "Unknown".into();
    down.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: lifecycle::UNREACHABLE.into(),
        effect: "NoExecute".into(),
        time_added: Some(Time(jiff::Timestamp::now())),
        ..Default::default()
    }]);
    let pods = vec![
        P::new("default", "web-a", "n1")
            .labels(&[("app", "web")])
            .rs("web-1")
            .pod(),
    ];
    let s = snapshot(
        "n1",
        vec![down, node("n2", "4")],
        pods,
        vec![owner(
            "default",
            "ReplicaSet",
            "web-1",
            true,
            Some(workload("default", "Deployment", "web", 1, "web")),
        )],
    );
    let p = plan(&s, &DrainOptions::default());
    let n = p.not_ready.as_ref().expect("NotReady noted");
    assert_eq!(n.toleration_seconds, Some(300));
    assert!(
        n.evicts_in_seconds.is_some_and(|s| s > 290 && s <= 300),
        "{n:?}"
    );
    let text = p.render();
    assert!(
        text.contains(
            "note: node/n1 is NotReady (taint node.kubernetes.io/unreachable:NoExecute since"
        ),
        "{text}"
    );
    assert!(text.contains("does not wait"), "{text}");
}
