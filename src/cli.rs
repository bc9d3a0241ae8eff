//! Command-line types (clap derive). No behaviour lives here.

use std::path::PathBuf;

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
    Daemon,
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
}
