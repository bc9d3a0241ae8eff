//! Job tables and `[defaults]`: each key checked on its own, then one job assembled from
//! its own keys over the defaults.

use std::path::PathBuf;
use std::sync::Arc;

use toml::de::{DeTable, DeValue};

use super::Checker;
use crate::config::source::{self, Entry, Section};
use crate::config::{
    CatchUp, CommandLine, DEFAULT_KILL_GRACE, DEFAULT_RETRY_BACKOFF, DEFAULT_RETRY_BACKOFF_MAX,
    Job, Overlap, Settings, Timing, Zone,
};
use crate::schedule::Schedule;

const JOB_KEYS: &[&str] = &[
    "schedule",
    "at",
    "command",
    "timezone",
    "overlap",
    "timeout",
    "kill_grace",
    "retries",
    "retry_backoff",
    "retry_backoff_max",
    "catch_up",
    "starting_deadline",
    "max_failures",
    "enabled",
    "workdir",
    "env",
];
const JOB_KEYS_LATER: &[&str] = &[
    "jitter",
    "priority",
    "user",
    "group",
    "on_success",
    "on_failure",
];
/// Environment variables the daemon sets for every run.
const RESERVED_ENV_PREFIX: &str = "SCHEDCTL_";
const MAX_RETRIES: u64 = 1000;

/// The values one job table (or `[defaults]`) sets; `seen` holds keys that were
/// present, valid or not, so that a bad value is not also reported as missing.
#[derive(Clone, Default)]
pub(super) struct JobKeys {
    seen: Vec<&'static str>,
    schedule: Option<(Schedule, Arc<str>)>,
    at: Option<At>,
    command: Option<CommandLine>,
    timezone: Option<Zone>,
    overlap: Option<Overlap>,
    timeout: Option<std::time::Duration>,
    kill_grace: Option<std::time::Duration>,
    enabled: Option<bool>,
    workdir: Option<PathBuf>,
    env: Vec<(String, String)>,
    retries: Option<u32>,
    retry_backoff: Option<std::time::Duration>,
    retry_backoff_max: Option<std::time::Duration>,
    catch_up: Option<CatchUp>,
    starting_deadline: Option<std::time::Duration>,
    max_failures: Option<u32>,
}

/// An `at` time: with an offset it is an instant; without, a local time in the job's zone.
#[derive(Clone, Debug)]
enum At {
    Instant(jiff::Timestamp),
    Local(jiff::civil::DateTime),
}

