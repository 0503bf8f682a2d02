//! A real headless Chromium for the dashboard's browser tests, driven over the W3C WebDriver
//! protocol through ChromeDriver: the few commands the tests use (open a page, find, click,
//! type, read text and properties, run a script, screenshot), over reqwest.
//!
//! Why not a WebDriver crate: fantoccini (with thirtyfour on top of it) brings the `webdriver`
//! crate with ICU segmentation tables, a second `http` and `cookie` version and more to every
//! test build, for the dozen JSON requests below.
//!
//! Chromium and ChromeDriver are Debian's packages (`apt-get install chromium chromium-driver`;
//! `scripts/test.sh` installs them), found at `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! or where `PICOCLAW_TEST_CHROMIUM` / `PICOCLAW_TEST_CHROMEDRIVER` say. Chromium runs with
//! `--no-sandbox` (CI runs as root), `--disable-background-networking` and friends (the machine's
//! network is closed: nothing may try to reach Google), a new profile each time.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// Where a binary is: the variable's path, else the Debian path.
fn binary(var: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(var)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found: the browser tests need Debian's chromium and chromium-driver \
         (`apt-get install -y chromium chromium-driver`; scripts/test.sh installs them), or \
         {var} naming the binary",
        path.display()
    );
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// How big the browser's window is.
#[derive(Clone, Copy, Debug)]
pub enum Viewport {
    /// A laptop: 1280 × 860.
    Desktop,
    /// A phone (390 × 844 CSS pixels, touch), through Chrome's mobile emulation.
    Phone,
}

/// A headless Chromium session; quits the browser and ChromeDriver when dropped.
#[derive(Debug)]
pub struct Browser {
    driver: Child,
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>/session/<id>`.
    session: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// Starts ChromeDriver and a Chromium session with this viewport.
    pub async fn start(viewport: Viewport) -> Browser {
        let chromium = binary("PICOCLAW_TEST_CHROMIUM", "/usr/bin/chromium");
        let chromedriver = binary("PICOCLAW_TEST_CHROMEDRIVER", "/usr/bin/chromedriver");
        let port = free_port();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", chromedriver.display()));
        let http = picoclaw_http::client_builder()
            .unwrap()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = match http.get(format!("{base}/status")).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ChromeDriver did not start in 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--no-default-browser-check".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-extensions".to_owned(),
            "--disable-features=Translate,OptimizationHints,MediaRouter".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut options = json!({"binary": chromium.display().to_string()});
        match viewport {
            Viewport::Desktop => args.push("--window-size=1280,860".to_owned()),
            Viewport::Phone => {
                args.push("--window-size=390,844".to_owned());
                options["mobileEmulation"] = json!({
                    "deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 2.0, "touch": true},
                    "userAgent": "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 \
                                  (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36"
                });
            }
        }
        options["args"] = json!(args);
        let created: Value = http
            .post(format!("{base}/session"))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": options,
            }}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let id = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("ChromeDriver refused the session: {created}"))
            .to_owned();
        Browser {
            driver,
            http,
            session: format!("{base}/session/{id}"),
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let value: Value = response.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success(),
            "WebDriver {path}: {status}: {}",
            value["value"]["message"]
        );
        value["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    /// The page's address now.
    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements `css` matches now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .post("/elements", json!({"using": "css selector", "value": css}))
            .await;
        found
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element `css` matches, waiting up to 20 s for one to appear.
    pub async fn find(&self, css: &str) -> Element {
        self.wait_for(css, Duration::from_secs(20))
            .await
            .unwrap_or_else(|| panic!("no element matches '{css}' within 20 s"))
    }

    /// The first element `css` matches within `timeout`, or None.
    pub async fn wait_for(&self, css: &str, timeout: Duration) -> Option<Element> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css).await.into_iter().next() {
                return Some(e);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits up to 20 s until `script` (a function body returning a value) returns true.
    pub async fn wait_until(&self, what: &str, script: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.execute(script, json!([])).await == Value::Bool(true) {
                return;
            }
            assert!(Instant::now() < deadline, "waited 20 s for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, e: &Element) {
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    /// Types `text` into the element (`\u{e007}` is Enter).
    pub async fn type_text(&self, e: &Element, text: &str) {
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    pub async fn clear(&self, e: &Element) {
        self.post(&format!("/element/{}/clear", e.0), json!({}))
            .await;
    }

    /// The element's rendered text.
    pub async fn text(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// A DOM property of the element (`value`, `checked`, `innerHTML`...).
    pub async fn property(&self, e: &Element, name: &str) -> Value {
        self.get(&format!("/element/{}/property/{name}", e.0)).await
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Runs `script` asynchronously: it calls its last argument with the result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    /// The browser's cookies for the page (name, value, httpOnly, sameSite...).
    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .unwrap();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(path, png).unwrap();
    }

    /// A PNG of the whole page (the viewport made as tall as the page first), written to `path`.
    pub async fn screenshot_page(&self, path: &Path) {
        let height = self
            .execute(
                "return Math.min(4000, document.documentElement.scrollHeight);",
                json!([]),
            )
            .await
            .as_u64()
            .unwrap_or(860);
        let width = self
            .execute("return window.outerWidth;", json!([]))
            .await
            .as_u64()
            .unwrap_or(1280);
        let _ = self
            .http
            .post(format!("{}/window/rect", self.session))
            .json(&json!({"width": width, "height": height + 100}))
            .send()
            .await;
        self.screenshot(path).await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Quit Chromium (ChromeDriver's DELETE /session/<id>, sent by hand: no runtime here),
        // then ChromeDriver itself.
        if let Some(rest) = self.session.strip_prefix("http://")
            && let Some((host, path)) = rest.split_once('/')
            && let Ok(mut stream) = std::net::TcpStream::connect(host)
        {
            use std::io::{Read, Write};
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = write!(
                stream,
                "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
            );
            let mut answer = Vec::new();
            let _ = stream.read_to_end(&mut answer);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
