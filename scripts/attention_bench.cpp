// decode attention timing, per table: the three steps of one decoded token's attention over a full cache
// (scores, softmax exp, weighted sum) for every layer and kv head of a model shape, f16 and q8_0 rows side
// by side. each head's rows are its own (layers x kv heads x keys rows of each), so they stream from
// memory as in a real decode, not from cache.
//   source scripts/kernel_files.sh; for f in generic dispatch x86_avx2 x86_avxvnni x86_avx512; do
//     g++ -std=c++17 -O3 $(kernel_flags $f) -I cpp_ext -c cpp_ext/kernels/$f.cpp -o /tmp/$f.o; done
//   g++ -std=c++17 -O2 -I cpp_ext scripts/attention_bench.cpp /tmp/*.o -lpthread -o attention_bench
//   attention_bench [G kv_heads head_dim layers keys]   (default 4 8 64 16 4096: the llama-1b shape)
//   THREADS=2 attention_bench: the heads split over that many threads (wall time of the whole token)
// best of 5 runs, f16 and q8_0 alternating (a shared machine's noise hits long runs).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <sys/mman.h>

#include "kernels/kernels.h"

using namespace ec;
using clk = std::chrono::steady_clock;

static double since(clk::time_point t) { return std::chrono::duration<double>(clk::now() - t).count(); }

// 2 MiB aligned, huge pages where the kernel gives them (as the ring's buffers)
static uint8_t* alloc_rows(size_t bytes) {
    void* p = nullptr;
    if (posix_memalign(&p, 2u << 20, bytes) != 0) abort();
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return (uint8_t*)p;
}

struct Rows { uint8_t* k; uint8_t* v; size_t rb; };   // one row type's keys and values, rb bytes a row

int main(int argc, char** argv) {
    const int G = argc > 1 ? atoi(argv[1]) : 4, H = argc > 2 ? atoi(argv[2]) : 8, hd = argc > 3 ? atoi(argv[3]) : 64;
    const int L = argc > 4 ? atoi(argv[4]) : 16, n = argc > 5 ? atoi(argv[5]) : 4096;
    const int T = getenv("THREADS") ? std::max(1, atoi(getenv("THREADS"))) : 1;
    const size_t lds = (size_t)n + 64, rows = (size_t)n * L * H;
    Rows f16{alloc_rows(rows * hd * 2), alloc_rows(rows * hd * 2), (size_t)hd * 2};
    Rows q8{alloc_rows(rows * kv_q8_row_bytes(hd)), alloc_rows(rows * kv_q8_row_bytes(hd)), kv_q8_row_bytes(hd)};
    std::vector<float> x(hd);
    for (size_t r = 0; r < rows; r++) {   // small varied values, the same in both row types
        for (int i = 0; i < hd; i++) x[i] = 0.01f * (float)((r * 7 + i) % 13) - 0.05f;
        kv_quantize_q8(x.data(), q8.k + r * q8.rb, hd);
        kv_quantize_q8(x.data(), q8.v + r * q8.rb, hd);
        for (int i = 0; i < hd; i++) ((half*)(f16.k + r * f16.rb))[i] = ((half*)(f16.v + r * f16.rb))[i] = fp32_to_fp16(x[i]);
    }
    std::vector<float> q((size_t)G * hd, 0.05f);
    printf("%d layers x %d kv heads x %d keys, head_dim %d, %d queries per kv head, %d thread(s); ms per token\n",
           L, H, n, hd, G, T);

    const KernelTable* tables[kMaxTables];
    const int nt = available_kernels(tables, kMaxTables);
    for (int ti = 0; ti < nt; ti++) {
        const KernelTable& t = *tables[ti];
        double best[2][4];
        for (auto& b : best) std::fill(b, b + 4, 1e30);
        for (int rep = 0; rep < 5; rep++)
            for (int type = 0; type < 2; type++) {
                const Rows& R = type ? q8 : f16;
                // per thread: seconds in scores, exp, wsum over its heads
                std::vector<double> sec((size_t)T * 3, 0.0);
                auto work = [&](int th) {
                    std::vector<float> s((size_t)G * lds), y((size_t)G * hd);
                    for (int lh = th; lh < L * H; lh += T) {
                        const uint8_t* k = R.k + (size_t)lh * n * R.rb;
                        const uint8_t* v = R.v + (size_t)lh * n * R.rb;
                        auto t0 = clk::now();
                        if (type) t.scores_q8_g(n, hd, G, k, R.rb, q.data(), s.data(), lds);
                        else t.scores_f16_g(n, hd, G, (const half*)k, hd, q.data(), s.data(), lds);
                        sec[th * 3] += since(t0);
                        t0 = clk::now();
                        for (int g = 0; g < G; g++) t.exp_sum(n, s.data() + g * lds, t.max_f32(n, s.data() + g * lds));
                        sec[th * 3 + 1] += since(t0);
                        t0 = clk::now();
                        if (type) t.wsum_q8_g(n, hd, G, s.data(), lds, v, R.rb, y.data(), 0);
                        else t.wsum_f16_g(n, hd, G, s.data(), lds, (const half*)v, hd, y.data());
                        sec[th * 3 + 2] += since(t0);
                    }
                };
                const auto w0 = clk::now();
                std::vector<std::thread> pool;
                for (int th = 1; th < T; th++) pool.emplace_back(work, th);
                work(0);
                for (auto& th : pool) th.join();
                const double wall = since(w0);
                for (int i = 0; i < 3; i++) best[type][i] = std::min(best[type][i], sec[i]);   // thread 0's share
                best[type][3] = std::min(best[type][3], wall);
            }
        for (int type = 0; type < 2; type++)
            printf("%-8s %-4s scores %6.2f  exp %5.2f  wsum %6.2f  (thread 0)   token %6.2f ms (wall)\n", t.isa,
                   type ? "q8_0" : "f16", best[type][0] * 1e3, best[type][1] * 1e3, best[type][2] * 1e3, best[type][3] * 1e3);
    }
}
