//! What a push is asked to do, checked before anything is read or sent:
//! the repository and tag names, the mount sources, `--jobs`, that the
//! digest file can be written. `cli.rs` builds these from the flags.

use std::path::PathBuf;

use super::plan;
use crate::error::ConfigError;

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    /// The repository's name (`team/app`).
    pub repository: String,
    /// The registry, when `--repository` named one (a full repository URI:
    /// a central registry in another account or region).
    pub registry: Option<crate::registry::host::EcrHost>,
    /// Each tag once, in the order given.
    pub tags: Vec<String>,
    pub reference: Option<String>,
    pub mount_from: Vec<String>,
    pub jobs: usize,
    pub create_repository: bool,
    pub digest_file: Option<PathBuf>,
}

impl Settings {
    /// The flags as given, checked; tags deduplicated.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(mut s: Settings) -> Result<Settings, ConfigError> {
        s.tags = plan::unique_tags(std::mem::take(&mut s.tags));
        if let Some((host, name)) = s.repository.split_once('/')
            && (host.contains('.') || host.contains(':'))
        {
            let ecr = crate::registry::host::EcrHost::parse(host).ok_or_else(|| {
                    ConfigError::new(format!(
                        "--repository '{}' names the registry {host}, which is not an ECR registry",
                        s.repository
                    ))
                    .hint("give the repository's name (team/app), or its full ECR URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/team/app)")
                })?;
            s.registry = Some(ecr);
            s.repository = name.to_string();
        }
        plan::check_repository(&s.repository)?;
        for t in &s.tags {
            plan::check_tag(t)?;
        }
        for r in &s.mount_from {
            plan::check_repository(r)?;
        }
        if !(1..=64).contains(&s.jobs) {
            return Err(
                ConfigError::new(format!("--jobs {} is out of range", s.jobs))
                    .hint("use 1 to 64 parallel uploads (default 4)"),
            );
        }
        check_digest_file(s.digest_file.as_deref())?;
        Ok(s)
    }
}

/// `--digest-file` must be writable before anything is pushed: a push whose
/// digest cannot be handed on is a failed step, and finding out afterwards
/// leaves an image nobody knows about. Nothing is written here: an existing
/// file is opened for writing without truncating it; for a new one, a
/// temporary file is made (and removed) in its directory.
fn check_digest_file(path: Option<&std::path::Path>) -> Result<(), ConfigError> {
    let Some(path) = path else { return Ok(()) };
    let shown = path.display();
    let fail = |what: String, e: Option<std::io::Error>| {
        let err = ConfigError::new(format!("--digest-file {shown}: {what}")).hint(
            "point --digest-file (HOIST_DIGEST_FILE) at a file in a directory that exists and that this user may write to",
        );
        match e {
            Some(e) => err.source(e),
            None => err,
        }
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(fail("it is a directory".into(), None)),
        // A pipe or a device (/dev/stdout) is taken as it is: opening a
        // pipe nobody reads would block.
        Ok(m) if !m.is_file() => Ok(()),
        Ok(_) => std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map(drop)
            .map_err(|e| fail("it cannot be written".into(), Some(e))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = match path.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => std::path::Path::new("."),
            };
            if !dir.is_dir() {
                return Err(fail(
                    format!("its directory {} does not exist", dir.display()),
                    None,
                ));
            }
            tempfile::NamedTempFile::new_in(dir).map(drop).map_err(|e| {
                fail(
                    format!("its directory {} cannot be written to", dir.display()),
                    Some(e),
                )
            })
        }
        Err(e) => Err(fail("it cannot be checked".into(), Some(e))),
    }
}

pub(super) fn write_digest(
    path: Option<&std::path::Path>,
    digest: &crate::image::Digest,
) -> Result<(), ConfigError> {
    if let Some(path) = path {
        std::fs::write(path, digest.to_string()).map_err(|e| {
            ConfigError::new(format!("could not write the digest to {}", path.display())).source(e)
        })?;
    }
    Ok(())
}
