//! One run's life as the loop sees it: start the process, record it as running (fenced by
//! the epoch: a run the store refuses is stopped at once), follow it to its end, record the
//! end with its retry in one transaction, log it, and tell the loop.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::clock::Clock;
use crate::run::{RunId, RunOutcome, StopCause, Trigger};
use crate::runner::{Ended, Executor, FollowEvent, RunHandle, RunSpec, StopRequest};
use crate::service::Metrics;
use crate::store::{
    Finish, Finished, Instance, NewTrigger, Started, Store, StoreError, TriggerRow,
};

/// What a run task tells the loop.
#[derive(Debug)]
pub enum RunEvent {
    /// The run ended and is recorded; `retry` is its next attempt, if one is due; `paused`:
    /// this failure paused the job (`max_failures`).
    Finished {
        run_id: RunId,
        retry: Option<TriggerRow>,
        paused: bool,
    },
}

pub(super) struct RunContext<C, E> {
    pub clock: C,
    pub executor: Arc<E>,
    pub store: Store,
    pub me: Arc<Instance>,
    pub epoch: i64,
    pub history_limit: u32,
    pub events: mpsc::UnboundedSender<RunEvent>,
    pub metrics: Metrics,
    /// Passed once the process ended (see `hold`).
    pub gate: super::hold::Gate,
}

pub(super) async fn drive<C: Clock, E: Executor>(
    mut ctx: RunContext<C, E>,
    spec: RunSpec,
    stop_tx: Arc<watch::Sender<Option<StopCause>>>,
    stop: StopRequest,
) {
    let (job, run_id) = (Arc::clone(&spec.job), spec.run_id);
    let started_at = ctx.clock.now();
    let (mut ended, pid) = match ctx.executor.start(&spec) {
        Err(reason) => {
            let ended = Ended {
                outcome: RunOutcome::SpawnFailed(reason),
                ended_at: ctx.clock.now(),
                output_tail: Vec::new(),
                result_file: None,
            };
            (ended, None)
        }
        Ok(handle) => {
            // The executor logged "run started" (before the run's first output line).
            let (pid, pid_start) = (handle.pid(), handle.pid_start());
            let lag = (spec.trigger == Trigger::Schedule)
                .then(|| Duration::try_from(started_at.duration_since(spec.scheduled_for)).ok())
                .flatten();
            ctx.metrics.run_started(lag);
            let started = Started {
                run_id,
                pid,
                pid_start,
                at: started_at,
            };
            // Recorded while the run goes on (its output is read from the start); its end
            // is recorded only after this.
            let marked = async {
                match ctx
                    .store
                    .mark_running(Arc::clone(&ctx.me), ctx.epoch, started)
                    .await
                {
                    Ok(()) => {}
                    Err(StoreError::Fenced(_)) => {
                        tracing::warn!(
                            job = &*job.name,
                            run_id = run_id.0,
                            "the lease was lost before the run was recorded as running; stopping it"
                        );
                        let _ = stop_tx.send(Some(StopCause::Fenced));
                    }
                    Err(err) => tracing::error!(
                        job = &*job.name,
                        run_id = run_id.0,
                        "cannot record the run as running: {err}; it runs anyway"
                    ),
                }
            };
            // Boxed, so that what the run needed while it ran is freed before it waits at
            // the gate: in a held burst a thousand runs wait there at once.
            let ((), ended) = Box::pin(async { tokio::join!(marked, handle.wait(stop)) }).await;
            ctx.gate.pass().await;
            (ended, Some(pid))
        }
    };
    let result = ended.read_result();
    let outcome = &ended.outcome.clone();
    let retry = retry_of(&spec, outcome, &ended);
    let finish = Finish {
        run_id,
        job: job.name.to_string(),
        state: outcome.state(),
        started_at: pid.map(|_| started_at),
        ended_at: ended.ended_at,
        exit_code: outcome.exit_code(),
        signal: outcome.signal(),
        reason: (!outcome.is_success()).then(|| outcome.reason()),
        output_tail: ended.output_tail,
        result,
        success: outcome.is_success(),
        pause_after: job.settings.max_failures,
    };
    let ended_at = ended.ended_at;
    let finished = record_finish(&ctx, finish, retry.clone()).await;
    let ran =
        pid.map(|_| Duration::try_from(ended_at.duration_since(started_at)).unwrap_or_default());
    ctx.metrics.run_finished(&job.name, outcome.state(), ran);
    if outcome.is_success() {
        ctx.metrics
            .run_succeeded(&job.name, ended_at.as_millisecond() as f64 / 1000.0);
    }
    // Logged once recorded: whoever reads this line finds the run in the history.
    log_finished(
        &spec,
        outcome,
        started_at,
        ended_at,
        finished.retry.as_ref().and(retry.as_ref()),
    );
    spec.output.end(FollowEvent::End {
        state: outcome.state().to_owned(),
        exit_code: outcome.exit_code(),
        signal: outcome.signal(),
        reason: (!outcome.is_success()).then(|| outcome.reason()),
    });
    let _ = ctx.events.send(RunEvent::Finished {
        run_id,
        retry: finished.retry,
        paused: finished.paused,
    });
}

