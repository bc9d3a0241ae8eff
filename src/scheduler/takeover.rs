//! Becoming leader, as an explicit step: recover runs left by earlier leaders, reload
//! durable triggers, and lay out the timeline, firing what was missed while no leader could
//! (by each job's `catch_up` and `starting_deadline`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;

use super::fire::Planned;
use super::{Scheduler, timeline};
use crate::clock::Clock;
use crate::config::Timing;
use crate::procinfo;
use crate::run::Trigger;
use crate::runner::Executor;
use crate::schedule::Schedule;
use crate::store::{Abandon, InstanceRow, JobState, NewTrigger, RunRecord, TriggerRow};

/// What the store knows when this instance takes over.
struct Snapshot {
    active: Vec<RunRecord>,
    states: Vec<JobState>,
    triggers: Vec<TriggerRow>,
    instances: Vec<InstanceRow>,
}

impl<C: Clock, E: Executor> Scheduler<C, E> {
    pub(super) async fn take_over(&mut self, epoch: i64) {
        let snapshot = self
            .store
            .call(|db| {
                Ok(Snapshot {
                    active: db.active_runs()?,
                    states: db.job_states()?,
                    triggers: db.pending_triggers()?,
                    instances: db.instances()?,
                })
            })
            .await;
        let snapshot = match snapshot {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(
                    epoch,
                    "cannot read the state to take over: {err}; giving the lease back"
                );
                if let Some(leadership) = &self.leadership {
                    leadership.fenced(epoch);
                }
                return;
            }
        };
        self.epoch = Some(epoch);
        let now = self.clock.now();
        let active: std::collections::HashSet<_> = snapshot.active.iter().map(|r| r.id).collect();
        self.executor.forget_leftovers(&active);
        let retries = self.recover(epoch, &snapshot, now).await;
        for row in snapshot.triggers.into_iter().chain(retries) {
            self.queue_trigger(row);
        }
        self.set_paused_flags(&snapshot.states);
        let last_fired: HashMap<&str, Timestamp> = snapshot
            .states
            .iter()
            .filter_map(|s| s.last_fired.map(|t| (s.job.as_str(), t)))
            .collect();
        let mut batch = Vec::new();
        for index in 0..self.config.jobs.len() {
            let job = Arc::clone(&self.config.jobs[index]);
            if !job.settings.enabled {
                continue;
            }
            if job.timing == Timing::Schedule(Schedule::Reboot) {
                if !self.rebooted {
                    batch.push(Planned::scheduled(index, now, Trigger::Schedule));
                }
                continue;
            }
            let last = last_fired.get(&*job.name).copied();
            // The first undecided instant up to now: after the last decided one; for a
            // one-off never decided, its own instant (a job new to the state has no past).
            let first = match (last, &job.timing) {
                (Some(l), _) => timeline::next_fire(&job, l, self.anchor),
                (None, Timing::At(at)) => Some(*at),
                (None, Timing::Schedule(_)) => None,
            };
            if let Some(first) = first.filter(|&f| f <= now) {
                let due = timeline::due(&job, first, now, self.anchor);
                if let Some((from, to)) = due.passed_over {
                    tracing::warn!(job = &*job.name, from = %from, to = %to, catch_up = ?job.settings.catch_up, "missed instants not run");
                }
                batch.extend(
                    due.fire
                        .into_iter()
                        .map(|(t, trigger)| Planned::scheduled(index, t, trigger)),
                );
            }
            // Never before the last decided instant, even if the wall clock went back.
            let after = last.map_or(now, |l| l.max(now));
            self.set_next(index, timeline::next_fire(&job, after, self.anchor));
        }
        self.prepare_jobs();
        // Sent, not awaited: the store compiles the statements of recording runs while
        // nothing is due, instead of at the first fire (~0.3 ms of its latency here).
        drop(self.store.call_now(|db| db.prepare_run_statements()));
        self.rebooted = true;
        if !batch.is_empty() {
            tracing::info!(
                runs = batch.len(),
                "catching up on instants missed while no leader ran"
            );
            self.fire(batch, now).await;
        }
    }

    /// Runs of earlier leaders still marked pending or running: leave those whose daemon is
    /// alive (it still follows them), stop orphans whose daemon died, mark the rest
    /// abandoned, and return the retries due for them.
    async fn recover(
        &mut self,
        epoch: i64,
        snapshot: &Snapshot,
        now: Timestamp,
    ) -> Vec<TriggerRow> {
        let instances: HashMap<&str, &InstanceRow> = snapshot
            .instances
            .iter()
            .map(|i| (i.id.as_str(), i))
            .collect();
        let mut abandon = Vec::new();
        for run in &snapshot.active {
            if run.instance == self.me.id {
                continue; // ours: followed by its run task
            }
            let owner_alive = instances.get(run.instance.as_str()).and_then(|o| {
                procinfo::instance_alive(&self.me, &o.host, &o.boot_id, o.pid, o.pid_start)
            });
            let index = self.index_of(&run.job);
            if owner_alive != Some(false) {
                // Its daemon still follows it (or lives on another host): it counts for overlap.
                if let (Some(index), Some(pid)) = (index, run.pid) {
                    self.slots[index]
                        .foreign
                        .get_or_insert_default()
                        .push((pid, run.pid_start));
                }
                continue;
            }
            let orphan = run.pid.filter(|&pid| {
                run.boot_id == self.me.boot_id && procinfo::process_matches(pid, run.pid_start)
            });
            let reason = match orphan {
                Some(pid) => {
                    let grace = index.map_or(crate::config::DEFAULT_KILL_GRACE, |i| {
                        self.config.jobs[i].settings.kill_grace
                    });
                    tokio::spawn(stop_orphan(
                        pid,
                        run.pid_start,
                        grace,
                        run.job.clone(),
                        run.id.0,
                    ));
                    format!(
                        "its daemon ({}) died; the new leader stopped the orphaned process",
                        run.instance
                    )
                }
                None => format!("lost with its daemon ({}) before it finished", run.instance),
            };
            let retry = index.and_then(|i| {
                let job = &self.config.jobs[i];
                (run.attempt <= job.settings.retries).then(|| NewTrigger {
                    job: run.job.clone(),
                    kind: Trigger::Retry,
                    not_before: now,
                    scheduled_for: run.scheduled_for,
                    attempt: run.attempt + 1,
                    origin: Some(format!("retry of abandoned run {}", run.id)),
                })
            });
            tracing::warn!(job = %run.job, run_id = run.id.0, retry = retry.is_some(), "run abandoned: {reason}");
            abandon.push(Abandon {
                run_id: run.id,
                job: run.job.clone(),
                reason,
                retry,
            });
        }
        if abandon.is_empty() {
            return Vec::new();
        }
        let me = Arc::clone(&self.me);
        let jobs: Vec<String> = abandon.iter().map(|a| a.job.clone()).collect();
        match self
            .store
            .call(move |db| db.abandon_runs(&me, epoch, &abandon, now))
            .await
        {
            Ok(retries) => {
                for job in &jobs {
                    self.service.metrics.run_abandoned(job);
                }
                retries
            }
            Err(err) => {
                tracing::error!("cannot record abandoned runs: {err}");
                Vec::new()
            }
        }
    }
}

/// Stop the process group of a run whose daemon died: SIGTERM, `grace`, SIGKILL.
async fn stop_orphan(pid: u32, pid_start: Option<i64>, grace: Duration, job: String, run_id: i64) {
    if let Err(err) = crate::runner::stop_group_of(pid, pid_start, grace).await {
        tracing::warn!(job, run_id, pid, "cannot stop the orphaned run: {err}");
    }
}
