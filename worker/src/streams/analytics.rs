//! `worker analytics`: windows over the stream (Kinesis Data Analytics).

use data::DataSettings;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, clap::Args)]
pub struct AnalyticsArgs {}

pub async fn run(
    _data: &DataSettings,
    _args: &AnalyticsArgs,
    _stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::bail!("worker analytics is not built yet")
}
