//! The suite's ECR: an HTTP front on 127.0.0.1 that makes the local
//! Distribution registry answer as Amazon ECR does, so that no push, gate,
//! deploy or ship test can pass against the Distribution registry alone.
//! Every hoist run in the suite goes through one (`common::local()` points
//! `HOIST_REGISTRY_ENDPOINT` at a front started for the test process); tests
//! that need to bend the registry further start their own with `Options`.
//!
//! hoist talks plain http to it (hoist allows plain http to loopback only);
//! it talks https to the registry, trusting the local CA, and asks moto's ECR
//! API what ECR itself would know (does the repository exist, are its tags
//! immutable). Bodies are streamed both ways, never buffered (manifests
//! excepted: ECR reads them whole too, up to its 4 MiB limit).
//!
//! What ECR does and the Distribution registry does not, as the front plays
//! it (the sources are the ones cited in the README's "How hoist was
//! verified"):
//! - a manifest PUT is answered 201 **without a `Location` header**
//!   (apple/swift-container-plugin#27, google/containerregistry#10);
//! - manifest GETs come without `Docker-Content-Digest`, and so do HEADs by
//!   digest (HEADs by tag keep it; `head_without_digest` strips it from
//!   every HEAD, as ECR did in 2017);
//! - a blob PATCH is answered 201, not 202; after the first PATCH of an
//!   upload session the `Range` stops advancing while the data is kept, and
//!   a PATCH whose first byte is not where the session stands is refused
//!   `416 BLOB_UPLOAD_INVALID "First byte of the layer part is 0 instead of
//!   N"` (aws/containers-roadmap#2831 as corrected, apple/containerization#790);
//!   a non-final part under 5 MiB is refused (LayerPartTooSmallException);
//! - IMMUTABLE repositories refuse any manifest PUT to a tag that exists —
//!   even for the same digest — with `400 TAG_INVALID`;
//! - a blob GET is answered `307` to a second server on another loopback
//!   address (127.0.0.2, playing S3) that refuses any request carrying an
//!   `Authorization` header, as S3 refuses a presigned URL sent with one;
//! - a cross-repository mount is answered 202 with a fresh upload session
//!   (blob mounting is off by default);
//! - a repository that does not exist is `404 NAME_UNKNOWN` (the Distribution
//!   registry creates repositories on push); with a repository creation
//!   template for CREATE_ON_PUSH matching its name, the first write creates
//!   it with the template's settings;
//! - manifest media types with parameters (`;`) are refused, referrer
//!   manifests (with `subject`) are refused 405 (aws/containers-roadmap#2783),
//!   manifests over 4 MiB and tags over 300 characters are refused;
//! - an unauthenticated `GET /v2/` is 401 with ECR's Basic challenge.
//!
//! It keeps a log of every request (method, path, query, body size), so a
//! test can say which registry operations a command made — tests/iam.rs
//! maps them to the IAM actions ECR authorizes them as.
//!
//! More options, for the tests that need them: `faults` (500, 429 or a
//! dropped connection instead of an answer, deterministic for a seed),
//! `probe_503`, `deny` (every request 401), `lie` (the registry claims
//! another digest for a manifest PUT and another size for blob HEADs),
//! `plain` (Distribution's own answers: a control for tests of the front
//! itself, never for hoist's runs).
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::TryStreamExt;
use http_body_util::{BodyDataStream, BodyExt, Empty, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};

type Body = BoxBody<Bytes, std::io::Error>;

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Forward as the Distribution registry answers: a control for tests of
    /// the front itself, never for hoist's own runs.
    pub plain: bool,
    pub faults: Option<Faults>,
    /// Answer every `GET /v2/` (the probe clients make to learn how to
    /// authenticate) 503 without a challenge, as a throttled or failing
    /// front end does, and forward everything else.
    pub probe_503: bool,
    /// Refuse every request as unauthorized.
    pub deny: bool,
    /// Answer every manifest HEAD without `Docker-Content-Digest`.
    pub head_without_digest: bool,
    /// Repository creation templates applied for CREATE_ON_PUSH.
    pub templates: &'static [Template],
    /// A registry that lies about what it stored: another digest in a
    /// manifest PUT's `Docker-Content-Digest`, another size in blob HEADs.
    pub lie: bool,
    /// Blob HEADs answered 200 without Content-Length.
    pub head_without_length: bool,
    /// The registry setting BLOB_MOUNTING=ENABLED (off by default, as on
    /// ECR): mounts are passed on, and the Distribution registry mounts a
    /// blob the source repository holds. (ECR also requires a manifest in
    /// the source that references it, and the same encryption.)
    pub blob_mounting: bool,
}

