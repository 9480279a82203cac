//! ECR registry host names, in every form AWS gives them:
//!
//! | endpoint | host |
//! |---|---|
//! | standard | `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (`.com.cn` in China) |
//! | FIPS | `ACCOUNT.dkr.ecr-fips.REGION.amazonaws.com` |
//! | dual-stack | `ACCOUNT.dkr-ecr.REGION.on.aws` (`.on.amazonwebservices.com.cn` in China) |
//! | FIPS dual-stack | `ACCOUNT.dkr-ecr-fips.REGION.on.aws` |
//!
//! Registry traffic may use any of them; the image URI handed to Lambda is
//! always the standard one, because Lambda refuses ecr-fips URIs (Lambda
//! developer guide, "Creating a Lambda function using a container image").

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcrHost {
    pub account: String,
    pub region: String,
    pub fips: bool,
    pub dual_stack: bool,
    pub china: bool,
}

impl EcrHost {
    /// The parts of an ECR host name (a port, if any, is ignored); None for
    /// any other host.
    pub fn parse(host: &str) -> Option<EcrHost> {
        let host = host.split(':').next()?.to_ascii_lowercase();
        let (account, rest) = host.split_once('.')?;
        if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let (service, rest) = if let Some(r) = rest.strip_prefix("dkr.ecr-fips.") {
            ((true, false), r)
        } else if let Some(r) = rest.strip_prefix("dkr.ecr.") {
            ((false, false), r)
        } else if let Some(r) = rest.strip_prefix("dkr-ecr-fips.") {
            ((true, true), r)
        } else if let Some(r) = rest.strip_prefix("dkr-ecr.") {
            ((false, true), r)
        } else {
            return None;
        };
        let (region, domain) = rest.split_once('.')?;
        let china = match (service.1, domain) {
            (false, "amazonaws.com") => false,
            (false, "amazonaws.com.cn") => true,
            (true, "on.aws") => false,
            (true, "on.amazonwebservices.com.cn") => true,
            _ => return None,
        };
        let region_ok = !region.is_empty()
            && region.split('-').count() >= 3
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        region_ok.then(|| EcrHost {
            account: account.to_string(),
            region: region.to_string(),
            fips: service.0,
            dual_stack: service.1,
            china,
        })
    }

    /// The host in the form it was given (standard, FIPS, dual-stack),
    /// lowercased and without a port: where the registry traffic goes. A
    /// FIPS or dual-stack endpoint is a requirement of the network or of
    /// compliance, never to be swapped for the standard one behind the
    /// user's back.
    pub fn name(&self) -> String {
        let (service, domain) = match (self.fips, self.dual_stack, self.china) {
            (false, false, false) => ("dkr.ecr", "amazonaws.com"),
            (false, false, true) => ("dkr.ecr", "amazonaws.com.cn"),
            (true, false, false) => ("dkr.ecr-fips", "amazonaws.com"),
            (true, false, true) => ("dkr.ecr-fips", "amazonaws.com.cn"),
            (false, true, false) => ("dkr-ecr", "on.aws"),
            (false, true, true) => ("dkr-ecr", "on.amazonwebservices.com.cn"),
            (true, true, false) => ("dkr-ecr-fips", "on.aws"),
            (true, true, true) => ("dkr-ecr-fips", "on.amazonwebservices.com.cn"),
        };
        format!("{}.{service}.{}.{domain}", self.account, self.region)
    }

    /// `ACCOUNT.dkr.ecr.REGION.amazonaws.com[.cn]`: the form Lambda takes.
    pub fn canonical(&self) -> String {
        format!(
            "{}.dkr.ecr.{}.amazonaws.com{}",
            self.account,
            self.region,
            if self.china { ".cn" } else { "" }
        )
    }
}

/// `host` in the form image URIs use: an ECR host of any kind becomes its
/// standard name; anything else (a local registry) is kept as it is.
pub fn canonical(host: &str) -> String {
    EcrHost::parse(host)
        .map(|h| h.canonical())
        .unwrap_or_else(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_of_an_ecr_host() {
        let table = [
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
                Some(("eu-west-1", false, false, false)),
            ),
            (
                "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
                Some(("cn-north-1", false, false, true)),
            ),
            (
                "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
                Some(("us-east-1", true, false, false)),
            ),
            (
                "123456789012.dkr-ecr.eu-west-1.on.aws",
                Some(("eu-west-1", false, true, false)),
            ),
            (
                "123456789012.dkr-ecr-fips.us-gov-west-1.on.aws",
                Some(("us-gov-west-1", true, true, false)),
            ),
            (
                "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
                Some(("cn-north-1", false, true, true)),
            ),
            (
                "123456789012.dkr.ecr.eu-west-1.amazonaws.com:443",
                Some(("eu-west-1", false, false, false)),
            ),
            (
                "123456789012.DKR.ECR.EU-WEST-1.AMAZONAWS.COM",
                Some(("eu-west-1", false, false, false)),
            ),
            ("127.0.0.1:5443", None),
            ("public.ecr.aws", None),
            ("12345.dkr.ecr.eu-west-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.eu-west-1.example.com", None),
            ("123456789012.dkr-ecr.eu-west-1.amazonaws.com", None),
            ("123456789012.dkr.ecr.bad_region.amazonaws.com", None),
        ];
        for (host, want) in table {
            let got = EcrHost::parse(host);
            assert_eq!(
                got.as_ref()
                    .map(|h| (h.region.as_str(), h.fips, h.dual_stack, h.china)),
                want,
                "{host}"
            );
        }
    }

    /// Registry traffic goes to the host the user named, in its own form:
    /// parsing and naming it again gives it back (lowercased, no port).
    #[test]
    fn registry_traffic_keeps_the_host_as_given() {
        for host in [
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
            "123456789012.dkr-ecr.eu-west-1.on.aws",
            "123456789012.dkr-ecr-fips.us-east-1.on.aws",
            "123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn",
        ] {
            assert_eq!(EcrHost::parse(host).unwrap().name(), host);
        }
        assert_eq!(
            EcrHost::parse("123456789012.DKR.ECR-FIPS.US-EAST-1.AMAZONAWS.COM:443")
                .unwrap()
                .name(),
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com"
        );
    }

    #[test]
    fn lambda_gets_the_standard_host() {
        for host in [
            "123456789012.dkr.ecr-fips.us-east-1.amazonaws.com",
            "123456789012.dkr-ecr.us-east-1.on.aws",
            "123456789012.dkr-ecr-fips.us-east-1.on.aws",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
        ] {
            assert_eq!(
                canonical(host),
                "123456789012.dkr.ecr.us-east-1.amazonaws.com"
            );
        }
        assert_eq!(
            canonical("123456789012.dkr-ecr.cn-north-1.on.amazonwebservices.com.cn"),
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"
        );
        assert_eq!(canonical("127.0.0.1:5443"), "127.0.0.1:5443");
    }
}
