//! The Lambda edge: every call the deploy makes, the waits between them, and
//! what Lambda's answers mean.
//!
//! Retries: the SDK retries throttling, 5xx and network failures itself
//! (standard mode, see aws.rs). Two additions, both as configuration rather
//! than a second retry loop: TooManyRequestsException carries
//! `retryAfterSeconds` (the Retry-After header), which a classifier hands to
//! the SDK's backoff; and ResourceConflictException ("an update is in
//! progress") is not an error to retry blindly but a wait: hoist waits for
//! the function to settle, then makes the call again, within `--timeout`.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use aws_sdk_lambda::types::{AliasRoutingConfiguration, Architecture};
use aws_smithy_runtime_api::client::interceptors::context::InterceptorContext;
use aws_smithy_runtime_api::client::retries::classifiers::{
    ClassifyRetry, RetryAction, RetryClassifierPriority,
};
use aws_smithy_types::retry::ErrorKind;
use serde::Serialize;

use super::error::DeployError;
use super::platform::Arch;
use super::preflight::FunctionFacts;
use super::states::{self, Readiness};
use super::wait::{self, Waiter};

/// Lambda's TooManyRequestsException says when to come back
/// (`retryAfterSeconds`, sent as the Retry-After header); the SDK's own
/// classifiers know it is throttling but not the delay.
#[derive(Debug)]
struct RetryAfterSeconds;

impl ClassifyRetry for RetryAfterSeconds {
    fn classify_retry(&self, ctx: &InterceptorContext) -> RetryAction {
        let Some(res) = ctx.response() else {
            return RetryAction::NoActionIndicated;
        };
        if res.status().as_u16() != 429 {
            return RetryAction::NoActionIndicated;
        }
        match res
            .headers()
            .get("Retry-After")
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            Some(s) => RetryAction::retryable_error_with_explicit_delay(
                ErrorKind::ThrottlingError,
                Duration::from_secs(s),
            ),
            None => RetryAction::NoActionIndicated,
        }
    }

    fn name(&self) -> &'static str {
        "Lambda retryAfterSeconds"
    }

    fn priority(&self) -> RetryClassifierPriority {
        RetryClassifierPriority::run_after(RetryClassifierPriority::transient_error_classifier())
    }
}

/// The version an alias or an update names for "the function's current code".
pub const LATEST: &str = "$LATEST";

/// The function as GetFunction(Configuration) describes it.
#[derive(Debug, Clone)]
pub struct Function {
    pub facts: FunctionFacts,
    pub arn: String,
    pub role: String,
    /// DeadLetterConfig.TargetArn: weighted routing needs the same on both
    /// versions (or none on either).
    pub dead_letter: Option<String>,
    pub revision_id: Option<String>,
    pub code_sha256: Option<String>,
    pub description: String,
    pub image_uri: Option<String>,
    pub resolved_image_uri: Option<String>,
}

/// An alias as GetAlias describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alias {
    pub arn: String,
    pub version: String,
    /// Additional versions and their weights (0.0–1.0); Lambda allows one.
    pub weights: Vec<(String, f64)>,
    pub description: String,
    #[serde(skip)]
    pub revision_id: Option<String>,
}

impl Alias {
    /// The additional version taking a share of the traffic, if any (a
    /// weight of 0 left behind is no share).
    pub fn split(&self) -> Option<(&str, f64)> {
        self.weights
            .iter()
            .find(|(_, w)| *w > 0.0)
            .map(|(v, w)| (v.as_str(), *w))
    }
}

/// An alias's provisioned concurrency (GetProvisionedConcurrencyConfig).
#[derive(Debug, Clone, PartialEq)]
pub struct Provisioned {
    pub requested: i32,
    pub allocated: i32,
    /// IN_PROGRESS, READY or FAILED.
    pub status: String,
    pub reason: String,
}

pub struct Lambda {
    client: aws_sdk_lambda::Client,
    pub function: String,
    quiet: bool,
}

impl Lambda {
    pub fn new(sdk: &aws_config::SdkConfig, function: &str, quiet: bool) -> Lambda {
        let conf = aws_sdk_lambda::config::Builder::from(sdk)
            .retry_classifier(RetryAfterSeconds)
            .build();
        Lambda {
            client: aws_sdk_lambda::Client::from_conf(conf),
            function: function.to_string(),
            quiet,
        }
    }

    pub fn say(&self, line: &str) {
        if !self.quiet {
            crate::output::say(line);
        }
    }

