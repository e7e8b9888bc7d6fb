//! Reads the cluster into a [`ReadinessSnapshot`], read-only. Lists are paged
//! (`limit=500` plus `continue`) and each page is reduced to the findings'
//! raw material before the next is fetched: memory follows what was found,
//! not the cluster's size. What cannot be read is recorded as [`Unreadable`],
//! and the report carries on with the rest.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DynamicObject, ListParams};
use kube::discovery::{Discovery, verbs};
use kube::{Client, Config};

use super::apis::{
    HELM_RELEASE_TYPE, Removals, helm_release_uses, parse_deprecated_metrics, uses_in_object,
};
use super::certs;
use super::drains::DrainCollector;
use super::{ReadinessSnapshot, Unreadable};
use crate::drain::DrainOptions;
use crate::list::{for_each_page, list_all};
use crate::skew::collect::api_error;
use crate::skew::snapshot::ClusterVersions;
use crate::upgrade::Cmd;
use crate::upgrade::transport::{NodeTarget, Transport};
use crate::version::MinorVersion;

/// What to gather.
#[derive(Debug, Clone, Default)]
pub struct GatherOptions {
    /// Skip the per-node drain plans.
    pub skip_drains: bool,
}

/// Gathers everything the readiness rules need. `config` is the connection's
/// configuration, for the certificates (None: they are not checked).
pub async fn gather(
    client: &Client,
    config: Option<&Config>,
    versions: ClusterVersions,
    removals: &Removals,
    options: &GatherOptions,
) -> ReadinessSnapshot {
    let mut snap = ReadinessSnapshot {
        versions,
        ..Default::default()
    };
    version_info(client, &mut snap).await;
    // The drain plans read the same listing as the removed-API search.
    let mut drains = (!options.skip_drains).then(DrainCollector::default);
    objects(client, removals, &mut snap, drains.as_mut()).await;
    metrics(client, &mut snap).await;
    match drains {
        None => snap
            .notes
            .push("drains were not checked (--no-drains)".into()),
        Some(c) => plan_into(c, None, &DrainOptions::default(), &mut snap),
    }
    match config {
        Some(config) => certificates(config, &mut snap).await,
        None => snap
            .notes
            .push("certificates were not checked (no connection configuration given)".into()),
    }
    snap
}

