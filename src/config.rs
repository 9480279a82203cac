//! The config file, `hoist.toml`: any option a flag holds, so a team can
//! commit its deploy settings and keep the CI step short.
//!
//! The file is a layer under the environment: before clap parses the
//! command line, `main` reads the file and sets `HOIST_<FLAG>` for each key
//! whose variable is not already set. clap stays the one definition of
//! every option (its parser, its default, its env name), and the precedence
//! is clap's own: flag > environment > file > default. `hoist config` tells
//! the file's values from the environment's by the names this module
//! recorded ([`Layer::origins`]).
//!
//! Shape: top-level keys are long flag names without the dashes and apply
//! to every command that has that flag; a `[push]`, `[gate]`, `[deploy]`,
//! `[rollback]`, `[ship]`, `[auth]` or `[doctor]` table applies only to that
//! command and wins over the top level (`hoist ship` reads `[push]`, `[gate]`,
//! `[deploy]` and then `[ship]`). Values are strings, numbers, booleans, or
//! arrays for the flags that repeat (`alarm = ["a", "b"]`).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::env::Env;
use crate::error::ConfigError;
use crate::output::ColorChoice;

/// The file looked for in the working directory.
pub const FILE_NAME: &str = "hoist.toml";
/// A config file is a page of settings; anything larger is a wrong path.
pub const LIMIT: u64 = 256 * 1024;

/// What a first, forgiving look at the command line tells before the file
/// is read: which command runs, which file to read, and how to print an
/// error about the file.
#[derive(Debug, Clone, Default)]
pub struct Pre {
    /// The subcommand (for `hoist config ship`: `ship`, the one explained).
    pub command: Option<String>,
    /// `--config` or HOIST_CONFIG.
    pub config: Option<PathBuf>,
    pub json: bool,
    pub color: Option<ColorChoice>,
}

/// Look at the command line without failing: a typo is clap's to report
/// in the real parse, after the file is applied.
pub fn pre_parse(cmd: &clap::Command, args: &[OsString]) -> Pre {
    let Ok(top) = cmd.clone().ignore_errors(true).try_get_matches_from(args) else {
        return Pre::default();
    };
    let mut levels = vec![&top];
    let mut command = None;
    if let Some((name, sub)) = top.subcommand() {
        // `hoist config ship --config x.toml`: the file, the command and
        // the output format are those of the command line explained.
        if name == "config" {
            let mut pre = pre_parse(cmd, &explained_args(args));
            if pre.command.as_deref() == Some("config") {
                pre.command = None;
            }
            return pre;
        }
        levels.insert(0, sub);
        command = Some(name.to_string());
    }
    // Global flags can come before or after the subcommand: the deepest
    // level that has a value knows it.
    let config = levels
        .iter()
        .find_map(|m| m.try_get_one::<PathBuf>("config").ok().flatten().cloned());
    let json = levels.iter().any(|m| {
        matches!(
            m.try_get_one::<crate::output::OutputFormat>("output"),
            Ok(Some(crate::output::OutputFormat::Json))
        )
    });
    let color = levels.iter().find_map(|m| {
        m.try_get_one::<ColorChoice>("color")
            .ok()
            .flatten()
            .copied()
    });
    Pre {
        command,
        config,
        json,
        color,
    }
}

/// The file's contribution: the variables to set, and where each came from.
#[derive(Debug, Clone, Default)]
pub struct Layer {
    /// The file read, if any.
    pub path: Option<PathBuf>,
    /// `HOIST_<FLAG>` = value, for variables the environment does not set.
    pub vars: Vec<(String, String)>,
    /// Variable name → where in the file it came from (`hoist.toml`,
    /// `hoist.toml [deploy]`).
    pub origins: BTreeMap<String, String>,
}

/// One option a file may set.
#[derive(Debug, Clone)]
struct Key {
    env: String,
    /// It repeats (`--alarm`, `--tag`): arrays are allowed.
    multiple: bool,
}

