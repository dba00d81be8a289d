#!/usr/bin/env bash
# Runs one bench_alloc workload on every allocator — sharded, legacy, glibc, jemalloc,
# tcmalloc, mimalloc (the peers through LD_PRELOAD on --allocator=system) — for R interleaved
# rounds (round 1: every allocator, round 2: every allocator, ...), then prints the medians
# with ratios against glibc, writes CSVs and plots the latency percentiles.
#
# usage: bench/compare_allocators.sh [--rounds R] BENCH_ALLOC [OUTDIR] [BENCH ARGS...]
#   BENCH_ALLOC  path to the bench_alloc binary (e.g. build/release/bench/bench_alloc)
#   OUTDIR       where results go (default build/compare); raw JSON under OUTDIR/raw
#   BENCH ARGS   passed to every run, e.g. --threads 2 --remote-free-percent 30 --seconds 3
#   --rounds R   rounds (default 5, or $ROUNDS)
#
# Output: OUTDIR/summary.txt (the table printed), summary.csv (medians and ratios),
# rounds.csv (every run), latency_alloc.dat / latency_free.dat and latency.png.
# The machine is shared and noisy: compare the ratios, which are taken within one round set.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
rounds="${ROUNDS:-5}"
if [[ "${1:-}" == "--rounds" ]]; then
  rounds="${2:?--rounds needs a value}"
  shift 2
elif [[ "${1:-}" == --rounds=* ]]; then
  rounds="${1#--rounds=}"
  shift
fi
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
  sed -n '2,/^[^#]/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit 2
fi
bench="$1"
shift
outdir="build/compare"
if [[ $# -gt 0 && "$1" != -* ]]; then
  outdir="$1"
  shift
fi
extra=("$@")

[[ -x "$bench" ]] || { echo "compare_allocators: $bench is not an executable" >&2; exit 2; }
[[ "$rounds" =~ ^[1-9][0-9]*$ ]] || { echo "compare_allocators: rounds must be a positive integer" >&2; exit 2; }
for a in "${extra[@]}"; do
  case "$a" in
    --allocator* | --json | --smoke)
      echo "compare_allocators: $a is set by this script; pass only workload arguments" >&2
      exit 2
      ;;
  esac
done
command -v python3 >/dev/null || { echo "compare_allocators: python3 is needed for the report" >&2; exit 2; }

libdir=/usr/lib/x86_64-linux-gnu
# name | --allocator | LD_PRELOAD (empty: none)
candidates=(
  "sharded|sharded|"
  "legacy|legacy|"
  "glibc|system|"
  "jemalloc|system|$libdir/libjemalloc.so.2"
  "tcmalloc|system|$libdir/libtcmalloc_minimal.so.4"
  "mimalloc|system|$libdir/libmimalloc.so.2"
)
arms=()
for c in "${candidates[@]}"; do
  IFS='|' read -r name mode preload <<<"$c"
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
    IFS='|' read -r name mode preload <<<"$c"
    out="$outdir/raw/$name.r$r.json"
    printf '  round %d/%d  %-9s' "$r" "$rounds" "$name" >&2
    rc=0
    if [[ -n "$preload" ]]; then
      LD_PRELOAD="$preload" "$bench" --allocator="$mode" --json "${extra[@]}" >"$out" 2>"$out.err" || rc=$?
    else
      "$bench" --allocator="$mode" --json "${extra[@]}" >"$out" 2>"$out.err" || rc=$?
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
