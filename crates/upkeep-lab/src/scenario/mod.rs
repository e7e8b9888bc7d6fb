//! Scenarios: the starting state of a lab.
//!
//! A scenario is a multi-document YAML file of ordinary Kubernetes objects plus one lab
//! document:
//!
//! ```yaml
//! apiVersion: lab.upkeep.dev/v1alpha1
//! kind: LabScenario
//! metadata: {name: os-upgrade}
//! spec:
//!   version: v1.34.1            # what /version answers (kube-apiserver)
//!   timeScale: 1                # lab seconds per real second (unless --time-scale is given)
//!   kubeadm: true               # mirror pods, kube-proxy DaemonSet, CoreDNS, kubeadm-config
//!   timing:                     # the simulation's SimConfig, all fields optional (lab seconds)
//!     podStartSeconds: 1
//!     terminationCapSeconds: 2
//!   nodes:
//!   - name: controlplane        # or a pattern with count: "node{index:02}" + count: 2
//!     role: control-plane       # control-plane | worker (default)
//!     kubeletVersion: v1.34.1   # default: the apiserver version
//!     controlPlaneVersion: v1.34.1   # static pod images (control-plane nodes)
//!     staticPodVersions: {kube-controller-manager: v1.35.0}  # per-component override
//!     osImage: Ubuntu 22.04.5 LTS    # decides the package manager (apt / dnf)
//!     capacity: {cpu: "2", memory: 4Gi, pods: "110"}
//!     labels: {}
//!     taints: []                # default for control-plane: node-role.kubernetes.io/control-plane:NoSchedule
//!     unschedulable: false
//!     kubelet: running          # running | notReady | stopped
//!     shellFaults: []           # for the node shell (its ShellFault shape)
//!     sitePackages: [{name: site-kubernetes, pins: [kubeadm, kubelet]}]  # require those versions
//!     certificates:             # kubeadm's PKI on a control-plane node (days from first use)
//!       expiresInDays: 365      # every certificate; caExpiresInDays: 3650 for the CAs
//!       days: {apiserver: 10}   # per certificate or CA name
//!       missing: [super-admin.conf]
//!     internalIP: 198.18.0.11   # one node only; default a loopback address from its index
//!   packages:                   # pkgs.k8s.io repositories the node shells can reach
//!     repositories:
//!     - minor: v1.34
//!       versions: [1.34.0-1.1, 1.34.1-1.1]
//!   faults: {...}               # API faults, the shape of crate::faults::FaultConfig
//!   certificates:               # validity of the served TLS certificates (days from start)
//!     serverExpiresInDays: 10
//!     clientExpiresInDays: 365
//! ```
//!
//! Objects may name their owner without a uid (`ownerReferences: [{kind: ReplicaSet,
//! name: web-abc}]`): the loader fills in the uid of the object created earlier. Pods may
//! carry a `status`: it is stored as given (a pod can start Running).
//!
//! Built-in scenarios are embedded (see [`BUILTIN`]); `generate:nodes=N,pods=M,...` builds a
//! large cluster directly in the store ([`generate`]).

#![allow(clippy::result_large_err)]

pub mod generate;

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::faults::FaultConfig;
use crate::lab::{Lab, ServerVersion};
use crate::resources;
use crate::sim::{self, KubeletControl, KubeletMode, SimConfig, StaticPods, util};

pub const API_VERSION: &str = "lab.upkeep.dev/v1alpha1";
pub const KIND: &str = "LabScenario";

/// The built-in scenarios: (name, YAML).
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "os-upgrade",
        include_str!("../../scenarios/os-upgrade.yaml"),
    ),
    (
        "cluster-upgrade",
        include_str!("../../scenarios/cluster-upgrade.yaml"),
    ),
    (
        "skew-violations",
        include_str!("../../scenarios/skew-violations.yaml"),
    ),
    (
        "ha-control-plane",
        include_str!("../../scenarios/ha-control-plane.yaml"),
    ),
    (
        "backup-restore",
        include_str!("../../scenarios/backup-restore.yaml"),
    ),
    (
        "readiness-healthy",
        include_str!("../../scenarios/readiness-healthy.yaml"),
    ),
    (
        "readiness-removed-apis",
        include_str!("../../scenarios/readiness-removed-apis.yaml"),
    ),
    (
        "readiness-helm",
        include_str!("../../scenarios/readiness-helm.yaml"),
    ),
    (
        "readiness-drains",
        include_str!("../../scenarios/readiness-drains.yaml"),
    ),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    ControlPlane,
    #[default]
    Worker,
}

