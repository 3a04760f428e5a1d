//! The JSON arguments of commands, decoded once from the borrowed request line.
//!
//! A job's strings are borrowed from the line unless they hold JSON escapes (`Cow`: a PUSHB of
//! 100 jobs allocated 400 small strings only to copy them into the packed jobs; glibc's slow
//! path for those was a sixth of the time). Other commands' strings are owned. `args` and
//! `custom` stay borrowed as raw
//! JSON text (`&RawValue`): werk keeps them exactly as the client wrote them, minus whitespace
//! (decision A5 in PROTOCOL.md §17). `null` is accepted wherever a field is optional and means
//! "absent"; unknown fields are ignored, as the Go server does.

use crate::core::BACKTRACE_LINES_MAX;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// A job as a client sends it in PUSH or PUSHB (PROTOCOL.md §4.1).
#[derive(Debug, Deserialize)]
pub struct JobInput<'a> {
    /// Job id, chosen by the client.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub jid: Option<Cow<'a, str>>,
    /// Handler name.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub jobtype: Option<Cow<'a, str>>,
    /// Queue name; `default` when absent or empty.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub queue: Option<Cow<'a, str>>,
    /// Raw JSON array of arguments.
    #[serde(borrow)]
    pub args: Option<&'a RawValue>,
    /// Retry policy: 25 when absent.
    pub retry: Option<i64>,
    /// Reservation length in seconds.
    pub reserve_for: Option<i64>,
    /// RFC 3339 time at which the job should run.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub at: Option<Cow<'a, str>>,
    /// Creation time; set by the server when absent.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub created_at: Option<Cow<'a, str>>,
    /// Overwritten by the server at enqueue; decoded only to check its type.
    #[serde(borrow, default, deserialize_with = "opt_cow_str")]
    pub enqueued_at: Option<Cow<'a, str>>,
    /// Number of backtrace lines the client should report.
    pub backtrace: Option<i64>,
    /// Raw JSON object of extra data.
    #[serde(borrow)]
    pub custom: Option<&'a RawValue>,
    /// A failure record, kept as is when a client sends one.
    pub failure: Option<FailureInput>,
}

/// An optional string, borrowed from the input unless it holds escapes ([`Str`]; `null` is
/// `None`). serde's own `#[serde(borrow)]` borrows a `Cow<str>` but not an `Option<Cow<str>>`:
/// that one always allocated.
fn opt_cow_str<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'a, str>>, D::Error> {
    Ok(Option::<Str<'a>>::deserialize(d)?.map(|Str(s)| s))
}

/// The `failure` object inside a job (PROTOCOL.md §4.3).
#[derive(Debug, Deserialize)]
pub struct FailureInput {
    /// 0 on the first failure.
    pub retry_count: Option<i64>,
    /// Retries left.
    pub remaining: Option<i64>,
    /// Time of the first failure.
    pub failed_at: Option<String>,
    /// Time of the next retry.
    pub next_at: Option<String>,
    /// Latest error message.
    pub message: Option<String>,
    /// Latest error type.
    pub errtype: Option<String>,
    /// Latest backtrace (its first [`BACKTRACE_LINES_MAX`] lines).
    #[serde(default, deserialize_with = "backtrace_lines")]
    pub backtrace: Option<Vec<String>>,
}

/// The argument of FAIL (PROTOCOL.md §3.5).
#[derive(Debug, Deserialize)]
pub struct FailInput {
    /// The failed job.
    pub jid: Option<String>,
    /// Error class.
    pub errtype: Option<String>,
    /// Error message.
    pub message: Option<String>,
    /// Backtrace lines (the first [`BACKTRACE_LINES_MAX`]).
    #[serde(default, deserialize_with = "backtrace_lines")]
    pub backtrace: Option<Vec<String>>,
}

