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
pub mod manifest;
pub mod spool;
mod store;
pub mod stream;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

pub use digest::Digest;
pub use manifest::{
    DOCKER_LIST, DOCKER_MANIFEST, Descriptor, MANIFEST_TYPES, OCI_INDEX, OCI_MANIFEST, Platform,
};
pub use store::Region;
use store::Store;

use crate::error::{Class, Diagnose};

pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// ECR's limit on a manifest (4,194,304 characters).
pub const MAX_MANIFEST: u64 = 4 * 1024 * 1024;

/// The most descriptors (child manifests, configs, layers) an image may list,
/// counted over every distinct manifest below the one pushed. Real images
/// list dozens to a few thousand (ten platforms of 127 layers); the cap is
/// there so that a small hostile layout cannot make hoist open, verify or
/// push without end (issue 12: a 68 KB layout of nested, repeated indexes took
/// 5.4 GB of memory to open).
pub const MAX_DESCRIPTORS: usize = 10_000;

/// How many entries a listing in an error or hint shows.
pub const MAX_LISTED: usize = 20;

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
        "media type '{media_type}' of {what} is not a media type (type/subtype of letters, digits and !#$&^_.+-)"
    )]
    MediaTypeInvalid { media_type: String, what: String },
    #[error("{what} lists more than {limit} descriptors (manifests, configs and layers)")]
    TooManyDescriptors { what: String, limit: usize },
    #[error("{what} is truncated: {reason}")]
    TruncatedArchive { what: String, reason: String },
    #[error("{what} decompresses to more than its tar archive holds: {detail}")]
    GzipBomb { what: String, detail: String },
    #[error(
        "not enough space in {dir} (TMPDIR) to decompress {what}: the next {} must fit with {} to spare, and {} are free",
        crate::progress::bytes(*need), crate::progress::bytes(spool::RESERVE), crate::progress::bytes(*free)
    )]
    NoSpace {
        what: String,
        dir: String,
        need: u64,
        free: u64,
    },
    #[error(
        "{what} decompresses to more than {} ({} so far)",
        crate::progress::bytes(*limit), crate::progress::bytes(*size)
    )]
    SpoolTooLarge { what: String, size: u64, limit: u64 },
    #[error("{what} is a {kind}, not a file")]
    NotAFile { what: String, kind: &'static str },
    #[error("{field} of {what} is not allowed: '{shown}' ({why})")]
    BadText {
        field: String,
        what: String,
        shown: String,
        why: &'static str,
    },
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
                format!("the images in it:\n  {}", listing(entries, MAX_LISTED).join("\n  "))
            }
            ImageError::MissingBlob { .. } | ImageError::Truncated { .. } | ImageError::SizeMismatch { .. } | ImageError::DigestMismatch { .. } => {
                "the image on disk is incomplete or corrupt; build or export it again (no manifest was pushed; blobs already uploaded are harmless and will be reused)".into()
            }
            ImageError::MediaTypeParams { .. } => "rebuild without media type parameters (e.g. buildx `oci-mediatypes`), or convert with `skopeo copy --format oci`".into(),
            ImageError::MediaTypeInvalid { .. } => "the image on disk is damaged or was edited by hand: export it again (nothing was pushed)".into(),
            ImageError::TooManyDescriptors { .. } => format!("no real image comes close to {MAX_DESCRIPTORS} (each distinct manifest's entries are counted once); the layout is damaged or was generated wrongly: build or export it again (nothing was pushed)"),
            ImageError::TruncatedArchive { .. } => "the file was cut short (an interrupted download, copy or `docker save`); export it again (nothing was pushed)".into(),
            ImageError::GzipBomb { .. } => "a tar archive ends with its end-of-archive marker and at most a little padding; this file goes on, so it is damaged or hostile: export the image again (nothing was pushed)".into(),
            ImageError::NoSpace { .. } => "point TMPDIR at a file system with room, or decompress the archive first (gunzip): a plain tar is read in place, never copied".into(),
            ImageError::SpoolTooLarge { .. } => "decompress the archive first (gunzip): a plain tar is read in place, never copied — or it is damaged or hostile".into(),
            ImageError::NotAFile { .. } => "hoist reads the image more than once (to check it, then to upload it): save it to a file or directory first (e.g. `docker save -o image.tar app:tag`, not `<(docker save …)` or a pipe)".into(),
            ImageError::BadText { .. } => "platform fields are short tokens (os linux, architecture amd64, variant v8) and names and annotations are printable text: the image on disk is damaged or hostile; build or export it again (nothing was pushed)".into(),
            ImageError::Referrer { .. } => "push the image without the artifacts attached to it (signatures, SBOMs: pick the image itself with --ref), and attach them after the push in a form ECR stores (e.g. cosign's tag-based signatures)".into(),
            ImageError::Escapes { .. } => "an image layout must be self-contained; copy the blob into it instead of linking".into(),
            _ => return None,
        })
    }
}

