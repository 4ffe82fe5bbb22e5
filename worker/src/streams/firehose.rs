//! `worker firehose`: the stream's archive (Kinesis Data Firehose).

use data::DataSettings;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, clap::Args)]
pub struct FirehoseArgs {}

pub async fn run(
    _data: &DataSettings,
    _args: &FirehoseArgs,
    _stop: CancellationToken,
) -> anyhow::Result<()> {
    anyhow::bail!("worker firehose is not built yet")
}
