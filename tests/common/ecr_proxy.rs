//! An HTTP proxy in front of the local registry that behaves as ECR does
//! where ECR differs from the Distribution registry, and that can inject
//! faults — so the tests push through what hoist meets in production.
//!
//! ECR's differences (../shared/docs/aws-facts.md, part A):
//! - a blob PATCH is answered 201, not 202;
//! - the data of every PATCH after the first of an upload is silently
//!   dropped (aws/containers-roadmap#2831 — ECR's real threshold is the
//!   third PATCH; dropping from the second is stricter);
//! - a manifest whose media type has parameters (`;`) is refused;
//! - a cross-repository mount is answered 202 with a fresh upload session
//!   when blob mounting is off.
//!
//! It runs on a thread with its own runtime (the tests are synchronous: they
//! run the hoist binary) and listens on plain http://127.0.0.1:<port>, which
//! hoist accepts for loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::server::{Body, Running, answer, full, relay, serve};

#[derive(Clone, Copy, Debug)]
pub struct Faults {
    /// The share of requests answered with a fault instead of being forwarded.
    pub share: f64,
    pub seed: u64,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    pub ecr: bool,
    /// Refuse every request as unauthorized (a wrong account, a missing
    /// permission).
    pub deny: bool,
    pub faults: Option<Faults>,
}

#[derive(Default, Debug)]
pub struct Stats {
    pub requests: AtomicUsize,
    pub patches: AtomicUsize,
    pub patches_dropped: AtomicUsize,
    pub mounts_answered_202: AtomicUsize,
    pub media_types_refused: AtomicUsize,
    pub faults_500: AtomicUsize,
    pub faults_429: AtomicUsize,
    pub faults_dropped: AtomicUsize,
}

impl Stats {
    pub fn get(a: &AtomicUsize) -> usize {
        a.load(Ordering::Relaxed)
    }
}

pub struct Proxy {
    pub addr: SocketAddr,
    pub stats: Arc<Stats>,
    _server: Running,
}

impl Proxy {
    /// `http://127.0.0.1:<port>`: give it to hoist as --registry-endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn start(options: Options) -> Proxy {
        let local = super::local();
        let upstream = local.vars["HOIST_REGISTRY_ENDPOINT"]
            .trim_end_matches('/')
            .to_string();
        let ca = std::fs::read(&local.vars["AWS_CA_BUNDLE"]).unwrap();
        let client = reqwest::Client::builder()
            .tls_certs_merge(reqwest::Certificate::from_pem_bundle(&ca).unwrap())
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let stats = Arc::new(Stats::default());
        let state = Arc::new(State {
            options,
            upstream,
            client,
            stats: stats.clone(),
            rng: Mutex::new((options.faults.map_or(1, |f| f.seed) | 1, 0)),
            sessions: Mutex::new(HashMap::new()),
        });
        let server = serve(move |req| handle(state.clone(), req));
        Proxy {
            addr: server.addr,
            stats,
            _server: server,
        }
    }
}

struct State {
    options: Options,
    upstream: String,
    client: reqwest::Client,
    stats: Arc<Stats>,
    /// xorshift state, and how many faults in a row were injected.
    rng: Mutex<(u64, u32)>,
    /// Upload session → PATCHes seen and the Range after the first.
    sessions: Mutex<HashMap<String, (usize, Option<String>)>>,
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Status500,
    Status429,
    Drop,
}

impl State {
    /// Whether to fail this request, and how: deterministic for a seed, and
    /// never more than three in a row, so a push within hoist's retry budget
    /// can get through.
    fn fault(&self) -> Option<Fault> {
        let f = self.options.faults?;
        let mut g = self.rng.lock().unwrap();
        let (x, in_a_row) = &mut *g;
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        let roll = (*x % 10_000) as f64 / 10_000.0;
        if roll >= f.share || *in_a_row >= 3 {
            *in_a_row = 0;
            return None;
        }
        *in_a_row += 1;
        Some(match (*x >> 20) % 3 {
            0 => Fault::Status500,
            1 => Fault::Status429,
            _ => Fault::Drop,
        })
    }
}