impl Checker<'_> {
    pub(super) fn job_keys(&mut self, section: &Section, table: &DeTable<'_>) -> JobKeys {
        let mut keys = JobKeys::default();
        for entry in source::entries(table) {
            let key = entry.name();
            let value = entry.value.get_ref();
            let result = match key {
                "schedule" => source::string(value)
                    .and_then(|text| self.schedule(text))
                    .map(|s| keys.schedule = Some(s)),
                "at" => at(value).map(|a| keys.at = Some(a)),
                "command" => command(value).map(|c| keys.command = Some(c)),
                "timezone" => source::string(value)
                    .and_then(|name| self.zone(name))
                    .map(|z| keys.timezone = Some(z)),
                "overlap" => overlap(value).map(|o| keys.overlap = Some(o)),
                "timeout" => source::duration(value).and_then(|d| {
                    if d.is_zero() {
                        return Err("a timeout of zero would kill every run at once; leave `timeout` out for no limit".to_owned());
                    }
                    keys.timeout = Some(d);
                    Ok(())
                }),
                "kill_grace" => source::duration(value).map(|d| keys.kill_grace = Some(d)),
                "retries" => source::integer(value, MAX_RETRIES).map(|n| keys.retries = Some(n as u32)),
                "retry_backoff" => source::duration(value).map(|d| keys.retry_backoff = Some(d)),
                "retry_backoff_max" => source::duration(value).map(|d| keys.retry_backoff_max = Some(d)),
                "catch_up" => catch_up(value).map(|c| keys.catch_up = Some(c)),
                "starting_deadline" => source::duration(value).and_then(|d| {
                    if d.is_zero() {
                        return Err("a zero deadline would refuse every run; leave it out for no deadline".to_owned());
                    }
                    keys.starting_deadline = Some(d);
                    Ok(())
                }),
                "max_failures" => source::integer(value, 1_000_000).map(|n| keys.max_failures = Some(n as u32)),
                "enabled" => source::boolean(value).map(|b| keys.enabled = Some(b)),
                "workdir" => source::string(value).and_then(|s| {
                    if s.is_empty() {
                        return Err("the working directory must not be empty".to_owned());
                    }
                    keys.workdir = Some(self.base_dir.join(s));
                    Ok(())
                }),
                "env" => self.env(section, &entry, &mut keys.env),
                _ => {
                    self.unknown_key(&entry, section, JOB_KEYS, JOB_KEYS_LATER);
                    continue;
                }
            };
            // Every key that reaches here is one of JOB_KEYS.
            keys.seen.extend(JOB_KEYS.iter().find(|k| **k == key));
            if let Err(message) = result {
                self.src
                    .error(entry.value.span(), section, Some(key), message);
            }
        }
        keys
    }

    /// Checks each variable on its own; errors are reported here, so this always returns Ok.
    fn env(
        &mut self,
        section: &Section,
        entry: &Entry<'_, '_>,
        out: &mut Vec<(String, String)>,
    ) -> Result<(), String> {
        let Some(table) = entry.value.get_ref().as_table() else {
            return Err(format!(
                "expected a table such as {{ NAME = \"value\" }}, found {}",
                source::describe(entry.value.get_ref())
            ));
        };
        for var in source::entries(table) {
            let name = var.name();
            let problem = if name.is_empty() || name.contains(['=', '\0']) {
                Some(format!("`{name}` is not a valid environment variable name"))
            } else if name.starts_with(RESERVED_ENV_PREFIX) {
                Some(format!(
                    "`{name}` is set by schedctl for every run and cannot be overridden"
                ))
            } else {
                match var.value.get_ref() {
                    DeValue::String(s) if s.contains('\0') => {
                        Some(format!("`{name}` contains a NUL byte"))
                    }
                    DeValue::String(s) => {
                        out.push((name.to_owned(), s.to_string()));
                        None
                    }
                    other => Some(format!(
                        "`{name}` must be a string (quote it), found {}",
                        source::describe(other)
                    )),
                }
            };
            if let Some(message) = problem {
                self.src
                    .error(var.key.span(), section, Some("env"), message);
            }
        }
        Ok(())
    }

    pub(super) fn job(
        &mut self,
        entry: &Entry<'_, '_>,
        defaults: &JobKeys,
        default_zone: &Zone,
    ) -> Option<Job> {
        let name = entry.name();
        let section = Section::Job(name.to_owned());
        let mut ok = true;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            self.src.error(
                entry.key.span(),
                &section,
                None,
                "job names may only contain letters, digits, `_`, `.` and `-`",
            );
            ok = false;
        }
        let Some(table) = entry.value.get_ref().as_table() else {
            let found = source::describe(entry.value.get_ref());
            self.src.error(
                entry.value.span(),
                &section,
                None,
                format!("a job must be a table, found {found}"),
            );
            return None;
        };
        let mut own = self.job_keys(&section, table);
        let seen = |k: &JobKeys, key: &str| k.seen.contains(&key);
        let has_schedule =
            seen(&own, "schedule") || (seen(defaults, "schedule") && !seen(&own, "at"));
        let has_at = seen(&own, "at");
        if seen(&own, "schedule") && has_at {
            let message = "give either `schedule` (repeating) or `at` (once), not both";
            self.src.error(entry.key.span(), &section, None, message);
            ok = false;
        } else if !has_schedule && !has_at {
            let message = "missing key `schedule` (or `at` for a one-off run)";
            self.src.error(entry.key.span(), &section, None, message);
            ok = false;
        }
        if !seen(&own, "command") && !seen(defaults, "command") {
            self.src
                .error(entry.key.span(), &section, None, "missing key `command`");
            ok = false;
        }
        let zone = own
            .timezone
            .clone()
            .or_else(|| defaults.timezone.clone())
            .unwrap_or_else(|| default_zone.clone());
        let (timing, schedule_text) = if has_at {
            let at = own.at.take()?;
            let instant = match at {
                At::Instant(t) => t,
                At::Local(dt) => match dt.to_zoned_datetime(zone.tz.clone()) {
                    Ok(z) => z.timestamp(),
                    Err(e) => {
                        self.src.error(
                            entry.key.span(),
                            &section,
                            Some("at"),
                            format!("`{dt}` does not exist in {}: {e}", zone.name),
                        );
                        return None;
                    }
                },
            };
            let shown = instant
                .to_zoned_datetime(zone.tz.clone())
                .strftime("%Y-%m-%dT%H:%M:%S%:z")
                .to_string();
            (Timing::At(instant), self.shared_text(format!("at {shown}")))
        } else {
            let (schedule, text) = own.schedule.take().or_else(|| defaults.schedule.clone())?;
            (Timing::Schedule(schedule), text)
        };
        let command = own.command.take().or_else(|| defaults.command.clone())?;
        let mut env = defaults.env.clone();
        for (k, v) in &own.env {
            env.retain(|(name, _)| name != k);
            env.push((k.clone(), v.clone()));
        }
        let retry_backoff = own
            .retry_backoff
            .or(defaults.retry_backoff)
            .unwrap_or(DEFAULT_RETRY_BACKOFF);
        let retry_backoff_max = own
            .retry_backoff_max
            .or(defaults.retry_backoff_max)
            .unwrap_or(DEFAULT_RETRY_BACKOFF_MAX);
        if retry_backoff > retry_backoff_max {
            let message = format!(
                "`retry_backoff` ({}) is longer than `retry_backoff_max` ({})",
                humantime::format_duration(retry_backoff),
                humantime::format_duration(retry_backoff_max)
            );
            self.src
                .error(entry.key.span(), &section, Some("retry_backoff"), message);
            ok = false;
        }
        if !ok {
            return None;
        }
        let settings = Settings {
            enabled: own.enabled.or(defaults.enabled).unwrap_or(true),
            overlap: own.overlap.or(defaults.overlap).unwrap_or(Overlap::Skip),
            timeout: own.timeout.or(defaults.timeout),
            kill_grace: own
                .kill_grace
                .or(defaults.kill_grace)
                .unwrap_or(DEFAULT_KILL_GRACE),
            workdir: own.workdir.take().or_else(|| defaults.workdir.clone()),
            env,
            retries: own.retries.or(defaults.retries).unwrap_or(0),
            retry_backoff,
            retry_backoff_max,
            catch_up: own
                .catch_up
                .or(defaults.catch_up)
                .unwrap_or(CatchUp::Latest),
            starting_deadline: own.starting_deadline.or(defaults.starting_deadline),
            max_failures: own
                .max_failures
                .or(defaults.max_failures)
                .filter(|&n| n > 0),
        };
        Some(Job {
            name: name.into(),
            timing,
            schedule_text,
            command,
            zone,
            settings: self.intern(settings),
        })
    }
}

