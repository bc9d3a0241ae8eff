//! The daemon loop. While this instance leads it sleeps until the next fire instant or
//! durable trigger, fires what is due (recording each decision in the store, fenced by the
//! lease epoch, before starting anything), and follows finished runs; as a standby it only
//! waits for the lease. Deadline-driven: idle means asleep, and a wall-clock step wakes it.

mod drain;
mod fire;
mod hold;
mod queue;
mod reload;
mod requests;
mod runs;
mod takeover;
pub mod timeline;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, watch};

use crate::clock::{Clock, Timer};
use crate::config::{Config, JobName};
use crate::leadership::{Leadership, Role};
use crate::procinfo;
use crate::run::{RunId, StopCause};
use crate::runner::{Executor, RunOutput};
use crate::service::Service;
use crate::store::{Instance, Store, TriggerRow};

pub use requests::{Control, Following, TriggerStarted};
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
    /// Runs started for `run-now` requests that the request has not asked about yet.
    pub unclaimed_requests: usize,
}

/// Per-job state of the loop, aligned with `Config::jobs`.
#[derive(Clone, Debug, Default)]
struct Slot {
    /// The next instant this job fires, if any (leader only).
    next: Option<Timestamp>,
    /// Runs of this job started by this instance that have not finished.
    running: u32,
    /// Runs of this job owned by another live instance (pid, start time), from a takeover.
    /// Rare, so boxed: a slot is kept per job, and an empty `Vec` would take 24 bytes of it.
    #[allow(clippy::box_collection)]
    foreign: Option<Box<Vec<ForeignRun>>>,
    /// Paused (`schedctl pause`, or `max_failures`): its instants are recorded as skipped.
    paused: bool,
}

/// A process of another instance's run: pid and start time.
type ForeignRun = (u32, Option<i64>);

impl Slot {
    fn busy(&mut self) -> bool {
        if let Some(foreign) = &mut self.foreign {
            foreign.retain(|&(pid, start)| procinfo::process_matches(pid, start));
            if foreign.is_empty() {
                self.foreign = None;
            }
        }
        self.running > 0 || self.foreign.is_some()
    }
}

struct Running {
    job: JobName,
    stop: Arc<watch::Sender<Option<StopCause>>>,
    output: Arc<RunOutput>,
}

/// What the loop needs from the rest of the daemon.
pub struct Parts<C, E> {
    pub clock: C,
    pub executor: E,
    pub store: Store,
    pub me: Instance,
    pub leadership: Leadership,
    /// Readiness, status and watchdog pings for systemd; state and metrics for HTTP.
    pub service: Service,
}

pub struct Scheduler<C: Clock, E: Executor> {
    clock: C,
    executor: Arc<E>,
    config: Arc<Config>,
    store: Store,
    me: Arc<Instance>,
    leadership: Option<Leadership>,
    service: Service,
    /// Some while this instance leads.
    epoch: Option<i64>,
    /// Where `@every` intervals count from: the first start of any daemon on this state.
    anchor: Timestamp,
    /// Whether `@reboot` jobs ran in this process already.
    rebooted: bool,
    slots: Vec<Slot>,
    /// Next fire instants, earliest first: (instant, index into `config.jobs`).
    timeline: queue::Queue,
    /// Durable triggers waiting for their time: (not before, id).
    triggers: BTreeSet<(Timestamp, i64)>,
    trigger_rows: HashMap<i64, TriggerRow>,
    /// Runs created for `run-now` requests, until the request's `StartTrigger` asks (run id,
    /// skip reason). Retries are triggers too, but nothing asks about them.
    trigger_runs: HashMap<i64, (RunId, Option<String>)>,
    /// Triggers whose run someone wants to follow from its first line.
    follow_trigger: HashMap<i64, Option<Following>>,
    running: HashMap<RunId, Running>,
    events_tx: mpsc::UnboundedSender<RunEvent>,
    /// Holds the runs' bookkeeping while a large batch starts.
    holds: hold::Holds,
    /// A held batch ran since the last time no run was left: give the heap back then.
    trim_when_idle: bool,
    /// Waits for the instant of runs decided ahead of it (`fire`); made by `run`.
    start_timer: Option<C::Timer>,
}

