//! The suite's AWS API endpoint: moto, plus what moto lacks and real AWS
//! has, and a record of every call.
//!
//! Every hoist run in the suite reaches the AWS APIs through one of these
//! (`common::local()` points `AWS_ENDPOINT_URL` at it). It forwards each
//! request to moto unchanged, and answers itself where moto has no answer
//! at all — so that a call hoist makes against real AWS is not met here by
//! an emulator's 500:
//! - ECR DescribeRepositoryCreationTemplates (moto 5.2 has no repository
//!   creation templates): the templates the test configured, none by default;
//! - Lambda Invoke, only when a test sets an answer (`answer_invocations`):
//!   moto runs a function in Docker, which the local environment does not
//!   have, so without one the invoke reaches moto and fails as it would.
//!
//! Every other Lambda request meets what real Lambda refuses and moto lets
//! through (lambda_rules.rs: alias routing rules, PublishVersion's
//! CodeSha256, alias RevisionIds), so no test's deploy passes here that
//! Lambda would refuse.
//!
//! It records each call (service from the SigV4 credential scope, operation
//! from `X-Amz-Target`, the form's `Action`, or the REST path) with its
//! parameters and the access key that signed it, so a test can say which
//! AWS operations a command made, on what, as whom (tests/iam.rs maps them
//! to IAM actions and resources).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::lambda_rules::{Request, Strict};
use super::server;

#[derive(Clone, Debug)]
pub struct Call {
    /// `ecr`, `sts`, `lambda`, `monitoring` (CloudWatch), `iam`…
    pub service: String,
    /// `DescribeRepositories`, `AssumeRoleWithWebIdentity`, or for REST
    /// APIs (Lambda) `METHOD /path`.
    pub operation: String,
    pub method: String,
    /// The request path, percent-encoding kept (REST APIs name the
    /// resource in it).
    pub path: String,
    pub query: Option<String>,
    /// The parameters: the JSON body (ECR's JSON 1.1 protocol, Lambda's REST
    /// bodies), or the form as an object of its pairs (STS, CloudWatch and
    /// IAM's query protocol; `AlarmNames.member.1`…), or null.
    pub params: Value,
    /// The access key id of the SigV4 signature; None when unsigned
    /// (AssumeRoleWithWebIdentity).
    pub access_key: Option<String>,
    pub at: Instant,
}

pub struct AwsFront {
    server: server::Running,
    calls: Arc<Mutex<Vec<Call>>>,
    templates: Arc<Mutex<Value>>,
    invocations: Arc<Mutex<Option<Value>>>,
    /// Lambda as Lambda behaves (RevisionIds among it).
    strict: Strict,
}

