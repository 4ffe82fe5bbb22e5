//! Accessors for Kubernetes objects read as JSON values: workloads, pods and containers.

pub mod kustomize;
pub mod policy;

use std::collections::BTreeMap;

use serde_json::Value;

pub use kustomize::{Build, build};

/// A label map (object labels, or the `matchLabels` of a selector).
pub type Labels = BTreeMap<String, String>;

/// The object's kind; empty when it has none.
pub fn kind(obj: &Value) -> &str {
    obj["kind"].as_str().unwrap_or_default()
}

/// The object's `metadata.name`; empty when it has none.
pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// `Kind/name`, to say which object a failure is about.
pub fn id(obj: &Value) -> String {
    format!("{}/{}", kind(obj), name(obj))
}

/// Whether the object runs pods from a template.
pub fn is_workload(obj: &Value) -> bool {
    matches!(kind(obj), "Deployment" | "StatefulSet" | "Job")
}

/// The pod spec of a workload's template.
pub fn pod_spec(obj: &Value) -> &Value {
    &obj["spec"]["template"]["spec"]
}

/// The labels of a workload's pods.
pub fn pod_labels(obj: &Value) -> Labels {
    labels(&obj["spec"]["template"]["metadata"]["labels"])
}

/// A map of labels; panics on a value that is not a string.
pub fn labels(value: &Value) -> Labels {
    value
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_str().expect("label value").to_owned()))
        .collect()
}

/// A workload's init containers, then its containers.
pub fn containers(obj: &Value) -> impl Iterator<Item = &Value> {
    let pod = pod_spec(obj);
    pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(pod["containers"].as_array().into_iter().flatten())
}

/// The component label names a tier's pods (both Jobs share `migrate`).
pub fn component(obj: &Value) -> String {
    pod_labels(obj)
        .get("app.kubernetes.io/component")
        .cloned()
        .unwrap_or_else(|| panic!("{} has no component label", id(obj)))
}

/// The binary a container runs, when it runs one of Strata's.
pub fn strata_binary(container: &Value) -> Option<&str> {
    container["command"][0]
        .as_str()?
        .strip_prefix("/usr/local/bin/")
}

/// The words a container passes its binary: the rest of its command, then its args.
pub fn binary_args(container: &Value) -> Vec<String> {
    let words = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|w| w.as_str().map(str::to_owned))
            .collect()
    };
    let mut args = words(&container["command"]);
    if !args.is_empty() {
        args.remove(0);
    }
    args.extend(words(&container["args"]));
    args
}

/// The names of a container's environment variables.
pub fn env_names(container: &Value) -> Vec<&str> {
    container["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["name"].as_str().expect("env name"))
        .collect()
}

/// The literal value of a container's environment variable (not one taken from a ref).
pub fn env_value<'a>(container: &'a Value, var: &str) -> Option<&'a str> {
    container["env"]
        .as_array()?
        .iter()
        .find(|e| e["name"] == var)?["value"]
        .as_str()
}

/// The number of a container port given by name or number, when declared.
pub fn container_port(container: &Value, port: &Value) -> Option<u64> {
    container["ports"].as_array()?.iter().find_map(|p| {
        let number = p["containerPort"].as_u64()?;
        (p["name"] == *port || port.as_u64() == Some(number)).then_some(number)
    })
}

/// Millicores or bytes of a Kubernetes quantity.
pub fn quantity(value: &Value) -> Option<u64> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let units = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("m", 1),
        ("", 1000),
    ];
    units.iter().find_map(|(suffix, factor)| {
        let number = text.strip_suffix(suffix)?;
        number.parse::<u64>().ok().map(|n| n * factor)
    })
}
