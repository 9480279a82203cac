//! `hoist push` against the real local registry and moto: every source
//! format (made by real producers where they install here), re-pushes, tags,
//! layouts with several images, indexes, outputs for each CI system.

mod common;

use std::path::Path;

use common::fixtures::{self, Layout};
use common::{hoist, hoist_in, local, pull_back, push, registry_manifest, registry_tags, unique};

/// Push, pull back with skopeo (which verifies every blob), and check the
/// registry holds exactly the bytes whose sha256 is the digest hoist printed.
fn push_and_verify(source: &Path, repo: &str, extra: &[&str]) -> serde_json::Value {
    let run = push(source, repo, extra);
    run.ok();
    let report = run.json();
    let digest = report["digest"].as_str().unwrap().to_string();
    assert_eq!(
        report["image_uri"],
        format!("{}/{repo}@{digest}", local().ecr_host)
    );
    let bytes = registry_manifest(repo, &digest).expect("the manifest is in the registry");
    assert_eq!(format!("sha256:{}", common::sha256_hex(&bytes)), digest);
    let dest = tempfile::tempdir().unwrap();
    pull_back(repo, &digest, &dest.path().join("pulled"));
    report
}

#[test]
fn buildah_layout_pushes_and_pulls_back_identical() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_layout(work.path());
    let repo = unique("buildah");
    let report = push_and_verify(&layout, &repo, &["--create-repository", "--tag", "v1"]);
    assert_eq!(report["source_format"], "oci-layout");
    assert_eq!(report["repository_created"], true);
    // The manifest pushed is the very file buildah wrote.
    let digest = report["digest"].as_str().unwrap();
    let on_disk = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.strip_prefix("sha256:").unwrap()),
    )
    .unwrap();
    assert_eq!(registry_manifest(&repo, digest).unwrap(), on_disk);
    assert_eq!(registry_tags(&repo), vec!["v1"]);
}

#[test]
fn oci_archive_plain_and_gzip() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_layout(work.path());
    let archive = work.path().join("image.oci.tar");
    fixtures::skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("oci-archive:{}", archive.display()),
    );
    let gz = fixtures::gzip(&archive);
    let repo = unique("ociarchive");
    let plain = push_and_verify(&archive, &repo, &["--create-repository"]);
    assert_eq!(plain["source_format"], "oci-archive");
    let zipped = push_and_verify(&gz, &repo, &[]);
    assert_eq!(zipped["digest"], plain["digest"], "same image, same digest");
    assert_eq!(
        zipped["blobs"]["uploaded"], 0,
        "second push finds every blob: {zipped}"
    );
}

#[test]
fn docker_save_archive_plain_and_gzip_is_compressed_on_the_way_up() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_layout(work.path());
    let archive = fixtures::docker_archive(work.path(), &layout);
    let gz = fixtures::gzip(&archive);
    let repo = unique("dockersave");
    let report = push_and_verify(&gz, &repo, &["--create-repository", "--tag", "v1"]);
    assert_eq!(report["source_format"], "docker-archive");
    assert_eq!(
        report["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let digest = report["digest"].as_str().unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry_manifest(&repo, digest).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(
            layer["mediaType"],
            "application/vnd.docker.image.rootfs.diff.tar.gzip"
        );
    }
    // The uncompressed archive compresses to the same bytes: same digest, tag
    // unchanged — and v1 already names this image, so nothing is uploaded.
    let again = push_and_verify(&archive, &repo, &["--tag", "v1"]);
    assert_eq!(again["digest"], report["digest"]);
    assert_eq!(again["tags"][0]["action"], "unchanged");
    assert_eq!(again["blobs"]["uploaded"], 0, "{again}");
}

