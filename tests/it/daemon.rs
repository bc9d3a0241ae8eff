//! The daemon as an operator runs it: jobs fire, output becomes log events, signals
//! stop it gracefully, SIGHUP reloads.

use nix::sys::signal::Signal;

use crate::support::TestEnv;

#[test]
fn a_six_field_job_fires_within_a_second_and_its_streams_become_info_and_error() {
    let env = TestEnv::new()
        .job("hello", "* * * * * *", "echo out line; echo err line >&2")
        .write();
    let mut daemon = env.daemon();
    let out = daemon.wait_for(&["job=hello", "stream=stdout"]);
    let err = daemon.wait_for(&["job=hello", "stream=stderr"]);
    assert!(
        out.contains(" INFO job=hello run_id=") && out.ends_with("stream=stdout: out line"),
        "{out}"
    );
    assert!(
        err.contains(" ERROR job=hello run_id=") && err.ends_with("stream=stderr: err line"),
        "{err}"
    );
    daemon.wait_for(&["job=hello", "run finished", "state=succeeded"]);
    assert_eq!(daemon.stop(), Some(0));
    // A run's events frame its output: started before its first line, finished after.
    let lines = daemon.lines();
    let first_run: Vec<&String> = lines.iter().filter(|l| l.contains(" run_id=1")).collect();
    assert!(first_run[0].contains("run started"), "{first_run:#?}");
    assert!(
        first_run[first_run.len() - 1].contains("run finished"),
        "{first_run:#?}"
    );
}

#[test]
fn json_logs_are_one_object_per_line_with_job_run_and_stream() {
    let env = TestEnv::new()
        .daemon_key("log_format", "\"json\"")
        .job(
            "j",
            "* * * * * *",
            "echo '{\"nested\": \"quote\"}'; echo bad >&2",
        )
        .write();
    let mut daemon = env.daemon();
    let out = daemon.wait_for(&["\"stream\":\"stdout\""]);
    assert!(out.starts_with("{\"ts\":\"") && out.ends_with('}'), "{out}");
    assert!(
        out.contains("\"level\":\"INFO\",\"job\":\"j\",\"run_id\":")
            && out.contains("\"message\":\"{\\\"nested\\\": \\\"quote\\\"}\""),
        "{out}"
    );
    let err = daemon.wait_for(&["\"stream\":\"stderr\""]);
    assert!(
        err.contains("\"level\":\"ERROR\"") && err.contains("\"message\":\"bad\""),
        "{err}"
    );
    daemon.stop();
    for line in daemon.lines() {
        assert!(
            line.starts_with("{\"ts\":") && line.ends_with('}'),
            "every line is a JSON object: {line}"
        );
    }
}

#[test]
fn runs_get_the_documented_environment_and_nothing_else() {
    let env = TestEnv::new()
        .job_with(
            "envjob",
            "* * * * * *",
            "env | sort",
            &[("env", "{ GREETING = \"hi there\" }")],
        )
        .write();
    let mut daemon = env.daemon_with_env(&[("LEAKED_FROM_DAEMON", "1")]);
    daemon.wait_for(&["job=envjob", "run finished"]);
    daemon.stop();
    let vars: Vec<String> = daemon
        .lines()
        .iter()
        .filter_map(|l| l.split_once("stream=stdout: ").map(|(_, v)| v.to_owned()))
        .filter(|v| !v.starts_with("PWD=") && !v.starts_with("SHLVL=") && !v.starts_with('_'))
        .collect();
    let names: Vec<&str> = vars
        .iter()
        .filter_map(|v| v.split_once('=').map(|(k, _)| k))
        .collect();
    let mut expected = vec![
        "GREETING",
        "HOME",
        "PATH",
        "SCHEDCTL_ATTEMPT",
        "SCHEDCTL_JOB",
        "SCHEDCTL_RESULT",
        "SCHEDCTL_RUN_ID",
        "SCHEDCTL_SCHEDULED_FOR",
        "SCHEDCTL_STATE_DIR",
        "SCHEDCTL_TRIGGER",
        "SHELL",
    ];
    if names.contains(&"USER") {
        expected.extend(["LOGNAME", "USER"]);
        expected.sort();
    }
    // One run's worth (the job may have run more than once before the stop).
    let first: Vec<&str> = names.iter().take(expected.len()).copied().collect();
    assert_eq!(first, expected);
    assert!(vars.contains(&"GREETING=hi there".to_owned()));
    assert!(vars.contains(&"SCHEDCTL_JOB=envjob".to_owned()));
    assert!(vars.contains(&"SCHEDCTL_TRIGGER=schedule".to_owned()));
    assert!(vars.contains(&"SCHEDCTL_ATTEMPT=1".to_owned()));
    let scheduled = vars
        .iter()
        .find(|v| v.starts_with("SCHEDCTL_SCHEDULED_FOR="))
        .expect("set");
    assert!(
        scheduled.ends_with("+00:00"),
        "RFC 3339 in the job's zone: {scheduled}"
    );
    let state_dir = env.dir().join("schedctl.d/jobs/envjob");
    assert!(
        vars.contains(&format!("SCHEDCTL_STATE_DIR={}", state_dir.display())),
        "{vars:?}"
    );
    assert!(state_dir.is_dir(), "the job's state directory exists");
    let result = vars
        .iter()
        .find(|v| v.starts_with("SCHEDCTL_RESULT="))
        .expect("set");
    assert!(
        result.starts_with(&format!(
            "SCHEDCTL_RESULT={}/schedctl.d/results/",
            env.dir().display()
        )),
        "{result}"
    );
}

