//! The Web UI in headless Chromium, driven over the DevTools protocol (CDP): load each page,
//! click the buttons a person would (retry a failed job, pause a queue, quiet a worker, delete
//! with "select all"), and check the result both on the page and through the protocol.
//!
//! Chromium is the Debian package `chromium` (`.ci/run` installs it). Without it these tests
//! skip with a loud message, unless `CI` is set: then a missing browser is a failure. The tests
//! run one at a time (one browser on two cores is enough) and each takes a few seconds.

mod common;

use common::http::Req;
use common::{set_size, wait_until, Conn, Reply, Werk};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tungstenite::{Message, WebSocket};

/// One browser at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// How long any one browser condition may take.
const PATIENCE: Duration = Duration::from_secs(15);

/// The chromium binary: `$CHROMIUM`, else the first of the usual names found on `PATH`.
fn find_chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser", "google-chrome"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    None
}

/// A headless Chromium with one page attached through a flattened CDP session.
struct Browser {
    child: Child,
    ws: WebSocket<TcpStream>,
    session: String,
    next_id: u64,
    /// Console errors, uncaught exceptions and CSP reports seen so far.
    problems: Vec<String>,
    profile: common::TempDir,
}

impl Browser {
    /// Starts Chromium, or returns `None` (after saying so loudly) when it is not installed and
    /// `CI` is not set.
    fn launch() -> Option<Browser> {
        let Some(bin) = find_chromium() else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but chromium was not found: .ci/run should have installed it"
            );
            // Straight to the process's stderr: the test harness captures `eprintln!`.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                b"\n!!!!! SKIPPING a browser test: chromium is not installed \
                  (apt-get install chromium, or set CHROMIUM=/path/to/chrome) !!!!!\n",
            );
            return None;
        };
        let profile = common::TempDir::new("chromium");
        let mut child = Command::new(&bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--remote-debugging-port=0",
                "--window-size=1280,900",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(url.trim().to_owned());
                    }
                }
            }
        });
        let url = match rx.recv_timeout(PATIENCE) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("chromium did not print `DevTools listening on ws://...` in time");
            }
        };
        let host = url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host:port")
            .to_owned();
        let stream = TcpStream::connect(&host).expect("connect to DevTools");
        stream.set_read_timeout(Some(PATIENCE)).unwrap();
        let (ws, _) = tungstenite::client(url.as_str(), stream).expect("DevTools handshake");
        let mut b = Browser {
            child,
            ws,
            session: String::new(),
            next_id: 0,
            problems: Vec::new(),
            profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_owned();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_owned();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            b.call(domain, json!({}));
        }
        Some(b)
    }

    /// Sends one CDP command (on the page's session once attached) and returns its result,
    /// recording console errors and exceptions that arrive meanwhile.
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::Text(msg.to_string().into()))
            .expect("send to DevTools");
        loop {
            let text = match self.ws.read().expect("read from DevTools") {
                Message::Text(t) => t.as_str().to_owned(),
                _ => continue,
            };
            let v: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if v["id"] == id {
                if let Some(err) = v.get("error") {
                    return json!({"cdp_error": err});
                }
                return v["result"].clone();
            }
            self.note_event(&v);
        }
    }

    fn note_event(&mut self, v: &Value) {
        match v["method"].as_str() {
            Some("Runtime.exceptionThrown") => self
                .problems
                .push(format!("exception: {}", v["params"]["exceptionDetails"])),
            Some("Runtime.consoleAPICalled") if v["params"]["type"] == "error" => self
                .problems
                .push(format!("console.error: {}", v["params"]["args"])),
            Some("Log.entryAdded") if v["params"]["entry"]["level"] == "error" => self
                .problems
                .push(format!("log: {}", v["params"]["entry"]["text"])),
            _ => {}
        }
    }

    /// Evaluates `expr` in the page; its value, or `null` when it threw or the page was between
    /// documents.
    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        if r.get("exceptionDetails").is_some() || r.get("cdp_error").is_some() {
            return Value::Null;
        }
        r["result"]["value"].clone()
    }

    /// Waits until `expr` is `true` in the page.
    #[track_caller]
    fn wait_for(&mut self, expr: &str) {
        let start = Instant::now();
        while self.eval(expr) != json!(true) {
            assert!(
                start.elapsed() < PATIENCE,
                "timed out waiting for `{expr}`; the page says: {}",
                self.eval("document.body ? document.body.innerText.slice(0, 2000) : ''")
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Loads `url` and waits for it to finish loading.
    fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for(&format!(
            "document.readyState === 'complete' && location.href === {}",
            json!(url)
        ));
    }

    /// Clicks the element `selector` (it must exist).
    #[track_caller]
    fn click(&mut self, selector: &str) {
        let expr = format!(
            "(() => {{ const e = document.querySelector({}); if (!e) return false; e.click(); \
             return true; }})()",
            json!(selector)
        );
        assert_eq!(self.eval(&expr), json!(true), "no element {selector}");
    }

    /// Text of the element `selector`, or `null`.
    fn text(&mut self, selector: &str) -> Value {
        self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); return e && e.textContent; }})()",
            json!(selector)
        ))
    }

    /// Panics if the page logged an error, threw, or broke its CSP.
    #[track_caller]
    fn assert_no_problems(&mut self) {
        // Let pending events arrive.
        self.eval("1");
        assert!(
            self.problems.is_empty(),
            "browser problems: {:#?}",
            self.problems
        );
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.profile;
    }
}

