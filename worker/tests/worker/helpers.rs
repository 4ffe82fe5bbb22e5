use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use logic::relay::RelayConfig;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// A test's services plus an outbox relay, so placed orders reach the broker.
pub struct Rig {
    pub env: TestEnv,
    stops: Vec<CancellationToken>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for stop in &self.stops {
            stop.cancel();
        }
    }
}

impl Rig {
    pub async fn new() -> Rig {
        service::logging::init("error");
        let env = TestEnv::new().await;
        let stop = CancellationToken::new();
        tokio::spawn(logic::relay::run(
            env.pool.clone(),
            env.data.clone(),
            RelayConfig {
                poll_interval: Duration::from_millis(100),
                ..RelayConfig::default()
            },
            stop.clone(),
        ));
        Rig {
            env,
            stops: vec![stop],
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

    pub fn worker_settings(&self) -> worker::WorkerSettings {
        let mut settings = worker::WorkerSettings::with_data(self.env.data.clone());
        settings.payment_latency_ms = 0;
        settings.retry_delay_ms = 50;
        settings
    }

    pub fn spawn_worker(&mut self, settings: worker::WorkerSettings) {
        let w = worker::Application::build(settings).expect("worker");
        self.stops.push(w.stop_token());
        tokio::spawn(w.run_until_stopped());
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
