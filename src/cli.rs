//! Command-line flags. Every flag can also come from an environment variable
//! `HOIST_<FLAG>` (list values comma-separated), so CI templates can set them
//! without building command lines, or from the config file (`hoist.toml`,
//! see [`crate::config`]), which fills in the `HOIST_<FLAG>` variables that
//! are not set. Precedence: flag > environment > file > default.
//!
//! These definitions are the only ones: `--help`, the completions, the man
//! page and the config file's keys all come from them.

use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Help headings, the same in every subcommand.
pub const IMAGE: &str = "Image";
pub const AUTH: &str = "Authentication";
pub const GATE: &str = "Gate";
pub const DEPLOY: &str = "Deploy";
pub const OUTPUT: &str = "Output";
pub const GLOBAL: &str = "Global";

const EXIT_CODES: &str = "\
Exit codes:
  0        done
  1        blocked by policy: the scan gate found findings the policy does not allow, or a deploy was rolled back or stopped
  2        usage, configuration or input: a flag, the config file, the image on disk, credentials or permissions (fix, then re-run)
  3        infrastructure: AWS, the registry or the network failed after retries, or a wait timed out (re-running is safe)
  70       a bug in hoist (please report it)
  130/143  hoist deploy interrupted by SIGINT/SIGTERM; the previous routing was restored

Settings come from flags, then HOIST_<FLAG> environment variables, then the config file (./hoist.toml or --config), then defaults: `hoist config COMMAND` shows which.

Examples:
  hoist ship ./image.tar --repository team/app --tag \"$GIT_SHA\" --function app --alias live
  hoist config ship            # the effective settings of `hoist ship`, and where each came from
  hoist completions bash > ~/.local/share/bash-completion/completions/hoist
  hoist man > hoist.1";

#[derive(Debug, Parser)]
#[command(
    name = "hoist",
    version,
    about = "Take a prebuilt container image from disk to a live AWS Lambda alias",
    long_about = None,
    after_help = EXIT_CODES,
    max_term_width = 120
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub global: Global,
}

#[derive(Debug, Clone, Args)]
pub struct Global {
    /// What to print on stdout: the plain result (`text`) or one JSON document
    #[arg(long, global = true, env = "HOIST_OUTPUT", value_enum, default_value_t = OutputFormat::Text, help_heading = OUTPUT)]
    pub output: OutputFormat,

    /// AWS region (default: the AWS SDK's usual settings, e.g. AWS_REGION)
    #[arg(long, global = true, env = "HOIST_REGION", help_heading = GLOBAL)]
    pub region: Option<String>,

    /// CI system to act for, instead of detecting it (github, gitlab, buildkite, circleci, bitbucket, jenkins, local)
    #[arg(long, global = true, env = "HOIST_CI", help_heading = GLOBAL)]
    pub ci: Option<String>,

    /// Also write outputs to this dotenv file (default on GitLab CI: hoist.env)
    #[arg(long, global = true, env = "HOIST_DOTENV", help_heading = OUTPUT)]
    pub dotenv: Option<PathBuf>,

    /// Send registry traffic here instead of ECR's own endpoint (PrivateLink, a proxy, a local registry); image URIs keep ECR's host name
    #[arg(long, global = true, env = "HOIST_REGISTRY_ENDPOINT", help_heading = GLOBAL)]
    pub registry_endpoint: Option<String>,

    /// Role to assume with the CI job's OIDC token (without it: the AWS default credential chain)
    #[arg(long, global = true, env = "HOIST_ROLE_ARN", help_heading = AUTH)]
    pub role_arn: Option<String>,

    /// Audience to request the OIDC token for and to expect in it (default sts.amazonaws.com; .cn in China regions)
    #[arg(long, global = true, env = "HOIST_AUDIENCE", help_heading = AUTH)]
    pub audience: Option<String>,

    /// Session length in seconds, 900–43200 (default: the role's, usually 3600); hoist refreshes before it ends
    #[arg(long, global = true, env = "HOIST_DURATION", help_heading = AUTH)]
    pub duration: Option<i32>,

