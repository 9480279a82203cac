//! What sits between hoist and the registry: a registry that refuses the
//! credentials, and the corporate proxies HTTPS_PROXY / HTTP_PROXY /
//! NO_PROXY name. (ECR's quirks and injected faults: ecr_quirks.rs,
//! faults.rs.)

mod common;

use common::proxy;

use common::fixtures::Layout;
use common::{hoist, unique};
use proxy::{Options, Proxy};

#[test]
fn refused_credentials_are_a_usage_error_with_the_iam_hint() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1000);
    let proxy = Proxy::start(Options {
        deny: true,
        ..Default::default()
    });
    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &unique("denied"),
        &["--create-repository", "--tag", "x"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("IAM"), "{}", run.stderr);
}

#[test]
fn proxies_carry_every_connection_and_no_proxy_bypasses_them() {
    use common::forward_proxy::ForwardProxy;
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 2, 10_000);
    let src = dir.path().to_str().unwrap();

    // The registry is https: HTTPS_PROXY tunnels it. moto is plain http:
    // HTTP_PROXY carries the AWS API calls. (What is checked here is the
    // CONNECT tunnel an https registry needs, so this one test talks to the
    // registry itself; the suite's ECR front is plain http on loopback.)
    let https = common::proxy::upstream();
    let proxy = ForwardProxy::start();
    let repo = unique("proxied");
    let run = hoist(
        &[
            "push",
            src,
            "--repository",
            &repo,
            "--create-repository",
            "-q",
            "--registry-endpoint",
            &https,
        ],
        &[("HTTPS_PROXY", &proxy.url()), ("HTTP_PROXY", &proxy.url())],
    );
    run.ok();
    assert_eq!(run.stdout.trim(), m.digest);
    assert!(
        proxy.tunnels() > 0,
        "registry traffic went through HTTPS_PROXY"
    );
    assert!(
        proxy.forwarded() >= 2,
        "the ECR API calls went through HTTP_PROXY ({})",
        proxy.forwarded()
    );

    // NO_PROXY names the hosts to reach directly.
    let bypassed = ForwardProxy::start();
    let run = hoist(
        &[
            "push",
            src,
            "--repository",
            &unique("unproxied"),
            "--create-repository",
            "-q",
        ],
        &[
            ("HTTPS_PROXY", &bypassed.url()),
            ("HTTP_PROXY", &bypassed.url()),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ],
    );
    run.ok();
    assert_eq!(
        (bypassed.tunnels(), bypassed.forwarded()),
        (0, 0),
        "NO_PROXY bypassed the proxy"
    );
}

/// A central registry named by its FIPS host: the registry traffic — the
/// push, and the deploy's reads of the image in `hoist ship` — goes to that
/// host, never to the standard one, while the image URI (the report's, and
/// the one Lambda is given) names the standard host, the only form Lambda
/// takes. No `--registry-endpoint` here (it would decide the host instead):
/// the FIPS name is played on loopback behind HTTPS_PROXY, with a
/// certificate for it (common::named_host).
#[test]
fn a_fips_registry_keeps_its_traffic_on_the_fips_host() {
    use common::lambda::{alias, function};
    use common::named_host::NamedHost;
    let l = common::local();
    let region = l.vars["AWS_REGION"].clone();
    let fips = format!("123456789012.dkr.ecr-fips.{region}.amazonaws.com");
    let named = NamedHost::start(&fips, l.front.addr);
    let ca = named.ca_bundle();
    let env = [
        ("HTTPS_PROXY", named.proxy_url()),
        ("AWS_CA_BUNDLE", ca.to_str().unwrap().to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();

    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 2_000);
    let repo = unique("fips");
    common::create_repository(&repo, false);
    let uri = format!("{fips}/{repo}");
    let run = common::hoist_without(
        &["HOIST_REGISTRY_ENDPOINT"],
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &uri,
            "--tag",
            "v1",
            "--output",
            "json",
            "-q",
        ],
        &env,
    );
    let report = run.ok().json();
    assert_eq!(
        report["image_uri"],
        format!("{}/{repo}@{}", l.ecr_host, m.digest),
        "the image URI names the standard host"
    );
    assert_eq!(
        common::registry_manifest(&repo, "v1")
            .map(|b| format!("sha256:{}", common::sha256_hex(&b))),
        Some(m.digest.clone())
    );
    let targets = named.targets();
    assert!(!targets.is_empty(), "the push went through HTTPS_PROXY");
    assert!(
        targets.iter().all(|t| *t == format!("{fips}:443")),
        "every registry connection went to the FIPS host: {targets:?}"
    );

    // ship: the deploy reads the image at the FIPS host too, and hands
    // Lambda the standard URI.
    let f = function(&repo, &format!("sha256:{}", "0".repeat(64)), "x86_64");
    let before = named.targets().len();
    let run = common::hoist_without(
        &["HOIST_REGISTRY_ENDPOINT"],
        &[
            "ship",
            dir.path().to_str().unwrap(),
            "--repository",
            &uri,
            "--tag",
            "v1",
            "--severity-threshold",
            "critical",
            "--poll-interval",
            "50ms",
            "--scan-timeout",
            "60s",
            "--function",
            &f,
            "--alias",
            "live",
            "--output",
            "json",
        ],
        &env,
    );
    let report = run.ok().json();
    let standard = format!("{}/{repo}@{}", l.ecr_host, m.digest);
    assert_eq!(report["deploy"]["image_uri"], standard, "{report}");
    let updated: Vec<_> = l
        .aws
        .calls()
        .into_iter()
        .filter(|c| {
            c.operation.starts_with("PUT ") && c.path.ends_with(&format!("/functions/{f}/code"))
        })
        .collect();
    assert_eq!(updated.len(), 1, "{updated:?}");
    assert_eq!(updated[0].params["ImageUri"], standard.as_str());
    assert_eq!(alias(&f, "live").0, "2");
    let targets = named.targets()[before..].to_vec();
    assert!(!targets.is_empty(), "ship reached the registry");
    assert!(
        targets.iter().all(|t| *t == format!("{fips}:443")),
        "{targets:?}"
    );
}
