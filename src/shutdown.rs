//! Process signals turned into [`Control`] messages for the loop: SIGTERM and SIGINT ask
//! it to stop (a second one hurries the stop), SIGHUP asks it to reload the job file.
//! Tests send the same messages without signals.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::scheduler::Snapshot;

/// A request to the running daemon.
#[derive(Debug)]
pub enum Control {
    /// Stop firing, let running jobs finish within `shutdown_grace`, then stop them.
    /// A second `Stop` skips what is left of the grace period.
    Stop,
    /// Read the job file again; keep the running configuration if the new one is invalid.
    Reload,
    /// Fire whatever is due now, then report the loop's state.
    Snapshot(oneshot::Sender<Snapshot>),
}

/// Start listening for SIGTERM, SIGINT and SIGHUP.
pub fn watch_signals() -> std::io::Result<mpsc::Receiver<Control>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let message = tokio::select! {
                Some(()) = term.recv() => Control::Stop,
                Some(()) = int.recv() => Control::Stop,
                Some(()) = hup.recv() => Control::Reload,
                else => return,
            };
            if tx.send(message).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}
