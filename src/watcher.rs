//! Reload when the job file changes on disk (`[daemon] watch`, on by default). inotify
//! watches the file's directory, not the file, so that editors that save by writing a new
//! file and renaming it over the old one (vim, `sed -i`) are seen; events are filtered by
//! the file's name and a burst of them becomes one reload request. A job file that is a
//! symlink (a Kubernetes ConfigMap: `jobs.toml -> ..data/jobs.toml`, updated by swapping
//! `..data`) also counts as changed when another name in the directory changes and the
//! file now resolves elsewhere. Between changes nothing runs: no polling.

use std::ffi::OsString;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::Path;
use std::time::Duration;

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::sync::mpsc;

use crate::clock::readable_fd;
use crate::scheduler::Control;

/// Events closer together than this are one change (an editor's save is several).
const SETTLE: Duration = Duration::from_millis(150);

/// nix's `Inotify` exposes `AsFd`; tokio wants `AsRawFd`.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// Watch `path` and send [`Control::FileChanged`] after each change, until the loop goes.
pub fn watch(path: &Path, control: mpsc::Sender<Control>) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the job file path has no file name"))?
        .to_owned();
    let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
    // Written in place and closed; renamed over; created (a link, or the new file of an
    // editor that moved the old one away; its close comes within SETTLE in most cases).
    let mask = AddWatchFlags::IN_CLOSE_WRITE
        | AddWatchFlags::IN_MOVED_TO
        | AddWatchFlags::IN_CREATE
        | AddWatchFlags::IN_ONLYDIR;
    inotify.add_watch(dir, mask)?;
    let fd = readable_fd(InotifyFd(inotify))?;
    let dir = dir.display().to_string();
    let path = path.to_owned();
    tokio::spawn(async move {
        let mut target = std::fs::canonicalize(&path).ok();
        loop {
            match next_change(&fd, &name, &path, &mut target).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        dir,
                        "the job file's directory is gone; not watching it any more (SIGHUP still reloads)"
                    );
                    return;
                }
                Err(err) => {
                    tracing::warn!(
                        dir,
                        "cannot watch the job file any more: {err}; SIGHUP still reloads"
                    );
                    return;
                }
            }
            // Let the burst settle, then take in whatever else arrived with it.
            tokio::time::sleep(SETTLE).await;
            let watching = match read_ready(&fd) {
                Ok(watching) => watching,
                Err(err) => {
                    tracing::warn!(
                        dir,
                        "cannot watch the job file any more: {err}; SIGHUP still reloads"
                    );
                    false
                }
            };
            if control.send(Control::FileChanged).await.is_err() || !watching {
                return;
            }
        }
    });
    Ok(())
}

/// Wait for an event about `name`, or one after which `path` resolves to another file than
/// `target` (a swapped symlink): Ok(true); Ok(false) when the watch ended.
async fn next_change(
    fd: &tokio::io::unix::AsyncFd<InotifyFd>,
    name: &OsString,
    path: &Path,
    target: &mut Option<std::path::PathBuf>,
) -> std::io::Result<bool> {
    loop {
        let mut guard = fd.readable().await?;
        match guard.get_inner().0.read_events() {
            Ok(events) => {
                if events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return Ok(false);
                }
                if events.iter().any(|e| e.name.as_ref() == Some(name)) {
                    *target = std::fs::canonicalize(path).ok();
                    return Ok(true);
                }
                let now = std::fs::canonicalize(path).ok();
                if !events.is_empty() && now != *target {
                    *target = now;
                    return Ok(true);
                }
            }
            Err(nix::errno::Errno::EAGAIN) => guard.clear_ready(),
            Err(err) => return Err(err.into()),
        }
    }
}

/// Drain the events already queued, without waiting; false when the watch ended.
fn read_ready(fd: &tokio::io::unix::AsyncFd<InotifyFd>) -> std::io::Result<bool> {
    loop {
        match fd.get_ref().0.read_events() {
            Ok(events) => {
                if events
                    .iter()
                    .any(|e| e.mask.contains(AddWatchFlags::IN_IGNORED))
                {
                    return Ok(false);
                }
            }
            Err(nix::errno::Errno::EAGAIN) => return Ok(true),
            Err(err) => return Err(err.into()),
        }
    }
}