fn make_retry(c: &mut Conn, jid: &str, queue: &str) {
    c.push(&json!({"jid": jid, "jobtype": "Mailer", "args": [jid], "queue": queue}));
    assert_eq!(c.fetch(queue).unwrap()["jid"], jid);
    c.fail(&json!({"jid": jid, "errtype": "SmtpError", "message": "mail server <down>"}));
}

fn base(w: &Werk) -> String {
    format!("http://{}", w.web_addr())
}

#[test]
fn every_page_loads_and_the_dashboard_polls_stats() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut b) = Browser::launch() else {
        return;
    };
    let w = Werk::start();
    let mut c = w.conn();
    make_retry(&mut c, "retry-0001", "mail");
    let _worker = w.worker("wid-browser");
    for (path, heading) in [
        ("/", "Dashboard"),
        ("/busy", "Busy"),
        ("/queues", "Queues"),
        ("/queues/mail", "Queue mail"),
        ("/retries", "Retries"),
        ("/scheduled", "Scheduled"),
        ("/morgue", "Dead"),
        ("/debug", "Debug"),
    ] {
        b.open(&format!("{}{path}", base(&w)));
        let h1 = b.text("main h1");
        assert!(
            h1.as_str().is_some_and(|t| t.starts_with(heading)),
            "{path}: {h1}"
        );
        // The stylesheet came from the binary and applies.
        assert_eq!(
            b.eval("getComputedStyle(document.querySelector('header')).backgroundColor"),
            json!("rgb(29, 35, 48)"),
            "{path}"
        );
    }
    // The job's detail page, reached by clicking its row.
    b.open(&format!("{}/retries", base(&w)));
    b.click("tr[data-jid='retry-0001'] a");
    b.wait_for("location.pathname.startsWith('/retries/') && document.readyState === 'complete'");
    let table = b.text("#job").as_str().unwrap_or_default().to_owned();
    assert!(
        table.contains("SmtpError") && table.contains("mail server <down>"),
        "{table}"
    );
    // The dashboard's script polls /stats (at once, then every interval) and fills the chart.
    b.open(&format!("{}/", base(&w)));
    b.wait_for("Number(document.getElementById('live-chart').dataset.polls) >= 1");
    assert_eq!(b.text("[data-stat='retries']"), json!("1"));
    b.click("a[href='/?days=7']");
    b.wait_for("document.getElementById('history-chart') && document.getElementById('history-chart').dataset.days === '7'");
    b.assert_no_problems();
}

#[test]
fn retry_a_failed_job_by_clicking() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut b) = Browser::launch() else {
        return;
    };
    let w = Werk::start();
    let mut c = w.conn();
    make_retry(&mut c, "retry-0001", "mail");
    make_retry(&mut c, "retry-0002", "mail");
    b.open(&format!("{}/retries", base(&w)));
    b.click("tr[data-jid='retry-0002'] input[name=key]");
    b.click("#selected button[value=retry]");
    b.wait_for("document.readyState === 'complete' && document.getElementById('summary') && document.getElementById('summary').textContent === '1 job(s).'");
    assert!(b.eval("!!document.querySelector(\"tr[data-jid='retry-0001']\")") == json!(true));
    // Through the protocol: the job is back on its queue with its failure.
    let job = c.fetch("mail").expect("retried job on its queue");
    assert_eq!(job["jid"], "retry-0002");
    assert_eq!(job["failure"]["errtype"], "SmtpError");
    assert_eq!(set_size(&c.info(), "retries"), 1);
    // "Select all" (a script behaviour) then Delete empties the page's jobs.
    b.click("input[data-check-all]");
    b.click("#selected button[value=delete]");
    b.wait_for("document.readyState === 'complete' && !!document.querySelector('.empty')");
    assert_eq!(set_size(&c.info(), "retries"), 0);
    b.assert_no_problems();
}

