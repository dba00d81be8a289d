#!/usr/bin/env python3
"""Ingest throughput and memory after the flush: this build against a baseline build, in
interleaved rounds, in one invocation.

Each run: a fresh `sydradb serve` (2 workers, every other key at its default: memtable
64 MiB, flush every second, fsync=interval) in a temporary directory; tsdb_load ingests for
--duration seconds (4 connections, 10,000-point requests over 1,000 series); then the run
waits for the memtable to be flushed, lets 5 s pass (epochs, slab decay) and records the
daemon's RSS and the allocator's committed bytes (/debug/alloc/stats). Rounds alternate
which build goes first. Prints the medians per build and the ratio new/baseline.

usage: bench/ingest_flush_bench.py --sydradb build/release/cli/sydradb --baseline OTHER/sydradb
           --load build/release/bench/tsdb_load [--rounds 3] [--duration 12] [--out DIR] [--smoke]
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from query_bench import Sydradb  # noqa: E402  (the daemon wrapper: start, wait_flushed, memory)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sydradb", required=True)
    ap.add_argument("--baseline", required=True)
    ap.add_argument("--load", required=True, help="tsdb_load binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=12)
    ap.add_argument("--out", default="build/ingest_flush_bench")
    ap.add_argument("--smoke", action="store_true",
                    help="1 round of 2 s with 1,000-point requests, 1 s to settle (checks the script)")
    a = ap.parse_args()
    settle = 5
    batch = 10000
    if a.smoke:
        a.rounds, a.duration, settle, batch = 1, 2, 1, 1000
    os.makedirs(a.out, exist_ok=True)
    builds = {"new": a.sydradb, "baseline": a.baseline}
    runs = []
    for rnd in range(a.rounds):
        for name in (["new", "baseline"] if rnd % 2 == 0 else ["baseline", "new"]):
            work = tempfile.mkdtemp(prefix="sydradb-ingest-flush-")
            d = Sydradb(name, builds[name], work)
            try:
                d.start()
                out = subprocess.run([a.load, "--url", "http://127.0.0.1:%d" % d.port, "--connections", "4",
                                      "--batch", str(batch), "--series", "1000", "--duration", str(a.duration),
                                      "--json"], check=True, capture_output=True, text=True).stdout
                load = json.loads(out)
                peak = d.memory()["rss"]
                d.wait_flushed()
                time.sleep(settle)
                mem = d.memory()
            finally:
                d.stop()
                shutil.rmtree(work, ignore_errors=True)
            run = {"round": rnd + 1, "build": name, "points": load["points"],
                   "points_per_second": load["points_per_second"], "ingest_p50_ms": load["ingest"]["p50_ms"],
                   "ingest_p99_ms": load["ingest"]["p99_ms"], "rss_at_end_of_ingest": peak,
                   "rss_after_flush": mem["rss"], "alloc_committed_after_flush": mem["alloc_committed"]}
            runs.append(run)
            if load["points"] == 0:
                print("ingest_flush_bench: %s stored no point in %.1f s (a loaded machine: raise --duration)"
                      % (name, a.duration), file=sys.stderr)
                return 1
            print("round %d %-8s %6.2f M points at %.2f M points/s, ingest p50 %.1f p99 %.1f ms; RSS at the end "
                  "of ingest %.1f MiB, after the flush %.1f MiB (allocator committed %.1f MiB)"
                  % (rnd + 1, name, run["points"] / 1e6, run["points_per_second"] / 1e6, run["ingest_p50_ms"],
                     run["ingest_p99_ms"], peak / 2**20, mem["rss"] / 2**20, mem["alloc_committed"] / 2**20))
    with open(os.path.join(a.out, "runs.json"), "w") as f:
        json.dump(runs, f, indent=1)
    print("\nmedians of %d rounds          new     baseline   new/baseline" % a.rounds)
    for key, scale, unit in [("points_per_second", 1e6, "M/s"), ("ingest_p50_ms", 1, "ms"),
                             ("ingest_p99_ms", 1, "ms"), ("rss_at_end_of_ingest", 2**20, "MiB"),
                             ("rss_after_flush", 2**20, "MiB"), ("alloc_committed_after_flush", 2**20, "MiB")]:
        m = {b: statistics.median(r[key] for r in runs if r["build"] == b) / scale for b in builds}
        ratio = "%10.2f" % (m["new"] / m["baseline"]) if m["baseline"] > 0 else "%10s" % "-"
        print("  %-28s %8.2f %10.2f %s  (%s)" % (key, m["new"], m["baseline"], ratio, unit))
    return 0


if __name__ == "__main__":
    sys.exit(main())
