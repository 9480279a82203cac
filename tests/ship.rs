//! `hoist ship`: the stages in one process against the local environment.

mod common;

use common::lambda::{alias, function, versions};
use common::{fixtures, hoist, push, unique};

fn ship(source: &std::path::Path, repo: &str, extra: &[&str]) -> common::Run {
    ship_env(source, repo, extra, &[])
}

fn ship_env(
    source: &std::path::Path,
    repo: &str,
    extra: &[&str],
    env: &[(&str, &str)],
) -> common::Run {
    let mut args = vec![
        "ship",
        source.to_str().unwrap(),
        "--repository",
        repo,
        "--output",
        "json",
    ];
    args.extend_from_slice(extra);
    hoist(&args, env)
}

/// A dry run reads the image and the registry and writes nothing: no
/// repository, no blob, no manifest — and names the digest the push then
/// produces, for a docker archive too (compressed into a hash only).
#[test]
fn dry_run_pushes_nothing_and_knows_the_digest() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_layout(work.path());
    let archive = fixtures::docker_archive(work.path(), &layout);
    for source in [&layout, &archive] {
        let repo = unique("shipdry");
        let run = ship(
            source,
            &repo,
            &["--dry-run", "--create-repository", "--tag", "v1"],
        );
        let plan = run.ok().json();
        let planned = &plan["push"];
        assert_eq!(planned["dry_run"], true, "{plan}");
        assert_eq!(planned["repository_created"], true);
        assert_eq!(planned["blobs"]["present"], 0);
        assert!(
            planned["blobs"]["uploaded"].as_u64().unwrap() >= 2,
            "{plan}"
        );
        assert_eq!(planned["tags"][0]["action"], "would push");
        assert!(run.stderr.contains("dry run: would push"), "{}", run.stderr);
        assert!(
            !common::repository_exists(&repo),
            "a dry run creates no repository"
        );

        let pushed = push(source, &repo, &["--create-repository", "--tag", "v1"]);
        let pushed = pushed.ok().json();
        assert_eq!(pushed["digest"], planned["digest"], "{}", source.display());
        assert!(run.stdout.contains(pushed["digest"].as_str().unwrap()));

        let again = ship(source, &repo, &["--dry-run", "--tag", "v1"])
            .ok()
            .json();
        assert_eq!(again["push"]["blobs"]["uploaded"], 0, "{again}");
        assert_eq!(again["push"]["tags"][0]["action"], "unchanged");
    }
}

#[test]
fn dry_run_into_an_existing_repository_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (_layout, _) = fixtures::Layout::simple(work.path(), 2, 4096);
    let repo = unique("shipdryexisting");
    common::create_repository(&repo, true);
    let plan = ship(work.path(), &repo, &["--dry-run", "--tag", "v1"])
        .ok()
        .json();
    let digest = plan["push"]["digest"].as_str().unwrap();
    assert_eq!(
        plan["push"]["blobs"]["uploaded"], 3,
        "two layers and the config: {plan}"
    );
    assert!(common::registry_manifest(&repo, digest).is_none());
    assert!(common::registry_tags(&repo).is_empty());
}

const FAST_GATE: &[&str] = &["--poll-interval", "50ms", "--scan-timeout", "60s"];

/// A repository without scan on push (moto scans only when asked), and an
/// image for it.
fn repo_and_image(dir: &std::path::Path) -> (String, std::path::PathBuf) {
    let repo = unique("ship");
    common::create_repository(&repo, false);
    let (layout, _) = fixtures::Layout::simple(dir, 1, 2000);
    (repo, layout.dir.clone())
}

#[test]
fn push_then_gate_passes_under_the_threshold() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let mut extra = vec!["--severity-threshold", "critical"];
    extra.extend_from_slice(FAST_GATE);
    let run = ship(&source, &repo, &extra);
    let report = run.ok().json();
    assert_eq!(report["gate"]["verdict"], "passed", "{report}");
    assert_eq!(report["gate"]["digest"], report["push"]["digest"]);
    assert_eq!(report["gate"]["counts"]["HIGH"], 1);
    common::assert_no_secrets(&run, false);
}

