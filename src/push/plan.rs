//! The push stage's decisions, as pure functions: which tags to write, and
//! the manifest hoist writes for a `docker save` image.

use serde::Serialize;

use crate::image::manifest::Document;
use crate::image::stream::Sent;
use crate::image::{DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, Digest, OCI_MANIFEST};
use crate::registry::Pushing;
use crate::registry::ecr::CreationTemplate;

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

/// What `--tag` needs when it names `existing` (None: the tag is new) and
/// the push puts `pushing` under it. A docker archive whose manifest digest
/// is not known yet ([`Pushing::DockerConfig`]) is not what any tag names.
pub fn tag_action(existing: Option<&Digest>, pushing: &Pushing, immutable: bool) -> TagAction {
    match existing {
        Some(d) if *pushing == Pushing::Manifest(d.clone()) => TagAction::AlreadyThere,
        Some(d) if immutable => TagAction::Conflict {
            existing: d.clone(),
        },
        _ => TagAction::Put,
    }
}

/// Each tag once, in the order given: `--tag v1 --tag v1` (or
/// `HOIST_TAG=v1,v2,v1`) would PUT v1 twice, and an IMMUTABLE repository
/// refuses the second PUT (issue 12).
pub fn unique_tags(tags: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    tags.into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// The layers of `manifest` (a manifest the registry holds under a tag being
/// pushed) as hoist's docker manifest would list them, when it is a manifest
/// of this very image: same config digest (the config's diff_ids pin every
/// layer's content), as many layers, each gzip — what hoist would have
/// uploaded. Then a re-push of a `docker save` archive uploads nothing.
/// Anything else (another image, another shape, zstd or uncompressed layers)
/// gives None, and the layers are compressed and uploaded.
pub fn reusable_layers(manifest: &[u8], config: &Sent, layers: usize) -> Option<Vec<Sent>> {
    const GZIP_LAYERS: &[&str] = &[
        DOCKER_LAYER_GZIP,
        "application/vnd.oci.image.layer.v1.tar+gzip",
    ];
    let m = Document::parse(manifest).ok()?;
    let (c, found) = (m.config?, m.layers?);
    let shape = m.schema_version == Some(2)
        && matches!(
            m.media_type.as_deref(),
            Some(DOCKER_MANIFEST | OCI_MANIFEST)
        )
        && c.digest.parse::<Digest>().ok().as_ref() == Some(&config.digest)
        && c.size == config.size
        && found.len() == layers;
    if !shape {
        return None;
    }
    found
        .iter()
        .map(|l| {
            let gzip = l
                .media_type
                .as_deref()
                .is_some_and(|t| GZIP_LAYERS.contains(&t));
            Some(Sent {
                digest: l.digest.parse().ok().filter(|_| gzip)?,
                size: l.size,
            })
        })
        .collect()
}

pub use crate::registry::names::{check_repository, check_tag};

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

/// The CREATE_ON_PUSH template ECR creates the missing repository `name`
/// from: the longest prefix that covers it (a prefix `p` covers `p/…`: ECR
/// assumes a `/` after it), else the `ROOT` template. Templates for other
/// uses (pull-through cache) are not considered.
pub fn template_for<'a>(
    templates: &'a [CreationTemplate],
    name: &str,
) -> Option<&'a CreationTemplate> {
    let candidates = templates.iter().filter(|t| t.create_on_push);
    candidates
        .clone()
        .filter(|t| {
            t.prefix != "ROOT" && name.starts_with(&format!("{}/", t.prefix.trim_end_matches('/')))
        })
        .max_by_key(|t| t.prefix.len())
        .or_else(|| candidates.clone().find(|t| t.prefix == "ROOT"))
}

