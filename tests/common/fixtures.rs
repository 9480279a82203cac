//! Images to push: OCI layouts generated here (any shape, including broken
//! ones), and images made by real producers — buildah builds daemonlessly
//! (FROM scratch), skopeo converts between layout, OCI archive and docker
//! save archive.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

#[derive(Clone, Debug)]
pub struct Desc {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

impl Desc {
    pub fn json(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.size })
    }

    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap()
    }
}

/// Deterministic pseudo-random bytes (xorshift): incompressible, and a new
/// seed gives blobs no other test has pushed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn fresh_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        ^ ((std::process::id() as u64) << 32)
}

/// A gzip tar holding one file: a real layer.
pub fn layer_tar_gz(content: &[u8]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(content.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "data.bin", content).unwrap();
    let raw = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap()
}

pub struct Layout {
    pub dir: PathBuf,
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    pub fn blob(&self, media_type: &str, bytes: &[u8]) -> Desc {
        let hex = super::sha256_hex(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&hex), bytes).unwrap();
        Desc {
            media_type: media_type.into(),
            digest: format!("sha256:{hex}"),
            size: bytes.len() as u64,
        }
    }

    pub fn blob_path(&self, d: &Desc) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// A layer of `size` random bytes (gzip tar).
    pub fn layer(&self, size: usize, seed: u64) -> Desc {
        self.blob(
            "application/vnd.oci.image.layer.v1.tar+gzip",
            &layer_tar_gz(&random_bytes(size, seed)),
        )
    }

    /// An image manifest (and its config) for `arch` over `layers`.
    pub fn image(&self, layers: &[Desc], arch: &str) -> Desc {
        let config = json!({
            "architecture": arch, "os": "linux",
            "config": { "Cmd": ["/hello"] },
            "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.clone()).collect::<Vec<_>>() },
        });
        self.image_with_config(config, layers)
    }

    /// An image manifest with a config of the test's own making.
    pub fn image_with_config(&self, config: serde_json::Value, layers: &[Desc]) -> Desc {
        let config = self.blob(
            "application/vnd.oci.image.config.v1+json",
            &serde_json::to_vec(&config).unwrap(),
        );
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config.json(),
            "layers": layers.iter().map(Desc::json).collect::<Vec<_>>(),
        });
        self.blob(
            "application/vnd.oci.image.manifest.v1+json",
            &serde_json::to_vec_pretty(&manifest).unwrap(),
        )
    }

    /// An image index over (manifest, arch) pairs.
    pub fn index(&self, manifests: &[(Desc, &str)]) -> Desc {
        let index = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests.iter().map(|(d, arch)| {
                let mut j = d.json();
                j["platform"] = json!({ "os": "linux", "architecture": arch });
                j
            }).collect::<Vec<_>>(),
        });
        self.blob(
            "application/vnd.oci.image.index.v1+json",
            &serde_json::to_vec(&index).unwrap(),
        )
    }

    /// index.json naming these entries (with a ref name when given).
    pub fn write_index(&self, entries: &[(Option<&str>, &Desc)]) {
        let manifests: Vec<_> = entries
            .iter()
            .map(|(name, d)| {
                let mut j = d.json();
                if let Some(n) = name {
                    j["annotations"] = json!({ "org.opencontainers.image.ref.name": n });
                }
                j
            })
            .collect();
        std::fs::write(
            self.dir.join("index.json"),
            serde_json::to_vec(&json!({ "schemaVersion": 2, "manifests": manifests })).unwrap(),
        )
        .unwrap();
    }

    /// A one-image layout with `layers` random layers of `size` bytes each.
    pub fn simple(dir: &Path, layers: usize, size: usize) -> (Layout, Desc) {
        let l = Layout::new(dir);
        let seed = fresh_seed();
        let ls: Vec<Desc> = (0..layers)
            .map(|i| l.layer(size, seed + i as u64))
            .collect();
        let m = l.image(&ls, "amd64");
        l.write_index(&[(Some("latest"), &m)]);
        (l, m)
    }
}

pub fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// buildah with storage of its own under `work`, so parallel tests do not
/// share (or lock) one store.
pub fn buildah(work: &Path) -> Command {
    let mut c = Command::new("buildah");
    c.arg("--root")
        .arg(work.join("storage"))
        .arg("--runroot")
        .arg(work.join("run"))
        .args(["--storage-driver", "vfs"]);
    c
}

/// Build a small FROM scratch image for `arch` with buildah; returns its name
/// in buildah's storage under `work`.
pub fn buildah_build(work: &Path, arch: &str) -> String {
    let ctx = work.join(format!("ctx-{arch}"));
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("hello"), format!("hello from {arch}\n")).unwrap();
    std::fs::write(ctx.join("data.bin"), random_bytes(200_000, fresh_seed())).unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY hello /hello\nCOPY data.bin /data.bin\nCMD [\"/hello\"]\n",
    )
    .unwrap();
    let name = format!("localhost/hoist-test-{arch}:latest");
    run(
        buildah(work)
            .args([
                "bud",
                "--isolation",
                "chroot",
                "--arch",
                arch,
                "-q",
                "-t",
                &name,
            ])
            .arg(&ctx),
        "buildah bud",
    );
    name
}

/// An OCI layout written by `buildah push … oci:DIR:latest`.
pub fn buildah_layout(work: &Path) -> PathBuf {
    let name = buildah_build(work, "amd64");
    let dest = work.join("oci");
    run(
        buildah(work)
            .args(["push", "-q", &name])
            .arg(format!("oci:{}:latest", dest.display())),
        "buildah push",
    );
    dest
}

/// A two-platform index (amd64 + arm64) written by `buildah manifest push
/// --all` into an OCI layout (which then holds a nested index, as buildx's).
pub fn buildah_index(work: &Path) -> PathBuf {
    let amd = buildah_build(work, "amd64");
    let arm = buildah_build(work, "arm64");
    let list = "localhost/hoist-test-list:latest";
    run(
        buildah(work).args(["manifest", "create", list]),
        "buildah manifest create",
    );
    run(
        buildah(work).args(["manifest", "add", list, &amd]),
        "buildah manifest add",
    );
    run(
        buildah(work).args(["manifest", "add", list, &arm]),
        "buildah manifest add",
    );
    let dest = work.join("oci-index");
    run(
        buildah(work)
            .args(["manifest", "push", "-q", "--all", list])
            .arg(format!("oci:{}:latest", dest.display())),
        "buildah manifest push",
    );
    dest
}

/// `skopeo copy SRC DST` (e.g. to `oci-archive:` or `docker-archive:`).
pub fn skopeo_copy(src: &str, dst: &str) {
    run(
        Command::new("skopeo").args(["copy", "-q", src, dst]),
        "skopeo copy",
    );
}

/// The OCI layout `layout` (ref `latest`) as a `docker save` archive in `work`.
pub fn docker_archive(work: &Path, layout: &Path) -> PathBuf {
    let archive = work.join("image.docker.tar");
    skopeo_copy(
        &format!("oci:{}:latest", layout.display()),
        &format!("docker-archive:{}:app:v1", archive.display()),
    );
    archive
}

pub fn gzip(path: &Path) -> PathBuf {
    let out = path.with_extension(format!(
        "{}.gz",
        path.extension().and_then(|e| e.to_str()).unwrap_or("tar")
    ));
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(&out).unwrap(),
        flate2::Compression::fast(),
    );
    std::io::copy(&mut std::fs::File::open(path).unwrap(), &mut gz).unwrap();
    gz.finish().unwrap();
    out
}
