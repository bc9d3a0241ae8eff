//! The SQLite backend: WAL, a busy timeout, `user_version` migrations, careful opening
//! (a directory, a non-database file, a read-only file, a network filesystem or a newer
//! schema is refused with a message, and nothing is overwritten), and the [`Backend`]
//! operations as short transactions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use super::{
    Abandon, Backend, Finish, Finished, Instance, InstanceRow, JobState, Lease, NewRun, NewTrigger,
    Recorded, Result, RunOutputRecord, RunRecord, Started, StoreError, TriggerRow, from_millis,
    schema, to_millis, trigger_from_str,
};
use crate::run::{RunId, Trigger};

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the state database could not be opened; the message names the path and the fix.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(pub String);

pub struct Sqlite {
    conn: Connection,
}

/// Filesystems whose locking SQLite cannot rely on (statfs magic numbers from statfs(2)).
const NETWORK_FILESYSTEMS: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0x517B, "SMB"),
    (0xFF53_4D42, "CIFS"),
    (0xFE53_4D42, "SMB2"),
    (0x0102_1997, "9P"),
    (0x00C3_6400, "Ceph"),
    (0x5346_414F, "AFS"),
    (0x7375_7245, "Coda"),
    (0x564C, "NCP"),
    (0x0BD0_0BD0, "Lustre"),
];

