//! The read cache against the real Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use data::cache::{Cache, Source};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_misses_for_one_key_load_once() {
    let env = testkit::TestEnv::new().await;
    let cache = Arc::new(Cache::new(&env.data));
    let loads = Arc::new(AtomicUsize::new(0));
    let key = cache.key("product:SLOW-1");

    let tasks: Vec<_> = (0..25)
        .map(|_| {
            let cache = cache.clone();
            let loads = loads.clone();
            let key = key.clone();
            tokio::spawn(async move {
                cache
                    .get_or_load(&key, || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        // A slow query: every other request misses while it runs.
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, anyhow::Error>(Some("value".to_owned()))
                    })
                    .await
                    .expect("load")
            })
        })
        .collect();
    for task in tasks {
        let (value, _) = task.await.expect("task");
        assert_eq!(value.as_deref(), Some("value"));
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);

    let (_, source) = cache
        .get_or_load(&key, || async { Ok::<Option<String>, anyhow::Error>(None) })
        .await
        .expect("read");
    assert_eq!(source, Source::Hit);
}

#[tokio::test]
async fn nothing_found_is_not_cached_and_errors_pass_through() {
    let env = testkit::TestEnv::new().await;
    let cache = Cache::new(&env.data);
    let key = cache.key("product:ABSENT");
    let (v, s) = cache
        .get_or_load(&key, || async { Ok::<Option<String>, anyhow::Error>(None) })
        .await
        .expect("read");
    assert_eq!((v, s), (None, Source::Miss));
    let (_, s) = cache
        .get_or_load(&key, || async { Ok::<Option<String>, anyhow::Error>(None) })
        .await
        .expect("read");
    assert_eq!(s, Source::Miss, "a not-found is not cached");

    let err = cache
        .get_or_load(&cache.key("boom"), || async {
            Err::<Option<String>, _>(anyhow::anyhow!("database down"))
        })
        .await
        .expect_err("the error comes back");
    assert!(err.to_string().contains("database down"));
}

#[tokio::test]
async fn an_unreachable_redis_means_bypass_not_failure() {
    let mut env_data = testkit::TestEnv::new().await.data.clone();
    env_data.redis_url = secrecy::SecretString::from("redis://127.0.0.1:1".to_owned());
    let cache = Cache::new(&env_data);
    let (v, s) = cache
        .get_or_load(&cache.key("k"), || async { Ok::<_, anyhow::Error>(7) })
        .await
        .expect("read");
    assert_eq!((v, s), (7, Source::Bypass));
    assert!(!cache.ping().await);
}
