//! Test fixtures: a temporary directory with a job file, the binary run to completion,
//! and a daemon whose log is captured line by line and can be waited on.

pub mod fake;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How long any wait may take before the test fails (a failsafe, not a pacing sleep).
pub const PATIENCE: Duration = Duration::from_secs(30);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_schedctl")
}

/// A directory holding a job file, built fluently.
pub struct TestEnv {
    dir: tempfile::TempDir,
    daemon_keys: Vec<(String, String)>,
    jobs: String,
}

impl TestEnv {
    pub fn new() -> Self {
        TestEnv {
            dir: tempfile::tempdir().expect("tempdir"),
            daemon_keys: vec![
                ("timezone".to_owned(), "\"UTC\"".to_owned()),
                ("shutdown_grace".to_owned(), "\"10s\"".to_owned()),
            ],
            jobs: String::new(),
        }
    }

    /// Set a `[daemon]` key (TOML value as written).
    pub fn daemon_key(mut self, key: &str, value: &str) -> Self {
        self.daemon_keys.retain(|(k, _)| k != key);
        self.daemon_keys.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Add a job with a shell command.
    pub fn job(self, name: &str, schedule: &str, command: &str) -> Self {
        self.job_with(name, schedule, command, &[])
    }

    /// Add a job with extra keys (TOML values as written).
    pub fn job_with(
        mut self,
        name: &str,
        schedule: &str,
        command: &str,
        extra: &[(&str, &str)],
    ) -> Self {
        self.jobs.push_str(&format!(
            "\n[jobs.{name}]\nschedule = {}\ncommand = {}\n",
            toml_str(schedule),
            toml_str(command)
        ));
        for (k, v) in extra {
            self.jobs.push_str(&format!("{k} = {v}\n"));
        }
        self
    }

    /// Write the job file; returns self for chaining into `daemon()` or `run()`.
    pub fn write(self) -> Self {
        let mut text = String::from("[daemon]\n");
        for (k, v) in &self.daemon_keys {
            text.push_str(&format!("{k} = {v}\n"));
        }
        text.push_str(&self.jobs);
        std::fs::write(self.config(), text).expect("write jobs.toml");
        self
    }

    /// Replace the job file with exactly `text`.
    pub fn write_raw(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write jobs.toml");
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("jobs.toml")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run `schedctl -c jobs.toml ARGS...` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(bin())
            .arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir())
            .output()
            .expect("run schedctl");
        Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Start `schedctl -c jobs.toml ARGS...` in the background, its output piped; it is
    /// killed if the test ends (or fails) before collecting it.
    pub fn start(&self, args: &[&str]) -> Running {
        let child = Command::new(bin())
            .arg("--config")
            .arg(self.config())
            .args(args)
            .current_dir(self.dir())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start schedctl");
        Running(Some(child))
    }

    /// Start `schedctl daemon` on this directory's job file.
    pub fn daemon(&self) -> Daemon {
        Daemon::start(self.dir(), &self.config(), &[], &[], None)
    }

    pub fn daemon_with_env(&self, env: &[(&str, &str)]) -> Daemon {
        Daemon::start(self.dir(), &self.config(), env, &[], None)
    }

    /// `schedctl daemon ARGS...`
    pub fn daemon_with_args(&self, args: &[&str]) -> Daemon {
        Daemon::start(self.dir(), &self.config(), &[], args, None)
    }

    /// The daemon started with a soft limit of `soft` open files (the hard limit as is).
    pub fn daemon_with_open_files(&self, soft: u64) -> Daemon {
        Daemon::start(self.dir(), &self.config(), &[], &[], Some(soft))
    }
}

pub fn toml_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[derive(Debug)]
pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// The lines a daemon wrote to stdout so far, and whether it closed stdout.
#[derive(Default)]
struct Log {
    lines: Vec<String>,
    closed: bool,
}

pub struct Daemon {
    child: Child,
    log: Arc<(Mutex<Log>, Condvar)>,
    stderr: Arc<Mutex<String>>,
}

impl Daemon {
    fn start(
        dir: &Path,
        config: &Path,
        env: &[(&str, &str)],
        args: &[&str],
        open_files: Option<u64>,
    ) -> Daemon {
        let mut command = Command::new(bin());
        command
            .arg("--config")
            .arg(config)
            .arg("daemon")
            .args(args)
            .current_dir(dir)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(soft) = open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only getrlimit and setrlimit, async-signal-safe, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    limit.rlim_cur = soft.min(limit.rlim_max);
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("start the daemon");
        let log = Arc::new((Mutex::new(Log::default()), Condvar::new()));
        let stdout = child.stdout.take().expect("stdout");
        let writer = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                let n = reader.read_until(b'\n', &mut buf).unwrap_or(0);
                let (lock, cond) = &*writer;
                let mut log = lock.lock().expect("log lock");
                if n == 0 {
                    log.closed = true;
                    cond.notify_all();
                    return;
                }
                let line = String::from_utf8(buf.clone()).expect("the daemon's log is valid UTF-8");
                log.lines.push(line.trim_end_matches('\n').to_owned());
                cond.notify_all();
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().expect("stderr");
        let err_buf = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err_pipe.read_to_string(&mut s);
            err_buf
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&s);
        });
        let daemon = Daemon { child, log, stderr };
        daemon.wait_for_line(|l| l.contains("scheduler started"));
        daemon
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Wait until `pred` holds for the lines so far; fail the test with the log otherwise.
    pub fn wait_until(&self, what: &str, pred: impl Fn(&[String]) -> bool) {
        self.wait_log(what, |log| pred(&log.lines));
    }

    fn wait_log(&self, what: &str, pred: impl Fn(&Log) -> bool) {
        let (lock, cond) = &*self.log;
        let deadline = Instant::now() + PATIENCE;
        let mut log = lock.lock().expect("log lock");
        while !pred(&log) {
            let now = Instant::now();
            if now >= deadline || log.closed {
                let reason = if log.closed {
                    "the daemon closed its log"
                } else {
                    "timed out"
                };
                panic!(
                    "{reason} waiting for {what}; log so far:\n{}\nstderr:\n{}",
                    log.lines.join("\n"),
                    self.stderr
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .as_str()
                );
            }
            log = cond.wait_timeout(log, deadline - now).expect("log lock").0;
        }
    }

    /// Wait for a line matching `pred` and return it (the first such line).
    pub fn wait_for_line(&self, pred: impl Fn(&str) -> bool) -> String {
        self.wait_for_matching("a matching log line", pred)
    }

    /// Wait for a line containing every one of `parts`.
    pub fn wait_for(&self, parts: &[&str]) -> String {
        let what = format!("a log line containing {parts:?}");
        self.wait_for_matching(&what, |l| parts.iter().all(|p| l.contains(p)))
    }

    /// Scans each line once, however long the log grows while waiting.
    fn wait_for_matching(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let checked = std::cell::Cell::new(0);
        let found = std::cell::RefCell::new(None);
        self.wait_log(what, |log| {
            if let Some(line) = log.lines[checked.get()..].iter().find(|l| pred(l)) {
                *found.borrow_mut() = Some(line.clone());
                return true;
            }
            checked.set(log.lines.len());
            false
        });
        found.into_inner().expect("found")
    }

    pub fn lines(&self) -> Vec<String> {
        self.log.0.lock().expect("log lock").lines.clone()
    }

    pub fn count(&self, parts: &[&str]) -> usize {
        self.lines()
            .iter()
            .filter(|l| parts.iter().all(|p| l.contains(p)))
            .count()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig)
            .expect("signal the daemon");
    }

    /// Wait for the daemon to exit (its stdout closes when it does); returns its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        self.wait_log("the daemon to exit", |log| log.closed);
        self.child.wait().expect("wait for the daemon").code()
    }

    /// SIGTERM, then wait for the exit.
    pub fn stop(&mut self) -> Option<i32> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit()
    }
}

