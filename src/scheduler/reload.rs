//! Reloading the job file (SIGHUP, or a change on disk): an invalid file changes nothing
//! but is reported (log, `/readyz`, metrics, systemd status); a valid one applies without
//! touching running runs, and keeps each unchanged job's next instant.

use std::sync::Arc;

use super::{Scheduler, Slot, timeline};
use crate::clock::Clock;
use crate::config::{self, Config, DaemonConfig};
use crate::runner::Executor;

/// How far ahead of their instants jobs are got ready (see `prepare_jobs`).
const PREPARE_AHEAD: jiff::SignedDuration = jiff::SignedDuration::from_mins(10);

impl<C: Clock, E: Executor> Scheduler<C, E> {
    /// Re-read the job file. An invalid file changes nothing.
    pub(super) async fn reload(&mut self) {
        self.service.reloading();
        let path = self.config.path.clone();
        let now = self.clock.now();
        // The outcome is published before it is logged: whoever reads the line finds it
        // in `/readyz` and `/metrics` too.
        match config::load(&path) {
            Ok(new) => {
                warn_restart_only(&self.config.daemon, &new.daemon);
                self.apply(new);
                // Pause flags of jobs new to this configuration.
                self.refresh().await;
                self.service.reloaded(Ok(self.config.jobs.len()), now);
                tracing::info!(jobs = self.config.jobs.len(), config = %path.display(), "configuration reloaded");
            }
            Err(config::LoadError::Invalid(errors)) => {
                let text = errors.to_string();
                let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
                for line in &lines {
                    tracing::error!("{line}");
                }
                lines.pop(); // the summary line
                self.service.reloaded(Err(lines), now);
                tracing::error!(config = %path.display(), "reload failed; the previous configuration stays in effect");
            }
            Err(err) => {
                self.service.reloaded(Err(vec![err.to_string()]), now);
                tracing::error!(config = %path.display(), "reload failed: {err}; the previous configuration stays in effect");
            }
        }
    }

    /// Let the executor get the jobs due within [`PREPARE_AHEAD`] ready (their
    /// directories), soonest due first. Jobs due later get ready at their first run: making
    /// the directories of 10,000 jobs at every start cost ~0.4 s of CPU, mostly for jobs
    /// that were hours away.
    pub(super) fn prepare_jobs(&self) {
        let horizon = self.clock.now() + PREPARE_AHEAD;
        let jobs = self
            .timeline
            .iter()
            .take_while(|&(at, _)| at <= horizon)
            .map(|(_, index)| Arc::clone(&self.config.jobs[index]))
            .collect();
        self.executor.prepare(jobs);
    }

    /// Switch to `new`: jobs whose timing is unchanged keep their next instant (so nothing
    /// due fires twice); new or changed ones compute it from now; running runs continue.
    pub(super) fn apply(&mut self, new: Config) {
        let now = self.clock.now();
        let old_config = Arc::clone(&self.config);
        let old_slots = std::mem::take(&mut self.slots);
        self.timeline.clear();
        // Exactly: with 10,000 jobs, doubling would leave a third of it unused.
        self.slots.reserve_exact(new.jobs.len());
        for (index, job) in new.jobs.iter().enumerate() {
            let mut slot = Slot::default();
            if let Ok(old_index) = old_config.jobs.binary_search_by(|j| j.name.cmp(&job.name)) {
                let (old_job, old_slot) = (&old_config.jobs[old_index], &old_slots[old_index]);
                slot.running = old_slot.running;
                slot.foreign = old_slot.foreign.clone();
                slot.paused = old_slot.paused;
                let same_timing =
                    old_job.timing == job.timing && old_job.zone.name == job.zone.name;
                if same_timing && old_job.settings.enabled {
                    slot.next = old_slot.next;
                }
            }
            if self.epoch.is_some() && job.settings.enabled && slot.next.is_none() {
                slot.next = timeline::next_fire(job, now, self.anchor);
            }
            if !job.settings.enabled || self.epoch.is_none() {
                slot.next = None;
            }
            if let Some(next) = slot.next {
                self.timeline.insert(next, index);
            }
            self.slots.push(slot);
        }
        self.config = Arc::new(new);
        if self.epoch.is_some() {
            self.prepare_jobs();
        }
        // Parsing a large file leaves megabytes of freed heap behind; an idle daemon
        // should not keep them.
        drop(old_config);
        crate::memory::release_freed();
    }
}

/// `[daemon]` keys that are read once at startup: say so when a reload changes them.
fn warn_restart_only(old: &DaemonConfig, new: &DaemonConfig) {
    let changed = [
        ("state", old.state != new.state),
        ("lease_ttl", old.lease_ttl != new.lease_ttl),
        ("listen", old.listen != new.listen),
        ("watch", old.watch != new.watch),
        ("log_format", old.log_format != new.log_format),
    ];
    for (key, _) in changed.iter().filter(|(_, changed)| *changed) {
        tracing::warn!(
            "`[daemon] {key}` changed; it takes effect when the daemon restarts (`systemctl restart schedctl`)"
        );
    }
}