#[test]
fn two_platform_index_is_pushed_whole() {
    let work = tempfile::tempdir().unwrap();
    let layout = fixtures::buildah_index(work.path());
    let repo = unique("index");
    let report = push_and_verify(&layout, &repo, &["--create-repository", "--tag", "multi"]);
    assert_eq!(
        report["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms: Vec<&str> = report["platforms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64"]);
    let index: serde_json::Value = serde_json::from_slice(
        &registry_manifest(&repo, report["digest"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    for child in index["manifests"].as_array().unwrap() {
        assert!(
            registry_manifest(&repo, child["digest"].as_str().unwrap()).is_some(),
            "child {child} pushed"
        );
    }
}

#[test]
fn repush_skips_every_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 3, 300_000);
    let repo = unique("repush");
    let first = push_and_verify(dir.path(), &repo, &["--create-repository"]);
    assert_eq!(first["digest"], m.digest);
    assert_eq!(first["blobs"]["uploaded"], 4);
    let second = push(dir.path(), &repo, &[]);
    let second = second.ok().json();
    assert_eq!(second["blobs"]["present"], 4, "{second}");
    assert_eq!(second["blobs"]["uploaded"], 0);
    assert_eq!(second["manifests_pushed"], 0);
}

#[test]
fn immutable_tags_are_idempotent_and_conflicts_name_both_digests() {
    let repo = unique("immutable");
    let a = tempfile::tempdir().unwrap();
    let (_, ma) = Layout::simple(a.path(), 1, 1000);
    let b = tempfile::tempdir().unwrap();
    let (_, mb) = Layout::simple(b.path(), 1, 1000);
    // --create-repository makes IMMUTABLE repositories.
    push(
        a.path(),
        &repo,
        &["--create-repository", "--tag", "release"],
    )
    .ok();
    let again = push(a.path(), &repo, &["--tag", "release"]);
    assert_eq!(
        again.ok().json()["tags"][0]["action"],
        "unchanged",
        "same digest under an immutable tag is success"
    );

    let conflict = push(b.path(), &repo, &["--tag", "release"]);
    assert_eq!(conflict.code, 2, "{}", conflict.stderr);
    assert!(
        conflict.stderr.contains(&ma.digest) && conflict.stderr.contains(&mb.digest),
        "names both digests:\n{}",
        conflict.stderr
    );
    assert!(conflict.stderr.contains("hint:"));
    assert!(
        registry_manifest(&repo, &mb.digest).is_none(),
        "nothing of the conflicting image's manifest was pushed"
    );
    assert_eq!(registry_tags(&repo), vec!["release"]);
}

#[test]
fn mutable_tags_move() {
    let repo = unique("mutable");
    common::create_repository(&repo, false);
    let a = tempfile::tempdir().unwrap();
    Layout::simple(a.path(), 1, 1000);
    let b = tempfile::tempdir().unwrap();
    let (_, mb) = Layout::simple(b.path(), 1, 1000);
    push(a.path(), &repo, &["--tag", "latest"]).ok();
    push(b.path(), &repo, &["--tag", "latest"]).ok();
    let now = registry_manifest(&repo, "latest").unwrap();
    assert_eq!(format!("sha256:{}", common::sha256_hex(&now)), mb.digest);
}

#[test]
fn layout_with_several_images_needs_ref() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    let one = l.image(&[l.layer(1000, seed)], "amd64");
    let two = l.image(&[l.layer(1000, seed + 1)], "amd64");
    l.write_index(&[(Some("one"), &one), (Some("two"), &two)]);
    let repo = unique("multiref");
    let without = push(dir.path(), &repo, &["--create-repository"]);
    assert_eq!(without.code, 2);
    assert!(
        without.stderr.contains("--ref one") && without.stderr.contains("--ref two"),
        "lists the entries:\n{}",
        without.stderr
    );
    let with = push(dir.path(), &repo, &["--create-repository", "--ref", "two"]);
    assert_eq!(with.ok().json()["digest"], two.digest);
    let unknown = push(dir.path(), &repo, &["--ref", "three"]);
    assert_eq!(unknown.code, 2);
    assert!(
        unknown.stderr.contains("no image named 'three'"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn digest_on_stdout_and_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    let repo = unique("stdout");
    let file = dir.path().join("digest.txt");
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
            "--digest-file",
            file.to_str().unwrap(),
        ],
        &[],
    );
    run.ok();
    assert_eq!(
        run.stdout,
        format!("{}\n", m.digest),
        "stdout holds the digest and nothing else"
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), m.digest);
}

#[test]
fn github_outputs_summary_and_masking() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    let repo = unique("github");
    let out = dir.path().join("github_output");
    let summary = dir.path().join("summary.md");
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
        ],
        &[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_OUTPUT", out.to_str().unwrap()),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ],
    );
    run.ok();
    let outputs = std::fs::read_to_string(&out).unwrap();
    assert!(
        outputs.contains(&format!("digest={}\n", m.digest)),
        "{outputs}"
    );
    assert!(
        outputs.contains(&format!(
            "image-uri={}/{repo}@{}\n",
            local().ecr_host,
            m.digest
        )),
        "{outputs}"
    );
    assert!(
        std::fs::read_to_string(&summary)
            .unwrap()
            .contains(&m.digest)
    );
    assert!(
        run.stderr
            .contains(&format!("::add-mask::{}", local().password)),
        "the registry password is masked on GitHub"
    );
    assert_eq!(run.stdout.trim(), m.digest, "masking does not touch stdout");
}