/// A repository creation template with CREATE_ON_PUSH in its `appliedFor`.
#[derive(Clone, Copy, Debug)]
pub struct Template {
    /// `team` applies to `team/…`; `ROOT` to every repository no other
    /// template covers (there is always an assumed `/` after a prefix).
    pub prefix: &'static str,
    pub immutable: bool,
}

/// The template ECR applies to a push into the missing repository `name`:
/// the longest prefix that covers it, else ROOT.
pub fn template_for(templates: &[Template], name: &str) -> Option<Template> {
    templates
        .iter()
        .filter(|t| t.prefix != "ROOT" && name.starts_with(&format!("{}/", t.prefix)))
        .max_by_key(|t| t.prefix.len())
        .or_else(|| templates.iter().find(|t| t.prefix == "ROOT"))
        .copied()
}

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// The share of requests answered with a fault instead of being
    /// forwarded (until `MAX_FAULTS` is reached).
    pub share: f64,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    Status500,
    /// With `Retry-After: 0` or without one.
    Status429 {
        retry_after: bool,
    },
    /// Close the connection without an answer (for a PATCH, after reading
    /// part of its body: the upload dies mid-stream).
    Drop,
}

/// Never more faults in a row than this, so one request is not starved.
pub const MAX_IN_A_ROW: u32 = 3;
/// Never more faults in all than this: hoist makes 6 attempts per operation,
/// so five faults cannot exhaust any one operation's budget, whichever order
/// parallel uploads reach the proxy in. Without it a share of 0.3 fails a
/// whole attempt (HEAD, POST, PATCH, PUT) three times in four, and a push
/// would succeed or not by luck.
pub const MAX_FAULTS: u32 = 5;

/// ECR's smallest non-final layer part.
pub const MIN_PART: u64 = 5 << 20;
/// ECR's largest manifest.
pub const MAX_MANIFEST: usize = 4 * 1024 * 1024;

impl Faults {
    /// What the proxy does with the first `n` requests, in arrival order.
    /// The sequence depends on the seed alone, not on which requests come:
    /// a test can check that its seed injects every kind early enough.
    pub fn preview(&self, n: usize) -> Vec<Option<Fault>> {
        let mut plan = Plan::new(*self);
        (0..n).map(|_| plan.next()).collect()
    }
}

/// The fault decisions: splitmix64 (good output from any seed, even 0 or 1).
struct Plan {
    faults: Faults,
    state: u64,
    in_a_row: u32,
    injected: u32,
}

impl Plan {
    fn new(faults: Faults) -> Plan {
        Plan {
            faults,
            state: faults.seed,
            in_a_row: 0,
            injected: 0,
        }
    }

