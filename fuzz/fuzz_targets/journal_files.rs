//! Recovery from a data directory of arbitrary bytes (journal::files, journal::read).
//!
//! The input becomes either a journal file or a snapshot plus a journal (split at a fuzzer chosen
//! point), written to a fresh directory. The journal gets the version 3 or 2 header (batches closed
//! by commit markers) or the version 1 header (record by record); with batches the harness may
//! insert a valid marker after every k-th whole record, since the fuzzer cannot forge their
//! checksums, so that the batch rules (whole batches only, an unfinished last batch cut whole, a
//! marker naming the wrong start refused) are reached. With the hole bit, a journal of two or more
//! whole batches also gets one sector zeroed (the fuzzer picks which), as a power cut leaves it: in
//! the last batch, recovery must cut exactly that batch and keep the records of the others; in an
//! earlier batch (another batch follows it), it must refuse and change nothing when the markers say
//! each batch was written after the one before it was durable (`--sync always`), and cut that batch
//! and every later one when they say it was not (`everysec`, `none`; another framing bit picks
//! which), there for any sector after the header's, across batch boundaries or not: cut where the
//! batch holding the first byte the hole changed began. Version 2 and 3 headers frame the same
//! batches. Recovery must never panic; in read-only mode it must change nothing; every record it
//! hands over must be one that the in-memory decoder finds in the same bytes (the streaming reader
//! and `decode_all` agree on the journal's records up to where either stops); and a repair followed
//! by a second recovery must succeed cleanly with the same records and no further cut. Zeros after
//! the data are free space (the writer preallocates them): a journal that recovered with nothing
//! cut recovers the same records, with nothing cut, when zeros follow it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::sync::atomic::{AtomicU64, Ordering};
use werk::core::record::Record;
use werk::journal::files::{journal_name, recover, Mode, RecoverError, Recovered, SNAPSHOT_FILE};
use werk::journal::record::{
    decode_all, decode_item, encode_commit_in, Item, Order, HEADER, HEADER_V1, HEADER_V2,
    SNAPSHOT_HEADER,
};

static N: AtomicU64 = AtomicU64::new(0);

/// Recovers `dir` in `mode`: the outcome, and the records handed over (before any error).
fn recovered(dir: &std::path::Path, mode: Mode) -> (Result<Recovered, RecoverError>, Vec<Record>) {
    let mut records = Vec::new();
    let found = recover(dir, mode, None, &mut |r| {
        records.push(r.clone());
        Ok(())
    });
    (found, records)
}

/// `bytes` (after a header) with a commit marker of `order` after every `every`-th whole record,
/// each naming where its batch began; the bytes after the last whole record are kept as they
/// are.
fn with_markers(header_len: usize, bytes: &[u8], every: usize, order: Order) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut pos, mut batch_start, mut in_batch) = (0, header_len as u64, 0);
    while let Ok(Some((Item::Record(_), used))) = decode_item(&bytes[pos..]) {
        out.extend_from_slice(&bytes[pos..pos + used]);
        pos += used;
        in_batch += 1;
        if in_batch == every {
            encode_commit_in(batch_start, order, &mut out);
            batch_start = (header_len + out.len()) as u64;
            in_batch = 0;
        }
    }
    out.extend_from_slice(&bytes[pos..]);
    out
}

/// Where each whole batch of a clean image made of batches ends.
fn batch_ends(image: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut pos = HEADER.len();
    while let Ok(Some((item, used))) = decode_item(&image[pos..]) {
        pos += used;
        if matches!(item, Item::Commit { .. }) {
            ends.push(pos);
        }
    }
    ends
}

