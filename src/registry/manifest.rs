//! Manifests: HEAD (what a tag or digest points at), PUT (the exact bytes,
//! never re-serialized), GET (for later stages) — on hoist's own HTTP path
//! (see the module comment in registry/mod.rs for why not oci-client).

use reqwest::Method;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use super::{Registry, RegistryError};
use crate::image::{Digest, MANIFEST_TYPES, MAX_MANIFEST};
use crate::retry;

/// `Docker-Content-Digest`, where registries name what they stored or found.
const DIGEST_HEADER: &str = "docker-content-digest";

fn accept() -> HeaderValue {
    HeaderValue::from_str(&MANIFEST_TYPES.join(", ")).unwrap_or(HeaderValue::from_static("*/*"))
}

fn digest_header(res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get(DIGEST_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A 404 that means "no such manifest" (or no such repository: the caller
/// has already checked that it exists, and ECR reports a repository it does
/// not know as NAME_UNKNOWN).
fn is_not_found(e: &RegistryError) -> bool {
    match e {
        RegistryError::Status { status, code, .. } => {
            *status == 404
                || matches!(
                    code.as_deref(),
                    Some("MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "NOT_FOUND")
                )
        }
        _ => false,
    }
}

impl Registry {
    fn manifest_url(&self, repository: &str, reference: &str) -> url::Url {
        self.url(&format!("/v2/{repository}/manifests/{reference}"))
    }

    /// The digest `reference` (a tag or digest) points at, or None.
    ///
    /// ECR may answer a HEAD without `Docker-Content-Digest`: for a digest
    /// reference a 200 says enough; for a tag hoist then GETs the manifest
    /// and hashes it.
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<Digest>, RegistryError> {
        let op = format!("looking up {repository}:{reference}");
        let url = self.manifest_url(repository, reference);
        let by_digest: Option<Digest> = reference.parse().ok();
        let found = retry::retry(self.policy, |_| async {
            let req = self.request(Method::HEAD, url.clone()).await?;
            let res = self.send(&op, req.header(ACCEPT, accept())).await?;
            if !res.status().is_success() {
                let e = Self::refusal(&op, res).await;
                return if is_not_found(&e) { Ok(None) } else { Err(e) };
            }
            Ok(Some(digest_header(&res)))
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        let Some(header) = found else {
            return Ok(None);
        };
        match (header, by_digest) {
            (Some(h), Some(d)) if h == d.to_string() => Ok(Some(d)),
            (Some(h), Some(d)) => Err(RegistryError::DigestMismatch {
                op,
                expected: d,
                registry_said: crate::text::external(&h, 80),
            }),
            (None, Some(d)) => Ok(Some(d)),
            (Some(h), None) => h.parse::<Digest>().map(Some).map_err(|_| {
                RegistryError::Protocol(format!(
                    "{op}: the registry answered with a digest hoist cannot read: {}",
                    crate::text::external(&h, 80)
                ))
            }),
            (None, None) => Ok(Some(self.get_manifest(repository, reference).await?.1)),
        }
    }

    /// PUT the manifest's exact bytes under `reference` (its digest or a tag).
    ///
    /// 200, 201 and 202 are success; `Location` is neither needed nor read
    /// (ECR sends none). When the registry names the digest it stored, it
    /// must be the sha256 of the bytes sent.
    pub async fn put_manifest(
        &self,
        repository: &str,
        reference: &str,
        bytes: &[u8],
        media_type: &str,
    ) -> Result<(), RegistryError> {
        let op = format!("pushing manifest {repository}:{reference}");
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            RegistryError::Protocol(format!(
                "{op}: media type '{}' is not a valid header",
                crate::text::external(media_type, 80)
            ))
        })?;
        let digest = Digest::of(bytes);
        let body = bytes::Bytes::copy_from_slice(bytes);
        let url = self.manifest_url(repository, reference);
        let stored = retry::retry(self.policy, |_| async {
            let req = self.request(Method::PUT, url.clone()).await?;
            let res = self
                .send(
                    &op,
                    req.header(CONTENT_TYPE, content_type.clone())
                        .body(body.clone()),
                )
                .await?;
            match res.status().as_u16() {
                200..=202 => Ok(digest_header(&res)),
                _ => Err(Self::refusal(&op, res).await),
            }
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        match stored {
            Some(said) if said != digest.to_string() => Err(RegistryError::DigestMismatch {
                op,
                expected: digest,
                registry_said: crate::text::external(&said, 80),
            }),
            _ => Ok(()),
        }
    }

    /// GET a manifest: its bytes (at most the 4 MiB ECR allows) and digest.
    /// By digest, the bytes must hash to it.
    pub async fn get_manifest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<(Vec<u8>, Digest), RegistryError> {
        let op = format!("fetching manifest {repository}:{reference}");
        let url = self.manifest_url(repository, reference);
        let bytes = retry::retry(self.policy, |_| async {
            let req = self.request(Method::GET, url.clone()).await?;
            let res = self.send(&op, req.header(ACCEPT, accept())).await?;
            if !res.status().is_success() {
                return Err(Self::refusal(&op, res).await);
            }
            self.read_limited(&op, res, MAX_MANIFEST).await
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        let digest = Digest::of(&bytes);
        if let Ok(wanted) = reference.parse::<Digest>()
            && wanted != digest
        {
            return Err(RegistryError::DigestMismatch {
                op,
                expected: wanted,
                registry_said: digest.to_string(),
            });
        }
        Ok((bytes.to_vec(), digest))
    }
}
