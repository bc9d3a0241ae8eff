//! The daemon's metrics, in the Prometheus text format (`prometheus-client`): runs by job
//! and outcome, run durations, fire lag, running and skipped runs, leadership, reloads and
//! each job's last success. Updating one is an atomic add or a short lock; nothing here
//! runs on its own.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// The `Content-Type` of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    job: Arc<str>,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    job: Arc<str>,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

type DurationFamily = Family<JobLabel, Histogram, fn() -> Histogram>;

/// Handles to every metric; cheap to clone, shared by the loop, the runs and `/metrics`.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    runs: Family<OutcomeLabels, Counter>,
    duration: DurationFamily,
    fire_lag: Histogram,
    running: Gauge,
    skipped: Family<ReasonLabels, Counter>,
    leader: Gauge,
    epoch: Gauge,
    reloads: Family<ResultLabel, Counter>,
    last_reload_ok: Gauge,
    jobs: Gauge,
    last_success: Family<JobLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Arc::default(),
            runs: Family::default(),
            duration: Family::new_with_constructor(|| {
                // 10 ms .. about 45 min.
                Histogram::new(exponential_buckets(0.01, 4.0, 10))
            }),
            // 0.5 ms .. about 2 min.
            fire_lag: Histogram::new(exponential_buckets(0.0005, 4.0, 10)),
            running: Gauge::default(),
            skipped: Family::default(),
            leader: Gauge::default(),
            epoch: Gauge::default(),
            reloads: Family::default(),
            last_reload_ok: Gauge::default(),
            jobs: Gauge::default(),
            last_success: Family::default(),
        };
        m.last_reload_ok.set(1);
        // Present at 0 before the first reload, so that rates and alerts work from the start.
        for result in ["success", "failure"] {
            let _ = m.reloads.get_or_create(&ResultLabel { result });
        }
        let mut r = Registry::with_prefix("schedctl");
        r.register(
            "runs",
            "Finished runs by job and outcome (succeeded, failed, timed_out, cancelled, abandoned)",
            m.runs.clone(),
        );
        r.register_with_unit(
            "run_duration",
            "Run duration, from start to end, by job",
            Unit::Seconds,
            m.duration.clone(),
        );
        r.register_with_unit(
            "fire_lag",
            "Start of a scheduled run minus its scheduled instant",
            Unit::Seconds,
            m.fire_lag.clone(),
        );
        r.register("running_runs", "Runs running now", m.running.clone());
        r.register(
            "skipped_runs",
            "Runs not started, by job and reason (overlap, paused)",
            m.skipped.clone(),
        );
        r.register("leader", "1 while this instance leads", m.leader.clone());
        r.register(
            "lease_epoch",
            "The lease epoch this instance leads with (0 as standby)",
            m.epoch.clone(),
        );
        r.register(
            "config_reloads",
            "Reloads of the job file by result (success, failure)",
            m.reloads.clone(),
        );
        r.register(
            "config_last_reload_successful",
            "0 when the last reload of the job file failed (the previous configuration runs)",
            m.last_reload_ok.clone(),
        );
        r.register("jobs", "Jobs in the running configuration", m.jobs.clone());
        r.register_with_unit(
            "last_success_timestamp",
            "When each job's last successful run ended (Unix time)",
            Unit::Seconds,
            m.last_success.clone(),
        );
        m.registry = Arc::new(r);
        m
    }

    /// A run started `lag` after its scheduled instant (None: not a scheduled run).
    pub fn run_started(&self, lag: Option<Duration>) {
        self.running.inc();
        if let Some(lag) = lag {
            self.fire_lag.observe(lag.as_secs_f64());
        }
    }

    /// A run ended: `ran` is its duration if it started at all.
    pub fn run_finished(&self, job: &Arc<str>, outcome: &'static str, ran: Option<Duration>) {
        let labels = OutcomeLabels {
            job: Arc::clone(job),
            outcome,
        };
        self.runs.get_or_create(&labels).inc();
        if let Some(ran) = ran {
            self.running.dec();
            let job = JobLabel {
                job: Arc::clone(job),
            };
            self.duration.get_or_create(&job).observe(ran.as_secs_f64());
        }
    }

    /// A job's run succeeded, ending at `ended` (Unix seconds).
    pub fn run_succeeded(&self, job: &Arc<str>, ended: f64) {
        let job = JobLabel {
            job: Arc::clone(job),
        };
        self.last_success.get_or_create(&job).set(ended);
    }

    /// A run of an earlier leader was found lost and marked abandoned.
    pub fn run_abandoned(&self, job: &str) {
        let labels = OutcomeLabels {
            job: job.into(),
            outcome: "abandoned",
        };
        self.runs.get_or_create(&labels).inc();
    }

    pub fn run_skipped(&self, job: &Arc<str>, reason: &'static str) {
        let labels = ReasonLabels {
            job: Arc::clone(job),
            reason,
        };
        self.skipped.get_or_create(&labels).inc();
    }

    /// This instance leads with `epoch`, or stands by (None).
    pub fn role(&self, epoch: Option<i64>) {
        self.leader.set(i64::from(epoch.is_some()));
        self.epoch.set(epoch.unwrap_or(0));
    }

    pub fn reloaded(&self, ok: bool, jobs: usize) {
        let result = if ok { "success" } else { "failure" };
        self.reloads.get_or_create(&ResultLabel { result }).inc();
        self.last_reload_ok.set(i64::from(ok));
        if ok {
            self.jobs(jobs);
        }
    }

    pub fn jobs(&self, jobs: usize) {
        self.jobs.set(i64::try_from(jobs).unwrap_or(i64::MAX));
    }

    /// Every metric in the Prometheus text format (version 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_named_and_counts() {
        let m = Metrics::new();
        let job: Arc<str> = "backup".into();
        m.run_started(Some(Duration::from_millis(3)));
        m.run_finished(&job, "succeeded", Some(Duration::from_secs(2)));
        m.run_succeeded(&job, 1_800_000_000.5);
        m.run_skipped(&job, "overlap");
        m.run_abandoned("backup");
        m.role(Some(7));
        m.reloaded(false, 0);
        let text = m.encode();
        for line in [
            "schedctl_runs_total{job=\"backup\",outcome=\"succeeded\"} 1",
            "schedctl_runs_total{job=\"backup\",outcome=\"abandoned\"} 1",
            "schedctl_run_duration_seconds_count{job=\"backup\"} 1",
            "schedctl_fire_lag_seconds_count 1",
            "schedctl_running_runs 0",
            "schedctl_skipped_runs_total{job=\"backup\",reason=\"overlap\"} 1",
            "schedctl_leader 1",
            "schedctl_lease_epoch 7",
            "schedctl_config_reloads_total{result=\"failure\"} 1",
            "schedctl_config_last_reload_successful 0",
            "schedctl_last_success_timestamp_seconds{job=\"backup\"} 1800000000.5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }
}
