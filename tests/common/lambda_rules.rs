//! What real Lambda refuses and moto lets through, played in front of
//! moto for every Lambda request of the suite: by the suite's AWS front
//! (aws.rs, which `AWS_ENDPOINT_URL` points at) and by the Lambda endpoint
//! tests/deploy.rs puts in front of its scenarios (AWS_ENDPOINT_URL_LAMBDA),
//! which lies on purpose before these rules apply.
//!
//! moto checks no alias routing rule (weights on `$LATEST`, more than one
//! additional version, two versions with different execution roles or
//! dead-letter queues), takes any CodeSha256 on PublishVersion, keeps no
//! DeadLetterConfig, has no provisioned concurrency, and never changes nor
//! checks an alias's RevisionId. `Strict` plays all of that.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::server::{self, Body};

/// What the endpoint does with a request instead of forwarding it.
pub enum Reply {
    /// Answer this (status, AWS error type or none, JSON body, extra headers).
    Answer(
        u16,
        Option<&'static str>,
        Value,
        Vec<(&'static str, String)>,
    ),
    /// Forward, then change the JSON answer.
    Edit(Edit),
}

/// A change to a JSON answer.
pub type Edit = Box<dyn Fn(&mut Value) + Send>;

/// A Lambda error as Lambda's REST-JSON protocol sends it.
pub fn lambda_error(status: u16, kind: &'static str, message: String) -> Reply {
    Reply::Answer(
        status,
        Some(kind),
        json!({"Type": "User", "message": message}),
        vec![],
    )
}

/// An alias's RevisionId as Lambda keeps it: a new one with every change.
/// moto issues one when the alias is created and never changes it, nor
/// checks the one UpdateAlias carries — so the endpoint plays both (Lambda
/// API reference, UpdateAlias: RevisionId "Only update the alias if the
/// revision ID matches the ID that's specified", else
/// PreconditionFailedException, 412).
#[derive(Default)]
pub struct Revisions {
    /// `FUNCTION/ALIAS` → (RevisionId, the alias's state it was issued for).
    pub current: HashMap<String, (String, Value)>,
    pub issued: u64,
    /// Every UpdateAlias that reached the check.
    pub writes: Vec<AliasWrite>,
}

/// One UpdateAlias: the RevisionId it carried, the alias's at that moment,
/// and whether it went through.
#[derive(Clone, Debug)]
pub struct AliasWrite {
    pub given: Option<String>,
    pub current: String,
    pub accepted: bool,
}

impl Revisions {
    /// What of an alias a RevisionId stands for.
    pub fn state(alias: &Value) -> Value {
        let weights = alias["RoutingConfig"]["AdditionalVersionWeights"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        json!([alias["FunctionVersion"], weights, alias["Description"]])
    }

    /// The alias's RevisionId: the one issued for it, unless it changed
    /// since behind the endpoint's back (a test driving moto directly).
    pub fn of(&mut self, key: &str, alias: &Value) -> String {
        let state = Self::state(alias);
        match self.current.get(key) {
            Some((rev, s)) if *s == state => rev.clone(),
            _ => self.issue(key, alias),
        }
    }

    pub fn issue(&mut self, key: &str, alias: &Value) -> String {
        self.issued += 1;
        let rev = format!("{:08}-6a1c-4f6e-9d2b-{:012}", self.issued, self.issued);
        self.current
            .insert(key.to_string(), (rev.clone(), Self::state(alias)));
        rev
    }
}

/// `FUNCTION/ALIAS` of an alias request: GetAlias and UpdateAlias name it in
/// the path, CreateAlias in the body.
pub fn alias_key(path: &str, body: &Value) -> Option<String> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (parts.get(2), parts.get(3), parts.get(4)) {
        (Some(f), Some(&"aliases"), Some(a)) => Some(format!("{f}/{a}")),
        (Some(f), Some(&"aliases"), None) => Some(format!("{f}/{}", body["Name"].as_str()?)),
        _ => None,
    }
}

/// The state the rules keep for one endpoint: alias RevisionIds and
/// dead-letter queues.
#[derive(Clone, Default)]
pub struct Strict {
    /// Dead-letter queues by qualifier ("$LATEST" and versions): moto keeps
    /// no DeadLetterConfig, so the endpoint plays it.
    pub dead_letters: Arc<Mutex<HashMap<String, String>>>,
    /// Held across each alias request, so that a RevisionId is checked and
    /// replaced in one step, as Lambda does.
    pub revisions: Arc<tokio::sync::Mutex<Revisions>>,
}

/// A Lambda request, as the endpoint received it.
pub struct Request {
    pub method: String,
    /// The path, percent-encoding kept.
    pub path: String,
    /// The query string, without `?` ("" when none).
    pub query: String,
    pub headers: hyper::HeaderMap,
    pub bytes: bytes::Bytes,
}

impl Request {
    /// The Lambda operation (see `kind`).
    pub fn kind(&self) -> String {
        kind(&self.method, &self.path)
    }

