//! Running one job: [`Executor::start`] spawns it with the documented environment in its own
//! process group and starts pumping stdout/stderr into the log; [`RunHandle::wait`] sees it
//! to its end: timeout and stop requests (SIGTERM to the group, `kill_grace`, SIGKILL),
//! leftover processes of the group cleaned up, output drained; [`Ended::read_result`] then
//! reads the result file.

mod output;
mod process;
mod shell;
mod spawn;

use std::collections::HashSet;
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use nix::sys::signal::Signal;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::config::{Job, JobName};
use crate::logging::{LineFormat, LogSink};
use crate::run::{RunId, RunOutcome, StopCause, Stream, Trigger};

pub use output::{FollowEvent, MAX_LINE, RunOutput, Splitter, Tail};
pub(crate) use process::pidfd_open;
pub use process::{DEFAULT_PATH, stop_group_of};
pub use spawn::{close_inherited_on_exec, raise_open_file_limit};

/// What a job writes to `$SCHEDCTL_RESULT` is kept up to this size.
pub const RESULT_LIMIT: usize = 64 * 1024;

/// Everything needed to start one run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    pub job: Arc<Job>,
    pub run_id: RunId,
    pub scheduled_for: Timestamp,
    pub trigger: Trigger,
    pub attempt: u32,
    /// Where its output lines go besides the log: the kept tail and any followers.
    pub output: Arc<RunOutput>,
}

/// How a run ended, with what it left behind.
#[derive(Clone, Debug)]
pub struct Ended {
    pub outcome: RunOutcome,
    pub ended_at: Timestamp,
    pub output_tail: Vec<u8>,
    /// Its `$SCHEDCTL_RESULT` file, not read yet: see [`Ended::read_result`].
    pub result_file: Option<PathBuf>,
}

impl Ended {
    /// What the job wrote to `$SCHEDCTL_RESULT`, if anything (the file is removed). Left to
    /// whoever records the end, so that the runs of a held burst look for their files (a
    /// lookup of a name that is usually not there) after the burst's last start.
    pub fn read_result(&mut self) -> Option<Vec<u8>> {
        read_result(&self.result_file.take()?)
    }
}

/// Asks a run to stop: set once, seen by the run at any point of its life.
pub type StopRequest = watch::Receiver<Option<StopCause>>;

/// Starts runs. The real one starts processes; tests substitute their own.
pub trait Executor: Send + Sync + 'static {
    type Handle: RunHandle;
    /// Start `spec` and log `run started` before any of its output; the error is the
    /// reason it could not start (missing program, bad working directory...), recorded as
    /// a failed run.
    fn start(&self, spec: &RunSpec) -> Result<Self::Handle, String>;

    /// Get ready to start these jobs (soonest due first), off the caller's thread, so that
    /// their first start costs no more than the next: the real runner makes their directories.
    fn prepare(&self, _jobs: Vec<Arc<Job>>) {}

    /// Remove what runs other than `active` left behind: the real runner removes their
    /// `$SCHEDCTL_RESULT` files (of runs whose daemon died before reading them, or of a
    /// state database that was replaced), so that no start needs to.
    fn forget_leftovers(&self, _active: &HashSet<RunId>) {}
}

/// A started run.
pub trait RunHandle: Send + 'static {
    fn pid(&self) -> u32;
    /// The process's start time on this host (see `procinfo`), to recognise it later.
    fn pid_start(&self) -> Option<i64>;
    /// Follow the run to its end.
    fn wait(self, stop: StopRequest) -> impl Future<Output = Ended> + Send;
}

/// The environment every run starts from, before the job's `env` and the `SCHEDCTL_*` variables.
#[derive(Clone, Debug)]
pub struct BaseEnv(pub Vec<(String, String)>);

impl BaseEnv {
    /// `PATH`, `HOME`, `USER`, `LOGNAME` (of the daemon's user) and `SHELL=/bin/sh`, as cron gives.
    pub fn for_current_user() -> BaseEnv {
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten();
        let (name, home) = match &user {
            Some(u) => (u.name.clone(), u.dir.display().to_string()),
            None => (String::new(), "/".to_owned()),
        };
        let mut vars = vec![
            ("PATH".to_owned(), DEFAULT_PATH.to_owned()),
            ("HOME".to_owned(), home),
            ("SHELL".to_owned(), "/bin/sh".to_owned()),
        ];
        if !name.is_empty() {
            vars.push(("USER".to_owned(), name.clone()));
            vars.push(("LOGNAME".to_owned(), name));
        }
        BaseEnv(vars)
    }
}

