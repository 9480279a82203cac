//! IAM trust policies for OIDC roles, as pure functions: the policy that
//! accepts exactly one job, and whether a given policy accepts a token — and
//! if not, which condition says no. This is what `hoist doctor` shows, so a
//! user never has to guess why STS refused.

use serde_json::{Value, json};

use super::claims::Claims;

/// `https://token.actions.githubusercontent.com` → the IAM provider's name
/// and the prefix of its condition keys: `token.actions.githubusercontent.com`.
pub fn provider_host(issuer: &str) -> String {
    issuer
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string()
}

/// How a trust policy matches this token's `sub` so that it still holds on
/// the job's next run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectMatch {
    /// The subject names only what stays (project, branch, environment…):
    /// StringEquals.
    Exact(String),
    /// The subject carries a per-run part, replaced by a wildcard:
    /// StringLike, and why.
    Like { pattern: String, why: &'static str },
}

/// One UUID in braces, as IAM's StringLike matches it (`?` is one
/// character): Bitbucket's step UUID, which is new on every run.
const BRACED_UUID: &str = "{????????-????-????-????-????????????}";

/// The subject's per-run parts, by issuer:
/// - Bitbucket: `{REPOSITORY}[:{ENVIRONMENT}]:{STEP}` — the step UUID is new
///   on every run (Atlassian, "Deploy on AWS using Bitbucket Pipelines
///   OpenID Connect"); kept: repository and environment.
/// - CircleCI: `org/ORG/project/PROJECT/user/USER[/vcs-origin/…/vcs-ref/…]`
///   — the user who triggered the pipeline changes; kept: organisation,
///   project, repository and ref (CircleCI's own example policies do this).
/// - Buildkite: `organization:…:pipeline:…:ref:…:commit:SHA:step:KEY` — the
///   commit changes with every build; kept: the rest.
///
/// Elsewhere (GitHub, GitLab, Jenkins) the subject holds still.
pub fn subject_match(claims: &Claims) -> SubjectMatch {
    let sub = claims.subject().unwrap_or("SUBJECT").to_string();
    let iss = claims.issuer().unwrap_or_default();
    let like = |pattern: String, why| {
        if pattern == sub {
            SubjectMatch::Exact(sub.clone())
        } else {
            SubjectMatch::Like { pattern, why }
        }
    };
    if iss.starts_with("https://api.bitbucket.org/") {
        if let Some((stable, step)) = sub.rsplit_once(':') {
            let braced_uuid =
                step.len() == BRACED_UUID.len() && step.starts_with('{') && step.ends_with('}');
            let any_step = if braced_uuid { BRACED_UUID } else { "*" };
            return like(
                format!("{stable}:{any_step}"),
                "Bitbucket puts the step UUID, new on every run, in sub",
            );
        }
    } else if iss.starts_with("https://oidc.circleci.com/") {
        if let Some((before, rest)) = sub.split_once("/user/") {
            let after = rest.find('/').map(|i| &rest[i..]).unwrap_or_default();
            return like(
                format!("{before}/user/*{after}"),
                "CircleCI puts the id of the user who triggered the pipeline in sub",
            );
        }
    } else if iss.trim_end_matches('/') == "https://agent.buildkite.com"
        && let Some((before, rest)) = sub.split_once(":commit:")
    {
        let after = rest.find(":step:").map(|i| &rest[i..]).unwrap_or_default();
        return like(
            format!("{before}:commit:*{after}"),
            "Buildkite puts the build's commit in sub",
        );
    }
    SubjectMatch::Exact(sub)
}

/// A trust policy that accepts this token's issuer and audience, and its
/// subject as [`subject_match`] says: this job (its branch, environment,
/// project…), on this run and the next ones, nothing wider.
pub fn policy_for(claims: &Claims, audience: &str, account: Option<&str>) -> Value {
    let host = provider_host(claims.issuer().unwrap_or("ISSUER"));
    let account = account.unwrap_or("ACCOUNT_ID");
    let aud_key = format!("{host}:aud");
    let sub_key = format!("{host}:sub");
    let condition = match subject_match(claims) {
        SubjectMatch::Exact(sub) => json!({
            "StringEquals": { aud_key: audience, sub_key: sub }
        }),
        SubjectMatch::Like { pattern, .. } => json!({
            "StringEquals": { aud_key: audience },
            "StringLike": { sub_key: pattern }
        }),
    };
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}") },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": condition
        }]
    })
}

