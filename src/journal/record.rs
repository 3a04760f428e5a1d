//! Journal file format.
//!
//! ```text
//! file   = header record*
//! header = "WERKJNL" version:u8            (8 bytes; version 1)
//! record = len:u32 crc:u32 kind:u8 body     len = 1 + |body|, crc = CRC-32 of kind ++ body
//! ```
//! Integers are little-endian. Strings and byte blobs are `len:u32` then the bytes. Timestamps
//! are `i64` nanoseconds. Decoding never trusts a length: every read is bounds-checked, and a
//! record longer than [`RECORD_BYTES_MAX`] is corrupt.

use crate::core::record::Record;
use crate::core::sorted::{SetKey, SetName};
use crate::timestamp::Timestamp;
use std::fmt;

/// The file header.
pub const HEADER: &[u8; 8] = b"WERKJNL\x01";
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
    let item = if body[0] == SNAPSHOT_END {
        Item::SnapshotEnd {
            generation: reader.u64().ok_or(corrupt("bad snapshot trailer"))?,
            records: reader.u64().ok_or(corrupt("bad snapshot trailer"))?,
        }
    } else {
        Item::Record(decode_body(body[0], &mut reader).ok_or(corrupt("bad record body"))?)
    };
    if !reader.0.is_empty() {
        return Err(corrupt("trailing bytes in record"));
    }
    Ok(Some((item, 8 + len)))
}

/// Decodes the record at the start of `buf`: `Ok(None)` if `buf` ends inside it (torn).
/// A snapshot trailer is not a record here. Errors carry offset 0; [`decode_all`] places them.
pub fn decode_one(buf: &[u8]) -> Result<Option<(Record, usize)>, DecodeError> {
    match decode_item(buf)? {
        None => Ok(None),
        Some((Item::Record(r), used)) => Ok(Some((r, used))),
        Some((Item::SnapshotEnd { .. }, _)) => Err(DecodeError::Corrupt {
            offset: 0,
            reason: "snapshot trailer in a journal",
        }),
    }
}

/// Decodes a whole journal image (header included). Returns the records of the valid prefix,
/// its length in bytes, and why decoding stopped early, if it did.
pub fn decode_all(image: &[u8]) -> (Vec<Record>, usize, Option<DecodeError>) {
    if image.get(..HEADER.len()) != Some(&HEADER[..]) {
        return (Vec::new(), 0, Some(DecodeError::BadHeader));
    }
    let mut pos = HEADER.len();
    let mut records = Vec::new();
    while pos < image.len() {
        match decode_one(&image[pos..]) {
            Ok(Some((rec, used))) => {
                records.push(rec);
                pos += used;
            }
            Ok(None) => return (records, pos, Some(DecodeError::Torn { offset: pos })),
            Err(DecodeError::Corrupt { reason, .. }) => {
                return (
                    records,
                    pos,
                    Some(DecodeError::Corrupt {
                        offset: pos,
                        reason,
                    }),
                )
            }
            Err(other) => return (records, pos, Some(other)),
        }
    }
    (records, pos, None)
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

    fn image() -> Vec<u8> {
        let mut img = HEADER.to_vec();
        for r in samples() {
            encode(&r, &mut img);
        }
        img
    }

    #[test]
    fn round_trip() {
        let img = image();
        let (recs, used, err) = decode_all(&img);
        assert_eq!(recs, samples());
        assert_eq!((used, err), (img.len(), None));
    }

    #[test]
    fn every_truncation_keeps_exactly_the_whole_records() {
        let img = image();
        let mut boundaries = vec![HEADER.len()];
        let mut pos = HEADER.len();
        while let Ok(Some((_, n))) = decode_one(&img[pos..]) {
            pos += n;
            boundaries.push(pos);
        }
        for cut in HEADER.len()..img.len() {
            let (recs, used, err) = decode_all(&img[..cut]);
            let whole = boundaries.iter().filter(|&&b| b <= cut).count() - 1;
            assert_eq!(recs.len(), whole, "cut {cut}");
            assert_eq!(used, boundaries[whole]);
            let expected = if used == cut {
                None
            } else {
                Some(DecodeError::Torn { offset: used })
            };
            assert_eq!(err, expected, "cut {cut}");
        }
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
