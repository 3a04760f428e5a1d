//! Jobs: validation with Faktory's messages, and the canonical stored form.
//!
//! A [`Job`] keeps the fields the server acts on, parsed, plus `args` and `custom` as compact raw
//! JSON text (the client's bytes minus insignificant whitespace, so numbers keep their exact
//! text). [`Job::write_json`] writes Faktory's re-written form (PROTOCOL.md §4.2): fixed field
//! order, empty optional fields left out, unknown fields dropped, Go-style string escaping. That
//! text is what FETCH returns and what MUTATE globs match against.

use crate::command::args::{FailureInput, JobInput};
use crate::timestamp::Timestamp;
use std::fmt;

/// Retry policy when the job does not say.
pub const RETRY_DEFAULT: i64 = 25;
/// Reservation length when the job does not say.
pub const RESERVE_FOR_DEFAULT_SECS: i64 = 1800;
/// Shortest reservation.
pub const RESERVE_FOR_MIN_SECS: i64 = 60;
/// Longest reservation (one day); PUSH refuses more.
pub const RESERVE_FOR_MAX_SECS: i64 = 86_400;
/// Shortest jid, in bytes.
pub const JID_MIN_BYTES: usize = 8;
/// Longest jobtype, in bytes (Faktory has no limit). A jobtype names a handler in the client's
/// code; 256 bytes is far beyond any class or function name, and keeps one job from carrying a
/// megabyte "name" into every page, glob match and INFO-like listing.
pub const JOBTYPE_BYTES_MAX: usize = 256;
/// Longest queue name, in bytes (Faktory has no limit). Queue names are map keys, shown in INFO,
/// the Web UI and metrics labels, and echoed in errors; 128 bytes is ample for any naming scheme.
pub const QUEUE_NAME_BYTES_MAX: usize = 128;
/// Deepest nesting of a pushed job's JSON, counting the job object as level 1, so `args` (and
/// `custom`) may nest 126 levels inside it. serde_json refuses the 128th level ("recursion limit
/// exceeded"), so its typed fields already stop here; `args` and `custom` are kept as raw text,
/// which serde_json skips without counting, so werk counts them itself. Every job werk accepts
/// can thus be decoded by a client that uses serde_json's defaults (the `faktory` crate).
pub const JSON_DEPTH_MAX: usize = 127;

/// A job held by the server, packed into one allocation (about 60 bytes plus its strings for a
/// typical job; see [`Job::heap_bytes`]).
///
/// Layout of `packed` (private; built only by [`Job::pack`]):
/// ```text
/// flags:u8
/// [retry reserve_for backtrace]      zigzag LEB128 varints, when POLICY (any not the default)
/// len(jid) len(jobtype) len(queue) len(args) [len(custom)] [len(at)] [len(created_at text)]
///     [len(failure JSON)]            LEB128 varints, the bracketed ones when their flag is set
/// [created_at:i64]                   when the text round-trips through `Timestamp` (no flag)
/// [enqueued_at - created_at]         zigzag LEB128 varint of nanoseconds, when ENQUEUED
///                                    (from 0 when created_at is text)
/// jid jobtype queue args [custom] [at] [created_at text] [failure JSON]
/// ```
/// A job is enqueued within milliseconds of its creation, so `enqueued_at` usually takes 1–5
/// bytes, and most jobs leave retry, reserve_for and backtrace at their defaults: together 10
/// bytes fewer than fixed fields for the typical job, which puts it in glibc's 64-byte chunk
/// instead of the 80-byte one (16 MB less for a million queued jobs).
/// Changes repack the job: a new `enqueued_at` (a job re-entering a queue) and the failure
/// (FAIL); neither is on the PUSH/FETCH/ACK path.
#[derive(Clone, PartialEq, Eq)]
pub struct Job {
    packed: Box<[u8]>,
}

const F_CUSTOM: u8 = 1;
const F_AT: u8 = 2;
const F_CREATED_TEXT: u8 = 4;
const F_ENQUEUED: u8 = 8;
const F_FAILURE: u8 = 16;
const F_POLICY: u8 = 32;

/// The fields of a job, borrowed, as [`Job::pack`] takes them and [`Job::fields`] gives them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'a> {
    /// Job id.
    pub jid: &'a str,
    /// Handler name.
    pub jobtype: &'a str,
    /// Queue name (validated).
    pub queue: &'a str,
    /// Compact raw JSON array.
    pub args: &'a str,
    /// Compact raw JSON object, `None` when absent, null or `{}`.
    pub custom: Option<&'a str>,
    /// Retry policy.
    pub retry: i64,
    /// Requested reservation in seconds, 0 when unset.
    pub reserve_for: i64,
    /// Backtrace lines the client should send, 0 when unset.
    pub backtrace: i64,
    /// The `at` text as the client sent it.
    pub at: Option<&'a str>,
    /// Creation time text (the client's, unvalidated, or the server's).
    pub created_at: Created<'a>,
    /// When the job last entered a queue.
    pub enqueued_at: Option<Timestamp>,
    /// The failure object's canonical JSON, once the job has failed.
    pub failure: Option<&'a str>,
}

