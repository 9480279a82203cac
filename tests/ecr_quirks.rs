//! The suite's ECR front (tests/common/proxy.rs) against ECR's documented
//! behaviour, and hoist against it: every other test already runs hoist
//! through a front (`common::local()`); these check the front itself with a
//! raw client — so a push that works through it is known to meet ECR as ECR
//! behaves, not merely a lenient stand-in — and hoist against the quirks a
//! run does not meet by chance (a redirect to S3, HEADs without a digest, a
//! registry that lies, creation templates, lifecycle rules).

mod common;

use common::proxy;

use std::path::Path;

use common::fixtures::{self, Desc, Layout};
use common::{Run, hoist, pull_back, registry_manifest, registry_tags, unique};
use proxy::{Options, Proxy, basic_auth, block_on, upstream_has_blob};
use serde_json::json;

const ECR: Options = Options {
    plain: false,
    faults: None,
    probe_503: false,
    deny: false,
    head_without_digest: false,
    templates: &[],
    lie: false,
    blob_mounting: false,
    head_without_length: false,
};

/// The Distribution registry's own answers, for controls.
const PLAIN: Options = Options { plain: true, ..ECR };

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
    assert!(!run.stderr.contains("internal error"), "{}", run.stderr);
    let dest = tempfile::tempdir().unwrap();
    pull_back(repo, &manifest.digest, &dest.path().join("pulled"));
    report
}

#[test]
fn one_patch_per_blob_carries_a_12_mib_layer_and_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    // ECR refuses parts under 5 MiB and stops advancing Range after the
    // first PATCH; a client sending 4-5 MiB chunks would fail on this layer.
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
    assert_eq!(c.later_patches, 0, "{c:?}");
    assert_eq!(
        c.manifests_put, 2,
        "the manifest by digest, then the tag: {c:?}"
    );
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
    let plain = Proxy::start(PLAIN);
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
    assert_eq!(c.later_patches, 0, "{c:?}");
}

/// What a chunked upload met: each PATCH's status, Range and body, and the
/// final PUT's status and body.
struct Chunked {
    location: String,
    patches: Vec<(u16, String, String)>,
    put: (u16, String),
}

/// How a chunked client picks the first byte of its next PATCH.
#[derive(Clone, Copy, PartialEq)]
enum Next {
    /// From the bytes it has sent (what ECR's sessions need).
    Counted,
    /// From the Range the registry answered (what many clients do).
    FromRange,
    /// Sends its first chunk again (a retry inside the session).
    Repeat,
}

