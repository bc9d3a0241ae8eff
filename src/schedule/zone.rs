//! Wall times to instants: cronie's DST rules over the zone's offset segments.
//!
//! Between two transitions a zone has one offset, so there wall time and instant map one to
//! one. The search walks the segments from `after`: the first matching wall time inside a
//! segment is the answer, except that a fixed-time job skips the second pass of a repeated
//! hour (the wall times a fall-back transition shows again); at a spring-forward
//! transition, a fixed-time job with a matching wall time in the skipped span fires at the
//! transition instant.

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::CronExpr;

pub fn next_after(expr: &CronExpr, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    // Fires are whole seconds: start at the first one strictly after `after`.
    let mut cur = after.as_nanosecond().div_euclid(1_000_000_000) as i64 + 1;
    loop {
        let at = Timestamp::from_second(cur).ok()?;
        let offset = i64::from(tz.to_offset(at).seconds());
        let next = tz
            .following(at)
            .next()
            .map(|t| (t.timestamp().as_second(), i64::from(t.offset().seconds())));
        let mut from = cur + offset;
        if !expr.is_wildcard() {
            from = from.max(end_of_repeated_wall_time(tz, cur));
        }
        if let Some(wall) = expr.next_match(from, next.map(|(end, _)| end + offset)) {
            return Timestamp::from_second(wall - offset).ok();
        }
        let (end, new_offset) = next?;
        if !expr.is_wildcard()
            && new_offset > offset
            && expr
                .next_match(end + offset, Some(end + new_offset))
                .is_some()
        {
            return Timestamp::from_second(end).ok();
        }
        cur = end;
    }
}

/// If the segment holding `instant` began with the clock going back, the local time at
/// which the wall times shown a second time end (those before it were shown already);
/// otherwise `i64::MIN`.
fn end_of_repeated_wall_time(tz: &TimeZone, instant: i64) -> i64 {
    let Ok(probe) = Timestamp::from_second(instant + 1) else {
        return i64::MIN;
    };
    let Some(start) = tz.preceding(probe).next() else {
        return i64::MIN;
    };
    let start = start.timestamp();
    let Ok(before) = start.checked_sub(jiff::SignedDuration::from_secs(1)) else {
        return i64::MIN;
    };
    let old = i64::from(tz.to_offset(before).seconds());
    start.as_second() + old
}
