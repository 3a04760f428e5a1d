//! The real `faktory` client crate against werk.

mod harness;

use faktory::mutate::{Filter, JobSet};
use faktory::{Client, Job, JobId, Worker};
use harness::{wait_until, Werk};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use werk::core::WorkerState;
use werk::resp::Frame;

async fn client(w: &Werk) -> Client {
    Client::connect_to(&w.url(None)).await.expect("connect")
}

/// Fetches one job of `queue` through a raw connection (so the test controls FAIL and ACK).
fn raw_fetch(w: &Werk, queue: &str) -> serde_json::Value {
    let mut raw = harness::Raw::ready(w.addr, "{}");
    serde_json::from_str(&harness::bulk(raw.cmd(&format!("FETCH {queue}")))).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_fetch_ack_with_a_worker() {
    let w = Werk::start();
    let mut c = client(&w).await;
    for i in 0..5 {
        c.enqueue(Job::new("add", vec![i])).await.unwrap();
    }
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut worker = Worker::builder()
        .register_fn("add", move |job| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(job.args()[0].as_i64().unwrap());
                Ok::<(), std::io::Error>(())
            }
        })
        .connect_to(&w.url(None))
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(worker.run_one(0, &["default"]).await.unwrap());
    }
    // FIFO within the queue.
    assert_eq!(*seen.lock().unwrap(), vec![0, 1, 2, 3, 4]);
    let info = c.current_info().await.unwrap();
    assert_eq!(info.data.total_processed, 5);
    assert_eq!(info.data.queues.get("default"), Some(&0));
    assert!(info.server.version.major == 1 && info.server.version.minor >= 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_goes_to_retries_and_requeue_keeps_it() {
    let w = Werk::start();
    let mut c = client(&w).await;
    let job = Job::new("flaky", vec!["x"]);
    let jid = job.id().clone();
    c.enqueue(job).await.unwrap();
    let mut worker = Worker::builder()
        .register_fn("flaky", |_job| async {
            Err::<(), _>(std::io::Error::other("it broke"))
        })
        .connect_to(&w.url(None))
        .await
        .unwrap();
    assert!(worker.run_one(0, &["default"]).await.unwrap());
    let info = c.current_info().await.unwrap();
    assert_eq!(info.data.total_failures, 1);

    c.requeue(JobSet::Retries, &Filter::from_ids(&[&jid]))
        .await
        .unwrap();
    let fetched = raw_fetch(&w, "default");
    assert_eq!(fetched["jid"], jid.to_string());
    let failure = &fetched["failure"];
    assert_eq!(failure["message"], "it broke");
    assert_eq!(failure["retry_count"], 0);
    assert_eq!(failure["remaining"], 25);
    assert!(failure.get("backtrace").is_none(), "{failure}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_job_becomes_fetchable_on_time() {
    let w = Werk::start();
    let mut c = client(&w).await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let mut job = Job::new("later", Vec::<i32>::new());
    job.at = Some(at);
    c.enqueue(job).await.unwrap();
    assert_eq!(
        c.current_info().await.unwrap().data.queues.get("default"),
        None
    );
    let mut raw = harness::Raw::ready(w.addr, "{}");
    // A parked FETCH is woken by the promotion, within a second of `at`.
    let fetched = harness::bulk(raw.cmd("FETCH default"));
    let now = chrono::Utc::now();
    assert!(fetched.contains("\"jobtype\":\"later\""));
    assert!(now >= at, "fetched before its time");
    assert!(
        now - at < chrono::Duration::seconds(1),
        "{:?} late",
        now - at
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_reports_bad_jobs() {
    let w = Werk::start();
    let mut c = client(&w).await;
    let bad = Job::builder("")
        .jid(JobId::new("bad-job-1"))
        .args(vec![1])
        .build();
    let jobs = vec![Job::new("good", vec![1]), bad, Job::new("good", vec![2])];
    let (n, errors) = c.enqueue_many(jobs).await.unwrap();
    assert_eq!(n, 2);
    let errors = errors.expect("one error");
    assert_eq!(
        errors.get("bad-job-1").map(String::as_str),
        Some("jobs must have a jobtype parameter")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_and_queue_commands() {
    let w = Werk::start();
    let mut c = client(&w).await;
    // Two dead jobs via retry = -1 and FAIL through a raw connection.
    for kind in ["keep", "drop"] {
        let mut job = Job::new(kind, vec![1]);
        job.retry = Some(-1);
        c.enqueue(job).await.unwrap();
        let fetched = raw_fetch(&w, "default");
        let mut raw = harness::Raw::ready(w.addr, "{}");
        let fail = format!(r#"FAIL {{"jid":{},"message":"m"}}"#, fetched["jid"]);
        assert_eq!(raw.cmd(&fail), harness::ok());
    }
    let mut raw = harness::Raw::ready(w.addr, "{}");
    assert_eq!(harness::info(&mut raw)["faktory"]["sets"]["dead"], 2);
    c.discard(JobSet::Dead, &Filter::from_kind("drop"))
        .await
        .unwrap();
    assert_eq!(harness::info(&mut raw)["faktory"]["sets"]["dead"], 1);
    c.requeue(
        JobSet::Dead,
        &Filter::from_pattern(r#"*\"jobtype\":\"keep\"*"#),
    )
    .await
    .unwrap();
    assert_eq!(harness::info(&mut raw)["faktory"]["sets"]["dead"], 0);
    assert_eq!(
        c.current_info().await.unwrap().data.queues.get("default"),
        Some(&1)
    );

    c.queue_pause(&["default"]).await.unwrap();
    assert_eq!(raw.cmd("FETCH default"), Frame::Bulk(None));
    c.queue_resume_all().await.unwrap();
    assert!(matches!(raw.cmd("FETCH default"), Frame::Bulk(Some(_))));
    c.enqueue(Job::new("x", vec![1]).on_queue("other"))
        .await
        .unwrap();
    c.queue_remove(&["other"]).await.unwrap();
    let info = c.current_info().await.unwrap();
    assert!(
        !info.data.queues.contains_key("other"),
        "{:?}",
        info.data.queues
    );
    c.queue_remove_all().await.unwrap();
    assert!(c.current_info().await.unwrap().data.queues.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_on_and_wrong() {
    let w = Werk::start_with(&[], &[("FAKTORY_PASSWORD", "open-sesame")]);
    let mut c = Client::connect_to(&w.url(Some("open-sesame")))
        .await
        .unwrap();
    c.enqueue(Job::new("x", vec![1])).await.unwrap();
    assert!(Client::connect_to(&w.url(Some("wrong"))).await.is_err());
    assert!(Client::connect_to(&w.url(None)).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_obeys_quiet_then_terminate() {
    let data_dir = harness::temp_dir("inproc");
    let cfg = werk::config::Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.clone(),
        // No Web UI: its default port is fixed, and tests never pick fixed ports.
        web_bind: None,
        ..Default::default()
    };
    let server = werk::net::Server::bind(cfg).unwrap();
    let addr = server.local_addr();
    let ctl = server.controller();
    let loop_thread = std::thread::spawn(move || server.run());
    let url = format!("tcp://{addr}");

    let done = Arc::new(AtomicUsize::new(0));
    let counter = done.clone();
    let mut worker = Worker::builder()
        .register_fn("job", move |_job| {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                Ok::<(), std::io::Error>(())
            }
        })
        .connect_to(&url)
        .await
        .unwrap();
    let run = tokio::spawn(async move { worker.run(&["default"]).await });
    let mut c = Client::connect_to(&url).await.unwrap();
    c.enqueue(Job::new("job", vec![1])).await.unwrap();
    assert!(wait_until(Duration::from_secs(5), || done
        .load(Ordering::SeqCst)
        == 1));

    ctl.signal_worker("all", WorkerState::Quiet);
    // The server refuses jobs to a quiet worker at once (and the worker hears of it in its next
    // BEAT, every 5 s). Absence over a window longer than a beat plus a FETCH wait is the check.
    c.enqueue(Job::new("job", vec![2])).await.unwrap();
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(done.load(Ordering::SeqCst), 1, "a quiet worker ran a job");

    ctl.signal_worker("all", WorkerState::Terminate);
    let stopped = tokio::time::timeout(Duration::from_secs(15), run).await;
    let details = stopped.expect("worker did not stop").unwrap().unwrap();
    assert_eq!(details.reason, faktory::StopReason::ServerInstruction);
    assert_eq!(
        c.current_info().await.unwrap().data.queues.get("default"),
        Some(&1)
    );
    ctl.shutdown();
    loop_thread.join().unwrap().unwrap();
    let _ = std::fs::remove_dir_all(data_dir);
}
