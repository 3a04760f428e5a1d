//! Wall-clock timestamps as Faktory writes and reads them.
//!
//! A [`Timestamp`] is nanoseconds since the Unix epoch, UTC. Faktory writes RFC 3339 in UTC with
//! a `Z` and the fraction trimmed of trailing zeros (`2026-07-01T12:00:03.12Z`), and reads RFC 3339
//! with an optional fraction and any zone (Go's `RFC3339Nano` layout). This module does both by
//! hand with the proleptic Gregorian calendar, so no date crate is needed.

use std::fmt;

const NANOS_PER_SEC: i64 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// Nanoseconds since 1970-01-01T00:00:00Z.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

/// Why a timestamp did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseError(&'static str);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ParseError {}

impl Timestamp {
    /// A timestamp from whole seconds since the epoch.
    pub fn from_secs(secs: i64) -> Timestamp {
        Timestamp(secs.saturating_mul(NANOS_PER_SEC))
    }

    /// Seconds since the epoch as a float (for latencies and sorted-set scores).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / NANOS_PER_SEC as f64
    }

    /// Whole seconds since the epoch (floor).
    pub fn as_secs(self) -> i64 {
        self.0.div_euclid(NANOS_PER_SEC)
    }

    /// This timestamp plus `secs` seconds, saturating.
    pub fn add_secs(self, secs: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(secs.saturating_mul(NANOS_PER_SEC)))
    }

    /// Nanoseconds from `self` until `later` (negative when `later` is earlier).
    pub fn nanos_until(self, later: Timestamp) -> i64 {
        later.0.saturating_sub(self.0)
    }

    fn split(self) -> (i64, u32, u32, u32, u32, u32, u32) {
        let secs = self.0.div_euclid(NANOS_PER_SEC);
        let nanos = self.0.rem_euclid(NANOS_PER_SEC) as u32;
        let days = secs.div_euclid(SECS_PER_DAY);
        let sod = secs.rem_euclid(SECS_PER_DAY) as u32;
        let (y, m, d) = civil_from_days(days);
        (y, m, d, sod / 3600, sod / 60 % 60, sod % 60, nanos)
    }

    /// Appends the RFC 3339 UTC form with trimmed nanoseconds (`...:03.12Z`).
    pub fn write_rfc3339(self, out: &mut String) {
        let mut bytes = Vec::with_capacity(32);
        self.write_rfc3339_bytes(&mut bytes);
        out.push_str(&String::from_utf8_lossy(&bytes));
    }

    /// Appends the RFC 3339 UTC form to a byte buffer (the hot path of job JSON: no
    /// formatting machinery, no allocation).
    pub fn write_rfc3339_bytes(self, out: &mut Vec<u8>) {
        let (y, mo, d, h, mi, s, nanos) = self.split();
        if !(0..=9999).contains(&y) {
            use std::io::Write;
            // Years beyond four digits (saturated far futures): rare, the slow way.
            let _ = write!(out, "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}");
        } else {
            let y = y as u32;
            let two = |out: &mut Vec<u8>, v: u32| {
                out.push(b'0' + (v / 10 % 10) as u8);
                out.push(b'0' + (v % 10) as u8);
            };
            two(out, y / 100);
            two(out, y % 100);
            out.push(b'-');
            two(out, mo);
            out.push(b'-');
            two(out, d);
            out.push(b'T');
            two(out, h);
            out.push(b':');
            two(out, mi);
            out.push(b':');
            two(out, s);
        }
        if nanos != 0 {
            let mut digits = [0u8; 9];
            let mut n = nanos;
            for slot in digits.iter_mut().rev() {
                *slot = b'0' + (n % 10) as u8;
                n /= 10;
            }
            let len = 9 - digits.iter().rev().take_while(|&&c| c == b'0').count();
            out.push(b'.');
            out.extend_from_slice(&digits[..len]);
        }
        out.push(b'Z');
    }

    /// The RFC 3339 UTC form with trimmed nanoseconds.
    pub fn to_rfc3339(self) -> String {
        let mut s = String::with_capacity(32);
        self.write_rfc3339(&mut s);
        s
    }

    /// `HH:MM:SS UTC`, as INFO's `server_utc_time`.
    pub fn hms_utc(self) -> String {
        let (_, _, _, h, mi, s, _) = self.split();
        format!("{h:02}:{mi:02}:{s:02} UTC")
    }

    /// `YYYY-MM-DD` in UTC, the key of daily statistics.
    pub fn date_utc(self) -> String {
        let (y, mo, d, ..) = self.split();
        format!("{y:04}-{mo:02}-{d:02}")
    }

    /// Parses RFC 3339 (`2006-01-02T15:04:05.999999999Z07:00`) with an optional fraction of up
    /// to nine digits and a `Z` or `±hh:mm` zone.
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, ParseError> {
        let b = text.as_bytes();
        let num = |range: std::ops::Range<usize>, what: &'static str| -> Result<u32, ParseError> {
            let digits = b.get(range).ok_or(ParseError(what))?;
            let mut v = 0u32;
            for &c in digits {
                if !c.is_ascii_digit() {
                    return Err(ParseError(what));
                }
                v = v * 10 + u32::from(c - b'0');
            }
            Ok(v)
        };
        let lit = |i: usize, c: &[u8], what: &'static str| -> Result<(), ParseError> {
            match b.get(i) {
                Some(x) if c.contains(x) => Ok(()),
                _ => Err(ParseError(what)),
            }
        };
        let year = num(0..4, "bad year")?;
        lit(4, b"-", "expected '-' after year")?;
        let month = num(5..7, "bad month")?;
        lit(7, b"-", "expected '-' after month")?;
        let day = num(8..10, "bad day")?;
        lit(10, b"Tt", "expected 'T' after date")?;
        let hour = num(11..13, "bad hour")?;
        lit(13, b":", "expected ':' after hour")?;
        let minute = num(14..16, "bad minute")?;
        lit(16, b":", "expected ':' after minute")?;
        let second = num(17..19, "bad second")?;
        if !(1..=12).contains(&month) {
            return Err(ParseError("month out of range"));
        }
        if day == 0 || day > days_in_month(i64::from(year), month) {
            return Err(ParseError("day out of range"));
        }
        if hour > 23 || minute > 59 || second > 59 {
            return Err(ParseError("time out of range"));
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
            i += 1;
            let start = i;
            while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
                if i - start < 9 {
                    nanos = nanos * 10 + i64::from(c - b'0');
                }
                i += 1;
            }
            let digits = i - start;
            if digits == 0 {
                return Err(ParseError("empty fraction"));
            }
            for _ in digits..9 {
                nanos *= 10;
            }
        }
        let offset_secs: i64 = match b.get(i) {
            Some(b'Z') | Some(b'z') => {
                i += 1;
                0
            }
            Some(&sign @ (b'+' | b'-')) => {
                let oh = num(i + 1..i + 3, "bad zone hour")?;
                lit(i + 3, b":", "expected ':' in zone")?;
                let om = num(i + 4..i + 6, "bad zone minute")?;
                if oh > 23 || om > 59 {
                    return Err(ParseError("zone out of range"));
                }
                i += 6;
                let off = i64::from(oh * 3600 + om * 60);
                if sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(ParseError("missing time zone")),
        };
        if i != b.len() {
            return Err(ParseError("extra text after timestamp"));
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs =
            days * SECS_PER_DAY + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
        // Nanoseconds in an i64 cover 1677..2262; RFC 3339 allows years 0000..9999. Times
        // outside the range saturate: a job `at` year 4000 stays scheduled, it never wraps.
        let nanos_total = secs
            .checked_mul(NANOS_PER_SEC)
            .and_then(|n| n.checked_add(nanos))
            .unwrap_or(if secs < 0 { i64::MIN } else { i64::MAX });
        Ok(Timestamp(nanos_total))
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01 (inverse of [`days_from_civil`]).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_trimmed_nanoseconds() {
        let t = Timestamp::parse_rfc3339("2026-07-01T12:00:03.120Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-07-01T12:00:03.12Z");
        let t = Timestamp::parse_rfc3339("2026-07-01T12:00:03Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-07-01T12:00:03Z");
        assert_eq!(Timestamp(1).to_rfc3339(), "1970-01-01T00:00:00.000000001Z");
        assert_eq!(Timestamp(-1).to_rfc3339(), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn parses_zones_and_fractions() {
        let a = Timestamp::parse_rfc3339("2026-07-01T14:00:00+02:00").unwrap();
        let b = Timestamp::parse_rfc3339("2026-07-01T12:00:00Z").unwrap();
        assert_eq!(a, b);
        let c = Timestamp::parse_rfc3339("2026-07-01T12:00:00.5-00:30").unwrap();
        assert_eq!(c.to_rfc3339(), "2026-07-01T12:30:00.5Z");
        assert_eq!(b.as_secs(), 1_782_907_200);
    }

    #[test]
    fn rejects_bad_timestamps() {
        for bad in [
            "",
            "tomorrow",
            "2026-13-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "2026-01-01T24:00:00Z",
            "2026-01-01T00:00:00",
            "2026-01-01T00:00:00.Z",
            "2026-01-01T00:00:00Zjunk",
            "2026-01-01 00:00:00Z",
            "２026-01-01T00:00:00Z",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad:?} parsed");
        }
        assert!(Timestamp::parse_rfc3339("2024-02-29T00:00:00Z").is_ok());
    }

    #[test]
    fn years_beyond_i64_nanoseconds_saturate() {
        // Found by the job_json fuzz target (fuzz/artifacts crash-2af133fb...): an `at` in
        // year 4052 overflowed the nanosecond multiplication.
        let far = Timestamp::parse_rfc3339("4052-07-01T12:30:00.5+02:00").unwrap();
        assert_eq!(far, Timestamp(i64::MAX));
        let far = Timestamp::parse_rfc3339("9999-12-31T23:59:59.999999999Z").unwrap();
        assert_eq!(far, Timestamp(i64::MAX));
        let old = Timestamp::parse_rfc3339("0000-01-01T00:00:00Z").unwrap();
        assert_eq!(old, Timestamp(i64::MIN));
        assert!(Timestamp(i64::MAX).to_rfc3339().starts_with("2262-"));
        assert!(Timestamp(i64::MIN).to_rfc3339().starts_with("1677-"));
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000i64, -1, 0, 1, 59, 365, 10_957, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn helpers() {
        let t = Timestamp::parse_rfc3339("2026-11-28T09:08:07.5Z").unwrap();
        assert_eq!(t.hms_utc(), "09:08:07 UTC");
        assert_eq!(t.date_utc(), "2026-11-28");
        assert_eq!(t.add_secs(60).to_rfc3339(), "2026-11-28T09:09:07.5Z");
    }
}
