//! The scheduling loop in-process: a fake wall clock, a real store (an SQLite file in a
//! temporary directory) and leadership, and an executor that records runs instead of
//! starting processes. A run ends when the test lets go of it; runs the test has not
//! taken (with `started` or `fired`) end successfully when `pass` moves the clock on.
//!
//! Waiting: after moving the fake clock, [`Harness::settle`] asks the loop for a snapshot
//! (which fires whatever is due first) until the runs it reports running are exactly the
//! runs the test holds. The store works on its own thread, so there is no event that says
//! "the loop has taken in a finished run"; the snapshot is re-asked every millisecond,
//! bounded by the usual patience.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use schedctl::clock::{Clock, FakeClock};
use schedctl::config;
use schedctl::leadership::Leadership;
use schedctl::run::RunId;
use schedctl::run::{RunOutcome, Termination};
use schedctl::runner::{Ended, Executor, RunHandle, RunSpec, StopRequest};
use schedctl::scheduler::Control;
use schedctl::scheduler::{Parts, Scheduler, Snapshot};
use schedctl::service::Service;
use schedctl::store::{Backend, Instance, RunRecord, Sqlite, Store};
use tokio::sync::{mpsc, oneshot};

/// A run the loop started. Dropping it ends the run successfully; `finish` ends it
/// with an outcome of the test's choice.
pub struct FakeRun {
    pub spec: RunSpec,
    /// The fake time when the loop started it.
    pub started_at: Timestamp,
    pub stop: StopRequest,
    done: Option<oneshot::Sender<RunOutcome>>,
    held: Arc<AtomicBool>,
}

impl Drop for FakeRun {
    fn drop(&mut self) {
        self.held.store(false, Ordering::SeqCst);
    }
}

impl FakeRun {
    pub fn job(&self) -> &str {
        &self.spec.job.name
    }

    pub fn finish(mut self, outcome: RunOutcome) {
        self.end(outcome);
    }

    fn end(&mut self, outcome: RunOutcome) {
        if let Some(done) = self.done.take() {
            let _ = done.send(outcome);
        }
        self.held.store(false, Ordering::SeqCst);
    }
}

pub struct FakeExecutor {
    clock: FakeClock,
    runs: mpsc::UnboundedSender<FakeRun>,
}

pub struct FakeHandle {
    clock: FakeClock,
    started_at: Timestamp,
    done: oneshot::Receiver<RunOutcome>,
    spec: RunSpec,
    runs: mpsc::UnboundedSender<FakeRun>,
}

impl Executor for FakeExecutor {
    type Handle = FakeHandle;

    fn start(&self, spec: &RunSpec) -> Result<FakeHandle, String> {
        let (done_tx, done) = oneshot::channel();
        // Announced when it waits, so the test also sees the stop request.
        let handle = FakeHandle {
            clock: self.clock.clone(),
            started_at: self.clock.now(),
            done,
            spec: spec.clone(),
            runs: self.runs.clone(),
        };
        drop(done_tx);
        Ok(handle)
    }
}

impl RunHandle for FakeHandle {
    fn pid(&self) -> u32 {
        std::process::id()
    }

    fn pid_start(&self) -> Option<i64> {
        None
    }

    async fn wait(self, mut stop: StopRequest) -> Ended {
        let (done_tx, done_rx) = oneshot::channel();
        drop(self.done);
        let _ = self.runs.send(FakeRun {
            spec: self.spec.clone(),
            started_at: self.started_at,
            stop: stop.clone(),
            done: Some(done_tx),
            held: Arc::new(AtomicBool::new(true)),
        });
        let outcome = tokio::select! {
            outcome = done_rx => outcome.unwrap_or(RunOutcome::Finished(Termination::Exit(0))),
            Ok(cause) = stop.wait_for(Option::is_some) => RunOutcome::Stopped {
                cause: cause.expect("a cause"),
                end: Termination::Signal(15),
            },
        };
        Ended {
            outcome,
            ended_at: self.clock.now(),
            output_tail: Vec::new(),
            result_file: None,
        }
    }
}

/// A running loop with its fake clock, its control channel and the runs it started.
pub struct Harness {
    pub clock: FakeClock,
    control: mpsc::Sender<Control>,
    runs: mpsc::UnboundedReceiver<FakeRun>,
    /// Runs announced and not yet handed to the test.
    pending: Vec<FakeRun>,
    /// Every run announced so far, and whether the test still holds it.
    held: HashMap<RunId, Arc<AtomicBool>>,
    /// The last snapshot taken by `settle`.
    pub last: Option<Snapshot>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    pub config_path: PathBuf,
    pub state: PathBuf,
    dir: tempfile::TempDir,
}

pub fn ts(text: &str) -> Timestamp {
    text.parse()
        .unwrap_or_else(|e| panic!("bad timestamp {text}: {e}"))
}

/// A made-up instance identity (the fake runs have no process of their own).
fn instance(name: &str, now: Timestamp) -> Instance {
    let me = schedctl::procinfo::current_instance(now);
    Instance {
        id: format!("{}:{name}", me.id),
        ..me
    }
}

