//! The demo catalog seeded into the real Postgres.

#[tokio::test]
async fn seeding_twice_changes_nothing() {
    let env = testkit::TestEnv::new().await;
    assert_eq!(
        logic::seed::seed(&env.pool, 1500).await.expect("seed"),
        1500
    );
    sqlx::query("UPDATE products SET stock = 0 WHERE sku = 'KIT-00001'")
        .execute(&env.pool)
        .await
        .expect("update");
    assert_eq!(logic::seed::seed(&env.pool, 1500).await.expect("seed"), 0);
    assert_eq!(
        env.stock("KIT-00001").await,
        0,
        "existing rows are left alone"
    );
    let (count, categories): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT category) FROM products")
            .fetch_one(&env.pool)
            .await
            .expect("count");
    assert_eq!((count, categories), (1500, 20));
}
