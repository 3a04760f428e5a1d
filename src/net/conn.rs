//! One client connection: its socket, buffers and handshake phase.
//!
//! Lifecycle (PROTOCOL.md §2.8):
//! ```text
//! accepted ──HI──> Hello ──valid HELLO──> Ready ⇄ Parked (a FETCH waiting for a job)
//!                    │                      │
//!                    └─bad line/timeout/    └─END / EOF / error / worker expired ──> closed
//!                      bad password──> closed
//!
//! accepted on the Web UI port ──> Http ──request complete──> response (held until durable when
//!                                   │                        the request changed state) ──> closed
//!                                   └─deadline / bad request / EOF ──> closed
//! ```
//! The read buffer holds at most one partial line plus one read chunk beyond the lines being
//! processed; the write buffer is bounded by the server, which stops reading from a connection
//! whose pending output is over `write_buffer_max` until the client drains it.
//!
//! TLS (when the server has a certificate): `tls` holds the connection's rustls session, between
//! the socket and the buffers both ways; `rbuf` and `wbuf` hold plaintext, so nothing above this
//! file knows whether a connection is encrypted. Handshake messages go out on the flush that ends
//! every `drive` and on writable events (every socket is registered for both from accept).

use crate::auth::Challenge;
use crate::command::line::LineReader;
use crate::core::ConnId;
use crate::timer::TimerId;
use mio::net::TcpStream;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::IpAddr;

/// Bytes asked of the socket per read call.
pub(super) const READ_CHUNK: usize = 64 * 1024;

/// Where a connection is in its life.
#[derive(Debug)]
pub(super) enum Phase {
    /// Waiting for HELLO; `challenge` is set when a password is required.
    Hello {
        challenge: Option<Challenge>,
        deadline: TimerId,
    },
    /// Identified; commands are processed.
    Ready,
    /// A FETCH is waiting; later lines stay buffered until its reply is written.
    Parked,
    /// A Web UI connection: one HTTP request, one response, then close; `deadline` bounds the
    /// whole exchange. `refuse`: over the connection limit, its request gets `503`.
    Http { deadline: TimerId, refuse: bool },
}

/// Result of one read call.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ReadOutcome {
    /// Bytes were appended to the read buffer.
    Data,
    /// Bytes were appended, fewer than asked for: the socket held no more when it was read.
    Drained,
    /// Nothing more to read now.
    WouldBlock,
    /// The peer closed its side.
    Eof,
}

