//! Holding the runs' bookkeeping while a large batch starts. On two cores, everything a run
//! does after its process ended (recording the end, logging it, telling the loop) and every
//! record the store writes competes with the processes still to start: 1,000 jobs due at
//! one instant started ~10% later when it did not wait. While a batch of more than
//! [`HOLD_ABOVE`] runs starts, runs whose process ended wait at their [`Gate`] and the
//! store holds its run writes; both go on when the batch's last run started, or after
//! [`HOLD_LIMIT`] of a longer batch (which then holds again), so nothing waits longer
//! than that. Reading a run's output and reaping it are not held.

use std::time::Instant;

use tokio::sync::watch;

use crate::store::{HOLD_LIMIT, Store};

/// Batches larger than this hold the bookkeeping of their runs while they start.
pub(super) const HOLD_ABOVE: usize = 8;

/// Which hold this is (a counter) and whether it is on.
type State = (u64, bool);

/// The loop's side: starts holds.
pub(super) struct Holds {
    tx: watch::Sender<State>,
    store: Store,
}

/// A run's side: waits while a hold that was on when its process ended is on.
#[derive(Clone)]
pub(super) struct Gate(watch::Receiver<State>);

/// A hold in force; dropping it releases it.
pub(super) struct Held {
    tx: watch::Sender<State>,
    store: Store,
    since: Instant,
}

impl Holds {
    pub fn new(store: Store) -> Self {
        Holds {
            tx: watch::Sender::new((0, false)),
            store,
        }
    }

    pub fn gate(&self) -> Gate {
        Gate(self.tx.subscribe())
    }

    /// Hold the bookkeeping of runs until the returned guard is dropped.
    pub fn hold(&self) -> Held {
        let held = Held {
            tx: self.tx.clone(),
            store: self.store.clone(),
            since: Instant::now(),
        };
        held.on();
        held
    }
}

impl Held {
    fn on(&self) {
        self.tx.send_modify(|(hold, on)| {
            *hold += 1;
            *on = true;
        });
        self.store.hold_run_writes(true);
    }

    fn off(&self) {
        self.tx.send_modify(|(_, on)| *on = false);
        self.store.hold_run_writes(false);
    }

    /// Let what waited go on if this hold is older than [`HOLD_LIMIT`], and hold again.
    pub fn limit(&mut self) {
        if self.since.elapsed() >= HOLD_LIMIT {
            self.off();
            self.on();
            self.since = Instant::now();
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.off();
    }
}

impl Gate {
    /// Resolves once no hold is on that was on when this was called.
    pub async fn pass(&mut self) {
        let (hold, on) = *self.0.borrow_and_update();
        if on {
            // An error means the loop is gone, and with it every hold.
            let _ = self.0.wait_for(|&(now, still)| now != hold || !still).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Waker};

    use super::*;
    use crate::store::Sqlite;

    fn holds() -> Holds {
        let clock = crate::clock::FakeClock::new("2026-12-02T10:00:00Z".parse().expect("time"));
        Holds::new(Store::start(Box::new(Sqlite::in_memory()), clock))
    }

    fn ready(future: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
        future
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[test]
    fn a_gate_opens_when_its_hold_ends_even_if_another_began() {
        let holds = holds();
        let mut gate = holds.gate();
        assert!(ready(pin!(gate.pass())), "without a hold nothing waits");
        let mut held = holds.hold();
        let mut first = gate.clone();
        let mut first = pin!(first.pass());
        assert!(!ready(first.as_mut()), "a run waits while its hold is on");
        held.limit();
        assert!(
            !ready(first.as_mut()),
            "a hold younger than the limit goes on"
        );
        // The limit: this hold ends and the next begins; what waited goes on.
        held.off();
        held.on();
        assert!(ready(first.as_mut()));
        let mut second = gate.clone();
        let mut second = pin!(second.pass());
        assert!(!ready(second.as_mut()), "the next hold holds");
        drop(held);
        assert!(ready(second.as_mut()), "dropping the guard releases");
    }
}
