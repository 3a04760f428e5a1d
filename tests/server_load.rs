//! 20 concurrent consumers drain 20,000 jobs from 4 producers: each job exactly once.

mod harness;

use harness::{bulk, info, ok, Raw, Werk};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use werk::resp::Frame;

#[test]
fn twenty_consumers_process_twenty_thousand_jobs_exactly_once() {
    const PRODUCERS: usize = 4;
    const CONSUMERS: usize = 20;
    const JOBS: usize = 20_000;
    let w = Werk::start();
    let addr = w.addr;
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            std::thread::spawn(move || {
                let mut raw = Raw::ready(addr, "{}");
                for i in 0..JOBS / PRODUCERS {
                    let line =
                        format!(r#"PUSH {{"jid":"job-{p}-{i:06}","jobtype":"Load","args":[{i}]}}"#);
                    assert_eq!(raw.cmd(&line), ok());
                }
            })
        })
        .collect();
    let seen = Arc::new(Mutex::new(Vec::with_capacity(JOBS)));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|c| {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut raw = Raw::ready(addr, &format!(r#"{{"v":2,"wid":"consumer-{c}"}}"#));
                loop {
                    match raw.cmd("FETCH default") {
                        Frame::Bulk(Some(b)) => {
                            let job: serde_json::Value = serde_json::from_slice(&b).unwrap();
                            let jid = job["jid"].as_str().unwrap().to_owned();
                            assert_eq!(raw.cmd(&format!(r#"ACK {{"jid":"{jid}"}}"#)), ok());
                            seen.lock().unwrap().push(jid);
                        }
                        Frame::Bulk(None) => {
                            if seen.lock().unwrap().len() >= JOBS {
                                return;
                            }
                        }
                        other => panic!("{other:?}"),
                    }
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    for c in consumers {
        c.join().unwrap();
    }
    let seen = seen.lock().unwrap();
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(
        seen.len(),
        JOBS,
        "some job was delivered twice or not at all"
    );
    assert_eq!(unique.len(), JOBS);
    let mut raw = Raw::ready(addr, "{}");
    let i = info(&mut raw);
    assert_eq!(i["faktory"]["total_processed"], JOBS);
    assert_eq!(i["faktory"]["sets"]["working"], 0);
    assert_eq!(bulk(raw.cmd("QUEUE LATENCY default")), r#"{"default":0.0}"#);
}
