//! Shared pieces of werk's integration tests (client.rs, protocol.rs, lifecycle.rs, load.rs).
//!
//! - [`Werk`]: the real `werk` binary on `127.0.0.1:0` with a fresh temp data directory. It reads
//!   stderr until the `listening on ADDR` line (10 s deadline), then drains stderr on a thread
//!   into a shared `Vec<String>` so the pipe never fills and tests can assert on log lines.
//!   The child is killed and the directory removed on drop.
//! - [`Conn`]: a raw `TcpStream` client with a small RESP reply reader ([`Reply`]) that also
//!   keeps the exact bytes of each reply, for byte-level assertions.
//! - [`wait_until`] / [`wait_until_async`]: poll a condition until a deadline (never a bare
//!   sleep where a condition can be awaited), and [`holds_for`] for "nothing happens during a
//!   window" assertions.
//! - Helpers for PROTOCOL.md: password hashing (§2.4), RFC 3339 formatting and parsing, INFO
//!   lookups, unique jids.

#![allow(dead_code)]

pub mod http;

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

/// How long the harness waits for the `listening on` line.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(10);
/// Default read timeout of a raw connection. Longer than any blocking FETCH (2 s).
pub const READ_TIMEOUT: Duration = Duration::from_secs(6);

// ---------------------------------------------------------------------------------------------
// Temp directories and unique names
// ---------------------------------------------------------------------------------------------

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

