#!/usr/bin/env bash
# Metric 7: failover. Two daemons on one config and state; one job fires every second and stamps
# its own scheduled instant (SCHEDCTL_SCHEDULED_FOR). KILLS times: find the leader
# (adapter_leader_pid), SIGKILL it half-way through a second, start a new standby in its place.
# Reported per rep: takeover (kill -> a standby logs "this instance is the leader now"; ms
# resolution), gap (kill -> first fire by the new leader), lateness of the first instant after
# the kill (stamp - instant), instants fired twice, instants never fired.
# Only adapters with leader election (adapter_leader_pid) are measured.
# usage: metrics/failover.sh ADAPTER     env: KILLS (5), REPS (3)
. "$(dirname "$0")/../lib/common.sh"
load_adapter "$1"
declare -F adapter_leader_pid >/dev/null || { log "$ADAPTER has no leader election: failover not measured"; exit 0; }
KILLS=${KILLS:-5}; REPS=${REPS:-3}
build_tools
for rep in $(seq 1 "$REPS"); do
    run="$SB_TMP/failover.$rep"; rm -rf "$run"; mkdir -p "$run"
    printf '* * * * * *\t%s %s/stamps $SCHEDCTL_SCHEDULED_FOR\n' "$STAMP" "$run" > "$run/jobs.tsv"
    adapter_write_config "$run/jobs.tsv" || { log "adapter_write_config failed"; exit 1; }
    pids=()
    DAEMON_LOG="$run/daemon.0.log" adapter_start; pids+=("$DAEMON_PID")
    wait_lines "$run/stamps" 1 $(( $(now_ns) + 10000000000 )) || log "no fire within 10 s"
    DAEMON_LOG="$run/daemon.1.log" adapter_start; pids+=("$DAEMON_PID")
    sleep 2
    : > "$run/kills"
    for k in $(seq 1 "$KILLS"); do
        leader=$(adapter_leader_pid)
        [ -n "$leader" ] || { log "no leader before kill $k"; break; }
        # half-way through a second: the next instant is 0.5 s away
        ms=$(( 10#$(date +%N) / 1000000 )); sleep "$(printf '0.%03d' $(( (1500 - ms) % 1000 )))"
        now_ns >> "$run/kills"
        kill -KILL "$leader"
        log "$ADAPTER failover rep=$rep kill=$k: SIGKILL leader pid=$leader"
        sleep 3
        DAEMON_LOG="$run/daemon.$((k + 1)).log" adapter_start; pids+=("$DAEMON_PID")
        sleep 2
    done
    for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && { DAEMON_PID=$p; adapter_stop; }; done
    r=$(python3 "$BENCH_DIR/lib/stats.py" failover "$run/stamps" "$run/kills" "$run")
    jsonl "{\"adapter\":\"$ADAPTER\",\"rep\":$rep,${r#\{}" failover
done
