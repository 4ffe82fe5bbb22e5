//! A TCP proxy that a test can cut, black-hole and restore, to make a service unreachable
//! for one process without stopping the shared service.
//!
//! A cut closes every connection at once, as a crashed peer or a reset would: the client
//! notices at its next read. A black hole keeps every socket open and forwards nothing,
//! in either direction, as a silently dead network path does: only a timeout or a missed
//! heartbeat can tell.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    shutdown: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Forwarding,
    /// New connections are refused (accepted and closed at once).
    Cut,
    /// New connections are accepted and held; nothing is forwarded.
    BlackHole,
}

struct ProxyState {
    mode: Mode,
    /// Cancelled when the proxy is cut or restored after a black hole: closes every open
    /// connection.
    generation: CancellationToken,
    /// Cancelled when the proxy becomes a black hole: open connections stop forwarding but
    /// stay open until the generation ends.
    forwarding: CancellationToken,
}

impl ProxyState {
    fn end_connections(&mut self) {
        self.generation.cancel();
        self.generation = CancellationToken::new();
        self.forwarding = CancellationToken::new();
    }
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(ProxyState {
            mode: Mode::Forwarding,
            generation: CancellationToken::new(),
            forwarding: CancellationToken::new(),
        }));
        let shutdown = CancellationToken::new();
        let task_state = state.clone();
        let task_shutdown = shutdown.clone();
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = task_shutdown.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((inbound, _)) = accepted else { continue };
                let (mode, generation, forwarding) = {
                    let s = task_state.lock().expect("proxy state");
                    (s.mode, s.generation.clone(), s.forwarding.clone())
                };
                match mode {
                    Mode::Cut => drop(inbound),
                    Mode::BlackHole => {
                        // Accepted (the client's connect succeeds) and never answered.
                        tokio::spawn(async move {
                            generation.cancelled().await;
                            drop(inbound);
                        });
                    }
                    Mode::Forwarding => {
                        tokio::spawn(forward(inbound, target, generation, forwarding));
                    }
                }
            }
        });
        Proxy {
            addr,
            state,
            shutdown,
        }
    }

    /// A proxy in front of the service of `url` (`scheme://[user@]host:port/...`), and
    /// `url` with its host and port replaced by the proxy's.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let start = url.find("://").expect("a URL with a scheme") + 3;
        let end = url[start..].find('/').map_or(url.len(), |i| start + i);
        let host_at = url[start..end].rfind('@').map_or(start, |i| start + i + 1);
        let target = tokio::net::lookup_host(&url[host_at..end])
            .await
            .expect("resolving the service")
            .next()
            .expect("the service has an address");
        let proxy = Proxy::start(target).await;
        let through = format!("{}{}{}", &url[..host_at], proxy.addr(), &url[end..]);
        (proxy, through)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        let mut s = self.state.lock().expect("proxy state");
        s.mode = Mode::Cut;
        s.end_connections();
    }

    /// Stops forwarding without closing anything: open connections stay open and silent,
    /// new ones are accepted and never answered, until [`Proxy::restore`] (which closes
    /// them) or [`Proxy::cut`].
    pub fn black_hole(&self) {
        let mut s = self.state.lock().expect("proxy state");
        s.mode = Mode::BlackHole;
        s.forwarding.cancel();
    }

    /// Forwards again. Connections held by a black hole are closed first: they lost bytes
    /// and cannot be resumed.
    pub fn restore(&self) {
        let mut s = self.state.lock().expect("proxy state");
        if s.mode == Mode::BlackHole {
            s.end_connections();
        }
        s.mode = Mode::Forwarding;
    }
}

async fn forward(
    mut inbound: TcpStream,
    target: SocketAddr,
    generation: CancellationToken,
    forwarding: CancellationToken,
) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let stopped_forwarding = tokio::select! {
        _ = generation.cancelled() => false,
        _ = forwarding.cancelled() => true,
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
    };
    if stopped_forwarding {
        // Both sockets stay open, unread and unwritten, until the generation ends.
        generation.cancelled().await;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.state.lock().map(|s| s.generation.cancel()).ok();
    }
}
