#!/usr/bin/env bash
# Runs one bench_alloc workload on every allocator — sharded, legacy, glibc, jemalloc,
# tcmalloc, mimalloc, sydralloc (the peers and libsydralloc.so through LD_PRELOAD on
# --allocator=system), and sharded-local / sydralloc-local (the same two with cross-shard
# frees cached by the freeing thread: --foreign-frees=local, SYDRA_ALLOC_FOREIGN_FREES=local)
# — for R interleaved rounds (round 1: every allocator, round 2: every
# allocator, ...), then prints the medians with ratios against glibc, writes CSVs and plots
# the latency percentiles.
#
# usage: bench/compare_allocators.sh [--rounds R] [--sydralloc LIB] BENCH_ALLOC [OUTDIR] [BENCH ARGS...]
#   BENCH_ALLOC  path to the bench_alloc binary (e.g. build/release/bench/bench_alloc)
#   OUTDIR       where results go (default build/compare); raw JSON under OUTDIR/raw
#   BENCH ARGS   passed to every run, e.g. --threads 2 --remote-free-percent 30 --seconds 3
#   --rounds R   rounds (default 5, or $ROUNDS)
#   --sydralloc LIB  libsydralloc.so for the sydralloc arm (default: next to BENCH_ALLOC,
#                BENCH_ALLOC/../../alloc/libsydralloc.so; skipped when missing)
#
# Output: OUTDIR/summary.txt (the table printed), summary.csv (medians and ratios),
# rounds.csv (every run), latency_alloc.dat / latency_free.dat and latency.png.
#
# External workloads: any command under glibc, jemalloc, tcmalloc, mimalloc, sydralloc and
# sydralloc-local
# (LD_PRELOAD for the command and every process it starts), R interleaved rounds:
#
# usage: bench/compare_allocators.sh [--rounds R] [--sydralloc LIB] --workload CMD [OUTDIR]
#   CMD          a shell command (bash -c), e.g. "python3 my_script.py", or a built-in:
#                  python   tests/preload/alloc_heavy.py with PYTHONMALLOC=malloc (every
#                           Python object through malloc)
#                  pymalloc the same with Python's own small-object allocator
#                  sort     sort(1) of a generated 1,000,000-line file, two threads
#   OUTDIR       default build/compare-workload
#   --sydralloc LIB  default build/release/alloc/libsydralloc.so
# Prints, per allocator, the medians of wall time, CPU time (user + system) and peak RSS
# of the command's process tree (wait4), with ratios against glibc, and whether the
# command's standard output was identical under every allocator (it should be). Writes
# OUTDIR/workload_summary.txt, workload.csv (medians and ratios), workload_rounds.csv.
#
# The peer suite: every bench_alloc workload, then the real programs, each with the same
# interleaved rounds, and a report against the issue's targets (docs/benchmarks.md):
#
# usage: bench/compare_allocators.sh [--rounds R] [--sydralloc LIB] --suite BENCH_ALLOC [OUTDIR] [--seconds S]
#   runs, each into OUTDIR/<name>/ as above (default OUTDIR build/suite, S 2 seconds):
#     adr30          --workload=adr --threads 2 --remote-free-percent 30 (the ADR's mix)
#     adr100         --workload=adr --threads 2 --remote-free-percent 100 (every free remote)
#     single         --workload=single (one thread, no remote frees: the fast paths)
#     xmalloc        --workload=xmalloc --threads 2 (producer -> consumer; RSS over time)
#     larson         --workload=larson --threads 2 (server-like: objects outlive threads)
#     cache-scratch  --workload=cache-scratch --threads 2 (false sharing)
#     python, redis, sort  the real programs (--workload built-ins)
#   then OUTDIR/suite_summary.txt (every workload side by side, targets met or missed) and
#   OUTDIR/rss_xmalloc.png (RSS over time in the producer -> consumer run, every allocator).
#
# Built-in `redis`: redis-server (Debian's, --io-threads 2) on a free loopback port under
# the allocator, driven by redis-benchmark (not preloaded) with SET/GET/LPUSH/LPOP/HSET of
# 128-byte values from 50 clients; it prints METRIC lines (requests/s and p99 per test),
# which the workload report shows as medians beside wall, CPU and RSS. Any command may print
# `METRIC name value` lines: they are reported and left out of the identical-output check.
#
# The machine is shared and noisy: compare the ratios, which are taken within one round set.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rounds="${ROUNDS:-5}"
workload=""
sydralloc=""
suite=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --suite) suite=1; shift ;;
    --rounds) rounds="${2:?--rounds needs a value}"; shift 2 ;;
    --rounds=*) rounds="${1#--rounds=}"; shift ;;
    --workload) workload="${2:?--workload needs a command}"; shift 2 ;;
    --workload=*) workload="${1#--workload=}"; shift ;;
    --sydralloc) sydralloc="${2:?--sydralloc needs a path}"; shift 2 ;;
    --sydralloc=*) sydralloc="${1#--sydralloc=}"; shift ;;
    *) break ;;
  esac
