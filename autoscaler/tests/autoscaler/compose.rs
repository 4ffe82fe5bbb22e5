//! The compose backend, with a stand-in `docker` that records its command lines and keeps
//! a replica count (this machine has the docker CLI but no engine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use autoscaler::Application;
use autoscaler::backend::{Backend, ComposeBackend, ComposeConfig};
use autoscaler::config::BackendKind;

use crate::helpers::{Rig, get_json, scratch_dir, script};

/// A fake `docker`: appends its arguments to `calls.log`; `ps` lists as many containers
/// as the file `replicas` says, `up ... --scale worker=N` writes N there.
fn fake_docker(dir: &Path) -> PathBuf {
    let d = dir.display();
    script(
        dir,
        "docker",
        &format!(
            r#"echo "$*" >> '{d}/calls.log'
[ -f '{d}/fail' ] && {{ cat '{d}/fail' >&2; exit 1; }}
case " $* " in
  *" ps "*) n=$(cat '{d}/replicas' 2>/dev/null || echo 0); i=0
            while [ "$i" -lt "$n" ]; do echo "c$i"; i=$((i+1)); done ;;
  *" up "*) for a in "$@"; do case "$a" in worker=*) echo "${{a#worker=}}" > '{d}/replicas';; esac; done ;;
esac"#
        ),
    )
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn config(bin: PathBuf) -> ComposeConfig {
    ComposeConfig {
        bin,
        files: vec![PathBuf::from("docker-compose.yml")],
        project: Some("strata".to_owned()),
        service: "worker".to_owned(),
        command_timeout: Duration::from_secs(10),
    }
}

#[test]
fn the_scale_command_line_is_the_compose_one() {
    let b = ComposeBackend::new(config(PathBuf::from("docker")));
    assert_eq!(
        b.scale_args(3),
        [
            "compose",
            "-f",
            "docker-compose.yml",
            "-p",
            "strata",
            "up",
            "-d",
            "--no-recreate",
            "--scale",
            "worker=3",
            "worker"
        ]
    );
    let bare = ComposeBackend::new(ComposeConfig {
        files: Vec::new(),
        project: None,
        ..config(PathBuf::from("docker"))
    });
    assert_eq!(
        bare.scale_args(0),
        [
            "compose",
            "up",
            "-d",
            "--no-recreate",
            "--scale",
            "worker=0",
            "worker"
        ]
    );
    assert_eq!(
        bare.ps_args(),
        ["compose", "ps", "--status", "running", "--quiet", "worker"]
    );
}

#[tokio::test]
async fn the_budget_check_runs_the_worker_in_a_one_off_container_and_reports_its_refusal() {
    let dir = scratch_dir();
    let b = ComposeBackend::new(config(fake_docker(&dir)));
    assert_eq!(
        b.budget_args(6, 12),
        [
            "compose",
            "-f",
            "docker-compose.yml",
            "-p",
            "strata",
            "run",
            "--rm",
            "--no-deps",
            "-T",
            "worker",
            "worker",
            "check-budget",
            "--replicas",
            "6",
            "--reserve",
            "12"
        ]
    );
    b.check_budget(6, 12)
        .await
        .expect("the stand-in says nothing and exits 0");
    // The worker's refusal comes back through docker's stderr and exit status.
    std::fs::write(
        dir.join("fail"),
        "Error: the Postgres connection budget is exceeded: 6 workers x ...\n",
    )
    .expect("fail file");
    let err = b.check_budget(6, 12).await.expect_err("refused");
    assert_eq!(
        format!("{err:#}"),
        "the Postgres connection budget is exceeded: 6 workers x ..."
    );
}

#[tokio::test]
async fn it_adopts_scales_and_restarts_exited_containers() {
    let dir = scratch_dir();
    std::fs::write(dir.join("replicas"), "2\n").expect("seed");
    let mut b = ComposeBackend::new(config(fake_docker(&dir)));
    b.reconcile().await.expect("first look");
    assert_eq!(b.current(), 2, "adopts what runs");

    b.scale_to(5).await.expect("scale");
    assert_eq!(b.current(), 5);
    assert_eq!(
        calls(&dir).last().map(String::as_str),
        Some("compose -f docker-compose.yml -p strata up -d --no-recreate --scale worker=5 worker")
    );

    // Two containers exited on their own: the next reconcile starts them again.
    std::fs::write(dir.join("replicas"), "3\n").expect("crash");
    b.reconcile().await.expect("reconcile");
    assert_eq!(b.status().replaced, 2);
    assert_eq!(
        std::fs::read_to_string(dir.join("replicas"))
            .unwrap()
            .trim(),
        "5"
    );
    assert_eq!(b.current(), 5);

    // Stopping the autoscaler leaves the project's containers alone.
    let before = calls(&dir).len();
    b.shutdown().await.expect("shutdown");
    assert_eq!(calls(&dir).len(), before);
}

