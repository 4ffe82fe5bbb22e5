//! Accessors for a compose file read as a JSON value, for the forms compose accepts.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::{assert_no_problems, load_yaml_documents};

/// The compose file at `path` (relative to the repository root); panics unless it parses
/// as one YAML document.
pub fn load(path: &str) -> Value {
    let mut documents =
        load_yaml_documents(path).unwrap_or_else(|e| panic!("{path} parses: {e:#}"));
    assert_eq!(documents.len(), 1, "one YAML document");
    documents.remove(0)
}

/// Runs one rule, named `rule` in the failure, on the compose file at `path`; fails with
/// every problem the rule finds.
pub fn assert_rule(path: &str, rule: &str, check: fn(&Value) -> Vec<String>) {
    assert_no_problems(
        format_args!("{path} breaks the {rule} rules"),
        check(&load(path)),
    );
}

/// The services, by name.
pub fn services(compose: &Value) -> &serde_json::Map<String, Value> {
    compose["services"].as_object().expect("services is a map")
}

/// The environment of a service as a map (list form `KEY=value` included).
pub fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|i| match i.split_once('=') {
                Some((k, v)) => (k.to_owned(), v.to_owned()),
                None => (i.to_owned(), String::new()),
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Secrets a service mounts: name -> path inside the container.
pub fn mounted_secrets(service: &Value) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for item in service["secrets"].as_array().into_iter().flatten() {
        let (source, target) = match item {
            Value::String(s) => (s.clone(), None),
            Value::Object(_) => (
                item["source"].as_str().unwrap_or_default().to_owned(),
                item["target"].as_str().map(str::to_owned),
            ),
            _ => continue,
        };
        let path = match target {
            Some(t) if t.starts_with('/') => t,
            Some(t) => format!("/run/secrets/{t}"),
            None => format!("/run/secrets/{source}"),
        };
        out.insert(source, path);
    }
    out
}

/// A command as a list of words (compose accepts a string too).
pub fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
            .collect(),
        Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// What a service runs: its entrypoint when it sets one, else its command.
pub fn run(service: &Value) -> Vec<String> {
    if service["entrypoint"].is_null() {
        words(&service["command"])
    } else {
        words(&service["entrypoint"])
    }
}

/// A compose duration (`90s`, `1m30s`, `2m`, `500ms`) in milliseconds.
pub fn duration_ms(text: &str) -> Option<u64> {
    let mut total = 0u64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit())?;
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3_600_000,
            "m" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

/// Whether the service runs one of the images built from deploy/Dockerfile.
pub fn is_strata_image(service: &Value) -> bool {
    service["image"]
        .as_str()
        .is_some_and(|i| i.starts_with("strata:") || i.starts_with("strata-autoscaler:"))
}
