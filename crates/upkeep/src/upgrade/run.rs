//! The thin I/O layer: read the cluster into a snapshot, ask the node
//! (read-only), take the cluster-wide lock, execute a plan step by step and
//! record progress on the node so that a re-run resumes.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt as _};
use serde::Serialize;
use serde_json::json;
use tokio::sync::watch;

use crate::drain;

use super::plan::{self, Action, NodePlan, PROGRESS_ANNOTATION, Progress, StepId};
use super::preflight::{
    self, Backup, ClusterSnapshot, LeaseView, LockVerdict, NodeFacts, NodeProbe, Probe, Report,
    Request, lock_verdict,
};
use super::recipe::{Listing, PackageManager, Recipe, parse_probe, repo_minor};
use super::target::TargetSpec;
use super::transport::{NodeTarget, Transport};
use crate::version::Release;

/// The cluster-wide lock.
pub const LEASE_NAMESPACE: &str = "kube-system";
pub const LEASE_NAME: &str = "upkeep-upgrade";

/// Reads a node into what preflight needs.
pub fn node_facts(node: &Node) -> NodeFacts {
    let labels = node.labels();
    let status = node.status.as_ref();
    let info = status.and_then(|s| s.node_info.as_ref());
    let ready = status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True");
    let internal_ip = status
        .and_then(|s| s.addresses.as_ref())
        .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone());
    NodeFacts {
        name: node.name_any(),
        control_plane: crate::controlplane::is_control_plane(labels),
        ready,
        unschedulable: node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false),
        kubelet_version: info.and_then(|i| Release::parse_reported(&i.kubelet_version)),
        os_image: info.map(|i| i.os_image.clone()).unwrap_or_default(),
        internal_ip,
        progress: node
            .annotations()
            .get(PROGRESS_ANNOTATION)
            .map(|v| Progress::parse(v)),
    }
}

/// Reads the cluster: nodes, every kube-apiserver instance (static-pod image
/// tags, as kubeadm's versiongetter does), `/version`, the lock, the skew
/// engine's view. Not the readiness listing: [`add_readiness`] reads it for
/// the nodes that need it.
pub async fn snapshot(client: &Client) -> anyhow::Result<ClusterSnapshot> {
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = crate::list::list_all(&nodes, &ListParams::default())
        .await
        .context("could not list the nodes")?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let apiserver_pods = pods
        .list(&ListParams::default().labels("component=kube-apiserver,tier=control-plane"))
        .await
        .context("could not list the kube-apiserver pods in kube-system")?;
    let apiservers = apiserver_pods
        .items
        .iter()
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let image = p.spec.as_ref()?.containers.first()?.image.clone()?;
            let tag = image.rsplit_once(':')?.1;
            Some((node, Release::parse_reported(tag)?))
        })
        .collect();
    let server_version = client
        .apiserver_version()
        .await
        .ok()
        .and_then(|v| Release::parse_reported(&v.git_version));
    let lease = read_lease(client).await?;
    // The skew engine's view; without it preflight still has its own rules.
    let skew = match crate::skew::collect::collect(client, None).await {
        Ok(v) => Some(v),
        Err(e) => {
            tracing::warn!("could not collect component versions for the skew check: {e:#}");
            None
        }
    };
    Ok(ClusterSnapshot {
        nodes: nodes.iter().map(node_facts).collect(),
        apiservers,
        server_version,
        lease,
        skew,
        readiness: None,
    })
}

/// Whether preflight may judge `node` by the readiness rules: they apply to the first
/// control-plane node of a minor upgrade (preflight's `upgrade-readiness`), which only the
/// node's probe settles (`--to vX.Y` picks the patch), so every control-plane node while the
/// control plane moves to another minor. Their listing of every kind is read only then.
pub fn needs_readiness(snap: &ClusterSnapshot, node: &str, to: TargetSpec) -> bool {
    snap.node(node).is_some_and(|n| n.control_plane) && moves_minor(snap, to)
}

/// Adds what `kubectl skew plan` judges a hop by: every listable kind, `/metrics`, the
/// certificates (`config` is the connection's: the API server's serving certificate, the
/// kubeconfig's client certificate). Drains are checked on the node itself.
pub async fn add_readiness(
    client: &Client,
    config: Option<&kube::Config>,
    snap: &mut ClusterSnapshot,
) {
    let removals = crate::skew::readiness::Removals::embedded();
    let gathered = crate::skew::readiness::gather::gather(
        client,
        config,
        snap.skew.clone().unwrap_or_default(),
        &removals,
        &crate::skew::readiness::gather::GatherOptions { skip_drains: true },
    )
    .await;
    let now = jiff::Timestamp::now();
    snap.readiness = Some(crate::skew::readiness::PreflightInput {
        snapshot: gathered,
        removals,
        calendar: crate::skew::Calendar::embedded(),
        settings: crate::skew::readiness::Settings {
            as_of: now.to_zoned(jiff::tz::TimeZone::UTC).date(),
            now,
            upgrade_days: 0,
        },
        selection: Vec::new(),
    });
}

