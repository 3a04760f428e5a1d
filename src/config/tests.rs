//! Unit tests of flags, environment, conf.d files, the effective config and reloads.

use super::*;
use std::sync::atomic::{AtomicU64, Ordering};

/// A config directory no test creates: the developer's `~/.werk` is never read.
const NO_CONFIG: &str = "/nonexistent/werk-unit-test-config";

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Action, ConfigError> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let args = ["-c", NO_CONFIG].iter().chain(args).map(|s| s.to_string());
    Config::from_args(args, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
}

fn run(args: &[&str], env: &[(&str, &str)]) -> Config {
    match parse(args, env) {
        Ok(Action::Run(c)) => *c,
        other => panic!("{other:?}"),
    }
}

fn error(args: &[&str], env: &[(&str, &str)]) -> String {
    match parse(args, env) {
        Err(e) => e.0,
        Ok(other) => panic!("expected an error, got {other:?}"),
    }
}

/// A fresh config directory with `conf.d` holding `files` (name, text).
struct Dir(PathBuf);

impl Dir {
    fn new(files: &[(&str, &str)]) -> Dir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "werk-unit-config-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("conf.d")).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join("conf.d").join(name), text).unwrap();
        }
        Dir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }

    fn file(&self, name: &str) -> String {
        self.0.join("conf.d").join(name).display().to_string()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn defaults() {
    let c = run(&[], &[]);
    assert_eq!(c.bind.to_string(), "127.0.0.1:7419");
    assert_eq!(c.environment, Environment::Development);
    assert_eq!(c.line_bytes_max, 16 << 20);
    assert_eq!(c.connections_max, 2000);
    assert_eq!(c.log_format, LogFormat::Text);
    assert_eq!(c.shutdown_timeout_ms, 8000);
    assert!(c.data_dir.ends_with(".werk/db"));
    assert!(c.password.is_none() && c.web_password.is_none());
    assert!(c.files.is_empty() && c.warnings.is_empty());
    let c = run(&[], &[("HOME", "/home/op")]);
    assert_eq!(c.data_dir, PathBuf::from("/home/op/.werk/db"));
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
            "--log-format",
            "json",
            "--shutdown-timeout-ms=500",
        ],
        &[("FAKTORY_PASSWORD", "s3cret")],
    );
    assert_eq!(c.bind.port(), 0);
    assert_eq!(c.log_level, log::LevelFilter::Debug);
    assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
    assert_eq!(c.line_bytes_max, 1024);
    assert_eq!(c.log_format, LogFormat::Json);
    assert_eq!(c.shutdown_timeout_ms, 500);
    assert_eq!(c.password.as_deref(), Some("s3cret"));
    assert_eq!(c.config_dir, PathBuf::from(NO_CONFIG));
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
    // The last of a repeated flag wins, as with Go's flag package.
    assert_eq!(
        run(&["-l", "warn", "-l", "error"], &[]).log_level,
        log::LevelFilter::Error
    );
    assert!(matches!(parse(&["-v"], &[]), Ok(Action::Version)));
    assert!(matches!(parse(&["--help"], &[]), Ok(Action::Help)));
    assert!(matches!(parse(&["-h", "--bogus"], &[]), Ok(Action::Help)));
    let c = run(&[], &[("WERK_LOG", "werk::net=debug")]);
    assert_eq!(c.log_filter.as_deref(), Some("werk::net=debug"));
}

