//! The JSON documents hoist prints, versioned and described: every document
//! carries `"schema_version"`, and `hoist schema DOCUMENT` prints its JSON
//! Schema, generated from the same Rust types that serialize it (schemars),
//! so the schema cannot drift from the output. The repository keeps them in
//! `schemas/` (a test fails when those are stale).
//!
//! Versioning: adding a field (or a value to an enum-like string) keeps the
//! version; removing or renaming a field, or changing its type or meaning,
//! raises it. Consumers should ignore fields they do not know.

use schemars::JsonSchema;
use serde_json::{Map, Value};

pub use crate::report::{VERSION, versioned};

/// The documents with a schema: each command's `--output json`, and the
/// error document any command prints with `--output json` when it fails.
pub const DOCUMENTS: &[&str] = &[
    "auth", "doctor", "push", "gate", "deploy", "rollback", "ship", "config", "error",
];

/// The JSON Schema of one document, or None for an unknown name.
pub fn schema(document: &str) -> Option<Value> {
    use crate::report::{AuthReport, DoctorReport, ErrorDocument};
    let (schema, command) = match document {
        "auth" => (root::<AuthReport>(), Some("auth")),
        "doctor" => (root::<DoctorReport>(), Some("doctor")),
        "push" => (root::<crate::push::Report>(), Some("push")),
        "gate" => (root::<crate::scan::Report>(), Some("gate")),
        "deploy" => (root::<crate::deploy::Report>(), Some("deploy")),
        "rollback" => (root::<crate::deploy::RollbackReport>(), Some("rollback")),
        "ship" => (root::<crate::ship::Report>(), Some("ship")),
        "config" => (root::<crate::config::Report>(), Some("config")),
        "error" => (root::<ErrorDocument>(), None),
        _ => return None,
    };
    Some(finish(schema, document, command))
}

fn root<T: JsonSchema>() -> Value {
    // What hoist writes (a field skipped when empty is not required).
    schemars::generate::SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Give the generated schema its identity and the two fields every
/// document starts with: `schema_version` (this version, exactly) and
/// `command` (the document's command).
fn finish(schema: Value, document: &str, command: Option<&str>) -> Value {
    let Value::Object(fields) = schema else {
        return schema;
    };
    let mut out = Map::new();
    out.insert(
        "$schema".into(),
        "https://json-schema.org/draft/2020-12/schema".into(),
    );
    out.insert(
        "$id".into(),
        format!("https://github.com/hoist-dev/hoist/schemas/{document}.json").into(),
    );
    out.insert(
        "title".into(),
        match command {
            Some(c) => format!("hoist {c} --output json"),
            None => "hoist error (any command, --output json)".to_string(),
        }
        .into(),
    );
    let mut props = Map::new();
    props.insert(
        "schema_version".into(),
        serde_json::json!({
            "description": "The version of this document's shape: it rises when a field is removed, renamed or changes type or meaning (new fields keep it).",
            "const": VERSION,
        }),
    );
    if let Some(c) = command {
        props.insert(
            "command".into(),
            serde_json::json!({ "description": "The command that printed this document.", "const": c }),
        );
    }
    let mut required: Vec<Value> = vec!["schema_version".into()];
    if command.is_some() {
        required.push("command".into());
    }
    for (k, v) in fields {
        match k.as_str() {
            "$schema" | "title" => {}
            "properties" => {
                if let Value::Object(p) = v {
                    for (pk, pv) in p {
                        if !props.contains_key(&pk) {
                            props.insert(pk, pv);
                        }
                    }
                }
            }
            "required" => {
                if let Value::Array(r) = v {
                    required.extend(r.into_iter().filter(|x| !required_has(x)));
                }
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    out.insert("properties".into(), Value::Object(props));
    out.insert("required".into(), Value::Array(required));
    Value::Object(out)
}

fn required_has(v: &Value) -> bool {
    matches!(v.as_str(), Some("schema_version" | "command"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_document_has_a_schema() {
        for d in super::DOCUMENTS {
            let s = super::schema(d).unwrap();
            assert_eq!(s["properties"]["schema_version"]["const"], super::VERSION);
            assert_eq!(s["required"][0], "schema_version");
        }
        assert!(super::schema("nope").is_none());
    }

    #[test]
    fn the_version_comes_first() {
        let v = super::versioned(serde_json::json!({"command": "push", "digest": "sha256:x"}));
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["schema_version", "command", "digest"]);
    }
}