    /// Read the OIDC token from this file (re-read at every refresh)
    #[arg(long, global = true, env = "HOIST_ID_TOKEN_FILE", help_heading = AUTH)]
    pub id_token_file: Option<PathBuf>,

    /// Read the OIDC token from this environment variable (GitLab default: HOIST_ID_TOKEN)
    #[arg(long, global = true, env = "HOIST_ID_TOKEN_ENV", help_heading = AUTH)]
    pub id_token_env: Option<String>,

    /// A second role to assume with the first one's credentials (another account)
    #[arg(long, global = true, env = "HOIST_CHAIN_ROLE_ARN", help_heading = AUTH)]
    pub chain_role_arn: Option<String>,

    /// A JSON IAM policy file that narrows the session's permissions
    #[arg(long, global = true, env = "HOIST_SESSION_POLICY", help_heading = AUTH)]
    pub session_policy: Option<PathBuf>,

    /// The STS session name (CloudTrail shows it); default hoist-<ci>-<run id>
    #[arg(long, global = true, env = "HOIST_ROLE_SESSION_NAME", help_heading = AUTH)]
    pub role_session_name: Option<String>,

    /// Refuse to act in any AWS account but these (comma-separated), checked right after authentication
    #[arg(
        long,
        global = true,
        env = "HOIST_ALLOWED_ACCOUNT_IDS",
        value_delimiter = ',',
        help_heading = AUTH
    )]
    pub allowed_account_ids: Vec<String>,

    /// How long a connection may stay silent (no answer, no body bytes moving) before hoist gives the attempt up and retries (e.g. 30s, 2m)
    #[arg(long, global = true, env = "HOIST_HTTP_TIMEOUT", default_value = "60s", value_parser = crate::duration::parse, help_heading = GLOBAL)]
    pub http_timeout: std::time::Duration,

    /// The config file (TOML; keys are long flag names). Default: ./hoist.toml when it exists
    #[arg(long, global = true, env = "HOIST_CONFIG", value_name = "PATH", help_heading = GLOBAL)]
    pub config: Option<PathBuf>,

    /// No progress lines, and no warnings: only errors
    #[arg(long, short, global = true, env = "HOIST_QUIET", help_heading = OUTPUT)]
    pub quiet: bool,

    /// More detail in the log (-v, -vv)
    #[arg(long, short, global = true, action = clap::ArgAction::Count, help_heading = OUTPUT)]
    pub verbose: u8,

    /// Colours and terminal control codes in the log and the progress line: auto (a terminal, unless NO_COLOR is set), always, never
    #[arg(long, global = true, env = "HOIST_COLOR", value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN", help_heading = OUTPUT)]
    pub color: ColorChoice,
}

pub use crate::output::{ColorChoice, OutputFormat};

#[derive(Debug, Subcommand)]
#[expect(
    clippy::large_enum_variant,
    reason = "parsed once per run; boxing the stage flags would only make every match on them noisier"
)]
pub enum Command {
    /// Exchange the CI job's OIDC token for the role's credentials and say who hoist became
    #[command(after_help = "\
Examples:
  hoist auth --role-arn arn:aws:iam::123456789012:role/ci-deploy
  hoist auth --role-arn arn:aws:iam::123456789012:role/ci-deploy --export   # credentials for later steps
  eval \"$(hoist auth --role-arn arn:aws:iam::123456789012:role/ci-deploy --export)\"   # outside GitHub")]
    Auth(AuthArgs),
    /// Without calling STS: the CI system, the OIDC token's claims, a trust policy that accepts exactly this job, and whether a given one does
    #[command(after_help = "\
Examples:
  hoist doctor                                   # the claims, and a trust policy for this job on stdout
  aws iam get-role --role-name ci-deploy > role.json && hoist doctor --trust-policy role.json")]
    Doctor(DoctorArgs),
    /// Push an image from disk (OCI layout, OCI tarball, docker save archive) to an ECR repository
    #[command(after_help = "\
