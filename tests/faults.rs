//! A registry that fails: now and then (500, 429, dropped connections,
//! injected by tests/common/proxy.rs), for good (nothing listens), and
//! bytes on disk that do not match their digest.

mod common;

use common::proxy;

use std::time::{Duration, Instant};

use common::fixtures::{Desc, Layout};
use common::{pull_back, registry_manifest, registry_tags, unique};
use proxy::{Fault, Faults, MAX_FAULTS, Options, Proxy, upstream_has_blob};

/// A seed whose faults include every kind within the first dozen requests
/// (a push of this image makes more than twenty). Set HOIST_TEST_FAULT_SEED
/// to try others.
const FAULT_SEED: u64 = 5;

#[test]
fn faults_of_every_kind_are_retried_and_the_push_is_intact() {
    let seed = std::env::var("HOIST_TEST_FAULT_SEED")
        .ok()
        .map(|s| s.parse().expect("HOIST_TEST_FAULT_SEED is a number"))
        .unwrap_or(FAULT_SEED);
    let faults = Faults { share: 0.3, seed };
    // The fault sequence depends on the seed alone, not on which requests
    // hoist makes in which order (parallel uploads), so this holds for any
    // push of more than a dozen requests.
    let early = faults.preview(12);
    let kinds = [
        early.contains(&Some(Fault::Status500)),
        early
            .iter()
            .any(|f| matches!(f, Some(Fault::Status429 { .. }))),
        early.contains(&Some(Fault::Drop)),
    ];
    assert_eq!(
        kinds, [true; 3],
        "seed {seed} injects every kind early: {early:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 4, 200_000);
    let proxy = Proxy::start(Options {
        faults: Some(faults),
        ..Options::default()
    });
    let repo = unique("faults");
    // Parallel uploads (hoist's default --jobs 4), as in real use.
    let run = common::push_via_logged(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--tag", "v1"],
    );
    let c = proxy.counts();
    assert_eq!(
        run.code, 0,
        "hoist failed ({c:?}):\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let report = run.json();
    assert_eq!(
        report["digest"], m.digest,
        "the manifest on disk, unchanged by the retries"
    );
    assert_eq!(report["blobs"]["uploaded"], 5, "{report}");
    assert_eq!(
        report["tags"],
        serde_json::json!([{ "tag": "v1", "action": "pushed" }])
    );
    assert!(
        c.faults_500 > 0 && c.faults_429 > 0 && c.faults_dropped > 0,
        "each kind of fault was injected: {c:?}"
    );
    assert!(c.faults() <= MAX_FAULTS as usize, "{c:?}");
    assert_eq!(
        c.later_patches, 0,
        "a retried upload starts a new session, never a second PATCH: {c:?}"
    );
    let retries = run.stderr.matches("retrying").count();
    assert!(
        retries >= 1 && retries <= c.faults(),
        "retries are logged, one per fault at most ({c:?}):\n{}",
        run.stderr
    );
    // The registry has the image whole: skopeo verifies every blob.
    let dest = tempfile::tempdir().unwrap();
    pull_back(&repo, &m.digest, &dest.path().join("pulled"));
    let tagged = registry_manifest(&repo, "v1").expect("v1 is in the registry");
    assert_eq!(format!("sha256:{}", common::sha256_hex(&tagged)), m.digest);
}

#[test]
fn a_registry_that_stays_down_fails_clearly_within_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1_000);
    let endpoint = proxy::refused_endpoint();
    let started = Instant::now();
    let run = common::push_via(
        &endpoint,
        dir.path(),
        &unique("down"),
        &["--create-repository", "--tag", "v1"],
    );
    let took = started.elapsed();
    assert_eq!(run.code, 3, "an infrastructure failure:\n{}", run.stderr);
    assert!(
        run.stderr.contains("failed after 6 attempts"),
        "says it tried, and how often:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("could not reach the registry")
            || run.stderr.contains("onnection refused"),
        "names the failure:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: check the network path to the registry"),
        "and what to check:\n{}",
        run.stderr
    );
    let out = run.json();
    assert_eq!(out["exit_code"], 3, "{out}");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("failed after 6 attempts"),
        "{out}"
    );
    assert!(out["hint"].is_string(), "{out}");
    assert!(
        took < Duration::from_secs(60),
        "gave up after {took:?}, not within a minute"
    );
}

