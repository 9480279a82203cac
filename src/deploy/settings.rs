//! What a deploy (or a rollback) is asked to do, checked: the parsed
//! strategy, a valid alias name, the smoke event read and parsed — all
//! before any AWS call, so `hoist ship` can refuse a bad deploy before it
//! pushes. The command line's flags are turned into these by `cli.rs`; the
//! deploy stage knows nothing of clap.

use std::path::PathBuf;
use std::time::Duration;

use super::platform::Arch;
use super::strategy::Strategy;
use crate::error::ConfigError;

#[derive(Debug, Clone)]
pub struct Settings {
    pub function: String,
    pub alias: String,
    pub strategy: Strategy,
    pub alarms: Vec<String>,
    /// Switch the function to this architecture with the image.
    pub architecture: Option<Arch>,
    pub smoke: Option<Smoke>,
    pub force: bool,
    pub ignore_alarms_at_start: bool,
    /// `--watch-errors`: the most errors of the new version tolerated.
    pub max_errors: Option<u64>,
    /// The longest each wait for Lambda lasts.
    pub timeout: Duration,
}

/// `--smoke-event`, read: the payload (valid JSON) and the text its answer
/// must hold.
#[derive(Debug, Clone)]
pub struct Smoke {
    pub path: PathBuf,
    pub payload: Vec<u8>,
    pub expect: Option<String>,
}

/// The deploy's flags as given (all optional strings and switches).
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub function: Option<String>,
    pub alias: Option<String>,
    pub strategy: String,
    pub alarms: Vec<String>,
    pub architecture: Option<Arch>,
    pub smoke_event: Option<PathBuf>,
    pub smoke_expect: Option<String>,
    pub force: bool,
    pub ignore_alarms_at_start: bool,
    pub watch_errors: bool,
    pub max_errors: u64,
    pub timeout: Duration,
}

impl Flags {
    /// Whether a deploy was asked for at all (`hoist ship` without
    /// --function and --alias stops after the gate).
    pub fn wanted(&self) -> bool {
        self.function.is_some() || self.alias.is_some()
    }
}

impl TryFrom<Flags> for Settings {
    type Error = ConfigError;

    fn try_from(f: Flags) -> Result<Settings, ConfigError> {
        let (function, alias) = match (f.function, f.alias) {
            (Some(fun), Some(a)) => (fun, a),
            (None, _) => {
                return Err(ConfigError::new("which Lambda function?")
                    .hint("pass --function NAME (or set HOIST_FUNCTION)"));
            }
            (_, None) => {
                return Err(ConfigError::new("which alias of the function?")
                    .hint("pass --alias NAME (or set HOIST_ALIAS); it is created when missing"));
            }
        };
        check_function(&function)?;
        check_alias_name(&alias)?;
        let strategy = Strategy::parse(&f.strategy)?;
        let smoke = match (f.smoke_event, f.smoke_expect) {
            (None, Some(_)) => {
                return Err(ConfigError::new("--smoke-expect needs --smoke-event")
                    .hint("pass the event to invoke the new version with"));
            }
            (None, None) => None,
            (Some(path), expect) => {
                let payload = crate::files::read(&path, "--smoke-event", crate::files::EVENT)?;
                serde_json::from_slice::<serde_json::Value>(&payload).map_err(|e| {
                    ConfigError::new(format!("--smoke-event {} is not JSON", path.display()))
                        .source(e)
                        .hint("Lambda's Invoke takes a JSON payload")
                })?;
                Some(Smoke {
                    path,
                    payload,
                    expect,
                })
            }
        };
        for a in &f.alarms {
            if a.is_empty() || a.len() > 255 {
                return Err(
                    ConfigError::new(format!("--alarm '{a}' is not an alarm name"))
                        .hint("CloudWatch alarm names are 1 to 255 characters"),
                );
            }
        }
        Ok(Settings {
            function,
            alias,
            strategy,
            alarms: f.alarms,
            architecture: f.architecture,
            smoke,
            force: f.force,
            ignore_alarms_at_start: f.ignore_alarms_at_start,
            max_errors: f.watch_errors.then_some(f.max_errors),
            timeout: f.timeout,
        })
    }
}

/// `hoist rollback`'s settings.
#[derive(Debug, Clone)]
pub struct Rollback {
    pub function: String,
    pub alias: String,
    pub force: bool,
}

impl Rollback {
    pub fn new(function: String, alias: String, force: bool) -> Result<Rollback, ConfigError> {
        check_function(&function)?;
        check_alias_name(&alias)?;
        Ok(Rollback {
            function,
            alias,
            force,
        })
    }
}

/// A function name or ARN, as Lambda takes them (1–170 characters of
/// letters, digits, `-`, `_`, and the ARN's `:`).
fn check_function(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 170
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "--function '{}' is not a Lambda function name or ARN",
            crate::text::external(name, 100)
        ))
        .hint("a name like app, or arn:aws:lambda:REGION:ACCOUNT:function:app"))
    }
}

/// Lambda alias names: 1–128 of letters, digits, `-` and `_`, not all digits
/// (those are versions).
pub fn check_alias_name(name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        && !name.chars().all(|c| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "--alias '{}' is not a Lambda alias name",
            crate::text::external(name, 140)
        ))
        .hint(
            "use 1–128 letters, digits, - and _ (not only digits: those name versions), e.g. live",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> Flags {
        Flags {
            function: Some("app".into()),
            alias: Some("live".into()),
            strategy: "all-at-once".into(),
            timeout: Duration::from_secs(600),
            ..Default::default()
        }
    }

    #[test]
    fn what_is_refused_before_any_call() {
        let table: Vec<(Flags, &str)> = vec![
            (
                Flags {
                    function: None,
                    ..flags()
                },
                "which Lambda function",
            ),
            (
                Flags {
                    alias: None,
                    ..flags()
                },
                "which alias",
            ),
            (
                Flags {
                    alias: Some("12".into()),
                    ..flags()
                },
                "not a Lambda alias name",
            ),
            (
                Flags {
                    alias: Some("$LATEST".into()),
                    ..flags()
                },
                "not a Lambda alias name",
            ),
            (
                Flags {
                    function: Some("my app".into()),
                    ..flags()
                },
                "not a Lambda function name",
            ),
            (
                Flags {
                    strategy: "blue-green".into(),
                    ..flags()
                },
                "is not a strategy",
            ),
            (
                Flags {
                    smoke_expect: Some("ok".into()),
                    ..flags()
                },
                "needs --smoke-event",
            ),
            (
                Flags {
                    smoke_event: Some("/nonexistent/event.json".into()),
                    ..flags()
                },
                "cannot be read",
            ),
            (
                Flags {
                    alarms: vec![String::new()],
                    ..flags()
                },
                "not an alarm name",
            ),
        ];
        for (f, want) in table {
            let e = Settings::try_from(f).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let s = Settings::try_from(Flags {
            watch_errors: true,
            max_errors: 3,
            strategy: "Canary10Percent5Minutes".into(),
            ..flags()
        })
        .unwrap();
        assert_eq!(s.max_errors, Some(3));
        assert!(matches!(s.strategy, Strategy::Canary { percent: 10, .. }));
        assert!(
            !Flags {
                function: None,
                alias: None,
                ..flags()
            }
            .wanted()
        );
    }

    #[test]
    fn alias_names() {
        for ok in ["live", "prod-1", "a_b", "x"] {
            assert!(check_alias_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "12", "live!", "$LATEST", &"a".repeat(129)] {
            assert!(check_alias_name(bad).is_err(), "{bad}");
        }
    }
}