done
if [[ -z "$workload" && ( $# -lt 1 || "$1" == "-h" || "$1" == "--help" ) ]]; then
  sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare_allocators: rounds must be a positive integer" >&2; exit 2; }
command -v python3 >/dev/null || { echo "compare_allocators: python3 is needed for the report" >&2; exit 2; }
libdir=/usr/lib/x86_64-linux-gnu

if [[ $suite -eq 1 ]]; then
  # ---- the peer suite ------------------------------------------------------------------
  bench="${1:?--suite needs the bench_alloc binary}"
  shift
  outdir="build/suite"
  if [[ $# -gt 0 && "$1" != -* ]]; then
    outdir="$1"
    shift
  fi
  seconds=2
  if [[ "${1:-}" == "--seconds" ]]; then seconds="${2:?--seconds needs a value}"; shift 2; fi
  [[ $# -eq 0 ]] || { echo "compare_allocators: --suite takes [OUTDIR] [--seconds S] only" >&2; exit 2; }
  mkdir -p "$outdir"
  extra=()
  [[ -n "$sydralloc" ]] && extra=(--sydralloc "$sydralloc")
  declare -A args=(
    [adr30]="--workload=adr --threads 2 --remote-free-percent 30"
    [adr100]="--workload=adr --threads 2 --remote-free-percent 100"
    [single]="--workload=single"
    [xmalloc]="--workload=xmalloc --threads 2"
    [larson]="--workload=larson --threads 2"
    [cache-scratch]="--workload=cache-scratch --threads 2"
  )
  failed=0
  for name in adr30 adr100 single xmalloc larson cache-scratch; do
    echo "=== suite: $name" >&2
    # shellcheck disable=SC2086  # the argument lists above are word lists
    bash "$0" --rounds "$rounds" "${extra[@]}" "$bench" "$outdir/$name" ${args[$name]} --seconds "$seconds" \
      >"$outdir/$name.log" 2>&1 || failed=1
    tail -n +1 "$outdir/$name/summary.txt" 2>/dev/null | sed -n '1,40p' >&2 || true
  done
  for program in python redis sort; do
    echo "=== suite: $program" >&2
    bash "$0" --rounds "$rounds" "${extra[@]}" --workload "$program" "$outdir/$program" \
      >"$outdir/$program.log" 2>&1 || failed=1
  done
  python3 "$here/suite_report.py" "$outdir" | tee "$outdir/suite_summary.txt"
  if command -v gnuplot >/dev/null && [[ -s "$outdir/rss_xmalloc.dat" ]]; then
    gnuplot -e "dat='$outdir/rss_xmalloc.dat'; out='$outdir/rss_xmalloc.png'" "$here/plot_rss.gp"
    echo "plot: $outdir/rss_xmalloc.png"
  fi
  [[ $failed -eq 0 ]] || { echo "compare_allocators: some suite runs failed (see $outdir/*.log)" >&2; exit 1; }
  exit 0
fi

if [[ -n "$workload" ]]; then
  # ---- external workloads -------------------------------------------------------------
  outdir="${1:-build/compare-workload}"
  [[ -n "$sydralloc" ]] || sydralloc="$here/../build/release/alloc/libsydralloc.so"
  mkdir -p "$outdir"
  outdir="$(cd "$outdir" && pwd)"
  py=/usr/bin/python3
  [[ -x "$py" ]] || py="$(command -v python3)"
  case "$workload" in
    python) cmd="PYTHONMALLOC=malloc $py $here/../tests/preload/alloc_heavy.py" ;;
    redis) cmd="bash $here/redis_workload.sh" ;;
    pymalloc) cmd="$py $here/../tests/preload/alloc_heavy.py" ;;
    sort)
      if [[ ! -s "$outdir/sort_input.txt" ]]; then
        "$py" - "$outdir/sort_input.txt" <<'PY'
import random, sys
rng = random.Random(7)
letters = "abcdefghijklmnopqrstuvwxyz"
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        word = "".join(rng.choice(letters) for _ in range(rng.randrange(3, 24)))
        f.write(f"{word},{rng.randrange(10**6)},{i}\n")
PY
      fi
      cmd="LC_ALL=C sort -S 64M --parallel=2 -t, -k2,2n -k1,1 $outdir/sort_input.txt"
      ;;
    *) cmd="$workload" ;;
  esac
  # name | LD_PRELOAD | foreign frees (libsydralloc.so only)
  arms=("glibc||")
  for c in "jemalloc|$libdir/libjemalloc.so.2|" "tcmalloc|$libdir/libtcmalloc_minimal.so.4|" \
           "mimalloc|$libdir/libmimalloc.so.2|" "sydralloc|$sydralloc|owner" "sydralloc-local|$sydralloc|local"; do
    IFS='|' read -r name lib _ <<<"$c"
    if [[ ! -e "$lib" ]]; then
      echo "note: skipping $name: $lib is missing" >&2
      continue
    fi
    arms+=("$c")
  done
  echo "workload: $cmd" >&2
  echo "${#arms[@]} allocators x $rounds rounds -> $outdir" >&2
  exec "$py" - "$outdir" "$rounds" "$cmd" "$workload" "${arms[@]}" <<'PY'
import csv, hashlib, os, statistics, subprocess, sys, time

outdir, rounds, cmd, label = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
arms = [a.split("|", 2) for a in sys.argv[5:]]
runs = {name: [] for name, _, _ in arms}
outputs = {name: set() for name, _, _ in arms}
failed = False
for r in range(1, rounds + 1):
    for name, lib, foreign in arms:
        env = dict(os.environ)
        env.pop("LD_PRELOAD", None)
        env.pop("SYDRA_ALLOC_FOREIGN_FREES", None)
        if lib:
            env["LD_PRELOAD"] = lib
        if foreign:
            env["SYDRA_ALLOC_FOREIGN_FREES"] = foreign
        t0 = time.perf_counter()
        proc = subprocess.Popen(["bash", "-c", cmd], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        digest = hashlib.sha256()
        out = proc.stdout.read()
        metrics = {}
        kept = []
        for line in out.decode(errors="replace").splitlines(keepends=True):
            parts = line.split()
            if len(parts) == 3 and parts[0] == "METRIC":
                try:
                    metrics[parts[1]] = float(parts[2])
                except ValueError:
                    kept.append(line)
            else:
                kept.append(line)
        digest.update("".join(kept).encode())
        err = proc.stderr.read()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        note = ""
        if code != 0:
            failed = True
            note = f" exit {code}: {err.decode(errors='replace')[:300]}"
        print(f"  round {r}/{rounds}  {name:<15} {wall:7.2f} s{note}", file=sys.stderr)
        # ru_maxrss of the waited child: the largest resident set among the processes of
        # the tree that were waited for (KiB).
        runs[name].append({"round": r, "ok": code == 0, "wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime,
                           "rss_peak_mib": ru.ru_maxrss / 1024, "metrics": metrics})
        outputs[name].add(digest.hexdigest())

base = "glibc"
def med(name, key):
    vals = [x[key] for x in runs[name] if x["ok"]]
    return statistics.median(vals) if vals else None
cols = ["wall_s", "cpu_s", "rss_peak_mib"]
table = {n: {c: med(n, c) for c in cols} for n, _, _ in arms}
all_outputs = set().union(*outputs.values())
lines = [f"workload {label!r}: {cmd}",
         f"median of {rounds} interleaved rounds; (x) = ratio to {base} (lower is better)", ""]
header = ["allocator", "wall s", "cpu s", "RSS peak MiB", "output"]
rows = []
for n, _, _ in arms:
    cells = [n]
    for c in cols:
        v = table[n][c]
        b = table.get(base, {}).get(c)
        text = "-" if v is None else (f"{v:.1f}" if c == "rss_peak_mib" else f"{v:.3f}")
        if v is not None and b and n != base:
            text += f" ({v / b:.2f}x)"
        cells.append(text)
    same = len(outputs[n]) == 1 and outputs[n] == outputs.get(base, outputs[n])
    cells.append("identical" if same else "DIFFERS")
    rows.append(cells)
widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
for row in [header] + rows:
    lines.append("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, widths))))
metric_names = sorted({k for n, _, _ in arms for x in runs[n] for k in x["metrics"]})
if metric_names:
    lines.append("")
    lines.append(f"METRIC lines printed by the command: medians (x) = ratio to {base}")
    mrows = []
    for n, _, _ in arms:
        cells = [n]
        for k in metric_names:
            vals = [x["metrics"][k] for x in runs[n] if x["ok"] and k in x["metrics"]]
            v = statistics.median(vals) if vals else None
            bvals = [x["metrics"][k] for x in runs.get(base, []) if x["ok"] and k in x["metrics"]]
            b = statistics.median(bvals) if bvals else None
            text = "-" if v is None else f"{v:.3f}"
            if v is not None and b and n != base:
                text += f" ({v / b:.2f}x)"
            cells.append(text)
            table.setdefault(n, {})[k] = v
        mrows.append(cells)
    mheader = ["allocator"] + metric_names
    mwidths = [max(len(str(x)) for x in col) for col in zip(mheader, *mrows)]
    for row in [mheader] + mrows:
        lines.append("  ".join(str(x).rjust(w) if i else str(x).ljust(w) for i, (x, w) in enumerate(zip(row, mwidths))))
if len(all_outputs) != 1:
    lines.append("")
    lines.append("warning: the command's output was not the same under every allocator and round")
text = "\n".join(lines) + "\n"
sys.stdout.write(text)
with open(os.path.join(outdir, "workload_summary.txt"), "w") as f:
    f.write(text)
with open(os.path.join(outdir, "workload.csv"), "w", newline="") as f:
    w = csv.writer(f)
    allcols = cols + metric_names
    w.writerow(["allocator", "rounds"] + allcols + [f"{c}_vs_{base}" for c in allcols] + ["output_identical"])
    for n, _, _ in arms:
        ratios = [(table[n][c] / table[base][c]) if base in table and table[n].get(c) and table[base].get(c) else None
                  for c in allcols]
        w.writerow([n, len(runs[n])] + [table[n].get(c) for c in allcols] + ratios + [int(len(all_outputs) == 1)])
with open(os.path.join(outdir, "workload_rounds.csv"), "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["allocator", "round", "ok"] + cols)
    for n, _, _ in arms:
        for x in runs[n]:
            w.writerow([n, x["round"], int(x["ok"])] + [x[c] for c in cols])
print(f"csv: {os.path.join(outdir, 'workload.csv')}, {os.path.join(outdir, 'workload_rounds.csv')}")
if failed:
    sys.exit("compare_allocators: some runs failed")
PY
fi

# ---- bench_alloc ----------------------------------------------------------------------
bench="$1"
shift
[[ -n "$sydralloc" ]] || sydralloc="$(dirname "$bench")/../alloc/libsydralloc.so"
outdir="build/compare"
if [[ $# -gt 0 && "$1" != -* ]]; then
  outdir="$1"
  shift
fi
extra=("$@")

[[ -x "$bench" ]] || { echo "compare_allocators: $bench is not an executable" >&2; exit 2; }
for a in "${extra[@]}"; do
  case "$a" in
    --allocator* | --foreign-frees* | --json | --smoke)
      echo "compare_allocators: $a is set by this script; pass only workload arguments" >&2
      exit 2
      ;;
  esac
done

# name | --allocator | LD_PRELOAD (empty: none) | foreign frees (the *-local arms: the
# alternative to the ADR's owner rule, docs/allocator.md "The owner rule, measured")
candidates=(
  "sharded|sharded||owner"
  "sharded-local|sharded||local"
  "legacy|legacy||owner"
  "glibc|system||owner"
  "jemalloc|system|$libdir/libjemalloc.so.2|owner"
  "tcmalloc|system|$libdir/libtcmalloc_minimal.so.4|owner"
  "mimalloc|system|$libdir/libmimalloc.so.2|owner"
  "sydralloc|system|$sydralloc|owner"
  "sydralloc-local|system|$sydralloc|local"
)
arms=()
for c in "${candidates[@]}"; do
  IFS='|' read -r name mode preload foreign <<<"$c"
  if [[ -n "$preload" && ! -e "$preload" ]]; then
    echo "note: skipping $name: $preload is missing" >&2
    continue
  fi
  arms+=("$c")
done

mkdir -p "$outdir/raw"
rm -f "$outdir"/raw/*.json
echo "bench_alloc ${extra[*]:-(defaults)}: ${#arms[@]} allocators x $rounds rounds -> $outdir" >&2
failed=0
for ((r = 1; r <= rounds; r++)); do
  for c in "${arms[@]}"; do
    IFS='|' read -r name mode preload foreign <<<"$c"
    out="$outdir/raw/$name.r$r.json"
    printf '  round %d/%d  %-15s' "$r" "$rounds" "$name" >&2
    rc=0
    if [[ -n "$preload" ]]; then
      SYDRA_ALLOC_FOREIGN_FREES="$foreign" LD_PRELOAD="$preload" "$bench" --allocator="$mode" --json "${extra[@]}" \
        >"$out" 2>"$out.err" || rc=$?
    else
      "$bench" --allocator="$mode" --foreign-frees="$foreign" --json "${extra[@]}" >"$out" 2>"$out.err" || rc=$?
    fi
    if [[ $rc -ne 0 ]]; then
      failed=1
      echo " exit $rc: $(head -c 300 "$out.err")" >&2
    else
      echo >&2
    fi
    [[ -s "$out.err" ]] || rm -f "$out.err"
  done
done

python3 "$here/compare_report.py" "$outdir" "${extra[*]:-}" "${arms[@]%%|*}" | tee "$outdir/summary.txt"

if command -v gnuplot >/dev/null; then
  ncols=$((${#arms[@]} + 1))
  subtitle="$(tr -d "'" <"$outdir/latency_title.txt")"
  gnuplot -e "alloc_dat='$outdir/latency_alloc.dat'; free_dat='$outdir/latency_free.dat'; out='$outdir/latency.png'; ncols=$ncols; subtitle='$subtitle'" \
    "$here/plot_latency.gp"
  echo "plot: $outdir/latency.png"
else
  echo "note: gnuplot not found (apt-get install gnuplot-nox); no plot drawn" >&2
fi
if [[ $failed -ne 0 ]]; then
  echo "compare_allocators: some runs failed (see $outdir/raw/*.err)" >&2
  exit 1
fi
