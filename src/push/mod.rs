//! The push stage: an image from disk to an ECR repository. Blobs first
//! (HEAD, mount or upload, in parallel), then child manifests, then the index,
//! then the tags — so the registry never holds a manifest without its blobs.
//!
//! [`prepare`] reads everything a push needs — the image, the registry's
//! password, the repository — and writes nothing; [`Prepared::execute`]
//! pushes, [`Prepared::dry`] says what a push would do, and
//! [`Prepared::preflight`] hands `hoist ship` what the deploy's checks need
//! before anything is written.

mod layers;
pub mod plan;
mod report;
mod repository;
mod settings;
mod tags;
mod upload;

use std::time::Instant;

use crate::error::Error;
use crate::image::stream::Sent;
use crate::image::{
    Contents, DOCKER_MANIFEST, Digest, DockerImage, Image, ImageError, Manifest, Root,
};
use crate::registry::host::EcrHost;
use crate::registry::{Ecr, Pushing, Registry, RepoInfo, Upload};
use plan::TagAction;
pub use report::{BlobCounts, Report, TagReport};
pub use repository::Found;
pub use settings::Settings;

/// `hoist push`: read and check the image before any call to AWS (bad input
/// fails fast and touches nothing), then push it.
pub async fn run(ctx: &crate::Context, settings: &Settings) -> Result<Report, Error> {
    prepare(ctx, settings).await?.execute().await
}

/// `ship --dry-run`: the same reads as a push — the image, the repository,
/// which blobs and tags the registry has — and no write. The report says what
/// a push would do; the image's manifests and configs come back too, for the
/// deploy's preflight.
pub async fn plan(ctx: &crate::Context, settings: &Settings) -> Result<(Report, Contents), Error> {
    prepare(ctx, settings).await?.dry().await
}

/// Everything a push needs, read; nothing written yet.
pub struct Prepared {
    settings: Settings,
    image: Image,
    registry: Registry,
    ecr: Ecr,
    repo: Found,
}

/// Open the image, get the registry's password and look the repository up
/// (the last two at once). Reads only.
pub async fn prepare(ctx: &crate::Context, settings: &Settings) -> Result<Prepared, Error> {
    let image = open(settings).await?;
    let sdk = ctx.aws().await?;
    // A central registry (`--repository` as a full URI): its account and
    // region for the ECR API, its host as named for the registry traffic,
    // its standard host for the image URI. The password GetAuthorizationToken gives is good for every
    // registry the identity may use.
    let ecr = match &settings.registry {
        Some(host) => Ecr::for_registry(sdk, host),
        None => Ecr::new(sdk),
    };
    let endpoint = registry_endpoint(settings.registry.as_ref(), ctx.registry_endpoint.as_ref())?;
    let masker = ctx.ci.clone();
    let mask = Box::new(move |s: &str| masker.mask(s));
    let (registry, repo) = tokio::join!(
        Registry::connect(
            ecr.clone(),
            endpoint,
            ctx.net.clone(),
            Default::default(),
            mask
        ),
        repository::look_up(settings, &ecr)
    );
    let mut registry = registry?;
    if let Some(host) = &settings.registry {
        registry.ecr_host = host.canonical();
    }
    Ok(Prepared {
        settings: settings.clone(),
        image,
        registry,
        ecr,
        repo: repo?,
    })
}

/// Where the registry traffic goes: `--registry-endpoint` when given; else
/// the host `--repository` named, in the form it was named — a FIPS or
/// dual-stack host is kept (only the image URI handed to Lambda takes the
/// standard form, since Lambda refuses ecr-fips URIs); else (None) the
/// endpoint GetAuthorizationToken names.
fn registry_endpoint(
    named: Option<&EcrHost>,
    given: Option<&url::Url>,
) -> Result<Option<url::Url>, crate::error::ConfigError> {
    match (given, named) {
        (Some(e), _) => Ok(Some(e.clone())),
        (None, Some(host)) => url::Url::parse(&format!("https://{}", host.name()))
            .map(Some)
            .map_err(|e| crate::error::ConfigError::new("bad registry URL").source(e)),
        (None, None) => Ok(None),
    }
}

