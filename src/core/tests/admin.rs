//! The Web UI's queries and actions (`core::admin`), under the manual clock.

use super::*;
use crate::core::admin::{job_matches, Selection, SetAction};

/// A harness with `n` jobs in the retry set (`r0`, `r1`, ...), each failed once.
fn with_retries(n: usize) -> Harness {
    let mut h = Harness::new();
    for i in 0..n {
        let jid = format!("retry-{i:04}");
        h.push(&jid, r#","queue":"q1""#);
        assert!(h.fetch(1, "q1").is_some());
        h.fail(&jid);
    }
    h.records();
    h
}

fn key_of(h: &Harness, set: SetName, jid: &str) -> SetKey {
    h.set_job(set, jid).expect("in set").0
}

#[test]
fn set_key_tokens_round_trip() {
    for key in [
        SetKey {
            at: Timestamp(1_767_225_600_123_456_789),
            seq: 42,
        },
        SetKey {
            at: Timestamp(-5),
            seq: 0,
        },
        SetKey {
            at: Timestamp(0),
            seq: u64::MAX,
        },
    ] {
        assert_eq!(SetKey::from_token(&key.to_token()), Some(key));
    }
    for bad in [
        "",
        "-",
        "1",
        "x-1",
        "1-x",
        "1-2-3",
        "1--2",
        "99999999999999999999-1",
    ] {
        assert_eq!(SetKey::from_token(bad), None, "{bad:?}");
    }
}

#[test]
fn retry_now_enqueues_with_a_fresh_stamp_and_journals_it() {
    let mut h = with_retries(2);
    h.clock.advance_ms(5_000);
    let key = key_of(&h, SetName::Retries, "retry-0001");
    let n = h.core.set_action(
        SetName::Retries,
        Selection::Keys(&[key]),
        SetAction::Enqueue,
        h.clock.now(),
    );
    assert_eq!(n, 1);
    assert_eq!(h.jids(SetName::Retries), ["retry-0000"]);
    assert_eq!(h.queue_jids("q1"), ["retry-0001"]);
    let job = h.fetch(1, "q1").unwrap();
    assert_eq!(ts(&job["enqueued_at"]), h.now(), "enqueued_at is refreshed");
    assert_eq!(job["failure"]["retry_count"], 0, "failure kept");
    let records = h.records();
    assert!(matches!(
        records.first(),
        Some(Record::SetRemove { set: SetName::Retries, key: k }) if *k == key
    ));
    assert!(matches!(records.get(1), Some(Record::Enqueue { .. })));
}

#[test]
fn unknown_keys_are_skipped() {
    let mut h = with_retries(1);
    let missing = SetKey {
        at: Timestamp(1),
        seq: 999,
    };
    let n = h.core.set_action(
        SetName::Retries,
        Selection::Keys(&[missing]),
        SetAction::Delete,
        h.clock.now(),
    );
    assert_eq!(n, 0);
    assert_eq!(h.jids(SetName::Retries), ["retry-0000"]);
    assert!(h.records().is_empty());
}

#[test]
fn kill_moves_to_dead_and_is_a_no_op_on_dead() {
    let mut h = with_retries(3);
    let now = h.clock.now();
    let n = h.core.set_action(
        SetName::Retries,
        Selection::Matching(""),
        SetAction::Kill,
        now,
    );
    assert_eq!(n, 3);
    assert!(h.core.set(SetName::Retries).is_empty());
    assert_eq!(h.core.set(SetName::Dead).len(), 3);
    let n = h
        .core
        .set_action(SetName::Dead, Selection::Matching(""), SetAction::Kill, now);
    assert_eq!(n, 0);
    assert_eq!(h.core.set(SetName::Dead).len(), 3);
    let n = h.core.set_action(
        SetName::Dead,
        Selection::Matching(""),
        SetAction::Delete,
        now,
    );
    assert_eq!(n, 3);
    assert!(h.core.set(SetName::Dead).is_empty());
}

#[test]
fn matching_selection_applies_to_search_hits_only() {
    let mut h = Harness::new();
    let later = h.now().add_secs(3600).to_rfc3339();
    for (jid, jobtype) in [
        ("sched-a1", "Mailer"),
        ("sched-b2", "Billing"),
        ("sched-c3", "MAILER"),
    ] {
        h.ok(
            0,
            &format!(r#"PUSH {{"jid":"{jid}","jobtype":"{jobtype}","args":[],"at":"{later}"}}"#),
        );
    }
    let n = h.core.set_action(
        SetName::Scheduled,
        Selection::Matching("mailer"),
        SetAction::Enqueue,
        h.clock.now(),
    );
    assert_eq!(n, 2, "case-insensitive jobtype match");
    assert_eq!(h.jids(SetName::Scheduled), ["sched-b2"]);
    assert_eq!(h.queue_jids("default"), ["sched-a1", "sched-c3"]);
}

#[test]
fn search_looks_at_jobtype_queue_jid_args_and_failure() {
    let mut h = Harness::new();
    h.ok(
        0,
        r#"PUSH {"jid":"abcdefgh1","jobtype":"Resize","args":["photo.png"],"queue":"images"}"#,
    );
    assert!(h.fetch(1, "images").is_some());
    h.ok(
        0,
        r#"FAIL {"jid":"abcdefgh1","errtype":"IOError","message":"disk on fire"}"#,
    );
    let (_, job) = h.core.set(SetName::Retries).iter().next().unwrap();
    for hit in [
        "",
        "resize",
        "images",
        "abcdefgh",
        "photo.png",
        "ioerror",
        "on fire",
    ] {
        assert!(job_matches(job, hit), "{hit:?}");
    }
    for miss in ["mailer", "default", "zzz"] {
        assert!(!job_matches(job, miss), "{miss:?}");
    }
}

#[test]
fn pages_are_time_ordered_and_bounded() {
    let h = with_retries(30);
    let all: Vec<SetKey> = h
        .core
        .set(SetName::Retries)
        .iter()
        .map(|(k, _)| *k)
        .collect();
    let page = h.core.set_page(SetName::Retries, "", 25, 25, 1000);
    assert_eq!(page.matched, 30);
    assert!(page.complete);
    let keys: Vec<SetKey> = page.entries.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, all[25..]);
    // A search visits at most `scan_max` entries and says so.
    let page = h.core.set_page(SetName::Retries, "retry-", 0, 5, 10);
    assert_eq!(page.entries.len(), 5);
    assert_eq!(page.matched, 10);
    assert!(!page.complete);
    let page = h.core.set_page(SetName::Retries, "retry-0029", 0, 5, 1000);
    assert_eq!(page.matched, 1);
    assert_eq!(page.entries[0].1.jid(), "retry-0029");
}

#[test]
fn pause_resume_and_remove_one_queue() {
    let mut h = Harness::new();
    h.push("qjob-0001", r#","queue":"mail""#);
    let now = h.clock.now();
    assert!(!h.core.pause_queue("nope", true, now));
    assert!(h.core.pause_queue("mail", true, now));
    assert!(h.core.queue_ref("mail").unwrap().paused);
    assert_eq!(h.fetch(1, "mail"), None, "paused queue is skipped");
    h.advance(2_000);
    assert_eq!(h.wake_jids(), [(1, "null".to_owned())]);
    assert!(h.core.pause_queue("mail", false, h.clock.now()));
    assert!(!h.core.queue_ref("mail").unwrap().paused);
    assert_eq!(h.fetch(2, "mail").unwrap()["jid"], "qjob-0001");
    h.push("qjob-0002", r#","queue":"mail""#);
    h.records();
    assert_eq!(h.core.remove_queue("mail"), Some(1));
    assert_eq!(h.core.remove_queue("mail"), None);
    assert_eq!(
        h.records(),
        [Record::RemoveQueue {
            queue: "mail".into()
        }]
    );
}

#[test]
fn latency_uptime_and_history() {
    let mut h = Harness::new();
    h.push("lat-00001", "");
    h.clock.advance_ms(2_500);
    let now = h.clock.now();
    assert!((h.core.queue_latency_secs("default", now) - 2.5).abs() < 1e-9);
    assert_eq!(h.core.queue_latency_secs("missing", now), 0.0);
    assert_eq!(h.core.uptime_secs(now), 2);
    assert!(h.fetch(1, "default").is_some());
    h.ok(0, r#"ACK {"jid":"lat-00001"}"#);
    h.clock.advance_ms(86_400_000);
    let history = h.core.daily_history(7, h.clock.now());
    assert_eq!(history.len(), 7);
    assert_eq!(history[6].0, "2026-07-02");
    assert_eq!(history[5].0, "2026-07-01");
    assert_eq!(history[5].1.processed, 1);
    assert_eq!(history[6].1, Daily::default());
}
