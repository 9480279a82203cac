//! A `docker save` image's layers: each distinct one once, reused from a
//! manifest already under one of the tags, or hashed without sending.

use futures_util::StreamExt;

use super::plan;
use crate::image::stream::Sent;
use crate::image::{Digest, DockerImage, DockerLayer, ImageError};
use crate::registry::{Registry, RegistryError};

/// A `docker save` image's layers, each distinct one once: a layer listed
/// again (same diff_id) is the same content, and hoist's deterministic
/// compression makes it the same blob. Returns the distinct layers and, for
/// each layer of the image, which of them it is.
pub(super) fn distinct_layers(d: &DockerImage) -> (Vec<&DockerLayer>, Vec<usize>) {
    let mut index: std::collections::HashMap<&Digest, usize> = Default::default();
    let mut distinct = Vec::new();
    let positions = d
        .layers
        .iter()
        .map(|l| {
            *index.entry(&l.diff_id).or_insert_with(|| {
                distinct.push(l);
                distinct.len() - 1
            })
        })
        .collect();
    (distinct, positions)
}

/// The layers of a manifest already under one of the tags, when it is a
/// manifest of this image (see [`plan::reusable_layers`]): a re-push of a
/// `docker save` archive then uploads nothing.
pub(super) async fn reuse_layers(
    registry: &Registry,
    name: &str,
    d: &DockerImage,
    lookups: &[(String, Option<Digest>)],
) -> Result<Option<(String, Vec<Sent>)>, RegistryError> {
    let config = Sent {
        digest: d.config.digest.clone(),
        size: d.config.size,
    };
    let mut tried = std::collections::HashSet::new();
    for (tag, existing) in lookups {
        let Some(existing) = existing else { continue };
        if !tried.insert(existing) {
            continue;
        }
        let (bytes, _) = registry.get_manifest(name, &existing.to_string()).await?;
        if let Some(layers) = plan::reusable_layers(&bytes, &config, d.layers.len()) {
            return Ok(Some((tag.clone(), layers)));
        }
    }
    Ok(None)
}

/// A docker layer's digest and size as a push would send it, sending nothing.
pub(super) async fn hash_only(layer: &crate::image::DockerLayer) -> Result<Sent, ImageError> {
    let stream = crate::image::stream::docker_layer(layer, std::sync::Arc::new(|_| {}));
    let (body, verdict) = stream.into_parts();
    body.for_each(|_| async {}).await;
    verdict.await.map_err(|_| ImageError::Read {
        what: format!("layer {}", layer.name),
        source: std::io::Error::other("the compressor stopped"),
    })?
}
