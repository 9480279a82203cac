//! Where the files of a source live: a directory, or a tar archive read in
//! place. A tar is indexed once (names → offset and length of each member's
//! data) and blobs are then read at their member's offset, so a multi-GiB
//! `oci-archive` is never unpacked to disk.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use super::ImageError;

/// The most a tar reader may read between two members beyond their data:
/// headers, and PAX or GNU long-name extensions (which the tar crate reads
/// into memory). Real ones are a few hundred bytes.
pub(super) const MAX_EXTENSION: u64 = 1 << 20;

/// Where a region's bytes are.
#[derive(Debug)]
pub enum Backing {
    /// A file opened anew for every read: a layout directory holds one file
    /// per blob, too many to keep open.
    Path(PathBuf),
    /// One open file read at offsets (`pread`, no shared cursor): a tar, and
    /// the decompressed copy of a gzip source, which has no name to open
    /// again (it is unlinked at once, so no exit path — a signal included —
    /// leaves it behind).
    Open { file: File, shown: String },
}

impl Backing {
    pub fn shown(&self) -> String {
        match self {
            Backing::Path(p) => p.display().to_string(),
            Backing::Open { shown, .. } => shown.clone(),
        }
    }
}

/// A byte range of a file on disk: a whole file in a layout directory, or a
/// member's data inside a tar.
#[derive(Clone, Debug)]
pub struct Region {
    pub backing: Arc<Backing>,
    pub offset: u64,
    pub len: u64,
}

/// A reader over one region. Each `open` makes a new one, which is what makes
/// retries possible: a retry reads the region again from its first byte.
pub enum RegionReader {
    Own(std::io::Take<File>),
    Shared {
        backing: Arc<Backing>,
        pos: u64,
        end: u64,
    },
}

impl Read for RegionReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RegionReader::Own(r) => r.read(buf),
            RegionReader::Shared { backing, pos, end } => {
                let Backing::Open { file, .. } = &**backing else {
                    return Err(std::io::Error::other("a shared region needs an open file"));
                };
                let want = ((*end - *pos) as usize).min(buf.len());
                if want == 0 {
                    return Ok(0);
                }
                let n = file.read_at(&mut buf[..want], *pos)?;
                *pos += n as u64;
                Ok(n)
            }
        }
    }
}

impl Region {
    /// A reader positioned at the start of the region, limited to its length.
    pub fn open(&self) -> std::io::Result<RegionReader> {
        match &*self.backing {
            Backing::Path(path) => {
                let mut f = File::open(path)?;
                f.seek(SeekFrom::Start(self.offset))?;
                Ok(RegionReader::Own(f.take(self.len)))
            }
            Backing::Open { .. } => Ok(RegionReader::Shared {
                backing: self.backing.clone(),
                pos: self.offset,
                end: self.offset + self.len,
            }),
        }
    }

    /// What the region's file is called in messages.
    pub fn shown(&self) -> String {
        self.backing.shown()
    }

    pub fn read_all(&self, limit: u64, what: &str) -> Result<Vec<u8>, ImageError> {
        if self.len > limit {
            return Err(ImageError::TooLarge {
                what: what.to_string(),
                size: self.len,
                limit,
            });
        }
        let mut buf = Vec::with_capacity(self.len as usize);
        self.open()
            .and_then(|mut r| r.read_to_end(&mut buf))
            .map_err(|e| ImageError::Read {
                what: what.to_string(),
                source: e,
            })?;
        if buf.len() as u64 != self.len {
            return Err(ImageError::Truncated {
                what: what.to_string(),
                expected: self.len,
                actual: buf.len() as u64,
            });
        }
        Ok(buf)
    }
}

pub enum Store {
    Dir {
        root: PathBuf,
    },
    Tar {
        backing: Arc<Backing>,
        members: Members,
    },
}

/// A tar's files by name: the offset and length of each one's data.
type Members = HashMap<String, (u64, u64)>;

/// A reader that counts what the tar crate reads and allows it only so much
/// between two members (`budget`), and notes when it met the end of the file.
/// A tar reader that meets the end of the file before the end-of-archive
/// marker (a zero block) was reading a truncated archive.
pub(super) struct Guarded<R> {
    pub inner: R,
    pub guard: Rc<Guard>,
}