#[derive(Debug)]
pub(super) struct Conn {
    pub stream: TcpStream,
    /// TLS session when the server has a certificate: the socket carries ciphertext, `rbuf` and
    /// `wbuf` plaintext (see [`Conn::read_some`] and [`Conn::flush`]).
    pub tls: Option<Box<rustls::ServerConnection>>,
    /// The TLS session failed or sent `close_notify`: no more plaintext goes into it.
    tls_done: bool,
    pub id: ConnId,
    pub phase: Phase,
    pub rbuf: Vec<u8>,
    pub reader: LineReader,
    pub wbuf: Vec<u8>,
    pub wpos: usize,
    /// The socket may hold unread bytes (edge-triggered: set by a readable event, cleared by
    /// `WouldBlock`).
    pub maybe_readable: bool,
    /// An event said the peer closed its side: read on to the end of the stream, even after a
    /// short read (no further event will come).
    pub read_closed: bool,
    pub eof: bool,
    /// Close once what is pending has been written (END, errors, expiry).
    pub closing: bool,
    /// A read or write failed: close at once.
    pub broken: bool,
    /// Output up to here may be written; the rest waits for the journal.
    pub released: usize,
    /// `(batch, offset)`: output up to `offset` waits until journal batch `batch` is durable.
    pub holds: VecDeque<(u64, usize)>,
    /// Output produced since the last settle depends on journal records.
    pub needs_journal: bool,
    /// Byte ranges of `wbuf`, not yet released, holding replies that acknowledge a journaled
    /// change: if the journal fails they become `-ERR` (see [`Conn::refuse_held`]).
    pub acks: VecDeque<(usize, usize)>,
    /// Listed in the server's touched list for this turn.
    pub touched: bool,
    /// Processing stopped because pending output reached its bound.
    pub stalled: bool,
    /// The client's address (protocol connections; for the password backoff).
    pub peer: Option<IpAddr>,
    /// Listed in the server's deferred list: driven once next turn, after the events.
    pub deferred: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, id: ConnId, phase: Phase, line_bytes_max: usize) -> Conn {
        Conn {
            stream,
            id,
            phase,
            tls: None,
            tls_done: false,
            rbuf: Vec::new(),
            reader: LineReader::new(line_bytes_max),
            wbuf: Vec::new(),
            wpos: 0,
            maybe_readable: true,
            read_closed: false,
            eof: false,
            closing: false,
            broken: false,
            released: 0,
            holds: VecDeque::new(),
            needs_journal: false,
            acks: VecDeque::new(),
            touched: false,
            stalled: false,
            peer: None,
            deferred: false,
        }
    }

    /// Bytes waiting to be written.
    pub fn pending_out(&self) -> usize {
        self.wbuf.len() - self.wpos
    }

    /// Reads once into the read buffer, through `scratch` (the server's one zeroed buffer of
    /// `READ_CHUNK` bytes): only the bytes received are copied, nothing is zero-filled per read.
    pub fn read_some(&mut self, scratch: &mut [u8]) -> io::Result<ReadOutcome> {
        if self.tls.is_some() {
            return self.read_tls();
        }
        let result = loop {
            match self.stream.read(scratch) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match result {
            Ok(0) => Ok(ReadOutcome::Eof),
            Ok(n) => {
                self.rbuf.extend_from_slice(&scratch[..n]);
                Ok(if n < scratch.len() {
                    ReadOutcome::Drained
                } else {
                    ReadOutcome::Data
                })
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOutcome::WouldBlock),
            Err(e) => Err(e),
        }
    }

    /// True while the connection's TLS handshake is under way.
    pub fn tls_handshaking(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.is_handshaking())
    }

    /// [`Conn::read_some`] over TLS: reads ciphertext once, processes it (handshake messages
    /// included), and moves the plaintext it yields into `rbuf`. `Data` also covers "handshake
    /// progress, no plaintext yet": the caller reads again. A TLS error fails the read; rustls
    /// has queued an alert, which the next flush sends before the connection closes.
    fn read_tls(&mut self) -> io::Result<ReadOutcome> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(ReadOutcome::WouldBlock);
        };
        let read = loop {
            match tls.read_tls(&mut self.stream) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => break other,
            }
        };
        match read {
            Ok(0) => return Ok(ReadOutcome::Eof),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(ReadOutcome::WouldBlock),
            Err(e) => return Err(e),
        }
        let state = match tls.process_new_packets() {
            Ok(state) => state,
            Err(e) => {
                log::debug!("{:?}: TLS: {e}; closing", self.id);
                self.tls_done = true;
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
        };
        if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
            // The peer's close_notify: its side is closed.
            return Ok(ReadOutcome::Eof);
        }
        let plain = state.plaintext_bytes_to_read();
        if plain > 0 {
            let start = self.rbuf.len();
            self.rbuf.resize(start + plain, 0);
            let into = self.rbuf.get_mut(start..).unwrap_or_default();
            tls.reader().read_exact(into)?;
        }
        Ok(ReadOutcome::Data)
    }

    /// The TLS half of [`Conn::flush`]: released plaintext into the session, ciphertext out,
    /// repeated until all of it is out or the socket is full. rustls takes at most its buffer
    /// limit (64 KiB) per call, so a single pass would strand the rest of a large output with
    /// no writable event to come back for it. A connection that is closing and has handed over
    /// all its output says `close_notify`, so the client can tell a whole response from a cut
    /// one.
    fn flush_tls(&mut self) -> io::Result<()> {
        let Some(tls) = self.tls.as_deref_mut() else {
            return Ok(());
        };
        loop {
            if self.wpos < self.released && !self.tls_done {
                let out = self.wbuf.get(self.wpos..self.released).unwrap_or_default();
                self.wpos += tls.writer().write(out)?;
            }
            if self.closing && !self.tls_done && self.wpos == self.wbuf.len() {
                tls.send_close_notify();
                self.tls_done = true;
            }
            if !tls.wants_write() {
                if self.tls_done {
                    // The session failed or said goodbye: nothing more will be sent.
                    self.wpos = self.wbuf.len();
                    self.released = self.wbuf.len();
                }
                return Ok(());
            }
            match tls.write_tls(&mut self.stream) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// True when every byte produced has been written.
    pub fn drained(&self) -> bool {
        self.wpos == self.wbuf.len() && self.tls.as_ref().is_none_or(|t| !t.wants_write())
    }

    /// Marks output up to `offset` as writable.
    pub fn release_to(&mut self, offset: usize) {
        self.released = self.released.max(offset.min(self.wbuf.len()));
        while self.acks.front().is_some_and(|a| a.1 <= self.released) {
            self.acks.pop_front();
        }
    }

    /// Notes that `wbuf[start..]` (just written) acknowledges a journaled change.
    pub fn mark_ack(&mut self, start: usize) {
        if self.wbuf.len() > start {
            self.acks.push_back((start, self.wbuf.len()));
        }
    }

    /// The journal failed: every held reply that acknowledges a change becomes `refusal` (a
    /// complete RESP error), the others stay as they are, and everything is released, in order.
    pub fn refuse_held(&mut self, refusal: &[u8]) {
        let held = self.wbuf.split_off(self.released);
        let base = self.released;
        let mut pos = 0;
        for (start, end) in self.acks.drain(..) {
            let (start, end) = (start - base, end - base);
            self.wbuf.extend_from_slice(&held[pos..start]);
            self.wbuf.extend_from_slice(refusal);
            pos = end;
        }
        self.wbuf.extend_from_slice(&held[pos..]);
        self.holds.clear();
        self.released = self.wbuf.len();
    }

    /// Writes released output until it is all written or the socket is full.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.tls.is_some() {
            self.flush_tls()?;
        }
        // Plaintext onto the socket only without TLS.
        while self.tls.is_none() && self.wpos < self.released {
            match self.stream.write(&self.wbuf[self.wpos..self.released]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.wpos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        if self.wpos == self.wbuf.len() {
            self.wbuf.clear();
            self.wpos = 0;
            self.released = 0;
        } else if self.wpos > (64 << 10) && self.wpos * 2 > self.wbuf.len() {
            // Held output keeps the buffer from emptying under steady load: drop the written
            // prefix now and then so it cannot grow without bound.
            let cut = self.wpos;
            self.wbuf.drain(..cut);
            self.wpos = 0;
            self.released -= cut;
            for hold in self.holds.iter_mut() {
                hold.1 -= cut;
            }
            for ack in self.acks.iter_mut() {
                ack.0 -= cut;
                ack.1 -= cut;
            }
        }
        Ok(())
    }
}
