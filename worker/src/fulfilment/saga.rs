//! The fulfilment saga of one order, a chain of short steps driven by the order's `step`:
//!
//! 1. reserve (a transaction): lock the order and its products, take the stock and hold
//!    it until `reserved_until`, or reject the order `out_of_stock`;
//! 2. charge: outside any transaction and lock, without a pooled connection, the order
//!    id being the gateway's idempotency key; each call bounded by `PAYMENT_TIMEOUT_MS`,
//!    transient failures retried a few times with backoff;
//! 3. settle (a transaction): approved, the order is `fulfilled` and its event written;
//!    declined, the stock goes back and the order is rejected `payment_declined`.
//!
//! An order found at step `paid` (written by earlier versions, which settled in two
//! transactions) is completed from there.
//!
//! A delivery resumes from the order's current step, so a message redelivered after a
//! crash between any two steps finishes the work once: the charge again answers the first
//! decision, and every transition checks the step it moves from. A settle that finds the
//! order released by the reservation sweeper refunds the charge and leaves it rejected.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use contracts::OrderStep;
use data::messaging::outbox;
use sqlx::pool::PoolConnection;
use sqlx::{Connection, PgPool, Postgres};
use tokio::sync::{Semaphore, SemaphorePermit};
use uuid::Uuid;

use super::payment::{Gateway, GatewayError, Payment};
use super::steps::{self, Ending};
use super::{FulfilError, Outcome};
use crate::visibility::Visibility;

/// Calls of the gateway per charge before the delivery gives up (the message returns).
const PAYMENT_ATTEMPTS: usize = 3;

/// What the saga needs to know besides its inputs.
#[derive(Debug, Clone, Copy)]
pub struct SagaSettings {
    /// How long a reservation holds its stock (`RESERVATION_TTL_SECS`).
    pub reservation_ttl: Duration,
    /// Bound of one call to the gateway (`PAYMENT_TIMEOUT_MS`).
    pub payment_timeout: Duration,
}

impl Default for SagaSettings {
    fn default() -> Self {
        SagaSettings {
            reservation_ttl: Duration::from_secs(600),
            payment_timeout: Duration::from_millis(5000),
        }
    }
}

/// One order's saga, with what the consumer lends it: a slot per database step (given
/// back between steps) and the delivery's visibility deadline (pushed out by each step).
pub struct Saga<'a, G> {
    pool: &'a PgPool,
    gateway: &'a G,
    settings: SagaSettings,
    slots: Option<&'a Semaphore>,
    visibility: Option<&'a Visibility>,
}

/// Where the saga goes after a step.
enum Next {
    Charge { total_cents: i64 },
    Fulfil { total_cents: i64 },
    Done(Outcome),
}

/// A database step's connection, and the slot it holds.
struct Step<'a> {
    conn: PoolConnection<Postgres>,
    _slot: Option<SemaphorePermit<'a>>,
}

impl<'a, G: Gateway> Saga<'a, G> {
    pub fn new(pool: &'a PgPool, gateway: &'a G) -> Self {
        Saga {
            pool,
            gateway,
            settings: SagaSettings::default(),
            slots: None,
            visibility: None,
        }
    }

    pub fn settings(mut self, settings: SagaSettings) -> Self {
        self.settings = settings;
        self
    }

    /// Each database step waits for a permit of `slots` (without the pool's acquire
    /// timeout) and gives it back when done.
    pub fn slots(mut self, slots: &'a Semaphore) -> Self {
        self.slots = Some(slots);
        self
    }

    /// Each step pushes `visibility` out.
    pub fn visibility(mut self, visibility: &'a Visibility) -> Self {
        self.visibility = Some(visibility);
        self
    }

    fn extend(&self) {
        if let Some(v) = self.visibility {
            v.extend();
        }
    }

