//! The store thread: runs backend calls one at a time, and, while this instance leads,
//! renews the lease every `ttl / 3` on its own timer (a renewal costs one wake-up of this
//! thread and nothing else). Losing the lease is reported to the loop at once.
//!
//! A run's two writes (started, finished) are group-committed: of the messages waiting,
//! all starts are committed in one transaction and all ends in another, as every
//! transaction takes locks and writes WAL frames. A run's end waits up to [`GATHER`] for
//! others to come (recording an end a little later costs nothing). A start's pid is what
//! lets the next leader stop the process if this daemon dies, so a start waits only while
//! starts stream in (some were written within the last [`GATHER`]): a lone run's pid is
//! durable at once, and in a burst each pid within [`GATHER`]. 1,000 runs started at one
//! instant cost the store thread ~115 ms of CPU when every start was committed as it came
//! (small transactions, each writing its pages to the WAL again), ~63 ms this way, napping
//! while it gathers. Nothing waits while a call (perhaps a decision that starts wait on) is
//! waiting, and a call cuts a nap short.
//!
//! While the loop starts a large batch it holds run writes ([`Store::hold_run_writes`]):
//! starts and ends then wait for the batch's last start (at most [`HOLD_LIMIT`], and never
//! past a lease renewal), so that both cores start processes instead of writing records.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Finish, Finished, Instance, NewTrigger, Result, Started, StoreError};
use crate::clock::Clock;

type Call = Box<dyn FnOnce(&mut dyn Backend) + Send>;

/// How long a run write waits for more run writes to commit with it (see the module).
const GATHER: Duration = Duration::from_millis(10);
/// How often a gathering store thread looks for more messages (and for a call, which
/// ends the wait).
const GATHER_STEP: Duration = Duration::from_millis(2);
/// The most run writes in one transaction.
const MAX_GATHERED: usize = 1024;
/// The longest run writes wait while they are held.
pub const HOLD_LIMIT: Duration = Duration::from_secs(1);

enum Message {
    Call(Call),
    /// Start (Some) or stop (None) renewing the lease.
    Renew(Option<Renewal>),
    /// A run's process started (`mark_running`).
    Started {
        me: Arc<Instance>,
        epoch: i64,
        started: Started,
        reply: oneshot::Sender<Result<()>>,
    },
    /// A run ended (`finish_run`).
    Finished {
        finish: Box<Finish>,
        retry: Option<NewTrigger>,
        history_limit: u32,
        reply: oneshot::Sender<Result<Finished>>,
    },
}

impl Message {
    fn is_run_write(&self) -> bool {
        matches!(self, Message::Started { .. } | Message::Finished { .. })
    }
}

/// What to renew, whom to tell if it is lost, and whom to tell when the renewal notices
/// changes made from outside (a run-now or a pause whose wake-up did not arrive).
pub struct Renewal {
    pub me: Instance,
    pub epoch: i64,
    pub ttl: Duration,
    pub lost: mpsc::UnboundedSender<LeaseLost>,
    pub changed: mpsc::UnboundedSender<()>,
}

/// The lease stopped being ours.
#[derive(Debug)]
pub struct LeaseLost {
    pub epoch: i64,
    pub reason: String,
}

/// A handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: std_mpsc::Sender<Message>,
    /// The store thread, unparked by calls so that they never wait out a gathering nap.
    thread: std::thread::Thread,
    /// Whether run writes wait (see [`Store::hold_run_writes`]).
    held: Arc<AtomicBool>,
}

impl Store {
    /// Start the thread that owns `backend`. It ends when every handle is dropped.
    pub fn start<C: Clock>(backend: Box<dyn Backend>, clock: C) -> Store {
        let (tx, rx) = std_mpsc::channel();
        let held = Arc::new(AtomicBool::new(false));
        let thread = std::thread::Builder::new()
            .name("schedctl-store".into())
            .spawn({
                let held = Arc::clone(&held);
                move || serve(backend, clock, rx, &held)
            })
            .expect("cannot start the store thread")
            .thread()
            .clone();
        Store { tx, thread, held }
    }

    /// Hold run writes (`mark_running`, `finish_run`) while `hold`: they are gathered and
    /// written when released, or after [`HOLD_LIMIT`]. Calls are not held.
    pub fn hold_run_writes(&self, hold: bool) {
        self.held.store(hold, Ordering::Release);
        if !hold {
            self.thread.unpark();
        }
    }