    /// The `Qualifier` query parameter (a version or alias), if any.
    pub fn qualifier(&self) -> Option<String> {
        url::form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == "Qualifier")
            .map(|(_, v)| v.into_owned())
    }

    /// The JSON body, or null.
    pub fn body(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }
}

impl Strict {
    /// Every UpdateAlias the RevisionId check saw.
    pub fn alias_writes(&self) -> Vec<AliasWrite> {
        self.revisions.blocking_lock().writes.clone()
    }

    /// Answer a Lambda request as Lambda would: `lie` if the caller has one
    /// (the rules do not apply then, but an alias's RevisionId is still
    /// played), else refused by `lambda_rules` or by a stale RevisionId, else
    /// forwarded to moto at `moto` with the dead-letter queues and
    /// RevisionIds played into its answer.
    pub async fn handle(
        &self,
        client: &reqwest::Client,
        moto: &str,
        req: Request,
        lie: Option<Reply>,
    ) -> Result<hyper::Response<Body>, std::io::Error> {
        let op = req.kind();
        let qualifier = req.qualifier();
        let body = req.body();
        let world = World {
            client,
            moto,
            function: req.path.split('/').nth(3).unwrap_or_default(),
            dead_letters: &self.dead_letters,
        };
        let reply = match lie {
            Some(r) => Some(r),
            None => lambda_rules(&world, &op, &body).await,
        };
        // Alias requests one at a time: the RevisionId checked, the write
        // made, the new RevisionId issued, together.
        let key = match op.as_str() {
            "GetAlias" | "UpdateAlias" | "CreateAlias" => alias_key(&req.path, &body),
            _ => None,
        };
        let mut revs = match &key {
            Some(_) => Some(self.revisions.clone().lock_owned().await),
            None => None,
        };
        let reply = match (reply, &key, revs.as_mut()) {
            (None, Some(k), Some(r)) if op == "UpdateAlias" => {
                let now = world.alias(k).await;
                let current = r.of(k, &now);
                let given = body["RevisionId"].as_str().map(String::from);
                let accepted = given.as_ref().is_none_or(|g| *g == current);
                r.writes.push(AliasWrite {
                    given,
                    current,
                    accepted,
                });
                (!accepted).then(|| lambda_error(412, "PreconditionFailedException", "The Revision Id provided does not match the latest Revision Id. Call the GetFunction/GetAlias API to retrieve the latest Revision Id".into()))
            }
            (reply, _, _) => reply,
        };
        let edit = match reply {
            Some(Reply::Answer(status, error, body, extra)) => {
                let mut r = server::full(status, &body.to_string());
                if let Some(t) = error {
                    r.headers_mut()
                        .insert("x-amzn-ErrorType", t.parse().unwrap());
                }
                for (k, v) in extra {
                    r.headers_mut().insert(k, v.parse().unwrap());
                }
                return Ok(r);
            }
            Some(Reply::Edit(f)) => Some(f),
            None => None,
        };
        let url = if req.query.is_empty() {
            format!("{moto}{}", req.path)
        } else {
            format!("{moto}{}?{}", req.path, req.query)
        };
        let method: reqwest::Method = req.method.parse().map_err(std::io::Error::other)?;
        let mut out = client.request(method, &url);
        for (k, v) in &req.headers {
            if !matches!(k.as_str(), "host" | "connection" | "transfer-encoding") {
                out = out.header(k, v);
            }
        }
        let res = out
            .body(req.bytes)
            .send()
            .await
            .map_err(std::io::Error::other)?;
        let status = res.status().as_u16();
        let played = play_dead_letters(&op, qualifier.as_deref(), &self.dead_letters);
        let revised = revs.is_some() && (200..300).contains(&status);
        if edit.is_none() && played.is_none() && !revised {
            return Ok(server::answer(res, status, |l| l.to_string()));
        }
        let mut v: Value = res.json().await.map_err(std::io::Error::other)?;
        if let Some(f) = played {
            f(&mut v);
        }
        if let Some(f) = edit {
            f(&mut v);
        }
        if let (true, Some(k), Some(r)) = (revised, &key, revs.as_mut()) {
            v["RevisionId"] = json!(if op == "GetAlias" {
                r.of(k, &v)
            } else {
                r.issue(k, &v)
            });
        }
        Ok(server::full(status, &v.to_string()))
    }
}

