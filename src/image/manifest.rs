//! One model of the manifests hoist reads, from disk (`image/`) or from ECR
//! (the gate's targets, the deploy preflight): descriptors, platforms, the
//! two shapes a manifest has, and which entries of an index are images to
//! scan or run at all ([`is_attestation`]).
//!
//! hoist's own types rather than the `oci-spec` crate's: that crate left the
//! build with oci-client, would bring const_format, derive_builder, getset,
//! regex and strum back with it, and refuses a whole index when one
//! descriptor lacks `mediaType` or has a malformed digest — where hoist
//! wants to name that entry and the fix. Parsing is loose for the same
//! reason; the bytes hoist pushes are the bytes it read, never these types
//! serialized again.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// The annotation buildkit puts on the descriptor of a manifest that is a
/// reference to another one rather than an image, and its one value today.
pub const REFERENCE_TYPE: &str = "vnd.docker.reference.type";
pub const ATTESTATION_MANIFEST: &str = "attestation-manifest";

/// An OCI index or a Docker manifest list (a manifest of manifests).
pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

/// A descriptor's platform (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    /// `unknown/unknown`: how buildkit keeps runtimes from choosing a
    /// manifest that is not an image.
    pub fn is_unknown(&self) -> bool {
        self.os == "unknown" && self.architecture == "unknown"
    }
}

/// `os/architecture[/variant]`, each field escaped: platforms from a
/// registry reach logs and step summaries unchecked (those from disk are
/// checked when the image is opened).
impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = |s: &str| crate::text::external(s, 64);
        write!(f, "{}/{}", field(&self.os), field(&self.architecture))?;
        if let Some(v) = self.variant.as_deref().filter(|v| !v.is_empty()) {
            write!(f, "/{}", field(v))?;
        }
        Ok(())
    }
}

/// A descriptor, as index.json, an index or a manifest lists it. Its
/// digest stays text until used, so that the error can say which entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl Descriptor {
    pub fn is_attestation(&self) -> bool {
        is_attestation(self.platform.as_ref(), &self.annotations)
    }

    /// It names an index (nested in the one that lists it).
    pub fn is_index(&self) -> bool {
        self.media_type.as_deref().is_some_and(is_index_type)
    }

    /// Its platform as logs show it; `(no platform)` when it has none.
    pub fn platform_name(&self) -> String {
        self.platform
            .as_ref()
            .map_or_else(|| "(no platform)".into(), Platform::to_string)
    }
}

/// Whether an index entry is an attestation (buildx's provenance and SBOMs)
/// rather than an image: skipped by the gate and the deploy, never listed as
/// a platform, pushed like any other manifest.
///
/// buildkit's attestation-storage document (moby/buildkit
/// docs/attestations/attestation-storage.md) marks each one twice: the
/// platform `unknown/unknown`, "to prevent container runtimes from
/// accidentally pulling or running the image described in the manifest",
/// and the annotation `vnd.docker.reference.type: attestation-manifest`,
/// adding that "if any other value is specified, the entire manifest should
/// be ignored". So either mark is enough, and neither needs the other:
/// no runtime picks an `unknown/unknown` entry whatever its annotations,
/// and a reference-type annotation of any value says the entry is not an
/// image — requiring both would scan or deploy an attestation whose
/// annotations or platform a copying tool dropped. `unknown` in one field
/// only is neither mark: that entry is an image for a platform hoist cannot
/// run, and is listed as what it is.
pub fn is_attestation(platform: Option<&Platform>, annotations: &BTreeMap<String, String>) -> bool {
    annotations.contains_key(REFERENCE_TYPE) || platform.is_some_and(Platform::is_unknown)
}

/// A manifest's JSON, loosely: both shapes' fields, each optional, so that
/// what is missing can be named.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Document {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<Descriptor>>,
    /// OCI 1.1: the manifest this one refers to (a signature, an SBOM).
    #[serde(default)]
    pub subject: Option<serde_json::Value>,
}

