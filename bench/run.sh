#!/usr/bin/env bash
# The whole benchmark in one command: build schedctl (release) and the anchors, then measure
# schedctl and the anchors side by side, metric by metric, and write results/SUMMARY.md.
# usage: bench/run.sh [METRIC ...]
#   metrics: physical fire startup idle spawn capture runnow failover store (default: all)
# env: REPS (3), ANCHORS ("cron flashcron tcsd"; supercronic only if /tmp/bin/supercronic exists),
#      RESULTS_DIR (default bench/results; trial runs: RESULTS_DIR=/tmp/x)
# Needs root for the cron anchor (apt-get install cron; it writes /etc/cron.d). Run nothing else
# meanwhile: the machine has 2 cores and every daemon shares them with its own jobs.
set -eu
cd "$(dirname "$0")"
export RESULTS_DIR="${RESULTS_DIR:-$PWD/results}"
METRICS="${*:-physical fire startup idle spawn capture runnow failover store}"
ANCHORS="${ANCHORS-cron flashcron tcsd}"
[ -x /tmp/bin/supercronic ] && ANCHORS="$ANCHORS supercronic"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

log "building schedctl (release)"
(cd .. && cargo build --release --quiet)
missing=()
for a in $ANCHORS; do
    case $a in
        cron) [ -x /usr/sbin/cron ] && command -v hyperfine >/dev/null || missing+=(cron) ;;
        flashcron) [ -x /tmp/flashcron/bin/flashcron ] || missing+=(flashcron) ;;
        tcsd) [ -x "${SB_TMP:-/tmp/schedbench}/bin/tcsd" ] || missing+=(tcsd) ;;
    esac
done
command -v hyperfine >/dev/null && command -v bc >/dev/null || missing+=(cron)
if [ ${#missing[@]} -gt 0 ]; then
    log "installing the anchors: ${missing[*]}"
    tools/build_anchors.sh "${missing[@]}"
fi

ALL="schedctl $ANCHORS"
set +e
for m in $METRICS; do
  log "metric: $m"
  case $m in
    physical) metrics/physical_limits.sh ;;
    fire)
        # Rep by rep across the adapters, so that the host's load drifting within the run
        # moves all of them alike; each 1,000-job rep begins with the floors of that minute.
        for n in 1 100 1000; do
            for rep in $(seq 1 "${REPS:-3}"); do
                [ "$n" = 1000 ] && REP=$rep metrics/physical_limits.sh burst
                for a in $ALL; do REP=$rep metrics/fire_latency.sh "$a" "$n"; done
            done
        done ;;
    startup)  for a in $ALL; do metrics/startup.sh "$a"; done ;;
    idle)     for a in $ALL; do metrics/idle_cost.sh "$a"; done ;;
    spawn)    for a in $ALL; do metrics/spawn_throughput.sh "$a"; done ;;
    capture)
        for bytes in 11 100; do
            for a in $ALL; do LINE_BYTES=$bytes metrics/output_capture.sh "$a"; done
            SCHEDCTL_LOG_FORMAT=json SCHEDCTL_ADAPTER_NAME=schedctl-json LINE_BYTES=$bytes \
                metrics/output_capture.sh schedctl
        done ;;
    runnow)   metrics/run_now.sh schedctl ;;
    failover) metrics/failover.sh schedctl ;;
    store)
        for rep in $(seq 1 "${REPS:-3}"); do
            (cd .. && cargo bench --quiet --bench store -- "${SB_TMP:-/tmp/schedbench}/store" 3) \
                | sed "s/^{/{\"rep\":$rep,/" | tee -a "$RESULTS_DIR/store_write.jsonl"
        done ;;
    *) echo "unknown metric $m" >&2 ;;
  esac
done
./summarize.sh > "$RESULTS_DIR/SUMMARY.md"
log "tables: $RESULTS_DIR/SUMMARY.md"