    fn roll(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn next(&mut self) -> Option<Fault> {
        // Two rolls per request whatever happens, so the sequence is a
        // function of the request count only.
        let (hit, kind) = (self.roll(), self.roll());
        let uniform = (hit >> 11) as f64 / (1u64 << 53) as f64; // in [0, 1)
        let hit = uniform < self.faults.share;
        if !hit || self.in_a_row >= MAX_IN_A_ROW || self.injected >= MAX_FAULTS {
            self.in_a_row = 0;
            return None;
        }
        self.in_a_row += 1;
        self.injected += 1;
        Some(match kind % 3 {
            0 => Fault::Status500,
            1 => Fault::Status429 {
                retry_after: kind & 8 != 0,
            },
            _ => Fault::Drop,
        })
    }
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Live counters, readable while hoist runs; `snapshot` for assertions.
        #[derive(Debug, Default)]
        pub struct Stats { $($name: AtomicUsize,)* }

        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Counts { $($(#[$doc])* pub $name: usize,)* }

        impl Stats {
            pub fn snapshot(&self) -> Counts {
                Counts { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Every request that reached the proxy, faulted or not.
    requests,
    /// Blob PATCHes handled; PATCHes answered with a fault are not counted.
    patches,
    /// PATCHes after the first of their session (answered with the frozen Range).
    later_patches,
    /// PATCHes refused 416: their first byte was not where the session stood.
    patches_416,
    /// PATCHes refused because an earlier part was under 5 MiB.
    parts_too_small,
    mounts_answered_202,
    media_types_refused,
    referrers_refused,
    /// Manifest PUTs refused TAG_INVALID (an immutable tag that exists).
    tags_refused,
    /// Requests for a repository that does not exist (NAME_UNKNOWN).
    names_unknown,
    /// Repositories created from a CREATE_ON_PUSH template.
    created_from_template,
    manifests_put,
    /// Manifest answers sent without their Docker-Content-Digest.
    digests_withheld,
    /// Blob GETs answered 307 to the S3 stand-in.
    blob_redirects,
    /// Requests the S3 stand-in served.
    s3_gets,
    /// Requests the S3 stand-in refused for carrying an Authorization header.
    s3_authorization_refused,
    faults_500,
    faults_429,
    faults_dropped,
}

impl Counts {
    pub fn faults(&self) -> usize {
        self.faults_500 + self.faults_429 + self.faults_dropped
    }
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Relaxed);
}

/// What the front needs to know about the real pieces behind it.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// `https://127.0.0.1:PORT` of the registry, no trailing slash.
    pub endpoint: String,
    /// The local CA (PEM) the registry's certificate chains to.
    pub ca: Vec<u8>,
    /// The registry password (user AWS).
    pub password: String,
    /// moto's endpoint, for ECR's API.
    pub moto: String,
    pub region: String,
}

impl Upstream {
    /// The local environment's, from `common::local()`.
    pub fn local() -> Upstream {
        crate::common::local().upstream.clone()
    }

    pub fn basic_auth(&self) -> String {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("AWS:{}", self.password))
        )
    }

    /// A client for the registry: trusts the local CA, follows no redirects,
    /// and ignores the test runner's own proxy settings.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&self.ca).expect("a PEM CA"))
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
    }

    fn ecr(&self) -> aws_sdk_ecr::Client {
        let config = aws_sdk_ecr::Config::builder()
            .behavior_version(aws_sdk_ecr::config::BehaviorVersion::latest())
            .region(aws_sdk_ecr::config::Region::new(self.region.clone()))
            .endpoint_url(&self.moto)
            .http_client(super::lambda::http_client())
            .credentials_provider(aws_sdk_ecr::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .build();
        aws_sdk_ecr::Client::from_conf(config)
    }
}

/// One request the front received (the S3 stand-in's are not logged:
/// a presigned URL carries its own authorization).
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// `/v2/…`, as sent (percent-encoding kept).
    pub path: String,
    pub query: Option<String>,
    /// The request's Content-Length, when it has one.
    pub length: Option<u64>,
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    /// `http://127.0.0.2:PORT` of the S3 stand-in.
    pub s3: String,
    pub stats: Arc<Stats>,
    log: Arc<Mutex<Vec<Seen>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An endpoint where nothing listens (connections are refused): a registry
/// that stays down. The listener is kept open with a backlog that is never
/// accepted from would answer; instead the socket is bound and never
/// listened on, so the port stays reserved for the test process and
/// connections to it are refused.
pub fn refused_endpoint() -> String {
    use std::sync::OnceLock;
    static RESERVED: OnceLock<socket2::Socket> = OnceLock::new();
    let socket = RESERVED.get_or_init(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        s
    });
    let port = socket.local_addr().unwrap().as_socket().unwrap().port();
    format!("http://127.0.0.1:{port}")
}

impl Proxy {
    /// `http://127.0.0.1:PORT`, for hoist's --registry-endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn counts(&self) -> Counts {
        self.stats.snapshot()
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<Seen> {
        self.log.lock().unwrap().clone()
    }

    pub fn start(options: Options) -> Proxy {
        Self::start_with(options, Upstream::local())
    }

    pub fn start_with(options: Options, upstream: Upstream) -> Proxy {
        let client = upstream.client();
        let ecr = upstream.ecr();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        // S3's role: another host, as far as any client can tell.
        let s3_listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
        s3_listener.set_nonblocking(true).unwrap();
        let s3 = format!("http://{}", s3_listener.local_addr().unwrap());
        let stats = Arc::new(Stats::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(State {
            options,
            me: format!("http://{addr}"),
            s3: s3.clone(),
            client,
            upstream,
            ecr,
            stats: stats.clone(),
            log: log.clone(),
            plan: Mutex::new(options.faults.map(Plan::new)),
            sessions: Mutex::new(HashMap::new()),
            repos: tokio::sync::Mutex::new(HashMap::new()),
        });
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let s3_listener = tokio::net::TcpListener::from_std(s3_listener).unwrap();
                loop {
                    let (accepted, s3_side) = tokio::select! {
                        _ = &mut stopped => break,
                        a = listener.accept() => (a, false),
                        a = s3_listener.accept() => (a, true),
                    };
                    let Ok((stream, _)) = accepted else { continue };
                    let state = state.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let state = state.clone();
                            async move {
                                if s3_side {
                                    s3_get(state, req).await
                                } else {
                                    handle(state, req).await
                                }
                            }
                        });
                        // An error here is a dropped connection: a fault we
                        // injected, or the client going away.
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
            // Dropping the runtime cancels the connections still open.
        });
        Proxy {
            addr,
            s3,
            stats,
            log,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

struct State {
    options: Options,
    /// `http://127.0.0.1:PORT` of this proxy.
    me: String,
    s3: String,
    client: reqwest::Client,
    upstream: Upstream,
    ecr: aws_sdk_ecr::Client,
    stats: Arc<Stats>,
    log: Arc<Mutex<Vec<Seen>>>,
    plan: Mutex<Option<Plan>>,
    /// Upload session (its UUID) → what ECR remembers of it.
    sessions: Mutex<HashMap<String, Session>>,
    /// Repositories known to exist, with what ECR knows of their tags.
    repos: tokio::sync::Mutex<HashMap<String, Repo>>,
}

#[derive(Default)]
struct Session {
    patches: usize,
    /// The Range answered after the first PATCH: where ECR's answer stays.
    first_range: Option<String>,
    /// How many bytes the session really holds.
    stored: u64,
    /// The size of the first part (a non-final part must be ≥ 5 MiB).
    first_part: u64,
}

#[derive(Clone, Debug)]
struct Repo {
    mutability: String,
    filters: Vec<String>,
}

impl Repo {
    fn immutable(&self, tag: &str) -> bool {
        let listed = self.filters.iter().any(|f| wildcard(f, tag));
        match self.mutability.as_str() {
            "IMMUTABLE" => true,
            "IMMUTABLE_WITH_EXCLUSION" => !listed,
            "MUTABLE_WITH_EXCLUSION" => listed,
            _ => false,
        }
    }
}

/// ECR's exclusion filters: `*` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

/// Hop-by-hop headers, which a proxy does not pass on (RFC 9110 §7.6.1).
fn hop_by_hop(name: &str) -> bool {
    matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
    )
}

fn json(status: u16, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed())
        .unwrap()
}

/// An OCI error envelope, as ECR writes them.
fn oci_error(status: u16, code: &str, message: &str) -> Response<Body> {
    json(
        status,
        serde_json::json!({ "errors": [{ "code": code, "message": message }] }).to_string(),
    )
}

fn empty() -> Body {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Read and discard up to `limit` bytes of a request body (all of it with
/// None), frame by frame: nothing is kept in memory.
async fn discard(mut body: Incoming, limit: Option<usize>) -> usize {
    let mut n = 0;
    while let Some(Ok(frame)) = body.frame().await {
        n += frame.data_ref().map_or(0, Bytes::len);
        if limit.is_some_and(|l| n >= l) {
            break;
        }
    }
    n
}

/// A request body of at most `limit` bytes, or None when it is longer.
async fn read_body(mut body: Incoming, limit: usize) -> Option<Bytes> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.ok()?;
        if let Some(d) = frame.data_ref() {
            if buf.len() + d.len() > limit {
                return None;
            }
            buf.extend_from_slice(d);
        }
    }
    Some(buf.freeze())
}

/// `/v2/<name>/blobs/uploads/<uuid>` → the uuid; None for the POST that
/// starts a session (`…/uploads/`).
fn session_of(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/blobs/uploads/")?;
    let id = rest.trim_end_matches('/');
    (!id.is_empty()).then(|| id.to_string())
}

/// `/v2/<name>/<kind>/<rest>` with kind manifests, blobs or tags.
fn split_v2(path: &str) -> Option<(&str, &'static str, &str)> {
    let inner = path.strip_prefix("/v2/")?;
    ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|marker| {
            inner.find(marker).map(|i| {
                (
                    i,
                    &inner[..i],
                    marker.trim_matches('/'),
                    &inner[i + marker.len()..],
                )
            })
        })
        .min_by_key(|(i, ..)| *i)
        .map(|(_, name, kind, rest)| {
            let kind: &'static str = match kind {
                "manifests" => "manifests",
                "blobs" => "blobs",
                _ => "tags",
            };
            (name, kind, rest)
        })
}

