//! The relays' wake-ups from a process without a relay (the worker): `announce` wakes a
//! notifier task, which sends `pg_notify` for the commits of the moment; a commit in a
//! database the notifier does not serve still notifies on its own connection.

use std::time::Duration;

use contracts::{OrderLineRequest, PlaceOrder};
use sqlx::postgres::PgListener;
use tokio_util::sync::CancellationToken;

fn order(sku: &str) -> PlaceOrder {
    PlaceOrder {
        email: "n@example.com".to_owned(),
        lines: vec![OrderLineRequest {
            sku: sku.to_owned(),
            quantity: 1,
        }],
    }
}

async fn listener(pool: &sqlx::PgPool) -> PgListener {
    let mut listener = PgListener::connect_with(pool).await.expect("listener");
    listener
        .listen(data::messaging::outbox::CHANNEL)
        .await
        .expect("LISTEN");
    listener
}

async fn notified(listener: &mut PgListener) -> bool {
    tokio::time::timeout(Duration::from_secs(5), listener.recv())
        .await
        .is_ok_and(|n| n.is_ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_announced_by_the_notifier_of_their_database() {
    let served = testkit::TestEnv::new().await;
    let other = testkit::TestEnv::new().await;
    served.product("NOTE-1", 100, 1000).await;
    other.product("NOTE-2", 100, 1000).await;
    let mut served_listener = listener(&served.pool).await;
    let mut other_listener = listener(&other.pool).await;

    let stop = CancellationToken::new();
    let notifier = tokio::spawn(data::messaging::outbox::notifier(
        served.pool.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;

    // A burst of commits in the served database: every one is covered by a notification
    // the notifier sends after it, and they share fewer than one each.
    for _ in 0..20 {
        data::store::orders::place(&served.pool, &order("NOTE-1"), None, None)
            .await
            .expect("place");
    }
    assert!(
        notified(&mut served_listener).await,
        "the notifier announced the commits"
    );

    // Another database: the notifier is not its wake-up; the commit notifies by itself.
    data::store::orders::place(&other.pool, &order("NOTE-2"), None, None)
        .await
        .expect("place");
    assert!(
        notified(&mut other_listener).await,
        "a commit without a notifier of its database notified on its own connection"
    );

    stop.cancel();
    notifier.await.expect("the notifier stops");
}