/// Every key a file may hold, per command; the global flags under "".
fn catalogue(cmd: &clap::Command) -> BTreeMap<String, BTreeMap<String, Key>> {
    fn keys<'a>(args: impl Iterator<Item = &'a clap::Arg>) -> BTreeMap<String, Key> {
        args.filter_map(|a| {
            let env = a.get_env()?.to_str()?.to_string();
            // The file cannot name another file.
            if env == "HOIST_CONFIG" {
                return None;
            }
            let name = match a.get_long() {
                Some(l) => l.to_string(),
                None => a.get_id().as_str().to_string(),
            };
            let multiple = a.get_value_delimiter().is_some();
            Some((name, Key { env, multiple }))
        })
        .collect()
    }
    let mut out = BTreeMap::new();
    out.insert(
        String::new(),
        keys(cmd.get_arguments().filter(|a| a.is_global_set())),
    );
    for sub in cmd.get_subcommands() {
        let k = keys(sub.get_arguments());
        if !k.is_empty() {
            out.insert(sub.get_name().to_string(), k);
        }
    }
    out
}

/// The tables a command reads, in the order they apply.
fn tables_for(command: &str) -> Vec<&str> {
    match command {
        "ship" => vec!["push", "gate", "deploy", "ship"],
        c => vec![c],
    }
}

/// Read the file (`--config`, HOIST_CONFIG, or `./hoist.toml` when it
/// exists) and work out which variables it sets for `pre.command`. Nothing
/// is changed here: `main` sets the variables.
pub fn load(cmd: &clap::Command, pre: &Pre, env: &Env) -> Result<Layer, ConfigError> {
    let (path, explicit) = match &pre.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(FILE_NAME), false),
    };
    if !explicit && std::fs::symlink_metadata(&path).is_err() {
        return Ok(Layer::default());
    }
    let text = crate::files::read_to_string(&path, "the config file", LIMIT).map_err(|e| {
        if explicit {
            e.hint("--config (or HOIST_CONFIG) names the file; without it hoist reads ./hoist.toml when there is one")
        } else {
            e
        }
    })?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        ConfigError::new(format!(
            "the config file {} is not valid TOML: {}",
            path.display(),
            crate::text::external(e.message(), crate::text::SNIPPET)
        ))
        .hint(match e.span() {
            Some(span) => format!(
                "see line {} of {}; keys are long flag names, e.g. repository = \"team/app\"",
                text.get(..span.start)
                    .unwrap_or(&text)
                    .lines()
                    .count()
                    .max(1),
                path.display()
            ),
            None => "keys are long flag names, e.g. repository = \"team/app\"".to_string(),
        })
    })?;
    let settings = read(&catalogue(cmd), &table, &path)?;
    let mut layer = Layer {
        path: Some(path.clone()),
        ..Layer::default()
    };
    let shown = path.display().to_string();
    let mut chosen: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (env_name, value) in &settings.top {
        chosen.insert(env_name.clone(), (value.clone(), shown.clone()));
    }
    if let Some(command) = &pre.command {
        for t in tables_for(command) {
            for (env_name, value) in settings.tables.get(t).into_iter().flatten() {
                chosen.insert(env_name.clone(), (value.clone(), format!("{shown} [{t}]")));
            }
        }
    }
    for (env_name, (value, origin)) in chosen {
        // The environment wins over the file; an empty variable counts as
        // unset (CI templates export empty inputs).
        if env.get(&env_name).is_some() {
            continue;
        }
        layer.vars.push((env_name.clone(), value));
        layer.origins.insert(env_name, origin);
    }
    Ok(layer)
}

/// The file's values as `HOIST_<FLAG>` values: the top level, and per table.
#[derive(Debug, Default, PartialEq)]
struct Settings {
    top: BTreeMap<String, String>,
    tables: BTreeMap<String, BTreeMap<String, String>>,
}

/// Check every key against the flags and turn the values into the text a
/// variable holds. Unknown keys are refused: a misspelt key silently
/// ignored is a setting that silently does not apply.
fn read(
    catalogue: &BTreeMap<String, BTreeMap<String, Key>>,
    table: &toml::Table,
    path: &Path,
) -> Result<Settings, ConfigError> {
    let global = &catalogue[""];
    let mut everything: BTreeMap<&str, &Key> = BTreeMap::new();
    for keys in catalogue.values() {
        for (k, v) in keys {
            everything.insert(k, v);
        }
    }
    let mut out = Settings::default();
    for (k, v) in table {
        if let toml::Value::Table(inner) = v {
            let Some(own) = catalogue.get(k.as_str()).filter(|_| !k.is_empty()) else {
                return Err(unknown(path, k, None, &everything, catalogue));
            };
            let mut values = BTreeMap::new();
            for (ik, iv) in inner {
                let Some(key) = own.get(ik.as_str()).or_else(|| global.get(ik.as_str())) else {
                    return Err(unknown(path, ik, Some(k), &everything, catalogue));
                };
                values.insert(key.env.clone(), value(path, &format!("{k}.{ik}"), key, iv)?);
            }
            out.tables.insert(k.clone(), values);
        } else {
            let Some(key) = everything.get(k.as_str()) else {
                return Err(unknown(path, k, None, &everything, catalogue));
            };
            out.top.insert(key.env.clone(), value(path, k, key, v)?);
        }
    }
    Ok(out)
}