/// What a [`Guarded`] reader shares with the code driving the tar reader
/// that owns it.
pub(super) struct Guard {
    /// What the tar reader may still read before the next member.
    pub budget: Cell<u64>,
    /// The reader met the end of the file.
    pub eof: Cell<bool>,
    /// The tar reader asked for more than its budget.
    pub over: Cell<bool>,
}

impl<R> Guarded<R> {
    pub fn new(inner: R) -> Guarded<R> {
        Guarded {
            inner,
            guard: Rc::new(Guard {
                budget: Cell::new(MAX_EXTENSION),
                eof: Cell::new(false),
                over: Cell::new(false),
            }),
        }
    }
}

impl<R: Read> Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.guard.budget.get();
        if left == 0 && !buf.is_empty() {
            self.guard.over.set(true);
            return Err(std::io::Error::other(
                "the archive holds more than its headers account for",
            ));
        }
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            self.guard.eof.set(true);
        }
        self.guard.budget.set(left - n as u64);
        Ok(n)
    }
}

impl<R: Seek> Seek for Guarded<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

/// The most files an image archive may hold. A `docker save` archive holds
/// a few per layer, an OCI one one per blob: even at the descriptor cap
/// (10,000) that is far fewer; a tar of millions of empty files would only
/// fill memory with their names.
pub(super) const MAX_MEMBERS: usize = 100_000;

pub(super) fn too_many_members(shown: &str) -> ImageError {
    ImageError::Malformed {
        what: shown.to_string(),
        reason: format!("it holds more than {MAX_MEMBERS} files, far more than any image archive"),
    }
}

/// A tar member's data rounded up to whole 512-byte blocks.
pub(super) fn padded(size: u64) -> u64 {
    size.div_ceil(512).saturating_mul(512)
}

impl Store {
    pub fn dir(root: &Path) -> Result<Store, ImageError> {
        let root = root.canonicalize().map_err(|e| ImageError::Read {
            what: root.display().to_string(),
            source: e,
        })?;
        Ok(Store::Dir { root })
    }

    /// A plain tar on disk, opened once and read in place.
    pub fn tar_file(path: &Path) -> Result<Store, ImageError> {
        let file = File::open(path).map_err(|e| ImageError::Read {
            what: path.display().to_string(),
            source: e,
        })?;
        Store::tar(Arc::new(Backing::Open {
            file,
            shown: path.display().to_string(),
        }))
    }

    /// Index a plain (uncompressed) tar: one pass over its headers, seeking
    /// past the data. An archive that ends before its end-of-archive marker
    /// is truncated, and said to be.
    pub fn tar(backing: Arc<Backing>) -> Result<Store, ImageError> {
        let shown = backing.shown();
        let Backing::Open { file, .. } = &*backing else {
            return Err(read_error(
                &shown,
                std::io::Error::other("a tar is read from an open file"),
            ));
        };
        let mut reader = file;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| read_error(&shown, e))?;
        let guarded = Guarded::new(reader);
        let guard = guarded.guard.clone();
        let mut archive = tar::Archive::new(guarded);
        let (mut members, links) = index(&mut archive, &guard, &shown)?;
        // The tar crate ends at the first zero block, or at the end of the
        // file: only the first is a whole archive.
        if guard.eof.get() {
            return Err(truncated(&shown));
        }
        resolve_links(&mut members, &links);
        Ok(Store::Tar { backing, members })
    }

    /// The region holding `rel` (a path like `blobs/sha256/<hex>`), or None if
    /// the source has no such file.
    pub fn region(&self, rel: &str) -> Result<Option<Region>, ImageError> {
        match self {
            Store::Dir { root } => {
                let path = root.join(rel);
                let real = match path.canonicalize() {
                    Ok(p) => p,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    Err(e) => {
                        return Err(ImageError::Read {
                            what: path.display().to_string(),
                            source: e,
                        });
                    }
                };
                // A symlink inside the layout may point anywhere; follow it only
                // if it stays inside.
                if !real.starts_with(root) {
                    return Err(ImageError::Escapes {
                        path: rel.to_string(),
                        target: real.display().to_string(),
                    });
                }
                let meta = real.metadata().map_err(|e| ImageError::Read {
                    what: real.display().to_string(),
                    source: e,
                })?;
                if !meta.is_file() {
                    return Ok(None);
                }
                Ok(Some(Region {
                    backing: Arc::new(Backing::Path(real)),
                    offset: 0,
                    len: meta.len(),
                }))
            }
            Store::Tar { backing, members } => Ok(members.get(rel).map(|&(offset, len)| Region {
                backing: backing.clone(),
                offset,
                len,
            })),
        }
    }

    pub fn exists(&self, rel: &str) -> bool {
        matches!(self.region(rel), Ok(Some(_)))
    }

    pub fn read(&self, rel: &str, limit: u64) -> Result<Option<Vec<u8>>, ImageError> {
        match self.region(rel)? {
            Some(r) => r.read_all(limit, rel).map(Some),
            None => Ok(None),
        }
    }
}

