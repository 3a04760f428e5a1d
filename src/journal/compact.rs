//! Compaction, on its own thread (`werk-compact`), so the loop never waits for it.
//!
//! The loop only switches the file it appends to; everything else happens here, from the files
//! alone: the previous snapshot plus the journals older than the new generation are replayed
//! into a private [`Core`], which is written out as `snapshot.tmp`, synced, renamed over
//! `snapshot.wrk`, and the directory synced; then the journals it covers are removed. The
//! loop's memory is never read by this thread, and the files it reads are no longer written.
//!
//! Cost: while it runs, this thread holds a second copy of the state (transient memory) and one
//! core's worth of CPU; the loop's only work is creating no file at all — the next journal file
//! is created here too ([`Task::Prepare`]) and handed over ready to append to.

use super::files::{self, journal_name, recover, sync_dir, Mode, SNAPSHOT_FILE, SNAPSHOT_TMP};
use super::record::{encode, encode_snapshot_end, SNAPSHOT_HEADER};
use crate::clock::{Clock, SystemClock};
use crate::core::{Core, CoreConfig};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;

/// The snapshot is synced after each this many bytes.
const SYNC_EVERY_BYTES: u64 = 8 << 20;

/// Work for the compaction thread.
#[derive(Debug)]
pub(super) enum Task {
    /// Create journal file `generation`, with its header, durably.
    Prepare(u64),
    /// Write a snapshot of everything before journal `generation`, then remove what it covers.
    Compact(u64),
}

/// What the compaction thread did.
#[derive(Debug)]
pub(super) enum Done {
    /// The new journal file, ready to append to.
    Prepared(u64, io::Result<File>),
    /// The snapshot is in place.
    Compacted(Result<Compacted, String>),
}

/// Figures of one compaction.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compacted {
    /// The snapshot's generation.
    pub generation: u64,
    /// Records written.
    pub records: u64,
    /// Snapshot size.
    pub bytes: u64,
    /// Journal files removed.
    pub removed: usize,
    /// Bytes those files held.
    pub removed_bytes: u64,
    /// Wall time of the whole compaction.
    pub millis: u64,
}

pub(super) fn run(
    dir: PathBuf,
    tasks: Receiver<Task>,
    done: Sender<Done>,
    wake: Arc<dyn Fn() + Send + Sync>,
) {
    for task in tasks {
        let answer = match task {
            Task::Prepare(g) => Done::Prepared(g, files::write_header(&dir.join(journal_name(g)))),
            Task::Compact(g) => Done::Compacted(compact(&dir, g)),
        };
        if done.send(answer).is_err() {
            return;
        }
        wake();
    }
}

/// Returns the memory of the compaction's private state to the system. Its million small
/// frees stay in this thread's malloc arena, and glibc gives a thread arena's memory back only
/// from its top, when a large chunk is freed there: how much that releases depends on where the
/// last live chunks happen to sit. Since recovery holds each batch's records until its commit
/// marker, that released almost nothing: RSS after a million queued jobs and their compactions
/// (`benches/journal-1m.sh`) was 134 MB against 90 MB for the live state. `malloc_trim` returns
/// the free pages inside every arena, wherever they are: 90 MB again, for 6–11 ms of this
/// thread's time (the loop's slowest turn during those compactions: 4.0–4.8 ms, as before).
/// Elsewhere than glibc, one large free at least releases the top.
fn give_back_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` takes no pointer and touches only glibc's own free lists and the
    // pages of free chunks; glibc documents it as MT-Safe (it takes each arena's lock in turn),
    // so calling it while other threads allocate cannot break their memory.
    unsafe {
        libc::malloc_trim(0);
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let chunk = std::hint::black_box(vec![1u8; 96 << 10]);
        drop(chunk);
    }
}

/// Writes the snapshot that journal `generation` continues, from the files in `dir`.
pub fn compact(dir: &Path, generation: u64) -> Result<Compacted, String> {
    let started = Instant::now();
    let now = SystemClock::new().now();
    let mut core = Core::new(CoreConfig::default(), now, 0);
    recover(dir, Mode::ReadOnly, Some(generation), &mut |r| {
        core.replay(r, now).map_err(|e| e.to_string())
    })
    .map_err(|e| e.to_string())?;
    let tmp = dir.join(SNAPSHOT_TMP);
    let (records, bytes) = write_snapshot(&core, generation, &tmp)
        .map_err(|e| format!("{}: {e}", tmp.display()))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })?;
    drop(core);
    give_back_freed_memory();
    let target = dir.join(SNAPSHOT_FILE);
    std::fs::rename(&tmp, &target).map_err(|e| format!("{}: {e}", target.display()))?;
    sync_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Compacted {
        generation,
        records,
        bytes,
        ..Compacted::default()
    };
    // The snapshot is durable; older journals are now redundant. A failure to remove one is
    // harmless (the next start removes it), so it is only logged.
    let old = files::journal_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for (g, path) in old.into_iter().filter(|(g, _)| *g < generation) {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        match std::fs::remove_file(&path) {
            Ok(()) => {
                out.removed += 1;
                out.removed_bytes += size;
            }
            Err(e) => log::warn!(
                "compaction: cannot remove journal {g} ({}): {e}",
                path.display()
            ),
        }
    }
    let _ = sync_dir(dir);
    out.millis = started.elapsed().as_millis() as u64;
    Ok(out)
}

/// Writes `core` as a snapshot continued by journal `generation`, synced; returns its record
/// count and size.
fn write_snapshot(core: &Core, generation: u64, path: &Path) -> io::Result<(u64, u64)> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    w.write_all(SNAPSHOT_HEADER)?;
    let mut bytes = SNAPSHOT_HEADER.len() as u64;
    let mut records = 0u64;
    let mut buf = Vec::new();
    let mut failed = None;
    let mut unsynced = 0u64;
    core.dump(&mut |r| {
        if failed.is_some() {
            return;
        }
        buf.clear();
        encode(&r, &mut buf);
        records += 1;
        bytes += buf.len() as u64;
        unsynced += buf.len() as u64;
        let mut step = || {
            w.write_all(&buf)?;
            if unsynced >= SYNC_EVERY_BYTES {
                // Keep the dirty pages of the snapshot few: a burst of them would make the
                // kernel throttle every writer, the loop's journal writes included.
                unsynced = 0;
                w.flush()?;
                w.get_ref().sync_data()?;
            }
            Ok::<(), io::Error>(())
        };
        if let Err(e) = step() {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    buf.clear();
    encode_snapshot_end(generation, records, &mut buf);
    bytes += buf.len() as u64;
    w.write_all(&buf)?;
    let file = w.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok((records, bytes))
}
