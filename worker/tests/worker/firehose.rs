//! `worker firehose` against the real RabbitMQ and Postgres: files by size and by age,
//! every record archived exactly once (read back from the gzip files), e-mail addresses
//! gone, a SIGKILLed process started again, and the staging files a crash leaves.

use std::collections::{BTreeMap, HashMap};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use contracts::{EVENTS_EXCHANGE, Envelope, OrderFulfilled};
use data::messaging::outbox;
use secrecy::ExposeSecret;
use testkit::{TestEnv, apps};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;
use worker::streams::firehose::{self, FirehoseArgs, archive};

const WAIT: Duration = Duration::from_secs(60);
const SHARDS: u16 = 4;

/// An archive directory, removed when dropped.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Dir {
        let path = std::env::temp_dir().join(format!("strata-firehose-{}", Uuid::new_v4()));
        std::fs::create_dir_all(&path).expect("archive dir");
        Dir(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `count` order events to the outbox, each with the buyer's address in `email`
/// and another one inside a sentence; returns their message ids.
async fn enqueue(env: &TestEnv, count: usize) -> Vec<String> {
    let mut tx = env.pool.begin().await.expect("begin");
    let mut ids = Vec::with_capacity(count);
    for n in 0..count {
        let mut event = Envelope::new(
            OrderFulfilled {
                order_id: Uuid::new_v4(),
                total_cents: n as i64,
                email: format!("buyer{n}@example.com"),
                lines: Vec::new(),
            },
            None,
        );
        event.attributes.insert(
            "note".into(),
            format!("gift, also tell friend.{n}@mail.example.org").into(),
        );
        ids.push(event.message_id.to_string());
        outbox::enqueue(&mut tx, EVENTS_EXCHANGE, "order.fulfilled", &event)
            .await
            .expect("enqueue");
    }
    tx.commit().await.expect("commit");
    ids
}

/// Publishes `count` events into the shards through a relay, and waits until they are.
async fn publish(env: &TestEnv, count: usize) -> Vec<String> {
    let relay = apps::relay(env, |_| {});
    let ids = enqueue(env, count).await;
    testkit::eventually(WAIT, "the outbox published", || async {
        (outbox::backlog(&env.pool).await.ok()? == 0).then_some(())
    })
    .await;
    relay.stop().await;
    ids
}

/// The shard queues, declared as the relay does.
async fn declare_shards(env: &TestEnv) {
    publish(env, 0).await;
}

/// A line read back from the archive.
#[derive(Debug, Clone)]
struct Archived {
    file: String,
    shard: u64,
    sequence: u64,
    message_id: String,
    text: String,
}

/// Every line of every `.json.gz` file under `dir` (the staging directory left out).
fn read_archive(dir: &Path) -> Vec<Archived> {
    let mut lines = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).expect("read dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                if path.file_name() != Some(archive::STAGING.as_ref()) {
                    stack.push(path);
                }
                continue;
            }
            let file = path
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            assert!(file.ends_with(".json.gz"), "only archive files: {file}");
            let gz = flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("open"));
            for line in std::io::BufReader::new(gz).lines() {
                let text = line.expect("a whole gzip file of text");
                let value: serde_json::Value = serde_json::from_str(&text).expect("JSON line");
                lines.push(Archived {
                    file: file.clone(),
                    shard: value["shard"].as_u64().expect("shard"),
                    sequence: value["sequence"].as_u64().expect("sequence"),
                    message_id: value["message_id"].as_str().expect("id").to_owned(),
                    text,
                });
            }
        }
    }
    lines
}