/// `a-b` of a Range or Content-Range (a `bytes ` prefix allowed).
fn range(v: &str) -> Option<(u64, u64)> {
    let v = v
        .trim()
        .trim_start_matches("bytes")
        .trim()
        .trim_start_matches('=');
    let (a, b) = v.split_once('-')?;
    Some((a.trim().parse().ok()?, b.trim().parse().ok()?))
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let stats = &state.stats;
    bump(&stats.requests);
    state.log.lock().unwrap().push(Seen {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
        query: req.uri().query().map(str::to_string),
        length: req
            .headers()
            .get(hyper::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()),
    });
    let fault = state.plan.lock().unwrap().as_mut().and_then(Plan::next);
    if let Some(fault) = fault {
        return inject(stats, fault, req).await;
    }

    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if state.options.deny {
        return Ok(challenge(oci_error(
            401,
            "DENIED",
            "Your authorization token is invalid.",
        )));
    }
    if state.options.probe_503 && method == Method::GET && path == "/v2/" {
        return Ok(oci_error(503, "UNAVAILABLE", "Service Unavailable"));
    }
    if state.options.plain {
        return forward(&state, req, None, Tweak::default()).await;
    }
    if !req.headers().contains_key(hyper::header::AUTHORIZATION) {
        return Ok(challenge(oci_error(401, "DENIED", "Not Authorized")));
    }
    let Some((name, kind, rest)) = split_v2(&path) else {
        return forward(&state, req, None, Tweak::default()).await;
    };
    let (name, rest) = (name.to_string(), rest.to_string());
    let write = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    let Some(repo) = state.repository(&name, write).await else {
        bump(&stats.names_unknown);
        return Ok(oci_error(
            404,
            "NAME_UNKNOWN",
            &format!(
                "The repository with name '{name}' does not exist in the registry with id '123456789012'"
            ),
        ));
    };

    match (method.clone(), kind) {
        (Method::PUT, "manifests") => put_manifest(&state, req, &name, &rest, &repo).await,
        (Method::GET | Method::HEAD, "manifests") => {
            let by_digest = rest.starts_with("sha256:");
            let withhold = method == Method::GET || by_digest || state.options.head_without_digest;
            forward(
                &state,
                req,
                None,
                Tweak {
                    withhold_digest: withhold,
                    ..Default::default()
                },
            )
            .await
        }
        (Method::HEAD, "blobs")
            if (state.options.lie || state.options.head_without_length)
                && !rest.starts_with("uploads") =>
        {
            forward(
                &state,
                req,
                None,
                Tweak {
                    wrong_length: state.options.lie,
                    no_length: state.options.head_without_length,
                    ..Default::default()
                },
            )
            .await
        }
        (Method::GET, "blobs") if !rest.starts_with("uploads") => {
            blob_redirect(&state, req, &name, &rest).await
        }
        (Method::POST, "blobs") if rest.trim_end_matches('/') == "uploads" => {
            // Blob mounting off (ECR's default): a mount request gets a
            // plain upload session.
            let mount = req
                .uri()
                .query()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("mount=")));
            let query = if state.options.blob_mounting {
                None
            } else {
                Some(None)
            };
            let res = forward(&state, req, query, Tweak::default()).await?;
            if mount && res.status() == StatusCode::ACCEPTED {
                bump(&stats.mounts_answered_202);
            }
            Ok(res)
        }
        (Method::PATCH, "blobs") => patch(&state, req).await,
        _ => forward(&state, req, None, Tweak::default()).await,
    }
}

