//! The reservation sweeper: a reservation whose `reserved_until` has passed is released
//! (its stock goes back, the order is rejected `reservation_expired`, the event is
//! written to the outbox). It runs in every worker; `FOR UPDATE SKIP LOCKED` lets several
//! sweep side by side, each order released once, and skips an order a delivery has
//! locked (that delivery moves it on itself).
//!
//! The sweeper does not know whether a charge was made for the order: a delivery that
//! settles later, or that meets an order released this way, refunds the charge through
//! the gateway (idempotent per order id; nothing happens without a charge). Since
//! `RESERVATION_TTL_SECS` exceeds `WORKER_VISIBILITY_MAX_SECS`, a reservation can only
//! lapse once no delivery still works on it under its deadline.

use std::time::Duration;

use contracts::OrderStep;
use data::messaging::outbox;
use sqlx::{Connection, PgPool};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::FulfilError;
use super::steps::{self, Ending};

/// The next lapsed reservation nobody else holds.
const EXPIRED: &str = "\
SELECT id FROM orders
WHERE step = 'reserved' AND reserved_until < now()
ORDER BY reserved_until
LIMIT 1
FOR UPDATE SKIP LOCKED";

/// Releases every lapsed reservation, one short transaction each; returns how many.
pub async fn sweep(pool: &PgPool) -> Result<usize, FulfilError> {
    let mut released = 0;
    loop {
        let mut conn = pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let Some(order_id): Option<Uuid> =
            sqlx::query_scalar(EXPIRED).fetch_optional(&mut *tx).await?
        else {
            tx.rollback().await?;
            return Ok(released);
        };
        let locked = steps::lock(&mut tx, order_id, Some(OrderStep::Reserved)).await?;
        let ending = Ending::Rejected {
            reason: "reservation_expired",
            give_back: Some(&locked),
        };
        steps::finish(&mut tx, None, order_id, ending, None).await?;
        tx.commit().await?;
        outbox::announce(pool, &mut conn).await;
        metrics::counter!("strata_worker_reservations_expired_total").increment(1);
        tracing::warn!(order.id = %order_id, "reservation lapsed; stock released, order rejected");
        released += 1;
    }
}

/// Sweeps every `every` until `stop` fires.
pub async fn run(pool: PgPool, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(err) = sweep(&pool).await {
            tracing::warn!(error = %err, "reservation sweep failed; trying again later");
        }
    }
}
