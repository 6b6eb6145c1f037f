//! Go's `time.ParseDuration`, byte for byte: the grammar `[-+]?([0-9]*(\.[0-9]*)?[a-z]+)+`,
//! the special case `"0"`, the units `ns us µs μs ms s m h`, the same overflow limits and the
//! same error texts, so a config file that Go LiteFS accepts (or rejects) behaves the same here.

use std::fmt;
use std::time::Duration;

/// A Go `time.Duration`: signed nanoseconds. Kept signed so that `-1.5h` parses and the caller
/// decides what a negative value means for its key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GoDuration {
    pub nanos: i64,
}

/// Why a duration did not parse. `Display` is Go's message exactly.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Syntax error or overflow, e.g. `time: invalid duration "1.2.3s"`.
    #[error("time: invalid duration {}", GoQuoted(.input))]
    Invalid { input: String },
    /// A number without a unit, e.g. `time: missing unit in duration "10"`.
    #[error("time: missing unit in duration {}", GoQuoted(.input))]
    MissingUnit { input: String },
    /// e.g. `time: unknown unit "x" in duration "10x"`.
    #[error("time: unknown unit {} in duration {}", GoQuoted(.unit), GoQuoted(.input))]
    UnknownUnit { unit: String, input: String },
}

/// Nanoseconds per unit; `µ` (U+00B5 micro sign) and `μ` (U+03BC Greek mu) are both accepted.
fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3_600 * 1_000_000_000,
        _ => return None,
    })
}

/// 2^63: the magnitude limit Go checks against (the negative range reaches it, the positive
/// range stops one below).
const LIMIT: u64 = 1 << 63;

impl GoDuration {
    /// Parses Go duration text (`300ms`, `-1.5h`, `2h45m`, `1µs`, `0`).
    pub fn parse(input: &str) -> Result<GoDuration, DurationError> {
        let invalid = || DurationError::Invalid {
            input: input.to_string(),
        };
        let mut s = input.as_bytes();
        let mut negative = false;
        if let Some((&sign @ (b'-' | b'+'), rest)) = s.split_first() {
            negative = sign == b'-';
            s = rest;
        }
        if s == b"0" {
            return Ok(GoDuration { nanos: 0 });
        }
        if s.is_empty() {
            return Err(invalid());
        }
        let mut total: u64 = 0;
        while !s.is_empty() {
            if !(s[0] == b'.' || s[0].is_ascii_digit()) {
                return Err(invalid());
            }
            let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
            let had_whole = rest.len() != s.len();
            s = rest;
            let (mut fraction, mut scale, mut had_fraction) = (0, 1.0, false);
            if let Some((b'.', rest)) = s.split_first() {
                let (f, sc, rest2) = leading_fraction(rest);
                had_fraction = rest2.len() != rest.len();
                (fraction, scale, s) = (f, sc, rest2);
            }
            if !had_whole && !had_fraction {
                return Err(invalid()); // e.g. ".s" or "-.s"
            }
            let unit_len = s
                .iter()
                .position(|&c| c == b'.' || c.is_ascii_digit())
                .unwrap_or(s.len());
            if unit_len == 0 {
                return Err(DurationError::MissingUnit {
                    input: input.to_string(),
                });
            }
            let (unit, rest) = s.split_at(unit_len);
            s = rest;
            let unit_text = String::from_utf8_lossy(unit);
            let Some(per_unit) = unit_nanos(&unit_text) else {
                return Err(DurationError::UnknownUnit {
                    unit: unit_text.into_owned(),
                    input: input.to_string(),
                });
            };
            if whole > LIMIT / per_unit {
                return Err(invalid());
            }
            let mut value = whole * per_unit;
            if fraction > 0 {
                // Go uses float64 here; the product is at most 3.6e12 (one hour in ns), so the
                // conversion cannot saturate and matches Go's truncation.
                value += (fraction as f64 * (per_unit as f64 / scale)) as u64;
                if value > LIMIT {
                    return Err(invalid());
                }
            }
            // Go lets this sum wrap in one absurd corner (2^63 + 2^63); we report it instead.
            total = total.checked_add(value).ok_or_else(invalid)?;
            if total > LIMIT {
                return Err(invalid());
            }
        }
        if negative {
            // total <= 2^63, so the two's-complement negation is exact (2^63 -> i64::MIN).
            return Ok(GoDuration {
                nanos: (total as i64).wrapping_neg(),
            });
        }
        let nanos = i64::try_from(total).map_err(|_| invalid())?;
        Ok(GoDuration { nanos })
    }

    /// The value as a `std::time::Duration`, or `None` if it is negative.
    pub fn to_std(self) -> Option<Duration> {
        u64::try_from(self.nanos).ok().map(Duration::from_nanos)
    }