#[test]
fn a_blocking_finding_stops_the_pipeline_with_exit_1() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let mut extra = vec!["--severity-threshold", "HIGH"];
    extra.extend_from_slice(FAST_GATE);
    let run = ship(&source, &repo, &extra);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    assert_eq!(report["gate"]["verdict"], "blocked");
    assert!(
        report["skipped"][0]
            .as_str()
            .unwrap()
            .contains("nothing was deployed"),
        "{report}"
    );
    assert!(run.stderr.contains("CVE-9999-9999"), "{}", run.stderr);
}

/// A dry run of an image already in ECR looks at its scan and starts none.
#[test]
fn dry_run_looks_at_the_scan_without_starting_one() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    push(&source, &repo, &[]).ok();
    let run = ship(&source, &repo, &["--dry-run"]);
    let report = run.ok().json();
    assert_eq!(report["push"]["already_present"], true);
    assert_eq!(report["gate"]["verdict"], "warned", "{report}");
    assert!(
        run.stderr.contains("a dry run starts none"),
        "{}",
        run.stderr
    );
    let digest = report["push"]["digest"].as_str().unwrap().to_string();
    assert!(
        !has_scan(&repo, &digest),
        "the dry run started no scan: {}",
        run.stderr
    );
    // The real run starts it and waits for it.
    let mut extra = vec!["--severity-threshold", "critical"];
    extra.extend_from_slice(FAST_GATE);
    ship(&source, &repo, &extra).ok();
    assert!(has_scan(&repo, &digest));
    // Now a dry run sees the finished scan and judges it.
    let again = ship(&source, &repo, &["--dry-run"]);
    assert_eq!(again.code, 1, "HIGH blocks by default: {}", again.stderr);
    assert_eq!(again.json()["gate"]["verdict"], "blocked");
}

/// Whether moto's ECR has a scan of `repo@digest` (ScanNotFoundException
/// until StartImageScan).
fn has_scan(repo: &str, digest: &str) -> bool {
    common::ecr(async |c| {
        c.describe_image_scan_findings()
            .repository_name(repo)
            .image_id(
                aws_sdk_ecr::types::ImageIdentifier::builder()
                    .image_digest(digest)
                    .build(),
            )
            .send()
            .await
            .is_ok()
    })
}

/// ship's flags for a gate that passes moto's one HIGH finding, then a
/// deploy to `function`'s alias `live`.
fn passing_gate_then_deploy_to(function: &str) -> Vec<&str> {
    let mut extra = vec![
        "--severity-threshold",
        "critical",
        "--function",
        function,
        "--alias",
        "live",
    ];
    extra.extend_from_slice(FAST_GATE);
    extra
}

/// A function for `repo`, version 1 and alias `live` on an image that is not
/// this test's (moto does not check image URIs).
fn function_for(repo: &str, arch: &str) -> String {
    function(repo, &format!("sha256:{}", "0".repeat(64)), arch)
}

