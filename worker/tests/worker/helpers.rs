use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use testkit::TestEnv;
use testkit::apps;
use uuid::Uuid;

/// A test's services plus an outbox relay, so placed orders reach the broker.
pub struct Rig {
    // Fields drop in order: the relay and the workers stop before the services go.
    _relay: apps::Relay,
    workers: Vec<apps::Worker>,
    pub env: TestEnv,
}

impl Rig {
    pub async fn new() -> Rig {
        let env = TestEnv::new().await;
        Rig {
            _relay: apps::relay(&env, |_| {}),
            workers: Vec::new(),
            env,
        }
    }

    /// Places an order directly through the data tier (order + outbox row).
    pub async fn place(&self, sku: &str, quantity: i32) -> Uuid {
        let (order, _) = data::store::orders::place(
            &self.env.pool,
            &PlaceOrder {
                email: "w@example.com".to_owned(),
                lines: vec![OrderLineRequest {
                    sku: sku.to_owned(),
                    quantity,
                }],
            },
            None,
            None,
        )
        .await
        .expect("placing an order");
        order.id
    }

    /// Starts an in-process worker with no payment latency and a short retry delay,
    /// settings adjusted by `tweak`.
    pub fn spawn_worker(&mut self, tweak: impl FnOnce(&mut worker::WorkerSettings)) {
        self.workers.push(apps::worker(&self.env, |s| {
            s.payment_latency_ms = 0;
            s.retry_delay_ms = 50;
            tweak(s);
        }));
    }

    pub async fn wait_status(&self, id: Uuid, status: &str, timeout: Duration) {
        testkit::eventually(timeout, &format!("order {id} to be {status}"), || async {
            let (s, _) = self.env.order_status(id).await;
            (s == status).then_some(())
        })
        .await
    }

    pub async fn processed(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM processed_messages")
            .fetch_one(&self.env.pool)
            .await
            .expect("count")
    }

    /// Publishes raw bytes to the fulfilment queue, as any producer could.
    pub async fn publish_command(&self, body: &[u8], properties: lapin::BasicProperties) {
        let conn = data::messaging::broker::connect(self.env.data.amqp_url(), "test-publisher")
            .await
            .expect("connect");
        let channel = conn.create_channel().await.expect("channel");
        channel
            .basic_publish(
                contracts::COMMANDS_EXCHANGE.into(),
                contracts::FULFIL_ROUTING_KEY.into(),
                lapin::options::BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish");
        let _ = conn.close(200, "published".into()).await;
    }

    /// The FulfilOrder envelope the outbox holds for an order.
    pub async fn command_body(&self, id: Uuid) -> (Uuid, Vec<u8>) {
        let (message_id, body): (Uuid, serde_json::Value) = sqlx::query_as(
            "SELECT message_id, body FROM outbox WHERE kind = 'FulfilOrder' AND body->'payload'->>'order_id' = $1",
        )
        .bind(id.to_string())
        .fetch_one(&self.env.pool)
        .await
        .expect("outbox row");
        (message_id, serde_json::to_vec(&body).expect("json"))
    }
}
