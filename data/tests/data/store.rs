//! Migrations and the schema's constraints against the real Postgres.

use secrecy::{ExposeSecret, SecretString};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_migrating_at_once_all_succeed() {
    let env = testkit::TestEnv::new().await;
    // A database nobody migrated yet, next to the test's own.
    let mut fresh = env.data.clone();
    let url = env.data.database_url.expose_secret().to_owned();
    fresh.database_url = SecretString::from(format!("{url}_fresh"));
    let runs = futures_lite::future::zip(
        futures_lite::future::zip(
            data::store::db::migrate(&fresh),
            data::store::db::migrate(&fresh),
        ),
        futures_lite::future::zip(
            data::store::db::migrate(&fresh),
            data::store::db::migrate(&fresh),
        ),
    )
    .await;
    let ((a, b), (c, d)) = runs;
    for result in [a, b, c, d] {
        let pool = result.expect("every replica migrates");
        let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .expect("count");
        assert_eq!(applied as usize, data::store::db::MIGRATOR.iter().count());
        pool.close().await;
    }
    sqlx::query(&format!(
        "DROP DATABASE \"{}_fresh\" WITH (FORCE)",
        env.database
    ))
    .execute(&env.pool)
    .await
    .expect("drop");
}

#[tokio::test]
async fn schema_constraints_hold_without_the_application() {
    let env = testkit::TestEnv::new().await;
    env.product("CHK-1", 100, 1).await;
    for bad in [
        "UPDATE products SET stock = -1 WHERE sku = 'CHK-1'",
        "UPDATE products SET price_cents = 0 WHERE sku = 'CHK-1'",
        "INSERT INTO orders (id, email, total_cents, status) VALUES (gen_random_uuid(), 'a@b.c', 100, 'lost')",
        "INSERT INTO orders (id, email, total_cents, status) VALUES (gen_random_uuid(), 'a@b.c', 100, 'rejected')",
    ] {
        assert!(sqlx::query(bad).execute(&env.pool).await.is_err(), "{bad}");
    }
}
