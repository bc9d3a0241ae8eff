//! `schedctl logs RUN_ID [--follow]`: a run's kept output (stdout and stderr marked) and
//! its result; `--follow` streams a running run until it ends.

use std::io::Write;
use std::path::Path;

use serde_json::json;

use super::view;
use crate::config::Config;
use crate::control::{Client, Request, Response, tail_lines};
use crate::error::Error;
use crate::run::{RunId, Stream};
use crate::store::{Backend, RunRecord};

pub fn run(config_path: &Path, run_id: i64, follow: bool, json: bool) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let mut db = view::require_state(&config)?;
    let failed = |e: crate::store::StoreError| Error::Failed(e.into());
    let run = db
        .run(RunId(run_id))
        .map_err(failed)?
        .ok_or_else(|| unknown_run(run_id))?;
    let (tail, result) = db
        .run_output(RunId(run_id))
        .map_err(failed)?
        .unwrap_or_default();
    if json {
        let value = to_json(&config, &run, &tail, result.as_deref());
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
        return Ok(0);
    }
    if follow && matches!(run.state.as_str(), "running" | "pending") {
        println!("{}", describe(&config, &run));
        return follow_run(&config, &mut db, &run);
    }
    print!("{}", render(&config, &run, &tail, result.as_deref()));
    Ok(0)
}

/// The text of `logs`: what the run was and how it ended, its kept output with each line
/// marked `[out]` or `[err]`, and its result.
pub fn render(config: &Config, run: &RunRecord, tail: &[u8], result: Option<&[u8]>) -> String {
    let mut out = describe(config, run);
    out.push('\n');
    for (stream, text) in tail_lines(&String::from_utf8_lossy(tail)) {
        out.push_str(&format!("[{}] {text}\n", mark(stream)));
    }
    if matches!(run.state.as_str(), "running" | "pending") {
        let id = run.id;
        out.push_str(&format!(
            "(run {id} is still running; its output is kept when it ends; `schedctl logs {id} --follow` streams it)\n"
        ));
    }
    if let Some(result) = result {
        out.push_str(&format!(
            "result:\n{}\n",
            String::from_utf8_lossy(result).trim_end()
        ));
    }
    out
}

/// `logs --json`: the run as in `history --json`, with `output` (stream, text) and `result`.
pub fn to_json(
    config: &Config,
    run: &RunRecord,
    tail: &[u8],
    result: Option<&[u8]>,
) -> serde_json::Value {
    let tz = super::zone_of(config, &run.job);
    let mut value = super::list::run_json(run, &tz);
    value["output"] = json!(
        tail_lines(&String::from_utf8_lossy(tail))
            .map(|(s, t)| json!({"stream": s.as_str(), "text": t}))
            .collect::<Vec<_>>()
    );
    value["result"] = json!(result.map(String::from_utf8_lossy));
    value
}

pub fn unknown_run(run_id: i64) -> Error {
    Error::usage(format!(
        "there is no run {run_id}; `schedctl history` lists the runs"
    ))
}

/// `run 42 of backup (schedule, attempt 1): succeeded, exit 0, took 12s`.
fn describe(config: &Config, run: &RunRecord) -> String {
    let tz = super::zone_of(config, &run.job);
    let mut text = format!(
        "run {} of {} ({}, attempt {}, scheduled for {}): {}",
        run.id,
        run.job,
        run.trigger,
        run.attempt,
        view::local(run.scheduled_for, &tz),
        run.state
    );
    if let Some(reason) = &run.reason {
        text.push_str(&format!(" ({reason})"));
    }
    if let (Some(s), Some(e)) = (run.started_at, run.ended_at) {
        text.push_str(&format!(
            ", took {}",
            view::short_duration(e.duration_since(s))
        ));
    }
    text
}

fn print_tail(tail: &str) {
    for (stream, text) in tail_lines(tail) {
        print_line(stream, text);
    }
}

fn mark(stream: Stream) -> &'static str {
    match stream {
        Stream::Stdout => "out",
        Stream::Stderr => "err",
    }
}

fn print_line(stream: Stream, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{}] {text}", mark(stream));
}

fn follow_run(config: &Config, db: &mut impl Backend, run: &RunRecord) -> Result<u8, Error> {
    let pid = super::instance_pid(db, &run.instance)?;
    let mut client = Client::call(
        &config.daemon.state_dir(),
        pid,
        &Request::Follow { run_id: run.id.0 },
    )
    .map_err(|e| {
        Error::Failed(anyhow::anyhow!(
            "cannot reach the daemon running run {} (pid {pid}): {e}",
            run.id
        ))
    })?;
    while let Some(response) = client.answer().map_err(|e| Error::Failed(e.into()))? {
        match response {
            Response::Tail { text } => print_tail(&text),
            Response::Skipped { lines } => {
                eprintln!("{}", super::skipped_notice(run.id.0, lines));
            }
            Response::Line { stream, text } => print_line(
                if stream == "stderr" {
                    Stream::Stderr
                } else {
                    Stream::Stdout
                },
                &text,
            ),
            Response::End { state, reason, .. } => {
                println!(
                    "run {} {state}{}",
                    run.id,
                    reason.map(|r| format!(" ({r})")).unwrap_or_default()
                );
                return Ok(0);
            }
            Response::Error { message } => return Err(Error::Failed(anyhow::anyhow!("{message}"))),
            Response::Ok | Response::Started { .. } => {}
        }
    }
    Err(Error::Failed(anyhow::anyhow!(
        "the daemon closed the connection before run {} ended",
        run.id
    )))
}
