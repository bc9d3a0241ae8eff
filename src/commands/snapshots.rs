//! What operators see, pinned: the text and `--json` of `list`, `history`, `status` and
//! `logs` for one state file filled through the store's API, under a fixed clock.

use std::path::Path;
use std::time::Duration;

use jiff::Timestamp;
use serde_json::json;

use super::view::{Look, WIDTH};
use super::{history, list, logs, status};
use crate::config::{self, Config};
use crate::procinfo;
use crate::run::{RunId, Trigger};
use crate::store::{Backend, Finish, Instance, NewRun, Recorded, Sqlite};

const JOBS: &str = r#"
[daemon]
timezone = "Europe/Berlin"
[jobs.backup]
schedule = "30 2 * * *"
command = "backup"
[jobs.report]
schedule = "0 9 * * mon-fri"
timezone = "America/New_York"
command = "report"
[jobs.tick]
schedule = "*/10 * * * * *"
command = "true"
[jobs.off]
schedule = "@daily"
command = "true"
enabled = false
[jobs.held]
schedule = "@hourly"
command = "true"
"#;

/// 11:00:05 in Berlin, a Wednesday.
const NOW: &str = "2026-11-25T10:00:05Z";

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// This process as the leader (so that `status` finds it alive), and as a standby.
fn instances() -> (Instance, Instance) {
    let me = procinfo::current_instance(t("2026-11-25T09:00:00Z"));
    let leader = Instance {
        id: "alpha".into(),
        ..me.clone()
    };
    let standby = Instance {
        id: "beta".into(),
        ..me
    };
    (leader, standby)
}

struct Fixture {
    config: Config,
    db: Sqlite,
    _dir: tempfile::TempDir,
}

