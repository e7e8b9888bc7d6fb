//! The shared state of one simulated cluster, and the seams other parts plug into.
//!
//! [`Lab`] is created once per cluster and shared as `Arc<Lab>` by the HTTP server, the
//! simulation (controllers, scheduler, kubelets) and the node shells:
//!
//! * `lab.store`     — every API object ([`crate::store::Store`]).
//! * `lab.clock`     — scaled lab time; `now_rfc3339()`, `sleep(lab_duration)`.
//! * `lab.version()` / `set_version()` — what `/version` reports.
//! * `lab.pod_logs`  — text served by `GET .../pods/{name}/log`, keyed by (namespace, name).
//! * `lab.faults`    — injected API faults ([`crate::faults`]).
//! * `lab.metrics`   — request counters.
//! * `lab.extensions` — typed slots for state other modules own (e.g. node shell package
//!   state), keyed by a name.
//!
//! Extension points: implement [`LabPlugin`] and add it to [`default_plugins`]. A plugin
//! may load the `--scenario` (the first plugin that returns `Ok(true)` from
//! [`LabPlugin::load_scenario`] claims it), start background tasks ([`LabPlugin::start`],
//! called inside the tokio runtime after the scenario is loaded and before the kubeconfig is
//! written) and add HTTP routes ([`LabPlugin::routes`], merged into the server; keep them
//! under `/lab/v1/`).

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::clock::Clock;
use crate::faults::Faults;
use crate::metrics::Metrics;
use crate::resources;
use crate::store::Store;

/// What `/version` answers (k8s.io/apimachinery pkg/version Info).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    pub major: String,
    pub minor: String,
    pub git_version: String,
    pub git_commit: String,
    pub git_tree_state: String,
    pub build_date: String,
    pub go_version: String,
    pub compiler: String,
    pub platform: String,
}

impl ServerVersion {
    /// From "v1.34.2" (a leading "v" is optional; suffixes like "-eks-1" or "+k3s1" are kept
    /// in gitVersion; minor gets a "+" for such builds, like managed offerings report).
    pub fn parse(v: &str) -> anyhow::Result<Self> {
        let git = if v.starts_with('v') {
            v.to_string()
        } else {
            format!("v{v}")
        };
        let core = git.trim_start_matches('v');
        let core_end = core.find(['-', '+']).unwrap_or(core.len());
        let nums: Vec<&str> = core[..core_end].split('.').collect();
        if nums.len() != 3 || nums.iter().any(|n| n.parse::<u64>().is_err()) {
            anyhow::bail!(
                "invalid server version {v:?}: expected vMAJOR.MINOR.PATCH, e.g. v1.34.2"
            );
        }
        let suffix = core_end < core.len();
        Ok(ServerVersion {
            major: nums[0].to_string(),
            minor: if suffix {
                format!("{}+", nums[1])
            } else {
                nums[1].to_string()
            },
            git_version: git,
            git_commit: "0000000000000000000000000000000000000000".into(),
            git_tree_state: "clean".into(),
            build_date: "2026-01-01T00:00:00Z".into(),
            go_version: "go1.25.0".into(),
            compiler: "gc".into(),
            platform: "linux/amd64".into(),
        })
    }
}

/// Default server version of a new lab.
pub const DEFAULT_VERSION: &str = "v1.34.2";

/// Options for creating a lab.
#[derive(Debug, Clone)]
pub struct LabOptions {
    pub version: ServerVersion,
    pub time_scale: f64,
    /// Watch history length (events).
    pub history: usize,
}

impl Default for LabOptions {
    fn default() -> Self {
        LabOptions {
            version: ServerVersion::parse(DEFAULT_VERSION).expect("valid default"),
            time_scale: 1.0,
            history: crate::store::DEFAULT_HISTORY,
        }
    }
}

/// One simulated cluster.
pub struct Lab {
    pub store: Store,
    pub clock: Arc<Clock>,
    version: RwLock<ServerVersion>,
    /// Pod log text by (namespace, name), served by `pods/{name}/log`.
    pub pod_logs: Mutex<HashMap<(String, String), String>>,
    pub faults: Faults,
    pub metrics: Metrics,
    /// State owned by other modules, by name. Downcast with [`Lab::extension`].
    pub extensions: Mutex<HashMap<&'static str, Arc<dyn Any + Send + Sync>>>,
}