impl<C: Clock, E: Executor> Scheduler<C, E> {
    pub fn new(parts: Parts<C, E>, config: Config) -> Self {
        let (events_tx, _) = mpsc::unbounded_channel();
        let mut scheduler = Scheduler {
            start_timer: None,
            anchor: parts.clock.now(),
            clock: parts.clock,
            executor: Arc::new(parts.executor),
            config: Arc::new(Config {
                jobs: Vec::new(),
                ..config.clone()
            }),
            me: Arc::new(parts.me),
            leadership: Some(parts.leadership),
            service: parts.service,
            epoch: None,
            rebooted: false,
            slots: Vec::new(),
            timeline: queue::Queue::default(),
            triggers: BTreeSet::new(),
            trigger_rows: HashMap::new(),
            trigger_runs: HashMap::new(),
            follow_trigger: HashMap::new(),
            running: HashMap::new(),
            events_tx,
            holds: hold::Holds::new(parts.store.clone()),
            trim_when_idle: false,
            store: parts.store,
        };
        scheduler.apply(config);
        scheduler
    }

    /// Run until told to stop, then hand over the lease and drain: the daemon's life.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) -> std::io::Result<()> {
        let mut timer = self.clock.timer()?;
        self.start_timer = Some(self.clock.timer()?);
        let mut watchdog = self.service.watchdog();
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        self.events_tx = events_tx;
        let leadership = self.leadership.as_mut().expect("leadership");
        let mut role = leadership.role.clone();
        let mut changes = leadership.changes.take().expect("the change notifications");
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
        self.service
            .ready(self.config.jobs.len(), &self.config.path);
        loop {
            self.service.beat();
            if self.epoch.is_some() {
                self.fire_due(self.clock.now()).await;
            }
            // Woken a little ahead: see `fire::DECIDE_AHEAD`.
            let deadline = self
                .next_deadline()
                .map(|t| t.checked_sub(fire::DECIDE_AHEAD).unwrap_or(t));
            tokio::select! {
                biased;
                // First, so that a flood of other events cannot starve it; the ping comes
                // from this loop so that a wedged loop gets restarted.
                () = watchdog_tick(&mut watchdog) => self.service.watchdog_ping(),
                Some(event) = events_rx.recv() => self.on_event(event),
                Ok(()) = role.changed() => {
                    let now_role = *role.borrow_and_update();
                    self.on_role(now_role).await;
                }
                request = control.recv() => match request {
                    Some(Control::Stop) | None => break,
                    Some(request) => self.answer(request).await,
                },
                Some(()) = changes.recv() => self.refresh().await,
                () = sleep(&mut timer, deadline) => {}
            }
        }
        self.service.stopping();
        self.hand_over().await;
        self.drain(control, events_rx, &mut watchdog).await;
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
            unclaimed_requests: self.trigger_runs.len(),
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        self.epoch?;
        let fire = self.timeline.first().map(|(t, _)| t);
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
        self.service.role(self.epoch);
    }

    /// Stop scheduling (the lease is gone); runs already started go on and are recorded.
    fn stand_by(&mut self) {
        self.epoch = None;
        self.service.role(None);
        self.timeline.clear();
        self.triggers.clear();
        self.trigger_rows.clear();
        for slot in &mut self.slots {
            slot.next = None;
            slot.foreign = None;
        }
    }

    fn on_event(&mut self, event: RunEvent) {
        let RunEvent::Finished {
            run_id,
            retry,
            paused,
        } = event;
        let Some(run) = self.running.remove(&run_id) else {
            return;
        };
        if self.trim_when_idle && self.running.is_empty() {
            // A held burst had all its runs alive at once; without this, the daemon would
            // keep that peak (~7 KB a run) resident until the next configuration change.
            self.trim_when_idle = false;
            crate::memory::release_freed();
        }
        if let Some(index) = self.index_of(&run.job) {
            let slot = &mut self.slots[index];
            slot.running = slot.running.saturating_sub(1);
            if paused {
                slot.paused = true;
                tracing::error!(
                    job = &*run.job,
                    "job paused after too many consecutive failures (max_failures); `schedctl resume {}` when fixed",
                    run.job
                );
            }
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
}

/// The next watchdog tick; never without a watchdog.
pub(super) async fn watchdog_tick(watchdog: &mut Option<tokio::time::Interval>) {
    match watchdog {
        Some(interval) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn sleep<T: Timer>(timer: &mut T, deadline: Option<Timestamp>) {
    match deadline {
        Some(t) => timer.sleep_until(t).await,
        None => std::future::pending().await,
    }
}
