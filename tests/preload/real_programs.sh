#!/usr/bin/env bash
# Real programs of the machine under LD_PRELOAD=libsydralloc.so give the same output as
# without it, and the library really served them (checked from its SYDRA_ALLOC_STATS=1
# report).
#
# usage: tests/preload/real_programs.sh LIBSYDRALLOC WORKLOAD
#   WORKLOAD  python   alloc_heavy.py on /usr/bin/python3, with Python's own small-object
#                      allocator and with PYTHONMALLOC=malloc (every object through malloc)
#             sort     a generated 1,000,000-line file, two keys, two threads, a 16 MiB
#                      buffer (so sort merges temporary files)
#             git      init, add, commit, a second commit, log --stat, fsck, on a scratch
#                      repository with fixed author and dates
set -euo pipefail

lib="${1:?usage: real_programs.sh LIBSYDRALLOC WORKLOAD}"
workload="${2:?usage: real_programs.sh LIBSYDRALLOC WORKLOAD}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
[[ -f "$lib" ]] || { echo "real_programs: $lib not found" >&2; exit 2; }
lib="$(cd "$(dirname "$lib")" && pwd)/$(basename "$lib")"
py=/usr/bin/python3
[[ -x "$py" ]] || py="$(command -v python3)"

work="$(mktemp -d "${TMPDIR:-/tmp}/sydra-preload-XXXXXX")"
trap 'rm -rf "$work"' EXIT

# run NAME COMMAND...: once without and once with the library; stdout must be identical.
# A third run under check_stats.py checks the library's report (min hits $min_hits).
min_hits=1000
run() {
  local name="$1"
  shift
  if ! "$@" >"$work/$name.glibc"; then
    echo "real_programs: $name: failed without the library" >&2
    exit 1
  fi
  if ! LD_PRELOAD="$lib" "$@" >"$work/$name.sydra"; then
    echo "real_programs: $name: failed with libsydralloc.so" >&2
    exit 1
  fi
  if ! cmp -s "$work/$name.glibc" "$work/$name.sydra"; then
    echo "real_programs: $name: output differs with libsydralloc.so" >&2
    diff <(head -c 4000 "$work/$name.glibc") <(head -c 4000 "$work/$name.sydra") | head -20 >&2 || true
    exit 1
  fi
  echo "$name: identical output ($(wc -c <"$work/$name.glibc") bytes)"
}
check_used() {
  "$py" "$here/check_stats.py" --min-hits "$min_hits" -- env LD_PRELOAD="$lib" "$@" >/dev/null
}

case "$workload" in
  python)
    run python "$py" "$here/alloc_heavy.py"
    run python_malloc env PYTHONMALLOC=malloc "$py" "$here/alloc_heavy.py"
    min_hits=1000000
    check_used env PYTHONMALLOC=malloc "$py" "$here/alloc_heavy.py"
    ;;
  sort)
    "$py" - "$work/input.txt" <<'PY'
import random, sys
rng = random.Random(7)
letters = "abcdefghijklmnopqrstuvwxyz"
with open(sys.argv[1], "w") as f:
    for i in range(1_000_000):
        word = "".join(rng.choice(letters) for _ in range(rng.randrange(3, 24)))
        f.write(f"{word},{rng.randrange(10**6)},{i}\n")
PY
    export LC_ALL=C
    run sort_words sort -S 16M --parallel=2 -T "$work" "$work/input.txt"
    run sort_keys sort -S 16M --parallel=2 -T "$work" -t, -k2,2n -k1,1 "$work/input.txt"
    min_hits=10  # sort keeps its lines in one large buffer: few small allocations
    check_used sort -S 16M --parallel=2 -T "$work" "$work/input.txt"
    ;;
  git)
    export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 GIT_PAGER=cat PAGER=cat
    export GIT_AUTHOR_NAME="Preload Test" GIT_AUTHOR_EMAIL="preload@example.invalid"
    export GIT_COMMITTER_NAME="Preload Test" GIT_COMMITTER_EMAIL="preload@example.invalid"
    export GIT_AUTHOR_DATE="2024-06-01T12:00:00Z" GIT_COMMITTER_DATE="2024-06-01T12:00:00Z"
    mkdir -p "$HOME"
    # One scratch repository per run; the script prints everything that should agree.
    cat >"$work/git_session.sh" <<'SH'
set -euo pipefail
repo="$1"
rm -rf "$repo"
git init -q -b main "$repo"
cd "$repo"
for i in $(seq 1 150); do
  mkdir -p "dir$((i % 17))"
  seq 1 $((i * 7)) | sed "s/^/line $i /" >"dir$((i % 17))/file$i.txt"
done
git add -A
git commit -q -m "first: 150 files"
for i in $(seq 1 150 | awk 'NR % 3 == 0'); do echo "changed $i" >>"dir$((i % 17))/file$i.txt"; done
git rm -q dir1/file1.txt
git add -A
git commit -q -m "second: 50 changed, 1 removed"
git log --stat --format='%H %an %ad %s'
git ls-tree -r HEAD
git diff HEAD~1 --stat | tail -3
git fsck --full 2>&1
git count-objects
SH
    run git bash "$work/git_session.sh" "$work/repo"
    min_hits=1000
    check_used git -C "$work/repo" log --stat
    ;;
  *)
    echo "real_programs: unknown workload $workload (python, sort, git)" >&2
    exit 2
    ;;
esac
