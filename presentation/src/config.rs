//! Settings of the presentation binary, each overridable by an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use service::Profile;
use service::profile::{check_token_length, production_error};
use service::secrets::value_or_file;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "presentation", version, about = "Strata's public shop pages")]
pub struct Settings {
    /// Configuration profile: `production` requires every secret to be set explicitly.
    #[arg(
        long,
        env = "STRATA_PROFILE",
        value_enum,
        default_value = "development"
    )]
    pub profile: Profile,
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
    /// Products kept from logic's answers, each only while logic says its stock is fresh
    /// (`X-Stock-Fresh-For-Ms`, under STOCK_FRESHNESS_MS); 0 keeps none.
    #[arg(long, env = "PRODUCT_CACHE_ENTRIES", default_value_t = 10_000)]
    pub product_cache_entries: u64,
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
    /// User name of the ops console (`/ops`).
    #[arg(long, env = "OPS_USER", default_value = "admin")]
    pub ops_user: String,
    /// Argon2id PHC hash of the ops console's password (`presentation hash-password` makes
    /// one). Unset (and no file): the console is disabled and `/ops*` answers 404.
    #[arg(long, env = "OPS_PASSWORD_HASH", hide_env_values = true)]
    pub ops_password_hash: Option<SecretString>,
    /// File holding the password hash; wins over OPS_PASSWORD_HASH.
    #[arg(long, env = "OPS_PASSWORD_HASH_FILE")]
    pub ops_password_hash_file: Option<PathBuf>,
    /// Bearer token of logic's ops endpoints (logic's ADMIN_TOKEN).
    #[arg(long, env = "LOGIC_ADMIN_TOKEN", hide_env_values = true)]
    pub logic_admin_token: Option<SecretString>,
    /// File holding the logic admin token; wins over LOGIC_ADMIN_TOKEN.
    #[arg(long, env = "LOGIC_ADMIN_TOKEN_FILE")]
    pub logic_admin_token_file: Option<PathBuf>,
}

/// The command line: the server (no subcommand) or a helper.
#[derive(Debug, clap::Parser)]
#[command(name = "presentation", version, about = "Strata's public shop pages")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Reads a password from stdin and prints its Argon2id PHC hash, for OPS_PASSWORD_HASH.
    HashPassword,
}

impl Settings {
    /// Settings for tests and embedding: a free loopback port, the given logic URL.
    pub fn for_logic(logic_url: impl Into<String>) -> Self {
        Settings {
            profile: Profile::Development,
            listen: ([127, 0, 0, 1], 0).into(),
            logic_url: logic_url.into(),
            logic_timeout_ms: 3000,
            logic_connect_timeout_ms: 1000,
            product_cache_entries: 10_000,
            cookie_key: None,
            cookie_key_file: None,
            cookie_secure: false,
            ops_user: "admin".to_owned(),
            ops_password_hash: None,
            ops_password_hash_file: None,
            logic_admin_token: None,
            logic_admin_token_file: None,
        }
    }

    /// The production profile's rules, each error naming the setting to fix (never its
    /// value). Nothing to check in development.
    pub fn check_profile(&self) -> anyhow::Result<()> {
        if self.profile != Profile::Production {
            return Ok(());
        }
        match self.cookie_secret()? {
            None => {
                return Err(production_error(
                    "COOKIE_KEY (or COOKIE_KEY_FILE) must be set; a random key per process \
                     loses every cart on restart and differs between replicas",
                ));
            }
            // Bytes, not characters: the key is HMAC material.
            Some(key) if key.expose_secret().len() < 32 => {
                return Err(production_error("COOKIE_KEY must be at least 32 bytes"));
            }
            Some(_) => {}
        }
        let token = self.logic_admin_token()?;
        // Optional here (the console may be off), but when given it is logic's ADMIN_TOKEN,
        // which logic holds to the same length.
        if let Some(token) = &token {
            check_token_length("LOGIC_ADMIN_TOKEN", token)?;
        }
        if token.is_none() && self.ops_password_hash()?.is_some() {
            return Err(production_error(
                "OPS_PASSWORD_HASH turns the ops console on, so LOGIC_ADMIN_TOKEN (or \
                 LOGIC_ADMIN_TOKEN_FILE) must be set too",
            ));
        }
        Ok(())
    }

