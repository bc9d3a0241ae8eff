//! `schedctl history [JOB] [--limit N] [--failed]`: past runs, newest first, with trigger,
//! outcome, exit code, duration and reason.

use std::path::Path;

use jiff::Timestamp;
use serde_json::Value;

use super::view::{self, Table};
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::error::Error;
use crate::store::{Backend, RunRecord};

pub fn run(
    config_path: &Path,
    job: Option<&str>,
    limit: u32,
    failed: bool,
    json: bool,
) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    if let Some(name) = job {
        super::require_job(&config, name)?;
    }
    let runs = match view::open_state(&config)? {
        Some(mut db) => db
            .runs(job, limit, failed)
            .map_err(|e| Error::Failed(e.into()))?,
        None => Vec::new(),
    };
    if json {
        let items: Vec<Value> = runs
            .iter()
            .map(|r| super::list::run_json(r, &super::zone_of(&config, &r.job)))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default()
        );
    } else if runs.is_empty() {
        let whose = job.map_or_else(|| "any job".to_owned(), |j| format!("job `{j}`"));
        println!(
            "no {}runs of {whose} recorded yet",
            if failed { "failed " } else { "" }
        );
    } else {
        print!(
            "{}",
            render(&config, &runs, SystemClock.now(), view::Look::of_stdout())
        );
    }
    Ok(0)
}

pub fn render(config: &Config, runs: &[RunRecord], now: Timestamp, look: view::Look) -> String {
    let mut table = Table::new(
        &[
            "RUN",
            "JOB",
            "SCHEDULED FOR",
            "TRIGGER",
            "STATE",
            "EXIT",
            "TOOK",
            "REASON",
        ],
        7,
    );
    for run in runs {
        let exit = match (run.exit_code, run.signal) {
            (Some(code), _) => code.to_string(),
            (None, Some(sig)) => crate::run::signal_name(sig),
            _ => "-".to_owned(),
        };
        let took = match (run.started_at, run.ended_at) {
            (Some(s), Some(e)) => view::short_duration(e.duration_since(s)),
            (Some(s), None) => format!("{}…", view::short_duration(now.duration_since(s))),
            _ => "-".to_owned(),
        };
        let scheduled = run
            .scheduled_for
            .to_zoned_datetime(super::zone_of(config, &run.job))
            .strftime("%m-%d %H:%M:%S %Z")
            .to_string();
        table.row(vec![
            run.id.to_string(),
            run.job.clone(),
            scheduled,
            run.trigger.clone(),
            run.state.clone(),
            exit,
            took,
            run.reason.clone().unwrap_or_default(),
        ]);
        table.paint_last(4, look.color);
    }
    table.render(look.width)
}
