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

/// A job held by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Job {
    /// Job id (at least 8 bytes).
    pub jid: Box<str>,
    /// Handler name.
    pub jobtype: Box<str>,
    /// Queue name (validated).
    pub queue: Box<str>,
    /// Compact raw JSON array.
    pub args: Box<str>,
    /// Compact raw JSON object, `None` when absent, null or `{}`.
    pub custom: Option<Box<str>>,
    /// Retry policy.
    pub retry: i64,
    /// Requested reservation in seconds, 0 when unset.
    pub reserve_for: i64,
    /// Backtrace lines the client should send, 0 when unset.
    pub backtrace: i64,
    /// The `at` text as the client sent it (kept in the payload after enqueue).
    pub at: Option<Box<str>>,
    /// Creation time text (the client's, unvalidated, or the server's).
    pub created_at: Box<str>,
    /// Set each time the job enters a queue.
    pub enqueued_at: Option<Box<str>>,
    /// Failure record, once the job has failed.
    pub failure: Option<Box<Failure>>,
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

/// A validated job and, when it should wait, the time it is due.
#[derive(Debug)]
pub struct NewJob {
    /// The job, ready to store.
    pub job: Job,
    /// `Some(at)` when `at` is in the future: the job goes to the scheduled set.
    pub scheduled_for: Option<Timestamp>,
}

impl Job {
    /// Validates a pushed job in Faktory's order (jid, jobtype, args, reserve_for, at, queue) and
    /// builds its stored form. `now` decides whether `at` is in the future and fills `created_at`.
    pub fn from_input(input: &JobInput<'_>, now: Timestamp) -> Result<NewJob, JobError> {
        let jid = input.jid.as_deref().unwrap_or_default();
        if jid.len() < JID_MIN_BYTES {
            return Err(JobError::Jid);
        }
        let jobtype = input.jobtype.as_deref().unwrap_or_default();
        if jobtype.is_empty() {
            return Err(JobError::Jobtype);
        }
        let args = input.args.map(|r| r.get()).ok_or(JobError::Args)?;
        if !args.starts_with('[') {
            return Err(JobError::InvalidJson("args must be a JSON array"));
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
        if !valid_queue_name(queue) {
            return Err(JobError::Queue(queue.to_owned()));
        }
        let custom = match input.custom.map(|r| r.get()) {
            None => None,
            Some(raw) if raw.starts_with('{') => {
                let compact = minify(raw);
                (compact != "{}").then(|| compact.into_boxed_str())
            }
            Some(_) => return Err(JobError::InvalidJson("custom must be a JSON object")),
        };
        let created_at = match input.created_at.as_deref() {
            None | Some("") => now.to_rfc3339().into_boxed_str(),
            Some(c) => c.into(),
        };
        let job = Job {
            jid: jid.into(),
            jobtype: jobtype.into(),
            queue: queue.into(),
            args: minify(args).into_boxed_str(),
            custom,
            retry: input.retry.unwrap_or(RETRY_DEFAULT),
            reserve_for,
            backtrace: input.backtrace.unwrap_or(0),
            at: (!at_text.is_empty()).then(|| at_text.into()),
            created_at,
            enqueued_at: None,
            failure: input
                .failure
                .as_ref()
                .map(|f| Box::new(Failure::from_input(f))),
        };
        Ok(NewJob { job, scheduled_for })
    }

    /// Rebuilds a job from its canonical JSON (a journal record). Unlike PUSH, `enqueued_at` is
    /// kept and `at` decides nothing: the record says where the job is.
    pub fn from_stored(json: &[u8], now: Timestamp) -> Result<Job, JobError> {
        let text = std::str::from_utf8(json).map_err(|_| JobError::InvalidJson("not UTF-8"))?;
        let input: JobInput<'_> =
            serde_json::from_str(text).map_err(|_| JobError::InvalidJson("stored job"))?;
        let mut job = Job::from_input(&input, now)?.job;
        job.enqueued_at = input
            .enqueued_at
            .as_deref()
            .filter(|e| !e.is_empty())
            .map(Into::into);
        Ok(job)
    }

    /// The reservation length to apply at FETCH: 0 means the default, then clamped to
    /// [60, 86400] seconds.
    pub fn reservation_secs(&self) -> i64 {
        if self.reserve_for == 0 {
            RESERVE_FOR_DEFAULT_SECS
        } else {
            self.reserve_for
                .clamp(RESERVE_FOR_MIN_SECS, RESERVE_FOR_MAX_SECS)
        }
    }

    /// Appends the canonical compact JSON form.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"retry\":");
        out.extend_from_slice(self.retry.to_string().as_bytes());
        if let Some(f) = &self.failure {
            out.extend_from_slice(b",\"failure\":");
            f.write_json(out);
        }
        if let Some(c) = &self.custom {
            out.extend_from_slice(b",\"custom\":");
            out.extend_from_slice(c.as_bytes());
        }
        field_str(out, "jid", &self.jid);
        field_str(out, "queue", &self.queue);
        field_str(out, "jobtype", &self.jobtype);
        if !self.created_at.is_empty() {
            field_str(out, "created_at", &self.created_at);
        }
        if let Some(e) = &self.enqueued_at {
            field_str(out, "enqueued_at", e);
        }
        if let Some(a) = &self.at {
            field_str(out, "at", a);
        }
        out.extend_from_slice(b",\"args\":");
        out.extend_from_slice(self.args.as_bytes());
        if self.reserve_for != 0 {
            out.extend_from_slice(b",\"reserve_for\":");
            out.extend_from_slice(self.reserve_for.to_string().as_bytes());
        }
        if self.backtrace != 0 {
            out.extend_from_slice(b",\"backtrace\":");
            out.extend_from_slice(self.backtrace.to_string().as_bytes());
        }
        out.push(b'}');
    }

    /// The canonical compact JSON form.
    pub fn to_json(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(160 + self.args.len());
        self.write_json(&mut v);
        v
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
            r#"{"retry":25,"jid":"a1b2c3d4e5f6","queue":"default","jobtype":"Send","created_at":"2026-07-01T12:00:00.5Z","args":[1,"x"]}"#
        );
        assert_eq!(
            stored(
                r#"{"backtrace":3,"reserve_for":90,"args":[{"a b":1.50}],"at":"","queue":"q.1",
                "custom":{"k": [1, 2]},"retry":0,"jobtype":"T<>","jid":"12345678","created_at":"x"}"#
            ),
            r#"{"retry":0,"custom":{"k":[1,2]},"jid":"12345678","queue":"q.1","jobtype":"T\u003c\u003e","created_at":"x","args":[{"a b":1.50}],"reserve_for":90,"backtrace":3}"#
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
        assert_eq!(j.job.at.as_deref(), Some("2026-07-01T12:00:00Z"));
    }

    #[test]
    fn reservation_bounds() {
        let mut j = push(r#"{"jid":"12345678","jobtype":"T","args":[]}"#)
            .unwrap()
            .job;
        for (asked, got) in [
            (0, 1800),
            (1, 60),
            (-5, 60),
            (59, 60),
            (61, 61),
            (86_400, 86_400),
        ] {
            j.reserve_for = asked;
            assert_eq!(j.reservation_secs(), got);
        }
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
