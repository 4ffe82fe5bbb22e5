//! The Postgres connection budget, checked once at start: the most workers this autoscaler
//! may run, each with the worker's own pool size, plus a reserve for the other clients
//! (logic's pools, jobs) must fit the server's `max_connections` minus its reserved slots.
//! The autoscaler links no database driver: it runs `worker check-budget`, which connects
//! with the worker's own settings and fails with the figures when the sum does not fit.

use std::ffi::OsString;
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use tokio::process::Command;

/// Longest the check may take (a container may have to start for it).
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The arguments of the worker binary that run the check.
pub fn worker_args(replicas: u32, reserve: u32) -> Vec<OsString> {
    [
        "check-budget".to_owned(),
        "--replicas".to_owned(),
        replicas.to_string(),
        "--reserve".to_owned(),
        reserve.to_string(),
    ]
    .map(OsString::from)
    .into()
}

/// Runs `program args`, with `env` on top of the inherited environment; fails with what it
/// printed when it does not exit 0.
pub async fn run_check(
    program: &std::path::Path,
    args: &[OsString],
    env: &[(String, String)],
) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(CHECK_TIMEOUT, output)
        .await
        .context("the Postgres connection budget check timed out")?
        .with_context(|| format!("running {}", program.display()))?;
    let said = |bytes: &[u8]| String::from_utf8_lossy(bytes).trim().to_owned();
    if !output.status.success() {
        let stderr = said(&output.stderr);
        // The worker ends with its error (`Error: ...` and its causes); logs come before.
        let reason = match stderr.rfind("Error: ") {
            Some(at) => stderr[at + "Error: ".len()..].trim().to_owned(),
            None if !stderr.is_empty() => stderr,
            None => format!("{} exited with {}", program.display(), output.status),
        };
        anyhow::bail!("{reason}");
    }
    Ok(said(&output.stdout))
}
