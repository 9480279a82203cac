//! `hoist ship`: the stages in one process against the local environment.

mod common;

use common::{fixtures, hoist, push, unique};

fn ship(source: &std::path::Path, repo: &str, extra: &[&str]) -> common::Run {
    let mut args = vec![
        "ship",
        source.to_str().unwrap(),
        "--repository",
        repo,
        "--output",
        "json",
        "-q",
    ];
    args.extend_from_slice(extra);
    hoist(&args, &[])
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
        assert_eq!(
            run.stdout.contains(pushed["digest"].as_str().unwrap()),
            true
        );

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
