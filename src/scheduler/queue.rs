//! The loop's queue of next instants: each job with a next instant, soonest first. Kept per
//! job while the daemon leads, so an entry is 16 bytes (the instant's seconds and
//! nanoseconds and the job's index) rather than the 24 of `(Timestamp, usize)`.

use std::collections::BTreeSet;

use jiff::Timestamp;

#[derive(Debug, Default)]
pub(super) struct Queue(BTreeSet<Entry>);

/// Ordered as `(Timestamp, index)` would be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    second: i64,
    nanosecond: i32,
    index: u32,
}

impl Entry {
    fn new(at: Timestamp, index: usize) -> Entry {
        Entry {
            second: at.as_second(),
            nanosecond: at.subsec_nanosecond(),
            index: u32::try_from(index).expect("fewer than 2^32 jobs"),
        }
    }

    fn get(self) -> (Timestamp, usize) {
        let at = Timestamp::new(self.second, self.nanosecond).expect("made from a valid timestamp");
        (at, self.index as usize)
    }
}

impl Queue {
    pub fn first(&self) -> Option<(Timestamp, usize)> {
        self.0.first().map(|e| e.get())
    }

    pub fn pop_first(&mut self) -> Option<(Timestamp, usize)> {
        self.0.pop_first().map(Entry::get)
    }

    pub fn insert(&mut self, at: Timestamp, index: usize) {
        self.0.insert(Entry::new(at, index));
    }

    pub fn remove(&mut self, at: Timestamp, index: usize) {
        self.0.remove(&Entry::new(at, index));
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// Soonest first.
    pub fn iter(&self) -> impl Iterator<Item = (Timestamp, usize)> + '_ {
        self.0.iter().map(|e| e.get())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_soonest_first_then_by_index_and_can_be_removed() {
        let t = |s: &str| -> Timestamp { s.parse().expect("timestamp") };
        let mut q = Queue::default();
        q.insert(t("2026-12-01T10:00:00.5Z"), 1);
        q.insert(t("1969-12-31T23:59:59.25Z"), 7);
        q.insert(t("2026-12-01T10:00:00Z"), 3);
        q.insert(t("2026-12-01T10:00:00Z"), 2);
        q.remove(t("2026-12-01T10:00:00.5Z"), 1);
        let order: Vec<(Timestamp, usize)> = q.iter().collect();
        assert_eq!(
            order,
            vec![
                (t("1969-12-31T23:59:59.25Z"), 7),
                (t("2026-12-01T10:00:00Z"), 2),
                (t("2026-12-01T10:00:00Z"), 3),
            ]
        );
        assert_eq!(q.pop_first(), Some((t("1969-12-31T23:59:59.25Z"), 7)));
        assert_eq!(q.first(), Some((t("2026-12-01T10:00:00Z"), 2)));
        assert_eq!(size_of::<Entry>(), 16);
    }
}
