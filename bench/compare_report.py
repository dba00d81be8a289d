#!/usr/bin/env python3
"""Report for compare_allocators.sh: medians over rounds, ratios against glibc, CSVs and the
data files plot_latency.gp draws.

usage: compare_report.py OUTDIR WORKLOAD NAME...
Reads OUTDIR/raw/NAME.rK.json (bench_alloc --json, one run each) for every round K found.
"""
import csv
import glob
import json
import os
import re
import statistics
import sys

BASELINE = "glibc"
PERCENTILES = ["p50", "p95", "p99", "p999", "max", "mean"]

METRICS = [("mops", lambda r: r["ops_per_s"] / 1e6, True)]  # (column, getter, has a ratio column)
for op in ("alloc", "free"):
    for p in PERCENTILES:
        METRICS.append((f"{op}_{p}_ns", lambda r, op=op, p=p: r[f"{op}_ns"][p], True))
METRICS += [
    ("rss_peak_mib", lambda r: r["rss_peak_bytes"] / 2**20, True),
    ("rss_end_mib", lambda r: r["rss_end_bytes"] / 2**20, False),
    ("cross_thread_frees", lambda r: r["main"]["cross_thread_frees"], False),
    ("deferred_total", lambda r: r["pool"]["shard_deferred_total"] if r["pool"] else None, False),
    ("fallback_allocs", lambda r: r["pool"]["fallback_allocs"] if r["pool"] else None, False),
    ("shard_alloc_hits", lambda r: r["pool"]["shard_alloc_hits"] if r["pool"] else None, False),
]
SHOWN = [m for m in METRICS if m[2]]


def load(outdir, names):
    runs = {}  # name -> list of (round, run dict, document ok)
    for name in names:
        found = []
        for path in glob.glob(os.path.join(outdir, "raw", f"{name}.r*.json")):
            m = re.search(r"\.r(\d+)\.json$", path)
            try:
                with open(path) as f:
                    doc = json.load(f)
            except (OSError, ValueError) as e:
                print(f"warning: {path}: {e}", file=sys.stderr)
                continue
            found.append((int(m.group(1)), doc["runs"][0], doc.get("ok", False), doc.get("timer", {})))
        runs[name] = sorted(found, key=lambda t: t[0])
    return runs


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, column):
    if v is None:
        return "-"
    if column == "mops" or column.endswith("_mib"):
        return f"{v:.2f}" if column == "mops" else f"{v:.1f}"
    if column.endswith("_ns"):
        return f"{v:.1f}"
    return f"{v:.0f}"


def ratio(v, base):
    if v is None or base is None or base == 0:
        return None
    return v / base


