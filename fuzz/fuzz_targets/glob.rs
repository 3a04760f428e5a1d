//! core::glob::matches, the Redis glob behind MUTATE's `regexp` filter.
//!
//! Checks: it never panics; a pattern with no special byte (`* ? [ ] \`) matches exactly the
//! equal text; a pattern that escapes every byte of a string matches exactly that string; and
//! the answer always equals a slow reference matcher (tokenize the same way, then dynamic
//! programming over pattern tokens × text), which checks the single-backtrack-point algorithm.
#![no_main]

use libfuzzer_sys::fuzz_target;
use werk::core::glob::matches;

fn is_special(b: u8) -> bool {
    matches!(b, b'*' | b'?' | b'[' | b']' | b'\\')
}

/// One pattern token, as the matcher reads it.
#[derive(Debug)]
enum Token {
    Star,
    /// Matches one byte for which the table is true.
    One(Box<[bool; 256]>),
}

/// Splits a pattern into tokens with the matcher's rules: `?`; `\x` (a lone trailing `\` is a
/// literal); `[...]` with `^`, `\x` and `a-z` (reversed ranges allowed, unterminated classes end
/// at the pattern's end); anything else is a literal.
fn tokenize(p: &[u8]) -> Vec<Token> {
    let mut out = Vec::new();
    let mut i = 0;
    let single = |b: u8| {
        let mut t = Box::new([false; 256]);
        t[usize::from(b)] = true;
        t
    };
    while i < p.len() {
        match p[i] {
            b'*' => {
                out.push(Token::Star);
                i += 1;
            }
            b'?' => {
                out.push(Token::One(Box::new([true; 256])));
                i += 1;
            }
            b'\\' if i + 1 < p.len() => {
                out.push(Token::One(single(p[i + 1])));
                i += 2;
            }
            b'[' => {
                let mut j = i + 1;
                let negate = p.get(j) == Some(&b'^');
                if negate {
                    j += 1;
                }
                let mut set = Box::new([false; 256]);
                loop {
                    match p.get(j) {
                        None => break,
                        Some(b']') => {
                            j += 1;
                            break;
                        }
                        Some(b'\\') if j + 1 < p.len() => {
                            set[usize::from(p[j + 1])] = true;
                            j += 2;
                        }
                        Some(&lo) if p.get(j + 1) == Some(&b'-') && j + 2 < p.len() => {
                            let hi = p[j + 2];
                            let (lo, hi) = (lo.min(hi), lo.max(hi));
                            for b in lo..=hi {
                                set[usize::from(b)] = true;
                            }
                            j += 3;
                        }
                        Some(&c) => {
                            set[usize::from(c)] = true;
                            j += 1;
                        }
                    }
                }
                if negate {
                    for v in set.iter_mut() {
                        *v = !*v;
                    }
                }
                out.push(Token::One(set));
                i = j;
            }
            c => {
                out.push(Token::One(single(c)));
                i += 1;
            }
        }
    }
    out
}

/// Whole-text match by dynamic programming: dp[j] = tokens so far match text[..j].
fn reference(pattern: &[u8], text: &[u8]) -> bool {
    let tokens = tokenize(pattern);
    let mut dp = vec![false; text.len() + 1];
    dp[0] = true;
    for tok in &tokens {
        let mut next = vec![false; text.len() + 1];
        match tok {
            Token::Star => {
                let mut any = false;
                for j in 0..=text.len() {
                    any |= dp[j];
                    next[j] = any;
                }
            }
            Token::One(set) => {
                for j in 0..text.len() {
                    if dp[j] && set[usize::from(text[j])] {
                        next[j + 1] = true;
                    }
                }
            }
        }
        dp = next;
    }
    dp[text.len()]
}

fn escape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() * 2);
    for &b in s {
        out.push(b'\\');
        out.push(b);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    // Byte 0 says where the pattern ends; the rest is the text.
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n).min(rest.len());
    let (pattern, text) = rest.split_at(n);
    let text = &text[..text.len().min(2048)];

    let got = matches(pattern, text);
    if !pattern.iter().copied().any(is_special) {
        assert_eq!(
            got,
            pattern == text,
            "literal pattern {pattern:?} vs {text:?}"
        );
    }
    assert_eq!(
        got,
        reference(pattern, text),
        "pattern {:?} text {:?}",
        String::from_utf8_lossy(pattern),
        String::from_utf8_lossy(text)
    );
    assert!(
        matches(&escape(text), text),
        "escaped text does not match itself"
    );
    assert_eq!(matches(&escape(pattern), text), pattern == text);
    // A star on each side finds the pattern anywhere, as the MUTATE filters use it.
    let mut star = b"*".to_vec();
    star.extend_from_slice(pattern);
    star.push(b'*');
    assert_eq!(matches(&star, text), reference(&star, text));
});
