#!/usr/bin/env bash
# Prints the release-build machine code of SmallPoolAllocator's inlined allocate and
# deallocate fast paths and counts their instructions (the figures in docs/allocator.md).
# Usage: bash bench/fast_path_cost.sh [compiler]   (default g++)
set -euo pipefail
cd "$(dirname "$0")/.."
cxx="${1:-g++}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cat > "$work/fast_path.cpp" <<'CPP'
#include "alloc/small_pool_allocator.hpp"
using sydra::alloc::SmallPoolAllocator;
void* fast_allocate(SmallPoolAllocator& a, std::size_t n) { return a.allocate(n); }
void fast_deallocate(SmallPoolAllocator& a, void* p) { a.deallocate(p); }
CPP
"$cxx" -std=c++20 -O2 -DNDEBUG -fPIE -I. -c "$work/fast_path.cpp" -o "$work/fast_path.o"
for fn in fast_allocate fast_deallocate; do
  # The hot section only: the slow-path calls live in .text.unlikely.
  listing="$(objdump -d --no-show-raw-insn -C -j .text "$work/fast_path.o" |
    awk -v fn="$fn" '$0 ~ "^[0-9a-f]+ <"fn"\\(" {on=1; next} on && /^$/ {on=0} on && /:\t/ {print}' |
    grep -v -E '[[:space:]]nop')"
  echo "== $fn ($(echo "$listing" | wc -l) instructions including ret)"
  echo "$listing"
done