/// A command started with [`TestEnv::start`].
pub struct Running(Option<Child>);

impl Running {
    /// Wait for it to end and collect its output.
    pub fn finish(mut self) -> std::process::Output {
        self.0
            .take()
            .expect("not finished yet")
            .wait_with_output()
            .expect("wait for schedctl")
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Wait for process `pid` (not necessarily our child) to exit, through a pidfd.
pub fn wait_process_exit(pid: i32) {
    // SAFETY: plain syscall; the returned descriptor is closed below.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as i32;
    if fd < 0 {
        return; // already gone
    }
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut pfd, 1, PATIENCE.as_millis() as i32) };
    // SAFETY: `fd` is ours.
    unsafe { libc::close(fd) };
    assert_eq!(ready, 1, "process {pid} did not exit within {PATIENCE:?}");
}

/// Whether a process with this pid exists (and is not a zombie).
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|rest| !rest.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// `GET path` (or another method) on `addr` over HTTP/1.1 with `Connection: close`: the
/// status code and the body.
pub fn http(addr: &str, method: &str, path: &str) -> (u16, String) {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the daemon's HTTP");
    stream
        .set_read_timeout(Some(PATIENCE))
        .expect("read timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let code = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status code in {head:?}"));
    (code, body.to_owned())
}

pub fn get(addr: &str, path: &str) -> (u16, String) {
    http(addr, "GET", path)
}

impl Daemon {
    /// The address of the daemon's HTTP endpoints, from its log.
    pub fn http_addr(&self) -> String {
        let line = self.wait_for(&["serving /healthz, /readyz and /metrics"]);
        line.split_once("addr=")
            .map(|(_, a)| a.split(' ').next().unwrap_or(a).to_owned())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
    }
}

/// The value of the sample `name` (with its labels, as written) in a /metrics text.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}
