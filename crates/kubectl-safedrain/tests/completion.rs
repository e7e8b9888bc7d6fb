//! Shell completion through real kubectl: kubectl (1.26+) finds
//! `kubectl_complete-PLUGIN` on PATH and relays its Cobra-format answer.

use std::ffi::OsString;
use std::process::{Command, Output, Stdio};

use upkeep_testkit::{Lab, bin, bin_dir, code, kubectl_path, show, stderr, stdout};

/// `kubectl __complete PLUGIN WORDS...` with the built completion binaries
/// first on PATH and the lab as the current kubeconfig.
fn complete(lab: &Lab, words: &[&str]) -> Output {
    let path = completion_path();
    Command::new(kubectl_path())
        .env("PATH", path)
        .env("KUBECONFIG", &lab.kubeconfig)
        .arg("__complete")
        .args(words)
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl")
}

/// PATH with the directory of the four plugins and their `kubectl_complete-*`
/// first (kubectl completes only a plugin it finds on PATH; the other
/// packages' binaries are built when missing).
fn completion_path() -> OsString {
    for plugin in ["skew", "safedrain", "upgrade_node", "backup"] {
        bin(&format!("kubectl-{plugin}"));
        bin(&format!("kubectl_complete-{plugin}"));
    }
    let mut path = OsString::from(bin_dir());
    path.push(":");
    path.push(std::env::var_os("PATH").unwrap_or_default());
    path
}

/// The candidate words (before any tab) and the directive line.
fn answer(out: &Output) -> (Vec<String>, String) {
    assert_eq!(code(out), 0, "{}", show(out));
    let text = stdout(out);
    let mut lines: Vec<&str> = text.lines().collect();
    let directive = lines.pop().expect("a directive line").to_string();
    let words = lines
        .iter()
        .map(|l| l.split('\t').next().unwrap_or_default().to_string())
        .collect();
    (words, directive)
}

#[test]
fn kubectl_completes_node_names_from_the_cluster() {
    let lab = Lab::scenario("os-upgrade");
    let nodes: Vec<String> = lab
        .kubectl_ok(["get", "nodes", "-o", "name"])
        .lines()
        .map(|l| l.trim_start_matches("node/").to_string())
        .collect();
    assert!(nodes.len() >= 3, "the scenario has nodes: {nodes:?}");
    for plugin in ["safedrain", "upgrade-node"] {
        let (words, directive) = answer(&complete(&lab, &[plugin, ""]));
        assert_eq!(words, nodes, "{plugin}");
        assert_eq!(directive, ":4", "{plugin}: no file names after a node");
    }
    // A prefix narrows the list.
    let (words, _) = answer(&complete(&lab, &["safedrain", "node0"]));
    assert!(
        !words.is_empty() && words.iter().all(|w| w.starts_with("node0")),
        "{words:?}"
    );
}

#[test]
fn the_connection_flags_typed_on_the_line_are_used() {
    let lab = Lab::scenario("os-upgrade");
    let path = completion_path();
    // No usable KUBECONFIG: only the typed --kubeconfig reaches the lab.
    let out = Command::new(kubectl_path())
        .env("PATH", path)
        .env("KUBECONFIG", lab.dir().join("missing"))
        .args(["__complete", "safedrain", "--kubeconfig"])
        .arg(&lab.kubeconfig)
        .arg("")
        .stdin(Stdio::null())
        .output()
        .expect("run kubectl");
    let (words, _) = answer(&out);
    assert!(words.iter().any(|w| w == "node01"), "{}", show(&out));
}

#[test]
fn flags_values_and_subcommands_complete() {
    let lab = Lab::start();
    let (words, _) = answer(&complete(&lab, &["safedrain", "--dry"]));
    assert_eq!(words, ["--dry-run"]);
    let (words, _) = answer(&complete(&lab, &["skew", "-o", ""]));
    assert_eq!(words, ["table", "json", "yaml"]);
    let (_, directive) = answer(&complete(&lab, &["upgrade-node", "--to", "v1."]));
    assert_eq!(directive, ":36", "kept in calendar order, no files");
    // What the shell offers, descriptions included: the versions to upgrade to (v1.35 among
    // them), skew's subcommands (plan, rules), backup's (etcd).
    let mut transcript = String::new();
    for words in [
        &["upgrade-node", "--to", "v1."][..],
        &["skew", ""],
        &["backup", ""],
    ] {
        let out = complete(&lab, words);
        answer(&out);
        transcript += &format!("$ kubectl __complete {}\n{}", words.join(" "), stdout(&out));
    }
    upkeep_testkit::assert_output!(&lab, "completion_values_and_subcommands", transcript);
}

#[test]
fn each_binary_prints_a_script_for_its_shell() {
    for (plugin, shell, marker) in [
        ("kubectl-safedrain", "bash", "complete -F"),
        ("kubectl-skew", "zsh", "#compdef"),
        ("kubectl-backup", "fish", "complete -c"),
        ("kubectl-upgrade_node", "bash", "complete -F"),
    ] {
        let out = Command::new(bin(plugin))
            .args(["completion", shell])
            .output()
            .expect("run plugin");
        assert_eq!(code(&out), 0, "{}", show(&out));
        // The script is clap_complete's generated code: only the line that registers it
        // with the shell is checked, not its hundred lines of body.
        assert!(
            stdout(&out).contains(marker),
            "{plugin} {shell}: {}",
            show(&out)
        );
    }
    let out = Command::new(bin("kubectl-skew"))
        .args(["completion", "powershell7"])
        .output()
        .expect("run plugin");
    assert_eq!(code(&out), 2, "{}", show(&out));
    upkeep_testkit::assert_output!("completion_unknown_shell", stderr(&out));
}

#[test]
fn a_reader_that_stops_early_is_not_a_crash() {
    // As `| head -1` once head has exited: every write meets a closed pipe.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(bin("kubectl-safedrain"))
        .args(["completion", "bash"])
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .expect("run plugin");
    assert_eq!(code(&out), 0, "{}", show(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr: {}", show(&out));
}
