//! Small pure helpers over API objects as JSON: pod phase and readiness, owner references,
//! taints and tolerations, node affinity, quantities. Each rule cites where upstream keeps it.

use serde_json::{Value, json};

use crate::selector::LabelSelector;
use crate::store::meta_str;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";
pub const LABEL_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
pub const ANNOTATION_MIRROR: &str = "kubernetes.io/config.mirror";

pub fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or("")
}

pub fn i(v: &Value, ptr: &str) -> Option<i64> {
    v.pointer(ptr).and_then(Value::as_i64)
}

pub fn arr<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

pub fn name(v: &Value) -> &str {
    meta_str(v, "name")
}

pub fn namespace(v: &Value) -> &str {
    meta_str(v, "namespace")
}

pub fn uid(v: &Value) -> &str {
    meta_str(v, "uid")
}

pub fn terminating(v: &Value) -> bool {
    v.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

pub fn phase(pod: &Value) -> &str {
    s(pod, "/status/phase")
}

pub fn node_name(pod: &Value) -> &str {
    s(pod, "/spec/nodeName")
}

/// Succeeded or Failed.
pub fn terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// pkg/controller/controller_utils.go IsPodActive: not terminal and not being deleted.
pub fn pod_active(pod: &Value) -> bool {
    !terminal(pod) && !terminating(pod)
}

/// A condition object of `status.conditions` by type.
pub fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    arr(obj, "/status/conditions")
        .iter()
        .find(|c| s(c, "/type") == ty)
}

pub fn condition_status<'a>(obj: &'a Value, ty: &str) -> &'a str {
    condition(obj, ty).map(|c| s(c, "/status")).unwrap_or("")
}

/// pkg/api/v1/pod/util.go IsPodReady.
pub fn pod_ready(pod: &Value) -> bool {
    condition_status(pod, "Ready") == "True"
}

/// pkg/api/v1/pod/util.go IsPodAvailable: ready for at least minReadySeconds.
pub fn pod_available(pod: &Value, min_ready_seconds: i64, now: jiff::Timestamp) -> bool {
    if !pod_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    let Some(c) = condition(pod, "Ready") else {
        return false;
    };
    match s(c, "/lastTransitionTime").parse::<jiff::Timestamp>() {
        Ok(t) => t + jiff::SignedDuration::from_secs(min_ready_seconds) <= now,
        Err(_) => false,
    }
}

/// Set (or replace) a condition, keeping lastTransitionTime when the status is unchanged
/// (the upstream convention for every condition list).
pub fn set_condition(obj: &mut Value, mut cond: Value, now: &str) {
    let ty = s(&cond, "/type").to_string();
    let status = obj
        .as_object_mut()
        .expect("object")
        .entry("status")
        .or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let conds = status
        .as_object_mut()
        .expect("object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conds.is_array() {
        *conds = json!([]);
    }
    let list = conds.as_array_mut().expect("array");
    if let Some(old) = list.iter_mut().find(|c| s(c, "/type") == ty) {
        if s(old, "/status") == s(&cond, "/status")
            && cond.get("lastTransitionTime").is_none()
            && let Some(t) = old.get("lastTransitionTime").cloned()
        {
            cond["lastTransitionTime"] = t;
        }
        if cond.get("lastTransitionTime").is_none() {
            cond["lastTransitionTime"] = json!(now);
        }
        *old = cond;
    } else {
        if cond.get("lastTransitionTime").is_none() {
            cond["lastTransitionTime"] = json!(now);
        }
        list.push(cond);
    }
}

/// The controller owner reference (metav1.GetControllerOf).
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    arr(obj, "/metadata/ownerReferences")
        .iter()
        .find(|r| r.get("controller").and_then(Value::as_bool) == Some(true))
}

/// (kind, name, uid) of the controller owner.
pub fn controller_of(obj: &Value) -> Option<(&str, &str, &str)> {
    controller_ref(obj).map(|r| (s(r, "/kind"), s(r, "/name"), s(r, "/uid")))
}

pub fn owned_by(obj: &Value, owner_uid: &str) -> bool {
    controller_ref(obj).is_some_and(|r| s(r, "/uid") == owner_uid)
}

