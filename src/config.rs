//! Flags, environment and `conf.d/*.toml` files to a validated [`Config`].
//!
//! Precedence, lowest first: built-in defaults; the config files; environment variables;
//! flags. So `[faktory] binding` applies when `-b` is not given, and `FAKTORY_PASSWORD` beats
//! `[faktory] password`, as in Faktory (PROTOCOL.md §9).
//!
//! Faktory's flags keep their meaning: `-b`, `-w`, `-d`, `-c`, `-e`, `-l`, `-v`, `-h`. werk's
//! own flags name its limits. Both `-x value` and `-x=value` work, with one or two dashes, as
//! with Go's flag package. Every setting that a flag or a config key can set is one row of
//! [`SETTINGS`] and is parsed by one function, so a flag and a key accept the same values and
//! refuse a bad one with the same words; an error names the flag, or the file and the key.
//!
//! The config directory (`-c`) holds `conf.d/*.toml` (read by [`file`]) and, outside
//! development, an optional `password` file: Faktory's `/etc/faktory` layout. The files are
//! read at start and again on SIGHUP ([`Config::reread`]); they are a few small local files,
//! read synchronously. [`report`] writes the effective config (secrets masked) and works out
//! what a reload changes.

mod file;
mod report;

pub use report::{Reload, Setting};

use crate::command::PUSHB_JOBS_MAX_DEFAULT;
use crate::core::CoreConfig;
use crate::journal::writer::{Faults, SyncPolicy};
use crate::logging::LogFormat;
use crate::net::backoff::BackoffConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

/// Faktory's three environments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    /// No password needed.
    Development,
    /// Password required unless skipped.
    Staging,
    /// Password required unless skipped.
    Production,
}

