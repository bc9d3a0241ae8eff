//! The SQLite backend against the contract: migrations, refusing bad files, the lease and
//! its fencing, one decision per scheduled instant, history pruning.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::run::Trigger;
use crate::store::{Abandon, Backend, Instance, NewRun, NewTrigger, Recorded, StoreError};

fn t(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn instance(id: &str) -> Instance {
    Instance {
        id: id.to_owned(),
        host: "host".to_owned(),
        pid: 100,
        pid_start: Some(5),
        boot_id: "boot".to_owned(),
        started_at: t("2026-11-24T10:00:00Z"),
    }
}

fn scheduled(job: &str, at: &str) -> NewRun {
    NewRun {
        job: job.to_owned(),
        scheduled_for: t(at),
        trigger: Trigger::Schedule,
        attempt: 1,
        skipped: None,
        trigger_id: None,
    }
}

/// Job `j`'s run `run_id` that exited 1 at `at`; the job pauses after `pause_after` such
/// runs in a row.
fn failed(run_id: RunId, at: Timestamp, pause_after: Option<u32>) -> Finish {
    Finish {
        state: "failed",
        exit_code: Some(1),
        reason: Some("exited with code 1".into()),
        success: false,
        pause_after,
        ..Finish::succeeded(run_id, "j", Some(at), at)
    }
}

/// The second attempt of job `j`'s instant `at`, due at once.
fn retry_at(at: Timestamp) -> NewTrigger {
    NewTrigger {
        job: "j".into(),
        kind: Trigger::Retry,
        not_before: at,
        scheduled_for: at,
        attempt: 2,
        origin: None,
    }
}

const TTL: Duration = Duration::from_secs(45);

fn leader(db: &mut Sqlite, me: &Instance) -> i64 {
    db.register_instance(me, "standby", t("2026-11-24T10:00:00Z"))
        .expect("register");
    let expected = db.lease().expect("lease");
    db.take_lease(me, expected.as_ref(), TTL, t("2026-11-24T10:00:00Z"))
        .expect("take")
        .expect("taken")
        .epoch
}

#[test]
fn migrations_bring_a_new_database_to_the_current_version() {
    let db = Sqlite::in_memory();
    let version: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, schema::current_version());
}

#[test]
fn a_state_file_of_the_first_version_gets_the_history_indexes_and_keeps_its_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    {
        let conn = Connection::open(&path).expect("create");
        conn.execute_batch(schema::MIGRATIONS[0])
            .expect("version 1");
        conn.execute_batch(
            "INSERT INTO runs (job, scheduled_for, trigger, attempt, state, instance, epoch, boot_id, created_at, ended_at)
             VALUES ('a', 1, 'schedule', 1, 'succeeded', 'i', 1, 'b', 1, 2);
             PRAGMA user_version = 1;",
        )
        .expect("a run");
    }
    let mut db = Sqlite::open(&path).expect("open");
    let version: i64 = db
        .conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 2);
    let indexes: i64 = db
        .conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name IN ('runs_finished_by_job', 'triggers_by_run')",
            [],
            |r| r.get(0),
        )
        .expect("indexes");
    assert_eq!(indexes, 2);
    assert_eq!(db.runs(Some("a"), 10, false).expect("runs").len(), 1);
}

#[test]
fn trimming_history_reads_an_index_of_finished_runs_not_the_table() {
    let db = Sqlite::in_memory();
    let plan = |sql: &str| -> Vec<String> {
        let mut stmt = db
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        stmt.query_map(params!["a", 1000], |r| r.get::<_, String>(3))
            .expect("rows")
            .collect::<rusqlite::Result<_>>()
            .expect("plan rows")
    };
    let cutoff = plan(HISTORY_CUTOFF);
    assert!(
        cutoff
            .iter()
            .any(|l| l.starts_with("SEARCH runs USING") && l.contains("INDEX runs_finished_by_job")),
        "{cutoff:#?}"
    );
    for delete in [TRIM_REQUESTS, TRIM_RUNS] {
        let steps = plan(delete);
        let searches: Vec<&String> = steps.iter().filter(|l| l.starts_with("SEARCH")).collect();
        assert!(
            !searches.is_empty()
                && !steps.iter().any(|l| l.starts_with("SCAN"))
                && searches.iter().all(|l| {
                    l.contains("INDEX runs_finished_by_job") || l.contains("INDEX triggers_by_run")
                }),
            "{steps:#?}"
        );
    }
}

