//! Where the binaries under test are.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// The directory holding `logic`, `worker`, `autoscaler`, `presentation` and `loadtest`:
/// `STRATA_BIN_DIR` when set, else the directory of this executable (`cargo build --bins`
/// puts them all in `target/<profile>/`).
pub fn dir() -> anyhow::Result<PathBuf> {
    if let Ok(dir) = std::env::var("STRATA_BIN_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("locating this executable")?;
    Ok(exe
        .parent()
        .context("this executable has no directory")?
        .to_path_buf())
}

/// The path of one binary, checked to exist.
pub fn path(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the binaries first (cargo build --bins), or set STRATA_BIN_DIR",
        path.display()
    );
    Ok(path)
}

/// The repository root (for `scripts/services`): `STRATA_ROOT`, else where this crate was built.
pub fn repo_root() -> PathBuf {
    std::env::var("STRATA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default()
        })
}
