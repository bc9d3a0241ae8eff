//! The schedule rules by example: syntax, the day rule, macros, never-firing expressions,
//! and cronie's DST rules on the transition days of New York, London and Sydney (2026).

use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::*;

/// The next `expected.len()` fires of `expr` after `after` in `zone`, as RFC 3339 with the
/// zone's offset.
fn fires(expr: &str, zone: &str, after: &str) -> Vec<String> {
    let tz = TimeZone::get(zone).expect("zone");
    let after: Timestamp = after.parse().expect("after");
    let Schedule::Cron(cron) = Schedule::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"))
    else {
        panic!("{expr}: not a cron expression")
    };
    cron.iter_after(after, &tz)
        .take(4)
        .map(|t| {
            t.to_zoned_datetime(tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .collect()
}

fn check(cases: &[(&str, &str, &str, &[&str])]) {
    let mut failed = Vec::new();
    for (expr, zone, after, expected) in cases {
        let got = fires(expr, zone, after);
        let got = &got[..expected.len()];
        if got != *expected {
            failed.push(format!(
                "`{expr}` in {zone} after {after}:\n  expected {expected:?}\n       got {got:?}"
            ));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

const UTC: &str = "UTC";
/// 2026-01-01 is a Thursday.
const NEW_YEAR: &str = "2026-01-01T00:00:00Z";

#[test]
#[rustfmt::skip]
fn syntax_lists_ranges_steps_names() {
    check(&[
        ("*/15 9-17 * * 1-5", UTC, NEW_YEAR, &["2026-01-01T09:00:00+00:00", "2026-01-01T09:15:00+00:00", "2026-01-01T09:30:00+00:00"]),
        ("*/15 9-17 * * 1-5", UTC, "2026-01-02T17:20:00Z", &["2026-01-02T17:30:00+00:00", "2026-01-02T17:45:00+00:00", "2026-01-05T09:00:00+00:00"]),
        ("*/25 * * * *", UTC, NEW_YEAR, &["2026-01-01T00:25:00+00:00", "2026-01-01T00:50:00+00:00", "2026-01-01T01:00:00+00:00"]),
        ("0 0 */7 * *", UTC, "2026-01-20T00:00:00Z", &["2026-01-22T00:00:00+00:00", "2026-01-29T00:00:00+00:00", "2026-02-01T00:00:00+00:00"]),
        ("0 0 1-30/7 * *", UTC, NEW_YEAR, &["2026-01-08T00:00:00+00:00", "2026-01-15T00:00:00+00:00", "2026-01-22T00:00:00+00:00"]),
        ("5,10-12 3 * * *", UTC, NEW_YEAR, &["2026-01-01T03:05:00+00:00", "2026-01-01T03:10:00+00:00", "2026-01-01T03:11:00+00:00", "2026-01-01T03:12:00+00:00"]),
        ("0 0 * * 0", UTC, NEW_YEAR, &["2026-01-04T00:00:00+00:00"]),
        ("0 0 * * 7", UTC, NEW_YEAR, &["2026-01-04T00:00:00+00:00"]),
        ("0 0 * * 5", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00"]),
        ("0 0 * * 5-7", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00", "2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00", "2026-01-09T00:00:00+00:00"]),
        ("0 0 * * MON", UTC, NEW_YEAR, &["2026-01-05T00:00:00+00:00"]),
        ("0 0 * * mon-fri", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00", "2026-01-05T00:00:00+00:00"]),
        ("0 0 * * */2", UTC, NEW_YEAR, &["2026-01-03T00:00:00+00:00", "2026-01-04T00:00:00+00:00", "2026-01-06T00:00:00+00:00"]),
        ("0 0 1 JAN *", UTC, NEW_YEAR, &["2027-01-01T00:00:00+00:00"]),
        ("0 0 1 jan-dec/3 *", UTC, NEW_YEAR, &["2026-04-01T00:00:00+00:00", "2026-07-01T00:00:00+00:00", "2026-10-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00"]),
        ("0 12 31 * *", UTC, NEW_YEAR, &["2026-01-31T12:00:00+00:00", "2026-03-31T12:00:00+00:00", "2026-05-31T12:00:00+00:00"]),
        ("0 0 29 2 *", UTC, "2096-03-01T00:00:00Z", &["2104-02-29T00:00:00+00:00"]),
        ("59 23 31 12 *", UTC, "2026-12-31T23:59:00Z", &["2027-12-31T23:59:00+00:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn seconds_field_and_exclusive_after() {
    check(&[
        ("*/10 * * * * *", UTC, NEW_YEAR, &["2026-01-01T00:00:10+00:00", "2026-01-01T00:00:20+00:00"]),
        ("* * * * * *", UTC, "2026-01-01T00:00:00.5Z", &["2026-01-01T00:00:01+00:00"]),
        ("30 0 0 * * *", UTC, NEW_YEAR, &["2026-01-01T00:00:30+00:00", "2026-01-02T00:00:30+00:00"]),
        ("0 0 0 * * *", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00"]),
        ("0 0 * * *", UTC, "2025-12-31T23:59:59.999Z", &["2026-01-01T00:00:00+00:00"]),
        ("0 0 * * *", UTC, "2026-01-01T00:00:30Z", &["2026-01-02T00:00:00+00:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn day_of_month_or_day_of_week_unless_one_starts_with_a_star() {
    check(&[
        // Both restricted: either matches.
        ("0 0 13 * 5", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00", "2026-01-13T00:00:00+00:00", "2026-01-16T00:00:00+00:00"]),
        ("0 0 13 * FRI", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00", "2026-01-09T00:00:00+00:00", "2026-01-13T00:00:00+00:00"]),
        ("0 9 1-7 * 1", UTC, NEW_YEAR, &["2026-01-01T09:00:00+00:00", "2026-01-02T09:00:00+00:00", "2026-01-03T09:00:00+00:00", "2026-01-04T09:00:00+00:00"]),
        // A day field starting with `*` is unrestricted: both must match.
        ("0 0 */2 * 1", UTC, NEW_YEAR, &["2026-01-05T00:00:00+00:00", "2026-01-19T00:00:00+00:00", "2026-02-09T00:00:00+00:00"]),
        ("0 0 */2 * 3", UTC, "2026-03-01T00:00:00Z", &["2026-03-11T00:00:00+00:00", "2026-03-25T00:00:00+00:00"]),
        ("0 0 13 * *", UTC, NEW_YEAR, &["2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
        ("0 0 13 * */1", UTC, NEW_YEAR, &["2026-01-13T00:00:00+00:00", "2026-02-13T00:00:00+00:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn macros_expand_to_their_expressions() {
    check(&[
        ("@yearly", UTC, NEW_YEAR, &["2027-01-01T00:00:00+00:00"]),
        ("@annually", UTC, NEW_YEAR, &["2027-01-01T00:00:00+00:00"]),
        ("@monthly", UTC, NEW_YEAR, &["2026-02-01T00:00:00+00:00"]),
        ("@weekly", UTC, NEW_YEAR, &["2026-01-04T00:00:00+00:00"]),
        ("@daily", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00"]),
        ("@MIDNIGHT", UTC, NEW_YEAR, &["2026-01-02T00:00:00+00:00"]),
        ("@hourly", UTC, NEW_YEAR, &["2026-01-01T01:00:00+00:00"]),
    ]);
    assert_eq!(Schedule::parse("@reboot"), Ok(Schedule::Reboot));
    assert_eq!(
        Schedule::parse("@every 1h 30m"),
        Ok(Schedule::Every(Duration::from_secs(5400)))
    );
}

#[test]
#[rustfmt::skip]
fn refused_expressions_say_what_is_wrong() {
    let cases: &[(&str, &str)] = &[
        ("", "the schedule is empty"),
        ("* * * *", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found 4"),
        ("0 0 0 1 1 * 2027", "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found 7"),
        ("61 * * * *", "minute field `61`: value out of range 0-59"),
        ("0 24 * * *", "hour field `24`: value out of range 0-23"),
        ("0 0 0 * *", "day-of-month field `0`: value out of range 1-31"),
        ("0 0 * 13 *", "month field `13`: value out of range 1-12"),
        ("0 0 * * 8", "day-of-week field `8`: value out of range 0-7"),
        ("60 * * * * *", "second field `60`: value out of range 0-59"),
        ("5/10 * * * *", "minute field `5/10`: a step needs a range: write `5-59/10` or `*/10`"),
        ("*/0 * * * *", "minute field `*/0`: a step must be at least 1"),
        ("*/x * * * *", "minute field `*/x`: step `x` is not a number"),
        ("1,,2 * * * *", "minute field `1,,2`: empty list item"),
        ("a * * * *", "minute field `a`: `a` is not a number"),
        ("0 0 * * 5-0", "day-of-week field `5-0`: range `5-0` runs backwards; write it as a list such as `5,0` or ascending"),
        ("0 0 * * sat-sun", "day-of-week field `sat-sun`: range `sat-sun` runs backwards; write it as a list such as `sat,sun` or ascending"),
        ("0 0 * * monday", "day-of-week field `monday`: `monday` is not a number or a name (0-7 or sun...sat)"),
        ("0 0 1 january *", "month field `january`: `january` is not a number or a name (1-12 or jan...dec)"),
        ("0 0 L * *", "day-of-month field `L`: `L` is not supported (cron extensions L, W, # and ? are not cronie syntax)"),
        ("0 0 15W * *", "day-of-month field `15W`: `W` is not supported (cron extensions L, W, # and ? are not cronie syntax)"),
        ("0 0 * * 5#2", "day-of-week field `5#2`: `#` is not supported (cron extensions L, W, # and ? are not cronie syntax)"),
        ("0 0 ? * *", "day-of-month field `?`: `?` is not supported (cron extensions L, W, # and ? are not cronie syntax)"),
        ("0 0 31 2 *", "can never fire: no month in `2` has a day in `31`"),
        ("0 0 30 2 *", "can never fire: no month in `2` has a day in `30`"),
        ("0 0 31 4,6,9,11 *", "can never fire: no month in `4,6,9,11` has a day in `31`"),
        ("@fortnightly", "unknown macro `@fortnightly` (expected one of @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @reboot, @every DURATION)"),
        ("@daily 5", "`@daily` takes no argument, found `5`"),
        ("@every", "`@every` needs an interval, such as `@every 90s` or `@every 1h 30m`"),
        ("@every soon", "`@every soon`: `soon` is not a duration (expected number at 0)"),
        ("@every 500ms", "`@every 500ms`: the interval must be at least 1s"),
    ];
    let mut failed = Vec::new();
    for (expr, expected) in cases {
        match Schedule::parse(expr) {
            Err(e) if e.to_string() == *expected => {}
            other => failed.push(format!("`{expr}`: expected {expected:?}, got {other:?}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

#[test]
fn expressions_that_fire_rarely_are_accepted() {
    for expr in [
        "0 0 29 2 *",
        "0 0 31 * *",
        "0 0 30 1-2 *",
        "0 0 29 2 */7",
        "0 0 31 2 1",
    ] {
        assert!(Schedule::parse(expr).is_ok(), "{expr}");
    }
}

const NY: &str = "America/New_York";
const LONDON: &str = "Europe/London";
const SYDNEY: &str = "Australia/Sydney";

#[test]
#[rustfmt::skip]
fn spring_forward_fixed_time_runs_once_right_after_the_jump() {
    // New York 2026-03-08 02:00 EST -> 03:00 EDT; London 2026-03-29 01:00 GMT -> 02:00 BST;
    // Sydney 2026-10-04 02:00 AEST -> 03:00 AEDT.
    check(&[
        ("30 2 * * *", NY, "2026-03-07T05:00:00Z", &["2026-03-07T02:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("0 30 2 * * *", NY, "2026-03-07T17:00:00Z", &["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("0,30 2 * * *", NY, "2026-03-08T05:00:00Z", &["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ("15 2,3 * * *", NY, "2026-03-08T05:00:00Z", &["2026-03-08T03:00:00-04:00", "2026-03-08T03:15:00-04:00", "2026-03-09T02:15:00-04:00"]),
        ("0 3 * * *", NY, "2026-03-08T05:00:00Z", &["2026-03-08T03:00:00-04:00", "2026-03-09T03:00:00-04:00"]),
        ("30 1 * * *", NY, "2026-03-08T05:00:00Z", &["2026-03-08T01:30:00-05:00", "2026-03-09T01:30:00-04:00"]),
        ("30 1 * * *", LONDON, "2026-03-28T12:00:00Z", &["2026-03-29T02:00:00+01:00", "2026-03-30T01:30:00+01:00"]),
        ("30 2 * * *", SYDNEY, "2026-10-03T00:00:00Z", &["2026-10-04T03:00:00+11:00", "2026-10-05T02:30:00+11:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn spring_forward_wildcard_jobs_follow_elapsed_time() {
    check(&[
        ("*/30 * * * *", NY, "2026-03-08T06:00:00Z", &["2026-03-08T01:30:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T03:30:00-04:00"]),
        ("30 * * * *", NY, "2026-03-08T06:00:00Z", &["2026-03-08T01:30:00-05:00", "2026-03-08T03:30:00-04:00"]),
        ("0 */2 * * *", NY, "2026-03-08T05:00:00Z", &["2026-03-08T04:00:00-04:00"]),
        ("*/20 * * * *", LONDON, "2026-03-29T00:30:00Z", &["2026-03-29T00:40:00+00:00", "2026-03-29T02:00:00+01:00", "2026-03-29T02:20:00+01:00"]),
        ("*/30 * * * *", SYDNEY, "2026-10-03T15:00:00Z", &["2026-10-04T01:30:00+10:00", "2026-10-04T03:00:00+11:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn fall_back_fixed_time_runs_once_in_the_repeated_hour() {
    // New York 2026-11-01 02:00 EDT -> 01:00 EST; London 2026-10-25 02:00 BST -> 01:00 GMT;
    // Sydney 2026-04-05 03:00 AEDT -> 02:00 AEST.
    check(&[
        ("30 1 * * *", NY, "2026-11-01T04:00:00Z", &["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ("0,30 1 * * *", NY, "2026-11-01T04:00:00Z", &["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-02T01:00:00-05:00"]),
        ("0 1-3 * * *", NY, "2026-11-01T04:00:00Z", &["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00", "2026-11-01T03:00:00-05:00"]),
        // Starting inside the second pass does not run it again.
        ("30 1 * * *", NY, "2026-11-01T06:10:00Z", &["2026-11-02T01:30:00-05:00"]),
        ("30 1 * * *", NY, "2026-11-01T05:45:00Z", &["2026-11-02T01:30:00-05:00"]),
        ("30 1 * * *", LONDON, "2026-10-24T12:00:00Z", &["2026-10-25T01:30:00+01:00", "2026-10-26T01:30:00+00:00"]),
        ("30 2 * * *", SYDNEY, "2026-04-04T00:00:00Z", &["2026-04-05T02:30:00+11:00", "2026-04-06T02:30:00+10:00"]),
    ]);
}

#[test]
#[rustfmt::skip]
fn fall_back_wildcard_jobs_run_again_in_the_repeated_hour() {
    check(&[
        ("0 * * * *", NY, "2026-11-01T04:30:00Z", &["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
        ("0 0 * * * *", NY, "2026-11-01T04:30:00Z", &["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
        ("*/30 1 * * *", NY, "2026-11-01T04:30:00Z", &["2026-11-01T01:00:00-04:00", "2026-11-01T01:30:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T01:30:00-05:00"]),
        ("*/30 * * * *", NY, "2026-11-01T06:10:00Z", &["2026-11-01T01:30:00-05:00", "2026-11-01T02:00:00-05:00"]),
        ("*/30 1 * * *", LONDON, "2026-10-24T23:30:00Z", &["2026-10-25T01:00:00+01:00", "2026-10-25T01:30:00+01:00", "2026-10-25T01:00:00+00:00", "2026-10-25T01:30:00+00:00"]),
        ("0 * * * *", SYDNEY, "2026-04-04T14:30:00Z", &["2026-04-05T02:00:00+11:00", "2026-04-05T02:00:00+10:00", "2026-04-05T03:00:00+10:00"]),
    ]);
}

#[test]
fn fires_are_strictly_increasing_across_a_year_of_dst_changes() {
    for zone in [NY, LONDON, SYDNEY, "Australia/Lord_Howe", "Pacific/Apia"] {
        let tz = TimeZone::get(zone).expect("zone");
        for expr in ["*/7 * * * *", "30 1,2 * * *", "0 0 * * *", "15 * * * 0"] {
            let Ok(Schedule::Cron(cron)) = Schedule::parse(expr) else {
                panic!("{expr}")
            };
            let start: Timestamp = "2011-01-01T00:00:00Z".parse().expect("t");
            let end: Timestamp = "2012-01-01T00:00:00Z".parse().expect("t");
            let mut last = start;
            for t in cron.iter_after(start, &tz).take_while(|t| *t < end) {
                assert!(t > last, "{expr} in {zone}: {t} after {last}");
                last = t;
            }
            assert!(last > start, "{expr} in {zone} never fired");
        }
    }
}
