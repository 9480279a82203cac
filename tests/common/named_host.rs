//! One of ECR's registry host names (a FIPS or dual-stack one, say), played
//! on loopback, so a test can see which host hoist's registry traffic goes
//! to without `--registry-endpoint` (which would decide it instead).
//!
//! hoist is pointed at a forward proxy (HTTPS_PROXY). It answers a CONNECT
//! to that host by terminating TLS with a certificate for the name, signed
//! by a CA made for the test (hand it to hoist as AWS_CA_BUNDLE), and
//! relaying the plain HTTP inside to the suite's ECR front. A CONNECT to
//! any other host is refused (403): no name is resolved, nothing leaves the
//! machine. Every CONNECT target is recorded, in order.
//!
//! The certificates are made with the `openssl` command line, as the local
//! environment makes its own.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use hyper::Method;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

use super::server::{Running, full, serve};

pub struct NamedHost {
    /// `HOST:443`, every CONNECT hoist made, in order.
    targets: Arc<Mutex<Vec<String>>>,
    proxy: Running,
    certs: tempfile::TempDir,
}

impl NamedHost {
    /// Play `host` (`:443`) in front of the plain-http `upstream`.
    pub fn start(host: &str, upstream: SocketAddr) -> NamedHost {
        let certs = tempfile::tempdir().unwrap();
        let (chain, key) = certificates(certs.path(), host);
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let targets = Arc::new(Mutex::new(Vec::new()));
        let (seen, played) = (targets.clone(), format!("{host}:443"));
        let proxy = serve(move |req| {
            let (seen, played, acceptor) = (seen.clone(), played.clone(), acceptor.clone());
            async move {
                let target = req.uri().authority().map(|a| a.to_string());
                if req.method() != Method::CONNECT || target.is_none() {
                    return Ok(full(400, ""));
                }
                let target = target.unwrap_or_default();
                seen.lock().unwrap().push(target.clone());
                if target != played {
                    return Ok(full(403, ""));
                }
                tokio::spawn(async move {
                    let Ok(upgraded) = hyper::upgrade::on(req).await else {
                        return;
                    };
                    let Ok(mut tls) = acceptor
                        .accept(hyper_util::rt::TokioIo::new(upgraded))
                        .await
                    else {
                        return;
                    };
                    let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                });
                Ok(full(200, ""))
            }
        });
        NamedHost {
            targets,
            proxy,
            certs,
        }
    }

    /// For HTTPS_PROXY.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.proxy.addr)
    }

    /// The test's CA, for AWS_CA_BUNDLE.
    pub fn ca_bundle(&self) -> PathBuf {
        self.certs.path().join("ca.pem")
    }

    /// Every CONNECT target so far (`HOST:PORT`).
    pub fn targets(&self) -> Vec<String> {
        self.targets.lock().unwrap().clone()
    }
}

/// A CA, and a server certificate for `host` signed by it.
fn certificates(dir: &Path, host: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "1", "-subj", "/CN=hoist test CA"];
    ca.extend_from_slice(&ec);
    ca.extend_from_slice(&["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let subject = format!("/CN={host}");
    let mut csr = vec!["req", "-subj", &subject];
    csr.extend_from_slice(&ec);
    csr.extend_from_slice(&["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("server-ext.cnf"),
        format!(
            "subjectAltName=DNS:{host}\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        ),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-set_serial",
        "1",
        "-days",
        "1",
        "-extfile",
        "server-ext.cnf",
        "-out",
        "server.pem",
    ]);
    let chain = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).unwrap();
    (chain, key)
}
