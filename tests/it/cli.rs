//! `validate` and `next` as a user runs them: output, messages and exit codes.

use crate::support::TestEnv;

#[test]
fn validate_accepts_a_good_file() {
    let env = TestEnv::new()
        .job("backup", "30 2 * * *", "true")
        .job("tick", "*/5 * * * * *", "true")
        .write();
    let out = env.run(&["validate"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{}: ok, 2 jobs\n", env.config().display())
    );
}

#[test]
fn validate_next_prints_each_jobs_next_instants() {
    let env = TestEnv::new()
        .job_with(
            "ny",
            "30 2 * * *",
            "true",
            &[("timezone", "\"America/New_York\"")],
        )
        .write();
    let out = env.run(&["validate", "--next", "3"]);
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[1], "ny  30 2 * * *  America/New_York");
    assert_eq!(lines.len(), 5);
    for line in &lines[2..] {
        assert!(
            line.starts_with("  ") && line.contains("T02:30:00-0"),
            "{line}"
        );
    }
}

#[test]
fn a_broken_file_lists_every_error_with_its_line_and_exits_2() {
    let env = TestEnv::new();
    env.write_raw(
        "[daemon]\ntimezone = \"Nowhere/Special\"\n\n[jobs.a]\nschedule = \"0 0 31 2 *\"\ncommand = \"true\"\n\n[jobs.b]\nschedule = \"* * * * *\"\ncomand = \"true\"\n",
    );
    let file = env.config().display().to_string();
    let expected = [
        format!(
            "{file}:2:12: [daemon]: key `timezone`: unknown time zone `Nowhere/Special` (use an IANA name such as `Europe/Berlin` or `UTC`)"
        ),
        format!("{file}:5:12: job `a`: key `schedule`: "),
        format!("{file}:8:7: job `b`: missing key `command`"),
        format!("{file}:10:1: job `b`: key `comand`: unknown key (did you mean `command`?)"),
        format!("{file}: 4 errors; fix them and try again"),
    ];
    for command in [&["validate"][..], &["daemon"][..]] {
        let out = env.run(command);
        assert_eq!(out.code, Some(2), "{command:?}: {out:?}");
        assert_eq!(out.stdout, "");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), expected.len(), "{command:?}: {}", out.stderr);
        for (line, want) in lines.iter().zip(&expected) {
            assert!(
                line.starts_with(want.as_str()),
                "{command:?}:\n got  {line}\n want {want}"
            );
        }
        assert!(
            lines[1].contains("never"),
            "the never-firing schedule says so: {}",
            lines[1]
        );
    }
}

#[test]
fn a_missing_job_file_is_a_usage_error() {
    let env = TestEnv::new();
    let out = env.run(&["validate"]);
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.starts_with("error: cannot read job file `"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("pass --config PATH or set SCHEDCTL_CONFIG"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_config_path_comes_from_the_environment_when_not_given() {
    let env = TestEnv::new().job("a", "@daily", "true").write();
    let out = std::process::Command::new(crate::support::bin())
        .arg("validate")
        .env("SCHEDCTL_CONFIG", env.config())
        .current_dir("/")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}

fn next(args: &[&str]) -> crate::support::Output {
    TestEnv::new().run(&[&["next"][..], args].concat())
}

#[test]
fn next_applies_the_day_of_month_or_day_of_week_rule() {
    let out = next(&[
        "0 0 13 * 5",
        "--tz",
        "UTC",
        "--after",
        "2026-04-01T00:00:00Z",
        "-n",
        "4",
    ]);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout,
        "2026-04-03T00:00:00+00:00\n2026-04-10T00:00:00+00:00\n2026-04-13T00:00:00+00:00\n2026-04-17T00:00:00+00:00\n"
    );
}

#[test]
fn next_prints_offsets_of_the_zone_across_dst() {
    let out = next(&[
        "30 1 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-10-31T12:00:00-04:00",
        "-n",
        "2",
    ]);
    assert_eq!(
        out.stdout, "2026-11-01T01:30:00-04:00\n2026-11-02T01:30:00-05:00\n",
        "{out:?}"
    );
    let out = next(&[
        "30 2 * * *",
        "--tz",
        "America/New_York",
        "--after",
        "2026-03-07T12:00:00",
        "-n",
        "2",
    ]);
    assert_eq!(
        out.stdout, "2026-03-08T03:00:00-04:00\n2026-03-09T02:30:00-04:00\n",
        "{out:?}"
    );
}

#[test]
fn next_rejects_bad_input_with_exit_2() {
    let cases: &[(&[&str], &str)] = &[
        (&["61 * * * *"], "error: `61 * * * *`: minute field `61`"),
        (
            &["* * * * *", "--tz", "Mars/Base"],
            "error: unknown time zone `Mars/Base`",
        ),
        (
            &["* * * * *", "--after", "yesterday"],
            "error: `yesterday` is not a time",
        ),
    ];
    for (args, message) in cases {
        let out = next(args);
        assert_eq!(out.code, Some(2), "{args:?}: {out:?}");
        assert!(out.stderr.starts_with(message), "{args:?}: {}", out.stderr);
    }
}

#[test]
fn next_explains_reboot() {
    let out = next(&["@reboot"]);
    assert_eq!(out.code, Some(0));
    assert_eq!(out.stdout, "");
    assert!(
        out.stderr.contains("runs once each time the daemon starts"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_example_job_file_is_valid_and_shows_the_service_keys() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/jobs.example.toml");
    let out = std::process::Command::new(crate::support::bin())
        .args(["--config", example, "validate"])
        .output()
        .expect("run schedctl");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = std::fs::read_to_string(example).expect("read the example");
    for key in ["listen = ", "watch = "] {
        assert!(text.lines().any(|l| l.starts_with(key)), "no `{key}`");
    }
}

#[test]
fn daemon_listen_must_be_an_address() {
    let env = TestEnv::new().job("j", "@daily", "true").write();
    let out = env.run(&["daemon", "--listen", "localhost:9187"]);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(
        out.stderr
            .contains("invalid value 'localhost:9187' for '--listen <ADDR>'"),
        "{}",
        out.stderr
    );
}

#[test]
fn output_into_a_pipe_closed_early_ends_quietly() {
    // `schedctl next ... | head -1`: the reader goes away after one line.
    let mut child = std::process::Command::new(crate::support::bin())
        .args(["next", "* * * * * *", "--tz", "UTC", "-n", "1000000"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut first = [0u8; 10];
    std::io::Read::read_exact(child.stdout.as_mut().expect("stdout"), &mut first).expect("read");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "no panic, no message: {stderr}");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGPIPE),
        "killed by SIGPIPE, as `head` expects"
    );
}
