//! The process's main async runtime.

use std::future::Future;

/// Runs `main` on a multi-threaded runtime with `default_threads` worker threads, unless
/// `TOKIO_WORKER_THREADS` says otherwise. Strata's binaries wait on I/O far more than they
/// compute, and the web servers serve requests on threads of their own, so each binary
/// picks a small default and documents why next to its `main`.
pub fn block_on<F>(default_threads: usize, main: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        runtime.worker_threads(default_threads.max(1));
    }
    runtime.enable_all().build()?.block_on(main)
}