#[test]
fn a_run_now_request_goes_with_its_run_when_the_history_is_trimmed() {
    let mut db = Sqlite::in_memory();
    let a = instance("a");
    let epoch = leader(&mut db, &a);
    let at = t("2026-11-24T10:00:00Z");
    let request = db
        .add_trigger(
            &NewTrigger {
                job: "j".into(),
                kind: Trigger::Manual,
                not_before: at,
                scheduled_for: at,
                attempt: 1,
                origin: None,
            },
            at,
        )
        .expect("request");
    let run = |db: &mut Sqlite, i: i64, trigger: Trigger, trigger_id: Option<i64>| {
        let when = at + SignedDuration::from_mins(i);
        let new = NewRun {
            trigger,
            trigger_id,
            ..scheduled("j", &when.to_string())
        };
        let [Recorded::Created(id)] = db.record_runs(&a, epoch, &[new], when).expect("record")[..]
        else {
            panic!("created");
        };
        db.finish_run(&Finish::succeeded(id, "j", Some(when), when), None, 2)
            .expect("finish");
        id
    };
    let manual = run(&mut db, 0, Trigger::Manual, Some(request.id));
    assert_eq!(
        db.trigger_run(request.id).expect("read"),
        Some(Some(manual))
    );
    run(&mut db, 1, Trigger::Schedule, None);
    assert_eq!(
        db.trigger_run(request.id).expect("read"),
        Some(Some(manual)),
        "kept while its run is"
    );
    run(&mut db, 2, Trigger::Schedule, None);
    assert!(db.run(manual).expect("read").is_none(), "history_limit = 2");
    assert_eq!(db.trigger_run(request.id).expect("read"), None);
}

#[test]
fn instances_not_seen_for_long_are_forgotten_unless_they_lead_or_own_an_unfinished_run() {
    let mut db = Sqlite::in_memory();
    let (gone, owner, holder, recent) = (
        instance("gone"),
        instance("owner"),
        instance("holder"),
        instance("recent"),
    );
    let old = t("2026-11-01T10:00:00Z");
    db.register_instance(&gone, "stopped", old).expect("gone");
    db.register_instance(&owner, "standby", old).expect("owner");
    db.register_instance(&recent, "standby", t("2026-11-24T09:00:00Z"))
        .expect("recent");
    leader(&mut db, &holder);
    db.conn
        .execute(
            "UPDATE instances SET seen_at = ?1 WHERE id = 'holder'",
            params![to_millis(old)],
        )
        .expect("holder seen long ago");
    db.conn
        .execute(
            "INSERT INTO runs (job, scheduled_for, trigger, attempt, state, instance, epoch, boot_id, created_at)
             VALUES ('j', 1, 'schedule', 1, 'running', 'owner', 1, 'b', 1)",
            [],
        )
        .expect("a run of owner's");
    let forgotten = db
        .forget_instances(t("2026-11-17T10:00:00Z"))
        .expect("forget");
    assert_eq!(forgotten, 1);
    let mut left: Vec<String> = db
        .instances()
        .expect("instances")
        .into_iter()
        .map(|i| i.id)
        .collect();
    left.sort();
    assert_eq!(left, ["holder", "owner", "recent"]);
}

#[test]
fn reopening_keeps_data_and_does_not_migrate_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let mut db = Sqlite::open(&path).expect("open");
    db.meta_init("first_start", "x").expect("meta");
    drop(db);
    let mut db = Sqlite::open(&path).expect("reopen");
    assert_eq!(db.meta("first_start").expect("meta"), Some("x".to_owned()));
    let mode: String = db
        .conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
}

#[test]
fn a_new_file_is_created_without_fsyncs_and_then_runs_with_synchronous_normal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.db");
    let synchronous = |db: &Sqlite| -> i64 {
        db.conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous")
    };
    let db = Sqlite::open(&path).expect("create");
    assert_eq!(synchronous(&db), 1, "NORMAL once created");
    drop(db);
    let db = Sqlite::open(&path).expect("reopen");
    assert_eq!(synchronous(&db), 1, "NORMAL when reopened");
}

