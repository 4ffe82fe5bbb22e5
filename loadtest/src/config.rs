//! Command line of `loadtest`.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// The given users for the whole duration (after a short ramp).
    Constant,
    /// Up from zero to the given users over most of the duration, then down.
    Ramp,
    /// A tenth of the users, a sudden jump to all of them, and back: scale-out and scale-in.
    Spike,
    /// A flash sale: orders arrive at a fixed rate (`--rate` a second), each a shopper's
    /// checkout of one product (product page, add to cart, checkout) who does not wait for the order to be
    /// fulfilled. The arrival rate does not slow down when the workers fall behind (open
    /// loop), so a rate above what the running workers carry builds a backlog. The
    /// orders are followed to their final status after the sale.
    FlashSale,
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "loadtest",
    version,
    about = "Drive Strata's shop like shoppers do"
)]
pub struct Args {
    /// Base URL of the public tier (presentation).
    #[arg(long, env = "LOADTEST_TARGET", default_value = "http://127.0.0.1:8080")]
    pub target: String,
    #[arg(long, value_enum, default_value = "constant")]
    pub profile: Profile,
    /// Peak number of concurrent shoppers.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// Length of the load (e.g. 60s, 2m).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Directory for the summary, timeline and reports.
    #[arg(long, default_value = "target/loadtest")]
    pub report: PathBuf,
    /// Autoscaler status URL (e.g. http://127.0.0.1:9090) to sample backlog and workers.
    #[arg(long, env = "LOADTEST_AUTOSCALER")]
    pub autoscaler: Option<String>,
    /// Catalog pages read at start to learn the products.
    #[arg(long, default_value_t = 10)]
    pub catalog_pages: usize,
    /// Exponent of the Zipf popularity of products (higher: a few are much more popular).
    #[arg(long, default_value_t = 1.1)]
    pub zipf_exponent: f64,
    /// Share of shoppers who check out after browsing (0.0 to 1.0).
    #[arg(long, default_value_t = 0.5)]
    pub checkout_ratio: f64,
    /// Longest wait for an order to become final, in seconds.
    #[arg(long, default_value_t = 120)]
    pub order_timeout_secs: u64,
    /// Think time between a shopper's steps, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub think_ms: u64,
    /// Orders a second of the flash-sale profile (its shoppers are as many as this rate
    /// needs, at least --users).
    #[arg(long, default_value_t = 40.0, value_parser = parse_rate)]
    pub rate: f64,
}

fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 && rate <= 10_000.0 => Ok(rate),
        _ => Err(format!(
            "{text:?} is not a rate of orders a second in (0, 10000]"
        )),
    }
}
