//! OCI image layouts (directory or tar): index.json, then manifests and blobs
//! under blobs/sha256/.

use std::collections::HashMap;
use std::sync::Arc;

use super::store::{Region, Store};
use super::{
    Blob, Content, Descriptor, Digest, ImageError, MAX_DESCRIPTORS, MAX_MANIFEST, Manifest,
    check_descriptor, check_media_type, manifest::Document,
};

pub(super) const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub(super) const CONTAINERD_NAME: &str = "io.containerd.image.name";
/// Nested indexes deeper than this are refused (and cycles cannot loop).
const MAX_DEPTH: usize = 4;

#[derive(serde::Deserialize)]
struct RawIndex {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

pub fn open(
    store: &Store,
    shown: &str,
    reference: Option<&str>,
) -> Result<Arc<Manifest>, ImageError> {
    let bytes =
        store
            .read("index.json", MAX_MANIFEST)?
            .ok_or_else(|| ImageError::UnknownFormat {
                path: shown.to_string(),
                reason: "index.json is missing".into(),
            })?;
    if let Some(layout) = store.read("oci-layout", 4096)? {
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct OciLayout {
            image_layout_version: String,
        }
        let v: OciLayout = serde_json::from_slice(&layout).map_err(|e| ImageError::Json {
            what: "oci-layout".into(),
            source: e,
        })?;
        if !v.image_layout_version.starts_with("1.") {
            return Err(ImageError::Unsupported {
                what: "oci-layout".into(),
                reason: format!("image layout version {}", v.image_layout_version),
            });
        }
    }
    let index: RawIndex = serde_json::from_slice(&bytes).map_err(|e| ImageError::Json {
        what: "index.json".into(),
        source: e,
    })?;
    if index.manifests.is_empty() {
        return Err(ImageError::Malformed {
            what: "index.json".into(),
            reason: "it lists no images".into(),
        });
    }
    // Every entry may be listed in a message: check them all first.
    for (i, e) in index.manifests.iter().enumerate() {
        let what = format!("entry {} of index.json", i + 1);
        parse_digest(&e.digest, &what)?;
        check_descriptor(e, &what)?;
    }
    let entry = choose(&index.manifests, shown, reference)?;
    let mut loader = Loader {
        store,
        root: entry.digest.clone(),
        manifests: HashMap::new(),
        regions: HashMap::new(),
        descriptors: 1,
    };
    loader.load(entry, "index.json", 0).map(|(m, _)| m)
}

/// The entry `--ref` names (by ref name, image name, tag or digest); the only
/// entry when there is one; otherwise an error that lists them.
fn choose<'a>(
    entries: &'a [Descriptor],
    shown: &str,
    reference: Option<&str>,
) -> Result<&'a Descriptor, ImageError> {
    let listing = || entries.iter().map(describe).collect::<Vec<_>>();
    match reference {
        Some(wanted) => {
            let matches = |e: &Descriptor| {
                e.digest == wanted
                    || e.annotations.get(REF_NAME).is_some_and(|r| r == wanted)
                    || e.annotations.get(CONTAINERD_NAME).is_some_and(|n| {
                        n == wanted || n.rsplit_once(':').is_some_and(|(_, tag)| tag == wanted)
                    })
            };
            let found: Vec<_> = entries.iter().filter(|e| matches(e)).collect();
            match found.as_slice() {
                [one] => Ok(one),
                [] => Err(ImageError::RefNotFound {
                    source_path: shown.to_string(),
                    wanted: wanted.to_string(),
                    entries: listing(),
                }),
                _ if found.iter().all(|e| e.digest == found[0].digest) => Ok(found[0]),
                _ => Err(ImageError::RefNeeded {
                    source_path: shown.to_string(),
                    entries: listing(),
                }),
            }
        }
        None if entries.len() == 1 => Ok(&entries[0]),
        None => Err(ImageError::RefNeeded {
            source_path: shown.to_string(),
            entries: listing(),
        }),
    }
}

fn describe(e: &Descriptor) -> String {
    let name = e
        .annotations
        .get(REF_NAME)
        .or_else(|| e.annotations.get(CONTAINERD_NAME));
    let mut s = match name {
        Some(n) => format!("--ref {n}: "),
        None => "(no ref name): ".into(),
    };
    s.push_str(&e.digest);
    if let Some(p) = &e.platform {
        s.push_str(&format!(" {p}"));
    }
    if let Some(m) = &e.media_type {
        s.push_str(&format!(" {m}"));
    }
    s
}

fn parse_digest(s: &str, what: &str) -> Result<Digest, ImageError> {
    s.parse().map_err(|e| ImageError::Digest {
        what: what.to_string(),
        source: e,
    })
}

/// Opens an image's manifests once each, whatever the number of entries that
/// name them, and counts the descriptors they list (issue 12: 20 repeats over
/// 3 levels of nested indexes made 8,000 opens, and 8,421 registry requests,
/// for 4 distinct manifests).
struct Loader<'s> {
    store: &'s Store,
    root: String,
    /// Each manifest opened so far, with the depth of indexes below it.
    manifests: HashMap<Digest, (Arc<Manifest>, usize)>,
    /// Where each blob's bytes are, looked up once.
    regions: HashMap<Digest, Region>,
    descriptors: usize,
}

