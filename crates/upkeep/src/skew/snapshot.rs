//! The plain data the skew engine decides over: which component runs which
//! version, where. Gathered by [`super::collect`] or built by hand in tests.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::version::{ImageVersion, KubeVersion, MinorVersion};

/// A Kubernetes component the skew policy (or the report) talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    CloudControllerManager,
    Etcd,
    Kubelet,
    KubeProxy,
    Kubectl,
}

impl Component {
    /// Every component, in the order reports list them.
    pub const ALL: [Component; 8] = [
        Component::KubeApiserver,
        Component::KubeControllerManager,
        Component::KubeScheduler,
        Component::CloudControllerManager,
        Component::Etcd,
        Component::Kubelet,
        Component::KubeProxy,
        Component::Kubectl,
    ];

    /// The upstream name (`kube-apiserver`, `kubelet`, ...), which is also
    /// the `component` label of kubeadm's static pods.
    pub fn name(self) -> &'static str {
        match self {
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::CloudControllerManager => "cloud-controller-manager",
            Component::Etcd => "etcd",
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
            Component::Kubectl => "kubectl",
        }
    }

    /// The component named by a static pod's `component` label.
    pub fn from_static_pod_label(label: &str) -> Option<Component> {
        [
            Component::KubeApiserver,
            Component::KubeControllerManager,
            Component::KubeScheduler,
            Component::CloudControllerManager,
            Component::Etcd,
        ]
        .into_iter()
        .find(|c| c.name() == label)
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One observed instance of a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observed {
    pub component: Component,
    /// The node it runs on; `None` when not node-bound (kubectl, `/version`,
    /// the kube-proxy DaemonSet fallback).
    pub node: Option<String>,
    /// What was reported, verbatim (a version or an image reference).
    pub reported: String,
    /// The version, when it could be read.
    pub version: Option<KubeVersion>,
    /// Why the version could not be read (digest-only image, garbage).
    pub unknown: Option<String>,
    /// Where the fact came from (`node status`, `pod kube-system/x image`, ...).
    pub source: String,
}

impl Observed {
    /// An instance that reported a version string (`v1.31.2-eks-1a2b`).
    pub fn from_version(
        component: Component,
        node: Option<&str>,
        reported: &str,
        source: impl Into<String>,
    ) -> Self {
        let (version, unknown) = match KubeVersion::parse(reported) {
            Ok(v) => (Some(v), None),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            component,
            node: node.map(str::to_string),
            reported: reported.to_string(),
            version,
            unknown,
            source: source.into(),
        }
    }

    /// An instance known by its container image reference.
    pub fn from_image(
        component: Component,
        node: Option<&str>,
        image: &str,
        source: impl Into<String>,
    ) -> Self {
        let (version, unknown) = match ImageVersion::parse(image) {
            Ok(ImageVersion::Tagged { version, .. }) => (Some(version), None),
            Ok(ImageVersion::DigestOnly { .. }) => (
                None,
                Some(format!(
                    "the image {image:?} is pinned by digest only, so its version cannot be read"
                )),
            ),
            Err(e) => (None, Some(e.to_string())),
        };
        Self {
            component,
            node: node.map(str::to_string),
            reported: image.to_string(),
            version,
            unknown,
            source: source.into(),
        }
    }

    /// The minor, when the version is known.
    pub fn minor(&self) -> Option<MinorVersion> {
        self.version.as_ref().map(KubeVersion::minor_version)
    }

    /// The version for display: the parsed one, else what was reported.
    pub fn shown_version(&self) -> String {
        match &self.version {
            // etcd tags carry no leading v (3.5.15-0).
            Some(v) if self.component == Component::Etcd => {
                format!("{}.{}.{}{}", v.major, v.minor, v.patch, v.suffix)
            }
            Some(v) => v.to_string(),
            None => self.reported.clone(),
        }
    }
}

/// Every version the skew engine needs, as plain data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterVersions {
    /// What `/version` answered: one apiserver instance, whichever served the
    /// request. Informational when the control plane is visible; otherwise the
    /// collector also records it as the only kube-apiserver in `components`.
    pub served: Option<Observed>,
    /// Whether kube-system holds kubeadm-style control-plane static pods.
    /// Managed clusters (EKS, GKE, AKS) hide them.
    pub control_plane_visible: bool,
    /// Nodes that run the control plane (labelled
    /// `node-role.kubernetes.io/control-plane` or hosting a kube-apiserver pod).
    pub control_plane_nodes: Vec<String>,
    /// Every observed instance of every component.
    pub components: Vec<Observed>,
    /// Nodes that are not Ready, with the node lifecycle's eviction countdown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ready: Vec<(String, crate::drain::lifecycle::NotReady)>,
}

impl ClusterVersions {
    /// The observed instances of one component.
    pub fn of(&self, component: Component) -> impl Iterator<Item = &Observed> {
        self.components
            .iter()
            .filter(move |o| o.component == component)
    }

    /// The oldest and newest known kube-apiserver minors.
    pub fn apiserver_span(&self) -> Option<(MinorVersion, MinorVersion)> {
        let minors: Vec<MinorVersion> = self
            .of(Component::KubeApiserver)
            .filter_map(Observed::minor)
            .collect();
        Some((*minors.iter().min()?, *minors.iter().max()?))
    }

    /// The kubelet on a node, when known.
    pub fn kubelet_on(&self, node: &str) -> Option<&Observed> {
        self.of(Component::Kubelet)
            .find(|o| o.node.as_deref() == Some(node))
    }

    /// Whether a node runs the control plane.
    pub fn is_control_plane(&self, node: &str) -> bool {
        self.control_plane_nodes.iter().any(|n| n == node)
    }
}
