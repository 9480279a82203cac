//! Blob uploads, ECR's way: HEAD, then (maybe) a cross-repository mount, then
//! POST → one PATCH carrying the whole blob streamed from disk → PUT ?digest=.
//!
//! Why not chunks: ECR answers PATCH with 201 instead of 202, refuses chunks
//! under 5 MiB (LayerPartTooSmallException) and silently drops the data of
//! every PATCH after the second (aws/containers-roadmap#2831). One PATCH per
//! blob avoids all three. Why not oci-client: its streamed push sends fixed
//! 4 MiB PATCHes (see the module comment in registry/mod.rs).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE};

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
    /// HEAD /v2/<repo>/blobs/<digest> (oci-client): one attempt, as part of
    /// the upload attempt that retries as a whole.
    async fn head_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let op = format!("checking for blob {} in {repository}", digest.short());
        let client = self.oci_for(repository).await?;
        let reference = self.reference(repository, "latest");
        client
            .blob_exists(&reference, &digest.to_string())
            .await
            .map_err(|e| RegistryError::oci(op, e))
    }

    /// Whether the registry has the blob (reads only; retried on its own).
    pub async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let op = format!("checking for blob {} in {repository}", digest.short());
        retry::retry(self.policy, |_| self.head_blob(repository, digest))
            .await
            .map_err(|e| RegistryError::after(&op, e))
    }

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
        // Nothing to upload: the registry has it, or mounts it.
        let skipped = |digest: &Digest, outcome| {
            if let Upload::Stored(b) = up {
                progress.add(b.size);
            }
            let size = up.content_length().unwrap_or_default();
            Ok((
                Sent {
                    digest: digest.clone(),
                    size,
                },
                outcome,
            ))
        };
        if let Some(digest) = up.known_digest() {
            if self.head_blob(repository, digest).await? {
                return skipped(digest, BlobOutcome::Present);
            }
        }
        let password = self.password().await?;
        let auth = Self::basic(&password);
        let uploads = self.url(&format!("/v2/{repository}/blobs/uploads/"));

        // A mount is tried from --mount-from, then from a repository this run
        // already pushed the blob to. ECR answers 202 with a fresh upload
        // session when mounting is off or the source lacks the blob: then we
        // upload into that session.
        let mut session = None;
        if let Some(digest) = up.known_digest() {
            let mut sources: Vec<String> = mount_from
                .iter()
                .filter(|r| *r != repository)
                .cloned()
                .collect();
            if let Some(r) = self.pushed.lock().await.get(digest) {
                if r != repository && !sources.contains(r) {
                    sources.push(r.clone());
                }
            }
            for from in sources {
                let op = format!("mounting blob {} from {from}", digest.short());
                let mut url = uploads.clone();
                url.query_pairs_mut()
                    .append_pair("mount", &digest.to_string())
                    .append_pair("from", &from);
                let res = self.start_upload(url, &auth, &op).await?;
                match res.status().as_u16() {
                    201 => return skipped(digest, BlobOutcome::Mounted { from }),
                    202 => {
                        session = Some(self.location(&res, &op)?);
                        break;
                    }
                    // Refused credentials and transient failures are what
                    // they are; any other refusal (the source repository is
                    // gone, say) only means this blob gets uploaded.
                    401 | 403 | 408 | 429 | 500..=599 => return Err(Self::refusal(&op, res).await),
                    status => {
                        tracing::info!("{op}: the registry answered {status}; uploading instead")
                    }
                }
            }
        }
        let location = match session {
            Some(l) => l,
            None => {
                let op = format!("starting the upload of {}", up.label());
                let res = self.start_upload(uploads, &auth, &op).await?;
                if res.status().as_u16() != 202 {
                    return Err(Self::refusal(&op, res).await);
                }
                self.location(&res, &op)?
            }
        };

        let sent_here = Arc::new(AtomicU64::new(0));
        let counted = sent_here.clone();
        let p = progress.clone();
        let blob = up.stream(Arc::new(move |n| {
            counted.fetch_add(n, Ordering::Relaxed);
            p.add(n);
        }));
        let result = self.send_body(&location, &auth, up, blob).await;
        if result.is_err() {
            progress.rollback(sent_here.load(Ordering::Relaxed));
            // Leave no dangling session behind; failure here changes nothing.
            let _ = self
                .http
                .delete(location)
                .header("Authorization", &auth)
                .send()
                .await;
        }
        result.map(|sent| (sent, BlobOutcome::Uploaded))
    }

    /// POST …/blobs/uploads/ (with `mount` and `from` for a mount).
    async fn start_upload(
        &self,
        url: url::Url,
        auth: &str,
        op: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        let req = self
            .http
            .post(url)
            .header("Authorization", auth)
            .header(CONTENT_LENGTH, 0);
        req.send().await.map_err(|e| self.transport(op, e))
    }

    async fn send_body(
        &self,
        location: &url::Url,
        auth: &str,
        up: Upload<'_>,
        blob: BlobStream,
    ) -> Result<Sent, RegistryError> {
        let op = format!("uploading {}", up.label());
        let (body, verdict) = blob.into_parts();
        let mut req = self
            .http
            .patch(location.clone())
            .header("Authorization", auth)
            .header(CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(body));
        if let Some(len) = up.content_length() {
            req = req.header(CONTENT_LENGTH, len);
        }
        let sent = req.send().await;
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
        let res = self
            .http
            .put(put)
            .header("Authorization", auth)
            .header(CONTENT_LENGTH, 0)
            .send()
            .await
            .map_err(|e| self.transport(&op, e))?;
        if res.status().as_u16() != 201 {
            return Err(Self::refusal(&op, res).await);
        }
        Ok(sent)
    }
}
