//! The event loop: one thread, one `mio::Poll`, owning every socket and the [`Core`].
//!
//! One turn of [`Server::run`]:
//! 1. poll, with the timeout set by the earliest timer (core's and the loop's own handshake
//!    deadlines); read the clock once;
//! 2. accept new connections; for each ready connection read to `WouldBlock`, split lines,
//!    parse, apply to the core, and stage replies in its write buffer;
//! 3. fire due timers (FETCH timeouts, reservations, heartbeats, scheduled jobs) — after the
//!    reads, so a job pushed in this turn reaches a parked fetcher before its timeout fires;
//! 4. carry out the core's effects: replies to parked fetchers, closes;
//! 5. write, then remove connections marked closed.
//!
//! The Web UI listener feeds the same slab: its connections are in [`conn::Phase::Http`], carry
//! one request each (parsed by `web::http`, answered by `web::handle`), and use the same write
//! path, including replies held until the journal is durable when the request changed state.
//! A deadline from accept bounds each one, so a slow client holds a slot for a bounded time.
//!
//! Edge-triggered discipline: every socket is registered once for read and write readiness;
//! reads continue until `WouldBlock` unless the connection's pending output is over its bound
//! (backpressure), in which case `maybe_readable` remembers that the socket still has data.

pub mod backoff;
mod conn;
mod limits;
pub mod tls;

use crate::auth::Challenge;
use crate::clock::{Clock, Now, SystemClock};
use crate::command::line::{LineReader, Status};
use crate::command::{parse_hello, Command, ParseLimits};
use crate::config::Config;
use crate::core::{ConnId, Core, Response, WorkerState};
use crate::journal::{self, writer::Journal};
use crate::resp::Reply;
use crate::timer::TimerWheel;
use crate::web;
use conn::{Conn, Phase, ReadOutcome};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::time::Duration;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);
const SIGNALS: Token = Token(usize::MAX - 3);
const WEB_LISTENER: Token = Token(usize::MAX - 4);
const RELOAD: Token = Token(usize::MAX - 5);
/// How long to wait before accepting again after an accept error such as EMFILE.
const ACCEPT_RETRY_MS: u64 = 100;
/// How often INFO's memory figure is refreshed.
const MEMORY_REFRESH_MS: u64 = 1000;
/// Bytes one `drive` call reads from a connection before letting the others have their turn.
/// A client that pipelines without pause (or never reads its replies) would otherwise keep the
/// loop on its socket for as long as it can send: ten 10,000-job PUSHBs sent back to back held
/// every other client for 1.7 s in a debug build. The rest is read in the next turn, after the
/// other connections' events (see `Server::deferred`).
const READ_BUDGET_BYTES: usize = 4 * conn::READ_CHUNK;
/// Reads of connections still in their TLS handshake that found bytes to process, per loop turn
/// (one that finds nothing, as the read right after accept often does, is not counted). Each
/// can cost the loop a key exchange and a signature (0.1–0.5 ms; more in a debug build), so a
/// crowd of new TLS clients would otherwise stretch one turn to tens of milliseconds for
/// everyone; past the budget, handshaking connections wait for the next turn, as a connection
/// over its read budget does.
pub const TLS_HANDSHAKE_READS_PER_TURN: u32 = 32;
/// Connections accepted per turn; the rest of a burst waits in the backlog for the next turn.
/// 3,000 accepts in one turn took 0.2 s in a debug build, during which nobody else was served.
const ACCEPTS_PER_TURN: usize = 256;

/// Requests from other threads (tests, signal handling, later the Web UI's helpers).
#[derive(Debug)]
enum Control {
    Signal(String, WorkerState),
    Shutdown,
}

/// A handle that other threads use to reach the loop: a channel plus a `mio::Waker`.
#[derive(Clone, Debug)]
pub struct Controller {
    tx: Sender<Control>,
    waker: Arc<Waker>,
}

impl Controller {
    /// Moves worker `wid` (or every worker, for `all`) to `state`; the worker learns of it in
    /// its next BEAT reply.
    pub fn signal_worker(&self, wid: &str, state: WorkerState) {
        self.send(Control::Signal(wid.to_owned(), state));
    }

    /// Asks the loop to stop: it closes every connection and `run` returns.
    pub fn shutdown(&self) {
        self.send(Control::Shutdown);
    }

    fn send(&self, c: Control) {
        if self.tx.send(c).is_ok() {
            if let Err(e) = self.waker.wake() {
                log::error!("cannot wake the event loop: {e}");
            }
        }
    }
}

#[derive(Debug)]
enum NetTimer {
    HelloDeadline(ConnId),
    WebDeadline(ConnId),
    AcceptRetry,
    BackoffSweep,
}

