#!/usr/bin/env bash
# One job's way from its instant to its first instruction of work: a job due at T, the
# kernel's scheduler events and the system calls that mark each stage (the timer's wake-up,
# the store's transaction, clone, execve, the job's open of its stamp file) recorded with
# `perf record -a`, printed as a timeline in ms from T (the daemon's threads and the job).
# usage: tools/trace_fire.sh       env: BIN (default target/release/schedctl)
# Needs perf and root (or kernel.perf_event_paranoid <= -1 for tracepoints).
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../lib/common.sh"
BIN=${BIN:-$BENCH_DIR/../target/release/schedctl}
build_tools
run="$SB_TMP/trace"; rm -rf "$run"; mkdir -p "$run"
T=$(( $(date +%s) + 2 )); s6=$(date -u -d "@$T" +'%-S %-M %-H * * *')
printf '[daemon]\ntimezone = "UTC"\n[jobs.j1]\nschedule = "%s"\ncommand = "%s %s/stamps 1"\n' \
    "$s6" "$STAMP" "$run" > "$run/jobs.toml"
"$BIN" --config "$run/jobs.toml" daemon > "$run/daemon.log" 2>&1 &
pid=$!
sleep 0.8
events=sched:sched_switch,sched:sched_wakeup
for call in clone execve futex write openat epoll_wait fcntl pwrite64; do
    events="$events,syscalls:sys_enter_$call"
done
events="$events,syscalls:sys_exit_epoll_wait"
# Tracepoints take no CLOCK_REALTIME here: record on the monotonic clock, shift by the offset.
perf record -k CLOCK_MONOTONIC -a -e "$events" -o "$run/perf.data" -- sleep 1.6 > /dev/null 2>&1
offset=$(python3 -c 'import time; print(time.clock_gettime(time.CLOCK_REALTIME) - time.clock_gettime(time.CLOCK_MONOTONIC))')
stop_pid "$pid"
stamp=$(cut -d' ' -f2 "$run/stamps")
echo "latency: $(( (stamp - T * 1000000000) / 1000 )) us"
perf script -i "$run/perf.data" -F comm,tid,time,event,trace 2>/dev/null \
    | awk -v t="$T" -v off="$offset" '
        / perf / { next }
        {
            for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+:$/) { at = substr($i, 1, length($i) - 1) + off; break }
            if (at < t - 0.0001 || at > t + 0.004) next
            if ($1 !~ /^(schedctl|stamp)/ && $0 !~ /comm=(schedctl|stamp)/) next
            line = $0; sub(/^ *[^ ]+ +[0-9]+ +[0-9.]+: +/, "", line)
            printf "%+8.3f ms  %-15s %.110s\n", (at - t) * 1000, $1 "/" $2, line
        }'
