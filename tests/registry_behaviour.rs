//! Pushes through a proxy that behaves as ECR does where it differs from the
//! Distribution registry, and through one that injects faults; a registry
//! that stays down; one that refuses the credentials.

mod common;

use std::time::{Duration, Instant};

use common::ecr_proxy::{Faults, Options, Proxy, Stats};
use common::fixtures::{self, Layout};
use common::{hoist, local, pull_back, registry_manifest, unique};

/// Push through `proxy` (a --registry-endpoint) instead of straight to the registry.
fn push_via(proxy: &str, source: &std::path::Path, repo: &str, extra: &[&str]) -> common::Run {
    let mut args = vec!["--registry-endpoint", proxy];
    args.extend_from_slice(extra);
    common::push(source, repo, &args)
}

#[test]
fn ecr_quirks_one_patch_per_blob() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    // Over ECR's 5 MiB part minimum, and two small ones.
    let layers = [
        l.layer(12 << 20, seed),
        l.layer(1000, seed + 1),
        l.layer(70_000, seed + 2),
    ];
    let m = l.image(&layers, "amd64");
    l.write_index(&[(None, &m)]);
    let proxy = Proxy::start(Options {
        ecr: true,
        ..Default::default()
    });
    let repo = unique("ecrquirks");
    let run = push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--tag", "v1"],
    );
    let report = run.ok().json();
    assert_eq!(report["digest"], m.digest);
    assert_eq!(report["blobs"]["uploaded"], 4);
    assert_eq!(Stats::get(&proxy.stats.patches), 4, "one PATCH per blob");
    assert_eq!(Stats::get(&proxy.stats.patches_dropped), 0);
    let dest = tempfile::tempdir().unwrap();
    pull_back(&repo, &m.digest, &dest.path().join("p"));
}

#[test]
fn mount_answered_202_falls_back_to_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 2, 40_000);
    let source = unique("mount202-src");
    hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &source,
            "--create-repository",
            "-q",
        ],
        &[],
    )
    .ok();
    let proxy = Proxy::start(Options {
        ecr: true,
        ..Default::default()
    });
    let repo = unique("mount202");
    let report = push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--mount-from", &source],
    )
    .ok()
    .json();
    assert_eq!(report["digest"], m.digest);
    assert_eq!(
        Stats::get(&proxy.stats.mounts_answered_202),
        3,
        "every mount refused with 202"
    );
    assert_eq!(
        report["blobs"]["uploaded"], 3,
        "and every blob uploaded into that session: {report}"
    );
    let dest = tempfile::tempdir().unwrap();
    pull_back(&repo, &m.digest, &dest.path().join("p"));
}

/// The proxy is faithful: a chunked client (two PATCHes) loses data through
/// it, as through ECR — which is why hoist sends one PATCH per blob.
#[test]
fn chunked_upload_loses_data_through_ecr_proxy() {
    let proxy = Proxy::start(Options {
        ecr: true,
        ..Default::default()
    });
    let repo = unique("chunked");
    let blob = fixtures::random_bytes(2 << 20, fixtures::fresh_seed());
    let digest = format!("sha256:{}", common::sha256_hex(&blob));
    let auth = format!("AWS:{}", local().password);
    let basic = format!("Basic {}", base64_encode(auth.as_bytes()));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        let c = reqwest::Client::new();
        let base = proxy.endpoint();
        let r = c
            .post(format!("{base}/v2/{repo}/blobs/uploads/"))
            .header("Authorization", &basic)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let mut loc = r.headers()["location"].to_str().unwrap().to_string();
        for (i, part) in blob.chunks(1 << 20).enumerate() {
            let start = i * (1 << 20);
            let r = c
                .patch(format!("{base}{loc}"))
                .header("Authorization", &basic)
                .header(
                    "Content-Range",
                    format!("{}-{}", start, start + part.len() - 1),
                )
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201, "ECR answers PATCH with 201");
            loc = r.headers()["location"].to_str().unwrap().to_string();
        }
        let sep = if loc.contains('?') { '&' } else { '?' };
        c.put(format!("{base}{loc}{sep}digest={digest}"))
            .header("Authorization", &basic)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(Stats::get(&proxy.stats.patches_dropped), 1);
    assert!(
        status.is_client_error(),
        "the commit of a blob that lost its second part must fail, got {status}"
    );
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn media_type_with_parameters_is_refused_before_anything_is_sent() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let layer = l.layer(1000, fixtures::fresh_seed());
    let config = l.blob(
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json; charset=utf-8", "digest": config.digest, "size": config.size },
        "layers": [layer.json()],
    });
    let m = l.blob(
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    l.write_index(&[(None, &m)]);
    let proxy = Proxy::start(Options {
        ecr: true,
        ..Default::default()
    });
    let run = push_via(
        &proxy.endpoint(),
        dir.path(),
        &unique("semicolon"),
        &["--create-repository"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("charset=utf-8") && run.stderr.contains("ECR refuses"),
        "{}",
        run.stderr
    );
    assert_eq!(
        Stats::get(&proxy.stats.requests),
        0,
        "nothing reached the registry"
    );

    // And the proxy, like ECR, refuses such a manifest outright.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .put(format!("{}/v2/x/manifests/t", proxy.endpoint()))
            .header(
                "Content-Type",
                "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
            )
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 400);
}

/// A seed whose fault sequence, over this push's requests, holds each kind.
const FAULT_SEED: u64 = 5;

#[test]
fn faults_500_429_and_dropped_connections_are_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 4, 200_000);
    // One upload at a time: requests arrive in a fixed order, so a fixed
    // seed puts the same faults on the same requests in every run.
    let seed = std::env::var("HOIST_TEST_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(FAULT_SEED);
    let faults = Faults { share: 0.25, seed };
    let proxy = Proxy::start(Options {
        ecr: true,
        faults: Some(faults),
        ..Default::default()
    });
    let repo = unique("faults");
    let args = ["--create-repository", "--tag", "v1", "--jobs", "1"];
    let run = push_via(&proxy.endpoint(), dir.path(), &repo, &args);
    let report = run.ok().json();
    assert_eq!(report["digest"], m.digest, "same digest as without faults");
    let s = &proxy.stats;
    let (e500, e429, drop) = (
        Stats::get(&s.faults_500),
        Stats::get(&s.faults_429),
        Stats::get(&s.faults_dropped),
    );
    assert!(
        e500 > 0 && e429 > 0 && drop > 0,
        "each kind of fault was injected: 500×{e500} 429×{e429} dropped×{drop}"
    );
    assert!(
        run.stderr.contains("retrying"),
        "retries are visible in the log:\n{}",
        run.stderr
    );
    let dest = tempfile::tempdir().unwrap();
    pull_back(&repo, &m.digest, &dest.path().join("p"));
    assert!(registry_manifest(&repo, "v1").is_some());
}

#[test]
fn registry_that_stays_down_fails_clearly_within_the_retry_budget() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1000);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let run = push_via(
        &format!("http://127.0.0.1:{port}"),
        dir.path(),
        &unique("down"),
        &["--create-repository"],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("failed after 6 attempts"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(
        run.stdout.contains("\"exit_code\": 3") || run.stdout.contains("\"exit_code\":3"),
        "JSON error on stdout: {}",
        run.stdout
    );
    assert!(took < Duration::from_secs(60), "gave up after {took:?}");
}

#[test]
fn refused_credentials_are_a_usage_error_with_the_iam_hint() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1000);
    let proxy = Proxy::start(Options {
        deny: true,
        ..Default::default()
    });
    let run = push_via(
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
    // HTTP_PROXY carries the AWS API calls.
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
