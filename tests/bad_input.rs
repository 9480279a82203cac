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
    let m2 = l.image(std::slice::from_ref(&layer), "amd64");
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

/// Push `source` through a proxy of the test's own; expect exit 2 with every
/// `needles` in stderr, and a registry that saw not one request.
fn untouched(source: &Path, extra: &[&str], needles: &[&str]) -> String {
    let proxy = common::proxy::Proxy::start(Default::default());
    let repo = unique("untouched");
    let mut args = vec![
        "push",
        source.to_str().unwrap(),
        "--repository",
        &repo,
        "--registry-endpoint",
    ];
    let endpoint = proxy.endpoint();
    args.push(&endpoint);
    args.extend(["--create-repository", "--tag", "t"]);
    args.extend_from_slice(extra);
    let run = hoist(&args, &[]);
    assert_eq!(run.code, 2, "exit code 2 expected:\n{}", run.stderr);
    assert!(run.stdout.is_empty(), "no digest on stdout: {}", run.stdout);
    for n in needles {
        assert!(
            run.stderr.contains(n),
            "stderr should mention {n:?}:\n{}",
            run.stderr
        );
    }
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert_eq!(
        proxy.counts().requests,
        0,
        "the registry saw nothing:\n{}",
        run.stderr
    );
    run.stderr
}

/// A layout whose one image manifest has `media_type` as its mediaType.
fn layout_with_manifest_media_type(dir: &Path, media_type: &str) {
    let l = Layout::new(dir);
    let layer = l.layer(1000, fixtures::fresh_seed());
    let config = l.blob(
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": config.json(),
        "layers": [layer.json()],
    });
    let m = l.blob(
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    l.write_index(&[(None, &m)]);
}

#[test]
fn a_media_type_that_is_not_one_is_refused_before_any_upload() {
    let dir = tempfile::tempdir().unwrap();
    layout_with_manifest_media_type(
        dir.path(),
        "application/vnd.oci.image.manifest.v1+json\r\nX-Injected: 1",
    );
    let err = untouched(
        dir.path(),
        &[],
        &["is not a media type", "\\r\\nX-Injected"],
    );
    assert!(!err.contains("\r\n"), "shown escaped: {err:?}");
    let dir = tempfile::tempdir().unwrap();
    layout_with_manifest_media_type(
        dir.path(),
        "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
    );
    untouched(dir.path(), &[], &["has parameters"]);
}

#[test]
fn a_digest_file_that_cannot_be_written_is_refused_before_the_push() {
    let dir = tempfile::tempdir().unwrap();
    Layout::simple(dir.path(), 1, 1000);
    let missing = dir.path().join("no/such/dir/digest");
    untouched(
        dir.path(),
        &["--digest-file", missing.to_str().unwrap()],
        &["--digest-file", "does not exist"],
    );
    untouched(
        dir.path(),
        &["--digest-file", dir.path().to_str().unwrap()],
        &["--digest-file", "is a directory"],
    );
}

#[test]
fn a_pipe_as_source_is_named_a_pipe() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("image.tar");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    // Nobody writes to it: hoist must not even open it.
    untouched(
        &fifo,
        &[],
        &["is a pipe (FIFO), not a file", "save it to a file"],
    );
}

/// The layout in `dir` as an OCI archive (a plain tar) at `path`.
fn oci_archive(dir: &Path, path: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_dir_all(".", dir).unwrap();
    let bytes = b.into_inner().unwrap();
    std::fs::write(path, &bytes).unwrap();
    bytes
}

#[test]
fn a_truncated_tar_is_called_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    Layout::simple(&layout, 2, 20_000);
    let archive = dir.path().join("image.tar");
    let whole = oci_archive(&layout, &archive);
    // Cut inside a member's data, and cut at a block boundary (every header
    // whole, no end-of-archive marker).
    for cut in [whole.len() / 2 + 100, (whole.len() / 2) / 512 * 512] {
        std::fs::write(&archive, &whole[..cut]).unwrap();
        untouched(&archive, &[], &["is truncated", "export it again"]);
    }
    // Cut inside its first header.
    std::fs::write(&archive, &whole[..300]).unwrap();
    untouched(&archive, &[], &["is truncated"]);
}

#[test]
fn a_long_listing_is_cut_short() {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 100);
    let names: Vec<String> = (0..15_000).map(|i| format!("image-{i}")).collect();
    let entries: Vec<(Option<&str>, &fixtures::Desc)> =
        names.iter().map(|n| (Some(n.as_str()), &m)).collect();
    l.write_index(&entries);
    let err = untouched(dir.path(), &[], &["holds 15000 images", "… and 14980 more"]);
    assert!(err.len() < 8 * 1024, "{} bytes of error", err.len());
}

#[test]
fn platform_strings_and_annotations_with_control_characters_are_refused() {
    // A ref name that would colour the terminal.
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 100);
    l.write_index(&[(Some("app\u{1b}[31m"), &m)]);
    let err = untouched(
        dir.path(),
        &[],
        &["org.opencontainers.image.ref.name", "\\x1b[31m"],
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");

    // An architecture that would forge a workflow command.
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let image = l.image(&[l.layer(100, fixtures::fresh_seed())], "amd64");
    let index = l.index(&[(image, "amd64\n::error::forged")]);
    l.write_index(&[(None, &index)]);
    let err = untouched(
        dir.path(),
        &[],
        &["platform architecture", "\\n::error::forged"],
    );
    assert!(!err.lines().any(|line| line.starts_with("::")), "{err:?}");
}
