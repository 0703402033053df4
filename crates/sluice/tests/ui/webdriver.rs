//! A minimal W3C WebDriver client for the dashboard tests: starts Debian's
//! `chromedriver` on a free loopback port, opens one headless Chromium
//! session, and offers what the tests need (navigate, find, click, type,
//! run a script, screenshot). Every call and wait is bounded; on drop the
//! browser processes and chromedriver are killed by PID.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use serde_json::{json, Value};

use crate::common::{client, HttpClient};

/// One call to chromedriver never takes longer than this.
const CALL_LIMIT: Duration = Duration::from_secs(30);
/// How long `until` waits for the page.
pub const WAIT: Duration = Duration::from_secs(30);

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    client: HttpClient,
}

/// The first of `names` found on PATH.
fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |name| dir.join(name)))
        .find(|candidate| candidate.is_file())
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().unwrap().port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium at 1366×900. Panics (the
    /// test fails, it is not skipped) when either is missing.
    pub async fn start() -> Browser {
        let driver_path = on_path(&["chromedriver"]).expect(
            "chromedriver is needed (Debian package `chromium-driver`; scripts/test.sh installs it)",
        );
        let chromium = on_path(&["chromium", "chromium-browser"])
            .expect("chromium is needed (Debian package `chromium`; scripts/test.sh installs it)");
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            client: client(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = browser
                .raw("GET", "/status", None)
                .await
                .ok()
                .is_some_and(|(_, v)| v["value"]["ready"] == true);
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1366,900"],
            },
        }}});
        let value = browser.call("POST", "/session", Some(capabilities)).await;
        browser.session = value["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {value}"))
            .to_string();
        browser
    }

    async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), String> {
        let body = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
        let request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(CALL_LIMIT, self.client.request(request))
            .await
            .map_err(|_| format!("{method} {path}: no answer within {CALL_LIMIT:?}"))?
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let bytes = tokio::time::timeout(CALL_LIMIT, response.into_body().collect())
            .await
            .map_err(|_| format!("{method} {path}: body not read within {CALL_LIMIT:?}"))?
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        Ok((status, value))
    }

    /// A WebDriver command; panics with the driver's message on an error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (status, value) = self
            .raw(method, path, body)
            .await
            .unwrap_or_else(|e| panic!("webdriver {method} {path}: {e}"));
        assert!(status < 400, "webdriver {method} {path}: {status} {value}");
        value["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    pub async fn goto(&self, url: &str) {
        self.call("POST", &self.at("/url"), Some(json!({ "url": url })))
            .await;
    }

    /// The element matching `css` now, if any.
    pub async fn find(&self, css: &str) -> Option<String> {
        let body = json!({"using": "css selector", "value": css});
        let (status, value) = self
            .raw("POST", &self.at("/element"), Some(body))
            .await
            .unwrap_or_else(|e| panic!("find {css}: {e}"));
        if status == 404 {
            return None;
        }
        assert!(status < 400, "find {css}: {status} {value}");
        let element = value["value"].as_object()?;
        element.values().next()?.as_str().map(str::to_string)
    }

    /// Waits (bounded) for an element matching `css`.
    pub async fn wait_for(&self, css: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(element) = self.find(css).await {
                return element;
            }
            assert!(
                Instant::now() < deadline,
                "no element {css} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn click(&self, element: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/click")),
            Some(json!({})),
        )
        .await;
    }

    /// Empties an input.
    pub async fn clear(&self, element: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/clear")),
            Some(json!({})),
        )
        .await;
    }

    pub async fn type_text(&self, element: &str, text: &str) {
        self.call(
            "POST",
            &self.at(&format!("/element/{element}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its value.
    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.at("/execute/sync"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Runs `script` with no arguments and returns its value.
    pub async fn eval(&self, script: &str) -> Value {
        self.run(script, json!([])).await
    }

    /// Waits (bounded) until `script` returns something `accept` takes.
    pub async fn until<T>(
        &self,
        what: &str,
        script: &str,
        accept: impl Fn(&Value) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(value) = accept(&self.eval(script).await) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {WAIT:?} waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` whose last argument is a callback to call with the result.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.call(
            "POST",
            &self.at("/execute/async"),
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// Writes a PNG of the viewport to `path` (directories created).
    pub async fn screenshot(&self, path: &Path) {
        let value = self.call("GET", &self.at("/screenshot"), None).await;
        let png = base64_decode(value.as_str().expect("screenshot is base64"));
        assert!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, png).unwrap();
    }

    /// Ends the session (Chromium exits), then chromedriver.
    pub async fn quit(mut self) {
        let path = format!("/session/{}", self.session);
        let _ = self.raw("DELETE", &path, None).await;
        self.session.clear();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A test that panicked left Chromium running: end chromedriver's
        // descendants by PID, then chromedriver itself.
        for pid in descendants(self.driver.id()) {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Every process below `root` (its children, theirs, …), read from /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            // The fields after the `(command)`, which may hold spaces: state, ppid, …
            let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
                continue;
            };
            if let Some(ppid) = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok()) {
                parents.push((pid, ppid));
            }
        }
    }
    let mut found = vec![root];
    let mut index = 0;
    while index < found.len() {
        let parent = found[index];
        found.extend(
            parents
                .iter()
                .filter(|(_, ppid)| *ppid == parent)
                .map(|(pid, _)| *pid),
        );
        index += 1;
    }
    found.remove(0);
    found
}

/// Standard base64 (RFC 4648) as WebDriver sends screenshots.
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let digits: Vec<u32> = text.bytes().filter_map(value).collect();
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut bits = 0u32;
        for (i, digit) in chunk.iter().enumerate() {
            bits |= digit << (18 - 6 * i);
        }
        let bytes = bits.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    out
}
