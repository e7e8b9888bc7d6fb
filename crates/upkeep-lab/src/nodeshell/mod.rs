//! Node shells: each simulated node answers the commands a kubeadm upgrade runs on it —
//! apt / dnf / yum with pkgs.k8s.io repositories, holds and excludes, repository edits,
//! `kubeadm upgrade plan|apply|node` with kubeadm's version policy, `systemctl restart kubelet`
//! — and the effects reach the cluster (mirror pods, `/version`, the kube-proxy DaemonSet,
//! the `kubeadm-config` ConfigMap, the Node's kubeletVersion).
//!
//! Layout: pure parts first — [`version`], [`repo`], [`host`], [`script`], [`cluster`] (the
//! snapshot kubeadm reads and the effects it makes), the interpreter [`interp`] with
//! [`pkg`] and [`kubeadm`] — then the thin I/O: this module (host state per node, snapshot from
//! the store, effects into the store), [`http`] (the `/lab/v1/nodes/{node}/...` endpoints) and
//! [`client`] (`upkeep-lab node-shell`).
//!
//! Seams other parts use:
//! * [`NodeShells::get`] (`lab.extension("nodeshell.hosts")`): [`NodeShells::exec`],
//!   [`NodeShells::configure`] (scenario: repositories, OS families, faults),
//!   [`NodeShells::add_fault`].
//! * [`crate::exec::EXEC_EXTENSION`] (`"nodeshell.exec"`): the function the simulated kubelet
//!   calls for privileged `nsenter` pods, registered by [`register`].

pub mod client;
pub mod cluster;
#[cfg(test)]
mod flows;
pub mod host;
pub mod http;
pub mod interp;
pub mod kubeadm;
pub mod pkg;
pub mod pki;
pub mod repo;
pub mod script;
pub mod version;

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::exec::ExecOutput;
use crate::lab::{Lab, LabPlugin, ServerVersion};
use crate::resources;
use crate::store::ListQuery;

use cluster::{ClusterView, ComponentView, Effect, NodeView};
use host::{CONTROL_PLANE_COMPONENTS, Host, HostSpec, OsFamily, ShellFault};
use repo::{RepoSpec, Repos};
use version::KubeVersion;

/// One node's host settings in a scenario.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeHostConfig {
    /// apt | dnf | yum | dnf5 (default: from the Node's osImage).
    #[serde(default)]
    pub os_family: Option<OsFamily>,
    /// The Node's osImage to report (default: the family's usual image).
    #[serde(default)]
    pub os_image: Option<String>,
    #[serde(default)]
    pub faults: Vec<ShellFault>,
    /// kubeadm's certificates on a control-plane node.
    #[serde(default)]
    pub certificates: Option<pki::PkiSpec>,
    /// Installed packages that require kubeadm, kubelet or kubectl at their versions.
    #[serde(default)]
    pub site_packages: Vec<host::SitePackageSpec>,
}

/// The node-shell part of a scenario's lab document.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeShellConfig {
    /// What each pkgs.k8s.io minor repository publishes; undeclared minors publish .0 to .5.
    #[serde(default)]
    pub package_repositories: Vec<RepoSpec>,
    /// Family for nodes not listed in `nodes` whose osImage says nothing (default apt).
    #[serde(default)]
    pub default_os_family: Option<OsFamily>,
    /// Per node name.
    #[serde(default)]
    pub nodes: BTreeMap<String, NodeHostConfig>,
}

/// Why a node shell could not run a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    #[error("node {0:?} not found: the lab has no such Node (list them with kubectl get nodes)")]
    NodeNotFound(String),
}

/// Every node's host state (extension `"nodeshell.hosts"`).
#[derive(Default)]
pub struct NodeShells {
    hosts: Mutex<BTreeMap<String, Host>>,
    config: RwLock<NodeShellConfig>,
    repos: RwLock<Repos>,
    /// The scenario whose settings were taken (see [`NodeShells::sync_scenario`]).
    synced_scenario: Mutex<Option<String>>,
}

