//! The journal's record format (journal::record): decoding untrusted file bytes.
//!
//! Two images are built from the input: the raw bytes after a valid header (most die at the
//! checksum), and the same bytes cut into frames whose length and CRC-32 are made right, so the
//! fuzzer reaches the body decoder. For both: decode_all never panics and never reads past the
//! image; the records it returns re-encode to exactly the bytes of the valid prefix; and cutting
//! the valid prefix anywhere (a torn write) loses only the records after the cut and is reported
//! as torn, never as corrupt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::journal::record::{decode_all, encode, DecodeError, HEADER};

/// Frames `data` as records: each frame is `kind:u8 n:u8` then up to `n` body bytes.
fn framed(data: &[u8]) -> Vec<u8> {
    let mut image = HEADER.to_vec();
    let mut rest = data;
    while let [kind, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let mut body = vec![*kind];
        body.extend_from_slice(&tail[..n]);
        image.extend_from_slice(&(body.len() as u32).to_le_bytes());
        image.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        image.extend_from_slice(&body);
        rest = &tail[n..];
    }
    image
}

fn check(image: &[u8], cut_hint: usize) {
    let (records, valid, err) = decode_all(image);
    assert!(valid >= HEADER.len() && valid <= image.len());
    match &err {
        None => assert_eq!(valid, image.len(), "clean decode stopped early"),
        Some(DecodeError::Torn { offset }) | Some(DecodeError::Corrupt { offset, .. }) => {
            assert_eq!(*offset, valid)
        }
        Some(DecodeError::BadHeader) => panic!("bad header reported for a good header"),
    }
    if let Some(e) = &err {
        let _ = e.to_string();
    }
    // The decoder accepts only the canonical form: re-encoding gives the same bytes.
    let mut again = HEADER.to_vec();
    let mut ends = Vec::new();
    for r in &records {
        encode(r, &mut again);
        ends.push(again.len());
    }
    assert_eq!(
        again,
        &image[..valid],
        "records do not re-encode to the bytes they came from"
    );
    // A torn write anywhere in the valid prefix keeps every whole record before the cut.
    if valid > HEADER.len() {
        let cut = HEADER.len() + cut_hint % (valid - HEADER.len());
        let (before, at, why) = decode_all(&image[..cut]);
        let whole = ends.iter().filter(|&&e| e <= cut).count();
        assert_eq!(before.len(), whole, "records lost before a cut at {cut}");
        assert_eq!(before[..], records[..whole]);
        if cut == HEADER.len() || ends.contains(&cut) {
            assert!(why.is_none(), "cut at a record boundary reported {why:?}");
            assert_eq!(at, cut);
        } else {
            assert_eq!(
                why,
                Some(DecodeError::Torn { offset: at }),
                "a cut inside a record is not reported torn"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let cut_hint = data.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let mut raw = HEADER.to_vec();
    raw.extend_from_slice(data);
    check(&raw, cut_hint);
    check(&framed(data), cut_hint);
    // A wrong header is refused before anything else.
    let (recs, at, err) = decode_all(data);
    if !data.starts_with(HEADER) {
        assert!(recs.is_empty() && at == 0 && err == Some(DecodeError::BadHeader));
    }
});
