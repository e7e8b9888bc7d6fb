//! The skew engine and planner over hand-built snapshots: the policy page's
//! own examples, the exact boundaries, the before-1.25 windows, HA narrowing.

use super::*;
use crate::version::MinorVersion;

fn m(minor: u64) -> MinorVersion {
    MinorVersion::new(1, minor)
}

/// A cluster builder: `apiserver("cp1", "v1.31.2")`, `node("w1", "v1.28.0")`...
#[derive(Default)]
struct Cluster(ClusterVersions);

impl Cluster {
    fn new() -> Self {
        Cluster(ClusterVersions {
            control_plane_visible: true,
            ..Default::default()
        })
    }
    fn managed(served: &str) -> Self {
        let o = Observed::from_version(Component::KubeApiserver, None, served, "/version");
        Cluster(ClusterVersions {
            served: Some(o.clone()),
            control_plane_visible: false,
            components: vec![o],
            ..Default::default()
        })
    }
    fn image(mut self, c: Component, node: &str, tag: &str) -> Self {
        let image = format!("registry.k8s.io/{}:{tag}", c.name());
        self.0
            .components
            .push(Observed::from_image(c, Some(node), &image, "pod"));
        if c == Component::KubeApiserver {
            self.0.control_plane_nodes.push(node.to_string());
        }
        self
    }
    fn apiserver(self, node: &str, tag: &str) -> Self {
        self.image(Component::KubeApiserver, node, tag)
    }
    /// A control-plane node with apiserver, controller-manager, scheduler and kubelet at `tag`.
    fn control_plane(self, node: &str, tag: &str) -> Self {
        self.apiserver(node, tag)
            .image(Component::KubeControllerManager, node, tag)
            .image(Component::KubeScheduler, node, tag)
            .kubelet(node, tag)
    }
    fn kubelet(mut self, node: &str, v: &str) -> Self {
        self.0.components.push(Observed::from_version(
            Component::Kubelet,
            Some(node),
            v,
            "node",
        ));
        self
    }
    fn proxy(self, node: &str, tag: &str) -> Self {
        self.image(Component::KubeProxy, node, tag)
    }
    /// A worker with its kubelet and kube-proxy at the same version.
    fn worker(self, node: &str, v: &str) -> Self {
        self.kubelet(node, v).proxy(node, v)
    }
    fn kubectl(mut self, v: &str) -> Self {
        self.0.components.push(Observed::from_version(
            Component::Kubectl,
            None,
            v,
            "kubectl",
        ));
        self
    }
    fn report(&self) -> SkewReport {
        evaluate(&self.0)
    }
}

fn row<'a>(r: &'a SkewReport, c: Component, node: Option<&str>) -> &'a Check {
    r.components
        .iter()
        .find(|k| k.component == c && k.node.as_deref() == node)
        .unwrap_or_else(|| panic!("no row for {c} on {node:?}: {:#?}", r.components))
}

fn verdict(r: &SkewReport, c: Component, node: Option<&str>) -> Verdict {
    row(r, c, node).verdict
}

fn range(a: u64, b: u64) -> Option<AllowedRange> {
    Some(AllowedRange {
        oldest: m(a),
        newest: m(b),
    })
}

#[test]
fn rule_table_is_well_formed() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), RULES.len(), "rule ids are unique");
    for r in RULES {
        assert!(!r.policy.is_empty() && !r.summary.is_empty());
        assert_eq!(r.source, rules::POLICY_SOURCE);
        assert!(!r.components.is_empty());
    }
    // Every policed component has a rule; etcd is informational.
    for c in Component::ALL {
        assert_eq!(rules_for(c).next().is_none(), c == Component::Etcd, "{c}");
    }
}

// The policy page's examples, with currentVersion = 1.31.