impl Lab {
    /// A lab with the system namespaces (default, kube-system, kube-public, kube-node-lease).
    pub fn new(opts: LabOptions) -> Arc<Lab> {
        Self::new_on(opts, None)
    }

    /// A lab whose store starts from `seed` (a persisted cluster, see `crate::etcd`). The
    /// system namespaces are created only when the seed holds no object.
    pub fn new_on(opts: LabOptions, seed: Option<crate::store::Seed>) -> Arc<Lab> {
        let clock = Arc::new(Clock::new(opts.time_scale));
        let mut store = Store::with_history(clock.clone(), opts.history);
        if let Some(seed) = seed {
            store.seed(seed);
        }
        let fresh = store.is_empty();
        let lab = Lab {
            store,
            clock,
            version: RwLock::new(opts.version),
            pod_logs: Mutex::new(HashMap::new()),
            faults: Faults::default(),
            metrics: Metrics::default(),
            extensions: Mutex::new(HashMap::new()),
        };
        let system = if fresh {
            &["default", "kube-system", "kube-public", "kube-node-lease"][..]
        } else {
            &[]
        };
        for ns in system {
            lab.store
                .create(
                    &resources::NAMESPACE,
                    "",
                    json!({"metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}},
                           "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}),
                    false,
                )
                .expect("fresh store");
        }
        Arc::new(lab)
    }

    pub fn version(&self) -> ServerVersion {
        self.version.read().clone()
    }

    pub fn set_version(&self, v: ServerVersion) {
        *self.version.write() = v;
    }

    /// A typed extension slot, created with `init` on first use.
    pub fn extension<T: Any + Send + Sync>(
        &self,
        name: &'static str,
        init: impl FnOnce() -> T,
    ) -> Arc<T> {
        let mut ext = self.extensions.lock();
        let slot = ext
            .entry(name)
            .or_insert_with(|| Arc::new(init()) as Arc<dyn Any + Send + Sync>);
        slot.clone()
            .downcast::<T>()
            .unwrap_or_else(|_| panic!("extension {name} has another type"))
    }

    /// Set the text `kubectl logs` shows for a pod.
    pub fn set_pod_log(&self, ns: &str, name: &str, text: impl Into<String>) {
        self.pod_logs
            .lock()
            .insert((ns.to_string(), name.to_string()), text.into());
    }

    /// Append to a pod's log.
    pub fn append_pod_log(&self, ns: &str, name: &str, text: &str) {
        self.pod_logs
            .lock()
            .entry((ns.to_string(), name.to_string()))
            .or_default()
            .push_str(text);
    }

    /// Load a scenario through the registered plugins. `Ok(false)` when no plugin handles
    /// scenarios yet.
    pub fn load_scenario(
        self: &Arc<Self>,
        plugins: &[Box<dyn LabPlugin>],
        scenario: &str,
    ) -> anyhow::Result<bool> {
        for p in plugins {
            if p.load_scenario(self, scenario)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// A part of the lab beyond the API server (simulation, node shells).
pub trait LabPlugin: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &'static str;
    /// Load `scenario` (a file path or a built-in name). Return `Ok(true)` if handled.
    fn load_scenario(&self, _lab: &Arc<Lab>, _scenario: &str) -> anyhow::Result<bool> {
        Ok(false)
    }
    /// Start background tasks; called inside the tokio runtime.
    fn start(&self, _lab: &Arc<Lab>) {}
    /// Extra HTTP routes (merged into the API server router).
    fn routes(&self) -> Option<axum::Router<Arc<Lab>>> {
        None
    }
}

/// The plugins `upkeep-lab serve` runs. The simulation and node shells register here.
pub fn default_plugins() -> Vec<Box<dyn LabPlugin>> {
    vec![
        Box::new(crate::sim::Sim::default()),
        Box::new(crate::nodeshell::NodeShellPlugin),
    ]
}
