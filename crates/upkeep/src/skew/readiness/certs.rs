//! Certificate expiry: the API server's serving certificate and the
//! kubeconfig's client certificate, read as X.509 (`notAfter`).

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
    })
}

/// Reads the first certificate of a PEM bundle.
pub fn from_pem(pem: &[u8], role: &str, source: &str) -> anyhow::Result<Certificate> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|e| anyhow::anyhow!("{role} from {source} is not PEM: {e}"))?;
    from_der(&block.contents, role, source)
}

/// A finding when `cert` expires within `window_days` of `now` (or has).
pub fn expiry_finding(cert: &Certificate, now: Timestamp, window_days: i64) -> Option<Finding> {
    let seconds = cert.not_after.as_second() - now.as_second();
    let days = seconds.div_euclid(86_400);
    if seconds >= window_days * 86_400 {
        return None;
    }
    let when = cert.not_after.strftime("%Y-%m-%d %H:%M UTC");
    let message = if seconds <= 0 {
        format!("the {} ({}) expired on {when}", cert.role, cert.subject)
    } else {
        format!(
            "the {} ({}) expires on {when}, in {days} days: within {window_days} days, before the upgrade could finish",
            cert.role, cert.subject
        )
    };
    Some(Finding {
        kind: "Certificate".into(),
        namespace: None,
        name: cert.subject.clone(),
        source: cert.source.clone(),
        rule: CERTIFICATE_EXPIRY,
        severity: Severity::Block,
        message,
        fix: if cert.role.contains("client") {
            "renew the client certificate (on a kubeadm control-plane node: `kubeadm kubeconfig user` or `kubeadm certs renew admin.conf`) and update the kubeconfig".into()
        } else {
            "renew it before the upgrade: `kubeadm certs renew apiserver` on each control-plane node (or `kubeadm certs renew all`), then restart kube-apiserver".into()
        },
    })
}
