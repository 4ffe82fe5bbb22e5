//! A TCP proxy that a test can cut and restore, to make a service unreachable for one
//! process without stopping the shared service.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    shutdown: CancellationToken,
}

struct ProxyState {
    enabled: bool,
    /// Cancelled when the proxy is cut: ends every open connection.
    generation: CancellationToken,
}

impl Proxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(ProxyState {
            enabled: true,
            generation: CancellationToken::new(),
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
                let (enabled, generation) = {
                    let s = task_state.lock().expect("proxy state");
                    (s.enabled, s.generation.clone())
                };
                if !enabled {
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut inbound = inbound;
                    tokio::select! {
                        _ = generation.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                    }
                });
            }
        });
        Proxy {
            addr,
            state,
            shutdown,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        let mut s = self.state.lock().expect("proxy state");
        s.enabled = false;
        s.generation.cancel();
        s.generation = CancellationToken::new();
    }

    pub fn restore(&self) {
        self.state.lock().expect("proxy state").enabled = true;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.state.lock().map(|s| s.generation.cancel()).ok();
    }
}
