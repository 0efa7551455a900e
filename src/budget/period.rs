//! Calendar periods in UTC, from a time passed in (seconds since the epoch).

use serde::{Deserialize, Serialize};

/// How often a budget starts over: at 00:00 UTC each day, each Monday,
/// on the first of each month, or never.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    Day,
    Week,
    Month,
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            "total" => Some(Period::Total),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
            Period::Total => "total",
        }
    }

    /// The start of the period holding `now` (seconds; 0 for `total`).
    pub fn start(self, now: u64) -> u64 {
        let day = now / 86_400;
        match self {
            Period::Day => day * 86_400,
            // 1970-01-01 was a Thursday: Monday is 3 days before.
            Period::Week => (day - (day + 3) % 7) * 86_400,
            Period::Month => {
                let (y, m, _) = civil(day as i64);
                days_from_civil(y, m, 1) as u64 * 86_400
            }
            Period::Total => 0,
        }
    }

    /// When the period holding `now` ends (`None` for `total`).
    pub fn reset(self, now: u64) -> Option<u64> {
        let start = self.start(now);
        match self {
            Period::Day => Some(start + 86_400),
            Period::Week => Some(start + 7 * 86_400),
            Period::Month => {
                let (y, m, _) = civil((start / 86_400) as i64);
                let (y, m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                Some(days_from_civil(y, m, 1) as u64 * 86_400)
            }
            Period::Total => None,
        }
    }

    /// The start of the period before the one holding `now`.
    pub fn previous_start(self, now: u64) -> Option<u64> {
        match self {
            Period::Total => None,
            _ => Some(self.start(self.start(now).checked_sub(1)?)),
        }
    }
}

/// Seconds since the epoch as RFC 3339 (`YYYY-MM-DDTHH:MM:SSZ`).
pub fn rfc3339(secs: u64) -> String {
    let (y, m, d) = civil((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Howard Hinnant's civil_from_days: (year, month, day).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Howard Hinnant's days_from_civil.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from(if m > 2 { m - 3 } else { m + 9 });
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}
