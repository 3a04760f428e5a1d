//! The data directory: which files it holds, and recovery (snapshot + journal replay).
//!
//! ```text
//! DIR/LOCK                       flock'ed by the running werk
//! DIR/snapshot.wrk               the live state as of the start of generation G (optional)
//! DIR/journal-<G>.wrk            changes after the snapshot, G = the snapshot's generation
//! DIR/journal-<G+1>.wrk ...      later generations (a compaction switched files)
//! DIR/snapshot.tmp               a snapshot being written (ignored and removed at start)
//! ```
//! Generations are written with ten digits, so name order is generation order.

use super::read::{ItemReader, ReadError};
use super::record::{
    commit_at, decode_item, Batcher, DecodeError, Framing, Item, Order, COMMIT_BYTES, HEADER,
    HEADER_V1, HEADER_V2, MISPLACED_COMMIT, RECORD_BYTES_MAX, SNAPSHOT_HEADER,
};
use crate::core::record::Record;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// The snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot.wrk";
/// A snapshot being written.
pub const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// The lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The file name of journal generation `generation`.
pub fn journal_name(generation: u64) -> String {
    format!("journal-{generation:010}.wrk")
}

/// The generation of a journal file name.
pub fn journal_generation(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("journal-")?.strip_suffix(".wrk")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The journal files in `dir`, oldest generation first.
pub fn journal_files(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(g) = entry.file_name().to_str().and_then(journal_generation) {
            out.push((g, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Makes a file creation, rename or removal in `dir` durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Why a data directory cannot be recovered.
#[derive(Debug)]
pub enum RecoverError {
    /// A file could not be read, cut or removed.
    Io(PathBuf, io::Error),
    /// A file is damaged where a torn write cannot explain it; werk will not serve it.
    Corrupt(PathBuf, String),
    /// A record does not fit the state rebuilt so far.
    Replay(PathBuf, u64, String),
}

impl std::fmt::Display for RecoverError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecoverError::Io(p, e) => write!(f, "{}: {e}", p.display()),
            RecoverError::Corrupt(p, why) => write!(f, "{}: {why}", p.display()),
            RecoverError::Replay(p, offset, why) => write!(
                f,
                "{}: the record at byte {offset} does not apply: {why}",
                p.display()
            ),
        }
    }
}

impl std::error::Error for RecoverError {}

/// What recovery found.
#[derive(Debug, Default)]
pub struct Recovered {
    /// The newest journal generation (see [`Recovered::appends_to`] for where appends go).
    pub generation: u64,
    /// Whether that journal file exists.
    pub journal_exists: bool,
    /// Size of the snapshot (0 without one).
    pub snapshot_bytes: u64,
    /// Records in the snapshot.
    pub snapshot_records: u64,
    /// Size of the newest journal after recovery.
    pub journal_bytes: u64,
    /// Bytes of every journal read.
    pub journals_bytes: u64,
    /// Journal files read.
    pub journals: usize,
    /// Journal records replayed.
    pub journal_records: u64,
    /// Whether the newest journal was written in an older format ([`HEADER_V1`], before
    /// batches had commit markers, or [`HEADER_V2`], before markers had an order).
    pub journal_old_format: bool,
    /// What was cut or ignored, one line each (logged by the caller).
    pub notes: Vec<String>,
}

impl Recovered {
    /// Where appends go: the generation, and the offset to write at in it, or `None` when its
    /// file is to be created. A journal of an older format is never appended to (version 1 has
    /// only the record-by-record rules, so a power cut could keep part of a batch; a werk of
    /// version 2, started again on its file, would cut the `0xC1` batches as a torn tail):
    /// appends go to the next generation, in the current format, and recovery reads the files
    /// in order.
    pub fn appends_to(&self) -> (u64, Option<u64>) {
        match (self.journal_exists, self.journal_old_format) {
            (true, false) => (self.generation, Some(self.journal_bytes)),
            (true, true) => (self.generation + 1, None),
            (false, _) => (self.generation, None),
        }
    }
}

/// How recovery treats damage it can explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// At server start: cut torn tails, remove leftovers of an interrupted compaction.
    Repair,
    /// Offline check or compaction: change nothing, report.
    ReadOnly,
}

/// Reads the snapshot and the journals (those older than `before`, when given) of `dir`,
/// handing every record to `apply` in order.
///
/// A torn tail (a partial record, or a zero-filled tail after a crash) is cut in
/// [`Mode::Repair`] and reported in `notes`; damage anywhere else is [`RecoverError::Corrupt`].
pub fn recover(
    dir: &Path,
    mode: Mode,
    before: Option<u64>,
    apply: &mut dyn FnMut(&Record) -> Result<(), String>,
) -> Result<Recovered, RecoverError> {
    let io_at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| RecoverError::Io(p, e)
    };
    let mut found = Recovered::default();
    let tmp = dir.join(SNAPSHOT_TMP);
    if mode == Mode::Repair && tmp.exists() {
        std::fs::remove_file(&tmp).map_err(io_at(&tmp))?;
        found.notes.push(format!(
            "removed {} (an interrupted compaction)",
            tmp.display()
        ));
    }
    let journals = journal_files(dir).map_err(io_at(dir))?;
    let snapshot = dir.join(SNAPSHOT_FILE);
    let base = if snapshot.exists() {
        let (generation, records, bytes) = read_snapshot(&snapshot, apply)?;
        found.snapshot_bytes = bytes;
        found.snapshot_records = records;
        generation
    } else {
        journals.first().map_or(1, |j| j.0)
    };
    let mut expect = base;
    let live: Vec<_> = journals
        .iter()
        .filter(|(g, _)| before.is_none_or(|b| *g < b))
        .collect();
    // Journals are preallocated with zeros (see `journal::writer`): what counts is where their
    // data ends, not their size.
    let mut newest_with_data = None;
    for (g, path) in live.iter().rev().filter(|(g, _)| *g >= base) {
        if holds_records(path).map_err(io_at(path))? {
            newest_with_data = Some(*g);
            break;
        }
    }
    for (g, path) in &live {
        if *g < base {
            // Already in the snapshot: a compaction stopped before it removed this file.
            if mode == Mode::Repair {
                std::fs::remove_file(path).map_err(io_at(path))?;
                found.notes.push(format!(
                    "removed {} (already in the snapshot)",
                    path.display()
                ));
            }
            continue;
        }
        if *g != expect {
            return Err(RecoverError::Corrupt(
                path.clone(),
                format!("journal generation {expect} is missing"),
            ));
        }
        expect += 1;
        // A damaged tail can be a torn write only in the newest journal that holds records: a
        // later file gets its first batch only after this one's last batch was synced.
        let last = newest_with_data.is_none_or(|newest| newest <= *g);
        let (records, bytes, old_format) = read_journal(path, mode, last, &mut found.notes, apply)?;
        found.journal_old_format = old_format;
        found.journal_records += records;
        found.journals_bytes += bytes;
        found.journals += 1;
        found.journal_bytes = bytes;
        found.journal_exists = true;
    }
    found.generation = if found.journal_exists {
        expect - 1
    } else {
        base
    };
    Ok(found)
}

/// Replays a snapshot; returns its generation, record count and size.
fn read_snapshot(
    path: &Path,
    apply: &mut dyn FnMut(&Record) -> Result<(), String>,
) -> Result<(u64, u64, u64), RecoverError> {
    let corrupt = |why: String| RecoverError::Corrupt(path.to_path_buf(), why);
    let file = File::open(path).map_err(|e| RecoverError::Io(path.to_path_buf(), e))?;
    let reader = ItemReader::open(io::BufReader::new(file), &[SNAPSHOT_HEADER])
        .map_err(|e| corrupt(e.to_string()))?;
    let Some(mut reader) = reader else {
        return Err(corrupt("empty snapshot".into()));
    };
    let mut count = 0u64;
    loop {
        let at = reader.offset();
        match reader.next_item() {
            Ok(Some(Item::Record(r))) => {
                apply(&r).map_err(|e| RecoverError::Replay(path.to_path_buf(), at, e))?;
                count += 1;
            }
            Ok(Some(Item::SnapshotEnd {
                generation,
                records,
            })) => {
                if records != count {
                    return Err(corrupt(format!(
                        "the trailer counts {records} records, the file holds {count}"
                    )));
                }
                return match reader.next_item() {
                    Ok(None) => Ok((generation, count, reader.offset())),
                    _ => Err(corrupt("bytes after the trailer".into())),
                };
            }
            Ok(Some(Item::Commit { .. })) => {
                return Err(corrupt(format!("a commit marker at byte {at}")))
            }
            Ok(None) => return Err(corrupt("no trailer: the snapshot is incomplete".into())),
            Err(e) => return Err(corrupt(e.to_string())),
        }
    }
}

