//! Becoming and staying leader. A standby sleeps until one of three things happens: it gets
//! the lock file beside the database (the kernel drops a dead leader's lock at once), the
//! leader's process exits (a pidfd on it, same host), or the lease expires (a hung leader).
//! Then it judges the lease row again and takes it with a new epoch. The leader's renewals
//! run on the store thread; a lost lease comes back here and the instance stands by again.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

use nix::fcntl::{Flock, FlockArg};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, Timer, readable_fd};
use crate::lease::{Verdict, judge};
use crate::procinfo;
use crate::runner::pidfd_open;
use crate::store::{Instance, Lease, LeaseLost, Renewal, Store};

/// This instance's part, as the loop sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader { epoch: i64 },
}

/// Handle kept by the loop: the current role, and a way to report that the store refused
/// our epoch (fencing), which ends our leadership at once.
pub struct Leadership {
    pub role: watch::Receiver<Role>,
    /// Signalled when a lease renewal notices changes made from outside (see `Renewal`).
    pub changes: Option<mpsc::UnboundedReceiver<()>>,
    lost: mpsc::UnboundedSender<LeaseLost>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl Leadership {
    /// Start contending for the lease of `store`.
    pub fn start<C: Clock>(
        store: Store,
        me: Instance,
        ttl: Duration,
        lock_path: PathBuf,
        clock: C,
    ) -> Leadership {
        let (role_tx, role) = watch::channel(Role::Standby);
        let (lost, lost_rx) = mpsc::unbounded_channel();
        let (changed, changes) = mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let contender = Contender {
            store,
            me,
            ttl,
            clock,
            lock: LockFile::new(lock_path),
            lost: lost.clone(),
            changed,
        };
        let task = tokio::spawn(contender.run(role_tx, lost_rx, stop.clone()));
        Leadership {
            role,
            changes: Some(changes),
            lost,
            task,
            stop,
        }
    }

    /// The store refused `epoch`: stand by.
    pub fn fenced(&self, epoch: i64) {
        let _ = self.lost.send(LeaseLost {
            epoch,
            reason: "the store refused this instance's epoch".to_owned(),
        });
    }

    /// Stop contending. A leader gives the lease up first and then drops the lock file, so
    /// that a standby woken by the lock finds the lease free. Returns once that is done.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

struct Contender<C> {
    store: Store,
    me: Instance,
    ttl: Duration,
    clock: C,
    lock: LockFile,
    lost: mpsc::UnboundedSender<LeaseLost>,
    changed: mpsc::UnboundedSender<()>,
}

impl<C: Clock> Contender<C> {
    async fn run(
        mut self,
        role_tx: watch::Sender<Role>,
        mut lost_rx: mpsc::UnboundedReceiver<LeaseLost>,
        stop: CancellationToken,
    ) {
        let Ok(mut timer) = self.clock.timer() else {
            tracing::error!("cannot create a timer; this instance will not lead");
            return;
        };
        self.lock.try_now();
        let mut last_seen_holder: Option<String> = None;
        loop {
            let role = *role_tx.borrow();
            match role {
                Role::Standby => {
                    let now = self.clock.now();
                    let me = self.me.clone();
                    // Read first: in WAL mode a read never waits for a writer, even a frozen one.
                    // The heartbeat is a write and must not hold up the decision.
                    let lease = match self
                        .store
                        .call(move |db| {
                            let lease = db.lease()?;
                            if let Err(err) = db.register_instance(&me, "standby", now) {
                                tracing::debug!("cannot refresh this instance's row: {err}");
                            }
                            Ok(lease)
                        })
                        .await
                    {
                        Ok(lease) => lease,
                        Err(err) => {
                            tracing::error!("cannot read the leader lease: {err}; retrying");
                            let retry = now
                                + jiff::SignedDuration::try_from(self.ttl / 3).unwrap_or_default();
                            // Still wake at once when the leader dies: its lock is released.
                            tokio::select! {
                                () = self.lock.acquired() => {}
                                () = timer.sleep_until(retry) => {}
                                () = stop.cancelled() => return,
                            }
                            continue;
                        }
                    };
                    let alive = lease.as_ref().and_then(|l| self.holder_alive(l));
                    match judge(lease.as_ref(), &self.me, now, alive) {
                        Verdict::Mine | Verdict::Take => {
                            if let Some(epoch) = self.take(lease, now).await {
                                last_seen_holder = None;
                                role_tx.send_replace(Role::Leader { epoch });
                            }
                        }
                        Verdict::Wait { until } => {
                            let lease = lease.expect("a lease to wait for");
                            if last_seen_holder.as_deref() != Some(lease.holder.as_str()) {
                                tracing::info!(
                                    leader = %lease.holder,
                                    epoch = lease.epoch,
                                    "standing by: another instance leads"
                                );
                                last_seen_holder = Some(lease.holder.clone());
                            }
                            let leader_exit = LeaderExit::watch(&self.me, &lease);
                            tokio::select! {
                                () = self.lock.acquired() => {}
                                () = leader_exit.wait() => {}
                                () = timer.sleep_until(until) => {}
                                () = stop.cancelled() => return,
                            }
                        }
                    }
                }
                Role::Leader { epoch } => {
                    tokio::select! {
                        Some(lost) = lost_rx.recv() => {
                            if lost.epoch == epoch {
                                self.store.renew(None);
                                self.lock.release();
                                tracing::warn!(epoch, "lost the leader lease ({}); standing by", lost.reason);
                                role_tx.send_replace(Role::Standby);
                            }
                        }
                        () = self.lock.acquired() => {}
                        () = stop.cancelled() => {
                            self.store.renew(None);
                            let me = self.me.clone();
                            match self.store.call(move |db| db.release_lease(&me, epoch)).await {
                                Ok(()) => tracing::info!(epoch, "released the leader lease"),
                                Err(err) => tracing::warn!("cannot release the leader lease: {err}; a standby takes over when it expires"),
                            }
                            self.lock.release();
                            return;
                        }
                    }
                }
            }
        }
    }

    fn holder_alive(&self, lease: &Lease) -> Option<bool> {
        (lease.host == self.me.host).then(|| procinfo::process_matches(lease.pid, lease.pid_start))
    }

    /// Take the lease seen as `seen`; None if it changed first or the store failed.
    async fn take(&mut self, seen: Option<Lease>, now: jiff::Timestamp) -> Option<i64> {
        let me = self.me.clone();
        let ttl = self.ttl;
        let previous = seen.clone();
        match self
            .store
            .call(move |db| db.take_lease(&me, seen.as_ref(), ttl, now))
            .await
        {
            Ok(Some(lease)) => {
                self.store.renew(Some(Renewal {
                    me: self.me.clone(),
                    epoch: lease.epoch,
                    ttl,
                    lost: self.lost.clone(),
                    changed: self.changed.clone(),
                }));
                match previous.filter(|p| p.holder != self.me.id) {
                    Some(p) => {
                        tracing::info!(epoch = lease.epoch, previous = %p.holder, "this instance is the leader now")
                    }
                    None => tracing::info!(epoch = lease.epoch, "this instance is the leader now"),
                }
                Some(lease.epoch)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::error!("cannot take the leader lease: {err}");
                None
            }
        }
    }
}

/// The lock file beside the database. Held by the leader when it can get it; a standby
/// waits for it in a thread blocked in flock(2), which the kernel wakes when the holder dies.
struct LockFile {
    path: PathBuf,
    held: Option<Flock<File>>,
    waiter: Option<oneshot::Receiver<Flock<File>>>,
}

impl LockFile {
    fn new(path: PathBuf) -> Self {
        LockFile {
            path,
            held: None,
            waiter: None,
        }
    }

    fn open(&self) -> Option<File> {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
            .map_err(|e| tracing::warn!(path = %self.path.display(), "cannot open the lock file: {e}; failover will wait for the lease to expire"))
            .ok()
    }

    fn try_now(&mut self) {
        if self.held.is_none() {
            if let Some(file) = self.open() {
                self.held = Flock::lock(file, FlockArg::LockExclusiveNonblock).ok();
            }
        }
    }

    /// Resolves when the lock was acquired (and keeps it); pending while it is held.
    async fn acquired(&mut self) {
        if self.held.is_some() {
            return std::future::pending().await;
        }
        if self.waiter.is_none() {
            let Some(file) = self.open() else {
                return std::future::pending().await;
            };
            let (tx, rx) = oneshot::channel();
            let spawned = std::thread::Builder::new()
                .name("schedctl-lock".into())
                .spawn(move || {
                    if let Ok(lock) = Flock::lock(file, FlockArg::LockExclusive) {
                        let _ = tx.send(lock);
                    }
                });
            if spawned.is_err() {
                return std::future::pending().await;
            }
            self.waiter = Some(rx);
        }
        let waiter = self.waiter.as_mut().expect("waiter");
        match waiter.await {
            Ok(lock) => {
                self.held = Some(lock);
                self.waiter = None;
            }
            Err(_) => {
                self.waiter = None;
                std::future::pending::<()>().await;
            }
        }
    }

    fn release(&mut self) {
        self.held = None;
    }
}

/// A pidfd on the leader's process (same host only), verified to be the process the lease
/// names, so that its exit wakes a standby at once.
enum LeaderExit {
    /// The leader runs elsewhere, or its process cannot be watched: wait for the lock or
    /// the lease's expiry instead.
    Unwatched,
    Watching(tokio::io::unix::AsyncFd<OwnedFd>),
    /// The pid no longer names the leader: judge the lease again now. A dying leader
    /// releases its lock before it becomes a zombie, so a standby woken by the lock can
    /// still see it alive when it reads the lease, and gone a moment later, here.
    Gone,
}

impl LeaderExit {
    fn watch(me: &Instance, lease: &Lease) -> Self {
        if lease.host != me.host {
            return LeaderExit::Unwatched;
        }
        let fd = match pidfd_open(nix::unistd::Pid::from_raw(lease.pid as i32)) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return LeaderExit::Gone,
            Err(_) => return LeaderExit::Unwatched,
        };
        // Opened after reading the lease: make sure the pid still names the leader.
        if !procinfo::process_matches(lease.pid, lease.pid_start) {
            return LeaderExit::Gone;
        }
        match readable_fd(fd) {
            Ok(fd) => LeaderExit::Watching(fd),
            Err(_) => LeaderExit::Unwatched,
        }
    }

    async fn wait(&self) {
        match self {
            LeaderExit::Watching(fd) => {
                let _ = fd.readable().await;
            }
            LeaderExit::Gone => {}
            LeaderExit::Unwatched => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::wait::{Id, WaitPidFlag, waitid};

    fn me() -> Instance {
        procinfo::current_instance(jiff::Timestamp::now())
    }

    fn lease_of(host: &str, pid: u32, pid_start: Option<i64>) -> Lease {
        let now = jiff::Timestamp::now();
        Lease {
            holder: format!("{host}:{pid}:0"),
            host: host.into(),
            pid,
            pid_start,
            epoch: 1,
            acquired_at: now,
            expires_at: now,
        }
    }

    fn sleeper() -> (std::process::Child, Option<i64>) {
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .expect("spawn sleep");
        let start = procinfo::pid_start(child.id());
        assert!(start.is_some(), "a live child has a start time");
        (child, start)
    }

    #[tokio::test]
    async fn a_live_leader_is_watched_and_its_exit_wakes_the_standby() {
        let (mut child, start) = sleeper();
        let exit = LeaderExit::watch(&me(), &lease_of(&me().host, child.id(), start));
        assert!(matches!(exit, LeaderExit::Watching(_)));
        child.kill().expect("kill");
        exit.wait().await;
        child.wait().expect("reap");
    }

    /// The race seen when a leader was SIGKILLed: its lock is released before it is a zombie,
    /// so the lease read saw it alive; by the time the pidfd was opened it was gone. That must
    /// wake the standby at once, not leave it waiting for the lease to expire.
    #[tokio::test]
    async fn a_leader_that_died_since_the_lease_was_read_is_gone_at_once() {
        let (mut child, start) = sleeper();
        let pid = child.id();
        child.kill().expect("kill");
        // Exited, not reaped: the pid still exists (a zombie), but names no running leader.
        waitid(
            Id::Pid(nix::unistd::Pid::from_raw(pid as i32)),
            WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
        )
        .expect("wait for the exit");
        let exit = LeaderExit::watch(&me(), &lease_of(&me().host, pid, start));
        assert!(matches!(exit, LeaderExit::Gone));
        exit.wait().await;
        child.wait().expect("reap");
        // A pid that names no process at all is gone too.
        let nobody = lease_of(&me().host, i32::MAX as u32, Some(1));
        assert!(matches!(
            LeaderExit::watch(&me(), &nobody),
            LeaderExit::Gone
        ));
    }

    #[tokio::test]
    async fn a_leader_on_another_host_is_not_watched() {
        let lease = lease_of("another-host", std::process::id(), None);
        assert!(matches!(
            LeaderExit::watch(&me(), &lease),
            LeaderExit::Unwatched
        ));
    }
}
