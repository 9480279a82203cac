//! A blob's bytes on their way to the registry: read from disk on a thread of
//! their own, hashed (and, for docker layers, gzip-compressed) as they pass,
//! and handed to the HTTP body through a small bounded channel. Memory stays
//! flat whatever the layer's size: at most `DEPTH` chunks per blob in flight.
//!
//! When the bytes do not match the descriptor (digest or size), the body ends
//! with an error instead of its last chunk — the upload is aborted before its
//! final PUT — and the verdict says why.

use std::io::{Read, Write};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot};

use super::{Blob, Compression, Digest, DockerLayer, ImageError, Region};

const CHUNK: usize = 256 * 1024;
const DEPTH: usize = 8;

/// What was actually sent: the digest and size of the bytes in the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub digest: Digest,
    pub size: u64,
}

pub type OnBytes = Arc<dyn Fn(u64) + Send + Sync>;

pub struct BlobStream {
    pub body: mpsc::Receiver<std::io::Result<Bytes>>,
    /// Resolves once the last byte was read: what was sent, or why it must
    /// not be committed.
    pub verdict: oneshot::Receiver<Result<Sent, ImageError>>,
}

impl BlobStream {
    /// The body as a `Stream` for reqwest.
    pub fn into_parts(
        self,
    ) -> (
        impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static,
        oneshot::Receiver<Result<Sent, ImageError>>,
    ) {
        let body = futures_util::stream::unfold(self.body, |mut rx| async move {
            rx.recv().await.map(|item| (item, rx))
        });
        (body, self.verdict)
    }
}

/// A stored blob, verified against its descriptor while it streams.
pub fn stored(blob: &Blob, on_bytes: OnBytes) -> BlobStream {
    let (region, digest, size) = (blob.region.clone(), blob.digest.clone(), blob.size);
    spawn(region, on_bytes, move |reader, sink| {
        let mut hasher = Sha256::new();
        let n = pump(reader, &mut |chunk| {
            hasher.update(chunk);
            sink.send(Bytes::copy_from_slice(chunk))
        })?;
        let what = format!("blob {digest}");
        if n < size {
            return Err(ImageError::Truncated {
                what,
                expected: size,
                actual: n,
            }
            .into());
        }
        let actual = Digest::from_hasher(hasher);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what,
                expected: digest,
                actual,
            }
            .into());
        }
        Ok(Sent { digest, size: n })
    })
}

/// A docker layer: uncompressed ones are gzip-compressed on the way; either
/// way the digest and size of what is sent are computed while it streams, and
/// an uncompressed layer is checked against its diff_id.
pub fn docker_layer(layer: &DockerLayer, on_bytes: OnBytes) -> BlobStream {
    let layer = layer.clone();
    spawn(layer.region.clone(), on_bytes, move |reader, sink| {
        let what = format!("layer {}", layer.name);
        match layer.compression {
            Compression::None => {
                let mut raw = Sha256::new();
                // Deterministic output (no name, mtime 0): a retry yields the
                // same digest, and so does a re-run.
                let mut gz = flate2::GzBuilder::new().write(
                    HashingSink {
                        sink,
                        hasher: Sha256::new(),
                        buf: BytesMut::with_capacity(CHUNK),
                        count: 0,
                    },
                    flate2::Compression::default(),
                );
                pump(reader, &mut |chunk| {
                    raw.update(chunk);
                    gz.write_all(chunk).map_err(|_| Stop::Gone)
                })?;
                let mut out = gz.finish().map_err(|_| Stop::Gone)?;
                out.flush_chunk().map_err(|_| Stop::Gone)?;
                let actual = Digest::from_hasher(raw);
                if actual != layer.diff_id {
                    return Err(ImageError::DigestMismatch {
                        what: format!("{what} (uncompressed, vs. the config's diff_id)"),
                        expected: layer.diff_id,
                        actual,
                    }
                    .into());
                }
                Ok(Sent {
                    digest: Digest::from_hasher(out.hasher),
                    size: out.count,
                })
            }
            // Already compressed: sent as it is, its digest computed here,
            // and decompressed alongside to check it against its diff_id
            // like an uncompressed one (issue 12: a gzip layer that did not
            // match its config was pushed as an inconsistent image).
            Compression::Gzip => {
                let mut hasher = Sha256::new();
                let mut raw = flate2::write::MultiGzDecoder::new(Hashing(Sha256::new()));
                let mut gzip_error = None;
                let n = pump(reader, &mut |chunk| {
                    hasher.update(chunk);
                    if gzip_error.is_none()
                        && let Err(e) = raw.write_all(chunk)
                    {
                        gzip_error = Some(e);
                    }
                    sink.send(Bytes::copy_from_slice(chunk))
                })?;
                let raw = match gzip_error {
                    Some(e) => Err(e),
                    None => raw.finish(),
                };
                let actual = match raw {
                    Ok(Hashing(h)) => Digest::from_hasher(h),
                    Err(e) => {
                        return Err(ImageError::Malformed {
                            what,
                            reason: format!("its gzip stream is corrupt or truncated: {e}"),
                        }
                        .into());
                    }
                };
                if actual != layer.diff_id {
                    return Err(ImageError::DigestMismatch {
                        what: format!("{what} (decompressed, vs. the config's diff_id)"),
                        expected: layer.diff_id,
                        actual,
                    }
                    .into());
                }
                Ok(Sent {
                    digest: Digest::from_hasher(hasher),
                    size: n,
                })
            }
            // Refused when the image is opened (Lambda takes no zstd layers).
            Compression::Zstd => {
                let mut hasher = Sha256::new();
                let n = pump(reader, &mut |chunk| {
                    hasher.update(chunk);
                    sink.send(Bytes::copy_from_slice(chunk))
                })?;
                Ok(Sent {
                    digest: Digest::from_hasher(hasher),
                    size: n,
                })
            }
        }
    })
}