fn unknown(
    path: &Path,
    key: &str,
    table: Option<&str>,
    everything: &BTreeMap<&str, &Key>,
    catalogue: &BTreeMap<String, BTreeMap<String, Key>>,
) -> ConfigError {
    let shown = crate::text::external(key, 80);
    let place = match table {
        Some(t) => format!("[{t}] {shown}"),
        None => shown.clone(),
    };
    let message = format!(
        "unknown key '{place}' in the config file {}",
        path.display()
    );
    let commands: Vec<&str> = catalogue
        .keys()
        .filter(|c| !c.is_empty())
        .map(String::as_str)
        .collect();
    let hint = if let (Some(t), true) = (table, everything.contains_key(key)) {
        let takers: Vec<&str> = catalogue
            .iter()
            .filter(|(c, keys)| !c.is_empty() && keys.contains_key(key))
            .map(|(c, _)| c.as_str())
            .collect();
        format!(
            "hoist {t} has no --{key}: move it to the top level or under [{}]",
            takers.join("] or [")
        )
    } else if table.is_none() && catalogue.contains_key(key) {
        format!(
            "[{key}] is a table of settings for hoist {key}: write it as [{key}] with key = value lines under it"
        )
    } else {
        let near = everything
            .keys()
            .copied()
            .chain(commands.iter().copied())
            .map(|k| (strsim::jaro_winkler(key, k), k))
            .filter(|(score, _)| *score > 0.85)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        match near {
            Some((_, k)) => format!(
                "did you mean '{k}'? Remove or rename the key; keys are long flag names without the dashes"
            ),
            None => format!(
                "remove it: keys are long flag names without the dashes (e.g. repository, severity-threshold), at the top level or in a table named after a command ({}); `hoist COMMAND --help` lists them",
                commands.join(", ")
            ),
        }
    };
    ConfigError::new(message).hint(hint)
}

/// A TOML value as the text of its variable.
fn value(path: &Path, key: &str, k: &Key, v: &toml::Value) -> Result<String, ConfigError> {
    let bad = |why: &str| {
        ConfigError::new(format!(
            "the config file {} sets '{key}' to {why}",
            path.display()
        ))
    };
    let scalar = |v: &toml::Value| -> Option<String> {
        match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        }
    };
    match v {
        toml::Value::Array(items) => {
            if !k.multiple {
                return Err(bad("a list, but --{key} takes one value")
                    .hint(format!("write {key} = \"VALUE\"")));
            }
            let mut parts = Vec::new();
            for item in items {
                let Some(s) = scalar(item) else {
                    return Err(bad("a list holding a table or a date")
                        .hint(format!("write {key} = [\"a\", \"b\"]")));
                };
                if s.contains(',') {
                    return Err(bad(&format!(
                        "a list with an item holding a comma ('{}')",
                        crate::text::external(&s, 80)
                    ))
                    .hint("the comma separates values: give each value as its own item"));
                }
                parts.push(s);
            }
            Ok(parts.join(","))
        }
        other => scalar(other).ok_or_else(|| {
            bad("a date or a table").hint(format!(
                "write {key} = \"VALUE\" (durations too, e.g. \"5m\")"
            ))
        }),
    }
}

// --- `hoist config` ------------------------------------------------------

/// Where a setting's value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// The command line.
    Flag,
    /// A `HOIST_<FLAG>` environment variable.
    Env,
    /// The config file.
    File,
    /// hoist's default.
    Default,
    /// Not set anywhere.
    Unset,
}