impl Environment {
    /// The name `-e` and `FAKTORY_ENV` use.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

/// Everything the server needs to start.
#[derive(Clone, Debug)]
pub struct Config {
    /// Protocol listener address.
    pub bind: SocketAddr,
    /// Web UI listener address; `None` turns the Web UI off (`-w off`, Faktory's `-w :0`).
    pub web_bind: Option<SocketAddr>,
    /// Most open Web UI connections; past it a new one gets `503` and is closed.
    pub web_connections_max: usize,
    /// Time a Web UI connection has, from accept, to send its request and read the response.
    pub web_request_timeout_ms: u64,
    /// Storage directory: the journal, snapshots and their lock.
    pub data_dir: PathBuf,
    /// Configuration directory: `conf.d/*.toml` and, outside development, `password`.
    pub config_dir: PathBuf,
    /// development, staging or production.
    pub environment: Environment,
    /// Log level (changed at run time by SIGHUP).
    pub log_level: log::LevelFilter,
    /// Text (Faktory-like) or JSON log lines.
    pub log_format: LogFormat,
    /// `WERK_LOG`: env_logger directives per module; when set, SIGHUP cannot change the level.
    pub log_filter: Option<String>,
    /// Password clients must prove, if any (changed at run time by SIGHUP).
    pub password: Option<String>,
    /// The Web UI's own password (`[web] password`); without it the Web UI uses `password`.
    pub web_password: Option<String>,
    /// Longest request line in bytes; a longer one gets `-ERR` and the connection closes.
    pub line_bytes_max: usize,
    /// Most identified connections (Faktory: 2000).
    pub connections_max: usize,
    /// Time from accept to a valid HELLO, in ms.
    pub hello_timeout_ms: u64,
    /// Pending output above which werk stops reading from a connection, in bytes.
    pub write_buffer_max: usize,
    /// When a change counts as durable.
    pub sync: SyncPolicy,
    /// Compact when the journal is over this many bytes and over the last snapshot's size.
    pub compact_bytes_min: u64,
    /// With `--sync always`, the loop syncs itself while each recent sync took at most this
    /// many microseconds; 0 keeps every sync on the sync thread.
    pub sync_inline_us: u64,
    /// With `--sync always`, before each sync the loop looks for newly readable connections up
    /// to this many more times without waiting, so that requests that arrived meanwhile join
    /// the batch; 0 syncs what the turn's events brought.
    pub sync_gather: u32,
    /// With `--sync always`, write journal batches with `O_DIRECT` where the file system
    /// allows it (`--journal-io direct`, the default) or through the page cache (`buffered`).
    pub journal_direct: bool,
    /// Longest a SIGTERM/SIGINT shutdown may take (final journal sync included) before werk
    /// gives up and exits with status 1.
    pub shutdown_timeout_ms: u64,
    /// Injected storage faults, from `WERK_FAULTS` (a testing hook).
    pub faults: Faults,
    /// The state machine's tunables.
    pub core: CoreConfig,
    /// The command line this config came from (read again, with the files, on SIGHUP).
    pub args: Vec<String>,
    /// The `conf.d/*.toml` files read, in the order applied.
    pub files: Vec<PathBuf>,
    /// Things to tell the operator once logging is up (unknown keys, ignored sections).
    pub warnings: Vec<String>,
    /// Where each setting that is not at its default came from (a flag, a file, a variable).
    pub sources: BTreeMap<&'static str, String>,
    /// Most jobs in one PUSHB; one more and the batch is refused whole.
    pub pushb_jobs_max: usize,
    /// Most open protocol sockets, identified or not; past it a new one gets `-ERR` and is
    /// closed at once. `None`: `connections_max` + [`SOCKETS_MARGIN`] (see
    /// [`Config::sockets_max`]).
    pub sockets_max: Option<usize>,
    /// Longest first line (HELLO), read before the client has proven anything.
    pub hello_bytes_max: usize,
    /// Failed-password backoff per client address.
    pub auth_backoff: BackoffConfig,
}

/// Sockets allowed beyond `connections_max` by default: room for clients in their handshake
/// (each gone within the 2 s HELLO deadline) while the identified ones are at their limit.
pub const SOCKETS_MARGIN: usize = 1000;

impl Default for Config {
    fn default() -> Self {
        let home = std::env::var("HOME").ok();
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 7419)),
            web_bind: Some(SocketAddr::from(([127, 0, 0, 1], 7420))),
            web_connections_max: 64,
            web_request_timeout_ms: 10_000,
            data_dir: default_data_dir(Environment::Development, home.as_deref()),
            config_dir: default_config_dir(Environment::Development, home.as_deref(), &|_| false),
            environment: Environment::Development,
            log_level: log::LevelFilter::Info,
            log_format: LogFormat::Text,
            log_filter: None,
            password: None,
            web_password: None,
            line_bytes_max: 16 << 20,
            connections_max: 2000,
            hello_timeout_ms: 2000,
            write_buffer_max: 1 << 20,
            sync: SyncPolicy::Always,
            compact_bytes_min: 64 << 20,
            sync_inline_us: 1_000,
            sync_gather: 3,
            journal_direct: true,
            shutdown_timeout_ms: 8_000,
            faults: Faults::default(),
            core: CoreConfig::default(),
            args: Vec::new(),
            files: Vec::new(),
            warnings: Vec::new(),
            sources: BTreeMap::new(),
            pushb_jobs_max: PUSHB_JOBS_MAX_DEFAULT,
            sockets_max: None,
            hello_bytes_max: 64 << 10,
            auth_backoff: BackoffConfig::default(),
        }
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Action {
    /// Start the server.
    Run(Box<Config>),
    /// Print the version and exit.
    Version,
    /// Print the help and exit.
    Help,
}

