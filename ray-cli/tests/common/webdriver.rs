//! A small W3C WebDriver client over plain HTTP/1.1 (no Node.js, no WebDriver crate): starts
//! `/usr/bin/chromedriver` on a free local port and drives headless Chromium through it. The
//! URLs it opens travel in request bodies, never in any process's argv.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// The W3C element key in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A chromedriver process and one browser session; both end when dropped.
pub struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

/// One HTTP exchange with chromedriver: (status, JSON body).
fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    // chromedriver keeps the connection open whatever the request says: read the head, then
    // exactly Content-Length bytes (or chunks up to the last one).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::Error::other(
                "chromedriver closed before answering",
            ));
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let length = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k.trim() == "content-length").then(|| v.trim().parse::<usize>().ok())?
    });
    let chunked = head.contains("transfer-encoding:") && head.contains("chunked");
    let done = |raw: &[u8]| match length {
        Some(n) => raw.len() >= head_end + n,
        None if chunked => raw[head_end..].ends_with(b"0\r\n\r\n"),
        None => false,
    };
    while !done(&raw) {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked {
        let mut out = String::new();
        let mut rest = rest.as_str();
        while let Some((size, after)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || after.len() < n {
                break;
            }
            out.push_str(&after[..n]);
            rest = after[n..].trim_start_matches("\r\n");
        }
        out
    } else {
        rest
    };
    let value = serde_json::from_str(&body).unwrap_or(Value::String(body));
    Ok((status, value))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session. Fails (never skips) when they are
    /// missing, saying how to install them.
    pub fn start() -> Browser {
        for p in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(p).exists(),
                "{p} is missing: run scripts/install-browser-deps.sh (apt-get install chromium chromium-driver)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("chromedriver starts");
        let mut b = Browser {
            driver,
            port,
            session: String::new(),
        };
        let deadline = Instant::now() + super::WAIT;
        loop {
            if let Ok((200, v)) = http(port, "GET", "/status", None)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--no-first-run", "--hide-scrollbars", "--window-size=1280,900"]
            }
        }}});
        let (status, v) = http(port, "POST", "/session", Some(&caps)).expect("new session");
        assert_eq!(status, 200, "no browser session: {v}");
        b.session = v["value"]["sessionId"].as_str().unwrap().to_string();
        b
    }

    fn call(&self, method: &str, what: &str, body: Option<Value>) -> Result<Value, Value> {
        let path = format!("/session/{}{what}", self.session);
        let (status, v) =
            http(self.port, method, &path, body.as_ref()).expect("chromedriver answers");
        if status == 200 {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    /// Opens `url` (it travels in the request body).
    pub fn go(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })))
            .expect("navigates");
    }

    /// Runs `script` in the page and returns its result.
    pub fn eval(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap_or_else(|e| panic!("script {script:?} failed: {e}"))
    }

    /// The text content of the element with `id` (hidden ones too), read by the page's DOM.
    pub fn dom_text(&self, id: &str) -> Option<String> {
        let v = self.eval(&format!(
            "const e = document.getElementById({}); return e ? e.textContent : null",
            serde_json::to_string(id).unwrap()
        ));
        v.as_str().map(str::to_string)
    }

    /// The rendered text of the first element matching `css`, if there is one.
    pub fn text(&self, css: &str) -> Option<String> {
        let el = self
            .call(
                "POST",
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .ok()?;
        let id = el[ELEMENT].as_str()?.to_string();
        self.call("GET", &format!("/element/{id}/text"), None)
            .ok()?
            .as_str()
            .map(str::to_string)
    }

    /// Clicks the first element matching `css`; false when there is none or it went stale
    /// (the page re-rendered it) before the click.
    pub fn click(&self, css: &str) -> bool {
        let Ok(el) = self.call(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        ) else {
            return false;
        };
        let Some(id) = el[ELEMENT].as_str() else {
            return false;
        };
        self.call("POST", &format!("/element/{id}/click"), Some(json!({})))
            .is_ok()
    }

    /// Saves a screenshot of the page as PNG at `path`.
    pub fn screenshot(&self, path: &Path) {
        let v = self.call("GET", "/screenshot", None).expect("a screenshot");
        let png = base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 text"))
            .expect("base64");
        assert!(png.starts_with(b"\x89PNG"), "not a PNG");
        std::fs::write(path, png).unwrap();
    }

    /// Polls `f` until it returns `Some`, up to `limit`; panics naming `what` with the page's
    /// text when it never does.
    pub fn wait_for<T>(
        &self,
        what: &str,
        limit: Duration,
        mut f: impl FnMut(&Browser) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() > deadline {
                let page = self.eval("return document.body.innerText");
                panic!("timed out waiting for {what}; the page says:\n{page}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = http(
                self.port,
                "DELETE",
                &format!("/session/{}", self.session),
                None,
            );
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
