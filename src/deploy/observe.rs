//! Everything a deploy decision needs, read into one value ([`Observed`]):
//! the function, the alias and the versions behind it, the image (from the
//! registry, or from disk for `ship`'s check before it pushes), the
//! repository policy, the alarms' states, the alias's provisioned
//! concurrency. Reads only — `plan.rs` decides, `execute.rs` writes.
//!
//! One refusal happens here, before the image is read: an image in another
//! region than the function (Lambda pulls only from its own region, and
//! reading the image from that region's registry would fail with an error
//! that says nothing about regions).

use std::time::{SystemTime, UNIX_EPOCH};

use super::alarms::AlarmState;
use super::alarms::CloudWatch;
use super::error::DeployError;
use super::lambda::{self, Alias, Function, Lambda, Provisioned};
use super::platform::{self, Arch, Config, Manifest};
use super::preflight::{self, ImageFacts, Layer};
use super::pull::{PolicyRead, Pull};
use super::record::Runner;
use super::settings::Settings;
use crate::Context;
use crate::error::Error;
use crate::image::{Contents, Digest};
use crate::registry::reference::ImageRef;
use crate::registry::{Ecr, Registry};

/// Largest image config hoist reads (configs are a few KiB).
const MAX_CONFIG: u64 = 4 * 1024 * 1024;

/// The single-platform image that would run.
#[derive(Debug, Clone)]
pub struct Image {
    /// `HOST/REPO@sha256:…` as Lambda takes it.
    pub uri: String,
    pub digest: Digest,
    /// The index it was picked from, when given one.
    pub index_digest: Option<Digest>,
    pub facts: ImageFacts,
    /// The architecture the function will run (`--architecture`, or its own).
    pub target: Arch,
    /// Whether Lambda may pull it: the function and repository, and the
    /// repository policy as read; None when the function's ARN did not say
    /// its account and region.
    pub pull: Option<(Pull, PolicyRead)>,
}

/// The world as one deploy decision sees it.
#[derive(Debug, Clone)]
pub struct Observed {
    /// The function ($LATEST).
    pub function: Function,
    pub alias: Option<Alias>,
    /// The version the alias routes to (its primary).
    pub serving: Option<Function>,
    /// The additional version of a split alias.
    pub additional: Option<Function>,
    pub image: Image,
    /// The `--alarm` alarms' states (those CloudWatch knows).
    pub alarms: Vec<AlarmState>,
    /// The alias's provisioned concurrency; Err: could not be read (why).
    pub provisioned: Result<Option<Provisioned>, String>,
    /// Dry runs: the number PublishVersion would probably give.
    pub next_version: Option<u64>,
    /// Unix seconds, when this was read.
    pub now: u64,
    pub me: Runner,
}

pub struct Observer<'a> {
    pub ctx: &'a Context,
    pub lambda: &'a Lambda,
    pub cloudwatch: &'a CloudWatch,
    pub settings: &'a Settings,
    pub image: &'a ImageRef,
    /// The image's manifests and configs on disk (`ship` before its push).
    pub local: Option<&'a Contents>,
    pub dry_run: bool,
}

