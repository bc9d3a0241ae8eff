#!/usr/bin/env python3
"""Small statistics helpers for the harness (stdlib only).

  stats.py latency STAMPFILE T_NS EXPECTED   -> JSON with n, missing, min/p50/p99/max ms
  stats.py rate STAMPFILE WARMUP_S WINDOW_S  -> JSON: steady-state stamps/s and lateness within the second
  stats.py pairs STARTSFILE STAMPFILE        -> JSON: latency of the i-th stamp after the i-th start (ms)
  stats.py failover STAMPFILE KILLSFILE [LOGDIR] -> JSON: per leader kill, the time until a standby
                                                logged that it leads, the gap until the next fire and
                                                that instant's lateness; instants fired twice or never
  stats.py summarize FILE.jsonl GROUPKEYS METRICS -> markdown table, median [min..max] over reps
  stats.py floor_ratio FIRE.jsonl BURST.jsonl -> markdown table: each 1,000-job fire rep's p99
                                                against the floors measured at the start of that rep
"""
import datetime, json, math, os, statistics, sys


def pct(xs, p):
    """nearest-rank percentile, xs sorted"""
    if not xs:
        return None
    k = max(0, min(len(xs) - 1, math.ceil(p / 100 * len(xs)) - 1))
    return xs[k]


def read_stamps(path):
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 2:
                    out.append((parts[0], int(parts[1])))
    except FileNotFoundError:
        pass
    return out


def latency(path, t_ns, expected):
    t_ns, expected = int(t_ns), int(expected)
    st = read_stamps(path)
    first = {}
    for tag, ns in st:  # first stamp per job only
        first.setdefault(tag, ns)
    lat = sorted((ns - t_ns) / 1e6 for ns in first.values())
    r = {"n": len(lat), "missing": expected - len(lat), "extra_fires": len(st) - len(first)}
    for name, p in (("p50_ms", 50), ("p99_ms", 99)):
        v = pct(lat, p)
        r[name] = round(v, 3) if v is not None else None
    r["min_ms"] = round(lat[0], 3) if lat else None
    r["max_ms"] = round(lat[-1], 3) if lat else None
    print(json.dumps(r))


