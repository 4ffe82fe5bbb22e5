//! Tier isolation on one machine. Strata's network (a public subnet for presentation, a
//! private one for logic and the workers, a private one for the data services, an
//! internet outside) is built from network namespaces, the real `presentation`, `logic`
//! and `worker` binaries run inside them, and the nftables rules of `deploy/netns` play
//! the security groups (stateful, per host) and the network ACLs (stateless, per subnet).
//!
//! The test first shows that without rules every host reaches every port (the routes
//! exist, the router forwards), then that with the rules a shopper on the internet gets
//! the shop and can buy, but cannot open a connection to logic or to any data service,
//! and that each layer alone still refuses it.
//!
//! Needs root (namespaces); skipped with a warning otherwise. The tiers' binaries must be
//! built: `cargo build -p logic -p presentation -p worker` (`cargo test --workspace` does).

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use deploy_check::netns::forward::{Forwarder, Route};
use deploy_check::netns::process::{TierProcess, workspace_binary};
use deploy_check::netns::vpc::Direction::{Inbound, Outbound};
use deploy_check::netns::vpc::{DropCounter, Plan, Vpc};
use deploy_check::netns::{self, Netns, Reach};
use reqwest::Url;
use secrecy::ExposeSecret;
use testkit::TestEnv;
use uuid::Uuid;

