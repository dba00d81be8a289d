#!/usr/bin/env python3
"""Runs a command under SYDRA_ALLOC_STATS=1 and checks the stats document libsydralloc.so
prints to stderr at exit.

usage: check_stats.py [--max-threads N] [--min-hits N] -- COMMAND...
  --max-threads N  at most N threads still hold an allocator state at exit (the epoch
                   records and the shards' thread counts): exited threads gave theirs back
  --min-hits N     at least N allocations were served by the shards (the library was used)
The command's stdout passes through (the summary goes to stderr); its exit status must be 0.
"""
import json
import os
import subprocess
import sys


def main():
    args = sys.argv[1:]
    max_threads = None
    min_hits = 1
    while args and args[0] != "--":
        if args[0] == "--max-threads":
            max_threads = int(args[1])
        elif args[0] == "--min-hits":
            min_hits = int(args[1])
        else:
            sys.exit(f"check_stats: unknown option {args[0]}")
        args = args[2:]
    if not args or len(args) < 2:
        sys.exit(__doc__)
    command = args[1:]
    env = dict(os.environ, SYDRA_ALLOC_STATS="1")
    proc = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stdout.write(proc.stdout)
    failures = []
    if proc.returncode != 0:
        failures.append(f"exit status {proc.returncode}")
    docs = []
    for line in proc.stderr.splitlines():
        if line.startswith("{"):
            try:
                docs.append(json.loads(line))
            except ValueError as e:
                failures.append(f"stats line is not JSON: {e}")
        elif line.strip():
            sys.stderr.write(line + "\n")
    if len(docs) != 1:
        failures.append(f"expected one stats document on stderr, found {len(docs)}")
    else:
        doc = docs[0]
        pool = doc["small_pool"]
        hits = pool["shard_alloc_hits"]
        threads = pool["epoch"]["threads"]
        bound = sum(s["threads"] for s in pool["shards"])
        print(f"stats: mode {doc['allocator_mode']}, shards {pool['shard_count']}, shard hits {hits}, "
              f"fallback allocs {pool['fallback']['allocs']}, threads with a state {threads} "
              f"(bound to shards {bound}), committed {doc['memory']['committed_bytes'] >> 20} MiB",
              file=sys.stderr)
        if hits < min_hits:
            failures.append(f"shard_alloc_hits {hits} < {min_hits}: was the library used?")
        if max_threads is not None:
            if threads > max_threads:
                failures.append(f"{threads} epoch records still claimed at exit (at most {max_threads})")
            if bound > max_threads:
                failures.append(f"{bound} threads still bound to shards at exit (at most {max_threads})")
    for f in failures:
        print(f"check_stats: {f}", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
