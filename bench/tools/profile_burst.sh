#!/usr/bin/env bash
# Where one burst's CPU goes: N jobs (default 1,000) due at one instant, the whole machine
# sampled with `perf record -g` while they start, then tools/burst_profile.py's breakdown
# (us of CPU per run: daemon threads by system call and user-space function, the children
# before exec, the jobs, idle) and the burst's latency.
# usage: tools/profile_burst.sh [N]
# env: BIN (default: a release build with frame pointers, made in $SB_TMP/fp-target, so that
#      user-space stacks resolve), FREQ (sampling rate, 4000), KEEP (the perf.data path to keep)
# Needs perf (Debian: linux-perf; tools/build_anchors.sh cron installs it) and root or
# kernel.perf_event_paranoid <= 0 for system-wide sampling.
set -eu
HERE="$(cd "$(dirname "$0")" && pwd)"
. "$HERE/../lib/common.sh"
N=${1:-1000}; FREQ=${FREQ:-4000}
build_tools
if [ -z "${BIN:-}" ]; then
    (cd "$BENCH_DIR/.." && CARGO_TARGET_DIR="$SB_TMP/fp-target" \
        RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --quiet)
    BIN="$SB_TMP/fp-target/release/schedctl"
fi
# The stamps go to a directory of their own: the daemon's file watcher would be woken by
# every write beside jobs.toml, which no real deployment does.
run="$SB_TMP/profile"; rm -rf "$run"; mkdir -p "$run/out"
T=$(( $(date +%s) + 3 )); s6=$(date -u -d "@$T" +'%-S %-M %-H * * *')
{
    printf '[daemon]\ntimezone = "UTC"\n'
    for i in $(seq 1 "$N"); do
        printf '[jobs.j%d]\nschedule = "%s"\ncommand = "%s %s/stamps %d"\n' "$i" "$s6" "$STAMP" "$run/out" "$i"
    done
} > "$run/jobs.toml"
"$BIN" --config "$run/jobs.toml" daemon > "$run/daemon.log" 2>&1 &
pid=$!
while [ "$(now_ns)" -lt $(( T * 1000000000 - 300000000 )) ]; do sleep 0.02; done
perf record -a -g -F "$FREQ" -o "$run/perf.data" -- sleep 1.5 > /dev/null 2>&1
wait_unique "$run/out/stamps" "$N" $(( (T + 60) * 1000000000 )) || log "timeout: not every job stamped"
stop_pid "$pid"
python3 "$BENCH_DIR/lib/stats.py" latency "$run/out/stamps" "${T}000000000" "$N"; echo
python3 "$HERE/burst_profile.py" "$run/perf.data" "$FREQ" "$N" "$pid"
[ -n "${KEEP:-}" ] && cp "$run/perf.data" "$KEEP"
exit 0
