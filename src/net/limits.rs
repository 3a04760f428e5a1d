//! The loop's defences against hostile or careless clients, kept apart from the loop's flow:
//!
//! - the cap on open protocol sockets (`--sockets-max`): past it a new connection gets
//!   `-ERR overloaded: ...` and is closed at once, so it holds no descriptor and no memory, and
//!   the listener's backlog keeps draining (a client sees an answer, not a hang);
//! - the open-file limit: at start werk raises its soft `RLIMIT_NOFILE` to what its limits need
//!   (never above the hard limit), and lowers the socket cap if the hard limit is too small, so
//!   the cap, not `EMFILE`, is what a flood meets;
//! - the password gate: a HELLO (or a Web UI request with credentials) from an address blocked
//!   by [`PasswordBackoff`](super::backoff::PasswordBackoff) is refused before its password is
//!   checked; a wrong password, on either port, counts against its address.

use super::conn::{Conn, Phase};
use super::{NetTimer, Server};
use crate::clock::Now;
use crate::command::HelloInput;
use crate::config::Config;
use crate::resp::Reply;
use crate::web;
use mio::net::TcpStream;
use std::io::{self, Write};
use std::net::{IpAddr, SocketAddr};

/// Descriptors werk needs besides client sockets: standard streams, the poll instance, the
/// waker, the listeners, the signal pipe, the journal, its directory and lock, the compaction
/// thread's files, `/proc` reads. Counted generously.
pub(super) const FDS_RESERVED: u64 = 64;
/// How often the password backoff table forgets quiet addresses.
pub(super) const BACKOFF_SWEEP_MS: u64 = 10_000;
/// The protocol listener's accept queue (the kernel caps it at `net.core.somaxconn`, 4096 on
/// current Linux). mio, like the standard library, listens with 128: when 2,000 workers
/// reconnect at once (after a restart, a network blip) the excess SYNs are dropped and those
/// clients wait a full second or more for the retransmission.
pub(super) const LISTEN_BACKLOG: i32 = 4096;

/// The socket cap that fits the process's open-file limit, after raising the soft limit as far
/// as the hard limit allows. Logs what it did when it had to change something.
pub(super) fn fit_sockets_to_fd_limit(config: &Config) -> usize {
    let web = if config.web_bind.is_some() {
        // Past twice its limit the Web UI closes new connections at once.
        2 * config.web_connections_max as u64
    } else {
        0
    };
    let sockets_max = config.sockets_max();
    let wanted = (sockets_max as u64)
        .saturating_add(web)
        .saturating_add(FDS_RESERVED);
    let (soft, hard) = match raise_fd_limit(wanted) {
        Ok(limits) => limits,
        Err(e) => {
            log::warn!("cannot read or raise the open-file limit: {e}");
            return sockets_max;
        }
    };
    let fit = soft.saturating_sub(web + FDS_RESERVED).max(1);
    if fit >= sockets_max as u64 {
        return sockets_max;
    }
    let fit = fit as usize;
    log::warn!(
        "the open-file limit is {soft} (hard limit {hard}): room for {fit} protocol connections, \
         so --sockets-max is lowered from {} to {fit}{}; raise the limit (ulimit -n, systemd \
         LimitNOFILE=) to serve more",
        sockets_max,
        if fit < config.connections_max {
            " (below --connections-max)"
        } else {
            ""
        }
    );
    fit
}

/// Sets the protocol listener's backlog to [`LISTEN_BACKLOG`]; a failure is logged (the
/// listener keeps mio's 128).
pub(super) fn widen_backlog(listener: &mio::net::TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: `listen` on a socket that is already listening only changes its backlog; the
    // descriptor is the listener's own, open for as long as `listener` is borrowed, and no
    // memory is passed. The result is checked.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        log::warn!(
            "cannot widen the listen backlog to {LISTEN_BACKLOG}: {}",
            io::Error::last_os_error()
        );
    }
}

/// Raises the soft `RLIMIT_NOFILE` to `wanted`, or to the hard limit if that is lower; returns
/// the (soft, hard) limits in force afterwards.
fn raise_fd_limit(wanted: u64) -> io::Result<(u64, u64)> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `getrlimit` writes one `rlimit` through the pointer and does nothing else. The
    // pointer comes from a `&mut` to a live, aligned local of exactly the type libc declares for
    // this call, so the write stays inside memory we own; the return value is checked.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut current) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // `rlim_t` is `u64` on the platforms werk supports (Linux, macOS).
    let (soft, hard): (u64, u64) = (current.rlim_cur, current.rlim_max);
    if soft >= wanted {
        return Ok((soft, hard));
    }
    let target = wanted.min(hard);
    if target <= soft {
        return Ok((soft, hard));
    }
    let raised = libc::rlimit {
        rlim_cur: target,
        rlim_max: current.rlim_max,
    };
    // SAFETY: `setrlimit` only reads the `rlimit` behind the pointer, a live local of the type
    // libc declares; it changes nothing in this process's memory. Raising the soft limit up to
    // (not beyond) the unchanged hard limit is allowed without privileges; a failure is an error
    // value, which is returned.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return Err(io::Error::last_os_error());
    }
    log::info!("open-file limit raised from {soft} to {target} (hard limit {hard})");
    Ok((target, hard))
}

impl Server {
    /// A protocol socket closed: one more may be accepted.
    pub(super) fn socket_closed(&mut self) {
        self.sockets = self.sockets.saturating_sub(1);
        if self.refused_sockets > 0 && self.sockets < self.sockets_max {
            log::warn!(
                "accepting connections again; {} refused while {} were open",
                self.refused_sockets,
                self.sockets_max
            );
            self.refused_sockets = 0;
        }
    }