Examples:
  hoist push ./image --repository team/app --tag \"$GIT_SHA\"          # an OCI layout directory
  docker save app:latest -o app.tar && hoist push app.tar --repository team/app --tag latest
  DIGEST=$(hoist push image.tar --repository team/app)               # the digest on stdout")]
    Push(PushArgs),
    /// Wait for ECR's scan of a pushed image and fail (exit 1) on findings the policy does not allow
    #[command(after_help = "\
Examples:
  hoist gate team/app@sha256:… --severity-threshold HIGH
  hoist gate team/app@sha256:… --max CRITICAL=0,HIGH=5 --allowlist hoist-allow.toml --sarif hoist.sarif")]
    Gate(GateArgs),
    /// Point a Lambda function at a pushed image by digest, publish a version, and move an alias to it (at once, or gradually with rollback on alarms)
    #[command(
        mut_arg("function", |a| a.required(true)),
        mut_arg("alias", |a| a.required(true)),
        after_help = "\
Examples:
  hoist deploy team/app@sha256:… --function app --alias live
  hoist deploy team/app@sha256:… --function app --alias live --strategy canary:10%:5m --alarm app-errors
  hoist deploy team/app@sha256:… --function app --alias live --dry-run     # the plan; nothing written"
    )]
    Deploy(DeployArgs),
    /// Point an alias back at the version it served before the last hoist deploy
    #[command(after_help = "\
Examples:
  hoist rollback --function app --alias live")]
    Rollback(RollbackArgs),
    /// The whole pipeline in one step: authenticate, push, gate on the scan, deploy
    #[command(after_help = "\
Examples:
  hoist ship ./image --repository team/app --tag \"$GIT_SHA\" --function app --alias live
  hoist ship app.tar --role-arn arn:aws:iam::123456789012:role/ci-deploy --repository team/app \\
    --severity-threshold HIGH --function app --alias live --strategy canary:10%:5m --alarm app-errors
  hoist ship ./image --dry-run                   # with the rest in hoist.toml: check everything, write nothing")]
    Ship(ShipArgs),
    /// Print the effective settings of a command and where each came from (flag, environment, config file, default); does nothing else
    #[command(after_help = "\
Examples:
  hoist config                                   # the settings every command shares
  hoist config ship                              # everything `hoist ship` would use
  hoist config deploy --alias canary             # with these flags
  hoist config ship --output json")]
    Config(ConfigArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish)
    #[command(after_help = "\
Examples:
  hoist completions bash > ~/.local/share/bash-completion/completions/hoist
  hoist completions zsh > \"${fpath[1]}/_hoist\"
  hoist completions fish > ~/.config/fish/completions/hoist.fish")]
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into a directory
    #[command(after_help = "\
Examples:
  hoist man > hoist.1 && man ./hoist.1
  hoist man --dir /usr/local/share/man/man1      # hoist.1, hoist-push.1, …")]
    Man(ManArgs),
    /// Print the JSON Schema of a command's `--output json` document (or write all of them into a directory)
    #[command(after_help = "\
Examples:
  hoist schema push
  hoist schema --dir schemas                     # auth.json, push.json, …, error.json")]
    Schema(SchemaArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// The command line to explain: a command and any of its flags (e.g. `ship --alias canary`)
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND [FLAGS]"
    )]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct CompletionsArgs {
    /// The shell to complete in
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Args)]
pub struct ManArgs {
    /// Write hoist.1 and one page per command (hoist-push.1, …) into this directory instead of printing hoist.1
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// The document: a command (auth, doctor, push, gate, deploy, rollback, ship, config) or `error`
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(crate::schema::DOCUMENTS))]
    pub document: Option<String>,

    /// Write every schema as DIR/DOCUMENT.json
    #[arg(long, value_name = "DIR", conflicts_with = "document")]
    pub dir: Option<PathBuf>,
}