/// One node template (`count` nodes named from the `name` pattern).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeTemplate {
    /// A name, or a pattern with `{index}` / `{index:02}` when `count` is given.
    pub name: String,
    #[serde(default = "one")]
    pub count: u32,
    /// First index of a pattern.
    #[serde(default = "one")]
    pub start: u32,
    #[serde(default)]
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub static_pod_versions: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_version: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Value>>,
    #[serde(default)]
    pub unschedulable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet: Option<KubeletMode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shell_faults: Vec<Value>,
    /// Packages installed beside kubeadm's three that require some of them at the node's
    /// versions (a site meta-package), for the node shell.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub site_packages: Vec<crate::nodeshell::host::SitePackageSpec>,
    /// kubeadm's certificates on a control-plane node, for `kubeadm certs check-expiration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<crate::nodeshell::pki::PkiSpec>,
    /// The node's InternalIP (a template of one node only). Default: a loopback address
    /// derived from the node's index, so a transport dialling it stays on this machine; a
    /// real node behind the lab (a network namespace with sshd) needs its own address here.
    #[serde(
        default,
        rename = "internalIP",
        skip_serializing_if = "Option::is_none"
    )]
    pub internal_ip: Option<std::net::IpAddr>,
}

fn one() -> u32 {
    1
}

/// One published pkgs.k8s.io minor repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PackageRepository {
    /// `v1.34` (or `1.34`).
    pub minor: String,
    /// `1.34.1-1.1`, or `1.34.1` for the default revision.
    pub versions: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Packages {
    #[serde(default)]
    pub repositories: Vec<PackageRepository>,
}

/// The `spec` of the lab document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScenarioSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_scale: Option<f64>,
    #[serde(default)]
    pub kubeadm: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timing: Option<Value>,
    #[serde(default)]
    pub nodes: Vec<NodeTemplate>,
    #[serde(default)]
    pub packages: Packages,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faults: Option<FaultConfig>,
    /// Run the controllers, scheduler and kubelets until the cluster is steady before
    /// serving (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settle: Option<bool>,
    /// How long the served TLS certificates stay valid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificates: Option<CertificateSpec>,
}

/// Validity of the lab's generated certificates, in days from the moment the server
/// starts (default: rcgen's far-future notAfter). kubeadm issues the API server's serving
/// certificate and admin.conf's client certificate for one year
/// (cmd/kubeadm/app/constants/constants.go `CertificateValidityPeriod`); a short value
/// stands for a cluster whose certificates were last renewed long ago.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_expires_in_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_expires_in_days: Option<u32>,
}

/// A node as the scenario declared it (after expanding patterns), for the node shells.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioNode {
    pub name: String,
    pub template: NodeTemplate,
}

/// What the loaded scenario declared, reachable as `lab.extension("scenario")` (the node
/// shells read `packages`, `nodes[].template.osImage`, versions and shell faults from it).
#[derive(Debug, Clone, Default)]
pub struct LoadedScenario {
    pub name: String,
    pub spec: ScenarioSpec,
    pub nodes: Vec<ScenarioNode>,
}

/// The loaded scenario of a lab (empty when none was loaded).
pub fn loaded(lab: &Lab) -> Arc<parking_lot::RwLock<LoadedScenario>> {
    lab.extension("scenario", || {
        parking_lot::RwLock::new(LoadedScenario::default())
    })
}

/// A parsed scenario.
#[derive(Debug, Clone)]
pub enum Scenario {
    Yaml {
        name: String,
        spec: Box<ScenarioSpec>,
        objects: Vec<Value>,
    },
    Generated(generate::Params),
}

/// The package manager family of an OS image ("apt" or "dnf").
pub fn package_family(os_image: &str) -> &'static str {
    let o = os_image.to_ascii_lowercase();
    if [
        "rocky",
        "centos",
        "red hat",
        "rhel",
        "fedora",
        "alma",
        "amazon linux",
        "oracle",
    ]
    .iter()
    .any(|k| o.contains(k))
    {
        "dnf"
    } else {
        "apt"
    }
}

