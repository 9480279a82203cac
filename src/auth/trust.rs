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

/// A trust policy that accepts this token's issuer, audience and subject —
/// exactly this job (its branch, environment, project…), nothing wider.
pub fn policy_for(claims: &Claims, audience: &str, account: Option<&str>) -> Value {
    let host = provider_host(claims.issuer().unwrap_or("ISSUER"));
    let account = account.unwrap_or("ACCOUNT_ID");
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": format!("arn:aws:iam::{account}:oidc-provider/{host}") },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    format!("{host}:aud"): audience,
                    format!("{host}:sub"): claims.subject().unwrap_or("SUBJECT"),
                }
            }
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