    /// Run `f` on the store thread and wait for its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<R> + Send + 'static,
    {
        // Sent when this is first polled, as an `async fn` body runs.
        self.call_now(f).await
    }

    /// [`Store::call`], sent to the store thread at once rather than when first awaited:
    /// the store works on it while the caller does something else.
    pub fn call_now<R, F>(&self, f: F) -> impl Future<Output = Result<R>> + use<R, F>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |backend| {
            let _ = tx.send(f(backend));
        });
        let sent = self.tx.send(Message::Call(call));
        self.thread.unpark();
        async move {
            sent.map_err(|_| StoreError::Gone)?;
            rx.await.map_err(|_| StoreError::Gone)?
        }
    }

    /// Record that a run's process started (group-committed, fenced by `epoch`).
    pub async fn mark_running(
        &self,
        me: Arc<Instance>,
        epoch: i64,
        started: Started,
    ) -> Result<()> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Started {
                me,
                epoch,
                started,
                reply,
            })
            .map_err(|_| StoreError::Gone)?;
        rx.await.map_err(|_| StoreError::Gone)?
    }

    /// Record a run's end with its retry (group-committed).
    pub async fn finish_run(
        &self,
        finish: Finish,
        retry: Option<NewTrigger>,
        history_limit: u32,
    ) -> Result<Finished> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Message::Finished {
                finish: Box::new(finish),
                retry,
                history_limit,
                reply,
            })
            .map_err(|_| StoreError::Gone)?;
        rx.await.map_err(|_| StoreError::Gone)?
    }

    /// Keep renewing this lease until told otherwise or until it is lost.
    pub fn renew(&self, renewal: Option<Renewal>) {
        let _ = self.tx.send(Message::Renew(renewal));
    }
}

fn serve<C: Clock>(
    mut backend: Box<dyn Backend>,
    clock: C,
    rx: std_mpsc::Receiver<Message>,
    held: &AtomicBool,
) {
    let mut renewal: Option<(Renewal, Instant)> = None;
    let mut changes_seen = 0;
    let mut starts_written: Option<Instant> = None;
    loop {
        let message = match &renewal {
            Some((_, due)) => {
                match rx.recv_timeout(due.saturating_duration_since(Instant::now())) {
                    Ok(m) => Some(m),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            }
            None => match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            },
        };
        match message {
            Some(first) if first.is_run_write() => {
                let streaming = starts_written.is_some_and(|t| t.elapsed() < GATHER);
                let renew_due = renewal.as_ref().map(|(_, due)| *due);
                let gathered = gather(&rx, first, streaming, held, renew_due);
                if gathered
                    .iter()
                    .any(|m| matches!(m, Message::Started { .. }))
                {
                    starts_written = Some(Instant::now());
                }
                write_gathered(&mut *backend, gathered, |backend, message| match message {
                    Message::Call(call) => call(backend),
                    Message::Renew(next) => {
                        renewal = plan_renewal(backend, next, &mut changes_seen);
                    }
                    Message::Started { .. } | Message::Finished { .. } => {}
                });
            }
            Some(Message::Call(call)) => call(&mut *backend),
            Some(Message::Renew(next)) => {
                renewal = plan_renewal(&mut *backend, next, &mut changes_seen);
            }
            Some(Message::Started { .. } | Message::Finished { .. }) => {
                unreachable!("run writes are handled above")
            }
            None => {
                let Some((r, due)) = renewal.take() else {
                    continue;
                };
                match backend.renew_lease(&r.me, r.epoch, r.ttl, clock.now()) {
                    Ok(_) => {
                        if let Ok(changes) = backend.changes() {
                            if changes != changes_seen {
                                changes_seen = changes;
                                let _ = r.changed.send(());
                            }
                        }
                        let next = due + r.ttl / 3;
                        renewal = Some((r, next));
                    }
                    Err(StoreError::Fenced(epoch)) => {
                        let _ = r.lost.send(LeaseLost {
                            epoch,
                            reason: "another instance holds the lease now".to_owned(),
                        });
                    }
                    Err(err) => {
                        // Keep trying, faster; the lease is still ours until it expires, and
                        // fencing keeps a stale leader from firing anyway.
                        tracing::warn!(
                            epoch = r.epoch,
                            "cannot renew the leader lease: {err}; retrying"
                        );
                        let retry = Instant::now() + (r.ttl / 15).max(Duration::from_millis(100));
                        renewal = Some((r, retry));
                    }
                }
            }
        }
    }
}