/// `created_at`: a time when the text is exactly what [`Timestamp::to_rfc3339`] writes for it
/// (8 bytes instead of about 30), the text otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Created<'a> {
    /// A time that formats back to the original text.
    Time(Timestamp),
    /// Any other text.
    Text(&'a str),
}

impl Default for Created<'_> {
    fn default() -> Self {
        Created::Text("")
    }
}

impl<'a> Created<'a> {
    fn from_text(text: &'a str) -> Created<'a> {
        match Timestamp::parse_rfc3339(text) {
            Ok(t) if t.to_rfc3339() == text => Created::Time(t),
            _ => Created::Text(text),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes [`put_varint`] writes for `v`.
fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A reader over a packed job. The bytes are always written by [`Job::pack`]; reads are
/// bounds-checked anyway and yield empty values rather than panic.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let Some((&b, rest)) = self.0.split_first() else {
                return v;
            };
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                break;
            }
        }
        v
    }
    fn i64(&mut self) -> i64 {
        let (head, rest) = self.0.split_at(self.0.len().min(8));
        self.0 = rest;
        head.try_into().map_or(0, i64::from_le_bytes)
    }
    fn bytes(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(self.0.len().min(len));
        self.0 = rest;
        head
    }
}

/// A packed job's fields as raw bytes (no UTF-8 check: [`Job::write_json`] copies them).
struct Raw<'a> {
    retry: i64,
    reserve_for: i64,
    backtrace: i64,
    jid: &'a [u8],
    jobtype: &'a [u8],
    queue: &'a [u8],
    args: &'a [u8],
    custom: Option<&'a [u8]>,
    at: Option<&'a [u8]>,
    created_text: Option<&'a [u8]>,
    created_time: Option<Timestamp>,
    enqueued_at: Option<Timestamp>,
    failure: Option<&'a [u8]>,
}

/// Text that was a `&str` when packed.
fn text(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or_default()
}

/// The `failure` object (PROTOCOL.md §4.3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Failure {
    /// 0 on the first failure, +1 on each later one.
    pub retry_count: i64,
    /// Retries left.
    pub remaining: i64,
    /// Time of the first failure.
    pub failed_at: Box<str>,
    /// When the job will next be enqueued.
    pub next_at: Option<Box<str>>,
    /// Latest message.
    pub message: Box<str>,
    /// Latest error type.
    pub errtype: Box<str>,
    /// Latest backtrace.
    pub backtrace: Vec<Box<str>>,
}

/// Why a job was refused. `Display` is Faktory's text (without `ERR `).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobError {
    /// A field has the wrong JSON type.
    InvalidJson(&'static str),
    /// jid missing or shorter than 8 bytes.
    Jid,
    /// jobtype missing or empty.
    Jobtype,
    /// args missing or null.
    Args,
    /// reserve_for above one day.
    ReserveFor,
    /// `at` is not RFC 3339.
    At {
        /// The text sent.
        value: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The queue name has characters outside `[a-zA-Z0-9._-]`.
    Queue(String),
    /// jobtype over [`JOBTYPE_BYTES_MAX`].
    JobtypeTooLong,
    /// queue name over [`QUEUE_NAME_BYTES_MAX`].
    QueueTooLong,
    /// `args` or `custom` nested deeper than [`JSON_DEPTH_MAX`] (counting the job).
    TooDeep,
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::InvalidJson(detail) => write!(f, "invalid JSON: {detail}"),
            JobError::Jid => f.write_str("jobs must have a reasonable jid parameter"),
            JobError::Jobtype => f.write_str("jobs must have a jobtype parameter"),
            JobError::Args => f.write_str("jobs must have an args parameter"),
            JobError::ReserveFor => f.write_str("jobs cannot be reserved for more than one day"),
            JobError::At { value, detail } => {
                f.write_str("invalid timestamp for 'at': ")?;
                write_json_str_to_fmt(f, value)?;
                write!(f, ": {detail}")
            }
            JobError::Queue(q) => {
                f.write_str("cannot get ")?;
                write_json_str_to_fmt(f, q)?;
                f.write_str(r" queue: queue names must match \A[a-zA-Z0-9._-]+\z")
            }
            JobError::JobtypeTooLong => write!(
                f,
                "jobs cannot have a jobtype longer than {JOBTYPE_BYTES_MAX} bytes"
            ),
            JobError::QueueTooLong => write!(
                f,
                "jobs cannot have a queue name longer than {QUEUE_NAME_BYTES_MAX} bytes"
            ),
            JobError::TooDeep => write!(
                f,
                "invalid JSON: nested deeper than {JSON_DEPTH_MAX} levels"
            ),
        }
    }
}

impl std::error::Error for JobError {}

fn write_json_str_to_fmt(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    let mut buf = Vec::with_capacity(s.len() + 2);
    write_json_str(&mut buf, s);
    f.write_str(&String::from_utf8_lossy(&buf))
}

/// True when `name` is a valid queue name (`\A[a-zA-Z0-9._-]+\z`).
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Which checks [`Job::build`] applies: a pushed job gets werk's limits on top of Faktory's
/// rules; a stored one (recovery) only what is needed to rebuild it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Check {
    Pushed,
    Stored,
}

