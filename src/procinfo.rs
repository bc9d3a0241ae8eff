//! Process identity on this host: the hostname, the boot id, and a process's start time,
//! so that a recorded pid is only trusted while it still names the same process.

use jiff::Timestamp;

use crate::store::Instance;

pub fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The kernel's id of this boot; pids from another boot name nothing.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`: start time in clock ticks since boot. None if the process
/// does not exist (or is a zombie, which no longer runs anything).
pub fn pid_start(pid: u32) -> Option<i64> {
    // Read once per run started: a stack buffer, not a growing String. The line is a few
    // hundred bytes; a longer one is read in full.
    use std::io::Read;
    let path = format!("/proc/{pid}/stat");
    let mut buf = [0u8; 1024];
    let n = std::fs::File::open(&path).ok()?.read(&mut buf).ok()?;
    let long;
    let stat = if n < buf.len() {
        std::str::from_utf8(&buf[..n]).ok()?
    } else {
        long = std::fs::read_to_string(&path).ok()?;
        &long
    };
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // `rest` starts at field 3 (state); field 22 is 19 further.
    fields.nth(18)?.parse().ok()
}

/// Now, on the clock of `/proc/PID/stat` field 22: clock ticks since boot (`CLOCK_BOOTTIME`
/// divided as the kernel divides a process's start time). None where that division is not
/// exact.
pub fn boot_ticks() -> Option<i64> {
    static NS_PER_TICK: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
    let ns_per_tick = (*NS_PER_TICK.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        (hz > 0 && 1_000_000_000 % hz == 0).then(|| 1_000_000_000 / hz)
    }))?;
    let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME).ok()?;
    Some((now.tv_sec() * 1_000_000_000 + now.tv_nsec()) / ns_per_tick)
}

/// The start time ([`pid_start`]) of `pid`, a process this one created after `before` was
/// read from [`boot_ticks`]: if the clock is still on that tick, the process started on it
/// too, and `/proc` need not be read (~8 us a start).
pub fn child_start(pid: u32, before: Option<i64>) -> Option<i64> {
    match (before, boot_ticks()) {
        (Some(before), Some(now)) if now == before => Some(before),
        _ => pid_start(pid),
    }
}

/// Whether any process of process group `pgid` is alive (zombies, which only wait to be
/// reaped by their new parent, do not count). Scans `/proc`: for the rare leftover path.
pub fn group_has_live_members(pgid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.flatten().any(|entry| {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next();
        // Fields after the state: ppid, pgrp.
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pgid) && !matches!(state, Some("Z" | "X"))
    })
}

/// Whether `pid` still names the process that had start time `start` on this boot.
pub fn process_matches(pid: u32, start: Option<i64>) -> bool {
    match (pid_start(pid), start) {
        (Some(now), Some(then)) => now == then,
        _ => false,
    }
}

/// This daemon process.
pub fn current_instance(now: Timestamp) -> Instance {
    let host = hostname();
    let pid = std::process::id();
    let pid_start = pid_start(pid);
    Instance {
        id: format!("{host}:{pid}:{}", pid_start.unwrap_or(0)),
        host,
        pid,
        pid_start,
        boot_id: boot_id(),
        started_at: now,
    }
}

/// Whether an instance recorded with these facts is alive: Some(answer) on this host and
/// boot, None when it lives elsewhere and cannot be checked from here.
pub fn instance_alive(
    me: &Instance,
    host: &str,
    boot_id: &str,
    pid: u32,
    pid_start: Option<i64>,
) -> Option<bool> {
    if host != me.host {
        return None;
    }
    if boot_id != me.boot_id {
        return Some(false);
    }
    Some(process_matches(pid, pid_start))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_membership_is_seen_in_proc() {
        let pgid = nix::unistd::getpgid(None).expect("pgid").as_raw() as u32;
        assert!(
            group_has_live_members(pgid),
            "this process is in its own group {pgid}"
        );
        assert!(!group_has_live_members(u32::MAX - 7), "no such group");
    }

    #[test]
    fn a_childs_start_time_from_the_boot_clock_is_the_one_proc_shows() {
        let mut compared = 0;
        while compared < 20 {
            let before = boot_ticks();
            let mut child = std::process::Command::new("sleep")
                .arg("5")
                .spawn()
                .expect("spawn sleep");
            let pid = child.id();
            let (fast, proc) = (child_start(pid, before), pid_start(pid));
            let _ = child.kill();
            let _ = child.wait();
            assert!(proc.is_some());
            assert_eq!(fast, proc, "child {pid}, clock before {before:?}");
            compared += 1;
        }
        // A clock that moved on since `before` falls back to /proc.
        let me = std::process::id();
        assert_eq!(child_start(me, Some(-1)), pid_start(me));
    }

    #[test]
    fn this_process_matches_itself_and_not_another_start_time() {
        let me = std::process::id();
        let start = pid_start(me);
        assert!(start.is_some());
        assert!(process_matches(me, start));
        assert!(!process_matches(me, start.map(|s| s + 1)));
        assert!(!process_matches(u32::MAX - 1, Some(1)));
    }
}
