//! Pushes through a proxy that behaves as ECR does where ECR differs from
//! the Distribution registry (tests/common/proxy.rs): PATCH answered 201,
//! data of a second PATCH silently dropped, mounts answered 202, media types
//! with parameters refused. Each push is checked by pulling the image back
//! from the real registry, past the proxy. Other tests check the proxy itself
//! with a raw client, so a push that works through it is known to work
//! against ECR and not merely against a lenient stand-in.

mod common;
#[path = "common/proxy.rs"]
mod proxy;

use std::path::Path;

use common::fixtures::{self, Desc, Layout};
use common::{Run, hoist, pull_back, registry_manifest, registry_tags, unique};
use proxy::{Options, Proxy, basic_auth, block_on, upstream_has_blob};
use serde_json::json;

const ECR: Options = Options {
    ecr: true,
    faults: None,
    probe_503: false,
    deny: false,
};

/// The report of a push that worked, after checking that the real registry
/// holds the image: skopeo pulls it back and verifies every blob.
fn pushed(run: &Run, repo: &str, manifest: &Desc) -> serde_json::Value {
    assert_eq!(
        run.code, 0,
        "hoist failed:\nstdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    let report = run.json();
    assert_eq!(report["digest"], manifest.digest, "{report}");
    assert!(
        !run.stderr.contains("retrying"),
        "nothing was retried: every answer was understood the first time:\n{}",
        run.stderr
    );
    let dest = tempfile::tempdir().unwrap();
    pull_back(repo, &manifest.digest, &dest.path().join("pulled"));
    report
}

#[test]
fn one_patch_per_blob_carries_a_12_mib_layer_and_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    // ECR keeps only the first two PATCHes of an upload; a client sending
    // 4-5 MiB chunks would lose most of this layer.
    let big = l.layer((12 << 20) + 300_000, seed);
    assert!(big.size > 12 << 20);
    let layers = [
        big,
        l.layer(1_000, seed + 1),
        l.layer(40_000, seed + 2),
        l.layer(300_000, seed + 3),
    ];
    let m = l.image(&layers, "amd64");
    l.write_index(&[(Some("latest"), &m)]);
    let proxy = Proxy::start(ECR);
    let repo = unique("ecr-onepatch");

    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--tag", "v1"],
    );
    let report = pushed(&run, &repo, &m);

    let blobs = layers.len() + 1; // and the config
    let config_size = {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(l.blob_path(&m)).unwrap()).unwrap();
        manifest["config"]["size"].as_u64().unwrap()
    };
    let bytes: u64 = layers.iter().map(|d| d.size).sum::<u64>() + config_size;
    assert_eq!(
        report["blobs"],
        json!({ "total": blobs, "uploaded": blobs, "mounted": 0, "present": 0, "bytes_uploaded": bytes }),
        "{report}"
    );
    assert_eq!(report["tags"], json!([{ "tag": "v1", "action": "pushed" }]));
    let c = proxy.counts();
    assert_eq!(c.patches, blobs, "one PATCH per blob: {c:?}");
    assert_eq!(c.patches_dropped, 0, "{c:?}");
    assert_eq!(c.faults(), 0);
    // The manifest in the registry is the very file on disk.
    assert_eq!(
        registry_manifest(&repo, "v1").unwrap(),
        std::fs::read(l.blob_path(&m)).unwrap()
    );
}

#[test]
fn mount_answered_202_falls_back_to_an_upload() {
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 2, 50_000);
    let blobs = 3; // two layers and the config
    // The source repository holds every blob (pushed past any proxy).
    let source = unique("ecr-mount-src");
    let direct = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &source,
            "--create-repository",
            "-q",
        ],
        &[],
    );
    direct.ok();
    assert_eq!(direct.stdout, format!("{}\n", m.digest));

    // Control: through the proxy without ECR's behaviour, the registry
    // mounts every blob — so what follows is down to the 202 alone.
    let plain = Proxy::start(Options::default());
    let repo = unique("ecr-mount-plain");
    let run = common::push_via(
        &plain.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--mount-from", &source],
    );
    let report = pushed(&run, &repo, &m);
    assert_eq!(report["blobs"]["mounted"], blobs, "{report}");
    assert_eq!(report["blobs"]["uploaded"], 0, "{report}");
    assert_eq!(plain.counts().patches, 0);

    // As ECR with blob mounting off: every mount is answered 202 with an
    // upload session, and hoist uploads into it.
    let proxy = Proxy::start(ECR);
    let repo = unique("ecr-mount-202");
    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository", "--mount-from", &source],
    );
    let report = pushed(&run, &repo, &m);
    assert_eq!(report["blobs"]["mounted"], 0, "{report}");
    assert_eq!(report["blobs"]["uploaded"], blobs, "{report}");
    let c = proxy.counts();
    assert_eq!(c.mounts_answered_202, blobs, "every mount tried: {c:?}");
    assert_eq!(c.patches, blobs, "one PATCH per blob: {c:?}");
    assert_eq!(c.patches_dropped, 0, "{c:?}");
}

