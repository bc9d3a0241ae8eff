//! One child process in its own process group: spawning it with a clean environment,
//! noticing its exit through a pidfd (no SIGCHLD handler, no polling), signalling its whole
//! group while the unreaped leader still reserves the group id, and reaping it.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
use nix::unistd::Pid;
use tokio::io::unix::AsyncFd;
use tokio::net::unix::pipe;

use super::{shell, spawn};
use crate::config::CommandLine;
use crate::run::Termination;

pub struct Process {
    pid: Pid,
    pidfd: AsyncFd<OwnedFd>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    reaped: bool,
}

/// Start `command` in a new process group with exactly `env`, in `workdir`.
/// The error is a one-line reason for the run record.
pub fn spawn(
    command: &CommandLine,
    mut env: Vec<(String, String)>,
    workdir: Option<&Path>,
) -> Result<Process, String> {
    if let Some(dir) = workdir {
        check_workdir(dir)?;
    }
    let started = match command {
        CommandLine::Shell(script) => {
            // On failure `env` may carry the PWD the shell would export anyway.
            if let Some(process) = spawn_plain(script, &mut env, workdir) {
                return Ok(process);
            }
            let argv = ["/bin/sh", "-c", &**script];
            start(Path::new("/bin/sh"), &argv, &env, workdir)
        }
        CommandLine::Exec(argv) => {
            let program = resolve_program(&argv[0], path_var(&env), workdir)?;
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            start(&program, &argv, &env, workdir)
        }
    };
    started.map_err(|e| describe_spawn_error(command, &e))
}

/// A shell command that needs no shell, started directly with the environment the shell
/// would have given it; `None` leaves it to the shell (which also reports its errors).
fn spawn_plain(
    script: &str,
    env: &mut Vec<(String, String)>,
    workdir: Option<&Path>,
) -> Option<Process> {
    let words = shell::plain_words(script)?;
    // A path is not looked at first: if it cannot be run, the start below fails and the
    // shell, which gets the command then, says why.
    let program = if words[0].contains('/') {
        shell::in_workdir(Path::new(words[0]), workdir)
    } else {
        shell::find_program(words[0], path_var(env), workdir)?
    };
    let pwd = shell::pwd(env_var(env, "PWD"), workdir)?;
    env.retain(|(k, _)| k != "PWD");
    env.push(("PWD".to_owned(), pwd));
    // A start that fails here (say, a script without `#!`) is left to the shell.
    start(&program, &words, env, workdir).ok()
}

/// The value of `key` in a run's environment.
fn env_var<'a>(env: &'a [(String, String)], key: &str) -> Option<&'a str> {
    env.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The PATH programs are searched in: the run's, or [`DEFAULT_PATH`].
fn path_var(env: &[(String, String)]) -> &str {
    env_var(env, "PATH").unwrap_or(DEFAULT_PATH)
}

/// Start `program` with `argv` in its own process group with exactly `env`, stdin on
/// `/dev/null` and stdout/stderr piped, watched through a pidfd.
fn start(
    program: &Path,
    argv: &[&str],
    env: &[(String, String)],
    workdir: Option<&Path>,
) -> std::io::Result<Process> {
    let spawned = spawn::spawn(&spawn::Launch {
        program,
        argv,
        env,
        workdir,
        stdin: dev_null()?,
    })?;
    let pid = Pid::from_raw(spawned.pid);
    let watched = (|| {
        Ok::<_, std::io::Error>((
            crate::clock::readable_fd(spawned.pidfd)?,
            pipe_receiver(spawned.stdout)?,
            pipe_receiver(spawned.stderr)?,
        ))
    })();
    match watched {
        Ok((pidfd, stdout, stderr)) => Ok(Process {
            pid,
            pidfd,
            stdout: Some(stdout),
            stderr: Some(stderr),
            reaped: false,
        }),
        Err(e) => {
            // Not watched, so not ours to leave running.
            let _ = killpg(pid, Signal::SIGKILL);
            let _ = waitid(Id::Pid(pid), WaitPidFlag::WEXITED);
            Err(e)
        }
    }
}

/// A run's stdin: one `/dev/null` descriptor opened once (the child dup2s it to 0).
fn dev_null() -> std::io::Result<RawFd> {
    static DEV_NULL: std::sync::OnceLock<std::io::Result<std::fs::File>> =
        std::sync::OnceLock::new();
    match DEV_NULL.get_or_init(|| std::fs::File::open("/dev/null")) {
        Ok(file) => Ok(file.as_raw_fd()),
        Err(e) => Err(std::io::Error::new(e.kind(), format!("/dev/null: {e}"))),
    }
}

/// The read end of a pipe, already non-blocking, registered with the runtime.
fn pipe_receiver(fd: OwnedFd) -> std::io::Result<pipe::Receiver> {
    pipe::Receiver::from_owned_fd_unchecked(fd)
}