#[test]
fn policy_example_kubelet_single_apiserver() {
    // "kube-apiserver is at 1.31; kubelet is supported at 1.31, 1.30, 1.29, and 1.28"
    let c = Cluster::new()
        .control_plane("cp1", "v1.31.0")
        .kubelet("a", "v1.30.0")
        .kubelet("b", "v1.29.5")
        .kubelet("c", "v1.28.9")
        .kubelet("d", "v1.27.16")
        .kubelet("e", "v1.32.0");
    let r = c.report();
    for n in ["cp1", "a", "b", "c"] {
        assert_ne!(
            verdict(&r, Component::Kubelet, Some(n)),
            Verdict::Violation,
            "{n}"
        );
        assert_eq!(row(&r, Component::Kubelet, Some(n)).allowed, range(28, 31));
    }
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("d")),
        Verdict::Violation
    );
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("e")),
        Verdict::Violation
    );
    let d = &row(&r, Component::Kubelet, Some("d")).reason;
    assert!(
        d.contains("4 minors older than the newest kube-apiserver (v1.31)"),
        "{d}"
    );
    let e = &row(&r, Component::Kubelet, Some("e")).reason;
    assert!(
        e.contains("newer than the oldest kube-apiserver (v1.31)"),
        "{e}"
    );
    let rules: Vec<_> = r
        .violations
        .iter()
        .map(|v| (v.node.as_deref(), v.rule))
        .collect();
    assert_eq!(
        rules,
        [
            (Some("d"), "kubelet-vs-apiserver"),
            (Some("e"), "kubelet-vs-apiserver")
        ]
    );
}

#[test]
fn policy_example_kubelet_ha_narrowing() {
    // "kube-apiserver instances are at 1.31 and 1.30; kubelet is supported at
    // 1.30, 1.29, and 1.28 (1.31 is not supported ...)"
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.1")
        .apiserver("cp2", "v1.30.4")
        .kubelet("a", "v1.31.1")
        .kubelet("b", "v1.30.0")
        .kubelet("c", "v1.28.0")
        .kubelet("d", "v1.27.0")
        .report();
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("a")),
        Verdict::Violation
    );
    assert_eq!(
        row(&r, Component::Kubelet, Some("a")).allowed,
        range(28, 30)
    );
    assert_eq!(verdict(&r, Component::Kubelet, Some("b")), Verdict::Ok);
    assert_ne!(
        verdict(&r, Component::Kubelet, Some("c")),
        Verdict::Violation
    );
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("d")),
        Verdict::Violation
    );
    // The apiservers themselves are within one minor; the older one is told
    // the upgrade is half done.
    assert_eq!(
        verdict(&r, Component::KubeApiserver, Some("cp1")),
        Verdict::Ok
    );
    assert_eq!(
        verdict(&r, Component::KubeApiserver, Some("cp2")),
        Verdict::Warning
    );
    assert!(
        r.violations
            .iter()
            .all(|v| v.rule == "kubelet-vs-apiserver")
    );
}

