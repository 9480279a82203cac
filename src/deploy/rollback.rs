//! `hoist rollback`: point the alias back at the version it served before
//! the last hoist deploy (recorded in its description), or clear a split a
//! lost deploy left behind.

use serde::Serialize;

use super::error::DeployError;
use super::lambda::{Alias, Lambda};
use super::plan::{LATEST, routing};
use super::record::{Record, Shifting};
use super::settings::Rollback;
use crate::Context;
use crate::error::Error;

/// What `hoist rollback` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Move the alias wholly back to the recorded previous version.
    ToPrevious,
    /// The alias was left split (a deploy killed mid-shift): drop the
    /// additional version, keep the one that served before.
    ClearRouting,
}

/// The decision: the action, the version the alias leaves and the one it
/// goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub action: Action,
    pub from: String,
    pub to: String,
    /// The alias's description afterwards.
    pub record: String,
}

/// What `hoist rollback` would do to `alias`, or why it cannot.
pub fn decide(alias: &Alias, force: bool) -> Result<Decision, String> {
    if let Some((v, _)) = alias.split() {
        // A deploy's in-progress record says what the alias said before;
        // otherwise the description stays.
        let record = match Shifting::parse(&alias.description) {
            Some(s) if s.from == alias.version => s.undone(),
            _ => alias.description.clone(),
        };
        return Ok(Decision {
            action: Action::ClearRouting,
            from: v.to_string(),
            to: alias.version.clone(),
            record,
        });
    }
    let Some(r) = Record::parse(&alias.description) else {
        return Err(format!(
            "the alias has no record of a finished hoist deploy (its description is '{}'), so there is no previous version to go back to",
            super::outside(&alias.description)
        ));
    };
    if r.previous == LATEST {
        // Recorded by a deploy from an alias that followed $LATEST: that
        // code is gone ($LATEST is whatever was deployed since), so going
        // "back" to $LATEST would serve the new code.
        return Err(format!(
            "the recorded previous version is {LATEST}, which no longer holds the code the alias served before (UpdateFunctionCode replaced it): rolling back to it would serve the new code"
        ));
    }
    if alias.version != r.current && !force {
        return Err(format!(
            "the alias serves version {}, but the last hoist deploy left it on version {} (replacing {}): it was changed since, outside hoist",
            alias.version, r.current, r.previous
        ));
    }
    if alias.version == r.previous {
        return Err(format!(
            "the alias already serves version {}, the previous one",
            r.previous
        ));
    }
    Ok(Decision {
        action: Action::ToPrevious,
        from: alias.version.clone(),
        to: r.previous.clone(),
        // Swapped, so a second rollback rolls forward again.
        record: Record {
            current: r.previous,
            previous: alias.version.clone(),
        }
        .description(None),
    })
}

/// `hoist rollback`: what happened.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct RollbackReport {
    pub function: String,
    pub alias: String,
    pub alias_arn: String,
    pub from: String,
    pub to: String,
    pub action: Action,
    pub routing: String,
}

/// Read the alias, decide, and move it — compare-and-set on the RevisionId
/// just read, so a deploy moving it meanwhile is not overwritten.
pub async fn rollback(ctx: &Context, args: &Rollback) -> Result<RollbackReport, Error> {
    let sdk = ctx.aws().await?;
    let lambda = Lambda::new(sdk, &args.function, ctx.quiet);
    let alias = lambda.alias(&args.alias).await?.ok_or_else(|| {
        DeployError::refused(
            format!("function {} has no alias {}", args.function, args.alias),
            "check --function, --alias and --region",
        )
    })?;
    let d = decide(&alias, args.force).map_err(|why| {
        DeployError::refused(
            format!("cannot roll back {}: {why}", alias.arn),
            "point the alias yourself (aws lambda update-alias --function-name F --name A --function-version N); with a record but a moved alias, --force goes back to the recorded previous version",
        )
    })?;
    let a = lambda
        .route(
            &args.alias,
            &d.to,
            None,
            Some(&d.record),
            alias.revision_id.as_deref(),
        )
        .await?;
    Ok(RollbackReport {
        function: args.function.clone(),
        alias: args.alias.clone(),
        alias_arn: a.arn.clone(),
        routing: routing(&a.version, &a.weights),
        from: d.from,
        to: d.to,
        action: d.action,
    })
}

impl RollbackReport {
    pub fn summary_line(&self) -> String {
        match self.action {
            Action::ClearRouting => format!(
                "{}: cleared the split left by a deploy; version {} no longer takes traffic; routing {}",
                self.alias_arn, self.from, self.routing
            ),
            Action::ToPrevious => format!(
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
    use super::*;

    fn alias(version: &str, weights: &[(&str, f64)], description: &str) -> Alias {
        Alias {
            arn: "arn:aws:lambda:us-east-1:123456789012:function:f:live".into(),
            version: version.into(),
            weights: weights.iter().map(|(v, w)| (v.to_string(), *w)).collect(),
            description: description.into(),
            revision_id: None,
        }
    }

    #[test]
    fn what_rollback_does() {
        let text = "hoist: current=5 previous=4 image=aaaaaaaaaaaa";
        let shifting = format!(
            "hoist: shifting from=5 to=6 image=sha256:{} strategy=canary:10%:5m until=1 id=x before=4",
            "a".repeat(64)
        );
        let to = |from: &str, to: &str, record: &str| Decision {
            action: Action::ToPrevious,
            from: from.into(),
            to: to.into(),
            record: record.into(),
        };
        let clear = |from: &str, to: &str, record: &str| Decision {
            action: Action::ClearRouting,
            from: from.into(),
            to: to.into(),
            record: record.into(),
        };
        let cases: Vec<(Alias, bool, Result<Decision, &str>)> = vec![
            (
                alias("5", &[], text),
                false,
                Ok(to("5", "4", "hoist: current=4 previous=5")),
            ),
            // A split with a record of a finished deploy: cleared, record kept.
            (
                alias("5", &[("6", 0.2)], text),
                false,
                Ok(clear("6", "5", text)),
            ),
            // A split a lost deploy left: cleared, the record it had restored.
            (
                alias("5", &[("6", 0.2)], &shifting),
                false,
                Ok(clear("6", "5", "hoist: current=5 previous=4")),
            ),
            (
                alias("7", &[], text),
                false,
                Err("changed since, outside hoist"),
            ),
            (
                alias("7", &[], text),
                true,
                Ok(to("7", "4", "hoist: current=4 previous=7")),
            ),
            (alias("4", &[], text), true, Err("already serves version 4")),
            (
                alias("5", &[], "prod"),
                false,
                Err("no record of a finished hoist deploy"),
            ),
            // The in-progress record of a shift is no record to go back by.
            (
                alias("5", &[], &shifting),
                false,
                Err("no record of a finished hoist deploy"),
            ),
            // previous=$LATEST (an alias that followed $LATEST before a
            // deploy): refused, forced or not.
            (
                alias("5", &[], "hoist: current=5 previous=$LATEST"),
                false,
                Err("no longer holds the code"),
            ),
            (
                alias("7", &[], "hoist: current=5 previous=$LATEST"),
                true,
                Err("no longer holds the code"),
            ),
        ];
        for (a, force, want) in cases {
            let got = decide(&a, force);
            match want {
                Ok(w) => assert_eq!(got, Ok(w), "{a:?}"),
                Err(w) => assert!(got.as_ref().unwrap_err().contains(w), "{a:?}: {got:?}"),
            }
        }
    }
}