/// Checks that the archive holds exactly `ids`, once each, that the manifest lists every
/// file with its figures, and that nothing is left buffered or staged.
async fn assert_exactly_once(env: &TestEnv, dir: &Path, application: &str, ids: &[String]) {
    let lines = read_archive(dir);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for line in &lines {
        *seen.entry(&line.message_id).or_default() += 1;
    }
    let missing = ids
        .iter()
        .filter(|id| !seen.contains_key(id.as_str()))
        .count();
    let repeated = seen.values().filter(|n| **n > 1).count();
    assert_eq!((missing, repeated), (0, 0), "every record once");
    assert_eq!(lines.len(), ids.len());
    // (shard, sequence) is unique too, and each file holds one shard's range in order.
    let mut files: BTreeMap<&str, Vec<&Archived>> = BTreeMap::new();
    for line in &lines {
        files.entry(&line.file).or_default().push(line);
    }
    let manifest: Vec<(String, i32, i64, i64, i32, i64)> = sqlx::query_as(
        "SELECT path, shard, first_sequence, last_sequence, records, bytes FROM firehose_files \
         WHERE application = $1 ORDER BY path",
    )
    .bind(application)
    .fetch_all(&env.pool)
    .await
    .expect("manifest");
    assert_eq!(manifest.len(), files.len(), "one manifest row per file");
    for (path, shard, first, last, records, bytes) in &manifest {
        let lines = files.get(path.as_str()).expect("the listed file exists");
        assert_eq!(lines.len(), *records as usize, "{path}");
        assert!(lines.iter().all(|l| l.shard == *shard as u64), "{path}");
        let sequences: Vec<u64> = lines.iter().map(|l| l.sequence).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{path} in order");
        assert_eq!(
            (sequences[0], *sequences.last().unwrap()),
            (*first as u64, *last as u64)
        );
        let size = std::fs::metadata(dir.join(path)).expect("file").len();
        assert_eq!(size, *bytes as u64, "{path}");
    }
    let buffered: i64 =
        sqlx::query_scalar("SELECT count(*) FROM firehose_buffer WHERE application = $1")
            .bind(application)
            .fetch_one(&env.pool)
            .await
            .expect("buffer");
    assert_eq!(buffered, 0);
    let staged = std::fs::read_dir(dir.join(archive::STAGING).join(application))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(staged, 0, "no staging file left");
}

async fn archived_count(env: &TestEnv, application: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT coalesce(sum(records), 0)::bigint FROM firehose_files WHERE application = $1",
    )
    .bind(application)
    .fetch_one(&env.pool)
    .await
    .expect("archived")
}

/// An in-process instance.
struct Instance {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

fn start(env: &TestEnv, args: FirehoseArgs) -> Instance {
    let stop = CancellationToken::new();
    let mut data = env.data.clone();
    data.stream.stream_shards = SHARDS;
    let token = stop.clone();
    let task = tokio::spawn(async move { firehose::run(&data, &args, None, token).await });
    Instance { stop, task }
}

impl Instance {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.expect("no panic").expect("a clean stop");
    }
}

