//! Command-line flags and environment to a validated [`Config`].
//!
//! Faktory's flags (PROTOCOL.md §9.1) keep their meaning: `-b`, `-w`, `-d`, `-c`, `-e`, `-l`,
//! `-v`, `-h`. werk's own flags name its limits. Both `-x value` and `-x=value` work, with one or
//! two dashes, as with Go's flag package. Every limit is a named field with a default here.

use crate::core::CoreConfig;
use crate::journal::writer::{Faults, SyncPolicy};
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

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
    /// Storage directory (used by the journal in a later release).
    pub data_dir: PathBuf,
    /// Configuration directory.
    pub config_dir: PathBuf,
    /// development, staging or production.
    pub environment: Environment,
    /// Log level.
    pub log_level: log::LevelFilter,
    /// Password clients must prove, if any.
    pub password: Option<String>,
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
    /// Injected storage faults, from `WERK_FAULTS` (a testing hook).
    pub faults: Faults,
    /// The state machine's tunables.
    pub core: CoreConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 7419)),
            web_bind: Some(SocketAddr::from(([127, 0, 0, 1], 7420))),
            web_connections_max: 64,
            web_request_timeout_ms: 10_000,
            data_dir: default_dir(Environment::Development, "db"),
            config_dir: default_dir(Environment::Development, ""),
            environment: Environment::Development,
            log_level: log::LevelFilter::Info,
            password: None,
            line_bytes_max: 16 << 20,
            connections_max: 2000,
            hello_timeout_ms: 2000,
            write_buffer_max: 1 << 20,
            sync: SyncPolicy::Always,
            compact_bytes_min: 64 << 20,
            faults: Faults::default(),
            core: CoreConfig::default(),
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

/// The `--help` text.
pub const HELP: &str = "\
werk: a Faktory-compatible background-job server

Usage: werk [flags]

  -b HOST:PORT          protocol listener (default 127.0.0.1:7419)
  -w HOST:PORT          Web UI listener (default 127.0.0.1:7420); `-w off` (or
                        Faktory's `-w :0`, or --no-web) turns the Web UI off
  -d DIR                data directory (default ~/.werk/db in development,
                        /var/lib/werk/db otherwise)
  -c DIR                config directory (default ~/.werk, /etc/werk otherwise)
  -e ENV                development | staging | production (default $FAKTORY_ENV,
                        else development)
  -l LEVEL              error | warn | info | debug (default info)
  -v                    print the version and exit
  -h, --help            print this help
  --line-bytes-max N    longest command line in bytes (default 16777216)
  --connections-max N   most identified connections (default 2000)
  --dead-max N          most jobs kept in the dead set (default 100000)
  --web-connections-max N  most open Web UI connections (default 64)
  --web-timeout-ms N    time a Web UI client has to send its request and read the
                        response, from accept (default 10000)
  --sync POLICY         always (fsync before every acknowledgement, default),
                        everysec (fsync within 1 s: power loss may take the last second)
                        or none (no fsync: survives a werk crash, not power loss)
  --compact-bytes-min N compact when the journal passes N bytes and the last snapshot's
                        size (default 67108864)

Environment:
  FAKTORY_PASSWORD        password clients must send; a value starting with / names
                          a file holding it
  FAKTORY_ENV             default environment
  FAKTORY_SKIP_PASSWORD   1, true or yes: allow staging/production without a password
";

fn default_dir(env: Environment, leaf: &str) -> PathBuf {
    let base = match (env, std::env::var_os("HOME")) {
        (Environment::Development, Some(home)) => PathBuf::from(home).join(".werk"),
        (Environment::Development, None) => PathBuf::from(".werk"),
        (_, _) if leaf.is_empty() => PathBuf::from("/etc/werk"),
        _ => PathBuf::from("/var/lib/werk"),
    };
    if leaf.is_empty() {
        base
    } else {
        base.join(leaf)
    }
}

impl Config {
    /// Parses `args` (without the program name), reading the environment through `env`.
    pub fn from_args<I, F>(args: I, env: F) -> Result<Action, ConfigError>
    where
        I: IntoIterator<Item = String>,
        F: Fn(&str) -> Option<String>,
    {
        let mut c = Config::default();
        let mut env_name = env("FAKTORY_ENV").filter(|s| !s.is_empty());
        if let Some(v) = env("WERK_FAULTS").filter(|s| !s.is_empty()) {
            c.faults = Faults::parse(&v).map_err(|e| ConfigError(format!("WERK_FAULTS: {e}")))?;
        }
        let (mut data_dir, mut config_dir) = (None, None);
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let flag = arg.trim_start_matches('-');
            if flag.len() == arg.len() {
                return Err(ConfigError(format!(
                    "unexpected argument {arg:?}; see --help"
                )));
            }
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            match name {
                "v" | "version" => return Ok(Action::Version),
                "h" | "help" => return Ok(Action::Help),
                "no-web" => {
                    c.web_bind = None;
                    continue;
                }
                _ => {}
            }
            let value = match inline.or_else(|| args.next()) {
                Some(v) => v,
                None => return Err(ConfigError(format!("flag -{name} needs a value"))),
            };
            match name {
                "b" => c.bind = resolve(&value, "-b")?,
                "w" => c.web_bind = web_address(&value)?,
                "web-connections-max" => c.web_connections_max = parse_num(&value, name, 1)?,
                "web-timeout-ms" => {
                    c.web_request_timeout_ms = parse_num(&value, name, 100)? as u64;
                }
                "d" => data_dir = Some(PathBuf::from(value)),
                "c" => config_dir = Some(PathBuf::from(value)),
                "e" => env_name = Some(value),
                "l" => c.log_level = parse_level(&value)?,
                "line-bytes-max" => c.line_bytes_max = parse_num(&value, name, 64)?,
                "connections-max" => c.connections_max = parse_num(&value, name, 1)?,
                "dead-max" => c.core.dead_max = parse_num(&value, name, 0)?,
                "compact-bytes-min" => {
                    c.compact_bytes_min = parse_num(&value, name, 4096)? as u64;
                }
                "sync" => {
                    c.sync = match value.as_str() {
                        "always" => SyncPolicy::Always,
                        "everysec" => SyncPolicy::EverySec,
                        "none" => SyncPolicy::None,
                        _ => {
                            return Err(ConfigError(format!(
                                "--sync: unknown policy {value:?}: use always, everysec or none"
                            )))
                        }
                    }
                }
                _ => return Err(ConfigError(format!("unknown flag -{name}; see --help"))),
            }
        }
        c.environment = match env_name.as_deref() {
            None | Some("development") => Environment::Development,
            Some("staging") => Environment::Staging,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(ConfigError(format!(
                    "unknown environment {other:?}: use development, staging or production"
                )))
            }
        };
        c.data_dir = data_dir.unwrap_or_else(|| default_dir(c.environment, "db"));
        c.config_dir = config_dir.unwrap_or_else(|| default_dir(c.environment, ""));
        c.password = password_from_env(&env)?;
        let skip = env("FAKTORY_SKIP_PASSWORD")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes"));
        if c.environment != Environment::Development && c.password.is_none() && !skip {
            return Err(ConfigError(
                "werk requires a password in staging and production: set FAKTORY_PASSWORD \
                 (or FAKTORY_SKIP_PASSWORD=1 to run without one)"
                    .into(),
            ));
        }
        Ok(Action::Run(Box::new(c)))
    }
}