#[test]
fn gitlab_dotenv_report() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    let repo = unique("gitlab");
    let project = tempfile::tempdir().unwrap();
    hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
        ],
        &[
            ("GITLAB_CI", "true"),
            ("CI_PROJECT_DIR", project.path().to_str().unwrap()),
        ],
    )
    .ok();
    let dotenv = std::fs::read_to_string(project.path().join("hoist.env")).unwrap();
    assert!(
        dotenv.contains(&format!("HOIST_DIGEST={}\n", m.digest)),
        "{dotenv}"
    );
    assert!(
        dotenv.contains(&format!(
            "HOIST_IMAGE_URI={}/{repo}@{}\n",
            local().ecr_host,
            m.digest
        )),
        "{dotenv}"
    );
    assert!(!dotenv.contains(&local().password));
}

#[test]
fn buildkite_meta_data() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    let repo = unique("buildkite");
    // A stand-in buildkite-agent on PATH that records what it was asked to
    // set: the arguments, then the value hoist gives on stdin. (The strict
    // stand-in, with the agent's rules, is tests/buildkite/bin.)
    let bin = tempfile::tempdir().unwrap();
    let log = bin.path().join("calls");
    let agent = bin.path().join("buildkite-agent");
    std::fs::write(
        &agent,
        format!(
            "#!/bin/sh\n{{ printf '%s ' \"$@\"; cat; echo; }} >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&agent, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap()
    );
    hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
        ],
        &[("BUILDKITE", "true"), ("PATH", &path)],
    )
    .ok();
    let calls = std::fs::read_to_string(log).unwrap();
    assert!(
        calls.contains(&format!("meta-data set hoist-digest {}", m.digest)),
        "{calls}"
    );
    assert!(calls.contains("meta-data set hoist-image-uri "), "{calls}");
}

#[test]
fn missing_repository_names_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 100);
    let run = push(dir.path(), &unique("missing"), &[]);
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("does not exist") && run.stderr.contains("--create-repository"),
        "{}",
        run.stderr
    );
}

#[test]
fn env_vars_set_every_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 100);
    let repo = unique("envflags");
    let work = tempfile::tempdir().unwrap();
    let run = hoist_in(
        Some(work.path()),
        &["push"],
        &[
            ("HOIST_SOURCE", dir.path().to_str().unwrap()),
            ("HOIST_REPOSITORY", &repo),
            ("HOIST_CREATE_REPOSITORY", "true"),
            ("HOIST_TAG", "a,b"),
            ("HOIST_OUTPUT", "json"),
        ],
    );
    let report = run.ok().json();
    assert_eq!(report["digest"], m.digest);
    assert_eq!(report["tags"].as_array().unwrap().len(), 2);
}

#[test]
fn moto_sees_what_the_registry_holds() {
    // The local environment's glue mirrors registry pushes into moto's ECR,
    // so later stages (scan, deploy) find the image through the ECR API.
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    let repo = unique("mirror");
    push(dir.path(), &repo, &["--create-repository", "--tag", "v7"]).ok();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let images = common::ecr(async |c| {
            c.describe_images()
                .repository_name(&repo)
                .send()
                .await
                .unwrap()
        });
        let found = images.image_details().iter().any(|i| {
            i.image_digest() == Some(m.digest.as_str()) && i.image_tags().iter().any(|t| t == "v7")
        });
        if found {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "moto never listed {repo}@{} with tag v7: {images:?}",
            m.digest
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

#[test]
fn mount_from_another_repository() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 2, 50_000);
    let a = unique("mount-src");
    let b = unique("mount-dst");
    let c = unique("mount-off");
    push(dir.path(), &a, &["--create-repository"]).ok();
    // A registry with blob mounting on (ECR's BLOB_MOUNTING=ENABLED).
    let on = common::proxy::Proxy::start(common::proxy::Options {
        blob_mounting: true,
        ..Default::default()
    });
    let run = common::push_via(
        &on.endpoint(),
        dir.path(),
        &b,
        &["--create-repository", "--mount-from", &a],
    );
    let report = run.ok().json();
    assert_eq!(report["digest"], m.digest);
    assert_eq!(
        report["blobs"]["mounted"], 3,
        "config and both layers mounted, none uploaded: {report}"
    );
    assert_eq!(report["blobs"]["uploaded"], 0);
    let dest = tempfile::tempdir().unwrap();
    pull_back(&b, &m.digest, &dest.path().join("pulled"));
    // ECR's default (mounting off): every mount is answered with an upload
    // session, and hoist uploads into it.
    let report = push_and_verify(dir.path(), &c, &["--create-repository", "--mount-from", &a]);
    assert_eq!(report["blobs"]["mounted"], 0, "{report}");
    assert_eq!(report["blobs"]["uploaded"], 3, "{report}");
}