async fn read_lease(client: &Client) -> anyhow::Result<Option<LeaseView>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let lease = api
        .get_opt(LEASE_NAME)
        .await
        .context("could not read the lock Lease kube-system/upkeep-upgrade")?;
    Ok(lease.map(|l| lease_view(&l)))
}

/// The holder is an earlier run of this user on this host (identity `..., user@host, pid N`,
/// see `rollout::identity`) and process N no longer runs an upgrade-node: killed, or a zombie
/// not yet reaped (its cmdline is empty). Where /proc cannot tell, it is taken as running.
fn holder_gone(holder: &str) -> bool {
    let mine = super::rollout::identity();
    let (Some((who, pid)), Some((my_who, my_pid))) =
        (holder.rsplit_once(", pid "), mine.rsplit_once(", pid "))
    else {
        return false;
    };
    if who != my_who || pid == my_pid || !std::path::Path::new("/proc/self/cmdline").exists() {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    !std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|c| String::from_utf8_lossy(&c).contains("upgrade"))
}

fn lease_view(l: &Lease) -> LeaseView {
    let spec = l.spec.clone().unwrap_or_default();
    let renewed = spec
        .renew_time
        .or(spec.acquire_time)
        .map(|t| t.0)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
    let expires = renewed.as_second() + i64::from(spec.lease_duration_seconds.unwrap_or(0));
    let holder = spec.holder_identity.unwrap_or_default();
    LeaseView {
        holder_gone: holder_gone(&holder),
        holder,
        expires_in: expires - jiff::Timestamp::now().as_second(),
    }
}

/// The lock, held while this run changes anything; renewed in the
/// background, released on every way out.
pub struct LockGuard {
    /// Said when the lock still held was this identity's own (an earlier run that was
    /// stopped): it is taken over.
    pub took_over: Option<String>,
    client: Client,
    me: String,
    renew: tokio::task::JoinHandle<()>,
}

/// The refusal for a Lease another run wrote first (a create or replace that conflicted).
fn held_by(current: &Lease, me: &str) -> String {
    match lock_verdict(Some(&lease_view(current)), me) {
        LockVerdict::Held(why) => why,
        _ => format!(
            "another upgrade took the lock {LEASE_NAMESPACE}/{LEASE_NAME} at the same moment: {:?}; run again once it is done",
            lease_view(current).holder
        ),
    }
}

/// One attempt at the lock: Ok(Ok(takeover note)) when taken, Ok(Err(why)) when another run
/// holds it, Err with what failed. `again`: an earlier attempt may have written it.
async fn take_lock(
    api: &Api<Lease>,
    lease: &Lease,
    me: &str,
    again: bool,
) -> Result<Result<Option<String>, String>, (kube::Error, &'static str)> {
    const READ: &str = "could not read the lock Lease";
    match api.get_opt(LEASE_NAME).await.map_err(|e| (e, READ))? {
        None => match api.create(&PostParams::default(), lease).await {
            Ok(_) => Ok(Ok(None)),
            Err(kube::Error::Api(e)) if e.code == 409 => lost_race(api, me, again).await,
            Err(e) => Err((e, "could not create the lock Lease")),
        },
        Some(current) => {
            let took_over = if ours(&current, me, again) {
                None
            } else {
                match lock_verdict(Some(&lease_view(&current)), me) {
                    LockVerdict::Held(why) => return Ok(Err(why)),
                    LockVerdict::TakeOver(note) => Some(note),
                    LockVerdict::Free => None,
                }
            };
            let mut lease = lease.clone();
            lease.metadata.resource_version = current.metadata.resource_version.clone();
            match api
                .replace(LEASE_NAME, &PostParams::default(), &lease)
                .await
            {
                Ok(_) => Ok(Ok(took_over)),
                Err(kube::Error::Api(e)) if e.code == 409 => lost_race(api, me, again).await,
                Err(e) => Err((e, "could not take over the expired lock Lease")),
            }
        }
    }
}

/// A 409 on create or replace: someone wrote the Lease first, perhaps this run's own
/// earlier attempt whose answer was lost; the Lease as it is now says which.
async fn lost_race(
    api: &Api<Lease>,
    me: &str,
    again: bool,
) -> Result<Result<Option<String>, String>, (kube::Error, &'static str)> {
    let current = api
        .get(LEASE_NAME)
        .await
        .map_err(|e| (e, "could not read the lock Lease"))?;
    Ok(if ours(&current, me, again) {
        Ok(None)
    } else {
        Err(held_by(&current, me))
    })
}

/// The Lease is this run's own, written by an earlier attempt of this acquisition whose
/// answer was lost (same identity, pid included).
fn ours(current: &Lease, me: &str, again: bool) -> bool {
    again
        && current
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(me)
}

