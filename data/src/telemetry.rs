//! One tracing subscriber per binary: `RUST_LOG` filter (default given by the binary), and
//! JSON lines instead of text when `RUST_LOG_FORMAT=json`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; later calls (tests start many apps) do nothing.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let json = std::env::var("RUST_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
