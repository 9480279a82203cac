//! A server that misbehaves on purpose — for the registry or an AWS API —
//! on 127.0.0.1, stopping when its handle is dropped: it never answers, or
//! answers with a body of a gigabyte, or one that never ends, or redirects
//! to plain http on another host. Requests no rule matches are passed on to
//! `upstream` (the suite's ECR front or AWS front), so one bad answer can be
//! placed exactly where a test wants it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;

use super::server::{self, Body};

#[derive(Clone, Debug)]
pub enum Act {
    /// Read the request head and never answer (nor read the body).
    Silent,
    /// `status` with a body of `bytes` zeros, sent as fast as it is taken.
    Huge { status: u16, bytes: u64 },
    /// `status` with a body that never ends.
    Endless { status: u16 },
    /// 307 to this URL.
    Redirect(String),
    /// 200, with these headers and no body (a HEAD answer).
    Headers(Vec<(&'static str, &'static str)>),
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// `HEAD`, `PATCH`…; None for any.
    pub method: Option<&'static str>,
    /// A part of the path the request must have (`/manifests/`, `/blobs/uploads/`…).
    pub path: &'static str,
    pub act: Act,
}

impl Rule {
    pub fn any(act: Act) -> Rule {
        Rule {
            method: None,
            path: "",
            act,
        }
    }

    pub fn on(method: &'static str, path: &'static str, act: Act) -> Rule {
        Rule {
            method: Some(method),
            path,
            act,
        }
    }
}

pub struct Misbehaving {
    server: server::Running,
    hits: Arc<AtomicUsize>,
}

impl Misbehaving {
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    /// How many requests a rule answered.
    pub fn hits(&self) -> usize {
        self.hits.load(Relaxed)
    }

    pub fn start(rules: Vec<Rule>, upstream: Option<String>) -> Misbehaving {
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let server = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (rules, upstream, client, hits) = (
                rules.clone(),
                upstream.clone(),
                client.clone(),
                counted.clone(),
            );
            async move {
                let rule = rules.iter().find(|r| {
                    r.method.is_none_or(|m| req.method().as_str() == m)
                        && req.uri().path().contains(r.path)
                });
                let Some(rule) = rule else {
                    let Some(up) = upstream else {
                        return Ok(server::full(404, "{}"));
                    };
                    let path = req
                        .uri()
                        .path_and_query()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    let res = server::relay(&client, &format!("{up}{path}"), req).await?;
                    let status = res.status().as_u16();
                    return Ok(server::answer(res, status, |l| l.to_string()));
                };
                hits.fetch_add(1, Relaxed);
                Ok(match &rule.act {
                    Act::Silent => {
                        // Held until the server stops (its runtime drops it).
                        std::future::pending::<()>().await;
                        unreachable!()
                    }
                    Act::Huge { status, bytes } => zeros(*status, Some(*bytes)),
                    Act::Endless { status } => zeros(*status, None),
                    Act::Redirect(to) => hyper::Response::builder()
                        .status(307)
                        .header("Location", to)
                        .header("Content-Length", "0")
                        .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
                        .unwrap(),
                    Act::Headers(headers) => {
                        let mut b = hyper::Response::builder().status(200);
                        for (k, v) in headers {
                            b = b.header(*k, *v);
                        }
                        b.body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
                            .unwrap()
                    }
                })
            }
        });
        Misbehaving { server, hits }
    }
}

/// A body of `len` zero bytes (None: endless), made as it is sent.
pub fn zeros(status: u16, len: Option<u64>) -> hyper::Response<Body> {
    static CHUNK: [u8; 64 * 1024] = [0; 64 * 1024];
    let stream = futures_util::stream::unfold(len, |left| async move {
        let n = match left {
            Some(0) => return None,
            Some(l) => l.min(CHUNK.len() as u64),
            None => CHUNK.len() as u64,
        };
        let chunk = Bytes::from_static(&CHUNK[..n as usize]);
        Some((
            Ok::<_, std::io::Error>(Frame::data(chunk)),
            left.map(|l| l - n),
        ))
    });
    let mut b = hyper::Response::builder()
        .status(status)
        .header("Content-Type", "application/json");
    if let Some(l) = len {
        b = b.header("Content-Length", l.to_string());
    }
    b.body(BodyExt::boxed(StreamBody::new(stream))).unwrap()
}