impl Scenario {
    /// A built-in name, `generate:...`, or a file path.
    pub fn resolve(what: &str) -> anyhow::Result<Scenario> {
        if let Some(params) = what
            .strip_prefix("generate:")
            .or_else(|| (what == "generate").then_some(""))
        {
            return Ok(Scenario::Generated(generate::Params::parse(params)?));
        }
        if let Some((name, text)) = BUILTIN.iter().find(|(n, _)| *n == what) {
            return Self::parse(name, text);
        }
        let path = std::path::Path::new(what);
        if !path.exists() {
            let names: Vec<&str> = BUILTIN.iter().map(|(n, _)| *n).collect();
            bail!(
                "scenario {what:?} is neither a built-in scenario ({}) nor a readable file; use one of those names, generate:nodes=N,pods=M, or a YAML path",
                names.join(", ")
            );
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario file {what}"))?;
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or(what)
            .to_string();
        Self::parse(&name, &text)
    }

    /// Parse a multi-document YAML scenario.
    pub fn parse(name: &str, text: &str) -> anyhow::Result<Scenario> {
        // The YAML reader's default budget (1,024 documents, 250,000 nodes, 1,000,000
        // events) guards against separator and alias storms; a scenario is the user's own
        // file and may list one object per node of a large cluster, so the structural caps
        // grow with the input (a document, node or event takes at least one byte of it).
        // Alias expansion keeps its default caps.
        let options = serde_saphyr::options! {
            budget: serde_saphyr::budget! {
                max_documents: text.len().max(1_024),
                max_nodes: text.len().max(250_000),
                max_events: text.len().saturating_mul(2).max(1_000_000),
            },
        };
        let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, options)
            .with_context(|| format!("scenario {name}: invalid YAML"))?;
        let mut spec = None;
        let mut name = name.to_string();
        let mut objects = Vec::new();
        for (i, d) in docs.into_iter().enumerate() {
            if d.is_null() {
                continue;
            }
            if util::s(&d, "/kind") == KIND {
                if util::s(&d, "/apiVersion") != API_VERSION {
                    bail!(
                        "scenario {name}: document {} has kind {KIND} but apiVersion {:?}; expected {API_VERSION}",
                        i + 1,
                        util::s(&d, "/apiVersion")
                    );
                }
                if spec.is_some() {
                    bail!("scenario {name}: more than one {KIND} document");
                }
                if let Some(n) = d.pointer("/metadata/name").and_then(Value::as_str) {
                    name = n.to_string();
                }
                let s: ScenarioSpec =
                    serde_json::from_value(d.get("spec").cloned().unwrap_or_else(|| json!({})))
                        .with_context(|| format!("scenario {name}: invalid {KIND} spec"))?;
                spec = Some(s);
            } else {
                let (av, kind) = (util::s(&d, "/apiVersion"), util::s(&d, "/kind"));
                if resources::by_kind(av, kind).is_none() {
                    bail!(
                        "scenario {name}: document {} is {av}/{kind}, which the lab does not serve",
                        i + 1
                    );
                }
                objects.push(d);
            }
        }
        Ok(Scenario::Yaml {
            name,
            spec: Box::new(spec.unwrap_or_default()),
            objects,
        })
    }

    /// Kubernetes objects of a multi-document YAML (no lab document allowed).
    pub fn parse_objects(text: &str) -> anyhow::Result<Vec<Value>> {
        match Self::parse("objects", text)? {
            Scenario::Yaml { objects, .. } => Ok(objects),
            Scenario::Generated(_) => unreachable!("parse never generates"),
        }
    }

    /// Put the scenario into the lab. Returns whether the simulation should settle before
    /// serving.
    pub fn apply(&self, lab: &Arc<Lab>) -> anyhow::Result<bool> {
        match self {
            Scenario::Generated(p) => {
                generate::apply(lab, p)?;
                Ok(false)
            }
            Scenario::Yaml {
                name,
                spec,
                objects,
            } => {
                apply_spec(lab, name, spec)?;
                create_objects(lab, objects)?;
                Ok(spec.settle.unwrap_or(true))
            }
        }
    }
}

