//! A drain of several nodes as one session: plan every selected node first
//! and refuse before touching any, then drain `max_unavailable` nodes at a
//! time. Each later batch is planned again against the cluster as it is by
//! then; the nodes drained together are never each other's destination, and
//! replicas on them do not count towards a workload being whole again.

use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, ListParams};
use serde::Serialize;
use tokio::time::Instant;

use super::execute::{DrainEvent, DrainOutcome, DrainReport, ExecOptions, execute};
use super::plan::{DrainOptions, DrainPlan, plan};
use super::record::{self, UncordonReport};
use super::snapshot::gather;
use crate::output::Outcome;

/// How a session runs. `drain.also_leaving` and `exec.also_leaving`,
/// `exec.timeout` and `exec.pod_selector` are filled in by the session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// `--pod-selector`: only these pods are considered.
    pub pod_selector: Option<String>,
    pub drain: DrainOptions,
    pub exec: ExecOptions,
    /// How many nodes drain at once.
    pub max_unavailable: usize,
    /// Bounds the whole session, planning included.
    pub timeout: Option<Duration>,
}

/// One node of the session: its plan, and its report once it ran.
#[derive(Debug, Serialize)]
pub struct NodeDrain {
    pub plan: DrainPlan,
    /// The node as gathered (its record annotation is merged on cordon).
    #[serde(skip)]
    pub node: Node,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub report: Option<DrainReport>,
}

/// What happens during a session, as it happens.
#[derive(Debug)]
pub enum SessionEvent<'a> {
    Drain(&'a DrainEvent),
    /// A node is done, drained or not.
    Finished(&'a DrainReport),
    /// A later batch was refused when planned again: the session stops
    /// before it; the nodes already drained stay cordoned.
    RefusedBefore {
        plan: &'a DrainPlan,
        drained: &'a [String],
    },
    /// The session stopped early: these nodes were never started.
    NotStarted(&'a [String]),
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Drained,
    /// A later batch was refused; nothing was changed on it.
    Refused,
    /// A node did not drain (interrupted, timed out, failed); the rest was not started.
    Stopped(DrainOutcome),
}

impl SessionEnd {
    /// The word in the `outcome` field of the machine-readable result.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionEnd::Drained => "drained",
            SessionEnd::Refused => "refused",
            SessionEnd::Stopped(DrainOutcome::Interrupted) => "interrupted",
            SessionEnd::Stopped(DrainOutcome::TimedOut) => "timed-out",
            SessionEnd::Stopped(_) => "failed",
        }
    }
}

impl From<SessionEnd> for Outcome {
    fn from(end: SessionEnd) -> Self {
        match end {
            SessionEnd::Drained => Outcome::Ok,
            SessionEnd::Refused => Outcome::Refused,
            SessionEnd::Stopped(_) => Outcome::Error,
        }
    }
}

pub struct Session {
    pub nodes: Vec<NodeDrain>,
    options: SessionOptions,
    started: Instant,
}

/// The nodes a command is about: the one named, or those matching `selector`, sorted.
pub async fn select_nodes(
    client: &Client,
    node: Option<&str>,
    selector: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    if let Some(node) = node {
        return Ok(vec![node.to_string()]);
    }
    let selector = selector.unwrap_or_default();
    let list = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(selector))
        .await
        .context("could not list the nodes")?;
    let mut names: Vec<String> = list
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    names.sort();
    if names.is_empty() {
        bail!(
            "no node matches the selector {selector:?}; check it with `kubectl get nodes -l {selector:?}`"
        );
    }
    Ok(names)
}

/// Returns every node to service, in order, reporting where its former pods run now.
pub async fn uncordon_all(
    client: &Client,
    nodes: &[String],
) -> anyhow::Result<Vec<UncordonReport>> {
    let mut reports = Vec::new();
    for node in nodes {
        reports.push(record::uncordon(client, node).await?);
    }
    Ok(reports)
}

/// Uncordon reports as people read them.
pub fn render_uncordoned(reports: &[UncordonReport]) -> String {
    let text: Vec<String> = reports.iter().map(UncordonReport::render).collect();
    text.join("\n")
}

impl Session {
    /// Plans every node before anything changes. The other selected nodes
    /// are not destinations: they all leave before the session ends.
    pub async fn plan(
        client: &Client,
        names: &[String],
        options: SessionOptions,
        started: std::time::Instant,
    ) -> anyhow::Result<Session> {
        let mut session = Session {
            nodes: Vec::new(),
            options,
            started: Instant::from_std(started),
        };
        for name in names {
            let others = others(names, name);
            let gather = gather(client, name, session.options.pod_selector.as_deref());
            let snapshot = match session.remaining() {
                Some(left) => tokio::time::timeout(left, gather).await.map_err(|_| {
                    anyhow::anyhow!(
                        "--timeout reached while planning node/{name}; nothing was changed"
                    )
                })??,
                None => gather.await?,
            };
            session.nodes.push(NodeDrain {
                plan: plan(&snapshot, &session.options_for(others)),
                node: snapshot.node,
                report: None,
            });
        }
        Ok(session)
    }

