//! The effective config as one log line (secrets masked), and what a SIGHUP reload changes.
//!
//! A reload builds a whole new [`Config`] the way start did, then compares it with the running
//! one setting by setting. Settings marked reloadable in [`super::SETTINGS`] (the passwords,
//! the log level) are applied; any other difference is reported as needing a restart and left
//! as it is. Secrets are compared by value but only ever shown as `***` or `off`.

use super::{Config, Key, Kind, SETTINGS};

/// One setting, ready to show.
#[derive(Clone, Debug)]
pub struct Setting {
    /// Its name (`bind`, `sync`, `password`, ...).
    pub name: &'static str,
    /// The value as logged: secrets are `***` or `off`.
    pub shown: String,
    /// The value compared on reload; for secrets the secret itself, never shown.
    value: String,
    /// Which setting, for the ones a flag or a file sets.
    key: Option<Key>,
    secret: bool,
    reloadable: bool,
}

/// What a reload did, for the log.
#[derive(Debug, Default)]
pub struct Reload {
    /// One line per changed setting, applied or not; empty when nothing changed.
    pub changes: Vec<String>,
    /// The new log level, when it changed and was applied.
    pub log_level: Option<log::LevelFilter>,
}

impl Config {
    /// Every setting with its value, in a fixed order.
    pub fn settings(&self) -> Vec<Setting> {
        let plain = |name, shown: String| Setting {
            name,
            value: shown.clone(),
            shown,
            key: None,
            secret: false,
            reloadable: false,
        };
        let mut all = vec![
            plain("environment", self.environment.as_str().to_owned()),
            plain("config_dir", self.config_dir.display().to_string()),
            plain("data_dir", self.data_dir.display().to_string()),
        ];
        for spec in SETTINGS {
            let value = self.value_of(spec.key);
            let secret = spec.kind == Kind::Secret;
            let shown = match (&value, secret) {
                (None, _) => "off".to_owned(),
                (Some(_), true) => "***".to_owned(),
                (Some(v), false) => v.clone(),
            };
            all.push(Setting {
                name: spec.name,
                shown,
                value: value.unwrap_or_default(),
                key: Some(spec.key),
                secret,
                reloadable: spec.reloadable,
            });
        }
        all
    }

    /// A setting's value as text; `None` for "off" (no password, no Web UI).
    fn value_of(&self, key: Key) -> Option<String> {
        Some(match key {
            Key::Bind => self.bind.to_string(),
            Key::WebBind => self.web_bind?.to_string(),
            Key::Password => self.password.clone()?,
            Key::WebPassword => self.web_password.clone()?,
            Key::LogLevel => self.log_level.as_str().to_ascii_lowercase(),
            Key::LogFormat => self.log_format.as_str().to_owned(),
            Key::Sync => self.sync.as_str().to_owned(),
            Key::LineBytesMax => self.line_bytes_max.to_string(),
            Key::ConnectionsMax => self.connections_max.to_string(),
            Key::DeadMax => self.core.dead_max.to_string(),
            Key::CompactBytesMin => self.compact_bytes_min.to_string(),
            Key::SyncInlineUs => self.sync_inline_us.to_string(),
            Key::SyncGather => self.sync_gather.to_string(),
            Key::JournalIo => if self.journal_direct {
                "direct"
            } else {
                "buffered"
            }
            .to_owned(),
            Key::ShutdownTimeoutMs => self.shutdown_timeout_ms.to_string(),
            Key::WebConnectionsMax => self.web_connections_max.to_string(),
            Key::WebTimeoutMs => self.web_request_timeout_ms.to_string(),
            Key::PushbJobsMax => self.pushb_jobs_max.to_string(),
            Key::SocketsMax => self.sockets_max().to_string(),
            Key::HelloTimeoutMs => self.hello_timeout_ms.to_string(),
            Key::AuthFailuresMax => self.auth_backoff.failures_max.to_string(),
            Key::AuthBlockSecs => (self.auth_backoff.block_ms / 1000).to_string(),
        })
    }

    /// The effective config on one line: `name=value`, with `(source)` after each value that
    /// is not the default. Secrets are masked.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for s in self.settings() {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(s.name);
            out.push('=');
            out.push_str(&s.shown);
            if let Some(source) = self.sources.get(s.name) {
                out.push_str(&format!(" ({source})"));
            }
        }
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| {
                f.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into())
            })
            .collect();
        out.push_str(&format!(
            " conf.d=[{}] web_ui_password={}",
            files.join(","),
            match (&self.web_password, &self.password) {
                (Some(_), _) => "web_password",
                (None, Some(_)) => "password",
                (None, None) => "off",
            }
        ));
        out
    }

    /// Applies the reloadable settings of `new` (read again on SIGHUP) and reports every
    /// difference. The running config keeps everything else.
    pub fn reload(&mut self, new: Config) -> Reload {
        let mut out = Reload::default();
        for (old, now) in self.settings().into_iter().zip(new.settings()) {
            if old.value == now.value {
                continue;
            }
            let change = if old.secret {
                match (old.shown.as_str(), now.shown.as_str()) {
                    ("off", _) => "now set".to_owned(),
                    (_, "off") => "removed".to_owned(),
                    _ => "changed".to_owned(),
                }
            } else {
                format!("{} -> {}", old.shown, now.shown)
            };
            let applied = match old.key {
                Some(Key::LogLevel) if self.log_filter.is_some() => {
                    out.changes.push(format!(
                        "{}: {change} in the config, not applied: WERK_LOG is set",
                        old.name
                    ));
                    continue;
                }
                Some(key) if old.reloadable => self.take(key, &new),
                _ => false,
            };
            if applied {
                out.changes.push(format!("{}: {change}", old.name));
                if old.key == Some(Key::LogLevel) {
                    out.log_level = Some(self.log_level);
                }
            } else {
                out.changes.push(format!(
                    "{}: {change} in the config, not applied: takes a restart",
                    old.name
                ));
            }
        }
        self.files = new.files;
        self.warnings = new.warnings;
        out
    }

    /// Copies one reloadable setting (and its source) from `new`; false for the others.
    fn take(&mut self, key: Key, new: &Config) -> bool {
        match key {
            Key::Password => self.password = new.password.clone(),
            Key::WebPassword => self.web_password = new.web_password.clone(),
            Key::LogLevel => self.log_level = new.log_level,
            _ => return false,
        }
        let name = SETTINGS.iter().find(|s| s.key == key).map(|s| s.name);
        if let Some(name) = name {
            match new.sources.get(name) {
                Some(source) => self.sources.insert(name, source.clone()),
                None => self.sources.remove(name),
            };
        }
        true
    }
}
