//! Which pushed image a later stage (gate, deploy) is about, as users name it:
//! `repo@sha256:…`, a full image URI
//! (`ACCOUNT.dkr.ecr.REGION.amazonaws.com/repo@sha256:…`), or a bare digest
//! with `--repository`. Always by digest: a tag can move between the scan and
//! the deploy, a digest cannot.

use std::fmt;

use serde::Serialize;

use super::names::check_repository;
use crate::error::ConfigError;
use crate::image::Digest;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageRef {
    /// The registry host when the user named one (an image URI).
    pub registry: Option<String>,
    pub repository: String,
    pub digest: Digest,
}

impl ImageRef {
    /// Parse IMAGE (and `--repository`, for a bare digest).
    pub fn parse(image: &str, repository: Option<&str>) -> Result<ImageRef, ConfigError> {
        let image = image.trim();
        let usage = "name the image by digest: REPO@sha256:…, an image URI \
                     (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@sha256:…), or the digest with --repository REPO";
        let (name, digest) = match image.rsplit_once('@') {
            Some((name, digest)) => (Some(name), digest),
            None if image.starts_with("sha256:") => (None, image),
            None => {
                return Err(ConfigError::new(format!("'{image}' does not name an image by digest")).hint(
                    if image.contains(':') {
                        format!("tags can move between stages, digests cannot; {usage} (`hoist push` prints the digest)")
                    } else {
                        usage.to_string()
                    },
                ));
            }
        };
        let digest: Digest = digest
            .parse()
            .map_err(|e| ConfigError::new(format!("'{image}': {e}")).hint(usage))?;
        let (registry, repo) = match name {
            // `--repository` may be a full repository URI too.
            None => match repository {
                Some(r) => match r.split_once('/') {
                    Some((host, rest)) if host.contains('.') || host.contains(':') => {
                        (Some(host.to_string()), rest.to_string())
                    }
                    _ => (None, r.to_string()),
                },
                None => {
                    return Err(ConfigError::new(format!(
                        "'{image}' is a bare digest: which repository is it in?"
                    ))
                    .hint(usage));
                }
            },
            Some(name) => {
                // A first path segment with a dot, a colon or `localhost` is a
                // registry host, as in Docker's reference grammar.
                let (host, repo) = match name.split_once('/') {
                    Some((first, rest))
                        if first.contains('.') || first.contains(':') || first == "localhost" =>
                    {
                        (Some(first.to_string()), rest.to_string())
                    }
                    _ => (None, name.to_string()),
                };
                // `repo:tag@sha256:…` pins the digest; the tag is informational.
                let repo = match repo.rsplit_once(':') {
                    Some((r, tag)) if !tag.contains('/') => r.to_string(),
                    _ => repo,
                };
                if let Some(r) = repository {
                    let r = r.rsplit_once(".amazonaws.com/").map_or(r, |(_, name)| name);
                    if r != repo {
                        return Err(ConfigError::new(format!(
                            "'{image}' is in repository '{repo}', but --repository says '{r}'"
                        ))
                        .hint("drop --repository, or name the same repository in both"));
                    }
                }
                (host, repo)
            }
        };
        check_repository(&repo)?;
        Ok(ImageRef {
            registry,
            repository: repo,
            digest,
        })
    }

    /// The ECR host the user named, parsed (any of its forms: standard,
    /// FIPS, dual-stack).
    pub fn ecr_host(&self) -> Option<super::host::EcrHost> {
        super::host::EcrHost::parse(self.registry.as_deref()?)
    }

    /// The AWS account of an ECR host.
    pub fn account(&self) -> Option<&str> {
        self.ecr_host()?;
        self.registry.as_deref()?.split('.').next()
    }

    /// The region of an ECR host (the label after the service label, in
    /// every form of the host).
    pub fn region(&self) -> Option<&str> {
        self.ecr_host()?;
        let labels: Vec<&str> = self.registry.as_deref()?.split('.').collect();
        let at = if labels.get(1).is_some_and(|l| l.eq_ignore_ascii_case("dkr")) {
            3
        } else {
            2
        };
        labels.get(at).copied()
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        write!(f, "{}@{}", self.repository, self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn the_forms_users_write() {
        let cases: &[(String, Option<&str>, Option<&str>, &str)] = &[
            (format!("team/app@{D}"), None, None, "team/app"),
            (D.to_string(), Some("team/app"), None, "team/app"),
            (
                format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app@{D}"),
                None,
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                "team/app",
            ),
            (format!("team/app:v1@{D}"), None, None, "team/app"),
            (
                D.to_string(),
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app"),
                Some("123456789012.dkr.ecr.eu-west-1.amazonaws.com"),
                "team/app",
            ),
            (
                format!("127.0.0.1:5443/app@{D}"),
                Some("app"),
                Some("127.0.0.1:5443"),
                "app",
            ),
        ];
        for (image, repo, host, want) in cases {
            let r = ImageRef::parse(image, *repo).unwrap_or_else(|e| panic!("{image}: {e}"));
            assert_eq!(r.repository, *want, "{image}");
            assert_eq!(r.registry.as_deref(), *host, "{image}");
            assert_eq!(r.digest.to_string(), D);
        }
        let r = ImageRef::parse(&cases[2].0, None).unwrap();
        assert_eq!(r.account(), Some("123456789012"));
        assert_eq!(r.region(), Some("eu-west-1"));
        for host in [
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            "123456789012.dkr.ecr-fips.eu-west-1.amazonaws.com",
        ] {
            let r = ImageRef::parse(&format!("{host}/team/app@{D}"), None).unwrap();
            assert_eq!(r.account(), Some("123456789012"), "{host}");
            assert_eq!(r.region(), Some("eu-west-1"), "{host}");
        }
        assert_eq!(r.to_string(), cases[2].0);
    }

    #[test]
    fn what_is_refused_and_why() {
        let cases: &[(String, Option<&str>, &str)] = &[
            (
                "team/app:latest".into(),
                None,
                "does not name an image by digest",
            ),
            (D.into(), None, "bare digest"),
            ("team/app@sha256:abc".into(), None, "not a sha256 digest"),
            (
                format!("Team/App@{D}"),
                None,
                "not a valid ECR repository name",
            ),
            (
                format!("team/app@{D}"),
                Some("other"),
                "but --repository says",
            ),
        ];
        for (image, repo, want) in cases {
            let e = ImageRef::parse(image, *repo).unwrap_err().to_string();
            assert!(e.contains(want), "{image}: {e}");
        }
    }
}
