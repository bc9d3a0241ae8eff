//! The `schedctl` binary: parse the command line, dispatch, map errors to exit codes.
//! This is the only file that decides how the process exits.

use std::process::ExitCode;

use clap::Parser;
use schedctl::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match schedctl::commands::dispatch(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("{}", err.render());
            ExitCode::from(err.exit_code())
        }
    }
}
