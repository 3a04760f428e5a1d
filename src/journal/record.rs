//! Journal file format.
//!
//! ```text
//! file   = header batch*
//! header = "WERKJNL" version:u8            (8 bytes; version 3)
//! batch  = record* commit                  one write (and, with `--sync always`, one fsync)
//! record = len:u32 crc:u32 kind:u8 body     len = 1 + |body|, crc = CRC-32 of kind ++ body
//! commit = the same framing, kind 0x0B, body = start:u64 order:u8
//! order  = 0xC0 (every batch before it was durable when it was written: with `--sync always`
//!               each batch, with `everysec` and `none` the first after a completed sync)
//!        | 0xC1 (some may not have been: `everysec`, `none`)
//! ```
//! Integers are little-endian. Strings and byte blobs are `len:u32` then the bytes. Timestamps
//! are `i64` nanoseconds. Decoding never trusts a length: every read is bounds-checked, and a
//! record longer than [`RECORD_BYTES_MAX`] is corrupt.
//!
//! The commit marker closes a batch and names the file offset where the batch began (the end of
//! the previous marker, or of the header). A batch is acknowledged only after it is durable, and
//! the next one is written only then, so only the last batch of a journal can be unfinished
//! after a power cut, whatever order the disk wrote its sectors in: recovery keeps whole batches
//! only ([`decode_all`], `journal::files`). With `everysec` and `none` a batch is written
//! without waiting for the one before it to be durable, so a power cut can leave any of the
//! batches since the last completed sync torn; their markers say so (`0xC1`), and recovery may
//! then drop them all ([`Order`]). The marker's last byte is never zero, so a batch never ends
//! in a zero byte, and a journal's data end (its last non-zero byte) is the end of its last
//! batch.
//!
//! Version 2 (`WERKJNL\x02`) had the same batches with `0xC0` markers only; werks of that
//! version would read a `0xC1` marker as a torn last batch and cut it, hence the new version,
//! whose header they refuse. Version 1 (`WERKJNL\x01`, before markers) is read record by
//! record; markers a newer werk appended to such a file are skipped there. werk reads all three
//! and appends only to version 3 files.

use crate::core::record::Record;
use crate::core::sorted::{SetKey, SetName};
use crate::timestamp::Timestamp;
use std::fmt;

/// The file header of the journals werk writes.
pub const HEADER: &[u8; 8] = b"WERKJNL\x03";
/// The header of a journal whose markers were all `0xC0` (read, never written).
pub const HEADER_V2: &[u8; 8] = b"WERKJNL\x02";
/// The header of a journal written before batches had commit markers (read, never written).
pub const HEADER_V1: &[u8; 8] = b"WERKJNL\x01";
/// Largest record accepted (a job is bounded by the line limit, 16 MiB by default).
pub const RECORD_BYTES_MAX: usize = 256 << 20;

const ENQUEUE: u8 = 1;
const RESERVE: u8 = 2;
const RELEASE: u8 = 3;
const SET_ADD: u8 = 4;
const SET_REMOVE: u8 = 5;
const COUNT: u8 = 6;
const PAUSE: u8 = 7;
const REMOVE_QUEUE: u8 = 8;
const FLUSH: u8 = 9;
const TOTALS: u8 = 10;
/// Kind of the marker that closes a batch (not a [`Record`]).
const COMMIT: u8 = 11;
/// Last byte of a commit marker written after the batch before it was durable ([`Order`]); no
/// batch ends in a zero byte.
const COMMIT_END: u8 = 0xC0;
/// Last byte of a commit marker written without waiting for the batch before it ([`Order`]).
const COMMIT_END_UNSYNCED: u8 = 0xC1;

/// What a commit marker says about the batches before it when its batch was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Every earlier batch was durable (with `--sync always` the writer waits for each batch's
    /// sync before it writes the next; with `everysec` and `none`, the first batch after a
    /// sync that covered them all). After a power cut, a batch with such a marker after it is
    /// whole, or was damaged after it was written.
    AfterDurable,
    /// Earlier batches may still have been in the page cache (`--sync everysec`, `none`,
    /// between syncs): a power cut can leave holes in them even though this batch reached the
    /// disk.
    Unsynced,
}

