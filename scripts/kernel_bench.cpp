// single-thread kernel timing, per table, side by side with llama.cpp's own vec_dot when available:
// gemm (prefill: rows x n weights times 64-column slabs) and vec_dot over every row (decode).
//   g++ -std=c++17 -O2 -I cpp_ext scripts/kernel_bench.cpp cpp_ext/kernels/*.cpp -ldl -o kernel_bench
//   (the x86_*.cpp files need their isa flags: build them as scripts/neon_test.sh does, or pass their .o)
//   GGML_CPU=.venv/lib/python3.11/site-packages/llama_cpp/lib/libggml-cpu.so kernel_bench [rows n]
// default 1536 x 576: a SmolLM2-135M ffn matrix. the peer row "ggml" is llama.cpp's vec_dot called
// per (row, column) in 16x16 blocks, which is how llama.cpp multiplies types its tiled sgemm lacks
// (q4_1 among them); it runs with whatever isa that library was built for (avx512/vnni included).
// validates each gemm against vec_dot first, warms up, then reports the best of N runs (a shared
// machine's noise hits long runs, so slabs are short and N is large).
#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

using namespace ec;
using clk = std::chrono::steady_clock;

static const int SLAB = getenv("SLAB") ? atoi(getenv("SLAB")) : 64;  // activation columns per timed gemm (env SLAB)

static double best_seconds(int reps, const std::function<void()>& f) {
    f();  // warm up
    double best = 1e30;
    for (int i = 0; i < reps; i++) {
        const auto t0 = clk::now();
        f();
        best = std::min(best, std::chrono::duration<double>(clk::now() - t0).count());
    }
    return best;
}

// ggml_vec_dot_<type>_<vec type>(n, s, bs, x, bx, y, by, nrc)
using GgmlDot = void (*)(int, float*, size_t, const void*, size_t, const void*, size_t, int);

struct Case {
    GType type;
    const char* name;
    const char* ggml_symbol;
};

#if defined(__x86_64__)
// the ceiling of the avx2 (no vnni) maddubs gemms on this cpu: the packed q4_K tile's inner loop alone, from
// L1, nothing else (per 32-byte weight chunk: one vpand, then for each of 8 columns a broadcast of 4
// activation bytes, a vpmaddubsw and a vpaddw). two vector uops per 32 products can use at most 3 ports;
// compare its GFLOP/s with the avx2/p q4_K and q6_K gemm lines (what the scales, mins and the rest cost)
__attribute__((target("avx2"))) static void int8_bound_loop(long iters, const uint8_t* w, const int8_t* x, int32_t* out) {
    __m256i acc[8];
    for (int c = 0; c < 8; c++) acc[c] = _mm256_setzero_si256();
    const __m256i m = _mm256_set1_epi8(15);
    for (long it = 0; it < iters; it++) {
        asm volatile("" : "+r"(x), "+r"(w));   // every pass loads (and masks) the weights and broadcasts again
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m256i v = _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(w + 32 * j)), m);
#pragma GCC unroll 8
            for (int c = 0; c < 8; c++) {
                int32_t xv;
                memcpy(&xv, x + 64 * c + 4 * j, 4);
                acc[c] = _mm256_add_epi16(acc[c], _mm256_maddubs_epi16(v, _mm256_set1_epi32(xv)));
                asm("" : "+x"(acc[c]));   // keep the 8 independent chains as written
            }
        }
    }
    for (int c = 0; c < 8; c++) out[c] = _mm256_extract_epi32(acc[c], 0);
}

static void int8_bound() {
    if (!__builtin_cpu_supports("avx2")) return;
    alignas(32) uint8_t w[256];
    alignas(32) int8_t x[512];
    for (int i = 0; i < 256; i++) w[i] = (uint8_t)(i * 7);
    for (int i = 0; i < 512; i++) x[i] = (int8_t)(i * 13);
    int32_t out[8];
    const long iters = 50000;   // about a millisecond a run; the best of many (the gemm lines above warmed the core)
    const double t = best_seconds(200, [&] { int8_bound_loop(iters, w, x, out); });
    printf("avx2 int8 bound (maddubs + paddw, 8 columns, L1): %7.2f GFLOP/s\n", 2.0 * iters * 8 * 8 * 32 / t * 1e-9);
}
#else
static void int8_bound() {}
#endif