impl Sqlite {
    /// Open (creating if needed) the state database at `path` and bring its schema up to date.
    pub fn open(path: &Path) -> std::result::Result<Sqlite, OpenError> {
        let shown = path.display();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => {
                return Err(OpenError(format!(
                    "state path `{shown}` is a directory; set [daemon] state to a file inside it, such as `{}`",
                    path.join("schedctl.db").display()
                )));
            }
            Ok(m) => {
                if m.len() > 0 && !has_sqlite_header(path) {
                    return Err(OpenError(format!(
                        "state file `{shown}` is not a SQLite database; move it away or set [daemon] state to another path (nothing was changed)"
                    )));
                }
                if nix::unistd::access(path, nix::unistd::AccessFlags::W_OK).is_err() {
                    return Err(OpenError(format!(
                        "state file `{shown}` is read-only for this user; make it writable or set [daemon] state to another path"
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                if !dir.is_dir() {
                    return Err(OpenError(format!(
                        "directory `{}` of state file `{shown}` does not exist; create it or set [daemon] state to another path",
                        dir.display()
                    )));
                }
            }
            Err(e) => {
                return Err(OpenError(format!(
                    "cannot access state file `{shown}`: {e}"
                )));
            }
        }
        if let Some(fs) = network_filesystem(&dir) {
            return Err(OpenError(format!(
                "state file `{shown}` is on a network filesystem ({fs}), where SQLite's locking is unreliable; put it on a local disk, or use PostgreSQL for several hosts"
            )));
        }
        if nix::unistd::access(&dir, nix::unistd::AccessFlags::W_OK).is_err() {
            return Err(OpenError(format!(
                "directory `{}` is not writable for this user; SQLite needs to create its journal files there",
                dir.display()
            )));
        }
        let conn = Connection::open(path)
            .map_err(|e| OpenError(format!("cannot open state file `{shown}`: {e}")))?;
        let mut db = Sqlite { conn };
        db.prepare(&shown.to_string())?;
        Ok(db)
    }

    /// A private in-memory database (tests).
    pub fn in_memory() -> Sqlite {
        let conn = Connection::open_in_memory().expect("an in-memory SQLite database");
        let mut db = Sqlite { conn };
        db.prepare(":memory:")
            .expect("migrations apply to an empty database");
        db
    }

    fn prepare(&mut self, shown: &str) -> std::result::Result<(), OpenError> {
        let explain = |e: rusqlite::Error| describe_open_error(shown, &e);
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(explain)?;
        self.conn
            .set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // A new, empty file is created without fsyncs: with the default `synchronous`,
        // writing its first page and schema cost ~50 ms of journal fsyncs here, for a file
        // that holds nothing yet. A power loss in that moment can leave it torn, which the
        // next start reports (not a database: move it away) instead of guessing.
        let fresh = self
            .conn
            .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
            .map_err(explain)?
            == 0;
        if fresh {
            self.conn
                .execute_batch("PRAGMA synchronous = OFF;")
                .map_err(explain)?;
        }
        let mode = self.switch_to_wal().map_err(explain)?;
        if mode != "wal" && mode != "memory" {
            return Err(OpenError(format!(
                "state file `{shown}`: cannot switch to WAL mode (got `{mode}`)"
            )));
        }
        let pragmas = if fresh {
            "PRAGMA foreign_keys = ON;"
        } else {
            "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
        };
        self.conn.execute_batch(pragmas).map_err(explain)?;
        self.migrate(shown)?;
        if fresh {
            self.conn
                .execute_batch("PRAGMA synchronous = NORMAL;")
                .map_err(explain)?;
        }
        Ok(())
    }

    /// `PRAGMA journal_mode = WAL`. While another process is creating the same new file,
    /// SQLite answers SQLITE_BUSY at once instead of waiting (no busy handler for a journal
    /// mode change), so retry briefly, up to the busy timeout.
    fn switch_to_wal(&self) -> rusqlite::Result<String> {
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        let mut pause = Duration::from_millis(1);
        loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            {
                Err(e)
                    if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy)
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                other => return other,
            }
        }
    }

    /// Apply missing migrations. Several processes may open a new file at once (a daemon and
    /// a `run-now`), so the version is read and advanced inside one exclusive transaction.
    fn migrate(&mut self, shown: &str) -> std::result::Result<(), OpenError> {
        let explain = |e: rusqlite::Error| describe_open_error(shown, &e);
        let known = schema::current_version();
        let newer = |version: i64| {
            OpenError(format!(
                "state file `{shown}` has schema version {version}, newer than this schedctl knows ({known}); upgrade schedctl or set [daemon] state to another path"
            ))
        };
        let version: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(explain)?;
        if version > known {
            return Err(newer(version));
        }
        if version == known {
            return Ok(());
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(explain)?;
        let version: i64 = tx
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(explain)?;
        if version > known {
            return Err(newer(version));
        }
        for (i, migration) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
            tx.execute_batch(migration).map_err(explain)?;
            tx.pragma_update(None, "user_version", i as i64 + 1)
                .map_err(explain)?;
        }
        tx.commit().map_err(explain)
    }

    fn check_epoch(tx: &rusqlite::Transaction<'_>, me: &Instance, epoch: i64) -> Result<()> {
        let current: Option<(String, i64)> = tx
            .prepare_cached(CHECK_EPOCH)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        match current {
            Some((holder, e)) if holder == me.id && e == epoch => Ok(()),
            _ => Err(StoreError::Fenced(epoch)),
        }
    }
}

/// Is the lease still ours: its holder and epoch.
const CHECK_EPOCH: &str = "SELECT holder, epoch FROM lease WHERE id = 1";

/// A decided run; nothing if its instant was decided before (`UNIQUE(job, scheduled_for)`).
const INSERT_RUN: &str = "INSERT INTO runs (job, scheduled_for, trigger, attempt, state, instance, epoch, boot_id, created_at, ended_at, reason)
   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
   ON CONFLICT DO NOTHING";

/// Job ?1's latest decided instant, never moved back.
const MARK_FIRED: &str = "INSERT INTO job_state (job, last_fired) VALUES (?1, ?2)
   ON CONFLICT (job) DO UPDATE SET last_fired = max(coalesce(last_fired, 0), excluded.last_fired)";

/// Request ?1 was taken by run ?3 at ?2.
const CONSUME_TRIGGER: &str =
    "UPDATE triggers SET consumed_at = ?2, run_id = ?3 WHERE id = ?1 AND consumed_at IS NULL";

const MARK_RUNNING: &str =
    "UPDATE runs SET state = 'running', pid = ?2, pid_start = ?3, started_at = ?4
   WHERE id = ?1 AND state = 'pending'";

const FINISH_RUN: &str =
    "UPDATE runs SET state = ?2, started_at = coalesce(started_at, ?3), ended_at = ?4,
     exit_code = ?5, signal = ?6, reason = ?7, output_tail = ?8, result = ?9
   WHERE id = ?1 AND state IN ('pending', 'running')";

/// Job ?1's consecutive failures: back to 0 on a success (?3), one more otherwise.
const COUNT_FAILURES: &str = "INSERT INTO job_state (job, consecutive_failures) VALUES (?1, ?2)
   ON CONFLICT (job) DO UPDATE SET consecutive_failures =
     CASE WHEN ?3 THEN 0 ELSE consecutive_failures + 1 END";

const PAUSE_AFTER_FAILURES: &str = "UPDATE job_state SET paused = 1, paused_reason = ?3
   WHERE job = ?1 AND paused = 0 AND consecutive_failures >= ?2";

const INSERT_TRIGGER: &str =
    "INSERT INTO triggers (job, kind, not_before, scheduled_for, attempt, created_at, origin)
   VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// Every statement that recording a run's decision, start and end can use (a test keeps
/// this list complete), compiled ahead by [`Backend::prepare_run_statements`].
const RUN_STATEMENTS: [&str; 12] = [
    CHECK_EPOCH,
    INSERT_RUN,
    MARK_FIRED,
    CONSUME_TRIGGER,
    MARK_RUNNING,
    FINISH_RUN,
    COUNT_FAILURES,
    PAUSE_AFTER_FAILURES,
    INSERT_TRIGGER,
    HISTORY_CUTOFF,
    TRIM_REQUESTS,
    TRIM_RUNS,
];

/// Room in the connection's cache of compiled statements: the run statements and the
/// lease's, requests' and pauses' (~25 in all) stay compiled (rusqlite's default is 16,
/// and the least recently used went first).
const STATEMENT_CACHE: usize = 32;

/// The newest of job ?1's finished runs that are beyond the newest ?2 (the first to go).
/// Its condition on `state` is the one of the index `runs_finished_by_job`, which it walks
/// instead of the table (a test checks the plan).
const HISTORY_CUTOFF: &str =
    "SELECT id FROM runs WHERE job = ?1 AND state NOT IN ('pending', 'running')
   ORDER BY id DESC LIMIT 1 OFFSET ?2";

/// Keep the newest `limit` finished runs of `job`. The run-now and retry requests that
/// started the runs deleted here are deleted with them (else they would stay for good,
/// naming no run).
fn trim_history(tx: &rusqlite::Transaction<'_>, job: &str, limit: u32) -> Result<()> {
    let cutoff: Option<i64> = tx
        .prepare_cached(HISTORY_CUTOFF)?
        .query_row(params![job, limit], |r| r.get(0))
        .optional()?;
    let Some(cutoff) = cutoff else {
        return Ok(());
    };
    for delete in [TRIM_REQUESTS, TRIM_RUNS] {
        tx.prepare_cached(delete)?.execute(params![job, cutoff])?;
    }
    Ok(())
}

/// Delete the requests (triggers) that started job ?1's finished runs up to id ?2.
const TRIM_REQUESTS: &str = "DELETE FROM triggers WHERE run_id IN (
   SELECT id FROM runs WHERE job = ?1 AND state NOT IN ('pending', 'running') AND id <= ?2)";

