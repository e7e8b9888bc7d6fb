//! The `pods/eviction` subresource, decided as kube-apiserver does in
//! pkg/registry/core/pod/storage/eviction.go (EvictionREST.Create, canIgnorePDB,
//! checkAndDecrement, addConditionAndDeletePod) with the graceful deletion of
//! pkg/registry/core/pod/strategy.go.

use serde_json::{Value, json};

use crate::Lab;
use crate::error::{ApiError, ApiResult};
use crate::resources::{self, PDB, POD};
use crate::selector::LabelSelector;
use crate::store::{DeleteOpts, ListQuery, meta_str};

/// eviction.go MaxDisruptedPodSize
const MAX_DISRUPTED_POD_SIZE: usize = 2000;

/// The Status a successful eviction answers (HTTP 201).
pub fn success_status() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201})
}

fn too_many_requests(msg_cause: String, retry_after: u64) -> ApiError {
    let mut e = ApiError::too_many_requests(
        "Cannot evict pod as it would violate the pod's disruption budget.",
    )
    .with_cause("DisruptionBudget", msg_cause, None);
    if retry_after > 0 {
        e.retry_after = Some(retry_after);
    }
    e
}

fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn terminating(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

/// Evict `ns/name` with the Eviction `body`; `query_dry_run` is `?dryRun=All`.
pub fn evict(
    lab: &Lab,
    ns: &str,
    name: &str,
    body: &Value,
    query_dry_run: bool,
) -> ApiResult<Value> {
    let api_version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("policy/v1");
    if !matches!(api_version, "policy/v1" | "policy/v1beta1")
        || body
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|k| k != "Eviction")
    {
        return Err(ApiError::bad_request(format!(
            "not a Eviction object: {api_version}"
        )));
    }
    // Admission runs before EvictionREST.Create: namespace lifecycle forbids creates,
    // evictions included, in a Terminating namespace
    // (k8s.io/apiserver/pkg/admission/plugin/namespace/lifecycle/admission.go Admit).
    if lab
        .store
        .get(&resources::NAMESPACE, "", ns)
        .is_some_and(|n| n.pointer("/status/phase").and_then(Value::as_str) == Some("Terminating"))
    {
        return Err(ApiError::forbidden(
            &POD,
            name,
            format!(
                "unable to create new content in namespace {ns} because it is being terminated"
            ),
        )
        .with_cause(
            "NamespaceTerminating",
            format!("namespace {ns} is being terminated"),
            Some("metadata.namespace"),
        ));
    }
    if meta_str(body, "name") != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let dopts = body.get("deleteOptions").cloned().unwrap_or(Value::Null);
    let body_dry = dopts
        .get("dryRun")
        .and_then(Value::as_array)
        .is_some_and(|a| a.iter().any(|v| v == "All"));
    let dry_run = query_dry_run || body_dry;
    let user = DeleteOpts {
        grace_period_seconds: dopts.get("gracePeriodSeconds").and_then(Value::as_i64),
        uid: dopts
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        resource_version: dopts
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
        propagation_policy: dopts
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .map(str::to_string),
        dry_run,
    };
    let store = &lab.store;
    let pod = store.get_or_404(&POD, ns, name)?;

    // canIgnorePDB: terminal, pending or already terminating pods are deleted directly.
    let p = phase(&pod);
    if p == "Succeeded" || p == "Failed" || p == "Pending" || terminating(&pod) {
        let mut opts = user.clone();
        // shouldEnforceResourceVersion: not for terminal or terminating pods
        let enforce = !(p == "Succeeded" || p == "Failed" || terminating(&pod));
        if enforce && opts.resource_version.is_none() {
            opts.resource_version = Some(meta_str(&pod, "resourceVersion").to_string());
        }
        add_condition_and_delete(lab, ns, name, opts)?;
        return Ok(success_status());
    }

    // getPodDisruptionBudgets: policy/v1 semantics, an empty selector selects every pod.
    let (pdbs, _) = store.list(&PDB, &ListQuery::in_namespace(ns));
    let matching: Vec<_> = pdbs
        .into_iter()
        .filter(|pdb| LabelSelector::from_object(pdb.pointer("/spec/selector")).matches(&pod))
        .collect();
    if matching.len() > 1 {
        return Err(ApiError::new(
            500,
            "",
            "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
        ));
    }
    let mut opts = user.clone();
    if let Some(pdb) = matching.first() {
        let pdb_name = meta_str(pdb, "name").to_string();
        let current = pdb
            .pointer("/status/currentHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let desired = pdb
            .pointer("/status/desiredHealthy")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let policy = pdb
            .pointer("/spec/unhealthyPodEvictionPolicy")
            .and_then(Value::as_str)
            .unwrap_or("IfHealthyBudget");
        // Unready pods: AlwaysAllow, or IfHealthyBudget with the budget already met, skip the
        // decrement; a resourceVersion precondition guards against the pod turning ready.
        let unready_ok =
            !is_ready(&pod) && (policy == "AlwaysAllow" || (current >= desired && desired > 0));
        if unready_ok {
            let user_rv = opts.resource_version.is_some();
            if !user_rv {
                opts.resource_version = Some(meta_str(&pod, "resourceVersion").to_string());
            }
            return match add_condition_and_delete(lab, ns, name, opts) {
                Err(e) if e.code == 409 && !user_rv => Err(too_many_requests(
                    format!(
                        "The disruption budget {pdb_name} is still being processed by the server."
                    ),
                    10,
                )),
                Err(e) => Err(e),
                Ok(()) => Ok(success_status()),
            };
        }
        check_and_decrement(lab, ns, name, &pdb_name, dry_run)?;
    }
    add_condition_and_delete(lab, ns, name, opts)?;
    Ok(success_status())
}

/// eviction.go checkAndDecrement, done under the store lock (so no conflict retries).
fn check_and_decrement(
    lab: &Lab,
    ns: &str,
    pod_name: &str,
    pdb_name: &str,
    dry_run: bool,
) -> ApiResult<()> {
    let now = lab.clock.now_rfc3339();
    let store = &lab.store;
    let check = |pdb: &Value| -> ApiResult<()> {
        let generation = pdb
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let observed = pdb
            .pointer("/status/observedGeneration")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if observed < generation {
            return Err(too_many_requests(
                format!("The disruption budget {pdb_name} is still being processed by the server."),
                10,
            ));
        }
        let allowed = pdb
            .pointer("/status/disruptionsAllowed")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if allowed < 0 {
            return Err(ApiError::forbidden(
                &PDB,
                pdb_name,
                "pdb disruptions allowed is negative",
            ));
        }
        if pdb
            .pointer("/status/disruptedPods")
            .and_then(Value::as_object)
            .is_some_and(|m| m.len() > MAX_DISRUPTED_POD_SIZE)
        {
            return Err(ApiError::forbidden(
                &PDB,
                pdb_name,
                "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
            ));
        }
        if allowed == 0 {
            let desired = pdb
                .pointer("/status/desiredHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            let current = pdb
                .pointer("/status/currentHealthy")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            return Err(too_many_requests(
                format!(
                    "The disruption budget {pdb_name} needs {desired} healthy pods and has {current} currently"
                ),
                0,
            ));
        }
        Ok(())
    };
    if dry_run {
        let pdb = store.get_or_404(&PDB, ns, pdb_name)?;
        return check(&pdb);
    }
    store
        .mutate(&PDB, ns, pdb_name, |pdb| {
            check(pdb)?;
            let allowed = pdb.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0) - 1;
            let status = pdb.as_object_mut().expect("object").entry("status").or_insert(json!({}));
            status["disruptionsAllowed"] = json!(allowed);
            if allowed == 0 {
                // component-helpers apps/poddisruptionbudget UpdateDisruptionAllowedCondition
                set_condition(status, json!({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods", "message": "", "lastTransitionTime": now}));
            }
            let dp = status.as_object_mut().expect("object").entry("disruptedPods").or_insert(json!({}));
            dp[pod_name] = json!(now);
            Ok(())
        })
        .map(|_| ())
}

fn set_condition(status: &mut Value, mut cond: Value) {
    let conds = status
        .as_object_mut()
        .expect("object")
        .entry("conditions")
        .or_insert(json!([]));
    if let Some(a) = conds.as_array_mut() {
        match a.iter_mut().find(|c| c["type"] == cond["type"]) {
            Some(c) => {
                if c["status"] == cond["status"] {
                    cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
                }
                *c = cond;
            }
            None => a.push(cond),
        }
    }
}

/// eviction.go addConditionAndDeletePod: mark the pod with the DisruptionTarget condition
/// (reason EvictionByEvictionAPI), then delete it gracefully with the same preconditions.
fn add_condition_and_delete(
    lab: &Lab,
    ns: &str,
    name: &str,
    mut opts: DeleteOpts,
) -> ApiResult<()> {
    let store = &lab.store;
    if !opts.dry_run {
        let now = lab.clock.now_rfc3339();
        let pod = store.get_or_404(&POD, ns, name)?;
        if let Some(uid) = &opts.uid
            && uid != meta_str(&pod, "uid")
        {
            return store.delete(&POD, ns, name, &opts).map(|_| ());
        }
        if let Some(rv) = &opts.resource_version
            && rv != meta_str(&pod, "resourceVersion")
        {
            return store.delete(&POD, ns, name, &opts).map(|_| ());
        }
        let updated = store.mutate(&POD, ns, name, |p| {
            let status = p.as_object_mut().expect("object").entry("status").or_insert(json!({}));
            set_condition(
                status,
                json!({"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI", "message": "Eviction API: evicting", "lastProbeTime": null, "lastTransitionTime": now}),
            );
            Ok(())
        })?;
        if opts.resource_version.is_some() {
            opts.resource_version = Some(meta_str(&updated, "resourceVersion").to_string());
        }
    }
    store.delete(&resources::POD, ns, name, &opts).map(|_| ())
}
