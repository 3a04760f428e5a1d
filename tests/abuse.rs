//! Hostile and careless clients against the real binary: every limit at N and N+1, then floods
//! (a 100,000-job PUSHB, 5,000 sockets that never say HELLO, a HELLO flood with wrong passwords,
//! a client that sends without reading, slowloris on the Web UI). Throughout each flood a
//! well-behaved client ([`Probe`]) runs PUSH, FETCH, ACK in a loop on its own connection; its
//! round-trips (99th percentile and worst) and the server's resident memory (`/proc/PID/status`)
//! are measured and printed (`cargo test --test abuse -- --nocapture` shows them), and asserted
//! against generous bounds. The floods run one at a time (a shared lock), so their figures do
//! not mix.
//!
//! Servers here run with `--sync none`: the latency measured is the loop's (what a flood costs
//! other clients), not the disk's.

mod harness;
/// The Web UI tests' HTTP helpers (requests, and the base64 encoder for basic auth).
#[path = "common/http.rs"]
#[allow(dead_code)]
mod http;

use harness::{
    bulk, err, holds_for, info, job, ok, pwdhash, raise_own_nofile, rss_kib, run_to_exit,
    set_own_soft_nofile, wait_until, Raw, Werk,
};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use werk::resp::Frame;

/// The 99th percentile of the well-behaved client's round-trips allowed during a flood (debug
/// build, 2 shared cores; see [`ProbeReport::p99`]): generous, so that only a loop slowed by the
/// flood fails it.
const LATENCY_BOUND: Duration = Duration::from_millis(500);
/// Its worst round-trip allowed: much looser, as one scheduler hiccup on a loaded machine can
/// take hundreds of milliseconds. (So one stall of the loop shorter than this passes; a loop
/// slowed for longer shows in the percentile.)
const WORST_LATENCY_BOUND: Duration = Duration::from_secs(3);
/// Resident memory allowed to the server during a flood.
const RSS_BOUND_KIB: u64 = 200 * 1024;

/// One flood at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------
// Measuring: resident memory, and the well-behaved client
// ---------------------------------------------------------------------------------------------

/// What the well-behaved client saw.
#[derive(Debug)]
struct ProbeReport {
    rounds: u64,
    /// Every command's round-trip.
    samples: Vec<Duration>,
    rss_max_kib: u64,
}

impl ProbeReport {
    /// The 99th percentile, as the slowest round-trip left once the slowest 1 % of them (at
    /// least one) are set aside: one scheduler hiccup on a loaded machine does not count, a
    /// loop slowed by the flood does.
    fn p99(&self) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable();
        let keep = sorted.len() - sorted.len().div_ceil(100);
        sorted[..keep].last().copied().unwrap_or_default()
    }

    fn worst(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }
}

/// A well-behaved client: PUSH, FETCH, ACK on its own queue in a loop (paced at one round per
/// 5 ms), timing every command, and sampling the server's RSS, until stopped.
struct Probe {
    stop: Arc<AtomicBool>,
    handle: std::thread::JoinHandle<ProbeReport>,
}

impl Probe {
    fn start(w: &Werk, password: Option<&str>) -> Probe {
        let mut client = Client::connect(w.addr, Ipv4Addr::LOCALHOST);
        client.hello(password, "{}");
        let pid = w.pid();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut report = ProbeReport {
                rounds: 0,
                samples: Vec::new(),
                rss_max_kib: rss_kib(pid),
            };
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                let jid = format!("probe-{n:010}");
                let mut timed = |line: &str| {
                    let start = Instant::now();
                    let reply = client.cmd(line);
                    report.samples.push(start.elapsed());
                    reply
                };
                assert_eq!(timed(&format!("PUSH {}", job(&jid, "probe"))), ok());
                let fetched = bulk(timed("FETCH probe"));
                assert!(fetched.contains(&jid), "probe fetched {fetched}");
                assert_eq!(timed(&format!(r#"ACK {{"jid":"{jid}"}}"#)), ok());
                report.rounds += 1;
                report.rss_max_kib = report.rss_max_kib.max(rss_kib(pid));
                std::thread::sleep(Duration::from_millis(5));
            }
            report
        });
        // At least one round before the flood starts, so the probe is known to work.
        Probe { stop, handle }
    }

    fn finish(self) -> ProbeReport {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("the well-behaved client failed")
    }
}

