//! Starting a process the way `vfork` does: `clone(CLONE_VM | CLONE_VFORK | CLONE_PIDFD)`
//! on a stack kept per thread. glibc's `posix_spawn` (what `std::process::Command` uses)
//! does the same clone, but maps a new stack for every start and unmaps it after, and its
//! child sets each of the 64 signal dispositions before `execve`. The unmap is a TLB
//! shootdown across the cores that run the daemon's threads, and the 64 `sigaction` calls
//! are most of the child's work before `execve`; starting 1,000 processes from two threads
//! took ~40% less of the parent's CPU and reached the last one ~20% sooner this way (bench
//! `burstfloor`, measured with both). The pidfd comes from the clone itself.
//!
//! The child shares the parent's memory until `execve`, so it only makes system calls on
//! data prepared before the clone: no allocation, no locks. The parent blocks every signal
//! around the clone, so no handler of the daemon can run in the child; the child resets the
//! signals the daemon handles or ignores to their default, puts back the open-file limit
//! the daemon was started with (it raises its own), unblocks all, and execs. A
//! failure before or in `execve` is left in memory both share, and the child exits 127.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicI32, Ordering};

/// What a started process is: its pid, a pidfd on it, and the read ends of its stdout and
/// stderr pipes (non-blocking).
pub struct Spawned {
    pub pid: i32,
    pub pidfd: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// What to start: `program` (a path; not searched in PATH) with `argv` (its first element
/// is the program's name for itself) and exactly `env`, in `workdir`, in a new process
/// group, stdin on `stdin`.
pub struct Launch<'a> {
    pub program: &'a Path,
    pub argv: &'a [&'a str],
    pub env: &'a [(String, String)],
    pub workdir: Option<&'a Path>,
    pub stdin: RawFd,
}

/// Signals whose disposition the child resets before `execve`: those the daemon handles
/// (an `execve` would reset them anyway, but the child must not run a handler before it)
/// and SIGPIPE, which the Rust runtime ignores and an ignored signal stays ignored across
/// `execve`. Other dispositions are inherited, as `posix_spawn` and a shell leave them.
const RESET: [c_int; 5] = {
    let [a, b, c, d] = crate::signals::HANDLED;
    [a, b, c, d, libc::SIGPIPE]
};

/// Bytes of the child's stack: it makes a handful of system calls and nothing else.
const STACK_SIZE: usize = 64 * 1024;
/// The inaccessible page below the stack, so that an overflow faults instead of writing
/// into other memory.
const GUARD: usize = 4096;

/// Everything the child reads, prepared by the parent, plus where it leaves its error.
struct Child {
    program: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    workdir: *const c_char,
    stdin: RawFd,
    stdout: RawFd,
    stderr: RawFd,
    /// The open-file limit to give the job, when the daemon raised its own.
    nofile: Option<libc::rlimit>,
    error: AtomicI32,
}

/// The open-file limit the daemon was started with, once [`raise_open_file_limit`] raised
/// its own; jobs get this one.
static JOB_NOFILE: OnceLock<libc::rlimit> = OnceLock::new();

/// Raise this process's soft limit on open files to its hard limit; jobs still start with
/// the soft limit the daemon was given (programs that use `select` rely on 1,024). Every
/// running job holds three of the daemon's descriptors (its two pipes and its pidfd): under
/// systemd's default soft limit of 1,024, ~330 runs at once were the most that could
/// start, and the rest failed with "Too many open files". Returns the limits before and
/// after, or `None` when there was nothing to raise.
pub fn raise_open_file_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the rlimit we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0
        || limit.rlim_cur >= limit.rlim_max
    {
        return None;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the rlimit we own; raising the soft limit up to the hard
    // one needs no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        return None;
    }
    JOB_NOFILE.set(limit).ok()?;
    Some((limit.rlim_cur, raised.rlim_cur))
}