    /// Ctrl-C stops the session at once, leaving the nodes cordoned (a
    /// re-run finishes the job). Needs a Tokio runtime.
    pub fn stop_on_ctrl_c(&mut self) {
        let (cancel_tx, cancel_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                let _ = cancel_tx.send(true);
            }
        });
        self.options.exec.cancel = Some(cancel_rx);
    }

    /// Whether any node's plan is refused.
    pub fn refused(&self) -> bool {
        self.nodes.iter().any(|n| n.plan.refused())
    }

    /// How many pods the session moves, for a progress bar.
    pub fn moving(&self) -> usize {
        self.nodes
            .iter()
            .flat_map(|n| &n.plan.pods)
            .filter(|p| p.action.moves())
            .count()
    }

    /// Every plan as the tables people read.
    pub fn render_plans(&self) -> String {
        let text: Vec<String> = self.nodes.iter().map(|n| n.plan.render()).collect();
        text.join("\n")
    }

    /// Drains the nodes, `max_unavailable` at a time. Errors reading the
    /// cluster between batches end the session with the error.
    pub async fn run(
        &mut self,
        client: &Client,
        events: &(dyn Fn(SessionEvent<'_>) + Send + Sync),
    ) -> anyhow::Result<SessionEnd> {
        let names: Vec<String> = self.nodes.iter().map(|n| n.plan.node.clone()).collect();
        let progress = |e: &DrainEvent| events(SessionEvent::Drain(e));
        let batch = self.options.max_unavailable.max(1);
        let mut index = 0;
        while index < self.nodes.len() {
            let end = (index + batch).min(self.nodes.len());
            let wave = &names[index..end];
            if index > 0 {
                // Later batches are planned again against the cluster as it is now.
                for i in index..end {
                    let name = &names[i];
                    let snapshot =
                        gather(client, name, self.options.pod_selector.as_deref()).await?;
                    let options = self.options_for(others(&names, name));
                    let n = &mut self.nodes[i];
                    n.plan = plan(&snapshot, &options);
                    n.node = snapshot.node;
                    if n.plan.refused() {
                        events(SessionEvent::RefusedBefore {
                            plan: &n.plan,
                            drained: &names[..index],
                        });
                        return Ok(SessionEnd::Refused);
                    }
                }
            }
            let runs = self.nodes[index..end].iter().map(|n| {
                let exec = ExecOptions {
                    timeout: self.remaining(),
                    pod_selector: self.options.pod_selector.clone(),
                    also_leaving: others(wave, &n.plan.node),
                    ..self.options.exec.clone()
                };
                async move { execute(client, &n.plan, &n.node, &exec, &progress).await }
            });
            let reports = futures::future::join_all(runs).await;
            let mut end_state = SessionEnd::Drained;
            for (n, report) in self.nodes[index..end].iter_mut().zip(reports) {
                if report.outcome != DrainOutcome::Drained && end_state == SessionEnd::Drained {
                    end_state = SessionEnd::Stopped(report.outcome);
                }
                events(SessionEvent::Finished(&report));
                n.report = Some(report);
            }
            if end_state != SessionEnd::Drained {
                if end < names.len() {
                    events(SessionEvent::NotStarted(&names[end..]));
                }
                return Ok(end_state);
            }
            index = end;
        }
        Ok(SessionEnd::Drained)
    }

    fn options_for(&self, also_leaving: Vec<String>) -> DrainOptions {
        DrainOptions {
            also_leaving,
            ..self.options.drain.clone()
        }
    }

    /// What is left of `--timeout`, if there is one.
    fn remaining(&self) -> Option<Duration> {
        self.options
            .timeout
            .map(|t| t.saturating_sub(self.started.elapsed()))
    }
}

fn others(names: &[String], name: &str) -> Vec<String> {
    names.iter().filter(|n| *n != name).cloned().collect()
}

impl DrainReport {
    /// The report as people read it; `timeout` is the `--timeout` given.
    pub fn render(&self, timeout: Option<Duration>) -> String {
        let r = self;
        let mut out = String::new();
        let whole: Vec<String> = r
            .workloads
            .iter()
            .map(|w| {
                // A deleted workload has no replicas to count: its pods are not coming back.
                if w.deleted {
                    format!("{}/{} deleted", w.namespace, w.workload)
                } else {
                    format!(
                        "{}/{} {}/{} ready elsewhere",
                        w.namespace, w.workload, w.ready, w.replicas
                    )
                }
            })
            .collect();
        match r.outcome {
            DrainOutcome::Drained => {
                out.push_str(&format!(
                    "node/{} drained: {} pod(s) evicted, {} deleted{} in {:.1}s\n",
                    r.node,
                    r.evicted.len(),
                    r.deleted.len(),
                    if whole.is_empty() {
                        String::new()
                    } else {
                        format!("; {}", whole.join(", "))
                    },
                    r.seconds
                ));
                out.push_str(&format!(
                    "node/{} stays cordoned; `kubectl safedrain {} --uncordon` returns it to service\n",
                    r.node, r.node
                ));
            }
            other => {
                let why = match other {
                    DrainOutcome::Interrupted => "interrupted".to_string(),
                    DrainOutcome::TimedOut => format!(
                        "timed out after {}",
                        humantime::format_duration(timeout.unwrap_or_default())
                    ),
                    _ => format!("failed: {}", r.error.as_deref().unwrap_or("unknown error")),
                };
                out.push_str(&format!("node/{} NOT drained ({why})\n", r.node));
                if !r.evicted.is_empty() {
                    out.push_str(&format!(
                        "done: {} pod(s) evicted: {}\n",
                        r.evicted.len(),
                        r.evicted.join(", ")
                    ));
                }
                let undone = r.undone();
                if !undone.is_empty() {
                    out.push_str(&format!("left undone: {}\n", undone.join("; ")));
                }
                if r.cordoned {
                    out.push_str(&format!(
                        "node/{} stays cordoned (no new pods land there); run the same command again to finish: pods already gone are not evicted twice\n",
                        r.node
                    ));
                }
            }
        }
        out
    }
}
