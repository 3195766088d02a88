//! UTC calendar time for report names and timestamps, without a date library.
//!
//! Reports need two spellings of a wall-clock instant: RFC 3339 (`2000-02-29T00:00:00Z`) in
//! `summary.json` and the compact `20000229T000000Z` in folder names. Both only need the
//! proleptic Gregorian calendar in UTC, which is a few lines of integer arithmetic
//! (Howard Hinnant's `civil_from_days`), so no time-zone crate is pulled in.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC instant split into calendar fields, to the whole second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utc {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Utc {
    /// The calendar fields of `unix_secs` seconds since 1970-01-01T00:00:00Z (negative:
    /// before it).
    pub fn from_unix(unix_secs: i64) -> Utc {
        let days = unix_secs.div_euclid(86_400);
        let in_day = unix_secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        // `in_day` is in 0..86_400, so the casts cannot truncate.
        Utc {
            year,
            month,
            day,
            hour: (in_day / 3600) as u32,
            minute: (in_day % 3600 / 60) as u32,
            second: (in_day % 60) as u32,
        }
    }

    /// The calendar fields of `t`, truncated to the whole second.
    pub fn from_system(t: SystemTime) -> Utc {
        Utc::from_unix(unix_secs(t))
    }

    /// `YYYY-MM-DDTHH:MM:SSZ` (RFC 3339).
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    /// `YYYYMMDDTHHMMSSZ` (ISO 8601 basic format), for file names.
    pub fn compact(&self) -> String {
        format!(
            "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

/// Whole seconds of `t` since the Unix epoch, rounded towards the past (negative before it;
/// saturating far outside the calendar's useful range).
pub fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let before = before.duration();
            let whole = i64::try_from(before.as_secs()).unwrap_or(i64::MAX);
            if before.subsec_nanos() == 0 {
                -whole
            } else {
                -whole.saturating_add(1)
            }
        }
    }
}

/// `t` as RFC 3339 UTC to the second: `2000-02-29T00:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    Utc::from_system(t).rfc3339()
}

/// `t` as `20000229T000000Z`.
pub fn compact(t: SystemTime) -> String {
    Utc::from_system(t).compact()
}

/// (year, month 1..=12, day 1..=31) of the day `days` after 1970-01-01, in the proleptic
/// Gregorian calendar. From <https://howardhinnant.github.io/date_algorithms.html>.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Keep the arithmetic far from overflow; such dates are meaningless anyway.
    let z = days.clamp(-(1 << 40), 1 << 40) + 719_468;
    // Eras of 400 years (146 097 days) starting on 0000-03-01.
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365], from March 1st
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32; // [1, 31]
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32; // [1, 12]
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(951_868_799)), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(at(951_868_800)), "2000-03-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_234_567_890)), "2009-02-13T23:31:30Z");
        assert_eq!(rfc3339(at(4_107_542_400)), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(at(1_709_164_800)), "2024-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_735_689_599)), "2024-12-31T23:59:59Z");
    }

    #[test]
    fn truncates_to_the_second() {
        let t = at(1_234_567_890) + Duration::from_millis(999);
        assert_eq!(rfc3339(t), "2009-02-13T23:31:30Z");
        assert_eq!(compact(t), "20090213T233130Z");
    }

    #[test]
    fn handles_instants_before_the_epoch() {
        assert_eq!(Utc::from_unix(-1).rfc3339(), "1969-12-31T23:59:59Z");
        assert_eq!(
            Utc::from_unix(-86_400 * 365).rfc3339(),
            "1969-01-01T00:00:00Z"
        );
        let just_before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(unix_secs(just_before), -1);
        assert_eq!(rfc3339(just_before), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn days_follow_each_other_across_four_centuries() {
        // Walk 1900-01-01 .. 2300-01-01 day by day and check the calendar rules.
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        let mut expected = (1900_i64, 1_u32, 1_u32);
        for days in -25_567..(-25_567 + 146_097) {
            assert_eq!(civil_from_days(days), expected, "day {days}");
            let (y, m, d) = expected;
            let month_len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            expected = if d < month_len {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
        }
        assert_eq!(expected, (2300, 1, 1));
    }
}
