//! SIGTERM and SIGINT, turned into a stop token.

use tokio_util::sync::CancellationToken;

/// Installs the SIGTERM and SIGINT handlers now and returns a token they cancel. Each
/// `main` calls it first thing inside the runtime, so that a process told to stop while it
/// is still starting (an autoscaler changing its mind, a rolling update) stops cleanly
/// instead of dying by the signal's default action. The applications only watch the token:
/// tests stop them by cancelling it, and a process has one place that owns its signals.
pub fn stop_on_signals() -> std::io::Result<CancellationToken> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let stop = CancellationToken::new();
    let token = stop.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = int.recv() => tracing::info!("SIGINT: draining"),
            _ = token.cancelled() => return,
        }
        token.cancel();
    });
    Ok(stop)
}