#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Setting {
    /// The flag, e.g. `--region` (or the argument's name, e.g. `SOURCE`).
    pub option: String,
    /// Comma-separated for options that repeat; null when unset.
    pub value: Option<String>,
    pub origin: Origin,
    /// The variable that sets it (`HOIST_REGION`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// With origin `file`: the file, and the table the value was in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// What `hoist config` prints.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
pub struct Report {
    /// The config file read, if any.
    pub file: Option<String>,
    /// The command explained; null: only the options every command shares.
    pub explained: Option<String>,
    pub settings: Vec<Setting>,
}

/// `hoist config [COMMAND [FLAGS]]`: parse the command line it explains (the
/// original one without the word `config`) as the command would, and say
/// for each option where its value came from.
pub fn explain(cmd: &clap::Command, args: &[OsString], layer: &Layer) -> Report {
    let explained = explained_args(args);
    let top = cmd
        .clone()
        .ignore_errors(true)
        .try_get_matches_from(&explained)
        .ok();
    let (name, matches) = match top.as_ref().and_then(|m| m.subcommand()) {
        Some((name, sub)) => (Some(name.to_string()), Some(sub)),
        None => (None, top.as_ref()),
    };
    let mut args: Vec<&clap::Arg> = Vec::new();
    if let Some(sub) = name.as_deref().and_then(|n| cmd.find_subcommand(n)) {
        args.extend(sub.get_arguments());
    }
    args.extend(cmd.get_arguments().filter(|a| a.is_global_set()));
    let settings = args
        .into_iter()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version" | "config"))
        .map(|a| setting(a, matches, layer))
        .collect();
    Report {
        file: layer.path.as_ref().map(|p| p.display().to_string()),
        explained: name,
        settings,
    }
}

/// The command line `hoist config` explains: the one given, without the
/// word `config` (the first argument that is exactly that).
fn explained_args(args: &[OsString]) -> Vec<OsString> {
    let mut explained: Vec<OsString> = Vec::with_capacity(args.len());
    let mut dropped = false;
    for (i, a) in args.iter().enumerate() {
        if i > 0 && !dropped && a == "config" {
            dropped = true;
            continue;
        }
        explained.push(a.clone());
    }
    explained
}

fn setting(a: &clap::Arg, m: Option<&clap::ArgMatches>, layer: &Layer) -> Setting {
    let id = a.get_id().as_str();
    let env = a.get_env().and_then(|e| e.to_str()).map(str::to_string);
    let option = match a.get_long() {
        Some(l) => format!("--{l}"),
        None => id.to_ascii_uppercase(),
    };
    let value = m.and_then(|m| m.try_get_raw(id).ok().flatten()).map(|raw| {
        raw.map(|v| crate::text::external(&v.to_string_lossy(), 200))
            .collect::<Vec<_>>()
            .join(",")
    });
    let source = m.and_then(|m| m.value_source(id));
    let mut file = None;
    let origin = match source {
        Some(clap::parser::ValueSource::CommandLine) => Origin::Flag,
        Some(clap::parser::ValueSource::EnvVariable) => {
            match env.as_ref().and_then(|e| layer.origins.get(e)) {
                Some(f) => {
                    file = Some(f.clone());
                    Origin::File
                }
                None => Origin::Env,
            }
        }
        Some(clap::parser::ValueSource::DefaultValue) => Origin::Default,
        _ => Origin::Unset,
    };
    Setting {
        option,
        value: if origin == Origin::Unset { None } else { value },
        origin,
        env,
        file,
    }
}

impl Report {
    /// Whether the command line explained asks for JSON (`hoist config
    /// ship --output json`).
    pub fn json(&self) -> bool {
        self.settings
            .iter()
            .any(|s| s.option == "--output" && s.value.as_deref() == Some("json"))
    }

