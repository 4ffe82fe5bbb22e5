//! The visibility timeout, as the worker's contract with the queue (the counterpart of
//! SQS's visibility timeout and `ChangeMessageVisibility`; RabbitMQ 3.10 has no per-queue
//! consumer timeout to lean on). A delivery is worked on under a deadline
//! (`WORKER_VISIBILITY_TIMEOUT_SECS`); each step that starts pushes it out again by that
//! much, up to `WORKER_VISIBILITY_MAX_SECS` after the attempt began. Past it the consumer
//! drops the work (its transaction rolls back, its slot is freed) and gives the message
//! back for another worker.
//!
//! While the delivery waits out a database outage the deadline is suspended, and the next
//! attempt starts a fresh one: an outage is not the work's fault and must not spend the
//! delivery limit (see `consumer::delivery`).

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The deadline of one delivery.
#[derive(Debug)]
pub struct Visibility {
    timeout: Duration,
    max: Duration,
    started: Mutex<Instant>,
    /// `None` while suspended.
    deadline: watch::Sender<Option<Instant>>,
}

impl Visibility {
    /// A deadline `timeout` from now, which steps may push out up to `max` from now.
    pub fn new(timeout: Duration, max: Duration) -> Self {
        let now = Instant::now();
        let timeout = timeout.min(max);
        Visibility {
            timeout,
            max,
            started: Mutex::new(now),
            deadline: watch::Sender::new(Some(now + timeout)),
        }
    }

    /// A step starts: the deadline moves to `timeout` from now, within the maximum.
    pub fn extend(&self) {
        let started = *self.started.lock().unwrap_or_else(PoisonError::into_inner);
        let at = (Instant::now() + self.timeout).min(started + self.max);
        self.deadline.send_replace(Some(at));
    }

    /// A new attempt (after an outage's pause): a fresh deadline and a fresh maximum.
    pub fn restart(&self) {
        let now = Instant::now();
        *self.started.lock().unwrap_or_else(PoisonError::into_inner) = now;
        self.deadline.send_replace(Some(now + self.timeout));
    }

    /// The delivery waits for the database, not for its work: no deadline until the next
    /// attempt.
    pub fn suspend(&self) {
        self.deadline.send_replace(None);
    }

    /// Resolves once the deadline has passed (never while suspended).
    pub async fn expired(&self) {
        let mut deadline = self.deadline.subscribe();
        loop {
            let current = *deadline.borrow_and_update();
            match current {
                None => {
                    if deadline.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {
                            if *deadline.borrow() == Some(at) {
                                return;
                            }
                        }
                        _ = deadline.changed() => {}
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn steps_push_the_deadline_out_up_to_the_maximum() {
        let v = Visibility::new(Duration::from_secs(10), Duration::from_secs(25));
        let start = Instant::now();
        let expired = async {
            v.expired().await;
            start.elapsed()
        };
        let steps = async {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_secs(8)).await;
                v.extend();
            }
            std::future::pending::<Duration>().await
        };
        let at = tokio::select! { at = expired => at, at = steps => at };
        assert_eq!(at, Duration::from_secs(25), "capped by the maximum");
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspended_deadline_does_not_expire_and_a_restart_starts_anew() {
        let v = Visibility::new(Duration::from_secs(10), Duration::from_secs(10));
        v.suspend();
        let start = Instant::now();
        let expired = async {
            v.expired().await;
            start.elapsed()
        };
        let restart = async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            v.restart();
            std::future::pending::<Duration>().await
        };
        let at = tokio::select! { at = expired => at, at = restart => at };
        assert_eq!(at, Duration::from_secs(70));
    }
}
