//! `kubectl backup` end to end: a real etcd (Debian's etcd-server 3.4) with TLS
//! and client-certificate auth, real etcdctl to write keys and cross-check
//! `snapshot status`, and the lab with real kubectl for the resource export.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use upkeep_testkit::etcd::{Etcd, Pki, etcdctl_ok, free_port, require};
use upkeep_testkit::{Lab, assert_output, bin, running_ready, said, stderr, stdout, wait_for};

/// This package's own binary, built by cargo for these tests.
const BACKUP: &str = env!("CARGO_BIN_EXE_kubectl-backup");

fn backup(args: &[&str]) -> Output {
    backup_cmd(args).output().expect("run kubectl-backup")
}

/// `kubectl backup` with only `tools` (a directory of etcd binaries) and the
/// system directories on PATH, so the restore tool it picks is known.
fn backup_with_tools(args: &[&str], tools: &Path) -> Output {
    backup_cmd(args)
        .env("PATH", format!("{}:/usr/bin:/bin", tools.display()))
        .output()
        .expect("run kubectl-backup")
}

fn backup_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new(bin(BACKUP));
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env_remove("ETCDCTL_ENDPOINTS")
        .env_remove("ETCDCTL_CACERT")
        .env_remove("ETCDCTL_CERT")
        .env_remove("ETCDCTL_KEY")
        .stdin(Stdio::null());
    cmd
}

/// A successful command's JSON.
fn json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "kubectl-backup failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        stdout(out),
        stderr(out)
    );
    upkeep_testkit::json(out)
}

/// `text` with each size in kB (`389 kB`) shown as `[SIZE]`, as wide.
fn no_sizes(text: &str) -> String {
    let parts: Vec<&str> = text.split(" kB").collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i + 1 == parts.len() {
            out.push_str(part);
        } else {
            out.push_str(part.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.'));
            out.push_str("[SIZE]");
        }
    }
    out
}

/// The sha256 of `bytes` in hex, by coreutils' sha256sum.
fn sha256(bytes: &[u8]) -> String {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "sha256sum: {}", stderr(&out));
    stdout(&out).split_whitespace().next().unwrap().to_string()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect()
}

const KEYS: usize = 25;

/// Values big enough that the `key` bucket spans several leaf pages under a
/// branch page, and one (300 kB) that needs overflow pages: the snapshot
/// reader meets every page shape bbolt writes.
fn value(i: usize) -> String {
    if i == KEYS - 1 {
        format!("big-{}", "y".repeat(300_000))
    } else {
        format!("value-{i}-{}", "x".repeat(1500))
    }
}

/// `etcdctl put KEY` with the value on stdin (too long for an argument).
fn put(pki: &Pki, endpoint: &str, key: &str, value: &str) {
    use std::io::Write as _;
    let mut child = Command::new(require("etcdctl"))
        .env("ETCDCTL_API", "3")
        .args(pki.client_flags(endpoint))
        .args(["put", key])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run etcdctl put");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(value.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "etcdctl put {key}: {}", stderr(&out));
}

