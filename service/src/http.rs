//! Running a web server (logic's API, presentation's pages) until its stop token.

use actix_web::dev::Server;
use tokio_util::sync::CancellationToken;

/// Serves until `stop` is cancelled, then stops accepting and lets requests in flight
/// finish (the server's shutdown timeout bounds the wait). If the server ends by itself,
/// `stop` is cancelled so the rest of the application stops too.
pub async fn serve_until_stopped(server: Server, stop: &CancellationToken) -> anyhow::Result<()> {
    let handle = server.handle();
    let mut task = tokio::spawn(server);
    tokio::select! {
        result = &mut task => {
            stop.cancel();
            result??;
        }
        _ = stop.cancelled() => {
            tracing::info!("stopping: draining in-flight requests");
            handle.stop(true).await;
            task.await??;
        }
    }
    Ok(())
}
