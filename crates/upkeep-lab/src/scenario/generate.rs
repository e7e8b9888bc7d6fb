//! `generate:nodes=N,pods=M[,replicas=R][,namespaces=K][,controlPlanes=C][,timeScale=X]`:
//! a large cluster written straight into the store, already running.
//!
//! N worker nodes (plus C control-plane nodes, default 1), and M pods owned by Deployments
//! of R replicas (default 30) through their ReplicaSets, spread over K namespaces (default
//! 10), bound round-robin to the workers, Running and Ready. Deployment and ReplicaSet
//! statuses are written as the controllers would compute them, so the start-up resync
//! changes nothing. Nodes get 110 pods of capacity by default; more pods per node than that
//! raise the capacity.

use std::sync::Arc;

use anyhow::{Context, bail};
use serde_json::json;

use crate::lab::Lab;
use crate::resources;
use crate::sim::util;

use super::{NodeTemplate, Role, ScenarioNode};

#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub nodes: usize,
    pub pods: usize,
    pub replicas: usize,
    pub namespaces: usize,
    pub control_planes: usize,
    pub time_scale: Option<f64>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            nodes: 3,
            pods: 30,
            replicas: 30,
            namespaces: 10,
            control_planes: 1,
            time_scale: None,
        }
    }
}

impl Params {
    pub fn parse(s: &str) -> anyhow::Result<Params> {
        let mut p = Params::default();
        for kv in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .with_context(|| format!("generate: {kv:?} is not key=value (e.g. nodes=5000)"))?;
            let num = || {
                v.parse::<usize>()
                    .with_context(|| format!("generate: {k}={v} is not a number"))
            };
            match k {
                "nodes" => p.nodes = num()?,
                "pods" => p.pods = num()?,
                "replicas" => p.replicas = num()?.max(1),
                "namespaces" => p.namespaces = num()?.max(1),
                "controlPlanes" | "control-planes" => p.control_planes = num()?,
                "timeScale" | "time-scale" => {
                    p.time_scale = Some(
                        v.parse()
                            .with_context(|| format!("generate: {k}={v} is not a number"))?,
                    )
                }
                _ => bail!(
                    "generate: unknown parameter {k:?}; known: nodes, pods, replicas, namespaces, controlPlanes, timeScale"
                ),
            }
        }
        if p.nodes == 0 && p.pods > 0 {
            bail!("generate: pods need at least one worker node (nodes=0)");
        }
        Ok(p)
    }
}

