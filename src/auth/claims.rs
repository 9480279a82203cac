//! What an OIDC token says about the job, read locally. hoist does not check
//! the signature (STS does); it decodes the claims to refuse what it can see
//! is wrong before calling STS — an expired token, another audience — and to
//! explain a refusal in the terms trust policies use.

use std::collections::BTreeMap;

use serde_json::Value;

use super::AuthError;
use crate::secret::Secret;

#[derive(Debug, Clone)]
pub struct Claims {
    map: BTreeMap<String, Value>,
}

/// The claims trust policies match on, in the order they are printed: the
/// standard ones, then each CI system's useful others.
const SHOWN: &[&str] = &[
    "iss",
    "aud",
    "sub",
    // GitHub
    "repository",
    "ref",
    "environment",
    "job_workflow_ref",
    "event_name",
    "workflow",
    "runner_environment",
    // GitLab
    "project_path",
    "namespace_path",
    "ref_type",
    "ref_protected",
    "pipeline_id",
    // Buildkite
    "organization_slug",
    "pipeline_slug",
    "build_branch",
    // CircleCI
    "oidc.circleci.com/org-id",
    "oidc.circleci.com/project-id",
    "oidc.circleci.com/vcs-origin",
    "oidc.circleci.com/vcs-ref",
    // Bitbucket
    "workspaceUuid",
    "repositoryUuid",
    "deploymentEnvironmentUuid",
    "branchName",
];

impl Claims {
    pub fn decode(token: &Secret) -> Result<Claims, AuthError> {
        let data =
            jsonwebtoken::dangerous::insecure_decode::<BTreeMap<String, Value>>(token.reveal())
                .map_err(|e| AuthError::NotAJwt {
                    reason: e.to_string(),
                })?;
        Ok(Claims { map: data.claims })
    }

    #[cfg(test)]
    pub fn from_json(v: Value) -> Claims {
        Claims {
            map: serde_json::from_value(v).unwrap(),
        }
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key)
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    pub fn issuer(&self) -> Option<&str> {
        self.str("iss")
    }

    pub fn subject(&self) -> Option<&str> {
        self.str("sub")
    }

    /// `aud` may be one string or a list of them.
    pub fn audiences(&self) -> Vec<String> {
        match self.map.get("aud") {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    }

    pub fn expires_at(&self) -> Option<i64> {
        self.map.get("exp").and_then(Value::as_i64)
    }

    /// What STS would refuse anyway, found without asking it: an expired
    /// token, or one minted for none of the `accepted` audiences. Returns the
    /// accepted audience the token carries.
    pub fn check(&self, accepted: &[String], now: i64) -> Result<String, AuthError> {
        if let Some(exp) = self.expires_at() {
            // STS allows little skew; neither does hoist.
            if exp <= now {
                return Err(AuthError::Expired {
                    // exp is the token's own number: any i64.
                    ago_secs: now.saturating_sub(exp),
                    claims: self.shown(),
                });
            }
        }
        let auds = self.audiences();
        match accepted.iter().find(|a| auds.contains(a)) {
            Some(a) => Ok(a.clone()),
            None => Err(AuthError::WrongAudience {
                wanted: accepted.to_vec(),
                found: auds.iter().map(|a| crate::text::external(a, 200)).collect(),
                claims: self.shown(),
            }),
        }
    }

    /// The claims worth showing a user comparing them with a trust policy.
    pub fn shown(&self) -> Vec<(String, String)> {
        SHOWN
            .iter()
            .filter_map(|k| {
                let v = self.map.get(*k)?;
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                // The token's text: one printable line, whatever it holds
                // (a claim cannot start a line of its own, a workflow
                // command among them).
                Some((k.to_string(), crate::text::external(&text, 300)))
            })
            .collect()
    }
}

/// `hoist-<ci>-<run id>` for CloudTrail, cut to what STS accepts: 2–64
/// characters of `[\w+=,.@-]`.
pub fn session_name(ci: &str, run: Option<&str>) -> String {
    let raw = match run {
        Some(r) if !r.is_empty() => format!("hoist-{ci}-{r}"),
        _ => format!("hoist-{ci}"),
    };
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    while name.len() < 2 {
        name.push('-');
    }
    name
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn checks_expiry_and_audience() {
        let c = Claims::from_json(
            json!({ "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com", "sub": "repo:o/r:ref:refs/heads/main", "exp": 1000 }),
        );
        let sts = ["sts.amazonaws.com".to_string()];
        assert_eq!(c.check(&sts, 999).unwrap(), "sts.amazonaws.com");
        assert!(matches!(
            c.check(&sts, 1000),
            Err(AuthError::Expired { ago_secs: 0, .. })
        ));
        assert!(matches!(
            c.check(&["sts.amazonaws.com.cn".to_string()], 10),
            Err(AuthError::WrongAudience { .. })
        ));
        let list = Claims::from_json(json!({ "aud": ["a", "sts.amazonaws.com"] }));
        assert!(list.check(&sts, 0).is_ok(), "no exp: STS decides");
        let either = ["org-1".to_string(), "sts.amazonaws.com".to_string()];
        assert_eq!(list.check(&either, 0).unwrap(), "sts.amazonaws.com");
        let err = c.check(&["x".into(), "y".into()], 10).unwrap_err();
        assert!(err.to_string().ends_with("not 'x' or 'y'"), "{err}");
    }

    /// The token's numbers and text are anyone's: the extremes of `exp`
    /// cannot overflow, and a claim cannot bring a line of its own.
    #[test]
    fn hostile_claims_stay_inert() {
        let c = Claims::from_json(json!({ "aud": "sts.amazonaws.com", "exp": i64::MIN }));
        let sts = ["sts.amazonaws.com".to_string()];
        assert!(matches!(
            c.check(&sts, i64::MAX),
            Err(AuthError::Expired {
                ago_secs: i64::MAX,
                ..
            })
        ));
        let c = Claims::from_json(
            json!({ "iss": "x", "sub": "repo:o/r\n::add-mask::x\r\u{1b}[2K", "exp": 1 }),
        );
        let sub = c.shown().into_iter().find(|(k, _)| k == "sub").unwrap().1;
        assert!(!sub.contains(['\n', '\r', '\u{1b}']), "{sub:?}");
        assert!(sub.contains("\\n::add-mask::x"), "{sub:?}");
    }

    #[test]
    fn shows_trust_policy_claims_in_order() {
        let c = Claims::from_json(
            json!({ "sub": "s", "iss": "i", "aud": "a", "environment": "prod", "jti": "x", "pipeline_id": 42 }),
        );
        let keys: Vec<_> = c
            .shown()
            .into_iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        assert_eq!(
            keys,
            [
                "iss=i",
                "aud=a",
                "sub=s",
                "environment=prod",
                "pipeline_id=42"
            ]
        );
    }

    #[test]
    fn session_names_fit_sts() {
        let table = [
            ("github", Some("123-1"), "hoist-github-123-1"),
            ("gitlab", Some("job/7 x"), "hoist-gitlab-job-7-x"),
            ("local", None, "hoist-local"),
            (
                "jenkins",
                Some("jenkins-folder/job name-#12"),
                "hoist-jenkins-jenkins-folder-job-name--12",
            ),
        ];
        for (ci, run, want) in table {
            assert_eq!(session_name(ci, run), want);
        }
        let long = session_name("buildkite", Some(&"x".repeat(100)));
        assert_eq!(long.len(), 64);
    }
}
