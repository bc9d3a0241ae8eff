//! Firing: collect what is due (job instants and durable triggers), decide each run (start,
//! or skip by the pause flag or the overlap policy), record the decisions in one
//! transaction fenced by our epoch, then start what was recorded. The loop wakes
//! [`DECIDE_AHEAD`] before an instant, so that its runs are decided and recorded by the
//! time it comes; they start at the instant, never before.

use std::sync::Arc;

use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::{Running, Scheduler, hold, runs, timeline};
use crate::clock::{Clock, Timer};
use crate::config::{Job, Overlap};
use crate::run::{RunId, Trigger};
use crate::runner::{Executor, RunOutput, RunSpec};
use crate::store::{NewRun, Recorded, StoreError};

/// Runs recorded in the first transaction of a large batch; each next one records twice
/// as many (see `fire`).
const RECORD_CHUNK: usize = 32;

/// Runs started before the loop yields, so that the runtime handles the exits of runs
/// already started. Without it, every task of a burst was polled (each spawning its
/// process) before any exit was seen: 1,000 jobs due at one instant left ~2,450 open
/// descriptors at the peak, and each spawn copies the descriptor table (clone) and closes
/// it again (the child's exec), so starts slowed as the burst went on. With it the peak is
/// ~100 and the burst's p99 went from ~560 ms to ~430 ms here.
const START_CHUNK: usize = 8;

/// How long before an instant the loop wakes to decide its runs and record them (one
/// transaction, ~0.3-0.5 ms for a few runs), so that they start at the instant itself
/// instead of after the transaction. A batch of more runs is recorded in chunks
/// (`fire`); the first chunk is ready at the instant.
pub(super) const DECIDE_AHEAD: SignedDuration = SignedDuration::from_millis(5);

/// The skip reason of a paused job's instants.
const PAUSED: &str = "paused";

/// A run the loop decided to start (or to record as skipped).
pub(super) struct Planned {
    pub index: usize,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub attempt: u32,
    pub trigger_id: Option<i64>,
}

impl Planned {
    pub fn scheduled(index: usize, scheduled_for: Timestamp, trigger: Trigger) -> Self {
        Planned {
            index,
            scheduled_for,
            trigger,
            attempt: 1,
            trigger_id: None,
        }
    }
}

impl<C: Clock, E: Executor> Scheduler<C, E> {
    /// Fire every job and trigger whose time has come, in one recorded batch. The next
    /// instant counts as come when it is at most [`DECIDE_AHEAD`] away: its runs are
    /// decided now and start at it.
    pub(super) async fn fire_due(&mut self, now: Timestamp) {
        // From here on `now` is the time decided for: the instant, when it is that close.
        let now = self
            .next_deadline()
            .filter(|&next| {
                next > now
                    && now
                        .checked_add(DECIDE_AHEAD)
                        .is_ok_and(|ahead| next <= ahead)
            })
            .unwrap_or(now);
        let mut batch = Vec::new();
        while let Some((first, index)) = self.timeline.first() {
            if first > now {
                break;
            }
            self.timeline.pop_first();
            let job = Arc::clone(&self.config.jobs[index]);
            let due = timeline::due(&job, first, now, self.anchor);
            if let Some((from, to)) = due.passed_over {
                tracing::warn!(
                    job = &*job.name,
                    from = %from,
                    to = %to,
                    "instants passed while they could not fire (clock step, suspend, downtime or overload) and were not run, by catch_up and starting_deadline"
                );
            }
            batch.extend(
                due.fire
                    .into_iter()
                    .map(|(t, trigger)| Planned::scheduled(index, t, trigger)),
            );
            self.set_next(index, timeline::next_fire(&job, now, self.anchor));
        }
        while let Some(&(not_before, id)) = self.triggers.first() {
            if not_before > now {
                break;
            }
            self.triggers.pop_first();
            let Some(row) = self.trigger_rows.remove(&id) else {
                continue;
            };
            match self.index_of(&row.job) {
                Some(index) => batch.push(Planned {
                    index,
                    scheduled_for: row.scheduled_for,
                    trigger: row.kind,
                    attempt: row.attempt,
                    trigger_id: Some(row.id),
                }),
                None => {
                    tracing::warn!(job = %row.job, trigger = id, "dropping a {} request: the job is no longer in the job file", row.kind.as_str())
                }
            }
        }
        if !batch.is_empty() {
            self.fire(batch, now).await;
        }
    }

