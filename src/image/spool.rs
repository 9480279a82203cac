//! A gzip archive cannot be seeked, so it is decompressed once into TMPDIR
//! and read from there — within bounds (issue 12: a 10 MB `.tar.gz` once
//! wrote 10 GiB before being refused, and a SIGTERM during it left 3.7 GB
//! behind):
//!
//! - the copy is an unnamed file (`O_TMPFILE`, or created and unlinked at
//!   once): the kernel frees it when hoist exits, however it exits — an
//!   error, SIGINT, SIGTERM, even SIGKILL — so no exit path can leave it
//!   behind, and no signal handler is needed;
//! - the decompressed stream is read as the tar it must be: each member's
//!   header says how much data follows, and the reader may read only that
//!   (plus 1 MiB for headers and extensions) before the next member, and at
//!   most 1 MiB after the end-of-archive marker — a stream that goes on is
//!   refused as soon as it exceeds what its tar accounts for;
//! - before a member's data is written, the file system must have room for
//!   it (and some to spare), and the whole copy stays under [`MAX_SPOOL`].

use std::cell::RefCell;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use super::ImageError;
use super::store::{Backing, Guarded, MAX_EXTENSION, MAX_MEMBERS, padded, too_many_members};

/// The largest decompressed archive hoist copies to disk: three times
/// Lambda's 10 GB limit on an image. A larger one can still be pushed —
/// decompressed by the user, since a plain tar is read in place.
pub const MAX_SPOOL: u64 = 32 << 30;

/// What may follow the end-of-archive marker: tar pads its output to a whole
/// record (GNU tar's default is 10 KiB).
const MAX_TRAILER: u64 = 1 << 20;

/// Space left free on TMPDIR's file system after a member is written, so a
/// large archive does not fill the disk the CI job (and others) run on —
/// small enough that a small archive still fits a small TMPDIR.
pub const RESERVE: u64 = 64 << 20;

/// Whether a member of `need` bytes may be written where `free` bytes are
/// available: it must fit with [`RESERVE`] to spare.
pub fn fits(need: u64, free: u64) -> bool {
    need.checked_add(RESERVE).is_some_and(|n| n <= free)
}

/// Bytes free for an unprivileged user on the file system holding `dir`.
fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir).map_err(std::io::Error::from)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Reads the decompressed stream, writing every byte read to the spool. A
/// failed write is kept aside (`write_error`), so that it is reported as the
/// disk's problem, not the archive's.
struct Tee<R, W: Write> {
    inner: R,
    out: W,
    written: u64,
    write_error: Rc<RefCell<Option<std::io::Error>>>,
}

impl<R: Read, W: Write> Read for Tee<R, W> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            let kind = e.kind();
            *self.write_error.borrow_mut() = Some(e);
            return Err(std::io::Error::new(kind, "could not write the spool"));
        }
        self.written += n as u64;
        Ok(n)
    }
}

/// Decompress the gzip archive `source` into an unnamed file in `dir`
/// (TMPDIR) and hand it back, open, for [`super::store::Store::tar`].
pub fn gunzip(source: &Path, dir: &Path) -> Result<Arc<Backing>, ImageError> {
    let shown = source.display().to_string();
    let dir_shown = dir.display().to_string();
    let input = std::fs::File::open(source).map_err(|e| ImageError::Read {
        what: shown.clone(),
        source: e,
    })?;
    let compressed = input.metadata().map(|m| m.len()).unwrap_or(0);
    let no_space = |need: u64, free: u64| ImageError::NoSpace {
        what: shown.clone(),
        dir: dir_shown.clone(),
        need,
        free,
    };
    let space = |need: u64| -> Result<(), ImageError> {
        match free_space(dir) {
            Ok(free) if !fits(need, free) => Err(no_space(need, free)),
            // A file system that cannot say is written to, and a full one
            // then fails the write, which is reported as such.
            _ => Ok(()),
        }
    };
    // First, before a byte is written: the copy is at least about as large
    // as the compressed file.
    space(compressed)?;
    let file = tempfile::tempfile_in(dir).map_err(|e| ImageError::Read {
        what: format!("a temporary file in {dir_shown} (TMPDIR)"),
        source: e,
    })?;
    let decoder =
        flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, input));
    let writer = file
        .try_clone()
        .map_err(|e| spool_write_error(&dir_shown, e))?;
    let write_error = Rc::new(RefCell::new(None));
    let tee = Tee {
        inner: decoder,
        out: BufWriter::with_capacity(1 << 20, writer),
        written: 0,
        write_error: write_error.clone(),
    };
    let guarded = Guarded::new(tee);
    let (budget, eof, over) = (
        guarded.budget.clone(),
        guarded.eof.clone(),
        guarded.over.clone(),
    );
    let mut archive = tar::Archive::new(guarded);
    let corrupt = |e: &std::io::Error| ImageError::Malformed {
        what: shown.clone(),
        reason: format!("gzip stream is corrupt or truncated: {e}"),
    };
    let mut accounted = 0u64;
    let mut members = 0usize;
    {
        let entries = archive.entries().map_err(|e| corrupt(&e))?;
        for entry in entries {
            let entry = entry.map_err(|e| {
                if let Some(w) = write_error.borrow_mut().take() {
                    spool_write_error(&dir_shown, w)
                } else if over.get() {
                    ImageError::GzipBomb {
                        what: shown.clone(),
                        detail: format!(
                            "a tar header or extension is followed by more than {MAX_EXTENSION} bytes its header does not account for"
                        ),
                    }
                } else {
                    tar_error(&shown, &e, eof.get())
                }
            })?;
            members += 1;
            if members > MAX_MEMBERS {
                return Err(too_many_members(&shown));
            }
            let size = padded(entry.size());
            accounted = accounted.saturating_add(size).saturating_add(512);
            if accounted > MAX_SPOOL {
                return Err(ImageError::SpoolTooLarge {
                    what: shown.clone(),
                    size: accounted,
                    limit: MAX_SPOOL,
                });
            }
            if size > 0 {
                space(size)?;
            }
            // This member's data, then the next member's headers.
            budget.set(size.saturating_add(MAX_EXTENSION));
        }
    }
    if eof.get() {
        return Err(ImageError::TruncatedArchive {
            what: shown,
            reason: "the decompressed stream ends before the tar archive does (no end-of-archive marker)".into(),
        });
    }
    // After the end-of-archive marker only padding may follow.
    let guarded = archive.into_inner();
    let mut tee = guarded.inner;
    let mut trailer = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match tee.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(match write_error.borrow_mut().take() {
                    Some(w) => spool_write_error(&dir_shown, w),
                    None => corrupt(&e),
                });
            }
        };
        trailer += n as u64;
        if trailer > MAX_TRAILER {
            return Err(ImageError::GzipBomb {
                what: shown,
                detail: format!(
                    "more than {} follow the end of its tar archive ({} of tar)",
                    crate::progress::bytes(MAX_TRAILER),
                    crate::progress::bytes(tee.written - trailer)
                ),
            });
        }
    }
    let Tee { mut out, .. } = tee;
    out.flush().map_err(|e| spool_write_error(&dir_shown, e))?;
    drop(out);
    Ok(Arc::new(Backing::Open {
        file,
        shown: format!("{shown} (decompressed)"),
    }))
}

