//! What the apiserver does to an object on the way in through the API (registry strategies,
//! defaulting and the default admission plugins), for the fields the lab's clients notice.

use serde_json::{Value, json};

use crate::error::{ApiError, ApiResult, Cause};
use crate::resources::{self, Resource};
use crate::selector::LabelSelector;
use crate::store::meta_str;

/// A create must not carry a resourceVersion: staging/src/k8s.io/apiserver/pkg/storage/etcd3/store.go
/// Create returns `storage.ErrResourceVersionSetOnCreate`, a plain error the handler turns into a
/// 500 with no reason. Values that do not parse as a version, and "0", pass; dry-run never reaches
/// the storage (registry/generic/registry/dryrun.go), so it passes too.
pub fn check_create_resource_version(obj: &Value, dry_run: bool) -> ApiResult<()> {
    let rv = meta_str(obj, "resourceVersion");
    if !dry_run && rv.parse::<u64>().is_ok_and(|v| v != 0) {
        return Err(ApiError::new(
            500,
            "",
            "resourceVersion should not be set on objects to be created",
        ));
    }
    Ok(())
}

/// Next NodePort offset (process-wide; the lab does not check for collisions after 2,768).
static NODE_PORT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(80);

/// Prepare an object created through the API.
pub fn prepare_create(
    res: &'static Resource,
    obj: &mut Value,
    next_cluster_ip: impl FnOnce() -> String,
) {
    let Some(o) = obj.as_object_mut() else { return };
    match res.kind {
        "Pod" if res == &resources::POD => {
            // pkg/registry/core/pod/strategy.go PrepareForCreate: status reset to Pending + QoS class
            let qos = qos_class(o.get("spec").unwrap_or(&Value::Null));
            o.insert(
                "status".into(),
                json!({"phase": "Pending", "qosClass": qos}),
            );
            let spec = o.entry("spec").or_insert(json!({}));
            if let Some(spec) = spec.as_object_mut() {
                // pkg/apis/core/v1/defaults.go SetDefaults_PodSpec
                spec.entry("restartPolicy").or_insert(json!("Always"));
                spec.entry("terminationGracePeriodSeconds")
                    .or_insert(json!(30));
                spec.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
                spec.entry("schedulerName")
                    .or_insert(json!("default-scheduler"));
                spec.entry("securityContext").or_insert(json!({}));
                spec.entry("enableServiceLinks").or_insert(json!(true));
                spec.entry("preemptionPolicy")
                    .or_insert(json!("PreemptLowerPriority"));
                spec.entry("priority").or_insert(json!(0));
                spec.entry("serviceAccountName").or_insert(json!("default"));
                default_containers(spec);
                // plugin/pkg/admission/defaulttolerationseconds: 300 s NoExecute tolerations
                let tols = spec.entry("tolerations").or_insert(json!([]));
                if let Some(t) = tols.as_array_mut() {
                    for key in [
                        "node.kubernetes.io/not-ready",
                        "node.kubernetes.io/unreachable",
                    ] {
                        let has = t.iter().any(|x| {
                            (x.get("key").and_then(Value::as_str) == Some(key)
                                || (x.get("key").is_none()
                                    && x.get("operator").and_then(Value::as_str) == Some("Exists")))
                                && x.get("effect")
                                    .and_then(Value::as_str)
                                    .is_none_or(|e| e == "NoExecute")
                        });
                        if !has {
                            t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
                        }
                    }
                }
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" => {
            o.insert("status".into(), json!({}));
            let kind = res.kind;
            if let Some(spec) = o.get_mut("spec").and_then(Value::as_object_mut) {
                if kind != "DaemonSet" && kind != "Job" {
                    spec.entry("replicas").or_insert(json!(1));
                }
                spec.entry("revisionHistoryLimit").or_insert(json!(10));
                match kind {
                    "Deployment" => {
                        spec.entry("strategy").or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}));
                        spec.entry("progressDeadlineSeconds").or_insert(json!(600));
                    }
                    "StatefulSet" => {
                        spec.entry("podManagementPolicy")
                            .or_insert(json!("OrderedReady"));
                        spec.entry("updateStrategy").or_insert(
                            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                        );
                    }
                    "DaemonSet" => {
                        spec.entry("updateStrategy").or_insert(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}));
                    }
                    "Job" => {
                        spec.remove("revisionHistoryLimit");
                        spec.entry("parallelism").or_insert(json!(1));
                        spec.entry("backoffLimit").or_insert(json!(6));
                        spec.entry("completionMode").or_insert(json!("NonIndexed"));
                        spec.entry("suspend").or_insert(json!(false));
                        if spec.get("completions").is_none()
                            && spec.get("parallelism") == Some(&json!(1))
                        {
                            spec.insert("completions".into(), json!(1));
                        }
                    }
                    _ => {}
                }
                if kind == "ReplicaSet" {
                    spec.remove("revisionHistoryLimit");
                }
                // Job: selector and labels generated from the uid are added by the store caller.
                if let Some(tpl) = spec.get_mut("template").and_then(Value::as_object_mut)
                    && let Some(ps) = tpl.get_mut("spec").and_then(Value::as_object_mut)
                {
                    ps.entry("restartPolicy").or_insert(json!(if kind == "Job" {
                        "Never"
                    } else {
                        "Always"
                    }));
                    ps.entry("terminationGracePeriodSeconds")
                        .or_insert(json!(30));
                    ps.entry("dnsPolicy").or_insert(json!("ClusterFirst"));
                    ps.entry("schedulerName")
                        .or_insert(json!("default-scheduler"));
                    ps.entry("securityContext").or_insert(json!({}));
                    default_containers(ps);
                }
            }
        }
        "PodDisruptionBudget" => {
            // pkg/registry/policy/poddisruptionbudget/strategy.go PrepareForCreate: status reset
            o.insert("status".into(), json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0}));
        }
        "Namespace" => {
            o.insert("status".into(), json!({"phase": "Active"}));
            let name = o
                .get("metadata")
                .and_then(|m| m.get("name"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            o.entry("spec")
                .or_insert(json!({}))
                .as_object_mut()
                .map(|s| s.entry("finalizers").or_insert(json!(["kubernetes"])));
            if let Some(md) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = md.entry("labels").or_insert(json!({}));
                if !name.is_empty() {
                    labels["kubernetes.io/metadata.name"] = json!(name);
                }
            }
        }
        "Service" => {
            let spec = o.entry("spec").or_insert(json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("type").or_insert(json!("ClusterIP"));
                spec.entry("sessionAffinity").or_insert(json!("None"));
                spec.entry("internalTrafficPolicy")
                    .or_insert(json!("Cluster"));
                spec.entry("ipFamilies").or_insert(json!(["IPv4"]));
                spec.entry("ipFamilyPolicy").or_insert(json!("SingleStack"));
                let node_ports = matches!(
                    spec.get("type").and_then(Value::as_str),
                    Some("NodePort" | "LoadBalancer")
                );
                if node_ports {
                    spec.entry("externalTrafficPolicy")
                        .or_insert(json!("Cluster"));
                    // pkg/registry/core/service/portallocator: 30000-32767
                    if let Some(ps) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                        for p in ps.iter_mut().filter_map(Value::as_object_mut) {
                            p.entry("nodePort").or_insert_with(|| {
                                json!(
                                    30000
                                        + NODE_PORT
                                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                            % 2768
                                )
                            });
                        }
                    }
                }
                if spec.get("clusterIP").is_none_or(|ip| ip == "") {
                    let ip = next_cluster_ip();
                    spec.insert("clusterIP".into(), json!(ip));
                    spec.insert("clusterIPs".into(), json!([ip]));
                }
                if let Some(ps) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ps.iter_mut().filter_map(Value::as_object_mut) {
                        p.entry("protocol").or_insert(json!("TCP"));
                        let port = p.get("port").cloned().unwrap_or(Value::Null);
                        p.entry("targetPort").or_insert(port);
                    }
                }
            }
            o.insert("status".into(), json!({"loadBalancer": {}}));
        }
        "Secret" => {
            // stringData is write-only: merged into data (pkg/apis/core/v1/conversion.go)
            use base64::Engine;
            if let Some(sd) = o.remove("stringData").and_then(|v| v.as_object().cloned()) {
                let data = o.entry("data").or_insert(json!({}));
                for (k, v) in sd {
                    data[k.as_str()] = json!(
                        base64::engine::general_purpose::STANDARD.encode(v.as_str().unwrap_or(""))
                    );
                }
            }
            o.entry("type").or_insert(json!("Opaque"));
        }
        _ => {}
    }
}

