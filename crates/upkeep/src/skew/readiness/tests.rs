use std::io::Write as _;

use base64::Engine as _;
use jiff::civil::date;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

use super::apis::{helm_release_uses, manifest_heads, parse_deprecated_metrics, uses_in_object};
use super::*;
use crate::skew::{Observed, Target, plan};

fn m(minor: u64) -> MinorVersion {
    MinorVersion::new(1, minor)
}

/// A kubeadm cluster at `version`, etcd at `etcd`, two nodes.
fn cluster(version: &str, etcd: &str) -> ClusterVersions {
    let image = |c: Component, node: &str, tag: &str| {
        Observed::from_image(c, Some(node), &format!("registry.k8s.io/{c}:{tag}"), "pod")
    };
    ClusterVersions {
        served: None,
        control_plane_visible: true,
        control_plane_nodes: vec!["cp".into()],
        components: vec![
            image(Component::KubeApiserver, "cp", version),
            image(Component::KubeControllerManager, "cp", version),
            image(Component::Etcd, "cp", etcd),
            Observed::from_version(Component::Kubelet, Some("cp"), version, "node"),
            Observed::from_version(Component::Kubelet, Some("w1"), version, "node"),
        ],
        ..Default::default()
    }
}

fn settings(as_of: Date) -> Settings {
    Settings {
        as_of,
        now: "2026-12-05T00:00:00Z".parse().unwrap(),
        upgrade_days: 0,
    }
}

fn run(snapshot: &ReadinessSnapshot, to: &str, as_of: Date) -> Readiness {
    let p = plan(&snapshot.versions, &Target::parse(to).unwrap()).unwrap();
    evaluate(
        snapshot,
        &p,
        &Removals::embedded(),
        &Calendar::embedded(),
        &settings(as_of),
    )
}

fn rules(r: &Readiness, hop: usize) -> Vec<&'static str> {
    r.hops[hop].findings.iter().map(|f| f.rule).collect()
}