/// Delete job ?1's finished runs up to id ?2.
const TRIM_RUNS: &str =
    "DELETE FROM runs WHERE job = ?1 AND state NOT IN ('pending', 'running') AND id <= ?2";

/// Record one run's end inside `tx`: see [`Backend::finish_runs`].
fn finish_one(
    tx: &rusqlite::Transaction<'_>,
    f: &Finish,
    retry: Option<&NewTrigger>,
    history_limit: u32,
) -> Result<Finished> {
    let changed = tx.prepare_cached(FINISH_RUN)?.execute(params![
        f.run_id.0,
        f.state,
        f.started_at.map(to_millis),
        to_millis(f.ended_at),
        f.exit_code,
        f.signal,
        f.reason,
        f.output_tail,
        f.result,
    ])?;
    if changed > 0 {
        tx.prepare_cached(COUNT_FAILURES)?.execute(params![
            f.job,
            u32::from(!f.success),
            f.success
        ])?;
        trim_history(tx, &f.job, history_limit)?;
    }
    let mut paused = false;
    if let (true, Some(limit)) = (changed > 0 && !f.success, f.pause_after) {
        let reason = format!("paused after {limit} consecutive failed runs");
        paused = tx
            .prepare_cached(PAUSE_AFTER_FAILURES)?
            .execute(params![f.job, limit, reason])?
            > 0;
    }
    // A job that is paused now gets no retry.
    let retry = match retry {
        Some(t) if changed > 0 && !paused => Some(insert_trigger(tx, t, f.ended_at)?),
        _ => None,
    };
    Ok(Finished { retry, paused })
}