/// The executor that starts real processes.
pub struct Runner<C> {
    clock: C,
    sink: LogSink,
    base_env: BaseEnv,
    /// Holds `jobs/NAME/` (SCHEDCTL_STATE_DIR) and `results/RUN_ID` (SCHEDCTL_RESULT).
    state_dir: PathBuf,
    /// Jobs whose directories exist (made ahead by `prepare`, or on a job's first run).
    ready: Arc<Mutex<HashSet<JobName>>>,
}

impl<C: Clock> Runner<C> {
    pub fn new(clock: C, sink: LogSink, base_env: BaseEnv, state_dir: PathBuf) -> Self {
        Runner {
            clock,
            sink,
            base_env,
            state_dir,
            ready: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// `jobs/NAME/` and `results/` exist, for the job's SCHEDCTL_STATE_DIR and
    /// SCHEDCTL_RESULT. Once made (ahead, or at the first run), a start costs a set lookup.
    fn make_dirs(&self, job: &JobName) -> Result<(), String> {
        make_dirs(&self.state_dir, &self.ready, job)
    }

    fn job_dir(&self, job: &str) -> PathBuf {
        self.state_dir.join("jobs").join(job)
    }

    fn result_path(&self, run_id: RunId) -> PathBuf {
        self.state_dir.join("results").join(run_id.to_string())
    }

    /// The environment of one run: base, then the job's `env`, then `SCHEDCTL_*`.
    pub fn environment(&self, spec: &RunSpec) -> Vec<(String, String)> {
        let mut env = self.base_env.0.clone();
        let mut set = |key: &str, value: String| {
            env.retain(|(k, _)| k != key);
            env.push((key.to_owned(), value));
        };
        for (k, v) in &spec.job.settings.env {
            set(k, v.clone());
        }
        set("SCHEDCTL_JOB", spec.job.name.to_string());
        set("SCHEDCTL_RUN_ID", spec.run_id.to_string());
        let local = spec
            .scheduled_for
            .to_zoned_datetime(spec.job.zone.tz.clone());
        set(
            "SCHEDCTL_SCHEDULED_FOR",
            local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string(),
        );
        set("SCHEDCTL_ATTEMPT", spec.attempt.to_string());
        set("SCHEDCTL_TRIGGER", spec.trigger.as_str().to_owned());
        set(
            "SCHEDCTL_STATE_DIR",
            self.job_dir(&spec.job.name).display().to_string(),
        );
        set(
            "SCHEDCTL_RESULT",
            self.result_path(spec.run_id).display().to_string(),
        );
        env
    }
}

/// See [`Runner::make_dirs`]; shared with the thread that makes them ahead of time.
fn make_dirs(
    state_dir: &std::path::Path,
    ready: &Mutex<HashSet<JobName>>,
    job: &JobName,
) -> Result<(), String> {
    if ready
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(job)
    {
        return Ok(());
    }
    for dir in [
        state_dir.join("jobs").join(&**job),
        state_dir.join("results"),
    ] {
        std::fs::create_dir_all(&dir).map_err(|e| {
            format!(
                "cannot create `{}` (for SCHEDCTL_STATE_DIR/SCHEDCTL_RESULT): {e}",
                dir.display()
            )
        })?;
    }
    ready
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(Arc::clone(job));
    Ok(())
}

impl<C: Clock> Executor for Runner<C> {
    type Handle = Running<C>;

    fn forget_leftovers(&self, active: &HashSet<RunId>) {
        let Ok(entries) = std::fs::read_dir(self.state_dir.join("results")) else {
            return;
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let run = entry.file_name().to_str().and_then(|n| n.parse().ok());
            if run.is_some_and(|id| !active.contains(&RunId(id)))
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "removed result files of runs no longer active");
        }
    }

    /// Make the jobs' directories on a thread of its own. A new directory costs ~25 us of
    /// file system work, serialised on the parent directory: 1,000 jobs due at one instant
    /// for the first time started a quarter slower when their starts made them.
    fn prepare(&self, jobs: Vec<Arc<Job>>) {
        let missing: Vec<JobName> = {
            let ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            jobs.iter()
                .filter(|j| !ready.contains(&j.name))
                .map(|j| Arc::clone(&j.name))
                .collect()
        };
        if missing.is_empty() {
            return;
        }
        let (state_dir, ready) = (self.state_dir.clone(), Arc::clone(&self.ready));
        let made = std::thread::Builder::new()
            .name("schedctl-prepare".into())
            .spawn(move || {
                for job in &missing {
                    // A failure is reported by the run that needs the directory.
                    let _ = make_dirs(&state_dir, &ready, job);
                }
                tracing::debug!(jobs = missing.len(), "made the jobs' directories ahead");
            });
        if let Err(err) = made {
            tracing::debug!("cannot start a thread to make job directories: {err}");
        }
    }

    fn start(&self, spec: &RunSpec) -> Result<Running<C>, String> {
        let job = &spec.job;
        self.make_dirs(&job.name)?;
        // No result file is left for this run id (see `forget_leftovers`).
        let result_path = self.result_path(spec.run_id);
        let env = self.environment(spec);
        let before = crate::procinfo::boot_ticks();
        let mut process = process::spawn(&job.command, env, job.settings.workdir.as_deref())?;
        // Logged before the output pumps start, so that it precedes the run's first line.
        tracing::info!(
            job = &*job.name,
            run_id = spec.run_id.0,
            pid = process.pid(),
            trigger = spec.trigger.as_str(),
            attempt = spec.attempt,
            scheduled_for = %spec.scheduled_for,
            "run started"
        );
        let pipes = [
            (process.stdout.take(), Stream::Stdout),
            (process.stderr.take(), Stream::Stderr),
        ]
        .into_iter()
        .filter_map(|(pipe, stream)| pipe.map(|p| (p, stream)))
        .collect();
        Ok(Running {
            clock: self.clock.clone(),
            pid_start: crate::procinfo::child_start(process.pid(), before),
            process,
            pipes,
            sink: self.sink.clone(),
            output: Arc::clone(&spec.output),
            result_path,
            job: Arc::clone(job),
            run_id: spec.run_id,
        })
    }
}

/// A run of a real process.
pub struct Running<C> {
    clock: C,
    process: process::Process,
    pid_start: Option<i64>,
    /// Its stdout and stderr, read by [`RunHandle::wait`] in the run's own task.
    pipes: Vec<(tokio::net::unix::pipe::Receiver, Stream)>,
    sink: LogSink,
    output: Arc<RunOutput>,
    result_path: PathBuf,
    job: Arc<Job>,
    run_id: RunId,
}

impl<C: Clock> RunHandle for Running<C> {
    fn pid(&self) -> u32 {
        self.process.pid()
    }