/// Why a statement does not accept the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub statement: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Accepts { statement: usize },
    Rejects(Vec<Mismatch>),
}

/// The policy document out of what the user has: `aws iam get-role` output
/// (`{"Role": {"AssumeRolePolicyDocument": …}}`), the document itself, or
/// the URL-encoded string the IAM API returns.
pub fn document(input: &Value) -> Option<Value> {
    let doc = input
        .get("Role")
        .and_then(|r| r.get("AssumeRolePolicyDocument"))
        .or_else(|| input.get("AssumeRolePolicyDocument"))
        .unwrap_or(input);
    match doc {
        Value::String(s) => {
            let decoded = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
            serde_json::from_str(&decoded).ok()
        }
        Value::Object(_) => Some(doc.clone()),
        _ => None,
    }
}

fn as_list(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => vec![],
    }
}

/// IAM's StringLike: `*` any run of characters, `?` exactly one.
pub fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// Does `doc` let this token assume the role? Each statement that allows
/// sts:AssumeRoleWithWebIdentity for the token's provider is tried; every
/// one of its conditions must hold.
pub fn evaluate(doc: &Value, claims: &Claims) -> Verdict {
    let host = provider_host(claims.issuer().unwrap_or_default());
    let statements: Vec<&Value> = match doc.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => vec![],
    };
    let mut mismatches = Vec::new();
    for (i, st) in statements.iter().enumerate() {
        let n = i + 1;
        let mut miss = |reason: String| {
            mismatches.push(Mismatch {
                statement: n,
                reason,
            })
        };
        if st.get("Effect").and_then(Value::as_str) != Some("Allow") {
            miss("its Effect is not Allow".into());
            continue;
        }
        let actions = st.get("Action").map(as_list).unwrap_or_default();
        if !actions
            .iter()
            .any(|a| a == "sts:AssumeRoleWithWebIdentity" || a == "sts:*" || a == "*")
        {
            miss(format!(
                "its Action {actions:?} does not include sts:AssumeRoleWithWebIdentity"
            ));
            continue;
        }
        let federated = st
            .get("Principal")
            .and_then(|p| p.get("Federated"))
            .map(as_list)
            .unwrap_or_default();
        if !federated
            .iter()
            .any(|f| f.ends_with(&format!(":oidc-provider/{host}")))
        {
            miss(format!(
                "its Principal.Federated {federated:?} is not the IAM OIDC provider for {host} (arn:aws:iam::ACCOUNT:oidc-provider/{host})"
            ));
            continue;
        }
        let mut ok = true;
        if let Some(Value::Object(conds)) = st.get("Condition") {
            for (op, pairs) in conds {
                let Value::Object(pairs) = pairs else {
                    continue;
                };
                for (key, wanted) in pairs {
                    let wanted = as_list(wanted);
                    let claim = key.strip_prefix(&format!("{host}:")).unwrap_or(key);
                    let have = claims.get(claim).map(as_list).unwrap_or_default();
                    if let Some(reason) = check(op, key, claim, &wanted, &have) {
                        miss(reason);
                        ok = false;
                    }
                }
            }
        }
        if ok {
            return Verdict::Accepts { statement: n };
        }
    }
    if statements.is_empty() {
        mismatches.push(Mismatch {
            statement: 0,
            reason: "the document has no Statement".into(),
        });
    }
    Verdict::Rejects(mismatches)
}