/// An owner reference marking `owner` as controller (metav1.NewControllerRef).
pub fn controller_ref_to(owner: &Value) -> Value {
    json!({
        "apiVersion": s(owner, "/apiVersion"),
        "kind": s(owner, "/kind"),
        "name": name(owner),
        "uid": uid(owner),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

pub fn labels(obj: &Value) -> Option<&Value> {
    obj.pointer("/metadata/labels")
}

pub fn label<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.pointer("/metadata/labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// `spec.selector` of a workload as a label selector.
pub fn spec_selector(obj: &Value) -> LabelSelector {
    LabelSelector::from_object(obj.pointer("/spec/selector"))
}

// ---- taints and tolerations ----

/// k8s.io/api core/v1 toleration.go ToleratesTaint.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let effect = s(toleration, "/effect");
    if !effect.is_empty() && effect != s(taint, "/effect") {
        return false;
    }
    let key = s(toleration, "/key");
    if !key.is_empty() && key != s(taint, "/key") {
        return false;
    }
    match s(toleration, "/operator") {
        "" | "Equal" => s(toleration, "/value") == s(taint, "/value"),
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerated_by(tolerations: &[Value], taint: &Value) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

pub fn pod_tolerations(pod: &Value) -> &[Value] {
    arr(pod, "/spec/tolerations")
}

pub fn node_taints(node: &Value) -> &[Value] {
    arr(node, "/spec/taints")
}

/// The first NoSchedule/NoExecute taint the tolerations do not tolerate
/// (component-helpers scheduling/corev1 FindMatchingUntoleratedTaint with the
/// DoNotScheduleTaintsFilterFunc of plugins/tainttoleration/taint_toleration.go).
pub fn untolerated_schedule_taint<'a>(
    taints: &'a [Value],
    tolerations: &[Value],
) -> Option<&'a Value> {
    taints
        .iter()
        .filter(|t| matches!(s(t, "/effect"), "NoSchedule" | "NoExecute"))
        .find(|t| !tolerated_by(tolerations, t))
}

/// plugin/pkg/admission/defaulttolerationseconds/admission.go: every pod tolerates
/// not-ready and unreachable (NoExecute) for 300 s unless it already has a toleration for
/// them. Returns true when something was added.
pub fn add_default_toleration_seconds(pod: &mut Value, seconds: i64) -> bool {
    let tols = pod_tolerations(pod).to_vec();
    let has = |key: &str| {
        tols.iter().any(|t| {
            let e = s(t, "/effect");
            (e.is_empty() || e == "NoExecute")
                && (s(t, "/key") == key
                    || (s(t, "/key").is_empty() && s(t, "/operator") == "Exists"))
        })
    };
    let mut add = Vec::new();
    for key in [TAINT_NOT_READY, TAINT_UNREACHABLE] {
        if !has(key) {
            add.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds}));
        }
    }
    if add.is_empty() {
        return false;
    }
    let spec = pod
        .as_object_mut()
        .expect("object")
        .entry("spec")
        .or_insert_with(|| json!({}));
    let list = spec
        .as_object_mut()
        .expect("object")
        .entry("tolerations")
        .or_insert_with(|| json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().expect("array").extend(add);
    true
}

// ---- node affinity ----

/// component-helpers scheduling/corev1/nodeaffinity: a required node selector. Terms are
/// ORed; inside a term matchExpressions (labels) and matchFields (only metadata.name) are
/// ANDed; an empty term matches nothing.
pub fn node_selector_terms_match(terms: &[Value], node: &Value) -> bool {
    terms.iter().any(|term| {
        let exprs = arr(term, "/matchExpressions");
        let fields = arr(term, "/matchFields");
        if exprs.is_empty() && fields.is_empty() {
            return false;
        }
        exprs
            .iter()
            .all(|e| requirement_matches(e, |k| label(node, k).map(str::to_string)))
            && fields.iter().all(|e| {
                requirement_matches(e, |k| {
                    if k == "metadata.name" {
                        Some(name(node).to_string())
                    } else {
                        None
                    }
                })
            })
    })
}

fn requirement_matches(e: &Value, get: impl Fn(&str) -> Option<String>) -> bool {
    let key = s(e, "/key");
    let values: Vec<&str> = arr(e, "/values").iter().filter_map(Value::as_str).collect();
    let v = get(key);
    match s(e, "/operator") {
        "In" => v.is_some_and(|v| values.contains(&v.as_str())),
        "NotIn" => v.is_none_or(|v| !values.contains(&v.as_str())),
        "Exists" => v.is_some(),
        "DoesNotExist" => v.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), Some(want)) = (
                v.and_then(|v| v.parse::<i64>().ok()),
                values.first().and_then(|w| w.parse::<i64>().ok()),
            ) else {
                return false;
            };
            if s(e, "/operator") == "Gt" {
                v > want
            } else {
                v < want
            }
        }
        _ => false,
    }
}

