# Adapter: schedctl, this repository's daemon (release build, target/release/schedctl).
# Config: jobs.toml with [daemon] timezone = "UTC"; 6-field schedules; `@startup` becomes `@reboot`.
# State: an embedded SQLite file beside the config, removed by adapter_stop so that no rep
# inherits the previous one's runs (which `catch_up` would otherwise act on).
# Defaults kept: the leader lease on (lease_ttl 45s), the file watcher on, text logs to
# DAEMON_LOG with every job output line logged; `SCHEDCTL_LOG_FORMAT=json` switches to JSON.
ADAPTER=${SCHEDCTL_ADAPTER_NAME:-schedctl}
GRANULARITY=second
DAEMON_COMM=schedctl
SCHEDCTL_BIN=${SCHEDCTL_BIN:-$BENCH_DIR/../target/release/schedctl}
SCHEDCTL_DIR=$SB_TMP/schedctl
SCHEDCTL_CONF=$SCHEDCTL_DIR/jobs.toml
adapter_available() { [ -x "$SCHEDCTL_BIN" ]; }
adapter_supports_startup_job() { return 0; }   # @reboot: once when the daemon becomes leader
adapter_ready_regex() { echo 'scheduler started jobs=[0-9]+'; }
adapter_validate() { echo "$SCHEDCTL_BIN --config $SCHEDCTL_CONF validate"; }
adapter_write_config() {
    mkdir -p "$SCHEDCTL_DIR"
    {
        printf '[daemon]\ntimezone = "UTC"\nlog_format = "%s"\n%s\n' "${SCHEDCTL_LOG_FORMAT:-text}" "${SCHEDCTL_EXTRA_DAEMON:-}"
        awk -F'\t' '{
            cmd = $2; gsub(/\\/, "\\\\", cmd); gsub(/"/, "\\\"", cmd);
            printf "[jobs.j%d]\n", NR;
            if ($1 == "@startup") { print "schedule = \"@reboot\"" }
            else { printf "schedule = \"%s\"\n", $1 }
            printf "command = \"%s\"\n", cmd
        }' "$1"
    } > "$SCHEDCTL_CONF.tmp" && mv "$SCHEDCTL_CONF.tmp" "$SCHEDCTL_CONF"
}
adapter_start() {
    "$SCHEDCTL_BIN" --config "$SCHEDCTL_CONF" daemon > "${DAEMON_LOG:-/dev/null}" 2>&1 &
    DAEMON_PID=$!
}
adapter_stop() {
    stop_pid "$DAEMON_PID"
    rm -rf "$SCHEDCTL_DIR"/schedctl.db* "$SCHEDCTL_DIR"/schedctl.d
}
# For metrics/run_now.sh and metrics/failover.sh (schedctl only).
adapter_run_now() { "$SCHEDCTL_BIN" --config "$SCHEDCTL_CONF" run-now "$1" >> "$SB_TMP/run-now.log" 2>&1; }
adapter_leader_pid() {
    "$SCHEDCTL_BIN" --config "$SCHEDCTL_CONF" status --json 2>/dev/null \
        | python3 -c 'import json,sys; l=json.load(sys.stdin).get("leader"); print(l["pid"] if l else "")'
}
