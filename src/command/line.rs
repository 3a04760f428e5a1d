//! The request reader: splits a connection's read buffer into command lines without copying.
//!
//! Faktory clients send one command per line, `VERB payload`, ended by `\r\n` or a bare `\n`
//! (PROTOCOL.md §1.2). [`LineReader::next_line`] returns the next complete line borrowed from the
//! buffer, or says that more bytes are needed. It remembers how far it scanned, so a line that
//! arrives in many small reads is scanned once, not from byte 0 each time. The length limit is
//! checked as bytes arrive, before a too-long line can grow the buffer further.

use std::fmt;

/// Result of looking for a line.
#[derive(Debug, PartialEq, Eq)]
pub enum Status<T> {
    /// A whole line was found.
    Complete(T),
    /// The buffer ends in the middle of a line.
    Partial,
}

/// The only way a byte stream of lines can be wrong: a line longer than the limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LineTooLong {
    /// The configured limit, in bytes (terminator excluded).
    pub line_bytes_max: usize,
}

impl fmt::Display for LineTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "command line too long: the limit is {} bytes",
            self.line_bytes_max
        )
    }
}

impl std::error::Error for LineTooLong {}

/// Finds lines in a growing buffer.
#[derive(Debug, Clone)]
pub struct LineReader {
    scanned: usize,
    line_bytes_max: usize,
}

impl LineReader {
    /// A reader that refuses lines longer than `line_bytes_max` bytes.
    pub fn new(line_bytes_max: usize) -> LineReader {
        LineReader {
            scanned: 0,
            line_bytes_max,
        }
    }

    /// The configured limit.
    pub fn line_bytes_max(&self) -> usize {
        self.line_bytes_max
    }

    /// Looks for the first line in `buf` (which must start where the previous line ended).
    /// On success returns the line without its terminator and the number of bytes it used.
    pub fn next_line<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<Status<(&'a [u8], usize)>, LineTooLong> {
        let from = self.scanned.min(buf.len());
        let rest = buf.get(from..).unwrap_or_default();
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let end = from + i;
                self.scanned = 0;
                let mut line = buf.get(..end).unwrap_or_default();
                if let Some(stripped) = line.strip_suffix(b"\r") {
                    line = stripped;
                }
                if line.len() > self.line_bytes_max {
                    return Err(self.too_long());
                }
                Ok(Status::Complete((line, end + 1)))
            }
            None => {
                self.scanned = buf.len();
                // A trailing CR may still belong to a CRLF terminator.
                let body = buf.len() - usize::from(buf.last() == Some(&b'\r'));
                if body > self.line_bytes_max {
                    return Err(self.too_long());
                }
                Ok(Status::Partial)
            }
        }
    }

    fn too_long(&self) -> LineTooLong {
        LineTooLong {
            line_bytes_max: self.line_bytes_max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `wire` in two pieces at every split point, as the socket might deliver it, and
    /// collects the lines.
    fn lines_with_split(wire: &[u8], cut: usize, max: usize) -> Result<Vec<Vec<u8>>, LineTooLong> {
        let mut r = LineReader::new(max);
        let mut buf: Vec<u8> = Vec::new();
        let mut out = Vec::new();
        for piece in [&wire[..cut], &wire[cut..]] {
            buf.extend_from_slice(piece);
            let mut pos = 0;
            while let Status::Complete((line, n)) = r.next_line(&buf[pos..])? {
                out.push(line.to_vec());
                pos += n;
            }
            buf.drain(..pos);
        }
        Ok(out)
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        let wire = b"HELLO {\"v\":2}\r\nPUSH {\"a\":1}\nINFO\r\n\r\nEND\n";
        let want: Vec<Vec<u8>> = vec![
            b"HELLO {\"v\":2}".to_vec(),
            b"PUSH {\"a\":1}".to_vec(),
            b"INFO".to_vec(),
            b"".to_vec(),
            b"END".to_vec(),
        ];
        for cut in 0..=wire.len() {
            assert_eq!(lines_with_split(wire, cut, 64).unwrap(), want, "cut {cut}");
        }
    }

    #[test]
    fn partial_line_waits_and_keeps_its_scan_position() {
        let mut r = LineReader::new(100);
        assert_eq!(r.next_line(b"PUSH {"), Ok(Status::Partial));
        assert_eq!(r.scanned, 6);
        assert_eq!(r.next_line(b"PUSH {}\r"), Ok(Status::Partial));
        assert_eq!(
            r.next_line(b"PUSH {}\r\nX"),
            Ok(Status::Complete((&b"PUSH {}"[..], 9)))
        );
        assert_eq!(r.scanned, 0);
    }

    #[test]
    fn limit_counts_the_line_not_the_terminator() {
        let mut r = LineReader::new(4);
        assert_eq!(r.next_line(b"ABCD\r"), Ok(Status::Partial));
        assert_eq!(
            r.next_line(b"ABCD\r\n"),
            Ok(Status::Complete((&b"ABCD"[..], 6)))
        );
        let mut r = LineReader::new(4);
        assert_eq!(
            r.next_line(b"ABCDE"),
            Err(LineTooLong { line_bytes_max: 4 })
        );
        let mut r = LineReader::new(4);
        assert_eq!(
            r.next_line(b"ABCDE\n"),
            Err(LineTooLong { line_bytes_max: 4 })
        );
        assert_eq!(
            LineTooLong { line_bytes_max: 4 }.to_string(),
            "command line too long: the limit is 4 bytes"
        );
    }

    #[test]
    fn limit_applies_at_every_split_point() {
        let wire = b"OK\nTOO LONG LINE\nOK\n";
        for cut in 0..=wire.len() {
            assert!(lines_with_split(wire, cut, 8).is_err(), "cut {cut}");
        }
    }
}
