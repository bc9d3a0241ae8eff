//! `schedctl daemon`: load the job file, open the state, start logging and the runtime,
//! the HTTP endpoints and the job file watcher if configured, contend for the lease and run
//! the loop until SIGTERM/SIGINT.

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
use crate::service::{Metrics, Notifier, Service, http};
use crate::signals;
use crate::store::{Sqlite, Store};
use crate::watcher;

/// `listen` (the command line's `--listen`) wins over `[daemon] listen`.
pub fn run(config_path: &Path, listen: Option<std::net::SocketAddr>) -> Result<u8, Error> {
    crate::runner::close_inherited_on_exec();
    let open_files = crate::runner::raise_open_file_limit();
    let config = super::load_config(config_path)?;
    // After the first load, whose many small frees are quicker with fast bins; what keeps
    // a thread's heap resident is what the daemon's threads free later.
    crate::memory::merge_freed_at_once();
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
        if let Some((given, raised)) = open_files {
            tracing::debug!(
                given,
                raised,
                "open file limit raised to the hard limit (jobs start with the one given)"
            );
        }
        let store = Store::start(Box::new(db), clock);
        forget_old_instances(&store, clock.now());
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
        let _socket = control::listen(&daemon.state_dir(), me.pid, control_tx.clone())
            .map_err(|e| tracing::warn!(dir = %daemon.state_dir().display(), "cannot open the control socket: {e}; run-now waits for the next lease renewal"))
            .ok();
        let service = Service::new(Notifier::from_env(), Metrics::new());
        if let Some(addr) = listen.or(daemon.listen) {
            let (listener, local) = http::bind(addr)
                .await
                .with_context(|| format!("cannot listen on `{addr}` (`[daemon] listen`)"))?;
            let endpoints = http::Endpoints {
                monitor: service.monitor(),
                control: control_tx.clone(),
                store: store.clone(),
            };
            http::serve(listener, endpoints);
            tracing::info!(addr = %local, "serving /healthz, /readyz and /metrics");
        }
        if daemon.watch {
            match watcher::watch(&config.path, control_tx.clone()) {
                Ok(()) => tracing::info!(config = %config.path.display(), "reloading the job file when it changes"),
                Err(err) => tracing::warn!(config = %config.path.display(), "cannot watch the job file: {err}; reload it with SIGHUP"),
            }
        }
        let parts = Parts {
            clock,
            executor,
            store,
            me,
            leadership,
            service,
        };
        // On a worker thread, not on this one (block_on's): the runtime's timers and IO
        // are driven there, so waking the loop costs no extra thread hop.
        tokio::spawn(Scheduler::new(parts, config).run(control))
            .await
            .context("the scheduler panicked")?
            .context("the scheduler failed")
    });
    drop(runtime);
    flusher.finish();
    result?;
    Ok(0)
}

/// How long the row of a daemon that is gone stays in the state (for `status` and the
/// recovery of its runs, which keep their owner's row anyway).
const INSTANCE_ROWS_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(7 * 24);

/// Every daemon start adds a row to the state's instances; drop those of daemons not seen
/// for a week (unless they hold the lease or own an unfinished run), off the start's path.
fn forget_old_instances(store: &Store, now: jiff::Timestamp) {
    let store = store.clone();
    let seen_before = now.checked_sub(INSTANCE_ROWS_KEPT).unwrap_or(now);
    tokio::spawn(async move {
        match store.call(move |db| db.forget_instances(seen_before)).await {
            Ok(0) => {}
            Ok(forgotten) => {
                tracing::info!(forgotten, "forgot daemon instances not seen for a week")
            }
            Err(err) => tracing::debug!("cannot forget old daemon instances: {err}"),
        }
    });
}
