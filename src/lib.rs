//! hoist: a prebuilt container image from disk to a live AWS Lambda alias.
//!
//! The pipeline, one folder per stage: `image` (read from disk) and
//! `registry` (talk to ECR) make up `push`; `ci` is the seam to the CI
//! systems; `report` is the one result every output is made from.

pub mod aws;
pub mod ci;
pub mod cli;
pub mod env;
pub mod error;
pub mod image;
pub mod net;
pub mod progress;
pub mod push;
pub mod registry;
pub mod report;
pub mod secret;

use ci::Ci;
use cli::{Cli, Command};
use env::Env;
use error::{ConfigError, Error};
use report::Outcome;

/// Run one command. Everything the outside world gives hoist comes in here:
/// the parsed flags and one snapshot of the environment.
pub async fn run(cli: Cli, env: Env) -> Result<Outcome, Error> {
    warm_up_tls();
    let ci = match &cli.global.ci {
        Some(name) => Ci::named(name, &env)?,
        None => Ci::detect(&env),
    };
    let net = net::Network::from_env(&env)?;
    let outcome = match cli.command {
        Command::Push(args) => {
            let settings = push::Settings {
                source: args.source,
                repository: args.repository,
                tags: args.tags,
                reference: args.reference,
                mount_from: args.mount_from,
                jobs: args.jobs,
                create_repository: args.create_repository,
                quiet: cli.global.quiet,
            };
            settings.validate()?;
            let endpoint = cli
                .global
                .registry_endpoint
                .as_deref()
                .map(registry::parse_endpoint)
                .transpose()?;
            // The image is read and checked before any call to AWS: bad input
            // fails fast, and touches nothing.
            let image = push::open(&settings).await?;
            let sdk = aws::sdk_config(cli.global.region.as_deref(), &net).await?;
            let ecr = registry::Ecr::new(&sdk);
            let masker = ci.clone();
            let mask = Box::new(move |s: &str| masker.mask(s));
            // Independent calls, made at once: the registry password and the
            // repository's settings.
            let (registry, repo) = tokio::join!(
                registry::Registry::connect(ecr.clone(), endpoint, net, Default::default(), mask),
                push::repository(&settings, &ecr)
            );
            let report = push::push(&settings, &image, &registry?, repo?).await?;
            if let Some(path) = &args.digest_file {
                std::fs::write(path, report.digest.to_string()).map_err(|e| {
                    ConfigError::new(format!("could not write the digest to {}", path.display()))
                        .source(e)
                })?;
            }
            Outcome::Push(report)
        }
    };
    for warning in ci.publish(&outcome.outputs(), cli.global.dotenv.as_deref()) {
        tracing::warn!("{warning}");
    }
    Ok(outcome)
}

/// The first TLS handshake of a process seeds aws-lc's random generator from
/// CPU jitter: tens of milliseconds of pure computation, most of a re-push's
/// run time. Seeding on a thread of its own at start-up overlaps it with
/// reading the image and the first AWS calls.
fn warm_up_tls() {
    std::thread::spawn(|| {
        let mut byte = [0u8; 1];
        let _ = aws_lc_rs::rand::fill(&mut byte);
    });
}