#[test]
fn policy_example_controllers() {
    // Single apiserver at 1.31: controllers at 1.31 and 1.30.
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.0")
        .image(Component::KubeControllerManager, "cp1", "v1.30.2")
        .image(Component::KubeScheduler, "cp1", "v1.31.0")
        .image(Component::CloudControllerManager, "cp1", "v1.29.0")
        .report();
    assert_eq!(
        verdict(&r, Component::KubeControllerManager, Some("cp1")),
        Verdict::Ok
    );
    assert_eq!(
        verdict(&r, Component::KubeScheduler, Some("cp1")),
        Verdict::Ok
    );
    assert_eq!(
        row(&r, Component::KubeScheduler, Some("cp1")).allowed,
        range(30, 31)
    );
    assert_eq!(
        verdict(&r, Component::CloudControllerManager, Some("cp1")),
        Verdict::Violation
    );
    // HA at 1.31 and 1.30, reached through a load balancer (no apiserver on
    // their node): only 1.30.
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.0")
        .apiserver("cp2", "v1.30.0")
        .image(Component::CloudControllerManager, "infra1", "v1.31.0")
        .image(Component::CloudControllerManager, "infra2", "v1.30.0")
        .report();
    assert_eq!(
        verdict(&r, Component::CloudControllerManager, Some("infra1")),
        Verdict::Violation
    );
    let ok = row(&r, Component::CloudControllerManager, Some("infra2"));
    assert_eq!(ok.allowed, range(30, 30));
    assert_eq!(ok.verdict, Verdict::Ok);
    assert_eq!(r.violations[0].rule, "controllers-vs-apiserver");
    assert!(
        r.violations[0]
            .message
            .contains("newer than the oldest kube-apiserver (v1.30)"),
        "{}",
        r.violations[0].message
    );
    // kubeadm points controllers at the apiserver on their own node: mid-way
    // through an HA upgrade, cp1's new controllers talk to cp1's new apiserver.
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.0")
        .apiserver("cp2", "v1.30.0")
        .image(Component::KubeControllerManager, "cp1", "v1.31.0")
        .image(Component::KubeScheduler, "cp2", "v1.31.0")
        .image(Component::KubeControllerManager, "cp2", "v1.30.0")
        .report();
    let kcm = row(&r, Component::KubeControllerManager, Some("cp1"));
    assert_eq!((kcm.verdict, kcm.allowed), (Verdict::Ok, range(30, 31)));
    assert_eq!(
        verdict(&r, Component::KubeControllerManager, Some("cp2")),
        Verdict::Ok
    );
    let sched = row(&r, Component::KubeScheduler, Some("cp2"));
    assert_eq!(sched.verdict, Verdict::Violation);
    assert!(
        sched
            .reason
            .contains("newer than the kube-apiserver on its node (v1.30)"),
        "{}",
        sched.reason
    );
}

#[test]
fn policy_example_kubectl() {
    // Single apiserver at 1.31: kubectl 1.32, 1.31, 1.30.
    for (v, ok) in [
        ("v1.32.0", true),
        ("v1.31.0", true),
        ("v1.30.9", true),
        ("v1.33.0", false),
        ("v1.29.0", false),
    ] {
        let r = Cluster::new()
            .apiserver("cp1", "v1.31.3")
            .kubectl(v)
            .report();
        let got = verdict(&r, Component::Kubectl, None);
        assert_eq!(got == Verdict::Ok, ok, "kubectl {v}: {got}");
        assert_eq!(row(&r, Component::Kubectl, None).allowed, range(30, 32));
    }
    // HA at 1.31 and 1.30: only 1.31 and 1.30.
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.0")
        .apiserver("cp2", "v1.30.0")
        .kubectl("v1.32.0")
        .report();
    assert_eq!(verdict(&r, Component::Kubectl, None), Verdict::Violation);
    assert_eq!(row(&r, Component::Kubectl, None).allowed, range(30, 31));
    assert_eq!(r.violations[0].rule, "kubectl-vs-apiserver");
    assert_eq!(r.violations[0].node, None);
}

#[test]
fn ha_apiservers_two_minors_apart_violate() {
    let r = Cluster::new()
        .apiserver("cp1", "v1.31.0")
        .apiserver("cp2", "v1.29.0")
        .apiserver("cp3", "v1.30.0")
        .report();
    assert_eq!(
        verdict(&r, Component::KubeApiserver, Some("cp1")),
        Verdict::Violation
    );
    assert_eq!(
        verdict(&r, Component::KubeApiserver, Some("cp2")),
        Verdict::Violation
    );
    // The middle one is within one minor of both.
    assert_ne!(
        verdict(&r, Component::KubeApiserver, Some("cp3")),
        Verdict::Violation
    );
    let msg = &r.violations[0].message;
    assert!(msg.contains("v1.29 to v1.31, 2 minors apart"), "{msg}");
    assert!(r.violations.iter().all(|v| v.rule == "apiserver-ha"));
}

