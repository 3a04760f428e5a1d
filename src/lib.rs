//! werk: a Faktory-compatible background-job server.
//!
//! One process, one event-loop thread that owns every socket and all job state.
//!
//! Modules, in the direction of dependency (a module uses only those below it):
//! - [`net`]: the `mio` poll loop; accepts, reads, writes, handshakes, and drives [`core`].
//! - [`command`]: request lines ([`command::line`]) to typed [`command::Command`]s.
//! - [`core`]: the job state machine, pure and synchronous, with its [`timer`] wheel.
//! - [`web`]: the Web UI, `/stats`, `/health`, `/debug` and `/metrics`, served by [`net`] from the
//!   same loop; it reads and acts on [`core`] through its query and action functions.
//! - [`resp`], [`timestamp`], [`clock`], [`auth`], [`histogram`]: leaves.
//! - [`config`]: command-line flags, environment and `conf.d/*.toml` files to a validated
//!   [`config::Config`]; [`logging`]: the log line formats.
//!
//! Data flow: socket bytes → read buffer → [`command::line::LineReader`] (a borrowed line) →
//! [`command::Command::parse`] → [`core::Core::apply`] → [`resp::Reply`] → write buffer → socket.
//! Replies to parked FETCHes, and connections the core wants closed, come back through
//! [`core::Effects`]. See docs/ARCHITECTURE.md.

#![deny(missing_docs, missing_debug_implementations, rust_2018_idioms)]

pub mod auth;
pub mod clock;
pub mod command;
pub mod config;
pub mod core;
pub mod histogram;
pub mod journal;
pub mod logging;
pub mod net;
pub mod resp;
pub mod timer;
pub mod timestamp;
pub mod web;
