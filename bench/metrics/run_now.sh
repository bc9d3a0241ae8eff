#!/usr/bin/env bash
# Metric 6: run-now to start. A daemon with one job that is not due for hours; the harness calls
# `adapter_run_now j1` (for schedctl: `schedctl run-now j1`, a new CLI process) COUNT times, one
# after the other. latency = the job's own stamp - the moment before the CLI was started, so it
# includes the CLI's own start, its write of the durable request and the daemon's wake-up and spawn.
# Only adapters with a manual trigger (adapter_run_now) are measured.
# usage: metrics/run_now.sh ADAPTER     env: COUNT (20), REPS (3)
. "$(dirname "$0")/../lib/common.sh"
load_adapter "$1"
declare -F adapter_run_now >/dev/null || { log "$ADAPTER has no manual trigger: run-now not measured"; exit 0; }
COUNT=${COUNT:-20}; REPS=${REPS:-3}
build_tools
for rep in $(seq 1 "$REPS"); do
    run="$SB_TMP/runnow"; rm -rf "$run"; mkdir -p "$run"
    hour=$(( ($(date -u +%-H) + 6) % 24 ))
    printf '0 0 %d * * *\t%s %s/stamps rn\n' "$hour" "$STAMP" "$run" > "$run/jobs.tsv"
    adapter_write_config "$run/jobs.tsv" || { log "adapter_write_config failed"; exit 1; }
    DAEMON_LOG="$run/daemon.log" adapter_start
    wait_lines "$run/daemon.log" 1 $(( $(now_ns) + 10000000000 )) && sleep 0.5
    : > "$run/starts"
    for i in $(seq 1 "$COUNT"); do
        now_ns >> "$run/starts"
        adapter_run_now j1
        wait_lines "$run/stamps" "$i" $(( $(now_ns) + 10000000000 )) || log "run-now $i: no stamp within 10 s"
        sleep 0.2   # let the run be recorded as finished, so the next request is not an overlap
    done
    adapter_stop
    r=$(python3 "$BENCH_DIR/lib/stats.py" pairs "$run/starts" "$run/stamps")
    jsonl "{\"adapter\":\"$ADAPTER\",\"count\":$COUNT,\"rep\":$rep,${r#\{}" run_now
done