impl Document {
    pub fn parse(bytes: &[u8]) -> Result<Document, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The media type the manifest is: its own field, else `fallback` (the
    /// descriptor's), else what its shape says.
    pub fn media_type_or(&self, fallback: Option<&str>) -> String {
        self.media_type
            .as_deref()
            .or(fallback)
            .unwrap_or(if self.manifests.is_some() {
                OCI_INDEX
            } else {
                OCI_MANIFEST
            })
            .to_string()
    }
}

/// A manifest by its shape: an index of manifests, or one image.
#[derive(Debug, Clone)]
pub enum Parsed {
    Index(Vec<Descriptor>),
    Image {
        media_type: String,
        config: Descriptor,
        layers: Vec<Descriptor>,
    },
}

impl Parsed {
    pub fn parse(bytes: &[u8]) -> Result<Parsed, String> {
        let doc = Document::parse(bytes)
            .map_err(|e| format!("the manifest is not JSON of the expected shape: {e}"))?;
        let media_type = doc.media_type_or(None);
        match (doc.manifests, doc.config) {
            (Some(m), _) => Ok(Parsed::Index(m)),
            (None, Some(config)) => Ok(Parsed::Image {
                media_type,
                config,
                layers: doc.layers.unwrap_or_default(),
            }),
            (None, None) => Err(format!(
                "the manifest ({}) is neither an image nor an index",
                doc.media_type
                    .as_deref()
                    .map_or_else(|| "no media type".into(), |m| crate::text::external(m, 100))
            )),
        }
    }
}

/// What an index entry is to the gate and the deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    Image,
    Attestation,
    /// An index inside the index: ECR scans no index, Lambda runs none.
    Index,
}

