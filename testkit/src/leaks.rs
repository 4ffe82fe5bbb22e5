//! Looking for leaked secrets: start a service binary with distinctive secret values, keep
//! everything a client saw and everything the process wrote, and assert that no value shows up
//! in any of it.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use uuid::Uuid;

/// A value nobody would write by accident, to grep for.
pub fn distinctive(what: &str) -> String {
    format!("{what}{}", Uuid::new_v4().simple())
}

/// A port free on the loopback interface right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A binary started with only `PATH` and the given variables, its stdout and stderr
/// (where it logs) collected until it exits.
pub struct Running {
    child: Child,
    output: tokio::task::JoinHandle<String>,
}

impl Running {
    /// Starts `binary` with these arguments and environment (nothing else inherited).
    pub fn start(binary: &str, envs: &[(&str, String)], args: &[&str]) -> Running {
        let mut child = Command::new(binary)
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("starting {binary}: {err}"));
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr = child.stderr.take().expect("stderr");
        let output = tokio::spawn(async move {
            let (mut out, mut err) = (String::new(), String::new());
            let _ = tokio::join!(
                stdout.read_to_string(&mut out),
                stderr.read_to_string(&mut err)
            );
            out + &err
        });
        Running { child, output }
    }

    /// Stops it as an orchestrator would (SIGTERM) and returns everything it wrote.
    pub async fn stop(mut self) -> String {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(30), self.child.wait()).await;
        let _ = self.child.kill().await;
        self.output.await.expect("output reader")
    }

    /// Waits for it to exit by itself; returns the exit success and its output.
    pub async fn finish(mut self) -> (bool, String) {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("the process exits")
            .expect("exit status");
        (status.success(), self.output.await.expect("output reader"))
    }
}

/// Everything a client saw: status lines, headers (cookies included) and bodies.
#[derive(Default)]
pub struct Seen(pub String);

impl Seen {
    /// Sends the request and keeps what came back; returns the status (0 when nothing
    /// answered) and the body.
    pub async fn send(&mut self, what: &str, req: reqwest::RequestBuilder) -> (u16, String) {
        let res = match req.send().await {
            Ok(res) => res,
            Err(err) => {
                self.0.push_str(&format!("{what}: no answer: {err}\n"));
                return (0, String::new());
            }
        };
        let status = res.status().as_u16();
        self.0
            .push_str(&format!("{what}: {status}\n{:?}\n", res.headers()));
        let body = res.text().await.unwrap_or_default();
        self.0.push_str(&body);
        self.0.push('\n');
        (status, body)
    }

    /// [`Seen::send`] for when only the status matters.
    pub async fn status(&mut self, what: &str, req: reqwest::RequestBuilder) -> u16 {
        self.send(what, req).await.0
    }
}

/// Fails, quoting the offending lines, if any of the named secret values occurs in `text`.
pub fn assert_no_secret(place: &str, text: &str, secrets: &[(&str, &str)]) {
    for (name, value) in secrets {
        assert!(
            !text.contains(value),
            "the {name} appears in {place}:\n{}",
            text.lines()
                .filter(|l| l.contains(value))
                .take(5)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