/// A layer file altered on disk after its digest was taken (same size).
fn corrupt(l: &Layout, d: &Desc) {
    let path = l.blob_path(d);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_blob_that_does_not_match_its_digest_fails_and_no_manifest_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = common::fixtures::fresh_seed();
    let good = l.layer(100_000, seed);
    // Large enough to be mid-stream through the proxy when the mismatch shows.
    let bad = l.layer(2 << 20, seed + 1);
    let m = l.image(&[good, bad.clone()], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    corrupt(&l, &bad);

    let proxy = Proxy::start(Options {
        ..Options::default()
    });
    let repo = unique("mismatch");
    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--tag", "v1"],
    );
    let c = proxy.counts();
    assert_eq!(run.code, 2, "a fault of the input ({c:?}):\n{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("blob {} does not match its digest", bad.digest)),
        "names the blob:\n{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("hint: the image on disk is incomplete or corrupt"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("retrying"),
        "bad bytes stay bad: not retried:\n{}",
        run.stderr
    );
    let out = run.json();
    assert_eq!(out["exit_code"], 2, "{out}");
    assert!(
        out["error"].as_str().unwrap().contains(&bad.digest),
        "{out}"
    );
    // hoist checks layers as they stream (reading each twice would double
    // the disk reads), so the bad bytes were on their way when it stopped.
    assert!(c.patches >= 1, "the upload had started: {c:?}");
    assert!(
        registry_manifest(&repo, &m.digest).is_none(),
        "no manifest for the image"
    );
    assert!(registry_tags(&repo).is_empty(), "no tag");
    assert!(
        !upstream_has_blob(&repo, &bad.digest),
        "the bad bytes were not committed under the digest they do not have"
    );
}

/// A registry whose `GET /v2/` keeps failing must not turn into "refused
/// credentials". (Found while writing these tests: oci-client's auth probe
/// took a 503 for "no authentication needed", and every request after it went
/// out without credentials.) hoist now gives oci-client ECR's Basic
/// credentials directly and never probes `/v2/`, so the push goes through.
#[test]
fn a_failing_auth_probe_does_not_matter() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1_000);
    let proxy = Proxy::start(Options {
        probe_503: true,
        ..Options::default()
    });
    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &unique("probe503"),
        &["--create-repository", "--tag", "v1"],
    );
    assert!(
        !run.stderr.contains("Not authorized") && !run.stderr.contains("IAM"),
        "a 503 is not a refusal of the credentials:\n{}",
        run.stderr
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["digest"], m.digest);
}

/// On a terminal, the progress line is redrawn in place; a retry warning
/// printed during the upload clears it first and it is drawn again under
/// the warning, so no line of the terminal holds both (hoist's output
/// module; before it, `1/5 blobs, … WARN looking up …` shared a line).
#[test]
fn retry_warnings_do_not_land_in_the_progress_line() {
    let dir = tempfile::tempdir().unwrap();
    let (layout, m) = Layout::simple(dir.path(), 8, 400_000);
    let proxy = Proxy::start(Options {
        faults: Some(Faults {
            share: 0.3,
            seed: FAULT_SEED,
        }),
        ..Options::default()
    });
    let repo = unique("faults-tty");
    let screen = common::on_a_terminal(
        &[
            "push",
            layout.dir.to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
            "--registry-endpoint",
            &proxy.endpoint(),
            "--jobs",
            "2",
        ],
        &[],
    );
    assert!(screen.contains(&m.digest), "the push ran: {screen:?}");
    assert!(screen.contains("retrying"), "faults were met: {screen:?}");
    assert!(screen.contains(" blobs, "), "a progress line: {screen:?}");
    // What the terminal shows on each line: the text after the last
    // return-and-erase (or bare return) on it.
    // (The terminal turns each line feed into CR LF: that CR is no return.)
    let lines = || screen.split('\n').map(|l| l.trim_end_matches('\r'));
    for line in lines() {
        let shown = line.rsplit('\r').next().unwrap_or_default();
        let shown = shown.replace("\x1b[2K", "");
        assert!(
            !(shown.contains(" blobs, ") && shown.contains("retrying")),
            "a warning inside the progress line: {shown:?}\nwhole screen: {screen:?}"
        );
    }
    // Not a flood: the status line is redrawn in place, never one per line.
    let status_lines = lines()
        .filter(|l| {
            l.rsplit('\r')
                .next()
                .unwrap_or_default()
                .contains(" blobs, ")
        })
        .count();
    assert!(
        status_lines <= 1,
        "{status_lines} lines end in a status: {screen:?}"
    );
}
