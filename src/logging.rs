//! Log lines on standard error: Faktory's one-line text format, or one JSON object per line.
//!
//! Text: `I 2024-05-01T12:00:00.123Z message`: level letter (`E W I D T`), UTC time with
//! milliseconds, message, as Faktory writes them. JSON (`--log-format json`):
//! `{"time":"2024-05-01T12:00:00.123Z","level":"info","target":"werk::net","message":"..."}`.
//!
//! The level can change at run time (SIGHUP): the logger itself lets everything through and
//! the `log` crate's global maximum ([`log::set_max_level`]) does the filtering, so changing it
//! is one atomic store. `WERK_LOG` (env_logger directives per module) is the exception: when it
//! is set it filters inside the logger, and a reload cannot change it.

use crate::clock::{Clock, SystemClock};
use crate::timestamp::Timestamp;
use std::io::Write;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `I <time> message`, as Faktory.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// The name used by `--log-format` and `[werk] log_format`.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

/// `2024-05-01T12:00:00.123Z`: UTC, always three fraction digits (Faktory's log time format).
pub fn log_time(t: Timestamp) -> String {
    let whole = Timestamp::from_secs(t.as_secs()).to_rfc3339();
    let millis = t.0.rem_euclid(1_000_000_000) / 1_000_000;
    format!("{}.{millis:03}Z", whole.trim_end_matches('Z'))
}

/// One log line, without its newline.
pub fn format_line(
    format: LogFormat,
    level: log::Level,
    target: &str,
    time: Timestamp,
    message: &str,
) -> String {
    match format {
        LogFormat::Text => {
            let letter = match level {
                log::Level::Error => 'E',
                log::Level::Warn => 'W',
                log::Level::Info => 'I',
                log::Level::Debug => 'D',
                log::Level::Trace => 'T',
            };
            format!("{letter} {} {message}", log_time(time))
        }
        LogFormat::Json => {
            // Fields in a fixed order, time first; serde_json escapes the strings.
            let text = |s: &str| serde_json::Value::from(s).to_string();
            format!(
                r#"{{"time":"{}","level":"{}","target":{},"message":{}}}"#,
                log_time(time),
                level.as_str().to_ascii_lowercase(),
                text(target),
                text(message)
            )
        }
    }
}

/// Installs the logger. `level` is the global maximum (changed later by
/// [`log::set_max_level`]); `modules`, when set (`WERK_LOG`), adds env_logger's per-module
/// directives on top of `level`, inside the logger.
pub fn init(level: log::LevelFilter, format: LogFormat, modules: Option<&str>) {
    let clock = SystemClock::new();
    let mut builder = env_logger::Builder::new();
    match modules {
        Some(directives) => builder.filter_level(level).parse_filters(directives),
        None => builder.filter_level(log::LevelFilter::Trace),
    };
    builder.format(move |buf, record| {
        let line = format_line(
            format,
            record.level(),
            record.target(),
            clock.now().wall,
            &record.args().to_string(),
        );
        writeln!(buf, "{line}")
    });
    builder.init();
    if modules.is_none() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_are_faktory_like() {
        let t = Timestamp(1_714_564_800_123_456_789);
        assert_eq!(
            format_line(LogFormat::Text, log::Level::Info, "werk", t, "hello"),
            "I 2024-05-01T12:00:00.123Z hello"
        );
        assert_eq!(
            format_line(LogFormat::Text, log::Level::Warn, "werk", Timestamp(0), "x"),
            "W 1970-01-01T00:00:00.000Z x"
        );
        assert_eq!(log_time(Timestamp(5_000_000)), "1970-01-01T00:00:00.005Z");
    }

    #[test]
    fn json_lines_parse_and_escape() {
        let t = Timestamp(1_714_564_800_000_000_000);
        let msg = "quote \" backslash \\ newline \n tab \t é";
        let line = format_line(LogFormat::Json, log::Level::Error, "werk::net", t, msg);
        assert!(!line.contains('\n'), "{line}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["time"], "2024-05-01T12:00:00.000Z");
        assert_eq!(v["level"], "error");
        assert_eq!(v["target"], "werk::net");
        assert_eq!(v["message"], msg);
        assert!(line.starts_with(r#"{"time":"2024-05-01T12:00:00.000Z","level":"error","#));
    }
}