impl Entry {
    pub fn of(d: &Descriptor) -> Entry {
        if d.is_attestation() {
            Entry::Attestation
        } else if d.is_index() {
            Entry::Index
        } else {
            Entry::Image
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// An index as `docker buildx build --platform linux/amd64,linux/arm64
    /// --provenance=true --sbom=true` pushes it: two images, then one
    /// attestation manifest per image.
    fn buildx_index() -> serde_json::Value {
        json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": d(1), "size": 1000,
                  "platform": { "os": "linux", "architecture": "amd64" } },
                { "mediaType": OCI_MANIFEST, "digest": d(2), "size": 1000,
                  "platform": { "os": "linux", "architecture": "arm64", "variant": "v8" } },
                { "mediaType": OCI_MANIFEST, "digest": d(3), "size": 800,
                  "platform": { "os": "unknown", "architecture": "unknown" },
                  "annotations": { "vnd.docker.reference.type": "attestation-manifest",
                                   "vnd.docker.reference.digest": d(1) } },
                { "mediaType": OCI_MANIFEST, "digest": d(4), "size": 800,
                  "platform": { "os": "unknown", "architecture": "unknown" },
                  "annotations": { "vnd.docker.reference.type": "attestation-manifest",
                                   "vnd.docker.reference.digest": d(2) } },
            ]
        })
    }

    /// What `buildah manifest push --all LIST oci:DIR` writes: index.json is
    /// itself an index whose one entry (no platform) is the list, an index
    /// of the platform images.
    fn buildah_layout() -> (serde_json::Value, serde_json::Value) {
        let list = json!({
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                { "mediaType": OCI_MANIFEST, "digest": d(5), "size": 500,
                  "platform": { "os": "linux", "architecture": "amd64" } },
                { "mediaType": OCI_MANIFEST, "digest": d(6), "size": 500,
                  "platform": { "os": "linux", "architecture": "arm64" } },
            ]
        });
        let index_json = json!({
            "schemaVersion": 2,
            "manifests": [
                { "mediaType": OCI_INDEX, "digest": d(7), "size": 400,
                  "annotations": { "org.opencontainers.image.ref.name": "latest" } },
            ]
        });
        (index_json, list)
    }

    fn entries(v: &serde_json::Value) -> Vec<(Entry, String)> {
        match Parsed::parse(&serde_json::to_vec(v).unwrap()).unwrap() {
            Parsed::Index(children) => children
                .iter()
                .map(|c| (Entry::of(c), c.platform_name()))
                .collect(),
            other => panic!("not an index: {other:?}"),
        }
    }

    #[test]
    fn buildx_and_nested_indexes() {
        use Entry::*;
        let s = |v: &[(Entry, &str)]| {
            v.iter()
                .map(|(e, p)| (*e, p.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            entries(&buildx_index()),
            s(&[
                (Image, "linux/amd64"),
                (Image, "linux/arm64/v8"),
                (Attestation, "unknown/unknown"),
                (Attestation, "unknown/unknown"),
            ])
        );
        let (outer, list) = buildah_layout();
        assert_eq!(entries(&outer), s(&[(Index, "(no platform)")]));
        assert_eq!(
            entries(&list),
            s(&[(Image, "linux/amd64"), (Image, "linux/arm64")])
        );
        // index.json has no mediaType of its own: its shape says index.
        let doc = Document::parse(&serde_json::to_vec(&outer).unwrap()).unwrap();
        assert_eq!(doc.media_type_or(None), OCI_INDEX);
        assert_eq!(doc.media_type_or(Some(DOCKER_LIST)), DOCKER_LIST);
    }

    #[test]
    fn what_is_an_attestation() {
        let p = |os: &str, arch: &str| Platform {
            os: os.into(),
            architecture: arch.into(),
            variant: None,
        };
        let marked: BTreeMap<String, String> =
            [(REFERENCE_TYPE.into(), ATTESTATION_MANIFEST.into())].into();
        let other_ref: BTreeMap<String, String> =
            [(REFERENCE_TYPE.into(), "signature".into())].into();
        let none = BTreeMap::new();
        let cases = [
            // (platform, annotations, attestation?)
            (Some(p("unknown", "unknown")), &marked, true), // as buildx writes it
            (Some(p("linux", "amd64")), &marked, true),     // platform rewritten
            (None, &marked, true),                          // platform dropped
            (Some(p("linux", "amd64")), &other_ref, true),  // "ignore the manifest"
            (Some(p("unknown", "unknown")), &none, true),   // annotations dropped
            (Some(p("linux", "amd64")), &none, false),
            (Some(p("linux", "unknown")), &none, false),
            (Some(p("unknown", "arm64")), &none, false),
            (None, &none, false),
        ];
        for (platform, annotations, want) in cases {
            assert_eq!(
                is_attestation(platform.as_ref(), annotations),
                want,
                "{platform:?} {annotations:?}"
            );
        }
    }

    #[test]
    fn shapes_and_platform_text() {
        let image = json!({ "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
            "config": { "mediaType": "x", "digest": d(1), "size": 3 },
            "layers": [{ "mediaType": "y", "digest": d(2), "size": 9 }] });
        match Parsed::parse(&serde_json::to_vec(&image).unwrap()).unwrap() {
            Parsed::Image {
                media_type,
                config,
                layers,
            } => {
                assert_eq!(media_type, DOCKER_MANIFEST);
                assert_eq!(config.size, 3);
                assert_eq!(layers.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let bare = json!({ "config": { "digest": d(1), "size": 3 } });
        assert!(matches!(
            Parsed::parse(&serde_json::to_vec(&bare).unwrap()),
            Ok(Parsed::Image { media_type, .. }) if media_type == OCI_MANIFEST
        ));
        // manifests are descriptors, not digests
        let wrong = json!({ "schemaVersion": 2, "manifests": [d(1)] });
        assert!(Parsed::parse(&serde_json::to_vec(&wrong).unwrap()).is_err());
        let neither = Parsed::parse(b"{\"schemaVersion\":2,\"mediaType\":\"a\\nb\"}").unwrap_err();
        assert!(
            neither.contains("neither") && neither.contains("a\\nb"),
            "{neither}"
        );
        assert!(Parsed::parse(b"[]").unwrap_err().contains("neither"));
        assert!(Parsed::parse(b"{").unwrap_err().contains("expected shape"));
        let hostile = Platform {
            os: "linux\u{1b}[31m".into(),
            architecture: "amd64".into(),
            variant: Some(String::new()),
        };
        assert_eq!(hostile.to_string(), "linux\\x1b[31m/amd64");
        assert!(is_index_type(DOCKER_LIST) && !is_index_type(DOCKER_MANIFEST));
    }
}
