//! Talking to ECR as a registry: the password from GetAuthorizationToken,
//! blob uploads streamed in one request, manifests as exact bytes, retries.
//!
//! Every registry request is hoist's own (reqwest), not oci-client's, because
//! ECR answers differently from the Distribution registry in ways that
//! oci-client 0.18 mistakes for errors or, worse, panics on:
//! - a manifest PUT is answered 201 *without* a `Location` header (ECR never
//!   sends one for manifests: apple/swift-container-plugin#27,
//!   google/containerregistry#10); oci-client's `push_manifest_raw` then
//!   strips the *tag* from the URL and panics when the reference is a digest;
//! - a manifest HEAD may come without `Docker-Content-Digest`;
//! - blob GETs are answered 307 to S3, another host, where the registry's
//!   credentials must not follow;
//! - its chunked and streamed blob pushes send 4 MiB PATCHes, which ECR
//!   refuses (parts under 5 MiB) and whose `Range` ECR stops advancing after
//!   the first (aws/containers-roadmap#2831);
//! - it reads error and manifest bodies whole, however large.
//!
//! Owning the requests also puts every one of them under the same timeouts,
//! size limits and retry layer.

mod blob;
pub mod ecr;
pub mod host;
mod manifest;
pub mod names;
pub mod policy;
pub mod reference;

mod upload;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use tokio::sync::{Mutex, RwLock};
use url::Url;

use crate::error::{Class, ConfigError, Diagnose};
use crate::image::{Digest, ImageError};
use crate::net::Network;
use crate::retry;
use crate::secret::Secret;
pub use ecr::{Ecr, EcrAuth, Mutability, RepoInfo};
pub use upload::{BlobOutcome, Upload};

/// What a push puts under its tags, as far as it is known before any blob
/// is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pushing {
    /// The manifest's digest.
    Manifest(Digest),
    /// A `docker save` archive whose layers are compressed on the way up:
    /// the digest of the manifest hoist writes for it is known only then.
    /// What is known before is its config (the image ID `docker images`
    /// shows), and that no tag names a manifest of it in the form hoist
    /// writes — such a manifest would have lent its layers, making the
    /// digest known (`push::plan::reusable_layers`).
    DockerConfig(Digest),
}

impl std::fmt::Display for Pushing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Pushing::Manifest(d) => write!(f, "this image is {d}"),
            Pushing::DockerConfig(c) => write!(
                f,
                "that is not the manifest hoist writes for this image (a docker save archive with config {c}, its image ID)"
            ),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{op}: the registry answered {status}{}", said(code.as_deref(), message))]
    Status {
        op: String,
        status: u16,
        /// The OCI error code of the body (`NAME_UNKNOWN`, `TAG_INVALID`…).
        code: Option<String>,
        /// What the body said, escaped and cut to one short line.
        message: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "{op}: the registry refused the credentials ({status}){}",
        said(None, message)
    )]
    Denied {
        op: String,
        status: u16,
        message: String,
    },
    #[error("{op}: could not reach the registry at {endpoint}")]
    Transport {
        op: String,
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{op}: the registry sent nothing for {}s while hoist was {waiting}", after.as_secs())]
    Stalled {
        op: String,
        waiting: &'static str,
        after: Duration,
    },
    #[error("{op}: the registry's answer is larger than {limit} bytes")]
    TooLarge { op: String, limit: u64 },
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
    RepositoryMissing {
        name: String,
        registry: String,
        /// Why the creation templates could not be checked, if they could not.
        templates: Option<String>,
    },
    #[error(
        "tag '{tag}' of {repository} already points at {existing}, and the repository's tags are immutable; {pushing}"
    )]
    TagConflict {
        tag: String,
        repository: String,
        existing: Digest,
        pushing: Pushing,
    },
    #[error("{op}: the registry says the digest is {registry_said}, not {expected}")]
    DigestMismatch {
        op: String,
        expected: Digest,
        registry_said: String,
    },
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error("{0}")]
    Protocol(String),
}

/// `: CODE: message` from what an error body said, when it said anything.
fn said(code: Option<&str>, message: &str) -> String {
    match (code, message.is_empty()) {
        (Some(c), false) => format!(": {c}: {message}"),
        (Some(c), true) => format!(": {c}"),
        (None, false) => format!(": {message}"),
        (None, true) => String::new(),
    }
}

impl RegistryError {
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

