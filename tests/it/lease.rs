//! Several daemons on one state file: one leader fires, nothing fires twice, a dead leader
//! is replaced at once, a frozen one is fenced, runs lost with a leader are abandoned and
//! retried, and bad state files are refused.

use std::collections::BTreeMap;

use nix::sys::signal::Signal;

use crate::support::{Daemon, TestEnv, wait_process_exit};

/// The state file the daemon would use for `env`, created at the current schema and
/// opened with plain SQLite, to be changed behind the daemon's back.
fn raw_state(env: &TestEnv) -> rusqlite::Connection {
    let state = env.dir().join("schedctl.db");
    drop(schedctl::store::Sqlite::open(&state).expect("create"));
    rusqlite::Connection::open(&state).expect("raw")
}

/// A per-second job that appends its scheduled instant to `fired.log`.
fn ticking(env: TestEnv, extra: &[(&str, &str)]) -> TestEnv {
    let log = env.path("fired.log");
    env.job_with(
        "tick",
        "* * * * * *",
        &format!("echo \"$SCHEDCTL_SCHEDULED_FOR\" >> {}", log.display()),
        extra,
    )
}

/// How many times each instant was run, from `fired.log`.
fn fired(env: &TestEnv) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(env.path("fired.log")).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.to_owned()).or_insert(0) += 1;
    }
    counts
}

fn assert_each_instant_once(env: &TestEnv) -> usize {
    let counts = fired(env);
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "instants run more than once: {twice:?}");
    counts.len()
}

fn leader(env: &TestEnv) -> Daemon {
    let daemon = env.daemon();
    daemon.wait_for(&["this instance is the leader now"]);
    daemon
}

fn standby(env: &TestEnv) -> Daemon {
    let daemon = env.daemon();
    daemon.wait_for(&["standing by: another instance leads"]);
    daemon
}

fn wait_runs(daemon: &Daemon, job: &str, at_least: usize) {
    let tag = format!("job={job} ");
    daemon.wait_until(&format!("{at_least} finished runs of {job}"), |lines| {
        lines
            .iter()
            .filter(|l| l.contains(&tag) && l.contains("run finished"))
            .count()
            >= at_least
    });
}

#[test]
fn three_daemons_fire_each_instant_exactly_once() {
    let env = ticking(TestEnv::new(), &[]).write();
    let mut a = leader(&env);
    let mut b = standby(&env);
    let mut c = standby(&env);
    wait_runs(&a, "tick", 8);
    for d in [&b, &c] {
        assert_eq!(d.count(&["run started"]), 0, "standbys fire nothing");
    }
    assert_eq!(a.stop(), Some(0));
    // The lease is handed over on stop: one of the standbys carries on. `b` learns which:
    // it leads, or it sees the new leader (epoch 2) once `a` has exited.
    let seen = b.wait_for_line(|l| {
        l.contains("this instance is the leader now")
            || (l.contains("standing by: another instance leads") && l.contains("epoch=2"))
    });
    let next = if seen.contains("this instance is the leader now") {
        &b
    } else {
        &c
    };
    next.wait_for(&["this instance is the leader now"]);
    wait_runs(next, "tick", 3);
    b.stop();
    c.stop();
    assert!(assert_each_instant_once(&env) >= 11);
}

#[test]
fn a_killed_leader_is_replaced_at_once_and_nothing_fires_twice() {
    // A one-hour lease: only the lock file or the pidfd can explain a fast takeover.
    let env = ticking(TestEnv::new().daemon_key("lease_ttl", "\"1h\""), &[]).write();
    let a = leader(&env);
    let mut b = standby(&env);
    wait_runs(&a, "tick", 3);
    a.signal(Signal::SIGKILL);
    let took = b.wait_for(&["this instance is the leader now"]);
    assert!(took.contains("previous="), "{took}");
    wait_runs(&b, "tick", 3);
    b.stop();
    assert_each_instant_once(&env);
}

