//! hoist: a prebuilt container image from disk to a live AWS Lambda alias.
//!
//! The pipeline, one folder per stage: `image` (read from disk) and
//! `registry` (talk to ECR) make up `push`; `ci` is the seam to the CI
//! systems; `report` is the one result every output is made from.

pub mod auth;
pub mod aws;
pub mod ci;
pub mod cli;
pub mod clock;
pub mod config;
pub mod deploy;
pub mod duration;
pub mod env;
pub mod error;
pub mod files;
pub mod image;
pub mod net;
pub mod output;
pub mod progress;
pub mod push;
pub mod registry;
pub mod report;
pub mod retry;
pub mod scan;
pub mod schema;
pub mod secret;
pub mod ship;
pub mod text;

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
    let stage = cli.command.name();
    let result = run_in(cli, env, &ci).await;
    // A failure shows where the CI system shows failures (GitHub's error
    // annotation and step summary, Buildkite's annotation), hint included.
    result.map_err(|e| {
        let e = e.in_stage(stage);
        ci.report_failure(&e, None);
        e
    })
}

async fn run_in(cli: Cli, env: Env, ci: &Ci) -> Result<Outcome, Error> {
    let mut net = net::Network::from_env(&env)?;
    net.idle_timeout = cli.global.http_timeout;
    // Every flag every command shares, checked before anything else.
    let auth = auth::Settings::try_from(cli.global.auth_flags())?;
    let registry_endpoint = cli
        .global
        .registry_endpoint
        .as_deref()
        .map(registry::parse_endpoint)
        .transpose()?;
    let ctx = Context {
        quiet: cli.global.quiet,
        registry_endpoint,
        auth,
        dotenv: cli.global.dotenv.clone(),
        ci: ci.clone(),
        env: env.clone(),
        net: net.clone(),
        aws: Default::default(),
    };
    let outcome = dispatch(&ctx, &cli, &env, &net).await?;
    let mut outputs = outcome.outputs();
    // Who the run acted as, from every command that assumed a role, so the
    // GitHub action (one `hoist ship`) can offer them as outputs as
    // configure-aws-credentials does. `hoist auth` sets them itself.
    if let (false, Some((_, Some(assumed)))) = (matches!(outcome, Outcome::Auth(_)), ctx.aws.get())
    {
        report::identity_outputs(&mut outputs, &report::AuthReport::new(ci, assumed, None));
    }
    outputs.blocked = outcome.exit_code() != 0;
    // Outputs a later step cannot read are a failed step, not a warning:
    // the pipeline would go on without the digest it needs.
    let problems = ci.publish(&outputs, cli.global.dotenv.as_deref());
    if !problems.is_empty() && outcome.exit_code() != 0 {
        // The run failed anyway; its own exit code says more.
        for p in &problems {
            tracing::warn!("{p}");
        }
    } else if !problems.is_empty() {
        output::always(&outcome.log());
        return Err(ConfigError::new(format!(
            "the outputs could not be handed to {}: {}",
            ci.name(),
            problems.join("; ")
        ))
        .hint("the work above is done (re-running is safe); check that the CI system's output files (e.g. $GITHUB_OUTPUT) and --dotenv are writable")
        .into());
    }
    Ok(outcome)
}

