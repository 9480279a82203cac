//! Blob uploads, ECR's way: HEAD, then (maybe) a cross-repository mount, then
//! POST → one PATCH carrying the whole blob streamed from disk → PUT ?digest=.
//!
//! Why not chunks: ECR answers PATCH with 201 instead of 202, refuses chunks
//! under 5 MiB (LayerPartTooSmallException), and stops advancing the `Range`
//! it answers with after the first PATCH of a session — the data is kept,
//! but a client that trusts `Range`, or retries a chunk inside the same
//! session, gets `416 BLOB_UPLOAD_INVALID "First byte of the layer part is 0
//! instead of N"` (aws/containers-roadmap#2831 as its reporter corrected it;
//! apple/containerization#790). One PATCH per blob, in a new session for
//! every attempt, avoids all of it. Why not oci-client: its streamed push
//! sends fixed 4 MiB PATCHes (see the module comment in registry/mod.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue};

use super::{Registry, RegistryError};
use crate::image::stream::{self, BlobStream, Sent};
use crate::image::{Blob, Digest, DockerLayer};
use crate::progress::Progress;
use crate::retry;

/// What to upload: a stored blob (digest known, verified as it streams) or a
/// docker layer (digest learnt while it streams, compressed on the way).
#[derive(Clone, Copy)]
pub enum Upload<'a> {
    Stored(&'a Blob),
    Docker(&'a DockerLayer),
}

impl Upload<'_> {
    fn known_digest(&self) -> Option<&Digest> {
        match self {
            Upload::Stored(b) => Some(&b.digest),
            Upload::Docker(_) => None,
        }
    }

    fn label(&self) -> String {
        match self {
            Upload::Stored(b) => format!("blob {}", b.digest.short()),
            Upload::Docker(l) => format!("layer {}", l.name),
        }
    }

    fn stream(&self, on_bytes: stream::OnBytes) -> BlobStream {
        match self {
            Upload::Stored(b) => stream::stored(b, on_bytes),
            Upload::Docker(l) => stream::docker_layer(l, on_bytes),
        }
    }

    fn content_length(&self) -> Option<u64> {
        match self {
            Upload::Stored(b) => Some(b.size),
            Upload::Docker(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The registry had it already.
    Present,
    Mounted {
        from: String,
    },
    Uploaded,
}

impl Registry {
    /// Push one blob unless the registry has it; returns what the blob is
    /// (its digest and size as sent) and how it got there.
    pub async fn push_blob(
        &self,
        repository: &str,
        up: Upload<'_>,
        mount_from: &[String],
        progress: &Arc<Progress>,
    ) -> Result<(Sent, BlobOutcome), RegistryError> {
        let op = format!("pushing {} to {repository}", up.label());
        let result = retry::retry(self.policy, |_| {
            self.try_push_blob(repository, up, mount_from, progress)
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        let digest = up.known_digest().unwrap_or(&result.0.digest);
        self.pushed
            .lock()
            .await
            .entry(digest.clone())
            .or_insert_with(|| repository.to_string());
        Ok(result)
    }

    /// One attempt, from the start: a retry re-reads the file from its first
    /// byte in a new upload session.
    async fn try_push_blob(
        &self,
        repository: &str,
        up: Upload<'_>,
        mount_from: &[String],
        progress: &Arc<Progress>,
    ) -> Result<(Sent, BlobOutcome), RegistryError> {
        if let Some(digest) = up.known_digest()
            && self
                .head_blob(repository, digest, up.content_length())
                .await?
        {
            return Ok(skipped(up, progress, digest, BlobOutcome::Present));
        }
        let password = self.password().await?;
        let auth = Self::basic(&password);
        let uploads = self.url(&format!("/v2/{repository}/blobs/uploads/"));
        let session = match up.known_digest() {
            Some(digest) => {
                match self
                    .try_mounts(repository, digest, mount_from, &uploads, &auth)
                    .await?
                {
                    Mount::Mounted { from } => {
                        return Ok(skipped(up, progress, digest, BlobOutcome::Mounted { from }));
                    }
                    Mount::Session(location) => Some(location),
                    Mount::NotMounted => None,
                }
            }
            None => None,
        };
        let location = match session {
            Some(location) => location,
            None => self.open_session(uploads, &auth, up).await?,
        };
        let sent = self.upload_into(location, &auth, up, progress).await?;
        Ok((sent, BlobOutcome::Uploaded))
    }

    /// Try to mount `digest` into `repository` from each source in turn.
    ///
    /// A mount is tried from --mount-from, then from a repository this run
    /// already pushed the blob to. ECR answers 202 with a fresh upload
    /// session when mounting is off or the source lacks the blob: then we
    /// upload into that session.
    async fn try_mounts(
        &self,
        repository: &str,
        digest: &Digest,
        mount_from: &[String],
        uploads: &url::Url,
        auth: &HeaderValue,
    ) -> Result<Mount, RegistryError> {
        let pushed_to = self.pushed.lock().await.get(digest).cloned();
        for from in mount_sources(mount_from, repository, pushed_to.as_deref()) {
            let op = format!("mounting blob {} from {from}", digest.short());
            let mut url = uploads.clone();
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", &from);
            let res = self.start_upload(url, auth, &op).await?;
            let status = res.status().as_u16();
            match mount_answer(status) {
                MountAnswer::Mounted => return Ok(Mount::Mounted { from }),
                MountAnswer::Session => return Ok(Mount::Session(self.location(&res, &op)?)),
                MountAnswer::Refused => return Err(Self::refusal(&op, res).await),
                MountAnswer::UploadInstead => {
                    tracing::info!("{op}: the registry answered {status}; uploading instead")
                }
            }
        }
        Ok(Mount::NotMounted)
    }

    /// A new upload session for `up`: where to send it.
    async fn open_session(
        &self,
        uploads: url::Url,
        auth: &HeaderValue,
        up: Upload<'_>,
    ) -> Result<url::Url, RegistryError> {
        let op = format!("starting the upload of {}", up.label());
        let res = self.start_upload(uploads, auth, &op).await?;
        if res.status().as_u16() != 202 {
            return Err(Self::refusal(&op, res).await);
        }
        self.location(&res, &op)
    }

    /// Send the blob into the session at `location`, counting its bytes as
    /// they go; a failed upload takes them back and ends the session.
    async fn upload_into(
        &self,
        location: url::Url,
        auth: &HeaderValue,
        up: Upload<'_>,
        progress: &Arc<Progress>,
    ) -> Result<Sent, RegistryError> {
        let sent_here = Arc::new(AtomicU64::new(0));
        let counted = sent_here.clone();
        let p = progress.clone();
        let blob = up.stream(Arc::new(move |n| {
            counted.fetch_add(n, Ordering::Relaxed);
            p.add(n);
        }));
        let result = self.send_body(&location, auth, up, blob).await;
        if result.is_err() {
            progress.rollback(sent_here.load(Ordering::Relaxed));
            // Leave no dangling session behind; failure here changes nothing.
            let _ = self
                .http
                .delete(location)
                .header(AUTHORIZATION, auth)
                .send()
                .await;
        }
        result
    }

    /// POST …/blobs/uploads/ (with `mount` and `from` for a mount).
    async fn start_upload(
        &self,
        url: url::Url,
        auth: &HeaderValue,
        op: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let req = self
            .http
            .post(url)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_LENGTH, 0);
        self.send(op, req).await
    }

    async fn send_body(
        &self,
        location: &url::Url,
        auth: &HeaderValue,
        up: Upload<'_>,
        blob: BlobStream,
    ) -> Result<Sent, RegistryError> {
        let op = format!("uploading {}", up.label());
        let (body, verdict) = blob.into_parts();
        let progress = Arc::new(Watch::new());
        let body = watched(body, progress.clone());
        let mut req = self
            .upload
            .patch(location.clone())
            .header(AUTHORIZATION, auth)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = up.content_length() {
            req = req.header(CONTENT_LENGTH, len);
        }
        let sent = match progress.guard(req.send(), self.idle).await {
            Some(sent) => sent,
            None => {
                let _ = verdict.await;
                return Err(RegistryError::Stalled {
                    op,
                    waiting: progress.waiting(),
                    after: self.idle,
                });
            }
        };
        // The verdict settles whether the bytes were the right ones; a source
        // error beats whatever the transport made of the aborted body.
        let res = match sent {
            Err(e) => {
                if let Ok(Err(source)) = verdict.await {
                    return Err(source.into());
                }
                return Err(self.transport(&op, e));
            }
            Ok(res) => res,
        };
        // Distribution answers 202; ECR answers 201.
        if !matches!(res.status().as_u16(), 201 | 202 | 204) {
            if let Ok(Err(source)) = verdict.await {
                return Err(source.into());
            }
            return Err(Self::refusal(&op, res).await);
        }
        let next = self
            .location(&res, &op)
            .unwrap_or_else(|_| location.clone());
        let sent = match verdict.await {
            Ok(Ok(sent)) => sent,
            Ok(Err(source)) => return Err(source.into()),
            Err(_) => {
                return Err(RegistryError::Protocol(format!(
                    "{op}: the blob reader stopped without a verdict"
                )));
            }
        };
        let op = format!("committing {}", up.label());
        let mut put = next;
        put.query_pairs_mut()
            .append_pair("digest", &sent.digest.to_string());
        let req = self
            .http
            .put(put)
            .header(AUTHORIZATION, auth)
            .header(CONTENT_LENGTH, 0);
        let res = self.send(&op, req).await?;
        if res.status().as_u16() != 201 {
            return Err(Self::refusal(&op, res).await);
        }
        Ok(sent)
    }
}

/// Nothing to upload: the registry has the blob, or mounted it. Its whole
/// size counts as done.
fn skipped(
    up: Upload<'_>,
    progress: &Progress,
    digest: &Digest,
    outcome: BlobOutcome,
) -> (Sent, BlobOutcome) {
    if let Upload::Stored(b) = up {
        progress.add(b.size);
    }
    let size = up.content_length().unwrap_or_default();
    (
        Sent {
            digest: digest.clone(),
            size,
        },
        outcome,
    )
}

/// What the mount attempts came to.
enum Mount {
    Mounted {
        from: String,
    },
    /// A mount was refused with a fresh upload session, at this location.
    Session(url::Url),
    /// No source to mount from, or none would; no session yet.
    NotMounted,
}

/// Where to try mounting a blob into `repository` from, in order: the
/// --mount-from repositories, then the one this run already pushed it to
/// (`pushed_to`), never `repository` itself.
fn mount_sources(mount_from: &[String], repository: &str, pushed_to: Option<&str>) -> Vec<String> {
    let mut sources: Vec<String> = mount_from
        .iter()
        .filter(|r| *r != repository)
        .cloned()
        .collect();
    if let Some(r) = pushed_to
        && r != repository
        && !sources.iter().any(|s| s == r)
    {
        sources.push(r.to_string());
    }
    sources
}

/// What the registry's answer to a mount request means.
#[derive(Debug, PartialEq, Eq)]
enum MountAnswer {
    Mounted,
    /// Not mounted, but an upload session was opened.
    Session,
    /// A failure to report.
    Refused,
    /// Not mounted: the blob is uploaded instead.
    UploadInstead,
}

fn mount_answer(status: u16) -> MountAnswer {
    match status {
        201 => MountAnswer::Mounted,
        202 => MountAnswer::Session,
        // Refused credentials and transient failures are what they are; any
        // other refusal (the source repository is gone, say) only means this
        // blob gets uploaded.
        401 | 403 | 408 | 429 | 500..=599 => MountAnswer::Refused,
        _ => MountAnswer::UploadInstead,
    }
}

/// How far one upload has got: when the connection last took bytes of the
/// body, and whether it has taken all of them. A registry that stops reading
/// mid-body, or never answers once it has everything, is noticed after the
/// idle time — a total timeout would cut off a large layer on a slow link.
struct Watch {
    last: std::sync::Mutex<Instant>,
    done: std::sync::atomic::AtomicBool,
}

impl Watch {
    fn new() -> Watch {
        Watch {
            last: std::sync::Mutex::new(Instant::now()),
            done: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn tick(&self) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn last(&self) -> Instant {
        *self.last.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn waiting(&self) -> &'static str {
        if self.done.load(Ordering::Relaxed) {
            "waiting for its answer to the upload"
        } else {
            "sending the blob (the registry stopped taking bytes)"
        }
    }

    /// `fut`, or None once nothing has moved for `idle`.
    async fn guard<F: std::future::Future>(&self, fut: F, idle: Duration) -> Option<F::Output> {
        tokio::pin!(fut);
        loop {
            let deadline = self.last() + idle;
            tokio::select! {
                out = &mut fut => return Some(out),
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if self.last().elapsed() >= idle {
                        return None;
                    }
                }
            }
        }
    }
}

/// `body`, telling `watch` each time the connection takes a chunk and when
/// the last one was taken.
fn watched<S>(body: S, watch: Arc<Watch>) -> impl Stream<Item = S::Item> + Send + 'static
where
    S: Stream + Send + 'static,
{
    let end = watch.clone();
    body.map(move |item| {
        watch.tick();
        item
    })
    .chain(futures_util::stream::poll_fn(move |_| {
        end.tick();
        end.done.store(true, Ordering::Relaxed);
        std::task::Poll::Ready(None)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_a_mount_is_tried_from() {
        let v = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        // (--mount-from, the repository pushed to before, the sources)
        let table: [(&[&str], Option<&str>, &[&str]); 7] = [
            (&[], None, &[]),
            (&["base"], None, &["base"]),
            (&["app", "base"], None, &["base"]),
            (&[], Some("other"), &["other"]),
            (&[], Some("app"), &[]),
            (&["base"], Some("base"), &["base"]),
            (&["base", "app"], Some("other"), &["base", "other"]),
        ];
        for (mount_from, pushed_to, want) in table {
            assert_eq!(
                mount_sources(&v(mount_from), "app", pushed_to),
                v(want),
                "{mount_from:?} {pushed_to:?}"
            );
        }
    }

    #[test]
    fn what_an_answer_to_a_mount_means() {
        let table = [
            (201, MountAnswer::Mounted),
            (202, MountAnswer::Session),
            (401, MountAnswer::Refused),
            (403, MountAnswer::Refused),
            (408, MountAnswer::Refused),
            (429, MountAnswer::Refused),
            (500, MountAnswer::Refused),
            (503, MountAnswer::Refused),
            (599, MountAnswer::Refused),
            (400, MountAnswer::UploadInstead),
            (404, MountAnswer::UploadInstead),
            (405, MountAnswer::UploadInstead),
            (200, MountAnswer::UploadInstead),
        ];
        for (status, want) in table {
            assert_eq!(mount_answer(status), want, "{status}");
        }
    }
}
