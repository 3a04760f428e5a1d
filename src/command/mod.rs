//! Request lines to typed commands.
//!
//! [`Command::parse`] turns one request line (borrowed from the read buffer by [`line`]) into a
//! [`Command`], decoding its argument once. Verbs are matched exactly as Faktory spells them
//! (case-sensitive; `QUEUE` subcommands are the exception). Every way a line can be wrong is a
//! [`CommandError`] whose [`Display`](std::fmt::Display) is Faktory's reply text, in one place.
//! This module knows nothing about job state.

pub mod args;
pub mod line;

pub use args::{AckInput, BeatInput, FailInput, FilterInput, HelloInput, JobInput, MutateInput};

use serde::de::{self, DeserializeSeed, IgnoredAny, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// Most jobs one PUSHB may carry, by default (`--pushb-jobs-max`). Faktory has no limit, but a
/// batch is decoded whole and applied in one loop turn, so its size is both memory and latency
/// for everyone else: each job is a ~400-byte decoded struct before it is validated (a 16 MiB
/// line of `{}` elements made werk allocate 2 GB before this limit), and 100,000 tiny jobs take
/// one turn of 1.2 s in a debug build, 0.2 s in release (tests/abuse.rs). 10,000 is ten times
/// the batch size Faktory recommends (1,000) and keeps one PUSHB's turn near 20 ms in release.
pub const PUSHB_JOBS_MAX_DEFAULT: usize = 10_000;

/// Limits applied while a line is decoded, before anything is allocated per element.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// Most jobs in one PUSHB; one more and the whole batch is refused, nothing pushed.
    pub pushb_jobs_max: usize,
}

impl Default for ParseLimits {
    fn default() -> Self {
        ParseLimits {
            pushb_jobs_max: PUSHB_JOBS_MAX_DEFAULT,
        }
    }
}

