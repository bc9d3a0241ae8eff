//! `schedctl cancel RUN_ID`: the daemon running it sends SIGTERM to its process group,
//! then SIGKILL after the job's `kill_grace`; the run ends `cancelled`. Waits for that.

use std::path::Path;

use crate::control::{Client, Request, Response};
use crate::error::Error;
use crate::run::RunId;
use crate::store::Backend;

pub fn run(config_path: &Path, run_id: i64) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let mut db = super::view::require_state(&config)?;
    let run = db
        .run(RunId(run_id))
        .map_err(|e| Error::Failed(e.into()))?
        .ok_or_else(|| super::logs::unknown_run(run_id))?;
    if !matches!(run.state.as_str(), "running" | "pending") {
        return Err(Error::Failed(anyhow::anyhow!(
            "run {run_id} of `{}` already ended ({}); there is nothing to cancel",
            run.job,
            run.state
        )));
    }
    let pid = super::instance_pid(&mut db, &run.instance)?;
    let state_dir = config.daemon.state_dir();
    let unreachable = |e: std::io::Error| {
        Error::Failed(anyhow::anyhow!(
            "cannot reach the daemon running run {run_id} (pid {pid}): {e}; if that daemon is gone, the next leader stops the run and marks it abandoned"
        ))
    };
    // Follow first, so the end cannot be missed, then ask for the cancel.
    let mut follow =
        Client::call(&state_dir, pid, &Request::Follow { run_id }).map_err(unreachable)?;
    let mut cancel =
        Client::call(&state_dir, pid, &Request::Cancel { run_id }).map_err(unreachable)?;
    match cancel.answer().map_err(unreachable)? {
        Some(Response::Ok) => eprintln!(
            "cancelling run {run_id} of `{}`: SIGTERM sent to its process group",
            run.job
        ),
        Some(Response::Error { message }) => {
            return Err(Error::Failed(anyhow::anyhow!("{message}")));
        }
        _ => {
            return Err(Error::Failed(anyhow::anyhow!(
                "no answer from the daemon running run {run_id}"
            )));
        }
    }
    while let Some(response) = follow.answer().map_err(unreachable)? {
        if let Response::End { state, reason, .. } = response {
            println!(
                "run {run_id} of `{}` {state}{}",
                run.job,
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            );
            return Ok(0);
        }
    }
    println!("run {run_id} of `{}` ended", run.job);
    Ok(0)
}
