//! Settings of the presentation binary, each overridable by an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "presentation", version, about = "Strata's public shop pages")]
pub struct Settings {
    /// Address the public pages listen on.
    #[arg(long = "listen", env = "LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,
    /// Base URL of the logic API (a private address).
    #[arg(long, env = "LOGIC_URL", default_value = "http://127.0.0.1:8081")]
    pub logic_url: String,
    /// Whole-request timeout of one call to logic, in milliseconds.
    #[arg(long, env = "LOGIC_TIMEOUT_MS", default_value_t = 3000)]
    pub logic_timeout_ms: u64,
    /// Connect timeout of calls to logic, in milliseconds.
    #[arg(long, env = "LOGIC_CONNECT_TIMEOUT_MS", default_value_t = 1000)]
    pub logic_connect_timeout_ms: u64,
    /// Secret (at least 32 bytes) that signs the cart and CSRF cookies. Every replica needs
    /// the same one. Unset: a random key per process, so carts do not survive a restart.
    #[arg(long, env = "COOKIE_KEY", hide_env_values = true)]
    pub cookie_key: Option<SecretString>,
    /// File holding the cookie key; wins over COOKIE_KEY.
    #[arg(long, env = "COOKIE_KEY_FILE")]
    pub cookie_key_file: Option<PathBuf>,
    /// Mark cookies `Secure` (set it when the site is served over HTTPS).
    #[arg(long, env = "COOKIE_SECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub cookie_secure: bool,
}

impl Settings {
    /// Settings for tests and embedding: a free loopback port, the given logic URL.
    pub fn for_logic(logic_url: impl Into<String>) -> Self {
        Settings {
            listen: ([127, 0, 0, 1], 0).into(),
            logic_url: logic_url.into(),
            logic_timeout_ms: 3000,
            logic_connect_timeout_ms: 1000,
            cookie_key: None,
            cookie_key_file: None,
            cookie_secure: false,
        }
    }

    pub fn logic_timeout(&self) -> Duration {
        Duration::from_millis(self.logic_timeout_ms)
    }

    pub fn logic_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.logic_connect_timeout_ms)
    }

    /// The configured cookie key (file first), or `None` when neither is set.
    pub fn cookie_secret(&self) -> anyhow::Result<Option<SecretString>> {
        if let Some(path) = &self.cookie_key_file {
            let raw = std::fs::read_to_string(path)
                .with_context(|| format!("reading COOKIE_KEY_FILE {}", path.display()))?;
            return Ok(Some(SecretString::from(raw.trim_end().to_owned())));
        }
        Ok(self
            .cookie_key
            .as_ref()
            .map(|k| SecretString::from(k.expose_secret().to_owned())))
    }
}