/// nodeSelector (all labels equal) — pkg/scheduler/framework/plugins/nodeaffinity.
pub fn node_selector_matches(pod_spec: &Value, node: &Value) -> bool {
    match pod_spec.get("nodeSelector").and_then(Value::as_object) {
        None => true,
        Some(sel) => sel.iter().all(|(k, v)| label(node, k) == v.as_str()),
    }
}

/// Required node affinity of a pod spec (None: no requirement).
pub fn required_affinity_terms(pod_spec: &Value) -> Option<&[Value]> {
    pod_spec
        .pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
}

/// nodeSelector and required node affinity (plugins/nodeaffinity/node_affinity.go Filter).
pub fn pod_spec_matches_node(pod_spec: &Value, node: &Value) -> bool {
    node_selector_matches(pod_spec, node)
        && required_affinity_terms(pod_spec).is_none_or(|t| node_selector_terms_match(t, node))
}

// ---- nodes ----

pub fn node_ready(node: &Value) -> bool {
    condition_status(node, "Ready") == "True"
}

pub fn is_control_plane(node: &Value) -> bool {
    labels(node)
        .and_then(|l| l.get(LABEL_CONTROL_PLANE))
        .is_some()
}

// ---- quantities ----

/// A resource quantity in base units (cores or bytes or count) — k8s.io/apimachinery
/// pkg/api/resource/quantity.go suffixes.
pub fn parse_quantity(q: &str) -> Option<f64> {
    let q = q.trim();
    if q.is_empty() {
        return None;
    }
    const SUFFIXES: &[(&str, f64)] = &[
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
    ];
    for (suf, mult) in SUFFIXES {
        if let Some(num) = q.strip_suffix(suf)
            && let Ok(n) = num.parse::<f64>()
        {
            return Some(n * mult);
        }
    }
    q.parse::<f64>().ok()
}

fn quantity_of(v: Option<&Value>) -> f64 {
    match v {
        Some(Value::String(s)) => parse_quantity(s).unwrap_or(0.0),
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// Requested resources of a pod: cpu in millicores, memory in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.pods += o.pods;
    }
}

fn container_requests(c: &Value) -> Resources {
    let req = c.pointer("/resources/requests");
    Resources {
        milli_cpu: (quantity_of(req.and_then(|r| r.get("cpu"))) * 1000.0).ceil() as i64,
        memory: quantity_of(req.and_then(|r| r.get("memory"))).ceil() as i64,
        pods: 0,
    }
}

/// component-helpers resource/helpers.go PodRequests: the sum over containers, at least the
/// largest init container, plus overhead; one pod.
pub fn pod_requests(pod: &Value) -> Resources {
    let mut sum = Resources {
        pods: 1,
        ..Default::default()
    };
    for c in arr(pod, "/spec/containers") {
        sum.add(&container_requests(c));
    }
    for c in arr(pod, "/spec/initContainers") {
        let r = container_requests(c);
        sum.milli_cpu = sum.milli_cpu.max(r.milli_cpu);
        sum.memory = sum.memory.max(r.memory);
    }
    if let Some(o) = pod.pointer("/spec/overhead") {
        sum.milli_cpu += (quantity_of(o.get("cpu")) * 1000.0).ceil() as i64;
        sum.memory += quantity_of(o.get("memory")).ceil() as i64;
    }
    sum
}