/// The server: listener, connections, core, timers.
#[derive(Debug)]
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    local_addr: SocketAddr,
    conns: Vec<Option<Conn>>,
    generations: Vec<u32>,
    free: Vec<usize>,
    core: Core,
    timers: TimerWheel<NetTimer>,
    clock: SystemClock,
    config: Config,
    control_rx: Receiver<Control>,
    control_tx: Sender<Control>,
    waker: Arc<Waker>,
    accept_paused: bool,
    memory_read_ms: Option<u64>,
    stopping: bool,
    signals: Option<mio::net::UnixStream>,
    /// Read end of the SIGHUP socket pair (see [`Server::reload_on_hup`]).
    reload_signal: Option<mio::net::UnixStream>,
    journal: Journal,
    touched: Vec<usize>,
    scratch: Vec<u8>,
    turns: TurnWatch,
    /// Poll events found by `--sync-gather`'s extra looks (mostly connections whose requests
    /// joined the batch).
    gathered: u64,
    /// Reads left this turn for connections in their TLS handshake.
    tls_handshake_reads_left: u32,
    /// Indices of connections with held output (see [`Server::release_durable`]).
    holding: Vec<usize>,
    /// TLS on both ports when the config directory holds a certificate and key.
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Connections that used their read budget with more to read: driven again next turn.
    deferred: Vec<usize>,
    /// The listener used its accept budget with more connections maybe waiting.
    accept_more: bool,
    web_listener: Option<TcpListener>,
    web_addr: Option<SocketAddr>,
    web_conns: usize,
    csrf_token: String,
    /// Open protocol sockets (identified or not) and their cap (see `limits`).
    sockets: usize,
    sockets_max: usize,
    /// Connections refused at the cap since it was last reached (for the log).
    refused_sockets: u64,
    backoff: backoff::PasswordBackoff,
    backoff_sweep_armed: bool,
}

/// Slowest loop turns, for [`Server::watch_compaction`].
#[derive(Debug, Default)]
struct TurnWatch {
    /// Since the last compaction ended.
    between: Duration,
    /// During the running compaction.
    during: Option<Duration>,
}

impl Server {
    /// Binds the protocol listener and builds the core.
    pub fn bind(config: Config) -> io::Result<Server> {
        let tls = tls::load(&config.config_dir).map_err(io::Error::other)?;
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(config.bind)?;
        limits::widen_backlog(&listener);
        let local_addr = listener.local_addr()?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let (web_listener, web_addr) = match config.web_bind {
            Some(addr) => {
                let mut l = TcpListener::bind(addr)?;
                let bound = l.local_addr()?;
                poll.registry()
                    .register(&mut l, WEB_LISTENER, Interest::READABLE)?;
                (Some(l), Some(bound))
            }
            None => (None, None),
        };
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let clock = SystemClock::new();
        let now = clock.now();
        let seed = now.wall.0 as u64 ^ u64::from(std::process::id());
        let wake = {
            let waker = waker.clone();
            Arc::new(move || {
                if let Err(e) = waker.wake() {
                    log::error!("cannot wake the event loop: {e}");
                }
            })
        };
        let mut core = Core::new(
            crate::core::CoreConfig {
                recording: true,
                ..config.core.clone()
            },
            now,
            seed,
        );
        let options = journal::writer::Options {
            sync: config.sync,
            compact_min_bytes: config.compact_bytes_min,
            inline_sync_max_us: config.sync_inline_us,
            direct_io: config.journal_direct,
            faults: config.faults,
        };
        let started = std::time::Instant::now();
        let (journal, found) = Journal::open(&config.data_dir, options, wake, &mut |r| {
            core.replay(r, now).map_err(|e| e.to_string())
        })
        .map_err(|e| io::Error::other(e.to_string()))?;
        log::info!(
            "data {}: recovered a snapshot of {} records ({} bytes) and {} journal records \
             ({} bytes in {} file(s)) in {} ms; appending to generation {}",
            config.data_dir.display(),
            found.snapshot_records,
            found.snapshot_bytes,
            found.journal_records,
            found.journals_bytes,
            found.journals,
            started.elapsed().as_millis(),
            journal.generation()
        );
        let (control_tx, control_rx) = channel();
        let sockets_max = limits::fit_sockets_to_fd_limit(&config);
        let backoff = backoff::PasswordBackoff::new(config.auth_backoff);
        Ok(Server {
            poll,
            listener,
            local_addr,
            conns: Vec::new(),
            generations: Vec::new(),
            free: Vec::new(),
            core,
            timers: TimerWheel::new(now.mono_ms),
            clock,
            config,
            control_rx,
            control_tx,
            waker,
            accept_paused: false,
            memory_read_ms: None,
            stopping: false,
            signals: None,
            reload_signal: None,
            journal,
            touched: Vec::new(),
            scratch: vec![0; conn::READ_CHUNK],
            turns: TurnWatch::default(),
            gathered: 0,
            tls_handshake_reads_left: TLS_HANDSHAKE_READS_PER_TURN,
            holding: Vec::new(),
            tls,
            deferred: Vec::new(),
            accept_more: false,
            web_listener,
            web_addr,
            web_conns: 0,
            csrf_token: crate::auth::random_token(),
            sockets: 0,
            sockets_max,
            refused_sockets: 0,
            backoff,
            backoff_sweep_armed: false,
        })
    }

    /// Stops the loop gracefully on SIGTERM and SIGINT: the signal handler only writes a byte to
    /// a socket pair, whose read end the loop polls like any other socket.
    pub fn stop_on_signals(&mut self) -> io::Result<()> {
        let pipe = self.signal_pipe(
            &[signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT],
            SIGNALS,
        )?;
        self.signals = Some(pipe);
        Ok(())
    }

    /// A socket pair whose write end the handlers of `signals` write a byte to, and whose read
    /// end is registered in the poll under `token`: signals arrive as readable events, and
    /// nothing runs in signal context.
    fn signal_pipe(&self, signals: &[i32], token: Token) -> io::Result<mio::net::UnixStream> {
        let (read, write) = std::os::unix::net::UnixStream::pair()?;
        read.set_nonblocking(true)?;
        for &signal in signals {
            signal_hook::low_level::pipe::register(signal, write.try_clone()?)?;
        }
        let mut read = mio::net::UnixStream::from_std(read);
        self.poll
            .registry()
            .register(&mut read, token, Interest::READABLE)?;
        Ok(read)
    }