/// The rules of a lifecycle policy that expire untagged images (selection
/// `tagStatus` `untagged` or `any`), described for a warning: an image
/// pushed by digest only is untagged, and a Lambda function deployed from it
/// goes Failed once the rule deletes it. Text that is not a policy gives
/// nothing.
pub fn untagged_expiry(policy: &str) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Policy {
        #[serde(default)]
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Rule {
        #[serde(default)]
        rule_priority: Option<i64>,
        #[serde(default)]
        description: Option<String>,
        selection: Selection,
        #[serde(default)]
        action: Option<serde_json::Value>,
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Selection {
        tag_status: String,
        #[serde(default)]
        count_type: Option<String>,
        #[serde(default)]
        count_number: Option<i64>,
        #[serde(default)]
        count_unit: Option<String>,
    }
    let Ok(p) = serde_json::from_str::<Policy>(policy) else {
        return vec![];
    };
    p.rules
        .iter()
        .filter(|r| matches!(r.selection.tag_status.as_str(), "untagged" | "any"))
        .filter(|r| {
            // "expire" is the only action a lifecycle rule has (transition
            // to archive keeps the image, but Lambda cannot pull it either).
            r.action.as_ref().and_then(|a| a["type"].as_str()) != Some("none")
        })
        .map(|r| {
            let when = match (
                r.selection.count_type.as_deref(),
                r.selection.count_number,
                r.selection.count_unit.as_deref(),
            ) {
                (Some("sinceImagePushed"), Some(n), unit) => {
                    format!("{n} {} after the push", unit.unwrap_or("days"))
                }
                (Some("imageCountMoreThan"), Some(n), _) => {
                    format!("once more than {n} such images exist")
                }
                _ => "by its own schedule".to_string(),
            };
            let name = match (r.rule_priority, r.description.as_deref()) {
                (Some(p), Some(d)) if !d.is_empty() => {
                    format!("rule {p} (\"{}\")", crate::text::external(d, 120))
                }
                (Some(p), _) => format!("rule {p}"),
                (None, _) => "a rule".to_string(),
            };
            format!("{name} expires {} images {when}", r.selection.tag_status)
        })
        .collect()
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
        let ours = Pushing::Manifest(d('a'));
        // A docker archive none of whose tags lends its layers: the digest
        // is not known, and no tag names this image as hoist writes it.
        let docker = Pushing::DockerConfig(d('a'));
        let table = [
            (None, &ours, false, TagAction::Put),
            (None, &ours, true, TagAction::Put),
            (Some(d('a')), &ours, true, TagAction::AlreadyThere),
            (Some(d('a')), &ours, false, TagAction::AlreadyThere),
            (Some(d('b')), &ours, false, TagAction::Put),
            (
                Some(d('b')),
                &ours,
                true,
                TagAction::Conflict { existing: d('b') },
            ),
            (None, &docker, false, TagAction::Put),
            (None, &docker, true, TagAction::Put),
            (Some(d('b')), &docker, false, TagAction::Put),
            (
                Some(d('b')),
                &docker,
                true,
                TagAction::Conflict { existing: d('b') },
            ),
            // The config's digest is never taken for the manifest's.
            (
                Some(d('a')),
                &docker,
                true,
                TagAction::Conflict { existing: d('a') },
            ),
        ];
        for (existing, pushing, immutable, want) in table {
            assert_eq!(
                tag_action(existing.as_ref(), pushing, immutable),
                want,
                "{existing:?} {pushing:?} {immutable}"
            );
        }
    }

    #[test]
    fn tags_are_deduplicated_in_order() {
        let v = |s: &[&str]| s.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let table: [(&[&str], &[&str]); 4] = [
            (&[], &[]),
            (&["v1", "v1"], &["v1"]),
            (&["v1", "v2", "v1"], &["v1", "v2"]),
            (&["b", "a", "b", "c", "a"], &["b", "a", "c"]),
        ];
        for (given, want) in table {
            assert_eq!(unique_tags(v(given)), v(want), "{given:?}");
        }
    }

    #[test]
    fn layers_of_the_same_image_are_reused() {
        let config = Sent {
            digest: d('c'),
            size: 10,
        };
        let layers = [
            Sent {
                digest: d('1'),
                size: 20,
            },
            Sent {
                digest: d('2'),
                size: 30,
            },
        ];
        let ours = docker_manifest(&config, &layers);
        assert_eq!(
            reusable_layers(&ours, &config, 2),
            Some(layers.to_vec()),
            "hoist's own manifest"
        );
        let other_config = Sent {
            digest: d('e'),
            size: 10,
        };
        let cases: Vec<(&str, Vec<u8>, &Sent, usize)> = vec![
            ("another config", ours.clone(), &other_config, 2),
            ("another layer count", ours.clone(), &config, 3),
            ("not json", b"nope".to_vec(), &config, 2),
            (
                "zstd layers",
                String::from_utf8(ours.clone())
                    .unwrap()
                    .replace(
                        DOCKER_LAYER_GZIP,
                        "application/vnd.oci.image.layer.v1.tar+zstd",
                    )
                    .into_bytes(),
                &config,
                2,
            ),
            (
                "an index",
                serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "manifests": []
                }))
                .unwrap(),
                &config,
                2,
            ),
        ];
        for (what, bytes, config, n) in cases {
            assert_eq!(reusable_layers(&bytes, config, n), None, "{what}");
        }
        // Another tool's manifest of the same image, OCI gzip layers: reused.
        let oci = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": d('c').to_string(), "size": 10 },
            "layers": [
                { "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d('7').to_string(), "size": 70 },
            ]
        }))
        .unwrap();
        assert_eq!(
            reusable_layers(&oci, &config, 1),
            Some(vec![Sent {
                digest: d('7'),
                size: 70
            }])
        );
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

    use crate::registry::ecr::Mutability;

    fn template(prefix: &str, create_on_push: bool) -> CreationTemplate {
        CreationTemplate {
            prefix: prefix.into(),
            create_on_push,
            mutability: Mutability::Immutable,
            lifecycle_policy: None,
        }
    }

    #[test]
    fn which_creation_template_applies() {
        let ts = [
            template("team", true),
            template("team/svc", true),
            template("pull", false),
            template("ROOT", true),
        ];
        let table = [
            ("team/svc/app", Some("team/svc")),
            ("team/svc", Some("team")),
            ("team/app", Some("team")),
            ("teamwork/app", Some("ROOT")),
            ("team", Some("ROOT")),
            ("pull/x", Some("ROOT")),
        ];
        for (name, want) in table {
            assert_eq!(
                template_for(&ts, name).map(|t| t.prefix.as_str()),
                want,
                "{name}"
            );
        }
        let no_root = [template("team", true), template("pull", false)];
        assert_eq!(template_for(&no_root, "pull/x"), None);
        assert_eq!(template_for(&no_root, "other"), None);
        assert_eq!(template_for(&[], "team/app"), None);
    }

    #[test]
    fn lifecycle_rules_that_expire_untagged_images() {
        let policy = serde_json::json!({ "rules": [
            { "rulePriority": 1, "description": "drop untagged after 14 days",
              "selection": { "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 14 },
              "action": { "type": "expire" } },
            { "rulePriority": 2,
              "selection": { "tagStatus": "tagged", "tagPrefixList": ["pr-"], "countType": "imageCountMoreThan", "countNumber": 10 },
              "action": { "type": "expire" } },
            { "rulePriority": 3,
              "selection": { "tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": 500 },
              "action": { "type": "expire" } }
        ]});
        assert_eq!(
            untagged_expiry(&policy.to_string()),
            [
                "rule 1 (\"drop untagged after 14 days\") expires untagged images 14 days after the push",
                "rule 3 expires any images once more than 500 such images exist",
            ]
        );
        assert!(untagged_expiry("{}").is_empty());
        assert!(untagged_expiry("not json").is_empty());
    }
}