/// Runs: 1 backup succeeded, 2 report failed (with output and a result), 3 tick skipped,
/// 4 tick running; `held` is paused.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("jobs.toml");
    std::fs::write(&path, JOBS).expect("write");
    let config = config::load(Path::new(&path)).unwrap_or_else(|e| panic!("{e}"));
    let mut db = Sqlite::open(&config.daemon.state).expect("state");
    let (me, standby) = instances();
    let lease = db
        .take_lease(
            &me,
            None,
            Duration::from_secs(45),
            t("2026-11-25T09:00:00Z"),
        )
        .expect("lease")
        .expect("taken");
    db.renew_lease(&me, lease.epoch, Duration::from_secs(45), t(NOW))
        .expect("renew");
    db.register_instance(&me, "leader", t(NOW)).expect("me");
    db.register_instance(&standby, "standby", t("2026-11-25T10:00:01Z"))
        .expect("standby");
    let run = |job: &str, at: &str, trigger, skipped: Option<&str>| NewRun {
        job: job.into(),
        scheduled_for: t(at),
        trigger,
        attempt: 1,
        skipped: skipped.map(str::to_owned),
        trigger_id: None,
    };
    let runs = [
        run("backup", "2026-11-25T01:30:00Z", Trigger::Schedule, None),
        run("report", "2026-11-25T09:41:07Z", Trigger::Manual, None),
        run(
            "tick",
            "2026-11-25T09:59:50Z",
            Trigger::Schedule,
            Some("the previous run (4) is still running"),
        ),
        run("tick", "2026-11-25T09:59:40Z", Trigger::Schedule, None),
    ];
    let recorded = db
        .record_runs(&me, lease.epoch, &runs, t("2026-11-25T09:00:00Z"))
        .expect("record");
    let ids: Vec<RunId> = recorded
        .iter()
        .map(|r| match r {
            Recorded::Created(id) => *id,
            Recorded::AlreadyDecided => panic!("decided twice"),
        })
        .collect();
    let started = [
        (0, "2026-11-25T01:30:00.004Z", 4711),
        (1, "2026-11-25T09:41:07.010Z", 4712),
        (3, "2026-11-25T09:59:40.003Z", 4713),
    ];
    for (i, at, pid) in started {
        db.mark_running(&me, lease.epoch, ids[i], pid, None, t(at))
            .expect("running");
    }
    let finish = |i: usize, state, started: &str, ended: &str, code, tail: &str| Finish {
        run_id: ids[i],
        job: runs[i].job.clone(),
        state,
        started_at: Some(t(started)),
        ended_at: t(ended),
        exit_code: Some(code),
        signal: None,
        reason: (code != 0).then(|| format!("exited with code {code}")),
        output_tail: tail.as_bytes().to_vec(),
        result: (i == 1).then(|| b"{\"rows\":3}\n".to_vec()),
        success: code == 0,
        pause_after: None,
    };
    db.finish_run(
        &finish(
            0,
            "succeeded",
            "2026-11-25T01:30:00.004Z",
            "2026-11-25T01:42:13.500Z",
            0,
            "o copied 1234 files\n",
        ),
        None,
        1000,
    )
    .expect("finish");
    db.finish_run(
        &finish(
            1,
            "failed",
            "2026-11-25T09:41:07.010Z",
            "2026-11-25T09:41:07.052Z",
            3,
            "o line one\ne disk almost full\n",
        ),
        None,
        1000,
    )
    .expect("finish");
    db.set_paused("held", true, None).expect("pause");
    Fixture {
        config,
        db,
        _dir: dir,
    }
}

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn list_text_and_json() {
    let f = fixture();
    let rows = list::gather(&f.config, t(NOW)).expect("gather");
    let text = list::render(&rows, t(NOW), Look::PLAIN);
    assert_eq!(
        lines(&text),
        [
            "JOB     SCHEDULE         ZONE              NEXT                                  LAST",
            "backup  30 2 * * *       Europe/Berlin     11-26 02:30 CET (01:30Z) in 15h       succeeded 8h ago, …",
            "held    @hourly          Europe/Berlin     paused                                -",
            "off     @daily           Europe/Berlin     disabled                              -",
            "report  0 9 * * mon-fri  America/New_York  11-25 09:00 EST (14:00Z) in 3h        failed 18m ago, to…",
            "tick    */10 * * * * *   Europe/Berlin     11-25 11:00:10 CET (10:00:10Z) in 5s  running for 24s",
        ]
    );
    let json = list::to_json(&rows);
    assert_eq!(
        json[0],
        json!({
            "job": "backup", "schedule": "30 2 * * *", "timezone": "Europe/Berlin",
            "enabled": true, "paused": false, "paused_reason": null,
            "next": "2026-11-26T02:30:00+01:00", "next_utc": "2026-11-26T01:30:00Z",
            "last": {
                "run_id": 1, "job": "backup", "state": "succeeded", "trigger": "schedule",
                "attempt": 1, "scheduled_for": "2026-11-25T02:30:00+01:00",
                "started_at": "2026-11-25T01:30:00.004Z", "ended_at": "2026-11-25T01:42:13.500Z",
                "duration_ms": 733_496, "exit_code": 0, "signal": null, "reason": null,
                "pid": 4711,
            },
        })
    );
    assert_eq!(
        (
            &json[1]["paused"],
            &json[1]["paused_reason"],
            &json[1]["next"]
        ),
        (&json!(true), &json!("paused"), &json!(null))
    );
    assert_eq!(json[2]["enabled"], json!(false));
    assert_eq!(json[4]["last"]["state"], json!("running"));
    // On a wide terminal nothing is cut.
    let wide = list::render(
        &rows,
        t(NOW),
        Look {
            color: false,
            width: 200,
        },
    );
    assert!(wide.contains("succeeded 8h ago, took 12m 13s"), "{wide}");
}

#[test]
fn history_text_and_json() {
    let mut f = fixture();
    let runs = f.db.runs(None, 20, false).expect("runs");
    let text = history::render(&f.config, &runs, t(NOW), Look::PLAIN);
    assert_eq!(
        lines(&text),
        [
            "RUN  JOB     SCHEDULED FOR       TRIGGER   STATE      EXIT  TOOK     REASON",
            "4    tick    11-25 10:59:40 CET  schedule  running    -     24s…",
            "3    tick    11-25 10:59:50 CET  schedule  skipped    -     -        the previous run (4) is still …",
            "2    report  11-25 04:41:07 EST  manual    failed     3     42ms     exited with code 3",
            "1    backup  11-25 02:30:00 CET  schedule  succeeded  0     12m 13s",
        ]
    );
    let failed = f.db.runs(None, 20, true).expect("runs");
    assert_eq!(failed.iter().map(|r| r.id.0).collect::<Vec<_>>(), [2]);
    let json = list::run_json(&failed[0], &super::zone_of(&f.config, "report"));
    assert_eq!(
        json,
        json!({
            "run_id": 2, "job": "report", "state": "failed", "trigger": "manual", "attempt": 1,
            "scheduled_for": "2026-11-25T04:41:07-05:00",
            "started_at": "2026-11-25T09:41:07.010Z", "ended_at": "2026-11-25T09:41:07.052Z",
            "duration_ms": 42, "exit_code": 3, "signal": null, "reason": "exited with code 3",
            "pid": 4712,
        })
    );
}

