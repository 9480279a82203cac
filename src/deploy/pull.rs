//! May Lambda pull the image? What the repository policy has to say, and the
//! statements to add when it does not say it. Pure: the policy text is read
//! elsewhere.
//!
//! Lambda's developer guide (configuration-images, "Amazon ECR permissions"):
//! - same account, one side suffices: a repository-policy statement for
//!   `lambda.amazonaws.com` allowing `ecr:BatchGetImage` and
//!   `ecr:GetDownloadUrlForLayer`; when the policy has none, Lambda adds it
//!   itself during CreateFunction/UpdateFunctionCode — which works only if the
//!   principal calling Lambda has `ecr:GetRepositoryPolicy` and
//!   `ecr:SetRepositoryPolicy`;
//! - across accounts, both: a statement for the function's account
//!   (`arn:aws:iam::ACCOUNT:root`, "CrossAccountPermission") AND one for
//!   `lambda.amazonaws.com` whose `aws:sourceARN` condition covers the
//!   function ("LambdaECRImageCrossAccountRetrievalPolicy"); the caller's own
//!   identity policy must allow the two actions on the repository too.
//!
//! The statements are evaluated the way IAM does for this one request —
//! principal, action, resource and the condition operators these policies
//! use (StringEquals/Like, ArnEquals/Like, their negations and IfExists
//! forms, with `*` and `?` wildcards) — not merely looked for. What cannot
//! be judged from the policy alone (other condition keys or operators,
//! NotPrincipal) is reported as unsure, never as allowed.

use serde_json::{Value, json};

use super::preflight::Problem;

pub use crate::registry::policy::{LAMBDA, PULL_ACTIONS, lambda_statement, with_statements};

/// A function and the repository it would pull from.
#[derive(Debug, Clone, PartialEq)]
pub struct Pull {
    pub partition: String,
    /// The function's region (the repository's must be the same).
    pub region: String,
    pub function_account: String,
    /// `arn:PARTITION:lambda:REGION:ACCOUNT:function:NAME`, no qualifier:
    /// what Lambda sends as `aws:SourceArn`.
    pub function_arn: String,
    pub repository_account: String,
    pub repository: String,
}

impl Pull {
    /// From the function's ARN (as GetFunction returns it, qualified or
    /// not) and the repository's account and name.
    pub fn new(function_arn: &str, repository_account: &str, repository: &str) -> Option<Pull> {
        let parts: Vec<&str> = function_arn.split(':').collect();
        if parts.len() < 7 || parts[0] != "arn" || parts[2] != "lambda" || parts[5] != "function" {
            return None;
        }
        Some(Pull {
            partition: parts[1].to_string(),
            region: parts[3].to_string(),
            function_account: parts[4].to_string(),
            function_arn: parts[..7].join(":"),
            repository_account: repository_account.to_string(),
            repository: repository.to_string(),
        })
    }

    pub fn cross_account(&self) -> bool {
        self.function_account != self.repository_account
    }

    pub fn repository_arn(&self) -> String {
        format!(
            "arn:{}:ecr:{}:{}:repository/{}",
            self.partition, self.region, self.repository_account, self.repository
        )
    }

    /// The statement letting Lambda pull for the function's account, as
    /// Lambda's guide writes it (scoped to that account's functions).
    pub fn lambda_statement(&self) -> Value {
        lambda_statement(
            &self.partition,
            &self.region,
            &self.function_account,
            self.cross_account(),
        )
    }

    /// "CrossAccountPermission": the function's account may pull.
    pub fn account_statement(&self) -> Value {
        json!({
            "Sid": "CrossAccountPermission",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:{}:iam::{}:root", self.partition, self.function_account)},
            "Action": PULL_ACTIONS,
        })
    }
}

/// Who asks ECR.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Who {
    /// Lambda itself (the service principal), for the function.
    Lambda,
    /// A principal of the function's account (whoever calls UpdateFunctionCode).
    Account,
}

