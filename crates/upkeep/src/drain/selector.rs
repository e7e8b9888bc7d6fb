//! Matching as the API server and the scheduler do it: label selectors,
//! node selector terms (required node affinity), taints and tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

type Labels = BTreeMap<String, String>;

/// Whether a label selector selects `labels`.
/// k8s.io/apimachinery `pkg/apis/meta/v1/helpers.go` LabelSelectorAsSelector:
/// an empty selector selects everything; an unknown operator selects nothing.
pub fn label_selector_matches(selector: &LabelSelector, labels: &Labels) -> bool {
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    exact
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => value.is_some_and(|v| values.contains(v)),
                "NotIn" => value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some(),
                "DoesNotExist" => value.is_none(),
                _ => false,
            }
        })
}

/// A selector in the string form `-l` and list requests take.
pub fn label_selector_string(selector: &LabelSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in selector.match_expressions.iter().flatten() {
        let values = e.values.as_deref().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({values})", e.key),
            "NotIn" => format!("{} notin ({values})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

/// Whether a node satisfies one node selector requirement.
/// kubernetes `staging/src/k8s.io/component-helpers/scheduling/corev1/nodeaffinity/nodeaffinity.go`.
fn requirement_matches(req: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = req.values.as_deref().unwrap_or_default();
    let as_int = |s: &str| s.parse::<i64>().ok();
    match req.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| as_int(v)),
                values.first().and_then(|v| as_int(v)),
            ) else {
                return false;
            };
            if req.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// Whether a node matches one term: every expression and field requirement
/// holds; an empty term matches nothing (nodeaffinity.go).
pub fn node_selector_term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let name = node.metadata.name.clone();
    exprs
        .iter()
        .all(|r| requirement_matches(r, labels.get(&r.key)))
        && fields.iter().all(|r| {
            let value = (r.key == "metadata.name")
                .then_some(name.as_ref())
                .flatten();
            requirement_matches(r, value)
        })
}

/// Whether `toleration` tolerates `taint`.
/// kubernetes `staging/src/k8s.io/api/core/v1/toleration.go` ToleratesTaint.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref()
        && !effect.is_empty()
        && effect != taint.effect
    {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            // An empty key with Equal is invalid upstream; treat as no match.
            !key.is_empty()
                && toleration.value.as_deref().unwrap_or_default()
                    == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let sel = LabelSelector {
            match_labels: Some(labels(&[("app", "web")])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "tier".into(),
                operator: "NotIn".into(),
                values: Some(vec!["db".into()]),
            }]),
        };
        assert!(label_selector_matches(&sel, &labels(&[("app", "web")])));
        assert!(!label_selector_matches(
            &sel,
            &labels(&[("app", "web"), ("tier", "db")])
        ));
        assert!(!label_selector_matches(&sel, &labels(&[("app", "api")])));
        assert!(label_selector_matches(
            &LabelSelector::default(),
            &labels(&[])
        ));
        assert_eq!(label_selector_string(&sel), "app=web,tier notin (db)");
    }

    #[test]
    fn node_terms() {
        let mut node = Node::default();
        node.metadata.name = Some("n1".into());
        node.metadata.labels = Some(labels(&[("disk", "ssd"), ("cores", "8")]));
        let term = |key: &str, op: &str, values: &[&str]| NodeSelectorTerm {
            match_expressions: Some(vec![NodeSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            match_fields: None,
        };
        assert!(node_selector_term_matches(
            &term("disk", "In", &["ssd"]),
            &node
        ));
        assert!(!node_selector_term_matches(
            &term("disk", "In", &["hdd"]),
            &node
        ));
        assert!(node_selector_term_matches(
            &term("cores", "Gt", &["4"]),
            &node
        ));
        assert!(!node_selector_term_matches(
            &term("cores", "Lt", &["4"]),
            &node
        ));
        assert!(node_selector_term_matches(
            &term("gpu", "DoesNotExist", &[]),
            &node
        ));
        assert!(!node_selector_term_matches(
            &NodeSelectorTerm::default(),
            &node
        ));
        let by_name = NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".into(),
                operator: "In".into(),
                values: Some(vec!["n1".into()]),
            }]),
        };
        assert!(node_selector_term_matches(&by_name, &node));
    }

    #[test]
    fn taints_and_tolerations() {
        let taint = Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let exists = Toleration {
            key: Some(taint.key.clone()),
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&exists, &taint));
        let wildcard = Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        };
        assert!(tolerates(&wildcard, &taint));
        let wrong_effect = Toleration {
            effect: Some("NoExecute".into()),
            ..exists.clone()
        };
        assert!(!tolerates(&wrong_effect, &taint));
        let equal = Toleration {
            key: Some("dedicated".into()),
            value: Some("gpu".into()),
            ..Default::default()
        };
        let gpu = Taint {
            key: "dedicated".into(),
            value: Some("gpu".into()),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        assert!(tolerates(&equal, &gpu));
        assert!(!tolerates(
            &equal,
            &Taint {
                value: Some("cpu".into()),
                ..gpu
            }
        ));
    }
}
