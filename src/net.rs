//! Network settings every connection shares — the registry's (reqwest) and
//! the AWS APIs' (the SDK's HTTP client): the extra CA from
//! AWS_CA_BUNDLE and the proxies from HTTPS_PROXY / HTTP_PROXY / NO_PROXY.
//!
//! The AWS SDK for Rust does not read AWS_CA_BUNDLE or the proxy variables by
//! itself, so hoist builds its HTTP client with them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_http_client::{Connector, proxy::ProxyConfig};
use aws_smithy_runtime_api::client::http::SharedHttpClient;

use crate::env::Env;
use crate::error::ConfigError;

pub const USER_AGENT: &str = concat!("hoist/", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug, Default)]
pub struct Network {
    pub ca_bundle: Option<(PathBuf, Vec<u8>)>,
    /// The system's trusted roots, DER, read once (three HTTP clients would
    /// each read them again) and on a thread of their own: reading and
    /// parsing the store takes milliseconds that overlap the rest of start-up.
    native_roots: Arc<OnceLock<Vec<Vec<u8>>>>,
    /// AWS_CA_BUNDLE's certificates, DER.
    extra_roots: Arc<Vec<Vec<u8>>>,
    pub https_proxy: Option<String>,
    pub http_proxy: Option<String>,
    pub no_proxy: Option<String>,
    /// AWS_ENDPOINT_URL points at plain http (an emulator, a local proxy).
    aws_over_http: bool,
    /// How long a connection may stay silent — no answer, no bytes of a
    /// body taken or given — before the attempt is given up (`--http-timeout`).
    pub idle_timeout: Duration,
}

/// `--http-timeout`'s default: long enough for a registry or AWS API under
/// load, short enough that a hung connection costs a minute per attempt,
/// not the CI job's whole time limit.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

impl Network {
    pub fn from_env(env: &Env) -> Result<Network, ConfigError> {
        let ca_bundle = match env.get("AWS_CA_BUNDLE") {
            None => None,
            Some(path) => {
                let pem = crate::files::read(
                    std::path::Path::new(path),
                    "AWS_CA_BUNDLE",
                    crate::files::CA_BUNDLE,
                )
                .map_err(|e| {
                    e.hint("point AWS_CA_BUNDLE at a PEM file of CA certificates, or unset it")
                })?;
                match reqwest::Certificate::from_pem_bundle(&pem) {
                    Ok(certs) if !certs.is_empty() => {}
                    _ => {
                        return Err(ConfigError::new(format!(
                            "AWS_CA_BUNDLE ({path}) holds no PEM certificate"
                        ))
                        .hint(
                            "the file must contain one or more -----BEGIN CERTIFICATE----- blocks",
                        ));
                    }
                }
                Some((PathBuf::from(path), pem))
            }
        };
        let mut extra_roots = Vec::new();
        if let Some((_, pem)) = &ca_bundle {
            use rustls_pki_types::pem::PemObject;
            for cert in rustls_pki_types::CertificateDer::pem_slice_iter(pem) {
                let cert = cert.map_err(|e| {
                    ConfigError::new("AWS_CA_BUNDLE holds a certificate that cannot be parsed")
                        .source(e)
                })?;
                extra_roots.push(cert.to_vec());
            }
        }
        let native_roots = Arc::new(OnceLock::new());
        let loading = native_roots.clone();
        std::thread::spawn(move || {
            loading.get_or_init(load_native_roots);
        });
        Ok(Network {
            native_roots,
            extra_roots: Arc::new(extra_roots),
            ca_bundle,
            https_proxy: env
                .first(&["HTTPS_PROXY", "https_proxy"])
                .map(str::to_string),
            http_proxy: env.first(&["HTTP_PROXY", "http_proxy"]).map(str::to_string),
            no_proxy: env.first(&["NO_PROXY", "no_proxy"]).map(str::to_string),
            aws_over_http: env
                .get("AWS_ENDPOINT_URL")
                .is_some_and(|u| u.starts_with("http://")),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        })
    }

