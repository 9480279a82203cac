//! Sending: every blob at most `--jobs` at a time, manifests by digest
//! unless already there, tags last.

use futures_util::{StreamExt, TryStreamExt};

use super::report::BlobCounts;
use super::settings::Settings;
use crate::image::Digest;
use crate::image::stream::Sent;
use crate::progress::{Progress, bytes};
use crate::registry::{BlobOutcome, Registry, RegistryError, Upload};

/// PUT a manifest by digest unless the registry has it already; true if
/// written.
pub(super) async fn push_manifest(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    bytes: &[u8],
    media_type: &str,
) -> Result<bool, RegistryError> {
    if registry
        .manifest_digest(repository, &digest.to_string())
        .await?
        .as_ref()
        == Some(digest)
    {
        return Ok(false);
    }
    registry
        .put_manifest(repository, &digest.to_string(), bytes, media_type)
        .await?;
    Ok(true)
}

/// Every blob, at most `--jobs` at a time; the first failure stops the rest
/// (their uploads are dropped before their final PUT). Returns what was sent,
/// in the order given.
pub(super) async fn upload_all(
    settings: &Settings,
    registry: &Registry,
    uploads: &[Upload<'_>],
    total: u64,
    counts: &mut BlobCounts,
) -> Result<Vec<Sent>, RegistryError> {
    let progress = Progress::new(total, uploads.len());
    let ticker = progress.spawn_ticker();
    let p = &progress;
    let results: Result<Vec<(usize, Sent, BlobOutcome)>, RegistryError> =
        futures_util::stream::iter(uploads.iter().enumerate())
            .map(|(i, up)| async move {
                let (sent, outcome) = registry
                    .push_blob(&settings.repository, *up, &settings.mount_from, p)
                    .await?;
                let what = match up {
                    Upload::Stored(b) => format!("blob {} ({})", b.digest.short(), bytes(b.size)),
                    Upload::Docker(l) => format!(
                        "layer {} → {} ({} gzip)",
                        l.name,
                        sent.digest.short(),
                        bytes(sent.size)
                    ),
                };
                let how = match &outcome {
                    BlobOutcome::Present => "already there".to_string(),
                    BlobOutcome::Mounted { from } => format!("mounted from {from}"),
                    BlobOutcome::Uploaded => "uploaded".to_string(),
                };
                p.blob_done(&format!("{what}: {how}"));
                Ok((i, sent, outcome))
            })
            .buffer_unordered(settings.jobs)
            .try_collect()
            .await;
    // The ticker first, so that it cannot draw the line again once cleared.
    ticker.abort();
    let _ = ticker.await;
    progress.stop();
    let mut results = results?;
    results.sort_by_key(|(i, _, _)| *i);
    counts.total += results.len();
    for (_, sent, outcome) in &results {
        match outcome {
            BlobOutcome::Present => counts.present += 1,
            BlobOutcome::Mounted { .. } => counts.mounted += 1,
            BlobOutcome::Uploaded => {
                counts.uploaded += 1;
                counts.bytes_uploaded += sent.size;
            }
        }
    }
    Ok(results.into_iter().map(|(_, s, _)| s).collect())
}
