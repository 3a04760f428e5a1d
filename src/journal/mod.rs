//! The journal: durable records of every state change (DESIGN.md §3).
//!
//! This module holds the on-disk format of [`Record`]s: [`record`] encodes and decodes them with
//! a length, a kind, a CRC-32 and a versioned file header; [`record::decode_all`] reads a journal
//! image back and stops at the first torn or corrupt record, reporting where and why. Replaying
//! the decoded records into a [`crate::core::Core`] ([`crate::core::Core::replay`]) rebuilds
//! exactly the state they describe.
//!
//! Not built yet (issue: durability): the writer with group commit and its sync thread, replies
//! held until their records are durable, snapshots and compaction, recovery at startup.

pub mod record;
pub mod writer;
