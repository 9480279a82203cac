//! Images on disk built to make hoist do too much (issue 12): nested and
//! repeated indexes, a layer listed again and again, gzip bombs, a signal
//! while a gzip archive is being decompressed, a gzip layer that does not
//! match its config, a re-push that should upload nothing. Each one is
//! pushed through a proxy that records the requests the registry saw, and
//! hoist's peak memory is measured while it runs.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::fixtures::{self, Desc, Layout};
use common::proxy::Proxy;
use common::{Run, local, registry_manifest, sha256_hex, unique};
use serde_json::json;

/// A generous ceiling on hoist's peak resident memory: a bound, not a
/// measurement of how lean it is.
const MAX_RSS_MIB: u64 = 200;

/// A relay in front of a proxy that records every request (method, path and
/// query) the registry is sent.
struct Recorder {
    log: Arc<Mutex<Vec<(String, String)>>>,
    _server: common::server::Running,
    addr: std::net::SocketAddr,
}

impl Recorder {
    fn start(target: &Proxy) -> Recorder {
        let log: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let target = target.endpoint();
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let record = log.clone();
        let server = common::server::serve(move |req| {
            let (log, client, target) = (record.clone(), client.clone(), target.clone());
            async move {
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                log.lock()
                    .unwrap()
                    .push((req.method().to_string(), path.clone()));
                let res = common::server::relay(&client, &format!("{target}{path}"), req).await?;
                let status = res.status().as_u16();
                // hoist takes only the path and query of a Location.
                Ok(common::server::answer(res, status, |l| l.to_string()))
            }
        });
        Recorder {
            log,
            addr: server.addr,
            _server: server,
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<(String, String)> {
        self.log.lock().unwrap().clone()
    }

    /// How many requests had this method and a path (query left out) that
    /// ends with `tail`.
    fn count(&self, method: &str, tail: &str) -> usize {
        self.requests()
            .iter()
            .filter(|(m, p)| m == method && p.split('?').next().unwrap_or("").ends_with(tail))
            .count()
    }
}

/// hoist with the test environment and `extra`, with its peak resident
/// memory in MiB; it must stop by itself within five minutes.
fn measured(args: &[&str], extra: &[(&str, &str)]) -> (Run, u64) {
    common::hoist_measured(args, extra, std::time::Duration::from_secs(300))
}

/// The hoist command with the test environment, PATH and HOME, and `extra`.
fn command(args: &[&str], extra: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hoist"));
    cmd.args(args).env_clear().stdin(Stdio::null());
    for k in ["PATH", "HOME", "TMPDIR"] {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.envs(&local().vars);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd
}

fn push_args<'a>(source: &'a Path, repo: &'a str, endpoint: &'a str) -> Vec<&'a str> {
    vec![
        "push",
        source.to_str().unwrap(),
        "--repository",
        repo,
        "--registry-endpoint",
        endpoint,
        "--output",
        "json",
        "-q",
    ]
}

/// An index over `child` listed `times` times.
fn index_of(l: &Layout, child: &Desc, times: usize) -> Desc {
    let entries: Vec<_> = (0..times)
        .map(|_| {
            let mut j = child.json();
            j["platform"] = json!({ "os": "linux", "architecture": "amd64" });
            j
        })
        .collect();
    l.blob(
        "application/vnd.oci.image.index.v1+json",
        &serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        }))
        .unwrap(),
    )
}

