//! When jobs fire: the next instant of each kind of timing, and which instants to fire when
//! a job is found due, on time or after a gap (a clock step, downtime, a failover). Pure.

use jiff::{SignedDuration, Timestamp};

use crate::config::{CATCH_UP_ALL_LIMIT, CatchUp, Job, Timing};
use crate::run::Trigger;
use crate::schedule::Schedule;

/// An instant found due this late or less is "on time" and fires whatever `catch_up` says.
pub const ON_TIME: SignedDuration = SignedDuration::from_secs(60);

/// The first instant of `job` strictly after `after`. `anchor` is where `@every` counts from.
pub fn next_fire(job: &Job, after: Timestamp, anchor: Timestamp) -> Option<Timestamp> {
    match &job.timing {
        Timing::Schedule(Schedule::Cron(expr)) => expr.next_after(after, &job.zone.tz),
        Timing::Schedule(Schedule::Every(every)) => next_every(*every, anchor, after),
        Timing::Schedule(Schedule::Reboot) => None,
        Timing::At(at) => (*at > after).then_some(*at),
    }
}

fn next_every(
    every: std::time::Duration,
    anchor: Timestamp,
    after: Timestamp,
) -> Option<Timestamp> {
    let step = i128::try_from(every.as_nanos()).ok().filter(|&s| s > 0)?;
    let elapsed = after.as_nanosecond() - anchor.as_nanosecond();
    let k = if elapsed < 0 { 0 } else { elapsed / step + 1 };
    Timestamp::from_nanosecond(anchor.as_nanosecond() + k * step).ok()
}

/// What to fire for a job found due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Due {
    /// Instants to run, oldest first, with the trigger to record.
    pub fire: Vec<(Timestamp, Trigger)>,
    /// The due instants that will not run (by `catch_up` or `starting_deadline`), if any:
    /// the first and the last of them.
    pub passed_over: Option<(Timestamp, Timestamp)>,
}

/// `first` is an instant of `job` at or before `now` that was not decided yet; every later
/// instant up to `now` is due too. Decide which of them run, by the job's `catch_up` and
/// `starting_deadline`.
pub fn due(job: &Job, first: Timestamp, now: Timestamp, anchor: Timestamp) -> Due {
    let wanted = match job.settings.catch_up {
        CatchUp::All => CATCH_UP_ALL_LIMIT,
        CatchUp::Latest | CatchUp::None => 1,
    };
    let (recent, older_dropped) = latest_n(job, first, now, anchor, wanted);
    let latest = *recent.last().unwrap_or(&first);
    let in_deadline = |t: Timestamp| {
        job.settings
            .starting_deadline
            .is_none_or(|d| SignedDuration::try_from(d).is_ok_and(|d| now - d <= t))
    };
    let on_time = now.duration_since(latest) <= ON_TIME;
    let mut fire: Vec<(Timestamp, Trigger)> = match job.settings.catch_up {
        CatchUp::None if !on_time => Vec::new(),
        CatchUp::None | CatchUp::Latest => vec![(
            latest,
            if on_time {
                Trigger::Schedule
            } else {
                Trigger::CatchUp
            },
        )],
        CatchUp::All => recent
            .iter()
            .map(|&t| {
                (
                    t,
                    if t == latest && on_time {
                        Trigger::Schedule
                    } else {
                        Trigger::CatchUp
                    },
                )
            })
            .collect(),
    };
    fire.retain(|&(t, _)| in_deadline(t));
    let first_run = fire.first().map(|&(t, _)| t);
    let passed_over = if older_dropped || first_run != Some(first) {
        let last_not_run = match first_run {
            // Everything before the first run instant was passed over.
            Some(t) => previous_before(job, first, t, anchor).unwrap_or(first),
            None => latest,
        };
        Some((first, last_not_run))
    } else {
        None
    };
    Due { fire, passed_over }
}

/// The last instant strictly before `before`, starting the walk at `from` (which is one).
fn previous_before(
    job: &Job,
    from: Timestamp,
    before: Timestamp,
    anchor: Timestamp,
) -> Option<Timestamp> {
    if from >= before {
        return None;
    }
    let (list, _) = latest_n(job, from, before - SignedDuration::from_nanos(1), anchor, 1);
    list.last().copied()
}

/// The (at most) `n` latest instants in `[first, now]`, oldest first, and whether older ones
/// exist that were left out. Looks in growing windows before `now`, so a gap of a year costs
/// a handful of steps, not one per missed instant.
fn latest_n(
    job: &Job,
    first: Timestamp,
    now: Timestamp,
    anchor: Timestamp,
    n: usize,
) -> (Vec<Timestamp>, bool) {
    const WINDOWS_SECS: [i64; 6] = [1, 60, 3_600, 86_400, 32 * 86_400, 366 * 86_400];
    for secs in WINDOWS_SECS {
        let from = now - SignedDuration::from_secs(secs);
        if from < first {
            break;
        }
        let list = collect_until(job, from, now, anchor, usize::MAX);
        if list.len() >= n {
            let skip = list.len() - n;
            return (list[skip..].to_vec(), true);
        }
    }
    let mut all = vec![first];
    all.extend(collect_until(job, first, now, anchor, usize::MAX));
    let dropped = all.len() > n;
    let skip = all.len().saturating_sub(n);
    (all[skip..].to_vec(), dropped)
}

/// Instants in `(after, until]`.
fn collect_until(
    job: &Job,
    after: Timestamp,
    until: Timestamp,
    anchor: Timestamp,
    cap: usize,
) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut t = after;
    while let Some(next) = next_fire(job, t, anchor).filter(|&n| n <= until) {
        out.push(next);
        if out.len() >= cap {
            break;
        }
        t = next;
    }
    out
}

#[cfg(test)]
mod tests;
