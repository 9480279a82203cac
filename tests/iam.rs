//! The README's IAM policies, checked against what hoist really does (issue
//! 11, "IAM policies that work when copied"): each command runs the way a
//! policy is meant for, through recorders of its own — the suite's ECR front
//! (every registry request) and AWS front (every AWS call, with its
//! parameters) — and each request is mapped to the IAM action and resource
//! AWS authorizes it as, then evaluated against the README's JSON policy for
//! that command by a real evaluator (@cloud-copilot/iam-simulate, through
//! tests/iam/simulate.mjs; localenv installs it). A call the policy would
//! deny fails the test, naming the call, the action, the resource and the
//! policy. What the policies grant and no scenario used is reported; a grant
//! that is not explained below fails too, so the README cannot keep a
//! permission hoist stopped needing.
//!
//! The README's policies name repository `team/app` (and `team/base` for
//! `--mount-from`), function `app`, REGION, ACCOUNT and OTHER_ACCOUNT; each
//! scenario substitutes its own names. A statement whose Sid begins with
//! `Only` is optional: a scenario includes only those whose case it plays
//! (`--create-repository` → OnlyWithCreateRepository…), so a call that
//! works only thanks to a statement its case does not need is caught.
//!
//! The mapping, with its sources:
//! - registry API → IAM, as ECR authorizes the registry endpoint with the
//!   identity that got the token (ECR user guide, "Private registry
//!   authentication"; "IAM permissions for pushing an image"; the pull
//!   permissions ecr:BatchGetImage + ecr:GetDownloadUrlForLayer): manifest
//!   HEAD/GET → BatchGetImage; manifest PUT → PutImage; blob HEAD →
//!   BatchCheckLayerAvailability; blob GET → GetDownloadUrlForLayer; POST
//!   uploads → InitiateLayerUpload; PATCH → UploadLayerPart; PUT ?digest= →
//!   CompleteLayerUpload (and UploadLayerPart when it carries data); a mount
//!   (`?mount=&from=SRC`) also GetDownloadUrlForLayer on SRC ("Users need
//!   ecr:GetDownloadUrlForLayer IAM permission on a repository to mount
//!   layers from the repository": ECR user guide, "Blob mounting"); tags/list
//!   → ListImages; `GET /v2/` checks only the token.
//! - AWS APIs → `service:Operation` (Service Authorization Reference), with
//!   Lambda's REST paths named (Invoke → lambda:InvokeFunction) and the
//!   function ARN qualified when the request carries a qualifier (Lambda
//!   developer guide, "Resources and conditions for Lambda actions");
//!   CloudWatch's service is `monitoring` in SigV4, `cloudwatch` in IAM.
//! - No identity policy: STS GetCallerIdentity (needs no permission) and
//!   AssumeRoleWithWebIdentity (unsigned; the role's trust policy decides).
//!   sts:AssumeRole (`--chain-role-arn`) is the first role's: it is checked
//!   against the README's OnlyWithChainRoleArn statement and, as the
//!   resource policy, the second role's trust policy.
//! - What Lambda does with the caller's permissions: UpdateFunctionCode from
//!   a repository in the same account whose policy has no statement for
//!   lambda.amazonaws.com makes Lambda add it as the caller, which needs
//!   ecr:GetRepositoryPolicy and ecr:SetRepositoryPolicy (Lambda developer
//!   guide, "Amazon ECR permissions").

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};

use common::fixtures::{Layout, fresh_seed};
use common::{Run, aws, lambda, proxy, unique};
use serde_json::{Value, json};

const REGION: &str = "us-east-1";
const ACCOUNT: &str = "123456789012";
/// The account of the second role in the `--chain-role-arn` scenario.
const OTHER_ACCOUNT: &str = "210987654321";
/// Who runs hoist: the role the trust policy lets the CI job assume.
const PRINCIPAL: &str = "arn:aws:sts::123456789012:assumed-role/ci-deploy/hoist";
/// With `--chain-role-arn`, the first role (the README's trust policy of the
/// second role names it `ci-first-hop`).
const FIRST_ROLE: &str = "arn:aws:iam::123456789012:role/ci-first-hop";
const FIRST_HOP: &str = "arn:aws:sts::123456789012:assumed-role/ci-first-hop/hoist";
/// The second role, in another account (the README's OnlyWithChainRoleArn
/// statement names `arn:aws:iam::OTHER_ACCOUNT:role/ci-deploy`).
const SECOND_ROLE: &str = "arn:aws:iam::210987654321:role/ci-deploy";

// ================================================================ the README

/// A ```json block of the README and the paragraph that introduces it.
struct Block {
    intro: String,
    json: Value,
}

fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md is readable")
}

/// Every ```json block, each with the last paragraph of prose before it (a
/// block right after another shares that one's).
fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let (mut paragraph, mut intro) = (Vec::<&str>::new(), String::new());
    let mut code: Option<(bool, Vec<&str>)> = None;
    for line in text.lines() {
        let fence = line.trim_start().starts_with("```");
        match &mut code {
            Some((json, body)) => {
                if fence {
                    if *json {
                        let src = body.join("\n");
                        let json = serde_json::from_str(&src).unwrap_or_else(|e| {
                            panic!("the README's json block after \"{intro}\" is not JSON ({e}):\n{src}")
                        });
                        out.push(Block {
                            intro: intro.clone(),
                            json,
                        });
                    }
                    code = None;
                } else {
                    body.push(line);
                }
            }
            None if fence => {
                if !paragraph.is_empty() {
                    intro = paragraph.join(" ");
                    paragraph.clear();
                }
                code = Some((line.trim_start().trim_start_matches('`') == "json", vec![]));
            }
            None if line.trim().is_empty() => {
                if !paragraph.is_empty() {
                    intro = paragraph.join(" ");
                    paragraph.clear();
                }
            }
            None => paragraph.push(line.trim()),
        }
    }
    out
}

/// The README's policy document for `hoist COMMAND` (push, gate, deploy,
/// ship): the one ```json policy introduced by "for `hoist COMMAND`".
fn policy_for(command: &str) -> Value {
    let needle = format!("for `hoist {command}`");
    let found: Vec<Value> = blocks(&readme())
        .into_iter()
        .filter(|b| b.intro.contains(&needle) && b.json["Statement"].is_array())
        .map(|b| b.json)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "the README should have exactly one JSON policy introduced by \"{needle}\""
    );
    found.into_iter().next().unwrap()
}

/// `--chain-role-arn`: the first role's statement and the second role's
/// trust policy.
fn chain_policies() -> (Value, Value) {
    let found: Vec<Value> = blocks(&readme())
        .into_iter()
        .filter(|b| b.intro.contains("**`--chain-role-arn`**"))
        .map(|b| b.json)
        .collect();
    let statement = found
        .iter()
        .find(|j| j["Effect"].is_string())
        .expect("the README shows the first role's statement for --chain-role-arn");
    let trust = found
        .iter()
        .find(|j| j["Statement"][0]["Principal"]["AWS"].is_string())
        .expect("the README shows the second role's trust policy for --chain-role-arn");
    (
        json!({"Version": "2012-10-17", "Statement": [statement]}),
        trust.clone(),
    )
}

