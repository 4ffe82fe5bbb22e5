//! Settings of the autoscaler binary: every flag has an environment variable and a default
//! that works against the local services.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use service::Profile;

use crate::decision::Policy;

/// The management API's password on a development machine (RabbitMQ's `guest`).
pub const DEV_RABBITMQ_API_PASSWORD: &str = "guest";

/// Where the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BackendKind {
    /// Local `worker` processes, children of the autoscaler.
    Process,
    /// The replicas of the `worker` service of a docker compose project.
    Compose,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "autoscaler",
    version,
    about = "Sets the number of Strata workers from the backlog of orders.fulfil"
)]
pub struct AutoscalerSettings {
    /// Configuration profile: `production` requires every secret to be set explicitly
    /// (workers inherit it).
    #[arg(
        long,
        env = "STRATA_PROFILE",
        value_enum,
        default_value = "development"
    )]
    pub profile: Profile,
    /// Where the workers run: local processes or a docker compose service.
    #[arg(
        long,
        env = "AUTOSCALER_BACKEND",
        value_enum,
        default_value = "process"
    )]
    pub backend: BackendKind,
    /// The worker executable (process backend); default: `worker` beside this executable.
    /// Workers inherit the autoscaler's environment.
    #[arg(long, env = "WORKER_BIN")]
    pub worker_bin: Option<PathBuf>,
    /// Fewest workers.
    #[arg(long, env = "AUTOSCALER_MIN", default_value_t = 1)]
    pub min: u32,
    /// Most workers.
    #[arg(long, env = "AUTOSCALER_MAX", default_value_t = 8)]
    pub max: u32,
    /// Acceptable backlog per worker (acceptable latency / average processing time).
    #[arg(long, env = "TARGET_BACKLOG", default_value_t = 20)]
    pub target_backlog: u32,
    /// How often the queue is read and a decision made (e.g. `2s`, `500ms`).
    #[arg(long, env = "POLL_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// How long every recommendation must agree before workers are removed.
    #[arg(long, env = "SCALE_DOWN_WINDOW", default_value = "60s", value_parser = humantime::parse_duration)]
    pub scale_down_window: Duration,
    /// The queue whose backlog drives the scaling.
    #[arg(long, env = "SCALE_QUEUE", default_value = contracts::FULFIL_QUEUE)]
    pub queue: String,
    /// Most workers added by one decision.
    #[arg(long, env = "MAX_STEP_UP", default_value_t = 4)]
    pub max_step_up: u32,
    /// Relative change of the worker count that is ignored (0.1 = 10 %).
    #[arg(long, env = "SCALE_TOLERANCE", default_value_t = 0.1)]
    pub tolerance: f64,
    /// How long a worker told to stop (SIGTERM) may take to drain before it is killed.
    #[arg(long, env = "DRAIN_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Postgres connections kept for everything but the workers (logic's pools with their
    /// relays, jobs); the check at start needs max x the worker's DATABASE_MAX_CONNECTIONS
    /// + this to fit Postgres' max_connections minus its superuser slots.
    #[arg(long, env = "AUTOSCALER_DB_RESERVE", default_value_t = 12)]
    pub db_reserve: u32,
    /// Check the Postgres connection budget at start (through `worker check-budget`); a
    /// budget that does not fit stops the autoscaler.
    #[arg(long, env = "AUTOSCALER_DB_BUDGET_CHECK", default_value_t = true, action = clap::ArgAction::Set)]
    pub db_budget_check: bool,
    /// Address of `/healthz`, `/status` and `/metrics`.
    #[arg(
        long = "listen",
        env = "AUTOSCALER_LISTEN",
        default_value = "127.0.0.1:9090"
    )]
    pub listen: SocketAddr,

    /// RabbitMQ management API (ready + unacked counts).
    #[arg(
        long,
        env = "RABBITMQ_API_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub rabbitmq_api_url: String,
    /// User of the management API.
    #[arg(long, env = "RABBITMQ_API_USER", default_value = "guest")]
    pub rabbitmq_api_user: String,
    /// Password of the management API (default: `guest`, refused in production).
    #[arg(
        long,
        env = "RABBITMQ_API_PASSWORD",
        default_value = DEV_RABBITMQ_API_PASSWORD,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub rabbitmq_api_password: SecretString,
    /// File holding the management API password; wins over RABBITMQ_API_PASSWORD.
    #[arg(long, env = "RABBITMQ_API_PASSWORD_FILE")]
    pub rabbitmq_api_password_file: Option<PathBuf>,
    /// AMQP URL: its path names the vhost, and it serves the ready-only fallback count.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = data::settings::DEV_AMQP_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub amqp_url: SecretString,
    /// File holding the AMQP URL; wins over AMQP_URL.
    #[arg(long, env = "AMQP_URL_FILE")]
    pub amqp_url_file: Option<PathBuf>,

    /// The docker executable (compose backend); a stand-in can be given for tests.
    #[arg(long, env = "COMPOSE_BIN", default_value = "docker")]
    pub compose_bin: PathBuf,
    /// Compose file(s), passed as `-f` (default: docker compose's own lookup).
    #[arg(long = "compose-file", env = "AUTOSCALER_COMPOSE_FILE")]
    pub compose_files: Vec<PathBuf>,
    /// Compose project name, passed as `-p`.
    #[arg(long, env = "AUTOSCALER_COMPOSE_PROJECT")]
    pub compose_project: Option<String>,
    /// The compose service that runs workers.
    #[arg(long, env = "AUTOSCALER_COMPOSE_SERVICE", default_value = "worker")]
    pub compose_service: String,

    /// Extra environment of worker processes (tests; in production workers inherit ours).
    #[arg(skip)]
    pub worker_env: Vec<(String, String)>,
}