/// A node's allocatable (falls back to capacity, like the scheduler's NodeInfo).
pub fn node_allocatable(node: &Value) -> Resources {
    let a = node
        .pointer("/status/allocatable")
        .filter(|v| v.as_object().is_some_and(|m| !m.is_empty()));
    let a = a.or_else(|| node.pointer("/status/capacity"));
    Resources {
        milli_cpu: (quantity_of(a.and_then(|r| r.get("cpu"))) * 1000.0).round() as i64,
        memory: quantity_of(a.and_then(|r| r.get("memory"))) as i64,
        pods: quantity_of(a.and_then(|r| r.get("pods"))) as i64,
    }
}

// ---- int-or-percent ----

/// k8s.io/apimachinery pkg/util/intstr GetScaledValueFromIntOrPercent.
pub fn scaled_int_or_percent(v: &Value, total: i64, round_up: bool) -> Result<i64, String> {
    match v {
        Value::Number(n) => n.as_i64().ok_or_else(|| format!("invalid value {n}")),
        Value::String(s) => match s.strip_suffix('%') {
            Some(p) => {
                let p: i64 = p
                    .parse()
                    .map_err(|_| format!("invalid value for IntOrString: invalid value {s:?}"))?;
                let x = p as f64 * total as f64 / 100.0;
                Ok(if round_up {
                    x.ceil() as i64
                } else {
                    x.floor() as i64
                })
            }
            None => s.parse::<i64>().map_err(|_| {
                "invalid value for IntOrString: invalid type: string is not a percentage"
                    .to_string()
            }),
        },
        _ => Err("invalid type: neither int nor percentage".into()),
    }
}

/// Hash like pkg/controller/controller_utils.go ComputeHash (FNV-32a over the object,
/// rendered with rand.SafeEncodeString's alphabet).
pub fn compute_hash(v: &Value, collision: i64) -> String {
    let mut h: u32 = 0x811c9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= *b as u32;
            h = h.wrapping_mul(0x01000193);
        }
    };
    feed(v.to_string().as_bytes());
    if collision > 0 {
        feed(collision.to_string().as_bytes());
    }
    safe_encode(&h.to_string())
}

/// k8s.io/apimachinery pkg/util/rand SafeEncodeString.
pub fn safe_encode(s: &str) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    s.bytes()
        .map(|b| ALPHA[(b as usize) % ALPHA.len()] as char)
        .collect()
}

/// The owner's pod template with extra labels set (the labels a controller
/// stamps on the pods it creates).
pub fn template_labelled(owner: &Value, labels: &[(&str, Value)]) -> Value {
    let mut t = owner
        .pointer("/spec/template")
        .cloned()
        .unwrap_or_else(|| json!({}));
    if let Some(md) = t
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
    {
        let l = md
            .as_object_mut()
            .expect("object")
            .entry("labels")
            .or_insert_with(|| json!({}));
        for (k, v) in labels {
            l[*k] = v.clone();
        }
    }
    t
}

/// A pod object from a workload's pod template (pkg/controller/controller_utils.go
/// GetPodFromTemplate), owned by `owner`.
pub fn pod_from_template(
    template: &Value,
    owner: &Value,
    name: Option<&str>,
    generate_name: Option<&str>,
) -> Value {
    let mut md = serde_json::Map::new();
    if let Some(n) = name {
        md.insert("name".into(), json!(n));
    }
    if let Some(g) = generate_name {
        md.insert("generateName".into(), json!(g));
    }
    md.insert("namespace".into(), json!(namespace(owner)));
    if let Some(l) = template.pointer("/metadata/labels") {
        md.insert("labels".into(), l.clone());
    }
    if let Some(a) = template.pointer("/metadata/annotations") {
        md.insert("annotations".into(), a.clone());
    }
    if let Some(f) = template.pointer("/metadata/finalizers") {
        md.insert("finalizers".into(), f.clone());
    }
    md.insert("ownerReferences".into(), json!([controller_ref_to(owner)]));
    let mut spec = template.get("spec").cloned().unwrap_or_else(|| json!({}));
    default_pod_spec(&mut spec);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": md, "spec": spec, "status": {"phase": "Pending", "qosClass": qos_class(template)}})
}

