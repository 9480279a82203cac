//! Everything that can be known wrong before the function is touched: the
//! image's region, platform, layers, size and entrypoint against what Lambda
//! runs (whether Lambda may pull it is pull.rs). Pure: the facts are read
//! elsewhere; every problem is found (not just the first) and each says how
//! to fix it.

use super::platform::{Arch, Config};

/// Lambda's limit on an image, uncompressed, all layers included. hoist sees
/// only the compressed sizes in the manifest, a lower bound: above the limit
/// compressed is certainly too big; Lambda checks the rest itself.
pub const MAX_IMAGE_BYTES: u64 = 10 * 1024 * 1024 * 1024;

/// Layer media types Lambda unpacks: gzip tars, Docker's and OCI's names.
/// zstd is refused (Lambda documents no support for it), and so is anything
/// else (foreign, non-distributable or uncompressed layers: Lambda answers
/// `InvalidImage: ImageLayerFailure: UnsupportedImageLayerDetected`).
pub const LAMBDA_LAYER_TYPES: &[&str] = &[
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.oci.image.layer.v1.tar+gzip",
];

#[derive(Debug, Clone)]
pub struct Layer {
    pub media_type: String,
    pub size: u64,
}

/// The single-platform image that would be deployed.
#[derive(Debug, Clone)]
pub struct ImageFacts {
    /// ECR account and region of the image's registry host.
    pub account: Option<String>,
    pub region: Option<String>,
    pub layers: Vec<Layer>,
    pub config_size: u64,
    pub config: Config,
}

/// The function, as GetFunction describes it.
#[derive(Debug, Clone)]
pub struct FunctionFacts {
    pub name: String,
    pub account: String,
    pub region: String,
    pub package_type: String,
    pub architecture: Arch,
    /// The function's own ImageConfig overrides the image's entrypoint/cmd.
    pub overrides_entrypoint: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub message: String,
    pub fix: String,
}