/// Where `lambda_rules` looks things up.
pub struct World<'a> {
    pub client: &'a reqwest::Client,
    pub moto: &'a str,
    pub function: &'a str,
    pub dead_letters: &'a Mutex<HashMap<String, String>>,
}

impl World<'_> {
    /// A version's (or $LATEST's) configuration, from moto.
    pub async fn config(&self, qualifier: &str) -> Value {
        let res = self
            .client
            .get(format!(
                "{}/2015-03-31/functions/{}/configuration?Qualifier={}",
                self.moto,
                self.function,
                qualifier.replace('$', "%24")
            ))
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0")
            .send()
            .await
            .unwrap();
        res.json().await.unwrap_or(Value::Null)
    }

    pub fn dead_letter(&self, qualifier: &str) -> Option<String> {
        self.dead_letters.lock().unwrap().get(qualifier).cloned()
    }

    /// An alias (`FUNCTION/ALIAS`), from moto.
    pub async fn alias(&self, key: &str) -> Value {
        let (function, alias) = key.split_once('/').unwrap_or((key, ""));
        let res = self
            .client
            .get(format!(
                "{}/2015-03-31/functions/{function}/aliases/{alias}",
                self.moto
            ))
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/lambda/aws4_request, SignedHeaders=host, Signature=0")
            .send()
            .await
            .unwrap();
        res.json().await.unwrap_or(Value::Null)
    }
}