def rate(path, warmup, window):
    warmup, window = float(warmup), float(window)
    st = sorted(ns for _, ns in read_stamps(path))
    if not st:
        print(json.dumps({"stamps": 0}))
        return
    t0 = (st[0] // 10**9) * 10**9 + int(warmup * 1e9)
    t1 = t0 + int(window * 1e9)
    w = [ns for ns in st if t0 <= ns < t1]
    late = sorted((ns % 10**9) / 1e6 for ns in w)
    per_sec = {}
    for ns in w:
        per_sec[ns // 10**9] = per_sec.get(ns // 10**9, 0) + 1
    print(json.dumps({
        "stamps_total": len(st),
        "window_s": window,
        "achieved_per_s": round(len(w) / window, 1),
        "min_sec_count": min(per_sec.values()) if per_sec else 0,
        "max_sec_count": max(per_sec.values()) if per_sec else 0,
        "lateness_p50_ms": round(pct(late, 50), 1) if late else None,
        "lateness_p99_ms": round(pct(late, 99), 1) if late else None,
    }))


def dist(prefix, xs):
    xs = sorted(xs)
    r = {}
    for name, p in (("p50", 50), ("p99", 99)):
        v = pct(xs, p)
        r[f"{prefix}{name}_ms"] = round(v, 3) if v is not None else None
    r[f"{prefix}min_ms"] = round(xs[0], 3) if xs else None
    r[f"{prefix}max_ms"] = round(xs[-1], 3) if xs else None
    return r


def pairs(starts_path, stamps_path):
    with open(starts_path) as f:
        starts = [int(line) for line in f if line.strip()]
    stamps = [ns for _, ns in read_stamps(stamps_path)]
    lat = [(b - a) / 1e6 for a, b in zip(starts, stamps)]
    r = {"n": len(lat), "missing": len(starts) - len(lat)}
    r.update(dist("", lat))
    print(json.dumps(r))


def instant_ns(tag):
    """RFC 3339 scheduled instant (whole seconds, as SCHEDCTL_SCHEDULED_FOR) -> unix ns"""
    t = datetime.datetime.fromisoformat(tag.replace("Z", "+00:00"))
    return int(t.timestamp()) * 10**9


def leader_log_times(log_dir):
    """unix ns of every "this instance is the leader now" line in the daemons' text logs"""
    out = []
    for name in sorted(os.listdir(log_dir)):
        if not (name.startswith("daemon.") and name.endswith(".log")):
            continue
        with open(os.path.join(log_dir, name), errors="replace") as f:
            for line in f:
                if "this instance is the leader now" in line:
                    ts = line.split()[0]
                    t = datetime.datetime.fromisoformat(ts.replace("Z", "+00:00"))
                    out.append(int(round(t.timestamp() * 1000)) * 10**6)
    return sorted(out)


def failover(stamps_path, kills_path, log_dir=None):
    with open(kills_path) as f:
        kills = [int(line) for line in f if line.strip()]
    leads = leader_log_times(log_dir) if log_dir else []
    fires = {}
    for tag, ns in read_stamps(stamps_path):
        fires.setdefault(instant_ns(tag), []).append(ns)
    instants = sorted(fires)
    doubled = sum(1 for v in fires.values() if len(v) > 1)
    # every whole second from the first fired instant to the last should have fired once
    span = range(instants[0], instants[-1] + 1, 10**9) if instants else []
    never = [t for t in span if t not in fires]
    gaps, next_late, next_missed, takeover = [], [], 0, []
    for k in kills:
        # the log's millisecond stamps can put the new leader's line up to 1 ms before the kill
        after = [t for t in leads if t >= k - 10**6]
        if after:
            takeover.append(max(0, after[0] - k) / 1e6)
        after = sorted(ns for v in fires.values() for ns in v if ns > k)
        if after:
            gaps.append((after[0] - k) / 1e6)
        nxt = (k // 10**9 + 1) * 10**9
        if nxt in fires:
            next_late.append((min(fires[nxt]) - nxt) / 1e6)
        else:
            next_missed += 1
    r = {"kills": len(kills), "instants": len(span), "fired_twice": doubled,
         "never_fired": len(never), "next_instant_missed": next_missed}
    r.update(dist("takeover_", takeover))
    r.update(dist("gap_", gaps))
    r.update(dist("next_late_", next_late))
    print(json.dumps(r))


def fmt(v):
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        return str(int(v))
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.3f}"
    return str(v)


# Metrics a summary can show that the rows do not carry, computed from what they do.
DERIVED = {
    # output_capture: MB MiB of LINE_BYTES-byte lines logged in job_s seconds
    "lines_per_s": lambda d: d["mb"] * 2**20 // d["line_bytes"] / d["job_s"],
}


def summarize(path, groupkeys, metrics):
    groupkeys = groupkeys.split(",")
    metrics = metrics.split(",")
    groups = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            for m in metrics:
                if m in DERIVED and m not in d:
                    try:
                        d[m] = DERIVED[m](d)
                    except (KeyError, TypeError, ZeroDivisionError):
                        pass
            k = tuple(d.get(g) for g in groupkeys)
            groups.setdefault(k, []).append(d)
    print("| " + " | ".join(groupkeys + ["reps"] + metrics) + " |")
    print("|" + "---|" * (len(groupkeys) + 1 + len(metrics)))
    for k, rows in groups.items():
        cells = [str(x) for x in k] + [str(len(rows))]
        for m in metrics:
            vals = [r[m] for r in rows if isinstance(r.get(m), (int, float))]
            if not vals:
                cells.append("n/a")
            elif len(vals) == 1:
                cells.append(fmt(float(vals[0])))
            else:
                cells.append(f"{fmt(float(statistics.median(vals)))} [{fmt(float(min(vals)))}..{fmt(float(max(vals)))}]")
        print("| " + " | ".join(cells) + " |")


def floor_ratio(fire_path, burst_path):
    """Pair each 1,000-job fire rep with the floors run.sh measured at its start (the rows
    of physical_burst with "measured": "fire_reps" and the same rep; the k-th run of a rep
    with the k-th run of its floors when a file holds several runs)."""
    def rows(path):
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    floors = {}
    for d in rows(burst_path):
        if d.get("measured") == "fire_reps":
            floors.setdefault((d["mode"], d["rep"]), []).append(d["p99_ms"])
    seen = {}
    print("| adapter | rep | p99_ms | vfork floor p99_ms | armed floor p99_ms | p99 / vfork floor | p99 / armed floor |")
    print("|---|---|---|---|---|---|---|")
    for d in rows(fire_path):
        # rows copied in from another run say so ("from"): no floor of theirs is here
        if d.get("n_jobs") != 1000 or "from" in d or not isinstance(d.get("p99_ms"), (int, float)):
            continue
        key = (d["adapter"], d["rep"])
        k = seen[key] = seen.get(key, -1) + 1
        vfork = (floors.get(("vfork", d["rep"])) or [])[k:k + 1]
        armed = (floors.get(("armed", d["rep"])) or [])[k:k + 1]
        if not vfork or not armed:
            continue
        p99 = d["p99_ms"]
        print(f"| {d['adapter']} | {d['rep']} | {fmt(p99)} | {fmt(vfork[0])} | {fmt(armed[0])} "
              f"| {p99 / vfork[0]:.2f} | {p99 / armed[0]:.2f} |")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"latency": latency, "rate": rate, "pairs": pairs, "failover": failover,
     "summarize": summarize, "floor_ratio": floor_ratio}[cmd](*args)
