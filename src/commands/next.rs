//! `schedctl next EXPR [--tz TZ] [--after TIME] [-n N]`: the next fire instants of any
//! expression, to try a schedule before putting it in the job file.

use jiff::tz::TimeZone;
use jiff::{Timestamp, civil::DateTime};

use crate::clock::{Clock, SystemClock};
use crate::config::Zone;
use crate::error::Error;
use crate::schedule::Schedule;

pub fn run(expr: &str, tz: Option<&str>, after: Option<&str>, count: usize) -> Result<u8, Error> {
    let schedule = Schedule::parse(expr).map_err(|e| Error::usage(format!("`{expr}`: {e}")))?;
    let zone = match tz {
        Some(name) => Zone::named(name).map_err(Error::usage)?,
        None => Zone::system(),
    };
    let after = match after {
        Some(text) => parse_instant(text, &zone.tz)?,
        None => SystemClock.now(),
    };
    match schedule {
        Schedule::Cron(expr) => {
            for t in expr.iter_after(after, &zone.tz).take(count) {
                println!("{}", rfc3339(t, &zone.tz));
            }
        }
        Schedule::Every(every) => {
            eprintln!(
                "note: `@every` counts from the daemon's first start; shown here counting from {}",
                rfc3339(after, &zone.tz)
            );
            let step =
                jiff::SignedDuration::try_from(every).map_err(|e| Error::usage(e.to_string()))?;
            let mut t = after;
            for _ in 0..count {
                t = t
                    .checked_add(step)
                    .map_err(|e| Error::usage(e.to_string()))?;
                println!("{}", rfc3339(t, &zone.tz));
            }
        }
        Schedule::Reboot => {
            eprintln!(
                "`@reboot` has no time-based fire instants: it runs once each time the daemon starts as leader"
            );
        }
    }
    Ok(0)
}

/// An instant given as RFC 3339 (`2026-03-08T01:00:00-05:00`, `...Z`) or as a local date
/// and time without offset, read in `tz`.
fn parse_instant(text: &str, tz: &TimeZone) -> Result<Timestamp, Error> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    text.parse::<DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned_datetime(tz.clone()).ok())
        .map(|z| z.timestamp())
        .ok_or_else(|| {
            Error::usage(format!(
                "`{text}` is not a time; write RFC 3339 such as 2026-03-08T01:00:00-05:00"
            ))
        })
}

/// RFC 3339 with the zone's offset, to the second: `2026-11-01T01:30:00-04:00`.
pub fn rfc3339(t: Timestamp, tz: &TimeZone) -> String {
    t.to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%dT%H:%M:%S%:z")
        .to_string()
}
