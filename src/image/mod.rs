//! Reading a prebuilt image from disk: an OCI layout directory, an OCI layout
//! tarball (plain or gzip), or a `docker save` archive (plain or gzip). hoist
//! detects which; the user never says.
//!
//! Everything here is checked before a byte goes to the registry: the layout's
//! structure, every manifest's digest, every blob's presence and size, media
//! types ECR would refuse. Blob *contents* are verified while they stream
//! (see [`stream`]), so a layer is read once.

pub mod digest;
mod docker;
mod layout;
mod store;
pub mod stream;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use digest::Digest;
pub use store::Region;
use store::Store;

use crate::error::{Class, Diagnose};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const MANIFEST_TYPES: &[&str] = &[OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST];

/// ECR's limit on a manifest (4,194,304 characters).
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: no such file or directory")]
    NotFound { path: String },
    #[error("{path} is not an image hoist can read: {reason}")]
    UnknownFormat { path: String, reason: String },
    #[error("could not read {what}")]
    Read {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is malformed: {reason}")]
    Malformed { what: String, reason: String },
    #[error("{what} is not valid JSON of the expected shape")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{what} holds a bad digest")]
    Digest {
        what: String,
        #[source]
        source: digest::DigestError,
    },
    #[error("blob {digest} is missing (referenced by {referenced_by})")]
    MissingBlob {
        digest: Digest,
        referenced_by: String,
    },
    #[error("{what} is missing (referenced by {referenced_by})")]
    MissingFile { what: String, referenced_by: String },
    #[error("{what} is truncated: its descriptor says {expected} bytes, the file has {actual}")]
    Truncated {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error(
        "{what} has the wrong size: its descriptor says {expected} bytes, the file has {actual}"
    )]
    SizeMismatch {
        what: String,
        expected: u64,
        actual: u64,
    },
    #[error("{what} does not match its digest: expected {expected}, the bytes hash to {actual}")]
    DigestMismatch {
        what: String,
        expected: Digest,
        actual: Digest,
    },
    #[error("{path} is a link that leads out of the image ({target})")]
    Escapes { path: String, target: String },
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge { what: String, size: u64, limit: u64 },
    #[error("media type '{media_type}' of {what} has parameters (';'), which ECR refuses")]
    MediaTypeParams { media_type: String, what: String },
    #[error(
        "{what} is an OCI 1.1 referrer manifest (it has a `subject`), which ECR refuses with 405 (aws/containers-roadmap#2783)"
    )]
    Referrer { what: String },
    #[error("{source_path} holds {} images; say which one to push with --ref", entries.len())]
    RefNeeded {
        source_path: String,
        entries: Vec<String>,
    },
    #[error("{source_path} has no image named '{wanted}'")]
    RefNotFound {
        source_path: String,
        wanted: String,
        entries: Vec<String>,
    },
    #[error("{what} is not supported: {reason}")]
    Unsupported { what: String, reason: String },
}

impl Diagnose for ImageError {
    fn class(&self) -> Class {
        Class::Usage
    }

    fn hint(&self) -> Option<String> {
        Some(match self {
            ImageError::UnknownFormat { .. } => "SOURCE must be an OCI layout directory (index.json + blobs/), an OCI layout tarball, or a `docker save` archive, plain or gzip-compressed".into(),
            ImageError::RefNeeded { entries, .. } | ImageError::RefNotFound { entries, .. } => {
                format!("the images in it:\n  {}", entries.join("\n  "))
            }
            ImageError::MissingBlob { .. } | ImageError::Truncated { .. } | ImageError::SizeMismatch { .. } | ImageError::DigestMismatch { .. } => {
                "the image on disk is incomplete or corrupt; build or export it again (no manifest was pushed; blobs already uploaded are harmless and will be reused)".into()
            }
            ImageError::MediaTypeParams { .. } => "rebuild without media type parameters (e.g. buildx `oci-mediatypes`), or convert with `skopeo copy --format oci`".into(),
            ImageError::Referrer { .. } => "push the image without the artifacts attached to it (signatures, SBOMs: pick the image itself with --ref), and attach them after the push in a form ECR stores (e.g. cosign's tag-based signatures)".into(),
            ImageError::Escapes { .. } => "an image layout must be self-contained; copy the blob into it instead of linking".into(),
            _ => return None,
        })
    }
}

/// What kind of file the image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    OciLayout,
    OciArchive,
    DockerArchive,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::OciLayout => "OCI layout directory",
            Format::OciArchive => "OCI layout archive",
            Format::DockerArchive => "docker save archive",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub os: String,
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A blob of a stored manifest: known digest and size, and where its bytes are.
#[derive(Debug, Clone)]
pub struct Blob {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub region: Region,
}