fn command(value: &DeValue<'_>) -> Result<CommandLine, String> {
    match value {
        DeValue::String(s) if s.trim().is_empty() => {
            Err("the command must not be empty".to_owned())
        }
        DeValue::String(s) if s.contains('\0') => Err("the command contains a NUL byte".to_owned()),
        DeValue::String(s) => Ok(CommandLine::Shell(s.as_ref().into())),
        DeValue::Array(items) => {
            let mut argv = Vec::with_capacity(items.len());
            for item in items.iter() {
                match item.get_ref() {
                    DeValue::String(s) if s.contains('\0') => {
                        return Err("an argument contains a NUL byte".to_owned());
                    }
                    DeValue::String(s) => argv.push(s.to_string()),
                    other => {
                        return Err(format!(
                            "every element of a command array must be a string, found {}",
                            source::describe(other)
                        ));
                    }
                }
            }
            match argv.first() {
                None => Err("the command array must name a program".to_owned()),
                Some(program) if program.is_empty() => {
                    Err("the program name must not be empty".to_owned())
                }
                Some(_) => Ok(CommandLine::Exec(argv.into())),
            }
        }
        other => Err(format!(
            "expected a string (run by /bin/sh -c) or an array (executed directly), found {}",
            source::describe(other)
        )),
    }
}

fn catch_up(value: &DeValue<'_>) -> Result<CatchUp, String> {
    match source::string(value)? {
        "latest" => Ok(CatchUp::Latest),
        "none" => Ok(CatchUp::None),
        "all" => Ok(CatchUp::All),
        other => Err(format!(
            "`{other}` is not a catch-up policy (expected `latest`, `none` or `all`)"
        )),
    }
}

/// `at` as a TOML datetime or a string: with an offset, or a local date and time.
fn at(value: &DeValue<'_>) -> Result<At, String> {
    let text = match value {
        DeValue::String(s) => s.to_string(),
        DeValue::Datetime(d) => d.to_string(),
        other => {
            return Err(format!(
                "expected a date and time such as \"2026-12-01T09:00:00+01:00\", found {}",
                source::describe(other)
            ));
        }
    };
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(At::Instant(t));
    }
    text.parse::<jiff::civil::DateTime>().map(At::Local).map_err(|_| {
        format!("`{text}` is not a date and time; write e.g. \"2026-12-01T09:00:00+01:00\" (or without offset, in the job's time zone)")
    })
}

fn overlap(value: &DeValue<'_>) -> Result<Overlap, String> {
    match source::string(value)? {
        "skip" => Ok(Overlap::Skip),
        "allow" => Ok(Overlap::Allow),
        "queue" | "replace" => Err(format!(
            "`{}` is not supported by this version of schedctl yet (use `skip` or `allow`)",
            source::string(value)?
        )),
        other => Err(format!(
            "`{other}` is not an overlap policy (expected `skip` or `allow`)"
        )),
    }
}
