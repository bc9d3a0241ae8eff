//! `schedctl run-now JOB [--wait] [--timeout DURATION]`: a durable manual trigger. The
//! request is written to the state first (so a leader restarting or failing over picks it
//! up), then the leader is asked to start it at once through its control socket. `--wait`
//! streams the run's output (stdout to stdout, stderr to stderr) and exits with the job's
//! exit code (128+N for a signal, 1 for a timeout, spawn failure, skip or cancel).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::control::{Client, Request, Response, tail_lines};
use crate::error::Error;
use crate::run::{Stream, Trigger};
use crate::store::{Backend, NewTrigger, Sqlite};

pub fn run(
    config_path: &Path,
    job: &str,
    wait: bool,
    timeout: Option<Duration>,
) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    super::require_job(&config, job)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut db = Sqlite::open(&config.daemon.state).map_err(|e| Error::usage(e.to_string()))?;
    let now = SystemClock.now();
    let user = nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map_or_else(|| "?".to_owned(), |u| u.name);
    let request = NewTrigger {
        job: job.to_owned(),
        kind: Trigger::Manual,
        not_before: now,
        scheduled_for: now,
        attempt: 1,
        origin: Some(format!("schedctl run-now by {user}")),
    };
    let trigger = db
        .add_trigger(&request, now)
        .map_err(|e| Error::Failed(e.into()))?;
    let started = super::leader_pid(&mut db, now).and_then(|pid| {
        let call = Request::Start {
            trigger: trigger.id,
            follow: wait,
        };
        Client::call(&config.daemon.state_dir(), pid, &call).ok()
    });
    if let Some(mut client) = started {
        match client.answer() {
            Ok(Some(Response::Started {
                run_id,
                skipped: None,
            })) => {
                eprintln!("started run {run_id} of `{job}`");
                if !wait {
                    return Ok(0);
                }
                return match follow(&mut client, run_id, deadline)? {
                    Some(code) => Ok(code),
                    None => wait_for_leader(&config, &mut db, trigger.id, deadline),
                };
            }
            Ok(Some(Response::Started {
                run_id,
                skipped: Some(reason),
            })) => {
                eprintln!("run {run_id} of `{job}` was skipped: {reason}");
                return Ok(1);
            }
            Ok(Some(Response::Error { message })) => {
                eprintln!("the leader could not start it now: {message}")
            }
            _ => {}
        }
    }
    eprintln!(
        "no leader is reachable right now; request {} for `{job}` is queued and starts as soon as a daemon leads",
        trigger.id
    );
    if !wait {
        return Ok(0);
    }
    wait_for_leader(&config, &mut db, trigger.id, deadline)
}

/// No leader answered: watch the state until one takes the request, then follow its run
/// (or, if it already ended, print what was kept of it).
fn wait_for_leader(
    config: &Config,
    db: &mut Sqlite,
    trigger: i64,
    deadline: Option<Instant>,
) -> Result<u8, Error> {
    let failed = |e: crate::store::StoreError| Error::Failed(e.into());
    loop {
        if let Some(run_id) = db.trigger_run(trigger).map_err(failed)?.flatten() {
            let run = db
                .run(run_id)
                .map_err(failed)?
                .ok_or_else(|| super::logs::unknown_run(run_id.0))?;
            eprintln!("started run {run_id} of `{}`", run.job);
            if matches!(run.state.as_str(), "running" | "pending") {
                let pid = super::instance_pid(db, &run.instance)?;
                let call = Request::Follow { run_id: run_id.0 };
                if let Ok(mut client) = Client::call(&config.daemon.state_dir(), pid, &call) {
                    if let Some(code) = follow(&mut client, run_id.0, deadline)? {
                        return Ok(code);
                    }
                }
            }
            // It ended before it could be followed: show what was kept.
            let run = db
                .run(run_id)
                .map_err(failed)?
                .ok_or_else(|| super::logs::unknown_run(run_id.0))?;
            let (tail, _) = db.run_output(run_id).map_err(failed)?.unwrap_or_default();
            for (stream, text) in tail_lines(&String::from_utf8_lossy(&tail)) {
                print_line(stream, text);
            }
            eprintln!(
                "run {run_id} {}{}",
                run.state,
                run.reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            );
            return Ok(exit_status(&run.state, run.exit_code, run.signal));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!("stopped waiting; request {trigger} stays queued");
            return Ok(1);
        }
        // There is no notification from the state file to a process that holds no lease.
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_line(stream: Stream, text: &str) {
    match stream {
        Stream::Stderr => {
            let _ = writeln!(std::io::stderr().lock(), "{text}");
        }
        Stream::Stdout => {
            let _ = writeln!(std::io::stdout().lock(), "{text}");
        }
    }
}

/// Stream the run to its end; its exit status, or None if the daemon says it is not
/// running there (it ended before the request arrived).
fn follow(
    client: &mut Client,
    run_id: i64,
    deadline: Option<Instant>,
) -> Result<Option<u8>, Error> {
    loop {
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if left == Some(Duration::ZERO) {
            eprintln!("stopped waiting; run {run_id} goes on (`schedctl logs {run_id} --follow`)");
            return Ok(Some(1));
        }
        client
            .set_timeout(left)
            .map_err(|e| Error::Failed(e.into()))?;
        let response = match client.answer() {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                return Err(Error::Failed(anyhow::anyhow!(
                    "lost the connection to the daemon: {e}"
                )));
            }
        };
        match response {
            Some(Response::Line { stream, text }) => {
                print_line(
                    if stream == "stderr" {
                        Stream::Stderr
                    } else {
                        Stream::Stdout
                    },
                    &text,
                );
            }
            Some(Response::Tail { text }) => {
                for (stream, line) in tail_lines(&text) {
                    print_line(stream, line);
                }
            }
            Some(Response::Skipped { lines }) => {
                eprintln!("{}", super::skipped_notice(run_id, lines))
            }
            Some(Response::End {
                state,
                exit_code,
                signal,
                reason,
            }) => {
                eprintln!(
                    "run {run_id} {state}{}",
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                );
                return Ok(Some(exit_status(&state, exit_code, signal)));
            }
            Some(Response::Error { .. }) => return Ok(None),
            Some(Response::Ok | Response::Started { .. }) => {}
            None => {
                return Err(Error::Failed(anyhow::anyhow!(
                    "the daemon went away while run {run_id} ran; `schedctl logs {run_id}` shows what was recorded"
                )));
            }
        }
    }
}

/// The exit status of `run-now --wait`: the job's own code, 128+N for signal N, 1 otherwise.
pub fn exit_status(state: &str, exit_code: Option<i32>, signal: Option<i32>) -> u8 {
    match (state, exit_code, signal) {
        ("succeeded", _, _) => 0,
        ("failed", Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1).max(1),
        ("failed", None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::exit_status;

    #[test]
    fn exit_statuses() {
        assert_eq!(exit_status("succeeded", Some(0), None), 0);
        assert_eq!(exit_status("failed", Some(7), None), 7);
        assert_eq!(exit_status("failed", None, Some(9)), 137);
        assert_eq!(exit_status("failed", None, None), 1, "spawn failure");
        assert_eq!(exit_status("timed_out", None, Some(15)), 1);
        assert_eq!(exit_status("cancelled", None, Some(15)), 1);
    }
}
