//! The push stage's decisions, as pure functions: which tags to write, and
//! the manifest hoist writes for a `docker save` image.

use serde::Serialize;

use crate::error::ConfigError;
use crate::image::stream::Sent;
use crate::image::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Digest};

/// What to do with one `--tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagAction {
    /// The tag is new, or mutable: PUT the manifest under it.
    Put,
    /// It already points at this image: nothing to do — also on an immutable
    /// repository, so re-running a pipeline passes (containers-roadmap#2380).
    AlreadyThere,
    /// It points at another image and cannot be moved.
    Conflict { existing: Digest },
}

pub fn tag_action(existing: Option<&Digest>, pushing: &Digest, immutable: bool) -> TagAction {
    match existing {
        Some(d) if d == pushing => TagAction::AlreadyThere,
        Some(d) if immutable => TagAction::Conflict {
            existing: d.clone(),
        },
        _ => TagAction::Put,
    }
}

/// ECR's tag rules: 1–300 characters; registries in general take
/// `[A-Za-z0-9_][A-Za-z0-9._-]*`.
pub fn check_tag(tag: &str) -> Result<(), ConfigError> {
    let ok_first = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_rest = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if tag.is_empty() || tag.len() > 300 || !ok_first || !ok_rest {
        return Err(ConfigError::new(format!("'{tag}' is not a valid tag"))
            .hint("a tag is 1 to 300 letters, digits, '_', '.' and '-', and starts with a letter, digit or '_'"));
    }
    Ok(())
}

/// ECR repository names: lowercase, `[a-z0-9]` runs separated by `.`, `_`,
/// `-` or `/`, 2–256 characters.
pub fn check_repository(name: &str) -> Result<(), ConfigError> {
    let valid = (2..=256).contains(&name.len())
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if !valid {
        return Err(ConfigError::new(format!("'{name}' is not a valid ECR repository name"))
            .hint("use the repository's name only (e.g. team/app), lowercase, without the registry host or a tag"));
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    media_type: &'a str,
    size: u64,
    digest: &'a Digest,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DockerManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    config: Descriptor<'a>,
    layers: Vec<Descriptor<'a>>,
}

/// A Docker v2 schema 2 manifest for a `docker save` image, from its config
/// and its layers as they were sent (gzip-compressed). Lambda accepts it.
pub fn docker_manifest(config: &Sent, layers: &[Sent]) -> Vec<u8> {
    let m = DockerManifest {
        schema_version: 2,
        media_type: DOCKER_MANIFEST,
        config: Descriptor {
            media_type: DOCKER_CONFIG,
            size: config.size,
            digest: &config.digest,
        },
        layers: layers
            .iter()
            .map(|l| Descriptor {
                media_type: DOCKER_LAYER_GZIP,
                size: l.size,
                digest: &l.digest,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&m).expect("a manifest always serializes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64))
            .parse()
            .unwrap()
    }

    #[test]
    fn tag_actions() {
        let table = [
            (None, false, TagAction::Put),
            (None, true, TagAction::Put),
            (Some(d('a')), true, TagAction::AlreadyThere),
            (Some(d('a')), false, TagAction::AlreadyThere),
            (Some(d('b')), false, TagAction::Put),
            (Some(d('b')), true, TagAction::Conflict { existing: d('b') }),
        ];
        for (existing, immutable, want) in table {
            assert_eq!(tag_action(existing.as_ref(), &d('a'), immutable), want);
        }
    }

    #[test]
    fn tags_and_repositories() {
        for ok in ["v1", "1.2.3", "_x", "a-b_c.d", &"a".repeat(300)] {
            assert!(check_tag(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", ".x", "a:b", "a/b", &"a".repeat(301)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
        for ok in ["app", "team/app", "a.b_c-d/e2"] {
            assert!(check_repository(ok).is_ok(), "{ok}");
        }
        for bad in [
            "App",
            "a",
            "/app",
            "app/",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/app:tag",
            "team//app",
        ] {
            assert!(check_repository(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn docker_manifest_shape() {
        let bytes = docker_manifest(
            &Sent {
                digest: d('c'),
                size: 10,
            },
            &[Sent {
                digest: d('1'),
                size: 20,
            }],
        );
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["mediaType"], DOCKER_MANIFEST);
        assert_eq!(v["config"]["digest"], d('c').to_string());
        assert_eq!(v["layers"][0]["mediaType"], DOCKER_LAYER_GZIP);
        assert_eq!(v["layers"][0]["size"], 20);
    }
}
