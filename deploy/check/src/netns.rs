//! Network namespaces for proving the tier isolation on one machine: each host of Strata's
//! network gets a namespace of its own, a router namespace joins the subnets, and nftables
//! rules loaded in them play the security groups and network ACLs (`deploy/netns`).
//!
//! Everything is driven through `ip` and `nft` (iproute2 and nftables, `scripts/net-tools`
//! installs them) and needs root. Namespaces are named `strata-<pid>-<run>-<role>`, so
//! runs never collide and [`remove_stale`] can tell the leftovers of a dead run from a
//! live one.

pub mod forward;
pub mod process;
pub mod vpc;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

/// First part of every namespace name this module creates.
pub const PREFIX: &str = "strata-";

const NETNS_DIR: &str = "/run/netns";

/// Whether this process runs as root (creating namespaces needs it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Fails with a pointer to `scripts/net-tools` when `ip` or `nft` is missing.
pub fn require_tools() -> anyhow::Result<()> {
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        let found = Command::new(tool)
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            bail!("`{tool}` ({package}) is not installed: run scripts/net-tools");
        }
    }
    Ok(())
}

/// Runs a command to completion; the error carries its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new(program)
        .args(args)
        .output()
        .with_context(|| format!("running {program}"))?;
    if !output.status.success() {
        bail!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// A named network namespace (`ip netns add`), deleted on drop together with whatever
/// still runs in it.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `strata-<pid>-<run>-<role>` with its loopback up.
    pub fn create(run_id: &str, role: &str) -> anyhow::Result<Netns> {
        let name = format!("{PREFIX}{}-{run_id}-{role}", std::process::id());
        run("ip", &["netns", "add", &name])?;
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n <ns> <args>`.
    pub fn ip(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        run("ip", &all).map(drop)
    }

    /// `nft <args>` inside the namespace; its output.
    pub fn nft(&self, args: &[&str]) -> anyhow::Result<String> {
        nft(&self.name, args)
    }

    /// Loads an nftables file, its includes resolved beside it.
    pub fn load_rules(&self, file: &Path) -> anyhow::Result<()> {
        let dir = file.parent().context("rule file without a directory")?;
        self.nft(&["-I", &dir.to_string_lossy(), "-f", &file.to_string_lossy()])
            .map(drop)
    }

    /// Writes a sysctl of this namespace (under /proc/sys/net, which is per namespace).
    pub fn sysctl(&self, key: &str, value: &str) -> anyhow::Result<()> {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        let value = value.to_owned();
        in_netns(&self.name, move || {
            std::fs::write(&path, value).with_context(|| format!("writing {}", path.display()))
        })?
    }

    /// Whether a sysctl exists in this namespace.
    pub fn has_sysctl(&self, key: &str) -> bool {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        in_netns(&self.name, move || path.exists()).unwrap_or(false)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete_namespace(&self.name);
    }
}

/// `nft <args>` inside a namespace; its output.
pub fn nft(namespace: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut all = vec!["netns", "exec", namespace, "nft"];
    all.extend_from_slice(args);
    run("ip", &all)
}

fn ns_path(name: &str) -> PathBuf {
    Path::new(NETNS_DIR).join(name)
}

/// Kills every process left in a namespace, then deletes it.
fn delete_namespace(name: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", name]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    if let Err(e) = run("ip", &["netns", "delete", name]) {
        eprintln!("netns: {e}");
    }
}

/// Deletes the namespaces of runs whose process is gone (a run killed before its cleanup);
/// returns their names. Namespaces of live runs are left alone.
pub fn remove_stale() -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(NETNS_DIR) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            delete_namespace(&name);
            removed.push(name);
        }
    }
    removed
}

/// Moves the calling thread into a namespace (a thread's namespace is its own: the rest
/// of the process stays where it is).
fn enter(name: &str) -> anyhow::Result<()> {
    let path = ns_path(name);
    let file = std::fs::File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))
}

/// Runs `f` on a thread inside the namespace; sockets it opens belong to the namespace.
/// A panic in `f` is carried over to the caller.
pub fn in_netns<T, F>(name: &str, f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = name.to_owned();
    let thread = std::thread::Builder::new()
        .name(format!("netns {name}"))
        .spawn(move || enter(&name).map(|()| f()))
        .context("spawning a thread")?;
    match thread.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a future inside the namespace, on a single-threaded runtime of its own (every
/// socket the future opens, HTTP clients included, belongs to the namespace). Await it
/// from async code; a panic inside is carried over.
pub async fn run_in<T, F, Fut>(name: &str, f: F) -> anyhow::Result<T>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let name = name.to_owned();
    tokio::task::spawn_blocking(move || {
        in_netns(&name, move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|rt| rt.block_on(f()))
        })
    })
    .await
    .map_err(|e| match e.try_into_panic() {
        Ok(panic) => std::panic::resume_unwind(panic),
        Err(e) => anyhow::anyhow!("{e}"),
    })??
    .context("building a runtime")
}

/// A listening socket inside the namespace, non-blocking (ready for tokio).
pub fn bind_in(name: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let listener = in_netns(name, move || TcpListener::bind(addr))?
        .with_context(|| format!("binding {addr} in {name}"))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// What a TCP connection attempt met.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// The handshake completed.
    Open,
    /// A reset came back: the host answered, nothing listens there.
    Refused,
    /// No answer at all: a rule dropped the packets silently, as AWS security groups and
    /// network ACLs do (TCP keeps retrying a SYN its own host's rules drop, so the
    /// sender's outbound rules look the same).
    Dropped,
    /// No route.
    Unreachable,
    Other(String),
}

/// Opens (and closes) one TCP connection from inside `from` to `to`. The attempt gives up
/// after `timeout` without an answer, which is what a dropped SYN looks like.
pub fn probe(from: &str, to: SocketAddr, timeout: Duration) -> Reach {
    use std::io::ErrorKind;
    let attempt = in_netns(from, move || TcpStream::connect_timeout(&to, timeout));
    match attempt {
        Err(e) => Reach::Other(format!("{e:#}")),
        Ok(Ok(_)) => Reach::Open,
        Ok(Err(e)) => match e.kind() {
            ErrorKind::ConnectionRefused => Reach::Refused,
            ErrorKind::TimedOut => Reach::Dropped,
            ErrorKind::NetworkUnreachable | ErrorKind::HostUnreachable => Reach::Unreachable,
            _ => Reach::Other(e.to_string()),
        },
    }
}

/// [`probe`] for many (namespace, destination) pairs at once; results in the same order.
pub fn probe_all(attempts: &[(&str, SocketAddr)], timeout: Duration) -> Vec<Reach> {
    std::thread::scope(|scope| {
        let running: Vec<_> = attempts
            .iter()
            .map(|&(from, to)| scope.spawn(move || probe(from, to, timeout)))
            .collect();
        running
            .into_iter()
            .map(|t| {
                t.join()
                    .unwrap_or_else(|_| Reach::Other("probe panicked".into()))
            })
            .collect()
    })
}
