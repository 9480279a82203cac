//! What Lambda will run, read from the registry's manifests: which child of
//! an index (Lambda takes single-platform images only), and the facts of that
//! image the preflight checks. Pure: bytes in, decisions out.

use serde::Deserialize;

use crate::image::Digest;

/// Lambda's two architectures, as Lambda names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    X86_64,
    Arm64,
}

impl Arch {
    /// Lambda's name.
    pub fn lambda(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Arm64 => "arm64",
        }
    }

    /// The OCI platform architecture (GOARCH) of the images it runs.
    pub fn oci(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Arm64 => "arm64",
        }
    }

    pub fn from_lambda(s: &str) -> Option<Arch> {
        match s {
            "x86_64" => Some(Arch::X86_64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

// The manifest model is the image module's, shared with the gate: one
// descriptor and platform type, one rule for what is an attestation.
pub use crate::image::manifest::{Descriptor, Parsed as Manifest, Platform};

/// The child of an index that runs on `arch` (linux only), or the platforms
/// the index does hold, for the error.
pub fn pick_child(children: &[Descriptor], arch: Arch) -> Result<Digest, Vec<String>> {
    let runnable: Vec<&Descriptor> = children.iter().filter(|d| !d.is_attestation()).collect();
    let matching = runnable.iter().find(|d| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch.oci()
                // arm64 images are v8; a v7 (32-bit) child cannot be meant.
                && (arch != Arch::Arm64 || p.variant.as_deref().is_none_or(|v| v == "v8"))
        })
    });
    match matching.and_then(|d| d.digest.parse::<Digest>().ok()) {
        Some(d) => Ok(d),
        None => Err(runnable.iter().map(|d| d.platform_name()).collect()),
    }
}

/// The parts of an image config the preflight needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub os: String,
    pub architecture: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
}

impl Config {
    pub fn parse(bytes: &[u8]) -> Result<Config, String> {
        #[derive(Deserialize, Default)]
        struct Inner {
            #[serde(rename = "Entrypoint", default)]
            entrypoint: Option<Vec<String>>,
            #[serde(rename = "Cmd", default)]
            cmd: Option<Vec<String>>,
        }
        #[derive(Deserialize)]
        struct Outer {
            #[serde(default)]
            os: String,
            #[serde(default)]
            architecture: String,
            #[serde(default)]
            config: Option<Inner>,
        }
        let o: Outer = serde_json::from_slice(bytes)
            .map_err(|e| format!("the image config is not valid JSON: {e}"))?;
        let inner = o.config.unwrap_or_default();
        Ok(Config {
            os: o.os,
            architecture: o.architecture,
            entrypoint: inner.entrypoint.unwrap_or_default(),
            cmd: inner.cmd.unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    fn child(n: u8, os: &str, arch: &str, variant: Option<&str>, attestation: bool) -> Descriptor {
        let mut v = json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": d(n), "size": 500,
            "platform": { "os": os, "architecture": arch },
        });
        if let Some(var) = variant {
            v["platform"]["variant"] = json!(var);
        }
        if attestation {
            v["annotations"] = json!({ "vnd.docker.reference.type": "attestation-manifest", "vnd.docker.reference.digest": d(1) });
        }
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn picks_the_child_for_the_functions_architecture() {
        let buildx = vec![
            child(1, "linux", "amd64", None, false),
            child(2, "linux", "arm64", Some("v8"), false),
            child(3, "unknown", "unknown", None, true),
            child(4, "unknown", "unknown", None, true),
        ];
        let arm_only = vec![
            child(5, "linux", "arm", Some("v7"), false),
            child(6, "linux", "arm64", None, false),
        ];
        let windows = vec![child(7, "windows", "amd64", None, false)];
        type Case<'a> = (&'a [Descriptor], Arch, Result<String, Vec<&'a str>>);
        let cases: &[Case] = &[
            (&buildx, Arch::X86_64, Ok(d(1))),
            (&buildx, Arch::Arm64, Ok(d(2))),
            (&arm_only, Arch::Arm64, Ok(d(6))),
            (
                &arm_only,
                Arch::X86_64,
                Err(vec!["linux/arm/v7", "linux/arm64"]),
            ),
            // Attestations are never listed as platforms.
            (&buildx[2..], Arch::X86_64, Err(vec![])),
            (&windows, Arch::X86_64, Err(vec!["windows/amd64"])),
        ];
        for (children, arch, want) in cases {
            let got = pick_child(children, *arch).map(|d| d.to_string());
            let want = want
                .clone()
                .map_err(|v| v.into_iter().map(String::from).collect::<Vec<_>>());
            assert_eq!(got, want, "{arch:?}");
        }
    }

    // The manifests themselves: image::manifest tests them.
    #[test]
    fn configs() {
        let c = Config::parse(
            br#"{"os":"linux","architecture":"arm64","config":{"Entrypoint":["/app"],"Cmd":null}}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                os: "linux".into(),
                architecture: "arm64".into(),
                entrypoint: vec!["/app".into()],
                cmd: vec![]
            }
        );
        let c = Config::parse(br#"{"os":"linux","architecture":"amd64"}"#).unwrap();
        assert!(c.entrypoint.is_empty() && c.cmd.is_empty());
    }
}