#[test]
fn pause_a_queue_by_clicking() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut b) = Browser::launch() else {
        return;
    };
    let w = Werk::start();
    let mut c = w.conn();
    c.push_simple("queued-001", "mail");
    b.open(&format!("{}/queues", base(&w)));
    b.click("tr[data-queue='mail'] a");
    b.wait_for("location.pathname === '/queues/mail' && document.readyState === 'complete'");
    b.click("form[action='/queues/mail'] button");
    b.wait_for("document.getElementById('queue-state') && document.getElementById('queue-state').textContent === 'paused'");
    // Through the protocol: the paused queue gives nothing.
    assert_eq!(c.fetch("mail"), None);
    let metrics = Req::get("/metrics").send(w.web_addr()).body;
    assert!(metrics.contains("werk_queue_paused{queue=\"mail\"} 1"));
    b.click("form[action='/queues/mail'] button");
    b.wait_for("document.getElementById('queue-state') && document.getElementById('queue-state').textContent === 'active'");
    assert_eq!(c.fetch("mail").unwrap()["jid"], "queued-001");
    b.assert_no_problems();
}

#[test]
fn quiet_a_worker_by_clicking() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let Some(mut b) = Browser::launch() else {
        return;
    };
    let w = Werk::start();
    let mut worker = w.worker("wid-quiet-me");
    let mut other = w.worker("wid-keep-going");
    b.open(&format!("{}/busy", base(&w)));
    b.click("tr[data-wid='wid-quiet-me'] button");
    b.wait_for("document.readyState === 'complete' && !!document.querySelector(\"tr[data-wid='wid-quiet-me'] .badge.quiet\")");
    // The worker learns it from its next BEAT; the other one does not.
    let quiet = worker.cmd(r#"BEAT {"wid":"wid-quiet-me"}"#);
    assert_eq!(quiet, Reply::Bulk(br#"{"state":"quiet"}"#.to_vec()));
    let running = other.cmd(r#"BEAT {"wid":"wid-keep-going"}"#);
    assert_eq!(running, Reply::Simple("OK".into()));
    wait_until(PATIENCE, "the page still lists both workers", || {
        b.eval("document.querySelectorAll('#workers tr[data-wid]').length") == json!(2)
    });
    b.assert_no_problems();
}

/// Writes the README's dashboard picture: `WERK_SCREENSHOT=docs/dashboard.png cargo test --test
/// web_browser -- --ignored dashboard_screenshot`. A producer and two workers keep jobs moving
/// (some fail) while the dashboard polls every 2 s, then the page is captured.
#[test]
#[ignore = "writes docs/dashboard.png when asked to"]
fn dashboard_screenshot() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let out = std::env::var("WERK_SCREENSHOT").unwrap_or_else(|_| "dashboard.png".into());
    let Some(mut b) = Browser::launch() else {
        return;
    };
    let w = Werk::options().arg("--sync").arg("none").start();
    let mut producer = w.conn();
    let mut workers = [w.worker("wid-mailer-1"), w.worker("wid-mailer-2")];
    let mut late = w.conn();
    for i in 0..12 {
        let at = common::rfc3339(common::unix_now() + 600.0 + f64::from(i) * 60.0);
        late.push(&json!({"jid": format!("later-{i:04}"), "jobtype": "Digest", "args": [], "queue": "reports", "at": at}));
    }
    b.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": false}),
    );
    let start = Instant::now();
    let mut n = 0u64;
    let mut opened = false;
    while start.elapsed() < Duration::from_secs(30) {
        if !opened && start.elapsed() > Duration::from_secs(6) {
            // Open the dashboard once today's history has something to show.
            opened = true;
            b.open(&format!("{}/", base(&w)));
            b.eval("const s = document.getElementById('poll-interval'); s.value = '2'; s.dispatchEvent(new Event('change')); true");
        }
        let burst = 20 + (n % 7) * 9;
        for _ in 0..burst {
            n += 1;
            let queue = ["mail", "default", "billing"][(n % 3) as usize];
            producer.push(&json!({"jid": format!("job-{n:08}"), "jobtype": "SendEmail", "args": [n], "queue": queue}));
        }
        for (k, wk) in workers.iter_mut().enumerate() {
            for _ in 0..burst / 2 {
                let Some(job) = wk.fetch("mail default billing") else {
                    break;
                };
                let jid = job["jid"].as_str().unwrap_or_default().to_owned();
                if jid.ends_with('7') && k == 0 {
                    wk.fail(&json!({"jid": jid, "errtype": "Net::ReadTimeout", "message": "smtp timed out"}));
                } else {
                    wk.ack(&jid);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    b.wait_for("Number(document.getElementById('live-chart').dataset.polls) >= 5");
    let shot = b.call(
        "Page.captureScreenshot",
        json!({"format": "png", "clip": {"x": 0, "y": 0, "width": 1280, "height": 900, "scale": 1}}),
    );
    let png = common::http::base64_decode(shot["data"].as_str().expect("PNG data"));
    std::fs::write(&out, png).expect("write the screenshot");
}
