//! The scan stage's edge: the ECR API calls (aws-sdk-ecr), and turning
//! their answers into [`Finding`]s. The SDK retries its own calls; the one
//! exception is StartImageScan (below).

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_sdk_ecr::error::ProvideErrorMetadata;
use aws_sdk_ecr::types::{
    EnhancedImageScanFinding, ImageIdentifier, ImageScanFinding, ScanFrequency,
};

use super::status::{ConfigRead, Frequency, ScanType};
use super::verdict::{Finding, Severity};
use crate::error::{ConfigError, Error};
use crate::image::MANIFEST_TYPES;
use crate::registry::ecr::aws_error;

pub struct ScanApi {
    client: aws_sdk_ecr::Client,
    registry_id: Option<String>,
}

/// One poll's worth: the status and every page of findings.
#[derive(Debug, Clone)]
pub struct Scan {
    pub status: String,
    pub description: Option<String>,
    pub findings: Vec<Finding>,
    /// The sum of findingSeverityCounts; None when the answer had none.
    pub counted: Option<u32>,
    /// The answer carried `enhancedFindings` (Inspector), even empty.
    pub enhanced: bool,
}

pub enum Started {
    /// ECR accepted the request.
    Started,
    /// LimitExceededException: the image was scanned in the last 24 h (a
    /// scan on push counts), so a scan exists or is on its way.
    AlreadyScanned,
    /// ECR refused: its error code and message.
    Refused { code: String, message: String },
}

impl ScanApi {
    /// `region` and `registry_id` come from an image URI when the user gave
    /// one: the image's registry, not just the default one.
    pub fn new(sdk: &SdkConfig, region: Option<&str>, registry_id: Option<String>) -> ScanApi {
        let mut conf = aws_sdk_ecr::config::Builder::from(sdk);
        if let Some(r) = region {
            conf = conf.region(aws_sdk_ecr::config::Region::new(r.to_string()));
        }
        ScanApi {
            client: aws_sdk_ecr::Client::from_conf(conf.build()),
            registry_id,
        }
    }

    fn image_id(digest: &str) -> ImageIdentifier {
        ImageIdentifier::builder().image_digest(digest).build()
    }

    /// BASIC or ENHANCED, and the registry the answer is about: this call
    /// takes no registry id and always reads the caller's own registry.
    /// Reading it needs ecr:GetRegistryScanningConfiguration; without that,
    /// gate still works and judges by the findings it gets.
    pub async fn scan_config(&self) -> ConfigRead {
        match self
            .client
            .get_registry_scanning_configuration()
            .send()
            .await
        {
            Ok(out) => ConfigRead::Read {
                scan_type: match out.scanning_configuration().and_then(|c| c.scan_type()) {
                    Some(aws_sdk_ecr::types::ScanType::Enhanced) => ScanType::Enhanced,
                    Some(aws_sdk_ecr::types::ScanType::Basic) | None => ScanType::Basic,
                    Some(_) => ScanType::Unknown,
                },
                registry_id: out.registry_id().map(str::to_string),
            },
            Err(e) => match e.code() {
                Some("AccessDeniedException" | "AccessDenied") => ConfigRead::Denied,
                code => ConfigRead::Failed(code.unwrap_or("no answer").to_string()),
            },
        }
    }

    /// The caller's own account (STS GetCallerIdentity, which every identity
    /// may call: it needs no permission). None when it cannot be had.
    pub async fn caller_account(sdk: &SdkConfig) -> Option<String> {
        match aws_sdk_sts::Client::new(sdk)
            .get_caller_identity()
            .send()
            .await
        {
            Ok(out) => out.account().map(str::to_string),
            Err(e) => {
                tracing::debug!(
                    "could not learn the caller's account: {}",
                    e.code().unwrap_or("no answer")
                );
                None
            }
        }
    }

