//! Manifests through oci-client: HEAD (what a tag points at), PUT (exact
//! bytes, never re-serialized), GET (for later stages).

use oci_client::errors::{OciDistributionError, OciErrorCode};
use reqwest::header::HeaderValue;

use super::{Registry, RegistryError};
use crate::image::{Digest, MANIFEST_TYPES};
use crate::retry;

fn is_not_found(e: &OciDistributionError) -> bool {
    match e {
        OciDistributionError::ServerError { code, .. } => *code == 404,
        OciDistributionError::ImageManifestNotFoundError(_) => true,
        OciDistributionError::RegistryError { envelope, .. } => envelope.errors.iter().any(|e| {
            matches!(
                e.code,
                OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::NotFound
            )
        }),
        _ => false,
    }
}

impl Registry {
    /// The digest `reference` (a tag or digest) points at, or None.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let op = format!("looking up {repository}:{reference}");
        let r = self.reference(repository, reference);
        let found = retry::retry(self.policy, |_| async {
            let client = self.oci_for(repository).await?;
            match client
                .fetch_manifest_digest(&r, &self.oci_auth().await?)
                .await
            {
                Ok(d) => Ok(Some(d)),
                Err(e) if is_not_found(&e) => Ok(None),
                Err(e) => Err(RegistryError::oci(op.clone(), e)),
            }
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        found
            .map(|d| {
                d.parse::<Digest>().map_err(|e| {
                    RegistryError::Protocol(format!(
                        "{op}: the registry answered with a bad digest: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// PUT the manifest's exact bytes under `reference` (its digest or a tag).
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let op = format!("pushing manifest {repository}:{reference}");
        let r = self.reference(repository, reference);
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Protocol(format!(
                "{op}: media type '{media_type}' is not a valid header"
            ))
        })?;
        let body = bytes::Bytes::copy_from_slice(bytes);
        retry::retry(self.policy, |_| async {
            let client = self.oci_for(repository).await?;
            client
                .push_manifest_raw(&r, body.clone(), content_type.clone())
                .await
                .map(|_| ())
                .map_err(|e| RegistryError::oci(op.clone(), e))
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))
    }

    /// GET a manifest: its bytes and digest.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, String), RegistryError> {
        let op = format!("fetching manifest {repository}:{reference}");
        let r = self.reference(repository, reference);
        retry::retry(self.policy, |_| async {
            let client = self.oci_for(repository).await?;
            client
                .pull_manifest_raw(&r, &self.oci_auth().await?, MANIFEST_TYPES)
                .await
                .map(|(b, d)| (b.to_vec(), d))
                .map_err(|e| RegistryError::oci(op.clone(), e))
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))
    }
}

impl Registry {
    /// GET a small blob (an image config) by digest, verified against it.
    /// Later stages read configs to check an image before deploying it;
    /// `limit` keeps a wrong descriptor from pulling a layer into memory.
    /// Redirects (ECR hands blobs out from S3) are followed; reqwest drops
    /// the Authorization header when a redirect leaves the registry's host.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let op = format!("fetching blob {repository}@{}", digest.short());
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let bytes = retry::retry(self.policy, |_| async {
            let password = self.password().await?;
            let res = self
                .http
                .get(url.clone())
                .header(reqwest::header::AUTHORIZATION, Self::basic(&password))
                .send()
                .await
                .map_err(|e| self.transport(&op, e))?;
            if !res.status().is_success() {
                return Err(Self::refusal(&op, res).await);
            }
            if res.content_length().is_some_and(|n| n > limit) {
                return Err(RegistryError::Protocol(format!(
                    "{op}: the blob is larger than {limit} bytes"
                )));
            }
            res.bytes().await.map_err(|e| self.transport(&op, e))
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        if bytes.len() as u64 > limit {
            return Err(RegistryError::Protocol(format!(
                "{op}: the blob is larger than {limit} bytes"
            )));
        }
        if Digest::of(&bytes) != *digest {
            return Err(RegistryError::Protocol(format!(
                "{op}: the registry's bytes do not match the digest"
            )));
        }
        Ok(bytes.to_vec())
    }
}
