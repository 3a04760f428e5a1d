//! Shared test harness: the real `werk` binary on an ephemeral port with its own temporary data
//! directory, a raw RESP client, `wait_until` (tests await conditions, never bare sleeps), and the
//! client's side of the password challenge (`pwdhash`, independent of `werk::auth`).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use werk::resp::{decode, Frame};

mod password;
mod poll;
// Not every test that includes the harness logs in with a password.
#[allow(unused_imports)]
pub use password::pwdhash;

/// A running `werk` process; killed and cleaned up on drop.
pub struct Werk {
    child: Child,
    /// The protocol address it reported.
    pub addr: SocketAddr,
    /// The Web UI address it reported (`None` when the Web UI is off).
    pub web: Option<SocketAddr>,
    log: Arc<Mutex<Vec<String>>>,
    /// The data directory.
    pub dir: PathBuf,
    owns_dir: bool,
}

/// A fresh, empty directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "werk-test-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl Werk {
    /// Starts werk with no password.
    pub fn start() -> Werk {
        Werk::start_with(&[], &[])
    }

    /// Starts werk with extra flags and environment, and waits for its `listening on` line.
    pub fn start_with(args: &[&str], env: &[(&str, &str)]) -> Werk {
        let mut w = Werk::start_in(&temp_dir("data"), args, env);
        w.owns_dir = true;
        w
    }

    /// Starts werk on an existing data directory, which outlives it.
    pub fn start_in(dir: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Werk {
        match Werk::try_start_in(dir, args, env) {
            Ok(w) => w,
            Err((status, stderr)) => {
                panic!("werk did not report its address ({status}):\n{stderr}")
            }
        }
    }

    /// Starts werk on an existing data directory (which outlives it) and waits for its
    /// `listening on` line; `Err((exit status, stderr))` when werk exits before listening (a
    /// startup refusal). Panics if neither happens within 10 s.
    pub fn try_start_in(
        dir: &std::path::Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Result<Werk, (std::process::ExitStatus, String)> {
        let dir = dir.to_path_buf();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_werk"));
        cmd.args(["-b", "127.0.0.1:0", "-w", "127.0.0.1:0", "-d"])
            .arg(&dir)
            // A config directory that does not exist, so the developer's ~/.werk is never read;
            // a test's own -c comes later and wins.
            .arg("-c")
            .arg(dir.join("no-config"))
            .args(args)
            .env_remove("FAKTORY_PASSWORD")
            .env_remove("FAKTORY_ENV")
            .env_remove("FAKTORY_SKIP_PASSWORD")
            .env_remove("WERK_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn werk");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (web_tx, web_rx) = std::sync::mpsc::channel::<Option<SocketAddr>>();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut web_tx = Some(web_tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("web UI off") {
                    if let Some(t) = web_tx.take() {
                        let _ = t.send(None);
                    }
                } else if let Some(rest) = line
                    .split("web UI on http://")
                    .nth(1)
                    .or_else(|| line.split("web UI on https://").nth(1))
                {
                    let addr = rest.split_whitespace().next().unwrap_or_default().parse();
                    if let Some(t) = web_tx.take() {
                        let _ = t.send(addr.ok());
                    }
                }
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(addr) => addr,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                // stderr closed without a `listening on` line: werk is exiting.
                let status = child.wait().expect("wait for werk");
                let text = log.lock().unwrap().join("\n");
                return Err((status, text));
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "werk did not report its address within 10 s:\n{}",
                    log.lock().unwrap().join("\n")
                );
            }
        };
        let web = web_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("werk did not report its web UI address within 10 s");
        Ok(Werk {
            child,
            addr: addr.parse().expect("address"),
            web,
            log,
            dir,
            owns_dir: false,
        })
    }

    /// Every log line so far, joined by newlines (for failure messages).
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// SIGKILL, and wait for the process to be gone.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// `tcp://127.0.0.1:PORT`, with `:password@` when given.
    pub fn url(&self, password: Option<&str>) -> String {
        match password {
            Some(p) => format!("tcp://:{p}@{}", self.addr),
            None => format!("tcp://{}", self.addr),
        }
    }

    /// True when some log line contains `text`.
    pub fn logged(&self, text: &str) -> bool {
        self.log.lock().unwrap().iter().any(|l| l.contains(text))
    }

    /// Every log line so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        let sent = Command::new("kill")
            .args([format!("-{name}"), self.child.id().to_string()])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -{name} failed");
    }

    /// How many log lines contain `text`.
    pub fn log_count(&self, text: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(text))
            .count()
    }

    /// Sends SIGTERM and waits up to `timeout` for the exit status.
    pub fn terminate(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill -TERM failed");
        let mut status = None;
        wait_until(timeout, || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }

    /// True while the process is running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Werk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// `VmRSS` of a process, in KiB (0 when it cannot be read).
pub fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Raises this test process's soft open-file limit to at least `want` (within the hard limit);
/// returns the hard limit.
pub fn raise_own_nofile(want: u64) -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` to a live, aligned local of that type; the return
    // value is checked.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    if lim.rlim_cur < want {
        lim.rlim_cur = want.min(lim.rlim_max);
        // SAFETY: `setrlimit` reads one `rlimit` from a live local; raising the soft limit up
        // to the unchanged hard limit needs no privilege and touches no memory of ours.
        assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
    }
    lim.rlim_max
}

/// Sets this process's soft open-file limit to `soft` (children inherit it).
pub fn set_own_soft_nofile(soft: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as in `raise_own_nofile`.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    lim.rlim_cur = soft.min(lim.rlim_max);
    // SAFETY: as in `raise_own_nofile`; the soft limit stays within the hard limit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) }, 0);
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub fn wait_until(timeout: Duration, cond: impl FnMut() -> bool) -> bool {
    poll::until(timeout, Duration::from_millis(10), cond).is_some()
}

/// Checks `cond` every 50 ms for `window`; returns false as soon as it fails. For claims that
/// something does *not* happen, where a window is the only evidence.
pub fn holds_for(window: Duration, cond: impl FnMut() -> bool) -> bool {
    poll::holds(window, cond).is_ok()
}

/// A raw protocol connection: lines out, RESP frames in, over a TCP stream or any other byte
/// stream (the TLS tests use a rustls stream).
pub struct Raw<S = TcpStream> {
    pub stream: S,
    buf: Vec<u8>,
}

impl<S: Read + Write> Raw<S> {
    /// Wraps a connected stream without reading anything (the caller reads HI).
    pub fn from_stream(stream: S) -> Raw<S> {
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Wraps a connected stream and reads the HI line.
    pub fn greeted(stream: S) -> (Raw<S>, String) {
        let mut raw = Raw::from_stream(stream);
        let hi = match raw.reply() {
            Some(Frame::Simple(s)) => s,
            other => panic!("expected HI, got {other:?}"),
        };
        (raw, hi)
    }

    /// Writes raw bytes.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    /// Writes one line with CR LF.
    pub fn send(&mut self, line: &str) {
        self.send_bytes(format!("{line}\r\n").as_bytes());
    }

    /// Reads one reply; `Ok(None)` at the end of the stream, `Err` on a failed read (a reset, a
    /// timeout, a TLS stream cut without close_notify).
    pub fn try_reply(&mut self) -> std::io::Result<Option<Frame>> {
        loop {
            if let Some((frame, used)) = decode(&self.buf).expect("valid RESP") {
                self.buf.drain(..used);
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(None),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                // A stop and continue of the test process (SIGSTOP/SIGCONT, a cgroup freezer)
                // interrupts a socket read that has a timeout, even without signal handlers.
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads one reply; `None` on EOF (or a reset).
    pub fn reply(&mut self) -> Option<Frame> {
        match self.try_reply() {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Sends a line and reads its reply.
    pub fn cmd(&mut self, line: &str) -> Frame {
        self.send(line);
        self.reply().expect("connection closed")
    }

    /// True when the server closes the connection (EOF) before sending anything more.
    pub fn closed(&mut self) -> bool {
        self.reply().is_none()
    }
}

impl Raw<TcpStream> {
    /// Connects and reads the HI line.
    pub fn connect(addr: SocketAddr) -> (Raw, String) {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw::greeted(stream)
    }

    /// Connects and says HELLO (no password); panics unless `+OK`.
    pub fn ready(addr: SocketAddr, hello: &str) -> Raw {
        let (mut raw, _) = Raw::connect(addr);
        assert_eq!(raw.cmd(&format!("HELLO {hello}")), ok());
        raw
    }

    /// True when the server has sent something not read yet (or closed the connection); never
    /// waits. For ordering checks: "this reply had not arrived when that one did".
    pub fn input_waiting(&mut self) -> bool {
        if !self.buf.is_empty() {
            return true;
        }
        self.stream.set_nonblocking(true).expect("set nonblocking");
        let peeked = self.stream.peek(&mut [0u8; 1]);
        self.stream.set_nonblocking(false).expect("set blocking");
        match peeked {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => false,
            Err(e) => panic!("peek: {e}"),
        }
    }
}

/// `+OK`
pub fn ok() -> Frame {
    Frame::Simple("OK".into())
}

/// `-ERR <msg>`
pub fn err(msg: &str) -> Frame {
    Frame::Error(format!("ERR {msg}"))
}

/// A bulk string's text.
pub fn bulk(f: Frame) -> String {
    match f {
        Frame::Bulk(Some(b)) => String::from_utf8(b).expect("utf-8"),
        other => panic!("expected bulk, got {other:?}"),
    }
}

/// The INFO document.
pub fn info(raw: &mut Raw) -> serde_json::Value {
    serde_json::from_str(&bulk(raw.cmd("INFO"))).expect("INFO JSON")
}

/// Jobs waiting in all queues, from an INFO document.
pub fn queued(info: &serde_json::Value) -> u64 {
    info["faktory"]["queues"].as_object().map_or(0, |q| {
        q.values().filter_map(serde_json::Value::as_u64).sum()
    })
}

/// A PUSHB of jobs shaped as issue 4's memory target has them
/// (`{"jid":…,"jobtype":"Load","args":[1,"string",3],"queue":…}`), one per jid.
pub fn pushb_load_jobs(jids: impl IntoIterator<Item = String>, queue: &str) -> String {
    let jobs: Vec<String> = jids
        .into_iter()
        .map(|jid| {
            format!(r#"{{"jid":"{jid}","jobtype":"Load","args":[1,"string",3],"queue":"{queue}"}}"#)
        })
        .collect();
    format!("PUSHB [{}]", jobs.join(","))
}

/// A minimal valid job.
pub fn job(jid: &str, queue: &str) -> String {
    format!(r#"{{"jid":"{jid}","jobtype":"T","args":[1],"queue":"{queue}"}}"#)
}

/// Runs werk expecting it to exit on its own (a startup error); returns its status and stderr.
pub fn run_to_exit(args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_werk"))
        .args(["-b", "127.0.0.1:0", "-c", "/nonexistent/werk-test-config"])
        .args(args)
        .env_remove("FAKTORY_PASSWORD")
        .env_remove("FAKTORY_ENV")
        .env_remove("FAKTORY_SKIP_PASSWORD")
        .env_remove("WERK_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run werk");
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