/// Replays one journal file; returns its record count, its (valid) size, and whether it keeps
/// the header of an older format (a file that had no header, or only part of one, has the
/// current one after a repair).
fn read_journal(
    path: &Path,
    mode: Mode,
    last: bool,
    notes: &mut Vec<String>,
    apply: &mut dyn FnMut(&Record) -> Result<(), String>,
) -> Result<(u64, u64, bool), RecoverError> {
    let io_err = |e| RecoverError::Io(path.to_path_buf(), e);
    let file = File::open(path).map_err(io_err)?;
    // The zeros the writer preallocated past the data are not part of the journal.
    let size = data_end_of(&file).map_err(io_err)?;
    if size == 0 {
        // Created, not yet given its header: nothing was ever written to it.
        if mode == Mode::Repair {
            write_header(path).map_err(io_err)?;
        }
        return Ok((0, HEADER.len() as u64, false));
    }
    let mut count = 0u64;
    let mut header = *HEADER;
    // A file whose header is torn or wrong goes through the record-by-record rules below.
    let mut batcher = Batcher::new(Framing::Records);
    let headers = [HEADER, HEADER_V2, HEADER_V1];
    let stop = match ItemReader::open(io::BufReader::new((&file).take(size)), &headers) {
        Ok(None) => Some(DecodeError::Torn { offset: 0 }),
        Ok(Some(mut reader)) => {
            header = *reader.header();
            batcher = Batcher::new(Framing::of(&header).unwrap_or(Framing::Batches));
            loop {
                let at = reader.offset();
                match reader.next_item() {
                    Ok(Some(item)) => {
                        if let Err(e) = batcher.take(item, at, reader.offset()) {
                            break Some(e);
                        }
                        for (at, r) in batcher.ready() {
                            apply(&r)
                                .map_err(|e| RecoverError::Replay(path.to_path_buf(), at, e))?;
                            count += 1;
                        }
                    }
                    Ok(None) => break None,
                    Err(ReadError::Io(e)) => return Err(io_err(e)),
                    Err(ReadError::Decode(e)) => break Some(e),
                }
            }
        }
        Err(ReadError::Io(e)) => return Err(io_err(e)),
        Err(ReadError::Decode(e)) => Some(e),
    };
    let tail = match batcher.framing() {
        Framing::Batches => batches_tail(&file, path, size, last, stop, batcher.committed),
        Framing::Records => records_tail(&file, path, size, last, stop, &mut count, apply),
    };
    let (cut, why) = match tail? {
        Tail::Whole(end) => return Ok((count, end, header != *HEADER)),
        Tail::Cut(at, why) => (at, why),
    };
    let dropped = size - cut;
    notes.push(format!(
        "{}: cut a torn tail at byte {cut} ({dropped} bytes dropped){why}; kept {count} records",
        path.display()
    ));
    if mode == Mode::Repair {
        if cut < HEADER.len() as u64 {
            write_header(path).map_err(io_err)?;
        } else {
            let f = OpenOptions::new().write(true).open(path).map_err(io_err)?;
            f.set_len(cut).map_err(io_err)?;
            f.sync_all().map_err(io_err)?;
        }
    }
    // A file cut inside its header gets the current one.
    let old_format = cut >= HEADER.len() as u64 && header != *HEADER;
    Ok((count, cut.max(HEADER.len() as u64), old_format))
}

/// Where a journal's valid data ends.
enum Tail {
    /// Everything read is valid up to this offset; zeros (free space) may follow.
    Whole(u64),
    /// The bytes from this offset on are a torn write, to be cut; the text says what they were.
    Cut(u64, &'static str),
}

/// The refusal for damage that a torn write cannot explain.
fn damaged(path: &Path, what: String) -> RecoverError {
    RecoverError::Corrupt(
        path.to_path_buf(),
        format!(
            "{what}; werk will not start on a damaged journal (`werk journal check DIR` shows \
             what is readable)"
        ),
    )
}

/// The tail of a journal made of batches ([`HEADER`]). Whole batches end at `committed`. After
/// it, anything but zeros is the last batch, unfinished: with `--sync always` the loop writes a
/// batch only once the one before it is durable, so a power cut can leave only that one torn,
/// with its sectors on the disk in any order (zeros where the disk never wrote, whole records
/// after them). Its fsync never finished, so nothing in it was acknowledged, and it is cut
/// whole: in the newest journal that holds records, and only when the bytes fit a tear (no
/// marker of a later batch follows, no whole marker in the wrong place, and if the batch's own
/// marker is there, a sector of the batch is not). With `everysec` and `none` the batches since
/// the last completed sync can all be torn, so later batches may follow the hole: when all of
/// their markers say so ([`Order::Unsynced`]) and the damaged batch has a sector of zeros (a
/// write that never reached the disk, not bytes changed after they were written), everything
/// from the damaged batch on is cut, as those policies allow. Anything else is damage to data
/// that may have been acknowledged, and the start is refused.
fn batches_tail(
    file: &File,
    path: &Path,
    size: u64,
    last: bool,
    stop: Option<DecodeError>,
    committed: u64,
) -> Result<Tail, RecoverError> {
    let io_err = |e| RecoverError::Io(path.to_path_buf(), e);
    if committed >= size || zeros_from(file, committed, size).map_err(io_err)? {
        return Ok(Tail::Whole(committed.min(size).max(HEADER.len() as u64)));
    }
    let stop = stop.unwrap_or(DecodeError::Unfinished {
        offset: committed as usize,
    });
    let what = stop.to_string();
    if !last {
        return Err(damaged(
            path,
            format!("{what}, in a journal that newer journals follow"),
        ));
    }
    if matches!(stop, DecodeError::Corrupt { reason, .. } if reason == MISPLACED_COMMIT) {
        // A whole marker, in the stream of frames, that does not close the batch before it:
        // no torn write makes one.
        return Err(damaged(path, what));
    }
    let markers = scan_markers(file, committed, size).map_err(io_err)?;
    if let Some(marker) = markers.later_durable {
        return Err(damaged(
            path,
            format!("{what}, yet the batch closed at byte {marker} follows it"),
        ));
    }
    if let Some((start, marker)) = markers.later {
        // Every later batch was written without waiting for a sync, so a power cut can explain
        // the damage, with a sector of the damaged batch that never reached the disk: before
        // its own marker's sector if that is there (that sector was written whole), else up to
        // the sector holding the earliest start a later marker names (the hole may hold the
        // end of this batch and the starts of later ones; a later marker's own sector is not
        // zeros). The earliest start, so that a marker-shaped run of bytes can only narrow it.
        let (end, batch_end) = match markers.own {
            Some(own) if own < start => (own / SECTOR * SECTOR, own),
            _ => (start.next_multiple_of(SECTOR), start),
        };
        if end <= committed || !zero_sector(file, committed, end, batch_end).map_err(io_err)? {
            return Err(damaged(
                path,
                format!(
                    "{what}, yet the batch closed at byte {marker} follows it, and no sector \
                     before that batch is missing"
                ),
            ));
        }
        return Ok(Tail::Cut(
            committed,
            ": batches written with --sync everysec or none whose sync never finished, so \
             not durable (a power cut; later batches reached the disk before them)",
        ));
    }
    if let Some(own) = markers.own {
        // The batch's own marker reached the disk, so a tear must have left one of its other
        // sectors unwritten (zeros, over the preallocated space). With all of them there, the
        // bytes changed after they were written: damage to a batch that may have been
        // acknowledged. The marker's own sector was written whole, zeros in it are data.
        let end = own / SECTOR * SECTOR;
        if end <= committed || !zero_sector(file, committed, end, own).map_err(io_err)? {
            return Err(damaged(
                path,
                format!(
                    "{what}, in a last batch whose commit marker (at byte {own}) and every \
                     sector are on the disk; to start without that batch, which may have been \
                     acknowledged, truncate the file to {committed} bytes (`truncate -s \
                     {committed} {}`)",
                    path.display()
                ),
            ));
        }
    }
    Ok(Tail::Cut(
        committed,
        ": the last batch, unfinished, so never acknowledged",
    ))
}

/// Commit markers found after the last whole batch. A later batch's marker names a start after
/// the batch being read and before itself, as only a genuine later marker can.
struct Markers {
    /// Markers of later batches: the earliest start one names, and the end of the first one.
    later: Option<(u64, u64)>,
    /// The end of the first marker of a later batch written after the batches before it were
    /// durable ([`Order::AfterDurable`]).
    later_durable: Option<u64>,
    /// Where the last marker closing the batch being read starts.
    own: Option<u64>,
}

/// Reads `batch..to` of `file` for commit markers; `batch` is where the batch being read began.
/// Stops at the first later marker of [`Order::AfterDurable`].
fn scan_markers(file: &File, batch: u64, to: u64) -> io::Result<Markers> {
    let mut found = Markers {
        later: None,
        later_durable: None,
        own: None,
    };
    // Each chunk comes with the bytes of a marker that starts in it and ends in the next.
    scan(file, batch, to, COMMIT_BYTES, |at, bytes, own| {
        for i in 0..own {
            let pos = at + i as u64;
            match commit_at(&bytes[i..]) {
                Some((start, _)) if start == batch => found.own = Some(pos),
                Some((start, order)) if start > batch && start < pos => {
                    let end = pos + COMMIT_BYTES as u64;
                    let (earliest, _) = found.later.get_or_insert((start, end));
                    *earliest = start.min(*earliest);
                    if order == Order::AfterDurable {
                        found.later_durable = Some(end);
                        return true;
                    }
                }
                _ => {}
            }
        }
        false
    })?;
    Ok(found)
}

/// Bytes read at a time when scanning a journal's tail (a multiple of [`SECTOR`]).
const STEP: u64 = 1 << 20;

/// Reads `from..to` of `file` in chunks that end on multiples of [`STEP`] (so on sector
/// boundaries) or at `to`, and hands each to `f(offset, bytes, own)`: `bytes` holds the chunk's
/// `own` bytes, then up to `overlap` bytes after them (within `to`). Stops at the first chunk
/// for which `f` returns true; returns whether one did.
fn scan(
    file: &File,
    from: u64,
    to: u64,
    overlap: usize,
    mut f: impl FnMut(u64, &[u8], usize) -> bool,
) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (STEP as usize + overlap).min(to.saturating_sub(from) as usize)];
    let mut at = from;
    while at < to {
        let own = ((at / STEP + 1) * STEP).min(to) - at;
        let len = (own + overlap as u64).min(to - at) as usize;
        file.read_exact_at(&mut buf[..len], at)?;
        if f(at, &buf[..len], own as usize) {
            return Ok(true);
        }
        at += own;
    }
    Ok(false)
}