/// The next attempt of a failed run, if the job has retries left. Runs stopped on purpose
/// (shutdown, lost lease) are not retried by this instance.
fn retry_of(spec: &RunSpec, outcome: &RunOutcome, ended: &Ended) -> Option<NewTrigger> {
    let job = &spec.job;
    if outcome.is_success()
        || matches!(outcome, RunOutcome::Stopped { .. })
        || spec.attempt > job.settings.retries
    {
        return None;
    }
    let next = spec.attempt + 1;
    let wait = jiff::SignedDuration::try_from(job.settings.backoff(next))
        .unwrap_or(jiff::SignedDuration::MAX);
    Some(NewTrigger {
        job: job.name.to_string(),
        kind: Trigger::Retry,
        not_before: ended.ended_at.checked_add(wait).unwrap_or(ended.ended_at),
        scheduled_for: spec.scheduled_for,
        attempt: next,
        origin: Some(format!("retry of run {}", spec.run_id)),
    })
}

/// Record the end. A store that is briefly unavailable (locked) gets a few more tries: the
/// record is the one thing a run must leave.
async fn record_finish<C: Clock, E: Executor>(
    ctx: &RunContext<C, E>,
    finish: Finish,
    retry: Option<NewTrigger>,
) -> Finished {
    let limit = ctx.history_limit;
    let mut pause = Duration::from_secs(1);
    for attempt in 1..=4 {
        match ctx
            .store
            .finish_run(finish.clone(), retry.clone(), limit)
            .await
        {
            Ok(finished) => return finished,
            Err(err) if attempt < 4 => {
                tracing::warn!(job = %finish.job, run_id = finish.run_id.0, "cannot record the end of the run yet: {err}; retrying");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(err) => tracing::error!(
                job = %finish.job,
                run_id = finish.run_id.0,
                "cannot record the end of the run: {err}; the next leader will mark it abandoned"
            ),
        }
    }
    Finished::default()
}

fn log_finished(
    spec: &RunSpec,
    outcome: &RunOutcome,
    started: jiff::Timestamp,
    ended: jiff::Timestamp,
    retry: Option<&NewTrigger>,
) {
    let elapsed = Duration::try_from(ended.duration_since(started)).unwrap_or_default();
    let duration = humantime::format_duration(Duration::from_millis(elapsed.as_millis() as u64));
    let (job, run_id, state) = (&*spec.job.name, spec.run_id.0, outcome.state());
    if outcome.is_success() {
        tracing::info!(job, run_id, state, duration = %duration, "run finished");
        return;
    }
    match retry {
        Some(r) => tracing::error!(
            job,
            run_id,
            state,
            duration = %duration,
            reason = outcome.reason(),
            retry_at = %r.not_before,
            attempt = r.attempt,
            "run failed; will retry"
        ),
        None => {
            tracing::error!(job, run_id, state, duration = %duration, reason = outcome.reason(), "run failed")
        }
    }
}
