//! Gathers a [`ClusterVersions`] snapshot with read access only, the way
//! kubeadm does (kubernetes/kubernetes `cmd/kubeadm/app/phases/upgrade/versiongetter.go`):
//! `/version`; kube-system pods labelled `tier=control-plane` by their
//! `component` label, version from the tag of `spec.containers[0].image`,
//! keyed to `spec.nodeName`; `node.status.nodeInfo.kubeletVersion`; and the
//! kube-proxy pods (`k8s-app=kube-proxy`), else the kube-proxy DaemonSet image.
//!
//! Lists are paged ([`crate::list::for_each_page`]) and each page is reduced
//! to the few strings kept before the next is fetched, so memory stays flat
//! on large clusters.

use anyhow::{Context as _, anyhow};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, ListParams};

use super::snapshot::{ClusterVersions, Component, Observed};

const KUBE_SYSTEM: &str = "kube-system";

/// The permissions `collect` needs, for error messages.
pub const REQUIRED_ACCESS: &str =
    "get /version, list nodes, list pods in kube-system, get daemonsets in kube-system";

/// Collects every component version. `kubectl` is the local client, when known.
pub async fn collect(
    client: &Client,
    kubectl: Option<Observed>,
) -> anyhow::Result<ClusterVersions> {
    let mut snapshot = ClusterVersions::default();

    let info = client
        .apiserver_version()
        .await
        .map_err(|e| api_error(e, "get /version (the non-resource URL)"))?;
    snapshot.served = Some(Observed::from_version(
        Component::KubeApiserver,
        None,
        &info.git_version,
        "/version",
    ));

    // Control-plane static pods, one list for all five components.
    let pods: Api<Pod> = Api::namespaced(client.clone(), KUBE_SYSTEM);
    let params = ListParams::default().labels("tier=control-plane");
    crate::list::for_each_page(&pods, &params, |pod: Pod| {
        let labels = pod.metadata.labels.as_ref();
        let Some(component) = labels
            .and_then(|l| l.get("component"))
            .and_then(|c| Component::from_static_pod_label(c))
        else {
            return;
        };
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.as_deref());
        let image = spec
            .and_then(|s| s.containers.first())
            .and_then(|c| c.image.as_deref())
            .unwrap_or("");
        snapshot.components.push(Observed::from_image(
            component,
            node,
            image,
            format!("pod {KUBE_SYSTEM}/{name} image"),
        ));
        if component == Component::KubeApiserver
            && let Some(n) = node
        {
            snapshot.control_plane_nodes.push(n.to_string());
        }
    })
    .await
    .map_err(|e| api_error(e, "list pods in namespace kube-system"))?;
    let visible = snapshot.of(Component::KubeApiserver).next().is_some();
    snapshot.control_plane_visible = visible;
    if !snapshot.control_plane_visible
        && let Some(served) = &snapshot.served
    {
        // Managed control plane: /version is the only apiserver we can see.
        snapshot.components.push(served.clone());
    }

    // Kubelets.
    let nodes: Api<Node> = Api::all(client.clone());
    let mut down: Vec<Node> = Vec::new();
    crate::list::for_each_page(&nodes, &ListParams::default(), |node: Node| {
        let name = node.metadata.name.clone().unwrap_or_default();
        if !crate::drain::capacity::node_ready(&node) {
            down.push(node.clone());
        }
        let is_cp = node
            .metadata
            .labels
            .as_ref()
            .is_some_and(crate::controlplane::is_control_plane);
        if is_cp {
            snapshot.control_plane_nodes.push(name.clone());
        }
        let version = node
            .status
            .as_ref()
            .and_then(|s| s.node_info.as_ref())
            .map(|i| i.kubelet_version.as_str())
            .unwrap_or("");
        let mut kubelet = Observed::from_version(
            Component::Kubelet,
            Some(&name),
            version,
            "node status.nodeInfo.kubeletVersion",
        );
        if version.is_empty() {
            kubelet.unknown = Some(
                "the node has not reported a kubelet version (status.nodeInfo is empty)".into(),
            );
        }
        snapshot.components.push(kubelet);
    })
    .await
    .map_err(|e| api_error(e, "list nodes"))?;
    snapshot.control_plane_nodes.sort();
    snapshot.control_plane_nodes.dedup();

    // A NotReady node: when the taint manager evicts its pods (their tolerations decide).
    // Only these nodes' pods are read, so a healthy cluster costs no pod list.
    for node in down {
        let name = node.metadata.name.clone().unwrap_or_default();
        let all: Api<Pod> = Api::all(client.clone());
        let on = all
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
            .map_err(|e| api_error(e, "list pods (on a NotReady node)"))?;
        if let Some(n) =
            crate::drain::lifecycle::not_ready(&node, &on.items, jiff::Timestamp::now())
        {
            snapshot.not_ready.push((name, n));
        }
    }

    // kube-proxy pods, else the DaemonSet.
    let mut proxies = 0usize;
    let params = ListParams::default().labels("k8s-app=kube-proxy");
    crate::list::for_each_page(&pods, &params, |pod: Pod| {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let spec = pod.spec.as_ref();
        let node = spec.and_then(|s| s.node_name.as_deref());
        let image = spec
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == "kube-proxy")
                    .or_else(|| s.containers.first())
            })
            .and_then(|c| c.image.as_deref())
            .unwrap_or("");
        proxies += 1;
        snapshot.components.push(Observed::from_image(
            Component::KubeProxy,
            node,
            image,
            format!("pod {KUBE_SYSTEM}/{name} image"),
        ));
    })
    .await
    .map_err(|e| api_error(e, "list pods in namespace kube-system"))?;
    if proxies == 0 {
        let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), KUBE_SYSTEM);
        let ds = daemonsets
            .get_opt("kube-proxy")
            .await
            .map_err(|e| api_error(e, "get daemonsets.apps in namespace kube-system"))?;
        if let Some(image) = ds
            .as_ref()
            .and_then(|d| d.spec.template.spec.as_ref())
            .and_then(|s| {
                s.containers
                    .iter()
                    .find(|c| c.name == "kube-proxy")
                    .or_else(|| s.containers.first())
            })
            .and_then(|c| c.image.clone())
        {
            snapshot.components.push(Observed::from_image(
                Component::KubeProxy,
                None,
                &image,
                format!("daemonset {KUBE_SYSTEM}/kube-proxy image"),
            ));
        }
    }

    if let Some(k) = kubectl {
        snapshot.components.push(k);
    }
    Ok(snapshot)
}

