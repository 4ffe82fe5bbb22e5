//! Secrets given directly or as a file, as Docker and Kubernetes mount them (`*_FILE`).

use std::path::Path;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

/// Reads a secret file (trailing newline dropped). An empty file is an error: it would
/// otherwise pass for a configured, empty secret.
pub fn read_file(path: &Path) -> anyhow::Result<SecretString> {
    let raw = std::fs::read_to_string(path)
        .with_context(|| format!("reading secret file {}", path.display()))?;
    let value = raw.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!value.is_empty(), "secret file {} is empty", path.display());
    Ok(SecretString::from(value.to_owned()))
}

/// [`read_file`] for the setting `{name}_FILE`, named in any error.
pub fn read_named_file(name: &str, path: &Path) -> anyhow::Result<SecretString> {
    read_file(path).with_context(|| format!("{name}_FILE"))
}

/// The secret `{name}`, given either directly or as the file `{name}_FILE`; the file wins.
/// An empty value counts as not given; an empty file is an error.
pub fn value_or_file(
    name: &str,
    value: Option<&SecretString>,
    file: Option<&Path>,
) -> anyhow::Result<Option<SecretString>> {
    match file {
        Some(path) => read_named_file(name, path).map(Some),
        None => Ok(value
            .filter(|v| !v.expose_secret().is_empty())
            .map(|v| SecretString::from(v.expose_secret().to_owned()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_win_lose_their_newline_and_must_not_be_empty() {
        let dir = std::env::temp_dir().join(format!("strata-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("token");
        std::fs::write(&good, "from-file\r\n").expect("write");
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let direct = SecretString::from("direct".to_owned());

        let read = value_or_file("TOKEN", Some(&direct), Some(&good)).expect("ok");
        assert_eq!(read.expect("set").expose_secret(), "from-file");
        let read = value_or_file("TOKEN", Some(&direct), None).expect("ok");
        assert_eq!(read.expect("set").expose_secret(), "direct");
        let blank = SecretString::from(String::new());
        assert!(
            value_or_file("TOKEN", Some(&blank), None)
                .expect("ok")
                .is_none()
        );
        let err = format!(
            "{:#}",
            value_or_file("TOKEN", None, Some(&empty)).unwrap_err()
        );
        assert!(
            err.contains("TOKEN_FILE") && err.contains("is empty"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}
