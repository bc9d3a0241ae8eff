//! Config validation, specified by example: every message a user can see.

use std::path::Path;
use std::time::Duration;

use super::*;

fn check(text: &str) -> Result<Config, ConfigErrors> {
    parse(Path::new("/etc/schedctl/jobs.toml"), text)
}

/// The error lines, without the summary line.
fn errors(text: &str) -> Vec<String> {
    let err = check(text).expect_err("the file is invalid");
    let rendered = err.to_string();
    let mut lines: Vec<String> = rendered.lines().map(str::to_owned).collect();
    let summary = lines.pop().expect("summary line");
    assert_eq!(
        summary,
        format!(
            "/etc/schedctl/jobs.toml: {} error{}; fix them and try again",
            lines.len(),
            if lines.len() == 1 { "" } else { "s" }
        )
    );
    lines
}

#[test]
fn a_full_job_is_read_with_every_key() {
    let config = check(
        r#"
[daemon]
timezone = "Europe/Berlin"
shutdown_grace = "1m"
log_format = "json"

[defaults]
kill_grace = "5s"
env = { PATH = "/usr/bin:/bin", LANG = "C.UTF-8" }

[jobs.backup]
schedule = "30 2 * * *"
command = "/usr/local/bin/backup --full"
timezone = "America/New_York"
overlap = "allow"
timeout = "2h"
workdir = "data"
env = { LANG = "en_US.UTF-8", TARGET = "s3://bucket" }

[jobs.report]
schedule = "@daily"
command = ["/usr/bin/report", "--month", "11"]
enabled = false
"#,
    )
    .expect("valid");
    assert_eq!(&*config.daemon.timezone.name, "Europe/Berlin");
    assert_eq!(config.daemon.shutdown_grace, Duration::from_secs(60));
    assert_eq!(config.daemon.log_format, LogFormat::Json);
    let names: Vec<&str> = config.jobs.iter().map(|j| &*j.name).collect();
    assert_eq!(names, ["backup", "report"]);

    let backup = config.job("backup").expect("backup");
    assert_eq!(
        backup.command,
        CommandLine::Shell("/usr/local/bin/backup --full".into())
    );
    assert_eq!(&*backup.zone.name, "America/New_York");
    assert_eq!(backup.settings.overlap, Overlap::Allow);
    assert_eq!(backup.settings.timeout, Some(Duration::from_secs(7200)));
    assert_eq!(
        backup.settings.kill_grace,
        Duration::from_secs(5),
        "from [defaults]"
    );
    assert_eq!(
        backup.settings.workdir.as_deref(),
        Some(Path::new("/etc/schedctl/data"))
    );
    let env: Vec<(&str, &str)> = backup
        .settings
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        env,
        [
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "en_US.UTF-8"),
            ("TARGET", "s3://bucket")
        ]
    );

    let report = config.job("report").expect("report");
    assert_eq!(
        report.command,
        CommandLine::Exec(
            vec![
                "/usr/bin/report".to_owned(),
                "--month".to_owned(),
                "11".to_owned()
            ]
            .into()
        )
    );
    assert_eq!(
        &*report.zone.name, "Europe/Berlin",
        "the daemon's zone is the default"
    );
    assert!(!report.settings.enabled);
    assert_eq!(report.settings.overlap, Overlap::Skip);
    assert_eq!(report.settings.timeout, None);
    assert_eq!(report.settings.kill_grace, Duration::from_secs(5));
}

#[test]
fn builtin_defaults() {
    let config = check("[jobs.a]\nschedule = \"* * * * *\"\ncommand = \"true\"\n").expect("valid");
    let a = &config.jobs[0];
    assert_eq!(a.settings.kill_grace, DEFAULT_KILL_GRACE);
    assert_eq!(a.settings.overlap, Overlap::Skip);
    assert!(a.settings.enabled);
    assert_eq!(config.daemon.shutdown_grace, DEFAULT_SHUTDOWN_GRACE);
    assert_eq!(config.daemon.log_format, LogFormat::Text);
}