/// A manifest or index found in the source. It is pushed as exactly these
/// bytes: its digest is their sha256, so it is never re-serialized.
#[derive(Debug)]
pub struct Manifest {
    pub digest: Digest,
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub platform: Option<Platform>,
    pub content: Content,
}

#[derive(Debug)]
pub enum Content {
    Image { config: Blob, layers: Vec<Blob> },
    Index { children: Vec<Manifest> },
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        matches!(self.content, Content::Index { .. })
    }

    /// Every blob below this manifest, each digest once.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        self.visit(&mut |m| {
            if let Content::Image { config, layers } = &m.content {
                for b in std::iter::once(config).chain(layers) {
                    if seen.insert(b.digest.clone()) {
                        out.push(b);
                    }
                }
            }
        });
        out
    }

    /// Children before parents: the order manifests must reach the registry.
    pub fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Manifest)) {
        if let Content::Index { children } = &self.content {
            for c in children {
                c.visit(f);
            }
        }
        f(self);
    }

    /// The platforms an index holds (`linux/amd64`, …), or this image's own.
    pub fn platforms(&self) -> Vec<String> {
        match &self.content {
            Content::Index { children } => children
                .iter()
                .map(|c| {
                    c.platform
                        .as_ref()
                        .map(|p| p.to_string())
                        .unwrap_or_else(|| "unknown".into())
                })
                .collect(),
            Content::Image { .. } => self.platform.iter().map(|p| p.to_string()).collect(),
        }
    }
}

/// A `docker save` image: it has no registry manifest, so hoist writes one
/// (Docker v2 schema 2) after its layers are compressed and uploaded.
#[derive(Debug)]
pub struct DockerImage {
    pub config: Blob,
    pub layers: Vec<DockerLayer>,
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone)]
pub struct DockerLayer {
    pub name: String,
    pub region: Region,
    /// The sha256 of the uncompressed layer, from the config's rootfs.
    pub diff_id: Digest,
    pub compression: Compression,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

#[derive(Debug)]
pub enum Root {
    Stored(Manifest),
    Docker(DockerImage),
}

/// An image's small documents — its manifests (an index's children too) and
/// configs — by digest: what a deploy's preflight reads, taken from disk for
/// an image not yet in the registry (`ship --dry-run`).
#[derive(Debug, Default)]
pub struct Contents(pub std::collections::HashMap<Digest, Vec<u8>>);

impl Contents {
    /// Every manifest below `root` and every config, read from the source
    /// (configs are size-limited like manifests).
    pub fn of_stored(root: &Manifest) -> Result<Contents, ImageError> {
        let mut out = std::collections::HashMap::new();
        let mut configs = Vec::new();
        root.visit(&mut |m| {
            out.insert(m.digest.clone(), m.bytes.clone());
            if let Content::Image { config, .. } = &m.content {
                configs.push(config);
            }
        });
        for c in configs {
            let bytes = c
                .region
                .read_all(MAX_MANIFEST, &format!("config {}", c.digest))?;
            out.insert(c.digest.clone(), bytes);
        }
        Ok(Contents(out))
    }