fn has_sqlite_header(path: &Path) -> bool {
    use std::io::Read;
    let mut header = [0u8; 16];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map(|()| &header == b"SQLite format 3\0")
        .unwrap_or(false)
}

fn network_filesystem(dir: &Path) -> Option<&'static str> {
    let stat = nix::sys::statfs::statfs(dir).ok()?;
    let magic = stat.filesystem_type().0 as i64;
    NETWORK_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

fn describe_open_error(shown: &str, e: &rusqlite::Error) -> OpenError {
    use rusqlite::ErrorCode;
    let code = e.sqlite_error_code();
    OpenError(match code {
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => format!(
            "state file `{shown}` is not a SQLite database or is corrupt ({e}); move it away or set [daemon] state to another path (nothing was changed)"
        ),
        Some(ErrorCode::ReadOnly)
        | Some(ErrorCode::CannotOpen)
        | Some(ErrorCode::PermissionDenied) => format!(
            "state file `{shown}` cannot be written ({e}); check the permissions of the file and its directory"
        ),
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => format!(
            "state file `{shown}` stayed locked by another process for {}s ({e}); is something holding a write transaction open?",
            BUSY_TIMEOUT.as_secs()
        ),
        _ => format!("state file `{shown}`: {e}"),
    })
}

const RUN_COLUMNS: &str = "id, job, scheduled_for, trigger, attempt, state, instance, epoch, boot_id, pid, pid_start, created_at, started_at, ended_at, exit_code, signal, reason";

fn run_record(r: &Row<'_>) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: RunId(r.get(0)?),
        job: r.get(1)?,
        scheduled_for: from_millis(r.get(2)?),
        trigger: r.get(3)?,
        attempt: r.get(4)?,
        state: r.get(5)?,
        instance: r.get(6)?,
        epoch: r.get(7)?,
        boot_id: r.get(8)?,
        pid: r.get(9)?,
        pid_start: r.get(10)?,
        created_at: from_millis(r.get(11)?),
        started_at: r.get::<_, Option<i64>>(12)?.map(from_millis),
        ended_at: r.get::<_, Option<i64>>(13)?.map(from_millis),
        exit_code: r.get(14)?,
        signal: r.get(15)?,
        reason: r.get(16)?,
    })
}

fn lease_row(r: &Row<'_>) -> rusqlite::Result<Lease> {
    Ok(Lease {
        holder: r.get(0)?,
        host: r.get(1)?,
        pid: r.get(2)?,
        pid_start: r.get(3)?,
        epoch: r.get(4)?,
        acquired_at: from_millis(r.get(5)?),
        expires_at: from_millis(r.get(6)?),
    })
}

fn count_change(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('changes', '1')
         ON CONFLICT (key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
    )?
    .execute([])?;
    Ok(())
}

fn trigger_row(r: &Row<'_>) -> rusqlite::Result<TriggerRow> {
    Ok(TriggerRow {
        id: r.get(0)?,
        job: r.get(1)?,
        kind: trigger_from_str(&r.get::<_, String>(2)?),
        not_before: from_millis(r.get(3)?),
        scheduled_for: from_millis(r.get(4)?),
        attempt: r.get(5)?,
    })
}

fn insert_trigger(
    tx: &rusqlite::Transaction<'_>,
    t: &NewTrigger,
    now: Timestamp,
) -> Result<TriggerRow> {
    tx.prepare_cached(INSERT_TRIGGER)?.execute(params![
        t.job,
        t.kind.as_str(),
        to_millis(t.not_before),
        to_millis(t.scheduled_for),
        t.attempt,
        to_millis(now),
        t.origin
    ])?;
    Ok(TriggerRow {
        id: tx.last_insert_rowid(),
        job: t.job.clone(),
        kind: t.kind,
        not_before: t.not_before,
        scheduled_for: t.scheduled_for,
        attempt: t.attempt,
    })
}