#[test]
fn the_whole_pipeline_push_gate_deploy() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let f = function_for(&repo, "x86_64");
    let extra = passing_gate_then_deploy_to(&f);
    let github_output = work.path().join("github_output");
    std::fs::write(&github_output, "").unwrap();
    let run = ship_env(
        &source,
        &repo,
        &extra,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", github_output.to_str().unwrap()),
        ],
    );
    let report = run.ok().json();
    let digest = report["push"]["digest"].as_str().unwrap();
    assert_eq!(report["gate"]["verdict"], "passed", "{report}");
    assert_eq!(
        report["deploy"]["digest"], digest,
        "deployed by the pushed digest"
    );
    assert_eq!(report["deploy"]["version"], "2");
    assert_eq!(report["deploy"]["previous_version"], "1");
    // Where the time went: each stage, and the share spent waiting on AWS
    // (the scan, and the deploy's own waits on Lambda).
    let t = &report["timings"];
    let secs = |k: &str| t[k].as_f64().unwrap_or_else(|| panic!("{k} in {t}"));
    let deploy_wait = report["deploy"]["timings"]["aws_wait_secs"]
        .as_f64()
        .unwrap();
    // (The deploy's own figures are shown to a tenth of a second.)
    assert!(
        (secs("aws_wait") - (secs("gate") + deploy_wait)).abs() <= 0.051,
        "{t}"
    );
    assert!(secs("aws_wait") <= secs("total"), "{t}");
    assert!(
        run.stderr.contains("of it waiting on AWS"),
        "{}",
        run.stderr
    );
    assert_eq!(alias(&f, "live").0, "2");
    assert!(
        versions(&f)
            .iter()
            .any(|(v, d)| v == "2" && d.contains(digest)),
        "the version's description records the digest: {:?}",
        versions(&f)
    );
    // One set of outputs from the three stages.
    let outputs = std::fs::read_to_string(&github_output).unwrap();
    for key in [
        "digest=",
        "image-uri=",
        "scan-verdict=passed",
        "version=2",
        "previous-version=1",
    ] {
        assert!(outputs.contains(key), "{key} in {outputs}");
    }
    common::assert_no_secrets(&run, false);
}

#[test]
fn a_blocked_gate_deploys_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let f = function_for(&repo, "x86_64");
    let mut extra = vec!["--function", &f, "--alias", "live"];
    extra.extend_from_slice(FAST_GATE);
    let run = ship(&source, &repo, &extra);
    assert_eq!(
        run.code, 1,
        "moto's HIGH finding blocks at the default threshold: {}",
        run.stderr
    );
    assert!(run.json()["deploy"].is_null());
    assert_eq!(alias(&f, "live").0, "1", "the alias did not move");
    assert_eq!(versions(&f).len(), 1, "no version was published");
}

/// What a ship writes, as seen by the suite's ECR and AWS fronts: the
/// registry's writes and the AWS operations that change something.
fn writes_seen() -> (usize, usize, Vec<String>) {
    const WRITES: &[&str] = &[
        "CreateRepository",
        "SetRepositoryPolicy",
        "PutImage",
        "StartImageScan",
        "UpdateFunctionCode",
        "PublishVersion",
        "CreateAlias",
        "UpdateAlias",
    ];
    let l = common::local();
    let c = l.front.counts();
    let ops = l
        .aws
        .calls()
        .into_iter()
        .map(|c| c.operation)
        .filter(|op| {
            WRITES.iter().any(|w| op == w) || op.starts_with("POST") || op.starts_with("PUT")
        })
        .collect();
    (c.patches, c.manifests_put, ops)
}

