//! Support for the deployment tests: YAML files of the repository loaded as JSON values so
//! the tests can walk them without a schema of their own, accessors for the compose file,
//! the Dockerfile and the Kubernetes manifests, the binaries' settings, and the network
//! namespaces of the isolation test.

pub mod compose;
pub mod dockerfile;
pub mod k8s;
pub mod netns;
pub mod settings;
pub mod yaml;

use std::fmt::Display;
use std::path::{Path, PathBuf};

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crate lives at deploy/check")
        .to_path_buf()
}

/// Every YAML document in `path` (relative to the repository root), as JSON values.
pub fn load_yaml_documents(path: impl AsRef<Path>) -> anyhow::Result<Vec<serde_json::Value>> {
    use serde::Deserialize as _;
    let full = repo_root().join(path.as_ref());
    let text = std::fs::read_to_string(&full)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", full.display()))?;
    let mut documents = Vec::new();
    for document in serde_norway::Deserializer::from_str(&text) {
        let value = serde_json::Value::deserialize(document)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", full.display()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// Fails with every problem a check found, one a line under `heading`, so one run shows
/// them all.
pub fn assert_no_problems(heading: impl Display, problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{heading}:\n  {}",
        problems.join("\n  ")
    );
}
