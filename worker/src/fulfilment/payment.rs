//! The payment gateway a fulfilment charges, and a simulated one that keeps a real
//! gateway's promises: a charge is idempotent per key (the order id), the decision is
//! made once and every later call answers it again, every call is counted, and a charge
//! can be refunded. It writes its ledger (`payment_charges`) before the simulated answer
//! latency, so a worker that dies while the answer is in flight leaves the order
//! "charged, not settled", as with a real gateway.

use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

/// What the payment gateway answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    Approved,
    Declined,
}

/// A call to the gateway that got no answer.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// No answer within `PAYMENT_TIMEOUT_MS`.
    #[error("the payment gateway did not answer within {0:?}")]
    Timeout(Duration),
    /// The simulated gateway could not reach its ledger.
    #[error("the payment gateway's ledger failed: {0}")]
    Ledger(#[from] sqlx::Error),
}

/// Something that takes payments. Both calls are idempotent per order id.
pub trait Gateway: Send + Sync {
    /// Charges an order's total, `order_id` being the idempotency key: a repeated call
    /// charges nothing more and answers as the first did.
    fn charge(
        &self,
        order_id: Uuid,
        total_cents: i64,
    ) -> impl Future<Output = Result<Payment, GatewayError>> + Send;

    /// Gives an approved charge back; without one (or once refunded) it does nothing.
    fn refund(&self, order_id: Uuid) -> impl Future<Output = Result<(), GatewayError>> + Send;
}

/// The simulated gateway the worker runs with (`PAYMENT_LATENCY_MS`,
/// `PAYMENT_DECLINE_RATE`, `PAYMENT_HANG_RATE`). Its ledger lives in the worker's
/// database and borrows a pooled connection for one statement per call, outside the
/// worker's slots and before the answer latency, so a payment in flight holds none (a
/// real gateway would need none at all, and the connection budget stays the pool's).
#[derive(Debug, Clone)]
pub struct PaymentGateway {
    ledger: PgPool,
    pub latency: Duration,
    pub decline_rate: f64,
    /// Share of calls that never answer (the caller's timeout cuts them).
    pub hang_rate: f64,
}

/// Records a call: the first inserts the decision, the others count themselves and read
/// it back.
const RECORD: &str = "\
INSERT INTO payment_charges (order_id, amount_cents, outcome) VALUES ($1, $2, $3)
ON CONFLICT (order_id) DO UPDATE
    SET calls = payment_charges.calls + 1, last_call_at = now()
RETURNING outcome";

const REFUND: &str = "\
UPDATE payment_charges SET refunded_at = now()
WHERE order_id = $1 AND outcome = 'approved' AND refunded_at IS NULL";

impl PaymentGateway {
    /// A gateway whose ledger is written through `pool`.
    pub fn new(pool: &PgPool, latency: Duration, decline_rate: f64) -> Self {
        PaymentGateway {
            ledger: pool.clone(),
            latency,
            decline_rate: decline_rate.clamp(0.0, 1.0),
            hang_rate: 0.0,
        }
    }

    /// The same gateway, with a share of calls that hang.
    pub fn with_hang_rate(mut self, hang_rate: f64) -> Self {
        self.hang_rate = hang_rate.clamp(0.0, 1.0);
        self
    }
}

impl Gateway for PaymentGateway {
    async fn charge(&self, order_id: Uuid, total_cents: i64) -> Result<Payment, GatewayError> {
        let decided = if self.decline_rate > 0.0 && rand::random::<f64>() < self.decline_rate {
            "declined"
        } else {
            "approved"
        };
        let outcome: String = sqlx::query_scalar(RECORD)
            .bind(order_id)
            .bind(total_cents)
            .bind(decided)
            .fetch_one(&self.ledger)
            .await?;
        // Charged (or declined) from here on: the answer is on its way back.
        if self.hang_rate > 0.0 && rand::random::<f64>() < self.hang_rate {
            std::future::pending::<()>().await;
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        Ok(if outcome == "approved" {
            Payment::Approved
        } else {
            Payment::Declined
        })
    }

    async fn refund(&self, order_id: Uuid) -> Result<(), GatewayError> {
        sqlx::query(REFUND)
            .bind(order_id)
            .execute(&self.ledger)
            .await?;
        Ok(())
    }
}
