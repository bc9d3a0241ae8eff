//! `schedctl validate [--next N]`: check the job file; print every error (exit 2) or a
//! summary, and optionally each job's next N fire instants.

use std::path::Path;

use crate::clock::{Clock, SystemClock};
use crate::config::Timing;
use crate::error::Error;
use crate::schedule::Schedule;
use crate::scheduler::timeline;

pub fn run(config_path: &Path, next: Option<usize>) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let n = config.jobs.len();
    println!(
        "{}: ok, {n} job{}",
        config_path.display(),
        if n == 1 { "" } else { "s" }
    );
    let Some(count) = next else {
        return Ok(0);
    };
    let now = SystemClock.now();
    for job in &config.jobs {
        let disabled = if job.settings.enabled {
            ""
        } else {
            " (disabled)"
        };
        println!(
            "{}  {}  {}{disabled}",
            job.name, job.schedule_text, job.zone.name
        );
        match &job.timing {
            Timing::Schedule(Schedule::Reboot) => {
                println!("  (once each time the daemon starts as leader)")
            }
            Timing::Schedule(Schedule::Every(_)) => {
                println!("  (an interval counted from the daemon's first start)")
            }
            _ => {
                let mut t = now;
                for _ in 0..count {
                    let Some(next) = timeline::next_fire(job, t, now) else {
                        break;
                    };
                    println!("  {}", super::next::rfc3339(next, &job.zone.tz));
                    t = next;
                }
            }
        }
    }
    Ok(0)
}