/// A JSON summary of a host, for `GET /lab/v1/nodes/{node}/host` and tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostSummary {
    pub node: String,
    pub os_family: OsFamily,
    pub os_image: String,
    pub control_plane: bool,
    /// `v1.34` of the configured repository file, if it names one.
    pub repository: Option<String>,
    pub installed: BTreeMap<String, String>,
    pub holds: Vec<String>,
    pub kubelet_running: String,
    pub kubelet_active: bool,
    pub faults: Vec<ShellFault>,
    pub history: Vec<String>,
}

impl NodeShells {
    pub fn get(lab: &Lab) -> Arc<NodeShells> {
        lab.extension("nodeshell.hosts", NodeShells::default)
    }

    /// Apply a scenario's node-shell settings. Hosts already created keep their state but get
    /// the new faults.
    pub fn configure(&self, cfg: NodeShellConfig) -> anyhow::Result<()> {
        let repos = Repos::from_specs(&cfg.package_repositories).map_err(anyhow::Error::msg)?;
        *self.repos.write() = repos;
        let mut hosts = self.hosts.lock();
        for (name, n) in &cfg.nodes {
            if let Some(h) = hosts.get_mut(name) {
                h.faults.extend(n.faults.iter().cloned());
            }
        }
        *self.config.write() = cfg;
        Ok(())
    }

    /// Take the node-shell settings of the loaded scenario (`crate::scenario::loaded`): its
    /// package repositories, and each node's `shellFaults`, once per scenario.
    pub fn sync_scenario(&self, lab: &Lab) -> anyhow::Result<()> {
        let loaded = crate::scenario::loaded(lab);
        let sc = loaded.read();
        if sc.name.is_empty() {
            return Ok(());
        }
        {
            let mut synced = self.synced_scenario.lock();
            if synced.as_deref() == Some(sc.name.as_str()) {
                return Ok(());
            }
            *synced = Some(sc.name.clone());
        }
        let mut cfg = self.config.read().clone();
        cfg.package_repositories = sc
            .spec
            .packages
            .repositories
            .iter()
            .map(|r| RepoSpec {
                minor: r.minor.clone(),
                versions: r.versions.clone(),
            })
            .collect();
        for n in &sc.nodes {
            let mut faults = Vec::new();
            for f in &n.template.shell_faults {
                let fault: ShellFault = serde_json::from_value(f.clone()).map_err(|e| {
                    anyhow::anyhow!("scenario {}: node {}: shellFaults entry {f}: {e}; expected {{fail: kubeadm upgrade node, times: 1}}", sc.name, n.name)
                })?;
                faults.push(fault);
            }
            if !faults.is_empty() {
                cfg.nodes.entry(n.name.clone()).or_default().faults = faults;
            }
            if let Some(c) = &n.template.certificates {
                cfg.nodes.entry(n.name.clone()).or_default().certificates = Some(c.clone());
            }
            if !n.template.site_packages.is_empty() {
                cfg.nodes.entry(n.name.clone()).or_default().site_packages =
                    n.template.site_packages.clone();
            }
        }
        drop(sc);
        self.configure(cfg)
    }

    /// Make a node fail a command (see [`ShellFault`]).
    pub fn add_fault(
        &self,
        lab: &Lab,
        node: &str,
        fault: ShellFault,
    ) -> Result<Vec<ShellFault>, ShellError> {
        self.with_host(lab, node, |h| {
            h.faults.push(fault);
            h.faults.clone()
        })
    }

    pub fn clear_faults(&self, lab: &Lab, node: &str) -> Result<(), ShellError> {
        self.with_host(lab, node, |h| h.faults.clear())
    }