pub fn apply(lab: &Arc<Lab>, p: &Params) -> anyhow::Result<()> {
    let version = lab.version().git_version;
    if let Some(s) = p.time_scale
        && lab.clock.time_scale() == 1.0
    {
        lab.clock.set_time_scale(s);
    }
    let now = lab.clock.now_rfc3339();
    let per_node = if p.nodes == 0 {
        0
    } else {
        p.pods.div_ceil(p.nodes)
    };
    let pods_cap = per_node.max(110) + 10;
    let mut scenario_nodes = Vec::new();
    let mut node_objs = Vec::new();
    let mut idx = 0usize;
    for (role, count, pat) in [
        (
            Role::ControlPlane,
            p.control_planes,
            "controlplane-{index:02}",
        ),
        (Role::Worker, p.nodes, "worker-{index:05}"),
    ] {
        for i in 0..count {
            let name = super::expand_name(pat, i as u32 + 1);
            let t = NodeTemplate {
                name: name.clone(),
                count: 1,
                start: 1,
                role,
                capacity: [
                    ("pods".to_string(), pods_cap.to_string()),
                    ("cpu".to_string(), "16".to_string()),
                    ("memory".to_string(), "64Gi".to_string()),
                ]
                .into_iter()
                .collect(),
                ..Default::default()
            };
            let mut n = super::node_object(&name, &t, &version, idx);
            // Registered and Ready, as the kubelet would have made it.
            n["status"]["conditions"] = json!([
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure", "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID", "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now},
            ]);
            node_objs.push((&resources::NODE, n));
            scenario_nodes.push(ScenarioNode { name, template: t });
            idx += 1;
        }
    }
    for r in lab.store.create_many(node_objs) {
        r.map_err(|e| anyhow::anyhow!("generate: creating a node: {}", e.message))?;
    }
    let workers: Vec<String> = scenario_nodes
        .iter()
        .filter(|n| n.template.role == Role::Worker)
        .map(|n| n.name.clone())
        .collect();
    for k in 0..p.namespaces {
        let ns = format!("load-{k:02}");
        lab.store
            .create(&resources::NAMESPACE, "", json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}), false)
            .map_err(|e| anyhow::anyhow!("generate: namespace {ns}: {}", e.message))?;
    }
    let deployments = p.pods.div_ceil(p.replicas);
    let mut placed = 0usize;
    let mut pod_ix = 0usize;
    for d in 0..deployments {
        let ns = format!("load-{:02}", d % p.namespaces);
        let name = format!("app-{d:05}");
        let reps = p.replicas.min(p.pods - placed);
        placed += reps;
        let labels = json!({"app": name});
        let template = json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10",
                                      "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
        });
        let dep = lab
            .store
            .create(
                &resources::DEPLOYMENT,
                &ns,
                json!({
                    "metadata": {"name": name, "namespace": ns, "labels": labels, "annotations": {"deployment.kubernetes.io/revision": "1"}},
                    "spec": {"replicas": reps, "selector": {"matchLabels": labels}, "template": template,
                             "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                             "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600},
                    "status": {"observedGeneration": 1, "replicas": reps, "updatedReplicas": reps, "readyReplicas": reps, "availableReplicas": reps},
                }),
                false,
            )
            .map_err(|e| anyhow::anyhow!("generate: deployment {name}: {}", e.message))?;
        let hash = util::compute_hash(&template, 0);
        let mut rs_template = template.clone();
        rs_template["metadata"]["labels"]["pod-template-hash"] = json!(hash);
        let rs_labels = rs_template["metadata"]["labels"].clone();
        let rs_name = format!("{name}-{hash}");
        let surge = reps.div_ceil(4);
        let rs = lab
            .store
            .create(
                &resources::REPLICASET,
                &ns,
                json!({
                    "metadata": {"name": rs_name, "namespace": ns, "labels": rs_labels,
                                 "annotations": {"deployment.kubernetes.io/revision": "1", "deployment.kubernetes.io/desired-replicas": reps.to_string(),
                                                 "deployment.kubernetes.io/max-replicas": (reps + surge).to_string()},
                                 "ownerReferences": [util::controller_ref_to(&dep)]},
                    "spec": {"replicas": reps, "minReadySeconds": 0, "selector": {"matchLabels": rs_labels}, "template": rs_template},
                    "status": {"replicas": reps, "fullyLabeledReplicas": reps, "readyReplicas": reps, "availableReplicas": reps, "observedGeneration": 1},
                }),
                false,
            )
            .map_err(|e| anyhow::anyhow!("generate: replicaset {rs_name}: {}", e.message))?;
        let owner = json!([util::controller_ref_to(&rs)]);
        let mut batch = Vec::with_capacity(reps);
        for r in 0..reps {
            let node = &workers[pod_ix % workers.len()];
            let widx = pod_ix % workers.len() + p.control_planes;
            pod_ix += 1;
            let host_ip = format!("127.10.{}.{}", 10 + widx / 250, widx % 250 + 2);
            let pod_ip = format!(
                "10.{}.{}.{}",
                64 + (pod_ix >> 16) % 64,
                (pod_ix >> 8) % 256,
                pod_ix % 256
            );
            let pname = format!("{rs_name}-{}", suffix(r));
            batch.push((
                &resources::POD,
                compact(json!({
                    "metadata": {"name": pname, "namespace": ns, "labels": rs_labels, "ownerReferences": owner},
                    "spec": {
                        "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}],
                        "nodeName": node, "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                        "schedulerName": "default-scheduler", "dnsPolicy": "ClusterFirst", "priority": 0,
                        "tolerations": [
                            {"key": util::TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                            {"key": util::TAINT_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                    },
                    "status": {
                        "phase": "Running", "hostIP": host_ip, "podIP": pod_ip, "startTime": now, "qosClass": "Burstable",
                        "conditions": [
                            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                            {"type": "Ready", "status": "True", "lastTransitionTime": now},
                            {"type": "ContainersReady", "status": "True", "lastTransitionTime": now},
                            {"type": "PodScheduled", "status": "True", "lastTransitionTime": now}],
                        "containerStatuses": [{"name": "app", "image": "registry.k8s.io/pause:3.10", "ready": true, "started": true, "restartCount": 0,
                                               "state": {"running": {"startedAt": now}}}],
                    },
                })),
            ));
        }
        for r in lab.store.create_many(batch) {
            r.map_err(|e| anyhow::anyhow!("generate: creating a pod: {}", e.message))?;
        }
    }
    *super::loaded(lab).write() = super::LoadedScenario {
        name: format!("generate:nodes={},pods={}", p.nodes, p.pods),
        spec: Default::default(),
        nodes: scenario_nodes,
    };
    Ok(())
}

/// The same value with every map and array allocated to its exact size (JSON built by
/// insertion over-allocates by up to half; at 150,000 pods that is hundreds of megabytes).
pub fn compact(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::with_capacity(m.len());
            for (k, v) in m {
                let mut k = k;
                k.shrink_to_fit();
                out.insert(k, compact(v));
            }
            Value::Object(out)
        }
        Value::Array(a) => {
            let mut out: Vec<Value> = a.into_iter().map(compact).collect();
            out.shrink_to_fit();
            Value::Array(out)
        }
        Value::String(mut s) => {
            s.shrink_to_fit();
            Value::String(s)
        }
        other => other,
    }
}

/// A 5-character pod name suffix like the ReplicaSet controller's generateName, but
/// deterministic.
fn suffix(i: usize) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = i;
    (0..5)
        .map(|_| {
            let c = ALPHA[n % ALPHA.len()] as char;
            n /= ALPHA.len();
            c
        })
        .collect()
}