/// Takes the lock, or says who holds it.
pub async fn acquire_lock(
    client: &Client,
    me: &str,
    seconds: i32,
) -> anyhow::Result<Result<LockGuard, String>> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let now = MicroTime(jiff::Timestamp::now());
    let mut lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE_NAME, "namespace": LEASE_NAMESPACE},
        "spec": {"holderIdentity": me, "leaseDurationSeconds": seconds},
    }))?;
    if let Some(spec) = lease.spec.as_mut() {
        spec.acquire_time = Some(now.clone());
        spec.renew_time = Some(now);
    }
    // A write whose answer was lost may have taken the lock: tried again, the Lease then
    // holds this very run's identity (its pid included), and is ours.
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    let took_over = loop {
        match take_lock(&api, &lease, me, attempt > 0).await {
            Ok(Ok(took_over)) => break took_over,
            Ok(Err(held)) => return Ok(Err(held)),
            Err((e, what)) if attempt + 1 < ATTEMPTS && progress_write_retryable(&e) => {
                tracing::debug!("{what}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err((e, what)) => return Err(e).context(what),
        }
    };
    let renew = {
        let api = api.clone();
        let period = Duration::from_secs((seconds.max(3) / 3) as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(period).await;
                let patch = json!({"spec": {"renewTime": MicroTime(jiff::Timestamp::now())}});
                if let Err(e) = api
                    .patch(LEASE_NAME, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                {
                    tracing::warn!("could not renew the lock Lease: {e}");
                }
            }
        })
    };
    Ok(Ok(LockGuard {
        took_over,
        client: client.clone(),
        me: me.to_string(),
        renew,
    }))
}

impl LockGuard {
    /// Deletes our own Lease, retrying transient failures a few times. An error says what
    /// to do: until it expires, every other run is refused.
    pub async fn release(self) -> Result<(), String> {
        self.renew.abort();
        let api: Api<Lease> = Api::namespaced(self.client.clone(), LEASE_NAMESPACE);
        const ATTEMPTS: u32 = 5;
        let mut attempt = 0;
        loop {
            let result = match api.get_opt(LEASE_NAME).await {
                // Only our own lease: a takeover after expiry belongs to someone else.
                Ok(Some(l))
                    if l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        == Some(&self.me) =>
                {
                    match api.delete(LEASE_NAME, &DeleteParams::default()).await {
                        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
                        r => r.map(|_| ()),
                    }
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => return Ok(()),
                Err(e) if attempt + 1 < ATTEMPTS && progress_write_retryable(&e) => {
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                    attempt += 1;
                }
                Err(e) => {
                    return Err(format!(
                        "could not release the lock Lease {LEASE_NAMESPACE}/{LEASE_NAME}: {}; other runs are refused until it expires, or delete it: kubectl -n {LEASE_NAMESPACE} delete lease {LEASE_NAME}",
                        crate::output::kube_error(&e)
                    ));
                }
            }
        }
    }
}

/// The node as a transport target.
pub fn node_target(facts: &NodeFacts) -> NodeTarget {
    NodeTarget {
        name: facts.name.clone(),
        address: facts.internal_ip.clone(),
    }
}

/// Asks the node what preflight needs, read-only, in one command (one ssh
/// round trip, one pod with `--via pod`): its OS, its repository file and
/// what the target minor's repository offers, listed through a scratch copy
/// of the repository configuration ([`Recipe::probe`]). Nothing on the node
/// is written but the scratch directory, which the command removes; the real
/// repository switch is the plan's repo-switch step.
pub async fn probe<T: Transport>(t: &T, facts: &NodeFacts, req: &Request) -> anyhow::Result<Probe> {
    if !t.captures_output() {
        return Ok(Probe::Unavailable);
    }
    let target = node_target(facts);
    let could_not_run = || {
        format!(
            "could not run a command on node {} through {}",
            facts.name,
            t.describe()
        )
    };
    // The flag or the Node's osImage picks the script; the node's own
    // os-release, which the script prints first, has the last word.
    let mut manager = match req
        .manager
        .or_else(|| PackageManager::from_os_image(&facts.os_image))
    {
        Some(m) => m,
        None => {
            let base = Recipe::new(PackageManager::Apt);
            let base = Recipe {
                sudo: req.sudo,
                ..base
            };
            let os = t
                .run(&target, &base.read_os_release())
                .await
                .with_context(could_not_run)?;
            if !os.success() {
                bail!(
                    "could not run `cat /etc/os-release` on node {} through {}; check the transport:\n{}",
                    facts.name,
                    t.describe(),
                    os.excerpt()
                );
            }
            match preflight::decide_manager(req.manager, Some(&os.stdout), &facts.os_image).0 {
                Some(m) => m,
                None => return Ok(Probe::Done(NodeProbe::default())),
            }
        }
    };
    let wanted = req.to.minor_line();
    for attempt in 0..2 {
        let recipe = Recipe {
            manager,
            sudo: req.sudo,
        };
        let cmd = recipe.probe(wanted, &scratch_dir());
        let out = t.run(&target, &cmd).await.with_context(could_not_run)?;
        let answer = parse_probe(out.code, &out.stdout, &out.stderr);
        // Every Linux node has /etc/os-release: failing to read it means the
        // transport does not work, not that the node lacks the file.
        let Some(os) = answer.os_release else {
            bail!(
                "could not run `cat /etc/os-release` on node {} through {}; check the transport:\n{}",
                facts.name,
                t.describe(),
                out.excerpt()
            );
        };
        let decided = preflight::decide_manager(req.manager, Some(&os), &facts.os_image).0;
        let Some(decided) = decided else {
            return Ok(Probe::Done(NodeProbe::default()));
        };
        if decided != manager && attempt == 0 {
            manager = decided;
            continue;
        }
        let Some(file) = answer.repo_file else {
            return Ok(Probe::Done(NodeProbe {
                manager: Some(manager),
                ..NodeProbe::default()
            }));
        };
        let mut probe = NodeProbe {
            manager: Some(manager),
            repo_minor: repo_minor(&file),
            repo_file_found: true,
            dependents: answer.dependents,
            ..NodeProbe::default()
        };
        if probe.repo_minor.is_none() {
            return Ok(Probe::Done(probe));
        }
        match answer.listing {
            Listing::Offered(o) => probe.offered = o,
            Listing::MinorMissing(why) => probe.minor_missing = Some(why),
            Listing::NotRun => {}
            Listing::Failed { stage, detail } => bail!(
                "could not list the {wanted} packages on node {}: {} failed (nothing was changed on the node):\n{}",
                facts.name,
                stage.describe(manager),
                indent(&detail)
            ),
        }
        return Ok(Probe::Done(probe));
    }
    unreachable!("the second attempt always returns")
}

/// A fresh scratch directory name for one probe; the probe's `mkdir` fails
/// rather than reuse a path that exists.
fn scratch_dir() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("/tmp/upkeep-probe.{}.{nanos:08x}", std::process::id())
}