/// A fresh, empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `<tmp>/werk-it-<tag>-<pid>-<counter>-<nanos>`.
    pub fn new(tag: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("werk-it-{tag}-{}", unique_suffix()));
        std::fs::create_dir_all(&path).expect("create temp dir");
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A jid unique within this test process, at least 8 bytes long, with `tag` in it.
pub fn jid(tag: &str) -> String {
    format!("{tag}-{:08}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------
// Waiting
// ---------------------------------------------------------------------------------------------

/// The polling loops, one copy for both harnesses (`tests/harness/poll.rs`).
#[path = "../harness/poll.rs"]
#[allow(clippy::duplicate_mod, dead_code)]
mod poll;

/// Polls `condition` every 10 ms until it is true; panics with `what` after `timeout`.
/// Returns how long it took.
pub fn wait_until(timeout: Duration, what: &str, condition: impl FnMut() -> bool) -> Duration {
    poll::until(timeout, Duration::from_millis(10), condition)
        .unwrap_or_else(|| panic!("timed out after {timeout:?} waiting until {what}"))
}

/// The async form of [`wait_until`], for tests driving the `faktory` crate.
pub async fn wait_until_async<F, Fut>(timeout: Duration, what: &str, mut condition: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if condition().await {
            return start.elapsed();
        }
        if start.elapsed() >= timeout {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Asserts that `condition` stays true for the whole of `window` (checked every 50 ms). Used
/// where the claim is that something does *not* happen, so a window is the only evidence.
pub fn holds_for(window: Duration, what: &str, condition: impl FnMut() -> bool) {
    if let Err(after) = poll::holds(window, condition) {
        panic!("expected {what} to hold for {window:?}, but it stopped holding after {after:?}");
    }
}

// ---------------------------------------------------------------------------------------------
// The werk binary
// ---------------------------------------------------------------------------------------------

/// Options for starting the binary.
#[derive(Debug, Default, Clone)]
pub struct WerkOptions {
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl WerkOptions {
    /// Adds a command-line argument.
    pub fn arg(mut self, a: impl Into<String>) -> Self {
        self.args.push(a.into());
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }

    /// Requires `password` (through `FAKTORY_PASSWORD`).
    pub fn password(self, p: &str) -> Self {
        self.env("FAKTORY_PASSWORD", p)
    }

    /// Starts the server.
    pub fn start(self) -> Werk {
        Werk::start_with(self)
    }
}

/// A running `werk` child process; killed (and its data dir removed) on drop.
pub struct Werk {
    child: Child,
    addr: SocketAddr,
    web: Option<SocketAddr>,
    password: Option<String>,
    logs: Arc<Mutex<Vec<String>>>,
    dir: TempDir,
}

impl Werk {
    /// Starts werk with no password and default limits.
    pub fn start() -> Werk {
        WerkOptions::default().start()
    }

    /// Builder for non-default starts.
    pub fn options() -> WerkOptions {
        WerkOptions::default()
    }

    fn start_with(opts: WerkOptions) -> Werk {
        let dir = TempDir::new("data");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_werk"));
        cmd.args(["-b", "127.0.0.1:0", "-w", "127.0.0.1:0", "-d"])
            .arg(dir.path())
            // A config directory that does not exist: the developer's ~/.werk is never read.
            .arg("-c")
            .arg(dir.path().join("no-config"))
            .args(["-l", "info"])
            .args(&opts.args)
            // The child must not inherit settings from the developer's shell.
            .env_remove("FAKTORY_PASSWORD")
            .env_remove("FAKTORY_ENV")
            .env_remove("FAKTORY_SKIP_PASSWORD")
            .env_remove("RUST_LOG")
            .env_remove("WERK_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in &opts.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn werk binary");
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let (web_tx, web_rx) = mpsc::channel::<Option<SocketAddr>>();
        let logs2 = Arc::clone(&logs);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut tx = Some(tx);
            let mut web_tx = Some(web_tx);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                // Logged before the address is announced, so a test that has the address sees
                // the line.
                logs2.lock().unwrap().push(text.clone());
                if tx.is_some() {
                    if let Some(addr) = parse_listening(&text) {
                        let _ = tx.take().map(|t| t.send(addr));
                    }
                } else if web_tx.is_some() {
                    if let Some(web) = parse_web(&text) {
                        let _ = web_tx.take().map(|t| t.send(web));
                    }
                }
            }
        });
        let addr = match rx.recv_timeout(STARTUP_DEADLINE) {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let status = child.wait();
                // Give the drain thread a moment to collect the last lines for the message.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "werk did not print `listening on ADDR` within {STARTUP_DEADLINE:?} \
                     (exit: {status:?}); stderr so far:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
        };
        // The Web UI line follows the protocol line at once (or says the Web UI is off).
        let web = web_rx.recv_timeout(STARTUP_DEADLINE).unwrap_or_else(|_| {
            panic!(
                "werk did not print `web UI on http://ADDR` or `web UI off`; stderr so far:\n{}",
                logs.lock().unwrap().join("\n")
            )
        });
        let password = opts
            .env
            .iter()
            .rev()
            .find(|(k, _)| k == "FAKTORY_PASSWORD")
            .map(|(_, v)| v.clone());
        Werk {
            child,
            addr,
            web,
            password,
            logs,
            dir,
        }
    }

    /// The protocol address werk reported.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The Web UI address werk reported; panics when the Web UI is off.
    pub fn web_addr(&self) -> SocketAddr {
        self.web.expect("the Web UI is off")
    }

    /// The Web UI address, `None` when it is off.
    pub fn web(&self) -> Option<SocketAddr> {
        self.web
    }

    /// `tcp://127.0.0.1:PORT` for the faktory crate.
    pub fn url(&self) -> String {
        format!("tcp://{}", self.addr)
    }

    /// `tcp://:PASSWORD@127.0.0.1:PORT`.
    pub fn url_with_password(&self, password: &str) -> String {
        format!("tcp://:{password}@{}", self.addr)
    }

    /// A copy of every stderr line so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A raw connection that has completed the handshake as a producer (with the password,
    /// if the server has one).
    pub fn conn(&self) -> Conn {
        Conn::handshake(self.addr, json!({"v": 2}), self.password.as_deref())
    }

    /// A raw connection that has completed the handshake as worker `wid`.
    pub fn worker(&self, wid: &str) -> Conn {
        Conn::handshake(self.addr, worker_hello(wid), self.password.as_deref())
    }

    /// Panics unless the server still accepts and answers a fresh connection.
    pub fn assert_alive(&mut self) {
        assert!(
            self.is_running(),
            "werk exited; logs:\n{}",
            self.logs().join("\n")
        );
        let mut c = self.conn();
        let info = c.info();
        assert!(
            info.get("server").is_some(),
            "INFO has no server key: {info}"
        );
    }
}

impl Drop for Werk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn worker_hello(wid: &str) -> Value {
    json!({"v": 2, "wid": wid, "hostname": "test-host", "pid": 4242, "labels": ["test"]})
}

/// `... listening on 127.0.0.1:PORT ...` → the address.
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    let rest = &line[line.find("listening on ")? + "listening on ".len()..];
    let word = rest.split_whitespace().next()?;
    word.trim_end_matches([',', ';', ')']).parse().ok()
}

/// `... web UI on http://127.0.0.1:PORT ...` → `Some(addr)`; `... web UI off` → `None`; any
/// other line → not this line.
pub fn parse_web(line: &str) -> Option<Option<SocketAddr>> {
    if line.contains("web UI off") {
        return Some(None);
    }
    let rest = &line[line.find("web UI on http://")? + "web UI on http://".len()..];
    let word = rest.split_whitespace().next()?;
    Some(word.trim_end_matches('/').parse().ok())
}

// ---------------------------------------------------------------------------------------------
// RESP replies and the raw connection
// ---------------------------------------------------------------------------------------------

/// One server reply (PROTOCOL.md §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+text`
    Simple(String),
    /// `-text` (the text includes the code, e.g. `ERR ...`)
    Error(String),
    /// `$n` and n bytes
    Bulk(Vec<u8>),
    /// `$-1`
    Null,
    /// `:n`
    Integer(i64),
}

