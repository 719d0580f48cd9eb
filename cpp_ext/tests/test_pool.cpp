// pool stress test: many jobs of random sizes on more threads than cores, some with pauses long enough
// for the workers to fall asleep; every task of every job must run exactly once, on a valid thread id,
// before run() returns. exits non-zero on a failure; a lost task shows up as a hang (the caller's timeout).
//   test_pool [JOBS]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "../pool.h"

int main(int argc, char** argv) {
    const int jobs = argc > 1 ? std::atoi(argv[1]) : 20000;
    const int n_threads = 2 * (int)std::max(1u, std::thread::hardware_concurrency());
    ec::Pool pool(n_threads);
    std::mt19937 rng(7);
    std::vector<std::atomic<int>> hits(4096);
    long bad = 0;
    for (int j = 0; j < jobs; j++) {
        const int n = 1 + (int)(rng() % (j % 10 == 0 ? 4096 : 64));
        for (int t = 0; t < n; t++) hits[t].store(0, std::memory_order_relaxed);
        std::atomic<int> bad_id{0};
        pool.run(n, [&](int task, int th) {
            if (th < 0 || th >= n_threads) bad_id.fetch_add(1);
            hits[task].fetch_add(1, std::memory_order_relaxed);
        });
        for (int t = 0; t < n; t++) bad += hits[t].load(std::memory_order_relaxed) != 1;
        bad += bad_id.load();
        if (j % 2000 == 1999) std::this_thread::sleep_for(std::chrono::milliseconds(5));   // workers sleep
    }
    std::printf("pool: %d threads, %d jobs, %ld bad task counts\n", n_threads, jobs, bad);
    return bad ? 1 : 0;
}
