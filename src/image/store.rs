//! Where the files of a source live: a directory, or a tar archive read in
//! place. A tar is indexed once (names → offset and length of each member's
//! data) and blobs are then read by seeking to their member, so a multi-GiB
//! `oci-archive` is never unpacked to disk.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::ImageError;

/// A byte range of a file on disk: a whole file in a layout directory, or a
/// member's data inside a tar.
#[derive(Clone, Debug)]
pub struct Region {
    pub path: Arc<PathBuf>,
    pub offset: u64,
    pub len: u64,
}

impl Region {
    /// A reader positioned at the start of the region, limited to its length.
    /// Opened anew for every attempt, which is what makes retries possible.
    pub fn open(&self) -> std::io::Result<std::io::Take<File>> {
        let mut f = File::open(&*self.path)?;
        f.seek(SeekFrom::Start(self.offset))?;
        Ok(f.take(self.len))
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
        path: Arc<PathBuf>,
        members: HashMap<String, (u64, u64)>,
    },
}

impl Store {
    pub fn dir(root: &Path) -> Result<Store, ImageError> {
        let root = root.canonicalize().map_err(|e| ImageError::Read {
            what: root.display().to_string(),
            source: e,
        })?;
        Ok(Store::Dir { root })
    }

    /// Index a plain (uncompressed) tar: one pass over its headers, seeking
    /// past the data.
    pub fn tar(path: &Path) -> Result<Store, ImageError> {
        let read_err = |e| ImageError::Read {
            what: path.display().to_string(),
            source: e,
        };
        let file = File::open(path).map_err(read_err)?;
        let mut archive = tar::Archive::new(file);
        let mut members: HashMap<String, (u64, u64)> = HashMap::new();
        let mut links: Vec<(String, String)> = Vec::new();
        let entries = archive.entries_with_seek().map_err(read_err)?;
        for entry in entries {
            let entry = entry.map_err(|e| ImageError::Malformed {
                what: path.display().to_string(),
                reason: format!("not a valid tar archive: {e}"),
            })?;
            let name = match entry.path() {
                Ok(p) => match normalize(&p) {
                    Some(n) => n,
                    None => continue, // names that leave the archive's root are never looked up
                },
                Err(_) => continue,
            };
            let kind = entry.header().entry_type();
            if kind.is_file() || kind == tar::EntryType::Continuous {
                members.insert(name, (entry.raw_file_position(), entry.size()));
            } else if kind.is_symlink() || kind.is_hard_link() {
                if let Ok(Some(target)) = entry.link_name() {
                    // A symlink is relative to its own directory; a hard link
                    // names a member from the archive's root.
                    let joined = if kind.is_symlink() && !target.is_absolute() {
                        Path::new(&name)
                            .parent()
                            .unwrap_or(Path::new(""))
                            .join(&target)
                    } else {
                        target.to_path_buf()
                    };
                    if let Some(t) = normalize(&joined) {
                        links.push((name, t));
                    }
                }
            }
        }
        // Links to links: resolve a few levels, then give up on that name.
        for _ in 0..8 {
            let mut progressed = false;
            for (name, target) in &links {
                if !members.contains_key(name) {
                    if let Some(&m) = members.get(target) {
                        members.insert(name.clone(), m);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                break;
            }
        }
        Ok(Store::Tar {
            path: Arc::new(path.to_path_buf()),
            members,
        })
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
                    path: Arc::new(real),
                    offset: 0,
                    len: meta.len(),
                }))
            }
            Store::Tar { path, members } => Ok(members.get(rel).map(|&(offset, len)| Region {
                path: path.clone(),
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
        let store = Store::tar(&path).unwrap();
        let r = store.region("d2/layer.tar").unwrap().unwrap();
        assert_eq!(r.read_all(100, "x").unwrap(), b"hello");
        assert!(store.region("d3").unwrap().is_none());
    }
}
