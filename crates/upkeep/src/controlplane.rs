//! Which nodes are the control plane, and which of them is upgraded first:
//! one rule for `kubectl skew plan` (which node its plan names for
//! `kubeadm upgrade apply`) and `kubectl upgrade-node` (which node its
//! rollout takes first).

use std::collections::BTreeMap;

/// kubeadm labels every control-plane node with it
/// (`cmd/kubeadm/app/constants/constants.go` `LabelNodeRoleControlPlane`).
pub const CONTROL_PLANE_LABEL: &str = "node-role.kubernetes.io/control-plane";
/// The label kubeadm set before v1.20 and stopped setting in v1.24
/// (`LabelNodeRoleOldControlPlane`); clusters created then may still carry
/// only this one.
pub const LEGACY_MASTER_LABEL: &str = "node-role.kubernetes.io/master";

/// Whether a node's labels mark it as a control-plane node.
pub fn is_control_plane(labels: &BTreeMap<String, String>) -> bool {
    labels.contains_key(CONTROL_PLANE_LABEL) || labels.contains_key(LEGACY_MASTER_LABEL)
}

/// The control-plane nodes in upgrade order, given each with the version it
/// runs (`None` when unknown); the first is the first control-plane node. kubeadm runs `kubeadm upgrade apply` on the first
/// control-plane node and `kubeadm upgrade node` on the others (kubeadm
/// upgrade guide, "Upgrade the first control plane node"); any node may be
/// the first. The rule here: a node already on the newest version goes
/// first, since an interrupted earlier run applied there; then by name.
pub fn control_plane_order<V: Ord>(
    nodes: impl IntoIterator<Item = (String, Option<V>)>,
) -> Vec<String> {
    // A node named twice (a label and an apiserver pod) counts at its newest.
    let mut newest: BTreeMap<String, Option<V>> = BTreeMap::new();
    for (name, version) in nodes {
        let seen = newest.entry(name).or_insert(None);
        if version > *seen {
            *seen = version;
        }
    }
    let mut nodes: Vec<(String, Option<V>)> = newest.into_iter().collect();
    nodes.sort_by(|(a, va), (b, vb)| vb.cmp(va).then_with(|| a.cmp(b)));
    nodes.into_iter().map(|(n, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_goes_first_then_by_name() {
        let order = control_plane_order([
            ("cp3".to_string(), Some(33)),
            ("cp1".to_string(), Some(33)),
            ("cp2".to_string(), Some(34)),
            ("cp0".to_string(), None),
            ("cp3".to_string(), Some(35)),
        ]);
        assert_eq!(order, ["cp3", "cp2", "cp1", "cp0"]);
        assert_eq!(
            control_plane_order([("b".to_string(), Some(1)), ("a".to_string(), Some(1))]),
            ["a", "b"]
        );
        assert!(control_plane_order(Vec::<(String, Option<u8>)>::new()).is_empty());
    }

    #[test]
    fn either_label_marks_a_control_plane_node() {
        let labels = |k: &str| BTreeMap::from([(k.to_string(), String::new())]);
        assert!(is_control_plane(&labels(CONTROL_PLANE_LABEL)));
        assert!(is_control_plane(&labels(LEGACY_MASTER_LABEL)));
        assert!(!is_control_plane(&labels("node-role.kubernetes.io/worker")));
    }
}
