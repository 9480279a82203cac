//! Tags: what each points at now (looked up before anything is written),
//! what each needs, and writing them — last, once the image is whole.

use super::plan::{self, TagAction};
use super::report::TagReport;
use super::settings::Settings;
use crate::image::Digest;
use crate::registry::{Pushing, Registry, RegistryError, RepoInfo};

/// What each tag points at now (one HEAD per tag, all at once).
pub(super) async fn look_up(
    settings: &Settings,
    registry: &Registry,
) -> Result<Vec<(String, Option<Digest>)>, RegistryError> {
    let heads = settings
        .tags
        .iter()
        .map(|tag| registry.manifest_digest(&settings.repository, tag));
    let found = futures_util::future::try_join_all(heads).await?;
    Ok(settings.tags.iter().cloned().zip(found).collect())
}

/// What each tag needs, checked before anything is written: a tag that
/// cannot be moved fails the push while the registry is still untouched.
pub(super) fn plan(
    settings: &Settings,
    lookups: &[(String, Option<Digest>)],
    repo: &RepoInfo,
    pushing: &Pushing,
) -> Result<Vec<(String, TagAction)>, RegistryError> {
    let mut out = Vec::new();
    for (tag, existing) in lookups {
        match plan::tag_action(
            existing.as_ref(),
            pushing,
            repo.mutability.is_immutable(tag),
        ) {
            TagAction::Conflict { existing } => {
                return Err(RegistryError::TagConflict {
                    tag: tag.clone(),
                    repository: settings.repository.clone(),
                    existing,
                    pushing: pushing.clone(),
                });
            }
            action => out.push((tag.clone(), action)),
        }
    }
    Ok(out)
}

/// Write the tags that need it (the manifest's exact bytes under each).
pub(super) async fn write(
    registry: &Registry,
    repository: &str,
    tags: Vec<(String, TagAction)>,
    (bytes, media_type): (&[u8], &str),
) -> Result<Vec<TagReport>, RegistryError> {
    let mut reports = Vec::with_capacity(tags.len());
    for (tag, action) in tags {
        let action = if action == TagAction::Put {
            registry
                .put_manifest(repository, &tag, bytes, media_type)
                .await?;
            "pushed"
        } else {
            "unchanged"
        };
        crate::output::say(&format!("tag {tag}: {action}"));
        reports.push(TagReport { tag, action });
    }
    Ok(reports)
}

/// The tags of a plan, as the report says them.
pub(super) fn planned(tags: Vec<(String, TagAction)>) -> Vec<TagReport> {
    tags.into_iter()
        .map(|(tag, action)| TagReport {
            tag,
            action: if action == TagAction::Put {
                "would push"
            } else {
                "unchanged"
            },
        })
        .collect()
}
