//! Many producers and consumers at once over raw TCP: every job is delivered exactly once and
//! the counters add up. Must finish well inside a minute in a debug build on two cores.

mod common;

use common::{queue_size, set_size, total, Conn, Reply, Werk};
use serde_json::json;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const JOBS: usize = 20_000;
const PRODUCERS: usize = 4;
const CONSUMERS: usize = 20;
const PUSHB_BATCH: usize = 500;
const PUSH_WINDOW: usize = 50;
const DEADLINE: Duration = Duration::from_secs(60);

fn jid_of(producer: usize, i: usize) -> String {
    format!("load-p{producer}-{i:06}")
}

/// Producers 0 and 1 send single PUSHes, pipelined in windows of `PUSH_WINDOW` (with
/// `--sync always`, a strictly one-at-a-time client waits for one fsync per job); 2 and 3 send
/// PUSHB batches. Even producers fill queue `load-a`, odd ones `load-b`.
fn produce(w_addr: std::net::SocketAddr, producer: usize) -> Vec<String> {
    let mut c = Conn::producer(w_addr);
    let queue = if producer.is_multiple_of(2) {
        "load-a"
    } else {
        "load-b"
    };
    let count = JOBS / PRODUCERS;
    let jids: Vec<String> = (0..count).map(|i| jid_of(producer, i)).collect();
    if producer < 2 {
        for (n, window) in jids.chunks(PUSH_WINDOW).enumerate() {
            let mut lines = String::new();
            for (i, jid) in window.iter().enumerate() {
                let job = json!({"jid": jid, "jobtype": "Load", "args": [producer, n, i], "queue": queue});
                lines += &format!("PUSH {job}\r\n");
            }
            c.send_raw(lines.as_bytes());
            for jid in window {
                assert_eq!(c.read(), Reply::Simple("OK".into()), "PUSH {jid}");
            }
        }
    } else {
        for (n, chunk) in jids.chunks(PUSHB_BATCH).enumerate() {
            let batch: Vec<_> = chunk
                .iter()
                .map(|jid| json!({"jid": jid, "jobtype": "Load", "args": [producer, n], "queue": queue}))
                .collect();
            let r = c.cmd(&format!("PUSHB {}", serde_json::Value::from(batch)));
            assert_eq!(r.bulk_str(), "{}", "PUSHB batch {n} of producer {producer}");
        }
    }
    jids
}

fn consume(
    addr: std::net::SocketAddr,
    id: usize,
    fetched: Arc<AtomicUsize>,
    start: Instant,
) -> Vec<String> {
    let mut c = Conn::worker(addr, &format!("load-consumer-{id:02}"));
    let mut got = Vec::new();
    while fetched.load(Ordering::SeqCst) < JOBS && start.elapsed() < DEADLINE {
        match c.cmd("FETCH load-a load-b") {
            Reply::Null => continue,
            r @ Reply::Bulk(_) => {
                let job = r.json();
                let jid = job["jid"].as_str().expect("job has a jid").to_string();
                assert_eq!(job["jobtype"], "Load");
                c.ack(&jid);
                got.push(jid);
                fetched.fetch_add(1, Ordering::SeqCst);
            }
            other => panic!("consumer {id}: FETCH got {other:?}"),
        }
    }
    got
}

#[test]
fn twenty_consumers_process_twenty_thousand_jobs_exactly_once() {
    let w = Werk::start();
    let addr = w.addr();
    let start = Instant::now();
    let fetched = Arc::new(AtomicUsize::new(0));

    // Consumers first, so that early pushes go straight to parked FETCHes.
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|id| {
            let fetched = Arc::clone(&fetched);
            std::thread::spawn(move || consume(addr, id, fetched, start))
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| std::thread::spawn(move || produce(addr, p)))
        .collect();

    let mut pushed = HashSet::new();
    for p in producers {
        pushed.extend(p.join().expect("producer thread"));
    }
    assert_eq!(pushed.len(), JOBS);
    let pushed_after = start.elapsed();

    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    let mut delivered = 0;
    for c in consumers {
        for jid in c.join().expect("consumer thread") {
            delivered += 1;
            if !seen.insert(jid.clone()) {
                duplicates.push(jid);
            }
        }
    }
    let elapsed = start.elapsed();
    eprintln!(
        "load: {JOBS} jobs, {PRODUCERS} producers, {CONSUMERS} consumers: pushed in {pushed_after:?}, \
         all done in {elapsed:?}"
    );
    assert!(
        duplicates.is_empty(),
        "delivered twice: {:?}",
        &duplicates[..duplicates.len().min(10)]
    );
    let missing: Vec<_> = pushed.difference(&seen).take(10).collect();
    assert!(
        missing.is_empty(),
        "never delivered ({} of them), e.g. {missing:?}",
        JOBS - seen.len()
    );
    assert_eq!(delivered, JOBS);
    assert!(seen.is_subset(&pushed), "delivered a jid nobody pushed");
    assert!(elapsed < DEADLINE, "took {elapsed:?}");

    let mut c = w.conn();
    let info = c.info();
    assert_eq!(total(&info, "total_processed"), JOBS as u64, "{info}");
    assert_eq!(total(&info, "total_failures"), 0);
    assert_eq!(total(&info, "total_enqueued"), 0);
    assert_eq!(queue_size(&info, "load-a"), Some(0));
    assert_eq!(queue_size(&info, "load-b"), Some(0));
    assert_eq!(set_size(&info, "working"), 0, "every reservation was ACKed");
}

/// A counter of the Web UI's `/metrics`.
fn metric(w: &Werk, name: &str) -> u64 {
    let body = common::http::Req::get("/metrics").send(w.web_addr()).body;
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{body}"))
}

/// Twenty closed-loop producers (one PUSH, wait for `+OK`, the next) against `--sync always`:
/// with `--sync-gather` on (the default, 3 looks) requests that arrive while a turn runs are
/// taken into that turn's batch, so there are fewer syncs than there would be turns; with
/// `--sync-gather 0` no look is made. Every job arrives either way.
#[test]
fn extra_looks_before_a_sync_gather_requests_into_its_batch() {
    const PRODUCERS: usize = 20;
    const EACH: usize = 150;
    for gather in [None, Some("0")] {
        let mut options = Werk::options().arg("--sync").arg("always");
        if let Some(n) = gather {
            options = options.arg("--sync-gather").arg(n);
        }
        let w = options.start();
        let threads: Vec<_> = (0..PRODUCERS)
            .map(|p| {
                let addr = w.addr();
                std::thread::spawn(move || {
                    let mut c = Conn::producer(addr);
                    for i in 0..EACH {
                        c.push_simple(&format!("gather-{p:02}-{i:04}"), "gather");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let info = w.conn().info();
        assert_eq!(queue_size(&info, "gather"), Some((PRODUCERS * EACH) as u64));
        let gathered = metric(&w, "werk_sync_gathered_total");
        let syncs = metric(&w, "werk_journal_sync_seconds_count");
        eprintln!(
            "--sync-gather {}: {} PUSHes, {syncs} syncs, {gathered} connection events gathered",
            gather.unwrap_or("3 (default)"),
            PRODUCERS * EACH
        );
        match gather {
            None => assert!(gathered > 0, "no request was ever gathered into a batch"),
            Some(_) => assert_eq!(gathered, 0, "--sync-gather 0 made extra looks"),
        }
    }
}
