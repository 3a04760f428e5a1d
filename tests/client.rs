//! werk driven by the `faktory` crate (jonhoo/faktory-rs 0.13) as producer and consumer, the
//! way a Rust application would use it. Most tests run the real binary; the quiet/terminate
//! tests run the server in-process, because only its `Controller` can signal a worker until
//! the Web UI exists.
//!
//! The crate's `Client` sends END from `Drop` through `block_in_place`, so every test uses the
//! multi-threaded runtime.

mod common;

use common::{wait_until, wait_until_async, Conn, TempDir, Werk};
use faktory::error::{Connect as ConnectError, Protocol as ProtocolError};
use faktory::mutate::{Filter, JobSet};
use faktory::{Client, Error, Job, JobBuilder, JobId, StopReason, Worker, WorkerId};
use serde_json::{json, Value};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

async fn client(url: &str) -> Client {
    Client::connect_to(url).await.expect("producer connects")
}

/// A worker whose handlers for `kinds` send every job they get to the returned receiver and
/// succeed.
async fn recording_worker(
    url: &str,
    kinds: &[&str],
) -> (Worker<io::Error>, UnboundedReceiver<Job>) {
    let (tx, rx) = unbounded_channel();
    let mut b = Worker::builder::<io::Error>().hostname("it-host".into());
    for kind in kinds {
        let tx = tx.clone();
        b = b.register_fn(*kind, move |job: Job| {
            let tx = tx.clone();
            async move {
                tx.send(job).expect("test receiver alive");
                Ok(())
            }
        });
    }
    (b.connect_to(url).await.expect("worker connects"), rx)
}

/// A worker whose handler for `kind` always fails with `message`.
async fn failing_worker(url: &str, kind: &str, message: &'static str) -> Worker<io::Error> {
    Worker::builder::<io::Error>()
        .register_fn(kind, move |_job: Job| async move {
            Err(io::Error::other(message))
        })
        .connect_to(url)
        .await
        .expect("worker connects")
}

/// An error with a cause, so the crate sends a one-line backtrace with FAIL.
#[derive(Debug)]
struct Outer(io::Error);
impl std::fmt::Display for Outer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("outer failure")
    }
}
impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[allow(deprecated)] // `tasks` is marked deprecated by the crate, but INFO still has it (§8)
fn task_size(info: &faktory::FaktoryState, task: &str) -> u64 {
    info.data.tasks[task]["size"]
        .as_u64()
        .unwrap_or_else(|| panic!("INFO tasks.{task}.size missing: {:?}", info.data.tasks))
}

fn queue_len(info: &faktory::FaktoryState, queue: &str) -> Option<u64> {
    info.data.queues.get(queue).copied()
}

/// Polls INFO through the crate until `pred` holds; panics after `timeout`.
async fn info_until(
    p: &mut Client,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&faktory::FaktoryState) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let info = p.current_info().await.expect("INFO");
        if pred(&info) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn job_in(kind: &str, queue: &str, args: Vec<Value>) -> Job {
    JobBuilder::new(kind).queue(queue).args(args).build()
}