/// POST, one PATCH per chunk (with Content-Range), PUT ?digest= — the OCI
/// chunked upload — through `endpoint`.
fn chunked_upload(
    endpoint: &str,
    repo: &str,
    blob: &[u8],
    chunks: &[usize],
    next: Next,
) -> Chunked {
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
        let mut sent = 0usize;
        let mut start = 0usize;
        for &len in chunks {
            let part = &blob[start..(start + len).min(blob.len())];
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
            let status = r.status().as_u16();
            let range = r
                .headers()
                .get("range")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            if let Some(l) = r.headers().get("location") {
                location = l.to_str().unwrap().to_string();
            }
            patches.push((status, range.clone(), r.text().await.unwrap()));
            sent += part.len();
            start = match next {
                Next::Counted => sent,
                Next::FromRange => range
                    .split('-')
                    .nth(1)
                    .and_then(|e| e.parse::<usize>().ok())
                    .map_or(0, |e| e + 1),
                Next::Repeat => 0,
            };
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

/// aws/containers-roadmap#2831 as its reporter corrected it: ECR keeps every
/// PATCH's data but answers every PATCH after the first with the first's
/// Range. A client counting its own bytes commits; the front answers 201
/// where the Distribution registry answers 202.
#[test]
fn the_front_keeps_later_patches_but_freezes_their_range() {
    let blob = fixtures::random_bytes(11 << 20, fixtures::fresh_seed());
    let digest = format!("sha256:{}", common::sha256_hex(&blob));
    let chunks = [(5 << 20) + 4096, (5 << 20) + 4096, 1 << 20];

    let plain = Proxy::start(PLAIN);
    let control = unique("chunked-plain");
    common::create_repository(&control, false);
    let r = chunked_upload(&plain.endpoint(), &control, &blob, &chunks, Next::Counted);
    assert!(
        r.location.starts_with(&plain.endpoint()),
        "the upstream's Location is rewritten to the proxy: {}",
        r.location
    );
    assert_eq!(
        r.patches.iter().map(|p| p.0).collect::<Vec<_>>(),
        [202, 202, 202]
    );
    assert_eq!(r.put.0, 201, "{}", r.put.1);

    let proxy = Proxy::start(ECR);
    let repo = unique("chunked-ecr");
    common::create_repository(&repo, false);
    let r = chunked_upload(&proxy.endpoint(), &repo, &blob, &chunks, Next::Counted);
    assert_eq!(
        r.patches.iter().map(|p| p.0).collect::<Vec<_>>(),
        [201, 201, 201],
        "ECR answers PATCH with 201: {:?}",
        r.patches
    );
    let first = format!("0-{}", chunks[0] - 1);
    assert!(
        r.patches.iter().all(|p| p.1 == first),
        "the Range stays where the first PATCH left it: {:?}",
        r.patches
    );
    assert_eq!(r.put.0, 201, "the data was kept: {}", r.put.1);
    assert!(upstream_has_blob(&repo, &digest));
    assert_eq!(proxy.counts().later_patches, 2);
}

/// A client that trusts the frozen Range (or retries a part inside the
/// session) is refused 416 BLOB_UPLOAD_INVALID with ECR's words; one whose
/// first part is under 5 MiB is refused when the next part comes.
#[test]
fn the_front_refuses_parts_that_do_not_follow_and_parts_too_small() {
    let blob = fixtures::random_bytes(11 << 20, fixtures::fresh_seed());
    let digest = format!("sha256:{}", common::sha256_hex(&blob));
    let proxy = Proxy::start(ECR);

    let cases: [(&str, Vec<usize>, Next, u16, String); 3] = [
        (
            "range",
            vec![(5 << 20) + 4096, (5 << 20) + 4096, 1 << 20],
            Next::FromRange,
            416,
            format!(
                "First byte of the layer part is {} instead of {}",
                (5 << 20) + 4096,
                2 * ((5 << 20) + 4096)
            ),
        ),
        (
            "repeat",
            vec![(5 << 20) + 4096, (5 << 20) + 4096],
            Next::Repeat,
            416,
            format!(
                "First byte of the layer part is 0 instead of {}",
                (5 << 20) + 4096
            ),
        ),
        (
            "small",
            vec![4 << 20, 7 << 20],
            Next::Counted,
            400,
            "LayerPartTooSmallException".into(),
        ),
    ];
    for (what, chunks, next, status, words) in cases {
        let repo = unique(&format!("chunked-{what}"));
        common::create_repository(&repo, false);
        let r = chunked_upload(&proxy.endpoint(), &repo, &blob, &chunks, next);
        let refused = r
            .patches
            .iter()
            .find(|p| p.0 != 201)
            .unwrap_or_else(|| panic!("{what}: {:?}", r.patches));
        assert_eq!(refused.0, status, "{what}: {refused:?}");
        assert!(refused.2.contains(&words), "{what}: {}", refused.2);
        if status == 416 {
            assert!(
                refused.2.contains("BLOB_UPLOAD_INVALID"),
                "{what}: {}",
                refused.2
            );
        }
        assert_ne!(
            r.put.0, 201,
            "{what}: the blob is not committed: {}",
            r.put.1
        );
        assert!(!upstream_has_blob(&repo, &digest), "{what}");
    }
    let c = proxy.counts();
    assert_eq!((c.patches_416, c.parts_too_small), (2, 1), "{c:?}");
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

/// One raw request through `endpoint`: status, headers, body.
fn raw(
    endpoint: &str,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, reqwest::header::HeaderMap, String) {
    block_on(async {
        let c = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let mut req = c.request(method, format!("{endpoint}{path}"));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        let r = req.send().await.unwrap();
        let (status, headers) = (r.status().as_u16(), r.headers().clone());
        (status, headers, r.text().await.unwrap_or_default())
    })
}

/// A pushed image (past the front) and its manifest's bytes.
fn pushed_directly(
    repo: &str,
    immutable: bool,
    extra: &[&str],
) -> (tempfile::TempDir, Desc, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 2_000);
    common::create_repository(repo, immutable);
    let mut args = vec![
        "push",
        dir.path().to_str().unwrap(),
        "--repository",
        repo,
        "-q",
    ];
    args.extend_from_slice(extra);
    hoist(&args, &[]).ok();
    let bytes = std::fs::read(l.blob_path(&m)).unwrap();
    (dir, m, bytes)
}

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// ECR answers a manifest PUT 201 without Location, and leaves
/// Docker-Content-Digest out of manifest GETs and of HEADs by digest.
#[test]
fn manifest_answers_come_without_location_and_mostly_without_digest() {
    let repo = unique("ecr-manifest-headers");
    let (_dir, m, bytes) = pushed_directly(&repo, false, &[]);
    let proxy = Proxy::start(ECR);
    let auth = basic_auth();
    let accept = OCI_MANIFEST;

    let (status, h, body) = raw(
        &proxy.endpoint(),
        reqwest::Method::PUT,
        &format!("/v2/{repo}/manifests/v1"),
        &[("Authorization", &auth), ("Content-Type", OCI_MANIFEST)],
        Some(bytes.clone()),
    );
    assert_eq!(status, 201, "{body}");
    assert!(
        h.get("location").is_none(),
        "ECR sends no Location for manifests: {h:?}"
    );

    let get = raw(
        &proxy.endpoint(),
        reqwest::Method::GET,
        &format!("/v2/{repo}/manifests/v1"),
        &[("Authorization", &auth), ("Accept", accept)],
        None,
    );
    assert_eq!(get.0, 200);
    assert!(get.1.get("docker-content-digest").is_none(), "{:?}", get.1);
    assert_eq!(get.2.as_bytes(), bytes.as_slice());
    let head_digest = raw(
        &proxy.endpoint(),
        reqwest::Method::HEAD,
        &format!("/v2/{repo}/manifests/{}", m.digest),
        &[("Authorization", &auth), ("Accept", accept)],
        None,
    );
    assert_eq!(head_digest.0, 200);
    assert!(head_digest.1.get("docker-content-digest").is_none());
    let head_tag = raw(
        &proxy.endpoint(),
        reqwest::Method::HEAD,
        &format!("/v2/{repo}/manifests/v1"),
        &[("Authorization", &auth), ("Accept", accept)],
        None,
    );
    assert_eq!(head_tag.1["docker-content-digest"], m.digest.as_str());

    // Without credentials: ECR's Basic challenge.
    let (status, h, _) = raw(&proxy.endpoint(), reqwest::Method::GET, "/v2/", &[], None);
    assert_eq!(status, 401);
    assert!(
        h["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic realm=")
    );
}

/// On an IMMUTABLE repository ECR refuses any manifest PUT to a tag that
/// exists, the same digest included; hoist's re-push of the same image
/// under the same tag passes because it never sends that PUT.
#[test]
fn immutable_tags_refuse_every_put_and_hoist_never_sends_one() {
    let repo = unique("ecr-immutable");
    let (dir, m, bytes) = pushed_directly(&repo, true, &["--tag", "v1"]);
    let proxy = Proxy::start(ECR);
    let (status, _, body) = raw(
        &proxy.endpoint(),
        reqwest::Method::PUT,
        &format!("/v2/{repo}/manifests/v1"),
        &[
            ("Authorization", &basic_auth()),
            ("Content-Type", OCI_MANIFEST),
        ],
        Some(bytes),
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("TAG_INVALID") && body.contains(&format!("The image tag 'v1' already exists in the '{repo}' repository and cannot be overwritten because the tag is immutable")), "{body}");

    let run = common::push_via(&proxy.endpoint(), dir.path(), &repo, &["--tag", "v1"]);
    let report = pushed(&run, &repo, &m);
    assert_eq!(
        report["tags"],
        json!([{ "tag": "v1", "action": "unchanged" }])
    );
    assert_eq!(
        proxy.counts().tags_refused,
        1,
        "only the raw PUT was refused"
    );
}

/// A repository ECR does not know is NAME_UNKNOWN, for every request.
#[test]
fn a_missing_repository_is_name_unknown() {
    let proxy = Proxy::start(ECR);
    let repo = unique("ecr-nowhere");
    for (method, path) in [
        (reqwest::Method::POST, format!("/v2/{repo}/blobs/uploads/")),
        (
            reqwest::Method::HEAD,
            format!("/v2/{repo}/manifests/latest"),
        ),
        (reqwest::Method::GET, format!("/v2/{repo}/tags/list")),
    ] {
        let (status, _, body) = raw(
            &proxy.endpoint(),
            method.clone(),
            &path,
            &[("Authorization", &basic_auth())],
            None,
        );
        assert_eq!(status, 404, "{method} {path}");
        if method != reqwest::Method::HEAD {
            assert!(
                body.contains("NAME_UNKNOWN")
                    && body.contains(&format!("The repository with name '{repo}' does not exist")),
                "{body}"
            );
        }
    }
    assert_eq!(proxy.counts().names_unknown, 3);
}

/// Referrer manifests (OCI 1.1 `subject`) are refused 405 by ECR
/// (containers-roadmap#2783); hoist finds one on disk and refuses before any
/// request, with exit 2.
#[test]
fn referrer_manifests_are_refused_by_ecr_and_by_hoist_up_front() {
    let repo = unique("ecr-referrer");
    let (_dir, m, _) = pushed_directly(&repo, false, &[]);
    let referrer = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a", "size": 2 },
        "layers": [],
        "subject": { "mediaType": OCI_MANIFEST, "digest": m.digest, "size": m.size }
    });
    let bytes = serde_json::to_vec(&referrer).unwrap();
    let proxy = Proxy::start(ECR);
    let (status, _, body) = raw(
        &proxy.endpoint(),
        reqwest::Method::PUT,
        &format!("/v2/{repo}/manifests/sha256:{}", common::sha256_hex(&bytes)),
        &[
            ("Authorization", &basic_auth()),
            ("Content-Type", OCI_MANIFEST),
        ],
        Some(bytes.clone()),
    );
    assert_eq!(status, 405, "{body}");

    // The same manifest as the image of a layout: refused before any request.
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    l.blob("application/vnd.oci.empty.v1+json", b"{}");
    let d = l.blob(OCI_MANIFEST, &bytes);
    l.write_index(&[(Some("sbom"), &d)]);
    let before = proxy.counts().requests;
    let run = common::push_via(&proxy.endpoint(), dir.path(), &repo, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("referrer manifest") && run.stderr.contains("hint:"),
        "{}",
        run.stderr
    );
    assert_eq!(
        proxy.counts().requests,
        before,
        "nothing reached the registry"
    );
}

