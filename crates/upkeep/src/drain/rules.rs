//! The drain rules: each one named once, with its message and the upstream
//! fact it encodes. The plan (`super::plan`) applies them; help text, JSON
//! output and the README read the names and sources from here.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Serialize;

/// Every rule the plan can cite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    MirrorPod,
    #[serde(rename = "daemonset-pod")]
    DaemonSetPod,
    FinishedPod,
    Terminating,
    Replicated,
    Unmanaged,
    OrphanedController,
    LocalStorage,
    SafeToEvictFalse,
    DoNotDisrupt,
    MultiplePdbs,
    PdbBudget,
    PdbNeverAllows,
    Downtime,
    NoCapacity,
}

impl Rule {
    pub const ALL: [Rule; 15] = [
        Rule::MirrorPod,
        Rule::DaemonSetPod,
        Rule::FinishedPod,
        Rule::Terminating,
        Rule::Replicated,
        Rule::Unmanaged,
        Rule::OrphanedController,
        Rule::LocalStorage,
        Rule::SafeToEvictFalse,
        Rule::DoNotDisrupt,
        Rule::MultiplePdbs,
        Rule::PdbBudget,
        Rule::PdbNeverAllows,
        Rule::Downtime,
        Rule::NoCapacity,
    ];

    /// The rule's name as it appears in JSON output and docs.
    pub fn name(self) -> &'static str {
        match self {
            Rule::MirrorPod => "mirror-pod",
            Rule::DaemonSetPod => "daemonset-pod",
            Rule::FinishedPod => "finished-pod",
            Rule::Terminating => "terminating",
            Rule::Replicated => "replicated",
            Rule::Unmanaged => "unmanaged",
            Rule::OrphanedController => "orphaned-controller",
            Rule::LocalStorage => "local-storage",
            Rule::SafeToEvictFalse => "safe-to-evict-false",
            Rule::DoNotDisrupt => "do-not-disrupt",
            Rule::MultiplePdbs => "multiple-pdbs",
            Rule::PdbBudget => "pdb-budget",
            Rule::PdbNeverAllows => "pdb-never-allows",
            Rule::Downtime => "downtime",
            Rule::NoCapacity => "no-capacity",
        }
    }

    /// What the rule decides, in one line (for `--help` and the README).
    pub fn summary(self) -> &'static str {
        match self {
            Rule::MirrorPod => "static (mirror) pods are left in place: the kubelet owns them",
            Rule::DaemonSetPod => {
                "DaemonSet pods are left in place: their controller tolerates cordoned nodes"
            }
            Rule::FinishedPod => "Succeeded/Failed pods are deleted: nothing runs in them",
            Rule::Terminating => "pods already being deleted are waited for, not evicted again",
            Rule::Replicated => {
                "pods whose controller exists are evicted: the controller recreates them elsewhere"
            }
            Rule::Unmanaged => {
                "pods without a controller block: evicted, they are gone for good (--delete-unmanaged overrides)"
            }
            Rule::OrphanedController => {
                "pods whose controller no longer exists block: nothing would recreate them (--delete-unmanaged overrides)"
            }
            Rule::LocalStorage => {
                "emptyDir/hostPath data blocks: it is lost with the pod (--delete-emptydir-data overrides)"
            }
            Rule::SafeToEvictFalse => {
                "cluster-autoscaler.kubernetes.io/safe-to-evict=\"false\" blocks"
            }
            Rule::DoNotDisrupt => "karpenter.sh/do-not-disrupt=\"true\" blocks",
            Rule::MultiplePdbs => {
                "a pod selected by two or more PodDisruptionBudgets blocks: the eviction API answers 500"
            }
            Rule::PdbBudget => {
                "a PodDisruptionBudget that cannot cover all of this node's pods at once paces the evictions as it frees (--pdb=refuse blocks instead)"
            }
            Rule::PdbNeverAllows => {
                "a PodDisruptionBudget that can never allow the eviction blocks, naming the fix: maxUnavailable 0, minAvailable equal to the pods, an empty policy/v1 spec (--wait-for-pdb waits instead)"
            }
            Rule::Downtime => {
                "single-replica workloads, or workloads with every ready replica here, warn (--no-downtime blocks)"
            }
            Rule::NoCapacity => {
                "an evicted pod that fits on no remaining Ready, schedulable node blocks, naming the scheduler filter that rejects each node"
            }
        }
    }

    /// The upstream code or documentation the rule follows.
    pub fn source(self) -> &'static str {
        match self {
            Rule::MirrorPod => "kubernetes/kubectl pkg/drain/filters.go mirrorPodFilter",
            Rule::DaemonSetPod => "kubernetes/kubectl pkg/drain/filters.go daemonSetFilter",
            Rule::FinishedPod => {
                "kubernetes/kubectl pkg/drain/filters.go (finished pods pass every filter)"
            }
            Rule::Terminating => {
                "kubernetes/kubectl pkg/drain/drain.go waitForDelete; kube-apiserver pkg/registry/core/pod/storage/eviction.go canIgnorePDB"
            }
            Rule::Replicated => "kubernetes/kubectl pkg/drain/filters.go unreplicatedFilter",
            Rule::Unmanaged => {
                "kubernetes/kubectl pkg/drain/filters.go unreplicatedFilter; kubernetes/autoscaler simulator/drainability/rules (NotReplicated)"
            }
            Rule::OrphanedController => {
                "kubernetes/autoscaler simulator/drainability/rules/replicacount (ControllerNotFound)"
            }
            Rule::LocalStorage => {
                "kubernetes/kubectl pkg/drain/filters.go localStorageFilter (emptyDir); kubernetes/autoscaler rules/localstorage (hostPath)"
            }
            Rule::SafeToEvictFalse => {
                "kubernetes/autoscaler simulator/drainability/rules/notsafetoevict (NotSafeToEvictAnnotation)"
            }
            Rule::DoNotDisrupt => "kubernetes-sigs/karpenter pkg/apis/v1 DoNotDisruptAnnotationKey",
            Rule::MultiplePdbs => {
                "kube-apiserver pkg/registry/core/pod/storage/eviction.go (more than one PodDisruptionBudget: 500)"
            }
            Rule::PdbBudget => {
                "kube-apiserver pkg/registry/core/pod/storage/eviction.go checkAndDecrement (disruptionsAllowed == 0: 429)"
            }
            Rule::PdbNeverAllows => {
                "kubernetes pkg/controller/disruption/disruption.go getExpectedPodCount, updatePdbStatus"
            }
            Rule::Downtime => {
                "kubernetes/kubernetes#48307 (drain takes single-replica workloads down)"
            }
            Rule::NoCapacity => {
                "kubernetes/autoscaler NoPlaceToMovePods; kubernetes pkg/scheduler/framework/plugins: nodeunschedulable, tainttoleration, nodeaffinity, nodeports, noderesources, volumebinding, podtopologyspread, interpodaffinity"
            }
        }
    }
}