impl Loader<'_> {
    /// Count `n` more descriptors, refusing past the cap.
    fn count(&mut self, n: usize) -> Result<(), ImageError> {
        self.descriptors = self.descriptors.saturating_add(n);
        if self.descriptors > MAX_DESCRIPTORS {
            return Err(ImageError::TooManyDescriptors {
                what: format!("image {}", self.root),
                limit: MAX_DESCRIPTORS,
            });
        }
        Ok(())
    }

    fn region(&mut self, digest: &Digest, referenced_by: &str) -> Result<Region, ImageError> {
        if let Some(r) = self.regions.get(digest) {
            return Ok(r.clone());
        }
        let region =
            self.store
                .region(&digest.layout_path())?
                .ok_or_else(|| ImageError::MissingBlob {
                    digest: digest.clone(),
                    referenced_by: referenced_by.to_string(),
                })?;
        self.regions.insert(digest.clone(), region.clone());
        Ok(region)
    }

    /// Read, verify and parse the manifest `desc` points at, and everything
    /// below it — unless it was opened already. Returns it and the depth of
    /// indexes below it.
    fn load(
        &mut self,
        desc: &Descriptor,
        parent: &str,
        depth: usize,
    ) -> Result<(Arc<Manifest>, usize), ImageError> {
        let too_deep = || ImageError::Malformed {
            what: parent.to_string(),
            reason: format!("indexes nest deeper than {MAX_DEPTH} levels"),
        };
        if depth > MAX_DEPTH {
            return Err(too_deep());
        }
        let digest = parse_digest(&desc.digest, &format!("a descriptor in {parent}"))?;
        let what = format!("manifest {digest}");
        check_descriptor(desc, &format!("the descriptor of {what}"))?;
        let region = self.region(&digest, parent)?;
        size_check(&what, desc.size, region.len)?;
        if let Some((m, height)) = self.manifests.get(&digest) {
            if depth + height > MAX_DEPTH {
                return Err(too_deep());
            }
            return Ok((m.clone(), *height));
        }
        let bytes = region.read_all(MAX_MANIFEST, &what)?;
        let actual = Digest::of(&bytes);
        if actual != digest {
            return Err(ImageError::DigestMismatch {
                what,
                expected: digest,
                actual,
            });
        }
        let raw = Document::parse(&bytes).map_err(|e| ImageError::Json {
            what: what.clone(),
            source: e,
        })?;
        if raw.schema_version == Some(1) {
            return Err(ImageError::Unsupported {
                what,
                reason:
                    "Docker schema 1 manifests are obsolete; ECR and Lambda need schema 2 or OCI"
                        .into(),
            });
        }
        // The manifest's own mediaType is what the registry checks the
        // Content-Type against; the descriptor's is the fallback.
        let media_type = raw.media_type_or(desc.media_type.as_deref());
        check_media_type(&media_type, &what)?;
        if raw.subject.is_some() {
            return Err(ImageError::Referrer { what });
        }

        let (content, height) = if let Some(children) = &raw.manifests {
            self.count(children.len())?;
            let mut loaded = Vec::with_capacity(children.len());
            let mut height = 0;
            for c in children {
                let (m, h) = self.load(c, &what, depth + 1)?;
                height = height.max(h + 1);
                loaded.push(m);
            }
            (Content::Index { children: loaded }, height)
        } else {
            let config = raw.config.as_ref().ok_or_else(|| ImageError::Malformed {
                what: what.clone(),
                reason: "it has neither `config` nor `manifests`".into(),
            })?;
            let layers = raw.layers.as_deref().unwrap_or_default();
            self.count(1 + layers.len())?;
            let config = self.blob(config, &what)?;
            let layers = layers
                .iter()
                .map(|l| self.blob(l, &what))
                .collect::<Result<Vec<_>, _>>()?;
            (Content::Image { config, layers }, 0)
        };
        let m = Arc::new(Manifest {
            digest: digest.clone(),
            media_type,
            bytes,
            platform: desc.platform.clone(),
            attestation: desc.is_attestation(),
            content,
        });
        self.manifests.insert(digest, (m.clone(), height));
        Ok((m, height))
    }

    fn blob(&mut self, desc: &Descriptor, parent: &str) -> Result<Blob, ImageError> {
        let digest = parse_digest(&desc.digest, &format!("a descriptor in {parent}"))?;
        let what = format!("blob {digest}");
        check_descriptor(desc, &format!("the descriptor of {what} in {parent}"))?;
        let media_type = desc
            .media_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        let region = self.region(&digest, parent)?;
        size_check(&what, desc.size, region.len)?;
        Ok(Blob {
            digest,
            size: desc.size,
            media_type,
            region,
        })
    }
}

fn size_check(what: &str, expected: u64, actual: u64) -> Result<(), ImageError> {
    if actual < expected {
        return Err(ImageError::Truncated {
            what: what.to_string(),
            expected,
            actual,
        });
    }
    if actual > expected {
        return Err(ImageError::SizeMismatch {
            what: what.to_string(),
            expected,
            actual,
        });
    }
    Ok(())
}
