//! A forward proxy, as corporate networks have: CONNECT tunnels for https
//! (the registry here), absolute-form forwarding for plain http (moto's AWS
//! APIs here). It counts what it carried, so a test can prove which
//! connections honoured HTTPS_PROXY / HTTP_PROXY / NO_PROXY.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::body::Incoming;
use hyper::{Method, Request, Response};

use super::server::{Body, Running, answer, full, relay, serve};

#[derive(Default)]
pub struct Counts {
    pub tunnels: AtomicUsize,
    pub forwarded: AtomicUsize,
    /// The access key id each forwarded, SigV4-signed request was signed with.
    pub signed_by: std::sync::Mutex<Vec<String>>,
}

pub struct ForwardProxy {
    pub addr: SocketAddr,
    pub counts: Arc<Counts>,
    _server: Running,
}

impl ForwardProxy {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn tunnels(&self) -> usize {
        self.counts.tunnels.load(Ordering::Relaxed)
    }

    pub fn signed_by(&self) -> Vec<String> {
        self.counts.signed_by.lock().unwrap().clone()
    }

    pub fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::Relaxed)
    }

    pub fn start() -> ForwardProxy {
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let server = serve(move |req| handle(c.clone(), client.clone(), req));
        ForwardProxy {
            addr: server.addr,
            counts,
            _server: server,
        }
    }
}

async fn handle(
    counts: Arc<Counts>,
    client: reqwest::Client,
    req: Request<Incoming>,
) -> Result<Response<Body>, std::io::Error> {
    if req.method() == Method::CONNECT {
        let Some(target) = req.uri().authority().map(|a| a.to_string()) else {
            return Ok(full(400, ""));
        };
        counts.tunnels.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else {
                return;
            };
            let Ok(mut upstream) = tokio::net::TcpStream::connect(&target).await else {
                return;
            };
            let mut client = hyper_util::rt::TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        });
        return Ok(full(200, ""));
    }
    // Absolute-form: GET http://host:port/path HTTP/1.1
    if req.uri().scheme().is_none() {
        return Ok(full(400, ""));
    }
    counts.forwarded.fetch_add(1, Ordering::Relaxed);
    if let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        && let Some(rest) = auth.split("Credential=").nth(1)
    {
        let key = rest.split('/').next().unwrap_or_default().to_string();
        counts.signed_by.lock().unwrap().push(key);
    }
    let url = req.uri().to_string();
    let res = relay(&client, &url, req).await?;
    let status = res.status().as_u16();
    Ok(answer(res, status, str::to_string))
}
