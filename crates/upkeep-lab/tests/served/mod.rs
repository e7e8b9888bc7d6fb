//! Helpers for tests that talk to the lab over HTTPS: the lab served in-process with its
//! plugins started, a kube client and a node-shell client from the kubeconfig it writes.
#![allow(dead_code)]

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use upkeep_lab::nodeshell::client::NodeShellClient;
use upkeep_lab::server::{RunningServer, ServerOptions, start};
use upkeep_lab::{Lab, LabOptions, default_plugins};

pub struct Served {
    pub srv: RunningServer,
    pub kube: Client,
    pub shell: NodeShellClient,
    /// Holds the kubeconfig (and any scenario file written there) for the test's life.
    pub dir: tempfile::TempDir,
}

/// Serves `scenario` (a built-in name, or a scenario document written to a file first) at
/// `time_scale` lab seconds per real second.
pub async fn serve(scenario: Scenario<'_>, time_scale: f64) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let source = match scenario {
        Scenario::Builtin(name) => name.to_string(),
        Scenario::Document(yaml) => {
            let file = dir.path().join("scenario.yaml");
            std::fs::write(&file, yaml).unwrap();
            file.to_str().unwrap().to_string()
        }
    };
    let lab = Lab::new(LabOptions {
        time_scale,
        ..Default::default()
    });
    let plugins = default_plugins();
    assert!(
        lab.load_scenario(&plugins, &source)
            .expect("scenario loads"),
        "a plugin loads scenarios"
    );
    for p in &plugins {
        p.start(&lab);
    }
    let srv = start(lab, ServerOptions::default(), &plugins)
        .await
        .expect("server starts");
    let path = dir.path().join("kubeconfig");
    srv.write_kubeconfig(&path).unwrap();
    let cfg = Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let kube = Client::try_from(cfg).unwrap();
    let shell = NodeShellClient::from_kubeconfig(&path, None)
        .await
        .expect("node-shell client");
    Served {
        srv,
        kube,
        shell,
        dir,
    }
}

pub enum Scenario<'a> {
    Builtin(&'a str),
    Document(&'a str),
}
