//! Spreading the partitions across workers. Single active consumer does not rebalance:
//! the first consumer registered on a queue stays active until it goes, so the first
//! worker started would hold every partition. Every few seconds each worker reads the
//! partitions from the management API, takes the number of workers as the largest number
//! of consumers on a partition, and when it is active on more than its share
//! (`ceil(partitions / workers)`) it hands the excess back ([`super::partition`]): each
//! of those finishes and acks its message in hand, cancels, and registers again behind
//! the waiting consumers, so the next worker in line takes over without two consumers
//! ever handling one partition at once.
//!
//! The management API's figures lag the broker by a few seconds (its statistics
//! interval), so after handing back a worker waits for fresh figures before it looks
//! again. Without the API nothing is handed back: order still holds, only the spread is
//! lost. The same loop deletes expired deduplication records.

use std::sync::Arc;
use std::time::{Duration, Instant};

use contracts::partition_queue;
use data::messaging::fifo;
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::WorkerSettings;

pub(super) struct Balancer {
    pub id: String,
    pub settings: Arc<WorkerSettings>,
    pub pool: PgPool,
    pub hand_backs: Vec<Arc<Notify>>,
}

/// The partitions to hand back: those beyond `ceil(partitions / workers)` among the ones
/// `mine` says this worker is active on (the highest indices go).
pub fn excess(mine: &[usize], partitions: usize, workers: usize) -> Vec<usize> {
    let share = partitions.div_ceil(workers.max(1));
    mine.iter().skip(share).copied().collect()
}

impl Balancer {
    pub async fn run(self, stop: CancellationToken) {
        let queues: Vec<String> = (0..self.hand_backs.len())
            .map(|i| partition_queue(i as u16))
            .collect();
        let interval = Duration::from_millis(self.settings.fifo_balance_interval_ms.max(100));
        let mut quiet_until = Instant::now();
        let mut last_housekeeping = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if last_housekeeping.elapsed() > Duration::from_secs(60) {
                last_housekeeping = Instant::now();
                if let Err(err) = data::store::inventory::forget_expired_dedup(&self.pool).await {
                    tracing::warn!(error = %err, "could not delete expired deduplication ids");
                }
            }
            if Instant::now() < quiet_until {
                continue;
            }
            let api = self.settings.rabbitmq_api_url.as_str();
            let Ok(readings) = fifo::read_queues(self.settings.data.amqp_url(), api, &queues).await
            else {
                continue;
            };
            let mut mine = Vec::new();
            let mut workers = 0;
            let mut complete = true;
            for (index, reading) in readings.into_iter().enumerate() {
                let Some(reading) = reading else {
                    complete = false;
                    break;
                };
                workers = workers.max(reading.consumers.unwrap_or(0) as usize);
                if reading.active_consumer.as_deref() == Some(&format!("{}.p{index}", self.id)) {
                    mine.push(index);
                }
            }
            if !complete || workers < 2 {
                continue;
            }
            let excess = excess(&mine, self.hand_backs.len(), workers);
            if excess.is_empty() {
                continue;
            }
            tracing::info!(
                worker = %self.id,
                active = mine.len(),
                workers,
                handing_back = excess.len(),
                "active on more than this worker's share of the FIFO partitions"
            );
            for index in excess {
                self.hand_backs[index].notify_one();
            }
            // Wait for figures taken after the hand-back.
            quiet_until = Instant::now() + Duration::from_secs(7);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::excess;

    #[test]
    fn only_what_is_beyond_the_share_goes_back() {
        assert_eq!(excess(&[0, 1, 2, 3, 4, 5, 6, 7], 8, 2), vec![4, 5, 6, 7]);
        assert_eq!(excess(&[0, 1, 2], 8, 3), Vec::<usize>::new());
        assert_eq!(excess(&[0, 1, 2, 3, 4], 8, 3), vec![3, 4]);
        assert_eq!(excess(&[0, 1], 8, 0), Vec::<usize>::new());
        assert_eq!(excess(&[0, 1, 2, 3], 4, 8), vec![1, 2, 3]);
    }
}
