//! Serving the API: listener, TLS with a generated CA, client-certificate and token users,
//! the kubeconfig, and the `serve` command's life cycle.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use base64::Engine;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::api::{self, ApiContext, Auth, ConnInfo};
use crate::lab::{Lab, LabOptions, LabPlugin, ServerVersion};
use crate::scenario::CertificateSpec;

/// The generated PKI and tokens of one server.
#[derive(Clone)]
pub struct Credentials {
    pub ca_pem: String,
    pub server_cert_pem: String,
    pub server_key_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    admin_cert_der: Vec<u8>,
    pub admin_token: String,
    pub readonly_token: String,
}

fn random_token() -> String {
    let mut b = [0u8; 24];
    getrandom::fill(&mut b).expect("system randomness");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Credentials {
    /// A fresh CA, a server certificate for 127.0.0.1/localhost (plus `extra_sans`), an admin
    /// client certificate (CN admin, O system:masters) and two tokens.
    pub fn generate(extra_sans: &[String]) -> anyhow::Result<Self> {
        Self::generate_with(extra_sans, &CertificateSpec::default())
    }

    /// Like [`Credentials::generate`], with the server and client certificates' notAfter
    /// `validity` days from now where given.
    pub fn generate_with(
        extra_sans: &[String],
        validity: &CertificateSpec,
    ) -> anyhow::Result<Self> {
        // notAfter at midnight UTC, `days` from today.
        let expires = |days: u32| -> anyhow::Result<_> {
            let d = jiff::Timestamp::now()
                .to_zoned(jiff::tz::TimeZone::UTC)
                .date()
                .checked_add(jiff::Span::new().days(i64::from(days)))?;
            Ok(rcgen::date_time_ymd(
                i32::from(d.year()),
                u8::try_from(d.month())?,
                u8::try_from(d.day())?,
            ))
        };
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "upkeep-lab-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut sans = vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
            "::1".to_string(),
            "kubernetes.default.svc".to_string(),
        ];
        sans.extend(extra_sans.iter().cloned());
        let server_key = KeyPair::generate()?;
        let mut sp = CertificateParams::new(sans)?;
        sp.distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        if let Some(days) = validity.server_expires_in_days {
            sp.not_after = expires(days)?;
        }
        let server_cert = sp.signed_by(&server_key, &issuer)?;

        let admin_key = KeyPair::generate()?;
        let mut ap = CertificateParams::new(Vec::<String>::new())?;
        ap.distinguished_name.push(DnType::CommonName, "admin");
        ap.distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Some(days) = validity.client_expires_in_days {
            ap.not_after = expires(days)?;
        }
        let admin_cert = ap.signed_by(&admin_key, &issuer)?;

        Ok(Credentials {
            ca_pem: ca_cert.pem(),
            server_cert_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            admin_cert_der: admin_cert.der().to_vec(),
            admin_token: random_token(),
            readonly_token: random_token(),
        })
    }

    fn tls_config(&self) -> anyhow::Result<rustls::ServerConfig> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c?)?;
        }
        // Client certificates are optional: token users and anonymous health checks connect
        // without one.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()?;
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                .collect::<Result<_, _>>()?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes())?;
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// HTTPS with the generated CA (default) or plain HTTP.
    pub tls: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            listen: "127.0.0.1:0".parse().expect("valid"),
            tls: true,
        }
    }
}

