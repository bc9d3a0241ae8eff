//! One module per subcommand; [`dispatch`] picks one. Commands return the exit code on
//! success and an [`Error`] (which knows its own exit code) otherwise.

mod daemon;
mod next;
mod validate;

use crate::cli::{Cli, Command};
use crate::config::{self, Config, LoadError};
use crate::error::Error;

pub fn dispatch(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Daemon => daemon::run(&cli.config),
        Command::Validate { next } => validate::run(&cli.config, next),
        Command::Next {
            expr,
            tz,
            after,
            count,
        } => next::run(&expr, tz.as_deref(), after.as_deref(), count),
    }
}

/// Load the job file for a command; a missing file is a usage error (exit 2).
pub fn load_config(path: &std::path::Path) -> Result<Config, Error> {
    config::load(path).map_err(|e| match e {
        LoadError::Invalid(errors) => Error::Config(errors),
        read @ LoadError::Read { .. } => Error::usage(read.to_string()),
    })
}