/// A validated job and, when it should wait, the time it is due.
#[derive(Debug)]
pub struct NewJob {
    /// The job, ready to store.
    pub job: Job,
    /// `Some(at)` when `at` is in the future: the job goes to the scheduled set.
    pub scheduled_for: Option<Timestamp>,
}

impl Job {
    /// Packs `f` into a job.
    pub fn pack<'a>(f: &Fields<'a>) -> Job {
        let mut flags = 0;
        // The strings in their stored order (at most 8), on the stack: no allocation but the job.
        let mut tail: [&'a str; 8] = [""; 8];
        let mut n = 0;
        let mut add = |s: &'a str| {
            tail[n] = s;
            n += 1;
        };
        for s in [f.jid, f.jobtype, f.queue, f.args] {
            add(s);
        }
        for (flag, value) in [(F_CUSTOM, f.custom), (F_AT, f.at)] {
            if let Some(s) = value {
                flags |= flag;
                add(s);
            }
        }
        let created_time = match f.created_at {
            Created::Time(t) => Some(t),
            Created::Text(s) => {
                flags |= F_CREATED_TEXT;
                add(s);
                None
            }
        };
        if let Some(s) = f.failure {
            flags |= F_FAILURE;
            add(s);
        }
        let tail = &tail[..n];
        if f.enqueued_at.is_some() {
            flags |= F_ENQUEUED;
        }
        let policy = [f.retry, f.reserve_for, f.backtrace];
        if policy != [RETRY_DEFAULT, 0, 0] {
            flags |= F_POLICY;
        }
        let enqueued = f.enqueued_at.map(|e| {
            let base = created_time.map_or(0, |t| t.0);
            zigzag(e.0.wrapping_sub(base))
        });
        // The exact size: `into_boxed_slice` then keeps the allocation as it is (a shrinking
        // realloc would leave the job in a larger malloc chunk than it needs).
        let exact =
            1 + if flags & F_POLICY != 0 {
                policy.iter().map(|&v| varint_len(zigzag(v))).sum()
            } else {
                0
            } + tail
                .iter()
                .map(|s| varint_len(s.len() as u64))
                .sum::<usize>()
                + if created_time.is_some() { 8 } else { 0 }
                + enqueued.map_or(0, varint_len)
                + tail.iter().map(|s| s.len()).sum::<usize>();
        let mut out = Vec::with_capacity(exact);
        out.push(flags);
        if flags & F_POLICY != 0 {
            for v in policy {
                put_varint(&mut out, zigzag(v));
            }
        }
        for s in tail {
            put_varint(&mut out, s.len() as u64);
        }
        if let Some(t) = created_time {
            out.extend_from_slice(&t.0.to_le_bytes());
        }
        if let Some(e) = enqueued {
            put_varint(&mut out, e);
        }
        for s in tail {
            out.extend_from_slice(s.as_bytes());
        }
        debug_assert_eq!(out.len(), exact);
        Job {
            packed: out.into_boxed_slice(),
        }
    }

    fn raw(&self) -> Raw<'_> {
        let flags = self.packed.first().copied().unwrap_or(0);
        let mut c = Cursor(self.packed.get(1..).unwrap_or_default());
        let [retry, reserve_for, backtrace] = if flags & F_POLICY != 0 {
            [(); 3].map(|()| unzigzag(c.varint()))
        } else {
            [RETRY_DEFAULT, 0, 0]
        };
        let mut len = |on: bool| on.then(|| c.varint() as usize);
        let jid = len(true).unwrap_or(0);
        let jobtype = len(true).unwrap_or(0);
        let queue = len(true).unwrap_or(0);
        let args = len(true).unwrap_or(0);
        let custom = len(flags & F_CUSTOM != 0);
        let at = len(flags & F_AT != 0);
        let created_text = len(flags & F_CREATED_TEXT != 0);
        let failure = len(flags & F_FAILURE != 0);
        let created_time = created_text.is_none().then(|| Timestamp(c.i64()));
        let enqueued_at = (flags & F_ENQUEUED != 0).then(|| {
            let base = created_time.map_or(0, |t| t.0);
            Timestamp(base.wrapping_add(unzigzag(c.varint())))
        });
        Raw {
            retry,
            reserve_for,
            backtrace,
            jid: c.bytes(jid),
            jobtype: c.bytes(jobtype),
            queue: c.bytes(queue),
            args: c.bytes(args),
            custom: custom.map(|n| c.bytes(n)),
            at: at.map(|n| c.bytes(n)),
            created_text: created_text.map(|n| c.bytes(n)),
            created_time,
            enqueued_at,
            failure: failure.map(|n| c.bytes(n)),
        }
    }

    /// Every field, borrowed.
    pub fn fields(&self) -> Fields<'_> {
        let r = self.raw();
        Fields {
            jid: text(r.jid),
            jobtype: text(r.jobtype),
            queue: text(r.queue),
            args: text(r.args),
            custom: r.custom.map(text),
            retry: r.retry,
            reserve_for: r.reserve_for,
            backtrace: r.backtrace,
            at: r.at.map(text),
            created_at: match (r.created_text, r.created_time) {
                (Some(t), _) => Created::Text(text(t)),
                (None, Some(t)) => Created::Time(t),
                (None, None) => Created::Text(""),
            },
            enqueued_at: r.enqueued_at,
            failure: r.failure.map(text),
        }
    }

    /// Job id.
    pub fn jid(&self) -> &str {
        text(self.raw().jid)
    }

    /// Handler name.
    pub fn jobtype(&self) -> &str {
        text(self.raw().jobtype)
    }

    /// Queue name.
    pub fn queue(&self) -> &str {
        text(self.raw().queue)
    }

    /// Retry policy.
    pub fn retry(&self) -> i64 {
        self.raw().retry
    }

    /// The `at` text, when the job had one.
    pub fn at(&self) -> Option<&str> {
        self.raw().at.map(text)
    }

    /// The `created_at` text.
    pub fn created_at(&self) -> String {
        match self.fields().created_at {
            Created::Time(t) => t.to_rfc3339(),
            Created::Text(s) => s.to_owned(),
        }
    }

    /// When the job last entered a queue.
    pub fn enqueued_at(&self) -> Option<Timestamp> {
        self.raw().enqueued_at
    }

    /// Stamps `enqueued_at` (repacks the job: a job re-entering a queue, off the PUSH path).
    pub fn set_enqueued_at(&mut self, t: Timestamp) {
        let job = Job::pack(&Fields {
            enqueued_at: Some(t),
            ..self.fields()
        });
        *self = job;
    }

    /// The failure record, decoded, once the job has failed.
    pub fn failure(&self) -> Option<Failure> {
        let text = self.fields().failure?;
        serde_json::from_str::<FailureInput>(text)
            .ok()
            .map(|f| Failure::from_input(&f))
    }

    /// Replaces the failure record (repacks the job).
    pub fn set_failure(&mut self, failure: &Failure) {
        let mut text = Vec::new();
        failure.write_json(&mut text);
        let text = String::from_utf8(text).unwrap_or_default();
        let fields = Fields {
            failure: Some(&text),
            ..self.fields()
        };
        *self = Job::pack(&fields);
    }

    /// Bytes this job holds on the heap (its one allocation).
    pub fn heap_bytes(&self) -> usize {
        self.packed.len()
    }

    /// Validates a pushed job in Faktory's order (jid, jobtype, args, reserve_for, at, queue) and
    /// builds its stored form. `now` decides whether `at` is in the future and fills `created_at`.
    ///
    /// werk's own limits apply here too, in that order: the jobtype's length
    /// ([`JOBTYPE_BYTES_MAX`]) after its presence, the nesting of `args` and `custom`
    /// ([`JSON_DEPTH_MAX`]) after their type, the queue name's length
    /// ([`QUEUE_NAME_BYTES_MAX`]) before its characters.
    pub fn from_input(input: &JobInput<'_>, now: Timestamp) -> Result<NewJob, JobError> {
        Job::build(input, now, Check::Pushed)
    }

    fn build(input: &JobInput<'_>, now: Timestamp, check: Check) -> Result<NewJob, JobError> {
        let limits = check == Check::Pushed;
        let jid = input.jid.as_deref().unwrap_or_default();
        // A NUL in a jid (sent as `\u0000`) is refused too: no client generates one, and
        // journal records that end with a jid must not end in a long run of zero bytes, which
        // recovery would take for space the writer preallocated (`journal::files::data_end`).
        if jid.len() < JID_MIN_BYTES || (limits && jid.bytes().any(|b| b == 0)) {
            return Err(JobError::Jid);
        }
        let jobtype = input.jobtype.as_deref().unwrap_or_default();
        if jobtype.is_empty() {
            return Err(JobError::Jobtype);
        }
        if limits && jobtype.len() > JOBTYPE_BYTES_MAX {
            return Err(JobError::JobtypeTooLong);
        }
        let args = input.args.map(|r| r.get()).ok_or(JobError::Args)?;
        if !args.starts_with('[') {
            return Err(JobError::InvalidJson("args must be a JSON array"));
        }
        if limits && json_depth(args) >= JSON_DEPTH_MAX {
            return Err(JobError::TooDeep);
        }
        let reserve_for = input.reserve_for.unwrap_or(0);
        if reserve_for > RESERVE_FOR_MAX_SECS {
            return Err(JobError::ReserveFor);
        }
        let at_text = input.at.as_deref().unwrap_or_default();
        let mut scheduled_for = None;
        if !at_text.is_empty() {
            let at = Timestamp::parse_rfc3339(at_text).map_err(|e| JobError::At {
                value: at_text.to_owned(),
                detail: e.to_string(),
            })?;
            if at > now {
                scheduled_for = Some(at);
            }
        }
        let queue = match input.queue.as_deref() {
            None | Some("") => "default",
            Some(q) => q,
        };
        if limits && queue.len() > QUEUE_NAME_BYTES_MAX {
            return Err(JobError::QueueTooLong);
        }
        if !valid_queue_name(queue) {
            return Err(JobError::Queue(queue.to_owned()));
        }
        let custom = match input.custom.map(|r| r.get()) {
            None => None,
            Some(raw) if limits && raw.starts_with('{') && json_depth(raw) >= JSON_DEPTH_MAX => {
                return Err(JobError::TooDeep)
            }
            Some(raw) if raw.starts_with('{') => Some(minify(raw)).filter(|c| c != "{}"),
            Some(_) => return Err(JobError::InvalidJson("custom must be a JSON object")),
        };
        let created_at = match input.created_at.as_deref() {
            None | Some("") => Created::Time(now),
            Some(c) => Created::from_text(c),
        };
        let failure = input.failure.as_ref().map(|f| {
            let mut text = Vec::new();
            Failure::from_input(f).write_json(&mut text);
            String::from_utf8(text).unwrap_or_default()
        });
        let args = minify(args);
        let enqueued_at = match check {
            // A pushed job goes to its queue now (`Core::accept` enqueues it as it is), unless
            // it is scheduled.
            Check::Pushed => scheduled_for.is_none().then_some(now),
            // Always werk's own text, which round-trips through `Timestamp`.
            Check::Stored => match input.enqueued_at.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => Some(
                    Timestamp::parse_rfc3339(e)
                        .map_err(|_| JobError::InvalidJson("stored enqueued_at"))?,
                ),
                None => None,
            },
        };
        let job = Job::pack(&Fields {
            jid,
            jobtype,
            queue,
            args: &args,
            custom: custom.as_deref(),
            retry: input.retry.unwrap_or(RETRY_DEFAULT),
            reserve_for,
            backtrace: input.backtrace.unwrap_or(0),
            at: (!at_text.is_empty()).then_some(at_text),
            created_at,
            enqueued_at,
            failure: failure.as_deref(),
        });
        Ok(NewJob { job, scheduled_for })
    }

    /// Rebuilds a job from its canonical JSON (a journal record). Unlike PUSH, `enqueued_at` is
    /// kept and `at` decides nothing: the record says where the job is. werk's own size and
    /// depth limits are not applied: a journal written before a limit existed (or with a larger
    /// one) must still recover.
    pub fn from_stored(json: &[u8], now: Timestamp) -> Result<Job, JobError> {
        let text = std::str::from_utf8(json).map_err(|_| JobError::InvalidJson("not UTF-8"))?;
        let input: JobInput<'_> =
            serde_json::from_str(text).map_err(|_| JobError::InvalidJson("stored job"))?;
        Ok(Job::build(&input, now, Check::Stored)?.job)
    }

    /// The reservation length to apply at FETCH: 0 means the default, then clamped to
    /// [60, 86400] seconds.
    pub fn reservation_secs(&self) -> i64 {
        reservation_secs(self.raw().reserve_for)
    }

    /// Appends the canonical compact JSON form.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let f = self.raw();
        out.extend_from_slice(b"{\"retry\":");
        write_int(out, f.retry);
        if let Some(failure) = f.failure {
            out.extend_from_slice(b",\"failure\":");
            out.extend_from_slice(failure);
        }
        if let Some(c) = f.custom {
            out.extend_from_slice(b",\"custom\":");
            out.extend_from_slice(c);
        }
        field_bytes(out, "jid", f.jid);
        field_bytes(out, "queue", f.queue);
        field_bytes(out, "jobtype", f.jobtype);
        match (f.created_text, f.created_time) {
            (Some(b""), _) | (None, None) => {}
            (Some(t), _) => field_bytes(out, "created_at", t),
            (None, Some(t)) => field_time(out, "created_at", t),
        }
        if let Some(e) = f.enqueued_at {
            field_time(out, "enqueued_at", e);
        }
        if let Some(a) = f.at {
            field_bytes(out, "at", a);
        }
        out.extend_from_slice(b",\"args\":");
        out.extend_from_slice(f.args);
        if f.reserve_for != 0 {
            out.extend_from_slice(b",\"reserve_for\":");
            write_int(out, f.reserve_for);
        }
        if f.backtrace != 0 {
            out.extend_from_slice(b",\"backtrace\":");
            write_int(out, f.backtrace);
        }
        out.push(b'}');
    }

    /// The canonical compact JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(160 + self.packed.len());
        self.write_json(&mut v);
        v
    }
}

