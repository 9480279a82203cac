//! The deploy stage: make a Lambda function run exactly the pushed image (by
//! digest), publish a version, and move an alias to it — at once, or step by
//! step with the alarms watched and automatic rollback.
//!
//! Order, so that nothing is written until everything that can be checked
//! has been: read the function, the alias and the image (registry) → the
//! preflight (pure) → idempotency, routing and role checks → the alarms'
//! states → [dry run stops here] → UpdateFunctionCode (guarded by RevisionId)
//! → wait for LastUpdateStatus → PublishVersion (guarded by CodeSha256 and
//! RevisionId) → smoke invoke → shift.

pub mod alarms;
pub mod error;
pub mod lambda;
pub mod plan;
pub mod platform;
pub mod preflight;
pub mod provenance;
pub mod pull;
pub mod settings;
pub mod shift;
pub mod states;
pub mod strategy;

use std::time::Instant;

use serde::Serialize;

use crate::Context;
use crate::error::{Class, Error};
use crate::image::Digest;
use crate::registry::reference::ImageRef;
use crate::registry::{Ecr, Registry};
pub use error::DeployError;
use lambda::Lambda;
use plan::{Start, StartProblem, Watch, routing};
use platform::{Arch, Config, Manifest};
use preflight::{ImageFacts, Layer};
pub use settings::{Rollback, Settings};
use strategy::{Strategy, show};

/// How a deploy ended.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum End {
    Deployed,
    /// The alias already served exactly this digest: nothing was written.
    AlreadyServing,
    DryRun,
    /// An alarm (or the Errors metric) fired during a bake: the alias went
    /// back to the previous version.
    RolledBack {
        reason: String,
        alarm: Option<String>,
    },
    /// SIGINT/SIGTERM during the shift: the previous routing was restored.
    Interrupted {
        signal: &'static str,
        exit_code: u8,
    },
}

/// One line of the timeline: seconds since the deploy began, and what.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Event {
    pub at_secs: f64,
    pub what: String,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    #[serde(flatten)]
    pub end: End,
    pub function: String,
    pub alias: String,
    pub alias_arn: String,
    pub image_uri: String,
    /// The single-platform image deployed (a child, when given an index).
    pub digest: Digest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index_digest: Option<Digest>,
    pub architecture: &'static str,
    pub strategy: Strategy,
    /// The version now serving (the new one, or the one already serving it).
    pub version: Option<String>,
    pub previous_version: Option<String>,
    /// The alias's routing at the end, e.g. `5=100%`.
    pub routing: String,
    pub alarms: Vec<String>,
    pub plan: Vec<String>,
    pub timeline: Vec<Event>,
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// Largest image config hoist reads (configs are a few KiB).
const MAX_CONFIG: u64 = 4 * 1024 * 1024;

/// `hoist deploy`. Errors before the shift leave the alias untouched; the
/// shift itself ends in a report (deployed, rolled back, interrupted).
pub async fn run(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    dry_run: bool,
) -> Result<Report, Error> {
    deploy(ctx, image, settings, dry_run, None).await
}

/// `ship --dry-run` and ship's check before it pushes: the plan for an image
/// read from disk (`contents`: its manifests and configs), which need not be
/// in the registry yet.
pub async fn plan(
    ctx: &Context,
    image: &ImageRef,
    settings: &Settings,
    contents: &crate::image::Contents,
) -> Result<Report, Error> {
    deploy(ctx, image, settings, true, Some(contents)).await
}

