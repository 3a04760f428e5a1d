//! Memory limits against the real binary, scaled down from issue 4's targets so that they run in
//! `cargo test`: a queued job of the issue's shape costs at most 100 bytes of server RSS (1M in
//! ≤ 100 MB), both as pushed and as recovered at a restart, and an idle connection that said
//! HELLO costs at most 10 KiB (10,000 in ≤ 100 MB). `benches/journal-1m.sh` and
//! `werk-bench --mode idle` measure the full-size figures (docs/BENCHMARKS.md).

mod harness;

use harness::{
    bulk, info, job, ok, pushb_load_jobs, queued, raise_own_nofile, rss_kib, temp_dir, Raw, Werk,
};
use std::time::Duration;

/// Jobs pushed: enough that the fixed part of the RSS (binary, buffers, tables) does not hide a
/// few bytes per job, and few enough for a debug build.
const JOBS: usize = 250_000;
/// Issue 4: 1,000,000 queued jobs in ≤ 100 MB.
const BYTES_PER_JOB_MAX: u64 = 100;

/// Server RSS growth per queued job, in bytes.
fn per_job(rss_kib: u64, empty_kib: u64) -> u64 {
    rss_kib.saturating_sub(empty_kib) * 1024 / JOBS as u64
}

#[test]
fn a_queued_job_costs_at_most_100_bytes() {
    let dir = temp_dir("mem-jobs");
    // No compaction during the push: its private copy would be measured too (the compaction
    // tests check that it is given back).
    let args = ["--sync", "none", "--compact-bytes-min", "10000000000"];
    let w = Werk::start_in(&dir, &args, &[]);
    let mut raw = Raw::ready(w.addr, r#"{"v":2}"#);
    assert_eq!(queued(&info(&mut raw)), 0);
    let empty = rss_kib(w.pid());
    for b in 0..JOBS / 1000 {
        let jids = (0..1000).map(|i| format!("bench{:012}", b * 1000 + i));
        assert_eq!(bulk(raw.cmd(&pushb_load_jobs(jids, "bench"))), "{}");
    }
    assert_eq!(queued(&info(&mut raw)), JOBS as u64);
    let pushed = rss_kib(w.pid());
    drop(raw);
    drop(w);

    let w = Werk::start_in(&dir, &args, &[]);
    let mut raw = Raw::ready(w.addr, r#"{"v":2}"#);
    assert_eq!(queued(&info(&mut raw)), JOBS as u64);
    let recovered = rss_kib(w.pid());
    println!(
        "memory: empty {empty} KiB; {JOBS} jobs pushed {pushed} KiB ({} bytes each), recovered \
         {recovered} KiB ({} bytes each)",
        per_job(pushed, empty),
        per_job(recovered, empty)
    );
    for (when, rss) in [("pushed", pushed), ("recovered at a restart", recovered)] {
        assert!(
            per_job(rss, empty) <= BYTES_PER_JOB_MAX,
            "{JOBS} jobs {when}: {rss} KiB against {empty} KiB empty, {} bytes per job (at most \
             {BYTES_PER_JOB_MAX})",
            per_job(rss, empty)
        );
    }
    drop(w);
    std::fs::remove_dir_all(dir).unwrap();
}

/// Connections held open.
const CONNS: usize = 1000;
/// Issue 4: 10,000 idle connections in ≤ 100 MB.
const BYTES_PER_CONN_MAX: u64 = 10 * 1024;

#[test]
fn an_idle_connection_costs_at_most_10_kib() {
    let hard = raise_own_nofile(CONNS as u64 + 200);
    assert!(
        hard >= CONNS as u64 + 200,
        "this test needs a hard open-file limit of at least {} (it is {hard})",
        CONNS + 200
    );
    let w = Werk::start_with(&["--sync", "none"], &[]);
    let mut probe = Raw::ready(w.addr, "{}");
    assert_eq!(probe.cmd("FLUSH"), ok());
    let empty = rss_kib(w.pid());
    let mut conns: Vec<Raw> = (0..CONNS)
        .map(|i| Raw::ready(w.addr, &format!(r#"{{"wid":"idle{i:04}","v":2}}"#)))
        .collect();
    let idle = rss_kib(w.pid());
    // Each one used once (an INFO reply, 1 KB or more): its buffers keep their capacity.
    for raw in &mut conns {
        assert!(info(raw)["faktory"].is_object());
    }
    let used = rss_kib(w.pid());
    // The server still answers at once with all of them open.
    probe
        .stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(probe.cmd(&format!("PUSH {}", job("after-idle", "x"))), ok());
    let each = |rss: u64| rss.saturating_sub(empty) * 1024 / CONNS as u64;
    println!(
        "memory: empty {empty} KiB; {CONNS} idle connections {idle} KiB ({} bytes each), after \
         one INFO each {used} KiB ({} bytes each)",
        each(idle),
        each(used)
    );
    for (when, rss) in [("after HELLO", idle), ("after one INFO each", used)] {
        assert!(
            each(rss) <= BYTES_PER_CONN_MAX,
            "{CONNS} connections {when}: {rss} KiB against {empty} KiB, {} bytes each (at most \
             {BYTES_PER_CONN_MAX})",
            each(rss)
        );
    }
}
