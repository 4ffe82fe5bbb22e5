//! `/ops/fifo`: the inventory feed's FIFO partitions, as logic reads them from the broker:
//! depth, in flight, consumers, the worker holding each (its active consumer), and the
//! dead-letter queue's depth. Every call to logic carries logic's admin token, which
//! never reaches the browser.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, web};
use askama::Template;
use contracts::FifoPartition;

use crate::csrf::CsrfToken;
use crate::error::PageError;
use crate::logic_client::LogicClient;
use crate::ops::auth::{OpsAuth, OpsSession};
use crate::ops::calls::{NO_TOKEN, logged};
use crate::telemetry::trace_context;
use crate::views;

/// One row of the table, every figure as text (`?` when the broker gave none).
pub struct PartitionRow {
    pub queue: String,
    pub ready: String,
    pub in_flight: String,
    pub consumers: String,
    pub holder: String,
}

fn figure(value: Option<u64>) -> String {
    value.map_or_else(|| "?".to_owned(), |v| v.to_string())
}

pub fn row(p: &FifoPartition) -> PartitionRow {
    PartitionRow {
        queue: p.queue.clone(),
        ready: figure(p.ready),
        in_flight: figure(p.in_flight),
        consumers: figure(p.consumers),
        holder: p
            .active_consumer
            .clone()
            .unwrap_or_else(|| "none".to_owned()),
    }
}

#[derive(Template)]
#[template(path = "ops_fifo.html")]
struct FifoPage {
    title: &'static str,
    user: Option<String>,
    csrf: String,
    problem: Option<&'static str>,
    rows: Vec<PartitionRow>,
    dlq_depth: String,
    broker_reachable: bool,
}

#[get("/ops/fifo")]
pub async fn show(
    session: OpsSession,
    req: HttpRequest,
    logic: web::Data<LogicClient>,
    auth: web::Data<OpsAuth>,
    csrf: CsrfToken,
) -> Result<HttpResponse, PageError> {
    let mut page = FifoPage {
        title: "FIFO partitions",
        user: Some(session.user),
        csrf: csrf.value,
        problem: None,
        rows: Vec::new(),
        dlq_depth: "?".to_owned(),
        broker_reachable: true,
    };
    match auth.logic_token() {
        None => page.problem = Some(NO_TOKEN),
        Some(token) => match logged("fifo", logic.fifo(&trace_context(&req), token).await) {
            Ok(view) => {
                page.rows = view.partitions.iter().map(row).collect();
                page.dlq_depth = figure(view.dlq_depth);
                page.broker_reachable = view.broker_reachable;
            }
            Err(problem) => page.problem = Some(problem),
        },
    }
    Ok(views::html(StatusCode::OK, &page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_figures_show_as_unknown() {
        let p = FifoPartition {
            index: 2,
            queue: "inventory.fifo.p2".into(),
            ready: Some(3),
            in_flight: None,
            consumers: Some(2),
            active_consumer: None,
        };
        let r = row(&p);
        assert_eq!((r.ready.as_str(), r.in_flight.as_str()), ("3", "?"));
        assert_eq!(r.holder, "none");
    }
}
