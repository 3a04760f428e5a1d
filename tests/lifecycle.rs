//! Job lifecycle through the real binary: ACK, FAIL and the retry policy, the retry and dead
//! sets, reservations, scheduling and FLUSH (PROTOCOL.md §3.4, §3.5, §3.8, §4.3, §5).

mod common;

use common::{
    parse_rfc3339, queue_size, rfc3339, set_size, total, unix_now, wait_until, Conn, Reply, Werk,
};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn requeue_all(c: &mut Conn, target: &str) {
    c.mutate(&json!({"cmd":"requeue","target":target}));
}

fn requeue_jid(c: &mut Conn, target: &str, jid: &str) {
    c.mutate(&json!({"cmd":"requeue","target":target,"filter":{"jids":[jid]}}));
}

/// FETCH that must return `jid`, with the exact reply text.
#[track_caller]
fn fetch_text(c: &mut Conn, queue: &str, jid: &str) -> (Value, String) {
    let text = c.cmd(&format!("FETCH {queue}")).bulk_str().to_string();
    let job: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(job["jid"], jid, "{text}");
    (job, text)
}

#[track_caller]
fn ts(v: &Value) -> f64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a timestamp string: {v}"));
    assert!(s.ends_with('Z'), "{s} is not UTC");
    parse_rfc3339(s).unwrap_or_else(|| panic!("{s} is not RFC 3339"))
}

#[test]
fn ack_removes_the_job_counts_once_and_works_from_any_connection() {
    let w = Werk::start();
    let mut a = w.conn();
    let mut b = w.conn();
    a.push_simple("acked-00001", "default");
    a.fetch("default").unwrap();
    assert_eq!(set_size(&a.info(), "working"), 1);
    b.ack("acked-00001"); // the reservation is keyed by jid, not by connection
    b.ack("acked-00001"); // idempotent
    let info = a.info();
    assert_eq!(set_size(&info, "working"), 0);
    assert_eq!(total(&info, "total_processed"), 1, "{info}");
    assert_eq!(total(&info, "total_failures"), 0);
    assert_eq!(queue_size(&info, "default"), Some(0));
    // A FAIL after the ACK finds nothing.
    assert_eq!(
        a.cmd(r#"FAIL {"jid":"acked-00001"}"#),
        Reply::Error("ERR Job not found acked-00001".into())
    );
}

#[test]
fn retry_zero_failure_discards_the_job() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push(&json!({"jid":"noretry-0001","jobtype":"T","args":[],"retry":0}));
    c.fetch("default").unwrap();
    c.fail(&json!({"jid":"noretry-0001","errtype":"E","message":"boom"}));
    let info = c.info();
    assert_eq!(set_size(&info, "retries"), 0, "{info}");
    assert_eq!(set_size(&info, "dead"), 0, "{info}");
    assert_eq!(set_size(&info, "working"), 0, "{info}");
    assert_eq!(total(&info, "total_failures"), 1, "{info}");
    assert_eq!(
        total(&info, "total_processed"),
        1,
        "a failure counts as processed: {info}"
    );
    // Nothing to bring back.
    requeue_all(&mut c, "retries");
    requeue_all(&mut c, "dead");
    assert_eq!(queue_size(&c.info(), "default"), Some(0));
    assert_eq!(
        c.cmd(r#"FAIL {"jid":"noretry-0001"}"#),
        Reply::Error("ERR Job not found noretry-0001".into())
    );
}

#[test]
fn retry_minus_one_failure_goes_straight_to_dead() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push(&json!({"jid":"todead-0001","jobtype":"T","args":["x"],"retry":-1}));
    c.fetch("default").unwrap();
    let before = unix_now();
    c.fail(&json!({"jid":"todead-0001","errtype":"KeyError","message":"no key","backtrace":["a.rb:1","b.rb:2"]}));
    let info = c.info();
    assert_eq!(set_size(&info, "dead"), 1, "{info}");
    assert_eq!(set_size(&info, "retries"), 0, "{info}");
    assert_eq!(info["faktory"]["tasks"]["Dead"]["size"], json!(1), "{info}");
    assert_eq!(total(&info, "total_failures"), 1);

    requeue_jid(&mut c, "dead", "todead-0001");
    assert_eq!(set_size(&c.info(), "dead"), 0);
    let (job, text) = fetch_text(&mut c, "default", "todead-0001");
    let failed_at = job["failure"]["failed_at"].as_str().unwrap().to_string();
    assert!((ts(&job["failure"]["failed_at"]) - before).abs() < 5.0);
    assert!(
        text.starts_with(&format!(
            r#"{{"retry":-1,"failure":{{"failed_at":"{failed_at}","message":"no key","errtype":"KeyError","backtrace":["a.rb:1","b.rb:2"],"retry_count":0,"remaining":-1}},"jid":"todead-0001","#
        )),
        "failure object (fields and order of §4.3): {text}"
    );
}

