//! The job state machine: queues, reservations, the scheduled/retry/dead sets, the heartbeat
//! table, parked fetchers, counters, and the timer wheel that drives their deadlines.
//!
//! `Core` is pure and synchronous. It never touches a socket, a file or a clock: the loop passes
//! [`Now`] into every call. A command goes in through [`Core::apply`] and yields a [`Response`]
//! for the calling connection; everything else it causes (replies to parked fetchers, connections
//! to close, journal records) is collected in [`Effects`] for the loop to carry out. Deadlines
//! live in the [`TimerWheel`]; the loop asks [`Core::next_wakeup_ms`] for its poll timeout and
//! calls [`Core::tick`] when it wakes.
//!
//! Invariants (checked by the simulation tests):
//! - every job is in exactly one place: a queue, the working set, or one sorted set;
//! - a reservation has exactly one armed timer; a parked fetcher has exactly one armed timer and
//!   sits in the waiting list of each queue it named;
//! - a worker has one armed beat timer and at least one connection.

pub mod admin;
pub mod glob;
pub mod info;
pub mod job;
pub mod record;
pub mod sorted;
pub mod workers;

#[cfg(test)]
mod tests;

use crate::clock::Now;
use crate::command::{
    AckInput, BeatInput, Command, FailInput, FetchQueues, FilterInput, HelloInput, MutateOp,
    MutateTarget, Mutation, QueueCommand, QueueNames,
};
use crate::resp::Reply;
use crate::timer::{TimerId, TimerWheel};
use crate::timestamp::Timestamp;
pub use admin::{job_matches, Selection, SetAction, SetPage};
pub use info::FAKTORY_COMPAT_VERSION;
pub use job::{Failure, Job, JobError};
pub use record::Record;
pub use sorted::{SetKey, SetName, SortedSet};
use std::collections::{BTreeMap, HashMap, VecDeque};
pub use workers::{Worker, WorkerState};

/// Identifies a client connection to the core (the loop maps it to its socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Tunables of the state machine; every limit has a name here.
#[derive(Clone, Debug)]
pub struct CoreConfig {
    /// How long a FETCH waits for a job before answering null (Faktory: 2 s).
    pub fetch_block_ms: u64,
    /// A worker with no BEAT for this long is removed (Faktory: 60 s).
    pub beat_timeout_ms: u64,
    /// How long dead jobs are kept (Faktory: 180 days).
    pub dead_ttl_secs: i64,
    /// Most jobs the dead set keeps; the oldest go first (Faktory has no cap).
    pub dead_max: usize,
    /// Most set entries moved by one timer firing, so one turn stays short.
    pub promote_batch: usize,
    /// Period of the housekeeping timer.
    pub housekeeping_ms: u64,
    /// Produce journal records.
    pub recording: bool,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            fetch_block_ms: 2_000,
            beat_timeout_ms: 60_000,
            dead_ttl_secs: 180 * 86_400,
            dead_max: 100_000,
            promote_batch: 1_000,
            housekeeping_ms: 60_000,
            recording: false,
        }
    }
}

/// What the calling connection gets back from [`Core::apply`].
#[derive(Debug, PartialEq, Eq)]
pub enum Response {
    /// Write this reply.
    Reply(Reply),
    /// A FETCH is waiting; its reply will come through [`Effects::wakes`].
    Parked,
    /// Close the connection without a reply (END).
    Close,
}

/// Side effects of core calls, drained by the loop.
#[derive(Debug, Default)]
pub struct Effects {
    /// Replies for connections whose FETCH was parked.
    pub wakes: Vec<(ConnId, Reply)>,
    /// Connections to close (their worker expired).
    pub closes: Vec<ConnId>,
    /// Journal records, in order (only when recording).
    pub records: Vec<Record>,
}

/// One queue.
#[derive(Debug, Default)]
pub struct Queue {
    /// Jobs, oldest first.
    pub jobs: VecDeque<Job>,
    /// FETCH skips a paused queue.
    pub paused: bool,
}

/// A job handed out by FETCH.
#[derive(Debug)]
pub struct Reservation {
    /// The job.
    pub job: Job,
    /// The worker holding it ("" for producers).
    pub wid: Box<str>,
    /// When it was fetched.
    pub reserved_at: Timestamp,
    /// When it expires.
    pub expires_at: Timestamp,
    timer: TimerId,
}

#[derive(Debug)]
struct Parked {
    queues: Vec<Box<str>>,
    timer: TimerId,
}

#[derive(Debug, Default)]
struct ConnState {
    wid: Option<Box<str>>,
}

/// Daily counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Daily {
    /// Jobs processed (ACK or failure).
    pub processed: u64,
    /// Failures.
    pub failures: u64,
}

/// Statistics of a periodic task, for INFO's `tasks`.
#[derive(Clone, Copy, Debug, Default)]
pub struct TaskStats {
    /// Runs.
    pub cycles: u64,
    /// Jobs moved (purged, for Dead).
    pub enqueued: u64,
    /// Reservations or workers reaped.
    pub reaped: u64,
}

/// Counters INFO reports.
#[derive(Debug, Default)]
pub struct Stats {
    /// All-time processed (ACKs plus failures).
    pub processed: u64,
    /// All-time failures.
    pub failures: u64,
    /// Per UTC day.
    pub daily: BTreeMap<Box<str>, Daily>,
    /// Known commands dispatched.
    pub command_count: u64,
    /// Scheduled promotion.
    pub scheduled: TaskStats,
    /// Retry promotion.
    pub retries: TaskStats,
    /// Dead purge.
    pub dead: TaskStats,
    /// Reservation reaper.
    pub busy: TaskStats,
    /// Heartbeat reaper.
    pub workers: TaskStats,
    /// Dead jobs dropped by the size cap.
    pub dead_trimmed: u64,
}