    /// How the repository is scanned: on push, continuously, or only when
    /// asked. Unknown when it cannot be read.
    pub async fn frequency(&self, repository: &str) -> Frequency {
        // This operation takes no registry id: it reads the caller's own
        // registry (another account's repository reads as unknown).
        let req = self
            .client
            .batch_get_repository_scanning_configuration()
            .repository_names(repository);
        match req.send().await {
            Ok(out) => match out.scanning_configurations().first() {
                Some(c) => match c.scan_frequency() {
                    Some(ScanFrequency::ScanOnPush) => Frequency::ScanOnPush,
                    Some(ScanFrequency::ContinuousScan) => Frequency::Continuous,
                    _ if c.scan_on_push() => Frequency::ScanOnPush,
                    Some(ScanFrequency::Manual) | None => Frequency::Manual,
                    Some(_) => Frequency::Unknown,
                },
                None => Frequency::Unknown,
            },
            Err(e) => {
                tracing::debug!(
                    "could not read the repository's scanning configuration: {}",
                    e.code().unwrap_or("no answer")
                );
                Frequency::Unknown
            }
        }
    }

    /// The manifest ECR holds for `repository@digest` and its media type.
    /// BatchGetImage needs no registry round trip, so an index's children
    /// are known without pulling anything.
    /// The image's manifest: its media type and body; the inner error when
    /// ECR has no such image (which a caller may look for again).
    pub async fn manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Result<(String, String), ConfigError>, Error> {
        let op = "ecr:BatchGetImage";
        let mut req = self
            .client
            .batch_get_image()
            .repository_name(repository)
            .image_ids(Self::image_id(digest));
        for t in MANIFEST_TYPES {
            req = req.accepted_media_types(*t);
        }
        if let Some(id) = &self.registry_id {
            req = req.registry_id(id);
        }
        let out = req.send().await.map_err(|e| {
            if e.as_service_error()
                .is_some_and(|s| s.is_repository_not_found_exception())
            {
                Error::from(missing_repository(repository))
            } else {
                aws_error(op, e).into()
            }
        })?;
        let Some(image) = out.images().first() else {
            let why = out
                .failures()
                .first()
                .and_then(|f| f.failure_reason())
                .unwrap_or("no such image");
            return Ok(Err(ConfigError::new(format!(
                "{repository}@{digest} is not in ECR: {why}"
            ))
            .hint("check the digest and the repository (hoist push prints both); gate runs after the push")));
        };
        let body = image.image_manifest().unwrap_or_default().to_string();
        let media_type = image
            .image_manifest_media_type()
            .map(str::to_string)
            .or_else(|| {
                serde_json::from_str::<serde_json::Value>(&body)
                    .ok()?
                    .get("mediaType")?
                    .as_str()
                    .map(str::to_string)
            })
            .unwrap_or_default();
        Ok(Ok((media_type, body)))
    }

