//! `/ops/stream`: the event stream's shards as logic reads them (`GET /api/v1/ops/stream`):
//! each shard's sequence numbers and length, and per consumer application its checkpoint,
//! its lag and the instance holding the shard's lease, until when.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::{ShardApplication, StreamShardStatus};

use crate::csrf::CsrfToken;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, logged};
use crate::telemetry::trace_context;
use crate::views;

/// One row per shard and application (a shard no application reads has one row too).
pub struct ShardRow {
    pub shard: u16,
    pub queue: String,
    pub first: String,
    pub last: String,
    pub length: String,
    pub application: String,
    pub checkpoint: String,
    pub lag: String,
    pub holder: String,
    pub until: String,
}

fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

fn checkpoint(a: &ShardApplication) -> String {
    match (
        a.checkpoint.as_deref(),
        a.checkpoint_sequence,
        a.checkpoint_at,
    ) {
        (Some("after_sequence"), Some(s), _) => format!("after {s}"),
        (Some("at_sequence"), Some(s), _) => format!("at {s}"),
        (Some("at_timestamp"), _, Some(t)) => format!("at {}", t.format("%Y-%m-%d %H:%M:%S")),
        (Some(other), _, _) => other.replace('_', " "),
        (None, _, _) => "none".to_owned(),
    }
}

pub fn rows(shard: &StreamShardStatus) -> Vec<ShardRow> {
    let base = |application: String| ShardRow {
        shard: shard.shard,
        queue: shard.queue.clone(),
        first: figure(shard.first_sequence),
        last: figure(shard.last_sequence),
        length: figure(shard.length),
        application,
        checkpoint: String::new(),
        lag: String::new(),
        holder: String::new(),
        until: String::new(),
    };
    if shard.applications.is_empty() {
        return vec![base("none".to_owned())];
    }
    shard
        .applications
        .iter()
        .map(|a| ShardRow {
            checkpoint: checkpoint(a),
            lag: figure(a.lag),
            holder: a.holder.clone().unwrap_or_else(|| "nobody".to_owned()),
            until: a
                .lease_expires_at
                .map_or_else(String::new, |t| t.format("%H:%M:%S UTC").to_string()),
            ..base(a.application.clone())
        })
        .collect()
}

#[derive(Template)]
#[template(path = "ops_stream.html")]
struct StreamPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    problem: Option<&'static str>,
    rows: Vec<ShardRow>,
    broker_reachable: bool,
    at: String,
}

#[get("/ops/stream")]
pub async fn show(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    let mut page = StreamPage {
        title: "Event stream",
        user: Some(session.user),
        csrf: csrf.value,
        problem: None,
        rows: Vec::new(),
        broker_reachable: true,
        at: "\u{2013}".to_owned(),
    };
    match auth.logic_token() {
        None => page.problem = Some(NO_TOKEN),
        Some(token) => {
            let status = logic.stream_status(&trace_context(&req), token).await;
            match logged("stream", status) {
                Ok(status) => {
                    page.rows = status.shards.iter().flat_map(rows).collect();
                    page.broker_reachable = status.broker_reachable;
                    page.at = status.at.format("%Y-%m-%d %H:%M:%S UTC").to_string();
                }
                Err(problem) => page.problem = Some(problem),
            }
        }
    }
    Ok(views::html(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_shows_each_application_and_unknown_figures() {
        let shard = StreamShardStatus {
            shard: 1,
            queue: "events.shard.1".into(),
            first_sequence: None,
            last_sequence: Some(9),
            length: None,
            applications: vec![ShardApplication {
                application: "analytics".into(),
                checkpoint: Some("after_sequence".into()),
                checkpoint_sequence: Some(7),
                checkpoint_at: None,
                checkpoint_updated_at: None,
                lag: Some(2),
                holder: None,
                lease_expires_at: None,
            }],
        };
        let r = &rows(&shard)[0];
        assert_eq!((r.first.as_str(), r.last.as_str()), ("?", "9"));
        assert_eq!(r.checkpoint, "after 7");
        assert_eq!((r.lag.as_str(), r.holder.as_str()), ("2", "nobody"));
    }
}
