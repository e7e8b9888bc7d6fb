//! Certificate expiry: the API server's serving certificate and the
//! kubeconfig's client certificate, read as X.509 (`notAfter`); and, through
//! a node transport, what `kubeadm certs check-expiration -o json` reports on
//! each control-plane node ([`parse_check_expiration`]).

use jiff::Timestamp;
use serde::Serialize;

use super::{CERTIFICATE_EXPIRY, Finding, Severity};

/// One certificate and when it stops being valid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Certificate {
    /// What it is for (`API server serving certificate`, `kubeconfig client certificate`).
    pub role: String,
    /// Its subject common name.
    pub subject: String,
    /// Where it was read (`TLS handshake with https://...`, `kubeconfig user admin`).
    pub source: String,
    pub not_after: Timestamp,
    /// The control-plane node it was read on (kubeadm's certificates).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// kubeadm cannot renew it: its CA's key is not on the node (external CA).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub externally_managed: bool,
}

/// Reads a certificate from DER.
pub fn from_der(der: &[u8], role: &str, source: &str) -> anyhow::Result<Certificate> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| {
        anyhow::anyhow!("{role} from {source} is not a valid X.509 certificate: {e}")
    })?;
    let subject = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or("")
        .to_string();
    let not_after = Timestamp::from_second(cert.validity().not_after.timestamp())
        .map_err(|e| anyhow::anyhow!("{role} from {source}: notAfter out of range: {e}"))?;
    Ok(Certificate {
        role: role.to_string(),
        subject,
        source: source.to_string(),
        not_after,
        node: None,
        externally_managed: false,
    })
}

/// Reads the first certificate of a PEM bundle.
pub fn from_pem(pem: &[u8], role: &str, source: &str) -> anyhow::Result<Certificate> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| anyhow::anyhow!("{role} from {source} is not PEM: {e}"))?;
    from_der(&block.contents, role, source)
}

/// What `kubeadm certs check-expiration -o json` reported on one node.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeCertificates {
    /// Certificates and CAs that exist, with their expiry.
    pub certificates: Vec<Certificate>,
    /// Names kubeadm reported `missing` (e.g. `super-admin.conf` on a control-plane node
    /// that joined rather than ran `kubeadm init`).
    pub missing: Vec<String>,
}

/// The command that reports every kubeadm-managed certificate's expiry.
pub const CHECK_EXPIRATION: &[&str] = &["kubeadm", "certs", "check-expiration", "-o", "json"];

/// kubeadm's structured output group (cmd/kubeadm/app/apis/output/v1alpha3).
const OUTPUT_GROUP: &str = "output.kubeadm.k8s.io/";