#[test]
fn bad_state_paths_are_refused_with_the_path_and_the_fix_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();

    let err = Sqlite::open(d)
        .err()
        .expect("a directory is refused")
        .to_string();
    assert!(
        err.starts_with(&format!("state path `{}` is a directory;", d.display())),
        "{err}"
    );

    let junk = d.join("junk.db");
    std::fs::write(&junk, b"this is not a database at all").expect("write");
    let err = Sqlite::open(&junk).err().expect("refused").to_string();
    assert!(
        err.contains("is not a SQLite database") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&junk).expect("read"),
        b"this is not a database at all"
    );

    let missing = d.join("no/such/dir/state.db");
    let err = Sqlite::open(&missing).err().expect("refused").to_string();
    assert!(err.contains("does not exist; create it"), "{err}");

    let newer = d.join("newer.db");
    drop(Sqlite::open(&newer).expect("create"));
    let conn = Connection::open(&newer).expect("raw");
    conn.pragma_update(None, "user_version", 99).expect("set");
    drop(conn);
    let err = Sqlite::open(&newer).err().expect("refused").to_string();
    assert!(
        err.contains("has schema version 99, newer than this schedctl knows"),
        "{err}"
    );
}

#[test]
fn the_first_taker_gets_epoch_1_and_a_stale_view_loses() {
    let mut db = Sqlite::in_memory();
    let (a, b) = (instance("a"), instance("b"));
    assert_eq!(leader(&mut db, &a), 1);
    // b read "no lease" before a took it: its attempt must fail.
    assert_eq!(
        db.take_lease(&b, None, TTL, t("2026-11-24T10:00:01Z"))
            .expect("take"),
        None
    );
    assert!(matches!(
        db.renew_lease(&b, 1, TTL, t("2026-11-24T10:00:01Z")),
        Err(StoreError::Fenced(1))
    ));
    let lease = db
        .renew_lease(&a, 1, TTL, t("2026-11-24T10:00:15Z"))
        .expect("renew");
    assert_eq!(lease.expires_at, t("2026-11-24T10:01:00Z"));
}

#[test]
fn a_takeover_fences_the_old_leader() {
    let mut db = Sqlite::in_memory();
    let (a, b) = (instance("a"), instance("b"));
    let old = leader(&mut db, &a);
    db.register_instance(&b, "standby", t("2026-11-24T10:00:30Z"))
        .expect("register");
    let seen = db.lease().expect("lease");
    let new = db
        .take_lease(&b, seen.as_ref(), TTL, t("2026-11-24T10:01:00Z"))
        .expect("take")
        .expect("taken");
    assert_eq!(new.epoch, old + 1);
    assert!(matches!(
        db.renew_lease(&a, old, TTL, t("2026-11-24T10:01:01Z")),
        Err(StoreError::Fenced(_))
    ));
    let fenced = db.record_runs(
        &a,
        old,
        &[scheduled("j", "2026-11-24T10:02:00Z")],
        t("2026-11-24T10:02:00Z"),
    );
    assert!(matches!(fenced, Err(StoreError::Fenced(_))));
    assert!(
        db.runs(None, 10, false).expect("runs").is_empty(),
        "nothing was recorded by the fenced leader"
    );
    let instances = db.instances().expect("instances");
    let roles: Vec<(&str, &str)> = instances
        .iter()
        .map(|i| (i.id.as_str(), i.role.as_str()))
        .collect();
    assert_eq!(roles, [("a", "standby"), ("b", "leader")]);
}

#[test]
fn an_instant_is_decided_once_ever() {
    let mut db = Sqlite::in_memory();
    let a = instance("a");
    let epoch = leader(&mut db, &a);
    let now = t("2026-11-24T10:02:00Z");
    let first = db
        .record_runs(&a, epoch, &[scheduled("j", "2026-11-24T10:02:00Z")], now)
        .expect("record");
    assert!(matches!(first[..], [Recorded::Created(_)]));
    let mut manual = scheduled("j", "2026-11-24T10:02:00Z");
    manual.trigger = Trigger::Manual;
    let mut skipped = scheduled("k", "2026-11-24T10:02:00Z");
    skipped.skipped = Some("paused".to_owned());
    let again = db
        .record_runs(
            &a,
            epoch,
            &[scheduled("j", "2026-11-24T10:02:00Z"), manual, skipped],
            now,
        )
        .expect("record");
    assert_eq!(again[0], Recorded::AlreadyDecided);
    assert!(
        matches!(again[1], Recorded::Created(_)),
        "a manual run of the same instant is its own run"
    );
    assert!(matches!(again[2], Recorded::Created(_)));
    let states: Vec<(String, String)> = db
        .runs(None, 10, false)
        .expect("runs")
        .into_iter()
        .map(|r| (r.job, r.state))
        .collect();
    assert_eq!(
        states,
        [
            ("k".into(), "skipped".into()),
            ("j".into(), "pending".into()),
            ("j".into(), "pending".into())
        ]
    );
    let fired: Vec<_> = db
        .job_states()
        .expect("states")
        .into_iter()
        .map(|s| (s.job, s.last_fired))
        .collect();
    assert_eq!(
        fired,
        [
            ("j".to_owned(), Some(t("2026-11-24T10:02:00Z"))),
            ("k".to_owned(), Some(t("2026-11-24T10:02:00Z")))
        ]
    );
}