/// The actions the README says `hoist rollback` needs ("`hoist rollback`
/// needs only `lambda:GetAlias` and `lambda:UpdateAlias`"), as a policy on
/// the function.
fn rollback_policy() -> Value {
    let text = readme();
    let at = text
        .find("`hoist rollback` needs only")
        .expect("the README says what `hoist rollback` needs");
    let sentence = &text[at..at + text[at..].find(')').unwrap_or(200)];
    // The code spans (every other piece between backticks) that name an action.
    let actions: Vec<&str> = sentence
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|a| a.contains(':'))
        .collect();
    assert!(!actions.is_empty(), "no actions in: {sentence}");
    // The sentence names actions only; the resource is the function.
    json!({"Version": "2012-10-17", "Statement": [{
        "Sid": "Rollback", "Effect": "Allow", "Action": actions,
        "Resource": "arn:aws:lambda:REGION:ACCOUNT:function:app",
    }]})
}

/// The names a scenario uses for the README's placeholders.
#[derive(Clone, Debug)]
struct Names {
    repo: String,
    base: String,
    function: String,
}

impl Names {
    fn new() -> Names {
        Names {
            repo: unique("iam"),
            base: unique("iam-base"),
            function: String::new(),
        }
    }
}

/// The policy with the scenario's names for the README's placeholders; a
/// placeholder left over fails (a new one needs a name here).
fn substitute(policy: &Value, n: &Names) -> Value {
    fn walk(v: &Value, n: &Names) -> Value {
        match v {
            Value::String(s) => {
                let mut s = s
                    .replace("OTHER_ACCOUNT", OTHER_ACCOUNT)
                    .replace("REGION", REGION)
                    .replace("ACCOUNT", ACCOUNT);
                for (placeholder, name) in [("team/app", &n.repo), ("team/base", &n.base)] {
                    if let Some(head) = s.strip_suffix(&format!(":repository/{placeholder}")) {
                        s = format!("{head}:repository/{name}");
                    }
                }
                if let Some(head) = s.strip_suffix(":function:app") {
                    s = format!("{head}:function:{}", n.function);
                } else if let Some((head, tail)) = s.split_once(":function:app:") {
                    s = format!("{head}:function:{}:{tail}", n.function);
                }
                Value::String(s)
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| walk(x, n)).collect()),
            Value::Object(o) => {
                Value::Object(o.iter().map(|(k, x)| (k.clone(), walk(x, n))).collect())
            }
            other => other.clone(),
        }
    }
    let out = walk(policy, n);
    let text = out.to_string();
    for left in [
        "REGION",
        "ACCOUNT",
        "team/app",
        "team/base",
        "function:app\"",
        "function:app:",
    ] {
        assert!(
            !text.contains(left),
            "placeholder {left} left in a README policy after substitution: {text}"
        );
    }
    out
}

/// The statements a scenario includes: all without an `Only…` Sid, and the
/// `Only…` ones it names (each must exist). Statements without a Sid get
/// one (`Statement1`, by position) so that use can be traced back to them.
fn select(policy: &Value, only: &[&str]) -> Value {
    let statements = policy["Statement"].as_array().expect("a Statement array");
    let sids: BTreeSet<&str> = statements
        .iter()
        .filter_map(|s| s["Sid"].as_str())
        .collect();
    for o in only {
        assert!(
            sids.contains(o),
            "the README's policy has no statement {o} (renamed? then rename it here too): {policy}"
        );
    }
    let kept: Vec<Value> = statements
        .iter()
        .enumerate()
        .filter(|(_, s)| match s["Sid"].as_str() {
            Some(sid) if sid.starts_with("Only") => only.contains(&sid),
            _ => true,
        })
        .map(|(i, s)| {
            let mut s = s.clone();
            if s.get("Sid").is_none() {
                s["Sid"] = json!(format!("Statement{}", i + 1));
            }
            s
        })
        .collect();
    json!({"Version": policy["Version"], "Statement": kept})
}

// ================================================================ recording and mapping

/// Fresh recorders for one hoist run: an ECR front and an AWS front of its
/// own, so only that run's requests are seen.
struct Recorders {
    front: proxy::Proxy,
    aws: aws::AwsFront,
}

impl Recorders {
    fn start(options: proxy::Options) -> Recorders {
        let l = common::local();
        Recorders {
            front: proxy::Proxy::start_with(options, l.upstream.clone()),
            aws: aws::AwsFront::start(&l.upstream.moto),
        }
    }

    fn hoist(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let (registry, endpoint) = (self.front.endpoint(), self.aws.endpoint());
        let mut all = vec![
            ("HOIST_REGISTRY_ENDPOINT", registry.as_str()),
            ("AWS_ENDPOINT_URL", endpoint.as_str()),
        ];
        all.extend_from_slice(env);
        common::hoist(args, &all)
    }

    /// Every request the run made, as what IAM authorizes.
    fn needs(&self) -> Vec<Need> {
        let mut out = Vec::new();
        for r in self.front.requests() {
            out.extend(registry_needs(&r).unwrap_or_else(|e| panic!("{e}")));
        }
        for c in self.aws.calls() {
            out.extend(aws_needs(&c).unwrap_or_else(|e| panic!("{e}")));
        }
        out
    }
}

/// What one request needs of IAM.
#[derive(Clone, Debug)]
struct Need {
    /// The request as hoist sent it (`PUT /v2/…`, `ecr PutImage`…).
    call: String,
    action: String,
    resource: String,
    /// Checked as the first role of a `--chain-role-arn` hop (sts:AssumeRole),
    /// not as the role running the command.
    first_hop: bool,
}

fn need(call: &str, action: &str, resource: String) -> Need {
    Need {
        call: call.to_string(),
        action: action.to_string(),
        resource,
        first_hop: false,
    }
}

fn repository_arn(account: &str, name: &str) -> String {
    format!("arn:aws:ecr:{REGION}:{account}:repository/{name}")
}

fn percent_decoded(s: &str) -> String {
    url::form_urlencoded::parse(s.replace('+', "%2B").as_bytes())
        .map(|(k, _)| k.into_owned())
        .next()
        .unwrap_or_default()
}