    /// A client for small requests outside the registry (OIDC token
    /// endpoints): the read timeout covers the wait for the answer and every
    /// read of its body.
    pub fn reqwest(&self) -> Result<reqwest::Client, ConfigError> {
        self.client(Some(self.idle_timeout), true)
    }

    /// A client for registry traffic: redirects are not followed (the
    /// registry code follows them itself, deciding where credentials go);
    /// `read_timeout` None for uploads, whose answer comes only after the
    /// whole body (they watch their own progress instead).
    pub fn registry_client(
        &self,
        read_timeout: Option<Duration>,
    ) -> Result<reqwest::Client, ConfigError> {
        self.client(read_timeout, false)
    }

    /// HTTP/1.1 on purpose: each concurrent blob upload gets its own
    /// connection instead of sharing one HTTP/2 connection's flow-control
    /// window.
    fn client(
        &self,
        read_timeout: Option<Duration>,
        follow_redirects: bool,
    ) -> Result<reqwest::Client, ConfigError> {
        let mut b = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .http1_only()
            .connect_timeout(Duration::from_secs(10))
            .tcp_keepalive(Duration::from_secs(30))
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy();
        if let Some(t) = read_timeout {
            b = b.read_timeout(t);
        }
        b = b.redirect(if follow_redirects {
            // Up to five, never to plain http off loopback (reqwest drops
            // credentials on a change of host; this keeps a token request
            // from being sent in the clear at all).
            reqwest::redirect::Policy::custom(|attempt| {
                let url = attempt.url();
                let loopback = matches!(url.host(), Some(url::Host::Ipv4(ip)) if ip.is_loopback())
                    || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
                    || url.host_str() == Some("localhost");
                if url.scheme() != "https" && !loopback {
                    let why = format!(
                        "refusing a redirect to {}://{}",
                        url.scheme(),
                        url.host_str().unwrap_or_default()
                    );
                    attempt.error(why)
                } else if attempt.previous().len() >= 5 {
                    attempt.error("more than 5 redirects")
                } else {
                    attempt.follow()
                }
            })
        } else {
            reqwest::redirect::Policy::none()
        });
        if let Some((_, pem)) = &self.ca_bundle {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| ConfigError::new("AWS_CA_BUNDLE could not be parsed").source(e))?;
            b = b.tls_certs_merge(certs);
        }
        let no_proxy = || {
            self.no_proxy
                .as_deref()
                .and_then(reqwest::NoProxy::from_string)
        };
        let bad_proxy = |var: &str, e: reqwest::Error| {
            ConfigError::new(format!("{var} is not a valid proxy URL")).source(e)
        };
        if let Some(p) = &self.https_proxy {
            b = b.proxy(
                reqwest::Proxy::https(p)
                    .map_err(|e| bad_proxy("HTTPS_PROXY", e))?
                    .no_proxy(no_proxy()),
            );
        }
        if let Some(p) = &self.http_proxy {
            b = b.proxy(
                reqwest::Proxy::http(p)
                    .map_err(|e| bad_proxy("HTTP_PROXY", e))?
                    .no_proxy(no_proxy()),
            );
        }
        b.build()
            .map_err(|e| ConfigError::new("could not set up the HTTP client").source(e))
    }

    /// The AWS SDK's HTTP client: rustls with the extra CA and the proxies.
    pub fn sdk_http_client(&self) -> Result<SharedHttpClient, ConfigError> {
        // The SDK takes PEM; hand it the roots already loaded rather than
        // letting it read the system store once more.
        let trust = TrustStore::empty().with_pem_certificate(self.roots_pem());
        let ctx = TlsContext::builder()
            .with_trust_store(trust)
            .build()
            .map_err(|e| ConfigError::new("could not set up TLS for the AWS APIs").source(e))?;
        let proxy = self.sdk_proxy()?;
        let client = aws_smithy_http_client::Builder::new().build_with_connector_fn(
            move |settings, components| {
                let mut b = Connector::builder()
                    .tls_provider(tls::Provider::Rustls(
                        tls::rustls_provider::CryptoMode::AwsLc,
                    ))
                    .tls_context(ctx.clone())
                    .proxy_config(proxy.clone());
                b.set_connector_settings(settings.cloned());
                if let Some(c) = components {
                    b.set_sleep_impl(c.sleep_impl());
                }
                b.build()
            },
        );
        Ok(SharedHttpClient::new(Bounded(client)))
    }

    /// Every trusted root: the system's, then AWS_CA_BUNDLE's. Waits for the
    /// system store if its thread is still reading it.
    fn roots(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.native_roots
            .get_or_init(load_native_roots)
            .iter()
            .chain(self.extra_roots.iter())
    }

    fn roots_pem(&self) -> Vec<u8> {
        use base64::Engine;
        let mut pem = String::new();
        for der in self.roots() {
            pem.push_str("-----BEGIN CERTIFICATE-----\n");
            let b64 = base64::engine::general_purpose::STANDARD.encode(der);
            for line in b64.as_bytes().chunks(64) {
                pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
                pem.push('\n');
            }
            pem.push_str("-----END CERTIFICATE-----\n");
        }
        pem.into_bytes()
    }

    fn sdk_proxy(&self) -> Result<ProxyConfig, ConfigError> {
        let bad = |var: &str, e: aws_smithy_http_client::proxy::ProxyError| {
            ConfigError::new(format!("{var} is not a valid proxy URL")).source(e)
        };
        // The SDK's client takes one proxy: for both schemes when the two
        // variables agree; otherwise the one for the scheme the AWS APIs are
        // reached over (https, unless AWS_ENDPOINT_URL says http).
        let mut cfg = match (&self.https_proxy, &self.http_proxy) {
            (Some(s), Some(h)) if s == h => {
                ProxyConfig::all(s.as_str()).map_err(|e| bad("HTTPS_PROXY", e))?
            }
            (_, Some(h)) if self.aws_over_http => {
                ProxyConfig::http(h.as_str()).map_err(|e| bad("HTTP_PROXY", e))?
            }
            (Some(s), _) if !self.aws_over_http => {
                ProxyConfig::https(s.as_str()).map_err(|e| bad("HTTPS_PROXY", e))?
            }
            _ => return Ok(ProxyConfig::disabled()),
        };
        if let Some(np) = &self.no_proxy {
            cfg = cfg.no_proxy(np);
        }
        Ok(cfg)
    }
}

