//! Reloading when the job file changes on disk, through the real binary: written in place,
//! renamed over (`sed -i`, editors), moved away and written anew (vim); added jobs fire,
//! removed ones stop, changed schedules recompute; an invalid file keeps the running
//! configuration and says why in the log, `/readyz` and `/metrics`.

use crate::support::{Daemon, TestEnv, get, metric};

const KEEP: &str =
    "[daemon]\ntimezone = \"UTC\"\n\n[jobs.keep]\nschedule = \"0 0 1 1 *\"\ncommand = \"true\"\n";

fn every_second(name: &str) -> String {
    format!("\n[jobs.{name}]\nschedule = \"* * * * * *\"\ncommand = \"echo {name} ran\"\n")
}

/// Lines logged so far.
fn mark(daemon: &Daemon) -> usize {
    daemon.lines().len()
}

/// Wait for a reload after line `from` and return the index just after its result line.
fn wait_reload(daemon: &Daemon, from: usize, result: &str) -> usize {
    let at = std::cell::Cell::new(0);
    daemon.wait_until(&format!("a reload after line {from}: {result}"), |lines| {
        let changed = lines[from.min(lines.len())..]
            .iter()
            .position(|l| l.contains("the job file changed on disk; reloading"));
        let Some(changed) = changed.map(|i| i + from) else {
            return false;
        };
        match lines[changed..].iter().position(|l| l.contains(result)) {
            Some(i) => {
                at.set(changed + i + 1);
                true
            }
            None => false,
        }
    });
    at.get()
}

fn runs_after(daemon: &Daemon, from: usize, job: &str) -> usize {
    daemon.lines()[from..]
        .iter()
        .filter(|l| l.contains(&format!("job={job} ")) && l.contains("run started"))
        .count()
}

#[test]
fn a_file_renamed_over_the_job_file_or_written_anew_after_a_move_is_reloaded() {
    let env = TestEnv::new();
    env.write_raw(KEEP);
    let mut daemon = env.daemon();
    daemon.wait_for(&["reloading the job file when it changes"]);
    // `sed -i` and most editors: write a temporary file, rename it over.
    let from = mark(&daemon);
    let tmp = env.path(".jobs.toml.tmp");
    std::fs::write(&tmp, format!("{KEEP}{}", every_second("added"))).expect("write");
    std::fs::rename(&tmp, env.config()).expect("rename over");
    wait_reload(&daemon, from, "configuration reloaded jobs=2");
    daemon.wait_for(&["job=added", "stream=stdout: added ran"]);
    // vim's default: move the old file away, write a new one.
    let from = mark(&daemon);
    std::fs::rename(env.config(), env.path("jobs.toml~")).expect("move away");
    let text = format!("{KEEP}{}{}", every_second("added"), every_second("vimmed"));
    std::fs::write(env.config(), text).expect("write anew");
    wait_reload(&daemon, from, "configuration reloaded jobs=3");
    daemon.wait_for(&["job=vimmed", "stream=stdout: vimmed ran"]);
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(
        daemon.count(&["configuration reloaded"]),
        2,
        "one reload per save:\n{}",
        daemon.lines().join("\n")
    );
}

#[test]
fn removed_jobs_stop_firing_and_changed_schedules_recompute() {
    let env = TestEnv::new();
    env.write_raw(&format!(
        "{KEEP}{}{}\n[jobs.later]\nschedule = \"0 0 1 1 *\"\ncommand = \"echo later ran\"\n",
        every_second("gone"),
        every_second("stays")
    ));
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=gone", "stream=stdout: gone ran"]);
    let from = mark(&daemon);
    // Written in place: `gone` removed, `later` every second now.
    env.write_raw(&format!(
        "{KEEP}{}\n[jobs.later]\nschedule = \"* * * * * *\"\ncommand = \"echo later ran\"\n",
        every_second("stays")
    ));
    let after = wait_reload(&daemon, from, "configuration reloaded jobs=3");
    daemon.wait_for(&["job=later", "stream=stdout: later ran"]);
    daemon.wait_until("two runs of `stays` after the reload", |lines| {
        lines[after..]
            .iter()
            .filter(|l| l.contains("job=stays ") && l.contains("run started"))
            .count()
            >= 2
    });
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(
        runs_after(&daemon, after, "gone"),
        0,
        "{}",
        daemon.lines().join("\n")
    );
}

