//! Talking to ECR as a registry: the password from GetAuthorizationToken,
//! blob uploads streamed in one request, manifests as exact bytes, retries.
//!
//! Two HTTP clients, deliberately: oci-client for the small requests it does
//! well (blob HEAD, manifest HEAD/GET/PUT), and reqwest for blob uploads.
//! oci-client cannot upload the way ECR needs: its chunked and streamed
//! pushes send 4 MiB PATCHes, and ECR refuses chunks under 5 MiB and silently
//! drops the data of every PATCH after the second (aws/containers-roadmap#2831).
//! hoist sends each blob as POST, one PATCH with the whole body, PUT ?digest=.

pub mod ecr;
mod manifest;
pub mod reference;

mod upload;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::token_cache::RegistryTokenType;
use oci_client::{Reference, RegistryOperation};
use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::error::{Class, ConfigError, Diagnose};
use crate::image::{Digest, ImageError};
use crate::net::Network;
use crate::retry;
use crate::secret::Secret;
pub use ecr::{Ecr, EcrAuth, Mutability, RepoInfo};
pub use upload::{BlobOutcome, Upload};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{op}: the registry answered {status}{}", snippet(body))]
    Status {
        op: String,
        status: u16,
        body: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "{op}: the registry refused the credentials ({status}){}",
        snippet(body)
    )]
    Denied {
        op: String,
        status: u16,
        body: String,
    },
    #[error("{op}: could not reach the registry at {endpoint}")]
    Transport {
        op: String,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op}: {source}")]
    Oci {
        op: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{op} failed after {attempts} attempts")]
    GaveUp {
        op: String,
        attempts: u32,
        #[source]
        source: Box<RegistryError>,
    },
    #[error(transparent)]
    Source(#[from] ImageError),
    #[error("repository '{name}' does not exist in {registry}")]
    RepositoryMissing { name: String, registry: String },
    #[error(
        "tag '{tag}' of {repository} already points at {existing}, and the repository's tags are immutable; this image is {pushing}"
    )]
    TagConflict {
        tag: String,
        repository: String,
        existing: Digest,
        pushing: Digest,
    },
    #[error("{op} failed")]
    Aws {
        op: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
        class: Class,
        hint: Option<String>,
    },
    #[error("{0}")]
    Protocol(String),
}

fn snippet(body: &str) -> String {
    let body = body.trim();
    if body.is_empty() {
        return String::new();
    }
    let cut: String = body.chars().take(300).collect();
    format!(": {cut}")
}

impl RegistryError {
    fn oci(op: impl Into<String>, source: OciDistributionError) -> Self {
        RegistryError::Oci {
            op: op.into(),
            source,
        }
    }

    /// The error a retry loop gave up on, keeping the attempt count when
    /// there was more than one.
    fn after(op: &str, (e, attempts): (RegistryError, u32)) -> Self {
        if attempts > 1 {
            RegistryError::GaveUp {
                op: op.to_string(),
                attempts,
                source: Box::new(e),
            }
        } else {
            e
        }
    }

    fn innermost(&self) -> &RegistryError {
        match self {
            RegistryError::GaveUp { source, .. } => source.innermost(),
            e => e,
        }
    }
}

impl retry::Transient for RegistryError {
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, .. } => retry::retryable_status(*status),
            RegistryError::Transport { source, .. } => retry::retryable_transport(source),
            RegistryError::Oci { source, .. } => match source {
                OciDistributionError::ServerError { code, .. } => retry::retryable_status(*code),
                OciDistributionError::RegistryError { envelope, .. } => envelope
                    .errors
                    .iter()
                    .any(|e| e.code == OciErrorCode::Toomanyrequests),
                OciDistributionError::RequestError(e) => retry::retryable_transport(e),
                // A 2xx other than the expected one, or no Location: a proxy
                // or load balancer hiccup more often than a real answer.
                OciDistributionError::SpecViolationError(_) => true,
                _ => false,
            },
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            RegistryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

const DENIED_HINT: &str = "the AWS identity needs ecr:GetAuthorizationToken and the push actions on this repository (see the README's IAM policies); with --registry-endpoint, check that it is the registry of this account";

