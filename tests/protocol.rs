//! Wire-level tests over raw TCP against the real `werk` binary (PROTOCOL.md §1–4, 12, 16).
//!
//! Every expected byte string here comes from PROTOCOL.md; the section is named next to it.

mod common;

use common::{
    parse_reply, parse_rfc3339, pwdhash, queue_size, rfc3339, set_size, total, unix_now,
    wait_until, Conn, Reply, Werk,
};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};

fn err(text: &str) -> Reply {
    Reply::Error(text.to_string())
}

fn ok() -> Reply {
    Reply::Simple("OK".into())
}

// ---------------------------------------------------------------------------------------------
// The helpers themselves (so that a wrong helper cannot make a wrong server look right)
// ---------------------------------------------------------------------------------------------

#[test]
fn helper_pwdhash_matches_reference_vectors() {
    // PROTOCOL.md §2.4 test vectors.
    assert_eq!(
        pwdhash("foobar", "55104dc76695721d", 1545),
        "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
    );
    assert_eq!(
        pwdhash("foobar", "55104dc76695721d", 1),
        "bda5ef54df4404655456165c27f46764614a296cdafcaffc747b7ab7cc1ea313"
    );
}

#[test]
fn helper_time_and_resp_parsing() {
    assert_eq!(rfc3339(0.0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400.5), "2000-02-29T00:00:00.500Z");
    assert_eq!(parse_rfc3339("2000-02-29T00:00:00.5Z"), Some(951_782_400.5));
    assert_eq!(
        parse_rfc3339("2000-02-29T01:00:00+01:00"),
        Some(951_782_400.0)
    );
    assert_eq!(parse_rfc3339("tomorrow"), None);
    let now = unix_now();
    let back = parse_rfc3339(&rfc3339(now)).unwrap();
    assert!((back - now).abs() < 0.001);

    assert_eq!(
        parse_reply(b"$3\r\nabc\r\n+OK\r\n"),
        Ok(Some((Reply::Bulk(b"abc".to_vec()), 9)))
    );
    assert_eq!(parse_reply(b"$3\r\nab"), Ok(None));
    assert_eq!(parse_reply(b"$-1\r\n"), Ok(Some((Reply::Null, 5))));
    assert_eq!(parse_reply(b"-ERR x\r\n"), Ok(Some((err("ERR x"), 8))));
    assert_eq!(
        parse_reply(b"+OK\n"),
        Err(()),
        "LF-only replies must be rejected"
    );
}

// ---------------------------------------------------------------------------------------------
// Handshake (§2)
// ---------------------------------------------------------------------------------------------

#[test]
fn greeting_without_password_is_exact() {
    let w = Werk::start();
    let mut c = Conn::connect(w.addr());
    let (_, raw) = c.read_raw();
    assert_eq!(String::from_utf8_lossy(&raw), "+HI {\"v\":2}\r\n");
}

#[test]
fn greeting_with_password_has_rounds_and_salt() {
    let w = Werk::options().password("secret").start();
    let mut salts = HashSet::new();
    for _ in 0..6 {
        let mut c = Conn::connect(w.addr());
        let hi = c.read_hi();
        assert_eq!(hi["v"], json!(2), "HI: {hi}");
        let i = hi["i"]
            .as_u64()
            .unwrap_or_else(|| panic!("HI has no integer i: {hi}"));
        assert!((4000..=8095).contains(&i), "i = {i} not in [4000, 8095]");
        let s = hi["s"]
            .as_str()
            .unwrap_or_else(|| panic!("HI has no string s: {hi}"));
        assert!(
            (1..=16).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "s = {s:?} is not 1-16 lowercase hex characters"
        );
        assert!(
            s == "0" || !s.starts_with('0'),
            "s = {s:?} has a leading zero (§2.1)"
        );
        salts.insert(s.to_string());
    }
    assert!(
        salts.len() >= 2,
        "the salt must be random per connection: {salts:?}"
    );
}

fn hi_params(c: &mut Conn) -> (u64, String) {
    let hi = c.read_hi();
    (
        hi["i"].as_u64().unwrap(),
        hi["s"].as_str().unwrap().to_string(),
    )
}

