#include "pool.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define EC_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define EC_PAUSE() asm volatile("yield")
#else
#define EC_PAUSE() ((void)0)
#endif

namespace ec {

// spin this many rounds waiting for work before sleeping: about 0.1-0.3 ms, longer than the gap
// between two matmuls of one token, shorter than python's sampling between tokens
static constexpr int kSpinRounds = 20000;

Pool::Pool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; i++) threads_.emplace_back([this, i] { worker(i); });
}

Pool::~Pool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
        generation_.fetch_add(1);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

void Pool::work(int id) {
    for (;;) {
        int t = next_task_.fetch_add(1, std::memory_order_relaxed);
        if (t >= n_tasks_) break;
        (*fn_)(t, id);
    }
}

void Pool::run(int n_tasks, const std::function<void(int, int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(t, 0);
        return;
    }
    fn_ = &fn;
    n_tasks_ = n_tasks;
    next_task_.store(0, std::memory_order_relaxed);
    pending_.store(n_threads_ - 1, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mu_);
        generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    work(0);
    // wait for the workers; yield now and then so an oversubscribed machine still makes progress
    for (int spins = 0; pending_.load(std::memory_order_acquire) != 0; spins++) {
        if (spins < kSpinRounds) EC_PAUSE();
        else std::this_thread::yield();
    }
}

void Pool::worker(int id) {
    unsigned seen = 0;
    for (;;) {
        // wait for a new generation: spin, then sleep
        int spins = 0;
        while (generation_.load(std::memory_order_acquire) == seen && spins < kSpinRounds) {
            EC_PAUSE();
            spins++;
        }
        if (generation_.load(std::memory_order_acquire) == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return generation_.load() != seen; });
        }
        seen = generation_.load(std::memory_order_acquire);
        if (stop_.load()) return;
        work(id);
        pending_.fetch_sub(1, std::memory_order_acq_rel);
    }
}

}  // namespace ec
