//! `[daemon]`: where the state lives, the default zone, the lease, grace periods, history,
//! logs, the HTTP listener and the file watch.

use std::path::{Path, PathBuf};

use toml::de::DeTable;

use super::Checker;
use crate::config::source::{self, Section};
use crate::config::{
    DEFAULT_HISTORY_LIMIT, DEFAULT_LEASE_TTL, DEFAULT_OUTPUT_TAIL, DEFAULT_SHUTDOWN_GRACE,
    DaemonConfig, LogFormat, Zone,
};

const DAEMON_KEYS: &[&str] = &[
    "state",
    "timezone",
    "lease_ttl",
    "shutdown_grace",
    "history_limit",
    "output_tail",
    "log_format",
    "listen",
    "watch",
];
/// Keys of SPEC §2 that this version does not implement yet: named as such, not as typos.
const DAEMON_KEYS_LATER: &[&str] = &["max_concurrent"];
const MIN_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(3);
const MAX_OUTPUT_TAIL: usize = 16 << 20;

/// `$STATE_DIRECTORY/schedctl.db` under systemd (`StateDirectory=`), else beside the job file.
fn default_state_path(base_dir: &Path) -> PathBuf {
    match std::env::var_os("STATE_DIRECTORY") {
        Some(dirs) if !dirs.is_empty() => {
            let first = dirs
                .to_string_lossy()
                .split(':')
                .next()
                .unwrap_or_default()
                .to_owned();
            PathBuf::from(first).join("schedctl.db")
        }
        _ => base_dir.join("schedctl.db"),
    }
}

impl Checker<'_> {
    pub(super) fn daemon(&mut self, table: Option<&DeTable<'_>>) -> DaemonConfig {
        let mut daemon = DaemonConfig {
            state: default_state_path(&self.base_dir),
            // The system's zone only if the key is absent (below): finding it can open the
            // zoneinfo database, which lists all its files first.
            timezone: Zone::utc(),
            lease_ttl: DEFAULT_LEASE_TTL,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            history_limit: DEFAULT_HISTORY_LIMIT,
            output_tail: DEFAULT_OUTPUT_TAIL,
            log_format: LogFormat::Text,
            listen: None,
            watch: true,
        };
        let section = Section::Daemon;
        let mut zone_given = false;
        for entry in table.map(source::entries).unwrap_or_default() {
            let key = entry.name();
            let value = entry.value.get_ref();
            let result = match key {
                "state" => source::string(value).and_then(|s| {
                    if s.starts_with("postgres://") || s.starts_with("postgresql://") {
                        return Err("PostgreSQL state is not supported by this version of schedctl yet; use a SQLite file path".to_owned());
                    }
                    if s.is_empty() {
                        return Err("the state path must not be empty".to_owned());
                    }
                    daemon.state = self.base_dir.join(s);
                    Ok(())
                }),
                "timezone" => {
                    zone_given = true;
                    source::string(value)
                        .and_then(|name| self.zone(name))
                        .map(|z| daemon.timezone = z)
                }
                "lease_ttl" => source::duration(value).and_then(|d| {
                    if d < MIN_LEASE_TTL {
                        return Err(format!("must be at least {} (it is renewed every third of it)", humantime::format_duration(MIN_LEASE_TTL)));
                    }
                    daemon.lease_ttl = d;
                    Ok(())
                }),
                "shutdown_grace" => source::duration(value).map(|d| daemon.shutdown_grace = d),
                "history_limit" => source::integer(value, 1_000_000).and_then(|n| {
                    if n == 0 {
                        return Err("must be at least 1".to_owned());
                    }
                    daemon.history_limit = n as u32;
                    Ok(())
                }),
                "output_tail" => source::size(value).and_then(|n| {
                    if n > MAX_OUTPUT_TAIL {
                        return Err(format!("at most {} MiB", MAX_OUTPUT_TAIL >> 20));
                    }
                    daemon.output_tail = n;
                    Ok(())
                }),
                "log_format" => source::string(value)
                    .and_then(|s| match s {
                        "text" => Ok(LogFormat::Text),
                        "json" => Ok(LogFormat::Json),
                        other => Err(format!("`{other}` is not a log format (expected `text` or `json`)")),
                    })
                    .map(|f| daemon.log_format = f),
                "listen" => source::string(value)
                    .and_then(listen_address)
                    .map(|a| daemon.listen = Some(a)),
                "watch" => source::boolean(value).map(|b| daemon.watch = b),
                _ => {
                    self.unknown_key(&entry, &section, DAEMON_KEYS, DAEMON_KEYS_LATER);
                    continue;
                }
            };
            if let Err(message) = result {
                self.src
                    .error(entry.value.span(), &section, Some(key), message);
            }
        }
        if !zone_given {
            daemon.timezone = Zone::system();
        }
        daemon
    }
}

/// `listen`: an IP address and port; host names are refused (no DNS lookup at startup).
fn listen_address(text: &str) -> Result<std::net::SocketAddr, String> {
    if text.is_empty() {
        return Err(
            "the address must not be empty; leave `listen` out to serve no HTTP".to_owned(),
        );
    }
    text.parse().map_err(|_| {
        let hint = match text.rsplit_once(':') {
            Some((host, port))
                if port.parse::<u16>().is_ok() && host.eq_ignore_ascii_case("localhost") =>
            {
                format!("write \"127.0.0.1:{port}\"")
            }
            Some((_, port)) if port.parse::<u16>().is_err() => {
                "the port must be a number from 0 to 65535".to_owned()
            }
            None => format!("add a port, e.g. \"{text}:9187\""),
            Some(_) => {
                "write an IP address and port, e.g. \"127.0.0.1:9187\" or \"[::1]:9187\"".to_owned()
            }
        };
        format!("`{text}` is not an address to listen on: {hint}")
    })
}