async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    let stats = &state.stats;
    stats.requests.fetch_add(1, Ordering::Relaxed);
    match state.fault() {
        Some(Fault::Status500) => {
            stats.faults_500.fetch_add(1, Ordering::Relaxed);
            return Ok(full(
                500,
                r#"{"errors":[{"code":"UNKNOWN","message":"injected fault"}]}"#,
            ));
        }
        Some(Fault::Status429) => {
            stats.faults_429.fetch_add(1, Ordering::Relaxed);
            let mut r = full(
                429,
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"Rate exceeded"}]}"#,
            );
            r.headers_mut().insert("Retry-After", "0".parse().unwrap());
            return Ok(r);
        }
        Some(Fault::Drop) => {
            // An error from the service makes hyper close the connection
            // without an answer, mid-body for an upload.
            stats.faults_dropped.fetch_add(1, Ordering::Relaxed);
            return Err(std::io::Error::other("injected: connection dropped"));
        }
        None => {}
    }

    if state.options.deny {
        let mut r = full(
            401,
            r#"{"errors":[{"code":"DENIED","message":"Your authorization token is invalid."}]}"#,
        );
        r.headers_mut().insert("Www-Authenticate", r#"Basic realm="https://123456789012.dkr.ecr.us-east-1.amazonaws.com/",service="ecr.amazonaws.com""#.parse().unwrap());
        return Ok(r);
    }

    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let is_upload = path.contains("/blobs/uploads/");
    let mut forward_query = query.clone();

    if state.options.ecr {
        let content_type = req
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if method == hyper::Method::PUT
            && path.contains("/manifests/")
            && content_type.contains(';')
        {
            stats.media_types_refused.fetch_add(1, Ordering::Relaxed);
            return Ok(full(
                400,
                r#"{"errors":[{"code":"MANIFEST_INVALID","message":"Invalid parameter at 'ImageManifestMediaType' failed to satisfy constraint"}]}"#,
            ));
        }
        if method == hyper::Method::POST
            && is_upload
            && query.as_deref().is_some_and(|q| q.contains("mount="))
        {
            // Mounting is off: start a plain upload instead.
            stats.mounts_answered_202.fetch_add(1, Ordering::Relaxed);
            forward_query = None;
        }
        if method == hyper::Method::PATCH && is_upload {
            stats.patches.fetch_add(1, Ordering::Relaxed);
            let session = path.rsplit('/').next().unwrap_or_default().to_string();
            let (seen, range) = {
                let mut s = state.sessions.lock().unwrap();
                let e = s.entry(session).or_insert((0, None));
                e.0 += 1;
                (e.0, e.1.clone())
            };
            if seen >= 2 {
                // ECR's silent drop: read the data, keep none of it.
                stats.patches_dropped.fetch_add(1, Ordering::Relaxed);
                let _ = req.into_body().collect().await;
                let mut r = full(201, "");
                r.headers_mut().insert("Location", path.parse().unwrap());
                r.headers_mut().insert(
                    "Range",
                    range.unwrap_or_else(|| "0-0".into()).parse().unwrap(),
                );
                return Ok(r);
            }
        }
    }
    stats.patches.fetch_add(
        (method == hyper::Method::PATCH && is_upload && !state.options.ecr) as usize,
        Ordering::Relaxed,
    );

    let url = match &forward_query {
        Some(q) => format!("{}{path}?{q}", state.upstream),
        None => format!("{}{path}", state.upstream),
    };
    let res = relay(&state.client, &url, req).await?;

    let mut status = res.status();
    if state.options.ecr
        && method == hyper::Method::PATCH
        && is_upload
        && status == StatusCode::ACCEPTED
    {
        status = StatusCode::CREATED;
        if let Some(range) = res.headers().get("range").and_then(|v| v.to_str().ok()) {
            let session = path.rsplit('/').next().unwrap_or_default().to_string();
            state
                .sessions
                .lock()
                .unwrap()
                .entry(session)
                .or_insert((1, None))
                .1 = Some(range.to_string());
        }
    }
    // The upstream names itself in Location; send clients back here instead.
    let upstream = state.upstream.clone();
    Ok(answer(res, status.as_u16(), move |loc| {
        loc.strip_prefix(&upstream).unwrap_or(loc).to_string()
    }))
}
