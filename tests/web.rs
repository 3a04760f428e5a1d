//! The Web UI over HTTP against the real binary: every page, every action (its effect checked
//! through the protocol), auth, CSRF, limits, slow clients, and durability of web actions.

mod common;
mod harness;

use common::http::{csrf, key_of, keys, page, raw, HttpResponse, Req};
use common::{queue_size, set_size, total, wait_until, Conn, Reply, Werk};
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Pushes `jid` on `queue`, fetches it and fails it: it lands in the retry set.
fn make_retry(c: &mut Conn, jid: &str, jobtype: &str, queue: &str) {
    c.push(&json!({"jid": jid, "jobtype": jobtype, "args": [1, "two"], "queue": queue}));
    let got = c.fetch(queue).expect("the job just pushed");
    assert_eq!(got["jid"], jid);
    c.fail(
        &json!({"jid": jid, "errtype": "Boom", "message": "it <broke>",
        "backtrace": ["app.rb:1 in `run'", "lib.rb:2"]}),
    );
}

/// Pushes a job that dies on its first failure.
fn make_dead(c: &mut Conn, jid: &str, queue: &str) {
    c.push(&json!({"jid": jid, "jobtype": "Doomed", "args": [], "queue": queue, "retry": -1}));
    assert!(c.fetch(queue).is_some());
    c.fail(&json!({"jid": jid, "errtype": "Fatal", "message": "gone"}));
}

/// Pushes a job scheduled an hour ahead.
fn make_scheduled(c: &mut Conn, jid: &str) {
    let at = common::rfc3339(common::unix_now() + 3600.0);
    c.push(&json!({"jid": jid, "jobtype": "Later", "args": [], "queue": "later", "at": at}));
}

/// POSTs `form` (plus the page's CSRF token) to `path` as a same-origin browser would.
#[track_caller]
fn post(w: &Werk, path: &str, form: &str) -> HttpResponse {
    let token = csrf(&page(w.web_addr(), "/busy"));
    let body = format!("csrf={token}&{form}");
    Req::post(path, &body)
        .header("Origin", &format!("http://{}", w.web_addr()))
        .header("Sec-Fetch-Site", "same-origin")
        .send(w.web_addr())
}

#[track_caller]
fn post_ok(w: &Werk, path: &str, form: &str, location: &str) {
    let r = post(w, path, form);
    assert_eq!(r.status, 303, "POST {path} {form}: {}", r.body);
    assert_eq!(r.header("location"), Some(location));
}