/// True when some sector of `file` that meets `from..to` is all zeros there: a sector of a batch
/// that began at `from`, and ends by `batch_end`, which never reached the disk. The part of the
/// first sector from `from` on holds the start of the batch's first record, whose length is
/// never zero: four bytes or more of zeros there were never written. Fewer are the low bytes of
/// that length, and zeros there may be data; they count as lost only if another value in their
/// place makes the record whole ([`lost_length_bytes`]).
fn zero_sector(file: &File, from: u64, to: u64, batch_end: u64) -> io::Result<bool> {
    let mut short_head = 0;
    let found = scan(file, from, to, 0, |at, chunk, _| {
        // The chunk ends on a sector boundary (or at `to`); only its first sector may start
        // before `at`, and only the first chunk starts at `from`.
        let first = ((at / SECTOR + 1) * SECTOR - at) as usize;
        let head = &chunk[..first.min(chunk.len())];
        let head_counts = at != from || head.len() >= 4;
        if !head_counts && head.iter().all(|&b| b == 0) {
            short_head = head.len();
        }
        let mut sectors = std::iter::once(head).filter(|_| head_counts).chain(
            chunk
                .get(first..)
                .unwrap_or_default()
                .chunks(SECTOR as usize),
        );
        sectors.any(|s| s.iter().all(|&b| b == 0))
    })?;
    Ok(found || (short_head > 0 && lost_length_bytes(file, from, short_head, batch_end)?))
}

