//! Go duration strings, the wire form of `cacheDuration` (`metav1.Duration`).
//!
//! The kubelet parses `cacheDuration` with Go's `time.ParseDuration`, so a bare
//! number of seconds (`"300"`) is invalid while `"300s"`, `"5m"`, `"1h30m"` and
//! `"0"` are valid. [`format()`] writes what Go's `Duration.String` writes
//! (`"6h0m0s"`, `"1.5s"`, `"250ms"`), and [`parse`] accepts what
//! `time.ParseDuration` accepts, except negative durations, which mean nothing for
//! a cache.

use std::time::Duration;

/// The longest duration Go can represent: `i64::MAX` nanoseconds (about 292 years).
pub const MAX: Duration = Duration::new(9_223_372_036, 854_775_807);

/// A string that is not a valid Go duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The text does not follow `[0-9]*(\.[0-9]*)?unit`, repeated.
    #[error("invalid duration {input:?}: expected a Go duration such as 300s, 5m or 1h30m")]
    Invalid {
        /// The rejected text.
        input: String,
    },
    /// A number is not followed by a unit (`"300"`).
    #[error("missing unit in duration {input:?}: use one of ns, us, ms, s, m, h (e.g. 300s)")]
    MissingUnit {
        /// The rejected text.
        input: String,
    },
    /// An unknown unit (`"5d"`).
    #[error("unknown unit {unit:?} in duration {input:?}: use one of ns, us, ms, s, m, h")]
    UnknownUnit {
        /// The rejected text.
        input: String,
        /// The unit that is not known.
        unit: String,
    },
    /// A negative duration.
    #[error("negative duration {input:?}")]
    Negative {
        /// The rejected text.
        input: String,
    },
    /// More than [`MAX`].
    #[error("duration {input:?} is out of range (more than about 292 years)")]
    Overflow {
        /// The rejected text.
        input: String,
    },
}

/// Result of parsing a duration.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Formats a duration as Go's `time.Duration.String` does: `"0s"`, `"250ms"`,
/// `"1.5s"`, `"6h0m0s"`. Durations above [`MAX`] are written as [`MAX`].
pub fn format(duration: Duration) -> String {
    let nanos = duration.min(MAX).as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        // Below one second Go picks the largest unit that keeps an integer part.
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", fixed(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = (nanos / 60_000_000_000) % 60;
    let seconds = fixed(nanos % 60_000_000_000, 1_000_000_000);
    if hours > 0 {
        format!("{hours}h{minutes}m{seconds}s")
    } else if minutes > 0 {
        format!("{minutes}m{seconds}s")
    } else {
        format!("{seconds}s")
    }
}

/// `value / scale` with the fraction written without trailing zeros.
fn fixed(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let fraction = value % scale;
    if fraction == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{fraction:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a Go duration string as `time.ParseDuration` does: `"300s"`, `"5m"`,
/// `"1h30m"`, `"1.5h"`, `"250ms"`, `"0"`. Negative durations are rejected.
pub fn parse(input: &str) -> Result<Duration> {
    let invalid = || Error::Invalid {
        input: input.to_owned(),
    };
    let mut rest = input;
    let negative = match rest.as_bytes().first() {
        Some(b'-') => {
            rest = &rest[1..];
            true
        }
        Some(b'+') => {
            rest = &rest[1..];
            false
        }
        _ => false,
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        // The integer part.
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_digits = &rest[..int_len];
        rest = &rest[int_len..];
        // The fraction.
        let mut frac_digits = "";
        if let Some(after) = rest.strip_prefix('.') {
            let frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            frac_digits = &after[..frac_len];
            rest = &after[frac_len..];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            // "", ".", ".s": no digits at all.
            return Err(invalid());
        }
        // The unit runs up to the next digit or point.
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u128 = match unit {
            "" => {
                return Err(Error::MissingUnit {
                    input: input.to_owned(),
                });
            }
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            other => {
                return Err(Error::UnknownUnit {
                    input: input.to_owned(),
                    unit: other.to_owned(),
                });
            }
        };
        let overflow = || Error::Overflow {
            input: input.to_owned(),
        };
        let whole: u128 = if int_digits.is_empty() {
            0
        } else {
            int_digits.parse().map_err(|_| overflow())?
        };
        let mut value = whole.checked_mul(scale).ok_or_else(overflow)?;
        // Go keeps the fraction's digits while they can matter, then truncates.
        let mut fraction_scale = scale;
        for digit in frac_digits.bytes() {
            fraction_scale /= 10;
            if fraction_scale == 0 {
                break;
            }
            value += u128::from(digit - b'0') * fraction_scale;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > MAX.as_nanos() {
            return Err(overflow());
        }
    }
    if negative && total > 0 {
        return Err(Error::Negative {
            input: input.to_owned(),
        });
    }
    let nanos = u64::try_from(total).map_err(|_| invalid())?;
    Ok(Duration::from_nanos(nanos))
}

/// `serde` support for `Option<Duration>` as an optional Go duration string.
pub(crate) mod serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(duration) => serializer.serialize_str(&super::format(*duration)),
            None => serializer.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(deserializer)? {
            Some(text) => super::parse(&text).map(Some).map_err(D::Error::custom),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(1), "1ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(1), "1s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(6 * 3600), "6h0m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::new(3661, 5_000_000), "1h1m1.005s"),
            (MAX, "2562047h47m16.854775807s"),
            (Duration::MAX, "2562047h47m16.854775807s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format(duration), text, "{duration:?}");
        }
    }

    #[test]
    fn parses_what_go_parses() {
        let cases = [
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("-0", Duration::ZERO),
            ("+5s", Duration::from_secs(5)),
            ("300s", Duration::from_secs(300)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            (".5s", Duration::from_millis(500)),
            ("1.s", Duration::from_secs(1)),
            ("250ms", Duration::from_millis(250)),
            ("10us", Duration::from_micros(10)),
            ("10µs", Duration::from_micros(10)),
            ("10μs", Duration::from_micros(10)),
            ("7ns", Duration::from_nanos(7)),
            ("1h1m1.005s", Duration::new(3661, 5_000_000)),
        ];
        for (text, duration) in cases {
            assert_eq!(parse(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn round_trips_through_format() {
        for secs in [0, 1, 59, 60, 61, 3599, 3600, 86_400, 30 * 86_400] {
            let duration = Duration::from_secs(secs);
            assert_eq!(parse(&format(duration)), Ok(duration));
        }
        assert_eq!(parse(&format(MAX)), Ok(MAX));
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "", "s", ".s", ".", "1x", "5d", "300", "1h30", "-5s", "3000000h",
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.to_string().contains(&format!("{text:?}")), "{err}");
        }
        assert!(matches!(parse("300"), Err(Error::MissingUnit { .. })));
        assert!(matches!(parse("5d"), Err(Error::UnknownUnit { unit, .. }) if unit == "d"));
        assert!(matches!(parse("-5s"), Err(Error::Negative { .. })));
        assert!(matches!(parse("3000000h"), Err(Error::Overflow { .. })));
    }
}