/// One pass over a tar's headers: where each file's data is, and the links,
/// each as (its name, the name it points to).
fn index<R: Read + Seek>(
    archive: &mut tar::Archive<R>,
    guard: &Guard,
    shown: &str,
) -> Result<(Members, Vec<(String, String)>), ImageError> {
    let mut members = Members::new();
    let mut links: Vec<(String, String)> = Vec::new();
    let mut count = 0usize;
    let entries = archive
        .entries_with_seek()
        .map_err(|e| read_error(shown, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| entry_error(shown, &e, guard.eof.get(), guard.over.get()))?;
        // Data is seeked past, never read here: each member may read
        // only its headers and extensions.
        guard.budget.set(MAX_EXTENSION);
        count += 1;
        if count > MAX_MEMBERS {
            return Err(too_many_members(shown));
        }
        match member(&entry) {
            Some(Member::File(name, at)) => {
                members.insert(name, at);
            }
            Some(Member::Link(name, target)) => links.push((name, target)),
            None => {}
        }
    }
    Ok((members, links))
}

/// What a tar member is to the index.
enum Member {
    /// A file (or contiguous file), and where its data is.
    File(String, (u64, u64)),
    /// A symbolic or hard link, and the member it names.
    Link(String, String),
}

/// The member `entry` is, or None for one never looked up: a directory, a
/// device, a name that cannot be read or that leaves the archive's root.
fn member<R: Read>(entry: &tar::Entry<'_, R>) -> Option<Member> {
    let name = normalize(&entry.path().ok()?)?;
    let kind = entry.header().entry_type();
    if kind.is_file() || kind == tar::EntryType::Continuous {
        return Some(Member::File(
            name,
            (entry.raw_file_position(), entry.size()),
        ));
    }
    if !(kind.is_symlink() || kind.is_hard_link()) {
        return None;
    }
    let target = entry.link_name().ok()??;
    let target = link_target(&name, kind.is_symlink(), &target)?;
    Some(Member::Link(name, target))
}

/// The member a link named `name` points to, or None if that leaves the
/// archive's root.
fn link_target(name: &str, symlink: bool, target: &Path) -> Option<String> {
    // A symlink is relative to its own directory; a hard link names a
    // member from the archive's root.
    let joined = if symlink && !target.is_absolute() {
        Path::new(name)
            .parent()
            .unwrap_or(Path::new(""))
            .join(target)
    } else {
        target.to_path_buf()
    };
    normalize(&joined)
}