    pub(super) fn set_next(&mut self, index: usize, next: Option<Timestamp>) {
        if let Some(old) = self.slots[index].next.take() {
            self.timeline.remove(old, index);
        }
        self.slots[index].next = next;
        if let Some(next) = next {
            self.timeline.insert(next, index);
        }
    }

    /// Why a planned run must not start, if it must not.
    fn skip_reason(&mut self, plan: &Planned) -> Option<String> {
        let job = &self.config.jobs[plan.index];
        let slot = &mut self.slots[plan.index];
        if slot.paused && plan.trigger != Trigger::Manual {
            return Some(PAUSED.to_owned());
        }
        if slot.busy() && job.settings.overlap == Overlap::Skip {
            return Some("the previous run is still running (overlap = \"skip\")".to_owned());
        }
        None
    }

    /// Decide each planned run, record the decisions in transactions fenced by our epoch,
    /// and start what was recorded, not before `due_at` (the instant a batch decided ahead
    /// is due; a step of the wall clock meanwhile starts it at once). A large batch is
    /// recorded in chunks of doubling size (32, 64, 128...), all sent to the store at once,
    /// so that the store records the next chunk while the runs of one start: 1,000 runs due at one instant took ~20 ms to
    /// record in one transaction before the first could start, and in two (32, then the
    /// rest) the starts still stalled ~20 ms after the 32nd.
    pub(super) async fn fire(&mut self, batch: Vec<Planned>, due_at: Timestamp) {
        let Some(epoch) = self.epoch else { return };
        if batch.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut held = (batch.len() > hold::HOLD_ABOVE).then(|| self.holds.hold());
        self.trim_when_idle |= held.is_some();
        let records = self.decide(&batch);
        let mut chunks = Vec::new();
        let (mut at, mut size) = (0, RECORD_CHUNK);
        while at < batch.len() {
            let end = (at + size).min(batch.len());
            // Every chunk is sent before the first answer is awaited.
            chunks.push((at..end, self.record(epoch, &records[at..end], now)));
            (at, size) = (end, size * 2);
        }
        for (range, recorded) in chunks {
            let recorded = recorded.await;
            if self.clock.now() < due_at
                && let Some(timer) = &mut self.start_timer
            {
                timer.sleep_until(due_at).await;
            }
            let (plans, records) = (&batch[range.clone()], &records[range]);
            self.start_recorded(plans, records, recorded, epoch, held.as_mut())
                .await;
        }
    }

    /// Whether each planned run starts or is skipped (and why), counting the ones that
    /// start as running at once, so that two runs of one job in one batch respect the
    /// overlap policy.
    fn decide(&mut self, batch: &[Planned]) -> Vec<NewRun> {
        batch
            .iter()
            .map(|plan| {
                let skipped = self.skip_reason(plan);
                if skipped.is_none() {
                    self.slots[plan.index].running += 1;
                }
                NewRun {
                    job: self.config.jobs[plan.index].name.to_string(),
                    scheduled_for: plan.scheduled_for,
                    trigger: plan.trigger,
                    attempt: plan.attempt,
                    skipped,
                    trigger_id: plan.trigger_id,
                }
            })
            .collect()
    }

    /// Send `records` to the store now; the answer comes when awaited.
    fn record(
        &self,
        epoch: i64,
        records: &[NewRun],
        now: Timestamp,
    ) -> impl Future<Output = Result<Vec<Recorded>, StoreError>> + use<C, E> {
        let me = Arc::clone(&self.me);
        let records = records.to_vec();
        self.store
            .call_now(move |db| db.record_runs(&me, epoch, &records, now))
    }

