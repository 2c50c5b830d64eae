//! Go's `time.ParseDuration` format (`30s`, `1m30s`, `1.5h`, `500ms`), as fleet.conf's
//! durations are written; one parser for fleetd and the lab, so that what the lab
//! writes into a machine's fleet.conf is exactly what fleetd accepts.

use std::time::Duration;

/// The longest duration accepted (about 31 years): beyond it no timeout or TTL makes
/// sense, and it keeps every later arithmetic on the value far from overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(1_000_000_000);

/// The shortest lease TTL fleetd accepts for `agent_ttl` (etcd grants whole seconds);
/// the lab refuses shorter ones before writing them into a machine's fleet.conf.
pub const MIN_AGENT_TTL: Duration = Duration::from_secs(1);

/// Why a duration was refused; displays as one line.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("expected a duration such as 30s or 1m30s, got {0:?}")]
    Syntax(String),
    #[error("{0:?} is not a positive duration")]
    NotPositive(String),
    #[error("{0:?} is out of range (at most 1000000000s)")]
    OutOfRange(String),
}

/// Parses a positive Go duration; a bare number is taken as seconds (as fleetd always
/// did). Units: `ns`, `us`/`µs`, `ms`, `s`, `m`, `h`; decimals allowed (`1.5h`).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let v = text.trim();
    let syntax = || DurationError::Syntax(v.to_string());
    let total = if let Ok(secs) = v.parse::<f64>() {
        secs
    } else {
        if v.is_empty() {
            return Err(syntax());
        }
        let mut total = 0f64;
        let mut rest = v;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(syntax)?;
            let num: f64 = rest[..num_end].parse().map_err(|_| syntax())?;
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let scale = match &rest[..unit_end] {
                "ns" => 1e-9,
                "us" | "µs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(syntax()),
            };
            total += num * scale;
            rest = &rest[unit_end..];
        }
        total
    };
    if total.is_nan() {
        return Err(syntax());
    }
    if total <= 0.0 {
        return Err(DurationError::NotPositive(v.to_string()));
    }
    if total > MAX_DURATION.as_secs_f64() {
        return Err(DurationError::OutOfRange(v.to_string()));
    }
    Duration::try_from_secs_f64(total).map_err(|_| DurationError::OutOfRange(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration(" 1m30s "), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        for bad in ["", "3x", "s", "1..5s", "inf", "NaN"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_duration("0s"),
            Err(DurationError::NotPositive("0s".into()))
        );
        assert!(matches!(
            parse_duration("-5"),
            Err(DurationError::NotPositive(_))
        ));
    }

    #[test]
    fn huge_values_are_an_error_not_a_panic() {
        for huge in ["10000000000000000h", "1e300", "999999999999999999999999s"] {
            assert_eq!(
                parse_duration(huge),
                Err(DurationError::OutOfRange(huge.into())),
                "{huge}"
            );
        }
        assert_eq!(parse_duration("1000000000s"), Ok(MAX_DURATION));
    }
}