/// One parsed command.
#[derive(Debug)]
pub enum Command<'a> {
    /// `PUSH {job}`
    Push(Box<JobInput<'a>>),
    /// `PUSHB [jobs]`
    Pushb(Vec<JobInput<'a>>),
    /// `FETCH q1 q2 ...`
    Fetch(FetchQueues<'a>),
    /// `ACK {"jid":...}`
    Ack(AckInput<'a>),
    /// `FAIL {failure}`
    Fail(FailInput),
    /// `BEAT {"wid":...}`
    Beat(BeatInput),
    /// `INFO`
    Info,
    /// `FLUSH`
    Flush,
    /// `END`
    End,
    /// `MUTATE {operation}`
    Mutate(Mutation),
    /// `QUEUE SUB names...`
    Queue(QueueCommand<'a>),
}

/// The queue list of a FETCH, kept as the borrowed text and split on demand.
#[derive(Clone, Copy, Debug)]
pub struct FetchQueues<'a>(&'a str);

impl<'a> FetchQueues<'a> {
    /// The names in the client's order. Split on single spaces, as Faktory does, so `a  b` holds
    /// an empty name (harmless: the empty queue never has jobs).
    pub fn names(&self) -> impl Iterator<Item = &'a str> + Clone {
        self.0.split(' ')
    }
}

/// Which queues a QUEUE subcommand names.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueNames<'a> {
    /// `*`: every known queue.
    All,
    /// The listed names.
    List(Vec<&'a str>),
}

/// A QUEUE subcommand.
#[derive(Debug, PartialEq, Eq)]
pub enum QueueCommand<'a> {
    /// Mark queues paused.
    Pause(QueueNames<'a>),
    /// Remove the paused mark.
    Resume(QueueNames<'a>),
    /// Delete queues and their jobs.
    Remove(QueueNames<'a>),
    /// Seconds since the oldest job of each queue was enqueued.
    Latency(Vec<&'a str>),
}

/// A MUTATE operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutateOp {
    /// Move matching entries to the dead set.
    Kill,
    /// Delete matching entries.
    Discard,
    /// Push matching entries back onto their queues.
    Requeue,
    /// Empty the set.
    Clear,
}

/// The set a MUTATE applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutateTarget {
    /// The retry set.
    Retries,
    /// The scheduled set.
    Scheduled,
    /// The dead set.
    Dead,
}

/// A decoded MUTATE.
#[derive(Debug)]
pub struct Mutation {
    /// What to do.
    pub op: MutateOp,
    /// Where.
    pub target: MutateTarget,
    /// To which entries; `None` means every entry.
    pub filter: Option<FilterInput>,
}

/// Why a request line is not a valid command. `Display` gives the reply text without `ERR `.
#[derive(Debug, PartialEq, Eq)]
pub enum CommandError<'a> {
    /// An unknown verb (echoed as sent).
    Unknown(&'a str),
    /// A known verb whose argument shape makes the Go server fault (e.g. `ACK` alone).
    Internal,
    /// PUSH/PUSHB JSON that does not decode.
    InvalidJson(String),
    /// `ACK` argument that is not an object of strings with a jid.
    InvalidAck(&'a str),
    /// `FAIL` argument that does not decode.
    InvalidFail(&'a str),
    /// `FAIL` without a jid.
    MissingJid,
    /// `BEAT` argument that does not decode.
    InvalidBeat(&'a str),
    /// `FETCH` with no queue names.
    FetchNoQueues,
    /// `MUTATE` line that is not exactly verb and one JSON document.
    MutateFormat,
    /// `MUTATE` JSON that does not decode (no prefix, as Faktory).
    MutateJson(String),
    /// `MUTATE` with an unknown cmd.
    MutateUnknownOp,
    /// `MUTATE` with an unknown target.
    MutateTarget,
    /// An unknown `QUEUE` subcommand (uppercased).
    QueueSubcommand(String),
    /// `QUEUE LATENCY *`.
    LatencyWildcard,
    /// `BATCH ...`
    Batch,
    /// `TRACK ...`
    Track,
    /// The line is not UTF-8.
    NotUtf8,
    /// A PUSHB with more jobs than [`ParseLimits::pushb_jobs_max`] (the limit).
    PushbTooMany(usize),
}

impl fmt::Display for CommandError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Unknown(verb) => write!(f, "unknown command {verb}"),
            CommandError::Internal => f.write_str("internal error"),
            CommandError::InvalidJson(detail) => write!(f, "invalid JSON: {detail}"),
            CommandError::InvalidAck(text) => write!(f, "invalid ACK {text}"),
            CommandError::InvalidFail(text) => write!(f, "invalid FAIL {text}"),
            CommandError::MissingJid => f.write_str("missing JID"),
            CommandError::InvalidBeat(text) => write!(f, "invalid BEAT {text}"),
            CommandError::FetchNoQueues => f.write_str("must call fetch with at least one queue"),
            CommandError::MutateFormat => f.write_str("invalid format"),
            CommandError::MutateJson(detail) => f.write_str(detail),
            CommandError::MutateUnknownOp => f.write_str("unknown mutate operation"),
            CommandError::MutateTarget => f.write_str("invalid target for mutation command"),
            CommandError::QueueSubcommand(sub) => write!(f, "no such QUEUE subcommand: {sub}"),
            CommandError::LatencyWildcard => {
                f.write_str("QUEUE LATENCY does not support wildcards")
            }
            CommandError::Batch => {
                f.write_str("batch subsystem is only available in Faktory Enterprise")
            }
            CommandError::Track => {
                f.write_str("tracking subsystem is only available in Faktory Enterprise")
            }
            CommandError::NotUtf8 => f.write_str("invalid command: the line is not valid UTF-8"),
            CommandError::PushbTooMany(max) => {
                write!(f, "too many jobs in PUSHB: the limit is {max}")
            }
        }
    }
}

impl std::error::Error for CommandError<'_> {}

impl<'a> Command<'a> {
    /// True for the commands whose reply speaks of stored state (PUSH, PUSHB, FETCH, ACK,
    /// FAIL, FLUSH, MUTATE, QUEUE). Their reply must wait until every change made before it is
    /// durable, even when the command itself changes nothing: an ACK of a job another
    /// connection has just acknowledged says "+OK" about that other, maybe not yet durable,
    /// change.
    pub fn speaks_of_stored_state(&self) -> bool {
        !matches!(self, Command::Beat(_) | Command::Info | Command::End)
    }

    /// Parses one request line (terminator already removed) with the default [`ParseLimits`].
    pub fn parse(line: &'a [u8]) -> Result<Command<'a>, CommandError<'a>> {
        Command::parse_with(line, ParseLimits::default())
    }

    /// Parses one request line (terminator already removed).
    pub fn parse_with(
        line: &'a [u8],
        limits: ParseLimits,
    ) -> Result<Command<'a>, CommandError<'a>> {
        let line = std::str::from_utf8(line).map_err(|_| CommandError::NotUtf8)?;
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb, Some(arg)),
            None => (line, None),
        };
        // Verbs that need an argument fault in Go when it is missing (PROTOCOL.md §3).
        let required = || arg.ok_or(CommandError::Internal);
        match verb {
            "PUSH" => {
                let text = required()?;
                let job = serde_json::from_str(text)
                    .map_err(|e| CommandError::InvalidJson(e.to_string()))?;
                Ok(Command::Push(Box::new(job)))
            }
            "PUSHB" => parse_pushb(required()?, limits.pushb_jobs_max).map(Command::Pushb),
            "FETCH" => match arg {
                Some(names) if !names.is_empty() => Ok(Command::Fetch(FetchQueues(names))),
                _ => Err(CommandError::FetchNoQueues),
            },
            "ACK" => {
                let text = required()?;
                serde_json::from_str(text)
                    .map(Command::Ack)
                    .map_err(|_| CommandError::InvalidAck(text))
            }
            "FAIL" => {
                let text = required()?;
                let fail: FailInput =
                    serde_json::from_str(text).map_err(|_| CommandError::InvalidFail(text))?;
                if fail.jid.as_deref().unwrap_or_default().is_empty() {
                    return Err(CommandError::MissingJid);
                }
                Ok(Command::Fail(fail))
            }
            "BEAT" => {
                let text = required()?;
                serde_json::from_str(text)
                    .map(Command::Beat)
                    .map_err(|_| CommandError::InvalidBeat(text))
            }
            "INFO" => Ok(Command::Info),
            "FLUSH" => Ok(Command::Flush),
            "END" => Ok(Command::End),
            "MUTATE" => parse_mutate(arg),
            "QUEUE" => parse_queue(required()?),
            "BATCH" => Err(CommandError::Batch),
            "TRACK" => Err(CommandError::Track),
            _ => Err(CommandError::Unknown(verb)),
        }
    }
}

impl CommandError<'_> {
    /// True when the verb was known (Faktory counts those in `command_count`).
    pub fn known_verb(&self) -> bool {
        !matches!(self, CommandError::Unknown(_) | CommandError::NotUtf8)
    }
}

