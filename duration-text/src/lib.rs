//! Durations as people write them in flags, environment variables and scenario files:
//! `"10s"`, `"500ms"`, `"1.5s"`, `"2m"`, `"250us"`. The one parser of the workspace: the
//! chat-server's flags and loadgen's scenarios and flags read durations the same way. A
//! bare number is refused: the unit is always explicit, as in Go's `time.ParseDuration`.

use std::fmt;
use std::time::Duration;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses a duration with a unit: `us`, `ms`, `s`, `m` or `h`.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let fail = |why| DurationError {
        input: input.to_string(),
        why,
    };
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| fail("no unit"))?;
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(fail("no number"));
    }
    let value: f64 = number.parse().map_err(|_| fail("bad number"))?;
    let seconds = match unit.trim() {
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(fail("unknown unit")),
    };
    if !seconds.is_finite() || seconds > 1e9 {
        return Err(fail("too large"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Formats a duration the way [`parse`] reads it, choosing a readable unit.
pub fn format(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0s".into()
    } else if us.is_multiple_of(1_000_000) {
        format!("{}s", us / 1_000_000)
    } else if us.is_multiple_of(1_000) {
        format!("{}ms", us / 1_000)
    } else {
        format!("{us}us")
    }
}

impl fmt::Display for DurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a duration: {} (write it like \"500ms\", \"10s\" or \"2m\")",
            self.input, self.why
        )
    }
}

impl std::error::Error for DurationError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse(" 3 s ").unwrap(), Duration::from_secs(3));
    }

    #[test]
    fn refuses_bad_input() {
        for bad in [
            "10",
            "s",
            "",
            "ten s",
            "1.2.3s",
            "5 parsecs",
            "-1s",
            "1e99s",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn formats_round_trip() {
        for d in [
            Duration::from_secs(10),
            Duration::from_millis(1500),
            Duration::from_micros(7),
        ] {
            assert_eq!(parse(&format(d)).unwrap(), d);
        }
    }
}