#[test]
fn status_text_and_json() {
    let mut f = fixture();
    let (me, _) = instances();
    let s = status::gather(&mut f.db, t(NOW)).expect("status");
    let text = status::render(&s, t(NOW), Look::PLAIN);
    let (host, pid) = (me.host.as_str(), me.pid);
    assert_eq!(
        text,
        format!(
            "leader    alpha (pid {pid} on {host}), epoch 1, since 2026-11-25 09:00:00 UTC (1h ago)\n\
             standby   beta (pid {pid} on {host}), seen 4s ago\n\
             running   1 run\n\
             RUN  JOB   STATE    PID   STARTED                  AGE\n\
             4    tick  running  4713  2026-11-25 09:59:40 UTC  24s\n"
        )
    );
    let json = status::to_json(&s);
    assert_eq!(json["running_daemon"], json!(true));
    assert_eq!(
        json["leader"],
        json!({
            "instance": "alpha", "host": host, "pid": pid, "epoch": 1,
            "since": "2026-11-25T09:00:00.000Z", "lease_expires_at": "2026-11-25T10:00:50.000Z",
        })
    );
    assert_eq!(json["standbys"][0]["instance"], json!("beta"));
    assert_eq!(
        json["running"],
        json!([{
            "run_id": 4, "job": "tick", "state": "running", "pid": 4713, "instance": "alpha",
            "started_at": "2026-11-25T09:59:40.003Z", "trigger": "schedule", "attempt": 1,
        }])
    );
    // After the lease ran out, nobody leads.
    let later = t("2026-11-25T10:05:00Z");
    let s = status::gather(&mut f.db, later).expect("status");
    assert!(s.leader.is_none());
    assert_eq!(
        lines(&status::render(&s, later, Look::PLAIN))[0],
        format!(
            "no daemon is running: the last leader, alpha (pid {pid} on {host}), held the lease until 4m ago; start one with `schedctl daemon` or `systemctl start schedctl`"
        )
    );
}

#[test]
fn logs_text_and_json() {
    let mut f = fixture();
    let run = f.db.run(RunId(2)).expect("run").expect("exists");
    let (tail, result) = f.db.run_output(RunId(2)).expect("output").expect("kept");
    assert_eq!(
        logs::render(&f.config, &run, &tail, result.as_deref()),
        "run 2 of report (manual, attempt 1, scheduled for 2026-11-25 04:41:07 EST): failed (exited with code 3), took 42ms\n\
         [out] line one\n\
         [err] disk almost full\n\
         result:\n\
         {\"rows\":3}\n"
    );
    let json = logs::to_json(&f.config, &run, &tail, result.as_deref());
    assert_eq!(
        json["output"],
        json!([
            {"stream": "stdout", "text": "line one"},
            {"stream": "stderr", "text": "disk almost full"},
        ])
    );
    assert_eq!(json["result"], json!("{\"rows\":3}\n"));
    let running = f.db.run(RunId(4)).expect("run").expect("exists");
    assert_eq!(
        lines(&logs::render(&f.config, &running, b"", None)),
        [
            "run 4 of tick (schedule, attempt 1, scheduled for 2026-11-25 10:59:40 CET): running",
            "(run 4 is still running; its output is kept when it ends; `schedctl logs 4 --follow` streams it)",
        ]
    );
}

#[test]
fn tables_fit_the_width_and_colour_only_states() {
    let mut f = fixture();
    let rows = list::gather(&f.config, t(NOW)).expect("gather");
    let runs = f.db.runs(None, 20, false).expect("runs");
    for text in [
        list::render(&rows, t(NOW), Look::PLAIN),
        history::render(&f.config, &runs, t(NOW), Look::PLAIN),
    ] {
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH, "{line}");
        }
    }
    let narrow = Look {
        color: false,
        width: 60,
    };
    let cut = history::render(&f.config, &runs, t(NOW), narrow);
    // Too narrow for every column: the flexible one keeps its first 12 characters.
    assert!(cut.contains("  the previou…\n"), "{cut}");
    let coloured = history::render(
        &f.config,
        &runs,
        t(NOW),
        Look {
            color: true,
            width: WIDTH,
        },
    );
    assert!(coloured.contains("\x1b[31mfailed\x1b[0m"), "{coloured}");
    assert!(coloured.contains("\x1b[32msucceeded\x1b[0m"), "{coloured}");
    assert!(!list::render(&rows, t(NOW), Look::PLAIN).contains('\x1b'));
}
