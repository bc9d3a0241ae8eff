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
    let env = env.job_with("leaver", "0 0 1 1 *", "unused", &[]).write();
    let text = std::fs::read_to_string(env.config()).expect("read");
    env.write_raw(&text.replace(
        "schedule = \"0 0 1 1 *\"\ncommand = \"unused\"",
        &format!(
            "schedule = \"* * * * * *\"\ncommand = \"sleep 300 >/dev/null 2>&1 & echo $! > {}\"",
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