    async fn step(&self) -> Result<Step<'a>, FulfilError> {
        let slot = match self.slots {
            Some(slots) => slots.acquire().await.ok(),
            None => None,
        };
        self.extend();
        Ok(Step {
            conn: self.pool.acquire().await?,
            _slot: slot,
        })
    }

    /// Runs the saga from wherever the order is.
    #[tracing::instrument(skip(self, traceparent), fields(outcome))]
    pub async fn fulfil(
        &self,
        message_id: Uuid,
        order_id: Uuid,
        traceparent: Option<String>,
    ) -> Result<Outcome, FulfilError> {
        let mut next = self.reserve(message_id, order_id, &traceparent).await?;
        let outcome = loop {
            next = match next {
                Next::Charge { total_cents } => {
                    let payment = self.charge(order_id, total_cents).await?;
                    self.settle(message_id, order_id, payment, &traceparent)
                        .await?
                }
                Next::Fulfil { total_cents } => {
                    self.complete(message_id, order_id, total_cents, &traceparent)
                        .await?
                }
                Next::Done(outcome) => break outcome,
            }
        };
        tracing::Span::current().record("outcome", tracing::field::debug(&outcome));
        Ok(outcome)
    }

    /// Step 1, or where a redelivery finds the order.
    async fn reserve(
        &self,
        message_id: Uuid,
        order_id: Uuid,
        traceparent: &Option<String>,
    ) -> Result<Next, FulfilError> {
        let mut step = self.step().await?;
        let mut tx = step.conn.begin().await?;
        let locked = steps::lock(&mut tx, order_id, Some(OrderStep::Pending)).await?;
        let total_cents = locked.total_cents.unwrap_or_default();
        let next = match locked.step() {
            OrderStep::Pending if locked.in_stock() => {
                steps::take(&mut tx, order_id, &locked, self.settings.reservation_ttl).await?;
                Next::Charge { total_cents }
            }
            OrderStep::Pending => {
                reject(
                    &mut tx,
                    message_id,
                    order_id,
                    "out_of_stock",
                    None,
                    traceparent,
                )
                .await?
            }
            OrderStep::Reserved => Next::Charge { total_cents },
            OrderStep::Paid => Next::Fulfil { total_cents },
            done @ (OrderStep::Fulfilled | OrderStep::Rejected) => {
                let outcome = self.already_final(&mut tx, message_id, done).await?;
                tx.commit().await?;
                // The gateway writes its ledger through the pool: no slot held meanwhile.
                drop(step);
                if locked.reason.as_deref() == Some("reservation_expired") {
                    // Released by the sweeper: a charge made before may still stand.
                    self.refund(order_id).await?;
                }
                return Ok(Next::Done(outcome));
            }
        };
        tx.commit().await?;
        if matches!(next, Next::Done(_)) {
            outbox::announce(self.pool, &mut step.conn).await;
        }
        Ok(next)
    }

    async fn already_final(
        &self,
        conn: &mut sqlx::PgConnection,
        message_id: Uuid,
        step: OrderStep,
    ) -> Result<Outcome, FulfilError> {
        Ok(if steps::record(conn, message_id).await? {
            Outcome::AlreadyFinal(steps::final_status(step))
        } else {
            Outcome::Duplicate
        })
    }

    /// Step 2: no connection, no lock; bounded, retried, idempotent.
    async fn charge(&self, order_id: Uuid, total_cents: i64) -> Result<Payment, FulfilError> {
        let timeout = self.settings.payment_timeout;
        let call = || async {
            self.extend();
            match tokio::time::timeout(timeout, self.gateway.charge(order_id, total_cents)).await {
                Ok(answer) => answer,
                Err(_) => Err(GatewayError::Timeout(timeout)),
            }
        };
        let payment = call
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter()
                    .with_max_times(PAYMENT_ATTEMPTS - 1),
            )
            .notify(|err, pause| {
                metrics::counter!("strata_worker_payment_retries_total").increment(1);
                tracing::warn!(order.id = %order_id, error = %err, ?pause, "payment failed; retrying");
            })
            .await?;
        Ok(payment)
    }

    async fn refund(&self, order_id: Uuid) -> Result<(), FulfilError> {
        self.gateway.refund(order_id).await?;
        tracing::info!(order.id = %order_id, "late payment refunded: the reservation had lapsed");
        Ok(())
    }

    /// Step 3: the gateway's answer.
    async fn settle(
        &self,
        message_id: Uuid,
        order_id: Uuid,
        payment: Payment,
        traceparent: &Option<String>,
    ) -> Result<Next, FulfilError> {
        let mut step = self.step().await?;
        let mut tx = step.conn.begin().await?;
        // Declined, the stock goes back: lock the products of a reserved order.
        let products = (payment == Payment::Declined).then_some(OrderStep::Reserved);
        let locked = steps::lock(&mut tx, order_id, products).await?;
        let total_cents = locked.total_cents.unwrap_or_default();
        let next = match (payment, locked.step()) {
            (Payment::Approved, OrderStep::Reserved) => {
                // Paid and fulfilled in one transaction: a crash before its commit leaves
                // the order reserved, and the redelivery's charge answers the same
                // approval, so no intermediate step needs to be kept.
                fulfilled(&mut tx, message_id, order_id, total_cents, traceparent).await?;
                tx.commit().await?;
                outbox::announce(self.pool, &mut step.conn).await;
                return Ok(Next::Done(Outcome::Fulfilled));
            }
            (Payment::Approved, OrderStep::Paid) => Next::Fulfil { total_cents },
            (Payment::Declined, OrderStep::Reserved) => {
                let reason = "payment_declined";
                let done = reject(
                    &mut tx,
                    message_id,
                    order_id,
                    reason,
                    Some(&locked),
                    traceparent,
                )
                .await?;
                tx.commit().await?;
                outbox::announce(self.pool, &mut step.conn).await;
                return Ok(done);
            }
            (_, done @ (OrderStep::Fulfilled | OrderStep::Rejected)) => {
                let outcome = self.already_final(&mut tx, message_id, done).await?;
                tx.commit().await?;
                drop(step);
                if payment == Payment::Approved && done == OrderStep::Rejected {
                    // The late settle: the sweeper released the reservation meanwhile.
                    self.refund(order_id).await?;
                }
                return Ok(Next::Done(outcome));
            }
            (payment, at) => {
                return Err(FulfilError::Unexpected(format!(
                    "payment {payment:?} for an order at step {}",
                    at.as_str()
                )));
            }
        };
        tx.commit().await?;
        Ok(next)
    }

    /// The last step of an order left at `paid`.
    async fn complete(
        &self,
        message_id: Uuid,
        order_id: Uuid,
        total_cents: i64,
        traceparent: &Option<String>,
    ) -> Result<Next, FulfilError> {
        let mut step = self.step().await?;
        let mut tx = step.conn.begin().await?;
        let locked = steps::lock(&mut tx, order_id, None).await?;
        let outcome = match locked.step() {
            OrderStep::Paid => {
                fulfilled(&mut tx, message_id, order_id, total_cents, traceparent).await?;
                Outcome::Fulfilled
            }
            done @ (OrderStep::Fulfilled | OrderStep::Rejected) => {
                self.already_final(&mut tx, message_id, done).await?
            }
            at => {
                return Err(FulfilError::Unexpected(format!(
                    "fulfilling an order at step {}",
                    at.as_str()
                )));
            }
        };
        tx.commit().await?;
        if outcome == Outcome::Fulfilled {
            outbox::announce(self.pool, &mut step.conn).await;
        }
        Ok(Next::Done(outcome))
    }
}