#[test]
fn nested_repeated_indexes_are_opened_and_pushed_once_per_digest() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let seed = fixtures::fresh_seed();
    let layers = [l.layer(3000, seed), l.layer(3000, seed + 1)];
    let image = l.image(&layers, "amd64");
    // 20 repeats at each of 3 levels: 8,000 paths to one image.
    let i1 = index_of(&l, &image, 20);
    let i2 = index_of(&l, &i1, 20);
    let i3 = index_of(&l, &i2, 20);
    l.write_index(&[(None, &i3)]);

    let proxy = Proxy::start(Default::default());
    let rec = Recorder::start(&proxy);
    let repo = unique("fanout");
    let endpoint = rec.endpoint();
    let mut args = push_args(dir.path(), &repo, &endpoint);
    args.extend(["--create-repository", "--tag", "v1"]);
    let (run, rss) = measured(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
    assert_eq!(run.json()["digest"], i3.digest.as_str());

    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(l.blob_path(&image)).unwrap()).unwrap();
    let config = config["config"]["digest"].as_str().unwrap().to_string();
    for blob in [&layers[0].digest, &layers[1].digest, &config] {
        assert_eq!(rec.count("HEAD", &format!("/blobs/{blob}")), 1, "{blob}");
        let committed = rec
            .requests()
            .iter()
            .filter(|(m, p)| {
                m == "PUT" && p.contains(&format!("digest={}", blob.replace(':', "%3A")))
            })
            .count();
        assert_eq!(committed, 1, "{blob} committed once");
    }
    assert_eq!(rec.count("PATCH", ""), 3, "three blobs, three uploads");
    for m in [&image.digest, &i1.digest, &i2.digest, &i3.digest] {
        assert_eq!(rec.count("HEAD", &format!("/manifests/{m}")), 1, "{m}");
        assert_eq!(rec.count("PUT", &format!("/manifests/{m}")), 1, "{m}");
        assert!(
            registry_manifest(&repo, m).is_some(),
            "{m} is in the registry"
        );
    }
    assert_eq!(rec.count("PUT", "/manifests/v1"), 1);
    let total = rec.requests().len();
    assert!(
        total < 40,
        "{total} requests for 4 manifests and 3 blobs: {:#?}",
        rec.requests()
    );
}

#[test]
fn more_descriptors_than_the_cap_are_refused_before_anything_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let l = Layout::new(dir.path());
    let image = l.image(&[l.layer(100, fixtures::fresh_seed())], "amd64");
    let index = index_of(&l, &image, 10_001);
    l.write_index(&[(None, &index)]);
    let proxy = Proxy::start(Default::default());
    let repo = unique("cap");
    let endpoint = proxy.endpoint();
    let mut args = push_args(dir.path(), &repo, &endpoint);
    args.extend(["--create-repository", "--tag", "v1"]);
    let (run, rss) = measured(&args, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("lists more than 10000 descriptors"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hint:"), "{}", run.stderr);
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
    assert_eq!(proxy.counts().requests, 0, "the registry saw nothing");
}

/// A tar holding one file: an uncompressed layer.
fn layer_tar(content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "data.bin", content).unwrap();
    tar.into_inner().unwrap()
}

/// A `docker save` archive: `files` (name, bytes) as layers, manifest.json
/// listing `layers` (names) and a config whose diff_ids are `diff_ids`.
fn docker_archive(
    path: &Path,
    files: &[(&str, &[u8])],
    layers: &[&str],
    diff_ids: &[String],
) -> String {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/hello"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    }))
    .unwrap();
    let config_name = format!("{}.json", sha256_hex(&config));
    let manifest = serde_json::to_vec(&json!([
        { "Config": config_name, "RepoTags": ["app:v1"], "Layers": layers }
    ]))
    .unwrap();
    let mut tar = tar::Builder::new(std::fs::File::create(path).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, name, data).unwrap();
    };
    for (name, data) in files {
        add(name, data);
    }
    add(&config_name, &config);
    add("manifest.json", &manifest);
    tar.finish().unwrap();
    format!("sha256:{}", sha256_hex(&config))
}

#[test]
fn a_docker_layer_listed_many_times_is_uploaded_once() {
    let dir = tempfile::tempdir().unwrap();
    let layer = layer_tar(&fixtures::random_bytes(50_000, fixtures::fresh_seed()));
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let archive = dir.path().join("repeated.tar");
    let names = vec!["l1/layer.tar"; 500];
    docker_archive(
        &archive,
        &[("l1/layer.tar", &layer)],
        &names,
        &vec![diff_id; 500],
    );
    let proxy = Proxy::start(Default::default());
    let rec = Recorder::start(&proxy);
    let repo = unique("dockerrepeat");
    let endpoint = rec.endpoint();
    let mut args = push_args(&archive, &repo, &endpoint);
    args.extend(["--create-repository"]);
    let (run, rss) = measured(&args, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
    let report = run.json();
    assert_eq!(
        report["blobs"]["uploaded"], 2,
        "config and one layer: {report}"
    );
    assert_eq!(rec.count("PATCH", ""), 2);
    let manifest: serde_json::Value = serde_json::from_slice(
        &registry_manifest(&repo, report["digest"].as_str().unwrap()).unwrap(),
    )
    .unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 500, "the image still has its 500 layers");
    assert!(layers.iter().all(|l| l["digest"] == layers[0]["digest"]));
}