    fn on_signal(&mut self) {
        let Some(pipe) = self.signals.as_mut() else {
            return;
        };
        drain_signal_pipe(pipe);
        if !self.stopping {
            log::info!("signal received: closing connections and exiting");
            self.stopping = true;
            exit_if_stuck(self.config.shutdown_timeout_ms);
        }
    }

    /// Re-reads the config on SIGHUP, delivered like SIGTERM through a socket pair the loop
    /// polls (so nothing runs in signal context).
    pub fn reload_on_hup(&mut self) -> io::Result<()> {
        let pipe = self.signal_pipe(&[signal_hook::consts::SIGHUP], RELOAD)?;
        self.reload_signal = Some(pipe);
        Ok(())
    }

    /// SIGHUP: reads the flags, environment and `conf.d` files again and applies what can
    /// change at run time (the passwords, the log level), logging each change. The files are a
    /// few small local files, read synchronously in this turn. A bad config is logged and the
    /// running one stays.
    fn on_hup(&mut self) {
        let Some(pipe) = self.reload_signal.as_mut() else {
            return;
        };
        drain_signal_pipe(pipe);
        log::info!(
            "SIGHUP: reading the config again from {}",
            self.config.config_dir.display()
        );
        let new = match self.config.reread(|k| std::env::var(k).ok()) {
            Ok(c) => c,
            Err(e) => {
                log::error!("config reload failed, the running config stays: {e}");
                return;
            }
        };
        for warning in &new.warnings {
            log::warn!("{warning}");
        }
        let reload = self.config.reload(new);
        // Log at the more verbose of the two levels, so lowering it does not hide the news.
        let old_level = log::max_level();
        if let Some(level) = reload.log_level {
            log::set_max_level(level.max(old_level));
        }
        if reload.changes.is_empty() {
            log::info!("config reloaded: nothing changed");
        }
        for change in &reload.changes {
            log::info!("config reloaded: {change}");
        }
        if let Some(level) = reload.log_level {
            log::set_max_level(level);
        }
    }

    /// The address the listener is bound to (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the Web UI listens on, when it is on.
    pub fn web_addr(&self) -> Option<SocketAddr> {
        self.web_addr
    }

    /// A handle for other threads.
    pub fn controller(&self) -> Controller {
        Controller {
            tx: self.control_tx.clone(),
            waker: self.waker.clone(),
        }
    }

    /// Runs the loop until [`Controller::shutdown`].
    pub fn run(mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        while !self.stopping {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let turn_started = std::time::Instant::now();
            let now = self.clock.now();
            self.refresh_memory(now);
            self.tls_handshake_reads_left = TLS_HANDSHAKE_READS_PER_TURN;
            self.begin_turn(now);
            // Connections cut short by their read budget last turn go on after this turn's
            // events: every other ready client is served in between. Handshakes put off by the
            // TLS budget go first, oldest first, before this turn's new connections take the
            // budget: in a storm of ClientHellos the oldest would otherwise wait until their
            // HELLO deadline closed them.
            let deferred = std::mem::take(&mut self.deferred);
            let (handshakes, deferred): (Vec<usize>, Vec<usize>) =
                deferred.into_iter().partition(|&idx| {
                    self.conns
                        .get(idx)
                        .and_then(Option::as_ref)
                        .is_some_and(Conn::tls_handshaking)
                });
            self.drive_deferred(handshakes, now);
            self.dispatch(&events, now);
            self.gather(&mut events, now);
            self.drive_deferred(deferred, now);
            if self.accept_more {
                self.accept(now);
            }
            self.fire_timers(now);
            self.carry_out_effects(now);
            self.commit(now);
            self.watch_compaction(turn_started.elapsed());
        }
        self.finish_journal();
        self.close_all();
        Ok(())
    }

