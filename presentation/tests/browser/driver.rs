//! chromedriver and a headless chromium session for the test, plus screenshots.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder};
use tokio::process::{Child, Command};

const CHROMIUM: &str = "/usr/bin/chromium";

pub struct Browser {
    pub client: Client,
    _driver: Child,
    _profile: TempDir,
}

/// A directory removed on drop (a fresh browser profile).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chromedriver() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CHROMEDRIVER") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromedriver", "/usr/local/bin/chromedriver"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a session; `None` only when `STRATA_SKIP_BROWSER=1`.
    pub async fn start() -> Option<Browser> {
        if std::env::var("STRATA_SKIP_BROWSER").is_ok_and(|v| v == "1") {
            eprintln!("SKIPPED: browser test (STRATA_SKIP_BROWSER=1)");
            return None;
        }
        let driver_path = chromedriver().unwrap_or_else(|| {
            panic!(
                "chromedriver not found (looked at $CHROMEDRIVER, /usr/bin/chromedriver): \
                 install Debian's `chromium` and `chromium-driver` (as .ci/run does), or set \
                 STRATA_SKIP_BROWSER=1 to skip the browser tests"
            )
        });
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} not found: install Debian's `chromium` package (or STRATA_SKIP_BROWSER=1)"
        );
        // rustls has more than one provider compiled in; pick one for fantoccini's client.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = free_port();
        let driver = Command::new(&driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", driver_path.display()));
        let profile =
            std::env::temp_dir().join(format!("strata-chromium-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let caps = serde_json::json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let caps = caps.as_object().expect("object").clone();
        let url = format!("http://127.0.0.1:{port}");
        let start = Instant::now();
        let client = loop {
            let attempt = ClientBuilder::rustls()
                .expect("TLS roots")
                .capabilities(caps.clone())
                .connect(&url)
                .await;
            match attempt {
                Ok(client) => break client,
                Err(e) if start.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no WebDriver session from chromedriver at {url}: {e}"),
            }
        };
        Some(Browser {
            client,
            _driver: driver,
            _profile: TempDir(profile),
        })
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}

/// Saves numbered screenshots under `target/artifacts/browser/`.
pub struct Shots {
    pub dir: PathBuf,
}

impl Shots {
    pub fn new() -> Shots {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        let dir = target.join("artifacts/browser");
        std::fs::create_dir_all(&dir).expect("creating the artifacts directory");
        Shots { dir }
    }

    pub async fn take(&self, client: &Client, name: &str) {
        let png = client.screenshot().await.expect("screenshot");
        std::fs::write(self.dir.join(format!("{name}.png")), png).expect("saving a screenshot");
    }
}