    fn pid_start(&self) -> Option<i64> {
        self.pid_start
    }

    /// The output is read concurrently with the rest, in this same task: a run is one
    /// task, not three.
    async fn wait(mut self, stop: StopRequest) -> Ended {
        let (reaped_tx, reaped_rx) = tokio::sync::oneshot::channel();
        let read = read_output(
            std::mem::take(&mut self.pipes),
            self.sink.clone(),
            Arc::clone(&self.output),
            (Arc::clone(&self.job.name), self.run_id),
            reaped_rx,
        );
        let ((), (outcome, ended_at)) = tokio::join!(read, self.follow(stop, reaped_tx));
        Ended {
            outcome,
            ended_at,
            output_tail: self.output.tail(),
            result_file: Some(self.result_path),
        }
    }
}

impl<C: Clock> Running<C> {
    /// Follow the process to its end: its exit, timeout or a stop request; leftovers of its
    /// group are stopped. `reaped` is told once that is done.
    async fn follow(
        &mut self,
        mut stop: StopRequest,
        reaped: tokio::sync::oneshot::Sender<()>,
    ) -> (RunOutcome, Timestamp) {
        let (job, run_id, pid) = (&*self.job.name, self.run_id, self.process.pid());
        let timeout = async {
            match self.job.settings.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let reason = tokio::select! {
            () = self.process.exited() => None,
            () = timeout => Some(Stop::Timeout),
            Ok(cause) = stop.wait_for(Option::is_some) => Some(Stop::Requested(cause.unwrap_or(StopCause::Shutdown))),
        };
        if let Some(why) = &reason {
            tracing::warn!(
                job,
                run_id = run_id.0,
                pid,
                "{}; sending SIGTERM to its process group",
                why.describe(self.job.settings.timeout)
            );
            terminate(&self.process, self.job.settings.kill_grace, job, run_id).await;
        }
        // The leader has exited but is not reaped, so the group id is still ours: ask
        // leftovers (background processes of the job) to go before reaping.
        self.process.signal_group(Signal::SIGTERM);
        let end = self.process.reap();
        let ended_at = self.clock.now();
        if self.process.group_has_members() {
            tracing::warn!(
                job,
                run_id = run_id.0,
                "the job left processes behind in its process group; stopping them"
            );
            stop_leftovers(&self.process, self.job.settings.kill_grace).await;
        }
        let _ = reaped.send(());
        let outcome = match reason {
            None => RunOutcome::Finished(end),
            Some(Stop::Timeout) => RunOutcome::TimedOut {
                after: self.job.settings.timeout.unwrap_or_default(),
                end,
            },
            Some(Stop::Requested(cause)) => RunOutcome::Stopped { cause, end },
        };
        (outcome, ended_at)
    }
}

/// Read the run's stdout and stderr to their ends, logging every line. A process outside
/// the group (one that called setsid) may hold the pipes open: once the group is gone
/// (`reaped`), stop reading after a while rather than hang the run.
async fn read_output(
    pipes: Vec<(tokio::net::unix::pipe::Receiver, Stream)>,
    sink: LogSink,
    output: Arc<RunOutput>,
    (job, run_id): (JobName, RunId),
    reaped: tokio::sync::oneshot::Receiver<()>,
) {
    const DRAIN_LIMIT: Duration = Duration::from_secs(2);
    let mut pipes = pipes.into_iter();
    let pump = |pipe: Option<(tokio::net::unix::pipe::Receiver, Stream)>| {
        let (sink, output, job) = (sink.clone(), Arc::clone(&output), Arc::clone(&job));
        async move {
            if let Some((pipe, stream)) = pipe {
                let style = sink.style();
                let format = move || LineFormat::new(style, &job, run_id, stream);
                output::pump(pipe, stream, format, sink, output).await;
            }
        }
    };
    let (first, second) = (pipes.next(), pipes.next());
    let limit = async {
        // Dropped unsent only if the run's task is gone, when nothing waits for this either.
        let _ = reaped.await;
        tokio::time::sleep(DRAIN_LIMIT).await;
    };
    // The pumps' futures are made inside the join: made outside and moved in, each would
    // take its space twice in the run's task (~1.7 KB of its ~5 KB).
    tokio::select! {
        _ = async { tokio::join!(pump(first), pump(second)) } => {}
        () = limit => tracing::warn!(
            job = &*job,
            run_id = run_id.0,
            "output still held open by a process outside the job's process group; no longer reading it"
        ),
    }
}

/// What the job wrote to `$SCHEDCTL_RESULT` (at most [`RESULT_LIMIT`] bytes); the file is removed.
fn read_result(path: &std::path::Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut result = Vec::new();
    let _ = file.take(RESULT_LIMIT as u64).read_to_end(&mut result);
    let _ = std::fs::remove_file(path);
    Some(result)
}

enum Stop {
    Timeout,
    Requested(StopCause),
}

impl Stop {
    fn describe(&self, timeout: Option<Duration>) -> String {
        match self {
            Stop::Timeout => format!(
                "run timed out after {}",
                humantime::format_duration(timeout.unwrap_or_default())
            ),
            Stop::Requested(cause) => format!("stopping run ({})", cause.as_str()),
        }
    }
}

/// SIGTERM to the group, then SIGKILL if the leader is still there after `grace`.
async fn terminate(process: &process::Process, grace: Duration, job: &str, run_id: RunId) {
    process.signal_group(Signal::SIGTERM);
    if tokio::time::timeout(grace, process.exited()).await.is_err() {
        tracing::warn!(
            job,
            run_id = run_id.0,
            "run still alive {} after SIGTERM; sending SIGKILL",
            humantime::format_duration(grace)
        );
        process.signal_group(Signal::SIGKILL);
        process.exited().await;
    }
}

/// After the leader was reaped: wait up to `grace` for the group's other members to
/// leave (they got SIGTERM already), then SIGKILL them. There is no notification for a
/// group becoming empty, so this rare path checks with a short backoff.
async fn stop_leftovers(process: &process::Process, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    let mut pause = Duration::from_millis(5);
    while process.group_has_members() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(200));
    }
    process.signal_group(Signal::SIGKILL);
}