#[test]
fn a_frozen_leader_is_fenced_when_it_wakes() {
    let env = ticking(TestEnv::new().daemon_key("lease_ttl", "\"3s\""), &[]).write();
    let mut a = leader(&env);
    let mut b = standby(&env);
    // Freeze it just after a run was recorded, between two database writes: a process
    // frozen inside a SQLite write transaction would hold the write lock and stall every
    // instance on the host until it resumes (see ARCHITECTURE.md).
    wait_runs(&a, "tick", 2);
    a.signal(Signal::SIGSTOP);
    b.wait_for(&["this instance is the leader now"]);
    wait_runs(&b, "tick", 2);
    a.signal(Signal::SIGCONT);
    a.wait_for_line(|l| {
        l.contains("lost the leader lease") || l.contains("another instance took the lease")
    });
    let runs_of_a = a.count(&["job=tick", "run started"]);
    wait_runs(&b, "tick", 4);
    assert!(
        a.count(&["job=tick", "run started"]) <= runs_of_a + 1,
        "a fenced leader starts nothing new"
    );
    a.stop();
    b.stop();
    assert_each_instant_once(&env);
}

#[test]
fn a_run_lost_with_its_leader_is_abandoned_its_process_stopped_and_retried() {
    let env = TestEnv::new();
    let marker = env.path("first-attempt");
    let env = env
        .job_with(
            "long",
            "* * * * * *",
            &format!(
                "if [ ! -e {m} ]; then touch {m}; echo first attempt $$; exec sleep 300; fi; echo attempt $SCHEDCTL_ATTEMPT via $SCHEDCTL_TRIGGER",
                m = marker.display(),
            ),
            &[("retries", "1"), ("retry_backoff", "\"1s\"")],
        )
        .write();
    let a = leader(&env);
    let first = a.wait_for(&["job=long", "stream=stdout: first attempt"]);
    let run_id = first
        .split("run_id=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("run id")
        .to_owned();
    let orphan: i32 = first
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    a.signal(Signal::SIGKILL);
    assert!(
        crate::support::process_alive(orphan),
        "the orphan outlives its daemon"
    );
    let mut b = leader(&env);
    let abandoned = b.wait_for(&["run abandoned", &format!("run_id={run_id}")]);
    assert!(
        abandoned.contains("the new leader stopped the orphaned process"),
        "{abandoned}"
    );
    wait_process_exit(orphan);
    b.wait_for(&["job=long", "stream=stdout: attempt 2 via retry"]);
    b.stop();
}

#[test]
fn overlap_skip_holds_across_a_handover() {
    let env = TestEnv::new().daemon_key("shutdown_grace", "\"1h\"");
    let marker = env.path("slow-started");
    let env = env
        .job(
            "slow",
            "* * * * * *",
            &format!("touch {}; sleep 300", marker.display()),
        )
        .write();
    let mut a = leader(&env);
    a.wait_for(&["job=slow", "run started"]);
    let mut b = standby(&env);
    // A stops firing and hands the lease over, but its run goes on (the grace is long).
    a.signal(Signal::SIGTERM);
    b.wait_for(&["this instance is the leader now"]);
    let skipped = b.wait_for(&["job=slow", "run skipped"]);
    assert!(
        skipped.contains("the previous run is still running"),
        "{skipped}"
    );
    assert_eq!(b.count(&["job=slow", "run started"]), 0);
    assert_eq!(b.stop(), Some(0));
    a.signal(Signal::SIGTERM);
    assert_eq!(a.wait_exit(), Some(0));
}

#[test]
fn bad_state_files_are_refused_with_exit_2_and_left_alone() {
    let env = TestEnv::new().job("a", "@daily", "true");
    let junk = env.path("junk.db");
    std::fs::write(&junk, "not a database").expect("write");
    let cases = [
        (env.dir().display().to_string(), "is a directory"),
        (junk.display().to_string(), "is not a SQLite database"),
        (
            env.path("missing/dir/x.db").display().to_string(),
            "does not exist; create it",
        ),
    ];
    for (state, message) in cases {
        let env = TestEnv::new()
            .daemon_key("state", &crate::support::toml_str(&state))
            .job("a", "@daily", "true")
            .write();
        let out = env.run(&["daemon"]);
        assert_eq!(out.code, Some(2), "{state}: {out:?}");
        assert!(
            out.stderr.starts_with("error: ") && out.stderr.contains(message),
            "{state}: {}",
            out.stderr
        );
    }
    assert_eq!(
        std::fs::read_to_string(&junk).expect("read"),
        "not a database"
    );
}

#[test]
fn a_read_only_state_file_is_refused() {
    use std::os::unix::process::CommandExt;
    let env = TestEnv::new().job("a", "@daily", "true").write();
    let state = env.path("ro.db");
    // Create it, then make it read-only for the user the daemon runs as.
    drop(schedctl::store::Sqlite::open(&state).expect("create"));
    let env = env
        .daemon_key(
            "state",
            &crate::support::toml_str(&state.display().to_string()),
        )
        .write();
    std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .expect("chmod");
    let mut command = std::process::Command::new(crate::support::bin());
    command.arg("--config").arg(env.config()).arg("daemon");
    if nix::unistd::geteuid().is_root() {
        // root writes anything: run as `nobody`, to whom the directory must be readable.
        std::fs::set_permissions(
            env.dir(),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .expect("chmod");
        command.uid(65534).gid(65534);
    }
    let out = command.output().expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("read-only") || stderr.contains("not writable"),
        "{stderr}"
    );
}

#[test]
fn a_newer_schema_is_refused() {
    let env = TestEnv::new().job("a", "@daily", "true").write();
    let conn = raw_state(&env);
    conn.pragma_update(None, "user_version", 999).expect("bump");
    drop(conn);
    let out = env.run(&["daemon"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("has schema version 999, newer than this schedctl knows"),
        "{}",
        out.stderr
    );
}

#[test]
fn processes_creating_the_state_file_at_once_all_succeed() {
    // SQLite answers "database is locked" at once, without waiting, to a switch to WAL
    // while another process creates the same file; each of these must still succeed.
    let env = TestEnv::new().job("a", "0 0 1 1 *", "true").write();
    for round in 0..25 {
        for file in ["schedctl.db", "schedctl.db-wal", "schedctl.db-shm"] {
            let _ = std::fs::remove_file(env.path(file));
        }
        let children: Vec<_> = (0..6).map(|_| env.start(&["pause", "a"])).collect();
        for child in children {
            let out = child.finish();
            assert!(
                out.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[test]
fn a_starting_daemon_forgets_instances_not_seen_for_a_week() {
    let env = TestEnv::new().job("a", "0 0 1 1 *", "true").write();
    let conn = raw_state(&env);
    let long_ago = jiff::Timestamp::now().as_millisecond() - 8 * 24 * 3_600_000;
    conn.execute(
        "INSERT INTO instances (id, host, pid, pid_start, boot_id, started_at, seen_at, role)
         VALUES ('old', 'h', 1, NULL, 'b', ?1, ?1, 'stopped')",
        [long_ago],
    )
    .expect("an old instance");
    let old_rows = |conn: &rusqlite::Connection| -> i64 {
        conn.query_row("SELECT count(*) FROM instances WHERE id = 'old'", [], |r| {
            r.get(0)
        })
        .expect("count")
    };
    assert_eq!(old_rows(&conn), 1);
    let mut daemon = env.daemon();
    // Done off the start's path: its line says when.
    daemon.wait_for(&["forgot daemon instances not seen for a week", "forgotten=1"]);
    assert_eq!(old_rows(&conn), 0);
    assert_eq!(daemon.stop(), Some(0));
}
