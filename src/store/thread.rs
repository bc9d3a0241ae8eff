//! The store thread: runs backend calls one at a time, and, while this instance leads,
//! renews the lease every `ttl / 3` on its own timer (a renewal costs one wake-up of this
//! thread and nothing else). Losing the lease is reported to the loop at once.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::{Backend, Instance, Result, StoreError};
use crate::clock::Clock;

type Call = Box<dyn FnOnce(&mut dyn Backend) + Send>;

enum Message {
    Call(Call),
    /// Start (Some) or stop (None) renewing the lease.
    Renew(Option<Renewal>),
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
}

impl Store {
    /// Start the thread that owns `backend`. It ends when every handle is dropped.
    pub fn start<C: Clock>(backend: Box<dyn Backend>, clock: C) -> Store {
        let (tx, rx) = std_mpsc::channel();
        std::thread::Builder::new()
            .name("schedctl-store".into())
            .spawn(move || serve(backend, clock, rx))
            .expect("cannot start the store thread");
        Store { tx }
    }

    /// Run `f` on the store thread and wait for its result.
    pub async fn call<R, F>(&self, f: F) -> Result<R>
    where
        R: Send + 'static,
        F: FnOnce(&mut dyn Backend) -> Result<R> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let call: Call = Box::new(move |backend| {
            let _ = tx.send(f(backend));
        });
        self.tx
            .send(Message::Call(call))
            .map_err(|_| StoreError::Gone)?;
        rx.await.map_err(|_| StoreError::Gone)?
    }

    /// Keep renewing this lease until told otherwise or until it is lost.
    pub fn renew(&self, renewal: Option<Renewal>) {
        let _ = self.tx.send(Message::Renew(renewal));
    }
}

fn serve<C: Clock>(mut backend: Box<dyn Backend>, clock: C, rx: std_mpsc::Receiver<Message>) {
    let mut renewal: Option<(Renewal, Instant)> = None;
    let mut changes_seen = 0;
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
            Some(Message::Call(call)) => call(&mut *backend),
            Some(Message::Renew(next)) => {
                changes_seen = backend.changes().unwrap_or(0);
                renewal = next.map(|r| {
                    let due = Instant::now() + r.ttl / 3;
                    (r, due)
                })
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
