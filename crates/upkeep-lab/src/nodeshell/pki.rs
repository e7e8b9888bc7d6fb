//! kubeadm's certificates on a simulated control-plane node, and
//! `kubeadm certs check-expiration [-o json|yaml|text]` over them.
//!
//! Which certificates exist: the renewal manager's list
//! (cmd/kubeadm/app/phases/certs/renewal/manager.go `NewManager`): every leaf of
//! certsphase `GetDefaultCertList` (stacked etcd) under its CA, plus the client
//! certificates embedded in admin.conf, super-admin.conf, controller-manager.conf and
//! scheduler.conf (signed by `ca`); and the three CAs. Validity as kubeadm issues them
//! (cmd/kubeadm/app/constants/constants.go `CertificateValidityPeriod` one year,
//! `CACertificateValidityPeriod` ten years), or what the scenario says per node.
//!
//! The JSON is `CertificateExpirationInfo` of `output.kubeadm.k8s.io/v1alpha3`
//! (cmd/kubeadm/app/apis/output/v1alpha3/types.go), filled as
//! cmd/kubeadm/app/cmd/certs.go `fetchCertificateExpirationInfo` does: certificates then
//! CAs, each sorted by name (`Manager.Certificates`, `Manager.CAs`); a missing one has
//! only its name and `missing: true` (its zero `metav1.Time` marshals as `null`).

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::exec::ExecOutput;

/// `constants.CertificateValidityPeriod`.
const LEAF_DAYS: i64 = 365;
/// `constants.CACertificateValidityPeriod`.
const CA_DAYS: i64 = 3650;

/// (name, CA name) of every leaf the renewal manager knows, kubeconfig certificates included.
const LEAVES: &[(&str, &str)] = &[
    ("admin.conf", "ca"),
    ("apiserver", "ca"),
    ("apiserver-etcd-client", "etcd-ca"),
    ("apiserver-kubelet-client", "ca"),
    ("controller-manager.conf", "ca"),
    ("etcd-healthcheck-client", "etcd-ca"),
    ("etcd-peer", "etcd-ca"),
    ("etcd-server", "etcd-ca"),
    ("front-proxy-client", "front-proxy-ca"),
    ("scheduler.conf", "ca"),
    ("super-admin.conf", "ca"),
];
const CAS: &[&str] = &["ca", "etcd-ca", "front-proxy-ca"];

/// A control-plane node's certificates in a scenario (node template `certificates`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PkiSpec {
    /// Days every certificate stays valid from when the node shell first serves the node
    /// (default 365).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<i64>,
    /// The same for the CAs (default 3650).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_expires_in_days: Option<i64>,
    /// Per certificate or CA name (`apiserver: 10`, `ca: 20`); negative: already expired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub days: BTreeMap<String, i64>,
    /// Names absent from the node (`super-admin.conf` on a node that joined).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
    /// Names whose CA key is not on the node (an external CA).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub externally_managed: Vec<String>,
}