#[test]
fn an_empty_file_is_valid_and_has_no_jobs() {
    assert!(check("").expect("valid").jobs.is_empty());
}

#[test]
fn every_error_in_the_file_is_reported_at_once_in_file_order() {
    let lines = errors(
        r#"[daemon]
timezone = "Mars/Olympus"
shutdown_grace = 30
colour = "blue"

[jobs.backup]
schedule = "61 * * * *"
command = ""
timout = "1h"
overlap = "sometimes"

[jobs."bad name"]
schedule = "@daily"
command = "true"

[jobs.nocmd]
schedule = "@hourly"
"#,
    );
    assert_eq!(
        lines,
        [
            "/etc/schedctl/jobs.toml:2:12: [daemon]: key `timezone`: unknown time zone `Mars/Olympus` (use an IANA name such as `Europe/Berlin` or `UTC`)",
            "/etc/schedctl/jobs.toml:3:18: [daemon]: key `shutdown_grace`: expected a duration string such as \"90s\" or \"1h 30m\", found integer `30`",
            "/etc/schedctl/jobs.toml:4:1: [daemon]: key `colour`: unknown key (expected one of: state, timezone, lease_ttl, shutdown_grace, history_limit, output_tail, log_format, listen, watch)",
            "/etc/schedctl/jobs.toml:7:12: job `backup`: key `schedule`: minute field `61`: value out of range 0-59",
            "/etc/schedctl/jobs.toml:8:11: job `backup`: key `command`: the command must not be empty",
            "/etc/schedctl/jobs.toml:9:1: job `backup`: key `timout`: unknown key (did you mean `timeout`?)",
            "/etc/schedctl/jobs.toml:10:11: job `backup`: key `overlap`: `sometimes` is not an overlap policy (expected `skip` or `allow`)",
            "/etc/schedctl/jobs.toml:12:7: job `bad name`: job names may only contain letters, digits, `_`, `.` and `-`",
            "/etc/schedctl/jobs.toml:16:7: job `nocmd`: missing key `command`",
        ]
    );
}

#[test]
fn value_errors() {
    let cases: &[(&str, &str)] = &[
        (
            "timezone = 5",
            "key `timezone`: expected a string, found integer `5`",
        ),
        (
            "timeout = \"0s\"",
            "key `timeout`: a timeout of zero would kill every run at once; leave `timeout` out for no limit",
        ),
        (
            "timeout = \"soon\"",
            "key `timeout`: `soon` is not a duration (expected number at 0); write e.g. \"90s\" or \"1h 30m\"",
        ),
        (
            "kill_grace = true",
            "key `kill_grace`: expected a duration string such as \"90s\" or \"1h 30m\", found boolean `true`",
        ),
        (
            "enabled = \"yes\"",
            "key `enabled`: expected `true` or `false`, found string `yes`",
        ),
        (
            "overlap = \"queue\"",
            "key `overlap`: `queue` is not supported by this version of schedctl yet (use `skip` or `allow`)",
        ),
        (
            "workdir = \"\"",
            "key `workdir`: the working directory must not be empty",
        ),
        (
            "env = \"A=1\"",
            "key `env`: expected a table such as { NAME = \"value\" }, found string `A=1`",
        ),
        (
            "env = { N = 5 }",
            "key `env`: `N` must be a string (quote it), found integer `5`",
        ),
        (
            "env = { SCHEDCTL_JOB = \"x\" }",
            "key `env`: `SCHEDCTL_JOB` is set by schedctl for every run and cannot be overridden",
        ),
        (
            "jitter = \"5s\"",
            "key `jitter`: this key is not supported by this version of schedctl yet",
        ),
    ];
    for (line, expected) in cases {
        let text = format!("[jobs.j]\nschedule = \"@daily\"\ncommand = \"true\"\n{line}\n");
        let lines = errors(&text);
        assert_eq!(lines.len(), 1, "{line}: {lines:?}");
        let message = lines[0].split_once(": job `j`: ").map(|(_, m)| m);
        assert_eq!(message, Some(*expected), "{line}");
    }
}