/// Expand a node name pattern: `node{index:02}` with index 1 → `node01`.
pub fn expand_name(pattern: &str, index: u32) -> String {
    let Some(start) = pattern.find("{index") else {
        return pattern.to_string();
    };
    let Some(end) = pattern[start..].find('}').map(|e| start + e) else {
        return pattern.to_string();
    };
    let inner = &pattern[start + 6..end];
    let width: usize = inner
        .strip_prefix(':')
        .and_then(|w| w.trim_start_matches('0').parse().ok())
        .unwrap_or(0);
    format!(
        "{}{:0width$}{}",
        &pattern[..start],
        index,
        &pattern[end + 1..],
        width = width
    )
}

fn v_prefixed(v: &str) -> String {
    if v.starts_with('v') {
        v.to_string()
    } else {
        format!("v{v}")
    }
}

/// The lab document: version, clock, timing, nodes, kubelets, static pods, faults.
pub fn apply_spec(lab: &Arc<Lab>, name: &str, spec: &ScenarioSpec) -> anyhow::Result<()> {
    if let Some(v) = &spec.version {
        lab.set_version(
            ServerVersion::parse(v).with_context(|| format!("scenario {name}: spec.version"))?,
        );
    }
    if let Some(s) = spec.time_scale {
        // --time-scale (a lab not at the default scale 1) wins over the scenario.
        if lab.clock.time_scale() == 1.0 {
            lab.clock.set_time_scale(s);
        }
    }
    {
        let slot = sim::config_slot(lab);
        let mut cfg = slot.write();
        if let Some(t) = &spec.timing {
            let mut merged = serde_json::to_value(&*cfg)?;
            for (k, v) in t.as_object().into_iter().flatten() {
                merged[k] = v.clone();
            }
            *cfg = serde_json::from_value::<SimConfig>(merged)
                .with_context(|| format!("scenario {name}: spec.timing"))?;
        }
        cfg.kubeadm = spec.kubeadm;
    }
    if let Some(f) = &spec.faults {
        lab.faults.set(f.clone());
    }
    let version = lab.version().git_version;
    let mut nodes = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for t in &spec.nodes {
        if t.internal_ip.is_some() && t.count != 1 {
            bail!(
                "scenario {name}: node {} has internalIP and count {}: an address names one node; declare each node on its own",
                t.name,
                t.count
            );
        }
        for i in 0..t.count {
            let n = if t.count == 1 && !t.name.contains("{index") {
                t.name.clone()
            } else {
                expand_name(&t.name, t.start + i)
            };
            if !seen.insert(n.clone()) {
                bail!("scenario {name}: node {n} is declared twice");
            }
            if let Some(c) = &t.certificates {
                c.validate()
                    .map_err(|e| anyhow::anyhow!("scenario {name}: node {n}: {e}"))?;
            }
            nodes.push(ScenarioNode {
                name: n,
                template: t.clone(),
            });
        }
    }
    let ctl = KubeletControl::get(lab);
    let sp = StaticPods::get(lab);
    for (idx, sn) in nodes.iter().enumerate() {
        let node = node_object(&sn.name, &sn.template, &version, idx);
        lab.store
            .create(&resources::NODE, "", node, false)
            .map_err(|e| anyhow::anyhow!("scenario {name}: node {}: {}", sn.name, e.message))?;
        if let Some(m) = sn.template.kubelet {
            ctl.set_mode(&sn.name, m);
        }
        if spec.kubeadm && sn.template.role == Role::ControlPlane {
            let cpv = sn
                .template
                .control_plane_version
                .clone()
                .map(|v| v_prefixed(&v))
                .unwrap_or_else(|| version.clone());
            for (c, img) in sim::kubelet::control_plane_images(&cpv) {
                let img = match sn.template.static_pod_versions.get(&c) {
                    Some(v) if c != "etcd" => format!("registry.k8s.io/{c}:{}", v_prefixed(v)),
                    Some(v) => format!("registry.k8s.io/etcd:{v}"),
                    None => img,
                };
                sp.set_image(&sn.name, &c, &img);
            }
        }
    }
    if spec.kubeadm {
        create_objects(lab, &kubeadm_objects(&version, &nodes))?;
    }
    *loaded(lab).write() = LoadedScenario {
        name: name.to_string(),
        spec: spec.clone(),
        nodes,
    };
    Ok(())
}

