//! The kubectl-standard connection flags, parsed by every plugin itself, and
//! their resolution into a [`kube::Client`].
//!
//! kubectl hands plugins none of its own flags (kubectl `HandlePluginCommand`
//! rejects flags placed before the plugin name), so each binary mirrors the set
//! cli-runtime registers in `pkg/genericclioptions/config_flags.go`. The
//! context is resolved once, at start, and reported back so a mutating plugin
//! can show where it is about to act.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::{Client, Config};

/// The kubectl-standard flags (names, short forms and meaning as in kubectl). Values may
/// begin with `-` (a token often does): pflag takes the next word as the value whatever it
/// starts with (spf13/pflag flag.go `parseLongArg`), so `--token -abc` works there too.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Kubernetes connection (as kubectl)")]
pub struct KubeFlags {
    /// Path to the kubeconfig file (wins over KUBECONFIG, which may list several merged files)
    #[arg(long, value_name = "PATH", global = true, allow_hyphen_values = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use
    #[arg(long, value_name = "NAME", global = true, allow_hyphen_values = true)]
    pub context: Option<String>,
    /// The kubeconfig cluster to use
    #[arg(long, value_name = "NAME", global = true, allow_hyphen_values = true)]
    pub cluster: Option<String>,
    /// The kubeconfig user to use
    #[arg(long, value_name = "NAME", global = true, allow_hyphen_values = true)]
    pub user: Option<String>,
    /// The namespace scope for this request
    #[arg(
        short = 'n',
        long,
        value_name = "NAMESPACE",
        global = true,
        allow_hyphen_values = true
    )]
    pub namespace: Option<String>,
    /// Time to wait for a single server request ("0" means no timeout), e.g. 30s, 1m
    #[arg(long, value_name = "DURATION", default_value = "0", global = true, value_parser = crate::cli::request_timeout, allow_hyphen_values = true)]
    pub request_timeout: crate::cli::Limit,
    /// Username to impersonate for the operation
    #[arg(
        long = "as",
        value_name = "USER",
        global = true,
        allow_hyphen_values = true
    )]
    pub as_user: Option<String>,
    /// Group to impersonate (repeatable)
    #[arg(
        long = "as-group",
        value_name = "GROUP",
        global = true,
        allow_hyphen_values = true
    )]
    pub as_group: Vec<String>,
    /// The address and port of the Kubernetes API server
    #[arg(
        short = 's',
        long,
        value_name = "URL",
        global = true,
        allow_hyphen_values = true
    )]
    pub server: Option<String>,
    /// Bearer token for authentication to the API server
    #[arg(long, value_name = "TOKEN", global = true, allow_hyphen_values = true)]
    pub token: Option<String>,
    /// Do not check the server's certificate (insecure)
    #[arg(long, global = true)]
    pub insecure_skip_tls_verify: bool,
    /// Path to a CA certificate file for the server
    #[arg(long, value_name = "PATH", global = true, allow_hyphen_values = true)]
    pub certificate_authority: Option<PathBuf>,
}

/// Which transient answers the client retries by itself (see [`crate::transient`]): a
/// refused connection once the server has answered before (it is restarting; the request
/// was never sent), the rest as below.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retries {
    /// Reads and writes: 429/503 (and 5xx with Retry-After) for every verb; 500, 502, 504
    /// and broken connections for reads.
    Silent,
    /// Reads only: the caller handles write answers, e.g. an eviction engine that names the
    /// PodDisruptionBudget behind a 429 and retries as soon as it frees.
    Explicit,
}