// ---------------------------------------------------------------------------------------------
// Push, fetch, ack
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_fetch_ack_round_trip() {
    let w = Werk::start();
    let mut p = client(&w.url()).await;
    let job = JobBuilder::new("order")
        .args(vec!["ISBN-13:9781718501850"])
        .queue("rt")
        .add_to_custom_data("tenant", "acme")
        .build();
    let jid = job.id().clone();
    p.enqueue(job).await.unwrap();
    assert_eq!(queue_len(&p.current_info().await.unwrap(), "rt"), Some(1));

    let (mut worker, mut rx) = recording_worker(&w.url(), &["order"]).await;
    assert!(worker.run_one(0, &["rt"]).await.unwrap(), "no job fetched");
    let got = rx.try_recv().expect("handler ran");
    assert_eq!(got.id(), &jid);
    assert_eq!(got.kind(), "order");
    assert_eq!(got.queue, "rt");
    assert_eq!(got.args(), &[Value::from("ISBN-13:9781718501850")]);
    assert_eq!(got.custom.get("tenant"), Some(&Value::from("acme")));
    assert_eq!(got.retry, Some(25));
    assert_eq!(got.reserve_for, Some(Duration::from_secs(600)));
    assert!(got.enqueued_at.is_some() && got.created_at.is_some());
    assert!(
        got.priority.is_none(),
        "the legacy priority field must be dropped (§4.1)"
    );
    assert!(got.failure().is_none());

    let info = p.current_info().await.unwrap();
    assert_eq!(queue_len(&info, "rt"), Some(0));
    assert_eq!(info.data.total_processed, 1, "the worker's ACK was counted");
    assert_eq!(task_size(&info, "Busy"), 0, "nothing left reserved");
    // Drained: the next fetch comes back empty (after werk's ~2 s block).
    assert!(!worker.run_one(0, &["rt"]).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_come_out_in_fifo_order_within_a_queue() {
    let w = Werk::start();
    let mut p = client(&w.url()).await;
    for i in 0..5 {
        p.enqueue(job_in("fifo", "fifo", vec![json!(i)]))
            .await
            .unwrap();
    }
    let (n, errors) = p
        .enqueue_many((5..10).map(|i| job_in("fifo", "fifo", vec![json!(i)])))
        .await
        .unwrap();
    assert_eq!((n, errors), (5, None));
    let (mut worker, mut rx) = recording_worker(&w.url(), &["fifo"]).await;
    let mut order = Vec::new();
    for _ in 0..10 {
        assert!(worker.run_one(0, &["fifo"]).await.unwrap());
        order.push(rx.try_recv().unwrap().args()[0].as_i64().unwrap());
    }
    assert_eq!(order, (0..10).collect::<Vec<i64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_takes_queues_in_strict_list_order() {
    let w = Werk::start();
    let mut p = client(&w.url()).await;
    p.enqueue(job_in("prio", "low", vec![json!("low-1")]))
        .await
        .unwrap();
    p.enqueue(job_in("prio", "high", vec![json!("high-1")]))
        .await
        .unwrap();
    p.enqueue(job_in("prio", "low", vec![json!("low-2")]))
        .await
        .unwrap();
    p.enqueue(job_in("prio", "high", vec![json!("high-2")]))
        .await
        .unwrap();
    let (mut worker, mut rx) = recording_worker(&w.url(), &["prio"]).await;
    let mut order = Vec::new();
    for _ in 0..4 {
        assert!(worker.run_one(0, &["high", "low"]).await.unwrap());
        order.push(
            rx.try_recv().unwrap().args()[0]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    assert_eq!(order, ["high-1", "high-2", "low-1", "low-2"]);
}

// ---------------------------------------------------------------------------------------------
// Failures, retries, requeue
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_job_lands_in_retries_with_its_failure() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    let started = Instant::now();
    let test_start_secs = common::unix_now() as i64;

    let plain = job_in("flaky", "fq", vec![json!("plain")]);
    let plain_id = plain.id().clone();
    p.enqueue(plain).await.unwrap();
    let mut failer = failing_worker(&url, "flaky", "boom").await;
    assert!(failer.run_one(0, &["fq"]).await.unwrap());

    let info = p.current_info().await.unwrap();
    assert_eq!(
        task_size(&info, "Retries"),
        1,
        "the failed job is in the retry set"
    );
    assert_eq!(info.data.total_failures, 1);
    assert_eq!(
        info.data.total_processed, 1,
        "a failure counts as processed (§5.4)"
    );
    assert_eq!(queue_len(&info, "fq"), Some(0));
    // It is not due for 15 s or more, so the queue stays empty for now.
    let (mut reader, mut rx) = recording_worker(&url, &["flaky"]).await;
    assert!(
        !reader.run_one(0, &["fq"]).await.unwrap(),
        "a retry came back early"
    );

    p.requeue(JobSet::Retries, Filter::from_ids(&[&plain_id]))
        .await
        .unwrap();
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Retries"), 0);
    assert!(reader.run_one(0, &["fq"]).await.unwrap());
    let job = rx.try_recv().unwrap();
    assert_eq!(job.id(), &plain_id);
    let f = job
        .failure()
        .expect("a requeued retry keeps its failure (§3.11)");
    assert_eq!(f.retry_count, 0);
    assert_eq!(f.retry_remaining, 25);
    assert_eq!(f.message.as_deref(), Some("boom"));
    assert!(
        f.backtrace.is_none(),
        "no backtrace was sent, so none may come back"
    );
    assert!(f.next_at.is_some());
    let failed_at = f.failed_at.timestamp();
    assert!(
        failed_at >= test_start_secs - 1
            && failed_at <= test_start_secs + started.elapsed().as_secs() as i64 + 1,
        "failed_at {failed_at} is not during this test"
    );
    let next_in = f.next_at.unwrap().timestamp() - failed_at;
    assert!(
        (14..=45).contains(&next_in),
        "first retry {next_in} s after the failure (§5.5)"
    );
    let as_json = serde_json::to_value(f).unwrap();
    assert_eq!(
        as_json["errtype"], "unknown",
        "the crate reports errtype unknown: {as_json}"
    );

    // With a cause chain, the crate sends a backtrace and werk keeps it.
    let chained = job_in("chained", "fq", vec![]);
    let chained_id = chained.id().clone();
    p.enqueue(chained).await.unwrap();
    let mut chain_failer = Worker::builder::<io::Error>()
        .register_fn("chained", |_job: Job| async move {
            Err(io::Error::other(Outer(io::Error::other("disk on fire"))))
        })
        .connect_to(&url)
        .await
        .unwrap();
    assert!(chain_failer.run_one(0, &["fq"]).await.unwrap());
    p.requeue(JobSet::Retries, Filter::from_kind("chained"))
        .await
        .unwrap();
    let (mut reader2, mut rx2) = recording_worker(&url, &["chained"]).await;
    assert!(reader2.run_one(0, &["fq"]).await.unwrap());
    let job = rx2.try_recv().unwrap();
    assert_eq!(job.id(), &chained_id);
    let f = job.failure().unwrap();
    assert_eq!(f.message.as_deref(), Some("outer failure"));
    assert_eq!(
        f.backtrace.as_deref(),
        Some(&["disk on fire".to_string()][..])
    );
}

// ---------------------------------------------------------------------------------------------
// Scheduled jobs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_job_becomes_fetchable_within_a_second_of_its_time() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    let at = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
    let job = JobBuilder::new("later")
        .queue("sched")
        .args(vec![1])
        .at(at)
        .build();
    let jid = job.id().clone();
    p.enqueue(job).await.unwrap();

    let info = p.current_info().await.unwrap();
    assert_eq!(task_size(&info, "Scheduled"), 1);
    assert_eq!(
        queue_len(&info, "sched").unwrap_or(0),
        0,
        "enqueued before its time"
    );

    let at_secs = at.timestamp_millis() as f64 / 1000.0;
    info_until(
        &mut p,
        Duration::from_secs(5),
        "the scheduled job is enqueued",
        |i| queue_len(i, "sched") == Some(1),
    )
    .await;
    let seen = common::unix_now();
    assert!(
        seen >= at_secs - 0.05,
        "enqueued {:.3} s before its time",
        at_secs - seen
    );
    assert!(
        seen <= at_secs + 1.0,
        "enqueued {:.3} s after its time",
        seen - at_secs
    );

    let (mut worker, mut rx) = recording_worker(&url, &["later"]).await;
    assert!(worker.run_one(0, &["sched"]).await.unwrap());
    let got = rx.try_recv().unwrap();
    assert_eq!(got.id(), &jid);
    assert_eq!(
        got.at.map(|t| t.timestamp_millis()),
        Some(at.timestamp_millis())
    );
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Scheduled"), 0);
}

// ---------------------------------------------------------------------------------------------
// PUSHB
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_many_reports_each_bad_job_with_faktorys_text() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    let (n, errors) = p
        .enqueue_many(vec![
            Job::builder("common").queue("bulk1").build(),
            Job::builder("common").queue("bulk2").build(),
            Job::builder("special").queue("bulk2").build(),
        ])
        .await
        .unwrap();
    assert_eq!(n, 3);
    assert!(errors.is_none(), "all good must be `{{}}`: {errors:?}");

    let (n, errors) = p
        .enqueue_many([
            Job::builder("broken")
                .jid(JobId::new("short"))
                .queue("bulk3")
                .build(),
            Job::builder("")
                .jid(JobId::new("3sZCbdp8e9WX__0"))
                .queue("bulk3")
                .build(),
            Job::builder("broken")
                .jid(JobId::new("3sZCbdp8e9WX__1"))
                .queue("bulk3")
                .reserve_for(Duration::from_secs(864001))
                .build(),
            Job::builder("broken")
                .jid(JobId::new("3sZCbdp8e9WX__2"))
                .queue("bad queue")
                .build(),
            Job::builder("very_special").queue("bulk4").build(),
            Job::builder("very_special").queue("bulk4").build(),
        ])
        .await
        .unwrap();
    let errors = errors.expect("errors reported");
    assert_eq!(n, 2);
    assert_eq!(errors.len(), 4, "{errors:?}");
    assert_eq!(errors["short"], "jobs must have a reasonable jid parameter");
    assert_eq!(
        errors["3sZCbdp8e9WX__0"],
        "jobs must have a jobtype parameter"
    );
    assert_eq!(
        errors["3sZCbdp8e9WX__1"],
        "jobs cannot be reserved for more than one day"
    );
    assert_eq!(
        errors["3sZCbdp8e9WX__2"],
        r#"cannot get "bad queue" queue: queue names must match \A[a-zA-Z0-9._-]+\z"#
    );

    let info = p.current_info().await.unwrap();
    assert_eq!(queue_len(&info, "bulk4"), Some(2));
    assert_eq!(queue_len(&info, "bulk3"), None, "no bad job was enqueued");
    assert_eq!(info.data.total_enqueued, 5);
    let (mut worker, mut rx) = recording_worker(&url, &["very_special"]).await;
    assert!(worker.run_one(0, &["bulk4"]).await.unwrap());
    assert!(worker.run_one(0, &["bulk4"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().kind(), "very_special");
}

// ---------------------------------------------------------------------------------------------
// MUTATE
// ---------------------------------------------------------------------------------------------

fn in_an_hour() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now() + chrono::Duration::hours(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_kill_requeue_discard_and_clear() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    p.enqueue_many([
        JobBuilder::new("k1")
            .queue("mq")
            .args(vec![1])
            .at(in_an_hour())
            .build(),
        JobBuilder::new("k1")
            .queue("mq")
            .args(vec![2])
            .at(in_an_hour())
            .build(),
        JobBuilder::new("k2")
            .queue("mq")
            .args(vec![3])
            .at(in_an_hour())
            .build(),
    ])
    .await
    .unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(task_size(&info, "Scheduled"), 3);

    // kill by jobtype: scheduled -> dead
    p.kill(JobSet::Scheduled, Filter::from_kind("k1"))
        .await
        .unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(
        (task_size(&info, "Scheduled"), task_size(&info, "Dead")),
        (1, 2)
    );
    assert_eq!(queue_len(&info, "mq").unwrap_or(0), 0);

    // requeue by jobtype: dead -> queue
    p.requeue(JobSet::Dead, Filter::from_kind("k1"))
        .await
        .unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(task_size(&info, "Dead"), 0);
    assert_eq!(queue_len(&info, "mq"), Some(2));

    // fail both: queue -> retries; then discard by jobtype: gone
    let mut failer = failing_worker(&url, "k1", "no").await;
    assert!(failer.run_one(0, &["mq"]).await.unwrap());
    assert!(failer.run_one(0, &["mq"]).await.unwrap());
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Retries"), 2);
    p.discard(JobSet::Retries, Filter::from_kind("k1"))
        .await
        .unwrap();
    p.requeue(JobSet::Retries, Filter::empty()).await.unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(task_size(&info, "Retries"), 0);
    assert_eq!(queue_len(&info, "mq"), Some(0), "discarded jobs came back");

    // clear empties a set whatever is in it
    p.kill(JobSet::Scheduled, Filter::empty()).await.unwrap();
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Dead"), 1);
    p.clear(JobSet::Dead).await.unwrap();
    p.enqueue(JobBuilder::new("k3").queue("mq").at(in_an_hour()).build())
        .await
        .unwrap();
    p.clear(JobSet::Scheduled).await.unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(
        (task_size(&info, "Dead"), task_size(&info, "Scheduled")),
        (0, 0)
    );
    p.requeue(JobSet::Scheduled, Filter::empty()).await.unwrap();
    assert_eq!(queue_len(&p.current_info().await.unwrap(), "mq"), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_filters_by_jids_and_patterns() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    let fizz = JobBuilder::new("fb")
        .retry(10)
        .queue("fbq")
        .args(["fizz"])
        .build();
    let buzz = JobBuilder::new("fb")
        .retry(10)
        .queue("fbq")
        .args(["buzz"])
        .build();
    let (fizz_id, buzz_id) = (fizz.id().clone(), buzz.id().clone());
    p.enqueue_many([fizz, buzz]).await.unwrap();
    let mut failer = failing_worker(&url, "fb", "nope").await;
    assert!(failer.run_one(0, &["fbq"]).await.unwrap());
    assert!(failer.run_one(0, &["fbq"]).await.unwrap());
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Retries"), 2);

    let (mut reader, mut rx) = recording_worker(&url, &["fb"]).await;
    // by jid: only that one
    p.requeue(JobSet::Retries, Filter::from_ids(&[&fizz_id]))
        .await
        .unwrap();
    assert_eq!(queue_len(&p.current_info().await.unwrap(), "fbq"), Some(1));
    assert!(reader.run_one(0, &["fbq"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().id(), &fizz_id);

    // put fizz back into retries
    let fizz = JobBuilder::new("fb")
        .retry(10)
        .queue("fbq")
        .args(["fizz"])
        .jid(fizz_id.clone())
        .build();
    p.enqueue(fizz).await.unwrap();
    assert!(failer.run_one(0, &["fbq"]).await.unwrap());
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Retries"), 2);

    // jobtype + pattern (the crate's own test pattern): only the buzz job
    p.requeue(
        JobSet::Retries,
        Filter::from_kind_and_pattern("fb", r#"*\"args\":\[\"buzz\"\]*"#),
    )
    .await
    .unwrap();
    assert_eq!(queue_len(&p.current_info().await.unwrap(), "fbq"), Some(1));
    assert!(reader.run_one(0, &["fbq"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().id(), &buzz_id);

    // a pattern with the wrong jobtype matches nothing
    p.requeue(
        JobSet::Retries,
        Filter::from_kind_and_pattern("other", r#"*\"args\":\[\"fizz\"\]*"#),
    )
    .await
    .unwrap();
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Retries"), 1);

    // pattern only, then kill: retries -> dead
    p.kill(
        JobSet::Retries,
        Filter::from_pattern(r#"*\"args\":\[\"fizz\"\]*"#),
    )
    .await
    .unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(
        (task_size(&info, "Retries"), task_size(&info, "Dead")),
        (0, 1)
    );
    p.discard(JobSet::Dead, Filter::from_ids(&[&fizz_id]))
        .await
        .unwrap();
    assert_eq!(task_size(&p.current_info().await.unwrap(), "Dead"), 0);
}

// ---------------------------------------------------------------------------------------------
// QUEUE
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_pause_resume_and_remove() {
    let w = Werk::start();
    let url = w.url();
    let mut p = client(&url).await;
    let (mut worker, mut rx) = recording_worker(&url, &["qc"]).await;
    p.enqueue_many((0..3).map(|i| job_in("qc", "q1", vec![json!(i)])))
        .await
        .unwrap();
    p.enqueue_many((0..2).map(|i| job_in("qc", "q2", vec![json!(i)])))
        .await
        .unwrap();

    p.queue_pause(&["q1"]).await.unwrap();
    assert!(
        !worker.run_one(0, &["q1"]).await.unwrap(),
        "a paused queue was served"
    );
    assert!(
        worker.run_one(0, &["q1", "q2"]).await.unwrap(),
        "q2 is not paused"
    );
    assert_eq!(rx.try_recv().unwrap().queue, "q2");
    // Pushing into a paused queue is accepted.
    p.enqueue(job_in("qc", "q1", vec![json!(3)])).await.unwrap();
    assert_eq!(queue_len(&p.current_info().await.unwrap(), "q1"), Some(4));

    p.queue_resume(&["q1"]).await.unwrap();
    assert!(worker.run_one(0, &["q1"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().queue, "q1");

    p.queue_pause_all().await.unwrap();
    assert!(
        !worker.run_one(0, &["q1", "q2"]).await.unwrap(),
        "`*` did not pause everything"
    );
    p.queue_resume_all().await.unwrap();
    assert!(worker.run_one(0, &["q2"]).await.unwrap());
    assert!(worker.run_one(0, &["q1"]).await.unwrap());
    let info = p.current_info().await.unwrap();
    assert_eq!(queue_len(&info, "q1"), Some(2));
    assert_eq!(
        queue_len(&info, "q2"),
        Some(0),
        "a drained queue stays listed"
    );

    p.queue_remove(&["q1"]).await.unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(
        queue_len(&info, "q1"),
        None,
        "a removed queue disappears from INFO"
    );
    assert_eq!(queue_len(&info, "q2"), Some(0));
    assert_eq!(info.data.total_enqueued, 0, "its jobs went with it");

    p.enqueue(job_in("qc", "q3", vec![])).await.unwrap();
    p.queue_pause(&["q3"]).await.unwrap();
    p.queue_remove_all().await.unwrap();
    let info = p.current_info().await.unwrap();
    assert!(info.data.queues.is_empty(), "{:?}", info.data.queues);
    assert_eq!(info.data.total_queues, 0);
    // A new q3 is not paused: REMOVE dropped the mark.
    p.enqueue(job_in("qc", "q3", vec![])).await.unwrap();
    let t = Instant::now();
    assert!(worker.run_one(0, &["q3"]).await.unwrap());
    assert!(t.elapsed() < Duration::from_millis(1000));
}

// ---------------------------------------------------------------------------------------------
// INFO and passwords
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_parses_with_the_crates_typed_reader() {
    let w = Werk::start();
    let mut p = client(&w.url()).await;
    let (_worker, _rx) = recording_worker(&w.url(), &["x"]).await;
    let info = p
        .current_info()
        .await
        .expect("INFO decodes into FaktoryState");
    assert_eq!(info.server.version.major, 1);
    assert!(
        info.server.version.minor >= 8,
        "version {}",
        info.server.version
    );
    assert!(!info.server.description.contains("Enterprise"));
    assert!(
        info.server.connections >= 2,
        "connections {}",
        info.server.connections
    );
    assert!(info.data.queues.is_empty());
    assert!((info.now.timestamp() as f64 - common::unix_now()).abs() < 5.0);

    p.enqueue(job_in("x", "iq", vec![])).await.unwrap();
    p.enqueue(job_in("x", "iq", vec![])).await.unwrap();
    let info = p.current_info().await.unwrap();
    assert_eq!(queue_len(&info, "iq"), Some(2));
    assert_eq!(info.data.total_enqueued, 2);
    assert_eq!(info.data.total_queues, 1);

    info_until(&mut p, Duration::from_secs(3), "uptime is above 0", |i| {
        i.server.uptime.as_secs() >= 1
    })
    .await;
    let before = p.current_info().await.unwrap().server.command_count;
    p.enqueue(job_in("x", "iq", vec![])).await.unwrap();
    let after = p.current_info().await.unwrap().server.command_count;
    assert!(after >= before + 2, "command_count {before} -> {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_is_required_and_checked() {
    let w = Werk::options().password("secret").start();
    let good = w.url_with_password("secret");
    let mut p = client(&good).await;
    p.enqueue(job_in("pw", "pwq", vec![json!("ok")]))
        .await
        .unwrap();
    let (mut worker, mut rx) = recording_worker(&good, &["pw"]).await;
    assert!(worker.run_one(0, &["pwq"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().args(), &[json!("ok")]);

    match Client::connect_to(&w.url_with_password("wrong")).await {
        Err(Error::Protocol(ProtocolError::Internal { msg })) => {
            assert_eq!(msg, "Invalid password")
        }
        Err(e) => panic!("wrong password: unexpected error {e:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    match Client::connect_to(&w.url()).await {
        Err(Error::Connect(ConnectError::AuthenticationNeeded)) => {}
        Err(e) => panic!("no password: unexpected error {e:?}"),
        Ok(_) => panic!("HI carried no salt although a password is set"),
    }
    let info = p.current_info().await.unwrap();
    assert_eq!(info.data.total_processed, 1);
}

// ---------------------------------------------------------------------------------------------
// Quiet and terminate, signalled by the server (in-process, through its Controller)
// ---------------------------------------------------------------------------------------------

struct InProcess {
    addr: std::net::SocketAddr,
    ctl: werk::net::Controller,
    thread: Option<std::thread::JoinHandle<io::Result<()>>>,
    _dir: TempDir,
}

impl InProcess {
    fn start() -> InProcess {
        let dir = TempDir::new("inproc");
        let cfg = werk::config::Config {
            bind: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().join("db"),
            config_dir: dir.path().to_path_buf(),
            // No Web UI: its default port is fixed, and tests never pick fixed ports.
            web_bind: None,
            ..Default::default()
        };
        let server = werk::net::Server::bind(cfg).expect("bind in-process server");
        let addr = server.local_addr();
        let ctl = server.controller();
        let thread = std::thread::spawn(move || server.run());
        InProcess {
            addr,
            ctl,
            thread: Some(thread),
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// Shuts the server down and returns what `run` returned.
    fn stop(&mut self) -> io::Result<()> {
        self.ctl.shutdown();
        let t = self.thread.take().expect("not stopped yet");
        wait_until(
            Duration::from_secs(5),
            "Server::run returns after shutdown",
            || t.is_finished(),
        );
        t.join().expect("server thread did not panic")
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.stop();
        }
    }
}

const QUIET: &str = "$17\r\n{\"state\":\"quiet\"}\r\n";
const TERMINATE: &str = "$21\r\n{\"state\":\"terminate\"}\r\n";

fn beat(c: &mut Conn, wid: &str) -> String {
    c.send(&format!(r#"BEAT {{"wid":"{wid}"}}"#));
    String::from_utf8_lossy(&c.read_raw().1).into_owned()
}

#[test]
fn controller_signals_reach_the_next_beat_and_shutdown_ends_run() {
    let mut srv = InProcess::start();
    let mut a = Conn::worker(srv.addr, "ctl-a");
    let mut b = Conn::worker(srv.addr, "ctl-b");
    assert_eq!(beat(&mut a, "ctl-a"), "+OK\r\n");

    srv.ctl
        .signal_worker("ctl-a", werk::core::WorkerState::Quiet);
    wait_until(Duration::from_secs(2), "ctl-a's BEAT says quiet", || {
        beat(&mut a, "ctl-a") == QUIET
    });
    assert_eq!(beat(&mut b, "ctl-b"), "+OK\r\n", "only ctl-a was signalled");
    srv.ctl
        .signal_worker("no-such-worker", werk::core::WorkerState::Terminate);

    srv.ctl
        .signal_worker("all", werk::core::WorkerState::Terminate);
    wait_until(
        Duration::from_secs(2),
        "ctl-b's BEAT says terminate",
        || beat(&mut b, "ctl-b") == TERMINATE,
    );
    assert_eq!(beat(&mut a, "ctl-a"), TERMINATE);
    // Never backward, even when the server is asked.
    srv.ctl
        .signal_worker("ctl-a", werk::core::WorkerState::Quiet);
    srv.ctl
        .signal_worker("ctl-a", werk::core::WorkerState::Running);
    assert_eq!(beat(&mut a, "ctl-a"), TERMINATE);
    assert_eq!(beat(&mut a, "ctl-a"), TERMINATE);

    srv.stop().expect("run returns Ok after shutdown");
    let rest = a.expect_closed(Duration::from_secs(3));
    assert!(
        rest.is_empty() || rest.starts_with(b"-ERR"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_stops_fetching_on_quiet_and_returns_on_terminate() {
    let srv = InProcess::start();
    let url = srv.url();
    let mut p = client(&url).await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let wid = WorkerId::new("quiet-worker-0001");
    let record = {
        let seen = Arc::clone(&seen);
        move |job: Job| {
            let seen = Arc::clone(&seen);
            async move {
                seen.lock().unwrap().push(job.id().to_string());
                Ok::<(), io::Error>(())
            }
        }
    };
    let worker = Worker::builder::<io::Error>()
        .wid(wid.clone())
        .workers(2)
        .register_fn("job", record)
        .connect_to(&url)
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        let mut worker = worker;
        worker.run(&["default"]).await
    });

    p.enqueue(
        Job::builder("job")
            .jid(JobId::new("before-quiet-1"))
            .build(),
    )
    .await
    .unwrap();
    wait_until_async(
        Duration::from_secs(10),
        "the running worker processes a job",
        || {
            let done = seen.lock().unwrap().contains(&"before-quiet-1".to_string());
            async move { done }
        },
    )
    .await;

    srv.ctl.signal_worker(&wid, werk::core::WorkerState::Quiet);
    let quiet_at = Instant::now();
    // A FETCH parked before the signal may still end with a job; give it its 2 s. From then on
    // no FETCH of this worker may take one.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    p.enqueue(Job::builder("job").jid(JobId::new("after-quiet-1")).build())
        .await
        .unwrap();

    // The crate beats every 5 s; by quiet + 5 s + one 2 s FETCH it has been told and stopped.
    // Over that whole window the job must stay queued and `run` must keep running.
    while quiet_at.elapsed() < Duration::from_secs(8) {
        let info = p.current_info().await.unwrap();
        assert_eq!(
            queue_len(&info, "default"),
            Some(1),
            "a quiet worker got a job"
        );
        assert_eq!(seen.lock().unwrap().len(), 1, "{:?}", seen.lock().unwrap());
        if run.is_finished() {
            panic!("quiet must not end Worker::run: {:?}", run.await);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // By now the crate has read `{"state":"quiet"}` from a BEAT and its fetch loops have
    // ended: over the next 4.5 s the server sees at most our second INFO and one BEAT, where a
    // worker that missed the signal would add two 2-second FETCHes per loop.
    let c0 = p.current_info().await.unwrap().server.command_count;
    tokio::time::sleep(Duration::from_millis(4500)).await;
    let c1 = p.current_info().await.unwrap().server.command_count;
    assert!(
        c1 - c0 <= 2,
        "{} commands in 4.5 s from a quiet worker: it is still fetching",
        c1 - c0
    );

    srv.ctl
        .signal_worker("all", werk::core::WorkerState::Terminate);
    let t = Instant::now();
    let stopped = tokio::time::timeout(Duration::from_secs(12), run)
        .await
        .expect("Worker::run returns within a heartbeat of terminate")
        .expect("worker task did not panic")
        .expect("Worker::run returns Ok on terminate");
    assert_eq!(stopped.reason, StopReason::ServerInstruction);
    assert_eq!(stopped.workers_still_running, 0);
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t.elapsed()
    );

    // The job waited for a running worker.
    let (mut other, mut rx) = recording_worker(&url, &["job"]).await;
    assert!(other.run_one(0, &["default"]).await.unwrap());
    assert_eq!(rx.try_recv().unwrap().id().to_string(), "after-quiet-1");
    assert_eq!(seen.lock().unwrap().as_slice(), ["before-quiet-1"]);
}
