//! The operator's commands against running daemons: run-now (started by the wake-up, not a
//! timer), --wait exit codes, list/status/history/logs, pause across a restart, cancel,
//! run-now while no leader runs, and the errors.

use crate::support::{Daemon, TestEnv, wait_process_exit};

/// A job that only runs when asked (its one-off instant is far away).
fn on_demand(env: TestEnv, name: &str, command: &str) -> TestEnv {
    env.job_with(name, "0 0 1 1 *", command, &[])
        .job_with("keepalive", "0 0 1 1 *", "true", &[])
}

fn leader(env: &TestEnv) -> Daemon {
    let d = env.daemon();
    d.wait_for(&["this instance is the leader now"]);
    d
}

#[test]
fn run_now_is_started_by_the_wake_up_not_by_a_lease_tick() {
    // A one-hour lease: the renewal's check comes 20 minutes later, so a quick start can
    // only come from the control socket.
    let env = on_demand(
        TestEnv::new().daemon_key("lease_ttl", "\"1h\""),
        "hello",
        "echo hi from $SCHEDCTL_TRIGGER",
    )
    .write();
    let mut daemon = leader(&env);
    let out = env.run(&["run-now", "hello"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.starts_with("started run "), "{}", out.stderr);
    daemon.wait_for(&["job=hello", "stream=stdout: hi from manual"]);
    daemon.stop();
}

#[test]
fn run_now_wait_exits_with_the_jobs_code() {
    let env = TestEnv::new();
    let env = on_demand(env, "ok", "echo out; echo err >&2")
        .job_with("seven", "0 0 1 1 *", "exit 7", &[])
        .job_with("killed", "0 0 1 1 *", "kill -9 $$", &[])
        .job_with(
            "slow",
            "0 0 1 1 *",
            "sleep 30",
            &[("timeout", "\"1s\""), ("kill_grace", "\"1s\"")],
        )
        .job_with("nothere", "0 0 1 1 *", "unused", &[])
        .write();
    let text = std::fs::read_to_string(env.config()).expect("read");
    env.write_raw(&text.replace("command = \"unused\"", "command = [\"/no/such/program\"]"));
    let mut daemon = leader(&env);
    let ok = env.run(&["run-now", "ok", "--wait"]);
    assert_eq!((ok.code, ok.stdout.as_str()), (Some(0), "out\n"), "{ok:?}");
    assert!(
        ok.stderr.contains("err\n") && ok.stderr.contains("succeeded"),
        "{}",
        ok.stderr
    );
    let cases = [
        ("seven", 7),
        ("killed", 128 + 9),
        ("slow", 1),
        ("nothere", 1),
    ];
    for (job, code) in cases {
        let out = env.run(&["run-now", job, "--wait"]);
        assert_eq!(out.code, Some(code), "{job}: {out:?}");
    }
    daemon.stop();
}

#[test]
fn run_now_respects_overlap_and_says_so() {
    let env = on_demand(TestEnv::new(), "long", "sleep 30").write();
    let mut daemon = leader(&env);
    assert_eq!(env.run(&["run-now", "long"]).code, Some(0));
    daemon.wait_for(&["job=long", "run started"]);
    let again = env.run(&["run-now", "long"]);
    assert_eq!(again.code, Some(1), "{again:?}");
    assert!(
        again
            .stderr
            .contains("was skipped: the previous run is still running"),
        "{}",
        again.stderr
    );
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.signal(nix::sys::signal::Signal::SIGTERM);
    daemon.wait_exit();
}

#[test]
fn run_now_while_no_daemon_runs_starts_when_one_leads() {
    let env = on_demand(TestEnv::new(), "later", "echo finally").write();
    let out = env.run(&["run-now", "later"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stderr
            .contains("is queued and starts as soon as a daemon leads"),
        "{}",
        out.stderr
    );
    let mut daemon = leader(&env);
    daemon.wait_for(&["job=later", "stream=stdout: finally"]);
    daemon.stop();
}

#[test]
fn run_now_wait_during_a_failover_follows_the_new_leader() {
    let env = on_demand(
        TestEnv::new().daemon_key("lease_ttl", "\"1h\""),
        "job",
        "echo done by $SCHEDCTL_TRIGGER",
    )
    .write();
    let waiter = {
        let out = env.run(&["status"]);
        assert_eq!(out.code, Some(1), "no daemon yet: {out:?}");
        // Queued while nobody leads; --wait keeps waiting for a leader.
        env.start(&["run-now", "job", "--wait"])
    };
    let mut daemon = leader(&env);
    let out = waiter.finish();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "done by manual\n");
    daemon.stop();
}

#[test]
fn list_status_history_and_logs_show_what_happened() {
    let env = on_demand(
        TestEnv::new(),
        "report",
        "echo line one; echo problem >&2; echo '{\"rows\":3}' > \"$SCHEDCTL_RESULT\"; exit 3",
    )
    .write();
    let mut daemon = leader(&env);
    let status = env.run(&["status"]);
    assert_eq!(status.code, Some(0));
    assert!(
        status.stdout.starts_with("leader    ") && status.stdout.contains("epoch 1"),
        "{}",
        status.stdout
    );
    assert_eq!(env.run(&["run-now", "report", "--wait"]).code, Some(3));
    let history = env.run(&["history", "report"]);
    let lines: Vec<&str> = history.stdout.lines().collect();
    assert!(
        lines[0].starts_with("RUN  JOB     SCHEDULED FOR"),
        "{}",
        history.stdout
    );
    assert!(
        lines[1].contains("manual   failed  3     ") && lines[1].ends_with("exited with code 3"),
        "{}",
        history.stdout
    );
    let run_id = lines[1].split_whitespace().next().expect("id");
    let logs = env.run(&["logs", run_id]);
    let mut kept: Vec<&str> = logs.stdout.lines().skip(1).collect();
    // stdout and stderr are two pipes: their lines interleave in whatever order they were read.
    kept[..2].sort();
    assert_eq!(
        kept,
        ["[err] problem", "[out] line one", "result:", "{\"rows\":3}"],
        "{}",
        logs.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&env.run(&["logs", run_id, "--json"]).stdout).expect("json");
    assert_eq!(json["state"], "failed");
    assert_eq!(json["exit_code"], 3);
    let output = json["output"].as_array().expect("output");
    assert!(
        output.contains(&serde_json::json!({"stream": "stderr", "text": "problem"}))
            && output.contains(&serde_json::json!({"stream": "stdout", "text": "line one"})),
        "{output:?}"
    );
    assert_eq!(json["result"], "{\"rows\":3}\n");
    let list: serde_json::Value =
        serde_json::from_str(&env.run(&["list", "--json"]).stdout).expect("json");
    assert_eq!(list[1]["job"], "report");
    assert_eq!(list[1]["last"]["state"], "failed");
    assert_eq!(list[1]["paused"], false);
    assert!(list[1]["next"].as_str().expect("next").ends_with("+00:00"));
    daemon.stop();
    let status = env.run(&["status"]);
    assert_eq!(status.code, Some(1));
    assert!(
        status.stdout.starts_with("no daemon is running"),
        "{}",
        status.stdout
    );
}

#[test]
fn pause_survives_a_restart_and_skips_instants() {
    let env = TestEnv::new().job("tick", "* * * * * *", "true").write();
    assert_eq!(env.run(&["pause", "tick"]).code, Some(0));
    let mut daemon = leader(&env);
    let skipped = daemon.wait_for(&["job=tick", "run skipped"]);
    assert!(
        skipped.ends_with("run skipped: paused") || skipped.contains("run skipped: paused "),
        "{skipped}"
    );
    daemon.stop();
    let mut daemon = leader(&env);
    daemon.wait_for(&["job=tick", "run skipped: paused"]);
    assert_eq!(daemon.count(&["job=tick", "run started"]), 0);
    let list = env.run(&["list"]);
    assert!(
        list.stdout.lines().nth(1).expect("row").contains("paused"),
        "{}",
        list.stdout
    );
    let resumed = env.run(&["resume", "tick"]);
    assert_eq!(resumed.code, Some(0), "{resumed:?}");
    daemon.wait_for(&["job=tick", "run started"]);
    daemon.stop();
}

#[test]
fn cancel_stops_the_run_and_its_grandchildren() {
    let env = on_demand(
        TestEnv::new(),
        "tree",
        "sh -c 'sleep 300 & echo child $!; wait'",
    )
    .write();
    let mut daemon = leader(&env);
    assert_eq!(env.run(&["run-now", "tree"]).code, Some(0));
    let line = daemon.wait_for(&["job=tree", "stream=stdout: child "]);
    let grandchild: i32 = line
        .rsplit(' ')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let run_id = line
        .split("run_id=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("run id")
        .to_owned();
    let out = env.run(&["cancel", &run_id]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("cancelled"), "{}", out.stdout);
    wait_process_exit(grandchild);
    let again = env.run(&["cancel", &run_id]);
    assert_eq!(again.code, Some(1));
    assert!(
        again.stderr.contains("already ended (cancelled)"),
        "{}",
        again.stderr
    );
    daemon.stop();
}

#[test]
fn commands_name_what_is_wrong_with_the_right_exit_code() {
    let env = on_demand(TestEnv::new(), "a", "true").write();
    let cases: &[(&[&str], i32, &str)] = &[
        (&["run-now", "nope"], 2, "there is no job `nope`"),
        (&["pause", "nope"], 2, "there is no job `nope`"),
        (&["history", "nope"], 2, "there is no job `nope`"),
        (&["logs", "5"], 2, "no state at"),
    ];
    for (args, code, message) in cases {
        let out = env.run(args);
        assert_eq!(out.code, Some(*code), "{args:?}: {out:?}");
        assert!(out.stderr.contains(message), "{args:?}: {}", out.stderr);
    }
    let mut daemon = leader(&env);
    let out = env.run(&["logs", "999"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr
            .contains("there is no run 999; `schedctl history` lists the runs"),
        "{}",
        out.stderr
    );
    daemon.stop();
}

#[test]
fn run_now_wait_outlasts_a_follower_that_falls_behind() {
    let env = on_demand(TestEnv::new(), "flood", "seq 1 200000").write();
    let mut daemon = leader(&env);
    let waiter = env.start(&["run-now", "flood", "--wait"]);
    // Not reading its output until the run is over makes it fall far behind.
    daemon.wait_for(&["job=flood", "run finished"]);
    let out = waiter.finish();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("succeeded"), "{stderr}");
    let shown: Vec<u64> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.parse().expect("a number"))
        .collect();
    assert!(shown.windows(2).all(|w| w[0] < w[1]), "in order");
    let skipped: u64 = stderr
        .lines()
        .filter_map(|l| l.strip_prefix('[')?.split(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(skipped > 0, "it fell behind: {stderr}");
    assert_eq!(
        shown.len() as u64 + skipped,
        200_000,
        "every line shown or counted"
    );
    daemon.stop();
}
