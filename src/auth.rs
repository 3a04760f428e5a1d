//! Password challenge and check (PROTOCOL.md §2.1, §2.4).
//!
//! With a password set, HI carries `i` (SHA-256 rounds, random in 4000..=8095) and `s` (a salt:
//! lowercase hex of a random 63-bit number). The client answers
//! `hex(SHA256^n(password ++ salt))` with `n = i`, or `n = 1` when its HELLO has no `v` or
//! `v < 2`. The comparison runs in constant time.

use sha2::{Digest, Sha256};
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// Fewest hashing rounds a challenge asks for.
pub const ROUNDS_MIN: u32 = 4000;
/// Spread of the random round count (Faktory: 4000 + [0, 4096)).
pub const ROUNDS_SPREAD: u32 = 4096;

/// What HI tells a client to hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// SHA-256 rounds.
    pub iterations: u32,
    /// Salt text.
    pub salt: String,
}

impl Challenge {
    /// A fresh random challenge.
    pub fn random() -> Challenge {
        let a = random_u64();
        let b = random_u64();
        Challenge {
            iterations: ROUNDS_MIN + (a % u64::from(ROUNDS_SPREAD)) as u32,
            salt: format!("{:x}", b & (i64::MAX as u64)),
        }
    }

    /// The HI line's JSON.
    pub fn hi_json(&self) -> String {
        format!(r#"{{"v":2,"i":{},"s":"{}"}}"#, self.iterations, self.salt)
    }

    /// True when `pwdhash` is the right answer for `password`; `version` is HELLO's `v`.
    pub fn verify(&self, password: &str, version: Option<u8>, pwdhash: Option<&str>) -> bool {
        let rounds = match version {
            Some(v) if v >= 2 => self.iterations,
            _ => 1,
        };
        let expected = hex::encode(hash(password, &self.salt, rounds));
        constant_time_eq(expected.as_bytes(), pwdhash.unwrap_or_default().as_bytes())
    }
}

/// `SHA256^rounds(password ++ salt)`; each round after the first hashes the raw 32-byte digest.
pub fn hash(password: &str, salt: &str, rounds: u32) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(password.as_bytes());
    h.update(salt.as_bytes());
    let mut d: [u8; 32] = h.finalize().into();
    for _ in 1..rounds {
        d = Sha256::digest(d).into();
    }
    d
}

/// 32 random bytes as hex, for the Web UI's CSRF token: from the OS (`/dev/urandom`), read once
/// at startup, or (where that file cannot be read) from the standard library's randomly keyed
/// hasher.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    let from_os = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !from_os {
        for chunk in bytes.chunks_mut(8) {
            chunk.copy_from_slice(&random_u64().to_le_bytes());
        }
    }
    hex::encode(bytes)
}

/// Compares without an early exit, so timing does not reveal how much matched.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A random number from the standard library's per-process random SipHash keys, mixed with a
/// counter so each call differs. Salts need to be unpredictable and unique, not secret.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_test_vectors() {
        assert_eq!(
            hex::encode(hash("foobar", "55104dc76695721d", 1545)),
            "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30"
        );
        assert_eq!(
            hex::encode(hash("foobar", "55104dc76695721d", 1)),
            "bda5ef54df4404655456165c27f46764614a296cdafcaffc747b7ab7cc1ea313"
        );
    }

    #[test]
    fn verify_uses_one_round_below_v2() {
        let c = Challenge {
            iterations: 1545,
            salt: "55104dc76695721d".into(),
        };
        let many = "6d877f8e5544b1f2598768f817413ab8a357afffa924dedae99eb91472d4ec30";
        let one = "bda5ef54df4404655456165c27f46764614a296cdafcaffc747b7ab7cc1ea313";
        assert!(c.verify("foobar", Some(2), Some(many)));
        assert!(!c.verify("foobar", Some(2), Some(one)));
        assert!(c.verify("foobar", None, Some(one)));
        assert!(c.verify("foobar", Some(1), Some(one)));
        assert!(!c.verify("foobar", Some(2), None));
        assert!(!c.verify("wrong", Some(2), Some(many)));
        assert!(!c.verify("foobar", Some(2), Some(&many.to_uppercase())));
    }

    #[test]
    fn random_challenges_are_in_range_and_differ() {
        let a = Challenge::random();
        let b = Challenge::random();
        assert_ne!(a.salt, b.salt);
        for c in [a, b] {
            assert!((4000..=8095).contains(&c.iterations));
            assert!((1..=16).contains(&c.salt.len()));
            assert!(c
                .salt
                .bytes()
                .all(|x| x.is_ascii_hexdigit() && !x.is_ascii_uppercase()));
            assert!(!c.salt.starts_with('0') || c.salt == "0");
            let hi: serde_json::Value = serde_json::from_str(&c.hi_json()).unwrap();
            assert_eq!(hi["v"], 2);
        }
    }
}