/// A server running on the current tokio runtime. Dropping it does not stop it; call
/// [`RunningServer::shutdown`].
pub struct RunningServer {
    pub addr: SocketAddr,
    pub lab: Arc<Lab>,
    pub credentials: Credentials,
    pub tls: bool,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningServer {
    /// `https://127.0.0.1:PORT` or `http://...`.
    pub fn url(&self) -> String {
        format!(
            "{}://{}",
            if self.tls { "https" } else { "http" },
            self.addr
        )
    }

    /// The kubeconfig text: context `upkeep-lab` (admin by client certificate over HTTPS),
    /// `upkeep-lab-token` (admin by bearer token) and `readonly` (token; writes are forbidden).
    pub fn kubeconfig(&self) -> String {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let c = &self.credentials;
        let cluster = if self.tls {
            format!(
                "    server: {}\n    certificate-authority-data: {}\n",
                self.url(),
                b64(&c.ca_pem)
            )
        } else {
            format!("    server: {}\n", self.url())
        };
        let admin = if self.tls {
            format!(
                "    client-certificate-data: {}\n    client-key-data: {}\n",
                b64(&c.admin_cert_pem),
                b64(&c.admin_key_pem)
            )
        } else {
            format!("    token: {}\n", c.admin_token)
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: upkeep-lab\n  cluster:\n{cluster}users:\n- name: admin\n  user:\n{admin}- name: admin-token\n  user:\n    token: {}\n- name: readonly\n  user:\n    token: {}\ncontexts:\n- name: upkeep-lab\n  context:\n    cluster: upkeep-lab\n    user: admin\n    namespace: default\n- name: upkeep-lab-token\n  context:\n    cluster: upkeep-lab\n    user: admin-token\n    namespace: default\n- name: readonly\n  context:\n    cluster: upkeep-lab\n    user: readonly\n    namespace: default\ncurrent-context: upkeep-lab\npreferences: {{}}\n",
            c.admin_token, c.readonly_token
        )
    }

    /// Write the kubeconfig atomically (temporary file in the same directory, then rename).
    pub fn write_kubeconfig(&self, path: &Path) -> anyhow::Result<()> {
        write_atomic(path, &self.kubeconfig())
    }

    pub fn shutdown(&self) {
        self.cancel.cancel();
    }

    /// Wait until the accept loop ends (after [`RunningServer::shutdown`]).
    pub async fn join(self) {
        let _ = self.task.await;
    }
}

/// Write `text` to `path` atomically.
pub fn write_atomic(path: &Path, text: &str) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating directory {} for the kubeconfig", dir.display()))?;
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().to_string())
        .unwrap_or_else(|| "kubeconfig".into());
    let tmp = dir.join(format!(".{file}.tmp-{}", std::process::id()));
    std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600));
    }
    std::fs::rename(&tmp, path)
        .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

