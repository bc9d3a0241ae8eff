//! The HTTP endpoints (`[daemon] listen`): `/healthz` (the loop is alive), `/readyz`
//! (configuration loaded, store reachable, role, last reload; JSON) and `/metrics`
//! (Prometheus text). hyper's HTTP/1 server on the daemon's runtime: it costs nothing
//! between requests, and each request asks the loop or the store only what it reports.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};

use super::{Monitor, State};
use crate::scheduler::Control;
use crate::store::Store;

/// How long `/healthz` waits for the loop to answer before judging by its heartbeat.
const LOOP_ANSWER_TIMEOUT: Duration = Duration::from_secs(1);
/// How long `/readyz` waits for the store.
const STORE_TIMEOUT: Duration = Duration::from_secs(2);
/// A client that has not sent its request headers by then is dropped.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the endpoints read.
pub struct Endpoints {
    pub monitor: Monitor,
    /// To ask the loop whether it is alive.
    pub control: mpsc::Sender<Control>,
    pub store: Store,
}

/// Listen on `addr`; returns the listener and the address it got (port 0 picks one).
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serve the endpoints on `listener` until the runtime ends.
pub fn serve(listener: TcpListener, endpoints: Endpoints) {
    let endpoints = Arc::new(endpoints);
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    // Out of descriptors and the like: the next accept may work.
                    tracing::warn!("http: cannot accept a connection: {err}");
                    continue;
                }
            };
            let endpoints = Arc::clone(&endpoints);
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let endpoints = Arc::clone(&endpoints);
                    async move { Ok::<_, Infallible>(respond(&endpoints, &req).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                if let Err(err) = served {
                    tracing::debug!("http connection: {err}");
                }
            });
        }
    });
}

type Reply = Response<Full<Bytes>>;

async fn respond(endpoints: &Endpoints, req: &Request<Incoming>) -> Reply {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut reply = text(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n");
        reply
            .headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return reply;
    }
    match req.uri().path() {
        "/healthz" => healthz(endpoints).await,
        "/readyz" => readyz(endpoints).await,
        "/metrics" => {
            let mut reply =
                Response::new(Full::new(Bytes::from(endpoints.monitor.metrics.encode())));
            reply.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(super::METRICS_CONTENT_TYPE),
            );
            reply
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz, /readyz or /metrics\n",
        ),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    /// Seconds since the loop last started an iteration or answered.
    last_tick_seconds_ago: f64,
    liveness_period_seconds: f64,
}

/// Alive: the loop answers at once, or (busy with a batch) ticked within the liveness
/// period. A loop that did neither is stalled: 503.
async fn healthz(endpoints: &Endpoints) -> Reply {
    let (tx, rx) = oneshot::channel();
    let answered = endpoints.control.try_send(Control::Alive(tx)).is_ok()
        && matches!(
            tokio::time::timeout(LOOP_ANSWER_TIMEOUT, rx).await,
            Ok(Ok(()))
        );
    let monitor = &endpoints.monitor;
    let age = monitor.heartbeat.age();
    let status = if answered {
        "alive"
    } else if age < monitor.liveness_period && monitor.state.borrow().running {
        "busy"
    } else {
        "stalled"
    };
    let body = Health {
        status,
        last_tick_seconds_ago: if answered { 0.0 } else { age.as_secs_f64() },
        liveness_period_seconds: monitor.liveness_period.as_secs_f64(),
    };
    let code = if status == "stalled" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    json(code, &body)
}

#[derive(Serialize)]
struct Ready<'a> {
    ready: bool,
    role: &'static str,
    #[serde(flatten)]
    state: &'a State,
    store: StoreHealth,
}

#[derive(Serialize)]
struct StoreHealth {
    reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Ready: the loop runs on a loaded configuration and the store answers a read.
async fn readyz(endpoints: &Endpoints) -> Reply {
    let read = endpoints.store.call(|db| db.lease().map(|_| ()));
    let store = match tokio::time::timeout(STORE_TIMEOUT, read).await {
        Ok(Ok(())) => StoreHealth {
            reachable: true,
            error: None,
        },
        Ok(Err(err)) => StoreHealth {
            reachable: false,
            error: Some(err.to_string()),
        },
        Err(_) => StoreHealth {
            reachable: false,
            error: Some(format!(
                "no answer within {}",
                humantime::format_duration(STORE_TIMEOUT)
            )),
        },
    };
    let state = endpoints.monitor.state.borrow().clone();
    let ready = state.running && store.reachable;
    let body = Ready {
        ready,
        role: if state.epoch.is_some() {
            "leader"
        } else {
            "standby"
        },
        state: &state,
        store,
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(code, &body)
}

fn json(code: StatusCode, body: &impl Serialize) -> Reply {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut reply = Response::new(Full::new(Bytes::from(bytes)));
    *reply.status_mut() = code;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    reply
}

fn text(code: StatusCode, body: &'static str) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *reply.status_mut() = code;
    reply.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    reply
}
