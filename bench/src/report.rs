//! The table at the end of a run: every figure beside the limit it runs against and their
//! ratio, written as Markdown and JSON. Figures come from a `key<TAB>value` file the
//! script fills as it measures; a figure whose measurement failed shows as `n/a`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// What a figure is compared with.
enum Limit {
    /// Another measurement of the same run.
    Measured(&'static str),
    /// A fixed budget.
    Budget(f64),
    None,
}

/// Whether more of the figure is better (throughput) or less (latency, memory, time):
/// ratios are turned so that higher is always better and 1.00 means "at the limit".
#[derive(Clone, Copy, PartialEq)]
enum Better {
    Higher,
    Lower,
}

struct Spec {
    id: &'static str,
    /// `{{key}}` is replaced by that raw value (connection counts, rates).
    label: &'static str,
    unit: &'static str,
    strata: &'static str,
    limit: Limit,
    limit_is: &'static str,
    better: Better,
    /// Goal for the ratio, reported against, never enforced.
    goal: Option<f64>,
}

const SPECS: &[Spec] = &[
    Spec {
        id: "cached_read",
        label: "cached product read, logic `GET /api/v1/products/{sku}` (X-Cache hit), {{read_conns}} connections",
        unit: "req/s",
        strata: "logic_read_rps",
        limit: Limit::Measured("redis_get_rps"),
        limit_is: "`redis-benchmark` GET of the same cached value, same connections",
        better: Better::Higher,
        goal: Some(1.0),
    },
    Spec {
        id: "product_page",
        label: "product page, presentation `GET /products/{sku}`, {{read_conns}} connections",
        unit: "req/s",
        strata: "page_rps",
        limit: Limit::Measured("logic_read_rps"),
        limit_is: "the logic read it wraps (row above)",
        better: Better::Higher,
        goal: None,
    },
    Spec {
        id: "orders_accepted",
        label: "orders accepted, logic `POST /api/v1/orders`, {{order_conns}} connections",
        unit: "orders/s",
        strata: "orders_rps",
        limit: Limit::Measured("pgbench_place_tps"),
        limit_is: "`pgbench`, the same statement, same connections",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "fulfilment_db",
        label: "fulfilments, {{workers}} worker(s) x {{worker_conns}} connections, prefetch {{prefetch}}, payment latency 0",
        unit: "orders/s",
        strata: "fulfil_ps",
        limit: Limit::Measured("pgbench_fulfil_tps"),
        limit_is: "`pgbench`, the worker's statements, same connections",
        better: Better::Higher,
        goal: None,
    },
    Spec {
        id: "fulfilment_composite",
        label: "fulfilments (as above)",
        unit: "orders/s",
        strata: "fulfil_ps",
        limit: Limit::Measured("fulfil_composite_ps"),
        limit_is: "composite: the `pgbench` transaction ({{fulfil_composite_db_ps}}/s) and the broker's consume + ack ({{broker_consume_ps}}/s) in series, 1 / (1/a + 1/b)",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "fulfilment_broker",
        label: "fulfilments (as above)",
        unit: "orders/s",
        strata: "fulfil_ps",
        limit: Limit::Measured("broker_consume_ps"),
        limit_is: "lapin consume + ack, quorum queue, same prefetch (publish: {{broker_publish_ps}}/s)",
        better: Better::Higher,
        goal: None,
    },
    Spec {
        id: "fulfilment_celery",
        label: "fulfilments (as above)",
        unit: "orders/s",
        strata: "fulfil_ps",
        limit: Limit::Measured("celery_fulfil_ps"),
        limit_is: "peer: Celery worker ({{celery_pool}}), same queue type, transaction and concurrency",
        better: Better::Higher,
        goal: None,
    },
    Spec {
        id: "cpu_read",
        label: "CPU of the machine per cached read: logic {{cpu_read_strata_us}}, the rest (wrk) {{cpu_read_rest_us}}",
        unit: "µs",
        strata: "cpu_read_us",
        limit: Limit::Measured("cpu_redis_get_us"),
        limit_is: "per `redis-benchmark` GET: Redis {{cpu_redis_get_redis_us}}, the rest (redis-benchmark) {{cpu_redis_get_rest_us}}",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "cpu_order",
        label: "CPU of the machine per order accepted: Postgres {{cpu_orders_postgres_us}}, RabbitMQ {{cpu_orders_rabbitmq_us}}, Strata {{cpu_orders_strata_us}}, the rest (wrk) {{cpu_orders_rest_us}}",
        unit: "µs",
        strata: "cpu_orders_us",
        limit: Limit::Measured("cpu_pgbench_place_us"),
        limit_is: "per `pgbench` transaction: Postgres {{cpu_pgbench_place_postgres_us}}, the rest (pgbench) {{cpu_pgbench_place_rest_us}}",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "cpu_fulfilment",
        label: "CPU of the machine per fulfilment: Postgres {{cpu_fulfil_postgres_us}}, RabbitMQ {{cpu_fulfil_rabbitmq_us}}, Strata {{cpu_fulfil_strata_us}}, the rest {{cpu_fulfil_rest_us}}",
        unit: "µs",
        strata: "cpu_fulfil_us",
        limit: Limit::Measured("cpu_pgbench_fulfil_us"),
        limit_is: "per `pgbench` transaction: Postgres {{cpu_pgbench_fulfil_postgres_us}}, the rest (pgbench) {{cpu_pgbench_fulfil_rest_us}}",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "cpu_fulfilment_celery",
        label: "CPU of the machine per fulfilment (as above)",
        unit: "µs",
        strata: "cpu_fulfil_us",
        limit: Limit::Measured("cpu_celery_fulfil_us"),
        limit_is: "peer: per Celery fulfilment: Postgres {{cpu_celery_fulfil_postgres_us}}, RabbitMQ {{cpu_celery_fulfil_rabbitmq_us}}, the rest (Celery) {{cpu_celery_fulfil_rest_us}}",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "e2e_p50",
        label: "placed -> fulfilled p50, open loop at {{e2e_rate}} orders/s",
        unit: "ms",
        strata: "e2e_p50_ms",
        limit: Limit::Measured("e2e_floor_ms"),
        limit_is: "floor: pgbench place + fulfil latency (1 connection) + 2 broker round trips",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "e2e_p99",
        label: "placed -> fulfilled p99 (same run; {{e2e_finished}}/{{e2e_sent}} finished)",
        unit: "ms",
        strata: "e2e_p99_ms",
        limit: Limit::Measured("e2e_floor_ms"),
        limit_is: "the same floor",
        better: Better::Lower,
        goal: Some(0.5),
    },
    Spec {
        id: "e2e_p99_tails",
        label: "placed -> fulfilled p99 (as above)",
        unit: "ms",
        strata: "e2e_p99_ms",
        limit: Limit::Measured("e2e_floor_p99_ms"),
        limit_is: "the floor's parts each at its own p99, summed: pgbench place {{pgbench_place_latency_p99_ms}} ms + fulfil {{pgbench_fulfil_latency_p99_ms}} ms + 2 broker round trips of {{broker_round_trip_p99_ms}} ms",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "e2e_to_placing",
        label: "of which p50: send -> placing transaction begins; p99 {{e2e_to_placing_p99_ms}} ms",
        unit: "ms",
        strata: "e2e_to_placing_p50_ms",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "e2e_placing_to_fulfilling",
        label: "of which p50: placing -> fulfilling transaction begins (commit, relay, broker); p99 {{e2e_placing_to_fulfilling_p99_ms}} ms",
        unit: "ms",
        strata: "e2e_placing_to_fulfilling_p50_ms",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "e2e_fulfilling_to_event",
        label: "of which p50: fulfilling transaction begins -> event received (commit, relay, broker); p99 {{e2e_fulfilling_to_event_p99_ms}} ms",
        unit: "ms",
        strata: "e2e_fulfilling_to_event_p50_ms",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "saga_spread_1",
        label: "fulfilments, orders spread over the catalog, payment {{saga_payment_ms}} ms, 1 worker, prefetch {{saga_prefetch}}",
        unit: "orders/s",
        strata: "saga_spread_1_ps",
        limit: Limit::None,
        limit_is: "",
        better: Better::Higher,
        goal: None,
    },
    Spec {
        id: "saga_spread_2",
        label: "fulfilments (as above), 2 workers",
        unit: "orders/s",
        strata: "saga_spread_2_ps",
        limit: Limit::Measured("saga_spread_linear_2_ps"),
        limit_is: "2 x one worker (linear scaling)",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "saga_spread_4",
        label: "fulfilments (as above), 4 workers",
        unit: "orders/s",
        strata: "saga_spread_4_ps",
        limit: Limit::Measured("saga_spread_linear_4_ps"),
        limit_is: "4 x one worker (linear scaling)",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "saga_hot_1",
        label: "fulfilments, orders of ONE product, payment {{saga_payment_ms}} ms, 1 worker, prefetch {{saga_prefetch}}",
        unit: "orders/s",
        strata: "saga_hot_1_ps",
        limit: Limit::Measured("saga_spread_1_ps"),
        limit_is: "the catalog, same workers",
        better: Better::Higher,
        goal: Some(1.0),
    },
    Spec {
        id: "saga_hot_2",
        label: "fulfilments, ONE product (as above), 2 workers",
        unit: "orders/s",
        strata: "saga_hot_2_ps",
        limit: Limit::Measured("saga_hot_linear_2_ps"),
        limit_is: "2 x one worker (linear scaling)",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "saga_hot_4",
        label: "fulfilments, ONE product (as above), 4 workers",
        unit: "orders/s",
        strata: "saga_hot_4_ps",
        limit: Limit::Measured("saga_hot_linear_4_ps"),
        limit_is: "4 x one worker (linear scaling)",
        better: Better::Higher,
        goal: Some(0.8),
    },
    Spec {
        id: "saga_hot_4_vs_spread",
        label: "fulfilments, ONE product, 4 workers (as above)",
        unit: "orders/s",
        strata: "saga_hot_4_ps",
        limit: Limit::Measured("saga_spread_4_ps"),
        limit_is: "the catalog, 4 workers",
        better: Better::Higher,
        goal: Some(1.0),
    },
    Spec {
        id: "autoscale_reaction",
        label: "autoscaler: a backlog spike (up to {{autoscale_backlog}} orders open, payment {{saga_payment_ms}} ms) -> the first extra worker consuming, {{autoscale_reaction_ms}} ms at a poll every {{autoscale_poll_ms}} ms",
        unit: "polls",
        strata: "autoscale_reaction_polls",
        limit: Limit::Budget(1.0),
        limit_is: "one poll interval (the next decision)",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "autoscale_drain",
        label: "autoscaler: time to drain the spike's backlog from its peak, {{autoscale_min_workers}} to {{autoscale_max_workers}} workers",
        unit: "s",
        strata: "autoscale_drain_s",
        limit: Limit::Measured("autoscale_ideal_drain_s"),
        limit_is: "the orders ÷ the capacity of the workers running (each at {{saga_spread_1_ps}} orders/s, one worker's rate above)",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "autoscale_scale_back",
        label: "autoscaler: drained -> back to {{autoscale_min_workers}} worker(s)",
        unit: "s",
        strata: "autoscale_scale_back_s",
        limit: Limit::Measured("autoscale_scale_down_window_s"),
        limit_is: "the scale-down window (every recommendation must agree that long)",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_idle_total",
        label: "idle VmRSS, presentation + logic + one worker + autoscaler",
        unit: "MB",
        strata: "rss_idle_total_mb",
        limit: Limit::Budget(40.0),
        limit_is: "budget",
        better: Better::Lower,
        goal: Some(1.0),
    },
    Spec {
        id: "rss_idle_logic",
        label: "VmRSS logic, idle",
        unit: "MB",
        strata: "rss_idle_logic_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_load_logic",
        label: "VmRSS logic, under load",
        unit: "MB",
        strata: "rss_load_logic_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_idle_presentation",
        label: "VmRSS presentation, idle",
        unit: "MB",
        strata: "rss_idle_presentation_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_load_presentation",
        label: "VmRSS presentation, under load",
        unit: "MB",
        strata: "rss_load_presentation_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_idle_worker",
        label: "VmRSS worker, idle",
        unit: "MB",
        strata: "rss_idle_worker_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_load_worker",
        label: "VmRSS worker, under load",
        unit: "MB",
        strata: "rss_load_worker_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_idle_autoscaler",
        label: "VmRSS autoscaler, idle",
        unit: "MB",
        strata: "rss_idle_autoscaler_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_load_autoscaler",
        label: "VmRSS autoscaler, while scaling",
        unit: "MB",
        strata: "rss_load_autoscaler_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "rss_celery",
        label: "peer: VmRSS of the Celery worker (all its processes), under load",
        unit: "MB",
        strata: "rss_load_celery_mb",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "ready_logic",
        label: "start -> ready, logic (`/readyz` 200)",
        unit: "ms",
        strata: "ready_logic_ms",
        limit: Limit::Measured("connect_floor_ms"),
        limit_is: "open a Postgres and an AMQP connection",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "ready_worker",
        label: "start -> ready, worker (consumer registered)",
        unit: "ms",
        strata: "ready_worker_ms",
        limit: Limit::Measured("connect_floor_ms"),
        limit_is: "open a Postgres and an AMQP connection",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "ready_presentation",
        label: "start -> ready, presentation (`/readyz` 200, logic up)",
        unit: "ms",
        strata: "ready_presentation_ms",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
    Spec {
        id: "ready_autoscaler",
        label: "start -> ready, autoscaler (`/healthz` 200)",
        unit: "ms",
        strata: "ready_autoscaler_ms",
        limit: Limit::None,
        limit_is: "",
        better: Better::Lower,
        goal: None,
    },
];

#[derive(Debug, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub figure: String,
    pub unit: &'static str,
    pub strata: Option<f64>,
    pub limit: Option<f64>,
    pub limit_is: String,
    /// Higher is better; 1.0 means at the limit.
    pub ratio: Option<f64>,
    pub goal: Option<f64>,
    pub goal_met: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub meta: BTreeMap<String, String>,
    pub figures: Vec<Row>,
    /// Every value the run recorded, including those no row shows.
    pub raw: BTreeMap<String, String>,
}

/// Parses `key<TAB>value` lines; later lines win.
pub fn parse_raw(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn fill(template: &str, raw: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let Some(len) = rest[open..].find("}}") else {
            break;
        };
        out.push_str(&rest[..open]);
        let key = &rest[open + 2..open + len];
        out.push_str(raw.get(key).map(String::as_str).unwrap_or("n/a"));
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

fn number(raw: &BTreeMap<String, String>, key: &str) -> Option<f64> {
    raw.get(key)?.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Figures computed from others of the run: the composite limit of a fulfilment, the
/// autoscaler's reaction in poll intervals.
fn derive(raw: &mut BTreeMap<String, String>) {
    if let (Some(db), Some(broker)) = (
        number(raw, "pgbench_fulfil_tps"),
        number(raw, "broker_consume_ps"),
    ) && db > 0.0
        && broker > 0.0
    {
        let composite = 1.0 / (1.0 / db + 1.0 / broker);
        raw.insert("fulfil_composite_ps".into(), format!("{composite:.0}"));
        raw.insert("fulfil_composite_db_ps".into(), format!("{db:.0}"));
    }
    if let (Some(reaction), Some(poll)) = (
        number(raw, "autoscale_reaction_ms"),
        number(raw, "autoscale_poll_ms"),
    ) && poll > 0.0
    {
        raw.insert(
            "autoscale_reaction_polls".into(),
            format!("{:.2}", reaction / poll),
        );
    }
}

pub fn build(raw: &BTreeMap<String, String>) -> Report {
    let mut raw = raw.clone();
    derive(&mut raw);
    let raw = &raw;
    let figures = SPECS
        .iter()
        .map(|spec| {
            let strata = number(raw, spec.strata);
            let limit = match spec.limit {
                Limit::Measured(key) => number(raw, key),
                Limit::Budget(v) => Some(v),
                Limit::None => None,
            };
            let ratio = match (strata, limit) {
                (Some(s), Some(l)) if s > 0.0 && l > 0.0 => Some(match spec.better {
                    Better::Higher => s / l,
                    Better::Lower => l / s,
                }),
                _ => None,
            };
            Row {
                id: spec.id,
                figure: fill(spec.label, raw),
                unit: spec.unit,
                strata,
                limit,
                limit_is: fill(spec.limit_is, raw),
                ratio,
                goal: spec.goal,
                goal_met: spec.goal.zip(ratio).map(|(g, r)| r >= g),
            }
        })
        .collect();
    let meta = raw
        .iter()
        .filter(|(k, _)| k.starts_with("meta_"))
        .map(|(k, v)| (k.trim_start_matches("meta_").to_owned(), v.clone()))
        .collect();
    Report {
        meta,
        figures,
        raw: raw.clone(),
    }
}

fn show(v: Option<f64>) -> String {
    match v {
        None => "n/a".to_owned(),
        Some(v) if v >= 100.0 => format!("{v:.0}"),
        Some(v) if v >= 10.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.2}"),
    }
}

impl Report {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let m = |k: &str| self.meta.get(k).map(String::as_str).unwrap_or("n/a");
        let _ = writeln!(
            out,
            "Mode `{}`, profile `{}`, commit {}, {} on {} x {} ({} GB); load average \
             before {}, after {}.\n",
            m("mode"),
            m("profile"),
            m("commit"),
            m("date"),
            m("nproc"),
            m("cpu"),
            m("mem_gb"),
            m("load_before"),
            m("load_after"),
        );
        out.push_str("| figure | Strata | limit | limit is | ratio | goal |\n");
        out.push_str("|---|---:|---:|---|---:|---|\n");
        for r in &self.figures {
            let goal = match (r.goal, r.goal_met) {
                (Some(g), Some(true)) => format!("≥ {g:.1} met"),
                (Some(g), Some(false)) => format!("≥ {g:.1} not met"),
                (Some(g), None) => format!("≥ {g:.1}"),
                (None, _) => String::new(),
            };
            let _ = writeln!(
                out,
                "| {} | {} {} | {} | {} | {} | {} |",
                r.figure,
                show(r.strata),
                r.unit,
                if r.limit.is_some() {
                    format!("{} {}", show(r.limit), r.unit)
                } else {
                    String::new()
                },
                r.limit_is,
                r.ratio.map(|v| format!("{v:.2}")).unwrap_or_default(),
                goal
            );
        }
        out.push_str(
            "\nRatios read the same way on every row: higher is better, 1.00 means Strata \
             is at the limit (throughput: Strata ÷ limit; latency, time and memory: \
             limit ÷ Strata).\n",
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_are_higher_is_better_and_missing_figures_stay_empty() {
        let raw = parse_raw(
            "logic_read_rps\t50000\nredis_get_rps\t100000\nread_conns\t32\n\
             e2e_p50_ms\t20\ne2e_floor_ms\t5\nrss_idle_total_mb\t32\n\
             cpu_fulfil_us\t1000\ncpu_pgbench_fulfil_us\t600\n",
        );
        let report = build(&raw);
        let row = |id: &str| report.figures.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("cached_read").ratio, Some(0.5));
        assert_eq!(row("cached_read").goal_met, Some(false));
        assert!(row("cached_read").figure.contains("32 connections"));
        assert!(row("cached_read").figure.contains("{sku}"));
        assert_eq!(row("e2e_p50").ratio, Some(0.25));
        assert_eq!(row("rss_idle_total").ratio, Some(1.25));
        assert_eq!(row("rss_idle_total").goal_met, Some(true));
        assert_eq!(row("cpu_fulfilment").ratio, Some(0.6));
        assert!(row("cpu_fulfilment").figure.contains("Postgres n/a"));
        assert_eq!(row("orders_accepted").ratio, None);
        assert!(row("orders_accepted").figure.contains("n/a connections"));
        assert!(report.markdown().contains("| n/a orders/s |"));
        assert_eq!(row("fulfilment_composite").ratio, None);
        assert_eq!(row("e2e_p99_tails").ratio, None);
    }

    #[test]
    fn the_p99_is_set_against_the_floor_and_against_the_tails_of_its_parts() {
        let raw = parse_raw(
            "e2e_p99_ms\t30\ne2e_floor_ms\t6\ne2e_floor_p99_ms\t15\n\
             pgbench_place_latency_p99_ms\t2.5\n",
        );
        let report = build(&raw);
        let row = |id: &str| report.figures.iter().find(|r| r.id == id).unwrap();
        assert_eq!(row("e2e_p99").ratio, Some(0.2));
        assert_eq!(row("e2e_p99").goal_met, Some(false));
        assert_eq!(row("e2e_p99_tails").ratio, Some(0.5));
        assert!(row("e2e_p99_tails").limit_is.contains("place 2.5 ms"));
    }

    #[test]
    fn the_composite_limit_puts_the_database_and_the_broker_in_series() {
        let raw = parse_raw(
            "pgbench_fulfil_tps\t3000\nbroker_consume_ps\t6000\nfulfil_ps\t1600\n\
             autoscale_reaction_ms\t2500\nautoscale_poll_ms\t1000\n",
        );
        let report = build(&raw);
        let row = |id: &str| report.figures.iter().find(|r| r.id == id).unwrap();
        // 1 / (1/3000 + 1/6000) = 2000
        assert_eq!(row("fulfilment_composite").limit, Some(2000.0));
        assert_eq!(row("fulfilment_composite").ratio, Some(0.8));
        assert_eq!(row("fulfilment_composite").goal_met, Some(true));
        assert_eq!(row("fulfilment_db").goal, None);
        assert_eq!(row("autoscale_reaction").strata, Some(2.5));
        assert_eq!(row("autoscale_reaction").ratio, Some(0.4));
        assert!(report.raw.contains_key("fulfil_composite_ps"));
        assert!(
            row("fulfilment_composite")
                .limit_is
                .contains("transaction (3000/s)")
        );
    }
}