#[test]
fn sigterm_lets_a_running_job_finish() {
    let env = TestEnv::new()
        .job("work", "* * * * * *", "echo begin; sleep 1; echo end")
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=work", "stream=stdout: begin"]);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_for(&["stopping: no new runs"]);
    assert_eq!(daemon.wait_exit(), Some(0));
    let lines = daemon.lines();
    let begun = lines
        .iter()
        .filter(|l| l.ends_with("stream=stdout: begin"))
        .count();
    let ended = lines
        .iter()
        .filter(|l| l.ends_with("stream=stdout: end"))
        .count();
    assert_eq!(
        (begun, ended),
        (1, 1),
        "the run finished and no new one started:\n{}",
        lines.join("\n")
    );
    assert_eq!(
        daemon.count(&["job=work", "run finished", "state=succeeded"]),
        1
    );
    assert!(lines.last().expect("lines").contains("scheduler stopped"));
}

#[test]
fn a_second_sigterm_stops_running_jobs_at_once() {
    let env = TestEnv::new()
        .daemon_key("shutdown_grace", "\"1h\"")
        .job("stuck", "* * * * * *", "echo begin; sleep 300")
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=stuck", "stream=stdout: begin"]);
    daemon.signal(Signal::SIGTERM);
    daemon.wait_for(&["stopping: no new runs"]);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
    let failed = daemon.wait_for(&["job=stuck", "run failed"]);
    assert!(
        failed.contains("state=cancelled")
            && failed.contains("stopped by daemon shutdown; killed by SIGTERM"),
        "{failed}"
    );
}

#[test]
fn the_grace_period_ends_with_sigterm_then_sigkill_to_the_group() {
    let env = TestEnv::new()
        .daemon_key("shutdown_grace", "\"1s\"")
        .job_with(
            "stubborn",
            "* * * * * *",
            "trap '' TERM; echo begin; sleep 300",
            &[("kill_grace", "\"1s\"")],
        )
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=stubborn", "stream=stdout: begin"]);
    assert_eq!(daemon.stop(), Some(0));
    let failed = daemon.wait_for(&["job=stubborn", "run failed"]);
    assert!(failed.contains("killed by SIGKILL"), "{failed}");
}