/// What a chunked upload met: each PATCH's status and Range, and the final
/// PUT's status and body.
struct Chunked {
    location: String,
    patches: Vec<(u16, String)>,
    put: (u16, String),
}

/// POST, one PATCH per chunk, PUT ?digest= — the OCI chunked upload, with
/// chunks over ECR's 5 MiB minimum — through `endpoint`.
fn chunked_upload(endpoint: &str, repo: &str, blob: &[u8], chunk: usize) -> Chunked {
    let digest = format!("sha256:{}", common::sha256_hex(blob));
    block_on(async {
        let c = reqwest::Client::builder().no_proxy().build().unwrap();
        let r = c
            .post(format!("{endpoint}/v2/{repo}/blobs/uploads/"))
            .header("Authorization", basic_auth())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
        let mut location = r.headers()["location"].to_str().unwrap().to_string();
        let first = location.clone();
        let mut patches = Vec::new();
        for (i, part) in blob.chunks(chunk).enumerate() {
            let start = i * chunk;
            let r = c
                .patch(&location)
                .header("Authorization", basic_auth())
                .header("Content-Type", "application/octet-stream")
                .header(
                    "Content-Range",
                    format!("{start}-{}", start + part.len() - 1),
                )
                .body(part.to_vec())
                .send()
                .await
                .unwrap();
            let range = r
                .headers()
                .get("range")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            patches.push((r.status().as_u16(), range));
            location = r.headers()["location"].to_str().unwrap().to_string();
        }
        let sep = if location.contains('?') { '&' } else { '?' };
        let r = c
            .put(format!("{location}{sep}digest={digest}"))
            .header("Authorization", basic_auth())
            .send()
            .await
            .unwrap();
        let put = (r.status().as_u16(), r.text().await.unwrap());
        Chunked {
            location: first,
            patches,
            put,
        }
    })
}

/// The proxy is faithful to ECR: a client that uploads in two chunks loses
/// the second through it, and its blob is refused at the final PUT. The
/// same upload through the proxy without ECR's behaviour commits. hoist's
/// pushes work through the ECR proxy because they send one PATCH per blob.
#[test]
fn ecr_proxy_drops_the_second_patch_of_a_chunked_upload() {
    let blob = fixtures::random_bytes(6 << 20, fixtures::fresh_seed());
    let digest = format!("sha256:{}", common::sha256_hex(&blob));
    let chunk = (5 << 20) + 4096;

    let plain = Proxy::start(Options::default());
    let control = unique("chunked-plain");
    let r = chunked_upload(&plain.endpoint(), &control, &blob, chunk);
    assert!(
        r.location.starts_with(&plain.endpoint()),
        "the upstream's Location is rewritten to the proxy: {}",
        r.location
    );
    assert_eq!(
        r.patches.iter().map(|p| p.0).collect::<Vec<_>>(),
        [202, 202]
    );
    assert_eq!(r.put.0, 201, "{}", r.put.1);
    assert!(upstream_has_blob(&control, &digest));

    let proxy = Proxy::start(ECR);
    let repo = unique("chunked-ecr");
    let r = chunked_upload(&proxy.endpoint(), &repo, &blob, chunk);
    assert_eq!(
        r.patches.iter().map(|p| p.0).collect::<Vec<_>>(),
        [201, 201],
        "ECR answers PATCH with 201, the dropped one too"
    );
    assert_eq!(
        r.patches[0].1,
        format!("0-{}", chunk - 1),
        "the first chunk arrived"
    );
    assert_eq!(
        r.patches[1].1, r.patches[0].1,
        "the Range does not advance past the dropped chunk"
    );
    assert_eq!(r.put.0, 400, "{}", r.put.1);
    assert!(r.put.1.contains("DIGEST_INVALID"), "{}", r.put.1);
    let c = proxy.counts();
    assert_eq!((c.patches, c.patches_dropped), (2, 1), "{c:?}");
    assert!(!upstream_has_blob(&repo, &digest));
}

/// Where in an image a media type with parameters sits.
#[derive(Clone, Copy, Debug)]
enum Where {
    /// The manifest's own mediaType (what its Content-Type would be).
    Manifest,
    Config,
    Layer,
}