#[test]
fn command_forms() {
    let cases: &[(&str, &str)] = &[
        ("command = []", "the command array must name a program"),
        ("command = [\"\"]", "the program name must not be empty"),
        (
            "command = [\"ls\", 5]",
            "every element of a command array must be a string, found integer `5`",
        ),
        (
            "command = 5",
            "expected a string (run by /bin/sh -c) or an array (executed directly), found integer `5`",
        ),
        ("command = \"   \"", "the command must not be empty"),
    ];
    for (line, expected) in cases {
        let lines = errors(&format!("[jobs.j]\nschedule = \"@daily\"\n{line}\n"));
        assert_eq!(
            lines,
            [format!(
                "/etc/schedctl/jobs.toml:3:11: job `j`: key `command`: {expected}"
            )],
            "{line}"
        );
    }
}

#[test]
fn defaults_are_validated_once_and_fill_every_job() {
    let lines = errors(
        "[defaults]\ntimeout = \"never\"\ncommand = \"true\"\n[jobs.a]\nschedule = \"@daily\"\n[jobs.b]\nschedule = \"@daily\"\n",
    );
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(
            "/etc/schedctl/jobs.toml:2:11: [defaults]: key `timeout`: `never` is not a duration"
        ),
        "{}",
        lines[0]
    );

    let ok = check("[defaults]\ncommand = \"true\"\nschedule = \"@hourly\"\n[jobs.a]\n[jobs.b]\nschedule = \"@daily\"\n").expect("valid");
    assert_eq!(&*ok.job("a").expect("a").schedule_text, "@hourly");
    assert_eq!(&*ok.job("b").expect("b").schedule_text, "@daily");
}

#[test]
fn structure_errors() {
    assert_eq!(
        errors("[[job]]\nname = \"x\"\n"),
        ["/etc/schedctl/jobs.toml:1:3: unknown table `job` (jobs are tables named [jobs.NAME])"]
    );
    assert_eq!(
        errors("jobs = 5\n"),
        ["/etc/schedctl/jobs.toml:1:8: `jobs` must be a table, found integer `5`"]
    );
    assert_eq!(
        errors("[jobs]\nbackup = \"30 2 * * *\"\n"),
        [
            "/etc/schedctl/jobs.toml:2:10: job `backup`: a job must be a table, found string `30 2 * * *`"
        ]
    );
}

#[test]
fn syntax_errors_are_reported_with_their_position() {
    let lines = errors("[jobs.a]\nschedule = \"@daily\ncommand = \"true\"\n");
    assert!(!lines.is_empty());
    assert!(
        lines[0].starts_with("/etc/schedctl/jobs.toml:2:"),
        "{lines:?}"
    );
    let dup = errors("[jobs.a]\ncommand = \"a\"\ncommand = \"b\"\nschedule = \"@daily\"\n");
    assert!(
        dup[0].starts_with("/etc/schedctl/jobs.toml:3:1: duplicate key"),
        "{dup:?}"
    );
}

#[test]
fn zones_are_resolved_once_per_name() {
    let mut text = String::new();
    for i in 0..50 {
        text.push_str(&format!(
            "[jobs.j{i}]\nschedule = \"@daily\"\ncommand = \"true\"\ntimezone = \"Asia/Tokyo\"\n"
        ));
    }
    let config = check(&text).expect("valid");
    assert!(config.jobs.iter().all(|j| &*j.zone.name == "Asia/Tokyo"));
}

