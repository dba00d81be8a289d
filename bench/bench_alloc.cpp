// bench_alloc: per-operation latency and throughput of the small-object allocator against
// the system allocator (and, through LD_PRELOAD on --allocator=system, against jemalloc,
// tcmalloc, mimalloc and libsydralloc.so; see compare_allocators.sh), on the ADR's mix and
// the peer suite's workloads.
//
// The binary is not linked with the operator new replacement: --allocator=system calls
// malloc/free directly, which LD_PRELOAD can redirect to a peer allocator. The pieces:
//   alloc/bench_alloc.hpp    configuration, sizes, path attribution, results, the harness
//   alloc/config.cpp         the command line
//   alloc/adr_mix.cpp        the ADR's mix (writers, readers, churn)
//   alloc/peer_workloads.cpp xmalloc, larson, cache-scratch
//   alloc/report.cpp         checks, the human table, the JSON document
//   support/*.hpp            the TSC timer, the latency histogram and the JSON writer every
//                            bench shares
#include <cstdio>
#include <memory>

#include "alloc/bench_alloc.hpp"

namespace sydra::bench {
namespace {

template <class Ops>
void run_workload(const Config& cfg, Ops ops, const Timer& timer, RunResult& r) {
  switch (cfg.workload) {
    case Workload::adr:
    case Workload::single:
      run_adr(cfg, ops, timer, r);
      break;
    case Workload::xmalloc:
      run_xmalloc(cfg, ops, timer, r);
      break;
    case Workload::larson:
      run_larson(cfg, ops, timer, r);
      break;
    case Workload::cache_scratch:
      run_cache_scratch(cfg, ops, timer, r);
      break;
  }
}

RunResult run_one(const Config& cfg, Mode mode, const Timer& timer) {
  RunResult r;
  r.mode = mode;
  if (mode == Mode::system) {
    run_workload(cfg, SystemOps{}, timer, r);
  } else {
    alloc::Options options;
    options.mode = mode;
    options.shards = cfg.shard_count();
    options.foreign_frees = cfg.foreign_frees;
    auto pool = std::make_unique<SmallPoolAllocator>(options);
    run_workload(cfg, PoolOps{pool.get()}, timer, r);
  }
  check_run(cfg, r);
  return r;
}

}  // namespace
}  // namespace sydra::bench

int main(int argc, char** argv) {
  using namespace sydra::bench;
  const Config cfg = parse_args(argc, argv);
  const Timer timer = calibrate_timer();

  std::vector<Mode> modes;
  if (cfg.allocator) {
    modes.push_back(*cfg.allocator);
  } else {
    modes = {Mode::sharded, Mode::legacy, Mode::system};
  }
  std::vector<RunResult> runs;
  for (const Mode m : modes) runs.push_back(run_one(cfg, m, timer));

  bool ok = true;
  for (const auto& r : runs) {
    for (const auto& f : r.failures) {
      std::fprintf(stderr, "bench_alloc: FAILED (%s): %s\n",
                   std::string(sydra::alloc::to_string(r.mode)).c_str(), f.c_str());
      ok = false;
    }
  }
  if (cfg.json) {
    std::printf("%s\n", to_json(cfg, timer, runs, ok).c_str());
  } else {
    print_human(cfg, timer, runs);
    if (cfg.smoke) std::printf("\nsmoke: %s\n", ok ? "ok" : "FAILED");
  }
  return ok ? 0 : 1;
}
