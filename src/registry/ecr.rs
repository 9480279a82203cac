//! The ECR API calls the push stage needs (aws-sdk-ecr): the registry
//! password, and the repository — whether it exists, its tag mutability.

use std::time::SystemTime;

use aws_sdk_ecr::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ecr::types::{ImageScanningConfiguration, ImageTagMutability, Repository};
use url::Url;

use super::RegistryError;
use crate::secret::Secret;

#[derive(Clone)]
pub struct Ecr {
    client: aws_sdk_ecr::Client,
    /// Another account's registry (`--repository ACCOUNT.dkr.ecr.REGION…/NAME`):
    /// every call names it.
    registry_id: Option<String>,
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
    /// Made in this run: by hoist (`--create-repository`), or by ECR on the
    /// push from a creation template (`template`).
    pub created: bool,
    /// The prefix of the CREATE_ON_PUSH creation template ECR creates the
    /// repository from, when it does not exist yet.
    pub template: Option<String>,
    /// The lifecycle policy the repository has (or will get from its
    /// template), when it could be read.
    pub lifecycle_policy: Option<String>,
}

/// A repository creation template (DescribeRepositoryCreationTemplates).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreationTemplate {
    /// `team` covers `team/…`; `ROOT` every repository no other one covers.
    pub prefix: String,
    pub create_on_push: bool,
    pub mutability: Mutability,
    pub lifecycle_policy: Option<String>,
}

/// What is known of the registry's creation templates.
#[derive(Debug, Clone)]
pub enum Templates {
    Listed(Vec<CreationTemplate>),
    /// They could not be read (no permission, or an ECR API without the
    /// operation): why, in a few words.
    Unreadable(String),
}

fn mutability_of(
    m: Option<&ImageTagMutability>,
    filters: &[aws_sdk_ecr::types::ImageTagMutabilityExclusionFilter],
) -> Mutability {
    let filters: Vec<String> = filters.iter().map(|f| f.filter().to_string()).collect();
    match m {
        Some(ImageTagMutability::Immutable) => Mutability::Immutable,
        Some(ImageTagMutability::ImmutableWithExclusion) => Mutability::ImmutableExcept(filters),
        Some(ImageTagMutability::MutableWithExclusion) => Mutability::MutableExcept(filters),
        _ => Mutability::Mutable,
    }
}

impl RepoInfo {
    fn from_sdk(r: &Repository, created: bool) -> RepoInfo {
        RepoInfo {
            name: r.repository_name().unwrap_or_default().to_string(),
            mutability: mutability_of(
                r.image_tag_mutability(),
                r.image_tag_mutability_exclusion_filters(),
            ),
            scan_on_push: r
                .image_scanning_configuration()
                .is_some_and(|c| c.scan_on_push()),
            created,
            template: None,
            lifecycle_policy: None,
        }
    }

    /// The repository ECR will create on the push from `template`.
    pub fn from_template(name: &str, template: &CreationTemplate) -> RepoInfo {
        RepoInfo {
            name: name.to_string(),
            mutability: template.mutability.clone(),
            // The registry's scanning configuration decides; hoist's gate
            // reads it for itself.
            scan_on_push: false,
            created: true,
            template: Some(template.prefix.clone()),
            lifecycle_policy: template.lifecycle_policy.clone(),
        }
    }
}

/// An SDK failure as a registry error (the one classifier in aws.rs).
pub fn aws_error<E>(
    op: &str,
    e: SdkError<E, aws_smithy_runtime_api::client::orchestrator::HttpResponse>,
) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    RegistryError::Aws(crate::aws::AwsError::new(op, e))
}

impl Ecr {
    pub fn new(config: &aws_config::SdkConfig) -> Ecr {
        Ecr {
            client: aws_sdk_ecr::Client::new(config),
            registry_id: None,
        }
    }

