#!/usr/bin/env python3
"""Report for compare_allocators.sh --suite: every workload side by side, the targets of
docs/benchmarks.md met or missed, and the RSS-over-time data of the producer -> consumer run.

usage: suite_report.py [--markdown] OUTDIR  (--markdown: tables for docs/benchmarks.md)
Reads OUTDIR/<workload>/summary.csv (bench_alloc workloads), OUTDIR/<workload>/raw/*.json
(RSS series) and OUTDIR/<program>/workload.csv (real programs). Writes OUTDIR/rss_xmalloc.dat.
"""
import csv
import glob
import json
import os
import statistics
import sys

WORKLOADS = ["adr30", "adr100", "single", "xmalloc", "larson", "cache-scratch"]
PROGRAMS = ["python", "redis", "sort"]
OURS = ["sharded", "sydralloc"]
# The same two with ForeignFrees::cache_locally, the alternative to the ADR's owner rule
# (docs/allocator.md, "The owner rule, measured"): checked against the same targets, apart.
VARIANTS = ["sharded-local", "sydralloc-local"]
PEERS = ["jemalloc", "tcmalloc"]
SHOWN = ["sharded", "sydralloc", "sharded-local", "sydralloc-local", "jemalloc", "tcmalloc", "mimalloc", "glibc",
         "legacy"]
LATENCY = ["alloc_p99_ns", "alloc_p999_ns", "free_p99_ns", "free_p999_ns"]


def read_csv(path):
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return {row["allocator"]: row for row in csv.DictReader(f)}


def num(row, col):
    try:
        v = row.get(col)
        return float(v) if v not in (None, "", "None") else None
    except (TypeError, ValueError):
        return None


MARKDOWN = False


def table(title, header, rows):
    if MARKDOWN:
        out = [title, "", "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        out += ["| " + " | ".join(str(x) for x in row) + " |" for row in rows]
        return "\n".join(out) + "\n"
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    out = [title]
    for row in [header] + rows:
        out.append("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))
    return "\n".join(out) + "\n"


def main():
    global MARKDOWN
    args = sys.argv[1:]
    if args and args[0] == "--markdown":
        MARKDOWN = True
        args = args[1:]
    outdir = args[0]
    lines = []
    verdicts = []  # (workload, allocator, figure, ours, best peer, met)
    for w in WORKLOADS:
        data = read_csv(os.path.join(outdir, w, "summary.csv"))
        if data is None:
            continue
        rows = []
        for n in SHOWN:
            if n not in data:
                continue
            r = data[n]
            rows.append([n, f"{num(r, 'mops'):.2f}"] + [f"{num(r, c):.1f}" for c in LATENCY] +
                        [f"{num(r, 'rss_peak_mib'):.1f}"])
        rounds = next(iter(data.values()))["rounds"]
        lines.append(table(f"{w}: medians of {rounds} interleaved rounds (ns per call; Mops/s = allocs+frees per second)",
                           ["allocator", "Mops/s", "alloc p99", "alloc p999", "free p99", "free p999", "RSS peak MiB"],
                           rows))
        peers = [data[p] for p in PEERS if p in data]
        if not peers:
            continue
        if w in ("adr30", "adr100"):
            # Each latency figure <= the better of jemalloc and tcmalloc; throughput >= the better.
            for n in OURS + VARIANTS:
                if n not in data:
                    continue
                for c in LATENCY:
                    best = min(num(p, c) for p in peers)
                    mine = num(data[n], c)
                    verdicts.append((w, n, c, mine, best, mine <= best))
                best = max(num(p, "mops") for p in peers)
                verdicts.append((w, n, "mops", num(data[n], "mops"), best, num(data[n], "mops") >= best))
        if w == "single":
            # Stay the best: alloc p99 and throughput against every other allocator.
            others = [data[k] for k in data if k not in OURS + VARIANTS]
            for n in OURS + VARIANTS:
                if n not in data:
                    continue
                best = min(num(o, "alloc_p99_ns") for o in others)
                verdicts.append((w, n, "alloc_p99_ns", num(data[n], "alloc_p99_ns"), best,
                                 num(data[n], "alloc_p99_ns") <= best))
                best = max(num(o, "mops") for o in others)
                verdicts.append((w, n, "mops", num(data[n], "mops"), best, num(data[n], "mops") >= best))

    # RSS over time in the producer -> consumer run: round 1 of each allocator.
    series = {}
    for path in sorted(glob.glob(os.path.join(outdir, "xmalloc", "raw", "*.r1.json"))):
        name = os.path.basename(path)[: -len(".r1.json")]
        try:
            with open(path) as f:
                run = json.load(f)["runs"][0]
        except (OSError, ValueError, KeyError, IndexError):
            continue
        series[name] = [(p["t_s"], p["rss_bytes"] / 2**20) for p in run.get("rss_series", [])]
    if series:
        with open(os.path.join(outdir, "rss_xmalloc.dat"), "w") as f:
            for name, points in series.items():
                f.write(f"{name} rss_mib\n")
                for t, mib in points:
                    f.write(f"{t:.2f} {mib:.2f}\n")
                f.write("\n\n")
        rows = []
        for name, points in series.items():
            if not points:
                continue
            rss = [m for _, m in points]
            half = rss[len(rss) // 2:]
            rows.append([name, f"{rss[0]:.1f}", f"{max(rss):.1f}", f"{rss[-1]:.1f}",
                         f"{(max(half) - min(half)) / max(statistics.median(half), 1e-9) * 100:.0f}%"])
        lines.append(table("xmalloc RSS over time, round 1 (MiB): bounded if the second half stays flat",
                           ["allocator", "first", "peak", "last", "2nd-half range"], rows))

    for p in PROGRAMS:
        data = read_csv(os.path.join(outdir, p, "workload.csv"))
        if data is None:
            continue
        metric_cols = [c for c in next(iter(data.values())).keys()
                       if c.endswith("_rps") or c.endswith("_p99_ms") or c == "server_rss_mib"]
        metric_cols = [c for c in metric_cols if "_vs_" not in c]
        header = ["allocator", "wall s", "cpu s", "RSS peak MiB"] + metric_cols
        rows = []
        for n in ["glibc", "jemalloc", "tcmalloc", "mimalloc", "sydralloc", "sydralloc-local"]:
            if n not in data:
                continue
            r = data[n]
            cells = [n] + [f"{num(r, c):.3f}" if num(r, c) is not None else "-" for c in ("wall_s", "cpu_s")]
            cells.append(f"{num(r, 'rss_peak_mib'):.1f}")
            cells += [f"{num(r, c):.2f}" if num(r, c) is not None else "-" for c in metric_cols]
            rows.append(cells)
        lines.append(table(f"program {p}: medians (lower is better, but for _rps)", header, rows))

    for title, names in (("targets: ours against the better of jemalloc and tcmalloc (single: against every other)",
                          OURS),
                         ("the owner rule, measured: the *-local variants against the same targets", VARIANTS)):
        mine_v = [v for v in verdicts if v[1] in names]
        if not mine_v:
            continue
        rows = [[w, n, fig, f"{mine:.2f}", f"{best:.2f}", "met" if ok else "MISSED"]
                for w, n, fig, mine, best, ok in mine_v]
        lines.append(table(title, ["workload", "allocator", "figure", "ours", "best peer", "verdict"], rows))
        missed = sum(1 for v in mine_v if not v[5])
        lines.append(f"{len(mine_v) - missed} of {len(mine_v)} target figures met\n")
    sys.stdout.write("\n".join(lines))


if __name__ == "__main__":
    main()
