//! Wall-clock time: the only code that reads it. [`SystemClock`] sleeps on an absolute
//! `CLOCK_REALTIME` timerfd, so a suspend or an NTP step wakes the loop at the right
//! wall time (and a step wakes it at once); [`FakeClock`] is moved by tests.

use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::sync::Arc;

use jiff::Timestamp;
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// A source of wall-clock time and of timers that wait for a wall-clock instant.
pub trait Clock: Clone + Send + Sync + 'static {
    type Timer: Timer;
    fn now(&self) -> Timestamp;
    fn timer(&self) -> io::Result<Self::Timer>;
}

pub trait Timer: Send + 'static {
    /// Returns once the wall clock reaches `deadline`, or earlier when the wall clock was
    /// set (stepped); callers re-read the time and sleep again as needed.
    fn sleep_until(&mut self, deadline: Timestamp) -> impl Future<Output = ()> + Send;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    type Timer = SystemTimer;

    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    fn timer(&self) -> io::Result<SystemTimer> {
        let fd = TimerFd::new(
            ClockId::CLOCK_REALTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        Ok(SystemTimer {
            fd: readable_fd(WallTimerFd(fd))?,
        })
    }
}

pub struct SystemTimer {
    fd: AsyncFd<WallTimerFd>,
}

/// nix's `TimerFd` exposes `AsFd`; tokio wants `AsRawFd`.
struct WallTimerFd(TimerFd);

impl AsRawFd for WallTimerFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Register an owned descriptor with the runtime for readiness.
pub(crate) fn readable_fd<T: AsRawFd>(inner: T) -> io::Result<AsyncFd<T>> {
    // SAFETY: every `T` used here owns its descriptor (OwnedFd or a wrapper of one), so it
    // stays open and refers to the same file for as long as the AsyncFd holds it.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(io::Error::from)
}

impl Timer for SystemTimer {
    async fn sleep_until(&mut self, deadline: Timestamp) {
        let spec = TimeSpec::new(
            deadline.as_second(),
            i64::from(deadline.subsec_nanosecond()),
        );
        let flags =
            TimerSetTimeFlags::TFD_TIMER_ABSTIME | TimerSetTimeFlags::TFD_TIMER_CANCEL_ON_SET;
        if let Err(err) = self.fd.get_ref().0.set(Expiration::OneShot(spec), flags) {
            // Cannot happen with a valid fd and time; never spin on it.
            tracing::error!("cannot arm the wall-clock timer: {err}");
            std::future::pending::<()>().await;
        }
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                std::future::pending::<()>().await;
                return;
            };
            match guard.get_inner().0.wait() {
                // Expired, or ECANCELED: the clock was set. Either way the caller re-reads it.
                Ok(()) | Err(nix::errno::Errno::ECANCELED) => return,
                Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
                Err(err) => {
                    tracing::error!("wall-clock timer failed: {err}");
                    return;
                }
            }
        }
    }
}

/// A clock that only moves when told to; for tests of the scheduling loop.
#[derive(Clone, Debug)]
pub struct FakeClock {
    now: Arc<watch::Sender<Timestamp>>,
}

impl FakeClock {
    pub fn new(start: Timestamp) -> Self {
        FakeClock {
            now: Arc::new(watch::Sender::new(start)),
        }
    }

    /// Move forward by `by` (a step, as NTP or a resume from suspend would).
    pub fn advance(&self, by: std::time::Duration) {
        self.now.send_modify(|t| {
            *t = t
                .checked_add(
                    jiff::SignedDuration::try_from(by).unwrap_or(jiff::SignedDuration::MAX),
                )
                .unwrap_or(Timestamp::MAX)
        });
    }

    /// Set to any instant, also backwards.
    pub fn set(&self, to: Timestamp) {
        self.now.send_replace(to);
    }
}

impl Clock for FakeClock {
    type Timer = FakeTimer;

    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn timer(&self) -> io::Result<FakeTimer> {
        Ok(FakeTimer {
            rx: self.now.subscribe(),
        })
    }
}

pub struct FakeTimer {
    rx: watch::Receiver<Timestamp>,
}

impl Timer for FakeTimer {
    async fn sleep_until(&mut self, deadline: Timestamp) {
        if *self.rx.borrow_and_update() >= deadline {
            return;
        }
        // Any change of the fake time is a step: wake and let the caller re-read it.
        if self.rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn system_timer_fires_at_a_wall_time_in_the_past_at_once() {
        let clock = SystemClock;
        let mut timer = clock.timer().expect("timerfd");
        let past = clock.now() - jiff::SignedDuration::from_secs(5);
        tokio::time::timeout(Duration::from_secs(5), timer.sleep_until(past))
            .await
            .expect("a deadline in the past returns at once");
    }

    #[tokio::test]
    async fn system_timer_waits_for_its_wall_time() {
        let clock = SystemClock;
        let mut timer = clock.timer().expect("timerfd");
        let deadline = clock.now() + jiff::SignedDuration::from_millis(50);
        timer.sleep_until(deadline).await;
        assert!(clock.now() >= deadline);
    }

    #[tokio::test]
    async fn fake_timer_wakes_when_the_fake_time_moves() {
        let start = Timestamp::from_second(1_700_000_000).expect("valid");
        let clock = FakeClock::new(start);
        let mut timer = clock.timer().expect("fake");
        let deadline = start + jiff::SignedDuration::from_secs(60);
        let waiter = tokio::spawn(async move {
            timer.sleep_until(deadline).await;
        });
        clock.advance(Duration::from_secs(60));
        waiter.await.expect("timer task");
        assert_eq!(clock.now(), deadline);
    }
}
