#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (standard library only).

  benchlib.py tree ROOTPID             ROOTPID and all its descendants
  benchlib.py ticks ROOTPID            user+sys CPU ticks of ROOTPID and all its descendants
  benchlib.py reset-hwm ROOTPID        reset VmHWM (peak RSS) of the tree: /proc/<pid>/clear_refs = 5
  benchlib.py hwm ROOTPID              sum of VmHWM (kB) over the tree's processes
  benchlib.py record K=V... WRKFILE    one "RESULT {json}" line for a finished wrk run
  benchlib.py cookies OUT N PREFIX [VALID...]  N cookie lines; VALID values spread evenly
  benchlib.py report RAWFILE...        Markdown tables of medians (and ratios to HAProxy)

CPU is read from /proc/<pid>/stat (utime+stime, fields 14 and 15, in clock ticks) for every
process of the proxy (NGINX master + workers; HAProxy and sticky-proxy are one process each).
Threads are included in their process's figures. Peak RSS is VmHWM from /proc/<pid>/status,
reset before each run so that it is the peak of that run.
"""
import json
import os
import random
import re
import statistics
import sys
from collections import defaultdict

CLK_TCK = os.sysconf("SC_CLK_TCK")


def tree(root):
    """root and all its descendants (processes, not threads)."""
    children = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
        fields = stat[stat.rindex(")") + 2:].split()
        children[int(fields[1])].append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def ticks(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime = field 14, stime = field 15.
        total += int(fields[11]) + int(fields[12])
    return total


def reset_hwm(root):
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass


def hwm(root):
    total = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def to_ms(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not m:
        raise ValueError(f"unknown latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(text):
    out = {}
    m = re.search(r"^\s*(\d+) requests in ([\d.]+)(\w+),", text, re.M)
    if not m:
        raise ValueError("no request count in wrk output")
    out["requests"] = int(m.group(1))
    m = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    out["rps"] = float(m.group(1)) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.M)
        out[f"p{pct}_ms"] = to_ms(m.group(1)) if m else None
    errors = 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += int(m.group(1))
    out["errors"] = errors
    return out


def record(args):
    *pairs, wrkfile = args
    rec = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        try:
            rec[key] = int(value)
        except ValueError:
            try:
                rec[key] = float(value)
            except ValueError:
                rec[key] = value
    with open(wrkfile) as f:
        rec.update(parse_wrk(f.read()))
    cpu_s = (rec.pop("cpu1") - rec.pop("cpu0")) / CLK_TCK
    rec["cpu_s"] = round(cpu_s, 3)
    rec["cpu_us_per_req"] = round(cpu_s * 1e6 / rec["requests"], 3) if rec["requests"] else None
    rec["cpu_pct"] = round(100 * cpu_s / rec["wall_s"], 1) if rec.get("wall_s") else None
    rec["rss_mib"] = round(rec.pop("hwm_kb") / 1024, 1)
    print("RESULT " + json.dumps(rec, sort_keys=True))


def cookies(args):
    out, n, prefix, *valid = args
    n = int(n)
    rng = random.Random(7)  # fixed seed: the same ids in every run
    lines = [f"{prefix}{rng.getrandbits(256):064x}" for _ in range(n)]
    for i, value in enumerate(valid):
        lines[i * n // len(valid)] = f"{prefix}{value}"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


PROXY_ORDER = ["sticky-cookie", "sticky-noaff", "haproxy", "nginx"]
WORKLOAD_ORDER = ["new", "returning", "rotating", "sdk"]
METRICS = [  # key, column title, format
    ("rps", "req/s", "{:,.0f}"),
    ("p50_ms", "p50 ms", "{:.3f}"),
    ("p99_ms", "p99 ms", "{:.3f}"),
    ("cpu_us_per_req", "CPU µs/req", "{:.1f}"),
    ("rss_mib", "peak RSS MiB", "{:.1f}"),
]


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(value, spec):
    return "–" if value is None else spec.format(value)


def report(paths):
    runs = []
    notes = []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    runs.append(json.loads(line[7:]))
                elif line.startswith("NOTE "):
                    notes.append(line[5:].rstrip())
    by = defaultdict(list)
    for r in runs:
        by[(r["threads"], r["workload"], r["proxy"])].append(r)
    base = {(r["threads"], r["workload"], r["round"]): r for r in runs if r["proxy"] == "haproxy"}
    out = []
    for threads in sorted({r["threads"] for r in runs}):
        rounds = len({r["round"] for r in runs if r["threads"] == threads})
        out.append(f"\n### {threads} worker thread{'s' if threads > 1 else ''} per proxy "
                   f"(median of {rounds} round{'s' if rounds > 1 else ''}; "
                   "×HA = median over rounds of the ratio to HAProxy in the same round)\n")
        head = ["workload", "proxy"]
        for _, title, _ in METRICS:
            head += [title, "×HA"]
        head += ["proxy CPU %", "errors"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for workload in WORKLOAD_ORDER:
            for proxy in PROXY_ORDER:
                rs = by.get((threads, workload, proxy))
                if not rs:
                    continue
                row = [workload, proxy]
                for key, _, spec in METRICS:
                    row.append(fmt(median([r[key] for r in rs]), spec))
                    ratios = []
                    for r in rs:
                        b = base.get((threads, workload, r["round"]))
                        if b and b.get(key) and r.get(key) is not None:
                            ratios.append(r[key] / b[key])
                    row.append(fmt(median(ratios), "{:.2f}"))
                row.append(fmt(median([r["cpu_pct"] for r in rs]), "{:.0f}"))
                row.append(str(sum(r["errors"] for r in rs)))
                out.append("| " + " | ".join(row) + " |")
    for note in notes:
        out.append(f"\n{note}")
    print("\n".join(out).lstrip("\n"))


def main():
    cmd, *args = sys.argv[1:]
    if cmd == "tree":
        print(" ".join(str(p) for p in tree(int(args[0]))))
    elif cmd == "ticks":
        print(ticks(int(args[0])))
    elif cmd == "reset-hwm":
        reset_hwm(int(args[0]))
    elif cmd == "hwm":
        print(hwm(int(args[0])))
    elif cmd == "record":
        record(args)
    elif cmd == "cookies":
        cookies(args)
    elif cmd == "report":
        report(args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
