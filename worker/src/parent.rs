//! A worker started by the autoscaler's process backend ends with it. The autoscaler puts
//! its process id in `STRATA_PARENT_PID`; the worker compares it with its parent process id
//! every second. When they differ, the autoscaler is gone (killed, crashed) and the worker
//! was handed to another parent (init or a subreaper): it stops as on SIGTERM, finishing
//! and acking what it holds. Without the variable (compose, Kubernetes, by hand) nothing is
//! watched.
//!
//! This is the safe stand-in for `prctl(PR_SET_PDEATHSIG)`, which needs `unsafe` in a
//! `pre_exec` hook; a SIGKILLed autoscaler runs no code, so its `kill_on_drop` cannot act.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// The variable holding the process id of the process whose death ends the worker.
pub const PARENT_PID_ENV: &str = "STRATA_PARENT_PID";

/// How often the parent process id is compared.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);

/// The expected parent, from [`PARENT_PID_ENV`]; `None` when unset or not a number.
pub fn expected_parent() -> Option<u32> {
    let raw = std::env::var(PARENT_PID_ENV).ok()?;
    match raw.trim().parse() {
        Ok(pid) => Some(pid),
        Err(_) => {
            tracing::warn!(value = %raw, "{PARENT_PID_ENV} is not a process id; not watching");
            None
        }
    }
}

/// Cancels `stop` once the parent named by [`PARENT_PID_ENV`] is gone (at once if it is
/// gone already). Does nothing without the variable.
pub fn stop_when_orphaned(stop: CancellationToken) {
    let Some(parent) = expected_parent() else {
        return;
    };
    tokio::spawn(watch(parent, stop));
}

async fn watch(parent: u32, stop: CancellationToken) {
    let mut tick = tokio::time::interval(CHECK_EVERY);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = std::os::unix::process::parent_id();
        if now != parent {
            tracing::warn!(
                expected = parent,
                parent = now,
                "the process that started this worker is gone: draining"
            );
            stop.cancel();
            return;
        }
    }
}
