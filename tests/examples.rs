//! Every example in the repository is valid: the hoist options of each —
//! the GitHub workflow's action inputs, the GitLab component's inputs, the
//! Buildkite pipelines' environment and plugin options, the CircleCI and
//! Bitbucket commands, and the README's `hoist` command lines and YAML and
//! Groovy snippets — are handed
//! to hoist the way the CI system would, and hoist must accept every one of
//! them. An example that names an option hoist refuses, or a value it
//! cannot parse, fails here and not in a user's pipeline.
//!
//! How acceptance is seen without AWS: hoist checks every flag of every
//! stage before it opens the image or makes a call, so a run whose SOURCE
//! does not exist and whose AWS endpoint refuses everything gets as far as
//! the image (an error naming the sentinel path) or AWS's refusal only when
//! all its options were accepted.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

const SENTINEL: &str = "/nonexistent/hoist-example-image";

fn repo_file(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path))
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&repo_file(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// CI expressions and shell variables as a CI system would expand them: to
/// some plain value.
fn expand(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    while let Some(i) = rest.find("${{") {
        out.push_str(&rest[..i]);
        let end = rest[i..]
            .find("}}")
            .map(|j| i + j + 2)
            .unwrap_or(rest.len());
        // `${{ steps.push.outputs.digest }}` holds a digest.
        let expression = rest[i..end].to_ascii_lowercase();
        if expression.contains("digest") {
            out.push_str(&format!("sha256:{}", "ab".repeat(32)));
        } else {
            out.push_str("x0123");
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    // $VAR and ${VAR}
    let mut expanded = String::new();
    let mut chars = out.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_' || *n == '{')
        {
            let mut name = String::new();
            if chars.peek() == Some(&'{') {
                chars.next();
                for n in chars.by_ref() {
                    if n == '}' {
                        break;
                    }
                    name.push(n);
                }
            } else {
                while let Some(n) = chars.next_if(|n| n.is_ascii_alphanumeric() || *n == '_') {
                    name.push(n);
                }
            }
            // What such a variable holds in a pipeline.
            let digest = format!("sha256:{}", "ab".repeat(32));
            let name = name.to_ascii_uppercase();
            expanded.push_str(&if name.contains("IMAGE_URI") {
                format!("123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app@{digest}")
            } else if name.contains("DIGEST") {
                digest
            } else {
                "x0123".to_string()
            });
        } else {
            expanded.push(c);
        }
    }
    expanded
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Sequence(items) => items.iter().map(scalar).collect::<Vec<_>>().join(","),
        Value::Null => String::new(),
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Run hoist as the example would, and check that every option was taken.
fn accepted(what: &str, args: &[String], env: &BTreeMap<String, String>) {
    // AWS refuses every call at once (nothing leaves the machine, and no
    // retries are spent on it): a refusal reached means the options were
    // all taken.
    let aws = common::server::serve(|_req| async {
        let mut res = common::server::full(
            403,
            r#"{"__type":"AccessDeniedException","message":"examples are not deployed"}"#,
        );
        res.headers_mut()
            .insert("x-amzn-ErrorType", "AccessDeniedException".parse().unwrap());
        Ok(res)
    });
    let endpoint = format!("http://{}", aws.addr);
    let mut env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("AWS_ENDPOINT_URL", &endpoint));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Files an example names (an allow-list, a smoke event, a policy) exist
    // in the job's checkout: make them, with content hoist accepts.
    let cwd = tempfile::tempdir().unwrap();
    let files = [
        ("--allowlist", "HOIST_ALLOWLIST", ""),
        ("--smoke-event", "HOIST_SMOKE_EVENT", "{}"),
        (
            "--session-policy",
            "HOIST_SESSION_POLICY",
            r#"{"Version":"2012-10-17","Statement":[]}"#,
        ),
    ];
    for (flag, var, content) in files {
        let named = args
            .windows(2)
            .filter(|w| w[0] == flag)
            .map(|w| w[1])
            .chain(env.iter().filter(|(k, _)| *k == var).map(|(_, v)| *v));
        for path in named {
            let path = cwd.path().join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
    }
    let run = common::hoist_in(Some(cwd.path()), &args, &env);
    let reached_the_image = run.code == 2 && run.stderr.contains(SENTINEL);
    let reached_aws = run.stderr.contains("examples are not deployed");
    assert!(
        reached_the_image || reached_aws,
        "{what}: hoist refused the example's options (exit {}):\n{}\nargs: {args:?}\nenv: {env:?}",
        run.code,
        run.stderr
    );
}

/// The action's inputs and the HOIST_ variable each becomes (action.yml's
/// ship step: `HOIST_ACTION_<FLAG>: ${{ inputs.NAME }}`).
fn action_inputs() -> BTreeMap<String, String> {
    let text = repo_file("action.yml");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix("HOIST_ACTION_") else {
            continue;
        };
        let Some((flag, value)) = rest.split_once(':') else {
            continue;
        };
        let Some(input) = value
            .trim()
            .strip_prefix("${{ inputs.")
            .and_then(|v| v.strip_suffix("}}"))
        else {
            continue;
        };
        map.insert(input.trim().to_string(), format!("HOIST_{flag}"));
    }
    assert!(
        map.len() > 20,
        "action.yml's ship step maps its inputs: {map:?}"
    );
    map
}

#[test]
fn the_github_workflow_uses_inputs_hoist_takes() {
    let inputs = action_inputs();
    let declared = yaml("action.yml")["inputs"].as_mapping().unwrap().clone();
    let workflow = yaml("examples/github/deploy.yml");
    let mut checked = 0;
    for (_, job) in workflow["jobs"].as_mapping().unwrap() {
        for step in job["steps"].as_sequence().unwrap() {
            let uses = step["uses"].as_str().unwrap_or_default();
            if !uses.contains("/hoist@") {
                continue;
            }
            let mut env = BTreeMap::new();
            for (k, v) in step["with"].as_mapping().unwrap() {
                let k = k.as_str().unwrap();
                assert!(
                    declared.contains_key(Value::String(k.into())),
                    "the workflow passes input '{k}', which action.yml does not declare"
                );
                let Some(var) = inputs.get(k) else { continue };
                let value = if var == "HOIST_SOURCE" {
                    SENTINEL.to_string()
                } else {
                    expand(&scalar(v))
                };
                env.insert(var.clone(), value.lines().collect::<Vec<_>>().join(","));
            }
            accepted(
                &format!("examples/github/deploy.yml ({uses})"),
                &["ship".into()],
                &env,
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1, "the workflow uses the action once");
}

/// The component's inputs and the HOIST_ variable each becomes.
fn component_inputs() -> BTreeMap<String, String> {
    let text = repo_file("templates/hoist/template.yml");
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("HOIST_INPUT_")
            && let Some((flag, value)) = rest.split_once(':')
            && let Some(input) = value
                .trim()
                .strip_prefix("$[[ inputs.")
                .and_then(|v| v.strip_suffix("]]"))
        {
            map.insert(input.trim().to_string(), format!("HOIST_{flag}"));
        }
        if let Some(rest) = line.strip_prefix("HOIST_TYPED_INPUTS:") {
            for pair in rest.trim().trim_matches('"').split(' ') {
                if let Some((flag, value)) = pair.split_once('=')
                    && let Some(input) = value
                        .strip_prefix("$[[ inputs.")
                        .or_else(|| value.strip_prefix("$[[inputs."))
                {
                    map.insert(
                        input.trim_end_matches("]]").trim().to_string(),
                        format!("HOIST_{flag}"),
                    );
                }
            }
        }
    }
    // The typed string is split over spaces inside `$[[ … ]]`: read it again
    // by pattern.
    let typed = text
        .lines()
        .find(|l| l.trim().starts_with("HOIST_TYPED_INPUTS:"))
        .unwrap_or_default();
    for part in typed.split(" ]]") {
        if let Some((left, input)) = part.rsplit_once("$[[ inputs.")
            && let Some(flag) = left
                .trim()
                .trim_start_matches('"')
                .rsplit(' ')
                .next()
                .and_then(|f| f.strip_suffix('='))
        {
            let flag = flag
                .trim_start_matches("HOIST_TYPED_INPUTS:")
                .trim()
                .trim_start_matches('"');
            map.insert(input.trim().to_string(), format!("HOIST_{flag}"));
        }
    }
    map
}

#[test]
fn the_gitlab_example_uses_inputs_hoist_takes() {
    let inputs = component_inputs();
    let spec: Value = serde_yaml_ng::from_str(
        repo_file("templates/hoist/template.yml")
            .split("\n---")
            .next()
            .unwrap(),
    )
    .unwrap();
    let declared = spec["spec"]["inputs"].as_mapping().unwrap().clone();
    let pipeline = yaml("examples/gitlab/.gitlab-ci.yml");
    let include = &pipeline["include"].as_sequence().unwrap()[0];
    let mut env = BTreeMap::new();
    for (k, v) in include["inputs"].as_mapping().unwrap() {
        let k = k.as_str().unwrap();
        assert!(
            declared.contains_key(Value::String(k.into())),
            "the example passes input '{k}', which the component does not declare"
        );
        let Some(var) = inputs.get(k) else { continue };
        let value = if var == "HOIST_SOURCE" {
            SENTINEL.to_string()
        } else {
            expand(&scalar(v))
        };
        env.insert(var.clone(), value);
    }
    assert!(
        env.contains_key("HOIST_STRATEGY") && env.contains_key("HOIST_MAX_ERRORS"),
        "{env:?}"
    );
    accepted("examples/gitlab/.gitlab-ci.yml", &["ship".into()], &env);
}

#[test]
fn the_buildkite_pipelines_use_options_hoist_takes() {
    // The plain pipeline: a command and HOIST_* in the step's env.
    let pipeline = yaml("examples/buildkite/pipeline.yml");
    let mut checked = 0;
    for step in pipeline["steps"].as_sequence().unwrap() {
        let Some(command) = step["command"].as_str() else {
            continue;
        };
        if !command.starts_with("hoist ") {
            continue;
        }
        let mut env = BTreeMap::new();
        if let Some(vars) = step["env"].as_mapping() {
            for (k, v) in vars {
                env.insert(k.as_str().unwrap().to_string(), expand(&scalar(v)));
            }
        }
        accepted(
            "examples/buildkite/pipeline.yml",
            &command_args(command),
            &env,
        );
        checked += 1;
    }
    assert!(checked >= 1);
    // The plugin: each option becomes HOIST_<OPTION>, lists comma-separated.
    let plugin_own = ["command", "binary", "docker", "docker-image"];
    let pipeline = yaml("examples/buildkite/plugin-pipeline.yml");
    let mut checked = 0;
    for step in pipeline["steps"].as_sequence().unwrap() {
        let Some(plugins) = step["plugins"].as_sequence() else {
            continue;
        };
        for plugin in plugins {
            for (name, config) in plugin.as_mapping().unwrap() {
                if !name.as_str().unwrap().contains("hoist") {
                    continue;
                }
                let mut env = BTreeMap::new();
                let mut command = "ship".to_string();
                for (k, v) in config.as_mapping().unwrap() {
                    let k = k.as_str().unwrap();
                    if k == "command" {
                        command = scalar(v);
                    }
                    if plugin_own.contains(&k) {
                        continue;
                    }
                    let var = format!("HOIST_{}", k.to_ascii_uppercase().replace('-', "_"));
                    let value = if var == "HOIST_SOURCE" {
                        SENTINEL.to_string()
                    } else {
                        expand(&scalar(v))
                    };
                    env.insert(var, value);
                }
                accepted("examples/buildkite/plugin-pipeline.yml", &[command], &env);
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 1);
}

/// `hoist ship image.tar --flag …` as argv, SOURCE replaced.
fn command_args(command: &str) -> Vec<String> {
    let words = shlex::split(&expand(command)).unwrap_or_else(|| panic!("cannot split: {command}"));
    assert_eq!(words[0], "hoist", "{command}");
    let mut args: Vec<String> = words[1..].to_vec();
    // The first positional after the subcommand is SOURCE (ship, push) or
    // IMAGE (gate, deploy).
    if let Some(i) = args
        .iter()
        .skip(1)
        .position(|a| !a.starts_with('-'))
        .map(|i| i + 1)
        && matches!(args[0].as_str(), "ship" | "push")
    {
        args[i] = SENTINEL.into();
    }
    args
}

#[test]
fn the_circleci_and_bitbucket_commands_use_flags_hoist_takes() {
    for path in [
        "examples/circleci/config.yml",
        "examples/bitbucket/bitbucket-pipelines.yml",
    ] {
        let text = repo_file(path);
        let mut checked = 0;
        for line in text.lines() {
            let line = line
                .trim()
                .trim_start_matches("- ")
                .trim_start_matches("command:")
                .trim();
            if line.starts_with("hoist ship") || line.starts_with("hoist push") {
                accepted(path, &command_args(line), &BTreeMap::new());
                checked += 1;
            }
        }
        assert!(checked >= 1, "{path} runs hoist");
    }
}

/// The README's command lines (```sh blocks; `\` continues a line).
#[test]
fn the_readmes_command_lines_use_flags_hoist_takes() {
    let readme = repo_file("README.md");
    let mut in_sh = false;
    let mut lines = vec![];
    let mut current = String::new();
    for line in readme.lines() {
        if line.starts_with("```") {
            in_sh = line.trim() == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        let body = line.split(" # ").next().unwrap_or_default().trim_end();
        current.push_str(body.trim_end_matches('\\'));
        current.push(' ');
        if !body.ends_with('\\') {
            lines.push(std::mem::take(&mut current));
        }
    }
    let digest = format!("sha256:{}", "ab".repeat(32));
    let mut checked = 0;
    for line in lines {
        let line = line.trim();
        // `digest=$(hoist push …)` and `eval "$(hoist auth …)"` too.
        let cmd = match (line.find("$(hoist "), line.rfind(')')) {
            (Some(i), Some(j)) if j > i => &line[i + 2..j],
            _ => match line.find("hoist ") {
                Some(i) => &line[i..],
                None => continue,
            },
        };
        let cmd = cmd.trim();
        let sub = cmd.split_whitespace().nth(1).unwrap_or_default();
        if !matches!(sub, "ship" | "push" | "gate" | "deploy" | "rollback") {
            continue;
        }
        let cmd = cmd.replace("sha256:…", &digest).replace('…', "x");
        accepted(
            &format!("README: {line}"),
            &command_args(&cmd),
            &BTreeMap::new(),
        );
        checked += 1;
    }
    assert!(checked >= 8, "the README's examples were found: {checked}");
}

/// The README's YAML and Groovy snippets, checked as the CI system would
/// run them: the action's `with:` inputs, the component's `inputs:`, the
/// Buildkite plugin's options, and every `hoist` command line in a `run:`,
/// `script:`, `command:` or Jenkins `sh` step.
#[test]
fn the_readmes_yaml_and_groovy_snippets_use_options_hoist_takes() {
    let readme = repo_file("README.md");
    let mut blocks: Vec<(String, String)> = vec![];
    let mut current: Option<(String, String)> = None;
    for line in readme.lines() {
        if let Some((lang, body)) = current.as_mut() {
            if line.trim() == "```" {
                blocks.push((lang.clone(), std::mem::take(body)));
                current = None;
            } else {
                body.push_str(line);
                body.push('\n');
            }
        } else if let Some(lang) = line.strip_prefix("```")
            && matches!(lang.trim(), "yaml" | "groovy")
        {
            current = Some((lang.trim().to_string(), String::new()));
        }
    }
    let action = yaml("action.yml")["inputs"].as_mapping().unwrap().clone();
    let action_vars = action_inputs();
    let component_vars = component_inputs();
    let plugin: Value = yaml("plugin.yml");
    let plugin_props = plugin["configuration"]["properties"]
        .as_mapping()
        .unwrap()
        .clone();
    let mut checked = 0;
    for (lang, body) in &blocks {
        if lang == "groovy" {
            // environment { KEY = 'value' } and sh '…' steps.
            let mut env = BTreeMap::new();
            for line in body.lines() {
                let line = line.trim();
                if let Some((k, v)) = line.split_once(" = ")
                    && k.trim().starts_with("HOIST_")
                {
                    env.insert(
                        k.trim().to_string(),
                        v.trim().trim_matches('\'').to_string(),
                    );
                }
            }
            for line in body.lines() {
                if let Some(cmd) = line
                    .trim()
                    .strip_prefix("sh '")
                    .and_then(|c| c.strip_suffix('\''))
                    && cmd.starts_with("hoist ")
                {
                    accepted("README (Jenkins)", &command_args(cmd), &env);
                    checked += 1;
                }
            }
            continue;
        }
        let doc: Value = serde_yaml_ng::from_str(body)
            .unwrap_or_else(|e| panic!("a README yaml block is not YAML ({e}):\n{body}"));
        let mut stack = vec![&doc];
        while let Some(v) = stack.pop() {
            match v {
                Value::Mapping(m) => {
                    // The action.
                    if m.get("uses")
                        .and_then(Value::as_str)
                        .is_some_and(|u| u.contains("/hoist@"))
                    {
                        let mut env = BTreeMap::new();
                        for (k, v) in m
                            .get("with")
                            .and_then(Value::as_mapping)
                            .into_iter()
                            .flatten()
                        {
                            let k = k.as_str().unwrap();
                            assert!(
                                action.contains_key(Value::String(k.into())),
                                "README: the action has no input '{k}'"
                            );
                            if let Some(var) = action_vars.get(k) {
                                let value = if var == "HOIST_SOURCE" {
                                    SENTINEL.to_string()
                                } else {
                                    expand(&scalar(v))
                                };
                                env.insert(var.clone(), value);
                            }
                        }
                        accepted("README (the action)", &["ship".into()], &env);
                        checked += 1;
                    }
                    // The component.
                    if m.get("component")
                        .and_then(Value::as_str)
                        .is_some_and(|c| c.contains("/hoist@"))
                    {
                        let mut env = BTreeMap::new();
                        for (k, v) in m
                            .get("inputs")
                            .and_then(Value::as_mapping)
                            .into_iter()
                            .flatten()
                        {
                            let k = k.as_str().unwrap();
                            let var = component_vars.get(k);
                            assert!(
                                var.is_some()
                                    || [
                                        "stage",
                                        "image",
                                        "environment",
                                        "resource-group",
                                        "job-name"
                                    ]
                                    .contains(&k),
                                "README: the component has no input '{k}'"
                            );
                            if let Some(var) = var {
                                let value = if var == "HOIST_SOURCE" {
                                    SENTINEL.to_string()
                                } else {
                                    expand(&scalar(v))
                                };
                                env.insert(var.clone(), value);
                            }
                        }
                        accepted("README (the component)", &["ship".into()], &env);
                        checked += 1;
                    }
                    // The plugin.
                    for (name, config) in m {
                        let Some(name) = name.as_str() else { continue };
                        if !name.contains("hoist-dev/hoist") {
                            continue;
                        }
                        let mut env = BTreeMap::new();
                        let mut command = "ship".to_string();
                        for (k, v) in config.as_mapping().unwrap() {
                            let k = k.as_str().unwrap();
                            assert!(
                                plugin_props.contains_key(Value::String(k.into())),
                                "README: the plugin has no option '{k}'"
                            );
                            if k == "command" {
                                command = scalar(v);
                            }
                            if ["command", "binary", "docker", "docker-image"].contains(&k) {
                                continue;
                            }
                            let var = format!("HOIST_{}", k.to_ascii_uppercase().replace('-', "_"));
                            let value = match v {
                                Value::Sequence(items) => items
                                    .iter()
                                    .map(|i| expand(&scalar(i)))
                                    .collect::<Vec<_>>()
                                    .join(","),
                                _ if var == "HOIST_SOURCE" => SENTINEL.to_string(),
                                _ => expand(&scalar(v)),
                            };
                            env.insert(var, value);
                        }
                        accepted("README (the plugin)", &[command], &env);
                        checked += 1;
                    }
                    stack.extend(m.values());
                }
                Value::Sequence(items) => stack.extend(items),
                Value::String(s) => {
                    for line in s.lines() {
                        let line = line.trim();
                        let sub = line.split_whitespace().nth(1).unwrap_or_default();
                        if line.starts_with("hoist ")
                            && matches!(sub, "ship" | "push" | "gate" | "deploy" | "rollback")
                        {
                            accepted(
                                &format!("README: {line}"),
                                &command_args(line),
                                &BTreeMap::new(),
                            );
                            checked += 1;
                        }
                    }
                }
                _ => {}
            }
        }
    }
    assert!(checked >= 6, "the README's snippets were found: {checked}");
}