/// A registered node as the kubelet would have made it.
fn node_object(name: &str, t: &NodeTemplate, version: &str, idx: usize) -> Value {
    let mut labels = json!({
        "kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
    });
    let mut taints = t.taints.clone().unwrap_or_default();
    if t.role == Role::ControlPlane {
        labels[util::LABEL_CONTROL_PLANE] = json!("");
        labels["node.kubernetes.io/exclude-from-external-load-balancers"] = json!("");
        if t.taints.is_none() {
            taints.push(json!({"key": util::LABEL_CONTROL_PLANE, "effect": "NoSchedule"}));
        }
    }
    for (k, v) in &t.labels {
        labels[k] = json!(v);
    }
    let mut cap = json!({"cpu": "4", "memory": "8148056Ki", "pods": "110", "ephemeral-storage": "101430960Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0"});
    for (k, v) in &t.capacity {
        cap[k] = json!(v);
    }
    let kv = t
        .kubelet_version
        .clone()
        .map(|v| v_prefixed(&v))
        .unwrap_or_else(|| version.to_string());
    // Node addresses are loopback ones: a transport that dials a lab node by
    // its InternalIP (ssh, say) is refused locally instead of leaving the machine.
    let ip = t
        .internal_ip
        .map(|a| a.to_string())
        .unwrap_or_else(|| format!("127.10.{}.{}", 10 + idx / 250, idx % 250 + 2));
    let mut spec = json!({"podCIDR": format!("10.244.{}.0/24", idx % 256), "podCIDRs": [format!("10.244.{}.0/24", idx % 256)]});
    if !taints.is_empty() {
        spec["taints"] = json!(taints);
    }
    if t.unschedulable {
        spec["unschedulable"] = json!(true);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": labels, "annotations": {
            "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
            "node.alpha.kubernetes.io/ttl": "0",
            "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": spec,
        "status": {
            "capacity": cap.clone(),
            "allocatable": cap,
            "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "kubeletVersion": kv, "kubeProxyVersion": kv,
                "osImage": t.os_image.clone().unwrap_or_else(|| "Ubuntu 22.04.5 LTS".into()),
                "containerRuntimeVersion": t.container_runtime_version.clone().unwrap_or_else(|| "containerd://1.7.28".into()),
                "kernelVersion": t.kernel_version.clone().unwrap_or_else(|| "5.15.0-157-generic".into()),
                "operatingSystem": "linux", "architecture": "amd64",
                "machineID": format!("{:032x}", idx + 1), "systemUUID": format!("{:08x}-0000-4000-8000-{:012x}", idx + 1, idx + 1),
                "bootID": format!("{:08x}-1111-4000-8000-{:012x}", idx + 7, idx + 1),
            },
        },
    })
}