/// Everything that can be checked is checked before the first write: a
/// ship refused for its flags, its image or its function writes nothing —
/// no repository, blob, manifest, tag, scan or version — and says why.
#[test]
fn a_refused_ship_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let l = fixtures::Layout::new(&dir.join("amd64"));
    let layer = l.layer(2_000, fixtures::fresh_seed());
    let m = l.image(&[layer], "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    let zstd = fixtures::Layout::new(&dir.join("zstd"));
    let mut z = zstd.layer(2_000, fixtures::fresh_seed());
    z.media_type = "application/vnd.oci.image.layer.v1.tar+zstd".into();
    let zm = zstd.image(&[z], "amd64");
    zstd.write_index(&[(Some("latest"), &zm)]);
    let bare = fixtures::Layout::new(&dir.join("bare"));
    let b = bare.layer(2_000, fixtures::fresh_seed());
    let bm = bare.image_with_config(
        serde_json::json!({ "architecture": "amd64", "os": "linux", "rootfs": { "type": "layers", "diff_ids": [b.digest.clone()] } }),
        &[b],
    );
    bare.write_index(&[(Some("latest"), &bm)]);

    let f = function(
        &unique("ship-refused"),
        &format!("sha256:{}", "0".repeat(64)),
        "x86_64",
    );
    let arm = function(
        &unique("ship-refused"),
        &format!("sha256:{}", "0".repeat(64)),
        "arm64",
    );
    let cases: Vec<(&str, std::path::PathBuf, Vec<&str>, &str)> = vec![
        (
            "a bad strategy",
            dir.join("amd64"),
            vec![
                "--function",
                &f,
                "--alias",
                "live",
                "--strategy",
                "blue-green",
            ],
            "is not a strategy",
        ),
        (
            "an unknown alarm",
            dir.join("amd64"),
            vec![
                "--function",
                &f,
                "--alias",
                "live",
                "--alarm",
                "no-such-alarm",
            ],
            "no-such-alarm",
        ),
        (
            "a zstd image",
            dir.join("zstd"),
            vec!["--function", &f, "--alias", "live"],
            "zstd",
        ),
        (
            "a wrong-architecture image",
            dir.join("amd64"),
            vec!["--function", &arm, "--alias", "live"],
            "arm64",
        ),
        (
            "a missing entrypoint",
            dir.join("bare"),
            vec!["--function", &f, "--alias", "live"],
            "ENTRYPOINT",
        ),
        (
            "a missing function",
            dir.join("amd64"),
            vec!["--function", "no-such-function", "--alias", "live"],
            "no-such-function",
        ),
    ];
    for (what, source, flags, says) in cases {
        let repo = unique("ship-refused");
        let before = writes_seen();
        let mut extra = vec!["--create-repository", "--tag", "v1"];
        extra.extend_from_slice(&flags);
        extra.extend_from_slice(FAST_GATE);
        let run = ship(&source, &repo, &extra);
        assert_ne!(run.code, 0, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains(says),
            "{what}: does not say '{says}':\n{}",
            run.stderr
        );
        assert!(
            !run.stderr.lines().any(|l| l.starts_with("pushing ")),
            "{what}: {}",
            run.stderr
        );
        assert_eq!(writes_seen(), before, "{what}: something was written");
        assert!(!common::repository_exists(&repo), "{what}: no repository");
        assert!(common::registry_tags(&repo).is_empty(), "{what}");
    }
    assert_eq!(alias(&f, "live").0, "1", "the alias did not move");
    assert_eq!(versions(&f).len(), 1, "no version was published");
    assert_eq!(versions(&arm).len(), 1);
}

#[test]
fn function_without_alias_is_refused_before_the_push() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let run = ship(&source, &repo, &["--function", "api"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--alias"), "{}", run.stderr);
    assert!(common::registry_tags(&repo).is_empty());
    assert!(!run.stderr.contains("pushing"), "{}", run.stderr);
}

/// A dry run of an image already in ECR prints the deploy plan too, and
/// publishes nothing.
#[test]
fn dry_run_prints_the_deploy_plan_and_publishes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    push(&source, &repo, &[]).ok();
    let f = function_for(&repo, "x86_64");
    let run = ship(
        &source,
        &repo,
        &[
            "--dry-run",
            "--function",
            &f,
            "--alias",
            "live",
            "--strategy",
            "canary:10%:1m",
        ],
    );
    let report = run.ok().json();
    assert_eq!(report["deploy"]["result"], "dry-run", "{report}");
    assert!(
        report["deploy"]["plan"]
            .to_string()
            .contains("10% on the new version")
    );
    assert_eq!(report["deploy"]["digest"], report["push"]["digest"]);
    assert_eq!(versions(&f).len(), 1, "nothing published");
    assert_eq!(alias(&f, "live").0, "1");

    // Not in ECR yet: the plan is made from the image on disk, and its
    // preflight still checks it (an arm64 function, an amd64 image).
    let (other, source) = repo_and_image(&work.path().join("other"));
    let run = ship(
        &source,
        &other,
        &["--dry-run", "--function", &f, "--alias", "live"],
    );
    let report = run.ok().json();
    assert_eq!(report["push"]["already_present"], false);
    assert_eq!(report["deploy"]["result"], "dry-run", "{report}");
    assert_eq!(report["deploy"]["digest"], report["push"]["digest"]);
    assert!(common::registry_tags(&other).is_empty());
    let arm = function_for(&other, "arm64");
    let run = ship(
        &source,
        &other,
        &["--dry-run", "--function", &arm, "--alias", "live"],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("arm64"), "{}", run.stderr);
    assert_eq!(versions(&f).len(), 1);
    assert_eq!(versions(&arm).len(), 1);
}