fn resolve(addr: &str, flag: &str) -> Result<SocketAddr, ConfigError> {
    // Faktory accepts ":7419" for all interfaces.
    let full = if addr.starts_with(':') {
        format!("0.0.0.0{addr}")
    } else {
        addr.to_owned()
    };
    full.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError(format!("{flag}: {addr:?} is not a HOST:PORT address")))
}

/// `-w`: an address, or `off` (and Faktory's `:0`) for no Web UI. `127.0.0.1:0` is an
/// ephemeral port, as for `-b`.
fn web_address(value: &str) -> Result<Option<SocketAddr>, ConfigError> {
    match value {
        "off" | ":0" => Ok(None),
        _ => resolve(value, "-w").map(Some),
    }
}

fn parse_level(s: &str) -> Result<log::LevelFilter, ConfigError> {
    match s {
        "error" => Ok(log::LevelFilter::Error),
        "warn" => Ok(log::LevelFilter::Warn),
        "info" => Ok(log::LevelFilter::Info),
        "debug" => Ok(log::LevelFilter::Debug),
        "trace" => Ok(log::LevelFilter::Trace),
        _ => Err(ConfigError(format!(
            "-l: unknown log level {s:?}: use error, warn, info or debug"
        ))),
    }
}

fn parse_num(s: &str, name: &str, min: usize) -> Result<usize, ConfigError> {
    match s.parse::<usize>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(ConfigError(format!(
            "--{name}: {s:?} is not a whole number of at least {min}"
        ))),
    }
}

