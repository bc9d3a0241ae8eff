//! The loop on a fake clock: when jobs fire, what a clock step does, overlap, reload and
//! shutdown. No processes, no real waiting.

use std::time::Duration;

use schedctl::run::{RunOutcome, StopCause, Termination};
use schedctl::scheduler::Control;

use crate::support::PATIENCE;
use crate::support::fake::{Harness, ts};

const MINUTE: Duration = Duration::from_secs(60);

fn jobs(body: &str) -> String {
    format!("[daemon]\ntimezone = \"UTC\"\nshutdown_grace = \"30s\"\n{body}")
}

#[tokio::test]
async fn a_job_fires_once_at_each_of_its_instants() {
    let mut h = Harness::start(
        &jobs("[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:30:00Z",
    )
    .await;
    h.pass(MINUTE * 29, MINUTE).await;
    assert!(h.fired().is_empty(), "nothing before 11:00");
    h.pass(MINUTE * 90, MINUTE).await;
    assert_eq!(
        h.fired(),
        [
            ("hourly".to_owned(), ts("2026-11-24T11:00:00Z")),
            ("hourly".to_owned(), ts("2026-11-24T12:00:00Z"))
        ]
    );
}

#[tokio::test]
async fn seconds_field_fires_every_second() {
    let mut h = Harness::start(
        &jobs("[jobs.tick]\nschedule = \"*/2 * * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:00:00.500Z",
    )
    .await;
    h.pass(Duration::from_secs(6), Duration::from_millis(250))
        .await;
    let instants: Vec<_> = h.fired().into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        instants,
        [
            ts("2026-11-24T10:00:02Z"),
            ts("2026-11-24T10:00:04Z"),
            ts("2026-11-24T10:00:06Z")
        ]
    );
}

#[tokio::test]
async fn runs_are_decided_just_ahead_of_their_instant_and_start_at_it() {
    let mut h = Harness::start(
        &jobs("[jobs.hourly]\nschedule = \"0 * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:59:00Z",
    )
    .await;
    // 3 ms before the instant the run is decided and recorded; the loop then waits for
    // the instant (and answers nothing meanwhile, so this reads the store).
    h.clock.set(ts("2026-11-24T10:59:59.997Z"));
    let deadline = std::time::Instant::now() + PATIENCE;
    while h.history().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the run was not recorded ahead"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let recorded = h.history().remove(0);
    assert_eq!(recorded.scheduled_for, ts("2026-11-24T11:00:00Z"));
    assert_eq!(recorded.created_at, ts("2026-11-24T10:59:59.997Z"));
    h.set_time("2026-11-24T11:00:00Z").await;
    let started = h.started();
    assert_eq!(started.len(), 1);
    assert_eq!(
        started[0].started_at,
        ts("2026-11-24T11:00:00Z"),
        "started at the instant, not when decided"
    );
    // 6 ms ahead is too early to decide.
    h.set_time("2026-11-24T11:59:59.994Z").await;
    assert_eq!(h.history().len(), 1);
    assert!(h.started().is_empty());
}

#[tokio::test]
async fn each_job_fires_in_its_own_time_zone_across_dst() {
    let mut h = Harness::start(
        &jobs(
            "[jobs.ny]\nschedule = \"30 2 * * *\"\ncommand = \"true\"\ntimezone = \"America/New_York\"\n\
             [jobs.london]\nschedule = \"30 1 * * *\"\ncommand = \"true\"\ntimezone = \"Europe/London\"\n",
        ),
        "2026-03-07T12:00:00Z",
    )
    .await;
    // Walk three days in 10-minute steps: New York springs forward on 2026-03-08.
    h.pass(Duration::from_secs(3 * 86_400), MINUTE * 10).await;
    let mut fired = h.fired();
    fired.sort();
    assert_eq!(
        fired,
        [
            ("london".to_owned(), ts("2026-03-08T01:30:00Z")),
            ("london".to_owned(), ts("2026-03-09T01:30:00Z")),
            ("london".to_owned(), ts("2026-03-10T01:30:00Z")),
            // 02:30 does not exist on 2026-03-08: it runs once at 03:00 EDT (07:00Z).
            ("ny".to_owned(), ts("2026-03-08T07:00:00Z")),
            ("ny".to_owned(), ts("2026-03-09T06:30:00Z")),
            ("ny".to_owned(), ts("2026-03-10T06:30:00Z")),
        ]
    );
}

#[tokio::test]
async fn a_forward_clock_jump_fires_a_missed_job_once_for_its_latest_instant() {
    let mut h = Harness::start(
        &jobs("[jobs.five]\nschedule = \"*/5 * * * *\"\ncommand = \"true\"\n[jobs.daily]\nschedule = \"0 0 * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    // A suspend or an NTP step: 13 instants of `five` and one of `daily` pass unseen.
    h.set_time("2026-11-25T11:07:00Z").await;
    let mut fired = h.fired();
    fired.sort();
    assert_eq!(
        fired,
        [
            ("daily".to_owned(), ts("2026-11-25T00:00:00Z")),
            ("five".to_owned(), ts("2026-11-25T11:05:00Z"))
        ]
    );
    h.pass(MINUTE * 3, MINUTE).await;
    assert_eq!(h.fired(), [("five".to_owned(), ts("2026-11-25T11:10:00Z"))]);
}

#[tokio::test]
async fn a_backward_clock_step_fires_nothing_twice() {
    let mut h = Harness::start(
        &jobs("[jobs.minutely]\nschedule = \"* * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.set_time("2026-11-24T10:01:00Z").await;
    assert_eq!(
        h.fired(),
        [("minutely".to_owned(), ts("2026-11-24T10:01:00Z"))]
    );
    h.set_time("2026-11-24T09:58:30Z").await;
    h.pass(MINUTE * 4, Duration::from_secs(10)).await;
    assert_eq!(
        h.fired(),
        [("minutely".to_owned(), ts("2026-11-24T10:02:00Z"))],
        "09:59..10:01 already ran"
    );
}

#[tokio::test]
async fn overlap_skip_skips_while_the_previous_run_runs() {
    let mut h = Harness::start(
        &jobs("[jobs.slow]\nschedule = \"* * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.pass(MINUTE, MINUTE).await;
    let held = h.started();
    assert_eq!(held.len(), 1);
    h.pass(MINUTE * 2, MINUTE).await;
    assert!(
        h.started().is_empty(),
        "10:02 and 10:03 are skipped while 10:01 runs"
    );
    drop(held);
    h.settle().await;
    h.pass(MINUTE, MINUTE).await;
    assert_eq!(h.fired(), [("slow".to_owned(), ts("2026-11-24T10:04:00Z"))]);
}

#[tokio::test]
async fn overlap_allow_runs_both() {
    let mut h = Harness::start(
        &jobs("[jobs.par]\nschedule = \"* * * * *\"\ncommand = \"true\"\noverlap = \"allow\"\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.pass(MINUTE, MINUTE).await;
    let first = h.started();
    h.pass(MINUTE, MINUTE).await;
    let second = h.started();
    assert_eq!((first.len(), second.len()), (1, 1));
    assert_ne!(first[0].spec.run_id, second[0].spec.run_id);
}

#[tokio::test]
async fn a_disabled_job_never_fires() {
    let mut h = Harness::start(
        &jobs("[jobs.off]\nschedule = \"* * * * *\"\ncommand = \"true\"\nenabled = false\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.pass(MINUTE * 5, MINUTE).await;
    assert!(h.fired().is_empty());
}

#[tokio::test]
async fn reload_adds_removes_and_reschedules_without_firing_twice() {
    let mut h = Harness::start(
        &jobs(
            "[jobs.keep]\nschedule = \"*/10 * * * *\"\ncommand = \"true\"\n\
             [jobs.gone]\nschedule = \"* * * * *\"\ncommand = \"true\"\n\
             [jobs.moved]\nschedule = \"0 12 * * *\"\ncommand = \"true\"\n",
        ),
        "2026-11-24T10:05:00Z",
    )
    .await;
    h.rewrite_config(&jobs(
        "[jobs.keep]\nschedule = \"*/10 * * * *\"\ncommand = \"echo changed command\"\n\
         [jobs.moved]\nschedule = \"7 10 * * *\"\ncommand = \"true\"\n\
         [jobs.new]\nschedule = \"8 10 * * *\"\ncommand = \"true\"\n",
    ));
    h.send(Control::Reload).await;
    h.pass(MINUTE * 5, MINUTE).await;
    let fired = h.started();
    let seen: Vec<(String, jiff::Timestamp)> = fired
        .iter()
        .map(|r| (r.job().to_owned(), r.spec.scheduled_for))
        .collect();
    assert_eq!(
        seen,
        [
            ("moved".to_owned(), ts("2026-11-24T10:07:00Z")),
            ("new".to_owned(), ts("2026-11-24T10:08:00Z")),
            ("keep".to_owned(), ts("2026-11-24T10:10:00Z")),
        ]
    );
    assert_eq!(
        fired[2].spec.job.command,
        schedctl::config::CommandLine::Shell("echo changed command".into()),
        "the new definition applies to the next run"
    );
}

#[tokio::test]
async fn an_invalid_reload_keeps_the_running_configuration() {
    let mut h = Harness::start(
        &jobs("[jobs.a]\nschedule = \"* * * * *\"\ncommand = \"true\"\n"),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.rewrite_config("[jobs.a]\nschedule = \"not a schedule\"\n");
    h.send(Control::Reload).await;
    h.pass(MINUTE, MINUTE).await;
    assert_eq!(h.fired(), [("a".to_owned(), ts("2026-11-24T10:01:00Z"))]);
}

#[tokio::test]
async fn stop_waits_for_running_runs_then_stops_them_after_the_grace() {
    let mut h = Harness::start(
        &jobs("[jobs.long]\nschedule = \"* * * * *\"\ncommand = \"true\"\n")
            .replace("shutdown_grace = \"30s\"", "shutdown_grace = \"2s\""),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.pass(MINUTE, MINUTE).await;
    let mut run = h.started().pop().expect("a run");
    h.request_stop().await;
    h.clock.advance(MINUTE * 5);
    assert_eq!(
        *run.stop.borrow(),
        None,
        "within the grace period the run is left alone"
    );
    let stopped = tokio::time::timeout(PATIENCE, run.stop.wait_for(Option::is_some)).await;
    assert_eq!(
        *stopped.expect("stopped within patience").expect("open"),
        Some(StopCause::Shutdown)
    );
    drop(run);
    h.join().await;
}

#[tokio::test]
async fn a_second_stop_request_cuts_the_grace_short() {
    let mut h = Harness::start(
        &jobs("[jobs.long]\nschedule = \"* * * * *\"\ncommand = \"true\"\n")
            .replace("shutdown_grace = \"30s\"", "shutdown_grace = \"1h\""),
        "2026-11-24T10:00:30Z",
    )
    .await;
    h.pass(MINUTE, MINUTE).await;
    let mut run = h.started().pop().expect("a run");
    h.request_stop().await;
    assert_eq!(*run.stop.borrow(), None);
    h.request_stop().await;
    let stopped = tokio::time::timeout(PATIENCE, run.stop.wait_for(Option::is_some)).await;
    assert_eq!(
        *stopped
            .expect("stopped long before the 1h grace")
            .expect("open"),
        Some(StopCause::Shutdown)
    );
    run.finish(RunOutcome::Finished(Termination::Signal(15)));
    h.join().await;
}

#[tokio::test]
async fn a_burst_larger_than_one_record_chunk_fires_each_job_once_and_records_each_run() {
    // The loop records a large batch in transactions of doubling size (here 32, 64, 4):
    // every run must be started once and recorded once, whichever part it was in.
    let body: String = (0..100)
        .map(|i| format!("[jobs.j{i:03}]\nschedule = \"0 11 * * *\"\ncommand = \"true\"\n"))
        .collect();
    let mut h = Harness::start(&jobs(&body), "2026-11-24T10:59:00Z").await;
    h.pass(MINUTE * 2, MINUTE).await;
    let mut fired: Vec<String> = h.fired().into_iter().map(|(job, _)| job).collect();
    fired.sort();
    let expected: Vec<String> = (0..100).map(|i| format!("j{i:03}")).collect();
    assert_eq!(fired, expected);
    let mut recorded: Vec<String> = h.history().into_iter().map(|r| r.job).collect();
    recorded.sort();
    assert_eq!(recorded, expected);
}