    /// Drives connections deferred last turn, in the order they were deferred, each once (a
    /// connection deferred twice, or already driven this turn, has `deferred` cleared).
    fn drive_deferred(&mut self, deferred: Vec<usize>, now: Now) {
        for idx in deferred {
            if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                if c.deferred {
                    c.deferred = false;
                    self.drive(idx, now);
                }
            }
        }
    }

    /// What a turn does before its events: control requests first (a signal sent before a
    /// client's command reaches the core before that command, even when both arrive in one
    /// poll), then finished syncs release the replies they cover.
    fn begin_turn(&mut self, now: Now) {
        self.control();
        if self.journal.poll(now.mono_ms) || self.journal.failed().is_some() {
            self.release_durable(now);
        }
    }

    fn dispatch(&mut self, events: &Events, now: Now) {
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept(now),
                WEB_LISTENER => self.accept_web(now),
                WAKER => {}
                SIGNALS => self.on_signal(),
                RELOAD => self.on_hup(),
                Token(idx) => {
                    if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                        c.maybe_readable |= event.is_readable() || event.is_read_closed();
                        c.read_closed |= event.is_read_closed();
                        // A deferred connection is driven once, after the events.
                        if !c.deferred {
                            self.drive(idx, now);
                        }
                    }
                }
            }
        }
    }

    /// Group commit, widened: with `--sync always`, when this turn's records are about to be
    /// synced, look again (without waiting) for connections that became readable while the
    /// turn ran, up to `--sync-gather` times, and take their requests into the same batch.
    /// With 20 closed-loop clients the turn's events bring about half of them: the other half
    /// is mid-way between its reply and its next request, and without this waits a whole sync
    /// for the next batch (measured: 11 requests per sync without, 14 with three looks;
    /// docs/BENCHMARKS.md). Each look is one `epoll_wait` that returns at once; the looks stop
    /// at the first that finds nothing, so a quiet server makes one at most.
    fn gather(&mut self, events: &mut Events, now: Now) {
        for _ in 0..self.config.sync_gather {
            if self.core.effects().records.is_empty() || !self.journal.would_sync_now() {
                return;
            }
            match self.poll.poll(events, Some(Duration::ZERO)) {
                Ok(()) if !events.is_empty() => {}
                _ => return,
            }
            self.gathered += events.iter().count() as u64;
            self.begin_turn(now);
            self.dispatch(events, now);
        }
    }

    /// Tracks the slowest loop turn while a compaction runs, and logs it when it ends next to
    /// the slowest turn between the previous compaction and this one (the baseline under the
    /// same load), so the cost of compaction to the loop is measured, not assumed.
    fn watch_compaction(&mut self, turn: Duration) {
        let compacting = self.journal.compacting();
        let w = &mut self.turns;
        if compacting {
            w.during = Some(w.during.map_or(turn, |t| t.max(turn)));
            return;
        }
        match w.during.take() {
            Some(during) => {
                log::info!(
                    "compaction: slowest loop turn while it ran {:.3} ms; before it {:.3} ms",
                    during.as_secs_f64() * 1e3,
                    w.between.as_secs_f64() * 1e3
                );
                w.between = turn;
            }
            None => w.between = w.between.max(turn),
        }
    }

    fn poll_timeout(&mut self) -> Option<Duration> {
        if !self.deferred.is_empty() || self.accept_more {
            return Some(Duration::ZERO);
        }
        let next = [
            self.core.next_wakeup_ms(),
            self.timers.next_wakeup(),
            self.journal.next_deadline_ms(),
        ]
        .into_iter()
        .flatten()
        .min();
        let now = self.clock.now().mono_ms;
        next.map(|t| Duration::from_millis(t.saturating_sub(now)))
    }

    fn refresh_memory(&mut self, now: Now) {
        if self
            .memory_read_ms
            .is_some_and(|t| now.mono_ms < t + MEMORY_REFRESH_MS)
        {
            return;
        }
        self.memory_read_ms = Some(now.mono_ms);
        self.core.set_used_memory_mb(resident_mb());
    }

    fn control(&mut self) {
        while let Ok(c) = self.control_rx.try_recv() {
            match c {
                Control::Signal(wid, state) => {
                    let n = self.core.signal_worker(&wid, state);
                    log::info!(
                        "signalled {} to {n} worker(s) matching {wid:?}",
                        state.as_str()
                    );
                }
                Control::Shutdown => {
                    log::info!("shutting down");
                    self.stopping = true;
                }
            }
        }
    }

    // ----- accept ----------------------------------------------------------------------------

    fn accept(&mut self, now: Now) {
        self.accept_more = false;
        // Stopping: the listener's backlog is left to be refused when the process exits.
        if self.accept_paused || self.stopping {
            return;
        }
        for _ in 0..ACCEPTS_PER_TURN {
            match self.listener.accept() {
                Ok((stream, peer)) if self.sockets >= self.sockets_max => {
                    self.refuse_socket(stream, peer);
                }
                Ok((stream, peer)) => self.open(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: retry later instead of spinning on a full table.
                    log::warn!("accept failed: {e}; retrying in {ACCEPT_RETRY_MS} ms");
                    self.accept_paused = true;
                    self.timers
                        .insert(now.mono_ms + ACCEPT_RETRY_MS, NetTimer::AcceptRetry);
                    return;
                }
            }
        }
        // The budget is spent and the backlog may hold more (edge-triggered: no new event
        // will say so): go on next turn, after the other clients.
        self.accept_more = true;
    }

    fn accept_web(&mut self, now: Now) {
        if self.accept_paused || self.stopping {
            return;
        }
        loop {
            let Some(listener) = self.web_listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.open_web(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::warn!("web accept failed: {e}; retrying in {ACCEPT_RETRY_MS} ms");
                    self.accept_paused = true;
                    self.timers
                        .insert(now.mono_ms + ACCEPT_RETRY_MS, NetTimer::AcceptRetry);
                    return;
                }
            }
        }
    }

    /// Takes a connection slot and registers `stream` under its token.
    fn register(&mut self, stream: &mut TcpStream) -> Option<(usize, ConnId)> {
        let idx = self.free.pop().unwrap_or_else(|| {
            self.conns.push(None);
            self.generations.push(0);
            self.conns.len() - 1
        });
        self.generations[idx] = self.generations[idx].wrapping_add(1);
        let id = ConnId((u64::from(self.generations[idx]) << 32) | idx as u64);
        if let Err(e) = stream.set_nodelay(true) {
            log::debug!("set_nodelay: {e}");
        }
        if let Err(e) = self.poll.registry().register(
            stream,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            log::warn!("cannot register a new connection: {e}");
            self.free.push(idx);
            return None;
        }
        Some((idx, id))
    }

    /// A Web UI connection: one request within the deadline. Past the connection limit its
    /// request is read (so closing does not reset the connection under the response) and
    /// answered `503`; past twice the limit it is closed at once.
    fn open_web(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Now) {
        if self.web_conns >= 2 * self.config.web_connections_max {
            log::debug!("web: {} connections open; dropping one", self.web_conns);
            return;
        }
        let Some((idx, id)) = self.register(&mut stream) else {
            return;
        };
        let deadline = self.timers.insert(
            now.mono_ms + self.config.web_request_timeout_ms,
            NetTimer::WebDeadline(id),
        );
        let refuse = self.web_conns >= self.config.web_connections_max;
        if refuse {
            log::warn!(
                "web: {} connections open (the limit is {}); refusing one with 503",
                self.web_conns,
                self.config.web_connections_max
            );
        }
        let mut conn = Conn::new(stream, id, Phase::Http { deadline, refuse }, 0);
        conn.peer = Some(peer.ip());
        self.start_tls(&mut conn);
        self.web_conns += 1;
        self.conns[idx] = Some(conn);
        self.drive(idx, now);
    }

    fn open(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Now) {
        let Some((idx, id)) = self.register(&mut stream) else {
            return;
        };
        self.sockets += 1;
        let challenge = self.config.password.as_ref().map(|_| Challenge::random());
        let hi = match &challenge {
            Some(c) => c.hi_json(),
            None => r#"{"v":2}"#.to_owned(),
        };
        let deadline = self.timers.insert(
            now.mono_ms + self.config.hello_timeout_ms,
            NetTimer::HelloDeadline(id),
        );
        let mut conn = Conn::new(
            stream,
            id,
            Phase::Hello {
                challenge,
                deadline,
            },
            // Before HELLO a client has proven nothing: its line is held to a small bound.
            self.config.hello_bytes_max.min(self.config.line_bytes_max),
        );
        conn.peer = Some(peer.ip());
        self.start_tls(&mut conn);
        Reply::Simple(format!("HI {hi}")).encode(&mut conn.wbuf);
        self.conns[idx] = Some(conn);
        self.drive(idx, now);
    }

    /// Gives a new connection its TLS session when TLS is on; a connection that cannot get one
    /// is closed, never served in plain text.
    fn start_tls(&self, conn: &mut Conn) {
        let Some(config) = self.tls.as_ref() else {
            return;
        };
        match tls::session(config) {
            Ok(session) => conn.tls = Some(Box::new(session)),
            Err(e) => {
                log::error!("{:?}: no TLS session: {e}; closing", conn.id);
                conn.broken = true;
            }
        }
    }

    /// True when both ports speak TLS.
    pub fn tls_on(&self) -> bool {
        self.tls.is_some()
    }

    fn index_of(&self, id: ConnId) -> Option<usize> {
        let idx = (id.0 & 0xffff_ffff) as usize;
        self.conns
            .get(idx)
            .and_then(Option::as_ref)
            .filter(|c| c.id == id)
            .map(|_| idx)
    }

    // ----- per-connection work ---------------------------------------------------------------

    /// Processes buffered lines, reads more while allowed, writes, and closes if asked.
    fn drive(&mut self, idx: usize, now: Now) {
        let Some(mut conn) = self.conns.get_mut(idx).and_then(Option::take) else {
            return;
        };
        let mut budget = READ_BUDGET_BYTES;
        loop {
            if matches!(conn.phase, Phase::Http { .. }) {
                self.process_http(&mut conn, now);
            } else {
                self.process_lines(&mut conn, now);
            }
            if conn.pending_out() >= self.config.write_buffer_max && !conn.closing {
                // Backpressure: drain what the socket takes; if that made room, go on with the
                // buffered lines, otherwise wait for the next writable event.
                if let Err(e) = conn.flush() {
                    log::debug!("write error on {:?}: {e}", conn.id);
                    conn.closing = true;
                } else if conn.pending_out() < self.config.write_buffer_max {
                    continue;
                }
                conn.stalled = true;
                break;
            }
            if conn.closing
                || matches!(conn.phase, Phase::Parked)
                || !conn.maybe_readable
                || conn.eof
            {
                break;
            }
            let handshaking = conn.tls_handshaking();
            if handshaking && self.tls_handshake_reads_left == 0 {
                log::debug!(
                    "{:?}: TLS handshake waits for the next turn ({TLS_HANDSHAKE_READS_PER_TURN} \
                     handshake reads this turn)",
                    conn.id
                );
                budget = 0;
            }
            if budget == 0 {
                // More may be waiting (edge-triggered: no new event will say so): next turn.
                conn.deferred = true;
                self.deferred.push(idx);
                break;
            }
            let before = conn.rbuf.len();
            let read = conn.read_some(&mut self.scratch);
            // Only a read that found bytes to process (or failed processing them) counts
            // against the handshake budget: one that finds nothing costs no key exchange.
            if handshaking && !matches!(read, Ok(ReadOutcome::WouldBlock | ReadOutcome::Eof)) {
                self.tls_handshake_reads_left -= 1;
            }
            match read {
                Ok(outcome @ (ReadOutcome::Data | ReadOutcome::Drained)) => {
                    budget = budget.saturating_sub(conn.rbuf.len().saturating_sub(before));
                    // Drained: the socket was empty after this read. Data arriving later raises
                    // a new edge-triggered event, so the read that would only say `WouldBlock`
                    // is skipped (one syscall per request). Unless the peer closed: no event
                    // would come for the end of the stream.
                    if matches!(outcome, ReadOutcome::Drained) && !conn.read_closed {
                        conn.maybe_readable = false;
                    }
                }
                Ok(ReadOutcome::WouldBlock) => conn.maybe_readable = false,
                Ok(ReadOutcome::Eof) => conn.eof = true,
                Err(e) => {
                    log::debug!("read error on {:?}: {e}", conn.id);
                    conn.closing = true;
                }
            }
        }
        if let Err(e) = conn.flush() {
            log::debug!("write error on {:?}: {e}", conn.id);
            conn.broken = true;
        }
        if conn.broken {
            self.close(conn);
            return;
        }
        // Replies written this turn are released (or held for the journal) at the end of the
        // turn, in `commit`; closing waits until they are written.
        if !conn.touched {
            conn.touched = true;
            self.touched.push(idx);
        }
        self.conns[idx] = Some(conn);
    }

    /// End of a turn: stage the turn's records, mark each touched connection's new output as
    /// released or held until the batch that covers it is durable, then write the batch.
    fn commit(&mut self, now: Now) {
        loop {
            let touched = std::mem::take(&mut self.touched);
            if touched.is_empty() && self.core.effects().records.is_empty() {
                return;
            }
            let stalled = self.commit_round(touched);
            // A connection that stopped on its output bound and has room again goes on with its
            // buffered commands (no socket event would wake it) next turn, like one that used its
            // read budget: driving it again here would let a client that never reads keep this
            // turn going for as long as the kernel takes its replies.
            for idx in stalled {
                if let Some(c) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                    c.deferred = true;
                    self.deferred.push(idx);
                }
            }
            self.carry_out_effects(now);
        }
    }

    fn commit_round(&mut self, touched: Vec<usize>) -> Vec<usize> {
        let records = std::mem::take(&mut self.core.effects().records);
        self.journal.stage(&records);
        // Write first: with `--sync none` the batch is durable once written, so this turn's
        // replies go out now; with `always` a sync starts, or the records wait for the next one.
        self.journal.kick();
        let needed = self.journal.needed();
        let mut stalled = Vec::new();
        for idx in touched {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            conn.touched = false;
            let end = conn.wbuf.len();
            if end > conn.released {
                let batch = if conn.needs_journal { needed } else { 0 };
                let batch = batch.max(conn.holds.back().map_or(0, |h| h.0));
                if batch > self.journal.durable() {
                    if conn.holds.is_empty() {
                        self.holding.push(idx);
                    }
                    conn.holds.push_back((batch, end));
                    if self.journal.failed().is_some() {
                        refuse_held(conn, self.journal.failed());
                    }
                } else {
                    conn.release_to(end);
                }
            }
            conn.needs_journal = false;
            self.settle(idx);
            if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                if conn.stalled && conn.pending_out() < self.config.write_buffer_max {
                    conn.stalled = false;
                    stalled.push(idx);
                }
            }
        }
        stalled
    }

    /// Releases held output of the connections that hold some, up to the durable batch (at the start of a
    /// turn, after a sync finished). A released connection is driven: it may have stopped
    /// reading while its output was held. Held replies that can never become durable (the
    /// journal failed) are never sent: they become `-ERR` (see [`refuse_held`]).
    fn release_durable(&mut self, now: Now) {
        let durable = self.journal.durable();
        let failed = self.journal.failed().is_some();
        // Only connections that hold output are visited: O(holders), not O(connections). An
        // index may be stale (the connection closed, or its slot was reused); it is skipped or
        // visited harmlessly, and dropped once its connection holds nothing.
        let mut holding = std::mem::take(&mut self.holding);
        holding.sort_unstable();
        holding.dedup();
        for idx in holding {
            let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
                continue;
            };
            if conn.holds.is_empty() {
                continue;
            }
            while let Some(&(batch, offset)) = conn.holds.front() {
                if batch > durable {
                    break;
                }
                conn.release_to(offset);
                conn.holds.pop_front();
            }
            if failed && !conn.holds.is_empty() {
                refuse_held(conn, self.journal.failed());
            }
            if !conn.holds.is_empty() {
                self.holding.push(idx);
            }
            self.drive(idx, now);
        }
    }

    /// Writes released output, and closes a connection that is done and fully written.
    fn settle(&mut self, idx: usize) {
        let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) else {
            return;
        };
        if let Err(e) = conn.flush() {
            log::debug!("write error on {:?}: {e}", conn.id);
            conn.broken = true;
        }
        // At EOF, lines already received are answered first (a client may half-close after
        // END or after its last command); a partial last line is dropped.
        let done = conn.closing || (conn.eof && !matches!(conn.phase, Phase::Parked));
        if conn.broken || (done && conn.drained()) {
            if let Some(conn) = self.conns[idx].take() {
                self.close(conn);
            }
        }
    }

    /// At shutdown: write and sync what is staged (blocking is fine now), release, write.
    fn finish_journal(&mut self) {
        let records = std::mem::take(&mut self.core.effects().records);
        self.journal.stage(&records);
        self.journal.finish();
        let now = self.clock.now();
        self.release_durable(now);
        for idx in std::mem::take(&mut self.touched) {
            if let Some(conn) = self.conns.get_mut(idx).and_then(Option::as_mut) {
                conn.touched = false;
                if conn.holds.is_empty() {
                    conn.release_to(conn.wbuf.len());
                    let _ = conn.flush();
                }
            }
        }
    }

    fn process_lines(&mut self, conn: &mut Conn, now: Now) {
        let rbuf = std::mem::take(&mut conn.rbuf);
        let mut pos = 0;
        loop {
            if conn.closing
                || matches!(conn.phase, Phase::Parked)
                || conn.pending_out() >= self.config.write_buffer_max
            {
                break;
            }
            let rest = rbuf.get(pos..).unwrap_or_default();
            match conn.reader.next_line(rest) {
                Ok(Status::Partial) => break,
                Ok(Status::Complete((line, used))) => {
                    pos += used;
                    self.handle_line(conn, line, now);
                }
                Err(too_long) => {
                    log::warn!("{:?}: {too_long}; closing", conn.id);
                    Reply::err(too_long).encode(&mut conn.wbuf);
                    conn.closing = true;
                    pos = rbuf.len();
                }
            }
        }
        conn.rbuf = rbuf;
        conn.rbuf.drain(..pos.min(conn.rbuf.len()));
    }

    /// Answers the Web UI request in the read buffer once it is complete. A request that changed
    /// state produced journal records: its response is held like a protocol reply.
    fn process_http(&mut self, conn: &mut Conn, now: Now) {
        if conn.closing {
            return;
        }
        let req = match web::http::parse(&conn.rbuf) {
            Ok(None) => return,
            Ok(Some(req)) => req,
            Err(e) => {
                log::debug!("{:?}: web: {e}", conn.id);
                web::Response::text(e.status(), e.to_string()).encode(&mut conn.wbuf, false);
                conn.closing = true;
                return;
            }
        };
        conn.rbuf.clear();
        if matches!(conn.phase, Phase::Http { refuse: true, .. }) {
            web::Response::text(503, "too many Web UI connections; try again")
                .encode(&mut conn.wbuf, req.head_only);
            conn.closing = true;
            return;
        }
        if let Some(refusal) = self.web_login_blocked(conn, &req, now) {
            refusal.encode(&mut conn.wbuf, req.head_only);
            conn.closing = true;
            return;
        }
        let ctx = web::WebContext {
            password: self.config.web_ui_password(),
            csrf_token: &self.csrf_token,
            facts: web::ServerFacts {
                protocol_addr: self.local_addr,
                web_connections: self.web_conns,
                web_connections_max: self.config.web_connections_max,
                web_request_timeout_ms: self.config.web_request_timeout_ms,
                journal_path: self.journal.dir().display().to_string(),
                journal_bytes: self.journal.bytes(),
                journal_durable: self.journal.durable(),
                journal_failed: self.journal.failed(),
                sync_policy: self.config.sync.as_str(),
                sync_latency: self.journal.sync_latency(),
                sync_gathered: self.gathered,
            },
        };
        let records_before = self.core.effects().records.len();
        let response = web::handle(&mut self.core, &req, &ctx, now);
        self.web_login_result(conn, &req, response.status, now);
        let journaled = self.core.effects().records.len() > records_before;
        // A POST's success speaks of stored state even when it changed nothing (a retry of a
        // job another client has just moved): like a protocol reply, it waits until every
        // earlier change is durable, and is refused with them. GETs are reads, as INFO, and
        // refusals (4xx, 503) say nothing about stored state.
        let stored = req.method == web::Method::Post && response.status == 303;
        conn.needs_journal |= journaled || stored;
        log::debug!(
            "{:?}: web: {:?} {} -> {}",
            conn.id,
            req.method,
            req.path,
            response.status
        );
        let start = conn.wbuf.len();
        response.encode(&mut conn.wbuf, req.head_only);
        if journaled || stored {
            // Held until durable; if the journal fails first it becomes a 503 (`refuse_held`).
            conn.mark_ack(start);
        }
        conn.closing = true;
    }

    fn handle_line(&mut self, conn: &mut Conn, line: &[u8], now: Now) {
        if matches!(conn.phase, Phase::Hello { .. }) {
            return self.handshake(conn, line, now);
        }
        if self.stopping {
            Reply::err("shutdown in progress").encode(&mut conn.wbuf);
            conn.closing = true;
            return;
        }
        let limits = ParseLimits {
            pushb_jobs_max: self.config.pushb_jobs_max,
        };
        match Command::parse_with(line, limits) {
            Err(e) => {
                if e.known_verb() {
                    self.core.count_command();
                }
                log::debug!("{:?}: refused: {e}", conn.id);
                Reply::err(e).encode(&mut conn.wbuf);
            }
            Ok(cmd) => {
                if let Some(why) = self.journal.failed() {
                    if !matches!(cmd, Command::Info | Command::Beat(_) | Command::End) {
                        Reply::err(format_args!("journal unavailable, writes refused: {why}"))
                            .encode(&mut conn.wbuf);
                        return;
                    }
                }
                let records_before = self.core.effects().records.len();
                let stored = cmd.speaks_of_stored_state();
                let response = self.core.apply(conn.id, cmd, now);
                let journaled = self.core.effects().records.len() > records_before;
                // Held until everything staged so far is durable (see
                // `Command::speaks_of_stored_state`), and refused if that fails.
                conn.needs_journal |= journaled || stored;
                match response {
                    Response::Reply(r) => {
                        let start = conn.wbuf.len();
                        r.encode(&mut conn.wbuf);
                        if journaled || stored {
                            conn.mark_ack(start);
                        }
                    }
                    Response::Parked => conn.phase = Phase::Parked,
                    Response::Close => conn.closing = true,
                }
            }
        }
    }

    fn handshake(&mut self, conn: &mut Conn, line: &[u8], now: Now) {
        let Phase::Hello { deadline, .. } = conn.phase else {
            return;
        };
        let Some(hello) = parse_hello(line) else {
            // Not a HELLO (a probe, TLS bytes, a stray command): close without a word.
            log::debug!("{:?}: first line is not a valid HELLO; closing", conn.id);
            conn.closing = true;
            return;
        };
        if !self.password_ok(conn, &hello, now) {
            conn.closing = true;
            return;
        }
        if hello.wid.as_deref().is_some_and(|w| w.contains('\0')) {
            // No client sends one (`\u0000` in JSON), and the journal keeps the wid as raw
            // bytes in each reservation: a long run of zero bytes there would look like a
            // sector that never reached the disk to recovery after a power cut.
            Reply::err("invalid wid: it contains a NUL character").encode(&mut conn.wbuf);
            conn.closing = true;
            return;
        }
        self.timers.cancel(deadline);
        conn.phase = Phase::Ready;
        conn.reader = LineReader::new(self.config.line_bytes_max);
        self.core.hello(conn.id, &hello, now);
        Reply::Ok.encode(&mut conn.wbuf);
        let count = self.core.connections();
        if count > self.config.connections_max {
            log::warn!("too many connections: {count}");
            Reply::err(format_args!("too many connections: {count}")).encode(&mut conn.wbuf);
            conn.closing = true;
        }
    }

    fn close(&mut self, mut conn: Conn) {
        let _ = conn.flush();
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            log::debug!("deregister: {e}");
        }
        match conn.phase {
            Phase::Hello { deadline, .. } => {
                // Health probes connect and close: worth a debug line, not a warning.
                log::debug!("{:?}: closed before completing HELLO", conn.id);
                self.timers.cancel(deadline);
                self.socket_closed();
            }
            Phase::Ready | Phase::Parked => {
                self.core.disconnect(conn.id);
                self.socket_closed();
            }
            Phase::Http { deadline, .. } => {
                self.timers.cancel(deadline);
                self.web_conns = self.web_conns.saturating_sub(1);
            }
        }
        let idx = (conn.id.0 & 0xffff_ffff) as usize;
        if let Some(slot) = self.conns.get_mut(idx) {
            *slot = None;
            self.free.push(idx);
        }
    }

    fn close_all(&mut self) {
        for idx in 0..self.conns.len() {
            if let Some(conn) = self.conns[idx].take() {
                self.close(conn);
            }
        }
    }

    // ----- timers and effects ------------------------------------------------------------------

    fn fire_timers(&mut self, now: Now) {
        self.core.tick(now);
        let mut fired = Vec::new();
        self.timers.advance(now.mono_ms, &mut fired);
        for t in fired {
            match t {
                NetTimer::HelloDeadline(id) => {
                    if let Some(idx) = self.index_of(id) {
                        if let Some(conn) = self.conns[idx].take() {
                            log::debug!("{id:?}: no HELLO in time; closing");
                            self.close(conn);
                        }
                    }
                }
                NetTimer::WebDeadline(id) => {
                    if let Some(idx) = self.index_of(id) {
                        if let Some(conn) = self.conns[idx].take() {
                            log::debug!("{id:?}: web request not done in time; closing");
                            self.close(conn);
                        }
                    }
                }
                NetTimer::AcceptRetry => {
                    self.accept_paused = false;
                    self.accept(now);
                    self.accept_web(now);
                }
                NetTimer::BackoffSweep => self.sweep_backoff(now),
            }
        }
    }

    /// Delivers replies to parked fetchers and closes what the core asked to close. Driving a
    /// woken connection may apply its buffered commands and cause more effects, so this loops
    /// until none are left.
    fn carry_out_effects(&mut self, now: Now) {
        loop {
            let effects = self.core.effects();
            let wakes = std::mem::take(&mut effects.wakes);
            let closes = std::mem::take(&mut effects.closes);
            if wakes.is_empty() && closes.is_empty() {
                return;
            }
            for (id, reply) in wakes {
                let Some(idx) = self.index_of(id) else {
                    continue;
                };
                if let Some(conn) = self.conns[idx].as_mut() {
                    let start = conn.wbuf.len();
                    reply.encode(&mut conn.wbuf);
                    conn.phase = Phase::Ready;
                    // A job handed to a parked fetcher was reserved by a record of this turn.
                    conn.needs_journal = true;
                    conn.mark_ack(start);
                }
                self.drive(idx, now);
            }
            for id in closes {
                if let Some(idx) = self.index_of(id) {
                    if let Some(conn) = self.conns[idx].take() {
                        self.close(conn);
                    }
                }
            }
        }
    }
}

