//! The RabbitMQ management API: queue figures the AMQP protocol does not give (the count
//! of delivered-but-unacknowledged messages). Falls back to AMQP (ready count only) when
//! the management plugin is not there.

use std::time::Duration;

use secrecy::ExposeSecret;

use crate::DataSettings;
use crate::messaging::broker;

/// One reading of a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueReading {
    pub ready: u64,
    /// None when only the AMQP count was available.
    pub unacked: Option<u64>,
    pub consumers: u64,
}

/// User, password and vhost of an AMQP URL (`amqp://user:pass@host:port/vhost`).
pub fn amqp_parts(url: &str) -> (String, String, String) {
    let decode = |s: &str| {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.split('?').next().unwrap_or("");
    let (user, pass) = match authority.rsplit_once('@') {
        Some((creds, _)) => match creds.split_once(':') {
            Some((u, p)) => (decode(u), decode(p)),
            None => (decode(creds), String::new()),
        },
        None => ("guest".to_owned(), "guest".to_owned()),
    };
    // No path means the default vhost "/"; an empty path segment is the vhost "".
    let vhost = if rest.contains('/') {
        decode(path)
    } else {
        "/".to_owned()
    };
    (user, pass, vhost)
}

fn encode_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Reads a queue of the settings' vhost: from the management API at `api_base` when it
/// answers, else by a passive declare over AMQP.
pub async fn queue_reading(
    settings: &DataSettings,
    api_base: &str,
    queue: &str,
) -> anyhow::Result<QueueReading> {
    let (user, pass, vhost) = amqp_parts(settings.amqp_url.expose_secret());
    let url = format!(
        "{}/api/queues/{}/{}",
        api_base.trim_end_matches('/'),
        encode_segment(&vhost),
        encode_segment(queue)
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let from_api = async {
        let body: serde_json::Value = http
            .get(url)
            .basic_auth(user, Some(pass))
            .send()
            .await
            .ok()?
            .error_for_status()
            .ok()?
            .json()
            .await
            .ok()?;
        Some(QueueReading {
            ready: body.get("messages_ready")?.as_u64()?,
            unacked: Some(body.get("messages_unacknowledged")?.as_u64()?),
            consumers: body.get("consumers").and_then(|v| v.as_u64()).unwrap_or(0),
        })
    };
    if let Some(reading) = from_api.await {
        return Ok(reading);
    }
    let connection = broker::connect(settings.amqp_url(), "strata-queue-reading").await?;
    let channel = connection.create_channel().await?;
    let depth = broker::queue_depth(&channel, queue).await;
    let _ = connection.close(200, "read".into()).await;
    let (ready, consumers) = depth?;
    Ok(QueueReading {
        ready: u64::from(ready),
        unacked: None,
        consumers: u64::from(consumers),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_of_amqp_urls() {
        assert_eq!(
            amqp_parts("amqp://guest:guest@127.0.0.1:5672/%2f"),
            ("guest".into(), "guest".into(), "/".into())
        );
        assert_eq!(
            amqp_parts("amqp://u%40x:p%3Aw@h:5672/strata-test-1"),
            ("u@x".into(), "p:w".into(), "strata-test-1".into())
        );
        assert_eq!(amqp_parts("amqp://h:5672").2, "/");
        assert_eq!(encode_segment("/"), "%2F");
    }
}
