//! The daemon as a service, through the real binary: systemd's notify protocol (READY,
//! STATUS, RELOADING, STOPPING, watchdog pings from the loop), the HTTP endpoints, SIGUSR1's
//! status line, and the lease handed over at once on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::Path;

use nix::sys::signal::Signal;

use crate::support::{PATIENCE, TestEnv, get, http, metric};

/// A stand-in for systemd's notification socket.
struct NotifySocket {
    socket: UnixDatagram,
    path: String,
}

impl NotifySocket {
    fn bind(dir: &Path) -> NotifySocket {
        let path = dir.join("notify.sock");
        let socket = UnixDatagram::bind(&path).expect("bind the notify socket");
        socket.set_read_timeout(Some(PATIENCE)).expect("timeout");
        NotifySocket {
            socket,
            path: path.display().to_string(),
        }
    }

    /// The next datagram (failing the test after the usual patience).
    fn recv(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification from the daemon");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    /// Datagrams up to and including the first one that contains `part`.
    fn until(&self, part: &str) -> Vec<String> {
        let mut seen = Vec::new();
        loop {
            let message = self.recv();
            let found = message.contains(part);
            seen.push(message);
            if found {
                return seen;
            }
        }
    }
}

#[test]
fn systemd_hears_ready_status_watchdog_pings_reloading_and_stopping() {
    let env = TestEnv::new().job("tick", "0 0 1 1 *", "true").write();
    let notify = NotifySocket::bind(env.dir());
    // A 200 ms watchdog: the loop pings every 100 ms.
    let mut daemon =
        env.daemon_with_env(&[("NOTIFY_SOCKET", &notify.path), ("WATCHDOG_USEC", "200000")]);
    let first = notify.recv();
    assert!(
        first.starts_with("READY=1\nSTATUS=") && first.contains(", 1 jobs"),
        "{first:?}"
    );
    notify.until("STATUS=leader (epoch 1), 1 jobs");
    for _ in 0..3 {
        notify.until("WATCHDOG=1");
    }
    daemon.signal(Signal::SIGHUP);
    let reload = notify.until("RELOADING=1");
    assert!(reload.last().is_some_and(|m| m.contains("MONOTONIC_USEC=")));
    let ready = notify.until("READY=1");
    assert!(
        ready
            .last()
            .is_some_and(|m| m.contains("STATUS=leader (epoch 1), 1 jobs")),
        "{ready:?}"
    );
    daemon.signal(Signal::SIGTERM);
    let stopping = notify.until("STOPPING=1");
    assert!(
        !stopping.iter().any(|m| m.contains("READY=1")),
        "{stopping:?}"
    );
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn no_watchdog_pings_when_the_watchdog_is_meant_for_another_process() {
    let env = TestEnv::new().job("tick", "* * * * * *", "true").write();
    let notify = NotifySocket::bind(env.dir());
    let mut daemon = env.daemon_with_env(&[
        ("NOTIFY_SOCKET", &notify.path),
        ("WATCHDOG_USEC", "100000"),
        ("WATCHDOG_PID", "1"),
    ]);
    // Two runs: over a second, in which a 100 ms watchdog would have had ten pings.
    daemon.wait_until("two runs", |lines| {
        lines.iter().filter(|l| l.contains("run finished")).count() >= 2
    });
    daemon.signal(Signal::SIGTERM);
    let all = notify.until("STOPPING=1");
    assert!(!all.iter().any(|m| m.contains("WATCHDOG=1")), "{all:?}");
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn http_endpoints_report_health_readiness_and_metrics() {
    let env = TestEnv::new()
        .daemon_key("listen", "\"127.0.0.1:0\"")
        .job("tick", "* * * * * *", "echo tock")
        .job_with("slow", "* * * * * *", "sleep 3", &[("overlap", "\"skip\"")])
        .write();
    let mut daemon = env.daemon();
    let addr = daemon.http_addr();
    let (code, body) = get(&addr, "/healthz");
    assert_eq!(
        (code, body.contains("\"status\":\"alive\"")),
        (200, true),
        "{body}"
    );
    daemon.wait_for(&["job=tick", "run finished", "state=succeeded"]);
    daemon.wait_for(&["job=slow", "run skipped"]);
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    let ready: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(ready["ready"], true, "{body}");
    assert_eq!(ready["role"], "leader", "{body}");
    assert_eq!(ready["epoch"], 1, "{body}");
    assert_eq!(ready["jobs"], 2, "{body}");
    assert_eq!(ready["store"]["reachable"], true, "{body}");
    let (code, text) = get(&addr, "/metrics");
    assert_eq!(code, 200);
    for name in [
        "schedctl_run_duration_seconds_count{job=\"tick\"}",
        "schedctl_fire_lag_seconds_count",
        "schedctl_running_runs",
        "schedctl_skipped_runs_total{job=\"slow\",reason=\"overlap\"}",
        "schedctl_leader",
        "schedctl_lease_epoch",
        "schedctl_config_reloads_total{result=\"failure\"}",
        "schedctl_config_last_reload_successful",
        "schedctl_jobs",
    ] {
        assert!(metric(&text, name).is_some(), "no `{name}` in:\n{text}");
    }
    let succeeded = "schedctl_runs_total{job=\"tick\",outcome=\"succeeded\"}";
    let before = metric(&text, succeeded).expect("runs counted");
    assert!(before >= 1.0, "{text}");
    assert!(
        metric(
            &text,
            "schedctl_last_success_timestamp_seconds{job=\"tick\"}"
        )
        .is_some()
    );
    assert_eq!(metric(&text, "schedctl_leader"), Some(1.0));
    assert_eq!(metric(&text, "schedctl_lease_epoch"), Some(1.0));
    assert!(
        metric(&text, "schedctl_running_runs").is_some_and(|n| n >= 1.0),
        "slow runs"
    );
    // The counter follows the runs: a run is counted before its "run finished" line is
    // logged, so once more lines than `before` are logged, more runs were counted.
    daemon.wait_until("another run", |lines| {
        lines
            .iter()
            .filter(|l| l.contains("job=tick") && l.contains("run finished"))
            .count() as f64
            > before
    });
    let (_, text) = get(&addr, "/metrics");
    assert!(
        metric(&text, succeeded).is_some_and(|n| n > before),
        "{text}"
    );
    assert_eq!(get(&addr, "/nothing-here").0, 404);
    assert_eq!(http(&addr, "POST", "/metrics").0, 405);
    assert_eq!(http(&addr, "HEAD", "/healthz").0, 200);
    assert_eq!(daemon.stop(), Some(0));
}

#[test]
fn a_standby_with_its_own_listen_address_reports_itself_ready_as_standby() {
    // Two instances on one job file, each with its own port given on the command line (as
    // `schedctl@PORT.service` does); the file has no `listen`.
    let env = TestEnv::new().job("tick", "0 0 1 1 *", "true").write();
    let mut leader = env.daemon();
    leader.wait_for(&["this instance is the leader now"]);
    let mut standby = env.daemon_with_args(&["--listen", "127.0.0.1:0"]);
    standby.wait_for(&["standing by"]);
    let addr = standby.http_addr();
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("\"role\":\"standby\""), "{body}");
    let (_, text) = get(&addr, "/metrics");
    assert_eq!(metric(&text, "schedctl_leader"), Some(0.0), "{text}");
    assert_eq!(standby.stop(), Some(0));
    assert_eq!(leader.stop(), Some(0));
}

#[test]
fn sigusr1_logs_a_one_line_status() {
    let env = TestEnv::new()
        .job("busy", "* * * * * *", "echo begin; sleep 30")
        .write();
    let mut daemon = env.daemon();
    daemon.wait_for(&["job=busy", "stream=stdout: begin"]);
    daemon.signal(Signal::SIGUSR1);
    let line = daemon.wait_for(&["status: leader (epoch 1); running: busy#"]);
    assert!(
        line.contains("jobs=1") && line.contains("running=1") && line.contains("next=\"busy at "),
        "{line}"
    );
    daemon.signal(Signal::SIGTERM);
    daemon.signal(Signal::SIGTERM);
    assert_eq!(daemon.wait_exit(), Some(0));
}

#[test]
fn sigterm_hands_the_lease_to_a_standby_while_the_old_leader_drains() {
    let env = TestEnv::new()
        .daemon_key("shutdown_grace", "\"1h\"")
        .job("long", "* * * * * *", "echo begin; sleep 300")
        .write();
    let mut old = env.daemon();
    old.wait_for(&["job=long", "stream=stdout: begin"]);
    let mut standby = env.daemon();
    standby.wait_for(&["standing by"]);
    old.signal(Signal::SIGTERM);
    old.wait_for(&["released the leader lease"]);
    // Long before the lease would expire (45 s), while the old run still drains.
    standby.wait_for(&["this instance is the leader now", "epoch=2"]);
    assert!(
        crate::support::process_alive(old.pid()),
        "the old leader still drains"
    );
    old.signal(Signal::SIGTERM);
    assert_eq!(old.wait_exit(), Some(0));
    standby.signal(Signal::SIGTERM);
    standby.signal(Signal::SIGTERM);
    assert_eq!(standby.wait_exit(), Some(0));
}

#[test]
fn healthz_is_503_when_the_loop_does_not_answer_and_readyz_503_before_ready() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (addr, _service) = runtime.block_on(async {
        let db = schedctl::store::Sqlite::open(&dir.path().join("s.db")).expect("state");
        let store = schedctl::store::Store::start(Box::new(db), schedctl::clock::SystemClock);
        let service = schedctl::service::Service::detached();
        let mut monitor = service.monitor();
        monitor.liveness_period = std::time::Duration::ZERO;
        // A loop that never answers: nobody reads this channel.
        let (control, wedged) = tokio::sync::mpsc::channel(4);
        std::mem::forget(wedged);
        let (listener, addr) = schedctl::service::http::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let endpoints = schedctl::service::http::Endpoints {
            monitor,
            control,
            store,
        };
        schedctl::service::http::serve(listener, endpoints);
        (addr.to_string(), service)
    });
    let (code, body) = get(&addr, "/healthz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"status\":\"stalled\""), "{body}");
    let (code, body) = get(&addr, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"ready\":false"), "{body}");
    drop(runtime);
}