/// The command itself.
async fn dispatch(
    ctx: &Context,
    cli: &Cli,
    env: &Env,
    net: &net::Network,
) -> Result<Outcome, Error> {
    let ci = &ctx.ci;
    Ok(match &cli.command {
        Command::Auth(args) => {
            if cli.global.role_arn.is_none() {
                return Err(ConfigError::new("hoist auth needs the role to assume")
                    .hint("pass --role-arn (or set HOIST_ROLE_ARN)")
                    .into());
            }
            let (sdk, assumed) = ctx.session().await?;
            let assumed = assumed.as_ref().ok_or_else(|| {
                ConfigError::new("hoist auth assumed no role")
                    .hint("pass --role-arn (or set HOIST_ROLE_ARN)")
            })?;
            let exported = if args.export {
                Some(export(
                    ci,
                    assumed,
                    sdk.region().map(|r| r.as_ref()),
                    cli.global.dotenv.as_deref(),
                )?)
            } else {
                None
            };
            Outcome::Auth(report::AuthReport::new(ci, assumed, exported))
        }
        Command::Doctor(args) => Outcome::Doctor(doctor(&ctx.auth, args, ci, env, net).await?),
        Command::Push(args) => {
            let settings = push::Settings::try_from(args)?;
            Outcome::Push(push::run(ctx, &settings).await?)
        }
        Command::Gate(args) => {
            let image =
                registry::reference::ImageRef::parse(&args.image, args.repository.as_deref())?;
            let settings = scan::Settings::try_from(args)?;
            Outcome::Gate(scan::run(ctx, &image, &settings).await?)
        }
        Command::Deploy(args) => {
            let image =
                registry::reference::ImageRef::parse(&args.image, args.repository.as_deref())?;
            let settings = deploy::Settings::try_from(args)?;
            Outcome::Deploy(deploy::run(ctx, &image, &settings, args.dry_run).await?)
        }
        Command::Rollback(args) => {
            let settings = deploy::Rollback::try_from(args)?;
            Outcome::Rollback(deploy::rollback(ctx, &settings).await?)
        }
        Command::Ship(args) => {
            let settings = ship::Settings::try_from(args)?;
            Outcome::Ship(ship::run(ctx, &settings).await?)
        }
        Command::Config(_) | Command::Completions(_) | Command::Man(_) | Command::Schema(_) => {
            return Err(ConfigError::new(
                "this command describes hoist and runs before any stage: use hoist::offline",
            )
            .into());
        }
    })
}

/// The commands that describe hoist and touch nothing (`config`,
/// `completions`, `man`, `schema`): what they print on stdout, or None for
/// the commands that run the pipeline. `args` is the command line as given
/// and `layer` what the config file set (for `hoist config`).
pub fn offline(
    cli: &Cli,
    args: &[std::ffi::OsString],
    layer: &config::Layer,
) -> Option<Result<String, Error>> {
    use clap::CommandFactory;
    let json = cli.global.output == cli::OutputFormat::Json;
    Some(match &cli.command {
        Command::Config(_) => {
            let report = config::explain(&Cli::command(), args, layer);
            if json || report.json() {
                let mut v = serde_json::to_value(&report).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("command".into(), "config".into());
                }
                Ok(
                    serde_json::to_string_pretty(&schema::versioned(move_command_first(v)))
                        .unwrap_or_default(),
                )
            } else {
                Ok(report.text())
            }
        }
        Command::Completions(a) => {
            let mut out = Vec::new();
            clap_complete::generate(a.shell, &mut Cli::command(), "hoist", &mut out);
            Ok(String::from_utf8_lossy(&out).trim_end().to_string())
        }
        Command::Man(a) => match &a.dir {
            Some(dir) => clap_mangen::generate_to(Cli::command(), dir)
                .map(|()| String::new())
                .map_err(|e| {
                    ConfigError::new(format!(
                        "could not write the man pages to {}",
                        dir.display()
                    ))
                    .source(e)
                    .into()
                }),
            None => {
                let mut out = Vec::new();
                clap_mangen::Man::new(Cli::command())
                    .render(&mut out)
                    .map(|()| String::from_utf8_lossy(&out).trim_end().to_string())
                    .map_err(|e| {
                        ConfigError::new("could not render the man page")
                            .source(e)
                            .into()
                    })
            }
        },
        Command::Schema(a) => schema_command(a),
        _ => return None,
    })
}

/// `{"command": …}` before the other fields, as every document has it.
fn move_command_first(v: serde_json::Value) -> serde_json::Value {
    let serde_json::Value::Object(fields) = v else {
        return v;
    };
    let mut out = serde_json::Map::new();
    if let Some(c) = fields.get("command") {
        out.insert("command".into(), c.clone());
    }
    for (k, v) in fields {
        if k != "command" {
            out.insert(k, v);
        }
    }
    serde_json::Value::Object(out)
}

/// `hoist schema DOCUMENT` or `hoist schema --dir DIR`.
fn schema_command(a: &cli::SchemaArgs) -> Result<String, Error> {
    let text = |d: &str| {
        schema::schema(d)
            .and_then(|s| serde_json::to_string_pretty(&s).ok())
            .ok_or_else(|| {
                Error::from(
                    ConfigError::new(format!("no schema named '{}'", text::external(d, 40)))
                        .hint(format!("one of: {}", schema::DOCUMENTS.join(", "))),
                )
            })
    };
    match (&a.document, &a.dir) {
        (Some(d), _) => text(d),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).map_err(|e| {
                ConfigError::new(format!("could not create {}", dir.display())).source(e)
            })?;
            for d in schema::DOCUMENTS {
                let path = dir.join(format!("{d}.json"));
                std::fs::write(&path, text(d)? + "\n").map_err(|e| {
                    ConfigError::new(format!("could not write {}", path.display())).source(e)
                })?;
            }
            Ok(String::new())
        }
        (None, None) => Err(ConfigError::new("hoist schema needs a document or --dir")
            .hint(format!(
                "name one of: {}; or write them all with --dir DIR",
                schema::DOCUMENTS.join(", ")
            ))
            .into()),
    }
}