#[test]
fn sighup_reloads_the_job_file() {
    let env = TestEnv::new().job("before", "0 0 1 1 *", "true").write();
    let mut daemon = env.daemon();
    let env = env.job("after", "* * * * * *", "echo reloaded").write();
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for(&["configuration reloaded", "jobs=2"]);
    daemon.wait_for(&["job=after", "stream=stdout: reloaded"]);
    env.write_raw("[jobs.broken\n");
    daemon.signal(Signal::SIGHUP);
    daemon.wait_for(&["reload failed; the previous configuration stays in effect"]);
    let runs = daemon.count(&["job=after", "run finished"]);
    daemon.wait_until("another run of the kept job", |lines| {
        lines
            .iter()
            .filter(|l| l.contains("job=after") && l.contains("run finished"))
            .count()
            > runs
    });
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn spawn_failures_are_recorded_and_the_daemon_keeps_going() {
    let env = TestEnv::new()
        .job("missing", "* * * * * *", "unused")
        .job_with(
            "nodir",
            "* * * * * *",
            "true",
            &[("workdir", "\"/nonexistent/dir\"")],
        )
        .job("fine", "* * * * * *", "echo still here")
        .write();
    // Make `missing` an argv command naming a program that does not exist.
    let text = std::fs::read_to_string(env.config()).expect("read");
    env.write_raw(&text.replace(
        "command = \"unused\"",
        "command = [\"no-such-program-xyz\", \"--flag\"]",
    ));
    let mut daemon = env.daemon();
    let missing = daemon.wait_for(&["job=missing", "run failed"]);
    assert!(
        missing.contains("spawn failed: program `no-such-program-xyz` not found in PATH"),
        "{missing}"
    );
    let nodir = daemon.wait_for(&["job=nodir", "run failed"]);
    assert!(
        nodir.contains("spawn failed: working directory `/nonexistent/dir` does not exist"),
        "{nodir}"
    );
    daemon.wait_for(&["job=fine", "stream=stdout: still here"]);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn overlap_skip_is_logged() {
    let env = TestEnv::new().job("slow", "* * * * * *", "sleep 2").write();
    let mut daemon = env.daemon();
    let skipped = daemon.wait_for(&["job=slow", "run skipped"]);
    assert!(
        skipped.contains("the previous run is still running"),
        "{skipped}"
    );
    daemon.stop();
}

#[test]
fn every_run_of_a_burst_is_logged_and_recorded_although_its_bookkeeping_waits() {
    // More jobs due at one instant than the loop starts without holding the runs'
    // bookkeeping (recording, logging, the store's writes, looking for the result file)
    // until the batch is started.
    const JOBS: usize = 40;
    let env = (0..JOBS).fold(TestEnv::new(), |env, i| {
        env.job(
            &format!("b{i:02}"),
            "* * * * * *",
            "echo out $SCHEDCTL_JOB; echo $SCHEDCTL_RUN_ID > \"$SCHEDCTL_RESULT\"",
        )
    });
    let env = env.write();
    let mut daemon = env.daemon();
    let finished = |lines: &[String], job: &str| {
        lines.iter().any(|l| {
            l.contains(&format!("job={job} ")) && l.contains("run finished state=succeeded")
        })
    };
    daemon.wait_until("every job's first run finished", |lines| {
        (0..JOBS).all(|i| finished(lines, &format!("b{i:02}")))
    });
    assert_eq!(daemon.stop(), Some(0));
    for i in 0..JOBS {
        let job = format!("b{i:02}");
        let history = env.run(&["history", &job, "--json"]);
        assert_eq!(history.code, Some(0), "{}", history.stderr);
        assert!(
            history.stdout.contains("\"state\": \"succeeded\"")
                && !history.stdout.contains("\"state\": \"running\"")
                && !history.stdout.contains("\"state\": \"pending\""),
            "{job}: {}",
            history.stdout
        );
        // Each run's result file was read when its end was recorded: its own run id.
        let runs: serde_json::Value = serde_json::from_str(&history.stdout).expect("json");
        for run in runs.as_array().expect("runs") {
            let id = run["run_id"].to_string();
            let logs = env.run(&["logs", &id, "--json"]);
            let json: serde_json::Value = serde_json::from_str(&logs.stdout).expect("json");
            assert_eq!(json["result"], format!("{id}\n"), "{job}: {}", logs.stdout);
        }
    }
}

#[test]
fn a_result_file_left_from_an_earlier_state_is_not_taken_for_a_new_runs() {
    // Result files named by run ids, left by a daemon that died before reading them or by
    // a state database that was since replaced (so that ids start again at 1).
    let env = TestEnv::new().job("tick", "* * * * * *", "true").write();
    let results = env.dir().join("schedctl.d/results");
    std::fs::create_dir_all(&results).expect("mkdir");
    for id in ["1", "2"] {
        std::fs::write(results.join(id), "stale\n").expect("write");
    }
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=tick run_id=2:", "run finished"]);
    assert_eq!(daemon.stop(), Some(0));
    for id in ["1", "2"] {
        let logs = env.run(&["logs", id, "--json"]);
        let json: serde_json::Value = serde_json::from_str(&logs.stdout).expect("json");
        assert_eq!(json["state"], "succeeded", "{}", logs.stdout);
        assert_eq!(json["result"], serde_json::Value::Null, "{}", logs.stdout);
        assert!(!results.join(id).exists());
    }
}

/// glibc's libm stays out of the daemon (`memory::pow` stands in for the one function of
/// it that anything calls): loading it kept 0.3-0.6 MB resident in an idle daemon.
#[cfg(target_env = "gnu")]
#[test]
fn the_daemon_does_not_load_libm() {
    let env = TestEnv::new().job("yearly", "0 0 1 1 *", "true").write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["scheduler started"]);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", daemon.pid())).expect("maps");
    assert!(!maps.contains("/libm."), "{maps}");
    assert_eq!(daemon.stop(), Some(0));
}