/// Prints and checks the figures of one flood.
fn report(what: &str, probe: ProbeReport, rss_before: u64, rss_after: u64) {
    let (p99, worst) = (probe.p99(), probe.worst());
    eprintln!(
        "abuse figures: {what}: well-behaved client {} rounds, round-trip p99 {:.1} ms, worst \
         {:.1} ms; server RSS before {:.1} MB, max during {:.1} MB, after {:.1} MB",
        probe.rounds,
        p99.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3,
        rss_before as f64 / 1024.0,
        probe.rss_max_kib as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    assert!(
        probe.rounds > 0,
        "{what}: the well-behaved client never got through"
    );
    assert!(
        p99 < LATENCY_BOUND,
        "{what}: round-trip p99 {p99:?} ({} round-trips)",
        probe.samples.len()
    );
    assert!(
        worst < WORST_LATENCY_BOUND,
        "{what}: worst round-trip {worst:?}"
    );
    assert!(
        probe.rss_max_kib < RSS_BOUND_KIB && rss_after < RSS_BOUND_KIB,
        "{what}: RSS {} KiB during, {rss_after} KiB after",
        probe.rss_max_kib
    );
}

// ---------------------------------------------------------------------------------------------
// A raw client that can choose its source address (127.0.0.0/8 is all loopback on Linux)
// ---------------------------------------------------------------------------------------------

struct Client {
    raw: Raw,
}

impl Client {
    fn connect(addr: SocketAddr, from: Ipv4Addr) -> Client {
        let stream = connect_from(addr, from).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Client {
            raw: Raw::from_stream(stream),
        }
    }

    /// Reads one reply; `None` at EOF or reset.
    fn reply(&mut self) -> Option<Frame> {
        self.raw.reply()
    }

    fn send(&mut self, line: &str) {
        self.raw.send(line);
    }

    fn cmd(&mut self, line: &str) -> Frame {
        self.raw.cmd(line)
    }

    /// Reads HI and sends HELLO (with `fields`, a JSON object, plus the password hash when
    /// `password` is given); returns the reply, `None` if the server closed instead.
    fn try_hello(&mut self, password: Option<&str>, fields: &str) -> Option<Frame> {
        let hello = self.hello_line(password, fields);
        self.send(&hello);
        self.reply()
    }

    /// Reads HI and returns the HELLO line [`Client::try_hello`] sends.
    fn hello_line(&mut self, password: Option<&str>, fields: &str) -> String {
        let hi = self.hi();
        let mut hello: serde_json::Value = serde_json::from_str(fields).expect("fields");
        if let Some(p) = password {
            let rounds = hi["i"].as_u64().expect("i");
            let salt = hi["s"].as_str().expect("s");
            hello["pwdhash"] = pwdhash(p, salt, rounds).into();
            hello["v"] = 2.into();
        }
        format!("HELLO {hello}")
    }

    /// Reads the HI line's JSON.
    fn hi(&mut self) -> serde_json::Value {
        match self.reply() {
            Some(Frame::Simple(hi)) => {
                serde_json::from_str(hi.strip_prefix("HI ").expect("HI")).expect("HI JSON")
            }
            other => panic!("expected HI, got {other:?}"),
        }
    }

    fn hello(&mut self, password: Option<&str>, fields: &str) {
        assert_eq!(self.try_hello(password, fields), Some(ok()));
    }

    /// True when the server closes the connection without sending anything more.
    fn closed(&mut self) -> bool {
        self.reply().is_none()
    }
}

fn connect_from(addr: SocketAddr, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::V4(SocketAddrV4::new(from, 0)).into())?;
    socket.connect(&addr.into())?;
    Ok(socket.into())
}

// ---------------------------------------------------------------------------------------------
// Every limit at N and N+1, through the binary
// ---------------------------------------------------------------------------------------------