impl Problem {
    pub fn new(message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Lambda pulls only from an ECR repository in the function's own region
/// (Lambda developer guide, images-create). Checked before hoist reads the
/// image: reading it from another region's registry fails with a registry
/// error that says nothing about regions.
pub fn region(image_region: Option<&str>, function: &FunctionFacts) -> Option<Problem> {
    let r = image_region?;
    (r != function.region).then(|| {
        Problem::new(
            format!(
                "the image is in region {r} but function {} is in {}; Lambda pulls only from its own region",
                function.name, function.region
            ),
            format!(
                "push the image to an ECR repository in {} (or replicate it there)",
                function.region
            ),
        )
    })
}

/// Every problem with deploying `image` to `function` (with `--architecture`
/// `arch`, if given).
pub fn check(image: &ImageFacts, function: &FunctionFacts, arch: Option<Arch>) -> Vec<Problem> {
    let mut problems = Vec::new();
    let f = &function.name;
    if function.package_type != "Image" {
        problems.push(Problem::new(
            format!("function {f} is a {} function; hoist deploys container images", function.package_type),
            "create the function with --package-type Image (a function's package type cannot change)",
        ));
    }
    let target = arch.unwrap_or(function.architecture);
    let c = &image.config;
    if c.os != "linux" {
        problems.push(Problem::new(
            format!(
                "the image is for {}/{}; Lambda runs linux images only",
                c.os, c.architecture
            ),
            "build the image for linux (--platform linux/amd64 or linux/arm64)",
        ));
    } else if c.architecture != target.oci() {
        let fix = match (arch, Arch::from_oci(&c.architecture)) {
            (None, Some(a)) => format!(
                "build the image for linux/{}, or pass --architecture {} to switch the function to the image's",
                target.oci(),
                a.lambda()
            ),
            (Some(_), Some(a)) => format!(
                "pass --architecture {}, or build the image for linux/{}",
                a.lambda(),
                target.oci()
            ),
            (_, None) => format!(
                "build the image for linux/{} (Lambda runs amd64 as x86_64, and arm64)",
                target.oci()
            ),
        };
        problems.push(Problem::new(
            format!(
                "the image is linux/{} but function {f} {} {} (linux/{}): it would fail every invoke with 'exec format error'",
                c.architecture,
                if arch.is_some() { "would run on" } else { "runs on" },
                target.lambda(),
                target.oci()
            ),
            fix,
        ));
    }
    for (i, l) in image.layers.iter().enumerate() {
        if !LAMBDA_LAYER_TYPES.contains(&l.media_type.as_str()) {
            let zstd = l.media_type.contains("zstd");
            problems.push(Problem::new(
                format!("layer {} has media type {}, which Lambda does not take", i + 1, l.media_type),
                if zstd {
                    "rebuild with gzip layers (buildx: --output type=image,compression=gzip,force-compression=true; skopeo copy --dest-compress-format gzip)"
                } else {
                    "Lambda takes gzip tar layers only; rebuild or convert the image (skopeo copy --dest-compress-format gzip)"
                },
            ));
        }
    }
    let total: u64 = image.config_size + image.layers.iter().map(|l| l.size).sum::<u64>();
    if total > MAX_IMAGE_BYTES {
        problems.push(Problem::new(
            format!(
                "the image is {} compressed, over Lambda's 10 GiB image limit (which counts the uncompressed size)",
                crate::progress::bytes(total)
            ),
            "make the image smaller (multi-stage builds, fewer and smaller layers)",
        ));
    }
    if c.entrypoint.is_empty() && c.cmd.is_empty() && !function.overrides_entrypoint {
        problems.push(Problem::new(
            "the image has neither an ENTRYPOINT nor a CMD, and the function does not set one: Lambda would have nothing to run",
            "add ENTRYPOINT or CMD to the image (AWS base images set ENTRYPOINT and CMD [\"app.handler\"]), or set the function's ImageConfig",
        ));
    }
    if let Some(p) = region(image.region.as_deref(), function) {
        problems.push(p);
    }
    problems
}

impl Arch {
    pub fn from_oci(s: &str) -> Option<Arch> {
        match s {
            "amd64" => Some(Arch::X86_64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageFacts {
        ImageFacts {
            account: Some("123456789012".into()),
            region: Some("us-east-1".into()),
            layers: vec![Layer {
                media_type: LAMBDA_LAYER_TYPES[1].into(),
                size: 1000,
            }],
            config_size: 100,
            config: Config {
                os: "linux".into(),
                architecture: "amd64".into(),
                entrypoint: vec![],
                cmd: vec!["/app".into()],
            },
        }
    }

    fn function() -> FunctionFacts {
        FunctionFacts {
            name: "f".into(),
            account: "123456789012".into(),
            region: "us-east-1".into(),
            package_type: "Image".into(),
            architecture: Arch::X86_64,
            overrides_entrypoint: false,
        }
    }

    #[test]
    fn what_blocks_a_deploy() {
        type Case = (
            &'static str,
            Box<dyn Fn(&mut ImageFacts, &mut FunctionFacts)>,
            Option<Arch>,
            Vec<&'static str>,
        );
        let cases: Vec<Case> = vec![
            ("fine", Box::new(|_, _| {}), None, vec![]),
            (
                "arm image, x86 function",
                Box::new(|i, _| i.config.architecture = "arm64".into()),
                None,
                vec!["is linux/arm64 but function f runs on x86_64"],
            ),
            (
                "--architecture arm64 fixes it",
                Box::new(|i, _| i.config.architecture = "arm64".into()),
                Some(Arch::Arm64),
                vec![],
            ),
            (
                "--architecture arm64 for an amd64 image",
                Box::new(|_, _| {}),
                Some(Arch::Arm64),
                vec!["would run on arm64"],
            ),
            (
                "windows",
                Box::new(|i, _| i.config.os = "windows".into()),
                None,
                vec!["linux images only"],
            ),
            (
                "zstd",
                Box::new(|i, _| {
                    i.layers.push(Layer {
                        media_type: "application/vnd.oci.image.layer.v1.tar+zstd".into(),
                        size: 5,
                    })
                }),
                None,
                vec!["layer 2 has media type application/vnd.oci.image.layer.v1.tar+zstd"],
            ),
            (
                "plain tar",
                Box::new(|i, _| {
                    i.layers[0].media_type = "application/vnd.oci.image.layer.v1.tar".into()
                }),
                None,
                vec!["layer 1 has media type"],
            ),
            (
                "too big",
                Box::new(|i, _| i.layers[0].size = MAX_IMAGE_BYTES),
                None,
                vec!["over Lambda's 10 GiB"],
            ),
            (
                "exactly at the limit",
                Box::new(|i, _| i.layers[0].size = MAX_IMAGE_BYTES - 100),
                None,
                vec![],
            ),
            (
                "nothing to run",
                Box::new(|i, _| i.config.cmd.clear()),
                None,
                vec!["neither an ENTRYPOINT nor a CMD"],
            ),
            (
                "the function sets the command",
                Box::new(|i, f| {
                    i.config.cmd.clear();
                    f.overrides_entrypoint = true;
                }),
                None,
                vec![],
            ),
            (
                "entrypoint only",
                Box::new(|i, _| {
                    i.config.cmd.clear();
                    i.config.entrypoint = vec!["/e".into()];
                }),
                None,
                vec![],
            ),
            (
                "other region",
                Box::new(|i, _| i.region = Some("eu-west-1".into())),
                None,
                vec!["is in region eu-west-1 but function f is in us-east-1"],
            ),
            (
                "zip function",
                Box::new(|_, f| f.package_type = "Zip".into()),
                None,
                vec!["is a Zip function"],
            ),
            (
                "several at once",
                Box::new(|i, _| {
                    i.config.cmd.clear();
                    i.config.architecture = "arm64".into();
                }),
                None,
                vec!["is linux/arm64", "neither an ENTRYPOINT"],
            ),
        ];
        for (name, change, arch, want) in cases {
            let (mut i, mut f) = (image(), function());
            change(&mut i, &mut f);
            let problems = check(&i, &f, arch);
            assert_eq!(problems.len(), want.len(), "{name}: {problems:?}");
            for (p, w) in problems.iter().zip(&want) {
                assert!(
                    p.message.contains(w),
                    "{name}: {} does not say {w}",
                    p.message
                );
                assert!(!p.fix.is_empty(), "{name}");
            }
        }
    }

    #[test]
    fn region_first() {
        let f = function();
        assert_eq!(region(None, &f), None);
        assert_eq!(region(Some("us-east-1"), &f), None);
        let p = region(Some("eu-west-1"), &f).unwrap();
        assert!(
            p.message
                .contains("is in region eu-west-1 but function f is in us-east-1")
        );
        assert!(p.fix.contains("in us-east-1"));
    }
}
