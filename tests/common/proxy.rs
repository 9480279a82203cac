//! An HTTP proxy in front of the local registry, for tests that need to see
//! or bend what travels between hoist and the registry.
//!
//! hoist talks plain http to it on 127.0.0.1 (hoist allows plain http to
//! loopback only); it talks https to the registry, trusting the local CA.
//! Bodies are streamed both ways, never buffered: a push through it uses as
//! little memory as one straight to the registry.
//!
//! Modes, combinable:
//! - `ecr`: behave as ECR does where it differs from the Distribution
//!   registry (../shared/docs/aws-facts.md, part A), so a push that works
//!   through it would work against ECR:
//!   - a blob PATCH is answered 201, not 202;
//!   - the data of the second and later PATCH of an upload session is read
//!     and silently dropped, and the Range does not advance
//!     (aws/containers-roadmap#2831; whether ECR loses the second or only
//!     the third is left open there, dropping from the second is the
//!     stricter reading);
//!   - a manifest PUT whose Content-Type has parameters (`;`) is refused;
//!   - a cross-repository mount is answered 202 with a fresh upload session,
//!     as ECR does when blob mounting is off.
//! - `faults`: answer a share of requests with 500, 429 or a dropped
//!   connection instead of forwarding them — deterministic for a seed.
//! - `probe_503`: answer `GET /v2/` 503 (see a_failing_auth_probe_does_not_matter
//!   in faults.rs).
//! - `deny`: refuse every request 401, as a registry of another account does,
//!   or one the identity may not push to.
//!
//! Declare it next to `mod common;` with `#[path = "common/proxy.rs"] mod
//! proxy;`. It runs on a thread with its own runtime (the tests are
//! synchronous: they run the hoist binary) until its handle is dropped.
//! At the end, a few raw registry calls for the checks tests make around it.
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
    pub ecr: bool,
    pub faults: Option<Faults>,
    /// Answer every `GET /v2/` (the probe clients make to learn how to
    /// authenticate) 503 without a challenge, as a throttled or failing
    /// front end does, and forward everything else.
    pub probe_503: bool,
    /// Refuse every request as unauthorized.
    pub deny: bool,
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

/// Live counters, readable while hoist runs; `snapshot` for assertions.
#[derive(Debug, Default)]
pub struct Stats {
    requests: AtomicUsize,
    patches: AtomicUsize,
    patches_dropped: AtomicUsize,
    mounts_answered_202: AtomicUsize,
    media_types_refused: AtomicUsize,
    faults_500: AtomicUsize,
    faults_429: AtomicUsize,
    faults_dropped: AtomicUsize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every request that reached the proxy, faulted or not.
    pub requests: usize,
    /// Blob PATCHes handled (forwarded, or dropped as ECR would); PATCHes
    /// answered with a fault are not counted here.
    pub patches: usize,
    /// PATCHes whose data was discarded: the 2nd and later of a session.
    pub patches_dropped: usize,
    pub mounts_answered_202: usize,
    pub media_types_refused: usize,
    pub faults_500: usize,
    pub faults_429: usize,
    pub faults_dropped: usize,
}

impl Counts {
    pub fn faults(&self) -> usize {
        self.faults_500 + self.faults_429 + self.faults_dropped
    }
}

impl Stats {
    pub fn snapshot(&self) -> Counts {
        Counts {
            requests: self.requests.load(Relaxed),
            patches: self.patches.load(Relaxed),
            patches_dropped: self.patches_dropped.load(Relaxed),
            mounts_answered_202: self.mounts_answered_202.load(Relaxed),
            media_types_refused: self.media_types_refused.load(Relaxed),
            faults_500: self.faults_500.load(Relaxed),
            faults_429: self.faults_429.load(Relaxed),
            faults_dropped: self.faults_dropped.load(Relaxed),
        }
    }
}

