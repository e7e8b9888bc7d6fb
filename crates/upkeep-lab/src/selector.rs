//! Label and field selectors.
//!
//! Label selector strings follow k8s.io/apimachinery pkg/labels/selector.go (equality- and
//! set-based: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`, `a`, `!a`); structured
//! `metav1.LabelSelector` objects (matchLabels + matchExpressions) follow
//! pkg/apis/meta/v1/helpers.go LabelSelectorAsSelector. Field selectors support `=`, `==`, `!=`
//! on the fields the apiserver indexes per resource.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Req {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabelSelector {
    pub reqs: Vec<Req>,
    /// A structured selector that can never match (upstream: invalid selector → nothing).
    pub nothing: bool,
}

impl LabelSelector {
    pub fn everything() -> Self {
        Self::default()
    }

    /// Parse `app=web,tier in (a,b),!canary`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            reqs.push(parse_req(p)?);
        }
        Ok(LabelSelector {
            reqs,
            nothing: false,
        })
    }

    /// From a `metav1.LabelSelector` JSON object. `None`/null selects nothing (policy/v1beta1
    /// semantics are not served); `{}` selects everything (policy/v1 PDB semantics).
    pub fn from_object(sel: Option<&Value>) -> Self {
        let Some(sel) = sel.filter(|v| !v.is_null()) else {
            return LabelSelector {
                reqs: vec![],
                nothing: true,
            };
        };
        let mut reqs = Vec::new();
        if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in ml {
                reqs.push(Req::Eq(
                    k.clone(),
                    v.as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in me {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                match e
                    .get("operator")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                {
                    "In" => reqs.push(Req::In(key, values)),
                    "NotIn" => reqs.push(Req::NotIn(key, values)),
                    "Exists" => reqs.push(Req::Exists(key)),
                    "DoesNotExist" => reqs.push(Req::NotExists(key)),
                    _ => {
                        return LabelSelector {
                            reqs: vec![],
                            nothing: true,
                        };
                    }
                }
            }
        }
        LabelSelector {
            reqs,
            nothing: false,
        }
    }

    pub fn is_everything(&self) -> bool {
        !self.nothing && self.reqs.is_empty()
    }

    /// Match against a `metadata.labels` object (or null).
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        if self.nothing {
            return false;
        }
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.reqs.iter().all(|r| match r {
            Req::Eq(k, v) => get(k) == Some(v.as_str()),
            Req::NotEq(k, v) => get(k) != Some(v.as_str()),
            Req::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Req::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Req::Exists(k) => get(k).is_some(),
            Req::NotExists(k) => get(k).is_none(),
        })
    }

    /// Match an object by its `metadata.labels`.
    pub fn matches(&self, obj: &Value) -> bool {
        self.matches_labels(obj.pointer("/metadata/labels"))
    }
}

fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c)
            }
            ')' => {
                depth -= 1;
                cur.push(c)
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn valid_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("found '{rest}', expected: '('"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn parse_req(p: &str) -> Result<Req, String> {
    if let Some(k) = p.strip_prefix('!') {
        let k = k.trim();
        return if valid_key(k) {
            Ok(Req::NotExists(k.into()))
        } else {
            Err(format!("invalid label key \"{k}\""))
        };
    }
    for (op, set) in [(" notin ", true), (" in ", false)] {
        if let Some(i) = p.find(op) {
            let k = p[..i].trim();
            let vals = parse_set(&p[i + op.len()..])?;
            return Ok(if set {
                Req::NotIn(k.into(), vals)
            } else {
                Req::In(k.into(), vals)
            });
        }
    }
    if let Some(i) = p.find("!=") {
        return Ok(Req::NotEq(p[..i].trim().into(), p[i + 2..].trim().into()));
    }
    if let Some(i) = p.find("==") {
        return Ok(Req::Eq(p[..i].trim().into(), p[i + 2..].trim().into()));
    }
    if let Some(i) = p.find('=') {
        return Ok(Req::Eq(p[..i].trim().into(), p[i + 1..].trim().into()));
    }
    if valid_key(p) {
        Ok(Req::Exists(p.into()))
    } else {
        Err(format!("unable to parse requirement: found '{p}'"))
    }
}

/// A parsed field selector: a conjunction of `field=value` / `field!=value`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldSelector {
    pub reqs: Vec<(String, bool, String)>,
}

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for part in s.split(',') {
            let p = part.trim();
            if p.is_empty() {
                continue;
            }
            let (k, eq, v) = if let Some(i) = p.find("!=") {
                (&p[..i], false, &p[i + 2..])
            } else if let Some(i) = p.find("==") {
                (&p[..i], true, &p[i + 2..])
            } else if let Some(i) = p.find('=') {
                (&p[..i], true, &p[i + 1..])
            } else {
                return Err(format!("invalid selector: '{p}'; can't understand '{p}'"));
            };
            reqs.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(FieldSelector { reqs })
    }

    pub fn is_empty(&self) -> bool {
        self.reqs.is_empty()
    }

    /// The value an `=` requirement on `field` pins, if any (used to pick an index).
    pub fn equals(&self, field: &str) -> Option<&str> {
        self.reqs
            .iter()
            .find(|(k, eq, _)| k == field && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.reqs.iter().all(|(k, eq, v)| {
            let actual = field_value(obj, k);
            (actual == *v) == *eq
        })
    }
}

/// The string value of a selectable field; absent fields read as "" (upstream field sets
/// always contain the key, e.g. an unbound pod has `spec.nodeName=""`).
pub fn field_value(obj: &Value, field: &str) -> String {
    let ptr = format!("/{}", field.replace('.', "/"));
    match obj.pointer(&ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        // spec.unschedulable is "false" when unset (pkg/registry/core/node/strategy.go NodeToSelectableFields)
        None | Some(Value::Null) if field == "spec.unschedulable" => "false".into(),
        _ => String::new(),
    }
}

/// Fields each resource may be selected on (upstream: per-resource GetAttrs / field label
/// conversion funcs). Unknown fields are rejected like the apiserver does.
pub fn supported_field(kind: &str, field: &str) -> bool {
    if field == "metadata.name" || field == "metadata.namespace" {
        return true;
    }
    match kind {
        "Pod" => matches!(
            field,
            "spec.nodeName"
                | "spec.restartPolicy"
                | "spec.schedulerName"
                | "spec.serviceAccountName"
                | "spec.hostNetwork"
                | "status.phase"
                | "status.podIP"
                | "status.nominatedNodeName"
        ),
        "Node" => field == "spec.unschedulable",
        "Event" => {
            field.starts_with("involvedObject.")
                || field.starts_with("regarding.")
                || matches!(field, "reason" | "source" | "type" | "reportingComponent")
        }
        "Namespace" => field == "status.phase",
        "Secret" => field == "type",
        "Job" => field == "status.successful",
        "ReplicaSet" => field == "status.replicas",
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_based_selectors() {
        let s = LabelSelector::parse("app in (web, api),tier!=db,!canary,env").unwrap();
        assert!(s.matches(&json!({"metadata":{"labels":{"app":"web","env":"x"}}})));
        assert!(!s.matches(&json!({"metadata":{"labels":{"app":"web"}}})));
        assert!(!s.matches(&json!({"metadata":{"labels":{"app":"web","env":"x","canary":"1"}}})));
        assert!(!s.matches(&json!({"metadata":{"labels":{"app":"db","env":"x"}}})));
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("spec.nodeName=n1,status.phase!=Failed").unwrap();
        assert!(f.matches(&json!({"spec":{"nodeName":"n1"},"status":{"phase":"Running"}})));
        assert!(!f.matches(&json!({"spec":{"nodeName":"n1"},"status":{"phase":"Failed"}})));
        let u = FieldSelector::parse("spec.unschedulable=false").unwrap();
        assert!(u.matches(&json!({"spec":{}})));
    }
}