/// What real Lambda refuses and moto lets through (Lambda developer guide,
/// configuration-aliases: at most one additional version, both published
/// — never $LATEST —, same execution role, same dead-letter queue; Lambda
/// API reference PublishVersion: CodeSha256 must be $LATEST's), and what
/// moto does not implement at all (provisioned concurrency: none
/// configured). The error types are Lambda's; the message texts are real
/// where a source records them (the execution-role one from
/// serverless-heaven/serverless-aws-alias#64, the CodeSHA256 one as
/// measured in floci-io/floci#2822) and paraphrased otherwise — hoist never
/// depends on them except where noted in src/deploy/states.rs.
pub async fn lambda_rules(world: &World<'_>, op: &str, body: &Value) -> Option<Reply> {
    match op {
        "UpdateAlias" | "CreateAlias" => {
            let weights = body["RoutingConfig"]["AdditionalVersionWeights"].as_object()?;
            if weights.is_empty() {
                return None;
            }
            if weights.len() > 1 {
                return Some(lambda_error(400, "InvalidParameterValueException", "An alias can point to at most two versions: AdditionalVersionWeights takes one version".into()));
            }
            let primary = body["FunctionVersion"].as_str()?.to_string();
            let extra = weights.keys().next()?.clone();
            if primary == "$LATEST" || extra == "$LATEST" {
                return Some(lambda_error(
                    400,
                    "InvalidParameterValueException",
                    "$LATEST is not supported for an alias pointing to more than 1 version".into(),
                ));
            }
            let (a, b) = (world.config(&primary).await, world.config(&extra).await);
            if a["Role"] != b["Role"] {
                return Some(lambda_error(
                    400,
                    "InvalidParameterValueException",
                    "Specified versions must be associated with the same execution role".into(),
                ));
            }
            if world.dead_letter(&primary) != world.dead_letter(&extra) {
                return Some(lambda_error(400, "InvalidParameterValueException", "Specified versions must be associated with the same dead letter queue configuration".into()));
            }
            None
        }
        "PublishVersion" => {
            let given = body["CodeSha256"].as_str()?;
            let current = world.config("$LATEST").await["CodeSha256"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            (given != current).then(|| {
                lambda_error(400, "InvalidParameterValueException", format!("CodeSHA256 ({given}) is different from current CodeSHA256 in $LATEST ({current}). Please try again with the CodeSHA256 in $LATEST."))
            })
        }
        "GetProvisionedConcurrencyConfig" => Some(lambda_error(
            404,
            "ProvisionedConcurrencyConfigNotFoundException",
            "No Provisioned Concurrency Config found for this function".into(),
        )),
        _ => None,
    }
}

/// The dead-letter queues the endpoint plays into moto's answers: each
/// configuration read carries its qualifier's, and a published version takes
/// $LATEST's.
pub fn play_dead_letters(
    op: &str,
    qualifier: Option<&str>,
    dead_letters: &Arc<Mutex<HashMap<String, String>>>,
) -> Option<Edit> {
    if dead_letters.lock().unwrap().is_empty() {
        return None;
    }
    let d = dead_letters.clone();
    match op {
        "GetFunction" | "GetFunctionConfiguration" => {
            let q = qualifier.unwrap_or("$LATEST").to_string();
            let wrapped = op == "GetFunction";
            Some(Box::new(move |v: &mut Value| {
                let target = d.lock().unwrap().get(&q).cloned();
                let config = if wrapped { &mut v["Configuration"] } else { v };
                if let (Some(arn), Some(obj)) = (target, config.as_object_mut()) {
                    obj.insert("DeadLetterConfig".into(), json!({"TargetArn": arn}));
                }
            }))
        }
        "PublishVersion" => Some(Box::new(move |v: &mut Value| {
            let mut d = d.lock().unwrap();
            if let (Some(arn), Some(version)) = (d.get("$LATEST").cloned(), v["Version"].as_str()) {
                d.insert(version.to_string(), arn.clone());
                v["DeadLetterConfig"] = json!({"TargetArn": arn});
            }
        })),
        _ => None,
    }
}

/// A Lambda operation's name from its REST method and path.
pub fn kind(method: &str, path: &str) -> String {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let op = match (method, parts.get(3).copied(), parts.len()) {
        ("GET", None, _) => "GetFunction",
        ("GET", Some("configuration"), _) => "GetFunctionConfiguration",
        ("PUT", Some("code"), _) => "UpdateFunctionCode",
        ("POST", Some("versions"), _) => "PublishVersion",
        ("GET", Some("versions"), _) => "ListVersionsByFunction",
        ("GET", Some("aliases"), _) => "GetAlias",
        ("PUT", Some("aliases"), _) => "UpdateAlias",
        ("POST", Some("aliases"), _) => "CreateAlias",
        ("POST", Some("invocations"), _) => "Invoke",
        ("GET", Some("provisioned-concurrency"), _) => "GetProvisionedConcurrencyConfig",
        _ => "other",
    };
    op.to_string()
}
