//! A whole cluster, node by node: the order of an in-place rolling upgrade,
//! and the surge plan for clusters that provision nodes elsewhere.
//!
//! Order from the kubeadm upgrade document: the control-plane nodes first,
//! one at a time (since v1.28 the addons move only once every control-plane
//! instance is upgraded, so they must go in sequence), then the workers, a
//! few at a time so that the workloads keep capacity (kubespray's `serial`,
//! system-upgrade-controller's `concurrency`).

use serde::Serialize;

use super::preflight::NodeFacts;
use crate::version::Release;

/// The waves of a rolling upgrade: each inner list runs at once.
pub fn waves(nodes: &[&NodeFacts], max_unavailable: usize) -> Vec<Vec<String>> {
    let max = max_unavailable.max(1);
    let cps = crate::controlplane::control_plane_order(
        nodes
            .iter()
            .filter(|n| n.control_plane)
            .map(|n| (n.name.clone(), n.kubelet_version)),
    );
    let mut workers: Vec<&NodeFacts> = nodes.iter().copied().filter(|n| !n.control_plane).collect();
    workers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut out: Vec<Vec<String>> = cps.into_iter().map(|n| vec![n]).collect();
    for chunk in workers.chunks(max) {
        out.push(chunk.iter().map(|n| n.name.clone()).collect());
    }
    out
}

/// One step of the surge plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SurgeStep {
    pub node: String,
    pub action: String,
    /// A command the operator can run, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The surge (replace) strategy for workers, as Cluster API and managed
/// node groups do it: new nodes at the target join first, then each old
/// worker is drained and removed. `max_surge` new nodes at a time.
/// Control-plane nodes are upgraded in place first.
pub fn surge_plan(
    control_planes: &[String],
    workers: &[String],
    target: Release,
    max_surge: usize,
) -> Vec<SurgeStep> {
    let mut out = Vec::new();
    let step = |node: &str, action: String, command: Option<String>| SurgeStep {
        node: node.to_string(),
        action,
        command,
    };
    for cp in control_planes {
        out.push(step(
            cp,
            format!("upgrade in place to {target}, one control-plane node at a time"),
            Some(format!("kubectl upgrade-node {cp} --to {target}")),
        ));
    }
    for chunk in workers.chunks(max_surge.max(1)) {
        for (i, old) in chunk.iter().enumerate() {
            out.push(step(
                old,
                format!(
                    "provision replacement #{} with kubelet {target} (your provisioning: image, node group, machine template) and wait until it is Ready",
                    i + 1
                ),
                Some(
                    "kubectl wait --for=condition=Ready node -l <new-node-selector> --timeout=10m"
                        .to_string(),
                ),
            ));
        }
        for old in chunk {
            out.push(step(
                old,
                "drain by the safedrain rules; the workloads move to the new nodes".to_string(),
                Some(format!("kubectl safedrain {old} --yes")),
            ));
            out.push(step(
                old,
                "remove the old node from the cluster, then decommission its machine".to_string(),
                Some(format!("kubectl delete node {old}")),
            ));
        }
    }
    out
}

pub fn render_surge(steps: &[SurgeStep]) -> String {
    let mut out = String::from("Surge plan (nothing is changed by this command):\n");
    for (i, s) in steps.iter().enumerate() {
        out.push_str(&format!("{:>3}. {:<16} {}\n", i + 1, s.node, s.action));
        if let Some(c) = &s.command {
            out.push_str(&format!("       $ {c}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(name: &str, cp: bool, v: &str) -> NodeFacts {
        NodeFacts {
            name: name.into(),
            control_plane: cp,
            kubelet_version: Release::parse_reported(v),
            ..NodeFacts::default()
        }
    }

    #[test]
    fn control_planes_first_one_at_a_time_then_workers_in_batches() {
        let nodes = [
            n("w3", false, "v1.33.5"),
            n("cp2", true, "v1.33.5"),
            n("w1", false, "v1.33.5"),
            n("cp1", true, "v1.33.5"),
            n("w2", false, "v1.33.5"),
        ];
        let refs: Vec<&NodeFacts> = nodes.iter().collect();
        assert_eq!(
            waves(&refs, 2),
            vec![
                vec!["cp1".to_string()],
                vec!["cp2".to_string()],
                vec!["w1".to_string(), "w2".to_string()],
                vec!["w3".to_string()],
            ]
        );
        assert_eq!(waves(&refs, 0).len(), 5);
    }

    #[test]
    fn an_already_upgraded_control_plane_goes_first() {
        let nodes = [n("cp1", true, "v1.33.5"), n("cp2", true, "v1.34.1")];
        let refs: Vec<&NodeFacts> = nodes.iter().collect();
        assert_eq!(waves(&refs, 1)[0], vec!["cp2".to_string()]);
    }

    #[test]
    fn surge_plan_replaces_workers() {
        let t = Release::new(1, 34, 1);
        let steps = surge_plan(&["cp1".into()], &["w1".into(), "w2".into()], t, 1);
        insta::assert_snapshot!(render_surge(&steps));
    }
}