impl Reply {
    /// Panics unless this is `+OK`.
    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(self, &Reply::Simple("OK".into()), "expected +OK");
    }

    /// The text of an error reply, e.g. `ERR unknown command push`; panics otherwise.
    #[track_caller]
    pub fn err(&self) -> &str {
        match self {
            Reply::Error(e) => e,
            other => panic!("expected an error reply, got {other:?}"),
        }
    }

    /// A bulk reply as UTF-8; panics otherwise.
    #[track_caller]
    pub fn bulk_str(&self) -> &str {
        match self {
            Reply::Bulk(b) => std::str::from_utf8(b).expect("bulk reply is UTF-8"),
            other => panic!("expected a bulk reply, got {other:?}"),
        }
    }

    /// A bulk reply parsed as JSON; panics otherwise.
    #[track_caller]
    pub fn json(&self) -> Value {
        let s = self.bulk_str();
        serde_json::from_str(s).unwrap_or_else(|e| panic!("bulk reply is not JSON ({e}): {s}"))
    }

    /// True for `$-1`.
    pub fn is_null(&self) -> bool {
        matches!(self, Reply::Null)
    }
}

/// A raw TCP client.
pub struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// Why reading a reply failed.
#[derive(Debug)]
pub enum ReadError {
    /// The server closed the connection (EOF, or a reset). `partial` holds any bytes of an
    /// unfinished reply.
    Closed { partial: Vec<u8> },
    /// Nothing complete arrived before the read timeout.
    Timeout { partial: Vec<u8> },
    /// The bytes are not RESP.
    Malformed(Vec<u8>),
}