/// ECR's Basic challenge on a 401.
fn challenge(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut().insert(
        "Www-Authenticate",
        r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#
            .parse()
            .unwrap(),
    );
    r
}

impl State {
    /// The repository as ECR knows it (moto's ECR API), created first from
    /// a CREATE_ON_PUSH template when this is a write and one applies.
    async fn repository(&self, name: &str, write: bool) -> Option<Repo> {
        let mut repos = self.repos.lock().await;
        if let Some(r) = repos.get(name) {
            return Some(r.clone());
        }
        let found = match self
            .ecr
            .describe_repositories()
            .repository_names(name)
            .send()
            .await
        {
            Ok(out) => out.repositories().first().map(|r| Repo {
                mutability: r
                    .image_tag_mutability()
                    .map(|m| m.as_str().to_string())
                    .unwrap_or_else(|| "MUTABLE".into()),
                filters: r
                    .image_tag_mutability_exclusion_filters()
                    .iter()
                    .map(|f| f.filter().to_string())
                    .collect(),
            }),
            Err(_) => None,
        };
        let found = match (found, write) {
            (Some(r), _) => Some(r),
            (None, true) => match template_for(self.options.templates, name) {
                Some(t) => {
                    let mutability = if t.immutable {
                        aws_sdk_ecr::types::ImageTagMutability::Immutable
                    } else {
                        aws_sdk_ecr::types::ImageTagMutability::Mutable
                    };
                    self.ecr
                        .create_repository()
                        .repository_name(name)
                        .image_tag_mutability(mutability.clone())
                        .send()
                        .await
                        .ok()?;
                    bump(&self.stats.created_from_template);
                    Some(Repo {
                        mutability: mutability.as_str().to_string(),
                        filters: vec![],
                    })
                }
                None => None,
            },
            (None, false) => None,
        };
        if let Some(r) = &found {
            repos.insert(name.to_string(), r.clone());
        }
        found
    }
}