impl fmt::Debug for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.to_json()))
    }
}

/// The reservation length for a `reserve_for` value: 0 means the default, then clamped to
/// [60, 86400] seconds.
pub fn reservation_secs(reserve_for: i64) -> i64 {
    if reserve_for == 0 {
        RESERVE_FOR_DEFAULT_SECS
    } else {
        reserve_for.clamp(RESERVE_FOR_MIN_SECS, RESERVE_FOR_MAX_SECS)
    }
}

impl Failure {
    fn from_input(f: &FailureInput) -> Failure {
        Failure {
            retry_count: f.retry_count.unwrap_or(0),
            remaining: f.remaining.unwrap_or(0),
            failed_at: f.failed_at.as_deref().unwrap_or_default().into(),
            next_at: f
                .next_at
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(Into::into),
            message: f.message.as_deref().unwrap_or_default().into(),
            errtype: f.errtype.as_deref().unwrap_or_default().into(),
            backtrace: f
                .backtrace
                .iter()
                .flatten()
                .map(|s| s.as_str().into())
                .collect(),
        }
    }

    /// Appends the failure object in Faktory's field order.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"failed_at\":");
        write_json_str(out, &self.failed_at);
        if let Some(n) = &self.next_at {
            field_str(out, "next_at", n);
        }
        if !self.message.is_empty() {
            field_str(out, "message", &self.message);
        }
        if !self.errtype.is_empty() {
            field_str(out, "errtype", &self.errtype);
        }
        if !self.backtrace.is_empty() {
            out.extend_from_slice(b",\"backtrace\":[");
            for (i, line) in self.backtrace.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(out, line);
            }
            out.push(b']');
        }
        out.extend_from_slice(b",\"retry_count\":");
        out.extend_from_slice(self.retry_count.to_string().as_bytes());
        out.extend_from_slice(b",\"remaining\":");
        out.extend_from_slice(self.remaining.to_string().as_bytes());
        out.push(b'}');
    }
}