#[test]
fn utc_is_the_built_in_zone_and_other_names_come_from_the_database() {
    for name in ["UTC", "Etc/UTC", "utc"] {
        let zone = Zone::named(name).expect("UTC");
        assert_eq!(zone.tz, TimeZone::UTC, "{name}");
        assert_eq!(&*zone.name, name);
    }
    let berlin = Zone::named("Europe/Berlin").expect("Berlin");
    assert_eq!(berlin.tz.iana_name(), Some("Europe/Berlin"));
    // The built-in zone and the database's UTC convert alike.
    let db_utc = TimeZone::get("UTC").expect("the database's UTC");
    let t: jiff::Timestamp = "2026-03-29T01:30:00Z".parse().expect("instant");
    assert_eq!(
        t.to_zoned_datetime(TimeZone::UTC).datetime(),
        t.to_zoned_datetime(db_utc).datetime()
    );
}

#[test]
fn listen_and_watch_are_read_and_checked() {
    let config = check("[daemon]\nlisten = \"127.0.0.1:9187\"\nwatch = false\n").expect("valid");
    assert_eq!(
        config.daemon.listen,
        Some("127.0.0.1:9187".parse().expect("addr"))
    );
    assert!(!config.daemon.watch);
    let config = check("[daemon]\nlisten = \"[::1]:0\"\n").expect("valid");
    assert_eq!(config.daemon.listen, Some("[::1]:0".parse().expect("addr")));
    assert!(config.daemon.watch, "watching is on by default");
    assert_eq!(check("").expect("valid").daemon.listen, None);
    let cases: &[(&str, &str)] = &[
        (
            "listen = \"localhost:9187\"",
            "2:10: [daemon]: key `listen`: `localhost:9187` is not an address to listen on: write \"127.0.0.1:9187\"",
        ),
        (
            "listen = \"127.0.0.1\"",
            "2:10: [daemon]: key `listen`: `127.0.0.1` is not an address to listen on: add a port, e.g. \"127.0.0.1:9187\"",
        ),
        (
            "listen = \"127.0.0.1:http\"",
            "2:10: [daemon]: key `listen`: `127.0.0.1:http` is not an address to listen on: the port must be a number from 0 to 65535",
        ),
        (
            "listen = \"metrics.example:9187\"",
            "2:10: [daemon]: key `listen`: `metrics.example:9187` is not an address to listen on: write an IP address and port, e.g. \"127.0.0.1:9187\" or \"[::1]:9187\"",
        ),
        (
            "listen = \"\"",
            "2:10: [daemon]: key `listen`: the address must not be empty; leave `listen` out to serve no HTTP",
        ),
        (
            "listen = 9187",
            "2:10: [daemon]: key `listen`: expected a string, found integer `9187`",
        ),
        (
            "watch = \"no\"",
            "2:9: [daemon]: key `watch`: expected `true` or `false`, found string `no`",
        ),
    ];
    for (line, expected) in cases {
        let lines = errors(&format!("[daemon]\n{line}\n"));
        assert_eq!(
            lines,
            [format!("/etc/schedctl/jobs.toml:{expected}")],
            "{line}"
        );
    }
}

#[test]
fn jobs_with_the_same_settings_share_one_copy() {
    let config = check(
        "[defaults]\nkill_grace = \"5s\"\ncommand = \"true\"\nschedule = \"@daily\"\n\
         [jobs.a]\n[jobs.b]\n[jobs.c]\ntimeout = \"1m\"\n",
    )
    .expect("valid");
    let settings: Vec<&Arc<Settings>> = config.jobs.iter().map(|j| &j.settings).collect();
    assert!(Arc::ptr_eq(settings[0], settings[1]));
    assert!(!Arc::ptr_eq(settings[0], settings[2]));
    assert_eq!(settings[2].timeout, Some(Duration::from_secs(60)));
    assert_eq!(settings[0].kill_grace, Duration::from_secs(5));
}

/// A file large enough to be parsed in pieces (see `split`), with `edit` applied to each
/// job's lines.
fn large_file(edit: impl Fn(usize, String) -> String) -> String {
    let mut text = String::from("[daemon]\ntimezone = \"UTC\"\n\n[defaults]\ntimeout = \"1h\"\n\n");
    for i in 0..4000 {
        let job = format!(
            "[jobs.j{i:04}]\nschedule = \"{} 3 * * *\"\ncommand = \"echo {i}\"\n",
            i % 60
        );
        text.push_str(&edit(i, job));
    }
    text
}

