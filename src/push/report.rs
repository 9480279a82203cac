//! The push stage's one result: what was (or would be) pushed, for the log,
//! the step summary, JSON and the CI outputs.

use serde::Serialize;

use crate::image::{Digest, Format, plural};
use crate::progress::bytes;

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct TagReport {
    pub tag: String,
    /// `pushed` or `unchanged` (it already pointed at this image).
    pub action: &'static str,
}

#[derive(Debug, Clone, Default, Serialize, schemars::JsonSchema)]
pub struct BlobCounts {
    pub total: usize,
    pub uploaded: usize,
    pub mounted: usize,
    pub present: usize,
    pub bytes_uploaded: u64,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    pub digest: Digest,
    pub image_uri: String,
    pub repository: String,
    pub registry: String,
    pub media_type: String,
    pub source_format: Format,
    pub platforms: Vec<String>,
    pub tags: Vec<TagReport>,
    pub blobs: BlobCounts,
    pub manifests_pushed: usize,
    pub repository_created: bool,
    /// Created by ECR on the push, from the creation template for this prefix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_template: Option<String>,
    pub seconds: f64,
    /// A plan, not a push: the counts say what a push would do.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// The registry held the image before this run.
    pub already_present: bool,
}

impl Report {
    /// `digest`, `image-uri`, `repository-uri`, and the step summary.
    pub fn outputs_into(&self, o: &mut crate::ci::Outputs) {
        o.set("digest", self.digest.to_string());
        o.set("image-uri", self.image_uri.clone());
        o.set(
            "repository-uri",
            format!("{}/{}", self.registry, self.repository),
        );
        o.summary = self.markdown();
    }

    pub fn summary_line(&self) -> String {
        let b = &self.blobs;
        if self.dry_run {
            return format!(
                "dry run: would push {}: {} to upload ({}), {} already there{}",
                self.image_uri,
                plural(b.uploaded, "blob"),
                bytes(b.bytes_uploaded),
                b.present,
                match (&self.repository_template, self.repository_created) {
                    (Some(t), _) => format!(
                        "; ECR would create the repository from the creation template for '{t}'"
                    ),
                    (None, true) => "; the repository would be created".into(),
                    (None, false) => String::new(),
                }
            );
        }
        format!(
            "pushed {} in {}: {} uploaded ({}), {} mounted, {} already there; {}",
            self.image_uri,
            crate::duration::show_secs(self.seconds),
            plural(b.uploaded, "blob"),
            bytes(b.bytes_uploaded),
            b.mounted,
            b.present,
            plural(self.manifests_pushed, "manifest") + " written"
        )
    }

    /// The step summary (GitHub) in markdown.
    pub fn markdown(&self) -> String {
        let tags = if self.tags.is_empty() {
            "—".to_string()
        } else {
            self.tags
                .iter()
                .map(|t| format!("`{}` ({})", t.tag, t.action))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let b = &self.blobs;
        format!(
            "### hoist push\n\n| | |\n|---|---|\n| image | `{}` |\n| digest | `{}` |\n| tags | {} |\n| platforms | {} |\n| blobs | {} uploaded ({}), {} mounted, {} already there |\n| time | {} |\n",
            self.image_uri,
            self.digest,
            tags,
            if self.platforms.is_empty() {
                "—".into()
            } else {
                self.platforms.join(", ")
            },
            b.uploaded,
            bytes(b.bytes_uploaded),
            b.mounted,
            b.present,
            crate::duration::show_secs(self.seconds)
        )
    }
}
