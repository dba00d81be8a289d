// fork() while other threads allocate: the child (and a grandchild, forked by the child
// after it started a thread of its own) must be able to allocate, free, start threads and
// exit. Without the allocator's pthread_atfork handlers a child forked while another thread
// held a shard lock would hang on its first refill; alarm() turns a hang into a failure.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "check.hpp"

using preload_test::opaque;

namespace {

std::atomic<bool> g_stop{false};
// Blocks handed between the churn threads, so that frees cross threads (and shards).
std::atomic<void*> g_exchange[64];

void churn(unsigned seed) {
  std::uint64_t x = seed * 2654435761u + 1;
  std::vector<void*> mine;
  while (!g_stop.load(std::memory_order_relaxed)) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    const std::size_t size = (x % 8 == 0) ? 300 + x % 5000 : 1 + x % 256;
    void* p = std::malloc(size);
    std::memset(p, static_cast<int>(x), size);
    mine.push_back(p);
    if (mine.size() > 2000) {
      // Free most of them in a burst: bins overflow, flushes and refills take shard locks.
      for (std::size_t i = 0; i < mine.size(); ++i) {
        if (i % 3 == 0) {
          void* old = g_exchange[(x + i) % 64].exchange(mine[i]);
          std::free(old);
        } else {
          std::free(mine[i]);
        }
      }
      mine.clear();
    }
  }
  for (void* p : mine) std::free(p);
}

// What a child does: allocate in every size range, start and join a thread, and (when
// depth > 0) fork again. Returns the exit status for _exit.
int child_work(int depth) {
  alarm(30);
  std::vector<void*> blocks;
  for (int i = 0; i < 20000; ++i) {
    const std::size_t size = 1 + (static_cast<std::size_t>(i) * 37) % 1500;
    void* p = opaque(std::malloc(size));
    if (p == nullptr) return 10;
    std::memset(p, i & 0xFF, size);
    blocks.push_back(p);
  }
  for (std::size_t i = 0; i < blocks.size(); i += 2) std::free(blocks[i]);
  std::thread t([] {
    for (int i = 0; i < 5000; ++i) std::free(opaque(std::malloc(1 + i % 400)));
  });
  t.join();
  for (std::size_t i = 1; i < blocks.size(); i += 2) {
    const std::size_t size = 1 + ((i * 37) % 1500);
    const auto* b = static_cast<const unsigned char*>(blocks[i]);
    for (std::size_t k = 0; k < size; ++k)
      if (b[k] != (i & 0xFF)) return 11;  // a block was handed out twice
    std::free(blocks[i]);
  }
  if (depth > 0) {
    const pid_t pid = fork();
    if (pid < 0) return 12;
    if (pid == 0) _exit(child_work(depth - 1));
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return 13;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) return 14;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const int forks = argc > 1 ? std::atoi(argv[1]) : 40;
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < 3; ++i) threads.emplace_back(churn, i + 1);

  for (int i = 0; i < forks; ++i) {
    const pid_t pid = fork();
    PRELOAD_CHECK(pid >= 0);
    if (pid == 0) _exit(child_work(1));
    int status = 0;
    PRELOAD_CHECK(waitpid(pid, &status, 0) == pid);
    if (WIFSIGNALED(status)) {
      std::fprintf(stderr, "fork %d: child killed by signal %d%s\n", i, WTERMSIG(status),
                   WTERMSIG(status) == SIGALRM ? " (hung)" : "");
      ++preload_test::g_failures;
    } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      std::fprintf(stderr, "fork %d: child exited with %d\n", i, WEXITSTATUS(status));
      ++preload_test::g_failures;
    }
    // Let the churn threads get back into their locks before the next fork.
    for (int k = 0; k < 2000; ++k) std::free(opaque(std::malloc(1 + k % 300)));
  }
  g_stop = true;
  for (auto& t : threads) t.join();
  for (auto& slot : g_exchange) std::free(slot.exchange(nullptr));
  return preload_test::finish("preload fork");
}