async fn deploy(
    ctx: &Context,
    image: &ImageRef,
    opts: &Settings,
    dry_run: bool,
    local: Option<&crate::image::Contents>,
) -> Result<Report, Error> {
    let started = Instant::now();
    let quiet = ctx.quiet;
    let (function_name, alias_name) = (opts.function.clone(), opts.alias.clone());
    let strategy = opts.strategy;
    let timeout = opts.timeout;
    let smoke = opts.smoke.as_ref().map(|s| s.payload.clone());
    let sdk = ctx.aws().await?;
    let lambda = Lambda::new(sdk, &function_name, quiet);
    let cloudwatch = alarms::CloudWatch::new(sdk);
    let say = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };

    // Reads. The function and the alias first: the region check needs the
    // function, and comes before hoist reads the image from a registry.
    let (function, alias) = tokio::join!(lambda.get(None), lambda.alias(&alias_name));
    let (function, alias) = (function?, alias?);
    if let Some(p) = preflight::region(image.region(), &function.facts) {
        return Err(DeployError::Preflight {
            function: function_name.clone(),
            problems: vec![p],
        }
        .into());
    }
    let endpoint = match (&ctx.registry_endpoint, image.account()) {
        (Some(e), _) => Some(e.clone()),
        // An image URI in another registry (another account): read it there.
        (None, Some(_)) => Some(crate::registry::parse_endpoint(&format!(
            "https://{}",
            image
                .registry
                .as_deref()
                .expect("an account implies a host")
        ))?),
        (None, None) => None,
    };
    let masker = ctx.ci.clone();
    let registry = Registry::connect(
        Ecr::new(sdk),
        endpoint,
        ctx.net.clone(),
        Default::default(),
        Box::new(move |s: &str| masker.mask(s)),
    )
    .await
    .map_err(DeployError::from)?;
    let target = opts.architecture.unwrap_or(function.facts.architecture);
    let host = image
        .registry
        .clone()
        .unwrap_or_else(|| registry.ecr_host.clone());
    let located = ImageRef {
        registry: Some(host.clone()),
        ..image.clone()
    };
    let (digest, index_digest, facts) = read_image(&registry, &located, target, local).await?;
    // Lambda takes the standard host only (it refuses ecr-fips URIs), whatever
    // host the registry traffic used.
    let image_uri = format!(
        "{}/{}@{digest}",
        crate::registry::host::canonical(&host),
        image.repository
    );

    // The preflight: the image against the function, and whether Lambda may
    // pull it from the repository (its policy, read with the ECR API).
    let mut problems = preflight::check(&facts, &function.facts, opts.architecture);
    let mut warnings = Vec::new();
    let mut checks = Vec::new();
    if let Some(r) = &facts.region {
        checks.push(format!(
            "region: the image and function {function_name} are both in {r}"
        ));
    }
    let repo_account = located
        .account()
        .unwrap_or(&function.facts.account)
        .to_string();
    match pull::Pull::new(&function.arn, &repo_account, &image.repository) {
        Some(p) => {
            let read = repository_policy(sdk, &repo_account, &image.repository).await;
            let found = pull::check(&p, &read);
            checks.push(found.line);
            problems.extend(found.problem);
            warnings.extend(found.warning);
        }
        None => warnings.push(format!(
            "could not tell the function's account and region from its ARN ({}), so whether Lambda may pull the image was not checked",
            outside(&function.arn)
        )),
    }
    if !problems.is_empty() {
        return Err(DeployError::Preflight {
            function: function_name.clone(),
            problems,
        }
        .into());
    }
    for w in &warnings {
        tracing::warn!("{w}");
    }

    // Where the alias starts, and is there anything to do?
    let serving = match &alias {
        Some(a) => Some(lambda.get(Some(&a.version)).await?),
        None => None,
    };
    let serving_digest = serving.as_ref().and_then(lambda::digest_of);
    let start = plan::start(alias.as_ref(), serving_digest.as_ref(), &digest, opts.force);
    let mut report = Report {
        end: End::Deployed,
        function: function_name.clone(),
        alias: alias_name.clone(),
        alias_arn: alias
            .as_ref()
            .map(|a| a.arn.clone())
            .unwrap_or_else(|| format!("{}:{}", function.arn, alias_name)),
        image_uri: image_uri.clone(),
        digest: digest.clone(),
        index_digest,
        architecture: target.lambda(),
        strategy,
        version: None,
        previous_version: None,
        routing: alias
            .as_ref()
            .map(|a| routing(&a.version, &a.weights))
            .unwrap_or_else(|| "—".into()),
        alarms: opts.alarms.clone(),
        plan: vec![],
        timeline: vec![],
        warnings: vec![],
        seconds: 0.0,
    };
    let from = match &start {
        Start::AlreadyServing { version } => {
            say(&format!(
                "alias {}:{} already serves {digest} (version {version}): nothing to do",
                function_name, alias_name
            ));
            if version == plan::LATEST {
                let w = format!(
                    "alias {alias_name} follows {} (UpdateFunctionCode changes what it serves at once); the next deploy publishes that code as a version and points the alias at it first",
                    plan::LATEST
                );
                tracing::warn!("{w}");
                report.warnings.push(w);
            }
            report.end = if dry_run {
                End::DryRun
            } else {
                End::AlreadyServing
            };
            report.version = Some(version.clone());
            report.seconds = started.elapsed().as_secs_f64();
            return Ok(report);
        }
        Start::Busy {
            primary,
            additional,
        } => {
            return Err(DeployError::refused(
                format!(
                    "alias {}:{} is split between versions ({}) by another deployment",
                    function_name,
                    alias_name,
                    routing(primary, additional)
                ),
                format!("wait for that deployment to finish (or run `hoist rollback --function {} --alias {}` to clear it); --force takes the alias over from version {primary}", function_name, alias_name),
            )
            .into());
        }
        Start::Create => None,
        Start::Shift { from } => Some(from.clone()),
    };
    // An alias on $LATEST serves the new image the moment UpdateFunctionCode
    // lands (no smoke test, no bake), Lambda refuses to weight it, and
    // "previous = $LATEST" would roll back to the new code. So hoist first
    // publishes the code $LATEST serves now as a version and points the
    // alias at it, then shifts from that version.
    let pin_latest = from.as_deref() == Some(plan::LATEST);
    report.previous_version = from.clone();

    // Weighted aliases need both versions to share the execution role and
    // the dead-letter configuration (Lambda guide, configuration-aliases;
    // serverless-aws-alias#64); the new version takes $LATEST's.
    let new_facts = plan::RoutingFacts {
        role: function.role.clone(),
        dead_letter: function.dead_letter.clone(),
    };
    if let (Some(old), Some(f), false, false) =
        (&serving, &from, strategy.steps().is_empty(), pin_latest)
    {
        let old_facts = plan::RoutingFacts {
            role: old.role.clone(),
            dead_letter: old.dead_letter.clone(),
        };
        let why = plan::weighted(f, &old_facts, &new_facts);
        if !why.is_empty() {
            return Err(DeployError::refused(
                format!(
                    "Lambda cannot split alias {alias_name} between version {f} and the new version: {}",
                    why.join("; ")
                ),
                "deploy with --strategy all-at-once, or give the function back the execution role and dead-letter queue of the version the alias serves",
            )
            .into());
        }
        checks.push(format!(
            "weighted routing: version {f} and the new version share the execution role and the dead-letter queue ({})",
            new_facts.dead_letter.as_deref().unwrap_or("none")
        ));
    }

    // Provisioned concurrency on the alias: each step waits for it.
    let provisioned = match (&from, pin_latest) {
        (Some(_), false) => match lambda.provisioned(&alias_name).await {
            Ok(p) => p,
            Err(e) => {
                let w = format!(
                    "could not read the provisioned concurrency of alias {alias_name} ({e}); if it has some, the bakes may begin before Lambda has allocated it to the new version"
                );
                tracing::warn!("{w}");
                warnings.push(w);
                None
            }
        },
        _ => None,
    };
    match &provisioned {
        Some(p) => checks.push(format!(
            "provisioned concurrency: alias {alias_name} has {} ({}); after each routing change hoist waits until it is READY before baking",
            p.requested, p.status
        )),
        None if from.is_some() && !pin_latest => checks.push(format!(
            "provisioned concurrency: none on alias {alias_name}"
        )),
        None => {}
    }

    // The alarms, before anything moves.
    let watch = if opts.alarms.is_empty() {
        Watch::default()
    } else {
        let states = cloudwatch.states(&opts.alarms).await?;
        match Watch::begin(&opts.alarms, &states, opts.ignore_alarms_at_start) {
            Ok(w) => {
                for name in &w.ignored {
                    let s = states
                        .iter()
                        .find(|s| &s.name == name)
                        .expect("from these states");
                    let line = format!(
                        "alarm {name} is already in ALARM ({}); --ignore-alarms-at-start: it counts again once it recovers",
                        s.reason
                    );
                    tracing::warn!("{line}");
                    warnings.push(line);
                }
                checks.push(format!(
                    "alarms: {}",
                    opts.alarms
                        .iter()
                        .filter_map(|n| states.iter().find(|s| &s.name == n))
                        .map(|s| format!("{} ({} alarm, {})", s.name, s.kind, s.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                w
            }
            Err(StartProblem::Missing(names)) => {
                return Err(DeployError::refused(
                    format!(
                        "CloudWatch has no alarm named {} in this region",
                        names.join(", ")
                    ),
                    "check the --alarm names (and --region); metric, composite and log alarms all work",
                )
                .into());
            }
            Err(StartProblem::Firing(firing)) => {
                return Err(DeployError::Refused {
                    message: format!(
                        "not deploying: {}",
                        firing.iter().map(|s| format!("alarm {} is already in ALARM ({})", s.name, s.reason)).collect::<Vec<_>>().join("; ")
                    ),
                    hint: "fix what fires it first, or pass --ignore-alarms-at-start to deploy anyway (e.g. the hotfix for it)".into(),
                    class: Class::Policy,
                }
                .into());
            }
        }
    };
    report.warnings.extend(warnings);

    let mut steps = strategy.steps();
    if from.is_none() && !steps.is_empty() {
        report.warnings.push(format!(
            "alias {} does not exist: it is created on the new version (nothing to shift from)",
            alias_name
        ));
        steps.clear();
    }

    // The plan (what a dry run shows, and the log of a real one).
    let mut lines = vec![format!(
        "image: {image_uri} ({}, {})",
        facts.config.architecture,
        crate::progress::bytes(facts.layers.iter().map(|l| l.size).sum())
    )];
    let highest = if dry_run {
        lambda.latest_version().await?
    } else {
        None
    };
    let numbered = |n: u64| {
        if dry_run {
            format!("version {n} (probably)")
        } else {
            "a new version".to_string()
        }
    };
    let pinned_digest = serving_digest
        .as_ref()
        .map(|d| format!(" ({d})"))
        .unwrap_or_default();
    let next = if pin_latest {
        lines.push(format!(
            "alias {alias_name} follows {latest}, so UpdateFunctionCode would change what it serves at once (and Lambda cannot weight {latest}): first publish the code {latest} runs now{pinned_digest} as {} and point the alias at it; the shift goes from that version",
            numbered(highest.map_or(1, |n| n + 1)),
            latest = plan::LATEST
        ));
        numbered(highest.map_or(2, |n| n + 2))
    } else {
        numbered(highest.map_or(1, |n| n + 1))
    };
    lines.push(format!(
        "update function {} to it{}, then publish {next} and wait until it is Active",
        function_name,
        opts.architecture
            .map(|a| format!(" (architecture {})", a.lambda()))
            .unwrap_or_default()
    ));
    if smoke.is_some() {
        lines.push("invoke the new version with the smoke event before moving any traffic".into());
    }
    let shown_from = if pin_latest {
        "the version published from $LATEST".to_string()
    } else {
        from.clone().unwrap_or_default()
    };
    match &from {
        None => lines.push(format!("create alias {} on the new version", alias_name)),
        Some(_) => {
            for s in &steps {
                lines.push(format!(
                    "alias {}: {}% on the new version, {}% on {shown_from}; {}bake {}",
                    alias_name,
                    s.percent,
                    100 - s.percent,
                    if provisioned.is_some() {
                        "wait for provisioned concurrency READY, then "
                    } else {
                        ""
                    },
                    show(s.bake)
                ));
            }
            lines.push(format!(
                "alias {}: 100% on the new version (from {shown_from})",
                alias_name
            ));
        }
    }
    if !opts.alarms.is_empty() || opts.max_errors.is_some() {
        let mut w = opts.alarms.clone();
        if let Some(max_errors) = opts.max_errors {
            w.push(format!(
                "the Errors metric of the new version (more than {} rolls back)",
                max_errors
            ));
        }
        lines.push(format!("watch during every bake: {}", w.join(", ")));
    }
    lines.extend(checks.into_iter().map(|c| format!("check: {c}")));
    report.plan = lines;
    if dry_run {
        for l in &report.plan {
            say(&format!("plan: {l}"));
        }
        report.end = End::DryRun;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    for l in report.plan.iter().filter(|l| l.starts_with("check: ")) {
        tracing::info!("{l}");
    }

    // Writes from here on.
    let event = |report: &mut Report, what: String| {
        report.timeline.push(Event {
            at_secs: (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            what,
        });
    };
    let mut from = from;
    let mut alias_revision = alias.as_ref().and_then(|a| a.revision_id.clone());
    if pin_latest {
        let current = lambda
            .settle(false, Instant::now() + timeout, timeout)
            .await?;
        let description = provenance::pinned(serving_digest.as_ref(), &digest);
        let pinned = lambda
            .publish(
                current.code_sha256.as_deref(),
                current.revision_id.as_deref(),
                &description,
                Instant::now() + timeout,
                timeout,
            )
            .await?;
        lambda
            .wait_version(&pinned, Instant::now() + timeout, timeout)
            .await?;
        let a = lambda
            .route(&alias_name, &pinned, None, None, alias_revision.as_deref())
            .await?;
        alias_revision = a.revision_id.clone();
        report.routing = routing(&a.version, &a.weights);
        let line = format!(
            "alias {alias_name} followed {}: published the code it served{pinned_digest} as version {pinned} and pointed the alias at it; shifting from version {pinned}",
            plan::LATEST
        );
        say(&line);
        event(&mut report, line);
        report.previous_version = Some(pinned.clone());
        from = Some(pinned);
    }
    say(&format!(
        "deploying {image_uri} to function {}",
        function_name
    ));
    let current = lambda
        .settle(false, Instant::now() + timeout, timeout)
        .await?;
    lambda
        .update_code(
            &image_uri,
            opts.architecture,
            current.revision_id.as_deref(),
            Instant::now() + timeout,
            timeout,
        )
        .await?;
    let updated = lambda
        .settle(true, Instant::now() + timeout, timeout)
        .await?;
    let (commit, url) = provenance::from_env(&ctx.env);
    let description = provenance::description(&digest, commit.as_deref(), url.as_deref());
    let version = lambda
        .publish(
            updated.code_sha256.as_deref(),
            updated.revision_id.as_deref(),
            &description,
            Instant::now() + timeout,
            timeout,
        )
        .await?;
    say(&format!(
        "published version {version} of function {}",
        function_name
    ));
    report.version = Some(version.clone());
    event(&mut report, format!("published version {version}"));
    // No invoke and no traffic before the version is Active.
    if lambda
        .wait_version(&version, Instant::now() + timeout, timeout)
        .await?
    {
        event(&mut report, format!("version {version} is Active"));
    }

    if let Some(payload) = smoke {
        let (error, body) = lambda.invoke(&version, payload).await?;
        let expect = opts.smoke.as_ref().and_then(|s| s.expect.as_ref());
        let failed = match (&error, expect) {
            (Some(e), _) => Some(format!("the function returned an error ({e})")),
            (None, Some(want)) if !body.contains(want.as_str()) => {
                Some(format!("the response does not contain '{want}'"))
            }
            _ => None,
        };
        if let Some(why) = failed {
            return Err(DeployError::Smoke {
                version,
                why,
                response: body.chars().take(2000).collect(),
            }
            .into());
        }
        say(&format!("smoke test of version {version}: ok"));
        event(
            &mut report,
            format!("smoke test of version {version} passed"),
        );
    }

    let Some(from) = from else {
        let record = format!("hoist: created on version {version}");
        let a = lambda.create_alias(&alias_name, &version, &record).await?;
        report.alias_arn = a.arn.clone();
        report.routing = routing(&a.version, &a.weights);
        event(
            &mut report,
            format!("created alias {} on version {version}", alias_name),
        );
        say(&format!(
            "created alias {}:{} on version {version}",
            function_name, alias_name
        ));
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    };
    if from == version {
        // PublishVersion returned the version already serving (nothing
        // changed since it was published): the alias is where it should be.
        report.end = End::AlreadyServing;
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let record = plan::Record {
        current: version.clone(),
        previous: from.clone(),
    }
    .description(Some(&digest));
    let name = function
        .arn
        .split(':')
        .nth(6)
        .unwrap_or(&function_name)
        .to_string();
    let outcome = shift::Shift {
        lambda: &lambda,
        cloudwatch: &cloudwatch,
        function_name: &name,
        alias: &alias_name,
        from: &from,
        to: &version,
        steps,
        alarms: &opts.alarms,
        watch,
        max_errors: opts.max_errors,
        record,
        revision_id: alias_revision,
        provisioned: provisioned.is_some(),
        timeout,
        quiet,
        started,
    }
    .run()
    .await?;
    report.timeline.extend(outcome.timeline);
    report.routing = routing(&outcome.alias.version, &outcome.alias.weights);
    report.alias_arn = outcome.alias.arn.clone();
    report.end = outcome.end;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Text from AWS (Lambda's reasons, alarm reasons, ARNs) as hoist prints
/// it: control characters (newlines, terminal escapes, CI workflow-command
/// line starts) escaped, everything else as is.
pub fn outside(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Read what would run: the manifest, the child for `arch` when it is an
/// index, and the config.
async fn read_image(
    registry: &Registry,
    image: &ImageRef,
    arch: Arch,
    local: Option<&crate::image::Contents>,
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
    let (digest, index, manifest) = match fetch(image.digest.clone()).await? {
        Manifest::Index(children) => {
            let child = platform::pick_child(&children, arch).map_err(|present| {
                DeployError::refused(
                    format!(
                        "{image} is a multi-platform index with no linux/{} image for a {} function (it holds: {})",
                        arch.oci(),
                        arch.lambda(),
                        if present.is_empty() { "no runnable platforms".into() } else { present.join(", ") }
                    ),
                    "build the image for the function's platform too, or pass --architecture to run the function on one the index holds",
                )
            })?;
            match fetch(child.clone()).await? {
                m @ Manifest::Image { .. } => (child, Some(image.digest.clone()), m),
                Manifest::Index(_) => {
                    return Err(DeployError::Image(format!(
                        "{repo}@{child} is an index inside an index; Lambda needs a single-platform image"
                    )));
                }
            }
        }
        m => (image.digest.clone(), None, m),
    };
    let Manifest::Image { config, layers, .. } = manifest else {
        unreachable!("matched above")
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
    if let Some(i) = &index {
        eprintln!(
            "{image} is an index: deploying its linux/{} image {digest}",
            arch.oci()
        );
        let _ = i;
    }
    Ok((
        digest,
        index,
        ImageFacts {
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
        },
    ))
}

/// The repository's policy, for the pull check (the ECR API, in the
/// repository's account).
async fn repository_policy(
    sdk: &aws_config::SdkConfig,
    account: &str,
    repository: &str,
) -> pull::PolicyRead {
    use aws_smithy_types::error::metadata::ProvideErrorMetadata;
    let ecr = aws_sdk_ecr::Client::new(sdk);
    match ecr
        .get_repository_policy()
        .registry_id(account)
        .repository_name(repository)
        .send()
        .await
    {
        Ok(p) => pull::PolicyRead::Text(p.policy_text().map(str::to_string)),
        // No policy; or (a `ship --dry-run` with --create-repository) no
        // repository yet, which the push creates without one.
        Err(e)
            if e.as_service_error().is_some_and(|s| {
                s.is_repository_policy_not_found_exception()
                    || s.is_repository_not_found_exception()
            }) =>
        {
            pull::PolicyRead::Text(None)
        }
        Err(e) => pull::PolicyRead::Unreadable {
            denied: matches!(
                e.code(),
                Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
            ),
            why: crate::aws::describe(&e),
        },
    }
}

impl Report {
    pub fn exit_code(&self) -> u8 {
        match &self.end {
            End::RolledBack { .. } => 1,
            End::Interrupted { exit_code, .. } => *exit_code,
            _ => 0,
        }
    }

    pub fn summary_line(&self) -> String {
        let v = self.version.as_deref().unwrap_or("?");
        match &self.end {
            End::Deployed => format!(
                "deployed {} to {} as version {v} (previously {}); routing {}",
                self.digest,
                self.alias_arn,
                self.previous_version.as_deref().unwrap_or("none"),
                self.routing
            ),
            End::AlreadyServing => format!(
                "{} already serves {} (version {v}); nothing published",
                self.alias_arn, self.digest
            ),
            End::DryRun => format!(
                "dry run: nothing was written ({} steps planned)",
                self.plan.len()
            ),
            End::RolledBack { reason, .. } => format!(
                "rolled back: {reason}; {} is back on version {} (routing {}); version {v} stays published",
                self.alias_arn,
                self.previous_version.as_deref().unwrap_or("?"),
                self.routing
            ),
            End::Interrupted { signal, .. } => format!(
                "interrupted by {signal}: {} restored to version {} (routing {})",
                self.alias_arn,
                self.previous_version.as_deref().unwrap_or("?"),
                self.routing
            ),
        }
    }

    pub fn markdown(&self) -> String {
        let result = match &self.end {
            End::Deployed => "deployed".to_string(),
            End::AlreadyServing => "already serving this image — nothing published".into(),
            End::DryRun => "dry run — nothing written".into(),
            End::RolledBack { reason, .. } => format!("**rolled back**: {reason}"),
            End::Interrupted { signal, .. } => {
                format!("**interrupted** by {signal}; previous routing restored")
            }
        };
        let mut md = format!(
            "### hoist deploy\n\n| | |\n|---|---|\n| result | {result} |\n| function | `{}` |\n| alias | `{}` |\n| image | `{}` |\n| new version | {} |\n| previous version | {} |\n| strategy | {} |\n| routing | {} |\n| alarms | {} |\n",
            self.function,
            self.alias_arn,
            self.image_uri,
            self.version.as_deref().unwrap_or("—"),
            self.previous_version.as_deref().unwrap_or("—"),
            self.strategy,
            self.routing,
            if self.alarms.is_empty() {
                "—".into()
            } else {
                self.alarms.join(", ")
            }
        );
        if !self.plan.is_empty() && self.end == End::DryRun {
            md.push_str("\n**plan**\n\n");
            for l in &self.plan {
                md.push_str(&format!("1. {l}\n"));
            }
        }
        if !self.timeline.is_empty() {
            md.push_str("\n| t (s) | event |\n|---:|---|\n");
            for e in &self.timeline {
                md.push_str(&format!("| {:.1} | {} |\n", e.at_secs, e.what));
            }
        }
        md
    }
}

/// `hoist rollback`: what happened.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RollbackReport {
    pub function: String,
    pub alias: String,
    pub alias_arn: String,
    pub from: String,
    pub to: String,
    /// `to-previous` or `clear-routing` (a deploy left the alias split).
    pub action: &'static str,
    pub routing: String,
}

/// Point the alias back at the version it served before the last hoist
/// deploy (recorded in its description), or clear a split a killed deploy
/// left behind.
pub async fn rollback(ctx: &Context, args: &Rollback) -> Result<RollbackReport, Error> {
    let sdk = ctx.aws().await?;
    let lambda = Lambda::new(sdk, &args.function, ctx.quiet);
    let alias = lambda.alias(&args.alias).await?.ok_or_else(|| {
        DeployError::refused(
            format!("function {} has no alias {}", args.function, args.alias),
            "check --function, --alias and --region",
        )
    })?;
    let decision = plan::rollback(&alias, args.force).map_err(|why| {
        DeployError::refused(
            format!("cannot roll back {}: {why}", alias.arn),
            "point the alias yourself (aws lambda update-alias --function-name F --name A --function-version N); with a record but a moved alias, --force goes back to the recorded previous version",
        )
    })?;
    let (from, to, action, a) = match decision {
        plan::Rollback::ClearRouting { keep, drop } => {
            let a = lambda
                .route(&args.alias, &keep, None, None, alias.revision_id.as_deref())
                .await?;
            (drop, keep, "clear-routing", a)
        }
        plan::Rollback::To { from, to } => {
            let record = plan::Record {
                current: to.clone(),
                previous: from.clone(),
            }
            .description(None);
            let a = lambda
                .route(
                    &args.alias,
                    &to,
                    None,
                    Some(&record),
                    alias.revision_id.as_deref(),
                )
                .await?;
            (from, to, "to-previous", a)
        }
    };
    Ok(RollbackReport {
        function: args.function.clone(),
        alias: args.alias.clone(),
        alias_arn: a.arn.clone(),
        routing: routing(&a.version, &a.weights),
        from,
        to,
        action,
    })
}

impl RollbackReport {
    pub fn summary_line(&self) -> String {
        match self.action {
            "clear-routing" => format!(
                "{}: cleared the split left by a deploy; version {} no longer takes traffic; routing {}",
                self.alias_arn, self.from, self.routing
            ),
            _ => format!(
                "{}: rolled back from version {} to {}; routing {}",
                self.alias_arn, self.from, self.to, self.routing
            ),
        }
    }

    pub fn markdown(&self) -> String {
        format!(
            "### hoist rollback\n\n| | |\n|---|---|\n| alias | `{}` |\n| from version | {} |\n| to version | {} |\n| routing | {} |\n",
            self.alias_arn, self.from, self.to, self.routing
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_outside() {
        assert_eq!(super::outside("plain: ok"), "plain: ok");
        assert_eq!(
            super::outside("line\n::error::x\u{1b}[31m"),
            "line\\n::error::x\\u{1b}[31m"
        );
    }
}
