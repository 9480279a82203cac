//! How traffic moves to the new version (`--strategy`), and the routing
//! steps that follow from it. Pure: parsed and planned here, carried out in
//! `shift.rs`.
//!
//! Users know CodeDeploy's names (LambdaCanary10Percent5Minutes…), so those
//! are accepted as they are; the compact form `canary:10%:5m` /
//! `linear:10%:1m` takes any percentage and any bake, seconds included.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use crate::error::ConfigError;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    AllAtOnce,
    /// `percent` of the traffic for `bake`, then all of it.
    Canary {
        percent: u32,
        #[serde(with = "secs")]
        #[schemars(with = "u64")]
        bake: Duration,
    },
    /// `percent` more every `bake` until all of it.
    Linear {
        percent: u32,
        #[serde(with = "secs")]
        #[schemars(with = "u64")]
        bake: Duration,
    },
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// One routing step: the new version's share of the traffic, held for `bake`
/// while the alarms are watched.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Step {
    /// Percent of the traffic on the new version (1–99).
    pub percent: u32,
    #[serde(rename = "bake_secs", with = "secs")]
    pub bake: Duration,
}

const USAGE: &str = "use all-at-once, canary:PERCENT%:BAKE, linear:PERCENT%:BAKE (BAKE like 30s, 5m, 1h), or a CodeDeploy name such as LambdaCanary10Percent5Minutes (also CodeDeployDefault.LambdaCanary10Percent5Minutes, or SAM's Canary10Percent5Minutes) or LambdaLinear10PercentEvery1Minute";

impl Strategy {
    pub fn parse(raw: &str) -> Result<Strategy, ConfigError> {
        let s = raw.trim();
        let bad = |why: &str| ConfigError::new(format!("--strategy '{raw}' {why}")).hint(USAGE);
        let lower = s.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "all-at-once" | "allatonce" | "lambdaallatonce" | "codedeploydefault.lambdaallatonce"
        ) {
            return Ok(Strategy::AllAtOnce);
        }
        // The three spellings users know: CodeDeploy's full name
        // (CodeDeployDefault.LambdaCanary10Percent5Minutes), its short one
        // (LambdaCanary10Percent5Minutes), and SAM's DeploymentPreference
        // type (Canary10Percent5Minutes).
        let named = s.strip_prefix("CodeDeployDefault.").unwrap_or(s);
        let named = named.strip_prefix("Lambda").unwrap_or(named);
        if named == "AllAtOnce" {
            return Ok(Strategy::AllAtOnce);
        }
        if (named.starts_with("Canary") || named.starts_with("Linear")) && !named.contains(':') {
            return codedeploy(named)
                .ok_or_else(|| bad("is not a CodeDeploy Lambda configuration hoist knows"));
        }
        let mut parts = lower.split(':');
        let kind = parts.next().unwrap_or_default();
        let (Some(p), Some(t), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("is not a strategy"));
        };
        let percent = p
            .strip_suffix('%')
            .unwrap_or(p)
            .parse::<u32>()
            .map_err(|_| bad(&format!("has '{p}' where a percentage (1–99) belongs")))?;
        if !(1..=99).contains(&percent) {
            return Err(bad(&format!(
                "shifts {percent}%: use 1 to 99 (all-at-once is 100)"
            )));
        }
        let bake = crate::duration::parse(t).map_err(|_| {
            bad(&format!(
                "has '{t}' where a duration (30s, 5m, 1h, 1m30s) belongs"
            ))
        })?;
        if bake.is_zero() {
            return Err(bad("bakes for 0 s: alarms need time to fire"));
        }
        match kind {
            "canary" => Ok(Strategy::Canary { percent, bake }),
            "linear" => Ok(Strategy::Linear { percent, bake }),
            _ => Err(bad("is not a strategy")),
        }
    }

    /// The weighted steps before the alias moves wholly to the new version.
    /// Empty for all-at-once.
    pub fn steps(&self) -> Vec<Step> {
        match *self {
            Strategy::AllAtOnce => vec![],
            Strategy::Canary { percent, bake } => vec![Step { percent, bake }],
            Strategy::Linear { percent, bake } => (1..)
                .map(|i| i * percent)
                .take_while(|p| *p < 100)
                .map(|percent| Step { percent, bake })
                .collect(),
        }
    }

    /// The steps left for a shift that stands at `percent` on the new
    /// version (an interrupted deployment, resumed): that weight, baked
    /// again in full (how long it had baked is not known), then the
    /// strategy's steps above it. All at once: none, straight to 100 %.
    pub fn steps_from(&self, percent: u32) -> Vec<Step> {
        let steps = self.steps();
        let Some(bake) = steps.first().map(|s| s.bake) else {
            return vec![];
        };
        let percent = percent.clamp(1, 99);
        std::iter::once(Step { percent, bake })
            .chain(steps.into_iter().filter(|s| s.percent > percent))
            .collect()
    }

    /// The strategy as `--strategy` takes it, without spaces (for the
    /// alias's record): `all-at-once`, `canary:10%:5m`, `linear:10%:1m`.
    pub fn compact(&self) -> String {
        match self {
            Strategy::AllAtOnce => "all-at-once".into(),
            Strategy::Canary { percent, bake } => format!("canary:{percent}%:{}", show(*bake)),
            Strategy::Linear { percent, bake } => format!("linear:{percent}%:{}", show(*bake)),
        }
    }

    /// How long the shift bakes in all.
    pub fn total_bake(&self) -> Duration {
        self.steps().iter().map(|s| s.bake).sum()
    }
}