#[test]
fn the_removal_table_cites_its_sources_and_knows_the_landmark_removals() {
    let t = Removals::embedded();
    assert!(t.removals.len() > 40);
    for r in &t.removals {
        assert!(r.removed_in >= m(16), "{r:?}");
        assert!(
            r.source.contains("deprecation-guide") || r.source.contains("CHANGELOG"),
            "{r:?}"
        );
    }
    let pdb = t.find("policy/v1beta1", "PodDisruptionBudget").unwrap();
    assert_eq!(pdb.removed_in, m(25));
    assert_eq!(pdb.replacement, "policy/v1");
    let fs = t
        .find("flowcontrol.apiserver.k8s.io/v1beta3", "FlowSchema")
        .unwrap();
    assert_eq!(fs.removed_in, m(32));
    assert!(!fs.namespaced);
    assert!(t.find("policy/v1", "PodDisruptionBudget").is_none());
    assert!(Removals::from_json(r#"{"schema":2,"removals":[]}"#).is_err());
}

#[test]
fn last_applied_and_managed_fields_are_read() {
    let t = Removals::embedded();
    let mut meta = ObjectMeta {
        name: Some("web".into()),
        namespace: Some("default".into()),
        ..Default::default()
    };
    meta.annotations = Some(
        [(
            apis::LAST_APPLIED.to_string(),
            r#"{"apiVersion":"policy/v1beta1","kind":"PodDisruptionBudget"}"#.to_string(),
        )]
        .into(),
    );
    meta.managed_fields = Some(vec![
        ManagedFieldsEntry {
            api_version: Some("policy/v1beta1".into()),
            manager: Some("legacy-operator".into()),
            operation: Some("Update".into()),
            ..Default::default()
        },
        ManagedFieldsEntry {
            api_version: Some("policy/v1".into()),
            manager: Some("kubectl".into()),
            ..Default::default()
        },
    ]);
    let uses = uses_in_object(&meta, "PodDisruptionBudget", &t);
    assert_eq!(uses.len(), 2, "{uses:?}");
    assert_eq!(uses[0].source, format!("annotation {}", apis::LAST_APPLIED));
    assert_eq!(
        uses[1].source,
        "metadata.managedFields (manager legacy-operator, Update)"
    );
    assert!(uses.iter().all(|u| u.name == "web"
        && u.namespace.as_deref() == Some("default")
        && u.api_version == "policy/v1beta1"));
    // A version the table does not list is not kept.
    assert!(uses_in_object(&meta, "Deployment", &t).len() == 1);
}

fn helm_payload(json: &str, gzip: bool) -> Vec<u8> {
    let raw = if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(json.as_bytes()).unwrap();
        enc.finish().unwrap()
    } else {
        json.as_bytes().to_vec()
    };
    base64::engine::general_purpose::STANDARD
        .encode(raw)
        .into_bytes()
}

#[test]
fn helm_release_secrets_name_release_and_revision() {
    let manifest = "---\n# Source: t/templates/fs.yaml\napiVersion: flowcontrol.apiserver.k8s.io/v1beta3\nkind: FlowSchema\nmetadata:\n  name: batch\n  labels:\n    name: not-this\nspec: {}\n---\n# Source: t/templates/pdb.yaml\napiVersion: policy/v1beta1\nkind: PodDisruptionBudget\nmetadata:\n  name: budget\n  namespace: apps\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n";
    let release = serde_json::json!({"name": "traffic", "namespace": "default", "version": 3, "manifest": manifest});
    for gzip in [true, false] {
        let uses = helm_release_uses(
            "default",
            "sh.helm.release.v1.traffic.v3",
            &helm_payload(&release.to_string(), gzip),
            &Removals::embedded(),
        )
        .unwrap();
        assert_eq!(uses.len(), 2, "{uses:?}");
        assert_eq!(uses[0].kind, "FlowSchema");
        assert_eq!(uses[0].name, "batch");
        assert_eq!(uses[0].namespace, None, "FlowSchema is cluster-scoped");
        assert_eq!(
            uses[0].source,
            "Helm release traffic revision 3 (Secret default/sh.helm.release.v1.traffic.v3)"
        );
        assert_eq!(uses[1].name, "budget");
        assert_eq!(uses[1].namespace.as_deref(), Some("apps"));
    }
    let err = helm_release_uses("d", "s", b"%%%", &Removals::embedded()).unwrap_err();
    assert!(format!("{err:#}").contains("not base64"), "{err:#}");
    assert_eq!(manifest_heads(manifest).len(), 3);
}

#[test]
fn the_deprecated_api_metric_is_parsed() {
    let text = "# HELP apiserver_requested_deprecated_apis Gauge\n\
        apiserver_requested_deprecated_apis{group=\"policy\",removed_release=\"1.25\",resource=\"poddisruptionbudgets\",subresource=\"\",version=\"v1beta1\"} 1\n\
        apiserver_requested_deprecated_apis{group=\"batch\",removed_release=\"\",resource=\"cronjobs\",subresource=\"\",version=\"v1beta1\"} 0\n\
        apiserver_request_total{verb=\"GET\"} 4\n";
    let got = parse_deprecated_metrics(text);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].group_version(), "policy/v1beta1");
    assert_eq!(got[0].removed_release, Some(m(25)));
    let snap = ReadinessSnapshot {
        versions: cluster("v1.24.17", "3.5.12-0"),
        requested_deprecated: Some(got),
        ..Default::default()
    };
    let r = run(&snap, "v1.25", date(2023, 1, 1));
    assert_eq!(r.hops[0].verdict, Level::NotReady);
    assert!(rules(&r, 0).contains(&DEPRECATED_API_REQUESTED));
}

#[test]
fn a_healthy_cluster_is_ready_with_no_finding() {
    let snap = ReadinessSnapshot {
        versions: cluster("v1.35.2", "3.6.5-0"),
        drains: vec![NodeDrain {
            node: "w1".into(),
            blockers: vec![],
            warnings: vec![],
        }],
        ..Default::default()
    };
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    assert_eq!(r.verdict, Level::Ready, "{r:#?}");
    assert!(r.hops[0].findings.is_empty());
    assert_eq!(r.exit_code(), 0);
}