#[test]
fn finishing_records_the_outcome_counts_failures_and_prunes_history() {
    let mut db = Sqlite::in_memory();
    let a = instance("a");
    let epoch = leader(&mut db, &a);
    let start = t("2026-11-24T10:00:00Z");
    let mut ids = Vec::new();
    for i in 0..5 {
        let at = start + SignedDuration::from_mins(i);
        let [Recorded::Created(id)] = db
            .record_runs(&a, epoch, &[scheduled("j", &at.to_string())], at)
            .expect("record")[..]
        else {
            panic!("created");
        };
        db.mark_running(&a, epoch, id, 4242, Some(77), at)
            .expect("running");
        let failed = i % 2 == 1;
        db.finish_run(
            &Finish {
                run_id: id,
                job: "j".into(),
                state: if failed { "failed" } else { "succeeded" },
                started_at: Some(at),
                ended_at: at + SignedDuration::from_secs(3),
                exit_code: Some(i32::from(failed)),
                signal: None,
                reason: failed.then(|| "exited with code 1".to_owned()),
                output_tail: b"ohello\n".to_vec(),
                result: None,
                success: !failed,
                pause_after: None,
            },
            None,
            3,
        )
        .expect("finish");
        ids.push(id);
    }
    let runs = db.runs(Some("j"), 10, false).expect("runs");
    let kept: Vec<_> = runs.iter().map(|r| r.id).collect();
    assert_eq!(
        kept,
        [ids[4], ids[3], ids[2]],
        "history_limit = 3 keeps the newest three"
    );
    assert_eq!(runs[1].state, "failed");
    assert_eq!(runs[1].pid, Some(4242));
    assert_eq!(runs[1].exit_code, Some(1));
    let state = db.job_states().expect("states").pop().expect("j");
    assert_eq!(state.consecutive_failures, 0, "the last run succeeded");
}

#[test]
fn runs_of_an_old_epoch_can_be_abandoned_by_the_new_leader_only() {
    let mut db = Sqlite::in_memory();
    let (a, b) = (instance("a"), instance("b"));
    let old = leader(&mut db, &a);
    let [Recorded::Created(id)] = db
        .record_runs(
            &a,
            old,
            &[scheduled("j", "2026-11-24T10:02:00Z")],
            t("2026-11-24T10:02:00Z"),
        )
        .expect("record")[..]
    else {
        panic!("created");
    };
    let seen = db.lease().expect("lease");
    let new = db
        .take_lease(&b, seen.as_ref(), TTL, t("2026-11-24T10:03:00Z"))
        .expect("take")
        .expect("taken")
        .epoch;
    let active = db.active_runs().expect("active");
    assert_eq!(active.len(), 1);
    assert_eq!((active[0].epoch, active[0].instance.as_str()), (old, "a"));
    let stale = Abandon {
        run_id: id,
        job: "j".into(),
        reason: "x".into(),
        retry: None,
    };
    assert!(matches!(
        db.abandon_runs(&a, old, &[stale], t("2026-11-24T10:03:00Z")),
        Err(StoreError::Fenced(_))
    ));
    let retry = NewTrigger {
        job: "j".into(),
        kind: Trigger::Retry,
        not_before: t("2026-11-24T10:03:10Z"),
        scheduled_for: t("2026-11-24T10:02:00Z"),
        attempt: 2,
        origin: Some(format!("retry of run {id}")),
    };
    let abandon = Abandon {
        run_id: id,
        job: "j".into(),
        reason: "lost with its leader".into(),
        retry: Some(retry.clone()),
    };
    let retries = db
        .abandon_runs(&b, new, &[abandon], t("2026-11-24T10:03:00Z"))
        .expect("abandon");
    assert_eq!(retries.len(), 1);
    assert_eq!(db.pending_triggers().expect("triggers"), retries);
    assert_eq!(
        (
            retries[0].attempt,
            retries[0].kind,
            retries[0].scheduled_for
        ),
        (2, Trigger::Retry, retry.scheduled_for)
    );
    let run = db.run(id).expect("run").expect("exists");
    assert_eq!(
        (run.state.as_str(), run.reason.as_deref()),
        ("abandoned", Some("lost with its leader"))
    );
    assert!(db.active_runs().expect("active").is_empty());
}

