//! The hot statements settle on one cached generic plan per connection, instead of being
//! planned anew on every execution (which cost about a fifth of the order throughput).

use contracts::{OrderLineRequest, PlaceOrder};
use uuid::Uuid;
use worker::fulfilment::{Outcome, PaymentGateway};

/// How often Postgres used a generic and a custom plan for the prepared statement whose
/// text starts with `start`, on the only connection of `pool`.
async fn plans(pool: &sqlx::PgPool, start: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT generic_plans, custom_plans FROM pg_prepared_statements \
         WHERE starts_with(statement, $1)",
    )
    .bind(start)
    .fetch_one(pool)
    .await
    .expect("the statement is prepared on this connection")
}

#[tokio::test]
async fn placing_and_fulfilling_reuse_a_generic_plan() {
    let env = testkit::TestEnv::new().await;
    // A catalog of a realistic size, with statistics: on tiny tables every plan is cheap.
    logic::seed::seed(&env.pool, 10_000).await.expect("seed");
    env.product("PLAN-1", 250, 1000).await;
    env.product("PLAN-2", 100, 1000).await;
    sqlx::query("ANALYZE")
        .execute(&env.pool)
        .await
        .expect("analyze");
    let mut settings = env.data.clone();
    settings.database_max_connections = 1;
    let pool = data::store::db::pool(&settings).expect("pool");

    let mut orders = Vec::new();
    for n in 0..10 {
        // One or two lines: the plan must not depend on the number of lines.
        let mut lines = vec![OrderLineRequest {
            sku: "PLAN-1".to_owned(),
            quantity: 1,
        }];
        if n % 2 == 0 {
            lines.push(OrderLineRequest {
                sku: "PLAN-2".to_owned(),
                quantity: 2,
            });
        }
        let order = PlaceOrder {
            email: "plans@example.com".to_owned(),
            lines,
        };
        let (placed, _) =
            data::store::orders::place(&pool, &order, Some(&format!("plan-{n}")), None)
                .await
                .expect("place");
        orders.push(placed.id);
    }
    // A gateway that approves at once, its ledger on the same single connection.
    let instant = PaymentGateway::new(&pool, std::time::Duration::ZERO, 0.0);
    for id in &orders {
        let outcome = worker::fulfilment::fulfil(&pool, &instant, Uuid::now_v7(), *id, None)
            .await
            .expect("fulfil");
        assert_eq!(outcome, Outcome::Fulfilled);
    }

    // Postgres tries five custom plans, then keeps the generic one if it is no dearer.
    let (generic, custom) = plans(&pool, "WITH line AS").await;
    assert!(
        generic >= 5,
        "placement: {generic} generic, {custom} custom plans"
    );
    let (generic, custom) = plans(&pool, "WITH stock AS").await;
    assert!(
        generic >= 5,
        "reservation: {generic} generic, {custom} custom plans"
    );
    let (generic, custom) = plans(&pool, "WITH recorded AS").await;
    assert!(
        generic >= 5,
        "settlement: {generic} generic, {custom} custom plans"
    );
    let (generic, custom) = plans(&pool, "WITH the_order AS").await;
    assert!(
        generic >= 5,
        "lock: {generic} generic, {custom} custom plans"
    );
    pool.close().await;
}
