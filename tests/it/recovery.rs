//! Restarts on a fake clock with a real state file: missed instants by `catch_up` and
//! `starting_deadline`, one-off and interval jobs across restarts, retries with backoff.

use std::time::Duration;

use schedctl::run::{RunOutcome, Termination};

use crate::support::fake::{Harness, ts};

const MINUTE: Duration = Duration::from_secs(60);

fn jobs(body: &str) -> String {
    format!("[daemon]\ntimezone = \"UTC\"\n{body}")
}

/// Run `text` at 09:59:30 until its 10:00 instant fired, stop, and start again at `restart`.
async fn restart_at(text: &str, restart: &str) -> Harness {
    let mut h = Harness::start(text, "2026-11-24T09:59:30Z").await;
    h.pass(MINUTE, MINUTE).await;
    let first: Vec<_> = h.fired().into_iter().map(|(_, t)| t).collect();
    assert_eq!(first, [ts("2026-11-24T10:00:00Z")]);
    let dir = h.shut_down().await;
    Harness::start_in(dir, text, restart).await
}

fn triggers(h: &Harness, job: &str) -> Vec<(jiff::Timestamp, String)> {
    let mut runs: Vec<_> = h
        .history()
        .into_iter()
        .filter(|r| r.job == job)
        .map(|r| (r.scheduled_for, r.trigger))
        .collect();
    runs.sort();
    runs
}

#[tokio::test]
async fn after_downtime_latest_runs_the_last_missed_instant_once() {
    let text = jobs("[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\n");
    let mut h = restart_at(&text, "2026-11-24T13:30:00Z").await;
    assert_eq!(
        h.fired(),
        [("hourly".to_owned(), ts("2026-11-24T13:00:00Z"))]
    );
    h.pass(MINUTE * 30, MINUTE).await;
    assert_eq!(
        h.fired(),
        [("hourly".to_owned(), ts("2026-11-24T14:00:00Z"))]
    );
    assert_eq!(
        triggers(&h, "hourly"),
        [
            (ts("2026-11-24T10:00:00Z"), "schedule".to_owned()),
            (ts("2026-11-24T13:00:00Z"), "catch_up".to_owned()),
            (ts("2026-11-24T14:00:00Z"), "schedule".to_owned()),
        ]
    );
}

#[tokio::test]
async fn after_downtime_none_runs_nothing_missed() {
    let text =
        jobs("[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\ncatch_up = \"none\"\n");
    let mut h = restart_at(&text, "2026-11-24T13:30:00Z").await;
    assert!(h.fired().is_empty());
    h.pass(MINUTE * 30, MINUTE).await;
    assert_eq!(
        h.fired(),
        [("hourly".to_owned(), ts("2026-11-24T14:00:00Z"))]
    );
}

#[tokio::test]
async fn after_downtime_all_runs_every_missed_instant_oldest_first() {
    let text = jobs(
        "[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\ncatch_up = \"all\"\noverlap = \"allow\"\n",
    );
    let mut h = restart_at(&text, "2026-11-24T13:30:00Z").await;
    let instants: Vec<_> = h.fired().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        instants,
        [
            ts("2026-11-24T11:00:00Z"),
            ts("2026-11-24T12:00:00Z"),
            ts("2026-11-24T13:00:00Z")
        ]
    );
}

#[tokio::test]
async fn a_missed_instant_older_than_the_starting_deadline_never_starts() {
    let text = jobs(
        "[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\nstarting_deadline = \"20m\"\n",
    );
    let mut h = restart_at(&text, "2026-11-24T13:30:00Z").await;
    assert!(h.fired().is_empty(), "13:00 is 30 minutes old");
}

#[tokio::test]
async fn a_one_off_job_runs_once_ever() {
    let text = jobs("[jobs.once]\nat = \"2026-11-24T10:00:00Z\"\ncommand = \"true\"\n");
    let mut h = restart_at(&text, "2026-11-24T10:05:00Z").await;
    h.pass(MINUTE * 10, MINUTE).await;
    assert!(h.fired().is_empty(), "it already ran before the restart");
    assert_eq!(
        h.last.as_ref().expect("snapshot").next,
        [("once".into(), None)]
    );
}