/// The power-cut invariants on a copy of `image` (whole batches only) with one sector zeroed.
fn check_holes(dir: &std::path::Path, image: &[u8], pick: u8, order: Order) {
    let ends = batch_ends(image);
    let n = ends.len();
    if n < 2 {
        return;
    }
    let write = |bytes: &[u8]| {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).unwrap();
        let mut padded = bytes.to_vec();
        padded.resize(bytes.len() + 4096, 0);
        std::fs::write(dir.join(journal_name(1)), &padded).unwrap();
        padded
    };
    // In the last batch: any sector it meets, clipped to its bytes.
    let (start, end) = (ends[n - 2], ends[n - 1]);
    let sectors = (end - 1) / 512 - start / 512 + 1;
    let s = (start / 512 + usize::from(pick) % sectors) * 512;
    let hole = s.max(start)..(s + 512).min(end);
    if image[hole.clone()].iter().all(|&b| b == 0) {
        // Zeros in a record already (a queue name of NULs): no hole to make.
        return;
    }
    // Recovery of the damaged image must keep exactly the batches before `at`, and leave a
    // journal that a second start reads whole.
    let cut_at = |damaged: &[u8], at: usize, what: &str| {
        write(damaged);
        let (found, seen) = recovered(dir, Mode::Repair);
        let found = found.unwrap_or_else(|e| panic!("{what} refused: {e}"));
        assert_eq!(
            seen,
            decode_all(&image[..at]).0,
            "{what}: not cut at byte {at}"
        );
        assert_eq!(found.journal_bytes, at as u64);
        let (again, same) = recovered(dir, Mode::Repair);
        assert!(again.expect("a repaired journal recovers").notes.is_empty());
        assert_eq!(same, seen);
    };
    let mut torn = image.to_vec();
    torn[hole].fill(0);
    cut_at(&torn, start, "a hole in the last batch");
    match order {
        // In an earlier batch, a sector wholly inside it (when it has one): refused.
        Order::AfterDurable => {
            let k = usize::from(pick) % (n - 1);
            let (from, to) = (if k == 0 { HEADER.len() } else { ends[k - 1] }, ends[k]);
            let s = from.next_multiple_of(512);
            if s + 512 <= to && image[s..s + 512].iter().any(|&b| b != 0) {
                let mut damaged = image.to_vec();
                damaged[s..s + 512].fill(0);
                let padded = write(&damaged);
                let (found, _) = recovered(dir, Mode::Repair);
                assert!(
                    found.is_err(),
                    "a hole before the last batch was not refused"
                );
                assert_eq!(std::fs::read(dir.join(journal_name(1))).unwrap(), padded);
            }
        }
        // Any sector after the header's, across batch boundaries or not: cut where the batch
        // holding the first byte it changed began.
        Order::Unsynced => {
            let sectors = image.len().div_ceil(512);
            if sectors < 2 {
                return;
            }
            let s = (1 + usize::from(pick) % (sectors - 1)) * 512;
            let hole = s..(s + 512).min(image.len());
            let Some(first) = hole.clone().find(|&i| image[i] != 0) else {
                return;
            };
            let k = ends
                .iter()
                .position(|&e| e > first)
                .expect("the hole is in a batch");
            let from = if k == 0 { HEADER.len() } else { ends[k - 1] };
            let mut damaged = image.to_vec();
            damaged[hole].fill(0);
            cut_at(
                &damaged,
                from,
                &format!("a hole at {s} before unsynced batches"),
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, data)) = data.split_first() else {
        return;
    };
    let Some((&framing, data)) = data.split_first() else {
        return;
    };
    let Some((&pick, data)) = data.split_first() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!(
        "werk-fuzz-files-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // Half the inputs get valid headers so the fuzzer reaches the records.
    let with_headers = mode & 1 == 1;
    let (snap, journal) = if mode & 2 == 2 {
        let at = usize::from(mode >> 2) * data.len() / 64;
        let at = at.min(data.len());
        (Some(&data[..at]), &data[at..])
    } else {
        (None, data)
    };
    let jpath = dir.join(journal_name(1));
    let header = match (framing & 1, framing & 0x40) {
        (1, _) => HEADER_V1,
        (_, 0) => HEADER,
        _ => HEADER_V2,
    };
    let mut jbytes = if with_headers {
        header.to_vec()
    } else {
        Vec::new()
    };
    let order = if framing & 0x20 == 0 {
        Order::AfterDurable
    } else {
        Order::Unsynced
    };
    if framing & 2 == 2 && with_headers {
        let every = usize::from(framing >> 2) % 4 + 1;
        jbytes.extend(with_markers(header.len(), journal, every, order));
    } else {
        jbytes.extend_from_slice(journal);
    }
    std::fs::write(&jpath, &jbytes).unwrap();
    if let Some(s) = snap {
        let mut sbytes = if with_headers {
            SNAPSHOT_HEADER.to_vec()
        } else {
            Vec::new()
        };
        sbytes.extend_from_slice(s);
        std::fs::write(dir.join(SNAPSHOT_FILE), &sbytes).unwrap();
    }

    let (read_only, seen) = recovered(&dir, Mode::ReadOnly);
    assert_eq!(
        std::fs::read(&jpath).unwrap(),
        jbytes,
        "read-only recovery changed the journal"
    );
    if snap.is_none() {
        // The streaming reader agrees with the in-memory decoder on the journal's records.
        let (records, _, _) = decode_all(&jbytes);
        let n = seen.len().min(records.len());
        assert_eq!(seen[..n], records[..n]);
        if read_only.is_ok() {
            assert_eq!(seen, records, "recovery and decode_all disagree");
        }
    }
    if snap.is_none() && read_only.as_ref().is_ok_and(|f| f.notes.is_empty()) {
        let padded_dir = dir.with_extension("zeros");
        let _ = std::fs::remove_dir_all(&padded_dir);
        std::fs::create_dir_all(&padded_dir).unwrap();
        let mut padded = jbytes.clone();
        padded.resize(jbytes.len() + 1 + usize::from(mode) * 16, 0);
        std::fs::write(padded_dir.join(journal_name(1)), &padded).unwrap();
        let (found, again) = recovered(&padded_dir, Mode::ReadOnly);
        let found = found.expect("zeros after a clean journal are free space");
        assert!(found.notes.is_empty(), "zeros cut: {:?}", found.notes);
        assert_eq!(again, seen, "zeros changed what recovers");
        let _ = std::fs::remove_dir_all(&padded_dir);
    }
    if framing & 0x13 == 0x12 && with_headers && snap.is_none() {
        let valid = decode_all(&jbytes).1;
        check_holes(&dir.with_extension("holes"), &jbytes[..valid], pick, order);
    }
    let (first, repaired) = recovered(&dir, Mode::Repair);
    if first.is_ok() {
        let (second, again) = recovered(&dir, Mode::Repair);
        let second = second.expect("a repaired directory recovers");
        assert!(
            second.notes.is_empty(),
            "a second repair cut again: {:?}",
            second.notes
        );
        assert_eq!(again, repaired, "repair changed what recovers");
    }
    let _ = std::fs::remove_dir_all(&dir);
});