/// Renew as `next` says from now on (or stop renewing): the first renewal is due a third of
/// the TTL from now, and changes to the durable state are counted from the present value.
fn plan_renewal(
    backend: &mut dyn Backend,
    next: Option<Renewal>,
    changes_seen: &mut i64,
) -> Option<(Renewal, Instant)> {
    *changes_seen = backend.changes().unwrap_or(0);
    next.map(|r| {
        let due = Instant::now() + r.ttl / 3;
        (r, due)
    })
}

/// `first` (a run write) and the messages that follow it to be written with it: those
/// already waiting, and those arriving within [`GATHER`] while all are run writes that may
/// wait (ends, and starts while `streaming`). While run writes are `held`, starts may wait
/// too, and the wait lasts until the hold ends, [`HOLD_LIMIT`] passes or the lease renewal
/// is due.
fn gather(
    rx: &std_mpsc::Receiver<Message>,
    first: Message,
    streaming: bool,
    held: &AtomicBool,
    renew_due: Option<Instant>,
) -> Vec<Message> {
    let holding = || held.load(Ordering::Acquire);
    let mut patient = may_wait(&first, streaming || holding());
    let start = Instant::now();
    let mut gathered = vec![first];
    while gathered.len() < MAX_GATHERED {
        match rx.try_recv() {
            Ok(message) => {
                patient &= may_wait(&message, streaming || holding());
                gathered.push(message);
            }
            Err(std_mpsc::TryRecvError::Empty) if patient => {
                let until = gather_until(start, holding(), renew_due);
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    // Waited long enough; what arrived since the last look (say, just
                    // before a hold ended) still comes along.
                    patient = false;
                    continue;
                }
                // Napping rather than blocking on the channel: a napping receiver costs
                // its senders nothing, where a blocked one is woken by every message. A
                // call, and the end of a hold, unpark it (see `Store::call_now`).
                std::thread::park_timeout(left.min(GATHER_STEP));
            }
            Err(_) => break,
        }
    }
    gathered
}

/// Until when run writes gathered since `start` wait for more: [`GATHER`], or while
/// `holding` [`HOLD_LIMIT`]; never past the lease renewal.
fn gather_until(start: Instant, holding: bool, renew_due: Option<Instant>) -> Instant {
    let until = start + if holding { HOLD_LIMIT } else { GATHER };
    renew_due.map_or(until, |due| until.min(due))
}

/// Whether `message` may wait up to [`GATHER`] for more run writes to commit with.
fn may_wait(message: &Message, streaming: bool) -> bool {
    match message {
        Message::Finished { .. } => true,
        Message::Started { .. } => streaming,
        Message::Call(_) | Message::Renew(_) => false,
    }
}

/// Handle `messages` in arrival order, except that all starts of one epoch are written in
/// one transaction where the first of them arrived, and all ends (of one history limit)
/// likewise: writes only move earlier, and no start and end of the same run can be in one
/// batch (a run's end is sent after its start was answered). Other messages go to `other`.
/// A group that fails is written again one by one, so that each caller gets its own answer.
fn write_gathered(
    backend: &mut dyn Backend,
    messages: Vec<Message>,
    mut other: impl FnMut(&mut dyn Backend, Message),
) {
    let mut starts: Vec<(i64, Arc<Instance>, Vec<StartReply>)> = Vec::new();
    let mut ends: Vec<(u32, Vec<EndReply>)> = Vec::new();
    // Arrival order, with each group at the place of its first member.
    let mut order: Vec<Slot> = Vec::new();
    for message in messages {
        match message {
            Message::Started {
                me,
                epoch,
                started,
                reply,
            } => match starts.iter_mut().position(|(e, _, _)| *e == epoch) {
                Some(i) => starts[i].2.push((started, reply)),
                None => {
                    order.push(Slot::Starts(starts.len()));
                    starts.push((epoch, me, vec![(started, reply)]));
                }
            },
            Message::Finished {
                finish,
                retry,
                history_limit,
                reply,
            } => {
                let end = ((*finish, retry), reply);
                match ends.iter_mut().position(|(h, _)| *h == history_limit) {
                    Some(i) => ends[i].1.push(end),
                    None => {
                        order.push(Slot::Ends(ends.len()));
                        ends.push((history_limit, vec![end]));
                    }
                }
            }
            message => order.push(Slot::Other(message)),
        }
    }
    let mut starts = starts.into_iter().map(Some).collect::<Vec<_>>();
    let mut ends = ends.into_iter().map(Some).collect::<Vec<_>>();
    for slot in order {
        match slot {
            Slot::Starts(i) => {
                if let Some((epoch, me, group)) = starts[i].take() {
                    write_starts(backend, &me, epoch, group);
                }
            }
            Slot::Ends(i) => {
                if let Some((history_limit, group)) = ends[i].take() {
                    write_ends(backend, history_limit, group);
                }
            }
            Slot::Other(message) => other(backend, message),
        }
    }
}