/// Runs the saga of `order_id` with the default settings, no slots and no deadline.
pub async fn fulfil(
    pool: &PgPool,
    gateway: &impl Gateway,
    message_id: Uuid,
    order_id: Uuid,
    traceparent: Option<String>,
) -> Result<Outcome, FulfilError> {
    Saga::new(pool, gateway)
        .fulfil(message_id, order_id, traceparent)
        .await
}

/// Fulfils the order in `tx`: the final step, the message recorded, `OrderFulfilled` to
/// the outbox.
async fn fulfilled(
    tx: &mut sqlx::PgConnection,
    message_id: Uuid,
    order_id: Uuid,
    total_cents: i64,
    traceparent: &Option<String>,
) -> Result<(), FulfilError> {
    let ending = Ending::Fulfilled { total_cents };
    steps::finish(tx, Some(message_id), order_id, ending, traceparent.clone()).await?;
    Ok(())
}

/// Rejects the order for `reason` in `tx`, giving back what `give_back` reserved, and
/// records the message: the compensation and the out-of-stock end share it.
async fn reject(
    tx: &mut sqlx::PgConnection,
    message_id: Uuid,
    order_id: Uuid,
    reason: &'static str,
    give_back: Option<&steps::Locked>,
    traceparent: &Option<String>,
) -> Result<Next, FulfilError> {
    let ending = Ending::Rejected { reason, give_back };
    steps::finish(tx, Some(message_id), order_id, ending, traceparent.clone()).await?;
    Ok(Next::Done(Outcome::Rejected(reason.to_owned())))
}
