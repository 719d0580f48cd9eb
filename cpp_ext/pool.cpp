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

static uint32_t job_of(uint64_t ticket) { return (uint32_t)(ticket >> 32); }

Pool::Pool(int n_threads) : n_threads_(n_threads < 1 ? 1 : n_threads) {
    for (int i = 1; i < n_threads_; i++) threads_.emplace_back([this, i] { worker(i); });
}

Pool::~Pool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
        ticket_.store((uint64_t)(job_of(ticket_.load()) + 1) << 32);
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
}

// take and run tasks of `job` until it has none left (or a newer job has started)
void Pool::work(uint32_t job, int id) {
    uint64_t cur = ticket_.load(std::memory_order_acquire);
    for (;;) {
        if (job_of(cur) != job) return;
        const uint32_t task = (uint32_t)cur;
        if ((int)task >= n_tasks_[job & 1].load(std::memory_order_relaxed)) return;
        if (!ticket_.compare_exchange_weak(cur, cur + 1, std::memory_order_acq_rel, std::memory_order_acquire))
            continue;   // cur now holds the fresh value
        // the job cannot finish (and fn_ change) before this task is counted done
        (*fn_.load(std::memory_order_relaxed))((int)task, id);
        done_.fetch_add(1, std::memory_order_release);
        cur = ticket_.load(std::memory_order_acquire);
    }
}

void Pool::run(int n_tasks, const std::function<void(int, int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int t = 0; t < n_tasks; t++) fn(t, 0);
        return;
    }
    // only this thread starts jobs, so the next job number is known before it is published
    const uint32_t job = job_of(ticket_.load(std::memory_order_relaxed)) + 1;
    fn_.store(&fn, std::memory_order_relaxed);
    n_tasks_[job & 1].store(n_tasks, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    {
        std::lock_guard<std::mutex> lock(mu_);
        ticket_.store((uint64_t)job << 32, std::memory_order_release);
    }
    cv_.notify_all();
    work(job, 0);
    // wait for tasks other threads took; yield now and then so an oversubscribed machine still progresses
    for (int spins = 0; done_.load(std::memory_order_acquire) != n_tasks; spins++) {
        if (spins < kSpinRounds) EC_PAUSE();
        else std::this_thread::yield();
    }
}

void Pool::worker(int id) {
    uint32_t seen = 0;
    for (;;) {
        // wait for a new job: spin, then sleep
        int spins = 0;
        while (job_of(ticket_.load(std::memory_order_acquire)) == seen && spins < kSpinRounds) {
            EC_PAUSE();
            spins++;
        }
        if (job_of(ticket_.load(std::memory_order_acquire)) == seen) {
            std::unique_lock<std::mutex> lock(mu_);
            cv_.wait(lock, [&] { return job_of(ticket_.load()) != seen; });
        }
        seen = job_of(ticket_.load(std::memory_order_acquire));
        if (stop_.load()) return;
        work(seen, id);
    }
}

}  // namespace ec