/// A registry API request → the IAM actions ECR checks for it.
fn registry_needs(r: &proxy::Seen) -> Result<Vec<Need>, String> {
    let call = match &r.query {
        Some(q) => format!("{} {}?{q}", r.method, r.path),
        None => format!("{} {}", r.method, r.path),
    };
    let unknown = || {
        Err(format!(
            "registry request {call}: no IAM mapping (add one to tests/iam.rs)"
        ))
    };
    if r.path == "/v2/" || r.path == "/v2" {
        return Ok(vec![]); // the token alone
    }
    let Some(inner) = r.path.strip_prefix("/v2/") else {
        return unknown();
    };
    let Some((name, kind, rest)) = ["/manifests/", "/blobs/", "/tags/"]
        .iter()
        .filter_map(|m| inner.find(m).map(|i| (i, m)))
        .min_by_key(|(i, _)| *i)
        .map(|(i, m)| (&inner[..i], m.trim_matches('/'), &inner[i + m.len()..]))
    else {
        return unknown();
    };
    let repo = repository_arn(ACCOUNT, name);
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(r.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let uploads = rest.starts_with("uploads");
    let one = |action: &str| Ok(vec![need(&call, action, repo.clone())]);
    match (r.method.as_str(), kind, uploads) {
        ("HEAD" | "GET", "manifests", _) => one("ecr:BatchGetImage"),
        ("PUT", "manifests", _) => one("ecr:PutImage"),
        ("HEAD", "blobs", false) => one("ecr:BatchCheckLayerAvailability"),
        ("GET", "blobs", false) => one("ecr:GetDownloadUrlForLayer"),
        ("POST", "blobs", true) => {
            let mut v = vec![need(&call, "ecr:InitiateLayerUpload", repo.clone())];
            if let (Some(_), Some(from)) = (query.get("mount"), query.get("from")) {
                v.push(need(
                    &call,
                    "ecr:GetDownloadUrlForLayer",
                    repository_arn(ACCOUNT, from),
                ));
            }
            Ok(v)
        }
        ("PATCH", "blobs", true) => one("ecr:UploadLayerPart"),
        ("PUT", "blobs", true) if query.contains_key("digest") => {
            let mut v = vec![need(&call, "ecr:CompleteLayerUpload", repo.clone())];
            if r.length.unwrap_or(0) > 0 {
                v.push(need(&call, "ecr:UploadLayerPart", repo.clone()));
            }
            Ok(v)
        }
        ("GET", "tags", _) => one("ecr:ListImages"),
        _ => unknown(),
    }
}

/// ECR API operations that act on no repository (Resource "*").
const ECR_ACCOUNT_LEVEL: &[&str] = &[
    "GetAuthorizationToken",
    "GetRegistryScanningConfiguration",
    "DescribeRepositoryCreationTemplates",
    "DescribeRegistry",
    "GetRegistryPolicy",
];

/// A Lambda REST request → (operation, function name, qualifier).
fn lambda_operation(c: &aws::Call) -> Option<(&'static str, String, Option<String>)> {
    let parts: Vec<&str> = c.path.trim_matches('/').split('/').collect();
    // /VERSION/functions/NAME[/…]
    if parts.get(1) != Some(&"functions") {
        return None;
    }
    let raw = percent_decoded(parts.get(2)?);
    // A function ARN (arn:aws:lambda:R:A:function:NAME[:QUALIFIER]) or a name.
    let (name, arn_qualifier) = match raw.strip_prefix("arn:") {
        Some(_) => {
            let f: Vec<&str> = raw.split(':').collect();
            (f.get(6)?.to_string(), f.get(7).map(|q| q.to_string()))
        }
        None => match raw.split_once(':') {
            Some((n, q)) => (n.to_string(), Some(q.to_string())),
            None => (raw.clone(), None),
        },
    };
    let query: BTreeMap<String, String> =
        url::form_urlencoded::parse(c.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let qualifier = query.get("Qualifier").cloned().or(arn_qualifier);
    let op = match (c.method.as_str(), parts.get(3).copied(), parts.len()) {
        ("GET", None, _) => "GetFunction",
        ("GET", Some("configuration"), _) => "GetFunctionConfiguration",
        ("PUT", Some("configuration"), _) => "UpdateFunctionConfiguration",
        ("PUT", Some("code"), _) => "UpdateFunctionCode",
        ("POST", Some("versions"), _) => "PublishVersion",
        ("GET", Some("versions"), _) => "ListVersionsByFunction",
        ("GET", Some("aliases"), 4) => "ListAliases",
        ("GET", Some("aliases"), 5) => "GetAlias",
        ("PUT", Some("aliases"), 5) => "UpdateAlias",
        ("POST", Some("aliases"), 4) => "CreateAlias",
        ("POST", Some("invocations"), _) => "InvokeFunction",
        ("GET", Some("provisioned-concurrency"), _) => "GetProvisionedConcurrencyConfig",
        ("GET", Some("policy"), _) => "GetPolicy",
        _ => return None,
    };
    Some((op, name, qualifier))
}

/// An AWS API call → what IAM authorizes (none for calls no identity
/// policy governs).
fn aws_needs(c: &aws::Call) -> Result<Vec<Need>, String> {
    let p = &c.params;
    let call = format!("{} {}", c.service, c.operation);
    let unknown = || {
        Err(format!(
            "AWS call {} {} {}: no IAM mapping (add one to tests/iam.rs); parameters {}",
            c.service, c.method, c.path, c.params
        ))
    };
    match c.service.as_str() {
        "ecr" => {
            let op = c.operation.as_str();
            let action = format!("ecr:{op}");
            if ECR_ACCOUNT_LEVEL.contains(&op) {
                return Ok(vec![need(&call, &action, "*".into())]);
            }
            let account = p["registryId"].as_str().unwrap_or(ACCOUNT);
            let names: Vec<&str> = match (&p["repositoryName"], &p["repositoryNames"]) {
                (Value::String(n), _) => vec![n.as_str()],
                (_, Value::Array(ns)) => ns.iter().filter_map(Value::as_str).collect(),
                _ => return unknown(),
            };
            let mut v: Vec<Need> = names
                .iter()
                .map(|n| need(&call, &action, repository_arn(account, n)))
                .collect();
            if op == "CreateRepository" && p.get("tags").is_some_and(|t| t != &json!([])) {
                // Tags at creation also need ecr:TagResource (ECR user guide, tagging).
                v.extend(
                    names
                        .iter()
                        .map(|n| need(&call, "ecr:TagResource", repository_arn(account, n))),
                );
            }
            Ok(v)
        }
        "sts" => match c.operation.as_str() {
            // Unsigned: the role's trust policy decides, not an identity policy.
            "AssumeRoleWithWebIdentity" => Ok(vec![]),
            // Allowed to every identity, whatever its policies say.
            "GetCallerIdentity" => Ok(vec![]),
            "AssumeRole" => {
                let role = p["RoleArn"].as_str().ok_or("AssumeRole without RoleArn")?;
                Ok(vec![Need {
                    first_hop: true,
                    ..need(&call, "sts:AssumeRole", role.to_string())
                }])
            }
            _ => unknown(),
        },
        "lambda" => {
            let Some((op, name, qualifier)) = lambda_operation(c) else {
                return unknown();
            };
            let function = format!("arn:aws:lambda:{REGION}:{ACCOUNT}:function:{name}");
            // Operations on the function itself or its aliases' list take the
            // unqualified ARN; those given a qualifier act on that version or
            // alias (Lambda developer guide, "Resources and conditions for
            // Lambda actions").
            let resource = match (&qualifier, op) {
                (Some(q), _)
                    if !matches!(
                        op,
                        "GetAlias"
                            | "UpdateAlias"
                            | "CreateAlias"
                            | "ListAliases"
                            | "PublishVersion"
                            | "ListVersionsByFunction"
                            | "UpdateFunctionCode"
                    ) =>
                {
                    format!("{function}:{q}")
                }
                _ => function.clone(),
            };
            let call = format!("lambda {op} {} {}", c.method, c.path);
            let mut v = vec![need(&call, &format!("lambda:{op}"), resource)];
            if op == "UpdateFunctionCode" {
                v.extend(lambda_pulls_as_caller(&call, p)?);
            }
            Ok(v)
        }
        "monitoring" => match c.operation.as_str() {
            "DescribeAlarms" => {
                let names: Vec<&str> = p
                    .as_object()
                    .map(|o| {
                        o.iter()
                            .filter(|(k, _)| k.starts_with("AlarmNames.member."))
                            .filter_map(|(_, v)| v.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                if names.is_empty() {
                    return unknown();
                }
                Ok(names
                    .iter()
                    .map(|n| {
                        need(
                            &call,
                            "cloudwatch:DescribeAlarms",
                            format!("arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:{n}"),
                        )
                    })
                    .collect())
            }
            "GetMetricStatistics" => Ok(vec![need(
                &call,
                "cloudwatch:GetMetricStatistics",
                "*".into(),
            )]),
            _ => unknown(),
        },
        _ => unknown(),
    }
}

/// UpdateFunctionCode from a repository of this account whose policy has
/// no statement for lambda.amazonaws.com: Lambda adds it, as the caller.
fn lambda_pulls_as_caller(call: &str, p: &Value) -> Result<Vec<Need>, String> {
    let Some(uri) = p["ImageUri"].as_str() else {
        return Ok(vec![]);
    };
    // ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO@sha256:…
    let (host, rest) = uri
        .split_once('/')
        .ok_or_else(|| format!("ImageUri {uri}"))?;
    let account = host.split('.').next().unwrap_or_default();
    let repo = rest
        .split(['@', ':'])
        .next()
        .unwrap_or_default()
        .to_string();
    if account != ACCOUNT {
        return Ok(vec![]);
    }
    let policy = common::ecr(async |c| {
        c.get_repository_policy()
            .repository_name(&repo)
            .send()
            .await
            .ok()
            .and_then(|o| o.policy_text().map(str::to_string))
    });
    if policy.is_some_and(|t| t.contains("lambda.amazonaws.com")) {
        return Ok(vec![]);
    }
    let call = format!("{call} (Lambda adds its pull statement to {repo}'s policy as the caller)");
    Ok(["ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy"]
        .iter()
        .map(|a| need(&call, a, repository_arn(ACCOUNT, &repo)))
        .collect())
}

// ================================================================ evaluating

/// One scenario's run: its calls, and the README policy it is held to.
struct Case {
    /// e.g. `hoist push --create-repository`.
    label: String,
    /// The README policy (push, gate, deploy, ship, rollback), unsubstituted.
    policy: &'static str,
    /// The `Only…` statements this case plays.
    only: Vec<&'static str>,
    names: Names,
    needs: Vec<Need>,
}

#[derive(Debug)]
struct Decision {
    decision: String,
    /// (statement Sid, action patterns, resource patterns) that allowed it.
    allowed_by: Vec<(String, Vec<String>, Vec<String>)>,
    error: Option<String>,
}

/// Run tests/iam/simulate.mjs on `policies` (name → {identity, resource?})
/// and `requests`.
fn simulate(policies: &Value, requests: &[Value]) -> Vec<Decision> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iam/simulate.mjs");
    let mut child = Command::new("node")
        .arg(&script)
        .env("HOIST_LOCALENV_DIR", &common::local().dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs (localenv up installs it)");
    let input = json!({"policies": policies, "requests": requests}).to_string();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the policy evaluator failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).expect("the evaluator prints JSON");
    assert_eq!(v.len(), requests.len());
    let strings = |x: &Value| -> Vec<String> {
        x.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    v.iter()
        .map(|d| Decision {
            decision: d["decision"].as_str().unwrap_or_default().to_string(),
            allowed_by: d["allowedBy"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|s| {
                            (
                                s["statement"].as_str().unwrap_or_default().to_string(),
                                strings(&s["actions"]),
                                strings(&s["resources"]),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default(),
            error: d["error"].as_str().map(str::to_string),
        })
        .collect()
}

/// Grants of a README policy no scenario is expected to use here, and why.
/// Anything else granted and unused fails the check.
const NOT_PLAYED: &[(&str, &str)] = &[(
    "OnlyForEnhancedScanning",
    "enhanced scanning (Amazon Inspector) is not emulated locally: ECR reads the findings from inspector2 with the caller's permissions",
)];

/// Evaluate every case against its README policy; fail on any call the
/// policy denies and on grants nothing used (beyond NOT_PLAYED).
fn check(policy: &'static str, cases: &[Case]) {
    let full = match policy {
        "rollback" => rollback_policy(),
        "auth" => chain_policies().0,
        p => policy_for(p),
    };
    if let Err(e) = verdict(policy, &full, cases) {
        panic!("{e}");
    }
}

/// The evaluation behind `check`, for `full` (the policy as the README has
/// it, placeholders and all): Err says what is denied, or granted unused.
fn verdict(policy: &str, full: &Value, cases: &[Case]) -> Result<(), String> {
    let (chain_statement, chain_trust) = chain_policies();
    let mut policies = serde_json::Map::new();
    let mut requests = Vec::new();
    let mut owners = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        assert_eq!(case.policy, policy);
        let selected = substitute(&select(full, &case.only), &case.names);
        policies.insert(format!("case{i}"), json!({"identity": selected}));
        policies.insert(
            format!("chain{i}"),
            json!({"identity": substitute(&chain_statement, &case.names), "resource": substitute(&chain_trust, &case.names)}),
        );
        assert!(
            !case.needs.is_empty(),
            "{}: no calls were recorded",
            case.label
        );
        for n in &case.needs {
            let (set, principal) = if n.first_hop {
                (format!("chain{i}"), FIRST_HOP)
            } else {
                (format!("case{i}"), PRINCIPAL)
            };
            // The resource's account: the ARN's fifth field, or ours for "*".
            let account = n
                .resource
                .split(':')
                .nth(4)
                .filter(|a| !a.is_empty())
                .unwrap_or(ACCOUNT);
            requests.push(json!({
                "policies": set, "action": n.action, "resource": n.resource,
                "account": account, "principal": principal, "context": {},
            }));
            owners.push((i, n));
        }
    }
    let decisions = simulate(&Value::Object(policies.clone()), &requests);

    // What each case needed, once per (action, resource), for the log.
    let mut seen = BTreeSet::new();
    for ((i, n), d) in owners.iter().zip(&decisions) {
        if seen.insert((*i, n.action.clone(), n.resource.clone())) {
            let by: Vec<&str> = d.allowed_by.iter().map(|(s, ..)| s.as_str()).collect();
            eprintln!(
                "{}: {} on {} — {} {}",
                cases[*i].label,
                n.action,
                n.resource,
                d.decision,
                by.join(",")
            );
        }
    }
    // Denials, per case, with the policy the case had.
    let mut denied: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    // (Sid, action or resource pattern) → used by some allowed request.
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    for ((i, n), d) in owners.iter().zip(&decisions) {
        if d.decision == "Allowed" {
            for (sid, actions, resources) in &d.allowed_by {
                for a in actions.iter().chain(resources) {
                    used.insert((sid.clone(), a.clone()));
                }
            }
            continue;
        }
        let set = format!("{}{i}", if n.first_hop { "chain" } else { "case" });
        let (which, shown) = if n.first_hop {
            (
                "the README's OnlyWithChainRoleArn statement (first role) with the second role's trust policy",
                json!({"first role": policies[&set]["identity"], "second role's trust policy": policies[&set]["resource"]}),
            )
        } else {
            ("the README's policy", policies[&set]["identity"].clone())
        };
        let entry = denied
            .entry(cases[*i].label.clone())
            .or_insert_with(|| (vec![], shown.to_string()));
        entry.0.push(format!(
            "`{}` needs {} on {}: {} by {which}{}",
            n.call,
            n.action,
            n.resource,
            d.decision,
            d.error
                .as_ref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
        ));
    }

    // Grants no case used: per statement, each action and resource pattern,
    // among the cases that included the statement.
    let mut included: BTreeSet<String> = BTreeSet::new();
    for (i, _) in cases.iter().enumerate() {
        for s in policies[&format!("case{i}")]["identity"]["Statement"]
            .as_array()
            .unwrap()
        {
            included.insert(s["Sid"].as_str().unwrap().to_string());
        }
    }
    let all = full["Statement"].as_array().unwrap();
    let mut unused = Vec::new();
    let mut unexplained = Vec::new();
    for (idx, s) in all.iter().enumerate() {
        let sid = s["Sid"]
            .as_str()
            .map(str::to_string)
            .unwrap_or(format!("Statement{}", idx + 1));
        let why = NOT_PLAYED.iter().find(|(n, _)| *n == sid).map(|(_, w)| *w);
        if !included.contains(&sid) {
            let line = format!("{sid}: in no scenario");
            match why {
                Some(w) => unused.push(format!("{line} ({w})")),
                None => unexplained.push(line),
            }
            continue;
        }
        let list = |k: &str| -> Vec<String> {
            match &s[k] {
                Value::String(x) => vec![x.clone()],
                Value::Array(a) => a
                    .iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect(),
                _ => vec![],
            }
        };
        for a in list("Action") {
            if !used.contains(&(sid.clone(), a.clone())) {
                unexplained.push(format!("{sid}: {a} granted, used by no scenario"));
            }
        }
        // Resource patterns carry each case's names.
        for r in list("Resource") {
            let matched = cases.iter().any(|c| {
                let mine = substitute(&json!(r), &c.names);
                used.contains(&(sid.clone(), mine.as_str().unwrap_or_default().to_string()))
            });
            if !matched {
                unexplained.push(format!(
                    "{sid}: resource {r} granted, matched by no scenario's request"
                ));
            }
        }
    }
    let report = |title: &str, lines: &[String]| {
        if !lines.is_empty() {
            eprintln!("{title}:\n  {}", lines.join("\n  "));
        }
    };
    report(
        &format!("`hoist {policy}`: granted and knowingly not played"),
        &unused,
    );
    report(
        &format!("`hoist {policy}`: granted and used by no scenario"),
        &unexplained,
    );
    if !denied.is_empty() {
        return Err(format!(
            "the README's policy for `hoist {policy}` would deny calls hoist makes:\n{}",
            denied
                .iter()
                .map(|(case, (lines, shown))| format!(
                    "{case}:\n  {}\n  (the policy as this case has it: {shown})",
                    lines.join("\n  ")
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ));
    }
    if !unexplained.is_empty() {
        return Err(format!(
            "the README's policy for `hoist {policy}` grants what no scenario uses (drop it from the README, add a scenario, or explain it in NOT_PLAYED):\n  {}",
            unexplained.join("\n  ")
        ));
    }
    Ok(())
}

// ================================================================ scenarios

/// One image in a fresh layout: (layout, manifest).
fn image(dir: &Path) -> Layout {
    let (l, _) = Layout::simple(dir, 1, 2000);
    l
}

fn ok(run: &Run, what: &str) {
    assert_eq!(
        run.code, 0,
        "{what} failed:\n{}\n{}",
        run.stdout, run.stderr
    );
}

/// `hoist push` through fresh recorders: the case.
fn push_case(
    label: &str,
    only: &[&'static str],
    names: &Names,
    source: &Path,
    extra: &[&str],
    options: proxy::Options,
) -> Case {
    let rec = Recorders::start(options);
    let mut args = vec![
        "push",
        source.to_str().unwrap(),
        "--repository",
        &names.repo,
        "--output",
        "json",
        "-q",
    ];
    args.extend_from_slice(extra);
    ok(&rec.hoist(&args, &[]), label);
    Case {
        label: label.to_string(),
        policy: "push",
        only: only.to_vec(),
        names: names.clone(),
        needs: rec.needs(),
    }
}

#[test]
fn the_readme_push_policy_allows_every_push() {
    let work = tempfile::tempdir().unwrap();
    let mut cases = Vec::new();

    // Into an existing repository, with a tag.
    let n = Names::new();
    common::create_repository(&n.repo, true);
    let l = image(&work.path().join("a"));
    cases.push(push_case(
        "hoist push --tag v1",
        &[],
        &n,
        &l.dir,
        &["--tag", "v1"],
        proxy::Options::default(),
    ));

    // A repository that does not exist yet.
    let n = Names::new();
    let l = image(&work.path().join("b"));
    cases.push(push_case(
        "hoist push --create-repository --tag v1",
        &["OnlyWithCreateRepository", "OnlyForMissingRepositories"],
        &n,
        &l.dir,
        &["--create-repository", "--tag", "v1"],
        proxy::Options::default(),
    ));

    // By digest only, into an existing repository.
    let n = Names::new();
    common::create_repository(&n.repo, false);
    let l = image(&work.path().join("c"));
    cases.push(push_case(
        "hoist push (by digest only)",
        &["OnlyForDigestOnlyPushes"],
        &n,
        &l.dir,
        &[],
        proxy::Options::default(),
    ));

    // --mount-from a repository that holds the base layer (blob mounting on).
    let n = Names::new();
    common::create_repository(&n.repo, true);
    common::create_repository(&n.base, true);
    let l = Layout::new(&work.path().join("d"));
    let shared = l.layer(4000, fresh_seed());
    let base = l.image(std::slice::from_ref(&shared), "amd64");
    let app = l.image(&[shared, l.layer(3000, fresh_seed())], "amd64");
    l.write_index(&[(Some("base"), &base), (Some("app"), &app)]);
    ok(
        &common::push(&l.dir, &n.base, &["--ref", "base", "--tag", "v1"]),
        "pushing the base image",
    );
    let case = push_case(
        "hoist push --mount-from BASE --tag v1",
        &["OnlyWithMountFrom"],
        &n,
        &l.dir,
        &[
            "--ref",
            "app",
            "--mount-from",
            &n.base.clone(),
            "--tag",
            "v1",
        ],
        proxy::Options {
            blob_mounting: true,
            ..Default::default()
        },
    );
    assert!(
        case.needs.iter().any(|x| x.call.contains("mount=")),
        "the push tried a mount: {:?}",
        case.needs
    );
    cases.push(case);

    // A missing repository a CREATE_ON_PUSH creation template covers: ECR
    // creates it on the push. (Whether ECR then also checks the pusher's
    // ecr:CreateRepository is not documented where this suite could find
    // it; the README does not claim it.)
    let n = Names {
        repo: format!("{TEMPLATE_PREFIX}/{}", unique("iam")),
        ..Names::new()
    };
    let l = image(&work.path().join("e"));
    let rec = Recorders::start(proxy::Options {
        templates: TEMPLATES,
        ..Default::default()
    });
    rec.aws.set_templates(json!([{ "prefix": TEMPLATE_PREFIX, "appliedFor": ["CREATE_ON_PUSH"], "imageTagMutability": "IMMUTABLE" }]));
    let label = "hoist push --tag v1 (a missing repository a CREATE_ON_PUSH template covers)";
    ok(
        &rec.hoist(
            &[
                "push",
                l.dir.to_str().unwrap(),
                "--repository",
                &n.repo,
                "--tag",
                "v1",
                "-q",
            ],
            &[],
        ),
        label,
    );
    cases.push(Case {
        label: label.into(),
        policy: "push",
        only: vec!["OnlyForMissingRepositories"],
        names: n,
        needs: rec.needs(),
    });

    check("push", &cases);
}

const TEMPLATE_PREFIX: &str = "iam-templated";
const TEMPLATES: &[proxy::Template] = &[proxy::Template {
    prefix: TEMPLATE_PREFIX,
    immutable: true,
}];

#[test]
fn the_readme_gate_policy_allows_a_basic_scan_gate() {
    let work = tempfile::tempdir().unwrap();
    let n = Names::new();
    common::create_repository(&n.repo, false);
    let l = image(work.path());
    let pushed = common::push(&l.dir, &n.repo, &["--tag", "v1"]);
    ok(&pushed, "pushing the image");
    let digest = pushed.json()["digest"].as_str().unwrap().to_string();
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(
        &[
            "gate",
            &format!("{}@{digest}", n.repo),
            "--severity-threshold",
            "critical",
            "--poll-interval",
            "50ms",
            "--timeout",
            "60s",
            "--output",
            "json",
        ],
        &[],
    );
    ok(&run, "hoist gate");
    let case = Case {
        label: "hoist gate REPO@DIGEST (basic scanning)".into(),
        policy: "gate",
        only: vec![],
        names: n,
        needs: rec.needs(),
    };
    check("gate", &[case]);
}

// ---------------------------------------------------------------- deploy, rollback, ship

/// A CloudWatch metric alarm on the function's errors, in OK.
fn alarm(name: &str) {
    lambda::block_on(
        lambda::cloudwatch()
            .put_metric_alarm()
            .alarm_name(name)
            .namespace("AWS/Lambda")
            .metric_name("Errors")
            .statistic(aws_sdk_cloudwatch::types::Statistic::Sum)
            .period(60)
            .evaluation_periods(1)
            .threshold(1.0)
            .comparison_operator(
                aws_sdk_cloudwatch::types::ComparisonOperator::GreaterThanOrEqualToThreshold,
            )
            .send(),
    )
    .expect("moto creates the alarm");
}

/// A digest pushed to `repo` (set up outside the recorders).
fn pushed(dir: &Path, repo: &str, extra: &[&str]) -> String {
    let l = image(dir);
    let run = common::push(&l.dir, repo, extra);
    ok(&run, "pushing an image");
    run.json()["digest"].as_str().unwrap().to_string()
}

/// A function (alias `live` on version 1) serving a first image of
/// `names.repo`, and the next build pushed there: its digest. With
/// `lambda_statement` the repository is made by `--create-repository`
/// (whose policy lets Lambda pull); without, it has no policy at all.
fn function_and_next_build(dir: &Path, names: &mut Names, lambda_statement: bool) -> String {
    let first = if lambda_statement {
        pushed(
            &dir.join("first"),
            &names.repo,
            &["--create-repository", "--tag", "v1"],
        )
    } else {
        common::create_repository(&names.repo, false);
        pushed(&dir.join("first"), &names.repo, &["--tag", "v1"])
    };
    names.function = lambda::function(&names.repo, &first, "x86_64");
    pushed(&dir.join("next"), &names.repo, &["--tag", "v2"])
}

fn deploy_case(
    label: &str,
    only: &[&'static str],
    names: &Names,
    rec: &Recorders,
    run: &Run,
) -> Case {
    ok(run, label);
    Case {
        label: label.to_string(),
        policy: "deploy",
        only: only.to_vec(),
        names: names.clone(),
        needs: rec.needs(),
    }
}

/// `hoist deploy REPO@DIGEST --function F --alias live EXTRA…`.
fn deploy_args<'a>(image: &'a str, f: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "deploy",
        image,
        "--function",
        f,
        "--alias",
        "live",
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    args
}

/// All at once, then `hoist rollback` (held to the deploy policy, which the
/// README says covers it, and to what it says rollback needs).
fn all_at_once_then_rollback(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    let next = function_and_next_build(dir, &mut n, true);
    let image = format!("{}@{next}", n.repo);
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(&deploy_args(&image, &n.function, &[]), &[]);
    let deployed = deploy_case("hoist deploy (all at once)", &[], &n, &rec, &run);

    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(
        &[
            "rollback",
            "--function",
            &n.function,
            "--alias",
            "live",
            "--output",
            "json",
        ],
        &[],
    );
    let rolled = deploy_case("hoist rollback", &[], &n, &rec, &run);
    assert_eq!(lambda::alias(&n.function, "live").0, "1", "rolled back");
    let as_rollback = Case {
        label: rolled.label.clone(),
        policy: "rollback",
        only: vec![],
        names: n.clone(),
        needs: rolled.needs.clone(),
    };
    vec![deployed, rolled, as_rollback]
}

/// A canary watching an alarm and the new version's errors, after a smoke
/// invoke (answered by the AWS front: moto runs functions in Docker).
fn canary_with_alarm_errors_and_smoke_test(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    let next = function_and_next_build(dir, &mut n, true);
    let image = format!("{}@{next}", n.repo);
    let name = unique("iam-alarm");
    alarm(&name);
    let event = dir.join("event.json");
    std::fs::write(&event, br#"{"ping": true}"#).unwrap();
    let rec = Recorders::start(proxy::Options::default());
    rec.aws.answer_invocations(json!({"status": "ok"}));
    let run = rec.hoist(
        &deploy_args(
            &image,
            &n.function,
            &[
                "--strategy",
                "canary:10%:1s",
                "--alarm",
                &name,
                "--watch-errors",
                "--smoke-event",
                event.to_str().unwrap(),
                "--smoke-expect",
                "ok",
            ],
        ),
        &[],
    );
    vec![deploy_case(
        "hoist deploy --strategy canary:10%:1s --alarm A --watch-errors --smoke-event E",
        &["OnlyWithAlarmOrWatchErrors", "OnlyWithSmokeEvent"],
        &n,
        &rec,
        &run,
    )]
}

fn dry_run(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    let next = function_and_next_build(dir, &mut n, true);
    let image = format!("{}@{next}", n.repo);
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(
        &deploy_args(
            &image,
            &n.function,
            &["--dry-run", "--strategy", "canary:10%:1s"],
        ),
        &[],
    );
    vec![deploy_case(
        "hoist deploy --dry-run --strategy canary:10%:1s",
        &[],
        &n,
        &rec,
        &run,
    )]
}

/// An alias that does not exist yet is created on the new version.
fn a_missing_alias(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    let next = function_and_next_build(dir, &mut n, true);
    let image = format!("{}@{next}", n.repo);
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(
        &[
            "deploy",
            &image,
            "--function",
            &n.function,
            "--alias",
            "canary",
            "--output",
            "json",
        ],
        &[],
    );
    vec![deploy_case(
        "hoist deploy --alias NEW (created)",
        &[],
        &n,
        &rec,
        &run,
    )]
}

/// A repository whose policy has no statement for Lambda: Lambda adds it
/// during UpdateFunctionCode, with the deployer's permissions.
fn repository_without_the_lambda_statement(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    let next = function_and_next_build(dir, &mut n, false);
    let image = format!("{}@{next}", n.repo);
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(&deploy_args(&image, &n.function, &[]), &[]);
    vec![deploy_case(
        "hoist deploy (a repository without the Lambda statement)",
        &["OnlyIfTheRepositoryPolicyLacksTheLambdaStatement"],
        &n,
        &rec,
        &run,
    )]
}

/// Run independent scenarios side by side (each has its own recorders and
/// resources), in a fresh directory each.
fn in_parallel(scenarios: &[fn(&Path) -> Vec<Case>]) -> Vec<Case> {
    let work = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        let handles: Vec<_> = scenarios
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let dir = work.path().join(i.to_string());
                std::fs::create_dir_all(&dir).unwrap();
                s.spawn(move || f(&dir))
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

#[test]
fn the_readme_deploy_and_rollback_policies_allow_every_deploy() {
    let cases = in_parallel(&[
        all_at_once_then_rollback,
        canary_with_alarm_errors_and_smoke_test,
        dry_run,
        a_missing_alias,
        repository_without_the_lambda_statement,
    ]);
    let (deploy, rollback): (Vec<Case>, Vec<Case>) =
        cases.into_iter().partition(|c| c.policy == "deploy");
    check("deploy", &deploy);
    check("rollback", &rollback);
}

const FAST_GATE: &[&str] = &[
    "--severity-threshold",
    "critical",
    "--poll-interval",
    "50ms",
    "--scan-timeout",
    "60s",
];

/// `hoist ship SOURCE --repository R --function F EXTRA…` with a gate that
/// passes moto's one HIGH finding.
fn ship_case(
    label: &str,
    only: &[&'static str],
    n: &Names,
    source: &Path,
    extra: &[&str],
    invoke: bool,
) -> Case {
    let rec = Recorders::start(proxy::Options::default());
    if invoke {
        rec.aws.answer_invocations(json!({"status": "ok"}));
    }
    let mut args = vec![
        "ship",
        source.to_str().unwrap(),
        "--repository",
        &n.repo,
        "--function",
        &n.function,
        "--output",
        "json",
        "-q",
    ];
    args.extend_from_slice(FAST_GATE);
    args.extend_from_slice(extra);
    let run = rec.hoist(&args, &[]);
    ok(&run, label);
    Case {
        label: label.to_string(),
        policy: "ship",
        only: only.to_vec(),
        names: n.clone(),
        needs: rec.needs(),
    }
}

/// A function for the repository, on an image that is not the test's (moto
/// does not check image URIs).
fn function_for(n: &mut Names) {
    n.function = lambda::function(&n.repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
}

/// Into a repository whose policy lets Lambda pull; then the next build
/// with --dry-run (the deploy plan reads the versions).
fn ship_into_an_existing_repository_then_a_dry_run(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    // moto scans only when asked (no scan on push): the gate starts one.
    common::create_repository(&n.repo, false);
    common::ecr(async |c| {
        c.set_repository_policy()
            .repository_name(&n.repo)
            .policy_text(
                json!({"Version": "2012-10-17", "Statement": [{"Sid": "LambdaECRImageRetrievalPolicy", "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]}]})
                .to_string(),
            )
            .send()
            .await
            .expect("moto sets the repository policy")
    });
    function_for(&mut n);
    let source = image(dir).dir;
    let shipped = ship_case(
        "hoist ship --tag v1",
        &[],
        &n,
        &source,
        &["--alias", "live", "--tag", "v1"],
        false,
    );
    // The next build, already in ECR (a dry run plans a deploy only then).
    let next = image(&dir.join("next")).dir;
    ok(
        &common::push(&next, &n.repo, &["--tag", "v2"]),
        "pushing the next build",
    );
    let dry = ship_case(
        "hoist ship --tag v2 --dry-run (the image already pushed)",
        &[],
        &n,
        &next,
        &["--alias", "live", "--tag", "v2", "--dry-run"],
        false,
    );
    vec![shipped, dry]
}

/// A repository that does not exist yet, a canary watched by an alarm and
/// the errors metric, a smoke test.
fn ship_creating_the_repository_with_a_watched_canary(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    function_for(&mut n);
    let name = unique("iam-alarm");
    alarm(&name);
    let event = dir.join("event.json");
    std::fs::write(&event, br#"{"ping": true}"#).unwrap();
    let source = image(&dir.join("image")).dir;
    vec![ship_case(
        "hoist ship --create-repository --tag v1 --strategy canary:10%:1s --alarm A --watch-errors --smoke-event E",
        &[
            "OnlyWithCreateRepository",
            "OnlyForMissingRepositories",
            "OnlyWithAlarmOrWatchErrors",
            "OnlyWithSmokeEvent",
        ],
        &n,
        &source,
        &[
            "--create-repository",
            "--tag",
            "v1",
            "--alias",
            "live",
            "--strategy",
            "canary:10%:1s",
            "--alarm",
            &name,
            "--watch-errors",
            "--smoke-event",
            event.to_str().unwrap(),
        ],
        true,
    )]
}

/// By digest only, into a repository without the Lambda statement, to an
/// alias that does not exist yet.
fn ship_by_digest_into_a_repository_without_the_lambda_statement(dir: &Path) -> Vec<Case> {
    let mut n = Names::new();
    common::create_repository(&n.repo, false);
    function_for(&mut n);
    let source = image(dir).dir;
    vec![ship_case(
        "hoist ship --alias NEW (by digest only, a repository without the Lambda statement)",
        &[
            "OnlyForDigestOnlyPushes",
            "OnlyIfTheRepositoryPolicyLacksTheLambdaStatement",
        ],
        &n,
        &source,
        &["--alias", "canary"],
        false,
    )]
}

#[test]
fn the_readme_ship_policy_allows_the_whole_pipeline() {
    let cases = in_parallel(&[
        ship_into_an_existing_repository_then_a_dry_run,
        ship_creating_the_repository_with_a_watched_canary,
        ship_by_digest_into_a_repository_without_the_lambda_statement,
    ]);
    check("ship", &cases);
}

// ---------------------------------------------------------------- auth

/// A GitHub Actions token as the README's example workflow's job gets it
/// (moto's STS does not check the signature).
fn github_token() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({
        "iss": "https://token.actions.githubusercontent.com", "aud": "sts.amazonaws.com",
        "sub": "repo:ORG/REPO:environment:production", "environment": "production",
        "repository": "ORG/REPO", "ref": "refs/heads/main", "iat": now, "exp": now + 300,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&common::fixtures::random_bytes(32, fresh_seed())),
    )
    .unwrap()
}

/// `--chain-role-arn`: the hop is the first role's sts:AssumeRole on the
/// second, which the README's statement and the second role's trust policy
/// must both allow (the roles are in different accounts).
#[test]
fn the_readme_chain_role_statements_allow_the_hop() {
    let token = github_token();
    let rec = Recorders::start(proxy::Options::default());
    let run = rec.hoist(
        &[
            "auth",
            "--role-arn",
            FIRST_ROLE,
            "--chain-role-arn",
            SECOND_ROLE,
            "--id-token-env",
            "T",
            "--output",
            "json",
        ],
        &[("T", &token)],
    );
    ok(&run, "hoist auth --chain-role-arn");
    let needs = rec.needs();
    assert!(
        needs
            .iter()
            .any(|x| x.first_hop && x.resource == SECOND_ROLE),
        "the hop was recorded: {needs:?}"
    );
    let case = Case {
        label: "hoist auth --role-arn ci-first-hop --chain-role-arn OTHER_ACCOUNT:ci-deploy".into(),
        policy: "auth",
        only: vec!["OnlyWithChainRoleArn"],
        names: Names::new(),
        needs,
    };
    check("auth", &[case]);
}

// ---------------------------------------------------------------- the check itself

/// The check is not kinder than IAM: a policy without an action hoist uses
/// fails, naming the call, the action and the resource; an action nothing
/// uses fails too.
#[test]
fn the_check_fails_on_a_denied_call_and_on_an_unused_grant() {
    let work = tempfile::tempdir().unwrap();
    let n = Names::new();
    common::create_repository(&n.repo, true);
    let l = image(work.path());
    let case = push_case(
        "hoist push --tag v1",
        &[],
        &n,
        &l.dir,
        &["--tag", "v1"],
        proxy::Options::default(),
    );
    let readme = policy_for("push");
    let drop_optional = |mut p: Value| {
        let kept: Vec<Value> = p["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| !s["Sid"].as_str().is_some_and(|x| x.starts_with("Only")))
            .cloned()
            .collect();
        p["Statement"] = json!(kept);
        p
    };
    // The README's push policy, without its optional statements (this case
    // plays none): it passes.
    verdict(
        "push",
        &drop_optional(readme.clone()),
        std::slice::from_ref(&case),
    )
    .unwrap();

    // Without ecr:PutImage.
    let mut denied = drop_optional(readme.clone());
    for s in denied["Statement"].as_array_mut().unwrap() {
        if let Some(a) = s["Action"].as_array_mut() {
            a.retain(|x| x != "ecr:PutImage");
        }
    }
    let e = verdict("push", &denied, std::slice::from_ref(&case)).unwrap_err();
    assert!(
        e.contains(&format!(
            "`PUT /v2/{}/manifests/v1` needs ecr:PutImage on {}: ImplicitlyDenied",
            n.repo,
            repository_arn(ACCOUNT, &n.repo)
        )),
        "{e}"
    );

    // With an action nothing uses.
    let mut extra = drop_optional(readme);
    extra["Statement"][1]["Action"]
        .as_array_mut()
        .unwrap()
        .push(json!("ecr:DeleteRepository"));
    let e = verdict("push", &extra, std::slice::from_ref(&case)).unwrap_err();
    assert!(
        e.contains("ecr:DeleteRepository granted, used by no scenario"),
        "{e}"
    );
}

/// The registry API → IAM table (ECR user guide; see the top of this file).
#[test]
fn registry_requests_map_to_ecr_actions() {
    let seen = |method: &str, path: &str, query: Option<&str>, length: Option<u64>| proxy::Seen {
        method: method.into(),
        path: path.into(),
        query: query.map(str::to_string),
        length,
    };
    let actions = |s: proxy::Seen| -> Vec<(String, String)> {
        registry_needs(&s)
            .unwrap()
            .into_iter()
            .map(|n| (n.action, n.resource))
            .collect()
    };
    let app = repository_arn(ACCOUNT, "team/app");
    let base = repository_arn(ACCOUNT, "team/base");
    let d = format!("sha256:{}", "a".repeat(64));
    let cases: Vec<(proxy::Seen, Vec<(&str, &String)>)> = vec![
        (seen("GET", "/v2/", None, None), vec![]),
        (
            seen("HEAD", "/v2/team/app/manifests/v1", None, None),
            vec![("ecr:BatchGetImage", &app)],
        ),
        (
            seen("GET", &format!("/v2/team/app/manifests/{d}"), None, None),
            vec![("ecr:BatchGetImage", &app)],
        ),
        (
            seen("PUT", "/v2/team/app/manifests/v1", None, Some(500)),
            vec![("ecr:PutImage", &app)],
        ),
        (
            seen("HEAD", &format!("/v2/team/app/blobs/{d}"), None, None),
            vec![("ecr:BatchCheckLayerAvailability", &app)],
        ),
        (
            seen("GET", &format!("/v2/team/app/blobs/{d}"), None, None),
            vec![("ecr:GetDownloadUrlForLayer", &app)],
        ),
        (
            seen("POST", "/v2/team/app/blobs/uploads/", None, Some(0)),
            vec![("ecr:InitiateLayerUpload", &app)],
        ),
        (
            seen(
                "POST",
                "/v2/team/app/blobs/uploads/",
                Some(&format!("mount={d}&from=team/base")),
                Some(0),
            ),
            vec![
                ("ecr:InitiateLayerUpload", &app),
                ("ecr:GetDownloadUrlForLayer", &base),
            ],
        ),
        (
            seen("PATCH", "/v2/team/app/blobs/uploads/u-1", None, Some(9000)),
            vec![("ecr:UploadLayerPart", &app)],
        ),
        (
            seen(
                "PUT",
                "/v2/team/app/blobs/uploads/u-1",
                Some(&format!("digest={d}")),
                Some(0),
            ),
            vec![("ecr:CompleteLayerUpload", &app)],
        ),
        (
            seen(
                "PUT",
                "/v2/team/app/blobs/uploads/u-1",
                Some(&format!("digest={d}")),
                Some(9000),
            ),
            vec![
                ("ecr:CompleteLayerUpload", &app),
                ("ecr:UploadLayerPart", &app),
            ],
        ),
        (
            seen("GET", "/v2/team/app/tags/list", None, None),
            vec![("ecr:ListImages", &app)],
        ),
    ];
    for (s, want) in cases {
        let what = format!("{} {}", s.method, s.path);
        let want: Vec<(String, String)> = want
            .into_iter()
            .map(|(a, r)| (a.to_string(), r.clone()))
            .collect();
        assert_eq!(actions(s), want, "{what}");
    }
    assert!(
        registry_needs(&seen(
            "DELETE",
            &format!("/v2/team/app/manifests/{d}"),
            None,
            None
        ))
        .is_err()
    );
}

/// Lambda's REST paths → actions and the function ARN, qualified when the
/// request names a version or alias.
#[test]
fn lambda_calls_map_to_actions_and_qualified_arns() {
    let call = |method: &str, path: &str, query: Option<&str>| aws::Call {
        service: "lambda".into(),
        operation: format!("{method} {path}"),
        method: method.into(),
        path: path.into(),
        query: query.map(str::to_string),
        params: Value::Null,
        access_key: Some("AKIDEXAMPLE".into()),
        at: std::time::Instant::now(),
    };
    let f = "arn:aws:lambda:us-east-1:123456789012:function:app";
    let cases = [
        (
            call("GET", "/2015-03-31/functions/app", None),
            "lambda:GetFunction",
            f.to_string(),
        ),
        (
            call("GET", "/2015-03-31/functions/app", Some("Qualifier=3")),
            "lambda:GetFunction",
            format!("{f}:3"),
        ),
        (
            call(
                "GET",
                "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Aapp/configuration",
                Some("Qualifier=%24LATEST"),
            ),
            "lambda:GetFunctionConfiguration",
            format!("{f}:$LATEST"),
        ),
        (
            call("POST", "/2015-03-31/functions/app/versions", None),
            "lambda:PublishVersion",
            f.to_string(),
        ),
        (
            call("GET", "/2015-03-31/functions/app/versions", None),
            "lambda:ListVersionsByFunction",
            f.to_string(),
        ),
        (
            call("GET", "/2015-03-31/functions/app/aliases/live", None),
            "lambda:GetAlias",
            f.to_string(),
        ),
        (
            call("PUT", "/2015-03-31/functions/app/aliases/live", None),
            "lambda:UpdateAlias",
            f.to_string(),
        ),
        (
            call("POST", "/2015-03-31/functions/app/aliases", None),
            "lambda:CreateAlias",
            f.to_string(),
        ),
        (
            call(
                "POST",
                "/2015-03-31/functions/app/invocations",
                Some("Qualifier=4"),
            ),
            "lambda:InvokeFunction",
            format!("{f}:4"),
        ),
        (
            call(
                "GET",
                "/2019-09-30/functions/app/provisioned-concurrency",
                Some("Qualifier=live"),
            ),
            "lambda:GetProvisionedConcurrencyConfig",
            format!("{f}:live"),
        ),
    ];
    for (c, action, resource) in cases {
        let needs = aws_needs(&c).unwrap();
        assert_eq!(
            needs
                .iter()
                .map(|n| (n.action.as_str(), n.resource.as_str()))
                .collect::<Vec<_>>(),
            vec![(action, resource.as_str())],
            "{} {}",
            c.method,
            c.path
        );
    }
    let sts = |op: &str| aws::Call {
        service: "sts".into(),
        operation: op.into(),
        method: "POST".into(),
        path: "/".into(),
        query: None,
        params: json!({"Action": op, "RoleArn": SECOND_ROLE}),
        access_key: None,
        at: std::time::Instant::now(),
    };
    assert!(
        aws_needs(&sts("AssumeRoleWithWebIdentity"))
            .unwrap()
            .is_empty()
    );
    assert!(aws_needs(&sts("GetCallerIdentity")).unwrap().is_empty());
    let hop = aws_needs(&sts("AssumeRole")).unwrap();
    assert!(
        hop[0].first_hop && hop[0].action == "sts:AssumeRole" && hop[0].resource == SECOND_ROLE
    );
}