    /// DescribeImageScanFindings, every page. None: no scan exists
    /// (ScanNotFoundException).
    pub async fn findings(&self, repository: &str, digest: &str) -> Result<Option<Scan>, Error> {
        let op = "ecr:DescribeImageScanFindings";
        let mut token: Option<String> = None;
        let mut scan: Option<Scan> = None;
        loop {
            let mut req = self
                .client
                .describe_image_scan_findings()
                .repository_name(repository)
                .image_id(Self::image_id(digest))
                // Basic findings honour it; enhanced findings come in pages
                // of 100 whatever it says (boto3#3449): every page is read.
                .max_results(1000)
                .set_next_token(token.clone());
            if let Some(id) = &self.registry_id {
                req = req.registry_id(id);
            }
            let out = match req.send().await {
                Ok(out) => out,
                Err(e) => {
                    let service = e.as_service_error();
                    if service.is_some_and(|s| s.is_scan_not_found_exception()) {
                        return Ok(None);
                    }
                    if service.is_some_and(|s| s.is_repository_not_found_exception()) {
                        return Err(missing_repository(repository).into());
                    }
                    if service.is_some_and(|s| s.is_image_not_found_exception()) {
                        return Err(ConfigError::new(format!(
                            "{repository}@{digest} is not in ECR"
                        ))
                        .hint("check the digest and the repository (hoist push prints both)")
                        .into());
                    }
                    return Err(aws_error(op, e).into());
                }
            };
            let s = scan.get_or_insert_with(|| Scan {
                status: out
                    .image_scan_status()
                    .and_then(|s| s.status())
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                description: out
                    .image_scan_status()
                    .and_then(|s| s.description())
                    .map(str::to_string),
                findings: vec![],
                counted: None,
                enhanced: false,
            });
            if let Some(f) = out.image_scan_findings() {
                if token.is_none() {
                    s.counted = f
                        .finding_severity_counts()
                        .map(|c| c.values().map(|&n| n.max(0) as u32).sum());
                }
                s.findings.extend(f.findings().iter().map(basic_finding));
                // Present, even empty, only in an enhanced answer; absent
                // says nothing (aws/aws-sdk#289).
                s.enhanced |= f.enhanced_findings.is_some();
                s.findings
                    .extend(f.enhanced_findings().iter().map(enhanced_finding));
            }
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_string);
            if token.is_none() {
                return Ok(scan);
            }
        }
    }

    /// StartImageScan, once. The SDK classifies LimitExceededException as
    /// throttling and would retry it for nothing (the limit is one scan per
    /// image per 24 hours), so this one call runs without SDK retries.
    pub async fn start_scan(&self, repository: &str, digest: &str) -> Result<Started, Error> {
        let op = "ecr:StartImageScan";
        let mut req = self
            .client
            .start_image_scan()
            .repository_name(repository)
            .image_id(Self::image_id(digest));
        if let Some(id) = &self.registry_id {
            req = req.registry_id(id);
        }
        let result = req
            .customize()
            .config_override(
                aws_sdk_ecr::config::Builder::default().retry_config(RetryConfig::disabled()),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(Started::Started),
            Err(e) => {
                let Some(s) = e.as_service_error() else {
                    return Err(aws_error(op, e).into());
                };
                if s.is_limit_exceeded_exception() {
                    Ok(Started::AlreadyScanned)
                } else if s.is_unsupported_image_type_exception()
                    || s.is_validation_exception()
                    || s.is_image_archived_exception()
                    || s.is_invalid_parameter_exception()
                {
                    // ValidationException is also how an enhanced registry
                    // refuses a manual scan (status::refused decides).
                    Ok(Started::Refused {
                        code: s.code().unwrap_or("refused").to_string(),
                        message: s.message().unwrap_or("no reason given").to_string(),
                    })
                } else if s.is_repository_not_found_exception() {
                    Err(missing_repository(repository).into())
                } else {
                    Err(aws_error(op, e).into())
                }
            }
        }
    }
}

fn missing_repository(repository: &str) -> ConfigError {
    ConfigError::new(format!("repository '{repository}' does not exist in ECR"))
        .hint("check --repository / the image name, --region, and the account of the image URI")
}

fn attribute<'a>(f: &'a ImageScanFinding, key: &str) -> Option<&'a str> {
    f.attributes()
        .iter()
        .find(|a| a.key() == key)
        .and_then(|a| a.value())
        .filter(|v| !v.is_empty())
}

/// A basic-scanning finding: the CVE is its name; package, version and CVSS
/// are attributes.
pub fn basic_finding(f: &ImageScanFinding) -> Finding {
    let id = f.name().unwrap_or("unnamed finding");
    let mut out = Finding::new(
        id,
        f.severity()
            .map(|s| Severity::from_ecr(s.as_str()))
            .unwrap_or(Severity::Undefined),
    );
    out.description = f.description().map(str::to_string);
    out.link = f.uri().map(str::to_string);
    out.package = attribute(f, "package_name").map(str::to_string);
    out.version = attribute(f, "package_version").map(str::to_string);
    out.score = attribute(f, "CVSS3_SCORE")
        .or_else(|| attribute(f, "CVSS2_SCORE"))
        .and_then(|s| s.parse().ok());
    out.cvss_vector = attribute(f, "CVSS3_VECTOR")
        .or_else(|| attribute(f, "CVSS2_VECTOR"))
        .map(str::to_string);
    out
}

