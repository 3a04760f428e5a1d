//! Operating werk as a Faktory replacement, against the real binary: `conf.d` files and the
//! password rule, SIGHUP reloads, log formats, health probes, startup errors.
//!
//! Every test points `-c` at its own temporary config directory, so the developer's `~/.werk`
//! is never read. SIGTERM with queued jobs is in `server_durability.rs`.

mod harness;
/// The Web UI tests' HTTP helpers.
#[path = "common/http.rs"]
#[allow(dead_code)]
mod http;

use harness::{ok, pwdhash, run_to_exit, temp_dir, wait_until, Raw, Werk};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;
use werk::resp::Frame;

const WAIT: Duration = Duration::from_secs(10);

/// A temporary config directory with `conf.d/` files; removed on drop.
struct ConfDir(PathBuf);

impl ConfDir {
    fn new(files: &[(&str, &str)]) -> ConfDir {
        let dir = ConfDir(temp_dir("conf"));
        std::fs::create_dir_all(dir.0.join("conf.d")).unwrap();
        for (name, text) in files {
            dir.write(name, text);
        }
        dir
    }

    /// Writes (or replaces) `conf.d/<name>` in one rename, as a config tool would.
    fn write(&self, name: &str, text: &str) {
        let tmp = self.0.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, self.file(name)).unwrap();
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join("conf.d").join(name)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Connects and says HELLO, answering the challenge with `password` when there is one.
fn hello(addr: SocketAddr, password: Option<&str>) -> (Raw, Frame) {
    let (mut raw, hi) = Raw::connect(addr);
    let hi: serde_json::Value = serde_json::from_str(hi.trim_start_matches("HI ")).unwrap();
    let line = match (password, hi["s"].as_str(), hi["i"].as_u64()) {
        (Some(pw), Some(salt), Some(rounds)) => {
            let hash = pwdhash(pw, salt, rounds);
            format!(r#"HELLO {{"v":2,"pwdhash":"{hash}"}}"#)
        }
        _ => r#"HELLO {"v":2}"#.to_owned(),
    };
    let reply = raw.cmd(&line);
    (raw, reply)
}

fn accepted(addr: SocketAddr, password: Option<&str>) -> bool {
    match hello(addr, password).1 {
        f if f == ok() => true,
        Frame::Error(e) if e == "ERR Invalid password" => false,
        other => panic!("unexpected HELLO reply {other:?}"),
    }
}

/// Lines at warn or error level, in either log format.
fn warnings_and_errors(w: &Werk) -> Vec<String> {
    w.log_lines()
        .into_iter()
        .filter(|l| {
            l.starts_with("W ")
                || l.starts_with("E ")
                || l.contains(r#""level":"warn""#)
                || l.contains(r#""level":"error""#)
        })
        .collect()
}

#[test]
fn conf_d_password_is_enforced_and_never_logged() {
    let conf = ConfDir::new(&[("10-werk.toml", "[faktory]\npassword = \"conf-pw-Kx71\"\n")]);
    let w = Werk::start_with(&["-c", conf.path()], &[]);
    assert!(!accepted(w.addr, None));
    assert!(!accepted(w.addr, Some("wrong")));
    assert!(accepted(w.addr, Some("conf-pw-Kx71")));
    let file = conf.file("10-werk.toml").display().to_string();
    assert!(
        w.logged(&format!("password=*** ({file})")),
        "{:#?}",
        w.log_lines()
    );
    assert!(!w.log_lines().iter().any(|l| l.contains("conf-pw-Kx71")));
}

#[test]
fn faktory_password_beats_conf_d_and_may_name_a_file() {
    let conf = ConfDir::new(&[("10-werk.toml", "[faktory]\npassword = \"from-conf\"\n")]);
    let secret = conf.0.join("secret");
    std::fs::write(&secret, "from-secret-file\n").unwrap();
    let w = Werk::start_with(
        &["-c", conf.path()],
        &[("FAKTORY_PASSWORD", secret.to_str().unwrap())],
    );
    assert!(!accepted(w.addr, Some("from-conf")));
    assert!(accepted(w.addr, Some("from-secret-file")));
    assert!(w.logged("password=*** (FAKTORY_PASSWORD (file /"));
}

#[test]
fn production_takes_the_config_dirs_password_file_as_faktory() {
    let conf = ConfDir::new(&[]);
    // No password anywhere: refused, saying where one can come from.
    let (status, stderr) = run_to_exit(&["-c", conf.path(), "-e", "production"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("werk requires a password"), "{stderr}");
    assert!(stderr.contains("FAKTORY_PASSWORD"), "{stderr}");
    // Faktory's layout: <config dir>/password.
    std::fs::write(conf.0.join("password"), "etc-pw\n").unwrap();
    let w = Werk::start_with(&["-c", conf.path(), "-e", "production"], &[]);
    assert!(!accepted(w.addr, None));
    assert!(accepted(w.addr, Some("etc-pw")));
}

#[test]
fn bad_config_stops_the_start_naming_file_key_and_accepted_values() {
    let conf = ConfDir::new(&[
        ("10-ok.toml", "[werk]\ndead_max = 10\n"),
        ("20-bad.toml", "[werk]\nsync = \"sometimes\"\n"),
    ]);
    let (status, stderr) = run_to_exit(&["-c", conf.path()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    let want = format!(
        "werk: {}: [werk] sync: unknown policy \"sometimes\": use always, everysec or none",
        conf.file("20-bad.toml").display()
    );
    assert!(stderr.contains(&want), "{stderr}");

    conf.write("20-bad.toml", "[werk\n");
    let (status, stderr) = run_to_exit(&["-c", conf.path()]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("20-bad.toml: not valid TOML: line 1"),
        "{stderr}"
    );

    // Bad flag values too, each naming the flag.
    for (args, want) in [
        (&["--sync", "x"][..], "--sync: unknown policy \"x\""),
        (&["--log-format", "xml"][..], "use text or json"),
        (&["-l", "loud"][..], "use error, warn, info or debug"),
        (&["--connections-max", "0"][..], "at least 1"),
        (
            &["-e", "prod"][..],
            "use development, staging or production",
        ),
    ] {
        let (status, stderr) = run_to_exit(args);
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn unknown_keys_are_warnings_naming_the_file() {
    let conf = ConfDir::new(&[(
        "faktory.toml",
        "[faktory]\nbinding = \"127.0.0.1:7419\"\n[werk]\nsycn = \"none\"\n\
         [[cron]]\nschedule = \"*/5 * * * *\"\n",
    )]);
    // -b wins over [faktory] binding (the harness passes -b 127.0.0.1:0).
    let w = Werk::start_with(&["-c", conf.path()], &[]);
    assert_ne!(w.addr.port(), 7419);
    let file = conf.file("faktory.toml").display().to_string();
    assert!(
        w.logged(&format!("{file}: unknown key [werk] sycn (ignored)")),
        "{:#?}",
        w.log_lines()
    );
    assert!(w.logged(&format!("{file}: [cron] is a Faktory Enterprise section")));
    assert!(w.logged("bind=127.0.0.1:0 (-b)"));
}

#[test]
fn sighup_changes_the_password_for_new_connections() {
    let conf = ConfDir::new(&[("10-werk.toml", "[faktory]\npassword = \"old-pw-91\"\n")]);
    let w = Werk::start_with(&["-c", conf.path()], &[]);
    let (mut before, reply) = hello(w.addr, Some("old-pw-91"));
    assert_eq!(reply, ok());

    conf.write(
        "10-werk.toml",
        "[faktory]\npassword = \"new-pw-92\"\n[werk]\nlog_level = \"debug\"\nsync = \"none\"\n",
    );
    w.signal("HUP");
    // The changes are logged in a fixed order; the last one means all are in.
    assert!(wait_until(WAIT, || w.logged(
        "config reloaded: sync: always -> none in the config, not applied: takes a restart"
    )));
    assert!(w.logged("config reloaded: password: changed"));
    assert!(w.logged("config reloaded: log_level: info -> debug"));
    assert!(!accepted(w.addr, Some("old-pw-91")));
    assert!(accepted(w.addr, Some("new-pw-92")));
    // A connection made before the reload stays.
    assert!(matches!(before.cmd("INFO"), Frame::Bulk(Some(_))));
    // The new level is in force: a probe is now a debug line.
    drop(TcpStream::connect(w.addr).unwrap());
    assert!(wait_until(WAIT, || w.logged("closed before completing HELLO")));
    let leaks: Vec<_> = w
        .log_lines()
        .into_iter()
        .filter(|l| l.contains("-pw-9"))
        .collect();
    assert!(leaks.is_empty(), "{leaks:?}");

    // A setting that takes a restart is reported at every reload while it differs; once the
    // files match the running server again, the reload says nothing changed.
    conf.write(
        "10-werk.toml",
        "[faktory]\npassword = \"new-pw-92\"\n[werk]\nlog_level = \"debug\"\n",
    );
    w.signal("HUP");
    assert!(wait_until(WAIT, || w.logged("config reloaded: nothing changed")));
}

#[test]
fn sighup_with_a_bad_config_keeps_the_running_one() {
    let conf = ConfDir::new(&[("10-werk.toml", "[faktory]\npassword = \"keep-me\"\n")]);
    let mut w = Werk::start_with(&["-c", conf.path()], &[]);
    conf.write(
        "10-werk.toml",
        "[faktory]\npassword = \"other\"\n[werk]\nsync = \"maybe\"\n",
    );
    w.signal("HUP");
    assert!(wait_until(WAIT, || w
        .logged("config reload failed, the running config stays")));
    assert!(w.logged("[werk] sync: unknown policy \"maybe\": use always, everysec or none"));
    assert!(w.alive());
    assert!(accepted(w.addr, Some("keep-me")));
    assert!(!accepted(w.addr, Some("other")));
}

#[test]
fn sighup_can_set_a_password_where_there_was_none() {
    let conf = ConfDir::new(&[]);
    let w = Werk::start_with(&["-c", conf.path()], &[]);
    // HI sent before the password existed: no challenge to answer, so refused after it.
    let (mut early, _hi) = Raw::connect(w.addr);
    assert!(accepted(w.addr, None));
    conf.write("10-werk.toml", "[faktory]\npassword = \"late\"\n");
    w.signal("HUP");
    assert!(wait_until(WAIT, || w.logged("config reloaded: password: now set")));
    assert_eq!(
        early.cmd(r#"HELLO {"v":2}"#),
        Frame::Error("ERR Invalid password".into())
    );
    assert!(!accepted(w.addr, None));
    assert!(accepted(w.addr, Some("late")));
}

#[test]
fn json_log_lines_parse() {
    let conf = ConfDir::new(&[("10.toml", "[werk]\nunknown_thing = 1\n")]);
    let w = Werk::start_with(
        &["-c", conf.path(), "--log-format", "json", "-l", "debug"],
        &[("FAKTORY_PASSWORD", "json-pw")],
    );
    assert!(!accepted(w.addr, Some("bad \"quoted\" \\ password")));
    w.signal("HUP");
    assert!(wait_until(WAIT, || w.logged("config reloaded")));
    let lines = w.log_lines();
    assert!(lines.len() >= 5, "{lines:#?}");
    let mut levels = std::collections::BTreeSet::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let time = v["time"].as_str().expect("time");
        assert!(time.ends_with('Z') && time.len() == 24, "{time}");
        assert!(
            v["message"].is_string() && v["target"].is_string(),
            "{line}"
        );
        levels.insert(v["level"].as_str().expect("level").to_owned());
    }
    for level in ["debug", "info", "warn"] {
        assert!(levels.contains(level), "no {level} line in {lines:#?}");
    }
}

#[test]
fn text_log_lines_are_faktory_like() {
    let w = Werk::start();
    for line in w.log_lines() {
        let mut parts = line.splitn(3, ' ');
        let letter = parts.next().unwrap();
        let time = parts.next().unwrap_or_default();
        assert!(["E", "W", "I", "D", "T"].contains(&letter), "{line}");
        assert!(time.len() == 24 && time.ends_with('Z'), "{line}");
        assert!(
            werk::timestamp::Timestamp::parse_rfc3339(time).is_ok(),
            "{line}"
        );
    }
}

#[test]
fn health_probes_that_connect_and_close_log_nothing_above_debug() {
    let w = Werk::start_with(&["-l", "debug"], &[]);
    for _ in 0..3 {
        drop(TcpStream::connect(w.addr).unwrap());
    }
    assert!(wait_until(WAIT, || w
        .log_count("closed before completing HELLO")
        >= 3));
    // The Web UI's port: a TCP check, then an HTTP one.
    let web = w.web.expect("web UI on");
    drop(TcpStream::connect(web).unwrap());
    let health = http::Req::get("/health")
        .header("Connection", "close")
        .send(web);
    assert_eq!(health.status, 200, "{health:?}");
    // And a client that reads HI and leaves.
    drop(Raw::connect(w.addr));
    assert!(wait_until(WAIT, || w
        .log_count("closed before completing HELLO")
        >= 4));
    let noisy = warnings_and_errors(&w);
    assert!(noisy.is_empty(), "{noisy:#?}");
}

#[test]
fn help_and_version_exit_zero() {
    for flag in ["--help", "-h", "-v", "--version"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_werk"))
            .arg(flag)
            .output()
            .unwrap();
        assert!(out.status.success(), "{flag}");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("werk"), "{flag}: {text}");
        if flag.contains('h') {
            for item in [
                "-c DIR",
                "--log-format",
                "--sync",
                "FAKTORY_PASSWORD",
                "HUP",
            ] {
                assert!(text.contains(item), "--help lacks {item}");
            }
        }
    }
}
