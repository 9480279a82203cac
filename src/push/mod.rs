//! The push stage: an image from disk to an ECR repository. Blobs first
//! (HEAD, mount or upload, in parallel), then child manifests, then the index,
//! then the tags — so the registry never holds a manifest without its blobs.

pub mod plan;

use std::path::PathBuf;
use std::time::Instant;

use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::{ConfigError, Error};
use crate::image::stream::Sent;
use crate::image::{
    DOCKER_MANIFEST, Digest, DockerImage, DockerLayer, Format, Image, ImageError, Manifest, Root,
    plural,
};
use crate::progress::{Progress, bytes};
use crate::registry::ecr::Templates;
use crate::registry::{BlobOutcome, Ecr, Registry, RegistryError, RepoInfo, Upload};
use plan::TagAction;

/// `hoist push`: read and check the image before any call to AWS (bad input
/// fails fast and touches nothing), then push it.
pub async fn run(ctx: &crate::Context, args: crate::cli::PushArgs) -> Result<Report, Error> {
    let digest_file = args.digest_file.clone();
    check_digest_file(digest_file.as_deref())?;
    let p = prepare(ctx, args, false).await?;
    let report = push(&p.settings, &p.image, &p.registry, p.repo).await?;
    write_digest(digest_file.as_deref(), &report)?;
    Ok(report)
}

/// `ship --dry-run`: the same reads as a push — the image, the repository,
/// which blobs and tags the registry has — and no write. The report says what
/// a push would do; the image's manifests and configs come back too, for the
/// deploy's preflight.
pub async fn plan(
    ctx: &crate::Context,
    args: crate::cli::PushArgs,
) -> Result<(Report, crate::image::Contents), Error> {
    let digest_file = args.digest_file.clone();
    check_digest_file(digest_file.as_deref())?;
    let p = prepare(ctx, args, true).await?;
    let planned = plan_only(&p.settings, &p.image, &p.registry, p.repo).await?;
    write_digest(digest_file.as_deref(), &planned.0)?;
    Ok(planned)
}

struct Prepared {
    settings: Settings,
    image: Image,
    registry: Registry,
    repo: Found,
}

