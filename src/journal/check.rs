//! `werk journal check DIR`: verifies a data directory offline and prints what it holds.
//!
//! It reads the snapshot and every journal exactly as a start would, but changes nothing: a
//! torn tail is reported (a start would cut it), damage is reported with the file and offset,
//! and the state rebuilt from the readable prefix is summarised either way.

use super::files::{journal_files, recover, Mode, LOCK_FILE, SNAPSHOT_FILE};
use crate::clock::{Clock, SystemClock};
use crate::core::sorted::SetName;
use crate::core::{Core, CoreConfig};
use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::path::Path;

/// Outcome of a check: the report, and whether the directory would start cleanly.
#[derive(Debug)]
pub struct Report {
    /// Human-readable lines.
    pub text: String,
    /// False when a start would refuse the directory.
    pub healthy: bool,
}

/// Checks `dir` without changing it.
pub fn check(dir: &Path) -> Report {
    let mut text = String::new();
    let mut healthy = true;
    let _ = writeln!(text, "data directory {}", dir.display());
    if !dir.is_dir() {
        let _ = writeln!(text, "error: not a directory");
        return Report {
            text,
            healthy: false,
        };
    }
    if let Ok(lock) = OpenOptions::new().write(true).open(dir.join(LOCK_FILE)) {
        if lock.try_lock().is_err() {
            let _ = writeln!(
                text,
                "note: a running werk holds this directory; its newest records may be mid-write"
            );
        }
    }
    let snapshot = dir.join(SNAPSHOT_FILE);
    match std::fs::metadata(&snapshot) {
        Ok(m) => {
            let _ = writeln!(text, "  {SNAPSHOT_FILE}: {} bytes", m.len());
        }
        Err(_) => {
            let _ = writeln!(text, "  no snapshot");
        }
    }
    match journal_files(dir) {
        Ok(files) => {
            for (g, p) in files {
                let size = std::fs::metadata(&p).map_or(0, |m| m.len());
                let data = super::files::data_end(&p).unwrap_or(size);
                let zeros = if data < size {
                    format!(" ({data} of data, then preallocated zeros)")
                } else {
                    String::new()
                };
                let _ = writeln!(text, "  journal generation {g}: {size} bytes{zeros}");
            }
        }
        Err(e) => {
            let _ = writeln!(text, "error: cannot list the directory: {e}");
            healthy = false;
        }
    }
    let now = SystemClock::new().now();
    let mut core = Core::new(CoreConfig::default(), now, 0);
    match recover(dir, Mode::ReadOnly, None, &mut |r| {
        core.replay(r, now).map_err(|e| e.to_string())
    }) {
        Ok(found) => {
            let (generation, append_at) = found.appends_to();
            let new = match (append_at, found.journal_old_format) {
                (None, true) => " (a new file: the newest is in an older format)",
                _ => "",
            };
            let _ = writeln!(
                text,
                "read {} snapshot records and {} journal records; appends would continue in \
                 generation {generation}{new}",
                found.snapshot_records, found.journal_records
            );
            for note in &found.notes {
                let _ = writeln!(text, "warning: {note} (a start cuts it)");
            }
        }
        Err(e) => {
            healthy = false;
            let _ = writeln!(text, "DAMAGED: {e}");
            let _ = writeln!(text, "state rebuilt from the records before the damage:");
        }
    }
    summarise(&core, &mut text);
    let _ = writeln!(
        text,
        "{}",
        if healthy {
            "ok: werk will start on this directory"
        } else {
            "werk will refuse to start on this directory"
        }
    );
    Report { text, healthy }
}

fn summarise(core: &Core, text: &mut String) {
    let mut queued = 0;
    for (name, q) in core.queues() {
        queued += q.jobs.len();
        let _ = writeln!(
            text,
            "  queue {name}: {} jobs{}",
            q.jobs.len(),
            if q.paused { " (paused)" } else { "" }
        );
    }
    let _ = writeln!(
        text,
        "  {queued} queued, {} reserved, {} scheduled, {} retries, {} dead",
        core.working().len(),
        core.set(SetName::Scheduled).len(),
        core.set(SetName::Retries).len(),
        core.set(SetName::Dead).len()
    );
    let s = core.stats();
    let _ = writeln!(
        text,
        "  processed {}, failures {}, {} days of history",
        s.processed,
        s.failures,
        s.daily.len()
    );
}

/// Runs `werk journal ARGS...`; returns the process exit code.
pub fn main(args: &[String]) -> u8 {
    match args {
        [verb, dir] if verb == "check" => {
            let report = check(Path::new(dir));
            print!("{}", report.text);
            if report.healthy {
                0
            } else {
                1
            }
        }
        _ => {
            eprintln!("usage: werk journal check DIR");
            2
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::Record;
    use crate::journal::files::journal_name;
    use crate::journal::record::{encode, encode_commit, HEADER};

    /// Appends `r` as a batch of its own.
    fn batch(r: &Record, img: &mut Vec<u8>) {
        let start = img.len() as u64;
        encode(r, img);
        encode_commit(start, img);
    }

    #[test]
    fn reports_contents_torn_tails_and_damage_without_changing_anything() {
        let d = std::env::temp_dir().join(format!("werk-unit-check-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        let mut img = HEADER.to_vec();
        let job = br#"{"jid":"abcdefgh1","queue":"mail","jobtype":"T","args":[]}"#;
        for _ in 0..3 {
            batch(&Record::Enqueue { job: job.to_vec() }, &mut img);
        }
        batch(
            &Record::Pause {
                queue: "mail".into(),
                paused: true,
            },
            &mut img,
        );
        let p = d.join(journal_name(1));
        std::fs::write(&p, &img).unwrap();

        let r = check(&d);
        assert!(r.healthy, "{}", r.text);
        assert!(r.text.contains("queue mail: 3 jobs (paused)"), "{}", r.text);
        assert!(r.text.contains("ok: werk will start"), "{}", r.text);

        let mut torn = img.clone();
        torn.extend_from_slice(&[9, 0, 0]);
        std::fs::write(&p, &torn).unwrap();
        let r = check(&d);
        assert!(r.healthy, "{}", r.text);
        assert!(r.text.contains("cut a torn tail"), "{}", r.text);
        assert_eq!(std::fs::read(&p).unwrap(), torn, "read-only");

        let mut bad = img.clone();
        let mut one = Vec::new();
        batch(&Record::Enqueue { job: job.to_vec() }, &mut one);
        // A byte inside the second record's body.
        let second = HEADER.len() + one.len() + 12;
        bad[second] ^= 0x40;
        std::fs::write(&p, &bad).unwrap();
        let r = check(&d);
        assert!(!r.healthy, "{}", r.text);
        assert!(r.text.contains("DAMAGED"), "{}", r.text);
        assert!(r.text.contains("queue mail: 1 jobs"), "{}", r.text);
        assert!(r.text.contains("werk will refuse to start"), "{}", r.text);

        // A version 1 journal: a start would open generation 2.
        let mut v1 = crate::journal::record::HEADER_V1.to_vec();
        encode(&Record::Enqueue { job: job.to_vec() }, &mut v1);
        std::fs::write(&p, &v1).unwrap();
        let r = check(&d);
        assert!(r.healthy, "{}", r.text);
        assert!(
            r.text
                .contains("appends would continue in generation 2 (a new file"),
            "{}",
            r.text
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