impl Observer<'_> {
    /// Read everything. `image` is what an earlier round read of the image
    /// (it does not change while hoist waits); None reads it.
    pub async fn observe(&self, image: Option<Image>, me: &Runner) -> Result<Observed, Error> {
        let (function, alias) = tokio::join!(
            self.lambda.get(None),
            self.lambda.alias(&self.settings.alias)
        );
        let (function, alias) = (function?, alias?);
        let image = match image {
            Some(i) => i,
            None => self.read_image(&function).await?,
        };
        let primary = alias.as_ref().map(|a| a.version.as_str());
        let extra = alias.as_ref().and_then(|a| a.split()).map(|(v, _)| v);
        let (serving, additional, alarms, provisioned, highest) = tokio::join!(
            async {
                match primary {
                    Some(v) => self.lambda.get(Some(v)).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                match extra {
                    Some(v) => self.lambda.get(Some(v)).await.map(Some),
                    None => Ok(None),
                }
            },
            async {
                if self.settings.alarms.is_empty() {
                    Ok(vec![])
                } else {
                    self.cloudwatch.states(&self.settings.alarms).await
                }
            },
            self.provisioned(primary),
            async {
                if self.dry_run {
                    self.lambda.latest_version().await.map(Some)
                } else {
                    Ok(None)
                }
            },
        );
        Ok(Observed {
            function,
            alias,
            serving: serving?,
            additional: additional?,
            image,
            alarms: alarms?,
            provisioned,
            next_version: highest?.map(|h| h.map_or(1, |n| n + 1)),
            now: unix_now(),
            me: me.clone(),
        })
    }

    /// The alias's provisioned concurrency (none on an alias that follows
    /// $LATEST: Lambda allows none there). A failure to read it is not the
    /// deploy's failure: the plan warns.
    async fn provisioned(&self, primary: Option<&str>) -> Result<Option<Provisioned>, String> {
        match primary {
            Some(v) if v != super::lambda::LATEST => self
                .lambda
                .provisioned(&self.settings.alias)
                .await
                .map_err(|e| e.to_string()),
            _ => Ok(None),
        }
    }

    /// The image (after the region check), and whether Lambda may pull it.
    async fn read_image(&self, function: &Function) -> Result<Image, Error> {
        let image = self.image;
        if let Some(p) = preflight::region(image.region(), &function.facts) {
            return Err(DeployError::Preflight {
                function: self.settings.function.clone(),
                problems: vec![p],
            }
            .into());
        }
        let sdk = self.ctx.aws().await?;
        let endpoint = match (&self.ctx.registry_endpoint, &image.registry) {
            (Some(e), _) => Some(e.clone()),
            // An image URI in another registry (another account): read it there.
            (None, Some(host)) if image.account().is_some() => {
                Some(crate::registry::parse_endpoint(&format!("https://{host}"))?)
            }
            _ => None,
        };
        let masker = self.ctx.ci.clone();
        let registry = Registry::connect(
            Ecr::new(sdk),
            endpoint,
            self.ctx.net.clone(),
            Default::default(),
            Box::new(move |s: &str| masker.mask(s)),
        )
        .await
        .map_err(DeployError::from)?;
        let target = self
            .settings
            .architecture
            .unwrap_or(function.facts.architecture);
        let host = image
            .registry
            .clone()
            .unwrap_or_else(|| registry.ecr_host.clone());
        let located = ImageRef {
            registry: Some(host.clone()),
            ..image.clone()
        };
        let (digest, index_digest, facts) =
            read_image(&registry, &located, target, self.local).await?;
        let repo_account = located
            .account()
            .unwrap_or(&function.facts.account)
            .to_string();
        let pull = match Pull::new(&function.arn, &repo_account, &image.repository) {
            Some(p) => {
                let read = repository_policy(sdk, &repo_account, &image.repository).await;
                Some((p, read))
            }
            None => None,
        };
        Ok(Image {
            // Lambda takes the standard host only (it refuses ecr-fips
            // URIs), whatever host the registry traffic used.
            uri: format!(
                "{}/{}@{digest}",
                crate::registry::host::canonical(&host),
                image.repository
            ),
            digest,
            index_digest,
            facts,
            target,
            pull,
        })
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// The digest a version runs (see [`lambda::digest_of`]).
pub fn digest(f: Option<&Function>) -> Option<Digest> {
    f.and_then(lambda::digest_of)
}

/// Read what would run: the manifest, the child for `arch` when it is an
/// index, and the config.
async fn read_image(
    registry: &Registry,
    image: &ImageRef,
    arch: Arch,
    local: Option<&Contents>,
) -> Result<(Digest, Option<Digest>, ImageFacts), DeployError> {
    let repo = &image.repository;
    if local.is_none()
        && registry
            .manifest_digest(repo, &image.digest.to_string())
            .await?
            .is_none()
    {
        return Err(DeployError::refused(
            format!("{image} is not in the registry"),
            "push it first (hoist push prints the digest), and check the repository name and --region",
        ));
    }
    let fetch = |d: Digest| async move {
        let bytes = match local.and_then(|c| c.get(&d)) {
            Some(b) => b.to_vec(),
            None => registry.get_manifest(repo, &d.to_string()).await?.0,
        };
        if Digest::of(&bytes) != d {
            return Err(DeployError::Image(format!(
                "the registry's manifest for {repo}@{d} does not match its digest"
            )));
        }
        Manifest::parse(&bytes).map_err(|e| DeployError::Image(format!("{repo}@{d}: {e}")))
    };
    let (digest, index, config, layers) = match fetch(image.digest.clone()).await? {
        Manifest::Index(children) => {
            let child = platform::pick_child(&children, arch)
                .map_err(|present| no_child(image, arch, &present))?;
            match fetch(child.clone()).await? {
                Manifest::Image { config, layers, .. } => {
                    (child, Some(image.digest.clone()), config, layers)
                }
                Manifest::Index(_) => {
                    return Err(DeployError::Image(format!(
                        "{repo}@{child} is an index inside an index; Lambda needs a single-platform image"
                    )));
                }
            }
        }
        Manifest::Image { config, layers, .. } => (image.digest.clone(), None, config, layers),
    };
    let config_digest: Digest = config
        .digest
        .parse()
        .map_err(|e| DeployError::Image(format!("{repo}@{digest}: config digest: {e}")))?;
    let bytes = match local.and_then(|c| c.get(&config_digest)) {
        Some(b) => b.to_vec(),
        None => registry.get_blob(repo, &config_digest, MAX_CONFIG).await?,
    };
    let parsed =
        Config::parse(&bytes).map_err(|e| DeployError::Image(format!("{repo}@{digest}: {e}")))?;
    if index.is_some() {
        tracing::info!(
            "{image} is an index: deploying its linux/{} image {digest}",
            arch.oci()
        );
    }
    let facts = ImageFacts {
        account: image.account().map(str::to_string),
        region: image.region().map(str::to_string),
        layers: layers
            .iter()
            .map(|l| Layer {
                media_type: l.media_type.clone().unwrap_or_default(),
                size: l.size,
            })
            .collect(),
        config_size: config.size,
        config: parsed,
    };
    Ok((digest, index, facts))
}

fn no_child(image: &ImageRef, arch: Arch, present: &[String]) -> DeployError {
    DeployError::refused(
        format!(
            "{image} is a multi-platform index with no linux/{} image for a {} function (it holds: {})",
            arch.oci(),
            arch.lambda(),
            if present.is_empty() {
                "no runnable platforms".into()
            } else {
                present.join(", ")
            }
        ),
        "build the image for the function's platform too, or pass --architecture to run the function on one the index holds",
    )
}

/// The repository's policy, for the pull check (the ECR API, in the
/// repository's account).
async fn repository_policy(
    sdk: &aws_config::SdkConfig,
    account: &str,
    repository: &str,
) -> PolicyRead {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let ecr = aws_sdk_ecr::Client::new(sdk);
    match ecr
        .get_repository_policy()
        .registry_id(account)
        .repository_name(repository)
        .send()
        .await
    {
        Ok(p) => PolicyRead::Text(p.policy_text().map(str::to_string)),
        // No policy; or (a `ship --dry-run` with --create-repository) no
        // repository yet, which the push creates without one.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_repository_policy_not_found_exception()
                    || s.is_repository_not_found_exception()
            }) =>
        {
            PolicyRead::Text(None)
        }
        Err(e) => PolicyRead::Unreadable {
            denied: matches!(
                e.code(),
                Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
            ),
            why: crate::aws::describe(&e),
        },
    }
}
