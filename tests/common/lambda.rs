//! moto's AWS APIs driven directly (the SDK configured for the local
//! environment), and for Lambda, CloudWatch and IAM what deploy and ship
//! tests set up (a role, an image function with alias `live`) and check
//! (alias routing, published versions).

use std::collections::HashMap;

use serde_json::json;

use super::{local, unique};

pub fn block_on<T>(f: impl Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// The HTTP client of the suite's own SDK clients. hoist builds the AWS
/// crates without their default client (it brings its own, src/net.rs), so
/// every SDK client needs one given — the suite's too.
pub fn http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ))
        .build_https()
}

pub fn sdk() -> aws_config::SdkConfig {
    let l = local();
    block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(aws_config::Region::new(
                l.vars
                    .get("AWS_REGION")
                    .cloned()
                    .unwrap_or_else(|| "us-east-1".into()),
            ))
            .endpoint_url(
                l.vars
                    .get("AWS_ENDPOINT_URL")
                    .expect("env.sh sets AWS_ENDPOINT_URL"),
            )
            .credentials_provider(aws_sdk_lambda::config::Credentials::new(
                "testing", "testing", None, None, "test",
            ))
            .load(),
    )
}

pub fn lambda() -> aws_sdk_lambda::Client {
    aws_sdk_lambda::Client::new(&sdk())
}

pub fn cloudwatch() -> aws_sdk_cloudwatch::Client {
    aws_sdk_cloudwatch::Client::new(&sdk())
}

/// A role for Lambda, made with IAM (moto's CreateFunction wants one). IAM's
/// query API takes a form; moto does not check signatures.
pub fn role() -> String {
    let name = unique("hoist-fn");
    let trust = json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]});
    let moto = local().vars["AWS_ENDPOINT_URL"].clone();
    let res = block_on(async {
        reqwest::Client::new()
            .post(&moto)
            .header("Authorization", "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([("Action", "CreateRole"), ("Version", "2010-05-08"), ("RoleName", name.as_str()), ("AssumeRolePolicyDocument", &trust.to_string())])
                .finish())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let arn = res
        .split("<Arn>")
        .nth(1)
        .and_then(|r| r.split("</Arn>").next())
        .unwrap_or_else(|| panic!("moto created no role: {res}"));
    arn.to_string()
}

/// The image URI Lambda is given for `repo@digest`.
pub fn uri(repo: &str, digest: &str) -> String {
    format!("{}/{repo}@{digest}", local().ecr_host)
}

/// A container-image function running `repo@digest`, version 1 published and
/// alias `live` on it.
pub fn function(repo: &str, digest: &str, arch: &str) -> String {
    function_with_alias(repo, digest, arch, true)
}

/// A container-image function running `repo@digest` with alias `live` on
/// `$LATEST` (no version published): how functions made by hand, or by
/// tools that never publish, often look.
pub fn function_on_latest(repo: &str, digest: &str, arch: &str) -> String {
    function_with_alias(repo, digest, arch, false)
}

fn function_with_alias(repo: &str, digest: &str, arch: &str, publish: bool) -> String {
    let name = unique("fn");
    let l = lambda();
    let role = role();
    block_on(async {
        l.create_function()
            .function_name(&name)
            .role(role)
            .package_type(aws_sdk_lambda::types::PackageType::Image)
            .code(
                aws_sdk_lambda::types::FunctionCode::builder()
                    .image_uri(uri(repo, digest))
                    .build(),
            )
            .architectures(arch.into())
            .send()
            .await
            .expect("moto creates the function");
        let version = if publish {
            let v = l
                .publish_version()
                .function_name(&name)
                .send()
                .await
                .unwrap();
            v.version().unwrap().to_string()
        } else {
            "$LATEST".to_string()
        };
        l.create_alias()
            .function_name(&name)
            .name("live")
            .function_version(version)
            .send()
            .await
            .unwrap();
    });
    name
}

/// The alias's RevisionId, as GetAlias answers it now.
pub fn alias_revision(function: &str, name: &str) -> String {
    let a = block_on(
        lambda()
            .get_alias()
            .function_name(function)
            .name(name)
            .send(),
    )
    .expect("the alias exists");
    a.revision_id()
        .expect("Lambda gives every alias a RevisionId")
        .to_string()
}

/// (primary version, additional weights) of an alias.
pub fn alias(function: &str, name: &str) -> (String, HashMap<String, f64>) {
    let a = block_on(
        lambda()
            .get_alias()
            .function_name(function)
            .name(name)
            .send(),
    )
    .expect("the alias exists");
    (
        a.function_version().unwrap().to_string(),
        a.routing_config()
            .and_then(|r| r.additional_version_weights())
            .cloned()
            .unwrap_or_default(),
    )
}

pub fn versions(function: &str) -> Vec<(String, String)> {
    let out = block_on(
        lambda()
            .list_versions_by_function()
            .function_name(function)
            .send(),
    )
    .unwrap();
    out.versions()
        .iter()
        .filter(|v| v.version() != Some("$LATEST"))
        .map(|v| {
            (
                v.version().unwrap().to_string(),
                v.description().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// An alias's description (where hoist records what it did or is doing).
pub fn alias_description(function: &str, name: &str) -> String {
    block_on(
        lambda()
            .get_alias()
            .function_name(function)
            .name(name)
            .send(),
    )
    .expect("the alias exists")
    .description()
    .unwrap_or_default()
    .to_string()
}