/// One condition: None when it holds, else why not.
fn check(op: &str, key: &str, claim: &str, wanted: &[String], have: &[String]) -> Option<String> {
    let (any_value, base) = match op.split_once(':') {
        Some(("ForAnyValue", b)) => (true, b),
        Some(("ForAllValues", b)) => (false, b),
        _ => (false, op),
    };
    let matches = |v: &str| match base {
        "StringEquals" | "StringNotEquals" => wanted.iter().any(|w| w == v),
        "StringLike" | "StringNotLike" => wanted.iter().any(|w| like(w, v)),
        "StringEqualsIgnoreCase" => wanted.iter().any(|w| w.eq_ignore_ascii_case(v)),
        _ => true,
    };
    let negated = base.starts_with("StringNot");
    let holds = if !matches!(
        base,
        "StringEquals"
            | "StringNotEquals"
            | "StringLike"
            | "StringNotLike"
            | "StringEqualsIgnoreCase"
    ) {
        return None; // operators hoist does not model are not judged
    } else if have.is_empty() {
        negated
    } else if any_value || have.len() == 1 {
        have.iter().any(|v| matches(v) != negated)
    } else {
        have.iter().all(|v| matches(v) != negated)
    };
    (!holds).then(|| {
        let got = if have.is_empty() {
            "no such claim".to_string()
        } else {
            have.join(", ")
        };
        format!(
            "condition {op} {key} = {} does not hold: the token's {claim} is {got}",
            wanted.join(" | ")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gh() -> Claims {
        Claims::from_json(json!({
            "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
            "sub": "repo:acme/app:environment:production", "environment": "production"
        }))
    }

    #[test]
    fn the_printed_policy_accepts_its_token() {
        let p = policy_for(&gh(), "sts.amazonaws.com", Some("123456789012"));
        assert_eq!(evaluate(&p, &gh()), Verdict::Accepts { statement: 1 });
        assert_eq!(
            p["Statement"][0]["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        );
    }

    #[test]
    fn a_branch_policy_rejects_an_environment_job_and_says_why() {
        let mut p = policy_for(&gh(), "sts.amazonaws.com", None);
        p["Statement"][0]["Condition"]["StringEquals"]["token.actions.githubusercontent.com:sub"] =
            json!("repo:acme/app:ref:refs/heads/main");
        let Verdict::Rejects(m) = evaluate(&p, &gh()) else {
            panic!("accepted")
        };
        assert_eq!(m.len(), 1);
        assert!(
            m[0].reason.contains(
                "token.actions.githubusercontent.com:sub = repo:acme/app:ref:refs/heads/main"
            ),
            "{}",
            m[0].reason
        );
        assert!(
            m[0].reason
                .contains("the token's sub is repo:acme/app:environment:production"),
            "{}",
            m[0].reason
        );
    }

    #[test]
    fn operators_and_statements() {
        let doc = |cond: Value| json!({ "Statement": [{ "Effect": "Allow", "Action": ["sts:AssumeRoleWithWebIdentity"], "Principal": { "Federated": "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com" }, "Condition": cond }] });
        let table = [
            (
                json!({ "StringLike": { "token.actions.githubusercontent.com:sub": "repo:acme/*" } }),
                true,
            ),
            (
                json!({ "StringLike": { "token.actions.githubusercontent.com:sub": "repo:other/*" } }),
                false,
            ),
            (
                json!({ "StringEquals": { "token.actions.githubusercontent.com:aud": ["x", "sts.amazonaws.com"] } }),
                true,
            ),
            (
                json!({ "StringNotEquals": { "token.actions.githubusercontent.com:environment": "staging" } }),
                true,
            ),
            (
                json!({ "StringEquals": { "token.actions.githubusercontent.com:job_workflow_ref": "x" } }),
                false,
            ),
            (
                json!({ "ForAnyValue:StringLike": { "token.actions.githubusercontent.com:aud": "sts.*" } }),
                true,
            ),
        ];
        for (cond, want) in table {
            assert_eq!(
                matches!(evaluate(&doc(cond.clone()), &gh()), Verdict::Accepts { .. }),
                want,
                "{cond}"
            );
        }
        let wrong_provider = json!({ "Statement": { "Effect": "Allow", "Action": "sts:AssumeRoleWithWebIdentity", "Principal": { "Federated": "arn:aws:iam::1:oidc-provider/gitlab.com" } } });
        assert!(
            matches!(evaluate(&wrong_provider, &gh()), Verdict::Rejects(m) if m[0].reason.contains("oidc-provider/token.actions.githubusercontent.com"))
        );
    }

    /// Tokens shaped as each platform documents them: the proposed policy
    /// accepts the token, and the same job's next run (new per-run parts),
    /// but not another repository, project or environment.
    #[test]
    fn policies_hold_across_runs() {
        let bitbucket = |repo: &str, env: Option<&str>, step: &str| {
            let sub = match env {
                Some(e) => format!("{{{repo}}}:{{{e}}}:{{{step}}}"),
                None => format!("{{{repo}}}:{{{step}}}"),
            };
            Claims::from_json(json!({
                "iss": "https://api.bitbucket.org/2.0/workspaces/acme/pipelines-config/identity/oidc",
                "aud": "ari:cloud:bitbucket::workspace/7c4b5c76-3a1e-4a57-93f0-c6c5e0b9e0a1",
                "sub": sub, "workspaceUuid": "{7c4b5c76-3a1e-4a57-93f0-c6c5e0b9e0a1}",
                "repositoryUuid": format!("{{{repo}}}"), "stepUuid": format!("{{{step}}}"),
            }))
        };
        let repo = "1de489be-ce6a-42a0-a8c8-eadbf1174ac7";
        let env = "bd715740-c970-486b-b68a-b421ec2a1f8b";
        let (step1, step2) = (
            "759de0c6-eaee-4eaa-b7a6-c507eec759a7",
            "0f5e2a39-8c1d-4b7e-9a6f-2d3c4b5a6978",
        );
        let circleci = |user: &str, project: &str| {
            let org = "b6c5d1ee-6f4a-4e3c-9a59-0e4b4c2d8f11";
            Claims::from_json(json!({
                "iss": format!("https://oidc.circleci.com/org/{org}"), "aud": org,
                "sub": format!("org/{org}/project/{project}/user/{user}/vcs-origin/github.com/acme/app/vcs-ref/refs/heads/main"),
                "oidc.circleci.com/project-id": project,
            }))
        };
        let project = "2f1a9c3e-7d8b-4a6f-b5e4-1c2d3e4f5a6b";
        let buildkite = |commit: &str, step: &str| {
            Claims::from_json(json!({
                "iss": "https://agent.buildkite.com", "aud": "sts.amazonaws.com",
                "sub": format!("organization:acme:pipeline:app:ref:refs/heads/main:commit:{commit}:step:{step}"),
            }))
        };
        let cases = [
            (
                bitbucket(repo, None, step1),
                bitbucket(repo, None, step2),
                vec![
                    bitbucket("00000000-0000-0000-0000-000000000000", None, step1),
                    bitbucket(repo, Some(env), step1),
                ],
            ),
            (
                bitbucket(repo, Some(env), step1),
                bitbucket(repo, Some(env), step2),
                vec![
                    bitbucket(repo, None, step1),
                    bitbucket(repo, Some("00000000-0000-0000-0000-000000000000"), step1),
                ],
            ),
            (
                circleci("9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b", project),
                circleci("11111111-2222-4333-8444-555555555555", project),
                vec![circleci(
                    "9e8d7c6b-5a4f-4e3d-2c1b-0a9f8e7d6c5b",
                    "33333333-3333-4333-8333-333333333333",
                )],
            ),
            (
                buildkite("abc123", "deploy"),
                buildkite("def456", "deploy"),
                vec![buildkite("abc123", "test")],
            ),
        ];
        for (token, next_run, others) in cases {
            let aud = token.audiences()[0].clone();
            let p = policy_for(&token, &aud, Some("123456789012"));
            assert!(
                matches!(subject_match(&token), SubjectMatch::Like { .. }),
                "{p}"
            );
            assert_eq!(
                evaluate(&p, &token),
                Verdict::Accepts { statement: 1 },
                "{p}"
            );
            assert_eq!(
                evaluate(&p, &next_run),
                Verdict::Accepts { statement: 1 },
                "next run: {p}"
            );
            for other in others {
                assert!(
                    matches!(evaluate(&p, &other), Verdict::Rejects(_)),
                    "{p} accepts {:?}",
                    other.subject()
                );
            }
        }
        // GitHub's subject holds still: matched exactly.
        assert_eq!(
            subject_match(&gh()),
            SubjectMatch::Exact("repo:acme/app:environment:production".into())
        );
    }

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("a*c", "abbbc", true),
            ("a?c", "abc", true),
            ("a?c", "abbc", false),
            ("*", "", true),
            ("repo:o/r:*", "repo:o/r:ref:x", true),
            ("x", "xy", false),
        ] {
            assert_eq!(like(p, t), want, "{p} {t}");
        }
    }

    #[test]
    fn documents_in_every_form() {
        let doc = json!({ "Statement": [] });
        assert_eq!(
            document(&json!({ "Role": { "AssumeRolePolicyDocument": doc.clone() } })),
            Some(doc.clone())
        );
        assert_eq!(document(&doc), Some(doc.clone()));
        assert_eq!(
            document(&json!("%7B%22Statement%22%3A%5B%5D%7D")),
            Some(doc)
        );
    }
}
