//! Content digests. Parsing is strict (`sha256:` and 64 lowercase hex digits)
//! because a digest becomes a path inside the layout: `sha256:../../x` must
//! never reach the file system.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    #[error("'{0}' is not a sha256 digest (expected sha256: and 64 lowercase hex digits)")]
    Invalid(String),
    #[error("digest algorithm '{0}' is not supported (ECR and Lambda take sha256 only)")]
    Algorithm(String),
}

impl Digest {
    pub fn of(bytes: &[u8]) -> Digest {
        Digest {
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    pub fn from_hasher(h: Sha256) -> Digest {
        Digest {
            hex: hex::encode(h.finalize()),
        }
    }

    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// `blobs/sha256/<hex>`: where an OCI layout keeps this blob.
    pub fn layout_path(&self) -> String {
        format!("blobs/sha256/{}", self.hex)
    }

    /// The first 12 hex digits, for log lines.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // What is not a digest came from outside: it is shown escaped.
        let invalid = || DigestError::Invalid(crate::text::external(s, 100));
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(invalid());
        };
        if alg != "sha256" {
            if !alg.is_empty()
                && alg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+._-".contains(c))
            {
                return Err(DigestError::Algorithm(crate::text::external(alg, 40)));
            }
            return Err(invalid());
        }
        if hex.len() != 64
            || !hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(invalid());
        }
        Ok(Digest {
            hex: hex.to_string(),
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// In JSON documents: `sha256:` and 64 lowercase hex digits.
impl schemars::JsonSchema for Digest {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Digest".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": "^sha256:[0-9a-f]{64}$",
        })
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_only_sha256_hex() {
        let ok = format!("sha256:{}", "a".repeat(64));
        assert_eq!(ok.parse::<Digest>().unwrap().to_string(), ok);
        for bad in [
            "sha256:../../x".to_string(),
            format!("sha256:{}", "A".repeat(64)),
            format!("sha256:{}/", "a".repeat(63)),
            "sha256".to_string(),
            String::new(),
            format!("sha256:{}", "a".repeat(65)),
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Invalid(_))),
                "{bad}"
            );
        }
        assert_eq!(
            format!("sha512:{}", "a".repeat(128)).parse::<Digest>(),
            Err(DigestError::Algorithm("sha512".into()))
        );
    }

    #[test]
    fn digest_of_bytes() {
        assert_eq!(
            Digest::of(b"").hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