/// `,"name":` then `value` (text that was a `&str` when packed) as a JSON string.
fn field_bytes(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_bytes(out, value);
}

/// `,"name":"<RFC 3339>"` (timestamps need no escaping).
fn field_time(out: &mut Vec<u8>, name: &str, t: Timestamp) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":\"");
    t.write_rfc3339_bytes(out);
    out.push(b'"');
}

/// Appends an integer in decimal without the formatting machinery.
fn write_int(out: &mut Vec<u8>, v: i64) {
    if v < 0 {
        out.push(b'-');
    }
    crate::resp::write_decimal(out, v.unsigned_abs());
}

/// [`write_json_str`] for text held as bytes: copied as is when nothing in it needs an escape
/// (the usual case), else escaped character by character. 0xE2 starts U+2028 and U+2029.
fn write_json_bytes(out: &mut Vec<u8>, value: &[u8]) {
    let plain = value
        .iter()
        .all(|&b| b >= 0x20 && !matches!(b, b'"' | b'\\' | b'<' | b'>' | b'&' | 0xE2));
    if plain {
        out.push(b'"');
        out.extend_from_slice(value);
        out.push(b'"');
    } else {
        write_json_str(out, text(value));
    }
}

fn field_str(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
    write_json_str(out, value);
}

/// Writes `s` as a JSON string with Go's escaping: `"` `\` and control characters, plus `<`,
/// `>`, `&`, U+2028 and U+2029 as `\u` escapes.
pub fn write_json_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            '\r' => out.extend_from_slice(b"\\r"),
            '\t' => out.extend_from_slice(b"\\t"),
            '\u{2028}' => out.extend_from_slice(b"\\u2028"),
            '\u{2029}' => out.extend_from_slice(b"\\u2029"),
            c if (c as u32) < 0x20 || matches!(c, '<' | '>' | '&') => {
                let b = c as u32 as u8;
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
            c => {
                let mut tmp = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut tmp).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// The deepest nesting of arrays and objects in `json` (valid JSON, as serde_json checked it):
/// `[]` is 1, `[[1]]` is 2, a scalar 0. Brackets inside strings do not count.
pub fn json_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for &b in json.as_bytes() {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Removes insignificant whitespace from valid JSON text, leaving strings and numbers as written.
pub fn minify(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::parse_rfc3339("2026-07-01T12:00:00.5Z").unwrap()
    }

    fn push(json: &str) -> Result<NewJob, JobError> {
        let input: JobInput<'_> = serde_json::from_str(json).unwrap();
        Job::from_input(&input, now())
    }

    fn stored(json: &str) -> String {
        String::from_utf8(push(json).unwrap().job.to_json()).unwrap()
    }

    #[test]
    fn rewrites_to_faktory_form() {
        assert_eq!(
            stored(r#"{"jid":"a1b2c3d4e5f6","jobtype":"Send","args":[1, "x" ], "priority": 9}"#),
            r#"{"retry":25,"jid":"a1b2c3d4e5f6","queue":"default","jobtype":"Send","created_at":"2026-07-01T12:00:00.5Z","enqueued_at":"2026-07-01T12:00:00.5Z","args":[1,"x"]}"#,
            "a job pushed for now carries its enqueue time (the queue stamps the same)"
        );
        assert_eq!(
            stored(
                r#"{"backtrace":3,"reserve_for":90,"args":[{"a b":1.50}],"at":"","queue":"q.1",
                "custom":{"k": [1, 2]},"retry":0,"jobtype":"T<>","jid":"12345678","created_at":"x"}"#
            ),
            r#"{"retry":0,"custom":{"k":[1,2]},"jid":"12345678","queue":"q.1","jobtype":"T\u003c\u003e","created_at":"x","enqueued_at":"2026-07-01T12:00:00.5Z","args":[{"a b":1.50}],"reserve_for":90,"backtrace":3}"#
        );
        let s = stored(r#"{"jid":"12345678","jobtype":"T","args":[],"custom":{},"retry":null}"#);
        assert!(s.starts_with(r#"{"retry":25,"jid""#), "{s}");
    }

    #[test]
    fn validation_order_and_texts() {
        let table = [
            (
                r#"{"jobtype":"","args":null}"#,
                "jobs must have a reasonable jid parameter",
            ),
            (
                r#"{"jid":"1234567","jobtype":"T","args":[]}"#,
                "jobs must have a reasonable jid parameter",
            ),
            (
                r#"{"jid":"12345678\u0000","jobtype":"T","args":[]}"#,
                "jobs must have a reasonable jid parameter",
            ),
            (
                r#"{"jid":"12345678","args":[]}"#,
                "jobs must have a jobtype parameter",
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":null}"#,
                "jobs must have an args parameter",
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":"x"}"#,
                "invalid JSON: args must be a JSON array",
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":[],"reserve_for":86401}"#,
                "jobs cannot be reserved for more than one day",
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":[],"at":"soon"}"#,
                r#"invalid timestamp for 'at': "soon": bad year"#,
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":[],"queue":"a b"}"#,
                r#"cannot get "a b" queue: queue names must match \A[a-zA-Z0-9._-]+\z"#,
            ),
            (
                r#"{"jid":"12345678","jobtype":"T","args":[],"custom":[1]}"#,
                "invalid JSON: custom must be a JSON object",
            ),
        ];
        for (json, want) in table {
            assert_eq!(push(json).unwrap_err().to_string(), want, "{json}");
        }
    }

    /// werk's own limits, at N and N+1, in their place in the check order.
    #[test]
    fn limits_at_n_and_n_plus_one() {
        let job = |jobtype: &str, queue: &str, args: &str, custom: &str| {
            push(&format!(
                r#"{{"jid":"12345678","jobtype":"{jobtype}","queue":"{queue}","args":{args},"custom":{custom}}}"#
            ))
        };
        let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        let obj = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
        let ok = |r: Result<NewJob, JobError>| r.map(|_| ()).map_err(|e| e.to_string());
        let t = "t".repeat(JOBTYPE_BYTES_MAX);
        let q = "q".repeat(QUEUE_NAME_BYTES_MAX);
        let deep = JSON_DEPTH_MAX - 1; // inside the job object
        assert_eq!(ok(job(&t, &q, &nest(deep), &obj(deep))), Ok(()));
        let err = |r: Result<NewJob, JobError>| r.unwrap_err().to_string();
        assert_eq!(
            err(job(&format!("{t}t"), &q, "[]", "{}")),
            "jobs cannot have a jobtype longer than 256 bytes"
        );
        assert_eq!(
            err(job("T", &format!("{q}q"), "[]", "{}")),
            "jobs cannot have a queue name longer than 128 bytes"
        );
        assert_eq!(
            err(job("T", "q", &nest(deep + 1), "{}")),
            "invalid JSON: nested deeper than 127 levels"
        );
        assert_eq!(
            err(job("T", "q", "[]", &obj(deep + 1))),
            "invalid JSON: nested deeper than 127 levels"
        );
        // Brackets inside strings are text, not nesting.
        let text = format!(r#"["{}"]"#, "[{".repeat(500));
        assert_eq!(ok(job("T", "q", &text, "{}")), Ok(()));
        // Order: a missing jid is reported before a long jobtype (Faktory's order, then werk's),
        // a long queue name before its characters (no echo of a huge name).
        assert_eq!(
            err(push(&format!(r#"{{"jobtype":"{t}t","args":[]}}"#))),
            "jobs must have a reasonable jid parameter"
        );
        assert_eq!(
            err(job("T", &format!("{q} "), "[]", "{}")),
            "jobs cannot have a queue name longer than 128 bytes"
        );
    }

    /// Recovery rebuilds jobs stored before a limit existed: limits apply to PUSH only.
    #[test]
    fn stored_jobs_are_not_held_to_push_limits() {
        let long = "t".repeat(JOBTYPE_BYTES_MAX + 1);
        let deep = format!("{}{}", "[".repeat(300), "]".repeat(300));
        let json = format!(r#"{{"jid":"12345678","jobtype":"{long}","args":{deep}}}"#);
        let job = Job::from_stored(json.as_bytes(), now()).unwrap();
        assert_eq!(job.jobtype(), long);
    }

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        for (json, depth) in [
            ("1", 0),
            ("[]", 1),
            ("[[1],{\"a\":[2]}]", 3),
            (r#"["[[[", "\"[", {"]":"{"}]"#, 2),
            (r#"["\\", [1]]"#, 2),
        ] {
            assert_eq!(json_depth(json), depth, "{json}");
        }
    }

    #[test]
    fn future_at_is_scheduled_past_at_is_not() {
        let j = push(r#"{"jid":"12345678","jobtype":"T","args":[],"at":"2026-07-01T12:00:01Z"}"#)
            .unwrap();
        assert_eq!(
            j.scheduled_for.map(|t| t.to_rfc3339()).as_deref(),
            Some("2026-07-01T12:00:01Z")
        );
        let j = push(r#"{"jid":"12345678","jobtype":"T","args":[],"at":"2026-07-01T12:00:00Z"}"#)
            .unwrap();
        assert!(j.scheduled_for.is_none());
        assert_eq!(j.job.at(), Some("2026-07-01T12:00:00Z"));
    }

    #[test]
    fn reservation_bounds() {
        for (asked, got) in [
            (0, 1800),
            (1, 60),
            (-5, 60),
            (59, 60),
            (61, 61),
            (86_400, 86_400),
        ] {
            let j = push(&format!(
                r#"{{"jid":"12345678","jobtype":"T","args":[],"reserve_for":{asked}}}"#
            ))
            .unwrap()
            .job;
            assert_eq!(j.reservation_secs(), got, "{asked}");
        }
    }

    #[test]
    fn packing_round_trips_every_field_and_mutation() {
        let custom = r#"{"k":[1,2]}"#;
        let failure = r#"{"failed_at":"x","retry_count":0,"remaining":3}"#;
        let full = Fields {
            jid: "jid-ü-12345",
            jobtype: "Type",
            queue: "q.1",
            args: r#"[1,"two",{"3":4}]"#,
            custom: Some(custom),
            retry: -1,
            reserve_for: -3,
            backtrace: i64::MIN,
            at: Some("2030-01-01T00:00:00Z"),
            created_at: Created::Text("yesterday"),
            enqueued_at: Some(Timestamp(-7)),
            failure: Some(failure),
        };
        let minimal = Fields {
            jid: "12345678",
            jobtype: "T",
            queue: "default",
            args: "[]",
            created_at: Created::Time(now()),
            ..Fields::default()
        };
        // Default policy (no varints), and enqueue times before, at and long after creation.
        let typical = |enqueued: i64| Fields {
            retry: RETRY_DEFAULT,
            enqueued_at: Some(Timestamp(now().0.wrapping_add(enqueued))),
            ..minimal
        };
        let days = 3 * 86_400 * 1_000_000_000;
        for f in [
            full,
            minimal,
            typical(0),
            typical(-1),
            typical(days),
            typical(i64::MIN),
        ] {
            let j = Job::pack(&f);
            assert_eq!(format!("{:?}", j.fields()), format!("{f:?}"));
            let again = Job::from_stored(&j.to_json(), now()).unwrap();
            assert_eq!(again.to_json(), j.to_json());
        }
        let mut j = Job::pack(&minimal);
        assert_eq!(j.enqueued_at(), None);
        j.set_enqueued_at(now());
        assert_eq!(j.enqueued_at(), Some(now()));
        assert_eq!(j.jid(), "12345678");
        let f = Failure {
            retry_count: 2,
            remaining: 1,
            failed_at: "2026-07-01T12:00:00Z".into(),
            message: "m".into(),
            ..Failure::default()
        };
        j.set_failure(&f);
        assert_eq!(j.failure(), Some(f));
        assert_eq!(j.enqueued_at(), Some(now()), "kept across a repack");
    }

    #[test]
    fn a_typical_job_is_small() {
        let j = push(
            r#"{"jid":"bench000000000001","jobtype":"Load","args":[1,"string",3],"queue":"bench"}"#,
        )
        .unwrap()
        .job;
        // 17 + 4 + 5 + 14 bytes of text, 8 of created_at, 1 of enqueued_at (the same instant),
        // 1 of flags and 4 of lengths (retry, reserve_for and backtrace at their defaults): at
        // most 56, so glibc gives it a 64-byte chunk, not an 80-byte one.
        assert_eq!(j.heap_bytes(), 54);
        assert_eq!(std::mem::size_of::<Job>(), 16);
    }

    #[test]
    fn created_at_is_a_time_only_when_its_text_round_trips() {
        assert_eq!(
            Created::from_text("2026-07-01T12:00:00.5Z"),
            Created::Time(now())
        );
        assert_eq!(
            Created::from_text("2026-07-01T12:00:00.500Z"),
            Created::Text("2026-07-01T12:00:00.500Z")
        );
        assert_eq!(Created::from_text("x"), Created::Text("x"));
    }

    #[test]
    fn failure_form() {
        let f = Failure {
            retry_count: 1,
            remaining: 24,
            failed_at: "2026-07-01T12:00:00Z".into(),
            next_at: Some("2026-07-01T12:01:00Z".into()),
            message: "boom".into(),
            errtype: "E".into(),
            backtrace: vec![],
        };
        let mut v = Vec::new();
        f.write_json(&mut v);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#"{"failed_at":"2026-07-01T12:00:00Z","next_at":"2026-07-01T12:01:00Z","message":"boom","errtype":"E","retry_count":1,"remaining":24}"#
        );
    }

    #[test]
    fn minify_keeps_strings_and_numbers() {
        assert_eq!(
            minify(" [ 1.0 , \"a \\\" b\" ,\n{ \"x\" : 1e5 } ] "),
            "[1.0,\"a \\\" b\",{\"x\":1e5}]"
        );
        assert_eq!(minify(r#"["\\", " "]"#), r#"["\\"," "]"#);
    }

    #[test]
    fn go_escaping() {
        let mut v = Vec::new();
        write_json_str(&mut v, "a\"\\\n\u{1}<&>\u{2028}é");
        assert_eq!(
            String::from_utf8(v).unwrap(),
            r#""a\"\\\n\u0001\u003c\u0026\u003e\u2028é""#
        );
    }
}
