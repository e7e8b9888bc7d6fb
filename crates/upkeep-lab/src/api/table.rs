//! `meta.k8s.io/v1 Table` responses with kubectl's usual columns, following
//! kubernetes pkg/printers/internalversion/printers.go (printNode, printPod, printDeployment, ...).

use serde_json::{Value, json};

use crate::clock::{Clock, human_duration};
use crate::store::meta_str;

fn col(name: &str, ty: &str, priority: u8, desc: &str) -> Value {
    let mut c =
        json!({"name": name, "type": ty, "format": "", "description": desc, "priority": priority});
    if name == "Name" {
        c["format"] = json!("name");
    }
    c
}

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// Column definitions for a kind.
pub fn columns(kind: &str) -> Vec<Value> {
    let name = col("Name", "string", 0, NAME_DESC);
    let age = col("Age", "string", 0, AGE_DESC);
    let s = |n: &str| col(n, "string", 0, "");
    let i = |n: &str| col(n, "integer", 0, "");
    let w = |n: &str| col(n, "string", 1, "");
    match kind {
        "Node" => vec![
            name,
            s("Status"),
            s("Roles"),
            age,
            s("Version"),
            w("Internal-IP"),
            w("External-IP"),
            w("OS-Image"),
            w("Kernel-Version"),
            w("Container-Runtime"),
        ],
        "Pod" => vec![
            name,
            s("Ready"),
            s("Status"),
            s("Restarts"),
            age,
            w("IP"),
            w("Node"),
            w("Nominated Node"),
            w("Readiness Gates"),
        ],
        "Deployment" => vec![
            name,
            s("Ready"),
            i("Up-to-date"),
            i("Available"),
            age,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        "ReplicaSet" => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            age,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        "DaemonSet" => vec![
            name,
            i("Desired"),
            i("Current"),
            i("Ready"),
            i("Up-to-date"),
            i("Available"),
            s("Node Selector"),
            age,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        "StatefulSet" => vec![name, s("Ready"), age, w("Containers"), w("Images")],
        "Job" => vec![
            name,
            s("Status"),
            s("Completions"),
            s("Duration"),
            age,
            w("Containers"),
            w("Images"),
            w("Selector"),
        ],
        "PodDisruptionBudget" => vec![
            name,
            s("Min Available"),
            s("Max Unavailable"),
            i("Allowed Disruptions"),
            age,
        ],
        "Namespace" => vec![name, s("Status"), age],
        "Service" => vec![
            name,
            s("Type"),
            s("Cluster-IP"),
            s("External-IP"),
            s("Port(s)"),
            age,
            w("Selector"),
        ],
        "ConfigMap" => vec![name, i("Data"), age],
        "Secret" => vec![name, s("Type"), i("Data"), age],
        "Lease" => vec![name, s("Holder"), age],
        "Event" => vec![
            s("Last Seen"),
            s("Type"),
            s("Reason"),
            s("Object"),
            s("Message"),
        ],
        "ServiceAccount" => vec![name, i("Secrets"), age],
        "Endpoints" => vec![name, s("Endpoints"), age],
        _ => vec![name, age],
    }
}

fn age(clock: &Clock, o: &Value) -> String {
    match clock.seconds_since(meta_str(o, "creationTimestamp")) {
        Some(s) => human_duration(s as i64),
        None => "<unknown>".into(),
    }
}

fn s<'a>(o: &'a Value, ptr: &str) -> &'a str {
    o.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

fn n(o: &Value, ptr: &str) -> i64 {
    o.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn or_none(v: String) -> String {
    if v.is_empty() { "<none>".into() } else { v }
}

fn containers_images(o: &Value, ptr: &str) -> (String, String) {
    let cs = o
        .pointer(ptr)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let names: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    let images: Vec<&str> = cs
        .iter()
        .filter_map(|c| c.get("image").and_then(Value::as_str))
        .collect();
    (names.join(","), images.join(","))
}

fn selector_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return "<none>".into();
    };
    let mut parts = Vec::new();
    if let Some(ml) = sel.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in ml {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    if let Some(me) = sel.get("matchExpressions").and_then(Value::as_array) {
        for e in me {
            let k = e.get("key").and_then(Value::as_str).unwrap_or("");
            let vals: Vec<&str> = e
                .get("values")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            match e.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => parts.push(format!("{k} in ({})", vals.join(","))),
                "NotIn" => parts.push(format!("{k} notin ({})", vals.join(","))),
                "Exists" => parts.push(k.to_string()),
                "DoesNotExist" => parts.push(format!("!{k}")),
                _ => {}
            }
        }
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// kubectl's pod STATUS column (printers.go printPod, simplified: init containers are
/// summarised as `Init:N/M`).
pub fn pod_status(o: &Value) -> String {
    let mut reason = s(o, "/status/phase").to_string();
    if !s(o, "/status/reason").is_empty() {
        reason = s(o, "/status/reason").to_string();
    }
    let init_total = o
        .pointer("/spec/initContainers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let mut initializing = false;
    if let Some(ics) = o
        .pointer("/status/initContainerStatuses")
        .and_then(Value::as_array)
    {
        for (i, c) in ics.iter().enumerate() {
            let term = c.pointer("/state/terminated");
            if term.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64) == Some(0)) {
                continue;
            }
            initializing = true;
            reason = if let Some(t) = term {
                let r = t.get("reason").and_then(Value::as_str).unwrap_or("");
                if r.is_empty() {
                    format!(
                        "Init:ExitCode:{}",
                        t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                    )
                } else {
                    format!("Init:{r}")
                }
            } else if let Some(r) = c
                .pointer("/state/waiting/reason")
                .and_then(Value::as_str)
                .filter(|r| !r.is_empty() && *r != "PodInitializing")
            {
                format!("Init:{r}")
            } else {
                format!("Init:{i}/{init_total}")
            };
            break;
        }
    }
    if !initializing {
        let mut has_running = false;
        if let Some(cs) = o
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
        {
            for c in cs.iter().rev() {
                if let Some(r) = c
                    .pointer("/state/waiting/reason")
                    .and_then(Value::as_str)
                    .filter(|r| !r.is_empty())
                {
                    reason = r.to_string();
                } else if let Some(t) = c.pointer("/state/terminated") {
                    let r = t.get("reason").and_then(Value::as_str).unwrap_or("");
                    reason = if !r.is_empty() {
                        r.to_string()
                    } else if let Some(sig) =
                        t.get("signal").and_then(Value::as_i64).filter(|s| *s != 0)
                    {
                        format!("Signal:{sig}")
                    } else {
                        format!(
                            "ExitCode:{}",
                            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
                        )
                    };
                } else if c.get("ready").and_then(Value::as_bool) == Some(true)
                    && c.pointer("/state/running").is_some()
                {
                    has_running = true;
                }
            }
        }
        if reason == "Completed" && has_running {
            let ready = o
                .pointer("/status/conditions")
                .and_then(Value::as_array)
                .is_some_and(|cs| {
                    cs.iter()
                        .any(|c| c["type"] == "Ready" && c["status"] == "True")
                });
            reason = if ready {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }
    if o.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
    {
        reason = if s(o, "/status/reason") == "NodeLost" {
            "Unknown".into()
        } else {
            "Terminating".into()
        };
    }
    reason
}

fn node_status(o: &Value) -> String {
    let mut st = match o
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"))
    {
        Some(c) if c["status"] == "True" => "Ready".to_string(),
        Some(_) => "NotReady".to_string(),
        None => "Unknown".to_string(),
    };
    if o.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        st.push_str(",SchedulingDisabled");
    }
    st
}

/// printers.go findNodeRoles
pub fn node_roles(o: &Value) -> String {
    let mut roles: Vec<String> = Vec::new();
    if let Some(l) = o.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in l {
            if let Some(r) = k.strip_prefix("node-role.kubernetes.io/") {
                if !r.is_empty() {
                    roles.push(r.to_string());
                }
            } else if k == "kubernetes.io/role"
                && let Some(v) = v.as_str().filter(|v| !v.is_empty())
            {
                roles.push(v.to_string());
            }
        }
    }
    roles.sort();
    roles.dedup();
    or_none(roles.join(","))
}

fn int_or_str(o: &Value, ptr: &str) -> String {
    match o.pointer(ptr) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "N/A".into(),
    }
}