    /// The OCI error code the registry answered with, if any.
    pub fn code(&self) -> Option<&str> {
        match self.innermost() {
            RegistryError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

impl retry::Transient for RegistryError {
    fn is_transient(&self) -> bool {
        match self {
            RegistryError::Status { status, code, .. } => {
                retry::retryable_status(*status) || code.as_deref() == Some("TOOMANYREQUESTS")
            }
            RegistryError::Transport { source, .. } => retry::retryable_transport(source),
            RegistryError::Stalled { .. } => true,
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
    /// The registry could not be reached, or stopped answering.
    fn is_unreachable(&self) -> bool {
        match self.innermost() {
            RegistryError::Transport { source, .. } => source.is_connect() || source.is_timeout(),
            RegistryError::Stalled { .. } => true,
            _ => false,
        }
    }
}

impl Diagnose for RegistryError {
    fn class(&self) -> Class {
        match self.innermost() {
            RegistryError::Source(e) => e.class(),
            RegistryError::RepositoryMissing { .. }
            | RegistryError::TagConflict { .. }
            | RegistryError::Denied { .. } => Class::Usage,
            RegistryError::Status { code, .. } if code.as_deref() == Some("NAME_UNKNOWN") => {
                Class::Usage
            }
            RegistryError::Aws(e) => e.class(),
            _ => Class::Infrastructure,
        }
    }

    fn hint(&self) -> Option<String> {
        match self.innermost() {
            RegistryError::Source(e) => e.hint(),
            RegistryError::RepositoryMissing { name, templates, .. } => Some(format!(
                "create it (aws ecr create-repository --repository-name {name}), pass --create-repository to let hoist create it (scan on push, immutable tags, Lambda may pull), or add a repository creation template with CREATE_ON_PUSH for its prefix{}",
                match templates {
                    Some(why) => format!(" (hoist could not check the templates: {why})"),
                    None => String::new(),
                }
            )),
            RegistryError::TagConflict { .. } => Some("push under a new tag (e.g. the commit SHA); re-pushing the same image under the same tag succeeds. Do not push by digest only for a deploy if a lifecycle rule expires untagged images".into()),
            RegistryError::Denied { .. } => Some(DENIED_HINT.into()),
            RegistryError::Aws(e) => e.hint(),
            RegistryError::DigestMismatch { .. } => Some("the registry (or a proxy in front of it) changed the bytes hoist sent; check --registry-endpoint and any proxy in the path".into()),
            RegistryError::TooLarge { .. } => Some("the registry (or a proxy in front of it) is not answering as a registry does; check --registry-endpoint".into()),
            e if e.is_unreachable() => Some(
                "check the network path to the registry (HTTPS_PROXY / NO_PROXY, --registry-endpoint) and, for a private CA, AWS_CA_BUNDLE; --http-timeout sets how long hoist waits on a silent connection".into(),
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
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
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

/// A loopback host: 127.0.0.0/8, ::1 or `localhost`.
pub(crate) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
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
    /// Small requests (HEAD, GET, manifest PUT, POST): a read timeout covers
    /// the wait for the answer and every read of its body.
    http: reqwest::Client,
    /// Blob uploads: no read timeout (the answer comes only after the whole
    /// body, however long that takes); a watchdog on the body's progress
    /// takes its place (upload.rs).
    upload: reqwest::Client,
    base: Url,
    /// ECR's own host name (`<account>.dkr.ecr.<region>.amazonaws.com`), used
    /// in image URIs whatever the endpoint.
    pub ecr_host: String,
    auth: RwLock<Auth>,
    ecr: Ecr,
    policy: retry::Policy,
    /// How long a connection may stay silent (no answer, no body bytes
    /// either way) before the attempt is given up.
    idle: Duration,
    /// Blobs pushed during this run and the repository they went to: mount
    /// sources for later pushes to other repositories.
    pushed: Mutex<HashMap<Digest, String>>,
    on_secret: Box<dyn Fn(&str) + Send + Sync>,
}

/// Refresh the password when it has less than this left.
const REFRESH_MARGIN: Duration = Duration::from_secs(15 * 60);

/// How much of an error answer's body hoist reads: enough for the OCI error
/// envelope, never a body that goes on and on.
const ERROR_BODY_LIMIT: usize = 4096;

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
        crate::secret::register_registry_password(auth.password.reveal());
        on_secret(auth.password.reveal());
        // Image URIs name the standard host, whichever endpoint (FIPS,
        // dual-stack) GetAuthorizationToken pointed at.
        let ecr_host = host::canonical(&host_port(&auth.endpoint));
        let base = endpoint.unwrap_or_else(|| auth.endpoint.clone());
        let idle = net.idle_timeout;
        let client = |read_timeout| {
            net.registry_client(read_timeout)
                .map_err(|e| RegistryError::Protocol(e.to_string()))
        };
        Ok(Registry {
            http: client(Some(idle))?,
            upload: client(None)?,
            base,
            ecr_host,
            auth: RwLock::new(Auth::new(auth.password, auth.expires_at)),
            ecr,
            policy,
            idle,
            pushed: Mutex::new(HashMap::new()),
            on_secret,
        })
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
        crate::secret::register_registry_password(new.password.reveal());
        (self.on_secret)(new.password.reveal());
        *auth = Auth::new(new.password, new.expires_at);
        tracing::info!("refreshed the ECR registry password");
        Ok(auth.password.clone())
    }

    /// `Basic base64(AWS:<password>)`: ECR has no token service; every
    /// request carries the Basic credentials (no `/v2/` probe, no challenge).
    fn basic(password: &Secret) -> reqwest::header::HeaderValue {
        use base64::Engine;
        let creds =
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", password.reveal()));
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Basic {creds}"))
            .unwrap_or_else(|_| reqwest::header::HeaderValue::from_static(""));
        v.set_sensitive(true);
        v
    }

    /// A request on the small-request client, with the credentials.
    async fn request(
        &self,
        method: reqwest::Method,
        url: Url,
    ) -> Result<reqwest::RequestBuilder, RegistryError> {
        let password = self.password().await?;
        Ok(self
            .http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, Self::basic(&password)))
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
        if e.is_timeout() && !e.is_connect() {
            return RegistryError::Stalled {
                op: op.to_string(),
                waiting: "waiting for its answer",
                after: self.idle,
            };
        }
        RegistryError::Transport {
            op: op.to_string(),
            endpoint: self.base.to_string(),
            source: e.without_url(),
        }
    }

    /// Send on the small-request client.
    async fn send(
        &self,
        op: &str,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, RegistryError> {
        req.send().await.map_err(|e| self.transport(op, e))
    }

    /// A body of at most `limit` bytes, read as it comes: a registry that
    /// sends more (or never stops) is cut off at the limit, not buffered.
    async fn read_limited(
        &self,
        op: &str,
        mut res: reqwest::Response,
        limit: u64,
    ) -> Result<bytes::Bytes, RegistryError> {
        if res.content_length().is_some_and(|n| n > limit) {
            return Err(RegistryError::TooLarge {
                op: op.to_string(),
                limit,
            });
        }
        let mut buf = bytes::BytesMut::new();
        while let Some(chunk) = res.chunk().await.map_err(|e| self.transport(op, e))? {
            if buf.len() as u64 + chunk.len() as u64 > limit {
                return Err(RegistryError::TooLarge {
                    op: op.to_string(),
                    limit,
                });
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(buf.freeze())
    }

    /// Turn a non-success answer into the error that says what it means:
    /// its status, and the OCI error code and message from the first few KiB
    /// of its body (escaped: it is text from outside).
    async fn refusal(op: &str, mut res: reqwest::Response) -> RegistryError {
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let mut body = Vec::new();
        // A read error or a slow body only shortens what is shown.
        while body.len() < ERROR_BODY_LIMIT {
            match tokio::time::timeout(Duration::from_secs(5), res.chunk()).await {
                Ok(Ok(Some(chunk))) => body.extend_from_slice(&chunk),
                _ => break,
            }
        }
        body.truncate(ERROR_BODY_LIMIT);
        let (code, message) = envelope(&body);
        match status {
            401 | 403 => RegistryError::Denied {
                op: op.to_string(),
                status,
                message,
            },
            _ => RegistryError::Status {
                op: op.to_string(),
                status,
                code,
                message,
                retry_after,
            },
        }
    }
}

/// The first error of an OCI error envelope (`{"errors":[{"code","message"}]}`)
/// or, for any other body, its start — as one escaped line.
fn envelope(body: &[u8]) -> (Option<String>, String) {
    #[derive(serde::Deserialize)]
    struct Envelope {
        errors: Vec<Entry>,
    }
    #[derive(serde::Deserialize)]
    struct Entry {
        code: String,
        #[serde(default)]
        message: String,
    }
    let text = String::from_utf8_lossy(body);
    match serde_json::from_slice::<Envelope>(body) {
        Ok(e) if !e.errors.is_empty() => {
            let first = &e.errors[0];
            (
                Some(crate::text::external(&first.code, 64)),
                crate::text::external(&first.message, crate::text::SNIPPET),
            )
        }
        _ => (None, crate::text::external(&text, crate::text::SNIPPET)),
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

    #[test]
    fn error_bodies() {
        let table: [(&[u8], Option<&str>, &str); 5] = [
            (
                br#"{"errors":[{"code":"TAG_INVALID","message":"The image tag 'v1' already exists"}]}"#,
                Some("TAG_INVALID"),
                "The image tag 'v1' already exists",
            ),
            (
                br#"{"errors":[{"code":"NAME_UNKNOWN"}]}"#,
                Some("NAME_UNKNOWN"),
                "",
            ),
            (b"<html>bad gateway</html>\n", None, "<html>bad gateway</html>"),
            (b"line\n::error::forged", None, "line\\n::error::forged"),
            // Cut mid-envelope (the first 4 KiB of a larger body): shown raw.
            (br#"{"errors":[{"code":"DEN"#, None, r#"{"errors":[{"code":"DEN"#),
        ];
        for (body, code, message) in table {
            let (c, m) = envelope(body);
            assert_eq!(c.as_deref(), code, "{body:?}");
            assert_eq!(m, message, "{body:?}");
        }
        let (_, long) = envelope(&vec![b'x'; 4096]);
        assert!(long.chars().count() <= crate::text::SNIPPET + 1);
    }
}
