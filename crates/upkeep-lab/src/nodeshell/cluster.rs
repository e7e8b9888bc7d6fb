//! What a node's kubeadm sees of the cluster (a snapshot taken before a command runs) and
//! what its commands change there ([`Effect`]s, applied to the store afterwards).
//!
//! The snapshot mirrors kubeadm's `VersionGetter` (cmd/kubeadm/app/phases/upgrade/
//! versiongetter.go): the cluster version from `/version`, kubelet versions from
//! `node.status.nodeInfo.kubeletVersion`, control-plane component versions from the image tags
//! of the `component=<name>,tier=control-plane` pods in kube-system.

use serde::{Deserialize, Serialize};

use super::version::KubeVersion;

/// One Node as kubeadm sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeView {
    pub name: String,
    pub kubelet_version: Option<String>,
    pub control_plane: bool,
    pub ready: bool,
    /// Schedulable for kubeadm's upgrade-health-check Job: not cordoned, and no NoSchedule or
    /// NoExecute taint but the control-plane ones the Job tolerates.
    #[serde(default)]
    pub job_schedulable: bool,
}

/// One control-plane mirror pod: component, node and image tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentView {
    pub component: String,
    pub node: String,
    pub tag: String,
}

/// The cluster as kubeadm reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    /// `/version` gitVersion.
    pub server_version: String,
    /// `kubernetesVersion` of the ClusterConfiguration in the `kubeadm-config` ConfigMap.
    pub config_version: Option<String>,
    pub nodes: Vec<NodeView>,
    pub components: Vec<ComponentView>,
    /// Image tag of the kube-proxy DaemonSet.
    pub kube_proxy_tag: Option<String>,
    /// Image tag of the CoreDNS Deployment.
    pub coredns_tag: Option<String>,
}

/// A change a node command makes to the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Effect {
    /// kubeadm rewrote a node's control-plane static pod manifests: the kubelet restarts
    /// them, so the mirror pods' images carry the new tag.
    StaticPods {
        node: String,
        tag: String,
        /// The new etcd image tag, when kubeadm upgraded etcd too.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etcd: Option<String>,
    },
    /// `kubeadm upgrade apply` uploaded a new ClusterConfiguration and the upgraded apiserver
    /// answers `/version` with the new version.
    ClusterVersion { version: String },
    /// The kube-proxy addon was upgraded (its DaemonSet image).
    KubeProxy { tag: String },
    /// `systemctl stop|start kubelet`: the node's kubelet stops or resumes heartbeats.
    KubeletService { node: String, running: bool },
    /// The kubelet restarted with another binary and reports its version.
    KubeletVersion { node: String, version: String },
}

impl ClusterView {
    pub fn cluster_version(&self) -> Option<KubeVersion> {
        KubeVersion::parse(&self.server_version)
    }

    /// The version `kubeadm upgrade node` deploys: the uploaded ClusterConfiguration's,
    /// falling back to the served version when the ConfigMap is missing.
    pub fn config_version(&self) -> Option<KubeVersion> {
        self.config_version
            .as_deref()
            .and_then(KubeVersion::parse)
            .or_else(|| self.cluster_version())
    }

    pub fn node(&self, name: &str) -> Option<&NodeView> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The tag of a component's mirror pod on a node.
    pub fn component_tag(&self, component: &str, node: &str) -> Option<&str> {
        self.components
            .iter()
            .find(|c| c.component == component && c.node == node)
            .map(|c| c.tag.as_str())
    }

    /// Control-plane nodes other than `except` whose kube-apiserver is not at `version`
    /// (kubeadm phases/upgrade/postupgrade.go `unupgradedControlPlaneInstances`).
    pub fn unupgraded_control_planes(&self, version: &KubeVersion, except: &str) -> Vec<String> {
        let mut out: Vec<String> = self
            .components
            .iter()
            .filter(|c| c.component == "kube-apiserver" && c.node != except)
            .filter(|c| KubeVersion::parse(&c.tag).as_ref() != Some(version))
            .map(|c| c.node.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// Keep the snapshot in step with what a command just did, so the next command of the
    /// same script sees it.
    pub fn apply(&mut self, e: &Effect) {
        match e {
            Effect::StaticPods { node, tag, etcd } => {
                for c in self.components.iter_mut().filter(|c| &c.node == node) {
                    if c.component != "etcd" {
                        c.tag = tag.clone();
                    } else if let Some(e) = etcd {
                        c.tag = e.clone();
                    }
                }
            }
            Effect::ClusterVersion { version } => {
                self.server_version = version.clone();
                self.config_version = Some(version.clone());
            }
            Effect::KubeProxy { tag } => self.kube_proxy_tag = Some(tag.clone()),
            // Readiness changes later, through the node lifecycle controller.
            Effect::KubeletService { .. } => {}
            Effect::KubeletVersion { node, version } => {
                if let Some(n) = self.nodes.iter_mut().find(|n| &n.name == node) {
                    n.kubelet_version = Some(version.clone());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effects_update_the_snapshot() {
        let mut v = ClusterView {
            server_version: "v1.33.4".into(),
            config_version: Some("v1.33.4".into()),
            nodes: vec![NodeView {
                name: "w1".into(),
                kubelet_version: Some("v1.33.4".into()),
                control_plane: false,
                ready: true,
                job_schedulable: true,
            }],
            components: vec![
                ComponentView {
                    component: "kube-apiserver".into(),
                    node: "cp1".into(),
                    tag: "v1.33.4".into(),
                },
                ComponentView {
                    component: "kube-apiserver".into(),
                    node: "cp2".into(),
                    tag: "v1.33.4".into(),
                },
                ComponentView {
                    component: "etcd".into(),
                    node: "cp1".into(),
                    tag: "3.5.21-0".into(),
                },
            ],
            kube_proxy_tag: Some("v1.33.4".into()),
            coredns_tag: None,
        };
        let target = KubeVersion::parse("v1.34.1").unwrap();
        assert_eq!(v.unupgraded_control_planes(&target, "cp1"), ["cp2"]);
        v.apply(&Effect::StaticPods {
            node: "cp2".into(),
            tag: "v1.34.1".into(),
            etcd: None,
        });
        assert!(v.unupgraded_control_planes(&target, "cp1").is_empty());
        assert_eq!(v.component_tag("etcd", "cp1"), Some("3.5.21-0"));
        v.apply(&Effect::ClusterVersion {
            version: "v1.34.1".into(),
        });
        assert_eq!(v.config_version(), Some(target));
        v.apply(&Effect::KubeletVersion {
            node: "w1".into(),
            version: "v1.34.1".into(),
        });
        assert_eq!(
            v.node("w1").unwrap().kubelet_version.as_deref(),
            Some("v1.34.1")
        );
    }
}
