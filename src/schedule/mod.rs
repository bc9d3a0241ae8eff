//! Schedules: cron expressions (cronie's syntax and day rule), macros, `@every` and
//! `@reboot`, and the next fire instant of a cron expression in a zone with cronie's DST
//! rules. Pure: no IO, no clock.
//!
//! The DST rules, in their stateless form (see ARCHITECTURE.md): enumerate the wall times
//! that match; a wall time that exists once fires at that instant; one that exists twice
//! (the clock went back) fires at both instants for a wildcard job (minute or hour field
//! starting with `*`) and only at the earlier one for a fixed-time job; one that does not
//! exist (the clock jumped forward) fires nothing for a wildcard job and, for a fixed-time
//! job, fires at the transition instant, several skipped times collapsing into one fire.

mod calendar;
mod cron;
mod zone;

#[cfg(test)]
mod tests;

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;

pub use cron::CronExpr;

/// When a job fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// A cron expression or a macro standing for one.
    Cron(CronExpr),
    /// `@every DURATION`: an interval anchored to the daemon's first start.
    Every(Duration),
    /// `@reboot`: once each time a daemon becomes leader after starting.
    Reboot,
}

const MACROS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        let text = text.trim();
        let Some(word) = text.strip_prefix('@') else {
            return CronExpr::parse(text).map(Schedule::Cron);
        };
        let (name, arg) = word.split_once(char::is_whitespace).unwrap_or((word, ""));
        let name = name.to_ascii_lowercase();
        let arg = arg.trim();
        if name == "every" {
            return every(arg);
        }
        if !arg.is_empty() {
            return Err(ScheduleError::new(format!(
                "`@{name}` takes no argument, found `{arg}`"
            )));
        }
        if name == "reboot" {
            return Ok(Schedule::Reboot);
        }
        match MACROS.iter().find(|(m, _)| m[1..] == name) {
            Some((_, expansion)) => CronExpr::parse(expansion).map(Schedule::Cron),
            None => Err(ScheduleError::new(format!(
                "unknown macro `@{name}` (expected one of {}, @reboot, @every DURATION)",
                MACROS
                    .iter()
                    .map(|(m, _)| *m)
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

fn every(arg: &str) -> Result<Schedule, ScheduleError> {
    if arg.is_empty() {
        return Err(ScheduleError::new(
            "`@every` needs an interval, such as `@every 90s` or `@every 1h 30m`",
        ));
    }
    let interval = humantime::parse_duration(arg).map_err(|e| {
        ScheduleError::new(format!("`@every {arg}`: `{arg}` is not a duration ({e})"))
    })?;
    if interval < Duration::from_secs(1) {
        return Err(ScheduleError::new(format!(
            "`@every {arg}`: the interval must be at least 1s"
        )));
    }
    Ok(Schedule::Every(interval))
}

impl CronExpr {
    /// The first fire instant strictly after `after`, in `tz`, by cronie's DST rules.
    /// `None` only past the end of time (year 9999).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        zone::next_after(self, after, tz)
    }

    /// Fire instants after `after`, in order.
    pub fn iter_after<'a>(
        &'a self,
        after: Timestamp,
        tz: &'a TimeZone,
    ) -> impl Iterator<Item = Timestamp> + 'a {
        std::iter::successors(self.next_after(after, tz), move |t| self.next_after(*t, tz))
    }
}

/// Why a schedule was refused; the message names the field and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

impl ScheduleError {
    fn new(message: impl Into<String>) -> ScheduleError {
        ScheduleError(message.into())
    }
}
