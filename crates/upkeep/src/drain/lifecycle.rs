//! A NotReady node: when the taint manager evicts its pods, and why the
//! drain does not wait for them to vanish. The node lifecycle controller
//! taints a NotReady node `node.kubernetes.io/not-ready:NoExecute` (or
//! `unreachable`); the taint manager deletes each pod once its toleration of
//! that taint runs out (kubernetes `pkg/controller/tainteviction/taint_eviction.go`
//! processPodOnNode: the smallest tolerationSeconds of the tolerations that
//! match; none that match: at once), and the DefaultTolerationSeconds
//! admission plugin gives every pod 300 s for both taints. A pod deleted
//! there stays Terminating until its kubelet answers again
//! (kubectl drain's `--skip-wait-for-delete-timeout` exists for them).

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use serde::{Deserialize, Serialize};

use super::capacity::node_ready;
use super::rules::{is_daemonset_pod, is_finished, is_mirror};
use super::selector::tolerates;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// plugin/pkg/admission/defaulttolerationseconds: --default-not-ready-toleration-seconds
/// and --default-unreachable-toleration-seconds.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// The node is not Ready: what that means for its pods.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotReady {
    /// The NoExecute taint on it (`key:NoExecute`), if the controller set one yet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub taint: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The tolerationSeconds that decides the first eviction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub toleration_seconds: Option<i64>,
    /// Seconds until the taint manager deletes the first of its pods (0: due).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evicts_in_seconds: Option<i64>,
}

impl NotReady {
    pub fn render(&self, node: &str) -> String {
        let mut out = self.summary(node);
        out.push_str("; its pods cannot finish terminating until the kubelet answers: the drain reports them and does not wait");
        out
    }

    /// Since when, and when the taint manager evicts its pods.
    pub fn summary(&self, node: &str) -> String {
        let mut out = format!("node/{node} is NotReady");
        if let (Some(t), Some(since)) = (&self.taint, &self.since) {
            out.push_str(&format!(" (taint {t} since {since})"));
        }
        match (self.evicts_in_seconds, self.toleration_seconds) {
            (Some(0), Some(s)) => out.push_str(&format!(
                ": its pods' tolerationSeconds ({s}) ran out, the taint manager is evicting them"
            )),
            (Some(left), Some(s)) => out.push_str(&format!(
                ": the taint manager evicts its pods in {left}s (tolerationSeconds {s})"
            )),
            _ => {}
        }
        out
    }
}

/// How long `pod` tolerates `taint`: `None` for ever.
fn toleration_seconds(pod: &Pod, taint: &Taint) -> Option<i64> {
    let matching: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| s.tolerations.iter().flatten())
        .filter(|t| tolerates(t, taint))
        .collect();
    if matching.is_empty() {
        return Some(DEFAULT_TOLERATION_SECONDS);
    }
    if matching.iter().any(|t| t.toleration_seconds.is_none()) {
        return None;
    }
    matching
        .iter()
        .filter_map(|t| t.toleration_seconds)
        .min()
        .map(|s| s.max(0))
}

/// `None` when the node is Ready.
pub fn not_ready(node: &Node, pods: &[Pod], now: Timestamp) -> Option<NotReady> {
    if node_ready(node) {
        return None;
    }
    let taint = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .find(|t| (t.key == UNREACHABLE || t.key == NOT_READY) && t.effect == "NoExecute");
    let Some(taint) = taint else {
        return Some(NotReady {
            taint: None,
            since: None,
            toleration_seconds: None,
            evicts_in_seconds: None,
        });
    };
    let seconds = pods
        .iter()
        .filter(|p| !is_mirror(p) && !is_daemonset_pod(p) && !is_finished(p))
        .filter_map(|p| toleration_seconds(p, taint))
        .min();
    let added = taint.time_added.as_ref().map(|t| t.0);
    let left = match (added, seconds) {
        (Some(at), Some(s)) => Some((s - now.duration_since(at).as_secs()).max(0)),
        _ => None,
    };
    Some(NotReady {
        taint: Some(format!("{}:NoExecute", taint.key)),
        since: added.map(|a| a.to_string()),
        toleration_seconds: seconds,
        evicts_in_seconds: left,
    })
}

/// StatefulSet pods this drain moves off a NotReady node, by workload (`ns/StatefulSet/name`),
/// with why their StatefulSet cannot be whole again: the pod stays Terminating while its kubelet
/// is silent, and the StatefulSet controller creates a pod of that name again only once the old
/// one is gone (pkg/controller/statefulset stateful_set_control.go: a terminating replica is
/// waited for; its identity is never doubled). Deleting it with grace 0 frees it, which only
/// the operator can decide (the node may still run it).
pub fn statefulset_waits(node: &str, pods: &[super::plan::PodPlan]) -> Vec<(String, String)> {
    pods.iter()
        .filter(|p| p.action.moves())
        .filter_map(|p| {
            let w = p.workload.as_ref().filter(|w| w.kind == "StatefulSet")?;
            Some((
                format!("{}/{}", w.namespace, w.id()),
                format!(
                    "{} is still Terminating on NotReady node {node}, and the StatefulSet controller creates {} again only once it is gone; once you know {node} is down (or its pod stopped), free it with `kubectl delete pod {} -n {} --force --grace-period=0`",
                    p.name, p.name, p.name, p.namespace
                ),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus, PodSpec, Toleration};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn unreachable_node(added: Timestamp) -> Node {
        Node {
            spec: Some(NodeSpec {
                taints: Some(vec![Taint {
                    key: UNREACHABLE.into(),
                    effect: "NoExecute".into(),
                    time_added: Some(Time(added)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "Unknown".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(tolerations: Vec<Toleration>) -> Pod {
        Pod {
            spec: Some(PodSpec {
                tolerations: Some(tolerations),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn the_countdown_follows_the_smallest_toleration() {
        let added: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let now = added + jiff::SignedDuration::from_secs(100);
        let node = unreachable_node(added);
        // No toleration: the admission default, 300 s.
        let n = not_ready(&node, &[pod(vec![])], now).unwrap();
        assert_eq!(n.toleration_seconds, Some(300));
        assert_eq!(n.evicts_in_seconds, Some(200));
        assert!(
            n.render("w1")
                .contains("evicts its pods in 200s (tolerationSeconds 300)")
        );
        // A pod tolerating it for 60 s goes first; one tolerating it for ever never.
        let short = Toleration {
            key: Some(UNREACHABLE.into()),
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            toleration_seconds: Some(60),
            ..Default::default()
        };
        let forever = Toleration {
            toleration_seconds: None,
            ..short.clone()
        };
        let n = not_ready(&node, &[pod(vec![short]), pod(vec![forever.clone()])], now).unwrap();
        assert_eq!(n.evicts_in_seconds, Some(0));
        assert!(n.render("w1").contains("ran out"));
        let n = not_ready(&node, &[pod(vec![forever])], now).unwrap();
        assert_eq!(n.evicts_in_seconds, None);
        // A Ready node: nothing to say.
        let mut ready = node.clone();
        ready.status.as_mut().unwrap().conditions.as_mut().unwrap()[0].status = "True".into();
        assert_eq!(not_ready(&ready, &[], now), None);
    }
}
