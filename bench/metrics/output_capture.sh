#!/usr/bin/env bash
# Metric 5: output capture. One job writes MB MiB of LINE_BYTES-byte lines to stdout
#   (yes abcdefghij | head -c ${MB}M for the default 11-byte lines), bracketed by stamps. Reported:
#   job_s: end stamp - start stamp (the writer blocks on the pipe, so this is how fast the daemon drains it)
#   direct_s: the same pipeline run by this script straight to /dev/null; pipe_cat_s: piped into cat >/dev/null
#   daemon peak RSS while capturing (main PID, and main PID + descendants with the daemon's name) and the
#   main PID's CPU ms meanwhile.
# The daemon's own log goes to CAPTURE_LOG (default /dev/null) so disk speed is not measured.
# usage: metrics/output_capture.sh ADAPTER     env: MB (200), LINE_BYTES (11), REPS (3), TIMEOUT_S (300)
. "$(dirname "$0")/../lib/common.sh"
load_adapter "$1"
MB=${MB:-200}; LINE_BYTES=${LINE_BYTES:-11}; REPS=${REPS:-3}; TIMEOUT_S=${TIMEOUT_S:-300}
if [ "$GRANULARITY" = minute ]; then LEAD_S=${LEAD_S:-8}; else LEAD_S=${LEAD_S:-3}; fi
build_tools
# the line without its newline: abcdefghij for 11 bytes, else LINE_BYTES-1 letters
word=$(python3 -c 'import sys; n = int(sys.argv[1]) - 1; print(("abcdefghij" * (n // 10 + 1))[:n])' "$LINE_BYTES")
for rep in $(seq 1 "$REPS"); do
    run="$SB_TMP/capture"; rm -rf "$run"; mkdir -p "$run"
    s=$EPOCHREALTIME; yes $word | head -c "${MB}M" > /dev/null; e=$EPOCHREALTIME
    direct=$(echo "$e - $s" | bc -l)
    s=$EPOCHREALTIME; yes $word | head -c "${MB}M" | cat > /dev/null; e=$EPOCHREALTIME
    pipecat=$(echo "$e - $s" | bc -l)
    T=$(next_instant_ns "$LEAD_S"); s6=$(sched6 $((T / 1000000000)))
    printf '%s\t%s %s start; yes %s | head -c %sM; %s %s end\n' "$s6" "$STAMP" "$run/st" "$word" "$MB" "$STAMP" "$run/st" > "$run/jobs.tsv"
    adapter_write_config "$run/jobs.tsv" || { log "adapter_write_config failed"; exit 1; }
    DAEMON_LOG="${CAPTURE_LOG:-/dev/null}" adapter_start
    log "$ADAPTER capture rep=$rep: T=$(date -u -d @$((T / 1000000000)) +%T) pid=$DAEMON_PID"
    probe=$(python3 "$BENCH_DIR/lib/probe.py" capture "$DAEMON_PID" "$DAEMON_COMM" "$run/st" $((T / 1000000000 + TIMEOUT_S)))
    adapter_stop
    st=$(awk '$1=="start"{s=$2} $1=="end"{e=$2} END{ if (s && e) printf "%.3f", (e-s)/1e9; else print "null" }' "$run/st" 2>/dev/null)
    jsonl "$(printf '{"adapter":"%s","mb":%d,"line_bytes":%d,"rep":%d,"job_s":%s,"direct_s":%.3f,"pipe_cat_s":%.3f,%s' "$ADAPTER" "$MB" "$LINE_BYTES" "$rep" "${st:-null}" "$direct" "$pipecat" "${probe#\{}")" output_capture
done
