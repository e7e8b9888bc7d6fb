//! Drain: pod classification rules (pure), the drain plan, the eviction engine.
//!
//! The library API the plugins share:
//! - [`snapshot::gather`] reads the cluster once into a [`DrainSnapshot`];
//! - [`plan`] decides every pod from it (pure, [`DrainOptions`]) into a [`DrainPlan`];
//! - [`execute`] cordons, evicts and waits, reporting a [`DrainReport`];
//! - [`wait_workloads_whole`] waits until the evicted pods' workloads are Ready elsewhere;
//! - [`record`] keeps the former pods on the node (annotation) and uncordons;
//! - [`drain_node`] is all of it for one node;
//! - [`session::Session`] drains several nodes, a batch at a time, as one run.

pub mod budget;
pub mod capacity;
pub mod execute;
pub mod index;
pub mod lifecycle;
mod plan;
pub mod quantity;
mod reach;
pub mod record;
pub mod rules;
pub mod selector;
pub mod session;
pub mod snapshot;
pub mod workloads;

#[cfg(test)]
mod tests;

pub use execute::{DrainEvent, DrainOutcome, DrainReport, ExecOptions, execute};
pub use index::ClusterIndex;
pub use plan::{
    Action, DrainOptions, DrainPlan, NodePods, PdbPolicy, PodPlan, Summary, Verdict, plan,
    plan_node,
};
pub use rules::{Finding, Rule, Severity};
pub use session::{NodeDrain, Session, SessionEnd, SessionEvent, SessionOptions};
pub use snapshot::{DrainSnapshot, OwnerState, Workload, gather};
pub use workloads::{WorkloadState, wait_workloads_whole};

/// Plans and, unless refused, executes a drain of one node: what
/// `kubectl safedrain NODE --yes` does, for other plugins (upgrade-node).
/// Returns the plan, and the report when it was executed (None: refused,
/// nothing changed).
///
/// Build the client with `config.default_retry = false`: the engine handles
/// 429/503 itself (naming the PDB, retrying as soon as it frees).
pub async fn drain_node(
    client: &kube::Client,
    node: &str,
    pod_selector: Option<&str>,
    options: &DrainOptions,
    exec: &ExecOptions,
    progress: &execute::Progress<'_>,
) -> anyhow::Result<(DrainPlan, Option<DrainReport>)> {
    let snapshot = gather(client, node, pod_selector).await?;
    let plan = plan(&snapshot, options);
    if plan.refused() {
        return Ok((plan, None));
    }
    let exec = ExecOptions {
        pod_selector: pod_selector.map(str::to_string),
        also_leaving: options.also_leaving.clone(),
        ..exec.clone()
    };
    let report = execute(client, &plan, &snapshot.node, &exec, progress).await;
    Ok((plan, Some(report)))
}