/// `Canary10Percent5Minutes`, `Linear10PercentEvery1Minute`, … (after
/// `Lambda`). CodeDeploy's names follow this one pattern; its predefined list
/// (5/10/15/30 minutes, every 1/2/3/10 minutes) is a subset.
fn codedeploy(rest: &str) -> Option<Strategy> {
    let (kind, rest) = if let Some(r) = rest.strip_prefix("Canary") {
        ("canary", r)
    } else {
        ("linear", rest.strip_prefix("Linear")?)
    };
    let (percent, rest) = rest.split_once("Percent")?;
    let percent: u32 = percent.parse().ok()?;
    let rest = if kind == "linear" {
        rest.strip_prefix("Every")?
    } else {
        rest
    };
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    let n: u64 = digits.parse().ok()?;
    if !matches!(&rest[digits.len()..], "Minute" | "Minutes")
        || n == 0
        || !(1..=99).contains(&percent)
    {
        return None;
    }
    let bake = Duration::from_secs(n * 60);
    Some(if kind == "canary" {
        Strategy::Canary { percent, bake }
    } else {
        Strategy::Linear { percent, bake }
    })
}

pub use crate::duration::show;

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::AllAtOnce => f.write_str("all-at-once"),
            Strategy::Canary { percent, bake } => {
                write!(f, "canary {percent}% for {}, then 100%", show(*bake))
            }
            Strategy::Linear { percent, bake } => {
                write!(f, "linear +{percent}% every {}", show(*bake))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_of_an_interrupted_shift() {
        let step = |percent, bake| Step {
            percent,
            bake: Duration::from_secs(bake),
        };
        let canary = Strategy::parse("canary:10%:5m").unwrap();
        let linear = Strategy::parse("linear:25%:1m").unwrap();
        let cases: Vec<(Strategy, u32, Vec<Step>)> = vec![
            (canary, 10, vec![step(10, 300)]),
            (linear, 25, vec![step(25, 60), step(50, 60), step(75, 60)]),
            (linear, 50, vec![step(50, 60), step(75, 60)]),
            // Left at a weight the strategy does not have (another run's).
            (linear, 60, vec![step(60, 60), step(75, 60)]),
            (canary, 0, vec![step(1, 300), step(10, 300)]),
            (Strategy::AllAtOnce, 30, vec![]),
        ];
        for (s, at, want) in cases {
            assert_eq!(s.steps_from(at), want, "{s} at {at}%");
        }
        for (s, raw) in [
            (canary, "canary:10%:5m"),
            (linear, "linear:25%:1m"),
            (Strategy::AllAtOnce, "all-at-once"),
        ] {
            assert_eq!(s.compact(), raw);
            assert_eq!(Strategy::parse(raw).unwrap(), s);
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn names_and_forms_users_write() {
        let cases: &[(&str, Strategy)] = &[
            ("all-at-once", Strategy::AllAtOnce),
            ("LambdaAllAtOnce", Strategy::AllAtOnce),
            ("CodeDeployDefault.LambdaAllAtOnce", Strategy::AllAtOnce),
            ("AllAtOnce", Strategy::AllAtOnce),
            (
                "Canary10Percent5Minutes",
                Strategy::Canary {
                    percent: 10,
                    bake: secs(300),
                },
            ),
            (
                "CodeDeployDefault.LambdaCanary10Percent15Minutes",
                Strategy::Canary {
                    percent: 10,
                    bake: secs(900),
                },
            ),
            (
                "Linear10PercentEvery2Minutes",
                Strategy::Linear {
                    percent: 10,
                    bake: secs(120),
                },
            ),
            (
                "LambdaCanary10Percent5Minutes",
                Strategy::Canary {
                    percent: 10,
                    bake: secs(300),
                },
            ),
            (
                "LambdaCanary10Percent30Minutes",
                Strategy::Canary {
                    percent: 10,
                    bake: secs(1800),
                },
            ),
            (
                "LambdaLinear10PercentEvery1Minute",
                Strategy::Linear {
                    percent: 10,
                    bake: secs(60),
                },
            ),
            (
                "LambdaLinear10PercentEvery10Minutes",
                Strategy::Linear {
                    percent: 10,
                    bake: secs(600),
                },
            ),
            (
                "canary:10%:5m",
                Strategy::Canary {
                    percent: 10,
                    bake: secs(300),
                },
            ),
            (
                "canary:25:2s",
                Strategy::Canary {
                    percent: 25,
                    bake: secs(2),
                },
            ),
            (
                "linear:10%:1m",
                Strategy::Linear {
                    percent: 10,
                    bake: secs(60),
                },
            ),
            (
                "linear:50%:90",
                Strategy::Linear {
                    percent: 50,
                    bake: secs(90),
                },
            ),
            (
                "Canary:5%:1m30s",
                Strategy::Canary {
                    percent: 5,
                    bake: secs(90),
                },
            ),
        ];
        for (raw, want) in cases {
            assert_eq!(
                Strategy::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}")),
                *want,
                "{raw}"
            );
        }
    }

    #[test]
    fn refusals_name_the_problem() {
        let cases: &[(&str, &str)] = &[
            ("blue-green", "is not a strategy"),
            ("canary:10%", "is not a strategy"),
            ("canary:0%:5m", "use 1 to 99"),
            ("canary:100%:5m", "use 1 to 99"),
            ("canary:ten:5m", "where a percentage"),
            ("linear:10%:5d", "where a duration"),
            ("linear:10%:0s", "bakes for 0 s"),
            ("LambdaCanary10Percent5Hours", "CodeDeploy"),
            ("LambdaLinear10Percent1Minute", "CodeDeploy"),
        ];
        for (raw, want) in cases {
            let e = Strategy::parse(raw).unwrap_err();
            assert!(e.to_string().contains(want), "{raw}: {e}");
            assert!(
                e.hint.as_deref().unwrap().contains("canary:PERCENT%"),
                "{raw}"
            );
        }
    }

    #[test]
    fn steps() {
        let s = |p, t| Step {
            percent: p,
            bake: secs(t),
        };
        let cases: &[(Strategy, Vec<Step>)] = &[
            (Strategy::AllAtOnce, vec![]),
            (
                Strategy::Canary {
                    percent: 10,
                    bake: secs(300),
                },
                vec![s(10, 300)],
            ),
            (
                Strategy::Linear {
                    percent: 25,
                    bake: secs(60),
                },
                vec![s(25, 60), s(50, 60), s(75, 60)],
            ),
            (
                Strategy::Linear {
                    percent: 30,
                    bake: secs(5),
                },
                vec![s(30, 5), s(60, 5), s(90, 5)],
            ),
            (
                Strategy::Linear {
                    percent: 50,
                    bake: secs(1),
                },
                vec![s(50, 1)],
            ),
            (
                Strategy::Linear {
                    percent: 99,
                    bake: secs(1),
                },
                vec![s(99, 1)],
            ),
        ];
        for (strategy, want) in cases {
            assert_eq!(&strategy.steps(), want, "{strategy}");
        }
        assert_eq!(
            Strategy::Linear {
                percent: 10,
                bake: secs(60)
            }
            .total_bake(),
            secs(540)
        );
    }
}
