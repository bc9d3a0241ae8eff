#!/usr/bin/env bash
# Print markdown tables (median [min..max] over reps) from results/*.jsonl.
cd "$(dirname "$0")"
S="python3 lib/stats.py summarize"
R=${RESULTS_DIR:-results}
t() { [ -s "$R/$1.jsonl" ] && { echo; echo "### $1"; $S "$R/$1.jsonl" "$2" "$3"; }; }
t physical_spawn mode,workers spawns_per_s
t physical_sqlite synchronous,fs commits_per_s
t physical_burst measured,mode,threads,n_jobs p50_ms,p99_ms,max_ms,parent_cpu_ms
t fire_latency adapter,n_jobs p50_ms,p99_ms,max_ms,min_ms,missing,daemon_cpu_ms,children_cpu_ms
[ -s "$R/fire_latency.jsonl" ] && grep -q '"measured":"fire_reps"' "$R/physical_burst.jsonl" 2>/dev/null && {
    echo; echo "### fire_latency against the floors of the same rep (1,000 jobs)"
    python3 lib/stats.py floor_ratio "$R/fire_latency.jsonl" "$R/physical_burst.jsonl"; }
t startup adapter,jobs cpu_settle_s,cpu_ms_at_settle,ready_stamp_s,ready_log_s,rss_kb_end,threads_end
t startup_validate adapter,jobs median_ms,min_ms,max_ms
t idle_cost adapter,jobs cpu_ms,perf_task_clock_ms,ctxsw,perf_ctxsw,wakeups_per_s,rss_kb,threads,stray_fires
t spawn_throughput adapter,offered_per_s achieved_per_s,min_sec_count,max_sec_count,lateness_p50_ms,lateness_p99_ms,rss_kb
t output_capture adapter,mb,line_bytes job_s,lines_per_s,direct_s,pipe_cat_s,daemon_peak_rss_kb,daemon_tree_peak_rss_kb,daemon_hwm_kb,daemon_cpu_ms
t run_now adapter,count p50_ms,p99_ms,max_ms,min_ms,missing
t failover adapter kills,takeover_p50_ms,takeover_max_ms,next_late_p50_ms,next_late_max_ms,gap_p50_ms,fired_twice,never_fired,next_instant_missed
t store_write batch runs_per_s,transactions_per_s,record_us_per_run,running_us_per_run,finish_us_per_run
