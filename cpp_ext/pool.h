// persistent worker threads: the caller's thread takes part; workers spin briefly, then sleep.
// a job is done when its tasks are done, not when every worker has checked in: a worker the OS has
// not scheduled (a busy machine) costs the job nothing but its share of the tasks.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
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
    void work(uint32_t job, int id);

    int n_threads_;
    std::vector<std::thread> threads_;
    // the current job: (job number << 32) | next task index. a thread takes a task by compare-and-swap,
    // so one still holding an old job number never takes (or runs) a task of a newer job
    std::atomic<uint64_t> ticket_{0};
    std::atomic<const std::function<void(int, int)>*> fn_{nullptr};
    // task count by job parity: the next job's count is written while the ticket still names this
    // job, and a thread still working on this one must not read it
    std::atomic<int> n_tasks_[2] = {0, 0};
    std::atomic<int> done_{0};         // tasks of the current job finished
    std::atomic<bool> stop_{false};
    std::mutex mu_;
    std::condition_variable cv_;
};

}  // namespace ec