/// ECR answers a blob GET with a redirect to S3; the front's S3 refuses a
/// request that carries Authorization. hoist's deploy reads the image's
/// config that way — and its credentials never reach the other host.
#[test]
fn blob_gets_redirect_to_s3_and_credentials_stay_home() {
    let repo = unique("ecr-s3");
    let (_dir, m, bytes) = pushed_directly(&repo, false, &[]);
    let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap().to_string();
    let proxy = Proxy::start(ECR);
    let auth = basic_auth();

    let (status, h, _) = raw(
        &proxy.endpoint(),
        reqwest::Method::GET,
        &format!("/v2/{repo}/blobs/{config}"),
        &[("Authorization", &auth)],
        None,
    );
    assert_eq!(status, 307);
    let location = h["location"].to_str().unwrap().to_string();
    assert!(location.starts_with(&proxy.s3), "{location}");
    let s3 = |headers: &[(&str, &str)]| {
        block_on(async {
            let mut req = reqwest::Client::builder()
                .no_proxy()
                .build()
                .unwrap()
                .get(&location);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, body) = s3(&[("Authorization", &auth)]);
    assert_eq!(status, 400);
    assert!(body.contains("Only one auth mechanism allowed"), "{body}");
    let (status, _) = s3(&[]);
    assert_eq!(status, 200);

    // hoist deploy --dry-run reads the manifest and the config through it.
    let function = common::lambda::function(&repo, &m.digest, "x86_64");
    let before = proxy.counts();
    let run = hoist(
        &[
            "deploy",
            &format!("{repo}@{}", m.digest),
            "--function",
            &function,
            "--alias",
            "live",
            "--dry-run",
            "--registry-endpoint",
            &proxy.endpoint(),
        ],
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let c = proxy.counts();
    assert!(c.blob_redirects > before.blob_redirects, "{c:?}");
    assert!(c.s3_gets > before.s3_gets, "{c:?}");
    assert_eq!(
        c.s3_authorization_refused, 1,
        "only the raw request above: {c:?}"
    );
}

/// A registry that sends no Docker-Content-Digest on any manifest HEAD
/// (ECR in 2017, google/containerregistry#10): hoist reads the tag's
/// manifest instead and still knows what it points at.
#[test]
fn heads_without_a_digest_fall_back_to_reading_the_manifest() {
    let repo = unique("ecr-no-digest");
    let (dir, m, _) = pushed_directly(&repo, true, &["--tag", "v1"]);
    let proxy = Proxy::start(Options {
        head_without_digest: true,
        ..ECR
    });
    let run = common::push_via(&proxy.endpoint(), dir.path(), &repo, &["--tag", "v1"]);
    let report = pushed(&run, &repo, &m);
    assert_eq!(
        report["tags"],
        json!([{ "tag": "v1", "action": "unchanged" }])
    );
    assert!(proxy.counts().digests_withheld >= 1);
}

/// A registry that lies about what it stored is caught: another digest for
/// a manifest PUT, another size for a blob it says it has. Exit 3, naming
/// the registry's answer.
#[test]
fn a_registry_that_lies_is_caught() {
    let proxy = Proxy::start(Options { lie: true, ..ECR });
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 3_000);
    let repo = unique("ecr-lie");
    let run = common::push_via(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository"],
    );
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains("the registry says the digest is sha256:0000000000000000000000000000000000000000000000000000000000000000, not")
            && run.stderr.contains(&m.digest),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("internal error"));

    // Another image over the same layer: the layer is there, at a size the
    // registry misstates.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.blob_path(&m)).unwrap()).unwrap();
    let layer = Desc {
        media_type: manifest["layers"][0]["mediaType"].as_str().unwrap().into(),
        digest: manifest["layers"][0]["digest"].as_str().unwrap().into(),
        size: manifest["layers"][0]["size"].as_u64().unwrap(),
    };
    let other = l.image(std::slice::from_ref(&layer), "arm64");
    l.write_index(&[(Some("other"), &other)]);
    let run = common::push_via(&proxy.endpoint(), dir.path(), &repo, &[]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "at {} bytes, but the image says {}",
            layer.size + 1,
            layer.size
        )),
        "{}",
        run.stderr
    );
}