    pub fn summary(&self, lab: &Lab, node: &str) -> Result<HostSummary, ShellError> {
        self.with_host(lab, node, |h| HostSummary {
            node: h.node.clone(),
            os_family: h.family,
            os_image: h.os_image.clone(),
            control_plane: h.control_plane,
            repository: h.repo_minor().map(|(a, b)| format!("v{a}.{b}")),
            installed: h
                .installed
                .iter()
                .map(|(k, v)| (k.clone(), v.to_string()))
                .collect(),
            holds: h.holds.iter().cloned().collect(),
            kubelet_running: h.kubelet_running.tag(),
            kubelet_active: h.kubelet_active,
            faults: h.faults.clone(),
            history: h.history.clone(),
        })
    }

    fn with_host<T>(
        &self,
        lab: &Lab,
        node: &str,
        f: impl FnOnce(&mut Host) -> T,
    ) -> Result<T, ShellError> {
        if let Err(e) = self.sync_scenario(lab) {
            tracing::warn!("node shells: {e:#}");
        }
        let node_obj = lab
            .store
            .get(&resources::NODE, "", node)
            .ok_or_else(|| ShellError::NodeNotFound(node.to_string()))?;
        let mut hosts = self.hosts.lock();
        if !hosts.contains_key(node) {
            let h = self.new_host(lab, &node_obj);
            hosts.insert(node.to_string(), h);
        }
        Ok(f(hosts.get_mut(node).expect("inserted")))
    }

    /// Set up a node's host from its Node object, the scenario and the static pods.
    #[allow(clippy::result_large_err)] // store.mutate's closure signature
    fn new_host(&self, lab: &Lab, node: &Value) -> Host {
        let name = str_at(node, "/metadata/name").to_string();
        let cfg = self.config.read();
        let ncfg = cfg.nodes.get(&name).cloned().unwrap_or_default();
        let node_image = str_at(node, "/status/nodeInfo/osImage");
        let os_image = ncfg
            .os_image
            .clone()
            .or_else(|| (!node_image.is_empty()).then(|| node_image.to_string()))
            .unwrap_or_else(|| {
                cfg.default_os_family
                    .unwrap_or(OsFamily::Apt)
                    .default_os_image()
                    .to_string()
            });
        let family = ncfg
            .os_family
            .unwrap_or_else(|| OsFamily::from_os_image(&os_image));
        // A declared family wins over an osImage of another family: report a matching image.
        let os_image = if OsFamily::from_os_image(&os_image) == family {
            os_image
        } else {
            family.default_os_image().to_string()
        };
        if os_image != node_image {
            let img = os_image.clone();
            let _ = lab.store.mutate(&resources::NODE, "", &name, |o| {
                o["status"]["nodeInfo"]["osImage"] = json!(img);
                Ok(())
            });
        }
        let lab_version = lab.version().git_version;
        let kubelet_version = KubeVersion::parse(str_at(node, "/status/nodeInfo/kubeletVersion"))
            .or_else(|| KubeVersion::parse(&lab_version))
            .unwrap_or_else(|| KubeVersion::new(1, 34, 0));
        let control_plane = is_control_plane(node);
        let static_pods = crate::sim::StaticPods::get(lab).for_node(&name);
        let tag_of = |component: &str| -> Option<String> {
            static_pods
                .get(component)
                .and_then(|img| image_tag(img))
                .or_else(|| {
                    lab.store
                        .get(
                            &resources::POD,
                            "kube-system",
                            &format!("{component}-{name}"),
                        )
                        .and_then(|p| image_tag(str_at(&p, "/spec/containers/0/image")))
                })
        };
        let control_plane_version = control_plane
            .then(|| {
                tag_of("kube-apiserver")
                    .and_then(|t| KubeVersion::parse(&t))
                    .or_else(|| KubeVersion::parse(&lab_version))
            })
            .flatten();
        let spec = HostSpec {
            node: name.clone(),
            control_plane,
            os_image,
            family,
            kubelet_version,
            control_plane_version,
            etcd_tag: tag_of("etcd").unwrap_or_else(|| "3.5.21-0".to_string()),
            kernel: Some(str_at(node, "/status/nodeInfo/kernelVersion"))
                .filter(|k| !k.is_empty())
                .unwrap_or("6.8.0-79-generic")
                .to_string(),
        };
        let mut h = Host::new(&spec, &self.repos.read());
        h.faults = ncfg.faults;
        h.add_site_packages(&ncfg.site_packages);
        if control_plane {
            h.pki = pki::issue(&ncfg.certificates.unwrap_or_default(), lab.clock.now());
        }
        h
    }

