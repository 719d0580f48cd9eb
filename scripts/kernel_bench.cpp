// single-thread kernel timing: gemm (prefill shape) and vec_dot (decode shape) per table.
//   g++ -std=c++17 -O2 -I cpp_ext scripts/kernel_bench.cpp <kernel objects> -o kernel_bench
//   kernel_bench [rows n cols]        (default 1536 576 512: a SmolLM2-135M ffn matrix, 512 tokens)
// validates each tiled gemm against vec_dot first, warms up, then reports the best of N runs.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/kernels.h"

using namespace ec;
using clk = std::chrono::steady_clock;

template <class F>
static double best_seconds(int reps, F&& f) {
    f();  // warm up
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        const auto t0 = clk::now();
        f();
        best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
    }
    return best;
}

int main(int argc, char** argv) {
    const int rows = argc > 3 ? atoi(argv[1]) : 1536, n = argc > 3 ? atoi(argv[2]) : 576;
    const int cols = argc > 3 ? atoi(argv[3]) : 512;
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> wf((size_t)rows * n), xf((size_t)cols * n);
    for (float& v : wf) v = nd(rng);
    for (float& v : xf) v = nd(rng);

    const KernelTable* tables[4];
    const int nt = available_kernels(tables, 4);
    const KernelTable& g = kernels_generic();
    for (int wt : {GT_Q4_1, GT_Q8_0, GT_Q4_0, GT_Q5_0, GT_Q4_K, GT_Q6_K}) {
        const TypeKernels& kw = g.types[wt];
        const TypeKernels& kx = g.types[kw.vec_type];
        if (n % kw.blck) {
            printf("%d: n=%d is not a multiple of its block (%d): skipped\n", wt, n, kw.blck);
            continue;
        }
        const size_t ldw = row_bytes(kw, n), ldx = row_bytes(kx, n);
        std::vector<uint8_t> w(rows * ldw), x(cols * ldx);
        kw.from_float(wf.data(), w.data(), (int64_t)rows * n);
        kx.from_float(xf.data(), x.data(), (int64_t)cols * n);
        std::vector<float> y((size_t)rows * cols);
        for (int ti = 0; ti < nt; ti++) {
            const TypeKernels& k = tables[ti]->types[wt];
            // validate: tiled gemm vs vec_dot on a corner
            k.gemm(n, rows, cols, w.data(), ldw, x.data(), ldx, y.data(), rows);
            double maxrel = 0;
            for (int c = 0; c < std::min(cols, 9); c++) {
                for (int r = 0; r < std::min(rows, 9); r++) {
                    float ref;
                    k.vec_dot(n, &ref, &w[r * ldw], &x[c * ldx]);
                    maxrel = std::max(maxrel, (double)fabsf(ref - y[(size_t)c * rows + r]) / (fabsf(ref) + 1e-3));
                }
            }
            const bool slow = tables[ti] == &g;
            // a shared machine's noise hits long runs: time 64-column slabs, best of many
            const int gcols = slow ? std::min(cols, 16) : std::min(cols, 64);
            const double tg = best_seconds(slow ? 1 : 60, [&] {
                k.gemm(n, rows, gcols, w.data(), ldw, x.data(), ldx, y.data(), rows);
            });
            const double flops = 2.0 * rows * n * gcols;
            const double tv = best_seconds(20, [&] {
                for (int r = 0; r < rows; r++) k.vec_dot(n, &y[r], &w[r * ldw], x.data());
            });
            const double bytes = (double)rows * ldw;
            const double tgv = best_seconds(20, [&] { k.gemm(n, rows, 1, w.data(), ldw, x.data(), ldx, y.data(), rows); });
            printf("%-7s %-5s gemm %4dx%d x %3d cols: %7.2f GFLOP/s (%.3f ms)   vec_dot %4d rows: %6.2f GB/s "
                   "(%.1f us)  gemm nc=1: %6.2f GB/s  check %.1e\n",
                   tables[ti]->isa, (const char*[]){"f32", "f16", "q4_0", "q4_1", "", "", "q5_0", "", "q8_0", "",
                                                    "", "", "q4_K", "", "q6_K"}[wt],
                   rows, n, gcols, flops / tg * 1e-9, tg * 1e3, rows, bytes / tv * 1e-9, tv * 1e6, bytes / tgv * 1e-9, maxrel);
        }
    }
    return 0;
}
