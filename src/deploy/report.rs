//! What a deploy reports: how it ended, the versions, the routing, the
//! plan, the timeline of the shift, and where the time went — as JSON
//! (`--output json`, CI outputs), as the log's summary, and as the step
//! summary's Markdown.

use std::time::Duration;

use serde::Serialize;

use super::strategy::Strategy;
use crate::error::{Class, Signal};
use crate::image::Digest;

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
        #[serde(serialize_with = "signal_name")]
        #[schemars(with = "String")]
        signal: Signal,
        exit_code: u8,
    },
}

impl End {
    pub fn interrupted(s: Signal) -> End {
        End::Interrupted {
            signal: s,
            exit_code: Class::Interrupted(s).exit_code(),
        }
    }
}

/// `SIGINT`, as the JSON report names it.
fn signal_name<S: serde::Serializer>(s: &Signal, to: S) -> Result<S::Ok, S::Error> {
    to.serialize_str(s.name())
}

/// One line of the timeline: seconds since the deploy began, and what.
#[derive(Debug, Clone, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Event {
    pub at_secs: f64,
    pub what: String,
}

/// Where a deploy's time went. The waits on AWS each count from their
/// first look to the look that found what they waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Timings {
    /// The whole deploy.
    #[serde(rename = "total_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub total: Duration,
    /// Waiting on AWS in all: the three below.
    #[serde(rename = "aws_wait_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub aws_wait: Duration,
    /// The function's update settling (LastUpdateStatus), including an
    /// update in progress waited out before hoist's own.
    #[serde(rename = "update_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub update: Duration,
    /// New versions becoming Active.
    #[serde(rename = "version_active_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub version_active: Duration,
    /// Provisioned concurrency becoming READY after each routing change.
    #[serde(rename = "provisioned_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub provisioned: Duration,
    /// The strategy's bakes (the alarms watched meanwhile).
    #[serde(rename = "bake_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub bake: Duration,
    /// Waiting for another deployment that held the alias.
    #[serde(rename = "other_deployment_secs", serialize_with = "secs")]
    #[schemars(with = "f64")]
    pub other_deployment: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(tenths(*d))
}

/// Seconds to a tenth, for the JSON document's `*_secs` numbers.
fn tenths(d: Duration) -> f64 {
    (d.as_secs_f64() * 10.0).round() / 10.0
}

impl Timings {
    /// `took 42.1s: 3.2s waiting on AWS (update 2s, version Active 1.2s,
    /// provisioned concurrency 0ms), 30s baking` — durations as hoist writes
    /// them everywhere (`duration::show`), as ship's line does.
    pub fn line(&self) -> String {
        let show = crate::duration::show;
        let mut s = format!(
            "took {}: {} waiting on AWS (update {}, version Active {}, provisioned concurrency {}), {} baking",
            show(self.total),
            show(self.aws_wait),
            show(self.update),
            show(self.version_active),
            show(self.provisioned),
            show(self.bake)
        );
        if !self.other_deployment.is_zero() {
            s.push_str(&format!(
                ", {} waiting for another deployment",
                show(self.other_deployment)
            ));
        }
        s
    }

    pub fn add_update(&mut self, d: Duration) {
        self.update += d;
        self.aws_wait += d;
    }

    pub fn add_version(&mut self, d: Duration) {
        self.version_active += d;
        self.aws_wait += d;
    }

    pub fn add_provisioned(&mut self, d: Duration) {
        self.provisioned += d;
        self.aws_wait += d;
    }
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
    pub timings: Timings,
}

impl Report {
    /// How the deploy failed, if it did (its exit code).
    pub fn class(&self) -> Option<Class> {
        match &self.end {
            End::RolledBack { .. } => Some(Class::Policy),
            End::Interrupted { signal, .. } => Some(Class::Interrupted(*signal)),
            End::Deployed | End::AlreadyServing | End::DryRun => None,
        }
    }

    /// The log's summary: what happened, then where the time went.
    pub fn summary_line(&self) -> String {
        format!("{}\n{}", self.result_line(), self.timings.line())
    }

    fn result_line(&self) -> String {
        let v = self.version.as_deref().unwrap_or("?");
        let previous = self.previous_version.as_deref().unwrap_or("?");
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
                "rolled back: {reason}; {} is back on version {previous} (routing {}); version {v} stays published",
                self.alias_arn, self.routing
            ),
            End::Interrupted { signal, .. } => format!(
                "interrupted by {}: {} restored to version {previous} (routing {})",
                signal.name(),
                self.alias_arn,
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
                format!(
                    "**interrupted** by {}; previous routing restored",
                    signal.name()
                )
            }
        };
        let mut md = format!(
            "### hoist deploy\n\n| | |\n|---|---|\n| result | {result} |\n| function | `{}` |\n| alias | `{}` |\n| image | `{}` |\n| new version | {} |\n| previous version | {} |\n| strategy | {} |\n| routing | {} |\n| alarms | {} |\n| time | {} |\n",
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
            },
            self.timings.line()
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

impl Report {
    /// `version`, `previous-version`, `alias-arn`, `routing`,
    /// `deployed-digest`, and the step summary.
    pub fn outputs_into(&self, o: &mut crate::ci::Outputs) {
        o.set("version", self.version.clone().unwrap_or_default());
        o.set(
            "previous-version",
            self.previous_version.clone().unwrap_or_default(),
        );
        o.set("alias-arn", self.alias_arn.clone());
        o.set("routing", self.routing.clone());
        o.set("deployed-digest", self.digest.to_string());
        o.summary = self.markdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_the_time_went() {
        let s = Duration::from_secs_f64;
        let mut t = Timings {
            total: s(42.06),
            bake: s(30.0),
            ..Default::default()
        };
        t.add_update(s(2.0));
        t.add_version(s(1.04));
        t.add_provisioned(s(0.5));
        assert_eq!(
            t.line(),
            "took 42.1s: 3.5s waiting on AWS (update 2s, version Active 1s, provisioned concurrency 500ms), 30s baking"
        );
        let json = serde_json::to_value(t).unwrap();
        assert_eq!(json["aws_wait_secs"], 3.5);
        assert_eq!(json["bake_secs"], 30.0);
        t.other_deployment = s(12.0);
        assert!(t.line().ends_with(", 12s waiting for another deployment"));
    }

    /// The signal by name and the exit code it ends the run with.
    #[test]
    fn interrupted_in_json() {
        let json = serde_json::to_value(End::interrupted(Signal::Term)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"result": "interrupted", "signal": "SIGTERM", "exit_code": 143})
        );
    }
}