    pub fn logic_timeout(&self) -> Duration {
        Duration::from_millis(self.logic_timeout_ms)
    }

    pub fn logic_connect_timeout(&self) -> Duration {
        Duration::from_millis(self.logic_connect_timeout_ms)
    }

    /// The configured cookie key (file first), or `None` when neither is set.
    pub fn cookie_secret(&self) -> anyhow::Result<Option<SecretString>> {
        value_or_file(
            "COOKIE_KEY",
            self.cookie_key.as_ref(),
            self.cookie_key_file.as_deref(),
        )
    }

    /// The ops console's password hash (file first), or `None` when neither is set.
    pub fn ops_password_hash(&self) -> anyhow::Result<Option<SecretString>> {
        value_or_file(
            "OPS_PASSWORD_HASH",
            self.ops_password_hash.as_ref(),
            self.ops_password_hash_file.as_deref(),
        )
    }

    /// The bearer token of logic's ops endpoints (file first), or `None`.
    pub fn logic_admin_token(&self) -> anyhow::Result<Option<SecretString>> {
        value_or_file(
            "LOGIC_ADMIN_TOKEN",
            self.logic_admin_token.as_ref(),
            self.logic_admin_token_file.as_deref(),
        )
    }
}

#[cfg(test)]
mod tests {
    use service::profile::MIN_TOKEN_LEN;

    use super::*;

    fn production() -> Settings {
        Settings {
            profile: Profile::Production,
            cookie_key: Some(SecretString::from("k".repeat(32))),
            ..Settings::for_logic("http://127.0.0.1:8081")
        }
    }

    fn error(settings: &Settings) -> String {
        settings
            .check_profile()
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    }

    #[test]
    fn production_requires_the_cookie_key_and_a_long_logic_token() {
        assert_eq!(error(&production()), "");
        let dev = Settings::for_logic("http://127.0.0.1:8081");
        assert_eq!(error(&dev), "", "development needs nothing");
        let no_key = Settings {
            cookie_key: None,
            ..production()
        };
        assert!(error(&no_key).contains("COOKIE_KEY (or COOKIE_KEY_FILE) must be set"));
        let short_key = Settings {
            cookie_key: Some(SecretString::from("short-cookie-key".to_owned())),
            ..production()
        };
        let err = error(&short_key);
        assert!(err.contains("at least 32 bytes") && !err.contains("short-cookie-key"));
        let short_token = Settings {
            logic_admin_token: Some(SecretString::from("tiny-token".to_owned())),
            ..production()
        };
        let err = error(&short_token);
        assert!(err.contains("LOGIC_ADMIN_TOKEN must be at least 32") && !err.contains("tiny"));
        let long_token = Settings {
            logic_admin_token: Some(SecretString::from("t".repeat(MIN_TOKEN_LEN))),
            ..production()
        };
        assert_eq!(error(&long_token), "");
        let console_without_token = Settings {
            ops_password_hash: Some(SecretString::from("$argon2id$v=19$...".to_owned())),
            ..production()
        };
        assert!(error(&console_without_token).contains("LOGIC_ADMIN_TOKEN (or"));
    }

    #[test]
    fn empty_secrets_are_not_secrets() {
        let empty = Settings {
            logic_admin_token: Some(SecretString::from(String::new())),
            ..production()
        };
        assert!(empty.logic_admin_token().expect("ok").is_none());
        let path = std::env::temp_dir().join(format!("strata-empty-{}", std::process::id()));
        std::fs::write(&path, "\n").expect("write");
        let from_empty_file = Settings {
            cookie_key_file: Some(path.clone()),
            ..production()
        };
        let err = format!("{:#}", from_empty_file.cookie_secret().unwrap_err());
        assert!(
            err.contains("COOKIE_KEY_FILE") && err.contains("is empty"),
            "{err}"
        );
        std::fs::remove_file(&path).ok();
    }
}