fn indent(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..]
        .iter()
        .map(|l| format!("    | {l}\n"))
        .collect()
}

/// The preflight verdict for one node, with the drain's own plan.
pub struct Prepared {
    pub report: Report,
    pub plan: Option<NodePlan>,
    pub drain: Option<drain::DrainPlan>,
}

/// Everything before the first change: cluster checks, the node's answers,
/// the drain plan. Refuses exactly as `kubectl safedrain` would.
/// `selection` is every node this run upgrades: the first control-plane node of
/// a minor upgrade is refused on the drains of the others, before anything changes.
pub async fn prepare<T: Transport>(
    client: &Client,
    t: &T,
    snap: &ClusterSnapshot,
    req: &Request,
    drain_opts: &drain::DrainOptions,
    selection: &[String],
) -> anyhow::Result<Prepared> {
    let report = preflight::preflight(snap, req, &Probe::NotYet);
    if report.refused() || report.nothing_to_do {
        return Ok(Prepared {
            report,
            plan: None,
            drain: None,
        });
    }
    // The first control-plane node of a minor upgrade is judged by the hop's
    // readiness findings: its certificates include kubeadm's on every
    // control-plane node, read through the same transport and code as
    // `kubectl skew plan --via/--remote-shell`.
    let with_node_certs;
    let snap = match (&report.role, &snap.readiness) {
        (Some(plan::Role::FirstControlPlane), Some(_)) if moves_minor(snap, req.to) => {
            let mut s = snap.clone();
            if let Some(input) = s.readiness.as_mut() {
                use crate::skew::readiness::gather;
                gather::node_certificates(client, Some((t, req.sudo)), &mut input.snapshot).await;
                // The node's own drain is its `drain` rule; the others' are the hop's.
                input.selection = selection
                    .iter()
                    .filter(|n| **n != req.node)
                    .cloned()
                    .collect();
                if !input.selection.is_empty() {
                    gather::drains(
                        client,
                        Some(&input.selection),
                        drain_opts,
                        &mut input.snapshot,
                    )
                    .await;
                }
            }
            with_node_certs = s;
            &with_node_certs
        }
        _ => snap,
    };
    let facts = snap.node(&req.node).expect("preflight found the node");
    let probe = probe(t, facts, req).await?;
    let mut report = preflight::preflight(snap, req, &probe);
    let Some(input) = report.decided.clone() else {
        return Ok(Prepared {
            report,
            plan: None,
            drain: None,
        });
    };
    let plan = plan::build(input);
    let drain_pending = plan.pending().any(|s| s.id == StepId::Drain);
    let mut drain_plan = None;
    if drain_pending {
        let dsnap = drain::gather(client, &req.node, None).await?;
        let dplan = drain::plan(&dsnap, drain_opts);
        if dplan.refused() {
            report.refuse_drain(format!(
                "draining node {} would be refused by the safedrain rules:\n{}",
                req.node,
                dplan.render()
            ));
        }
        drain_plan = Some(dplan);
    }
    Ok(Prepared {
        report,
        plan: Some(plan),
        drain: drain_plan,
    })
}

/// Whether `to` takes the control plane to another minor.
fn moves_minor(snap: &ClusterSnapshot, to: TargetSpec) -> bool {
    snap.oldest_apiserver()
        .is_some_and(|oldest| to.minor_line() > oldest.minor_line())
}

/// How the steps are carried out.
#[derive(Clone)]
pub struct ExecSettings {
    /// The client the drain runs on: built without kube's silent 429/503
    /// retries, so a blocking PodDisruptionBudget is named and waited on.
    pub drain_client: Client,
    pub drain: drain::DrainOptions,
    /// How the evictions run (grace period, concurrency).
    pub evictions: drain::ExecOptions,
    pub drain_timeout: Option<Duration>,
    pub ready_timeout: Duration,
    pub cancel: Option<watch::Receiver<bool>>,
}

