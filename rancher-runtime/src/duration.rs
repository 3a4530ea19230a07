//! Parsing of human durations for command-line flags: `500ms`, `15s`, `5m`, `1h`.

use std::time::Duration;

/// A duration string that could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid duration {input:?}: expected a number followed by ms, s, m or h (e.g. 15s)")]
pub struct ParseError {
    input: String,
}

/// Parses `500ms`, `15s`, `5m`, `1h` or a combination such as `1m30s`.
pub fn parse(input: &str) -> Result<Duration, ParseError> {
    let error = || ParseError {
        input: input.to_owned(),
    };
    let mut rest = input.trim();
    if rest.is_empty() {
        return Err(error());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        if digits == 0 {
            return Err(error());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| error())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.checked_mul(60).ok_or_else(error)?),
            "h" => Duration::from_secs(value.checked_mul(3600).ok_or_else(error)?),
            _ => return Err(error()),
        };
        total = total.checked_add(part).ok_or_else(error)?;
        rest = &rest[unit_len..];
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
    }

    #[test]
    fn rejects_garbage_with_the_input_in_the_message() {
        for bad in ["", "15", "s", "1.5s", "15x", "-1s", "99999999999999999999h"] {
            let err = parse(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }
}