/// How long a connection attempt waits for an answer. Security groups and network ACLs
/// drop without answering, so a refused attempt ends with this timeout.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the tiers get to become ready and an order to be fulfilled.
const PATIENCE: Duration = Duration::from_secs(30);
const SKU: &str = "NETNS-LAMP";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shopper_reaches_only_the_public_tier_and_every_rule_layer_alone_holds() {
    if !netns::is_root() {
        // Straight to stderr: the test harness would swallow eprintln! of a passing test.
        let _ = writeln!(
            std::io::stderr(),
            "\n{bar}\nSKIPPED: the tier-isolation test builds network namespaces and needs \
             root.\nRun it as root (CI does): cargo test -p deploy-check --test isolation\n{bar}\n",
            bar = "!".repeat(78)
        );
        return;
    }
    netns::require_tools().expect("network tools");
    let binaries = ["logic", "worker", "presentation"]
        .map(|name| workspace_binary(name).unwrap_or_else(|e| panic!("{e:#}")));
    for stale in netns::remove_stale() {
        eprintln!("removed the namespace {stale} of an earlier run");
    }

    let env = TestEnv::new().await;
    env.product(SKU, 2500, 10).await;
    let run_id = Uuid::new_v4().simple().to_string()[..6].to_owned();
    let vpc = Vpc::build(&run_id).expect("building the namespaces");
    let plan = vpc.plan.clone();
    let data = DataSubnet::new(&env, &plan);
    let _forwarder = Forwarder::start(vpc.data.name(), &data.routes).expect("forwarder");

    let web = plan.socket("presentation_addr", "web_port").unwrap();
    let api = plan.socket("logic_addr", "api_port").unwrap();
    let [postgres, redis, amqp] = data.routes.map(|r| r.listen);
    let (internet, public) = (vpc.internet.name(), vpc.presentation.name());

    // Without rules the routes alone decide: everything reaches everything. Stand-ins
    // listen where presentation and logic will.
    {
        let _web = netns::bind_in(public, web).unwrap();
        let _api = netns::bind_in(vpc.logic.name(), api).unwrap();
        expect_reach(
            "no rules",
            &[
                (internet, web, Expect::Open),
                (internet, api, Expect::Open),
                (internet, postgres, Expect::Open),
                (internet, redis, Expect::Open),
                (internet, amqp, Expect::Open),
                (public, postgres, Expect::Open),
                (vpc.worker.name(), api, Expect::Open),
            ],
        );
    }

    vpc.apply_network_acls().expect("network ACLs");
    vpc.apply_security_groups().expect("security groups");

    let log_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("netns-{run_id}"));
    let [logic_bin, worker_bin, presentation_bin] = &binaries;
    let mut logic = TierProcess::start(
        "logic",
        vpc.logic.name(),
        logic_bin,
        &[
            ("LISTEN_ADDR", api.to_string()),
            ("DATABASE_URL", data.database_url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "5".into()),
            ("REDIS_URL", data.redis_url.clone()),
            ("REDIS_KEY_PREFIX", env.data.redis_key_prefix.clone()),
            ("AMQP_URL", data.amqp_url.clone()),
        ],
        &log_dir,
    )
    .unwrap();
    let mut worker = TierProcess::start(
        "worker",
        vpc.worker.name(),
        worker_bin,
        &[
            ("DATABASE_URL", data.database_url.clone()),
            ("DATABASE_MAX_CONNECTIONS", "5".into()),
            ("AMQP_URL", data.amqp_url.clone()),
            ("PAYMENT_LATENCY_MS", "10".into()),
        ],
        &log_dir,
    )
    .unwrap();
    let mut presentation = TierProcess::start(
        "presentation",
        public,
        presentation_bin,
        &[
            ("LISTEN_ADDR", web.to_string()),
            ("LOGIC_URL", format!("http://{api}")),
        ],
        &log_dir,
    )
    .unwrap();

    // presentation's host reaches logic, and logic reaches Postgres, RabbitMQ and Redis
    // in the data subnet (its readiness checks all three).
    let readiness = {
        let start = Instant::now();
        loop {
            logic.check_running().unwrap();
            let url = format!("http://{api}/readyz");
            let answer = netns::run_in(public, move || async move {
                let res = reqwest::get(url).await.ok()?;
                if !res.status().is_success() {
                    return None;
                }
                res.json::<serde_json::Value>().await.ok()
            })
            .await
            .unwrap();
            if let Some(body) = answer {
                break body;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "logic not ready within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for service in ["postgres", "rabbitmq", "redis"] {
        assert_eq!(readiness["checks"][service], "ok", "{readiness}");
    }

    // A shopper on the internet gets the shop, with the catalog that logic serves.
    let shop = format!("http://{web}");
    let home = {
        let start = Instant::now();
        loop {
            presentation.check_running().unwrap();
            let url = format!("{shop}/");
            let page = netns::run_in(internet, move || async move {
                let res = reqwest::get(url).await.ok()?;
                Some((res.status().as_u16(), res.text().await.ok()?))
            })
            .await
            .unwrap();
            if let Some(page) = page {
                break page;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "no shop page within {PATIENCE:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert_eq!(home.0, 200, "{}", home.1);
    assert!(home.1.contains("class=\"site-header\""), "{}", home.1);
    assert!(
        home.1.contains(&format!("data-sku=\"{SKU}\"")),
        "{}",
        home.1
    );

    // ...and nothing else: logic and the data services never answer, presentation's host
    // cannot reach the data services, a worker host cannot call logic. Each drop is
    // counted by the rule that made it: the first layer on the way.
    let nacl = |list| Expect::DroppedBy(vpc.nacl_denied(list));
    let sg = |host: &Netns, direction| Expect::DroppedBy(Vpc::sg_denied(host, direction));
    let worker_host = vpc.worker.name();
    expect_reach(
        "security groups and network ACLs",
        &[
            (internet, web, Expect::Open),
            (internet, api, nacl("app_in")),
            (internet, postgres, nacl("data_in")),
            (internet, redis, nacl("data_in")),
            (internet, amqp, nacl("data_in")),
            (public, postgres, sg(&vpc.presentation, Outbound)),
            (public, redis, sg(&vpc.presentation, Outbound)),
            (public, amqp, sg(&vpc.presentation, Outbound)),
            (worker_host, api, sg(&vpc.worker, Outbound)),
        ],
    );

    // The shopper buys; logic queues the order and the worker fulfils it, each through
    // the rules (they connected after the rules were loaded).
    let order_path = netns::run_in(internet, move || checkout(shop))
        .await
        .unwrap();
    worker.check_running().unwrap();
    let order_id: Uuid = order_path
        .trim_start_matches("/orders/")
        .parse()
        .expect("order id");
    assert_eq!(env.order_status(order_id).await, ("fulfilled".into(), None));
    assert_eq!(env.stock(SKU).await, 8);

    // Each layer alone keeps the private tiers closed.
    vpc.remove_security_groups().unwrap();
    expect_reach(
        "network ACLs alone",
        &[
            (internet, api, nacl("app_in")),
            (internet, postgres, nacl("data_in")),
            (internet, redis, nacl("data_in")),
            (internet, amqp, nacl("data_in")),
            (public, postgres, nacl("public_out")),
            (public, redis, nacl("public_out")),
            (public, amqp, nacl("public_out")),
        ],
    );
    vpc.apply_security_groups().unwrap();
    vpc.remove_network_acls().unwrap();
    expect_reach(
        "security groups alone",
        &[
            (internet, api, sg(&vpc.logic, Inbound)),
            (internet, postgres, sg(&vpc.data, Inbound)),
            (internet, redis, sg(&vpc.data, Inbound)),
            (internet, amqp, sg(&vpc.data, Inbound)),
            (public, postgres, sg(&vpc.presentation, Outbound)),
            (worker_host, api, sg(&vpc.worker, Outbound)),
        ],
    );
    for tier in [&mut logic, &mut worker, &mut presentation] {
        tier.check_running().unwrap();
    }
    drop((logic, worker, presentation));
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// What a connection attempt should meet.
enum Expect {
    Open,
    /// No answer, and this rule counted the drop.
    DroppedBy(DropCounter),
}

/// Probes every (from, to) at once and compares with the expected outcomes and the drop
/// counters' increase, naming every mismatch.
fn expect_reach(stage: &str, cases: &[(&str, SocketAddr, Expect)]) {
    let mut counters: Vec<(&DropCounter, usize)> = Vec::new();
    for (_, _, expect) in cases {
        if let Expect::DroppedBy(counter) = expect {
            match counters.iter_mut().find(|(c, _)| *c == counter) {
                Some((_, n)) => *n += 1,
                None => counters.push((counter, 1)),
            }
        }
    }
    let read = |counter: &DropCounter| counter.packets().unwrap_or_else(|e| panic!("{e:#}"));
    let before: Vec<u64> = counters.iter().map(|(c, _)| read(c)).collect();
    let attempts: Vec<(&str, SocketAddr)> = cases.iter().map(|(f, t, _)| (*f, *t)).collect();
    let got = tokio::task::block_in_place(|| netns::probe_all(&attempts, PROBE_TIMEOUT));

    let mut wrong = Vec::new();
    for ((from, to, expect), got) in cases.iter().zip(&got) {
        let want = match expect {
            Expect::Open => Reach::Open,
            Expect::DroppedBy(_) => Reach::Dropped,
        };
        if *got != want {
            wrong.push(format!("{from} -> {to}: expected {want:?}, got {got:?}"));
        }
    }
    for ((counter, attempts), before) in counters.iter().zip(before) {
        // At least one SYN per attempt (TCP retries within the timeout add more).
        let counted = read(counter) - before;
        if counted < *attempts as u64 {
            wrong.push(format!(
                "{counter} counted {counted} drops for {attempts} dropped attempts"
            ));
        }
    }
    assert!(wrong.is_empty(), "{stage}:\n{}", wrong.join("\n"));
}

/// The data services as the private tiers see them: listening addresses in the data
/// subnet (the forwarder's), the machine's services behind them, and the test's URLs
/// rewritten to the data subnet.
struct DataSubnet {
    /// Postgres, Redis, RabbitMQ.
    routes: [Route; 3],
    database_url: String,
    redis_url: String,
    amqp_url: String,
}

impl DataSubnet {
    fn new(env: &TestEnv, plan: &Plan) -> DataSubnet {
        let via = |url: &str, port: &str| {
            let listen = plan.socket("data_addr", port).unwrap();
            let mut url = Url::parse(url).expect("service URL");
            let host = url
                .host_str()
                .expect("service host")
                .trim_matches(['[', ']']);
            let upstream = (host.to_owned(), url.port().unwrap_or(listen.port()))
                .to_socket_addrs()
                .expect("resolving a service")
                .next()
                .expect("a service address");
            url.set_host(Some(&listen.ip().to_string())).unwrap();
            url.set_port(Some(listen.port())).unwrap();
            (Route { listen, upstream }, url.to_string())
        };
        let (postgres, database_url) = via(env.data.database_url.expose_secret(), "postgres_port");
        let (redis, redis_url) = via(env.data.redis_url.expose_secret(), "redis_port");
        let (amqp, amqp_url) = via(env.data.amqp_url.expose_secret(), "amqp_port");
        DataSubnet {
            routes: [postgres, redis, amqp],
            database_url,
            redis_url,
            amqp_url,
        }
    }
}

/// Buys two lamps through the shop's pages like a browser (cookies, CSRF tokens) and
/// waits for the order page to say fulfilled; returns the order's path.
async fn checkout(shop: String) -> String {
    let client = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let get = |path: String| {
        let request = client.get(format!("{shop}{path}"));
        async move {
            let res = request.send().await.expect("GET");
            let status = res.status().as_u16();
            let body = res.text().await.expect("body");
            assert_eq!(status, 200, "GET {path}: {body}");
            body
        }
    };
    let post = |path: &str, form: &[(&str, &str)]| {
        let request = client.post(format!("{shop}{path}")).form(form);
        async move {
            let res = request.send().await.expect("POST");
            let status = res.status().as_u16();
            let location = res
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = res.text().await.unwrap_or_default();
            assert_eq!(status, 303, "{body}");
            location
        }
    };

    let product = get(format!("/products/{SKU}")).await;
    let token = input(&product, "csrf_token");
    post(
        "/cart/add",
        &[("csrf_token", &token), ("sku", SKU), ("quantity", "2")],
    )
    .await;
    let form = get("/checkout".into()).await;
    let order_path = post(
        "/checkout",
        &[
            ("csrf_token", &input(&form, "csrf_token")),
            ("idempotency_key", &input(&form, "idempotency_key")),
            ("email", "shopper@example.com"),
        ],
    )
    .await;
    assert!(order_path.starts_with("/orders/"), "{order_path}");

    let start = Instant::now();
    loop {
        let page = get(order_path.clone()).await;
        if page.contains("data-status=\"fulfilled\"") {
            return order_path;
        }
        assert!(
            start.elapsed() < PATIENCE,
            "order not fulfilled within {PATIENCE:?}: {page}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of a form input (`name="..." value="..."`).
fn input(html: &str, name: &str) -> String {
    let at = html
        .find(&format!("name=\"{name}\""))
        .unwrap_or_else(|| panic!("no input {name}: {html}"));
    let rest = &html[at..];
    let start = rest.find("value=\"").expect("value") + 7;
    let end = rest[start..].find('"').expect("end of value");
    rest[start..start + end].to_owned()
}
