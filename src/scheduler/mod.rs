//! The daemon loop. While this instance leads it sleeps until the next fire instant or
//! durable trigger, fires what is due (recording each decision in the store, fenced by the
//! lease epoch, before starting anything), and follows finished runs; as a standby it only
//! waits for the lease. Deadline-driven: idle means asleep, and a wall-clock step wakes it.

mod runs;
mod takeover;
pub mod timeline;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, Timer};
use crate::config::{self, Config, JobName, Overlap};
use crate::leadership::{Leadership, Role};
use crate::procinfo;
use crate::run::{RunId, StopCause, Trigger};
use crate::runner::{Executor, RunSpec};
use crate::shutdown::Control;
use crate::store::{Instance, NewRun, Recorded, Store, StoreError, TriggerRow};

pub use runs::RunEvent;

/// The loop's state at one moment, for status reports and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// The lease epoch while this instance leads.
    pub epoch: Option<i64>,
    /// Runs started by this instance that have not finished, by id.
    pub running: Vec<(RunId, JobName)>,
    /// Each job's next fire instant (leader only).
    pub next: Vec<(JobName, Option<Timestamp>)>,
    /// Durable triggers (retries, run-now) waiting for their time.
    pub waiting_triggers: usize,
}

/// Per-job state of the loop, aligned with `Config::jobs`.
#[derive(Clone, Debug, Default)]
struct Slot {
    /// The next instant this job fires, if any (leader only).
    next: Option<Timestamp>,
    /// Runs of this job started by this instance that have not finished.
    running: u32,
    /// Runs of this job owned by another live instance (pid, start time), from a takeover.
    foreign: Vec<(u32, Option<i64>)>,
}

impl Slot {
    fn busy(&mut self) -> bool {
        self.foreign
            .retain(|&(pid, start)| procinfo::process_matches(pid, start));
        self.running > 0 || !self.foreign.is_empty()
    }
}

struct Running {
    job: JobName,
    stop: Arc<watch::Sender<Option<StopCause>>>,
}

/// A run the loop decided to start (or to record as skipped).
struct Planned {
    index: usize,
    scheduled_for: Timestamp,
    trigger: Trigger,
    attempt: u32,
    trigger_id: Option<i64>,
}

/// What the loop needs from the rest of the daemon.
pub struct Parts<C, E> {
    pub clock: C,
    pub executor: E,
    pub store: Store,
    pub me: Instance,
    pub leadership: Leadership,
}

pub struct Scheduler<C: Clock, E: Executor> {
    clock: C,
    executor: Arc<E>,
    config: Arc<Config>,
    store: Store,
    me: Arc<Instance>,
    leadership: Option<Leadership>,
    /// Some while this instance leads.
    epoch: Option<i64>,
    /// Where `@every` intervals count from: the first start of any daemon on this state.
    anchor: Timestamp,
    /// Whether `@reboot` jobs ran in this process already.
    rebooted: bool,
    slots: Vec<Slot>,
    /// Next fire instants, earliest first: (instant, index into `config.jobs`).
    timeline: BTreeSet<(Timestamp, usize)>,
    /// Durable triggers waiting for their time: (not before, id).
    triggers: BTreeSet<(Timestamp, i64)>,
    trigger_rows: HashMap<i64, TriggerRow>,
    running: HashMap<RunId, Running>,
    events_tx: mpsc::UnboundedSender<RunEvent>,
}

impl<C: Clock, E: Executor> Scheduler<C, E> {
    pub fn new(parts: Parts<C, E>, config: Config) -> Self {
        let (events_tx, _) = mpsc::unbounded_channel();
        let mut scheduler = Scheduler {
            anchor: parts.clock.now(),
            clock: parts.clock,
            executor: Arc::new(parts.executor),
            config: Arc::new(Config {
                jobs: Vec::new(),
                ..config.clone()
            }),
            store: parts.store,
            me: Arc::new(parts.me),
            leadership: Some(parts.leadership),
            epoch: None,
            rebooted: false,
            slots: Vec::new(),
            timeline: BTreeSet::new(),
            triggers: BTreeSet::new(),
            trigger_rows: HashMap::new(),
            running: HashMap::new(),
            events_tx,
        };
        scheduler.apply(config);
        scheduler
    }

