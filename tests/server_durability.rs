//! What survives a crash or a stop: the journal under `kill -9` and SIGTERM, a torn tail, a last
//! batch that a power cut left with holes, a damaged record, the lock.

mod harness;

use harness::{bulk, info, job, ok, run_to_exit, temp_dir, Raw, Werk};
use std::io::Write;
use std::time::Duration;

/// The first journal generation (no compaction runs at these sizes).
fn journal(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("journal-0000000001.wrk")
}

/// Bytes of whole records in the first journal, header included (the file itself is longer:
/// with `--sync always` werk keeps zeros preallocated past the data).
fn data_len(dir: &std::path::Path) -> u64 {
    let bytes = std::fs::read(journal(dir)).unwrap();
    werk::journal::record::decode_all(&bytes).1 as u64
}

/// Pushes, reserves, schedules, pauses and fails through raw connections; returns the INFO
/// figures that must survive.
fn make_state(w: &Werk) -> Raw {
    let mut raw = Raw::ready(w.addr, r#"{"v":2,"wid":"w1"}"#);
    for jid in ["keep0001", "keep0002", "keep0003"] {
        assert_eq!(raw.cmd(&format!("PUSH {}", job(jid, "default"))), ok());
    }
    assert_eq!(raw.cmd(&format!("PUSH {}", job("paused01", "slow"))), ok());
    assert_eq!(raw.cmd("QUEUE PAUSE slow"), ok());
    let later = r#"PUSH {"jid":"sched001","jobtype":"T","args":[],"at":"2099-01-01T00:00:00Z"}"#;
    assert_eq!(raw.cmd(later), ok());
    assert!(bulk(raw.cmd("FETCH default")).contains("keep0001"));
    assert!(bulk(raw.cmd("FETCH default")).contains("keep0002"));
    assert_eq!(raw.cmd(r#"FAIL {"jid":"keep0002","message":"boom"}"#), ok());
    raw
}

fn assert_state(raw: &mut Raw) {
    let i = info(raw);
    let f = &i["faktory"];
    assert_eq!(f["queues"]["default"], 1, "{i}");
    assert_eq!(f["queues"]["slow"], 1, "{i}");
    assert_eq!(f["sets"]["working"], 1, "{i}");
    assert_eq!(f["sets"]["scheduled"], 1, "{i}");
    assert_eq!(f["sets"]["retries"], 1, "{i}");
    assert_eq!(f["total_failures"], 1, "{i}");
    assert_eq!(f["total_processed"], 1, "{i}");
    // The pause survived; the reservation still answers to ACK.
    assert_eq!(raw.cmd("FETCH slow"), werk::resp::Frame::Bulk(None));
    assert_eq!(raw.cmd(r#"ACK {"jid":"keep0001"}"#), ok());
    assert_eq!(info(raw)["faktory"]["total_processed"], 2);
}

#[test]
fn acknowledged_state_survives_kill_9() {
    let dir = temp_dir("durable");
    let mut w = Werk::start_in(&dir, &[], &[]);
    drop(make_state(&w));
    w.kill9();
    let w = Werk::start_in(&dir, &[], &[]);
    assert!(w.logged("journal records"));
    assert_state(&mut Raw::ready(w.addr, "{}"));
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sync_none_still_survives_a_crash_of_werk() {
    let dir = temp_dir("syncnone");
    let mut w = Werk::start_in(&dir, &["--sync", "none"], &[]);
    drop(make_state(&w));
    w.kill9();
    let w = Werk::start_in(&dir, &["--sync", "none"], &[]);
    assert_state(&mut Raw::ready(w.addr, "{}"));
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sigterm_with_queued_jobs_exits_zero_and_keeps_them() {
    // `everysec` is where the final sync matters most: its last second is synced at the stop.
    for sync in ["always", "everysec", "none"] {
        let dir = temp_dir("sigterm");
        let mut w = Werk::start_in(&dir, &["--sync", sync], &[]);
        let mut raw = make_state(&w);
        let status = w
            .terminate(Duration::from_secs(5))
            .expect("werk did not exit within 5 s of SIGTERM");
        assert!(status.success(), "--sync {sync}: {status:?}");
        assert!(
            raw.closed(),
            "--sync {sync}: a client connection was left open"
        );
        let w = Werk::start_in(&dir, &["--sync", sync], &[]);
        assert_state(&mut Raw::ready(w.addr, "{}"));
        drop(w);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn torn_tail_is_cut_and_logged() {
    let dir = temp_dir("torn");
    let mut w = Werk::start_in(&dir, &[], &[]);
    drop(make_state(&w));
    w.kill9();
    let good_len = data_len(&dir);
    // Half a record: a length that promises more than follows, at the end of the file (the
    // zeros preallocated past the data are cut first: this is a journal that was appended to).
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(journal(&dir))
        .unwrap();
    f.set_len(good_len).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 1, b'{']).unwrap();
    drop(f);
    let w = Werk::start_in(&dir, &[], &[]);
    assert!(w.logged(&format!(
        "cut a torn tail at byte {good_len} (10 bytes dropped)"
    )));
    assert_eq!(std::fs::metadata(journal(&dir)).unwrap().len(), good_len);
    assert_state(&mut Raw::ready(w.addr, "{}"));
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

/// One PUSHB of 40 jobs of about 360 bytes each: a batch of its own, of about 15 KB, so that it
/// spans many sectors.
fn push_bulk(raw: &mut Raw, tag: &str) {
    let jobs: Vec<String> = (0..40)
        .map(|i| {
            format!(
                r#"{{"jid":"{tag}{i:04}","jobtype":"T","args":["{}"],"queue":"{tag}"}}"#,
                "p".repeat(300)
            )
        })
        .collect();
    assert_eq!(bulk(raw.cmd(&format!("PUSHB [{}]", jobs.join(",")))), "{}");
}

/// werk with `args` in `dir`: the state of `make_state`, a PUSHB batch, and another one after
/// it; then `kill -9` and one sector zeroed in the middle of the first PUSHB batch. Returns
/// where that batch began and the journal's bytes.
fn hole_then_a_batch(dir: &std::path::Path, args: &[&str]) -> (u64, Vec<u8>) {
    let mut w = Werk::start_in(dir, args, &[]);
    let mut raw = make_state(&w);
    let before = data_len(dir);
    push_bulk(&mut raw, "bulk");
    let end = data_len(dir);
    push_bulk(&mut raw, "more");
    drop(raw);
    w.kill9();
    let hole = ((before + end) / 2 / 512 * 512) as usize;
    let mut bytes = std::fs::read(journal(dir)).unwrap();
    bytes[hole..hole + 512].fill(0);
    std::fs::write(journal(dir), &bytes).unwrap();
    (before, bytes)
}

/// A power cut while the last batch was being synced can leave any of its sectors unwritten
/// (zeros, over the space werk preallocated), with whole records after the hole: the disk
/// writes a batch's sectors in any order until the fsync returns. Nothing in that batch was
/// acknowledged, so werk drops it whole, logs it, and starts with every batch before it. The
/// same hole in a batch that another batch follows is damage to acknowledged data: refused,
/// naming the file, and the file is left as it is.
#[test]
fn a_power_cut_inside_the_last_batch_drops_that_batch_whole() {
    let dir = temp_dir("powercut");
    let mut w = Werk::start_in(&dir, &[], &[]);
    let mut raw = make_state(&w);
    let before = data_len(&dir);
    push_bulk(&mut raw, "bulk");
    drop(raw);
    w.kill9();
    let end = data_len(&dir);
    assert!(end - before > 14_000, "one batch of {} bytes", end - before);
    let whole = std::fs::read(journal(&dir)).unwrap();
    // A hole of one sector in the middle of the batch, whole records on both sides of it.
    let hole = ((before + end) / 2 / 512 * 512) as usize;
    let mut bytes = whole.clone();
    bytes[hole..hole + 512].fill(0);
    std::fs::write(journal(&dir), &bytes).unwrap();
    let w = Werk::start_in(&dir, &[], &[]);
    assert!(
        w.logged(&format!(
            "cut a torn tail at byte {before} ({} bytes dropped): the last batch, unfinished",
            end.div_ceil(512) * 512 - before
        )),
        "{}",
        w.log_text()
    );
    let mut raw = Raw::ready(w.addr, "{}");
    assert_eq!(
        info(&mut raw)["faktory"]["queues"]["bulk"],
        serde_json::Value::Null
    );
    assert_state(&mut raw);
    drop(raw);
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();

    // The same hole, with one more batch after it: refused.
    let dir = temp_dir("powercut-refused");
    let (_, bytes) = hole_then_a_batch(&dir, &[]);
    let (status, stderr) = match Werk::try_start_in(&dir, &[], &[]) {
        Ok(w) => panic!("werk started on a damaged journal:\n{}", w.log_text()),
        Err(refused) => refused,
    };
    assert!(!status.success());
    assert!(stderr.contains("journal-0000000001.wrk"), "{stderr}");
    assert!(stderr.contains("yet the batch closed at byte"), "{stderr}");
    assert!(
        std::fs::read(journal(&dir)).unwrap() == bytes,
        "the file was changed"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

/// With `--sync none` (and `everysec` between its syncs) werk writes a batch without waiting
/// for the one before it to be durable, so a power cut can leave a hole in a batch that later
/// batches follow: every batch from the damaged one on is dropped, as that policy allows, and
/// werk starts with the ones before it. Its markers say how the file was written, whatever
/// `--sync` the next start has. (`none`, so that no periodic sync can fall between the two
/// batches on a slow machine and make the second one say the first was durable.)
#[test]
fn a_power_cut_under_sync_none_drops_the_batches_from_the_hole_on() {
    for restart in ["none", "everysec", "always"] {
        let dir = temp_dir("powercut-none");
        let (before, bytes) = hole_then_a_batch(&dir, &["--sync", "none"]);
        let size = bytes.len() as u64;
        let w = Werk::start_in(&dir, &["--sync", restart], &[]);
        assert!(
            w.logged(&format!(
                "cut a torn tail at byte {before} ({} bytes dropped): batches written with \
                 --sync everysec or none whose sync never finished",
                size - before
            )),
            "restart with {restart}: {}",
            w.log_text()
        );
        let mut raw = Raw::ready(w.addr, "{}");
        let queues = &info(&mut raw)["faktory"]["queues"];
        assert_eq!(queues["bulk"], serde_json::Value::Null);
        assert_eq!(queues["more"], serde_json::Value::Null);
        assert_state(&mut raw);
        drop(raw);
        drop(w);
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn damaged_record_is_refused_not_served() {
    let dir = temp_dir("corrupt");
    let mut w = Werk::start_in(&dir, &[], &[]);
    drop(make_state(&w));
    w.kill9();
    let mut bytes = std::fs::read(journal(&dir)).unwrap();
    // A byte inside a job body in the middle of the file: its record's CRC no longer matches.
    let at = bytes
        .windows(8)
        .position(|w| w == b"keep0003")
        .expect("job in journal");
    bytes[at] ^= 0x10;
    std::fs::write(journal(&dir), &bytes).unwrap();
    let (status, stderr) = run_to_exit(&["-d", dir.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("werk will not start on a damaged journal"),
        "{stderr}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn second_werk_on_the_same_directory_is_refused() {
    let w = Werk::start();
    let (status, stderr) = run_to_exit(&["-d", w.dir.to_str().unwrap()]);
    assert!(!status.success());
    assert!(
        stderr.contains("in use by another werk process"),
        "{stderr}"
    );
}

#[test]
fn reply_is_sent_only_after_the_journal_has_it() {
    // Every +OK must correspond to bytes in the journal file by the time the client sees it.
    let w = Werk::start();
    let mut raw = Raw::ready(w.addr, "{}");
    let mut last = data_len(&w.dir);
    for i in 0..50 {
        let jid = format!("seen{i:05}");
        assert_eq!(raw.cmd(&format!("PUSH {}", job(&jid, "default"))), ok());
        let now = data_len(&w.dir);
        assert!(
            now > last,
            "PUSH {i} acknowledged before it reached the journal"
        );
        let bytes = std::fs::read(journal(&w.dir)).unwrap();
        assert!(
            bytes[last as usize..now as usize]
                .windows(jid.len())
                .any(|w| w == jid.as_bytes()),
            "PUSH {i}: its job is not in the records the journal grew by"
        );
        last = now;
    }
}
