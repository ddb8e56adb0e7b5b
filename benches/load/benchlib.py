#!/usr/bin/env python3
"""Helpers for benches/load/run.sh (standard library only).

  benchlib.py tree ROOTPID             ROOTPID and all its descendants
  benchlib.py ticks ROOTPID            user+sys CPU ticks of ROOTPID and all its descendants
  benchlib.py reset-hwm ROOTPID        reset VmHWM (peak RSS) of the tree: /proc/<pid>/clear_refs = 5
  benchlib.py hwm ROOTPID              sum of VmHWM (kB) over the tree's processes
  benchlib.py busy                     busy CPU ticks of the whole machine (/proc/stat, all CPUs)
  benchlib.py snap [--reset] PROXY BACK  one line: proxy user and sys ticks, backend ticks, machine
                                       busy ticks, proxy VmHWM kB (--reset: reset VmHWM first)
  benchlib.py run-timed CPUFILE CMD... run CMD, write its children's user+sys CPU ticks to CPUFILE
  benchlib.py record K=V... WRKFILE    one "RESULT {json}" line for a finished wrk run (kind=h2load:
                                       h2load's output, then its --log-file; kind=many:
                                       examples/many_connections' output, edge.sh)
  benchlib.py cookies OUT N PREFIX [VALID...]  N cookie lines; VALID values spread evenly
  benchlib.py jsessionids OUT N        N lines JSESSIONID=<32 upper-case hex digits> (Tomcat style)
  benchlib.py report [--quiet=PCT] RAWFILE...  Markdown tables of medians (and ratios to HAProxy);
                                       --quiet adds tables of the runs with other CPU ≤ PCT %
  benchlib.py report --compact RAWFILE...      narrower tables: "value (ratio)" per cell
  benchlib.py targets RAWFILE...       the #7 targets computed from the runs: cookie vs
                                       affinity-off CPU per request, 2-thread vs 1-thread scaling
  benchlib.py edge-tables RAWFILE...   one table per edge workload (edge.sh): req/s, p99, CPU/req,
                                       ratios to HAProxy and sticky-proxy's to bare Pingora
  benchlib.py massif SNAPSHOT N [BASE] a massif detailed snapshot's allocation sites per connection
                                       (minus those of BASE, a snapshot before the connections)
  benchlib.py callgrind FILE REQUESTS  self and inclusive instruction counts per function and
                                       per request, with sticky_proxy's own functions listed apart

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


def ticks(root, split=False):
    """user+sys clock ticks of root's process tree; (user, sys) with split=True."""
    user = system = 0
    for pid in tree(root):
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state): utime = field 14, stime = field 15.
        user += int(fields[11])
        system += int(fields[12])
    return (user, system) if split else user + system


def busy():
    """Busy ticks of the machine: everything in /proc/stat's cpu line except idle and iowait."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    return sum(fields[:8]) - fields[3] - fields[4]


def snap(args):
    if args[0] == "--reset":
        reset_hwm(int(args[1]))
        args = args[1:]
    proxy, back = int(args[0]), int(args[1])
    user, system = ticks(proxy, split=True)
    print(user, system, ticks(back), busy(), hwm(proxy))


def run_timed(args):
    import resource
    import subprocess
    cpufile, *cmd = args
    rc = subprocess.call(cmd)
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(cpufile, "w") as f:
        f.write(f"{round((ru.ru_utime + ru.ru_stime) * CLK_TCK)}\n")
    sys.exit(rc)


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


def parse_h2load(text, logfile):
    """h2load's totals, and p50/p99 from its --log-file (3rd column: µs to the end of the answer)."""
    out = {}
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored, (\d+) timeout", text, re.M)
    if not m:
        raise ValueError("no request count in h2load output")
    done, ok = int(m.group(3)), int(m.group(4))
    out["requests"] = done
    m2 = re.search(r"^finished in ([\d.]+)s, ([\d.]+) req/s", text, re.M)
    out["rps"] = float(m2.group(2)) if m2 else 0.0
    errors = done - ok + int(m.group(5)) + int(m.group(6)) + int(m.group(7))
    m3 = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m3:
        errors += int(m3.group(3)) + int(m3.group(4))
    out["errors"] = errors
    times = []
    with open(logfile) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                times.append(int(parts[2]))
    times.sort()
    for pct in (50, 99):
        out[f"p{pct}_ms"] = (times[min(len(times) - 1, int(len(times) * pct / 100))] / 1000
                             if times else None)
    return out