/// What the policy says about one principal pulling.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Allowed,
    /// No statement allows it (IAM's implicit deny).
    NotAllowed,
    /// An explicit Deny matches.
    Denied(String),
    /// A statement might allow or deny it, depending on what hoist cannot
    /// see.
    Unsure(String),
}

/// Whether `policy` lets the principal pull (both actions) from the
/// repository for the function.
fn answer(policy: &Value, pull: &Pull, who: Who) -> Result<Answer, String> {
    let statements: Vec<&Value> = match policy.get("Statement") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(s @ Value::Object(_)) => vec![s],
        _ => return Err("it has no statements".into()),
    };
    let resource = pull.repository_arn();
    let mut unsure = None;
    let mut allowed = [false; 2];
    for (i, action) in PULL_ACTIONS.iter().enumerate() {
        for s in &statements {
            let effect = s.get("Effect").and_then(Value::as_str).unwrap_or("");
            match applies(s, pull, who, action, &resource) {
                Applies::Yes if effect == "Deny" => {
                    return Ok(Answer::Denied(format!(
                        "statement {} denies {action}",
                        sid(s)
                    )));
                }
                Applies::Yes if effect == "Allow" => allowed[i] = true,
                Applies::Maybe(why) if effect == "Deny" || effect == "Allow" => {
                    unsure.get_or_insert(format!("statement {}: {why}", sid(s)));
                }
                _ => {}
            }
        }
    }
    Ok(match (allowed, unsure) {
        ([true, true], _) => Answer::Allowed,
        (_, Some(why)) => Answer::Unsure(why),
        _ => Answer::NotAllowed,
    })
}

fn sid(s: &Value) -> String {
    match s.get("Sid").and_then(Value::as_str) {
        Some(sid) if !sid.is_empty() => format!("'{sid}'"),
        _ => "without a Sid".into(),
    }
}

enum Applies {
    Yes,
    No,
    Maybe(String),
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(String::from))
            .collect(),
        _ => vec![],
    }
}

/// Does statement `s` apply to `who` doing `action` on `resource`?
fn applies(s: &Value, pull: &Pull, who: Who, action: &str, resource: &str) -> Applies {
    // Principal.
    if s.get("NotPrincipal").is_some() {
        return Applies::Maybe("NotPrincipal is not evaluated by hoist".into());
    }
    let mut named_other = None;
    let principal_matches = match s.get("Principal") {
        Some(Value::String(p)) => p == "*",
        Some(p @ Value::Object(_)) => {
            let service = strings(p.get("Service"));
            let aws = strings(p.get("AWS"));
            if aws.iter().any(|a| a == "*") {
                true
            } else {
                match who {
                    Who::Lambda => service.iter().any(|x| x.eq_ignore_ascii_case(LAMBDA)),
                    Who::Account => {
                        let root =
                            format!("arn:{}:iam::{}:root", pull.partition, pull.function_account);
                        let mut hit = false;
                        for a in &aws {
                            if *a == root || *a == pull.function_account {
                                hit = true;
                            } else if arn_account(a) == Some(pull.function_account.as_str()) {
                                // A role or user of the account: it grants that
                                // identity only, which may or may not be the one
                                // running hoist.
                                named_other.get_or_insert(a.clone());
                            }
                        }
                        hit
                    }
                }
            }
        }
        _ => false,
    };
    if !principal_matches {
        return match named_other {
            Some(a) => Applies::Maybe(format!(
                "it names {a}, not the account; it counts only if that is the identity running hoist"
            )),
            None => Applies::No,
        };
    }
    // Action.
    let action_matches = match (s.get("Action"), s.get("NotAction")) {
        (Some(a), _) => strings(Some(a)).iter().any(|p| glob(p, action, true)),
        (None, Some(na)) => !strings(Some(na)).iter().any(|p| glob(p, action, true)),
        (None, None) => false,
    };
    if !action_matches {
        return Applies::No;
    }
    // Resource (repository policies usually leave it out: the repository).
    let resource_matches = match (s.get("Resource"), s.get("NotResource")) {
        (Some(r), _) => strings(Some(r)).iter().any(|p| glob(p, resource, false)),
        (None, Some(nr)) => !strings(Some(nr)).iter().any(|p| glob(p, resource, false)),
        (None, None) => true,
    };
    if !resource_matches {
        return Applies::No;
    }
    match s.get("Condition") {
        None => Applies::Yes,
        Some(Value::Object(ops)) => conditions(ops, pull, who),
        Some(_) => Applies::Maybe("its Condition is not an object".into()),
    }
}