/// The registry requests for `repo` the suite's ECR saw after the first
/// `from` requests of this test process, as `METHOD path`.
fn requests_for(repo: &str, from: usize) -> Vec<String> {
    common::local().front.requests()[from..]
        .iter()
        .filter(|r| r.path.starts_with(&format!("/v2/{repo}/")))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

/// A `docker save` archive's manifest digest is known only once its layers
/// are compressed, yet an immutable tag that names another image refuses
/// `hoist push` and `hoist ship` before anything is written: no blob, no
/// manifest, no scan (issue 13) — with the conflict's exit code, the tag's
/// digest and the archive's config digest (its image ID). The same archive
/// under a tag of its own, pushed again and shipped again, still passes.
#[test]
fn a_docker_archive_whose_immutable_tag_names_another_image_writes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_layout(work.path());
    let archive = fixtures::docker_archive(work.path(), &layout);
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            layout
                .join("blobs/sha256")
                .join(manifest.strip_prefix("sha256:").unwrap()),
        )
        .unwrap(),
    )
    .unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let other = work.path().join("other");
    let (_, theirs) = fixtures::Layout::simple(&other, 1, 2_000);

    let repo = unique("ship-docker-conflict");
    common::create_repository(&repo, true);
    push(&other, &repo, &["--tag", "v1"]).ok();

    let from = common::local().front.requests().len();
    let before = writes_seen();
    let pushed = push(&archive, &repo, &["--tag", "v1"]);
    let mut extra = vec!["--tag", "v1", "--severity-threshold", "critical"];
    extra.extend_from_slice(FAST_GATE);
    let shipped = ship(&archive, &repo, &extra);
    for (what, run) in [("push", &pushed), ("ship", &shipped)] {
        assert_eq!(run.code, 2, "{what}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!(
                "tag 'v1' of {repo} already points at {}, and the repository's tags are immutable",
                theirs.digest
            )),
            "{what}: {}",
            run.stderr
        );
        assert!(
            run.stderr
                .contains(&format!("a docker save archive with config {config}")),
            "{what}: names the image ID: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("hint: push under a new tag"),
            "{what}: {}",
            run.stderr
        );
    }
    assert!(
        !shipped.stderr.lines().any(|l| l.starts_with("pushing ")),
        "ship refused in its checks: {}",
        shipped.stderr
    );
    assert_eq!(
        writes_seen(),
        before,
        "nothing was written, no scan started"
    );
    let seen = requests_for(&repo, from);
    assert!(
        seen.iter()
            .all(|r| r.starts_with("HEAD ") || r.starts_with("GET ")),
        "reads only: {seen:?}"
    );
    assert_eq!(common::registry_tags(&repo), ["v1"]);
    let v1 = common::registry_manifest(&repo, "v1").unwrap();
    assert_eq!(
        format!("sha256:{}", common::sha256_hex(&v1)),
        theirs.digest,
        "v1 did not move"
    );

    // Under a tag of its own the archive pushes; again, it is unchanged and
    // nothing is uploaded; shipped under it, the checks pass and the gate
    // runs.
    let first = push(&archive, &repo, &["--tag", "v2"]);
    let first = first.ok().json();
    let again = push(&archive, &repo, &["--tag", "v2"]);
    let again = again.ok().json();
    assert_eq!(again["digest"], first["digest"]);
    assert_eq!(again["tags"][0]["action"], "unchanged", "{again}");
    assert_eq!(again["blobs"]["uploaded"], 0, "{again}");
    let mut extra = vec!["--tag", "v2", "--severity-threshold", "critical"];
    extra.extend_from_slice(FAST_GATE);
    let shipped = ship(&archive, &repo, &extra);
    let report = shipped.ok().json();
    assert_eq!(report["push"]["digest"], first["digest"], "{report}");
    assert_eq!(report["push"]["tags"][0]["action"], "unchanged");
    assert_eq!(report["gate"]["verdict"], "passed", "{report}");
}