impl RegistryError {
    /// The registry could not be reached at all (whichever client tried).
    fn is_unreachable(&self) -> bool {
        let unreachable = |e: &reqwest::Error| e.is_connect() || e.is_timeout();
        match self.innermost() {
            RegistryError::Transport { source, .. } => unreachable(source),
            RegistryError::Oci {
                source: OciDistributionError::RequestError(e),
                ..
            } => unreachable(e),
            _ => false,
        }
    }

    /// The registry said no to the credentials, whichever client heard it.
    fn is_denied(&self) -> bool {
        match self.innermost() {
            RegistryError::Denied { .. } => true,
            RegistryError::Oci { source, .. } => match source {
                OciDistributionError::UnauthorizedError { .. }
                | OciDistributionError::AuthenticationFailure(_) => true,
                // oci-client's blob HEAD reports a status as a reqwest error.
                OciDistributionError::RequestError(e) => {
                    matches!(e.status().map(|s| s.as_u16()), Some(401 | 403))
                }
                OciDistributionError::ServerError { code, .. } => matches!(code, 401 | 403),
                OciDistributionError::RegistryError { envelope, .. } => envelope
                    .errors
                    .iter()
                    .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied)),
                _ => false,
            },
            _ => false,
        }
    }
}

impl Diagnose for RegistryError {
    fn class(&self) -> Class {
        if self.is_denied() {
            return Class::Usage;
        }
        match self.innermost() {
            RegistryError::Source(e) => e.class(),
            RegistryError::RepositoryMissing { .. }
            | RegistryError::TagConflict { .. }
            | RegistryError::Denied { .. } => Class::Usage,
            RegistryError::Aws { class, .. } => *class,
            _ => Class::Infrastructure,
        }
    }

    fn hint(&self) -> Option<String> {
        if self.is_denied() {
            return Some(DENIED_HINT.into());
        }
        match self.innermost() {
            RegistryError::Source(e) => e.hint(),
            RegistryError::RepositoryMissing { name, .. } => Some(format!("create it (aws ecr create-repository --repository-name {name}), or pass --create-repository to let hoist create it with scan on push and immutable tags")),
            RegistryError::TagConflict { .. } => Some("push under a new tag (e.g. the commit SHA), or push by digest only (no --tag)".into()),
            RegistryError::Denied { .. } => Some(DENIED_HINT.into()),
            RegistryError::Aws { hint, .. } => hint.clone(),
            e if e.is_unreachable() => Some(
                "check the network path to the registry (HTTPS_PROXY / NO_PROXY, --registry-endpoint) and, for a private CA, AWS_CA_BUNDLE".into(),
            ),
            e if retry::Transient::is_transient(e) => Some(
                "the registry kept failing; it is safe to run hoist again: blobs already pushed are skipped".into(),
            ),
            _ => None,
        }
    }
}

/// Where registry traffic goes. `--registry-endpoint` (PrivateLink, a proxy,
/// the local test registry) replaces ECR's proxyEndpoint; the image URI keeps
/// ECR's host name. Plain http only to a loopback address.
pub fn parse_endpoint(raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| {
        ConfigError::new(format!("--registry-endpoint '{raw}' is not a URL")).source(e)
    })?;
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    match url.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => {
            return Err(ConfigError::new(format!("--registry-endpoint '{raw}' uses plain http to a host that is not loopback")).hint("registry traffic carries credentials: use https (plain http is allowed only for 127.0.0.1, ::1 and localhost)"));
        }
        other => {
            return Err(ConfigError::new(format!(
                "--registry-endpoint '{raw}' has scheme '{other}'"
            ))
            .hint("use an https:// URL"));
        }
    }
    if url.host().is_none() || url.path() != "/" || url.query().is_some() {
        return Err(ConfigError::new(format!("--registry-endpoint '{raw}' must be a scheme, a host and an optional port, nothing more")).hint("e.g. https://vpce-0123.dkr.ecr.us-east-1.vpce.amazonaws.com"));
    }
    Ok(url)
}