fn spool_write_error(dir: &str, e: std::io::Error) -> ImageError {
    ImageError::Read {
        what: format!("the decompressed copy in {dir} (TMPDIR)"),
        source: e,
    }
}

/// The tar crate's error while it read the decompressed stream: the end of
/// the stream inside the archive (truncated), the decompressor's own error
/// (passed through as it is: any kind but `Other`), or a broken tar (the tar
/// crate's errors are all `Other`).
fn tar_error(shown: &str, e: &std::io::Error, eof: bool) -> ImageError {
    if eof {
        return ImageError::TruncatedArchive {
            what: shown.to_string(),
            reason: "the decompressed stream ends inside the tar archive".into(),
        };
    }
    if e.kind() != std::io::ErrorKind::Other {
        return ImageError::Malformed {
            what: shown.to_string(),
            reason: format!("gzip stream is corrupt or truncated: {e}"),
        };
    }
    ImageError::Malformed {
        what: shown.to_string(),
        reason: format!("not a valid tar archive once decompressed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::Store;

    fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn gz(parts: &[&[u8]]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        for p in parts {
            e.write_all(p).unwrap();
        }
        e.finish().unwrap()
    }

    /// gunzip `bytes` (as a file) into a TMPDIR of the test's own; the
    /// TMPDIR must be empty afterwards, whatever happened.
    fn spool(bytes: &[u8]) -> Result<Arc<Backing>, ImageError> {
        let src = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let path = src.path().join("a.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        let out = gunzip(&path, tmp.path());
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "the spool has no name in TMPDIR"
        );
        out
    }

    #[test]
    fn a_gzip_tar_is_spooled_and_read_in_place() {
        let tar = tar_of(&[("index.json", b"{}"), ("blobs/sha256/ab", b"hello")]);
        let backing = spool(&gz(&[&tar])).unwrap();
        let store = Store::tar(backing).unwrap();
        let r = store.region("blobs/sha256/ab").unwrap().unwrap();
        assert_eq!(r.read_all(100, "x").unwrap(), b"hello");
    }

    #[test]
    fn a_stream_that_goes_on_after_its_tar_is_refused() {
        let tar = tar_of(&[("small", b"tiny")]);
        let zeros = vec![0u8; (MAX_TRAILER as usize) * 2];
        let err = spool(&gz(&[&tar, &zeros])).unwrap_err();
        assert!(matches!(err, ImageError::GzipBomb { .. }), "{err}");
        // GNU tar's record padding is fine.
        let padded = vec![0u8; 10240];
        spool(&gz(&[&tar, &padded])).unwrap();
    }

    #[test]
    fn cut_streams_are_truncated_or_corrupt() {
        let tar = tar_of(&[("a", &[7u8; 5000]), ("b", b"x")]);
        // The tar cut inside a member, in a whole gzip stream.
        let err = spool(&gz(&[&tar[..3000]])).unwrap_err();
        assert!(matches!(err, ImageError::TruncatedArchive { .. }), "{err}");
        // The gzip stream itself cut.
        let whole = gz(&[&tar]);
        let err = spool(&whole[..whole.len() - 10]).unwrap_err();
        assert!(
            err.to_string()
                .contains("gzip stream is corrupt or truncated"),
            "{err}"
        );
    }

    #[test]
    fn a_member_over_the_cap_is_refused_before_its_data() {
        // A header declaring 40 GiB, then only a little data: refused on the
        // header alone.
        let mut h = tar::Header::new_gnu();
        h.set_path("huge").unwrap();
        h.set_size(40 << 30);
        h.set_mode(0o644);
        h.set_cksum();
        let err = spool(&gz(&[h.as_bytes(), &[0u8; 4096]])).unwrap_err();
        assert!(matches!(err, ImageError::SpoolTooLarge { .. }), "{err}");
    }

    #[test]
    fn room_for_a_member() {
        let table = [
            (0, RESERVE, true),
            (0, RESERVE - 1, false),
            (1 << 30, (1 << 30) + RESERVE, true),
            (1 << 30, 1 << 30, false),
            (u64::MAX, u64::MAX, false),
        ];
        for (need, free, want) in table {
            assert_eq!(fits(need, free), want, "{need} in {free}");
        }
    }
}