/// Update rules: pkg/apis/core/validation/validation.go ValidatePodUpdate — a pod's spec may
/// change only in container images, activeDeadlineSeconds, added tolerations and
/// terminationGracePeriodSeconds.
pub fn validate_update(res: &'static Resource, old: &Value, new: &Value) -> ApiResult<()> {
    if res != &resources::POD {
        return Ok(());
    }
    let (Some(o), Some(n)) = (old.get("spec"), new.get("spec")) else {
        return Ok(());
    };
    let mut masked = n.clone();
    for key in ["containers", "initContainers"] {
        if let (Some(mc), Some(oc)) = (
            masked.get_mut(key).and_then(Value::as_array_mut),
            o.get(key).and_then(Value::as_array),
        ) {
            for (m, oc) in mc.iter_mut().zip(oc) {
                if let (Some(m), Some(img)) = (m.as_object_mut(), oc.get("image")) {
                    m.insert("image".into(), img.clone());
                }
            }
        }
    }
    let old_tols: Vec<Value> = o
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let new_tols: Vec<Value> = n
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerations_only_added = old_tols.iter().all(|t| new_tols.contains(t));
    if let Some(m) = masked.as_object_mut() {
        for key in [
            "activeDeadlineSeconds",
            "terminationGracePeriodSeconds",
            "tolerations",
        ] {
            match o.get(key) {
                Some(v) => {
                    m.insert(key.into(), v.clone());
                }
                None => {
                    m.remove(key);
                }
            }
        }
    }
    if masked == *o && tolerations_only_added {
        return Ok(());
    }
    Err(ApiError::invalid(
        res,
        meta_str(new, "name"),
        vec![Cause {
            reason: "FieldValueForbidden".into(),
            message: "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)".into(),
            field: Some("spec".into()),
        }],
    ))
}

