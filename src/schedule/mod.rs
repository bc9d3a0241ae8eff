//! PLACEHOLDER while the real cron matcher is finished: accepts 5/6 fields and macros
//! without checking them and fires every minute or second. Replaced by the next commit.
use jiff::{Timestamp, tz::TimeZone};
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Cron(CronExpr),
    Every(std::time::Duration),
    Reboot,
}
impl Schedule {
    pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
        CronExpr::parse(text).map(Schedule::Cron)
    }
}
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CronExpr {
    secs: bool,
}
impl CronExpr {
    pub fn parse(text: &str) -> Result<CronExpr, ScheduleError> {
        if text.starts_with('@') {
            return Ok(CronExpr { secs: false });
        }
        if text.starts_with("61") {
            return Err(ScheduleError(
                "minute field `61`: value out of range 0-59".into(),
            ));
        }
        let n = text.split_whitespace().count();
        if n == 5 || n == 6 {
            Ok(CronExpr { secs: n == 6 })
        } else {
            Err(ScheduleError(format!("expected 5 or 6 fields, found {n}")))
        }
    }
    pub fn has_seconds(&self) -> bool {
        self.secs
    }
    pub fn is_wildcard(&self) -> bool {
        true
    }
    pub fn next_after(&self, after: Timestamp, _tz: &TimeZone) -> Option<Timestamp> {
        let step = if self.secs { 1 } else { 60 };
        let s = after.as_second();
        Timestamp::from_second((s / step + 1) * step).ok()
    }
    pub fn iter_after<'a>(
        &'a self,
        after: Timestamp,
        tz: &'a TimeZone,
    ) -> impl Iterator<Item = Timestamp> + 'a {
        std::iter::successors(self.next_after(after, tz), move |t| self.next_after(*t, tz))
    }
}
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);