const TEMPLATED: &[proxy::Template] = &[proxy::Template {
    prefix: "hoist-template-test",
    immutable: true,
}];

/// A missing repository covered by a CREATE_ON_PUSH creation template: ECR
/// creates it on the push with the template's settings, so hoist pushes —
/// and does not create it with its own, even with --create-repository.
#[test]
fn a_creation_template_creates_the_repository_on_push() {
    let aws = &common::local().aws;
    aws.set_templates(json!([
        { "prefix": "hoist-template-test", "appliedFor": ["CREATE_ON_PUSH"], "imageTagMutability": "IMMUTABLE",
          "lifecyclePolicy": json!({ "rules": [{ "rulePriority": 1, "description": "expire untagged", "selection": { "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 1 }, "action": { "type": "expire" } }] }).to_string() },
        { "prefix": "ROOT", "appliedFor": ["PULL_THROUGH_CACHE"], "imageTagMutability": "MUTABLE" }
    ]));
    let proxy = Proxy::start(Options {
        templates: TEMPLATED,
        ..ECR
    });
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 2_000);
    let repo = format!("hoist-template-test/{}", unique("app"));
    let run = common::push_via_logged(
        &proxy.endpoint(),
        dir.path(),
        &repo,
        &["--create-repository"],
    );
    let report = pushed(&run, &repo, &m);
    assert!(
        run.stderr.contains(&format!("repository {repo} does not exist: ECR creates it on the push, with the settings of the creation template for prefix 'hoist-template-test'")),
        "{}",
        run.stderr
    );
    assert_eq!(report["repository_template"], "hoist-template-test");
    assert_eq!(proxy.counts().created_from_template, 1);
    assert!(
        !aws.calls()
            .iter()
            .any(|c| c.operation == "CreateRepository"),
        "hoist did not create it with its own settings"
    );
    // The template's lifecycle rule expires untagged images: pushing by
    // digest only was warned about.
    assert!(
        run.stderr
            .contains("rule 1 (\"expire untagged\") expires untagged images 1 days after the push"),
        "{}",
        run.stderr
    );

    // Not covered by a CREATE_ON_PUSH template (ROOT is for pull-through
    // cache only): refused, naming the way out.
    let other = unique("ecr-untemplated");
    let run = common::push_via(&proxy.endpoint(), dir.path(), &other, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("does not exist") && run.stderr.contains("CREATE_ON_PUSH"),
        "{}",
        run.stderr
    );
}

/// Pushing by digest only into a repository whose lifecycle policy expires
/// untagged images warns, naming the rule; with a tag it does not.
#[test]
fn digest_only_pushes_into_expiring_repositories_are_warned_about() {
    let repo = unique("ecr-lifecycle");
    common::create_repository(&repo, false);
    let policy = json!({ "rules": [{ "rulePriority": 7, "description": "untagged go after 3 days",
        "selection": { "tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days", "countNumber": 3 },
        "action": { "type": "expire" } }] });
    common::ecr(async |c| {
        c.put_lifecycle_policy()
            .repository_name(&repo)
            .lifecycle_policy_text(policy.to_string())
            .send()
            .await
            .expect("moto takes the policy");
    });
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 2_000);
    let warning =
        "rule 7 (\"untagged go after 3 days\") expires untagged images 3 days after the push";
    let run = common::push_logged(dir.path(), &repo, &[]);
    run.ok();
    assert!(
        run.stderr.contains(warning) && run.stderr.contains("--tag"),
        "{}",
        run.stderr
    );
    let run = common::push_logged(dir.path(), &repo, &["--tag", "v1"]);
    run.ok();
    assert!(!run.stderr.contains("expires untagged"), "{}", run.stderr);
    assert_eq!(run.json()["digest"], m.digest);
}

#[test]
fn templates_pick_the_longest_prefix_then_root() {
    use proxy::{Template, template_for};
    const T: &[Template] = &[
        Template {
            prefix: "team",
            immutable: false,
        },
        Template {
            prefix: "team/svc",
            immutable: true,
        },
        Template {
            prefix: "ROOT",
            immutable: true,
        },
    ];
    assert_eq!(template_for(T, "team/svc/app").unwrap().prefix, "team/svc");
    assert_eq!(template_for(T, "team/app").unwrap().prefix, "team");
    assert_eq!(template_for(T, "teamwork").unwrap().prefix, "ROOT");
    assert!(template_for(&T[..2], "other").is_none());
}

/// Without ecr:DescribeRepositoryCreationTemplates hoist cannot see a
/// template: a missing repository is refused with the permission named,
/// and `--create-repository` creates it with hoist's settings — saying a
/// template it could not see was not applied.
#[test]
fn unreadable_creation_templates_are_said_and_never_guessed() {
    let aws = &common::local().aws;
    aws.set_templates(json!("AccessDenied"));
    let dir = tempfile::tempdir().unwrap();
    let (_, m) = Layout::simple(dir.path(), 1, 2_000);
    let repo = unique("ecr-no-templates");
    let run = common::push(dir.path(), &repo, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("does not exist")
            && run
                .stderr
                .contains("ecr:DescribeRepositoryCreationTemplates"),
        "{}",
        run.stderr
    );
    assert!(!common::repository_exists(&repo), "nothing was created");

    let run = common::push_logged(dir.path(), &repo, &["--create-repository"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["digest"], m.digest);
    assert!(
        run.stderr
            .contains("will be created with hoist's settings, not a creation template's"),
        "{}",
        run.stderr
    );
    assert!(common::repository_exists(&repo));
}

/// A blob HEAD answered 200 without Content-Length says "present" without
/// a size to check against the image: hoist uploads the blob again rather
/// than trust it (bytes, never a wrong image).
#[test]
fn a_present_blob_without_a_size_is_uploaded_again() {
    let dir = tempfile::tempdir().unwrap();
    let (l, m) = Layout::simple(dir.path(), 1, 3_000);
    let repo = unique("ecr-nolength");
    let first = common::push_logged(dir.path(), &repo, &["--create-repository"]);
    assert_eq!(first.code, 0, "{}", first.stderr);
    // Another image over the same layer: its blob is in the repository.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.blob_path(&m)).unwrap()).unwrap();
    let layer = Desc {
        media_type: manifest["layers"][0]["mediaType"].as_str().unwrap().into(),
        digest: manifest["layers"][0]["digest"].as_str().unwrap().into(),
        size: manifest["layers"][0]["size"].as_u64().unwrap(),
    };
    let other = l.image(std::slice::from_ref(&layer), "arm64");
    l.write_index(&[(Some("other"), &other)]);
    let proxy = Proxy::start(Options {
        head_without_length: true,
        ..ECR
    });
    let again = common::push_via_logged(&proxy.endpoint(), dir.path(), &repo, &[]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    let report = again.json();
    assert_eq!(report["digest"], other.digest);
    assert_eq!(
        report["blobs"]["present"], 0,
        "nothing taken on trust: {report}"
    );
    assert_eq!(report["blobs"]["uploaded"], 2, "{report}");
}