    /// The function (or one of its versions).
    pub async fn get(&self, qualifier: Option<&str>) -> Result<Function, DeployError> {
        let what = match qualifier {
            Some(q) => format!("{}:{q}", self.function),
            None => self.function.clone(),
        };
        let out = self
            .client
            .get_function()
            .function_name(&self.function)
            .set_qualifier(qualifier.map(str::to_string))
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("reading function {what}"), e))?;
        let c = out.configuration().ok_or_else(|| {
            DeployError::Answer(format!("GetFunction {what} returned no configuration"))
        })?;
        let arn = c.function_arn().unwrap_or_default().to_string();
        // arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]
        let parts: Vec<&str> = arn.split(':').collect();
        let arch = c
            .architectures()
            .first()
            .map(|a| a.as_str())
            .unwrap_or("x86_64");
        let overrides = c
            .image_config_response()
            .and_then(|r| r.image_config())
            .is_some_and(|ic| !ic.entry_point().is_empty() || !ic.command().is_empty());
        Ok(Function {
            facts: FunctionFacts {
                name: self.function.clone(),
                region: parts.get(3).unwrap_or(&"").to_string(),
                account: parts.get(4).unwrap_or(&"").to_string(),
                package_type: c
                    .package_type()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "Zip".into()),
                architecture: Arch::from_lambda(arch).unwrap_or(Arch::X86_64),
                overrides_entrypoint: overrides,
            },
            arn,
            role: c.role().unwrap_or_default().to_string(),
            dead_letter: c
                .dead_letter_config()
                .and_then(|d| d.target_arn())
                .filter(|a| !a.is_empty())
                .map(str::to_string),
            revision_id: c.revision_id().map(str::to_string),
            code_sha256: c.code_sha256().map(str::to_string),
            description: c.description().unwrap_or_default().to_string(),
            image_uri: out.code().and_then(|c| c.image_uri()).map(str::to_string),
            resolved_image_uri: out
                .code()
                .and_then(|c| c.resolved_image_uri())
                .map(str::to_string),
        })
    }

    /// Wait until the function is neither Pending nor InProgress. After
    /// hoist's own update (`ours`), a Failed update (or a Failed state) is
    /// the deploy's failure, with Lambda's reason; before it, an earlier
    /// failure is not hoist's business (the function still runs its previous
    /// code, and the update may fix it). States no deploy can use
    /// (Deleting, Deactivated…) fail either way.
    pub async fn settle(
        &self,
        ours: bool,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Function, DeployError> {
        let mut waiter = Waiter::new(wait::LAMBDA, deadline);
        loop {
            waiter.next().await;
            let out = self
                .client
                .get_function_configuration()
                .function_name(&self.function)
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(
                        format!("reading the state of function {}", self.function),
                        e,
                    )
                })?;
            let state = out.state().map(|s| s.as_str());
            let update = out.last_update_status().map(|s| s.as_str());
            match states::function(state, update, ours) {
                Readiness::Wait => {}
                Readiness::Ready if ours && update == Some("Failed") => {
                    return Err(DeployError::UpdateFailed {
                        function: self.function.clone(),
                        code: out
                            .last_update_status_reason_code()
                            .map(|c| c.as_str().to_string())
                            .unwrap_or_else(|| "Failed".into()),
                        reason: super::outside(
                            out.last_update_status_reason().unwrap_or("no reason given"),
                        ),
                    });
                }
                Readiness::Ready => return self.get(None).await,
                Readiness::Failed => {
                    return Err(DeployError::UpdateFailed {
                        function: self.function.clone(),
                        code: out
                            .state_reason_code()
                            .map(|c| c.as_str().to_string())
                            .unwrap_or_else(|| "Failed".into()),
                        reason: super::outside(out.state_reason().unwrap_or("no reason given")),
                    });
                }
                Readiness::Refuse(fix) => {
                    return Err(DeployError::NotReady {
                        what: format!("function {}", self.function),
                        state: state.unwrap_or_default().to_string(),
                        reason: super::outside(out.state_reason().unwrap_or_default()),
                        fix,
                    });
                }
            }
            if waiter.expired() {
                return Err(DeployError::Timeout {
                    what: format!(
                        "function {} to finish updating (LastUpdateStatus InProgress)",
                        self.function
                    ),
                    secs: timeout.as_secs(),
                });
            }
            if waiter.looks() == 1 {
                self.say(&format!(
                    "function {}: an update is in progress; waiting for it to finish",
                    self.function
                ));
            }
        }
    }

    /// Wait until a published version is Active (Lambda's
    /// PublishedVersionActive waiter), so that no invoke or traffic reaches
    /// a version still Pending. Returns whether it had to wait.
    pub async fn wait_version(
        &self,
        version: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<bool, DeployError> {
        let mut waiter = Waiter::new(wait::LAMBDA, deadline);
        loop {
            waiter.next().await;
            let out = self
                .client
                .get_function_configuration()
                .function_name(&self.function)
                .qualifier(version)
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(
                        format!(
                            "reading the state of version {version} of {}",
                            self.function
                        ),
                        e,
                    )
                })?;
            let state = out.state().map(|s| s.as_str());
            match states::version(state) {
                Readiness::Ready => return Ok(waiter.looks() > 1),
                Readiness::Wait => {}
                Readiness::Failed => {
                    return Err(DeployError::VersionFailed {
                        function: self.function.clone(),
                        version: version.to_string(),
                        code: out
                            .state_reason_code()
                            .map(|c| c.as_str().to_string())
                            .unwrap_or_else(|| "Failed".into()),
                        reason: super::outside(out.state_reason().unwrap_or("no reason given")),
                    });
                }
                Readiness::Refuse(fix) => {
                    return Err(DeployError::NotReady {
                        what: format!("version {version} of function {}", self.function),
                        state: state.unwrap_or_default().to_string(),
                        reason: super::outside(out.state_reason().unwrap_or_default()),
                        fix,
                    });
                }
            }
            if waiter.expired() {
                return Err(DeployError::Timeout {
                    what: format!(
                        "version {version} of function {} to become Active (it is {})",
                        self.function,
                        state.unwrap_or("?")
                    ),
                    secs: timeout.as_secs(),
                });
            }
            if waiter.looks() == 1 {
                self.say(&format!(
                    "version {version} is {}; waiting until it is Active before any traffic goes to it",
                    state.unwrap_or("?")
                ));
            }
        }
    }

    /// Make a write, waiting out "an update is in progress" (409
    /// ResourceConflictException) instead of failing on it.
    async fn through_conflicts<T, F, Fut>(
        &self,
        deadline: Instant,
        timeout: Duration,
        mut call: F,
    ) -> Result<T, DeployError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, DeployError>>,
    {
        // The call again at once once the function has settled; should
        // Lambda still say "in progress", with growing pauses.
        let mut retries = Waiter::new(wait::LAMBDA, deadline);
        loop {
            match call().await {
                Err(e) if e.code() == Some("ResourceConflictException") => {
                    if retries.expired() {
                        return Err(DeployError::Timeout {
                            what: format!(
                                "an update in progress on function {} to finish (ResourceConflictException)",
                                self.function
                            ),
                            secs: timeout.as_secs(),
                        });
                    }
                    self.say(&format!("function {}: Lambda says an update is in progress; waiting, then trying again", self.function));
                    self.settle(false, deadline, timeout).await?;
                    retries.next().await;
                }
                r => return r,
            }
        }
    }

    /// UpdateFunctionCode to `image_uri` (by digest), guarded by the
    /// RevisionId read just before: a concurrent change fails the call
    /// (PreconditionFailedException) instead of being overwritten.
    pub async fn update_code(
        &self,
        image_uri: &str,
        arch: Option<Arch>,
        revision_id: Option<&str>,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<(), DeployError> {
        self.through_conflicts(deadline, timeout, || async {
            self.client
                .update_function_code()
                .function_name(&self.function)
                .image_uri(image_uri)
                .set_architectures(arch.map(|a| vec![Architecture::from(a.lambda())]))
                .set_revision_id(revision_id.map(str::to_string))
                .send()
                .await
                .map(|_| ())
                .map_err(|e| {
                    let e = self.guarded(
                        format!("updating the code of function {}", self.function),
                        e,
                        "its RevisionId moved on after hoist read it",
                    );
                    match e.aws_message() {
                        Some(message) if states::deleted_image(message) => {
                            DeployError::UpdateFailed {
                                function: self.function.clone(),
                                code: "ImageDeleted".into(),
                                reason: message.to_string(),
                            }
                        }
                        _ => e,
                    }
                })
        })
        .await
    }

    fn guarded<E>(
        &self,
        op: String,
        e: aws_smithy_runtime_api::client::result::SdkError<
            E,
            aws_smithy_runtime_api::client::orchestrator::HttpResponse,
        >,
        what: &str,
    ) -> DeployError
    where
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata
            + std::error::Error
            + Send
            + Sync
            + 'static,
    {
        let e = DeployError::aws(op, e);
        if e.code() == Some("PreconditionFailedException") {
            DeployError::Changed {
                function: self.function.clone(),
                what: what.to_string(),
            }
        } else {
            e
        }
    }

    /// PublishVersion of exactly the code and configuration hoist just
    /// settled (CodeSha256 and RevisionId must still match). Returns the
    /// version number.
    pub async fn publish(
        &self,
        code_sha256: Option<&str>,
        revision_id: Option<&str>,
        description: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<String, DeployError> {
        self.through_conflicts(deadline, timeout, || async {
            let out = self
                .client
                .publish_version()
                .function_name(&self.function)
                .set_code_sha256(code_sha256.map(str::to_string))
                .set_revision_id(revision_id.map(str::to_string))
                .description(description)
                .send()
                .await
                .map_err(|e| {
                    let what =
                        "its code or configuration moved on before the version was published";
                    let e = self.guarded(
                        format!("publishing a version of function {}", self.function),
                        e,
                        what,
                    );
                    match (e.code(), e.aws_message()) {
                        (code, Some(message)) if states::code_sha_mismatch(code, message) => {
                            DeployError::Changed {
                                function: self.function.clone(),
                                what: format!("{what}: CodeSha256 no longer matched $LATEST"),
                            }
                        }
                        _ => e,
                    }
                })?;
            out.version()
                .map(str::to_string)
                .ok_or_else(|| DeployError::Answer("PublishVersion returned no version".into()))
        })
        .await
    }

    pub async fn alias(&self, name: &str) -> Result<Option<Alias>, DeployError> {
        match self
            .client
            .get_alias()
            .function_name(&self.function)
            .name(name)
            .send()
            .await
        {
            Ok(a) => Ok(Some(Alias {
                arn: a.alias_arn().unwrap_or_default().to_string(),
                version: a.function_version().unwrap_or_default().to_string(),
                weights: weights(a.routing_config()),
                description: a.description().unwrap_or_default().to_string(),
                revision_id: a.revision_id().map(str::to_string),
            })),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(DeployError::aws(
                format!("reading alias {}:{name}", self.function),
                e,
            )),
        }
    }

    /// Point the alias at `version`, with `extra` = (version, weight) taking
    /// a share, or none. `revision_id` (the one read just before) makes it a
    /// compare-and-set: a concurrent change fails it with
    /// [`DeployError::Moved`] instead of being overwritten.
    pub async fn route(
        &self,
        name: &str,
        version: &str,
        extra: Option<(&str, f64)>,
        description: Option<&str>,
        revision_id: Option<&str>,
    ) -> Result<Alias, DeployError> {
        let mut map = HashMap::new();
        if let Some((v, w)) = extra {
            map.insert(v.to_string(), w);
        }
        let routing = AliasRoutingConfiguration::builder()
            .set_additional_version_weights(Some(map))
            .build();
        let a = self
            .client
            .update_alias()
            .function_name(&self.function)
            .name(name)
            .function_version(version)
            .routing_config(routing)
            .set_description(description.map(str::to_string))
            .set_revision_id(revision_id.map(str::to_string))
            .send()
            .await
            .map_err(|e| {
                let e = DeployError::aws(format!("moving alias {}:{name}", self.function), e);
                // RevisionId makes UpdateAlias a compare-and-set: someone
                // else moved the alias since hoist read it.
                if e.code() == Some("PreconditionFailedException") {
                    DeployError::Moved {
                        alias: format!("{}:{name}", self.function),
                    }
                } else {
                    e
                }
            })?;
        Ok(Alias {
            arn: a.alias_arn().unwrap_or_default().to_string(),
            version: a.function_version().unwrap_or_default().to_string(),
            weights: weights(a.routing_config()),
            description: a.description().unwrap_or_default().to_string(),
            revision_id: a.revision_id().map(str::to_string),
        })
    }

    pub async fn create_alias(
        &self,
        name: &str,
        version: &str,
        description: &str,
    ) -> Result<Alias, DeployError> {
        let a = self
            .client
            .create_alias()
            .function_name(&self.function)
            .name(name)
            .function_version(version)
            .description(description)
            .send()
            .await
            .map_err(|e| DeployError::aws(format!("creating alias {}:{name}", self.function), e))?;
        Ok(Alias {
            arn: a.alias_arn().unwrap_or_default().to_string(),
            version: a.function_version().unwrap_or_default().to_string(),
            weights: vec![],
            description: a.description().unwrap_or_default().to_string(),
            revision_id: a.revision_id().map(str::to_string),
        })
    }

    /// Invoke a version directly (not through the alias: no user traffic).
    /// Returns the function error, if any, and the response payload.
    pub async fn invoke(
        &self,
        version: &str,
        payload: Vec<u8>,
    ) -> Result<(Option<String>, String), DeployError> {
        let out = self
            .client
            .invoke()
            .function_name(&self.function)
            .qualifier(version)
            .payload(aws_smithy_types::Blob::new(payload))
            .send()
            .await
            .map_err(|e| {
                DeployError::aws(
                    format!("invoking {}:{version} with the smoke event", self.function),
                    e,
                )
            })?;
        let body = out
            .payload()
            .map(|b| String::from_utf8_lossy(b.as_ref()).into_owned())
            .unwrap_or_default();
        Ok((out.function_error().map(str::to_string), body))
    }

    /// The alias's provisioned concurrency, if it has any. Lambda answers
    /// 404 (ProvisionedConcurrencyConfigNotFoundException, or
    /// ResourceNotFoundException) when there is none; any 404 means there is
    /// nothing to wait for. Other failures (a deployer without
    /// lambda:GetProvisionedConcurrencyConfig) come back as Err for the
    /// caller to warn about: the deploy still works, only without the wait.
    pub async fn provisioned(&self, alias: &str) -> Result<Option<Provisioned>, DeployError> {
        match self
            .client
            .get_provisioned_concurrency_config()
            .function_name(&self.function)
            .qualifier(alias)
            .send()
            .await
        {
            Ok(out) => Ok(Some(Provisioned {
                requested: out
                    .requested_provisioned_concurrent_executions()
                    .unwrap_or(0),
                allocated: out
                    .allocated_provisioned_concurrent_executions()
                    .unwrap_or(0),
                status: out
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                reason: super::outside(out.status_reason().unwrap_or_default()),
            })),
            Err(e)
                if e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
                    || e.as_service_error().is_some_and(|s| {
                        s.is_provisioned_concurrency_config_not_found_exception()
                    }) =>
            {
                Ok(None)
            }
            Err(e) => Err(DeployError::aws(
                format!(
                    "reading the provisioned concurrency of alias {}:{alias}",
                    self.function
                ),
                e,
            )),
        }
    }

    /// After a routing change: wait until Lambda has allocated the alias's
    /// provisioned concurrency again (READY), so that no bake measures cold
    /// starts the user pays to avoid. FAILED is the deploy's failure.
    pub async fn wait_provisioned(
        &self,
        alias: &str,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<Option<Provisioned>, DeployError> {
        let mut waiter = Waiter::new(wait::LAMBDA, deadline);
        loop {
            waiter.next().await;
            let Some(p) = self.provisioned(alias).await? else {
                return Ok(None);
            };
            match p.status.as_str() {
                "READY" => return Ok(Some(p)),
                "FAILED" => {
                    return Err(DeployError::Provisioned {
                        alias: format!("{}:{alias}", self.function),
                        reason: if p.reason.is_empty() {
                            "no reason given".into()
                        } else {
                            p.reason
                        },
                    });
                }
                _ => {}
            }
            if waiter.expired() {
                return Err(DeployError::Timeout {
                    what: format!(
                        "the provisioned concurrency of alias {}:{alias} to be READY ({} of {} allocated)",
                        self.function, p.allocated, p.requested
                    ),
                    secs: timeout.as_secs(),
                });
            }
        }
    }

    /// The highest published version number (for the dry run's plan).
    pub async fn latest_version(&self) -> Result<Option<u64>, DeployError> {
        let mut marker = None;
        let mut best = None;
        loop {
            let out = self
                .client
                .list_versions_by_function()
                .function_name(&self.function)
                .set_marker(marker)
                .send()
                .await
                .map_err(|e| {
                    DeployError::aws(
                        format!("listing the versions of function {}", self.function),
                        e,
                    )
                })?;
            for v in out.versions() {
                if let Some(n) = v.version().and_then(|v| v.parse::<u64>().ok()) {
                    best = best.max(Some(n));
                }
            }
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(best);
            }
        }
    }
}

fn weights(r: Option<&AliasRoutingConfiguration>) -> Vec<(String, f64)> {
    let mut w: Vec<(String, f64)> = r
        .and_then(|r| r.additional_version_weights())
        .map(|m| m.iter().map(|(k, v)| (k.clone(), *v)).collect())
        .unwrap_or_default();
    w.sort_by(|a, b| a.0.cmp(&b.0));
    w
}

/// The digest a version runs: the one hoist recorded when it published it,
/// else the one in its image URI (as deployed, or as Lambda resolved it).
pub fn digest_of(f: &Function) -> Option<crate::image::Digest> {
    super::provenance::digest_in(&f.description).or_else(|| {
        [f.image_uri.as_deref(), f.resolved_image_uri.as_deref()]
            .into_iter()
            .flatten()
            .find_map(|u| u.rsplit_once('@').and_then(|(_, d)| d.parse().ok()))
    })
}