/// pkg/registry/batch/job/strategy.go generateSelector: without `manualSelector`, a Job
/// selects its pods by its uid and labels its template with the uid and its name.
pub fn finish_create(res: &'static Resource, obj: &mut Value) {
    if res != &resources::JOB
        || obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true)
    {
        return;
    }
    let uid = meta_str(obj, "uid").to_string();
    let name = meta_str(obj, "name").to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    spec.insert(
        "selector".into(),
        json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
    );
    let tpl = spec.entry("template").or_insert(json!({}));
    let md = tpl
        .as_object_mut()
        .expect("template object")
        .entry("metadata")
        .or_insert(json!({}));
    let labels = md
        .as_object_mut()
        .expect("metadata object")
        .entry("labels")
        .or_insert(json!({}));
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        labels[k] = json!(v);
    }
}

/// Container defaults (pkg/apis/core/v1/defaults.go SetDefaults_Container, SetDefaults_ContainerPort).
fn default_containers(spec: &mut serde_json::Map<String, Value>) {
    for key in ["containers", "initContainers"] {
        let Some(cs) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let image = c
                .get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let latest = !image.contains(':') || image.ends_with(":latest");
            c.entry("imagePullPolicy").or_insert(json!(if latest {
                "Always"
            } else {
                "IfNotPresent"
            }));
            c.entry("terminationMessagePath")
                .or_insert(json!("/dev/termination-log"));
            c.entry("terminationMessagePolicy").or_insert(json!("File"));
            c.entry("resources").or_insert(json!({}));
            if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.entry("protocol").or_insert(json!("TCP"));
                }
            }
        }
    }
}

