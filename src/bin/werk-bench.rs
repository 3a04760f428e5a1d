//! werk-bench: load generator for any Faktory-compatible server.
//!
//! One connection per thread, blocking I/O, one command in flight per connection (as real
//! clients do). Modes:
//! - `push`: P connections PUSH (or PUSHB of `--batch` jobs) until `--jobs` are in;
//! - `process`: jobs are loaded with PUSHB first, then C connections FETCH + ACK them all;
//! - `mixed`: P producers and C consumers at once;
//! - `idle`: opens `--connections` connections that only say HELLO and stay, while one probe
//!   connection PUSHes for `--hold-secs`; prints the server's RSS per idle connection (`--pid`)
//!   and the probe's latency;
//! - `core`: no server at all: drives werk's state machine in-process (parse, apply, encode) for
//!   `--jobs` PUSH + FETCH + ACK. Deterministic (a manual clock), so an instruction count of it
//!   (`benches/guard.sh`, under callgrind) is a cheap regression guard.
//!
//! - `connect`: opens `--connections` connections one after the other to HELLO's `+OK` and
//!   prints the setup latency (with `tcp+tls://`, that includes the TLS handshake).
//!
//! `--url tcp+tls://...` speaks TLS (rustls), trusting the CA certificates in `--ca CA.pem`; the
//! URL's host is the name checked against the certificate. (`--event-loop` is plain TCP only.)
//!
//! `--fail-ratio F` makes consumers FAIL that fraction of the jobs instead of ACKing them.
//! `--event-loop` runs the connections of `push` and `process` on one thread with a `mio` poll
//! loop (as `redis-benchmark` does) instead of a thread each: on a small machine shared with the
//! server, a thread per connection costs the server CPU and context switches.
//!
//! Prints the command line, the machine, one summary line per figure (jobs/s, latency
//! percentiles per command), its own CPU use (so you can see it is not the bottleneck) and,
//! with `--pid`, the server's resident memory. It talks only to the address it is given and
//! stops by itself.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use werk::resp::{decode, Frame};

struct Opts {
    url: String,
    mode: String,
    connections: usize,
    consumers: usize,
    jobs: usize,
    batch: usize,
    pid: Option<u32>,
    fail_ratio: f64,
    hold_secs: u64,
    event_loop: bool,
}

const USAGE: &str =
    "usage: werk-bench [--url tcp[+tls]://[:PASSWORD@]HOST:PORT] [--ca CA.pem] \
[--mode push|process|mixed|idle|connect|core] [--connections N] [--consumers N] [--jobs N] [--batch B] [--fail-ratio F] [--hold-secs S] \
[--event-loop] [--pid SERVER_PID]";

/// The client TLS config for `tcp+tls://` URLs: trusts the certificates in `--ca`.
static TLS: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();