impl Conn {
    /// Connects without any handshake (the HI greeting is left unread).
    pub fn connect(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).expect("connect to werk");
        stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        stream
            .set_write_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.set_nodelay(true).unwrap();
        Conn {
            stream,
            buf: Vec::new(),
        }
    }

    /// Connects, reads HI, sends `HELLO {"v":2}` and expects `+OK`.
    pub fn producer(addr: SocketAddr) -> Conn {
        Conn::handshake(addr, json!({"v": 2}), None)
    }

    /// Connects as worker `wid`.
    pub fn worker(addr: SocketAddr, wid: &str) -> Conn {
        Conn::handshake(addr, worker_hello(wid), None)
    }

    /// Connects, reads HI, sends `hello` (adding `pwdhash` when HI asks for one) and expects
    /// `+OK`.
    #[track_caller]
    pub fn handshake(addr: SocketAddr, mut hello: Value, password: Option<&str>) -> Conn {
        let mut c = Conn::connect(addr);
        let hi = c.read_hi();
        if let (Some(salt), Some(pw)) = (hi["s"].as_str(), password) {
            let rounds = hi["i"].as_u64().expect("HI with s has i");
            hello["pwdhash"] = json!(pwdhash(pw, salt, rounds));
        }
        c.cmd(&format!("HELLO {hello}")).assert_ok();
        c
    }

    /// Reads the `+HI {...}` greeting and returns its JSON.
    pub fn read_hi(&mut self) -> Value {
        match self.read() {
            Reply::Simple(s) => {
                let json = s
                    .strip_prefix("HI ")
                    .unwrap_or_else(|| panic!("greeting is not `HI ...`: {s:?}"));
                serde_json::from_str(json).unwrap_or_else(|e| panic!("HI JSON ({e}): {json}"))
            }
            other => panic!("expected +HI greeting, got {other:?}"),
        }
    }

    /// The underlying stream (for timeouts, shutdown, cloning).
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Sets the read timeout.
    pub fn set_read_timeout(&self, t: Duration) {
        self.stream.set_read_timeout(Some(t)).unwrap();
    }

    /// Writes `line` followed by CR LF.
    pub fn send(&mut self, line: &str) {
        let mut v = Vec::with_capacity(line.len() + 2);
        v.extend_from_slice(line.as_bytes());
        v.extend_from_slice(b"\r\n");
        self.send_raw(&v);
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to werk");
    }

    /// Writes bytes, returning the error instead of panicking.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a command and reads its reply.
    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.read()
    }

    /// Reads one reply; panics on EOF, timeout or malformed bytes.
    #[track_caller]
    pub fn read(&mut self) -> Reply {
        match self.try_read_raw() {
            Ok((r, _)) => r,
            Err(e) => panic!("reading a reply failed: {e:?}"),
        }
    }

    /// Reads one reply and returns it with its exact bytes (including the final CR LF).
    #[track_caller]
    pub fn read_raw(&mut self) -> (Reply, Vec<u8>) {
        match self.try_read_raw() {
            Ok(r) => r,
            Err(e) => panic!("reading a reply failed: {e:?}"),
        }
    }

    /// Reads one reply, returning errors as values.
    pub fn try_read(&mut self) -> Result<Reply, ReadError> {
        self.try_read_raw().map(|(r, _)| r)
    }

    /// Reads one reply and its bytes, returning errors as values.
    pub fn try_read_raw(&mut self) -> Result<(Reply, Vec<u8>), ReadError> {
        loop {
            match parse_reply(&self.buf) {
                Ok(Some((reply, used))) => {
                    let raw: Vec<u8> = self.buf.drain(..used).collect();
                    return Ok((reply, raw));
                }
                Ok(None) => {}
                Err(()) => return Err(ReadError::Malformed(self.buf.clone())),
            }
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(ReadError::Closed {
                        partial: std::mem::take(&mut self.buf),
                    })
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err(ReadError::Timeout {
                        partial: std::mem::take(&mut self.buf),
                    })
                }
                Err(_) => {
                    return Err(ReadError::Closed {
                        partial: std::mem::take(&mut self.buf),
                    })
                }
            }
        }
    }

    /// Waits up to `within` for the server to close the connection, and returns every byte it
    /// sent before closing (including bytes already buffered here). Panics if the connection is
    /// still open after `within`.
    #[track_caller]
    pub fn expect_closed(&mut self, within: Duration) -> Vec<u8> {
        let start = Instant::now();
        let mut got = std::mem::take(&mut self.buf);
        loop {
            let left = within.saturating_sub(start.elapsed());
            assert!(
                !left.is_zero(),
                "connection still open after {within:?}; received {:?}",
                String::from_utf8_lossy(&got)
            );
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut => {}
                Err(_) => return got, // reset: closed
            }
        }
    }

    /// Asserts the connection stays open and silent for `window`.
    #[track_caller]
    pub fn expect_silence(&mut self, window: Duration) {
        assert!(
            self.buf.is_empty(),
            "unexpected buffered bytes {:?}",
            self.buf
        );
        self.stream.set_read_timeout(Some(window)).unwrap();
        let mut chunk = [0u8; 4096];
        let r = self.stream.read(&mut chunk);
        self.stream.set_read_timeout(Some(READ_TIMEOUT)).unwrap();
        match r {
            Ok(0) => panic!("server closed the connection during a {window:?} silence window"),
            Ok(n) => panic!(
                "server sent {:?} during a silence window",
                String::from_utf8_lossy(&chunk[..n])
            ),
            Err(e)
                if e.kind() == io::ErrorKind::WouldBlock || e.kind() == io::ErrorKind::TimedOut => {
            }
            Err(e) => panic!("connection failed during a silence window: {e}"),
        }
    }

    /// Half-closes the write side (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(Shutdown::Write);
    }

    // --- convenience commands -------------------------------------------------------------

    /// `INFO` → its JSON.
    #[track_caller]
    pub fn info(&mut self) -> Value {
        self.cmd("INFO").json()
    }

    /// `PUSH <job>`; panics unless `+OK`.
    #[track_caller]
    pub fn push(&mut self, job: &Value) {
        let r = self.cmd(&format!("PUSH {job}"));
        assert_eq!(r, Reply::Simple("OK".into()), "PUSH {job}");
    }

    /// Pushes a minimal job with `jid` on `queue`.
    #[track_caller]
    pub fn push_simple(&mut self, jid: &str, queue: &str) {
        self.push(&serde_json::json!({"jid": jid, "jobtype": "T", "args": [], "queue": queue}));
    }

    /// `FETCH <queues>` → the job JSON, or None for `$-1`.
    #[track_caller]
    pub fn fetch(&mut self, queues: &str) -> Option<Value> {
        match self.cmd(&format!("FETCH {queues}")) {
            Reply::Null => None,
            r @ Reply::Bulk(_) => Some(r.json()),
            other => panic!("FETCH {queues}: unexpected reply {other:?}"),
        }
    }

    /// `ACK {"jid":...}`; panics unless `+OK`.
    #[track_caller]
    pub fn ack(&mut self, jid: &str) {
        self.cmd(&format!(r#"ACK {{"jid":"{jid}"}}"#)).assert_ok();
    }

    /// `FAIL <payload>`; panics unless `+OK`.
    #[track_caller]
    pub fn fail(&mut self, payload: &Value) {
        let r = self.cmd(&format!("FAIL {payload}"));
        assert_eq!(r, Reply::Simple("OK".into()), "FAIL {payload}");
    }

    /// `MUTATE <op>`; panics unless `+OK`.
    #[track_caller]
    pub fn mutate(&mut self, op: &Value) {
        let r = self.cmd(&format!("MUTATE {op}"));
        assert_eq!(r, Reply::Simple("OK".into()), "MUTATE {op}");
    }
}

/// Parses one RESP reply from the front of `buf`: `Ok(None)` when more bytes are needed.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Reply, usize)>, ()> {
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    if nl == 0 || buf[nl - 1] != b'\r' {
        return Err(()); // every server line ends in CR LF
    }
    let line = &buf[1..nl - 1];
    let text = || String::from_utf8(line.to_vec()).map_err(|_| ());
    let reply = match buf[0] {
        b'+' => Reply::Simple(text()?),
        b'-' => Reply::Error(text()?),
        b':' => Reply::Integer(text()?.parse().map_err(|_| ())?),
        b'$' => {
            let n: i64 = text()?.parse().map_err(|_| ())?;
            if n == -1 {
                return Ok(Some((Reply::Null, nl + 1)));
            }
            let n = usize::try_from(n).map_err(|_| ())?;
            let start = nl + 1;
            if buf.len() < start + n + 2 {
                return Ok(None);
            }
            if &buf[start + n..start + n + 2] != b"\r\n" {
                return Err(());
            }
            return Ok(Some((
                Reply::Bulk(buf[start..start + n].to_vec()),
                start + n + 2,
            )));
        }
        _ => return Err(()),
    };
    Ok(Some((reply, nl + 1)))
}