#[test]
fn repeated_tags_are_pushed_once_each() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1000);
    // --create-repository makes IMMUTABLE tags: a second PUT of v1 would be
    // refused.
    let repo = unique("duptags");
    let run = push(
        dir.path(),
        &repo,
        &[
            "--create-repository",
            "--tag",
            "v1",
            "--tag",
            "v1",
            "--tag",
            "v2",
        ],
    );
    run.ok();
    let tags: Vec<String> = run.json()["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{}={}",
                t["tag"].as_str().unwrap(),
                t["action"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(tags, ["v1=pushed", "v2=pushed"]);
    // From the environment, in order, each once.
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--output",
            "json",
            "-q",
        ],
        &[("HOIST_TAG", "v3,v1,v3")],
    );
    run.ok();
    let report = run.json();
    let tags: Vec<&str> = report["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["v3", "v1"]);
    assert_eq!(run.json()["digest"], m.digest.as_str());
}

/// `--repository` as a full repository URI (a central registry): the ECR
/// API is asked about that registry (registryId), the registry traffic and
/// the image URI use its host; `--allowed-account-ids` lets the push through
/// for that account and refuses another before anything is read.
#[test]
fn a_full_repository_uri_and_allowed_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 1_000);
    let name = unique("central");
    common::create_repository(&name, false);
    let uri = format!("{}/{name}", local().ecr_host);
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &uri,
            "--allowed-account-ids",
            "210987654321,123456789012",
            "--output",
            "json",
            "-q",
        ],
        &[],
    );
    let report = run.ok().json();
    assert_eq!(report["repository"], name.as_str(), "{report}");
    assert_eq!(report["image_uri"], format!("{uri}@{}", m.digest));
    let described = local()
        .aws
        .calls()
        .into_iter()
        .find(|c| c.operation == "DescribeRepositories")
        .expect("the repository was looked up");
    assert_eq!(
        described.params["registryId"], "123456789012",
        "{:?}",
        described.params
    );

    let before = local().front.counts().requests;
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &uri,
            "--allowed-account-ids",
            "210987654321",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("signed in to AWS account 123456789012, which --allowed-account-ids does not list (210987654321)"),
        "{}",
        run.stderr
    );
    assert_eq!(
        local().front.counts().requests,
        before,
        "nothing reached the registry"
    );

    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            "registry.example.com/team/app",
        ],
        &[],
    );
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("not an ECR registry"), "{}", run.stderr);
}

/// On GitHub a failure is an error annotation (title naming the stage, the
/// hint on its own line, the data escaped as GitHub's toolkit does) and a
/// step summary; a warning is a warning annotation.
#[test]
fn github_annotations_for_failures_and_warnings() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1000);
    let summary = dir.path().join("summary.md");
    let out = dir.path().join("github_output");
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ("GITHUB_OUTPUT", out.to_str().unwrap()),
    ];
    let missing = unique("github-missing");
    let run = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &missing,
        ],
        &github,
    );
    assert_eq!(run.code, 2, "{}", run.stderr);
    let annotation = run
        .stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no error annotation:\n{}", run.stderr));
    assert!(
        annotation.starts_with("::error title=hoist push failed::repository '")
            && annotation.contains("%0Ahint: create it"),
        "{annotation}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("### hoist push failed") && md.contains("**hint:**"),
        "{md}"
    );

    // A warning (a digest-only push into a repository whose lifecycle
    // policy expires untagged images) is an annotation, not a log line.
    let repo = unique("github-warning");
    common::create_repository(&repo, false);
    let policy = serde_json::json!({ "rules": [{ "rulePriority": 1, "description": "untagged, 1 day",
        "selection": { "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1 },
        "action": { "type": "expire" } }] });
    common::ecr(async |c| {
        c.put_lifecycle_policy()
            .repository_name(&repo)
            .lifecycle_policy_text(policy.to_string())
            .send()
            .await
            .unwrap();
    });
    let run = hoist(
        &["push", dir.path().to_str().unwrap(), "--repository", &repo],
        &github,
    );
    run.ok();
    assert!(
        run.stderr
            .lines()
            .any(|l| l.starts_with("::warning title=hoist::pushing by digest only into")),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(" WARN "), "{}", run.stderr);
}
