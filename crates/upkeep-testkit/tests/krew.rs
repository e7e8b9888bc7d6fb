//! Every krew manifest in krew/plugins passes krew's own validation rules
//! (kubernetes-sigs/krew internal/index/validation/validate.go) and points at
//! what the release archive really contains (scripts/package.sh).

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::Value;
use upkeep_testkit::workspace_root;

const API_VERSION: &str = "krew.googlecontainertools.github.com/v1alpha2";
// validate.go: names Windows reserves for devices cannot be plugin names.
const WINDOWS_RESERVED: &[&str] = &[
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];
// The platforms krew supports (validate.go isSupportedAPI / the krew docs).
const OSES: &[&str] = &["linux", "darwin", "windows"];
const ARCHES: &[&str] = &["amd64", "arm64", "arm", "386", "ppc64le", "s390x"];

fn manifests() -> Vec<(PathBuf, Value)> {
    let dir = workspace_root().join("krew/plugins");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("krew/plugins exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: Value = serde_saphyr::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
            out.push((path, value));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The errors krew's validation would report for one manifest.
fn validate(file_stem: &str, m: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    if m["apiVersion"] != API_VERSION {
        errs.push(format!("apiVersion must be {API_VERSION}"));
    }
    if m["kind"] != "Plugin" {
        errs.push("kind must be Plugin".into());
    }
    let name = m["metadata"]["name"].as_str().unwrap_or("");
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errs.push(format!("name {name:?} must match ^[\\w-]+$"));
    }
    if WINDOWS_RESERVED.contains(&name.to_uppercase().as_str()) {
        errs.push(format!("name {name:?} is a reserved Windows name"));
    }
    if name != file_stem {
        errs.push(format!(
            "name {name:?} must equal the file name {file_stem:?}"
        ));
    }
    let spec = &m["spec"];
    let short = spec["shortDescription"].as_str().unwrap_or("");
    if short.trim().is_empty() || short.contains('\n') {
        errs.push("shortDescription must be one non-empty line".into());
    }
    let version = spec["version"].as_str().unwrap_or("");
    match version.strip_prefix('v') {
        Some(v) if semver::Version::parse(v).is_ok() => {}
        _ => errs.push(format!(
            "version {version:?} must be semver with a v prefix"
        )),
    }
    let platforms = spec["platforms"].as_array().cloned().unwrap_or_default();
    if platforms.is_empty() {
        errs.push("at least one platform is required".into());
    }
    let mut seen = BTreeSet::new();
    for (i, p) in platforms.iter().enumerate() {
        for key in ["uri", "bin"] {
            if p[key].as_str().unwrap_or("").is_empty() {
                errs.push(format!("platform {i}: {key} is required"));
            }
        }
        let sha = p["sha256"].as_str().unwrap_or("");
        if sha.len() != 64 || !sha.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
            errs.push(format!(
                "platform {i}: sha256 {sha:?} must match ^[a-f0-9]{{64}}$"
            ));
        }
        if let Some(files) = p.get("files") {
            let files = files.as_array().cloned().unwrap_or_default();
            if files.is_empty() {
                errs.push(format!(
                    "platform {i}: files, when given, must not be empty"
                ));
            }
            for f in &files {
                if f["from"].as_str().unwrap_or("").is_empty()
                    || f["to"].as_str().unwrap_or("").is_empty()
                {
                    errs.push(format!("platform {i}: every file needs from and to"));
                }
            }
        }
        let labels = p["selector"]["matchLabels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let exprs = p["selector"]["matchExpressions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if labels.is_empty() && exprs.is_empty() {
            errs.push(format!("platform {i}: selector must not be empty"));
        }
        for key in labels.keys() {
            if key != "os" && key != "arch" {
                errs.push(format!(
                    "platform {i}: selector key {key:?} is not os or arch"
                ));
            }
        }
        let os = labels.get("os").and_then(Value::as_str).unwrap_or("");
        let arch = labels.get("arch").and_then(Value::as_str).unwrap_or("");
        if !OSES.contains(&os) || !ARCHES.contains(&arch) {
            errs.push(format!(
                "platform {i}: {os}/{arch} is not a supported platform"
            ));
        }
        if !seen.insert((os.to_string(), arch.to_string())) {
            errs.push(format!(
                "platform {i}: selector {os}/{arch} overlaps another"
            ));
        }
        if os == "windows" && !p["bin"].as_str().unwrap_or("").ends_with(".exe") {
            errs.push(format!("platform {i}: a Windows bin must end in .exe"));
        }
    }
    errs
}

#[test]
fn every_manifest_passes_krew_validation() {
    let all = manifests();
    let names: BTreeSet<_> = all
        .iter()
        .map(|(p, _)| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        ["backup", "safedrain", "skew", "upgrade-node"]
            .into_iter()
            .map(String::from)
            .collect(),
        "one manifest per plugin"
    );
    for (path, m) in &all {
        let stem = path.file_stem().unwrap().to_string_lossy();
        let errs = validate(&stem, m);
        assert!(errs.is_empty(), "{}: {errs:#?}", path.display());
    }
}

#[test]
fn validation_catches_what_krew_rejects() {
    let (_, good) = manifests().into_iter().next().expect("a manifest");
    let stem = good["metadata"]["name"].as_str().unwrap().to_string();
    assert!(validate(&stem, &good).is_empty());

    let mut bad = good.clone();
    bad["spec"]["platforms"][0]["sha256"] = Value::from("ABC");
    assert!(validate(&stem, &bad).iter().any(|e| e.contains("sha256")));
    let mut bad = good.clone();
    bad["spec"]["version"] = Value::from("0.1.0");
    assert!(validate(&stem, &bad).iter().any(|e| e.contains("v prefix")));
    let mut bad = good.clone();
    bad["spec"]["platforms"][0]["selector"]["matchLabels"]["distro"] = Value::from("debian");
    assert!(validate(&stem, &bad).iter().any(|e| e.contains("distro")));
    assert!(
        validate("other-name", &good)
            .iter()
            .any(|e| e.contains("file name"))
    );
    let mut bad = good.clone();
    bad["spec"]["shortDescription"] = Value::from("two\nlines");
    assert!(
        validate(&stem, &bad)
            .iter()
            .any(|e| e.contains("one non-empty line"))
    );
}

/// kubectl finds `kubectl upgrade-node` in the file `kubectl-upgrade_node`:
/// each manifest's bin must be a binary the workspace builds, and the
/// archive (scripts/package.sh) must ship it and LICENSE.
#[test]
fn manifests_point_at_what_the_archive_ships() {
    let package = std::fs::read_to_string(workspace_root().join("scripts/package.sh")).unwrap();
    for (path, m) in manifests() {
        let name = m["metadata"]["name"].as_str().unwrap();
        let expected_bin = format!("kubectl-{}", name.replace('-', "_"));
        for p in m["spec"]["platforms"].as_array().unwrap() {
            assert_eq!(p["bin"], expected_bin.as_str(), "{}", path.display());
            let froms: Vec<&str> = p["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["from"].as_str().unwrap())
                .collect();
            assert!(
                froms.contains(&"LICENSE"),
                "{}: must extract LICENSE",
                path.display()
            );
            assert!(froms.contains(&expected_bin.as_str()), "{}", path.display());
            assert!(
                package.contains(&expected_bin),
                "scripts/package.sh does not ship {expected_bin}"
            );
        }
    }
    assert!(workspace_root().join("LICENSE").exists());
}