// ---------------------------------------------------------------------------------------------
// INFO lookups
// ---------------------------------------------------------------------------------------------

/// `faktory.sets.<name>` (scheduled, retries, dead, working) from an INFO reply.
#[track_caller]
pub fn set_size(info: &Value, name: &str) -> u64 {
    info["faktory"]["sets"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("INFO faktory.sets.{name} missing: {info}"))
}

/// `faktory.queues.<name>`, or None when the queue is not listed.
pub fn queue_size(info: &Value, name: &str) -> Option<u64> {
    info["faktory"]["queues"].get(name).and_then(Value::as_u64)
}

/// `faktory.<key>` as a number (total_processed, total_failures, ...).
#[track_caller]
pub fn total(info: &Value, key: &str) -> u64 {
    info["faktory"][key]
        .as_u64()
        .unwrap_or_else(|| panic!("INFO faktory.{key} missing: {info}"))
}

// ---------------------------------------------------------------------------------------------
// Passwords (PROTOCOL.md §2.4)
// ---------------------------------------------------------------------------------------------

/// The one copy is the harness's (`tests/harness/password.rs`), shared by both harnesses. A test
/// that includes both (web.rs) compiles it twice, which is harmless.
#[path = "../harness/password.rs"]
#[allow(clippy::duplicate_mod)]
mod password;
pub use password::pwdhash;

// ---------------------------------------------------------------------------------------------
// Time
// ---------------------------------------------------------------------------------------------

/// Seconds since the Unix epoch, as a float.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Formats a Unix time (seconds, may be fractional) as RFC 3339 UTC with milliseconds.
pub fn rfc3339(unix: f64) -> String {
    let millis_total = (unix * 1000.0).round() as i64;
    let secs = millis_total.div_euclid(1000);
    let millis = millis_total.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        sod / 3600,
        (sod / 60) % 60,
        sod % 60
    )
}

/// Parses RFC 3339 (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±hh:mm)`) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !(b[10] == b'T' || b[10] == b't') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut frac = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
        frac = format!("0.{}", &s[start..i]).parse().ok()?;
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() => {
            let o = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some((days * 86_400 + h * 3600 + mi * 60 + se - offset) as f64 + frac)
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}
