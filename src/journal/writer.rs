//! The journal as the loop uses it: recovery at open, group commit, the sync thread, and the
//! switch of journal files that compaction needs.
//!
//! The loop stages the records of one turn ([`Journal::stage`]); at the end of the turn
//! [`Journal::kick`] writes everything staged as one batch and, with [`SyncPolicy::Always`],
//! syncs it: on the loop itself while the disk is fast (see `Journal::sync_inline`), otherwise
//! on the sync thread, which answers through a channel and wakes the loop with the
//! `mio::Waker`; [`Journal::poll`] then advances the durable batch number. Records staged while
//! a sync is in flight wait and go out together as the next batch (group commit). With
//! `always` the file keeps zeros preallocated past its data (see `Journal::next_zero_fill`).
//! Replies are held by the loop until the batch that covers them is durable.
//!
//! With [`SyncPolicy::EverySec`] a batch counts as durable once written, and the sync thread is
//! asked for an `fsync` at most one second after the first unsynced write.
//!
//! A failed write or sync marks the journal failed for good: it is never retried and trusted
//! (after a failed fsync the kernel may have dropped the dirty pages). The loop then refuses
//! writes; a restart recovers what reached the disk.
//!
//! Compaction ([`super::compact`]): when the journal outgrows the last snapshot (and a floor),
//! the compaction thread creates the next journal file; the loop switches to it between two
//! batches (a pointer swap) and the thread writes the snapshot from the files.

use super::compact::{self, Compacted, Done, Task};
use super::files::{self, journal_name, recover, Mode, RecoverError, Recovered, LOCK_FILE};
use super::record::{encode, encode_commit_in, Order, HEADER};
use crate::clock::Stopwatch;
use crate::core::record::Record;
use crate::histogram::{Histogram, SYNC_BUCKETS_US};
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// When a change counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fsync` before the reply (the default): an acknowledged change survives power loss.
    Always,
    /// Write to the OS before the reply and `fsync` within a second: survives a crash of werk;
    /// power loss can take the last second of acknowledged changes.
    EverySec,
    /// Write to the OS before the reply, never `fsync`: survives a crash of werk, not of the
    /// machine.
    None,
}

impl SyncPolicy {
    /// The flag value.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncPolicy::Always => "always",
            SyncPolicy::EverySec => "everysec",
            SyncPolicy::None => "none",
        }
    }
}

/// How long an `everysec` write may stay unsynced.
pub const EVERYSEC_MS: u64 = 1_000;
/// After a failed compaction, wait this long before trying again.
const COMPACT_RETRY_MS: u64 = 30_000;

/// Options of the journal.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// When a batch counts as durable.
    pub sync: SyncPolicy,
    /// Compact when the journal is over this size and over the last snapshot's size.
    pub compact_min_bytes: u64,
    /// With `always`: sync on the loop itself while the disk is fast, that is while each of the
    /// last [`FAST_SYNCS_FOR_INLINE`] syncs took at most this long (0: always on the sync
    /// thread). See [`Journal::kick`].
    pub inline_sync_max_us: u64,
    /// With `always`: write batches with `O_DIRECT` where the file system allows it (see
    /// `Journal::write_direct`); false writes through the page cache.
    pub direct_io: bool,
    /// Injected storage faults (tests only; see [`Faults`]).
    pub faults: Faults,
}

/// Syncs in a row at most [`Options::inline_sync_max_us`] long before the loop syncs inline.
pub const FAST_SYNCS_FOR_INLINE: u32 = 16;

impl Options {
    /// Whether journal files are to be opened for `O_DIRECT` writes: asked for, and only with
    /// `always` (with `everysec` and `none` a write counts once it is in the page cache, which a
    /// direct write would make wait for the device).
    fn direct(&self) -> bool {
        self.direct_io && self.sync == SyncPolicy::Always
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            sync: SyncPolicy::Always,
            compact_min_bytes: 64 << 20,
            inline_sync_max_us: 1_000,
            direct_io: true,
            faults: Faults::default(),
        }
    }
}

/// A faulty storage layer for tests: after this many successful writes (or syncs) of journal
/// batches, the next one fails (a write fails after writing half its bytes, as a full disk
/// does); or syncs get slow (a disk that stalls). Set by the environment variable
/// `WERK_FAULTS`, e.g. `write-fail-after=100`, `sync-fail-after=20` or
/// `sync-slow-ms=500,sync-slow-after=20`; documented as a testing hook only.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Writes that succeed before one fails.
    pub write_fail_after: Option<u64>,
    /// Syncs that succeed before one fails.
    pub sync_fail_after: Option<u64>,
    /// Each sync after the first `sync_slow_after` takes this much longer.
    pub sync_slow_ms: Option<u64>,
    /// Syncs at normal speed before they get slow (0 when unset).
    pub sync_slow_after: Option<u64>,
}

impl Faults {
    /// Parses `key=N[,key=N]`.
    pub fn parse(s: &str) -> Result<Faults, String> {
        let mut f = Faults::default();
        for part in s.split(',').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or(format!("{part:?}: expected key=N"))?;
            let n = v
                .parse()
                .map_err(|_| format!("{part:?}: N must be a whole number"))?;
            match k {
                "write-fail-after" => f.write_fail_after = Some(n),
                "sync-fail-after" => f.sync_fail_after = Some(n),
                "sync-slow-ms" => f.sync_slow_ms = Some(n),
                "sync-slow-after" => f.sync_slow_after = Some(n),
                _ => {
                    return Err(format!(
                        "{k:?}: use write-fail-after, sync-fail-after, sync-slow-ms or \
                         sync-slow-after"
                    ))
                }
            }
        }
        Ok(f)
    }
}

/// A journal file as the writer and the sync thread use it, with the injected faults.
#[derive(Debug)]
struct Sink {
    file: File,
    /// The same file opened with `O_DIRECT` (with `always`, where the file system allows it):
    /// batches go through it, whole blocks of [`BLOCK`] bytes at block offsets.
    direct: Option<File>,
    /// Shared by every journal file of this run (a compaction switches files, not faults).
    faults: Arc<FaultBudgets>,
}

/// What is left of the injected faults ([`Faults`]).
#[derive(Debug)]
struct FaultBudgets {
    writes_left: std::sync::atomic::AtomicU64,
    syncs_left: std::sync::atomic::AtomicU64,
    /// Syncs at normal speed left before each takes `slow_ms` longer (`Faults::sync_slow_ms`).
    fast_syncs_left: std::sync::atomic::AtomicU64,
    slow_ms: u64,
}

impl FaultBudgets {
    fn new(f: &Faults) -> FaultBudgets {
        let budget = |n: Option<u64>| std::sync::atomic::AtomicU64::new(n.unwrap_or(u64::MAX));
        FaultBudgets {
            writes_left: budget(f.write_fail_after),
            syncs_left: budget(f.sync_fail_after),
            fast_syncs_left: budget(Some(f.sync_slow_after.unwrap_or(0))),
            slow_ms: f.sync_slow_ms.unwrap_or(0),
        }
    }
}