impl PkiSpec {
    /// Rejects names kubeadm does not manage, naming the ones it does.
    pub fn validate(&self) -> Result<(), String> {
        let known = |n: &str| LEAVES.iter().any(|(l, _)| *l == n) || CAS.contains(&n);
        for n in self
            .days
            .keys()
            .chain(&self.missing)
            .chain(&self.externally_managed)
        {
            if !known(n) {
                let all: Vec<&str> = LEAVES
                    .iter()
                    .map(|(l, _)| *l)
                    .chain(CAS.iter().copied())
                    .collect();
                return Err(format!(
                    "certificates: {n:?} is not a kubeadm certificate; known: {}",
                    all.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// One certificate or CA on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiCert {
    /// None for a CA.
    pub ca_name: Option<&'static str>,
    pub not_after: Timestamp,
    pub externally_managed: bool,
}

/// The certificates of a control-plane node, by name (missing ones absent).
pub type Pki = BTreeMap<String, PkiCert>;

/// The node's certificates as `spec` describes them, issued at `now`.
pub fn issue(spec: &PkiSpec, now: Timestamp) -> Pki {
    let at = |days: i64| now + SignedDuration::from_hours(24 * days);
    let mut pki = Pki::new();
    let entries = LEAVES
        .iter()
        .map(|(n, ca)| (*n, Some(*ca)))
        .chain(CAS.iter().map(|n| (*n, None)));
    for (name, ca_name) in entries {
        if spec.missing.iter().any(|m| m == name) {
            continue;
        }
        let default = if ca_name.is_some() {
            spec.expires_in_days.unwrap_or(LEAF_DAYS)
        } else {
            spec.ca_expires_in_days.unwrap_or(CA_DAYS)
        };
        let days = spec.days.get(name).copied().unwrap_or(default);
        pki.insert(
            name.to_string(),
            PkiCert {
                ca_name,
                not_after: at(days),
                externally_managed: spec.externally_managed.iter().any(|m| m == name),
            },
        );
    }
    pki
}

/// `kubeadm upgrade apply|node` renews every certificate it manages on the node
/// (`--certificate-renewal`, default true: phases/upgrade/staticpods.go
/// `renewCertsByComponent`; kubeadm-certs docs "Automatic certificate renewal"), never a
/// CA and never one whose CA key is absent.
pub fn renew_on_upgrade(pki: &mut Pki, now: Timestamp) {
    for c in pki.values_mut() {
        if c.ca_name.is_some() && !c.externally_managed {
            c.not_after = now + SignedDuration::from_hours(24 * LEAF_DAYS);
        }
    }
}

/// `metav1.Time` as JSON: RFC 3339 in UTC, whole seconds.
fn rfc3339(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The `CertificateExpirationInfo` for `pki` at `now`.
pub fn expiration_info(pki: &Pki, now: Timestamp) -> Value {
    let entry = |name: &str, ca: Option<&str>| -> Value {
        let Some(c) = pki.get(name) else {
            return json!({"name": name, "expirationDate": null, "residualTime": 0, "externallyManaged": false, "missing": true});
        };
        // certs.go: int64(e.ResidualTime() / time.Second); ResidualTime is notAfter - now.
        let residual = c.not_after.as_second() - now.as_second();
        let mut v = json!({
            "name": name,
            "expirationDate": rfc3339(c.not_after),
            "residualTime": residual,
            "externallyManaged": c.externally_managed,
            "missing": false,
        });
        if let Some(ca) = ca {
            v["caName"] = json!(ca);
        }
        v
    };
    json!({
        "kind": "CertificateExpirationInfo",
        "apiVersion": "output.kubeadm.k8s.io/v1alpha3",
        "certificates": LEAVES.iter().map(|(n, ca)| entry(n, Some(ca))).collect::<Vec<_>>(),
        "certificateAuthorities": CAS.iter().map(|n| entry(n, None)).collect::<Vec<_>>(),
    })
}

/// apimachinery pkg/util/duration `ShortHumanDuration`, as the text table prints residual time.
fn short_human(seconds: i64) -> String {
    match seconds {
        ..-1 => "<invalid>".into(),
        -1..0 => "0s".into(),
        0..60 => format!("{seconds}s"),
        60..3_600 => format!("{}m", seconds / 60),
        3_600..86_400 => format!("{}h", seconds / 3600),
        _ if seconds < 86_400 * 365 => format!("{}d", seconds / 86_400),
        _ => format!("{}y", seconds / (86_400 * 365)),
    }
}

/// `kubeadm certs check-expiration` with its `-o/--output` (text, json, yaml).
pub fn check_expiration(pki: &Pki, now: Timestamp, output: Option<&str>) -> ExecOutput {
    let info = expiration_info(pki, now);
    match output.unwrap_or("text") {
        "json" => ExecOutput::ok(format!(
            "{}\n",
            serde_json::to_string_pretty(&info).unwrap_or_default()
        )),
        "yaml" => ExecOutput::ok(serde_saphyr::to_string(&info).unwrap_or_default()),
        "text" => ExecOutput::ok(text_table(pki, now)),
        o => ExecOutput::fail(
            1,
            format!(
                "error: could not construct output printer: unable to match a printer suitable for the output format \"{o}\", allowed formats are: json,yaml,text\n"
            ),
        ),
    }
}

/// certs.go `certTextPrinter.PrintObj`.
fn text_table(pki: &Pki, now: Timestamp) -> String {
    let when = |t: Timestamp| t.strftime("%b %d, %Y %H:%M UTC").to_string();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    let mut rows = vec![vec![
        "CERTIFICATE".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "CERTIFICATE AUTHORITY".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for (name, ca) in LEAVES {
        rows.push(match pki.get(*name) {
            None => vec![format!("!MISSING! {name}")],
            Some(c) => vec![
                name.to_string(),
                when(c.not_after),
                short_human(c.not_after.as_second() - now.as_second()),
                ca.to_string(),
                yes_no(c.externally_managed).into(),
            ],
        });
    }
    let mut out = align(&rows);
    out.push('\n');
    let mut rows = vec![vec![
        "CERTIFICATE AUTHORITY".to_string(),
        "EXPIRES".into(),
        "RESIDUAL TIME".into(),
        "EXTERNALLY MANAGED".into(),
    ]];
    for name in CAS {
        rows.push(match pki.get(*name) {
            None => vec![format!("!MISSING! {name}")],
            Some(c) => vec![
                name.to_string(),
                when(c.not_after),
                short_human(c.not_after.as_second() - now.as_second()),
                yes_no(c.externally_managed).into(),
            ],
        });
    }
    out.push_str(&align(&rows));
    out
}

/// tabwriter with padding 3.
fn align(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let width: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            line.push_str(c);
            if i + 1 < r.len() {
                line.push_str(&" ".repeat(width[i] - c.chars().count() + 3));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-12-05T08:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_json_is_kubeadms_certificate_expiration_info() {
        let spec = PkiSpec {
            days: [("apiserver".to_string(), 10)].into(),
            missing: vec!["super-admin.conf".into()],
            ..Default::default()
        };
        let out = check_expiration(&issue(&spec, now()), now(), Some("json"));
        assert_eq!(out.code, 0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["kind"], "CertificateExpirationInfo");
        assert_eq!(v["apiVersion"], "output.kubeadm.k8s.io/v1alpha3");
        let certs = v["certificates"].as_array().unwrap();
        assert_eq!(certs.len(), 11);
        let apiserver = certs.iter().find(|c| c["name"] == "apiserver").unwrap();
        assert_eq!(apiserver["expirationDate"], "2026-12-15T08:00:00Z");
        assert_eq!(apiserver["residualTime"], 10 * 86_400);
        assert_eq!(apiserver["caName"], "ca");
        let missing = certs
            .iter()
            .find(|c| c["name"] == "super-admin.conf")
            .unwrap();
        assert_eq!(missing["missing"], true);
        assert_eq!(missing["expirationDate"], Value::Null);
        let cas = v["certificateAuthorities"].as_array().unwrap();
        assert_eq!(cas[0]["name"], "ca");
        assert_eq!(cas[0]["residualTime"], 3650 * 86_400);
        assert!(cas[0].get("caName").is_none(), "CAs name no CA");
    }

    #[test]
    fn the_text_table_and_renewal_on_upgrade() {
        let spec = PkiSpec {
            days: [("apiserver".to_string(), 10)].into(),
            externally_managed: vec!["front-proxy-client".into()],
            ..Default::default()
        };
        let mut pki = issue(&spec, now());
        let text = check_expiration(&pki, now(), None).stdout;
        assert!(
            text.contains("apiserver                  Dec 15, 2026 08:00 UTC   10d"),
            "{text}"
        );
        assert!(text.contains("CERTIFICATE AUTHORITY   EXPIRES"), "{text}");
        let later = now() + SignedDuration::from_hours(24);
        renew_on_upgrade(&mut pki, later);
        assert_eq!(
            pki["apiserver"].not_after,
            later + SignedDuration::from_hours(24 * 365)
        );
        assert_eq!(
            pki["ca"].not_after,
            now() + SignedDuration::from_hours(24 * 3650)
        );
        assert_eq!(
            pki["front-proxy-client"].not_after,
            now() + SignedDuration::from_hours(24 * 365),
            "an externally managed certificate is not renewed"
        );
        assert_eq!(check_expiration(&pki, now(), Some("wide")).code, 1);
        assert!(
            PkiSpec {
                days: [("apiserverx".to_string(), 1)].into(),
                ..Default::default()
            }
            .validate()
            .is_err()
        );
    }
}
