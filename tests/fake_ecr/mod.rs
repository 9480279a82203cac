//! A fake ECR JSON API (and STS GetCallerIdentity) for the gate's
//! recorded-response tests: it answers what moto does not emulate —
//! scan statuses, enhanced findings, another account's registry — and is as
//! strict as ECR is documented to be (botocore `ecr/2015-09-21`
//! service-2.json shapes; ECR user guide):
//!
//! - requests are validated: repositoryName (2–256, ECR's pattern),
//!   registryId (12 digits), imageId (a sha256 digest), maxResults (1–1000),
//!   nextToken (only tokens it issued); an invalid request is refused as ECR
//!   refuses it and recorded in `invalid`;
//! - GetRegistryScanningConfiguration and
//!   BatchGetRepositoryScanningConfiguration take no registry id and answer
//!   about the caller's own registry only; the image calls answer
//!   RepositoryNotFoundException unless they name the registry that holds
//!   the image;
//! - StartImageScan on a registry with enhanced scanning is refused with
//!   ValidationException "This feature is disabled" (manual scans are
//!   basic-only; alexjurkiewicz/ecr-scan-image#44);
//! - DescribeImageScanFindings pages `findings` by maxResults (default 100)
//!   but `enhancedFindings` by 100 whatever maxResults says (boto3#3449).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde_json::{Value, json};

pub const DIGEST: &str = "sha256:5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a";
pub const CALLER: &str = "123456789012";
pub const ELSEWHERE: &str = "111122223333";
const REPOSITORY: &str = "team/app";
const TARGET: &str = "AmazonEC2ContainerRegistry_V20150921.";

