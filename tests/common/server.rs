//! A small HTTP/1.1 server for test stand-ins (proxies that play ECR, inject
//! faults, or forward like a corporate proxy): on 127.0.0.1 with a free
//! port, on a thread with its own runtime — the tests themselves are
//! synchronous — until the returned handle is dropped.

use std::future::Future;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::Incoming;
use hyper::{Request, Response};

pub type Body = BoxBody<Bytes, std::io::Error>;

/// Dropping it stops the server.
pub struct Running {
    pub addr: SocketAddr,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A response with a fixed body.
pub fn full(status: u16, body: &str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("Content-Type", "application/json")
        .body(
            Full::new(Bytes::from(body.to_string()))
                .map_err(|e| match e {})
                .boxed(),
        )
        .unwrap()
}

/// Serve `handler`. An `Err` from it closes the connection without an
/// answer (how a test drops a connection).
pub fn serve<H, F>(handler: H) -> Running
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, std::io::Error>> + Send + 'static,
{
    serve_on("127.0.0.1:0", handler)
}

/// `serve` on another loopback address (`127.0.0.2:0` plays another host).
pub fn serve_on<H, F>(bind: &str, handler: H) -> Running
where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Result<Response<Body>, std::io::Error>> + Send + 'static,
{
    let listener = std::net::TcpListener::bind(bind).unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
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
                        let handler = handler.clone();
                        tokio::spawn(async move {
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(stream), hyper::service::service_fn(handler))
                                .with_upgrades()
                                .await;
                        });
                    }
                }
            }
        });
    });
    Running { addr, _stop: stop }
}

/// Send `req` on to `url` with `client`, body streamed, hop-by-hop headers
/// dropped.
pub async fn relay(
    client: &reqwest::Client,
    url: &str,
    req: Request<Incoming>,
) -> std::io::Result<reqwest::Response> {
    let mut out = client.request(req.method().clone(), url);
    for (k, v) in req.headers() {
        if !matches!(
            k.as_str(),
            "host" | "connection" | "proxy-connection" | "transfer-encoding"
        ) {
            out = out.header(k, v);
        }
    }
    let body = http_body_util::BodyDataStream::new(req.into_body());
    out.body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(std::io::Error::other)
}

/// The upstream's answer as ours, body streamed, with `status`; `location`
/// rewrites a Location header.
pub fn answer(
    res: reqwest::Response,
    status: u16,
    location: impl Fn(&str) -> String,
) -> Response<Body> {
    use futures_util::TryStreamExt;
    let mut builder = Response::builder().status(status);
    for (k, v) in res.headers() {
        match k.as_str() {
            "connection" | "transfer-encoding" => {}
            "location" => builder = builder.header(k, location(v.to_str().unwrap_or_default())),
            _ => builder = builder.header(k, v),
        }
    }
    let stream = res
        .bytes_stream()
        .map_ok(hyper::body::Frame::data)
        .map_err(std::io::Error::other);
    builder
        .body(BodyExt::boxed(http_body_util::StreamBody::new(stream)))
        .unwrap()
}