#[test]
fn retries_count_down_then_the_job_dies() {
    let w = Werk::start();
    let mut c = w.conn();
    let mut other = w.conn(); // FAIL works from any connection
    c.push(&json!({"jid":"countdown-01","jobtype":"T","args":[],"retry":3}));
    let mut first_failed_at = String::new();
    let mut sent = 0.0;
    // retry = 3: it runs at most 4 times; failures 1-3 go to retries, the 4th to dead. Each
    // fetch after the first shows the failure data of the previous attempt.
    for attempt in 0..4u64 {
        let (job, text) = fetch_text(&mut c, "default", "countdown-01");
        if attempt > 0 {
            let k = attempt - 1; // retry_count of the previous failure
            let f = &job["failure"];
            assert_eq!(f["retry_count"], json!(k), "{text}");
            assert_eq!(f["remaining"], json!(3 - k), "{text}");
            assert_eq!(f["message"], json!(format!("attempt {k}")));
            assert_eq!(f["errtype"], json!("Boom"));
            assert!(
                f.get("backtrace").is_none(),
                "no backtrace was sent: {text}"
            );
            if k == 0 {
                first_failed_at = f["failed_at"].as_str().unwrap().to_string();
                assert!((ts(&f["failed_at"]) - sent).abs() < 5.0, "{text}");
            }
            assert_eq!(
                f["failed_at"].as_str().unwrap(),
                first_failed_at,
                "failed_at is kept"
            );
            let kf = k as f64;
            let (lo, hi) = (kf.powi(4) + 15.0, kf.powi(4) + 15.0 + 29.0 * (kf + 1.0));
            let delay = ts(&f["next_at"]) - sent;
            assert!(
                delay >= lo - 1.0 && delay <= hi + 1.0,
                "failure {k}: next_at is {delay:.1} s away, expected [{lo}, {hi}] (§5.5): {text}"
            );
        }
        sent = unix_now();
        other.fail(
            &json!({"jid":"countdown-01","errtype":"Boom","message":format!("attempt {attempt}")}),
        );
        let info = c.info();
        if attempt < 3 {
            assert_eq!(set_size(&info, "retries"), 1, "attempt {attempt}: {info}");
            assert_eq!(
                info["faktory"]["tasks"]["Retries"]["size"],
                json!(1),
                "{info}"
            );
            assert_eq!(set_size(&info, "dead"), 0, "{info}");
            requeue_jid(&mut c, "retries", "countdown-01");
        } else {
            assert_eq!(set_size(&info, "retries"), 0, "{info}");
            assert_eq!(set_size(&info, "dead"), 1, "{info}");
        }
    }
    requeue_jid(&mut c, "dead", "countdown-01");
    let (job, text) = fetch_text(&mut c, "default", "countdown-01");
    let f = &job["failure"];
    assert_eq!(f["retry_count"], json!(3), "{text}");
    assert_eq!(f["remaining"], json!(0), "{text}");
    assert_eq!(f["message"], json!("attempt 3"));
    assert_eq!(f["failed_at"].as_str().unwrap(), first_failed_at);
    // §4.3: a dead job still holds the next_at of the previous retry (failure 2: 31-118 s).
    let delay = ts(&f["next_at"]) - sent;
    assert!(
        delay > 29.0 && delay < 119.0,
        "next_at {delay:.1} s away: {text}"
    );
    let info = c.info();
    assert_eq!(total(&info, "total_failures"), 4);
    assert_eq!(total(&info, "total_processed"), 4);
}

