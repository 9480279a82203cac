//! The ECR API calls the push stage needs (aws-sdk-ecr): the registry
//! password, and the repository — whether it exists, its tag mutability.

use std::time::SystemTime;

use aws_sdk_ecr::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository};
use url::Url;

use super::RegistryError;
use crate::error::Class;
use crate::secret::Secret;

#[derive(Clone)]
pub struct Ecr {
    client: aws_sdk_ecr::Client,
}

pub struct EcrAuth {
    /// `https://<account>.dkr.ecr.<region>.amazonaws.com`
    pub endpoint: Url,
    pub password: Secret,
    pub expires_at: Option<SystemTime>,
}

/// Which tags may be moved once set. With exclusions, the wildcard filters
/// name the tags that behave the other way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mutability {
    Mutable,
    Immutable,
    ImmutableExcept(Vec<String>),
    MutableExcept(Vec<String>),
}

impl Mutability {
    pub fn is_immutable(&self, tag: &str) -> bool {
        match self {
            Mutability::Mutable => false,
            Mutability::Immutable => true,
            Mutability::ImmutableExcept(f) => !f.iter().any(|p| wildcard(p, tag)),
            Mutability::MutableExcept(f) => f.iter().any(|p| wildcard(p, tag)),
        }
    }
}

/// ECR's exclusion filters: `*` matches any run of characters.
fn wildcard(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            let Some(tail) = text.strip_prefix(head) else {
                return false;
            };
            (0..=tail.len())
                .filter(|&i| tail.is_char_boundary(i))
                .any(|i| wildcard(rest, &tail[i..]))
        }
    }
}

#[derive(Debug, Clone)]
pub struct RepoInfo {
    pub name: String,
    pub mutability: Mutability,
    pub scan_on_push: bool,
    pub created: bool,
}

impl RepoInfo {
    fn from_sdk(r: &Repository, created: bool) -> RepoInfo {
        let filters: Vec<String> = r
            .image_tag_mutability_exclusion_filters()
            .iter()
            .map(|f| f.filter().to_string())
            .collect();
        let mutability = match r.image_tag_mutability() {
            Some(ImageTagMutability::Immutable) => Mutability::Immutable,
            Some(ImageTagMutability::ImmutableWithExclusion) => {
                Mutability::ImmutableExcept(filters)
            }
            Some(ImageTagMutability::MutableWithExclusion) => Mutability::MutableExcept(filters),
            _ => Mutability::Mutable,
        };
        RepoInfo {
            name: r.repository_name().unwrap_or_default().to_string(),
            mutability,
            scan_on_push: r
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            created,
        }
    }
}

/// An SDK failure as a registry error: what was being done, the SDK's own
/// words (with its context), and what usually fixes it.
pub fn aws_error<E, R>(op: &str, e: SdkError<E, R>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.code().unwrap_or_default().to_string();
    let (class, hint) = match (&e, code.as_str()) {
        (_, "AccessDeniedException" | "AccessDenied") => (Class::Usage, Some(format!("the AWS identity is not allowed to {op}; see the README's IAM policies"))),
        (_, "UnrecognizedClientException" | "InvalidSignatureException" | "ExpiredTokenException" | "InvalidClientTokenId") => {
            (Class::Usage, Some("the AWS credentials were refused: check which credentials the job has (aws sts get-caller-identity) and that they have not expired".into()))
        }
        (SdkError::ConstructionFailure(_), _) => (Class::Usage, Some("no usable AWS credentials were found: set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or a web identity (AWS_WEB_IDENTITY_TOKEN_FILE + AWS_ROLE_ARN)".into())),
        (SdkError::DispatchFailure(d), _) if d.is_user() || d.is_other() => {
            (Class::Usage, Some("no usable AWS credentials were found, or the request could not be sent: set AWS credentials, and check AWS_ENDPOINT_URL and the network".into()))
        }
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _) => (Class::Infrastructure, Some("the AWS API could not be reached: check the network, HTTPS_PROXY / NO_PROXY and AWS_CA_BUNDLE".into())),
        _ => (Class::Infrastructure, None),
    };
    RegistryError::Aws {
        op: op.to_string(),
        source: DisplayErrorContext(e).to_string().into(),
        class,
        hint,
    }
}