#[test]
fn errors_say_what_to_do() {
    let e = error;
    assert!(e(&["-x", "1"], &[]).contains("unknown flag -x"));
    assert!(e(&["--frobnicate"], &[]).contains("unknown flag --frobnicate; see --help"));
    assert!(e(&["-b"], &[]).contains("flag -b needs a value"));
    assert!(e(&["-b", "nope"], &[]).contains("-b: \"nope\" is not a HOST:PORT"));
    assert!(e(&["-l", "loud"], &[])
        .contains("-l: unknown log level \"loud\": use error, warn, info or debug"));
    assert!(e(&["-e", "prod"], &[])
        .contains("-e: unknown environment \"prod\": use development, staging or production"));
    assert!(e(&[], &[("FAKTORY_ENV", "prod")]).starts_with("FAKTORY_ENV: unknown environment"));
    assert!(e(&["-e", "production"], &[]).contains("FAKTORY_PASSWORD"));
    assert!(e(&["stray"], &[]).contains("unexpected argument"));
    assert!(e(&["-"], &[]).contains("unexpected argument"));
    assert!(e(&["--line-bytes-max", "1"], &[])
        .contains("--line-bytes-max: \"1\" is not a whole number of at least 64"));
    assert!(e(&["--connections-max", "-3"], &[]).contains("at least 1"));
    assert!(e(&["--dead-max", "many"], &[]).contains("--dead-max: \"many\" is not a whole number"));
    assert!(e(&["--sync", "sometimes"], &[])
        .contains("--sync: unknown policy \"sometimes\": use always, everysec or none"));
    assert!(e(&["--log-format", "xml"], &[])
        .contains("--log-format: unknown log format \"xml\": use text or json"));
    assert!(e(&["-w", "nowhere"], &[]).contains("-w: \"nowhere\" is not a HOST:PORT"));
    assert!(e(&["--web-timeout-ms", "5"], &[]).contains("at least 100"));
    assert!(e(&["--shutdown-timeout-ms", "5"], &[])
        .contains("--shutdown-timeout-ms: \"5\" is not a whole number of at least 100"));
    assert_eq!(run(&["--sync", "none"], &[]).sync, SyncPolicy::None);
    assert_eq!(run(&["--sync", "everysec"], &[]).sync, SyncPolicy::EverySec);
    assert_eq!(
        run(&["--compact-bytes-min", "5000"], &[]).compact_bytes_min,
        5000
    );
    assert!(e(&["--compact-bytes-min", "100"], &[]).contains("at least 4096"));
    assert_eq!(run(&[], &[]).sync_inline_us, 1_000);
    assert_eq!(run(&["--sync-inline-us", "0"], &[]).sync_inline_us, 0);
    assert!(e(&["--sync-inline-us", "-1"], &[]).contains("--sync-inline-us"));
    assert_eq!(run(&[], &[]).sync_gather, 3);
    assert!(run(&[], &[]).journal_direct);
    assert!(!run(&["--journal-io", "buffered"], &[]).journal_direct);
    assert!(
        e(&["--journal-io", "mmap"], &[]).contains("unknown mode \"mmap\": use direct or buffered")
    );
    assert_eq!(run(&["--sync-gather", "0"], &[]).sync_gather, 0);
    assert_eq!(run(&["--sync-gather", "64"], &[]).sync_gather, 64);
    assert!(e(&["--sync-gather", "65"], &[]).contains("--sync-gather: \"65\" is more than 64"));
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

#[test]
fn help_lists_every_flag() {
    let flags = SETTINGS
        .iter()
        .filter_map(|s| s.flag)
        .chain(OTHER_FLAGS.iter().copied());
    for flag in flags {
        let shown = dashed(flag);
        assert!(
            HELP.contains(&format!(" {shown} ")) || HELP.contains(&format!(" {shown},")),
            "--help does not list {shown}"
        );
    }
    for var in [
        "FAKTORY_PASSWORD",
        "FAKTORY_ENV",
        "FAKTORY_SKIP_PASSWORD",
        "WERK_LOG",
    ] {
        assert!(HELP.contains(var), "--help does not mention {var}");
    }
}

#[test]
fn config_dir_defaults_per_environment_and_accepts_faktory_layout() {
    let none = |_: &Path| false;
    let dev = Environment::Development;
    let prod = Environment::Production;
    assert_eq!(
        default_config_dir(dev, Some("/h"), &none),
        PathBuf::from("/h/.werk")
    );
    assert_eq!(
        default_config_dir(prod, Some("/h"), &none),
        PathBuf::from("/etc/werk")
    );
    assert_eq!(
        default_config_dir(Environment::Staging, None, &none),
        PathBuf::from("/etc/werk")
    );
    // Only Faktory's directory exists: it is used as it is.
    let faktory_only = |p: &Path| p.starts_with("/etc/faktory") || p.ends_with(".faktory");
    assert_eq!(
        default_config_dir(prod, None, &faktory_only),
        PathBuf::from("/etc/faktory")
    );
    assert_eq!(
        default_config_dir(dev, Some("/h"), &faktory_only),
        PathBuf::from("/h/.faktory")
    );
    // Both exist: werk's wins.
    let both = |_: &Path| true;
    assert_eq!(
        default_config_dir(prod, None, &both),
        PathBuf::from("/etc/werk")
    );
    // The production default data directory is werk's own, never Faktory's.
    assert_eq!(
        default_data_dir(prod, None),
        PathBuf::from("/var/lib/werk/db")
    );
}

#[test]
fn files_merge_in_name_order_and_flags_win() {
    let dir = Dir::new(&[
        (
            "20-override.toml",
            "[werk]\nsync = \"none\"\nlog_level = \"debug\"\n",
        ),
        (
            "10-base.toml",
            "[faktory]\nbinding = \"127.0.0.1:17419\"\npassword = \"from-file\"\n\n\
             [web]\nbinding = \"off\"\npassword = \"web-secret\"\nconnections_max = 9\n\n\
             [werk]\nsync = \"everysec\"\nlog_level = \"warn\"\ndead_max = 7\n\
             log_format = \"json\"\n",
        ),
        ("notes.txt", "[werk]\nsync = \"always\"\n"),
    ]);
    let c = run(&["-c", dir.path()], &[]);
    let names: Vec<_> = c
        .files
        .iter()
        .map(|f| f.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["10-base.toml", "20-override.toml"]);
    assert_eq!(c.bind.to_string(), "127.0.0.1:17419");
    assert_eq!(c.web_bind, None);
    assert_eq!(c.password.as_deref(), Some("from-file"));
    assert_eq!(c.web_password.as_deref(), Some("web-secret"));
    assert_eq!(c.web_ui_password(), Some("web-secret"));
    assert_eq!(c.web_connections_max, 9);
    assert_eq!(c.core.dead_max, 7);
    assert_eq!(c.log_format, LogFormat::Json);
    // The later file wins, key by key.
    assert_eq!(c.sync, SyncPolicy::None);
    assert_eq!(c.log_level, log::LevelFilter::Debug);
    assert_eq!(c.sources["sync"], dir.file("20-override.toml"));
    assert_eq!(c.sources["dead_max"], dir.file("10-base.toml"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);

    // Flags beat files; FAKTORY_PASSWORD beats [faktory] password.
    let c = run(
        &[
            "-c",
            dir.path(),
            "-b",
            "127.0.0.1:0",
            "--sync",
            "always",
            "-w",
            "127.0.0.1:0",
        ],
        &[("FAKTORY_PASSWORD", "from-env")],
    );
    assert_eq!(c.bind.port(), 0);
    assert_eq!(c.sync, SyncPolicy::Always);
    assert!(c.web_bind.is_some());
    assert_eq!(c.password.as_deref(), Some("from-env"));
    assert_eq!(c.sources["password"], "FAKTORY_PASSWORD");
    assert_eq!(c.sources["sync"], "--sync");
    assert_eq!(
        c.log_level,
        log::LevelFilter::Debug,
        "no -l: the file's level"
    );

    // A file password counts for production; flags cannot hide a bad file value.
    let c = run(&["-c", dir.path(), "-e", "production"], &[]);
    assert_eq!(c.password.as_deref(), Some("from-file"));
}

#[test]
fn passwords_from_files() {
    let dir = Dir::new(&[]);
    let secret = dir.0.join("secret.txt");
    std::fs::write(&secret, "  from-secret-file\n").unwrap();
    let conf = format!("[faktory]\npassword = \"{}\"\n", secret.display());
    std::fs::write(dir.0.join("conf.d/pw.toml"), conf).unwrap();
    let c = run(&["-c", dir.path()], &[]);
    assert_eq!(c.password.as_deref(), Some("from-secret-file"));
    // FAKTORY_PASSWORD naming a file.
    let c = run(&[], &[("FAKTORY_PASSWORD", secret.to_str().unwrap())]);
    assert_eq!(c.password.as_deref(), Some("from-secret-file"));
    assert!(c.sources["password"].starts_with("FAKTORY_PASSWORD (file /"));
    let e = error(&[], &[("FAKTORY_PASSWORD", "/nonexistent/pw")]);
    assert!(
        e.starts_with("FAKTORY_PASSWORD: cannot read /nonexistent/pw"),
        "{e}"
    );

    // Outside development, <config dir>/password (Faktory's /etc/faktory/password).
    let plain = Dir::new(&[]);
    std::fs::write(plain.0.join("password"), "etc-password\n").unwrap();
    let c = run(&["-c", plain.path(), "-e", "staging"], &[]);
    assert_eq!(c.password.as_deref(), Some("etc-password"));
    let c = run(&["-c", plain.path()], &[]);
    assert_eq!(
        c.password, None,
        "development ignores the password file, as Faktory"
    );
}

#[test]
fn unknown_keys_are_warnings_naming_the_file() {
    let dir = Dir::new(&[(
        "faktory.toml",
        "top = 1\nsync = \"none\"\n[faktory]\npassword = \"p\"\nbinding = \":7419\"\nsycn = 1\n\
         [werk]\nbinding = \"x\"\n[[cron]]\nschedule = \"* * * * *\"\n[cron.job]\ntype = \"T\"\n\
         [statsd]\nurl = \"x\"\n[mystery]\nk = 1\n",
    )]);
    let c = run(&["-c", dir.path()], &[]);
    let f = dir.file("faktory.toml");
    let expected = [
        format!("{f}: [cron] is a Faktory Enterprise section, which werk does not implement (ignored)"),
        format!("{f}: unknown key [faktory] sycn (ignored)"),
        format!("{f}: unknown table [mystery] (ignored)"),
        format!("{f}: [statsd] is a Faktory Enterprise section, which werk does not implement (ignored)"),
        format!("{f}: unknown key sync outside any table (ignored); did you mean [werk] sync?"),
        format!("{f}: unknown key top outside any table (ignored)"),
        format!("{f}: unknown key [werk] binding (ignored); did you mean [faktory] binding or [web] binding?"),
    ];
    for want in &expected {
        assert!(
            c.warnings.contains(want),
            "missing {want:?} in {:#?}",
            c.warnings
        );
    }
    assert_eq!(c.warnings.len(), expected.len(), "{:#?}", c.warnings);
    // The known keys still apply.
    assert_eq!(c.password.as_deref(), Some("p"));
    assert_eq!(c.bind.to_string(), "0.0.0.0:7419");
}

#[test]
fn invalid_values_name_file_key_and_accepted_values() {
    let cases: &[(&str, &str)] = &[
        (
            "[werk]\nsync = \"sometimes\"\n",
            "[werk] sync: unknown policy \"sometimes\": use always, everysec or none",
        ),
        (
            "[werk]\nlog_level = \"loud\"\n",
            "[werk] log_level: unknown log level \"loud\": use error, warn, info or debug",
        ),
        (
            "[werk]\nlog_format = \"xml\"\n",
            "[werk] log_format: unknown log format \"xml\": use text or json",
        ),
        (
            "[werk]\nline_bytes_max = 10\n",
            "[werk] line_bytes_max: \"10\" is not a whole number of at least 64",
        ),
        (
            "[werk]\nconnections_max = -1\n",
            "[werk] connections_max: \"-1\" is not a whole number of at least 1",
        ),
        (
            "[werk]\ndead_max = \"many\"\n",
            "[werk] dead_max: expected a whole number, found a string",
        ),
        (
            "[faktory]\nbinding = 7419\n",
            "[faktory] binding: expected a string, found a integer",
        ),
        (
            "[faktory]\nbinding = \"nowhere\"\n",
            "[faktory] binding: \"nowhere\" is not a HOST:PORT address",
        ),
        (
            "[web]\nbinding = \"nowhere\"\n",
            "[web] binding: \"nowhere\" is not a HOST:PORT address (or off)",
        ),
        (
            "[web]\ntimeout_ms = 1\n",
            "[web] timeout_ms: \"1\" is not a whole number of at least 100",
        ),
        (
            "faktory = 3\n",
            "faktory must be a table ([faktory]), not a integer",
        ),
        ("[werk\nsync = 1\n", "not valid TOML: line 1, column"),
        (
            "[werk]\nsync = \"a\"\nsync = \"b\"\n",
            "not valid TOML: line 3",
        ),
    ];
    for (text, want) in cases {
        let dir = Dir::new(&[
            ("00-ok.toml", "[werk]\ndead_max = 5\n"),
            ("50-bad.toml", text),
        ]);
        let e = error(&["-c", dir.path()], &[]);
        let file = dir.file("50-bad.toml");
        assert!(e.starts_with(&format!("{file}: ")), "{e}");
        assert!(e.contains(want), "{e:?} does not contain {want:?}");
        assert!(!e.contains('\n'), "{e:?}");
        // A flag for the same setting does not hide a bad value in a file.
        if text.contains("sync = \"sometimes\"") {
            assert!(error(&["-c", dir.path(), "--sync", "none"], &[]).contains("50-bad.toml"));
        }
    }
    let dir = Dir::new(&[(
        "pw.toml",
        "[faktory]\npassword = \"/nonexistent/werk-pw\"\n",
    )]);
    let e = error(&["-c", dir.path()], &[]);
    assert!(
        e.contains("pw.toml: [faktory] password: cannot read /nonexistent/werk-pw"),
        "{e}"
    );
}

#[test]
fn summary_masks_secrets() {
    let dir = Dir::new(&[("a.toml", "[web]\npassword = \"web-hunter2\"\n")]);
    let c = run(
        &["-c", dir.path(), "-b", ":7419"],
        &[("FAKTORY_PASSWORD", "hunter2")],
    );
    let line = c.summary();
    assert!(!line.contains("hunter2"), "{line}");
    assert!(line.contains("password=*** (FAKTORY_PASSWORD)"), "{line}");
    assert!(
        line.contains(&format!("web_password=*** ({})", dir.file("a.toml"))),
        "{line}"
    );
    assert!(line.contains("bind=0.0.0.0:7419 (-b)"), "{line}");
    assert!(line.contains("sync=always "), "{line}");
    assert!(line.contains("conf.d=[a.toml]"), "{line}");
    assert!(line.contains("web_ui_password=web_password"), "{line}");
    assert!(
        !line.contains("listening on"),
        "the test harnesses look for that phrase"
    );
    let line = run(&[], &[]).summary();
    assert!(line.contains("password=off"), "{line}");
    assert!(line.contains("web_ui_password=off"), "{line}");
}

#[test]
fn reload_applies_passwords_and_level_and_reports_the_rest() {
    let dir = Dir::new(&[("a.toml", "[faktory]\npassword = \"one\"\n")]);
    let mut c = run(&["-c", dir.path()], &[]);
    assert_eq!(c.args, ["-c", NO_CONFIG, "-c", dir.path()]);

    // Nothing changed.
    let again = c.reread(|_| None).unwrap();
    let r = c.reload(again);
    assert!(r.changes.is_empty() && r.log_level.is_none(), "{r:?}");

    std::fs::write(
        dir.0.join("conf.d/a.toml"),
        "[faktory]\npassword = \"two\"\n[web]\npassword = \"w\"\n\
         [werk]\nlog_level = \"debug\"\nsync = \"none\"\n",
    )
    .unwrap();
    let r = c.reload(c.reread(|_| None).unwrap());
    assert_eq!(
        r.changes,
        [
            "password: changed",
            "web_password: now set",
            "log_level: info -> debug",
            "sync: always -> none in the config, not applied: takes a restart",
        ]
    );
    assert!(!r.changes.concat().contains("two"));
    assert_eq!(r.log_level, Some(log::LevelFilter::Debug));
    assert_eq!(c.password.as_deref(), Some("two"));
    assert_eq!(c.web_password.as_deref(), Some("w"));
    assert_eq!(c.sync, SyncPolicy::Always, "sync needs a restart");

    // Removing the password; a bad file is an error and changes nothing.
    std::fs::write(
        dir.0.join("conf.d/a.toml"),
        "[werk]\nlog_level = \"debug\"\n",
    )
    .unwrap();
    let r = c.reload(c.reread(|_| None).unwrap());
    assert_eq!(r.changes, ["password: removed", "web_password: removed"]);
    std::fs::write(
        dir.0.join("conf.d/a.toml"),
        "[werk]\nlog_level = \"loud\"\n",
    )
    .unwrap();
    assert!(c.reread(|_| None).unwrap_err().0.contains("log_level"));
    assert_eq!(c.log_level, log::LevelFilter::Debug);

    // Under WERK_LOG the level is not changed by a reload.
    std::fs::write(
        dir.0.join("conf.d/a.toml"),
        "[werk]\nlog_level = \"warn\"\n",
    )
    .unwrap();
    c.log_filter = Some("werk=trace".into());
    let r = c.reload(
        c.reread(|k| (k == "WERK_LOG").then(|| "werk=trace".into()))
            .unwrap(),
    );
    assert_eq!(
        r.changes,
        ["log_level: debug -> warn in the config, not applied: WERK_LOG is set"]
    );
    assert_eq!(r.log_level, None);
    assert_eq!(c.log_level, log::LevelFilter::Debug);
}

/// The limits of issue 5 (OPERATIONS.md, Limits): defaults, flags, conf.d keys, bounds.
#[test]
fn abuse_limits() {
    let c = run(&[], &[]);
    assert_eq!(c.sockets_max(), 3000, "--connections-max + 1000");
    assert_eq!(c.pushb_jobs_max, 10_000);
    assert_eq!(c.hello_timeout_ms, 2000);
    assert_eq!(c.hello_bytes_max, 64 << 10);
    assert_eq!(c.auth_backoff, BackoffConfig::default());
    let c = run(
        &[
            "--connections-max=10",
            "--pushb-jobs-max",
            "7",
            "--auth-failures-max",
            "0",
            "--auth-block-secs=2",
            "--hello-timeout-ms",
            "30000",
        ],
        &[],
    );
    assert_eq!((c.sockets_max(), c.pushb_jobs_max), (1010, 7));
    assert_eq!(
        (c.auth_backoff.failures_max, c.auth_backoff.block_ms),
        (0, 2000)
    );
    assert_eq!(c.hello_timeout_ms, 30_000);
    let c = run(&["--sockets-max", "50", "--connections-max", "40"], &[]);
    assert_eq!(c.sockets_max(), 50);
    let dir = Dir::new(&[(
        "limits.toml",
        "[werk]\npushb_jobs_max = 9\nsockets_max = 2500\nhello_timeout_ms = 500\n\
         auth_failures_max = 3\nauth_block_secs = 120\n",
    )]);
    let c = run(&["-c", dir.path()], &[]);
    assert_eq!(
        (c.pushb_jobs_max, c.sockets_max(), c.hello_timeout_ms),
        (9, 2500, 500)
    );
    assert_eq!(
        (c.auth_backoff.failures_max, c.auth_backoff.block_ms),
        (3, 120_000)
    );
    assert!(
        error(&["--sockets-max", "9", "--connections-max", "10"], &[])
            .contains("--sockets-max 9 is below --connections-max 10")
    );
    assert!(error(&["--pushb-jobs-max", "0"], &[]).contains("at least 1"));
    assert!(error(&["--hello-timeout-ms", "99"], &[]).contains("at least 100"));
    assert!(error(&["--auth-block-secs", "0"], &[]).contains("at least 1"));
}
