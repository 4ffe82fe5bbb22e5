//! Walkers over YAML read as JSON values, shared by the compose and Kubernetes checks.

use std::collections::BTreeSet;

use serde_json::Value;

/// The items of a list of strings; no list is an empty one. Panics on an item that is not
/// a string, so a typo in the file fails loudly instead of being skipped.
pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A list or a map as a set of keys: the string items of a list, or the keys of a map
/// (compose accepts both forms for networks, depends_on and environment).
pub fn keys(value: &Value) -> BTreeSet<String> {
    match value {
        Value::Array(items) => items
            .iter()
            .filter_map(|i| i.as_str().map(str::to_owned))
            .collect(),
        Value::Object(map) => map.keys().cloned().collect(),
        _ => BTreeSet::new(),
    }
}
