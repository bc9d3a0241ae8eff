//! Process signals turned into [`Control`] requests for the loop: SIGTERM and SIGINT ask it
//! to stop (a second one hurries the stop), SIGHUP to reload the job file, SIGUSR1 to log a
//! one-line summary of its state.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::scheduler::Control;

/// Every signal the daemon installs a handler for (a started job's process resets them to
/// their default before it execs, see `runner::spawn`).
pub const HANDLED: [libc::c_int; 4] = [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];

/// Forward signals to `control` until the loop goes away.
pub fn forward(control: mpsc::Sender<Control>) -> std::io::Result<()> {
    let [term, int, hup, usr1] = HANDLED.map(|s| signal(SignalKind::from_raw(s)));
    let (mut term, mut int, mut hup, mut usr1) = (term?, int?, hup?, usr1?);
    tokio::spawn(async move {
        loop {
            let request = tokio::select! {
                Some(()) = term.recv() => Control::Stop,
                Some(()) = int.recv() => Control::Stop,
                Some(()) = hup.recv() => Control::Reload,
                Some(()) = usr1.recv() => {
                    let (tx, rx) = oneshot::channel();
                    tokio::spawn(async move {
                        if let Ok(s) = rx.await {
                            log_summary(&s);
                        }
                    });
                    Control::Snapshot(tx)
                }
                else => return,
            };
            if control.send(request).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

fn log_summary(s: &crate::scheduler::Snapshot) {
    let next = s
        .next
        .iter()
        .filter_map(|(job, t)| t.map(|t| (t, job)))
        .min();
    let role = match s.epoch {
        Some(epoch) => format!("leader (epoch {epoch})"),
        None => "standby".to_owned(),
    };
    let running: Vec<String> = s
        .running
        .iter()
        .map(|(id, job)| format!("{job}#{id}"))
        .collect();
    tracing::info!(
        jobs = s.next.len(),
        running = running.len(),
        waiting_triggers = s.waiting_triggers,
        next = %next.map(|(t, job)| format!("{job} at {t}")).unwrap_or_else(|| "none".to_owned()),
        "status: {role}; running: {}",
        if running.is_empty() { "nothing".to_owned() } else { running.join(", ") }
    );
}