#[test]
fn a_gzip_layer_that_does_not_match_its_diff_id_is_never_committed() {
    let dir = tempfile::tempdir().unwrap();
    let raw = layer_tar(&fixtures::random_bytes(300_000, fixtures::fresh_seed()));
    let gz = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&raw).unwrap();
        e.finish().unwrap()
    };
    let gz_digest = format!("sha256:{}", sha256_hex(&gz));
    let bad = dir.path().join("bad.tar");
    let other = format!("sha256:{}", sha256_hex(b"another layer"));
    docker_archive(&bad, &[("l/layer.tar", &gz)], &["l/layer.tar"], &[other]);

    let proxy = Proxy::start(Default::default());
    let repo = unique("gzdiff");
    let endpoint = proxy.endpoint();
    let mut args = push_args(&bad, &repo, &endpoint);
    args.extend(["--create-repository", "--tag", "v1"]);
    let (run, _) = measured(&args, &[]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("decompressed, vs. the config's diff_id"),
        "{}",
        run.stderr
    );
    assert_eq!(proxy.counts().manifests_put, 0, "no manifest was pushed");
    assert!(
        !common::proxy::upstream_has_blob(&repo, &gz_digest),
        "the layer's upload was aborted before its final PUT"
    );

    // The same layer with the right diff_id is pushed, and pulls back whole.
    let good = dir.path().join("good.tar");
    docker_archive(
        &good,
        &[("l/layer.tar", &gz)],
        &["l/layer.tar"],
        &[format!("sha256:{}", sha256_hex(&raw))],
    );
    let run = common::push_via(&endpoint, &good, &repo, &["--tag", "v1"]);
    run.ok();
    let report = run.json();
    assert!(common::proxy::upstream_has_blob(&repo, &gz_digest));
    let pulled = tempfile::tempdir().unwrap();
    common::pull_back(&repo, report["digest"].as_str().unwrap(), pulled.path());
}

#[test]
fn a_docker_archive_pushed_again_under_its_tag_uploads_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let seed = fixtures::fresh_seed();
    let plain = layer_tar(&fixtures::random_bytes(200_000, seed));
    let zipped_raw = layer_tar(&fixtures::random_bytes(200_000, seed + 1));
    let zipped = {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&zipped_raw).unwrap();
        e.finish().unwrap()
    };
    let archive = dir.path().join("app.tar");
    docker_archive(
        &archive,
        &[("a/layer.tar", &plain), ("b/layer.tar", &zipped)],
        &["a/layer.tar", "b/layer.tar"],
        &[
            format!("sha256:{}", sha256_hex(&plain)),
            format!("sha256:{}", sha256_hex(&zipped_raw)),
        ],
    );
    let repo = unique("dockerrepush");
    let first_proxy = Proxy::start(Default::default());
    let first = common::push_via(
        &first_proxy.endpoint(),
        &archive,
        &repo,
        &["--create-repository", "--tag", "v1"],
    );
    first.ok();
    assert_eq!(first_proxy.counts().patches, 3);

    let proxy = Proxy::start(Default::default());
    let again = common::push_via(&proxy.endpoint(), &archive, &repo, &["--tag", "v1"]);
    again.ok();
    let (a, b) = (first.json(), again.json());
    assert_eq!(a["digest"], b["digest"], "same archive, same digest");
    assert_eq!(b["blobs"]["uploaded"], 0, "{b}");
    assert_eq!(b["tags"][0]["action"], "unchanged");
    assert_eq!(proxy.counts().patches, 0, "nothing was uploaded");
    assert_eq!(proxy.counts().manifests_put, 0, "nothing was written");
}