/// A writer that only hashes: where a gzip layer's decompressed bytes go.
struct Hashing(Sha256);

impl Write for Hashing {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.update(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Why a producer stopped early.
enum Stop {
    /// The upload went away (aborted, failed, retried): nothing to report.
    Gone,
    Failed(ImageError),
}

impl From<ImageError> for Stop {
    fn from(e: ImageError) -> Self {
        Stop::Failed(e)
    }
}

struct Sink {
    tx: mpsc::Sender<std::io::Result<Bytes>>,
}

impl Sink {
    fn send(&self, b: Bytes) -> Result<(), Stop> {
        self.tx.blocking_send(Ok(b)).map_err(|_| Stop::Gone)
    }
}

/// Collects compressed output into chunks, hashing what it sends.
struct HashingSink {
    sink: Sink,
    hasher: Sha256,
    buf: BytesMut,
    count: u64,
}

impl HashingSink {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        self.hasher.update(&chunk);
        self.count += chunk.len() as u64;
        self.buf.reserve(CHUNK);
        self.sink
            .send(chunk)
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::BrokenPipe))
    }
}

impl Write for HashingSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush_chunk()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The region's reader, reporting progress as bytes are read.
struct Counted {
    inner: super::store::RegionReader,
    on_bytes: OnBytes,
    what: String,
}

fn spawn<F>(region: Region, on_bytes: OnBytes, produce: F) -> BlobStream
where
    F: FnOnce(&mut Counted, Sink) -> Result<Sent, Stop> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(DEPTH);
    let (verdict_tx, verdict_rx) = oneshot::channel();
    std::thread::spawn(move || {
        let what = region.shown();
        let error_tx = tx.clone();
        let result = match region.open() {
            Err(e) => Err(Stop::Failed(ImageError::Read { what, source: e })),
            Ok(inner) => produce(
                &mut Counted {
                    inner,
                    on_bytes,
                    what,
                },
                Sink { tx },
            ),
        };
        match result {
            Ok(sent) => {
                let _ = verdict_tx.send(Ok(sent));
            }
            Err(Stop::Failed(e)) => {
                // Fail the body before it ends, so the registry never sees a
                // complete upload of bad bytes.
                let _ = error_tx.blocking_send(Err(std::io::Error::other(e.to_string())));
                let _ = verdict_tx.send(Err(e));
            }
            Err(Stop::Gone) => {}
        }
    });
    BlobStream {
        body: rx,
        verdict: verdict_rx,
    }
}

