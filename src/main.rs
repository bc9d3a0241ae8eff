//! The `schedctl` binary: parse the command line, dispatch, map errors to exit codes.
//! This is the only file that decides how the process exits.

use std::process::ExitCode;

use clap::Parser;
use schedctl::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Daemon { .. }) {
        // `schedctl history | head` ends quietly when `head` has read enough, as other
        // tools do, instead of failing on the closed pipe. The daemon keeps SIGPIPE ignored:
        // a closed log pipe must not kill it.
        // SAFETY: setting a signal's disposition to the default before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match schedctl::commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{}", err.render());
            ExitCode::from(err.exit_code())
        }
    }
}
