//! Secrets stay secret in the public tier: the `presentation` binary runs in the production
//! profile with a distinctive cookie key, ops password (and its hash) and logic admin token,
//! is driven through pages, forged forms, failed and good logins, the console and an outage
//! of logic, and none of the values may appear in its logs, its answers or `/metrics`. And
//! the production profile refuses to start without them.

use std::time::Duration;

use testkit::TestEnv;
use testkit::apps;
use testkit::leaks::{Running, Seen, assert_no_secret, distinctive, free_port};
use uuid::Uuid;

use crate::helpers::input_value;

const PRESENTATION: &str = env!("CARGO_BIN_EXE_presentation");

fn csrf(html: &str) -> String {
    input_value(html, "csrf_token").expect("a CSRF field")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_secret_reaches_the_logs_the_pages_or_the_metrics() {
    let env = TestEnv::new().await;
    env_product(&env).await;
    let cookie_key = distinctive("CookieKey");
    let ops_password = distinctive("OpsPassword");
    let hash = presentation::ops::hash_password(&ops_password).expect("hash");
    let hash_output = hash.rsplit('$').next().expect("hash output").to_owned();
    let logic_token = distinctive("LogicToken");

    let logic = apps::logic(&env, Some(&logic_token), |_| {}).await;
    let logic_url = logic.base.clone();

    // Two secrets from files, as Kubernetes mounts them; the others from the environment.
    let dir = std::env::temp_dir().join(format!("strata-secrets-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("dir");
    let hash_file = dir.join("ops-password-hash");
    std::fs::write(&hash_file, format!("{hash}\n")).expect("write");
    let token_file = dir.join("logic-admin-token");
    std::fs::write(&token_file, &logic_token).expect("write");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let running = Running::start(
        PRESENTATION,
        &[
            ("STRATA_PROFILE", "production".to_owned()),
            ("LISTEN_ADDR", format!("127.0.0.1:{port}")),
            ("LOGIC_URL", logic_url),
            ("COOKIE_KEY", cookie_key.clone()),
            ("OPS_PASSWORD_HASH_FILE", hash_file.display().to_string()),
            ("LOGIC_ADMIN_TOKEN_FILE", token_file.display().to_string()),
            ("RUST_LOG", "debug".to_owned()),
        ],
        &[],
    );
    let http = reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    testkit::eventually(
        Duration::from_secs(60),
        "presentation to be ready",
        || async {
            let res = http.get(format!("{base}/readyz")).send().await.ok()?;
            res.status().is_success().then_some(())
        },
    )
    .await;

    let mut seen = Seen::default();
    let url = |path: &str| format!("{base}{path}");
    let (_, page) = seen
        .send("product", http.get(url("/products/SEC-P1")))
        .await;
    let token = csrf(&page);
    seen.send(
        "forged form",
        http.post(url("/cart/add"))
            .form(&[("sku", "SEC-P1"), ("quantity", "1")]),
    )
    .await;
    let add = [
        ("csrf_token", token.as_str()),
        ("sku", "SEC-P1"),
        ("quantity", "1"),
    ];
    assert_eq!(
        seen.send("add", http.post(url("/cart/add")).form(&add))
            .await
            .0,
        303
    );
    seen.send("missing page", http.get(url("/nothing/here")))
        .await;
    seen.send("bad query", http.get(url("/?page=zero"))).await;
    // Logins: a wrong password that starts with the real one, a wrong user, then the real one.
    let (_, login) = seen.send("login form", http.get(url("/ops/login"))).await;
    let token = csrf(&login);
    let wrong = format!("{ops_password}x");
    for (user, password) in [("admin", wrong.as_str()), ("root", ops_password.as_str())] {
        let form = [
            ("csrf_token", token.as_str()),
            ("user", user),
            ("password", password),
        ];
        assert_eq!(
            seen.send("failed login", http.post(url("/ops/login")).form(&form))
                .await
                .0,
            401
        );
    }
    let form = [
        ("csrf_token", token.as_str()),
        ("user", "admin"),
        ("password", ops_password.as_str()),
    ];
    assert_eq!(
        seen.send("login", http.post(url("/ops/login")).form(&form))
            .await
            .0,
        303
    );
    let (status, console) = seen.send("console", http.get(url("/ops"))).await;
    assert_eq!(status, 200);
    assert!(console.contains("id=\"dead-letters\""), "{console}");
    assert_eq!(
        seen.send("stats", http.get(url("/ops/stats.json"))).await.0,
        200
    );
    assert_eq!(seen.send("audit", http.get(url("/ops/audit"))).await.0, 200);
    seen.send("bad audit filter", http.get(url("/ops/audit?since=never")))
        .await;
    let redrive = [("csrf_token", csrf(&console))];
    assert_eq!(
        seen.send("redrive", http.post(url("/ops/dlq/redrive")).form(&redrive))
            .await
            .0,
        303
    );

    // Logic goes away: every page that needs it fails, and is logged.
    let _ = logic.stop().await;
    seen.send("console, logic down", http.get(url("/ops")))
        .await;
    seen.send("stats, logic down", http.get(url("/ops/stats.json")))
        .await;
    seen.send("audit, logic down", http.get(url("/ops/audit")))
        .await;
    seen.send("catalog, logic down", http.get(url("/"))).await;
    seen.send("ready, logic down", http.get(url("/readyz")))
        .await;
    let (_, metrics) = seen.send("metrics", http.get(url("/metrics"))).await;
    let logs = running.stop().await;
    std::fs::remove_dir_all(&dir).ok();

    assert!(logs.contains("presentation listening"), "{logs}");
    assert!(logs.contains("ops call to logic failed"), "{logs}");
    assert!(metrics.contains("strata_logic_calls_total"), "{metrics}");
    let secrets = [
        ("cookie key", cookie_key.as_str()),
        ("ops password", ops_password.as_str()),
        ("ops password hash", hash.as_str()),
        ("ops password hash output", hash_output.as_str()),
        ("logic admin token", logic_token.as_str()),
    ];
    assert_no_secret("the logs", &logs, &secrets);
    assert_no_secret("the answers", &seen.0, &secrets);
    assert_no_secret("/metrics", &metrics, &secrets);
}

async fn env_product(env: &TestEnv) {
    env.product("SEC-P1", 2500, 10).await;
}

/// Runs `presentation` with exactly these settings; it must exit without serving.
async fn refused(envs: &[(&str, &str)]) -> String {
    let mut all: Vec<(&str, String)> = vec![
        ("STRATA_PROFILE", "production".to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
    ];
    all.extend(envs.iter().map(|(k, v)| (*k, (*v).to_owned())));
    let (ok, output) = Running::start(PRESENTATION, &all, &[]).finish().await;
    assert!(!ok, "presentation started with {all:?}:\n{output}");
    output
}

#[tokio::test]
async fn the_production_profile_names_each_missing_or_weak_secret() {
    let key = "CookieKey-not-shown-0123456789abcdef";
    let hash = presentation::ops::hash_password("a password").expect("hash");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "COOKIE_KEY (or COOKIE_KEY_FILE) must be set"),
        (
            &[("COOKIE_KEY", "Short-not-shown")],
            "COOKIE_KEY must be at least 32 bytes",
        ),
        (
            &[("COOKIE_KEY", key), ("LOGIC_ADMIN_TOKEN", "Tiny-not-shown")],
            "LOGIC_ADMIN_TOKEN must be at least 32",
        ),
        (
            &[("COOKIE_KEY", key), ("OPS_PASSWORD_HASH", &hash)],
            "LOGIC_ADMIN_TOKEN (or LOGIC_ADMIN_TOKEN_FILE) must be set",
        ),
    ];
    for (envs, message) in cases {
        let out = refused(envs).await;
        assert!(out.contains(message), "{message}: {out}");
        for value in ["Short-not-shown", "Tiny-not-shown", key, &hash] {
            assert!(!out.contains(value), "{out}");
        }
    }
}
