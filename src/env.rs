//! One snapshot of the process environment, taken in `main` and passed down.
//!
//! Nothing else in hoist reads `std::env`: tests build an [`Env`] from pairs and
//! run in parallel without stepping on each other (style.md, "ambient-id").

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

#[derive(Clone, Debug, Default)]
pub struct Env {
    vars: BTreeMap<String, String>,
}

impl Env {
    /// The real environment, read once.
    pub fn from_process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value; an empty value counts as unset, as CI systems often
    /// export empty variables.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }

    pub fn is_true(&self, name: &str) -> bool {
        matches!(self.get(name), Some(v) if v.eq_ignore_ascii_case("true") || v == "1")
    }

    /// The variables as a typed struct (envy): field `github_output` reads
    /// `GITHUB_OUTPUT`.
    pub fn typed<T: DeserializeOwned>(&self) -> Result<T, envy::Error> {
        envy::from_iter(
            self.vars
                .iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.clone(), v.clone())),
        )
    }

    /// The first of several spellings that is set (`HTTPS_PROXY`, `https_proxy`).
    pub fn first(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.get(n))
    }
}
