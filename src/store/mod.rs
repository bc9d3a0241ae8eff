//! Durable state: runs, triggers, the leader lease, instances and per-job state. The only
//! code that knows SQL lives below this module, behind [`Backend`]; the daemon talks to it
//! through [`Store`], which runs the backend on its own thread so that database calls never
//! block the async runtime. That thread also renews the leader lease on its own timer, so a
//! renewal costs one wake-up of one thread.

mod schema;
mod sqlite;
mod thread;

use std::time::Duration;

use jiff::Timestamp;

use crate::run::{RunId, Trigger};

pub use schema::current_version as schema_version;
pub use sqlite::{OpenError, Sqlite};
pub use thread::{HOLD_LIMIT, LeaseLost, Renewal, Store};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another instance took the lease: this one must not fire anything.
    #[error(
        "the leader lease is held by another instance now (this instance's epoch {0} is stale)"
    )]
    Fenced(i64),
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("the state store thread is gone")]
    Gone,
}

/// This daemon process, as other instances and the CLI see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// `host:pid:start`, unique across restarts and hosts.
    pub id: String,
    pub host: String,
    pub pid: u32,
    /// The process's start time in clock ticks since boot (`/proc/PID/stat` field 22), to
    /// tell it from a later process with the same pid.
    pub pid_start: Option<i64>,
    pub boot_id: String,
    pub started_at: Timestamp,
}

/// The lease row: who leads, since when, until when, with which fencing epoch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<i64>,
    pub epoch: i64,
    pub acquired_at: Timestamp,
    pub expires_at: Timestamp,
}

/// An instance row, for `status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstanceRow {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub pid_start: Option<i64>,
    pub boot_id: String,
    pub started_at: Timestamp,
    pub seen_at: Timestamp,
    pub role: String,
}

/// A run decided by the leader, about to be recorded.
#[derive(Clone, Debug)]
pub struct NewRun {
    pub job: String,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub attempt: u32,
    /// `None`: the run starts (recorded as `pending`). `Some(reason)`: recorded as `skipped`.
    pub skipped: Option<String>,
    /// The durable trigger this run consumes, if any.
    pub trigger_id: Option<i64>,
}

/// What recording a [`NewRun`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Created(RunId),
    /// This scheduled instant was already decided (by us before a restart, or by another leader).
    AlreadyDecided,
}

/// A run's process started: what `mark_running` records.
#[derive(Clone, Debug)]
pub struct Started {
    pub run_id: RunId,
    pub pid: u32,
    pub pid_start: Option<i64>,
    pub at: Timestamp,
}

/// The end of a run, as recorded.
#[derive(Clone, Debug)]
pub struct Finish {
    pub run_id: RunId,
    pub job: String,
    pub state: &'static str,
    pub started_at: Option<Timestamp>,
    pub ended_at: Timestamp,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub output_tail: Vec<u8>,
    pub result: Option<Vec<u8>>,
    /// Whether the run counts as a success for the job's consecutive-failure count.
    pub success: bool,
    /// Pause the job when its consecutive failures reach this (its `max_failures`).
    pub pause_after: Option<u32>,
}

#[cfg(test)]
impl Finish {
    /// A run of `job` that exited 0 at `ended_at`, leaving no output.
    pub(crate) fn succeeded(
        run_id: RunId,
        job: &str,
        started_at: Option<Timestamp>,
        ended_at: Timestamp,
    ) -> Finish {
        Finish {
            run_id,
            job: job.to_owned(),
            state: "succeeded",
            started_at,
            ended_at,
            exit_code: Some(0),
            signal: None,
            reason: None,
            output_tail: Vec::new(),
            result: None,
            success: true,
            pause_after: None,
        }
    }
}

/// What recording a run's end did besides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Finished {
    pub retry: Option<TriggerRow>,
    /// The job was paused by this failure (it reached `max_failures`).
    pub paused: bool,
}

/// A run given up on by a new leader, and its retry if the job has one left.
#[derive(Clone, Debug)]
pub struct Abandon {
    pub run_id: RunId,
    pub job: String,
    pub reason: String,
    pub retry: Option<NewTrigger>,
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunRecord {
    pub id: RunId,
    pub job: String,
    pub scheduled_for: Timestamp,
    pub trigger: String,
    pub attempt: u32,
    pub state: String,
    pub instance: String,
    pub epoch: i64,
    pub boot_id: String,
    pub pid: Option<u32>,
    pub pid_start: Option<i64>,
    pub created_at: Timestamp,
    pub started_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
}

/// A durable request to run a job: a manual run-now, a retry, a chained run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewTrigger {
    pub job: String,
    pub kind: Trigger,
    /// Not to be started before this instant (retries wait out their backoff).
    pub not_before: Timestamp,
    pub scheduled_for: Timestamp,
    pub attempt: u32,
    /// Who asked, for history: `cli`, `retry of run 42`.
    pub origin: Option<String>,
}

/// A trigger as stored, not yet consumed by a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TriggerRow {
    pub id: i64,
    pub job: String,
    pub kind: Trigger,
    pub not_before: Timestamp,
    pub scheduled_for: Timestamp,
    pub attempt: u32,
}

/// A run's kept output: the tail (`o `/`e ` lines) and what it wrote to `$SCHEDCTL_RESULT`.
pub type RunOutputRecord = (Vec<u8>, Option<Vec<u8>>);

/// Durable per-job state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobState {
    pub job: String,
    pub paused: bool,
    pub paused_reason: Option<String>,
    pub consecutive_failures: u32,
    /// The latest scheduled instant that was decided (run or skipped).
    pub last_fired: Option<Timestamp>,
}

