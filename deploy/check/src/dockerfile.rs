//! The stages of a Dockerfile, as the compose checks read deploy/Dockerfile.

use crate::repo_root;

/// One `FROM` and the instructions under it.
#[derive(Debug)]
pub struct Stage {
    /// The name after `AS`, when given.
    pub name: Option<String>,
    pub base: String,
    /// Instructions with continuation lines joined and comments dropped.
    pub body: Vec<String>,
}

/// The stages of the Dockerfile at `path` (relative to the repository root), in order.
pub fn stages(path: &str) -> Vec<Stage> {
    let text = std::fs::read_to_string(repo_root().join(path))
        .unwrap_or_else(|e| panic!("reading {path}: {e}"));
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
        } else {
            current.push_str(trimmed);
            lines.push(std::mem::take(&mut current));
        }
    }
    let mut stages: Vec<Stage> = Vec::new();
    for line in lines {
        let mut parts = line.split_whitespace();
        if parts.next() == Some("FROM") {
            let base = parts.next().unwrap_or_default().to_owned();
            let name = match (parts.next(), parts.next()) {
                (Some(a), Some(n)) if a.eq_ignore_ascii_case("as") => Some(n.to_owned()),
                _ => None,
            };
            stages.push(Stage {
                name,
                base,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(line);
        }
    }
    stages
}