/// The defaults the API server gives a pod spec (pkg/apis/core/v1/defaults.go), for pods the
/// simulation creates in-process.
pub fn default_pod_spec(spec: &mut Value) {
    let Some(m) = spec.as_object_mut() else {
        return;
    };
    m.entry("restartPolicy").or_insert(json!("Always"));
    m.entry("terminationGracePeriodSeconds")
        .or_insert(json!(30));
    m.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
    m.entry("schedulerName")
        .or_insert(json!("default-scheduler"));
    m.entry("securityContext").or_insert(json!({}));
    m.entry("enableServiceLinks").or_insert(json!(true));
    m.entry("preemptionPolicy")
        .or_insert(json!("PreemptLowerPriority"));
    m.entry("priority").or_insert(json!(0));
    if let Some(cs) = m.get_mut("containers").and_then(Value::as_array_mut) {
        for c in cs {
            if let Some(c) = c.as_object_mut() {
                c.entry("imagePullPolicy").or_insert(json!("IfNotPresent"));
                c.entry("terminationMessagePath")
                    .or_insert(json!("/dev/termination-log"));
                c.entry("terminationMessagePolicy").or_insert(json!("File"));
                c.entry("resources").or_insert(json!({}));
            }
        }
    }
}

/// pkg/apis/core/v1/helper/qos GetPodQOS (simplified to requests/limits presence).
pub fn qos_class(pod_or_template: &Value) -> &'static str {
    let cs = arr(pod_or_template, "/spec/containers");
    let mut any = false;
    let mut all_guaranteed = !cs.is_empty();
    for c in cs {
        let req = c.pointer("/resources/requests");
        let lim = c.pointer("/resources/limits");
        if req.is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()))
            || lim.is_some_and(|r| r.as_object().is_some_and(|m| !m.is_empty()))
        {
            any = true;
        }
        let g = ["cpu", "memory"].iter().all(|k| {
            let l = lim.and_then(|l| l.get(*k));
            let r = req.and_then(|r| r.get(*k)).or(l);
            l.is_some() && r == l
        });
        all_guaranteed &= g;
    }
    if all_guaranteed {
        "Guaranteed"
    } else if any {
        "Burstable"
    } else {
        "BestEffort"
    }
}

/// Lab seconds from an RFC 3339 timestamp to `now` (None when unparsable).
pub fn seconds_since(now: jiff::Timestamp, rfc3339: &str) -> Option<f64> {
    let t: jiff::Timestamp = rfc3339.parse().ok()?;
    Some(now.duration_since(t).as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("100m"), Some(0.1));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("500M"), Some(5e8));
    }

    #[test]
    fn int_or_percent_rounding() {
        assert_eq!(scaled_int_or_percent(&json!("25%"), 10, true).unwrap(), 3);
        assert_eq!(scaled_int_or_percent(&json!("25%"), 10, false).unwrap(), 2);
        assert_eq!(scaled_int_or_percent(&json!(2), 10, false).unwrap(), 2);
    }

    #[test]
    fn toleration_rules() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(
            &json!({"key": "k", "operator": "Equal", "value": "v"}),
            &taint
        ));
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(!tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
    }

    #[test]
    fn affinity_terms() {
        let node = json!({"metadata": {"name": "n1", "labels": {"zone": "a"}}});
        let t = |v: Value| node_selector_terms_match(v.as_array().unwrap(), &node);
        assert!(t(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}])
        ));
        assert!(!t(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}])
        ));
        assert!(t(
            json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}])
        ));
        assert!(!t(json!([{}])));
    }

    #[test]
    fn default_tolerations_added_once() {
        let mut p = json!({"spec": {}});
        assert!(add_default_toleration_seconds(&mut p, 300));
        assert!(!add_default_toleration_seconds(&mut p, 300));
        assert_eq!(pod_tolerations(&p).len(), 2);
    }
}