impl Command {
    /// The command's name, as the CI system's failure annotation names it.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Auth(_) => "auth",
            Command::Doctor(_) => "doctor",
            Command::Push(_) => "push",
            Command::Gate(_) => "gate",
            Command::Deploy(_) => "deploy",
            Command::Rollback(_) => "rollback",
            Command::Ship(_) => "ship",
            Command::Config(_) => "config",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
            Command::Schema(_) => "schema",
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct ShipArgs {
    #[command(flatten)]
    pub push: PushArgs,

    #[command(flatten)]
    pub gate: GateOptions,

    /// How long to wait for the scan overall (e.g. 90s, 10m, 1h)
    #[arg(long, env = "HOIST_SCAN_TIMEOUT", default_value = "10m", value_parser = crate::duration::parse, help_heading = GATE)]
    pub scan_timeout: std::time::Duration,

    #[command(flatten)]
    pub deploy: DeployOptions,

    /// The longest hoist waits for Lambda to finish an update (each wait), e.g. 300s, 10m
    #[arg(long, env = "HOIST_DEPLOY_TIMEOUT", default_value = "10m", value_parser = crate::duration::parse_timeout, help_heading = DEPLOY)]
    pub deploy_timeout: std::time::Duration,

    /// Authenticate, read the image and the registry, check the scan and print the deploy plan; push and deploy nothing
    #[arg(long, env = "HOIST_DRY_RUN", help_heading = DEPLOY)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = IMAGE)]
pub struct PushArgs {
    /// The image: an OCI layout directory, an OCI layout tarball, or a `docker save` archive (plain or gzip)
    #[arg(env = "HOIST_SOURCE")]
    pub source: PathBuf,

    /// ECR repository: its name (team/app), or its full URI for a registry in another account or region (ACCOUNT.dkr.ecr.REGION.amazonaws.com/team/app)
    #[arg(long, env = "HOIST_REPOSITORY")]
    pub repository: String,

    /// Tag to point at the image (repeatable). Without tags the image is pushed by digest only
    #[arg(long = "tag", env = "HOIST_TAG", value_delimiter = ',')]
    pub tags: Vec<String>,

    /// Which image of a layout or archive holding several (its ref name, tag or digest)
    #[arg(long = "ref", env = "HOIST_REF")]
    pub reference: Option<String>,

    /// Repository to mount blobs from instead of uploading them (repeatable)
    #[arg(long, env = "HOIST_MOUNT_FROM", value_delimiter = ',')]
    pub mount_from: Vec<String>,

    /// Blobs uploaded in parallel
    #[arg(long, env = "HOIST_JOBS", default_value_t = 4)]
    pub jobs: usize,

    /// Create the repository if it does not exist (scan on push, immutable tags)
    #[arg(long, env = "HOIST_CREATE_REPOSITORY")]
    pub create_repository: bool,

    /// Also write the digest to this file
    #[arg(long, env = "HOIST_DIGEST_FILE", help_heading = IMAGE)]
    pub digest_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = IMAGE)]
pub struct GateArgs {
    /// The pushed image, by digest: REPO@sha256:…, an image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@sha256:…), or the digest with --repository
    #[arg(env = "HOIST_IMAGE")]
    pub image: String,

    /// ECR repository, when IMAGE is a bare digest
    #[arg(long, env = "HOIST_REPOSITORY")]
    pub repository: Option<String>,

    /// How long to wait for the scan overall (e.g. 90s, 10m, 1h)
    #[arg(long, env = "HOIST_TIMEOUT", default_value = "10m", value_parser = crate::duration::parse, help_heading = GATE)]
    pub timeout: std::time::Duration,

    #[command(flatten)]
    pub options: GateOptions,
}

/// The gate's policy and reports; `hoist ship` takes the same flags.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = GATE)]
pub struct GateOptions {
    /// Block on findings at or above this severity: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED (any case)
    #[arg(long, env = "HOIST_SEVERITY_THRESHOLD", default_value = "HIGH", value_parser = crate::scan::verdict::Severity::from_str)]
    pub severity_threshold: crate::scan::verdict::Severity,