/// Open SOURCE (off the async threads: it reads and may decompress).
async fn open(settings: &Settings) -> Result<Image, ImageError> {
    let (source, reference) = (settings.source.clone(), settings.reference.clone());
    tokio::task::spawn_blocking(move || Image::open(&source, reference.as_deref()))
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// What a push wrote (or found there) for the image's root.
struct Pushed {
    digest: Digest,
    bytes: Vec<u8>,
    media_type: String,
    platforms: Vec<String>,
    manifests_pushed: usize,
    tags: Vec<(String, TagAction)>,
    already_present: bool,
    counts: BlobCounts,
}

impl Prepared {
    fn name(&self) -> &str {
        &self.settings.repository
    }

    /// The registry host of the image, as the stages after the push are to
    /// reach it: the host `--repository` named, in its own form (FIPS,
    /// dual-stack), else ECR's own. Image URIs, the report's included,
    /// name the standard host.
    pub fn registry_host(&self) -> String {
        match &self.settings.registry {
            Some(host) => host.name(),
            None => self.registry.ecr_host.clone(),
        }
    }

    /// The push. The repository is created first when `--create-repository`
    /// is to make it — the first write; everything before was read.
    pub async fn execute(&self) -> Result<Report, Error> {
        let started = Instant::now();
        let mut repo = self.repo.require(&self.settings, &self.registry, true)?;
        if let Some(made) = self.repo.ensure(&self.ecr).await? {
            repo = made;
        }
        crate::output::say(&format!(
            "pushing {} to {}",
            self.image.describe(),
            self.registry.repository_uri(self.name())
        ));
        let pushed = match &self.image.root {
            Root::Stored(root) => self.push_stored(root, &repo).await?,
            Root::Docker(d) => self.push_docker(d, &repo).await?,
        };
        let tags = tags::write(
            &self.registry,
            self.name(),
            pushed.tags,
            (&pushed.bytes, &pushed.media_type),
        )
        .await?;
        settings::write_digest(self.settings.digest_file.as_deref(), &pushed.digest)?;
        Ok(Report {
            image_uri: format!(
                "{}@{}",
                self.registry.repository_uri(self.name()),
                pushed.digest
            ),
            digest: pushed.digest,
            repository: self.name().to_string(),
            registry: self.registry.ecr_host.clone(),
            media_type: pushed.media_type,
            source_format: self.image.format,
            platforms: pushed.platforms,
            tags,
            blobs: pushed.counts,
            manifests_pushed: pushed.manifests_pushed,
            repository_created: repo.created,
            repository_template: repo.template.clone(),
            seconds: started.elapsed().as_secs_f64(),
            dry_run: false,
            already_present: pushed.already_present,
        })
    }

    /// An image whose manifests are stored as they are (a layout or an OCI
    /// archive): its blobs, its child manifests, then itself.
    async fn push_stored(&self, root: &Manifest, repo: &RepoInfo) -> Result<Pushed, Error> {
        let name = self.name();
        let lookups = tags::look_up(&self.settings, &self.registry).await?;
        let tags = tags::plan(
            &self.settings,
            &lookups,
            repo,
            &Pushing::Manifest(root.digest.clone()),
        )?;
        let blobs = root.blobs();
        let mut counts = BlobCounts::default();
        let mut pushed = 0;
        // A registry accepts a manifest only once every blob it names is
        // there, so an image whose manifest is present is complete: a
        // re-push costs one HEAD, not one per blob.
        let already_present = self
            .registry
            .manifest_digest(name, &root.digest.to_string())
            .await?
            .as_ref()
            == Some(&root.digest);
        if already_present {
            counts.total = blobs.len();
            counts.present = blobs.len();
            crate::output::say(&format!(
                "{} is already in {name}: nothing to upload",
                root.digest
            ));
        } else {
            let uploads: Vec<Upload> = blobs.iter().map(|b| Upload::Stored(b)).collect();
            let total = blobs.iter().map(|b| b.size).sum();
            self.upload(&uploads, total, &mut counts).await?;
            let mut manifests: Vec<&Manifest> = Vec::new();
            root.visit(&mut |m| manifests.push(m));
            for m in manifests {
                if m.digest == root.digest {
                    // Looked up above: it is not there.
                    self.registry
                        .put_manifest(name, &m.digest.to_string(), &m.bytes, &m.media_type)
                        .await?;
                    pushed += 1;
                } else {
                    pushed += upload::push_manifest(
                        &self.registry,
                        name,
                        &m.digest,
                        &m.bytes,
                        &m.media_type,
                    )
                    .await? as usize;
                }
            }
        }
        Ok(Pushed {
            digest: root.digest.clone(),
            bytes: root.bytes.clone(),
            media_type: root.media_type.clone(),
            platforms: root.platforms(),
            manifests_pushed: pushed,
            tags,
            already_present,
            counts,
        })
    }

    /// A `docker save` image: its config and layers (compressed on the way,
    /// or reused from a manifest of this image under one of the tags), then
    /// the manifest hoist writes for it.
    async fn push_docker(&self, d: &DockerImage, repo: &RepoInfo) -> Result<Pushed, Error> {
        let name = self.name();
        let (lookups, reused) = self.docker_tags(d, repo).await?;
        let config = Sent {
            digest: d.config.digest.clone(),
            size: d.config.size,
        };
        let mut counts = BlobCounts::default();
        let layers = match reused {
            Some((tag, layers)) => {
                crate::output::say(&format!(
                    "tag {tag} already names this image (config {}): its layers are reused, nothing to upload",
                    d.config.digest.short()
                ));
                counts.total = 1 + layers.len();
                counts.present = counts.total;
                layers
            }
            None => {
                let (distinct, positions) = layers::distinct_layers(d);
                let mut uploads = vec![Upload::Stored(&d.config)];
                uploads.extend(distinct.iter().map(|l| Upload::Docker(l)));
                let total = d.config.size + distinct.iter().map(|l| l.region.len).sum::<u64>();
                let sent = self.upload(&uploads, total, &mut counts).await?;
                positions.iter().map(|&i| sent[1 + i].clone()).collect()
            }
        };
        let bytes = plan::docker_manifest(&config, &layers);
        let digest = Digest::of(&bytes);
        let tags = tags::plan(
            &self.settings,
            &lookups,
            repo,
            &Pushing::Manifest(digest.clone()),
        )?;
        let pushed = upload::push_manifest(&self.registry, name, &digest, &bytes, DOCKER_MANIFEST)
            .await? as usize;
        Ok(Pushed {
            digest,
            bytes,
            media_type: DOCKER_MANIFEST.to_string(),
            platforms: d.platform.iter().map(|p| p.to_string()).collect(),
            manifests_pushed: pushed,
            tags,
            already_present: pushed == 0,
            counts,
        })
    }

    /// A `docker save` archive's tags, looked up and checked before any
    /// blob is sent, though the digest of the manifest hoist writes is
    /// known only once the layers are compressed: when a tag names a
    /// manifest of this very image in hoist's form its layers are reused
    /// (see [`plan::reusable_layers`]), and the manifest, its digest and
    /// every tag's fate are known now; when none does, a tag of an
    /// immutable repository that names anything is a conflict already —
    /// that manifest cannot be the one hoist writes. (A mutable tag is
    /// decided again with the real digest, before the manifest is put.)
    /// Returns the lookups and the reused layers.
    async fn docker_tags(&self, d: &DockerImage, repo: &RepoInfo) -> Result<DockerTags, Error> {
        let lookups = tags::look_up(&self.settings, &self.registry).await?;
        let reused = layers::reuse_layers(&self.registry, self.name(), d, &lookups).await?;
        let pushing = match &reused {
            Some((_, layers)) => {
                let config = Sent {
                    digest: d.config.digest.clone(),
                    size: d.config.size,
                };
                Pushing::Manifest(Digest::of(&plan::docker_manifest(&config, layers)))
            }
            None => Pushing::DockerConfig(d.config.digest.clone()),
        };
        tags::plan(&self.settings, &lookups, repo, &pushing)?;
        Ok((lookups, reused))
    }

    async fn upload(
        &self,
        uploads: &[Upload<'_>],
        total: u64,
        counts: &mut BlobCounts,
    ) -> Result<Vec<Sent>, crate::registry::RegistryError> {
        upload::upload_all(&self.settings, &self.registry, uploads, total, counts).await
    }

    /// What `execute` would do, found with reads only: the image's digest
    /// (for a docker archive, by compressing its layers into nothing but a
    /// hash), whether the registry has the image or each blob, what each tag
    /// needs. A tag that could not be moved fails here as it would in the
    /// push.
    pub async fn dry(&self) -> Result<(Report, Contents), Error> {
        let started = Instant::now();
        let repo = self.repo.require(&self.settings, &self.registry, false)?;
        let exists = matches!(self.repo, Found::Exists(_));
        let lookups = if exists {
            tags::look_up(&self.settings, &self.registry).await?
        } else {
            vec![]
        };
        let described = match &self.image.root {
            Root::Stored(root) => described_stored(root)?,
            Root::Docker(d) => self.described_docker(d, &lookups).await?,
        };
        let (counts, present) = self.count(&described, exists).await?;
        let tags = if exists {
            tags::plan(
                &self.settings,
                &lookups,
                &repo,
                &Pushing::Manifest(described.digest.clone()),
            )?
        } else {
            self.settings
                .tags
                .iter()
                .map(|t| (t.clone(), TagAction::Put))
                .collect()
        };
        settings::write_digest(self.settings.digest_file.as_deref(), &described.digest)?;
        let report = Report {
            image_uri: format!(
                "{}@{}",
                self.registry.repository_uri(self.name()),
                described.digest
            ),
            digest: described.digest,
            repository: self.name().to_string(),
            registry: self.registry.ecr_host.clone(),
            media_type: described.media_type,
            source_format: self.image.format,
            platforms: described.platforms,
            tags: tags::planned(tags),
            blobs: counts,
            manifests_pushed: 0,
            repository_created: repo.created,
            repository_template: repo.template.clone(),
            seconds: started.elapsed().as_secs_f64(),
            dry_run: true,
            already_present: present,
        };
        Ok((report, described.contents))
    }

    /// A docker image as a push would write it: its layers' digests by
    /// hashing their compressed bytes (or from a manifest of this image
    /// under one of the tags).
    async fn described_docker(
        &self,
        d: &DockerImage,
        lookups: &[(String, Option<Digest>)],
    ) -> Result<Described, Error> {
        let config = Sent {
            digest: d.config.digest.clone(),
            size: d.config.size,
        };
        let layers = match layers::reuse_layers(&self.registry, self.name(), d, lookups).await? {
            Some((_, layers)) => layers,
            None => {
                let (distinct, positions) = layers::distinct_layers(d);
                let mut sent = Vec::with_capacity(distinct.len());
                for layer in distinct {
                    sent.push(layers::hash_only(layer).await?);
                }
                positions.iter().map(|&i| sent[i].clone()).collect()
            }
        };
        let bytes = plan::docker_manifest(&config, &layers);
        let mut seen = std::collections::HashSet::new();
        let blobs = std::iter::once(config)
            .chain(layers)
            .filter(|s| seen.insert(s.digest.clone()))
            .map(|s| (s.digest, s.size))
            .collect();
        Ok(Described {
            digest: Digest::of(&bytes),
            media_type: DOCKER_MANIFEST.to_string(),
            platforms: d.platform.iter().map(|p| p.to_string()).collect(),
            blobs,
            contents: docker_contents(d, bytes)?,
        })
    }

    /// Which blobs a push would upload: none when the image is there.
    async fn count(&self, d: &Described, exists: bool) -> Result<(BlobCounts, bool), Error> {
        let mut counts = BlobCounts {
            total: d.blobs.len(),
            ..Default::default()
        };
        let present = exists
            && self
                .registry
                .manifest_digest(self.name(), &d.digest.to_string())
                .await?
                .as_ref()
                == Some(&d.digest);
        for (digest, size) in &d.blobs {
            if present || (exists && self.registry.has_blob(self.name(), digest).await?) {
                counts.present += 1;
            } else {
                counts.uploaded += 1;
                counts.bytes_uploaded += size;
            }
        }
        Ok((counts, present))
    }

    /// What the deploy's checks need of the image before anything is
    /// written, read from disk without a pass over the layers: the
    /// manifests and configs, and the digest they are filed under. For a
    /// `docker save` archive the manifest is the one hoist will write, with
    /// each layer's uncompressed size standing in for its compressed one
    /// (an upper bound, which is what Lambda's 10 GB limit is about) and a
    /// digest of its own: the real one is known once the layers are
    /// compressed. The repository must exist, or be about to, and a tag
    /// that cannot move refuses the push here already — for a docker
    /// archive too, as far as it can be told before the layers are
    /// compressed (see [`Prepared::docker_tags`]).
    pub async fn preflight(&self) -> Result<(Digest, Contents), Error> {
        let repo = self.repo.require(&self.settings, &self.registry, false)?;
        // A repository that does not exist yet has no tags.
        let exists = matches!(self.repo, Found::Exists(_));
        match &self.image.root {
            Root::Stored(root) => {
                if exists {
                    let lookups = tags::look_up(&self.settings, &self.registry).await?;
                    tags::plan(
                        &self.settings,
                        &lookups,
                        &repo,
                        &Pushing::Manifest(root.digest.clone()),
                    )?;
                }
                Ok((root.digest.clone(), Contents::of_stored(root)?))
            }
            Root::Docker(d) => {
                if exists {
                    self.docker_tags(d, &repo).await?;
                }
                let config = Sent {
                    digest: d.config.digest.clone(),
                    size: d.config.size,
                };
                let layers: Vec<Sent> = d
                    .layers
                    .iter()
                    .map(|l| Sent {
                        digest: l.diff_id.clone(),
                        size: l.region.len,
                    })
                    .collect();
                let bytes = plan::docker_manifest(&config, &layers);
                Ok((Digest::of(&bytes), docker_contents(d, bytes)?))
            }
        }
    }
}

/// What each `--tag` names now, and the layers a manifest of this image
/// under one of them lends a `docker save` archive (and the tag it is under).
type DockerTags = (Vec<(String, Option<Digest>)>, Option<(String, Vec<Sent>)>);

/// What a plan knows of the image's root.
struct Described {
    digest: Digest,
    media_type: String,
    platforms: Vec<String>,
    blobs: Vec<(Digest, u64)>,
    contents: Contents,
}

fn described_stored(root: &Manifest) -> Result<Described, Error> {
    Ok(Described {
        digest: root.digest.clone(),
        media_type: root.media_type.clone(),
        platforms: root.platforms(),
        blobs: root
            .blobs()
            .iter()
            .map(|b| (b.digest.clone(), b.size))
            .collect(),
        contents: Contents::of_stored(root)?,
    })
}

/// A docker image's manifest (`bytes`) and config, filed by digest.
fn docker_contents(d: &DockerImage, manifest: Vec<u8>) -> Result<Contents, ImageError> {
    let mut contents = Contents::default();
    let config = d.config.region.read_all(
        crate::image::MAX_MANIFEST,
        &format!("config {}", d.config.digest),
    )?;
    contents.0.insert(d.config.digest.clone(), config);
    contents.0.insert(Digest::of(&manifest), manifest);
    Ok(contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The registry traffic goes where the user said: `--registry-endpoint`
    /// first, then the host of a full `--repository` URI as given (a FIPS
    /// or dual-stack host is never swapped for the standard one), else
    /// wherever GetAuthorizationToken points.
    #[test]
    fn where_the_registry_traffic_goes() {
        let host = |h: &str| EcrHost::parse(h).unwrap();
        let url = |u: &str| url::Url::parse(u).unwrap();
        let fips = host("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com");
        let dual = host("123456789012.dkr-ecr.eu-west-1.on.aws");
        let fips_dual = host("123456789012.dkr-ecr-fips.us-east-1.on.aws");
        let standard = host("123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        let proxy = url("https://vpce-0123.dkr.ecr.us-east-1.vpce.amazonaws.com");
        let table: [(Option<&EcrHost>, Option<&url::Url>, Option<&str>); 7] = [
            (None, None, None),
            (None, Some(&proxy), Some(proxy.as_str())),
            (
                Some(&fips),
                None,
                Some("https://123456789012.dkr.ecr-fips.us-east-1.amazonaws.com/"),
            ),
            (
                Some(&dual),
                None,
                Some("https://123456789012.dkr-ecr.eu-west-1.on.aws/"),
            ),
            (
                Some(&fips_dual),
                None,
                Some("https://123456789012.dkr-ecr-fips.us-east-1.on.aws/"),
            ),
            (
                Some(&standard),
                None,
                Some("https://123456789012.dkr.ecr.eu-west-1.amazonaws.com/"),
            ),
            (Some(&fips), Some(&proxy), Some(proxy.as_str())),
        ];
        for (named, given, want) in table {
            let got = registry_endpoint(named, given).unwrap();
            assert_eq!(
                got.as_ref().map(url::Url::as_str),
                want,
                "{named:?} {given:?}"
            );
        }
    }
}