    pub fn is_negative(self) -> bool {
        self.nanos < 0
    }
}

/// Consumes leading ASCII digits; `None` on overflow past 2^63 (Go's `errLeadingInt`).
fn leading_int(s: &[u8]) -> Option<(u64, &[u8])> {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let mut x: u64 = 0;
    for &c in &s[..digits] {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(c - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[digits..]))
}

/// Consumes leading digits after a `.`; on overflow it stops adding precision (Go does the
/// same) instead of failing. Returns (digits as an integer, 10^digits kept, rest).
fn leading_fraction(s: &[u8]) -> (u64, f64, &[u8]) {
    let digits = s.iter().take_while(|c| c.is_ascii_digit()).count();
    let (mut x, mut scale, mut overflow) = (0u64, 1.0f64, false);
    for &c in &s[..digits] {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(c - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[digits..])
}

/// Go's `time.quote`: double quotes, `"` and `\` escaped, control and non-ASCII characters
/// written as `\xNN` per UTF-8 byte. Used so error texts equal Go's.
struct GoQuoted<'a>(&'a str);

impl fmt::Display for GoQuoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"")?;
        for c in self.0.chars() {
            if c < ' ' || !c.is_ascii() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    write!(f, "\\x{b:02x}")?;
                }
            } else {
                if c == '"' || c == '\\' {
                    f.write_str("\\")?;
                }
                write!(f, "{c}")?;
            }
        }
        f.write_str("\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    #[test]
    fn parses_go_test_table() {
        // Mostly Go's own `parseDurationTests`.
        let table: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12µs", 12 * US),
            ("12μs", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52763797000 * NS),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + NS),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            ("0.830103483285477580700h", 49 * M + 48 * S + 372539827 * NS),
            ("300ms", 300 * MS),
            ("-1.5h", -(H + 30 * M)),
            ("2h45m", 2 * H + 45 * M),
            ("1m30s", 90 * S),
            ("1us", US),
        ];
        for &(input, nanos) in table {
            assert_eq!(
                GoDuration::parse(input),
                Ok(GoDuration { nanos }),
                "{input}"
            );
        }
    }

    #[test]
    fn rejects_with_go_messages() {
        let table: &[(&str, &str)] = &[
            ("", r#"time: invalid duration """#),
            ("3", r#"time: missing unit in duration "3""#),
            ("-", r#"time: invalid duration "-""#),
            ("s", r#"time: invalid duration "s""#),
            (".", r#"time: invalid duration ".""#),
            ("-.", r#"time: invalid duration "-.""#),
            (".s", r#"time: invalid duration ".s""#),
            ("+.s", r#"time: invalid duration "+.s""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("10x", r#"time: unknown unit "x" in duration "10x""#),
            ("10 s", r#"time: unknown unit " s" in duration "10 s""#),
            // After "1.2" the unit scan stops at the second "." at once: Go says "missing unit".
            ("1.2.3s", r#"time: missing unit in duration "1.2.3s""#),
            ("10s ", r#"time: unknown unit "s " in duration "10s ""#),
            (" 10s", r#"time: invalid duration " 10s""#),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            (
                "9223372036854775.808us",
                r#"time: invalid duration "9223372036854775.808us""#,
            ),
            (
                "-9223372036854775809ns",
                r#"time: invalid duration "-9223372036854775809ns""#,
            ),
            ("3000000h", r#"time: invalid duration "3000000h""#),
            (
                "9223372036854775807ns1ns",
                r#"time: invalid duration "9223372036854775807ns1ns""#,
            ),
            ("\u{1}1s", r#"time: invalid duration "\x011s""#),
            (
                "1\u{e9}",
                r#"time: unknown unit "\xc3\xa9" in duration "1\xc3\xa9""#,
            ),
            ("1\"", r#"time: unknown unit "\"" in duration "1\"""#),
        ];
        for &(input, message) in table {
            let err = GoDuration::parse(input).expect_err(input);
            assert_eq!(err.to_string(), message, "{input:?}");
        }
    }

    #[test]
    fn converts_to_std() {
        assert_eq!(
            GoDuration::parse("1m30s").unwrap().to_std(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(GoDuration::parse("-1ns").unwrap().to_std(), None);
        assert!(GoDuration::parse("-1ns").unwrap().is_negative());
    }

    #[test]
    fn never_panics_on_odd_input() {
        // A deterministic walk over short strings of duration-ish characters.
        let alphabet: Vec<char> = "0123456789.-+nsuµμmh x".chars().collect();
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 12) as usize;
            let text: String = (0..len)
                .map(|i| alphabet[((seed >> (i * 5)) as usize) % alphabet.len()])
                .collect();
            let _ = GoDuration::parse(&text);
        }
    }
}
