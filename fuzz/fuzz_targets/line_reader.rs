//! LineReader: bytes split at fuzzer-chosen points, fed the way the event loop feeds a
//! connection's read buffer (append, take complete lines, drain what was used).
//!
//! Checks: no line holds '\n'; each line's `used` count is its length plus its terminator and
//! ends on a '\n'; the sum of the counts is where the last line ended; and the lines (and whether
//! the stream was refused as too long) are the same however the bytes are split, equal to a
//! plain split on '\n'.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::command::line::{LineReader, Status};

#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    lines: Vec<Vec<u8>>,
    /// Bytes consumed by complete lines.
    consumed: usize,
    too_long: bool,
}

/// Feeds `wire` in pieces cut at `cuts` (sorted, deduplicated offsets), like `process_lines`.
fn feed(wire: &[u8], cuts: &[usize], max: usize) -> Outcome {
    let mut reader = LineReader::new(max);
    assert_eq!(reader.line_bytes_max(), max);
    let mut buf: Vec<u8> = Vec::new();
    let mut out = Outcome {
        lines: Vec::new(),
        consumed: 0,
        too_long: false,
    };
    let mut start = 0;
    let ends = cuts.iter().copied().chain(std::iter::once(wire.len()));
    'pieces: for end in ends {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        let mut pos = 0;
        loop {
            match reader.next_line(&buf[pos..]) {
                Ok(Status::Complete((line, used))) => {
                    assert!(!line.contains(&b'\n'), "line holds LF: {line:?}");
                    assert!(
                        line.len() <= max,
                        "line over the limit: {} > {max}",
                        line.len()
                    );
                    assert!(
                        used == line.len() + 1 || used == line.len() + 2,
                        "used {used} for a line of {}",
                        line.len()
                    );
                    assert!(pos + used <= buf.len());
                    assert_eq!(buf[pos + used - 1], b'\n', "used does not end on LF");
                    if used == line.len() + 2 {
                        assert_eq!(buf[pos + used - 2], b'\r');
                    }
                    assert_eq!(
                        &buf[pos..pos + line.len()],
                        line,
                        "line is not the buffer's prefix"
                    );
                    out.lines.push(line.to_vec());
                    pos += used;
                    out.consumed += used;
                }
                Ok(Status::Partial) => {
                    assert!(
                        !buf[pos..].contains(&b'\n'),
                        "Partial with a LF in the buffer"
                    );
                    break;
                }
                Err(e) => {
                    assert_eq!(e.line_bytes_max, max);
                    let text = e.to_string();
                    assert!(!text.contains('\n') && !text.contains('\r'));
                    out.too_long = true;
                    break 'pieces;
                }
            }
        }
        buf.drain(..pos);
    }
    out
}

/// The same result computed without LineReader.
fn oracle(wire: &[u8], max: usize) -> Outcome {
    let mut out = Outcome {
        lines: Vec::new(),
        consumed: 0,
        too_long: false,
    };
    let mut rest = wire;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..i];
        if let Some(s) = line.strip_suffix(b"\r") {
            line = s;
        }
        if line.len() > max {
            out.too_long = true;
            return out;
        }
        out.lines.push(line.to_vec());
        out.consumed += i + 1;
        rest = &rest[i + 1..];
    }
    let body = rest.len() - usize::from(rest.last() == Some(&b'\r'));
    out.too_long = body > max;
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    // Byte 0: the limit (small, so refusals happen). Byte 1: how many cut points follow.
    let max = usize::from(data[0] % 48);
    let ncuts = usize::from(data[1] % 16);
    let rest = &data[2..];
    let ncuts = ncuts.min(rest.len() / 2);
    let (cut_bytes, wire) = rest.split_at(ncuts * 2);
    let mut cuts: Vec<usize> = cut_bytes
        .chunks_exact(2)
        .map(|c| usize::from(u16::from_le_bytes([c[0], c[1]])) % (wire.len() + 1))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();

    let split = feed(wire, &cuts, max);
    let whole = feed(wire, &[], max);
    // One byte at a time: the most reads a line can arrive in.
    let bytewise: Vec<usize> = (1..wire.len()).collect();
    let single = feed(wire, &bytewise, max);
    let expected = oracle(wire, max);
    assert_eq!(whole, expected, "whole feed differs from a plain split");
    assert_eq!(
        split, whole,
        "split feed at {cuts:?} differs from the whole feed"
    );
    assert_eq!(
        single, whole,
        "byte-at-a-time feed differs from the whole feed"
    );
    if !whole.too_long {
        let last_lf = wire.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        assert_eq!(
            whole.consumed, last_lf,
            "consumed bytes do not reach the last LF"
        );
    }
});
