//! `schedctl pause JOB` / `resume JOB`: a durable flag in the state, honoured by whichever
//! instance leads, across restarts and failover. A paused job's instants are recorded as
//! skipped (reason `paused`); `run-now` still runs it.

use std::path::Path;

use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::store::{Backend, Sqlite};

pub fn run(config_path: &Path, job: &str, pause: bool) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    super::require_job(&config, job)?;
    let mut db = Sqlite::open(&config.daemon.state).map_err(|e| Error::usage(e.to_string()))?;
    let reason = "paused with `schedctl pause`";
    let changed = db
        .set_paused(job, pause, Some(reason))
        .map_err(|e| Error::Failed(e.into()))?;
    super::wake_leader(&config, &mut db, SystemClock.now());
    let text = match (pause, changed) {
        (true, true) => format!(
            "paused job `{job}`: its instants are recorded as skipped until `schedctl resume {job}`"
        ),
        (true, false) => format!("job `{job}` was paused already"),
        (false, true) => format!("resumed job `{job}`: it fires again from its next instant"),
        (false, false) => format!("job `{job}` was not paused"),
    };
    println!("{text}");
    Ok(0)
}
