//! Leader decisions as pure functions of the lease row, the time and this instance.

use jiff::Timestamp;

use crate::store::{Instance, Lease};

/// What this instance should do about the lease it sees.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It is ours already.
    Mine,
    /// Nobody holds it, it expired, or its holder is dead: take it (with a new epoch).
    Take,
    /// Someone else holds it: wait until it expires (or the holder dies).
    Wait { until: Timestamp },
}

/// Decide from the lease row. `holder_alive` is Some(answer) when the holder's process can
/// be checked from here (same host) and None when it cannot.
pub fn judge(
    lease: Option<&Lease>,
    me: &Instance,
    now: Timestamp,
    holder_alive: Option<bool>,
) -> Verdict {
    let Some(lease) = lease else {
        return Verdict::Take;
    };
    if lease.holder == me.id {
        return Verdict::Mine;
    }
    if lease.expires_at <= now || holder_alive == Some(false) {
        return Verdict::Take;
    }
    Verdict::Wait {
        until: lease.expires_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn me() -> Instance {
        Instance {
            id: "h:1:1".into(),
            host: "h".into(),
            pid: 1,
            pid_start: Some(1),
            boot_id: "b".into(),
            started_at: t("2026-11-24T10:00:00Z"),
        }
    }

    fn held_by(holder: &str, expires: &str) -> Lease {
        Lease {
            holder: holder.into(),
            host: "h".into(),
            pid: 2,
            pid_start: Some(2),
            epoch: 7,
            acquired_at: t("2026-11-24T10:00:00Z"),
            expires_at: t(expires),
        }
    }

    #[test]
    fn verdicts() {
        let now = t("2026-11-24T10:00:30Z");
        let other = held_by("h:2:2", "2026-11-24T10:00:45Z");
        let cases = [
            (None, None, Verdict::Take),
            (
                Some(held_by("h:1:1", "2026-11-24T10:00:45Z")),
                None,
                Verdict::Mine,
            ),
            (
                Some(other.clone()),
                Some(true),
                Verdict::Wait {
                    until: t("2026-11-24T10:00:45Z"),
                },
            ),
            (
                Some(other.clone()),
                None,
                Verdict::Wait {
                    until: t("2026-11-24T10:00:45Z"),
                },
            ),
            (Some(other.clone()), Some(false), Verdict::Take),
            (
                Some(held_by("h:2:2", "2026-11-24T10:00:30Z")),
                Some(true),
                Verdict::Take,
            ),
        ];
        for (lease, alive, want) in cases {
            assert_eq!(
                judge(lease.as_ref(), &me(), now, alive),
                want,
                "{lease:?} alive={alive:?}"
            );
        }
    }
}