impl Order {
    fn end_byte(self) -> u8 {
        match self {
            Order::AfterDurable => COMMIT_END,
            Order::Unsynced => COMMIT_END_UNSYNCED,
        }
    }

    fn of_end_byte(b: u8) -> Option<Order> {
        match b {
            COMMIT_END => Some(Order::AfterDurable),
            COMMIT_END_UNSYNCED => Some(Order::Unsynced),
            _ => None,
        }
    }
}
/// Why a whole commit marker is refused: it names another start than the end of the batch
/// before it.
pub const MISPLACED_COMMIT: &str = "a commit marker that does not close the batch before it";
/// Bytes of a framed commit marker: frame, kind, start, end byte.
pub const COMMIT_BYTES: usize = 8 + 1 + 8 + 1;
/// Kind of a snapshot's last record (not a [`Record`]): its generation and record count.
const SNAPSHOT_END: u8 = 0xF0;

/// The header of a snapshot file (same record framing as the journal).
pub const SNAPSHOT_HEADER: &[u8; 8] = b"WERKSNP\x01";

/// Why decoding stopped before the end of the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The file does not start with [`HEADER`].
    BadHeader,
    /// The input ends inside a record (a torn write): everything before `offset` is good.
    Torn {
        /// Where the partial record starts.
        offset: usize,
    },
    /// Whole records follow the last commit marker without one of their own (a batch that was
    /// being written): everything before `offset` is good.
    Unfinished {
        /// Where the unfinished batch starts (the end of the last marker).
        offset: usize,
    },
    /// A record's checksum, kind or fields are wrong.
    Corrupt {
        /// Where the bad record starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::BadHeader => f.write_str("not a werk journal (bad header)"),
            DecodeError::Torn { offset } => write!(f, "torn record at byte {offset}"),
            DecodeError::Unfinished { offset } => {
                write!(f, "a batch without its commit marker at byte {offset}")
            }
            DecodeError::Corrupt { offset, reason } => {
                write!(f, "corrupt record at byte {offset}: {reason}")
            }
        }
    }
}

impl std::error::Error for DecodeError {}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Records hold jobs bounded by the line limit, far below 4 GiB.
    put_u32(out, u32::try_from(b.len()).expect("field over 4 GiB"));
    out.extend_from_slice(b);
}

fn set_code(s: SetName) -> u8 {
    match s {
        SetName::Scheduled => 0,
        SetName::Retries => 1,
        SetName::Dead => 2,
    }
}

/// Appends one framed record to `out`.
pub fn encode(rec: &Record, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    match rec {
        Record::Enqueue { job } => {
            out.push(ENQUEUE);
            put_bytes(out, job);
        }
        Record::Reserve {
            queue,
            jid,
            wid,
            expires_at,
        } => {
            out.push(RESERVE);
            put_bytes(out, queue.as_bytes());
            put_bytes(out, jid.as_bytes());
            put_bytes(out, wid.as_bytes());
            out.extend_from_slice(&expires_at.0.to_le_bytes());
        }
        Record::Release { jid } => {
            out.push(RELEASE);
            put_bytes(out, jid.as_bytes());
        }
        Record::SetAdd { set, key, job } => {
            out.push(SET_ADD);
            out.push(set_code(*set));
            out.extend_from_slice(&key.at.0.to_le_bytes());
            out.extend_from_slice(&key.seq.to_le_bytes());
            put_bytes(out, job);
        }
        Record::SetRemove { set, key } => {
            out.push(SET_REMOVE);
            out.push(set_code(*set));
            out.extend_from_slice(&key.at.0.to_le_bytes());
            out.extend_from_slice(&key.seq.to_le_bytes());
        }
        Record::Count {
            processed,
            failures,
            day,
        } => {
            out.push(COUNT);
            out.extend_from_slice(&processed.to_le_bytes());
            out.extend_from_slice(&failures.to_le_bytes());
            put_bytes(out, day.as_bytes());
        }
        Record::Pause { queue, paused } => {
            out.push(PAUSE);
            out.push(u8::from(*paused));
            put_bytes(out, queue.as_bytes());
        }
        Record::RemoveQueue { queue } => {
            out.push(REMOVE_QUEUE);
            put_bytes(out, queue.as_bytes());
        }
        Record::Flush => out.push(FLUSH),
        Record::Totals {
            processed,
            failures,
        } => {
            out.push(TOTALS);
            out.extend_from_slice(&processed.to_le_bytes());
            out.extend_from_slice(&failures.to_le_bytes());
        }
    }
    frame(out, start);
    debug_assert_eq!(
        decode_one(&out[start..]).ok().flatten(),
        Some((rec.clone(), out.len() - start)),
        "a record must decode to itself"
    );
}