    /// The ECR API of the registry `host` names: its account (every call
    /// names the registry) in its region (a central registry elsewhere).
    pub fn for_registry(config: &aws_config::SdkConfig, host: &super::host::EcrHost) -> Ecr {
        let conf = aws_sdk_ecr::config::Builder::from(config)
            .region(aws_sdk_ecr::config::Region::new(host.region.clone()))
            .build();
        Ecr {
            client: aws_sdk_ecr::Client::from_conf(conf),
            registry_id: Some(host.account.clone()),
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
            .set_registry_id(self.registry_id.clone())
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

    /// Every repository creation template (DescribeRepositoryCreationTemplates,
    /// all pages). Not being allowed to read them, or an ECR API that does
    /// not know the operation, is not an error: the caller says what it
    /// could not check.
    pub async fn creation_templates(&self) -> Result<Templates, RegistryError> {
        if self.registry_id.is_some() {
            // DescribeRepositoryCreationTemplates reads the caller's own
            // registry only.
            return Ok(Templates::Unreadable(
                "the creation templates of another account's registry cannot be read".into(),
            ));
        }
        let mut out = Vec::new();
        // One retry at most: this only decides what to say about a missing
        // repository, and an emulator without the operation answers 500.
        let mut token: Option<String> = None;
        loop {
            let page =
                self.client
                    .describe_repository_creation_templates()
                    .set_next_token(token.take())
                    .customize()
                    .config_override(aws_sdk_ecr::config::Config::builder().retry_config(
                        aws_config::retry::RetryConfig::standard().with_max_attempts(2),
                    ))
                    .send()
                    .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    let code = e.code().unwrap_or_default().to_string();
                    let why = match (&e, code.as_str()) {
                        (_, "AccessDeniedException" | "AccessDenied") => {
                            "not allowed: ecr:DescribeRepositoryCreationTemplates".to_string()
                        }
                        (SdkError::ServiceError(_), c) if !c.is_empty() => {
                            format!("ECR answered {c}")
                        }
                        (SdkError::ServiceError(s), _) => format!(
                            "the ECR API answered {} (an emulator without the operation?)",
                            s.raw().status().as_u16()
                        ),
                        _ => return Err(aws_error("ecr:DescribeRepositoryCreationTemplates", e)),
                    };
                    tracing::debug!(
                        "could not read the repository creation templates: {}",
                        crate::aws::describe(&e)
                    );
                    return Ok(Templates::Unreadable(why));
                }
            };
            for t in page.repository_creation_templates() {
                out.push(CreationTemplate {
                    prefix: t.prefix().unwrap_or_default().to_string(),
                    create_on_push: t
                        .applied_for()
                        .contains(&aws_sdk_ecr::types::RctAppliedFor::CreateOnPush),
                    mutability: mutability_of(
                        t.image_tag_mutability(),
                        t.image_tag_mutability_exclusion_filters(),
                    ),
                    lifecycle_policy: t.lifecycle_policy().map(str::to_string),
                });
            }
            match page.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(Templates::Listed(out)),
            }
        }
    }

    /// The repository's lifecycle policy text, if it has one and it can be
    /// read (it only feeds a warning: anything else is None).
    pub async fn lifecycle_policy(&self, name: &str) -> Option<String> {
        match self
            .client
            .get_lifecycle_policy()
            .set_registry_id(self.registry_id.clone())
            .repository_name(name)
            .send()
            .await
        {
            Ok(out) => out.lifecycle_policy_text().map(str::to_string),
            Err(e) => {
                tracing::debug!(
                    "no lifecycle policy read for {name}: {}",
                    crate::aws::describe(&e)
                );
                None
            }
        }
    }

    /// A repository policy that lets Lambda pull for every function of the
    /// repository's own account (`aws:sourceArn` scoped to them) — the
    /// statement Lambda would otherwise try to add itself on the first
    /// deploy, which needs ecr:SetRepositoryPolicy the deployer may not have.
    /// A failure only warns: the repository is there either way.
    pub async fn allow_lambda_pulls(&self, name: &str, repository_arn: &str) {
        let Some(policy) = lambda_pull_policy(repository_arn) else {
            return;
        };
        if let Err(e) = self
            .client
            .set_repository_policy()
            .set_registry_id(self.registry_id.clone())
            .repository_name(name)
            .policy_text(policy)
            .send()
            .await
        {
            tracing::warn!(
                "created repository {name}, but could not let Lambda pull from it (ecr:SetRepositoryPolicy: {}); the first deploy needs ecr:GetRepositoryPolicy and ecr:SetRepositoryPolicy instead (see the README's IAM policies)",
                crate::aws::describe(&e)
            );
        }
    }

    /// CreateRepository with the settings a deploy pipeline wants: scan on
    /// push, immutable tags.
    pub async fn create_repository(&self, name: &str) -> Result<RepoInfo, RegistryError> {
        let out = self
            .client
            .create_repository()
            .set_registry_id(self.registry_id.clone())
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
            Ok(out) => {
                let r = out.repository().ok_or_else(|| {
                    RegistryError::Protocol("ecr:CreateRepository returned no repository".into())
                })?;
                if let Some(arn) = r.repository_arn() {
                    self.allow_lambda_pulls(name, arn).await;
                }
                Ok(RepoInfo::from_sdk(r, true))
            }
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

/// The same-account Lambda pull statement for the repository `arn`
/// (`arn:PARTITION:ecr:REGION:ACCOUNT:repository/NAME`), as a policy.
pub fn lambda_pull_policy(repository_arn: &str) -> Option<String> {
    let parts: Vec<&str> = repository_arn.splitn(6, ':').collect();
    let [_, partition, "ecr", region, account, _] = parts[..] else {
        return None;
    };
    let statement = super::policy::lambda_statement(partition, region, account, false);
    super::policy::with_statements(None, &[statement]).ok()
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

    #[test]
    fn lambda_pull_policy_is_scoped_to_the_account_functions() {
        let p =
            lambda_pull_policy("arn:aws:ecr:eu-west-1:123456789012:repository/team/app").unwrap();
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        let st = &v["Statement"][0];
        assert_eq!(st["Principal"]["Service"], "lambda.amazonaws.com");
        assert_eq!(
            st["Condition"]["StringLike"]["aws:sourceARN"],
            "arn:aws:lambda:eu-west-1:123456789012:function:*"
        );
        let cn =
            lambda_pull_policy("arn:aws-cn:ecr:cn-north-1:123456789012:repository/app").unwrap();
        assert!(cn.contains("arn:aws-cn:lambda:cn-north-1:123456789012:function:*"));
        assert_eq!(lambda_pull_policy("not an arn"), None);
    }
}
