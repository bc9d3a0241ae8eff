//! Requests to the running loop: from signals (stop, reload), from the control socket
//! (wake, start a durable trigger, follow a run, cancel a run), and snapshots for reports.

use tokio::sync::{mpsc, oneshot};

use super::{Scheduler, Snapshot};
use crate::clock::Clock;
use crate::run::{RunId, StopCause};
use crate::runner::{Executor, FollowEvent};

/// The tail so far and the live lines of a run.
pub type Following = (Vec<u8>, mpsc::Receiver<FollowEvent>);

/// A request to the running daemon.
#[derive(Debug)]
pub enum Control {
    /// Stop firing, hand the lease over, let running jobs finish within `shutdown_grace`,
    /// then stop them. A second `Stop` skips what is left of the grace period.
    Stop,
    /// Read the job file again; keep the running configuration if the new one is invalid.
    Reload,
    /// The job file changed on disk (`[daemon] watch`): reload it.
    FileChanged,
    /// Answer at once: the loop is alive (`/healthz`).
    Alive(oneshot::Sender<()>),
    /// Fire whatever is due now, then report the loop's state.
    Snapshot(oneshot::Sender<Snapshot>),
    /// Durable state changed from outside (a run-now, a pause): read it again.
    Wake,
    /// Start durable trigger `id` now (a run-now); with `follow`, follow its run too.
    StartTrigger {
        id: i64,
        follow: bool,
        reply: oneshot::Sender<Result<TriggerStarted, String>>,
    },
    /// Follow a running run of this instance: None if it is not running here.
    Follow {
        run_id: RunId,
        reply: oneshot::Sender<Option<Following>>,
    },
    /// Stop a running run of this instance (SIGTERM, `kill_grace`, SIGKILL).
    Cancel {
        run_id: RunId,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// What became of a started trigger.
#[derive(Debug)]
pub struct TriggerStarted {
    pub run_id: RunId,
    /// Why it was skipped instead of started (the overlap policy), if it was.
    pub skipped: Option<String>,
    pub following: Option<Following>,
}

impl<C: Clock, E: Executor> Scheduler<C, E> {
    /// Answer a request other than `Stop` (which the loop itself handles).
    pub(super) async fn answer(&mut self, request: Control) {
        match request {
            Control::Stop => {}
            Control::Reload => self.reload().await,
            Control::FileChanged => {
                tracing::info!(config = %self.config.path.display(), "the job file changed on disk; reloading");
                self.reload().await;
            }
            Control::Alive(reply) => {
                self.service.beat();
                let _ = reply.send(());
            }
            Control::Snapshot(reply) => {
                if self.epoch.is_some() {
                    self.fire_due(self.clock.now()).await;
                }
                let _ = reply.send(self.snapshot());
            }
            Control::Wake => self.refresh().await,
            Control::StartTrigger { id, follow, reply } => {
                let _ = reply.send(self.start_trigger(id, follow).await);
            }
            Control::Follow { run_id, reply } => {
                let _ = reply.send(self.running.get(&run_id).map(|r| r.output.follow()));
            }
            Control::Cancel { run_id, reply } => {
                let answer = match self.running.get(&run_id) {
                    Some(run) => {
                        tracing::info!(job = &*run.job, run_id = run_id.0, "cancel requested");
                        let _ = run.stop.send(Some(StopCause::Cancelled));
                        Ok(())
                    }
                    None => Err(format!("run {run_id} is not running in this daemon")),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// Read durable triggers and job states again (a wake-up from the CLI, or a change
    /// noticed on a lease renewal).
    pub(super) async fn refresh(&mut self) {
        if self.epoch.is_none() {
            return;
        }
        let loaded = self
            .store
            .call(|db| Ok((db.pending_triggers()?, db.job_states()?)))
            .await;
        match loaded {
            Ok((triggers, states)) => {
                for row in triggers {
                    if !self.trigger_rows.contains_key(&row.id) {
                        self.queue_trigger(row);
                    }
                }
                self.set_paused_flags(&states);
            }
            Err(err) => tracing::error!("cannot read run-now requests and pauses: {err}"),
        }
    }

    async fn start_trigger(&mut self, id: i64, follow: bool) -> Result<TriggerStarted, String> {
        if self.epoch.is_none() {
            return Err("this instance is not the leader (any more); the request stays queued for the leader".to_owned());
        }
        self.refresh().await;
        if follow {
            self.follow_trigger.insert(id, None);
        }
        self.fire_due(self.clock.now()).await;
        if let Some((run_id, skipped)) = self.trigger_runs.remove(&id) {
            // Started before this request came (at a takeover): follow it from here.
            let following = self.follow_trigger.remove(&id).flatten().or_else(|| {
                follow
                    .then(|| self.running.get(&run_id).map(|r| r.output.follow()))
                    .flatten()
            });
            return Ok(TriggerStarted {
                run_id,
                skipped,
                following,
            });
        }
        self.follow_trigger.remove(&id);
        // Not fired here just now: it may have been started already (by a renewal's check).
        match self.store.call(move |db| db.trigger_run(id)).await {
            Ok(Some(Some(run_id))) => Ok(TriggerStarted {
                run_id,
                skipped: None,
                following: if follow {
                    self.running.get(&run_id).map(|r| r.output.follow())
                } else {
                    None
                },
            }),
            Ok(Some(None)) => Err(format!(
                "request {id} is queued but was not started; is its job still in the job file?"
            )),
            Ok(None) => Err(format!("there is no run-now request {id}")),
            Err(err) => Err(format!("cannot read request {id}: {err}")),
        }
    }

    pub(super) fn set_paused_flags(&mut self, states: &[crate::store::JobState]) {
        for slot in &mut self.slots {
            slot.paused = false;
        }
        for state in states.iter().filter(|s| s.paused) {
            if let Some(index) = self.index_of(&state.job) {
                self.slots[index].paused = true;
            }
        }
    }
}
