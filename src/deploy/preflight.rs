//! Everything that can be known wrong before the function is touched: the
//! image's platform, layers, size and entrypoint against what Lambda runs,
//! and whether Lambda can pull from the repository at all. Pure: the facts
//! are read elsewhere; every problem is found (not just the first) and each
//! says how to fix it.

use serde_json::Value;

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

/// What a cross-account deploy needs from the repository policy.
#[derive(Debug, Clone, PartialEq)]
pub enum CrossAccount {
    /// Same account: nothing to check.
    NotNeeded,
    /// The policy text (None: the repository has no policy).
    Policy(Option<String>),
    /// hoist could not read the policy (no ecr:GetRepositoryPolicy there).
    Unreadable(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub message: String,
    pub fix: String,
}

impl Problem {
    fn new(message: impl Into<String>, fix: impl Into<String>) -> Problem {
        Problem {
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Every problem with deploying `image` to `function` (with `--architecture`
/// `arch`, if given), plus warnings that do not block.
pub fn check(
    image: &ImageFacts,
    function: &FunctionFacts,
    arch: Option<Arch>,
    cross: &CrossAccount,
) -> (Vec<Problem>, Vec<String>) {
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
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
    if let Some(r) = &image.region {
        if *r != function.region {
            problems.push(Problem::new(
                format!("the image is in region {r} but function {f} is in {}; Lambda pulls only from its own region", function.region),
                format!("push the image to an ECR repository in {} (or replicate it there)", function.region),
            ));
        }
    }
    match cross {
        CrossAccount::NotNeeded => {}
        CrossAccount::Policy(None) => problems.push(Problem::new(
            format!(
                "the repository is in account {} and function {f} in {}, and the repository has no policy letting Lambda pull",
                image.account.as_deref().unwrap_or("?"),
                function.account
            ),
            CROSS_FIX,
        )),
        CrossAccount::Policy(Some(text)) => {
            if let Err(why) = lambda_may_pull(text) {
                problems.push(Problem::new(
                    format!("the repository policy does not let Lambda pull the image into account {}: {why}", function.account),
                    CROSS_FIX,
                ));
            }
        }
        CrossAccount::Unreadable(why) => warnings.push(format!(
            "could not read the repository policy to check that Lambda may pull across accounts ({why}); if the deploy fails with ImageAccessDenied, see the README"
        )),
    }
    (problems, warnings)
}

const CROSS_FIX: &str = "add a repository policy statement allowing Principal {\"Service\": \"lambda.amazonaws.com\"} the actions ecr:BatchGetImage and ecr:GetDownloadUrlForLayer (see the README's cross-account section)";

impl Arch {
    pub fn from_oci(s: &str) -> Option<Arch> {
        match s {
            "amd64" => Some(Arch::X86_64),
            "arm64" => Some(Arch::Arm64),
            _ => None,
        }
    }
}

/// Whether a repository policy has an Allow statement for the Lambda service
/// principal covering both actions Lambda pulls with. Conditions are not
/// evaluated (they usually pin the source account, which is what is wanted).
pub fn lambda_may_pull(policy: &str) -> Result<(), String> {
    let doc: Value = serde_json::from_str(policy).map_err(|e| format!("it is not JSON ({e})"))?;
    let statements: Vec<&Value> = match &doc["Statement"] {
        Value::Array(a) => a.iter().collect(),
        s @ Value::Object(_) => vec![s],
        _ => return Err("it has no statements".into()),
    };
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect(),
            _ => vec![],
        }
    };
    let mut missing = vec!["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"];
    for s in statements {
        if s["Effect"] != "Allow" {
            continue;
        }
        let principal = &s["Principal"];
        let lambda = principal == "*"
            || strings(&principal["Service"])
                .iter()
                .any(|p| p == "lambda.amazonaws.com")
            || strings(&principal["AWS"]).iter().any(|p| p == "*");
        if !lambda {
            continue;
        }
        let actions = strings(&s["Action"]);
        missing.retain(|want| !actions.iter().any(|a| action_matches(a, want)));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "no Allow statement for lambda.amazonaws.com covers {}",
            missing.join(" and ")
        ))
    }
}

/// IAM action patterns: case-insensitive, `*` any run of characters.
fn action_matches(pattern: &str, action: &str) -> bool {
    fn m(p: &[u8], a: &[u8]) -> bool {
        match p.split_first() {
            None => a.is_empty(),
            Some((b'*', rest)) => (0..=a.len()).any(|i| m(rest, &a[i..])),
            Some((c, rest)) => {
                a.first().is_some_and(|x| x.eq_ignore_ascii_case(c)) && m(rest, &a[1..])
            }
        }
    }
    m(pattern.as_bytes(), action.as_bytes())
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
            let (problems, _) = check(&i, &f, arch, &CrossAccount::NotNeeded);
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
    fn cross_account_pulls() {
        let good = r#"{"Version":"2012-10-17","Statement":[{"Sid":"LambdaECRImageCrossAccountRetrievalPolicy","Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":["ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"],"Condition":{"StringLike":{"aws:sourceARN":"arn:aws:lambda:us-east-1:222222222222:function:*"}}}]}"#;
        let cases: &[(&str, Result<(), &str>)] = &[
            (good, Ok(())),
            (
                r#"{"Statement":{"Effect":"Allow","Principal":{"Service":["x.amazonaws.com","lambda.amazonaws.com"]},"Action":"ecr:*"}}"#,
                Ok(()),
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":"*","Action":["ecr:BatchGet*","ecr:getdownloadurlforlayer"]}]}"#,
                Ok(()),
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"ecr:BatchGetImage"}]}"#,
                Err("covers ecr:GetDownloadUrlForLayer"),
            ),
            (
                r#"{"Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::222222222222:root"},"Action":"ecr:*"}]}"#,
                Err("covers ecr:BatchGetImage and ecr:GetDownloadUrlForLayer"),
            ),
            (
                r#"{"Statement":[{"Effect":"Deny","Principal":{"Service":"lambda.amazonaws.com"},"Action":"ecr:*"}]}"#,
                Err("no Allow statement"),
            ),
            ("not json", Err("not JSON")),
        ];
        for (policy, want) in cases {
            let got = lambda_may_pull(policy);
            match want {
                Ok(()) => assert!(got.is_ok(), "{policy}: {got:?}"),
                Err(w) => assert!(got.as_ref().unwrap_err().contains(w), "{policy}: {got:?}"),
            }
        }
        let mut f = function();
        f.account = "222222222222".into();
        let (p, _) = check(&image(), &f, None, &CrossAccount::Policy(None));
        assert!(p[0].message.contains("has no policy"), "{p:?}");
        let (p, _) = check(&image(), &f, None, &CrossAccount::Policy(Some(good.into())));
        assert!(p.is_empty(), "{p:?}");
        let (p, w) = check(
            &image(),
            &f,
            None,
            &CrossAccount::Unreadable("AccessDenied".into()),
        );
        assert!(p.is_empty() && w[0].contains("AccessDenied"));
    }
}