int main(int argc, char** argv) {
    const int rows = argc > 2 ? atoi(argv[1]) : 1536, n = argc > 2 ? atoi(argv[2]) : 576;
    void* ggml = nullptr;
    if (const char* path = getenv("GGML_CPU")) {
        ggml = dlopen(path, RTLD_NOW);
        if (!ggml) printf("GGML_CPU: %s (peer rows skipped)\n", dlerror());
    }
    std::mt19937 rng(1);
    std::normal_distribution<float> nd;
    std::vector<float> wf((size_t)rows * n), xf((size_t)SLAB * n);
    for (float& v : wf) v = nd(rng);
    for (float& v : xf) v = nd(rng);

    const KernelTable* tables[kMaxTables];
    const int nt = available_kernels(tables, kMaxTables);
    const KernelTable& g = kernels_generic();
    const Case cases[] = {{GT_Q4_1, "q4_1", "ggml_vec_dot_q4_1_q8_1"}, {GT_Q8_0, "q8_0", "ggml_vec_dot_q8_0_q8_0"},
                          {GT_Q4_0, "q4_0", "ggml_vec_dot_q4_0_q8_0"}, {GT_Q5_0, "q5_0", "ggml_vec_dot_q5_0_q8_0"},
                          {GT_Q4_K, "q4_K", "ggml_vec_dot_q4_K_q8_K"}, {GT_Q6_K, "q6_K", "ggml_vec_dot_q6_K_q8_K"}};
    printf("%d x %d weights, single thread; gemm: %d columns; vec_dot: every row, one column\n", rows, n, SLAB);
    for (const Case& cs : cases) {
        const TypeKernels& kw = g.types[cs.type];
        const TypeKernels& kx = g.types[kw.vec_type];
        if (n % kw.blck) {
            printf("%-5s skipped: n=%d is not a multiple of its block (%d)\n", cs.name, n, kw.blck);
            continue;
        }
        const size_t ldw = row_bytes(kw, n), ldx = row_bytes(kx, n);
        std::vector<uint8_t> w(rows * ldw), x(SLAB * ldx);
        kw.from_float(wf.data(), w.data(), (int64_t)rows * n);
        kx.from_float(xf.data(), x.data(), (int64_t)SLAB * n);
        std::vector<float> y((size_t)rows * SLAB);
        const double flops = 2.0 * rows * n * SLAB, bytes = (double)rows * ldw;
        auto report = [&](const char* who, double tg, double tv, double check) {
            printf("%-8s %-5s gemm %7.2f GFLOP/s (%6.3f ms)   vec_dot %6.2f GB/s (%6.1f us)   check %.1e\n", who,
                   cs.name, flops / tg * 1e-9, tg * 1e3, bytes / tv * 1e-9, tv * 1e6, check);
        };
        for (int ti = 0; ti < nt; ti++) {
            const TypeKernels& k = tables[ti]->types[cs.type];
            const bool slow = tables[ti] == &g;
            // validate: gemm vs vec_dot on a corner
            k.gemm(n, rows, SLAB, w.data(), ldw, x.data(), ldx, y.data(), rows);
            double maxrel = 0;
            for (int c = 0; c < std::min(SLAB, 9); c++) {   // the slab's columns only
                for (int r = 0; r < std::min(rows, 9); r++) {
                    float ref;
                    k.vec_dot(n, &ref, &w[r * ldw], &x[c * ldx]);
                    maxrel = std::max(maxrel, (double)fabsf(ref - y[(size_t)c * rows + r]) / (fabsf(ref) + 1e-3));
                }
            }
            const double tg = best_seconds(slow ? 2 : 60, [&] { k.gemm(n, rows, SLAB, w.data(), ldw, x.data(), ldx, y.data(), rows); });
            const double tv = best_seconds(slow ? 2 : 60, [&] {
                for (int r = 0; r < rows; r++) k.vec_dot(n, &y[r], &w[r * ldw], x.data());
            });
            report(tables[ti]->isa, tg, tv, maxrel);
            if (k.pack && rows % k.pack_rows == 0) {  // the packed layout: gemm and one column (decode)
                std::vector<uint8_t> wp(rows * ldw);
                k.pack(w.data(), ldw, wp.data(), rows, n);
                std::vector<float> yp((size_t)rows * SLAB);
                k.gemm_packed(n, rows, SLAB, wp.data(), ldw, x.data(), ldx, yp.data(), rows);
                double d = 0;
                for (size_t i = 0; i < yp.size(); i++) d = std::max(d, (double)fabsf(yp[i] - y[i]) / (fabsf(y[i]) + 1e-3));
                const double pg = best_seconds(60, [&] { k.gemm_packed(n, rows, SLAB, wp.data(), ldw, x.data(), ldx, yp.data(), rows); });
                const double pv = best_seconds(60, [&] { k.gemm_packed(n, rows, 1, wp.data(), ldw, x.data(), ldx, yp.data(), rows); });
                std::string who = std::string(tables[ti]->isa) + "/p";
                report(who.c_str(), pg, pv, d);
            }
        }
        GgmlDot dot = ggml ? (GgmlDot)dlsym(ggml, cs.ggml_symbol) : nullptr;
        if (dot) {
            const double tg = best_seconds(60, [&] {
                for (int r0 = 0; r0 < rows; r0 += 16) {
                    for (int c = 0; c < SLAB; c++) {
                        for (int r = r0; r < std::min(rows, r0 + 16); r++) {
                            dot(n, &y[(size_t)c * rows + r], 0, &w[r * ldw], 0, &x[c * ldx], 0, 1);
                        }
                    }
                }
            });
            const double tv = best_seconds(60, [&] {
                for (int r = 0; r < rows; r++) dot(n, &y[r], 0, &w[r * ldw], 0, x.data(), 0, 1);
            });
            report("ggml", tg, tv, 0.0);
        }
    }
    int8_bound();
    return 0;
}