/// Where an execution got to: shared so an interrupted run can say it.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Progressed {
    pub done: Vec<StepId>,
    pub current: Option<StepId>,
}

/// Why a node's upgrade stopped.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub node: String,
    pub step: StepId,
    pub done: Vec<StepId>,
    pub detail: String,
    pub hint: String,
}

impl Failure {
    pub fn render(&self) -> String {
        let done = if self.done.is_empty() {
            "nothing".to_string()
        } else {
            self.done
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        // Only a cordon that itself failed leaves the node untouched.
        let state = if self.step == StepId::Cordon && self.done.is_empty() {
            format!("Nothing was changed on node {}.", self.node)
        } else {
            format!("Node {} stays cordoned.", self.node)
        };
        format!(
            "the upgrade of node {} failed at step {}.\n{}\nDone before it: {done}. {state}\n{}",
            self.node,
            self.step,
            self.detail.trim_end(),
            self.hint
        )
    }
}

/// Executes the pending steps, recording each completed one on the node.
pub async fn execute<T: Transport>(
    client: &Client,
    t: &T,
    plan: &NodePlan,
    target: &NodeTarget,
    settings: &ExecSettings,
    progressed: &Arc<Mutex<Progressed>>,
    say: &(dyn Fn(String) + Send + Sync),
) -> Result<(), Failure> {
    let nodes: Api<Node> = Api::all(client.clone());
    let total = plan.steps.len();
    {
        let mut p = progressed.lock().expect("progress");
        p.done = plan.steps.iter().filter(|s| s.done).map(|s| s.id).collect();
    }
    for (i, step) in plan.steps.iter().enumerate() {
        if step.done {
            say(format!(
                "[{}] {}/{total} {}: done in an earlier run",
                plan.node,
                i + 1,
                step.id
            ));
            continue;
        }
        progressed.lock().expect("progress").current = Some(step.id);
        say(format!(
            "[{}] {}/{total} {}: {}",
            plan.node,
            i + 1,
            step.id,
            step.title
        ));
        let fail = |detail: String| {
            let done = progressed.lock().expect("progress").done.clone();
            Failure {
                node: plan.node.clone(),
                step: step.id,
                done,
                detail,
                hint: plan::recovery_hint(plan, step.id),
            }
        };
        let last = i + 1 == total;
        let record = if last {
            json!({"metadata": {"annotations": {PROGRESS_ANNOTATION: null}}})
        } else {
            let record = Progress {
                target: plan.target,
                done: step.id,
                was_cordoned: plan.keep_cordoned,
            };
            json!({"metadata": {"annotations": {PROGRESS_ANNOTATION: record.to_json()}}})
        };
        match &step.action {
            Action::Cordon => {
                // The cordon and its record in one write: an interrupt or a failed write
                // never leaves the node cordoned without the record that says why.
                let mut patch = record.clone();
                patch["spec"] = json!({"unschedulable": true});
                write_progress(&nodes, &plan.node, &patch)
                    .await
                    .map_err(|e| fail(format!("could not cordon node {}: {e}", plan.node)))?;
                let mut p = progressed.lock().expect("progress");
                p.done.push(step.id);
                p.current = None;
                continue;
            }
            Action::Node { commands } => {
                let run = t
                    .run_step(target, &step.title, commands)
                    .await
                    .map_err(|e| fail(format!("{e:#}")))?;
                if let Some((cmd, out)) = run.failure() {
                    let code = out
                        .code
                        .map_or_else(|| "was killed".to_string(), |c| format!("exited {c}"));
                    return Err(fail(format!("`{cmd}` {code}:\n{}", out.excerpt())));
                }
                if step.id == StepId::KubeadmPkg
                    && t.captures_output()
                    && let Some((cmd, out)) = run.outputs.last()
                    && Release::parse_reported(out.stdout.trim()) != Some(plan.target)
                {
                    return Err(fail(format!(
                        "`{cmd}` reports {:?}, not {}: the package did not bring the target",
                        out.stdout.trim(),
                        plan.target
                    )));
                }
            }
            Action::Drain => drain_node(&plan.node, settings, say)
                .await
                .map_err(|e| fail(format!("{e:#}")))?,
            Action::WaitReady { kubelet_version } => {
                let want = *kubelet_version;
                let cond = move |n: Option<&Node>| {
                    n.is_some_and(|n| {
                        let f = node_facts(n);
                        f.ready && f.kubelet_version == Some(want)
                    })
                };
                // Watches through apiserver restarts (the node may be the only control
                // plane) until the Ready deadline.
                match crate::transient::wait_for(
                    nodes.clone(),
                    &plan.node,
                    settings.ready_timeout,
                    cond,
                )
                .await
                {
                    Ok(_) => {}
                    Err(_) => {
                        let now = nodes.get(&plan.node).await.ok().map(|n| node_facts(&n));
                        return Err(fail(format!(
                            "node {} did not become Ready with kubelet {want} within {:?} (now: ready={}, kubelet {}); check `systemctl status kubelet` and `journalctl -u kubelet` on the node",
                            plan.node,
                            settings.ready_timeout,
                            now.as_ref().is_some_and(|f| f.ready),
                            now.and_then(|f| f.kubelet_version)
                                .map_or_else(|| "unknown".to_string(), |v| v.to_string())
                        )));
                    }
                }
            }
            Action::Uncordon => {
                let report = uncordon_retrying(client, &plan.node)
                    .await
                    .map_err(|e| fail(format!("{e:#}")))?;
                for line in report.render().lines() {
                    say(format!("[{}]   {line}", plan.node));
                }
            }
        }
        let recorded = write_progress(&nodes, &plan.node, &record).await;
        let mut p = progressed.lock().expect("progress");
        // The step is done whether or not its record could be written: say it.
        p.done.push(step.id);
        p.current = None;
        drop(p);
        if let Err(e) = recorded {
            return Err(fail(format!(
                "step {} completed but could not be recorded on node {} (annotation {PROGRESS_ANNOTATION}): {e}; the run stops here so that a re-run does not take this step's work for someone else's",
                step.id, plan.node
            )));
        }
    }
    Ok(())
}

/// Whether a failed progress write is worth sending again: throttled, a server error, or
/// no answer at all. The write is a merge patch of one annotation, so repeating it is safe.
fn progress_write_retryable(e: &kube::Error) -> bool {
    match e {
        kube::Error::Api(s) => s.code == 429 || s.code >= 500,
        _ => true,
    }
}

/// Uncordons the node, retrying transient failures as a progress write is retried: the
/// uncordon is a merge patch that sets the same fields each time, as safe to send again.
async fn uncordon_retrying(
    client: &Client,
    node: &str,
) -> anyhow::Result<drain::record::UncordonReport> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    loop {
        match drain::record::uncordon(client, node).await {
            Ok(r) => return Ok(r),
            Err(e)
                if attempt + 1 < ATTEMPTS
                    && e.chain()
                        .find_map(|c| c.downcast_ref::<kube::Error>())
                        .is_some_and(progress_write_retryable) =>
            {
                tracing::debug!("uncordoning {node}: {e:#}; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Writes the progress record (or the cordon, as idempotent), retrying transient failures a
/// few times with backoff.
async fn write_progress(
    nodes: &Api<Node>,
    node: &str,
    patch: &serde_json::Value,
) -> Result<(), kube::Error> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 0;
    loop {
        match nodes
            .patch(node, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt + 1 < ATTEMPTS && progress_write_retryable(&e) => {
                tracing::debug!("recording progress on {node}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Cordon and drain with the drain core: the same rules and refusals as
/// `kubectl safedrain`, waiting until the workloads are whole again.
async fn drain_node(
    node: &str,
    settings: &ExecSettings,
    say: &(dyn Fn(String) + Send + Sync),
) -> anyhow::Result<()> {
    let opts = drain::ExecOptions {
        timeout: settings.drain_timeout,
        timeout_flag: "--drain-timeout",
        cancel: settings.cancel.clone(),
        ..settings.evictions.clone()
    };
    let node_name = node.to_string();
    let progress = move |e: &drain::DrainEvent| say(format!("[{node_name}]   {}", e.line()));
    let (plan, report) = drain::drain_node(
        &settings.drain_client,
        node,
        None,
        &settings.drain,
        &opts,
        &progress,
    )
    .await?;
    let Some(report) = report else {
        bail!(
            "the drain is refused by the safedrain rules:\n{}",
            plan.render()
        );
    };
    match report.outcome {
        drain::DrainOutcome::Drained => Ok(()),
        other => {
            let mut msg = match other {
                // The interrupt itself is reported once, by the caller.
                drain::DrainOutcome::Interrupted => "the drain was interrupted".to_string(),
                drain::DrainOutcome::TimedOut => "the drain timed out".to_string(),
                _ => "the drain failed".to_string(),
            };
            if let Some(e) = report
                .error
                .as_ref()
                .filter(|_| !matches!(other, drain::DrainOutcome::Interrupted))
            {
                msg.push_str(&format!(": {e}"));
            }
            for u in report.undone() {
                msg.push_str(&format!("\n  - {u}"));
            }
            bail!(msg)
        }
    }
}

/// Builds the preflight request for a node from the shared settings.
pub fn request(node: &str, to: TargetSpec, base: &RequestBase) -> Request {
    Request {
        node: node.to_string(),
        to,
        manager: base.manager,
        sudo: base.sudo,
        me: base.me.clone(),
        backup: base.backup.clone(),
        max_backup_age_secs: base.max_backup_age_secs,
    }
}

/// What every node's request shares.
#[derive(Debug, Clone)]
pub struct RequestBase {
    pub manager: Option<super::recipe::PackageManager>,
    pub sudo: bool,
    pub me: String,
    pub backup: Option<Backup>,
    pub max_backup_age_secs: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::recipe::PackageManager;
    use crate::upgrade::recipe::{PROBE_LIST_MARK, PROBE_REPO_MARK};
    use crate::upgrade::transport::{CmdOutput, Recording};

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "node01".into(),
            ready: true,
            kubelet_version: Release::parse_reported("v1.33.5"),
            os_image: "Ubuntu 24.04.1 LTS".into(),
            internal_ip: Some("10.0.0.7".into()),
            ..NodeFacts::default()
        }
    }

    fn req(to: &str) -> Request {
        Request {
            node: "node01".into(),
            to: TargetSpec::parse(to).unwrap(),
            manager: None,
            sudo: false,
            me: "me".into(),
            backup: None,
            max_backup_age_secs: 0,
        }
    }

    const DEB: &str = "deb [signed-by=/etc/apt/keyrings/kubernetes-apt-keyring.gpg] https://pkgs.k8s.io/core:/stable:/v1.33/deb/ /\n";

    /// What the probe script prints on a node with `file` as its repository
    /// file and `listing` from the package manager.
    fn probe_output(os: &str, file: &str, listing: &str) -> CmdOutput {
        CmdOutput::ok(format!(
            "{os}\n{PROBE_REPO_MARK}\n{file}\n{PROBE_LIST_MARK}\n{listing}"
        ))
    }

    #[tokio::test]
    async fn probe_is_one_read_only_command() {
        let t = Recording::default().answer(
            "sh -c",
            probe_output(
                "ID=ubuntu\nVERSION_ID=\"24.04\"",
                DEB,
                "kubeadm | 1.34.1-1.1 | x\nkubelet | 1.34.1-1.1 | x\nkubectl | 1.34.1-1.1 | x\n",
            ),
        );
        let Probe::Done(p) = probe(&t, &facts(), &req("v1.34")).await.unwrap() else {
            panic!("probed");
        };
        assert_eq!(p.manager, Some(PackageManager::Apt));
        assert_eq!(p.repo_minor.unwrap().to_string(), "v1.33");
        assert_eq!(p.offered.kubeadm[0].to_string(), "1.34.1-1.1");
        let cmds = t.commands();
        assert_eq!(cmds.len(), 1, "{cmds:#?}");
        let script = &cmds[0];
        // Only the scratch copy is edited; apt reads it and keeps its lists
        // beside it.
        for l in script.lines().filter(|l| l.contains("sed -i")) {
            assert!(l.contains("/tmp/upkeep-probe."), "{l}");
            assert!(!l.contains("/etc/apt"), "{l}");
        }
        for w in [
            "Dir::Etc::SourceParts=-",
            "Dir::State::Lists=/tmp/upkeep-probe.",
            "/core:/stable:/v1.34/#g",
        ] {
            assert!(script.contains(w), "{w} in {script}");
        }
        assert!(
            !script.contains("install") && !script.contains("apt-mark"),
            "{script}"
        );
    }

    #[tokio::test]
    async fn probe_on_an_rpm_node_uses_a_scratch_repository_directory() {
        let mut f = facts();
        f.os_image = "Rocky Linux 9.4 (Blue Onyx)".into();
        let t = Recording::default().answer(
            "sh -c",
            probe_output(
                "ID=rocky\nVERSION_ID=\"9.4\"",
                "baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/",
                "kubeadm.x86_64 1.34.1-150500.1.1 kubernetes\n",
            ),
        );
        let Probe::Done(p) = probe(&t, &f, &req("v1.34.1")).await.unwrap() else {
            panic!("probed");
        };
        assert_eq!(p.manager, Some(PackageManager::Dnf));
        assert_eq!(p.offered.kubeadm.len(), 1);
        let cmds = t.commands();
        assert_eq!(cmds.len(), 1);
        assert!(cmds[0].contains("dnf '--setopt=reposdir=/tmp/upkeep-probe."));
    }

    #[tokio::test]
    async fn probe_follows_os_release_over_the_os_image() {
        // osImage says Ubuntu, the node's os-release says Rocky: the apt
        // script finds no kubernetes.list, so the dnf script runs next.
        let t = Recording::default()
            .answer(
                "apt-get",
                CmdOutput {
                    code: Some(92),
                    stdout: format!("ID=rocky\nVERSION_ID=9\n\n{PROBE_REPO_MARK}\n"),
                    stderr:
                        "cat: /etc/apt/sources.list.d/kubernetes.list: No such file or directory\n"
                            .into(),
                },
            )
            .answer(
                "dnf",
                probe_output(
                    "ID=rocky",
                    "baseurl=https://pkgs.k8s.io/core:/stable:/v1.34/rpm/",
                    "",
                ),
            );
        let Probe::Done(p) = probe(&t, &facts(), &req("v1.34.1")).await.unwrap() else {
            panic!("probed");
        };
        assert_eq!(p.manager, Some(PackageManager::Dnf));
        assert_eq!(t.commands().len(), 2);
    }

    #[tokio::test]
    async fn probe_notices_a_missing_repository_file() {
        let t = Recording::default().answer(
            "sh -c",
            CmdOutput {
                code: Some(92),
                stdout: format!("ID=ubuntu\n\n{PROBE_REPO_MARK}\n"),
                stderr: "cat: No such file or directory".into(),
            },
        );
        let Probe::Done(p) = probe(&t, &facts(), &req("v1.34.1")).await.unwrap() else {
            panic!("probed");
        };
        assert!(!p.repo_file_found);
        assert_eq!(t.commands().len(), 1);
    }

    #[tokio::test]
    async fn probe_tells_a_missing_minor_from_other_failures() {
        let missing = CmdOutput {
            code: Some(94),
            stdout: format!(
                "ID=ubuntu\n\n{PROBE_REPO_MARK}\n{DEB}\n{PROBE_LIST_MARK}\nErr:1 https://pkgs.k8s.io/core:/stable:/v1.40/deb  InRelease\n  404  Not Found\n"
            ),
            stderr: "E: The repository 'https://pkgs.k8s.io/core:/stable:/v1.40/deb  Release' does not have a Release file.\n".into(),
        };
        let t = Recording::default().answer("sh -c", missing);
        let Probe::Done(p) = probe(&t, &facts(), &req("v1.40.1")).await.unwrap() else {
            panic!("probed");
        };
        assert!(
            p.minor_missing
                .unwrap()
                .contains("does not have a Release file")
        );
        let broken = CmdOutput {
            code: Some(94),
            stdout: format!("ID=ubuntu\n\n{PROBE_REPO_MARK}\n{DEB}\n{PROBE_LIST_MARK}\n"),
            stderr: "E: Could not get lock /tmp/x/lists/lock\n".into(),
        };
        let t = Recording::default().answer("sh -c", broken);
        let err = probe(&t, &facts(), &req("v1.34.1"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("apt-get update"), "{err}");
        assert!(err.contains("Could not get lock"), "{err}");
        assert!(err.contains("nothing was changed"), "{err}");
    }

    #[test]
    fn failures_say_what_was_done_and_how_to_retry() {
        let plan = crate::upgrade::plan::build(crate::upgrade::plan::PlanInput {
            node: "node01".into(),
            role: crate::upgrade::Role::Worker,
            from: Release::new(1, 33, 5),
            target: Release::new(1, 34, 1),
            recipe: Recipe::new(PackageManager::Apt),
            repo_minor: None,
            revision: None,
            progress: None,
            keep_cordoned: false,
            warnings: vec![],
        });
        let f = Failure {
            node: "node01".into(),
            step: StepId::KubeadmUpgrade,
            done: vec![StepId::Cordon, StepId::RepoSwitch, StepId::KubeadmPkg],
            detail: "`kubeadm upgrade node` exited 1:\n    | boom\n".into(),
            hint: plan::recovery_hint(&plan, StepId::KubeadmUpgrade),
        };
        let text = f.render();
        assert!(text.contains("failed at step kubeadm-upgrade"), "{text}");
        assert!(
            text.contains("Done before it: cordon, repo-switch, kubeadm-pkg."),
            "{text}"
        );
        assert!(text.contains("stays cordoned"), "{text}");
        assert!(
            text.contains("/etc/kubernetes/tmp/kubeadm-backup-*"),
            "{text}"
        );
        assert!(text.contains("--to v1.34.1"), "{text}");
        // The cordon was done but its record could not be written: never "nothing".
        let unrecorded = Failure {
            step: StepId::Cordon,
            done: vec![StepId::Cordon],
            ..f.clone()
        }
        .render();
        assert!(!unrecorded.contains("Nothing was changed"), "{unrecorded}");
        assert!(
            unrecorded.contains("Done before it: cordon."),
            "{unrecorded}"
        );
        assert!(unrecorded.contains("stays cordoned"), "{unrecorded}");
        let early = Failure {
            step: StepId::Cordon,
            done: vec![],
            ..f
        };
        assert!(
            early
                .render()
                .contains("Nothing was changed on node node01.")
        );
    }

    #[test]
    fn progress_writes_are_retried_through_transient_answers_only() {
        let api = |code: u16| {
            kube::Error::Api(
                kube::core::Status::failure("injected", "InternalError")
                    .with_code(code)
                    .boxed(),
            )
        };
        for code in [429, 500, 503, 504] {
            assert!(progress_write_retryable(&api(code)), "{code}");
        }
        for code in [400, 403, 404, 409, 422] {
            assert!(!progress_write_retryable(&api(code)), "{code}");
        }
    }

    #[test]
    fn nodes_read_into_facts() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "cp1", "labels": {"node-role.kubernetes.io/control-plane": ""},
                "annotations": {PROGRESS_ANNOTATION: "{\"target\":\"v1.34.1\",\"done\":\"drain\"}"}},
            "spec": {"unschedulable": true},
            "status": {
                "conditions": [{"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "10.0.0.2"}],
                "nodeInfo": {"kubeletVersion": "v1.33.5", "osImage": "Ubuntu 24.04.1 LTS",
                    "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "", "kernelVersion": "",
                    "kubeProxyVersion": "", "machineID": "", "operatingSystem": "linux", "systemUUID": ""}
            }
        }))
        .unwrap();
        let f = node_facts(&node);
        assert!(f.control_plane && f.ready && f.unschedulable);
        assert_eq!(f.internal_ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(f.progress.unwrap().unwrap().done, StepId::Drain);
    }
}
