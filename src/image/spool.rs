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
use super::store::{Backing, Guard, Guarded, MAX_EXTENSION, MAX_MEMBERS, padded, too_many_members};

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
    let at = Spooling {
        shown: source.display().to_string(),
        dir,
        dir_shown: dir.display().to_string(),
        write_error: Rc::new(RefCell::new(None)),
    };
    let input = std::fs::File::open(source).map_err(|e| ImageError::Read {
        what: at.shown.clone(),
        source: e,
    })?;
    let compressed = input.metadata().map(|m| m.len()).unwrap_or(0);
    // First, before a byte is written: the copy is at least about as large
    // as the compressed file.
    at.make_room(compressed)?;
    let file = tempfile::tempfile_in(dir).map_err(|e| ImageError::Read {
        what: format!("a temporary file in {} (TMPDIR)", at.dir_shown),
        source: e,
    })?;
    let decoder =
        flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, input));
    let writer = file
        .try_clone()
        .map_err(|e| spool_write_error(&at.dir_shown, e))?;
    let tee = Tee {
        inner: decoder,
        out: BufWriter::with_capacity(1 << 20, writer),
        written: 0,
        write_error: at.write_error.clone(),
    };
    let guarded = Guarded::new(tee);
    let guard = guarded.guard.clone();
    let mut archive = tar::Archive::new(guarded);
    at.read_members(&mut archive, &guard)?;
    if guard.eof.get() {
        return Err(ImageError::TruncatedArchive {
            what: at.shown,
            reason: "the decompressed stream ends before the tar archive does (no end-of-archive marker)".into(),
        });
    }
    let mut tee = archive.into_inner().inner;
    at.read_trailer(&mut tee)?;
    let Tee { mut out, .. } = tee;
    out.flush()
        .map_err(|e| spool_write_error(&at.dir_shown, e))?;
    drop(out);
    Ok(Arc::new(Backing::Open {
        file,
        shown: format!("{} (decompressed)", at.shown),
    }))
}

/// One gzip source being copied to TMPDIR.
struct Spooling<'a> {
    /// The source, as messages name it.
    shown: String,
    dir: &'a Path,
    dir_shown: String,
    /// Where the [`Tee`] puts a failed write to the spool.
    write_error: Rc<RefCell<Option<std::io::Error>>>,
}

impl Spooling<'_> {
    /// Refuse to write `need` more bytes unless TMPDIR's file system has
    /// room for them.
    fn make_room(&self, need: u64) -> Result<(), ImageError> {
        match free_space(self.dir) {
            Ok(free) if !fits(need, free) => Err(ImageError::NoSpace {
                what: self.shown.clone(),
                dir: self.dir_shown.clone(),
                need,
                free,
            }),
            // A file system that cannot say is written to, and a full one
            // then fails the write, which is reported as such.
            _ => Ok(()),
        }
    }

    /// Read the decompressed stream as the tar it must be, up to its
    /// end-of-archive marker: the tar crate reads (and skips) each member's
    /// data, which the [`Tee`] writes to the spool, and is allowed only what
    /// the member's header accounts for.
    fn read_members<R: Read>(
        &self,
        archive: &mut tar::Archive<R>,
        guard: &Guard,
    ) -> Result<(), ImageError> {
        let entries = archive.entries().map_err(|e| corrupt(&self.shown, &e))?;
        let mut tally = Tally::default();
        for entry in entries {
            let entry = entry.map_err(|e| {
                self.write_error_or(|| {
                    if guard.over.get() {
                        ImageError::GzipBomb {
                            what: self.shown.clone(),
                            detail: format!(
                                "a tar header or extension is followed by more than {MAX_EXTENSION} bytes its header does not account for"
                            ),
                        }
                    } else {
                        tar_error(&self.shown, &e, guard.eof.get())
                    }
                })
            })?;
            let size = padded(entry.size());
            tally.add(size, &self.shown)?;
            if size > 0 {
                self.make_room(size)?;
            }
            // This member's data, then the next member's headers.
            guard.budget.set(size.saturating_add(MAX_EXTENSION));
        }
        Ok(())
    }

    /// After the end-of-archive marker only padding may follow: read the
    /// rest of the stream, refusing it once it is more than that.
    fn read_trailer<R: Read, W: Write>(&self, tee: &mut Tee<R, W>) -> Result<(), ImageError> {
        let mut trailer = 0u64;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match tee.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.write_error_or(|| corrupt(&self.shown, &e))),
            };
            trailer += n as u64;
            if trailer > MAX_TRAILER {
                return Err(ImageError::GzipBomb {
                    what: self.shown.clone(),
                    detail: format!(
                        "more than {} follow the end of its tar archive ({} of tar)",
                        crate::progress::bytes(MAX_TRAILER),
                        crate::progress::bytes(tee.written - trailer)
                    ),
                });
            }
        }
    }

    /// A failed read of the decompressed stream: the disk's problem if
    /// writing the spool failed (the [`Tee`] kept the error aside), else
    /// `otherwise`, the archive's.
    fn write_error_or(&self, otherwise: impl FnOnce() -> ImageError) -> ImageError {
        match self.write_error.borrow_mut().take() {
            Some(w) => spool_write_error(&self.dir_shown, w),
            None => otherwise(),
        }
    }
}

/// The members of the decompressed tar so far, against the caps: how many,
/// and how much of the stream their headers and data account for.
#[derive(Default)]
struct Tally {
    members: usize,
    accounted: u64,
}

impl Tally {
    /// Count one more member, with `size` bytes of (padded) data.
    fn add(&mut self, size: u64, shown: &str) -> Result<(), ImageError> {
        self.members += 1;
        if self.members > MAX_MEMBERS {
            return Err(too_many_members(shown));
        }
        self.accounted = self.accounted.saturating_add(size).saturating_add(512);
        if self.accounted > MAX_SPOOL {
            return Err(ImageError::SpoolTooLarge {
                what: shown.to_string(),
                size: self.accounted,
                limit: MAX_SPOOL,
            });
        }
        Ok(())
    }
}

/// The decompressor's error: the gzip stream is broken.
fn corrupt(shown: &str, e: &std::io::Error) -> ImageError {
    ImageError::Malformed {
        what: shown.to_string(),
        reason: format!("gzip stream is corrupt or truncated: {e}"),
    }
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
        return corrupt(shown, e);
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
    fn members_are_tallied_against_the_caps() {
        // (the padded sizes of the members, whether the last one is refused)
        let table: [(&[u64], Option<&str>); 5] = [
            (&[0, 512, 1 << 20], None),
            (&[MAX_SPOOL - 512], None),
            (&[MAX_SPOOL - 512, 0], Some("SpoolTooLarge")),
            (&[MAX_SPOOL], Some("SpoolTooLarge")),
            (&[u64::MAX], Some("SpoolTooLarge")),
        ];
        for (sizes, want) in table {
            let mut tally = Tally::default();
            let got = sizes.iter().try_for_each(|&s| tally.add(s, "x"));
            match (got, want) {
                (Ok(()), None) => {}
                (Err(ImageError::SpoolTooLarge { size, limit, .. }), Some("SpoolTooLarge")) => {
                    assert!(size > limit, "{sizes:?}")
                }
                (got, want) => panic!("{sizes:?}: {got:?}, wanted {want:?}"),
            }
        }
        let mut tally = Tally::default();
        for _ in 0..MAX_MEMBERS {
            tally.add(0, "x").unwrap();
        }
        let err = tally.add(0, "x").unwrap_err();
        assert!(err.to_string().contains("more than 100000 files"), "{err}");
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
