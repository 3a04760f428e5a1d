//! The reply side of the wire: a small RESP subset (PROTOCOL.md §1.3).
//!
//! The server writes simple strings, errors, bulk strings and the null bulk. [`decode`] reads
//! the same frames back for werk's own clients (tests, the benchmark). This module knows nothing
//! about jobs.

use std::fmt;

/// A reply the server sends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`
    Ok,
    /// `+<text>`
    Simple(String),
    /// `-<text>`; the text starts with the error code, e.g. `ERR unknown command x`.
    Error(String),
    /// `$<len>\r\n<bytes>`
    Bulk(Vec<u8>),
    /// `$-1`
    Null,
}

impl Reply {
    /// A generic error: `-ERR <msg>`.
    pub fn err(msg: impl fmt::Display) -> Reply {
        Reply::Error(format!("ERR {msg}"))
    }

    /// Appends the wire form of this reply to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Reply::Ok => out.extend_from_slice(b"+OK\r\n"),
            Reply::Simple(s) => write_line(out, b'+', s),
            Reply::Error(s) => write_line(out, b'-', s),
            Reply::Bulk(b) => write_bulk(out, b),
            Reply::Null => out.extend_from_slice(b"$-1\r\n"),
        }
    }
}

/// Writes `<prefix><text>\r\n`; CR and LF inside `text` become spaces so a line stays a line.
fn write_line(out: &mut Vec<u8>, prefix: u8, text: &str) {
    out.push(prefix);
    out.extend(
        text.bytes()
            .map(|b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Writes a bulk string.
pub fn write_bulk(out: &mut Vec<u8>, body: &[u8]) {
    out.push(b'$');
    write_decimal(out, body.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, without the formatting machinery or an allocation (it runs for every
/// job handed out, and for every number in a job's JSON).
pub fn write_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// A frame read back by a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// `+text`
    Simple(String),
    /// `-text`
    Error(String),
    /// `$len` body, or `None` for `$-1`
    Bulk(Option<Vec<u8>>),
    /// `:n`
    Integer(i64),
}

/// A reply stream that is not RESP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// The first byte is not one of `+ - $ :`.
    UnknownType(u8),
    /// A length or integer is not a number.
    BadNumber,
    /// A bulk body is not followed by CR LF.
    BadTerminator,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::UnknownType(b) => write!(f, "unknown RESP type byte 0x{b:02x}"),
            DecodeError::BadNumber => f.write_str("bad RESP number"),
            DecodeError::BadTerminator => f.write_str("bulk string not ended by CRLF"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Decodes one frame from the front of `buf`: `Ok(Some((frame, consumed)))`, or `Ok(None)` when
/// more bytes are needed.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(nl) = buf.iter().position(|&b| b == b'\n') else {
        return Ok(None);
    };
    let line_end = if nl > 0 && buf.get(nl - 1) == Some(&b'\r') {
        nl - 1
    } else {
        nl
    };
    let text = buf.get(1..line_end).unwrap_or_default();
    let text_str = || String::from_utf8_lossy(text).into_owned();
    let number = || -> Result<i64, DecodeError> {
        std::str::from_utf8(text)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(DecodeError::BadNumber)
    };
    let after = nl + 1;
    match kind {
        b'+' => Ok(Some((Frame::Simple(text_str()), after))),
        b'-' => Ok(Some((Frame::Error(text_str()), after))),
        b':' => Ok(Some((Frame::Integer(number()?), after))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Frame::Bulk(None), after)));
            }
            let len = usize::try_from(len).map_err(|_| DecodeError::BadNumber)?;
            let end = after.checked_add(len).ok_or(DecodeError::BadNumber)?;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if buf.get(end..end + 2) != Some(b"\r\n") {
                return Err(DecodeError::BadTerminator);
            }
            let body = buf.get(after..end).unwrap_or_default().to_vec();
            Ok(Some((Frame::Bulk(Some(body)), end + 2)))
        }
        other => Err(DecodeError::UnknownType(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(r: Reply) -> Vec<u8> {
        let mut v = Vec::new();
        r.encode(&mut v);
        v
    }

    #[test]
    fn bulk_lengths_and_decimals() {
        for (len, head) in [
            (0, "$0\r\n"),
            (9, "$9\r\n"),
            (10, "$10\r\n"),
            (12345, "$12345\r\n"),
        ] {
            let mut out = Vec::new();
            write_bulk(&mut out, &vec![b'x'; len]);
            assert!(out.starts_with(head.as_bytes()), "{len}");
            assert_eq!(out.len(), head.len() + len + 2);
        }
        let mut out = Vec::new();
        write_decimal(&mut out, u64::MAX);
        assert_eq!(out, u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn encodes_every_reply() {
        assert_eq!(enc(Reply::Ok), b"+OK\r\n");
        assert_eq!(
            enc(Reply::Simple("HI {\"v\":2}".into())),
            b"+HI {\"v\":2}\r\n"
        );
        assert_eq!(enc(Reply::err("bad\r\nthing")), b"-ERR bad  thing\r\n");
        assert_eq!(enc(Reply::Bulk(b"{}".to_vec())), b"$2\r\n{}\r\n");
        assert_eq!(
            enc(Reply::Bulk("é".as_bytes().to_vec())),
            "$2\r\né\r\n".as_bytes()
        );
        assert_eq!(enc(Reply::Null), b"$-1\r\n");
    }

    #[test]
    fn decodes_at_every_split_point() {
        let frames = [
            Reply::Ok,
            Reply::err("x y"),
            Reply::Bulk(b"a\r\nb".to_vec()),
            Reply::Null,
            Reply::Bulk(Vec::new()),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        wire.extend_from_slice(b":42\r\n");
        let expect = vec![
            Frame::Simple("OK".into()),
            Frame::Error("ERR x y".into()),
            Frame::Bulk(Some(b"a\r\nb".to_vec())),
            Frame::Bulk(None),
            Frame::Bulk(Some(Vec::new())),
            Frame::Integer(42),
        ];
        // Feeding any prefix yields only whole frames, and the full input yields them all.
        for cut in 0..=wire.len() {
            let mut got = Vec::new();
            let mut pos = 0;
            while let Some((f, n)) = decode(&wire[pos..cut]).unwrap() {
                got.push(f);
                pos += n;
            }
            assert!(got.len() <= expect.len());
            assert_eq!(got[..], expect[..got.len()]);
            if cut == wire.len() {
                assert_eq!(got, expect);
            }
        }
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(decode(b"*1\r\n"), Err(DecodeError::UnknownType(b'*')));
        assert_eq!(decode(b"$x\r\n"), Err(DecodeError::BadNumber));
        assert_eq!(decode(b"$1\r\nabc"), Err(DecodeError::BadTerminator));
    }
}