type StartReply = (Started, oneshot::Sender<Result<()>>);
type EndReply = (
    (Finish, Option<NewTrigger>),
    oneshot::Sender<Result<Finished>>,
);

enum Slot {
    Starts(usize),
    Ends(usize),
    Other(Message),
}

fn write_starts(backend: &mut dyn Backend, me: &Instance, epoch: i64, group: Vec<StartReply>) {
    let all: Vec<Started> = group.iter().map(|(s, _)| s.clone()).collect();
    match backend.mark_running_many(me, epoch, &all) {
        Ok(()) => group.into_iter().for_each(|(_, r)| {
            let _ = r.send(Ok(()));
        }),
        Err(StoreError::Fenced(e)) => group.into_iter().for_each(|(_, r)| {
            let _ = r.send(Err(StoreError::Fenced(e)));
        }),
        Err(_) => group.into_iter().for_each(|(s, r)| {
            let _ = r.send(backend.mark_running_many(me, epoch, &[s]));
        }),
    }
}

fn write_ends(backend: &mut dyn Backend, history_limit: u32, group: Vec<EndReply>) {
    let (runs, replies): (Vec<_>, Vec<_>) = group.into_iter().unzip();
    match backend.finish_runs(&runs, history_limit) {
        Ok(done) => {
            for (finished, reply) in done.into_iter().zip(replies) {
                let _ = reply.send(Ok(finished));
            }
        }
        Err(_) => {
            for (run, reply) in runs.into_iter().zip(replies) {
                let one = backend
                    .finish_runs(std::slice::from_ref(&run), history_limit)
                    .map(|mut d| d.pop().unwrap_or_default());
                let _ = reply.send(one);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::{RunId, Trigger};
    use crate::store::{NewRun, Recorded, Sqlite};

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    fn me() -> Instance {
        Instance {
            id: "me".into(),
            host: "host".into(),
            pid: 1,
            pid_start: None,
            boot_id: "boot".into(),
            started_at: t("2026-11-24T10:00:00Z"),
        }
    }

    /// A leader's database with `n` runs of job `j` recorded as pending.
    fn with_runs(n: usize) -> (Sqlite, i64, Vec<RunId>) {
        let mut db = Sqlite::in_memory();
        let now = t("2026-11-24T11:00:00Z");
        let epoch = db
            .take_lease(&me(), None, Duration::from_secs(45), now)
            .expect("lease")
            .expect("taken")
            .epoch;
        let runs: Vec<NewRun> = (0..n)
            .map(|i| NewRun {
                job: "j".into(),
                scheduled_for: now + jiff::SignedDuration::from_secs(i as i64),
                trigger: Trigger::Schedule,
                attempt: 1,
                skipped: None,
                trigger_id: None,
            })
            .collect();
        let ids = db
            .record_runs(&me(), epoch, &runs, now)
            .expect("record")
            .into_iter()
            .map(|r| match r {
                Recorded::Created(id) => id,
                Recorded::AlreadyDecided => panic!("decided twice"),
            })
            .collect();
        (db, epoch, ids)
    }

    fn started(epoch: i64, run_id: RunId) -> (Message, oneshot::Receiver<Result<()>>) {
        let (reply, rx) = oneshot::channel();
        let started = Started {
            run_id,
            pid: 7,
            pid_start: None,
            at: t("2026-11-24T11:00:01Z"),
        };
        let me = Arc::new(me());
        (
            Message::Started {
                me,
                epoch,
                started,
                reply,
            },
            rx,
        )
    }

    fn finished(run_id: RunId) -> (Message, oneshot::Receiver<Result<Finished>>) {
        let (reply, rx) = oneshot::channel();
        let finish = Finish::succeeded(run_id, "j", None, t("2026-11-24T11:00:02Z"));
        let message = Message::Finished {
            finish: Box::new(finish),
            retry: None,
            history_limit: 100,
            reply,
        };
        (message, rx)
    }

    #[test]
    fn gathered_run_writes_commit_in_arrival_order_and_answer_each_caller() {
        let (mut db, epoch, ids) = with_runs(3);
        let (s0, r0) = started(epoch, ids[0]);
        let (s1, r1) = started(epoch, ids[1]);
        let (f0, rf0) = finished(ids[0]);
        let (seen_tx, seen_rx) = std::sync::mpsc::channel();
        let first = ids[0];
        let read: Call = Box::new(move |db| {
            let state = db.run(first).expect("read").expect("run").state;
            let _ = seen_tx.send(state);
        });
        let messages = vec![s0, s1, Message::Call(read), f0];
        write_gathered(&mut db, messages, |db, m| {
            if let Message::Call(call) = m {
                call(db);
            }
        });
        assert!(r0.blocking_recv().expect("answer").is_ok());
        assert!(r1.blocking_recv().expect("answer").is_ok());
        assert!(rf0.blocking_recv().expect("answer").is_ok());
        assert_eq!(
            seen_rx.recv().expect("the read ran"),
            "running",
            "the read came after the starts and before the end"
        );
        let state = |db: &mut Sqlite, id| db.run(id).expect("read").expect("run").state;
        assert_eq!(state(&mut db, ids[0]), "succeeded");
        assert_eq!(state(&mut db, ids[1]), "running");
        assert_eq!(state(&mut db, ids[2]), "pending");
    }

    #[test]
    fn held_run_writes_wait_until_released_or_the_renewal() {
        let start = Instant::now();
        assert_eq!(gather_until(start, false, None), start + GATHER);
        assert_eq!(gather_until(start, true, None), start + HOLD_LIMIT);
        let renewal = start + Duration::from_millis(300);
        assert_eq!(gather_until(start, true, Some(renewal)), renewal);
        let soon = start + Duration::from_millis(1);
        assert_eq!(gather_until(start, false, Some(soon)), soon);
        // Released, a hold ends at once: what waited and what came meanwhile is written.
        let (_, epoch, ids) = with_runs(1);
        let id = ids[0];
        let (tx, rx) = std_mpsc::channel();
        let held = Arc::new(AtomicBool::new(true));
        let gathering = std::thread::current();
        let releaser = std::thread::spawn({
            let held = Arc::clone(&held);
            move || {
                let (second, _) = started(epoch, id);
                tx.send(second).expect("send");
                held.store(false, Ordering::Release);
                gathering.unpark();
                tx
            }
        });
        let (first, _) = started(epoch, id);
        let gathered = gather(&rx, first, false, &held, None);
        assert_eq!(
            gathered.len(),
            2,
            "a held lone start waited for the release"
        );
        drop(releaser.join());
    }

    #[test]
    fn only_ends_and_streaming_starts_wait_for_company() {
        let (_, epoch, ids) = with_runs(1);
        let (start, _) = started(epoch, ids[0]);
        let (end, _) = finished(ids[0]);
        let call = Message::Call(Box::new(|_| {}));
        assert!(!may_wait(&start, false), "a lone start is written at once");
        assert!(may_wait(&start, true), "starts in a stream wait");
        assert!(may_wait(&end, false) && may_wait(&end, true));
        assert!(!may_wait(&call, true), "a call never waits");
        // Whatever is already waiting comes along, the call included.
        let (tx, rx) = std_mpsc::channel();
        let (second, _) = started(epoch, ids[0]);
        tx.send(second).expect("send");
        tx.send(Message::Call(Box::new(|_| {}))).expect("send");
        let (first, _) = started(epoch, ids[0]);
        let gathered = gather(&rx, first, true, &AtomicBool::new(false), None);
        assert_eq!(gathered.len(), 3);
        assert!(matches!(gathered[2], Message::Call(_)));
    }

    #[test]
    fn a_fenced_stretch_of_starts_answers_every_caller_fenced() {
        let (mut db, epoch, ids) = with_runs(2);
        let (s0, r0) = started(epoch + 1, ids[0]);
        let (s1, r1) = started(epoch + 1, ids[1]);
        write_gathered(&mut db, vec![s0, s1], |_, _| {});
        for rx in [r0, r1] {
            assert!(matches!(
                rx.blocking_recv().expect("answer"),
                Err(StoreError::Fenced(_))
            ));
        }
        assert_eq!(
            db.run(ids[0]).expect("read").expect("run").state,
            "pending",
            "nothing recorded"
        );
    }
}