def parse_many(text):
    """examples/many_connections' key=value output: the paced phase's figures."""
    kv = dict(re.findall(r"(\w+)=(\S+)", text))
    out = {"requests": int(kv.get("paced_requests", 0)), "rps": float(kv.get("achieved_rate", 0)),
           "p50_ms": float(kv["p50_ms"]) if "p50_ms" in kv else None,
           "p99_ms": float(kv["p99_ms"]) if "p99_ms" in kv else None,
           "errors": int(kv.get("open_errors", 0)) + int(kv.get("paced_errors", 0)),
           "connections": int(kv.get("opened", 0)),
           "paced_cpu_s": float(kv.get("paced_cpu_s", 0)),
           "paced_wall_s": float(kv.get("paced_wall_s", 0)) or None}
    if "rss_idle_kib" in kv and "rss_before_kib" in kv:
        out["idle_kib_per_conn"] = round(
            (int(kv["rss_idle_kib"]) - int(kv["rss_before_kib"])) / max(1, out["connections"]), 1)
        out["rss_idle_mib"] = round(int(kv["rss_idle_kib"]) / 1024, 1)
    return out


def record(args):
    """K=V... OUTFILE [LOGFILE]: kind=wrk (default), kind=h2load (LOGFILE: its --log-file) or
    kind=many (examples/many_connections: CPU from its own sampling of the paced phase)."""
    kind = next((a.split("=", 1)[1] for a in args if a.startswith("kind=")), "wrk")
    logfile = None
    if kind == "h2load":
        *args, logfile = args
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
        text = f.read()
    rec.update(parse_h2load(text, logfile) if kind == "h2load" else
               parse_many(text) if kind == "many" else parse_wrk(text))
    user_s = (rec.pop("user1") - rec.pop("user0")) / CLK_TCK
    sys_s = (rec.pop("sys1") - rec.pop("sys0")) / CLK_TCK
    cpu_s = whole_cpu_s = user_s + sys_s
    busy_wall_s = rec["wall_s"]
    if kind == "many":
        # The client's run includes opening the connections: per request, count the CPU of the
        # paced phase only (sampled by the client), over that phase's duration.
        cpu_s = rec.pop("paced_cpu_s")
        user_s = sys_s = None
        rec["wall_s"] = rec.pop("paced_wall_s", None) or rec["wall_s"]
    if rec["requests"] and user_s is not None:
        rec["user_us_per_req"] = round(user_s * 1e6 / rec["requests"], 3)
        rec["sys_us_per_req"] = round(sys_s * 1e6 / rec["requests"], 3)
    if "busy1" in rec:
        # Everything else the machine did meanwhile: other processes, interrupts and softirq
        # (loopback networking is partly accounted there, so this is never zero).
        busy_s = (rec.pop("busy1") - rec.pop("busy0")) / CLK_TCK
        back_s = (rec.pop("back1") - rec.pop("back0")) / CLK_TCK
        wrk_s = rec.pop("wrk_ticks") / CLK_TCK
        rec["wrk_cpu_pct"] = round(100 * wrk_s / busy_wall_s, 1)
        rec["backends_cpu_pct"] = round(100 * back_s / busy_wall_s, 1)
        rec["other_cpu_pct"] = round(100 * (busy_s - whole_cpu_s - back_s - wrk_s) / busy_wall_s, 1)
    rec["cpu_s"] = round(cpu_s, 3)
    rec["cpu_us_per_req"] = round(cpu_s * 1e6 / rec["requests"], 3) if rec["requests"] else None
    rec["cpu_pct"] = round(100 * cpu_s / rec["wall_s"], 1) if rec.get("wall_s") else None
    rec["rss_mib"] = round(rec.pop("hwm_kb") / 1024, 1)
    print("RESULT " + json.dumps(rec, sort_keys=True))
    r = rec
    print(f"  {r['threads']}t r{r['round']} {r['workload']:9} {r['proxy']:13} {r['rps']:9.0f} req/s"
          f"  p50 {r['p50_ms']:.3f} ms  p99 {r['p99_ms']:.3f} ms  {r['cpu_us_per_req']:.1f} µs/req"
          f"  {r['rss_mib']:.1f} MiB  proxy {r['cpu_pct']:.0f}% wrk {r.get('wrk_cpu_pct', 0):.0f}%"
          f" backends {r.get('backends_cpu_pct', 0):.0f}% other {r.get('other_cpu_pct', 0):.0f}%"
          f"  errors {r['errors']}", file=sys.stderr)


