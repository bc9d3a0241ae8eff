//! The job file: spanned TOML in, a validated [`Config`] out. Every problem in the
//! file is reported at once as `FILE:LINE:COL: job `NAME`: key `KEY`: message`.

mod keys;
mod source;
mod split;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::schedule::Schedule;

pub use source::{ConfigError, ConfigErrors, Section};

/// A job's name: `[A-Za-z0-9_.-]+`, shared cheaply between the loop and its runs.
pub type JobName = Arc<str>;

/// A validated job file.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    pub daemon: DaemonConfig,
    /// Sorted by name.
    pub jobs: Vec<Arc<Job>>,
}

impl Config {
    pub fn job(&self, name: &str) -> Option<&Arc<Job>> {
        self.jobs
            .binary_search_by(|j| (*j.name).cmp(name))
            .ok()
            .map(|i| &self.jobs[i])
    }
}

#[derive(Clone, Debug)]
pub struct DaemonConfig {
    /// The SQLite state file.
    pub state: PathBuf,
    /// Default zone of jobs without their own `timezone`.
    pub timezone: Zone,
    /// Leader lease time-to-live; renewed every third of it.
    pub lease_ttl: Duration,
    /// On SIGTERM: how long running jobs may finish before they are stopped.
    pub shutdown_grace: Duration,
    /// Finished runs kept per job.
    pub history_limit: u32,
    /// Bytes of output kept per run for `schedctl logs`.
    pub output_tail: usize,
    pub log_format: LogFormat,
    /// Serve `/healthz`, `/readyz` and `/metrics` on this address (`listen`).
    pub listen: Option<std::net::SocketAddr>,
    /// Reload when the job file changes on disk (`watch`, default true).
    pub watch: bool,
}

impl DaemonConfig {
    /// The per-job state directories and run result files live here, beside the database.
    pub fn state_dir(&self) -> PathBuf {
        let stem = self
            .state
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "schedctl".into());
        self.state.with_file_name(format!("{stem}.d"))
    }

    /// The lock file a leader holds on this host.
    pub fn lock_file(&self) -> PathBuf {
        let mut name = self.state.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }
}

/// An IANA time zone with the name it was given by. One pointer: jobs share it.
#[derive(Clone, Debug)]
pub struct Zone(Arc<ZoneData>);

#[derive(Debug)]
pub struct ZoneData {
    pub name: Arc<str>,
    pub tz: TimeZone,
}

impl std::ops::Deref for Zone {
    type Target = ZoneData;

    fn deref(&self) -> &ZoneData {
        &self.0
    }
}

impl Zone {
    fn new(name: Arc<str>, tz: TimeZone) -> Zone {
        Zone(Arc::new(ZoneData { name, tz }))
    }

    /// UTC, jiff's built-in zone.
    pub fn utc() -> Zone {
        Zone::new("UTC".into(), TimeZone::UTC)
    }

    /// The system's local zone (`TZ`, else `/etc/localtime`), UTC when it cannot be found.
    pub fn system() -> Zone {
        let tz = TimeZone::try_system().unwrap_or(TimeZone::UTC);
        let name = tz.iana_name().unwrap_or("UTC").into();
        Zone::new(name, tz)
    }

    /// A zone by IANA name, e.g. `Europe/Berlin` or `UTC`. UTC (`UTC` or `Etc/UTC`, in any
    /// case, as the database matches names) is jiff's built-in zone: any other name opens
    /// the system's zoneinfo database, which first lists every file in it (~600), ~2 ms of
    /// loading 10,000 jobs here, for a zone without transitions.
    pub fn named(name: &str) -> Result<Zone, String> {
        if ["UTC", "Etc/UTC"]
            .iter()
            .any(|u| u.eq_ignore_ascii_case(name))
        {
            return Ok(Zone::new(name.into(), TimeZone::UTC));
        }
        TimeZone::get(name)
            .map(|tz| Zone::new(name.into(), tz))
            .map_err(|_| {
                format!(
                    "unknown time zone `{name}` (use an IANA name such as `Europe/Berlin` or `UTC`)"
                )
            })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Clone, Debug)]
pub struct Job {
    pub name: JobName,
    pub timing: Timing,
    /// The schedule as written (`at` times as `at TIME`), for display.
    /// Shared by the jobs whose schedules read the same.
    pub schedule_text: Arc<str>,
    pub command: CommandLine,
    pub zone: Zone,
    /// How it runs: shared by every job with the same settings (all the jobs that take
    /// theirs from `[defaults]` share one).
    pub settings: Arc<Settings>,
}

/// Everything about a job but its name, timing, command and zone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Settings {
    pub enabled: bool,
    pub overlap: Overlap,
    pub timeout: Option<Duration>,
    /// After SIGTERM, how long before SIGKILL.
    pub kill_grace: Duration,
    pub workdir: Option<PathBuf>,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
    /// Extra attempts after a failed, timed-out or abandoned run.
    pub retries: u32,
    /// Wait before the first retry; doubled per attempt, capped by `retry_backoff_max`.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// What to do with instants missed while no leader could fire them.
    pub catch_up: CatchUp,
    /// A missed instant older than this is never started.
    pub starting_deadline: Option<Duration>,
    /// Pause the job after this many consecutive failed runs (`max_failures`; 0 = never).
    pub max_failures: Option<u32>,
}

impl Settings {
    /// The wait before attempt `next_attempt` (2 = the first retry).
    pub fn backoff(&self, next_attempt: u32) -> Duration {
        let doublings = next_attempt.saturating_sub(2).min(32);
        self.retry_backoff
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.retry_backoff_max)
            .min(self.retry_backoff_max)
    }
}

/// When a job fires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Timing {
    Schedule(Schedule),
    /// Once, at this instant (`at = "2026-12-01T09:00:00+01:00"`).
    At(jiff::Timestamp),
}

/// Missed instants after downtime or a failover gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CatchUp {
    /// Run the most recent missed instant once (the default).
    Latest,
    /// Run none of them.
    None,
    /// Run each of them, oldest first, at most [`CATCH_UP_ALL_LIMIT`] per job.
    All,
}

/// `catch_up = "all"` runs at most this many missed instants per job.
pub const CATCH_UP_ALL_LIMIT: usize = 100;

/// What to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandLine {
    /// A string, run through `/bin/sh -c`.
    Shell(Box<str>),
    /// An array, executed directly (PATH lookup, no shell).
    Exec(Box<[String]>),
}

impl std::fmt::Display for CommandLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommandLine::Shell(s) => f.write_str(s),
            CommandLine::Exec(argv) => write!(f, "{argv:?}"),
        }
    }
}

/// What to do when a job is due while its previous run still runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Overlap {
    /// Record a skipped run (the default).
    Skip,
    /// Start both.
    Allow,
}

pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(45);
pub const DEFAULT_HISTORY_LIMIT: u32 = 1000;
pub const DEFAULT_OUTPUT_TAIL: usize = 64 * 1024;
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(3600);

/// Why a job file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read job file `{path}`: {source}; pass --config PATH or set SCHEDCTL_CONFIG")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

/// Read and validate a job file.
pub fn load(path: &Path) -> Result<Config, LoadError> {
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.display().to_string(),
        source,
    })?;
    Ok(parse(path, &text)?)
}

/// Validate the text of a job file read from `path` (relative paths in it resolve
/// against the file's directory).
pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigErrors> {
    keys::parse(path, text)
}

#[cfg(test)]
mod tests;