/// On GitHub, a ship that fails after the push says so where GitHub shows
/// it: each stage folded (`::group::`), an error annotation naming the
/// stage, and the step summary holding what was done (the image pushed,
/// the gate's verdict) with the failure under it. Here the smoke test fails
/// (the function cannot be invoked: moto runs no image functions).
#[test]
fn a_failure_after_the_push_is_annotated_under_what_was_done() {
    let work = tempfile::tempdir().unwrap();
    let (repo, source) = repo_and_image(work.path());
    let f = function_for(&repo, "x86_64");
    let event = work.path().join("event.json");
    std::fs::write(&event, "{}").unwrap();
    let mut extra = passing_gate_then_deploy_to(&f);
    extra.extend_from_slice(&["--smoke-event", event.to_str().unwrap()]);
    let summary = work.path().join("summary.md");
    let output = work.path().join("output");
    for file in [&summary, &output] {
        std::fs::write(file, "").unwrap();
    }
    let run = ship_env(
        &source,
        &repo,
        &extra,
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
            ("GITHUB_OUTPUT", output.to_str().unwrap()),
        ],
    );
    assert_ne!(run.code, 0, "{}", run.stderr);
    let groups: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.starts_with("::group::"))
        .collect();
    assert!(
        groups.len() >= 3,
        "checks, push, gate, deploy folded: {groups:?}"
    );
    assert_eq!(
        run.stderr.matches("::group::").count(),
        run.stderr.matches("::endgroup::").count(),
        "every fold is closed: {}",
        run.stderr
    );
    let annotation = run
        .stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("an error annotation: {}", run.stderr));
    assert!(
        annotation.contains("title=hoist deploy failed::"),
        "{annotation}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    let pushed = md
        .find(&repo)
        .unwrap_or_else(|| panic!("the push in the summary:\n{md}"));
    let failed = md
        .find("hoist deploy failed")
        .unwrap_or_else(|| panic!("the failure in the summary:\n{md}"));
    assert!(pushed < failed, "what was done, then the failure:\n{md}");
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(
        outputs.contains("digest"),
        "the digest is an output still: {outputs}"
    );
}

/// The suite's AWS front, which every test's Lambda calls go through, is as
/// strict as Lambda: what moto alone would take — weights on `$LATEST`, a
/// stale alias RevisionId, a PublishVersion whose CodeSha256 is not
/// `$LATEST`'s — is refused with Lambda's error, and nothing changes.
#[test]
fn the_aws_front_refuses_what_lambda_refuses() {
    use common::lambda::block_on;
    let f = function(
        &unique("strict"),
        &format!("sha256:{}", "0".repeat(64)),
        "x86_64",
    );
    // The SDK, through the front (not moto).
    let conf = aws_sdk_lambda::config::Builder::from(&common::lambda::sdk())
        .endpoint_url(common::local().aws.endpoint())
        .build();
    let l = aws_sdk_lambda::Client::from_conf(conf);
    fn code<T, E: aws_sdk_lambda::error::ProvideErrorMetadata, R>(
        r: Result<T, aws_sdk_lambda::error::SdkError<E, R>>,
    ) -> Option<String> {
        use aws_sdk_lambda::error::ProvideErrorMetadata;
        r.err().map(|e| e.code().unwrap_or("?").to_string())
    }
    let latest = aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
        .additional_version_weights("$LATEST", 0.1)
        .build();
    let weighted = block_on(
        l.update_alias()
            .function_name(&f)
            .name("live")
            .function_version("1")
            .routing_config(latest)
            .send(),
    );
    assert_eq!(
        code(weighted),
        Some("InvalidParameterValueException".into()),
        "weights on $LATEST"
    );
    assert_eq!(alias(&f, "live"), ("1".into(), Default::default()));

    let read = || common::lambda::alias_revision(&f, "live");
    let first = read();
    let moved = block_on(
        l.update_alias()
            .function_name(&f)
            .name("live")
            .description("one")
            .revision_id(&first)
            .send(),
    )
    .expect("the current RevisionId is taken");
    assert_ne!(moved.revision_id(), Some(first.as_str()), "a new one");
    let stale = block_on(
        l.update_alias()
            .function_name(&f)
            .name("live")
            .description("two")
            .revision_id(&first)
            .send(),
    );
    assert_eq!(
        code(stale),
        Some("PreconditionFailedException".into()),
        "a stale RevisionId"
    );
    assert_eq!(common::lambda::alias_description(&f, "live"), "one");

    let other = block_on(
        l.publish_version()
            .function_name(&f)
            .code_sha256("0".repeat(64))
            .send(),
    );
    assert_eq!(
        code(other),
        Some("InvalidParameterValueException".into()),
        "a CodeSha256 that is not $LATEST's"
    );
    assert_eq!(versions(&f).len(), 1, "nothing published");
}

