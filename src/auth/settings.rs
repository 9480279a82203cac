//! How to authenticate, checked before any call: the role ARNs, the
//! session length (and AWS's one-hour cap on chained sessions), the session
//! policy read, minified and measured against STS's limit. `cli.rs` builds
//! these from the flags; the auth stage knows nothing of clap.

use std::path::PathBuf;

use crate::error::ConfigError;

#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The role to assume with the CI job's OIDC token; None: the AWS
    /// default credential chain.
    pub role_arn: Option<String>,
    pub chain_role_arn: Option<String>,
    /// Session length in seconds.
    pub duration: Option<i32>,
    /// The session policy, minified, as STS is sent it.
    pub session_policy: Option<String>,
    pub audience: Option<String>,
    pub id_token_file: Option<PathBuf>,
    pub id_token_env: Option<String>,
    pub region: Option<String>,
    /// `--role-session-name`: instead of the generated hoist-<ci>-<run>.
    pub session_name: Option<String>,
    /// `--allowed-account-ids`: the accounts hoist may act in.
    pub allowed_accounts: Vec<String>,
}

/// The flags as given.
#[derive(Debug, Clone, Default)]
pub struct Flags {
    pub role_arn: Option<String>,
    pub chain_role_arn: Option<String>,
    pub duration: Option<i32>,
    pub session_policy: Option<PathBuf>,
    pub audience: Option<String>,
    pub id_token_file: Option<PathBuf>,
    pub id_token_env: Option<String>,
    pub region: Option<String>,
    pub session_name: Option<String>,
    pub allowed_accounts: Vec<String>,
}

impl TryFrom<Flags> for Settings {
    type Error = ConfigError;

    fn try_from(g: Flags) -> Result<Settings, ConfigError> {
        if let Some(arn) = &g.role_arn {
            check_arn("--role-arn", arn)?;
        }
        if let Some(chain) = &g.chain_role_arn {
            check_arn("--chain-role-arn", chain)?;
        }
        if let Some(d) = g.duration
            && !(900..=43200).contains(&d)
        {
            return Err(ConfigError::new(format!("--duration {d} is out of range")).hint("STS sessions last 900 to 43200 seconds (and at most the role's maximum session duration)"));
        }
        // AWS caps a role-chained session at one hour, whatever the role allows.
        if let (Some(d), Some(_)) = (g.duration, &g.chain_role_arn)
            && d > 3600
        {
            return Err(ConfigError::new(format!("--duration {d} is too long with --chain-role-arn"))
                    .hint("AWS limits a chained role session to 3600 seconds; hoist refreshes the credentials before they expire, so a shorter session is fine"));
        }
        let session_policy = match &g.session_policy {
            None => None,
            Some(path) => Some(session_policy(path)?),
        };
        if let Some(name) = &g.session_name {
            check_session_name(name)?;
        }
        for a in &g.allowed_accounts {
            if a.len() != 12 || !a.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::new(format!(
                    "--allowed-account-ids: '{}' is not an AWS account id",
                    crate::text::external(a, 40)
                ))
                .hint(
                    "account ids are 12 digits, e.g. 123456789012 (comma-separated for several)",
                ));
            }
        }
        Ok(Settings {
            role_arn: g.role_arn,
            chain_role_arn: g.chain_role_arn,
            duration: g.duration,
            session_policy,
            audience: g.audience,
            id_token_file: g.id_token_file,
            id_token_env: g.id_token_env,
            region: g.region,
            session_name: g.session_name,
            allowed_accounts: g.allowed_accounts,
        })
    }
}

/// STS's RoleSessionName: 2–64 characters of letters, digits and `_+=,.@-`.
fn check_session_name(name: &str) -> Result<(), ConfigError> {
    let ok = (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(format!(
            "--role-session-name '{}' is not a session name STS takes",
            crate::text::external(name, 80)
        ))
        .hint("2 to 64 letters, digits and _+=,.@- (CloudTrail shows it; e.g. deploy-$CI_JOB_ID)"))
    }
}

/// Whether `account` may be acted in (`--allowed-account-ids`; none given:
/// any).
pub fn allowed(allowed: &[String], account: &str) -> bool {
    allowed.is_empty() || allowed.iter().any(|a| a == account)
}

/// The policy file, minified: STS counts the characters it is sent, so it
/// goes without the file's indentation, and its limit is checked here.
fn session_policy(path: &std::path::Path) -> Result<String, ConfigError> {
    let text = crate::files::read_to_string(path, "--session-policy", crate::files::POLICY)?;
    let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Err(
            ConfigError::new(format!("--session-policy {} is not JSON", path.display()))
                .hint("give an IAM policy document"),
        );
    };
    let packed = doc.to_string();
    if packed.len() > 2048 {
        return Err(ConfigError::new(format!(
            "--session-policy {} is {} characters without whitespace; STS takes at most 2048",
            path.display(),
            packed.len()
        ))
        .hint("narrow it with fewer statements, or wildcards in resource ARNs"));
    }
    Ok(packed)
}

fn check_arn(flag: &str, arn: &str) -> Result<(), ConfigError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 6 || parts[0] != "arn" || parts[2] != "iam" || !parts[5].starts_with("role/") {
        return Err(ConfigError::new(format!(
            "{flag} '{}' is not an IAM role ARN",
            crate::text::external(arn, 200)
        ))
        .hint("e.g. arn:aws:iam::123456789012:role/ci-deploy"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_refused_before_any_call() {
        let role = || Some("arn:aws:iam::123456789012:role/ci".to_string());
        let table: Vec<(Flags, &str)> = vec![
            (
                Flags {
                    role_arn: Some("ci".into()),
                    ..Default::default()
                },
                "not an IAM role ARN",
            ),
            (
                Flags {
                    role_arn: role(),
                    chain_role_arn: Some("arn:aws:s3:::b".into()),
                    ..Default::default()
                },
                "--chain-role-arn",
            ),
            (
                Flags {
                    role_arn: role(),
                    duration: Some(60),
                    ..Default::default()
                },
                "out of range",
            ),
            (
                Flags {
                    role_arn: role(),
                    duration: Some(7200),
                    chain_role_arn: role(),
                    ..Default::default()
                },
                "too long with --chain-role-arn",
            ),
            (
                Flags {
                    role_arn: role(),
                    session_policy: Some("/nonexistent".into()),
                    ..Default::default()
                },
                "cannot be read",
            ),
        ];
        for (f, want) in table {
            let e = Settings::try_from(f).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("policy.json");
        std::fs::write(
            &p,
            "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}\n",
        )
        .unwrap();
        let s = Settings::try_from(Flags {
            role_arn: role(),
            session_policy: Some(p),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            s.session_policy.as_deref(),
            Some(r#"{"Version":"2012-10-17","Statement":[]}"#)
        );
    }
}