    /// Count limits per severity, e.g. HIGH=0,MEDIUM=10; a severity given a limit is judged by it instead of the threshold
    #[arg(long, env = "HOIST_MAX", value_delimiter = ',', value_parser = crate::scan::verdict::parse_limit)]
    pub max: Vec<(crate::scan::verdict::Severity, u32)>,

    /// Allow-list file (TOML): [[allow]] entries with id, reason, optional package and expires
    #[arg(long, env = "HOIST_ALLOWLIST")]
    pub allowlist: Option<PathBuf>,

    /// When no scan result can be had (FAILED, UNSUPPORTED_IMAGE, timeout…): fail with exit code 3 (true, the default) or only warn (false)
    #[arg(long, env = "HOIST_FAIL_ON_SCAN_ERROR", default_value_t = true, num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    pub fail_on_scan_error: bool,

    /// Also write the findings as SARIF 2.1.0 (GitHub code scanning)
    #[arg(long, env = "HOIST_SARIF", help_heading = GATE)]
    pub sarif: Option<PathBuf>,

    /// Also write GitLab's container-scanning report (artifacts: reports: container_scanning)
    #[arg(long, env = "HOIST_GITLAB_REPORT", help_heading = GATE)]
    pub gitlab_report: Option<PathBuf>,

    /// First pause between scan polls; it grows by half each poll, up to 30 s
    #[arg(long, env = "HOIST_POLL_INTERVAL", default_value = "5s", value_parser = crate::duration::parse)]
    pub poll_interval: std::time::Duration,

    /// Enhanced scanning: how long an empty or unmatched result must hold still after COMPLETE before it counts (aws/aws-sdk#289)
    #[arg(long, env = "HOIST_FINDINGS_SETTLE", default_value = "30s", value_parser = crate::duration::parse)]
    pub findings_settle: std::time::Duration,
}

#[derive(Debug, Clone, Args)]
pub struct AuthArgs {
    /// Hand the credentials to later steps: $GITHUB_ENV on GitHub (masked), the --dotenv file if given, otherwise `export` lines on stdout
    #[arg(long, env = "HOIST_EXPORT", help_heading = OUTPUT)]
    pub export: bool,
}

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    /// The role's trust policy to check against this token: `aws iam get-role --role-name NAME` output, or the policy document
    #[arg(long, env = "HOIST_TRUST_POLICY", help_heading = AUTH)]
    pub trust_policy: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = IMAGE)]
pub struct DeployArgs {
    /// The pushed image, by digest: REPO@sha256:…, an image URI (ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@sha256:…), or a digest with --repository
    #[arg(env = "HOIST_IMAGE")]
    pub image: String,

    /// The ECR repository, when IMAGE is a bare digest
    #[arg(long, env = "HOIST_REPOSITORY")]
    pub repository: Option<String>,

    /// The longest hoist waits for Lambda to finish an update (each wait), e.g. 300s, 10m
    #[arg(long, env = "HOIST_TIMEOUT", default_value = "10m", value_parser = crate::duration::parse_timeout, help_heading = DEPLOY)]
    pub timeout: std::time::Duration,

    /// Check everything and print the plan; write nothing
    #[arg(long, env = "HOIST_DRY_RUN", help_heading = DEPLOY)]
    pub dry_run: bool,

    #[command(flatten)]
    pub options: DeployOptions,
}

/// How to deploy: the deploy stage's own options (flattened into `ship`).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = DEPLOY)]
pub struct DeployOptions {
    /// The Lambda function (name or ARN); it must be a container-image function. (`hoist ship` without it stops after the gate)
    #[arg(long, env = "HOIST_FUNCTION")]
    pub function: Option<String>,

    /// The alias to move (created when missing)
    #[arg(long, env = "HOIST_ALIAS")]
    pub alias: Option<String>,

    /// all-at-once, canary:10%:5m, linear:10%:1m, or a CodeDeploy name (LambdaCanary10Percent5Minutes, LambdaLinear10PercentEvery1Minute, …)
    #[arg(long, env = "HOIST_STRATEGY", default_value = "all-at-once")]
    pub strategy: String,

