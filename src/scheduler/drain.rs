//! Stopping: hand the lease over at once (so a standby carries on), then give running runs
//! `shutdown_grace` before stopping them, and wait until each is recorded.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{Control, RunEvent, Scheduler, watchdog_tick};
use crate::clock::Clock;
use crate::run::StopCause;
use crate::runner::Executor;

impl<C: Clock, E: Executor> Scheduler<C, E> {
    /// Stop contending and give the lease up, so that a standby takes over while our running
    /// runs drain.
    pub(super) async fn hand_over(&mut self) {
        if let Some(leadership) = self.leadership.take() {
            leadership.stop().await;
        }
        self.stand_by();
        let me = Arc::clone(&self.me);
        let now = self.clock.now();
        if let Err(err) = self
            .store
            .call(move |db| db.register_instance(&me, "stopped", now))
            .await
        {
            tracing::debug!("cannot mark this instance stopped: {err}");
        }
    }

    /// Give running runs `shutdown_grace` (a second stop request cuts it short), then stop
    /// the rest and wait for them to be recorded. Follow and cancel requests still work.
    pub(super) async fn drain(
        &mut self,
        mut control: mpsc::Receiver<Control>,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
        watchdog: &mut Option<tokio::time::Interval>,
    ) {
        let grace = self.config.daemon.shutdown_grace;
        if !self.running.is_empty() {
            tracing::info!(
                running = self.running.len(),
                "stopping: no new runs; waiting up to {} for running runs to finish",
                humantime::format_duration(grace)
            );
        }
        let grace_end = tokio::time::Instant::now() + grace;
        let mut stopping = false;
        while !self.running.is_empty() {
            self.service.beat();
            tokio::select! {
                biased;
                () = watchdog_tick(watchdog) => self.service.watchdog_ping(),
                Some(event) = events.recv() => self.on_event(event),
                () = tokio::time::sleep_until(grace_end), if !stopping => stopping = true,
                Some(request) = control.recv() => match request {
                    Control::Stop if !stopping => {
                        tracing::info!("second stop request: stopping running runs now");
                        stopping = true;
                    }
                    Control::Reload | Control::FileChanged => {
                        tracing::info!("not reloading: the daemon is stopping");
                    }
                    other => self.answer(other).await,
                },
            }
            if stopping {
                for run in self.running.values() {
                    let _ = run
                        .stop
                        .send_if_modified(|cause| cause.replace(StopCause::Shutdown).is_none());
                }
            }
        }
        tracing::info!("scheduler stopped");
    }
}