#[tokio::test]
async fn a_failing_docker_is_an_error_with_its_message() {
    let dir = scratch_dir();
    std::fs::write(dir.join("fail"), "Cannot connect to the Docker daemon").expect("fail");
    let mut b = ComposeBackend::new(config(fake_docker(&dir)));
    let err = b.scale_to(2).await.expect_err("fails");
    assert!(
        format!("{err:#}").contains("Cannot connect to the Docker daemon"),
        "{err:#}"
    );
    assert_eq!(
        b.current(),
        0,
        "the count is not changed by a failed command"
    );
    assert!(b.reconcile().await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_scales_the_compose_service_on_the_real_backlog_and_reports_it() {
    let rig = Rig::new().await;
    rig.env.product("COMPOSE-1", 100, 100).await;
    let dir = scratch_dir();
    let mut settings = rig.settings(BackendKind::Compose);
    settings.compose_bin = fake_docker(&dir);
    settings.compose_project = Some("strata-test".to_owned());
    settings.min = 1;
    settings.max = 5;
    settings.target_backlog = 10;
    settings.poll_interval = Duration::from_millis(300);
    let app = Application::build(settings).expect("build");
    let base = format!("http://{}", app.address());
    let stop = app.stop_token();
    let running = tokio::spawn(app.run_until_stopped());

    let up = "compose -p strata-test up -d --no-recreate --scale worker=";
    testkit::eventually(Duration::from_secs(10), "min replicas", || async {
        calls(&dir).contains(&format!("{up}1 worker")).then_some(())
    })
    .await;
    // 25 messages and nobody consuming them: ceil(25 / 10) = 3 workers.
    rig.place_many("COMPOSE-1", 25).await;
    testkit::eventually(Duration::from_secs(30), "three replicas", || async {
        calls(&dir).contains(&format!("{up}3 worker")).then_some(())
    })
    .await;

    // The management API has statistics for the new vhost's queue a few seconds later;
    // until then the readings are the ready-only AMQP count, then the exact ready count
    // with the API's unacked one.
    let status = testkit::eventually(Duration::from_secs(20), "a full reading", || async {
        let status = get_json(&format!("{base}/status")).await;
        (status["last_decisions"][0]["source"] == "exact_ready").then_some(status)
    })
    .await;
    let health = reqwest::get(format!("{base}/healthz"))
        .await
        .expect("healthz");
    assert_eq!(health.status(), 200);
    assert_eq!(status["backend"], "compose");
    assert_eq!(status["queue"], "orders.fulfil");
    assert_eq!(status["current"], 3);
    let last = &status["last_decisions"][0];
    assert_eq!(last["ready"], 25, "{last}");
    assert_eq!(last["unacked"], 0, "{last}");
    assert_eq!(last["source"], "exact_ready", "{last}");
    assert!(
        last["time"].is_string() && last["reason"].is_string(),
        "{last}"
    );
    let up_decision = status["last_decisions"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["action"] == "up" && d["desired"] == 3)
        .expect("the decision that scaled to 3");
    let reason = up_decision["reason"].as_str().expect("reason");
    // Orders are still arriving while the loop reads: 21 to 25 of them make 3 workers.
    let backlog = up_decision["backlog"].as_u64().expect("backlog");
    assert!((21..=25).contains(&backlog), "{up_decision}");
    assert!(
        reason.starts_with(&format!("scale up: backlog {backlog} ")),
        "{up_decision}"
    );
    // Before the statistics exist the count is the AMQP one, and the reason says so.
    if up_decision["source"] == "amqp_passive" {
        assert!(reason.contains("ready-only"), "{up_decision}");
    }
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for name in [
        "strata_autoscaler_decisions_total{action=\"up\"}",
        "strata_autoscaler_workers_desired",
        "strata_autoscaler_queue_messages{state=\"unacked\"}",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }

    stop.cancel();
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops")
        .expect("no panic")
        .expect("clean stop");
}