#[derive(Debug)]
enum TimerEvent {
    BeatExpired(Box<str>),
    ReservationExpired(Box<str>),
    FetchTimedOut(ConnId),
    SetDue(SetName),
    Housekeeping,
}

/// The error text Faktory writes when a reservation runs out.
pub const RESERVATION_EXPIRED_ERRTYPE: &str = "ReservationExpired";
/// The message Faktory writes when a reservation runs out.
pub const RESERVATION_EXPIRED_MESSAGE: &str = "Faktory job reservation expired";
/// Longest `errtype` kept, in bytes.
pub const ERRTYPE_BYTES_MAX: usize = 100;
/// Longest failure `message` kept, in bytes.
pub const MESSAGE_BYTES_MAX: usize = 1000;
/// Most backtrace lines kept.
pub const BACKTRACE_LINES_MAX: usize = 50;
/// Longest a set timer is armed ahead: how often due times are re-checked against the wall
/// clock.
pub const WALL_RECHECK_MS: u64 = 1_000;
/// Days of daily counters kept.
pub const DAILY_HISTORY_DAYS: usize = 400;

/// The job server's state.
#[derive(Debug)]
pub struct Core {
    config: CoreConfig,
    queues: BTreeMap<Box<str>, Queue>,
    working: HashMap<Box<str>, Reservation>,
    scheduled: SortedSet,
    retries: SortedSet,
    dead: SortedSet,
    set_timers: [Option<TimerId>; 3],
    workers: HashMap<Box<str>, Worker>,
    conns: HashMap<ConnId, ConnState>,
    parked: HashMap<ConnId, Parked>,
    parked_by_queue: HashMap<Box<str>, VecDeque<ConnId>>,
    timers: TimerWheel<TimerEvent>,
    stats: Stats,
    effects: Effects,
    started: Now,
    seq: u64,
    rng: u64,
    used_memory_mb: u64,
    /// The current UTC day number and its `YYYY-MM-DD` key.
    today: (i64, Box<str>),
}

impl Core {
    /// A core with no jobs, started at `now`; `seed` feeds the retry jitter.
    pub fn new(config: CoreConfig, now: Now, seed: u64) -> Core {
        let mut timers = TimerWheel::new(now.mono_ms);
        timers.insert(
            now.mono_ms + config.housekeeping_ms,
            TimerEvent::Housekeeping,
        );
        Core {
            config,
            queues: BTreeMap::new(),
            working: HashMap::new(),
            scheduled: SortedSet::default(),
            retries: SortedSet::default(),
            dead: SortedSet::default(),
            set_timers: [None; 3],
            workers: HashMap::new(),
            conns: HashMap::new(),
            parked: HashMap::new(),
            parked_by_queue: HashMap::new(),
            timers,
            stats: Stats::default(),
            effects: Effects::default(),
            started: now,
            seq: 0,
            rng: seed | 1,
            used_memory_mb: 0,
            today: (i64::MIN, Box::from("")),
        }
    }

    // ----- connections and workers -------------------------------------------------------

    /// Registers an identified connection (after a valid HELLO) and, when it names a wid, its
    /// worker process.
    pub fn hello(&mut self, conn: ConnId, hello: &HelloInput, now: Now) {
        let wid = hello.wid.as_deref().filter(|w| !w.is_empty());
        self.conns.insert(
            conn,
            ConnState {
                wid: wid.map(Into::into),
            },
        );
        let Some(wid) = wid else { return };
        if let Some(w) = self.workers.get_mut(wid) {
            w.conns.push(conn);
            return;
        }
        let beat_timer = self.timers.insert(
            now.mono_ms + self.config.beat_timeout_ms,
            TimerEvent::BeatExpired(wid.into()),
        );
        let worker = Worker {
            wid: wid.into(),
            hostname: hello.hostname.as_deref().unwrap_or_default().into(),
            pid: hello.pid.unwrap_or(0),
            labels: hello
                .labels
                .iter()
                .flatten()
                .map(|l| l.as_str().into())
                .collect(),
            version: hello.v.unwrap_or(0),
            started_at: now.wall,
            last_beat: now.wall,
            state: WorkerState::Running,
            rss_kb: 0,
            conns: vec![conn],
            beat_timer,
        };
        self.workers.insert(wid.into(), worker);
    }