    /// Start the runs the store recorded; log the skipped ones. A failed record starts
    /// nothing (and, if the lease was lost, ends this instance's leadership). `held`: the
    /// hold on the runs' bookkeeping, kept within its limit.
    async fn start_recorded(
        &mut self,
        plans: &[Planned],
        records: &[NewRun],
        recorded: Result<Vec<Recorded>, StoreError>,
        epoch: i64,
        mut held: Option<&mut hold::Held>,
    ) {
        let recorded = match recorded {
            Ok(recorded) => recorded,
            Err(err) => {
                for (plan, record) in plans.iter().zip(records) {
                    if record.skipped.is_none() {
                        self.slots[plan.index].running -= 1;
                    }
                }
                if let StoreError::Fenced(_) = err {
                    if self.epoch == Some(epoch) {
                        tracing::warn!(
                            epoch,
                            "another instance took the lease; not starting {} due runs",
                            plans.len()
                        );
                        if let Some(leadership) = &self.leadership {
                            leadership.fenced(epoch);
                        }
                        self.stand_by();
                    }
                } else {
                    let jobs: Vec<&str> = records.iter().map(|r| r.job.as_str()).collect();
                    tracing::error!(jobs = ?jobs, "cannot record due runs, so they were not started: {err}");
                }
                return;
            }
        };
        let mut started = 0usize;
        for ((plan, record), outcome) in plans.iter().zip(records).zip(recorded) {
            let job = Arc::clone(&self.config.jobs[plan.index]);
            let run_id = match outcome {
                Recorded::Created(run_id) => run_id,
                Recorded::AlreadyDecided => {
                    if record.skipped.is_none() {
                        self.slots[plan.index].running -= 1;
                    }
                    tracing::debug!(job = &*job.name, scheduled_for = %record.scheduled_for, "instant already decided earlier; not firing it again");
                    continue;
                }
            };
            // Only a run-now request asks which run it got: kept for a retry, the entry
            // would stay for the daemon's life.
            if let Some(trigger) = plan.trigger_id.filter(|_| plan.trigger == Trigger::Manual) {
                self.trigger_runs
                    .insert(trigger, (run_id, record.skipped.clone()));
            }
            match &record.skipped {
                None => {
                    self.start(job, run_id, plan, epoch);
                    started += 1;
                    if started % START_CHUNK == 0 {
                        if let Some(held) = held.as_deref_mut() {
                            held.limit();
                        }
                        tokio::task::yield_now().await;
                    }
                }
                Some(reason) => {
                    let label = if reason == PAUSED { PAUSED } else { "overlap" };
                    self.service.metrics.run_skipped(&job.name, label);
                    tracing::warn!(
                        job = &*job.name,
                        run_id = run_id.0,
                        scheduled_for = %record.scheduled_for,
                        trigger = record.trigger.as_str(),
                        "run skipped: {reason}"
                    );
                }
            }
        }
    }

    fn start(&mut self, job: Arc<Job>, run_id: RunId, plan: &Planned, epoch: i64) {
        let (stop_tx, stop_rx) = watch::channel(None);
        let stop_tx = Arc::new(stop_tx);
        let output = RunOutput::new(self.config.daemon.output_tail);
        if let Some(follower) = plan
            .trigger_id
            .and_then(|t| self.follow_trigger.get_mut(&t))
        {
            *follower = Some(output.follow());
        }
        self.running.insert(
            run_id,
            Running {
                job: Arc::clone(&job.name),
                stop: Arc::clone(&stop_tx),
                output: Arc::clone(&output),
            },
        );
        let spec = RunSpec {
            job,
            run_id,
            scheduled_for: plan.scheduled_for,
            trigger: plan.trigger,
            attempt: plan.attempt,
            output,
        };
        let ctx = runs::RunContext {
            clock: self.clock.clone(),
            executor: Arc::clone(&self.executor),
            store: self.store.clone(),
            me: Arc::clone(&self.me),
            epoch,
            history_limit: self.config.daemon.history_limit,
            events: self.events_tx.clone(),
            gate: self.holds.gate(),
            metrics: self.service.metrics.clone(),
        };
        tokio::spawn(runs::drive(ctx, spec, stop_tx, stop_rx));
    }
}
