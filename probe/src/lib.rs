//! A health probe for container healthchecks: `probe [--timeout SECS] URL` sends one plain
//! HTTP `GET` and succeeds when the answer's status is 2xx. Docker reads exit code 0 as
//! healthy and 1 as unhealthy; the runtime image has no shell, curl or wget, so this is
//! what `HEALTHCHECK` and compose `healthcheck` run.
//!
//! Only the status line is read: a probe needs nothing else, and a server that answers
//! more slowly than the timeout is unhealthy.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long connecting, sending and reading may each take unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3);

/// Where to send the `GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host as written in the URL (an IPv6 address keeps its brackets), for `Host:`.
    pub authority: String,
    /// Host to resolve (brackets removed).
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

#[derive(Debug)]
pub enum ProbeError {
    Usage(String),
    Url(String),
    Connect(String),
    Io(io::Error),
    BadResponse(String),
    Status(u16),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::Usage(m) => write!(
                f,
                "{m}\nusage: probe [--timeout SECS] http://HOST[:PORT]/PATH"
            ),
            ProbeError::Url(m) => write!(f, "bad URL: {m}"),
            ProbeError::Connect(m) => write!(f, "cannot connect: {m}"),
            ProbeError::Io(e) => write!(f, "{e}"),
            ProbeError::BadResponse(m) => write!(f, "not an HTTP answer: {m}"),
            ProbeError::Status(code) => write!(f, "answered {code}"),
        }
    }
}

impl std::error::Error for ProbeError {}

impl From<io::Error> for ProbeError {
    fn from(e: io::Error) -> Self {
        ProbeError::Io(e)
    }
}

/// Parses `http://host[:port][/path]`. Only plain HTTP: probes talk to the container itself.
pub fn parse_url(url: &str) -> Result<Target, ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(format!("{url:?} does not start with http://")))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if authority.contains('@') {
        return Err(ProbeError::Url("credentials are not supported".to_owned()));
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let end = bracketed
            .find(']')
            .ok_or_else(|| ProbeError::Url(format!("unclosed [ in {authority:?}")))?;
        let host = &bracketed[..end];
        let port = match &bracketed[end + 1..] {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| ProbeError::Url(format!("junk after ] in {authority:?}")))?,
            ),
        };
        (host, port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(ProbeError::Url(format!("no host in {url:?}")));
    }
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| ProbeError::Url(format!("bad port {p:?}")))?,
    };
    Ok(Target {
        authority: authority.to_owned(),
        host: host.to_owned(),
        port,
        path,
    })
}

/// Sends the `GET` and returns the status when it is 2xx.
pub fn check(target: &Target, timeout: Duration) -> Result<u16, ProbeError> {
    let addrs = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| ProbeError::Connect(format!("{}: {e}", target.host)))?;
    let mut last = None;
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    let mut stream = stream.ok_or_else(|| {
        ProbeError::Connect(last.unwrap_or_else(|| format!("{} has no address", target.host)))
    })?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: strata-probe\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes())?;

    // The status line is all we need; stop at its end (or 1 KiB, or EOF).
    let mut head = Vec::with_capacity(128);
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 1024 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status = status_code(&head)?;
    if (200..300).contains(&status) {
        Ok(status)
    } else {
        Err(ProbeError::Status(status))
    }
}

/// The status code of an HTTP/1.x status line.
pub fn status_code(head: &[u8]) -> Result<u16, ProbeError> {
    let line_end = head
        .windows(2)
        .position(|w| w == b"\r\n")
        .unwrap_or(head.len());
    let line = String::from_utf8_lossy(&head[..line_end]);
    let mut parts = line.split(' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        let shown: String = line.chars().take(60).collect();
        return Err(ProbeError::BadResponse(format!("{shown:?}")));
    }
    code.parse()
        .map_err(|_| ProbeError::BadResponse(format!("status {code:?}")))
}

/// The command line: `[--timeout SECS] URL`.
pub fn run(args: impl IntoIterator<Item = String>) -> Result<u16, ProbeError> {
    let mut timeout = DEFAULT_TIMEOUT;
    let mut url = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--timeout" => {
                let value = args
                    .next()
                    .ok_or_else(|| ProbeError::Usage("--timeout needs a value".to_owned()))?;
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| ProbeError::Usage(format!("bad timeout {value:?}")))?;
                timeout = Duration::from_secs_f64(secs);
            }
            "-h" | "--help" => return Err(ProbeError::Usage("help".to_owned())),
            _ if url.is_none() => url = Some(arg),
            _ => return Err(ProbeError::Usage(format!("unexpected argument {arg:?}"))),
        }
    }
    let url = url.ok_or_else(|| ProbeError::Usage("no URL given".to_owned()))?;
    check(&parse_url(&url)?, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let t = parse_url("http://127.0.0.1:8081/readyz").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("127.0.0.1", 8081, "/readyz")
        );
        let t = parse_url("http://localhost").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 80, "/")
        );
        let t = parse_url("http://[::1]:9091/healthz?x=1").unwrap();
        assert_eq!(
            (
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            ("[::1]:9091", "::1", 9091, "/healthz?x=1")
        );
        let t = parse_url("http://h:1?q").unwrap();
        assert_eq!(t.path, "/?q");
        for bad in [
            "https://h/",
            "h:80/",
            "http://:80/",
            "http://h:0/",
            "http://h:99999/",
            "http://h:x/",
            "http://[::1/",
            "http://u:p@h/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn reads_status_lines() {
        assert_eq!(status_code(b"HTTP/1.1 200 OK\r\n").unwrap(), 200);
        assert_eq!(
            status_code(b"HTTP/1.0 503 Service Unavailable\r\nx").unwrap(),
            503
        );
        assert!(status_code(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert!(status_code(b"").is_err());
        assert!(status_code(b"HTTP/1.1 2000 OK\r\n").is_err());
    }

    #[test]
    fn command_line_needs_a_url() {
        assert!(matches!(run(Vec::new()), Err(ProbeError::Usage(_))));
        assert!(matches!(
            run([
                "--timeout".to_owned(),
                "0".to_owned(),
                "http://h/".to_owned()
            ]),
            Err(ProbeError::Usage(_))
        ));
        assert!(matches!(
            run(["http://h/".to_owned(), "extra".to_owned()]),
            Err(ProbeError::Usage(_))
        ));
    }
}
