//! Secrets stay secret: the `logic` binary runs with a distinctive value for every secret
//! (database and broker passwords, Redis password, admin token), is driven through bad
//! requests, failed logins, admin calls and a database and broker outage, and none of the
//! values may appear in its logs, in any answer, or in `/metrics`. And the production profile
//! refuses to start without each secret, naming the missing setting but never a value.

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Url;
use secrecy::ExposeSecret;
use testkit::TestEnv;
use testkit::leaks::{Running, Seen, assert_no_secret, distinctive, free_port};
use testkit::proxy::Proxy;
use uuid::Uuid;

const LOGIC: &str = env!("CARGO_BIN_EXE_logic");

fn rabbitmq_api() -> String {
    std::env::var("TEST_RABBITMQ_API").unwrap_or_else(|_| "http://127.0.0.1:15672".to_owned())
}

fn redis_base() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn address_of(url: &Url) -> SocketAddr {
    let host = url.host_str().expect("host");
    let port = url.port_or_known_default().expect("port");
    format!("{host}:{port}").parse().expect("an IP address")
}

/// A RabbitMQ user and a Redis ACL user with the distinctive passwords, removed on drop.
struct Accounts {
    amqp_user: String,
    redis_user: String,
}

impl Accounts {
    async fn create(env: &TestEnv, amqp_password: &str, redis_password: &str) -> Accounts {
        let api = rabbitmq_api();
        let http = reqwest::Client::new();
        let amqp_user = format!("strata-{}", env.id);
        http.put(format!("{api}/api/users/{amqp_user}"))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"password": amqp_password, "tags": "management"}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("creating a RabbitMQ user");
        http.put(format!("{api}/api/permissions/{}/{amqp_user}", env.vhost))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .expect("granting the vhost");
        let redis_user = format!("strata-{}", env.id);
        let client = redis::Client::open(redis_base()).expect("redis URL");
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("redis");
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&redis_user)
            .arg("on")
            .arg(format!(">{redis_password}"))
            .arg(format!("~{}*", env.data.redis_key_prefix))
            .arg("+@all")
            .query_async(&mut conn)
            .await
            .expect("creating a Redis user");
        Accounts {
            amqp_user,
            redis_user,
        }
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        let (amqp_user, redis_user) = (self.amqp_user.clone(), self.redis_user.clone());
        let _ = std::thread::spawn(move || {
            let _ = reqwest::blocking::Client::new()
                .delete(format!("{}/api/users/{amqp_user}", rabbitmq_api()))
                .basic_auth("guest", Some("guest"))
                .send();
            if let Ok(mut conn) = redis::Client::open(redis_base()).and_then(|c| c.get_connection())
            {
                let _: redis::RedisResult<()> = redis::cmd("ACL")
                    .arg("DELUSER")
                    .arg(&redis_user)
                    .query(&mut conn);
            }
        })
        .join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_logs_the_answers_or_the_metrics() {
    let env = TestEnv::new().await;
    env.product("SEC-1", 1500, 5).await;
    let pg_password = distinctive("PgPassword");
    let amqp_password = distinctive("AmqpPassword");
    let redis_password = distinctive("RedisPassword");
    let admin_token = distinctive("AdminToken");
    let accounts = Accounts::create(&env, &amqp_password, &redis_password).await;

    // Postgres and RabbitMQ are reached through proxies the test can cut.
    let mut database_url = Url::parse(env.data.database_url.expose_secret()).expect("URL");
    let postgres = Proxy::start(address_of(&database_url)).await;
    database_url
        .set_password(Some(&pg_password))
        .expect("password");
    database_url
        .set_port(Some(postgres.addr().port()))
        .expect("port");
    let mut amqp_url = Url::parse(env.data.amqp_url.expose_secret()).expect("URL");
    let rabbitmq = Proxy::start(address_of(&amqp_url)).await;
    amqp_url.set_username(&accounts.amqp_user).expect("user");
    amqp_url
        .set_password(Some(&amqp_password))
        .expect("password");
    amqp_url
        .set_port(Some(rabbitmq.addr().port()))
        .expect("port");
    let mut redis_url = Url::parse(&redis_base()).expect("URL");
    redis_url.set_username(&accounts.redis_user).expect("user");
    redis_url
        .set_password(Some(&redis_password))
        .expect("password");

    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let logic = Running::start(
        LOGIC,
        &[
            ("STRATA_PROFILE", "production".to_owned()),
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("DATABASE_URL", database_url.to_string()),
            ("DATABASE_ACQUIRE_TIMEOUT_MS", "500".to_owned()),
            ("AMQP_URL", amqp_url.to_string()),
            ("REDIS_URL", redis_url.to_string()),
            ("REDIS_KEY_PREFIX", env.data.redis_key_prefix.clone()),
            ("ADMIN_TOKEN", admin_token.clone()),
            // Everything the process has to say, dependencies included.
            ("RUST_LOG", "debug".to_owned()),
        ],
        &[],
    );
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    testkit::eventually(Duration::from_secs(60), "logic to be ready", || async {
        let res = http.get(format!("{base}/readyz")).send().await.ok()?;
        res.status().is_success().then_some(())
    })
    .await;

    let mut seen = Seen::default();
    let url = |path: &str| format!("{base}{path}");
    let admin = |req: reqwest::RequestBuilder| req.bearer_auth(&admin_token);
    // Bad requests of every kind.
    seen.status(
        "bad json",
        http.post(url("/api/v1/orders"))
            .header("content-type", "application/json")
            .body("{nope"),
    )
    .await;
    seen.status(
        "bad order",
        http.post(url("/api/v1/orders"))
            .json(&serde_json::json!({"email": "x", "lines": []})),
    )
    .await;
    seen.status("bad query", http.get(url("/api/v1/products?per_page=1000")))
        .await;
    seen.status("unknown path", http.get(url("/api/v1/nothing")))
        .await;
    seen.status("wrong method", http.delete(url("/api/v1/orders")))
        .await;
    // Failed authentication: none, wrong, and a prefix of the real token.
    seen.status(
        "no token",
        http.patch(url("/api/v1/products/SEC-1"))
            .json(&serde_json::json!({"stock": 1})),
    )
    .await;
    seen.status(
        "wrong token",
        http.get(url("/api/v1/ops/stats")).bearer_auth("wrong"),
    )
    .await;
    seen.status(
        "token prefix",
        http.get(url("/api/v1/audit"))
            .bearer_auth(&admin_token[..20]),
    )
    .await;
    // Successful calls, including the ones that read broker and database figures.
    let order = http.post(url("/api/v1/orders")).json(
        &serde_json::json!({"email": "s@example.com", "lines": [{"sku": "SEC-1", "quantity": 1}]}),
    );
    assert_eq!(seen.status("order", order).await, 202);
    assert_eq!(
        seen.status("product", http.get(url("/api/v1/products/SEC-1")))
            .await,
        200
    );
    assert_eq!(
        seen.status(
            "patch",
            admin(http.patch(url("/api/v1/products/SEC-1"))).json(&serde_json::json!({"stock": 9}))
        )
        .await,
        200
    );
    assert_eq!(
        seen.status("stats", admin(http.get(url("/api/v1/ops/stats"))))
            .await,
        200
    );
    assert_eq!(
        seen.status("dlq", admin(http.get(url("/api/v1/ops/dlq"))))
            .await,
        200
    );
    assert_eq!(
        seen.status("redrive", admin(http.post(url("/api/v1/ops/dlq/redrive"))))
            .await,
        200
    );
    assert_eq!(
        seen.status("audit", admin(http.get(url("/api/v1/audit"))))
            .await,
        200
    );
    seen.status("openapi", http.get(url("/api/v1/openapi.json")))
        .await;

    // The database goes away: reads, writes and readiness fail, and say so.
    postgres.cut();
    assert_eq!(
        seen.status("read, db down", http.get(url("/api/v1/products?q=db-down")))
            .await,
        503
    );
    let order = http.post(url("/api/v1/orders")).json(
        &serde_json::json!({"email": "s@example.com", "lines": [{"sku": "SEC-1", "quantity": 1}]}),
    );
    assert_eq!(seen.status("order, db down", order).await, 503);
    assert_eq!(
        seen.status("ready, db down", http.get(url("/readyz")))
            .await,
        503
    );
    postgres.restore();
    // Then the broker: the ops calls and readiness fail, and the relay reconnects.
    rabbitmq.cut();
    assert_eq!(
        seen.status("dlq, broker down", admin(http.get(url("/api/v1/ops/dlq"))))
            .await,
        503
    );
    assert_eq!(
        seen.status(
            "redrive, broker down",
            admin(http.post(url("/api/v1/ops/dlq/redrive")))
        )
        .await,
        503
    );
    assert_eq!(
        seen.status("ready, broker down", http.get(url("/readyz")))
            .await,
        503
    );
    rabbitmq.restore();
    testkit::eventually(
        Duration::from_secs(60),
        "readiness to come back",
        || async {
            let res = http.get(url("/readyz")).send().await.ok()?;
            res.status().is_success().then_some(())
        },
    )
    .await;
    let metrics = http
        .get(url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let logs = logic.stop().await;

    // The captured output is the real thing: it logged the outage it went through.
    assert!(logs.contains("logic listening"), "{logs}");
    assert!(logs.contains("dependency unavailable"), "{logs}");
    assert!(metrics.contains("strata_http_requests_total"), "{metrics}");
    let secrets = [
        ("database password", pg_password.as_str()),
        ("broker password", amqp_password.as_str()),
        ("Redis password", redis_password.as_str()),
        ("admin token", admin_token.as_str()),
    ];
    assert_no_secret("the logs", &logs, &secrets);
    assert_no_secret("the answers", &seen.0, &secrets);
    assert_no_secret("/metrics", &metrics, &secrets);
}

/// Runs `logic` with exactly these settings; it must exit without serving.
async fn refused(envs: &[(&str, &str)], args: &[&str]) -> String {
    let envs: Vec<(&str, String)> = envs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    let (ok, output) = Running::start(LOGIC, &envs, args).finish().await;
    assert!(!ok, "logic started with {envs:?}:\n{output}");
    output
}

#[tokio::test]
async fn the_production_profile_names_each_missing_or_weak_secret() {
    let db = "postgres://strata:DbPw-not-shown@127.0.0.1:1/strata";
    let mq = "amqp://strata:MqPw-not-shown@127.0.0.1:1/%2f";
    let token = "AdminToken-not-shown-0123456789abcdef";
    let prod = ("STRATA_PROFILE", "production");

    let out = refused(&[prod], &[]).await;
    assert!(
        out.contains("DATABASE_URL (or DATABASE_URL_FILE) must be set"),
        "{out}"
    );
    let out = refused(&[prod, ("DATABASE_URL", db)], &[]).await;
    assert!(
        out.contains("AMQP_URL (or AMQP_URL_FILE) must be set"),
        "{out}"
    );
    let guest = "amqp://guest:guest@127.0.0.1:1/%2f";
    let out = refused(&[prod, ("DATABASE_URL", db), ("AMQP_URL", guest)], &[]).await;
    assert!(out.contains("guest:guest"), "{out}");
    let out = refused(&[prod, ("DATABASE_URL", db), ("AMQP_URL", mq)], &[]).await;
    assert!(
        out.contains("ADMIN_TOKEN (or ADMIN_TOKEN_FILE) must be set"),
        "{out}"
    );
    let out = refused(
        &[
            prod,
            ("DATABASE_URL", db),
            ("AMQP_URL", mq),
            ("ADMIN_TOKEN", "Short-not-shown"),
        ],
        &[],
    )
    .await;
    assert!(
        out.contains("ADMIN_TOKEN must be at least 32 characters"),
        "{out}"
    );
    assert!(!out.contains("Short-not-shown"), "{out}");
    // The flag works as the variable does.
    let out = refused(
        &[("DATABASE_URL", db), ("AMQP_URL", mq)],
        &["--profile", "production"],
    )
    .await;
    assert!(
        out.contains("ADMIN_TOKEN (or ADMIN_TOKEN_FILE) must be set"),
        "{out}"
    );
    // Files count as set; an empty one is an error of its own.
    let dir = std::env::temp_dir().join(format!("strata-secrets-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let empty = dir.join("admin-token");
    std::fs::write(&empty, "\n").expect("write");
    let empty = empty.display().to_string();
    let out = refused(
        &[
            prod,
            ("DATABASE_URL", db),
            ("AMQP_URL", mq),
            ("ADMIN_TOKEN_FILE", &empty),
        ],
        &[],
    )
    .await;
    assert!(
        out.contains("ADMIN_TOKEN_FILE") && out.contains("is empty"),
        "{out}"
    );
    let db_file = dir.join("database-url");
    std::fs::write(&db_file, format!("{db}\n")).expect("write");
    let db_file = db_file.display().to_string();
    // Everything given (the database from a file): the checks pass and the start goes on
    // until Postgres, which is not there, fails it.
    let out = refused(
        &[
            prod,
            ("DATABASE_URL_FILE", &db_file),
            ("AMQP_URL", mq),
            ("ADMIN_TOKEN", token),
        ],
        &["migrate"],
    )
    .await;
    assert!(!out.contains("STRATA_PROFILE=production"), "{out}");
    assert!(out.contains("connecting to Postgres"), "{out}");
    for value in ["DbPw-not-shown", "MqPw-not-shown", token] {
        assert!(!out.contains(value), "{out}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn migrations_in_production_need_only_the_database() {
    let env = TestEnv::new().await;
    let envs = [
        ("STRATA_PROFILE", "production".to_owned()),
        (
            "DATABASE_URL",
            env.data.database_url.expose_secret().to_owned(),
        ),
        ("RUST_LOG", "info".to_owned()),
    ];
    let (ok, out) = Running::start(LOGIC, &envs, &["migrate"]).finish().await;
    assert!(ok, "{out}");
    assert!(out.contains("migrations applied"), "{out}");
    // Serving needs the rest.
    let out = refused(
        &[
            ("STRATA_PROFILE", "production"),
            ("DATABASE_URL", "postgres://x@db/s"),
        ],
        &[],
    )
    .await;
    assert!(
        out.contains("AMQP_URL (or AMQP_URL_FILE) must be set"),
        "{out}"
    );
}