/// `host[:port]` of a URL, as registries name themselves.
fn host_port(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

struct Auth {
    password: Secret,
    /// When to fetch a new password: a margin before it expires. None when
    /// the expiry is unknown or already past at fetch time (emulators send a
    /// fixed date), so a bad clock cannot make every request refetch it.
    refresh_at: Option<SystemTime>,
}

impl Auth {
    fn new(password: Secret, expires_at: Option<SystemTime>) -> Auth {
        let now = SystemTime::now();
        let refresh_at = expires_at
            .and_then(|t| t.duration_since(now).ok())
            .map(|left| now + left - REFRESH_MARGIN.min(left / 2));
        Auth {
            password,
            refresh_at,
        }
    }
}

/// A connection to one registry, shared by every repository a run pushes to.
pub struct Registry {
    http: reqwest::Client,
    oci: RwLock<Arc<oci_client::Client>>,
    oci_ready: Mutex<HashSet<String>>,
    net: Network,
    base: Url,
    host: String,
    /// ECR's own host name (`<account>.dkr.ecr.<region>.amazonaws.com`), used
    /// in image URIs whatever the endpoint.
    pub ecr_host: String,
    auth: RwLock<Auth>,
    ecr: Ecr,
    policy: retry::Policy,
    /// Blobs pushed during this run and the repository they went to: mount
    /// sources for later pushes to other repositories.
    pushed: Mutex<HashMap<Digest, String>>,
    on_secret: Box<dyn Fn(&str) + Send + Sync>,
}

/// Refresh the password when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

impl Registry {
    /// Get the registry password from ECR and set up the clients. `on_secret`
    /// is called with every password fetched (the CI system masks it).
    pub async fn connect(
        ecr: Ecr,
        endpoint: Option<Url>,
        net: Network,
        policy: retry::Policy,
        on_secret: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Registry, RegistryError> {
        let auth = ecr.authorization().await?;
        on_secret(auth.password.reveal());
        let ecr_host = host_port(&auth.endpoint);
        let base = endpoint.unwrap_or_else(|| auth.endpoint.clone());
        let host = host_port(&base);
        let http = net
            .reqwest()
            .map_err(|e| RegistryError::Protocol(e.to_string()))?;
        let oci = Arc::new(Self::oci_client(&net, &base, &host));
        Ok(Registry {
            http,
            oci: RwLock::new(oci),
            oci_ready: Mutex::new(HashSet::new()),
            net,
            base,
            host,
            ecr_host,
            auth: RwLock::new(Auth::new(auth.password, auth.expires_at)),
            ecr,
            policy,
            pushed: Mutex::new(HashMap::new()),
            on_secret,
        })
    }

    fn oci_client(net: &Network, base: &Url, host: &str) -> oci_client::Client {
        let plain = if base.scheme() == "http" {
            vec![host.to_string()]
        } else {
            vec![]
        };
        oci_client::Client::new(net.oci_config(plain))
    }

    /// `<ecr host>/<repository>`
    pub fn repository_uri(&self, repository: &str) -> String {
        format!("{}/{}", self.ecr_host, repository)
    }

    /// The current password, fetched anew from ECR if it is about to expire
    /// (they live 12 hours; long jobs outlive them).
    async fn password(&self) -> Result<Secret, RegistryError> {
        {
            let auth = self.auth.read().await;
            if auth.refresh_at.is_none_or(|t| SystemTime::now() < t) {
                return Ok(auth.password.clone());
            }
        }
        let mut auth = self.auth.write().await;
        if auth.refresh_at.is_none_or(|t| SystemTime::now() < t) {
            return Ok(auth.password.clone()); // another task refreshed it meanwhile
        }
        let new = self.ecr.authorization().await?;
        (self.on_secret)(new.password.reveal());
        *auth = Auth::new(new.password, new.expires_at);
        // oci-client keeps the credentials it was first given: start afresh.
        *self.oci.write().await = Arc::new(Self::oci_client(&self.net, &self.base, &self.host));
        self.oci_ready.lock().await.clear();
        tracing::info!("refreshed the ECR registry password");
        Ok(auth.password.clone())
    }

    fn basic(password: &Secret) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", password.reveal()))
        )
    }

    /// oci-client, with its credentials in place for `repository`.
    ///
    /// ECR only ever answers with Basic auth, so hoist hands oci-client the
    /// credentials instead of letting it probe `/v2/` for a challenge: its
    /// probe takes a failed answer (a 5xx, a 429) for "no auth needed", and
    /// every later request would then go out without credentials and come
    /// back 401. No probe also means two round trips fewer.
    async fn oci_for(&self, repository: &str) -> Result<Arc<oci_client::Client>, RegistryError> {
        let password = self.password().await?;
        let client = self.oci.read().await.clone();
        if self.oci_ready.lock().await.contains(repository) {
            return Ok(client);
        }
        let reference = self.reference(repository, "latest");
        let auth = RegistryAuth::Basic("AWS".into(), password.reveal().to_string());
        client
            .store_auth_if_needed(reference.resolve_registry(), &auth)
            .await;
        for op in [RegistryOperation::Pull, RegistryOperation::Push] {
            let token = RegistryTokenType::Basic("AWS".into(), password.reveal().to_string());
            client.tokens.insert(&reference, op, token).await;
        }
        self.oci_ready.lock().await.insert(repository.to_string());
        Ok(client)
    }

    /// The Basic credentials oci-client's calls take.
    async fn oci_auth(&self) -> Result<RegistryAuth, RegistryError> {
        Ok(RegistryAuth::Basic(
            "AWS".into(),
            self.password().await?.reveal().to_string(),
        ))
    }

    fn reference(&self, repository: &str, tag_or_digest: &str) -> Reference {
        if tag_or_digest.starts_with("sha256:") {
            Reference::with_digest(
                self.host.clone(),
                repository.to_string(),
                tag_or_digest.to_string(),
            )
        } else {
            Reference::with_tag(
                self.host.clone(),
                repository.to_string(),
                tag_or_digest.to_string(),
            )
        }
    }

    fn url(&self, path: &str) -> Url {
        let mut u = self.base.clone();
        u.set_path(path);
        u
    }

    /// A Location header, relative or absolute, as a URL on our endpoint: the
    /// registry may name its own host (ECR's, behind PrivateLink or a proxy).
    fn location(&self, res: &reqwest::Response, op: &str) -> Result<Url, RegistryError> {
        let raw = res
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!(
                    "{op}: the registry answered {} without a Location header",
                    res.status()
                ))
            })?;
        let parsed = self.base.join(raw).map_err(|_| {
            RegistryError::Protocol(format!("{op}: the registry sent a bad Location header"))
        })?;
        let mut u = self.base.clone();
        u.set_path(parsed.path());
        u.set_query(parsed.query());
        Ok(u)
    }

    fn transport(&self, op: &str, e: reqwest::Error) -> RegistryError {
        RegistryError::Transport {
            op: op.to_string(),
            endpoint: self.base.to_string(),
            source: e.without_url(),
        }
    }

    /// Turn a non-success answer into the error that says what it means.
    async fn refusal(op: &str, res: reqwest::Response) -> RegistryError {
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = res.text().await.unwrap_or_default();
        match status {
            401 | 403 => RegistryError::Denied {
                op: op.to_string(),
                status,
                body,
            },
            _ => RegistryError::Status {
                op: op.to_string(),
                status,
                body,
                retry_after,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_refresh_time() {
        let now = SystemTime::now();
        let at = |expires: Option<SystemTime>| Auth::new(Secret::new("p"), expires).refresh_at;
        let near = |a: SystemTime, b: SystemTime| {
            a.duration_since(b).unwrap_or_else(|e| e.duration()) < Duration::from_secs(5)
        };
        // ECR's 12 hours: refresh 15 minutes before the end.
        let twelve = now + Duration::from_secs(12 * 3600);
        assert!(near(at(Some(twelve)).unwrap(), twelve - REFRESH_MARGIN));
        // Little left: refresh halfway.
        let ten_min = now + Duration::from_secs(600);
        assert!(near(
            at(Some(ten_min)).unwrap(),
            now + Duration::from_secs(300)
        ));
        // Already past at fetch time (a fixed date from an emulator), or unknown: never.
        assert_eq!(at(Some(now - Duration::from_secs(3600))), None);
        assert_eq!(at(None), None);
    }

    #[test]
    fn endpoints() {
        for ok in [
            "https://r.example.com",
            "https://r.example.com:8443/",
            "http://127.0.0.1:5000",
            "http://[::1]:5000",
            "http://localhost:1",
        ] {
            assert!(parse_endpoint(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://10.0.0.1:5000",
            "http://registry.internal",
            "ftp://x",
            "https://x/v2/",
            "not a url",
            "https://x?a=b",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
    }
}