/// Mark every descriptor this process inherited above stderr close-on-exec, so that jobs
/// get none of them (whoever started the daemon may have left some open: a shell's, a
/// supervisor's). Call before opening anything: the daemon's own are close-on-exec already.
pub fn close_inherited_on_exec() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets a flag on descriptors.
    let marked = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if marked == 0 {
        return;
    }
    // Before Linux 5.11: one by one.
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for fd in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
    {
        if fd > 2 {
            // SAFETY: F_SETFD on a descriptor number; a closed one just fails.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
    }
}

pub fn spawn(launch: &Launch<'_>) -> io::Result<Spawned> {
    let program = c_string(launch.program.as_os_str().as_bytes())?;
    let workdir = launch
        .workdir
        .map(|d| c_string(d.as_os_str().as_bytes()))
        .transpose()?;
    let argv = Strings::new(launch.argv.iter().map(|a| [a.as_bytes()]))?;
    let envp = Strings::new(
        launch
            .env
            .iter()
            .map(|(k, v)| [k.as_bytes(), &b"="[..], v.as_bytes()]),
    )?;
    let (stdout_read, stdout_write) = pipe()?;
    let (stderr_read, stderr_write) = pipe()?;
    // Only our read ends: the child's ends are other open files and stay blocking.
    set_nonblocking(&stdout_read)?;
    set_nonblocking(&stderr_read)?;
    let child = Child {
        program: program.as_ptr(),
        argv: argv.pointers.as_ptr(),
        envp: envp.pointers.as_ptr(),
        workdir: workdir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr()),
        stdin: launch.stdin,
        stdout: stdout_write.as_raw_fd(),
        stderr: stderr_write.as_raw_fd(),
        nofile: JOB_NOFILE.get().copied(),
        error: AtomicI32::new(0),
    };
    let (pid, pidfd) = STACK.with(|stack| {
        let mut stack = stack.borrow_mut();
        let stack = match &mut *stack {
            Some(stack) => stack,
            none => none.insert(Stack::new()?),
        };
        clone_child(&child, stack)
    })?;
    drop((stdout_write, stderr_write));
    let error = child.error.load(Ordering::Acquire);
    if error != 0 {
        // The child exited before or in execve; it is a zombie now, ours to reap.
        let mut status = 0;
        // SAFETY: waiting for our own child by pid; `status` is a valid out-pointer.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        return Err(io::Error::from_raw_os_error(error));
    }
    Ok(Spawned {
        pid,
        pidfd,
        stdout: stdout_read,
        stderr: stderr_read,
    })
}

/// Clone the child (the calling thread waits until it execs or exits) with every signal
/// blocked around the clone.
fn clone_child(child: &Child, stack: &mut Stack) -> io::Result<(i32, OwnedFd)> {
    let mut pidfd: c_int = -1;
    // SAFETY: sigset_t is plain data, initialised by sigfillset before use.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to sigsets owned by this frame.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut old);
    }
    // SAFETY: `child_main` only makes async-signal-safe system calls on `child`, which
    // outlives the clone: with CLONE_VFORK this thread is suspended until the child has
    // called execve or exited, so `child` and the stack are not touched by anyone else
    // meanwhile. The stack pointer is the top of a mapping of STACK_SIZE bytes, 16-aligned.
    let pid = unsafe {
        libc::clone(
            child_main,
            stack.top(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::CLONE_PIDFD | libc::SIGCHLD,
            child as *const Child as *mut c_void,
            &mut pidfd as *mut c_int,
        )
    };
    let cloned = if pid < 0 {
        let err = io::Error::last_os_error();
        Err(match err.raw_os_error() {
            Some(libc::EINVAL | libc::ENOSYS) => io::Error::other(format!(
                "cannot start processes: clone with CLONE_PIDFD needs Linux 5.2 or later ({err})"
            )),
            _ => err,
        })
    } else {
        // SAFETY: with CLONE_PIDFD the kernel stored a new descriptor that we own.
        Ok((pid, unsafe { OwnedFd::from_raw_fd(pidfd) }))
    };
    // SAFETY: restores this thread's mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    cloned
}