#[test]
fn n_minus_3_and_n_minus_2_boundaries() {
    // From 1.28 on, a kubelet 3 behind is fine; 4 is not.
    let ok = |api: &str, kubelet: &str| {
        let r = Cluster::new()
            .apiserver("cp", api)
            .kubelet("n", kubelet)
            .report();
        verdict(&r, Component::Kubelet, Some("n")) != Verdict::Violation
    };
    assert!(ok("v1.28.0", "v1.25.0"), "1.28 control planes / 1.25 nodes");
    assert!(
        !ok("v1.28.0", "v1.24.17"),
        "a 1.24 kubelet may only be 2 behind"
    );
    assert!(ok("v1.26.0", "v1.24.0"), "2 behind, before 1.25");
    assert!(
        !ok("v1.27.0", "v1.24.0"),
        "3 behind is too many for a kubelet < 1.25"
    );
    assert!(ok("v1.27.0", "v1.25.0"));
    assert!(ok("v1.35.0", "v1.32.0"));
    assert!(!ok("v1.35.0", "v1.31.0"));
    assert!(!ok("v1.25.0", "v1.22.0"));
    assert!(ok("v1.25.0", "v1.23.0"));
    // Allowed ranges show the narrowing.
    let r = Cluster::new()
        .apiserver("cp", "v1.27.0")
        .kubelet("n", "v1.24.0")
        .report();
    assert_eq!(
        row(&r, Component::Kubelet, Some("n")).allowed,
        range(25, 27)
    );
    let msg = &row(&r, Component::Kubelet, Some("n")).reason;
    assert!(
        msg.contains("at most 2 allowed for kubelet older than v1.25"),
        "{msg}"
    );
    let r = Cluster::new()
        .apiserver("cp", "v1.24.0")
        .kubelet("n", "v1.22.0")
        .report();
    assert_eq!(
        row(&r, Component::Kubelet, Some("n")).allowed,
        range(22, 24)
    );
}

#[test]
fn kube_proxy_against_apiserver_and_its_kubelet() {
    let r = Cluster::new()
        .apiserver("cp", "v1.31.0")
        // 3 older than the kubelet on its node: fine from 1.25.
        .kubelet("a", "v1.31.0")
        .proxy("a", "v1.28.0")
        // Newer than the apiserver.
        .kubelet("b", "v1.31.0")
        .proxy("b", "v1.32.0")
        // Within the apiserver range, and its kubelet (also in range) is 3 older: fine.
        .kubelet("c", "v1.28.0")
        .proxy("c", "v1.31.0")
        // kube-proxy 4 away from the apiserver.
        .kubelet("d", "v1.28.0")
        .proxy("d", "v1.27.0")
        .report();
    assert_ne!(
        verdict(&r, Component::KubeProxy, Some("a")),
        Verdict::Violation
    );
    assert_eq!(
        verdict(&r, Component::KubeProxy, Some("b")),
        Verdict::Violation
    );
    assert_eq!(verdict(&r, Component::KubeProxy, Some("c")), Verdict::Ok);
    assert_eq!(
        verdict(&r, Component::KubeProxy, Some("d")),
        Verdict::Violation
    );
    assert_eq!(
        row(&r, Component::KubeProxy, Some("c")).allowed,
        range(28, 31)
    );

    // Before 1.25 the kubelet window is 2 as well: a 1.22 kube-proxy on a
    // 1.25 kubelet is 3 away.
    let r = Cluster::new()
        .apiserver("cp", "v1.24.0")
        .kubelet("a", "v1.24.0")
        .proxy("a", "v1.22.0")
        .report();
    assert_ne!(
        verdict(&r, Component::KubeProxy, Some("a")),
        Verdict::Violation
    );
    let r = Cluster::new()
        .apiserver("cp", "v1.25.0")
        .kubelet("a", "v1.25.0")
        .proxy("a", "v1.22.0")
        .report();
    let check = row(&r, Component::KubeProxy, Some("a"));
    assert_eq!(check.verdict, Verdict::Violation);
    let rules: Vec<&str> = r.violations.iter().map(|v| v.rule).collect();
    assert_eq!(rules, ["kube-proxy-vs-apiserver", "kube-proxy-vs-kubelet"]);
    assert!(
        check
            .reason
            .contains("older than the kubelet on its node (v1.25)"),
        "{}",
        check.reason
    );
}

