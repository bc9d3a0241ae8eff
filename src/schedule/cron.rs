//! A cron expression parsed into bitsets (cronie's representation), and the search for the
//! next matching local wall-clock time. No zone here: wall times are "local seconds", the
//! seconds since 1970-01-01T00:00 of a calendar without a zone.

use super::ScheduleError;
use super::calendar::{self, DAY};

/// One field of an expression: its name for messages, its range, and its names if any.
struct Field {
    name: &'static str,
    lo: u32,
    hi: u32,
    names: &'static [&'static str],
}

const SECOND: Field = Field {
    name: "second",
    lo: 0,
    hi: 59,
    names: &[],
};
const MINUTE: Field = Field {
    name: "minute",
    lo: 0,
    hi: 59,
    names: &[],
};
const HOUR: Field = Field {
    name: "hour",
    lo: 0,
    hi: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    name: "day-of-month",
    lo: 1,
    hi: 31,
    names: &[],
};
const MONTH: Field = Field {
    name: "month",
    lo: 1,
    hi: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    name: "day-of-week",
    lo: 0,
    hi: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// A parsed cron expression: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronExpr {
    seconds: u64,
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, 0 = Sunday (7 folded into 0).
    weekdays: u8,
    /// Either day field starts with `*`: a day must match both fields, not either.
    days_and: bool,
    /// The minute or hour field starts with `*`: the job follows elapsed time across DST
    /// changes instead of the wall clock (cronie's rule).
    wildcard: bool,
    has_seconds: bool,
}

impl CronExpr {
    /// Parse 5 fields (`min hour dom month dow`) or 6 with leading seconds.
    pub fn parse(text: &str) -> Result<CronExpr, ScheduleError> {
        let mut fields = [""; 6];
        let mut count = 0;
        for field in text.split_whitespace() {
            if count < fields.len() {
                fields[count] = field;
            }
            count += 1;
        }
        let (sec, rest) = match count {
            5 => ("0", &fields[..5]),
            6 => (fields[0], &fields[1..]),
            0 => return Err(ScheduleError::new("the schedule is empty")),
            n => {
                return Err(ScheduleError::new(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found {n}"
                )));
            }
        };
        let [min, hour, dom, month, dow] = [rest[0], rest[1], rest[2], rest[3], rest[4]];
        let weekdays = {
            let bits = bits(&DAY_OF_WEEK, dow)?;
            (bits | (bits >> 7)) as u8 & 0x7f // 7 is Sunday too
        };
        let expr = CronExpr {
            seconds: bits(&SECOND, sec)?,
            minutes: bits(&MINUTE, min)?,
            hours: bits(&HOUR, hour)? as u32,
            days: bits(&DAY_OF_MONTH, dom)? as u32,
            months: bits(&MONTH, month)? as u16,
            weekdays,
            days_and: dom.starts_with('*') || dow.starts_with('*'),
            wildcard: min.starts_with('*') || hour.starts_with('*'),
            has_seconds: count == 6,
        };
        expr.check_can_fire(dom, month)?;
        Ok(expr)
    }

    pub fn has_seconds(&self) -> bool {
        self.has_seconds
    }

    /// Whether the job follows elapsed time across DST changes (its minute or hour field
    /// starts with `*`) rather than being a fixed time of day.
    pub fn is_wildcard(&self) -> bool {
        self.wildcard
    }

    /// When the day fields must both match, some selected month must have a selected day
    /// (February counting 29); otherwise the expression never fires. With either, any
    /// month has every weekday.
    fn check_can_fire(&self, dom: &str, month: &str) -> Result<(), ScheduleError> {
        if !self.days_and {
            return Ok(());
        }
        let possible = (1..=12u32)
            .filter(|m| self.months & (1 << m) != 0)
            .any(|m| self.days & mask_through(calendar::max_days_in_month(m)) != 0);
        if possible {
            return Ok(());
        }
        Err(ScheduleError::new(format!(
            "can never fire: no month in `{month}` has a day in `{dom}`"
        )))
    }

    /// The first local time at or after `from` that matches, before `until` if given.
    pub(super) fn next_match(&self, from: i64, until: Option<i64>) -> Option<i64> {
        let mut day = from.div_euclid(DAY);
        let second_of_day = from.rem_euclid(DAY) as u32;
        let (mut hour, mut minute, mut second) = (
            second_of_day / 3600,
            second_of_day / 60 % 60,
            second_of_day % 60,
        );
        let (mut year, mut month, mut dom) = calendar::civil_from_days(day);
        loop {
            if until.is_some_and(|u| day * DAY >= u) || year > calendar::MAX_YEAR {
                return None;
            }
            if self.months & (1 << month) == 0 {
                match next_bit(u64::from(self.months), month + 1).filter(|&m| m <= 12) {
                    Some(m) => month = m,
                    None => {
                        year += 1;
                        month = next_bit(u64::from(self.months), 1)?;
                    }
                }
                (dom, hour, minute, second) = (1, 0, 0, 0);
                day = calendar::days_from_civil(year, month, 1);
                continue;
            }
            let candidates = self.days_of(year, month, day - i64::from(dom) + 1);
            let Some(d) = next_bit(u64::from(candidates), dom) else {
                (year, month) = if month == 12 {
                    (year + 1, 1)
                } else {
                    (year, month + 1)
                };
                (dom, hour, minute, second) = (1, 0, 0, 0);
                day = calendar::days_from_civil(year, month, 1);
                continue;
            };
            if d != dom {
                day += i64::from(d - dom);
                (dom, hour, minute, second) = (d, 0, 0, 0);
            }
            let Some(h) = next_bit(u64::from(self.hours), hour) else {
                day += 1;
                (dom, hour, minute, second) = (dom + 1, 0, 0, 0);
                continue;
            };
            if h != hour {
                (hour, minute, second) = (h, 0, 0);
            }
            let Some(m) = next_bit(self.minutes, minute) else {
                (hour, minute, second) = (hour + 1, 0, 0);
                continue;
            };
            if m != minute {
                (minute, second) = (m, 0);
            }
            let Some(s) = next_bit(self.seconds, second) else {
                (minute, second) = (minute + 1, 0);
                continue;
            };
            let found = day * DAY + i64::from(hour * 3600 + minute * 60 + s);
            return until.is_none_or(|u| found < u).then_some(found);
        }
    }

    /// The days (bits 1..=31) of a month that match the day fields; `first` is the day
    /// number of its 1st.
    fn days_of(&self, year: i32, month: u32, first: i64) -> u32 {
        let by_weekday = days_with_weekdays(self.weekdays, calendar::weekday(first));
        let days = if self.days_and {
            self.days & by_weekday
        } else {
            self.days | by_weekday
        };
        days & mask_through(calendar::days_in_month(year, month))
    }
}