/// What `forward` changes in the upstream's answer.
#[derive(Default, Clone, Copy)]
struct Tweak {
    /// Leave out Docker-Content-Digest.
    withhold_digest: bool,
    /// Leave out Location (ECR's manifest PUT).
    no_location: bool,
    /// Claim another digest in Docker-Content-Digest.
    wrong_digest: bool,
    /// Claim another Content-Length.
    wrong_length: bool,
    /// Leave out Content-Length.
    no_length: bool,
    /// Answer 201 instead of 202 (ECR's PATCH).
    created: bool,
    /// Send this Range instead of the upstream's.
    range: Option<&'static str>,
}

/// Send the request on to the registry and its answer back, Location
/// rewritten to point here. `query`: Some(q) replaces the query string.
async fn forward(
    state: &State,
    req: Request<Incoming>,
    query: Option<Option<String>>,
    tweak: Tweak,
) -> Result<Response<Body>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = reqwest::Body::wrap_stream(BodyDataStream::new(body));
    let res = send(state, &parts, query, body).await?;
    let stats = &state.stats;
    if tweak.withhold_digest && res.headers().contains_key("docker-content-digest") {
        bump(&stats.digests_withheld);
    }
    Ok(answer(state, res, tweak, None))
}

async fn send(
    state: &State,
    parts: &hyper::http::request::Parts,
    query: Option<Option<String>>,
    body: reqwest::Body,
) -> Result<reqwest::Response, std::io::Error> {
    let path = parts.uri.path();
    let query = match query {
        Some(q) => q,
        None => parts.uri.query().map(str::to_string),
    };
    let url = match &query {
        Some(q) => format!("{}{path}?{q}", state.upstream.endpoint),
        None => format!("{}{path}", state.upstream.endpoint),
    };
    let mut out = state.client.request(parts.method.clone(), url);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name.as_str()) {
            out = out.header(name, value);
        }
    }
    out.body(body).send().await.map_err(std::io::Error::other)
}

fn answer(
    state: &State,
    res: reqwest::Response,
    tweak: Tweak,
    range: Option<String>,
) -> Response<Body> {
    let mut status = res.status();
    if tweak.created && status == StatusCode::ACCEPTED {
        status = StatusCode::CREATED;
    }
    let mut answer = Response::builder().status(status);
    for (name, value) in res.headers() {
        let n = name.as_str();
        if hop_by_hop(n)
            || (tweak.withhold_digest && n == "docker-content-digest")
            || (tweak.no_location && n == "location")
        {
            continue;
        }
        if n == "location" {
            // The registry names itself; send the client back here.
            let loc = value.to_str().unwrap_or_default();
            let loc = match loc.strip_prefix(&state.upstream.endpoint) {
                Some(rest) => format!("{}{rest}", state.me),
                None => loc.to_string(),
            };
            answer = answer.header(name, loc);
        } else if n == "docker-content-digest" && tweak.wrong_digest {
            answer = answer.header(
                name,
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            );
        } else if n == "content-length" && tweak.no_length {
            // Left out.
        } else if n == "content-length" && tweak.wrong_length {
            let n: u64 = value
                .to_str()
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            answer = answer.header(name, (n + 1).to_string());
        } else if n == "range" && (range.is_some() || tweak.range.is_some()) {
            let r = range.clone().or(tweak.range.map(str::to_string)).unwrap();
            answer = answer.header(name, r);
        } else {
            answer = answer.header(name, value);
        }
    }
    let stream = res
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    answer
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap()
}