/// Give each link the data of the file it names. Links to links: resolve a
/// few levels, then give up on that name.
fn resolve_links(members: &mut Members, links: &[(String, String)]) {
    for _ in 0..8 {
        let mut progressed = false;
        for (name, target) in links {
            if !members.contains_key(name)
                && let Some(&m) = members.get(target)
            {
                members.insert(name.clone(), m);
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
}

/// The tar crate's error while it read the headers: the end of the file
/// inside the archive (`eof`), an extension over its budget (`over`), or a
/// broken tar.
fn entry_error(shown: &str, e: &std::io::Error, eof: bool, over: bool) -> ImageError {
    if eof {
        truncated(shown)
    } else if over {
        ImageError::Malformed {
            what: shown.to_string(),
            reason: format!("a tar header's extension data is over {MAX_EXTENSION} bytes"),
        }
    } else {
        ImageError::Malformed {
            what: shown.to_string(),
            reason: format!("not a valid tar archive: {e}"),
        }
    }
}

fn read_error(shown: &str, e: std::io::Error) -> ImageError {
    ImageError::Read {
        what: shown.to_string(),
        source: e,
    }
}

fn truncated(shown: &str) -> ImageError {
    ImageError::TruncatedArchive {
        what: shown.to_string(),
        reason: "the file ends before the tar archive does (no end-of-archive marker)".into(),
    }
}

/// `./a/b/../c` → `a/c`; None if it leaves the root or is absolute.
fn normalize(p: &Path) -> Option<String> {
    let mut parts: Vec<String> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(s) => parts.push(s.to_str()?.to_string()),
            Component::CurDir => {}
            Component::ParentDir => {
                parts.pop()?;
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("/"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_tar_names() {
        assert_eq!(
            normalize(Path::new("./blobs/sha256/ab")).as_deref(),
            Some("blobs/sha256/ab")
        );
        assert_eq!(normalize(Path::new("a/../b")).as_deref(), Some("b"));
        assert_eq!(normalize(Path::new("../x")), None);
        assert_eq!(normalize(Path::new("/etc/passwd")), None);
    }

    #[test]
    fn link_targets() {
        // (link name, symlink?, target, the member it names)
        let table = [
            (
                "d2/layer.tar",
                true,
                "../d1/layer.tar",
                Some("d1/layer.tar"),
            ),
            ("d2/layer.tar", true, "layer0.tar", Some("d2/layer0.tar")),
            ("layer.tar", true, "x/y", Some("x/y")),
            ("d2/layer.tar", true, "/d1/layer.tar", None),
            ("d2/layer.tar", true, "../../etc/passwd", None),
            ("d2/layer.tar", false, "d1/layer.tar", Some("d1/layer.tar")),
            ("d2/layer.tar", false, "../d1/layer.tar", None),
        ];
        for (name, symlink, target, want) in table {
            assert_eq!(
                link_target(name, symlink, Path::new(target)).as_deref(),
                want,
                "{name} -> {target}"
            );
        }
    }

    #[test]
    fn links_resolve_through_links_a_few_levels_deep() {
        let mut members = Members::from([("f".to_string(), (512, 5))]);
        let mut links: Vec<(String, String)> = vec![
            ("gone".into(), "nowhere".into()),
            ("f".into(), "l1".into()),
            ("loop1".into(), "loop2".into()),
            ("loop2".into(), "loop1".into()),
        ];
        // A chain of ten links, listed from its far end: each pass resolves
        // one more.
        for i in (1..=10).rev() {
            let target = if i == 1 {
                "f".to_string()
            } else {
                format!("l{}", i - 1)
            };
            links.push((format!("l{i}"), target));
        }
        resolve_links(&mut members, &links);
        assert_eq!(members["f"], (512, 5), "a file is not replaced by a link");
        for i in 1..=8 {
            assert_eq!(members.get(&format!("l{i}")), Some(&(512, 5)), "l{i}");
        }
        for name in ["l9", "l10", "gone", "loop1", "loop2"] {
            assert!(!members.contains_key(name), "{name}");
        }
    }

    #[test]
    fn tar_members_and_links_are_found_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "./d1/layer.tar", &b"hello"[..])
            .unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(tar::EntryType::Symlink);
        l.set_size(0);
        b.append_link(&mut l, "d2/layer.tar", "../d1/layer.tar")
            .unwrap();
        b.into_inner().unwrap();
        let store = Store::tar_file(&path).unwrap();
        let r = store.region("d2/layer.tar").unwrap().unwrap();
        assert_eq!(r.read_all(100, "x").unwrap(), b"hello");
        assert!(store.region("d3").unwrap().is_none());
    }
}
