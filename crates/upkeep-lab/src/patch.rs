//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.
//!
//! Strategic merge follows k8s.io/apimachinery pkg/util/strategicpatch/patch.go for the list
//! fields kubectl and the plugins send: lists of objects merged by their `patchMergeKey`
//! (from the `patchStrategy:"merge"` struct tags in k8s.io/api core/v1 types.go), `finalizers`
//! merged as a set, every other list replaced. Directives: `$patch: replace|delete|merge`,
//! `$retainKeys`, `$deleteFromPrimitiveList/<field>`; `$setElementOrder/<field>` is honoured
//! for the order of keyed lists.

use serde_json::{Map, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Json,
    Strategic,
}

impl PatchKind {
    /// From the request Content-Type; `None` for unsupported types (e.g. apply-patch).
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let ct = ct.split(';').next().unwrap_or("").trim();
        match ct {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            _ => None,
        }
    }
}

/// Apply `patch` to `doc`. The error is a message for a 422/400 Status.
pub fn apply_patch(doc: &mut Value, kind: PatchKind, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err("merge patch body must be a JSON object".into());
            }
            json_patch::merge(doc, patch);
            Ok(())
        }
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch.clone()).map_err(|e| {
                format!("the server rejected our request due to an error in our request: {e}")
            })?;
            json_patch::patch(doc, &ops).map_err(|e| e.to_string())
        }
        PatchKind::Strategic => {
            if !patch.is_object() {
                return Err("strategic merge patch body must be a JSON object".into());
            }
            strategic_merge(doc, patch);
            Ok(())
        }
    }
}

/// The merge key of a list field, if it is merged by key.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "imagePullSecrets"
        | "resourceClaims" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" | "addresses" => "type",
        "taints" => "key",
        "ownerReferences" => "uid",
        "hostAliases" | "podIPs" | "hostIPs" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        // container ports merge on containerPort, service ports on port
        "ports" => {
            if items.iter().any(|i| i.get("containerPort").is_some()) {
                "containerPort"
            } else {
                "port"
            }
        }
        _ => return None,
    })
}

fn is_set_list(field: &str) -> bool {
    field == "finalizers"
}

/// Strategic merge of `patch` into `target`.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    match p.get("$patch").and_then(Value::as_str) {
        Some("replace") => {
            *target = Value::Object(strip_directives(p));
            return;
        }
        Some("delete") => {
            *target = Value::Null;
            return;
        }
        _ => {}
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    if let Some(keep) = p.get("$retainKeys").and_then(Value::as_array) {
        let keep: Vec<&str> = keep.iter().filter_map(Value::as_str).collect();
        t.retain(|k, _| keep.contains(&k.as_str()));
    }
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(list), Some(del)) =
                (t.get_mut(field).and_then(Value::as_array_mut), v.as_array())
            {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                t.remove(k);
            }
            Value::Object(_) => {
                let entry = t.entry(k.clone()).or_insert(Value::Null);
                strategic_merge(entry, v);
                if entry.is_null() {
                    t.remove(k);
                }
            }
            Value::Array(items) => {
                let cur = t.remove(k).unwrap_or(Value::Null);
                let merged = merge_list(k, cur, items);
                t.insert(k.clone(), merged);
            }
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    // `$setElementOrder/<field>`: reorder keyed lists as the patch says.
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && let (Some(list), Some(order)) =
                (t.get_mut(field).and_then(Value::as_array_mut), v.as_array())
        {
            reorder(field, list, order);
        }
    }
}

fn strip_directives(p: &Map<String, Value>) -> Map<String, Value> {
    p.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn merge_list(field: &str, cur: Value, items: &[Value]) -> Value {
    if items
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Value::Array(
            items
                .iter()
                .filter(|i| i.get("$patch").is_none())
                .cloned()
                .collect(),
        );
    }
    let mut list = match cur {
        Value::Array(a) => a,
        _ => Vec::new(),
    };
    if is_set_list(field) {
        for i in items {
            if !list.contains(i) {
                list.push(i.clone());
            }
        }
        return Value::Array(list);
    }
    let Some(mk) = merge_key(field, items).or_else(|| merge_key(field, &list)) else {
        return Value::Array(items.iter().map(without_directives).collect());
    };
    for item in items {
        let key = item.get(mk);
        let pos = key.and_then(|kv| list.iter().position(|x| x.get(mk) == Some(kv)));
        if item.get("$patch").and_then(Value::as_str) == Some("delete") {
            if let Some(i) = pos {
                list.remove(i);
            }
            continue;
        }
        match pos {
            Some(i) => strategic_merge(&mut list[i], item),
            None => list.push(without_directives(item)),
        }
    }
    Value::Array(list)
}

fn without_directives(v: &Value) -> Value {
    match v.as_object() {
        Some(m) => Value::Object(strip_directives(m)),
        None => v.clone(),
    }
}

fn reorder(field: &str, list: &mut [Value], order: &[Value]) {
    let Some(mk) = merge_key(field, list) else {
        return;
    };
    let rank = |x: &Value| {
        order
            .iter()
            .position(|o| o.get(mk) == x.get(mk))
            .unwrap_or(usize::MAX)
    };
    list.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keyed_lists_merge_by_name_and_type() {
        let mut pod = json!({"spec":{"containers":[{"name":"a","image":"x:1"},{"name":"b","image":"y:1"}]},
            "status":{"conditions":[{"type":"Ready","status":"False"}]}});
        strategic_merge(
            &mut pod,
            &json!({"spec":{"containers":[{"name":"b","image":"y:2"}]},
                "status":{"conditions":[{"type":"DisruptionTarget","status":"True"},{"type":"Ready","status":"True"}]}}),
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "x:1");
        assert_eq!(pod["spec"]["containers"][1]["image"], "y:2");
        assert_eq!(pod["status"]["conditions"].as_array().unwrap().len(), 2);
        assert_eq!(pod["status"]["conditions"][0]["status"], "True");
    }

    #[test]
    fn delete_directive_and_null() {
        let mut node = json!({"spec":{"unschedulable":true,"taints":[{"key":"a","effect":"NoSchedule"},{"key":"b","effect":"NoSchedule"}]}});
        strategic_merge(
            &mut node,
            &json!({"spec":{"unschedulable":null,"taints":[{"key":"a","$patch":"delete"}]}}),
        );
        assert_eq!(
            node,
            json!({"spec":{"taints":[{"key":"b","effect":"NoSchedule"}]}})
        );
    }

    #[test]
    fn plain_lists_replace_and_finalizers_union() {
        let mut o = json!({"metadata":{"finalizers":["a"]},"spec":{"args":["1","2"]}});
        strategic_merge(
            &mut o,
            &json!({"metadata":{"finalizers":["b"]},"spec":{"args":["3"]}}),
        );
        assert_eq!(
            o,
            json!({"metadata":{"finalizers":["a","b"]},"spec":{"args":["3"]}})
        );
    }
}
