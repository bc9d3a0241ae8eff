//! Process hygiene: timeouts reach grandchildren, leftovers are cleaned up, SIGKILL follows
//! an ignored SIGTERM.

use crate::support::{TestEnv, process_alive, wait_process_exit};

fn read_pid(env: &TestEnv, name: &str) -> i32 {
    std::fs::read_to_string(env.path(name))
        .expect("pid file")
        .trim()
        .parse()
        .expect("a pid")
}

#[test]
fn a_timed_out_jobs_grandchild_is_gone() {
    let env = TestEnv::new();
    let pidfile = env.path("grandchild.pid");
    let env = env
        .job_with(
            "hang",
            "* * * * * *",
            &format!("sh -c 'sleep 300 & echo $! > {}; wait'", pidfile.display()),
            &[("timeout", "\"1s\""), ("kill_grace", "\"1s\"")],
        )
        .write();
    let mut daemon = env.daemon();
    let failed = daemon.wait_for(&["job=hang", "run failed"]);
    assert!(
        failed.contains("state=timed_out") && failed.contains("timed out after 1s"),
        "{failed}"
    );
    let grandchild = read_pid(&env, "grandchild.pid");
    wait_process_exit(grandchild);
    assert!(!process_alive(grandchild));
    daemon.stop();
}

#[test]
fn processes_a_job_leaves_behind_are_stopped_when_it_exits() {
    let env = TestEnv::new();
    let pidfile = env.path("bg.pid");
    let env = env
        .job_with("leaver", "0 0 1 1 *", "unused", &[("kill_grace", "\"1s\"")])
        .write();
    let text = std::fs::read_to_string(env.config()).expect("read");
    // The leftover ignores SIGTERM, so it is still there when the run's end is handled
    // (a SIGTERM goes to the group first) and is seen, reported and killed.
    env.write_raw(&text.replace(
        "schedule = \"0 0 1 1 *\"\ncommand = \"unused\"",
        &format!(
            "schedule = \"* * * * * *\"\ncommand = \"(trap '' TERM; exec sleep 300) >/dev/null 2>&1 & echo $! > {}\"",
            pidfile.display()
        ),
    ));
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=leaver", "left processes behind"]);
    let background = read_pid(&env, "bg.pid");
    wait_process_exit(background);
    daemon.wait_for(&["job=leaver", "run finished", "state=succeeded"]);
    daemon.stop();
}

#[test]
fn a_run_ends_even_when_a_process_outside_its_group_holds_its_output_open() {
    let env = TestEnv::new();
    let (marker, pidfile) = (env.path("once"), env.path("holder.pid"));
    let env = env
        .job(
            "holder",
            "* * * * * *",
            &format!(
                // The job waits until the holder has left its group (setsid wrote the pid).
                "echo before; if [ ! -e {m} ]; then touch {m}; setsid sh -c 'echo $$ > {p}; exec sleep 300' & while [ ! -s {p} ]; do sleep 0.01; done; fi",
                m = marker.display(),
                p = pidfile.display()
            ),
        )
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=holder", "no longer reading it"]);
    let finished = daemon.wait_for(&["job=holder", "run finished"]);
    assert!(finished.contains("state=succeeded"), "{finished}");
    assert!(daemon.count(&["job=holder", "stream=stdout: before"]) >= 1);
    let holder = read_pid(&env, "holder.pid");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(holder),
        nix::sys::signal::Signal::SIGKILL,
    );
    wait_process_exit(holder);
    daemon.stop();
}

#[test]
fn a_job_that_ignores_sigterm_is_killed_after_kill_grace() {
    let env = TestEnv::new()
        .job_with(
            "deaf",
            "* * * * * *",
            "trap '' TERM; sleep 300",
            &[("timeout", "\"1s\""), ("kill_grace", "\"1s\"")],
        )
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=deaf", "still alive 1s after SIGTERM; sending SIGKILL"]);
    let failed = daemon.wait_for(&["job=deaf", "run failed"]);
    assert!(
        failed.contains("timed out after 1s; killed by SIGKILL"),
        "{failed}"
    );
    daemon.stop();
}

