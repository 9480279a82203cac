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