#[test]
fn kube_proxy_newer_than_its_kubelet_by_too_much() {
    // The apiserver range alone (1.28-1.31) would allow 1.31; the kubelet
    // rule matters when the kubelet is far behind (possible under 1.25 rules
    // only in theory, so build it with a kubelet that is itself violating).
    let r = Cluster::new()
        .apiserver("cp", "v1.31.0")
        .kubelet("a", "v1.27.0")
        .proxy("a", "v1.31.0")
        .report();
    assert_eq!(
        verdict(&r, Component::KubeProxy, Some("a")),
        Verdict::Violation
    );
    assert_eq!(r.violations.last().unwrap().rule, "kube-proxy-vs-kubelet");
    assert!(
        r.violations
            .last()
            .unwrap()
            .message
            .contains("4 minors newer than the kubelet")
    );
}

#[test]
fn warnings_name_what_blocks_the_next_control_plane_upgrade() {
    let r = Cluster::new()
        .control_plane("cp1", "v1.31.2")
        .worker("w1", "v1.28.15")
        .worker("w2", "v1.29.0")
        .report();
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("w1")),
        Verdict::Warning
    );
    assert_eq!(
        verdict(&r, Component::KubeProxy, Some("w1")),
        Verdict::Warning
    );
    assert_eq!(verdict(&r, Component::Kubelet, Some("w2")), Verdict::Ok);
    let warned: Vec<_> = r
        .warnings
        .iter()
        .map(|w| (w.component, w.node.as_deref(), w.rule))
        .collect();
    assert_eq!(
        warned,
        [
            (Component::Kubelet, Some("w1"), "kubelet-vs-apiserver"),
            (Component::KubeProxy, Some("w1"), "kube-proxy-vs-apiserver"),
        ]
    );
    assert!(
        r.warnings[0]
            .message
            .contains("blocks the next control-plane upgrade to v1.32")
    );
    // Before 1.25, two behind is the edge.
    let r = Cluster::new()
        .apiserver("cp", "v1.26.0")
        .kubelet("n", "v1.24.0")
        .report();
    assert_eq!(verdict(&r, Component::Kubelet, Some("n")), Verdict::Warning);
    // A 1.25 kubelet under a 1.27 apiserver is 2 behind but blocks 1.28? No:
    // 1.28 allows 1.25 (n-3 from 1.25 on).
    let r = Cluster::new()
        .apiserver("cp", "v1.27.0")
        .kubelet("n", "v1.25.0")
        .report();
    assert_eq!(verdict(&r, Component::Kubelet, Some("n")), Verdict::Ok);
}

#[test]
fn vendor_suffixes_compare_by_minor() {
    let r = Cluster::new()
        .apiserver("cp", "v1.31.2-eks-1a2b3c")
        .kubelet("a", "v1.31.0-eks-a737599")
        .kubelet("b", "v1.29.1-gke.1589018")
        .kubelet("c", "v1.31.2+k3s1")
        .report();
    assert!(r.violations.is_empty(), "{:#?}", r.violations);
    assert_eq!(
        row(&r, Component::Kubelet, Some("b")).version,
        "v1.29.1-gke.1589018"
    );
}

#[test]
fn unknown_versions_are_said_so() {
    let mut c = Cluster::new().apiserver("cp", "v1.31.0");
    c.0.components.push(Observed::from_image(
        Component::KubeProxy,
        Some("a"),
        "registry.k8s.io/kube-proxy@sha256:abcd",
        "pod",
    ));
    c = c.kubelet("b", "garbage");
    let r = c.report();
    let proxy = row(&r, Component::KubeProxy, Some("a"));
    assert_eq!(proxy.verdict, Verdict::Unknown);
    assert!(proxy.reason.contains("digest only"), "{}", proxy.reason);
    let kubelet = row(&r, Component::Kubelet, Some("b"));
    assert_eq!(kubelet.verdict, Verdict::Unknown);
    assert!(kubelet.reason.contains("\"garbage\""), "{}", kubelet.reason);
    assert!(r.violations.is_empty());
    // No apiserver at all: everything is unknown, said once in the notes.
    let r = Cluster::new().kubelet("a", "v1.31.0").report();
    assert_eq!(verdict(&r, Component::Kubelet, Some("a")), Verdict::Unknown);
    assert!(
        r.notes
            .iter()
            .any(|n| n.contains("no kube-apiserver version"))
    );
}

