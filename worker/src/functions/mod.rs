//! Function subscribers (SNS -> Lambda): named handlers compiled into the worker binary.
//! `worker --function <name>` (or `WORKER_FUNCTION`) runs only that handler: it consumes
//! `fn.<name>`, the queue every `function` subscription naming it publishes into, and
//! nothing else (no fulfilment, no inventory partitions, no subscription manager). The
//! autoscaler runs such workers with min 0: none while the queue is empty, one started
//! when a message arrives, stopped after an idle window (docs/messaging.md).
//!
//! Each message is the event's envelope as the topic carried it. A handler's effect and
//! the message's row in `processed_messages` (consumer `fn.<name>`) commit in one
//! transaction; the ack follows the commit, so a redelivery changes nothing.

mod consumer;
mod handlers;

use anyhow::Context;
use contracts::Envelope;
use sqlx::{PgConnection, PgPool};

pub use consumer::FunctionConsumer;

/// A handler compiled into the worker binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `order.fulfilled` -> total_cents / 100 points for the buyer's email (`loyalty_points`).
    LoyaltyPoints,
    /// `inventory.adjusted` / `product.changed` with stock below `LOW_STOCK_THRESHOLD` -> a
    /// row in `low_stock_alerts`.
    LowStockAlert,
}

/// What a handler did with an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Its effect is written.
    Applied,
    /// Not an event for this handler, or nothing to do; recorded as processed all the same.
    Skipped(&'static str),
}

/// What a handler needs besides the event.
#[derive(Debug, Clone, Copy)]
pub struct HandlerSettings {
    pub low_stock_threshold: i32,
}

impl Function {
    pub const ALL: &'static [Function] = &[Function::LoyaltyPoints, Function::LowStockAlert];

    pub fn name(self) -> &'static str {
        match self {
            Function::LoyaltyPoints => "loyalty-points",
            Function::LowStockAlert => "low-stock-alert",
        }
    }

    /// The handler of that name; an error naming the known ones otherwise.
    pub fn parse(name: &str) -> anyhow::Result<Function> {
        Function::ALL
            .iter()
            .copied()
            .find(|f| f.name() == name)
            .with_context(|| {
                format!(
                    "unknown function {name:?}; the worker has {}",
                    contracts::FUNCTIONS.join(", ")
                )
            })
    }

    /// The queue it consumes.
    pub fn queue(self) -> String {
        contracts::function_queue_name(self.name())
    }

    /// Its name in `processed_messages`.
    pub fn consumer(self) -> String {
        self.queue()
    }

    /// Runs the handler inside `tx` (the caller commits).
    pub async fn apply(
        self,
        tx: &mut PgConnection,
        event: &Envelope<serde_json::Value>,
        settings: HandlerSettings,
    ) -> sqlx::Result<Outcome> {
        match self {
            Function::LoyaltyPoints => handlers::loyalty_points(tx, event).await,
            Function::LowStockAlert => {
                handlers::low_stock_alert(tx, event, settings.low_stock_threshold).await
            }
        }
    }
}

/// Handles one message: records it and applies the handler in one transaction. `Ok(None)`:
/// seen before (a redelivery), nothing done.
pub async fn handle(
    pool: &PgPool,
    function: Function,
    event: &Envelope<serde_json::Value>,
    settings: HandlerSettings,
) -> sqlx::Result<Option<Outcome>> {
    let mut tx = pool.begin().await?;
    let first = sqlx::query(
        "INSERT INTO processed_messages (consumer, message_id) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    )
    .bind(function.consumer())
    .bind(event.message_id)
    .execute(&mut *tx)
    .await?
    .rows_affected()
        == 1;
    if !first {
        tx.rollback().await?;
        return Ok(None);
    }
    let outcome = function.apply(&mut tx, event, settings).await?;
    tx.commit().await?;
    Ok(Some(outcome))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_function_of_the_contract_is_compiled_in() {
        let names: Vec<&str> = Function::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names, contracts::FUNCTIONS);
        assert_eq!(
            Function::parse("loyalty-points").expect("known").queue(),
            "fn.loyalty-points"
        );
        let err = Function::parse("resize-image").expect_err("unknown");
        assert!(
            err.to_string()
                .contains("the worker has loyalty-points, low-stock-alert"),
            "{err}"
        );
    }
}
