//! The process backend's mechanics: replacing workers that die, draining on scale-in,
//! killing a worker that overruns the drain timeout, scale-in of busy workers.

use std::time::{Duration, Instant};

use autoscaler::backend::{Backend, ProcessBackend, ProcessConfig};
use contracts::FULFIL_QUEUE;

use crate::helpers::{Rig, scratch_dir, script, worker_bin};

fn backend(bin: std::path::PathBuf, env: Vec<(String, String)>, drain: Duration) -> ProcessBackend {
    ProcessBackend::new(ProcessConfig {
        worker_bin: bin,
        worker_env: env,
        drain_timeout: drain,
    })
}

/// Reconciles as the controller's ticks do until `done`, for up to 20 s.
async fn reconcile_until(
    b: &mut ProcessBackend,
    what: &str,
    done: impl Fn(&ProcessBackend) -> bool,
) {
    let start = Instant::now();
    loop {
        b.reconcile().await.expect("reconcile");
        if done(b) {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_worker_that_dies_is_replaced_and_scale_in_drains_the_newest() {
    let rig = Rig::new().await;
    let mut b = backend(worker_bin(), rig.worker_env(0), Duration::from_secs(30));
    b.scale_to(3).await.expect("starting three workers");
    let pids = b.pids();
    assert_eq!(pids.len(), 3);
    // Let them connect, then one dies.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = pids[1];
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(killed).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("SIGKILL");
    reconcile_until(&mut b, "a replacement", |b| b.status().replaced == 1).await;
    let now = b.pids();
    assert_eq!(now.len(), 3);
    assert!(!now.contains(&killed));
    assert_eq!(
        (now[0], now[1]),
        (pids[0], pids[2]),
        "the others kept running"
    );

    // Scale-in: the newest (the replacement) is told to drain; it exits 0 by itself.
    b.scale_to(2).await.expect("scale in");
    assert_eq!(b.pids(), vec![pids[0], pids[2]]);
    assert_eq!(b.status().draining, 1);
    reconcile_until(&mut b, "the drained worker gone", |b| {
        b.status().draining == 0
    })
    .await;
    assert!(!alive(now[2]));
    assert_eq!(b.status().replaced, 1, "a drained worker is not replaced");
    // It was a second old at most: signalled once its SIGTERM handler was surely there.
    assert_eq!(b.status().drained, 1, "it drained and exited 0");

    b.shutdown().await.expect("shutdown");
    assert_eq!((b.status().running, b.status().draining), (0, 0));
    assert_eq!((b.status().drained, b.status().killed), (3, 0));
    assert!(!alive(pids[0]) && !alive(pids[2]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_while_workers_are_mid_message_loses_and_repeats_nothing() {
    let rig = Rig::new().await;
    let skus: Vec<String> = (0..6).map(|i| format!("MID-{i}")).collect();
    for sku in &skus {
        rig.env.product(sku, 100, 5).await;
    }
    // Payments take 6 s: long enough for the lagging statistics to see them in flight.
    let mut b = backend(worker_bin(), rig.worker_env(6000), Duration::from_secs(60));
    b.scale_to(3).await.expect("three workers");
    rig.place_each(&skus).await;
    testkit::eventually(
        Duration::from_secs(30),
        "three messages in flight",
        || async {
            let (_, unacked) = rig.env.queue_counts(FULFIL_QUEUE).await?;
            (unacked == 3).then_some(())
        },
    )
    .await;
    // Two of the three busy workers are told to go: each finishes its payment first.
    b.scale_to(1).await.expect("scale in");
    reconcile_until(&mut b, "two drained workers", |b| b.status().draining == 0).await;
    assert_eq!(b.status().replaced, 0, "they exited as asked");
    assert_eq!(
        b.status().drained,
        2,
        "after finishing their messages, with exit code 0"
    );
    rig.env.wait_all_final(Duration::from_secs(60)).await;
    b.shutdown().await.expect("shutdown");

    assert_eq!(
        rig.count("SELECT count(*) FROM orders WHERE status = 'fulfilled'")
            .await,
        6
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM processed_messages").await,
        6
    );
    assert_eq!(
        rig.count("SELECT count(*) FROM products WHERE sku LIKE 'MID-%' AND stock = 4")
            .await,
        6
    );
    testkit::eventually(Duration::from_secs(15), "an empty queue", || async {
        (rig.env.queue_counts(FULFIL_QUEUE).await? == (0, 0)).then_some(())
    })
    .await;
    let stats = crate::helpers::queue_stats(&rig, FULFIL_QUEUE).await;
    assert_eq!(
        stats["message_stats"]["redeliver"].as_u64().unwrap_or(0),
        0,
        "a drained worker's message went back to the queue: {stats}"
    );
}

#[tokio::test]
async fn a_worker_that_ignores_sigterm_is_killed_after_the_drain_timeout() {
    let dir = scratch_dir();
    // Ignored signals stay ignored across exec: this "worker" never drains.
    let stubborn = script(&dir, "stubborn", "trap '' TERM\nexec sleep 60");
    let mut b = backend(stubborn, Vec::new(), Duration::from_millis(800));
    b.scale_to(1).await.expect("start");
    let pid = b.pids()[0];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    b.shutdown().await.expect("shutdown");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "waited for the drain: {took:?}"
    );
    assert!(took < Duration::from_secs(5), "then killed it: {took:?}");
    assert_eq!((b.status().drained, b.status().killed), (0, 1));
    assert!(!alive(pid));
}

#[tokio::test]
async fn workers_get_the_extra_environment_on_top_of_the_inherited_one() {
    let dir = scratch_dir();
    let out = dir.join("env.txt");
    let bin = script(
        &dir,
        "env-worker",
        &format!(
            "echo \"$STRATA_TEST_VALUE $PATH\" > '{}'\nexec sleep 30",
            out.display()
        ),
    );
    let mut b = backend(
        bin,
        vec![("STRATA_TEST_VALUE".to_owned(), "hello".to_owned())],
        Duration::from_secs(5),
    );
    b.scale_to(1).await.expect("start");
    let text = testkit::eventually(Duration::from_secs(5), "the env file", || async {
        std::fs::read_to_string(&out)
            .ok()
            .filter(|t| t.ends_with('\n'))
    })
    .await;
    let (value, path) = text.trim_end().split_once(' ').expect("two words");
    assert_eq!(value, "hello");
    assert_eq!(path, std::env::var("PATH").expect("PATH"), "inherited");
    b.shutdown().await.expect("shutdown");
}

#[tokio::test]
async fn a_missing_worker_binary_is_an_error_not_a_panic() {
    let mut b = backend(
        scratch_dir().join("no-such-worker"),
        Vec::new(),
        Duration::from_secs(1),
    );
    let err = b.scale_to(1).await.expect_err("cannot start");
    assert!(format!("{err:#}").contains("no-such-worker"), "{err:#}");
    assert_eq!(b.current(), 0);
}