/// A manifest PUT, checked as ECR checks it, answered 201 without Location.
async fn put_manifest(
    state: &State,
    req: Request<Incoming>,
    name: &str,
    reference: &str,
    repo: &Repo,
) -> Result<Response<Body>, std::io::Error> {
    let stats = &state.stats;
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if content_type.contains(';') {
        bump(&stats.media_types_refused);
        // What ECR answers: the media type fails its pattern.
        return Ok(oci_error(
            400,
            "MANIFEST_INVALID",
            "Invalid parameter at 'ImageManifestMediaType' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [\\w.+-]+/[\\w.+-]+'",
        ));
    }
    let (parts, body) = req.into_parts();
    let Some(bytes) = read_body(body, MAX_MANIFEST).await else {
        return Ok(oci_error(
            400,
            "MANIFEST_INVALID",
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Member must have length less than or equal to 4194304'",
        ));
    };
    let Ok(manifest) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(oci_error(400, "MANIFEST_INVALID", "manifest invalid"));
    };
    if manifest.get("subject").is_some() {
        bump(&stats.referrers_refused);
        return Ok(oci_error(
            405,
            "UNSUPPORTED",
            "The operation is unsupported.",
        ));
    }
    if !reference.starts_with("sha256:") {
        let tag = reference;
        if tag.is_empty() || tag.len() > 300 {
            bump(&stats.tags_refused);
            return Ok(oci_error(
                400,
                "TAG_INVALID",
                "Invalid parameter at 'imageTag' failed to satisfy constraint: 'Member must have length less than or equal to 300'",
            ));
        }
        if repo.immutable(tag) && tag_exists(state, name, tag).await? {
            bump(&stats.tags_refused);
            return Ok(oci_error(
                400,
                "TAG_INVALID",
                &format!(
                    "The image tag '{tag}' already exists in the '{name}' repository and cannot be overwritten because the tag is immutable."
                ),
            ));
        }
    }
    let res = send(state, &parts, None, reqwest::Body::from(bytes)).await?;
    if res.status().is_success() {
        bump(&stats.manifests_put);
    }
    Ok(answer(
        state,
        res,
        Tweak {
            no_location: true,
            wrong_digest: state.options.lie,
            ..Default::default()
        },
        None,
    ))
}