/// How much a finding weighs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Block,
}

/// One rule applied to one or more pods, with its message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub rule: Rule,
    pub severity: Severity,
    pub message: String,
    /// `namespace/name` of each pod it concerns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pods: Vec<String>,
}

// Annotations honoured as opt-outs.
/// kubernetes/autoscaler `utils/drain/drain.go` PodSafeToEvictKey.
pub const SAFE_TO_EVICT: &str = "cluster-autoscaler.kubernetes.io/safe-to-evict";
/// kubernetes/autoscaler `utils/drain/drain.go` SafeToEvictLocalVolumesKey.
pub const SAFE_TO_EVICT_LOCAL_VOLUMES: &str =
    "cluster-autoscaler.kubernetes.io/safe-to-evict-local-volumes";
/// kubernetes-sigs/karpenter `pkg/apis/v1/labels.go` DoNotDisruptAnnotationKey.
pub const DO_NOT_DISRUPT: &str = "karpenter.sh/do-not-disrupt";
/// kubernetes `pkg/kubelet/types` ConfigMirrorAnnotationKey.
pub const MIRROR: &str = "kubernetes.io/config.mirror";

/// `namespace/name` of a pod.
pub fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or("default"),
        pod.metadata.name.as_deref().unwrap_or_default()
    )
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

pub fn is_mirror(pod: &Pod) -> bool {
    annotation(pod, MIRROR).is_some()
}

pub fn is_finished(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

pub fn controller_ref(pod: &Pod) -> Option<&OwnerReference> {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
}

/// Owned by an `apps/v1` DaemonSet (kubectl checks the API version too since 1.34).
pub fn is_daemonset_pod(pod: &Pod) -> bool {
    controller_ref(pod).is_some_and(|o| o.kind == "DaemonSet" && o.api_version == "apps/v1")
}

/// System-critical pods are evicted last (karpenter terminator: critical
/// = priorityClassName system-cluster-critical / system-node-critical).
pub fn is_critical(pod: &Pod) -> bool {
    matches!(
        pod.spec
            .as_ref()
            .and_then(|s| s.priority_class_name.as_deref()),
        Some("system-cluster-critical" | "system-node-critical")
    )
}

/// Volumes whose data lives on the node: every emptyDir (kubectl) and hostPath
/// (cluster-autoscaler), as `name (kind)`. The owner's cluster-autoscaler
/// opt-ins are honoured: `safe-to-evict: "true"` and
/// `safe-to-evict-local-volumes: a,b` (kubernetes/autoscaler rules/localstorage).
pub fn local_volumes(pod: &Pod) -> Vec<String> {
    if annotation(pod, SAFE_TO_EVICT) == Some("true") {
        return Vec::new();
    }
    let accepted: Vec<&str> = annotation(pod, SAFE_TO_EVICT_LOCAL_VOLUMES)
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter(|v| !accepted.contains(&v.name.as_str()))
        .filter_map(|v| {
            if v.empty_dir.is_some() {
                Some(format!("{} (emptyDir)", v.name))
            } else {
                v.host_path
                    .as_ref()
                    .map(|h| format!("{} (hostPath {})", v.name, h.path))
            }
        })
        .collect()
}

pub fn safe_to_evict_false(pod: &Pod) -> bool {
    annotation(pod, SAFE_TO_EVICT) == Some("false")
}

/// `karpenter.sh/do-not-disrupt: "true"`. (Karpenter also accepts a
/// duration; a duration still pending counts as "true" here.)
pub fn do_not_disrupt(pod: &Pod) -> bool {
    matches!(annotation(pod, DO_NOT_DISRUPT), Some(v) if v == "true" || humantime::parse_duration(v).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn every_rule_has_a_unique_name_a_summary_and_a_source() {
        let names: BTreeSet<_> = Rule::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Rule::ALL.len());
        for rule in Rule::ALL {
            assert!(!rule.summary().is_empty());
            assert!(
                rule.source().contains('/'),
                "{} cites a source",
                rule.name()
            );
            let json = serde_json::to_value(rule).unwrap();
            assert_eq!(json, rule.name());
        }
    }
}