/// Decodes a PUSHB array, counting as it goes: the element after the `max`-th stops decoding,
/// so a huge batch costs at most `max` decoded jobs, never the whole array.
fn parse_pushb(text: &str, max: usize) -> Result<Vec<JobInput<'_>>, CommandError<'static>> {
    let over = Cell::new(false);
    let mut de = serde_json::Deserializer::from_str(text);
    let jobs = JobsSeed { max, over: &over }
        .deserialize(&mut de)
        .and_then(|jobs| de.end().map(|()| jobs));
    match jobs {
        Ok(jobs) => Ok(jobs),
        Err(_) if over.get() => Err(CommandError::PushbTooMany(max)),
        Err(e) => Err(CommandError::InvalidJson(e.to_string())),
    }
}

/// A sequence of at most `max` jobs; sets `over` when there is one more.
struct JobsSeed<'c> {
    max: usize,
    over: &'c Cell<bool>,
}

impl<'de, 'c> DeserializeSeed<'de> for JobsSeed<'c> {
    type Value = Vec<JobInput<'de>>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, 'c> Visitor<'de> for JobsSeed<'c> {
    type Value = Vec<JobInput<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of jobs")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        // Never trust the peer's size hint; grow as elements actually arrive.
        let mut jobs = Vec::new();
        while jobs.len() < self.max {
            match seq.next_element()? {
                Some(job) => jobs.push(job),
                None => return Ok(jobs),
            }
        }
        if seq.next_element::<IgnoredAny>()?.is_some() {
            self.over.set(true);
            return Err(de::Error::custom("too many jobs"));
        }
        Ok(jobs)
    }
}

/// MUTATE accepts the JSON with or without spaces (decision A8), but still needs an argument.
fn parse_mutate(arg: Option<&str>) -> Result<Command<'_>, CommandError<'_>> {
    let text = arg
        .filter(|t| !t.is_empty())
        .ok_or(CommandError::MutateFormat)?;
    let input: MutateInput =
        serde_json::from_str(text).map_err(|e| CommandError::MutateJson(e.to_string()))?;
    let op = match input.cmd.as_deref() {
        Some("kill") => MutateOp::Kill,
        Some("discard") => MutateOp::Discard,
        Some("requeue") => MutateOp::Requeue,
        Some("clear") => MutateOp::Clear,
        _ => return Err(CommandError::MutateUnknownOp),
    };
    let target = match input.target.as_deref() {
        Some("retries") => MutateTarget::Retries,
        Some("scheduled") => MutateTarget::Scheduled,
        Some("dead") => MutateTarget::Dead,
        _ => return Err(CommandError::MutateTarget),
    };
    Ok(Command::Mutate(Mutation {
        op,
        target,
        filter: input.filter,
    }))
}