    /// A real node reports what its package database holds (see
    /// [`http::ExecRequest::installed`]): those versions replace the simulated ones.
    /// Inner Err: a version that does not parse, named.
    pub fn report_installed(
        &self,
        lab: &Lab,
        node: &str,
        installed: &BTreeMap<String, String>,
    ) -> Result<Result<(), String>, ShellError> {
        let mut parsed = BTreeMap::new();
        for (pkg, v) in installed {
            match version::PkgVersion::parse(v) {
                Some(p) => {
                    parsed.insert(pkg.clone(), p);
                }
                None => {
                    return Ok(Err(format!(
                        "installed {pkg}={v:?} is not a package version such as 1.35.2-1.1"
                    )));
                }
            }
        }
        self.with_host(lab, node, |h| h.installed.extend(parsed))
            .map(Ok)
    }

    /// Run `argv` on `node` with `stdin`; the cluster sees the effects before this returns.
    pub fn exec(
        &self,
        lab: &Lab,
        node: &str,
        argv: &[String],
        stdin: &str,
    ) -> Result<ExecOutput, ShellError> {
        if let Err(e) = self.sync_scenario(lab) {
            tracing::warn!("node shells: {e:#}");
        }
        let view = snapshot(lab);
        let repos = self.repos.read().clone();
        let now = lab.clock.now_rfc3339();
        let (out, effects) = self.with_host(lab, node, |h| {
            let mut ctx = interp::Ctx::new(&repos, view, now);
            let out = interp::run(h, &mut ctx, argv, stdin);
            (out, ctx.effects)
        })?;
        for e in &effects {
            apply_effect(lab, e);
        }
        Ok(out)
    }
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

/// Whether kubeadm's upgrade-health-check Job can schedule on the node: its pod tolerates
/// only `node-role.kubernetes.io/control-plane` and `.../master` with effect NoSchedule
/// (cmd/kubeadm/app/phases/upgrade/health.go createJob).
fn health_check_job_fits(node: &Value) -> bool {
    let cordoned = node
        .pointer("/spec/unschedulable")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let tolerated = |t: &Value| {
        let effect = str_at(t, "/effect");
        effect == "PreferNoSchedule"
            || (effect == "NoSchedule"
                && matches!(
                    str_at(t, "/key"),
                    "node-role.kubernetes.io/control-plane" | "node-role.kubernetes.io/master"
                ))
    };
    !cordoned
        && node
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .is_none_or(|ts| ts.iter().all(tolerated))
}

fn is_control_plane(node: &Value) -> bool {
    node.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .is_some_and(|l| {
            l.contains_key("node-role.kubernetes.io/control-plane")
                || l.contains_key("node-role.kubernetes.io/master")
        })
}

/// The tag of an image reference (`registry.k8s.io/kube-apiserver:v1.33.4` → `v1.33.4`).
fn image_tag(image: &str) -> Option<String> {
    let name_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    image[name_start..]
        .split_once(':')
        .map(|(_, t)| t.split('@').next().unwrap_or(t).to_string())
}

fn with_tag(image: &str, tag: &str) -> String {
    let name_start = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    let repo = match image[name_start..].split_once(':') {
        Some((n, _)) => format!("{}{n}", &image[..name_start]),
        None => image.to_string(),
    };
    format!("{repo}:{tag}")
}

/// `kubernetesVersion:` of a ClusterConfiguration document.
fn config_version(cluster_configuration: &str) -> Option<String> {
    cluster_configuration
        .lines()
        .find_map(|l| l.trim().strip_prefix("kubernetesVersion:"))
        .map(|v| v.trim().trim_matches('"').to_string())
}

/// What kubeadm reads from the cluster (versiongetter.go), from the store.
pub fn snapshot(lab: &Lab) -> ClusterView {
    let (nodes, _) = lab.store.list(&resources::NODE, &ListQuery::all());
    let nodes = nodes
        .iter()
        .map(|n| NodeView {
            name: str_at(n, "/metadata/name").to_string(),
            kubelet_version: Some(str_at(n, "/status/nodeInfo/kubeletVersion").to_string())
                .filter(|v| !v.is_empty()),
            control_plane: is_control_plane(n),
            job_schedulable: health_check_job_fits(n),
            ready: n
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| str_at(c, "/type") == "Ready" && str_at(c, "/status") == "True")
                }),
        })
        .collect();
    let (pods, _) = lab
        .store
        .list(&resources::POD, &ListQuery::in_namespace("kube-system"));
    let components = pods
        .iter()
        .filter(|p| str_at(p, "/metadata/labels/tier") == "control-plane")
        .filter_map(|p| {
            Some(ComponentView {
                component: str_at(p, "/metadata/labels/component").to_string(),
                node: str_at(p, "/spec/nodeName").to_string(),
                tag: image_tag(str_at(p, "/spec/containers/0/image"))?,
            })
        })
        .collect();
    let cm = lab
        .store
        .get(&resources::CONFIGMAP, "kube-system", "kubeadm-config");
    let tag_of = |res: &'static resources::Resource, name: &str| {
        lab.store
            .get(res, "kube-system", name)
            .and_then(|o| image_tag(str_at(&o, "/spec/template/spec/containers/0/image")))
    };
    ClusterView {
        server_version: lab.version().git_version,
        config_version: cm.and_then(|c| config_version(str_at(&c, "/data/ClusterConfiguration"))),
        nodes,
        components,
        kube_proxy_tag: tag_of(&resources::DAEMONSET, "kube-proxy"),
        coredns_tag: tag_of(&resources::DEPLOYMENT, "coredns"),
    }
}