#[test]
fn failure_payload_is_cleaned_up() {
    let w = Werk::start();
    let mut c = w.conn();
    let long_message = "m".repeat(1500);
    let long_errtype = "e".repeat(150);
    let backtrace: Vec<String> = (0..60).map(|i| format!("line {i}")).collect();
    let cases = [
        (
            json!({"errtype":"  ","message":""}),
            json!("unknown"),
            json!("unknown"),
            None,
        ),
        (
            json!({"errtype":null,"message":null,"backtrace":null}),
            json!("unknown"),
            json!("unknown"),
            None,
        ),
        (json!({}), json!("unknown"), json!("unknown"), None),
        (
            json!({"errtype":"  Spaced\t","message":"\n  trimmed  "}),
            json!("Spaced"),
            json!("trimmed"),
            None,
        ),
        (
            json!({"errtype":long_errtype,"message":long_message,"backtrace":backtrace}),
            json!("e".repeat(100)),
            json!("m".repeat(1000)),
            Some(json!(backtrace[..50])),
        ),
        (
            json!({"backtrace":[]}),
            json!("unknown"),
            json!("unknown"),
            None,
        ),
    ];
    for (i, (payload, errtype, message, bt)) in cases.into_iter().enumerate() {
        let jid = format!("cleanup-{i:04}");
        c.push(&json!({"jid":jid,"jobtype":"T","args":[],"retry":-1}));
        c.fetch("default").unwrap();
        let mut payload = payload;
        payload["jid"] = json!(jid);
        c.fail(&payload);
        requeue_jid(&mut c, "dead", &jid);
        let (job, text) = fetch_text(&mut c, "default", &jid);
        let f = &job["failure"];
        assert_eq!(f["errtype"], errtype, "case {i}: {text}");
        assert_eq!(f["message"], message, "case {i}: {text}");
        match bt {
            None => assert!(
                f.get("backtrace").is_none(),
                "case {i}: backtrace must be absent: {text}"
            ),
            Some(bt) => assert_eq!(f["backtrace"], bt, "case {i}"),
        }
        c.ack(&jid);
    }
}

#[test]
fn short_reserve_for_is_clamped_to_a_minute() {
    // reserve_for 1 is treated as 60 (§4.1): the reservation must still be there after 3 s.
    // Expiry itself takes a minute or more, so it is not waited for here.
    let w = Werk::start();
    let mut c = w.conn();
    c.push(&json!({"jid":"clamped-0001","jobtype":"T","args":[],"reserve_for":1}));
    c.push(&json!({"jid":"clamped-0002","jobtype":"T","args":[],"reserve_for":-5}));
    c.fetch("default").unwrap();
    c.fetch("default").unwrap();
    common::holds_for(Duration::from_secs(3), "both reservations are held", || {
        let info = c.info();
        set_size(&info, "working") == 2 && total(&info, "total_failures") == 0
    });
    c.ack("clamped-0001");
    c.ack("clamped-0002");
    let info = c.info();
    assert_eq!(total(&info, "total_processed"), 2);
    assert_eq!(set_size(&info, "retries"), 0);
}

#[test]
fn a_scheduled_job_is_enqueued_when_due() {
    let w = Werk::start();
    let mut c = w.conn();
    let at = unix_now() + 1.5;
    c.push(&json!({"jid":"sched-00001","jobtype":"T","args":[],"queue":"later","at":rfc3339(at)}));
    let info = c.info();
    assert_eq!(set_size(&info, "scheduled"), 1, "{info}");
    assert_eq!(
        queue_size(&info, "later").unwrap_or(0),
        0,
        "enqueued before its time: {info}"
    );
    wait_until(
        Duration::from_secs(5),
        "the scheduled job reaches its queue",
        || queue_size(&c.info(), "later") == Some(1),
    );
    let visible = unix_now();
    assert!(visible >= at - 0.05, "enqueued {:.3} s early", at - visible);
    assert!(
        visible <= at + 1.0,
        "enqueued {:.3} s after its time",
        visible - at
    );
    let (job, _) = fetch_text(&mut c, "later", "sched-00001");
    let enq = ts(&job["enqueued_at"]);
    assert!(
        enq >= at - 0.05 && enq <= at + 1.0,
        "enqueued_at {enq} vs at {at}"
    );
    assert_eq!(set_size(&c.info(), "scheduled"), 0);
}