/// What one DescribeImageScanFindings poll answers: a whole result (the
/// fake pages it), or an error.
#[derive(Clone)]
pub enum Answer {
    Result(Value),
    Error(&'static str),
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub op: String,
    pub body: Value,
}

pub struct Fake {
    /// The account the caller's credentials belong to: the registry
    /// GetRegistryScanningConfiguration describes.
    pub caller: &'static str,
    /// The registry that holds team/app@DIGEST.
    pub home: &'static str,
    /// How the image's registry scans: BASIC or ENHANCED.
    pub scan_type: &'static str,
    /// How the caller's registry scans, when it is not the image's.
    pub caller_scan_type: &'static str,
    /// The repository's scan frequency (SCAN_ON_PUSH, CONTINUOUS_SCAN,
    /// MANUAL), or DENIED.
    pub frequency: &'static str,
    /// The caller may not read the registry's scanning configuration.
    pub config_denied: bool,
    /// The script: each poll without a nextToken moves to the next entry
    /// (the last repeats).
    pub describe: Vec<Answer>,
    /// StartImageScan's answer on a basic registry.
    pub start: Answer,
    // What happened.
    pub polls: usize,
    pub starts: usize,
    pub calls: Vec<Call>,
    /// Requests ECR would have refused as invalid.
    pub invalid: Vec<String>,
    tokens: BTreeSet<String>,
}

fn error(kind: &str, message: &str) -> (u16, String) {
    (
        400,
        json!({ "__type": kind, "message": message }).to_string(),
    )
}

/// ECR's repository-name pattern (botocore RepositoryName):
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`,
/// 2–256 characters. Written out here: the tests have no regex crate.
fn valid_repository(name: &str) -> bool {
    let component = |c: &str| {
        let b = c.as_bytes();
        let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
        if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &c[start..i];
            let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-');
            if !ok {
                return false;
            }
        }
        true
    };
    (2..=256).contains(&name.len()) && name.split('/').all(component)
}

fn valid_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

impl Fake {
    pub fn new(scan_type: &'static str, frequency: &'static str, describe: Vec<Answer>) -> Fake {
        Fake {
            caller: CALLER,
            home: CALLER,
            scan_type,
            caller_scan_type: scan_type,
            frequency,
            config_denied: false,
            describe,
            start: Answer::Result(json!({ "imageScanStatus": { "status": "IN_PROGRESS" } })),
            polls: 0,
            starts: 0,
            calls: vec![],
            invalid: vec![],
            tokens: BTreeSet::new(),
        }
    }

    /// The caller may not call GetRegistryScanningConfiguration.
    pub fn denied(mut self) -> Fake {
        self.config_denied = true;
        self
    }

    /// The image lives in another account's registry, which scans as
    /// `scan_type`; the caller's own registry scans as `caller_scan_type`.
    pub fn elsewhere(mut self, caller_scan_type: &'static str) -> Fake {
        self.home = ELSEWHERE;
        self.caller_scan_type = caller_scan_type;
        self
    }

    /// The operations received, in order.
    pub fn ops(&self) -> Vec<&str> {
        self.calls.iter().map(|c| c.op.as_str()).collect()
    }

    /// When each call of `op` arrived.
    pub fn times(&self, op: &str) -> Vec<Instant> {
        self.calls
            .iter()
            .filter(|c| c.op == op)
            .map(|c| c.at)
            .collect()
    }

    fn refuse(&mut self, kind: &str, message: String) -> (u16, String) {
        self.invalid.push(message.clone());
        error(kind, &message)
    }

    /// Check the fields every image operation shares; Err is the answer.
    fn image_request(
        &mut self,
        op: &str,
        body: &Value,
        validation: &str,
    ) -> Result<(), (u16, String)> {
        let repo = body["repositoryName"].as_str().unwrap_or_default();
        if !valid_repository(repo) {
            return Err(self.refuse(
                validation,
                format!("1 validation error detected: Value '{repo}' at 'repositoryName' failed to satisfy constraint: Member must satisfy regular expression pattern"),
            ));
        }
        if let Some(id) = body.get("registryId") {
            let id = id.as_str().unwrap_or_default();
            if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(self.refuse(
                    validation,
                    format!("1 validation error detected: Value '{id}' at 'registryId' failed to satisfy constraint: Member must satisfy regular expression pattern: [0-9]{{12}}"),
                ));
            }
        }
        let ids: Vec<&Value> = match op {
            "BatchGetImage" => body["imageIds"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default(),
            _ => vec![&body["imageId"]],
        };
        if ids.is_empty() || ids.len() > 100 {
            return Err(self.refuse(
                validation,
                format!("{op}: 1 to 100 image ids, not {}", ids.len()),
            ));
        }
        for id in ids {
            let d = id["imageDigest"].as_str().unwrap_or_default();
            if !valid_digest(d) {
                return Err(self.refuse("InvalidParameterException", format!("Invalid parameter at 'imageDigest' failed to satisfy constraint: 'Invalid image digest' ({d:?})")));
            }
        }
        // Without a registry id, the caller's own registry is meant.
        let registry = body["registryId"].as_str().unwrap_or(self.caller);
        if registry != self.home || repo != REPOSITORY {
            return Err(error(
                "RepositoryNotFoundException",
                &format!(
                    "The repository with name '{repo}' does not exist in the registry with id '{registry}'"
                ),
            ));
        }
        Ok(())
    }

    pub fn answer(&mut self, op: &str, body: &Value) -> (u16, String) {
        match op {
            "GetRegistryScanningConfiguration" if self.config_denied => error(
                "AccessDeniedException",
                &format!(
                    "User: arn:aws:sts::{}:assumed-role/ci/hoist is not authorized to perform: ecr:GetRegistryScanningConfiguration on resource: * because no identity-based policy allows the ecr:GetRegistryScanningConfiguration action",
                    self.caller
                ),
            ),
            "GetRegistryScanningConfiguration" => (
                200,
                json!({
                    "registryId": self.caller,
                    "scanningConfiguration": { "scanType": self.caller_scan_type, "rules": [] }
                })
                .to_string(),
            ),
            "BatchGetRepositoryScanningConfiguration" => {
                let names = body["repositoryNames"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                if names.is_empty()
                    || names.len() > 25
                    || !names
                        .iter()
                        .all(|n| n.as_str().is_some_and(valid_repository))
                {
                    return self.refuse(
                        "ValidationException",
                        format!("repositoryNames must be 1 to 25 repository names: {names:?}"),
                    );
                }
                if self.frequency == "DENIED" {
                    return error(
                        "AccessDeniedException",
                        "not authorized to perform: ecr:BatchGetRepositoryScanningConfiguration",
                    );
                }
                // No registry id: always the caller's registry.
                if self.home != self.caller {
                    return error(
                        "RepositoryNotFoundException",
                        &format!(
                            "The repository with name '{REPOSITORY}' does not exist in the registry with id '{}'",
                            self.caller
                        ),
                    );
                }
                (
                    200,
                    json!({
                        "scanningConfigurations": [{
                            "repositoryArn": format!("arn:aws:ecr:us-east-1:{}:repository/{REPOSITORY}", self.home),
                            "repositoryName": REPOSITORY,
                            "scanOnPush": self.frequency == "SCAN_ON_PUSH",
                            "scanFrequency": self.frequency,
                            "appliedScanFilters": []
                        }],
                        "failures": []
                    })
                    .to_string(),
                )
            }
            "BatchGetImage" => {
                if let Err(e) = self.image_request(op, body, "InvalidParameterException") {
                    return e;
                }
                if body["imageIds"][0]["imageDigest"] != DIGEST {
                    return (200, json!({ "images": [], "failures": [{ "imageId": body["imageIds"][0], "failureCode": "ImageNotFound", "failureReason": "Requested image not found" }] }).to_string());
                }
                (
                    200,
                    json!({
                        "images": [{
                            "registryId": self.home,
                            "repositoryName": REPOSITORY,
                            "imageId": { "imageDigest": DIGEST },
                            "imageManifest": json!({ "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json" }).to_string(),
                            "imageManifestMediaType": "application/vnd.oci.image.manifest.v1+json"
                        }],
                        "failures": []
                    })
                    .to_string(),
                )
            }
            "StartImageScan" => {
                if let Err(e) = self.image_request(op, body, "ValidationException") {
                    return e;
                }
                self.starts += 1;
                if self.scan_type == "ENHANCED" {
                    // Manual scans are basic-only (ECR user guide,
                    // "Considerations for enhanced scanning").
                    return error("ValidationException", "This feature is disabled");
                }
                match &self.start {
                    Answer::Error(e) => error(e, &format!("recorded {e}")),
                    Answer::Result(v) => {
                        let mut v = v.clone();
                        v["registryId"] = json!(self.home);
                        v["repositoryName"] = json!(REPOSITORY);
                        v["imageId"] = json!({ "imageDigest": DIGEST });
                        (200, v.to_string())
                    }
                }
            }
            "DescribeImageScanFindings" => self.describe(body),
            other => (
                400,
                json!({ "__type": "UnknownOperationException", "message": other }).to_string(),
            ),
        }
    }

    fn describe(&mut self, body: &Value) -> (u16, String) {
        if let Err(e) = self.image_request("DescribeImageScanFindings", body, "ValidationException")
        {
            return e;
        }
        let max = match body.get("maxResults") {
            None => 100,
            Some(m) => match m.as_i64() {
                Some(n) if (1..=1000).contains(&n) => n as usize,
                _ => {
                    return self.refuse(
                        "ValidationException",
                        format!("1 validation error detected: Value '{m}' at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 1000"),
                    );
                }
            },
        };
        let (poll, page_no) = match body.get("nextToken") {
            None => {
                self.polls += 1;
                (self.polls, 0)
            }
            Some(t) => {
                let t = t.as_str().unwrap_or_default().to_string();
                if !self.tokens.contains(&t) {
                    return self.refuse(
                        "InvalidParameterException",
                        format!("Invalid parameter at 'nextToken': {t:?} was not issued"),
                    );
                }
                let (p, o) = t.split_once(':').unwrap();
                (p.parse().unwrap(), o.parse().unwrap())
            }
        };
        let i = (poll - 1).min(self.describe.len() - 1);
        let result = match &self.describe[i] {
            Answer::Error(e) => return error(e, &format!("recorded {e}")),
            Answer::Result(v) => v.clone(),
        };
        let mut page = result.clone();
        let mut more = false;
        if let Some(f) = page.get_mut("imageScanFindings") {
            // Basic findings honour maxResults; enhanced findings come 100
            // at a time whatever it says (boto3#3449).
            for (key, size) in [("findings", max), ("enhancedFindings", 100)] {
                if let Some(list) = f.get(key).and_then(Value::as_array) {
                    let first = page_no * size;
                    let slice: Vec<Value> = list.iter().skip(first).take(size).cloned().collect();
                    more |= list.len() > first + size;
                    f[key] = json!(slice);
                }
            }
        }
        page["registryId"] = json!(self.home);
        page["repositoryName"] = json!(REPOSITORY);
        page["imageId"] = json!({ "imageDigest": DIGEST });
        if more {
            let token = format!("{poll}:{}", page_no + 1);
            self.tokens.insert(token.clone());
            page["nextToken"] = json!(token);
        }
        (200, page.to_string())
    }
}

/// Serve `fake` as ECR's JSON API (and STS GetCallerIdentity, answering
/// with the fake's caller account) until the handle is dropped; returns the
/// server and the endpoint URL.
pub fn serve(fake: Arc<Mutex<Fake>>) -> (crate::common::server::Running, String) {
    use http_body_util::BodyExt;
    let server = crate::common::server::serve(move |req: hyper::Request<hyper::body::Incoming>| {
        let state = fake.clone();
        async move {
            let at = Instant::now();
            let target = req
                .headers()
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string();
            let json_type = req
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes() == b"application/x-amz-json-1.1");
            let body = req
                .into_body()
                .collect()
                .await
                .map_err(std::io::Error::other)?
                .to_bytes();
            let mut fake = state.lock().unwrap();
            // STS (query protocol): only GetCallerIdentity.
            if target.is_empty()
                && String::from_utf8_lossy(&body).contains("Action=GetCallerIdentity")
            {
                fake.calls.push(Call {
                    at,
                    op: "sts:GetCallerIdentity".into(),
                    body: Value::Null,
                });
                let xml = format!(
                    "<GetCallerIdentityResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><GetCallerIdentityResult><UserId>AROAFAKE:hoist</UserId><Account>{0}</Account><Arn>arn:aws:sts::{0}:assumed-role/ci/hoist</Arn></GetCallerIdentityResult><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
                    fake.caller
                );
                let mut res = crate::common::server::full(200, &xml);
                res.headers_mut()
                    .insert("content-type", "text/xml".parse().unwrap());
                return Ok(res);
            }
            let op = target.strip_prefix(TARGET).unwrap_or_default().to_string();
            let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            fake.calls.push(Call {
                at,
                op: op.clone(),
                body: body.clone(),
            });
            let (status, text) = if !json_type || op.is_empty() || !body.is_object() {
                let m = format!("not an ECR JSON 1.1 request: target {target:?}");
                fake.refuse("SerializationException", m)
            } else {
                fake.answer(&op, &body)
            };
            let mut res = crate::common::server::full(status, &text);
            res.headers_mut().insert(
                "content-type",
                "application/x-amz-json-1.1".parse().unwrap(),
            );
            Ok(res)
        }
    });
    let endpoint = format!("http://{}", server.addr);
    (server, endpoint)
}