/// The argument of BEAT (PROTOCOL.md §3.6).
#[derive(Debug, Deserialize)]
pub struct BeatInput {
    /// Worker process id.
    pub wid: Option<String>,
    /// The state the process reports for itself.
    pub current_state: Option<String>,
    /// Resident memory in KB.
    pub rss_kb: Option<i64>,
}

/// The argument of HELLO (PROTOCOL.md §2.3).
#[derive(Debug, Deserialize)]
pub struct HelloInput {
    /// Protocol version; the Go server stores it as an unsigned byte.
    pub v: Option<u8>,
    /// Password hash, when HI asked for one.
    pub pwdhash: Option<String>,
    /// Worker process id; empty or absent for producers.
    pub wid: Option<String>,
    /// Host name, shown in the Web UI.
    pub hostname: Option<String>,
    /// Process id, shown in the Web UI.
    pub pid: Option<i64>,
    /// Labels, shown in the Web UI.
    pub labels: Option<Vec<String>>,
    /// Ignored by the server.
    pub username: Option<String>,
}

/// The argument of MUTATE (PROTOCOL.md §3.11).
#[derive(Debug, Deserialize)]
pub struct MutateInput {
    /// kill, discard, requeue or clear.
    #[serde(default)]
    pub cmd: Option<String>,
    /// retries, scheduled or dead.
    #[serde(default)]
    pub target: Option<String>,
    /// Which entries the operation applies to; absent means all.
    #[serde(default)]
    pub filter: Option<FilterInput>,
}

/// A MUTATE filter.
#[derive(Debug, Default, Deserialize)]
pub struct FilterInput {
    /// Exact job type.
    pub jobtype: Option<String>,
    /// Job ids; when non-empty, the other fields are ignored.
    pub jids: Option<Vec<String>>,
    /// A Redis glob over the stored JSON text.
    pub regexp: Option<String>,
}

/// A backtrace: an array of strings (or `null`), of which only the first
/// [`BACKTRACE_LINES_MAX`] are kept, as werk stores no more. The others are checked to be
/// strings and skipped without being copied: a 16 MiB line of `""` elements decoded into a
/// `Vec<String>` made werk allocate 150 MB for one FAIL.
fn backtrace_lines<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    struct Lines;
    impl<'de> Visitor<'de> for Lines {
        type Value = Option<Vec<String>>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an array of strings")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut lines = Vec::new();
            while lines.len() < BACKTRACE_LINES_MAX {
                match seq.next_element::<String>()? {
                    Some(line) => lines.push(line),
                    None => return Ok(Some(lines)),
                }
            }
            while seq.next_element::<SkippedStr>()?.is_some() {}
            Ok(Some(lines))
        }
    }
    d.deserialize_option(Lines)
}

/// A JSON string, checked and dropped without a copy.
struct SkippedStr;

impl<'de> Deserialize<'de> for SkippedStr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = SkippedStr;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<SkippedStr, E> {
                Ok(SkippedStr)
            }
        }
        d.deserialize_str(V)
    }
}

/// The argument of ACK: a JSON object whose values are all strings, with a `jid`.
#[derive(Debug)]
pub struct AckInput<'a> {
    /// The acknowledged job.
    pub jid: Cow<'a, str>,
}