fn password_from_env<F: Fn(&str) -> Option<String>>(
    env: &F,
) -> Result<Option<String>, ConfigError> {
    let Some(value) = env("FAKTORY_PASSWORD").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    if !value.starts_with('/') {
        return Ok(Some(value));
    }
    // A value starting with / names a file (Docker secrets), read once at startup.
    let text = std::fs::read_to_string(&value)
        .map_err(|e| ConfigError(format!("FAKTORY_PASSWORD: cannot read {value}: {e}")))?;
    Ok(Some(text.trim().to_owned()).filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Action, ConfigError> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_args(args.iter().map(|s| s.to_string()), |k| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
        match parse(args, env) {
            Ok(Action::Run(c)) => *c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn defaults() {
        let c = run(&[], &[]);
        assert_eq!(c.bind.to_string(), "127.0.0.1:7419");
        assert_eq!(c.environment, Environment::Development);
        assert_eq!(c.line_bytes_max, 16 << 20);
        assert_eq!(c.connections_max, 2000);
        assert!(c.data_dir.ends_with(".werk/db"));
        assert!(c.password.is_none());
    }

    #[test]
    fn flags() {
        let c = run(
            &[
                "-b",
                "127.0.0.1:0",
                "--l=debug",
                "-d",
                "/tmp/x",
                "-w",
                ":0",
                "--line-bytes-max",
                "1024",
            ],
            &[("FAKTORY_PASSWORD", "s3cret")],
        );
        assert_eq!(c.bind.port(), 0);
        assert_eq!(c.log_level, log::LevelFilter::Debug);
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.line_bytes_max, 1024);
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert_eq!(run(&["-b", ":7419"], &[]).bind.to_string(), "0.0.0.0:7419");
        assert_eq!(c.web_bind, None, "Faktory's -w :0 turns the Web UI off");
        assert_eq!(run(&["-w", "off"], &[]).web_bind, None);
        assert_eq!(run(&["--no-web"], &[]).web_bind, None);
        assert_eq!(
            run(&["-w", "127.0.0.1:0"], &[]).web_bind,
            Some(SocketAddr::from(([127, 0, 0, 1], 0)))
        );
        assert_eq!(
            run(&[], &[]).web_bind.map(|a| a.to_string()).as_deref(),
            Some("127.0.0.1:7420")
        );
        let c = run(&["--web-timeout-ms", "500", "--web-connections-max=3"], &[]);
        assert_eq!((c.web_request_timeout_ms, c.web_connections_max), (500, 3));
        assert!(matches!(parse(&["-v"], &[]), Ok(Action::Version)));
        assert!(matches!(parse(&["--help"], &[]), Ok(Action::Help)));
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = |a: &[&str], env: &[(&str, &str)]| parse(a, env).unwrap_err().0;
        assert!(e(&["-x", "1"], &[]).contains("unknown flag -x"));
        assert!(e(&["-b"], &[]).contains("needs a value"));
        assert!(e(&["-b", "nope"], &[]).contains("not a HOST:PORT"));
        assert!(e(&["-l", "loud"], &[]).contains("use error, warn, info or debug"));
        assert!(e(&["-e", "prod"], &[]).contains("use development, staging or production"));
        assert!(e(&["-e", "production"], &[]).contains("FAKTORY_PASSWORD"));
        assert!(e(&["stray"], &[]).contains("unexpected argument"));
        assert!(e(&["--line-bytes-max", "1"], &[]).contains("at least 64"));
        assert!(e(&["--sync", "sometimes"], &[]).contains("use always, everysec or none"));
        assert!(e(&["-w", "nowhere"], &[]).contains("-w: \"nowhere\" is not a HOST:PORT"));
        assert!(e(&["--web-timeout-ms", "5"], &[]).contains("at least 100"));
        assert_eq!(run(&["--sync", "none"], &[]).sync, SyncPolicy::None);
        assert_eq!(run(&["--sync", "everysec"], &[]).sync, SyncPolicy::EverySec);
        assert_eq!(
            run(&["--compact-bytes-min", "5000"], &[]).compact_bytes_min,
            5000
        );
        assert!(e(&["--compact-bytes-min", "100"], &[]).contains("at least 4096"));
        let faults = run(
            &[],
            &[("WERK_FAULTS", "write-fail-after=3,sync-fail-after=0")],
        )
        .faults;
        assert_eq!(
            (faults.write_fail_after, faults.sync_fail_after),
            (Some(3), Some(0))
        );
        assert!(e(&[], &[("WERK_FAULTS", "explode=1")]).contains("WERK_FAULTS"));
        let c = run(&["-e", "production"], &[("FAKTORY_SKIP_PASSWORD", "yes")]);
        assert_eq!(c.environment, Environment::Production);
        assert!(c.data_dir.starts_with("/var/lib/werk"));
        let c = run(
            &[],
            &[("FAKTORY_ENV", "staging"), ("FAKTORY_PASSWORD", "p")],
        );
        assert_eq!(c.environment, Environment::Staging);
    }
}
