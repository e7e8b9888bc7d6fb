//! Pointing a kubeadm etcd static pod at a restored data directory: a pure
//! edit of `/etc/kubernetes/manifests/etcd.yaml`.
//!
//! kubeadm writes the data directory in three places that must agree
//! (kubernetes/kubernetes `cmd/kubeadm/app/phases/etcd/local.go`
//! `GetEtcdPodSpec`: the `--data-dir` flag, the `etcd-data` hostPath volume,
//! and its mount in the container). The Kubernetes task "Operating etcd
//! clusters for Kubernetes" restores by pointing the hostPath at the new
//! directory; changing all three keeps the flag, the mount and the host
//! directory naming the same path, so nothing in the file still names the
//! old directory.

use anyhow::{Context as _, Result, bail, ensure};
use serde::Serialize;
use serde_json::Value;

/// The kubeadm volume that holds etcd's data.
pub const DATA_VOLUME: &str = "etcd-data";

/// One field the edit changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub field: String,
    pub from: String,
    pub to: String,
}

/// The edited manifest and what changed in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestEdit {
    pub text: String,
    pub changes: Vec<Change>,
}

/// Where the three paths live in the parsed manifest.
struct Locations {
    container: usize,
    /// `command` or `args`, and the index of the `--data-dir` item.
    flag: Option<(&'static str, usize, String)>,
    volume: (usize, String),
    mount: Option<(usize, String)>,
}

fn locate(pod: &Value) -> Result<Locations> {
    let spec = pod.get("spec").context("the manifest has no spec")?;
    let containers = spec
        .get("containers")
        .and_then(Value::as_array)
        .context("the manifest has no spec.containers")?;
    let container = containers
        .iter()
        .position(|c| c.get("name").and_then(Value::as_str) == Some("etcd"))
        .or_else(|| (containers.len() == 1).then_some(0))
        .context("the manifest has no container named etcd")?;
    let c = &containers[container];
    let mut flag = None;
    for list in ["command", "args"] {
        if let Some(items) = c.get(list).and_then(Value::as_array) {
            for (i, item) in items.iter().enumerate() {
                if let Some(dir) = item.as_str().and_then(|s| s.strip_prefix("--data-dir=")) {
                    flag = Some((list, i, dir.to_string()));
                }
            }
        }
    }
    let volumes = spec
        .get("volumes")
        .and_then(Value::as_array)
        .context("the manifest has no spec.volumes")?;
    let volume = volumes
        .iter()
        .position(|v| v.get("name").and_then(Value::as_str) == Some(DATA_VOLUME))
        .with_context(|| format!("the manifest has no volume named {DATA_VOLUME}"))?;
    let host = volumes[volume]
        .pointer("/hostPath/path")
        .and_then(Value::as_str)
        .with_context(|| format!("volume {DATA_VOLUME} is not a hostPath volume"))?
        .to_string();
    let mount = c
        .get("volumeMounts")
        .and_then(Value::as_array)
        .and_then(|mounts| {
            mounts.iter().enumerate().find_map(|(i, m)| {
                (m.get("name").and_then(Value::as_str) == Some(DATA_VOLUME))
                    .then(|| m.get("mountPath").and_then(Value::as_str))
                    .flatten()
                    .map(|p| (i, p.to_string()))
            })
        });
    Ok(Locations {
        container,
        flag,
        volume: (volume, host),
        mount,
    })
}

/// The data directory the manifest gives etcd on the host (the hostPath).
pub fn current_data_dir(text: &str) -> Result<String> {
    let pod: Value = serde_saphyr::from_str(text).context("the manifest is not valid YAML")?;
    Ok(locate(&pod)?.volume.1)
}

/// Rewrites the manifest so etcd runs on `new_dir`. The text is edited line
/// by line so the rest of the file stays byte for byte; the result is parsed
/// back and must equal the intended change exactly, else the manifest is
/// re-serialised from the edited document instead.
pub fn point_at_data_dir(text: &str, new_dir: &str) -> Result<ManifestEdit> {
    ensure!(
        new_dir.starts_with('/'),
        "the new data directory must be an absolute path, got {new_dir:?}"
    );
    ensure!(
        !new_dir.contains(['\n', '"', '\'', '#']) && new_dir.trim() == new_dir,
        "the new data directory {new_dir:?} holds characters a manifest path should not"
    );
    let pod: Value = serde_saphyr::from_str(text).context("the manifest is not valid YAML")?;
    let loc = locate(&pod)?;
    let mut expected = pod.clone();
    let mut changes = Vec::new();
    let container = &mut expected["spec"]["containers"][loc.container];
    if let Some((list, i, from)) = &loc.flag
        && from != new_dir
    {
        container[*list][*i] = Value::String(format!("--data-dir={new_dir}"));
        changes.push(Change {
            field: "etcd flag --data-dir".into(),
            from: from.clone(),
            to: new_dir.into(),
        });
    }
    if let Some((i, from)) = &loc.mount
        && from != new_dir
    {
        container["volumeMounts"][*i]["mountPath"] = Value::String(new_dir.into());
        changes.push(Change {
            field: format!("volumeMount {DATA_VOLUME} mountPath"),
            from: from.clone(),
            to: new_dir.into(),
        });
    }
    let (vi, host) = &loc.volume;
    if host != new_dir {
        expected["spec"]["volumes"][*vi]["hostPath"]["path"] = Value::String(new_dir.into());
        changes.push(Change {
            field: format!("volume {DATA_VOLUME} hostPath.path"),
            from: host.clone(),
            to: new_dir.into(),
        });
    }
    if changes.is_empty() {
        return Ok(ManifestEdit {
            text: text.to_string(),
            changes,
        });
    }
    let olds: Vec<&str> = changes.iter().map(|c| c.from.as_str()).collect();
    let edited = edit_lines(text, &olds, new_dir);
    let reparsed: Option<Value> = serde_saphyr::from_str(&edited).ok();
    let text = if reparsed.as_ref() == Some(&expected) {
        edited
    } else {
        serde_saphyr::to_string(&expected).context("could not write the edited manifest")?
    };
    let check: Value = serde_saphyr::from_str(&text).context("the edited manifest is not YAML")?;
    if check != expected {
        bail!("could not produce an edited manifest that reads back as intended");
    }
    Ok(ManifestEdit { text, changes })
}

/// Replaces the path in lines that are exactly `- --data-dir=OLD`,
/// `mountPath: OLD` or `path: OLD` (optionally a list item, optionally quoted).
fn edit_lines(text: &str, olds: &[&str], new_dir: &str) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let ending = &line[body.len()..];
        out.push_str(&edit_line(body, olds, new_dir).unwrap_or_else(|| body.to_string()));
        out.push_str(ending);
    }
    out
}