/// Carry a node command's effect into the cluster.
#[allow(clippy::result_large_err)] // store.mutate's closure signature
pub fn apply_effect(lab: &Lab, e: &Effect) {
    match e {
        Effect::StaticPods { node, tag, etcd } => {
            let sp = crate::sim::StaticPods::get(lab);
            let current = sp.for_node(node);
            let mut images: Vec<(&str, String)> = CONTROL_PLANE_COMPONENTS
                .iter()
                .map(|c| {
                    let base = current
                        .get(*c)
                        .cloned()
                        .unwrap_or_else(|| format!("registry.k8s.io/{c}"));
                    (*c, with_tag(&base, tag))
                })
                .collect();
            if let Some(e) = etcd {
                let base = current
                    .get("etcd")
                    .cloned()
                    .unwrap_or_else(|| "registry.k8s.io/etcd".into());
                images.push(("etcd", with_tag(&base, e)));
            }
            for (c, image) in images {
                sp.set_image(node, c, &image);
                // kubeadm waits for the kubelet to restart the component before it goes on
                // (phases/upgrade/staticpods.go upgradeComponent, WaitForStaticPodHash), so
                // the mirror pod carries the new image, and a new UID, by the time the
                // command returns.
                crate::sim::kubelet::replace_mirror_pod(lab, node, c, &image);
            }
            // The restart itself: on a single control plane the API is gone meanwhile.
            crate::sim::controlplane::restart(lab, node);
        }
        Effect::ClusterVersion { version } => {
            if let Ok(v) = ServerVersion::parse(version) {
                lab.set_version(v);
            }
            let doc = format!(
                "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: {version}\n"
            );
            let updated = lab.store.mutate(
                &resources::CONFIGMAP,
                "kube-system",
                "kubeadm-config",
                |cm| {
                    let text = str_at(cm, "/data/ClusterConfiguration").to_string();
                    let new = if config_version(&text).is_some() {
                        text.lines()
                            .map(|l| {
                                if l.trim_start().starts_with("kubernetesVersion:") {
                                    format!("kubernetesVersion: {version}")
                                } else {
                                    l.to_string()
                                }
                            })
                            .collect::<Vec<_>>()
                            .join("\n")
                            + "\n"
                    } else {
                        format!(
                            "{text}{}kubernetesVersion: {version}\n",
                            if text.is_empty() || text.ends_with('\n') {
                                ""
                            } else {
                                "\n"
                            }
                        )
                    };
                    cm["data"]["ClusterConfiguration"] = json!(new);
                    Ok(())
                },
            );
            if updated.is_err() {
                let _ = lab.store.create(
                    &resources::CONFIGMAP,
                    "kube-system",
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "kubeadm-config", "namespace": "kube-system"},
                           "data": {"ClusterConfiguration": doc}}),
                    false,
                );
            }
        }
        Effect::KubeProxy { tag } => {
            let _ = lab
                .store
                .mutate(&resources::DAEMONSET, "kube-system", "kube-proxy", |ds| {
                    if let Some(img) = ds
                        .pointer("/spec/template/spec/containers/0/image")
                        .and_then(Value::as_str)
                    {
                        let new = with_tag(img, tag);
                        ds["spec"]["template"]["spec"]["containers"][0]["image"] = json!(new);
                    }
                    Ok(())
                });
        }
        Effect::KubeletService { node, running } => {
            let mode = if *running {
                crate::sim::KubeletMode::Running
            } else {
                crate::sim::KubeletMode::Stopped
            };
            crate::sim::KubeletControl::get(lab).set_mode(node, mode);
        }
        Effect::KubeletVersion { node, version } => {
            let _ = lab.store.mutate(&resources::NODE, "", node, |n| {
                n["status"]["nodeInfo"]["kubeletVersion"] = json!(version);
                Ok(())
            });
        }
    }
}