/// The account of an IAM/STS ARN.
fn arn_account(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    (parts.len() == 6 && parts[0] == "arn" && (parts[2] == "iam" || parts[2] == "sts"))
        .then(|| parts[4])
}

/// All operators and keys must hold (IAM ANDs them); a key's values are
/// alternatives (ORed).
fn conditions(ops: &serde_json::Map<String, Value>, pull: &Pull, who: Who) -> Applies {
    let mut maybe = None;
    for (op, keys) in ops {
        let Some(keys) = keys.as_object() else {
            return Applies::Maybe(format!("condition {op} is not an object"));
        };
        // Single-valued keys: the set qualifiers change nothing here.
        let base = op
            .strip_prefix("ForAnyValue:")
            .or_else(|| op.strip_prefix("ForAllValues:"))
            .unwrap_or(op);
        // The keys hoist evaluates are always in the request, so IfExists
        // changes nothing.
        let base = base.strip_suffix("IfExists").unwrap_or(base);
        for (key, values) in keys {
            let values = strings(Some(values));
            // What the request carries, for the keys hoist knows. Lambda
            // sends the function as the source; a principal of the account
            // comes with its account.
            let lower = key.to_ascii_lowercase();
            let value: &str = match (who, lower.as_str()) {
                (Who::Lambda, "aws:sourcearn") => &pull.function_arn,
                (Who::Lambda, "aws:sourceaccount") => &pull.function_account,
                (Who::Account, "aws:principalaccount") => &pull.function_account,
                _ => {
                    maybe.get_or_insert(format!(
                        "its condition on {key} ({op}) cannot be judged from the policy"
                    ));
                    continue;
                }
            };
            let held = match base {
                "StringEquals" => values.iter().any(|v| v == value),
                "StringNotEquals" => !values.iter().any(|v| v == value),
                "StringEqualsIgnoreCase" => values.iter().any(|v| v.eq_ignore_ascii_case(value)),
                "StringNotEqualsIgnoreCase" => {
                    !values.iter().any(|v| v.eq_ignore_ascii_case(value))
                }
                "StringLike" => values.iter().any(|v| glob(v, value, false)),
                "StringNotLike" => !values.iter().any(|v| glob(v, value, false)),
                "ArnEquals" | "ArnLike" => values.iter().any(|v| arn_like(v, value)),
                "ArnNotEquals" | "ArnNotLike" => !values.iter().any(|v| arn_like(v, value)),
                _ => {
                    maybe.get_or_insert(format!(
                        "its condition operator {op} is not evaluated by hoist"
                    ));
                    continue;
                }
            };
            if !held {
                return Applies::No;
            }
        }
    }
    match maybe {
        Some(why) => Applies::Maybe(why),
        None => Applies::Yes,
    }
}

/// IAM wildcards: `*` any run of characters, `?` any one; `fold` for
/// case-insensitive matching (actions).
fn glob(pattern: &str, text: &str, fold: bool) -> bool {
    fn m(p: &[u8], t: &[u8], fold: bool) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => (0..=t.len()).any(|i| m(rest, &t[i..], fold)),
            Some((b'?', rest)) => !t.is_empty() && m(rest, &t[1..], fold),
            Some((c, rest)) => {
                t.first().is_some_and(|x| {
                    if fold {
                        x.eq_ignore_ascii_case(c)
                    } else {
                        x == c
                    }
                }) && m(rest, &t[1..], fold)
            }
        }
    }
    m(pattern.as_bytes(), text.as_bytes(), fold)
}

