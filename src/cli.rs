//! Command-line types (clap derive). No behaviour lives here.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// A cron-style job scheduler: jobs.toml in, jobs fired on time, every run logged.
#[derive(Debug, Parser)]
#[command(name = "schedctl", version, about, propagate_version = true)]
pub struct Cli {
    /// The job file.
    #[arg(
        long,
        short = 'c',
        global = true,
        env = "SCHEDCTL_CONFIG",
        default_value = "jobs.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the scheduler in the foreground (under systemd, or in a terminal).
    Daemon {
        /// Serve /healthz, /readyz and /metrics on ADDR (IP:PORT) instead of `[daemon] listen`
        /// (for several instances on one host, e.g. the port as a template unit's instance).
        #[arg(long, value_name = "ADDR")]
        listen: Option<std::net::SocketAddr>,
    },
    /// Check the job file and print every error in it.
    Validate {
        /// Also print each job's next N fire times.
        #[arg(long, value_name = "N")]
        next: Option<usize>,
    },
    /// Print the next fire instants of any schedule expression.
    Next {
        /// A cron expression (5 fields, or 6 with leading seconds) or a macro such as `@daily`.
        expr: String,
        /// Time zone to evaluate the expression in (IANA name; default: the system's zone).
        #[arg(long, value_name = "TZ")]
        tz: Option<String>,
        /// Start after this instant (RFC 3339, e.g. 2026-03-08T00:00:00-05:00; default: now).
        #[arg(long, value_name = "TIME")]
        after: Option<String>,
        /// How many instants to print.
        #[arg(short = 'n', long = "count", default_value_t = 5, value_name = "N")]
        count: usize,
    },
    /// Every job: schedule, zone, next fire, last outcome, paused.
    List {
        /// Print JSON (stable field names) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The leader, the standbys and the running runs.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Past runs, newest first.
    History {
        /// Only this job's runs.
        job: Option<String>,
        /// How many runs to show.
        #[arg(long, short = 'n', default_value_t = 20, value_name = "N")]
        limit: u32,
        /// Only failed, timed-out and abandoned runs.
        #[arg(long)]
        failed: bool,
        #[arg(long)]
        json: bool,
    },
    /// A run's kept output (stdout and stderr marked) and its result.
    Logs {
        run_id: i64,
        /// Keep streaming a running run's output until it ends.
        #[arg(long, short = 'f')]
        follow: bool,
        #[arg(long)]
        json: bool,
    },
    /// Run a job now: a durable request that the leader starts at once.
    RunNow {
        job: String,
        /// Follow the run, print its output, and exit with its exit code.
        #[arg(long)]
        wait: bool,
        /// With --wait: stop waiting after this long (the run goes on).
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "wait")]
        timeout: Option<Duration>,
    },
    /// Stop firing a job (its instants are recorded as skipped) until resumed.
    Pause { job: String },
    /// Fire a paused job again.
    Resume { job: String },
    /// Stop a running run: SIGTERM to its process group, kill_grace, SIGKILL.
    Cancel { run_id: i64 },
}