/// A JSON string that borrows from the input when it has no escapes.
struct Str<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_owned()))
            }
        }
        d.deserialize_str(V).map(Str)
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for AckInput<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AckInput<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings with a jid")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut jid = None;
                while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
                    let Str(value) = map.next_value::<Str<'de>>()?;
                    if key == "jid" {
                        jid = Some(value);
                    }
                }
                jid.map(|jid| AckInput { jid })
                    .ok_or_else(|| de::Error::missing_field("jid"))
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_borrows_and_checks_value_types() {
        let a: AckInput<'_> = serde_json::from_str(r#"{"jid":"abcdefgh","x":"y"}"#).unwrap();
        assert!(matches!(a.jid, Cow::Borrowed("abcdefgh")));
        let a: AckInput<'_> = serde_json::from_str(r#"{"jid":"a\"b"}"#).unwrap();
        assert_eq!(a.jid, "a\"b");
        assert!(serde_json::from_str::<AckInput<'_>>(r#"{"jid":1}"#).is_err());
        assert!(serde_json::from_str::<AckInput<'_>>(r#"{"jid":"a","n":1}"#).is_err());
        assert!(serde_json::from_str::<AckInput<'_>>(r#"{"x":"a"}"#).is_err());
        assert!(serde_json::from_str::<AckInput<'_>>(r#"["jid"]"#).is_err());
    }

    #[test]
    fn job_strings_borrow_unless_escaped() {
        let job = |json: &'static str| serde_json::from_str::<JobInput<'static>>(json);
        let j = job(r#"{"jid":"abcdefgh","queue":"q\"x","at":null}"#).unwrap();
        assert!(matches!(j.jid, Some(Cow::Borrowed("abcdefgh"))));
        assert!(matches!(j.queue.as_deref(), Some("q\"x")));
        assert!(matches!(j.queue, Some(Cow::Owned(_))));
        assert!(j.at.is_none() && j.jobtype.is_none());
        let e = job(r#"{"jid":12345678}"#).unwrap_err().to_string();
        assert!(e.contains("expected a string"), "{e}");
    }

    #[test]
    fn backtraces_keep_their_first_lines_and_check_the_rest() {
        let lines = |n: usize| {
            (0..n)
                .map(|i| format!("\"l{i}\""))
                .collect::<Vec<_>>()
                .join(",")
        };
        let fail = |json: &str| serde_json::from_str::<FailInput>(json).map(|f| f.backtrace);
        let kept = fail(&format!(r#"{{"jid":"j","backtrace":[{}]}}"#, lines(60)))
            .unwrap()
            .unwrap();
        assert_eq!(kept.len(), BACKTRACE_LINES_MAX);
        assert_eq!(kept.last().map(String::as_str), Some("l49"));
        let all = fail(&format!(r#"{{"jid":"j","backtrace":[{}]}}"#, lines(50))).unwrap();
        assert_eq!(all.map(|v| v.len()), Some(50));
        assert_eq!(fail(r#"{"jid":"j","backtrace":null}"#).unwrap(), None);
        assert_eq!(fail(r#"{"jid":"j"}"#).unwrap(), None);
        assert_eq!(fail(r#"{"jid":"j","backtrace":[]}"#).unwrap(), Some(vec![]));
        // Still strict about types, before and after the cut.
        assert!(fail(r#"{"jid":"j","backtrace":"x"}"#).is_err());
        assert!(fail(r#"{"jid":"j","backtrace":[1]}"#).is_err());
        assert!(fail(&format!(r#"{{"jid":"j","backtrace":[{},1]}}"#, lines(60))).is_err());
        let text = format!(r#"{{"failure":{{"backtrace":[{}]}}}}"#, lines(70));
        let job: JobInput<'_> = serde_json::from_str(&text).unwrap();
        assert_eq!(job.failure.unwrap().backtrace.unwrap().len(), 50);
    }

    #[test]
    fn hello_types_are_strict() {
        assert!(serde_json::from_str::<HelloInput>(r#"{"v":2,"pid":12}"#).is_ok());
        assert!(serde_json::from_str::<HelloInput>(r#"{"pid":"12"}"#).is_err());
        assert!(serde_json::from_str::<HelloInput>(r#"{"pid":12.0}"#).is_err());
        assert!(serde_json::from_str::<HelloInput>(r#"{"v":300}"#).is_err());
        assert!(serde_json::from_str::<HelloInput>(r#"{"v":-1}"#).is_err());
        let h: HelloInput =
            serde_json::from_str(r#"{"wid":null,"labels":null,"username":null}"#).unwrap();
        assert!(h.wid.is_none() && h.labels.is_none());
    }
}
