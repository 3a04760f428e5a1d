//! Core unit tests, driven with a manual clock (time moves by `advance`, never by sleeping).
//!
//! Layout: the [`Harness`]; one section per area of PROTOCOL.md §3–§6 (scheduled jobs, failures
//! and backoff, retry policy, reservations, FETCH, heartbeats, MUTATE, QUEUE and FLUSH, the dead
//! set, PUSHB, journal records), table-driven where the cases are alike; then the seeded
//! simulation with its model and checker, the canaries that prove the checker can fail, and the
//! journal replay tests. Every test can fail: each asserts an exact value, text or boundary.

use super::*;

/// The Web UI's queries and actions.
mod admin;
use crate::clock::{Clock, ManualClock};
use crate::command::Command;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// Wall time of every harness clock at monotonic zero.
const START: &str = "2026-07-01T12:00:00Z";

/// Timers a fresh core holds (the housekeeping timer).
const BASE_TIMERS: usize = 1;

struct Harness {
    core: Core,
    clock: ManualClock,
}

impl Harness {
    fn new() -> Harness {
        Harness::with(CoreConfig {
            recording: true,
            ..CoreConfig::default()
        })
    }

    fn with(config: CoreConfig) -> Harness {
        let clock = ManualClock::new(Timestamp::parse_rfc3339(START).unwrap());
        let core = Core::new(config, clock.now(), 7);
        Harness { core, clock }
    }