/// What every stage of a run shares: the flags every command takes, the CI
/// system, the environment snapshot, the network settings, and — set up once,
/// on first use — the AWS configuration with its (refreshing) credentials.
#[derive(Clone)]
pub struct Context {
    /// `-q`: no progress lines.
    pub quiet: bool,
    /// `--dotenv`: also write outputs there.
    pub dotenv: Option<std::path::PathBuf>,
    /// `--registry-endpoint`, checked.
    pub registry_endpoint: Option<url::Url>,
    pub auth: auth::Settings,
    pub ci: Ci,
    pub env: Env,
    pub net: net::Network,
    /// Shared by every copy of the context (one exchange per run).
    aws: std::sync::Arc<tokio::sync::OnceCell<(aws_config::SdkConfig, Option<auth::sts::Assumed>)>>,
}

impl Context {
    /// The SDK configuration, authenticated through OIDC when `--role-arn`
    /// is given. The first call does the exchange; later stages reuse it.
    pub async fn aws(&self) -> Result<&aws_config::SdkConfig, Error> {
        Ok(&self.session().await?.0)
    }

    /// The SDK configuration and who it assumed (None: the default chain).
    pub async fn session(
        &self,
    ) -> Result<&(aws_config::SdkConfig, Option<auth::sts::Assumed>), Error> {
        self.aws
            .get_or_try_init(|| async {
                let (config, assumed) =
                    auth::setup::aws_config(&self.auth, &self.ci, &self.env, &self.net).await?;
                self.check_account(&config, assumed.as_ref()).await?;
                Ok((config, assumed))
            })
            .await
    }

    /// `--allowed-account-ids`: right after authentication, before anything
    /// is read or written, the account hoist acts in must be one of them.
    async fn check_account(
        &self,
        config: &aws_config::SdkConfig,
        assumed: Option<&auth::sts::Assumed>,
    ) -> Result<(), Error> {
        let allowed = &self.auth.allowed_accounts;
        if allowed.is_empty() {
            return Ok(());
        }
        let account = match assumed.and_then(|a| a.account()) {
            Some(a) => a.to_string(),
            // The default credential chain: ask STS who this is (a call
            // that needs no permission).
            None => aws_sdk_sts::Client::new(config)
                .get_caller_identity()
                .send()
                .await
                .map_err(|e| aws::AwsError::new("sts:GetCallerIdentity", e))?
                .account()
                .unwrap_or_default()
                .to_string(),
        };
        if auth::settings::allowed(allowed, &account) {
            return Ok(());
        }
        Err(ConfigError::new(format!(
            "hoist is signed in to AWS account {account}, which --allowed-account-ids does not list ({})",
            allowed.join(", ")
        ))
        .hint("nothing was read or written there; check --role-arn (or the job's credentials) and --allowed-account-ids")
        .into())
    }
}

