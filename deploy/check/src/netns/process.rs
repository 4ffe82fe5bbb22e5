//! The tiers' real binaries, each run inside its host's namespace with `ip netns exec`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A built binary of the workspace, beside the running test executable
/// (`target/<profile>/deps/<test>` -> `target/<profile>/<name>`).
pub fn workspace_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the test executable")?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .context("the test executable is not in target/<profile>/deps")?;
    let bin = profile_dir.join(name);
    if !bin.is_file() {
        bail!(
            "no `{name}` binary at {}: build the tiers first with \
             `cargo build -p logic -p presentation -p worker` (`cargo test --workspace` \
             builds them)",
            bin.display()
        );
    }
    Ok(bin)
}

/// A tier's process in a namespace, its output in a log file. On drop it gets SIGTERM
/// (and SIGKILL if it has not exited within five seconds); when the drop comes from a
/// failing test, the end of its log is printed.
pub struct TierProcess {
    name: String,
    child: Child,
    log: PathBuf,
}

impl TierProcess {
    /// Starts `binary` inside `namespace` with the given environment added to ours.
    pub fn start(
        name: &str,
        namespace: &str,
        binary: &Path,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<TierProcess> {
        std::fs::create_dir_all(log_dir)?;
        let log = log_dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        // `ip netns exec` execs the binary after switching: the child's pid is the tier's.
        let child = Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(binary)
            // Plain text in the log file.
            .env("NO_COLOR", "1")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {name} in {namespace}"))?;
        Ok(TierProcess {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Fails (with the end of the log) when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("{} exited ({status}):\n{}", self.name, self.log_tail(40));
        }
        Ok(())
    }

    /// The last `lines` lines of the process's output.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for TierProcess {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        let _ = kill(pid, Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "----- {} ({}), last lines -----\n{}",
                self.name,
                self.log.display(),
                self.log_tail(30)
            );
        }
    }
}