    /// Run until told to stop, then hand over the lease and drain: the daemon's life.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) -> std::io::Result<()> {
        let mut timer = self.clock.timer()?;
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        self.events_tx = events_tx;
        let mut role = self
            .leadership
            .as_ref()
            .map(|l| l.role.clone())
            .expect("leadership");
        let first_start = self.clock.now().to_string();
        match self
            .store
            .call(move |db| db.meta_init("first_start", &first_start))
            .await
        {
            Ok(anchor) => self.anchor = anchor.parse().unwrap_or(self.anchor),
            Err(err) => tracing::error!("cannot read the state database: {err}"),
        }
        tracing::info!(
            jobs = self.config.jobs.len(),
            config = %self.config.path.display(),
            state = %self.config.daemon.state.display(),
            instance = %self.me.id,
            "scheduler started"
        );
        loop {
            if self.epoch.is_some() {
                self.fire_due(self.clock.now()).await;
            }
            let deadline = self.next_deadline();
            tokio::select! {
                biased;
                Some(event) = events_rx.recv() => self.on_event(event),
                Ok(()) = role.changed() => {
                    let now_role = *role.borrow_and_update();
                    self.on_role(now_role).await;
                }
                message = control.recv() => match message {
                    Some(Control::Reload) => self.reload().await,
                    Some(Control::Snapshot(reply)) => {
                        if self.epoch.is_some() {
                            self.fire_due(self.clock.now()).await;
                        }
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Control::Stop) | None => break,
                },
                () = sleep(&mut timer, deadline) => {}
            }
        }
        self.hand_over().await;
        self.drain(control, events_rx).await;
        Ok(())
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut running: Vec<(RunId, JobName)> = self
            .running
            .iter()
            .map(|(id, r)| (*id, Arc::clone(&r.job)))
            .collect();
        running.sort();
        Snapshot {
            epoch: self.epoch,
            running,
            next: self
                .config
                .jobs
                .iter()
                .zip(&self.slots)
                .map(|(j, s)| (Arc::clone(&j.name), s.next))
                .collect(),
            waiting_triggers: self.triggers.len(),
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.epoch?;
        let fire = self.timeline.first().map(|&(t, _)| t);
        let trigger = self.triggers.first().map(|&(t, _)| t);
        match (fire, trigger) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    async fn on_role(&mut self, role: Role) {
        match role {
            Role::Leader { epoch } if self.epoch != Some(epoch) => self.take_over(epoch).await,
            Role::Standby if self.epoch.is_some() => self.stand_by(),
            _ => {}
        }
    }

    /// Stop scheduling (the lease is gone); runs already started go on and are recorded.
    fn stand_by(&mut self) {
        self.epoch = None;
        self.timeline.clear();
        self.triggers.clear();
        self.trigger_rows.clear();
        for slot in &mut self.slots {
            slot.next = None;
            slot.foreign.clear();
        }
    }

    /// Fire every job and trigger whose time has come, in one recorded batch.
    async fn fire_due(&mut self, now: Timestamp) {
        let mut batch = Vec::new();
        while let Some(&(first, index)) = self.timeline.first() {
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
                    .map(|(scheduled_for, trigger)| Planned {
                        index,
                        scheduled_for,
                        trigger,
                        attempt: 1,
                        trigger_id: None,
                    }),
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

    fn set_next(&mut self, index: usize, next: Option<Timestamp>) {
        if let Some(old) = self.slots[index].next.take() {
            self.timeline.remove(&(old, index));
        }
        self.slots[index].next = next;
        if let Some(next) = next {
            self.timeline.insert((next, index));
        }
    }

    /// Decide each planned run (start or skip by the overlap policy), record the decisions
    /// in one transaction fenced by our epoch, then start what was recorded.
    async fn fire(&mut self, batch: Vec<Planned>, now: Timestamp) {
        let Some(epoch) = self.epoch else { return };
        let mut records = Vec::with_capacity(batch.len());
        let mut starts = Vec::with_capacity(batch.len());
        for plan in &batch {
            let job = &self.config.jobs[plan.index];
            let slot = &mut self.slots[plan.index];
            let skipped = if slot.busy() && job.overlap == Overlap::Skip {
                Some("the previous run is still running (overlap = \"skip\")".to_owned())
            } else {
                slot.running += 1;
                None
            };
            starts.push(skipped.is_none());
            records.push(NewRun {
                job: job.name.to_string(),
                scheduled_for: plan.scheduled_for,
                trigger: plan.trigger,
                attempt: plan.attempt,
                skipped,
                trigger_id: plan.trigger_id,
            });
        }
        let me = Arc::clone(&self.me);
        let to_record = records.clone();
        let result = self
            .store
            .call(move |db| db.record_runs(&me, epoch, &to_record, now))
            .await;
        let recorded = match result {
            Ok(recorded) => recorded,
            Err(err) => {
                for (plan, started) in batch.iter().zip(&starts) {
                    if *started {
                        self.slots[plan.index].running -= 1;
                    }
                }
                if let StoreError::Fenced(_) = err {
                    tracing::warn!(
                        epoch,
                        "another instance took the lease; not starting {} due runs",
                        batch.len()
                    );
                    if let Some(leadership) = &self.leadership {
                        leadership.fenced(epoch);
                    }
                    self.stand_by();
                } else {
                    let jobs: Vec<&str> = records.iter().map(|r| r.job.as_str()).collect();
                    tracing::error!(jobs = ?jobs, "cannot record due runs, so they were not started: {err}");
                }
                return;
            }
        };
        for ((plan, started), (record, outcome)) in
            batch.iter().zip(starts).zip(records.iter().zip(recorded))
        {
            let job = Arc::clone(&self.config.jobs[plan.index]);
            match outcome {
                Recorded::Created(run_id) if started => self.start(job, run_id, plan, epoch),
                Recorded::Created(run_id) => tracing::warn!(
                    job = &*job.name,
                    run_id = run_id.0,
                    scheduled_for = %record.scheduled_for,
                    trigger = record.trigger.as_str(),
                    "run skipped: {}",
                    record.skipped.as_deref().unwrap_or("")
                ),
                Recorded::AlreadyDecided => {
                    if started {
                        self.slots[plan.index].running -= 1;
                    }
                    tracing::debug!(job = &*job.name, scheduled_for = %record.scheduled_for, "instant already decided earlier; not firing it again");
                }
            }
        }
    }

    fn start(&mut self, job: Arc<config::Job>, run_id: RunId, plan: &Planned, epoch: i64) {
        let (stop_tx, stop_rx) = watch::channel(None);
        let stop_tx = Arc::new(stop_tx);
        self.running.insert(
            run_id,
            Running {
                job: Arc::clone(&job.name),
                stop: Arc::clone(&stop_tx),
            },
        );
        let spec = RunSpec {
            job,
            run_id,
            scheduled_for: plan.scheduled_for,
            trigger: plan.trigger,
            attempt: plan.attempt,
        };
        let ctx = runs::RunContext {
            clock: self.clock.clone(),
            executor: Arc::clone(&self.executor),
            store: self.store.clone(),
            me: Arc::clone(&self.me),
            epoch,
            history_limit: self.config.daemon.history_limit,
            events: self.events_tx.clone(),
        };
        tokio::spawn(runs::drive(ctx, spec, stop_tx, stop_rx));
    }

    fn on_event(&mut self, event: RunEvent) {
        let RunEvent::Finished { run_id, retry } = event;
        let Some(run) = self.running.remove(&run_id) else {
            return;
        };
        if let Some(index) = self.index_of(&run.job) {
            let slot = &mut self.slots[index];
            slot.running = slot.running.saturating_sub(1);
        }
        if let Some(row) = retry {
            self.queue_trigger(row);
        }
    }

    fn queue_trigger(&mut self, row: TriggerRow) {
        if self.epoch.is_some() {
            self.triggers.insert((row.not_before, row.id));
            self.trigger_rows.insert(row.id, row);
        }
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.config
            .jobs
            .binary_search_by(|j| (*j.name).cmp(name))
            .ok()
    }

    /// Re-read the job file. An invalid file changes nothing.
    async fn reload(&mut self) {
        let path = self.config.path.clone();
        match config::load(&path) {
            Ok(new) => {
                self.apply(new);
                tracing::info!(jobs = self.config.jobs.len(), config = %path.display(), "configuration reloaded");
            }
            Err(config::LoadError::Invalid(errors)) => {
                for line in errors.to_string().lines() {
                    tracing::error!("{line}");
                }
                tracing::error!(config = %path.display(), "reload failed; the previous configuration stays in effect");
            }
            Err(err) => {
                tracing::error!(config = %path.display(), "reload failed: {err}; the previous configuration stays in effect");
            }
        }
    }

    /// Switch to `new`: jobs whose timing is unchanged keep their next instant (so nothing
    /// due fires twice); new or changed ones compute it from now; running runs continue.
    fn apply(&mut self, new: Config) {
        let now = self.clock.now();
        let old_config = Arc::clone(&self.config);
        let old_slots = std::mem::take(&mut self.slots);
        self.timeline.clear();
        for (index, job) in new.jobs.iter().enumerate() {
            let mut slot = Slot::default();
            if let Ok(old_index) = old_config.jobs.binary_search_by(|j| j.name.cmp(&job.name)) {
                let (old_job, old_slot) = (&old_config.jobs[old_index], &old_slots[old_index]);
                slot.running = old_slot.running;
                slot.foreign = old_slot.foreign.clone();
                let same_timing =
                    old_job.timing == job.timing && old_job.zone.name == job.zone.name;
                if same_timing && old_job.enabled {
                    slot.next = old_slot.next;
                }
            }
            if self.epoch.is_some() && job.enabled && slot.next.is_none() {
                slot.next = timeline::next_fire(job, now, self.anchor);
            }
            if !job.enabled || self.epoch.is_none() {
                slot.next = None;
            }
            if let Some(next) = slot.next {
                self.timeline.insert((next, index));
            }
            self.slots.push(slot);
        }
        self.config = Arc::new(new);
    }

    /// On a stop request: stop contending and give the lease up at once, so that a standby
    /// takes over while our running runs drain.
    async fn hand_over(&mut self) {
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

    /// After a stop request: give running runs `shutdown_grace` (a second stop request cuts
    /// it short), then stop the rest and wait for them to be recorded.
    async fn drain(
        &mut self,
        mut control: mpsc::Receiver<Control>,
        mut events: mpsc::UnboundedReceiver<RunEvent>,
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
        while !self.running.is_empty() {
            tokio::select! {
                Some(event) = events.recv() => self.on_event(event),
                () = tokio::time::sleep_until(grace_end) => break,
                Some(message) = control.recv() => match message {
                    Control::Stop => {
                        tracing::info!("second stop request: stopping running runs now");
                        break;
                    }
                    Control::Snapshot(reply) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Control::Reload => tracing::info!("not reloading: the daemon is stopping"),
                },
            }
        }
        for run in self.running.values() {
            let _ = run.stop.send(Some(StopCause::Shutdown));
        }
        while !self.running.is_empty() {
            match events.recv().await {
                Some(event) => self.on_event(event),
                None => break,
            }
        }
        tracing::info!("scheduler stopped");
    }
}

async fn sleep<T: Timer>(timer: &mut T, deadline: Option<Timestamp>) {
    match deadline {
        Some(t) => timer.sleep_until(t).await,
        None => std::future::pending().await,
    }
}