    pub fn get(&self, d: &Digest) -> Option<&[u8]> {
        self.0.get(d).map(Vec::as_slice)
    }
}

#[derive(Debug)]
pub struct Image {
    pub format: Format,
    pub gzipped: bool,
    pub root: Root,
    pub source: PathBuf,
    /// The decompressed copy of a gzip source; removed when the image is dropped.
    _spool: Option<tempfile::TempDir>,
}

impl Image {
    /// Open SOURCE, whatever it is. `reference` picks one image out of several
    /// (`--ref`). Blocking: call from a blocking thread.
    pub fn open(source: &Path, reference: Option<&str>) -> Result<Image, ImageError> {
        let shown = source.display().to_string();
        let meta = match std::fs::metadata(source) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound { path: shown });
            }
            Err(e) => {
                return Err(ImageError::Read {
                    what: shown,
                    source: e,
                });
            }
        };
        if meta.is_dir() {
            let store = Store::dir(source)?;
            let (format, root) = Self::from_store(&store, &shown, reference)?;
            let format = if format == Format::OciArchive {
                Format::OciLayout
            } else {
                format
            };
            return Ok(Image {
                format,
                gzipped: false,
                root,
                source: source.to_path_buf(),
                _spool: None,
            });
        }
        let mut magic = [0u8; 512];
        let n = std::fs::File::open(source)
            .and_then(|mut f| read_up_to(&mut f, &mut magic))
            .map_err(|e| ImageError::Read {
                what: shown.clone(),
                source: e,
            })?;
        let magic = &magic[..n];
        let (tar_path, spool, gzipped) = if magic.starts_with(&[0x1f, 0x8b]) {
            let (dir, path) = spool_gunzip(source)?;
            (path, Some(dir), true)
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(ImageError::Unsupported {
                what: shown,
                reason: "zstd-compressed archives cannot be read; decompress it first (zstd -d)"
                    .into(),
            });
        } else if magic.len() >= 262 && &magic[257..262] == b"ustar" {
            (source.to_path_buf(), None, false)
        } else {
            return Err(ImageError::UnknownFormat {
                path: shown,
                reason: "it is a file but neither a tar archive nor gzip".into(),
            });
        };
        let store = Store::tar(&tar_path)?;
        let (format, root) = Self::from_store(&store, &shown, reference)?;
        Ok(Image {
            format,
            gzipped,
            root,
            source: source.to_path_buf(),
            _spool: spool,
        })
    }

    fn from_store(
        store: &Store,
        shown: &str,
        reference: Option<&str>,
    ) -> Result<(Format, Root), ImageError> {
        // Docker ≥ 25 writes both manifest.json and an OCI layout into `docker
        // save`; its layers are uncompressed there, so the docker path (which
        // compresses them) is the one that yields an image Lambda accepts.
        if store.exists("manifest.json") {
            return Ok((
                Format::DockerArchive,
                Root::Docker(docker::open(store, shown, reference)?),
            ));
        }
        if store.exists("index.json") {
            return Ok((
                Format::OciArchive,
                Root::Stored(layout::open(store, shown, reference)?),
            ));
        }
        Err(ImageError::UnknownFormat {
            path: shown.to_string(),
            reason: "it has neither index.json (OCI layout) nor manifest.json (docker save)".into(),
        })
    }

    pub fn describe(&self) -> String {
        let gz = if self.gzipped { ", gzip" } else { "" };
        match &self.root {
            Root::Stored(m) if m.is_index() => {
                format!(
                    "{}{gz}: index {} with {} ({})",
                    self.format,
                    m.digest.short(),
                    plural(m.platforms().len(), "manifest"),
                    m.platforms().join(", ")
                )
            }
            Root::Stored(m) => format!(
                "{}{gz}: image {} with {}",
                self.format,
                m.digest.short(),
                plural(m.blobs().len(), "blob")
            ),
            Root::Docker(d) => format!(
                "{}{gz}: image with {} (compressed on the way up)",
                self.format,
                plural(d.layers.len(), "layer")
            ),
        }
    }
}

pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// A gzip stream cannot be seeked, so a gzip archive is decompressed once into
/// a private temporary directory (TMPDIR) and read from there.
fn spool_gunzip(source: &Path) -> Result<(tempfile::TempDir, PathBuf), ImageError> {
    let shown = source.display().to_string();
    let dir = tempfile::Builder::new()
        .prefix("hoist-")
        .tempdir()
        .map_err(|e| ImageError::Read {
            what: "a temporary directory (TMPDIR)".into(),
            source: e,
        })?;
    let path = dir.path().join("source.tar");
    let input = std::fs::File::open(source).map_err(|e| ImageError::Read {
        what: shown.clone(),
        source: e,
    })?;
    let mut decoder =
        flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, input));
    let mut out = std::fs::File::create(&path).map_err(|e| ImageError::Read {
        what: path.display().to_string(),
        source: e,
    })?;
    std::io::copy(&mut decoder, &mut out).map_err(|e| ImageError::Malformed {
        what: shown,
        reason: format!("gzip stream is corrupt or truncated: {e}"),
    })?;
    Ok((dir, path))
}

/// Descriptors as they appear in index.json and manifests. Parsed loosely: the
/// bytes are what gets pushed, this is only for finding the blobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDescriptor {
    #[serde(default)]
    pub media_type: Option<String>,
    pub digest: String,
    pub size: u64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawManifest {
    #[serde(default)]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub config: Option<RawDescriptor>,
    #[serde(default)]
    pub layers: Option<Vec<RawDescriptor>>,
    #[serde(default)]
    pub manifests: Option<Vec<RawDescriptor>>,
    /// OCI 1.1: the manifest this one refers to (a signature, an SBOM).
    #[serde(default)]
    pub subject: Option<serde_json::Value>,
}

/// ECR refuses media types with parameters (`…+json; charset=utf-8`); find
/// them before anything is pushed.
pub(crate) fn check_media_type(media_type: &str, what: &str) -> Result<(), ImageError> {
    if media_type.contains(';') {
        return Err(ImageError::MediaTypeParams {
            media_type: media_type.to_string(),
            what: what.to_string(),
        });
    }
    Ok(())
}