/// Start serving `lab` (with the routes of `plugins`) and return once the server answers.
pub async fn start(
    lab: Arc<Lab>,
    opts: ServerOptions,
    plugins: &[Box<dyn LabPlugin>],
) -> anyhow::Result<RunningServer> {
    // In-process kube clients (tests, plugins) need a process-wide rustls provider when more
    // than one is compiled in; ring is what the lab uses. Already installed is fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let validity = crate::scenario::loaded(&lab)
        .read()
        .spec
        .certificates
        .clone()
        .unwrap_or_default();
    // The kubeconfig names the listen address, so the serving certificate must too when it
    // is not loopback (a lab serving real nodes in network namespaces listens on their bridge).
    let ip = opts.listen.ip();
    let extra_sans: Vec<String> = (!ip.is_loopback() && !ip.is_unspecified())
        .then(|| ip.to_string())
        .into_iter()
        .collect();
    let credentials = Credentials::generate_with(&extra_sans, &validity)?;
    let mut tokens = HashMap::new();
    tokens.insert(credentials.admin_token.clone(), "admin".to_string());
    tokens.insert(credentials.readonly_token.clone(), "readonly".to_string());
    let auth = Auth {
        tokens,
        read_only_users: vec!["readonly".into()],
    };
    let ctx = ApiContext::new(lab.clone(), auth);
    let extra: Vec<_> = plugins.iter().filter_map(|p| p.routes()).collect();
    let app = api::router(ctx.clone(), extra);
    let app = if lab.store.durable().is_some() {
        app.layer(axum::middleware::from_fn_with_state(
            lab.clone(),
            durable_answers,
        ))
    } else {
        app
    };

    let listener = TcpListener::bind(opts.listen).await.with_context(|| {
        format!(
            "binding {} (is the port in use? try --listen 127.0.0.1:0)",
            opts.listen
        )
    })?;
    let addr = listener.local_addr()?;
    *ctx.server_addr.lock() = addr.to_string();
    let acceptor = if opts.tls {
        Some(tokio_rustls::TlsAcceptor::from(Arc::new(
            credentials.tls_config()?,
        )))
    } else {
        None
    };
    let admin_der = credentials.admin_cert_der.clone();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    let outage = crate::sim::controlplane::ApiOutage::get(&lab);
    let mut outages = outage.subscribe();
    let outage_lab = lab.clone();
    let task = tokio::spawn(async move {
        let mut listener = Some(listener);
        loop {
            let accepted = match &listener {
                Some(l) => tokio::select! {
                    _ = c2.cancelled() => break,
                    _ = outages.changed() => None,
                    r = l.accept() => match r {
                        Ok(x) => Some(x),
                        Err(e) => {
                            tracing::warn!("accept failed: {e}");
                            continue;
                        }
                    },
                },
                None => None,
            };
            let Some((tcp, _)) = accepted else {
                // The only kube-apiserver is restarting: nothing listens, so clients get
                // "connection refused" until it is back on the same address.
                if outage.down_until(&outage_lab).is_none() && listener.is_some() {
                    continue;
                }
                listener = None;
                tokio::select! {
                    _ = c2.cancelled() => break,
                    _ = outage.wait_over(&outage_lab) => {}
                }
                match TcpListener::bind(addr).await {
                    Ok(l) => listener = Some(l),
                    Err(e) => {
                        tracing::warn!("listening again on {addr} failed: {e}; retrying");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let app = app.clone();
            let acceptor = acceptor.clone();
            let admin_der = admin_der.clone();
            let conn_cancel = c2.clone();
            let conn_outages = outages.clone();
            tokio::spawn(async move {
                match acceptor {
                    Some(acc) => {
                        let Ok(tls) = acc.accept(tcp).await else {
                            return;
                        };
                        // The verifier already checked the chain; map known certificates to users.
                        let cert_user = tls
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(|c| c.first())
                            // Only the admin certificate is ever issued; any other is no identity.
                            .filter(|c| c.as_ref() == admin_der.as_slice())
                            .map(|_| "admin".to_string());
                        serve_conn(
                            TokioIo::new(tls),
                            app,
                            ConnInfo {
                                tls: true,
                                cert_user,
                            },
                            conn_cancel,
                            conn_outages,
                        )
                        .await
                    }
                    None => {
                        serve_conn(
                            TokioIo::new(tcp),
                            app,
                            ConnInfo::default(),
                            conn_cancel,
                            conn_outages,
                        )
                        .await
                    }
                }
            });
        }
    });
    // Only report success once a request is actually answered.
    let probe = api::router(ctx, Vec::new())
        .oneshot(http::Request::get("/readyz").body(Body::empty())?)
        .await
        .map_err(|e| anyhow::anyhow!("self-check failed: {e:?}"))?;
    anyhow::ensure!(
        probe.status().is_success(),
        "self-check /readyz answered {}",
        probe.status()
    );
    tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("self-check: connecting to {addr}"))?;
    Ok(RunningServer {
        addr,
        lab,
        credentials,
        tls: opts.tls,
        cancel,
        task,
    })
}

/// Serve one connection until it ends, the server stops, or the API goes down: then every
/// connection that made a Kubernetes API request is cut (watches included). Connections that
/// only used the lab's own routes (`/lab/`: the node shells, the lab's ssh) stay.
async fn serve_conn<I>(
    io: TokioIo<I>,
    app: axum::Router,
    info: ConnInfo,
    cancel: CancellationToken,
    mut outages: tokio::sync::watch::Receiver<u64>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let api_used = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let used = api_used.clone();
    let svc = hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
        if !req.uri().path().starts_with("/lab/") {
            used.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        req.extensions_mut().insert(info.clone());
        let app = app.clone();
        async move { app.oneshot(req.map(Body::new)).await }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    outages.mark_unchanged();
    loop {
        tokio::select! {
            _ = &mut conn => break,
            _ = cancel.cancelled() => break,
            r = outages.changed() => {
                if r.is_err() || api_used.load(std::sync::atomic::Ordering::SeqCst) {
                    break;
                }
            }
        }
    }
}

/// Options of `upkeep-lab serve`.
#[derive(Debug, Clone)]
pub struct ServeCommand {
    pub scenario: Option<String>,
    pub version: Option<String>,
    pub listen: SocketAddr,
    pub tls: bool,
    pub kubeconfig: PathBuf,
    pub time_scale: Option<f64>,
    /// The timing profile (wins over the scenario's).
    pub profile: Option<crate::sim::Profile>,
    /// Watch history length (events).
    pub watch_history: usize,
    /// Keep the objects in etcd (None: in memory).
    pub etcd: Option<EtcdTarget>,
}

/// Where a persisted lab keeps its objects.
#[derive(Debug, Clone)]
pub enum EtcdTarget {
    /// A running etcd (plain http).
    Endpoint(String),
    /// Start this etcd binary on loopback on this data directory.
    DataDir(PathBuf, PathBuf),
}

/// `upkeep-lab serve`: build the lab, load the scenario, start plugins, serve, write the
/// kubeconfig, then run until SIGINT or SIGTERM.
pub async fn run_serve(cmd: ServeCommand, plugins: Vec<Box<dyn LabPlugin>>) -> anyhow::Result<()> {
    let serving = start_serve(&cmd, plugins).await?;
    eprintln!(
        "upkeep-lab: serving {} (Kubernetes {}); kubeconfig written to {}\n  try: kubectl --kubeconfig {} get nodes",
        serving.server.url(),
        serving.server.lab.version().git_version,
        cmd.kubeconfig.display(),
        cmd.kubeconfig.display()
    );
    shutdown_signal().await;
    eprintln!("upkeep-lab: shutting down");
    serving.stop().await;
    Ok(())
}

/// A lab being served as `upkeep-lab serve` serves it (the tests' kit runs one in-process).
pub struct Serving {
    pub server: RunningServer,
    etcd_process: Option<crate::etcd::EtcdProcess>,
    /// Kept for the lab's lifetime, as `run_serve` keeps them.
    _plugins: Vec<Box<dyn LabPlugin>>,
}

impl Serving {
    /// Stops serving, writes the last changes to etcd and stops an etcd it started.
    pub async fn stop(self) {
        self.server.shutdown();
        let lab = self.server.lab.clone();
        self.server.join().await;
        if !crate::etcd::flush(&lab.store, Duration::from_secs(30)).await {
            eprintln!(
                "upkeep-lab: etcd did not take the last changes within 30 s; they are lost (resourceVersion {})",
                lab.store.current_rv()
            );
        }
        if let Some(p) = self.etcd_process {
            p.stop().await;
        }
    }
}

/// Everything `upkeep-lab serve` does before it waits for a signal: build the lab, load the
/// scenario, start plugins, serve, write the kubeconfig.
pub async fn start_serve(
    cmd: &ServeCommand,
    plugins: Vec<Box<dyn LabPlugin>>,
) -> anyhow::Result<Serving> {
    let mut opts = LabOptions::default();
    if let Some(v) = &cmd.version {
        opts.version = ServerVersion::parse(v)?;
    }
    if let Some(s) = cmd.time_scale {
        opts.time_scale = s;
    }
    opts.history = cmd.watch_history;
    let etcd_process = match &cmd.etcd {
        Some(EtcdTarget::DataDir(dir, binary)) => {
            Some(crate::etcd::EtcdProcess::start(binary, dir).await?)
        }
        _ => None,
    };
    let endpoint = match (&cmd.etcd, &etcd_process) {
        (_, Some(p)) => Some(p.endpoint.clone()),
        (Some(EtcdTarget::Endpoint(url)), None) => Some(url.clone()),
        _ => None,
    };
    if let Some(p) = &etcd_process {
        eprintln!(
            "upkeep-lab: etcd serving {} on its data directory (log: {})",
            p.endpoint,
            p.log.display()
        );
    }
    let (seed, watcher) = match &endpoint {
        Some(url) => {
            let (seed, watcher) = crate::etcd::open(url).await?;
            (Some(seed), Some(watcher))
        }
        None => (None, None),
    };
    // A lab on an etcd that already holds a cluster serves that cluster as it is.
    let restored = seed.as_ref().is_some_and(|s| !s.objects.is_empty());
    let lab = Lab::new_on(opts, seed);
    if let Some(w) = watcher {
        w.install(&lab);
    }
    if restored {
        eprintln!(
            "upkeep-lab: serving the cluster found in etcd at {} (revision {}); --scenario is not applied to it",
            endpoint.as_deref().unwrap_or_default(),
            lab.store.current_rv()
        );
    }
    if let Some(s) = cmd.scenario.as_ref().filter(|_| !restored) {
        let handled = lab
            .load_scenario(&plugins, s)
            .with_context(|| format!("loading scenario {s}"))?;
        anyhow::ensure!(
            handled,
            "no scenario loader is built into this upkeep-lab, so --scenario {s} cannot be loaded; run without --scenario"
        );
        if let Some(v) = &cmd.version {
            // --version wins over the scenario's apiserver version
            lab.set_version(ServerVersion::parse(v)?);
        }
    }
    if let Some(p) = cmd.profile {
        crate::sim::config_slot(&lab).write().profile = p;
    }
    for p in &plugins {
        p.start(&lab);
    }
    // The scenario is in etcd before anyone can take a snapshot of it.
    anyhow::ensure!(
        crate::etcd::flush(&lab.store, Duration::from_secs(120)).await,
        "etcd did not take the scenario's objects within 120 s"
    );
    let server = start(
        lab,
        ServerOptions {
            listen: cmd.listen,
            tls: cmd.tls,
        },
        &plugins,
    )
    .await?;
    server.write_kubeconfig(&cmd.kubeconfig)?;
    Ok(Serving {
        server,
        etcd_process,
        _plugins: plugins,
    })
}

/// A persisted lab answers once etcd holds everything the answer may show (kube-apiserver
/// answers a write after the etcd transaction and reads what etcd holds): wait for every
/// change committed when the handler returned. A caught-up store answers at once.
async fn durable_answers(
    axum::extract::State(lab): axum::extract::State<Arc<Lab>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let resp = next.run(req).await;
    if !crate::etcd::flush(&lab.store, Duration::from_secs(30)).await {
        tracing::error!("etcd did not take the lab's changes within 30 s");
    }
    resp
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