/// The cells of one row.
pub fn cells(clock: &Clock, o: &Value) -> Vec<Value> {
    let kind = o.get("kind").and_then(Value::as_str).unwrap_or("");
    let name = json!(meta_str(o, "name"));
    let age = json!(age(clock, o));
    match kind {
        "Node" => {
            let addr = |t: &str| {
                o.pointer("/status/addresses")
                    .and_then(Value::as_array)
                    .and_then(|a| a.iter().find(|x| x["type"] == t))
                    .and_then(|x| x["address"].as_str())
                    .unwrap_or("<none>")
                    .to_string()
            };
            vec![
                name,
                json!(node_status(o)),
                json!(node_roles(o)),
                age,
                json!(s(o, "/status/nodeInfo/kubeletVersion")),
                json!(addr("InternalIP")),
                json!(addr("ExternalIP")),
                json!(or_unknown(s(o, "/status/nodeInfo/osImage"))),
                json!(or_unknown(s(o, "/status/nodeInfo/kernelVersion"))),
                json!(or_unknown(s(o, "/status/nodeInfo/containerRuntimeVersion"))),
            ]
        }
        "Pod" => {
            let total = o
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            let cs = o
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ready = cs
                .iter()
                .filter(|c| c.get("ready").and_then(Value::as_bool) == Some(true))
                .count();
            let restarts: i64 = cs
                .iter()
                .map(|c| c.get("restartCount").and_then(Value::as_i64).unwrap_or(0))
                .sum();
            let gates = o
                .pointer("/spec/readinessGates")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            vec![
                name,
                json!(format!("{ready}/{total}")),
                json!(pod_status(o)),
                json!(restarts.to_string()),
                age,
                json!(or_none(s(o, "/status/podIP").to_string())),
                json!(or_none(s(o, "/spec/nodeName").to_string())),
                json!(or_none(s(o, "/status/nominatedNodeName").to_string())),
                json!(if gates == 0 {
                    "<none>".to_string()
                } else {
                    format!("0/{gates}")
                }),
            ]
        }
        "Deployment" => {
            let (c, i) = containers_images(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                )),
                json!(n(o, "/status/updatedReplicas")),
                json!(n(o, "/status/availableReplicas")),
                age,
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "ReplicaSet" => {
            let (c, i) = containers_images(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(n(o, "/spec/replicas")),
                json!(n(o, "/status/replicas")),
                json!(n(o, "/status/readyReplicas")),
                age,
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "DaemonSet" => {
            let (c, i) = containers_images(o, "/spec/template/spec/containers");
            let ns = o
                .pointer("/spec/template/spec/nodeSelector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(n(o, "/status/desiredNumberScheduled")),
                json!(n(o, "/status/currentNumberScheduled")),
                json!(n(o, "/status/numberReady")),
                json!(n(o, "/status/updatedNumberScheduled")),
                json!(n(o, "/status/numberAvailable")),
                json!(or_none(ns)),
                age,
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "StatefulSet" => {
            let (c, i) = containers_images(o, "/spec/template/spec/containers");
            vec![
                name,
                json!(format!(
                    "{}/{}",
                    n(o, "/status/readyReplicas"),
                    n(o, "/spec/replicas")
                )),
                age,
                json!(c),
                json!(i),
            ]
        }
        "Job" => {
            let (c, i) = containers_images(o, "/spec/template/spec/containers");
            let cond = |t: &str| {
                o.pointer("/status/conditions")
                    .and_then(Value::as_array)
                    .is_some_and(|cs| cs.iter().any(|c| c["type"] == t && c["status"] == "True"))
            };
            let status = if cond("Complete") {
                "Complete"
            } else if cond("Failed") {
                "Failed"
            } else if cond("FailureTarget") {
                "FailureTarget"
            } else if cond("SuccessCriteriaMet") {
                "SuccessCriteriaMet"
            } else if cond("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            let completions = match o.pointer("/spec/completions").and_then(Value::as_i64) {
                Some(c) => format!("{}/{c}", n(o, "/status/succeeded")),
                None => format!(
                    "{}/1 of {}",
                    n(o, "/status/succeeded"),
                    n(o, "/spec/parallelism").max(1)
                ),
            };
            let start = s(o, "/status/startTime");
            let duration = if start.is_empty() {
                String::new()
            } else {
                let end = s(o, "/status/completionTime");
                let secs = match (
                    start.parse::<jiff::Timestamp>(),
                    end.parse::<jiff::Timestamp>(),
                ) {
                    (Ok(a), Ok(b)) => b.duration_since(a).as_secs(),
                    _ => clock.seconds_since(start).unwrap_or(0.0) as i64,
                };
                human_duration(secs)
            };
            vec![
                name,
                json!(status),
                json!(completions),
                json!(duration),
                age,
                json!(c),
                json!(i),
                json!(selector_string(o.pointer("/spec/selector"))),
            ]
        }
        "PodDisruptionBudget" => vec![
            name,
            json!(int_or_str(o, "/spec/minAvailable")),
            json!(int_or_str(o, "/spec/maxUnavailable")),
            json!(n(o, "/status/disruptionsAllowed")),
            age,
        ],
        "Namespace" => vec![name, json!(s(o, "/status/phase")), age],
        "Service" => {
            let ports = o
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            let proto = p.get("protocol").and_then(Value::as_str).unwrap_or("TCP");
                            match p.get("nodePort").and_then(Value::as_i64) {
                                Some(np) => format!("{}:{np}/{proto}", n(p, "/port")),
                                None => format!("{}/{proto}", n(p, "/port")),
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            let sel = o
                .pointer("/spec/selector")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            vec![
                name,
                json!(if s(o, "/spec/type").is_empty() {
                    "ClusterIP"
                } else {
                    s(o, "/spec/type")
                }),
                json!(or_none(s(o, "/spec/clusterIP").to_string())),
                json!("<none>"),
                json!(or_none(ports)),
                age,
                json!(or_none(sel)),
            ]
        }
        "ConfigMap" => {
            let d = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |m| m.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len());
            vec![name, json!(d), age]
        }
        "Secret" => vec![
            name,
            json!(s(o, "/type")),
            json!(
                o.get("data")
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            ),
            age,
        ],
        "Lease" => vec![name, json!(s(o, "/spec/holderIdentity")), age],
        "ServiceAccount" => vec![
            name,
            json!(
                o.get("secrets")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
            ),
            age,
        ],
        "Endpoints" => vec![name, json!("<none>"), age],
        "Event" => {
            let last = [
                s(o, "/lastTimestamp"),
                s(o, "/eventTime"),
                s(o, "/series/lastObservedTime"),
                meta_str(o, "creationTimestamp"),
            ]
            .into_iter()
            .find(|t| !t.is_empty())
            .and_then(|t| clock.seconds_since(t))
            .map(|x| human_duration(x as i64))
            .unwrap_or_else(|| "<unknown>".into());
            let (ik, iname) = if o.get("involvedObject").is_some() {
                (s(o, "/involvedObject/kind"), s(o, "/involvedObject/name"))
            } else {
                (s(o, "/regarding/kind"), s(o, "/regarding/name"))
            };
            let msg = if o.get("message").is_some() {
                s(o, "/message")
            } else {
                s(o, "/note")
            };
            vec![
                json!(last),
                json!(s(o, "/type")),
                json!(s(o, "/reason")),
                json!(format!("{}/{}", ik.to_lowercase(), iname)),
                json!(msg.trim()),
            ]
        }
        _ => vec![name, age],
    }
}

fn or_unknown(v: &str) -> String {
    if v.is_empty() {
        "<unknown>".into()
    } else {
        v.to_string()
    }
}

/// The object embedded in a row for `includeObject` (Object, Metadata or None).
pub fn row_object(o: &Value, include: &str) -> Value {
    match include {
        "None" => Value::Null,
        "Object" => o.clone(),
        _ => partial_metadata(o),
    }
}

/// `meta.k8s.io/v1 PartialObjectMetadata` of an object.
pub fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))})
}

/// A whole Table.
pub fn table(clock: &Clock, kind: &str, objs: &[&Value], include: &str, list_meta: Value) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let mut r = json!({"cells": cells(clock, o)});
            let obj = row_object(o, include);
            if !obj.is_null() {
                r["object"] = obj;
            }
            r
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta, "columnDefinitions": columns(kind), "rows": rows})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_status_and_roles() {
        let n = json!({"kind":"Node","metadata":{"name":"cp","labels":{"node-role.kubernetes.io/control-plane":""}},
            "spec":{"unschedulable":true},"status":{"conditions":[{"type":"Ready","status":"True"}]}});
        assert_eq!(node_status(&n), "Ready,SchedulingDisabled");
        assert_eq!(node_roles(&n), "control-plane");
    }

    #[test]
    fn pod_statuses() {
        let p = json!({"status":{"phase":"Pending","containerStatuses":[{"state":{"waiting":{"reason":"ContainerCreating"}}}]}});
        assert_eq!(pod_status(&p), "ContainerCreating");
        let t = json!({"metadata":{"deletionTimestamp":"2026-01-01T00:00:00Z"},"status":{"phase":"Running"}});
        assert_eq!(pod_status(&t), "Terminating");
    }
}