fn args(dir: &Path, application: &str, bytes: u64, interval_secs: u64) -> FirehoseArgs {
    FirehoseArgs {
        application: application.to_owned(),
        buffer_bytes: bytes,
        buffer_interval_secs: interval_secs,
        check_ms: 100,
        lease_secs: 2,
        ..FirehoseArgs::new(dir)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_on_size_and_the_stop_flushes_the_rest() {
    let env = TestEnv::new().await;
    let dir = Dir::new();
    declare_shards(&env).await;
    // 3 kB of lines per file, an interval that never comes: only the size writes files.
    let limit = 3000;
    let instance = start(&env, args(&dir.0, "firehose", limit, 3600));
    let ids = publish(&env, 120).await;
    testkit::eventually(WAIT, "files by size in every shard", || async {
        let shards: i64 = sqlx::query_scalar(
            "SELECT count(DISTINCT shard) FROM firehose_files WHERE application = 'firehose'",
        )
        .fetch_one(&env.pool)
        .await
        .ok()?;
        (shards == i64::from(SHARDS)).then_some(())
    })
    .await;
    // Let every record reach the buffer: then the files hold whole multiples of the size.
    testkit::eventually(WAIT, "every record buffered or archived", || async {
        let buffered: i64 = sqlx::query_scalar("SELECT count(*) FROM firehose_buffer")
            .fetch_one(&env.pool)
            .await
            .ok()?;
        (buffered + archived_count(&env, "firehose").await == 120).then_some(())
    })
    .await;
    let sizes: Vec<(i64, i32)> = sqlx::query_as("SELECT raw_bytes, records FROM firehose_files")
        .fetch_all(&env.pool)
        .await
        .expect("files");
    let line = sizes[0].0 / i64::from(sizes[0].1);
    for (raw, _) in &sizes {
        assert!(
            *raw >= limit as i64 && *raw < limit as i64 + 2 * line,
            "a file reaches the size by less than a line: {raw} (lines of ~{line})"
        );
    }
    let buffered: i64 = sqlx::query_scalar("SELECT count(*) FROM firehose_buffer")
        .fetch_one(&env.pool)
        .await
        .expect("buffer");
    assert!(buffered > 0, "below the size, records wait");

    instance.stop().await;
    assert_exactly_once(&env, &dir.0, "firehose", &ids).await;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM stream_leases WHERE application = 'firehose' AND owner IS NOT NULL",
    )
    .fetch_one(&env.pool)
    .await
    .expect("leases");
    assert_eq!(held, 0, "the stop gives the leases back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_written_on_age_without_addresses_unless_asked() {
    let env = TestEnv::new().await;
    let dir = Dir::new();
    let raw_dir = Dir::new();
    declare_shards(&env).await;
    // 5 MiB is never reached: the 1 s interval writes the files. A second application
    // archives the same stream without the transform.
    let redacting = start(&env, args(&dir.0, "firehose", 5 << 20, 1));
    let raw = start(
        &env,
        FirehoseArgs {
            redact: false,
            ..args(&raw_dir.0, "raw", 5 << 20, 1)
        },
    );
    let ids = publish(&env, 60).await;
    for app in ["firehose", "raw"] {
        testkit::eventually(WAIT, "every record archived", || async {
            (archived_count(&env, app).await == 60).then_some(())
        })
        .await;
    }
    assert_exactly_once(&env, &dir.0, "firehose", &ids).await;
    assert_exactly_once(&env, &raw_dir.0, "raw", &ids).await;

    let lines = read_archive(&dir.0);
    for line in &lines {
        assert!(!line.text.contains("@example.com"), "{}", line.text);
        assert!(!line.text.contains("@mail.example.org"), "{}", line.text);
        let value: serde_json::Value = serde_json::from_str(&line.text).unwrap();
        assert_eq!(value["data"]["payload"]["email"], firehose::redact::MARKER);
        assert_eq!(
            value["data"]["attributes"]["note"],
            format!("gift, also tell {}", firehose::redact::MARKER)
        );
        // The rest of the record is kept.
        assert_eq!(value["type"], "OrderFulfilled");
        assert!(value["data"]["payload"]["order_id"].is_string());
    }
    let raw_lines = read_archive(&raw_dir.0);
    assert!(
        raw_lines.iter().all(|l| l.text.contains("@example.com")),
        "FIREHOSE_REDACT=false keeps the addresses"
    );
    // A file's hour directory is its first record's event time (UTC).
    let mut firsts: BTreeMap<&str, &Archived> = BTreeMap::new();
    for line in &lines {
        let first = firsts.entry(&line.file).or_insert(line);
        if line.sequence < first.sequence {
            *first = line;
        }
    }
    for (file, first) in firsts {
        let value: serde_json::Value = serde_json::from_str(&first.text).unwrap();
        let at: chrono::DateTime<chrono::Utc> =
            value["timestamp"].as_str().unwrap().parse().unwrap();
        assert!(
            file.starts_with(&at.format("%Y/%m/%d/%H/").to_string()),
            "{file} at {at}"
        );
    }
    redacting.stop().await;
    raw.stop().await;
}

/// The crash points of a flush, set up by hand: a staging file whose manifest row
/// committed (a crash before the rename) is renamed, one without a row (a crash before
/// the commit) is removed and its records written again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_finishes_committed_files_and_removes_the_others() {
    let env = TestEnv::new().await;
    let dir = Dir::new();
    declare_shards(&env).await;
    let staging = dir.0.join(archive::STAGING).join("firehose");
    std::fs::create_dir_all(&staging).unwrap();
    let name = archive::file_name("firehose", 1, 5, 7);
    let committed = format!("{name}.aaaa");
    std::fs::write(staging.join(&committed), b"committed").unwrap();
    sqlx::query(
        "INSERT INTO firehose_files (application, shard, first_sequence, last_sequence, \
             records, raw_bytes, bytes, path, staging) \
         VALUES ('firehose', 1, 5, 7, 3, 30, 9, $1, $2)",
    )
    .bind(format!("2026/01/02/03/{name}"))
    .bind(&committed)
    .execute(&env.pool)
    .await
    .unwrap();
    let abandoned = format!("{}.bbbb", archive::file_name("firehose", 1, 8, 9));
    std::fs::write(staging.join(&abandoned), b"half a fi").unwrap();
    // Another shard's and another application's staging files are not this shard's
    // business until their lease is taken.
    let other = dir.0.join(archive::STAGING).join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(
        other.join(format!("{}.cccc", archive::file_name("other", 1, 1, 1))),
        b"x",
    )
    .unwrap();

    let instance = start(&env, args(&dir.0, "firehose", 5 << 20, 1));
    let finished = dir.0.join(format!("2026/01/02/03/{name}"));
    testkit::eventually(WAIT, "the committed file renamed", || async {
        finished.exists().then_some(())
    })
    .await;
    assert_eq!(std::fs::read(&finished).unwrap(), b"committed");
    testkit::eventually(WAIT, "the abandoned file removed", || async {
        (!staging.join(&abandoned).exists()).then_some(())
    })
    .await;
    assert!(
        other.read_dir().unwrap().count() == 1,
        "another application's file stays"
    );
    instance.stop().await;
}

fn spawn_process(env: &TestEnv, dir: &Path) -> Child {
    let data = &env.data;
    Command::new(env!("CARGO_BIN_EXE_worker"))
        .arg("firehose")
        .env("DATABASE_URL", data.database_url.expose_secret())
        .env("AMQP_URL", data.amqp_url.expose_secret())
        .env("REDIS_URL", data.redis_url.expose_secret())
        .env("STREAM_SHARDS", SHARDS.to_string())
        .env("FIREHOSE_DIR", dir)
        .env("FIREHOSE_BUFFER_BYTES", "2000")
        .env("FIREHOSE_BUFFER_INTERVAL_SECS", "1")
        .env("FIREHOSE_CHECK_MS", "50")
        .env("FIREHOSE_LEASE_SECS", "2")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("starting worker firehose")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firehose_process_killed_mid_run_loses_and_repeats_nothing() {
    let env = TestEnv::new().await;
    let dir = Dir::new();
    declare_shards(&env).await;
    let mut ids = Vec::new();
    // Three processes, the first two SIGKILLed while records keep coming and files are
    // being written (small files: a flush every few records).
    let mut process = spawn_process(&env, &dir.0);
    for _ in 0..2 {
        let before = archived_count(&env, "firehose").await;
        ids.extend(publish(&env, 150).await);
        testkit::eventually(WAIT, "some files written by this process", || async {
            (archived_count(&env, "firehose").await > before + 20).then_some(())
        })
        .await;
        ids.extend(publish(&env, 50).await);
        process.kill().await.expect("SIGKILL");
        let _ = process.wait().await;
        process = spawn_process(&env, &dir.0);
    }
    ids.extend(publish(&env, 150).await);
    let total = ids.len() as i64;
    testkit::eventually(WAIT, "every record archived", || async {
        (archived_count(&env, "firehose").await >= total).then_some(())
    })
    .await;
    // Nothing more comes later; the last process stops cleanly on SIGTERM.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pid = process.id().expect("pid").to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill -TERM");
    assert!(term.success());
    let status = tokio::time::timeout(WAIT, process.wait())
        .await
        .expect("the firehose exits after its last flush")
        .expect("wait");
    assert!(status.success(), "exit status {status:?}");
    assert_exactly_once(&env, &dir.0, "firehose", &ids).await;
}

/// Records per second archived by one instance (4 shards, 1 MiB files, 1 s interval),
/// from the first record buffered to the last file listed. A measurement, not a test:
/// `cargo test -p worker --test worker firehose_throughput -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement; run it by name"]
async fn firehose_throughput() {
    const EVENTS: usize = 6000;
    let env = TestEnv::new().await;
    let dir = Dir::new();
    let ids = publish(&env, EVENTS).await;
    let started = Instant::now();
    let instance = start(&env, args(&dir.0, "firehose", 1 << 20, 1));
    testkit::eventually(
        Duration::from_secs(600),
        "every record archived",
        || async { (archived_count(&env, "firehose").await == EVENTS as i64).then_some(()) },
    )
    .await;
    let elapsed = started.elapsed();
    instance.stop().await;
    let (files, raw, bytes): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), sum(raw_bytes)::bigint, sum(bytes)::bigint FROM firehose_files",
    )
    .fetch_one(&env.pool)
    .await
    .expect("figures");
    assert_exactly_once(&env, &dir.0, "firehose", &ids).await;
    println!(
        "{EVENTS} records, {SHARDS} shards: archived in {:.1} s, {:.0} records/s; {files} files, \
         {raw} bytes of lines, {bytes} gzip'd ({:.1}x)",
        elapsed.as_secs_f64(),
        EVENTS as f64 / elapsed.as_secs_f64(),
        raw as f64 / bytes as f64
    );
}