#[test]
fn etcd_snapshot_save_status_restore_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pki = Pki::generate(root);
    let etcd = Etcd::start(
        &pki,
        &root.join("member-a"),
        "a",
        free_port(),
        root.join("etcd-a.log"),
    );

    for i in 0..KEYS {
        put(
            &pki,
            &etcd.endpoint,
            &format!("/registry/test/k{i:02}"),
            &value(i),
        );
    }
    let got: Value = serde_json::from_str(&etcdctl_ok(
        &pki,
        &etcd.endpoint,
        &["get", "/registry/test/k00", "-w", "json"],
    ))
    .unwrap();
    let written_revision = got["header"]["revision"].as_i64().unwrap();
    assert_eq!(
        written_revision,
        KEYS as i64 + 1,
        "a fresh etcd starts at revision 1"
    );

    // save
    let snaps = root.join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    let file = snaps.join("snap.db");
    let flags = pki.client_flags(&etcd.endpoint);
    let mut args = vec!["etcd", "save", file.to_str().unwrap(), "-o", "json"];
    args.extend(flags.iter().map(String::as_str));
    let saved = json(&backup(&args));
    assert_eq!(saved["revision"], written_revision, "{saved}");
    assert_eq!(saved["keyRevisions"], KEYS, "{saved}");
    let meta = std::fs::metadata(&file).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o777,
        0o600,
        "a snapshot holds every Secret"
    );
    assert_eq!(saved["size"], meta.len());
    assert_eq!(
        meta.len() % 512,
        32,
        "database plus its sha256, as etcdctl writes"
    );
    assert!(leftovers(&snaps).is_empty());

    // The human form names the numbers too.
    let mut human = vec!["etcd", "save", file.to_str().unwrap()];
    human.extend(flags.iter().map(String::as_str));
    let human_save = backup(&human);
    assert!(human_save.status.success(), "{}", stderr(&human_save));

    // status, cross-checked against etcdctl's own
    let status = json(&backup(&[
        "etcd",
        "status",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]));
    let theirs: Value = serde_json::from_str(&etcdctl_ok(
        &pki,
        &etcd.endpoint,
        &["snapshot", "status", file.to_str().unwrap(), "-w", "json"],
    ))
    .unwrap();
    for field in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(
            status[field], theirs[field],
            "{field}: ours {status}, etcdctl {theirs}"
        );
    }
    assert_eq!(status["revision"], written_revision);
    assert_eq!(status["buckets"]["key"], KEYS);
    assert!(
        status["integrity"]["verified"]["sha256"].is_string(),
        "{status}"
    );
    // The file's sha256 and etcd's hash differ from run to run: both cover etcd's
    // member records, which name its free ports. The hash is printed without leading
    // zeros, so its width (and the status table's header) varies too, and the size
    // depends on how etcd laid out its pages.
    let sha = status["integrity"]["verified"]["sha256"]
        .as_str()
        .unwrap()
        .to_string();
    let hash = format!("{:x}", status["hash"].as_u64().unwrap());
    let header = format!("HASH{}REVISION", " ".repeat(hash.len().max(4) - 2));
    let no_sha = |text: String| {
        no_sizes(&text)
            .replace(&sha, "[SHA256]")
            .replace(&sha[..12], "[SHA256]")
            .replace(&hash, "[HASH]")
            .replace(&header, "HASH      REVISION")
    };
    assert_output!("etcd_save", no_sha(said(&human_save)));
    let table = backup(&["etcd", "status", file.to_str().unwrap()]);
    assert!(table.status.success(), "{}", stderr(&table));
    assert_output!("etcd_status_table", no_sha(said(&table)));

    // restore into a new directory (no kubeadm manifest here)
    let restored = root.join("restored");
    let peer = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let initial = format!("b={peer_url}");
    let no_manifest = root.join("no-such-manifests/etcd.yaml");
    // etcd 3.4 has no etcdutl: the restore goes through its etcdctl.
    let debian_tools = require("etcdctl").parent().unwrap().to_path_buf();
    let out = backup_with_tools(
        &[
            "etcd",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
            "--name",
            "b",
            "--initial-cluster",
            &initial,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--manifest",
            no_manifest.to_str().unwrap(),
        ],
        &debian_tools,
    );
    assert!(
        out.status.success(),
        "restore failed: {}\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert_output!("etcd_restore_with_etcdctl", said(&out));
    drop(etcd);

    // an etcd started on the restored directory returns the keys
    let etcd_b = Etcd::start(&pki, &restored, "b", peer, root.join("etcd-b.log"));
    let listed: Value = serde_json::from_str(&etcdctl_ok(
        &pki,
        &etcd_b.endpoint,
        &["get", "/registry/test/", "--prefix", "-w", "json"],
    ))
    .unwrap();
    let kvs = listed["kvs"].as_array().cloned().unwrap_or_default();
    assert_eq!(kvs.len(), KEYS, "{listed}");
    let value_of = |i: usize| {
        etcdctl_ok(
            &pki,
            &etcd_b.endpoint,
            &[
                "get",
                &format!("/registry/test/k{i:02}"),
                "--print-value-only",
            ],
        )
    };
    assert_eq!(value_of(7).trim_end(), value(7));
    assert_eq!(value_of(KEYS - 1).trim_end(), value(KEYS - 1));
    assert_eq!(
        listed["header"]["revision"].as_i64().unwrap(),
        written_revision,
        "the restored member continues at the snapshot's revision"
    );

    // restore refuses an existing directory, and leaves it alone
    let existing = root.join("existing");
    std::fs::create_dir(&existing).unwrap();
    std::fs::write(existing.join("keep"), "mine").unwrap();
    let out = backup(&[
        "etcd",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        existing.to_str().unwrap(),
        "--manifest",
        no_manifest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_output!("etcd_restore_refused_existing_dir", said(&out));
    assert_eq!(
        std::fs::read_to_string(existing.join("keep")).unwrap(),
        "mine"
    );
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = backup(&[
        "etcd",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        empty.to_str().unwrap(),
        "--manifest",
        no_manifest.to_str().unwrap(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "even an empty directory: {}",
        stderr(&out)
    );

    // a corrupted snapshot fails status and restore, clearly
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    for b in &mut bytes[middle..middle + 16] {
        *b ^= 0xa5;
    }
    let bad = snaps.join("corrupted.db");
    std::fs::write(&bad, &bytes).unwrap();
    // Both digests vary with the file: the one appended when it was saved, and the
    // one of its damaged data.
    let damaged = sha256(&bytes[..bytes.len() - 32]);
    let digests = |text: String| no_sha(text).replace(&damaged, "[DAMAGED SHA256]");
    let out = backup(&["etcd", "status", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_output!("etcd_status_corrupted", digests(said(&out)));
    let never = root.join("never");
    let out = backup(&[
        "etcd",
        "restore",
        bad.to_str().unwrap(),
        "--data-dir",
        never.to_str().unwrap(),
        "--manifest",
        no_manifest.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_output!("etcd_restore_corrupted", digests(said(&out)));
    assert!(
        !never.exists(),
        "nothing may be restored from a corrupted snapshot"
    );
}

#[test]
fn restore_apply_switches_a_kubeadm_control_plane_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pki = Pki::generate(root);
    let etcd = Etcd::start(
        &pki,
        &root.join("member"),
        "cp1",
        free_port(),
        root.join("etcd.log"),
    );
    etcdctl_ok(&pki, &etcd.endpoint, &["put", "/registry/x", "y"]);
    let file = root.join("snap.db");
    let mut args = vec!["etcd", "save", file.to_str().unwrap(), "-o", "json"];
    let flags = pki.client_flags(&etcd.endpoint);
    args.extend(flags.iter().map(String::as_str));
    json(&backup(&args));

    // A kubeadm layout: /etc/kubernetes/manifests/{etcd,kube-apiserver}.yaml.
    let kube = root.join("kubernetes");
    let manifests = kube.join("manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    let etcd_yaml = upkeep_testkit::etcd::KUBEADM_ETCD_MANIFEST;
    std::fs::write(manifests.join("etcd.yaml"), etcd_yaml).unwrap();
    std::fs::write(manifests.join("kube-apiserver.yaml"), "kind: Pod\n").unwrap();

    // Without --apply: restores, prints the steps, touches no manifest.
    let dry_dir = root.join("etcd-dry");
    let out = backup(&[
        "etcd",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        dry_dir.to_str().unwrap(),
        "--manifest",
        manifests.join("etcd.yaml").to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The steps in order: stop kube-apiserver, restore, point etcd at it, start kube-apiserver.
    assert_output!("etcd_restore_kubeadm_steps", said(&out));
    assert_eq!(
        std::fs::read_to_string(manifests.join("etcd.yaml")).unwrap(),
        etcd_yaml
    );
    assert!(dry_dir.join("member").is_dir());

    // With --apply: all of it, in order, and the old manifest kept outside manifests/.
    // The running member stands in for the etcd the kubelet restarts on the
    // new directory: kube-apiserver comes back only once it answers.
    let new_dir = root.join("etcd-from-backup");
    let etcd_manifest = manifests.join("etcd.yaml");
    let mut args = vec![
        "etcd",
        "restore",
        file.to_str().unwrap(),
        "--data-dir",
        new_dir.to_str().unwrap(),
        "--manifest",
        etcd_manifest.to_str().unwrap(),
        "--apply",
        "--wait-timeout",
        "20s",
        "-o",
        "json",
    ];
    args.extend(flags.iter().map(String::as_str));
    let out = backup(&args);
    let report = json(&out);
    // Each step as it is done, in order; no warning: etcd answered.
    assert_output!("etcd_restore_apply_log", stderr(&out));
    let steps = report["controlPlane"]["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["done"] == true), "{report}");
    // The data directory, its mount and its hostPath all point at the restored directory.
    let edited = std::fs::read_to_string(manifests.join("etcd.yaml")).unwrap();
    assert_output!("etcd_restore_apply_manifest", edited);
    assert!(
        manifests.join("kube-apiserver.yaml").exists(),
        "kube-apiserver is back"
    );
    assert!(
        !kube
            .join("kube-apiserver.yaml.stopped-for-restore")
            .exists()
    );
    let backups: Vec<_> = std::fs::read_dir(&kube)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("etcd.yaml.before-restore-")
        })
        .collect();
    assert_eq!(backups.len(), 1);
    assert_eq!(std::fs::read_to_string(&backups[0]).unwrap(), etcd_yaml);
    let in_manifests: Vec<_> = std::fs::read_dir(&manifests).unwrap().collect();
    assert_eq!(
        in_manifests.len(),
        2,
        "nothing extra for the kubelet to run"
    );
    assert!(new_dir.join("member/snap/db").is_file());
}

#[test]
fn restore_goes_through_etcdutl_on_etcd_3_5() {
    let tools = upkeep_testkit::etcd35_bin();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pki = Pki::generate(root);
    let etcd = Etcd::start_with(
        &tools.join("etcd"),
        &pki,
        &root.join("member-a"),
        "a",
        free_port(),
        root.join("etcd-a.log"),
    );
    let version = etcdctl_ok(&pki, &etcd.endpoint, &["endpoint", "status", "-w", "json"]);
    assert!(version.contains("\"version\":\"3.5.1\""), "{version}");
    for i in 0..5 {
        put(
            &pki,
            &etcd.endpoint,
            &format!("/registry/test/k{i:02}"),
            &value(i),
        );
    }
    let file = root.join("snap.db");
    let flags = pki.client_flags(&etcd.endpoint);
    let mut args = vec!["etcd", "save", file.to_str().unwrap(), "-o", "json"];
    args.extend(flags.iter().map(String::as_str));
    let saved = json(&backup(&args));
    assert_eq!(saved["etcdVersion"], "3.5.1", "{saved}");
    let revision = saved["revision"].as_i64().unwrap();
    // etcdutl's own status agrees with ours.
    let theirs = Command::new(tools.join("etcdutl"))
        .args(["snapshot", "status", file.to_str().unwrap(), "-w", "json"])
        .output()
        .unwrap();
    assert!(theirs.status.success(), "{}", stderr(&theirs));
    let theirs: Value = serde_json::from_str(&stdout(&theirs)).unwrap();
    let ours = json(&backup(&[
        "etcd",
        "status",
        file.to_str().unwrap(),
        "-o",
        "json",
    ]));
    for field in ["hash", "revision", "totalKey", "totalSize"] {
        assert_eq!(
            ours[field], theirs[field],
            "{field}: ours {ours}, etcdutl {theirs}"
        );
    }
    drop(etcd);

    let restored = root.join("restored");
    let peer = free_port();
    let peer_url = format!("http://127.0.0.1:{peer}");
    let initial = format!("b={peer_url}");
    let no_manifest = root.join("no-such-manifests/etcd.yaml");
    let out = backup_with_tools(
        &[
            "etcd",
            "restore",
            file.to_str().unwrap(),
            "--data-dir",
            restored.to_str().unwrap(),
            "--name",
            "b",
            "--initial-cluster",
            &initial,
            "--initial-advertise-peer-urls",
            &peer_url,
            "--manifest",
            no_manifest.to_str().unwrap(),
            "-o",
            "json",
        ],
        &tools,
    );
    let report = json(&out);
    assert_eq!(report["tool"], "etcdutl", "{report}");
    let command = report["command"].as_str().unwrap();
    assert!(
        command.starts_with(&format!(
            "{} snapshot restore",
            tools.join("etcdutl").display()
        )),
        "{command}"
    );
    // etcdutl 3.5.1 predates --bump-revision (etcd-io/etcd#16029): not passed.
    assert_eq!(report["revisionBumped"], false, "{report}");
    assert!(!command.contains("--bump-revision"), "{command}");

    let etcd_b = Etcd::start_with(
        &tools.join("etcd"),
        &pki,
        &restored,
        "b",
        peer,
        root.join("etcd-b.log"),
    );
    let listed: Value = serde_json::from_str(&etcdctl_ok(
        &pki,
        &etcd_b.endpoint,
        &["get", "/registry/test/", "--prefix", "-w", "json"],
    ))
    .unwrap();
    assert_eq!(listed["kvs"].as_array().map(Vec::len), Some(5), "{listed}");
    assert_eq!(listed["header"]["revision"].as_i64().unwrap(), revision);
    let v3 = etcdctl_ok(
        &pki,
        &etcd_b.endpoint,
        &["get", "/registry/test/k03", "--print-value-only"],
    );
    assert_eq!(v3.trim_end(), value(3));
}

fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([format!("-{sig}"), pid.to_string()])
        .status()
        .expect("run kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// Size of the save's temporary file beside `target`, once one exists.
fn part_size(dir: &Path) -> Option<u64> {
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".part"))
        .and_then(|e| e.metadata().ok())
        .map(|m| m.len())
}

/// Waits for `child` to exit, at most `within`; the exit status and how long it took.
fn exit_within(child: &mut Child, within: Duration) -> (std::process::ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, start.elapsed());
        }
        if start.elapsed() > within {
            let _ = child.kill();
            panic!("still running {within:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A save of a large keyspace caught mid-stream: etcd is frozen (SIGSTOP)
/// once the temporary file has data, so the stream is certainly unfinished
/// when the save is interrupted or etcd dies.
#[test]
fn an_interrupted_or_cut_save_leaves_no_file_and_the_older_snapshot_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let pki = Pki::generate(root);
    let etcd = Etcd::start(
        &pki,
        &root.join("member"),
        "a",
        free_port(),
        root.join("etcd.log"),
    );
    // 20,000 keys of 10 kB: about 200 MB of keyspace, written 1 MB at a time
    // (100 keys per transaction keeps etcdctl runs few).
    let big = "v".repeat(10_000);
    for batch in 0..200 {
        let mut txn = String::from("\n");
        for i in 0..100 {
            txn.push_str(&format!("put /registry/bulk/k{batch:03}-{i:03} {big}\n"));
        }
        txn.push_str("\n\n");
        let mut child = Command::new(require("etcdctl"))
            .env("ETCDCTL_API", "3")
            .args(pki.client_flags(&etcd.endpoint))
            .arg("txn")
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(txn.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "etcdctl txn: {}", stderr(&out));
    }
    let keys = etcdctl_ok(
        &pki,
        &etcd.endpoint,
        &["get", "/registry/bulk/", "--prefix", "--keys-only"],
    );
    assert_eq!(keys.lines().filter(|l| !l.is_empty()).count(), 20_000);

    let snaps = root.join("snaps");
    std::fs::create_dir(&snaps).unwrap();
    let target = snaps.join("snap.db");
    let (out, _) = save_to(&pki, &etcd.endpoint, &target);
    assert!(out.status.success(), "{}", stderr(&out));
    let older = std::fs::read(&target).unwrap();
    assert!(older.len() > 200_000_000, "{} bytes", older.len());

    let flags = pki.client_flags(&etcd.endpoint);
    let spawn_save = |ignore_sigint: bool| -> Child {
        let mut args: Vec<String> = vec![
            "etcd".into(),
            "save".into(),
            target.display().to_string(),
            "--dial-timeout".into(),
            "2s".into(),
        ];
        args.extend(flags.iter().cloned());
        let mut cmd = if ignore_sigint {
            // As `cmd &` in a script or nohup starts it: SIGINT ignored.
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg("trap '' INT; exec \"$0\" \"$@\"")
                .arg(bin(BACKUP));
            c
        } else {
            Command::new(bin(BACKUP))
        };
        cmd.args(&args)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let freeze_midway = |child: &mut Child| {
        let start = Instant::now();
        while part_size(&snaps).unwrap_or(0) == 0 {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the save ended before streaming"
            );
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no data streamed within 30s"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        signal(etcd.child.id(), "STOP");
        let got = part_size(&snaps).unwrap();
        assert!(got < older.len() as u64, "caught mid-stream: {got} bytes");
    };

    for (sig, ignore_sigint) in [("INT", false), ("TERM", false), ("INT", true)] {
        let mut child = spawn_save(ignore_sigint);
        freeze_midway(&mut child);
        signal(child.id(), sig);
        let (status, took) = exit_within(&mut child, Duration::from_secs(1));
        signal(etcd.child.id(), "CONT");
        let out = child.wait_with_output().unwrap();
        let err = stderr(&out);
        assert!(!status.success(), "SIG{sig}: {err}");
        let name = format!(
            "etcd_save_interrupted_by_sig{}{}",
            sig.to_lowercase(),
            if ignore_sigint {
                "_ignored_by_shell"
            } else {
                ""
            }
        );
        assert_output!(name.as_str(), said(&out));
        assert!(took < Duration::from_secs(1), "SIG{sig} took {took:?}");
        assert!(
            leftovers(&snaps).is_empty(),
            "SIG{sig} left {:?}",
            leftovers(&snaps)
        );
        assert!(
            std::fs::read(&target).unwrap() == older,
            "SIG{sig}: the older snapshot changed"
        );
    }

    // etcd killed while streaming: the stream is cut, nothing is left.
    let mut child = spawn_save(false);
    freeze_midway(&mut child);
    signal(etcd.child.id(), "KILL");
    let (status, _) = exit_within(&mut child, Duration::from_secs(15));
    let out = child.wait_with_output().unwrap();
    assert_eq!(status.code(), Some(2), "{}", stderr(&out));
    assert_output!("etcd_save_stream_cut", said(&out));
    assert!(leftovers(&snaps).is_empty(), "left {:?}", leftovers(&snaps));
    assert!(std::fs::read(&target).unwrap() == older);

    // A .part left by a run killed outright is reported, and removed on request.
    let stale = snaps.join(".snap.db.X1Y2Z3.part");
    std::fs::write(&stale, b"half a snapshot").unwrap();
    let (out, _) = save_to(&pki, &etcd.endpoint, &target);
    assert_output!("etcd_save_stale_part_reported", said(&out));
    assert!(stale.exists(), "kept without the flag");
    let mut args = vec![
        "etcd",
        "save",
        target.to_str().unwrap(),
        "--remove-stale-parts",
        "--dial-timeout",
        "1s",
    ];
    args.extend(flags.iter().map(String::as_str));
    let out = backup(&args);
    assert_output!("etcd_save_stale_part_removed", said(&out));
    assert!(!stale.exists());

    // A directory as the target fails before etcd is asked for anything.
    let out = backup(&["etcd", "save", snaps.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_output!("etcd_save_refused_directory", said(&out));
}

fn save_to(pki: &Pki, endpoint: &str, file: &Path) -> (Output, Duration) {
    let mut args = vec![
        "etcd",
        "save",
        file.to_str().unwrap(),
        "--dial-timeout",
        "1s",
    ];
    let flags = pki.client_flags(endpoint);
    args.extend(flags.iter().map(String::as_str));
    let start = Instant::now();
    let out = backup(&args);
    (out, start.elapsed())
}

#[test]
fn an_unreachable_endpoint_fails_clearly_and_leaves_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let pki = Pki::generate(tmp.path());
    let file = tmp.path().join("snap.db");

    // Nothing listens: refused at once, said so.
    let refused = format!("https://127.0.0.1:{}", free_port());
    let (out, took) = save_to(&pki, &refused, &file);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_output!("etcd_save_connection_refused", said(&out));

    // Something accepts TCP but never answers: the dial timeout ends it.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("https://{}", silent.local_addr().unwrap());
    let (out, took) = save_to(&pki, &endpoint, &file);
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_output!("etcd_save_no_answer", said(&out));
    drop(silent);

    // An unwritable directory (even root cannot create files in /proc) fails
    // before etcd is contacted at all: the endpoint here would be refused.
    let unwritable = Path::new("/proc/upkeep-snap.db");
    let (out, _) = save_to(&pki, &refused, unwritable);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Said before etcd is contacted: nothing about reaching it.
    assert_output!("etcd_save_unwritable_dir", said(&out));

    assert!(!file.exists());
    let left: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("snap.db"))
        .collect();
    assert!(left.is_empty(), "partial files left: {left:?}");
}

#[test]
fn resource_export_matches_the_lab_per_kind() {
    let lab = Lab::start();
    lab.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: prod}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: flags, namespace: default}
data: {beta: "true"}
---
apiVersion: v1
kind: Secret
metadata: {name: db-password, namespace: shop}
stringData: {password: hunter2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"#,
    );
    // More ConfigMaps than one page (500) holds, so the export must follow
    // the continue token.
    let many: Vec<Value> = (0..510)
        .map(|i| {
            serde_json::json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("page-{i:03}"), "namespace": "default"},
                "data": {"i": i.to_string()}
            })
        })
        .collect();
    let docs: Vec<String> = many.iter().map(Value::to_string).collect();
    lab.apply(&docs.join("\n---\n"));

    // What kubectl lists (`api-resources --verbs=list`), counted before and
    // after the export: controllers may still be creating objects, so a
    // kind's export must lie between the two counts (equal them when stable).
    let listable: Vec<String> = lab
        .kubectl_ok(["api-resources", "--verbs=list", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect();
    let count = |resource: &str| {
        lab.get_json([resource, "-A"])["items"]
            .as_array()
            .map_or(0, Vec::len) as u64
    };
    let before: Vec<u64> = listable.iter().map(|r| count(r)).collect();

    let dir = lab.dir().join("export");
    let out = lab
        .plugin(BACKUP)
        .args(["resources", dir.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let index = json(&out);
    let after: Vec<u64> = listable.iter().map(|r| count(r)).collect();
    let exported = index["exported"].as_array().unwrap();
    let qualified = |e: &Value| {
        let resource = e["resource"].as_str().unwrap();
        match e["group"].as_str().unwrap() {
            "" => resource.to_string(),
            group => format!("{resource}.{group}"),
        }
    };
    let mut ours: Vec<String> = exported.iter().map(qualified).collect();
    ours.push("secrets".into()); // skipped without --include-secrets
    ours.sort();
    let mut theirs = listable.clone();
    theirs.sort();
    assert_eq!(
        ours, theirs,
        "every listable resource type, not only the `all` category"
    );
    assert!(index["failed"].as_array().unwrap().is_empty(), "{index}");
    for e in exported {
        let name = qualified(e);
        let i = listable.iter().position(|r| *r == name).unwrap();
        let (lo, hi) = (before[i].min(after[i]), before[i].max(after[i]));
        let n = e["count"].as_u64().unwrap();
        assert!(
            (lo..=hi).contains(&n),
            "{name}: exported {n}, kubectl listed {} before and {} after",
            before[i],
            after[i]
        );
        // Files on disk agree with the index.
        let group = e["group"].as_str().unwrap();
        let kind_dir = dir
            .join(if group.is_empty() { "core" } else { group })
            .join(e["kind"].as_str().unwrap());
        assert_eq!(
            walk(&kind_dir).len() as u64,
            n,
            "{name}: files under {}",
            kind_dir.display()
        );
    }
    let count_of = |kind: &str| {
        exported
            .iter()
            .find(|e| e["kind"] == kind && e["group"] == "")
            .map(|e| e["count"].as_u64().unwrap())
    };
    assert!(count_of("ConfigMap").unwrap() >= 512, "all pages followed");
    assert!(dir.join("core/ConfigMap/default/page-509.yaml").is_file());
    assert!(
        count_of("Secret").is_none(),
        "secrets only with --include-secrets"
    );
    assert!(
        index["skipped"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["kind"] == "Secret"),
        "{index}"
    );
    assert!(!dir.join("core/Secret").exists());
    // The exported files: the object as applied, without managedFields,
    // resourceVersion, uid, creationTimestamp or status.
    let cm = std::fs::read_to_string(dir.join("core/ConfigMap/shop/settings.yaml")).unwrap();
    assert_output!("export_configmap", cm);
    let deploy = std::fs::read_to_string(dir.join("apps/Deployment/shop/web.yaml")).unwrap();
    assert_output!("export_deployment", deploy);
    assert!(dir.join("core/Namespace/_cluster/shop.yaml").is_file());
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(on_disk["totalObjects"], index["totalObjects"]);

    // A non-empty directory is refused unless --overwrite.
    let again = lab
        .plugin(BACKUP)
        .args(["resources", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1), "{}", stderr(&again));
    assert_output!(&lab, "export_refused_non_empty_dir", said(&again));

    // A resource type the server refuses to list (403) is named in the index
    // with its code, the rest is still exported, and the exit status is 2.
    let fault = serde_json::json!({"rules": [{
        "verb": "list", "resource": "configmaps", "code": 403,
        "message": "configmaps is forbidden: test", "count": 1
    }]});
    lab.kubectl_stdin(
        ["create", "--raw", "/lab/v1/faults", "-f", "-"],
        &fault.to_string(),
    )
    .expect("inject a 403 for listing configmaps");
    let partial = lab.dir().join("export-partial");
    let out = lab
        .plugin(BACKUP)
        .args(["resources", partial.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // Events are still being recorded while the export runs: their count is left out.
    let progress: String = stderr(&out)
        .lines()
        .filter(|l| !l.starts_with("events: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_output!(&lab, "export_list_forbidden", progress);
    let index: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let failed = index["failed"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{index}");
    assert_eq!(failed[0]["what"], "configmaps");
    assert_eq!(failed[0]["code"], 403);
    assert!(failed[0]["error"].as_str().unwrap().contains("forbidden"));
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(partial.join("index.json")).unwrap())
            .unwrap();
    assert_eq!(on_disk["failed"], index["failed"]);
    assert!(!partial.join("core/ConfigMap").exists());
    assert!(partial.join("apps/Deployment/shop/web.yaml").is_file());

    // With --include-secrets: the Secret, mode 0600.
    let with_secrets = lab.dir().join("export-secrets");
    let out = lab
        .plugin(BACKUP)
        .args([
            "resources",
            with_secrets.to_str().unwrap(),
            "--include-secrets",
            "-o",
            "json",
        ])
        .output()
        .unwrap();
    let index = json(&out);
    let secrets_listed = lab.get_json(["secrets", "-A"])["items"]
        .as_array()
        .map_or(0, Vec::len);
    let secret_entry = index["exported"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "Secret")
        .cloned()
        .expect("secrets exported");
    assert_eq!(secret_entry["count"], secrets_listed);
    let secret_file = with_secrets.join("core/Secret/shop/db-password.yaml");
    let mode = std::fs::metadata(&secret_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// A lab with two worker nodes and nothing else on them.
fn lab_with_nodes() -> (tempfile::TempDir, Lab) {
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("two-nodes.yaml");
    std::fs::write(
        &scenario,
        r"apiVersion: lab.upkeep.dev/v1alpha1
kind: LabScenario
metadata:
  name: two-nodes
spec:
  version: v1.34.2
  timing:
    podStartSeconds: 1
  nodes:
  - name: node{index:02}
    count: 2
    kubeletVersion: v1.34.2
",
    )
    .unwrap();
    let lab = Lab::scenario(scenario.to_str().unwrap());
    (dir, lab)
}

#[test]
fn a_resource_export_restores_into_an_empty_lab() {
    let (_s, source) = lab_with_nodes();
    source.apply(
        r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {mode: prod}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
"#,
    );
    let web_running = |lab: &Lab| {
        lab.pods()
            .iter()
            .filter(|p| p["metadata"]["namespace"] == "shop" && running_ready(p))
            .filter(|p| p["metadata"]["labels"]["app"] == "web")
            .count()
    };
    wait_for("the source's web pods", Duration::from_secs(60), || {
        (web_running(&source) == 2).then_some(())
    });

    // Unreachable server: exits with an error and creates nothing.
    let nowhere = source.dir().join("nowhere");
    let out = source
        .plugin(BACKUP)
        .args(["resources", nowhere.to_str().unwrap()])
        .args(["--server", &format!("https://127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_output!(&source, "export_server_unreachable", said(&out));
    assert!(
        !nowhere.exists(),
        "nothing is created before discovery succeeds"
    );
    // A rejected token: the same.
    let out = source
        .plugin(BACKUP)
        .args(["resources", nowhere.to_str().unwrap()])
        .args(["--token", "not-a-token-the-lab-knows"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_output!(&source, "export_token_rejected", said(&out));
    assert!(
        !nowhere.exists(),
        "nothing is created when the token is rejected"
    );

    let dir = source.dir().join("export");
    let index = json(
        &source
            .plugin(BACKUP)
            .args(["resources", dir.to_str().unwrap(), "-o", "json"])
            .output()
            .unwrap(),
    );

    let (_t, target) = lab_with_nodes();
    assert_eq!(web_running(&target), 0, "the target starts empty");
    let out = target
        .plugin(BACKUP)
        .args(["resources", "restore", dir.to_str().unwrap(), "-o", "json"])
        .output()
        .unwrap();
    let report = json(&out);
    assert!(report["refused"].as_array().unwrap().is_empty(), "{report}");
    let kinds = report["kinds"].as_array().unwrap();
    let kind = |resource: &str| {
        kinds
            .iter()
            .find(|k| k["resource"] == resource)
            .unwrap_or_else(|| panic!("{resource} not in the report: {report}"))
            .clone()
    };
    // Every exported object is accounted for, per kind.
    for e in index["exported"].as_array().unwrap() {
        let n = e["count"].as_u64().unwrap();
        if n == 0 {
            continue;
        }
        let resource = match e["group"].as_str().unwrap() {
            "" => e["resource"].as_str().unwrap().to_string(),
            g => format!("{}.{g}", e["resource"].as_str().unwrap()),
        };
        let k = kind(&resource);
        let total: u64 = [
            "created",
            "skipped",
            "overwritten",
            "leftToControllers",
            "notRestorable",
            "refused",
        ]
        .iter()
        .map(|f| k[f].as_u64().unwrap())
        .sum();
        assert_eq!(total, n, "{resource}: exported {n}, report {k}");
    }
    assert_eq!(kind("deployments.apps")["created"], 1, "{report}");
    assert_eq!(kind("services")["created"], 1, "{report}");
    assert_eq!(kind("replicasets.apps")["leftToControllers"], 1, "{report}");
    assert_eq!(kind("replicasets.apps")["created"], 0, "{report}");
    assert_eq!(
        kind("pods")["created"],
        0,
        "pods are the ReplicaSet's: {report}"
    );
    assert!(
        kind("namespaces")["created"].as_u64().unwrap() >= 1,
        "{report}"
    );
    let settings = kind("configmaps");
    assert!(settings["created"].as_u64().unwrap() >= 1, "{report}");

    // The workload comes back and runs; its data is the exported data.
    wait_for("the restored web pods", Duration::from_secs(60), || {
        (web_running(&target) == 2).then_some(())
    });
    let cm = target.get_json(["configmap", "settings", "-n", "shop"]);
    assert_eq!(cm["data"]["mode"], "prod");

    // Again: everything is there now, so nothing is created.
    let again = json(
        &target
            .plugin(BACKUP)
            .args(["resources", "restore", dir.to_str().unwrap(), "-o", "json"])
            .output()
            .unwrap(),
    );
    for k in again["kinds"].as_array().unwrap() {
        assert_eq!(k["created"], 0, "{k}");
    }
    assert_eq!(
        again["kinds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["resource"] == "deployments.apps")
            .unwrap()["skipped"],
        1
    );
}