/// The journal failed: the held replies that acknowledge a change become `-ERR` (the change is
/// applied in memory but not durable; a restart recovers what reached the disk), the others go
/// out as they are. The connection stays open; later writes are refused with `-ERR` too.
fn refuse_held(conn: &mut Conn, why: Option<&str>) {
    let mut refusal = Vec::new();
    let text = format!(
        "journal failed, this change is not durable: {}",
        why.unwrap_or("unknown")
    );
    if matches!(conn.phase, Phase::Http { .. }) {
        // A Web UI action's one response becomes a 503 instead of its redirect.
        web::Response::text(503, text).encode(&mut refusal, false);
    } else {
        Reply::err(text).encode(&mut refusal);
    }
    log::warn!(
        "{:?}: {} acknowledgement(s) refused: the journal failed",
        conn.id,
        conn.acks.len()
    );
    conn.refuse_held(&refusal);
}

/// Bounds a graceful stop: if the process is still here after `timeout_ms` (a final journal
/// sync stuck on a sick disk), it says so and exits with status 1 rather than hang until a
/// supervisor kills it. Runs on its own thread; the loop never waits for it.
fn exit_if_stuck(timeout_ms: u64) {
    let spawned = std::thread::Builder::new()
        .name("werk-stop".into())
        .spawn(move || {
            std::thread::sleep(Duration::from_millis(timeout_ms));
            log::error!(
                "shutdown did not finish within {timeout_ms} ms (a journal sync is stuck?); \
                 exiting with status 1"
            );
            std::process::exit(1);
        });
    if let Err(e) = spawned {
        log::warn!("cannot start the shutdown watchdog: {e}");
    }
}

/// Reads every byte the signal handlers wrote (one per delivery), so the next signal makes the
/// pipe readable again.
fn drain_signal_pipe(pipe: &mut mio::net::UnixStream) {
    let mut buf = [0u8; 64];
    while let Ok(n) = std::io::Read::read(pipe, &mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// Resident memory in MB, from /proc/self/statm (0 where that file does not exist).
fn resident_mb() -> u64 {
    const PAGE_BYTES: u64 = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * PAGE_BYTES / (1 << 20))
}