def cookies(args):
    out, n, prefix, *valid = args
    n = int(n)
    rng = random.Random(7)  # fixed seed: the same ids in every run
    lines = [f"{prefix}{rng.getrandbits(256):064x}" for _ in range(n)]
    for i, value in enumerate(valid):
        lines[i * n // len(valid)] = f"{prefix}{value}"
    with open(out, "w") as f:
        f.write("\n".join(lines) + "\n")


def jsessionids(args):
    out, n = args[0], int(args[1])
    rng = random.Random(11)  # fixed seed: the same ids in every run
    with open(out, "w") as f:
        f.write("".join(f"JSESSIONID={rng.getrandbits(128):032X}\n" for _ in range(n)))


PROXY_ORDER = ["sticky", "sticky-off", "pingora-bare", "haproxy", "nginx"]
WORKLOAD_ORDER = ["new", "returning", "rotating", "sdk", "learned",
                  # benches/load/edge.sh
                  "keepalive", "close", "tls-handshake", "tls-keepalive", "h2", "c10k"]
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


def load_runs(paths):
    runs, notes = [], []
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.startswith("RESULT "):
                    runs.append(json.loads(line[7:]))
                elif line.startswith("NOTE "):
                    notes.append(line[5:].rstrip())
    return runs, notes


def tables(runs, title_extra=""):
    by = defaultdict(list)
    for r in runs:
        by[(r["threads"], r["workload"], r["proxy"])].append(r)
    base = {(r["threads"], r["workload"], r["round"]): r for r in runs if r["proxy"] == "haproxy"}
    out = []
    for threads in sorted({r["threads"] for r in runs}):
        rounds = len({r["round"] for r in runs if r["threads"] == threads})
        out.append(f"\n### {threads} worker thread{'s' if threads > 1 else ''} per proxy{title_extra} "
                   f"(median of up to {rounds} round{'s' if rounds > 1 else ''}; "
                   "×HA = median over rounds of the ratio to HAProxy in the same round)\n")
        head = ["workload", "proxy", "runs"]
        for _, title, _ in METRICS:
            head += [title, "×HA"]
        head += ["user / sys µs/req", "proxy CPU %", "other CPU %", "errors"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for workload in WORKLOAD_ORDER:
            for proxy in PROXY_ORDER:
                rs = by.get((threads, workload, proxy))
                if not rs:
                    continue
                row = [workload, proxy, str(len(rs))]
                for key, _, spec in METRICS:
                    row.append(fmt(median([r[key] for r in rs]), spec))
                    ratios = []
                    for r in rs:
                        b = base.get((threads, workload, r["round"]))
                        if b and b.get(key) and r.get(key) is not None:
                            ratios.append(r[key] / b[key])
                    row.append(fmt(median(ratios), "{:.2f}"))
                row.append(fmt(median([r.get("user_us_per_req") for r in rs]), "{:.0f}") + " / " +
                           fmt(median([r.get("sys_us_per_req") for r in rs]), "{:.0f}"))
                row.append(fmt(median([r["cpu_pct"] for r in rs]), "{:.0f}"))
                row.append(fmt(median([r.get("other_cpu_pct") for r in rs]), "{:.0f}"))
                row.append(str(sum(r["errors"] for r in rs)))
                out.append("| " + " | ".join(row) + " |")
    return out


def compact(runs):
    """One table per thread count: each cell "median (median ratio to HAProxy)"."""
    by = defaultdict(list)
    for r in runs:
        by[(r["threads"], r["workload"], r["proxy"])].append(r)
    base = {(r["threads"], r["workload"], r["round"]): r for r in runs if r["proxy"] == "haproxy"}
    out = []
    for threads in sorted({r["threads"] for r in runs}):
        out.append(f"\n**{threads} worker thread{'s' if threads > 1 else ''} per proxy** "
                   "— median over rounds (median ratio to HAProxy in the same round)\n")
        head = ["workload", "proxy"] + [t for _, t, _ in METRICS] + ["user / sys µs/req", "other CPU %"]
        out.append("| " + " | ".join(head) + " |")
        out.append("|" + "|".join(["---"] * 2 + ["---:"] * (len(head) - 2)) + "|")
        for workload in WORKLOAD_ORDER:
            for proxy in PROXY_ORDER:
                rs = by.get((threads, workload, proxy))
                if not rs:
                    continue
                row = [workload, proxy]
                for key, _, spec in METRICS:
                    value = fmt(median([r[key] for r in rs]), spec)
                    ratios = [r[key] / b[key] for r in rs
                              for b in [base.get((threads, workload, r["round"]))]
                              if b and b.get(key) and r.get(key) is not None]
                    row.append(value if proxy == "haproxy" else f"{value} ({fmt(median(ratios), '{:.2f}')})")
                row.append(fmt(median([r.get("user_us_per_req") for r in rs]), "{:.0f}") + " / " +
                           fmt(median([r.get("sys_us_per_req") for r in rs]), "{:.0f}"))
                row.append(fmt(median([r.get("other_cpu_pct") for r in rs]), "{:.0f}"))
                out.append("| " + " | ".join(row) + " |")
    return out


def targets(runs):
    """The issue #7 targets that this benchmark can compute from one run's records."""
    by = defaultdict(list)
    for r in runs:
        by[(r["threads"], r["workload"], r["proxy"])].append(r)
    out = ["", "## Targets computed from these runs", "",
           "**Affinity vs affinity off, CPU per request** (median over rounds of the per-round ratio "
           "`sticky / sticky-off`, same workload; target ≤ 1.05 for cookie affinity)", "",
           "| threads | workload | sticky CPU µs/req | sticky-off CPU µs/req | ratio (per-round median) | per-round ratios |",
           "|---:|---|---:|---:|---:|---|"]
    for threads in sorted({r["threads"] for r in runs}):
        for workload in WORKLOAD_ORDER:
            on = {r["round"]: r for r in by.get((threads, workload, "sticky"), [])}
            off = {r["round"]: r for r in by.get((threads, workload, "sticky-off"), [])}
            ratios = [on[k]["cpu_us_per_req"] / off[k]["cpu_us_per_req"] for k in sorted(on) if k in off]
            if not ratios:
                continue
            out.append(f"| {threads} | {workload} | {median([r['cpu_us_per_req'] for r in on.values()]):.1f} | "
                       f"{median([r['cpu_us_per_req'] for r in off.values()]):.1f} | {median(ratios):.3f} | "
                       + ", ".join(f"{x:.3f}" for x in ratios) + " |")
    floor = [("sticky", "pingora-bare"), ("sticky-off", "pingora-bare"), ("pingora-bare", "haproxy")]
    rows = []
    for threads in sorted({r["threads"] for r in runs}):
        for a, b in floor:
            one = {r["round"]: r for r in by.get((threads, "returning", a), [])}
            two = {r["round"]: r for r in by.get((threads, "returning", b), [])}
            ratios = [one[k]["cpu_us_per_req"] / two[k]["cpu_us_per_req"] for k in sorted(one) if k in two]
            if ratios:
                rows.append(f"| {threads} | {a} / {b} | {median(ratios):.3f} | "
                            + ", ".join(f"{x:.3f}" for x in ratios) + " |")
    if rows:
        out += ["", "**Against the Pingora floor** (`returning`, CPU per request; `pingora-bare` = "
                "examples/bare_pingora.rs: round robin, the X-Forwarded-* headers, sticky-proxy's default "
                "timeouts, nothing else): "
                "how much above a bare Pingora proxy sticky-proxy is, and how far bare Pingora is from "
                "HAProxy", "",
                "| threads | ratio | per-round median | per-round ratios |", "|---:|---|---:|---|"] + rows
    ts = sorted({r["threads"] for r in runs})
    if 1 in ts and 2 in ts:
        out += ["", "**2 threads vs 1 thread** (medians). *measured* = req/s with 2 threads ÷ req/s with 1; "
                "on this 2-core box the 2-thread proxy shares CPU 1 with wrk and the backends, so this is "
                "not the issue's set-up. *capacity* = 2 × (1-thread CPU µs/req) ÷ (2-thread CPU µs/req): "
                "the req/s two fully available cores would give relative to one, from the measured CPU "
                "cost per request (assumes the proxy could keep both cores busy, as it would with the "
                "load generator on another machine). Target ≥ 1.6.", "",
                "| workload | proxy | req/s 1t | req/s 2t | measured 2t/1t | CPU µs/req 1t | CPU µs/req 2t | capacity 2t/1t |",
                "|---|---|---:|---:|---:|---:|---:|---:|"]
        for workload in WORKLOAD_ORDER:
            for proxy in PROXY_ORDER:
                a, b = by.get((1, workload, proxy)), by.get((2, workload, proxy))
                if not a or not b:
                    continue
                r1, r2 = median([r["rps"] for r in a]), median([r["rps"] for r in b])
                c1, c2 = median([r["cpu_us_per_req"] for r in a]), median([r["cpu_us_per_req"] for r in b])
                out.append(f"| {workload} | {proxy} | {r1:,.0f} | {r2:,.0f} | {r2 / r1:.2f} | "
                           f"{c1:.1f} | {c2:.1f} | {2 * c1 / c2:.2f} |")
    return out


def edge_tables(args):
    """edge-tables RAWFILE...: one Markdown table per workload (and thread count): req/s, p99,
    CPU per request and peak RSS per proxy, each with the median per-round ratio to HAProxy, and
    sticky-proxy's CPU per request against bare Pingora's (the floor) in the same rounds."""
    runs, _ = load_runs(args)
    by = defaultdict(list)
    for r in runs:
        by[(r["threads"], r["workload"], r["proxy"])].append(r)

    def ratio(rs, threads, workload, other, key):
        base = {r["round"]: r for r in by.get((threads, workload, other), [])}
        return median([r[key] / base[r["round"]][key] for r in rs
                       if r["round"] in base and base[r["round"]].get(key) and r.get(key) is not None])

    out = []
    for workload in WORKLOAD_ORDER:
        for threads in sorted({r["threads"] for r in runs}):
            present = [p for p in PROXY_ORDER if by.get((threads, workload, p))]
            if not present:
                continue
            rounds = max(len(by[(threads, workload, p)]) for p in present)
            out.append(f"\n**{workload}, {threads} thread{'s' if threads > 1 else ''}** "
                       f"(median of {rounds} round{'s' if rounds > 1 else ''}; in brackets the median "
                       "per-round ratio to HAProxy)\n")
            out.append("| proxy | req/s | p99 ms | CPU µs/req | × bare Pingora (CPU) | peak RSS MiB | proxy CPU % | other CPU % |")
            out.append("|---|---:|---:|---:|---:|---:|---:|---:|")
            for proxy in present:
                rs = by[(threads, workload, proxy)]
                cells = []
                for key, spec in (("rps", "{:,.0f}"), ("p99_ms", "{:.2f}"), ("cpu_us_per_req", "{:.1f}")):
                    value = fmt(median([r.get(key) for r in rs]), spec)
                    if proxy != "haproxy":
                        value += f" ({fmt(ratio(rs, threads, workload, 'haproxy', key), '{:.2f}')})"
                    cells.append(value)
                floor = (fmt(ratio(rs, threads, workload, "pingora-bare", "cpu_us_per_req"), "{:.2f}")
                         if proxy == "sticky" else "")
                cells += [floor, fmt(median([r.get("rss_mib") for r in rs]), "{:.1f}"),
                          fmt(median([r.get("cpu_pct") for r in rs]), "{:.0f}"),
                          fmt(median([r.get("other_cpu_pct") for r in rs]), "{:.0f}")]
                out.append(f"| {proxy} | " + " | ".join(cells) + " |")
    print("\n".join(out).lstrip("\n"))


def report(args):
    quiet = None
    if args and args[0] == "--compact":
        runs, _ = load_runs(args[1:])
        print("\n".join(compact(runs)).lstrip("\n"))
        return
    if args and args[0].startswith("--quiet="):
        quiet = float(args[0].split("=", 1)[1])
        args = args[1:]
    runs, notes = load_runs(args)
    out = ["## Summary"] + compact(runs) + ["", "## All runs, every column"] + tables(runs)
    if quiet is not None:
        calm = [r for r in runs if r.get("other_cpu_pct") is not None and r["other_cpu_pct"] <= quiet]
        out += ["", f"## Quiet runs only (other CPU ≤ {quiet:g}% of one core during the run)", "",
                "Runs during which the rest of the machine (other processes, interrupts, softirq) used "
                f"at most {quiet:g}% of a core. A ratio needs HAProxy's run of the same round to be "
                "quiet too; `–` where none was."]
        out += tables(calm, ", quiet runs") if calm else ["", "(no quiet runs)"]
    out += targets(runs)
    for note in notes:
        out.append(f"\n{note}")
    print("\n".join(out))


def parse_callgrind(path):
    """Self cost and inclusive cost (self + calls made) per function name, event Ir."""
    names = {"fn": {}, "cfn": {}}
    self_cost = defaultdict(int)
    incl_calls = defaultdict(int)
    edges = defaultdict(int)
    fn = cfn = None
    in_call = False
    fn_names = {}

    def name_of(value):
        value = value.strip()
        if value.startswith("("):
            ident, _, rest = value.partition(")")
            rest = rest.strip()
            if rest:
                fn_names[ident] = rest
            return fn_names.get(ident, value)
        return value

    with open(path, errors="replace") as f:
        for line in f:
            if not line or line[0] == "#":
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                cost = int(parts[1]) if len(parts) > 1 else 0
                if in_call:
                    incl_calls[fn] += cost
                    edges[(fn, cfn)] += cost
                    in_call = False
                else:
                    self_cost[fn] += cost
            elif line.startswith("fn="):
                fn = name_of(line[3:])
            elif line.startswith("cfn="):
                cfn = name_of(line[4:])
            elif line.startswith("calls="):
                in_call = True
    incl = {k: self_cost.get(k, 0) + incl_calls.get(k, 0) for k in set(self_cost) | set(incl_calls)}
    return self_cost, incl, edges


def callgrind(args):
    path, requests = args[0], int(args[1])
    self_cost, incl, edges = parse_callgrind(path)
    total = sum(self_cost.values())
    per = lambda v: v / requests
    print(f"total {total:,} Ir (user space only; kernel time is not counted), "
          f"{requests:,} requests, {per(total):,.0f} Ir/request\n")
    print("## top self cost (exclusive)")
    for name, v in sorted(self_cost.items(), key=lambda kv: -kv[1])[:30]:
        print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {name[:160]}")
    groups = {
        "allocator (malloc/free/realloc/calloc)": re.compile(r"^(malloc|free|realloc|calloc|_int_malloc|_int_free|_int_realloc|malloc_consolidate|cfree|tcache|__libc_malloc|__libc_free|__libc_realloc|__libc_calloc|unlink_chunk)"),
        "memcpy/memmove/memset/memcmp": re.compile(r"^(__)?(memcpy|memmove|memset|memcmp|bcmp)"),
        "core::fmt / alloc::fmt (formatting)": re.compile(r"^(core::fmt|alloc::fmt|<.* as core::fmt::)"),
    }
    print("\n## self cost by category")
    for title, rx in groups.items():
        v = sum(c for n, c in self_cost.items() if rx.search(n))
        print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {title}")
    print("\n## inclusive cost of sticky_proxy's own functions (callees included; recursion may double count)")
    ours = [(n, v) for n, v in incl.items() if "sticky_proxy::" in n and "{{closure}}" not in n or
            re.search(r"sticky_proxy::proxy::.*(upstream_peer|upstream_request_filter|response_filter|logging)", n)]
    for name, v in sorted(ours, key=lambda kv: -kv[1])[:30]:
        print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {name[:160]}")
    for hook in ("upstream_request_filter::{{closure}}", "upstream_peer::{{closure}}",
                 "response_filter::{{closure}}"):
        rows = sorted(((v, t) for (f, t), v in edges.items()
                       if "sticky_proxy::proxy::StickyProxy" in f and f.endswith(hook)), reverse=True)[:8]
        if rows:
            print(f"\n## direct callees of StickyProxy::{hook.split('::')[0]} (inclusive)")
            for v, t in rows:
                print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {t[:160]}")
    for callee in ("__memcpy_avx_unaligned_erms", "__rustc::__rust_alloc", "__rustc::__rust_dealloc"):
        rows = sorted(((v, f) for (f, t), v in edges.items() if t == callee), reverse=True)[:6]
        if rows:
            print(f"\n## top direct callers of {callee} (inclusive cost of those calls)")
            for v, f in rows:
                print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {f[:160]}")
    print("\n## inclusive cost, top functions")
    for name, v in sorted(incl.items(), key=lambda kv: -kv[1])[:60]:
        print(f"{100 * v / total:6.2f}%  {per(v):9,.0f} Ir/req  {name[:160]}")


def massif(args):
    """massif FILE CONNECTIONS [BASELINE_FILE]: a massif detailed snapshot's allocation sites
    (the top level of its tree), in bytes per connection, each named by its first frames outside
    the allocator; with a baseline snapshot (the same proxy before the connections were opened),
    its sites are subtracted."""
    def sites(path):
        nodes = []
        with open(path) as f:
            for line in f:
                m = re.match(r"^( *)n\d+: (\d+) (.*)", line)
                if m:
                    nodes.append((len(m.group(1)), int(m.group(2)), m.group(3)))
        skip = re.compile(r"library/alloc|library/core|alloc::|__rust|__rdl|aligned_malloc|"
                          r"UnknownInlinedFun|malloc/new|in \d+ places|bytes_mut\.rs|raw_vec|"
                          r"boxed\.rs|alloc\.rs|vec/mod\.rs|unix\.rs")
        out = {}
        for i, (depth, size, text) in enumerate(nodes):
            if depth != 1:
                continue
            frames = []
            for d2, _, t2 in nodes[i + 1:]:
                if d2 <= 1:
                    break
                if not skip.search(t2):
                    label = re.sub(r"^0x[0-9A-F]+: ", "", t2)
                    label = re.sub(r"<[^<>]*(<[^<>]*(<[^<>]*>[^<>]*)*>[^<>]*)*>", "<…>", label)
                    if not frames or frames[-1] != label:
                        frames.append(label)
                if len(frames) == 3:
                    break
            key = " ← ".join(frames) if frames else text
            if "places, all below" in text:
                key = "(small sites below massif's threshold)"
            out[key] = out.get(key, 0) + size
        return out
    path, n = args[0], int(args[1])
    now = sites(path)
    base = sites(args[2]) if len(args) > 2 else {}
    rows = sorted(((now.get(k, 0) - base.get(k, 0), k) for k in set(now) | set(base)), reverse=True)
    total = sum(v for v, _ in rows)
    print(f"heap growth: {total / n:,.0f} bytes per connection ({n} connections)")
    rest = 0
    for v, k in rows:
        if abs(v) / n >= 64:
            print(f"{v / n:>10,.0f}  {k}")
        else:
            rest += v
    print(f"{rest / n:>10,.0f}  (every other site, net)")


def main():
    cmd, *args = sys.argv[1:]
    if cmd == "tree":
        print(" ".join(str(p) for p in tree(int(args[0]))))
    elif cmd == "ticks":
        print(ticks(int(args[0])))
    elif cmd == "snap":
        snap(args)
    elif cmd == "busy":
        print(busy())
    elif cmd == "run-timed":
        run_timed(args)
    elif cmd == "reset-hwm":
        reset_hwm(int(args[0]))
    elif cmd == "hwm":
        print(hwm(int(args[0])))
    elif cmd == "record":
        record(args)
    elif cmd == "cookies":
        cookies(args)
    elif cmd == "callgrind":
        callgrind(args)
    elif cmd == "jsessionids":
        jsessionids(args)
    elif cmd == "targets":
        print("\n".join(targets(load_runs(args)[0])).lstrip("\n"))
    elif cmd == "report":
        report(args)
    elif cmd == "massif":
        massif(args)
    elif cmd == "edge-tables":
        edge_tables(args)
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