/// Register the node shells on a lab: the exec hook for the simulated kubelet.
pub fn register(lab: &Arc<Lab>) {
    let weak = Arc::downgrade(lab);
    let f: crate::exec::NodeExecFn = Arc::new(move |node: &str, argv: &[String]| -> ExecOutput {
        let Some(lab) = weak.upgrade() else {
            return ExecOutput::fail(1, "the lab is shutting down\n");
        };
        match NodeShells::get(&lab).exec(&lab, node, argv, "") {
            Ok(o) => o,
            Err(e) => ExecOutput::fail(1, format!("{e}\n")),
        }
    });
    crate::exec::register(lab, f);
}

/// The node shells as a lab plugin: registers the exec hook and serves the endpoints.
pub struct NodeShellPlugin;

impl LabPlugin for NodeShellPlugin {
    fn name(&self) -> &'static str {
        "nodeshell"
    }
    fn start(&self, lab: &Arc<Lab>) {
        register(lab);
    }
    fn routes(&self) -> Option<axum::Router<Arc<Lab>>> {
        Some(http::routes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tags_and_retagging() {
        assert_eq!(
            image_tag("registry.k8s.io/kube-apiserver:v1.33.4").as_deref(),
            Some("v1.33.4")
        );
        assert_eq!(
            image_tag("localhost:5000/kube-proxy:v1.33.4").as_deref(),
            Some("v1.33.4")
        );
        assert_eq!(image_tag("localhost:5000/kube-proxy"), None);
        assert_eq!(
            with_tag("registry.k8s.io/kube-proxy:v1.33.4", "v1.34.1"),
            "registry.k8s.io/kube-proxy:v1.34.1"
        );
        assert_eq!(
            with_tag("localhost:5000/kube-proxy", "v1.34.1"),
            "localhost:5000/kube-proxy:v1.34.1"
        );
    }

    #[test]
    fn cluster_configuration_version() {
        let doc = "apiVersion: kubeadm.k8s.io/v1beta4\nkind: ClusterConfiguration\nkubernetesVersion: v1.33.4\nnetworking:\n  podSubnet: 10.244.0.0/16\n";
        assert_eq!(config_version(doc).as_deref(), Some("v1.33.4"));
        assert_eq!(config_version("kind: ClusterConfiguration\n"), None);
    }
}