impl Harness {
    /// Start the loop on job file `text` with the wall clock at `start` (RFC 3339), on a
    /// fresh state file.
    pub async fn start(text: &str, start: &str) -> Harness {
        let dir = tempfile::tempdir().expect("tempdir");
        Harness::start_in(dir, text, start).await
    }

    /// Start on `dir`, keeping whatever state file is there (a restart).
    pub async fn start_in(dir: tempfile::TempDir, text: &str, start: &str) -> Harness {
        let config_path = dir.path().join("jobs.toml");
        std::fs::write(&config_path, text).expect("write");
        let config = config::load(Path::new(&config_path)).unwrap_or_else(|e| panic!("{e}"));
        let state = config.daemon.state.clone();
        let clock = FakeClock::new(ts(start));
        let db = Sqlite::open(&state).expect("state");
        let store = Store::start(Box::new(db), clock.clone());
        let me = instance("fake", clock.now());
        let leadership = Leadership::start(
            store.clone(),
            me.clone(),
            config.daemon.lease_ttl,
            config.daemon.lock_file(),
            clock.clone(),
        );
        let (runs_tx, runs) = mpsc::unbounded_channel();
        let (control, control_rx) = mpsc::channel(8);
        let executor = FakeExecutor {
            clock: clock.clone(),
            runs: runs_tx,
        };
        let parts = Parts {
            clock: clock.clone(),
            executor,
            store,
            me,
            leadership,
            service: Service::detached(),
        };
        let task = tokio::spawn(Scheduler::new(parts, config).run(control_rx));
        let mut harness = Harness {
            clock,
            control,
            runs,
            pending: Vec::new(),
            held: HashMap::new(),
            last: None,
            task,
            config_path,
            state,
            dir,
        };
        harness.settle().await;
        harness
    }

    /// Wait until the loop leads, has fired everything due at the fake time, and runs
    /// exactly the runs the test holds.
    pub async fn settle(&mut self) {
        let deadline = Instant::now() + crate::support::PATIENCE;
        loop {
            while let Ok(run) = self.runs.try_recv() {
                self.held.insert(run.spec.run_id, Arc::clone(&run.held));
                self.pending.push(run);
            }
            let snapshot = self.snapshot().await;
            let running: BTreeSet<RunId> = snapshot.running.iter().map(|(id, _)| *id).collect();
            let held: BTreeSet<RunId> = self
                .held
                .iter()
                .filter(|(_, h)| h.load(Ordering::SeqCst))
                .map(|(id, _)| *id)
                .collect();
            let settled = snapshot.epoch.is_some() && running == held;
            self.last = Some(snapshot);
            if settled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the loop did not settle: {:?}, held {held:?}",
                self.last
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    pub async fn snapshot(&self) -> Snapshot {
        let (tx, rx) = oneshot::channel();
        self.control
            .send(Control::Snapshot(tx))
            .await
            .expect("the loop is running");
        rx.await.expect("a snapshot")
    }

    /// Move the wall clock to `to` and let the loop react.
    pub async fn set_time(&mut self, to: &str) {
        self.clock.set(ts(to));
        self.settle().await;
    }

    /// Move the wall clock forward step by step (as real time passes), letting the loop
    /// react after each step. Runs started by a step and not taken by the test end
    /// successfully before the next step; those of the last step keep running.
    pub async fn pass(&mut self, total: Duration, step: Duration) {
        let mut passed = Duration::ZERO;
        while passed < total {
            if self.pending.iter().any(|r| r.done.is_some()) {
                for run in &mut self.pending {
                    run.end(RunOutcome::Finished(Termination::Exit(0)));
                }
                self.settle().await;
            }
            self.clock.advance(step);
            passed += step;
            self.settle().await;
        }
    }

    /// Runs started since the last call.
    pub fn started(&mut self) -> Vec<FakeRun> {
        std::mem::take(&mut self.pending)
    }

    /// (job, scheduled instant) of the runs started since the last call; the runs end.
    pub fn fired(&mut self) -> Vec<(String, Timestamp)> {
        self.started()
            .into_iter()
            .map(|r| (r.job().to_owned(), r.spec.scheduled_for))
            .collect()
    }

    /// Send a control message and let the loop react (not for `Stop`: see `request_stop`).
    pub async fn send(&mut self, message: Control) {
        self.control
            .send(message)
            .await
            .expect("the loop is running");
        self.settle().await;
    }

    /// Ask the loop to stop, as SIGTERM does.
    pub async fn request_stop(&self) {
        self.control
            .send(Control::Stop)
            .await
            .expect("the loop is running");
    }

    pub fn rewrite_config(&self, text: &str) {
        std::fs::write(&self.config_path, text).expect("write");
    }

    /// Runs recorded in the state file, newest first.
    pub fn history(&self) -> Vec<RunRecord> {
        Sqlite::open(&self.state)
            .expect("state")
            .runs(None, 1000, false)
            .expect("runs")
    }

    /// Stop the loop (a clean shutdown) and return its directory, to start again on it.
    pub async fn shut_down(self) -> tempfile::TempDir {
        self.control.send(Control::Stop).await.expect("running");
        self.task.await.expect("loop task").expect("loop result");
        self.dir
    }

    /// Wait for the loop to return after a stop request.
    pub async fn join(self) {
        self.task.await.expect("loop task").expect("loop result");
    }
}