/// Appends the trailer of a snapshot: the journal generation that follows it and the number of
/// records before it. A snapshot without it is incomplete.
pub fn encode_snapshot_end(generation: u64, records: u64, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(SNAPSHOT_END);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&records.to_le_bytes());
    frame(out, start);
}

/// Appends the marker that closes a batch which began at file offset `start`, written after
/// every earlier batch was durable (`--sync always`).
pub fn encode_commit(start: u64, out: &mut Vec<u8>) {
    encode_commit_in(start, Order::AfterDurable, out);
}

/// Appends the marker that closes a batch which began at file offset `start`.
pub fn encode_commit_in(start: u64, order: Order, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(&[0; 8]);
    out.push(COMMIT);
    out.extend_from_slice(&start.to_le_bytes());
    out.push(order.end_byte());
    frame(out, at);
}

/// The start a whole, valid commit marker at the beginning of `buf` names, and its order, if
/// there is one (a cheap test of the fixed frame first, so scanning damaged bytes for markers
/// stays linear).
pub fn commit_at(buf: &[u8]) -> Option<(u64, Order)> {
    let frame = buf.get(..COMMIT_BYTES)?;
    if frame[..4] != [10, 0, 0, 0] || frame[8] != COMMIT || Order::of_end_byte(frame[17]).is_none()
    {
        return None;
    }
    match decode_item(frame) {
        Ok(Some((Item::Commit { start, order }, _))) => Some((start, order)),
        _ => None,
    }
}

/// Fills in the length and checksum of the record that starts at `start`.
fn frame(out: &mut [u8], start: usize) {
    let body = &out[start + 8..];
    let len = u32::try_from(body.len()).expect("record over 4 GiB");
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

/// A bounds-checked reader over a record body.
struct Body<'a>(&'a [u8]);

impl<'a> Body<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1)?.first().copied()
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = u32::from_le_bytes(self.take(4)?.try_into().ok()?) as usize;
        self.take(n)
    }
    fn text(&mut self) -> Option<Box<str>> {
        std::str::from_utf8(self.bytes()?).ok().map(Into::into)
    }
    fn set(&mut self) -> Option<SetName> {
        match self.u8()? {
            0 => Some(SetName::Scheduled),
            1 => Some(SetName::Retries),
            2 => Some(SetName::Dead),
            _ => None,
        }
    }
    fn key(&mut self) -> Option<SetKey> {
        Some(SetKey {
            at: Timestamp(self.i64()?),
            seq: self.u64()?,
        })
    }
}

fn decode_body(kind: u8, b: &mut Body<'_>) -> Option<Record> {
    Some(match kind {
        ENQUEUE => Record::Enqueue {
            job: b.bytes()?.to_vec(),
        },
        RESERVE => Record::Reserve {
            queue: b.text()?,
            jid: b.text()?,
            wid: b.text()?,
            expires_at: Timestamp(b.i64()?),
        },
        RELEASE => Record::Release { jid: b.text()? },
        SET_ADD => Record::SetAdd {
            set: b.set()?,
            key: b.key()?,
            job: b.bytes()?.to_vec(),
        },
        SET_REMOVE => Record::SetRemove {
            set: b.set()?,
            key: b.key()?,
        },
        COUNT => Record::Count {
            processed: b.u64()?,
            failures: b.u64()?,
            day: b.text()?,
        },
        PAUSE => Record::Pause {
            paused: match b.u8()? {
                0 => false,
                1 => true,
                _ => return None,
            },
            queue: b.text()?,
        },
        REMOVE_QUEUE => Record::RemoveQueue { queue: b.text()? },
        FLUSH => Record::Flush,
        TOTALS => Record::Totals {
            processed: b.u64()?,
            failures: b.u64()?,
        },
        _ => return None,
    })
}

