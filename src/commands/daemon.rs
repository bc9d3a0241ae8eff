//! `schedctl daemon`: load the job file, open the state, start logging and the runtime,
//! contend for the lease and run the loop until SIGTERM/SIGINT.

use std::path::Path;

use anyhow::Context;

use crate::clock::{Clock, SystemClock};
use crate::control;
use crate::error::Error;
use crate::leadership::Leadership;
use crate::logging::{self, Style};
use crate::procinfo;
use crate::runner::{BaseEnv, Runner};
use crate::scheduler::{Parts, Scheduler};
use crate::signals;
use crate::store::{Sqlite, Store};

pub fn run(config_path: &Path) -> Result<u8, Error> {
    let config = super::load_config(config_path)?;
    let db = Sqlite::open(&config.daemon.state).map_err(|e| Error::usage(e.to_string()))?;
    let (sink, flusher) = logging::init(Style::detect(config.daemon.log_format));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("schedctl")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let (control_tx, control) = tokio::sync::mpsc::channel(64);
        signals::forward(control_tx.clone()).context("cannot install signal handlers")?;
        let clock = SystemClock;
        let me = procinfo::current_instance(clock.now());
        tracing::info!(
            pid = me.pid,
            version = env!("CARGO_PKG_VERSION"),
            "schedctl daemon starting"
        );
        let store = Store::start(Box::new(db), clock);
        let daemon = &config.daemon;
        let leadership = Leadership::start(
            store.clone(),
            me.clone(),
            daemon.lease_ttl,
            daemon.lock_file(),
            clock,
        );
        let executor = Runner::new(
            clock,
            sink,
            BaseEnv::for_current_user(),
            daemon.state_dir(),
        );
        // Without the socket, run-now requests are still picked up, at the next lease renewal.
        let _socket = control::listen(&daemon.state_dir(), me.pid, control_tx)
            .map_err(|e| tracing::warn!(dir = %daemon.state_dir().display(), "cannot open the control socket: {e}; run-now waits for the next lease renewal"))
            .ok();
        let parts = Parts {
            clock,
            executor,
            store,
            me,
            leadership,
        };
        Scheduler::new(parts, config)
            .run(control)
            .await
            .context("the scheduler failed")
    });
    drop(runtime);
    flusher.finish();
    result?;
    Ok(0)
}