fn line_of(text: &str, needle: &str) -> usize {
    let at = text.find(needle).expect("needle in the text");
    text[..at].matches('\n').count() + 1
}

#[test]
fn a_large_file_parsed_in_pieces_holds_every_job_with_its_settings() {
    let text = large_file(|_, job| job);
    assert!(split::pieces(&text).len() > 2, "the test file is cut");
    let config = check(&text).expect("valid");
    assert_eq!(config.jobs.len(), 4000);
    for name in ["j0000", "j1999", "j3999"] {
        let job = config.job(name).expect("job");
        assert_eq!(
            job.settings.timeout,
            Some(Duration::from_secs(3600)),
            "{name}"
        );
        assert_eq!(&*job.zone.name, "UTC", "{name}");
    }
    assert_eq!(
        config.job("j3999").expect("j3999").command,
        CommandLine::Shell("echo 3999".into())
    );
}

#[test]
fn errors_in_distant_pieces_of_a_large_file_name_their_own_lines() {
    let text = large_file(|i, job| match i {
        10 | 3900 => job.replace("3 * * *\"", "3 * * * * * *\""),
        3950 => job.replace("command", "comand"),
        _ => job,
    });
    assert!(split::pieces(&text).len() > 2, "the test file is cut");
    let first = line_of(&text, "[jobs.j0010]") + 1;
    let second = line_of(&text, "[jobs.j3900]") + 1;
    let typo = line_of(&text, "comand");
    let fields = "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with leading seconds, found 8";
    assert_eq!(
        errors(&text),
        vec![
            format!("/etc/schedctl/jobs.toml:{first}:12: job `j0010`: key `schedule`: {fields}"),
            format!("/etc/schedctl/jobs.toml:{second}:12: job `j3900`: key `schedule`: {fields}"),
            format!(
                "/etc/schedctl/jobs.toml:{}:7: job `j3950`: missing key `command`",
                typo - 2
            ),
            format!(
                "/etc/schedctl/jobs.toml:{typo}:1: job `j3950`: key `comand`: unknown key (did you mean `command`?)"
            ),
        ]
    );
}

#[test]
fn a_syntax_error_in_a_later_piece_of_a_large_file_is_found_as_in_one_pass() {
    let text = large_file(|i, job| {
        if i == 3000 {
            job.replace("command = \"echo 3000\"", "command = \"echo 3000")
        } else {
            job
        }
    });
    let line = line_of(&text, "command = \"echo 3000\n");
    let found = errors(&text);
    assert!(
        found[0].starts_with(&format!("/etc/schedctl/jobs.toml:{line}:")),
        "{found:?}"
    );
}

#[test]
fn tables_of_one_job_in_distant_pieces_of_a_large_file_read_as_in_one_pass() {
    // Valid TOML: a job's `env` table far below the job. Each piece alone would make its
    // own `jobs.j0010`, so the file must not be read in pieces.
    let text = large_file(|_, job| job) + "[jobs.j0010.env]\nA = \"1\"\n";
    assert!(split::pieces(&text).len() > 2, "the test file is cut");
    let config = check(&text).expect("valid");
    assert_eq!(config.jobs.len(), 4000);
    let env = &config.job("j0010").expect("j0010").settings.env;
    assert_eq!(env, &vec![("A".to_owned(), "1".to_owned())]);

    // The same job twice, far apart: the error one pass gives.
    let twice = large_file(|_, job| job) + "[jobs.j0010]\nschedule = \"@daily\"\n";
    let header = twice.lines().count() - 1;
    assert_eq!(
        errors(&twice),
        vec![
            format!("/etc/schedctl/jobs.toml:{header}:7: duplicate key"),
            format!("/etc/schedctl/jobs.toml:{}:1: duplicate key", header + 1),
        ]
    );
}
