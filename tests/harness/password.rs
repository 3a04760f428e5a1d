//! The password challenge (PROTOCOL.md §2.4), answered as a client does: written from the
//! protocol, not from `werk::auth`, so that a test that logs in checks werk against the protocol
//! rather than against itself (`tests/protocol.rs` checks it against Faktory's reference
//! vectors). Included by both test harnesses (`tests/harness` and `tests/common`).

/// `lowercase_hex(SHA256^rounds(password ++ salt))`.
pub fn pwdhash(password: &str, salt: &str, rounds: u64) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(password.as_bytes());
    h.update(salt.as_bytes());
    let mut d = h.finalize();
    for _ in 1..rounds {
        d = Sha256::digest(d);
    }
    hex::encode(d)
}
