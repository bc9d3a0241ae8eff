//! `schedctl status`: the leader (instance, host, pid, epoch, since), the standbys, and
//! the running runs with their age; plainly says when no daemon runs (exit 1 then).

use std::path::Path;

use jiff::Timestamp;
use serde_json::{Value, json};

use super::view::{self, Table};
use crate::clock::{Clock, SystemClock};
use crate::error::Error;
use crate::procinfo;
use crate::store::{Backend, InstanceRow, Lease, RunRecord};

/// What `status` reports.
pub struct Status {
    /// The lease while it is valid and its holder alive.
    pub leader: Option<Lease>,
    /// The lease row otherwise (expired, released, or its holder dead), for the message.
    pub stale: Option<Lease>,
    pub standbys: Vec<InstanceRow>,
    pub running: Vec<RunRecord>,
}

pub fn run(config_path: &Path, json: bool) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let now = SystemClock.now();
    let status = match view::open_state(&config)? {
        Some(mut db) => gather(&mut db, now).map_err(|e| Error::Failed(e.into()))?,
        None => Status {
            leader: None,
            stale: None,
            standbys: Vec::new(),
            running: Vec::new(),
        },
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&to_json(&status)).unwrap_or_default()
        );
    } else {
        print!("{}", render(&status, now, view::Look::of_stdout()));
    }
    Ok(if status.leader.is_some() { 0 } else { 1 })
}

pub fn gather(db: &mut impl Backend, now: Timestamp) -> crate::store::Result<Status> {
    let lease = db.lease()?;
    let me = procinfo::current_instance(now);
    let alive = |host: &str, boot: Option<&str>, pid: u32, start: Option<i64>| match boot {
        Some(boot) => procinfo::instance_alive(&me, host, boot, pid, start),
        None => (host == me.host).then(|| procinfo::process_matches(pid, start)),
    };
    let (leader, stale) = match lease {
        Some(l)
            if l.expires_at > now && alive(&l.host, None, l.pid, l.pid_start) != Some(false) =>
        {
            (Some(l), None)
        }
        other => (None, other),
    };
    let holder = leader.as_ref().map(|l| l.holder.clone());
    let standbys = db
        .instances()?
        .into_iter()
        .filter(|i| Some(&i.id) != holder.as_ref() && i.role != "stopped")
        .filter(|i| alive(&i.host, Some(&i.boot_id), i.pid, i.pid_start) == Some(true))
        .collect();
    let running = db.active_runs()?;
    Ok(Status {
        leader,
        stale,
        standbys,
        running,
    })
}

pub fn render(status: &Status, now: Timestamp, look: view::Look) -> String {
    let utc = jiff::tz::TimeZone::UTC;
    let mut out = String::new();
    match (&status.leader, &status.stale) {
        (Some(l), _) => out.push_str(&format!(
            "{}    {} (pid {} on {}), epoch {}, since {} ({})\n",
            view::paint("leader", look.color),
            l.holder,
            l.pid,
            l.host,
            l.epoch,
            view::local(l.acquired_at, &utc),
            view::relative(l.acquired_at, now)
        )),
        (None, Some(l)) => out.push_str(&format!(
            "no daemon is running: the last leader, {} (pid {} on {}), held the lease until {}; start one with `schedctl daemon` or `systemctl start schedctl`\n",
            l.holder,
            l.pid,
            l.host,
            view::relative(l.expires_at.max(l.acquired_at), now)
        )),
        (None, None) => out.push_str("no daemon is running: none has run on this state yet; start one with `schedctl daemon` or `systemctl start schedctl`\n"),
    }
    for s in &status.standbys {
        out.push_str(&format!(
            "standby   {} (pid {} on {}), seen {}\n",
            s.id,
            s.pid,
            s.host,
            view::relative(s.seen_at, now)
        ));
    }
    if status.running.is_empty() {
        out.push_str("running   nothing\n");
        return out;
    }
    out.push_str(&format!(
        "running   {} run{}\n",
        status.running.len(),
        if status.running.len() == 1 { "" } else { "s" }
    ));
    let mut table = Table::new(&["RUN", "JOB", "STATE", "PID", "STARTED", "AGE"], 1);
    for run in &status.running {
        let started = run.started_at.unwrap_or(run.created_at);
        table.row(vec![
            run.id.to_string(),
            run.job.clone(),
            run.state.clone(),
            run.pid.map_or_else(|| "-".to_owned(), |p| p.to_string()),
            view::local(started, &utc),
            view::short_duration(now.duration_since(started)),
        ]);
        table.paint_last(2, look.color);
    }
    out.push_str(&table.render(look.width));
    out
}

pub fn to_json(status: &Status) -> Value {
    let lease = |l: &Lease| {
        json!({
            "instance": l.holder, "host": l.host, "pid": l.pid, "epoch": l.epoch,
            "since": view::rfc3339_utc(l.acquired_at), "lease_expires_at": view::rfc3339_utc(l.expires_at),
        })
    };
    json!({
        "running_daemon": status.leader.is_some(),
        "leader": status.leader.as_ref().map(lease),
        "last_leader": status.stale.as_ref().map(lease),
        "standbys": status.standbys.iter().map(|s| json!({
            "instance": s.id, "host": s.host, "pid": s.pid,
            "started_at": view::rfc3339_utc(s.started_at), "seen_at": view::rfc3339_utc(s.seen_at),
        })).collect::<Vec<_>>(),
        "running": status.running.iter().map(|r| json!({
            "run_id": r.id.0, "job": r.job, "state": r.state, "pid": r.pid, "instance": r.instance,
            "started_at": r.started_at.map(view::rfc3339_utc), "trigger": r.trigger, "attempt": r.attempt,
        })).collect::<Vec<_>>(),
    })
}
