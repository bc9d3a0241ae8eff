//! The control socket. Each daemon listens on `STATE_DIR/sockets/PID.sock` (mode 0660) for
//! requests from the CLI: wake up and read durable state again, start a run-now request now,
//! follow a run's output, cancel a run. One JSON object per line, each way. The CLI writes
//! durable state first and only then calls, so a lost call delays, never loses, a request.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::run::{RunId, Stream};
use crate::runner::FollowEvent;
use crate::scheduler::{Control, Following};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Durable state changed (a run-now was queued, a job paused): read it again.
    Wake,
    /// Start run-now request `trigger` now; with `follow`, stream its run.
    Start {
        trigger: i64,
        follow: bool,
    },
    Follow {
        run_id: i64,
    },
    Cancel {
        run_id: i64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    Ok,
    Error {
        message: String,
    },
    Started {
        run_id: i64,
        skipped: Option<String>,
    },
    /// The output kept so far, as stored: lines starting `o ` (stdout) or `e ` (stderr).
    Tail {
        text: String,
    },
    Line {
        stream: String,
        text: String,
    },
    /// Lines that came while the follower was too far behind to be sent them.
    Skipped {
        lines: u64,
    },
    End {
        state: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
    },
}

/// Where the daemon with this pid listens.
pub fn socket_path(state_dir: &Path, pid: u32) -> PathBuf {
    state_dir.join("sockets").join(format!("{pid}.sock"))
}

/// The listening socket; its file is removed when this is dropped.
pub struct Listener {
    path: PathBuf,
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Listen on this daemon's socket and pass requests to the loop.
pub fn listen(
    state_dir: &Path,
    pid: u32,
    control: mpsc::Sender<Control>,
) -> std::io::Result<Listener> {
    let path = socket_path(state_dir, pid);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A socket of a dead daemon that had our pid.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o660))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let control = control.clone();
                    tokio::spawn(async move {
                        if let Err(err) = serve(stream, control).await {
                            tracing::debug!("control connection: {err}");
                        }
                    });
                }
                Err(err) => {
                    tracing::warn!("control socket: {err}");
                    return;
                }
            }
        }
    });
    Ok(Listener { path })
}

async fn serve(stream: UnixStream, control: mpsc::Sender<Control>) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read);
    if reader.read_line(&mut line).await? == 0 {
        return Ok(());
    }
    let request: Request = match serde_json::from_str(&line) {
        Ok(r) => r,
        Err(e) => {
            return send(
                &mut write,
                &Response::Error {
                    message: format!("bad request: {e}"),
                },
            )
            .await;
        }
    };
    let gone = || std::io::Error::other("the daemon is stopping");
    match request {
        Request::Wake => {
            control.send(Control::Wake).await.map_err(|_| gone())?;
            send(&mut write, &Response::Ok).await
        }
        Request::Start { trigger, follow } => {
            let (reply, answer) = oneshot::channel();
            control
                .send(Control::StartTrigger {
                    id: trigger,
                    follow,
                    reply,
                })
                .await
                .map_err(|_| gone())?;
            match answer.await.map_err(|_| gone())? {
                Err(message) => send(&mut write, &Response::Error { message }).await,
                Ok(started) => {
                    send(
                        &mut write,
                        &Response::Started {
                            run_id: started.run_id.0,
                            skipped: started.skipped,
                        },
                    )
                    .await?;
                    match started.following {
                        Some(following) => stream_run(&mut write, following).await,
                        None => Ok(()),
                    }
                }
            }
        }
        Request::Follow { run_id } => {
            let (reply, answer) = oneshot::channel();
            control
                .send(Control::Follow {
                    run_id: RunId(run_id),
                    reply,
                })
                .await
                .map_err(|_| gone())?;
            match answer.await.map_err(|_| gone())? {
                Some(following) => stream_run(&mut write, following).await,
                None => {
                    send(
                        &mut write,
                        &Response::Error {
                            message: format!("run {run_id} is not running in this daemon"),
                        },
                    )
                    .await
                }
            }
        }
        Request::Cancel { run_id } => {
            let (reply, answer) = oneshot::channel();
            control
                .send(Control::Cancel {
                    run_id: RunId(run_id),
                    reply,
                })
                .await
                .map_err(|_| gone())?;
            match answer.await.map_err(|_| gone())? {
                Ok(()) => send(&mut write, &Response::Ok).await,
                Err(message) => send(&mut write, &Response::Error { message }).await,
            }
        }
    }
}

async fn stream_run(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    (tail, mut events): Following,
) -> std::io::Result<()> {
    send(
        write,
        &Response::Tail {
            text: String::from_utf8_lossy(&tail).into_owned(),
        },
    )
    .await?;
    while let Some(event) = events.recv().await {
        let response = match event {
            FollowEvent::Line { stream, text } => Response::Line {
                stream: stream.as_str().to_owned(),
                text,
            },
            FollowEvent::Skipped { lines } => Response::Skipped { lines },
            FollowEvent::End {
                state,
                exit_code,
                signal,
                reason,
            } => Response::End {
                state,
                exit_code,
                signal,
                reason,
            },
        };
        send(write, &response).await?;
    }
    Ok(())
}

async fn send(
    write: &mut tokio::net::unix::OwnedWriteHalf,
    response: &Response,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await
}

/// The CLI's side: one request, then the answers as they come.
pub struct Client {
    reader: BufReader<std::os::unix::net::UnixStream>,
}

impl Client {
    /// Connect to the daemon with this pid and send `request`.
    pub fn call(state_dir: &Path, pid: u32, request: &Request) -> std::io::Result<Client> {
        let mut stream = std::os::unix::net::UnixStream::connect(socket_path(state_dir, pid))?;
        let mut line = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        line.push(b'\n');
        stream.write_all(&line)?;
        Ok(Client {
            reader: BufReader::new(stream),
        })
    }

    /// Stop waiting for an answer after `timeout` (None: wait as long as it takes).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.reader.get_ref().set_read_timeout(timeout)
    }

    /// The next answer; None when the daemon closed the connection.
    pub fn answer(&mut self) -> std::io::Result<Option<Response>> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(std::io::Error::other)
    }
}

/// `o text` / `e text` tail lines to (stream, text).
pub fn tail_lines(tail: &str) -> impl Iterator<Item = (Stream, &str)> {
    tail.lines().map(|l| match l.split_at_checked(2) {
        Some(("e ", text)) => (Stream::Stderr, text),
        Some((_, text)) => (Stream::Stdout, text),
        None => (Stream::Stdout, l),
    })
}
