//! The job state machine driven by a fuzzer-chosen sequence of client operations.
//!
//! Every operation becomes a real request line (HELLO through `parse_hello`, the rest through
//! `Command::parse`) and goes to `Core::apply` the way the event loop sends it: commands come only
//! from identified connections that are not parked, `END` and worker expiry close the connection,
//! wakes and closes are drained after each call, and time moves only by `AdvanceClock`, which
//! ticks until no timer is due (as the loop's poll timeout would).
//!
//! Jobs get unique jids, so a model can follow each one. After every step:
//! - no job is in two places (queues, working set, the three sets), and
//!   `working + queue lengths + set lengths` equals the model's count of live jobs;
//! - no job appears from nowhere: new jids come only from this step's accepted PUSH/PUSHB;
//! - no job disappears unless the step may remove it: ACK of a reserved jid, FAIL of a
//!   retry-0 job, MUTATE discard/clear of the selected entries, QUEUE REMOVE, FLUSH, reservation
//!   expiry of a retry-0 job, and dead-set trimming/purging (counted by the stats);
//! - a job that left never comes back (so an acked jid is never seen again);
//! - replies are what the state says they must be (PUSH ok/error, FETCH gives the front of the
//!   first non-paused named queue, FAIL of an unknown jid is an error, INFO's sizes);
//! - after a clock advance nothing due is left: no due scheduled/retry entry, no expired dead
//!   entry, no expired reservation, no FETCH parked past its block time;
//! - the timer wheel holds exactly one timer per reservation, parked fetch, worker and non-empty
//!   set, plus housekeeping.
//!
//! - with journal records on, a second core fed only the records (`Core::replay`) holds the same
//!   queues, reservations, set entries and counters.
//!
//! A step that pushes a jid seen before (PushDup, or a raw line) switches the model off for the
//! rest of the run: jids stop being unique (Faktory allows that), so only the checks that do not
//! need unique jids remain.
#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use werk::clock::Now;
use werk::command::{
    parse_hello, Command, FilterInput, MutateOp, MutateTarget, QueueCommand, QueueNames,
};
use werk::core::job::write_json_str;
use werk::core::{glob, ConnId, Core, CoreConfig, Job, Response, SetName, WorkerState};
use werk::resp::{decode, Frame, Reply};
use werk::timestamp::Timestamp;

const CONNS: u8 = 4;
const MAX_OPS: usize = 160;
const TICK_LOOP_MAX: usize = 100_000;

// ----- the fuzzer's vocabulary -------------------------------------------------------------------