#[test]
fn etcd_is_informational() {
    let r = Cluster::new()
        .apiserver("cp", "v1.31.0")
        .image(Component::Etcd, "cp", "3.5.15-0")
        .report();
    let etcd = row(&r, Component::Etcd, Some("cp"));
    assert_eq!(etcd.verdict, Verdict::Info);
    assert_eq!(etcd.version, "3.5.15-0");
    assert!(r.violations.is_empty());
}

#[test]
fn managed_cluster_checks_what_it_can() {
    let r = Cluster::managed("v1.30.4-eks-a737599")
        .worker("ip-10-0-1-1", "v1.26.1-eks-1234")
        .kubectl("v1.31.0")
        .report();
    assert!(!r.apiserver.control_plane_visible);
    assert_eq!(r.apiserver.served.as_deref(), Some("v1.30.4-eks-a737599"));
    assert!(r.notes.iter().any(|n| n.contains("not visible")));
    assert_eq!(
        verdict(&r, Component::Kubelet, Some("ip-10-0-1-1")),
        Verdict::Violation
    );
    assert_eq!(verdict(&r, Component::Kubectl, None), Verdict::Ok);
    assert_eq!(verdict(&r, Component::KubeApiserver, None), Verdict::Ok);
}

#[test]
fn different_majors_violate() {
    let r = Cluster::new()
        .apiserver("cp", "v1.31.0")
        .kubectl("v2.0.0")
        .report();
    assert_eq!(verdict(&r, Component::Kubectl, None), Verdict::Violation);
    assert!(r.violations[0].message.contains("major version 2 differs"));
}

#[test]
fn report_serialises_with_the_documented_fields() {
    let r = Cluster::new()
        .control_plane("cp1", "v1.31.2")
        .worker("w1", "v1.27.3")
        .report();
    let json = serde_json::to_value(&r).unwrap();
    let v = &json["violations"][0];
    assert_eq!(v["component"], "kubelet");
    assert_eq!(v["node"], "w1");
    assert_eq!(v["version"], "v1.27.3");
    assert_eq!(v["rule"], "kubelet-vs-apiserver");
    assert!(v["message"].as_str().unwrap().contains("4 minors older"));
    let c = &json["components"][0];
    assert_eq!(c["component"], "kube-apiserver");
    assert_eq!(c["allowed"]["oldest"], "v1.30");
    assert_eq!(c["allowed"]["newest"], "v1.32");
    assert_eq!(c["verdict"], "ok");
    assert_eq!(json["apiserver"]["oldest"], "v1.31");
    // kubectl and the DaemonSet fallback are not node-bound: null, not absent.
    let r = Cluster::new()
        .apiserver("cp", "v1.31.0")
        .kubectl("v1.28.0")
        .report();
    let json = serde_json::to_value(&r).unwrap();
    assert!(json["violations"][0]["node"].is_null());
}

// Planner.

fn hop_steps(hop: &Hop) -> Vec<(StepAction, Option<&str>, Option<&str>)> {
    hop.steps
        .iter()
        .map(|s| (s.action, s.node.as_deref(), s.command.as_deref()))
        .collect()
}