async fn prepare(
    ctx: &crate::Context,
    args: crate::cli::PushArgs,
    dry_run: bool,
) -> Result<Prepared, Error> {
    let settings = Settings {
        source: args.source,
        repository: args.repository,
        tags: plan::unique_tags(args.tags),
        reference: args.reference,
        mount_from: args.mount_from,
        jobs: args.jobs,
        create_repository: args.create_repository,
        quiet: ctx.quiet,
        dry_run,
    };
    settings.validate()?;
    let endpoint = ctx.registry_endpoint.clone();
    let image = open(&settings).await?;
    let sdk = ctx.aws().await?;
    let ecr = Ecr::new(sdk);
    let masker = ctx.ci.clone();
    let mask = Box::new(move |s: &str| masker.mask(s));
    // Independent calls, made at once: the registry password and the
    // repository's settings.
    let (registry, repo) = tokio::join!(
        Registry::connect(
            ecr.clone(),
            endpoint,
            ctx.net.clone(),
            Default::default(),
            mask
        ),
        repository(&settings, &ecr)
    );
    Ok(Prepared {
        settings,
        image,
        registry: registry?,
        repo: repo?,
    })
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

fn write_digest(path: Option<&std::path::Path>, report: &Report) -> Result<(), ConfigError> {
    if let Some(path) = path {
        std::fs::write(path, report.digest.to_string()).map_err(|e| {
            ConfigError::new(format!("could not write the digest to {}", path.display())).source(e)
        })?;
    }
    Ok(())
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub source: PathBuf,
    pub repository: String,
    pub tags: Vec<String>,
    pub reference: Option<String>,
    pub mount_from: Vec<String>,
    pub jobs: usize,
    pub create_repository: bool,
    pub quiet: bool,
    /// Read everything, write nothing.
    pub dry_run: bool,
}

impl Settings {
    pub fn validate(&self) -> Result<(), ConfigError> {
        plan::check_repository(&self.repository)?;
        for t in &self.tags {
            plan::check_tag(t)?;
        }
        for r in &self.mount_from {
            plan::check_repository(r)?;
        }
        if !(1..=64).contains(&self.jobs) {
            return Err(
                ConfigError::new(format!("--jobs {} is out of range", self.jobs))
                    .hint("use 1 to 64 parallel uploads (default 4)"),
            );
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TagReport {
    pub tag: String,
    /// `pushed` or `unchanged` (it already pointed at this image).
    pub action: &'static str,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BlobCounts {
    pub total: usize,
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
    pub bytes_uploaded: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub digest: Digest,
    pub image_uri: String,
    pub repository: String,
    pub registry: String,
    pub media_type: String,
    pub source_format: Format,
    pub platforms: Vec<String>,
    pub tags: Vec<TagReport>,
    pub blobs: BlobCounts,
    pub manifests_pushed: usize,
    pub repository_created: bool,
    /// Created by ECR on the push, from the creation template for this prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_template: Option<String>,
    pub seconds: f64,
    /// A plan, not a push: the counts say what a push would do.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The registry held the image before this run.
    pub already_present: bool,
}

/// Open SOURCE (off the async threads: it reads and may decompress).
pub async fn open(settings: &Settings) -> Result<Image, ImageError> {
    let (source, reference) = (settings.source.clone(), settings.reference.clone());
    tokio::task::spawn_blocking(move || Image::open(&source, reference.as_deref()))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// The repository, or why there is none: `Err` carries what hoist could not
/// check of the creation templates.
pub type Found = Result<RepoInfo, Option<String>>;

/// The repository, created when asked to. Needs only the ECR API, so it
/// runs while the registry connection is being set up.
///
/// A missing repository is created by ECR itself on the push when a
/// creation template applied for CREATE_ON_PUSH covers its name; hoist then
/// pushes and never creates it with its own settings over the template's.
pub async fn repository(settings: &Settings, ecr: &Ecr) -> Result<Found, RegistryError> {
    let name = settings.repository.as_str();
    if let Some(mut r) = ecr.repository(name).await? {
        if settings.tags.is_empty() {
            r.lifecycle_policy = ecr.lifecycle_policy(name).await;
        }
        return Ok(Ok(r));
    }
    let templates = ecr.creation_templates().await?;
    let unreadable = match &templates {
        Templates::Listed(ts) => {
            if let Some(t) = plan::template_for(ts, name) {
                eprintln!(
                    "repository {name} does not exist: ECR creates it on the push, with the settings of the creation template for prefix '{}'",
                    t.prefix
                );
                return Ok(Ok(RepoInfo::from_template(name, t)));
            }
            None
        }
        Templates::Unreadable(why) => Some(why.clone()),
    };
    if !settings.create_repository {
        return Ok(Err(unreadable));
    }
    if let Some(why) = &unreadable {
        tracing::warn!(
            "could not read the registry's repository creation templates ({why}); creating {name} with hoist's settings"
        );
    }
    if settings.dry_run {
        // What --create-repository would make: immutable tags, scan on push.
        return Ok(Ok(RepoInfo {
            name: name.to_string(),
            mutability: crate::registry::ecr::Mutability::Immutable,
            scan_on_push: true,
            created: true,
            template: None,
            lifecycle_policy: None,
        }));
    }
    let r = ecr.create_repository(name).await?;
    eprintln!("created repository {name} (scan on push, immutable tags, Lambda may pull)");
    Ok(Ok(r))
}

/// What each tag points at now (one HEAD per tag).
async fn tag_lookups(
    settings: &Settings,
    registry: &Registry,
) -> Result<Vec<(String, Option<Digest>)>, RegistryError> {
    let mut out = Vec::with_capacity(settings.tags.len());
    for tag in &settings.tags {
        let existing = registry.manifest_digest(&settings.repository, tag).await?;
        out.push((tag.clone(), existing));
    }
    Ok(out)
}

/// What each tag needs, checked before anything is written: a tag that
/// cannot be moved fails the push while the registry is still untouched
/// (or, for docker archives, holds only blobs).
fn tag_plan(
    settings: &Settings,
    lookups: &[(String, Option<Digest>)],
    repo: &RepoInfo,
    digest: &Digest,
) -> Result<Vec<(String, TagAction)>, RegistryError> {
    let mut out = Vec::new();
    for (tag, existing) in lookups {
        match plan::tag_action(existing.as_ref(), digest, repo.mutability.is_immutable(tag)) {
            TagAction::Conflict { existing } => {
                return Err(RegistryError::TagConflict {
                    tag: tag.clone(),
                    repository: settings.repository.clone(),
                    existing,
                    pushing: digest.clone(),
                });
            }
            action => out.push((tag.clone(), action)),
        }
    }
    Ok(out)
}

/// A `docker save` image's layers, each distinct one once: a layer listed
/// again (same diff_id) is the same content, and hoist's deterministic
/// compression makes it the same blob. Returns the distinct layers and, for
/// each layer of the image, which of them it is.
fn distinct_layers(d: &DockerImage) -> (Vec<&DockerLayer>, Vec<usize>) {
    let mut index: std::collections::HashMap<&Digest, usize> = Default::default();
    let mut distinct = Vec::new();
    let positions = d
        .layers
        .iter()
        .map(|l| {
            *index.entry(&l.diff_id).or_insert_with(|| {
                distinct.push(l);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, positions)
}

/// The layers of a manifest already under one of the tags, when it is a
/// manifest of this image (see [`plan::reusable_layers`]): a re-push of a
/// `docker save` archive then uploads nothing.
async fn reuse_layers(
    registry: &Registry,
    name: &str,
    d: &DockerImage,
    lookups: &[(String, Option<Digest>)],
) -> Result<Option<(String, Vec<Sent>)>, RegistryError> {
    let config = Sent {
        digest: d.config.digest.clone(),
        size: d.config.size,
    };
    let mut tried = std::collections::HashSet::new();
    for (tag, existing) in lookups {
        let Some(existing) = existing else { continue };
        if !tried.insert(existing) {
            continue;
        }
        let (bytes, _) = registry.get_manifest(name, &existing.to_string()).await?;
        if let Some(layers) = plan::reusable_layers(&bytes, &config, d.layers.len()) {
            return Ok(Some((tag.clone(), layers)));
        }
    }
    Ok(None)
}

pub async fn push(
    settings: &Settings,
    image: &Image,
    registry: &Registry,
    repo: Found,
) -> Result<Report, Error> {
    let started = Instant::now();
    let repo = require(settings, registry, repo)?;
    let name = settings.repository.as_str();
    eprintln!(
        "pushing {} to {}",
        image.describe(),
        registry.repository_uri(name)
    );

    let mut counts = BlobCounts::default();
    let already_present;
    let (root_digest, root_bytes, media_type, platforms, manifests_pushed, tags) = match &image.root
    {
        Root::Stored(root) => {
            let lookups = tag_lookups(settings, registry).await?;
            let tags = tag_plan(settings, &lookups, &repo, &root.digest)?;
            let blobs = root.blobs();
            let mut pushed = 0;
            // A registry accepts a manifest only once every blob it names is
            // there, so an image whose manifest is present is complete: a
            // re-push costs one HEAD, not one per blob.
            let present = registry
                .manifest_digest(name, &root.digest.to_string())
                .await?;
            already_present = present.as_ref() == Some(&root.digest);
            if already_present {
                counts.total = blobs.len();
                counts.present = blobs.len();
                eprintln!("{} is already in {name}: nothing to upload", root.digest);
            } else {
                let uploads: Vec<Upload> = blobs.iter().map(|b| Upload::Stored(b)).collect();
                let total = blobs.iter().map(|b| b.size).sum();
                upload_all(settings, registry, &uploads, total, &mut counts).await?;
                let mut manifests: Vec<&Manifest> = Vec::new();
                root.visit(&mut |m| manifests.push(m));
                for m in manifests {
                    if m.digest == root.digest {
                        // Looked up above: it is not there.
                        registry
                            .put_manifest(name, &m.digest.to_string(), &m.bytes, &m.media_type)
                            .await?;
                        pushed += 1;
                    } else {
                        pushed += push_manifest(registry, name, &m.digest, &m.bytes, &m.media_type)
                            .await? as usize;
                    }
                }
            }
            (
                root.digest.clone(),
                root.bytes.clone(),
                root.media_type.clone(),
                root.platforms(),
                pushed,
                tags,
            )
        }
        Root::Docker(d) => {
            let lookups = tag_lookups(settings, registry).await?;
            let config = Sent {
                digest: d.config.digest.clone(),
                size: d.config.size,
            };
            let layers = match reuse_layers(registry, name, d, &lookups).await? {
                Some((tag, layers)) => {
                    eprintln!(
                        "tag {tag} already names this image (config {}): its layers are reused, nothing to upload",
                        d.config.digest.short()
                    );
                    counts.total = 1 + layers.len();
                    counts.present = counts.total;
                    layers
                }
                None => {
                    let (distinct, positions) = distinct_layers(d);
                    let mut uploads = vec![Upload::Stored(&d.config)];
                    uploads.extend(distinct.iter().map(|l| Upload::Docker(l)));
                    let total = d.config.size + distinct.iter().map(|l| l.region.len).sum::<u64>();
                    let sent = upload_all(settings, registry, &uploads, total, &mut counts).await?;
                    positions.iter().map(|&i| sent[1 + i].clone()).collect()
                }
            };
            let bytes = plan::docker_manifest(&config, &layers);
            let digest = Digest::of(&bytes);
            let tags = tag_plan(settings, &lookups, &repo, &digest)?;
            let pushed =
                push_manifest(registry, name, &digest, &bytes, DOCKER_MANIFEST).await? as usize;
            already_present = pushed == 0;
            (
                digest,
                bytes,
                DOCKER_MANIFEST.to_string(),
                d.platform.iter().map(|p| p.to_string()).collect(),
                pushed,
                tags,
            )
        }
    };

    let mut tag_reports = Vec::new();
    for (tag, action) in tags {
        if action == TagAction::Put {
            registry
                .put_manifest(name, &tag, &root_bytes, &media_type)
                .await?;
        }
        let action = if action == TagAction::Put {
            "pushed"
        } else {
            "unchanged"
        };
        eprintln!("tag {tag}: {action}");
        tag_reports.push(TagReport { tag, action });
    }

    Ok(Report {
        image_uri: format!("{}@{}", registry.repository_uri(name), root_digest),
        digest: root_digest,
        repository: name.to_string(),
        registry: registry.ecr_host.clone(),
        media_type,
        source_format: image.format,
        platforms,
        tags: tag_reports,
        blobs: counts,
        manifests_pushed,
        repository_created: repo.created,
        repository_template: repo.template.clone(),
        seconds: started.elapsed().as_secs_f64(),
        dry_run: false,
        already_present,
    })
}

/// What `push` would do, found with reads only: the image's digest (for a
/// docker archive, by compressing its layers into nothing but a hash), whether
/// the registry has the image or each blob, what each tag needs. A tag that
/// could not be moved fails here as it would in the push.
pub async fn plan_only(
    settings: &Settings,
    image: &Image,
    registry: &Registry,
    repo: Found,
) -> Result<(Report, crate::image::Contents), Error> {
    let started = Instant::now();
    let repo = require(settings, registry, repo)?;
    let name = settings.repository.as_str();
    let mut contents = crate::image::Contents::default();
    let lookups = if repo.created {
        vec![]
    } else {
        tag_lookups(settings, registry).await?
    };
    let (digest, media_type, platforms, blobs): (Digest, String, Vec<String>, Vec<(Digest, u64)>) =
        match &image.root {
            Root::Stored(root) => {
                contents = crate::image::Contents::of_stored(root)?;
                (
                    root.digest.clone(),
                    root.media_type.clone(),
                    root.platforms(),
                    root.blobs()
                        .iter()
                        .map(|b| (b.digest.clone(), b.size))
                        .collect(),
                )
            }
            Root::Docker(d) => {
                let config = Sent {
                    digest: d.config.digest.clone(),
                    size: d.config.size,
                };
                let layers = match reuse_layers(registry, name, d, &lookups).await? {
                    Some((_, layers)) => layers,
                    None => {
                        let (distinct, positions) = distinct_layers(d);
                        let mut sent = Vec::with_capacity(distinct.len());
                        for layer in distinct {
                            sent.push(hash_only(layer).await?);
                        }
                        positions.iter().map(|&i| sent[i].clone()).collect()
                    }
                };
                let bytes = plan::docker_manifest(&config, &layers);
                let config_bytes = d.config.region.read_all(
                    crate::image::MAX_MANIFEST,
                    &format!("config {}", d.config.digest),
                )?;
                contents.0.insert(d.config.digest.clone(), config_bytes);
                contents.0.insert(Digest::of(&bytes), bytes.clone());
                let mut seen = std::collections::HashSet::new();
                let blobs = std::iter::once(config)
                    .chain(layers)
                    .filter(|s| seen.insert(s.digest.clone()))
                    .map(|s| (s.digest, s.size))
                    .collect();
                (
                    Digest::of(&bytes),
                    DOCKER_MANIFEST.to_string(),
                    d.platform.iter().map(|p| p.to_string()).collect(),
                    blobs,
                )
            }
        };
    let mut counts = BlobCounts {
        total: blobs.len(),
        ..Default::default()
    };
    let present = !repo.created
        && registry
            .manifest_digest(name, &digest.to_string())
            .await?
            .as_ref()
            == Some(&digest);
    for (d, size) in &blobs {
        if present || (!repo.created && registry.has_blob(name, d).await?) {
            counts.present += 1;
        } else {
            counts.uploaded += 1;
            counts.bytes_uploaded += size;
        }
    }
    let tags = if repo.created {
        settings
            .tags
            .iter()
            .map(|t| (t.clone(), TagAction::Put))
            .collect()
    } else {
        tag_plan(settings, &lookups, &repo, &digest)?
    };
    let tag_reports = tags
        .into_iter()
        .map(|(tag, action)| TagReport {
            tag,
            action: if action == TagAction::Put {
                "would push"
            } else {
                "unchanged"
            },
        })
        .collect();
    let report = Report {
        image_uri: format!("{}@{}", registry.repository_uri(name), digest),
        digest,
        repository: name.to_string(),
        registry: registry.ecr_host.clone(),
        media_type,
        source_format: image.format,
        platforms,
        tags: tag_reports,
        blobs: counts,
        manifests_pushed: 0,
        repository_created: repo.created,
        repository_template: repo.template.clone(),
        seconds: started.elapsed().as_secs_f64(),
        dry_run: true,
        already_present: present,
    };
    Ok((report, contents))
}

/// A docker layer's digest and size as a push would send it, sending nothing.
async fn hash_only(layer: &crate::image::DockerLayer) -> Result<Sent, ImageError> {
    let stream = crate::image::stream::docker_layer(layer, std::sync::Arc::new(|_| {}));
    let (body, verdict) = stream.into_parts();
    body.for_each(|_| async {}).await;
    verdict.await.map_err(|_| ImageError::Read {
        what: format!("layer {}", layer.name),
        source: std::io::Error::other("the compressor stopped"),
    })?
}

/// ECR does not create repositories on push (but for a creation template):
/// without one, fail naming it.
fn require(
    settings: &Settings,
    registry: &Registry,
    repo: Found,
) -> Result<RepoInfo, RegistryError> {
    let repo = repo.map_err(|templates| RegistryError::RepositoryMissing {
        name: settings.repository.clone(),
        registry: registry.ecr_host.clone(),
        templates,
    })?;
    if settings.tags.is_empty() && !settings.dry_run {
        warn_untagged_expiry(&repo);
    }
    Ok(repo)
}

/// A push by digest only into a repository whose lifecycle policy expires
/// untagged images: Lambda re-fetches a function's image, and once the rule
/// deleted it the function goes Failed ("The function is trying to use a
/// deleted image").
fn warn_untagged_expiry(repo: &RepoInfo) {
    let Some(policy) = &repo.lifecycle_policy else {
        return;
    };
    for rule in plan::untagged_expiry(policy) {
        tracing::warn!(
            "pushing by digest only into {}, whose lifecycle policy's {rule}: a Lambda function deployed from this image fails once it is deleted; push with --tag (e.g. the commit SHA) to keep it",
            repo.name
        );
    }
}

/// PUT a manifest by digest unless the registry has it already; true if
/// written.
async fn push_manifest(
    registry: &Registry,
    repository: &str,
    digest: &Digest,
    bytes: &[u8],
    media_type: &str,
) -> Result<bool, RegistryError> {
    if registry
        .manifest_digest(repository, &digest.to_string())
        .await?
        .as_ref()
        == Some(digest)
    {
        return Ok(false);
    }
    registry
        .put_manifest(repository, &digest.to_string(), bytes, media_type)
        .await?;
    Ok(true)
}

/// Every blob, at most `--jobs` at a time; the first failure stops the rest
/// (their uploads are dropped before their final PUT). Returns what was sent,
/// in the order given.
async fn upload_all(
    settings: &Settings,
    registry: &Registry,
    uploads: &[Upload<'_>],
    total: u64,
    counts: &mut BlobCounts,
) -> Result<Vec<Sent>, RegistryError> {
    let progress = Progress::new(total, uploads.len(), settings.quiet);
    let ticker = progress.spawn_ticker();
    let p = &progress;
    let results: Result<Vec<(usize, Sent, BlobOutcome)>, RegistryError> =
        futures_util::stream::iter(uploads.iter().enumerate())
            .map(|(i, up)| async move {
                let (sent, outcome) = registry
                    .push_blob(&settings.repository, *up, &settings.mount_from, p)
                    .await?;
                let what = match up {
                    Upload::Stored(b) => format!("blob {} ({})", b.digest.short(), bytes(b.size)),
                    Upload::Docker(l) => format!(
                        "layer {} → {} ({} gzip)",
                        l.name,
                        sent.digest.short(),
                        bytes(sent.size)
                    ),
                };
                let how = match &outcome {
                    BlobOutcome::Present => "already there".to_string(),
                    BlobOutcome::Mounted { from } => format!("mounted from {from}"),
                    BlobOutcome::Uploaded => "uploaded".to_string(),
                };
                p.blob_done(&format!("{what}: {how}"));
                Ok((i, sent, outcome))
            })
            .buffer_unordered(settings.jobs)
            .try_collect()
            .await;
    progress.stop();
    ticker.abort();
    let mut results = results?;
    results.sort_by_key(|(i, _, _)| *i);
    counts.total += results.len();
    for (_, sent, outcome) in &results {
        match outcome {
            BlobOutcome::Present => counts.present += 1,
            BlobOutcome::Mounted { .. } => counts.mounted += 1,
            BlobOutcome::Uploaded => {
                counts.uploaded += 1;
                counts.bytes_uploaded += sent.size;
            }
        }
    }
    Ok(results.into_iter().map(|(_, s, _)| s).collect())
}

impl Report {
    pub fn summary_line(&self) -> String {
        let b = &self.blobs;
        if self.dry_run {
            return format!(
                "dry run: would push {}: {} to upload ({}), {} already there{}",
                self.image_uri,
                plural(b.uploaded, "blob"),
                bytes(b.bytes_uploaded),
                b.present,
                match (&self.repository_template, self.repository_created) {
                    (Some(t), _) => format!(
                        "; ECR would create the repository from the creation template for '{t}'"
                    ),
                    (None, true) => "; the repository would be created".into(),
                    (None, false) => String::new(),
                }
            );
        }
        format!(
            "pushed {} in {:.1}s: {} uploaded ({}), {} mounted, {} already there; {}",
            self.image_uri,
            self.seconds,
            plural(b.uploaded, "blob"),
            bytes(b.bytes_uploaded),
            b.mounted,
            b.present,
            plural(self.manifests_pushed, "manifest") + " written"
        )
    }

    /// The step summary (GitHub) in markdown.
    pub fn markdown(&self) -> String {
        let tags = if self.tags.is_empty() {
            "—".to_string()
        } else {
            self.tags
                .iter()
                .map(|t| format!("`{}` ({})", t.tag, t.action))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let b = &self.blobs;
        format!(
            "### hoist push\n\n| | |\n|---|---|\n| image | `{}` |\n| digest | `{}` |\n| tags | {} |\n| platforms | {} |\n| blobs | {} uploaded ({}), {} mounted, {} already there |\n| time | {:.1} s |\n",
            self.image_uri,
            self.digest,
            tags,
            if self.platforms.is_empty() {
                "—".into()
            } else {
                self.platforms.join(", ")
            },
            b.uploaded,
            bytes(b.bytes_uploaded),
            b.mounted,
            b.present,
            self.seconds
        )
    }
}