#[test]
fn a_removed_api_blocks_only_the_hop_that_removes_it() {
    let snap = ReadinessSnapshot {
        versions: cluster("v1.23.17", "3.5.12-0"),
        api_uses: vec![ApiUse {
            api_version: "policy/v1beta1".into(),
            kind: "PodDisruptionBudget".into(),
            namespace: Some("default".into()),
            name: "web".into(),
            source: "annotation".into(),
        }],
        ..Default::default()
    };
    let r = run(&snap, "v1.26", date(2022, 1, 1));
    assert_eq!(r.hops.len(), 3);
    assert!(!rules(&r, 0).contains(&REMOVED_API));
    assert_eq!(r.hops[1].to, m(25));
    assert_eq!(r.hops[1].verdict, Level::NotReady);
    let f = &r.hops[1].findings[0];
    assert_eq!((f.rule, f.name.as_str()), (REMOVED_API, "web"));
    assert!(f.fix.contains("policy/v1"), "{}", f.fix);
    assert!(!rules(&r, 2).contains(&REMOVED_API));
    assert_eq!(r.exit_code(), 1);
    // Already removed before today's minor: a warning on the first hop.
    let snap = ReadinessSnapshot {
        versions: cluster("v1.30.1", "3.5.12-0"),
        ..snap
    };
    let r = run(&snap, "v1.31", date(2024, 9, 1));
    assert_eq!(rules(&r, 0), [REMOVED_API_ALREADY]);
    assert_eq!(r.verdict, Level::Warn);
}

#[test]
fn etcd_must_reach_3_5_26_before_the_hop_that_brings_3_6() {
    let snap = ReadinessSnapshot {
        versions: cluster("v1.33.5", "3.5.21-0"),
        ..Default::default()
    };
    let r = run(&snap, "v1.34", date(2025, 10, 1));
    let f = r.hops[0]
        .findings
        .iter()
        .find(|f| f.rule == ETCD_36_GATE)
        .expect("etcd gate");
    assert_eq!(f.severity, Severity::Block);
    assert!(f.message.contains("3.5.21"), "{}", f.message);
    let ok = ReadinessSnapshot {
        versions: cluster("v1.33.5", "3.5.26-0"),
        ..Default::default()
    };
    assert!(!rules(&run(&ok, "v1.34", date(2025, 10, 1)), 0).contains(&ETCD_36_GATE));
    // A hop that stays on 3.5 is not gated.
    let old = ReadinessSnapshot {
        versions: cluster("v1.31.5", "3.5.15-0"),
        ..Default::default()
    };
    assert!(!rules(&run(&old, "v1.32", date(2025, 1, 1)), 0).contains(&ETCD_36_GATE));
}

#[test]
fn an_emulated_version_warns_and_moves_the_removal_check() {
    let snap = ReadinessSnapshot {
        versions: cluster("v1.33.1", "3.5.26-0"),
        emulated: Some(m(31)),
        binary: Some(m(33)),
        api_uses: vec![ApiUse {
            api_version: "flowcontrol.apiserver.k8s.io/v1beta3".into(),
            kind: "FlowSchema".into(),
            namespace: None,
            name: "batch".into(),
            source: "annotation".into(),
        }],
        ..Default::default()
    };
    let r = run(&snap, "v1.34", date(2025, 10, 1));
    let got = rules(&r, 0);
    assert!(got.contains(&EMULATED_VERSION), "{got:?}");
    assert!(
        got.contains(&REMOVED_API),
        "emulating v1.31, v1.32's removal is still ahead: {got:?}"
    );
}