/// ArnEquals/ArnLike: each of the six colon-separated parts matched on its
/// own, with wildcards (IAM user guide, condition operators).
fn arn_like(pattern: &str, arn: &str) -> bool {
    let p: Vec<&str> = pattern.splitn(6, ':').collect();
    let a: Vec<&str> = arn.splitn(6, ':').collect();
    p.len() == 6 && a.len() == 6 && p.iter().zip(&a).all(|(p, a)| glob(p, a, false))
}

/// The repository policy as hoist could read it.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyRead {
    /// The policy text; None: the repository has none.
    Text(Option<String>),
    /// GetRepositoryPolicy failed; `denied`: for want of the permission.
    Unreadable { why: String, denied: bool },
}

/// What the check found: a line for the plan, and a problem (refuse) or a
/// warning, if any.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finding {
    pub line: String,
    pub problem: Option<Problem>,
    pub warning: Option<String>,
}

fn compact(statements: &[Value]) -> String {
    statements
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether Lambda can pull the image for the function, and if not, what to
/// add.
pub fn check(pull: &Pull, read: &PolicyRead) -> Finding {
    let repo = format!(
        "repository {} (account {})",
        pull.repository, pull.repository_account
    );
    if pull.cross_account() {
        across_accounts(pull, read, &repo)
    } else {
        same_account(pull, read, &repo)
    }
}

/// Same account: one side is enough (the repository policy, or Lambda
/// adding its statement itself).
fn same_account(pull: &Pull, read: &PolicyRead, repo: &str) -> Finding {
    let statement = compact(&[pull.lambda_statement()]);
    // Lambda adds the statement itself when hoist's identity may set the
    // policy; without that permission the update fails: the statement to
    // add by hand is named here, before any write.
    let may_add = format!(
        "Lambda adds one itself during the update, which needs ecr:GetRepositoryPolicy and ecr:SetRepositoryPolicy for the identity running hoist; without them, add to the repository policy: {statement}"
    );
    match read {
        PolicyRead::Text(None) => Finding {
            line: format!("pull: same account; {repo} has no policy: {may_add}"),
            ..Default::default()
        },
        PolicyRead::Text(Some(text)) => {
            let doc: Value = match serde_json::from_str(text) {
                Ok(d) => d,
                Err(e) => {
                    return Finding {
                        line: format!("pull: same account; the policy of {repo} is not JSON ({e})"),
                        warning: Some(format!(
                            "the policy of {repo} is not JSON ({e}); Lambda may not be able to pull"
                        )),
                        ..Default::default()
                    };
                }
            };
            match answer(&doc, pull, Who::Lambda) {
                Ok(Answer::Allowed) => Finding {
                    line: format!(
                        "pull: same account; the policy of {repo} lets lambda.amazonaws.com pull for this function"
                    ),
                    ..Default::default()
                },
                Ok(Answer::NotAllowed) | Err(_) => Finding {
                    line: format!(
                        "pull: same account; the policy of {repo} has no statement letting lambda.amazonaws.com pull: {may_add}"
                    ),
                    ..Default::default()
                },
                Ok(Answer::Denied(why)) => Finding {
                    line: format!("pull: the policy of {repo} denies Lambda"),
                    problem: Some(Problem {
                        message: format!(
                            "the policy of {repo} denies lambda.amazonaws.com the pull ({why})"
                        ),
                        fix: format!(
                            "remove or narrow that Deny, and allow Lambda with: {statement}"
                        ),
                    }),
                    ..Default::default()
                },
                Ok(Answer::Unsure(why)) => Finding {
                    line: format!(
                        "pull: same account; whether the policy of {repo} lets Lambda pull depends on what hoist cannot see ({why})"
                    ),
                    warning: Some(format!(
                        "cannot tell whether the policy of {repo} lets Lambda pull ({why}); if the update fails with ImageAccessDenied, add: {statement}"
                    )),
                    ..Default::default()
                },
            }
        }
        PolicyRead::Unreadable { why, denied } => Finding {
            line: format!("pull: same account; the policy of {repo} could not be read"),
            warning: Some(if *denied {
                format!(
                    "could not read the policy of {repo} ({why}): if it has no statement for lambda.amazonaws.com, Lambda cannot add one either (that takes ecr:GetRepositoryPolicy and ecr:SetRepositoryPolicy) and the update fails with ImageAccessDenied; the statement: {statement}"
                )
            } else {
                format!(
                    "could not read the policy of {repo} ({why}); if the update fails with ImageAccessDenied, the statement Lambda needs is: {statement}"
                )
            }),
            ..Default::default()
        },
    }
}

/// Across accounts: both statements, in the repository's policy.
fn across_accounts(pull: &Pull, read: &PolicyRead, repo: &str) -> Finding {
    let needed = [pull.account_statement(), pull.lambda_statement()];
    let subject = format!(
        "the image is in account {} and function {} in {}",
        pull.repository_account, pull.function_arn, pull.function_account
    );
    match read {
        PolicyRead::Text(None) => Finding {
            line: format!("pull: across accounts; {repo} has no policy"),
            problem: Some(Problem {
                message: format!("{subject}, and {repo} has no policy letting them pull"),
                fix: across_fix(pull, repo, &needed),
            }),
            ..Default::default()
        },
        PolicyRead::Text(Some(text)) => match serde_json::from_str(text) {
            Ok(doc) => across_policy(pull, &doc, repo, &subject),
            Err(e) => Finding {
                line: format!("pull: across accounts; the policy of {repo} is not JSON"),
                problem: Some(Problem {
                    message: format!("{subject}, and the policy of {repo} is not JSON ({e})"),
                    fix: across_fix(pull, repo, &needed),
                }),
                ..Default::default()
            },
        },
        PolicyRead::Unreadable { why, .. } => Finding {
            line: format!("pull: across accounts; the policy of {repo} could not be read"),
            warning: Some(format!(
                "could not read the policy of {repo} to check that Lambda may pull across accounts ({why}); it needs: {} (give the identity running hoist ecr:GetRepositoryPolicy on it to have this checked)",
                compact(&needed)
            )),
            ..Default::default()
        },
    }
}

fn across_fix(pull: &Pull, repo: &str, missing: &[Value]) -> String {
    let set = format!(
        "aws ecr set-repository-policy --registry-id {} --repository-name {} --policy-text file://policy.json",
        pull.repository_account, pull.repository
    );
    format!(
        "add to the policy of {repo} ({set}): {}; and allow the identity running hoist ecr:BatchGetImage and ecr:GetDownloadUrlForLayer on {} in its own policy",
        compact(missing),
        pull.repository_arn()
    )
}

/// Across accounts, a policy read: which of the two statements it lacks.
fn across_policy(pull: &Pull, doc: &Value, repo: &str, subject: &str) -> Finding {
    let needed = [pull.account_statement(), pull.lambda_statement()];
    let mut missing = vec![];
    let mut why = vec![];
    let mut unsure = vec![];
    for (who, statement, name) in [
        (
            Who::Account,
            &needed[0],
            format!("account {}", pull.function_account),
        ),
        (
            Who::Lambda,
            &needed[1],
            format!("lambda.amazonaws.com for {}", pull.function_arn),
        ),
    ] {
        match answer(doc, pull, who) {
            Ok(Answer::Allowed) => {}
            Ok(Answer::NotAllowed) | Err(_) => {
                missing.push(statement.clone());
                why.push(format!("no statement lets {name} pull"));
            }
            Ok(Answer::Denied(d)) => {
                missing.push(statement.clone());
                why.push(format!("{d} for {name}"));
            }
            Ok(Answer::Unsure(u)) => unsure.push(format!("{name}: {u}")),
        }
    }
    if !missing.is_empty() {
        Finding {
            line: format!("pull: across accounts; the policy of {repo} is missing statements"),
            problem: Some(Problem {
                message: format!(
                    "{subject}, and the policy of {repo} does not let Lambda pull: {}",
                    why.join("; ")
                ),
                fix: across_fix(pull, repo, &missing),
            }),
            ..Default::default()
        }
    } else if !unsure.is_empty() {
        Finding {
            line: format!(
                "pull: across accounts; the policy of {repo} may let Lambda pull ({})",
                unsure.join("; ")
            ),
            warning: Some(format!(
                "cannot tell whether the policy of {repo} lets Lambda pull ({}); the statements Lambda documents: {}",
                unsure.join("; "),
                compact(&needed)
            )),
            ..Default::default()
        }
    } else {
        Finding {
            line: format!(
                "pull: across accounts; the policy of {repo} lets account {} and lambda.amazonaws.com (for this function) pull",
                pull.function_account
            ),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pull(function_account: &str) -> Pull {
        Pull::new(
            &format!("arn:aws:lambda:us-east-1:{function_account}:function:app:live"),
            "111111111111",
            "team/app",
        )
        .unwrap()
    }

    fn policy(statements: Value) -> PolicyRead {
        PolicyRead::Text(Some(
            json!({"Version": "2012-10-17", "Statement": statements}).to_string(),
        ))
    }

    fn lambda_with(condition: Value) -> Value {
        json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"], "Condition": condition})
    }

    fn account(principal: Value) -> Value {
        json!({"Sid": "CrossAccountPermission", "Effect": "Allow", "Principal": {"AWS": principal}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]})
    }

    #[test]
    fn the_arns() {
        let p = pull("222222222222");
        assert_eq!(
            p.function_arn,
            "arn:aws:lambda:us-east-1:222222222222:function:app"
        );
        assert_eq!(
            p.repository_arn(),
            "arn:aws:ecr:us-east-1:111111111111:repository/team/app"
        );
        assert!(p.cross_account());
        assert!(Pull::new("not an arn", "1", "r").is_none());
        let cn = Pull::new("arn:aws-cn:lambda:cn-north-1:1:function:f", "1", "r").unwrap();
        assert_eq!(
            cn.lambda_statement()["Condition"]["StringLike"]["aws:sourceARN"],
            "arn:aws-cn:lambda:cn-north-1:1:function:*"
        );
        assert!(!cn.cross_account());
    }

    #[test]
    fn across_accounts() {
        let p = pull("222222222222");
        let good_lambda = lambda_with(
            json!({"StringLike": {"aws:sourceARN": "arn:aws:lambda:us-east-1:222222222222:function:*"}}),
        );
        let root = account(json!("arn:aws:iam::222222222222:root"));
        // (case, statements, Ok(()) | Err(problem says) | Warn(warning says))
        enum Want {
            Ok,
            Problem(&'static str),
            Warn(&'static str),
        }
        let cases: Vec<(&str, Value, Want)> = vec![
            (
                "both, as the guide writes them",
                json!([root, good_lambda]),
                Want::Ok,
            ),
            (
                "the account as a bare id, the function by ArnLike",
                json!([
                    account(json!(["333333333333", "222222222222"])),
                    lambda_with(
                        json!({"ArnLike": {"aws:SourceArn": "arn:aws:lambda:us-east-1:222222222222:function:app"}})
                    )
                ]),
                Want::Ok,
            ),
            (
                "ArnEquals takes wildcards too, per part",
                json!([
                    root,
                    lambda_with(
                        json!({"ArnEquals": {"aws:sourcearn": "arn:aws:lambda:*:222222222222:function:a?p"}})
                    )
                ]),
                Want::Ok,
            ),
            (
                "StringEquals with the exact ARN, and the source account",
                json!([
                    root,
                    lambda_with(
                        json!({"StringEquals": {"aws:SourceArn": ["arn:aws:lambda:us-east-1:222222222222:function:app"], "aws:SourceAccount": "222222222222"}})
                    )
                ]),
                Want::Ok,
            ),
            (
                "missing account statement",
                json!([good_lambda]),
                Want::Problem("no statement lets account 222222222222 pull"),
            ),
            (
                "missing Lambda statement",
                json!([root]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "sourceARN for another function",
                json!([
                    root,
                    lambda_with(
                        json!({"ArnLike": {"aws:sourceARN": "arn:aws:lambda:us-east-1:222222222222:function:other"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "sourceARN for another account's functions",
                json!([
                    root,
                    lambda_with(
                        json!({"StringLike": {"aws:sourceARN": "arn:aws:lambda:us-east-1:333333333333:function:*"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "sourceARN in another region",
                json!([
                    root,
                    lambda_with(
                        json!({"StringLike": {"aws:sourceARN": "arn:aws:lambda:eu-west-1:222222222222:function:*"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "StringEquals does not take wildcards",
                json!([
                    root,
                    lambda_with(
                        json!({"StringEquals": {"aws:sourceARN": "arn:aws:lambda:us-east-1:222222222222:function:*"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "StringLike is case-sensitive",
                json!([
                    root,
                    lambda_with(
                        json!({"StringLike": {"aws:sourceARN": "arn:aws:lambda:us-east-1:222222222222:function:APP"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "a wildcard across the whole ARN",
                json!([
                    root,
                    lambda_with(json!({"StringLike": {"aws:sourceARN": "arn:aws:lambda:*"}}))
                ]),
                Want::Ok,
            ),
            (
                "ArnNotLike excluding this function",
                json!([
                    root,
                    lambda_with(
                        json!({"ArnNotLike": {"aws:sourceARN": "arn:aws:lambda:*:*:function:app"}})
                    )
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "one action only",
                json!([
                    root,
                    json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "ecr:BatchGetImage"})
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
            (
                "wildcards in actions, Principal *",
                json!([
                    json!({"Effect": "Allow", "Principal": "*", "Action": ["ecr:BatchGet*", "ecr:getdownloadurlforlayer"]})
                ]),
                Want::Ok,
            ),
            (
                "an explicit Deny for Lambda",
                json!([
                    root,
                    good_lambda,
                    json!({"Sid": "NoLambda", "Effect": "Deny", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "ecr:*"})
                ]),
                Want::Problem("statement 'NoLambda' denies"),
            ),
            (
                "a role of the account instead of root",
                json!([
                    account(json!("arn:aws:iam::222222222222:role/ci-deploy")),
                    good_lambda
                ]),
                Want::Warn("role/ci-deploy"),
            ),
            (
                "a condition hoist cannot judge",
                json!([
                    root,
                    lambda_with(json!({"StringEquals": {"aws:SourceOrgID": "o-123"}}))
                ]),
                Want::Warn("aws:SourceOrgID"),
            ),
            (
                "a Resource of another repository",
                json!([
                    root,
                    json!({"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "ecr:*", "Resource": "arn:aws:ecr:us-east-1:111111111111:repository/other"})
                ]),
                Want::Problem("no statement lets lambda.amazonaws.com"),
            ),
        ];
        for (name, statements, want) in cases {
            let f = check(&p, &policy(statements));
            match want {
                Want::Ok => assert!(f.problem.is_none() && f.warning.is_none(), "{name}: {f:?}"),
                Want::Problem(says) => {
                    let problem = f
                        .problem
                        .as_ref()
                        .unwrap_or_else(|| panic!("{name}: {f:?}"));
                    assert!(problem.message.contains(says), "{name}: {problem:?}");
                    assert!(problem.fix.contains("set-repository-policy"), "{name}");
                }
                Want::Warn(says) => {
                    assert!(f.problem.is_none(), "{name}: {f:?}");
                    assert!(
                        f.warning.as_deref().is_some_and(|w| w.contains(says)),
                        "{name}: {f:?}"
                    );
                }
            }
        }
        // The fix prints exactly what is missing.
        let f = check(&p, &policy(json!([good_lambda_for(&p)])));
        let fix = f.problem.unwrap().fix;
        assert!(
            fix.contains(r#""Principal":{"AWS":"arn:aws:iam::222222222222:root"}"#),
            "{fix}"
        );
        assert!(
            !fix.contains("LambdaECRImageCrossAccountRetrievalPolicy"),
            "{fix}"
        );
        // No policy at all: both.
        let f = check(&p, &PolicyRead::Text(None));
        let fix = f.problem.unwrap().fix;
        assert!(
            fix.contains("CrossAccountPermission")
                && fix.contains("LambdaECRImageCrossAccountRetrievalPolicy")
                && fix.contains(
                    r#""aws:sourceARN":"arn:aws:lambda:us-east-1:222222222222:function:*""#
                ),
            "{fix}"
        );
        // Unreadable: a warning naming both.
        let f = check(
            &p,
            &PolicyRead::Unreadable {
                why: "AccessDeniedException".into(),
                denied: true,
            },
        );
        assert!(f.problem.is_none() && f.warning.unwrap().contains("CrossAccountPermission"));
    }

    fn good_lambda_for(p: &Pull) -> Value {
        p.lambda_statement()
    }

    #[test]
    fn same_account() {
        let p = pull("111111111111");
        assert!(!p.cross_account());
        let f = check(&p, &PolicyRead::Text(None));
        assert!(f.problem.is_none() && f.warning.is_none(), "{f:?}");
        assert!(f.line.contains("ecr:SetRepositoryPolicy"), "{f:?}");
        let f = check(&p, &policy(json!([p.lambda_statement()])));
        assert!(f.line.contains("lets lambda.amazonaws.com pull"), "{f:?}");
        // The statement AWS's guide shows, without a condition.
        let f = check(
            &p,
            &policy(
                json!([{"Sid": "LambdaECRImageRetrievalPolicy", "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]),
            ),
        );
        assert!(f.line.contains("lets lambda.amazonaws.com pull"), "{f:?}");
        let f = check(
            &p,
            &policy(json!([{"Effect": "Deny", "Principal": "*", "Action": "ecr:*"}])),
        );
        assert!(f.problem.is_some(), "{f:?}");
        let f = check(
            &p,
            &PolicyRead::Unreadable {
                why: "AccessDeniedException".into(),
                denied: true,
            },
        );
        let w = f.warning.unwrap();
        assert!(
            w.contains("Lambda cannot add one either")
                && w.contains("LambdaECRImageRetrievalPolicy"),
            "{w}"
        );
    }

    #[test]
    fn adding_statements() {
        let p = pull("111111111111");
        let text = with_statements(None, &[p.lambda_statement()]).unwrap();
        assert!(
            matches!(check(&p, &PolicyRead::Text(Some(text.clone()))).line, l if l.contains("lets lambda"))
        );
        // Again: replaced by Sid, not duplicated; other statements kept.
        let other = json!({"Sid": "Mine", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::1:root"}, "Action": "ecr:*"});
        let text = with_statements(Some(&text), &[other]).unwrap();
        let text = with_statements(Some(&text), &[p.lambda_statement()]).unwrap();
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2, "{doc}");
        assert!(with_statements(Some("nope"), &[]).is_err());
        // A single-object Statement becomes a list.
        let one = r#"{"Statement": {"Sid": "A", "Effect": "Allow", "Principal": "*", "Action": "ecr:*"}}"#;
        let doc: Value =
            serde_json::from_str(&with_statements(Some(one), &[p.lambda_statement()]).unwrap())
                .unwrap();
        assert_eq!(doc["Statement"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn wildcards() {
        for (p, t, fold, want) in [
            ("ecr:*", "ecr:BatchGetImage", true, true),
            ("ECR:batch*", "ecr:BatchGetImage", true, true),
            ("ecr:Batch?etImage", "ecr:BatchGetImage", true, true),
            ("ecr:Batch?Image", "ecr:BatchGetImage", true, false),
            ("a*b*c", "aXXbYc", false, true),
            ("a*b*c", "aXXbY", false, false),
            ("Abc", "abc", false, false),
        ] {
            assert_eq!(glob(p, t, fold), want, "{p} {t}");
        }
        assert!(arn_like(
            "arn:aws:lambda:*:1:function:*",
            "arn:aws:lambda:us-east-1:1:function:f"
        ));
        // '*' in a part does not cross into the next one.
        assert!(!arn_like(
            "arn:aws:lambda:*:function:f",
            "arn:aws:lambda:us-east-1:1:function:f"
        ));
    }
}