/// The `stream=stdout` lines of one job's first run, in order.
fn first_run_output(lines: &[String], job: &str) -> Vec<String> {
    let tag = format!("job={job} run_id=");
    let run = lines
        .iter()
        .find(|l| l.contains(&tag))
        .and_then(|l| l.split("run_id=").nth(1))
        .and_then(|s| s.split([' ', ':']).next())
        .expect("a run")
        .to_owned();
    let prefix = format!("job={job} run_id={run} stream=stdout: ");
    lines
        .iter()
        .filter_map(|l| l.split_once(&prefix).map(|(_, v)| v.to_owned()))
        .collect()
}

#[test]
fn a_command_without_shell_syntax_runs_directly_as_the_shell_would_run_it() {
    let env = TestEnv::new();
    let script = env.path("whoami.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"pid $$\"\n").expect("script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    // Paths that cannot be started directly: what the shell does with them is what happens.
    let bare = env.path("bare.sh");
    std::fs::write(&bare, "echo no interpreter line\n").expect("script");
    std::fs::set_permissions(&bare, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let unexecutable = env.path("plain.txt");
    std::fs::write(&unexecutable, "echo never\n").expect("file");
    let env = env
        // Plain: started directly. `exec` makes the shell run the same program itself.
        .job("direct", "* * * * * *", "env")
        .job("shell", "* * * * * *", "exec env")
        .job("self", "* * * * * *", &script.display().to_string())
        .job("missing", "* * * * * *", "no-such-program --flag")
        .job("gone", "* * * * * *", "/nonexistent/program --flag")
        .job("bare", "* * * * * *", &bare.display().to_string())
        .job(
            "unexecutable",
            "* * * * * *",
            &unexecutable.display().to_string(),
        )
        .write();
    let mut daemon = env.daemon();
    for job in [
        "direct",
        "shell",
        "self",
        "missing",
        "gone",
        "bare",
        "unexecutable",
    ] {
        daemon.wait_for(&[&format!("job={job} "), "run f"]);
    }
    daemon.stop();
    let lines = daemon.lines();
    let normal = |job: &str| {
        let mut vars: Vec<String> = first_run_output(&lines, job)
            .into_iter()
            .filter(|v| {
                ![
                    "SCHEDCTL_JOB=",
                    "SCHEDCTL_RUN_ID=",
                    "SCHEDCTL_RESULT=",
                    "SCHEDCTL_STATE_DIR=",
                ]
                .iter()
                .any(|p| v.starts_with(p))
            })
            .collect();
        vars.sort();
        vars
    };
    let direct = normal("direct");
    assert!(direct.iter().any(|v| v.starts_with("PWD=/")), "{direct:?}");
    assert_eq!(
        direct,
        normal("shell"),
        "the same environment, PWD included"
    );
    // Started directly, the program is the run's process, not a child of a shell.
    let started = daemon.wait_for(&["job=self ", "run started"]);
    let pid = started
        .split("pid=")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("pid");
    assert_eq!(first_run_output(&lines, "self"), [format!("pid {pid}")]);
    // A program that is not found is left to the shell, with its message and exit code.
    let missing = daemon.wait_for(&["job=missing ", "stream=stderr"]);
    assert!(missing.ends_with("no-such-program: not found"), "{missing}");
    daemon.wait_for(&["job=missing ", "run failed", "exited with code 127"]);
    let gone = daemon.wait_for(&["job=gone ", "stream=stderr"]);
    assert!(gone.ends_with("/nonexistent/program: not found"), "{gone}");
    daemon.wait_for(&["job=gone ", "run failed", "exited with code 127"]);
    // No `#!`: the shell runs the file as a script.
    assert_eq!(first_run_output(&lines, "bare"), ["no interpreter line"]);
    let denied = daemon.wait_for(&["job=unexecutable ", "stream=stderr"]);
    assert!(denied.ends_with("Permission denied"), "{denied}");
    daemon.wait_for(&["job=unexecutable ", "run failed", "exited with code 126"]);
}

#[test]
fn a_jobs_state_directory_is_made_ahead_when_it_is_due_within_ten_minutes() {
    let env = TestEnv::new()
        .job("yearly", "0 0 1 1 *", "true")
        .job("soon", "* * * * *", "true")
        .write();
    let mut daemon = env.daemon_with_env(&[("SCHEDCTL_LOG", "debug")]);
    daemon.wait_for(&["made the jobs' directories ahead", "jobs=1"]);
    let dir = |job: &str| env.dir().join("schedctl.d/jobs").join(job);
    assert!(dir("soon").is_dir(), "made ahead of its first run");
    assert!(
        !dir("yearly").exists(),
        "a job months away gets its directory at its first run, not at every start"
    );
    daemon.stop();
}

#[test]
fn a_job_starts_with_no_signal_blocked_sigpipe_default_and_its_own_process_group() {
    // A job's process is started without a shell here (a plain command) and through one
    // (shell syntax); both must see what a shell started from a terminal would.
    let env = TestEnv::new()
        .job("plain", "* * * * * *", "grep Sig /proc/self/status")
        .job(
            "shell",
            "* * * * * *",
            "grep -E '^Sig(Blk|Ign)' /proc/self/status; read -r _ _ _ _ g _ < /proc/$$/stat; echo pgid=$g pid=$$",
        )
        .write();
    let mut daemon = env.daemon();
    for job in ["plain", "shell"] {
        let blocked = daemon.wait_for(&[&format!("job={job} "), "SigBlk:"]);
        assert!(blocked.ends_with("SigBlk:\t0000000000000000"), "{blocked}");
        let ignored = daemon.wait_for(&[&format!("job={job} "), "SigIgn:"]);
        let mask =
            u64::from_str_radix(ignored.rsplit('\t').next().expect("mask"), 16).expect("hex mask");
        assert_eq!(
            mask & (1 << (libc::SIGPIPE - 1)),
            0,
            "SIGPIPE ignored: {ignored}"
        );
    }
    let group = daemon.wait_for(&["job=shell ", "pgid="]);
    let words: Vec<&str> = group
        .rsplit(": ")
        .next()
        .expect("text")
        .split_whitespace()
        .collect();
    assert_eq!(
        words[0].trim_start_matches("pgid="),
        words[1].trim_start_matches("pid="),
        "the job leads its own process group: {group}"
    );
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn a_job_gets_no_descriptor_the_daemon_inherited_beyond_stdio() {
    // A descriptor left open without close-on-exec by whoever starts the daemon (here this
    // test process, so every daemon started meanwhile inherits it).
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    // SAFETY: dup of a descriptor we own; the copy (without close-on-exec) is closed below.
    let leaked = unsafe { libc::dup(std::os::fd::AsRawFd::as_raw_fd(&null)) };
    assert!(leaked > 2);
    let env = TestEnv::new()
        .job("fds", "* * * * * *", "ls /proc/self/fd")
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=fds ", "run finished"]);
    assert_eq!(daemon.stop(), Some(0));
    // SAFETY: closing the descriptor made above.
    unsafe { libc::close(leaked) };
    let lines = daemon.lines();
    let fds: Vec<&str> = lines
        .iter()
        .filter(|l| l.contains("job=fds run_id=1 stream=stdout: "))
        .filter_map(|l| l.rsplit(": ").next())
        .collect();
    // 0-2, and the directory `ls` reads.
    assert_eq!(fds, ["0", "1", "2", "3"], "leaked fd {leaked}");
}

#[test]
fn runs_at_once_are_not_bounded_by_the_open_file_limit_the_daemon_was_given() {
    // Each running job holds three of the daemon's descriptors: 40 at once need ~150 with
    // the daemon's own, more than this soft limit (the hard limit, which the daemon raises
    // its own to, is the environment's: far above in any test setup).
    const SOFT: u64 = 64;
    let mut env = TestEnv::new().daemon_key("shutdown_grace", "\"0s\"").job(
        "limit",
        "* * * * * *",
        "ulimit -Sn",
    );
    for i in 1..=40 {
        env = env.job(&format!("s{i}"), "* * * * * *", "sleep 600");
    }
    let env = env.write();
    let mut daemon = env.daemon_with_open_files(SOFT);
    for i in 1..=40 {
        daemon.wait_for(&[&format!("job=s{i} "), "run started"]);
    }
    // The job gets the limit the daemon was started with, not the raised one.
    let limit = daemon.wait_for(&["job=limit ", "stream=stdout"]);
    assert!(limit.ends_with(&format!(": {SOFT}")), "{limit}");
    assert_eq!(daemon.stop(), Some(0));
    let lines = daemon.lines();
    assert!(
        !lines.iter().any(|l| l.contains("Too many open files")),
        "{lines:#?}"
    );
}