    /// HELLO with a wid (`""` registers no worker: a producer).
    fn hello(&mut self, conn: u64, wid: &str) {
        self.hello_json(conn, &format!(r#"{{"v":2,"wid":"{wid}"}}"#));
    }

    fn hello_json(&mut self, conn: u64, json: &str) {
        let h: HelloInput = serde_json::from_str(json).unwrap();
        self.core.hello(ConnId(conn), &h, self.clock.now());
    }

    /// One request line, parsed as the loop does (a parse error becomes its `-ERR` reply).
    fn run(&mut self, conn: u64, line: &str) -> Response {
        match Command::parse(line.as_bytes()) {
            Ok(cmd) => self.core.apply(ConnId(conn), cmd, self.clock.now()),
            Err(e) => Response::Reply(Reply::err(e)),
        }
    }

    fn ok(&mut self, conn: u64, line: &str) {
        assert_eq!(self.run(conn, line), Response::Reply(Reply::Ok), "{line}");
    }

    /// The body of a bulk reply.
    fn bulk(&mut self, conn: u64, line: &str) -> String {
        match self.run(conn, line) {
            Response::Reply(Reply::Bulk(b)) => String::from_utf8(b).unwrap(),
            other => panic!("{line}: {other:?}"),
        }
    }

    /// The text of an error reply (with its `ERR ` code).
    fn error(&mut self, conn: u64, line: &str) -> String {
        match self.run(conn, line) {
            Response::Reply(Reply::Error(e)) => e,
            other => panic!("{line}: {other:?}"),
        }
    }

    fn push(&mut self, jid: &str, extra: &str) {
        self.ok(
            0,
            &format!(r#"PUSH {{"jid":"{jid}","jobtype":"T","args":[1]{extra}}}"#),
        );
    }

    /// FETCH: the job, or `None` when the FETCH parked.
    fn fetch(&mut self, conn: u64, queues: &str) -> Option<Value> {
        self.fetch_raw(conn, queues)
            .map(|s| serde_json::from_str(&s).unwrap())
    }

    fn fetch_raw(&mut self, conn: u64, queues: &str) -> Option<String> {
        match self.run(conn, &format!("FETCH {queues}")) {
            Response::Reply(Reply::Bulk(b)) => Some(String::from_utf8(b).unwrap()),
            Response::Parked => None,
            other => panic!("{other:?}"),
        }
    }

    fn fail(&mut self, jid: &str) {
        self.ok(
            0,
            &format!(r#"FAIL {{"jid":"{jid}","errtype":"E","message":"m"}}"#),
        );
    }

    /// Moves the clock and fires timers the way the loop does: it ticks again while the core
    /// has work due now (a promotion batch that left entries behind re-arms at `now`).
    fn advance(&mut self, ms: u64) {
        self.clock.advance_ms(ms);
        let now = self.clock.now();
        for _ in 0..1_000 {
            self.core.tick(now);
            if self.core.next_wakeup_ms().is_none_or(|t| t > now.mono_ms) {
                return;
            }
        }
        panic!("the core keeps asking for a tick at {now:?}");
    }

    fn wakes(&mut self) -> Vec<(ConnId, Reply)> {
        std::mem::take(&mut self.core.effects().wakes)
    }

    /// Wakes as (connection, jid), with `null` for a null reply.
    fn wake_jids(&mut self) -> Vec<(u64, String)> {
        self.wakes()
            .iter()
            .map(|(c, r)| match r {
                Reply::Null => (c.0, "null".to_owned()),
                r => (c.0, wake_jid(r)),
            })
            .collect()
    }

    fn closes(&mut self) -> Vec<ConnId> {
        let mut v = std::mem::take(&mut self.core.effects().closes);
        v.sort();
        v
    }

    fn records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.core.effects().records)
    }

    fn set_job(&self, set: SetName, jid: &str) -> Option<(SetKey, Value)> {
        self.core
            .set(set)
            .iter()
            .find(|(_, j)| j.jid() == jid)
            .map(|(k, j)| (*k, serde_json::from_slice(&j.to_json()).unwrap()))
    }

    /// The jids of a set, in its order.
    fn jids(&self, set: SetName) -> Vec<String> {
        self.core
            .set(set)
            .iter()
            .map(|(_, j)| j.jid().to_string())
            .collect()
    }

    /// The jids of a queue, oldest first (empty when the queue does not exist).
    fn queue_jids(&self, queue: &str) -> Vec<String> {
        self.core
            .queue_ref(queue)
            .map(|q| q.jobs.iter().map(|j| j.jid().to_string()).collect())
            .unwrap_or_default()
    }

    fn now(&self) -> Timestamp {
        self.clock.now().wall
    }

    fn start() -> Timestamp {
        Timestamp::parse_rfc3339(START).unwrap()
    }
}

fn wake_jid(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(b) => serde_json::from_slice::<Value>(b).unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    }
}

fn ts(v: &Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

fn secs_between(a: Timestamp, b: Timestamp) -> i64 {
    let ns = a.nanos_until(b);
    assert_eq!(ns % 1_000_000_000, 0, "{a:?}..{b:?} is not whole seconds");
    ns / 1_000_000_000
}

#[test]
fn push_fetch_ack() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.push("abcdefgh", "");
    let job = h.fetch(1, "default").unwrap();
    assert_eq!(job["jid"], "abcdefgh");
    assert_eq!(h.core.working()["abcdefgh"].wid.as_ref(), "w1");
    h.ok(1, r#"ACK {"jid":"abcdefgh"}"#);
    assert!(h.core.working().is_empty());
    assert_eq!(h.core.stats().processed, 1);
    assert_eq!(h.core.stats().failures, 0);
    assert_eq!(
        h.core.timer_count(),
        BASE_TIMERS + 1,
        "reservation timer gone"
    );
    // ACK is idempotent, from any connection, and of unknown jids too.
    h.ok(1, r#"ACK {"jid":"abcdefgh"}"#);
    h.ok(7, r#"ACK {"jid":"neverseen"}"#);
    assert_eq!(h.core.stats().processed, 1);
    let day = h.now().date_utc();
    assert_eq!(
        h.core.stats().daily[day.as_str()],
        Daily {
            processed: 1,
            failures: 0
        }
    );
}

#[test]
fn end_closes_without_a_reply() {
    let mut h = Harness::new();
    assert_eq!(h.run(1, "END"), Response::Close);
    assert_eq!(h.run(1, "END now"), Response::Close);
}

#[test]
fn client_failure_object_is_kept_and_continued() {
    let mut h = Harness::new();
    h.push(
        "hasfail1",
        r#","failure":{"retry_count":4,"remaining":21,"failed_at":"2026-06-01T00:00:00Z","message":"old","errtype":"Old"}"#,
    );
    let job = h.fetch(1, "default").unwrap();
    assert_eq!(job["failure"]["retry_count"], 4, "kept as pushed: {job}");
    assert_eq!(job["failure"]["message"], "old");
    h.fail("hasfail1");
    let (key, job) = h.set_job(SetName::Retries, "hasfail1").unwrap();
    let f = &job["failure"];
    assert_eq!(
        (f["retry_count"].as_i64(), f["remaining"].as_i64()),
        (Some(5), Some(20))
    );
    assert_eq!(f["failed_at"], "2026-06-01T00:00:00Z", "failed_at kept");
    assert_eq!(
        (&f["message"], &f["errtype"]),
        (&Value::from("m"), &Value::from("E"))
    );
    let delay = secs_between(h.now(), key.at);
    let jitter = delay - 5i64.pow(4) - 15;
    assert!((0..=29 * 6).contains(&jitter) && jitter % 6 == 0, "{delay}");
}

#[test]
fn info_reports_counts_sizes_and_time() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "");
    h.push("info0001", "");
    h.push("info0002", "");
    h.push("info0003", r#","queue":"low""#);
    h.push("info0004", r#","retry":-1"#);
    let at = h.now().add_secs(60).to_rfc3339();
    h.push("info0005", &format!(r#","at":"{at}""#));
    h.fetch(1, "default").unwrap();
    h.fetch(1, "default").unwrap();
    h.fetch(1, "default").unwrap();
    h.fail("info0002");
    h.fail("info0004");
    h.ok(1, r#"ACK {"jid":"info0001"}"#);
    let _ = h.error(1, r#"FAIL {"jid":"nosuchjb"}"#);
    h.advance(3_700);
    let body = h.bulk(2, "INFO");
    let v: Value = serde_json::from_str(&body).unwrap();
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["faktory", "now", "server", "server_utc_time"]);
    assert_eq!(ts(&v["now"]), h.now());
    assert_eq!(v["server_utc_time"], "12:00:03 UTC");
    let f = &v["faktory"];
    assert_eq!(f["queues"], serde_json::json!({"default": 0, "low": 1}));
    assert_eq!(
        f["sets"],
        serde_json::json!({"scheduled": 1, "retries": 1, "dead": 1, "working": 0})
    );
    assert_eq!(f["tasks"]["Retries"]["size"], 1);
    assert_eq!(f["tasks"]["Dead"]["size"], 1);
    assert_eq!(f["tasks"]["Scheduled"]["size"], 1);
    assert_eq!(f["tasks"]["Workers"]["size"], 1);
    assert_eq!(f["tasks"]["Busy"]["size"], 0);
    assert_eq!(
        (&f["total_failures"], &f["total_processed"]),
        (&Value::from(2), &Value::from(3))
    );
    assert_eq!(
        (&f["total_enqueued"], &f["total_queues"]),
        (&Value::from(1), &Value::from(2))
    );
    let s = &v["server"];
    assert_eq!(s["description"], "Faktory");
    assert_eq!(s["faktory_version"], FAKTORY_COMPAT_VERSION);
    assert_eq!(s["uptime"], 3);
    assert_eq!(s["connections"], 2);
    // 5 PUSH, 3 FETCH, 2 FAIL, ACK, the refused FAIL and INFO itself.
    assert_eq!(s["command_count"], 13);
}

// ----- scheduled jobs (§5.2, §5.6) -----------------------------------------------------------

#[test]
fn scheduled_job_waits_for_its_time() {
    let mut h = Harness::new();
    let at = h.now().add_secs(10);
    h.push("sched010", &format!(r#","at":"{}""#, at.to_rfc3339()));
    let (key, job) = h.set_job(SetName::Scheduled, "sched010").unwrap();
    assert_eq!(key.at, at);
    assert!(job.get("enqueued_at").is_none(), "{job}");
    assert!(h.core.queue_ref("default").is_none(), "not in a queue yet");
    assert!(h.core.working().is_empty());
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 1, "one set timer");

    h.advance(9_999);
    assert!(h.fetch(1, "default").is_none(), "fetchable at +9.999 s");
    h.core.disconnect(ConnId(1));
    assert_eq!(h.jids(SetName::Scheduled), ["sched010"]);

    h.advance(1);
    assert!(h.core.set(SetName::Scheduled).is_empty());
    assert_eq!(h.queue_jids("default"), ["sched010"]);
    assert_eq!(h.core.timer_count(), BASE_TIMERS, "set timer disarmed");
    let job = h.fetch(2, "default").expect("fetchable at +10 s");
    assert_eq!(
        ts(&job["enqueued_at"]),
        at,
        "enqueued_at is the promotion time"
    );
    assert_eq!(job["at"], at.to_rfc3339(), "at stays in the payload");
    assert_eq!(h.core.stats().scheduled.enqueued, 1);
}

#[test]
fn scheduled_job_is_promoted_at_its_time_and_wakes_a_fetcher() {
    let mut h = Harness::new();
    let at = h.now().add_secs(10).to_rfc3339();
    h.push("sched001", &format!(r#","at":"{at}""#));
    assert_eq!(h.core.set(SetName::Scheduled).len(), 1);
    assert!(h.fetch(1, "default").is_none(), "parked");
    h.advance(1_999);
    let w = h.wakes();
    assert!(w.is_empty(), "{w:?} {:?}", h.clock.now());
    h.advance(1);
    assert_eq!(h.wakes(), vec![(ConnId(1), Reply::Null)]);
    h.advance(6_500);
    assert!(h.fetch(1, "default").is_none());
    h.advance(1_499); // 9.999 s after the push
    assert!(h.wakes().is_empty());
    assert_eq!(h.core.set(SetName::Scheduled).len(), 1);
    h.advance(1);
    let wakes = h.wakes();
    assert_eq!(wakes.len(), 1);
    assert_eq!(wakes[0].0, ConnId(1));
    assert_eq!(wake_jid(&wakes[0].1), "sched001");
    let job = &h.core.working()["sched001"].job;
    assert_eq!(
        job.enqueued_at().map(|t| t.to_rfc3339()).as_deref(),
        Some(h.now().to_rfc3339().as_str())
    );
    assert_eq!(job.at(), Some(at.as_str()));
    assert_eq!(h.core.stats().scheduled.enqueued, 1);
    // The woken fetcher's timeout went with it: the reservation timer is all that is left.
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 1);
    assert!(h.core.parked.is_empty() && h.core.parked_by_queue.is_empty());
}

#[test]
fn at_decides_between_queue_and_scheduled_set() {
    // (at text relative to START = 12:00:00Z, scheduled?, ms after START when it is fetchable)
    let table: &[(&str, bool, u64)] = &[
        ("2026-07-01T11:59:50Z", false, 0),
        ("2026-07-01T12:00:00Z", false, 0),
        ("2026-07-01T12:00:00.000Z", false, 0),
        ("", false, 0),
        ("2026-07-01T12:00:00.001Z", true, 1),
        ("2026-07-01T12:00:00.0005Z", true, 1),
        ("2026-07-01T14:00:05+02:00", true, 5_000),
        ("2026-07-01T07:00:07.25-05:00", true, 7_250),
    ];
    for &(at, scheduled, due_ms) in table {
        let mut h = Harness::new();
        h.push("atjob001", &format!(r#","at":"{at}""#));
        assert_eq!(
            h.core.set(SetName::Scheduled).len(),
            usize::from(scheduled),
            "at {at:?}"
        );
        if due_ms > 0 {
            h.advance(due_ms - 1);
            assert!(h.queue_jids("default").is_empty(), "at {at:?} early");
            h.advance(1);
        }
        assert_eq!(h.queue_jids("default"), ["atjob001"], "at {at:?}");
        let job = h.fetch(1, "default").unwrap();
        assert_eq!(ts(&job["enqueued_at"]), h.now(), "at {at:?}");
        if at.is_empty() {
            assert!(job.get("at").is_none());
        } else {
            assert_eq!(job["at"], at, "the client's at text is kept");
        }
    }
}

#[test]
fn scheduled_jobs_are_promoted_in_time_order_then_push_order() {
    let mut h = Harness::new();
    let at = |s: i64| Harness::start().add_secs(s).to_rfc3339();
    for (jid, secs) in [
        ("late0001", 30),
        ("early001", 10),
        ("same0001", 20),
        ("same0002", 20),
        ("early002", 10),
    ] {
        h.push(jid, &format!(r#","at":"{}""#, at(secs)));
    }
    assert_eq!(
        h.jids(SetName::Scheduled),
        ["early001", "early002", "same0001", "same0002", "late0001"]
    );
    h.advance(25_000);
    assert_eq!(
        h.queue_jids("default"),
        ["early001", "early002", "same0001", "same0002"]
    );
    h.advance(5_000);
    assert_eq!(h.queue_jids("default").last().unwrap(), "late0001");
    assert_eq!(h.core.stats().scheduled.enqueued, 5);
}

#[test]
fn scheduled_job_is_due_by_wall_time_after_a_wall_clock_step() {
    let mut h = Harness::new();
    let at = h.now().add_secs(600);
    h.push("walljump", &format!(r#","at":"{}""#, at.to_rfc3339()));
    // The wall clock steps an hour forward (an NTP step, a VM resumed) while the monotonic
    // clock moves on normally; the loop keeps ticking every few seconds.
    let start = h.clock.now();
    for i in 1..=6u64 {
        let now = Now {
            wall: start.wall.add_secs(3_600 + 5 * i as i64),
            mono_ms: start.mono_ms + 5_000 * i,
        };
        h.core.tick(now);
    }
    assert_eq!(
        h.queue_jids("default"),
        ["walljump"],
        "due by the wall clock for 30 s, still scheduled"
    );
}

#[test]
fn promotion_in_small_batches_still_moves_everything_due() {
    let mut h = Harness::with(CoreConfig {
        promote_batch: 2,
        ..CoreConfig::default()
    });
    let at = h.now().add_secs(1).to_rfc3339();
    for i in 0..7 {
        h.push(&format!("batch{i:03}"), &format!(r#","at":"{at}""#));
    }
    h.advance(1_000);
    assert_eq!(h.queue_jids("default").len(), 7);
    assert!(h.core.set(SetName::Scheduled).is_empty());
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
}

// ----- failures and backoff (§3.5, §4.3, §5.4, §5.5) -------------------------------------------

#[test]
fn failure_fields_and_backoff() {
    let mut h = Harness::new();
    h.push("failjob1", "");
    h.fetch(1, "default").unwrap();
    h.advance(1_500);
    let failed_at = h.now();
    h.ok(
        0,
        r#"FAIL {"jid":"failjob1","errtype":" TypeError ","message":"boom","backtrace":["a","b"]}"#,
    );
    let (key, job) = h.set_job(SetName::Retries, "failjob1").unwrap();
    let f = &job["failure"];
    assert_eq!(f["retry_count"], 0);
    assert_eq!(f["remaining"], 25);
    assert_eq!(f["errtype"], "TypeError");
    assert_eq!(f["message"], "boom");
    assert_eq!(f["backtrace"], serde_json::json!(["a", "b"]));
    assert_eq!(ts(&f["failed_at"]), failed_at);
    assert_eq!(ts(&f["next_at"]), key.at);
    let delay = secs_between(failed_at, key.at);
    assert!((15..=44).contains(&delay), "first retry after {delay} s");
    assert_eq!(h.core.stats().failures, 1);
    assert_eq!(h.core.stats().processed, 1, "a failure counts as processed");
    assert!(h.core.working().is_empty());
    assert_eq!(
        h.core.timer_count(),
        BASE_TIMERS + 1,
        "reservation timer swapped for the retry set's"
    );

    // Not fetchable before next_at; fetchable right at it, with a fresh enqueued_at.
    let wait_ms = (h.now().nanos_until(key.at) / 1_000_000) as u64;
    h.advance(wait_ms - 1);
    assert!(h.fetch(1, "default").is_none());
    assert_eq!(h.jids(SetName::Retries), ["failjob1"]);
    h.advance(1);
    assert_eq!(h.wake_jids(), [(1, "failjob1".to_owned())]);
    let r = &h.core.working()["failjob1"];
    assert_eq!(
        r.job.enqueued_at().map(|t| t.to_rfc3339()).as_deref(),
        Some(&*key.at.to_rfc3339())
    );
    assert_eq!(h.core.stats().retries.enqueued, 1);

    h.advance(2_000);
    let second_at = h.now();
    h.ok(
        0,
        r#"FAIL {"jid":"failjob1","errtype":"E2","message":"again"}"#,
    );
    let (key2, job) = h.set_job(SetName::Retries, "failjob1").unwrap();
    let f = &job["failure"];
    assert_eq!(f["retry_count"], 1);
    assert_eq!(f["remaining"], 24);
    assert_eq!(f["errtype"], "E2");
    assert_eq!(f["message"], "again");
    assert_eq!(ts(&f["failed_at"]), failed_at, "failed_at keeps the first");
    assert_eq!(ts(&f["next_at"]), key2.at);
    assert!(
        f.get("backtrace").is_none(),
        "the old backtrace is replaced"
    );
    let delay = secs_between(second_at, key2.at);
    // 1^4 + 15 + R*2 with R in [0, 29]: even numbers from 16 to 74.
    assert!(
        (16..=74).contains(&delay) && delay % 2 == 0,
        "second retry after {delay} s"
    );
}

#[test]
fn backoff_follows_the_formula_for_each_retry_count() {
    let mut h = Harness::new();
    h.push("backoff1", r#","retry":12"#);
    for c in 0..=10i64 {
        h.fetch(1, "default").unwrap();
        let now = h.now();
        h.fail("backoff1");
        let (key, job) = h.set_job(SetName::Retries, "backoff1").unwrap();
        assert_eq!(job["failure"]["retry_count"], c);
        assert_eq!(job["failure"]["remaining"], 12 - c);
        let delay = secs_between(now, key.at);
        let jitter = delay - c.pow(4) - 15;
        assert!(
            (0..=29 * (c + 1)).contains(&jitter) && jitter % (c + 1) == 0,
            "retry_count {c}: delay {delay} s is not c^4+15+R(c+1)"
        );
        h.advance((now.nanos_until(key.at) / 1_000_000) as u64);
    }
}

#[test]
fn backoff_jitter_takes_every_value_of_r() {
    let mut h = Harness::new();
    let mut seen = BTreeSet::new();
    for i in 0..300 {
        let jid = format!("jitter{i:03}");
        h.push(&jid, "");
        h.fetch(1, "default").unwrap();
        h.fail(&jid);
        let (key, _) = h.set_job(SetName::Retries, &jid).unwrap();
        let r = secs_between(h.now(), key.at) - 15;
        assert!((0..=29).contains(&r), "R = {r}");
        seen.insert(r);
    }
    assert_eq!(seen.len(), 30, "R values seen: {seen:?}");
}

#[test]
fn failure_text_clean_up() {
    let x150 = "x".repeat(150);
    let y1500 = "y".repeat(1_500);
    let e51 = "é".repeat(51);
    let a_e60 = format!("a{}", "é".repeat(600));
    let lines60: Vec<String> = (0..60).map(|i| format!(" line {i} ")).collect();
    let lines60_json = serde_json::to_string(&lines60).unwrap();
    // (FAIL fields after the jid, errtype, message, backtrace: None when the key must be absent)
    let table: Vec<(String, String, String, Option<Vec<String>>)> = vec![
        (
            r#","errtype":"  Boom  ","message":"\t hi there \n""#.into(),
            "Boom".into(),
            "hi there".into(),
            None,
        ),
        (String::new(), "unknown".into(), "unknown".into(), None),
        (
            r#","errtype":null,"message":"","backtrace":null"#.into(),
            "unknown".into(),
            "unknown".into(),
            None,
        ),
        (
            r#","errtype":" \n ","message":"   ","backtrace":[]"#.into(),
            "unknown".into(),
            "unknown".into(),
            None,
        ),
        (
            format!(r#","errtype":"{x150}","message":"{y1500}""#),
            "x".repeat(100),
            "y".repeat(1_000),
            None,
        ),
        (
            format!(
                r#","errtype":" {} ","message":"  {}  ""#,
                &x150[..100],
                &y1500[..1000]
            ),
            "x".repeat(100),
            "y".repeat(1_000),
            None,
        ),
        // Cuts fall on a character boundary: 51 two-byte characters keep 50, and an odd
        // prefix loses the character that would straddle byte 100 / 1000.
        (
            format!(r#","errtype":"{e51}","message":"{a_e60}""#),
            "é".repeat(50),
            format!("a{}", "é".repeat(499)),
            None,
        ),
        (
            format!(r#","errtype":"E","message":"m","backtrace":{lines60_json}"#),
            "E".into(),
            "m".into(),
            Some(lines60[..50].to_vec()),
        ),
        (
            r#","errtype":"E","message":"m","backtrace":[" keep  spaces "]"#.into(),
            "E".into(),
            "m".into(),
            Some(vec![" keep  spaces ".to_owned()]),
        ),
    ];
    for (fields, errtype, message, backtrace) in table {
        let mut h = Harness::new();
        h.push("cleanup1", "");
        h.fetch(1, "default").unwrap();
        h.ok(0, &format!(r#"FAIL {{"jid":"cleanup1"{fields}}}"#));
        let (_, job) = h.set_job(SetName::Retries, "cleanup1").unwrap();
        let f = &job["failure"];
        assert_eq!(f["errtype"], errtype.as_str(), "{fields}");
        assert_eq!(f["message"], message.as_str(), "{fields}");
        match backtrace {
            None => assert!(f.get("backtrace").is_none(), "{fields}: {f}"),
            Some(lines) => assert_eq!(f["backtrace"], serde_json::json!(lines), "{fields}"),
        }
    }
}

#[test]
fn failure_json_field_order_and_absent_backtrace() {
    let mut h = Harness::new();
    h.push("order001", "");
    h.fetch(1, "default").unwrap();
    h.fail("order001");
    let (key, _) = h.set_job(SetName::Retries, "order001").unwrap();
    h.advance((h.now().nanos_until(key.at) / 1_000_000) as u64);
    let raw = h.fetch_raw(1, "default").unwrap();
    let failed_at = START;
    let next_at = key.at.to_rfc3339();
    let enqueued_at = key.at.to_rfc3339();
    assert_eq!(
        raw,
        format!(
            r#"{{"retry":25,"failure":{{"failed_at":"{failed_at}","next_at":"{next_at}","message":"m","errtype":"E","retry_count":0,"remaining":25}},"jid":"order001","queue":"default","jobtype":"T","created_at":"{START}","enqueued_at":"{enqueued_at}","args":[1]}}"#
        )
    );
    // With a backtrace, it sits between errtype and retry_count.
    h.ok(
        0,
        r#"FAIL {"jid":"order001","errtype":"E","message":"m","backtrace":["x"]}"#,
    );
    let j = h
        .core
        .set(SetName::Retries)
        .iter()
        .next()
        .unwrap()
        .1
        .to_json();
    let j = String::from_utf8(j).unwrap();
    assert!(
        j.contains(r#""errtype":"E","backtrace":["x"],"retry_count":1,"remaining":24}"#),
        "{j}"
    );
}

#[test]
fn fail_of_a_job_that_is_not_reserved() {
    let mut h = Harness::new();
    assert_eq!(
        h.error(0, r#"FAIL {"jid":"nosuchjob"}"#),
        "ERR Job not found nosuchjob"
    );
    h.push("failtwice", "");
    h.fetch(1, "default").unwrap();
    h.fail("failtwice");
    assert_eq!(
        h.error(0, r#"FAIL {"jid":"failtwice"}"#),
        "ERR Job not found failtwice"
    );
    assert_eq!(h.error(0, r#"FAIL {"jid":""}"#), "ERR missing JID");
    assert_eq!(h.core.stats().failures, 1, "refused FAILs count nothing");
    assert_eq!(h.core.set(SetName::Retries).len(), 1);
}

// ----- retry policy (§5.4) ---------------------------------------------------------------------

#[test]
fn retry_exhaustion() {
    // (retry field, (retry_count, remaining, where) after each failure)
    type Row<'a> = (&'a str, &'a [(i64, i64, Option<SetName>)]);
    let table: &[Row<'_>] = &[
        (
            r#","retry":2"#,
            &[
                (0, 2, Some(SetName::Retries)),
                (1, 1, Some(SetName::Retries)),
                (2, 0, Some(SetName::Dead)),
            ],
        ),
        (
            r#","retry":1"#,
            &[(0, 1, Some(SetName::Retries)), (1, 0, Some(SetName::Dead))],
        ),
        (r#","retry":0"#, &[(0, 0, None)]),
        (r#","retry":-1"#, &[(0, -1, Some(SetName::Dead))]),
        (r#","retry":null"#, &[(0, 25, Some(SetName::Retries))]),
    ];
    for &(extra, steps) in table {
        let mut h = Harness::new();
        h.push("exhaust1", extra);
        let mut last_next_at = None;
        for (run, &(count, remaining, place)) in steps.iter().enumerate() {
            h.fetch(1, "default")
                .unwrap_or_else(|| panic!("{extra}: run {run} not fetchable"));
            let now = h.now();
            h.fail("exhaust1");
            let n = run as u64 + 1;
            assert_eq!(h.core.stats().failures, n, "{extra}");
            assert_eq!(h.core.stats().processed, n, "{extra}");
            let Some(set) = place else {
                for set in SetName::ALL {
                    assert!(h.core.set(set).is_empty(), "{extra}: discarded");
                }
                assert!(h.core.working().is_empty());
                assert_eq!(h.core.timer_count(), BASE_TIMERS, "{extra}");
                continue;
            };
            let (key, job) = h.set_job(set, "exhaust1").unwrap();
            let f = &job["failure"];
            assert_eq!(f["retry_count"], count, "{extra} run {run}");
            assert_eq!(f["remaining"], remaining, "{extra} run {run}");
            if set == SetName::Dead {
                assert_eq!(key.at, now.add_secs(180 * 86_400), "dead for 180 days");
                assert_eq!(
                    f.get("next_at").map(ts),
                    last_next_at,
                    "{extra}: a dead job keeps the previous next_at"
                );
                // Dead jobs are never retried.
                h.advance(30 * 86_400_000);
                assert_eq!(h.jids(SetName::Dead), ["exhaust1"]);
                assert!(h.queue_jids("default").is_empty());
            } else {
                last_next_at = Some(ts(&f["next_at"]));
                h.advance((now.nanos_until(key.at) / 1_000_000) as u64);
            }
        }
    }
}

// ----- reservations (§5.3) ---------------------------------------------------------------------

#[test]
fn reservation_length() {
    // (reserve_for field, seconds until expiry)
    let table: &[(&str, u64)] = &[
        ("", 1_800),
        (r#","reserve_for":0"#, 1_800),
        (r#","reserve_for":null"#, 1_800),
        (r#","reserve_for":1"#, 60),
        (r#","reserve_for":-5"#, 60),
        (r#","reserve_for":59"#, 60),
        (r#","reserve_for":60"#, 60),
        (r#","reserve_for":61"#, 61),
        (r#","reserve_for":86400"#, 86_400),
    ];
    for &(extra, secs) in table {
        let mut h = Harness::new();
        h.push("reserve1", extra);
        h.advance(250);
        h.fetch(1, "default").unwrap();
        let r = &h.core.working()["reserve1"];
        assert_eq!(r.reserved_at, h.now(), "{extra}");
        assert_eq!(r.expires_at, h.now().add_secs(secs as i64), "{extra}");
        h.advance(secs * 1_000 - 1);
        assert!(h.core.working().contains_key("reserve1"), "{extra}: early");
        assert!(h.core.set(SetName::Retries).is_empty());
        h.advance(1);
        assert!(h.core.working().is_empty(), "{extra}: not expired");
        let (_, job) = h.set_job(SetName::Retries, "reserve1").unwrap();
        let f = &job["failure"];
        assert_eq!(f["errtype"], RESERVATION_EXPIRED_ERRTYPE);
        assert_eq!(f["errtype"], "ReservationExpired");
        assert_eq!(f["message"], "Faktory job reservation expired");
        assert!(f.get("backtrace").is_none());
        assert_eq!(ts(&f["failed_at"]), h.now());
        assert_eq!(h.core.stats().failures, 1);
        assert_eq!(h.core.stats().processed, 1);
        assert_eq!(h.core.stats().busy.reaped, 1);
    }
}

#[test]
fn reservation_expiry_fails_the_job_and_ack_cancels_it() {
    let mut h = Harness::new();
    h.push("expire01", r#","reserve_for":5"#); // clamped to 60 s
    h.push("acked001", "");
    h.fetch(1, "default").unwrap();
    h.fetch(1, "default").unwrap();
    let timers = h.core.timer_count();
    h.ok(1, r#"ACK {"jid":"acked001"}"#);
    assert_eq!(
        h.core.timer_count(),
        timers - 1,
        "ACK disarms the reservation timer"
    );
    h.advance(59_999);
    assert!(h.core.working().contains_key("expire01"));
    h.advance(1);
    assert!(h.core.working().is_empty());
    let (_, job) = h.set_job(SetName::Retries, "expire01").unwrap();
    assert_eq!(job["failure"]["errtype"], "ReservationExpired");
    assert_eq!(job["failure"]["message"], "Faktory job reservation expired");
    assert_eq!(h.core.stats().busy.reaped, 1);
    // The ACKed job never fails later: only expire01 counted.
    h.advance(1_800_000);
    assert_eq!(h.core.stats().busy.reaped, 1);
    assert_eq!(h.core.stats().failures, 1);
    assert!(h.set_job(SetName::Retries, "acked001").is_none());
    assert!(h.set_job(SetName::Dead, "acked001").is_none());
}

#[test]
fn expired_reservation_cannot_be_acked_or_failed() {
    let mut h = Harness::new();
    h.push("late0001", r#","reserve_for":60"#);
    h.fetch(1, "default").unwrap();
    h.advance(60_000);
    assert_eq!(h.core.stats().processed, 1);
    h.ok(1, r#"ACK {"jid":"late0001"}"#);
    assert_eq!(
        h.core.stats().processed,
        1,
        "a late ACK of an expired job counts nothing"
    );
    assert_eq!(
        h.error(1, r#"FAIL {"jid":"late0001"}"#),
        "ERR Job not found late0001"
    );
    assert_eq!(
        h.jids(SetName::Retries),
        ["late0001"],
        "still waiting to retry"
    );
}

#[test]
fn expiry_follows_the_retry_policy() {
    let mut h = Harness::new();
    h.push("expzero1", r#","retry":0,"reserve_for":60"#);
    h.push("expdead1", r#","retry":-1,"reserve_for":60"#);
    h.fetch(1, "default").unwrap();
    h.fetch(1, "default").unwrap();
    h.advance(60_000);
    assert!(h.core.working().is_empty());
    assert!(h.core.set(SetName::Retries).is_empty());
    assert_eq!(h.jids(SetName::Dead), ["expdead1"]);
    assert_eq!(h.core.stats().failures, 2);
    assert_eq!(h.core.stats().busy.reaped, 2);
}

#[test]
fn worker_expiry_leaves_its_reservations_alone() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.push("orphan01", r#","reserve_for":120"#);
    h.fetch(1, "default").unwrap();
    h.advance(60_000);
    assert!(h.core.worker("w1").is_none());
    assert_eq!(h.closes(), [ConnId(1)]);
    assert_eq!(&*h.core.working()["orphan01"].wid, "w1");
    h.advance(59_999);
    assert!(h.core.working().contains_key("orphan01"));
    h.advance(1);
    assert!(h.set_job(SetName::Retries, "orphan01").is_some());
}

// ----- FETCH (§3.3) ----------------------------------------------------------------------------

#[test]
fn fetch_takes_queues_in_the_order_given_and_each_queue_fifo() {
    // (queue list, jids expected in order until the FETCH parks)
    let table: &[(&str, &[&str])] = &[
        ("c a b", &["c1", "a1", "a2", "a3", "b1", "b2"]),
        ("a b c", &["a1", "a2", "a3", "b1", "b2", "c1"]),
        ("b", &["b1", "b2"]),
        ("nope b nope a", &["b1", "b2", "a1", "a2", "a3"]),
        ("a a", &["a1", "a2", "a3"]),
        ("c  a", &["c1", "a1", "a2", "a3"]),
    ];
    for &(list, want) in table {
        let mut h = Harness::new();
        for (jid, q) in [
            ("a1", "a"),
            ("b1", "b"),
            ("a2", "a"),
            ("c1", "c"),
            ("b2", "b"),
            ("a3", "a"),
        ] {
            h.push(&format!("{jid}-job-x"), &format!(r#","queue":"{q}""#));
        }
        let mut got = Vec::new();
        while let Some(job) = h.fetch(1, list) {
            got.push(
                job["jid"]
                    .as_str()
                    .unwrap()
                    .trim_end_matches("-job-x")
                    .to_owned(),
            );
            assert!(got.len() <= 6, "{list}: {got:?}");
        }
        assert_eq!(got, want, "FETCH {list}");
    }
}

#[test]
fn fetch_order_blocking_and_timeouts() {
    let mut h = Harness::new();
    h.push("low00001", r#","queue":"low""#);
    h.push("high0001", r#","queue":"high""#);
    h.push("low00002", r#","queue":"low""#);
    let order: Vec<String> = (0..3)
        .map(|_| {
            h.fetch(1, "high low").unwrap()["jid"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(order, ["high0001", "low00001", "low00002"]);

    // Two fetchers wait; the one that waited longest is served first.
    assert!(h.fetch(1, "a b").is_none());
    h.advance(100);
    assert!(h.fetch(2, "b").is_none());
    h.push("tob00001", r#","queue":"b""#);
    assert_eq!(h.wake_jids(), [(1, "tob00001".to_owned())]);
    h.advance(1_999);
    assert!(h.wakes().is_empty());
    h.advance(1);
    assert_eq!(h.wakes(), vec![(ConnId(2), Reply::Null)]);

    // Paused queues are skipped and do not wake fetchers.
    h.push("paused01", r#","queue":"p""#);
    h.ok(0, "QUEUE PAUSE p");
    assert!(h.fetch(3, "p").is_none());
    h.push("paused02", r#","queue":"p""#);
    assert!(h.wakes().is_empty());
    h.advance(2_000);
    assert_eq!(h.wakes(), vec![(ConnId(3), Reply::Null)]);

    // A parked connection that goes away leaves nothing behind.
    let timers = h.core.timer_count();
    assert!(h.fetch(4, "x y").is_none());
    h.core.disconnect(ConnId(4));
    assert_eq!(h.core.timer_count(), timers);
    assert!(h.core.parked.is_empty() && h.core.parked_by_queue.is_empty());
}

#[test]
fn parked_fetch_times_out_after_exactly_two_seconds() {
    let mut h = Harness::new();
    h.push("other001", r#","queue":"other""#);
    assert!(h.fetch(1, "default").is_none());
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 1);
    h.advance(1_999);
    assert!(h.wakes().is_empty());
    h.push("other002", r#","queue":"other""#);
    assert!(
        h.wakes().is_empty(),
        "a push to an unlisted queue wakes nobody"
    );
    h.advance(1);
    assert_eq!(h.wakes(), vec![(ConnId(1), Reply::Null)]);
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
    assert!(h.core.parked.is_empty() && h.core.parked_by_queue.is_empty());
    h.advance(10_000);
    assert!(h.wakes().is_empty(), "one reply per FETCH");
}

#[test]
fn parked_fetch_is_woken_by_a_push_to_any_listed_queue() {
    for target in ["a", "b", "c"] {
        let mut h = Harness::new();
        h.hello(1, "w1");
        assert!(h.fetch(1, "a b c").is_none());
        h.advance(1_500);
        h.push("wakeme01", &format!(r#","queue":"{target}""#));
        assert_eq!(h.wake_jids(), [(1, "wakeme01".to_owned())], "{target}");
        let r = &h.core.working()["wakeme01"];
        assert_eq!(&*r.wid, "w1");
        assert_eq!(r.reserved_at, h.now());
        assert!(h.queue_jids(target).is_empty());
        // The fetch timeout went; only the reservation and the worker's beat timer remain.
        assert_eq!(h.core.timer_count(), BASE_TIMERS + 2, "{target}");
        assert!(h.core.parked.is_empty() && h.core.parked_by_queue.is_empty());
        // A later push to another listed queue stays queued.
        h.push("nobody01", r#","queue":"a""#);
        h.advance(5_000);
        assert!(h.wakes().is_empty());
        assert_eq!(h.queue_jids("a"), ["nobody01"]);
    }
}

#[test]
fn longest_waiting_fetcher_is_served_first() {
    let mut h = Harness::new();
    assert!(h.fetch(3, "q").is_none());
    h.advance(10);
    assert!(h.fetch(1, "other q").is_none());
    h.advance(10);
    assert!(h.fetch(2, "q").is_none());
    let reply = h.bulk(
        0,
        r#"PUSHB [{"jid":"first001","jobtype":"T","args":[],"queue":"q"},{"jid":"second01","jobtype":"T","args":[],"queue":"q"}]"#,
    );
    assert_eq!(reply, "{}");
    assert_eq!(
        h.wake_jids(),
        [(3, "first001".to_owned()), (1, "second01".to_owned())]
    );
    h.push("third001", r#","queue":"q""#);
    assert_eq!(h.wake_jids(), [(2, "third001".to_owned())]);
    assert!(h.core.parked.is_empty());
}

#[test]
fn paused_queues_are_skipped_and_wake_nobody() {
    let mut h = Harness::new();
    h.push("inpaused", r#","queue":"p""#);
    h.push("inopen01", r#","queue":"open""#);
    h.ok(0, "QUEUE PAUSE p");
    assert_eq!(h.fetch(1, "p open").unwrap()["jid"], "inopen01");
    // Only paused queues listed: null after 2 s, even though a job waits there.
    assert!(h.fetch(1, "p").is_none());
    assert!(h.core.parked_by_queue.is_empty(), "waits on no queue");
    h.push("inpaus02", r#","queue":"p""#);
    h.ok(0, "QUEUE RESUME p");
    assert!(
        h.wakes().is_empty(),
        "a fetch that listed only paused queues waits"
    );
    h.advance(2_000);
    assert_eq!(h.wakes(), vec![(ConnId(1), Reply::Null)]);
    // A paused queue next to an open empty one: the fetcher waits on the open one only.
    h.ok(0, "QUEUE PAUSE p");
    assert!(h.fetch(2, "p open").is_none());
    h.push("inpaus03", r#","queue":"p""#);
    assert!(h.wakes().is_empty());
    h.push("inopen02", r#","queue":"open""#);
    assert_eq!(h.wake_jids(), [(2, "inopen02".to_owned())]);
    assert_eq!(h.queue_jids("p"), ["inpaused", "inpaus02", "inpaus03"]);
}

#[test]
fn queue_paused_under_a_parked_fetcher_holds_its_jobs_until_resumed() {
    let mut h = Harness::new();
    assert!(h.fetch(1, "q").is_none());
    h.push("seed0001", r#","queue":"other""#);
    h.push("qexists1", r#","queue":"q""#);
    assert_eq!(h.wake_jids(), [(1, "qexists1".to_owned())]);
    assert!(h.fetch(1, "q").is_none());
    h.ok(0, "QUEUE PAUSE q");
    h.push("heldjob1", r#","queue":"q""#);
    assert!(h.wakes().is_empty(), "paused queue fed a fetcher");
    h.ok(0, "QUEUE RESUME q");
    assert_eq!(h.wake_jids(), [(1, "heldjob1".to_owned())]);
}

#[test]
fn stopped_workers_get_null_after_two_seconds_even_with_jobs() {
    enum How {
        Beat(&'static str),
        Signal(&'static str, WorkerState),
    }
    let table = [
        How::Beat("quiet"),
        How::Beat("terminate"),
        How::Signal("w1", WorkerState::Quiet),
        How::Signal("all", WorkerState::Terminate),
    ];
    for how in table {
        let mut h = Harness::new();
        h.hello(1, "w1");
        h.hello(2, "w1");
        h.push("waiting1", "");
        match how {
            How::Beat(state) => {
                let _ = h.bulk(
                    1,
                    &format!(r#"BEAT {{"wid":"w1","current_state":"{state}"}}"#),
                );
            }
            How::Signal(target, state) => assert_eq!(h.core.signal_worker(target, state), 1),
        }
        // Every connection of the worker is refused (decision A3).
        for conn in [1, 2] {
            assert!(h.fetch(conn, "default").is_none(), "conn {conn} got a job");
        }
        h.advance(1_999);
        assert!(h.wakes().is_empty());
        h.advance(1);
        let mut wakes = h.wakes();
        wakes.sort_by_key(|w| w.0);
        assert_eq!(
            wakes,
            vec![(ConnId(1), Reply::Null), (ConnId(2), Reply::Null)]
        );
        assert_eq!(h.queue_jids("default"), ["waiting1"]);
        assert!(h.core.working().is_empty());
        // A producer still gets it.
        assert_eq!(h.fetch(9, "default").unwrap()["jid"], "waiting1");
        assert_eq!(&*h.core.working()["waiting1"].wid, "");
    }
}

#[test]
fn quiet_workers_get_no_jobs_even_when_already_parked() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    assert!(h.fetch(1, "default").is_none());
    assert_eq!(h.core.signal_worker("w1", WorkerState::Quiet), 1);
    h.push("notforw1", "");
    assert!(
        h.wakes().is_empty(),
        "a parked FETCH of a quiet worker got a job"
    );
    h.advance(2_000);
    assert_eq!(h.wakes(), vec![(ConnId(1), Reply::Null)]);
    assert!(
        h.fetch(1, "default").is_none(),
        "quiet worker's FETCH waits"
    );
    h.advance(2_000);
    assert_eq!(h.wakes(), vec![(ConnId(1), Reply::Null)]);
    // The same through a BEAT that asks for quiet while parked.
    h.hello(2, "w2");
    assert!(h.fetch(2, "other").is_none());
    let _ = h.bulk(2, r#"BEAT {"wid":"w2","current_state":"quiet"}"#);
    h.push("notforw2", r#","queue":"other""#);
    assert!(h.wakes().is_empty());
    // Producers (no wid) still get them.
    assert_eq!(h.fetch(9, "default").unwrap()["jid"], "notforw1");
    assert_eq!(h.fetch(9, "other").unwrap()["jid"], "notforw2");
}

#[test]
fn disconnected_fetcher_leaves_nothing_behind() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    let timers = h.core.timer_count();
    assert!(h.fetch(1, "a b").is_none());
    assert!(h.fetch(2, "b").is_none());
    assert_eq!(h.core.timer_count(), timers + 2);
    h.core.disconnect(ConnId(1));
    // Conn 1's fetch timer and w1's beat timer went; conn 2's fetch timer is left.
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 1);
    assert_eq!(timers, BASE_TIMERS + 1);
    assert!(h.core.worker("w1").is_none());
    assert!(!h.core.parked.contains_key(&ConnId(1)));
    assert!(!h.core.parked_by_queue.contains_key("a"));
    assert_eq!(
        h.core.parked_by_queue["b"]
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [ConnId(2)]
    );
    h.push("fora0001", r#","queue":"a""#);
    assert!(h.wakes().is_empty());
    assert_eq!(h.queue_jids("a"), ["fora0001"]);
    h.advance(2_000);
    assert_eq!(h.wakes(), vec![(ConnId(2), Reply::Null)], "not conn 1");
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
}

// ----- heartbeats and worker states (§3.6, §6) -------------------------------------------------

#[test]
fn hello_registers_the_worker_process() {
    let mut h = Harness::new();
    h.advance(1_000);
    h.hello_json(
        1,
        r#"{"v":2,"wid":"w1","hostname":"box","pid":42,"labels":["a","b"]}"#,
    );
    let w = h.core.worker("w1").unwrap();
    assert_eq!(
        (&*w.hostname, w.pid, w.version, w.state, w.rss_kb),
        ("box", 42, 2, WorkerState::Running, 0)
    );
    assert_eq!(w.labels, vec![Box::<str>::from("a"), Box::from("b")]);
    assert_eq!((w.started_at, w.last_beat), (h.now(), h.now()));
    assert_eq!(w.conns, vec![ConnId(1)]);
    h.advance(1_000);
    h.hello(2, "w1");
    let w = h.core.worker("w1").unwrap();
    assert_eq!(w.conns, vec![ConnId(1), ConnId(2)]);
    assert_eq!(
        w.started_at,
        Harness::start().add_secs(1),
        "attach, not re-register"
    );
    // Producers (no wid, or an empty one) register no worker.
    h.hello_json(3, r#"{"v":2}"#);
    h.hello(4, "");
    h.hello_json(5, r#"{"v":2,"wid":null}"#);
    assert_eq!(h.core.workers().count(), 1);
    assert_eq!(h.core.connections(), 5);
    assert_eq!(
        h.core.timer_count(),
        BASE_TIMERS + 1,
        "one beat timer per worker"
    );
}

#[test]
fn worker_expires_60_s_after_its_last_beat() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "w1");
    h.hello(3, "w2");
    h.advance(30_000);
    h.ok(3, r#"BEAT {"wid":"w2"}"#);
    h.advance(29_999);
    assert!(h.core.worker("w1").is_some());
    assert!(h.closes().is_empty());
    h.advance(1);
    assert!(
        h.core.worker("w1").is_none(),
        "60 s after HELLO with no BEAT"
    );
    assert_eq!(h.closes(), [ConnId(1), ConnId(2)]);
    assert!(h.core.worker("w2").is_some());
    assert_eq!(h.core.stats().workers.reaped, 1);
    // A BEAT resets the deadline: w2 beat at 30 s, so it goes at 90 s.
    h.advance(29_999);
    assert!(h.core.worker("w2").is_some());
    h.advance(1);
    assert!(h.core.worker("w2").is_none());
    assert_eq!(h.closes(), [ConnId(3)]);
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
    assert_eq!(
        h.error(1, r#"BEAT {"wid":"w1"}"#),
        "ERR unknown worker w1",
        "a BEAT after expiry"
    );
}

#[test]
fn heartbeats_and_worker_states() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "w1");
    h.advance(59_000);
    h.ok(1, r#"BEAT {"wid":"w1","rss_kb":512}"#);
    let w = h.core.worker("w1").unwrap();
    assert_eq!(w.rss_kb, 512);
    assert_eq!(w.last_beat, h.now());
    h.advance(1_000);
    h.ok(9, r#"BEAT {"wid":"w1"}"#); // any connection may beat for a wid
    assert_eq!(h.core.worker("w1").unwrap().rss_kb, 0, "absent rss_kb is 0");
    h.advance(59_999);
    assert!(h.core.worker("w1").is_some(), "a BEAT resets the deadline");
    h.advance(1);
    assert!(h.core.worker("w1").is_none());
    assert_eq!(h.closes(), vec![ConnId(1), ConnId(2)]);
    assert_eq!(
        h.run(1, r#"BEAT {"wid":"w1"}"#),
        Response::Reply(Reply::err("unknown worker w1"))
    );

    h.hello(3, "w2");
    let quiet = Response::Reply(Reply::Bulk(br#"{"state":"quiet"}"#.to_vec()));
    let terminate = Response::Reply(Reply::Bulk(br#"{"state":"terminate"}"#.to_vec()));
    assert_eq!(
        h.run(3, r#"BEAT {"wid":"w2","current_state":"quiet"}"#),
        quiet
    );
    assert_eq!(
        h.run(3, r#"BEAT {"wid":"w2","current_state":"running"}"#),
        quiet
    );
    assert_eq!(h.run(3, r#"BEAT {"wid":"w2"}"#), quiet);
    assert_eq!(h.core.signal_worker("all", WorkerState::Terminate), 1);
    assert_eq!(
        h.run(3, r#"BEAT {"wid":"w2","current_state":"quiet"}"#),
        terminate
    );
    // The last connection closing removes the worker and its timer.
    let timers = h.core.timer_count();
    h.core.disconnect(ConnId(3));
    assert!(h.core.worker("w2").is_none());
    assert_eq!(h.core.timer_count(), timers - 1);
}

#[test]
fn beat_current_state_moves_only_forward() {
    const OK: &str = "+OK";
    const QUIET: &str = r#"{"state":"quiet"}"#;
    const TERM: &str = r#"{"state":"terminate"}"#;
    // Each row: BEAT payload suffixes in order, with the reply expected to each.
    let table: &[&[(&str, &str)]] = &[
        &[
            ("", OK),
            (r#","current_state":"""#, OK),
            (r#","current_state":null"#, OK),
            (r#","current_state":"running""#, OK),
            (r#","current_state":"busy""#, OK),
            (r#","current_state":"quiet""#, QUIET),
            (r#","current_state":"running""#, QUIET),
            ("", QUIET),
            (r#","current_state":"""#, QUIET),
            (r#","current_state":"quiet""#, QUIET),
            (r#","current_state":"terminate""#, TERM),
            (r#","current_state":"quiet""#, TERM),
            (r#","current_state":"running""#, TERM),
            ("", TERM),
        ],
        &[
            (r#","current_state":"terminate""#, TERM),
            (r#","current_state":"quiet""#, TERM),
        ],
        &[
            (r#","current_state":"QUIET""#, OK),
            (r#","current_state":" quiet""#, OK),
        ],
    ];
    for (row, beats) in table.iter().enumerate() {
        let mut h = Harness::new();
        h.hello(1, "w1");
        for &(suffix, want) in beats.iter() {
            let got = match h.run(1, &format!(r#"BEAT {{"wid":"w1"{suffix}}}"#)) {
                Response::Reply(Reply::Ok) => OK.to_owned(),
                Response::Reply(Reply::Bulk(b)) => String::from_utf8(b).unwrap(),
                other => panic!("{other:?}"),
            };
            assert_eq!(got, want, "row {row}, BEAT with {suffix:?}");
        }
    }
}

#[test]
fn signal_worker_shows_in_the_next_beat() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "w2");
    h.hello(3, "w3");
    assert_eq!(h.core.signal_worker("nobody", WorkerState::Quiet), 0);
    assert_eq!(h.core.signal_worker("w1", WorkerState::Quiet), 1);
    assert!(
        h.core.effects().wakes.is_empty(),
        "the worker learns by BEAT only"
    );
    assert_eq!(h.core.worker("w1").unwrap().state, WorkerState::Quiet);
    assert_eq!(h.core.worker("w2").unwrap().state, WorkerState::Running);
    assert_eq!(h.bulk(1, r#"BEAT {"wid":"w1"}"#), r#"{"state":"quiet"}"#);
    h.ok(2, r#"BEAT {"wid":"w2"}"#);
    // A signal cannot move a worker back.
    assert_eq!(h.core.signal_worker("w1", WorkerState::Running), 1);
    assert_eq!(h.bulk(1, r#"BEAT {"wid":"w1"}"#), r#"{"state":"quiet"}"#);
    assert_eq!(h.core.signal_worker("all", WorkerState::Terminate), 3);
    for (conn, wid) in [(1, "w1"), (2, "w2"), (3, "w3")] {
        assert_eq!(
            h.bulk(conn, &format!(r#"BEAT {{"wid":"{wid}"}}"#)),
            r#"{"state":"terminate"}"#
        );
    }
}

#[test]
fn last_connection_closing_removes_the_worker() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "w1");
    let _ = h.bulk(1, r#"BEAT {"wid":"w1","current_state":"quiet"}"#);
    h.core.disconnect(ConnId(1));
    assert_eq!(h.core.worker("w1").unwrap().conns, vec![ConnId(2)]);
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 1);
    h.core.disconnect(ConnId(2));
    assert!(h.core.worker("w1").is_none());
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
    assert_eq!(h.core.connections(), 0);
    assert_eq!(h.error(9, r#"BEAT {"wid":"w1"}"#), "ERR unknown worker w1");
    // Reconnecting starts again as running.
    h.hello(3, "w1");
    h.ok(3, r#"BEAT {"wid":"w1"}"#);
    h.push("forw1new", "");
    assert_eq!(h.fetch(3, "default").unwrap()["jid"], "forw1new");
}

#[test]
fn beat_of_an_unknown_worker() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    for (line, want) in [
        (r#"BEAT {"wid":"ghost"}"#, "ERR unknown worker ghost"),
        (r#"BEAT {"wid":"W1"}"#, "ERR unknown worker W1"),
        (
            r#"BEAT {"wid":"ghost","current_state":"quiet"}"#,
            "ERR unknown worker ghost",
        ),
    ] {
        assert_eq!(h.error(1, line), want);
    }
    assert!(h.core.worker("ghost").is_none());
    assert_eq!(h.core.worker("w1").unwrap().state, WorkerState::Running);
}

// ----- MUTATE (§3.11) --------------------------------------------------------------------------

/// The jobs every MUTATE fixture holds: (jid, jobtype, args).
const MUTATE_JOBS: [(&str, &str, &str); 4] = [
    ("mut-a-01", "A", "[1]"),
    ("mut-b-02", "B", "[2]"),
    ("mut-b-03", "B", "[1]"),
    ("mut-c-04", "C", r#"["x",1]"#),
];

/// A harness whose `target` set holds [`MUTATE_JOBS`] (queue `mq`), one second after they got
/// there, with nothing anywhere else.
fn mutate_fixture(target: SetName) -> Harness {
    let mut h = Harness::with(CoreConfig::default());
    let at = h.now().add_secs(3_600).to_rfc3339();
    for (jid, kind, args) in MUTATE_JOBS {
        let extra = match target {
            SetName::Scheduled => format!(r#","at":"{at}""#),
            SetName::Retries => String::new(),
            SetName::Dead => r#","retry":-1"#.to_owned(),
        };
        h.ok(
            0,
            &format!(
                r#"PUSH {{"jid":"{jid}","jobtype":"{kind}","args":{args},"queue":"mq"{extra}}}"#
            ),
        );
    }
    if target != SetName::Scheduled {
        for (jid, ..) in MUTATE_JOBS {
            assert_eq!(h.fetch(1, "mq").unwrap()["jid"], jid);
            h.fail(jid);
        }
    }
    h.advance(1_000);
    assert_eq!(h.core.set(target).len(), 4);
    h
}

#[test]
fn mutate_operations_targets_and_filters() {
    // (filter JSON, or None for no filter key; jids it selects, by their last two characters)
    let filters: &[(Option<&str>, &[&str])] = &[
        (None, &["01", "02", "03", "04"]),
        (Some("null"), &["01", "02", "03", "04"]),
        (Some("{}"), &["01", "02", "03", "04"]),
        (Some(r#"{"jids":["mut-a-01","mut-c-04"]}"#), &["01", "04"]),
        (
            Some(r#"{"jids":["mut-a-01"],"jobtype":"B","regexp":"*"}"#),
            &["01"],
        ),
        (Some(r#"{"jids":[],"jobtype":"B"}"#), &["02", "03"]),
        (Some(r#"{"jids":["mut-a-0","nosuchjob"]}"#), &[]),
        (Some(r#"{"jobtype":"B"}"#), &["02", "03"]),
        (Some(r#"{"jobtype":"Z"}"#), &[]),
        (Some(r#"{"jobtype":""}"#), &["01", "02", "03", "04"]),
        (Some(r#"{"regexp":"*\"args\":\\[1\\]*"}"#), &["01", "03"]),
        // `[1]` is a character class: this glob wants `"args":1`, which no job has.
        (Some(r#"{"regexp":"*\"args\":[1]*"}"#), &[]),
        (Some(r#"{"regexp":"*\"args\":[[]1]*"}"#), &["01", "03"]),
        (
            Some(r#"{"regexp":"*\"args\":\\[1\\]*","jobtype":"B"}"#),
            &["03"],
        ),
        (Some(r#"{"regexp":"*mut-?-0[23]*"}"#), &["02", "03"]),
        (
            Some(r#"{"regexp":"*\"jobtype\":\"[^B]\"*"}"#),
            &["01", "04"],
        ),
        (Some(r#"{"regexp":"*\"args\":\\[\"x\"*"}"#), &["04"]),
        // The glob must cover the whole text.
        (Some(r#"{"regexp":"mut-a-01"}"#), &[]),
        (Some(r#"{"regexp":"*mut-a-01"}"#), &[]),
    ];
    for target in SetName::ALL {
        for op in ["kill", "discard", "requeue", "clear"] {
            for &(filter, selected) in filters {
                let mut h = mutate_fixture(target);
                let before: Vec<(SetKey, String, Vec<u8>)> = h
                    .core
                    .set(target)
                    .iter()
                    .map(|(k, j)| (*k, j.jid().to_string(), j.to_json()))
                    .collect();
                let picked: Vec<&(SetKey, String, Vec<u8>)> = before
                    .iter()
                    .filter(|(_, jid, _)| {
                        op == "clear" || selected.iter().any(|s| jid.ends_with(s))
                    })
                    .collect();
                let kept: Vec<String> = before
                    .iter()
                    .filter(|b| !picked.iter().any(|p| p.1 == b.1))
                    .map(|b| b.1.clone())
                    .collect();
                let filter_field = filter
                    .map(|f| format!(r#","filter":{f}"#))
                    .unwrap_or_default();
                let line = format!(
                    r#"MUTATE {{"cmd":"{op}","target":"{}"{filter_field}}}"#,
                    target.as_str()
                );
                h.ok(0, &line);
                let what = format!("{line} (selected {selected:?})");
                let in_dead_before =
                    |jid: &str| target == SetName::Dead && kept.iter().any(|k| k == jid);
                match op {
                    "clear" | "discard" => {
                        assert_eq!(h.jids(target), kept, "{what}");
                        if target != SetName::Dead {
                            assert!(h.core.set(SetName::Dead).is_empty(), "{what}");
                        }
                        assert!(h.queue_jids("mq").is_empty(), "{what}");
                    }
                    "kill" => {
                        let dead: Vec<(SetKey, String, Vec<u8>)> = h
                            .core
                            .set(SetName::Dead)
                            .iter()
                            .map(|(k, j)| (*k, j.jid().to_string(), j.to_json()))
                            .collect();
                        if target != SetName::Dead {
                            assert_eq!(h.jids(target), kept, "{what}");
                        }
                        let killed: Vec<&(SetKey, String, Vec<u8>)> =
                            dead.iter().filter(|d| !in_dead_before(&d.1)).collect();
                        assert_eq!(
                            killed.iter().map(|d| &d.1).collect::<Vec<_>>(),
                            picked.iter().map(|p| &p.1).collect::<Vec<_>>(),
                            "{what}"
                        );
                        for (d, p) in killed.iter().zip(&picked) {
                            assert_eq!(d.0.at, h.now().add_secs(180 * 86_400), "{what}");
                            assert_eq!(d.2, p.2, "{what}: kill changed the payload");
                        }
                        assert!(h.queue_jids("mq").is_empty(), "{what}");
                    }
                    "requeue" => {
                        assert_eq!(h.jids(target), kept, "{what}");
                        let queued: Vec<Vec<u8>> = h
                            .core
                            .queue_ref("mq")
                            .map(|q| q.jobs.iter().map(|j| j.to_json()).collect())
                            .unwrap_or_default();
                        // The stored payload as is: failure and enqueued_at untouched.
                        assert_eq!(
                            queued,
                            picked.iter().map(|p| p.2.clone()).collect::<Vec<_>>(),
                            "{what}"
                        );
                        if target != SetName::Dead {
                            assert!(h.core.set(SetName::Dead).is_empty(), "{what}");
                        }
                    }
                    _ => unreachable!(),
                }
                for set in SetName::ALL {
                    assert_eq!(
                        h.core.set_timers[set as usize].is_some(),
                        !h.core.set(set).is_empty(),
                        "{what}: {} timer",
                        set.as_str()
                    );
                }
                let armed = SetName::ALL
                    .iter()
                    .filter(|s| !h.core.set(**s).is_empty())
                    .count();
                assert_eq!(h.core.timer_count(), BASE_TIMERS + armed, "{what}");
            }
        }
    }
}

#[test]
fn mutate_filters_and_operations() {
    let mut h = Harness::new();
    let at = h.now().add_secs(3600).to_rfc3339();
    for (jid, kind, args) in [
        ("sched-a1", "A", "[1]"),
        ("sched-b1", "B", "[2]"),
        ("sched-b2", "B", "[3]"),
        ("sched-c1", "C", "[4]"),
    ] {
        h.ok(
            0,
            &format!(r#"PUSH {{"jid":"{jid}","jobtype":"{kind}","args":{args},"at":"{at}"}}"#),
        );
    }
    h.ok(0, r#"MUTATE {"cmd":"discard","target":"scheduled","filter":{"jids":["sched-a1"],"jobtype":"B"}}"#);
    assert_eq!(
        h.jids(SetName::Scheduled),
        ["sched-b1", "sched-b2", "sched-c1"]
    );
    h.ok(
        0,
        r#"MUTATE {"cmd":"kill","target":"scheduled","filter":{"regexp":"*\"args\":[[]3]*"}}"#,
    );
    assert_eq!(h.jids(SetName::Scheduled), ["sched-b1", "sched-c1"]);
    assert!(h.set_job(SetName::Dead, "sched-b2").is_some());
    h.ok(
        0,
        r#"MUTATE {"cmd":"requeue","target":"scheduled","filter":{"jobtype":"B"}}"#,
    );
    assert_eq!(h.jids(SetName::Scheduled), ["sched-c1"]);
    let q = h.core.queue_ref("default").unwrap();
    assert_eq!(q.jobs[0].jid(), "sched-b1");
    assert!(
        q.jobs[0].enqueued_at().is_none(),
        "requeue does not stamp enqueued_at"
    );
    h.ok(
        0,
        r#"MUTATE {"cmd":"clear","target":"scheduled","filter":{"jids":["nothing"]}}"#,
    );
    assert!(h.jids(SetName::Scheduled).is_empty());
    // Requeue from dead keeps the failure.
    h.push("deadjob1", r#","retry":-1"#);
    h.fetch(1, "default").unwrap(); // sched-b1
    h.fetch(1, "default").unwrap();
    h.fail("deadjob1");
    h.ok(
        0,
        r#"MUTATE {"cmd":"requeue","target":"dead","filter":{"jids":["deadjob1"]}}"#,
    );
    let job = h.fetch(1, "default").unwrap();
    assert_eq!(job["jid"], "deadjob1");
    assert_eq!(job["failure"]["message"], "m");
    // Discard with no filter empties the set.
    h.ok(0, r#"MUTATE {"cmd":"discard","target":"dead"}"#);
    assert!(h.core.set(SetName::Dead).is_empty());
}

#[test]
fn requeue_keeps_failure_and_enqueued_at_and_wakes_a_fetcher() {
    let mut h = Harness::new();
    h.push("requeue1", "");
    let enqueued_at = h.now().to_rfc3339();
    h.fetch(1, "default").unwrap();
    h.advance(5_000);
    h.fail("requeue1");
    h.advance(3_000);
    assert!(h.fetch(2, "default").is_none());
    h.ok(0, r#"MUTATE {"cmd":"requeue","target":"retries"}"#);
    assert_eq!(h.wake_jids(), [(2, "requeue1".to_owned())]);
    let job = &h.core.working()["requeue1"].job;
    assert_eq!(
        job.enqueued_at().map(|t| t.to_rfc3339()).as_deref(),
        Some(enqueued_at.as_str())
    );
    let f = job.failure().unwrap();
    assert_eq!((f.retry_count, &*f.message), (0, "m"));
    assert!(h.core.set(SetName::Retries).is_empty());
    assert_eq!(
        h.core.timer_count(),
        BASE_TIMERS + 1,
        "retry timer disarmed"
    );
    // Its old retry time passes with nothing happening.
    h.advance(60_000);
    assert!(h.core.working().contains_key("requeue1"));
    assert_eq!(h.core.stats().retries.enqueued, 0);
}

#[test]
fn mutate_jids_filter_matches_the_stored_text() {
    // Faktory matches `"jid":"<jid>"` anywhere in the stored JSON, so a job whose args carry
    // that text is selected too.
    let mut h = Harness::new();
    let at = h.now().add_secs(3_600).to_rfc3339();
    h.ok(
        0,
        &format!(r#"PUSH {{"jid":"target01","jobtype":"T","args":[],"at":"{at}"}}"#),
    );
    h.ok(
        0,
        &format!(
            r#"PUSH {{"jid":"bystand1","jobtype":"T","args":[{{"jid":"target01"}}],"at":"{at}"}}"#
        ),
    );
    h.ok(
        0,
        r#"MUTATE {"cmd":"discard","target":"scheduled","filter":{"jids":["target01"]}}"#,
    );
    assert!(
        h.jids(SetName::Scheduled).is_empty(),
        "{:?}",
        h.jids(SetName::Scheduled)
    );
}

#[test]
fn mutate_regexp_with_jobtype_matches_the_stored_text() {
    // Faktory checks the jobtype of a regexp filter with strings.Index on the stored JSON, so a
    // job whose args carry `"jobtype":"X"` is selected along with the jobs of type X.
    let mut h = Harness::new();
    let at = h.now().add_secs(3_600).to_rfc3339();
    h.ok(
        0,
        &format!(r#"PUSH {{"jid":"typed001","jobtype":"X","args":[],"at":"{at}"}}"#),
    );
    h.ok(
        0,
        &format!(
            r#"PUSH {{"jid":"carrier1","jobtype":"Y","args":[{{"jobtype":"X"}}],"at":"{at}"}}"#
        ),
    );
    h.ok(
        0,
        r#"MUTATE {"cmd":"discard","target":"scheduled","filter":{"regexp":"*","jobtype":"X"}}"#,
    );
    assert!(
        h.jids(SetName::Scheduled).is_empty(),
        "{:?}",
        h.jids(SetName::Scheduled)
    );
}

#[test]
fn refused_mutate_changes_nothing() {
    let mut h = mutate_fixture(SetName::Retries);
    for (line, want) in [
        ("MUTATE", "ERR invalid format"),
        (
            r#"MUTATE {"cmd":"nuke","target":"retries"}"#,
            "ERR unknown mutate operation",
        ),
        (
            r#"MUTATE {"cmd":"kill","target":"working"}"#,
            "ERR invalid target for mutation command",
        ),
        (
            r#"MUTATE {"cmd":"nuke","target":"working"}"#,
            "ERR unknown mutate operation",
        ),
        (
            r#"MUTATE {"cmd":"discard","target":"queue"}"#,
            "ERR invalid target for mutation command",
        ),
    ] {
        assert_eq!(h.error(0, line), want, "{line}");
    }
    assert!(h.error(0, "MUTATE {nope").starts_with("ERR "));
    assert_eq!(h.core.set(SetName::Retries).len(), 4);
}

// ----- QUEUE and FLUSH (§3.8, §3.12, §7) ----------------------------------------------------------

#[test]
fn queue_pause_resume_remove() {
    let mut h = Harness::new();
    for q in ["a", "b", "c"] {
        h.push(&format!("{q}-job-01"), &format!(r#","queue":"{q}""#));
    }
    // (command, paused queues after it, existing queues after it)
    let table: &[(&str, &[&str], &[&str])] = &[
        ("QUEUE PAUSE a c", &["a", "c"], &["a", "b", "c"]),
        ("QUEUE RESUME *", &[], &["a", "b", "c"]),
        ("QUEUE pause *", &["a", "b", "c"], &["a", "b", "c"]),
        ("QUEUE Resume b nope", &["a", "c"], &["a", "b", "c"]),
        ("QUEUE PAUSE nope", &["a", "c"], &["a", "b", "c"]),
        ("QUEUE REMOVE a", &["c"], &["b", "c"]),
        ("PUSH a", &["c"], &["a", "b", "c"]),
        ("QUEUE PAUSE * b", &["a", "b", "c"], &["a", "b", "c"]),
        ("QUEUE REMOVE b nope", &["a", "c"], &["a", "c"]),
        ("QUEUE RESUME a", &["c"], &["a", "c"]),
        ("QUEUE REMOVE *", &[], &[]),
    ];
    for &(cmd, paused, existing) in table {
        if cmd == "PUSH a" {
            h.push("a-job-02", r#","queue":"a""#);
        } else {
            h.ok(0, cmd);
        }
        let got_existing: Vec<&str> = h.core.queues().map(|(n, _)| n).collect();
        let got_paused: Vec<&str> = h
            .core
            .queues()
            .filter(|(_, q)| q.paused)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(got_existing, existing, "after {cmd}");
        assert_eq!(got_paused, paused, "after {cmd}");
    }
    // REMOVE took the jobs with it.
    for set in SetName::ALL {
        assert!(h.core.set(set).is_empty());
    }
    assert!(h.core.working().is_empty());
    for (line, want) in [
        ("QUEUE FOO x", "ERR no such QUEUE subcommand: FOO"),
        (
            "QUEUE latency *",
            "ERR QUEUE LATENCY does not support wildcards",
        ),
        ("QUEUE PAUSE", "ERR internal error"),
        ("QUEUE", "ERR internal error"),
    ] {
        assert_eq!(h.error(0, line), want, "{line}");
    }
}

#[test]
fn queue_latency_with_the_manual_clock() {
    let mut h = Harness::new();
    let latency = |h: &mut Harness, names: &str| -> BTreeMap<String, f64> {
        let body = h.bulk(0, &format!("QUEUE LATENCY {names}"));
        let v: BTreeMap<String, Value> = serde_json::from_str(&body).unwrap();
        v.into_iter()
            .map(|(k, v)| (k, v.as_f64().unwrap_or_else(|| panic!("{body}"))))
            .collect()
    };
    let map = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    };
    h.push("lat00001", r#","queue":"lat""#);
    h.push("empty001", r#","queue":"empty""#);
    h.fetch(1, "empty").unwrap();
    h.advance(3_500);
    h.push("lat00002", r#","queue":"lat""#);
    assert_eq!(
        latency(&mut h, "lat empty nope"),
        map(&[("lat", 3.5), ("empty", 0.0), ("nope", 0.0)])
    );
    // The oldest job decides; after it is fetched the next one does.
    h.fetch(1, "lat").unwrap();
    h.advance(1_251);
    assert_eq!(latency(&mut h, "lat"), map(&[("lat", 1.251)]));
    // Paused queues still report.
    h.ok(0, "QUEUE PAUSE lat");
    assert_eq!(latency(&mut h, "lat"), map(&[("lat", 1.251)]));
    assert_eq!(h.bulk(0, "QUEUE LATENCY"), "{}");
    let body = h.bulk(0, "QUEUE LATENCY lat");
    assert_eq!(body, r#"{"lat":1.251}"#);
}

#[test]
fn queue_commands_latency_and_flush() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.push("lat00001", "");
    h.push("lat00002", r#","queue":"other""#);
    h.advance(3_500);
    let body = h.bulk(0, "QUEUE LATENCY default other nope");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["default"].as_f64(), Some(3.5), "{body}");
    assert_eq!(v["other"].as_f64(), Some(3.5), "{body}");
    assert_eq!(v["nope"].as_f64(), Some(0.0), "{body}");
    h.ok(0, "QUEUE PAUSE *");
    assert!(h.core.queues().all(|(_, q)| q.paused));
    h.ok(0, "QUEUE RESUME default");
    assert!(!h.core.queue_ref("default").unwrap().paused);
    h.ok(0, "QUEUE PAUSE never-seen");
    assert!(
        h.core.queue_ref("never-seen").is_none(),
        "only existing queues can be paused"
    );
    h.ok(0, "QUEUE REMOVE other");
    assert!(h.core.queue_ref("other").is_none());
    h.fetch(1, "default").unwrap();
    h.ok(1, r#"ACK {"jid":"lat00001"}"#);
    h.push("flushed1", "");
    h.ok(0, "FLUSH");
    assert_eq!(h.core.queues().count(), 0);
    assert_eq!(h.core.stats().processed, 0);
    assert!(h.core.worker("w1").is_some(), "FLUSH keeps workers");
}

#[test]
fn flush_clears_stored_data_and_keeps_workers_and_reservations() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.push("queued01", "");
    h.push("paused01", r#","queue":"p""#);
    h.ok(0, "QUEUE PAUSE p");
    let at = h.now().add_secs(60).to_rfc3339();
    h.push("sched001", &format!(r#","at":"{at}""#));
    h.push("retry001", r#","queue":"r""#);
    h.push("dead0001", r#","queue":"r","retry":-1"#);
    h.push("acked001", r#","queue":"r""#);
    h.push("working1", r#","queue":"r""#);
    for jid in ["retry001", "dead0001", "acked001", "working1"] {
        assert_eq!(h.fetch(1, "r").unwrap()["jid"], jid);
    }
    h.fail("retry001");
    h.fail("dead0001");
    h.ok(1, r#"ACK {"jid":"acked001"}"#);
    assert!(h.fetch(2, "empty").is_none());
    assert_eq!((h.core.stats().processed, h.core.stats().failures), (3, 2));
    h.records();

    h.ok(0, "FLUSH");
    assert_eq!(h.records(), [Record::Flush]);
    assert_eq!(h.core.queues().count(), 0);
    for set in SetName::ALL {
        assert!(h.core.set(set).is_empty(), "{}", set.as_str());
        assert!(h.core.set_timers[set as usize].is_none());
    }
    let s = h.core.stats();
    assert_eq!((s.processed, s.failures), (0, 0));
    assert!(s.daily.is_empty());
    assert!(h.core.worker("w1").is_some(), "workers survive");
    assert!(
        h.core.working().contains_key("working1"),
        "reservations survive"
    );
    // Timers left: housekeeping, w1's beat, working1's reservation, conn 2's fetch.
    assert_eq!(h.core.timer_count(), BASE_TIMERS + 3);
    // The parked fetcher still waits, and a pre-FLUSH reservation still counts when ACKed.
    h.push("afterfl1", r#","queue":"empty""#);
    assert_eq!(h.wake_jids(), [(2, "afterfl1".to_owned())]);
    h.ok(1, r#"ACK {"jid":"working1"}"#);
    assert_eq!(h.core.stats().processed, 1);
    h.push("paused02", r#","queue":"p""#);
    assert!(
        !h.core.queue_ref("p").unwrap().paused,
        "paused marks went too"
    );
    // Nothing scheduled before the FLUSH shows up later.
    h.advance(120_000);
    assert!(h.queue_jids("default").is_empty());
}

// ----- the dead set (§5.7, decision A6) --------------------------------------------------------

#[test]
fn dead_set_cap_and_purge() {
    let mut h = Harness::with(CoreConfig {
        dead_max: 3,
        dead_ttl_secs: 100,
        ..CoreConfig::default()
    });
    for i in 0..4 {
        let jid = format!("deadcap{i}");
        h.push(&jid, r#","retry":-1"#);
        h.fetch(1, "default").unwrap();
        h.fail(&jid);
        h.advance(10);
    }
    assert_eq!(h.jids(SetName::Dead), ["deadcap1", "deadcap2", "deadcap3"]);
    assert_eq!(h.core.stats().dead_trimmed, 1);
    assert_eq!(h.core.stats().failures, 4, "trimmed jobs still counted");
    // deadcap1 died at 10 ms, so it goes at 100.010 s; the others 10 ms apart.
    h.advance(100_010 - 40 - 1);
    assert_eq!(h.core.set(SetName::Dead).len(), 3);
    h.advance(1);
    assert_eq!(h.jids(SetName::Dead), ["deadcap2", "deadcap3"]);
    h.advance(9);
    assert_eq!(h.core.set(SetName::Dead).len(), 2);
    h.advance(11);
    assert!(h.core.set(SetName::Dead).is_empty());
    assert_eq!(h.core.stats().dead.enqueued, 3);
    assert_eq!(h.core.timer_count(), BASE_TIMERS);
}

#[test]
fn dead_cap_applies_to_killed_jobs() {
    let mut h = Harness::with(CoreConfig {
        dead_max: 2,
        ..CoreConfig::default()
    });
    let at = h.now().add_secs(600).to_rfc3339();
    for jid in ["killed01", "killed02", "killed03"] {
        h.push(jid, &format!(r#","at":"{at}""#));
    }
    h.ok(0, r#"MUTATE {"cmd":"kill","target":"scheduled"}"#);
    assert_eq!(h.jids(SetName::Dead), ["killed02", "killed03"]);
    assert_eq!(h.core.stats().dead_trimmed, 1);
    assert!(h.core.set(SetName::Scheduled).is_empty());
}

#[test]
fn dead_jobs_purge_after_the_default_180_days() {
    let mut h = Harness::new();
    h.push("morgue01", r#","retry":-1"#);
    h.fetch(1, "default").unwrap();
    h.fail("morgue01");
    h.advance(180 * 86_400_000 - 1);
    assert_eq!(h.jids(SetName::Dead), ["morgue01"]);
    h.advance(1);
    assert!(h.core.set(SetName::Dead).is_empty());
}

// ----- PUSHB (§3.2) ----------------------------------------------------------------------------

#[test]
fn pushb_reports_each_failed_job() {
    let mut h = Harness::new();
    let body = h.bulk(
        0,
        r#"PUSHB [{"jid":"pushb001","jobtype":"T","args":[]},{"jid":"short","jobtype":"T","args":[]},{"jobtype":"T","args":[]}]"#,
    );
    assert_eq!(
        body,
        r#"{"":"jobs must have a reasonable jid parameter","short":"jobs must have a reasonable jid parameter"}"#
    );
    assert_eq!(h.core.queue_ref("default").unwrap().jobs.len(), 1);
    assert_eq!(h.bulk(0, "PUSHB []"), "{}");
}

#[test]
fn pushb_error_texts_and_partial_success() {
    let mut h = Harness::new();
    let at = h.now().add_secs(60).to_rfc3339();
    let jobs = [
        r#"{"jid":"good0001","jobtype":"T","args":[]}"#.to_owned(),
        r#"{"jid":"short","jobtype":"T","args":[]}"#.to_owned(),
        r#"{"jobtype":"T","args":[]}"#.to_owned(),
        r#"{"jid":"nojobtyp","args":[]}"#.to_owned(),
        r#"{"jid":"emptytyp","jobtype":"","args":null}"#.to_owned(),
        r#"{"jid":"noargs01","jobtype":"T"}"#.to_owned(),
        r#"{"jid":"nullargs","jobtype":"T","args":null}"#.to_owned(),
        r#"{"jid":"toolong1","jobtype":"T","args":[],"reserve_for":86401}"#.to_owned(),
        r#"{"jid":"badat001","jobtype":"T","args":[],"at":"tomorrow"}"#.to_owned(),
        r#"{"jid":"badqueue","jobtype":"T","args":[],"queue":"no way"}"#.to_owned(),
        format!(r#"{{"jid":"sched001","jobtype":"T","args":[],"at":"{at}"}}"#),
        r#"{"jid":"short","jobtype":"","args":[]}"#.to_owned(),
        r#"{"jid":"good0002","jobtype":"T","args":[],"queue":"other"}"#.to_owned(),
    ];
    let body = h.bulk(0, &format!("PUSHB [{}]", jobs.join(",")));
    let got: BTreeMap<String, String> = serde_json::from_str(&body).unwrap();
    let at_error = got.get("badat001").cloned().unwrap_or_default();
    let want: BTreeMap<String, String> = [
        ("short", "jobs must have a reasonable jid parameter"),
        ("", "jobs must have a reasonable jid parameter"),
        ("nojobtyp", "jobs must have a jobtype parameter"),
        ("emptytyp", "jobs must have a jobtype parameter"),
        ("noargs01", "jobs must have an args parameter"),
        ("nullargs", "jobs must have an args parameter"),
        ("toolong1", "jobs cannot be reserved for more than one day"),
        ("badat001", at_error.as_str()),
        (
            "badqueue",
            r#"cannot get "no way" queue: queue names must match \A[a-zA-Z0-9._-]+\z"#,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(got, want, "{body}");
    assert!(
        at_error.starts_with(r#"invalid timestamp for 'at': "tomorrow": "#),
        "{at_error}"
    );
    assert_eq!(h.queue_jids("default"), ["good0001"]);
    assert_eq!(h.queue_jids("other"), ["good0002"]);
    assert_eq!(h.jids(SetName::Scheduled), ["sched001"]);
    let created = |h: &Harness, q: &str| h.core.queue_ref(q).unwrap().jobs[0].created_at();
    assert_eq!(created(&h, "default"), created(&h, "other"));
    assert_eq!(&*created(&h, "default"), START);

    // One job of the wrong shape refuses the whole batch.
    let e = h.error(
        0,
        r#"PUSHB [{"jid":"fine0001","jobtype":"T","args":[]},{"jid":"typebad1","jobtype":"T","args":[],"retry":"x"}]"#,
    );
    assert!(e.starts_with("ERR invalid JSON: "), "{e}");
    assert!(h.core.queue_ref("default").unwrap().jobs.len() == 1);
    assert!(h
        .error(0, r#"PUSHB {"jid":"x"}"#)
        .starts_with("ERR invalid JSON: "));
    // All good: exactly {}.
    assert_eq!(
        h.bulk(
            0,
            r#"PUSHB [{"jid":"fine0001","jobtype":"T","args":[]},{"jid":"fine0002","jobtype":"T","args":[]}]"#
        ),
        "{}"
    );
    assert_eq!(
        h.queue_jids("default"),
        ["good0001", "fine0001", "fine0002"]
    );
}

// ----- journal records ---------------------------------------------------------------------------

#[test]
fn every_change_is_a_record() {
    let mut h = Harness::new();
    h.push("record01", "");
    h.fetch(1, "default").unwrap();
    h.fail("record01");
    let day = h.now().date_utc();
    let records = h.records();
    assert!(
        matches!(&records[0], Record::Enqueue { job } if job.starts_with(br#"{"retry":25,"jid":"record01""#))
    );
    assert!(
        matches!(&records[1], Record::Reserve { queue, jid, .. } if &**queue == "default" && &**jid == "record01")
    );
    assert_eq!(
        records[2],
        Record::Release {
            jid: "record01".into()
        }
    );
    assert_eq!(
        records[3],
        Record::Count {
            processed: 1,
            failures: 1,
            day: day.into()
        }
    );
    assert!(matches!(
        &records[4],
        Record::SetAdd {
            set: SetName::Retries,
            ..
        }
    ));
    assert_eq!(records.len(), 5);
    h.ok(0, r#"MUTATE {"cmd":"discard","target":"retries"}"#);
    assert!(matches!(
        h.records()[..],
        [Record::SetRemove {
            set: SetName::Retries,
            ..
        }]
    ));
}

/// Drives one short history through every kind of change; returns the records of each step.
fn record_script(h: &mut Harness) -> Vec<(&'static str, Vec<Record>)> {
    let mut out = Vec::new();
    let mut step = |h: &mut Harness, name: &'static str, f: &dyn Fn(&mut Harness)| {
        h.records();
        f(h);
        out.push((name, h.records()));
    };
    h.hello(1, "w1");
    step(h, "push", &|h| h.push("rec00001", ""));
    step(h, "fetch", &|h| {
        h.fetch(1, "default").unwrap();
    });
    step(h, "ack", &|h| h.ok(1, r#"ACK {"jid":"rec00001"}"#));
    step(h, "ack again", &|h| h.ok(1, r#"ACK {"jid":"rec00001"}"#));
    step(h, "push at", &|h| {
        let at = h.now().add_secs(5).to_rfc3339();
        h.push("rec00002", &format!(r#","at":"{at}""#));
    });
    step(h, "promote", &|h| h.advance(5_000));
    step(h, "fetch 2", &|h| {
        h.fetch(1, "default").unwrap();
    });
    step(h, "fail", &|h| h.fail("rec00002"));
    step(h, "kill", &|h| {
        h.ok(0, r#"MUTATE {"cmd":"kill","target":"retries"}"#)
    });
    step(h, "pause", &|h| h.ok(0, "QUEUE PAUSE default"));
    step(h, "pause again", &|h| h.ok(0, "QUEUE PAUSE default nope"));
    step(h, "resume", &|h| h.ok(0, "QUEUE RESUME default"));
    step(h, "park", &|h| assert!(h.fetch(1, "default").is_none()));
    step(h, "timeout", &|h| h.advance(2_000));
    step(h, "beat", &|h| h.ok(1, r#"BEAT {"wid":"w1"}"#));
    step(h, "push 3", &|h| h.push("rec00003", r#","reserve_for":60"#));
    step(h, "fetch 3", &|h| {
        h.fetch(1, "default").unwrap();
    });
    step(h, "expire", &|h| h.advance(60_000));
    step(h, "retry", &|h| {
        let k = h.core.set(SetName::Retries).first_key().unwrap();
        h.advance((h.now().nanos_until(k.at) / 1_000_000) as u64);
    });
    step(h, "remove", &|h| h.ok(0, "QUEUE REMOVE default nope"));
    step(h, "flush", &|h| h.ok(0, "FLUSH"));
    out
}

#[test]
fn records_for_each_change_in_order() {
    let mut h = Harness::new();
    let steps = record_script(&mut h);
    let day = Harness::start().date_utc();
    let kinds: Vec<(&str, Vec<String>)> = steps
        .iter()
        .map(|(name, recs)| {
            let k = recs
                .iter()
                .map(|r| match r {
                    Record::Enqueue { .. } => "Enqueue".to_owned(),
                    Record::Reserve { .. } => "Reserve".to_owned(),
                    Record::Release { .. } => "Release".to_owned(),
                    Record::SetAdd { set, .. } => format!("SetAdd {}", set.as_str()),
                    Record::SetRemove { set, .. } => format!("SetRemove {}", set.as_str()),
                    Record::Count {
                        processed,
                        failures,
                        ..
                    } => format!("Count {processed} {failures}"),
                    Record::Pause { queue, paused } => format!("Pause {queue} {paused}"),
                    Record::RemoveQueue { queue } => format!("RemoveQueue {queue}"),
                    Record::Flush => "Flush".to_owned(),
                    Record::Totals { .. } => "Totals".to_owned(),
                })
                .collect();
            (*name, k)
        })
        .collect();
    let want: Vec<(&str, Vec<&str>)> = vec![
        ("push", vec!["Enqueue"]),
        ("fetch", vec!["Reserve"]),
        ("ack", vec!["Release", "Count 1 0"]),
        ("ack again", vec![]),
        ("push at", vec!["SetAdd scheduled"]),
        ("promote", vec!["SetRemove scheduled", "Enqueue"]),
        ("fetch 2", vec!["Reserve"]),
        ("fail", vec!["Release", "Count 1 1", "SetAdd retries"]),
        ("kill", vec!["SetRemove retries", "SetAdd dead"]),
        ("pause", vec!["Pause default true"]),
        ("pause again", vec![]),
        ("resume", vec!["Pause default false"]),
        ("park", vec![]),
        ("timeout", vec![]),
        ("beat", vec![]),
        ("push 3", vec!["Enqueue"]),
        ("fetch 3", vec!["Reserve"]),
        ("expire", vec!["Release", "Count 1 1", "SetAdd retries"]),
        ("retry", vec!["SetRemove retries", "Enqueue"]),
        ("remove", vec!["RemoveQueue default"]),
        ("flush", vec!["Flush"]),
    ];
    let got: Vec<(&str, Vec<&str>)> = kinds
        .iter()
        .map(|(n, k)| (*n, k.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(got, want);

    // The payloads: what was stored, at the keys the sets use.
    let find = |name: &str| &steps.iter().find(|s| s.0 == name).unwrap().1;
    match &find("fetch")[0] {
        Record::Reserve {
            queue,
            jid,
            wid,
            expires_at,
        } => {
            assert_eq!((&**queue, &**jid, &**wid), ("default", "rec00001", "w1"));
            assert_eq!(*expires_at, Harness::start().add_secs(1_800));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        find("ack")[1],
        Record::Count {
            processed: 1,
            failures: 0,
            day: day.as_str().into()
        }
    );
    let (Record::SetAdd { key: added, .. }, Record::SetRemove { key: removed, .. }) =
        (&find("push at")[0], &find("promote")[0])
    else {
        panic!("{:?} {:?}", find("push at"), find("promote"));
    };
    assert_eq!(added, removed);
    assert_eq!(added.at, Harness::start().add_secs(5));
    match &find("promote")[1] {
        Record::Enqueue { job } => {
            let j: Value = serde_json::from_slice(job).unwrap();
            assert_eq!(j["jid"], "rec00002");
            assert_eq!(ts(&j["enqueued_at"]), Harness::start().add_secs(5));
        }
        other => panic!("{other:?}"),
    }
    match &find("expire")[2] {
        Record::SetAdd { job, .. } => {
            let j: Value = serde_json::from_slice(job).unwrap();
            assert_eq!(j["failure"]["errtype"], "ReservationExpired");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn no_records_when_recording_is_off() {
    let mut h = Harness::with(CoreConfig::default());
    let steps = record_script(&mut h);
    for (name, recs) in steps {
        assert!(recs.is_empty(), "{name}: {recs:?}");
    }
}

// ----- simulation ------------------------------------------------------------------------------
//
// A seeded xorshift generator drives random commands, clock jumps, disconnects and worker
// restarts through `Core`, the way the loop would (closed connections are disconnected and the
// client reconnects). After every step the checker compares the core with a model:
// - every job is in exactly one place, and moved only the way the step allows (a FETCH takes
//   the front of the first open non-empty listed queue, ACK removes only its job, a failure
//   follows the retry policy, a tick promotes exactly what is due, MUTATE touches exactly the
//   entries its filter selects, and so on); nothing acknowledged or dropped ever comes back;
// - queues are FIFO, nothing is overdue after a tick, every wake went to a parked fetcher;
// - counters, worker table, parked fetchers and timers agree with the model.
// A failure names the seed and step; `WERK_SIM_SEED` and `WERK_SIM_STEPS` rerun one seed.

const SIM_QUEUES: [&str; 3] = ["a", "b", "c"];
const SIM_WIDS: [&str; 2] = ["wA", "wB"];
/// Connections 1–2 belong to wA, 3–4 to wB, 5–6 are producers.
const SIM_CONNS: u64 = 6;
const SIM_DEAD_MAX: usize = 4;
const SIM_DEAD_TTL_SECS: i64 = 1_800;
/// Above this many live jobs, pushes turn into fetches.
const SIM_LIVE_MAX: usize = 100;
const FETCH_BLOCK_MS: u64 = 2_000;
const NO_KEY: SetKey = SetKey {
    at: Timestamp(0),
    seq: 0,
};
const BEAT_TIMEOUT_MS: u64 = 60_000;

fn sim_wid(conn: u64) -> Option<&'static str> {
    match conn {
        1 | 2 => Some("wA"),
        3 | 4 => Some("wB"),
        _ => None,
    }
}

fn sim_conns(wid: &str) -> [u64; 2] {
    if wid == "wA" {
        [1, 2]
    } else {
        [3, 4]
    }
}

fn sim_jid(n: u32) -> String {
    format!("sim{n:06}")
}

fn sim_num(jid: &str) -> Option<u32> {
    jid.strip_prefix("sim")?.parse().ok()
}

/// Monotonic ms of a wall time (both clocks start together and move together).
fn mono_of(t: Timestamp) -> u64 {
    (Harness::start().nanos_until(t) / 1_000_000) as u64
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Queue(usize),
    Working,
    Set(SetName),
}

/// Where each job is: its place and key (set key; expiry for a reservation; position in a queue).
#[derive(Clone, Debug, Default)]
struct Snapshot {
    jobs: HashMap<u32, (Place, SetKey)>,
    queues: [Vec<u32>; 3],
}

fn snapshot(core: &Core) -> Result<Snapshot, String> {
    let mut s = Snapshot::default();
    let put = |s: &mut Snapshot, jid: &str, place: Place, key: SetKey| -> Result<u32, String> {
        let n = sim_num(jid).ok_or_else(|| format!("{jid} in {place:?} was never pushed"))?;
        if let Some((other, _)) = s.jobs.insert(n, (place, key)) {
            return Err(format!("{jid} is in two places: {other:?} and {place:?}"));
        }
        Ok(n)
    };
    for (name, q) in core.queues() {
        let i = SIM_QUEUES
            .iter()
            .position(|x| *x == name)
            .ok_or_else(|| format!("unexpected queue {name:?}"))?;
        for (pos, j) in q.jobs.iter().enumerate() {
            if j.queue() != name {
                return Err(format!("{} of queue {} sits in {name}", j.jid(), j.queue()));
            }
            let key = SetKey {
                at: Timestamp(0),
                seq: pos as u64,
            };
            let n = put(&mut s, j.jid(), Place::Queue(i), key)?;
            s.queues[i].push(n);
        }
    }
    for (jid, r) in core.working() {
        if r.job.jid() != &**jid {
            return Err(format!("reservation {jid} holds {}", r.job.jid()));
        }
        let key = SetKey {
            at: r.expires_at,
            seq: 0,
        };
        put(&mut s, jid, Place::Working, key)?;
    }
    for set in SetName::ALL {
        for (k, j) in core.set(set).iter() {
            put(&mut s, j.jid(), Place::Set(set), *k)?;
        }
    }
    Ok(s)
}

#[derive(Clone, Debug)]
struct SimJob {
    retry: i64,
    queue: usize,
    jobtype: usize,
    reserve_secs: i64,
    /// Failures so far.
    fails: i64,
    /// Time of the first failure.
    failed_at: Option<Timestamp>,
    /// Has entered a queue by PUSH or promotion (so it carries enqueued_at).
    stamped: bool,
    /// Acknowledged or dropped: it must never be seen again.
    gone: bool,
}

#[derive(Clone, Debug)]
struct SimWorker {
    last_beat: Timestamp,
    state: WorkerState,
}

#[derive(Debug, Default)]
struct Model {
    /// Indexed by jid number.
    jobs: Vec<SimJob>,
    live: usize,
    /// Where the jobs were after the previous step.
    prev: Snapshot,
    processed: u64,
    failures: u64,
    expiries: u64,
    trimmed: u64,
    purged: u64,
    /// Parked connections and when they parked (monotonic ms).
    parked: BTreeMap<u64, u64>,
    workers: BTreeMap<&'static str, SimWorker>,
    exists: [bool; 3],
    paused: [bool; 3],
}

/// What a step did, as far as the checker needs to know which moves it allows.
#[derive(Debug)]
enum Step {
    Push {
        new: Vec<u32>,
        wakes: Vec<(u64, u32)>,
    },
    Fetch {
        expect: Option<u32>,
    },
    Ack {
        jid: u32,
    },
    Fail {
        jid: u32,
    },
    Mutate {
        op: MutateOp,
        set: SetName,
        matched: HashSet<u32>,
    },
    Queue {
        resumed: Vec<usize>,
        removed: Vec<usize>,
    },
    Advance,
    Flush,
    Other,
}

struct Sim {
    h: Harness,
    m: Model,
    rng: u64,
}

impl Sim {
    fn new(seed: u64, recording: bool) -> Sim {
        let mut h = Harness::with(CoreConfig {
            dead_max: SIM_DEAD_MAX,
            dead_ttl_secs: SIM_DEAD_TTL_SECS,
            recording,
            ..CoreConfig::default()
        });
        for conn in 1..=SIM_CONNS {
            h.hello(conn, sim_wid(conn).unwrap_or(""));
        }
        let mut m = Model::default();
        for wid in SIM_WIDS {
            m.workers.insert(
                wid,
                SimWorker {
                    last_beat: h.now(),
                    state: WorkerState::Running,
                },
            );
        }
        Sim {
            h,
            m,
            rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        }
    }

    fn below(&mut self, n: u64) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % n
    }

    fn running(&self, conn: u64) -> bool {
        sim_wid(conn).is_none_or(|w| {
            self.m
                .workers
                .get(w)
                .is_some_and(|w| w.state == WorkerState::Running)
        })
    }

    /// Jobs of the previous snapshot in `place`, in jid order (HashMap order is not seeded).
    fn jobs_in(&self, place: Place) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .m
            .prev
            .jobs
            .iter()
            .filter(|(_, (p, _))| *p == place)
            .map(|(n, _)| *n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Runs one random step and checks it; returns a description of what it did.
    fn step(&mut self) -> Result<String, String> {
        let r = self.below(1_000);
        let (what, step) = match r {
            0..=169 if self.m.live < SIM_LIVE_MAX => self.op_push()?,
            0..=369 => self.op_fetch()?,
            370..=509 => self.op_ack()?,
            510..=589 => self.op_fail()?,
            590..=649 => self.op_mutate()?,
            650..=699 => self.op_queue()?,
            700..=829 | 973.. => self.op_advance(),
            830..=899 => self.op_beat()?,
            900..=909 => self.op_signal()?,
            910..=949 => self.op_disconnect()?,
            950..=969 => self.op_restart()?,
            _ => self.op_flush()?,
        };
        let wakes = std::mem::take(&mut self.h.core.effects().wakes);
        let closes = self.h.closes();
        verify(self, &step, &wakes, &closes).map_err(|e| format!("{what}: {e}"))?;
        Ok(what)
    }

    fn op_push(&mut self) -> Result<(String, Step), String> {
        let count = if self.below(8) == 0 {
            2 + self.below(3) as usize
        } else {
            1
        };
        // Predict which parked fetchers the new jobs go to: the longest waiting on their queue.
        let mut waiting: HashMap<String, VecDeque<u64>> = self
            .h
            .core
            .parked_by_queue
            .iter()
            .map(|(q, w)| (q.to_string(), w.iter().map(|c| c.0).collect()))
            .collect();
        let mut jsons = Vec::new();
        let mut new = Vec::new();
        let mut wakes = Vec::new();
        let now = self.h.now();
        for _ in 0..count {
            let n = self.m.jobs.len() as u32;
            let queue = self.below(3) as usize;
            let jobtype = self.below(3) as usize;
            let retry = [25, 3, 2, 1, 0, -1, -1, -1][self.below(8) as usize];
            let (reserve, reserve_secs) = match self.below(10) {
                0 => ("", 1_800),
                1 => (r#","reserve_for":5"#, 60),
                _ => (r#","reserve_for":60"#, 60),
            };
            let at_ms: Option<i64> = match self.below(10) {
                0 | 1 => Some(self.below(90_000) as i64),
                2 => Some(-(self.below(20_000) as i64)),
                _ => None,
            };
            let at = at_ms
                .map(|ms| {
                    let t = Timestamp(now.0 + ms * 1_000_000);
                    format!(r#","at":"{}""#, t.to_rfc3339())
                })
                .unwrap_or_default();
            let scheduled = at_ms.is_some_and(|ms| ms > 0);
            jsons.push(format!(
                r#"{{"jid":"{}","jobtype":"T{jobtype}","args":[{n}],"queue":"{}","retry":{retry}{reserve}{at}}}"#,
                sim_jid(n),
                SIM_QUEUES[queue]
            ));
            self.m.jobs.push(SimJob {
                retry,
                queue,
                jobtype,
                reserve_secs,
                fails: 0,
                failed_at: None,
                stamped: !scheduled,
                gone: false,
            });
            self.m.live += 1;
            new.push(n);
            if scheduled {
                continue;
            }
            self.m.exists[queue] = true;
            if self.m.paused[queue] {
                continue;
            }
            let front = waiting
                .get_mut(SIM_QUEUES[queue])
                .and_then(|w| w.pop_front());
            if let Some(conn) = front {
                for w in waiting.values_mut() {
                    w.retain(|c| *c != conn);
                }
                wakes.push((conn, n));
            }
        }
        let (line, want) = if count == 1 {
            (format!("PUSH {}", jsons[0]), Reply::Ok)
        } else {
            (
                format!("PUSHB [{}]", jsons.join(",")),
                Reply::Bulk(b"{}".to_vec()),
            )
        };
        let got = self.h.run(0, &line);
        if got != Response::Reply(want.clone()) {
            return Err(format!("{line}: {got:?}, expected {want:?}"));
        }
        Ok((line, Step::Push { new, wakes }))
    }

    fn op_fetch(&mut self) -> Result<(String, Step), String> {
        let conn = 1 + self.below(SIM_CONNS);
        if self.m.parked.contains_key(&conn) {
            return Ok((format!("conn {conn} waits"), Step::Other));
        }
        let mut names = Vec::new();
        for _ in 0..=self.below(3) {
            names.push(if self.below(15) == 0 {
                "zz"
            } else {
                SIM_QUEUES[self.below(3) as usize]
            });
        }
        let expect = if self.running(conn) {
            names.iter().find_map(|name| {
                let i = SIM_QUEUES.iter().position(|q| q == name)?;
                if !self.m.exists[i] || self.m.paused[i] {
                    return None;
                }
                self.m.prev.queues[i].first().copied()
            })
        } else {
            None
        };
        let line = format!("FETCH {}", names.join(" "));
        let what = format!("conn {conn}: {line}");
        match (self.h.run(conn, &line), expect) {
            (Response::Reply(Reply::Bulk(body)), Some(n)) => {
                let r = self
                    .h
                    .core
                    .working()
                    .get(sim_jid(n).as_str())
                    .ok_or_else(|| format!("{what}: {} not reserved", sim_jid(n)))?;
                if body != r.job.to_json() {
                    return Err(format!("{what}: reply is not the reserved job"));
                }
                if *r.wid != *sim_wid(conn).unwrap_or("") {
                    return Err(format!("{what}: reserved under wid {:?}", r.wid));
                }
            }
            (Response::Parked, None) => {
                self.m.parked.insert(conn, self.h.clock.now().mono_ms);
            }
            (got, _) => {
                let got = match got {
                    Response::Reply(Reply::Bulk(b)) => String::from_utf8_lossy(&b).into_owned(),
                    other => format!("{other:?}"),
                };
                return Err(format!(
                    "{what}: got {got}, expected {:?}",
                    expect.map(sim_jid)
                ));
            }
        }
        Ok((what, Step::Fetch { expect }))
    }

    fn op_ack(&mut self) -> Result<(String, Step), String> {
        let working = self.jobs_in(Place::Working);
        let jid = if !working.is_empty() && self.below(10) != 0 {
            working[self.below(working.len() as u64) as usize]
        } else {
            self.below(self.m.jobs.len().max(1) as u64) as u32
        };
        let conn = self.below(SIM_CONNS + 1);
        let line = format!(r#"ACK {{"jid":"{}"}}"#, sim_jid(jid));
        let got = self.h.run(conn, &line);
        if got != Response::Reply(Reply::Ok) {
            return Err(format!("{line}: {got:?}"));
        }
        Ok((line, Step::Ack { jid }))
    }

    fn op_fail(&mut self) -> Result<(String, Step), String> {
        let working = self.jobs_in(Place::Working);
        let jid = if !working.is_empty() && self.below(8) != 0 {
            working[self.below(working.len() as u64) as usize]
        } else {
            self.below(self.m.jobs.len().max(1) as u64) as u32
        };
        let backtrace = if self.below(2) == 0 {
            r#","backtrace":["sim.rs:1"]"#
        } else {
            ""
        };
        let line = format!(
            r#"FAIL {{"jid":"{}","errtype":"SimError","message":"sim failure"{backtrace}}}"#,
            sim_jid(jid)
        );
        let want = if working.contains(&jid) {
            Reply::Ok
        } else {
            Reply::err(format_args!("Job not found {}", sim_jid(jid)))
        };
        let got = self.h.run(0, &line);
        if got != Response::Reply(want.clone()) {
            return Err(format!("{line}: {got:?}, expected {want:?}"));
        }
        Ok((line, Step::Fail { jid }))
    }

    fn op_mutate(&mut self) -> Result<(String, Step), String> {
        let (op, cmd) = [
            (MutateOp::Kill, "kill"),
            (MutateOp::Discard, "discard"),
            (MutateOp::Requeue, "requeue"),
            (MutateOp::Clear, "clear"),
        ][self.below(4) as usize];
        let set = SetName::ALL[self.below(3) as usize];
        let entries = self.jobs_in(Place::Set(set));
        let jobtype = self.below(3) as usize;
        let queue = self.below(3) as usize;
        type Pick = Box<dyn Fn(u32, &SimJob) -> bool>;
        let (filter, pick): (String, Pick) = match self.below(6) {
            0 => (String::new(), Box::new(|_, _| true)),
            1 => {
                let mut jids: Vec<u32> = Vec::new();
                for _ in 0..2 {
                    if !entries.is_empty() {
                        jids.push(entries[self.below(entries.len() as u64) as usize]);
                    }
                }
                let mut names: Vec<String> = jids.iter().map(|n| sim_jid(*n)).collect();
                names.push("sim999999".into());
                (
                    format!(
                        r#","filter":{{"jids":{}}}"#,
                        serde_json::to_string(&names).unwrap()
                    ),
                    Box::new(move |n, _| jids.contains(&n)),
                )
            }
            2 => (
                format!(r#","filter":{{"jobtype":"T{jobtype}"}}"#),
                Box::new(move |_, j| j.jobtype == jobtype),
            ),
            3 => (
                format!(
                    r#","filter":{{"regexp":"*\"queue\":\"{}\"*"}}"#,
                    SIM_QUEUES[queue]
                ),
                Box::new(move |_, j| j.queue == queue),
            ),
            4 => (
                format!(
                    r#","filter":{{"regexp":"*\"queue\":\"{}\"*","jobtype":"T{jobtype}"}}"#,
                    SIM_QUEUES[queue]
                ),
                Box::new(move |_, j| j.queue == queue && j.jobtype == jobtype),
            ),
            _ => (r#","filter":{}"#.to_owned(), Box::new(|_, _| true)),
        };
        let matched: HashSet<u32> = entries
            .iter()
            .copied()
            .filter(|n| op == MutateOp::Clear || pick(*n, &self.m.jobs[*n as usize]))
            .collect();
        let line = format!(
            r#"MUTATE {{"cmd":"{cmd}","target":"{}"{filter}}}"#,
            set.as_str()
        );
        self.h.ok(0, &line);
        if op == MutateOp::Requeue {
            for n in &matched {
                self.m.exists[self.m.jobs[*n as usize].queue] = true;
            }
        }
        Ok((line, Step::Mutate { op, set, matched }))
    }

    fn op_queue(&mut self) -> Result<(String, Step), String> {
        let sub = match self.below(10) {
            0..=4 => "PAUSE",
            5..=8 => "RESUME",
            _ => "REMOVE",
        };
        let names: Vec<&str> = if self.below(5) == 0 {
            vec!["*"]
        } else {
            (0..=self.below(2))
                .map(|_| {
                    if self.below(10) == 0 {
                        "zz"
                    } else {
                        SIM_QUEUES[self.below(3) as usize]
                    }
                })
                .collect()
        };
        let targets: Vec<usize> = (0..3)
            .filter(|i| self.m.exists[*i] && (names[0] == "*" || names.contains(&SIM_QUEUES[*i])))
            .collect();
        let (mut resumed, mut removed) = (Vec::new(), Vec::new());
        for &i in &targets {
            match sub {
                "PAUSE" => self.m.paused[i] = true,
                "RESUME" => {
                    if std::mem::take(&mut self.m.paused[i]) {
                        resumed.push(i);
                    }
                }
                _ => {
                    self.m.exists[i] = false;
                    self.m.paused[i] = false;
                    removed.push(i);
                }
            }
        }
        let line = format!("QUEUE {sub} {}", names.join(" "));
        self.h.ok(0, &line);
        Ok((line, Step::Queue { resumed, removed }))
    }

    fn op_advance(&mut self) -> (String, Step) {
        let ms = match self.below(20) {
            0..=7 => self.below(2_500),
            8..=15 => self.below(70_000),
            16..=18 => self.below(700_000),
            _ => self.below(2_000_000),
        };
        self.h.advance(ms);
        (format!("advance {ms} ms"), Step::Advance)
    }

    fn op_beat(&mut self) -> Result<(String, Step), String> {
        let conn = 1 + self.below(SIM_CONNS);
        if self.below(15) == 0 {
            let line = r#"BEAT {"wid":"ghost"}"#;
            let got = self.h.run(conn, line);
            if got != Response::Reply(Reply::err("unknown worker ghost")) {
                return Err(format!("{line}: {got:?}"));
            }
            return Ok((line.to_owned(), Step::Other));
        }
        let wid = SIM_WIDS[self.below(2) as usize];
        let (field, asks) = match self.below(40) {
            0 | 1 => (r#","current_state":"quiet""#, WorkerState::Quiet),
            2 => (r#","current_state":"terminate""#, WorkerState::Terminate),
            3..=6 => (r#","current_state":"running""#, WorkerState::Running),
            7 => (r#","current_state":"""#, WorkerState::Running),
            8 => (r#","current_state":null"#, WorkerState::Running),
            _ => ("", WorkerState::Running),
        };
        let line = format!(
            r#"BEAT {{"wid":"{wid}","rss_kb":{}{field}}}"#,
            self.below(1 << 20)
        );
        let now = self.h.now();
        let w = self
            .m
            .workers
            .get_mut(wid)
            .ok_or_else(|| format!("{wid} missing from the model"))?;
        w.last_beat = now;
        w.state = w.state.max(asks);
        let want = match w.state {
            WorkerState::Running => Reply::Ok,
            WorkerState::Quiet => Reply::Bulk(br#"{"state":"quiet"}"#.to_vec()),
            WorkerState::Terminate => Reply::Bulk(br#"{"state":"terminate"}"#.to_vec()),
        };
        let got = self.h.run(conn, &line);
        if got != Response::Reply(want.clone()) {
            return Err(format!("{line}: {got:?}, expected {want:?}"));
        }
        Ok((line, Step::Other))
    }

    fn op_signal(&mut self) -> Result<(String, Step), String> {
        let target = ["wA", "wB", "all", "nobody"][self.below(4) as usize];
        let state = [WorkerState::Quiet, WorkerState::Terminate][self.below(2) as usize];
        let mut want = 0;
        for (wid, w) in self.m.workers.iter_mut() {
            if target == "all" || target == *wid {
                w.state = w.state.max(state);
                want += 1;
            }
        }
        let got = self.h.core.signal_worker(target, state);
        if got != want {
            return Err(format!("signal {target}: {got} workers, expected {want}"));
        }
        Ok((format!("signal {target} {state:?}"), Step::Other))
    }

    fn op_disconnect(&mut self) -> Result<(String, Step), String> {
        let conn = 1 + self.below(SIM_CONNS);
        self.h.core.disconnect(ConnId(conn));
        self.m.parked.remove(&conn);
        if let Some(wid) = sim_wid(conn) {
            if self.h.core.worker(wid).is_none() {
                return Err(format!("{wid} went with one of its two connections"));
            }
        }
        self.h.hello(conn, sim_wid(conn).unwrap_or(""));
        Ok((format!("reconnect conn {conn}"), Step::Other))
    }

    fn op_restart(&mut self) -> Result<(String, Step), String> {
        let wid = SIM_WIDS[self.below(2) as usize];
        let [c1, c2] = sim_conns(wid);
        for conn in [c1, c2] {
            self.h.core.disconnect(ConnId(conn));
            self.m.parked.remove(&conn);
        }
        if self.h.core.worker(wid).is_some() {
            return Err(format!("{wid} outlived its last connection"));
        }
        self.h.hello(c1, wid);
        self.h.hello(c2, wid);
        self.m.workers.insert(
            wid,
            SimWorker {
                last_beat: self.h.now(),
                state: WorkerState::Running,
            },
        );
        Ok((format!("restart {wid}"), Step::Other))
    }

    fn op_flush(&mut self) -> Result<(String, Step), String> {
        self.h.ok(0, "FLUSH");
        self.m.processed = 0;
        self.m.failures = 0;
        self.m.exists = [false; 3];
        self.m.paused = [false; 3];
        Ok(("FLUSH".to_owned(), Step::Flush))
    }
}

/// Checks one step (its wakes, closes and job moves), lets closed connections reconnect, then
/// checks the whole state.
fn verify(
    s: &mut Sim,
    step: &Step,
    wakes: &[(ConnId, Reply)],
    closes: &[ConnId],
) -> Result<(), String> {
    let cur = snapshot(&s.h.core)?;
    let woken = check_wakes(s, step, wakes, closes)?;
    check_moves(s, step, &cur, &woken)?;
    s.m.prev = cur;
    check_closes(s, step, closes)?;
    let now = s.h.now();
    let mut restarted = BTreeSet::new();
    for conn in closes {
        s.h.core.disconnect(*conn);
        s.m.parked.remove(&conn.0);
        restarted.extend(sim_wid(conn.0));
    }
    for wid in restarted {
        for conn in sim_conns(wid) {
            s.h.hello(conn, wid);
        }
        s.m.workers.insert(
            wid,
            SimWorker {
                last_beat: now,
                state: WorkerState::Running,
            },
        );
    }
    check_state(&s.h, &s.m, &s.m.prev)
}

/// Every wake answers a parked FETCH: null only from a tick after the full wait, a job only to a
/// running worker and only from steps that can enqueue. Returns the jobs handed out.
fn check_wakes(
    s: &mut Sim,
    step: &Step,
    wakes: &[(ConnId, Reply)],
    closes: &[ConnId],
) -> Result<HashSet<u32>, String> {
    let now_ms = s.h.clock.now().mono_ms;
    let mut woken = HashSet::new();
    let mut pairs = Vec::new();
    for (conn, reply) in wakes {
        let parked_at =
            s.m.parked.remove(&conn.0).ok_or_else(|| {
                format!("wake for conn {} that was not parked: {reply:?}", conn.0)
            })?;
        match reply {
            Reply::Null => {
                if !matches!(step, Step::Advance) || now_ms < parked_at + FETCH_BLOCK_MS {
                    return Err(format!(
                        "conn {} got null {} ms after parking",
                        conn.0,
                        now_ms - parked_at
                    ));
                }
            }
            Reply::Bulk(body) => {
                let enqueues = matches!(
                    step,
                    Step::Push { .. }
                        | Step::Advance
                        | Step::Queue { .. }
                        | Step::Mutate {
                            op: MutateOp::Requeue,
                            ..
                        }
                );
                let job: Value = serde_json::from_slice(body)
                    .map_err(|e| format!("wake for conn {} is not JSON: {e}", conn.0))?;
                let jid = job["jid"].as_str().unwrap_or_default().to_owned();
                if !enqueues {
                    return Err(format!(
                        "conn {} got {jid} in a step that enqueues nothing",
                        conn.0
                    ));
                }
                if !s.running(conn.0) {
                    return Err(format!("stopped worker's conn {} got {jid}", conn.0));
                }
                let r =
                    s.h.core.working().get(jid.as_str()).ok_or_else(|| {
                        format!("conn {} got {jid}, which is not reserved", conn.0)
                    })?;
                let wid = sim_wid(conn.0).unwrap_or("");
                if *r.wid != *wid && !(r.wid.is_empty() && closes.contains(conn)) {
                    return Err(format!("{jid} reserved under {:?}, not {wid:?}", r.wid));
                }
                if *body != r.job.to_json() {
                    return Err(format!("conn {} got a payload other than {jid}'s", conn.0));
                }
                let n = sim_num(&jid).ok_or_else(|| format!("woken with {jid}"))?;
                woken.insert(n);
                pairs.push((conn.0, n));
            }
            other => return Err(format!("conn {} woken with {other:?}", conn.0)),
        }
    }
    if let Step::Push { wakes: want, .. } = step {
        if pairs != *want {
            return Err(format!("push woke {pairs:?}, expected {want:?}"));
        }
    }
    Ok(woken)
}

/// How a job got from its previous place to its current one.
#[derive(Debug, PartialEq)]
enum Move {
    Fetched,
    Acked,
    Failed {
        expired: bool,
    },
    Promoted,
    Requeued,
    Killed,
    Dropped,
    /// Gone from the dead set (or on its way there) by the size cap, or by the purge if due.
    TrimmedOrPurged {
        due: bool,
    },
}

/// Checks every job's move against what the step allows, and updates the model's counters.
fn check_moves(
    s: &mut Sim,
    step: &Step,
    cur: &Snapshot,
    woken: &HashSet<u32>,
) -> Result<(), String> {
    let now = s.h.now();
    let prev = std::mem::take(&mut s.m.prev);
    let result = (|| {
        let mut maybe_trimmed = 0u64;
        let mut maybe_purged = 0u64;
        let mut trimmed_keys: Vec<SetKey> = Vec::new();
        for (&n, &(place, key)) in &prev.jobs {
            let to = cur.jobs.get(&n).copied();
            let stays = match to {
                Some((p, k)) => p == place && (matches!(p, Place::Queue(_)) || k == key),
                None => false,
            };
            if stays {
                continue;
            }
            let mv = classify(s, step, n, place, key, to, woken, now).ok_or_else(|| {
                format!(
                    "{}: {place:?} -> {:?} is not allowed by this step",
                    sim_jid(n),
                    to.map(|t| t.0)
                )
            })?;
            // A job dropped by the cap on its way into the dead set would have been the newest
            // entry but for others added in the same step (seq 0 sorts before them).
            let newest = SetKey {
                at: now.add_secs(SIM_DEAD_TTL_SECS),
                seq: 0,
            };
            if apply_move(s, n, to, &mv, now)? > 0 {
                maybe_trimmed += 1;
                trimmed_keys.push(newest);
            }
            match mv {
                Move::TrimmedOrPurged { due: true } => maybe_purged += 1,
                Move::TrimmedOrPurged { due: false } => {
                    maybe_trimmed += 1;
                    let dead = place == Place::Set(SetName::Dead);
                    trimmed_keys.push(if dead { key } else { newest });
                }
                _ => {}
            }
        }
        for (&n, &(place, _)) in &cur.jobs {
            if prev.jobs.contains_key(&n) {
                continue;
            }
            let Step::Push { new, .. } = step else {
                return Err(format!("{} appeared in {place:?} (came back?)", sim_jid(n)));
            };
            if !new.contains(&n) {
                return Err(format!("{} came back, in {place:?}", sim_jid(n)));
            }
        }
        if let Step::Push { new, .. } = step {
            for &n in new {
                let job = s.m.jobs[n as usize].clone();
                let want_scheduled = !job.stamped;
                match cur.jobs.get(&n) {
                    Some((Place::Set(SetName::Scheduled), _)) if want_scheduled => {}
                    Some((Place::Queue(q), k)) if !want_scheduled && *q == job.queue => {
                        check_enqueued_at(s, n, Place::Queue(*q), k.seq, now)?;
                    }
                    Some((Place::Working, _)) if !want_scheduled && woken.contains(&n) => {
                        check_enqueued_at(s, n, Place::Working, 0, now)?;
                    }
                    other => {
                        return Err(format!("pushed {} landed in {other:?}", sim_jid(n)));
                    }
                }
            }
        }
        check_required_moves(step, &prev, cur)?;
        check_fifo(&prev, cur)?;
        // The cap drops the oldest dead jobs first.
        if let Some(newest) = trimmed_keys.iter().max() {
            let older = cur
                .jobs
                .iter()
                .find(|(_, (p, k))| *p == Place::Set(SetName::Dead) && k < newest);
            if let Some((n, _)) = older {
                return Err(format!(
                    "the dead-set cap dropped a job newer than {}",
                    sim_jid(*n)
                ));
            }
        }
        // The cap and the purge can take the same due entry; the split must add up.
        let stats = s.h.core.stats();
        let trimmed = stats.dead_trimmed - s.m.trimmed;
        let purged = stats.dead.enqueued - s.m.purged;
        if trimmed + purged != maybe_trimmed + maybe_purged
            || trimmed < maybe_trimmed
            || purged > maybe_purged
        {
            return Err(format!(
                "{trimmed} trimmed and {purged} purged, but {maybe_trimmed} dead jobs went \
                 before their time and {maybe_purged} at it"
            ));
        }
        s.m.trimmed += trimmed;
        s.m.purged += purged;
        Ok(())
    })();
    s.m.prev = prev;
    result
}

/// The move from `from` to `to` that `step` allows for job `n`, if any.
#[allow(clippy::too_many_arguments)]
fn classify(
    s: &Sim,
    step: &Step,
    n: u32,
    from: Place,
    key: SetKey,
    to: Option<(Place, SetKey)>,
    woken: &HashSet<u32>,
    now: Timestamp,
) -> Option<Move> {
    let job = &s.m.jobs[n as usize];
    let due = key.at <= now;
    let into_queue = match to {
        Some((Place::Queue(q), _)) => q == job.queue,
        Some((Place::Working, _)) => woken.contains(&n),
        _ => false,
    };
    let matched = |op: MutateOp, set: SetName| match step {
        Step::Mutate {
            op: o,
            set: t,
            matched,
        } => *o == op && *t == set && matched.contains(&n),
        _ => false,
    };
    let can_trim = matches!(
        step,
        Step::Fail { .. }
            | Step::Advance
            | Step::Mutate {
                op: MutateOp::Kill,
                ..
            }
    );
    match (from, to.map(|t| t.0)) {
        (Place::Queue(q), Some(Place::Working)) => match step {
            Step::Fetch { expect } if *expect == Some(n) => Some(Move::Fetched),
            Step::Queue { resumed, .. } if resumed.contains(&q) && woken.contains(&n) => {
                Some(Move::Fetched)
            }
            _ => None,
        },
        (Place::Queue(q), None) => match step {
            Step::Queue { removed, .. } if removed.contains(&q) => Some(Move::Dropped),
            Step::Flush => Some(Move::Dropped),
            _ => None,
        },
        (Place::Working, None | Some(Place::Set(SetName::Retries | SetName::Dead))) => match step {
            Step::Ack { jid } if *jid == n && to.is_none() => Some(Move::Acked),
            Step::Fail { jid } if *jid == n => Some(Move::Failed { expired: false }),
            Step::Advance if due => Some(Move::Failed { expired: true }),
            _ => None,
        },
        (Place::Set(set), Some(Place::Queue(_) | Place::Working)) if into_queue => {
            if matched(MutateOp::Requeue, set) {
                Some(Move::Requeued)
            } else if set != SetName::Dead && matches!(step, Step::Advance) && due {
                Some(Move::Promoted)
            } else {
                None
            }
        }
        (Place::Set(set), Some(Place::Set(SetName::Dead))) if matched(MutateOp::Kill, set) => {
            Some(Move::Killed)
        }
        (Place::Set(set), None) => {
            if matched(MutateOp::Discard, set) || matched(MutateOp::Clear, set) {
                Some(Move::Dropped)
            } else if matched(MutateOp::Kill, set) {
                Some(Move::TrimmedOrPurged { due: false })
            } else if matches!(step, Step::Flush) {
                Some(Move::Dropped)
            } else if set == SetName::Dead && matches!(step, Step::Advance) && due {
                Some(Move::TrimmedOrPurged { due: true })
            } else if set == SetName::Dead && can_trim {
                Some(Move::TrimmedOrPurged { due: false })
            } else {
                None
            }
        }
        _ => None,
    }
}

/// Applies an allowed move to the model, checking what it must have written on the way.
/// Returns 1 when a failed job went through the dead set and out by the cap.
fn apply_move(
    s: &mut Sim,
    n: u32,
    to: Option<(Place, SetKey)>,
    mv: &Move,
    now: Timestamp,
) -> Result<u64, String> {
    let jid = sim_jid(n);
    let mut trimmed = 0;
    match mv {
        Move::Fetched | Move::Requeued => {}
        Move::Killed => {
            let at = to.map(|t| t.1.at);
            if at != Some(now.add_secs(SIM_DEAD_TTL_SECS)) {
                return Err(format!("killed {jid} dead until {at:?}"));
            }
        }
        Move::Acked => s.m.processed += 1,
        Move::Dropped => {}
        Move::TrimmedOrPurged { .. } => {}
        Move::Promoted => {
            s.m.jobs[n as usize].stamped = true;
            s.m.exists[s.m.jobs[n as usize].queue] = true;
            let (place, key) = to.unwrap_or((Place::Working, NO_KEY));
            check_enqueued_at(s, n, place, key.seq, now)?;
        }
        Move::Failed { expired } => {
            let job = &mut s.m.jobs[n as usize];
            let count = job.fails;
            job.fails += 1;
            let first_failed = *job.failed_at.get_or_insert(now);
            let (retry, fails) = (job.retry, job.fails);
            s.m.processed += 1;
            s.m.failures += 1;
            if *expired {
                s.m.expiries += 1;
            }
            let want = if retry == 0 {
                None
            } else if count < retry {
                Some(SetName::Retries)
            } else {
                Some(SetName::Dead)
            };
            let got = to.map(|t| t.0);
            match (want, got) {
                (None, None) => {}
                // Straight through the dead set and out by the cap.
                (Some(SetName::Dead), None) => trimmed = 1,
                (Some(w), Some(Place::Set(g))) if w == g => {
                    let key = to.map_or(NO_KEY, |t| t.1);
                    let f = Failed {
                        count,
                        retry,
                        expired: *expired,
                        first_failed,
                    };
                    check_failure(s, n, g, key, &f, now)?;
                }
                _ => {
                    return Err(format!(
                        "{jid} (retry {retry}, failure {fails}) went to {got:?}, expected {want:?}"
                    ))
                }
            }
        }
    }
    if to.is_none() {
        let job = &mut s.m.jobs[n as usize];
        if !job.gone {
            job.gone = true;
            s.m.live -= 1;
        }
    }
    Ok(trimmed)
}

/// A job that just entered a queue (or went straight to a fetcher) carries `enqueued_at = now`.
fn check_enqueued_at(
    s: &Sim,
    n: u32,
    place: Place,
    pos: u64,
    now: Timestamp,
) -> Result<(), String> {
    let jid = sim_jid(n);
    let job = match place {
        Place::Queue(q) => {
            s.h.core
                .queue_ref(SIM_QUEUES[q])
                .and_then(|q| q.jobs.get(pos as usize))
        }
        Place::Working => s.h.core.working().get(jid.as_str()).map(|r| &r.job),
        Place::Set(_) => None,
    };
    let got = job.and_then(|j| j.enqueued_at()).map(|t| t.to_rfc3339());
    if got.as_deref() != Some(now.to_rfc3339().as_str()) {
        return Err(format!("{jid} entered {place:?} with enqueued_at {got:?}"));
    }
    Ok(())
}

/// What the model knows of a failure that just happened.
struct Failed {
    /// 0 for the first failure.
    count: i64,
    retry: i64,
    expired: bool,
    first_failed: Timestamp,
}

/// The failure object written by a failure, and the set key chosen.
fn check_failure(
    s: &Sim,
    n: u32,
    set: SetName,
    key: SetKey,
    failed: &Failed,
    now: Timestamp,
) -> Result<(), String> {
    let &Failed {
        count,
        retry,
        expired,
        first_failed,
    } = failed;
    let jid = sim_jid(n);
    let job =
        s.h.core
            .set(set)
            .iter()
            .find(|(k, _)| **k == key)
            .map(|(_, j)| j)
            .ok_or_else(|| format!("{jid} not at its key"))?;
    let f = job
        .failure()
        .ok_or_else(|| format!("{jid} failed without a failure record"))?;
    let remaining = if retry <= 0 {
        retry
    } else {
        (retry - count).max(0)
    };
    let errtype = if expired {
        "ReservationExpired"
    } else {
        "SimError"
    };
    if (f.retry_count, f.remaining, &*f.errtype) != (count, remaining, errtype) {
        return Err(format!(
            "{jid} failure {}/{}/{}, expected {count}/{remaining}/{errtype}",
            f.retry_count, f.remaining, f.errtype
        ));
    }
    if *f.failed_at != *first_failed.to_rfc3339() {
        return Err(format!(
            "{jid} failed_at {} on failure {count}, first failed {first_failed:?}",
            f.failed_at
        ));
    }
    match set {
        SetName::Retries => {
            let ns = now.nanos_until(key.at);
            let delay = ns / 1_000_000_000;
            let jitter = delay - count.pow(4) - 15;
            if ns % 1_000_000_000 != 0
                || !(0..=29 * (count + 1)).contains(&jitter)
                || jitter % (count + 1) != 0
            {
                return Err(format!("{jid} retry {count} after {ns} ns"));
            }
            if f.next_at.as_deref() != Some(key.at.to_rfc3339().as_str()) {
                return Err(format!(
                    "{jid} next_at {:?} but keyed at {:?}",
                    f.next_at, key.at
                ));
            }
        }
        _ => {
            if key.at != now.add_secs(SIM_DEAD_TTL_SECS) {
                return Err(format!("{jid} dead until {:?}", key.at));
            }
        }
    }
    Ok(())
}

/// Moves a step cannot skip: its own job, its whole target, everything due.
fn check_required_moves(step: &Step, prev: &Snapshot, cur: &Snapshot) -> Result<(), String> {
    let place = |snap: &Snapshot, n: u32| snap.jobs.get(&n).map(|p| p.0);
    match step {
        Step::Fetch { expect: Some(n) } if place(cur, *n) != Some(Place::Working) => Err(format!(
            "fetched {} is in {:?}",
            sim_jid(*n),
            place(cur, *n)
        )),
        Step::Ack { jid } | Step::Fail { jid }
            if place(prev, *jid) == Some(Place::Working)
                && place(cur, *jid) == Some(Place::Working) =>
        {
            Err(format!("{} is still reserved", sim_jid(*jid)))
        }
        Step::Mutate { op, set, matched } => {
            for n in matched {
                if place(cur, *n) == Some(Place::Set(*set))
                    && !(*op == MutateOp::Kill && *set == SetName::Dead)
                {
                    return Err(format!("{op:?} left {} in {set:?}", sim_jid(*n)));
                }
            }
            Ok(())
        }
        Step::Queue { removed, .. } => match removed.iter().find(|q| !cur.queues[**q].is_empty()) {
            Some(q) => Err(format!("removed queue {} still has jobs", SIM_QUEUES[*q])),
            None => Ok(()),
        },
        Step::Flush => match cur.jobs.iter().find(|(_, p)| p.0 != Place::Working) {
            Some((n, p)) => Err(format!("{} survived FLUSH in {:?}", sim_jid(*n), p.0)),
            None => Ok(()),
        },
        _ => Ok(()),
    }
}

/// Queues are FIFO: only the front leaves, newcomers join at the back, and newcomers from one
/// set arrive in that set's order.
fn check_fifo(prev: &Snapshot, cur: &Snapshot) -> Result<(), String> {
    for (q, (old, new)) in prev.queues.iter().zip(&cur.queues).enumerate() {
        let stayed: Vec<u32> = old
            .iter()
            .copied()
            .filter(|n| cur.jobs.get(n).map(|p| p.0) == Some(Place::Queue(q)))
            .collect();
        if !old.ends_with(&stayed) || !new.starts_with(&stayed) {
            return Err(format!(
                "queue {} is not FIFO: {old:?} became {new:?}",
                SIM_QUEUES[q]
            ));
        }
        for set in SetName::ALL {
            let keys: Vec<SetKey> = new[stayed.len()..]
                .iter()
                .filter_map(|n| match prev.jobs.get(n) {
                    Some((Place::Set(s), k)) if *s == set => Some(*k),
                    _ => None,
                })
                .collect();
            if keys.windows(2).any(|w| w[0] > w[1]) {
                return Err(format!(
                    "queue {} got {} entries out of order",
                    SIM_QUEUES[q],
                    set.as_str()
                ));
            }
        }
        let pushed: Vec<u32> = new[stayed.len()..]
            .iter()
            .copied()
            .filter(|n| !prev.jobs.contains_key(n))
            .collect();
        if pushed.windows(2).any(|w| w[0] > w[1]) {
            return Err(format!(
                "queue {} got pushes out of order: {pushed:?}",
                SIM_QUEUES[q]
            ));
        }
    }
    Ok(())
}

/// Workers whose last BEAT is 60 s old are gone, with all their connections closed; no one
/// else's.
fn check_closes(s: &mut Sim, step: &Step, closes: &[ConnId]) -> Result<(), String> {
    let now = s.h.now();
    let expired: Vec<&'static str> =
        s.m.workers
            .iter()
            .filter(|(_, w)| w.last_beat.add_secs((BEAT_TIMEOUT_MS / 1_000) as i64) <= now)
            .map(|(wid, _)| *wid)
            .collect();
    let mut want: Vec<ConnId> = expired
        .iter()
        .flat_map(|w| sim_conns(w))
        .map(ConnId)
        .collect();
    want.sort();
    if closes != want || (!closes.is_empty() && !matches!(step, Step::Advance)) {
        return Err(format!(
            "closed {closes:?}, expected {want:?} (expired {expired:?})"
        ));
    }
    for wid in expired {
        if s.h.core.worker(wid).is_some() {
            return Err(format!("{wid} outlived its beat timeout"));
        }
        s.m.workers.remove(wid);
    }
    Ok(())
}

/// Invariants of the whole state, after any step.
fn check_state(h: &Harness, m: &Model, snap: &Snapshot) -> Result<(), String> {
    let core = &h.core;
    let now = h.clock.now();
    let job_of = |n: u32| {
        m.jobs
            .get(n as usize)
            .ok_or_else(|| format!("{} unknown", sim_jid(n)))
    };
    if snap.jobs.len() != m.live {
        return Err(format!(
            "{} jobs in the core, {} live in the model",
            snap.jobs.len(),
            m.live
        ));
    }
    for (&n, (place, _)) in &snap.jobs {
        if job_of(n)?.gone {
            return Err(format!(
                "{} in {place:?} after it was acked or dropped",
                sim_jid(n)
            ));
        }
    }
    // Queues.
    for (i, name) in SIM_QUEUES.iter().enumerate() {
        let q = core.queue_ref(name);
        if q.is_some() != m.exists[i] || q.is_some_and(|q| q.paused) != m.paused[i] {
            return Err(format!(
                "queue {name}: exists {} paused {}, model {} {}",
                q.is_some(),
                q.is_some_and(|q| q.paused),
                m.exists[i],
                m.paused[i]
            ));
        }
        for j in q.iter().flat_map(|q| q.jobs.iter()) {
            let n = sim_num(j.jid()).unwrap_or(u32::MAX);
            if j.enqueued_at().is_some() != job_of(n)?.stamped {
                return Err(format!("{} enqueued_at {:?}", j.jid(), j.enqueued_at()));
            }
        }
    }
    // Reservations.
    for (jid, r) in core.working() {
        let job = job_of(sim_num(jid).unwrap_or(u32::MAX))?;
        if r.expires_at != r.reserved_at.add_secs(job.reserve_secs) || r.expires_at <= now.wall {
            return Err(format!(
                "{jid} reserved {:?} until {:?}",
                r.reserved_at, r.expires_at
            ));
        }
        if core.timers.deadline(r.timer) != Some(mono_of(r.expires_at)) {
            return Err(format!(
                "{jid} reservation timer {:?}",
                core.timers.deadline(r.timer)
            ));
        }
        if r.job.enqueued_at().is_some() != job.stamped {
            return Err(format!(
                "{jid} reserved with enqueued_at {:?}",
                r.job.enqueued_at()
            ));
        }
    }
    // Sets: one timer each, armed no later than the first entry and at most WALL_RECHECK_MS
    // ahead (the wall clock is re-checked every second), and nothing overdue.
    for set in SetName::ALL {
        let first = core.set(set).first_key();
        let timer = core.set_timers[set as usize].and_then(|id| core.timers.deadline(id));
        let timer_ok = match (timer, first) {
            (None, None) => true,
            (Some(t), Some(k)) => t <= mono_of(k.at) && t <= now.mono_ms + WALL_RECHECK_MS,
            _ => false,
        };
        if !timer_ok || first.is_some_and(|k| k.at <= now.wall) {
            return Err(format!(
                "{} set: timer {timer:?}, first entry {first:?}, now {:?}",
                set.as_str(),
                now
            ));
        }
    }
    for (_, j) in core.set(SetName::Retries).iter() {
        if j.failure().is_none_or(|f| f.retry_count >= j.retry()) {
            return Err(format!("{} waits to retry with {:?}", j.jid(), j.failure()));
        }
    }
    if core.set(SetName::Dead).len() > SIM_DEAD_MAX {
        return Err(format!("dead set holds {}", core.set(SetName::Dead).len()));
    }
    // Parked fetchers.
    let mut parked: Vec<u64> = core.parked.keys().map(|c| c.0).collect();
    parked.sort_unstable();
    if parked != m.parked.keys().copied().collect::<Vec<_>>() {
        return Err(format!("parked {parked:?}, model {:?}", m.parked));
    }
    for (conn, p) in &core.parked {
        let since = m.parked[&conn.0];
        if core.timers.deadline(p.timer) != Some(since + FETCH_BLOCK_MS)
            || since + FETCH_BLOCK_MS <= now.mono_ms
        {
            return Err(format!(
                "conn {} parked at {since} ms: timer {:?}",
                conn.0,
                core.timers.deadline(p.timer)
            ));
        }
        let running = sim_wid(conn.0).is_none_or(|w| {
            m.workers
                .get(w)
                .is_some_and(|w| w.state == WorkerState::Running)
        });
        if !running && !p.queues.is_empty() {
            return Err(format!("stopped conn {} waits on {:?}", conn.0, p.queues));
        }
        for q in &p.queues {
            if !core
                .parked_by_queue
                .get(q)
                .is_some_and(|w| w.contains(conn))
            {
                return Err(format!(
                    "conn {} missing from the waiting list of {q}",
                    conn.0
                ));
            }
            if core
                .queue_ref(q)
                .is_some_and(|q| !q.paused && !q.jobs.is_empty())
            {
                return Err(format!(
                    "lost wakeup: conn {} parked on non-empty queue {q}",
                    conn.0
                ));
            }
        }
    }
    for (q, waiting) in &core.parked_by_queue {
        let distinct: HashSet<&ConnId> = waiting.iter().collect();
        if waiting.is_empty() || distinct.len() != waiting.len() {
            return Err(format!("waiting list of {q}: {waiting:?}"));
        }
        if let Some(c) = waiting
            .iter()
            .find(|c| !core.parked.get(c).is_some_and(|p| p.queues.contains(q)))
        {
            return Err(format!(
                "conn {} waits on {q} without a parked FETCH for it",
                c.0
            ));
        }
    }
    // Workers.
    if core.workers().count() != m.workers.len() || core.connections() != SIM_CONNS as usize {
        return Err(format!(
            "{} workers and {} connections",
            core.workers().count(),
            core.connections()
        ));
    }
    for (wid, mw) in &m.workers {
        let w = core
            .worker(wid)
            .ok_or_else(|| format!("worker {wid} missing"))?;
        let mut conns: Vec<u64> = w.conns.iter().map(|c| c.0).collect();
        conns.sort_unstable();
        if (w.state, w.last_beat) != (mw.state, mw.last_beat) || conns != sim_conns(wid) {
            return Err(format!(
                "worker {wid}: {:?} beat {:?} conns {conns:?}; model {:?} {:?}",
                w.state, w.last_beat, mw.state, mw.last_beat
            ));
        }
        if core.timers.deadline(w.beat_timer) != Some(mono_of(mw.last_beat) + BEAT_TIMEOUT_MS) {
            return Err(format!(
                "worker {wid} beat timer {:?}",
                core.timers.deadline(w.beat_timer)
            ));
        }
    }
    // Timers: housekeeping plus one per reservation, worker, parked fetch and non-empty set.
    let armed = core.set_timers.iter().flatten().count();
    let want =
        BASE_TIMERS + core.working().len() + core.workers().count() + core.parked.len() + armed;
    if core.timer_count() != want {
        return Err(format!(
            "{} timers armed, {want} expected",
            core.timer_count()
        ));
    }
    // Counters.
    let s = core.stats();
    for (name, got, want) in [
        ("processed", s.processed, m.processed),
        ("failures", s.failures, m.failures),
        ("reaped reservations", s.busy.reaped, m.expiries),
        ("trimmed", s.dead_trimmed, m.trimmed),
        ("purged", s.dead.enqueued, m.purged),
    ] {
        if got != want {
            return Err(format!("{name} {got}, model {want}"));
        }
    }
    let daily = s
        .daily
        .values()
        .fold((0, 0), |a, d| (a.0 + d.processed, a.1 + d.failures));
    if daily != (s.processed, s.failures) {
        return Err(format!("daily counters add up to {daily:?}"));
    }
    Ok(())
}

fn simulate(seed: u64, steps: usize) -> Result<(), String> {
    simulate_recording(seed, steps, None).map(|_| ())
}

fn simulate_recording(
    seed: u64,
    steps: usize,
    mut records: Option<&mut Vec<Record>>,
) -> Result<Harness, String> {
    let mut s = Sim::new(seed, records.is_some());
    s.m.prev = snapshot(&s.h.core)?;
    let mut trail: VecDeque<String> = VecDeque::new();
    for step in 0..steps {
        let result = s.step();
        let step_records = std::mem::take(&mut s.h.core.effects().records);
        if let Some(all) = records.as_deref_mut() {
            all.extend(step_records);
        }
        match result {
            Ok(what) => {
                if trail.len() == 6 {
                    trail.pop_front();
                }
                trail.push_back(what);
            }
            Err(e) => {
                return Err(format!(
                    "seed {seed} step {step} at {:?}: {e}\n  after: {trail:?}",
                    s.h.clock.now()
                ))
            }
        }
    }
    Ok(s.h)
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[test]
fn simulation_keeps_invariants() {
    let steps = env_u64("WERK_SIM_STEPS").unwrap_or(5_000) as usize;
    let seeds = match env_u64("WERK_SIM_SEED") {
        Some(seed) => vec![seed],
        None => vec![1, 2, 3, 0xDEAD_BEEF],
    };
    for seed in seeds {
        if let Err(e) = simulate(seed, steps) {
            panic!("{e}\nrerun: WERK_SIM_SEED={seed} cargo test --lib simulation_keeps_invariants");
        }
    }
}

#[test]
fn simulation_reaches_every_kind_of_state() {
    // A checker that never sees a state cannot fail on it: prove the generator gets there.
    let mut s = Sim::new(11, false);
    s.m.prev = snapshot(&s.h.core).unwrap();
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for _ in 0..3_000 {
        s.step().unwrap();
        let c = &s.h.core;
        let st = c.stats();
        for (name, hit) in [
            ("queued", c.queues().any(|(_, q)| !q.jobs.is_empty())),
            ("working", !c.working().is_empty()),
            ("scheduled", !c.set(SetName::Scheduled).is_empty()),
            ("retries", !c.set(SetName::Retries).is_empty()),
            ("dead", !c.set(SetName::Dead).is_empty()),
            ("paused", c.queues().any(|(_, q)| q.paused)),
            ("parked", !c.parked.is_empty()),
            ("quiet", c.workers().any(|w| w.state == WorkerState::Quiet)),
            (
                "terminate",
                c.workers().any(|w| w.state == WorkerState::Terminate),
            ),
            ("expired", st.busy.reaped > 0),
            ("worker reaped", st.workers.reaped > 0),
            ("promoted", st.scheduled.enqueued > 0),
            ("retried", st.retries.enqueued > 0),
            ("trimmed", st.dead_trimmed > 0),
            ("purged", st.dead.enqueued > 0),
        ] {
            if hit {
                seen.insert(name);
            }
        }
    }
    assert_eq!(seen.len(), 15, "seen only {seen:?}");
}

// ----- canaries: the checker can fail -------------------------------------------------------------

/// A simulation run until `ready` holds, with its state verified clean.
fn sim_until(ready: &dyn Fn(&Sim) -> bool) -> Sim {
    for seed in 100..120 {
        let mut s = Sim::new(seed, false);
        s.m.prev = snapshot(&s.h.core).unwrap();
        for _ in 0..3_000 {
            s.step().unwrap_or_else(|e| panic!("seed {seed}: {e}"));
            if ready(&s) {
                check_state(&s.h, &s.m, &s.m.prev).unwrap();
                return s;
            }
        }
    }
    panic!("no simulation reached the canary's starting state");
}

fn queue_with(s: &Sim, jobs: usize) -> Option<usize> {
    (0..SIM_QUEUES.len()).find(|q| s.m.prev.queues[*q].len() >= jobs)
}

/// A parked fetcher waiting on an open, empty queue, plus a job in another queue.
fn lost_wakeup_setup(s: &Sim) -> Option<(Box<str>, usize)> {
    let (q, _) = s.h.core.parked_by_queue.iter().find(|(q, _)| {
        s.h.core
            .queue_ref(q)
            .is_some_and(|q| !q.paused && q.jobs.is_empty())
    })?;
    let from = (0..SIM_QUEUES.len())
        .find(|i| SIM_QUEUES[*i] != &**q && !s.m.prev.queues[*i].is_empty())?;
    Some((q.clone(), from))
}

#[test]
fn canary_the_checker_catches_each_corruption() {
    type Ready = fn(&Sim) -> bool;
    type Corrupt = fn(&mut Sim);
    // (what, state to start from, corruption, whether the step checker or only the state
    // checker runs, text the error must contain)
    let table: Vec<(&str, Ready, Corrupt, bool, &str)> = vec![
        (
            "a job copied into a second place",
            |s| queue_with(s, 1).is_some(),
            |s| {
                let q = SIM_QUEUES[queue_with(s, 1).unwrap()];
                let copy = s.h.core.queue_ref(q).unwrap().jobs[0].clone();
                let at = s.h.now().add_secs(3_600);
                s.h.core.retries.insert(SetKey { at, seq: 1 << 40 }, copy);
            },
            true,
            "two places",
        ),
        (
            "an acknowledged job comes back",
            |s| queue_with(s, 1).is_some() && s.m.jobs.iter().any(|j| j.gone),
            |s| {
                let q = SIM_QUEUES[queue_with(s, 1).unwrap()];
                let gone = s.m.jobs.iter().position(|j| j.gone).unwrap() as u32;
                let src = s.h.core.queue_ref(q).unwrap().jobs[0].clone();
                let jid = sim_jid(gone);
                let ghost = Job::pack(&job::Fields {
                    jid: &jid,
                    ..src.fields()
                });
                s.h.core.queues.get_mut(q).unwrap().jobs.push_back(ghost);
            },
            true,
            "came back",
        ),
        (
            "a job vanishes",
            |s| queue_with(s, 1).is_some(),
            |s| {
                let q = SIM_QUEUES[queue_with(s, 1).unwrap()];
                s.h.core.queues.get_mut(q).unwrap().jobs.pop_back();
            },
            true,
            "is not allowed",
        ),
        (
            "a reservation vanishes",
            |s| !s.h.core.working().is_empty(),
            |s| {
                let jid = s.jobs_in(Place::Working)[0];
                s.h.core.working.remove(sim_jid(jid).as_str());
            },
            true,
            "is not allowed",
        ),
        (
            "a queue loses FIFO order",
            |s| queue_with(s, 2).is_some(),
            |s| {
                let q = SIM_QUEUES[queue_with(s, 2).unwrap()];
                s.h.core.queues.get_mut(q).unwrap().jobs.swap(0, 1);
            },
            true,
            "not FIFO",
        ),
        (
            "a wake for a connection that was not waiting",
            |s| s.m.parked.len() < SIM_CONNS as usize,
            |s| {
                let conn = (1..=SIM_CONNS)
                    .find(|c| !s.m.parked.contains_key(c))
                    .unwrap();
                s.h.core.effects().wakes.push((ConnId(conn), Reply::Null));
            },
            true,
            "not parked",
        ),
        (
            "the core counts one ACK too many",
            |_| true,
            |s| s.h.core.stats.processed += 1,
            false,
            "processed",
        ),
        (
            "the model counts one failure too many",
            |_| true,
            |s| s.m.failures += 1,
            false,
            "failures",
        ),
        (
            "a timer left armed",
            |_| true,
            |s| {
                let at = s.h.clock.now().mono_ms + 5_000;
                s.h.core.timers.insert(at, TimerEvent::Housekeeping);
            },
            false,
            "timers armed",
        ),
        (
            "a scheduled job left overdue",
            |s| !s.h.core.set(SetName::Scheduled).is_empty(),
            |s| {
                let (key, job) = s.h.core.scheduled.pop_first().unwrap();
                let at = s.h.now().add_secs(-1);
                s.h.core.scheduled.insert(SetKey { at, ..key }, job);
            },
            false,
            "scheduled set",
        ),
        (
            "a fetcher parked on a queue that has a job",
            |s| lost_wakeup_setup(s).is_some(),
            |s| {
                let (q, from) = lost_wakeup_setup(s).unwrap();
                let job =
                    s.h.core
                        .queues
                        .get_mut(SIM_QUEUES[from])
                        .unwrap()
                        .jobs
                        .pop_back()
                        .unwrap();
                let job = Job::pack(&job::Fields {
                    queue: &q,
                    ..job.fields()
                });
                s.h.core.queues.get_mut(&q).unwrap().jobs.push_back(job);
                s.m.prev = snapshot(&s.h.core).unwrap();
            },
            false,
            "lost wakeup",
        ),
        (
            "a worker state the model did not ask for",
            |_| true,
            |s| s.h.core.workers.get_mut("wA").unwrap().state = WorkerState::Terminate,
            false,
            "worker wA",
        ),
        (
            "a reservation with the wrong length",
            |s| !s.h.core.working().is_empty(),
            |s| {
                let jid = sim_jid(s.jobs_in(Place::Working)[0]);
                let r = s.h.core.working.get_mut(jid.as_str()).unwrap();
                r.expires_at = r.expires_at.add_secs(1);
            },
            false,
            "reserved",
        ),
    ];
    for (what, ready, corrupt, step_check, want) in table {
        let mut s = sim_until(&ready);
        corrupt(&mut s);
        let result = if step_check {
            let wakes = std::mem::take(&mut s.h.core.effects().wakes);
            verify(&mut s, &Step::Other, &wakes, &[])
        } else {
            snapshot(&s.h.core).and_then(|snap| check_state(&s.h, &s.m, &snap))
        };
        match result {
            Ok(()) => panic!("canary {what:?}: the checker saw nothing"),
            Err(e) => assert!(e.contains(want), "canary {what:?}: {e}"),
        }
    }
}

#[test]
fn canary_a_wrong_model_fails_the_simulation() {
    // The same run with a model that believes retry jobs never die must be caught.
    let mut s = Sim::new(5, false);
    s.m.prev = snapshot(&s.h.core).unwrap();
    let mut caught = None;
    for step in 0..5_000 {
        for j in s.m.jobs.iter_mut() {
            j.retry = j.retry.max(1_000);
        }
        if let Err(e) = s.step() {
            caught = Some((step, e));
            break;
        }
    }
    let (step, e) = caught.expect("a model with the wrong retry policy passed 5,000 steps");
    // A job whose real policy is 3 retries or fewer fails, and the model disagrees about
    // where it went or what its failure record says.
    assert!(
        e.contains("expected Some(Retries)") || e.contains("expected 0/1000/"),
        "step {step}: {e}"
    );
}

// ----- journal replay ------------------------------------------------------------------------------

/// Everything durable about a core, in a comparable form.
fn durable_state(core: &Core) -> String {
    let mut out = String::new();
    for (name, q) in core.queues() {
        out += &format!("queue {name} paused={}\n", q.paused);
        for j in &q.jobs {
            out += &format!("  {}\n", String::from_utf8(j.to_json()).unwrap());
        }
    }
    let mut working: Vec<_> = core.working().iter().collect();
    working.sort_by(|a, b| a.0.cmp(b.0));
    for (jid, r) in working {
        out += &format!(
            "working {jid} {} {:?} {}\n",
            r.wid,
            r.expires_at,
            String::from_utf8(r.job.to_json()).unwrap()
        );
    }
    for set in SetName::ALL {
        for (k, j) in core.set(set).iter() {
            out += &format!(
                "{} {k:?} {}\n",
                set.as_str(),
                String::from_utf8(j.to_json()).unwrap()
            );
        }
    }
    let s = core.stats();
    out += &format!(
        "processed {} failures {} daily {:?}\n",
        s.processed, s.failures, s.daily
    );
    out
}

#[test]
fn replaying_the_journal_rebuilds_the_same_state() {
    for seed in [5, 0xC0FFEE] {
        let mut records = Vec::new();
        let h = simulate_recording(seed, 3_000, Some(&mut records)).unwrap();
        assert!(records.len() > 1_000, "only {} records", records.len());
        let mut image = crate::journal::record::HEADER.to_vec();
        // Batches of 1 to 7 records, as the loop's turns would write them.
        let halves = records.chunks(7).flat_map(|c| {
            let (a, b) = c.split_at(c.len() % 3);
            [a, b]
        });
        for batch in halves.filter(|b| !b.is_empty()) {
            let start = image.len() as u64;
            for r in batch {
                crate::journal::record::encode(r, &mut image);
            }
            crate::journal::record::encode_commit(start, &mut image);
        }
        let (decoded, used, err) = crate::journal::record::decode_all(&image);
        assert_eq!((used, err), (image.len(), None));
        let mut fresh = Core::new(CoreConfig::default(), h.clock.now(), 1);
        for r in &decoded {
            fresh
                .replay(r, h.clock.now())
                .unwrap_or_else(|e| panic!("seed {seed}: {e} at {r:?}"));
        }
        assert_eq!(durable_state(&fresh), durable_state(&h.core), "seed {seed}");
    }
}

#[test]
fn a_dump_replayed_into_an_empty_core_rebuilds_the_same_state() {
    for seed in [5, 77, 0xC0FFEE] {
        let mut h = simulate_recording(seed, 3_000, None).unwrap();
        // Cases the simulation may not reach: an empty paused queue, an empty queue, and a
        // reservation whose queue was removed while it was out.
        h.ok(0, "QUEUE PAUSE q1");
        h.push("lonely01", r#","queue":"gone""#);
        let fetched = h.fetch_raw(0, "gone").unwrap_or_default();
        assert!(fetched.contains("lonely01"), "{fetched}");
        h.ok(0, "QUEUE REMOVE gone");
        let before = durable_state(&h.core);
        assert!(before.contains("working lonely01"), "{before}");
        let mut records = Vec::new();
        h.core.dump(&mut |r| records.push(r));
        let mut fresh = Core::new(CoreConfig::default(), h.clock.now(), 1);
        for r in &records {
            fresh
                .replay(r, h.clock.now())
                .unwrap_or_else(|e| panic!("seed {seed}: {e} at {r:?}"));
        }
        assert_eq!(durable_state(&fresh), before, "seed {seed}");
        // And the dump of the rebuilt core is the same dump.
        let mut again = Vec::new();
        fresh.dump(&mut |r| again.push(r));
        let sorted = |mut v: Vec<Record>| {
            v.sort_by_key(|r| format!("{r:?}"));
            v
        };
        assert_eq!(sorted(again), sorted(records), "seed {seed}");
    }
}

#[test]
fn a_dump_of_an_empty_core_is_only_its_counters() {
    let h = Harness::new();
    let mut records = Vec::new();
    h.core.dump(&mut |r| records.push(r));
    assert_eq!(
        records,
        vec![Record::Totals {
            processed: 0,
            failures: 0
        }]
    );
}

#[test]
fn replay_refuses_records_that_do_not_fit() {
    let mut h = Harness::new();
    let now = h.clock.now();
    let r = Record::Reserve {
        queue: "default".into(),
        jid: "nobody00".into(),
        wid: "".into(),
        expires_at: now.wall,
    };
    assert_eq!(
        h.core.replay(&r, now),
        Err(ReplayError("reserve from a missing queue"))
    );
    h.push("somebody", "");
    assert!(h.core.replay(&r, now).is_err());
    let bad = Record::Enqueue {
        job: b"{not json".to_vec(),
    };
    assert!(h.core.replay(&bad, now).is_err());
}

#[test]
fn regression_fuzz_job_json_far_future_at() {
    // fuzz/artifacts/job_json/crash-2af133fb...: PUSH with an `at` in year 4052 panicked.
    let mut h = Harness::new();
    h.ok(0, r#"PUSH {"jid":"a1b2c3d4e5f6","jobtype":"Mail","args":[{"to":"x@y"}],"at":"4052-07-01T12:30:00.5+02:00","custom":{"trace":"abc"}}"#);
    assert_eq!(h.core.set(SetName::Scheduled).len(), 1);
    h.advance(86_400_000);
    assert_eq!(
        h.core.set(SetName::Scheduled).len(),
        1,
        "a job for year 4052 is not due"
    );
    assert!(h.core.next_wakeup_ms().is_some());
}

// ----- retry bounds (OPERATIONS.md, Limits) ----------------------------------------------------

/// `retry` takes any 64-bit integer, as Faktory: the extremes neither panic nor overflow. A job
/// failed for the (2^62)-th time is scheduled at the latest time a timestamp holds (year 2262),
/// and `retry: i64::MIN` behaves as any negative value (dead at the first failure).
#[test]
fn retry_bounds_at_the_extremes() {
    let mut h = Harness::new();
    let huge = 1i64 << 62;
    h.push(
        "retrymax",
        &format!(
            r#","retry":{},"failure":{{"failed_at":"x","retry_count":{huge},"remaining":{huge}}}"#,
            i64::MAX
        ),
    );
    h.fetch(1, "default").unwrap();
    h.fail("retrymax");
    let (key, job) = h.set_job(SetName::Retries, "retrymax").unwrap();
    assert_eq!(job["failure"]["retry_count"], huge + 1);
    assert_eq!(key.at, Timestamp(i64::MAX), "the backoff saturates");
    assert_eq!(
        job["failure"]["next_at"].as_str(),
        Some(Timestamp(i64::MAX).to_rfc3339().as_str())
    );
    // The retry timer is armed (for a wall time centuries away) without overflowing the wheel.
    h.advance(86_400_000);
    assert_eq!(h.jids(SetName::Retries), ["retrymax"]);

    h.push("retrymin", &format!(r#","retry":{}"#, i64::MIN));
    h.fetch(2, "default").unwrap();
    h.fail("retrymin");
    assert_eq!(h.jids(SetName::Dead), ["retrymin"]);
    // And one past i64 is a JSON type error, as any non-integer.
    let e = h.error(
        0,
        r#"PUSH {"jid":"retrybig","jobtype":"T","args":[],"retry":9223372036854775808}"#,
    );
    assert!(e.starts_with("ERR invalid JSON: "), "{e}");
}