#[test]
fn every_page_renders_with_the_servers_data() {
    let w = Werk::start();
    let web = w.web_addr();
    let mut c = w.conn();
    make_retry(&mut c, "retry-0001", "Mailer", "mail");
    make_dead(&mut c, "dead-0001", "mail");
    make_scheduled(&mut c, "sched-0001");
    c.push_simple("queued-001", "mail");
    let mut worker = w.worker("wid-page-1");
    worker.push_simple("busy-0001", "work");
    assert_eq!(worker.fetch("work").unwrap()["jid"], "busy-0001");

    let dash = page(web, "/");
    for text in [
        "Processed",
        "Failed",
        "Busy",
        "Enqueued",
        "Retries",
        "Scheduled",
        "Dead",
    ] {
        assert!(dash.contains(text), "dashboard lacks {text}");
    }
    assert!(dash.contains("data-stat=\"retries\">1<"), "{dash}");
    assert!(dash.contains("id=\"live-chart\"") && dash.contains("id=\"history-chart\""));
    assert!(dash.contains("data-days=\"30\""));
    for days in [7, 30, 90, 180] {
        assert!(page(web, &format!("/?days={days}")).contains(&format!("data-days=\"{days}\"")));
    }
    let busy = page(web, "/busy");
    assert!(busy.contains("test-host:4242") && busy.contains("wid-page-1"));
    assert!(busy.contains("busy-0001") && busy.contains("running"));
    let queues = page(web, "/queues");
    assert!(queues.contains("data-queue=\"mail\"") && queues.contains("data-queue=\"work\""));
    assert!(page(web, "/queues/mail").contains("queued-001"));
    assert_eq!(Req::get("/queues/nope").send(web).status, 404);

    for (path, jid, extra) in [
        ("/retries", "retry-0001", "it &lt;broke&gt;"),
        ("/morgue", "dead-0001", "Fatal"),
        ("/scheduled", "sched-0001", "Later"),
    ] {
        let list = page(web, path);
        assert!(list.contains(jid) && list.contains(extra), "{path}: {list}");
        let k = keys(&list);
        assert_eq!(k.len(), 1, "{path}");
        let detail = page(web, &format!("{path}/{}", k[0]));
        assert!(detail.contains(jid), "{path} detail");
        assert_eq!(Req::get(&format!("{path}/1-999999")).send(web).status, 404);
        assert_eq!(Req::get(&format!("{path}/garbage")).send(web).status, 404);
    }
    let detail = page(
        web,
        &format!("/retries/{}", keys(&page(web, "/retries"))[0]),
    );
    assert!(
        detail.contains("app.rb:1 in `run&#39;"),
        "backtrace shown, escaped"
    );
    assert!(page(web, "/debug").contains("fsync latency"));

    let stats = Req::get("/stats").send(web);
    assert_eq!(stats.header("cache-control"), Some("no-cache"));
    let stats = stats.json();
    assert_eq!(
        stats.as_object().unwrap().len(),
        4,
        "INFO's four keys: {stats}"
    );
    assert_eq!(set_size(&stats, "retries"), 1);
    let info = c.info();
    assert_eq!(stats["faktory"], info["faktory"], "/stats is INFO");
    assert_eq!(
        stats["server"]["faktory_version"],
        info["server"]["faktory_version"]
    );
    let health = Req::get("/health").send(web).json();
    assert_eq!(health["server"]["description"], "Faktory");
    assert!(health["server"]["connections"].as_u64().unwrap() >= 2);
    assert!(health["now"].is_string());

    let css = Req::get("/static/werk.css").send(web);
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let js = Req::get("/static/werk.js").send(web);
    assert!(js.body.contains("/stats"));
    let head = Req::new("HEAD", "/").send(web);
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    assert_eq!(Req::get("/nope").send(web).status, 404);
    assert_eq!(Req::new("DELETE", "/").send(web).status, 405);
    assert_eq!(post(&w, "/", "").status, 405);
    // Every page forbids framing and outside resources.
    let csp = Req::get("/").send(web);
    assert!(csp
        .header("content-security-policy")
        .unwrap()
        .contains("default-src 'none'"));
}

#[test]
fn job_text_is_escaped_everywhere() {
    let w = Werk::start();
    let mut c = w.conn();
    let evil = "<script>alert(1)</script>";
    make_retry(&mut c, "evil-0001", evil, "mail");
    c.push(&json!({"jid": "evil-0002", "jobtype": evil, "args": [evil], "queue": "mail"}));
    for path in ["/retries", "/queues/mail", "/retries?q=%3Cscript%3E"] {
        let html = page(w.web_addr(), path);
        assert!(!html.contains("<script>alert"), "{path} is not escaped");
        assert!(html.contains("&lt;script&gt;alert(1)"), "{path}");
    }
}

