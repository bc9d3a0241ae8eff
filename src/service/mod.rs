//! The daemon as a service: what the loop tells its supervisor and its monitors. systemd
//! hears READY, STATUS, RELOADING, STOPPING and watchdog pings (`notify`); the HTTP
//! endpoints (`http`) read the published [`State`], the loop's heartbeat and the
//! [`Metrics`]. The loop owns the [`Service`]; nothing here wakes up on its own.

pub mod http;
mod metrics;
mod notify;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

pub use metrics::{CONTENT_TYPE as METRICS_CONTENT_TYPE, Metrics};
pub use notify::Notifier;

/// Without a systemd watchdog, `/healthz` calls a loop stalled when it has neither answered
/// nor started an iteration for this long.
pub const DEFAULT_LIVENESS_PERIOD: Duration = Duration::from_secs(60);

/// What `/readyz` reports, as the loop last published it.
#[derive(Clone, Debug, Default, Serialize)]
pub struct State {
    /// The configuration is loaded and the loop runs (false before READY and once stopping).
    pub running: bool,
    /// The lease epoch while this instance leads.
    pub epoch: Option<i64>,
    pub jobs: usize,
    pub config: String,
    pub last_reload: Option<ReloadReport>,
}

/// The outcome of the latest reload.
#[derive(Clone, Debug, Serialize)]
pub struct ReloadReport {
    pub ok: bool,
    /// RFC 3339.
    pub at: String,
    /// `FILE:LINE:COL: ...` lines when it failed.
    pub errors: Vec<String>,
}

impl State {
    /// The line systemd shows after `Status:`.
    pub fn status_line(&self) -> String {
        let mut line = match self.epoch {
            Some(epoch) => format!("leader (epoch {epoch}), {} jobs", self.jobs),
            None => format!("standby, {} jobs", self.jobs),
        };
        if let Some(r) = self.last_reload.as_ref().filter(|r| !r.ok) {
            let n = r.errors.len();
            let noun = if n == 1 { "error" } else { "errors" };
            line.push_str(&format!(
                "; last reload failed ({n} {noun}), previous configuration kept"
            ));
        }
        line
    }
}

/// When the loop last started an iteration, readable from any thread.
#[derive(Debug)]
pub struct Heartbeat {
    base: Instant,
    /// Milliseconds since `base`.
    last: AtomicU64,
}

impl Heartbeat {
    fn new() -> Heartbeat {
        Heartbeat {
            base: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn beat(&self) {
        let ms = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.base
            .elapsed()
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// The loop's reporting handle.
pub struct Service {
    notifier: Notifier,
    pub metrics: Metrics,
    state: watch::Sender<State>,
    heartbeat: Arc<Heartbeat>,
}

/// The read side, for the HTTP endpoints.
#[derive(Clone)]
pub struct Monitor {
    pub state: watch::Receiver<State>,
    pub heartbeat: Arc<Heartbeat>,
    pub metrics: Metrics,
    /// How long the loop may go without answering or ticking before it counts as stalled.
    pub liveness_period: Duration,
}

impl Service {
    pub fn new(notifier: Notifier, metrics: Metrics) -> Service {
        Service {
            notifier,
            metrics,
            state: watch::Sender::new(State::default()),
            heartbeat: Arc::new(Heartbeat::new()),
        }
    }

    /// Reports to no one but its metrics and monitors (a loop run in-process by tests).
    pub fn detached() -> Service {
        Service::new(Notifier::none(), Metrics::new())
    }

    pub fn monitor(&self) -> Monitor {
        Monitor {
            state: self.state.subscribe(),
            heartbeat: Arc::clone(&self.heartbeat),
            metrics: self.metrics.clone(),
            liveness_period: self
                .notifier
                .watchdog_timeout()
                .unwrap_or(DEFAULT_LIVENESS_PERIOD),
        }
    }

    /// A timer for watchdog pings, when systemd wants them; the loop pings when it fires.
    pub fn watchdog(&self) -> Option<tokio::time::Interval> {
        let every = self.notifier.watchdog_interval()?;
        let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Some(interval)
    }

    pub fn watchdog_ping(&self) {
        self.notifier.watchdog_ping();
    }

    /// The loop is at the top of an iteration (or answered a liveness question).
    pub fn beat(&self) {
        self.heartbeat.beat();
    }

    /// Configuration loaded, store open: READY=1.
    pub fn ready(&self, jobs: usize, config: &std::path::Path) {
        self.metrics.jobs(jobs);
        self.state.send_modify(|s| {
            s.running = true;
            s.jobs = jobs;
            s.config = config.display().to_string();
        });
        self.notifier.ready(&self.state.borrow().status_line());
    }

    /// This instance leads with `epoch`, or stands by.
    pub fn role(&self, epoch: Option<i64>) {
        self.metrics.role(epoch);
        let changed = self.state.send_if_modified(|s| {
            let changed = s.epoch != epoch;
            s.epoch = epoch;
            changed
        });
        if changed && self.state.borrow().running {
            self.notifier.status(&self.state.borrow().status_line());
        }
    }

    pub fn reloading(&self) {
        self.notifier.reloading();
    }

    /// A reload ended: with the new job count, or with the errors that kept the old one.
    pub fn reloaded(&self, result: Result<usize, Vec<String>>, at: jiff::Timestamp) {
        let ok = result.is_ok();
        self.metrics.reloaded(ok, *result.as_ref().unwrap_or(&0));
        self.state.send_modify(|s| {
            if let Ok(jobs) = result {
                s.jobs = jobs;
            }
            s.last_reload = Some(ReloadReport {
                ok,
                at: at.to_string(),
                errors: result.err().unwrap_or_default(),
            });
        });
        self.notifier.ready(&self.state.borrow().status_line());
    }

    /// The daemon stops: STOPPING=1; not ready any more.
    pub fn stopping(&self) {
        self.state.send_modify(|s| s.running = false);
        self.notifier
            .stopping("stopping: handing over the lease, draining running jobs");
    }
}
