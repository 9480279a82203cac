//! The files users name (a token, a policy, an allow-list, a CA bundle, a
//! smoke event), read with a limit that fits what each holds: a file over
//! its limit is refused before it is read whole, and a device such as
//! `/dev/zero` is refused outright, so a wrong path costs an error, never
//! gigabytes of memory (a 50 MB "token" is not a token).

use std::io::Read;
use std::path::Path;

use crate::error::ConfigError;

/// STS takes a web identity token of at most 20,000 characters.
pub const TOKEN: u64 = 20_000;
/// An IAM policy document as a file: generous (pretty-printed JSON, an
/// `aws iam get-role` answer); what STS takes is checked after minifying.
pub const POLICY: u64 = 64 * 1024;
/// An allow-list (TOML).
pub const ALLOWLIST: u64 = 1024 * 1024;
/// A PEM bundle of CA certificates (the system's whole store is ~200 KB).
pub const CA_BUNDLE: u64 = 4 * 1024 * 1024;
/// A Lambda invocation payload (synchronous invoke: 6 MB).
pub const EVENT: u64 = 6 * 1024 * 1024;
/// A dotenv file hoist updates in place.
pub const DOTENV: u64 = 1024 * 1024;

/// `path`'s bytes, if it is a file (or a pipe from process substitution) of
/// at most `limit` bytes; `what` names it in errors (e.g. `--session-policy`).
pub fn read(path: &Path, what: &str, limit: u64) -> Result<Vec<u8>, ConfigError> {
    let shown = path.display();
    let cannot =
        |e: std::io::Error| ConfigError::new(format!("{what} {shown} cannot be read")).source(e);
    let meta = std::fs::metadata(path).map_err(cannot)?;
    let kind = meta.file_type();
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_dir() {
            return Err(ConfigError::new(format!(
                "{what} {shown} is a directory, not a file"
            )));
        }
        // Process substitution (`<(jq …)`) hands over /dev/fd/N, a pipe
        // with a writer: read it, bounded. Any other FIFO may have none and
        // would block; devices never end.
        let process_substitution = path.starts_with("/dev/fd") || path.starts_with("/proc/self/fd");
        if kind.is_char_device()
            || kind.is_block_device()
            || kind.is_socket()
            || (kind.is_fifo() && !process_substitution)
        {
            return Err(ConfigError::new(format!(
                "{what} {shown} is a device or a pipe, not a file"
            ))
            .hint("name a regular file"));
        }
    }
    if kind.is_file() && meta.len() > limit {
        return Err(too_large(what, &shown.to_string(), Some(meta.len()), limit));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(too_large(what, &shown.to_string(), None, limit));
    }
    Ok(bytes)
}

/// The same, as UTF-8 text.
pub fn read_to_string(path: &Path, what: &str, limit: u64) -> Result<String, ConfigError> {
    String::from_utf8(read(path, what, limit)?)
        .map_err(|_| ConfigError::new(format!("{what} {} is not UTF-8 text", path.display())))
}

fn too_large(what: &str, path: &str, size: Option<u64>, limit: u64) -> ConfigError {
    let size = size.map(|s| format!(" ({s} bytes)")).unwrap_or_default();
    ConfigError::new(format!(
        "{what} {path} is larger than {limit} bytes{size}, more than such a file ever holds"
    ))
    .hint(format!("check that {what} names the right file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small");
        std::fs::write(&small, "hello").unwrap();
        assert_eq!(read_to_string(&small, "--x", 10).unwrap(), "hello");
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 11]).unwrap();
        let e = read(&big, "--x", 10).unwrap_err().to_string();
        assert!(e.contains("larger than 10 bytes (11 bytes)"), "{e}");
        for dev in ["/dev/zero", "/dev/null"] {
            let e = read(Path::new(dev), "--x", 10).unwrap_err().to_string();
            assert!(e.contains("is a device or a pipe"), "{e}");
        }
        let e = read(dir.path(), "--x", 10).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        let e = read(&dir.path().join("none"), "--x", 10)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot be read"), "{e}");
        std::fs::write(&big, [0xff, 0xfe]).unwrap();
        assert!(read_to_string(&big, "--x", 10).is_err());
    }
}
