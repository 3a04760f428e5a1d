//! `conf.d/*.toml` in the config directory: every file, in name order, checked key by key.
//!
//! Faktory concatenates its files into one TOML document, so a key repeated in two files is a
//! TOML error there; werk reads each file on its own and a later file's key overrides an
//! earlier one's (a merge, key by key). Each value is checked against its row of
//! [`super::SETTINGS`] as it is read, so an error names the file it is in. Unknown tables and
//! keys are warnings naming the file: Faktory Enterprise sections (`[[cron]]`, `[throttles]`,
//! ...) are ignored with a note saying so, and a werk key in the wrong table gets a hint.

use super::{ConfigError, Kind, Spec, SETTINGS};
use std::path::{Path, PathBuf};

/// The tables werk reads.
const TABLES: &[&str] = &["faktory", "web", "werk"];
/// Faktory Enterprise sections (PROTOCOL.md §9.4), which werk does not implement.
const ENTERPRISE: &[&str] = &["cron", "throttles", "queues", "statsd", "redis"];

/// What the files say.
#[derive(Debug, Default)]
pub(super) struct Found {
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Every known key's value, in the order read (a later one overrides).
    pub values: Vec<Value>,
    /// Unknown or ignored tables and keys, each naming its file.
    pub warnings: Vec<String>,
}

/// One key's value, as text for [`super::set`].
#[derive(Debug)]
pub(super) struct Value {
    pub spec: &'static Spec,
    pub text: String,
    pub file: PathBuf,
}

/// Reads `<dir>/conf.d/*.toml` in name order. A missing `conf.d` is no files; an unreadable
/// one, or an unreadable or invalid file, is an error naming it.
pub(super) fn read_conf_d(dir: &Path) -> Result<Found, ConfigError> {
    let conf_d = dir.join("conf.d");
    let entries = match std::fs::read_dir(&conf_d) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::default()),
        Err(e) => {
            return Err(ConfigError(format!(
                "cannot read the config directory {}: {e}",
                conf_d.display()
            )))
        }
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| {
            ConfigError(format!(
                "cannot read the config directory {}: {e}",
                conf_d.display()
            ))
        })?;
        let path = entry.path();
        if path.extension().is_some_and(|x| x == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    let mut found = Found::default();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError(format!("{}: cannot read: {e}", path.display())))?;
        parse_file(&path, &text, &mut found)?;
    }
    Ok(found)
}

/// Checks one file's text and adds its values and warnings to `found`.
pub(super) fn parse_file(path: &Path, text: &str, found: &mut Found) -> Result<(), ConfigError> {
    let name = path.display();
    let doc: toml::Table = text
        .parse()
        .map_err(|e| ConfigError(format!("{name}: not valid TOML: {}", one_line(text, &e))))?;
    found.files.push(path.to_path_buf());
    for (table, value) in &doc {
        if !TABLES.contains(&table.as_str()) {
            found
                .warnings
                .push(unknown_top(&name.to_string(), table, value));
            continue;
        }
        let Some(keys) = value.as_table() else {
            return Err(ConfigError(format!(
                "{name}: {table} must be a table ([{table}]), not a {}",
                value.type_str()
            )));
        };
        for (key, value) in keys {
            let Some(spec) = SETTINGS
                .iter()
                .find(|s| s.toml == Some((table.as_str(), key.as_str())))
            else {
                found.warnings.push(format!(
                    "{name}: unknown key [{table}] {key} (ignored){}",
                    hint(key)
                ));
                continue;
            };
            let text = match (spec.kind, value) {
                (Kind::Text | Kind::Secret, toml::Value::String(s)) => s.clone(),
                (Kind::Number, toml::Value::Integer(n)) => n.to_string(),
                (kind, other) => {
                    return Err(ConfigError(format!(
                        "{name}: [{table}] {key}: expected {}, found a {}",
                        match kind {
                            Kind::Number => "a whole number",
                            Kind::Text | Kind::Secret => "a string",
                        },
                        other.type_str()
                    )))
                }
            };
            found.values.push(Value {
                spec,
                text,
                file: path.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The warning for a top-level table or key werk does not read.
fn unknown_top(file: &str, name: &str, value: &toml::Value) -> String {
    if ENTERPRISE.contains(&name) {
        return format!(
            "{file}: [{name}] is a Faktory Enterprise section, which werk does not implement \
             (ignored)"
        );
    }
    match value {
        toml::Value::Table(_) => format!("{file}: unknown table [{name}] (ignored)"),
        toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
            format!("{file}: unknown table [[{name}]] (ignored)")
        }
        _ => format!(
            "{file}: unknown key {name} outside any table (ignored){}",
            hint(name)
        ),
    }
}

/// `; did you mean [werk] sync?` when a known key has this name in some table.
fn hint(key: &str) -> String {
    let places: Vec<String> = SETTINGS
        .iter()
        .filter_map(|s| s.toml)
        .filter(|(_, k)| *k == key)
        .map(|(t, k)| format!("[{t}] {k}"))
        .collect();
    if places.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", places.join(" or "))
    }
}

/// toml's own message spans several lines (a snippet with a caret); this is one line:
/// where, then what.
fn one_line(text: &str, e: &toml::de::Error) -> String {
    let what = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {what}")
        }
        None => what,
    }
}
