//! The error type of commands and the one mapping from errors to exit codes
//! (0 ok, 1 the operation failed, 2 bad usage or bad configuration).

use crate::config::ConfigErrors;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job file is invalid; carries every problem found in it.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    /// The command was used wrongly or names something that does not exist.
    #[error("{0}")]
    Usage(String),
    /// The operation itself failed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl Error {
    pub fn usage(message: impl Into<String>) -> Self {
        Error::Usage(message.into())
    }

    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Config(_) | Error::Usage(_) => 2,
            Error::Failed(_) => 1,
        }
    }

    /// The text printed on stderr: config errors one per line, others as `error: ...`.
    pub fn render(&self) -> String {
        match self {
            Error::Config(errors) => errors.to_string(),
            Error::Usage(message) => format!("error: {message}"),
            Error::Failed(err) => format!("error: {err:#}"),
        }
    }
}