/// An Inspector finding: the vulnerability id and packages are in
/// packageVulnerabilityDetails; the fix in vulnerablePackages' fixedInVersion.
pub fn enhanced_finding(f: &EnhancedImageScanFinding) -> Finding {
    let details = f.package_vulnerability_details();
    let id = details
        .and_then(|d| d.vulnerability_id())
        .or(f.title())
        .or(f.finding_arn())
        .unwrap_or("unnamed finding");
    let mut out = Finding::new(
        id,
        f.severity()
            .map(Severity::from_ecr)
            .unwrap_or(Severity::Undefined),
    );
    out.title = f.title().map(str::to_string);
    out.description = f.description().map(str::to_string);
    let package = details.and_then(|d| d.vulnerable_packages().first());
    out.package = package.and_then(|p| p.name()).map(str::to_string);
    out.version = package.and_then(|p| p.version()).map(|v| {
        match package.and_then(|p| p.release()).filter(|r| !r.is_empty()) {
            Some(r) => format!("{v}-{r}"),
            None => v.to_string(),
        }
    });
    // Inspector writes "NotAvailable" where no fix exists.
    out.fixed_version = package
        .and_then(|p| p.fixed_in_version())
        .filter(|v| !v.is_empty() && !v.eq_ignore_ascii_case("NotAvailable"))
        .map(str::to_string);
    out.link = details
        .and_then(|d| d.source_url())
        .or_else(|| {
            f.remediation()
                .and_then(|r| r.recommendation())
                .and_then(|r| r.url())
        })
        .or_else(|| details.and_then(|d| d.reference_urls().first().map(String::as_str)))
        .map(str::to_string);
    let cvss = f.score_details().and_then(|s| s.cvss());
    out.score = (f.score() > 0.0)
        .then_some(f.score())
        .or_else(|| cvss.map(|c| c.score()).filter(|s| *s > 0.0));
    out.cvss_vector = cvss.and_then(|c| c.scoring_vector()).map(str::to_string);
    out.suppressed = f
        .status()
        .is_some_and(|s| s.eq_ignore_ascii_case("SUPPRESSED") || s.eq_ignore_ascii_case("CLOSED"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_ecr::types::{
        Attribute, FindingSeverity, PackageVulnerabilityDetails, Recommendation, Remediation,
        VulnerablePackage,
    };

    #[test]
    fn basic_findings_read_their_attributes() {
        let f = ImageScanFinding::builder()
            .name("CVE-9999-9999")
            .uri("https://cve.mitre.org/cgi-bin/cvename.cgi?name=CVE-9999-9999")
            .severity(FindingSeverity::High)
            .attributes(
                Attribute::builder()
                    .key("package_version")
                    .value("9.9.9")
                    .build()
                    .unwrap(),
            )
            .attributes(
                Attribute::builder()
                    .key("package_name")
                    .value("moto_fake")
                    .build()
                    .unwrap(),
            )
            .attributes(
                Attribute::builder()
                    .key("CVSS2_SCORE")
                    .value("7.5")
                    .build()
                    .unwrap(),
            )
            .build();
        let g = basic_finding(&f);
        assert_eq!(g.id, "CVE-9999-9999");
        assert_eq!(g.severity, Severity::High);
        assert_eq!(g.package.as_deref(), Some("moto_fake"));
        assert_eq!(g.version.as_deref(), Some("9.9.9"));
        assert_eq!(g.score, Some(7.5));
        assert!(g.link.unwrap().contains("CVE-9999-9999"));
    }

    #[test]
    fn enhanced_findings_read_their_details() {
        let f = EnhancedImageScanFinding::builder()
            .severity("UNTRIAGED")
            .title("CVE-2024-1 - openssl")
            .status("ACTIVE")
            .package_vulnerability_details(
                PackageVulnerabilityDetails::builder()
                    .vulnerability_id("CVE-2024-1")
                    .source_url("https://nvd.nist.gov/vuln/detail/CVE-2024-1")
                    .vulnerable_packages(
                        VulnerablePackage::builder()
                            .name("openssl")
                            .version("3.0.2")
                            .release("0ubuntu1")
                            .fixed_in_version("NotAvailable")
                            .build(),
                    )
                    .build(),
            )
            .remediation(
                Remediation::builder()
                    .recommendation(Recommendation::builder().url("https://x/fix").build())
                    .build(),
            )
            .build();
        let g = enhanced_finding(&f);
        assert_eq!(g.id, "CVE-2024-1");
        assert_eq!(g.severity, Severity::Undefined);
        assert_eq!(g.version.as_deref(), Some("3.0.2-0ubuntu1"));
        assert_eq!(g.fixed_version, None);
        assert_eq!(
            g.link.as_deref(),
            Some("https://nvd.nist.gov/vuln/detail/CVE-2024-1")
        );
        assert!(!g.suppressed);
        let closed = EnhancedImageScanFinding::builder()
            .status("CLOSED")
            .severity("HIGH")
            .build();
        assert!(enhanced_finding(&closed).suppressed);
    }
}
