//! Domain types of a run: ids, what triggered it, how it ended.

use std::fmt;

/// A run's id, unique across the life of the daemon's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RunId(pub i64);

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Why a run was started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Schedule,
    Manual,
    Retry,
    CatchUp,
    Chain,
}

impl Trigger {
    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::Schedule => "schedule",
            Trigger::Manual => "manual",
            Trigger::Retry => "retry",
            Trigger::CatchUp => "catch_up",
            Trigger::Chain => "chain",
        }
    }
}

/// One of a run's two output streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Termination {
    Exit(i32),
    Signal(i32),
}

impl fmt::Display for Termination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Termination::Exit(code) => write!(f, "exited with code {code}"),
            Termination::Signal(sig) => write!(f, "killed by {}", signal_name(sig)),
        }
    }
}

/// `SIGTERM`, or `signal 42` for numbers without a name.
pub fn signal_name(sig: i32) -> String {
    nix::sys::signal::Signal::try_from(sig)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {sig}"))
}

/// Who asked a running run to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCause {
    /// The daemon is shutting down and the grace period is over.
    Shutdown,
    /// The lease was lost between starting the process and recording it as running: another
    /// leader may start this job too, so this run must not go on.
    Fenced,
    /// An operator asked (`schedctl cancel`).
    Cancelled,
}

impl StopCause {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCause::Shutdown => "daemon shutdown",
            StopCause::Fenced => "loss of the leader lease",
            StopCause::Cancelled => "schedctl cancel",
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RunOutcome {
    /// The process ended on its own.
    Finished(Termination),
    /// It ran past its `timeout` and was stopped.
    TimedOut {
        after: std::time::Duration,
        end: Termination,
    },
    /// It was stopped on request.
    Stopped { cause: StopCause, end: Termination },
    /// It never started: missing program, bad working directory, ...
    SpawnFailed(String),
}

impl RunOutcome {
    pub fn is_success(&self) -> bool {
        matches!(self, RunOutcome::Finished(Termination::Exit(0)))
    }

    /// The state recorded for the run: `succeeded`, `failed`, `timed_out` or `cancelled`.
    pub fn state(&self) -> &'static str {
        match self {
            RunOutcome::Finished(Termination::Exit(0)) => "succeeded",
            RunOutcome::Finished(_) | RunOutcome::SpawnFailed(_) => "failed",
            RunOutcome::TimedOut { .. } => "timed_out",
            RunOutcome::Stopped { .. } => "cancelled",
        }
    }

    pub fn termination(&self) -> Option<Termination> {
        match self {
            RunOutcome::Finished(end)
            | RunOutcome::TimedOut { end, .. }
            | RunOutcome::Stopped { end, .. } => Some(*end),
            RunOutcome::SpawnFailed(_) => None,
        }
    }

    pub fn exit_code(&self) -> Option<i32> {
        match self.termination() {
            Some(Termination::Exit(code)) => Some(code),
            _ => None,
        }
    }

    pub fn signal(&self) -> Option<i32> {
        match self.termination() {
            Some(Termination::Signal(sig)) => Some(sig),
            _ => None,
        }
    }

    /// One line for people: "exited with code 3", "timed out after 2h; killed by SIGTERM".
    pub fn reason(&self) -> String {
        match self {
            RunOutcome::Finished(end) => end.to_string(),
            RunOutcome::TimedOut { after, end } => {
                format!(
                    "timed out after {}; {end}",
                    humantime::format_duration(*after)
                )
            }
            RunOutcome::Stopped { cause, end } => format!("stopped by {}; {end}", cause.as_str()),
            RunOutcome::SpawnFailed(reason) => format!("spawn failed: {reason}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_states_and_reasons() {
        let cases = [
            (
                RunOutcome::Finished(Termination::Exit(0)),
                "succeeded",
                "exited with code 0",
            ),
            (
                RunOutcome::Finished(Termination::Exit(3)),
                "failed",
                "exited with code 3",
            ),
            (
                RunOutcome::Finished(Termination::Signal(9)),
                "failed",
                "killed by SIGKILL",
            ),
            (
                RunOutcome::TimedOut {
                    after: std::time::Duration::from_secs(7200),
                    end: Termination::Signal(15),
                },
                "timed_out",
                "timed out after 2h; killed by SIGTERM",
            ),
            (
                RunOutcome::SpawnFailed("no such program `x`".into()),
                "failed",
                "spawn failed: no such program `x`",
            ),
        ];
        for (outcome, state, reason) in cases {
            assert_eq!(outcome.state(), state);
            assert_eq!(outcome.reason(), reason);
        }
    }
}
