#!/usr/bin/env python3
"""burst_profile.py PERF_DATA FREQ N_JOBS DAEMON_PID : where the CPU of one burst went.

Reads a system-wide `perf record -g` of a burst of N_JOBS jobs started by the daemon DAEMON_PID
and keeps only the samples taken while the daemon was starting them (from its first to its
last clone). Prints, in microseconds of CPU per run: the daemon's threads, its children
before they exec (still named after the daemon), the jobs, idle; then the daemon threads'
time by system call (or page fault, or user space), and the user-space functions."""
import collections
import re
import subprocess
import sys

HEADER = re.compile(r"^(\S.*?)\s+(\d+)/(\d+)\s+([\d.]+):\s*$")


def samples(data):
    out = subprocess.run(
        ["perf", "script", "-i", data, "-F", "comm,pid,tid,time,ip,sym,dso"],
        capture_output=True, text=True, check=True).stdout
    found, current = [], None
    for line in out.splitlines():
        if not line.strip():
            continue
        m = HEADER.match(line)
        if m:
            current = (m.group(1), int(m.group(2)), int(m.group(3)), float(m.group(4)), [])
            found.append(current)
        elif current:
            parts = line.strip().split(None, 1)
            frame = parts[1] if len(parts) > 1 else parts[0]
            kernel = frame.endswith("([kernel.kallsyms])")
            frame = re.sub(r"\s*\([^()]*\)$", "", frame)
            frame = re.sub(r"\+0x[0-9a-f]+$", "", re.sub(r"::h[0-9a-f]{16}", "", frame))
            current[4].append((frame, kernel))
    return found


def category(stack):
    calls = [f for f, _ in stack if f.startswith(("__x64_sys_", "__do_sys_"))]
    if calls:
        return re.sub(r"^__(x64|do)_sys_", "", calls[-1])
    if any(f == "asm_exc_page_fault" for f, _ in stack):
        return "(page fault)"
    return "(kernel, other)" if not stack or stack[0][1] else "(user space)"


def main():
    data, freq, n, daemon = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    per_run = 1e6 / freq / n  # microseconds of CPU per run that one sample stands for
    all_samples = samples(data)
    clones = [s[3] for s in all_samples
              if s[1] == daemon and any("sys_clone" in f for f, _ in s[4])]
    if not clones:
        sys.exit("no clone of the daemon in the recording")
    first, last = min(clones), max(clones)
    burst = [s for s in all_samples if first <= s[3] <= last]
    print(f"burst: {(last - first) * 1000:.1f} ms from the first start to the last; "
          f"{len(burst)} samples at {freq} Hz; in us of CPU per run:")
    who = collections.Counter()
    for comm, pid, _tid, _t, _stack in burst:
        if pid == daemon:
            who["daemon threads"] += 1
        elif pid == 0:
            who["idle"] += 1
        elif comm.startswith("schedctl"):
            who["children before exec"] += 1
        else:
            who[comm] += 1
    for name, count in who.most_common(8):
        print(f"  {name:24} {count * per_run:7.1f}")
    mine = [s for s in burst if s[1] == daemon]
    print("daemon threads, by system call:")
    for name, count in collections.Counter(category(s[4]) for s in mine).most_common(16):
        print(f"  {name:24} {count * per_run:7.1f}")
    print("daemon threads, user space (leaf function):")
    leaves = collections.Counter(s[4][0][0] for s in mine if category(s[4]) == "(user space)")
    for name, count in leaves.most_common(12):
        print(f"  {count * per_run:6.1f}  {name[:100]}")


if __name__ == "__main__":
    main()