/// Reads the region to its end in chunks, calling `each` on every chunk;
/// returns how many bytes there were.
fn pump(
    reader: &mut Counted,
    each: &mut dyn FnMut(&[u8]) -> Result<(), Stop>,
) -> Result<u64, Stop> {
    let mut buf = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match reader.inner.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Stop::Failed(ImageError::Read {
                    what: reader.what.clone(),
                    source: e,
                }));
            }
        };
        each(&buf[..n])?;
        total += n as u64;
        (reader.on_bytes)(n as u64);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    fn region_of(dir: &tempfile::TempDir, name: &str, data: &[u8]) -> Region {
        let path = dir.path().join(name);
        std::fs::write(&path, data).unwrap();
        Region {
            backing: Arc::new(super::super::store::Backing::Path(path)),
            offset: 0,
            len: data.len() as u64,
        }
    }

    fn drain(s: BlobStream) -> (Vec<u8>, bool, Result<Sent, ImageError>) {
        let BlobStream { mut body, verdict } = s;
        let mut out = Vec::new();
        let mut failed = false;
        while let Some(item) = body.blocking_recv() {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => failed = true,
            }
        }
        (out, failed, verdict.blocking_recv().unwrap())
    }

    #[test]
    fn stored_blob_streams_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 3 * CHUNK + 5];
        let region = region_of(&dir, "b", &data);
        let good = Blob {
            digest: Digest::of(&data),
            size: data.len() as u64,
            media_type: "x".into(),
            region: region.clone(),
        };
        let (out, failed, verdict) = drain(stored(&good, Arc::new(|_| {})));
        assert_eq!(out, data);
        assert!(!failed);
        assert_eq!(
            verdict.unwrap(),
            Sent {
                digest: Digest::of(&data),
                size: data.len() as u64
            }
        );

        let bad = Blob {
            digest: Digest::of(b"other"),
            ..good
        };
        let (_, failed, verdict) = drain(stored(&bad, Arc::new(|_| {})));
        assert!(failed, "the body must end in an error");
        assert!(matches!(verdict, Err(ImageError::DigestMismatch { .. })));
    }

    #[test]
    fn docker_layer_is_gzipped_deterministically() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 2)).map(|i| (i % 251) as u8).collect();
        let layer = DockerLayer {
            name: "l/layer.tar".into(),
            region: region_of(&dir, "l", &data),
            diff_id: Digest::of(&data),
            compression: Compression::None,
        };
        let (gz1, failed, v1) = drain(docker_layer(&layer, Arc::new(|_| {})));
        assert!(!failed);
        let v1 = v1.unwrap();
        assert_eq!(v1.digest, Digest::of(&gz1));
        assert_eq!(v1.size, gz1.len() as u64);
        let mut round = Vec::new();
        flate2::read::GzDecoder::new(&gz1[..])
            .read_to_end(&mut round)
            .unwrap();
        assert_eq!(round, data);
        let (_, _, v2) = drain(docker_layer(&layer, Arc::new(|_| {})));
        assert_eq!(v2.unwrap(), v1, "same input, same digest");

        let wrong = DockerLayer {
            diff_id: Digest::of(b"x"),
            ..layer
        };
        let (_, failed, v) = drain(docker_layer(&wrong, Arc::new(|_| {})));
        assert!(failed);
        assert!(matches!(v, Err(ImageError::DigestMismatch { .. })));
    }

    #[test]
    fn gzip_docker_layer_is_sent_as_is_and_checked_against_its_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 3)).map(|i| (i % 241) as u8).collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&data).unwrap();
        let gz = gz.finish().unwrap();
        let layer = DockerLayer {
            name: "l/layer.tar".into(),
            region: region_of(&dir, "l", &gz),
            diff_id: Digest::of(&data),
            compression: Compression::Gzip,
        };
        let (out, failed, v) = drain(docker_layer(&layer, Arc::new(|_| {})));
        assert!(!failed);
        assert_eq!(out, gz, "sent as it is");
        assert_eq!(
            v.unwrap(),
            Sent {
                digest: Digest::of(&gz),
                size: gz.len() as u64
            }
        );

        let wrong = DockerLayer {
            diff_id: Digest::of(b"another layer"),
            ..layer.clone()
        };
        let (_, failed, v) = drain(docker_layer(&wrong, Arc::new(|_| {})));
        assert!(failed, "the body must end in an error");
        assert!(
            matches!(&v, Err(ImageError::DigestMismatch { what, .. }) if what.contains("diff_id")),
            "{v:?}"
        );

        let mut cut = gz.clone();
        cut.truncate(gz.len() / 2);
        let broken = DockerLayer {
            region: region_of(&dir, "cut", &cut),
            ..layer
        };
        let (_, failed, v) = drain(docker_layer(&broken, Arc::new(|_| {})));
        assert!(failed);
        assert!(matches!(v, Err(ImageError::Malformed { .. })), "{v:?}");
    }
}