fn tls_config(ca_path: &str) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in
        CertificateDer::pem_file_iter(ca_path).map_err(|e| format!("--ca {ca_path}: {e}"))?
    {
        roots
            .add(cert.map_err(|e| format!("--ca {ca_path}: {e}"))?)
            .map_err(|e| format!("--ca {ca_path}: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A plain or TLS socket.
enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

fn parse_opts() -> Result<Opts, String> {
    let mut o = Opts {
        url: "tcp://127.0.0.1:7419".into(),
        mode: "push".into(),
        connections: 20,
        consumers: 20,
        jobs: 200_000,
        batch: 1,
        pid: None,
        fail_ratio: 0.0,
        hold_secs: 5,
        event_loop: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        if flag == "-h" || flag == "--help" {
            return Err(USAGE.into());
        }
        if flag == "--event-loop" {
            o.event_loop = true;
            continue;
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| {
            v.parse::<usize>()
                .map_err(|_| format!("{flag}: not a number: {v}"))
        };
        match flag.as_str() {
            "--url" => o.url = value,
            "--ca" => {
                let _ = TLS.set(tls_config(&value)?);
            }
            "--mode" => o.mode = value,
            "--connections" => o.connections = num(&value)?.max(1),
            "--consumers" => o.consumers = num(&value)?.max(1),
            "--jobs" => o.jobs = num(&value)?.max(1),
            "--batch" => o.batch = num(&value)?.max(1),
            "--pid" => o.pid = Some(num(&value)? as u32),
            "--hold-secs" => o.hold_secs = num(&value)? as u64,
            "--fail-ratio" => {
                o.fail_ratio = value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| (0.0..=1.0).contains(f))
                    .ok_or_else(|| format!("--fail-ratio: a number in [0, 1]: {value}"))?;
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if !matches!(
        o.mode.as_str(),
        "push" | "process" | "mixed" | "idle" | "connect" | "core"
    ) {
        return Err(format!(
            "--mode must be push, process, mixed, idle, connect or core\n{USAGE}"
        ));
    }
    Ok(o)
}

/// A blocking protocol connection.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
}

impl Conn {
    fn open(url: &str) -> Result<Conn, String> {
        let (tls, rest) = match (url.strip_prefix("tcp://"), url.strip_prefix("tcp+tls://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err("only tcp:// and tcp+tls:// URLs are supported".into()),
        };
        let (password, addr) = match rest.rsplit_once('@') {
            Some((user, addr)) => (user.split_once(':').map(|(_, p)| p.to_owned()), addr),
            None => (None, rest),
        };
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let stream = if tls {
            let config = TLS
                .get()
                .ok_or("tcp+tls:// needs --ca CA.pem (the CA to trust)")?;
            let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
            let session =
                rustls::ClientConnection::new(config.clone(), name).map_err(|e| e.to_string())?;
            Stream::Tls(Box::new(rustls::StreamOwned::new(session, stream)))
        } else {
            Stream::Plain(stream)
        };
        let mut c = Conn {
            stream,
            buf: Vec::with_capacity(1 << 16),
        };
        let hi = match c.reply()? {
            Frame::Simple(s) => s,
            other => return Err(format!("unexpected greeting {other:?}")),
        };
        let hi: serde_json::Value =
            serde_json::from_str(hi.trim_start_matches("HI ")).map_err(|e| e.to_string())?;
        let mut hello =
            serde_json::json!({"v": 2, "hostname": "werk-bench", "pid": std::process::id()});
        if let (Some(salt), Some(rounds)) = (hi["s"].as_str(), hi["i"].as_u64()) {
            let pw = password.ok_or("the server wants a password: tcp://:PASSWORD@host:port")?;
            hello["pwdhash"] = hex::encode(werk::auth::hash(&pw, salt, rounds as u32)).into();
        }
        match c.call(format!("HELLO {hello}").as_bytes())? {
            Frame::Simple(s) if s == "OK" => Ok(c),
            other => Err(format!("HELLO refused: {other:?}")),
        }
    }

    fn reply(&mut self) -> Result<Frame, String> {
        loop {
            if let Some((f, n)) = decode(&self.buf).map_err(|e| e.to_string())? {
                self.buf.drain(..n);
                return Ok(f);
            }
            let mut chunk = [0u8; 16384];
            let n = self.stream.read(&mut chunk).map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("server closed the connection".into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn call(&mut self, line: &[u8]) -> Result<Frame, String> {
        let mut msg = Vec::with_capacity(line.len() + 2);
        msg.extend_from_slice(line);
        msg.extend_from_slice(b"\r\n");
        self.stream.write_all(&msg).map_err(|e| e.to_string())?;
        self.reply()
    }
}

fn job_json(id: usize) -> String {
    format!(r#"{{"jid":"bench{id:012}","jobtype":"Load","args":[1,"string",3],"queue":"bench"}}"#)
}

/// The command that pushes jobs `first..last`: PUSH when the batch size is 1, else PUSHB (no
/// terminator).
fn push_line(first: usize, last: usize, batch: usize) -> String {
    if batch == 1 {
        format!("PUSH {}", job_json(first))
    } else {
        let list: Vec<String> = (first..last).map(job_json).collect();
        format!("PUSHB [{}]", list.join(","))
    }
}

/// Checks a reply to [`push_line`]: `+OK`, or PUSHB's `{}` (no job refused).
fn push_ok(reply: Frame) -> Result<(), String> {
    match reply {
        Frame::Simple(_) => Ok(()),
        Frame::Bulk(Some(b)) if b == b"{}" => Ok(()),
        other => Err(format!("push failed: {other:?}")),
    }
}

/// Per-command latencies in microseconds.
#[derive(Default)]
struct Lat(Vec<u32>);

impl Lat {
    fn record(&mut self, since: Instant) {
        self.0
            .push(since.elapsed().as_micros().min(u32::MAX as u128) as u32);
    }

    fn time<T>(&mut self, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let r = f();
        self.0
            .push(t.elapsed().as_micros().min(u32::MAX as u128) as u32);
        r
    }

    fn summary(mut self) -> String {
        if self.0.is_empty() {
            return "no samples".into();
        }
        self.0.sort_unstable();
        let p = |q: f64| self.0[((self.0.len() as f64 - 1.0) * q) as usize];
        format!(
            "p50 {} us, p99 {} us, p99.9 {} us, max {} us",
            p(0.5),
            p(0.99),
            p(0.999),
            p(1.0)
        )
    }
}

fn push_phase(o: &Opts, conns: usize, jobs: usize, batch: usize) -> Result<(f64, Lat), String> {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let next = next.clone();
            let url = o.url.clone();
            std::thread::spawn(move || -> Result<Lat, String> {
                let mut c = Conn::open(&url)?;
                let mut lat = Lat::default();
                loop {
                    let first = next.fetch_add(batch, Ordering::Relaxed);
                    if first >= jobs {
                        return Ok(lat);
                    }
                    let last = (first + batch).min(jobs);
                    let line = push_line(first, last, batch);
                    push_ok(lat.time(|| c.call(line.as_bytes()))?)?;
                }
            })
        })
        .collect();
    let mut all = Lat::default();
    for h in handles {
        all.0.extend(h.join().map_err(|_| "producer panicked")??.0);
    }
    Ok((start.elapsed().as_secs_f64(), all))
}

fn process_phase(o: &Opts, jobs: usize) -> Result<(f64, Lat, Lat), String> {
    let taken = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    // When the last job was acknowledged: the consumers' last FETCHes, which wait up to 2 s on
    // an empty queue, are not part of the figure.
    let finished_ns = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..o.consumers)
        .map(|_| {
            let (taken, acked, finished_ns) = (taken.clone(), acked.clone(), finished_ns.clone());
            let url = o.url.clone();
            let fail_ratio = o.fail_ratio;
            std::thread::spawn(move || -> Result<(Lat, Lat), String> {
                let mut c = Conn::open(&url)?;
                let (mut fetch, mut ack) = (Lat::default(), Lat::default());
                while taken.load(Ordering::Relaxed) < jobs {
                    let t = Instant::now();
                    match c.call(b"FETCH bench")? {
                        Frame::Bulk(Some(body)) => {
                            fetch.record(t);
                            let v: serde_json::Value =
                                serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                            let n = taken.fetch_add(1, Ordering::Relaxed) as f64;
                            // Deterministic share: job n fails when n * F crosses an integer.
                            let fails = (n * fail_ratio).floor() < ((n + 1.0) * fail_ratio).floor();
                            let line = if fails {
                                format!(r#"FAIL {{"jid":{},"message":"bench"}}"#, v["jid"])
                            } else {
                                format!(r#"ACK {{"jid":{}}}"#, v["jid"])
                            };
                            match ack.time(|| c.call(line.as_bytes()))? {
                                Frame::Simple(s) if s == "OK" => {}
                                other => return Err(format!("ACK/FAIL failed: {other:?}")),
                            }
                            if acked.fetch_add(1, Ordering::Relaxed) + 1 == jobs {
                                let ns = start.elapsed().as_nanos().min(u64::MAX as u128) as u64;
                                finished_ns.store(ns, Ordering::Relaxed);
                            }
                        }
                        // An empty queue: the FETCH waited; not a latency figure.
                        Frame::Bulk(None) => {}
                        other => return Err(format!("fetch failed: {other:?}")),
                    }
                }
                Ok((fetch, ack))
            })
        })
        .collect();
    let (mut fetch, mut ack) = (Lat::default(), Lat::default());
    for h in handles {
        let (f, a) = h.join().map_err(|_| "consumer panicked")??;
        fetch.0.extend(f.0);
        ack.0.extend(a.0);
    }
    let ns = finished_ns.load(Ordering::Relaxed);
    let secs = if ns > 0 {
        ns as f64 / 1e9
    } else {
        start.elapsed().as_secs_f64()
    };
    Ok((secs, fetch, ack))
}

/// What the event-loop connections do.
#[derive(Clone, Copy)]
enum Work {
    /// PUSH (or PUSHB of `batch`) until `--jobs` are in.
    Push { batch: usize },
    /// FETCH then ACK (or FAIL) until `--jobs` are done.
    Process,
}

/// One connection of the event loop: one command in flight.
struct LoopConn {
    stream: mio::net::TcpStream,
    rbuf: Vec<u8>,
    out: Vec<u8>,
    sent_at: Instant,
    /// Waiting for the reply to a FETCH (process) rather than to an ACK.
    fetching: bool,
    done: bool,
}

/// `push`/`process` with every connection on one thread: a `mio` poll loop, one command in
/// flight per connection. Returns (seconds, first-command latencies, second-command latencies).
fn event_loop_phase(o: &Opts, work: Work) -> Result<(f64, Lat, Lat), String> {
    use mio::{Events, Interest, Poll, Token};
    let conns_n = match work {
        Work::Push { .. } => o.connections,
        Work::Process => o.consumers,
    };
    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let mut conns = Vec::with_capacity(conns_n);
    for i in 0..conns_n {
        let c = Conn::open(&o.url)?;
        let Stream::Plain(plain) = c.stream else {
            return Err("--event-loop speaks plain TCP only; drop it for tcp+tls://".into());
        };
        plain.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = mio::net::TcpStream::from_std(plain);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        conns.push(LoopConn {
            stream,
            rbuf: c.buf,
            out: Vec::new(),
            sent_at: Instant::now(),
            fetching: false,
            done: false,
        });
    }
    let (mut first, mut second) = (Lat::default(), Lat::default());
    let mut issued = 0usize;
    let finished = std::cell::Cell::new(0usize);
    let jobs = o.jobs;
    let start = Instant::now();
    let mut end = None;
    // The next command of connection `c`, or None when it has nothing left to do.
    let mut next = |c: &mut LoopConn, reply: Option<Frame>| -> Result<Option<Vec<u8>>, String> {
        match (work, reply) {
            (Work::Push { batch }, reply) => {
                if let Some(r) = reply {
                    push_ok(r)?;
                    first.record(c.sent_at);
                }
                if issued >= jobs {
                    return Ok(None);
                }
                let last = (issued + batch).min(jobs);
                let line = push_line(issued, last, batch) + "\r\n";
                issued = last;
                Ok(Some(line.into_bytes()))
            }
            (Work::Process, None) => {
                c.fetching = true;
                Ok(Some(b"FETCH bench\r\n".to_vec()))
            }
            (Work::Process, Some(r)) if c.fetching => match r {
                Frame::Bulk(Some(body)) => {
                    first.record(c.sent_at);
                    let jid = jid_of(&body).ok_or("a fetched job without a jid")?;
                    let n = issued as f64;
                    issued += 1;
                    let fails = (n * o.fail_ratio).floor() < ((n + 1.0) * o.fail_ratio).floor();
                    c.fetching = false;
                    Ok(Some(
                        if fails {
                            format!("FAIL {{\"jid\":\"{jid}\",\"message\":\"bench\"}}\r\n")
                        } else {
                            format!("ACK {{\"jid\":\"{jid}\"}}\r\n")
                        }
                        .into_bytes(),
                    ))
                }
                Frame::Bulk(None) if finished.get() >= jobs => Ok(None),
                Frame::Bulk(None) => Ok(Some(b"FETCH bench\r\n".to_vec())),
                other => Err(format!("fetch failed: {other:?}")),
            },
            (Work::Process, Some(r)) => {
                match r {
                    Frame::Simple(s) if s == "OK" => {}
                    other => return Err(format!("ACK/FAIL failed: {other:?}")),
                }
                second.record(c.sent_at);
                finished.set(finished.get() + 1);
                if finished.get() >= jobs {
                    return Ok(None);
                }
                c.fetching = true;
                Ok(Some(b"FETCH bench\r\n".to_vec()))
            }
        }
    };
    let send = |c: &mut LoopConn, line: Vec<u8>| -> Result<(), String> {
        // One short command on an idle connection: the socket buffer takes it at once.
        c.stream.write_all(&line).map_err(|e| e.to_string())?;
        c.sent_at = Instant::now();
        c.out = line;
        Ok(())
    };
    for c in conns.iter_mut() {
        match next(c, None)? {
            Some(line) => send(c, line)?,
            None => c.done = true,
        }
    }
    let mut events = Events::with_capacity(1024);
    let mut active = conns.iter().filter(|c| !c.done).count();
    while active > 0 {
        poll.poll(&mut events, Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        if events.is_empty() {
            return Err("no reply for 30 s".into());
        }
        for ev in events.iter() {
            let Some(c) = conns.get_mut(ev.token().0) else {
                continue;
            };
            let mut chunk = [0u8; 16384];
            // Edge-triggered: read until the socket is drained. A read shorter than the buffer
            // drained it (data arriving later raises a new event), so the read that would only
            // say `WouldBlock` is skipped, as the server does: one `recv` per reply.
            loop {
                match c.stream.read(&mut chunk) {
                    Ok(0) => return Err("server closed a connection".into()),
                    Ok(n) => {
                        c.rbuf.extend_from_slice(&chunk[..n]);
                        if n < chunk.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.to_string()),
                }
            }
            while !c.done {
                let Some((frame, used)) = decode(&c.rbuf).map_err(|e| e.to_string())? else {
                    break;
                };
                c.rbuf.drain(..used);
                match next(c, Some(frame))? {
                    Some(line) => send(c, line)?,
                    None => {
                        c.done = true;
                        active -= 1;
                    }
                }
            }
            if end.is_none() && matches!(work, Work::Process) && finished.get() >= jobs {
                end = Some(start.elapsed());
            }
        }
    }
    let secs = end.unwrap_or_else(|| start.elapsed()).as_secs_f64();
    Ok((secs, first, second))
}

/// The jid of a fetched job, found in its canonical JSON without parsing it all.
fn jid_of(body: &[u8]) -> Option<&str> {
    let key = b"\"jid\":\"";
    let at = body.windows(key.len()).position(|w| w == key)? + key.len();
    let len = body[at..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[at..at + len]).ok()
}

/// CPU seconds this process used (user + system), from /proc/self/stat.
fn own_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

fn server_rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

fn run(o: &Opts) -> Result<(), String> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "command: {}",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!("machine: {cores} cores, {}", std::env::consts::ARCH);
    if o.mode == "core" {
        return core_mode(o.jobs);
    }
    Conn::open(&o.url)?.call(b"FLUSH")?;
    let wall = Instant::now();
    match o.mode.as_str() {
        "idle" => idle_mode(o)?,
        "connect" => connect_mode(o)?,
        "push" => {
            let (secs, lat) = if o.event_loop {
                let (secs, lat, _) = event_loop_phase(o, Work::Push { batch: o.batch })?;
                (secs, lat)
            } else {
                push_phase(o, o.connections, o.jobs, o.batch)?
            };
            println!(
                "push: {} jobs, {} connections, batch {}: {:.0} jobs/s; per command {}",
                o.jobs,
                o.connections,
                o.batch,
                o.jobs as f64 / secs,
                lat.summary()
            );
        }
        "process" => {
            push_phase(o, o.connections, o.jobs, 1000)?;
            let (secs, fetch, ack) = if o.event_loop {
                event_loop_phase(o, Work::Process)?
            } else {
                process_phase(o, o.jobs)?
            };
            println!(
                "process: {} jobs, {} consumers, fail ratio {}: {:.0} jobs/s (FETCH + ACK/FAIL)",
                o.jobs,
                o.consumers,
                o.fail_ratio,
                o.jobs as f64 / secs
            );
            println!("  FETCH {}", fetch.summary());
            println!("  ACK   {}", ack.summary());
        }
        _ => {
            let consumer = {
                let o2 = Opts {
                    url: o.url.clone(),
                    mode: String::new(),
                    ..*o
                };
                std::thread::spawn(move || process_phase(&o2, o2.jobs))
            };
            let (push_secs, lat) = push_phase(o, o.connections, o.jobs, o.batch)?;
            let (secs, fetch, ack) = consumer.join().map_err(|_| "consumers panicked")??;
            println!(
                "mixed: {} jobs: push {:.0} jobs/s ({}), process {:.0} jobs/s",
                o.jobs,
                o.jobs as f64 / push_secs,
                lat.summary(),
                o.jobs as f64 / secs
            );
            println!("  FETCH {}", fetch.summary());
            println!("  ACK   {}", ack.summary());
        }
    }
    let elapsed = wall.elapsed().as_secs_f64();
    println!(
        "werk-bench cpu: {:.1} s over {:.1} s wall ({:.0}% of one core)",
        own_cpu_secs(),
        elapsed,
        100.0 * own_cpu_secs() / elapsed
    );
    if let Some(pid) = o.pid {
        match server_rss_mb(pid) {
            Some(mb) => println!("server rss: {mb:.1} MB (pid {pid})"),
            None => println!("server rss: unknown (no /proc/{pid}/status)"),
        }
    }
    Ok(())
}

/// `--mode connect`: opens `--connections` connections one after the other, each to HELLO's
/// `+OK` (TCP connect, TLS handshake when `tcp+tls://`, HI, HELLO), and closes each with END.
fn connect_mode(o: &Opts) -> Result<(), String> {
    let mut lat = Lat::default();
    let start = Instant::now();
    for _ in 0..o.connections {
        let mut c = lat.time(|| Conn::open(&o.url))?;
        c.stream.write_all(b"END\r\n").map_err(|e| e.to_string())?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "connect: {} connections in {secs:.2} s, {:.0}/s; connect to HELLO +OK: {}",
        o.connections,
        o.connections as f64 / secs,
        lat.summary()
    );
    Ok(())
}

/// `--mode idle`: N connections that said HELLO and stay idle; a probe PUSHes meanwhile.
fn idle_mode(o: &Opts) -> Result<(), String> {
    let before = o.pid.and_then(server_rss_mb);
    let start = Instant::now();
    let mut idle = Vec::with_capacity(o.connections);
    for i in 0..o.connections {
        idle.push(Conn::open(&o.url).map_err(|e| format!("idle connection {i}: {e}"))?);
    }
    let opened = start.elapsed().as_secs_f64();
    let after = o.pid.and_then(server_rss_mb);
    let mut probe = Conn::open(&o.url)?;
    let mut lat = Lat::default();
    let hold = Instant::now();
    let mut n = 0;
    while hold.elapsed() < Duration::from_secs(o.hold_secs) {
        let line = format!("PUSH {}", job_json(n));
        match lat.time(|| probe.call(line.as_bytes()))? {
            Frame::Simple(_) => n += 1,
            other => return Err(format!("probe PUSH failed: {other:?}")),
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Every idle connection is still served.
    for (i, c) in idle.iter_mut().enumerate() {
        if !matches!(c.call(b"INFO")?, Frame::Bulk(Some(_))) {
            return Err(format!("idle connection {i} was not answered"));
        }
    }
    println!(
        "idle: {} connections opened in {opened:.1} s; probe PUSH while they stay: {}",
        o.connections,
        lat.summary()
    );
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "idle: server rss {b:.1} MB before, {a:.1} MB with them open: {:.1} KB per connection",
            (a - b) * 1024.0 / o.connections as f64
        );
    }
    Ok(())
}

/// `--mode core`: the state machine alone, in-process: PUSH all, then FETCH + ACK all.
fn core_mode(jobs: usize) -> Result<(), String> {
    use werk::clock::{Clock, ManualClock};
    use werk::command::Command;
    use werk::core::{ConnId, Core, CoreConfig, Response};
    let clock = ManualClock::new(
        werk::timestamp::Timestamp::parse_rfc3339("2026-01-01T00:00:00Z")
            .map_err(|e| e.to_string())?,
    );
    let config = CoreConfig {
        recording: true,
        ..CoreConfig::default()
    };
    let mut core = Core::new(config, clock.now(), 1);
    let mut out = Vec::new();
    let mut journal = Vec::new();
    let start = Instant::now();
    let mut apply = |core: &mut Core, line: &[u8]| -> Result<Vec<u8>, String> {
        let cmd = Command::parse(line).map_err(|e| e.to_string())?;
        out.clear();
        match core.apply(ConnId(1), cmd, clock.now()) {
            Response::Reply(r) => r.encode(&mut out),
            other => return Err(format!("unexpected {other:?}")),
        }
        for r in core.effects().records.drain(..) {
            werk::journal::record::encode(&r, &mut journal);
        }
        journal.clear();
        Ok(out.clone())
    };
    for i in 0..jobs {
        apply(&mut core, format!("PUSH {}", job_json(i)).as_bytes())?;
    }
    for i in 0..jobs {
        let reply = apply(&mut core, b"FETCH bench")?;
        if reply.len() < 10 {
            return Err(format!("FETCH {i} got nothing"));
        }
        apply(
            &mut core,
            format!(r#"ACK {{"jid":"bench{i:012}"}}"#).as_bytes(),
        )?;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "core: {jobs} jobs through PUSH, FETCH and ACK (parse, apply, journal encode, reply): \
         {:.0} ns per job",
        secs * 1e9 / jobs as f64
    );
    Ok(())
}

fn main() {
    let result = parse_opts().and_then(|o| run(&o));
    if let Err(e) = result {
        eprintln!("werk-bench: {e}");
        std::process::exit(2);
    }
}