/// `/version`: the binary's minor and, since v1.32, the emulated one.
async fn version_info(client: &Client, snap: &mut ReadinessSnapshot) {
    let request = http::Request::get("/version")
        .body(Vec::new())
        .expect("valid request");
    let text = match client.request_text(request).await {
        Ok(t) => t,
        Err(e) => {
            snap.unreadable.push(Unreadable {
                what: "get /version".into(),
                error: e.to_string(),
            });
            return;
        }
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else {
        return;
    };
    let minor = |major: &str, minor: &str| -> Option<MinorVersion> {
        let num = |k: &str| {
            v.get(k)?
                .as_str()?
                .trim_end_matches('+')
                .parse::<u64>()
                .ok()
        };
        Some(MinorVersion::new(num(major)?, num(minor)?))
    };
    snap.binary = minor("major", "minor");
    snap.emulated = minor("emulationMajor", "emulationMinor");
}

/// Every object of every listable kind (discovery's preferred version of each
/// group), for recorded API versions; Helm release Secrets decoded on the way.
/// Each object also goes to `drains` (the drain plans' material), so nothing
/// is listed twice.
async fn objects(
    client: &Client,
    removals: &Removals,
    snap: &mut ReadinessSnapshot,
    mut drains: Option<&mut DrainCollector>,
) {
    let discovery = match Discovery::new(client.clone()).run().await {
        Ok(d) => d,
        Err(e) => {
            snap.unreadable.push(Unreadable {
                what: "API discovery (/api, /apis)".into(),
                error: e.to_string(),
            });
            return;
        }
    };
    let mut listed_kinds: BTreeSet<String> = BTreeSet::new();
    for group in discovery.groups() {
        for v in group.versions() {
            snap.served.insert(if group.name().is_empty() {
                v.to_string()
            } else {
                format!("{}/{v}", group.name())
            });
        }
    }
    for group in discovery.groups() {
        for (ar, caps) in group.recommended_resources() {
            if !caps.supports_operation(verbs::LIST) {
                continue;
            }
            // events.k8s.io serves the core Events again: list them once.
            if !listed_kinds.insert(format!("{}/{}", ar.plural, ar.kind)) && ar.kind == "Event" {
                continue;
            }
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
            let what = if ar.group.is_empty() {
                format!("list {}", ar.plural)
            } else {
                format!("list {}.{}", ar.plural, ar.group)
            };
            let is_secret = ar.group.is_empty() && ar.kind == "Secret";
            let mut uses = Vec::new();
            let mut helm_errors = Vec::new();
            let is_pod = ar.group.is_empty() && ar.kind == "Pod";
            let result = if is_pod {
                // Pods read typed: the most numerous kind, parsed once into
                // what the drain plans keep.
                let pods: Api<Pod> = Api::all(client.clone());
                for_each_page(&pods, &ListParams::default(), |pod: Pod| {
                    uses.extend(uses_in_object(&pod.metadata, &ar.kind, removals));
                    if let Some(d) = drains.as_deref_mut() {
                        d.add_pod(pod);
                    }
                })
                .await
            } else {
                for_each_page(&api, &ListParams::default(), |obj: DynamicObject| {
                    uses.extend(uses_in_object(&obj.metadata, &ar.kind, removals));
                    if is_secret
                        && obj.data.get("type").and_then(|t| t.as_str()) == Some(HELM_RELEASE_TYPE)
                        && let Some(wire) =
                            obj.data.pointer("/data/release").and_then(|r| r.as_str())
                    {
                        let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                        let name = obj.metadata.name.as_deref().unwrap_or_default();
                        // The API's own base64 first, then Helm's.
                        let decoded = base64::engine::general_purpose::STANDARD
                            .decode(wire)
                            .map_err(anyhow::Error::from)
                            .and_then(|bytes| helm_release_uses(ns, name, &bytes, removals));
                        match decoded {
                            Ok(found) => uses.extend(found),
                            Err(e) => helm_errors.push(format!("Secret {ns}/{name}: {e:#}")),
                        }
                    }
                    if let Some(d) = drains.as_deref_mut() {
                        d.offer(&ar, obj);
                    }
                })
                .await
            }
            .map_err(|e| api_error(e, &what));
            if result.is_ok()
                && let Some(d) = drains.as_deref_mut()
            {
                d.listed(what.trim_start_matches("list "));
            }
            snap.api_uses.extend(uses);
            for e in helm_errors {
                snap.notes
                    .push(format!("could not read a Helm release ({e})"));
            }
            if let Err(e) = result {
                snap.unreadable.push(Unreadable {
                    what,
                    error: format!("{e:#}"),
                });
            }
        }
    }
}

/// `apiserver_requested_deprecated_apis`, when `/metrics` is readable.
async fn metrics(client: &Client, snap: &mut ReadinessSnapshot) {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("valid request");
    match client.request_text(request).await {
        Ok(text) => snap.requested_deprecated = Some(parse_deprecated_metrics(&text)),
        Err(e) => snap.notes.push(format!(
            "/metrics is not readable ({e}): requests to deprecated APIs (apiserver_requested_deprecated_apis) were not checked"
        )),
    }
}

/// Every node's drain (or only the nodes in `only`) as safedrain plans it
/// with `options`, into the snapshot; what cannot be read is [`Unreadable`].
/// Lists what the plans read (nodes, pods, PodDisruptionBudgets, volumes,
/// the replicated controllers) once, for any number of nodes.
pub async fn drains(
    client: &Client,
    only: Option<&[String]>,
    options: &DrainOptions,
    snap: &mut ReadinessSnapshot,
) {
    let mut c = DrainCollector::default();
    if let Err(e) = c.list(client).await {
        snap.unreadable.push(Unreadable {
            what: "the drain plans (nodes, pods, PodDisruptionBudgets, their controllers)".into(),
            error: format!("{e:#}"),
        });
        return;
    }
    plan_into(c, only, options, snap);
}

/// Plans the collected drains into the snapshot.
fn plan_into(
    c: DrainCollector,
    only: Option<&[String]>,
    options: &DrainOptions,
    snap: &mut ReadinessSnapshot,
) {
    match c.plan(only, options) {
        Ok(d) => snap.drains.extend(d),
        Err(e) => snap.unreadable.push(Unreadable {
            what: "the drain plans (nodes, pods, PodDisruptionBudgets, their controllers)".into(),
            error: format!("{e:#}"),
        }),
    }
}

/// `kubeadm certs check-expiration -o json` on every control-plane node,
/// through `access` (the node transport and whether to prefix `sudo`): every
/// certificate and CA it reports joins the snapshot's certificates. Without a
/// transport a note says they were not checked. A node that cannot be asked,
/// or whose answer is not kubeadm's, is [`Unreadable`]: the verdict cannot be
/// READY without it.
pub async fn node_certificates<T: Transport>(
    client: &Client,
    access: Option<(&T, bool)>,
    snap: &mut ReadinessSnapshot,
) {
    let Some((t, sudo)) = access else {
        snap.notes.push(
            "certificates on the control-plane nodes were not checked: no node transport (pass --via or --remote-shell, as for kubectl upgrade-node)"
                .into(),
        );
        return;
    };
    if !t.captures_output() {
        snap.notes.push(format!(
            "certificates on the control-plane nodes were not checked: {} cannot read a command's output (use --via shell, pod or local)",
            t.describe()
        ));
        return;
    }
    let nodes = match control_plane_targets(client).await {
        Ok(n) => n,
        Err(e) => {
            snap.unreadable.push(Unreadable {
                what: "the control-plane nodes (for kubeadm certs check-expiration)".into(),
                error: format!("{e:#}"),
            });
            return;
        }
    };
    if nodes.is_empty() {
        snap.notes.push(
            "certificates on the control-plane nodes were not checked: no node carries the control-plane role label (managed control plane?)"
                .into(),
        );
        return;
    }
    let cmd = Cmd::new(certs::CHECK_EXPIRATION.iter().copied());
    let cmd = if sudo { cmd.with_sudo() } else { cmd };
    for node in &nodes {
        let result = match t.run(node, &cmd).await {
            Ok(out) if out.success() => certs::parse_check_expiration(&node.name, &out.stdout),
            Ok(out) => Err(anyhow::anyhow!(
                "exited with {}:\n{}",
                out.code
                    .map_or("a signal".to_string(), |c| format!("code {c}")),
                out.excerpt()
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(found) => {
                snap.certificates.extend(found.certificates);
                if !found.missing.is_empty() {
                    snap.notes.push(format!(
                        "node {}: kubeadm reports no {} (nothing to check)",
                        node.name,
                        found.missing.join(", ")
                    ));
                }
            }
            Err(e) => snap.unreadable.push(Unreadable {
                what: format!("kubeadm certs check-expiration on node {}", node.name),
                error: format!("{e:#}"),
            }),
        }
    }
}

/// The control-plane nodes and their addresses, for [`node_certificates`].
async fn control_plane_targets(client: &Client) -> anyhow::Result<Vec<NodeTarget>> {
    use anyhow::Context as _;
    let nodes = list_all(&Api::<Node>::all(client.clone()), &ListParams::default())
        .await
        .context("could not list the nodes")?;
    let mut out: Vec<NodeTarget> = nodes
        .iter()
        .map(crate::upgrade::run::node_facts)
        .filter(|f| f.control_plane)
        .map(|f| NodeTarget {
            name: f.name,
            address: f.internal_ip,
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The API server's serving certificate (from a TLS handshake) and the
/// kubeconfig's client certificate.
async fn certificates(config: &Config, snap: &mut ReadinessSnapshot) {
    let url = &config.cluster_url;
    if url.scheme_str() == Some("https") {
        if config.proxy_url.is_some() {
            snap.notes.push(
                "the API server is reached through a proxy: its serving certificate was not checked"
                    .into(),
            );
        } else {
            let source = format!("TLS handshake with {url}");
            match serving_certificate(config).await {
                Ok(der) => match certs::from_der(&der, "API server serving certificate", &source) {
                    Ok(c) => snap.certificates.push(c),
                    Err(e) => snap.unreadable.push(Unreadable {
                        what: source,
                        error: format!("{e:#}"),
                    }),
                },
                Err(e) => snap.unreadable.push(Unreadable {
                    what: source,
                    error: format!("{e:#}"),
                }),
            }
        }
    }
    let auth = &config.auth_info;
    let pem = if let Some(data) = &auth.client_certificate_data {
        base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map(|b| (b, "kubeconfig client-certificate-data".to_string()))
            .map_err(|e| anyhow::anyhow!("client-certificate-data is not base64: {e}"))
    } else if let Some(path) = &auth.client_certificate {
        std::fs::read(path)
            .map(|b| (b, format!("kubeconfig client-certificate {path}")))
            .map_err(|e| anyhow::anyhow!("could not read client-certificate {path}: {e}"))
    } else {
        return;
    };
    match pem.and_then(|(b, source)| certs::from_pem(&b, "kubeconfig client certificate", &source))
    {
        Ok(c) => snap.certificates.push(c),
        Err(e) => snap.unreadable.push(Unreadable {
            what: "the kubeconfig's client certificate".into(),
            error: format!("{e:#}"),
        }),
    }
}

/// Connects to the API server and returns the leaf certificate it presents.
/// Nothing is sent after the handshake, so the certificate is read without
/// being trusted (an expired one must still be reported).
async fn serving_certificate(config: &Config) -> anyhow::Result<Vec<u8>> {
    use anyhow::Context as _;
    use rustls::pki_types::ServerName;
    let url = &config.cluster_url;
    let host = url.host().context("the server URL has no host")?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port_u16().unwrap_or(443);
    let tcp = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect((host.as_str(), port)),
    )
    .await
    .context("timed out connecting")?
    .with_context(|| format!("could not connect to {host}:{port}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ReadOnly(provider)))
        .with_no_client_auth();
    let name = config
        .tls_server_name
        .clone()
        .unwrap_or_else(|| host.clone());
    let name = ServerName::try_from(name).context("the server name is not valid for TLS")?;
    let stream = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(Arc::new(tls)).connect(name, tcp),
    )
    .await
    .context("timed out in the TLS handshake")?
    .context("the TLS handshake failed")?;
    let (_, conn) = stream.get_ref();
    let leaf = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .context("the server presented no certificate")?;
    Ok(leaf.as_ref().to_vec())
}

/// Accepts any certificate: used only to read the one presented.
#[derive(Debug)]
struct ReadOnly(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for ReadOnly {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
