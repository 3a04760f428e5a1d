//! Compaction against the real binary: under a steady load the data directory stays
//! proportional to the live state, a restart after compactions recovers exactly the acknowledged
//! state, the memory a compaction used is given back, and `werk journal check` reports a
//! directory offline.

mod harness;

use harness::{
    bulk, holds_for, info, job, ok, pushb_load_jobs, queued, rss_kib, temp_dir, wait_until, Raw,
    Werk,
};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Bytes of data in the directory: whole files, but journals only up to their data end (with
/// `--sync always` werk keeps zeros preallocated past it, at most one step of 256 KiB at these
/// sizes); and the bytes the files take, zeros included.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    let mut data = 0;
    let mut files = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        // A file may go away between the listing and the read (compaction removes journals).
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        files += meta.len();
        let is_journal = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("journal-"));
        data += if is_journal {
            werk::journal::files::data_end(&path).unwrap_or(meta.len())
        } else {
            meta.len()
        };
    }
    (data, files)
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// One round of steady load: 100 pushes, then 100 FETCH + ACK (the oldest jobs).
fn round(raw: &mut Raw, r: usize) {
    for i in 0..100 {
        let jid = format!("r{r:04}j{i:03}");
        assert_eq!(raw.cmd(&format!("PUSH {}", job(&jid, "default"))), ok());
    }
    for _ in 0..100 {
        let j: serde_json::Value = serde_json::from_str(&bulk(raw.cmd("FETCH default"))).unwrap();
        let ack = format!(r#"ACK {{"jid":"{}"}}"#, j["jid"].as_str().unwrap());
        assert_eq!(raw.cmd(&ack), ok());
    }
}

#[test]
fn steady_load_keeps_the_directory_proportional_to_the_live_state() {
    let dir = temp_dir("compact");
    let args = ["--compact-bytes-min", "65536"];
    let mut w = Werk::start_in(&dir, &args, &[]);
    let mut raw = Raw::ready(w.addr, r#"{"v":2,"wid":"w1"}"#);
    // Live state: 500 queued jobs, one reserved, one paused queue, one retry, one dead job.
    for i in 0..500 {
        let jid = format!("live{i:05}");
        assert_eq!(raw.cmd(&format!("PUSH {}", job(&jid, "keep"))), ok());
    }
    assert_eq!(raw.cmd("QUEUE PAUSE keep"), ok());
    assert_eq!(raw.cmd(&format!("PUSH {}", job("held0001", "held"))), ok());
    assert!(bulk(raw.cmd("FETCH held")).contains("held0001"));
    let retry = r#"PUSH {"jid":"fails001","jobtype":"T","args":[],"queue":"f","retry":5}"#;
    assert_eq!(raw.cmd(retry), ok());
    let dead = r#"PUSH {"jid":"fails002","jobtype":"T","args":[],"queue":"f","retry":-1}"#;
    assert_eq!(raw.cmd(dead), ok());
    for jid in ["fails001", "fails002"] {
        assert!(bulk(raw.cmd("FETCH f")).contains(jid));
        assert_eq!(
            raw.cmd(&format!(r#"FAIL {{"jid":"{jid}","message":"m"}}"#)),
            ok()
        );
    }
    // Steady load: the live state does not grow, the work done does.
    let (mut peak, mut peak_files) = (0, 0);
    for r in 0..60 {
        round(&mut raw, r);
        let (data, files) = dir_bytes(&dir);
        peak = peak.max(data);
        peak_files = peak_files.max(files);
    }
    assert!(
        wait_until(Duration::from_secs(20), || w
            .log_count("compaction: snapshot")
            >= 3),
        "fewer than 3 compactions"
    );
    // 6,000 jobs went through (about 3.5 MB of journal without compaction); the live state is
    // about 130 KB. Files stay within the snapshot plus two journals of at most
    // max(64 KiB, snapshot) each, plus the batch that crossed the line.
    assert!(peak < 700_000, "the data directory peaked at {peak} bytes");
    // On disk, each of the (at most two) journals adds its preallocated zeros.
    assert!(
        peak_files < 700_000 + 2 * (512 << 10),
        "the data directory's files peaked at {peak_files} bytes"
    );
    assert!(
        names(&dir).contains(&"snapshot.wrk".to_string()),
        "{:?}",
        names(&dir)
    );
    let before = info(&mut raw);
    drop(raw);
    w.kill9();

    let w = Werk::start_in(&dir, &args, &[]);
    assert!(w.logged("recovered a snapshot of"));
    let mut raw = Raw::ready(w.addr, r#"{"v":2,"wid":"w2"}"#);
    let after = info(&mut raw);
    for key in ["queues", "sets", "total_processed", "total_failures"] {
        assert_eq!(after["faktory"][key], before["faktory"][key], "{key}");
    }
    assert_eq!(after["faktory"]["queues"]["keep"], 500);
    assert_eq!(after["faktory"]["sets"]["working"], 1, "{after}");
    assert_eq!(after["faktory"]["sets"]["retries"], 1);
    assert_eq!(after["faktory"]["sets"]["dead"], 1);
    assert_eq!(after["faktory"]["total_processed"], 6_002);
    assert_eq!(
        raw.cmd("FETCH keep"),
        werk::resp::Frame::Bulk(None),
        "still paused"
    );
    assert_eq!(raw.cmd("QUEUE RESUME keep"), ok());
    for i in 0..500 {
        let got = bulk(raw.cmd("FETCH keep"));
        assert!(
            got.contains(&format!("live{i:05}")),
            "job {i} out of order: {got}"
        );
    }
    // The reservation came back and still answers to ACK.
    assert_eq!(raw.cmd(r#"ACK {"jid":"held0001"}"#), ok());
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

/// A compaction rebuilds the state in a second copy on its own thread. Once it is done, werk
/// must hold about what a fresh start on the same directory holds: the copy's memory goes back
/// to the system. (A change in how recovery allocates once left the copy's pages with the
/// compaction thread's allocator: 134 MB against 83 MB after a restart, with a million jobs.)
/// The jobs go to 300 queues of 1,000: one queue of 300,000 doubles its buffer late in the
/// push, and whether a compaction's trim comes after that moved the figure by 8 MB. Measured
/// (debug build): 1.07–1.08 × the restart's figure; 1.49–1.58 × without the fix.
#[test]
fn compactions_give_their_memory_back() {
    let dir = temp_dir("compact-rss");
    let args = ["--compact-bytes-min", "2097152", "--sync", "none"];
    let mut w = Werk::start_in(&dir, &args, &[]);
    let mut raw = Raw::ready(w.addr, r#"{"v":2}"#);
    let batches = 300;
    for b in 0..batches {
        let jids = (0..1000).map(|i| format!("mem{b:04}{i:04}"));
        assert_eq!(
            bulk(raw.cmd(&pushb_load_jobs(jids, &format!("q{b:03}")))),
            "{}"
        );
    }
    // Every compaction has finished: while one runs there are two journal files (it removes
    // the old one last, after giving its memory back). One still running when the push ends
    // may leave enough journal behind it for one more, which starts in the loop turn after it
    // ends: settled means one file for half a second.
    let journals = || {
        names(&dir)
            .iter()
            .filter(|n| n.starts_with("journal-"))
            .count()
    };
    let settled = wait_until(Duration::from_secs(60), || {
        w.log_count("compaction: snapshot") >= 2
            && journals() == 1
            && holds_for(Duration::from_millis(500), || journals() == 1)
    });
    assert!(settled, "compactions did not settle:\n{}", w.log_text());
    let after_push = rss_kib(w.pid());
    assert_eq!(queued(&info(&mut raw)), batches * 1000);
    drop(raw);
    let stopped = w.terminate(Duration::from_secs(20));
    assert!(stopped.is_some_and(|s| s.success()), "{}", w.log_text());
    let w = Werk::start_in(&dir, &args, &[]);
    assert!(w.logged("recovered a snapshot of"));
    let mut raw = Raw::ready(w.addr, r#"{"v":2}"#);
    assert_eq!(queued(&info(&mut raw)), batches * 1000);
    let recovered = rss_kib(w.pid());
    println!(
        "compaction memory: {after_push} KiB after {} jobs and their compactions, {recovered} KiB \
         after a restart",
        batches * 1000
    );
    assert!(
        after_push * 100 <= recovered * 125,
        "werk holds {after_push} KiB after its compactions, {recovered} KiB after a restart on \
         the same state: a compaction's memory was not given back"
    );
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn sync_everysec_survives_a_crash_of_werk() {
    let dir = temp_dir("everysec");
    let mut w = Werk::start_in(&dir, &["--sync", "everysec"], &[]);
    let mut raw = Raw::ready(w.addr, "{}");
    for i in 0..200 {
        assert_eq!(
            raw.cmd(&format!("PUSH {}", job(&format!("every{i:03}"), "q"))),
            ok()
        );
    }
    w.kill9();
    let w = Werk::start_in(&dir, &["--sync", "everysec"], &[]);
    let mut raw = Raw::ready(w.addr, "{}");
    assert_eq!(info(&mut raw)["faktory"]["queues"]["q"], 200);
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

fn check(dir: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_werk"))
        .args(["journal", "check"])
        .arg(dir)
        .output()
        .expect("run werk journal check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn journal_check_reports_a_directory_offline() {
    let dir = temp_dir("check");
    let mut w = Werk::start_in(&dir, &[], &[]);
    let mut raw = Raw::ready(w.addr, "{}");
    for i in 0..3 {
        assert_eq!(
            raw.cmd(&format!("PUSH {}", job(&format!("chk{i:05}"), "mail"))),
            ok()
        );
    }
    let (healthy, text) = check(&dir);
    assert!(healthy, "{text}");
    assert!(
        text.contains("a running werk holds this directory"),
        "{text}"
    );
    assert!(text.contains("queue mail: 3 jobs"), "{text}");
    w.kill9();
    let (healthy, text) = check(&dir);
    assert!(healthy, "{text}");
    assert!(!text.contains("a running werk"), "{text}");
    // Damage in the middle: reported with the file, and the readable prefix summarised.
    let path = dir.join("journal-0000000001.wrk");
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(8).position(|w| w == b"chk00001").unwrap();
    bytes[at] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let (healthy, text) = check(&dir);
    assert!(!healthy, "{text}");
    assert!(
        text.contains("DAMAGED") && text.contains("journal-0000000001.wrk"),
        "{text}"
    );
    assert!(text.contains("queue mail: 1 jobs"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_werk"))
        .args(["journal", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}