#[test]
fn pausing_counts_a_change_and_max_failures_pauses_without_a_retry() {
    let mut db = Sqlite::in_memory();
    let a = instance("a");
    let epoch = leader(&mut db, &a);
    assert_eq!(db.changes().expect("changes"), 0);
    assert!(db.set_paused("j", true, Some("by hand")).expect("pause"));
    assert!(
        !db.set_paused("j", true, Some("again")).expect("pause"),
        "already paused"
    );
    assert_eq!(db.changes().expect("changes"), 2);
    let state = db.job_states().expect("states").pop().expect("j");
    assert_eq!(
        (state.paused, state.paused_reason.as_deref()),
        (true, Some("by hand"))
    );
    assert!(db.set_paused("j", false, None).expect("resume"));

    let mut fail = |at: &str| {
        let [Recorded::Created(id)] = db
            .record_runs(&a, epoch, &[scheduled("j", at)], t(at))
            .expect("record")[..]
        else {
            panic!("created");
        };
        db.finish_run(&failed(id, t(at), Some(2)), Some(&retry_at(t(at))), 10)
            .expect("finish")
    };
    let first = fail("2026-11-24T10:01:00Z");
    assert!(!first.paused && first.retry.is_some());
    let second = fail("2026-11-24T10:02:00Z");
    assert!(second.paused, "the second consecutive failure pauses");
    assert_eq!(second.retry, None, "a paused job is not retried");
    let state = db.job_states().expect("states").pop().expect("j");
    assert_eq!(
        state.paused_reason.as_deref(),
        Some("paused after 2 consecutive failed runs")
    );
}

#[test]
fn processes_opening_a_new_file_at_once_migrate_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("race.db");
    let openers: Vec<_> = (0..8)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || Sqlite::open(&path).map(|_| ()).map_err(|e| e.to_string()))
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().expect("thread"), Ok(()));
    }
}

/// The SQL of the statements `db`'s connection holds compiled (its statement cache).
fn compiled(db: &Sqlite) -> std::collections::BTreeSet<String> {
    let mut sql = std::collections::BTreeSet::new();
    // SAFETY: walks the connection's own list of statements, reading each one's SQL text
    // (owned by SQLite, copied out at once); nothing is prepared or finalized meanwhile.
    unsafe {
        let handle = db.conn.handle();
        let mut stmt = rusqlite::ffi::sqlite3_next_stmt(handle, std::ptr::null_mut());
        while !stmt.is_null() {
            let text = std::ffi::CStr::from_ptr(rusqlite::ffi::sqlite3_sql(stmt));
            sql.insert(text.to_string_lossy().into_owned());
            stmt = rusqlite::ffi::sqlite3_next_stmt(handle, stmt);
        }
    }
    sql
}

#[test]
fn the_statements_compiled_ahead_are_the_ones_recording_runs_uses() {
    let listed: std::collections::BTreeSet<String> =
        RUN_STATEMENTS.iter().map(|s| s.to_string()).collect();
    let mut warmed = Sqlite::in_memory();
    warmed.prepare_run_statements().expect("prepare");
    assert!(compiled(&warmed).is_superset(&listed));

    // Every path of recording a run: a decision for an instant and one for a request, a
    // start, a failure with a retry, a failure that pauses the job, a history trimmed.
    let mut db = Sqlite::in_memory();
    let a = instance("a");
    let epoch = leader(&mut db, &a);
    let before = compiled(&db);
    let at = t("2026-11-24T10:00:00Z");
    let [Recorded::Created(first)] = db
        .record_runs(&a, epoch, &[scheduled("j", "2026-11-24T10:00:00Z")], at)
        .expect("record")[..]
    else {
        panic!("created");
    };
    let retry = db
        .finish_run(&failed(first, at, None), Some(&retry_at(at)), 1)
        .expect("finish")
        .retry
        .expect("a retry");
    let again = NewRun {
        trigger: Trigger::Retry,
        attempt: 2,
        trigger_id: Some(retry.id),
        ..scheduled("j", "2026-11-24T10:00:00Z")
    };
    let [Recorded::Created(second)] = db.record_runs(&a, epoch, &[again], at).expect("record")[..]
    else {
        panic!("created");
    };
    db.mark_running(&a, epoch, second, 7, None, at)
        .expect("running");
    let paused = db
        .finish_run(&failed(second, at, Some(2)), None, 1)
        .expect("finish");
    assert!(paused.paused, "the pausing statement ran");
    assert!(db.run(first).expect("read").is_none(), "history trimmed");
    let used: std::collections::BTreeSet<String> =
        compiled(&db).difference(&before).cloned().collect();
    assert_eq!(used, listed);
}