/// Reads `kubeadm certs check-expiration -o json` as run on `node`: a
/// `CertificateExpirationInfo` (cmd/kubeadm/app/apis/output/v1alpha3/types.go,
/// filled by cmd/kubeadm/app/cmd/certs.go `fetchCertificateExpirationInfo`):
/// `certificates[]` and `certificateAuthorities[]`, each with `name`,
/// `expirationDate` (RFC 3339, UTC), `residualTime` (seconds), `externallyManaged`,
/// `caName` (certificates only) and `missing` (then no date).
pub fn parse_check_expiration(node: &str, stdout: &str) -> anyhow::Result<NodeCertificates> {
    use anyhow::{Context as _, bail};
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Info {
        #[serde(default)]
        kind: String,
        #[serde(default)]
        api_version: String,
        #[serde(default)]
        certificates: Option<Vec<Entry>>,
        #[serde(default)]
        certificate_authorities: Option<Vec<Entry>>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        name: String,
        #[serde(default)]
        expiration_date: Option<String>,
        #[serde(default)]
        externally_managed: bool,
        #[serde(default)]
        missing: bool,
    }
    let source = format!("kubeadm certs check-expiration on node {node}");
    // Structured output prints nothing else on stdout (cmd/kubeadm/app/util/output
    // ResourcePrinterWrapper.Printf is silent); skip anything before the object anyway.
    let text = stdout.find('{').map_or(stdout, |i| &stdout[i..]);
    let info: Info = serde_json::from_str(text).with_context(|| {
        format!("{source} did not print a CertificateExpirationInfo as JSON (is kubeadm 1.20 or newer installed?)")
    })?;
    if info.kind != "CertificateExpirationInfo" || !info.api_version.starts_with(OUTPUT_GROUP) {
        bail!(
            "{source} printed kind {:?} apiVersion {:?}, not a CertificateExpirationInfo of {OUTPUT_GROUP}*",
            info.kind,
            info.api_version
        );
    }
    let mut out = NodeCertificates::default();
    for (entries, role) in [
        (info.certificates, "kubeadm certificate"),
        (
            info.certificate_authorities,
            "kubeadm certificate authority",
        ),
    ] {
        for e in entries.into_iter().flatten() {
            if e.missing {
                out.missing.push(e.name);
                continue;
            }
            let date = e.expiration_date.as_deref().unwrap_or_default();
            let not_after: Timestamp = date.parse().with_context(|| {
                format!(
                    "{source}: {} has expirationDate {date:?}, not an RFC 3339 time",
                    e.name
                )
            })?;
            out.certificates.push(Certificate {
                role: role.to_string(),
                subject: e.name,
                source: source.clone(),
                not_after,
                node: Some(node.to_string()),
                externally_managed: e.externally_managed,
            });
        }
    }
    Ok(out)
}

/// A finding when `cert` expires within `window_days` of `now` (or has).
pub fn expiry_finding(cert: &Certificate, now: Timestamp, window_days: i64) -> Option<Finding> {
    let seconds = cert.not_after.as_second() - now.as_second();
    let days = seconds.div_euclid(86_400);
    if seconds >= window_days * 86_400 {
        return None;
    }
    let when = cert.not_after.strftime("%Y-%m-%d %H:%M UTC");
    let on = cert
        .node
        .as_ref()
        .map(|n| format!(" on node {n}"))
        .unwrap_or_default();
    let message = if seconds <= 0 {
        format!("the {} ({}){on} expired on {when}", cert.role, cert.subject)
    } else {
        format!(
            "the {} ({}){on} expires on {when}, in {days} days: within {window_days} days, before the upgrade could finish",
            cert.role, cert.subject
        )
    };
    let fix = match &cert.node {
        Some(node) if cert.role.ends_with("authority") => format!(
            "kubeadm does not renew a CA: rotate {} on every control-plane node (kubernetes.io/docs/tasks/tls/manual-rotation-of-ca-certificates) before the upgrade; node {node} reported it",
            cert.subject
        ),
        Some(node) if cert.externally_managed => format!(
            "its CA's key is not on node {node} (external CA): have that CA issue a new {} and install it before the upgrade",
            cert.subject
        ),
        Some(node) => format!(
            "on node {node}: `kubeadm certs renew {}` (or `kubeadm certs renew all`), then restart the control-plane static pods so they load it",
            cert.subject
        ),
        None if cert.role.contains("client") => "renew the client certificate (on a kubeadm control-plane node: `kubeadm kubeconfig user` or `kubeadm certs renew admin.conf`) and update the kubeconfig".into(),
        None => "renew it before the upgrade: `kubeadm certs renew apiserver` on each control-plane node (or `kubeadm certs renew all`), then restart kube-apiserver".into(),
    };
    // A certificate on one control-plane node still concerns the hop: the control plane
    // upgrade as a whole needs it valid.
    Some(Finding {
        node: None,
        kind: "Certificate".into(),
        namespace: None,
        name: cert.subject.clone(),
        source: cert.source.clone(),
        rule: CERTIFICATE_EXPIRY,
        severity: Severity::Block,
        message,
        fix,
    })
}