fn edit_line(line: &str, olds: &[&str], new_dir: &str) -> Option<String> {
    let indent_len = line.len() - line.trim_start().len();
    let (indent, rest) = line.split_at(indent_len);
    let (dash, rest) = match rest.strip_prefix("- ") {
        Some(r) => ("- ", r),
        None => ("", rest),
    };
    let rest = rest.trim_end();
    let unquote = |v: &str| -> (String, &'static str) {
        for q in ["\"", "'"] {
            if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
                return (inner.to_string(), q);
            }
        }
        (v.to_string(), "")
    };
    for prefix in ["mountPath: ", "path: "] {
        if let Some(value) = rest.strip_prefix(prefix) {
            let (v, q) = unquote(value.trim());
            if olds.contains(&v.as_str()) {
                return Some(format!("{indent}{dash}{prefix}{q}{new_dir}{q}"));
            }
        }
    }
    let (v, q) = unquote(rest);
    if let Some(old) = v.strip_prefix("--data-dir=")
        && olds.contains(&old)
        && !dash.is_empty()
    {
        return Some(format!("{indent}{dash}{q}--data-dir={new_dir}{q}"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape kubeadm writes (trimmed).
    const KUBEADM: &str = r#"apiVersion: v1
kind: Pod
metadata:
  annotations:
    kubeadm.kubernetes.io/etcd.advertise-client-urls: https://10.0.0.10:2379
  creationTimestamp: null
  labels:
    component: etcd
    tier: control-plane
  name: etcd
  namespace: kube-system
spec:
  containers:
  - command:
    - etcd
    - --advertise-client-urls=https://10.0.0.10:2379
    - --cert-file=/etc/kubernetes/pki/etcd/server.crt
    - --data-dir=/var/lib/etcd
    - --listen-client-urls=https://127.0.0.1:2379,https://10.0.0.10:2379
    - --trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt
    image: registry.k8s.io/etcd:3.5.15-0
    name: etcd
    volumeMounts:
    - mountPath: /var/lib/etcd
      name: etcd-data
    - mountPath: /etc/kubernetes/pki/etcd
      name: etcd-certs
  hostNetwork: true
  volumes:
  - hostPath:
      path: /etc/kubernetes/pki/etcd
      type: DirectoryOrCreate
    name: etcd-certs
  - hostPath:
      path: /var/lib/etcd
      type: DirectoryOrCreate
    name: etcd-data
status: {}
"#;

    #[test]
    fn edits_flag_mount_and_hostpath_and_nothing_else() {
        let edit = point_at_data_dir(KUBEADM, "/var/lib/etcd-from-backup").unwrap();
        assert_eq!(edit.changes.len(), 3);
        let changed: Vec<_> = KUBEADM
            .lines()
            .zip(edit.text.lines())
            .filter(|(a, b)| a != b)
            .map(|(_, b)| b.trim())
            .collect();
        assert_eq!(
            changed,
            vec![
                "- --data-dir=/var/lib/etcd-from-backup",
                "- mountPath: /var/lib/etcd-from-backup",
                "path: /var/lib/etcd-from-backup",
            ]
        );
        assert_eq!(KUBEADM.lines().count(), edit.text.lines().count());
        assert_eq!(
            current_data_dir(&edit.text).unwrap(),
            "/var/lib/etcd-from-backup"
        );
        // The certificates volume, which merely shares a prefix, is untouched.
        assert!(edit.text.contains("path: /etc/kubernetes/pki/etcd\n"));
    }

    #[test]
    fn already_pointing_there_changes_nothing() {
        let edit = point_at_data_dir(KUBEADM, "/var/lib/etcd").unwrap();
        assert!(edit.changes.is_empty());
        assert_eq!(edit.text, KUBEADM);
    }

    #[test]
    fn the_cka_shortcut_is_completed() {
        // hostPath already changed by hand, flag and mount still the default.
        let half = KUBEADM.replace("      path: /var/lib/etcd\n", "      path: /srv/etcd-old\n");
        let edit = point_at_data_dir(&half, "/srv/etcd-new").unwrap();
        let fields: Vec<_> = edit.changes.iter().map(|c| c.from.as_str()).collect();
        assert_eq!(
            fields,
            vec!["/var/lib/etcd", "/var/lib/etcd", "/srv/etcd-old"]
        );
        assert!(!edit.text.contains("/var/lib/etcd\n"));
        assert!(!edit.text.contains("/srv/etcd-old"));
    }

    #[test]
    fn an_ambiguous_layout_falls_back_to_reserialising() {
        // Another volume mounted from the same path: a line edit would change
        // it too, so the edit is done on the document instead.
        let extra = KUBEADM.replace(
            "    name: etcd-certs\n  - hostPath:",
            "    name: etcd-certs\n  - hostPath:\n      path: /var/lib/etcd\n    name: other\n  - hostPath:",
        );
        let edit = point_at_data_dir(&extra, "/var/lib/etcd-new").unwrap();
        let doc: Value = serde_saphyr::from_str(&edit.text).unwrap();
        let vols = doc["spec"]["volumes"].as_array().unwrap();
        let path_of = |name: &str| {
            vols.iter()
                .find(|v| v["name"] == name)
                .unwrap()
                .pointer("/hostPath/path")
                .unwrap()
                .clone()
        };
        assert_eq!(path_of("other"), "/var/lib/etcd");
        assert_eq!(path_of("etcd-data"), "/var/lib/etcd-new");
    }

    #[test]
    fn refuses_what_it_cannot_edit() {
        assert!(point_at_data_dir(KUBEADM, "relative/dir").is_err());
        let no_volume = KUBEADM.replace("name: etcd-data", "name: something-else");
        let err = point_at_data_dir(&no_volume, "/x").unwrap_err();
        assert!(format!("{err:#}").contains("no volume named etcd-data"));
        assert!(point_at_data_dir("not: [yaml", "/x").is_err());
    }
}
