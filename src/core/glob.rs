//! Redis glob matching (`SCAN MATCH` rules), used by MUTATE filters over stored job JSON.
//!
//! `*` matches any run, `?` one byte, `[abc]`, `[^a]`, `[a-z]` a byte from a class, and `\x` a
//! literal `x`. The pattern must cover the whole text. Matching is iterative with one
//! backtracking point (the last `*`), so it runs in O(pattern × text) with no recursion: a hostile
//! pattern cannot blow the stack or take exponential time.

/// True when `pattern` matches all of `text`.
pub fn matches(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if let Some(&c) = pattern.get(p) {
            if c == b'*' {
                // Collapse runs of stars and remember where to resume.
                while pattern.get(p) == Some(&b'*') {
                    p += 1;
                }
                if p == pattern.len() {
                    return true;
                }
                star = Some((p, t));
                continue;
            }
            if let Some(next_p) = match_one(pattern, p, text[t]) {
                p = next_p;
                t += 1;
                continue;
            }
        }
        match star {
            Some((sp, st)) => {
                p = sp;
                t = st + 1;
                star = Some((sp, st + 1));
            }
            None => return false,
        }
    }
    while pattern.get(p) == Some(&b'*') {
        p += 1;
    }
    p == pattern.len()
}

/// Matches one pattern token at `p` against byte `b`; returns the index after the token.
fn match_one(pattern: &[u8], p: usize, b: u8) -> Option<usize> {
    match pattern.get(p)? {
        b'?' => Some(p + 1),
        b'\\' if p + 1 < pattern.len() => (pattern[p + 1] == b).then_some(p + 2),
        b'[' => match_class(pattern, p + 1, b),
        &c => (c == b).then_some(p + 1),
    }
}

/// Matches a class that starts after `[`; an unterminated class ends at the pattern's end, as
/// in Redis.
fn match_class(pattern: &[u8], mut p: usize, b: u8) -> Option<usize> {
    let negate = pattern.get(p) == Some(&b'^');
    if negate {
        p += 1;
    }
    let mut hit = false;
    loop {
        match pattern.get(p) {
            None => break,
            Some(b']') => {
                p += 1;
                break;
            }
            Some(b'\\') if p + 1 < pattern.len() => {
                hit |= pattern[p + 1] == b;
                p += 2;
            }
            Some(&lo) if pattern.get(p + 1) == Some(&b'-') && p + 2 < pattern.len() => {
                let hi = pattern[p + 2];
                let (lo, hi) = if lo <= hi { (lo, hi) } else { (hi, lo) };
                hit |= (lo..=hi).contains(&b);
                p += 3;
            }
            Some(&c) => {
                hit |= c == b;
                p += 1;
            }
        }
    }
    (hit != negate).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn redis_glob_table() {
        let table: &[(&str, &str, bool)] = &[
            ("*", "", true),
            ("*", "anything", true),
            ("a*c", "abbbc", true),
            ("a*c", "abbbd", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[abc]x", "bx", true),
            ("[^abc]x", "bx", false),
            ("[^abc]x", "dx", true),
            ("[a-c]", "b", true),
            ("[c-a]", "b", true),
            ("[a-c]", "d", false),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("[\\]]", "]", true),
            (
                "*\"jobtype\":\"Foo\"*",
                r#"{"retry":25,"jobtype":"Foo","args":[]}"#,
                true,
            ),
            (
                "*\"jobtype\":\"Foo\"*",
                r#"{"retry":25,"jobtype":"Foobar","args":[]}"#,
                false,
            ),
            (
                r#"*\"args\":\[\"test\"\]*"#,
                r#"{"jid":"x","args":["test"]}"#,
                true,
            ),
            ("abc", "abcd", false),
            ("abc*", "abc", true),
            ("[abc", "b", true),
        ];
        for &(p, t, want) in table {
            assert_eq!(matches(p.as_bytes(), t.as_bytes()), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn hostile_pattern_is_fast() {
        let text = vec![b'a'; 10_000];
        let mut pat = b"*a".repeat(50);
        pat.push(b'b');
        assert!(!matches(&pat, &text));
    }
}
