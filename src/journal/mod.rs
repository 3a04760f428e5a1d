//! The journal: durable records of every state change (DESIGN.md §3).
//!
//! - [`record`]: the on-disk format of a [`crate::core::record::Record`] (length, kind, CRC-32)
//!   and the versioned headers of journal and snapshot files.
//! - [`read`]: a streaming decoder that stops at the first torn or corrupt frame and says where.
//! - [`files`]: the data directory's files and recovery (snapshot, then journals in generation
//!   order, each record handed to [`crate::core::Core::replay`]).
//! - [`writer`]: group commit, the sync thread, sync policies and the journal file switch.
//! - [`compact`]: snapshots written on their own thread from the files alone.
//! - [`check`]: `werk journal check DIR`, an offline report on a data directory.

pub mod check;
pub mod compact;
pub mod files;
pub mod read;
pub mod record;
pub mod writer;
