//! The probe against small servers on loopback: healthy, unhealthy, not HTTP, silent, gone.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::Command;
use std::thread;

/// Serves one connection with `answer` and returns the request it read.
fn serve_once(answer: &'static [u8]) -> (String, thread::JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/readyz", listener.local_addr().unwrap());
    let handle = thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut request = Vec::new();
        let mut buf = [0u8; 512];
        while !request.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            request.extend_from_slice(&buf[..n]);
        }
        conn.write_all(answer).unwrap();
        String::from_utf8(request).unwrap()
    });
    (url, handle)
}

#[test]
fn a_2xx_answer_is_healthy_and_the_request_is_plain_http() {
    let (url, server) = serve_once(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
    let port = url
        .split(':')
        .nth(2)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    assert_eq!(probe::run([url]).unwrap(), 200);
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /readyz HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains(&format!("Host: 127.0.0.1:{port}\r\n")),
        "{request}"
    );
}

#[test]
fn a_503_is_unhealthy() {
    let (url, server) = serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
    assert!(matches!(
        probe::run([url]),
        Err(probe::ProbeError::Status(503))
    ));
    server.join().unwrap();
}

#[test]
fn something_else_than_http_is_unhealthy() {
    let (url, server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
    assert!(matches!(
        probe::run([url]),
        Err(probe::ProbeError::BadResponse(_))
    ));
    server.join().unwrap();
}

#[test]
fn a_silent_server_is_unhealthy_after_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    // Accepted by the kernel's backlog, never answered.
    let result = probe::run(["--timeout".to_owned(), "0.2".to_owned(), url]);
    assert!(
        matches!(result, Err(probe::ProbeError::Io(_))),
        "{result:?}"
    );
    drop(listener);
}

#[test]
fn a_closed_port_is_unhealthy() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/healthz", listener.local_addr().unwrap());
    drop(listener);
    assert!(matches!(
        probe::run([url]),
        Err(probe::ProbeError::Connect(_))
    ));
}

#[test]
fn the_binary_exits_0_when_healthy_and_1_when_not() {
    let bin = env!("CARGO_BIN_EXE_probe");
    let (url, server) = serve_once(b"HTTP/1.0 204 No Content\r\n\r\n");
    let ok = Command::new(bin).arg(&url).output().unwrap();
    server.join().unwrap();
    assert_eq!(ok.status.code(), Some(0), "{ok:?}");

    let (url, server) = serve_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\n");
    let bad = Command::new(bin)
        .args(["--timeout", "2", &url])
        .output()
        .unwrap();
    server.join().unwrap();
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(String::from_utf8_lossy(&bad.stderr).contains("answered 500"));

    let usage = Command::new(bin).output().unwrap();
    assert_eq!(usage.status.code(), Some(1));
}