#[test]
fn an_invalid_file_keeps_the_running_configuration_and_says_why() {
    let env = TestEnv::new()
        .daemon_key("listen", "\"127.0.0.1:0\"")
        .job("tick", "* * * * * *", "echo tock")
        .write();
    let good = std::fs::read_to_string(env.config()).expect("read");
    let mut daemon = env.daemon();
    let addr = daemon.http_addr();
    let from = mark(&daemon);
    let bad = good.replace("schedule = \"* * * * * *\"", "schedule = \"61 * * * *\"");
    let line = bad
        .lines()
        .position(|l| l.starts_with("schedule"))
        .expect("schedule line")
        + 1;
    env.write_raw(&bad);
    let after = wait_reload(
        &daemon,
        from,
        "reload failed; the previous configuration stays in effect",
    );
    let error = format!("jobs.toml:{line}:12: job `tick`: key `schedule`:");
    assert!(
        daemon.lines()[from..after]
            .iter()
            .any(|l| l.contains(&error)),
        "no `{error}` in:\n{}",
        daemon.lines()[from..].join("\n")
    );
    daemon.wait_until("a run on the kept configuration", |lines| {
        lines[after..]
            .iter()
            .any(|l| l.contains("job=tick") && l.contains("run finished"))
    });
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "the previous configuration still runs: {body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["last_reload"]["ok"], false, "{body}");
    let errors = ready["last_reload"]["errors"].as_array().expect("errors");
    assert!(
        errors.len() == 1 && errors[0].as_str().is_some_and(|e| e.contains(&error)),
        "{body}"
    );
    let (_, text) = get(&addr, "/metrics");
    assert_eq!(
        metric(&text, "schedctl_config_last_reload_successful"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "schedctl_config_reloads_total{result=\"failure\"}"),
        Some(1.0)
    );
    // Fixed: back to normal.
    let from = mark(&daemon);
    env.write_raw(&good);
    wait_reload(&daemon, from, "configuration reloaded jobs=1");
    let (_, text) = get(&addr, "/metrics");
    assert_eq!(
        metric(&text, "schedctl_config_last_reload_successful"),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "schedctl_config_reloads_total{result=\"success\"}"),
        Some(1.0)
    );
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn watch_false_leaves_reloads_to_sighup() {
    let env = TestEnv::new()
        .daemon_key("watch", "false")
        .job("keep", "0 0 1 1 *", "true")
        .write();
    let mut daemon = env.daemon();
    let text = std::fs::read_to_string(env.config()).expect("read");
    env.write_raw(&format!("{text}{}", every_second("added")));
    daemon.signal(nix::sys::signal::Signal::SIGHUP);
    daemon.wait_for(&["configuration reloaded jobs=2"]);
    daemon.wait_for(&["job=added", "stream=stdout: added ran"]);
    assert_eq!(daemon.stop(), Some(0));
    assert_eq!(daemon.count(&["reloading the job file when it changes"]), 0);
    assert_eq!(daemon.count(&["the job file changed on disk"]), 0);
    assert_eq!(daemon.count(&["configuration reloaded"]), 1);
}

#[test]
fn a_job_file_mounted_from_a_config_map_is_reloaded_when_the_map_changes() {
    // Kubernetes: jobs.toml -> ..data/jobs.toml, ..data -> ..v1; an update writes ..v2 and
    // renames a new ..data symlink over the old one. No event names jobs.toml.
    let env = TestEnv::new();
    let version = |v: &str, text: &str| {
        let dir = env.path(&format!("..{v}"));
        std::fs::create_dir(&dir).expect("dir");
        std::fs::write(dir.join("jobs.toml"), text).expect("write");
    };
    version("v1", KEEP);
    std::os::unix::fs::symlink("..v1", env.path("..data")).expect("link");
    let _ = std::fs::remove_file(env.config());
    std::os::unix::fs::symlink("..data/jobs.toml", env.config()).expect("link");
    let mut daemon = env.daemon();
    daemon.wait_for(&["reloading the job file when it changes"]);
    let from = mark(&daemon);
    version("v2", &format!("{KEEP}{}", every_second("mapped")));
    std::os::unix::fs::symlink("..v2", env.path("..data_tmp")).expect("link");
    std::fs::rename(env.path("..data_tmp"), env.path("..data")).expect("swap");
    wait_reload(&daemon, from, "configuration reloaded jobs=2");
    daemon.wait_for(&["job=mapped", "stream=stdout: mapped ran"]);
    assert_eq!(daemon.stop(), Some(0));
}