#[test]
fn retry_now_delete_and_kill_change_the_sets() {
    let w = Werk::start();
    let mut c = w.conn();
    for i in 0..3 {
        make_retry(&mut c, &format!("retry-000{i}"), "Mailer", "mail");
    }
    let list = page(w.web_addr(), "/retries");
    assert_eq!(keys(&list).len(), 3);
    // Retries are ordered by their jittered next_at: find each row by its jid.
    let k: Vec<String> = (0..3)
        .map(|i| key_of(&list, &format!("retry-000{i}")))
        .collect();
    // Retry one: it is back on its queue, with its failure, and a fresh enqueued_at.
    post_ok(
        &w,
        "/retries",
        &format!("action=retry&key={}", k[0]),
        "/retries",
    );
    let info = c.info();
    assert_eq!(set_size(&info, "retries"), 2);
    let job = c.fetch("mail").expect("retried job is on its queue");
    assert_eq!(job["jid"], "retry-0000");
    assert_eq!(job["failure"]["errtype"], "Boom");
    c.ack("retry-0000");
    // Kill one from its detail page, delete the other from the list.
    post_ok(&w, &format!("/retries/{}", k[1]), "action=kill", "/retries");
    post_ok(
        &w,
        "/retries",
        &format!("action=delete&key={}", k[2]),
        "/retries",
    );
    let info = c.info();
    assert_eq!(set_size(&info, "retries"), 0);
    assert_eq!(set_size(&info, "dead"), 1);
    // Retry from the morgue.
    let dead = keys(&page(w.web_addr(), "/morgue"));
    post_ok(
        &w,
        "/morgue",
        &format!("action=retry&key={}", dead[0]),
        "/morgue",
    );
    assert_eq!(set_size(&c.info(), "dead"), 0);
    assert_eq!(c.fetch("mail").unwrap()["jid"], "retry-0001");
    // A key that is gone (already moved) changes nothing and is not an error.
    post_ok(
        &w,
        "/morgue",
        &format!("action=delete&key={}", dead[0]),
        "/morgue",
    );
    // Actions that do not apply are refused.
    assert_eq!(post(&w, "/morgue", "action=kill&key=all").status, 400);
    assert_eq!(post(&w, "/retries", "action=explode&key=all").status, 400);
    assert_eq!(post(&w, "/retries", "action=retry&key=bogus").status, 400);
}

#[test]
fn actions_on_all_and_on_search_hits() {
    let w = Werk::start();
    let mut c = w.conn();
    for i in 0..4 {
        let jobtype = if i % 2 == 0 { "Mailer" } else { "Billing" };
        make_retry(&mut c, &format!("retry-000{i}"), jobtype, "mail");
    }
    let hits = page(w.web_addr(), "/retries?q=mailer");
    assert!(hits.contains("2 job(s) match"), "{hits}");
    assert_eq!(keys(&hits).len(), 2);
    // "Retry all" while searching applies to the hits only.
    post_ok(
        &w,
        "/retries",
        "action=retry&key=all&q=mailer",
        "/retries?q=mailer",
    );
    let info = c.info();
    assert_eq!(set_size(&info, "retries"), 2);
    assert_eq!(queue_size(&info, "mail"), Some(2));
    post_ok(&w, "/retries", "action=kill&key=all&q=", "/retries");
    let info = c.info();
    assert_eq!(
        (set_size(&info, "retries"), set_size(&info, "dead")),
        (0, 2)
    );
    post_ok(&w, "/morgue", "action=delete&key=all", "/morgue");
    assert_eq!(set_size(&c.info(), "dead"), 0);
}

#[test]
fn scheduled_jobs_can_be_added_to_their_queue_deleted_or_killed() {
    let w = Werk::start();
    let mut c = w.conn();
    for i in 0..3 {
        make_scheduled(&mut c, &format!("sched-000{i}"));
    }
    let k = keys(&page(w.web_addr(), "/scheduled"));
    post_ok(
        &w,
        "/scheduled",
        &format!("action=add_to_queue&key={}", k[0]),
        "/scheduled",
    );
    let job = c.fetch("later").expect("added to its queue now");
    assert_eq!(job["jid"], "sched-0000");
    assert!(job["enqueued_at"].is_string());
    post_ok(
        &w,
        "/scheduled",
        &format!("action=kill&key={}", k[1]),
        "/scheduled",
    );
    post_ok(
        &w,
        &format!("/scheduled/{}", k[2]),
        "action=delete",
        "/scheduled",
    );
    let info = c.info();
    assert_eq!(
        (set_size(&info, "scheduled"), set_size(&info, "dead")),
        (0, 1)
    );
}

#[test]
fn queues_pause_resume_and_clear() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push_simple("queued-001", "mail");
    post_ok(&w, "/queues/mail", "action=pause", "/queues/mail");
    assert!(page(w.web_addr(), "/queues/mail").contains("id=\"queue-state\">paused<"));
    let start = Instant::now();
    assert_eq!(c.fetch("mail"), None, "a paused queue gives nothing");
    assert!(start.elapsed() >= Duration::from_millis(1500));
    post_ok(&w, "/queues/mail", "action=resume", "/queues/mail");
    assert_eq!(c.fetch("mail").unwrap()["jid"], "queued-001");
    c.push_simple("queued-002", "mail");
    post_ok(&w, "/queues/mail", "action=delete", "/queues");
    assert_eq!(queue_size(&c.info(), "mail"), None, "queue and jobs gone");
    let r = post(&w, "/queues/mail", "action=pause");
    assert_eq!(r.status, 404);
    assert_eq!(post(&w, "/queues/x", "action=boil").status, 400);
}

