//! The payment gateway a fulfilment charges: what it answers, and a simulated one with a
//! fixed latency and a decline rate.

use std::future::Future;
use std::time::Duration;

/// What the payment gateway answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payment {
    Approved,
    Declined,
}

/// Something that takes payments.
pub trait Gateway: Send + Sync {
    /// Charges an order's total.
    fn charge(&self, total_cents: i64) -> impl Future<Output = Payment> + Send;
}

/// The simulated gateway the worker runs with (`PAYMENT_LATENCY_MS`,
/// `PAYMENT_DECLINE_RATE`).
#[derive(Debug, Clone)]
pub struct PaymentGateway {
    pub latency: Duration,
    pub decline_rate: f64,
}

impl Gateway for PaymentGateway {
    async fn charge(&self, _total_cents: i64) -> Payment {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        if self.decline_rate > 0.0 && rand::random::<f64>() < self.decline_rate {
            Payment::Declined
        } else {
            Payment::Approved
        }
    }
}