impl AwsFront {
    /// In front of moto at `moto` (`http://127.0.0.1:PORT`).
    pub fn start(moto: &str) -> AwsFront {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let templates = Arc::new(Mutex::new(json!([])));
        let invocations: Arc<Mutex<Option<Value>>> = Arc::default();
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let moto = moto.trim_end_matches('/').to_string();
        let strict = Strict::default();
        let (c, t, i, st) = (
            calls.clone(),
            templates.clone(),
            invocations.clone(),
            strict.clone(),
        );
        let server = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (calls, templates, invocations, strict, client, moto) = (
                c.clone(),
                t.clone(),
                i.clone(),
                st.clone(),
                client.clone(),
                moto.clone(),
            );
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                let call = identify(&parts, &body);
                let operation = call.operation.clone();
                let lambda = call.service == "lambda";
                let invoke = call.service == "lambda"
                    && call.method == "POST"
                    && call.path.trim_end_matches('/').ends_with("/invocations");
                calls.lock().unwrap().push(call);
                let answer = invocations.lock().unwrap().clone();
                if let (true, Some(payload)) = (invoke, answer) {
                    // What Lambda answers a synchronous invoke that worked.
                    let mut res = server::full(200, &payload.to_string());
                    res.headers_mut()
                        .insert("X-Amz-Executed-Version", "1".parse().unwrap());
                    return Ok(res);
                }
                if operation == "DescribeRepositoryCreationTemplates" {
                    let listed = templates.lock().unwrap().clone();
                    // A test's identity without the permission: what ECR
                    // answers it.
                    if listed == json!("AccessDenied") {
                        let mut res = server::full(
                            400,
                            r#"{"__type":"AccessDeniedException","message":"User: arn:aws:sts::123456789012:assumed-role/ci/hoist is not authorized to perform: ecr:DescribeRepositoryCreationTemplates"}"#,
                        );
                        res.headers_mut().insert(
                            "content-type",
                            "application/x-amz-json-1.1".parse().unwrap(),
                        );
                        return Ok(res);
                    }
                    let mut res = server::full(
                        200,
                        &json!({ "registryId": "123456789012", "repositoryCreationTemplates": listed })
                            .to_string(),
                    );
                    res.headers_mut().insert(
                        "content-type",
                        "application/x-amz-json-1.1".parse().unwrap(),
                    );
                    return Ok(res);
                }
                if lambda {
                    let request = Request {
                        method: parts.method.to_string(),
                        path: parts.uri.path().to_string(),
                        query: parts.uri.query().unwrap_or_default().to_string(),
                        headers: parts.headers.clone(),
                        bytes: body,
                    };
                    return strict.handle(&client, &moto, request, None).await;
                }
                let path = parts
                    .uri
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or("/");
                let mut out = client.request(parts.method.clone(), format!("{moto}{path}"));
                for (k, v) in &parts.headers {
                    if !matches!(k.as_str(), "host" | "connection" | "transfer-encoding") {
                        out = out.header(k, v);
                    }
                }
                let res = out.body(body).send().await.map_err(std::io::Error::other)?;
                let status = res.status().as_u16();
                Ok(server::answer(res, status, |l| l.to_string()))
            }
        });
        AwsFront {
            server,
            calls,
            templates,
            invocations,
            strict,
        }
    }

    /// Every UpdateAlias this front's RevisionId check saw.
    pub fn alias_writes(&self) -> Vec<super::lambda_rules::AliasWrite> {
        self.strict.alias_writes()
    }

    /// `http://127.0.0.1:PORT`, for AWS_ENDPOINT_URL.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.server.addr)
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The repository creation templates DescribeRepositoryCreationTemplates
    /// answers with, in ECR's JSON shape (`prefix`, `appliedFor`,
    /// `imageTagMutability`, `lifecyclePolicy`…).
    /// (`"AccessDenied"`: refuse the call, as for an identity without
    /// ecr:DescribeRepositoryCreationTemplates.)
    pub fn set_templates(&self, templates: Value) {
        *self.templates.lock().unwrap() = templates;
    }

    /// Answer every Lambda Invoke with `payload` (status 200, no function
    /// error), as a function that ran and returned it.
    pub fn answer_invocations(&self, payload: Value) {
        *self.invocations.lock().unwrap() = Some(payload);
    }
}

/// Which service and operation a request is.
fn identify(parts: &hyper::http::request::Parts, body: &[u8]) -> Call {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    // SigV4: Credential=AKID/DATE/REGION/SERVICE/aws4_request
    let authorization = header("authorization");
    let scope = authorization.split("Credential=").nth(1);
    let service = scope.and_then(|c| c.split('/').nth(3)).map(str::to_string);
    let access_key = scope
        .and_then(|c| c.split('/').next())
        .filter(|k| !k.is_empty())
        .map(str::to_string);
    let form_action = || {
        url::form_urlencoded::parse(body)
            .find(|(k, _)| k == "Action")
            .map(|(_, v)| v.into_owned())
    };
    let target = header("x-amz-target");
    let operation = if let Some((_, op)) = target.rsplit_once('.') {
        op.to_string()
    } else if let Some(action) = form_action() {
        action
    } else {
        format!("{} {}", parts.method, parts.uri.path())
    };
    let params = if let Ok(v) = serde_json::from_slice::<Value>(body) {
        v
    } else if header("content-type").starts_with("application/x-www-form-urlencoded") {
        Value::Object(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
                .collect(),
        )
    } else {
        Value::Null
    };
    Call {
        // AssumeRoleWithWebIdentity is not signed.
        service: service.unwrap_or_else(|| "sts".into()),
        operation,
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        params,
        access_key,
        at: Instant::now(),
    }
}