#[test]
fn a_queue_lists_its_jobs_in_pages() {
    let w = Werk::start();
    let mut c = w.conn();
    for i in 0..30 {
        c.push_simple(&format!("queued-{i:03}"), "bulk");
    }
    let first = page(w.web_addr(), "/queues/bulk");
    assert!(first.contains("queued-000") && first.contains("queued-024"));
    assert!(!first.contains("queued-025") && first.contains("page 1 of 2"));
    let second = page(w.web_addr(), "/queues/bulk?page=2");
    assert!(second.contains("queued-025") && !second.contains("queued-024"));
}

#[test]
fn busy_quiets_and_stops_workers_through_their_next_beat() {
    let w = Werk::start();
    let mut a = w.worker("wid-a");
    let mut b = w.worker("wid-b");
    let beat = |c: &mut Conn, wid: &str| c.cmd(&format!(r#"BEAT {{"wid":"{wid}"}}"#));
    assert_eq!(beat(&mut a, "wid-a"), Reply::Simple("OK".into()));
    post_ok(&w, "/busy", "wid=wid-a&signal=quiet", "/busy");
    assert_eq!(
        beat(&mut a, "wid-a"),
        Reply::Bulk(br#"{"state":"quiet"}"#.to_vec())
    );
    assert_eq!(beat(&mut b, "wid-b"), Reply::Simple("OK".into()));
    assert!(page(w.web_addr(), "/busy").contains("badge quiet"));
    post_ok(&w, "/busy", "wid=all&signal=terminate", "/busy");
    for (c, wid) in [(&mut a, "wid-a"), (&mut b, "wid-b")] {
        assert_eq!(
            beat(c, wid),
            Reply::Bulk(br#"{"state":"terminate"}"#.to_vec())
        );
    }
    assert_eq!(post(&w, "/busy", "wid=wid-a&signal=dance").status, 400);
    assert_eq!(post(&w, "/busy", "signal=quiet").status, 400);
}

#[test]
fn posts_without_a_valid_token_or_from_another_site_are_refused_and_change_nothing() {
    let w = Werk::start();
    let web = w.web_addr();
    let mut c = w.conn();
    make_retry(&mut c, "retry-0001", "Mailer", "mail");
    let token = csrf(&page(web, "/retries"));
    let origin = format!("http://{web}");
    let cases = [
        // No token at all.
        Req::post("/retries", "action=delete&key=all").header("Origin", &origin),
        // A wrong token of the right length.
        Req::post(
            "/retries",
            &format!("csrf={}&action=delete&key=all", "0".repeat(64)),
        ),
        // The right token, sent from another site.
        Req::post("/retries", &format!("csrf={token}&action=delete&key=all"))
            .header("Origin", "http://evil.example"),
        Req::post("/retries", &format!("csrf={token}&action=delete&key=all"))
            .header("Sec-Fetch-Site", "cross-site"),
        Req::post("/retries", &format!("csrf={token}&action=delete&key=all"))
            .header("Origin", "null"),
    ];
    for req in &cases {
        let r = req.send(web);
        assert_eq!(r.status, 403, "{req:?}: {}", r.body);
    }
    assert_eq!(set_size(&c.info(), "retries"), 1, "nothing changed");
    // The same request done right works.
    let r = Req::post("/retries", &format!("csrf={token}&action=delete&key=all"))
        .header("Origin", &origin)
        .send(web);
    assert_eq!(r.status, 303);
    assert_eq!(set_size(&c.info(), "retries"), 0);
}

#[test]
fn basic_auth_is_required_when_a_password_is_set() {
    // Wrong passwords five times over: the per-address backoff (tests/abuse.rs) is off here.
    let w = Werk::options()
        .password("s3cret")
        .arg("--auth-failures-max")
        .arg("0")
        .start();
    let web = w.web_addr();
    for path in ["/", "/stats", "/metrics", "/static/werk.css", "/retries"] {
        let r = Req::get(path).send(web);
        assert_eq!(r.status, 401, "{path}");
        assert!(r
            .header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm="));
        assert_eq!(r.body, "Authorization required");
        let r = Req::get(path).basic("admin", "wrong").send(web);
        assert_eq!(
            (r.status, r.body.as_str()),
            (401, "Authorization failed"),
            "{path}"
        );
        assert_eq!(
            Req::get(path).basic("anyone", "s3cret").send(web).status,
            200,
            "{path}"
        );
    }
    assert_eq!(
        Req::get("/")
            .header("Authorization", "Basic !!!")
            .send(web)
            .status,
        401
    );
    // A POST needs the password before its token is even looked at.
    let r = Req::post("/queues/x", "action=pause").send(web);
    assert_eq!(r.status, 401);
}

#[test]
fn parameters_and_requests_are_bounded() {
    let w = Werk::start();
    let web = w.web_addr();
    for (path, status) in [
        ("/?days=8", 400),
        ("/?days=100000000", 400),
        ("/?days=-1", 400),
        ("/retries?page=0", 400),
        ("/retries?page=100001", 400),
        ("/retries?page=x", 400),
        ("/retries?page=100000", 200),
        ("/retries?q=%zz", 400),
    ] {
        assert_eq!(Req::get(path).send(web).status, status, "{path}");
    }
    let long_q = format!("/retries?q={}", "a".repeat(201));
    assert_eq!(Req::get(&long_q).send(web).status, 400);
    // Head over 16 KiB, too many headers, body over 64 KiB, chunked bodies.
    let big = Req::get("/")
        .header("X-Pad", &"p".repeat(17 * 1024))
        .send(web);
    assert_eq!(big.status, 431);
    let mut many = Req::get("/");
    for i in 0..70 {
        many = many.header(&format!("X-{i}"), "v");
    }
    assert_eq!(many.send(web).status, 431);
    let r = raw(
        web,
        b"POST /retries HTTP/1.1\r\nContent-Length: 70000\r\n\r\n",
    );
    assert_eq!(r.status, 413);
    let r = raw(
        web,
        b"POST /retries HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(r.status, 501);
    assert_eq!(raw(web, b"NONSENSE\r\n\r\n").status, 400);
    let too_many_keys: String = (0..501).map(|i| format!("&key={i}-1")).collect();
    assert_eq!(
        post(&w, "/retries", &format!("action=delete{too_many_keys}")).status,
        400
    );
}

#[test]
fn a_slow_client_is_cut_off_at_its_deadline_and_never_blocks_others() {
    let w = Werk::options()
        .arg("--web-timeout-ms")
        .arg("600")
        .arg("--web-connections-max")
        .arg("3")
        .start();
    let web = w.web_addr();
    // Slowloris: a head that never ends.
    let mut slow = TcpStream::connect(web).unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").unwrap();
    let started = Instant::now();
    // Meanwhile the loop serves everyone else.
    assert_eq!(Req::get("/stats").send(web).status, 200);
    let mut c = w.conn();
    assert!(c.info()["server"].is_object());
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf); // EOF (or reset) when werk closes it
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(500) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
}

#[test]
fn past_the_connection_limit_a_client_gets_503_at_once() {
    let w = Werk::options()
        .arg("--web-connections-max")
        .arg("2")
        .start();
    let web = w.web_addr();
    // Two idle clients hold every slot; the next request is refused at once, not queued.
    let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(web).unwrap()).collect();
    wait_until(
        Duration::from_secs(5),
        "werk refuses a third client",
        || page_status(web) == 503,
    );
    drop(idle);
    wait_until(Duration::from_secs(5), "slots are free again", || {
        page_status(web) == 200
    });
}

fn page_status(web: SocketAddr) -> u16 {
    Req::get("/health").send(web).status
}

#[test]
fn metrics_in_prometheus_text_format() {
    let w = Werk::start();
    let mut c = w.conn();
    make_retry(&mut c, "retry-0001", "Mailer", "mail");
    c.push_simple("queued-001", "mail");
    let _worker = w.worker("wid-metrics");
    let r = Req::get("/metrics").send(w.web_addr());
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let m = r.body;
    for line in [
        "werk_jobs_processed_total 1",
        "werk_jobs_failed_total 1",
        "werk_queue_size{queue=\"mail\"} 1",
        "werk_queue_paused{queue=\"mail\"} 0",
        "werk_set_size{set=\"retries\"} 1",
        "werk_set_size{set=\"working\"} 0",
        "werk_workers{state=\"running\"} 1",
        "werk_workers{state=\"quiet\"} 0",
        "werk_connections 2",
        "# TYPE werk_journal_sync_seconds histogram",
        "werk_journal_sync_seconds_bucket{le=\"+Inf\"} ",
        "werk_journal_healthy 1",
    ] {
        assert!(m.contains(line), "missing {line:?} in\n{m}");
    }
    assert!(m.contains("werk_queue_latency_seconds{queue=\"mail\"} "));
    // Every fsync so far was measured: the histogram is not empty under --sync always.
    let count: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("werk_journal_sync_seconds_count "))
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert!(count > 0, "{m}");
    // Every sample line is `name{labels} value` with a numeric value.
    for line in m.lines().filter(|l| !l.starts_with('#')) {
        let value = line.rsplit(' ').next().unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
    }
    assert!(total(&c.info(), "total_processed") == 1);
}

#[test]
fn the_web_ui_can_be_turned_off() {
    for flags in [&["-w", "off"][..], &["--no-web"][..], &["-w", ":0"][..]] {
        let mut opts = Werk::options();
        for f in flags {
            opts = opts.arg(*f);
        }
        let w = opts.start();
        assert_eq!(w.web(), None);
        assert!(w.logs().iter().any(|l| l.contains("web UI off")));
    }
}

#[test]
fn a_web_action_is_durable_once_answered() {
    let dir = harness::temp_dir("web-durable");
    let mut first = harness::Werk::start_in(&dir, &[], &[]);
    let web = first.web.expect("web UI on");
    let c = &mut Conn::handshake(first.addr, json!({"v": 2}), None);
    make_retry(c, "retry-0001", "Mailer", "mail");
    c.push_simple("queued-001", "gone");
    let html = page(web, "/retries");
    let token = csrf(&html);
    let key = &keys(&html)[0];
    for (path, form) in [
        ("/retries", format!("action=retry&key={key}")),
        ("/queues/mail", "action=pause".to_owned()),
        ("/queues/gone", "action=delete".to_owned()),
    ] {
        let r = Req::post(path, &format!("csrf={token}&{form}")).send(web);
        assert_eq!(r.status, 303, "{path}");
    }
    // Answered means journaled: a SIGKILL now loses none of it.
    first.kill9();
    let second = harness::Werk::start_in(&dir, &[], &[]);
    let mut c = Conn::handshake(second.addr, json!({"v": 2}), None);
    let info = c.info();
    assert_eq!(set_size(&info, "retries"), 0);
    assert_eq!(queue_size(&info, "mail"), Some(1));
    assert_eq!(queue_size(&info, "gone"), None);
    let html = page(second.web.unwrap(), "/queues/mail");
    assert!(
        html.contains("id=\"queue-state\">paused<"),
        "pause survived"
    );
    drop(second);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_web_action_whose_change_cannot_be_made_durable_is_answered_503() {
    let dir = harness::temp_dir("web-faults");
    // The first fsync (the PUSH below) succeeds; the next one (the web action's) fails.
    let w = harness::Werk::start_in(&dir, &[], &[("WERK_FAULTS", "sync-fail-after=1")]);
    let web = w.web.expect("web UI on");
    let mut c = Conn::handshake(w.addr, json!({"v": 2}), None);
    c.push_simple("queued-001", "mail");
    let token = csrf(&page(web, "/busy"));
    let r = Req::post("/queues/mail", &format!("csrf={token}&action=pause")).send(web);
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(r.body.contains("not durable"), "{}", r.body);
    // From then on writes are refused up front; pages still render.
    let r = Req::post("/queues/mail", &format!("csrf={token}&action=resume")).send(web);
    assert_eq!(r.status, 503);
    assert!(r.body.contains("writes refused"), "{}", r.body);
    assert!(page(web, "/debug").contains("failed"));
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}
