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

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Strategy {
    AllAtOnce,
    /// `percent` of the traffic for `bake`, then all of it.
    Canary {
        percent: u32,
        #[serde(with = "secs")]
        bake: Duration,
    },
    /// `percent` more every `bake` until all of it.
    Linear {
        percent: u32,
        #[serde(with = "secs")]
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

const USAGE: &str = "use all-at-once, canary:PERCENT%:BAKE, linear:PERCENT%:BAKE (BAKE like 30s, 5m, 1h), or a CodeDeploy name such as LambdaCanary10Percent5Minutes or LambdaLinear10PercentEvery1Minute";

impl Strategy {
    pub fn parse(raw: &str) -> Result<Strategy, ConfigError> {
        let s = raw.trim();
        let bad = |why: &str| ConfigError::new(format!("--strategy '{raw}' {why}")).hint(USAGE);
        let lower = s.to_ascii_lowercase();
        if matches!(
            lower.as_str(),
            "all-at-once" | "allatonce" | "lambdaallatonce"
        ) {
            return Ok(Strategy::AllAtOnce);
        }
        if let Some(rest) = s.strip_prefix("Lambda") {
            return codedeploy(rest)
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
        let bake = parse_duration(t).map_err(|why| bad(&why))?;
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

/// `30s`, `5m`, `1h`, `1m30s`, or plain seconds.
pub fn parse_duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if let Ok(n) = s.parse::<u64>() {
        return Ok(Duration::from_secs(n));
    }
    let mut total = 0u64;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            _ => {
                return Err(format!(
                    "has '{raw}' where a duration (30s, 5m, 1h) belongs"
                ));
            }
        };
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("has '{raw}' where a duration (30s, 5m, 1h) belongs"))?;
        total += n * unit;
        digits.clear();
    }
    if !digits.is_empty() || s.is_empty() {
        return Err(format!(
            "has '{raw}' where a duration (30s, 5m, 1h) belongs"
        ));
    }
    Ok(Duration::from_secs(total))
}

/// `5m`, `1m30s`, `45s`: how durations are shown.
pub fn show(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m{s}s"),
        (h, m, _) => format!("{h}h{m}m"),
    }
}

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

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn names_and_forms_users_write() {
        let cases: &[(&str, Strategy)] = &[
            ("all-at-once", Strategy::AllAtOnce),
            ("LambdaAllAtOnce", Strategy::AllAtOnce),
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

    #[test]
    fn durations() {
        for (raw, want) in [
            ("30s", 30),
            ("5m", 300),
            ("1h", 3600),
            ("1m30s", 90),
            ("45", 45),
        ] {
            assert_eq!(parse_duration(raw), Ok(secs(want)), "{raw}");
        }
        for bad in ["", "5x", "m", "1.5m", "-3s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for (d, want) in [(30, "30s"), (300, "5m"), (90, "1m30s"), (3660, "1h1m")] {
            assert_eq!(show(secs(d)), want);
        }
    }
}
