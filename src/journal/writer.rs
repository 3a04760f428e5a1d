//! The journal file: recovery at open, group commit, and the sync thread.
//!
//! The loop stages the records of one turn ([`Journal::stage`]); at the end of the turn
//! [`Journal::kick`] writes everything staged as one batch and, with [`SyncPolicy::Always`], asks
//! the sync thread to `fsync` it. The thread answers through a channel and wakes the loop with
//! the `mio::Waker`; [`Journal::poll_syncs`] then advances the durable batch number. Records
//! staged while a sync is in flight wait and go out together as the next batch (group commit).
//! Replies are held by the loop until the batch that covers them is durable.
//!
//! A failed write or sync marks the journal failed for good: it is never retried and trusted
//! (after a failed fsync the kernel may have dropped the dirty pages). The loop then refuses
//! writes; a restart recovers what reached the disk.

use super::record::{decode_all, encode, DecodeError, HEADER};
use crate::core::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Name of the journal file in the data directory.
pub const JOURNAL_FILE: &str = "journal.wrk";
/// Name of the lock file in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// When a change counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fsync` before the reply (the default): an acknowledged change survives power loss.
    Always,
    /// Write to the OS before the reply, never `fsync`: survives a crash of werk, not of the
    /// machine.
    None,
}

/// Why the journal cannot be opened.
#[derive(Debug)]
pub enum OpenError {
    /// The directory or file could not be created or read.
    Io(PathBuf, io::Error),
    /// Another werk holds the directory's lock.
    Locked(PathBuf),
    /// A record in the middle of the journal is damaged; werk will not serve it.
    Corrupt(PathBuf, DecodeError),
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
            OpenError::Corrupt(p, e) => write!(
                f,
                "{}: {e}; werk will not start on a damaged journal (move the file away to start empty)",
                p.display()
            ),
        }
    }
}

impl std::error::Error for OpenError {}

/// An open journal.
#[derive(Debug)]
pub struct Journal {
    file: File,
    path: PathBuf,
    _lock: File,
    policy: SyncPolicy,
    staged: Vec<u8>,
    written: u64,
    durable: u64,
    in_flight: bool,
    sync_tx: Sender<u64>,
    sync_rx: Receiver<(u64, io::Result<()>)>,
    failed: Option<String>,
    bytes: u64,
}

impl Journal {
    /// Opens (or creates) the journal in `dir`, takes the directory's lock, and returns the
    /// records of its valid prefix. A torn last record is cut off and logged; a corrupt record
    /// is an error. `wake` is called by the sync thread after each sync.
    pub fn open(
        dir: &Path,
        policy: SyncPolicy,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> Result<(Journal, Vec<Record>), OpenError> {
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
        let path = dir.join(JOURNAL_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(io_err(&path))?;
        let mut image = Vec::new();
        file.read_to_end(&mut image).map_err(io_err(&path))?;
        let records = if image.is_empty() {
            file.write_all(HEADER).map_err(io_err(&path))?;
            file.sync_all().map_err(io_err(&path))?;
            sync_dir(dir).map_err(io_err(dir))?;
            Vec::new()
        } else {
            let (records, used, stop) = decode_all(&image);
            match stop {
                None => {}
                Some(DecodeError::Torn { offset }) => {
                    log::warn!(
                        "journal {}: cut a torn record at byte {offset} ({} bytes dropped); \
                         kept {} records",
                        path.display(),
                        image.len() - used,
                        records.len()
                    );
                    file.set_len(used as u64).map_err(io_err(&path))?;
                    file.sync_all().map_err(io_err(&path))?;
                }
                Some(e) => return Err(OpenError::Corrupt(path, e)),
            }
            records
        };
        let bytes = file.seek(SeekFrom::End(0)).map_err(io_err(&path))?;
        let syncer = file.try_clone().map_err(io_err(&path))?;
        let (sync_tx, requests) = channel::<u64>();
        let (done, sync_rx) = channel();
        std::thread::Builder::new()
            .name("werk-sync".into())
            .spawn(move || {
                for batch in requests {
                    let result = syncer.sync_data();
                    if done.send((batch, result)).is_err() {
                        return;
                    }
                    wake();
                }
            })
            .map_err(io_err(&path))?;
        let journal = Journal {
            file,
            path,
            _lock: lock,
            policy,
            staged: Vec::new(),
            written: 0,
            durable: 0,
            in_flight: false,
            sync_tx,
            sync_rx,
            failed: None,
            bytes,
        };
        Ok((journal, records))
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

    /// Size of the journal file in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the staged records as one batch unless a sync is in flight (they then join the
    /// next batch).
    pub fn kick(&mut self) {
        if self.staged.is_empty() || self.in_flight || self.failed.is_some() {
            return;
        }
        if let Err(e) = self.file.write_all(&self.staged) {
            self.fail(format!("write failed: {e}"));
            return;
        }
        self.bytes += self.staged.len() as u64;
        self.staged.clear();
        self.written += 1;
        match self.policy {
            SyncPolicy::None => self.durable = self.written,
            SyncPolicy::Always => {
                if self.sync_tx.send(self.written).is_err() {
                    self.fail("the sync thread is gone".into());
                    return;
                }
                self.in_flight = true;
            }
        }
    }

    /// Writes and syncs everything staged, waiting for it (for shutdown, when blocking is fine).
    pub fn finish(&mut self) {
        while self.in_flight && self.failed.is_none() {
            match self.sync_rx.recv() {
                Ok((batch, Ok(()))) => {
                    self.in_flight = false;
                    self.durable = self.durable.max(batch);
                }
                Ok((_, Err(e))) => {
                    self.in_flight = false;
                    self.fail(format!("fsync failed: {e}"));
                }
                Err(_) => self.fail("the sync thread is gone".into()),
            }
        }
        self.kick();
        if self.in_flight {
            self.finish();
        }
    }

    /// Takes finished syncs; returns true when the durable batch moved.
    pub fn poll_syncs(&mut self) -> bool {
        let before = self.durable;
        while let Ok((batch, result)) = self.sync_rx.try_recv() {
            self.in_flight = false;
            match result {
                Ok(()) => self.durable = self.durable.max(batch),
                Err(e) => self.fail(format!("fsync failed: {e}")),
            }
        }
        self.kick();
        self.durable != before
    }

    fn fail(&mut self, why: String) {
        log::error!(
            "journal {}: {why}; refusing writes until werk is restarted",
            self.path.display()
        );
        self.failed = Some(why);
    }
}

/// Makes a file creation in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
