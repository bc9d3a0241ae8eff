//! The schema, as append-only migrations numbered by `PRAGMA user_version`. Never edit a
//! released migration: add one. Times are unix milliseconds (INTEGER).

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: runs, durable triggers, the lease, instances and per-job state.
    r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) STRICT;

CREATE TABLE lease (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    holder      TEXT    NOT NULL,
    host        TEXT    NOT NULL,
    pid         INTEGER NOT NULL,
    pid_start   INTEGER,
    epoch       INTEGER NOT NULL CHECK (epoch >= 1),
    acquired_at INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE instances (
    id         TEXT    PRIMARY KEY,
    host       TEXT    NOT NULL,
    pid        INTEGER NOT NULL,
    pid_start  INTEGER,
    boot_id    TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    seen_at    INTEGER NOT NULL,
    role       TEXT    NOT NULL CHECK (role IN ('standby', 'leader', 'stopped'))
) STRICT;

CREATE TABLE runs (
    id            INTEGER PRIMARY KEY,
    job           TEXT    NOT NULL,
    scheduled_for INTEGER NOT NULL,
    trigger       TEXT    NOT NULL CHECK (trigger IN ('schedule', 'manual', 'retry', 'catch_up', 'chain')),
    attempt       INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    state         TEXT    NOT NULL CHECK (state IN ('pending', 'running', 'succeeded', 'failed',
                                                    'timed_out', 'cancelled', 'skipped', 'abandoned')),
    instance      TEXT    NOT NULL,
    epoch         INTEGER NOT NULL,
    boot_id       TEXT    NOT NULL,
    pid           INTEGER,
    pid_start     INTEGER,
    created_at    INTEGER NOT NULL,
    started_at    INTEGER,
    ended_at      INTEGER,
    exit_code     INTEGER,
    signal        INTEGER,
    reason        TEXT,
    output_tail   BLOB,
    result        BLOB,
    CHECK ((state IN ('pending', 'running')) = (ended_at IS NULL))
) STRICT;

-- An instant of a job's schedule is decided (run or skipped) at most once, ever.
CREATE UNIQUE INDEX runs_instant_once ON runs (job, scheduled_for) WHERE trigger IN ('schedule', 'catch_up');
CREATE INDEX runs_by_job ON runs (job, id);
CREATE INDEX runs_active ON runs (state) WHERE state IN ('pending', 'running');

CREATE TABLE triggers (
    id            INTEGER PRIMARY KEY,
    job           TEXT    NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('manual', 'retry', 'chain')),
    not_before    INTEGER NOT NULL,
    scheduled_for INTEGER NOT NULL,
    attempt       INTEGER NOT NULL DEFAULT 1 CHECK (attempt >= 1),
    created_at    INTEGER NOT NULL,
    origin        TEXT,
    run_id        INTEGER REFERENCES runs (id) ON DELETE SET NULL,
    consumed_at   INTEGER
) STRICT;

CREATE INDEX triggers_pending ON triggers (not_before) WHERE consumed_at IS NULL;

CREATE TABLE job_state (
    job                  TEXT    PRIMARY KEY,
    paused               INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    paused_reason        TEXT,
    consecutive_failures INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    last_fired           INTEGER
) STRICT;
"#,
    // 2: trimming a job's history (`trim_history` in `sqlite`) walks only that job's
    // finished runs in an index, instead of looking up each of its runs in the table to
    // read its state (with 1,000 runs kept, ~0.9 ms a finished run); deleting a run finds
    // the requests (triggers) that name it without reading every trigger.
    r#"
CREATE INDEX runs_finished_by_job ON runs (job, id) WHERE state NOT IN ('pending', 'running');
CREATE INDEX triggers_by_run ON triggers (run_id);
"#,
];

/// The schema version this binary writes.
pub fn current_version() -> i64 {
    MIGRATIONS.len() as i64
}