/// Turns an API error into one that names what was being done and, on 401
/// and 403, the missing permission.
pub fn api_error(error: kube::Error, permission: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 403 => anyhow!(
            "permission denied: the current user may not {permission} ({}). \
             Checking skew needs read access: {REQUIRED_ACCESS}",
            status.message
        ),
        kube::Error::Api(status) if status.code == 401 => anyhow!(
            "unauthorized: the API server rejected the credentials while trying to {permission} ({}); \
             check the kubeconfig user or --token",
            status.message
        ),
        _ => anyhow::Error::new(error).context(format!("could not {permission}")),
    }
}

/// The local kubectl's version, from `kubectl version --client -o json`.
/// `Ok(None)` when kubectl is not on PATH.
pub fn local_kubectl(program: &str) -> anyhow::Result<Option<Observed>> {
    let output = match std::process::Command::new(program)
        .args(["version", "--client", "-o", "json"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(e).with_context(|| format!("could not run {program} version --client"));
        }
    };
    if !output.status.success() {
        return Err(anyhow!(
            "{program} version --client -o json failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(Some(parse_kubectl_version_json(&output.stdout)?))
}

/// Reads `clientVersion.gitVersion` from `kubectl version --client -o json`.
pub fn parse_kubectl_version_json(json: &[u8]) -> anyhow::Result<Observed> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .context("kubectl version printed something other than JSON")?;
    let git = value
        .pointer("/clientVersion/gitVersion")
        .and_then(|v| v.as_str())
        .context("kubectl version -o json has no clientVersion.gitVersion")?;
    Ok(Observed::from_version(
        Component::Kubectl,
        None,
        git,
        "kubectl version --client",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    #[test]
    fn forbidden_names_the_missing_permission() {
        let status = Status::failure(
            "nodes is forbidden: User \"viewer\" cannot list resource \"nodes\"",
            "Forbidden",
        )
        .with_code(403)
        .boxed();
        let text = format!("{:#}", api_error(kube::Error::Api(status), "list nodes"));
        assert!(
            text.starts_with("permission denied: the current user may not list nodes"),
            "{text}"
        );
        assert!(
            text.contains("User \\\"viewer\\\"") || text.contains("User \"viewer\""),
            "{text}"
        );
        assert!(text.contains(REQUIRED_ACCESS), "{text}");

        let status = Status::failure("Unauthorized", "Unauthorized")
            .with_code(401)
            .boxed();
        let text = format!("{:#}", api_error(kube::Error::Api(status), "get /version"));
        assert!(text.starts_with("unauthorized"), "{text}");

        let status = Status::failure("etcd timeout", "InternalError")
            .with_code(500)
            .boxed();
        let text = format!("{:#}", api_error(kube::Error::Api(status), "list nodes"));
        assert!(text.starts_with("could not list nodes"), "{text}");
    }

    #[test]
    fn kubectl_client_version_json() {
        let json = br#"{"clientVersion":{"major":"1","minor":"37","gitVersion":"v1.37.1","platform":"linux/amd64"},"kustomizeVersion":"v5.7.1"}"#;
        let o = parse_kubectl_version_json(json).unwrap();
        assert_eq!(o.component, Component::Kubectl);
        assert_eq!(o.version.unwrap().to_string(), "v1.37.1");
        assert!(parse_kubectl_version_json(b"{}").is_err());
        assert!(parse_kubectl_version_json(b"Client Version: v1.37.1").is_err());
    }

    #[test]
    fn a_missing_kubectl_is_not_an_error() {
        assert!(
            local_kubectl("kubectl-that-does-not-exist-anywhere")
                .unwrap()
                .is_none()
        );
    }
}