#[test]
fn certificates_within_thirty_days_or_the_upgrade_block() {
    let now: Timestamp = "2026-12-05T00:00:00Z".parse().unwrap();
    let cert = |days: i64| Certificate {
        role: "API server serving certificate".into(),
        subject: "kube-apiserver".into(),
        source: "TLS".into(),
        not_after: now + jiff::SignedDuration::from_hours(24 * days),
        node: None,
        externally_managed: false,
    };
    let f = certs::expiry_finding(&cert(10), now, 30).unwrap();
    assert!(f.message.contains("in 10 days"), "{}", f.message);
    assert_eq!(f.kind, "Certificate");
    assert!(certs::expiry_finding(&cert(31), now, 30).is_none());
    assert!(certs::expiry_finding(&cert(31), now, 45).is_some());
    let expired = certs::expiry_finding(&cert(-1), now, 30).unwrap();
    assert!(expired.message.contains("expired"), "{}", expired.message);

    let snap = ReadinessSnapshot {
        versions: cluster("v1.35.2", "3.6.5-0"),
        certificates: vec![cert(10)],
        ..Default::default()
    };
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    assert_eq!(rules(&r, 0), [CERTIFICATE_EXPIRY]);
    assert_eq!(r.verdict, Level::NotReady);
}

/// `kubeadm certs check-expiration -o json` as kubeadm v1.31 prints it on a control-plane
/// node that joined (no super-admin.conf): metav1.Time for a missing certificate is `null`.
const CHECK_EXPIRATION_JSON: &str = r#"{
    "kind": "CertificateExpirationInfo",
    "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
    "certificates": [
        {"name": "admin.conf", "expirationDate": "2027-11-20T09:03:00Z", "residualTime": 30000000, "externallyManaged": false, "caName": "ca", "missing": false},
        {"name": "apiserver", "expirationDate": "2026-12-15T09:03:00Z", "residualTime": 896580, "externallyManaged": false, "caName": "ca", "missing": false},
        {"name": "front-proxy-client", "expirationDate": "2026-12-20T00:00:00Z", "residualTime": 1296000, "externallyManaged": true, "caName": "front-proxy-ca", "missing": false},
        {"name": "super-admin.conf", "expirationDate": null, "residualTime": 0, "externallyManaged": false, "missing": true}
    ],
    "certificateAuthorities": [
        {"name": "ca", "expirationDate": "2026-12-25T00:00:00Z", "residualTime": 1728000, "externallyManaged": false, "missing": false},
        {"name": "etcd-ca", "expirationDate": "2035-11-18T09:03:00Z", "residualTime": 283000000, "externallyManaged": false, "missing": false}
    ]
}"#;

#[test]
fn kubeadm_check_expiration_names_node_certificate_and_days_left() {
    let parsed = certs::parse_check_expiration("cp1", CHECK_EXPIRATION_JSON).unwrap();
    assert_eq!(parsed.missing, ["super-admin.conf"]);
    let names: Vec<&str> = parsed
        .certificates
        .iter()
        .map(|c| c.subject.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "admin.conf",
            "apiserver",
            "front-proxy-client",
            "ca",
            "etcd-ca"
        ]
    );
    assert!(parsed.certificates[2].externally_managed);
    assert_eq!(parsed.certificates[3].role, "kubeadm certificate authority");

    let snap = ReadinessSnapshot {
        versions: cluster("v1.35.2", "3.6.5-0"),
        certificates: parsed.certificates,
        ..Default::default()
    };
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    let f: Vec<&Finding> = r.hops[0]
        .findings
        .iter()
        .filter(|f| f.rule == CERTIFICATE_EXPIRY)
        .collect();
    let named: Vec<&str> = f.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(named, ["apiserver", "ca", "front-proxy-client"], "{f:#?}");
    let apiserver = f[0];
    assert_eq!(
        apiserver.source,
        "kubeadm certs check-expiration on node cp1"
    );
    assert!(
        apiserver.message.contains("(apiserver) on node cp1")
            && apiserver.message.contains("in 10 days"),
        "{}",
        apiserver.message
    );
    assert!(
        apiserver.fix.contains("kubeadm certs renew apiserver"),
        "{}",
        apiserver.fix
    );
    assert!(f[1].fix.contains("does not renew a CA"), "{}", f[1].fix);
    assert!(f[2].fix.contains("external CA"), "{}", f[2].fix);
    assert_eq!(r.verdict, Level::NotReady);

    // Not kubeadm's output: an error naming the node, never an empty list.
    let e = certs::parse_check_expiration("cp1", "CERTIFICATE EXPIRES\n").unwrap_err();
    assert!(format!("{e:#}").contains("on node cp1"), "{e:#}");
    let e = certs::parse_check_expiration(
        "cp1",
        r#"{"kind":"Images","apiVersion":"output.kubeadm.k8s.io/v1alpha3"}"#,
    )
    .unwrap_err();
    assert!(
        format!("{e:#}").contains("not a CertificateExpirationInfo"),
        "{e:#}"
    );
}

