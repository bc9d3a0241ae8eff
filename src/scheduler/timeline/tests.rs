//! Timing rules by example: next instants of each timing, and what fires after a gap.

use std::path::Path;
use std::sync::Arc;

use super::*;
use crate::config::{self, Job};

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn job(keys: &str) -> Arc<Job> {
    let text = format!("[daemon]\ntimezone = \"UTC\"\n[jobs.j]\ncommand = \"true\"\n{keys}\n");
    let config =
        config::parse(Path::new("/tmp/jobs.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    Arc::clone(&config.jobs[0])
}

const ANCHOR: &str = "2026-11-24T10:00:07Z";

#[test]
fn next_instants_of_each_timing() {
    let anchor = t(ANCHOR);
    let cron = job("schedule = \"*/15 * * * *\"");
    assert_eq!(
        next_fire(&cron, t("2026-11-24T10:00:00Z"), anchor),
        Some(t("2026-11-24T10:15:00Z"))
    );
    let every = job("schedule = \"@every 90s\"");
    assert_eq!(
        next_fire(&every, t("2026-11-24T09:00:00Z"), anchor),
        Some(anchor),
        "the anchor is the first"
    );
    assert_eq!(
        next_fire(&every, anchor, anchor),
        Some(t("2026-11-24T10:01:37Z"))
    );
    assert_eq!(
        next_fire(&every, t("2026-11-24T10:01:37Z"), anchor),
        Some(t("2026-11-24T10:03:07Z"))
    );
    let at = job("at = \"2026-12-01T09:00:00+01:00\"");
    assert_eq!(
        next_fire(&at, t("2026-11-24T10:00:00Z"), anchor),
        Some(t("2026-12-01T08:00:00Z"))
    );
    assert_eq!(
        next_fire(&at, t("2026-12-01T08:00:00Z"), anchor),
        None,
        "a one-off fires once"
    );
    let local_at = job("at = 2026-12-01T09:00:00\ntimezone = \"Asia/Tokyo\"");
    assert_eq!(
        next_fire(&local_at, t("2026-11-24T10:00:00Z"), anchor),
        Some(t("2026-12-01T00:00:00Z"))
    );
    let reboot = job("schedule = \"@reboot\"");
    assert_eq!(next_fire(&reboot, t("2026-11-24T10:00:00Z"), anchor), None);
}

#[test]
fn an_instant_found_on_time_fires_as_scheduled_whatever_the_policy() {
    for policy in ["latest", "none", "all"] {
        let j = job(&format!(
            "schedule = \"*/5 * * * *\"\ncatch_up = \"{policy}\""
        ));
        let due = due(
            &j,
            t("2026-11-24T10:05:00Z"),
            t("2026-11-24T10:05:00.003Z"),
            t(ANCHOR),
        );
        assert_eq!(
            due.fire,
            [(t("2026-11-24T10:05:00Z"), Trigger::Schedule)],
            "{policy}"
        );
        assert_eq!(due.passed_over, None, "{policy}");
    }
}

#[test]
fn after_a_gap_latest_runs_the_last_instant_once() {
    let j = job("schedule = \"*/5 * * * *\"");
    let due = due(
        &j,
        t("2026-11-24T10:05:00Z"),
        t("2026-11-24T13:02:00Z"),
        t(ANCHOR),
    );
    assert_eq!(due.fire, [(t("2026-11-24T13:00:00Z"), Trigger::CatchUp)]);
    assert_eq!(
        due.passed_over,
        Some((t("2026-11-24T10:05:00Z"), t("2026-11-24T12:55:00Z")))
    );
}

#[test]
fn a_gap_ending_on_time_runs_once_as_scheduled() {
    let j = job("schedule = \"*/5 * * * *\"");
    let due = due(
        &j,
        t("2026-11-24T10:05:00Z"),
        t("2026-11-24T10:20:30Z"),
        t(ANCHOR),
    );
    assert_eq!(due.fire, [(t("2026-11-24T10:20:00Z"), Trigger::Schedule)]);
    assert_eq!(
        due.passed_over,
        Some((t("2026-11-24T10:05:00Z"), t("2026-11-24T10:15:00Z")))
    );
}

#[test]
fn after_a_gap_none_runs_nothing() {
    let j = job("schedule = \"*/5 * * * *\"\ncatch_up = \"none\"");
    let due = due(
        &j,
        t("2026-11-24T10:05:00Z"),
        t("2026-11-24T13:02:00Z"),
        t(ANCHOR),
    );
    assert_eq!(due.fire, []);
    assert_eq!(
        due.passed_over,
        Some((t("2026-11-24T10:05:00Z"), t("2026-11-24T13:00:00Z")))
    );
}

#[test]
fn after_a_gap_all_runs_each_instant_oldest_first() {
    let j = job("schedule = \"0 * * * *\"\ncatch_up = \"all\"");
    let due = due(
        &j,
        t("2026-11-24T10:00:00Z"),
        t("2026-11-24T13:00:10Z"),
        t(ANCHOR),
    );
    assert_eq!(
        due.fire,
        [
            (t("2026-11-24T10:00:00Z"), Trigger::CatchUp),
            (t("2026-11-24T11:00:00Z"), Trigger::CatchUp),
            (t("2026-11-24T12:00:00Z"), Trigger::CatchUp),
            (t("2026-11-24T13:00:00Z"), Trigger::Schedule),
        ]
    );
    assert_eq!(due.passed_over, None);
}

#[test]
fn all_is_bounded_to_the_latest_hundred() {
    let j = job("schedule = \"* * * * *\"\ncatch_up = \"all\"");
    let due = due(
        &j,
        t("2026-11-20T00:00:00Z"),
        t("2026-11-24T10:00:00Z"),
        t(ANCHOR),
    );
    assert_eq!(due.fire.len(), 100);
    assert_eq!(due.fire[0].0, t("2026-11-24T08:21:00Z"));
    assert_eq!(due.fire[99], (t("2026-11-24T10:00:00Z"), Trigger::Schedule));
    assert_eq!(
        due.passed_over,
        Some((t("2026-11-20T00:00:00Z"), t("2026-11-24T08:20:00Z")))
    );
}

#[test]
fn nothing_older_than_the_starting_deadline_starts() {
    let j = job("schedule = \"0 2 * * *\"\nstarting_deadline = \"1h\"");
    let late = due(
        &j,
        t("2026-11-24T02:00:00Z"),
        t("2026-11-24T03:30:00Z"),
        t(ANCHOR),
    );
    assert_eq!(late.fire, []);
    assert_eq!(
        late.passed_over,
        Some((t("2026-11-24T02:00:00Z"), t("2026-11-24T02:00:00Z")))
    );
    let in_time = due(
        &j,
        t("2026-11-24T02:00:00Z"),
        t("2026-11-24T02:50:00Z"),
        t(ANCHOR),
    );
    assert_eq!(
        in_time.fire,
        [(t("2026-11-24T02:00:00Z"), Trigger::CatchUp)]
    );
    let all = job("schedule = \"0 * * * *\"\ncatch_up = \"all\"\nstarting_deadline = \"150m\"");
    let some = due(
        &all,
        t("2026-11-24T00:00:00Z"),
        t("2026-11-24T04:10:00Z"),
        t(ANCHOR),
    );
    let fired: Vec<Timestamp> = some.fire.iter().map(|&(t, _)| t).collect();
    assert_eq!(
        fired,
        [
            t("2026-11-24T02:00:00Z"),
            t("2026-11-24T03:00:00Z"),
            t("2026-11-24T04:00:00Z")
        ]
    );
}

#[test]
fn a_gap_of_years_costs_a_handful_of_steps() {
    // A per-second walk over 7 years would not finish within the test runner's patience.
    let j = job("schedule = \"* * * * * *\"");
    let due = due(
        &j,
        t("2020-01-01T00:00:00Z"),
        t("2026-11-24T10:00:00.5Z"),
        t(ANCHOR),
    );
    assert_eq!(due.fire, [(t("2026-11-24T10:00:00Z"), Trigger::Schedule)]);
}