    /// CloudWatch alarm to watch during every bake (repeatable); ALARM rolls the alias back
    #[arg(long = "alarm", env = "HOIST_ALARM", value_delimiter = ',')]
    pub alarms: Vec<String>,

    /// Switch the function to this architecture with the new image (x86_64 or arm64)
    #[arg(long, env = "HOIST_ARCHITECTURE", value_enum)]
    pub architecture: Option<ArchArg>,

    /// Invoke the new version with this JSON event before any traffic moves; a function error stops the deploy
    #[arg(long, env = "HOIST_SMOKE_EVENT")]
    pub smoke_event: Option<PathBuf>,

    /// Text the smoke test's response must contain
    #[arg(long, env = "HOIST_SMOKE_EXPECT")]
    pub smoke_expect: Option<String>,

    /// Take over an alias that another deployment left split between versions
    #[arg(long, env = "HOIST_FORCE")]
    pub force: bool,

    /// Deploy even if an --alarm is already in ALARM (it counts again once it recovers)
    #[arg(long, env = "HOIST_IGNORE_ALARMS_AT_START")]
    pub ignore_alarms_at_start: bool,

    /// Also watch the Errors metric of the new version behind the alias during every bake
    #[arg(long, env = "HOIST_WATCH_ERRORS")]
    pub watch_errors: bool,

    /// With --watch-errors: roll back when the new version has more errors than this
    #[arg(long, env = "HOIST_MAX_ERRORS", default_value_t = 0)]
    pub max_errors: u64,
}

#[derive(Debug, Clone, Args)]
#[command(next_help_heading = DEPLOY)]
pub struct RollbackArgs {
    /// The Lambda function (name or ARN)
    #[arg(long, env = "HOIST_FUNCTION")]
    pub function: String,

    /// The alias to move back
    #[arg(long, env = "HOIST_ALIAS")]
    pub alias: String,

    /// Go back to the recorded previous version even if the alias was moved since, outside hoist
    #[arg(long, env = "HOIST_FORCE")]
    pub force: bool,
}

/// `--architecture`, as Lambda names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchArg {
    #[value(name = "x86_64")]
    X86_64,
    #[value(name = "arm64")]
    Arm64,
}

impl From<ArchArg> for crate::deploy::platform::Arch {
    fn from(a: ArchArg) -> Self {
        match a {
            ArchArg::X86_64 => crate::deploy::platform::Arch::X86_64,
            ArchArg::Arm64 => crate::deploy::platform::Arch::Arm64,
        }
    }
}

impl DeployOptions {
    /// The deploy's flags as the deploy stage takes them.
    pub fn flags(&self, timeout: std::time::Duration) -> crate::deploy::settings::Flags {
        crate::deploy::settings::Flags {
            function: self.function.clone(),
            alias: self.alias.clone(),
            strategy: self.strategy.clone(),
            alarms: self.alarms.clone(),
            architecture: self.architecture.map(Into::into),
            smoke_event: self.smoke_event.clone(),
            smoke_expect: self.smoke_expect.clone(),
            force: self.force,
            ignore_alarms_at_start: self.ignore_alarms_at_start,
            watch_errors: self.watch_errors,
            max_errors: self.max_errors,
            timeout,
        }
    }
}

impl TryFrom<&DeployArgs> for crate::deploy::Settings {
    type Error = crate::error::ConfigError;

    fn try_from(a: &DeployArgs) -> Result<Self, Self::Error> {
        a.options.flags(a.timeout).try_into()
    }
}

impl TryFrom<&RollbackArgs> for crate::deploy::Rollback {
    type Error = crate::error::ConfigError;

    fn try_from(a: &RollbackArgs) -> Result<Self, Self::Error> {
        crate::deploy::Rollback::new(a.function.clone(), a.alias.clone(), a.force)
    }
}