#[tokio::test]
async fn a_one_off_missed_while_down_runs_once_when_back() {
    let text = jobs(
        "[jobs.once]\nat = \"2026-11-24T11:00:00Z\"\ncommand = \"true\"\n[jobs.anchor]\nschedule = \"0 10 * * *\"\ncommand = \"true\"\n",
    );
    let mut h = Harness::start(&text, "2026-11-24T09:59:30Z").await;
    h.pass(MINUTE, MINUTE).await;
    h.fired();
    let dir = h.shut_down().await;
    let mut h = Harness::start_in(dir, &text, "2026-11-24T11:20:00Z").await;
    assert_eq!(h.fired(), [("once".to_owned(), ts("2026-11-24T11:00:00Z"))]);
    assert_eq!(
        triggers(&h, "once"),
        [(ts("2026-11-24T11:00:00Z"), "catch_up".to_owned())]
    );
    let dir = h.shut_down().await;
    let mut h = Harness::start_in(dir, &text, "2026-11-24T11:40:00Z").await;
    assert!(h.fired().is_empty(), "and only once");
}

#[tokio::test]
async fn every_counts_from_the_first_start_across_restarts() {
    let text =
        jobs("[jobs.every]\nschedule = \"@every 7m\"\ncommand = \"true\"\ncatch_up = \"none\"\n");
    let mut h = Harness::start(&text, "2026-11-24T10:00:00Z").await;
    h.pass(MINUTE * 8, MINUTE).await;
    assert_eq!(
        h.fired(),
        [("every".to_owned(), ts("2026-11-24T10:07:00Z"))]
    );
    let dir = h.shut_down().await;
    let mut h = Harness::start_in(dir, &text, "2026-11-24T10:30:00Z").await;
    h.pass(MINUTE * 6, MINUTE).await;
    assert_eq!(
        h.fired(),
        [("every".to_owned(), ts("2026-11-24T10:35:00Z"))],
        "10:00 + 5 x 7m"
    );
}

#[tokio::test]
async fn a_failed_run_is_retried_after_its_backoff_then_gives_up() {
    let text = jobs(
        "[jobs.flaky]\nschedule = \"0 * * * *\"\ncommand = \"false\"\nretries = 2\nretry_backoff = \"10s\"\n",
    );
    let mut h = Harness::start(&text, "2026-11-24T09:59:30Z").await;
    h.pass(MINUTE, MINUTE).await;
    let fail = |h: &mut Harness| {
        let run = h.started().pop().expect("a run");
        let attempt = (
            run.spec.attempt,
            run.spec.trigger.as_str(),
            run.spec.scheduled_for,
        );
        run.finish(RunOutcome::Finished(Termination::Exit(1)));
        attempt
    };
    assert_eq!(fail(&mut h), (1, "schedule", ts("2026-11-24T10:00:00Z")));
    h.settle().await;
    h.pass(Duration::from_secs(9), Duration::from_secs(1)).await;
    assert!(h.started().is_empty(), "not before its backoff");
    h.pass(Duration::from_secs(1), Duration::from_secs(1)).await;
    assert_eq!(fail(&mut h), (2, "retry", ts("2026-11-24T10:00:00Z")));
    h.settle().await;
    h.pass(Duration::from_secs(20), Duration::from_secs(1))
        .await;
    assert_eq!(
        fail(&mut h),
        (3, "retry", ts("2026-11-24T10:00:00Z")),
        "the backoff doubles: 20s"
    );
    h.settle().await;
    h.pass(MINUTE * 10, MINUTE).await;
    assert!(h.started().is_empty(), "retries = 2: three attempts in all");
    // Nothing of the retries stays behind in the loop for a run-now to claim.
    assert_eq!(h.last.as_ref().expect("snapshot").unclaimed_requests, 0);
}

#[tokio::test]
async fn a_pending_retry_survives_a_restart() {
    let text = jobs(
        "[jobs.flaky]\nschedule = \"0 * * * *\"\ncommand = \"false\"\nretries = 1\nretry_backoff = \"5m\"\n",
    );
    let mut h = Harness::start(&text, "2026-11-24T09:59:30Z").await;
    h.pass(MINUTE, MINUTE).await;
    h.started()
        .pop()
        .expect("a run")
        .finish(RunOutcome::Finished(Termination::Exit(1)));
    h.settle().await;
    let dir = h.shut_down().await;
    let mut h = Harness::start_in(dir, &text, "2026-11-24T10:02:00Z").await;
    assert_eq!(h.last.as_ref().expect("snapshot").waiting_triggers, 1);
    h.pass(MINUTE * 4, MINUTE).await;
    let run = h.started().pop().expect("the retry");
    assert_eq!((run.spec.attempt, run.spec.trigger.as_str()), (2, "retry"));
}
