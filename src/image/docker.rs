//! `docker save` archives (also kaniko `--tar-path`, nix dockerTools):
//! manifest.json naming a config file and layer tars. There is no registry
//! manifest in them; hoist writes one after the layers are compressed.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::store::{Region, Store};
use super::{
    Blob, Compression, DOCKER_CONFIG, Digest, DockerImage, DockerLayer, ImageError,
    MAX_DESCRIPTORS, Platform, check_name, check_platform,
};

/// A config larger than this is not a config.
const MAX_CONFIG: u64 = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    variant: Option<String>,
    rootfs: RootFs,
}

#[derive(Deserialize)]
struct RootFs {
    diff_ids: Vec<String>,
}

pub fn open(
    store: &Store,
    shown: &str,
    reference: Option<&str>,
) -> Result<DockerImage, ImageError> {
    let entries = read_entries(store, shown)?;
    let entry = choose(&entries, reference, shown)?;
    let config_name = clean(&entry.config)?;
    let (config_region, config_bytes) = read_config(store, &config_name)?;
    let config: Config = serde_json::from_slice(&config_bytes).map_err(|e| ImageError::Json {
        what: format!("config {config_name}"),
        source: e,
    })?;
    check_layer_count(entry, &config, &config_name)?;
    let layers = read_layers(store, entry, &config, &config_name)?;
    let platform = platform_of(config);
    if let Some(p) = &platform {
        check_platform(p, &format!("config {config_name}"))?;
    }
    let config = Blob {
        digest: Digest::of(&config_bytes),
        size: config_bytes.len() as u64,
        media_type: DOCKER_CONFIG.into(),
        region: config_region,
    };
    Ok(DockerImage {
        config,
        layers,
        platform,
    })
}

/// The entries of manifest.json, each checked for what a message may print.
fn read_entries(store: &Store, shown: &str) -> Result<Vec<Entry>, ImageError> {
    let bytes = store
        .read("manifest.json", super::MAX_MANIFEST)?
        .ok_or_else(|| ImageError::UnknownFormat {
            path: shown.to_string(),
            reason: "manifest.json is missing".into(),
        })?;
    let entries: Vec<Entry> = serde_json::from_slice(&bytes).map_err(|e| ImageError::Json {
        what: "manifest.json".into(),
        source: e,
    })?;
    // Every entry may be listed in a message: check what would be printed.
    for (i, e) in entries.iter().enumerate() {
        let what = format!("entry {} of manifest.json", i + 1);
        for t in e.repo_tags.iter().flatten() {
            check_name(t, "a RepoTag", &what)?;
        }
        clean(&e.config)?;
    }
    Ok(entries)
}

/// The entry `reference` names (a whole RepoTag or its tag), or the only
/// one when there is no reference.
fn choose<'a>(
    entries: &'a [Entry],
    reference: Option<&str>,
    shown: &str,
) -> Result<&'a Entry, ImageError> {
    match (reference, entries) {
        (_, []) => Err(ImageError::Malformed {
            what: "manifest.json".into(),
            reason: "it lists no images".into(),
        }),
        (None, [one]) => Ok(one),
        (None, _) => Err(ImageError::RefNeeded {
            source_path: shown.into(),
            entries: listed(entries),
        }),
        (Some(wanted), _) => {
            let hit = |t: &String| {
                t == wanted || t.rsplit_once(':').is_some_and(|(_, tag)| tag == wanted)
            };
            entries
                .iter()
                .find(|e| e.repo_tags.iter().flatten().any(hit))
                .ok_or_else(|| ImageError::RefNotFound {
                    source_path: shown.into(),
                    wanted: wanted.into(),
                    entries: listed(entries),
                })
        }
    }
}

/// One line per entry, for the hint of a missing or unknown reference.
fn listed(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e.repo_tags.as_deref() {
            Some([first, ..]) => format!("--ref {first} ({} layers)", e.layers.len()),
            _ => format!("(untagged) config {}", e.config),
        })
        .collect()
}

/// The config file's region and its bytes.
fn read_config(store: &Store, config_name: &str) -> Result<(Region, Vec<u8>), ImageError> {
    let region = store
        .region(config_name)?
        .ok_or_else(|| ImageError::MissingFile {
            what: format!("config {config_name}"),
            referenced_by: "manifest.json".into(),
        })?;
    let bytes = region.read_all(MAX_CONFIG, config_name)?;
    Ok((region, bytes))
}

/// The entry must list no more layers than a manifest may hold, and as many
/// as its config has diff_ids.
fn check_layer_count(entry: &Entry, config: &Config, config_name: &str) -> Result<(), ImageError> {
    // The config and each layer are descriptors of the manifest hoist
    // writes: a manifest.json listing one layer 10,000 times once made
    // 10,001 uploads (issue 12).
    if 1 + entry.layers.len() > MAX_DESCRIPTORS {
        return Err(ImageError::TooManyDescriptors {
            what: format!("the image of config {config_name}"),
            limit: MAX_DESCRIPTORS,
        });
    }
    if config.rootfs.diff_ids.len() != entry.layers.len() {
        return Err(ImageError::Malformed {
            what: format!("config {config_name}"),
            reason: format!(
                "it lists {} diff_ids for {} layers in manifest.json",
                config.rootfs.diff_ids.len(),
                entry.layers.len()
            ),
        });
    }
    Ok(())
}