impl GateOptions {
    /// The gate's flags as the gate stage takes them.
    pub fn flags(&self, timeout: std::time::Duration) -> crate::scan::settings::Flags {
        crate::scan::settings::Flags {
            severity_threshold: self.severity_threshold,
            max: self.max.clone(),
            allowlist: self.allowlist.clone(),
            fail_on_scan_error: self.fail_on_scan_error,
            sarif: self.sarif.clone(),
            gitlab_report: self.gitlab_report.clone(),
            poll_interval: self.poll_interval,
            findings_settle: self.findings_settle,
            timeout,
        }
    }
}

impl TryFrom<&GateArgs> for crate::scan::Settings {
    type Error = crate::error::ConfigError;

    fn try_from(a: &GateArgs) -> Result<Self, Self::Error> {
        a.options.flags(a.timeout).try_into()
    }
}

impl TryFrom<&PushArgs> for crate::push::Settings {
    type Error = crate::error::ConfigError;

    fn try_from(a: &PushArgs) -> Result<Self, Self::Error> {
        crate::push::Settings::new(crate::push::Settings {
            source: a.source.clone(),
            repository: a.repository.clone(),
            registry: None,
            tags: a.tags.clone(),
            reference: a.reference.clone(),
            mount_from: a.mount_from.clone(),
            jobs: a.jobs,
            create_repository: a.create_repository,
            digest_file: a.digest_file.clone(),
        })
    }
}

impl TryFrom<&ShipArgs> for crate::ship::Settings {
    type Error = crate::error::ConfigError;

    /// Every stage's settings, built (and so checked) before the first
    /// stage runs.
    fn try_from(a: &ShipArgs) -> Result<Self, Self::Error> {
        let deploy = a.deploy.flags(a.deploy_timeout);
        Ok(crate::ship::Settings {
            push: (&a.push).try_into()?,
            gate: a.gate.flags(a.scan_timeout).try_into()?,
            deploy: if deploy.wanted() {
                Some(deploy.try_into()?)
            } else {
                None
            },
            dry_run: a.dry_run,
        })
    }
}

impl Global {
    /// The authentication flags as the auth stage takes them.
    pub fn auth_flags(&self) -> crate::auth::settings::Flags {
        crate::auth::settings::Flags {
            role_arn: self.role_arn.clone(),
            chain_role_arn: self.chain_role_arn.clone(),
            duration: self.duration,
            session_policy: self.session_policy.clone(),
            audience: self.audience.clone(),
            id_token_file: self.id_token_file.clone(),
            id_token_env: self.id_token_env.clone(),
            region: self.region.clone(),
            session_name: self.role_session_name.clone(),
            allowed_accounts: self.allowed_account_ids.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// clap's own checks of the definitions: no two flags of a command
    /// share a name (ship flattens push's, the gate's and the deploy's),
    /// defaults parse, and so on.
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    /// Every option of every command sits under one of the headings, so a
    /// new flag without one fails here instead of landing in a flat list.
    #[test]
    fn every_option_has_a_heading() {
        use clap::CommandFactory;
        let cmd = Cli::command();
        let headings = [IMAGE, AUTH, GATE, DEPLOY, OUTPUT, GLOBAL];
        let subs: Vec<&clap::Command> = cmd.get_subcommands().collect();
        for (name, args) in std::iter::once(("hoist", cmd.get_arguments().collect::<Vec<_>>()))
            .chain(
                subs.iter()
                    .map(|s| (s.get_name(), s.get_arguments().collect())),
            )
        {
            for a in args {
                // --help, --version and the describing commands' own arguments.
                if a.get_long().is_none()
                    || matches!(a.get_id().as_str(), "help" | "version")
                    || matches!(name, "config" | "completions" | "man" | "schema")
                {
                    continue;
                }
                let h = a.get_help_heading();
                assert!(
                    h.is_some_and(|h| headings.contains(&h)),
                    "hoist {name} --{}: heading {h:?}",
                    a.get_long().unwrap_or_default()
                );
            }
        }
    }
}