#[derive(Arbitrary, Debug)]
struct Input {
    config: ConfigChoice,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ConfigChoice {
    /// Faktory's limits.
    Default,
    /// Faktory's limits, with journal records on.
    Recording,
    /// Short timeouts, a tiny dead set and small promotion batches, with journal records on.
    Tight,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Hello {
        conn: u8,
        wid: Option<Wid>,
    },
    Push {
        conn: u8,
        job: JobSpec,
    },
    Pushb {
        conn: u8,
        jobs: Vec<JobSpec>,
    },
    /// A valid job reusing an earlier jid: turns the unique-jid model off.
    PushDup {
        conn: u8,
        idx: u16,
        job: JobSpec,
    },
    Fetch {
        conn: u8,
        queues: Vec<QName>,
    },
    Ack {
        conn: u8,
        target: JidRef,
    },
    Fail {
        conn: u8,
        target: JidRef,
        text: u8,
    },
    Beat {
        conn: u8,
        wid: Wid,
        state: BeatState,
    },
    Mutate {
        conn: u8,
        op: MOp,
        target: MTarget,
        filter: Filter,
    },
    Queue {
        conn: u8,
        sub: QSub,
        all: bool,
        names: Vec<QName>,
    },
    Flush {
        conn: u8,
    },
    Info {
        conn: u8,
    },
    End {
        conn: u8,
    },
    AdvanceClock(Step),
    Disconnect {
        conn: u8,
    },
    /// Any line at all.
    Raw {
        conn: u8,
        line: Vec<u8>,
    },
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq, Eq)]
enum Wid {
    W0,
    W1,
    W2,
    Empty,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum QName {
    Default,
    Q1,
    Q2,
    Empty,
    Star,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum JidRef {
    /// Some jid pushed earlier.
    Pushed(u16),
    /// A jid now in the working set.
    Working(u8),
    /// A jid now in some sorted set.
    InSet(u8),
    Unknown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum BeatState {
    None,
    Empty,
    Running,
    Quiet,
    Terminate,
    Other,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MOp {
    Kill,
    Discard,
    Requeue,
    Clear,
    Bogus,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum MTarget {
    Retries,
    Scheduled,
    Dead,
    Working,
}

#[derive(Arbitrary, Debug)]
enum Filter {
    None,
    Null,
    Jids(Vec<JidRef>),
    Jobtype(JobType),
    Regexp(Pattern, Option<JobType>),
}

#[derive(Arbitrary, Debug)]
enum Pattern {
    Star,
    Jobtype(JobType),
    Queue(QName),
    RetryZero,
    Failed,
    Bytes(Vec<u8>),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum QSub {
    Pause,
    Resume,
    Remove,
    Latency,
    Bogus,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    Ms(u16),
    Secs(u16),
    Minutes(u8),
    Days(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum JobType {
    A,
    B,
    C,
    Empty,
}

#[derive(Arbitrary, Debug)]
struct JobSpec {
    jobtype: JobType,
    queue: QSel,
    retry: RetrySpec,
    reserve_for: ReserveSpec,
    at: AtSpec,
    args: ArgsSpec,
    custom: bool,
    /// A failure record sent with the job: retry_count is `x % 5 - 1` (so -1..=3, close to the
    /// retry policies above, where the retry/dead decision changes), remaining as given.
    failure: Option<(u8, i8)>,
    backtrace: bool,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum QSel {
    Absent,
    Empty,
    Default,
    Q1,
    Q2,
    Invalid,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RetrySpec {
    Absent,
    Zero,
    One,
    Two,
    Negative,
    Many,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum ReserveSpec {
    Absent,
    Zero,
    One,
    Minute,
    Day,
    TooLong,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum AtSpec {
    Absent,
    Empty,
    Past,
    Now,
    InMs(u16),
    InSecs(u16),
    InDays(u16),
    /// January 1st of year `y % 10000`: beyond i64 nanoseconds (1677..2262) both ways.
    Year(u16),
    Bad,
}

#[derive(Arbitrary, Debug, Clone)]
enum ArgsSpec {
    Empty,
    Ints(Vec<i32>),
    Text(String),
    Nested,
}

// ----- turning the vocabulary into request lines -------------------------------------------------

fn wid_str(w: Wid) -> &'static str {
    match w {
        Wid::W0 => "w0",
        Wid::W1 => "w1",
        Wid::W2 => "w2",
        Wid::Empty => "",
    }
}

fn qname(q: QName) -> &'static str {
    match q {
        QName::Default => "default",
        QName::Q1 => "q1",
        QName::Q2 => "q2",
        QName::Empty => "",
        QName::Star => "*",
    }
}

fn jobtype_str(t: JobType) -> &'static str {
    match t {
        JobType::A => "A",
        JobType::B => "B",
        JobType::C => "C",
        JobType::Empty => "",
    }
}

fn job_json(spec: &JobSpec, jid: &str, now: Now) -> Value {
    let mut j = json!({ "jid": jid, "jobtype": jobtype_str(spec.jobtype) });
    let m = j.as_object_mut().unwrap();
    // An empty jobtype is refused; keep most jobs valid.
    if matches!(spec.jobtype, JobType::Empty) && spec.custom {
        m.insert("jobtype".into(), json!("Z"));
    }
    match spec.queue {
        QSel::Absent => {}
        QSel::Empty => {
            m.insert("queue".into(), json!(""));
        }
        QSel::Default => {
            m.insert("queue".into(), json!("default"));
        }
        QSel::Q1 => {
            m.insert("queue".into(), json!("q1"));
        }
        QSel::Q2 => {
            m.insert("queue".into(), json!("q2"));
        }
        QSel::Invalid => {
            m.insert("queue".into(), json!("no spaces"));
        }
    }
    let retry = match spec.retry {
        RetrySpec::Absent => None,
        RetrySpec::Zero => Some(0),
        RetrySpec::One => Some(1),
        RetrySpec::Two => Some(2),
        RetrySpec::Negative => Some(-1),
        RetrySpec::Many => Some(25),
    };
    if let Some(r) = retry {
        m.insert("retry".into(), json!(r));
    }
    let reserve = match spec.reserve_for {
        ReserveSpec::Absent => None,
        ReserveSpec::Zero => Some(0),
        ReserveSpec::One => Some(1),
        ReserveSpec::Minute => Some(60),
        ReserveSpec::Day => Some(86_400),
        ReserveSpec::TooLong => Some(86_401),
    };
    if let Some(r) = reserve {
        m.insert("reserve_for".into(), json!(r));
    }
    let at = match spec.at {
        AtSpec::Absent => None,
        AtSpec::Empty => Some(String::new()),
        AtSpec::Past => Some(now.plus_ms(0).wall.add_secs(-3600).to_rfc3339()),
        AtSpec::Now => Some(now.wall.to_rfc3339()),
        AtSpec::InMs(ms) => Some(now.plus_ms(u64::from(ms)).wall.to_rfc3339()),
        AtSpec::InSecs(s) => Some(now.wall.add_secs(i64::from(s)).to_rfc3339()),
        // Up to ~180 years ahead: past the timer wheel's span, within i64 nanoseconds.
        AtSpec::InDays(d) => Some(now.wall.add_secs(i64::from(d) * 86_400).to_rfc3339()),
        AtSpec::Year(y) => Some(format!("{:04}-01-01T00:00:00Z", y % 10_000)),
        AtSpec::Bad => Some("tomorrow".to_owned()),
    };
    if let Some(a) = at {
        m.insert("at".into(), json!(a));
    }
    let args = match &spec.args {
        ArgsSpec::Empty => json!([]),
        ArgsSpec::Ints(v) => json!(v.iter().take(8).collect::<Vec<_>>()),
        ArgsSpec::Text(s) => json!([s.chars().take(40).collect::<String>()]),
        ArgsSpec::Nested => json!([{"a": [1, {"b": null}], "c": "x<y>&z"}, 1.50]),
    };
    m.insert("args".into(), args);
    if spec.custom {
        m.insert("custom".into(), json!({"k": "v", "n": [1, 2]}));
    }
    if let Some((count, remaining)) = spec.failure {
        let count = i64::from(count % 5) - 1;
        m.insert(
            "failure".into(),
            json!({"retry_count": count, "remaining": remaining, "failed_at": "2026-01-01T00:00:00Z",
                   "message": "earlier", "errtype": "E", "backtrace": ["a", "b"]}),
        );
    }
    if spec.backtrace {
        m.insert("backtrace".into(), json!(5));
    }
    j
}

fn pattern_text(p: &Pattern) -> String {
    match p {
        Pattern::Star => "*".into(),
        Pattern::Jobtype(t) => format!("*\"jobtype\":\"{}\"*", jobtype_str(*t)),
        Pattern::Queue(q) => format!("*\"queue\":\"{}\"*", qname(*q)),
        Pattern::RetryZero => "{\"retry\":0,*".into(),
        Pattern::Failed => "*\"failure\":{*".into(),
        Pattern::Bytes(b) => String::from_utf8_lossy(&b[..b.len().min(24)]).into_owned(),
    }
}

// ----- the model ---------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq)]
enum Place {
    Queue(String),
    Working,
    Set(SetName),
}

/// Where every job is, read from the core.
struct Snap {
    places: HashMap<String, Place>,
    /// Jobs found, counting duplicates.
    total: usize,
    dups: Vec<String>,
}

fn snapshot(core: &Core) -> Snap {
    let mut s = Snap {
        places: HashMap::new(),
        total: 0,
        dups: Vec::new(),
    };
    let put = |jid: &str, p: Place, s: &mut Snap| {
        s.total += 1;
        if s.places.insert(jid.to_owned(), p).is_some() {
            s.dups.push(jid.to_owned());
        }
    };
    for (name, q) in core.queues() {
        for job in &q.jobs {
            assert_eq!(
                job.queue(),
                name,
                "job {} sits in the wrong queue",
                job.jid()
            );
            put(job.jid(), Place::Queue(name.to_owned()), &mut s);
        }
    }
    for (jid, r) in core.working() {
        assert_eq!(&**jid, r.job.jid(), "working set keyed by the wrong jid");
        put(jid, Place::Working, &mut s);
    }
    for set in SetName::ALL {
        for (_, job) in core.set(set).iter() {
            put(job.jid(), Place::Set(set), &mut s);
        }
    }
    let lens = core.working().len()
        + core.queues().map(|(_, q)| q.jobs.len()).sum::<usize>()
        + SetName::ALL
            .iter()
            .map(|s| core.set(*s).len())
            .sum::<usize>();
    assert_eq!(lens, s.total);
    s
}

#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
struct ConnModel {
    identified: bool,
    wid: Option<Wid>,
    /// Monotonic ms at which its FETCH parked.
    parked_at: Option<u64>,
}

/// What one command may do to the jobs.
#[derive(Default, Debug)]
struct Expect {
    /// Must be gone afterwards.
    must_remove: HashSet<String>,
    /// May be gone afterwards (beyond must_remove), if the dead-set stats account for it.
    may_remove: HashSet<String>,
    /// New jids that may appear.
    new_jids: HashSet<String>,
    /// Accepted jobs that must be present, and whether they must be in the scheduled set.
    accepted: Vec<(String, bool)>,
    /// PUSHB: the jids whose jobs are refused.
    refused: Vec<String>,
    /// FAIL of a reserved job: where it must go (None: dropped).
    fail_dest: Option<(String, Option<SetName>)>,
    fail_known: Option<bool>,
    ack_hit: Option<bool>,
    /// FETCH: the job it must hand out, or None when it must park.
    fetch: Option<Option<String>>,
    /// MUTATE: selected entries and what must become of them.
    mutate: Option<(MutateOp, SetName, Vec<String>)>,
    /// Whether this command breaks the unique-jid model.
    breaks_model: bool,
}

struct Harness {
    core: Core,
    /// With recording on: a core rebuilt only from the journal records, by `Core::replay`.
    replica: Option<Core>,
    config: CoreConfig,
    now: Now,
    conns: [ConnModel; CONNS as usize],
    /// Every jid ever pushed (accepted or not), in order.
    pushed: Vec<String>,
    seen: HashSet<String>,
    /// The model's live jobs.
    live: HashSet<String>,
    /// Jobs that left the server; none may come back.
    gone: HashSet<String>,
    strict: bool,
    next_jid: u64,
}

fn check_reply_wire(r: &Reply) {
    let mut wire = Vec::new();
    r.encode(&mut wire);
    match decode(&wire) {
        Ok(Some((frame, n))) => {
            assert_eq!(n, wire.len(), "reply {r:?} is more than one frame");
            match (r, frame) {
                (Reply::Error(t), Frame::Error(f)) => {
                    assert_eq!(t.replace(['\r', '\n'], " "), f);
                }
                (Reply::Bulk(b), Frame::Bulk(Some(f))) => assert_eq!(b, &f),
                (Reply::Null, Frame::Bulk(None)) => {}
                (Reply::Ok, Frame::Simple(s)) => assert_eq!(s, "OK"),
                (Reply::Simple(t), Frame::Simple(s)) => assert_eq!(t, &s),
                (r, f) => panic!("reply {r:?} decodes as {f:?}"),
            }
        }
        other => panic!("reply {r:?} does not decode: {other:?}"),
    }
}

fn bulk_json(r: &Reply) -> Value {
    match r {
        Reply::Bulk(b) => serde_json::from_slice(b).unwrap_or_else(|e| {
            panic!(
                "bulk reply is not JSON ({e}): {:?}",
                String::from_utf8_lossy(b)
            )
        }),
        other => panic!("expected a bulk reply, got {other:?}"),
    }
}

impl Harness {
    fn new(choice: ConfigChoice) -> Harness {
        let config = match choice {
            ConfigChoice::Default => CoreConfig::default(),
            ConfigChoice::Recording => CoreConfig {
                recording: true,
                ..CoreConfig::default()
            },
            ConfigChoice::Tight => CoreConfig {
                fetch_block_ms: 50,
                beat_timeout_ms: 5_000,
                dead_ttl_secs: 3_600,
                dead_max: 3,
                promote_batch: 2,
                housekeeping_ms: 1_000,
                recording: true,
            },
        };
        let now = Now {
            wall: Timestamp::parse_rfc3339("2026-07-01T12:00:00Z").unwrap(),
            mono_ms: 1_000,
        };
        let replica = config.recording.then(|| {
            Core::new(
                CoreConfig {
                    recording: false,
                    ..config.clone()
                },
                now,
                0x5eed,
            )
        });
        Harness {
            core: Core::new(config.clone(), now, 0x5eed),
            replica,
            config,
            now,
            conns: [ConnModel::default(); CONNS as usize],
            pushed: Vec::new(),
            seen: HashSet::new(),
            live: HashSet::new(),
            gone: HashSet::new(),
            strict: true,
            next_jid: 0,
        }
    }

    fn fresh_jid(&mut self) -> String {
        self.next_jid += 1;
        format!("jid-{:08}", self.next_jid)
    }

    fn resolve(&self, r: JidRef) -> String {
        match r {
            JidRef::Pushed(i) if !self.pushed.is_empty() => {
                self.pushed[usize::from(i) % self.pushed.len()].clone()
            }
            JidRef::Working(i) if !self.core.working().is_empty() => {
                let mut w: Vec<&str> = self.core.working().keys().map(|k| &**k).collect();
                w.sort_unstable();
                w[usize::from(i) % w.len()].to_owned()
            }
            JidRef::InSet(i) => {
                let all: Vec<String> = SetName::ALL
                    .iter()
                    .flat_map(|s| self.core.set(*s).iter().map(|(_, j)| j.jid().to_string()))
                    .collect();
                if all.is_empty() {
                    "nosuchjid".into()
                } else {
                    all[usize::from(i) % all.len()].clone()
                }
            }
            _ => "nosuchjid".into(),
        }
    }

    // ----- connections -----

    fn hello(&mut self, c: u8, wid: Option<Wid>) {
        let idx = usize::from(c % CONNS);
        if self.conns[idx].identified {
            // A new connection with a recycled id: the old one closes first.
            self.disconnect(c);
        }
        let mut doc = json!({"v": 2, "hostname": "fuzz", "pid": 7, "labels": ["x"]});
        if let Some(w) = wid {
            doc["wid"] = json!(wid_str(w));
        }
        let line = format!("HELLO {doc}");
        let hello = parse_hello(line.as_bytes()).expect("generated HELLO parses");
        self.core
            .hello(ConnId(u64::from(c % CONNS)), &hello, self.now);
        self.conns[idx] = ConnModel {
            identified: true,
            wid: wid.filter(|w| !matches!(w, Wid::Empty)),
            parked_at: None,
        };
    }

    fn disconnect(&mut self, c: u8) {
        let idx = usize::from(c % CONNS);
        if self.conns[idx].identified {
            self.core.disconnect(ConnId(u64::from(c % CONNS)));
        }
        self.conns[idx] = ConnModel::default();
    }

    /// Carries out the core's effects as the loop does; checks each wake.
    fn drain_effects(&mut self) {
        loop {
            let fx = self.core.effects();
            let wakes = std::mem::take(&mut fx.wakes);
            let closes = std::mem::take(&mut fx.closes);
            let records = std::mem::take(&mut fx.records);
            if !self.config.recording {
                assert!(records.is_empty(), "records produced with recording off");
            }
            for r in records {
                use werk::core::Record;
                if let Record::Enqueue { job } | Record::SetAdd { job, .. } = &r {
                    serde_json::from_slice::<Value>(job).expect("journal job is JSON");
                }
                if let Some(replica) = self.replica.as_mut() {
                    if let Err(e) = replica.replay(&r, self.now) {
                        panic!("replay of {r:?} failed: {e}");
                    }
                }
            }
            if wakes.is_empty() && closes.is_empty() {
                return;
            }
            for (id, reply) in wakes {
                check_reply_wire(&reply);
                let idx = id.0 as usize;
                assert!(idx < CONNS as usize, "wake for unknown {id:?}");
                assert!(
                    self.conns[idx].parked_at.is_some(),
                    "wake for {id:?}, which is not parked: {reply:?}"
                );
                self.conns[idx].parked_at = None;
                match &reply {
                    Reply::Null => {}
                    Reply::Bulk(_) => {
                        let v = bulk_json(&reply);
                        let jid = v["jid"].as_str().expect("woken job has a jid");
                        let r = self
                            .core
                            .working()
                            .get(jid)
                            .unwrap_or_else(|| panic!("woken job {jid} is not reserved"));
                        let want = self.conns[idx].wid.map(wid_str).unwrap_or_default();
                        assert_eq!(&*r.wid, want, "reservation under the wrong wid");
                    }
                    other => panic!("wake carries {other:?}"),
                }
            }
            for id in closes {
                self.disconnect(id.0 as u8);
            }
        }
    }

    // ----- commands -----

    /// Sends one line from connection `c`, as the loop would.
    fn send(&mut self, c: u8, line: &[u8]) {
        let idx = usize::from(c % CONNS);
        if !self.conns[idx].identified {
            self.hello(c, None);
        }
        if self.conns[idx].parked_at.is_some() {
            // The loop reads nothing from a parked connection.
            return;
        }
        let conn = ConnId(u64::from(c % CONNS));
        let cmd = match Command::parse(line) {
            Ok(cmd) => cmd,
            Err(e) => {
                if e.known_verb() {
                    self.core.count_command();
                }
                check_reply_wire(&Reply::err(&e));
                return;
            }
        };
        let before = snapshot(&self.core);
        let stats_before = self.stats();
        let states_before: HashMap<String, WorkerState> = self
            .core
            .workers()
            .map(|w| (w.wid.to_string(), w.state))
            .collect();
        let expect = self.expect(&cmd, conn, &before);
        if expect.breaks_model {
            self.strict = false;
        }
        let is_info = matches!(cmd, Command::Info);
        let is_beat = matches!(cmd, Command::Beat(_));
        let response = self.core.apply(conn, cmd, self.now);
        match &response {
            Response::Reply(r) => check_reply_wire(r),
            Response::Parked => {
                self.conns[idx].parked_at = Some(self.now.mono_ms);
            }
            Response::Close => {
                self.disconnect(c);
            }
        }
        self.check_response(&expect, &response, is_info, is_beat);
        for w in self.core.workers() {
            if let Some(old) = states_before.get(&*w.wid) {
                assert!(
                    w.state >= *old,
                    "worker {} moved back to {:?}",
                    w.wid,
                    w.state
                );
            }
        }
        self.drain_effects();
        let after = snapshot(&self.core);
        self.check_jobs(&expect, &before, &after, stats_before);
        if let Some(hit) = expect.ack_hit {
            let s = self.stats();
            assert_eq!(s.0, stats_before.0 + u64::from(hit), "processed after ACK");
        }
        if let (Some(true), Some(_)) = (expect.fail_known, &expect.fail_dest) {
            let s = self.stats();
            assert_eq!(s.0, stats_before.0 + 1, "processed after FAIL");
            assert_eq!(s.1, stats_before.1 + 1, "failures after FAIL");
        }
        self.check_invariants();
    }

    /// (processed, failures, dead_trimmed, dead purged, busy reaped)
    fn stats(&self) -> (u64, u64, u64, u64, u64) {
        let s = self.core.stats();
        (
            s.processed,
            s.failures,
            s.dead_trimmed,
            s.dead.enqueued,
            s.busy.reaped,
        )
    }

    fn conn_wid(&self, conn: ConnId) -> &'static str {
        self.conns[conn.0 as usize]
            .wid
            .map(wid_str)
            .unwrap_or_default()
    }

    fn expect(&self, cmd: &Command<'_>, conn: ConnId, before: &Snap) -> Expect {
        let mut e = Expect::default();
        let push = |e: &mut Expect,
                    input: &werk::command::JobInput<'_>,
                    seen_now: &mut HashSet<String>| {
            let jid = input.jid.as_deref().unwrap_or_default().to_owned();
            match Job::from_input(input, self.now.wall) {
                Ok(new) => {
                    if self.seen.contains(&jid) || !seen_now.insert(jid.clone()) {
                        e.breaks_model = true;
                    }
                    e.new_jids.insert(jid.clone());
                    e.accepted.push((jid, new.scheduled_for.is_some()));
                }
                Err(_) => e.refused.push(jid),
            }
        };
        let mut seen_now = HashSet::new();
        match cmd {
            Command::Push(job) => push(&mut e, job, &mut seen_now),
            Command::Pushb(jobs) => {
                for job in jobs {
                    push(&mut e, job, &mut seen_now)
                }
            }
            Command::Fetch(q) => {
                let wid = self.conn_wid(conn);
                let running = self
                    .core
                    .worker(wid)
                    .is_none_or(|w| w.state == WorkerState::Running);
                let mut found = None;
                if running {
                    for name in q.names() {
                        let Some(queue) = self.core.queue_ref(name) else {
                            continue;
                        };
                        if queue.paused {
                            continue;
                        }
                        if let Some(j) = queue.jobs.front() {
                            found = Some(j.jid().to_string());
                            break;
                        }
                    }
                }
                e.fetch = Some(found);
            }
            Command::Ack(a) => {
                let hit = self.core.working().contains_key(&*a.jid);
                if hit {
                    e.must_remove.insert(a.jid.to_string());
                }
                e.ack_hit = Some(hit);
            }
            Command::Fail(f) => {
                let jid = f.jid.clone().unwrap_or_default();
                match self.core.working().get(&*jid) {
                    Some(r) => {
                        let dest = fail_destination(&r.job);
                        match dest {
                            None => {
                                e.must_remove.insert(jid.clone());
                            }
                            Some(SetName::Dead) => {
                                e.may_remove.insert(jid.clone());
                            }
                            Some(_) => {}
                        }
                        e.fail_dest = Some((jid, dest));
                        e.fail_known = Some(true);
                    }
                    None => e.fail_known = Some(false),
                }
                self.dead_may_go(&mut e);
            }
            Command::Mutate(m) => {
                let set = match m.target {
                    MutateTarget::Retries => SetName::Retries,
                    MutateTarget::Scheduled => SetName::Scheduled,
                    MutateTarget::Dead => SetName::Dead,
                };
                let filter = if m.op == MutateOp::Clear {
                    None
                } else {
                    m.filter.as_ref()
                };
                let selected = select(&self.core, set, filter);
                match m.op {
                    MutateOp::Clear | MutateOp::Discard => {
                        e.must_remove.extend(selected.iter().cloned());
                    }
                    MutateOp::Kill => {
                        e.may_remove.extend(selected.iter().cloned());
                        self.dead_may_go(&mut e);
                    }
                    MutateOp::Requeue => {}
                }
                e.mutate = Some((m.op, set, selected));
            }
            Command::Queue(QueueCommand::Remove(names)) => {
                for (jid, p) in &before.places {
                    if let Place::Queue(q) = p {
                        let named = match names {
                            QueueNames::All => true,
                            QueueNames::List(l) => l.contains(&q.as_str()),
                        };
                        if named {
                            e.must_remove.insert(jid.clone());
                        }
                    }
                }
            }
            Command::Flush => {
                for (jid, p) in &before.places {
                    if *p != Place::Working {
                        e.must_remove.insert(jid.clone());
                    }
                }
            }
            _ => {}
        }
        e
    }

    fn dead_may_go(&self, e: &mut Expect) {
        for (_, j) in self.core.set(SetName::Dead).iter() {
            e.may_remove.insert(j.jid().to_string());
        }
    }

    fn check_response(&self, e: &Expect, resp: &Response, is_info: bool, is_beat: bool) {
        let reply = match resp {
            Response::Reply(r) => Some(r),
            _ => None,
        };
        if let Some(want) = &e.fetch {
            match (want, resp) {
                (None, Response::Parked) => {}
                (Some(jid), Response::Reply(r @ Reply::Bulk(_))) if self.strict => {
                    let v = bulk_json(r);
                    assert_eq!(
                        v["jid"].as_str(),
                        Some(jid.as_str()),
                        "FETCH gave the wrong job"
                    );
                }
                (Some(_), Response::Reply(Reply::Bulk(_))) => {}
                (want, got) => panic!("FETCH: expected {want:?}, got {got:?}"),
            }
            return;
        }
        if is_info {
            let v = bulk_json(reply.expect("INFO replies"));
            let f = &v["faktory"];
            assert_eq!(f["sets"]["working"], json!(self.core.working().len()));
            for set in SetName::ALL {
                assert_eq!(f["sets"][set.as_str()], json!(self.core.set(set).len()));
            }
            let mut total = 0;
            for (name, q) in self.core.queues() {
                assert_eq!(f["queues"][name], json!(q.jobs.len()));
                total += q.jobs.len();
            }
            assert_eq!(f["total_enqueued"], json!(total));
            assert_eq!(
                v["server"]["connections"],
                json!(self.conns.iter().filter(|c| c.identified).count())
            );
            return;
        }
        if is_beat {
            match reply {
                Some(Reply::Ok) | Some(Reply::Error(_)) => {}
                Some(r @ Reply::Bulk(_)) => {
                    let v = bulk_json(r);
                    assert!(matches!(v["state"].as_str(), Some("quiet" | "terminate")));
                }
                other => panic!("BEAT replied {other:?}"),
            }
            return;
        }
        if !e.accepted.is_empty() || !e.refused.is_empty() {
            match reply {
                Some(Reply::Ok) => assert!(e.refused.is_empty(), "PUSH of an invalid job: OK"),
                Some(Reply::Error(t)) => {
                    assert!(e.accepted.is_empty(), "PUSH of a valid job refused: {t}")
                }
                Some(r @ Reply::Bulk(_)) => {
                    let v = bulk_json(r);
                    let keys: HashSet<&str> = v
                        .as_object()
                        .expect("PUSHB reply is an object")
                        .keys()
                        .map(|k| &**k)
                        .collect();
                    let want: HashSet<&str> = e.refused.iter().map(|k| &**k).collect();
                    assert_eq!(keys, want, "PUSHB error map");
                }
                other => panic!("PUSH replied {other:?}"),
            }
        }
        if let Some(known) = e.fail_known {
            match reply {
                Some(Reply::Ok) => assert!(known, "FAIL of an unknown jid: OK"),
                Some(Reply::Error(t)) => {
                    assert!(!known, "FAIL of a reserved jid refused: {t}");
                    assert!(t.starts_with("ERR Job not found"));
                }
                other => panic!("FAIL replied {other:?}"),
            }
        }
        if e.ack_hit.is_some() {
            assert_eq!(reply, Some(&Reply::Ok), "ACK always replies OK");
        }
        if e.mutate.is_some() {
            assert_eq!(reply, Some(&Reply::Ok), "MUTATE replies OK");
        }
    }

    /// Checks the jobs moved only as `e` allows.
    fn check_jobs(
        &mut self,
        e: &Expect,
        before: &Snap,
        after: &Snap,
        stats_before: (u64, u64, u64, u64, u64),
    ) {
        self.pushed
            .extend(e.accepted.iter().map(|(j, _)| j.clone()));
        self.pushed.extend(e.refused.iter().cloned());
        if !self.strict {
            self.seen.extend(e.new_jids.iter().cloned());
            self.live = after.places.keys().cloned().collect();
            return;
        }
        assert!(
            after.dups.is_empty(),
            "jobs in two places: {:?}",
            after.dups
        );
        let stats = self.stats();
        let dead_loss = (stats.2 - stats_before.2) + (stats.3 - stats_before.3);
        self.check_moves(
            before,
            after,
            &e.new_jids,
            &e.must_remove,
            &e.may_remove,
            dead_loss,
        );
        for (jid, scheduled) in &e.accepted {
            let p = after
                .places
                .get(jid)
                .unwrap_or_else(|| panic!("accepted job {jid} is nowhere"));
            if *scheduled {
                assert_eq!(
                    p,
                    &Place::Set(SetName::Scheduled),
                    "future job {jid} not scheduled"
                );
            } else {
                assert!(
                    matches!(p, Place::Queue(_) | Place::Working),
                    "job {jid} pushed for now is in {p:?}"
                );
            }
        }
        self.seen.extend(e.new_jids.iter().cloned());
        if let Some((jid, dest)) = &e.fail_dest {
            check_fail_destination(after, jid, *dest);
        }
        if let Some((op, set, selected)) = &e.mutate {
            for jid in selected {
                let p = after.places.get(jid);
                let ok = match op {
                    MutateOp::Clear | MutateOp::Discard => p.is_none(),
                    MutateOp::Kill => p == Some(&Place::Set(SetName::Dead)) || p.is_none(),
                    MutateOp::Requeue => matches!(p, Some(Place::Queue(_) | Place::Working)),
                };
                assert!(ok, "MUTATE {op:?} {set:?}: selected {jid} is in {p:?}");
            }
            if *op == MutateOp::Clear {
                assert!(self.core.set(*set).is_empty(), "set not empty after clear");
            }
        }
    }

    /// The common job-movement rules; updates `live` and `gone`.
    fn check_moves(
        &mut self,
        before: &Snap,
        after: &Snap,
        new_jids: &HashSet<String>,
        must_remove: &HashSet<String>,
        may_remove: &HashSet<String>,
        dead_loss: u64,
    ) {
        assert_eq!(
            before.places.keys().cloned().collect::<HashSet<_>>(),
            self.live,
            "model out of step before the command"
        );
        for jid in after.places.keys() {
            assert!(
                !self.gone.contains(jid),
                "job {jid} came back after it left"
            );
            if !before.places.contains_key(jid) {
                assert!(new_jids.contains(jid), "job {jid} appeared from nowhere");
            }
        }
        let removed: HashSet<&String> = before
            .places
            .keys()
            .filter(|j| !after.places.contains_key(*j))
            .collect();
        for jid in must_remove {
            assert!(!after.places.contains_key(jid), "job {jid} should be gone");
        }
        let mut extra = 0u64;
        for jid in &removed {
            if must_remove.contains(*jid) {
                continue;
            }
            assert!(
                may_remove.contains(*jid),
                "job {jid} vanished from {:?}",
                before.places[*jid]
            );
            extra += 1;
        }
        assert_eq!(
            extra, dead_loss,
            "jobs dropped beyond what the dead-set stats count"
        );
        for jid in removed {
            self.gone.insert(jid.clone());
        }
        self.live = after.places.keys().cloned().collect();
        let lens = self.core.working().len()
            + self.core.queues().map(|(_, q)| q.jobs.len()).sum::<usize>()
            + SetName::ALL
                .iter()
                .map(|s| self.core.set(*s).len())
                .sum::<usize>();
        assert_eq!(lens, self.live.len(), "job count differs from the model");
    }

    // ----- time -----

    fn advance(&mut self, step: Step) {
        let ms = match step {
            Step::Ms(ms) => u64::from(ms),
            Step::Secs(s) => u64::from(s) * 1000,
            Step::Minutes(m) => u64::from(m) * 60_000,
            Step::Days(d) => u64::from(d % 32) * 86_400_000,
        };
        let before = snapshot(&self.core);
        let stats_before = self.stats();
        self.now = self.now.plus_ms(ms);
        // What may go: retry-0 reservations that expire now, and (through the stats) dead jobs
        // and expired reservations that go dead and get trimmed.
        let mut must_remove = HashSet::new();
        let mut may_remove = HashSet::new();
        let mut expiring = 0u64;
        let mut dests = Vec::new();
        for (jid, r) in self.core.working() {
            if r.expires_at <= self.now.wall {
                expiring += 1;
                let dest = fail_destination(&r.job);
                match dest {
                    None => {
                        must_remove.insert(jid.to_string());
                    }
                    Some(SetName::Dead) => {
                        may_remove.insert(jid.to_string());
                    }
                    Some(_) => {}
                }
                dests.push((jid.to_string(), dest));
            }
        }
        for (_, j) in self.core.set(SetName::Dead).iter() {
            may_remove.insert(j.jid().to_string());
        }
        let mut turns = 0;
        loop {
            self.core.tick(self.now);
            self.drain_effects();
            match self.core.next_wakeup_ms() {
                Some(t) if t <= self.now.mono_ms => {
                    turns += 1;
                    assert!(
                        turns < TICK_LOOP_MAX,
                        "timers never settle at {}",
                        self.now.mono_ms
                    );
                }
                _ => break,
            }
        }
        let after = snapshot(&self.core);
        if self.strict {
            assert!(
                after.dups.is_empty(),
                "jobs in two places: {:?}",
                after.dups
            );
            let s = self.stats();
            let dead_loss = (s.2 - stats_before.2) + (s.3 - stats_before.3);
            self.check_moves(
                &before,
                &after,
                &HashSet::new(),
                &must_remove,
                &may_remove,
                dead_loss,
            );
            assert_eq!(s.4 - stats_before.4, expiring, "reaped reservations");
            for (jid, dest) in &dests {
                check_fail_destination(&after, jid, *dest);
            }
            assert_eq!(s.0 - stats_before.0, expiring, "processed after expiries");
            assert_eq!(s.1 - stats_before.1, expiring, "failures after expiries");
        } else {
            self.live = after.places.keys().cloned().collect();
        }
        // Nothing due is left behind.
        for set in [SetName::Scheduled, SetName::Retries, SetName::Dead] {
            if let Some((k, j)) = self.core.set(set).iter().next() {
                assert!(
                    k.at > self.now.wall,
                    "{set:?} entry {} due at {} still there at {}",
                    j.jid(),
                    k.at.to_rfc3339(),
                    self.now.wall.to_rfc3339()
                );
            }
        }
        for (jid, r) in self.core.working() {
            assert!(
                r.expires_at > self.now.wall,
                "reservation of {jid} outlived its expiry"
            );
        }
        for (i, c) in self.conns.iter().enumerate() {
            if let Some(at) = c.parked_at {
                assert!(
                    at + self.config.fetch_block_ms > self.now.mono_ms,
                    "conn {i} parked since {at} past its block time at {}",
                    self.now.mono_ms
                );
            }
        }
        self.check_invariants();
    }

    // ----- whole-state invariants -----

    fn check_invariants(&self) {
        if let Some(replica) = &self.replica {
            let (a, b) = (digest(&self.core), digest(replica));
            if a != b {
                panic!("state rebuilt from the journal differs:\n live:   {a:?}\n replay: {b:?}");
            }
            assert_eq!(
                self.core.stats().daily,
                replica.stats().daily,
                "daily stats after replay"
            );
            let sets = SetName::ALL
                .iter()
                .filter(|s| !replica.set(**s).is_empty())
                .count();
            assert_eq!(
                replica.timer_count(),
                1 + replica.working().len() + sets,
                "replica timers"
            );
        }
        let parked = self.conns.iter().filter(|c| c.parked_at.is_some()).count();
        let workers = self.core.workers().count();
        let sets = SetName::ALL
            .iter()
            .filter(|s| !self.core.set(**s).is_empty())
            .count();
        let want = 1 + self.core.working().len() + parked + workers + sets;
        assert_eq!(
            self.core.timer_count(),
            want,
            "timers: 1 housekeeping + {} reservations + {parked} parked + {workers} workers + {sets} sets",
            self.core.working().len()
        );
        assert_eq!(
            self.core.connections(),
            self.conns.iter().filter(|c| c.identified).count(),
            "identified connections"
        );
        let mut by_wid: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
        for (i, c) in self.conns.iter().enumerate() {
            if let (true, Some(w)) = (c.identified, c.wid) {
                by_wid.entry(wid_str(w)).or_default().push(i as u64);
            }
        }
        for w in self.core.workers() {
            let mut conns: Vec<u64> = w.conns.iter().map(|c| c.0).collect();
            conns.sort_unstable();
            assert_eq!(
                Some(&conns),
                by_wid.get(&*w.wid),
                "worker {} has the wrong connections",
                w.wid
            );
        }
        for wid in by_wid.keys() {
            assert!(
                self.core.worker(wid).is_some(),
                "worker {wid} missing while connected"
            );
        }
    }
}

/// Where a reserved job goes when it fails (FAIL or reservation expiry), PROTOCOL.md §5.4:
/// dropped when its retry policy is 0, to the retry set while its failure count (0 on the first
/// failure) is below the policy, else to the dead set. `None` means dropped.
fn fail_destination(job: &Job) -> Option<SetName> {
    let count = job.failure().map_or(0, |f| f.retry_count.saturating_add(1));
    if job.retry() == 0 {
        None
    } else if count < job.retry() {
        Some(SetName::Retries)
    } else {
        Some(SetName::Dead)
    }
}

fn check_fail_destination(after: &Snap, jid: &str, dest: Option<SetName>) {
    let p = after.places.get(jid);
    match dest {
        None => assert!(
            p.is_none(),
            "retry-0 job {jid} kept after failing, in {p:?}"
        ),
        // A dead job may be trimmed at once when the dead set is full.
        Some(set) => assert!(
            p == Some(&Place::Set(set)) || (p.is_none() && set == SetName::Dead),
            "failed job {jid} in {p:?}, expected {set:?}"
        ),
    }
}

/// Everything the journal must preserve: queues (order, pause mark, payloads), reservations,
/// set entries with their keys, and the counters.
#[derive(Debug, PartialEq, Eq)]
struct Digest {
    queues: Vec<(String, bool, Vec<String>)>,
    working: BTreeMap<String, (String, String, Timestamp, Timestamp)>,
    sets: Vec<Vec<(Timestamp, u64, String)>>,
    processed: u64,
    failures: u64,
}

fn digest(core: &Core) -> Digest {
    let json = |j: &Job| String::from_utf8_lossy(&j.to_json()).into_owned();
    Digest {
        queues: core
            .queues()
            .map(|(n, q)| {
                (
                    n.to_owned(),
                    q.paused,
                    q.jobs.iter().map(|j| json(j)).collect(),
                )
            })
            .collect(),
        working: core
            .working()
            .iter()
            .map(|(k, r)| {
                (
                    k.to_string(),
                    (json(&r.job), r.wid.to_string(), r.reserved_at, r.expires_at),
                )
            })
            .collect(),
        sets: SetName::ALL
            .iter()
            .map(|s| {
                core.set(*s)
                    .iter()
                    .map(|(k, j)| (k.at, k.seq, json(j)))
                    .collect()
            })
            .collect(),
        processed: core.stats().processed,
        failures: core.stats().failures,
    }
}

/// The entries of `set` that a MUTATE filter selects, by Faktory's rules, all over the stored
/// JSON text: listed jids match where the text holds `"jid":"<jid>"`; otherwise a glob must
/// match the whole text, and a jobtype given with it must appear as `"jobtype":"<X>"`; a jobtype
/// alone compares the field.
fn select(core: &Core, set: SetName, filter: Option<&FilterInput>) -> Vec<String> {
    let entries = core.set(set).iter();
    let Some(f) = filter else {
        return entries.map(|(_, j)| j.jid().to_string()).collect();
    };
    let jids = f.jids.as_deref().unwrap_or_default();
    let jobtype = f.jobtype.as_deref().unwrap_or_default();
    let pattern = f.regexp.as_deref().unwrap_or_default();
    let field = |name: &str, value: &str| {
        let mut n = format!("\"{name}\":").into_bytes();
        write_json_str(&mut n, value);
        n
    };
    let holds = |text: &[u8], needle: &[u8]| text.windows(needle.len()).any(|w| w == needle);
    entries
        .filter(|(_, j)| {
            let text = j.to_json();
            if !jids.is_empty() {
                return jids.iter().any(|id| holds(&text, &field("jid", id)));
            }
            if pattern.is_empty() {
                return jobtype.is_empty() || j.jobtype() == jobtype;
            }
            glob::matches(pattern.as_bytes(), &text)
                && (jobtype.is_empty() || holds(&text, &field("jobtype", jobtype)))
        })
        .map(|(_, j)| j.jid().to_string())
        .collect()
}

fn run(input: Input) {
    let mut h = Harness::new(input.config);
    for op in input.ops.into_iter().take(MAX_OPS) {
        match op {
            Op::Hello { conn, wid } => {
                h.hello(conn, wid);
                h.check_invariants();
            }
            Op::Push { conn, job } => {
                let jid = h.fresh_jid();
                let line = format!("PUSH {}", job_json(&job, &jid, h.now));
                h.send(conn, line.as_bytes());
            }
            Op::Pushb { conn, jobs } => {
                let docs: Vec<Value> = jobs
                    .iter()
                    .take(5)
                    .map(|j| {
                        let jid = h.fresh_jid();
                        job_json(j, &jid, h.now)
                    })
                    .collect();
                let line = format!("PUSHB {}", Value::Array(docs));
                h.send(conn, line.as_bytes());
            }
            Op::PushDup { conn, idx, job } => {
                let jid = if h.pushed.is_empty() {
                    h.fresh_jid()
                } else {
                    h.pushed[usize::from(idx) % h.pushed.len()].clone()
                };
                let line = format!("PUSH {}", job_json(&job, &jid, h.now));
                h.send(conn, line.as_bytes());
            }
            Op::Fetch { conn, queues } => {
                let names: Vec<&str> = queues.iter().take(4).map(|q| qname(*q)).collect();
                let line = format!("FETCH {}", names.join(" "));
                h.send(conn, line.trim_end().as_bytes());
            }
            Op::Ack { conn, target } => {
                let jid = h.resolve(target);
                h.send(conn, format!("ACK {}", json!({ "jid": jid })).as_bytes());
            }
            Op::Fail { conn, target, text } => {
                let jid = h.resolve(target);
                let mut doc = json!({ "jid": jid });
                if text & 1 != 0 {
                    doc["errtype"] = json!("RuntimeError");
                }
                if text & 2 != 0 {
                    doc["message"] = json!(" boom\nlïne2 ".repeat(usize::from(text >> 4) * 20));
                }
                if text & 4 != 0 {
                    let bt: Vec<String> = (0..usize::from(text >> 2) * 2)
                        .map(|i| format!("f{i}"))
                        .collect();
                    doc["backtrace"] = json!(bt);
                }
                h.send(conn, format!("FAIL {doc}").as_bytes());
            }
            Op::Beat { conn, wid, state } => {
                let mut doc = json!({ "wid": wid_str(wid), "rss_kb": 1234 });
                let s = match state {
                    BeatState::None => None,
                    BeatState::Empty => Some(""),
                    BeatState::Running => Some("running"),
                    BeatState::Quiet => Some("quiet"),
                    BeatState::Terminate => Some("terminate"),
                    BeatState::Other => Some("sleepy"),
                };
                if let Some(s) = s {
                    doc["current_state"] = json!(s);
                }
                h.send(conn, format!("BEAT {doc}").as_bytes());
            }
            Op::Mutate {
                conn,
                op,
                target,
                filter,
            } => {
                let cmd = match op {
                    MOp::Kill => "kill",
                    MOp::Discard => "discard",
                    MOp::Requeue => "requeue",
                    MOp::Clear => "clear",
                    MOp::Bogus => "explode",
                };
                let target = match target {
                    MTarget::Retries => "retries",
                    MTarget::Scheduled => "scheduled",
                    MTarget::Dead => "dead",
                    MTarget::Working => "working",
                };
                let mut doc = json!({ "cmd": cmd, "target": target });
                match filter {
                    Filter::None => {}
                    Filter::Null => doc["filter"] = Value::Null,
                    Filter::Jids(refs) => {
                        let jids: Vec<String> =
                            refs.iter().take(4).map(|r| h.resolve(*r)).collect();
                        doc["filter"] = json!({ "jids": jids });
                    }
                    Filter::Jobtype(t) => doc["filter"] = json!({ "jobtype": jobtype_str(t) }),
                    Filter::Regexp(p, t) => {
                        let mut f = json!({ "regexp": pattern_text(&p) });
                        if let Some(t) = t {
                            f["jobtype"] = json!(jobtype_str(t));
                        }
                        doc["filter"] = f;
                    }
                }
                h.send(conn, format!("MUTATE {doc}").as_bytes());
            }
            Op::Queue {
                conn,
                sub,
                all,
                names,
            } => {
                let sub = match sub {
                    QSub::Pause => "PAUSE",
                    QSub::Resume => "resume",
                    QSub::Remove => "REMOVE",
                    QSub::Latency => "LATENCY",
                    QSub::Bogus => "shuffle",
                };
                let mut line = format!("QUEUE {sub}");
                if all {
                    line.push_str(" *");
                }
                for q in names.iter().take(4) {
                    line.push(' ');
                    line.push_str(qname(*q));
                }
                h.send(conn, line.as_bytes());
            }
            Op::Flush { conn } => h.send(conn, b"FLUSH"),
            Op::Info { conn } => h.send(conn, b"INFO"),
            Op::End { conn } => h.send(conn, b"END"),
            Op::AdvanceClock(step) => h.advance(step),
            Op::Disconnect { conn } => {
                h.disconnect(conn);
                h.check_invariants();
            }
            Op::Raw { conn, mut line } => {
                line.truncate(512);
                line.retain(|&b| b != b'\n');
                h.send(conn, &line);
            }
        }
    }
}

fuzz_target!(|input: Input| run(input));