/// A resolved connection: the client plus what it points at.
#[derive(Clone)]
pub struct Connection {
    pub client: Client,
    /// The kubeconfig context in use (`in-cluster` or `flags` when none).
    pub context: String,
    /// The API server URL.
    pub server: String,
    /// The namespace from `-n`, else the context's, else `default`.
    pub namespace: String,
    /// The resolved configuration, for further clients of the same context.
    config: Config,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("context", &self.context)
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl KubeFlags {
    /// Parses `--request-timeout` the way kubectl does: a bare number is
    /// seconds, otherwise a duration with units; zero means none.
    pub fn request_timeout(&self) -> Option<Duration> {
        self.request_timeout.get()
    }

    /// Builds the client configuration from the kubeconfig (the flag wins over
    /// KUBECONFIG; several KUBECONFIG paths are merged) and the override flags.
    pub async fn config(&self) -> anyhow::Result<(Config, String)> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
        };
        let kubeconfig = match &self.kubeconfig {
            Some(path) => Some(Kubeconfig::read_from(path).map_err(|e| {
                anyhow::anyhow!(
                    "could not read the kubeconfig {}: {}",
                    path.display(),
                    match &e {
                        KubeconfigError::ReadConfig(io, _) => io.to_string(),
                        e => e.to_string(),
                    }
                )
            })?),
            None => match Kubeconfig::read() {
                Ok(kc) => Some(kc),
                // No kubeconfig at all: --server alone, or in-cluster, may still work.
                Err(_) if self.server.is_some() || in_cluster() => None,
                Err(e) => bail!(
                    "no usable kubeconfig ({}): pass --kubeconfig PATH, set KUBECONFIG, or create ~/.kube/config",
                    // kube's own text quotes the path twice: from '"/root/.kube/config"'.
                    match &e {
                        KubeconfigError::ReadConfig(io, path) =>
                            format!("could not read {}: {io}", path.display()),
                        e => e.to_string(),
                    }
                ),
            },
        };
        let (mut config, context) = match kubeconfig {
            Some(kc) => {
                let context = options
                    .context
                    .clone()
                    .or_else(|| kc.current_context.clone())
                    .unwrap_or_default();
                if let Some(name) = &options.context
                    && !kc.contexts.iter().any(|c| &c.name == name)
                {
                    let known: Vec<_> = kc.contexts.iter().map(|c| c.name.as_str()).collect();
                    bail!(
                        "context {name:?} is not in the kubeconfig (known: {})",
                        known.join(", ")
                    );
                }
                let config = Config::from_custom_kubeconfig(kc, &options)
                    .await
                    .context("could not build a client configuration from the kubeconfig")?;
                (config, context)
            }
            None if self.server.is_some() => (
                Config::new("http://localhost".parse()?),
                "flags".to_string(),
            ),
            None => (
                Config::incluster().context("could not load the in-cluster configuration")?,
                "in-cluster".to_string(),
            ),
        };
        if let Some(server) = &self.server {
            config.cluster_url = server
                .parse()
                .with_context(|| format!("--server {server:?} is not a valid URL"))?;
        }
        if let Some(token) = &self.token {
            config.auth_info.token = Some(token.clone().into());
            config.auth_info.client_certificate = None;
            config.auth_info.client_certificate_data = None;
            config.auth_info.client_key = None;
            config.auth_info.client_key_data = None;
        }
        if self.insecure_skip_tls_verify {
            config.accept_invalid_certs = true;
        }
        if let Some(ca) = &self.certificate_authority {
            let pem = std::fs::read(ca).with_context(|| {
                format!("could not read --certificate-authority {}", ca.display())
            })?;
            config.root_cert = Some(pem_certificates(&pem).with_context(|| {
                format!(
                    "--certificate-authority {} holds no PEM certificate",
                    ca.display()
                )
            })?);
        }
        if let Some(user) = &self.as_user {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !self.as_group.is_empty() {
            config.auth_info.impersonate_groups = Some(self.as_group.clone());
        }
        if let Some(timeout) = self.request_timeout() {
            config.read_timeout = Some(timeout);
            config.write_timeout = Some(timeout);
            config.connect_timeout = Some(timeout);
        }
        if let Some(ns) = &self.namespace {
            config.default_namespace = ns.clone();
        }
        Ok((config, context))
    }

    /// Resolves the flags once into a client. kube's client retries 429 and
    /// 503 answers silently, which suits read-only plugins.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        self.connect_with(Retries::Silent).await
    }

    /// Resolves the flags once into a client with the given retry policy.
    pub async fn connect_with(&self, retries: Retries) -> anyhow::Result<Connection> {
        let (config, context) = self.config().await?;
        let server = config.cluster_url.to_string();
        let namespace = config.default_namespace.clone();
        let client = client_for(&config, retries)?;
        Ok(Connection {
            client,
            context,
            server,
            namespace,
            config,
        })
    }
}

impl Connection {
    /// The resolved configuration (server, TLS, credentials) the client uses.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Another client for the same, already resolved, context: e.g. one with
    /// explicit retries for an eviction engine beside a reading client.
    pub fn client_with(&self, retries: Retries) -> anyhow::Result<Client> {
        client_for(&self.config, retries)
    }
}

fn client_for(config: &Config, retries: Retries) -> anyhow::Result<Client> {
    use crate::transient::{RetryPolicy, Scope};
    let mut config = config.clone();
    // kube's own layer retries 429/503/504 only, and never a refused connection.
    config.default_retry = false;
    let server = config.cluster_url.to_string();
    let scope = match retries {
        Retries::Silent => Scope::All,
        Retries::Explicit => Scope::ReadsOnly,
    };
    // kubectl's --request-timeout bounds a whole request, retries included.
    let budget = config.read_timeout;
    let builder = kube::client::ClientBuilder::try_from(config)
        .with_context(|| format!("could not create a client for {server}"))?;
    // Retry needs a cloneable service: the buffer makes one of kube's stack.
    let layers = tower::ServiceBuilder::new()
        .layer(tower::retry::RetryLayer::new(RetryPolicy::new(
            scope, budget,
        )))
        .layer(tower::buffer::BufferLayer::new(1024));
    Ok(builder.with_layer(&layers).build())
}

fn in_cluster() -> bool {
    std::env::var_os("KUBERNETES_SERVICE_HOST").is_some()
}

/// Splits a PEM bundle into DER certificates.
fn pem_certificates(pem: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
    use base64::Engine as _;
    let decode = |body: &str| base64::engine::general_purpose::STANDARD.decode(body);
    let text = std::str::from_utf8(pem).context("not UTF-8")?;
    let mut certs = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line == "-----BEGIN CERTIFICATE-----" {
            current = Some(String::new());
        } else if line == "-----END CERTIFICATE-----" {
            if let Some(body) = current.take() {
                certs.push(decode(&body).context("a certificate is not valid base64")?);
            }
        } else if let Some(body) = current.as_mut() {
            body.push_str(line);
        }
    }
    if certs.is_empty() {
        bail!("no certificate found");
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_bundle_splits() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\nAwQF\n-----END CERTIFICATE-----\n";
        assert_eq!(
            pem_certificates(pem).unwrap(),
            vec![vec![0, 1, 2], vec![3, 4, 5]]
        );
        assert!(pem_certificates(b"nothing").is_err());
    }
}