fn bump(counter: &AtomicUsize) {
    counter.fetch_add(1, Relaxed);
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
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
/// that stays down. The port was free a moment ago; nothing else in a test
/// process binds ports at random, so it stays free.
pub fn refused_endpoint() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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

    pub fn start(options: Options) -> Proxy {
        let upstream = upstream();
        let client = upstream_client();

        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = Arc::new(Stats::default());
        let state = Arc::new(State {
            options,
            upstream,
            me: format!("http://{addr}"),
            client,
            stats: stats.clone(),
            plan: Mutex::new(options.faults.map(Plan::new)),
            sessions: Mutex::new(HashMap::new()),
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
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let state = state.clone();
                            tokio::spawn(async move {
                                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                                // An error here is a dropped connection: a
                                // fault we injected, or the client going away.
                                let _ = hyper::server::conn::http1::Builder::new()
                                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                                    .await;
                            });
                        }
                    }
                }
            });
            // Dropping the runtime cancels the connections still open.
        });
        Proxy {
            addr,
            stats,
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

struct State {
    options: Options,
    /// `https://127.0.0.1:PORT` of the registry, no trailing slash.
    upstream: String,
    /// `http://127.0.0.1:PORT` of this proxy.
    me: String,
    client: reqwest::Client,
    stats: Arc<Stats>,
    plan: Mutex<Option<Plan>>,
    /// Upload session (its UUID) → what ECR would remember of it.
    sessions: Mutex<HashMap<String, Session>>,
}

#[derive(Default)]
struct Session {
    patches: usize,
    /// The Range the upstream gave after the first PATCH: where ECR stops.
    range: Option<String>,
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

fn json(status: u16, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json; charset=utf-8")
        .body(
            Full::new(Bytes::from_static(body.as_bytes()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
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

/// `/v2/<name>/blobs/uploads/<uuid>` → the uuid; None for the POST that
/// starts a session (`…/uploads/`).
fn session_of(path: &str) -> Option<String> {
    let (_, rest) = path.split_once("/blobs/uploads/")?;
    let id = rest.trim_end_matches('/');
    (!id.is_empty()).then(|| id.to_string())
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let stats = &state.stats;
    bump(&stats.requests);
    let fault = state.plan.lock().unwrap().as_mut().and_then(Plan::next);
    if let Some(fault) = fault {
        return inject(stats, fault, req).await;
    }

    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if state.options.deny {
        let mut r = json(
            401,
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token is invalid."}]}"#,
        );
        r.headers_mut().insert(
            "Www-Authenticate",
            r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#.parse().unwrap(),
        );
        return Ok(r);
    }
    if state.options.probe_503 && method == Method::GET && path == "/v2/" {
        return Ok(json(
            503,
            r#"{"errors":[{"code":"UNAVAILABLE","message":"Service Unavailable"}]}"#,
        ));
    }
    let mut query = req.uri().query().map(str::to_string);
    let session = session_of(&path);
    let is_patch = method == Method::PATCH && session.is_some();
    let mut is_mount = false;

    if is_patch {
        bump(&stats.patches);
    }
    if state.options.ecr {
        let content_type = req
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if method == Method::PUT && path.contains("/manifests/") && content_type.contains(';') {
            bump(&stats.media_types_refused);
            // What ECR answers: the media type fails its pattern.
            return Ok(json(
                400,
                r#"{"errors":[{"code":"MANIFEST_INVALID","message":"Invalid parameter at 'ImageManifestMediaType' failed to satisfy constraint: 'Member must satisfy regular expression pattern: [\\w.+-]+/[\\w.+-]+'"}]}"#,
            ));
        }
        if is_patch {
            let id = session.clone().unwrap();
            let (nth, range) = {
                let mut sessions = state.sessions.lock().unwrap();
                let s = sessions.entry(id.clone()).or_default();
                s.patches += 1;
                (s.patches, s.range.clone())
            };
            if nth >= 2 {
                // ECR's silent drop: the data is read and thrown away, the
                // answer looks like success and the Range stays put.
                bump(&stats.patches_dropped);
                discard(req.into_body(), None).await;
                let location = match &query {
                    Some(q) => format!("{}{path}?{q}", state.me),
                    None => format!("{}{path}", state.me),
                };
                return Ok(Response::builder()
                    .status(201)
                    .header("Location", location)
                    .header("Range", range.unwrap_or_else(|| "0-0".into()))
                    .header("Docker-Upload-UUID", id)
                    .header("Content-Length", "0")
                    .body(empty())
                    .unwrap());
            }
        }
        if method == Method::POST
            && path.ends_with("/blobs/uploads/")
            && query
                .as_deref()
                .is_some_and(|q| q.split('&').any(|p| p.starts_with("mount=")))
        {
            // Mounting is off: what comes back is a plain upload session.
            is_mount = true;
            query = None;
        }
    }

    let url = match &query {
        Some(q) => format!("{}{path}?{q}", state.upstream),
        None => format!("{}{path}", state.upstream),
    };
    let mut out = state.client.request(method.clone(), url);
    for (name, value) in req.headers() {
        if !hop_by_hop(name.as_str()) {
            out = out.header(name, value);
        }
    }
    // Streamed: a 12 MiB layer passes through in chunks.
    let body = reqwest::Body::wrap_stream(BodyDataStream::new(req.into_body()));
    let res = out.body(body).send().await.map_err(std::io::Error::other)?;

    let mut status = res.status();
    if state.options.ecr && is_patch && status == StatusCode::ACCEPTED {
        status = StatusCode::CREATED;
        let range = res.headers().get("range").and_then(|v| v.to_str().ok());
        if let (Some(id), Some(range)) = (&session, range) {
            state
                .sessions
                .lock()
                .unwrap()
                .entry(id.clone())
                .or_default()
                .range = Some(range.to_string());
        }
    }
    if is_mount && status == StatusCode::ACCEPTED {
        bump(&stats.mounts_answered_202);
    }
    let mut answer = Response::builder().status(status);
    for (name, value) in res.headers() {
        if hop_by_hop(name.as_str()) {
            continue;
        }
        if name == hyper::header::LOCATION {
            // The registry names itself; send the client back here.
            let loc = value.to_str().unwrap_or_default();
            let loc = match loc.strip_prefix(&state.upstream) {
                Some(rest) => format!("{}{rest}", state.me),
                None => loc.to_string(),
            };
            answer = answer.header(name, loc);
        } else {
            answer = answer.header(name, value);
        }
    }
    let stream = res
        .bytes_stream()
        .map_ok(Frame::data)
        .map_err(std::io::Error::other);
    Ok(answer
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}

async fn inject(
    stats: &Stats,
    fault: Fault,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    match fault {
        Fault::Status500 => {
            bump(&stats.faults_500);
            Ok(json(
                500,
                r#"{"errors":[{"code":"UNKNOWN","message":"injected fault: internal error"}]}"#,
            ))
        }
        Fault::Status429 { retry_after } => {
            bump(&stats.faults_429);
            let mut r = json(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"Rate exceeded"}]}"#,
            );
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

/// `https://127.0.0.1:PORT` of the real registry (env.sh's endpoint).
pub fn upstream() -> String {
    crate::common::local().vars["HOIST_REGISTRY_ENDPOINT"]
        .trim_end_matches('/')
        .to_string()
}

/// A client for the real registry: trusts the local CA, follows no
/// redirects (blob GETs go back to the caller, as ECR's do), and ignores
/// the test runner's own proxy settings.
pub fn upstream_client() -> reqwest::Client {
    let ca = std::fs::read(&crate::common::local().vars["AWS_CA_BUNDLE"])
        .expect("the local CA is readable");
    reqwest::Client::builder()
        .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca).expect("a PEM CA"))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// `Basic …` for the registry, as hoist sends it (user AWS, ECR's password).
pub fn basic_auth() -> String {
    use base64::Engine;
    let creds = format!("AWS:{}", crate::common::local().password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(creds)
    )
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
