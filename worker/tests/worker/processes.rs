//! The worker binary as a real process: SIGKILL mid-message, SIGTERM drain.

use std::process::Stdio;
use std::time::Duration;

use secrecy::ExposeSecret;
use tokio::process::{Child, Command};

use crate::helpers::Rig;

pub fn spawn_worker_process(rig: &Rig, payment_latency_ms: u64) -> Child {
    spawn_worker_process_with(rig, payment_latency_ms, &[])
}

/// A worker process with further settings (`extra`, applied last).
pub fn spawn_worker_process_with(
    rig: &Rig,
    payment_latency_ms: u64,
    extra: &[(&str, &str)],
) -> Child {
    let data = &rig.env.data;
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .env("DATABASE_URL", data.database_url.expose_secret())
        .env("AMQP_URL", data.amqp_url.expose_secret())
        .env("REDIS_URL", data.redis_url.expose_secret())
        .env("AMQP_DELIVERY_LIMIT", data.delivery_limit.to_string())
        .env("PAYMENT_LATENCY_MS", payment_latency_ms.to_string())
        // The payment's bound stays above its latency: these tests mean slow payments.
        .env(
            "PAYMENT_TIMEOUT_MS",
            (payment_latency_ms + 5000).to_string(),
        )
        .env("WORKER_PREFETCH", "1")
        .env("RUST_LOG", "info")
        .envs(extra.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting the worker binary")
}

/// Waits until the broker has delivered a message that nobody acked yet.
pub async fn wait_in_flight(rig: &Rig) {
    testkit::eventually(Duration::from_secs(30), "a message in flight", || async {
        let (ready, unacked) = rig.env.queue_counts(contracts::FULFIL_QUEUE).await?;
        (ready == 0 && unacked == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_message_leaves_it_to_another_worker_exactly_once() {
    let mut rig = Rig::new().await;
    rig.env.product("KILL-1", 100, 5).await;
    // A payment that takes a minute: the worker is surely mid-message when killed.
    let mut doomed = spawn_worker_process(&rig, 60_000);
    let id = rig.place("KILL-1", 2).await;
    wait_in_flight(&rig).await;
    doomed.kill().await.expect("SIGKILL");
    assert_eq!(rig.env.order_status(id).await.0, "pending");

    rig.spawn_worker(|_| {});
    rig.wait_status(id, "fulfilled", Duration::from_secs(30))
        .await;
    assert_eq!(rig.env.stock("KILL-1").await, 3, "stock taken exactly once");
    assert_eq!(rig.processed().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_finishes_and_acks_the_message_in_flight_then_exits_zero() {
    let rig = Rig::new().await;
    rig.env.product("TERM-1", 100, 5).await;
    // Long enough for the management API (which samples every few seconds) to see it.
    let mut worker = spawn_worker_process(&rig, 8000);
    let id = rig.place("TERM-1", 1).await;
    wait_in_flight(&rig).await;
    let pid = worker.id().expect("pid").to_string();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(30), worker.wait())
        .await
        .expect("the worker exits after draining")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    // Finished before exiting: fulfilled, acked, nothing left for anyone else.
    assert_eq!(rig.env.order_status(id).await.0, "fulfilled");
    assert_eq!(rig.env.stock("TERM-1").await, 4);
    assert_eq!(rig.env.queue_ready(contracts::FULFIL_QUEUE).await, 0);
    testkit::eventually(Duration::from_secs(15), "no unacked message", || async {
        (rig.env.queue_counts(contracts::FULFIL_QUEUE).await? == (0, 0)).then_some(())
    })
    .await;
}
