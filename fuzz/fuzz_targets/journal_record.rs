//! The journal's record format (journal::record): decoding untrusted file bytes.
//!
//! Images are built from the input under each header: the raw bytes after the header (most die at
//! the checksum), and the same bytes cut into frames whose length and CRC-32 are made right, so the
//! fuzzer reaches the body decoder; under the version 3 and 2 headers, with a commit marker after
//! every k-th frame (k from the input), since the fuzzer cannot forge a marker's checksum. For each
//! image: decode_all never panics and never reads past the image; the items of the valid prefix
//! re-encode to exactly its bytes, and the records it returns are the records among them (with
//! versions 2 and 3: of whole batches only); and cutting the valid prefix anywhere (a torn write)
//! keeps exactly the records of whole batches (version 1: whole records) before the cut, and is
//! reported as torn or unfinished, never as corrupt.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::journal::record::{
    decode_all, decode_item, encode, encode_commit_in, DecodeError, Item, Order, HEADER, HEADER_V1,
    HEADER_V2,
};

/// Frames `data` as records: each frame is `kind:u8 n:u8` then up to `n` body bytes; with
/// `every`, a marker closes each run of that many frames (of either order, by the last frame's
/// kind).
fn framed(header: &[u8; 8], data: &[u8], every: Option<usize>) -> Vec<u8> {
    let mut image = header.to_vec();
    let mut rest = data;
    let (mut batch_start, mut in_batch) = (image.len() as u64, 0);
    while let [kind, n, tail @ ..] = rest {
        let n = usize::from(*n).min(tail.len());
        let mut body = vec![*kind];
        body.extend_from_slice(&tail[..n]);
        image.extend_from_slice(&(body.len() as u32).to_le_bytes());
        image.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        image.extend_from_slice(&body);
        rest = &tail[n..];
        in_batch += 1;
        if every == Some(in_batch) {
            let order = if kind & 1 == 0 {
                Order::AfterDurable
            } else {
                Order::Unsynced
            };
            encode_commit_in(batch_start, order, &mut image);
            batch_start = image.len() as u64;
            in_batch = 0;
        }
    }
    image
}

/// Where each batch of `image[8..valid]` ends (version 1: each item), and the records that
/// count: for versions 2 and 3 those a marker closed, for version 1 all. Asserts that the items
/// re-encode to exactly those bytes.
fn items(image: &[u8], valid: usize) -> (Vec<usize>, Vec<werk::core::record::Record>) {
    let batches = image.starts_with(HEADER) || image.starts_with(HEADER_V2);
    let (mut again, mut ends, mut counted, mut pending) =
        (image[..8].to_vec(), vec![], vec![], vec![]);
    let mut pos = 8;
    while pos < valid {
        let (item, used) = match decode_item(&image[pos..valid]) {
            Ok(Some(found)) => found,
            other => panic!("the valid prefix does not decode at {pos}: {other:?}"),
        };
        match item {
            Item::Record(r) => {
                encode(&r, &mut again);
                pending.push(r);
                if !batches {
                    counted.append(&mut pending);
                }
            }
            Item::Commit { start, order } => {
                encode_commit_in(start, order, &mut again);
                counted.append(&mut pending);
            }
            Item::SnapshotEnd { .. } => panic!("a snapshot trailer in the valid prefix"),
        }
        pos += used;
        if pending.is_empty() {
            ends.push(pos);
        }
    }
    assert_eq!(
        again,
        &image[..valid],
        "items do not re-encode to the bytes they came from"
    );
    assert!(pending.is_empty(), "the valid prefix ends inside a batch");
    (ends, counted)
}

fn check(image: &[u8], cut_hint: usize) {
    let (records, valid, err) = decode_all(image);
    assert!(valid >= HEADER.len() && valid <= image.len());
    match &err {
        None => assert_eq!(valid, image.len(), "clean decode stopped early"),
        Some(DecodeError::Unfinished { offset }) => assert_eq!(*offset, valid),
        Some(DecodeError::Torn { offset }) | Some(DecodeError::Corrupt { offset, .. }) => {
            assert!(*offset >= valid && *offset <= image.len())
        }
        Some(DecodeError::BadHeader) => panic!("bad header reported for a good header"),
    }
    if let Some(e) = &err {
        let _ = e.to_string();
    }
    // The decoder accepts only the canonical form, and counts whole batches only.
    let (ends, counted) = items(image, valid);
    assert_eq!(records, counted);
    // A torn write anywhere in the valid prefix keeps every whole batch before the cut.
    if valid > HEADER.len() {
        let cut = HEADER.len() + cut_hint % (valid - HEADER.len());
        let (before, at, why) = decode_all(&image[..cut]);
        let boundary = ends
            .iter()
            .copied()
            .filter(|&e| e <= cut)
            .max()
            .unwrap_or(8);
        let (_, kept) = items(image, boundary);
        assert_eq!(before, kept, "records lost before a cut at {cut}");
        assert_eq!(at, boundary);
        if cut == boundary {
            assert!(why.is_none(), "cut at a batch boundary reported {why:?}");
        } else {
            assert!(
                matches!(
                    why,
                    Some(DecodeError::Torn { .. } | DecodeError::Unfinished { .. })
                ),
                "a cut inside a batch is reported {why:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let cut_hint = data.iter().fold(0usize, |h, &b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    let every = usize::from(data.first().copied().unwrap_or(0) % 4) + 1;
    for header in [HEADER, HEADER_V2, HEADER_V1] {
        let mut raw = header.to_vec();
        raw.extend_from_slice(data);
        check(&raw, cut_hint);
        check(&framed(header, data, None), cut_hint);
    }
    check(&framed(HEADER, data, Some(every)), cut_hint);
    check(&framed(HEADER_V2, data, Some(every)), cut_hint);
    // A wrong header is refused before anything else.
    let (recs, at, err) = decode_all(data);
    if ![HEADER, HEADER_V2, HEADER_V1]
        .iter()
        .any(|h| data.starts_with(*h))
    {
        assert!(recs.is_empty() && at == 0 && err == Some(DecodeError::BadHeader));
    }
});
