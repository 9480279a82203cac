//! Blob reads: HEAD (is it there, and at the size the image says?) and GET
//! (a config, for later stages) with redirects handled by hoist itself.
//!
//! ECR answers a blob GET with a redirect to S3: another host, which must
//! never see the registry's credentials. hoist follows redirects by hand so
//! that rule does not depend on a client library's defaults: the
//! Authorization header goes only to the registry's own origin, and a
//! redirect to plain http is refused unless it stays on loopback.

use reqwest::Method;
use reqwest::header::LOCATION;
use url::Url;

use super::{Registry, RegistryError, is_loopback};
use crate::image::Digest;
use crate::retry;

/// Redirects followed for one GET (ECR uses one).
const MAX_REDIRECTS: usize = 5;

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Registry {
    /// HEAD /v2/<repo>/blobs/<digest>: one attempt, as part of the upload
    /// attempt that retries as a whole. A blob the registry has at another
    /// size than the image says is an error, not "present".
    pub(super) async fn head_blob(
        &self,
        repository: &str,
        digest: &Digest,
        size: Option<u64>,
    ) -> Result<bool, RegistryError> {
        let op = format!("checking for blob {} in {repository}", digest.short());
        let url = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let req = self.request(Method::HEAD, url).await?;
        let res = self.send(&op, req).await?;
        match res.status().as_u16() {
            200 => {
                let length = res
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|s| s.parse::<u64>().ok());
                match (size, length) {
                    (Some(want), Some(got)) if want != got => {
                        Err(RegistryError::Protocol(format!(
                            "{op}: the registry has blob {digest} at {got} bytes, but the image says {want}"
                        )))
                    }
                    // A "present" hoist cannot check (the Distribution spec
                    // has the HEAD carry Content-Length): uploaded again,
                    // which costs bytes, never a wrong image.
                    (Some(_), None) => Ok(false),
                    _ => Ok(true),
                }
            }
            // Present, stored elsewhere (the redirect is not followed: a
            // HEAD says enough, and S3's signed URLs are for GET).
            307 | 302 | 303 => Ok(true),
            404 => Ok(false),
            _ => {
                let e = Self::refusal(&op, res).await;
                if e.code() == Some("BLOB_UNKNOWN") {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Whether the registry has the blob (reads only; retried on its own).
    pub async fn has_blob(&self, repository: &str, digest: &Digest) -> Result<bool, RegistryError> {
        let op = format!("checking for blob {} in {repository}", digest.short());
        retry::retry(self.policy, |_| self.head_blob(repository, digest, None))
            .await
            .map_err(|e| RegistryError::after(&op, e))
    }

    /// GET a small blob (an image config) by digest, verified against it.
    /// Later stages read configs to check an image before deploying it;
    /// `limit` keeps a wrong descriptor from pulling a layer into memory.
    pub async fn get_blob(
        &self,
        repository: &str,
        digest: &Digest,
        limit: u64,
    ) -> Result<Vec<u8>, RegistryError> {
        let op = format!("fetching blob {repository}@{}", digest.short());
        let start = self.url(&format!("/v2/{repository}/blobs/{digest}"));
        let bytes = retry::retry(self.policy, |_| async {
            let res = self.get_following(&op, start.clone()).await?;
            if !res.status().is_success() {
                return Err(Self::refusal(&op, res).await);
            }
            self.read_limited(&op, res, limit).await
        })
        .await
        .map_err(|e| RegistryError::after(&op, e))?;
        if Digest::of(&bytes) != *digest {
            return Err(RegistryError::DigestMismatch {
                op,
                expected: digest.clone(),
                registry_said: Digest::of(&bytes).to_string(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// GET `start`, following redirects: credentials only on the registry's
    /// own origin, https (or loopback http) only.
    async fn get_following(
        &self,
        op: &str,
        start: Url,
    ) -> Result<reqwest::Response, RegistryError> {
        let mut url = start.clone();
        for _ in 0..=MAX_REDIRECTS {
            let req = if same_origin(&url, &self.base) {
                self.request(Method::GET, url.clone()).await?
            } else {
                self.http.get(url.clone())
            };
            let res = self.send(op, req).await?;
            if !res.status().is_redirection() {
                return Ok(res);
            }
            let location = res
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| {
                    RegistryError::Protocol(format!(
                        "{op}: the registry answered {} without a Location header",
                        res.status()
                    ))
                })?;
            let next = url.join(location).map_err(|_| {
                RegistryError::Protocol(format!("{op}: the registry sent a bad redirect"))
            })?;
            match next.scheme() {
                "https" => {}
                "http" if is_loopback(&next) => {}
                _ => {
                    return Err(RegistryError::Protocol(format!(
                        "{op}: the registry redirected to {}://{}, which is not https; hoist does not follow it",
                        next.scheme(),
                        crate::text::external(next.host_str().unwrap_or_default(), 100)
                    )));
                }
            }
            url = next;
        }
        Err(RegistryError::Protocol(format!(
            "{op}: more than {MAX_REDIRECTS} redirects"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let u = |s: &str| Url::parse(s).unwrap();
        assert!(same_origin(
            &u("https://a.example/x"),
            &u("https://a.example:443/y")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("https://b.example/")
        ));
        assert!(!same_origin(
            &u("https://a.example/"),
            &u("http://a.example/")
        ));
        assert!(!same_origin(
            &u("http://127.0.0.1:1/"),
            &u("http://127.0.0.1:2/")
        ));
    }
}