/// What a frame holds: a state record, or a snapshot's trailer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Item {
    /// A state change.
    Record(Record),
    /// The end of a batch (see [`encode_commit`]).
    Commit {
        /// File offset where the batch began.
        start: u64,
        /// Whether the batches before it were durable when it was written.
        order: Order,
    },
    /// The end of a snapshot (see [`encode_snapshot_end`]).
    SnapshotEnd {
        /// The journal generation that continues the snapshot.
        generation: u64,
        /// Records in the snapshot before the trailer.
        records: u64,
    },
}

/// Decodes the frame at the start of `buf`: `Ok(None)` if `buf` ends inside it (torn).
/// Errors carry offset 0; the callers place them.
pub fn decode_item(buf: &[u8]) -> Result<Option<(Item, usize)>, DecodeError> {
    let corrupt = |reason| DecodeError::Corrupt { offset: 0, reason };
    let Some(frame) = buf.get(..8) else {
        return Ok(None);
    };
    let len = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]) as usize;
    let crc = u32::from_le_bytes([frame[4], frame[5], frame[6], frame[7]]);
    if len == 0 || len > RECORD_BYTES_MAX {
        return Err(corrupt("impossible length"));
    }
    let Some(body) = buf.get(8..8 + len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != crc {
        return Err(corrupt("checksum mismatch"));
    }
    let mut reader = Body(body.get(1..).unwrap_or_default());
    let item = match body[0] {
        SNAPSHOT_END => Item::SnapshotEnd {
            generation: reader.u64().ok_or(corrupt("bad snapshot trailer"))?,
            records: reader.u64().ok_or(corrupt("bad snapshot trailer"))?,
        },
        COMMIT => {
            let start = reader.u64().ok_or(corrupt("bad commit marker"))?;
            let order = reader
                .u8()
                .and_then(Order::of_end_byte)
                .ok_or(corrupt("bad commit marker"))?;
            Item::Commit { start, order }
        }
        kind => Item::Record(decode_body(kind, &mut reader).ok_or(corrupt("bad record body"))?),
    };
    if !reader.0.is_empty() {
        return Err(corrupt("trailing bytes in record"));
    }
    Ok(Some((item, 8 + len)))
}

/// Decodes the record at the start of `buf`: `Ok(None)` if `buf` ends inside it (torn).
/// A snapshot trailer or a commit marker is not a record here. Errors carry offset 0.
pub fn decode_one(buf: &[u8]) -> Result<Option<(Record, usize)>, DecodeError> {
    match decode_item(buf)? {
        None => Ok(None),
        Some((Item::Record(r), used)) => Ok(Some((r, used))),
        Some((Item::SnapshotEnd { .. } | Item::Commit { .. }, _)) => Err(DecodeError::Corrupt {
            offset: 0,
            reason: "not a state record",
        }),
    }
}

/// How a journal groups its records, from its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// [`HEADER`], [`HEADER_V2`]: records count once their batch's commit marker is read.
    Batches,
    /// [`HEADER_V1`]: every whole record counts; markers are skipped.
    Records,
}

impl Framing {
    /// The framing a journal header announces.
    pub fn of(header: &[u8]) -> Option<Framing> {
        match header {
            h if h == HEADER || h == HEADER_V2 => Some(Framing::Batches),
            h if h == HEADER_V1 => Some(Framing::Records),
            _ => None,
        }
    }
}

/// Follows a journal's records as they are read, and says which of them count: with
/// [`Framing::Batches`], a batch's records are held until its commit marker, which must name
/// where the batch began. [`decode_all`] and recovery (`journal::files`) share it, so the two
/// agree on what a journal holds.
#[derive(Debug)]
pub struct Batcher {
    framing: Framing,
    /// File offset after the last record that counts (its batch's marker, with batches).
    pub committed: u64,
    /// Records read since then, with their offsets.
    pending: Vec<(u64, Record)>,
    /// Records that count, not yet taken by the caller ([`Batcher::ready`]).
    ready: Vec<(u64, Record)>,
}

impl Batcher {
    /// How this file groups its records.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// A batcher for a file whose header announced `framing`.
    pub fn new(framing: Framing) -> Batcher {
        Batcher {
            framing,
            committed: HEADER.len() as u64,
            pending: Vec::new(),
            ready: Vec::new(),
        }
    }