/// `hoist doctor`: everything about the token and the trust policy that can
/// be known without asking STS.
async fn doctor(
    g: &auth::Settings,
    args: &cli::DoctorArgs,
    ci: &Ci,
    env: &Env,
    net: &net::Network,
) -> Result<report::DoctorReport, Error> {
    use auth::trust;
    let region = g
        .region
        .as_deref()
        .or_else(|| env.first(&["AWS_REGION", "AWS_DEFAULT_REGION"]));
    let audience = auth::Audience::new(g.audience.as_deref(), region);
    let source = ci.token_source(
        env,
        &ci::TokenOptions {
            file: g.id_token_file.clone(),
            var: g.id_token_env.clone(),
        },
    )?;
    let token = source.fetch(&net.reqwest()?, audience.request()).await?;
    ci.mask(token.reveal());
    let claims = auth::claims::Claims::decode(&token)?;
    let now = crate::clock::unix_now();
    let accepted = audience.accepted(&claims);
    let (audience, problems) = match claims.check(&accepted, now) {
        Ok(matched) => (matched, vec![]),
        Err(e) => (
            accepted.first().cloned().unwrap_or_default(),
            vec![e.to_string()],
        ),
    };
    let account = g
        .role_arn
        .as_deref()
        .and_then(|arn| arn.split(':').nth(4))
        .filter(|a| !a.is_empty());
    let (policy_accepts, policy_findings) = match &args.trust_policy {
        None => (None, vec![]),
        Some(path) => {
            let text = files::read_to_string(path, "--trust-policy", files::POLICY)?;
            let input: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                ConfigError::new(format!("--trust-policy {} is not JSON", path.display())).source(e)
            })?;
            let doc = trust::document(&input).ok_or_else(|| {
                ConfigError::new(format!("--trust-policy {} holds no trust policy", path.display())).hint("give `aws iam get-role --role-name NAME` output, or the policy document itself")
            })?;
            match trust::evaluate(&doc, &claims) {
                trust::Verdict::Accepts { statement } => {
                    (Some(true), vec![format!("statement {statement}")])
                }
                trust::Verdict::Rejects(m) => (
                    Some(false),
                    m.into_iter()
                        .map(|m| {
                            // The reason quotes the token's claims.
                            let reason = text::external(&m.reason, 1000);
                            format!("statement {}: {reason}", m.statement)
                        })
                        .collect(),
                ),
            }
        }
    };
    Ok(report::DoctorReport {
        ci: ci.name(),
        token_source: source.describe(),
        trust_policy: trust::policy_for(&claims, &audience, account),
        subject_pattern: match trust::subject_match(&claims) {
            trust::SubjectMatch::Like { why, .. } => Some(why.to_string()),
            trust::SubjectMatch::Exact(_) => None,
        },
        audience,
        claims: claims.shown(),
        expires_in_secs: claims.expires_at().map(|e| e.saturating_sub(now)),
        problems,
        policy_accepts,
        policy_findings,
    })
}

/// `hoist auth --export`: the credentials for later steps that run other AWS
/// tools. On GitHub into $GITHUB_ENV (each value was masked when STS handed
/// it over); elsewhere into the dotenv file the user named, or as `export`
/// lines on stdout. Returns where they went.
fn export(
    ci: &Ci,
    a: &auth::sts::Assumed,
    region: Option<&str>,
    dotenv: Option<&std::path::Path>,
) -> Result<report::Export, Error> {
    let c = &a.credentials;
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", c.access_key_id().to_string()),
        ("AWS_SECRET_ACCESS_KEY", c.secret_access_key().to_string()),
        (
            "AWS_SESSION_TOKEN",
            c.session_token().unwrap_or_default().to_string(),
        ),
    ];
    if let Some(r) = region {
        vars.push(("AWS_REGION", r.to_string()));
        vars.push(("AWS_DEFAULT_REGION", r.to_string()));
    }
    let lines: String = vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    let write = |path: &std::path::Path, text: &str, what: &str| {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        // Credentials: a file hoist creates is readable by its owner only.
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| {
                Error::from(
                    ConfigError::new(format!(
                        "could not write the credentials to {what} ({})",
                        path.display()
                    ))
                    .source(e),
                )
            })
    };
    match (ci, dotenv) {
        (Ci::GitHub(g), _) if g.github_env.is_some() => {
            if let Some(path) = g.github_env.as_deref() {
                write(path, &lines, "$GITHUB_ENV")?;
            }
            Ok(report::Export::GitHubEnv)
        }
        (_, Some(path)) => {
            write(path, &lines, "the dotenv file")?;
            Ok(report::Export::Dotenv(path.display().to_string()))
        }
        _ => Ok(report::Export::Shell {
            lines: vars
                .iter()
                .map(|(k, v)| format!("export {k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            // With --output json the credentials are in the document, in the
            // shape of the AWS CLI's credential_process output.
            credentials: serde_json::json!({
                "Version": 1,
                "AccessKeyId": c.access_key_id(),
                "SecretAccessKey": c.secret_access_key(),
                "SessionToken": c.session_token().unwrap_or_default(),
                "Expiration": aws_smithy_types::DateTime::from(a.expires)
                    .fmt(aws_smithy_types::date_time::Format::DateTime)
                    .unwrap_or_default(),
            }),
        }),
    }
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