/// The entry's layers, in order, each paired with its diff_id.
fn read_layers(
    store: &Store,
    entry: &Entry,
    config: &Config,
    config_name: &str,
) -> Result<Vec<DockerLayer>, ImageError> {
    let mut layers: Vec<DockerLayer> = Vec::with_capacity(entry.layers.len());
    // A layer listed again is looked at once.
    let mut seen: HashMap<(&str, &str), usize> = HashMap::new();
    for (raw_name, raw_diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        if let Some(&i) = seen.get(&(raw_name.as_str(), raw_diff_id.as_str())) {
            layers.push(layers[i].clone());
            continue;
        }
        seen.insert((raw_name, raw_diff_id), layers.len());
        layers.push(read_layer(store, raw_name, raw_diff_id, config_name)?);
    }
    Ok(layers)
}

fn read_layer(
    store: &Store,
    raw_name: &str,
    raw_diff_id: &str,
    config_name: &str,
) -> Result<DockerLayer, ImageError> {
    let name = clean(raw_name)?;
    let region = store
        .region(&name)?
        .ok_or_else(|| ImageError::MissingFile {
            what: format!("layer {name}"),
            referenced_by: "manifest.json".into(),
        })?;
    let diff_id: Digest = raw_diff_id.parse().map_err(|e| ImageError::Digest {
        what: format!("config {config_name} (rootfs.diff_ids)"),
        source: e,
    })?;
    let mut magic = [0u8; 4];
    let n = region
        .open()
        .and_then(|mut r| super::read_up_to(&mut r, &mut magic))
        .map_err(|e| ImageError::Read {
            what: name.clone(),
            source: e,
        })?;
    let compression = compression_of(&magic[..n]);
    if compression == Compression::Zstd {
        return Err(ImageError::Unsupported {
            what: format!("layer {name}"),
            reason: "zstd layers are not accepted by Lambda; export the image with gzip or uncompressed layers".into(),
        });
    }
    Ok(DockerLayer {
        name,
        region,
        diff_id,
        compression,
    })
}

/// How a layer file is compressed, from its first bytes.
fn compression_of(magic: &[u8]) -> Compression {
    match magic {
        [0x1f, 0x8b, ..] => Compression::Gzip,
        [0x28, 0xb5, 0x2f, 0xfd] => Compression::Zstd,
        _ => Compression::None,
    }
}

/// The config's platform, when it names both an OS and an architecture.
fn platform_of(config: Config) -> Option<Platform> {
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    match (nonempty(config.os), nonempty(config.architecture)) {
        (Some(os), Some(architecture)) => Some(Platform {
            os,
            architecture,
            variant: nonempty(config.variant),
        }),
        _ => None,
    }
}

/// manifest.json names files relative to the archive's root; a name that
/// climbs out of it is refused, and so is one that could not be printed.
fn clean(name: &str) -> Result<String, ImageError> {
    if name.chars().any(char::is_control) || name.len() > 4096 {
        return Err(ImageError::BadText {
            field: "a file name".into(),
            what: "manifest.json".into(),
            shown: crate::text::external(name, 80),
            why: "names of files in the archive are printable text",
        });
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            std::path::Component::Normal(s) => parts.push(s.to_str().unwrap_or_default()),
            std::path::Component::CurDir => {}
            _ => {
                return Err(ImageError::Escapes {
                    path: name.to_string(),
                    target: "outside the archive".into(),
                });
            }
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(config: &str, tags: Option<&[&str]>) -> Entry {
        Entry {
            config: config.into(),
            repo_tags: tags.map(|t| t.iter().map(|s| s.to_string()).collect()),
            layers: vec!["l.tar".into()],
        }
    }

    #[test]
    fn the_reference_chooses_the_entry() {
        let entries = [
            entry("a.json", Some(&["app:1", "app:latest"])),
            entry("b.json", Some(&["registry:5000/other:2"])),
            entry("c.json", None),
        ];
        let one = [entry("a.json", None)];
        // (entries, reference, the chosen entry's config or the error)
        let no_images = "manifest.json is malformed: it lists no images";
        let table: [(&[Entry], Option<&str>, &str); 7] = [
            (&[], None, no_images),
            (&[], Some("app:1"), no_images),
            (&one, None, "a.json"),
            (
                &entries,
                None,
                "x holds 3 images; say which one to push with --ref",
            ),
            (&entries, Some("app:latest"), "a.json"),
            (&entries, Some("2"), "b.json"),
            (
                &entries,
                Some("registry:5000"),
                "x has no image named 'registry:5000'",
            ),
        ];
        for (entries, reference, want) in table {
            let got = match choose(entries, reference, "x") {
                Ok(e) => e.config.clone(),
                Err(e) => e.to_string(),
            };
            assert_eq!(got, want, "{reference:?}");
        }
    }

    #[test]
    fn compression_from_the_first_bytes() {
        let table: [(&[u8], Compression); 5] = [
            (&[0x1f, 0x8b, 8, 0], Compression::Gzip),
            (&[0x1f, 0x8b], Compression::Gzip),
            (&[0x28, 0xb5, 0x2f, 0xfd], Compression::Zstd),
            (&[0x28, 0xb5, 0x2f], Compression::None),
            (b"", Compression::None),
        ];
        for (magic, want) in table {
            assert_eq!(compression_of(magic), want, "{magic:?}");
        }
    }
}
