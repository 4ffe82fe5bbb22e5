//! A simulated payment gateway: a fixed latency and a decline rate.

use std::time::Duration;

use data::fulfil::Payment;

#[derive(Debug, Clone)]
pub struct PaymentGateway {
    pub latency: Duration,
    pub decline_rate: f64,
}

impl PaymentGateway {
    pub async fn charge(&self, _total_cents: i64) -> Payment {
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