#[test]
fn correct_password_hash_is_accepted() {
    let w = Werk::options().password("secret").start();

    let mut c = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut c);
    let hello = json!({"v": 2, "pwdhash": pwdhash("secret", &s, i)});
    assert_eq!(c.cmd(&format!("HELLO {hello}")), ok());
    assert!(c.info().get("faktory").is_some());

    // A worker with a wid, LF-only like the Ruby client.
    let mut c = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut c);
    let hello = json!({"v": 2, "wid": "pw-worker-1", "pwdhash": pwdhash("secret", &s, i)});
    c.send_raw(format!("HELLO {hello}\n").as_bytes());
    assert_eq!(c.read(), ok());
    assert_eq!(c.cmd(r#"BEAT {"wid":"pw-worker-1"}"#), ok());
}

#[test]
fn hello_without_v_is_checked_with_one_round() {
    let w = Werk::options().password("secret").start();

    // The Python client: no `v`, one round, JSON with spaces.
    let mut c = Conn::connect(w.addr());
    let (_, s) = hi_params(&mut c);
    let one = pwdhash("secret", &s, 1);
    assert_eq!(
        c.cmd(&format!(
            r#"HELLO {{"hostname": "py", "pwdhash": "{one}"}}"#
        )),
        ok()
    );
    assert!(c.info().get("server").is_some());

    // v below 2 also means one round.
    let mut c = Conn::connect(w.addr());
    let (_, s) = hi_params(&mut c);
    let one = pwdhash("secret", &s, 1);
    assert_eq!(
        c.cmd(&format!(r#"HELLO {{"v":1,"pwdhash":"{one}"}}"#)),
        ok()
    );

    // Without `v`, the i-round hash is the wrong one.
    let mut c = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut c);
    let many = pwdhash("secret", &s, i);
    c.send(&format!(r#"HELLO {{"pwdhash":"{many}"}}"#));
    let got = c.expect_closed(Duration::from_secs(3));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR Invalid password\r\n");
}

#[test]
fn wrong_or_missing_password_is_rejected_then_closed() {
    let w = Werk::options().password("secret").start();
    for hello in [
        r#"HELLO {"v":2,"pwdhash":"0000000000000000000000000000000000000000000000000000000000000000"}"#
            .to_string(),
        r#"HELLO {"v":2}"#.to_string(),
        r#"HELLO {"v":2,"pwdhash":""}"#.to_string(),
    ] {
        let mut c = Conn::connect(w.addr());
        c.read_hi();
        c.send(&hello);
        let got = c.expect_closed(Duration::from_secs(3));
        assert_eq!(
            String::from_utf8_lossy(&got),
            "-ERR Invalid password\r\n",
            "after {hello}"
        );
    }
    // A hash computed for a different password.
    let mut c = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut c);
    c.send(&format!(
        r#"HELLO {{"v":2,"pwdhash":"{}"}}"#,
        pwdhash("Secret", &s, i)
    ));
    let got = c.expect_closed(Duration::from_secs(3));
    assert_eq!(String::from_utf8_lossy(&got), "-ERR Invalid password\r\n");
}

#[test]
fn pwdhash_is_ignored_without_a_password() {
    let w = Werk::start();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    assert_eq!(c.cmd(r#"HELLO {"v":2,"pwdhash":"whatever"}"#), ok());
}

/// The server must close before its 2 s handshake deadline, so a quick close proves it reacted
/// to the line rather than to the deadline.
const QUICK_CLOSE: Duration = Duration::from_millis(1200);

#[test]
fn first_line_not_hello_closes_without_reply() {
    let w = Werk::start();
    for first in [
        "INFO",
        r#"PUSH {"jid":"abcdefghij","jobtype":"T","args":[]}"#,
        "",
        r#"hello {"v":2}"#,
        "HELLO",
        r#"HELLO{"v":2}"#,
        r#"HELLO  {"v":2}"#,
        "\u{16}\u{3}\u{1}\u{2}",
    ] {
        let mut c = Conn::connect(w.addr());
        c.read_hi();
        let t = Instant::now();
        c.send(first);
        let got = c.expect_closed(QUICK_CLOSE);
        assert!(
            got.is_empty(),
            "{first:?} was answered with {:?}",
            String::from_utf8_lossy(&got)
        );
        assert!(
            t.elapsed() < QUICK_CLOSE,
            "{first:?}: closed only after {:?}",
            t.elapsed()
        );
    }
    // Nothing above may have pushed a job.
    let mut c = w.conn();
    assert_eq!(total(&c.info(), "total_enqueued"), 0);
}

#[test]
fn hello_with_bad_json_closes_without_reply() {
    let w = Werk::start();
    for hello in [
        "HELLO {bad",
        "HELLO {",
        r#"HELLO {"v":2,"pid":"12"}"#,
        r#"HELLO {"v":2,"pid":12.5}"#,
        r#"HELLO {"v":-1}"#,
        r#"HELLO {"v":256}"#,
        r#"HELLO {"v":2,"labels":"x"}"#,
        r#"HELLO {"v":2,"wid":5}"#,
        r#"HELLO {"v":2} trailing"#,
    ] {
        let mut c = Conn::connect(w.addr());
        c.read_hi();
        c.send(hello);
        let got = c.expect_closed(QUICK_CLOSE);
        assert!(
            got.is_empty(),
            "{hello:?} was answered with {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[test]
fn hello_accepts_nulls_and_unknown_fields() {
    let w = Werk::start();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    let hello = r#"HELLO {"v":2,"wid":null,"hostname":null,"pid":null,"labels":null,"username":null,"pwdhash":null,"extra":{"a":[1]}}"#;
    assert_eq!(c.cmd(hello), ok());
    // `"wid":""` is a producer, exactly like a null one (Go client).
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    assert_eq!(c.cmd(r#"HELLO {"v":2,"wid":"","pwdhash":"","username":"","labels":["golang"],"hostname":"h","pid":1}"#), ok());
    assert!(c.info().get("faktory").is_some());
}

#[test]
fn no_hello_within_two_seconds_closes_silently() {
    let w = Werk::start();
    let start = Instant::now();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    let got = c.expect_closed(Duration::from_secs(5));
    let waited = start.elapsed();
    assert!(
        got.is_empty(),
        "sent {:?} before closing",
        String::from_utf8_lossy(&got)
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(4000),
        "closed after {waited:?}, expected about 2 s"
    );

    // A HELLO that never finishes its line is held to the same deadline.
    let start = Instant::now();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    c.send_raw(br#"HELLO {"v":2"#);
    let got = c.expect_closed(Duration::from_secs(5));
    let waited = start.elapsed();
    assert!(got.is_empty());
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(4000),
        "unfinished HELLO: closed after {waited:?}"
    );
}

#[test]
fn no_idle_timeout_after_the_handshake() {
    let w = Werk::start();
    let mut c = w.conn();
    c.expect_silence(Duration::from_secs(3));
    assert!(c.info().get("server").is_some());
}

// ---------------------------------------------------------------------------------------------
// Framing (§1.2)
// ---------------------------------------------------------------------------------------------

#[test]
fn lf_only_lines_are_accepted_and_replies_use_crlf() {
    let w = Werk::start();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    c.send_raw(b"HELLO {\"v\":2}\n");
    let (r, raw) = c.read_raw();
    assert_eq!(r, ok());
    assert_eq!(raw, b"+OK\r\n");
    c.send_raw(b"PUSH {\"jid\":\"lfonly-0001\",\"jobtype\":\"T\",\"args\":[]}\n");
    assert_eq!(c.read(), ok());
    c.send_raw(b"FETCH default\n");
    let job = c.read().json();
    assert_eq!(job["jid"], "lfonly-0001");
    c.send_raw(b"ACK {\"jid\":\"lfonly-0001\"}\n");
    assert_eq!(c.read(), ok());
    // Mixed terminators in one write.
    c.send_raw(b"INFO\nINFO\r\n");
    c.read().json();
    c.read().json();
}

#[test]
fn pipelined_commands_are_answered_in_order() {
    let w = Werk::start();
    let mut c = w.conn();
    let mut batch = String::new();
    for j in ["pipe-000001", "pipe-000002", "pipe-000003"] {
        batch += &format!("PUSH {{\"jid\":\"{j}\",\"jobtype\":\"T\",\"args\":[]}}\r\n");
    }
    batch += "FETCH default\r\nFETCH default\r\nFETCH default\r\n";
    batch += "ACK {\"jid\":\"pipe-000001\"}\r\nBOGUS\r\nACK {\"jid\":\"pipe-000002\"}\r\n";
    batch += "ACK {\"jid\":\"pipe-000003\"}\r\nINFO\r\n";
    c.send_raw(batch.as_bytes());
    for _ in 0..3 {
        assert_eq!(c.read(), ok());
    }
    for j in ["pipe-000001", "pipe-000002", "pipe-000003"] {
        assert_eq!(c.read().json()["jid"], j);
    }
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), err("ERR unknown command BOGUS"));
    assert_eq!(c.read(), ok());
    assert_eq!(c.read(), ok());
    let info = c.read().json();
    assert_eq!(total(&info, "total_processed"), 3);
}

#[test]
fn a_command_split_over_many_writes_is_one_command() {
    let w = Werk::start();
    let mut c = Conn::connect(w.addr());
    c.read_hi();
    // HELLO in three pieces, with the CR and LF apart.
    for part in [&b"HEL"[..], b"LO {\"v\"", b":2}\r"] {
        c.send_raw(part);
        c.expect_silence(Duration::from_millis(150));
    }
    c.send_raw(b"\n");
    assert_eq!(c.read(), ok());

    // A PUSH split at every byte position: no reply until the line is complete.
    let line = b"PUSH {\"jid\":\"split-00000\",\"jobtype\":\"T\",\"args\":[1]}\r\n";
    for at in 1..line.len() {
        let jid = format!("split-{at:05}");
        let line = String::from_utf8_lossy(line).replace("split-00000", &jid);
        let (a, b) = line.as_bytes().split_at(at);
        c.send_raw(a);
        c.expect_silence(Duration::from_millis(15));
        c.send_raw(b);
        assert_eq!(c.read(), ok(), "split at {at}");
    }
    let info = c.info();
    assert_eq!(queue_size(&info, "default"), Some(line.len() as u64 - 1));
    assert_eq!(c.fetch("default").unwrap()["jid"], "split-00001");
}

// ---------------------------------------------------------------------------------------------
// Command errors (§3, §12)
// ---------------------------------------------------------------------------------------------

#[test]
fn verbs_are_case_sensitive_and_unknown_ones_are_errors() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd(r#"push {"jid":"abcdefghij","jobtype":"T","args":[]}"#),
        err("ERR unknown command push")
    );
    assert_eq!(c.cmd("Info"), err("ERR unknown command Info"));
    assert_eq!(c.cmd("PING"), err("ERR unknown command PING"));
    assert_eq!(c.cmd("AUTH x"), err("ERR unknown command AUTH"));
    assert_eq!(c.cmd(r#"HELLO {"v":2}"#), err("ERR unknown command HELLO"));
    assert_eq!(
        c.cmd("BATCH NEW {}"),
        err("ERR batch subsystem is only available in Faktory Enterprise")
    );
    assert_eq!(
        c.cmd("TRACK GET abc"),
        err("ERR tracking subsystem is only available in Faktory Enterprise")
    );
    // Still usable, and nothing was pushed.
    assert_eq!(total(&c.info(), "total_enqueued"), 0);
}

#[test]
fn missing_arguments_get_an_error_and_the_connection_survives() {
    let w = Werk::start();
    let mut c = w.conn();
    for line in [
        "ACK",
        "PUSH",
        "FAIL",
        "BEAT",
        "QUEUE",
        "QUEUE PAUSE",
        "PUSHB",
        "MUTATE",
    ] {
        match c.cmd(line) {
            Reply::Error(e) => assert!(e.starts_with("ERR "), "{line}: {e}"),
            other => panic!("{line}: expected -ERR, got {other:?}"),
        }
    }
    c.push_simple("after-errors-1", "default");
    assert_eq!(queue_size(&c.info(), "default"), Some(1));
}

#[test]
fn ack_errors_and_idempotence() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(c.cmd("ACK notjson"), err("ERR invalid ACK notjson"));
    assert_eq!(
        c.cmd(r#"ACK {"jid":5}"#),
        err(r#"ERR invalid ACK {"jid":5}"#)
    );
    assert_eq!(
        c.cmd(r#"ACK {"foo":"bar"}"#),
        err(r#"ERR invalid ACK {"foo":"bar"}"#)
    );
    assert_eq!(c.cmd(r#"ACK {"jid":"never-pushed-1"}"#), ok());
    assert_eq!(
        total(&c.info(), "total_processed"),
        0,
        "an unknown ACK counts nothing"
    );
}

#[test]
fn fail_errors() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd(r#"FAIL {"jid":"nosuchjob1","message":"x"}"#),
        err("ERR Job not found nosuchjob1")
    );
    assert_eq!(c.cmd(r#"FAIL {"message":"x"}"#), err("ERR missing JID"));
    assert_eq!(c.cmd(r#"FAIL {"jid":""}"#), err("ERR missing JID"));
    assert_eq!(c.cmd("FAIL notjson"), err("ERR invalid FAIL notjson"));
    assert_eq!(
        c.cmd(r#"FAIL {"jid":"abcdefghij","backtrace":"one line"}"#),
        err(r#"ERR invalid FAIL {"jid":"abcdefghij","backtrace":"one line"}"#)
    );
    let info = c.info();
    assert_eq!(total(&info, "total_failures"), 0);
}

#[test]
fn beat_errors() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd(r#"BEAT {"wid":"ghost-wid"}"#),
        err("ERR unknown worker ghost-wid")
    );
    assert_eq!(c.cmd("BEAT notjson"), err("ERR invalid BEAT notjson"));
}

// ---------------------------------------------------------------------------------------------
// FETCH (§3.3)
// ---------------------------------------------------------------------------------------------

#[test]
fn fetch_without_queues_is_an_error() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd("FETCH"),
        err("ERR must call fetch with at least one queue")
    );
}

#[test]
fn fetch_on_an_empty_queue_returns_null_after_about_two_seconds() {
    let w = Werk::start();
    let mut c = w.conn();
    let t = Instant::now();
    let (r, raw) = {
        c.send("FETCH empty-q other-empty");
        c.read_raw()
    };
    let waited = t.elapsed();
    assert_eq!(r, Reply::Null);
    assert_eq!(raw, b"$-1\r\n");
    assert!(
        waited >= Duration::from_millis(1500) && waited <= Duration::from_millis(3500),
        "null after {waited:?}, expected about 2 s"
    );
}

#[test]
fn fetch_takes_queues_in_the_order_given_and_fifo_within_each() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push_simple("low-00001", "low");
    c.push_simple("high-0001", "high");
    c.push_simple("low-00002", "low");
    c.push_simple("high-0002", "high");
    let order: Vec<String> = (0..4)
        .map(|_| {
            c.fetch("high low").unwrap()["jid"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(order, ["high-0001", "high-0002", "low-00001", "low-00002"]);
    c.push_simple("low-00003", "low");
    c.push_simple("high-0003", "high");
    assert_eq!(c.fetch("low high").unwrap()["jid"], "low-00003");
    // An empty name (double space) is harmless.
    assert_eq!(c.fetch("nothing  high").unwrap()["jid"], "high-0003");
}

/// There is no observable "parked" state, so the test gives a FETCH this long to reach the
/// server before pushing. If it arrives later, the FETCH finds the job at once, which the
/// latency assertions also accept.
const PARK: Duration = Duration::from_millis(300);

#[test]
fn a_push_wakes_a_blocked_fetch_at_once() {
    let w = Werk::start();
    let mut fetcher = w.conn();
    let mut producer = w.conn();
    let t0 = Instant::now();
    fetcher.send("FETCH wake-a wake-b");
    std::thread::sleep(PARK);
    let t1 = Instant::now();
    producer.push_simple("wake-00001", "wake-b"); // the second listed queue
    let job = fetcher.read().json();
    let since_push = t1.elapsed();
    assert_eq!(job["jid"], "wake-00001");
    assert!(
        since_push < Duration::from_millis(700) && t0.elapsed() < Duration::from_millis(1500),
        "woken {since_push:?} after the push ({:?} after FETCH)",
        t0.elapsed()
    );
    // The job is reserved, not left in the queue.
    let info = producer.info();
    assert_eq!(queue_size(&info, "wake-b"), Some(0));
    assert_eq!(set_size(&info, "working"), 1);
}

#[test]
fn parked_fetchers_are_served_longest_waiting_first() {
    let w = Werk::start();
    let mut first = w.conn();
    let mut second = w.conn();
    let mut producer = w.conn();
    first.send("FETCH fair");
    std::thread::sleep(PARK);
    second.send("FETCH fair");
    std::thread::sleep(PARK);
    producer.push_simple("fair-00001", "fair");
    assert_eq!(first.read().json()["jid"], "fair-00001");
    producer.push_simple("fair-00002", "fair");
    let t = Instant::now();
    assert_eq!(second.read().json()["jid"], "fair-00002");
    assert!(t.elapsed() < Duration::from_millis(700));
}

#[test]
fn a_closed_fetcher_does_not_swallow_jobs() {
    let w = Werk::start();
    let mut observer = w.conn();
    {
        let mut gone = w.conn();
        gone.send("FETCH ghostq");
        std::thread::sleep(PARK);
    } // dropped: the socket closes while its FETCH is parked
    wait_until(
        Duration::from_secs(3),
        "the closed connection is gone",
        || observer.info()["server"]["connections"] == json!(1),
    );
    observer.push_simple("ghost-00001", "ghostq");
    let info = observer.info();
    assert_eq!(
        queue_size(&info, "ghostq"),
        Some(1),
        "job went to a dead fetcher: {info}"
    );
    assert_eq!(observer.fetch("ghostq").unwrap()["jid"], "ghost-00001");
}

// ---------------------------------------------------------------------------------------------
// PUSH validation and the stored form (§3.1, §3.2, §4)
// ---------------------------------------------------------------------------------------------

#[test]
fn push_validation_errors_have_exact_texts() {
    let w = Werk::start();
    let mut c = w.conn();
    let exact: &[(&str, &str)] = &[
        (
            r#"{"jid":"short","jobtype":"T","args":[]}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jid":"abcdefg","jobtype":"T","args":[]}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jobtype":"T","args":[]}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jid":"","jobtype":"T","args":[]}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        // 3 characters but 6 bytes: too short; 4 characters, 8 bytes: long enough (below).
        (
            r#"{"jid":"ééé","jobtype":"T","args":[]}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jid":"abcdefghij","args":[]}"#,
            "ERR jobs must have a jobtype parameter",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"","args":[]}"#,
            "ERR jobs must have a jobtype parameter",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"T"}"#,
            "ERR jobs must have an args parameter",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"T","args":null}"#,
            "ERR jobs must have an args parameter",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"T","args":[],"reserve_for":86401}"#,
            "ERR jobs cannot be reserved for more than one day",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"T","args":[],"queue":"bad queue!"}"#,
            r#"ERR cannot get "bad queue!" queue: queue names must match \A[a-zA-Z0-9._-]+\z"#,
        ),
        // Check order: jid before jobtype before args (§3.1).
        (
            r#"{"jid":"x","args":null}"#,
            "ERR jobs must have a reasonable jid parameter",
        ),
        (
            r#"{"jid":"abcdefghij","args":null}"#,
            "ERR jobs must have a jobtype parameter",
        ),
        (
            r#"{"jid":"abcdefghij","jobtype":"T","reserve_for":90000}"#,
            "ERR jobs must have an args parameter",
        ),
    ];
    for (job, want) in exact {
        assert_eq!(c.cmd(&format!("PUSH {job}")), err(want), "PUSH {job}");
    }

    let at = c.cmd(r#"PUSH {"jid":"abcdefghij","jobtype":"T","args":[],"at":"tomorrow"}"#);
    let at = at.err();
    assert!(
        at.starts_with(r#"ERR invalid timestamp for 'at': "tomorrow": "#),
        "bad at: {at}"
    );

    for job in [
        r#"{"jid":"abcdefghij","jobtype":"T","args":"x"}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":{"a":1}}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"retry":"5"}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"retry":1.5}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"reserve_for":"60"}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"at":5}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"custom":[]}"#,
        r#"{"jid":"abcdefghij","jobtype":5,"args":[]}"#,
        r#"{"jid":5,"jobtype":"T","args":[]}"#,
        r#"[1,2]"#,
        r#"notjson"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[]"#,
    ] {
        let r = c.cmd(&format!("PUSH {job}"));
        assert!(
            r.err().starts_with("ERR invalid JSON: "),
            "PUSH {job}: {r:?}, expected `-ERR invalid JSON: ...`"
        );
    }

    // A failed command changes nothing.
    let info = c.info();
    assert_eq!(total(&info, "total_enqueued"), 0, "{info}");
    assert_eq!(queue_size(&info, "bad queue!"), None);

    // The boundary cases that are fine.
    for job in [
        r#"{"jid":"abcdefgh","jobtype":"T","args":[]}"#,
        r#"{"jid":"éééé","jobtype":"T","args":[]}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[],"reserve_for":86400}"#,
        r#"{"jid":"abcdefghik","jobtype":"T","args":[],"queue":"a.B_c-9"}"#,
        r#"{"jid":"abcdefghil","jobtype":"T","args":[],"at":""}"#,
        r#"{"jid":"abcdefghij","jobtype":"T","args":[]}"#, // a duplicate jid is a second copy
    ] {
        assert_eq!(c.cmd(&format!("PUSH {job}")), ok(), "PUSH {job}");
    }
    let info = c.info();
    assert_eq!(queue_size(&info, "default"), Some(5), "{info}");
    assert_eq!(queue_size(&info, "a.B_c-9"), Some(1));
}

#[test]
fn pushb_reply_shapes() {
    let w = Werk::start();
    let mut c = w.conn();
    // All good: exactly `$2\r\n{}\r\n`.
    c.send(r#"PUSHB [{"jid":"bulk-000001","jobtype":"T","args":[]},{"jid":"bulk-000002","jobtype":"T","args":[1]}]"#);
    let (_, raw) = c.read_raw();
    assert_eq!(String::from_utf8_lossy(&raw), "$2\r\n{}\r\n");

    // Mixed: one entry per failed jid, messages without the `ERR ` prefix; "" for an empty jid.
    let r = c.cmd(concat!(
        r#"PUSHB [{"jid":"short","jobtype":"T","args":[]},"#,
        r#"{"jid":"bulk-000003","jobtype":"","args":[]},"#,
        r#"{"jid":"","jobtype":"T","args":[]},"#,
        r#"{"jid":"bulk-000004","jobtype":"T"},"#,
        r#"{"jid":"bulk-000005","jobtype":"T","args":[],"reserve_for":864000},"#,
        r#"{"jid":"bulk-000006","jobtype":"T","args":[]}]"#
    ));
    assert_eq!(
        r.json(),
        json!({
            "short": "jobs must have a reasonable jid parameter",
            "bulk-000003": "jobs must have a jobtype parameter",
            "": "jobs must have a reasonable jid parameter",
            "bulk-000004": "jobs must have an args parameter",
            "bulk-000005": "jobs cannot be reserved for more than one day",
        })
    );
    // The whole array must parse, or nothing is pushed.
    for bad in [
        r#"{"jid":"bulk-000007","jobtype":"T","args":[]}"#,
        "[1,2]",
        "[{]",
        "notjson",
    ] {
        let r = c.cmd(&format!("PUSHB {bad}"));
        assert!(
            r.err().starts_with("ERR invalid JSON: "),
            "PUSHB {bad}: {r:?}"
        );
    }
    let info = c.info();
    assert_eq!(queue_size(&info, "default"), Some(3), "{info}");
    let jids: Vec<Value> = (0..3)
        .map(|_| c.fetch("default").unwrap()["jid"].clone())
        .collect();
    assert_eq!(
        jids,
        [
            json!("bulk-000001"),
            json!("bulk-000002"),
            json!("bulk-000006")
        ]
    );
}

fn field<'a>(job: &'a Value, name: &str) -> &'a str {
    job[name]
        .as_str()
        .unwrap_or_else(|| panic!("job has no string {name}: {job}"))
}

#[test]
fn fetched_job_is_compact_in_faktory_field_order() {
    let w = Werk::start();
    let mut c = w.conn();

    // Python-style spacing, a legacy priority and an unknown field.
    c.send(r#"PUSH {"jid": "canon-0001", "jobtype": "Send", "args": [1, "a b, c: d", {"a": [true, null]}], "priority": 9, "unknown_field": {"x": 1}}"#);
    assert_eq!(c.read(), ok());
    c.send("FETCH default");
    let text = c.read().bulk_str().to_string();
    let job: Value = serde_json::from_str(&text).unwrap();
    let (created, enqueued) = (field(&job, "created_at"), field(&job, "enqueued_at"));
    assert_eq!(
        text,
        format!(
            r#"{{"retry":25,"jid":"canon-0001","queue":"default","jobtype":"Send","created_at":"{created}","enqueued_at":"{enqueued}","args":[1,"a b, c: d",{{"a":[true,null]}}]}}"#
        )
    );
    for ts in [created, enqueued] {
        assert!(ts.ends_with('Z'), "{ts} is not UTC with Z");
        let t = parse_rfc3339(ts).unwrap_or_else(|| panic!("{ts} is not RFC 3339"));
        assert!((t - unix_now()).abs() < 10.0, "{ts} is not now");
    }

    // Every optional field, in a scrambled order.
    c.push(&json!({
        "backtrace": 5, "reserve_for": 120, "args": [], "at": "2000-01-01T00:00:00Z",
        "created_at": "2001-02-03T04:05:06Z", "jobtype": "T", "queue": "q1",
        "jid": "canon-0002", "custom": {"k": "v"}, "retry": 3
    }));
    c.send("FETCH q1");
    let text = c.read().bulk_str().to_string();
    let job: Value = serde_json::from_str(&text).unwrap();
    let enqueued = field(&job, "enqueued_at");
    assert_eq!(
        text,
        format!(
            r#"{{"retry":3,"custom":{{"k":"v"}},"jid":"canon-0002","queue":"q1","jobtype":"T","created_at":"2001-02-03T04:05:06Z","enqueued_at":"{enqueued}","at":"2000-01-01T00:00:00Z","args":[],"reserve_for":120,"backtrace":5}}"#
        )
    );

    // Empty, zero and null optional fields are left out; retry:null means 25; queue "" default.
    c.send(r#"PUSH {"jid":"canon-0003","jobtype":"T","args":[],"queue":"","custom":null,"reserve_for":0,"backtrace":0,"retry":null,"at":"","created_at":""}"#);
    assert_eq!(c.read(), ok());
    c.send(r#"PUSH {"jid":"canon-0004","jobtype":"T","args":[],"custom":{},"retry":0}"#);
    assert_eq!(c.read(), ok());
    for (jid, retry) in [("canon-0003", 25), ("canon-0004", 0)] {
        c.send("FETCH default");
        let text = c.read().bulk_str().to_string();
        let job: Value = serde_json::from_str(&text).unwrap();
        let (created, enqueued) = (field(&job, "created_at"), field(&job, "enqueued_at"));
        assert_eq!(
            text,
            format!(
                r#"{{"retry":{retry},"jid":"{jid}","queue":"default","jobtype":"T","created_at":"{created}","enqueued_at":"{enqueued}","args":[]}}"#
            )
        );
    }

    // Numbers in args keep their text (werk decision A5), only whitespace goes.
    c.send(r#"PUSH {"jid":"canon-0005","jobtype":"T","args":[1.0, 12345678901234567890, -0.5e3]}"#);
    assert_eq!(c.read(), ok());
    let text = c.cmd("FETCH default").bulk_str().to_string();
    assert!(
        text.contains(r#""args":[1.0,12345678901234567890,-0.5e3]"#),
        "args text changed: {text}"
    );
}

// ---------------------------------------------------------------------------------------------
// BEAT and worker states (§3.6, §6)
// ---------------------------------------------------------------------------------------------

const QUIET: &str = "$17\r\n{\"state\":\"quiet\"}\r\n";
const TERMINATE: &str = "$21\r\n{\"state\":\"terminate\"}\r\n";

fn beat(c: &mut Conn, payload: &str) -> String {
    c.send(&format!("BEAT {payload}"));
    String::from_utf8_lossy(&c.read_raw().1).into_owned()
}

#[test]
fn beat_replies_and_states_only_move_forward() {
    let w = Werk::start();
    let mut c = w.worker("beat-w-1");
    assert_eq!(beat(&mut c, r#"{"wid":"beat-w-1"}"#), "+OK\r\n");
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","rss_kb":12345}"#),
        "+OK\r\n"
    );
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":"running"}"#),
        "+OK\r\n"
    );
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":"quiet"}"#),
        QUIET
    );
    // Never backward.
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":"running"}"#),
        QUIET
    );
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":""}"#),
        QUIET
    );
    assert_eq!(beat(&mut c, r#"{"wid":"beat-w-1"}"#), QUIET);
    // The lookup uses the payload's wid, from any connection.
    let mut p = w.conn();
    assert_eq!(beat(&mut p, r#"{"wid":"beat-w-1"}"#), QUIET);
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":"terminate"}"#),
        TERMINATE
    );
    assert_eq!(
        beat(&mut c, r#"{"wid":"beat-w-1","current_state":"quiet"}"#),
        TERMINATE
    );
    assert_eq!(beat(&mut c, r#"{"wid":"beat-w-1"}"#), TERMINATE);

    // Straight from running to terminate.
    let mut d = w.worker("beat-w-2");
    assert_eq!(
        beat(&mut d, r#"{"wid":"beat-w-2","current_state":"terminate"}"#),
        TERMINATE
    );
    // Another worker is unaffected.
    let mut e = w.worker("beat-w-3");
    assert_eq!(beat(&mut e, r#"{"wid":"beat-w-3"}"#), "+OK\r\n");
}

#[test]
fn a_quiet_worker_gets_no_jobs_on_any_of_its_connections() {
    let w = Werk::start();
    let mut p = w.conn();
    p.push_simple("quietjob-01", "qq");
    let mut c1 = w.worker("quiet-w");
    let mut c2 = w.worker("quiet-w"); // a second connection of the same process
    assert_eq!(
        beat(&mut c1, r#"{"wid":"quiet-w","current_state":"quiet"}"#),
        QUIET
    );
    for c in [&mut c1, &mut c2] {
        let t = Instant::now();
        assert_eq!(c.cmd("FETCH qq"), Reply::Null);
        assert!(
            t.elapsed() >= Duration::from_millis(1500),
            "null came after {:?}",
            t.elapsed()
        );
    }
    assert_eq!(queue_size(&p.info(), "qq"), Some(1));
    // A running consumer still gets it.
    let mut other = w.worker("running-w");
    assert_eq!(other.fetch("qq").unwrap()["jid"], "quietjob-01");
}

#[test]
fn a_reconnecting_worker_starts_running_again() {
    // §6.1: when the last connection of a wid closes, its registration and state go.
    let w = Werk::start();
    let mut observer = w.conn();
    {
        let mut c = w.worker("comeback-w");
        assert_eq!(
            beat(
                &mut c,
                r#"{"wid":"comeback-w","current_state":"terminate"}"#
            ),
            TERMINATE
        );
    }
    wait_until(
        Duration::from_secs(3),
        "the worker's connection is closed",
        || observer.info()["server"]["connections"] == json!(1),
    );
    assert_eq!(
        observer.cmd(r#"BEAT {"wid":"comeback-w"}"#),
        err("ERR unknown worker comeback-w")
    );
    let mut c = w.worker("comeback-w");
    assert_eq!(beat(&mut c, r#"{"wid":"comeback-w"}"#), "+OK\r\n");
}

#[test]
fn end_closes_without_a_reply() {
    let w = Werk::start();
    for line in ["END", "END now please"] {
        let mut c = w.conn();
        c.send(line);
        let got = c.expect_closed(Duration::from_secs(2));
        assert!(
            got.is_empty(),
            "{line}: got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
    let mut c = w.conn();
    assert!(c.info().get("faktory").is_some());
}

// ---------------------------------------------------------------------------------------------
// QUEUE and MUTATE errors (§3.11, §3.12)
// ---------------------------------------------------------------------------------------------

#[test]
fn queue_latency_reports_seconds_since_the_oldest_enqueue() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push_simple("latency-001", "lat");
    let first = c.cmd("QUEUE LATENCY lat idle").json();
    // Go writes `0`; werk may write `0.0`. Clients parse JSON numbers, so compare numerically.
    assert_eq!(first["idle"].as_f64(), Some(0.0), "{first}");
    let l0 = first["lat"]
        .as_f64()
        .unwrap_or_else(|| panic!("lat is not a number: {first}"));
    assert!((0.0..5.0).contains(&l0), "{first}");
    let latency = |c: &mut Conn| c.cmd("QUEUE latency lat").json()["lat"].as_f64().unwrap();
    wait_until(Duration::from_secs(4), "latency reaches 0.5 s", || {
        latency(&mut c) >= 0.5
    });
    // The oldest job is what counts: a fresh push does not lower the figure ...
    c.push_simple("latency-002", "lat");
    let with_both = latency(&mut c);
    assert!(with_both >= 0.5, "latency fell to {with_both} after a push");
    // ... and once the oldest is fetched, it is the fresh job's age.
    assert_eq!(c.fetch("lat").unwrap()["jid"], "latency-001");
    let fresh = latency(&mut c);
    assert!(fresh < 0.4, "latency {fresh} after the old job left");
    // No names: an empty object.
    c.send("QUEUE LATENCY");
    assert_eq!(c.read().bulk_str(), "{}");
}

#[test]
fn queue_command_errors() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd("QUEUE LATENCY *"),
        err("ERR QUEUE LATENCY does not support wildcards")
    );
    assert_eq!(
        c.cmd("QUEUE FOO x"),
        err("ERR no such QUEUE subcommand: FOO")
    );
    assert_eq!(
        c.cmd("QUEUE foo x"),
        err("ERR no such QUEUE subcommand: FOO")
    );
    // Lower-case subcommands work.
    c.push_simple("qcase-0001", "qcase");
    assert_eq!(c.cmd("QUEUE pause qcase"), ok());
    assert_eq!(c.cmd("QUEUE Resume qcase"), ok());
    assert_eq!(c.cmd("QUEUE PAUSE no-such-queue"), ok());
    assert_eq!(c.fetch("qcase").unwrap()["jid"], "qcase-0001");
}

#[test]
fn mutate_errors() {
    let w = Werk::start();
    let mut c = w.conn();
    assert_eq!(
        c.cmd(r#"MUTATE {"cmd":"explode","target":"retries"}"#),
        err("ERR unknown mutate operation")
    );
    assert_eq!(
        c.cmd(r#"MUTATE {"cmd":"kill","target":"working"}"#),
        err("ERR invalid target for mutation command")
    );
    assert_eq!(
        c.cmd(r#"MUTATE {"cmd":"requeue","target":"default"}"#),
        err("ERR invalid target for mutation command")
    );
    // A bad cmd with a bad target reports the cmd.
    assert_eq!(
        c.cmd(r#"MUTATE {"cmd":"explode","target":"working"}"#),
        err("ERR unknown mutate operation")
    );
    let r = c.cmd("MUTATE notjson");
    assert!(r.err().starts_with("ERR "), "{r:?}");
    // werk decision A8: spaces are accepted.
    assert_eq!(
        c.cmd(r#"MUTATE {"cmd": "clear", "target": "retries"}"#),
        ok()
    );
    assert_eq!(c.cmd(r#"MUTATE {"cmd":"discard","target":"dead"}"#), ok());
}

fn schedule(c: &mut Conn, jid: &str, jobtype: &str, arg: &str) {
    let at = rfc3339(unix_now() + 3600.0);
    c.push(&json!({"jid": jid, "jobtype": jobtype, "args": [arg], "queue": "mq", "at": at}));
}

#[test]
fn mutate_filters_follow_faktory_semantics() {
    let w = Werk::start();
    let mut c = w.conn();
    schedule(&mut c, "mut-j1-0001", "A", "fizz");
    schedule(&mut c, "mut-j2-0002", "A", "buzz");
    schedule(&mut c, "mut-j3-0003", "B", "fuzz");
    schedule(&mut c, "mut-j4-0004", "B", "f*zz");
    let info = c.info();
    assert_eq!(set_size(&info, "scheduled"), 4);
    assert_eq!(queue_size(&info, "mq").unwrap_or(0), 0);

    let requeue = |filter: Value| json!({"cmd":"requeue","target":"scheduled","filter":filter});

    // jids win over jobtype (which would match nothing here).
    c.mutate(&requeue(json!({"jids":["mut-j1-0001"],"jobtype":"B"})));
    assert_eq!(c.fetch("mq").unwrap()["jid"], "mut-j1-0001");
    assert_eq!(set_size(&c.info(), "scheduled"), 3);

    // A pattern must cover the whole text: without `*` it matches nothing.
    c.mutate(&requeue(json!({"regexp": r#""args":["fuzz"]"#})));
    assert_eq!(set_size(&c.info(), "scheduled"), 3);

    // A Redis glob over the stored compact JSON: character class and escaped brackets.
    c.mutate(&requeue(json!({"regexp": r#"*"args":\["f[iu]zz"\]*"#})));
    let info = c.info();
    assert_eq!(set_size(&info, "scheduled"), 2, "{info}");
    assert_eq!(c.fetch("mq").unwrap()["jid"], "mut-j3-0003");

    // jobtype AND pattern: `?` matches buzz, but the jobtype must also match.
    c.mutate(&requeue(
        json!({"jobtype":"B","regexp": r#"*"args":\["?uzz"\]*"#}),
    ));
    assert_eq!(set_size(&c.info(), "scheduled"), 2);
    c.mutate(&requeue(
        json!({"jobtype":"A","regexp": r#"*"args":\["?uzz"\]*"#}),
    ));
    assert_eq!(set_size(&c.info(), "scheduled"), 1);
    assert_eq!(c.fetch("mq").unwrap()["jid"], "mut-j2-0002");

    // `\*` is a literal star. Kill moves to dead.
    schedule(&mut c, "mut-j5-0005", "B", "fozz");
    c.mutate(&json!({"cmd":"kill","target":"scheduled","filter":{"regexp": r#"*"f\*zz"*"#}}));
    let info = c.info();
    assert_eq!(set_size(&info, "scheduled"), 1, "{info}");
    assert_eq!(set_size(&info, "dead"), 1, "{info}");

    // jobtype alone is an exact match.
    c.mutate(&json!({"cmd":"kill","target":"scheduled","filter":{"jobtype":"Bx"}}));
    assert_eq!(set_size(&c.info(), "scheduled"), 1);
    c.mutate(&json!({"cmd":"kill","target":"scheduled","filter":{"jobtype":"B"}}));
    let info = c.info();
    assert_eq!(
        (set_size(&info, "scheduled"), set_size(&info, "dead")),
        (0, 2),
        "{info}"
    );

    // Requeue from dead keeps the payload; killed jobs carry no failure.
    c.mutate(&json!({"cmd":"requeue","target":"dead","filter":{"jids":["mut-j4-0004"]}}));
    let job = c.fetch("mq").unwrap();
    assert_eq!(job["jid"], "mut-j4-0004");
    assert!(
        job.get("failure").is_none(),
        "kill must not add failure data: {job}"
    );

    // An empty filter object matches everything; discard without a filter empties the set.
    c.mutate(&json!({"cmd":"discard","target":"dead","filter":{}}));
    assert_eq!(set_size(&c.info(), "dead"), 0);
    schedule(&mut c, "mut-j6-0006", "C", "x");
    schedule(&mut c, "mut-j7-0007", "C", "y");
    c.mutate(&json!({"cmd":"discard","target":"scheduled"}));
    assert_eq!(set_size(&c.info(), "scheduled"), 0);
}

// ---------------------------------------------------------------------------------------------
// INFO (§8)
// ---------------------------------------------------------------------------------------------

#[test]
fn info_has_faktory_layout() {
    let w = Werk::start();
    let mut c = w.conn();
    let info = c.info();
    let keys: HashSet<&str> = info
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        HashSet::from(["now", "server_utc_time", "faktory", "server"]),
        "{info}"
    );

    let now = parse_rfc3339(info["now"].as_str().unwrap()).expect("now is RFC 3339");
    assert!((now - unix_now()).abs() < 5.0);
    let utc = info["server_utc_time"].as_str().unwrap();
    let b = utc.as_bytes();
    assert!(
        b.len() == 12
            && utc.ends_with(" UTC")
            && b[2] == b':'
            && b[5] == b':'
            && [0, 1, 3, 4, 6, 7].iter().all(|&i| b[i].is_ascii_digit()),
        "server_utc_time {utc:?} is not HH:MM:SS UTC"
    );

    let f = &info["faktory"];
    for k in [
        "total_failures",
        "total_processed",
        "total_enqueued",
        "total_queues",
    ] {
        assert!(f[k].is_u64(), "faktory.{k}: {info}");
    }
    assert!(f["queues"].is_object());
    for s in ["scheduled", "retries", "dead", "working"] {
        assert!(f["sets"][s].is_u64(), "faktory.sets.{s}: {info}");
    }
    for t in ["Busy", "Workers", "Scheduled", "Retries", "Dead"] {
        assert!(
            f["tasks"][t]["size"].is_u64(),
            "faktory.tasks.{t}.size: {info}"
        );
    }

    let s = &info["server"];
    let desc = s["description"].as_str().unwrap();
    assert!(!desc.contains("Enterprise"), "description {desc:?}");
    let version = s["faktory_version"].as_str().unwrap();
    let parts: Vec<u64> = version
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("version {version:?} is not semver"))
        })
        .collect();
    assert!(
        parts.len() == 3 && parts[0] == 1 && parts[1] >= 8,
        "version {version}"
    );
    for k in ["uptime", "connections", "command_count", "used_memory_mb"] {
        assert!(s[k].is_u64(), "server.{k}: {info}");
    }
    assert_eq!(s["connections"], json!(1));

    // Sizes follow the state.
    c.push_simple("info-00001", "iq");
    c.push_simple("info-00002", "iq");
    c.push_simple("info-00003", "iq2");
    c.fetch("iq2").unwrap();
    let info = c.info();
    assert_eq!(queue_size(&info, "iq"), Some(2));
    assert_eq!(
        queue_size(&info, "iq2"),
        Some(0),
        "a drained queue stays listed: {info}"
    );
    assert_eq!(total(&info, "total_enqueued"), 2);
    assert_eq!(total(&info, "total_queues"), 2);
    assert_eq!(set_size(&info, "working"), 1);
    assert_eq!(info["faktory"]["tasks"]["Busy"]["size"], json!(1));

    // Unknown verbs are not counted in command_count; INFO's own cost is measured, not assumed.
    let count = |c: &mut Conn| c.info()["server"]["command_count"].as_u64().unwrap();
    let a = count(&mut c);
    let b = count(&mut c);
    for _ in 0..3 {
        assert_eq!(c.cmd("NOPE"), err("ERR unknown command NOPE"));
    }
    let d = count(&mut c);
    assert_eq!(d - b, b - a, "unknown verbs changed command_count");
    c.cmd(r#"ACK {"jid":"nothing-here"}"#).assert_ok();
    let e = count(&mut c);
    assert_eq!(e - d, (b - a) + 1, "ACK was not counted");
}

// ---------------------------------------------------------------------------------------------
// Abuse: long lines, bad bytes, EOF, slow readers
// ---------------------------------------------------------------------------------------------

#[test]
fn a_line_over_the_limit_gets_an_error_then_close() {
    let mut w = Werk::options().arg("--line-bytes-max").arg("1024").start();
    // Under the limit is fine.
    let mut c = w.conn();
    let pad = "p".repeat(900);
    c.push(&json!({"jid":"under-limit-1","jobtype":"T","args":[pad]}));

    let mut line = b"PUSH ".to_vec();
    line.extend(std::iter::repeat_n(b'x', 2000));
    line.push(b'\n');
    c.send_raw(&line);
    match c.try_read() {
        Ok(Reply::Error(e)) => assert!(e.starts_with("ERR "), "{e}"),
        other => panic!("expected -ERR for a 2006-byte line, got {other:?}"),
    }
    let rest = c.expect_closed(Duration::from_secs(3));
    assert!(
        rest.is_empty(),
        "more bytes after the error: {:?}",
        String::from_utf8_lossy(&rest)
    );
    w.assert_alive();
    let mut other = w.conn();
    assert_eq!(queue_size(&other.info(), "default"), Some(1));
}

#[test]
fn the_line_limit_applies_before_a_newline_arrives() {
    let mut w = Werk::options().arg("--line-bytes-max").arg("1024").start();
    let mut c = w.conn();
    c.send_raw(&vec![b'y'; 4096]); // never a newline
    match c.try_read() {
        Ok(Reply::Error(e)) => assert!(e.starts_with("ERR "), "{e}"),
        other => panic!("expected -ERR once 1024 bytes had no newline, got {other:?}"),
    }
    c.expect_closed(Duration::from_secs(3));
    w.assert_alive();
}

#[test]
fn invalid_utf8_and_nul_bytes_are_errors_not_crashes() {
    let mut w = Werk::start();
    let bad: &[&[u8]] = &[
        b"PUSH {\"jid\":\"utf8-00001\",\"jobtype\":\"T\",\"args\":[\"\xff\xfe\"]}\r\n",
        b"PUSH {\"jid\":\"utf8-00002\",\"jobtype\":\"T\xc3\",\"args\":[]}\r\n",
        b"PUSH {\"jid\":\"nul-000001\",\"jobtype\":\"T\",\"args\":[\"a\x00b\"]}\r\n",
        b"PUSH {\"jid\":\"nul-000002\",\"jobtype\":\"T\",\"args\":[]}\x00\r\n",
    ];
    for line in bad {
        let mut c = w.conn();
        c.send_raw(line);
        match c.try_read() {
            Ok(Reply::Error(e)) => assert!(e.starts_with("ERR "), "{e}"),
            other => panic!(
                "{:?}: expected -ERR, got {other:?}",
                String::from_utf8_lossy(line)
            ),
        }
    }
    // Garbage as a verb: the reply must still be an error line (bytes may be echoed).
    let mut c = w.conn();
    c.send_raw(b"\xff\xfe\x00\x01 x\r\n");
    let mut line = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !line.ends_with(b"\r\n") && Instant::now() < deadline {
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut c.stream(), &mut byte) {
            Ok(1) => line.push(byte[0]),
            _ => break,
        }
    }
    assert!(line.starts_with(b"-ERR "), "garbage verb got {line:?}");
    w.assert_alive();
    let mut c = w.conn();
    assert_eq!(total(&c.info(), "total_enqueued"), 0);
}

#[test]
fn eof_mid_line_leaves_the_server_serving() {
    let mut w = Werk::start();
    let mut c = w.conn();
    c.send_raw(br#"PUSH {"jid":"eof-000001","jobtype":"T","#);
    c.shutdown_write();
    let got = c.expect_closed(Duration::from_secs(3));
    assert!(
        got.is_empty(),
        "a half line was answered: {:?}",
        String::from_utf8_lossy(&got)
    );
    // Mid-handshake, too.
    let mut h = Conn::connect(w.addr());
    h.read_hi();
    h.send_raw(b"HELLO {\"v\"");
    drop(h);
    w.assert_alive();
    let mut c = w.conn();
    assert_eq!(total(&c.info(), "total_enqueued"), 0);
}

#[test]
fn a_client_that_does_not_read_loses_nothing() {
    const N: usize = 3000;
    let w = Werk::start();
    let mut c = w.conn();
    let pad = "z".repeat(2000);
    let mut batch = Vec::new();
    for i in 0..N {
        batch.extend_from_slice(
            format!("PUSH {{\"jid\":\"bp-{i:08}\",\"jobtype\":\"T\",\"args\":[\"{pad}\"]}}\r\n")
                .as_bytes(),
        );
    }
    for _ in 0..N {
        batch.extend_from_slice(b"FETCH default\r\n");
    }
    // About 6 MB of requests and 6 MB of replies: far more than the socket buffers hold.
    let mut writer = c.stream().try_clone().unwrap();
    let handle = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &batch));
    // Do not read for a while: the server has to hold back rather than drop or buffer forever.
    let start = Instant::now();
    while !handle.is_finished() && start.elapsed() < Duration::from_millis(1500) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for i in 0..N {
        assert_eq!(c.read(), ok(), "PUSH reply {i}");
    }
    for i in 0..N {
        let job = c.read().json();
        assert_eq!(
            job["jid"],
            format!("bp-{i:08}"),
            "FETCH reply {i} out of order"
        );
        assert_eq!(job["args"][0].as_str().map(str::len), Some(2000));
    }
    handle.join().unwrap().expect("all requests written");
    let info = c.info();
    assert_eq!(queue_size(&info, "default"), Some(0));
    assert_eq!(set_size(&info, "working"), N as u64);
}

// ---------------------------------------------------------------------------------------------
// The binary's interface
// ---------------------------------------------------------------------------------------------

fn werk_command() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_werk"));
    cmd.env_remove("FAKTORY_PASSWORD")
        .env_remove("FAKTORY_ENV")
        .env_remove("FAKTORY_SKIP_PASSWORD")
        .stdin(std::process::Stdio::null());
    cmd
}

#[test]
fn version_flag_prints_the_version_and_exits_zero() {
    let out = werk_command().arg("-v").output().unwrap();
    assert!(out.status.success(), "{:?}", out.status);
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")),
        "-v printed {text:?}"
    );
}

#[test]
fn bad_flags_and_unsafe_environments_refuse_to_start() {
    let dir = common::TempDir::new("refuse");
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = werk_command();
        cmd.args(["-b", "127.0.0.1:0", "-w", "127.0.0.1:0", "-d"])
            .arg(dir.path())
            .args(["-c", "/nonexistent/werk-test-config"])
            .args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        // These must exit by themselves; a server that starts would run until killed.
        let mut child = cmd
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
                return (status, err);
            }
            if start.elapsed() > Duration::from_secs(5) {
                let _ = child.kill();
                let _ = child.wait();
                panic!("werk {args:?} {env:?} started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let (status, err) = run(&["-e", "bogus"], &[]);
    assert!(
        !status.success() && !err.is_empty(),
        "-e bogus: {status:?} {err:?}"
    );
    let (status, err) = run(&["-e", "production"], &[]);
    assert!(
        !status.success() && !err.is_empty(),
        "production without a password: {status:?} {err:?}"
    );
    let (status, _) = run(&["-e", "staging"], &[("FAKTORY_ENV", "development")]);
    assert!(!status.success(), "-e staging must win over FAKTORY_ENV");
    let (status, _) = run(&[], &[("FAKTORY_ENV", "production")]);
    assert!(
        !status.success(),
        "FAKTORY_ENV=production without a password"
    );
}

#[test]
fn production_runs_with_a_password_or_an_explicit_skip() {
    let w = Werk::options()
        .arg("-e")
        .arg("production")
        .password("prod-pw")
        .start();
    let mut c = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut c);
    let hello = json!({"v": 2, "pwdhash": pwdhash("prod-pw", &s, i)});
    assert_eq!(c.cmd(&format!("HELLO {hello}")), ok());

    let w = Werk::options()
        .arg("-e")
        .arg("production")
        .env("FAKTORY_SKIP_PASSWORD", "1")
        .start();
    let mut c = Conn::connect(w.addr());
    assert_eq!(c.read_hi(), json!({"v": 2}));
}

#[test]
fn the_password_never_appears_in_the_logs() {
    const PW: &str = "pw-Zq81-never-logged";
    let mut w = Werk::options().password(PW).arg("-l").arg("debug").start();
    let mut good = Conn::connect(w.addr());
    let (i, s) = hi_params(&mut good);
    good.cmd(&format!(
        r#"HELLO {{"v":2,"pwdhash":"{}"}}"#,
        pwdhash(PW, &s, i)
    ))
    .assert_ok();
    good.push_simple("logged-job-1", "default");
    let mut bad = Conn::connect(w.addr());
    bad.read_hi();
    bad.send(&format!(r#"HELLO {{"v":2,"pwdhash":"{PW}"}}"#));
    bad.expect_closed(Duration::from_secs(3));
    w.assert_alive();
    let logs = w.logs();
    assert!(
        logs.iter()
            .any(|l| l.contains(&format!("listening on {}", w.addr()))),
        "no startup line in {logs:?}"
    );
    let leaks: Vec<_> = logs.iter().filter(|l| l.contains(PW)).collect();
    assert!(leaks.is_empty(), "the password was logged: {leaks:?}");
}
