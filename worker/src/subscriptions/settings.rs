//! Settings of the subscriptions' delivery, flattened into the worker's.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, Clone, clap::Args)]
pub struct SubscriptionSettings {
    /// Deliver the subscriptions' events (one consumer per confirmed subscription) and
    /// send their confirmation requests.
    #[arg(
        id = "subscription_delivery",
        long = "subscriptions-delivery",
        env = "SUBSCRIPTIONS_DELIVERY",
        default_value_t = true,
        action = clap::ArgAction::Set,
    )]
    pub delivery: bool,
    /// How often the `subscriptions` table is read, in milliseconds: a subscription
    /// confirmed or deleted is picked up within this.
    #[arg(
        id = "subscription_poll_ms",
        long = "subscription-poll-ms",
        env = "SUBSCRIPTION_POLL_MS",
        default_value_t = 1000
    )]
    pub poll_ms: u64,
    /// Messages of one subscription delivered at once (its consumer's prefetch).
    #[arg(
        id = "subscription_prefetch",
        long = "subscription-prefetch",
        env = "SUBSCRIPTION_PREFETCH",
        default_value_t = 8
    )]
    pub prefetch: u16,
    /// Attempts at one delivery before it goes to the subscription's DLQ; the retry tiers
    /// are this minus one. Logic declares the tiers with the same setting.
    #[arg(
        id = "subscription_max_attempts",
        long = "subscription-max-attempts",
        env = "SUBSCRIPTION_MAX_ATTEMPTS",
        default_value_t = 5,
        value_parser = clap::value_parser!(u32).range(1..=16),
    )]
    pub max_attempts: u32,
    /// Wait before the second attempt, in milliseconds; each further wait doubles, plus a
    /// jitter of up to 20 %.
    #[arg(
        id = "subscription_retry_base_ms",
        long = "subscription-retry-base-ms",
        env = "SUBSCRIPTION_RETRY_BASE_MS",
        default_value_t = 1000
    )]
    pub retry_base_ms: u64,
    /// Bound of one delivery attempt (HTTP request, SMTP transaction, publish), in
    /// milliseconds.
    #[arg(
        id = "subscription_timeout_ms",
        long = "subscription-timeout-ms",
        env = "SUBSCRIPTION_TIMEOUT_MS",
        default_value_t = 5000
    )]
    pub timeout_ms: u64,
    /// A confirmation request that was not followed by a confirmation is sent again after
    /// this many seconds.
    #[arg(
        id = "subscription_confirmation_resend_secs",
        long = "subscription-confirmation-resend-secs",
        env = "SUBSCRIPTION_CONFIRMATION_RESEND_SECS",
        default_value_t = 300
    )]
    pub confirmation_resend_secs: u64,
    /// Logic's public address, the base of the confirmation URLs.
    #[arg(
        id = "subscription_public_api_url",
        long = "public-api-url",
        env = "PUBLIC_API_URL",
        default_value = "http://127.0.0.1:8081"
    )]
    pub public_api_url: String,
    /// SMTP server of the email subscriptions: `smtp://host:port` (plain, or STARTTLS
    /// with `?tls=required`), `smtps://host:port`, credentials as `user:password@`. Unset,
    /// email deliveries fail (and are retried, then dead-lettered).
    #[arg(
        id = "subscription_smtp_url",
        long = "smtp-url",
        env = "SMTP_URL",
        hide_env_values = true
    )]
    pub smtp_url: Option<SecretString>,
    /// File holding SMTP_URL; wins over it.
    #[arg(
        id = "subscription_smtp_url_file",
        long = "smtp-url-file",
        env = "SMTP_URL_FILE"
    )]
    pub smtp_url_file: Option<PathBuf>,
    /// Sender of the mails.
    #[arg(
        id = "subscription_smtp_from",
        long = "smtp-from",
        env = "SMTP_FROM",
        default_value = "Strata <notifications@strata.localhost>"
    )]
    pub smtp_from: String,
}

impl SubscriptionSettings {
    pub fn poll(&self) -> Duration {
        Duration::from_millis(self.poll_ms.max(10))
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms.max(1))
    }

    pub fn retry_base(&self) -> Duration {
        Duration::from_millis(self.retry_base_ms)
    }

    pub fn confirmation_resend(&self) -> Duration {
        Duration::from_secs(self.confirmation_resend_secs.max(1))
    }

    /// Retry queues per subscription: one per wait between two attempts.
    pub fn retry_tiers(&self) -> usize {
        self.max_attempts.saturating_sub(1) as usize
    }

    /// The SMTP URL, from the file when one is given.
    pub fn smtp_url(&self) -> anyhow::Result<Option<SecretString>> {
        service::secrets::value_or_file(
            "SMTP_URL",
            self.smtp_url.as_ref(),
            self.smtp_url_file.as_deref(),
        )
    }
}
