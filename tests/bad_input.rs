//! Bad images on disk: each is a clear error naming the problem, exit code 2,
//! and nothing — above all no manifest — reaches the registry.

mod common;

use std::path::Path;

use common::fixtures::{self, Layout};
use common::{hoist, registry_manifest, registry_tags, unique};

/// Push `source` to a fresh repository; expect exit 2 with every `needles`
/// in stderr, and an untouched repository.
fn refused(source: &Path, needles: &[&str], manifest: Option<&str>) -> String {
    let repo = unique("bad");
    let run = hoist(
        &[
            "push",
            source.to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
            "--tag",
            "t",
        ],
        &[],
    );
    assert_eq!(run.code, 2, "exit code 2 expected:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "no digest on stdout: {}", run.stdout);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "stderr should mention {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(
        run.stderr.starts_with("error: ") || run.stderr.contains("\nerror: "),
        "{}",
        run.stderr
    );
    if let Some(d) = manifest {
        assert!(
            registry_manifest(&repo, d).is_none(),
            "no manifest was pushed"
        );
    }
    assert!(registry_tags(&repo).is_empty(), "no tag was pushed");
    run.stderr
}

#[test]
fn truncated_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 2, 5000);
    let layer = l.layer(4000, fixtures::fresh_seed());
    let m2 = l.image(&[layer.clone()], "amd64");
    l.write_index(&[(None, &m2)]);
    let path = l.blob_path(&layer);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = refused(dir.path(), &["truncated", &layer.digest], Some(&m2.digest));
    assert!(err.contains("hint:"), "{err}");
    let _ = m;
}

#[test]
fn blob_bytes_do_not_match_digest_is_caught_while_streaming() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    let good = l.layer(300_000, seed);
    let bad = l.layer(300_000, seed + 1);
    let m = l.image(&[good, bad.clone()], "amd64");
    l.write_index(&[(None, &m)]);
    // Same size, other bytes: only hashing while streaming can tell.
    let path = l.blob_path(&bad);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n / 2] ^= 0xff;
    std::fs::write(&path, bytes).unwrap();
    refused(
        dir.path(),
        &["does not match its digest", &bad.digest],
        Some(&m.digest),
    );
}

#[test]
fn missing_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 2, 1000);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(l.dir.join("blobs/sha256").join(&m.digest[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(l.dir.join("blobs/sha256").join(&layer[7..])).unwrap();
    refused(dir.path(), &["is missing", &layer], Some(&m.digest));
}

#[test]
fn digest_holding_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    std::fs::write(
        dir.path().join("index.json"),
        r#"{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../etc/passwd","size":10}]}"#,
    )
    .unwrap();
    refused(
        dir.path(),
        &["sha256:../../../etc/passwd", "not a sha256 digest"],
        None,
    );
    let _ = l;
}

#[test]
fn malformed_index_json() {
    let dir = tempfile::tempdir().unwrap();
    Layout::new(dir.path());
    std::fs::write(
        dir.path().join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .unwrap();
    refused(dir.path(), &["index.json is not valid JSON"], None);
}

#[test]
fn symlink_out_of_the_layout() {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 1000);
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(l.dir.join("blobs/sha256").join(&m.digest[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("elsewhere");
    let blob = l.dir.join("blobs/sha256").join(&layer[7..]);
    std::fs::rename(&blob, &target).unwrap();
    std::os::unix::fs::symlink(&target, &blob).unwrap();
    refused(dir.path(), &["leads out of the image"], Some(&m.digest));
}

#[test]
fn empty_directory() {
    let dir = tempfile::tempdir().unwrap();
    refused(dir.path(), &["not an image hoist can read", "hint:"], None);
}

#[test]
fn not_an_archive_and_not_there() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, fixtures::random_bytes(4096, 1)).unwrap();
    refused(&junk, &["neither a tar archive nor gzip"], None);
    refused(
        &dir.path().join("nope.tar"),
        &["no such file or directory"],
        None,
    );
    let gz = dir.path().join("cut.tar.gz");
    let full = fixtures::layer_tar_gz(&fixtures::random_bytes(100_000, 2));
    std::fs::write(&gz, &full[..full.len() / 2]).unwrap();
    refused(&gz, &["gzip stream is corrupt or truncated"], None);
}

#[test]
fn bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 100);
    let src = dir.path().to_str().unwrap();
    for (args, needle) in [
        (
            vec!["push", src, "--repository", "Upper/Case"],
            "not a valid ECR repository name",
        ),
        (
            vec!["push", src, "--repository", "ok", "--tag", "bad:tag"],
            "not a valid tag",
        ),
        (
            vec![
                "push",
                src,
                "--repository",
                "ok",
                "--registry-endpoint",
                "http://10.1.2.3:5000",
            ],
            "plain http",
        ),
        (
            vec!["push", src, "--repository", "ok", "--jobs", "0"],
            "--jobs 0",
        ),
    ] {
        let run = hoist(&args, &[]);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
    }
}