#[test]
fn plan_one_minor_at_a_time_in_order() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.30.4")
        .control_plane("cp2", "v1.30.4")
        .worker("w2", "v1.30.4")
        .worker("w1", "v1.30.4")
        .kubectl("v1.30.0");
    let p = plan(&c.0, &Target::parse("v1.32").unwrap()).unwrap();
    assert_eq!(p.from, m(30));
    assert_eq!(p.hops.len(), 2);
    assert_eq!((p.hops[0].from, p.hops[0].to), (m(30), m(31)));
    assert_eq!(p.hops[0].target, "newest patch of v1.31");
    assert_eq!(p.hops[0].target_version, None);
    assert_eq!(p.hops[1].target, "v1.32.0");
    use StepAction::*;
    assert_eq!(
        hop_steps(&p.hops[1]),
        [
            (
                UpgradeFirstControlPlane,
                Some("cp1"),
                Some("kubeadm upgrade apply v1.32.0")
            ),
            (
                UpgradeOtherControlPlane,
                Some("cp2"),
                Some("kubeadm upgrade node")
            ),
            (UpgradeWorker, Some("w1"), Some("kubeadm upgrade node")),
            (UpgradeWorker, Some("w2"), Some("kubeadm upgrade node")),
        ]
    );
    assert_eq!(
        p.hops[0].steps[0].command.as_deref(),
        Some("kubeadm upgrade apply v1.31.<newest patch>")
    );
    assert!(p.hops.iter().all(|h| h.preconditions.is_empty()));
    // kubectl 1.30 is fine after the first hop, two behind after the second.
    assert!(p.hops[0].projected.violations.is_empty());
    assert_eq!(p.hops[0].projected.warnings.len(), 0);
    let v = &p.hops[1].projected.violations;
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].component, Component::Kubectl);
}

#[test]
fn the_plans_first_control_plane_is_the_one_the_rollout_takes_first() {
    // The newest kube-apiserver goes first (an interrupted run applied there),
    // by the same rule `kubectl upgrade-node --all` orders its waves by.
    let c = Cluster::new()
        .control_plane("cp1", "v1.30.2")
        .control_plane("cp2", "v1.30.4");
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    let first: Vec<_> = p.hops[0]
        .steps
        .iter()
        .filter(|s| s.action == StepAction::UpgradeFirstControlPlane)
        .map(|s| s.node.as_deref())
        .collect();
    assert_eq!(first, [Some("cp2")]);
    let cp1 = crate::upgrade::preflight::NodeFacts {
        name: "cp1".into(),
        control_plane: true,
        kubelet_version: crate::version::Release::parse_reported("v1.30.2"),
        ..Default::default()
    };
    let cp2 = crate::upgrade::preflight::NodeFacts {
        name: "cp2".into(),
        kubelet_version: crate::version::Release::parse_reported("v1.30.4"),
        ..cp1.clone()
    };
    assert_eq!(crate::upgrade::rolling::waves(&[&cp1, &cp2], 1)[0], ["cp2"]);
}

#[test]
fn plan_names_lagging_nodes_as_preconditions() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.31.2")
        .worker("old", "v1.28.3")
        .worker("new", "v1.31.2");
    let p = plan(&c.0, &Target::parse("v1.32.3").unwrap()).unwrap();
    assert_eq!(p.hops.len(), 1);
    let hop = &p.hops[0];
    assert_eq!(hop.target, "v1.32.3");
    let pre: Vec<_> = hop
        .preconditions
        .iter()
        .map(|p| (p.rule, p.nodes.clone()))
        .collect();
    assert_eq!(
        pre,
        [
            ("kubelet-vs-apiserver", vec!["old".to_string()]),
            ("kube-proxy-vs-apiserver", vec!["old".to_string()]),
        ]
    );
    use StepAction::*;
    assert_eq!(
        hop_steps(hop),
        [
            (
                UpgradeLaggingNode,
                Some("old"),
                Some("kubeadm upgrade node")
            ),
            (
                UpgradeFirstControlPlane,
                Some("cp1"),
                Some("kubeadm upgrade apply v1.32.3")
            ),
            (UpgradeWorker, Some("new"), Some("kubeadm upgrade node")),
            (UpgradeWorker, Some("old"), Some("kubeadm upgrade node")),
        ]
    );
    assert!(hop.projected.violations.is_empty());
}

#[test]
fn plan_finishes_a_half_done_ha_upgrade() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.31.0")
        .control_plane("cp2", "v1.30.5")
        .worker("w1", "v1.30.5");
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    assert_eq!(p.hops.len(), 1);
    use StepAction::*;
    // cp1 already ran apply; cp2 joins with `upgrade node`.
    assert_eq!(
        hop_steps(&p.hops[0]),
        [
            (
                UpgradeOtherControlPlane,
                Some("cp2"),
                Some("kubeadm upgrade node")
            ),
            (UpgradeWorker, Some("w1"), Some("kubeadm upgrade node")),
        ]
    );
    assert!(
        p.notes
            .iter()
            .any(|n| n.contains("half") || n.contains("finishes"))
    );
}