/// A startup error, meant for the operator.
#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A setting that a flag or a config file sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// `-b`, `[faktory] binding`.
    Bind,
    /// `-w`, `[web] binding`.
    WebBind,
    /// `[faktory] password` (`FAKTORY_PASSWORD` wins).
    Password,
    /// `[web] password`.
    WebPassword,
    /// `-l`, `[werk] log_level`.
    LogLevel,
    /// `--log-format`, `[werk] log_format`.
    LogFormat,
    /// `--sync`, `[werk] sync`.
    Sync,
    /// `--line-bytes-max`, `[werk] line_bytes_max`.
    LineBytesMax,
    /// `--connections-max`, `[werk] connections_max`.
    ConnectionsMax,
    /// `--dead-max`, `[werk] dead_max`.
    DeadMax,
    /// `--compact-bytes-min`, `[werk] compact_bytes_min`.
    CompactBytesMin,
    /// `--sync-inline-us`, `[werk] sync_inline_us`.
    SyncInlineUs,
    /// `--sync-gather`, `[werk] sync_gather`.
    SyncGather,
    /// `--journal-io`, `[werk] journal_io`.
    JournalIo,
    /// `--shutdown-timeout-ms`, `[werk] shutdown_timeout_ms`.
    ShutdownTimeoutMs,
    /// `--web-connections-max`, `[web] connections_max`.
    WebConnectionsMax,
    /// `--web-timeout-ms`, `[web] timeout_ms`.
    WebTimeoutMs,
    /// `--pushb-jobs-max`, `[werk] pushb_jobs_max`.
    PushbJobsMax,
    /// `--sockets-max`, `[werk] sockets_max`.
    SocketsMax,
    /// `--hello-timeout-ms`, `[werk] hello_timeout_ms`.
    HelloTimeoutMs,
    /// `--auth-failures-max`, `[werk] auth_failures_max`.
    AuthFailuresMax,
    /// `--auth-block-secs`, `[werk] auth_block_secs`.
    AuthBlockSecs,
}

/// The TOML type a key takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A string.
    Text,
    /// A whole number.
    Number,
    /// A string that is a secret (or, starting with `/`, a file holding one); never logged.
    Secret,
}

/// One row of [`SETTINGS`].
#[derive(Debug)]
pub struct Spec {
    /// Which setting.
    pub key: Key,
    /// Its name in the effective-config log line and in reload messages.
    pub name: &'static str,
    /// The flag, without dashes, if a flag sets it.
    pub flag: Option<&'static str>,
    /// `(table, key)` in `conf.d/*.toml`, if a file sets it.
    pub toml: Option<(&'static str, &'static str)>,
    /// The TOML type.
    pub kind: Kind,
    /// Whether SIGHUP applies a change to the running server.
    pub reloadable: bool,
}

const fn spec(
    key: Key,
    name: &'static str,
    flag: Option<&'static str>,
    toml: Option<(&'static str, &'static str)>,
    kind: Kind,
    reloadable: bool,
) -> Spec {
    Spec {
        key,
        name,
        flag,
        toml,
        kind,
        reloadable,
    }
}

