// persistent worker threads: the caller's thread takes part; workers spin briefly, then sleep.
#pragma once
#include <atomic>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ec {

class Pool {
public:
    explicit Pool(int n_threads);
    ~Pool();
    int size() const { return n_threads_; }
    // run fn(task, thread) for task in [0, n_tasks), tasks handed out dynamically; returns when all done
    void run(int n_tasks, const std::function<void(int, int)>& fn);

private:
    void worker(int id);
    void work(int id);

    int n_threads_;
    std::vector<std::thread> threads_;
    const std::function<void(int, int)>* fn_ = nullptr;
    int n_tasks_ = 0;
    std::atomic<int> next_task_{0};
    std::atomic<int> pending_{0};      // workers still inside the current job
    std::atomic<unsigned> generation_{0};
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
};

}  // namespace ec
