//! Store write rate: how many runs per second the SQLite state records through the same
//! `Backend` calls the daemon makes (decide in one fenced transaction, mark running, record
//! the end), one run per transaction and in batches as the loop groups them. Prints one JSON
//! line per case; `bench/run.sh` appends them to `results/store_write.jsonl`.
//!
//! usage: cargo bench --bench store -- [DIR] [SECONDS_PER_CASE]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use schedctl::procinfo::current_instance;
use schedctl::run::{RunId, Trigger};
use schedctl::store::{Backend, Finish, NewRun, Recorded, Sqlite, Started};

fn main() {
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    let dir = PathBuf::from(
        args.next()
            .unwrap_or_else(|| "/tmp/schedbench/store".to_owned()),
    );
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    std::fs::create_dir_all(&dir).expect("create the bench directory");
    for batch in [1usize, 10, 100, 1000] {
        let path = dir.join(format!("store-{batch}.db"));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let mut db = Sqlite::open(&path).expect("open the bench database");
        let me = current_instance(Timestamp::now());
        db.register_instance(&me, "leader", Timestamp::now())
            .expect("register");
        let lease = db
            .take_lease(&me, None, Duration::from_secs(3600), Timestamp::now())
            .expect("take the lease")
            .expect("the lease is free");
        let epoch = lease.epoch;
        let jobs: Vec<String> = (0..batch).map(|i| format!("job{i}")).collect();
        let mut instant = Timestamp::now().as_second();
        let (mut runs, mut tx) = (0u64, 0u64);
        let mut phase = [Duration::ZERO; 3];
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs_f64(secs);
        while Instant::now() < deadline {
            instant += 1;
            let at = Timestamp::from_second(instant).expect("a valid instant");
            let new: Vec<NewRun> = jobs
                .iter()
                .map(|job| NewRun {
                    job: job.clone(),
                    scheduled_for: at,
                    trigger: Trigger::Schedule,
                    attempt: 1,
                    skipped: None,
                    trigger_id: None,
                })
                .collect();
            let t = Instant::now();
            let ids: Vec<RunId> = db
                .record_runs(&me, epoch, &new, at)
                .expect("record runs")
                .into_iter()
                .filter_map(|r| match r {
                    Recorded::Created(id) => Some(id),
                    Recorded::AlreadyDecided => None,
                })
                .collect();
            phase[0] += t.elapsed();
            let started: Vec<Started> = ids
                .iter()
                .map(|&run_id| Started {
                    run_id,
                    pid: std::process::id(),
                    pid_start: None,
                    at,
                })
                .collect();
            let t = Instant::now();
            db.mark_running_many(&me, epoch, &started)
                .expect("mark running");
            phase[1] += t.elapsed();
            let finished: Vec<_> = ids
                .iter()
                .zip(&jobs)
                .map(|(&run_id, job)| {
                    let finish = Finish {
                        run_id,
                        job: job.clone(),
                        state: "succeeded",
                        started_at: Some(at),
                        ended_at: at,
                        exit_code: Some(0),
                        signal: None,
                        reason: None,
                        output_tail: b"o one line of output\n".to_vec(),
                        result: None,
                        success: true,
                        pause_after: None,
                    };
                    (finish, None)
                })
                .collect();
            let t = Instant::now();
            db.finish_runs(&finished, 1000).expect("finish runs");
            phase[2] += t.elapsed();
            runs += ids.len() as u64;
            tx += 3;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        let us_per_run = |d: Duration| d.as_secs_f64() * 1e6 / runs.max(1) as f64;
        println!(
            "{{\"batch\":{batch},\"runs\":{runs},\"seconds\":{elapsed:.3},\"runs_per_s\":{:.0},\"transactions_per_s\":{:.0},\"record_us_per_run\":{:.1},\"running_us_per_run\":{:.1},\"finish_us_per_run\":{:.1}}}",
            runs as f64 / elapsed,
            tx as f64 / elapsed,
            us_per_run(phase[0]),
            us_per_run(phase[1]),
            us_per_run(phase[2]),
        );
    }
}