fn load_native_roots() -> Vec<Vec<u8>> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| c.to_vec())
        .collect()
}

/// The most of one AWS answer hoist reads: far above any real one (a page
/// of scan findings, a 4 MiB manifest in BatchGetImage, a 6 MB invocation
/// result), far below what hurts. An endpoint that sends more — or never
/// stops — fails that call instead of filling memory (the SDK would read an
/// error body whole).
pub const MAX_AWS_BODY: usize = 16 * 1024 * 1024;

/// The SDK's HTTP client, with every response body cut off at
/// [`MAX_AWS_BODY`].
#[derive(Debug)]
struct Bounded(SharedHttpClient);

impl aws_smithy_runtime_api::client::http::HttpClient for Bounded {
    fn http_connector(
        &self,
        settings: &aws_smithy_runtime_api::client::http::HttpConnectorSettings,
        components: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
    ) -> aws_smithy_runtime_api::client::http::SharedHttpConnector {
        aws_smithy_runtime_api::client::http::SharedHttpConnector::new(BoundedConnector(
            self.0.http_connector(settings, components),
        ))
    }
}

#[derive(Debug)]
struct BoundedConnector(aws_smithy_runtime_api::client::http::SharedHttpConnector);

impl aws_smithy_runtime_api::client::http::HttpConnector for BoundedConnector {
    fn call(
        &self,
        request: aws_smithy_runtime_api::client::orchestrator::HttpRequest,
    ) -> aws_smithy_runtime_api::client::http::HttpConnectorFuture {
        let answer = self.0.call(request);
        aws_smithy_runtime_api::client::http::HttpConnectorFuture::new(async move {
            let mut res = answer.await?;
            let body = res.take_body();
            *res.body_mut() = aws_smithy_types::body::SdkBody::from_body_1_x(
                http_body_util::Limited::new(body, MAX_AWS_BODY),
            );
            Ok(res)
        })
    }
}