    /// Forgets a connection: its parked FETCH, and its worker when it was the last connection.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.unpark(conn);
        let Some(state) = self.conns.remove(&conn) else {
            return;
        };
        let Some(wid) = state.wid else { return };
        let Some(w) = self.workers.get_mut(&wid) else {
            return;
        };
        w.conns.retain(|c| *c != conn);
        if w.conns.is_empty() {
            let timer = w.beat_timer;
            self.workers.remove(&wid);
            self.timers.cancel(timer);
        }
    }

    /// Number of identified connections.
    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    /// Moves one worker (`target` = its wid) or every worker (`target` = `all`) forward to
    /// `state`; it learns of it in its next BEAT reply. Returns how many workers matched.
    pub fn signal_worker(&mut self, target: &str, state: WorkerState) -> usize {
        let mut stopped = Vec::new();
        let mut n = 0;
        for w in self.workers.values_mut() {
            if target == "all" || &*w.wid == target {
                n += 1;
                if w.advance(state) != WorkerState::Running {
                    stopped.extend(w.conns.iter().copied());
                }
            }
        }
        for conn in stopped {
            self.stop_feeding(conn);
        }
        n
    }

    /// A FETCH parked by a worker that is no longer running gets no job: it stays parked on no
    /// queue until its timeout answers null.
    fn stop_feeding(&mut self, conn: ConnId) {
        let Some(p) = self.parked.get_mut(&conn) else {
            return;
        };
        let queues = std::mem::take(&mut p.queues);
        self.forget_waiting(conn, &queues);
    }

    /// Takes `conn` off the waiting list of each of `queues`.
    fn forget_waiting(&mut self, conn: ConnId, queues: &[Box<str>]) {
        for q in queues {
            if let Some(waiting) = self.parked_by_queue.get_mut(q) {
                waiting.retain(|c| *c != conn);
                if waiting.is_empty() {
                    self.parked_by_queue.remove(q);
                }
            }
        }
    }

    /// A worker's record.
    pub fn worker(&self, wid: &str) -> Option<&Worker> {
        self.workers.get(wid)
    }

    /// Every worker.
    pub fn workers(&self) -> impl Iterator<Item = &Worker> {
        self.workers.values()
    }

    // ----- dispatch ---------------------------------------------------------------------

    /// Counts a command whose verb was known but whose arguments were refused.
    pub fn count_command(&mut self) {
        self.stats.command_count += 1;
    }

    /// Applies one command from an identified connection.
    pub fn apply(&mut self, conn: ConnId, cmd: Command<'_>, now: Now) -> Response {
        self.stats.command_count += 1;
        let reply = match cmd {
            Command::Push(job) => self.push(&job, now),
            Command::Pushb(jobs) => self.pushb(&jobs, now),
            Command::Fetch(queues) => return self.fetch(conn, queues, now),
            Command::Ack(ack) => self.ack(&ack, now),
            Command::Fail(fail) => self.fail(&fail, now),
            Command::Beat(beat) => self.beat(&beat, now),
            Command::Info => Reply::Bulk(self.info_json(now)),
            Command::Flush => self.flush(now),
            Command::End => return Response::Close,
            Command::Mutate(m) => self.mutate(m, now),
            Command::Queue(q) => self.queue(q, now),
        };
        Response::Reply(reply)
    }

    /// The side effects collected so far; the loop drains them after each call.
    pub fn effects(&mut self) -> &mut Effects {
        &mut self.effects
    }

    // ----- PUSH, PUSHB -------------------------------------------------------------------

    fn push(&mut self, input: &crate::command::JobInput<'_>, now: Now) -> Reply {
        match Job::from_input(input, now.wall) {
            Ok(new) => {
                self.accept(new, now);
                Reply::Ok
            }
            Err(e) => Reply::err(e),
        }
    }

    fn pushb(&mut self, inputs: &[crate::command::JobInput<'_>], now: Now) -> Reply {
        // One created_at for the whole batch: `now` is read once per call.
        let mut errors = serde_json::Map::new();
        for input in inputs {
            match Job::from_input(input, now.wall) {
                Ok(new) => self.accept(new, now),
                Err(e) => {
                    let jid = input.jid.as_deref().unwrap_or_default().to_owned();
                    errors.insert(jid, serde_json::Value::String(e.to_string()));
                }
            }
        }
        let body = serde_json::to_vec(&errors).unwrap_or_else(|_| b"{}".to_vec());
        Reply::Bulk(body)
    }

    /// A pushed job (from [`Job::from_input`] at `now.wall`): to its queue, already stamped
    /// with that enqueue time, or to the scheduled set.
    fn accept(&mut self, new: job::NewJob, now: Now) {
        let job = new.job;
        match new.scheduled_for {
            Some(at) => self.set_add(SetName::Scheduled, at, job, now),
            None => self.enqueue(job, now, false),
        }
    }

    /// Appends a job to its queue (stamping `enqueued_at` when `stamp`), then hands jobs to
    /// fetchers waiting on that queue.
    fn enqueue(&mut self, mut job: Job, now: Now, stamp: bool) {
        if stamp {
            job.set_enqueued_at(now.wall);
        }
        if self.config.recording {
            self.effects
                .records
                .push(Record::Enqueue { job: job.to_json() });
        }
        let name: Box<str> = job.queue().into();
        match self.queues.get_mut(&name) {
            Some(q) => q.jobs.push_back(job),
            None => {
                let mut q = Queue::default();
                q.jobs.push_back(job);
                self.queues.insert(name.clone(), q);
            }
        }
        self.feed_parked(&name, now);
    }

    // ----- FETCH ---------------------------------------------------------------------------

    fn fetch(&mut self, conn: ConnId, queues: FetchQueues<'_>, now: Now) -> Response {
        let wid = self.conn_wid(conn);
        let running = self
            .workers
            .get(&*wid)
            .is_none_or(|w| w.state == WorkerState::Running);
        if !running {
            // Quiet and terminating workers get nothing, after the usual wait.
            self.park(conn, Vec::new(), now);
            return Response::Parked;
        }
        for name in queues.names() {
            let Some(q) = self.queues.get_mut(name) else {
                continue;
            };
            if q.paused {
                continue;
            }
            if let Some(job) = q.jobs.pop_front() {
                return Response::Reply(self.reserve(job, wid, now));
            }
        }
        let mut waiting: Vec<Box<str>> = Vec::new();
        for name in queues.names() {
            let paused = self.queues.get(name).is_some_and(|q| q.paused);
            if !paused && !waiting.iter().any(|w| &**w == name) {
                waiting.push(name.into());
            }
        }
        self.park(conn, waiting, now);
        Response::Parked
    }

    fn conn_wid(&self, conn: ConnId) -> Box<str> {
        self.conns
            .get(&conn)
            .and_then(|c| c.wid.clone())
            .unwrap_or_default()
    }

    /// Moves a job into the working set and returns the FETCH reply carrying it.
    fn reserve(&mut self, job: Job, wid: Box<str>, now: Now) -> Reply {
        let json = job.to_json();
        let secs = job.reservation_secs();
        let expires_at = now.wall.add_secs(secs);
        let deadline = now.mono_ms + u64::try_from(secs).unwrap_or(0) * 1000;
        // The jid is decoded from the packed job once, not once per use.
        let jid: Box<str> = job.jid().into();
        let timer = self
            .timers
            .insert(deadline, TimerEvent::ReservationExpired(jid.clone()));
        if self.config.recording {
            self.effects.records.push(Record::Reserve {
                queue: job.queue().into(),
                jid: jid.clone(),
                wid: wid.clone(),
                expires_at,
            });
        }
        let reservation = Reservation {
            job,
            wid,
            reserved_at: now.wall,
            expires_at,
            timer,
        };
        if let Some(old) = self.working.insert(jid, reservation) {
            // Two copies of one jid fetched at once (jids are not unique in Faktory): the
            // reservation table is keyed by jid, so the older copy's reservation is replaced.
            log::warn!(
                "jid {} reserved twice; the older reservation is dropped",
                old.job.jid()
            );
            self.timers.cancel(old.timer);
        }
        Reply::Bulk(json)
    }

    fn park(&mut self, conn: ConnId, queues: Vec<Box<str>>, now: Now) {
        self.unpark(conn);
        let timer = self.timers.insert(
            now.mono_ms + self.config.fetch_block_ms,
            TimerEvent::FetchTimedOut(conn),
        );
        for q in &queues {
            self.parked_by_queue
                .entry(q.clone())
                .or_default()
                .push_back(conn);
        }
        self.parked.insert(conn, Parked { queues, timer });
    }

    /// Removes a parked FETCH (and its timer); false when the connection was not parked.
    fn unpark(&mut self, conn: ConnId) -> bool {
        let Some(p) = self.parked.remove(&conn) else {
            return false;
        };
        self.timers.cancel(p.timer);
        self.forget_waiting(conn, &p.queues);
        true
    }

    /// Hands jobs of `queue` to its longest-waiting fetchers.
    fn feed_parked(&mut self, queue: &str, now: Now) {
        loop {
            let Some(&conn) = self.parked_by_queue.get(queue).and_then(|w| w.front()) else {
                return;
            };
            let Some(q) = self.queues.get_mut(queue).filter(|q| !q.paused) else {
                return;
            };
            let Some(job) = q.jobs.pop_front() else {
                return;
            };
            self.unpark(conn);
            let wid = self.conn_wid(conn);
            let reply = self.reserve(job, wid, now);
            self.effects.wakes.push((conn, reply));
        }
    }

    // ----- ACK, FAIL -----------------------------------------------------------------------

    fn ack(&mut self, ack: &AckInput<'_>, now: Now) -> Reply {
        if let Some(r) = self.working.remove(&*ack.jid) {
            self.timers.cancel(r.timer);
            self.release_record(r.job.jid());
            self.count(now, 1, 0);
        }
        Reply::Ok
    }

    fn fail(&mut self, fail: &FailInput, now: Now) -> Reply {
        let jid = fail.jid.as_deref().unwrap_or_default();
        let Some(r) = self.working.remove(jid) else {
            return Reply::err(format_args!("Job not found {jid}"));
        };
        self.timers.cancel(r.timer);
        self.release_record(r.job.jid());
        let backtrace = fail.backtrace.as_deref().unwrap_or_default();
        self.fail_job(
            r.job,
            fail.errtype.as_deref().unwrap_or_default(),
            fail.message.as_deref().unwrap_or_default(),
            backtrace,
            now,
        );
        Reply::Ok
    }

    fn release_record(&mut self, jid: &str) {
        if self.config.recording {
            self.effects
                .records
                .push(Record::Release { jid: jid.into() });
        }
    }

    /// The failure path shared by FAIL and reservation expiry (PROTOCOL.md §5.4).
    fn fail_job(
        &mut self,
        mut job: Job,
        errtype: &str,
        message: &str,
        backtrace: &[String],
        now: Now,
    ) {
        self.count(now, 1, 1);
        let errtype = clean_text(errtype, ERRTYPE_BYTES_MAX);
        let message = clean_text(message, MESSAGE_BYTES_MAX);
        let backtrace: Vec<Box<str>> = backtrace
            .iter()
            .take(BACKTRACE_LINES_MAX)
            .map(|l| l.as_str().into())
            .collect();
        let retry = job.retry();
        let mut failure = match job.failure() {
            None => Failure {
                retry_count: 0,
                remaining: retry,
                failed_at: now.wall.to_rfc3339().into_boxed_str(),
                next_at: None,
                message: message.into(),
                errtype: errtype.into(),
                backtrace,
            },
            Some(mut f) => {
                f.retry_count = f.retry_count.saturating_add(1);
                if f.remaining > 0 {
                    f.remaining -= 1;
                }
                f.message = message.into();
                f.errtype = errtype.into();
                f.backtrace = backtrace;
                f
            }
        };
        let count = failure.retry_count;
        if retry == 0 {
            return;
        }
        if count < retry {
            let next_at = now.wall.add_secs(self.backoff_secs(count));
            failure.next_at = Some(next_at.to_rfc3339().into_boxed_str());
            job.set_failure(&failure);
            self.set_add(SetName::Retries, next_at, job, now);
        } else {
            job.set_failure(&failure);
            self.add_dead(job, now);
        }
    }

    /// `c^4 + 15 + R*(c+1)` seconds with R uniform in [0, 29] (PROTOCOL.md §5.5).
    fn backoff_secs(&mut self, count: i64) -> i64 {
        let r = (self.next_random() % 30) as i64;
        count
            .saturating_pow(4)
            .saturating_add(15)
            .saturating_add(r.saturating_mul(count.saturating_add(1)))
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: deterministic for a seed, good enough for jitter.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn add_dead(&mut self, job: Job, now: Now) {
        let expiry = now.wall.add_secs(self.config.dead_ttl_secs);
        self.set_add(SetName::Dead, expiry, job, now);
        while self.dead.len() > self.config.dead_max {
            let Some((key, job)) = self.dead.pop_first() else {
                break;
            };
            log::debug!(
                "dead set over its cap of {}: dropped {}",
                self.config.dead_max,
                job.jid()
            );
            self.set_remove_record(SetName::Dead, key);
            self.stats.dead_trimmed += 1;
        }
        self.rearm_set(SetName::Dead, now);
    }

    fn count(&mut self, now: Now, processed: u64, failures: u64) {
        // The day's key is formatted once per UTC day, not once per ACK.
        let day_number = now.wall.as_secs().div_euclid(86_400);
        if self.today.0 != day_number {
            self.today = (day_number, now.wall.date_utc().into_boxed_str());
        }
        let day = self.today.1.clone();
        if self.config.recording {
            self.effects.records.push(Record::Count {
                processed,
                failures,
                day: day.clone(),
            });
        }
        self.add_counts(day, processed, failures);
    }

    /// Adds to the all-time and daily counters (ACK, failure, and their journal records).
    fn add_counts(&mut self, day: Box<str>, processed: u64, failures: u64) {
        self.stats.processed += processed;
        self.stats.failures += failures;
        let d = self.stats.daily.entry(day).or_default();
        d.processed += processed;
        d.failures += failures;
    }

    // ----- BEAT ------------------------------------------------------------------------------

    fn beat(&mut self, beat: &BeatInput, now: Now) -> Reply {
        let wid = beat.wid.as_deref().unwrap_or_default();
        let Some(w) = self.workers.get_mut(wid) else {
            return Reply::err(format_args!("unknown worker {wid}"));
        };
        w.last_beat = now.wall;
        w.rss_kb = beat.rss_kb.unwrap_or(0);
        if let Some(s) = beat.current_state.as_deref().filter(|s| !s.is_empty()) {
            w.advance(WorkerState::from_client(s));
        }
        let state = w.state;
        let conns = if state == WorkerState::Running {
            Vec::new()
        } else {
            w.conns.clone()
        };
        let old = w.beat_timer;
        self.timers.cancel(old);
        let timer = self.timers.insert(
            now.mono_ms + self.config.beat_timeout_ms,
            TimerEvent::BeatExpired(wid.into()),
        );
        if let Some(w) = self.workers.get_mut(wid) {
            w.beat_timer = timer;
        }
        for conn in conns {
            self.stop_feeding(conn);
        }
        match state {
            WorkerState::Running => Reply::Ok,
            WorkerState::Quiet => Reply::Bulk(b"{\"state\":\"quiet\"}".to_vec()),
            WorkerState::Terminate => Reply::Bulk(b"{\"state\":\"terminate\"}".to_vec()),
        }
    }

    // ----- FLUSH, MUTATE, QUEUE ----------------------------------------------------------------

    fn flush(&mut self, now: Now) -> Reply {
        // Stored data goes; in-memory state (workers, reservations, uptime, connection and
        // command counters) stays, as in Faktory.
        self.queues.clear();
        self.scheduled.clear();
        self.retries.clear();
        self.dead.clear();
        for set in SetName::ALL {
            self.rearm_set(set, now);
        }
        self.stats.processed = 0;
        self.stats.failures = 0;
        self.stats.daily.clear();
        if self.config.recording {
            self.effects.records.push(Record::Flush);
        }
        Reply::Ok
    }

    fn mutate(&mut self, m: Mutation, now: Now) -> Reply {
        let set = SetName::from(m.target);
        let filter = if m.op == MutateOp::Clear {
            None
        } else {
            m.filter.as_ref()
        };
        let keys = self.matching(set, filter);
        for key in keys {
            let Some(job) = self.set_mut(set).remove(&key) else {
                continue;
            };
            self.set_remove_record(set, key);
            match m.op {
                MutateOp::Clear | MutateOp::Discard => {}
                MutateOp::Kill => self.add_dead(job, now),
                // Requeue keeps the payload as is: no fresh enqueued_at, failure kept.
                MutateOp::Requeue => self.enqueue(job, now, false),
            }
        }
        self.rearm_set(set, now);
        Reply::Ok
    }

    /// Keys of the entries of `set` that a MUTATE filter selects (PROTOCOL.md §3.11).
    fn matching(&self, set: SetName, filter: Option<&FilterInput>) -> Vec<SetKey> {
        let set = self.set_ref(set);
        let Some(f) = filter else {
            return set.iter().map(|(k, _)| *k).collect();
        };
        let jids: &[String] = f.jids.as_deref().unwrap_or_default();
        let jobtype = f.jobtype.as_deref().unwrap_or_default();
        let pattern = f.regexp.as_deref().unwrap_or_default();
        if !jids.is_empty() {
            // Faktory's rule: the stored JSON contains `"jid":"<jid>"` for a listed jid.
            let needles: Vec<Vec<u8>> = jids.iter().map(|id| field_text("jid", id)).collect();
            let mut buf = Vec::new();
            return set
                .iter()
                .filter(|(_, j)| {
                    buf.clear();
                    j.write_json(&mut buf);
                    needles.iter().any(|n| contains(&buf, n))
                })
                .map(|(k, _)| *k)
                .collect();
        }
        if !pattern.is_empty() {
            // Faktory's rule: with a glob, a jobtype must also appear as `"jobtype":"<X>"` in
            // the stored text.
            let jobtype_needle = (!jobtype.is_empty()).then(|| field_text("jobtype", jobtype));
            let mut buf = Vec::new();
            return set
                .iter()
                .filter(|(_, j)| {
                    buf.clear();
                    j.write_json(&mut buf);
                    glob::matches(pattern.as_bytes(), &buf)
                        && jobtype_needle.as_ref().is_none_or(|n| contains(&buf, n))
                })
                .map(|(k, _)| *k)
                .collect();
        }
        set.iter()
            .filter(|(_, j)| jobtype.is_empty() || j.jobtype() == jobtype)
            .map(|(k, _)| *k)
            .collect()
    }

    fn queue(&mut self, cmd: QueueCommand<'_>, now: Now) -> Reply {
        match cmd {
            QueueCommand::Pause(names) => self.set_paused(names, true, now),
            QueueCommand::Resume(names) => self.set_paused(names, false, now),
            QueueCommand::Remove(names) => {
                let targets = self.queue_targets(names);
                for name in targets {
                    if self.queues.remove(&*name).is_some() && self.config.recording {
                        self.effects
                            .records
                            .push(Record::RemoveQueue { queue: name });
                    }
                }
            }
            QueueCommand::Latency(names) => return Reply::Bulk(self.latency_json(&names, now)),
        }
        Reply::Ok
    }

    fn queue_targets(&self, names: QueueNames<'_>) -> Vec<Box<str>> {
        match names {
            QueueNames::All => self.queues.keys().cloned().collect(),
            QueueNames::List(list) => list
                .into_iter()
                .filter(|n| self.queues.contains_key(*n))
                .map(Into::into)
                .collect(),
        }
    }

    fn set_paused(&mut self, names: QueueNames<'_>, paused: bool, now: Now) {
        for name in self.queue_targets(names) {
            let Some(q) = self.queues.get_mut(&name) else {
                continue;
            };
            if q.paused == paused {
                continue;
            }
            q.paused = paused;
            if self.config.recording {
                self.effects.records.push(Record::Pause {
                    queue: name.clone(),
                    paused,
                });
            }
            if !paused {
                self.feed_parked(&name, now);
            }
        }
    }

    fn latency_json(&self, names: &[&str], now: Now) -> Vec<u8> {
        let mut out = serde_json::Map::new();
        for &name in names {
            let oldest = self
                .queues
                .get(name)
                .and_then(|q| q.jobs.front())
                .and_then(|j| j.enqueued_at());
            let secs = oldest.map_or(0.0, |t| (t.nanos_until(now.wall).max(0) as f64) / 1e9);
            out.insert(name.to_owned(), serde_json::json!(secs));
        }
        serde_json::to_vec(&out).unwrap_or_else(|_| b"{}".to_vec())
    }

    // ----- sorted sets and their timers ----------------------------------------------------

    fn set_ref(&self, set: SetName) -> &SortedSet {
        match set {
            SetName::Scheduled => &self.scheduled,
            SetName::Retries => &self.retries,
            SetName::Dead => &self.dead,
        }
    }

    fn set_mut(&mut self, set: SetName) -> &mut SortedSet {
        match set {
            SetName::Scheduled => &mut self.scheduled,
            SetName::Retries => &mut self.retries,
            SetName::Dead => &mut self.dead,
        }
    }

    fn set_add(&mut self, set: SetName, at: Timestamp, job: Job, now: Now) {
        self.seq += 1;
        let key = SetKey { at, seq: self.seq };
        if self.config.recording {
            self.effects.records.push(Record::SetAdd {
                set,
                key,
                job: job.to_json(),
            });
        }
        self.set_mut(set).insert(key, job);
        self.rearm_set(set, now);
    }

    fn set_remove_record(&mut self, set: SetName, key: SetKey) {
        if self.config.recording {
            self.effects.records.push(Record::SetRemove { set, key });
        }
    }

    /// Keeps one timer per set, armed for its earliest entry (wall time mapped onto the
    /// monotonic clock).
    fn rearm_set(&mut self, set: SetName, now: Now) {
        let slot = set as usize;
        // Due times are wall-clock times; the wheel runs on the monotonic clock. Arming at most
        // `WALL_RECHECK_MS` ahead re-checks the wall clock every second, so a step of the wall
        // clock (NTP, a resumed VM) delays nothing by more than that.
        let due = self.set_ref(set).first_key().map(|k| {
            let wait_ms = (now.wall.nanos_until(k.at).max(0) as u64).div_ceil(1_000_000);
            now.mono_ms + wait_ms.min(WALL_RECHECK_MS)
        });
        let current = self.set_timers[slot];
        if let (Some(id), Some(due)) = (current, due) {
            if self.timers.deadline(id) == Some(due) {
                return;
            }
        }
        if let Some(id) = current {
            self.timers.cancel(id);
        }
        self.set_timers[slot] = due.map(|d| self.timers.insert(d, TimerEvent::SetDue(set)));
    }

    // ----- time ------------------------------------------------------------------------------

    /// When the loop must call [`Core::tick`] next (monotonic ms).
    pub fn next_wakeup_ms(&self) -> Option<u64> {
        self.timers.next_wakeup()
    }

    /// Fires every timer due at `now`.
    pub fn tick(&mut self, now: Now) {
        let mut fired = Vec::new();
        self.timers.advance(now.mono_ms, &mut fired);
        for event in fired {
            match event {
                TimerEvent::FetchTimedOut(conn) => {
                    if self.unpark(conn) {
                        self.effects.wakes.push((conn, Reply::Null));
                    }
                }
                TimerEvent::ReservationExpired(jid) => self.expire_reservation(&jid, now),
                TimerEvent::BeatExpired(wid) => self.expire_worker(&wid),
                TimerEvent::SetDue(set) => self.set_due(set, now),
                TimerEvent::Housekeeping => self.housekeeping(now),
            }
        }
    }

    fn expire_reservation(&mut self, jid: &str, now: Now) {
        let Some(r) = self.working.remove(jid) else {
            return;
        };
        self.stats.busy.reaped += 1;
        self.stats.busy.cycles += 1;
        self.release_record(jid);
        self.fail_job(
            r.job,
            RESERVATION_EXPIRED_ERRTYPE,
            RESERVATION_EXPIRED_MESSAGE,
            &[],
            now,
        );
    }

    fn expire_worker(&mut self, wid: &str) {
        let Some(w) = self.workers.remove(wid) else {
            return;
        };
        log::info!(
            "worker {wid} sent no BEAT in time; closing its {} connection(s)",
            w.conns.len()
        );
        self.stats.workers.reaped += 1;
        self.stats.workers.cycles += 1;
        for conn in w.conns {
            if let Some(c) = self.conns.get_mut(&conn) {
                c.wid = None;
            }
            self.effects.closes.push(conn);
        }
    }

    fn set_due(&mut self, set: SetName, now: Now) {
        // Forget the set's timer only if it is the one that fired: an event earlier in the same
        // tick (say, a reservation expiring into the retry set) may already have re-armed it.
        let slot = set as usize;
        if let Some(id) = self.set_timers[slot] {
            if self.timers.deadline(id).is_none() {
                self.set_timers[slot] = None;
            }
        }
        let mut moved = 0u64;
        for _ in 0..self.config.promote_batch {
            let Some((key, job)) = self.set_mut(set).pop_due(now.wall) else {
                break;
            };
            self.set_remove_record(set, key);
            moved += 1;
            match set {
                SetName::Scheduled | SetName::Retries => self.enqueue(job, now, true),
                SetName::Dead => {}
            }
        }
        let stats = match set {
            SetName::Scheduled => &mut self.stats.scheduled,
            SetName::Retries => &mut self.stats.retries,
            SetName::Dead => &mut self.stats.dead,
        };
        stats.cycles += 1;
        stats.enqueued += moved;
        // More due entries than one batch re-arm at `now`: the rest moves next turn.
        self.rearm_set(set, now);
    }

    fn housekeeping(&mut self, now: Now) {
        while self.stats.daily.len() > DAILY_HISTORY_DAYS {
            self.stats.daily.pop_first();
        }
        self.timers.insert(
            now.mono_ms + self.config.housekeeping_ms,
            TimerEvent::Housekeeping,
        );
    }

    // ----- replay ----------------------------------------------------------------------------

    /// Applies one journal record, rebuilding the state change it describes. Deadlines are
    /// re-armed relative to `now`: a reservation whose `expires_at` has passed expires on the
    /// next tick and follows the retry policy, as in Faktory after a restart.
    pub fn replay(&mut self, rec: &Record, now: Now) -> Result<(), ReplayError> {
        let recording = std::mem::replace(&mut self.config.recording, false);
        let result = self.replay_one(rec, now);
        self.config.recording = recording;
        result
    }

    fn replay_one(&mut self, rec: &Record, now: Now) -> Result<(), ReplayError> {
        let job = |json: &[u8]| {
            Job::from_stored(json, now.wall)
                .map_err(|_| ReplayError("a stored job does not decode"))
        };
        match rec {
            Record::Enqueue { job: json } => {
                let job = job(json)?;
                self.queues
                    .entry(job.queue().into())
                    .or_default()
                    .jobs
                    .push_back(job);
            }
            Record::Reserve {
                queue,
                jid,
                wid,
                expires_at,
            } => {
                let q = self
                    .queues
                    .get_mut(queue)
                    .ok_or(ReplayError("reserve from a missing queue"))?;
                if q.jobs.front().is_none_or(|j| j.jid() != &**jid) {
                    return Err(ReplayError(
                        "reserve of a job not at the front of its queue",
                    ));
                }
                let Some(job) = q.jobs.pop_front() else {
                    return Err(ReplayError("reserve from an empty queue"));
                };
                let wait_ms = now.wall.nanos_until(*expires_at).max(0) as u64 / 1_000_000;
                let timer = self.timers.insert(
                    now.mono_ms + wait_ms,
                    TimerEvent::ReservationExpired(jid.clone()),
                );
                let reservation = Reservation {
                    job,
                    wid: wid.clone(),
                    reserved_at: now.wall,
                    expires_at: *expires_at,
                    timer,
                };
                if let Some(old) = self.working.insert(jid.clone(), reservation) {
                    self.timers.cancel(old.timer);
                }
            }
            Record::Release { jid } => {
                if let Some(r) = self.working.remove(jid) {
                    self.timers.cancel(r.timer);
                }
            }
            Record::SetAdd {
                set,
                key,
                job: json,
            } => {
                let job = job(json)?;
                self.seq = self.seq.max(key.seq);
                self.set_mut(*set).insert(*key, job);
                self.rearm_set(*set, now);
            }
            Record::SetRemove { set, key } => {
                self.set_mut(*set).remove(key);
                self.rearm_set(*set, now);
            }
            Record::Count {
                processed,
                failures,
                day,
            } => self.add_counts(day.clone(), *processed, *failures),
            Record::Pause { queue, paused } => {
                // Creates the queue: a snapshot names every queue this way, empty ones too.
                self.queues.entry(queue.clone()).or_default().paused = *paused;
            }
            Record::RemoveQueue { queue } => {
                self.queues.remove(queue);
            }
            Record::Flush => {
                self.flush(now);
            }
            Record::Totals {
                processed,
                failures,
            } => {
                self.stats.processed = *processed;
                self.stats.failures = *failures;
            }
        }
        Ok(())
    }

    /// Calls `emit` with records that, replayed in order into an empty core, rebuild everything
    /// durable about this one (a snapshot): queues in order with their paused marks, the
    /// working set, the three sets with their keys, and the counters.
    pub fn dump(&self, emit: &mut dyn FnMut(Record)) {
        let mut working: BTreeMap<&str, Vec<&Reservation>> = BTreeMap::new();
        for r in self.working.values() {
            working.entry(r.job.queue()).or_default().push(r);
        }
        for (name, q) in &self.queues {
            emit(Record::Pause {
                queue: name.clone(),
                paused: q.paused,
            });
            // Reserved jobs first: each is the only job of its queue when it is reserved.
            for r in working.remove(&**name).unwrap_or_default() {
                dump_reservation(r, emit);
            }
            for job in &q.jobs {
                emit(Record::Enqueue { job: job.to_json() });
            }
        }
        // Reservations whose queue was removed while they were out.
        for (name, rs) in working {
            for r in rs {
                dump_reservation(r, emit);
            }
            emit(Record::RemoveQueue { queue: name.into() });
        }
        for set in SetName::ALL {
            for (key, job) in self.set_ref(set).iter() {
                emit(Record::SetAdd {
                    set,
                    key: *key,
                    job: job.to_json(),
                });
            }
        }
        for (day, d) in &self.stats.daily {
            emit(Record::Count {
                processed: d.processed,
                failures: d.failures,
                day: day.clone(),
            });
        }
        emit(Record::Totals {
            processed: self.stats.processed,
            failures: self.stats.failures,
        });
    }

    // ----- queries ---------------------------------------------------------------------------

    /// The counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// A queue, if it exists.
    pub fn queue_ref(&self, name: &str) -> Option<&Queue> {
        self.queues.get(name)
    }

    /// Every queue, by name.
    pub fn queues(&self) -> impl Iterator<Item = (&str, &Queue)> {
        self.queues.iter().map(|(k, q)| (&**k, q))
    }

    /// A sorted set.
    pub fn set(&self, set: SetName) -> &SortedSet {
        self.set_ref(set)
    }

    /// The working set.
    pub fn working(&self) -> &HashMap<Box<str>, Reservation> {
        &self.working
    }

    /// Number of armed timers (for tests and diagnostics).
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }

    /// Sets the memory figure INFO reports (the loop reads it from the OS).
    pub fn set_used_memory_mb(&mut self, mb: u64) {
        self.used_memory_mb = mb;
    }
}