    /// The table `hoist config` prints: option, value, origin.
    pub fn text(&self) -> String {
        let mut out = match &self.file {
            Some(f) => format!("config file: {f}\n"),
            None => format!("config file: none ({FILE_NAME} not found; --config names one)\n"),
        };
        out.push_str(&match &self.explained {
            Some(c) => format!("hoist {c}:\n"),
            None => {
                "options every command shares (`hoist config COMMAND` for a command's):\n".into()
            }
        });
        let width = self
            .settings
            .iter()
            .map(|s| s.option.len())
            .max()
            .unwrap_or(0);
        let values: Vec<String> = self
            .settings
            .iter()
            .map(|s| s.value.clone().unwrap_or_else(|| "-".into()))
            .collect();
        let vwidth = values
            .iter()
            .map(|v| v.chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        for (s, v) in self.settings.iter().zip(values) {
            let origin = match s.origin {
                Origin::Flag => "flag".to_string(),
                Origin::Env => format!("env {}", s.env.as_deref().unwrap_or("?")),
                Origin::File => format!("file {}", s.file.as_deref().unwrap_or("?")),
                Origin::Default => "default".to_string(),
                Origin::Unset => "unset".to_string(),
            };
            out.push_str(&format!("  {:width$}  {v:vwidth$}  {origin}\n", s.option));
        }
        out.trim_end().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn settings(text: &str) -> Result<Settings, ConfigError> {
        let table: toml::Table = text.parse().unwrap();
        read(
            &catalogue(&crate::cli::Cli::command()),
            &table,
            Path::new("hoist.toml"),
        )
    }

    #[test]
    fn keys_become_variables() {
        let s = settings(
            r#"
            repository = "team/app"
            severity-threshold = "HIGH"
            alarm = ["a", "b"]
            jobs = 8
            create-repository = true
            region = "eu-west-1"
            [deploy]
            timeout = "15m"
            [ship]
            function = "app"
            "#,
        )
        .unwrap();
        let top: Vec<(&str, &str)> = s
            .top
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            top,
            [
                ("HOIST_ALARM", "a,b"),
                ("HOIST_CREATE_REPOSITORY", "true"),
                ("HOIST_JOBS", "8"),
                ("HOIST_REGION", "eu-west-1"),
                ("HOIST_REPOSITORY", "team/app"),
                ("HOIST_SEVERITY_THRESHOLD", "HIGH"),
            ]
        );
        assert_eq!(s.tables["deploy"]["HOIST_TIMEOUT"], "15m");
        assert_eq!(s.tables["ship"]["HOIST_FUNCTION"], "app");
    }

    #[test]
    fn refusals_name_the_key_and_the_fix() {
        let table = [
            (
                "repostory = \"x\"",
                "unknown key 'repostory'",
                "did you mean 'repository'",
            ),
            (
                "[push]\nfunction = \"f\"",
                "unknown key '[push] function'",
                "hoist push has no --function",
            ),
            (
                "[deploy]\nbogus = 1",
                "unknown key '[deploy] bogus'",
                "remove it",
            ),
            (
                "[bogus]\nregion = \"x\"",
                "unknown key 'bogus'",
                "remove it",
            ),
            (
                "config = \"other.toml\"",
                "unknown key 'config'",
                "remove it",
            ),
            (
                "region = [\"a\"]",
                "sets 'region' to a list",
                "write region = \"VALUE\"",
            ),
            ("alarm = [\"a,b\"]", "an item holding a comma", "own item"),
            (
                "repository = 1979-05-27",
                "a date or a table",
                "write repository",
            ),
        ];
        for (text, message, hint) in table {
            let e = settings(text).unwrap_err();
            assert!(e.message.contains(message), "{text}: {}", e.message);
            assert!(e.message.contains("hoist.toml"), "{text}: {}", e.message);
            let h = e.hint.unwrap_or_default();
            assert!(h.contains(hint), "{text}: {h}");
        }
    }

    #[test]
    fn ship_reads_the_stage_tables_then_its_own() {
        assert_eq!(tables_for("ship"), ["push", "gate", "deploy", "ship"]);
        assert_eq!(tables_for("gate"), ["gate"]);
    }

    #[test]
    fn colour_choice() {
        use crate::output::ColorChoice::*;
        let table = [
            (Auto, None, None, true, true),
            (Auto, Some("1"), None, true, false),
            (Auto, Some(""), None, true, true),
            (Auto, None, Some("dumb"), true, false),
            (Auto, None, None, false, false),
            (Always, Some("1"), None, false, true),
            (Never, None, None, true, false),
        ];
        for (choice, no_color, term, tty, want) in table {
            assert_eq!(
                choice.enabled(no_color, term, tty),
                want,
                "{choice:?} {no_color:?} {term:?} {tty}"
            );
        }
    }
}