/// A gzip file that decompresses to a tar holding `entry` (a header and the
/// data it declares, `declared` bytes of zeros, of which `written` are
/// there), then `trailing` bytes of zeros: written in gzip members of 8 MiB
/// of zeros each, so a 10 GiB stream costs the test one compression of
/// 8 MiB and 10 MB of disk, never 10 GiB in memory.
fn zero_bomb(path: &Path, declared: u64, written: u64, trailing: u64) {
    const BLOCK: u64 = 8 << 20;
    let member = |n: u64| {
        // Deflate's best ratio on zeros is about 1:1000.
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        let mut left = n;
        while left > 0 {
            let k = left.min(zeros.len() as u64) as usize;
            e.write_all(&zeros[..k]).unwrap();
            left -= k as u64;
        }
        e.finish().unwrap()
    };
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_path("data.bin").unwrap();
    h.set_size(declared);
    h.set_mode(0o644);
    h.set_cksum();
    out.write_all(&member_of(h.as_bytes())).unwrap();
    let full = member(BLOCK);
    let mut left = written + trailing;
    while left >= BLOCK {
        out.write_all(&full).unwrap();
        left -= BLOCK;
    }
    if left > 0 {
        out.write_all(&member(left)).unwrap();
    }
    out.flush().unwrap();
}

fn member_of(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn a_gzip_bomb_is_refused_as_soon_as_it_exceeds_its_tar() {
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // A small file, its end-of-archive marker, then 10 GiB of zeros: a
    // 10 MB file.
    let bomb = dir.path().join("bomb.tar.gz");
    zero_bomb(&bomb, 100, 512, 10 << 30);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 20 << 20);
    let proxy = Proxy::start(Default::default());
    let repo = unique("bomb");
    let endpoint = proxy.endpoint();
    let args = push_args(&bomb, &repo, &endpoint);
    let (run, rss) = measured(&args, &[("TMPDIR", tmp.path().to_str().unwrap())]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("decompresses to more than its tar archive holds"),
        "{}",
        run.stderr
    );
    assert!(rss < MAX_RSS_MIB, "peak RSS {rss} MiB");
    assert_eq!(proxy.counts().requests, 0, "the registry saw nothing");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);

    // A header that declares more than hoist copies: refused on the header.
    let big = dir.path().join("big.tar.gz");
    zero_bomb(&big, 40 << 30, 1 << 20, 0);
    let args = push_args(&big, &repo, &endpoint);
    let (run, _) = measured(&args, &[("TMPDIR", tmp.path().to_str().unwrap())]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("decompresses to more than 32.0 GiB"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("gunzip"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
}

/// The files `pid` has open whose path is under `dir` (a spool shows as
/// `DIR/#123 (deleted)` or `DIR/.tmpXXXX (deleted)`), with their sizes.
fn open_files_under(pid: u32, dir: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return vec![];
    };
    fds.flatten()
        .filter_map(|fd| {
            let target = std::fs::read_link(fd.path()).ok()?;
            if !target.starts_with(dir) {
                return None;
            }
            let size = std::fs::metadata(fd.path()).map(|m| m.len()).unwrap_or(0);
            Some((target, size))
        })
        .collect()
}

#[test]
fn sigterm_while_decompressing_leaves_nothing_in_tmpdir() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tmp_path = tmp.path().canonicalize().unwrap();
    // A member of 2 GiB: spooling it takes long enough to be caught.
    let archive = dir.path().join("large.tar.gz");
    zero_bomb(&archive, 2 << 30, 2 << 30, 1024);
    let repo = unique("sigterm");
    let proxy = Proxy::start(Default::default());
    let endpoint = proxy.endpoint();
    let args = push_args(&archive, &repo, &endpoint);
    let mut child = command(&args, &[("TMPDIR", tmp_path.to_str().unwrap())])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let started = std::time::Instant::now();
    let spooled = loop {
        let open = open_files_under(pid, &tmp_path);
        if let Some((path, size)) = open.iter().find(|(_, size)| *size > 0) {
            break (path.clone(), *size);
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "hoist ended before it was seen spooling"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "hoist never spooled into TMPDIR"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    let killed = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(15), "ended by SIGTERM: {status:?}");
    assert!(
        spooled.0.to_string_lossy().ends_with("(deleted)"),
        "the spool never had a name in TMPDIR: {spooled:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp_path).unwrap().flatten().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    assert_eq!(proxy.counts().requests, 0);
}