#[test]
fn a_parked_fetch_is_woken_by_a_job_coming_due() {
    let w = Werk::start();
    let mut c = w.conn();
    let mut fetcher = w.conn();
    let at = unix_now() + 0.8;
    c.push(&json!({"jid":"duewake-001","jobtype":"T","args":[],"queue":"dueq","at":rfc3339(at)}));
    let t = Instant::now();
    fetcher.send("FETCH dueq");
    match fetcher.read() {
        r @ Reply::Bulk(_) => assert_eq!(r.json()["jid"], "duewake-001"),
        other => panic!(
            "FETCH was not woken by the due job within {:?}: {other:?}",
            t.elapsed()
        ),
    }
    let late = unix_now() - at;
    assert!(late <= 1.0, "delivered {late:.3} s after its time");
}

#[test]
fn a_failed_job_is_retried_when_next_at_arrives() {
    // The first retry comes 15-44 s after the failure (§5.5), so this test waits that long.
    let w = Werk::start();
    let mut c = w.conn();
    c.push(&json!({"jid":"autoretry-1","jobtype":"T","args":[],"queue":"rq","retry":2}));
    c.fetch("rq").unwrap();
    let failed = unix_now();
    c.fail(&json!({"jid":"autoretry-1","message":"later"}));
    assert_eq!(set_size(&c.info(), "retries"), 1);
    wait_until(
        Duration::from_secs(47),
        "the retry is enqueued again",
        || queue_size(&c.info(), "rq") == Some(1),
    );
    let back = unix_now();
    assert!(
        back - failed >= 14.0,
        "retried after only {:.1} s",
        back - failed
    );
    let (job, _) = fetch_text(&mut c, "rq", "autoretry-1");
    let next_at = ts(&job["failure"]["next_at"]);
    assert!(
        back >= next_at - 0.05 && back <= next_at + 1.5,
        "back at {back}, next_at {next_at}"
    );
    assert!(
        ts(&job["enqueued_at"]) >= next_at - 0.05,
        "enqueued_at is refreshed: {job}"
    );
    assert_eq!(job["failure"]["message"], "later");
    assert_eq!(set_size(&c.info(), "retries"), 0);
}

#[test]
fn flush_clears_everything() {
    let w = Werk::start();
    let mut c = w.conn();
    c.push_simple("flush-q1-01", "fq1");
    c.push_simple("flush-q1-02", "fq1");
    c.push_simple("flush-q2-01", "fq2");
    c.push(&json!({"jid":"flush-sched","jobtype":"T","args":[],"at":rfc3339(unix_now()+3600.0)}));
    for (jid, retry) in [("flush-retry", 5), ("flush-dead1", -1)] {
        c.push(&json!({"jid":jid,"jobtype":"T","args":[],"queue":"fq3","retry":retry}));
        c.fetch("fq3").unwrap();
        c.fail(&json!({"jid":jid}));
    }
    c.push_simple("flush-ackd", "fq3");
    c.fetch("fq3").unwrap();
    c.ack("flush-ackd");
    c.push_simple("flush-work", "fq3");
    c.fetch("fq3").unwrap();
    c.cmd("QUEUE PAUSE fq2").assert_ok();
    let info = c.info();
    assert_eq!(
        (
            set_size(&info, "scheduled"),
            set_size(&info, "retries"),
            set_size(&info, "dead")
        ),
        (1, 1, 1),
        "{info}"
    );
    assert_eq!(total(&info, "total_processed"), 3);

    assert_eq!(
        c.cmd("FLUSH now"),
        Reply::Simple("OK".into()),
        "extra text is ignored"
    );
    let info = c.info();
    assert_eq!(info["faktory"]["queues"], json!({}), "{info}");
    for s in ["scheduled", "retries", "dead"] {
        assert_eq!(set_size(&info, s), 0, "{s}: {info}");
    }
    for t in [
        "total_processed",
        "total_failures",
        "total_enqueued",
        "total_queues",
    ] {
        assert_eq!(total(&info, t), 0, "{t}: {info}");
    }
    // The paused flag went too.
    c.push_simple("flush-after", "fq2");
    let t = Instant::now();
    assert_eq!(c.fetch("fq2").unwrap()["jid"], "flush-after");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "fq2 still paused after FLUSH"
    );
    // Nothing comes back from the sets.
    requeue_all(&mut c, "scheduled");
    requeue_all(&mut c, "retries");
    requeue_all(&mut c, "dead");
    let info = c.info();
    assert_eq!(total(&info, "total_enqueued"), 0, "{info}");
}
