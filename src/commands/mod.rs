//! One module per subcommand; [`dispatch`] picks one. Commands return the exit code on
//! success and an [`Error`] (which knows its own exit code) otherwise. Helpers shared by
//! several commands live here.

mod cancel;
mod daemon;
mod history;
mod list;
mod logs;
mod next;
mod pause;
mod run_now;
mod status;
mod validate;
pub mod view;

#[cfg(test)]
mod snapshots;

use std::sync::Arc;

use jiff::Timestamp;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, Job, LoadError};
use crate::control::{Client, Request};
use crate::error::Error;
use crate::procinfo;
use crate::store::Backend;

pub fn dispatch(cli: Cli) -> Result<u8, Error> {
    let path = &cli.config;
    match cli.command {
        Command::Daemon { listen } => daemon::run(path, listen),
        Command::Validate { next } => validate::run(path, next),
        Command::Next {
            expr,
            tz,
            after,
            count,
        } => next::run(&expr, tz.as_deref(), after.as_deref(), count),
        Command::List { json } => list::run(path, json),
        Command::Status { json } => status::run(path, json),
        Command::History {
            job,
            limit,
            failed,
            json,
        } => history::run(path, job.as_deref(), limit, failed, json),
        Command::Logs {
            run_id,
            follow,
            json,
        } => logs::run(path, run_id, follow, json),
        Command::RunNow { job, wait, timeout } => run_now::run(path, &job, wait, timeout),
        Command::Pause { job } => pause::run(path, &job, true),
        Command::Resume { job } => pause::run(path, &job, false),
        Command::Cancel { run_id } => cancel::run(path, run_id),
    }
}

/// Load the job file for a command; a missing file is a usage error (exit 2).
pub fn load_config(path: &std::path::Path) -> Result<Config, Error> {
    config::load(path).map_err(|e| match e {
        LoadError::Invalid(errors) => Error::Config(errors),
        read @ LoadError::Read { .. } => Error::usage(read.to_string()),
    })
}

/// The job named `name`, or a usage error that says where to look.
pub fn require_job<'c>(config: &'c Config, name: &str) -> Result<&'c Arc<Job>, Error> {
    config.job(name).ok_or_else(|| {
        Error::usage(format!(
            "there is no job `{name}` in `{}`; `schedctl list` shows the jobs",
            config.path.display()
        ))
    })
}

/// The zone a job's times are shown in (the daemon's zone for jobs no longer configured).
pub fn zone_of(config: &Config, job: &str) -> jiff::tz::TimeZone {
    config
        .job(job)
        .map_or_else(|| config.daemon.timezone.tz.clone(), |j| j.zone.tz.clone())
}

/// The pid of the current leader, if the lease is valid and (on this host) its holder alive.
pub fn leader_pid(db: &mut impl Backend, now: Timestamp) -> Option<u32> {
    let lease = db.lease().ok().flatten()?;
    let alive =
        lease.host != procinfo::hostname() || procinfo::process_matches(lease.pid, lease.pid_start);
    (lease.expires_at > now && alive).then_some(lease.pid)
}

/// The pid of the daemon instance `id` (the owner of a run).
pub fn instance_pid(db: &mut impl Backend, id: &str) -> Result<u32, Error> {
    let instances = db.instances().map_err(|e| Error::Failed(e.into()))?;
    instances
        .iter()
        .find(|i| i.id == id)
        .map(|i| i.pid)
        .ok_or_else(|| {
            Error::Failed(anyhow::anyhow!(
                "the daemon instance `{id}` is not known to the state"
            ))
        })
}

/// Tell the leader that durable state changed. Best effort: without it the leader notices
/// at its next lease renewal.
pub fn wake_leader(config: &Config, db: &mut impl Backend, now: Timestamp) -> bool {
    let Some(pid) = leader_pid(db, now) else {
        return false;
    };
    match Client::call(&config.daemon.state_dir(), pid, &Request::Wake) {
        Ok(mut client) => client.answer().is_ok(),
        Err(_) => false,
    }
}

/// Said where a followed run's output had lines this client could not be sent in time.
pub fn skipped_notice(run_id: i64, lines: u64) -> String {
    format!(
        "[{lines} lines not shown: the job wrote them faster than they could be passed on; the daemon's log has every line, and `schedctl logs {run_id}` the last ones]"
    )
}