/// What `kubeadm init` leaves in a cluster besides static pods: the kube-proxy DaemonSet,
/// CoreDNS and the kubeadm-config ConfigMap (cmd/kubeadm/app/phases/addons,
/// phases/uploadconfig).
fn kubeadm_objects(version: &str, nodes: &[ScenarioNode]) -> Vec<Value> {
    let minor: u64 = version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(34);
    let coredns = match minor {
        0..=31 => "v1.11.3",
        32 => "v1.11.3",
        33 => "v1.12.0",
        _ => "v1.12.1",
    };
    let endpoint = nodes
        .iter()
        .position(|n| n.template.role == Role::ControlPlane)
        .map(|i| format!("127.10.{}.{}:6443", 10 + i / 250, i % 250 + 2))
        .unwrap_or_else(|| "127.10.10.2:6443".into());
    let cluster_config = format!(
        "apiServer: {{}}\napiVersion: kubeadm.k8s.io/v1beta4\ncaCertificateValidityPeriod: 87600h0m0s\ncertificateValidityPeriod: 8760h0m0s\ncertificatesDir: /etc/kubernetes/pki\nclusterName: kubernetes\ncontrolPlaneEndpoint: {endpoint}\ncontrollerManager: {{}}\ndns: {{}}\nencryptionAlgorithm: RSA-2048\netcd:\n  local:\n    dataDir: /var/lib/etcd\nimageRepository: registry.k8s.io\nkind: ClusterConfiguration\nkubernetesVersion: {version}\nnetworking:\n  dnsDomain: cluster.local\n  podSubnet: 10.244.0.0/16\n  serviceSubnet: 10.96.0.0/12\nproxy: {{}}\nscheduler: {{}}\n"
    );
    vec![
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
               "data": {"ClusterConfiguration": cluster_config}}),
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
               "metadata": {"name": "kube-proxy", "namespace": "kube-system", "labels": {"k8s-app": "kube-proxy"}},
               "spec": {
                   "selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                   "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}},
                   "template": {
                       "metadata": {"labels": {"k8s-app": "kube-proxy"}},
                       "spec": {
                           "containers": [{"name": "kube-proxy", "image": format!("registry.k8s.io/kube-proxy:{version}"),
                                           "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                                           "securityContext": {"privileged": true}}],
                           "hostNetwork": true,
                           "nodeSelector": {"kubernetes.io/os": "linux"},
                           "priorityClassName": "system-node-critical",
                           "priority": 2000001000,
                           "serviceAccountName": "kube-proxy",
                           "tolerations": [{"operator": "Exists"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "coredns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
               "spec": {
                   "replicas": 2,
                   "selector": {"matchLabels": {"k8s-app": "kube-dns"}},
                   "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "25%"}},
                   "template": {
                       "metadata": {"labels": {"k8s-app": "kube-dns"}},
                       "spec": {
                           "containers": [{"name": "coredns", "image": format!("registry.k8s.io/coredns/coredns:{coredns}"),
                                           "args": ["-conf", "/etc/coredns/Corefile"],
                                           "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}}}],
                           "dnsPolicy": "Default",
                           "nodeSelector": {"kubernetes.io/os": "linux"},
                           "priorityClassName": "system-cluster-critical",
                           "priority": 2000000000,
                           "serviceAccountName": "coredns",
                           "tolerations": [{"key": "CriticalAddonsOnly", "operator": "Exists"},
                                           {"key": util::LABEL_CONTROL_PLANE, "effect": "NoSchedule"}]}}}}),
    ]
}

/// Create scenario objects in order (namespaces first), filling owner uids by name.
pub fn create_objects(lab: &Arc<Lab>, objects: &[Value]) -> anyhow::Result<()> {
    let mut ordered: Vec<&Value> = objects
        .iter()
        .filter(|o| util::s(o, "/kind") == "Namespace")
        .collect();
    ordered.extend(
        objects
            .iter()
            .filter(|o| util::s(o, "/kind") != "Namespace"),
    );
    for o in ordered {
        let (av, kind) = (util::s(o, "/apiVersion"), util::s(o, "/kind"));
        let res = resources::by_kind(av, kind)
            .with_context(|| format!("{av}/{kind} is not served by the lab"))?;
        let mut obj = o.clone();
        let ns = if res.namespaced {
            let ns = util::namespace(&obj);
            if ns.is_empty() {
                "default".to_string()
            } else {
                ns.to_string()
            }
        } else {
            String::new()
        };
        if res.namespaced && lab.store.get(&resources::NAMESPACE, "", &ns).is_none() {
            let _ = lab.store.create(
                &resources::NAMESPACE,
                "",
                json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                false,
            );
        }
        // owner uids by name
        if let Some(refs) = obj
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for r in refs {
                if util::s(r, "/uid").is_empty() {
                    let rav = util::s(r, "/apiVersion").to_string();
                    let rkind = util::s(r, "/kind").to_string();
                    let rname = util::s(r, "/name").to_string();
                    let owner_res = resources::by_kind(&rav, &rkind)
                        .or_else(|| resources::ALL.iter().copied().find(|x| x.kind == rkind))
                        .with_context(|| {
                            format!("{kind} {}: owner kind {rkind} is not served", util::name(o))
                        })?;
                    let owner = lab
                        .store
                        .get(owner_res, if owner_res.namespaced { &ns } else { "" }, &rname)
                        .with_context(|| format!("{kind} {}: owner {rkind} {rname} must come earlier in the scenario", util::name(o)))?;
                    r["uid"] = json!(util::uid(&owner));
                    r["apiVersion"] = json!(owner_res.api_version());
                }
            }
        }
        if res == &resources::POD {
            util::default_pod_spec(obj.get_mut("spec").unwrap_or(&mut Value::Null));
            util::add_default_toleration_seconds(&mut obj, 300);
            if obj.pointer("/status/phase").is_none() {
                obj["status"] = json!({"phase": "Pending"});
            }
        }
        lab.store.create(res, &ns, obj, false).map_err(|e| {
            anyhow::anyhow!("creating {kind} {}/{}: {}", ns, util::name(o), e.message)
        })?;
    }
    Ok(())
}