/// The backend operations. Everything that must be atomic is one call.
pub trait Backend: Send + 'static {
    /// Record this instance as alive (insert or refresh its row).
    fn register_instance(&mut self, me: &Instance, role: &str, now: Timestamp) -> Result<()>;
    fn instances(&mut self) -> Result<Vec<InstanceRow>>;
    /// Delete the rows of instances last seen before `seen_before` that neither hold the
    /// lease nor own a pending or running run (every daemon start adds a row); returns
    /// how many went.
    fn forget_instances(&mut self, seen_before: Timestamp) -> Result<usize>;
    fn lease(&mut self) -> Result<Option<Lease>>;
    /// Take the lease if it is still exactly `expected` (None: no lease row yet), with a new
    /// epoch; returns the new lease, or None when someone else changed it first.
    fn take_lease(
        &mut self,
        me: &Instance,
        expected: Option<&Lease>,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>>;
    /// Extend our lease; `Fenced` if it is no longer ours.
    fn renew_lease(
        &mut self,
        me: &Instance,
        epoch: i64,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Lease>;
    /// Give the lease up (on shutdown) so that a standby takes over at once.
    fn release_lease(&mut self, me: &Instance, epoch: i64) -> Result<()>;
    /// Compile ahead what recording runs needs, so that the first run after a start does
    /// not wait for it (the daemon calls this once, off its start's path).
    fn prepare_run_statements(&mut self) -> Result<()> {
        Ok(())
    }
    /// Record decided runs in one transaction, checking the epoch; updates `last_fired`
    /// for scheduled instants and consumes the durable triggers they name.
    fn record_runs(
        &mut self,
        me: &Instance,
        epoch: i64,
        runs: &[NewRun],
        now: Timestamp,
    ) -> Result<Vec<Recorded>>;
    /// `pending` to `running` with each process's identity, in one transaction that checks
    /// the epoch: all are recorded, or none.
    fn mark_running_many(&mut self, me: &Instance, epoch: i64, runs: &[Started]) -> Result<()>;
    /// Record runs' ends in one transaction: for each, its retry (if any), the job's history
    /// pruned to `history_limit` finished runs, and the job paused if it reached
    /// `pause_after` consecutive failures (then without the retry).
    fn finish_runs(
        &mut self,
        runs: &[(Finish, Option<NewTrigger>)],
        history_limit: u32,
    ) -> Result<Vec<Finished>>;
    /// [`Backend::mark_running_many`] for one run.
    fn mark_running(
        &mut self,
        me: &Instance,
        epoch: i64,
        run: RunId,
        pid: u32,
        pid_start: Option<i64>,
        at: Timestamp,
    ) -> Result<()> {
        let started = Started {
            run_id: run,
            pid,
            pid_start,
            at,
        };
        self.mark_running_many(me, epoch, &[started])
    }
    /// [`Backend::finish_runs`] for one run.
    fn finish_run(
        &mut self,
        finish: &Finish,
        retry: Option<&NewTrigger>,
        history_limit: u32,
    ) -> Result<Finished> {
        let mut done = self.finish_runs(&[(finish.clone(), retry.cloned())], history_limit)?;
        Ok(done.pop().unwrap_or_default())
    }
    /// Add a durable trigger (a run-now) and count a change.
    fn add_trigger(&mut self, trigger: &NewTrigger, now: Timestamp) -> Result<TriggerRow>;
    /// Where a trigger stands: None if there is no such trigger, Some(None) while pending,
    /// Some(Some(run)) once a run consumed it.
    fn trigger_run(&mut self, id: i64) -> Result<Option<Option<RunId>>>;
    /// Pause or resume a job and count a change; returns whether the flag changed.
    fn set_paused(&mut self, job: &str, paused: bool, reason: Option<&str>) -> Result<bool>;
    /// A counter of changes made from outside the daemon (triggers, pauses), so that the
    /// leader can notice them on its lease renewals if it was not woken.
    fn changes(&mut self) -> Result<i64>;
    /// Triggers not yet consumed, oldest first.
    fn pending_triggers(&mut self) -> Result<Vec<TriggerRow>>;
    /// Runs that are `pending` or `running`.
    fn active_runs(&mut self) -> Result<Vec<RunRecord>>;
    /// Mark runs of older epochs `abandoned`, checking our epoch, with their retries.
    fn abandon_runs(
        &mut self,
        me: &Instance,
        epoch: i64,
        runs: &[Abandon],
        now: Timestamp,
    ) -> Result<Vec<TriggerRow>>;
    fn job_states(&mut self) -> Result<Vec<JobState>>;
    fn run(&mut self, id: RunId) -> Result<Option<RunRecord>>;
    /// Recent runs, newest first, optionally of one job, optionally only those that failed
    /// (`failed`, `timed_out`, `abandoned`).
    fn runs(&mut self, job: Option<&str>, limit: u32, failed_only: bool) -> Result<Vec<RunRecord>>;
    /// The latest run of each job.
    fn latest_runs(&mut self) -> Result<Vec<RunRecord>>;
    /// A run's kept output tail and result.
    fn run_output(&mut self, id: RunId) -> Result<Option<RunOutputRecord>>;
    fn meta(&mut self, key: &str) -> Result<Option<String>>;
    /// Set `key` unless it is set already; returns the value in effect.
    fn meta_init(&mut self, key: &str, value: &str) -> Result<String>;
}

/// Timestamps are stored as unix milliseconds.
pub(crate) fn to_millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

pub(crate) fn from_millis(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// The column's CHECK constraint admits only the five names.
pub(crate) fn trigger_from_str(s: &str) -> Trigger {
    match s {
        "schedule" => Trigger::Schedule,
        "retry" => Trigger::Retry,
        "catch_up" => Trigger::CatchUp,
        "chain" => Trigger::Chain,
        _ => Trigger::Manual,
    }
}