fn queue_names(names: Vec<&str>) -> Result<QueueNames<'_>, CommandError<'static>> {
    match names.first() {
        None => Err(CommandError::Internal),
        Some(&"*") => Ok(QueueNames::All),
        Some(_) => Ok(QueueNames::List(names)),
    }
}

fn parse_queue(text: &str) -> Result<Command<'_>, CommandError<'_>> {
    let mut parts = text.split(' ');
    let sub = parts.next().unwrap_or_default();
    let names: Vec<&str> = parts.collect();
    let set = queue_names;
    let cmd = if sub.eq_ignore_ascii_case("PAUSE") {
        QueueCommand::Pause(set(names)?)
    } else if sub.eq_ignore_ascii_case("RESUME") {
        QueueCommand::Resume(set(names)?)
    } else if sub.eq_ignore_ascii_case("REMOVE") {
        QueueCommand::Remove(set(names)?)
    } else if sub.eq_ignore_ascii_case("LATENCY") {
        if names == ["*"] {
            return Err(CommandError::LatencyWildcard);
        }
        QueueCommand::Latency(names)
    } else {
        return Err(CommandError::QueueSubcommand(sub.to_ascii_uppercase()));
    };
    Ok(Command::Queue(cmd))
}

/// Parses the first line of a connection. `None` means "close silently" (PROTOCOL.md §2.3): the
/// line does not start with `HELLO {`, or its JSON does not decode into the expected types.
pub fn parse_hello(line: &[u8]) -> Option<HelloInput> {
    let json = line.strip_prefix(b"HELLO ")?;
    if json.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice(json).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(line: &str) -> String {
        match Command::parse(line.as_bytes()) {
            Ok(c) => panic!("{line:?} parsed as {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn error_texts_match_faktory() {
        let table = [
            ("push {}", "unknown command push"),
            ("HELLO {\"v\":2}", "unknown command HELLO"),
            ("PING", "unknown command PING"),
            ("", "unknown command "),
            ("ACK", "internal error"),
            ("PUSH", "internal error"),
            ("FAIL", "internal error"),
            ("BEAT", "internal error"),
            ("QUEUE", "internal error"),
            ("QUEUE PAUSE", "internal error"),
            ("ACK notjson", "invalid ACK notjson"),
            ("ACK {\"jid\":5}", "invalid ACK {\"jid\":5}"),
            ("FAIL {\"jid\":", "invalid FAIL {\"jid\":"),
            (
                "FAIL {\"jid\":\"x\",\"backtrace\":\"a\"}",
                "invalid FAIL {\"jid\":\"x\",\"backtrace\":\"a\"}",
            ),
            ("FAIL {\"message\":\"m\"}", "missing JID"),
            ("FAIL {\"jid\":\"\"}", "missing JID"),
            ("BEAT {\"wid\":1}", "invalid BEAT {\"wid\":1}"),
            ("FETCH", "must call fetch with at least one queue"),
            ("FETCH ", "must call fetch with at least one queue"),
            ("MUTATE", "invalid format"),
            (
                "MUTATE {\"cmd\":\"x\",\"target\":\"y\"}",
                "unknown mutate operation",
            ),
            (
                "MUTATE {\"cmd\":\"kill\",\"target\":\"working\"}",
                "invalid target for mutation command",
            ),
            ("QUEUE FOO x", "no such QUEUE subcommand: FOO"),
            (
                "QUEUE latency *",
                "QUEUE LATENCY does not support wildcards",
            ),
            (
                "BATCH NEW {}",
                "batch subsystem is only available in Faktory Enterprise",
            ),
            (
                "TRACK GET x",
                "tracking subsystem is only available in Faktory Enterprise",
            ),
        ];
        for (line, want) in table {
            assert_eq!(err(line), want, "line {line:?}");
        }
        assert!(err("PUSH {").starts_with("invalid JSON: "));
        assert!(err("PUSH {\"args\":\"x\",\"jid\":1}").starts_with("invalid JSON: "));
        assert!(err("PUSHB {}").starts_with("invalid JSON: "));
        assert!(err("PUSHB [1]").starts_with("invalid JSON: "));
        assert!(err("PUSHB [{}] x").starts_with("invalid JSON: "));
        assert_eq!(
            Command::parse(b"PUSH \xff").unwrap_err(),
            CommandError::NotUtf8
        );
    }

    #[test]
    fn parses_every_verb() {
        assert!(matches!(Command::parse(b"INFO extra"), Ok(Command::Info)));
        assert!(matches!(Command::parse(b"FLUSH"), Ok(Command::Flush)));
        assert!(matches!(Command::parse(b"END whatever"), Ok(Command::End)));
        match Command::parse(b"FETCH critical default  low") {
            Ok(Command::Fetch(q)) => {
                assert_eq!(
                    q.names().collect::<Vec<_>>(),
                    ["critical", "default", "", "low"]
                )
            }
            other => panic!("{other:?}"),
        }
        match Command::parse(br#"ACK {"jid":"abcdefgh"}"#) {
            Ok(Command::Ack(a)) => assert_eq!(a.jid, "abcdefgh"),
            other => panic!("{other:?}"),
        }
        match Command::parse(br#"PUSH {"jid":"abcdefgh", "args": [1, 2], "custom": null}"#) {
            Ok(Command::Push(j)) => {
                assert_eq!(j.args.map(|r| r.get()), Some("[1, 2]"));
                assert!(j.custom.is_none());
            }
            other => panic!("{other:?}"),
        }
        match Command::parse(br#"PUSHB [{"jid":"a"},{"jid":"b"}]"#) {
            Ok(Command::Pushb(v)) => assert_eq!(v.len(), 2),
            other => panic!("{other:?}"),
        }
        match Command::parse(
            br#"MUTATE {"cmd": "requeue", "target": "dead", "filter": {"jids": ["x"]}}"#,
        ) {
            Ok(Command::Mutate(m)) => {
                assert_eq!((m.op, m.target), (MutateOp::Requeue, MutateTarget::Dead));
                assert_eq!(m.filter.unwrap().jids.unwrap(), ["x"]);
            }
            other => panic!("{other:?}"),
        }
        fn q(l: &str) -> QueueCommand<'_> {
            match Command::parse(l.as_bytes()) {
                Ok(Command::Queue(q)) => q,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            q("QUEUE pause a b"),
            QueueCommand::Pause(QueueNames::List(vec!["a", "b"]))
        );
        assert_eq!(q("QUEUE Resume * x"), QueueCommand::Resume(QueueNames::All));
        assert_eq!(q("QUEUE REMOVE *"), QueueCommand::Remove(QueueNames::All));
        assert_eq!(q("QUEUE LATENCY"), QueueCommand::Latency(vec![]));
        assert_eq!(
            q("QUEUE LATENCY a *"),
            QueueCommand::Latency(vec!["a", "*"])
        );
    }

    #[test]
    fn pushb_job_count_limit_at_n_and_n_plus_one() {
        let limits = ParseLimits { pushb_jobs_max: 3 };
        let batch = |n: usize| format!("PUSHB [{}]", vec![r#"{"jid":"x"}"#; n].join(","));
        for n in 0..=3 {
            match Command::parse_with(batch(n).as_bytes(), limits) {
                Ok(Command::Pushb(v)) => assert_eq!(v.len(), n),
                other => panic!("{n}: {other:?}"),
            }
        }
        let four = batch(4);
        let e = Command::parse_with(four.as_bytes(), limits).unwrap_err();
        assert_eq!(e, CommandError::PushbTooMany(3));
        assert_eq!(e.to_string(), "too many jobs in PUSHB: the limit is 3");
        // The count is checked as elements arrive: what follows the extra one is not read.
        let e = Command::parse_with(b"PUSHB [{},{},{},{},garbage", limits).unwrap_err();
        assert_eq!(e, CommandError::PushbTooMany(3));
        // A syntax error before the limit is still a JSON error.
        let e = Command::parse_with(b"PUSHB [{},x]", limits).unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON: "), "{e}");
        assert_eq!(
            ParseLimits::default().pushb_jobs_max,
            PUSHB_JOBS_MAX_DEFAULT
        );
    }

    #[test]
    fn hello_gate() {
        assert!(parse_hello(br#"HELLO {"v":2}"#).is_some());
        assert!(parse_hello(br#"HELLO {}"#).is_some());
        assert!(parse_hello(b"HELLO").is_none());
        assert!(parse_hello(b"HELLO  {}").is_none());
        assert!(parse_hello(b"INFO").is_none());
        assert!(parse_hello(br#"HELLO {"v":2"#).is_none());
        assert!(parse_hello(br#"HELLO {"pid":"1"}"#).is_none());
        assert!(parse_hello(b"\x16\x03\x01\x02\x00").is_none());
    }
}