fn expires(now: Timestamp, ttl: Duration) -> i64 {
    to_millis(now).saturating_add(ttl.as_millis() as i64)
}

impl Backend for Sqlite {
    fn prepare_run_statements(&mut self) -> Result<()> {
        for sql in RUN_STATEMENTS {
            self.conn.prepare_cached(sql)?;
        }
        Ok(())
    }

    fn register_instance(&mut self, me: &Instance, role: &str, now: Timestamp) -> Result<()> {
        self.conn.execute(
            "INSERT INTO instances (id, host, pid, pid_start, boot_id, started_at, seen_at, role)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at, role = excluded.role",
            params![
                me.id,
                me.host,
                me.pid,
                me.pid_start,
                me.boot_id,
                to_millis(me.started_at),
                to_millis(now),
                role
            ],
        )?;
        Ok(())
    }

    fn forget_instances(&mut self, seen_before: Timestamp) -> Result<usize> {
        Ok(self.conn.execute(
            "DELETE FROM instances WHERE seen_at < ?1
               AND id NOT IN (SELECT holder FROM lease)
               AND id NOT IN (SELECT instance FROM runs WHERE state IN ('pending', 'running'))",
            params![to_millis(seen_before)],
        )?)
    }

    fn instances(&mut self) -> Result<Vec<InstanceRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, host, pid, pid_start, boot_id, started_at, seen_at, role FROM instances ORDER BY started_at",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(InstanceRow {
                id: r.get(0)?,
                host: r.get(1)?,
                pid: r.get(2)?,
                pid_start: r.get(3)?,
                boot_id: r.get(4)?,
                started_at: from_millis(r.get(5)?),
                seen_at: from_millis(r.get(6)?),
                role: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn lease(&mut self) -> Result<Option<Lease>> {
        Ok(self
            .conn
            .query_row(
                "SELECT holder, host, pid, pid_start, epoch, acquired_at, expires_at FROM lease WHERE id = 1",
                [],
                lease_row,
            )
            .optional()?)
    }

    fn take_lease(
        &mut self,
        me: &Instance,
        expected: Option<&Lease>,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Option<Lease>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current = tx
            .prepare_cached("SELECT holder, host, pid, pid_start, epoch, acquired_at, expires_at FROM lease WHERE id = 1")?
            .query_row(
                [],
                lease_row,
            )
            .optional()?;
        if current.as_ref() != expected {
            return Ok(None);
        }
        let epoch = current.map_or(1, |l| l.epoch + 1);
        tx.prepare_cached(
            "INSERT INTO lease (id, holder, host, pid, pid_start, epoch, acquired_at, expires_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, host = excluded.host, pid = excluded.pid,
               pid_start = excluded.pid_start, epoch = excluded.epoch, acquired_at = excluded.acquired_at,
               expires_at = excluded.expires_at",
)?
.execute(
            params![me.id, me.host, me.pid, me.pid_start, epoch, to_millis(now), expires(now, ttl)],
        )?;
        tx.prepare_cached(
            "UPDATE instances SET role = 'standby' WHERE role = 'leader' AND id <> ?1",
        )?
        .execute(params![me.id])?;
        tx.prepare_cached("UPDATE instances SET role = 'leader', seen_at = ?2 WHERE id = ?1")?
            .execute(params![me.id, to_millis(now)])?;
        let lease = tx
            .prepare_cached(
                "SELECT holder, host, pid, pid_start, epoch, acquired_at, expires_at
             FROM lease WHERE id = 1",
            )?
            .query_row([], lease_row)?;
        tx.commit()?;
        Ok(Some(lease))
    }