    /// Takes the item read at `at`, ending at `end`, or says why it cannot be where it is. The
    /// records that count from then on come out of [`Batcher::ready`], in order.
    pub fn take(&mut self, item: Item, at: u64, end: u64) -> Result<(), DecodeError> {
        let offset = usize::try_from(at).unwrap_or(usize::MAX);
        match (item, self.framing) {
            (Item::Record(r), Framing::Batches) => self.pending.push((at, r)),
            (Item::Record(r), Framing::Records) => {
                self.committed = end;
                self.ready.push((at, r));
            }
            (Item::Commit { start, .. }, Framing::Batches) => {
                if start != self.committed {
                    return Err(DecodeError::Corrupt {
                        offset,
                        reason: MISPLACED_COMMIT,
                    });
                }
                self.committed = end;
                // Moved, not reallocated: both buffers keep their capacity from batch to batch.
                self.ready.append(&mut self.pending);
            }
            (Item::Commit { .. }, Framing::Records) => self.committed = end,
            (Item::SnapshotEnd { .. }, _) => {
                return Err(DecodeError::Corrupt {
                    offset,
                    reason: "snapshot trailer in a journal",
                })
            }
        }
        Ok(())
    }

    /// The records that count and were not taken yet, with their offsets, in order.
    pub fn ready(&mut self) -> std::vec::Drain<'_, (u64, Record)> {
        self.ready.drain(..)
    }
}

