//! A shop (logic, workers and presentation in-process, from `testkit::apps`) and a
//! browser-like client.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use presentation::Settings;
use reqwest::Url;
use reqwest::cookie::{CookieStore, Jar};
use secrecy::SecretString;
use testkit::TestEnv;
use testkit::apps;

/// logic's admin token in these tests (presentation's LOGIC_ADMIN_TOKEN).
pub const LOGIC_ADMIN_TOKEN: &str = "test-logic-admin-token";
/// The ops console's password in these tests.
pub const OPS_PASSWORD: &str = "correct horse battery staple";

/// The Argon2id hash of [`OPS_PASSWORD`], computed once per test binary.
pub fn ops_password_hash() -> String {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| presentation::ops::hash_password(OPS_PASSWORD).expect("hashing"))
        .clone()
}

/// Settings tweak: the ops console on, with the test password and logic's token.
pub fn with_ops(settings: &mut Settings) {
    settings.ops_password_hash = Some(SecretString::from(ops_password_hash()));
    settings.logic_admin_token = Some(SecretString::from(LOGIC_ADMIN_TOKEN.to_owned()));
}

/// logic, optional workers and presentations, all stopped on drop.
pub struct Shop {
    // Fields drop in order: the apps stop before their services are removed.
    _logic: apps::Logic,
    presentations: Vec<apps::Presentation>,
    workers: Vec<apps::Worker>,
    pub env: TestEnv,
    pub logic_base: String,
    pub base: String,
    pub client: Client,
}

pub async fn spawn_shop() -> Shop {
    spawn_shop_with(|_| {}).await
}

pub async fn spawn_shop_with(tweak: impl FnOnce(&mut Settings)) -> Shop {
    let env = TestEnv::new().await;
    let logic = apps::logic(&env, Some(LOGIC_ADMIN_TOKEN), |_| {}).await;
    let presentation = apps::presentation(&logic.base, tweak).await;
    Shop {
        logic_base: logic.base.clone(),
        base: presentation.base.clone(),
        client: Client::new(&presentation.base),
        _logic: logic,
        presentations: vec![presentation],
        workers: Vec::new(),
        env,
    }
}

impl Shop {
    pub fn spawn_worker(&mut self, payment_latency_ms: u64) {
        self.workers.push(apps::worker(&self.env, |s| {
            s.payment_latency_ms = payment_latency_ms;
            s.retry_delay_ms = 100;
        }));
    }

    /// Another presentation in front of this shop's logic, stopped with the shop; returns
    /// its base URL.
    pub async fn spawn_presentation(&mut self, tweak: impl FnOnce(&mut Settings)) -> String {
        let presentation = apps::presentation(&self.logic_base, tweak).await;
        let base = presentation.base.clone();
        self.presentations.push(presentation);
        base
    }

    /// Adds (or resets) a product with the given name and category.
    pub async fn product(&self, sku: &str, name: &str, category: &str, price: i64, stock: i32) {
        sqlx::query(
            "INSERT INTO products (sku, name, description, category, price_cents, stock) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sku) DO UPDATE \
             SET name = $2, description = $3, category = $4, price_cents = $5, stock = $6",
        )
        .bind(sku)
        .bind(name)
        .bind(format!("Description of {name}."))
        .bind(category)
        .bind(price)
        .bind(stock)
        .execute(&self.env.pool)
        .await
        .expect("inserting a product");
    }

    pub async fn order_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM orders")
            .fetch_one(&self.env.pool)
            .await
            .expect("counting orders")
    }
}

/// A browser-like client: a cookie jar, no automatic redirects.
pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub jar: Arc<Jar>,
}

pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The value of a hidden input (`name="..." value="..."`).
    pub fn input(&self, name: &str) -> String {
        input_value(&self.body, name).unwrap_or_else(|| panic!("no input {name}: {}", self.body))
    }
}

pub fn input_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\""))?;
    let rest = &html[at..];
    let start = rest.find("value=\"")? + 7;
    let end = rest[start..].find('"')?;
    Some(rest[start..start + end].to_owned())
}

impl Client {
    pub fn new(base: &str) -> Client {
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("http client");
        Client {
            base: base.to_owned(),
            http,
            jar,
        }
    }

    /// The same cookies, against another base URL.
    pub fn for_base(&self, base: &str) -> Client {
        Client {
            base: base.to_owned(),
            http: self.http.clone(),
            jar: self.jar.clone(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn page(res: reqwest::Response) -> Page {
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = res.text().await.expect("body");
        Page {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> Page {
        Self::page(self.http.get(self.url(path)).send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        let res = self
            .http
            .post(self.url(path))
            .form(form)
            .send()
            .await
            .expect("POST");
        Self::page(res).await
    }

    /// A CSRF token for this client's session (from a product page's form).
    pub async fn token(&self, sku: &str) -> String {
        self.get(&format!("/products/{sku}"))
            .await
            .input("csrf_token")
    }

    pub async fn add_to_cart(&self, sku: &str, quantity: i32) -> Page {
        let token = self.token(sku).await;
        let quantity = quantity.to_string();
        self.post(
            "/cart/add",
            &[
                ("csrf_token", &token),
                ("sku", sku),
                ("quantity", &quantity),
            ],
        )
        .await
    }

    /// Logs in to the ops console (the login form's token first).
    pub async fn ops_login(&self, user: &str, password: &str) -> Page {
        let form = self.get("/ops/login").await;
        assert_eq!(form.status, 200, "{}", form.body);
        let token = form.input("csrf_token");
        self.post(
            "/ops/login",
            &[
                ("csrf_token", &token),
                ("user", user),
                ("password", password),
            ],
        )
        .await
    }

    /// The raw value of a cookie in the jar.
    pub fn cookie(&self, name: &str) -> Option<String> {
        let url = Url::parse(&self.base).expect("base URL");
        let header = self.jar.cookies(&url)?;
        header
            .to_str()
            .ok()?
            .split("; ")
            .find_map(|pair| pair.strip_prefix(&format!("{name}=")).map(|v| v.to_owned()))
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        let url = Url::parse(&self.base).expect("base URL");
        self.jar
            .add_cookie_str(&format!("{name}={value}; Path=/"), &url);
    }
}

/// Asserts the response is one of the site's own pages (header, stylesheet, no internals).
pub fn assert_site_page(page: &Page) {
    assert!(page.body.contains("class=\"site-header\""), "{}", page.body);
    assert!(page.body.contains("/static/style.css"));
    for leak in [
        "reqwest",
        "error sending request",
        "Connection refused",
        "panicked",
        "stack backtrace",
        "sqlx",
        "\"error\":",
    ] {
        assert!(
            !page.body.contains(leak),
            "page leaks {leak}: {}",
            page.body
        );
    }
}