#[test]
fn drains_refused_block_and_downtime_warns() {
    use crate::drain::{Finding as DrainFinding, Rule as DrainRule, Severity as DrainSeverity};
    let snap = ReadinessSnapshot {
        versions: cluster("v1.35.2", "3.6.5-0"),
        drains: vec![NodeDrain {
            node: "w1".into(),
            blockers: vec![DrainFinding {
                rule: DrainRule::Unmanaged,
                severity: DrainSeverity::Block,
                message: "default/scratch declares no controller".into(),
                pods: vec!["default/scratch".into()],
            }],
            warnings: vec![DrainFinding {
                rule: DrainRule::Downtime,
                severity: DrainSeverity::Warning,
                message: "Deployment default/solo has 1 replica".into(),
                pods: vec!["default/solo-abc".into()],
            }],
        }],
        ..Default::default()
    };
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    let f = &r.hops[0].findings;
    assert_eq!(f[0].rule, DRAIN_BLOCKED);
    assert_eq!(
        (f[0].namespace.as_deref(), f[0].name.as_str()),
        (Some("default"), "scratch")
    );
    assert_eq!(f[0].source, "drain plan of node w1");
    assert_eq!(f[1].rule, DRAIN_WARNING);
    assert_eq!(f[1].severity, Severity::Warn);

    // The plan upgrades every node: w1's drain stops the hop. An upgrade of other
    // nodes is not stopped by it; one that also upgrades w1 is, before anything moves.
    assert_eq!(f[0].node.as_deref(), Some("w1"));
    assert!(f[0].concerns(None));
    let mut input = PreflightInput {
        snapshot: snap,
        removals: Removals::embedded(),
        calendar: Calendar::embedded(),
        settings: settings(date(2026, 12, 5)),
        selection: Vec::new(),
    };
    let hop = |input: &PreflightInput| -> Vec<&'static str> {
        hop_findings(input, m(35), m(36))
            .iter()
            .map(|f| f.rule)
            .filter(|r| r.starts_with("drain"))
            .collect()
    };
    assert!(hop(&input).is_empty());
    input.selection = vec!["w2".into()];
    assert!(hop(&input).is_empty());
    input.selection = vec!["w1".into(), "w2".into()];
    assert_eq!(hop(&input), [DRAIN_BLOCKED, DRAIN_WARNING]);
}

#[test]
fn what_could_not_be_read_makes_the_verdict_unknown_unless_something_blocks() {
    let mut snap = ReadinessSnapshot {
        versions: cluster("v1.35.2", "3.6.5-0"),
        unreadable: vec![Unreadable {
            what: "list secrets".into(),
            error: "forbidden".into(),
        }],
        ..Default::default()
    };
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    assert_eq!(r.verdict, Level::Unknown);
    assert_eq!(r.exit_code(), 2);
    snap.certificates.push(Certificate {
        role: "kubeconfig client certificate".into(),
        subject: "admin".into(),
        source: "kubeconfig".into(),
        not_after: "2026-12-06T00:00:00Z".parse().unwrap(),
        node: None,
        externally_managed: false,
    });
    let r = run(&snap, "v1.36", date(2026, 12, 5));
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn the_support_window_uses_todays_calendar_with_v1_38() {
    let snap = ReadinessSnapshot {
        versions: cluster("v1.37.0", "3.6.5-0"),
        ..Default::default()
    };
    let r = run(&snap, "v1.38", date(2026, 12, 5));
    let f = &r.hops[0].findings;
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!((f[0].rule, f[0].name.as_str()), (SUPPORT_WINDOW, "v1.38"));
    assert!(f[0].message.contains("not released"), "{}", f[0].message);
    assert_eq!(r.verdict, Level::Warn);
    let r = run(&snap, "v1.38", date(2026, 12, 16));
    assert_eq!(r.verdict, Level::Ready, "{r:#?}");
}