/// Decodes a whole journal image (header included). Returns the records that count (those of
/// whole batches), where they end, and why decoding stopped before the end of the image, if it
/// did: records after the last marker are [`DecodeError::Unfinished`] when whole.
pub fn decode_all(image: &[u8]) -> (Vec<Record>, usize, Option<DecodeError>) {
    let Some(framing) = image.get(..HEADER.len()).and_then(Framing::of) else {
        return (Vec::new(), 0, Some(DecodeError::BadHeader));
    };
    let mut batcher = Batcher::new(framing);
    let mut pos = HEADER.len();
    let mut records = Vec::new();
    let stop = loop {
        if pos >= image.len() {
            break None;
        }
        let placed = |e| match e {
            DecodeError::Corrupt { reason, .. } => DecodeError::Corrupt {
                offset: pos,
                reason,
            },
            other => other,
        };
        match decode_item(&image[pos..]) {
            Ok(Some((item, used))) => {
                let end = pos + used;
                if let Err(e) = batcher.take(item, pos as u64, end as u64) {
                    break Some(e);
                }
                records.extend(batcher.ready().map(|(_, r)| r));
                pos = end;
            }
            Ok(None) => break Some(DecodeError::Torn { offset: pos }),
            Err(e) => break Some(placed(e)),
        }
    };
    let committed = batcher.committed as usize;
    let stop = match stop {
        None if committed < pos => Some(DecodeError::Unfinished { offset: committed }),
        other => other,
    };
    (records, committed, stop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record> {
        let key = SetKey {
            at: Timestamp(-5),
            seq: u64::MAX,
        };
        vec![
            Record::Enqueue {
                job: br#"{"retry":25,"jid":"x"}"#.to_vec(),
            },
            Record::Reserve {
                queue: "default".into(),
                jid: "abcdefgh".into(),
                wid: "".into(),
                expires_at: Timestamp(1_800_000_000_000_000_000),
            },
            Record::Release { jid: "é".into() },
            Record::SetAdd {
                set: SetName::Dead,
                key,
                job: Vec::new(),
            },
            Record::SetRemove {
                set: SetName::Scheduled,
                key,
            },
            Record::Count {
                processed: 3,
                failures: 1,
                day: "2026-11-28".into(),
            },
            Record::Pause {
                queue: "q".into(),
                paused: true,
            },
            Record::RemoveQueue { queue: "q".into() },
            Record::Flush,
            Record::Totals {
                processed: 7,
                failures: u64::MAX,
            },
        ]
    }

    /// The samples as a journal of three batches (3, 1 and the rest of the records); returns
    /// the image and the offset where each batch ends.
    fn batches() -> (Vec<u8>, Vec<usize>) {
        let mut img = HEADER.to_vec();
        let mut ends = Vec::new();
        let samples = samples();
        for batch in [&samples[..3], &samples[3..4], &samples[4..]] {
            let start = img.len() as u64;
            for r in batch {
                encode(r, &mut img);
            }
            encode_commit(start, &mut img);
            ends.push(img.len());
        }
        (img, ends)
    }

    fn image() -> Vec<u8> {
        batches().0
    }

    #[test]
    fn round_trip() {
        let img = image();
        let (recs, used, err) = decode_all(&img);
        assert_eq!(recs, samples());
        assert_eq!((used, err), (img.len(), None));
        assert_ne!(img.last(), Some(&0), "a batch ends in a non-zero byte");
        // A version 1 journal: every record counts, markers a newer werk added are skipped.
        let mut v1 = HEADER_V1.to_vec();
        v1.extend_from_slice(&img[HEADER.len()..]);
        assert_eq!(decode_all(&v1), (samples(), img.len(), None));
        let mut v1 = HEADER_V1.to_vec();
        encode(&samples()[0], &mut v1);
        assert_eq!(decode_all(&v1), (samples()[..1].to_vec(), v1.len(), None));
    }

    #[test]
    fn every_truncation_keeps_exactly_the_whole_batches() {
        let (img, ends) = batches();
        let samples = samples();
        let counts = [3, 4, samples.len()];
        for cut in HEADER.len()..img.len() {
            let (recs, used, err) = decode_all(&img[..cut]);
            let whole = ends.iter().filter(|&&e| e <= cut).count();
            let kept = if whole == 0 { 0 } else { counts[whole - 1] };
            let boundary = if whole == 0 {
                HEADER.len()
            } else {
                ends[whole - 1]
            };
            assert_eq!(recs, samples[..kept], "cut {cut}");
            assert_eq!(used, boundary, "cut {cut}");
            assert_eq!(err.is_some(), cut != boundary, "cut {cut}: {err:?}");
        }
    }

    #[test]
    fn a_marker_must_close_the_batch_before_it() {
        let mut img = HEADER.to_vec();
        encode(&samples()[0], &mut img);
        let at = img.len();
        encode_commit(HEADER.len() as u64 + 1, &mut img);
        let (recs, used, err) = decode_all(&img);
        assert!(recs.is_empty());
        assert_eq!(used, HEADER.len());
        assert_eq!(
            err,
            Some(DecodeError::Corrupt {
                offset: at,
                reason: "a commit marker that does not close the batch before it"
            })
        );
        // A marker is found by its fixed frame and checksum, not by its kind byte alone.
        let mut marker = Vec::new();
        encode_commit(4096, &mut marker);
        assert_eq!(marker.len(), COMMIT_BYTES);
        assert_eq!(commit_at(&marker), Some((4096, Order::AfterDurable)));
        for byte in 0..marker.len() {
            let mut bad = marker.clone();
            bad[byte] ^= 0x10;
            assert_eq!(commit_at(&bad), None, "flip in byte {byte}");
        }
        assert_eq!(commit_at(&marker[..COMMIT_BYTES - 1]), None);
        let mut unsynced = Vec::new();
        encode_commit_in(4096, Order::Unsynced, &mut unsynced);
        assert_eq!(commit_at(&unsynced), Some((4096, Order::Unsynced)));
        assert_eq!(unsynced.last(), Some(&0xC1));
        // Any other last byte is no marker, even with a checksum that matches it.
        let mut other = Vec::new();
        encode_commit(4096, &mut other);
        other[17] = 0xC2;
        let crc = crc32fast::hash(&other[8..]);
        other[4..8].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(commit_at(&other), None);
        assert!(decode_item(&other).is_err());
    }

    #[test]
    fn every_bit_flip_is_caught_or_harmless() {
        // A flipped bit must never yield a different record: it is caught (corrupt or torn), or
        // it hits nothing that decodes differently.
        let img = image();
        let good = samples();
        for byte in HEADER.len()..img.len() {
            for bit in 0..8 {
                let mut bad = img.clone();
                bad[byte] ^= 1 << bit;
                let (recs, _, err) = decode_all(&bad);
                assert!(err.is_some(), "flip at {byte}.{bit} went unnoticed");
                assert_eq!(
                    recs[..],
                    good[..recs.len()],
                    "flip at {byte}.{bit} changed a record"
                );
            }
        }
        let mut bad = img.clone();
        bad[0] = b'X';
        assert_eq!(decode_all(&bad).2, Some(DecodeError::BadHeader));
    }
}
