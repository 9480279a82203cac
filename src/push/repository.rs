//! The repository a push goes to: whether it exists, its tag rules and
//! lifecycle policy, a creation template that will make it, or whether
//! `--create-repository` is to make it — all read before anything is
//! written; the creation itself happens only when the push does.

use super::plan;
use super::settings::Settings;
use crate::registry::ecr::{Mutability, Templates};
use crate::registry::{Ecr, Registry, RegistryError, RepoInfo};

/// What the registry has for the push, read only.
#[derive(Debug, Clone)]
pub enum Found {
    /// It exists.
    Exists(RepoInfo),
    /// ECR creates it on the push from a CREATE_ON_PUSH creation template.
    FromTemplate(RepoInfo),
    /// `--create-repository` will create it (what it will be).
    ToCreate(RepoInfo),
    /// It does not exist; Some says why the templates could not be checked.
    Missing(Option<String>),
}

/// The repository as the push finds it. Needs only the ECR API, so it runs
/// while the registry connection is being set up.
///
/// A missing repository is created by ECR itself on the push when a
/// creation template applied for CREATE_ON_PUSH covers its name; hoist then
/// pushes and never creates it with its own settings over the template's.
pub async fn look_up(settings: &Settings, ecr: &Ecr) -> Result<Found, RegistryError> {
    let name = settings.repository.as_str();
    if let Some(mut r) = ecr.repository(name).await? {
        if settings.tags.is_empty() {
            r.lifecycle_policy = ecr.lifecycle_policy(name).await;
        }
        return Ok(Found::Exists(r));
    }
    let unreadable = match ecr.creation_templates().await? {
        Templates::Listed(ts) => {
            if let Some(t) = plan::template_for(&ts, name) {
                crate::output::say(&format!(
                    "repository {name} does not exist: ECR creates it on the push, with the settings of the creation template for prefix '{}'",
                    t.prefix
                ));
                return Ok(Found::FromTemplate(RepoInfo::from_template(name, t)));
            }
            None
        }
        Templates::Unreadable(why) => Some(why),
    };
    if !settings.create_repository {
        return Ok(Found::Missing(unreadable));
    }
    if let Some(why) = &unreadable {
        tracing::warn!(
            "could not read the registry's repository creation templates ({why}); {name} will be created with hoist's settings, not a creation template's: grant ecr:DescribeRepositoryCreationTemplates for hoist to see one"
        );
    }
    // What --create-repository makes: immutable tags, scan on push.
    Ok(Found::ToCreate(RepoInfo {
        name: name.to_string(),
        mutability: Mutability::Immutable,
        scan_on_push: true,
        created: true,
        template: None,
        lifecycle_policy: None,
    }))
}

impl Found {
    /// The repository, or the error that says it is missing and how to get
    /// one. `pushing`: a real push (not a plan), which warns of a lifecycle
    /// rule that would expire an untagged image.
    pub fn require(
        &self,
        settings: &Settings,
        registry: &Registry,
        pushing: bool,
    ) -> Result<RepoInfo, RegistryError> {
        let repo = match self {
            Found::Exists(r) | Found::FromTemplate(r) | Found::ToCreate(r) => r.clone(),
            Found::Missing(templates) => {
                return Err(RegistryError::RepositoryMissing {
                    name: settings.repository.clone(),
                    registry: registry.ecr_host.clone(),
                    templates: templates.clone(),
                });
            }
        };
        if settings.tags.is_empty() && pushing {
            warn_untagged_expiry(&repo);
        }
        Ok(repo)
    }

    /// Make the repository now if `--create-repository` is to make it (the
    /// first write of a push).
    pub async fn ensure(&self, ecr: &Ecr) -> Result<Option<RepoInfo>, RegistryError> {
        match self {
            Found::ToCreate(r) => {
                let made = ecr.create_repository(&r.name).await?;
                crate::output::say(&format!(
                    "created repository {} (scan on push, immutable tags, Lambda may pull)",
                    r.name
                ));
                Ok(Some(made))
            }
            _ => Ok(None),
        }
    }
}

/// A push by digest only into a repository whose lifecycle policy expires
/// untagged images: Lambda re-fetches a function's image, and once the rule
/// deleted it the function goes Failed ("The function is trying to use a
/// deleted image").
fn warn_untagged_expiry(repo: &RepoInfo) {
    let Some(policy) = &repo.lifecycle_policy else {
        return;
    };
    for rule in plan::untagged_expiry(policy) {
        tracing::warn!(
            "pushing by digest only into {}, whose lifecycle policy's {rule}: a Lambda function deployed from this image fails once it is deleted; push with --tag (e.g. the commit SHA) to keep it",
            repo.name
        );
    }
}