impl AutoscalerSettings {
    /// Defaults (and the environment): for tests and embedding.
    pub fn defaults() -> Self {
        AutoscalerSettings::parse_from(["autoscaler"])
    }

    pub fn policy(&self) -> Policy {
        Policy {
            min: self.min,
            max: self.max,
            target_backlog: self.target_backlog,
            tolerance: self.tolerance,
            max_step_up: self.max_step_up,
            scale_down_window: self.scale_down_window,
        }
    }

    /// Replaces each secret by the content of its `*_FILE`, where one is given, then checks
    /// the result against the profile.
    pub fn resolve_files(mut self) -> anyhow::Result<Self> {
        use service::secrets::read_named_file;
        if let Some(path) = &self.rabbitmq_api_password_file {
            self.rabbitmq_api_password = read_named_file("RABBITMQ_API_PASSWORD", path)?;
        }
        if let Some(path) = &self.amqp_url_file {
            self.amqp_url = read_named_file("AMQP_URL", path)?;
        }
        if self.profile == Profile::Production {
            self.check_production()?;
        }
        Ok(self)
    }

    /// The production profile's rules: no guest credentials for the broker or its API.
    pub fn check_production(&self) -> anyhow::Result<()> {
        use service::profile::production_error;
        if self.rabbitmq_api_password.expose_secret() == DEV_RABBITMQ_API_PASSWORD {
            return Err(production_error(
                "RABBITMQ_API_PASSWORD (or RABBITMQ_API_PASSWORD_FILE) must be set; `guest` is \
                 the local development default",
            ));
        }
        data::settings::check_production_amqp("AMQP_URL", &self.amqp_url)
    }

    /// The worker executable: the flag, or `worker` beside this executable.
    pub fn worker_bin(&self) -> anyhow::Result<PathBuf> {
        match &self.worker_bin {
            Some(path) => Ok(path.clone()),
            None => Ok(std::env::current_exe()?.with_file_name("worker")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_ones() {
        let s = AutoscalerSettings::try_parse_from(["autoscaler"]).expect("parses");
        // The environment of the test run could override defaults; only check what CI
        // does not set.
        if std::env::var_os("POLL_INTERVAL").is_none() {
            assert_eq!(s.poll_interval, Duration::from_secs(2));
        }
        if std::env::var_os("TARGET_BACKLOG").is_none() {
            assert_eq!(s.target_backlog, 20);
        }
        if std::env::var_os("SCALE_QUEUE").is_none() {
            assert_eq!(s.queue, "orders.fulfil");
        }
        if std::env::var_os("SCALE_DOWN_WINDOW").is_none() {
            assert_eq!(s.scale_down_window, Duration::from_secs(60));
        }
        assert!(s.policy().validate().is_ok());
    }

    #[test]
    fn production_refuses_guest_credentials() {
        let settings = |password: &str, amqp: &str| AutoscalerSettings {
            profile: Profile::Production,
            rabbitmq_api_password: SecretString::from(password.to_owned()),
            rabbitmq_api_password_file: None,
            amqp_url: SecretString::from(amqp.to_owned()),
            amqp_url_file: None,
            ..AutoscalerSettings::defaults()
        };
        let error = |s: AutoscalerSettings| {
            s.resolve_files()
                .err()
                .map(|e| format!("{e:#}"))
                .unwrap_or_default()
        };
        let amqp = "amqp://scaler:secret-pw@mq:5672/%2f";
        assert_eq!(error(settings("api-secret", amqp)), "");
        let err = error(settings("guest", amqp));
        assert!(
            err.contains("RABBITMQ_API_PASSWORD (or RABBITMQ_API_PASSWORD_FILE)"),
            "{err}"
        );
        let err = error(settings("api-secret", data::settings::DEV_AMQP_URL));
        assert!(
            err.contains("AMQP_URL (or AMQP_URL_FILE) must be set"),
            "{err}"
        );
        let err = error(settings("api-secret", "amqp://guest:guest@mq:5672/%2f"));
        assert!(
            err.contains("guest:guest") && !err.contains("mq:5672"),
            "{err}"
        );
        let dev = AutoscalerSettings {
            profile: Profile::Development,
            ..settings("guest", data::settings::DEV_AMQP_URL)
        };
        assert_eq!(error(dev), "");
    }

    #[test]
    fn flags_parse_durations_and_backends() {
        let s = AutoscalerSettings::try_parse_from([
            "autoscaler",
            "--backend",
            "compose",
            "--min",
            "2",
            "--max",
            "6",
            "--poll-interval",
            "500ms",
            "--scale-down-window",
            "1m 30s",
            "--compose-file",
            "a.yml",
            "--compose-file",
            "b.yml",
        ])
        .expect("parses");
        assert_eq!(s.backend, BackendKind::Compose);
        assert_eq!((s.min, s.max), (2, 6));
        assert_eq!(s.poll_interval, Duration::from_millis(500));
        assert_eq!(s.scale_down_window, Duration::from_secs(90));
        assert_eq!(s.compose_files.len(), 2);
        assert!(AutoscalerSettings::try_parse_from(["autoscaler", "--backend", "k8s"]).is_err());
        assert!(
            AutoscalerSettings::try_parse_from(["autoscaler", "--poll-interval", "soon"]).is_err()
        );
    }
}
