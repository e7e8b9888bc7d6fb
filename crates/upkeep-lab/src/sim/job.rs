//! The Job controller, basics (pkg/controller/job/job_controller.go): parallelism,
//! completions, backoffLimit, the Complete/Failed conditions. The kubelet ends pods after
//! their run time (annotation `lab.upkeep.dev/run-seconds`, exit code from
//! `lab.upkeep.dev/exit-code`).

use std::sync::Arc;

use serde_json::{Value, json};

use crate::resources;

use super::{Ctx, Key, util};

pub fn all_keys(ctx: &Ctx) -> Vec<Key> {
    super::replicaset::keys_of(ctx, &resources::JOB)
}

fn finished(job: &Value) -> bool {
    ["Complete", "Failed"]
        .iter()
        .any(|t| util::condition_status(job, t) == "True")
}

pub fn sync(ctx: &Arc<Ctx>, key: &Key) {
    let store = &ctx.lab.store;
    let Some(job) = store.get(&resources::JOB, &key.0, &key.1) else {
        return;
    };
    let pods = super::replicaset::owned_pods(ctx, util::uid(&job));
    let active = pods.iter().filter(|p| util::pod_active(p)).count() as i64;
    let succeeded = pods
        .iter()
        .filter(|p| util::phase(p) == "Succeeded")
        .count() as i64;
    let failed = pods.iter().filter(|p| util::phase(p) == "Failed").count() as i64;
    let ready = pods
        .iter()
        .filter(|p| util::pod_active(p) && util::pod_ready(p))
        .count() as i64;
    let parallelism = util::i(&job, "/spec/parallelism").unwrap_or(1);
    let completions = job.pointer("/spec/completions").and_then(Value::as_i64);
    let backoff_limit = util::i(&job, "/spec/backoffLimit").unwrap_or(6);
    let suspended = job
        .pointer("/spec/suspend")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let now = ctx.lab.clock.now_rfc3339();
    let mut complete = false;
    let mut fail: Option<(&str, String)> = None;
    if !finished(&job) {
        if failed > backoff_limit {
            fail = Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit".into(),
            ));
        } else {
            // With completions unset, the job is done once any pod succeeded and none run
            // (job_controller.go: NonIndexed, nil completions).
            complete = match completions {
                Some(c) => succeeded >= c,
                None => succeeded > 0 && active == 0,
            };
        }
        if !complete && fail.is_none() && !suspended && !util::terminating(&job) {
            let wanted = match completions {
                Some(c) => parallelism.min(c - succeeded),
                None if succeeded > 0 => 0,
                None => parallelism,
            };
            let tol = ctx.cfg().default_toleration_seconds;
            for _ in active..wanted.max(0) {
                let t = util::template_labelled(
                    &job,
                    &[
                        ("batch.kubernetes.io/controller-uid", json!(util::uid(&job))),
                        ("batch.kubernetes.io/job-name", json!(util::name(&job))),
                        ("controller-uid", json!(util::uid(&job))),
                        ("job-name", json!(util::name(&job))),
                    ],
                );
                let mut pod = util::pod_from_template(
                    &t,
                    &job,
                    None,
                    Some(&format!("{}-", util::name(&job))),
                );
                util::add_default_toleration_seconds(&mut pod, tol);
                match ctx.create(&resources::POD, pod) {
                    Ok(p) => ctx.event(
                        &job,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {}", util::name(&p)),
                        "job-controller",
                    ),
                    Err(_) => break,
                }
            }
        }
    }
    if let Some((reason, _)) = &fail {
        // Active pods of a failed job are terminated.
        for p in pods.iter().filter(|p| util::pod_active(p)) {
            let _ = store.delete(
                &resources::POD,
                util::namespace(p),
                util::name(p),
                &Default::default(),
            );
        }
        ctx.event(
            &job,
            "Warning",
            reason,
            "Job has reached the specified backoff limit",
            "job-controller",
        );
    }
    if complete {
        ctx.event(
            &job,
            "Normal",
            "Completed",
            "Job completed",
            "job-controller",
        );
    }
    let pods = super::replicaset::owned_pods(ctx, util::uid(&job));
    let active = pods.iter().filter(|p| util::pod_active(p)).count() as i64;
    let _ = store.mutate(&resources::JOB, &key.0, &key.1, |o| {
        let mut s = o.get("status").cloned().unwrap_or_else(|| json!({}));
        if s.get("startTime").is_none() && !suspended {
            s["startTime"] = json!(now);
        }
        s["active"] = json!(active);
        s["succeeded"] = json!(succeeded);
        s["failed"] = json!(failed);
        s["ready"] = json!(ready);
        s["terminating"] = json!(pods.iter().filter(|p| util::terminating(p)).count());
        for f in ["active", "succeeded", "failed"] {
            if s[f] == json!(0) {
                s.as_object_mut().map(|m| m.remove(f));
            }
        }
        o["status"] = s;
        if complete {
            util::set_condition(o, json!({"type": "SuccessCriteriaMet", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now}), &now);
            util::set_condition(o, json!({"type": "Complete", "status": "True", "reason": "CompletionsReached", "message": "Reached expected number of succeeded pods", "lastProbeTime": now}), &now);
            o["status"]["completionTime"] = json!(now);
        }
        if let Some((reason, msg)) = &fail {
            util::set_condition(o, json!({"type": "FailureTarget", "status": "True", "reason": reason, "message": msg, "lastProbeTime": now}), &now);
            util::set_condition(o, json!({"type": "Failed", "status": "True", "reason": reason, "message": msg, "lastProbeTime": now}), &now);
        }
        Ok(())
    });
}
