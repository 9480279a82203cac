//! The suite's AWS API endpoint: moto, plus what moto lacks and real AWS
//! has, and a record of every call.
//!
//! Every hoist run in the suite reaches the AWS APIs through one of these
//! (`common::local()` points `AWS_ENDPOINT_URL` at it). It forwards each
//! request to moto unchanged, and answers itself where moto has no answer
//! at all — so that a call hoist makes against real AWS is not met here by
//! an emulator's 500:
//! - ECR DescribeRepositoryCreationTemplates (moto 5.2 has no repository
//!   creation templates): the templates the test configured, none by default.
//!
//! It records each call (service from the SigV4 credential scope, operation
//! from `X-Amz-Target`, the form's `Action`, or the REST path), so a test
//! can say which AWS operations a command made.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::server;

#[derive(Clone, Debug)]
pub struct Call {
    /// `ecr`, `sts`, `lambda`, `monitoring` (CloudWatch), `iam`…
    pub service: String,
    /// `DescribeRepositories`, `AssumeRoleWithWebIdentity`, or for REST
    /// APIs (Lambda) `METHOD /path`.
    pub operation: String,
    pub at: Instant,
}

pub struct AwsFront {
    server: server::Running,
    calls: Arc<Mutex<Vec<Call>>>,
    templates: Arc<Mutex<Value>>,
}

impl AwsFront {
    /// In front of moto at `moto` (`http://127.0.0.1:PORT`).
    pub fn start(moto: &str) -> AwsFront {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let templates = Arc::new(Mutex::new(json!([])));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let moto = moto.trim_end_matches('/').to_string();
        let (c, t) = (calls.clone(), templates.clone());
        let server = server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
            let (calls, templates, client, moto) =
                (c.clone(), t.clone(), client.clone(), moto.clone());
            async move {
                let (parts, body) = req.into_parts();
                let body = body
                    .collect()
                    .await
                    .map_err(std::io::Error::other)?
                    .to_bytes();
                let call = identify(&parts, &body);
                let operation = call.operation.clone();
                calls.lock().unwrap().push(call);
                if operation == "DescribeRepositoryCreationTemplates" {
                    let listed = templates.lock().unwrap().clone();
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
        }
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
    pub fn set_templates(&self, templates: Value) {
        *self.templates.lock().unwrap() = templates;
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
    let service = header("authorization")
        .split("Credential=")
        .nth(1)
        .and_then(|c| c.split('/').nth(3))
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
    Call {
        // AssumeRoleWithWebIdentity is not signed.
        service: service.unwrap_or_else(|| "sts".into()),
        operation,
        at: Instant::now(),
    }
}
