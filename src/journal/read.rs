//! Streaming decoder for journal and snapshot files: records come out one at a time from a
//! bounded buffer, so recovering a large data directory never holds a whole file in memory.

use super::record::{decode_item, DecodeError, Item};
use std::io::{self, Read};

/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;

/// Why reading stopped.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read.
    Io(io::Error),
    /// The bytes are not a valid record (offsets are from the start of the file).
    Decode(DecodeError),
}

impl std::fmt::Display for ReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadError::Io(e) => write!(f, "read failed: {e}"),
            ReadError::Decode(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

/// Reads frames from a file that starts with an 8-byte header.
#[derive(Debug)]
pub struct ItemReader<R> {
    src: R,
    buf: Vec<u8>,
    start: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
    header: [u8; 8],
}

impl<R: Read> ItemReader<R> {
    /// Checks that the file starts with one of `headers` and positions the reader on the first
    /// frame. An empty file is `Ok(None)`.
    pub fn open(mut src: R, headers: &[&[u8; 8]]) -> Result<Option<ItemReader<R>>, ReadError> {
        let mut head = Vec::with_capacity(8);
        (&mut src).take(8).read_to_end(&mut head)?;
        if head.is_empty() {
            return Ok(None);
        }
        if head.len() < 8 && headers.iter().any(|h| h.starts_with(&head)) {
            // A crash while the header itself was being written.
            return Err(ReadError::Decode(DecodeError::Torn { offset: 0 }));
        }
        let Some(&&header) = headers.iter().find(|h| h[..] == head[..]) else {
            return Err(ReadError::Decode(DecodeError::BadHeader));
        };
        Ok(Some(ItemReader {
            src,
            buf: Vec::new(),
            start: 0,
            offset: 8,
            eof: false,
            header,
        }))
    }

    /// The header the file starts with (one of those `open` accepted).
    pub fn header(&self) -> &[u8; 8] {
        &self.header
    }

    /// File offset of the next frame (after the last one returned).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next frame, `Ok(None)` at a clean end of file.
    pub fn next_item(&mut self) -> Result<Option<Item>, ReadError> {
        loop {
            let at = |e| match e {
                DecodeError::Corrupt { reason, .. } => DecodeError::Corrupt { offset: 0, reason },
                other => other,
            };
            match decode_item(&self.buf[self.start..]) {
                Ok(Some((item, used))) => {
                    self.start += used;
                    self.offset += used as u64;
                    return Ok(Some(item));
                }
                Ok(None) if self.eof => {
                    if self.start == self.buf.len() {
                        return Ok(None);
                    }
                    return Err(self.placed(DecodeError::Torn { offset: 0 }));
                }
                Ok(None) => self.fill()?,
                Err(e) => return Err(self.placed(at(e))),
            }
        }
    }

    fn placed(&self, e: DecodeError) -> ReadError {
        let offset = usize::try_from(self.offset).unwrap_or(usize::MAX);
        ReadError::Decode(match e {
            DecodeError::Torn { .. } => DecodeError::Torn { offset },
            DecodeError::Corrupt { reason, .. } => DecodeError::Corrupt { offset, reason },
            other => other,
        })
    }

    /// Reads one more chunk, keeping the unread tail.
    fn fill(&mut self) -> io::Result<()> {
        self.buf.drain(..self.start);
        self.start = 0;
        let have = self.buf.len();
        self.buf.resize(have + CHUNK, 0);
        let n = loop {
            match self.src.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        };
        self.buf.truncate(have + n);
        self.eof = n == 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::record::Record;
    use crate::journal::record::{encode, encode_snapshot_end, HEADER, SNAPSHOT_HEADER};

    fn rec(n: usize) -> Record {
        Record::Enqueue { job: vec![b'x'; n] }
    }

    fn all(image: &[u8], header: &[u8; 8]) -> (Vec<Item>, Option<String>) {
        let mut out = Vec::new();
        let mut r = match ItemReader::open(image, &[header]) {
            Ok(Some(r)) => r,
            Ok(None) => return (out, None),
            Err(e) => return (out, Some(e.to_string())),
        };
        loop {
            match r.next_item() {
                Ok(Some(i)) => out.push(i),
                Ok(None) => return (out, None),
                Err(e) => return (out, Some(e.to_string())),
            }
        }
    }

    #[test]
    fn reads_records_larger_than_a_chunk_and_many_small_ones() {
        let mut image = HEADER.to_vec();
        let sizes = [1, CHUNK + 17, 3, 2 * CHUNK, 0, 5];
        for &n in &sizes {
            encode(&rec(n), &mut image);
        }
        for _ in 0..10_000 {
            encode(&rec(10), &mut image);
        }
        let (items, err) = all(&image, HEADER);
        assert_eq!(err, None);
        assert_eq!(items.len(), sizes.len() + 10_000);
        for (i, &n) in sizes.iter().enumerate() {
            assert_eq!(items[i], Item::Record(rec(n)));
        }
    }

    #[test]
    fn places_torn_and_corrupt_frames_at_their_file_offset() {
        let mut image = HEADER.to_vec();
        encode(&rec(4), &mut image);
        let second = image.len();
        encode(&rec(4), &mut image);
        let mut torn = image.clone();
        torn.truncate(torn.len() - 1);
        assert_eq!(
            all(&torn, HEADER).1.as_deref(),
            Some(format!("torn record at byte {second}").as_str())
        );
        let mut bad = image.clone();
        bad[second + 9] ^= 1;
        assert_eq!(
            all(&bad, HEADER).1.as_deref(),
            Some(format!("corrupt record at byte {second}: checksum mismatch").as_str())
        );
        assert_eq!(
            all(&image, SNAPSHOT_HEADER).1.as_deref(),
            Some("not a werk journal (bad header)")
        );
        assert_eq!(
            all(b"WERK", HEADER).1.as_deref(),
            Some("torn record at byte 0")
        );
        assert_eq!(all(b"", HEADER), (vec![], None));
    }

    #[test]
    fn snapshot_trailer_comes_back_as_its_own_item() {
        let mut image = SNAPSHOT_HEADER.to_vec();
        encode(&rec(1), &mut image);
        encode_snapshot_end(7, 1, &mut image);
        let (items, err) = all(&image, SNAPSHOT_HEADER);
        assert_eq!(err, None);
        assert_eq!(
            items,
            vec![
                Item::Record(rec(1)),
                Item::SnapshotEnd {
                    generation: 7,
                    records: 1
                }
            ]
        );
    }
}