/// Takes one from a fault budget; false when it was already spent (the operation fails).
fn spend(budget: &std::sync::atomic::AtomicU64) -> bool {
    use std::sync::atomic::Ordering;
    budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

/// The block size of `O_DIRECT` writes: their buffer address, offset and length are multiples of
/// it. 4 KiB covers every logical block size up to the page size.
const BLOCK: usize = 4096;

/// Opens `path` a second time with `O_DIRECT`; `None` where that is refused (tmpfs on older
/// kernels, some FUSE file systems) or not built for.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    match OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
    {
        Ok(f) => Some(f),
        Err(e) => {
            log::info!(
                "journal {}: O_DIRECT refused ({e}); writing through the page cache",
                path.display()
            );
            None
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// A byte buffer whose window starts at a [`BLOCK`] boundary in memory, as `O_DIRECT` needs,
/// without `unsafe`: the `Vec` is [`BLOCK`] bytes longer than the window and the window starts
/// where the address is aligned.
#[derive(Debug, Default)]
struct AlignedBuf(Vec<u8>);

impl AlignedBuf {
    /// A window of `len` bytes (contents unspecified).
    fn window(&mut self, len: usize) -> &mut [u8] {
        let need = len + BLOCK;
        // Grown to a power of two; given back after a large batch (a PUSHB of big jobs) once
        // batches are small again.
        if self.0.len() < need || (self.0.len() > 1 << 20 && self.0.len() > 4 * need) {
            self.0 = vec![0; need.next_power_of_two()];
        }
        let at = self.0.as_ptr().align_offset(BLOCK);
        &mut self.0[at..at + len]
    }
}

impl Sink {
    /// Wraps an open journal file, whose data ends at `bytes`; with `direct`, opens it a second
    /// time with `O_DIRECT` and returns the data of its last, partial block (which each direct
    /// write rewrites), read back from the file.
    fn new(
        file: File,
        path: &Path,
        bytes: u64,
        direct: bool,
        faults: Arc<FaultBudgets>,
    ) -> (Sink, Vec<u8>) {
        use std::os::unix::fs::FileExt;
        let partial = bytes % BLOCK as u64;
        let mut tail = vec![0; partial as usize];
        let mut direct = if direct { open_direct(path) } else { None };
        if direct.is_some() {
            if let Err(e) = file.read_exact_at(&mut tail, bytes - partial) {
                log::warn!(
                    "journal {}: cannot read its last block ({e}); writing through the page cache",
                    path.display()
                );
                direct = None;
            }
        }
        if direct.is_none() {
            tail.clear();
        }
        (
            Sink {
                file,
                direct,
                faults,
            },
            tail,
        )
    }

    /// Writes `bytes` at `at`, through the `O_DIRECT` handle when `direct` (whole blocks).
    fn write_at(&self, bytes: &[u8], at: u64, direct: bool) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let file = match (&self.direct, direct) {
            (Some(d), true) => d,
            _ => &self.file,
        };
        if !spend(&self.faults.writes_left) {
            let mut half = bytes.len() / 2;
            if direct {
                half -= half % BLOCK;
            }
            file.write_all_at(&bytes[..half], at)?;
            return Err(io::Error::other("injected write failure (WERK_FAULTS)"));
        }
        file.write_all_at(bytes, at)
    }

    /// Writes `len` zero bytes at `at` (past the data; no fault budget is spent).
    fn zero_fill(&self, at: u64, len: u64) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
        let mut done = 0;
        while done < len {
            let n = (len - done).min(ZEROS.len() as u64);
            self.file.write_all_at(&ZEROS[..n as usize], at + done)?;
            done += n;
        }
        Ok(())
    }

    fn sync(&self) -> io::Result<()> {
        let faults = &self.faults;
        if faults.slow_ms > 0 && !spend(&faults.fast_syncs_left) {
            std::thread::sleep(std::time::Duration::from_millis(faults.slow_ms));
        }
        if !spend(&faults.syncs_left) {
            return Err(io::Error::other("injected fsync failure (WERK_FAULTS)"));
        }
        self.file.sync_data()
    }
}

/// Why the journal cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The directory or a file could not be created or read.
    Io(PathBuf, io::Error),
    /// Another werk holds the directory's lock.
    Locked(PathBuf),
    /// Recovery failed (damage, or a record that does not apply).
    Recover(RecoverError),
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            OpenError::Locked(p) => write!(
                f,
                "{} is in use by another werk process (its lock is held); stop it or use another -d",
                p.display()
            ),
            OpenError::Recover(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for OpenError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compaction {
    /// Not running; the next may start at this monotonic time.
    Idle { not_before_ms: u64 },
    /// The next journal file is being created.
    Preparing,
    /// The snapshot is being written.
    Running,
}

/// Preallocation steps: the zeros kept ahead of the data grow with the file, from the first
/// to the second figure.
const PREALLOC_BYTES: (u64, u64) = (256 << 10, 8 << 20);

/// What the sync thread is asked to do: make batch `batch` of `file` durable, after writing
/// zeros at `zero_fill` (offset, length) when given.
struct SyncRequest {
    batch: u64,
    file: Arc<Sink>,
    zero_fill: Option<(u64, u64)>,
}

/// The sync thread's answer.
struct Synced {
    batch: u64,
    result: io::Result<()>,
    us: u64,
    /// The zero fill's outcome when the request had one (its sync flushed the zeros too; a
    /// failed fill still got its sync).
    zero_fill: Option<io::Result<()>>,
}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    file: Arc<Sink>,
    generation: u64,
    _lock: File,
    options: Options,
    staged: Vec<u8>,
    /// With `O_DIRECT`: the data of the file's last, partial block (from the last [`BLOCK`]
    /// boundary to `bytes`), which the next direct write writes again in front of its records.
    tail: Vec<u8>,
    /// With `O_DIRECT`: where a batch is laid out in whole, aligned blocks.
    image: AlignedBuf,
    written: u64,
    /// Batches a completed sync covered (all of them before the first, at open).
    synced: u64,
    durable: u64,
    in_flight: bool,
    /// Syncs in a row no longer than `options.inline_sync_max_us` (saturating).
    fast_syncs: u32,
    /// Size of the current file: the data plus the zeros preallocated after it.
    allocated: u64,
    /// False once preallocating failed (a full disk); the journal then only appends.
    prealloc: bool,
    /// `everysec`: monotonic time of the first write not yet covered by a sync request.
    unsynced_since_ms: Option<u64>,
    now_ms: u64,
    sync_tx: Sender<SyncRequest>,
    sync_rx: Receiver<Synced>,
    sync_latency: Histogram,
    failed: Option<String>,
    bytes: u64,
    snapshot_bytes: u64,
    compaction: Compaction,
    compact_tx: Sender<Task>,
    compact_rx: Receiver<Done>,
    last_compaction: Option<Compacted>,
}

impl Journal {
    /// Opens (or creates) the data directory `dir`, takes its lock, and replays the snapshot
    /// and the journals into `apply`. A torn tail is cut and logged; damage is an error. `wake`
    /// is called by the helper threads after each answer.
    pub fn open(
        dir: &Path,
        options: Options,
        wake: Arc<dyn Fn() + Send + Sync>,
        apply: &mut dyn FnMut(&Record) -> Result<(), String>,
    ) -> Result<(Journal, Recovered), OpenError> {
        let io_err = |p: &Path| {
            let p = p.to_path_buf();
            move |e| OpenError::Io(p, e)
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(OpenError::Locked(dir.to_path_buf()));
        }
        let found = recover(dir, Mode::Repair, None, apply).map_err(OpenError::Recover)?;
        for note in &found.notes {
            log::warn!("journal: {note}");
        }
        let (generation, append_at) = found.appends_to();
        if found.journal_old_format {
            log::info!(
                "journal: {} is in an older format; appends go to generation {generation}",
                dir.join(journal_name(found.generation)).display(),
            );
        }
        let path = dir.join(journal_name(generation));
        let file = match append_at {
            Some(_) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?,
            None => files::write_header(&path).map_err(io_err(&path))?,
        };
        // New records go after the data, over the zeros preallocated past it, if any.
        let bytes = append_at.unwrap_or(HEADER.len() as u64);
        let allocated = file.metadata().map_err(io_err(&path))?.len();
        let faults = Arc::new(FaultBudgets::new(&options.faults));
        let (sink, tail) = Sink::new(file, &path, bytes, options.direct(), faults);
        // The first batch's marker says that the batches before it are durable, and recovery
        // takes a journal that a newer one follows to be; those of an earlier run may not be
        // (werk killed under `everysec`: they can still be in the page cache), so every journal
        // is synced before it: the one appended to, and the older ones (a journal of an older
        // format, or one a compaction left before a header-only newer one).
        if append_at.is_some() {
            sink.sync().map_err(io_err(&path))?;
        }
        for (g, older) in files::journal_files(dir).map_err(io_err(dir))? {
            if g != generation {
                File::open(&older)
                    .and_then(|f| f.sync_data())
                    .map_err(io_err(&older))?;
            }
        }
        let (sync_tx, requests) = channel::<SyncRequest>();
        let (done, sync_rx) = channel();
        let wake_sync = wake.clone();
        std::thread::Builder::new()
            .name("werk-sync".into())
            .spawn(move || {
                for SyncRequest {
                    batch,
                    file,
                    zero_fill,
                } in requests
                {
                    let watch = Stopwatch::start();
                    let zero_fill = zero_fill.map(|(at, len)| file.zero_fill(at, len));
                    let result = file.sync();
                    let answer = Synced {
                        batch,
                        result,
                        us: watch.elapsed_us(),
                        zero_fill,
                    };
                    if done.send(answer).is_err() {
                        return;
                    }
                    wake_sync();
                }
            })
            .map_err(io_err(dir))?;
        let (compact_tx, tasks) = channel();
        let (compact_done, compact_rx) = channel();
        let compact_dir = dir.to_path_buf();
        std::thread::Builder::new()
            .name("werk-compact".into())
            .spawn(move || compact::run(compact_dir, tasks, compact_done, wake))
            .map_err(io_err(dir))?;
        let journal = Journal {
            dir: dir.to_path_buf(),
            file: Arc::new(sink),
            generation,
            _lock: lock,
            options,
            staged: Vec::new(),
            tail,
            image: AlignedBuf::default(),
            written: 0,
            synced: 0,
            durable: 0,
            in_flight: false,
            fast_syncs: 0,
            allocated,
            prealloc: true,
            unsynced_since_ms: None,
            now_ms: 0,
            sync_tx,
            sync_rx,
            sync_latency: Histogram::new(SYNC_BUCKETS_US),
            failed: None,
            bytes,
            snapshot_bytes: found.snapshot_bytes,
            compaction: Compaction::Idle { not_before_ms: 0 },
            compact_tx,
            compact_rx,
            last_compaction: None,
        };
        Ok((journal, found))
    }

    /// Encodes records to go out with the next batch.
    pub fn stage(&mut self, records: &[Record]) {
        for r in records {
            encode(r, &mut self.staged);
        }
    }

    /// The batch that will make everything staged so far durable.
    pub fn needed(&self) -> u64 {
        self.written + u64::from(!self.staged.is_empty())
    }

    /// The last durable batch.
    pub fn durable(&self) -> u64 {
        self.durable
    }

    /// Why the journal stopped accepting writes, if it did.
    pub fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Size of the current journal file in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// How long each fsync took (on the sync thread).
    pub fn sync_latency(&self) -> &Histogram {
        &self.sync_latency
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current journal generation.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Size of the last snapshot (0 without one).
    pub fn snapshot_bytes(&self) -> u64 {
        self.snapshot_bytes
    }

    /// The last finished compaction.
    pub fn last_compaction(&self) -> Option<Compacted> {
        self.last_compaction
    }

    /// True when a batch written now would be synced at once (`always`, no sync in flight,
    /// not failed): records staged now join that sync instead of waiting for the next.
    pub fn would_sync_now(&self) -> bool {
        self.options.sync == SyncPolicy::Always && !self.in_flight && self.failed.is_none()
    }

    /// True while a compaction is under way.
    pub fn compacting(&self) -> bool {
        !matches!(self.compaction, Compaction::Idle { .. })
    }

    /// Writes the staged records as one batch unless a sync is in flight (they then join the
    /// next batch).
    pub fn kick(&mut self) {
        if self.staged.is_empty() || self.in_flight || self.failed.is_some() {
            return;
        }
        // The marker that closes the batch: recovery keeps only closed batches, so a batch that
        // a power cut left half on the disk (its fsync never finished) is dropped whole. It
        // says whether the batches before it are durable: with `always` always (the loop
        // writes a batch only once the one before it is, one sync in flight), with `everysec`
        // and `none` for the first batch after a sync (none is written while one runs).
        let order = if self.synced == self.written {
            Order::AfterDurable
        } else {
            Order::Unsynced
        };
        encode_commit_in(self.bytes, order, &mut self.staged);
        // While a compaction writes its snapshot the disk's queue is long, and a direct write
        // waits in it on the loop (slowest turn 10–14 ms against 4–5 ms): the page cache takes
        // those batches, and the sync thread waits for the disk instead.
        let written = if self.writes_direct() {
            self.write_direct()
        } else {
            self.write_buffered()
        };
        if let Err(e) = written {
            // Part of the batch may be in the file, followed by preallocated zeros: a record
            // cut short inside the data, which the next start would refuse as damage. Cut the
            // file where the batch began (the journal is failed either way).
            let at = self.bytes;
            let cut = match self.file.file.set_len(at) {
                Ok(()) => format!("the file was cut back to byte {at}, where the batch began"),
                Err(e) => format!(
                    "cutting the file back to byte {at} failed too ({e}); the next start may \
                     refuse it (docs/OPERATIONS.md, recovery)"
                ),
            };
            let hint = if self.file.direct.is_some() && e.kind() == io::ErrorKind::InvalidInput {
                "; if this file system cannot take O_DIRECT writes, start werk with \
                 --journal-io buffered"
            } else {
                ""
            };
            self.fail(format!("write failed: {e}; {cut}{hint}"));
            return;
        }
        self.bytes += self.staged.len() as u64;
        self.staged.clear();
        self.written += 1;
        match self.options.sync {
            SyncPolicy::None => self.durable = self.written,
            SyncPolicy::EverySec => {
                self.durable = self.written;
                self.unsynced_since_ms.get_or_insert(self.now_ms);
            }
            SyncPolicy::Always => match self.next_zero_fill() {
                None if self.fast_syncs >= FAST_SYNCS_FOR_INLINE && !self.compacting() => {
                    self.sync_inline()
                }
                zero_fill => self.request_sync(zero_fill),
            },
        }
    }

    /// Whether the next batch goes through the `O_DIRECT` handle: there is one, and no
    /// compaction is writing its snapshot (see [`Journal::kick`]).
    fn writes_direct(&self) -> bool {
        self.file.direct.is_some() && !self.compacting()
    }

    /// Writes the staged batch through the page cache, after the data. With an `O_DIRECT`
    /// handle (a compaction is running) the last partial block is kept up to date for the
    /// direct writes that follow; the kernel keeps the two views of the file coherent.
    fn write_buffered(&mut self) -> io::Result<()> {
        self.file.write_at(&self.staged, self.bytes, false)?;
        if self.file.direct.is_some() {
            self.advance_tail();
        }
        Ok(())
    }

    /// After the staged batch was written at `bytes`: `tail` becomes the data of the new last
    /// partial block (the old tail, then the batch, from the last block boundary).
    fn advance_tail(&mut self) {
        let end = self.bytes + self.staged.len() as u64;
        let keep = (end % BLOCK as u64) as usize;
        match self.staged.len().checked_sub(keep) {
            Some(from) => {
                self.tail.clear();
                self.tail.extend_from_slice(&self.staged[from..]);
            }
            // The batch ends in the block the old tail started.
            None => self.tail.extend_from_slice(&self.staged),
        }
    }

    /// Writes the staged batch through the `O_DIRECT` handle: the last partial block's data
    /// (`tail`), the batch, and zeros to the next block boundary, from the block where the data
    /// ends. The kernel copies nothing into the page cache, and the `fdatasync` that follows
    /// has only the device's cache to flush: here 94–104 µs per write+sync against 118–136 µs
    /// through the page cache, and 35–40 µs of system CPU against 48–58 (docs/BENCHMARKS.md).
    /// Rewriting the last block is safe: its bytes up to `bytes` are the same ones, already
    /// durable, so a write torn at any sector leaves them as they were; past `bytes` the file
    /// holds zeros either way (preallocated, or this padding), which recovery reads as the end.
    fn write_direct(&mut self) -> io::Result<()> {
        let start = self.bytes - self.tail.len() as u64;
        let len = self.tail.len() + self.staged.len();
        let padded = len.next_multiple_of(BLOCK);
        let image = self.image.window(padded);
        image[..self.tail.len()].copy_from_slice(&self.tail);
        image[self.tail.len()..len].copy_from_slice(&self.staged);
        image[len..].fill(0);
        self.file.write_at(image, start, true)?;
        self.advance_tail();
        self.allocated = self.allocated.max(start + padded as u64);
        Ok(())
    }

    /// `fdatasync` on the loop: while the disk is fast (the last [`FAST_SYNCS_FOR_INLINE`]
    /// syncs each took at most `inline_sync_max_us`), a sync costs the loop less than handing
    /// it to the sync thread, which costs two thread wake-ups per batch (the request, and the
    /// answer through the waker) on top of the sync. Measured here at 20 connections: 40,924–
    /// 44,883 PUSHes/s inline against 32,070–35,675 on the thread (docs/ARCHITECTURE.md). One
    /// slow sync sends the next batches back to the thread, where the loop goes on serving
    /// reads, heartbeats and the Web UI while the disk works, until 16 fast syncs there say
    /// the disk is fast again; so a slow disk holds the loop for one sync at most. Batches
    /// that preallocate go to the thread too (the zero fill is a larger write), and so do all
    /// batches while a compaction runs (its snapshot writes make syncs slow: with inline syncs
    /// the slowest loop turn during a compaction of 1M jobs was 7–14 ms, on the thread 3–5).
    fn sync_inline(&mut self) {
        let watch = Stopwatch::start();
        let result = self.file.sync();
        let us = watch.elapsed_us();
        self.note_sync_time(us);
        match result {
            Ok(()) => {
                self.durable = self.written;
                self.synced = self.written;
            }
            Err(e) => self.fail(format!("fsync failed: {e}")),
        }
    }

    fn note_sync_time(&mut self, us: u64) {
        self.sync_latency.observe_us(us);
        self.fast_syncs =
            if us <= self.options.inline_sync_max_us && self.options.inline_sync_max_us > 0 {
                self.fast_syncs.saturating_add(1)
            } else {
                0
            };
    }

    /// With `always`, the journal keeps zeros preallocated ahead of its data, so that each
    /// batch overwrites them and its `fdatasync` flushes only data blocks: appending changes
    /// the file's size, and every such sync also commits the file system's own journal (on
    /// ext4 here: 174–241 µs per append+fdatasync against 127–143 µs over preallocated zeros,
    /// and under load 28,557/22,628 against 32,795/37,774 PUSHes/s; docs/BENCHMARKS.md). The
    /// sync thread writes the next zeros before its sync, while the loop writes nothing to the
    /// file (one sync in flight), so the two never write the same bytes.
    fn next_zero_fill(&mut self) -> Option<(u64, u64)> {
        let (min, max) = PREALLOC_BYTES;
        let step = self.bytes.clamp(min, max);
        if !self.prealloc || self.allocated >= self.bytes + step / 2 {
            return None;
        }
        let at = self.allocated.max(self.bytes);
        self.allocated = at + step;
        Some((at, step))
    }

    fn request_sync(&mut self, zero_fill: Option<(u64, u64)>) {
        let request = SyncRequest {
            batch: self.written,
            file: self.file.clone(),
            zero_fill,
        };
        if self.sync_tx.send(request).is_err() {
            self.fail("the sync thread is gone".into());
            return;
        }
        self.in_flight = true;
    }

    /// Writes and syncs everything staged, waiting for it (for shutdown, when blocking is fine).
    pub fn finish(&mut self) {
        loop {
            while self.in_flight && self.failed.is_none() {
                match self.sync_rx.recv() {
                    Ok(answer) => self.synced(answer),
                    Err(_) => self.fail("the sync thread is gone".into()),
                }
            }
            if self.failed.is_some() {
                return;
            }
            self.kick();
            if !self.in_flight && self.options.sync != SyncPolicy::Always && self.written > 0 {
                // `everysec` and `none` sync once at a clean shutdown.
                if let Err(e) = self.file.sync() {
                    self.fail(format!("fsync failed: {e}"));
                }
                self.unsynced_since_ms = None;
                return;
            }
            if !self.in_flight {
                return;
            }
        }
    }

    fn synced(&mut self, answer: Synced) {
        let Synced {
            batch,
            result,
            us,
            zero_fill,
        } = answer;
        self.in_flight = false;
        if zero_fill.is_some() {
            // Flushing up to 8 MiB of new zeros says nothing about the disk's speed for a
            // batch: the streak of fast syncs stands.
            self.sync_latency.observe_us(us);
        } else {
            self.note_sync_time(us);
        }
        if let Some(Err(e)) = zero_fill {
            // Harmless for the data (zeros past it); the journal goes on appending.
            self.prealloc = false;
            log::warn!(
                "journal {}: cannot preallocate ({e}); appending from now on",
                self.dir.join(journal_name(self.generation)).display()
            );
        }
        match result {
            Ok(()) => {
                self.synced = self.synced.max(batch);
                if self.options.sync == SyncPolicy::Always {
                    self.durable = self.durable.max(batch);
                }
            }
            Err(e) => self.fail(format!("fsync failed: {e}")),
        }
    }

    /// Once per loop turn: takes finished syncs and compaction steps, starts the `everysec`
    /// sync and compaction when due. Returns true when the durable batch moved.
    pub fn poll(&mut self, now_ms: u64) -> bool {
        self.now_ms = now_ms;
        let before = self.durable;
        while let Ok(answer) = self.sync_rx.try_recv() {
            self.synced(answer);
        }
        self.kick();
        if let Some(since) = self.unsynced_since_ms {
            if !self.in_flight && self.failed.is_none() && now_ms >= since + EVERYSEC_MS {
                self.unsynced_since_ms = None;
                self.request_sync(None);
            }
        }
        self.poll_compaction();
        self.durable != before
    }

    /// When [`Journal::poll`] must run next without any socket event (an `everysec` sync).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.unsynced_since_ms.map(|t| t + EVERYSEC_MS)
    }

    fn poll_compaction(&mut self) {
        while let Ok(done) = self.compact_rx.try_recv() {
            match done {
                Done::Prepared(g, Ok(file)) if self.failed.is_none() => {
                    // Between batches: everything written so far is in the old file, and an
                    // in-flight sync holds its own handle to it (and covers every batch: none
                    // is written while it runs). `everysec` and `none` batches no sync covered
                    // are in the old file: sync it now, and the new one takes its first batch
                    // once that sync answered (one sync in flight), so that a power cut can tear
                    // only the newest journal, where recovery may cut.
                    self.unsynced_since_ms = None;
                    if self.synced < self.written && !self.in_flight {
                        self.request_sync(None);
                    }
                    self.allocated = file.metadata().map_or(HEADER.len() as u64, |m| m.len());
                    self.bytes = HEADER.len() as u64;
                    let path = self.dir.join(journal_name(g));
                    // Asked for again with each file: one that could not be opened with
                    // O_DIRECT (or whose last block could not be read) says nothing of the next.
                    let (sink, tail) = Sink::new(
                        file,
                        &path,
                        self.bytes,
                        self.options.direct(),
                        self.file.faults.clone(),
                    );
                    self.file = Arc::new(sink);
                    self.tail = tail;
                    self.generation = g;
                    if self.compact_tx.send(Task::Compact(g)).is_ok() {
                        self.compaction = Compaction::Running;
                    } else {
                        self.compaction_failed("the compaction thread is gone".into());
                    }
                }
                Done::Prepared(_, Ok(_)) => {
                    self.compaction = Compaction::Idle {
                        not_before_ms: u64::MAX,
                    }
                }
                Done::Prepared(g, Err(e)) => self.compaction_failed(format!(
                    "cannot create {}: {e}",
                    self.dir.join(journal_name(g)).display()
                )),
                Done::Compacted(Ok(c)) => {
                    log::info!(
                        "compaction: snapshot of {} records ({} bytes) written in {} ms; removed \
                         {} journal file(s) ({} bytes)",
                        c.records,
                        c.bytes,
                        c.millis,
                        c.removed,
                        c.removed_bytes
                    );
                    self.snapshot_bytes = c.bytes;
                    self.last_compaction = Some(c);
                    self.compaction = Compaction::Idle { not_before_ms: 0 };
                }
                Done::Compacted(Err(e)) => self.compaction_failed(e),
            }
        }
        if let Compaction::Idle { not_before_ms } = self.compaction {
            if self.failed.is_none()
                && self.now_ms >= not_before_ms
                && self.bytes > self.options.compact_min_bytes.max(self.snapshot_bytes)
            {
                if self
                    .compact_tx
                    .send(Task::Prepare(self.generation + 1))
                    .is_ok()
                {
                    self.compaction = Compaction::Preparing;
                } else {
                    self.compaction_failed("the compaction thread is gone".into());
                }
            }
        }
    }

    fn compaction_failed(&mut self, why: String) {
        log::error!(
            "compaction failed: {why}; the journal goes on growing, next attempt in {} s",
            COMPACT_RETRY_MS / 1000
        );
        self.compaction = Compaction::Idle {
            not_before_ms: self.now_ms + COMPACT_RETRY_MS,
        };
    }

    fn fail(&mut self, why: String) {
        log::error!(
            "journal {}: {why}; refusing writes until werk is restarted",
            self.dir.join(journal_name(self.generation)).display()
        );
        self.failed = Some(why);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, SystemClock};
    use crate::command::Command;
    use crate::core::{ConnId, Core, CoreConfig};
    use crate::journal::files::{journal_files, SNAPSHOT_FILE};
    use std::time::{Duration, Instant};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("werk-unit-writer-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn sorted_dump(core: &Core) -> Vec<String> {
        let mut v = Vec::new();
        core.dump(&mut |r| v.push(format!("{r:?}")));
        v.sort();
        v
    }

    /// A core that produces journal records.
    fn recording() -> CoreConfig {
        CoreConfig {
            recording: true,
            ..CoreConfig::default()
        }
    }

    /// `count` PUSH lines, numbered on from `n`.
    fn pushes(n: &mut usize, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                *n += 1;
                format!(r#"PUSH {{"jid":"job{n:08}","jobtype":"T","args":[{n}]}}"#)
            })
            .collect()
    }

    /// Opens the journal in `d`, replaying what it holds into `core`.
    fn open_into(d: &Path, options: Options, core: &mut Core) -> (Journal, Recovered) {
        let now = SystemClock::new().now();
        Journal::open(d, options, Arc::new(|| {}), &mut |r| {
            core.replay(r, now).map_err(|e| e.to_string())
        })
        .unwrap()
    }

    /// Applies protocol lines to `core` and journals their records as one batch.
    fn turn(core: &mut Core, j: &mut Journal, lines: &[String], now_ms: &mut u64) {
        let clock = SystemClock::new();
        for line in lines {
            let cmd = Command::parse(line.as_bytes()).unwrap();
            core.apply(ConnId(1), cmd, clock.now());
        }
        let records = std::mem::take(&mut core.effects().records);
        j.stage(&records);
        j.kick();
        let need = j.needed();
        let deadline = Instant::now() + Duration::from_secs(10);
        while j.durable() < need {
            assert!(Instant::now() < deadline, "sync never finished");
            std::thread::sleep(Duration::from_millis(1));
            *now_ms += 1;
            j.poll(*now_ms);
        }
        assert!(j.failed().is_none());
    }

    /// Through the page cache and with `O_DIRECT` (whole blocks, the last one written again
    /// by the next batch): batches of many records, of one, and of an odd number, each
    /// crossing block boundaries or not; three restarts in the middle of a block.
    #[test]
    fn always_keeps_zeros_ahead_of_the_data_and_a_restart_goes_on_after_the_data() {
        for direct_io in [true, false] {
            keeps_zeros_ahead_and_restarts_after_the_data(direct_io);
        }
    }

    fn keeps_zeros_ahead_and_restarts_after_the_data(direct_io: bool) {
        let d = dir(&format!("prealloc-{direct_io}"));
        let now = SystemClock::new().now();
        let config = recording();
        let options = || Options {
            sync: SyncPolicy::Always,
            direct_io,
            ..Options::default()
        };
        let path = d.join(journal_name(1));
        let mut core = Core::new(config.clone(), now, 1);
        let mut now_ms = 0;
        let mut n = 0;
        let mut push = |core: &mut Core, j: &mut Journal, count: usize| {
            turn(core, j, &pushes(&mut n, count), &mut now_ms);
        };
        for round in 0..3 {
            let mut replayed = 0;
            let (mut j, found) = Journal::open(&d, options(), Arc::new(|| {}), &mut |r| {
                replayed += 1;
                core.replay(r, now).map_err(|e| e.to_string())
            })
            .unwrap();
            assert_eq!(
                replayed,
                round * 1_430,
                "every record of the earlier rounds"
            );
            assert!(found.notes.is_empty(), "{:?}", found.notes);
            // O_DIRECT where this file system takes it (ext4 here; not tmpfs on older kernels).
            let supported = open_direct(&path).is_some();
            assert_eq!(j.file.direct.is_some(), direct_io && supported);
            assert_eq!(
                j.tail.len() as u64,
                j.bytes() % BLOCK as u64 * u64::from(direct_io && supported)
            );
            for count in [100; 10].into_iter().chain([1; 60]).chain([37; 10]) {
                push(&mut core, &mut j, count);
            }
            let size = std::fs::metadata(&path).unwrap().len();
            let (min, _) = PREALLOC_BYTES;
            assert!(size >= j.bytes() + min / 2, "{size} vs data {}", j.bytes());
            assert_eq!(
                files::data_end(&path).unwrap(),
                j.bytes().next_multiple_of(512)
            );
            drop(j);
            core = Core::new(config.clone(), now, 1);
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A journal of an older version (1, before commit markers; 2, before their order) is never
    /// appended to: the first start of this werk opens the next generation, in version 3, and a
    /// restart reads both.
    #[test]
    fn journals_of_older_versions_are_continued_in_a_new_generation() {
        use crate::journal::record::{decode_all, encode_commit, HEADER_V1, HEADER_V2};
        for (version, header) in [(1, HEADER_V1), (2, HEADER_V2)] {
            let d = dir(&format!("v{version}-upgrade"));
            std::fs::create_dir_all(&d).unwrap();
            let now = SystemClock::new().now();
            // Two PUSHes journalled the old way: records only (version 1), or one batch
            // closed by a `0xC0` marker (version 2).
            let mut old = Core::new(recording(), now, 1);
            let mut n = 0;
            for line in pushes(&mut n, 2) {
                old.apply(ConnId(1), Command::parse(line.as_bytes()).unwrap(), now);
            }
            let mut image = header.to_vec();
            for r in std::mem::take(&mut old.effects().records) {
                encode(&r, &mut image);
            }
            if version == 2 {
                encode_commit(HEADER.len() as u64, &mut image);
            }
            let first = d.join(journal_name(1));
            std::fs::write(&first, &image).unwrap();
            let mut core = Core::new(recording(), now, 1);
            let (mut j, found) = open_into(&d, Options::default(), &mut core);
            assert_eq!(found.journal_records, 2, "v{version}");
            assert_eq!(j.generation(), 2, "v{version}");
            let mut now_ms = 0;
            turn(&mut core, &mut j, &pushes(&mut n, 3), &mut now_ms);
            drop(j);
            assert_eq!(
                std::fs::read(&first).unwrap(),
                image,
                "the version {version} file is left as it was"
            );
            let second = std::fs::read(d.join(journal_name(2))).unwrap();
            let end = files::data_end(&d.join(journal_name(2))).unwrap() as usize;
            let (records, _, err) = decode_all(&second[..end]);
            assert_eq!(records.len(), 3);
            assert!(second.starts_with(HEADER), "a current version file");
            assert!(
                matches!(
                    err,
                    None | Some(crate::journal::record::DecodeError::Corrupt { .. })
                ),
                "{err:?}"
            );
            let mut again = Core::new(recording(), now, 1);
            let (j, found) = open_into(&d, Options::default(), &mut again);
            assert_eq!(found.journal_records, 5);
            assert_eq!(j.generation(), 2, "a current version file is appended to");
            assert!(found.notes.is_empty(), "{:?}", found.notes);
            assert_eq!(sorted_dump(&again), sorted_dump(&core));
            drop(j);
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    /// While a compaction runs, batches go through the page cache; before and after it, with
    /// `O_DIRECT`, into the same file and often the same block: each kind must go on exactly
    /// where the other stopped. (The compaction itself is not run: its state is set, and the
    /// journal is asked which way each batch goes.)
    #[test]
    fn direct_and_page_cache_batches_take_turns_in_one_file() {
        let d = dir("mixed");
        let now = SystemClock::new().now();
        let mut core = Core::new(recording(), now, 1);
        let (mut j, _) =
            Journal::open(&d, Options::default(), Arc::new(|| {}), &mut |_| Ok(())).unwrap();
        if j.file.direct.is_none() {
            eprintln!(
                "O_DIRECT refused by {}: only the page cache is tested",
                d.display()
            );
        }
        let (mut now_ms, mut n, mut buffered, mut batches) = (0, 0, 0, 0);
        for (compacting, sizes) in [
            (false, vec![1, 30, 2]),
            (true, vec![3, 1, 45, 1]),
            (false, vec![1, 7]),
            (true, vec![1]),
            (false, vec![60, 1, 1]),
        ] {
            j.compaction = if compacting {
                Compaction::Running
            } else {
                Compaction::Idle {
                    not_before_ms: u64::MAX,
                }
            };
            for count in sizes {
                let bytes = j.bytes();
                buffered += u64::from(!j.writes_direct());
                batches += 1;
                turn(&mut core, &mut j, &pushes(&mut n, count), &mut now_ms);
                if j.file.direct.is_some() {
                    assert_eq!(
                        j.tail.len() as u64,
                        j.bytes() % BLOCK as u64,
                        "after {bytes}"
                    );
                }
            }
        }
        // The five batches written while "compacting" took the page cache; where O_DIRECT is
        // refused, all of them did.
        let expected = if j.file.direct.is_some() { 5 } else { batches };
        assert_eq!(buffered, expected);
        let path = d.join(journal_name(1));
        assert_eq!(
            files::data_end(&path).unwrap(),
            j.bytes().next_multiple_of(512)
        );
        drop(j);
        let mut replayed = 0;
        let (_j, found) = Journal::open(&d, Options::default(), Arc::new(|| {}), &mut |_| {
            replayed += 1;
            Ok(())
        })
        .unwrap();
        assert!(found.notes.is_empty(), "{:?}", found.notes);
        assert_eq!(replayed, n);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn compaction_switches_files_and_recovery_rebuilds_the_same_state() {
        let d = dir("compact");
        let now = SystemClock::new().now();
        let mut core = Core::new(recording(), now, 1);
        let options = Options {
            sync: SyncPolicy::Always,
            compact_min_bytes: 16 << 10,
            ..Options::default()
        };
        let (mut j, found) = Journal::open(&d, options, Arc::new(|| {}), &mut |_| Ok(())).unwrap();
        assert_eq!((found.generation, found.journal_exists), (1, false));
        let mut now_ms = 0;
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(20);
        // Push, fetch and acknowledge until two compactions have happened.
        while j.last_compaction().is_none_or(|c| c.generation < 3) {
            assert!(Instant::now() < deadline, "no compaction");
            let mut lines = Vec::new();
            for _ in 0..20 {
                n += 1;
                lines.push(format!(
                    r#"PUSH {{"jid":"job{n:08}","jobtype":"T","args":[{n}],"retry":3}}"#
                ));
            }
            lines.push("FETCH default".into());
            lines.push(format!(r#"ACK {{"jid":"job{:08}"}}"#, n - 19));
            turn(&mut core, &mut j, &lines, &mut now_ms);
        }
        // Let a compaction the last turns started finish.
        while j.compacting() {
            assert!(Instant::now() < deadline, "compaction never finished");
            std::thread::sleep(Duration::from_millis(1));
            now_ms += 1;
            j.poll(now_ms);
        }
        // The queue keeps growing, so the live state does too; a few more changes after the
        // last switch land in the newest journal only.
        turn(
            &mut core,
            &mut j,
            &[
                "QUEUE PAUSE default".into(),
                r#"FAIL {"jid":"job00000002","message":"x"}"#.into(),
            ],
            &mut now_ms,
        );
        let c = j.last_compaction().unwrap();
        assert!(c.removed >= 1 && c.records > 0 && c.bytes > 0, "{c:?}");
        assert!(j.bytes() < j.snapshot_bytes().max(16 << 10) * 2);
        let generation = j.generation();
        let names: Vec<u64> = journal_files(&d).unwrap().iter().map(|x| x.0).collect();
        assert_eq!(names, vec![generation], "covered journals are removed");
        assert!(d.join(SNAPSHOT_FILE).exists());
        let live = sorted_dump(&core);
        drop(j);

        let mut fresh = Core::new(CoreConfig::default(), now, 2);
        let (j, found) = open_into(&d, options, &mut fresh);
        assert_eq!(found.generation, generation);
        assert!(
            found.snapshot_records > 0 && found.journal_records > 0,
            "{found:?}"
        );
        assert_eq!(sorted_dump(&fresh), live);
        drop(j);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A compaction moves appends to a new journal only once the old one is durable, whatever
    /// the policy: a power cut can then leave holes only in the newest journal, where recovery
    /// can cut them (a hole in a journal that a newer one follows is refused).
    #[test]
    fn the_old_journal_is_synced_before_the_new_one_takes_a_batch() {
        for policy in [SyncPolicy::EverySec, SyncPolicy::None] {
            let d = dir(&format!("switch-{}", policy.as_str()));
            let options = Options {
                sync: policy,
                compact_min_bytes: 16 << 10,
                ..Options::default()
            };
            let now = SystemClock::new().now();
            let mut core = Core::new(recording(), now, 1);
            let (mut j, _) = open_into(&d, options, &mut core);
            let (mut n, mut now_ms) = (0, 0);
            let deadline = Instant::now() + Duration::from_secs(20);
            // The clock stands still: no `everysec` sync falls due on its own.
            while j.generation() == 1 {
                assert!(Instant::now() < deadline, "no compaction");
                turn(&mut core, &mut j, &pushes(&mut n, 20), &mut now_ms);
                std::thread::sleep(Duration::from_millis(1));
                j.poll(now_ms);
            }
            assert!(
                j.in_flight,
                "{policy:?}: switched with the old journal unsynced"
            );
            // The new journal's first batch waits for that sync.
            let written = j.written;
            j.stage(&[Record::Flush]);
            j.kick();
            assert_eq!(
                j.written, written,
                "{policy:?}: written before the sync answered"
            );
            settle(&mut j, now_ms);
            assert_eq!(j.written, written + 1);
            // And its marker says that the batches before it are durable.
            let path = d.join(journal_name(j.generation()));
            let records = crate::journal::record::decode_all(&std::fs::read(&path).unwrap()).0;
            assert_eq!(records, [Record::Flush]);
            let orders = marker_orders(&path);
            assert_eq!(
                orders,
                [crate::journal::record::Order::AfterDurable],
                "{policy:?}"
            );
            drop(j);
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    /// Stages one record and kicks; returns whether the batch was durable at once (synced on
    /// the loop) rather than handed to the sync thread, waiting for the thread if it was.
    fn one_batch(j: &mut Journal) -> bool {
        j.stage(&[Record::Flush]);
        j.kick();
        let inline = j.durable() == j.needed();
        assert_eq!(inline, !j.in_flight);
        settle(j, 0);
        inline
    }

    /// Polls (at `now_ms`) until the sync thread has answered the sync in flight, if any.
    fn settle(j: &mut Journal, now_ms: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while j.in_flight {
            assert!(Instant::now() < deadline, "sync never finished");
            std::thread::sleep(Duration::from_millis(1));
            j.poll(now_ms);
        }
    }

    /// The order of each commit marker of the journal at `path`, up to its data end.
    fn marker_orders(path: &Path) -> Vec<crate::journal::record::Order> {
        use crate::journal::record::{decode_item, Item};
        let end = files::data_end(path).unwrap() as usize;
        let bytes = std::fs::read(path).unwrap();
        let (mut at, mut orders) = (HEADER.len(), Vec::new());
        // Up to the zeros after the data (rounded to a sector by data_end).
        while at < end && bytes[at..at + 4] != [0; 4] {
            let (item, used) = decode_item(&bytes[at..end]).unwrap().unwrap();
            if let Item::Commit { order, .. } = item {
                orders.push(order);
            }
            at += used;
        }
        orders
    }

    #[test]
    fn the_loop_syncs_inline_after_enough_fast_syncs_on_the_thread_and_shares_their_fate() {
        let d = dir("inline");
        let options = Options {
            // Fast: every sync qualifies. The 40th sync fails.
            inline_sync_max_us: u64::MAX,
            faults: Faults::parse("sync-fail-after=39").unwrap(),
            ..Options::default()
        };
        let (mut j, _) = Journal::open(&d, options, Arc::new(|| {}), &mut |_| Ok(())).unwrap();
        // The first batch preallocates: that sync is the thread's whatever the streak, and it
        // does not count towards the streak (it flushed the new zeros too). 16 more follow.
        let ways: Vec<bool> = (0..39).map(|_| one_batch(&mut j)).collect();
        let first_inline = ways.iter().position(|&inline| inline);
        let streak_done = FAST_SYNCS_FOR_INLINE as usize + 1;
        assert_eq!(first_inline, Some(streak_done), "{ways:?}");
        assert!(ways[streak_done..].iter().all(|&i| i));
        assert_eq!(j.sync_latency().count(), 39);
        assert!(j.failed().is_none());
        // An inline sync that fails fails the journal; its batch never becomes durable.
        j.stage(&[Record::Flush]);
        j.kick();
        assert!(j.durable() < j.needed());
        assert!(j
            .failed()
            .is_some_and(|f| f.contains("injected fsync failure")));
        drop(j);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn one_slow_sync_sends_the_syncs_back_to_the_thread_and_zero_keeps_them_there() {
        let d = dir("slow");
        let (mut j, _) =
            Journal::open(&d, Options::default(), Arc::new(|| {}), &mut |_| Ok(())).unwrap();
        assert!(
            !one_batch(&mut j),
            "the first batch preallocates: on the thread"
        );
        for _ in 0..FAST_SYNCS_FOR_INLINE {
            j.note_sync_time(10);
        }
        assert!(j.fast_syncs >= FAST_SYNCS_FOR_INLINE);
        assert!(one_batch(&mut j), "inline after a streak of fast syncs");
        j.note_sync_time(1_001);
        assert_eq!(j.fast_syncs, 0, "one slow sync resets the streak");
        assert!(!one_batch(&mut j), "back on the thread");
        j.options.inline_sync_max_us = 0;
        for _ in 0..FAST_SYNCS_FOR_INLINE {
            j.note_sync_time(0);
        }
        assert_eq!(j.fast_syncs, 0, "0: never inline");
        assert!(!one_batch(&mut j));
        drop(j);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Each batch's marker says whether the batches before it were durable when it was written:
    /// with `always` every batch (the loop waits for each sync before writing the next); with
    /// `everysec` and `none` the first batch after a sync that covered them all (the one at a
    /// start, the periodic one, a compaction's), and not the others (recovery may then cut a
    /// hole with the batches after it).
    #[test]
    fn markers_say_whether_the_batches_before_were_durable() {
        use crate::journal::record::Order::{AfterDurable as A, Unsynced as U};
        for (policy, orders) in [
            (SyncPolicy::Always, [A, A, A, A, A]),
            (SyncPolicy::EverySec, [A, U, U, A, U]),
            (SyncPolicy::None, [A, U, U, A, U]),
        ] {
            let d = dir(&format!("order-{}", policy.as_str()));
            let options = Options {
                sync: policy,
                ..Options::default()
            };
            let now = SystemClock::new().now();
            let (mut core, mut n, mut now_ms) = (Core::new(recording(), now, 1), 0, 0);
            let (mut j, _) = open_into(&d, options, &mut core);
            for _ in 0..3 {
                turn(&mut core, &mut j, &pushes(&mut n, 2), &mut now_ms);
            }
            if policy == SyncPolicy::EverySec {
                // The second passes: the periodic sync covers the three batches.
                now_ms += EVERYSEC_MS;
                j.poll(now_ms);
                assert!(j.in_flight);
                settle(&mut j, now_ms);
                turn(&mut core, &mut j, &pushes(&mut n, 2), &mut now_ms);
            } else {
                // A restart syncs what it appends to.
                drop(j);
                let mut fresh = Core::new(recording(), now, 2);
                j = open_into(&d, options, &mut fresh).0;
                core = fresh;
                turn(&mut core, &mut j, &pushes(&mut n, 2), &mut now_ms);
            }
            turn(&mut core, &mut j, &pushes(&mut n, 2), &mut now_ms);
            drop(j);
            let found = marker_orders(&d.join(journal_name(1)));
            assert_eq!(found, orders, "{policy:?}");
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    /// A start syncs the journal it appends to before its first batch, whose marker says that
    /// the batches before it are durable; when that sync fails, werk does not start.
    #[test]
    fn a_start_syncs_the_journal_it_appends_to() {
        for policy in [SyncPolicy::Always, SyncPolicy::EverySec, SyncPolicy::None] {
            let d = dir(&format!("open-sync-{}", policy.as_str()));
            let fresh = dir(&format!("open-sync-fresh-{}", policy.as_str()));
            let options = Options {
                sync: policy,
                ..Options::default()
            };
            let (j, _) = Journal::open(&d, options, Arc::new(|| {}), &mut |_| Ok(())).unwrap();
            drop(j);
            let failing = Options {
                faults: Faults::parse("sync-fail-after=0").unwrap(),
                ..options
            };
            match Journal::open(&d, failing, Arc::new(|| {}), &mut |_| Ok(())) {
                Err(OpenError::Io(path, e)) => {
                    assert_eq!(path, d.join(journal_name(1)));
                    assert!(e.to_string().contains("injected fsync failure"), "{e}");
                }
                other => panic!("{policy:?}: started: {:?}", other.map(|_| ())),
            }
            // Nothing to append to: nothing to sync.
            assert!(Journal::open(&fresh, failing, Arc::new(|| {}), &mut |_| Ok(())).is_ok());
            std::fs::remove_dir_all(d).unwrap();
            std::fs::remove_dir_all(fresh).unwrap();
        }
    }

    #[test]
    fn everysec_acknowledges_on_write_and_syncs_within_the_second() {
        let d = dir("everysec");
        let options = Options {
            sync: SyncPolicy::EverySec,
            ..Options::default()
        };
        let (mut j, _) = Journal::open(&d, options, Arc::new(|| {}), &mut |_| Ok(())).unwrap();
        j.poll(1_000);
        j.stage(&[Record::Flush]);
        j.kick();
        assert_eq!(j.durable(), 1, "durable once written");
        assert_eq!(j.next_deadline_ms(), Some(1_000 + EVERYSEC_MS));
        j.poll(1_999);
        assert!(!j.in_flight);
        j.poll(2_000);
        assert!(j.in_flight, "sync requested at the deadline");
        assert_eq!(j.next_deadline_ms(), None);
        drop(j);
        std::fs::remove_dir_all(d).unwrap();
    }
}