/// Two pipelines shipping two builds to one alias at the same moment (two
/// CI runs of consecutive commits): both push and pass the gate; at the
/// alias one deploys, the other waits for it and then deploys or reports
/// the change clearly — never both moving it at once: every alias write
/// carried the RevisionId hoist read (the suite's Lambda refuses a stale
/// one, as Lambda does), and the alias is never left split.
#[test]
fn two_ships_at_once_never_both_move_the_alias() {
    let work = tempfile::tempdir().unwrap();
    let (repo, _) = repo_and_image(work.path());
    let f = function_for(&repo, "x86_64");
    let builds: Vec<std::path::PathBuf> = (0..2)
        .map(|i| {
            let dir = work.path().join(format!("build{i}"));
            std::fs::create_dir_all(&dir).unwrap();
            fixtures::Layout::simple(&dir, 1, 2000 + i).0.dir.clone()
        })
        .collect();
    let start = |source: &std::path::Path| {
        let mut args = vec![
            "ship".to_string(),
            source.to_str().unwrap().to_string(),
            "--repository".into(),
            repo.clone(),
            "--output".into(),
            "json".into(),
            "--strategy".into(),
            "canary:20%:2s".into(),
        ];
        args.extend(
            passing_gate_then_deploy_to(&f)
                .iter()
                .map(|s| s.to_string()),
        );
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_hoist"));
        cmd.args(&args)
            .env_clear()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        for k in ["PATH", "HOME", "TMPDIR"] {
            if let Some(v) = std::env::var_os(k) {
                cmd.env(k, v);
            }
        }
        cmd.envs(&common::local().vars);
        cmd.spawn().expect("hoist starts")
    };
    let children: Vec<_> = builds.iter().map(|b| start(b)).collect();
    let runs: Vec<common::Run> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            common::Run {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            }
        })
        .collect();
    let mut deployed = vec![];
    for r in &runs {
        common::assert_no_secrets(r, false);
        match r.code {
            0 => deployed.push(r.json()),
            3 => assert!(
                r.stderr.contains("changed while hoist was deploying"),
                "{}",
                r.stderr
            ),
            _ => panic!("exit {}:\n{}\n{}", r.code, r.stdout, r.stderr),
        }
    }
    assert!(
        !deployed.is_empty(),
        "one deployed: {}",
        runs.iter()
            .map(|r| r.stderr.as_str())
            .collect::<Vec<_>>()
            .join("\n---\n")
    );
    let (v, weights) = alias(&f, "live");
    assert!(weights.is_empty(), "left split: {weights:?}");
    let last = deployed
        .iter()
        .find(|d| d["deploy"]["version"].as_str() == Some(v.as_str()))
        .unwrap_or_else(|| panic!("the alias serves a version a ship deployed: {v}"));
    assert_eq!(last["deploy"]["result"], "deployed", "{last}");
    let writes = common::local().aws.alias_writes();
    assert!(!writes.is_empty());
    for w in &writes {
        assert!(
            w.given.is_some(),
            "an UpdateAlias without a RevisionId: {w:?}"
        );
        assert!(
            w.accepted == (w.given.as_deref() == Some(w.current.as_str())),
            "{w:?}"
        );
    }
}