/// The set of values of one field: a comma-separated list of `*`, `*/S`, `N`, `N-M`,
/// `N-M/S`, where N and M are numbers or (month and weekday) three-letter names.
fn bits(field: &Field, text: &str) -> Result<u64, ScheduleError> {
    let err = |what: String| ScheduleError::new(format!("{} field `{text}`: {what}", field.name));
    let mut set = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(err("empty list item".into()));
        }
        if let Some(c) = item
            .chars()
            .find(|c| matches!(c, 'L' | 'W' | '#' | '?' | 'l' | 'w'))
        {
            if !item.chars().all(|c| c.is_ascii_alphabetic()) || field.names.is_empty() {
                return Err(err(format!(
                    "`{c}` is not supported (cron extensions L, W, # and ? are not cronie syntax)"
                )));
            }
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .map_err(|_| err(format!("step `{step}` is not a number")))?;
                if step == 0 {
                    return Err(err("a step must be at least 1".into()));
                }
                (range, step)
            }
            None => (item, 1),
        };
        let (lo, hi) = if range == "*" {
            (field.lo, field.hi)
        } else if let Some((a, b)) = range.split_once('-') {
            let (lo, hi) = (value(field, a).map_err(err)?, value(field, b).map_err(err)?);
            if lo > hi {
                return Err(err(format!(
                    "range `{range}` runs backwards; write it as a list such as `{a},{b}` or ascending"
                )));
            }
            (lo, hi)
        } else {
            let v = value(field, range).map_err(err)?;
            if step != 1 {
                return Err(err(format!(
                    "a step needs a range: write `{range}-{}/{step}` or `*/{step}`",
                    field.hi
                )));
            }
            (v, v)
        };
        for v in (lo..=hi).step_by(step as usize) {
            set |= 1 << v;
        }
    }
    Ok(set)
}

fn value(field: &Field, text: &str) -> Result<u32, String> {
    if let Ok(v) = text.parse::<u32>() {
        if v < field.lo || v > field.hi {
            return Err(format!("value out of range {}-{}", field.lo, field.hi));
        }
        return Ok(v);
    }
    let lower = text.to_ascii_lowercase();
    match field.names.iter().position(|n| *n == lower) {
        Some(i) => Ok(i as u32 + field.lo), // jan = 1, sun = 0
        None if field.names.is_empty() => Err(format!("`{text}` is not a number")),
        None => Err(format!(
            "`{text}` is not a number or a name ({}-{} or {}...{})",
            field.lo,
            field.hi,
            field.names[0],
            field.names[field.names.len() - 1]
        )),
    }
}

/// Days 1..=31 of a month starting on weekday `first` whose weekday is in `weekdays`.
fn days_with_weekdays(weekdays: u8, first: u32) -> u32 {
    // Rotate the week so that bit 0 is the weekday of the 1st, then repeat it every 7 days.
    let week = u64::from(weekdays) * 0x81; // two copies, to rotate by shifting
    let from_first = ((week >> first) & 0x7f) as u32;
    let month =
        from_first | from_first << 7 | from_first << 14 | from_first << 21 | from_first << 28;
    month << 1 // bit d is day d
}

/// Bits 1..=n.
fn mask_through(n: u32) -> u32 {
    (((1u64 << (n + 1)) - 1) as u32) & !1
}

/// The lowest set bit at position `from` or above.
fn next_bit(set: u64, from: u32) -> Option<u32> {
    if from >= 64 {
        return None;
    }
    let rest = set >> from;
    (rest != 0).then(|| from + rest.trailing_zeros())
}