#[test]
fn plan_patch_only_and_nothing_to_do() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.31.2")
        .worker("w1", "v1.31.2");
    let p = plan(&c.0, &Target::parse("v1.31.5").unwrap()).unwrap();
    assert_eq!(p.hops.len(), 1);
    assert_eq!((p.hops[0].from, p.hops[0].to), (m(31), m(31)));
    assert_eq!(
        p.hops[0].steps[0].command.as_deref(),
        Some("kubeadm upgrade apply v1.31.5")
    );
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    assert!(p.hops.is_empty());
    assert!(p.notes.iter().any(|n| n.contains("already runs v1.31.2")));
}

#[test]
fn plan_refuses_downgrades_and_says_what_is_allowed() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.31.2")
        .worker("w1", "v1.31.2");
    for target in ["v1.30", "v1.29.4", "v1.31.1"] {
        let err = plan(&c.0, &Target::parse(target).unwrap()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, PlanError::Downgrade { .. }), "{target}");
        assert!(
            text.contains("older than the control plane (v1.31.2)"),
            "{text}"
        );
        assert!(text.contains("v1.32, then v1.33"), "{text}");
        assert!(text.contains("etcd snapshot"), "{text}");
    }
    let err = plan(&c.0, &Target::parse("v2.0").unwrap()).unwrap_err();
    assert!(matches!(err, PlanError::MajorChange { .. }), "{err}");
    assert_eq!(
        plan(
            &ClusterVersions::default(),
            &Target::parse("v1.31").unwrap()
        )
        .unwrap_err(),
        PlanError::NoApiserverVersion
    );
}

#[test]
fn plan_on_a_managed_cluster() {
    let c = Cluster::managed("v1.30.4-eks-a737599").worker("n1", "v1.30.4");
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    use StepAction::*;
    assert_eq!(
        hop_steps(&p.hops[0]),
        [
            (UpgradeManagedControlPlane, None, None),
            (UpgradeWorker, Some("n1"), Some("kubeadm upgrade node")),
        ]
    );
}

#[test]
fn plan_serialises() {
    let c = Cluster::new()
        .control_plane("cp1", "v1.30.4")
        .worker("w1", "v1.27.0");
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    insta::assert_json_snapshot!("plan_two_hops_with_lagging_node", p);
}

#[test]
fn plan_never_takes_a_newer_instance_back() {
    // Apiservers two minors apart (a violation): the first hop names the
    // misaligned ones and does not "upgrade" the v1.31 node down to v1.30.
    let c = Cluster::new()
        .control_plane("cp1", "v1.29.4")
        .control_plane("cp2", "v1.31.0")
        .worker("w1", "v1.31.0");
    let p = plan(&c.0, &Target::parse("v1.31").unwrap()).unwrap();
    assert_eq!(p.hops.len(), 2);
    let first = &p.hops[0];
    assert_eq!((first.from, first.to), (m(29), m(30)));
    let ha = first
        .preconditions
        .iter()
        .find(|p| p.rule == "apiserver-ha")
        .expect("HA alignment is a precondition");
    assert_eq!(ha.nodes, ["cp2"]);
    use StepAction::*;
    assert_eq!(
        hop_steps(first),
        [(
            UpgradeFirstControlPlane,
            Some("cp1"),
            Some("kubeadm upgrade apply v1.30.<newest patch>")
        )]
    );
    // After the last hop everything is at v1.31 and nothing violates.
    assert_eq!(
        hop_steps(&p.hops[1]),
        [(
            UpgradeOtherControlPlane,
            Some("cp1"),
            Some("kubeadm upgrade node")
        )]
    );
    assert!(
        p.hops[1].projected.violations.is_empty(),
        "{:#?}",
        p.hops[1].projected
    );
}
