//! `schedctl list`: every job with its schedule, zone, next fire (local and UTC), last
//! outcome and whether it is paused. Works without a daemon: it reads the job file and
//! the state.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use super::view::{self, Table};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Job, Timing};
use crate::error::Error;
use crate::schedule::Schedule;
use crate::scheduler::timeline;
use crate::store::{Backend, JobState, RunRecord};

/// One line of the list.
pub struct JobLine {
    pub job: Arc<Job>,
    pub paused: Option<String>,
    pub next: Option<Timestamp>,
    pub last: Option<RunRecord>,
}

pub fn run(config_path: &Path, json: bool) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let now = SystemClock.now();
    let lines = gather(&config, now)?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&lines)).unwrap_or_default()
        );
    } else {
        print!("{}", render(&lines, now, view::Look::of_stdout()));
    }
    Ok(0)
}

pub fn gather(config: &Config, now: Timestamp) -> Result<Vec<JobLine>, Error> {
    let (states, latest, anchor) = match view::open_state(config)? {
        Some(mut db) => {
            let failed = |e: crate::store::StoreError| {
                Error::Failed(anyhow::anyhow!(
                    "reading `{}`: {e}",
                    config.daemon.state.display()
                ))
            };
            let states = db.job_states().map_err(failed)?;
            let latest = db.latest_runs().map_err(failed)?;
            let anchor = db
                .meta("first_start")
                .map_err(failed)?
                .and_then(|a| a.parse().ok());
            (states, latest, anchor)
        }
        None => (Vec::new(), Vec::new(), None),
    };
    let states: HashMap<&str, &JobState> = states.iter().map(|s| (s.job.as_str(), s)).collect();
    let mut latest: HashMap<String, RunRecord> =
        latest.into_iter().map(|r| (r.job.clone(), r)).collect();
    Ok(config
        .jobs
        .iter()
        .map(|job| {
            let state = states.get(&*job.name);
            let paused = state.filter(|s| s.paused).map(|s| {
                s.paused_reason
                    .clone()
                    .unwrap_or_else(|| "paused".to_owned())
            });
            let after = state.and_then(|s| s.last_fired).map_or(now, |l| l.max(now));
            let next = (job.settings.enabled && paused.is_none())
                .then(|| timeline::next_fire(job, after, anchor.unwrap_or(now)))
                .flatten();
            JobLine {
                job: Arc::clone(job),
                paused,
                next,
                last: latest.remove(&*job.name),
            }
        })
        .collect())
}

fn duration(run: &RunRecord) -> Option<SignedDuration> {
    Some(run.ended_at?.duration_since(run.started_at?))
}

/// `succeeded 21h ago, took 12s`, `running for 3m`, `skipped 2m ago`: most telling first,
/// as the table may cut the end of it.
fn last_cell(run: &RunRecord, now: Timestamp) -> String {
    let when = run.ended_at.or(run.started_at).unwrap_or(run.created_at);
    match (run.state.as_str(), duration(run)) {
        ("running" | "pending", _) => format!(
            "{} for {}",
            run.state,
            view::short_duration(now.duration_since(when))
        ),
        (state, Some(d)) => format!(
            "{state} {}, took {}",
            view::relative(when, now),
            view::short_duration(d)
        ),
        (state, None) => format!("{state} {}", view::relative(when, now)),
    }
}

/// The table, as printed.
pub fn render(lines: &[JobLine], now: Timestamp, look: view::Look) -> String {
    let mut table = Table::new(&["JOB", "SCHEDULE", "ZONE", "NEXT", "LAST"], 4);
    for line in lines {
        let job = &line.job;
        let next = match (job.settings.enabled, &line.paused, line.next) {
            (false, _, _) => "disabled".to_owned(),
            (_, Some(_), _) => "paused".to_owned(),
            (_, None, None) => "-".to_owned(),
            (_, None, Some(t)) => {
                // Seconds only for jobs that fire on seconds.
                let (local_format, utc_format) = match &job.timing {
                    Timing::Schedule(Schedule::Cron(c)) if !c.has_seconds() => {
                        ("%m-%d %H:%M %Z", "%H:%MZ")
                    }
                    _ => ("%m-%d %H:%M:%S %Z", "%H:%M:%SZ"),
                };
                let local = t
                    .to_zoned_datetime(job.zone.tz.clone())
                    .strftime(local_format)
                    .to_string();
                let utc = t
                    .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                    .strftime(utc_format)
                    .to_string();
                format!("{local} ({utc}) {}", view::relative(t, now))
            }
        };
        let last = line
            .last
            .as_ref()
            .map_or_else(|| "-".to_owned(), |r| last_cell(r, now));
        table.row(vec![
            job.name.to_string(),
            job.schedule_text.to_string(),
            job.zone.name.to_string(),
            next,
            last,
        ]);
        if line.paused.is_some() {
            table.paint_last(3, look.color);
        }
    }
    table.render(look.width)
}

pub fn run_json(run: &RunRecord, tz: &jiff::tz::TimeZone) -> Value {
    json!({
        "run_id": run.id.0,
        "job": run.job,
        "state": run.state,
        "trigger": run.trigger,
        "attempt": run.attempt,
        "scheduled_for": view::rfc3339_in(run.scheduled_for, tz),
        "started_at": run.started_at.map(view::rfc3339_utc),
        "ended_at": run.ended_at.map(view::rfc3339_utc),
        "duration_ms": duration(run).map(|d| d.as_millis() as i64),
        "exit_code": run.exit_code,
        "signal": run.signal,
        "reason": run.reason,
        "pid": run.pid,
    })
}

pub fn to_json(lines: &[JobLine]) -> Value {
    Value::Array(
        lines
            .iter()
            .map(|line| {
                let job = &line.job;
                json!({
                    "job": &*job.name,
                    "schedule": &*job.schedule_text,
                    "timezone": &*job.zone.name,
                    "enabled": job.settings.enabled,
                    "paused": line.paused.is_some(),
                    "paused_reason": line.paused,
                    "next": line.next.map(|t| view::rfc3339_in(t, &job.zone.tz)),
                    "next_utc": line.next.map(|t| format!("{t:.0}")),
                    "last": line.last.as_ref().map(|r| run_json(r, &job.zone.tz)),
                })
            })
            .collect(),
    )
}
