//! The kubectl-standard connection flags every plugin shares
//! (`upkeep::connect`), exercised through the built `kubectl-skew` against
//! the lab: merged KUBECONFIG paths, the flag winning over the variable,
//! contexts, and `--server`/`--token`/`--certificate-authority` without any
//! kubeconfig.

use std::path::Path;
use std::process::{Command, Output};

use base64::Engine as _;
use serde_json::Value;
use upkeep_testkit::{Lab, LabOptions, assert_output, bin, code, show, stdout};

/// This package's own binary, built by cargo for these tests.
const SKEW: &str = env!("CARGO_BIN_EXE_kubectl-skew");

const VERSION: &str = "v1.34.1";

fn lab() -> Lab {
    Lab::with(LabOptions {
        version: Some(VERSION.into()),
        ..Default::default()
    })
}

/// kubectl-skew with no kubeconfig of its own: HOME and KUBECONFIG are the
/// caller's to set, so nothing on this machine leaks in.
fn skew(home: &Path) -> Command {
    let mut cmd = Command::new(bin(SKEW));
    cmd.env_clear()
        .env("HOME", home)
        .env("NO_COLOR", "1")
        .args(["-o", "json", "--kubectl-version", "v1.34.0"]);
    cmd
}

/// The check ran against the lab: exit 0 (nothing violates) and the
/// apiserver version the lab serves.
fn reached_the_lab(out: &Output) {
    assert_eq!(code(out), 0, "{}", show(out));
    let doc: Value = serde_json::from_str(&stdout(out)).expect("JSON");
    assert_eq!(
        doc["apiserver"]["served"], VERSION,
        "the report names the lab's apiserver: {doc:#}"
    );
}

fn kubeconfig(lab: &Lab) -> Value {
    let text = std::fs::read_to_string(&lab.kubeconfig).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

fn token(kc: &Value, user: &str) -> String {
    kc["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["name"] == user)
        .and_then(|u| u["user"]["token"].as_str())
        .unwrap_or_else(|| panic!("the lab's kubeconfig has a token for {user}"))
        .to_string()
}

fn server(kc: &Value) -> String {
    kc["clusters"][0]["cluster"]["server"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A kubeconfig with one unrelated context (nothing listens on its server)
/// and no current-context.
fn other_kubeconfig(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("other.yaml");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: http://127.0.0.1:9\n\
         users:\n- name: other\n  user:\n    token: nothing\ncontexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n",
    )
    .unwrap();
    path
}

#[test]
fn kubeconfig_paths_in_the_variable_are_merged() {
    let lab = lab();
    let home = tempfile::tempdir().unwrap();
    let other = other_kubeconfig(home.path());
    let joined = std::env::join_paths([other.as_path(), lab.kubeconfig.as_path()]).unwrap();

    // The lab's file, second in the list, supplies the current context.
    let out = skew(home.path())
        .env("KUBECONFIG", &joined)
        .output()
        .unwrap();
    reached_the_lab(&out);

    // A context from the second file can be chosen by name...
    let out = skew(home.path())
        .env("KUBECONFIG", &joined)
        .args(["--context", "readonly"])
        .output()
        .unwrap();
    reached_the_lab(&out);

    // ...and one from the first file too: it points where nothing answers.
    let out = skew(home.path())
        .env("KUBECONFIG", &joined)
        .args(["--context", "other", "--request-timeout", "5s"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    // The error names the server it tried, 127.0.0.1:9.
    assert_output!(&lab, "connect_a_context_where_nothing_answers", show(&out));
}

#[test]
fn the_kubeconfig_flag_wins_over_the_variable() {
    let lab = lab();
    let home = tempfile::tempdir().unwrap();
    let other = other_kubeconfig(home.path());
    let out = skew(home.path())
        .env("KUBECONFIG", &other)
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .output()
        .unwrap();
    reached_the_lab(&out);
}

#[test]
fn an_unknown_context_is_named_with_the_known_ones() {
    let lab = lab();
    let home = tempfile::tempdir().unwrap();
    let out = skew(home.path())
        .arg("--kubeconfig")
        .arg(&lab.kubeconfig)
        .args(["--context", "prod"])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    // Names "prod" and the contexts there are: upkeep-lab, readonly.
    assert_output!(&lab, "connect_an_unknown_context", show(&out));
}

#[test]
fn no_kubeconfig_at_all_says_how_to_give_one() {
    let home = tempfile::tempdir().unwrap();
    let out = skew(home.path()).output().unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    // Says how to give one (--kubeconfig among them).
    assert_output!("connect_no_kubeconfig_at_all", show(&out));

    // One that is named and missing is named once.
    let out = skew(home.path())
        .arg("--kubeconfig")
        .arg(home.path().join("missing.yaml"))
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert_output!("connect_a_missing_kubeconfig_file", show(&out));
}

#[test]
fn server_token_and_certificate_authority_flags_need_no_kubeconfig() {
    let lab = lab();
    let kc = kubeconfig(&lab);
    let home = tempfile::tempdir().unwrap();
    let server = server(&kc);
    let token = token(&kc, "readonly");

    // The lab's certificate is self-signed: without its CA the TLS check fails...
    let out = skew(home.path())
        .args(["--server", &server, "--token", &token])
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert_output!(
        &lab,
        "connect_a_self_signed_server_without_its_ca",
        show(&out)
    );

    // ...with --insecure-skip-tls-verify it is not checked...
    let out = skew(home.path())
        .args(["--server", &server, "--token", &token])
        .arg("--insecure-skip-tls-verify")
        .output()
        .unwrap();
    reached_the_lab(&out);

    // ...and with --certificate-authority it is checked and passes.
    let ca = base64::engine::general_purpose::STANDARD
        .decode(
            kc["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .unwrap(),
        )
        .unwrap();
    let ca_file = home.path().join("ca.crt");
    std::fs::write(&ca_file, ca).unwrap();
    let out = skew(home.path())
        .args(["--server", &server, "--token", &token])
        .arg("--certificate-authority")
        .arg(&ca_file)
        .output()
        .unwrap();
    reached_the_lab(&out);

    // A wrong token is refused by the server: exit 2, said plainly.
    let out = skew(home.path())
        .args(["--server", &server, "--token", "not-a-token"])
        .arg("--certificate-authority")
        .arg(&ca_file)
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    assert_output!(&lab, "connect_a_wrong_token", show(&out));
}

/// A token that begins with `-` is a value, as in kubectl (pflag takes the next word
/// whatever it starts with): the server judges it, the argument parser does not refuse it.
#[test]
fn a_token_beginning_with_a_dash_is_passed_to_the_server() {
    let lab = lab();
    let kc = kubeconfig(&lab);
    let home = tempfile::tempdir().unwrap();
    let out = skew(home.path())
        .args(["--server", &server(&kc), "--token", "-Lnot-a-token"])
        .arg("--insecure-skip-tls-verify")
        .output()
        .unwrap();
    assert_eq!(code(&out), 2, "{}", show(&out));
    // Unauthorized, from the server: not "unexpected argument" from the parser.
    assert_output!(&lab, "connect_a_token_beginning_with_a_dash", show(&out));
}