    /// The protocol socket cap is reached: answer `stream` with `-ERR` and drop it.
    pub(super) fn refuse_socket(&mut self, mut stream: TcpStream, peer: SocketAddr) {
        log::debug!("refused a connection from {peer}: {} open", self.sockets);
        if self.refused_sockets == 0 {
            log::warn!(
                "{} protocol connections open (--sockets-max): refusing new ones with -ERR \
                 until some close",
                self.sockets
            );
        }
        self.refused_sockets += 1;
        let mut refusal = Vec::new();
        Reply::err(format_args!(
            "overloaded: too many connections open, the limit is {}",
            self.sockets_max
        ))
        .encode(&mut refusal);
        // A fresh socket's send buffer is empty, so this one short write does not block; if it
        // fails anyway the client just sees the close. Dropping the stream closes it.
        let _ = stream.write(&refusal);
    }

    /// The password check of a HELLO, with the per-address backoff. Writes the refusal and
    /// returns false when the client must be closed. True when no password is required.
    ///
    /// The password is the one in force now (SIGHUP may have changed it since HI): a
    /// connection that got its HI before a password was set has no challenge to answer and is
    /// refused.
    pub(super) fn password_ok(&mut self, conn: &mut Conn, hello: &HelloInput, now: Now) -> bool {
        let Some(password) = &self.config.password else {
            return true;
        };
        let Phase::Hello { challenge, .. } = &conn.phase else {
            return true;
        };
        let peer = conn.peer;
        if let Some(left_ms) = peer.and_then(|p| self.backoff.blocked(p, now.mono_ms)) {
            // Refused before the hash is checked: a blocked address gets no answer about its
            // password and costs no hashing.
            log::debug!("{:?}: HELLO from blocked {peer:?} refused", conn.id);
            Reply::err(format_args!(
                "Invalid password: too many failed attempts from this address, try again in {} s",
                left_ms.div_ceil(1000)
            ))
            .encode(&mut conn.wbuf);
            return false;
        }
        let valid = challenge
            .as_ref()
            .is_some_and(|c| c.verify(password, hello.v, hello.pwdhash.as_deref()));
        if valid {
            return true;
        }
        log::warn!("{:?}: invalid password from {}", conn.id, show(peer));
        Reply::err("Invalid password").encode(&mut conn.wbuf);
        if let Some(addr) = peer {
            self.count_password_failure(addr, now);
        }
        false
    }

    /// The Web UI's side of the password gate: a request that offers credentials from a blocked
    /// address gets `429` with `Retry-After`, before they are checked. A request without
    /// credentials goes on (and gets the `401` that makes a browser ask for them).
    pub(super) fn web_login_blocked(
        &self,
        conn: &Conn,
        req: &web::http::Request,
        now: Now,
    ) -> Option<web::Response> {
        self.config.web_ui_password()?;
        req.authorization.as_ref()?;
        let left_ms = self.backoff.blocked(conn.peer?, now.mono_ms)?;
        let secs = left_ms.div_ceil(1000);
        log::debug!(
            "{:?}: web login from blocked {:?} refused",
            conn.id,
            conn.peer
        );
        Some(
            web::Response::text(
                429,
                format!("too many failed passwords from this address; try again in {secs} s"),
            )
            .header("Retry-After", secs.to_string()),
        )
    }

    /// Counts a Web UI request whose credentials were wrong (a `401` to a request that had an
    /// `Authorization` header) as a failed password of its address.
    pub(super) fn web_login_result(
        &mut self,
        conn: &Conn,
        req: &web::http::Request,
        status: u16,
        now: Now,
    ) {
        if status == 401 && req.authorization.is_some() {
            log::warn!(
                "{:?}: web: wrong password from {}",
                conn.id,
                show(conn.peer)
            );
            if let Some(addr) = conn.peer {
                self.count_password_failure(addr, now);
            }
        }
    }

    /// Counts a failed password (HELLO, or the Web UI's basic auth) against `addr`.
    pub(super) fn count_password_failure(&mut self, addr: IpAddr, now: Now) {
        if let Some(b) = self.backoff.failed(addr, now.mono_ms) {
            let c = self.config.auth_backoff;
            log::warn!(
                "password: {} failed attempts from {addr} within {} s: refusing its HELLOs and \
                 Web UI logins for {} s (block {} of this address)",
                c.failures_max,
                c.window_ms / 1000,
                b.for_ms.div_ceil(1000),
                b.nth
            );
        }
        if !self.backoff_sweep_armed && !self.backoff.is_empty() {
            self.backoff_sweep_armed = true;
            self.timers
                .insert(now.mono_ms + BACKOFF_SWEEP_MS, NetTimer::BackoffSweep);
        }
    }

    /// The backoff sweep timer fired: forget quiet addresses, re-arm while any are left.
    pub(super) fn sweep_backoff(&mut self, now: Now) {
        let forgotten = self.backoff.sweep(now.mono_ms);
        log::debug!(
            "password backoff: {forgotten} address(es) forgotten, {} tracked",
            self.backoff.len()
        );
        self.backoff_sweep_armed = !self.backoff.is_empty();
        if self.backoff_sweep_armed {
            self.timers
                .insert(now.mono_ms + BACKOFF_SWEEP_MS, NetTimer::BackoffSweep);
        }
    }
}

fn show(peer: Option<IpAddr>) -> String {
    peer.map_or_else(|| "an unknown address".to_owned(), |p| p.to_string())
}