impl Ecr {
    pub fn new(config: &aws_config::SdkConfig) -> Ecr {
        Ecr {
            client: aws_sdk_ecr::Client::new(config),
        }
    }

    pub fn client(&self) -> &aws_sdk_ecr::Client {
        &self.client
    }

    /// GetAuthorizationToken: the registry's host and its Basic password
    /// (`AWS:<password>`, base64, valid 12 hours).
    pub async fn authorization(&self) -> Result<EcrAuth, RegistryError> {
        let op = "ecr:GetAuthorizationToken";
        let out = self
            .client
            .get_authorization_token()
            .send()
            .await
            .map_err(|e| aws_error(op, e))?;
        let data = out.authorization_data().first().ok_or_else(|| {
            RegistryError::Protocol(format!("{op} returned no authorization data"))
        })?;
        let token = data
            .authorization_token()
            .ok_or_else(|| RegistryError::Protocol(format!("{op} returned no token")))?;
        use base64::Engine;
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!(
                    "{op} returned a token that is not base64 of user:password"
                ))
            })?;
        let password = match decoded.split_once(':') {
            Some(("AWS", p)) => Secret::new(p),
            _ => {
                return Err(RegistryError::Protocol(format!(
                    "{op} returned a token for a user other than AWS"
                )));
            }
        };
        let endpoint = data
            .proxy_endpoint()
            .and_then(|e| Url::parse(e).ok())
            .ok_or_else(|| {
                RegistryError::Protocol(format!("{op} returned no usable proxyEndpoint"))
            })?;
        let expires_at = data
            .expires_at()
            .and_then(|t| SystemTime::try_from(*t).ok());
        Ok(EcrAuth {
            endpoint,
            password,
            expires_at,
        })
    }

    /// DescribeRepositories for one name: None when it does not exist.
    pub async fn repository(&self, name: &str) -> Result<Option<RepoInfo>, RegistryError> {
        let res = self
            .client
            .describe_repositories()
            .repository_names(name)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out
                .repositories()
                .first()
                .map(|r| RepoInfo::from_sdk(r, false))),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(aws_error("ecr:DescribeRepositories", e)),
        }
    }

    /// CreateRepository with the settings a deploy pipeline wants: scan on
    /// push, immutable tags.
    pub async fn create_repository(&self, name: &str) -> Result<RepoInfo, RegistryError> {
        let out = self
            .client
            .create_repository()
            .repository_name(name)
            .image_tag_mutability(ImageTagMutability::Immutable)
            .image_scanning_configuration(
                ImageScanningConfiguration::builder()
                    .scan_on_push(true)
                    .build(),
            )
            .send()
            .await;
        match out {
            Ok(out) => out
                .repository()
                .map(|r| RepoInfo::from_sdk(r, true))
                .ok_or_else(|| {
                    RegistryError::Protocol("ecr:CreateRepository returned no repository".into())
                }),
            // Created by a parallel job in the meantime: use it.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_repository_already_exists_exception()) =>
            {
                self.repository(name).await?.ok_or_else(|| {
                    RegistryError::Protocol(format!("repository {name} exists and does not"))
                })
            }
            Err(e) => Err(aws_error("ecr:CreateRepository", e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_mutability_with_exclusions() {
        let table = [
            (Mutability::Mutable, "v1", false),
            (Mutability::Immutable, "v1", true),
            (
                Mutability::ImmutableExcept(vec!["latest".into(), "dev-*".into()]),
                "latest",
                false,
            ),
            (
                Mutability::ImmutableExcept(vec!["latest".into(), "dev-*".into()]),
                "dev-42",
                false,
            ),
            (
                Mutability::ImmutableExcept(vec!["latest".into(), "dev-*".into()]),
                "v1",
                true,
            ),
            (
                Mutability::MutableExcept(vec!["release-*".into()]),
                "release-1",
                true,
            ),
            (
                Mutability::MutableExcept(vec!["release-*".into()]),
                "main",
                false,
            ),
        ];
        for (m, tag, want) in table {
            assert_eq!(m.is_immutable(tag), want, "{m:?} {tag}");
        }
        assert!(wildcard("*-rc*", "v1-rc2"));
        assert!(!wildcard("a*c", "abd"));
        assert!(wildcard("*", ""));
    }
}