/// Whether the record at `at`, the first of its batch, whose `low` (1 to 3) low length bytes
/// read as zeros, is whole with another value there and ends by `limit`: then those bytes were
/// lost with their sector, not data. One pass of CRC-32 over the record's possible extents.
fn lost_length_bytes(file: &File, at: u64, low: usize, limit: u64) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let span = limit.saturating_sub(at).min(8 + RECORD_BYTES_MAX as u64) as usize;
    if span <= 8 {
        return Ok(false);
    }
    let mut buf = vec![0u8; span];
    file.read_exact_at(&mut buf, at)?;
    let stored = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    let crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let framed = &buf[8..];
    // Lengths that differ from the stored one in the low bytes only, which are not all zero.
    let mask = (1usize << (8 * low)) - 1;
    let (first, last) = (stored | 1, (stored | mask).min(framed.len()));
    if first > last {
        return Ok(false);
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&framed[..first - 1]);
    for len in first..=last {
        hasher.update(&framed[len - 1..len]);
        if hasher.clone().finalize() == crc {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The tail of a journal read record by record ([`HEADER_V1`], or a file whose header is torn
/// or wrong): a torn write can leave only a prefix of its last record.
fn records_tail(
    file: &File,
    path: &Path,
    size: u64,
    last: bool,
    stop: Option<DecodeError>,
    count: &mut u64,
    apply: &mut dyn FnMut(&Record) -> Result<(), String>,
) -> Result<Tail, RecoverError> {
    let io_err = |e| RecoverError::Io(path.to_path_buf(), e);
    if let Some(&DecodeError::Torn { offset }) = stop.as_ref() {
        // The data end is rounded up from the last non-zero byte, but a record may itself end
        // in zero bytes (a number of at most 8 bytes; two for `Totals`) that lie in the next
        // sector: a whole record with a valid checksum is read whole, not cut as torn.
        let file_len = file.metadata().map_err(io_err)?.len();
        let whole = if offset >= HEADER.len() {
            record_past_end(file, offset as u64, (size + SECTOR).min(file_len))
        } else {
            Ok(None)
        };
        if let Some((r, end)) = whole.map_err(io_err)? {
            apply(&r).map_err(|e| RecoverError::Replay(path.to_path_buf(), offset as u64, e))?;
            *count += 1;
            return Ok(Tail::Whole(end));
        }
    }
    match stop {
        None => Ok(Tail::Whole(size)),
        // Zeros up to the data's end, rounded to a sector: the end of what was written, with
        // the preallocated space after it. A torn write in a preallocated file also ends here
        // (the sectors that never reached the disk read as zeros).
        Some(DecodeError::Torn { offset } | DecodeError::Corrupt { offset, .. })
            if offset >= HEADER.len()
                && zeros_from(file, offset as u64, size).map_err(io_err)? =>
        {
            Ok(Tail::Whole(offset as u64))
        }
        Some(DecodeError::Torn { offset })
            if !last || frame_after(file, offset as u64, size).map_err(io_err)? =>
        {
            // A torn write leaves only a prefix of the last record of the newest journal that
            // holds records. Whole records after the "torn" one, or a later journal with
            // records (written only after this one's last batch was synced), mean its length
            // field is damaged.
            Err(damaged(
                path,
                format!(
                    "corrupt record at byte {offset}: its length runs past the end of the \
                     file, yet records follow"
                ),
            ))
        }
        Some(DecodeError::Torn { offset }) => Ok(Tail::Cut(offset as u64, "")),
        Some(e) => Err(damaged(path, e.to_string())),
    }
}

/// True when a whole, valid frame starts somewhere in `offset..end` of `file` (the bytes after a
/// genuinely torn record are a prefix of that one record; a valid frame among them means the
/// record's length field is damaged). Reads that range, which is short for a torn tail; for a
/// damage in the middle, the start is refused anyway.
fn frame_after(mut file: &File, offset: u64, end: u64) -> io::Result<bool> {
    file.seek(SeekFrom::Start(offset))?;
    let mut rest = Vec::new();
    file.take(end.saturating_sub(offset))
        .read_to_end(&mut rest)?;
    Ok((1..rest.len()).any(|i| matches!(decode_item(&rest[i..]), Ok(Some(_)))))
}

/// The record starting at `offset` of `file` and where it ends, when it is whole (valid
/// checksum) within `offset..end`.
fn record_past_end(file: &File, offset: u64, end: u64) -> io::Result<Option<(Record, u64)>> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; end.saturating_sub(offset) as usize];
    file.read_exact_at(&mut buf, offset)?;
    Ok(match decode_item(&buf) {
        Ok(Some((Item::Record(r), used))) => Some((r, offset + used as u64)),
        _ => None,
    })
}

/// True when every byte of `file` in `offset..end` is zero.
fn zeros_from(file: &File, offset: u64, end: u64) -> io::Result<bool> {
    let found = scan(file, offset, end, 0, |_, chunk, _| {
        chunk.iter().any(|&b| b != 0)
    })?;
    Ok(!found)
}

/// True when anything but zeros follows the header of the journal at `path` (a record, or a
/// part of one).
fn holds_records(path: &Path) -> io::Result<bool> {
    use std::os::unix::fs::FileExt;
    let file = File::open(path)?;
    let mut first = [0u8; 8];
    let mut got = 0;
    while got < first.len() {
        match file.read_at(&mut first[got..], HEADER.len() as u64 + got as u64)? {
            0 => break,
            n => got += n,
        }
    }
    Ok(first[..got].iter().any(|&b| b != 0))
}

/// The sector a torn write is made of: a write that reached the disk only in part left whole
/// sectors of the new bytes and whole sectors of what was there before (zeros, in a
/// preallocated journal).
const SECTOR: u64 = 512;

/// Where the data of the journal at `path` ends: after its last non-zero byte, rounded up to a
/// 512-byte sector (a record may itself end in zero bytes), at most its size. The writer
/// preallocates journals with zeros so that an `fdatasync` never has to change the file's size;
/// those zeros are free space, not records. Reads the file backwards from its end, so it costs
/// the size of that zero tail (at most one and a half preallocation steps).
pub fn data_end(path: &Path) -> io::Result<u64> {
    data_end_of(&File::open(path)?)
}

/// [`data_end`] of an open file.
fn data_end_of(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    let mut buf = vec![0u8; 64 << 10];
    let mut end = size;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b != 0) {
            let last = start + i as u64;
            return Ok(((last / SECTOR + 1) * SECTOR).min(size));
        }
        end = start;
    }
    Ok(0)
}

