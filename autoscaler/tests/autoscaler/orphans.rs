//! The autoscaler binary killed outright (SIGKILL: no handler, no drop runs): its workers
//! notice their parent is gone and drain and exit; a restarted autoscaler then runs exactly
//! the workers `/status` reports. And the Postgres connection budget checked at start.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::helpers::{Rig, get_json, rabbitmq_api, scratch_dir, worker_bin};

/// The autoscaler binary, SIGKILLed if the test ends before it stopped.
struct Autoscaler {
    child: Child,
    base: String,
}

impl Drop for Autoscaler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Autoscaler {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Starts `autoscaler` with the rig's worker environment and `extra` on top; its output
/// goes to `log`.
fn start(rig: &Rig, log: &Path, extra: &[(&str, &str)]) -> Autoscaler {
    let port = testkit::leaks::free_port();
    let out = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_autoscaler"))
        .envs(rig.worker_env(0))
        .env("RUST_LOG", "info")
        .env("WORKER_BIN", worker_bin())
        .env("RABBITMQ_API_URL", rabbitmq_api())
        .env("AUTOSCALER_LISTEN", format!("127.0.0.1:{port}"))
        .env("POLL_INTERVAL", "300ms")
        .envs(extra.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file"))
        .stderr(out)
        .spawn()
        .expect("starting the autoscaler");
    Autoscaler {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

/// Live processes whose parent is `parent`.
fn children(parent: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: the command may hold spaces, the last ')' ends it.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let ppid = fields.next().and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(parent) && state != "Z" {
            found.push(pid);
        }
    }
    found
}

/// Alive and not a zombie (an orphan's new parent may never reap it).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.to_owned()))
        .is_some_and(|rest| rest.split_whitespace().next() != Some("Z"))
}

/// Consumers of the work queue, as the broker counts them now.
async fn consumers(rig: &Rig) -> u32 {
    let conn = data::messaging::broker::connect(rig.env.data.amqp_url(), "test-consumers")
        .await
        .expect("connect");
    let channel = conn.create_channel().await.expect("channel");
    let (_, consumers) = data::messaging::broker::queue_depth(&channel, contracts::FULFIL_QUEUE)
        .await
        .expect("passive declare");
    let _ = conn.close(200, "counted".into()).await;
    consumers
}

/// Waits until the autoscaler reports `n` workers, runs `n` worker processes and the broker
/// counts `n` consumers; returns the workers' pids.
async fn settled(rig: &Rig, scaler: &Autoscaler, n: u32) -> Vec<u32> {
    testkit::eventually(Duration::from_secs(30), "workers running", || async {
        let status = reqwest::get(format!("{}/status", scaler.base))
            .await
            .ok()?
            .json::<serde_json::Value>()
            .await
            .ok()?;
        let pids = children(scaler.pid());
        let agree = status["current"] == n
            && status["workers"]["running"] == n
            && pids.len() == n as usize
            && consumers(rig).await == n;
        agree.then_some(pids)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_of_a_sigkilled_autoscaler_exit_and_a_restart_runs_what_it_reports() {
    let rig = Rig::without_relay().await;
    let dir = scratch_dir();
    let flags = [("AUTOSCALER_MIN", "2"), ("AUTOSCALER_MAX", "2")];
    let first = start(&rig, &dir.join("first.log"), &flags);
    let old = settled(&rig, &first, 2).await;

    kill(
        Pid::from_raw(i32::try_from(first.pid()).expect("pid")),
        Signal::SIGKILL,
    )
    .expect("SIGKILL");
    let killed = Instant::now();
    drop(first);
    testkit::eventually(Duration::from_secs(10), "the orphans gone", || async {
        old.iter().all(|&pid| !alive(pid)).then_some(())
    })
    .await;
    let gone_after = killed.elapsed();
    println!("workers of the SIGKILLed autoscaler exited after {gone_after:?}");
    assert!(gone_after < Duration::from_secs(5), "{gone_after:?}");
    testkit::eventually(Duration::from_secs(10), "no consumer left", || async {
        (consumers(&rig).await == 0).then_some(())
    })
    .await;

    let second = start(&rig, &dir.join("second.log"), &flags);
    let new = settled(&rig, &second, 2).await;
    assert!(new.iter().all(|pid| !old.contains(pid)));
    // And it stays so: no orphan comes back to consume beside the new workers.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = get_json(&format!("{}/status", second.base)).await;
    assert_eq!(status["current"], 2, "{status}");
    assert_eq!(children(second.pid()).len(), 2);
    assert_eq!(consumers(&rig).await, 2);

    // A SIGTERM still drains the workers and stops cleanly.
    kill(
        Pid::from_raw(i32::try_from(second.pid()).expect("pid")),
        Signal::SIGTERM,
    )
    .expect("SIGTERM");
    let mut second = second;
    let exited = testkit::eventually(Duration::from_secs(30), "the autoscaler stopped", || {
        let status = second.child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert!(exited.success(), "{exited}");
    assert!(new.iter().all(|&pid| !alive(pid)));
}

#[tokio::test]
async fn an_autoscaler_whose_workers_would_exhaust_postgres_refuses_to_start() {
    let rig = Rig::without_relay().await;
    let dir = scratch_dir();
    // 3 x (40 + 1) + 12 = 135 connections: more than any default Postgres allows (100).
    let log = dir.join("over.log");
    let mut over = start(
        &rig,
        &log,
        &[
            ("AUTOSCALER_MIN", "1"),
            ("AUTOSCALER_MAX", "3"),
            ("DATABASE_MAX_CONNECTIONS", "40"),
        ],
    );
    let status = testkit::eventually(Duration::from_secs(30), "the autoscaler exits", || {
        let status = over.child.try_wait().expect("try_wait");
        async move { status }
    })
    .await;
    assert!(!status.success(), "{status}");
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.contains(
            "the Postgres connection budget is exceeded: 3 workers x \
                       (DATABASE_MAX_CONNECTIONS 40 + 1 of the outbox relay) + 12 reserved for \
                       other clients = 135"
        ),
        "{text}"
    );
    assert!(children(over.pid()).is_empty(), "no worker was started");
    assert!(!text.contains("worker started"), "{text}");

    // The same with a budget that fits: it starts its worker.
    let fits = start(
        &rig,
        &dir.join("fits.log"),
        &[("AUTOSCALER_MIN", "1"), ("AUTOSCALER_MAX", "3")],
    );
    settled(&rig, &fits, 1).await;
    let text = std::fs::read_to_string(dir.join("fits.log")).expect("log");
    assert!(
        text.contains("the Postgres connection budget fits"),
        "{text}"
    );
}