#[test]
fn job_limits_at_n_and_n_plus_one() {
    let w = Werk::start_with(&["--pushb-jobs-max", "3"], &[]);
    let mut raw = Raw::ready(w.addr, "{}");
    let jobs = |n: usize, tag: &str| {
        (0..n)
            .map(|i| job(&format!("{tag}-{i:06}"), "lim"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        bulk(raw.cmd(&format!("PUSHB [{}]", jobs(3, "three")))),
        "{}"
    );
    assert_eq!(
        raw.cmd(&format!("PUSHB [{}]", jobs(4, "four"))),
        err("too many jobs in PUSHB: the limit is 3")
    );
    assert_eq!(
        info(&mut raw)["faktory"]["queues"]["lim"],
        3,
        "nothing of the 4 pushed"
    );

    let push = |raw: &mut Raw, jobtype: &str, queue: &str, args: &str| {
        raw.cmd(&format!(
            r#"PUSH {{"jid":"limits-0001","jobtype":"{jobtype}","queue":"{queue}","args":{args}}}"#
        ))
    };
    let nest = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let (t256, q128) = ("t".repeat(256), "q".repeat(128));
    assert_eq!(push(&mut raw, &t256, &q128, &nest(126)), ok());
    assert_eq!(
        push(&mut raw, &format!("{t256}t"), "q", "[]"),
        err("jobs cannot have a jobtype longer than 256 bytes")
    );
    assert_eq!(
        push(&mut raw, "T", &format!("{q128}q"), "[]"),
        err("jobs cannot have a queue name longer than 128 bytes")
    );
    assert_eq!(
        push(&mut raw, "T", "q", &nest(127)),
        err("invalid JSON: nested deeper than 127 levels")
    );
    // 100,000 levels of args used to be stored (and handed to clients that cannot decode them).
    assert_eq!(
        push(&mut raw, "T", "q", &nest(100_000)),
        err("invalid JSON: nested deeper than 127 levels")
    );
    let deep_custom = format!(
        r#"PUSH {{"jid":"limits-0002","jobtype":"T","args":[],"custom":{}1{}}}"#,
        r#"{"a":"#.repeat(127),
        "}".repeat(127)
    );
    assert_eq!(
        raw.cmd(&deep_custom),
        err("invalid JSON: nested deeper than 127 levels")
    );
    // The stored job at the limits comes back whole.
    let fetched: serde_json::Value =
        serde_json::from_str(&bulk(raw.cmd(&format!("FETCH {q128}")))).unwrap();
    assert_eq!(fetched["jobtype"], t256.as_str());
}

#[test]
fn connection_and_socket_limits_at_n_and_n_plus_one() {
    let mut w = Werk::start_with(&["--connections-max", "2", "--sockets-max", "3"], &[]);
    let _a = Raw::ready(w.addr, "{}");
    let _b = Raw::ready(w.addr, "{}");
    // Identified connection N+1: +OK, then Faktory's error, then close.
    let (mut c, _) = Raw::connect(w.addr);
    assert_eq!(c.cmd("HELLO {}"), ok());
    assert_eq!(c.reply(), Some(err("too many connections: 3")));
    assert!(c.closed());
    // Sockets: a, b and one in its handshake make 3; the 4th is refused before HI.
    let (_pending, hi) = Raw::connect(w.addr);
    assert!(hi.starts_with("HI "), "{hi}");
    let mut over = Client::connect(w.addr, Ipv4Addr::LOCALHOST);
    assert_eq!(
        over.reply(),
        Some(err("overloaded: too many connections open, the limit is 3"))
    );
    assert!(over.closed());
    // The log is read on another thread: wait for the line rather than race it.
    assert!(wait_until(Duration::from_secs(5), || w.logged(
        "3 protocol connections open (--sockets-max): refusing new ones"
    )));
    // When one closes, a new one is served again.
    drop(_pending);
    assert!(
        wait_until(Duration::from_secs(5), || {
            let mut c = Client::connect(w.addr, Ipv4Addr::LOCALHOST);
            matches!(c.reply(), Some(Frame::Simple(hi)) if hi.starts_with("HI "))
        }),
        "no connection served after one closed"
    );
    assert!(wait_until(Duration::from_secs(5), || w
        .logged("accepting connections again;")));
    assert!(w.alive());
}

/// The first line is read before the client has proven anything, so it has its own, small
/// bound (64 KiB); after HELLO the command line limit applies.
#[test]
fn the_hello_line_has_its_own_bound() {
    const HELLO_BYTES_MAX: usize = 64 << 10;
    let w = Werk::start();
    let hello = |len: usize| {
        let head = r#"HELLO {"hostname":""#;
        let pad = len - head.len() - 2;
        format!("{head}{}\"}}", "h".repeat(pad))
    };
    assert_eq!(hello(HELLO_BYTES_MAX).len(), HELLO_BYTES_MAX);
    let (mut c, _) = Raw::connect(w.addr);
    assert_eq!(c.cmd(&hello(HELLO_BYTES_MAX)), ok());
    // After HELLO, a longer line is fine.
    let big = format!(
        r#"PUSH {{"jid":"after-hello","jobtype":"T","args":["{}"]}}"#,
        "x".repeat(1 << 20)
    );
    assert_eq!(c.cmd(&big), ok());
    let (mut c, _) = Raw::connect(w.addr);
    c.send(&hello(HELLO_BYTES_MAX + 1));
    assert_eq!(
        c.reply(),
        Some(err("command line too long: the limit is 65536 bytes"))
    );
    assert!(c.closed());
}

/// werk raises its soft open-file limit as far as it needs, and lowers its socket cap (with a
/// warning) when the hard limit leaves no room: it meets a flood with its cap, never EMFILE.
#[test]
fn a_small_open_file_limit_lowers_the_socket_cap() {
    let dir = harness::temp_dir("nofile");
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 200 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_werk"))
        .args([
            "-b",
            "127.0.0.1:0",
            "-w",
            "127.0.0.1:0",
            "--web-connections-max",
            "10",
        ])
        .arg("-d")
        .arg(&dir)
        // Isolated from the machine as the harness's werk is: no config directory, nothing
        // inherited that changes the log or the password.
        .arg("-c")
        .arg(dir.join("no-config"))
        .env_remove("FAKTORY_PASSWORD")
        .env_remove("FAKTORY_ENV")
        .env_remove("FAKTORY_SKIP_PASSWORD")
        .env_remove("WERK_LOG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn werk under sh");
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let mut log = Vec::new();
    let addr: SocketAddr = loop {
        let line = lines.next().expect("werk exited").unwrap();
        log.push(line.clone());
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    // 200 descriptors, minus 64 reserved and 2 x 10 for the Web UI.
    let want = "the open-file limit is 200 (hard limit 200): room for 116 protocol connections, \
                so --sockets-max is lowered from 3000 to 116 (below --connections-max)";
    assert!(
        log.iter().any(|l| l.contains(want)),
        "no warning in {log:#?}"
    );
    assert!(addr.port() > 0);
}

// ---------------------------------------------------------------------------------------------
// Floods
// ---------------------------------------------------------------------------------------------

fn tiny_jobs(range: std::ops::Range<usize>) -> String {
    let jobs: Vec<String> = range
        .map(|i| format!(r#"{{"jid":"tiny{i:08}","jobtype":"T","args":[]}}"#))
        .collect();
    format!("PUSHB [{}]", jobs.join(","))
}

#[test]
fn pushb_of_100000_tiny_jobs() {
    let _serial = serial();
    let w = Werk::start_with(&["--sync", "none"], &[]);
    let rss_before = rss_kib(w.pid());
    let probe = Probe::start(&w, None);
    let mut raw = Raw::ready(w.addr, "{}");
    // One PUSHB of 100,000: refused whole, at once, naming the limit.
    let start = Instant::now();
    assert_eq!(
        raw.cmd(&tiny_jobs(0..100_000)),
        err("too many jobs in PUSHB: the limit is 10000")
    );
    let refused_in = start.elapsed();
    assert_eq!(
        info(&mut raw)["faktory"]["queues"]["default"],
        serde_json::Value::Null
    );
    // The same 100,000 as ten PUSHBs of 10,000, sent back to back: all stored.
    let batches: Vec<String> = (0..10)
        .map(|b| tiny_jobs(b * 10_000..(b + 1) * 10_000))
        .collect();
    let start = Instant::now();
    let mut writer = raw.stream.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        for b in batches {
            writer.write_all(format!("{b}\r\n").as_bytes()).unwrap();
        }
    });
    for i in 0..10 {
        assert_eq!(bulk(raw.reply().expect("reply")), "{}", "batch {i}");
    }
    let stored_in = start.elapsed();
    sender.join().unwrap();
    assert_eq!(info(&mut raw)["faktory"]["queues"]["default"], 100_000);
    let probe = probe.finish();
    eprintln!(
        "abuse figures: PUSHB of 100,000 tiny jobs refused in {:.1} ms; \
         as 10 x 10,000 stored in {:.0} ms",
        refused_in.as_secs_f64() * 1e3,
        stored_in.as_secs_f64() * 1e3
    );
    report(
        "PUSHB 100,000 tiny jobs",
        probe,
        rss_before,
        rss_kib(w.pid()),
    );

    // With the limit raised, one PUSHB of 100,000 is one long turn for everyone else: the
    // figure that sets the default.
    let w = Werk::start_with(&["--sync", "none", "--pushb-jobs-max", "100000"], &[]);
    let probe = Probe::start(&w, None);
    let mut raw = Raw::ready(w.addr, "{}");
    let start = Instant::now();
    assert_eq!(bulk(raw.cmd(&tiny_jobs(0..100_000))), "{}");
    let one_batch = start.elapsed();
    assert_eq!(info(&mut raw)["faktory"]["queues"]["default"], 100_000);
    let probe = probe.finish();
    eprintln!(
        "abuse figures: one PUSHB of 100,000 (--pushb-jobs-max 100000) answered in {:.0} ms; \
         the well-behaved client's round-trip meanwhile p99 {:.0} ms, worst {:.0} ms (not \
         asserted)",
        one_batch.as_secs_f64() * 1e3,
        probe.p99().as_secs_f64() * 1e3,
        probe.worst().as_secs_f64() * 1e3
    );
}

/// 5,000 sockets opened as fast as 8 threads can, none of which says HELLO. The HELLO deadline
/// is raised to 30 s so that they are all open together: werk serves up to its socket cap (3,000
/// by default, the well-behaved client's included) and refuses the rest with `-ERR` at once.
#[test]
fn five_thousand_sockets_that_never_say_hello() {
    const SOCKETS: usize = 5000;
    const THREADS: usize = 8;
    let _serial = serial();
    let hard = raise_own_nofile(0);
    assert!(
        hard >= SOCKETS as u64 + 200,
        "this test needs a hard open-file limit of at least {} (it is {hard})",
        SOCKETS + 200
    );
    // werk starts with a soft limit of 1024 (a common default) and must raise its own.
    set_own_soft_nofile(1024);
    let w = Werk::start_with(&["--sync", "none", "--hello-timeout-ms", "30000"], &[]);
    raise_own_nofile(SOCKETS as u64 + 200);
    assert!(
        w.logged("open-file limit raised from 1024 to 3192 (hard limit"),
        "werk did not raise its open-file limit"
    );
    let rss_before = rss_kib(w.pid());
    let probe = Probe::start(&w, None);
    let start = Instant::now();
    let addr = w.addr;
    let connectors: Vec<_> = (0..THREADS)
        .map(|_| {
            std::thread::spawn(move || {
                (0..SOCKETS / THREADS)
                    .map(|_| TcpStream::connect(addr).expect("connect"))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut sockets: Vec<TcpStream> = connectors
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let connected_in = start.elapsed();
    // Each gets an answer: HI, or the overload refusal once the cap is reached. None hangs.
    let (mut greeted, mut refused) = (0, 0);
    for s in &mut sockets {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut first = [0u8; 4];
        s.read_exact(&mut first)
            .expect("every socket gets a first line");
        match &first {
            b"+HI " => greeted += 1,
            b"-ERR" => refused += 1,
            other => panic!("unexpected first bytes {other:?}"),
        }
    }
    let answered_in = start.elapsed();
    let rss_full = rss_kib(w.pid());
    eprintln!(
        "abuse figures: {SOCKETS} sockets without HELLO: connected in {:.0} ms, all answered \
         after {:.0} ms: {greeted} greeted, {refused} refused at the socket cap; server RSS with \
         {greeted} open {:.1} MB",
        connected_in.as_secs_f64() * 1e3,
        answered_in.as_secs_f64() * 1e3,
        rss_full as f64 / 1024.0
    );
    assert_eq!(
        greeted, 2999,
        "the cap is 3000 sockets, the probe holds one"
    );
    assert_eq!(refused, SOCKETS - 2999);
    assert!(wait_until(Duration::from_secs(5), || w.logged(
        "3000 protocol connections open (--sockets-max): refusing new ones"
    )));
    drop(sockets);
    assert!(wait_until(Duration::from_secs(10), || w.logged(&format!(
        "accepting connections again; {refused} refused while 3000 were open"
    ))));
    let mut after = Raw::ready(w.addr, "{}");
    assert_eq!(after.cmd(&format!("PUSH {}", job("after-5000", "x"))), ok());
    let probe = probe.finish();
    report(
        "5,000 sockets that never say HELLO",
        probe,
        rss_before,
        rss_kib(w.pid()),
    );
}

#[test]
fn wrong_passwords_block_an_address_not_its_neighbours() {
    const PW: &str = "s3cret-pw";
    let _serial = serial();
    let w = Werk::start_with(
        &["--sync", "none", "--auth-block-secs", "2"],
        &[("FAKTORY_PASSWORD", PW)],
    );
    let home = Ipv4Addr::new(127, 0, 0, 1);
    // The block begins while werk handles the 5th wrong HELLO: after it was sent, before its
    // reply came back.
    let (mut fifth_sent, mut fifth_answered) = (Instant::now(), Instant::now());
    for i in 0..5 {
        let mut c = Client::connect(w.addr, home);
        let hello = c.hello_line(Some("wrong"), "{}");
        fifth_sent = Instant::now();
        c.send(&hello);
        assert_eq!(c.reply(), Some(err("Invalid password")), "attempt {i}");
        fifth_answered = Instant::now();
        assert!(c.closed());
    }
    assert!(wait_until(Duration::from_secs(5), || w.logged(
        "password: 5 failed attempts from 127.0.0.1 within 60 s: refusing its HELLOs and Web UI \
         logins for 2 s (block 1 of this address)"
    )));
    // The 6th, even with the right password, is refused (without checking it).
    let mut c = Client::connect(w.addr, home);
    let hello = c.hello_line(Some(PW), "{}");
    let mut last_refused_sent = Instant::now();
    assert_eq!(
        c.cmd(&hello),
        err("Invalid password: too many failed attempts from this address, try again in 2 s")
    );
    assert!(c.closed());
    // Another address is unaffected.
    let mut other = Client::connect(w.addr, Ipv4Addr::new(127, 0, 0, 2));
    other.hello(Some(PW), "{}");
    assert_eq!(
        other.cmd(&format!("PUSH {}", job("neighbour-1", "q"))),
        ok()
    );
    // Once the block has passed, the right password works again from the blocked address. It
    // is hashed once, as a client without `v` does: each attempt is quick, so the last refused
    // one is close to the end of the block.
    let mut first_accepted = None;
    assert!(
        wait_until(Duration::from_secs(10), || {
            let mut c = Client::connect(w.addr, home);
            let salt = c.hi()["s"].as_str().expect("s").to_owned();
            let hash = pwdhash(PW, &salt, 1);
            let sent = Instant::now();
            match c.cmd(&format!(r#"HELLO {{"pwdhash":"{hash}"}}"#)) {
                f if f == ok() => {
                    first_accepted = Some(Instant::now());
                    true
                }
                Frame::Error(e) if e.contains("too many failed attempts") => {
                    last_refused_sent = sent;
                    false
                }
                other => panic!("HELLO from the blocked address: {other:?}"),
            }
        }),
        "the address is still blocked 10 s later"
    );
    // Bounds on how long the block lasted, from what the client saw: it ended after the last
    // refused HELLO was sent, and before the first accepted one was answered.
    let at_least = last_refused_sent.saturating_duration_since(fifth_answered);
    let at_most = first_accepted.expect("accepted").duration_since(fifth_sent);
    eprintln!(
        "abuse figures: a 2 s password block lasted more than {:.0} ms and less than {:.0} ms",
        at_least.as_secs_f64() * 1e3,
        at_most.as_secs_f64() * 1e3
    );
    assert!(
        at_least >= Duration::from_millis(1500),
        "the 2 s block is only known to have lasted {at_least:?}: lifted early"
    );
    assert!(
        at_most < Duration::from_secs(5),
        "the 2 s block may have lasted {at_most:?}"
    );

    // The Web UI's basic auth counts against the same table (from a fresh address).
    let web = w.web.expect("web UI on");
    let web_get = |from: Ipv4Addr, password: &str| -> String {
        let mut s = connect_from(web, from).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let auth = http::base64(format!("admin:{password}").as_bytes());
        write!(
            s,
            "GET /stats HTTP/1.1\r\nHost: {web}\r\nAuthorization: Basic {auth}\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        text
    };
    let web_home = Ipv4Addr::new(127, 0, 0, 4);
    assert!(web_get(web_home, PW).starts_with("HTTP/1.1 200"));
    for _ in 0..5 {
        assert!(web_get(web_home, "nope").starts_with("HTTP/1.1 401"));
    }
    let blocked = web_get(web_home, PW);
    assert!(blocked.starts_with("HTTP/1.1 429"), "{blocked}");
    assert!(blocked.contains("Retry-After: 2"), "{blocked}");
    // ... and so is that address's protocol HELLO.
    let mut c = Client::connect(w.addr, web_home);
    assert!(
        matches!(c.try_hello(Some(PW), "{}"), Some(Frame::Error(e)) if e.contains("too many failed attempts"))
    );
}

/// Many connections from one address send wrong HELLOs as fast as they can. Each wrong
/// password costs werk thousands of SHA-256 rounds; once the address is blocked its HELLOs are
/// refused without hashing.
#[test]
fn a_hello_flood_with_wrong_passwords() {
    const PW: &str = "flood-pw";
    const ATTEMPTS: usize = 2000;
    let _serial = serial();
    let w = Werk::start_with(&["--sync", "none"], &[("FAKTORY_PASSWORD", PW)]);
    let rss_before = rss_kib(w.pid());
    let probe = Probe::start(&w, Some(PW));
    let flooder = Ipv4Addr::new(127, 0, 0, 3);
    let start = Instant::now();
    let (mut checked, mut blocked) = (0, 0);
    for _ in 0..ATTEMPTS {
        let mut c = Client::connect(w.addr, flooder);
        // A made-up hash: the flooder spends nothing, werk has to hash to check it.
        c.hi();
        match c.cmd(&format!(
            r#"HELLO {{"v":2,"pwdhash":"{}"}}"#,
            "0".repeat(64)
        )) {
            Frame::Error(e) if e == "ERR Invalid password" => checked += 1,
            Frame::Error(e) if e.contains("too many failed attempts") => blocked += 1,
            other => panic!("unexpected reply {other:?}"),
        }
    }
    let flood = start.elapsed();
    let probe = probe.finish();
    eprintln!(
        "abuse figures: HELLO flood: {ATTEMPTS} wrong HELLOs in {:.0} ms ({checked} checked, \
         {blocked} refused unchecked)",
        flood.as_secs_f64() * 1e3
    );
    assert_eq!(checked, 5, "only the first 5 were hashed");
    assert_eq!(blocked, ATTEMPTS - 5);
    report(
        "HELLO flood (wrong passwords)",
        probe,
        rss_before,
        rss_kib(w.pid()),
    );
}

#[test]
fn a_client_that_sends_without_reading() {
    let _serial = serial();
    let w = Werk::start_with(&["--sync", "none"], &[]);
    let rss_before = rss_kib(w.pid());
    let mut stream = Vec::new();
    for i in 0..200_000 {
        let push = format!("PUSH {}\r\nINFO\r\n", job(&format!("nr-{i:08}"), "nr"));
        stream.extend_from_slice(push.as_bytes());
    }
    let total = stream.len();
    let probe = Probe::start(&w, None);
    let mut watcher = Raw::ready(w.addr, "{}");
    let raw = Raw::ready(w.addr, "{}");
    // PUSHes and INFOs, written without reading a byte: werk must stop reading from this client
    // once its replies pile up, and keep serving the probe meanwhile.
    let mut writer = raw.stream.try_clone().unwrap();
    writer
        .set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let taken = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (sender_taken, sender_stop) = (taken.clone(), stop.clone());
    let sender = std::thread::spawn(move || {
        let mut sent = 0usize;
        // Keep trying until stopped: each write waits up to 200 ms for room.
        while !sender_stop.load(Ordering::Relaxed) && sent < stream.len() {
            match writer.write(&stream[sent..]) {
                Ok(n) => {
                    sent += n;
                    sender_taken.store(sent, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("write: {e}"),
            }
        }
    });
    // werk stops reading this client once its replies pile up: the PUSHes it has applied
    // (another connection's INFO counts them) stop growing, while the sender keeps trying.
    let pushed = |watcher: &mut Raw| info(watcher)["faktory"]["queues"]["nr"].as_u64();
    let start = Instant::now();
    let mut last = (None, Instant::now());
    let settled = wait_until(Duration::from_secs(20), || {
        let n = pushed(&mut watcher);
        if n != last.0 {
            last = (n, Instant::now());
        }
        last.1.elapsed() >= Duration::from_millis(500)
    });
    let settled_at = last.1.saturating_duration_since(start);
    // A writer is also held back (its writes stall) when werk reads it, only slower than it
    // writes, or in bursts. werk has stopped: for another second nothing more is applied.
    let applied = last.0;
    let stopped = settled && holds_for(Duration::from_secs(1), || pushed(&mut watcher) == applied);
    let applied_after = pushed(&mut watcher);
    let sent = taken.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();
    let rss_during = rss_kib(w.pid());
    let probe = probe.finish();
    eprintln!(
        "abuse figures: sender without reading: werk applied {applied:?} of its PUSHes, the \
         last at {:.0} ms ({applied_after:?} a second later); the sender got {:.1} of {:.1} MB \
         of PUSH+INFO through; server RSS then {:.1} MB",
        settled_at.as_secs_f64() * 1e3,
        sent as f64 / 1e6,
        total as f64 / 1e6,
        rss_during as f64 / 1024.0
    );
    // Had werk read everything, the count would stop too: the sender must still be trying.
    assert!(
        sent < total,
        "werk read all {total} bytes from a client that never reads"
    );
    assert!(
        settled,
        "werk kept reading a client that never reads: the PUSHes it applied never stopped \
         growing for 500 ms (last {applied:?})"
    );
    assert!(
        stopped,
        "werk kept reading a client that never reads, in bursts: PUSHes applied {applied:?}, a \
         second later {applied_after:?}"
    );
    report(
        "client sending without reading",
        probe,
        rss_before,
        rss_kib(w.pid()),
    );
}

#[test]
fn slowloris_on_the_web_ui() {
    const SLOW: usize = 300;
    let _serial = serial();
    let w = Werk::start_with(&["--sync", "none", "--web-timeout-ms", "1500"], &[]);
    let web = w.web.expect("web UI on");
    let rss_before = rss_kib(w.pid());
    let probe = Probe::start(&w, None);
    // 300 connections (the limit is 64; past 128 werk closes new ones at once), each trickling
    // a request head one byte every 100 ms, never finishing it.
    let start = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| TcpStream::connect(web).expect("connect"))
        .collect();
    let head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut cut = vec![false; SLOW];
    for (n, byte) in head
        .iter()
        .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
        .enumerate()
    {
        for (i, s) in slow.iter_mut().enumerate() {
            if !cut[i] && s.write_all(&[*byte]).is_err() {
                cut[i] = true;
            }
        }
        if n > 20 && cut.iter().all(|c| *c) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Every slow connection is closed by werk: at once past twice the limit, at the deadline
    // otherwise. A read sees EOF (or a reset).
    let mut closed = 0;
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rest = Vec::new();
        match s.read_to_end(&mut rest) {
            Ok(_) => closed += 1,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => closed += 1,
            Err(e) => panic!("a slow connection was not closed: {e}"),
        }
    }
    let all_closed = start.elapsed();
    // The Web UI serves again.
    let health = http::Req::get("/health").send(web);
    assert_eq!(health.status, 200, "{health:?}");
    let probe = probe.finish();
    eprintln!(
        "abuse figures: slowloris: {SLOW} slow Web UI connections all closed by werk after \
         {:.1} s",
        all_closed.as_secs_f64()
    );
    assert_eq!(closed, SLOW);
    report(
        "slowloris on the Web UI",
        probe,
        rss_before,
        rss_kib(w.pid()),
    );
}

// ---------------------------------------------------------------------------------------------
// Startup rules about passwords
// ---------------------------------------------------------------------------------------------

#[test]
fn production_without_a_password_says_how_to_set_one() {
    let dir = harness::temp_dir("prod");
    let (status, stderr) = run_to_exit(&["-e", "production", "-d", dir.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("set FAKTORY_PASSWORD"), "{stderr}");
    assert!(stderr.contains("[faktory] password in "), "{stderr}");
    assert!(stderr.contains("FAKTORY_SKIP_PASSWORD"), "{stderr}");
}

#[test]
fn listening_beyond_loopback_without_a_password_warns() {
    // Bound to every interface for the moment it takes to read the log line.
    let w = Werk::start_with(&["-b", "0.0.0.0:0", "--no-web"], &[]);
    assert!(
        wait_until(Duration::from_secs(5), || w
            .logged("SECURITY: listening on 0.0.0.0:")),
        "no SECURITY warning"
    );
    drop(w);
    let w = Werk::start_with(&["--no-web"], &[]);
    assert!(!w.logged("SECURITY:"), "a warning on loopback");
}
