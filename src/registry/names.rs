//! ECR's rules for repository names and tags, checked before any call.

use crate::error::ConfigError;

/// ECR's tag rules: 1–300 characters; registries in general take
/// `[A-Za-z0-9_][A-Za-z0-9._-]*`.
pub fn check_tag(tag: &str) -> Result<(), ConfigError> {
    let ok_first = tag
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let ok_rest = tag
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if tag.is_empty() || tag.len() > 300 || !ok_first || !ok_rest {
        return Err(ConfigError::new(format!("'{tag}' is not a valid tag"))
            .hint("a tag is 1 to 300 letters, digits, '_', '.' and '-', and starts with a letter, digit or '_'"));
    }
    Ok(())
}

/// ECR repository names: lowercase, `[a-z0-9]` runs separated by `.`, `_`,
/// `-` or `/`, 2–256 characters.
pub fn check_repository(name: &str) -> Result<(), ConfigError> {
    let valid = (2..=256).contains(&name.len())
        && name.split('/').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && part.starts_with(|c: char| c.is_ascii_alphanumeric())
                && part.ends_with(|c: char| c.is_ascii_alphanumeric())
        });
    if !valid {
        return Err(ConfigError::new(format!("'{name}' is not a valid ECR repository name"))
            .hint("use the repository's name only (e.g. team/app), lowercase, without the registry host or a tag"));
    }
    Ok(())
}
