//! `--via pod`: each command runs in a privileged pod pinned to the node,
//! sharing the host's PID namespace, entering the host's namespaces with
//! `nsenter -t 1 -m -u -i -n -p --` (the pattern of `kubectl debug node/...`
//! with the sysadmin profile, and of kured's and node-shell plugins).
//! The output comes from the pod's log, the result from its exit code and
//! phase; the pod is deleted afterwards, also when the run is interrupted.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use kube::runtime::wait::await_condition;
use kube::{Client, ResourceExt as _};
use serde_json::json;

use super::recipe::Cmd;
use super::transport::{CmdOutput, NodeTarget, Transport};
use super::validate;

/// The namespace the pods run in.
pub const NAMESPACE: &str = "kube-system";
/// The label marking them, for a manual clean-up:
/// `kubectl delete pod -n kube-system -l app.kubernetes.io/managed-by=upkeep-upgrade-node`.
pub const MANAGED_BY: &str = "upkeep-upgrade-node";

pub struct PodShell {
    client: Client,
    image: String,
    timeout: Duration,
    current: Mutex<Option<String>>,
}

impl PodShell {
    pub fn new(client: Client, image: impl Into<String>, timeout: Duration) -> PodShell {
        PodShell {
            client,
            image: image.into(),
            timeout,
            current: Mutex::new(None),
        }
    }

    /// The pod for one command (pure, for tests and `--dry-run -o json`).
    pub fn manifest(image: &str, node: &str, cmd: &Cmd) -> anyhow::Result<Pod> {
        let node = validate::node_name(node).map_err(anyhow::Error::msg)?;
        let mut command: Vec<String> = ["nsenter", "-t", "1", "-m", "-u", "-i", "-n", "-p", "--"]
            .into_iter()
            .map(String::from)
            .collect();
        command.extend(cmd.argv().iter().cloned());
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "generateName": "upkeep-upgrade-",
                "namespace": NAMESPACE,
                "labels": {
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                    "upkeep.dev/node": node,
                },
            },
            "spec": {
                "nodeName": node,
                "hostPID": true,
                "hostNetwork": true,
                "restartPolicy": "Never",
                // Runs on cordoned, tainted and control-plane nodes alike.
                "tolerations": [{"operator": "Exists"}],
                "priorityClassName": "system-node-critical",
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "nsenter",
                    "image": image,
                    "command": command,
                    "securityContext": {"privileged": true},
                }],
            },
        });
        serde_json::from_value(pod).context("could not build the pod")
    }

    async fn delete(&self, api: &Api<Pod>, name: &str) {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..DeleteParams::default()
        };
        if let Err(e) = api.delete(name, &dp).await {
            tracing::warn!("could not delete pod {NAMESPACE}/{name}: {e}");
        }
    }
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

impl Transport for PodShell {
    fn describe(&self) -> String {
        format!("privileged pod ({})", self.image)
    }

    async fn run(&self, node: &NodeTarget, cmd: &Cmd) -> anyhow::Result<CmdOutput> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let manifest = PodShell::manifest(&self.image, &node.name, cmd)?;
        let created = api
            .create(&PostParams::default(), &manifest)
            .await
            .with_context(|| {
                format!(
                    "could not create a pod in {NAMESPACE} on node {}",
                    node.name
                )
            })?;
        let name = created.name_any();
        *self.current.lock().expect("pod name") = Some(name.clone());
        let finished = tokio::time::timeout(
            self.timeout,
            await_condition(api.clone(), &name, |p: Option<&Pod>| {
                p.is_some_and(|p| matches!(phase(p), "Succeeded" | "Failed"))
            }),
        )
        .await;
        let result = async {
            let pod = match finished {
                Err(_) => bail!(
                    "pod {NAMESPACE}/{name} did not finish within {:?} (is the image {:?} pullable on {}?)",
                    self.timeout,
                    self.image,
                    node.name
                ),
                Ok(Err(e)) => return Err(e).context(format!("lost track of pod {NAMESPACE}/{name}")),
                Ok(Ok(None)) => bail!("pod {NAMESPACE}/{name} disappeared before it finished"),
                Ok(Ok(Some(pod))) => pod,
            };
            let logs = api
                .logs(&name, &LogParams::default())
                .await
                .with_context(|| format!("could not read the log of pod {NAMESPACE}/{name}"))?;
            let code = exit_code(&pod).or(match phase(&pod) {
                "Succeeded" => Some(0),
                _ => Some(1),
            });
            Ok(CmdOutput {
                code,
                stdout: logs,
                stderr: String::new(),
            })
        }
        .await;
        self.delete(&api, &name).await;
        *self.current.lock().expect("pod name") = None;
        result
    }

    async fn cleanup(&self) {
        let name = self.current.lock().expect("pod name").take();
        if let Some(name) = name {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
            self.delete(&api, &name).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_privileged_pinned_and_argv() {
        let pod = PodShell::manifest(
            "busybox:1.36",
            "node01",
            &Cmd::new(["apt-get", "install", "-y", "kubeadm=1.34.1-*"]),
        )
        .unwrap();
        let spec = pod.spec.unwrap();
        assert_eq!(spec.node_name.as_deref(), Some("node01"));
        assert_eq!(spec.host_pid, Some(true));
        let c = &spec.containers[0];
        assert_eq!(c.security_context.as_ref().unwrap().privileged, Some(true));
        assert_eq!(
            c.command.as_ref().unwrap().join(" "),
            "nsenter -t 1 -m -u -i -n -p -- apt-get install -y kubeadm=1.34.1-*"
        );
        assert!(PodShell::manifest("busybox", "bad node", &Cmd::new(["true"])).is_err());
    }
}
