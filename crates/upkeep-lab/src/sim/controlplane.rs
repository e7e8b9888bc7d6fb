//! Control-plane restarts: what a kubeadm static-pod upgrade does to the cluster around it.
//!
//! `kubeadm upgrade apply` and `kubeadm upgrade node` on a control-plane node write new
//! static-pod manifests; the kubelet stops the old containers and starts new ones
//! (cmd/kubeadm/app/phases/upgrade/staticpods.go `upgradeComponent`, which then waits for the
//! new pod hash through the API: `WaitForStaticPodHash`). On a single control plane the only
//! kube-apiserver is gone meanwhile, and clients get "connection refused" until it is back;
//! with several, the load balancer in front of them keeps the API up and only the restarting
//! node's component goes away. The mirror pods come back with a new UID, because a static
//! pod's UID is a hash of its manifest (pkg/kubelet/config/common.go `applyDefaults`) and the
//! kubelet replaces an outdated mirror pod (pkg/kubelet/kubelet.go `SyncPod`, "Deleting
//! mirror pod because it is outdated").
//!
//! The lab keeps, per cluster, when its API is down ([`ApiOutage`], honoured by the server's
//! listener) and a log of host commands a kubelet killed while they ran
//! ([`Interruptions`], recorded as a Warning event with reason [`REASON_INTERRUPTED`]), both
//! served at `GET /lab/v1/interruptions`, so tests can assert that kubeadm never was
//! interrupted and that the outage did happen.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use parking_lot::Mutex;
use serde::Serialize;

use crate::lab::Lab;

/// The event reason recorded when a kubelet kills a host command that was still running.
pub const REASON_INTERRUPTED: &str = "HostCommandInterrupted";

/// When the cluster's API refuses connections (`lab.extension("apiserver.outage")`).
pub struct ApiOutage {
    until: Mutex<Option<Timestamp>>,
    /// Every outage so far: (start, end), lab time.
    history: Mutex<Vec<(Timestamp, Timestamp)>>,
    changed: tokio::sync::watch::Sender<u64>,
}

impl ApiOutage {
    pub fn get(lab: &Lab) -> Arc<ApiOutage> {
        lab.extension("apiserver.outage", || ApiOutage {
            until: Mutex::new(None),
            history: Mutex::new(Vec::new()),
            changed: tokio::sync::watch::Sender::new(0),
        })
    }

    /// The API goes away for `lab_secs` from now (an outage already under way is extended,
    /// never shortened). Returns its end.
    pub fn begin(&self, lab: &Lab, lab_secs: f64) -> Timestamp {
        let now = lab.clock.now();
        let end = now + jiff::SignedDuration::from_secs_f64(lab_secs.max(0.0));
        let end = {
            let mut until = self.until.lock();
            let ongoing = until.filter(|u| *u > now);
            let end = ongoing.map_or(end, |u| u.max(end));
            *until = Some(end);
            let mut history = self.history.lock();
            match history.last_mut() {
                Some(last) if ongoing.is_some() => last.1 = end,
                _ => history.push((now, end)),
            }
            end
        };
        self.changed.send_modify(|g| *g += 1);
        tracing::info!("kube-apiserver restarting: the API refuses connections until {end}");
        end
    }

    /// The end of the outage under way, if any.
    pub fn down_until(&self, lab: &Lab) -> Option<Timestamp> {
        let until = *self.until.lock();
        until.filter(|u| *u > lab.clock.now())
    }

    /// Every outage so far as (start, end), lab time.
    pub fn history(&self) -> Vec<(Timestamp, Timestamp)> {
        self.history.lock().clone()
    }

    /// Notified whenever an outage begins or is extended.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Real time left until the outage ends (zero when the API is up).
    pub fn real_time_left(&self, lab: &Lab) -> Duration {
        match self.down_until(lab) {
            Some(u) => {
                let lab_left = u.duration_since(lab.clock.now()).as_secs_f64().max(0.0);
                lab.clock.real_duration(Duration::from_secs_f64(lab_left))
            }
            None => Duration::ZERO,
        }
    }

    /// Wait (lab clock) until the API is back.
    pub async fn wait_over(&self, lab: &Lab) {
        loop {
            let left = self.real_time_left(lab);
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left).await;
        }
    }
}

/// A host command a kubelet killed while it ran.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Interruption {
    pub node: String,
    pub namespace: String,
    pub pod: String,
    /// The command, as one line.
    pub command: String,
    /// Lab time (RFC 3339).
    pub time: String,
}

/// Every interruption so far (`lab.extension("host.interruptions")`).
#[derive(Default)]
pub struct Interruptions {
    list: Mutex<Vec<Interruption>>,
}

impl Interruptions {
    pub fn get(lab: &Lab) -> Arc<Interruptions> {
        lab.extension("host.interruptions", Interruptions::default)
    }
    pub fn record(&self, i: Interruption) {
        tracing::warn!(
            "host command `{}` on node {} was killed while it ran (pod {}/{} deleted)",
            i.command,
            i.node,
            i.namespace,
            i.pod
        );
        self.list.lock().push(i);
    }
    pub fn all(&self) -> Vec<Interruption> {
        self.list.lock().clone()
    }
}

/// How many control-plane nodes run a kube-apiserver static pod.
pub fn apiservers(lab: &Lab) -> usize {
    super::StaticPods::get(lab).nodes_with("kube-apiserver")
}

/// A control-plane node's static pods restart with new manifests. With one kube-apiserver in
/// the cluster the API refuses connections for the scenario's `controlPlaneRestartSeconds`;
/// with several it stays up. Returns the end of the outage, if one began.
pub fn restart(lab: &Lab, node: &str) -> Option<Timestamp> {
    let secs = super::config(lab).control_plane_restart_seconds;
    let single = apiservers(lab) <= 1;
    tracing::info!(
        "static pods of {node} restart ({} kube-apiserver{} in the cluster)",
        apiservers(lab),
        if single { "" } else { "s" }
    );
    (single && secs > 0.0).then(|| ApiOutage::get(lab).begin(lab, secs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::LabOptions;

    #[test]
    fn an_outage_is_extended_never_shortened_and_ends() {
        let lab = Lab::new(LabOptions::default());
        let o = ApiOutage::get(&lab);
        assert!(o.down_until(&lab).is_none());
        let end = o.begin(&lab, 20.0);
        assert_eq!(o.down_until(&lab), Some(end));
        assert_eq!(
            o.begin(&lab, 5.0),
            end,
            "a shorter restart keeps the later end"
        );
        lab.clock.advance(Duration::from_secs(21));
        assert!(o.down_until(&lab).is_none());
        assert_eq!(o.history().len(), 1);
        assert_eq!(o.history()[0].1, end);
        assert!(o.real_time_left(&lab).is_zero());
    }
}
