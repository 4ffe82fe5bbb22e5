//! How strict a binary's configuration is, and the production profile's common rules.

use secrecy::{ExposeSecret, SecretString};

/// Shortest admin token (and other shared bearer secrets) the production profile accepts.
pub const MIN_TOKEN_LEN: usize = 32;

/// How strict the configuration is. Every binary reads it from `STRATA_PROFILE` (or
/// `--profile`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Defaults that work against the local services.
    #[default]
    Development,
    /// No secret has a default: each must be given (directly or as a `*_FILE`), RabbitMQ's
    /// `guest:guest` is refused, and bearer tokens must be at least 32 characters.
    Production,
}

/// A configuration the production profile refuses; names the setting to fix.
pub fn production_error(message: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("STRATA_PROFILE=production: {message}")
}

/// Checks a bearer token the production profile requires: present, at least
/// [`MIN_TOKEN_LEN`] characters, no surrounding whitespace.
pub fn check_production_token(name: &str, token: Option<&SecretString>) -> anyhow::Result<()> {
    let Some(token) = token else {
        return Err(production_error(format!(
            "{name} (or {name}_FILE) must be set"
        )));
    };
    check_token_length(name, token)?;
    if token.expose_secret().trim() != token.expose_secret() {
        return Err(production_error(format!(
            "{name} must not start or end with whitespace"
        )));
    }
    Ok(())
}

/// Checks the length of a bearer token that the production profile lets be absent.
pub fn check_token_length(name: &str, token: &SecretString) -> anyhow::Result<()> {
    if token.expose_secret().chars().count() < MIN_TOKEN_LEN {
        return Err(production_error(format!(
            "{name} must be at least {MIN_TOKEN_LEN} characters (e.g. `openssl rand -hex 32`)"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn production_tokens_are_long() {
        let short = SecretString::from("short".to_owned());
        let long = SecretString::from("x".repeat(MIN_TOKEN_LEN));
        assert!(check_production_token("ADMIN_TOKEN", None).is_err());
        let err = check_production_token("ADMIN_TOKEN", Some(&short)).unwrap_err();
        assert!(format!("{err}").contains("at least 32"));
        assert!(!format!("{err}").contains("short"));
        assert!(check_production_token("ADMIN_TOKEN", Some(&long)).is_ok());
        let padded = SecretString::from(format!(" {}", "x".repeat(MIN_TOKEN_LEN)));
        let err = check_production_token("ADMIN_TOKEN", Some(&padded)).unwrap_err();
        assert!(format!("{err}").contains("whitespace"));
    }

    #[test]
    fn the_profile_is_a_flag() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[arg(long, value_enum, default_value = "development")]
            profile: Profile,
        }
        let cli = Cli::try_parse_from(["test", "--profile", "production"]).expect("parses");
        assert_eq!(cli.profile, Profile::Production);
        assert!(Cli::try_parse_from(["test", "--profile", "staging"]).is_err());
    }
}