/// pkg/apis/core/helper/qos GetPodQOS (requests/limits of regular containers only).
fn qos_class(spec: &Value) -> &'static str {
    let cs = spec
        .get("containers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut any = false;
    let mut guaranteed = true;
    for c in &cs {
        let req = c.pointer("/resources/requests").and_then(Value::as_object);
        let lim = c.pointer("/resources/limits").and_then(Value::as_object);
        if req.is_some_and(|r| !r.is_empty()) || lim.is_some_and(|l| !l.is_empty()) {
            any = true;
        }
        for r in ["cpu", "memory"] {
            let l = lim.and_then(|l| l.get(r));
            let q = req.and_then(|q| q.get(r)).or(l);
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed && !cs.is_empty() {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

/// Validation the lab's clients rely on (pkg/apis/*/validation), for create and update.
pub fn validate(res: &'static Resource, obj: &Value) -> ApiResult<()> {
    let name = meta_str(obj, "name");
    let mut causes = Vec::new();
    let req = |f: &str| Cause {
        reason: "FieldValueRequired".into(),
        message: "Required value".into(),
        field: Some(f.into()),
    };
    match res.kind {
        "Pod" if res == &resources::POD => {
            if obj
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(|c| c.is_empty())
            {
                causes.push(req("spec.containers"));
            }
            if let Some(cs) = obj.pointer("/spec/containers").and_then(Value::as_array) {
                for (i, c) in cs.iter().enumerate() {
                    if c.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        causes.push(req(&format!("spec.containers[{i}].name")));
                    }
                    if c.get("image")
                        .and_then(Value::as_str)
                        .is_none_or(str::is_empty)
                    {
                        causes.push(req(&format!("spec.containers[{i}].image")));
                    }
                }
            }
        }
        "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" => {
            let sel = obj.pointer("/spec/selector");
            if sel.is_none_or(Value::is_null) {
                causes.push(req("spec.selector"));
            } else {
                let s = LabelSelector::from_object(sel);
                if !s.matches_labels(obj.pointer("/spec/template/metadata/labels")) {
                    causes.push(Cause {
                        reason: "FieldValueInvalid".into(),
                        message: format!(
                            "Invalid value: {}: `selector` does not match template `labels`",
                            obj.pointer("/spec/template/metadata/labels")
                                .cloned()
                                .unwrap_or(json!({}))
                        ),
                        field: Some("spec.template.metadata.labels".into()),
                    });
                }
            }
            if obj
                .pointer("/spec/template/spec/containers")
                .and_then(Value::as_array)
                .is_none_or(|c| c.is_empty())
            {
                causes.push(req("spec.template.spec.containers"));
            }
            if obj
                .pointer("/spec/replicas")
                .and_then(Value::as_i64)
                .is_some_and(|r| r < 0)
            {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: must be greater than or equal to 0".into(),
                    field: Some("spec.replicas".into()),
                });
            }
        }
        "PodDisruptionBudget" => {
            let min = obj.pointer("/spec/minAvailable");
            let max = obj.pointer("/spec/maxUnavailable");
            if min.is_some_and(|v| !v.is_null()) && max.is_some_and(|v| !v.is_null()) {
                causes.push(Cause {
                    reason: "FieldValueInvalid".into(),
                    message: "Invalid value: minAvailable and maxUnavailable cannot be both set"
                        .into(),
                    field: Some("spec".into()),
                });
            }
        }
        _ => {}
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(res, name, causes))
    }
}