/// Creates (or empties) a journal file holding only the header, durably.
pub fn write_header(path: &Path) -> io::Result<File> {
    use std::io::Write;
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    f.write_all(HEADER)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::{encode, encode_commit, encode_commit_in, encode_snapshot_end};

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "werk-unit-files-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rec(tag: &str) -> Record {
        Record::RemoveQueue { queue: tag.into() }
    }

    /// Writes journal `g` with each record in a batch of its own.
    fn journal(dir: &Path, g: u64, recs: &[Record]) -> PathBuf {
        let batches: Vec<&[Record]> = recs.chunks(1).collect();
        journal_of(dir, g, &batches)
    }

    /// A journal of these batches, as `--sync always` writes them.
    fn image(batches: &[&[Record]]) -> Vec<u8> {
        image_in(batches, &vec![Order::AfterDurable; batches.len()])
    }

    /// A journal of these batches, each closed by a marker of its order.
    fn image_in(batches: &[&[Record]], orders: &[Order]) -> Vec<u8> {
        let mut img = HEADER.to_vec();
        for (batch, &order) in batches.iter().zip(orders) {
            let start = img.len() as u64;
            for r in *batch {
                encode(r, &mut img);
            }
            encode_commit_in(start, order, &mut img);
        }
        img
    }

    /// Writes journal `g` in these batches.
    fn journal_of(dir: &Path, g: u64, batches: &[&[Record]]) -> PathBuf {
        let p = dir.join(journal_name(g));
        std::fs::write(&p, image(batches)).unwrap();
        p
    }

    /// The 512-byte sectors that bytes `from..to` of a file meet, each clipped to that range.
    fn sectors(from: usize, to: usize) -> Vec<(usize, usize)> {
        (from / 512..to.div_ceil(512))
            .map(|s| ((s * 512).max(from), (s * 512 + 512).min(to)))
            .collect()
    }

    /// Writes journal `g` as werk did before batches had markers (version 1).
    fn journal_v1(dir: &Path, g: u64, recs: &[Record]) -> PathBuf {
        let mut img = HEADER_V1.to_vec();
        for r in recs {
            encode(r, &mut img);
        }
        let p = dir.join(journal_name(g));
        std::fs::write(&p, img).unwrap();
        p
    }

    /// The journal writers of both versions, to run a test on each.
    type Writer = fn(&Path, u64, &[Record]) -> PathBuf;
    const VERSIONS: [(&str, Writer); 2] = [("v3", journal), ("v1", journal_v1)];

    fn snapshot(dir: &Path, g: u64, recs: &[Record], trailer_count: u64) {
        let mut img = SNAPSHOT_HEADER.to_vec();
        for r in recs {
            encode(r, &mut img);
        }
        encode_snapshot_end(g, trailer_count, &mut img);
        std::fs::write(dir.join(SNAPSHOT_FILE), img).unwrap();
    }

    /// Asserts that recovery's first note says `text`.
    fn noted(found: &Recovered, text: &str) {
        assert!(
            found.notes.first().is_some_and(|n| n.contains(text)),
            "{text:?} not in {:?}",
            found.notes
        );
    }

    fn run(dir: &Path, mode: Mode) -> Result<(Recovered, Vec<Record>), String> {
        let mut seen = Vec::new();
        let found = recover(dir, mode, None, &mut |r| {
            seen.push(r.clone());
            Ok(())
        })
        .map_err(|e| e.to_string())?;
        Ok((found, seen))
    }

    #[test]
    fn names_sort_in_generation_order() {
        assert_eq!(journal_name(7), "journal-0000000007.wrk");
        assert_eq!(journal_generation("journal-0000000007.wrk"), Some(7));
        assert_eq!(journal_generation("journal-.wrk"), None);
        assert_eq!(journal_generation("journal-12x.wrk"), None);
        assert_eq!(journal_generation("snapshot.wrk"), None);
        assert!(journal_name(9) < journal_name(10));
    }

    #[test]
    fn snapshot_then_journals_in_order_and_covered_journals_removed() {
        let d = dir("order");
        let stale = journal(&d, 1, &[rec("stale")]);
        snapshot(&d, 2, &[rec("a")], 1);
        journal(&d, 2, &[rec("b")]);
        journal(&d, 3, &[rec("c"), rec("d")]);
        std::fs::write(d.join(SNAPSHOT_TMP), b"half a snapshot").unwrap();
        let (found, seen) = run(&d, Mode::ReadOnly).unwrap();
        assert_eq!(seen, vec![rec("a"), rec("b"), rec("c"), rec("d")]);
        assert!(stale.exists() && d.join(SNAPSHOT_TMP).exists(), "read-only");
        let (found2, seen2) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen2, seen);
        assert!(!stale.exists() && !d.join(SNAPSHOT_TMP).exists());
        assert_eq!(found2.notes.len(), 2, "{:?}", found2.notes);
        for f in [&found, &found2] {
            assert_eq!(f.generation, 3);
            assert!(f.journal_exists);
            assert_eq!(f.journals, 2);
            assert_eq!(f.snapshot_records, 1);
            assert_eq!(f.journal_records, 3);
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_snapshot_with_no_journal_yet_continues_at_its_generation() {
        let d = dir("nojournal");
        snapshot(&d, 5, &[rec("a")], 1);
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a")]);
        assert_eq!((found.generation, found.journal_exists), (5, false));
        let empty = dir("empty");
        let (found, seen) = run(&empty, Mode::Repair).unwrap();
        assert!(seen.is_empty());
        assert_eq!((found.generation, found.journal_exists), (1, false));
        std::fs::remove_dir_all(d).unwrap();
        std::fs::remove_dir_all(empty).unwrap();
    }

    #[test]
    fn a_missing_generation_or_a_bad_snapshot_is_refused() {
        let d = dir("gap");
        journal(&d, 1, &[rec("a")]);
        journal(&d, 3, &[rec("c")]);
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("journal generation 2 is missing"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();

        let d = dir("snap");
        snapshot(&d, 1, &[rec("a"), rec("b")], 3);
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(
            e.contains("the trailer counts 3 records, the file holds 2"),
            "{e}"
        );
        let mut img = SNAPSHOT_HEADER.to_vec();
        encode(&rec("a"), &mut img);
        std::fs::write(d.join(SNAPSHOT_FILE), &img).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("no trailer: the snapshot is incomplete"), "{e}");
        std::fs::write(d.join(SNAPSHOT_FILE), &img[..img.len() - 1]).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("torn record"), "{e}");
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn zeros_after_the_data_are_free_space_not_a_tail_to_cut() {
        for (version, write) in VERSIONS {
            let d = dir(&format!("zeros-{version}"));
            let p = write(&d, 1, &[rec("a"), rec("b")]);
            let good = std::fs::metadata(&p).unwrap().len();
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.extend_from_slice(&[0; 4096]);
            std::fs::write(&p, &bytes).unwrap();
            assert_eq!(data_end(&p).unwrap(), 512, "rounded up to a sector");
            for mode in [Mode::ReadOnly, Mode::Repair] {
                let (found, seen) = run(&d, mode).unwrap();
                assert_eq!(seen.len(), 2);
                assert_eq!(found.journal_bytes, good, "the writer goes on here");
                assert!(found.notes.is_empty(), "{:?}", found.notes);
                assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
            }
            // Non-zero bytes after the last record: in a version 1 journal, damage; after the
            // last batch, the start of a batch that was never finished.
            bytes.truncate(good as usize);
            bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 7]);
            std::fs::write(&p, &bytes).unwrap();
            match version {
                "v1" => {
                    let e = run(&d, Mode::Repair).unwrap_err();
                    assert!(e.contains("impossible length"), "{e}");
                }
                _ => {
                    let (found, seen) = run(&d, Mode::Repair).unwrap();
                    assert_eq!(seen.len(), 2);
                    noted(
                        &found,
                        &format!(
                            "cut a torn tail at byte {good} (9 bytes dropped): the last batch"
                        ),
                    );
                }
            }
            std::fs::remove_dir_all(d).unwrap();
        }
    }

    /// A record may end in zero bytes (a `SetRemove` ends with its key's sequence number, little
    /// endian: `seq` 1 is `01` and seven zeros). When its last non-zero byte is the last byte of
    /// a sector, the data end (rounded up to that sector) falls inside the record: the record
    /// must still be read whole, not cut as a torn tail, wherever it sits in the file. (A
    /// version 1 journal: in later versions every batch ends with its marker's non-zero last byte.)
    #[test]
    fn a_last_record_ending_in_zeros_across_a_sector_boundary_is_kept() {
        use crate::core::sorted::{SetKey, SetName};
        use crate::timestamp::Timestamp;
        let d = dir("zero-ending");
        let last = Record::SetRemove {
            set: SetName::Scheduled,
            key: SetKey {
                at: Timestamp(1_700_000_000_000),
                seq: 1,
            },
        };
        let mut tail = Vec::new();
        encode(&last, &mut tail);
        let zeros = tail.len() - 1 - tail.iter().rposition(|&b| b != 0).unwrap();
        assert_eq!(zeros, 7);
        // Pad with one record so that the last record's last non-zero byte is byte 1023.
        let fixed = {
            let mut v = HEADER_V1.to_vec();
            encode(&rec(""), &mut v);
            v.len()
        };
        let pad = 1024 - (tail.len() - zeros) - fixed;
        let recs = [rec(&"q".repeat(pad)), last.clone()];
        let p = journal_v1(&d, 1, &recs);
        let good = std::fs::metadata(&p).unwrap().len();
        assert_eq!(good, 1024 + zeros as u64);
        for prealloc in [0, 4096] {
            let mut bytes = std::fs::read(&p).unwrap();
            bytes.truncate(good as usize);
            bytes.resize(good as usize + prealloc, 0);
            std::fs::write(&p, &bytes).unwrap();
            let (found, seen) = run(&d, Mode::ReadOnly).unwrap();
            assert_eq!(seen, recs, "preallocated {prealloc}: {:?}", found.notes);
            assert_eq!(found.journal_bytes, good);
            assert!(found.notes.is_empty(), "{:?}", found.notes);
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn torn_tails_are_cut_only_in_repair_mode_appended_or_preallocated() {
        for (version, write) in VERSIONS {
            torn_tails_are_cut(version, write);
        }
    }

    fn torn_tails_are_cut(version: &str, write: Writer) {
        let d = dir(&format!("tails-{version}"));
        let big = Record::RemoveQueue {
            queue: "q".repeat(900).into(),
        };
        let p = write(&d, 1, &[rec("a"), rec("b"), big]);
        let whole = std::fs::read(&p).unwrap();
        let at = write(&d, 1, &[rec("a"), rec("b")]);
        let start = std::fs::metadata(&at).unwrap().len() as usize;
        // Appended: the file ends inside the last record. Preallocated: the record's sectors
        // after the first never reached the disk and read as zeros, up to the zeros past it.
        let appended = whole[..start + 300].to_vec();
        let mut preallocated = whole[..512].to_vec();
        preallocated.resize(whole.len() + 8192, 0);
        for torn in [appended, preallocated] {
            std::fs::write(&p, &torn).unwrap();
            let (found, seen) = run(&d, Mode::ReadOnly).unwrap();
            assert_eq!(seen, vec![rec("a"), rec("b")]);
            assert_eq!(std::fs::read(&p).unwrap(), torn, "read-only cuts nothing");
            noted(&found, "cut a torn tail");
            let (found, seen) = run(&d, Mode::Repair).unwrap();
            assert_eq!(seen, vec![rec("a"), rec("b")]);
            assert_eq!(found.journal_bytes, start as u64);
            assert_eq!(std::fs::metadata(&p).unwrap().len(), start as u64, "cut");
            noted(&found, &format!("cut a torn tail at byte {start}"));
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn a_damaged_length_with_records_after_it_is_refused_not_cut_v1() {
        let d = dir("midlen");
        let p = journal_v1(&d, 1, &[rec("a"), rec("b"), rec("c")]);
        let mut bytes = std::fs::read(&p).unwrap();
        let second = HEADER_V1.len() + {
            let mut one = Vec::new();
            encode(&rec("a"), &mut one);
            one.len()
        };
        // The length of the second record now runs 8 MiB past the end of the file.
        bytes[second + 2] ^= 0x80;
        std::fs::write(&p, &bytes).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(
            e.contains(&format!("corrupt record at byte {second}")),
            "{e}"
        );
        assert!(e.contains("yet records follow"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
        // The same damage in the last record is a torn tail.
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[second + 2] ^= 0x80;
        let last = bytes.len() - {
            let mut one = Vec::new();
            encode(&rec("c"), &mut one);
            one.len()
        };
        bytes[last + 2] ^= 0x80;
        std::fs::write(&p, &bytes).unwrap();
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a"), rec("b")]);
        noted(&found, &format!("cut a torn tail at byte {last}"));
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn damage_in_an_older_journal_is_refused_unless_the_newer_ones_are_empty() {
        for (version, write) in VERSIONS {
            damage_in_an_older_journal(version, write);
        }
    }

    fn damage_in_an_older_journal(version: &str, write: Writer) {
        let d = dir(&format!("older-{version}"));
        let p = write(&d, 1, &[rec("a")]);
        let records = std::fs::read(&p).unwrap();
        let newer = write(&d, 2, &[rec("b")]);
        // Zeros after its records are its preallocated space: the older journal ends there.
        let mut bytes = records.clone();
        bytes.extend_from_slice(&[0; 16]);
        std::fs::write(&p, &bytes).unwrap();
        let (_, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a"), rec("b")]);
        // Anything else after them is damage.
        bytes[records.len() + 15] = 1;
        std::fs::write(&p, &bytes).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("journal-0000000001.wrk"), "{e}");
        assert!(
            e.contains("werk will not start on a damaged journal"),
            "{e}"
        );
        // A partial last record there is damage too (crash test seed 1795909034449066582: a
        // flipped length bit in the last record of an older generation was cut as torn).
        let torn = records[..records.len() - 3].to_vec();
        std::fs::write(&p, &torn).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(
            e.contains("werk will not start on a damaged journal"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), torn, "nothing cut");
        // With nothing in the newer journal yet (or only its preallocated zeros), the older
        // one's tail is a torn write (the switch happened while its last batch was being
        // synced).
        let mut empty = HEADER.to_vec();
        empty.resize(4096, 0);
        std::fs::write(&newer, &empty).unwrap();
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert!(seen.is_empty());
        assert_eq!(found.generation, 2);
        noted(&found, "cut a torn tail");
        assert!(newer.exists());
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A power cut during the last batch's fsync can leave any of its sectors unwritten (zeros,
    /// over preallocated space), in any order: whole records after a hole, the marker without
    /// the records before it, the records without the marker. None of it was acknowledged, so
    /// the batch is dropped whole, and every earlier batch is kept.
    #[test]
    fn a_power_cut_in_the_last_batch_drops_that_batch_whole() {
        let d = dir("powercut");
        let big = |tag: &str| rec(&tag.repeat(700));
        let first: &[Record] = &[rec("a"), rec("b")];
        let last: &[Record] = &[big("x"), big("y"), big("z")];
        let p = journal_of(&d, 1, &[first, last]);
        let whole = std::fs::read(&p).unwrap();
        let cut = image(&[first]).len();
        assert!(whole.len() - cut > 3 * 512, "the last batch spans sectors");
        // Every sector the last batch touches, zeroed on its own (the bytes of the sector
        // before the batch began are the earlier batch's, the same bytes either way), and the
        // same with preallocated zeros after the file.
        let holes = sectors(cut, whole.len());
        for prealloc in [0, 8192] {
            for &(from, to) in &holes {
                let mut bytes = whole.clone();
                bytes[from..to].fill(0);
                bytes.resize(whole.len() + prealloc, 0);
                std::fs::write(&p, &bytes).unwrap();
                let hole = format!("hole {from}..{to}, {prealloc} preallocated");
                let (found, seen) = run(&d, Mode::ReadOnly).unwrap();
                assert_eq!(seen, first, "{hole}");
                assert_eq!(std::fs::read(&p).unwrap(), bytes, "{hole}: read-only");
                let (found2, seen) = run(&d, Mode::Repair).unwrap();
                assert_eq!(seen, first, "{hole}");
                for f in [&found, &found2] {
                    assert_eq!(f.journal_bytes, cut as u64, "{hole}");
                    assert!(
                        f.notes[0].contains(&format!("cut a torn tail at byte {cut} (")),
                        "{hole}: {:?}",
                        f.notes
                    );
                    assert!(f.notes[0].contains("the last batch, unfinished"), "{hole}");
                }
                assert_eq!(std::fs::read(&p).unwrap(), whole[..cut], "{hole}: cut");
                let (again, seen) = run(&d, Mode::Repair).unwrap();
                assert_eq!(seen, first, "{hole}");
                assert!(again.notes.is_empty(), "{hole}: {:?}", again.notes);
            }
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// The same hole in a batch that another batch follows is damage to acknowledged data (the
    /// later batch was written only after this one was durable): refused, in the newest journal
    /// too, and so is a marker that does not close the batch before it.
    #[test]
    fn a_hole_before_the_last_batch_is_refused() {
        let d = dir("hole");
        let big = |tag: &str| rec(&tag.repeat(700));
        let batches: [&[Record]; 3] = [&[rec("a")], &[big("x"), big("y")], &[rec("c")]];
        let p = journal_of(&d, 1, &batches);
        let whole = std::fs::read(&p).unwrap();
        let second = image(&batches[..1]).len();
        let mut bytes = whole.clone();
        bytes[second + 600..second + 1100].fill(0);
        std::fs::write(&p, &bytes).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("yet the batch closed at byte"), "{e}");
        assert!(
            e.contains("werk will not start on a damaged journal"),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
        // A marker naming the wrong start.
        let mut img = HEADER.to_vec();
        encode(&rec("a"), &mut img);
        encode_commit(HEADER.len() as u64, &mut img);
        let at = img.len();
        encode(&rec("b"), &mut img);
        encode_commit(HEADER.len() as u64, &mut img);
        std::fs::write(&p, &img).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(
            e.contains(&format!(
                "corrupt record at byte {}: a commit marker that does not close the batch",
                at + encode_len(&rec("b"))
            )),
            "{e}"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    /// With `everysec` and `none` the batches since the last completed sync can all be torn:
    /// a hole in one of them, with later batches whose markers all say they did not wait for a
    /// sync, is cut with everything after it. A later marker that did wait, or damage that is
    /// not a missing sector of the damaged batch, is refused as before.
    #[test]
    fn a_hole_before_unsynced_batches_is_cut_with_them() {
        use Order::{AfterDurable as Synced, Unsynced};
        let d = dir("unsynced");
        let big = |tag: &str| rec(&tag.repeat(700));
        let batches: [&[Record]; 4] = [
            &[rec("a")],
            &[big("x"), big("y")],
            &[big("z")],
            &[big("d"), big("e")],
        ];
        let second = image(&batches[..1]).len();
        let third = image(&batches[..2]).len();
        let fourth = image(&batches[..3]).len();
        // A whole sector inside the second batch, never written.
        let hole = second.next_multiple_of(512);
        assert!(hole + 512 < third - COMMIT_BYTES);
        let p = d.join(journal_name(1));
        let try_with = |orders: &[Order], damage: &dyn Fn(&mut Vec<u8>)| {
            let mut bytes = image_in(&batches, orders);
            damage(&mut bytes);
            std::fs::write(&p, &bytes).unwrap();
            (run(&d, Mode::Repair), bytes)
        };
        let zero_hole = |b: &mut Vec<u8>| b[hole..hole + 512].fill(0);

        // Every batch from everysec: cut where the second began, the first kept.
        let (got, bytes) = try_with(&[Unsynced; 4], &zero_hole);
        let (found, seen) = got.unwrap();
        assert_eq!(seen, vec![rec("a")]);
        assert_eq!(found.notes.len(), 1);
        noted(
            &found,
            &format!(
                "cut a torn tail at byte {second} ({} bytes dropped): batches written with \
                 --sync everysec or none whose sync never finished",
                bytes.len() - second
            ),
        );
        assert_eq!(std::fs::metadata(&p).unwrap().len(), second as u64);
        // The damaged batch's own order does not matter (an `always` run killed before its
        // last sync, then started with `everysec`), the later ones' does.
        let (got, _) = try_with(&[Synced, Synced, Unsynced, Unsynced], &zero_hole);
        assert_eq!(got.unwrap().1, vec![rec("a")]);

        // A later batch written after a completed sync: the hole is damage.
        for orders in [[Unsynced, Unsynced, Unsynced, Synced], [Synced; 4]] {
            let (got, bytes) = try_with(&orders, &zero_hole);
            let e = got.unwrap_err();
            assert!(
                e.contains("yet the batch closed at byte"),
                "{orders:?}: {e}"
            );
            assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
        }
        // A changed byte, no missing sector: not a power cut.
        let flip = |b: &mut Vec<u8>| b[second + 300] ^= 0x10;
        let (got, bytes) = try_with(&[Unsynced; 4], &flip);
        let e = got.unwrap_err();
        assert!(e.contains("no sector before that batch is missing"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
        // A changed byte in the second batch, and a hole in a later one: the hole does not
        // explain the change. In the fourth batch, after the third's marker:
        let late_hole = |b: &mut Vec<u8>, at: usize| {
            flip(b);
            let at = at.next_multiple_of(512);
            b[at..at + 512].fill(0);
        };
        let (got, _) = try_with(&[Unsynced; 4], &|b: &mut Vec<u8>| late_hole(b, fourth));
        assert!(got.unwrap_err().contains("no sector before that batch"));
        // in the third, whose marker is lost too, so that the first later marker is the
        // fourth's: the second batch's own marker bounds where its hole would have to be.
        let (got, _) = try_with(&[Unsynced; 4], &|b: &mut Vec<u8>| {
            late_hole(b, third);
            b[fourth - COMMIT_BYTES..fourth].fill(0);
        });
        assert!(got.unwrap_err().contains("no sector before that batch"));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A lost sector often holds the end of one small batch and the starts of the next ones:
    /// with `everysec` batches after it, it is cut from the batch where the zeros begin, for
    /// every sector of the file but the header's.
    #[test]
    fn a_lost_sector_across_small_unsynced_batches_is_cut() {
        let d = dir("small-unsynced");
        let recs: Vec<Record> = (0..40)
            .map(|i| rec(&format!("{i:03}").repeat(55)))
            .collect();
        let batches: Vec<&[Record]> = recs.chunks(1).collect();
        let whole = image_in(&batches, &vec![Order::Unsynced; batches.len()]);
        let starts: Vec<usize> = (0..batches.len())
            .map(|k| image(&batches[..k]).len())
            .collect();
        let p = d.join(journal_name(1));
        let last = *starts.last().unwrap();
        for s in (512..last).step_by(512) {
            let mut bytes = whole.clone();
            bytes[s..s + 512].fill(0);
            std::fs::write(&p, &bytes).unwrap();
            // The batch holding the first byte the hole changed.
            let first = (s..s + 512).find(|&i| whole[i] != 0).unwrap();
            let k = starts.iter().rposition(|&b| b <= first).unwrap();
            let (found, seen) = run(&d, Mode::Repair).unwrap_or_else(|e| panic!("sector {s}: {e}"));
            assert_eq!(seen, recs[..k], "sector {s}");
            assert_eq!(found.journal_bytes, starts[k] as u64, "sector {s}");
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Where a batch begins a few bytes before a sector boundary, the zeros of those bytes can
    /// be data (the low byte of a record's length): a changed byte elsewhere in the batch, with
    /// no sector missing, is refused, not taken for a power cut.
    #[test]
    fn zeros_in_the_first_bytes_of_a_batch_are_not_a_lost_sector() {
        let d = dir("head-zeros");
        // The second batch begins at 1023; its record's length is 256, 0x00 0x01 0x00 0x00.
        let batches: [&[Record]; 3] = [
            &[rec(&"a".repeat(984))],
            &[rec(&"b".repeat(251))],
            &[rec("c")],
        ];
        let mut bytes = image_in(&batches, &[Order::Unsynced; 3]);
        let second = image(&batches[..1]).len();
        assert_eq!((second, bytes[second]), (1023, 0));
        bytes[second + 100] ^= 0x10;
        let p = d.join(journal_name(1));
        std::fs::write(&p, &bytes).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(e.contains("no sector before that batch is missing"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), bytes);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Of the later batches' markers, the earliest start named bounds where the damaged batch's
    /// lost sector may be: a marker-shaped run naming a later start cannot widen it.
    #[test]
    fn the_earliest_start_a_later_marker_names_counts() {
        let d = dir("earliest");
        let p = d.join("f");
        let mut bytes = vec![1u8; 4500];
        crate::journal::record::encode_commit_in(4000, Order::Unsynced, &mut bytes);
        crate::journal::record::encode_commit_in(100, Order::Unsynced, &mut bytes);
        bytes.resize(5000, 1);
        std::fs::write(&p, &bytes).unwrap();
        let m = scan_markers(&File::open(&p).unwrap(), 8, bytes.len() as u64).unwrap();
        assert_eq!(m.later, Some((100, 4500 + COMMIT_BYTES as u64)));
        assert_eq!(m.later_durable, None);
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Every subset of the last batch's sectors on the disk (but all of them: that is a whole
    /// batch), over preallocated zeros: always cut at the batch's start, the earlier batches
    /// kept. The sector the batch shares with the one before it keeps its earlier bytes.
    #[test]
    fn every_subset_of_the_last_batch_sectors_is_cut_whole() {
        let d = dir("subsets");
        let last: Vec<Record> = (0..6).map(|i| rec(&format!("{i}").repeat(300))).collect();
        // The last batch begins anywhere, and at 1 to 8 bytes before a sector boundary (where
        // the first sector's part holds only low bytes of its first record's length), with a
        // record length whose low byte is zero (so those zeros are data) or not.
        let mut layouts = vec![(vec![rec("a"), rec("b")], last.clone())];
        for cut in 1016..=1024 {
            // A batch of one record of n bytes is 39 + n bytes after the header.
            let first = vec![rec(&"p".repeat(cut - 39))];
            layouts.push((first.clone(), last.clone()));
            let mut round = last.clone();
            round[0] = rec(&"r".repeat(256 * 2 - 5));
            layouts.push((first, round));
        }
        for (first, last) in &layouts {
            let p = journal_of(&d, 1, &[first, last]);
            let whole = std::fs::read(&p).unwrap();
            let cut = image(&[first]).len();
            let sectors = sectors(cut, whole.len());
            assert!(sectors.len() >= 4, "{}", sectors.len());
            for mask in 0..(1u32 << sectors.len()) - 1 {
                let mut bytes = whole.clone();
                for (i, &(a, b)) in sectors.iter().enumerate() {
                    if mask & (1 << i) == 0 {
                        bytes[a..b].fill(0);
                    }
                }
                if bytes == whole {
                    // Zeros over zeros (the length's low byte): the batch is whole.
                    continue;
                }
                bytes.resize(whole.len() + 4096, 0);
                std::fs::write(&p, &bytes).unwrap();
                let (found, seen) = run(&d, Mode::ReadOnly)
                    .unwrap_or_else(|e| panic!("batch at {cut}, sectors {mask:b}: {e}"));
                assert_eq!(&seen, first, "batch at {cut}, sectors {mask:b}");
                assert_eq!(found.journal_bytes, cut as u64, "sectors {mask:b}");
            }
        }
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A newer journal whose first batch lost its first sector after the header reads as
    /// holding nothing (`holds_records`), yet it is still the last journal: its torn batch is
    /// cut, and the older journal's batches are kept.
    #[test]
    fn a_newer_journal_whose_first_sector_was_lost_is_cut() {
        let d = dir("newer-first-sector");
        journal(&d, 1, &[rec("a")]);
        let big: Vec<Record> = (0..4).map(|i| rec(&format!("{i}").repeat(400))).collect();
        let p2 = journal_of(&d, 2, &[&big]);
        let mut bytes = std::fs::read(&p2).unwrap();
        bytes[HEADER.len()..512].fill(0);
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(&p2, &bytes).unwrap();
        assert!(!holds_records(&p2).unwrap());
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a")]);
        assert_eq!((found.generation, found.journal_bytes), (2, 8));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// The tail is scanned in 1 MiB steps; a marker that crosses a step's end is found.
    #[test]
    fn markers_across_the_scan_step_are_found() {
        let d = dir("step");
        let p = d.join("f");
        let step = STEP as usize;
        for off in [step - 18, step - 17, step - 1, step, step + 1] {
            let mut bytes = vec![1u8; 8 + off];
            encode_commit(12345, &mut bytes);
            encode_commit(8, &mut bytes);
            bytes.extend_from_slice(&[1u8; 100]);
            std::fs::write(&p, &bytes).unwrap();
            let f = File::open(&p).unwrap();
            let m = scan_markers(&f, 8, bytes.len() as u64).unwrap();
            let end = (8 + off + COMMIT_BYTES) as u64;
            assert_eq!(m.later, Some((12345, end)), "offset {off}");
            assert_eq!(m.later_durable, Some(end), "offset {off}");
            let m = scan_markers(&f, 8, (8 + off + COMMIT_BYTES) as u64 - 1).unwrap();
            assert_eq!(m.later, None, "offset {off}: a marker cut short");
            // Read as the batch that began at 12345, the first marker is its own, and the
            // second one (naming an earlier start) is no later batch's.
            let m = scan_markers(&f, 12345, bytes.len() as u64).unwrap();
            assert_eq!(
                (m.later, m.own),
                (None, Some(8 + off as u64)),
                "offset {off}"
            );
        }
        let mut bytes = vec![1u8; 8 + step];
        encode_commit(8, &mut bytes);
        std::fs::write(&p, &bytes).unwrap();
        let f = File::open(&p).unwrap();
        let m = scan_markers(&f, 8, bytes.len() as u64).unwrap();
        assert_eq!((m.later, m.own), (None, Some(8 + step as u64)));
        std::fs::remove_dir_all(d).unwrap();
    }

    /// Bytes inside a record can look like a marker: a scheduled job's `at` (chosen by the
    /// client to the nanosecond), the set's sequence number and the job's length can line up
    /// as a marker frame with a valid checksum (found here by search). Such a run must not
    /// make a torn last batch read as one that a later batch follows: only a marker naming a
    /// start between the batch being read and itself counts as later.
    #[test]
    fn a_marker_shaped_run_inside_the_torn_batch_does_not_refuse_the_start() {
        use crate::core::sorted::{SetKey, SetName};
        use crate::timestamp::Timestamp;
        // SetAdd body: kind set at[8] seq[8] len[4] job. From `at` on: at[0..4] = 0A000000,
        // at[4..8] = the checksum, seq[0] = 0B, seq[1..8] + len[0] = start, len[1] = C0.
        let mut found = None;
        'search: for hi in 0u64..1 << 16 {
            let seq = 0x0B | (hi << 8) | (1 << 20);
            for lo in 0u8..=255 {
                let mut body = vec![0x0B];
                body.extend_from_slice(&seq.to_le_bytes()[1..]);
                body.push(lo);
                body.push(0xC0);
                let crc = crc32fast::hash(&body);
                // A date the server would schedule (2026 to 2033).
                if (0x1880_0000..0x1A00_0000).contains(&crc) {
                    found = Some((seq, lo, crc));
                    break 'search;
                }
            }
        }
        let (seq, lo, crc) = found.expect("a marker-shaped key");
        let len = 0xC000 | lo as usize;
        let mut job = br#"{"jid":"x","jobtype":"T","args":[""#.to_vec();
        job.resize(len - 3, b'p');
        job.extend_from_slice(br#""]}"#);
        let crafted = Record::SetAdd {
            set: SetName::Scheduled,
            key: SetKey {
                at: Timestamp(((crc as i64) << 32) | 0x0A),
                seq,
            },
            job,
        };
        let d = dir("forged");
        let first: &[Record] = &[rec("a")];
        let p = journal_of(&d, 1, &[first, &[crafted, rec("b")]]);
        let whole = std::fs::read(&p).unwrap();
        let cut = image(&[first]).len();
        // The marker-shaped run is there, and names a start outside the batch.
        let shaped = (cut..whole.len() - COMMIT_BYTES).find_map(|i| commit_at(&whole[i..]));
        assert!(shaped.is_some_and(|(s, _)| s != cut as u64), "{shaped:?}");
        // The last sector (with the batch's marker) never reached the disk.
        let mut torn = whole.clone();
        torn[((whole.len() - 1) / 512 * 512).max(cut)..].fill(0);
        torn.resize(whole.len() + 4096, 0);
        std::fs::write(&p, &torn).unwrap();
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, first);
        noted(&found, "never acknowledged");
        std::fs::remove_dir_all(d).unwrap();
    }

    /// A last batch whose marker and every sector are on the disk was written whole; a bad
    /// record in it is damage (bit rot, a stray write), not a tear: refused, not cut, since
    /// the batch may have been acknowledged. (A flip in the marker itself reads as a marker
    /// that never reached the disk, and is cut.)
    #[test]
    fn damage_in_a_last_batch_with_its_marker_and_every_sector_is_refused() {
        let d = dir("flip-last");
        let p = journal_of(&d, 1, &[&[rec("a")], &[rec(&"b".repeat(600)), rec("c")]]);
        let cut = image(&[&[rec("a")]]).len();
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[cut + 12] ^= 0x04;
        bytes.resize(bytes.len() + 4096, 0);
        std::fs::write(&p, &bytes).unwrap();
        let e = run(&d, Mode::Repair).unwrap_err();
        assert!(
            e.contains(&format!("corrupt record at byte {cut}: checksum mismatch")),
            "{e}"
        );
        assert!(e.contains("every sector are on the disk"), "{e}");
        assert!(
            e.contains(&format!("`truncate -s {cut} {}`", p.display())),
            "{e}"
        );
        assert_eq!(std::fs::read(&p).unwrap(), bytes, "nothing cut");
        // The same flip with a sector of the batch missing: a tear, cut.
        let hole = (cut / 512 + 1) * 512;
        bytes[hole..hole + 512].fill(0);
        std::fs::write(&p, &bytes).unwrap();
        let (_, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a")]);
        std::fs::remove_dir_all(d).unwrap();
    }

    fn encode_len(r: &Record) -> usize {
        let mut v = Vec::new();
        encode(r, &mut v);
        v.len()
    }

    /// Markers in a version 1 journal (a werk at 092860b appended marked batches to one; werk
    /// no longer does, see `Recovered::appends_to`) are skipped, and every whole record counts.
    #[test]
    fn a_version_1_journal_with_markers_appended_reads_every_record() {
        let d = dir("v1-markers");
        let p = journal_v1(&d, 1, &[rec("a")]);
        let mut bytes = std::fs::read(&p).unwrap();
        let start = bytes.len() as u64;
        encode(&rec("b"), &mut bytes);
        encode_commit(start, &mut bytes);
        encode(&rec("c"), &mut bytes);
        std::fs::write(&p, &bytes).unwrap();
        let (found, seen) = run(&d, Mode::Repair).unwrap();
        assert_eq!(seen, vec![rec("a"), rec("b"), rec("c")]);
        assert!(found.notes.is_empty(), "{:?}", found.notes);
        assert_eq!(found.journal_bytes, bytes.len() as u64);
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_empty_or_header_torn_journal_gets_a_fresh_header() {
        let d = dir("header");
        let p = d.join(journal_name(1));
        for content in [&b""[..], &b"WERK"[..]] {
            std::fs::write(&p, content).unwrap();
            let (found, seen) = run(&d, Mode::Repair).unwrap();
            assert!(seen.is_empty());
            assert_eq!(found.journal_bytes, HEADER.len() as u64);
            assert_eq!(std::fs::read(&p).unwrap(), HEADER.to_vec());
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}
