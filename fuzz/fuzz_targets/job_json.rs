//! Job validation and the canonical job JSON, reached the way a client reaches them:
//! `PUSH <bytes>` (and `PUSHB <bytes>`) through Command::parse, then Job::from_input.
//!
//! For every job that validates, the canonical JSON (write_json) must be valid JSON with no raw
//! line break; it must keep the client's jid, jobtype, queue, args and custom (as JSON values);
//! and reading it back as a JobInput and validating again must give the same job, byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::value::RawValue;
use serde_json::Value;
use werk::command::{Command, JobInput};
use werk::core::job::{minify, NewJob};
use werk::core::Job;
use werk::timestamp::Timestamp;

/// 2026-07-01T12:00:00.5Z: a fixed "now", so `at` and `created_at` are deterministic.
const NOW: Timestamp = Timestamp(1_782_907_200_500_000_000);

fn check(input: &JobInput<'_>) {
    let Ok(new) = Job::from_input(input, NOW) else {
        return;
    };
    let json = new.job.to_json();
    let mut via_write = Vec::new();
    new.job.write_json(&mut via_write);
    assert_eq!(json, via_write);
    assert!(
        !json.contains(&b'\n') && !json.contains(&b'\r'),
        "canonical JSON holds a line break: {:?}",
        String::from_utf8_lossy(&json)
    );
    if let Err(e) = serde_json::from_slice::<Box<RawValue>>(&json) {
        panic!(
            "canonical JSON is not JSON ({e}): {:?}",
            String::from_utf8_lossy(&json)
        );
    }
    // Semantic checks need a Value; serde_json refuses numbers beyond f64 (e.g. 1e400) there,
    // which the raw args and custom may hold, so those inputs stop at the syntax check.
    let Ok(value) = serde_json::from_slice::<Value>(&json) else {
        return round_trip(new, &json);
    };
    // The client's data survives the rewrite.
    assert_eq!(value["jid"].as_str(), input.jid.as_deref());
    assert_eq!(value["jobtype"].as_str(), input.jobtype.as_deref());
    let queue = match input.queue.as_deref() {
        None | Some("") => "default",
        Some(q) => q,
    };
    assert_eq!(value["queue"].as_str(), Some(queue));
    let args: Value = serde_json::from_str(input.args.expect("validated job has args").get())
        .expect("args parsed as a Value inside the canonical JSON");
    assert_eq!(value["args"], args, "args changed");
    // The stored args are already minified: minify is idempotent on its own output.
    assert_eq!(
        minify(new.job.fields().args),
        new.job.fields().args,
        "minify is not idempotent"
    );
    match input
        .custom
        .map(|c| serde_json::from_str::<Value>(c.get()).unwrap())
    {
        Some(Value::Object(m)) if !m.is_empty() => {
            assert_eq!(value["custom"], Value::Object(m), "custom changed")
        }
        _ => assert!(value.get("custom").is_none(), "empty custom written"),
    }
    round_trip(new, &json);
}

/// The stored form is itself a valid PUSH, which stores the same bytes.
fn round_trip(new: NewJob, json: &[u8]) {
    let again: JobInput<'_> = match serde_json::from_slice(json) {
        Ok(j) => j,
        Err(e) => panic!(
            "canonical JSON is not a JobInput ({e}): {:?}",
            String::from_utf8_lossy(json)
        ),
    };
    let renew = match Job::from_input(&again, NOW) {
        Ok(n) => n,
        Err(e) => panic!(
            "canonical JSON does not validate ({e}): {:?}",
            String::from_utf8_lossy(json)
        ),
    };
    assert_eq!(
        renew.scheduled_for, new.scheduled_for,
        "scheduled_for changed"
    );
    let json2 = renew.job.to_json();
    assert_eq!(
        String::from_utf8_lossy(json),
        String::from_utf8_lossy(&json2),
        "canonical JSON is not stable"
    );
    assert_eq!(renew.job, new.job);

    // And as a request line.
    let mut line = b"PUSH ".to_vec();
    line.extend_from_slice(json);
    match Command::parse(&line) {
        Ok(Command::Push(j)) => {
            let n = Job::from_input(&j, NOW).expect("line form validates");
            assert_eq!(n.job.to_json(), json);
        }
        other => panic!("canonical JSON as a PUSH line: {other:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut line = b"PUSH ".to_vec();
    line.extend_from_slice(data);
    if let Ok(Command::Push(job)) = Command::parse(&line) {
        check(&job);
    }
    // The same bytes as a batch: `[...]` reaches PUSHB.
    if data.first() == Some(&b'[') {
        let mut line = b"PUSHB ".to_vec();
        line.extend_from_slice(data);
        if let Ok(Command::Pushb(jobs)) = Command::parse(&line) {
            for job in &jobs {
                check(job);
            }
        }
    }
});
