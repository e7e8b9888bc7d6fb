//! `--via pod`: each command runs in a privileged pod pinned to the node,
//! sharing the host's PID namespace, entering the host's namespaces with
//! `nsenter -t 1 -m -u -i -n -p --` (the pattern of `kubectl debug node/...`
//! with the sysadmin profile, and of kured's and node-shell plugins).
//! The output comes from the pod's log, the result from its exit code and
//! phase. The pod is deleted only once it has ended: deleting it earlier kills
//! the command (kubeadm mid-upgrade). Its watch reconnects through apiserver
//! restarts (the pod running `kubeadm upgrade apply` outlives its own API
//! server); when the wait gives up, or the run is interrupted, a pod still
//! running is left in place with the commands to follow it.

use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::Client;
use kube::api::{Api, DeleteParams, LogParams, PostParams};
use serde_json::json;

use super::recipe::Cmd;
use super::transport::{CmdOutput, NodeTarget, Transport};
use super::validate;
use crate::transient;

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
                "name": pod_name(node),
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
        match api.delete(name, &dp).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(
                "could not delete the finished pod {NAMESPACE}/{name}: {e}; delete it with `kubectl delete pod -n {NAMESPACE} {name}`"
            ),
        }
    }

    /// Deletes the pod if it has ended (or is gone); otherwise leaves it running and
    /// says how to follow it. Returns the advice when the pod was left.
    async fn delete_if_ended(&self, api: &Api<Pod>, name: &str) -> Option<String> {
        match api.get_opt(name).await {
            Ok(None) => None,
            Ok(Some(p)) if ended(&p) => {
                self.delete(api, name).await;
                None
            }
            Ok(Some(_)) => Some(left_running(name)),
            Err(e) => Some(format!(
                "could not check pod {NAMESPACE}/{name} ({e}); {}",
                left_running(name)
            )),
        }
    }
}

/// A name chosen here rather than by `generateName`, so a create whose answer was lost can
/// be recognised (409 AlreadyExists) instead of starting the command twice.
fn pod_name(node: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let n = nanos
        ^ u64::from(std::process::id()).rotate_left(32)
        ^ SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let alphabet = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| alphabet[((n >> (i * 6)) % alphabet.len() as u64) as usize] as char)
        .collect();
    // node names are at most 253 characters; pod names too
    let node: String = node.chars().take(220).collect();
    format!("upkeep-upgrade-{node}-{suffix}")
}

fn ended(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn left_running(name: &str) -> String {
    format!(
        "the pod {NAMESPACE}/{name} may still be running its command, so it was left in place: follow it with `kubectl logs -n {NAMESPACE} -f {name}` and `kubectl get pod -n {NAMESPACE} {name}`, and delete it once it has finished"
    )
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
        let name = manifest.metadata.name.clone().unwrap_or_default();
        match api.create(&PostParams::default(), &manifest).await {
            Ok(_) => {}
            // our own create, answered on a retry
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                // The answer may have been lost after the pod was created.
                if !matches!(api.get_opt(&name).await, Ok(Some(_))) {
                    return Err(e).with_context(|| {
                        format!(
                            "could not create a pod in {NAMESPACE} on node {}",
                            node.name
                        )
                    });
                }
            }
        }
        *self.current.lock().expect("pod name") = Some(name.clone());
        // Named, so an operator can follow or find it; the probe is one pod.
        let what = cmd
            .argv()
            .iter()
            .find(|w| !matches!(w.as_str(), "sudo" | "sh" | "-c"))
            .and_then(|w| w.lines().next())
            .unwrap_or("");
        let more = if cmd.argv().iter().any(|w| w.contains('\n')) {
            " ..."
        } else {
            ""
        };
        eprintln!(
            "node {}: pod {NAMESPACE}/{name} runs {what}{more}",
            node.name
        );
        let finished = transient::wait_for(api.clone(), &name, self.timeout, |p: Option<&Pod>| {
            p.is_none_or(ended)
        })
        .await;
        let pod = match finished {
            Err(e) => {
                // Never delete a pod whose command may still run: it may be kubeadm.
                let left = self
                    .delete_if_ended(&api, &name)
                    .await
                    .unwrap_or_else(|| "the pod has ended since".into());
                *self.current.lock().expect("pod name") = None;
                bail!(
                    "pod {NAMESPACE}/{name} did not finish within {:?} ({e}; is the image {:?} pullable on {}?); {left}",
                    self.timeout,
                    self.image,
                    node.name
                );
            }
            Ok(None) => {
                *self.current.lock().expect("pod name") = None;
                bail!(
                    "pod {NAMESPACE}/{name} disappeared before it finished: someone deleted it, so its command was killed; check node {} before running again",
                    node.name
                )
            }
            Ok(Some(pod)) => pod,
        };
        let logs = api
            .logs(&name, &LogParams::default())
            .await
            .with_context(|| {
                format!(
                    "could not read the log of pod {NAMESPACE}/{name} (left in place: `kubectl logs -n {NAMESPACE} {name}`)"
                )
            });
        let logs = match logs {
            Ok(l) => l,
            Err(e) => {
                *self.current.lock().expect("pod name") = None;
                return Err(e);
            }
        };
        let code = exit_code(&pod).or(match phase(&pod) {
            "Succeeded" => Some(0),
            _ => Some(1),
        });
        self.delete(&api, &name).await;
        *self.current.lock().expect("pod name") = None;
        Ok(CmdOutput {
            code,
            stdout: logs,
            stderr: String::new(),
        })
    }

    async fn cleanup(&self) {
        let name = self.current.lock().expect("pod name").take();
        if let Some(name) = name {
            let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
            if let Some(advice) = self.delete_if_ended(&api, &name).await {
                eprintln!("{advice}");
            }
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
        let name = pod.metadata.name.unwrap();
        assert!(name.starts_with("upkeep-upgrade-node01-"), "{name}");
        assert_ne!(pod_name("node01"), pod_name("node01"));
    }
}