/// Every setting a flag or a config key sets. The tables are Faktory's `[faktory]` and `[web]`
/// plus werk's own `[werk]`.
pub const SETTINGS: &[Spec] = &[
    spec(
        Key::Bind,
        "bind",
        Some("b"),
        Some(("faktory", "binding")),
        Kind::Text,
        false,
    ),
    spec(
        Key::Password,
        "password",
        None,
        Some(("faktory", "password")),
        Kind::Secret,
        true,
    ),
    spec(
        Key::WebBind,
        "web_bind",
        Some("w"),
        Some(("web", "binding")),
        Kind::Text,
        false,
    ),
    spec(
        Key::WebPassword,
        "web_password",
        None,
        Some(("web", "password")),
        Kind::Secret,
        true,
    ),
    spec(
        Key::WebConnectionsMax,
        "web_connections_max",
        Some("web-connections-max"),
        Some(("web", "connections_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::WebTimeoutMs,
        "web_timeout_ms",
        Some("web-timeout-ms"),
        Some(("web", "timeout_ms")),
        Kind::Number,
        false,
    ),
    spec(
        Key::LogLevel,
        "log_level",
        Some("l"),
        Some(("werk", "log_level")),
        Kind::Text,
        true,
    ),
    spec(
        Key::LogFormat,
        "log_format",
        Some("log-format"),
        Some(("werk", "log_format")),
        Kind::Text,
        false,
    ),
    spec(
        Key::Sync,
        "sync",
        Some("sync"),
        Some(("werk", "sync")),
        Kind::Text,
        false,
    ),
    spec(
        Key::LineBytesMax,
        "line_bytes_max",
        Some("line-bytes-max"),
        Some(("werk", "line_bytes_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::ConnectionsMax,
        "connections_max",
        Some("connections-max"),
        Some(("werk", "connections_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::DeadMax,
        "dead_max",
        Some("dead-max"),
        Some(("werk", "dead_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::CompactBytesMin,
        "compact_bytes_min",
        Some("compact-bytes-min"),
        Some(("werk", "compact_bytes_min")),
        Kind::Number,
        false,
    ),
    spec(
        Key::SyncInlineUs,
        "sync_inline_us",
        Some("sync-inline-us"),
        Some(("werk", "sync_inline_us")),
        Kind::Number,
        false,
    ),
    spec(
        Key::SyncGather,
        "sync_gather",
        Some("sync-gather"),
        Some(("werk", "sync_gather")),
        Kind::Number,
        false,
    ),
    spec(
        Key::JournalIo,
        "journal_io",
        Some("journal-io"),
        Some(("werk", "journal_io")),
        Kind::Text,
        false,
    ),
    spec(
        Key::ShutdownTimeoutMs,
        "shutdown_timeout_ms",
        Some("shutdown-timeout-ms"),
        Some(("werk", "shutdown_timeout_ms")),
        Kind::Number,
        false,
    ),
    spec(
        Key::PushbJobsMax,
        "pushb_jobs_max",
        Some("pushb-jobs-max"),
        Some(("werk", "pushb_jobs_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::SocketsMax,
        "sockets_max",
        Some("sockets-max"),
        Some(("werk", "sockets_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::HelloTimeoutMs,
        "hello_timeout_ms",
        Some("hello-timeout-ms"),
        Some(("werk", "hello_timeout_ms")),
        Kind::Number,
        false,
    ),
    spec(
        Key::AuthFailuresMax,
        "auth_failures_max",
        Some("auth-failures-max"),
        Some(("werk", "auth_failures_max")),
        Kind::Number,
        false,
    ),
    spec(
        Key::AuthBlockSecs,
        "auth_block_secs",
        Some("auth-block-secs"),
        Some(("werk", "auth_block_secs")),
        Kind::Number,
        false,
    ),
];

/// Flags that are not settings: `-d`, `-c`, `-e`, `--no-web`, `-v`, `-h`.
#[cfg(test)]
const OTHER_FLAGS: &[&str] = &["d", "c", "e", "no-web", "v", "version", "h", "help"];

/// The `--help` text.
pub const HELP: &str = "\
werk: a Faktory-compatible background-job server

Usage: werk [flags]
       werk journal check [-d DIR]

  -b HOST:PORT          protocol listener (default 127.0.0.1:7419; :7419 = all interfaces)
  -w HOST:PORT          Web UI listener (default 127.0.0.1:7420); `-w off` (or
                        Faktory's `-w :0`) turns the Web UI off
  --no-web              no Web UI (the same as -w off)
  -d DIR                data directory (default ~/.werk/db in development,
                        /var/lib/werk/db otherwise)
  -c DIR                config directory: conf.d/*.toml and, outside development, a
                        `password` file (default ~/.werk in development, /etc/werk
                        otherwise; ~/.faktory or /etc/faktory when only that one exists)
  -e ENV                development | staging | production (default $FAKTORY_ENV,
                        else development)
  -l LEVEL              error | warn | info | debug (default info)
  -v, --version         print the version and exit
  -h, --help            print this help
  --log-format FORMAT   text (Faktory-like lines, default) or json (one object per line)
  --line-bytes-max N    longest command line in bytes (default 16777216, at least 64)
  --connections-max N   most identified connections (default 2000)
  --dead-max N          most jobs kept in the dead set (default 100000)
  --pushb-jobs-max N    most jobs in one PUSHB (default 10000)
  --sockets-max N       most open protocol connections, identified or not
                        (default --connections-max + 1000)
  --hello-timeout-ms N  time a new connection has to send a valid HELLO (default 2000,
                        at least 100)
  --auth-failures-max N failed passwords from one address within a minute that
                        block it (default 5; 0: never block)
  --auth-block-secs N   how long the first block lasts; each further one doubles,
                        up to an hour (default 60)
  --web-connections-max N  most open Web UI connections (default 64)
  --web-timeout-ms N    time a Web UI client has to send its request and read the
                        response, from accept (default 10000, at least 100)
  --sync POLICY         always (fsync before every acknowledgement, default),
                        everysec (fsync within 1 s: power loss may take the last second)
                        or none (no fsync: survives a werk crash, not power loss)
  --compact-bytes-min N compact when the journal passes N bytes and the last snapshot's
                        size (default 67108864, at least 4096)
  --sync-inline-us N    with --sync always, sync on the event loop itself while each of
                        the last 16 syncs took at most N microseconds (faster than the sync
                        thread); 0 keeps every sync on the sync thread (default 1000)
  --sync-gather N       with --sync always, before each sync look up to N more times,
                        without waiting, for requests that arrived meanwhile, so that they
                        share the sync (default 3, at most 64; 0: off)
  --journal-io MODE     with --sync always, write the journal with O_DIRECT (direct, the
                        default; the page cache where the file system refuses it) or through
                        the page cache (buffered)
  --shutdown-timeout-ms N  longest a TERM/INT shutdown may take before werk exits with
                        status 1 (default 8000, at least 100)

Flags beat conf.d files, which beat the defaults. Every flag has a conf.d key; see
docs/OPERATIONS.md.

Environment:
  FAKTORY_PASSWORD        password clients must send (beats [faktory] password); a value
                          starting with / names a file holding it
  FAKTORY_ENV             default environment
  FAKTORY_SKIP_PASSWORD   1, true or yes: allow staging/production without a password
  WERK_LOG                env_logger directives per module, e.g. werk::net=debug

Signals: TERM and INT stop gracefully (exit 0); HUP re-reads the config and applies the
passwords and the log level.
";

impl Config {
    /// Parses `args` (without the program name), reading the environment through `env` and
    /// the config directory's files.
    pub fn from_args<I, F>(args: I, env: F) -> Result<Action, ConfigError>
    where
        I: IntoIterator<Item = String>,
        F: Fn(&str) -> Option<String>,
    {
        let args: Vec<String> = args.into_iter().collect();
        let mut c = Config::default();
        let flags = match parse_flags(&args, &mut c)? {
            Parsed::Exit(action) => return Ok(action),
            Parsed::Flags(f) => f,
        };
        c.args = args;
        if let Some(v) = env("WERK_FAULTS").filter(|s| !s.is_empty()) {
            c.faults = Faults::parse(&v).map_err(|e| ConfigError(format!("WERK_FAULTS: {e}")))?;
        }
        c.log_filter = env("WERK_LOG").filter(|s| !s.is_empty());
        c.environment = match flags.environment {
            Some(name) => parse_environment(&name).map_err(|e| ConfigError(format!("-e: {e}")))?,
            None => match env("FAKTORY_ENV").filter(|s| !s.is_empty()) {
                Some(name) => parse_environment(&name)
                    .map_err(|e| ConfigError(format!("FAKTORY_ENV: {e}")))?,
                None => Environment::Development,
            },
        };
        let home = env("HOME");
        if flags.data_dir.is_some() {
            c.sources.insert("data_dir", "-d".into());
        }
        if flags.config_dir.is_some() {
            c.sources.insert("config_dir", "-c".into());
        }
        c.data_dir = flags
            .data_dir
            .unwrap_or_else(|| default_data_dir(c.environment, home.as_deref()));
        c.config_dir = flags
            .config_dir
            .unwrap_or_else(|| default_config_dir(c.environment, home.as_deref(), &|p| p.is_dir()));
        let found = file::read_conf_d(&c.config_dir)?;
        let secrets = c.apply_files(&found, &flags.set)?;
        c.files = found.files;
        c.warnings = found.warnings;
        c.resolve_passwords(&env, secrets)?;
        if c.sockets_max() < c.connections_max {
            return Err(ConfigError(format!(
                "--sockets-max {} is below --connections-max {}: every identified connection \
                 is a socket",
                c.sockets_max(),
                c.connections_max
            )));
        }
        Ok(Action::Run(Box::new(c)))
    }

    /// Applies the files' values, in order, to the settings no flag set. Values of settings a
    /// flag did set are still checked, so a bad file is refused whatever the command line says.
    /// Returns the secrets, which are resolved with the environment afterwards.
    fn apply_files(
        &mut self,
        found: &file::Found,
        by_flag: &[Key],
    ) -> Result<Secrets, ConfigError> {
        let mut secrets = Secrets::default();
        let mut scratch = Config::default();
        for v in &found.values {
            let origin = v.file.display().to_string();
            match v.spec.key {
                Key::Password => secrets.password = Some((v.text.clone(), origin)),
                Key::WebPassword => secrets.web_password = Some((v.text.clone(), origin)),
                key => {
                    let flagged = by_flag.contains(&key);
                    let target = if flagged { &mut scratch } else { &mut *self };
                    set(target, key, &v.text).map_err(|e| {
                        let (table, name) = v.spec.toml.unwrap_or_default();
                        ConfigError(format!("{origin}: [{table}] {name}: {e}"))
                    })?;
                    if !flagged {
                        self.sources.insert(v.spec.name, origin);
                    }
                }
            }
        }
        Ok(secrets)
    }

    /// The protocol password: `FAKTORY_PASSWORD`, else `[faktory] password`, else (outside
    /// development) the config directory's `password` file, as Faktory. Then the Web UI's, and
    /// the rule that staging and production need one.
    fn resolve_passwords<F>(&mut self, env: &F, secrets: Secrets) -> Result<(), ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        let file = self.config_dir.join("password");
        let (password, source) = if let Some(v) = env("FAKTORY_PASSWORD").filter(|v| !v.is_empty())
        {
            let source = if v.starts_with('/') {
                format!("FAKTORY_PASSWORD (file {v})")
            } else {
                "FAKTORY_PASSWORD".to_owned()
            };
            (read_secret(&v, "FAKTORY_PASSWORD")?, source)
        } else if let Some((v, origin)) = secrets.password {
            let what = format!("{origin}: [faktory] password");
            (read_secret(&v, &what)?, origin)
        } else if self.environment != Environment::Development && file.is_file() {
            let path = file.display().to_string();
            (read_secret(&path, &path)?, path)
        } else {
            (None, String::new())
        };
        if password.is_some() {
            self.sources.insert("password", source);
        }
        self.password = password;
        if let Some((v, origin)) = secrets.web_password {
            self.web_password = read_secret(&v, &format!("{origin}: [web] password"))?;
            if self.web_password.is_some() {
                self.sources.insert("web_password", origin);
            }
        }
        let skip = env("FAKTORY_SKIP_PASSWORD")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        if self.environment != Environment::Development && self.password.is_none() && !skip {
            return Err(ConfigError(format!(
                "werk requires a password in staging and production: set FAKTORY_PASSWORD, \
                 [faktory] password in {}/conf.d/*.toml, or the file {} (or \
                 FAKTORY_SKIP_PASSWORD=1 to run without one)",
                self.config_dir.display(),
                file.display()
            )));
        }
        Ok(())
    }

    /// Most open protocol sockets: `--sockets-max`, else `connections_max` + [`SOCKETS_MARGIN`].
    pub fn sockets_max(&self) -> usize {
        self.sockets_max
            .unwrap_or(self.connections_max.saturating_add(SOCKETS_MARGIN))
    }

    /// The password the Web UI asks for: `[web] password`, else the protocol password.
    pub fn web_ui_password(&self) -> Option<&str> {
        self.web_password.as_deref().or(self.password.as_deref())
    }

    /// Reads the config again as at start (same command line, the environment through `env`,
    /// the files as they are now), for SIGHUP.
    pub fn reread<F>(&self, env: F) -> Result<Config, ConfigError>
    where
        F: Fn(&str) -> Option<String>,
    {
        match Config::from_args(self.args.clone(), env)? {
            Action::Run(c) => Ok(*c),
            Action::Version | Action::Help => Err(ConfigError(
                "the command line asks for no server (-v or -h)".into(),
            )),
        }
    }
}

/// Secrets found in the files: `(value, file)`.
#[derive(Debug, Default)]
struct Secrets {
    password: Option<(String, String)>,
    web_password: Option<(String, String)>,
}

/// What the command line said besides the settings it set directly.
#[derive(Debug, Default)]
struct Flags {
    environment: Option<String>,
    data_dir: Option<PathBuf>,
    config_dir: Option<PathBuf>,
    /// Settings a flag set (files do not override them).
    set: Vec<Key>,
}

#[derive(Debug)]
enum Parsed {
    Flags(Flags),
    Exit(Action),
}

/// Parses the flags, setting what they set on `c`.
fn parse_flags(args: &[String], c: &mut Config) -> Result<Parsed, ConfigError> {
    let mut flags = Flags::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let flag = arg.trim_start_matches('-');
        if flag.len() == arg.len() || flag.is_empty() {
            return Err(ConfigError(format!(
                "unexpected argument {arg:?}; see --help"
            )));
        }
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n, Some(v.to_owned())),
            None => (flag, None),
        };
        match name {
            "v" | "version" => return Ok(Parsed::Exit(Action::Version)),
            "h" | "help" => return Ok(Parsed::Exit(Action::Help)),
            "no-web" => {
                c.web_bind = None;
                flags.set.push(Key::WebBind);
                c.sources.insert("web_bind", "--no-web".into());
                continue;
            }
            _ => {}
        }
        let spec = SETTINGS.iter().find(|s| s.flag == Some(name));
        if spec.is_none() && !matches!(name, "d" | "c" | "e") {
            return Err(ConfigError(format!(
                "unknown flag {}; see --help",
                dashed(name)
            )));
        }
        let Some(value) = inline.or_else(|| args.next().cloned()) else {
            return Err(ConfigError(format!("flag {} needs a value", dashed(name))));
        };
        match spec {
            Some(spec) => {
                set(c, spec.key, &value)
                    .map_err(|e| ConfigError(format!("{}: {e}", dashed(name))))?;
                flags.set.push(spec.key);
                c.sources.insert(spec.name, dashed(name));
            }
            None if name == "d" => flags.data_dir = Some(PathBuf::from(value)),
            None if name == "c" => flags.config_dir = Some(PathBuf::from(value)),
            None => flags.environment = Some(value),
        }
    }
    Ok(Parsed::Flags(flags))
}

/// `-b` for one-letter flags, `--sync` for long ones.
fn dashed(name: &str) -> String {
    if name.len() == 1 {
        format!("-{name}")
    } else {
        format!("--{name}")
    }
}

/// Sets `key` from its text (a flag's value, or a file's value as text). The error says what
/// is accepted; the caller prefixes the flag, or the file and key.
fn set(c: &mut Config, key: Key, value: &str) -> Result<(), String> {
    match key {
        Key::Bind => c.bind = resolve(value)?,
        Key::WebBind => c.web_bind = web_address(value)?,
        Key::Password => c.password = Some(value.to_owned()),
        Key::WebPassword => c.web_password = Some(value.to_owned()),
        Key::LogLevel => c.log_level = parse_level(value)?,
        Key::LogFormat => {
            c.log_format = match value {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => return Err(format!("unknown log format {value:?}: use text or json")),
            }
        }
        Key::Sync => {
            c.sync = match value {
                "always" => SyncPolicy::Always,
                "everysec" => SyncPolicy::EverySec,
                "none" => SyncPolicy::None,
                _ => {
                    return Err(format!(
                        "unknown policy {value:?}: use always, everysec or none"
                    ))
                }
            }
        }
        Key::JournalIo => {
            c.journal_direct = match value {
                "direct" => true,
                "buffered" => false,
                _ => return Err(format!("unknown mode {value:?}: use direct or buffered")),
            }
        }
        Key::LineBytesMax => c.line_bytes_max = parse_num(value, 64)?,
        Key::ConnectionsMax => c.connections_max = parse_num(value, 1)?,
        Key::DeadMax => c.core.dead_max = parse_num(value, 0)?,
        Key::CompactBytesMin => c.compact_bytes_min = parse_num(value, 4096)? as u64,
        Key::SyncInlineUs => c.sync_inline_us = parse_num(value, 0)? as u64,
        Key::SyncGather => {
            c.sync_gather = match parse_num(value, 0)? {
                n if n <= MAX_SYNC_GATHER as usize => n as u32,
                _ => return Err(format!("{value:?} is more than {MAX_SYNC_GATHER}")),
            }
        }
        Key::ShutdownTimeoutMs => c.shutdown_timeout_ms = parse_num(value, 100)? as u64,
        Key::WebConnectionsMax => c.web_connections_max = parse_num(value, 1)?,
        Key::WebTimeoutMs => c.web_request_timeout_ms = parse_num(value, 100)? as u64,
        Key::PushbJobsMax => c.pushb_jobs_max = parse_num(value, 1)?,
        Key::SocketsMax => c.sockets_max = Some(parse_num(value, 1)?),
        Key::HelloTimeoutMs => c.hello_timeout_ms = parse_num(value, 100)? as u64,
        Key::AuthFailuresMax => {
            c.auth_backoff.failures_max = parse_num(value, 0)?
                .try_into()
                .map_err(|_| format!("{value:?} is too large"))?;
        }
        Key::AuthBlockSecs => {
            c.auth_backoff.block_ms = (parse_num(value, 1)? as u64).saturating_mul(1000);
        }
    }
    Ok(())
}

fn parse_environment(name: &str) -> Result<Environment, String> {
    match name {
        "development" => Ok(Environment::Development),
        "staging" => Ok(Environment::Staging),
        "production" => Ok(Environment::Production),
        other => Err(format!(
            "unknown environment {other:?}: use development, staging or production"
        )),
    }
}

fn home_base(home: Option<&str>) -> PathBuf {
    home.filter(|h| !h.is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

fn default_data_dir(env: Environment, home: Option<&str>) -> PathBuf {
    match env {
        Environment::Development => home_base(home).join(".werk").join("db"),
        _ => PathBuf::from("/var/lib/werk/db"),
    }
}

/// `~/.werk` in development, `/etc/werk` otherwise; Faktory's `~/.faktory` or `/etc/faktory`
/// when only that one exists, so a Faktory host's config is picked up as it is.
fn default_config_dir(
    env: Environment,
    home: Option<&str>,
    exists: &dyn Fn(&Path) -> bool,
) -> PathBuf {
    let [werk, faktory] = match env {
        Environment::Development => {
            let base = home_base(home);
            [base.join(".werk"), base.join(".faktory")]
        }
        _ => [PathBuf::from("/etc/werk"), PathBuf::from("/etc/faktory")],
    };
    if !exists(&werk) && exists(&faktory) {
        faktory
    } else {
        werk
    }
}

/// A value that names a file (it starts with `/`) is replaced by the file's trimmed contents
/// (Docker secrets, as Faktory). An empty password is no password.
fn read_secret(value: &str, what: &str) -> Result<Option<String>, ConfigError> {
    if !value.starts_with('/') {
        return Ok(Some(value.to_owned()).filter(|p| !p.is_empty()));
    }
    let text = std::fs::read_to_string(value)
        .map_err(|e| ConfigError(format!("{what}: cannot read {value}: {e}")))?;
    Ok(Some(text.trim().to_owned()).filter(|p| !p.is_empty()))
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    // Faktory accepts ":7419" for all interfaces.
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("{addr:?} is not a HOST:PORT address"))
}

/// `-w`: an address, or `off` (and Faktory's `:0`) for no Web UI. `127.0.0.1:0` is an
/// ephemeral port, as for `-b`.
fn web_address(value: &str) -> Result<Option<SocketAddr>, String> {
    match value {
        "off" | ":0" => Ok(None),
        _ => resolve(value)
            .map(Some)
            .map_err(|e| format!("{e} (or off)")),
    }
}

fn parse_level(s: &str) -> Result<log::LevelFilter, String> {
    match s {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(format!(
            "unknown log level {s:?}: use error, warn, info or debug"
        )),
    }
}

fn parse_num(s: &str, min: usize) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(format!("{s:?} is not a whole number of at least {min}")),
    }
}

/// The most extra looks `--sync-gather` may ask for before a sync.
pub const MAX_SYNC_GATHER: u32 = 64;

#[cfg(test)]
mod tests;