def print_table(title, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    print(title)
    for line in [header] + rows:
        print("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(line, widths))))
    print()


def main():
    outdir, workload, names = sys.argv[1], sys.argv[2], sys.argv[3:]
    runs = load(outdir, names)
    names = [n for n in names if runs.get(n)]
    if not names:
        sys.exit("compare_report: no results")
    rounds = max(len(runs[n]) for n in names)

    med = {n: {col: median([get(r) for _, r, _, _ in runs[n]]) for col, get, _ in METRICS} for n in names}
    spread = {}
    for n in names:
        mops = [get_mops(r) for _, r, _, _ in runs[n]]
        spread[n] = (max(mops) - min(mops)) / statistics.median(mops) * 100 if len(mops) > 1 else 0.0
    base = med.get(BASELINE)

    print(f"bench_alloc {workload or '(defaults)'}")
    timer = runs[names[0]][0][3]
    step = timer.get("resolution_ns", 0.0)
    print(f"median of {rounds} interleaved rounds; latency in ns per call, timer overhead subtracted "
          f"(clamped at 0); Mops/s = allocs+frees per second")
    if timer.get("resolution_cycles", 1) > 1:
        print(f"the TSC advances in steps of {step:.1f} ns on this machine: percentiles of calls faster than "
              f"that are whole steps; the means resolve finer")
    print()
    def cell(n, col):
        text = fmt(med[n][col], col)
        if base is None or n == BASELINE:
            return text
        x = ratio(med[n][col], base[col])
        return f"{text} ({x:.2f}x)" if x is not None else f"{text} (n/a)"

    rows = [[n, cell(n, "mops"), f"{spread[n]:.0f}%", cell(n, "rss_peak_mib"), fmt(med[n]["rss_end_mib"], "rss_end_mib"),
             fmt(med[n]["cross_thread_frees"], "x"), fmt(med[n]["deferred_total"], "x"),
             fmt(med[n]["fallback_allocs"], "x")] for n in names]
    print_table(f"throughput and memory (x) = ratio to {BASELINE}",
                ["allocator", "Mops/s", "spread", "RSS peak MiB", "RSS end MiB", "cross-thread frees",
                 "deferred", "fallback allocs"], rows)
    for op in ("alloc", "free"):
        rows = [[n] + [cell(n, f"{op}_{p}_ns") for p in PERCENTILES] for n in names]
        print_table(f"{op}: ns per call (x) = ratio to {BASELINE}", ["allocator"] + PERCENTILES, rows)
    if base is not None:
        for op in ("alloc", "free"):
            for p in ("p50", "p99", "p999"):
                col = f"{op}_{p}_ns"
                parts = []
                for n in names:
                    if n == BASELINE:
                        continue
                    x = ratio(med[n][col], base[col])
                    parts.append(f"{n} {x:.2f}x" if x is not None else f"{n} n/a")
                print(f"{p} {op} vs {BASELINE}: " + ", ".join(parts))
        print()
    else:
        print(f"note: no {BASELINE} results, no ratios")

    bad = [(n, k) for n in names for k, _, ok, _ in runs[n] if not ok]
    for n, k in bad:
        print(f"warning: {n} round {k} reported failed sanity checks (see raw/{n}.r{k}.json 'failures')")

    cols = [c for c, _, _ in METRICS]
    with open(os.path.join(outdir, "summary.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["allocator", "rounds"] + cols + [f"{c}_vs_{BASELINE}" for c, _, _ in SHOWN])
        for n in names:
            ratios = [ratio(med[n][c], base[c]) if base else None for c, _, _ in SHOWN]
            w.writerow([n, len(runs[n])] + [med[n][c] for c in cols] + ratios)
    with open(os.path.join(outdir, "rounds.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["allocator", "round", "ok"] + cols)
        for n in names:
            for k, r, ok, _ in runs[n]:
                w.writerow([n, k, int(ok)] + [get(r) for _, get, _ in METRICS])

    # Percentile tables for gnuplot: a row per percentile, a column per allocator. A log axis
    # cannot show 0 (a call at or under the timer's overhead): those are drawn at 0.1 ns.
    for op in ("alloc", "free"):
        with open(os.path.join(outdir, f"latency_{op}.dat"), "w") as f:
            f.write("percentile " + " ".join(names) + "\n")
            for p in ("p50", "p95", "p99", "p999"):
                vals = [max(med[n][f"{op}_{p}_ns"] or 0.0, 0.1) for n in names]
                f.write(p + " " + " ".join(f"{v:.3f}" for v in vals) + "\n")
    with open(os.path.join(outdir, "latency_title.txt"), "w") as f:
        title = f"bench_alloc {workload or '(defaults)'}: median of {rounds} rounds"
        if timer.get("resolution_cycles", 1) > 1:
            title += f"; TSC step {step:.1f} ns, so p50 of fast paths reads as 0 or 1 step"
        f.write(title + "\n")
    print(f"csv: {os.path.join(outdir, 'summary.csv')}, {os.path.join(outdir, 'rounds.csv')}")


def get_mops(r):
    return r["ops_per_s"] / 1e6


if __name__ == "__main__":
    main()