/// What kind of file the image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
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
    /// The descriptor that named it marks it an attestation
    /// ([`manifest::is_attestation`]): pushed like any manifest, never
    /// listed as a platform.
    pub attestation: bool,
    pub content: Content,
}

#[derive(Debug)]
pub enum Content {
    Image {
        config: Blob,
        layers: Vec<Blob>,
    },
    /// Entries listed twice share one child: each manifest is opened,
    /// verified and pushed once.
    Index {
        children: Vec<Arc<Manifest>>,
    },
}

impl Manifest {
    pub fn is_index(&self) -> bool {
        matches!(self.content, Content::Index { .. })
    }

    /// Every blob below this manifest, each digest once.
    pub fn blobs(&self) -> Vec<&Blob> {
        let mut seen = HashSet::new();
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

    /// Every manifest below and including this one, each digest once,
    /// children before parents: the order manifests must reach the registry.
    pub fn visit<'a>(&'a self, f: &mut impl FnMut(&'a Manifest)) {
        self.visit_once(&mut HashSet::new(), f);
    }

    fn visit_once<'a>(&'a self, seen: &mut HashSet<&'a Digest>, f: &mut impl FnMut(&'a Manifest)) {
        if !seen.insert(&self.digest) {
            return;
        }
        if let Content::Index { children } = &self.content {
            for c in children {
                c.visit_once(seen, f);
            }
        }
        f(self);
    }

    /// The platforms an index holds (`linux/amd64`, …), each child once and
    /// attestations left out, or this image's own.
    pub fn platforms(&self) -> Vec<String> {
        match &self.content {
            Content::Index { children } => {
                let mut seen = HashSet::new();
                children
                    .iter()
                    .filter(|c| seen.insert(&c.digest) && !c.attestation)
                    .map(|c| {
                        c.platform
                            .as_ref()
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "unknown".into())
                    })
                    .collect()
            }
            Content::Image { .. } => self.platform.iter().map(|p| p.to_string()).collect(),
        }
    }

    /// How many distinct children of an index are attestations.
    pub fn attestations(&self) -> usize {
        let Content::Index { children } = &self.content else {
            return 0;
        };
        let mut seen = HashSet::new();
        children
            .iter()
            .filter(|c| seen.insert(&c.digest) && c.attestation)
            .count()
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
    Stored(Arc<Manifest>),
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
            if out.contains_key(&c.digest) {
                continue;
            }
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
        if let Some(kind) = not_a_file(&meta) {
            return Err(ImageError::NotAFile { what: shown, kind });
        }
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
        let (store, gzipped) = if magic.starts_with(&[0x1f, 0x8b]) {
            (
                Store::tar(spool::gunzip(source, &std::env::temp_dir())?)?,
                true,
            )
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            return Err(ImageError::Unsupported {
                what: shown,
                reason: "zstd-compressed archives cannot be read; decompress it first (zstd -d)"
                    .into(),
            });
        } else if magic.len() >= 262 && &magic[257..262] == b"ustar" {
            (Store::tar_file(source)?, false)
        } else {
            return Err(ImageError::UnknownFormat {
                path: shown,
                reason: "it is a file but neither a tar archive nor gzip".into(),
            });
        };
        let (format, root) = Self::from_store(&store, &shown, reference)?;
        Ok(Image {
            format,
            gzipped,
            root,
            source: source.to_path_buf(),
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
                let platforms = m.platforms();
                let attestations = match m.attestations() {
                    0 => String::new(),
                    n => format!(" and {}", plural(n, "attestation manifest")),
                };
                format!(
                    "{}{gz}: index {} with {} ({}){attestations}",
                    self.format,
                    m.digest.short(),
                    plural(platforms.len(), "image manifest"),
                    listing(&platforms, MAX_LISTED).join(", ")
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

/// What SOURCE is when it is not a file or directory hoist can read twice: a
/// pipe (`<(docker save …)`, `/dev/stdin`), a device, a socket.
fn not_a_file(meta: &std::fs::Metadata) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_fifo() {
        Some("pipe (FIFO)")
    } else if t.is_char_device() || t.is_block_device() {
        Some("device")
    } else if t.is_socket() {
        Some("socket")
    } else {
        None
    }
}

/// The first `max` entries of a listing, and how many more there are.
pub fn listing(entries: &[String], max: usize) -> Vec<String> {
    let mut out: Vec<String> = entries.iter().take(max).cloned().collect();
    if entries.len() > max {
        out.push(format!("… and {} more", entries.len() - max));
    }
    out
}

/// ECR refuses media types with parameters (`…+json; charset=utf-8`); and a
/// media type becomes a Content-Type header, so anything that is not one
/// (a CR/LF, a control character, a space) would fail only once the blobs
/// were uploaded. Find both before anything is pushed.
pub(crate) fn check_media_type(media_type: &str, what: &str) -> Result<(), ImageError> {
    if media_type.contains(';') && is_media_type(media_type.split(';').next().unwrap_or("")) {
        return Err(ImageError::MediaTypeParams {
            media_type: crate::text::external(media_type, 200),
            what: what.to_string(),
        });
    }
    if !is_media_type(media_type) {
        return Err(ImageError::MediaTypeInvalid {
            media_type: crate::text::external(media_type, 200),
            what: what.to_string(),
        });
    }
    Ok(())
}

/// RFC 6838's `type/subtype`: each a restricted name — a letter or digit,
/// then up to 126 of letters, digits and `!#$&^_.+-`.
fn is_media_type(s: &str) -> bool {
    let name = |n: &str| {
        (1..=127).contains(&n.len())
            && n.starts_with(|c: char| c.is_ascii_alphanumeric())
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "!#$&^_.+-".contains(c))
    };
    matches!(s.split_once('/'), Some((t, sub)) if name(t) && name(sub))
}

/// Platform fields (os, architecture, variant) are short tokens (`linux`,
/// `arm64`, `v8`): anything else is refused when the image is opened, so it
/// never reaches a log line or a step summary.
pub(crate) fn check_platform(p: &Platform, what: &str) -> Result<(), ImageError> {
    let fields = [
        ("os", Some(&p.os)),
        ("architecture", Some(&p.architecture)),
        ("variant", p.variant.as_ref()),
    ];
    for (field, value) in fields {
        let Some(v) = value else { continue };
        let ok = v.len() <= 64
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
        if !ok {
            return Err(ImageError::BadText {
                field: format!("platform {field}"),
                what: what.to_string(),
                shown: crate::text::external(v, 80),
                why: "a platform field is at most 64 letters, digits, '.', '_' and '-'",
            });
        }
    }
    Ok(())
}

/// An image name hoist may list (an OCI ref name, containerd's image name, a
/// `docker save` RepoTag): the characters of OCI's ref-name grammar.
pub(crate) fn check_name(name: &str, field: &str, what: &str) -> Result<(), ImageError> {
    let ok = !name.is_empty()
        && name.len() <= 1024
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:@/+".contains(c));
    if !ok {
        return Err(ImageError::BadText {
            field: field.to_string(),
            what: what.to_string(),
            shown: crate::text::external(name, 80),
            why: "a name is letters, digits and -._:@/+",
        });
    }
    Ok(())
}

/// Annotation keys and values are text: no control characters (a value may
/// hold tabs and line breaks: a description may have several lines) and no
/// invisible characters that reorder text.
pub(crate) fn check_annotations(
    annotations: &BTreeMap<String, String>,
    what: &str,
) -> Result<(), ImageError> {
    let bad = |c: char, in_value: bool| {
        (c.is_control() && !(in_value && matches!(c, '\t' | '\n' | '\r')))
            || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    for (k, v) in annotations {
        if k.chars().any(|c| bad(c, false) || c.is_whitespace()) {
            return Err(ImageError::BadText {
                field: "an annotation key".into(),
                what: what.to_string(),
                shown: crate::text::external(k, 80),
                why: "an annotation key is printable text without spaces",
            });
        }
        if v.chars().any(|c| bad(c, true)) {
            return Err(ImageError::BadText {
                field: format!("annotation {}", crate::text::external(k, 80)),
                what: what.to_string(),
                shown: crate::text::external(v, 80),
                why: "it holds a control or invisible character",
            });
        }
    }
    Ok(())
}

/// A descriptor's outside text — annotations, platform, and the names hoist
/// lists from them — checked before any of it can be printed.
pub(crate) fn check_descriptor(d: &Descriptor, what: &str) -> Result<(), ImageError> {
    check_annotations(&d.annotations, what)?;
    for key in [layout::REF_NAME, layout::CONTAINERD_NAME] {
        if let Some(n) = d.annotations.get(key) {
            check_name(n, &format!("annotation {key}"), what)?;
        }
    }
    if let Some(p) = &d.platform {
        check_platform(p, what)?;
    }
    if let Some(mt) = &d.media_type {
        check_media_type(mt, what)?;
    }
    Ok(())
}
