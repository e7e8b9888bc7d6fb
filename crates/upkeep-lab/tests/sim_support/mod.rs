//! Helpers for the simulation tests: an in-process lab with the simulation running, and
//! waiting on conditions with deadlines.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use upkeep_lab::scenario::Scenario;
use upkeep_lab::sim::{self, Ctx, Sim};
use upkeep_lab::store::Obj;
use upkeep_lab::{Lab, LabOptions, LabPlugin, ListQuery, resources};

pub struct TestLab {
    pub lab: Arc<Lab>,
    pub ctx: Arc<Ctx>,
}

/// A lab running `yaml` (a scenario document set) at `scale` lab seconds per real second.
pub fn start(yaml: &str, scale: f64) -> TestLab {
    let lab = Lab::new(LabOptions {
        time_scale: scale,
        ..Default::default()
    });
    let sim = Sim::default();
    let sc = Scenario::parse("test", yaml).expect("scenario parses");
    let settle = sc.apply(&lab).expect("scenario applies");
    let ctx = sim.ctx(&lab);
    if settle {
        ctx.settle(30);
    }
    sim.start(&lab);
    TestLab { lab, ctx }
}

/// Poll `f` until it returns Some, failing with `what` after `secs` real seconds.
pub async fn wait<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestLab {
    pub fn pods(&self, ns: &str) -> Vec<Obj> {
        self.lab
            .store
            .list(&resources::POD, &ListQuery::in_namespace(ns))
            .0
    }
    pub fn pods_with(&self, ns: &str, label: &str) -> Vec<Obj> {
        let sel = upkeep_lab::selector::LabelSelector::parse(label).expect("selector");
        self.lab
            .store
            .list(&resources::POD, &ListQuery::in_namespace(ns).labels(sel))
            .0
    }
    /// Waits until exactly `count` pods of `ns` (matching `label`, when given)
    /// are Running, Ready and not terminating.
    pub async fn wait_ready(
        &self,
        what: &str,
        secs: u64,
        ns: &str,
        label: Option<&str>,
        count: usize,
    ) {
        wait(what, secs, || {
            let pods = match label {
                Some(l) => self.pods_with(ns, l),
                None => self.pods(ns),
            };
            (pods.iter().filter(|p| running_ready(p)).count() == count).then_some(())
        })
        .await;
    }
    pub fn get(&self, res: &'static resources::Resource, ns: &str, name: &str) -> Option<Obj> {
        self.lab.store.get(res, ns, name)
    }
    pub fn create(&self, res: &'static resources::Resource, obj: Value) -> Obj {
        let ns = obj
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.lab.store.create(res, &ns, obj, false).expect("create")
    }
}

pub fn running_ready(p: &Value) -> bool {
    sim::util::phase(p) == "Running" && sim::util::pod_ready(p) && !sim::util::terminating(p)
}

/// A small cluster: a tainted control plane and `workers` workers.
pub fn cluster(workers: usize, extra: &str) -> String {
    format!(
        "apiVersion: lab.upkeep.dev/v1alpha1\nkind: LabScenario\nmetadata: {{name: t}}\nspec:\n  version: v1.34.2\n  timing: {{podStartSeconds: 1, terminationCapSeconds: 1}}\n  nodes:\n  - name: controlplane\n    role: control-plane\n  - name: node{{index:02}}\n    count: {workers}\n{extra}"
    )
}
