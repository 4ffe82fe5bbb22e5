//! A TCP forwarder that puts the machine's own services into a namespace: it listens on
//! an address inside the namespace and connects each client to the service from the
//! root namespace. The shared services keep running untouched on 127.0.0.1, and what
//! reaches them is decided by the rules of the namespace the forwarder listens in.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Listening sockets in a namespace and their forwarding tasks; all stop on drop.
pub struct Forwarder {
    tasks: Vec<JoinHandle<()>>,
}

/// One forwarded service: where it listens in the namespace, where the service really is.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    pub listen: SocketAddr,
    pub upstream: SocketAddr,
}

impl Forwarder {
    /// Binds every route's listening address inside `namespace` (call from a tokio
    /// runtime: the forwarding runs on it, in the root namespace).
    pub fn start(namespace: &str, routes: &[Route]) -> anyhow::Result<Forwarder> {
        let mut tasks = Vec::new();
        for route in routes {
            let listener = TcpListener::from_std(super::bind_in(namespace, route.listen)?)?;
            tasks.push(tokio::spawn(serve(listener, route.upstream)));
        }
        Ok(Forwarder { tasks })
    }
}

async fn serve(listener: TcpListener, upstream: SocketAddr) {
    // Dropped with this task: ends every open connection.
    let mut connections = JoinSet::new();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        while connections.try_join_next().is_some() {}
        connections.spawn(async move {
            // A service that cannot be reached shows to the client as a closed connection.
            if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                let _ = inbound.set_nodelay(true);
                let _ = outbound.set_nodelay(true);
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}