/// Stop the process group led by `pid`, a process that is not our child (a run whose daemon
/// died): SIGTERM, up to `grace` for the leader to exit, then SIGKILL to the group. Nothing
/// is sent unless `pid` is still the process that started at `pid_start`.
pub async fn stop_group_of(
    pid: u32,
    pid_start: Option<i64>,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let pid = Pid::from_raw(pid as i32);
    let fd = match pidfd_open(pid) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return Ok(()),
        Err(e) => return Err(e),
    };
    // Checked after opening the pidfd: from here on the pid cannot name another process.
    if !crate::procinfo::process_matches(pid.as_raw() as u32, pid_start) {
        return Ok(());
    }
    let exited = crate::clock::readable_fd(fd)?;
    killpg(pid, Signal::SIGTERM).map_err(std::io::Error::from)?;
    let _ = tokio::time::timeout(grace, exited.readable()).await;
    // Members of the group that outlived their leader keep the group id alive, so this
    // reaches them; with none left, the signal finds no group.
    let _ = killpg(pid, Signal::SIGKILL);
    Ok(())
}

pub(crate) fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall with an integer pid and no flags; on success it returns a new fd we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a freshly opened descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn check_workdir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(format!(
            "working directory `{}` is not a directory",
            dir.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "working directory `{}` does not exist",
            dir.display()
        )),
        Err(e) => Err(format!(
            "working directory `{}` is not accessible: {e}",
            dir.display()
        )),
    }
}

/// Find `program` the way execvp would, in the run's PATH, so that a missing program gets
/// a clear reason before anything starts. A path is left to the spawn.
fn resolve_program(
    program: &str,
    path_var: &str,
    workdir: Option<&Path>,
) -> Result<PathBuf, String> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    shell::find_program(program, path_var, workdir)
        .ok_or_else(|| format!("program `{program}` not found in PATH `{path_var}`"))
}

/// The PATH of a run when neither the job nor the base environment sets one.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn describe_spawn_error(command: &CommandLine, e: &std::io::Error) -> String {
    let program = match command {
        CommandLine::Shell(_) => "/bin/sh",
        CommandLine::Exec(argv) => argv[0].as_str(),
    };
    match e.kind() {
        std::io::ErrorKind::NotFound => format!("program `{program}` not found"),
        std::io::ErrorKind::PermissionDenied => {
            format!("program `{program}` is not executable: permission denied")
        }
        _ => format!("cannot start `{program}`: {e}"),
    }
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }

    /// Resolves when the group leader has exited (it stays a zombie until [`Process::reap`]).
    pub async fn exited(&self) {
        loop {
            match self.pidfd.readable().await {
                Ok(guard) => {
                    // A pidfd stays readable once the process exited: do not clear readiness.
                    drop(guard);
                    return;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        }
    }

    /// Send `signal` to every process of the group. Before the leader is reaped this is
    /// always safe: the zombie leader keeps the group id from being reused. Returns
    /// whether the group had any member.
    pub fn signal_group(&self, signal: Signal) -> bool {
        killpg(self.pid, signal).is_ok()
    }

    /// Whether processes other than the reaped leader are still alive in the group. Only
    /// meaningful after [`Process::reap`]: members keep the group id reserved. Members that
    /// died but wait to be reaped by their new parent do not count.
    pub fn group_has_members(&self) -> bool {
        killpg(self.pid, None).is_ok()
            && crate::procinfo::group_has_live_members(self.pid.as_raw() as u32)
    }

    /// Collect the exit status; call after [`Process::exited`].
    pub fn reap(&mut self) -> Termination {
        let status = waitid(
            Id::PIDFd(self.pidfd.get_ref().as_fd()),
            WaitPidFlag::WEXITED,
        );
        self.reaped = true;
        match status {
            Ok(WaitStatus::Exited(_, code)) => Termination::Exit(code),
            Ok(WaitStatus::Signaled(_, sig, _)) => Termination::Signal(sig as i32),
            // Any other answer means the status is lost; report it as a failure, never a success.
            _ => Termination::Exit(-1),
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if !self.reaped {
            // Only reached if the run task itself was aborted: leave nothing behind.
            let _ = killpg(self.pid, Signal::SIGKILL);
            let _ = waitid(
                Id::PIDFd(self.pidfd.get_ref().as_fd()),
                WaitPidFlag::WEXITED,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_given_path_only() {
        let found = resolve_program("sh", "/nonexistent:/bin", None).expect("sh is in /bin");
        assert_eq!(found, PathBuf::from("/bin/sh"));
        let err = resolve_program("sh", "/nonexistent", None).unwrap_err();
        assert_eq!(err, "program `sh` not found in PATH `/nonexistent`");
        assert_eq!(resolve_program("./x", "", None), Ok(PathBuf::from("./x")));
    }

    #[test]
    fn a_missing_workdir_is_named() {
        let err = check_workdir(Path::new("/nonexistent/dir")).unwrap_err();
        assert_eq!(err, "working directory `/nonexistent/dir` does not exist");
        let err = check_workdir(Path::new("/bin/sh")).unwrap_err();
        assert_eq!(err, "working directory `/bin/sh` is not a directory");
    }
}