    fn renew_lease(
        &mut self,
        me: &Instance,
        epoch: i64,
        ttl: Duration,
        now: Timestamp,
    ) -> Result<Lease> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx
            .prepare_cached(
                "UPDATE lease SET expires_at = ?3 WHERE id = 1 AND holder = ?1 AND epoch = ?2",
            )?
            .execute(params![me.id, epoch, expires(now, ttl)])?;
        if changed == 0 {
            return Err(StoreError::Fenced(epoch));
        }
        tx.prepare_cached("UPDATE instances SET seen_at = ?2 WHERE id = ?1")?
            .execute(params![me.id, to_millis(now)])?;
        let lease = tx
            .prepare_cached(
                "SELECT holder, host, pid, pid_start, epoch, acquired_at, expires_at
             FROM lease WHERE id = 1",
            )?
            .query_row([], lease_row)?;
        tx.commit()?;
        Ok(lease)
    }

    fn release_lease(&mut self, me: &Instance, epoch: i64) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached(
            "UPDATE lease SET expires_at = 0 WHERE id = 1 AND holder = ?1 AND epoch = ?2",
        )?
        .execute(params![me.id, epoch])?;
        tx.prepare_cached("UPDATE instances SET role = 'stopped' WHERE id = ?1")?
            .execute(params![me.id])?;
        tx.commit()?;
        Ok(())
    }

    fn record_runs(
        &mut self,
        me: &Instance,
        epoch: i64,
        runs: &[NewRun],
        now: Timestamp,
    ) -> Result<Vec<Recorded>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_epoch(&tx, me, epoch)?;
        let mut out = Vec::with_capacity(runs.len());
        {
            let mut insert = tx.prepare_cached(INSERT_RUN)?;
            let mut fired = tx.prepare_cached(MARK_FIRED)?;
            let mut consume = tx.prepare_cached(CONSUME_TRIGGER)?;
            let now_ms = to_millis(now);
            for run in runs {
                let (state, ended_at) = match run.skipped {
                    Some(_) => ("skipped", Some(now_ms)),
                    None => ("pending", None),
                };
                let inserted = insert.execute(params![
                    run.job,
                    to_millis(run.scheduled_for),
                    run.trigger.as_str(),
                    run.attempt,
                    state,
                    me.id,
                    epoch,
                    me.boot_id,
                    now_ms,
                    ended_at,
                    run.skipped,
                ])?;
                if inserted == 0 {
                    out.push(Recorded::AlreadyDecided);
                    continue;
                }
                let id = tx.last_insert_rowid();
                if matches!(run.trigger, Trigger::Schedule | Trigger::CatchUp) {
                    fired.execute(params![run.job, to_millis(run.scheduled_for)])?;
                }
                if let Some(trigger_id) = run.trigger_id {
                    consume.execute(params![trigger_id, now_ms, id])?;
                }
                out.push(Recorded::Created(RunId(id)));
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn mark_running_many(&mut self, me: &Instance, epoch: i64, runs: &[Started]) -> Result<()> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_epoch(&tx, me, epoch)?;
        {
            let mut update = tx.prepare_cached(MARK_RUNNING)?;
            for run in runs {
                update.execute(params![
                    run.run_id.0,
                    run.pid,
                    run.pid_start,
                    to_millis(run.at)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn finish_runs(
        &mut self,
        runs: &[(Finish, Option<NewTrigger>)],
        history_limit: u32,
    ) -> Result<Vec<Finished>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let finished = runs
            .iter()
            .map(|(f, retry)| finish_one(&tx, f, retry.as_ref(), history_limit))
            .collect::<Result<Vec<_>>>()?;
        tx.commit()?;
        Ok(finished)
    }

    fn add_trigger(&mut self, trigger: &NewTrigger, now: Timestamp) -> Result<TriggerRow> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let row = insert_trigger(&tx, trigger, now)?;
        count_change(&tx)?;
        tx.commit()?;
        Ok(row)
    }

    fn trigger_run(&mut self, id: i64) -> Result<Option<Option<RunId>>> {
        let row: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT run_id FROM triggers WHERE id = ?1",
                params![id],
                |r| r.get(0),
            )
            .optional()?;
        Ok(row.map(|run| run.map(RunId)))
    }

    fn set_paused(&mut self, job: &str, paused: bool, reason: Option<&str>) -> Result<bool> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT INTO job_state (job) VALUES (?1) ON CONFLICT (job) DO NOTHING")?
            .execute(params![job])?;
        let changed = tx
            .prepare_cached(
                "UPDATE job_state SET paused = ?2, paused_reason = ?3,
               consecutive_failures = CASE WHEN ?2 THEN consecutive_failures ELSE 0 END
             WHERE job = ?1 AND paused <> ?2",
            )?
            .execute(params![job, paused, if paused { reason } else { None }])?
            > 0;
        count_change(&tx)?;
        tx.commit()?;
        Ok(changed)
    }

    fn changes(&mut self) -> Result<i64> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'changes'", [], |r| {
                r.get(0)
            })
            .optional()?;
        Ok(value.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    fn pending_triggers(&mut self) -> Result<Vec<TriggerRow>> {
        let mut stmt = self.conn.prepare(
            "SELECT id, job, kind, not_before, scheduled_for, attempt FROM triggers WHERE consumed_at IS NULL ORDER BY not_before, id",
        )?;
        let rows = stmt.query_map([], trigger_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn active_runs(&mut self) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE state IN ('pending', 'running') ORDER BY id"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn abandon_runs(
        &mut self,
        me: &Instance,
        epoch: i64,
        runs: &[Abandon],
        now: Timestamp,
    ) -> Result<Vec<TriggerRow>> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::check_epoch(&tx, me, epoch)?;
        let mut retries = Vec::new();
        for run in runs {
            let changed = tx
                .prepare_cached(
                    "UPDATE runs SET state = 'abandoned', ended_at = ?2, reason = ?3
                 WHERE id = ?1 AND state IN ('pending', 'running')",
                )?
                .execute(params![run.run_id.0, to_millis(now), run.reason])?;
            if changed > 0 {
                tx.prepare_cached(
                    "INSERT INTO job_state (job, consecutive_failures) VALUES (?1, 1)
                     ON CONFLICT (job) DO UPDATE SET consecutive_failures = consecutive_failures + 1",
)?
.execute(
                    params![run.job],
                )?;
                if let Some(retry) = &run.retry {
                    retries.push(insert_trigger(&tx, retry, now)?);
                }
            }
        }
        tx.commit()?;
        Ok(retries)
    }

    fn job_states(&mut self) -> Result<Vec<JobState>> {
        let mut stmt = self
            .conn
            .prepare("SELECT job, paused, paused_reason, consecutive_failures, last_fired FROM job_state ORDER BY job")?;
        let rows = stmt.query_map([], |r| {
            Ok(JobState {
                job: r.get(0)?,
                paused: r.get(1)?,
                paused_reason: r.get(2)?,
                consecutive_failures: r.get(3)?,
                last_fired: r.get::<_, Option<i64>>(4)?.map(from_millis),
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn run(&mut self, id: RunId) -> Result<Option<RunRecord>> {
        let sql = format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1");
        Ok(self
            .conn
            .query_row(&sql, params![id.0], run_record)
            .optional()?)
    }

    fn runs(&mut self, job: Option<&str>, limit: u32, failed_only: bool) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR job = ?1)
               AND (NOT ?3 OR state IN ('failed', 'timed_out', 'abandoned'))
             ORDER BY id DESC LIMIT ?2"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map(params![job, limit, failed_only], run_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn latest_runs(&mut self) -> Result<Vec<RunRecord>> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id IN (SELECT max(id) FROM runs GROUP BY job)"
        );
        let mut stmt = self.conn.prepare(&sql)?;
        let rows = stmt.query_map([], run_record)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn run_output(&mut self, id: RunId) -> Result<Option<RunOutputRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT output_tail, result FROM runs WHERE id = ?1",
                params![id.0],
                |r| {
                    Ok((
                        r.get::<_, Option<Vec<u8>>>(0)?.unwrap_or_default(),
                        r.get(1)?,
                    ))
                },
            )
            .optional()?)
    }

    fn meta(&mut self, key: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })
            .optional()?)
    }

    fn meta_init(&mut self, key: &str, value: &str) -> Result<String> {
        self.conn.execute(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
            params![key, value],
        )?;
        Ok(self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |r| {
                r.get(0)
            })?)
    }
}

#[cfg(test)]
mod tests;