async fn tag_exists(state: &State, name: &str, tag: &str) -> std::io::Result<bool> {
    let res = state
        .client
        .head(format!("{}/v2/{name}/manifests/{tag}", state.upstream.endpoint))
        .header("Authorization", state.upstream.basic_auth())
        .header(
            "Accept",
            "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .map_err(std::io::Error::other)?;
    Ok(res.status().is_success())
}

/// A blob GET: the blob is there → 307 to the S3 stand-in with a presigned
/// URL; otherwise the registry's own answer (404 BLOB_UNKNOWN).
async fn blob_redirect(
    state: &State,
    req: Request<Incoming>,
    name: &str,
    digest: &str,
) -> Result<Response<Body>, std::io::Error> {
    let head = state
        .client
        .head(format!(
            "{}/v2/{name}/blobs/{digest}",
            state.upstream.endpoint
        ))
        .header("Authorization", state.upstream.basic_auth())
        .send()
        .await
        .map_err(std::io::Error::other)?;
    if !head.status().is_success() {
        return forward(state, req, None, Tweak::default()).await;
    }
    bump(&state.stats.blob_redirects);
    let location = format!(
        "{}/{name}/blobs/{digest}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=5e5e5e",
        state.s3
    );
    Ok(Response::builder()
        .status(307)
        .header("Location", location)
        .header("Content-Length", "0")
        .body(empty())
        .unwrap())
}

/// The S3 stand-in: serves a blob for a presigned URL, and refuses a request
/// that also carries an Authorization header, as S3 does.
async fn s3_get(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let xml = |status: u16, code: &str, message: &str| {
        Response::builder()
            .status(status)
            .header("Content-Type", "application/xml")
            .body(
                Full::new(Bytes::from(format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>"
                )))
                .map_err(|e| match e {})
                .boxed(),
            )
            .unwrap()
    };
    if req.headers().contains_key(hyper::header::AUTHORIZATION) {
        bump(&state.stats.s3_authorization_refused);
        return Ok(xml(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified",
        ));
    }
    let signed = req
        .uri()
        .query()
        .is_some_and(|q| q.contains("X-Amz-Signature="));
    if req.method() != Method::GET || !signed {
        return Ok(xml(403, "AccessDenied", "Access Denied"));
    }
    bump(&state.stats.s3_gets);
    let path = req.uri().path().trim_start_matches('/').to_string();
    let res = state
        .client
        .get(format!("{}/v2/{path}", state.upstream.endpoint))
        .header("Authorization", state.upstream.basic_auth())
        .send()
        .await
        .map_err(std::io::Error::other)?;
    let status = res.status().as_u16();
    let mut answer = Response::builder().status(status);
    if let Some(len) = res.headers().get("content-length") {
        answer = answer.header("Content-Length", len);
    }
    let stream = res
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    Ok(answer
        .header("Content-Type", "application/octet-stream")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}

/// A blob PATCH, as ECR takes it: 201; after the first PATCH of a session
/// the Range stays where the first left it (the data is kept); a part that
/// does not start where the session stands is refused 416; a part after one
/// under 5 MiB is refused.
async fn patch(state: &State, req: Request<Incoming>) -> Result<Response<Body>, std::io::Error> {
    let stats = &state.stats;
    bump(&stats.patches);
    let Some(id) = session_of(req.uri().path()) else {
        return forward(state, req, None, Tweak::default()).await;
    };
    let start = req
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .and_then(range)
        .map(|(a, _)| a)
        .unwrap_or(0);
    let (nth, first_range, stored, first_part) = {
        let mut sessions = state.sessions.lock().unwrap();
        let s = sessions.entry(id.clone()).or_default();
        s.patches += 1;
        (s.patches, s.first_range.clone(), s.stored, s.first_part)
    };
    if nth >= 2 {
        bump(&stats.later_patches);
        if start != stored {
            bump(&stats.patches_416);
            discard(req.into_body(), None).await;
            return Ok(oci_error(
                416,
                "BLOB_UPLOAD_INVALID",
                &format!("First byte of the layer part is {start} instead of {stored}"),
            ));
        }
        if first_part < MIN_PART {
            bump(&stats.parts_too_small);
            discard(req.into_body(), None).await;
            return Ok(oci_error(
                400,
                "BLOB_UPLOAD_INVALID",
                &format!(
                    "LayerPartTooSmallException: the layer part of {first_part} bytes is smaller than the minimum of {MIN_PART} bytes"
                ),
            ));
        }
    }
    let (parts, body) = req.into_parts();
    let body = reqwest::Body::wrap_stream(BodyDataStream::new(body));
    let res = send(state, &parts, None, body).await?;
    let upstream_range = res
        .headers()
        .get("range")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if res.status().is_success() {
        let mut sessions = state.sessions.lock().unwrap();
        let s = sessions.entry(id).or_default();
        if let Some((_, end)) = upstream_range.as_deref().and_then(range) {
            let now = end + 1;
            if nth == 1 {
                s.first_part = now;
                s.first_range = upstream_range.clone();
            }
            s.stored = now;
        }
    }
    let frozen = if nth >= 2 { first_range } else { None };
    Ok(answer(
        state,
        res,
        Tweak {
            created: true,
            ..Default::default()
        },
        frozen,
    ))
}

async fn inject(
    stats: &Stats,
    fault: Fault,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    match fault {
        Fault::Status500 => {
            bump(&stats.faults_500);
            Ok(oci_error(500, "UNKNOWN", "injected fault: internal error"))
        }
        Fault::Status429 { retry_after } => {
            bump(&stats.faults_429);
            let mut r = oci_error(429, "TOOMANYREQUESTS", "Rate exceeded");
            if retry_after {
                r.headers_mut().insert("Retry-After", "0".parse().unwrap());
            }
            Ok(r)
        }
        Fault::Drop => {
            bump(&stats.faults_dropped);
            if req.method() == Method::PATCH {
                // Part of the upload arrives, then the connection dies.
                discard(req.into_body(), Some(64 * 1024)).await;
            }
            // An error from the service makes hyper close the connection
            // without writing an answer.
            Err(std::io::Error::other("injected fault: connection dropped"))
        }
    }
}

/// `https://127.0.0.1:PORT` of the real registry.
pub fn upstream() -> String {
    Upstream::local().endpoint
}

/// A client for the real registry (see `Upstream::client`).
pub fn upstream_client() -> reqwest::Client {
    Upstream::local().client()
}

/// `Basic …` for the registry, as hoist sends it (user AWS, ECR's password).
pub fn basic_auth() -> String {
    Upstream::local().basic_auth()
}

/// Run async client code from a synchronous test.
pub fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// Whether the real registry holds blob `digest` in `repo` (a HEAD, past
/// any proxy).
pub fn upstream_has_blob(repo: &str, digest: &str) -> bool {
    let url = format!("{}/v2/{repo}/blobs/{digest}", upstream());
    let status = block_on(async {
        upstream_client()
            .head(url)
            .header("Authorization", basic_auth())
            .send()
            .await
            .expect("the registry answers")
            .status()
    });
    match status.as_u16() {
        200 | 307 => true,
        404 => false,
        other => panic!("HEAD of blob {digest} in {repo}: unexpected {other}"),
    }
}
