//! Core unit tests, driven with a manual clock (time moves by `advance`, never by sleeping).

use super::*;
use crate::clock::{Clock, ManualClock};
use crate::command::Command;
use std::collections::HashSet;

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
        let clock = ManualClock::new(Timestamp::parse_rfc3339("2026-07-01T12:00:00Z").unwrap());
        let core = Core::new(config, clock.now(), 7);
        Harness { core, clock }
    }

    fn hello(&mut self, conn: u64, wid: &str) {
        let h: HelloInput = serde_json::from_str(&format!(r#"{{"v":2,"wid":"{wid}"}}"#)).unwrap();
        self.core.hello(ConnId(conn), &h, self.clock.now());
    }

    fn run(&mut self, conn: u64, line: &str) -> Response {
        match Command::parse(line.as_bytes()) {
            Ok(cmd) => self.core.apply(ConnId(conn), cmd, self.clock.now()),
            Err(e) => Response::Reply(Reply::err(e)),
        }
    }

    fn ok(&mut self, conn: u64, line: &str) {
        assert_eq!(self.run(conn, line), Response::Reply(Reply::Ok), "{line}");
    }

    fn push(&mut self, jid: &str, extra: &str) {
        self.ok(
            0,
            &format!(r#"PUSH {{"jid":"{jid}","jobtype":"T","args":[1]{extra}}}"#),
        );
    }

    fn fetch(&mut self, conn: u64, queues: &str) -> Option<serde_json::Value> {
        match self.run(conn, &format!("FETCH {queues}")) {
            Response::Reply(Reply::Bulk(b)) => Some(serde_json::from_slice(&b).unwrap()),
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

    fn advance(&mut self, ms: u64) {
        self.clock.advance_ms(ms);
        self.core.tick(self.clock.now());
    }

    fn wakes(&mut self) -> Vec<(ConnId, Reply)> {
        std::mem::take(&mut self.core.effects().wakes)
    }

    fn records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.core.effects().records)
    }

    fn set_job(&self, set: SetName, jid: &str) -> Option<(SetKey, serde_json::Value)> {
        self.core
            .set(set)
            .iter()
            .find(|(_, j)| &*j.jid == jid)
            .map(|(k, j)| (*k, serde_json::from_slice(&j.to_json()).unwrap()))
    }

    fn now(&self) -> Timestamp {
        self.clock.now().wall
    }
}

fn wake_jid(reply: &Reply) -> String {
    match reply {
        Reply::Bulk(b) => serde_json::from_slice::<serde_json::Value>(b).unwrap()["jid"]
            .as_str()
            .unwrap()
            .to_owned(),
        other => panic!("{other:?}"),
    }
}

fn ts(v: &serde_json::Value) -> Timestamp {
    Timestamp::parse_rfc3339(v.as_str().unwrap()).unwrap()
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
    // ACK is idempotent.
    h.ok(1, r#"ACK {"jid":"abcdefgh"}"#);
    assert_eq!(h.core.stats().processed, 1);
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
    assert_eq!(wake_jid(&wakes[0].1), "sched001");
    let job = &h.core.working()["sched001"].job;
    assert_eq!(
        job.enqueued_at.as_deref(),
        Some(h.now().to_rfc3339().as_str())
    );
    assert_eq!(job.at.as_deref(), Some(at.as_str()));
    assert_eq!(h.core.stats().scheduled.enqueued, 1);
}

#[test]
fn failure_fields_and_backoff() {
    let mut h = Harness::new();
    h.push("failjob1", "");
    h.fetch(1, "default").unwrap();
    let failed_at = h.now();
    h.ok(
        0,
        &format!(
            r#"FAIL {{"jid":"failjob1","errtype":"  ","message":" {} ","backtrace":{}}}"#,
            "é".repeat(600),
            serde_json::to_string(&vec!["line"; 60]).unwrap()
        ),
    );
    let (key, job) = h.set_job(SetName::Retries, "failjob1").unwrap();
    let f = &job["failure"];
    assert_eq!(f["retry_count"], 0);
    assert_eq!(f["remaining"], 25);
    assert_eq!(f["errtype"], "unknown");
    assert_eq!(f["message"].as_str().unwrap().len(), 1000);
    assert_eq!(f["backtrace"].as_array().unwrap().len(), 50);
    assert_eq!(ts(&f["failed_at"]), failed_at);
    let delay = failed_at.nanos_until(key.at) / 1_000_000_000;
    assert!((15..=44).contains(&delay), "first retry after {delay} s");
    assert_eq!(ts(&f["next_at"]), key.at);
    assert_eq!(h.core.stats().failures, 1);
    assert_eq!(h.core.stats().processed, 1);

    // Not fetchable before next_at; fetchable right after.
    let wait_ms = (failed_at.nanos_until(key.at) / 1_000_000) as u64;
    h.advance(wait_ms - 1);
    assert!(h.fetch(1, "default").is_none());
    h.advance(1);
    assert_eq!(wake_jid(&h.wakes()[0].1), "failjob1");

    h.ok(
        0,
        r#"FAIL {"jid":"failjob1","errtype":"E2","message":"again"}"#,
    );
    let (key2, job) = h.set_job(SetName::Retries, "failjob1").unwrap();
    let f = &job["failure"];
    assert_eq!(f["retry_count"], 1);
    assert_eq!(f["remaining"], 24);
    assert_eq!(f["errtype"], "E2");
    assert_eq!(
        ts(&f["failed_at"]),
        failed_at,
        "failed_at keeps the first failure"
    );
    assert!(f.get("backtrace").is_none(), "empty backtrace is left out");
    let delay = h.now().nanos_until(key2.at) / 1_000_000_000;
    assert!(
        (16..=16 + 29 * 2).contains(&delay),
        "second retry after {delay} s"
    );
}

#[test]
fn retry_policies() {
    let mut h = Harness::new();
    // retry 2: three runs, then dead.
    h.push("retry002", r#","retry":2"#);
    for round in 0..3 {
        h.fetch(1, "default").unwrap();
        h.fail("retry002");
        if round < 2 {
            let (k, _) = h.set_job(SetName::Retries, "retry002").unwrap();
            let ms = (h.now().nanos_until(k.at) / 1_000_000) as u64 + 1;
            h.advance(ms);
        }
    }
    let (_, dead) = h.set_job(SetName::Dead, "retry002").unwrap();
    assert_eq!(dead["failure"]["retry_count"], 2);
    assert_eq!(dead["failure"]["remaining"], 0);
    assert!(h.core.set(SetName::Retries).is_empty());

    // retry 0: discarded after one failure, still counted.
    h.push("retry000", r#","retry":0"#);
    h.fetch(1, "default").unwrap();
    let failures = h.core.stats().failures;
    h.fail("retry000");
    assert_eq!(h.core.stats().failures, failures + 1);
    assert!(h.set_job(SetName::Retries, "retry000").is_none());
    assert!(h.set_job(SetName::Dead, "retry000").is_none());

    // retry -1: straight to dead.
    h.push("retryneg", r#","retry":-1"#);
    h.fetch(1, "default").unwrap();
    h.fail("retryneg");
    let (_, dead) = h.set_job(SetName::Dead, "retryneg").unwrap();
    assert_eq!(dead["failure"]["remaining"], -1);
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
    // The default reservation is 1800 s; nothing else expires.
    h.advance(1_800_000);
    assert_eq!(h.core.stats().busy.reaped, 1);
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
    assert_eq!(
        h.wakes()
            .iter()
            .map(|(c, r)| (*c, wake_jid(r)))
            .collect::<Vec<_>>(),
        vec![(ConnId(1), "tob00001".to_owned())]
    );
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
fn heartbeats_and_worker_states() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.hello(2, "w1");
    h.advance(59_000);
    h.ok(1, r#"BEAT {"wid":"w1","rss_kb":512}"#);
    assert_eq!(h.core.worker("w1").unwrap().rss_kb, 512);
    h.advance(59_999);
    assert!(h.core.worker("w1").is_some(), "a BEAT resets the deadline");
    h.advance(1);
    assert!(h.core.worker("w1").is_none());
    let mut closes = std::mem::take(&mut h.core.effects().closes);
    closes.sort();
    assert_eq!(closes, vec![ConnId(1), ConnId(2)]);
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
    // Producers (no wid) still get it.
    assert_eq!(h.fetch(9, "default").unwrap()["jid"], "notforw1");
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
    let left = |h: &Harness| -> Vec<String> {
        h.core
            .set(SetName::Scheduled)
            .iter()
            .map(|(_, j)| j.jid.to_string())
            .collect()
    };
    h.ok(0, r#"MUTATE {"cmd":"discard","target":"scheduled","filter":{"jids":["sched-a1"],"jobtype":"B"}}"#);
    assert_eq!(left(&h), ["sched-b1", "sched-b2", "sched-c1"]);
    h.ok(
        0,
        r#"MUTATE {"cmd":"kill","target":"scheduled","filter":{"regexp":"*\"args\":[[]3]*"}}"#,
    );
    assert_eq!(left(&h), ["sched-b1", "sched-c1"]);
    assert!(h.set_job(SetName::Dead, "sched-b2").is_some());
    h.ok(
        0,
        r#"MUTATE {"cmd":"requeue","target":"scheduled","filter":{"jobtype":"B"}}"#,
    );
    assert_eq!(left(&h), ["sched-c1"]);
    let q = h.core.queue_ref("default").unwrap();
    assert_eq!(&*q.jobs[0].jid, "sched-b1");
    assert!(
        q.jobs[0].enqueued_at.is_none(),
        "requeue does not stamp enqueued_at"
    );
    h.ok(
        0,
        r#"MUTATE {"cmd":"clear","target":"scheduled","filter":{"jids":["nothing"]}}"#,
    );
    assert!(left(&h).is_empty());
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
fn queue_commands_latency_and_flush() {
    let mut h = Harness::new();
    h.hello(1, "w1");
    h.push("lat00001", "");
    h.push("lat00002", r#","queue":"other""#);
    h.advance(3_500);
    match h.run(0, "QUEUE LATENCY default other nope") {
        Response::Reply(Reply::Bulk(b)) => {
            assert_eq!(
                String::from_utf8(b).unwrap(),
                r#"{"default":3.5,"nope":0.0,"other":3.5}"#
            )
        }
        other => panic!("{other:?}"),
    }
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
    let dead: Vec<String> = h
        .core
        .set(SetName::Dead)
        .iter()
        .map(|(_, j)| j.jid.to_string())
        .collect();
    assert_eq!(dead, ["deadcap1", "deadcap2", "deadcap3"]);
    assert_eq!(h.core.stats().dead_trimmed, 1);
    h.advance(100_000 - 40 + 10); // deadcap1 died at 10 ms
    assert_eq!(h.core.set(SetName::Dead).len(), 2, "deadcap1 expired");
    h.advance(100);
    assert!(h.core.set(SetName::Dead).is_empty());
    assert_eq!(h.core.stats().dead.enqueued, 3);
}

#[test]
fn pushb_reports_each_failed_job() {
    let mut h = Harness::new();
    let r = h.run(0, r#"PUSHB [{"jid":"pushb001","jobtype":"T","args":[]},{"jid":"short","jobtype":"T","args":[]},{"jobtype":"T","args":[]}]"#);
    let body = match r {
        Response::Reply(Reply::Bulk(b)) => String::from_utf8(b).unwrap(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        body,
        r#"{"":"jobs must have a reasonable jid parameter","short":"jobs must have a reasonable jid parameter"}"#
    );
    assert_eq!(h.core.queue_ref("default").unwrap().jobs.len(), 1);
    let r = h.run(0, r#"PUSHB []"#);
    assert_eq!(r, Response::Reply(Reply::Bulk(b"{}".to_vec())));
}

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

// ----- simulation ------------------------------------------------------------------------------

struct Model {
    pushed: HashSet<String>,
    acked: HashSet<String>,
    acks: u64,
    fails: u64,
}

/// Invariants that must hold after every step.
fn check(h: &Harness, m: &Model) -> Result<(), String> {
    let core = &h.core;
    let mut seen = HashSet::new();
    let mut place = |jid: &str, where_: &str| -> Result<(), String> {
        if !m.pushed.contains(jid) {
            return Err(format!("{jid} in {where_} was never pushed"));
        }
        if m.acked.contains(jid) {
            return Err(format!("{jid} in {where_} after its ACK"));
        }
        if !seen.insert(jid.to_owned()) {
            return Err(format!("{jid} is in two places (second: {where_})"));
        }
        Ok(())
    };
    for (name, q) in core.queues() {
        for j in &q.jobs {
            place(&j.jid, name)?;
        }
    }
    for jid in core.working().keys() {
        place(jid, "working")?;
    }
    for set in SetName::ALL {
        for (_, j) in core.set(set).iter() {
            place(&j.jid, set.as_str())?;
        }
    }
    let s = core.stats();
    if s.failures != m.fails + s.busy.reaped {
        return Err(format!(
            "failures {} != {} + {}",
            s.failures, m.fails, s.busy.reaped
        ));
    }
    if s.processed != m.acks + s.failures {
        return Err(format!(
            "processed {} != {} + {}",
            s.processed, m.acks, s.failures
        ));
    }
    let armed_sets = core.set_timers.iter().flatten().count();
    for set in SetName::ALL {
        if core.set(set).is_empty() == core.set_timers[set as usize].is_some() {
            return Err(format!(
                "{} timer armed: {:?}",
                set.as_str(),
                core.set_timers[set as usize]
            ));
        }
    }
    let expected_timers =
        1 + core.working.len() + core.workers.len() + core.parked.len() + armed_sets;
    if core.timer_count() != expected_timers {
        return Err(format!(
            "{} timers armed, {expected_timers} expected",
            core.timer_count()
        ));
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
    let mut rng = seed | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut h = Harness::with(CoreConfig {
        dead_max: 50,
        recording: records.is_some(),
        ..CoreConfig::default()
    });
    let mut m = Model {
        pushed: HashSet::new(),
        acked: HashSet::new(),
        acks: 0,
        fails: 0,
    };
    let queues = ["a", "b", "c"];
    for conn in 1..=4u64 {
        h.hello(conn, &format!("w{}", conn % 2));
    }
    for step in 0..steps {
        let conn = 1 + next() % 4;
        let parked = h.core.parked.contains_key(&ConnId(conn));
        let op = next() % 12;
        match op {
            0..=2 => {
                let jid = format!("job{step:08}");
                let q = queues[(next() % 3) as usize];
                let extra = match next() % 4 {
                    0 => format!(
                        r#","at":"{}""#,
                        h.now().add_secs((next() % 120) as i64).to_rfc3339()
                    ),
                    1 => format!(r#","retry":{}"#, next() % 4),
                    _ => String::new(),
                };
                h.ok(0, &format!(r#"PUSH {{"jid":"{jid}","jobtype":"T","args":[],"queue":"{q}","reserve_for":60{extra}}}"#));
                m.pushed.insert(jid);
            }
            3..=4 if !parked => {
                let list = format!(
                    "{} {}",
                    queues[(next() % 3) as usize],
                    queues[(next() % 3) as usize]
                );
                h.fetch(conn, &list);
            }
            5..=6 => {
                if let Some(jid) = h.core.working().keys().nth((next() % 8) as usize).cloned() {
                    h.ok(conn, &format!(r#"ACK {{"jid":"{jid}"}}"#));
                    m.acked.insert(jid.to_string());
                    m.acks += 1;
                }
            }
            7 => {
                if let Some(jid) = h.core.working().keys().nth((next() % 8) as usize).cloned() {
                    h.fail(&jid);
                    m.fails += 1;
                }
            }
            8 => {
                let cmd = ["kill", "discard", "requeue"][(next() % 3) as usize];
                let target = ["retries", "scheduled", "dead"][(next() % 3) as usize];
                h.ok(0, &format!(r#"MUTATE {{"cmd":"{cmd}","target":"{target}","filter":{{"regexp":"*\"queue\":\"a\"*"}}}}"#));
            }
            9 => {
                let sub = ["PAUSE", "RESUME"][(next() % 2) as usize];
                h.ok(0, &format!("QUEUE {sub} {}", queues[(next() % 3) as usize]));
            }
            10 => h.advance(next() % 70_000),
            _ => {
                h.core.disconnect(ConnId(conn));
                h.hello(conn, &format!("w{}", conn % 2));
                let _ = h.run(conn, &format!(r#"BEAT {{"wid":"w{}"}}"#, conn % 2));
            }
        }
        h.core.effects().wakes.clear();
        h.core.effects().closes.clear();
        let step_records = std::mem::take(&mut h.core.effects().records);
        if let Some(all) = records.as_deref_mut() {
            all.extend(step_records);
        }
        check(&h, &m).map_err(|e| format!("seed {seed} step {step} (op {op}): {e}"))?;
    }
    Ok(h)
}

#[test]
fn simulation_keeps_invariants() {
    for seed in [1, 2, 0xDEAD_BEEF] {
        if let Err(e) = simulate(seed, 3_000) {
            panic!("{e}");
        }
    }
}

#[test]
fn canary_the_checker_can_fail() {
    let mut h = Harness::new();
    let mut m = Model {
        pushed: HashSet::new(),
        acked: HashSet::new(),
        acks: 0,
        fails: 0,
    };
    h.push("canary01", "");
    m.pushed.insert("canary01".into());
    assert!(check(&h, &m).is_ok());
    // A job duplicated into the retry set must be caught.
    let copy = h.core.queue_ref("default").unwrap().jobs[0].clone();
    h.core.retries.insert(
        SetKey {
            at: h.now(),
            seq: 999,
        },
        copy,
    );
    let e = check(&h, &m).unwrap_err();
    assert!(e.contains("two places"), "{e}");
    h.core.retries.clear();
    // An ACK the model saw must never come back.
    m.acked.insert("canary01".into());
    assert!(check(&h, &m).unwrap_err().contains("after its ACK"));
}

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
        for r in &records {
            crate::journal::record::encode(r, &mut image);
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