/// A layout whose manifest names `media_type` at `at`; digests fixed up, so
/// the image is otherwise valid.
fn layout_with_media_type(dir: &Path, at: Where, media_type: &str) {
    let l = Layout::new(dir);
    let m = l.image(&[l.layer(1_000, fixtures::fresh_seed())], "amd64");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.blob_path(&m)).unwrap()).unwrap();
    let field = match at {
        Where::Manifest => &mut manifest["mediaType"],
        Where::Config => &mut manifest["config"]["mediaType"],
        Where::Layer => &mut manifest["layers"][0]["mediaType"],
    };
    *field = json!(media_type);
    std::fs::remove_file(l.blob_path(&m)).unwrap();
    let m = l.blob(
        "application/vnd.oci.image.manifest.v1+json",
        &serde_json::to_vec_pretty(&manifest).unwrap(),
    );
    l.write_index(&[(Some("latest"), &m)]);
}

/// ECR refuses media types with parameters; hoist finds them on disk and
/// fails before the registry, or even the ECR API, hears of the push.
#[test]
fn media_type_with_parameters_fails_before_any_request() {
    let cases = [
        (
            Where::Manifest,
            "application/vnd.oci.image.manifest.v1+json; charset=utf-8",
        ),
        (
            Where::Config,
            "application/vnd.oci.image.config.v1+json; charset=utf-8",
        ),
        (
            Where::Layer,
            "application/vnd.oci.image.layer.v1.tar+gzip; charset=utf-8",
        ),
    ];
    for (at, media_type) in cases {
        let dir = tempfile::tempdir().unwrap();
        layout_with_media_type(dir.path(), at, media_type);
        let proxy = Proxy::start(ECR);
        let repo = unique("semicolon");
        let run = common::push_via(
            &proxy.endpoint(),
            dir.path(),
            &repo,
            &["--create-repository", "--tag", "v1"],
        );
        assert_eq!(run.code, 2, "{at:?}: {}", run.stderr);
        assert!(
            run.stderr.contains(&format!("media type '{media_type}'"))
                && run.stderr.contains("ECR refuses")
                && run.stderr.contains("hint:"),
            "{at:?}: names the media type, why, and what to do:\n{}",
            run.stderr
        );
        let out = run.json();
        assert_eq!(out["exit_code"], 2, "{out}");
        assert!(out["error"].as_str().unwrap().contains(media_type), "{out}");
        assert!(out["hint"].is_string(), "{out}");
        assert_eq!(
            proxy.counts().requests,
            0,
            "{at:?}: nothing reached the registry"
        );
        assert!(
            !common::repository_exists(&repo),
            "{at:?}: the repository was not created for an image that cannot be pushed"
        );
    }
}

/// The proxy refuses a manifest whose Content-Type has parameters, as ECR
/// does, and takes the same bytes with the plain type.
#[test]
fn ecr_proxy_refuses_a_manifest_content_type_with_parameters() {
    // Blobs in place (pushed past the proxy), then a manifest over them that
    // the registry does not hold yet.
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 1_000);
    let repo = unique("ecr-ctype");
    let direct = hoist(
        &[
            "push",
            dir.path().to_str().unwrap(),
            "--repository",
            &repo,
            "--create-repository",
            "-q",
        ],
        &[],
    );
    direct.ok();
    assert_eq!(direct.stdout, format!("{}\n", m.digest));
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.blob_path(&m)).unwrap()).unwrap();
    manifest["annotations"] = json!({ "test": unique("variant") });
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = format!("sha256:{}", common::sha256_hex(&bytes));

    let proxy = Proxy::start(ECR);
    let put = |content_type: &str| {
        block_on(async {
            let r = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .put(format!("{}/v2/{repo}/manifests/{digest}", proxy.endpoint()))
                .header("Authorization", basic_auth())
                .header("Content-Type", content_type)
                .body(bytes.clone())
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, body) = put("application/vnd.oci.image.manifest.v1+json; charset=utf-8");
    assert_eq!(status, 400, "{body}");
    let error: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(error["errors"][0]["code"], "MANIFEST_INVALID", "{body}");
    assert_eq!(proxy.counts().media_types_refused, 1);
    assert!(registry_manifest(&repo, &digest).is_none());

    let (status, body) = put("application/vnd.oci.image.manifest.v1+json");
    assert_eq!(status, 201, "{body}");
    assert_eq!(registry_manifest(&repo, &digest).unwrap(), bytes);
    assert!(registry_tags(&repo).is_empty(), "pushed by digest only");
}