/// The child, until `execve`. Runs on the per-thread stack in the parent's memory.
extern "C" fn child_main(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Child` the parent passed; it lives until this exits or execs.
    let child = unsafe { &*(arg as *const Child) };
    // SAFETY: every call below is a system call wrapper on prepared, valid data.
    unsafe {
        for signal in RESET {
            libc::signal(signal, libc::SIG_DFL);
        }
        if libc::setpgid(0, 0) != 0 {
            fail(child);
        }
        for (from, to) in [(child.stdin, 0), (child.stdout, 1), (child.stderr, 2)] {
            let moved = if from == to {
                // Already in place: only its close-on-exec flag must go.
                libc::fcntl(from, libc::F_SETFD, 0)
            } else {
                libc::dup2(from, to)
            };
            if moved < 0 {
                fail(child);
            }
        }
        if !child.workdir.is_null() && libc::chdir(child.workdir) != 0 {
            fail(child);
        }
        // Lowering the soft limit back cannot fail; the job keeps what it was given.
        if let Some(limit) = &child.nofile {
            libc::setrlimit(libc::RLIMIT_NOFILE, limit);
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(child.program, child.argv, child.envp);
        fail(child)
    }
}

/// Leave errno for the parent and exit as a shell does for a command it cannot run.
fn fail(child: &Child) -> ! {
    // SAFETY: reading this thread's errno and exiting the child without running anything
    // of the parent's (no atexit handlers, no buffers flushed).
    unsafe {
        let errno = *libc::__errno_location();
        child.error.store(errno.max(1), Ordering::Release);
        libc::_exit(127)
    }
}

/// NUL-terminated strings in one buffer and a NULL-terminated array of pointers to them,
/// as `execve` takes them.
struct Strings {
    _bytes: Vec<u8>,
    pointers: Vec<*const c_char>,
}

impl Strings {
    /// Each item is the concatenation of its parts; none may contain a NUL byte.
    fn new<'a, const N: usize>(
        items: impl Iterator<Item = [&'a [u8]; N]> + Clone,
    ) -> io::Result<Self> {
        let size: usize = items
            .clone()
            .map(|parts| parts.iter().map(|p| p.len()).sum::<usize>() + 1)
            .sum();
        let mut bytes = Vec::with_capacity(size);
        let mut starts = Vec::new();
        for parts in items {
            starts.push(bytes.len());
            for part in parts {
                if part.contains(&0) {
                    return Err(nul_error());
                }
                bytes.extend_from_slice(part);
            }
            bytes.push(0);
        }
        // The buffer is not resized after this: the pointers stay valid.
        let base = bytes.as_ptr();
        let mut pointers: Vec<*const c_char> = starts
            .into_iter()
            // SAFETY: each start is an offset within `bytes`.
            .map(|start| unsafe { base.add(start) }.cast())
            .collect();
        pointers.push(std::ptr::null());
        Ok(Strings {
            _bytes: bytes,
            pointers,
        })
    }
}

fn c_string(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| nul_error())
}

fn nul_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "a command word or environment variable contains a NUL byte",
    )
}

/// A pipe whose ends are closed on exec (the child gets its end through dup2). The write
/// end is above 2, so that moving one pipe onto 1 cannot overwrite the other's source
/// (the descriptors 0-2 are free when the daemon was started with them closed).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 returns.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are new and ours.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    if write.as_raw_fd() > 2 {
        return Ok((read, write));
    }
    // SAFETY: duplicating a descriptor we own; the copy is new and ours.
    let above = unsafe { libc::fcntl(write.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) };
    if above < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    Ok((read, unsafe { OwnedFd::from_raw_fd(above) }))
}

/// The read end of a pipe has no other status flag to keep, so this is one call.
fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: F_SETFL on a descriptor we own.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

thread_local! {
    /// The child stack of this thread, mapped at its first start.
    static STACK: RefCell<Option<Stack>> = const { RefCell::new(None) };
}

/// A mapping for the child's stack with a guard page below it.
struct Stack {
    base: *mut c_void,
}

impl Stack {
    fn new() -> io::Result<Stack> {
        // SAFETY: a new private anonymous mapping; checked below.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                GUARD + STACK_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the lowest page of the mapping just made becomes the guard.
        if unsafe { libc::mprotect(base, GUARD, libc::PROT_NONE) } != 0 {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping the mapping made above.
            unsafe { libc::munmap(base, GUARD + STACK_SIZE) };
            return Err(err);
        }
        Ok(Stack { base })
    }

    fn top(&mut self) -> *mut c_void {
        // SAFETY: one past the end of the mapping; the stack grows down from here.
        unsafe { self.base.cast::<u8>().add(GUARD + STACK_SIZE).cast() }
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `Stack::new`, unused once its thread ends.
        unsafe { libc::munmap(self.base, GUARD + STACK_SIZE) };
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::fd::AsFd;

    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};

    use super::*;

    fn launch<'a>(
        program: &'a str,
        argv: &'a [&'a str],
        env: &'a [(String, String)],
    ) -> Launch<'a> {
        Launch {
            program: Path::new(program),
            argv,
            env,
            workdir: Some(Path::new("/")),
            stdin: io::stdin().as_raw_fd(),
        }
    }

    #[test]
    fn the_child_gets_exactly_its_argv_environment_workdir_and_group() {
        let env = vec![("X".to_owned(), "x value".to_owned())];
        let argv = [
            "name",
            "-c",
            "echo \"$(head -c 4 /proc/$$/cmdline)|$0|$1|$X|$(pwd)|$(env | wc -l)\"; read -r _ _ _ _ g _ < /proc/$$/stat; echo $g $$ >&2",
            "zero",
            "one",
        ];
        let spawned = spawn(&launch("/bin/sh", &argv, &env)).expect("spawn");
        let status = waitid(Id::PIDFd(spawned.pidfd.as_fd()), WaitPidFlag::WEXITED).expect("wait");
        assert_eq!(
            status,
            WaitStatus::Exited(nix::unistd::Pid::from_raw(spawned.pid), 0)
        );
        let mut out = String::new();
        std::fs::File::from(spawned.stdout)
            .read_to_string(&mut out)
            .expect("stdout");
        // The shell adds PWD (and dash nothing else) to what it exports.
        assert_eq!(out, "name|zero|one|x value|/|2\n");
        let mut err = String::new();
        std::fs::File::from(spawned.stderr)
            .read_to_string(&mut err)
            .expect("stderr");
        let ids: Vec<&str> = err.split_whitespace().collect();
        assert_eq!(ids[0], ids[1], "the child leads a new process group: {err}");
    }

    #[test]
    fn failures_before_exec_come_back_as_the_errno_of_the_call() {
        let missing = spawn(&launch("/nonexistent/program", &["p"], &[]))
            .err()
            .expect("missing");
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
        let file = std::env::temp_dir().join(format!("schedctl-not-x-{}", std::process::id()));
        std::fs::write(&file, "#!/bin/sh\n").expect("write");
        let path = file.to_str().expect("utf-8");
        let not_executable = spawn(&launch(path, &["p"], &[])).err().expect("not x");
        let _ = std::fs::remove_file(&file);
        assert_eq!(not_executable.kind(), io::ErrorKind::PermissionDenied);
        let mut bad_dir = launch("/bin/true", &["true"], &[]);
        bad_dir.workdir = Some(Path::new("/nonexistent/dir"));
        assert_eq!(
            spawn(&bad_dir).err().expect("no dir").kind(),
            io::ErrorKind::NotFound
        );
        let env = vec![("A".to_owned(), "nul\0inside".to_owned())];
        let nul = spawn(&launch("/bin/true", &["true"], &env))
            .err()
            .expect("nul");
        assert_eq!(nul.kind(), io::ErrorKind::InvalidInput);
    }
}