impl From<MutateTarget> for SetName {
    fn from(t: MutateTarget) -> SetName {
        match t {
            MutateTarget::Retries => SetName::Retries,
            MutateTarget::Scheduled => SetName::Scheduled,
            MutateTarget::Dead => SetName::Dead,
        }
    }
}

/// A journal record that does not fit the state it is applied to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplayError(pub &'static str);

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ReplayError {}

fn dump_reservation(r: &Reservation, emit: &mut dyn FnMut(Record)) {
    emit(Record::Enqueue {
        job: r.job.to_json(),
    });
    emit(Record::Reserve {
        queue: r.job.queue().into(),
        jid: r.job.jid().into(),
        wid: r.wid.clone(),
        expires_at: r.expires_at,
    });
}

/// `"key":"value"` as the canonical job JSON spells it, for Faktory's substring filters.
fn field_text(key: &str, value: &str) -> Vec<u8> {
    let mut text = Vec::with_capacity(key.len() + value.len() + 6);
    job::write_json_str(&mut text, key);
    text.push(b':');
    job::write_json_str(&mut text, value);
    text
}

/// True when `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Trims, replaces empty by `unknown`, and cuts to `max` bytes on a character boundary.
fn clean_text(s: &str, max: usize) -> &str {
    let s = s.trim();
    if s.is_empty() {
        return "unknown";
    }
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or(s)
}
