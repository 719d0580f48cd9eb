// avx2 + fma + f16c kernels (built with -mavx2 -mfma -mf16c; used only when the cpu has all three).
// x86_avxvnni.cpp and x86_avx512.cpp include this file with EC_X86_VNNI set (1: vex vpdpbusd,
// 2: evex vpdpbusd on ymm, 32 registers) and their own flags: the same kernels, int8 dots in one
// instruction, wider column tiles; each file's copy lives in its own anonymous namespace.
// same arithmetic as generic.cpp; float sums may be reassociated, integer block dots are exact.
// layout: helpers, f16/f32, activation quantizers, vec_dots, tiled gemm, table.
#if defined(__x86_64__)

#ifndef EC_X86_VNNI
#define EC_X86_VNNI 0
#define EC_X86_ISA "avx2"
#define EC_X86_TABLE kernels_avx2
#endif

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "kernels_internal.h"

namespace ec {
namespace {

// ---- helpers ----

// fp16 -> fp32 for block scales: a 256 KiB table (filled when the table is built) beats
// vpinsrw + vcvtph2ps, whose shuffle-port uops bound the per-block cost of the vec_dots
float f16_table[1 << 16];

void fill_f16_table() {
    for (int i = 0; i < (1 << 16); i += 8) {
        __m128i h = _mm_add_epi16(_mm_set1_epi16((short)i), _mm_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7));
        _mm256_storeu_ps(f16_table + i, _mm256_cvtph_ps(h));
    }
}

inline float h2f(half h) { return f16_table[h]; }

// block b's scale of a q8_0 kv row (kv_q8_scale's value, from the table)
inline float kv_scale(const uint8_t* row, int hd, int b) {
    half h;
    memcpy(&h, row + hd + 2 * b, sizeof(h));
    return h2f(h);
}

// one float -> fp16 with f16c (round to nearest even, as fp32_to_fp16)
inline half f2h(float f) { return (half)_mm_extract_epi16(_mm_cvtps_ph(_mm_set_ss(f), _MM_FROUND_TO_NEAREST_INT), 0); }

// an empty asm that takes v in a register: gcc's reassociation would otherwise turn an unrolled
// chain of integer adds into a tree that computes every product first (and spills them), and it
// folds a load that several fmas share into each of them
inline void in_register(__m256i& v) { asm("" : "+x"(v)); }
inline void in_register(__m256& v) { asm("" : "+x"(v)); }

inline float hsum_f32x8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int hsum_i32x8(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

inline float hmax_f32x8(__m256 v) {
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}

// int8 dots into int32 lanes, 4 products a lane: u (unsigned, < 128 except q8_0's |w| = 128) x s.
// VNNI: vpdpbusd, exact. otherwise maddubs into int16 pair sums, widened by madd: the kernels add at
// most as many maddubs results in int16 as their value range allows (noted at each)
#if EC_X86_VNNI == 2
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_epi32(acc, u, s); }
#elif EC_X86_VNNI == 1
inline __m256i dpbusd(__m256i acc, __m256i u, __m256i s) { return _mm256_dpbusd_avx_epi32(acc, u, s); }
#endif

inline __m256i bcast4(const int8_t* p) {
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// the q8_0 kv kernels read each row once per decoded token, straight from memory, and spend too long
// on each row for the hardware prefetcher to keep ahead: they prefetch rows [from, to) of their stream
// (ld bytes apart, row_bytes each) KV_PREFETCH_ROWS rows ahead. llama-1b shape, 4096 keys, every
// layer and head from memory (scripts/attention_bench.cpp, 2 threads, 3 alternating runs, sapphire
// rapids): avx512 q8_0 10.6-11.9 ms a token without, 7.7-9.2 with 32 rows; 16, 64 and 128 rows, and
// prefetching into L2 only, measured no better
inline void prefetch_rows(const uint8_t* base, size_t ld, int64_t from, int64_t to, size_t row_bytes) {
    const uintptr_t lo = (uintptr_t)(base + from * ld) & ~(uintptr_t)63, hi = (uintptr_t)(base + (to - 1) * ld + row_bytes);
    for (uintptr_t a = lo; a < hi; a += 64) _mm_prefetch((const char*)a, _MM_HINT_T0);
}
constexpr int KV_PREFETCH_ROWS = 32;

// int16 pair sums -> int32 x8
inline __m256i widen_sum(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

// 16 bytes of nibbles -> 32 bytes: low nibbles in bytes 0..15, high nibbles in 16..31 (0..15 each)
// (broadcast load + shift + blend: no shuffle-port uop, unlike an insert of the shifted half)
inline __m256i bytes_from_nibbles_32(const uint8_t* p) {
    const __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)p));
    const __m256i b = _mm256_blend_epi32(t, _mm256_srli_epi16(t, 4), 0xf0);
    return _mm256_and_si256(b, _mm256_set1_epi8(0x0f));
}

// 32 bits -> 32 bytes: 0xff where the bit is set, 0x00 where not
inline __m256i bytes_from_bits_32(const uint8_t* p) {
    uint32_t x32;
    memcpy(&x32, p, 4);
    // byte k takes source byte k/8
    const __m256i shuf = _mm256_set_epi64x(0x0303030303030303, 0x0202020202020202, 0x0101010101010101, 0);
    __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x32), shuf);
    // set every bit but bit k%8, then all-ones iff that bit was set
    b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
    return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}

// ---- f16 / f32 ----

void f16_to_f32_avx2(const half* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + i))));
    }
    for (; i < n; i++) y[i] = h2f(x[i]);
}

void f32_to_f16_avx2(const float* x, half* y, int64_t n) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128((__m128i*)(y + i), h);
    }
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

float dot_f16_f32_avx2(int n, const half* a, const float* b) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; k++) {
            const __m256 va = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(a + i + 8 * k)));
            acc[k] = _mm256_fmadd_ps(va, _mm256_loadu_ps(b + i + 8 * k), acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8) {
        const __m256 va = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(a + i)));
        acc[0] = _mm256_fmadd_ps(va, _mm256_loadu_ps(b + i), acc[0]);
    }
    float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += h2f(a[i]) * b[i];
    return sum;
}

void axpy_f16_f32_avx2(int n, float a, const half* x, float* y) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 vx = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(x + i)));
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, vx, _mm256_loadu_ps(y + i)));
    }
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

// attention runs. for the common head sizes the query (scores) or the output (wsum) stays in registers
// across all rows; other sizes go row by row through dot/axpy
template <int HD>
void scores_f16_hd(int n, const half* k, size_t ld, const float* q, float* s) {
    constexpr int R = HD / 8;
    __m256 qv[R];
    for (int r = 0; r < R; r++) qv[r] = _mm256_loadu_ps(q + 8 * r);
    for (int j = 0; j < n; j++) {
        const half* kj = k + (size_t)j * ld;
        __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
        for (int r = 0; r < R; r += 2) {
            a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(kj + 8 * r))), qv[r], a0);
            a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(kj + 8 * r + 8))), qv[r + 1], a1);
        }
        s[j] = hsum_f32x8(_mm256_add_ps(a0, a1));
    }
}

template <int HD>
void wsum_f16_hd(int n, const float* w, const half* v, size_t ld, float* y) {
    constexpr int R = HD / 8;
    __m256 acc[R];
    for (int r = 0; r < R; r++) acc[r] = _mm256_loadu_ps(y + 8 * r);
    for (int j = 0; j < n; j++) {
        const half* vj = v + (size_t)j * ld;
        const __m256 wj = _mm256_set1_ps(w[j]);
        for (int r = 0; r < R; r++)
            acc[r] = _mm256_fmadd_ps(wj, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(vj + 8 * r))), acc[r]);
    }
    for (int r = 0; r < R; r++) _mm256_storeu_ps(y + 8 * r, acc[r]);
}

void scores_f16_avx2(int n, int hd, const half* k, size_t ld, const float* q, float* s) {
    if (hd == 64) return scores_f16_hd<64>(n, k, ld, q, s);
    if (hd == 128) return scores_f16_hd<128>(n, k, ld, q, s);
    scores_by_dot<dot_f16_f32_avx2>(n, hd, k, ld, q, s);
}

void wsum_f16_avx2(int n, int hd, const float* w, const half* v, size_t ld, float* y) {
    if (hd == 64) return wsum_f16_hd<64>(n, w, v, ld, y);
    if (hd == 128) return wsum_f16_hd<128>(n, w, v, ld, y);
    wsum_by_axpy<axpy_f16_f32_avx2>(n, hd, w, v, ld, y);
}

// grouped-query attention over f16 kv rows (q8_0 rows have their own integer kernels below). the row
// format says how 8 values of one row become floats: F16Rows (half rows, ld in halves)
struct F16Rows {
    using T = half;
    static __m256 load8(const half* row, int, int i) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(row + i))); }
};

// the 8 lanes of each of a0..a3 summed as ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)): lane i of the result
// is a_i's sum, the same order for every vector wherever it sits
inline __m128 hsum4_f32x8(__m256 a0, __m256 a1, __m256 a2, __m256 a3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

// queries per call of scores_g_pair
constexpr int SCORES_GN = 4;

// GN queries x 2 rows per step: 2 GN accumulators, the 2 converted rows and one query vector in
// registers (11 of avx2's 16), so each row is converted once per GN queries and each query vector is
// loaded once for both rows (in_register: gcc would fold a load into every fma). a short last step
// repeats its last row: every row's sum is the same wherever it sits
template <int HD, class Rows, int GN>
void scores_g_pair(int n, const typename Rows::T* k, size_t ld, const float* q, float* s, size_t lds) {
    for (int j = 0; j < n; j += 2) {
        const int rows = std::min(2, n - j);
        const typename Rows::T* k0 = k + (size_t)j * ld;
        const typename Rows::T* k1 = k + (size_t)(j + rows - 1) * ld;
        __m256 acc[GN][2];
        for (int g = 0; g < GN; g++) acc[g][0] = acc[g][1] = _mm256_setzero_ps();
#pragma GCC unroll 16
        for (int r = 0; r < HD / 8; r++) {
            const __m256 kv0 = Rows::load8(k0, HD, 8 * r), kv1 = Rows::load8(k1, HD, 8 * r);
            for (int g = 0; g < GN; g++) {
                __m256 qv = _mm256_loadu_ps(q + (size_t)g * HD + 8 * r);
                in_register(qv);
                acc[g][0] = _mm256_fmadd_ps(kv0, qv, acc[g][0]);
                acc[g][1] = _mm256_fmadd_ps(kv1, qv, acc[g][1]);
            }
        }
        // lanes 0, 1: query g's two rows; lanes 2, 3: query g + 1's (an odd last query pairs with itself)
        for (int g = 0; g < GN; g += 2) {
            const int h = g + 1 < GN ? g + 1 : g;
            const __m128 sum = hsum4_f32x8(acc[g][0], acc[g][1], acc[h][0], acc[h][1]);
            float* sg = s + (size_t)g * lds + j;
            if (rows == 2) {
                _mm_storel_pi((__m64*)sg, sum);
                if (h != g) _mm_storeh_pi((__m64*)(sg + lds), sum);
            } else {
                sg[0] = _mm_cvtss_f32(sum);
                if (h != g) sg[lds] = _mm_cvtss_f32(_mm_movehl_ps(sum, sum));
            }
        }
    }
}

// the G queries SCORES_GN at a time
template <int HD, class Rows>
void scores_g_hd(int n, int G, const typename Rows::T* k, size_t ld, const float* q, float* s, size_t lds) {
    for (int g0 = 0; g0 < G; g0 += SCORES_GN) {
        const float* qg = q + (size_t)g0 * HD;
        float* sg = s + (size_t)g0 * lds;
        switch (std::min(SCORES_GN, G - g0)) {
            case 4: scores_g_pair<HD, Rows, 4>(n, k, ld, qg, sg, lds); break;
            case 3: scores_g_pair<HD, Rows, 3>(n, k, ld, qg, sg, lds); break;
            case 2: scores_g_pair<HD, Rows, 2>(n, k, ld, qg, sg, lds); break;
            default: scores_g_pair<HD, Rows, 1>(n, k, ld, qg, sg, lds); break;
        }
    }
}

// y (GN heads, head stride hd) at dims [c0, c0 + 8) and [c1, c1 + 8) += sum_j w_g[j] * v[j] there:
// 2 x GN accumulators
template <int GN, class Rows>
inline void wsum_g_slice(int n, const float* w, size_t ldw, const typename Rows::T* v, size_t ld, float* y, int hd, int c0, int c1) {
    __m256 acc[GN][2];
#pragma GCC unroll 8
    for (int g = 0; g < GN; g++) acc[g][0] = _mm256_loadu_ps(y + g * hd + c0), acc[g][1] = _mm256_loadu_ps(y + g * hd + c1);
    for (int j = 0; j < n; j++) {
        const typename Rows::T* vj = v + (size_t)j * ld;
        const __m256 v0 = Rows::load8(vj, hd, c0), v1 = Rows::load8(vj, hd, c1);
#pragma GCC unroll 8
        for (int g = 0; g < GN; g++) {
            const __m256 wj = _mm256_broadcast_ss(w + g * ldw + j);
            acc[g][0] = _mm256_fmadd_ps(wj, v0, acc[g][0]);
            acc[g][1] = _mm256_fmadd_ps(wj, v1, acc[g][1]);
        }
    }
#pragma GCC unroll 8
    for (int g = 0; g < GN; g++) _mm256_storeu_ps(y + g * hd + c0, acc[g][0]), _mm256_storeu_ps(y + g * hd + c1, acc[g][1]);
}

// queries per pass over a block of rows: 2 x WSUM_G accumulators (16 registers on avx2, 32 on avx512)
#if EC_X86_VNNI == 2
constexpr int WSUM_G = 8;
#else
constexpr int WSUM_G = 4;
#endif

// rows per block: a block stays in L1 while the passes (16 dims of the head for WSUM_G queries each) run.
// short blocks: a pass that reads a block from memory is soon followed by passes that compute from L1
// (f16, llama-1b shape at 4096 keys, single thread: 64 rows 4.1 ms, 32 3.5-3.8, 16 3.0-3.1, 8 3.2-3.3)
constexpr int WSUM_JB = 16;

template <class Rows>
void wsum_g_pass(int gn, int n, const float* w, size_t ldw, const typename Rows::T* v, size_t ld, float* y, int hd, int c0, int c1) {
    switch (gn) {
#if EC_X86_VNNI == 2
        case 8: return wsum_g_slice<8, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        case 7: return wsum_g_slice<7, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        case 6: return wsum_g_slice<6, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        case 5: return wsum_g_slice<5, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
#endif
        case 4: return wsum_g_slice<4, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        case 3: return wsum_g_slice<3, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        case 2: return wsum_g_slice<2, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
        default: return wsum_g_slice<1, Rows>(n, w, ldw, v, ld, y, hd, c0, c1);
    }
}

// a pass takes 8 dims from each half of the head, so the first pass over a block reads both halves of
// every row (for hd 64 both cache lines: the rows stream from memory in one pass, not a line at a time
// over two passes)
template <class Rows>
void wsum_g_16(int n, int hd, int G, const float* w, size_t ldw, const typename Rows::T* v, size_t ld, float* y) {
    const int half = hd / 2;
    for (int j0 = 0; j0 < n; j0 += WSUM_JB) {
        const int jn = std::min(WSUM_JB, n - j0);
        for (int g0 = 0; g0 < G; g0 += WSUM_G) {
            const int gn = std::min(WSUM_G, G - g0);
            for (int c = 0; c < half; c += 8)
                wsum_g_pass<Rows>(gn, jn, w + g0 * ldw + j0, ldw, v + (size_t)j0 * ld, ld, y + (size_t)g0 * hd, hd, c, c + half);
        }
    }
}

void scores_f16_g_avx2(int n, int hd, int G, const half* k, size_t ld, const float* q, float* s, size_t lds) {
    if (hd == 64) return scores_g_hd<64, F16Rows>(n, G, k, ld, q, s, lds);
    if (hd == 128) return scores_g_hd<128, F16Rows>(n, G, k, ld, q, s, lds);
    scores_g_by_head<scores_f16_avx2>(n, hd, G, k, ld, q, s, lds);
}

void wsum_f16_g_avx2(int n, int hd, int G, const float* w, size_t ldw, const half* v, size_t ld, float* y) {
    if (hd % 16 == 0) return wsum_g_16<F16Rows>(n, hd, G, w, ldw, v, ld, y);
    wsum_g_by_head<wsum_f16_avx2>(n, hd, G, w, ldw, v, ld, y);
}


// ---- weighted sum over q8_0 values: integer (kernels.h, wsum_q8_g_ref's arithmetic) ----
// per group of rows: each 4 rows' values of a block as (dim, 4 rows) byte quads, built once for every
// query; per query the quantized weights of 4 rows broadcast as one dword; one vpdpbusd (maddubs + madd
// without vnni) adds the 4 rows into 8 dims. the first pass of a group reads its rows from memory, the
// quads then stay in L1 for every query. (llama-1b shape, 4 queries, 4096 rows in L2, one thread, avx512:
// 4.85 ns a row, f16 5.54; quads rebuilt in registers per pass of queries instead: 5.2)

constexpr int WSUM_Q8_MAX_BLOCKS = 8;   // head sizes up to 256 (longer ones take the reference)
#if EC_X86_VNNI == 2
constexpr int WSUM_Q8_QG = 4;           // queries per pass over the quads (4 x 4 accumulators)
#else
constexpr int WSUM_Q8_QG = 2;
#endif

struct WsumQ8Scratch {
    alignas(32) uint8_t quads[WSUM_Q8_MAX_BLOCKS][kWsumGroup / 4][4][32];   // [block][row quad][k]: see quads4
    alignas(32) float d[WSUM_Q8_MAX_BLOCKS][kWsumGroup];                    // row block scales, 0 past the group
    alignas(32) float w[kWsumGroup];                                        // a short group's weights, 0-padded
};
thread_local WsumQ8Scratch wq8;
alignas(32) const uint8_t zero_row[32 * WSUM_Q8_MAX_BLOCKS] = {};

// 4 rows' 32 values as dword quads (bytes: rows 0..3): out[k] lanes 0-3 hold dims 4k..4k+3, lanes 4-7
// dims 16+4k..16+4k+3
inline void quads4(const uint8_t* r0, const uint8_t* r1, const uint8_t* r2, const uint8_t* r3, __m256i out[4]) {
    const __m256i a = _mm256_loadu_si256((const __m256i*)r0), b = _mm256_loadu_si256((const __m256i*)r1);
    const __m256i c = _mm256_loadu_si256((const __m256i*)r2), d = _mm256_loadu_si256((const __m256i*)r3);
    const __m256i ab0 = _mm256_unpacklo_epi8(a, b), ab1 = _mm256_unpackhi_epi8(a, b);
    const __m256i cd0 = _mm256_unpacklo_epi8(c, d), cd1 = _mm256_unpackhi_epi8(c, d);
    out[0] = _mm256_unpacklo_epi16(ab0, cd0), out[1] = _mm256_unpackhi_epi16(ab0, cd0);
    out[2] = _mm256_unpacklo_epi16(ab1, cd1), out[3] = _mm256_unpackhi_epi16(ab1, cd1);
}

// one query's 32 weights (w, scales d) quantized as wsum_q8_weights: 32 bytes at iw; returns the scale
inline float wsum_q8_weights_x8(const float* w, const float* d, uint8_t* iw) {
    __m256 a[4];
    for (int k = 0; k < 4; k++) a[k] = _mm256_mul_ps(_mm256_loadu_ps(w + 8 * k), _mm256_load_ps(d + 8 * k));
    const float amax = std::max(0.0f, hmax_f32x8(_mm256_max_ps(_mm256_max_ps(a[0], a[1]), _mm256_max_ps(a[2], a[3]))));
    if (!(amax > 0.0f)) {
        _mm256_storeu_si256((__m256i*)iw, _mm256_setzero_si256());
        return 0.0f;
    }
    const __m256 id = _mm256_set1_ps(127.0f / amax);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(a[k], id));   // nearest even, 0..127
    const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    _mm256_storeu_si256((__m256i*)iw, _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
    return amax / 127.0f;
}

// acc += the 4 rows x 8 dims of quad vector v weighted by the dword of 4 weights bw (exact int32)
inline __m256i quad_dot(__m256i acc, __m256i bw, __m256i v) {
#if EC_X86_VNNI
    return dpbusd(acc, bw, v);
#else
    return _mm256_add_epi32(acc, widen_sum(_mm256_maddubs_epi16(bw, v)));   // 2 * 127 * 127 fits int16
#endif
}

// QG queries (weights ldw apart, 32 from the group's first row) over block b of a group of nq row
// quads; y: the first query's output
template <int QG>
inline void wsum_q8_block(int nq, int b, const float* w, size_t ldw, float* y, int hd) {
    alignas(32) uint8_t iw[QG][kWsumGroup];
    float scale[QG];
    for (int g = 0; g < QG; g++) scale[g] = wsum_q8_weights_x8(w + g * ldw, wq8.d[b], iw[g]);
    __m256i acc[QG][4];
#pragma GCC unroll 4
    for (int g = 0; g < QG; g++)
        for (int k = 0; k < 4; k++) acc[g][k] = _mm256_setzero_si256();
    for (int q = 0; q < nq; q++) {
        __m256i v[4];
        for (int k = 0; k < 4; k++) v[k] = _mm256_load_si256((const __m256i*)wq8.quads[b][q][k]);
#pragma GCC unroll 4
        for (int g = 0; g < QG; g++) {
            const __m256i bw = bcast4((const int8_t*)iw[g] + 4 * q);
            for (int k = 0; k < 4; k++) acc[g][k] = quad_dot(acc[g][k], bw, v[k]);
        }
    }
    for (int g = 0; g < QG; g++) {
        if (scale[g] == 0.0f) continue;
        const __m256 s = _mm256_set1_ps(scale[g]);
        float* yb = y + (size_t)g * hd + b * kKvQ8Block;
        const __m256i o[4] = {_mm256_permute2x128_si256(acc[g][0], acc[g][1], 0x20), _mm256_permute2x128_si256(acc[g][2], acc[g][3], 0x20),
                              _mm256_permute2x128_si256(acc[g][0], acc[g][1], 0x31), _mm256_permute2x128_si256(acc[g][2], acc[g][3], 0x31)};
        for (int k = 0; k < 4; k++)
            _mm256_storeu_ps(yb + 8 * k, _mm256_fmadd_ps(_mm256_cvtepi32_ps(o[k]), s, _mm256_loadu_ps(yb + 8 * k)));
    }
}

void wsum_q8_g_avx2(int n, int hd, int G, const float* w, size_t ldw, const uint8_t* v, size_t ld, float* y, int64_t phase) {
    const int nbk = hd / kKvQ8Block;
    if (hd % kKvQ8Block != 0 || nbk > WSUM_Q8_MAX_BLOCKS) return wsum_q8_g_ref(n, hd, G, w, ldw, v, ld, y, phase);
    for (int j0 = 0, m; j0 < n; j0 += m) {
        m = wsum_group_rows(n, j0, phase);
        const uint8_t* rows = v + (size_t)j0 * ld;
        if (j0 + m < n) prefetch_rows(v, ld, j0 + m, std::min<int64_t>(n, j0 + m + kWsumGroup), kv_q8_row_bytes(hd));
        const int nq = (m + 3) / 4;
        for (int b = 0; b < nbk; b++) {
            for (int j = 0; j < m; j++) wq8.d[b][j] = kv_scale(rows + (size_t)j * ld, hd, b);
            for (int j = m; j < kWsumGroup; j++) wq8.d[b][j] = 0.0f;
        }
        for (int q = 0; q < nq; q++) {
            const uint8_t* r[4];
            for (int i = 0; i < 4; i++) r[i] = 4 * q + i < m ? rows + (size_t)(4 * q + i) * ld : zero_row;
            for (int b = 0; b < nbk; b++) {
                __m256i out[4];
                quads4(r[0] + 32 * b, r[1] + 32 * b, r[2] + 32 * b, r[3] + 32 * b, out);
                for (int k = 0; k < 4; k++) _mm256_store_si256((__m256i*)wq8.quads[b][q][k], out[k]);
            }
        }
        // a short group's weights are copied 0-padded, one query at a time
        const int qg = m < kWsumGroup ? 1 : WSUM_Q8_QG;
        for (int g0 = 0; g0 < G;) {
            const int gn = G - g0 >= qg ? qg : 1;
            const float* wg = w + g0 * ldw + j0;
            if (m < kWsumGroup) {
                std::memcpy(wq8.w, wg, m * sizeof(float));
                std::fill(wq8.w + m, wq8.w + kWsumGroup, 0.0f);
                wg = wq8.w;
            }
            for (int b = 0; b < nbk; b++) {
                if (gn == WSUM_Q8_QG) wsum_q8_block<WSUM_Q8_QG>(nq, b, wg, ldw, y + (size_t)g0 * hd, hd);
                else wsum_q8_block<1>(nq, b, wg, ldw, y + (size_t)g0 * hd, hd);
            }
            g0 += gn;
        }
    }
}

// exp for x <= 0 (softmax numerators): 2^k * p(r), k = round(x / ln 2), r = x - k ln 2 (two-part
// ln 2), p the cephes expf polynomial (about 1 ulp); below -87 (2^-126, the smallest normal) -> 0
inline __m256 exp_neg(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.0f);
    const __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    // 2^k: k + 127 into the exponent field
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(under, _mm256_mul_ps(p, _mm256_castsi256_ps(e)));
}

// exp for any x: clamped to [-87, 88] (the float range; silu's gate saturates long before)
inline __m256 exp_any(__m256 x) {
    const __m256 c = _mm256_min_ps(x, _mm256_set1_ps(88.0f));
    return exp_neg(c);  // exp_neg's reduction and 2^k hold up to 88 (k <= 127)
}

// g[i] = silu(g[i]) * u[i] = g / (1 + exp(-g)) * u
void silu_mul_avx2(int64_t n, float* g, const float* u) {
    int64_t i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = _mm256_loadu_ps(g + i);
        const __m256 e = exp_any(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

float max_f32_avx2(int n, const float* x) {
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        m0 = _mm256_max_ps(m0, _mm256_loadu_ps(x + i));
        m1 = _mm256_max_ps(m1, _mm256_loadu_ps(x + i + 8));
    }
    float m = hmax_f32x8(_mm256_max_ps(m0, m1));
    for (; i < n; i++) m = std::max(m, x[i]);
    return m;
}

float exp_sum_avx2(int n, float* x, float mx) {
    const __m256 vm = _mm256_set1_ps(mx);
    __m256 acc = _mm256_setzero_ps();
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 e = exp_neg(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        _mm256_storeu_ps(x + i, e);
        acc = _mm256_add_ps(acc, e);
    }
    if (i < n) {   // the tail through the same polynomial (an element's value never depends on n)
        alignas(32) float t[8];
        for (int j = 0; j < 8; j++) t[j] = i + j < n ? x[i + j] : -INFINITY;
        const __m256 e = exp_neg(_mm256_sub_ps(_mm256_load_ps(t), vm));
        _mm256_store_ps(t, e);
        for (int j = 0; i + j < n; j++) x[i + j] = t[j];
        acc = _mm256_add_ps(acc, e);
    }
    return hsum_f32x8(acc);
}

void vec_dot_f32_f32_avx2(int n, float* s, const void* w, const void* x) {
    const float* a = (const float*)w;
    const float* b = (const float*)x;
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; k++) {
            acc[k] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8 * k), _mm256_loadu_ps(b + i + 8 * k), acc[k]);
        }
    }
    for (; i + 8 <= n; i += 8) acc[0] = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), acc[0]);
    float sum = hsum_f32x8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3])));
    for (; i < n; i++) sum += a[i] * b[i];
    *s = sum;
}

void vec_dot_f16_f32_avx2(int n, float* s, const void* w, const void* x) {
    *s = dot_f16_f32_avx2(n, (const half*)w, (const float*)x);
}

// ---- activation quantizers (bit-exact with generic: ggml's reference rounding) ----

// roundf (half away from zero), exactly: truncate, then step away from zero when |frac| >= 0.5
inline __m256 round_away(__m256 v) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    const __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));                  // |v - t|, exact
    const __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));   // +-1 with v's sign
    return _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), step));
}

// 32 floats -> 32 int8 (already rounded, within [-128, 127]) stored in order; returns their sum
inline int store_i8x32(const __m256 v[4], int8_t* dst) {
    __m256i i0 = _mm256_cvtps_epi32(v[0]), i1 = _mm256_cvtps_epi32(v[1]);
    __m256i i2 = _mm256_cvtps_epi32(v[2]), i3 = _mm256_cvtps_epi32(v[3]);
    const int sum = hsum_i32x8(_mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3)));
    // int32 -> int16 -> int8 (packs interleave 128-bit lanes: undo with a permute)
    i0 = _mm256_packs_epi32(i0, i1);
    i2 = _mm256_packs_epi32(i2, i3);
    i0 = _mm256_packs_epi16(i0, i2);
    i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i*)dst, i0);
    return sum;
}

// one q8_0/q8_1 block: d = amax/127, q = roundf(x * (1/d)); returns sum(q)
inline int quantize_block_q8(const float* x, half* d_out, int8_t* qs, float* d_f32) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v[4];
    __m256 amax = _mm256_setzero_ps();
    for (int k = 0; k < 4; k++) {
        v[k] = _mm256_loadu_ps(x + 8 * k);
        amax = _mm256_max_ps(amax, _mm256_and_ps(v[k], abs_mask));
    }
    const float d = hmax_f32x8(amax) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = f2h(d);
    *d_f32 = d;
    const __m256 vid = _mm256_set1_ps(id);
    for (int k = 0; k < 4; k++) v[k] = round_away(_mm256_mul_ps(v[k], vid));
    return store_i8x32(v, qs);
}

void from_float_q8_0_avx2(const float* src, void* dst, int64_t n) {
    block_q8_0* b = (block_q8_0*)dst;
    float d;
    for (int64_t i = 0; i < n / QK8_0; i++) quantize_block_q8(src + i * QK8_0, &b[i].d, b[i].qs, &d);
}

// one kv head's row as q8_0 (kv_quantize_q8's bits: quantize_block_q8 rounds as it does); head sizes
// that are not whole blocks take the reference
void kv_quantize_q8_avx2(const float* x, uint8_t* row, int hd) {
    if (hd % kKvQ8Block != 0) return kv_quantize_q8(x, row, hd);
    for (int b = 0; b < hd / kKvQ8Block; b++) {
        half h;
        float d;
        quantize_block_q8(x + kKvQ8Block * b, &h, (int8_t*)row + kKvQ8Block * b, &d);
        memcpy(row + hd + 2 * b, &h, sizeof(h));
    }
}

// ---- scores over q8_0 keys: int8 dots (kernels.h: the queries quantized as kv rows) ----
// with vnni, 8 keys a step: their block b transposed to 8 vectors of (4 dims x 8 keys), lane r of
// vector c holding dims 4c..4c+3 of key r, so that one vpdpbusd adds a query's 4 dims (broadcast as a
// dword) into the dots of 8 keys and no horizontal sum is left; the keys are offset by 128 to unsigned
// and 128 * sum(q) taken off after (exact). then f_b = (float)dot_b * (dk_b * dq_b) and s = ((f_0 + f_1)
// + f_2) + ..., as the reference (scores_q8_g_ref) computes them. (llama-1b shape, 4096
// keys in L2, one thread, avx512: 5.5 ns a key, as f16's; in the model at 4096 cached tokens and 2
// threads, 7% of decode samples against 16% for the one-key-a-step kernel below)
#if EC_X86_VNNI
// 8 x 8 dwords: t[c] lane r = r[r] dword c
inline void transpose8x8_epi32(const __m256i r[8], __m256i t[8]) {
    __m256i a[8], b[8];
    for (int i = 0; i < 8; i += 2) a[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]), a[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    for (int i = 0; i < 8; i += 4) {
        b[i] = _mm256_unpacklo_epi64(a[i], a[i + 2]), b[i + 1] = _mm256_unpackhi_epi64(a[i], a[i + 2]);
        b[i + 2] = _mm256_unpacklo_epi64(a[i + 1], a[i + 3]), b[i + 3] = _mm256_unpackhi_epi64(a[i + 1], a[i + 3]);
    }
    for (int c = 0; c < 4; c++) t[c] = _mm256_permute2x128_si256(b[c], b[c + 4], 0x20), t[c + 4] = _mm256_permute2x128_si256(b[c], b[c + 4], 0x31);
}

template <int HD>
void scores_q8_int(int n, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
    constexpr int NB = HD / 32;
    // the queries quantized as kv rows (quantize_block_q8: kv_quantize_q8's bits, as from_float_q8_0's
    // are the generic's), their block scales (the fp16 values, as the rows hold them) and 128 * the sum
    // of each block's quants (the vnni offset)
    constexpr size_t qrb = HD;   // the quants only: the scales go to dq
    thread_local std::vector<int8_t> qbuf;
    thread_local std::vector<float> dq;
    thread_local std::vector<int32_t> corr;
    qbuf.resize((size_t)G * qrb), dq.resize((size_t)G * NB), corr.resize((size_t)G * NB);
    for (int g = 0; g < G; g++)
        for (int b = 0; b < NB; b++) {
            half h;
            float d;
            corr[g * NB + b] = 128 * quantize_block_q8(q + (size_t)g * HD + 32 * b, &h, qbuf.data() + g * qrb + 32 * b, &d);
            dq[g * NB + b] = h2f(h);
        }
    const int8_t* qq = qbuf.data();
    for (int j = 0; j < n; j += 8) {
        const int rows = std::min(8, n - j);
        if (j + KV_PREFETCH_ROWS < n) prefetch_rows(k, ld, j + KV_PREFETCH_ROWS, std::min<int64_t>(n, j + KV_PREFETCH_ROWS + 8), kv_q8_row_bytes(HD));
        const uint8_t* kr[8];
        for (int r = 0; r < 8; r++) kr[r] = k + (size_t)(j + std::min(r, rows - 1)) * ld;   // a short step repeats its last key
        alignas(32) float dk[NB][8];
        for (int r = 0; r < 8; r++)
            for (int b = 0; b < NB; b++) dk[b][r] = kv_scale(kr[r], HD, b);
        for (int b = 0; b < NB; b++) {
            __m256i rv[8], t[8];
            for (int r = 0; r < 8; r++) rv[r] = _mm256_loadu_si256((const __m256i*)(kr[r] + 32 * b));
            transpose8x8_epi32(rv, t);
            for (int c = 0; c < 8; c++) t[c] = _mm256_xor_si256(t[c], _mm256_set1_epi8((char)0x80));   // k + 128
            const __m256 dkb = _mm256_load_ps(dk[b]);
            for (int g = 0; g < G; g++) {
                const int8_t* qg = qq + g * qrb + 32 * b;
                __m256i acc[4] = {_mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256(), _mm256_setzero_si256()};
                for (int c = 0; c < 8; c++) {
                    const __m256i qb = bcast4(qg + 4 * c);
                    acc[c % 4] = dpbusd(acc[c % 4], t[c], qb);
                }
                const __m256i dot = _mm256_sub_epi32(_mm256_add_epi32(_mm256_add_epi32(acc[0], acc[1]), _mm256_add_epi32(acc[2], acc[3])),
                                                     _mm256_set1_epi32(corr[g * NB + b]));
                const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dkb, _mm256_set1_ps(dq[g * NB + b])));
                float* sg = s + (size_t)g * lds + j;
                if (rows == 8) {
                    _mm256_storeu_ps(sg, _mm256_add_ps(b == 0 ? _mm256_setzero_ps() : _mm256_loadu_ps(sg), f));
                } else {
                    alignas(32) float fr[8];
                    _mm256_store_ps(fr, f);
                    for (int r = 0; r < rows; r++) sg[r] = (b == 0 ? 0.0f : sg[r]) + fr[r];
                }
            }
        }
    }
}
#endif

#if !EC_X86_VNNI
// exact int32 lanes: the 32 int8 products of a and b, 4 per lane, as |a| . sign(b, a) (u8 x s8;
// the maddubs pairs fit int16: 2 * 127 * 127 < 2^15). au = |a|, shared by the queries of one key
inline __m256i dot_i8x32(__m256i au, __m256i a, __m256i b) {
    return widen_sum(_mm256_maddubs_epi16(au, _mm256_sign_epi8(b, a)));
}

// one key row against QG = 8 / NB queries: lane g * NB + b = (float)dot_b(key, query g) * (dk_b * dq_gb)
// (qr: the quantized queries, qrb bytes apart; dq: their scales in the same lane order)
template <int HD>
inline __m256 scores_q8_lanes(const uint8_t* kr, const uint8_t* qr, size_t qrb, __m256 dq) {
    constexpr int NB = HD / 32, QG = 8 / NB;
    __m256i p[8];
    for (int b = 0; b < NB; b++) {
        const __m256i kb = _mm256_loadu_si256((const __m256i*)(kr + 32 * b)), ka = _mm256_sign_epi8(kb, kb);
        for (int g = 0; g < QG; g++) p[g * NB + b] = dot_i8x32(ka, kb, _mm256_loadu_si256((const __m256i*)(qr + g * qrb + 32 * b)));
    }
    // 8 vectors -> their 8 sums in order (integer: exact in any order)
    const __m256i h0 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
    const __m256i h1 = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
    const __m256i sum = _mm256_add_epi32(_mm256_permute2x128_si256(h0, h1, 0x20), _mm256_permute2x128_si256(h0, h1, 0x31));
    // the key's block scales repeated for each query: NB fp16 values broadcast, then widened
    __m128i dh;
    if constexpr (NB == 2) {
        int32_t v;
        std::memcpy(&v, kr + HD, sizeof(v));
        dh = _mm_set1_epi32(v);
    } else {
        int64_t v;
        std::memcpy(&v, kr + HD, sizeof(v));
        dh = _mm_set1_epi64x(v);
    }
    return _mm256_mul_ps(_mm256_cvtepi32_ps(sum), _mm256_mul_ps(_mm256_cvtph_ps(dh), dq));
}

// without vnni (where the 8-key transposes cost more than they save: avx2 table, llama-1b shape,
// 4096 keys in L2, 7.6 ns a key against 6.1): one key at a time against 8 / NB queries.
// hd 64 (2 blocks, 4 queries per pass) and 128 (4 blocks, 2 queries per pass), 2 rows per step: the
// blocks of a query summed in lanes (hadd: 64: f0 + f1; 128: (f0 + f1) + (f2 + f3)), then each query's
// two scores stored together. a short last step repeats its last row
template <int HD>
void scores_q8_hsum(int n, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
    constexpr int NB = HD / 32, QG = 8 / NB;
    const size_t qrb = kv_q8_row_bytes(HD);
    // whole groups: a group's missing queries are zero (zero quants and scales)
    const uint8_t* qq = kv_quantize_queries<kv_quantize_q8_avx2>(q, G, HD, (G + QG - 1) / QG * QG);
    for (int g0 = 0; g0 < G; g0 += QG) {
        const uint8_t* qr = qq + g0 * qrb;
        alignas(32) float dqf[8];
        for (int i = 0; i < 8; i++) dqf[i] = kv_q8_scale(qr + (i / NB) * qrb, HD, i % NB);
        const __m256 dq = _mm256_load_ps(dqf);
        const int gn = std::min(QG, G - g0);
        for (int j = 0; j < n; j += 2) {
            const int rows = std::min(2, n - j);
            if (g0 == 0 && j + KV_PREFETCH_ROWS < n) prefetch_rows(k, ld, j + KV_PREFETCH_ROWS, std::min<int64_t>(n, j + KV_PREFETCH_ROWS + 2), qrb);
            const __m256 f0 = scores_q8_lanes<HD>(k + (size_t)j * ld, qr, qrb, dq);
            const __m256 f1 = scores_q8_lanes<HD>(k + (size_t)(j + rows - 1) * ld, qr, qrb, dq);
            __m256 h = _mm256_hadd_ps(f0, f1);   // NB 2: [r0 g0, r0 g1, r1 g0, r1 g1 | r0 g2, r0 g3, r1 g2, r1 g3]
            if constexpr (NB == 2) h = _mm256_permutevar8x32_ps(h, _mm256_setr_epi32(0, 2, 1, 3, 4, 6, 5, 7));
            else h = _mm256_hadd_ps(h, h);       // NB 4: [r0 g0, r1 g0, .. | r0 g1, r1 g1, ..]
            // (r0, r1) pairs: NB 2: query g in lanes 2g, 2g + 1; NB 4: query g in lanes 4g, 4g + 1
            const __m128 lo = _mm256_castps256_ps128(h), hi = _mm256_extractf128_ps(h, 1);
            const __m128 pairs[4] = {lo, _mm_movehl_ps(lo, lo), hi, _mm_movehl_ps(hi, hi)};
            for (int g = 0; g < gn; g++) {
                const __m128 v = pairs[NB == 2 ? g : 2 * g];
                float* sg = s + (size_t)(g0 + g) * lds + j;
                if (rows == 2) _mm_storel_pi((__m64*)sg, v);
                else _mm_store_ss(sg, v);
            }
        }
    }
}

#endif

void scores_q8_g_avx2(int n, int hd, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
#if EC_X86_VNNI
    if (hd == 64) return scores_q8_int<64>(n, G, k, ld, q, s, lds);
    if (hd == 128) return scores_q8_int<128>(n, G, k, ld, q, s, lds);
#else
    if (hd == 64) return scores_q8_hsum<64>(n, G, k, ld, q, s, lds);
    if (hd == 128) return scores_q8_hsum<128>(n, G, k, ld, q, s, lds);
#endif
    scores_q8_g_ref(n, hd, G, k, ld, q, s, lds);
}

void from_float_q8_1_avx2(const float* src, void* dst, int64_t n) {
    block_q8_1* b = (block_q8_1*)dst;
    float d;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const int sum = quantize_block_q8(src + i * QK8_1, &b[i].d, b[i].qs, &d);
        b[i].s = f2h(sum * d);
    }
}

// q8_K: iscale = -127/max (max: the first element of largest |x|, with its sign), round to nearest
// even (cvtps_epi32 under the default mxcsr, as ggml's nearest_int), d = 1/iscale, bsums of 16
void from_float_q8_K_avx2(const float* src, void* dst, int64_t n) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    block_q8_K* b = (block_q8_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        __m256 amax_v = _mm256_setzero_ps();
        for (int j = 0; j < QK_K; j += 8) amax_v = _mm256_max_ps(amax_v, _mm256_and_ps(_mm256_loadu_ps(src + j), abs_mask));
        const float amax = hmax_f32x8(amax_v);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof(block_q8_K));
            continue;
        }
        // first index with |x| == amax
        float max = 0.0f;
        const __m256 target = _mm256_set1_ps(amax);
        for (int j = 0; j < QK_K; j += 8) {
            const int m = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_and_ps(_mm256_loadu_ps(src + j), abs_mask), target, _CMP_EQ_OQ));
            if (m) { max = src[j + __builtin_ctz(m)]; break; }
        }
        const float iscale = -127.f / max;
        const __m256 vs = _mm256_set1_ps(iscale);
        for (int j = 0; j < QK_K; j += 32) {
            __m256 v[4];
            for (int k = 0; k < 4; k++) v[k] = _mm256_mul_ps(_mm256_loadu_ps(src + j + 8 * k), vs);
            store_i8x32(v, b[i].qs + j);  // cvtps_epi32 rounds to nearest even; packs clamps to 127
        }
        for (int j = 0; j < QK_K / 16; j++) {
            // 16 int8 -> int16 -> sum
            const __m256i q16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)(b[i].qs + 16 * j)));
            b[i].bsums[j] = (int16_t)hsum_i32x8(_mm256_madd_epi16(q16, _mm256_set1_epi16(1)));
        }
        b[i].d = 1 / iscale;
    }
}

// ---- per-block unpacking shared by vec_dot and gemm ----
// each weight type gives: a 32-byte quant vector for block b, its scale, and how it dots with an
// activation block (int32 x8 partial sums, to be scaled by d_w * d_x)

// signed weights: |w| as the unsigned maddubs operand, w's sign moved onto x
struct SignedW { __m256i q, a; };
inline SignedW signed_w(__m256i q) { return {q, _mm256_sign_epi8(q, q)}; }
inline __m256i dot16_signed(const SignedW& w, __m256i xq) {
    return _mm256_maddubs_epi16(w.a, _mm256_sign_epi8(xq, w.q));  // pairs -> int16
}

// SUM8_FITS_I16: a sum of 8 products (4 maddubs pairs) fits int16, so the gemm may add int16 lanes
// before widening. q4_0: |q| <= 8, q5_0: <= 16, q4_1: <= 15, times |x| <= 127: 8 * 16 * 127 < 32768.
struct Q4_0 {
    using WB = block_q4_0;
    using XB = block_q8_0;
    using W = SignedW;
    static constexpr bool SUM8_FITS_I16 = true;
    // 4-bit -> 8-bit, sub 8
    static W load(const WB& b) { return signed_w(_mm256_sub_epi8(bytes_from_nibbles_32(b.qs), _mm256_set1_epi8(8))); }
    static __m256i dot16(const W& w, __m256i xq) { return dot16_signed(w, xq); }
};

struct Q4_1 {
    using WB = block_q4_1;
    using XB = block_q8_1;
    struct W { __m256i q; };
    static constexpr bool SUM8_FITS_I16 = true;
    static W load(const WB& b) { return {bytes_from_nibbles_32(b.qs)}; }  // 4-bit -> 8-bit
    static __m256i dot16(const W& w, __m256i xq) { return _mm256_maddubs_epi16(w.q, xq); }  // u8 x i8 pairs
};

struct Q5_0 {
    using WB = block_q5_0;
    using XB = block_q8_0;
    using W = SignedW;
    static constexpr bool SUM8_FITS_I16 = true;
    static W load(const WB& b) {
        // 4-bit -> 8-bit; where the 5th bit is clear, set the top nibble: (q | 0xf0) = q - 16 as int8
        const __m256i lo = bytes_from_nibbles_32(b.qs);
        const __m256i hi = _mm256_andnot_si256(bytes_from_bits_32(b.qh), _mm256_set1_epi8((char)0xf0));
        return signed_w(_mm256_or_si256(lo, hi));
    }
    static __m256i dot16(const W& w, __m256i xq) { return dot16_signed(w, xq); }
};

struct Q8_0 {
    using WB = block_q8_0;
    using XB = block_q8_0;
    using W = SignedW;
    static constexpr bool SUM8_FITS_I16 = false;
    static W load(const WB& b) { return signed_w(_mm256_loadu_si256((const __m256i*)b.qs)); }
    static __m256i dot16(const W& w, __m256i xq) { return dot16_signed(w, xq); }
};


// ---- vec_dot for the 32-element block types: two blocks per step, two accumulators ----
// (q4_0, q5_0, q8_0; q4_1 has its own below)

template <class T>
void vec_dot_q32(int n, float* s, const void* vw, const void* vx) {
    const typename T::WB* w = (const typename T::WB*)vw;
    const typename T::XB* x = (const typename T::XB*)vx;
    const int nb = n / 32;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
    auto step = [&](int i, __m256& a) {
        const __m256 p = _mm256_cvtepi32_ps(widen_sum(T::dot16(T::load(w[i]), _mm256_loadu_si256((const __m256i*)x[i].qs))));
        a = _mm256_fmadd_ps(_mm256_set1_ps(h2f(w[i].d) * h2f(x[i].d)), p, a);
    };
    int i = 0;
    for (; i + 2 <= nb; i += 2) {
        step(i, acc[0]);
        step(i + 1, acc[1]);
    }
    if (i < nb) step(i, acc[0]);
    *s = hsum_f32x8(_mm256_add_ps(acc[0], acc[1]));
}

// q4_1: (d, m) and (d_x, s) are adjacent halves: one f16c conversion each gives both products,
// [d d_x, m s], and lane 1 accumulates the min terms (fewer loads than four scalar conversions)
void vec_dot_q4_1_q8_1_avx2(int n, float* s, const void* vw, const void* vx) {
    const block_q4_1* w = (const block_q4_1*)vw;
    const block_q8_1* x = (const block_q8_1*)vx;
    __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};  // two chains each: add latency
    __m128 acc_m[2] = {_mm_setzero_ps(), _mm_setzero_ps()};
    const int nb = n / QK4_1;
    auto step = [&](int i, __m256& a, __m128& am) {
        uint32_t wdm, xds;
        memcpy(&wdm, &w[i].d, 4);
        memcpy(&xds, &x[i].d, 4);
        const __m128 prod = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)wdm)), _mm_cvtph_ps(_mm_cvtsi32_si128((int)xds)));
        am = _mm_add_ps(am, prod);
        // 4-bit -> 8-bit, u8 x i8 -> int32
        const __m256i p = widen_sum(_mm256_maddubs_epi16(bytes_from_nibbles_32(w[i].qs), _mm256_loadu_si256((const __m256i*)x[i].qs)));
        a = _mm256_fmadd_ps(_mm256_broadcastss_ps(prod), _mm256_cvtepi32_ps(p), a);
    };
    int i = 0;
    for (; i + 2 <= nb; i += 2) {
        step(i, acc[0], acc_m[0]);
        step(i + 1, acc[1], acc_m[1]);
    }
    if (i < nb) step(i, acc[0], acc_m[0]);
    *s = hsum_f32x8(_mm256_add_ps(acc[0], acc[1])) + _mm_cvtss_f32(_mm_movehdup_ps(_mm_add_ps(acc_m[0], acc_m[1])));
}

// ---- register-tiled gemm for the 32-element block types ----
// 4 weight rows x RN activation columns per pass: each unpacked weight block is reused for RN
// columns and each activation block for 4 rows. the 4 per-row int32x8 dots of a column are reduced
// with 3 hadds to one vector [r0 r1 r2 r3 | r0 r1 r2 r3] (two partial sums per row), so a column
// needs one cvt and one fma per block for all 4 rows, and one accumulator.

// block scales, converted once per gemm call into scratch: per row group of 4 and block,
// D = [d0 d1 d2 d3 | d0 d1 d2 d3] and (q4_1) M = [m0 m1 m2 m3 | 0 0 0 0] (min counted once per row);
// per column and block, d (and q8_1's s) as floats
struct GemmScratch {
    std::vector<float> row_d, row_m;  // (block, 8)
    std::vector<float> col_d, col_s;   // (column, block)
};
thread_local GemmScratch scratch;

// 4 x 32 bits -> 8 halves -> 8 floats
inline __m256 h8_to_f32(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
    __m128i v = _mm_cvtsi32_si128((int)a);
    v = _mm_insert_epi32(v, (int)b, 1);
    v = _mm_insert_epi32(v, (int)c, 2);
    v = _mm_insert_epi32(v, (int)d, 3);
    return _mm256_cvtph_ps(v);
}

template <class T>
void row_scales(int nb, const char* const wrow[4], float* d, float* m) {
    using WB = typename T::WB;
    for (int b = 0; b < nb; b++) {
        uint32_t v[4];  // d (q4_1: d and m) of each row
        for (int r = 0; r < 4; r++) memcpy(&v[r], &((const WB*)wrow[r] + b)->d, 4);
        const __m256 f = h8_to_f32(v[0], v[1], v[2], v[3]);
        if constexpr (std::is_same<T, Q4_1>::value) {  // f = d0 m0 d1 m1 ..
            _mm256_storeu_ps(d + 8 * b, _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
            _mm256_storeu_ps(m + 8 * b, _mm256_blend_ps(_mm256_permutevar8x32_ps(f, _mm256_setr_epi32(1, 3, 5, 7, 1, 3, 5, 7)),
                                                        _mm256_setzero_ps(), 0xf0));
        } else {  // f = d0 x d1 x ..: the x are the first quant bytes, ignored
            _mm256_storeu_ps(d + 8 * b, _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
        }
    }
}

template <class T>
void col_scales(int nb, int nc, const char* x, size_t ldx, float* d, float* s) {
    for (int c = 0; c < nc; c++) {
        const typename T::XB* xb = (const typename T::XB*)(x + c * ldx);
        for (int b = 0; b < nb; b++) {
            d[c * nb + b] = h2f(xb[b].d);
            if constexpr (std::is_same<T, Q4_1>::value) s[c * nb + b] = h2f(xb[b].s);
        }
    }
}

// 4 rows' int16 pair sums -> int32 [sum0 sum1 sum2 sum3 | sum0 sum1 sum2 sum3] (each: half of
// that row's lanes). adds int16 lanes first where 8 products fit int16 (one widening instead of 4)
template <class T>
inline __m256i reduce4(__m256i p0, __m256i p1, __m256i p2, __m256i p3) {
    if constexpr (T::SUM8_FITS_I16) {
        return widen_sum(_mm256_hadd_epi16(_mm256_hadd_epi16(p0, p1), _mm256_hadd_epi16(p2, p3)));
    } else {
        return _mm256_hadd_epi32(_mm256_hadd_epi32(widen_sum(p0), widen_sum(p1)),
                                 _mm256_hadd_epi32(widen_sum(p2), widen_sum(p3)));
    }
}

template <class T, int RN>
void gemm_tile_q32(int nb, const char* const wrow[4], const float* rd, const float* rmin, const char* x,
                   size_t ldx, const float* cd, const float* cs, float* y, size_t ldy, int rm) {
    using WB = typename T::WB;
    using XB = typename T::XB;
    __m256 acc[RN];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        typename T::W wq[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++) wq[r] = T::load(((const WB*)wrow[r])[b]);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            const __m256i xq = _mm256_loadu_si256((const __m256i*)((const XB*)(x + c * ldx) + b)->qs);
            // 4 rows' int dots -> one vector, scaled by d_row * d_col
            const __m256i h = reduce4<T>(T::dot16(wq[0], xq), T::dot16(wq[1], xq), T::dot16(wq[2], xq), T::dot16(wq[3], xq));
            const __m256 scale = _mm256_mul_ps(_mm256_loadu_ps(rd + 8 * b), _mm256_broadcast_ss(&cd[c * nb + b]));
            acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(h), scale, acc[c]);
            if constexpr (std::is_same<T, Q4_1>::value) {
                acc[c] = _mm256_fmadd_ps(_mm256_loadu_ps(rmin + 8 * b), _mm256_broadcast_ss(&cs[c * nb + b]), acc[c]);  // m * s
            }
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        // halves -> 4 row sums
        const __m128 v = _mm_add_ps(_mm256_castps256_ps128(acc[c]), _mm256_extractf128_ps(acc[c], 1));
        float out[4];
        _mm_storeu_ps(out, v);
        for (int r = 0; r < rm; r++) y[c * ldy + r] = out[r];
    }
}

template <class T>
void gemm_q32(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx, float* y,
              size_t ldy) {
    const int nb = n / 32;
    GemmScratch& sc = scratch;
    const bool q4_1 = std::is_same<T, Q4_1>::value;
    if (sc.row_d.size() < (size_t)nb * 8) sc.row_d.resize((size_t)nb * 8);
    if (q4_1 && sc.row_m.size() < (size_t)nb * 8) sc.row_m.resize((size_t)nb * 8);
    if (sc.col_d.size() < (size_t)nb * nc) sc.col_d.resize((size_t)nb * nc);
    if (q4_1 && sc.col_s.size() < (size_t)nb * nc) sc.col_s.resize((size_t)nb * nc);
    col_scales<T>(nb, nc, (const char*)x, ldx, sc.col_d.data(), sc.col_s.data());
    for (int r0 = 0; r0 < nr; r0 += 4) {
        const int rm = std::min(4, nr - r0);
        const char* wrow[4];  // short edge tiles repeat the last row; its results are dropped
        for (int r = 0; r < 4; r++) wrow[r] = (const char*)w + (r0 + std::min(r, rm - 1)) * ldw;
        row_scales<T>(nb, wrow, sc.row_d.data(), sc.row_m.data());
        const float* rd = sc.row_d.data();
        const float* rmin = sc.row_m.data();
        int c0 = 0;
        const char* xc = (const char*)x;
        const float* cd = sc.col_d.data();
        const float* cs = q4_1 ? sc.col_s.data() : nullptr;
        float* yc = y + r0;
        for (; c0 + 4 <= nc; c0 += 4, xc += 4 * ldx, cd += 4 * nb, cs += q4_1 ? 4 * nb : 0, yc += 4 * ldy) {
            gemm_tile_q32<T, 4>(nb, wrow, rd, rmin, xc, ldx, cd, cs, yc, ldy, rm);
        }
        switch (nc - c0) {
            case 3: gemm_tile_q32<T, 3>(nb, wrow, rd, rmin, xc, ldx, cd, cs, yc, ldy, rm); break;
            case 2: gemm_tile_q32<T, 2>(nb, wrow, rd, rmin, xc, ldx, cd, cs, yc, ldy, rm); break;
            case 1: gemm_tile_q32<T, 1>(nb, wrow, rd, rmin, xc, ldx, cd, cs, yc, ldy, rm); break;
        }
    }
}

// ---- q4_K x q8_K ----

// 16 bytes: int16 scale i broadcast over 32 bytes (bytes 2i, 2i+1 repeated)
inline __m256i scale_shuffle_k4(int i) {
    return _mm256_set1_epi16((short)((2 * i) | ((2 * i + 1) << 8)));
}

// one q4_K row against RN q8_K columns: the row's nibbles and scales are unpacked once per
// sub-block pair and reused for every column (RN = 1 is the vec_dot)
template <int RN>
void dot_q4_K_cols(int n, const block_q4_K* w, const block_q8_K* const x[RN], float* out) {
    const uint32_t kmask1 = 0x3f3f3f3f, kmask2 = 0x0f0f0f0f, kmask3 = 0x03030303;
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    __m256 acc[RN];
    __m128 acc_m[RN];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) { acc[c] = _mm256_setzero_ps(); acc_m[c] = _mm_setzero_ps(); }
    for (int i = 0; i < n / QK_K; i++) {
        const float wd = h2f(w[i].d), wdmin = h2f(w[i].dmin);
        // 12 packed bytes -> 8 scales (utmp[0..1]) and 8 mins (utmp[2..3]), as get_scale_min_k4
        uint32_t utmp[4];
        memcpy(utmp, w[i].scales, 12);
        utmp[3] = ((utmp[2] >> 4) & kmask2) | (((utmp[1] >> 6) & kmask3) << 4);
        const uint32_t uaux = utmp[1] & kmask1;
        utmp[1] = (utmp[2] & kmask2) | (((utmp[0] >> 6) & kmask3) << 4);
        utmp[2] = uaux;
        utmp[0] &= kmask1;
        const __m256i mins_and_scales = _mm256_cvtepu8_epi16(_mm_set_epi32(utmp[3], utmp[2], utmp[1], utmp[0]));
        const __m128i mins = _mm256_extracti128_si256(mins_and_scales, 1);
        const __m128i sc128 = _mm256_castsi256_si128(mins_and_scales);
        const __m256i scales = _mm256_set_m128i(sc128, sc128);
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            // mins: sum_j m_j * (q8 sum of sub-block j), from bsums (16 sums of 16 -> 8 sums of 32)
            const __m256i q8sums = _mm256_loadu_si256((const __m256i*)x[c][i].bsums);
            const __m128i q8s = _mm_hadd_epi16(_mm256_castsi256_si128(q8sums), _mm256_extracti128_si256(q8sums, 1));
            const __m128i prod = _mm_madd_epi16(mins, q8s);
            acc_m[c] = _mm_fmadd_ps(_mm_set1_ps(-x[c][i].d * wdmin), _mm_cvtepi32_ps(prod), acc_m[c]);
        }
        __m256i sumi[RN];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) sumi[c] = _mm256_setzero_si256();
        const uint8_t* q4 = w[i].qs;
#pragma GCC unroll 4
        for (int j = 0; j < QK_K / 64; j++, q4 += 32) {
            const __m256i scale_l = _mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j + 0));
            const __m256i scale_h = _mm256_shuffle_epi8(scales, scale_shuffle_k4(2 * j + 1));
            // 4-bit -> 8-bit: low nibbles = sub-block 2j, high = 2j+1
            const __m256i q4bits = _mm256_loadu_si256((const __m256i*)q4);
            const __m256i q4l = _mm256_and_si256(q4bits, m4);
            const __m256i q4h = _mm256_and_si256(_mm256_srli_epi16(q4bits, 4), m4);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t* q8 = x[c][i].qs + 64 * j;
                // u8 x i8 -> int16 pairs, times the sub-block scale -> int32
                const __m256i p16l = _mm256_maddubs_epi16(q4l, _mm256_loadu_si256((const __m256i*)q8));
                const __m256i p16h = _mm256_maddubs_epi16(q4h, _mm256_loadu_si256((const __m256i*)(q8 + 32)));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(scale_l, p16l),
                                                                     _mm256_madd_epi16(scale_h, p16h)));
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(x[c][i].d * wd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) {
        __m128 m = _mm_add_ps(acc_m[c], _mm_movehl_ps(acc_m[c], acc_m[c]));
        m = _mm_add_ss(m, _mm_movehdup_ps(m));
        out[c] = hsum_f32x8(acc[c]) + _mm_cvtss_f32(m);
    }
}

void vec_dot_q4_K_q8_K_avx2(int n, float* s, const void* vw, const void* vx) {
    const block_q8_K* x[1] = {(const block_q8_K*)vx};
    dot_q4_K_cols<1>(n, (const block_q4_K*)vw, x, s);
}

// gemm for the k-quants: each row against 4 columns at a time
template <class WB, void (*COLS4)(int, const WB*, const block_q8_K* const*, float*),
          void (*COLS1)(int, const WB*, const block_q8_K* const*, float*)>
void gemm_k_rows(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx, float* y,
                 size_t ldy) {
    for (int r = 0; r < nr; r++) {
        const WB* wr = (const WB*)((const char*)w + r * ldw);
        int c = 0;
        for (; c + 4 <= nc; c += 4) {
            const block_q8_K* xc[4];
            float out[4];
            for (int k = 0; k < 4; k++) xc[k] = (const block_q8_K*)((const char*)x + (c + k) * ldx);
            COLS4(n, wr, xc, out);
            for (int k = 0; k < 4; k++) y[(c + k) * ldy + r] = out[k];
        }
        for (; c < nc; c++) {
            const block_q8_K* xc[1] = {(const block_q8_K*)((const char*)x + c * ldx)};
            COLS1(n, wr, xc, &y[c * ldy + r]);
        }
    }
}

// ---- q6_K x q8_K ----

// int8 scales 2i, 2i+1 each repeated 8 times
inline __m128i scale_shuffle_q6(int i) {
    return _mm_set_epi64x(0x0101010101010101LL * (2 * i + 1), 0x0101010101010101LL * (2 * i));
}

// one q6_K row against RN q8_K columns (RN = 1 is the vec_dot). the -32 offset is applied once
// per super-block from the bsums: sum_g sc_g * 32 * bsum_g
template <int RN>
void dot_q6_K_cols(int n, const block_q6_K* w, const block_q8_K* const x[RN], float* out) {
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256 acc[RN];
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) acc[c] = _mm256_setzero_ps();
    for (int i = 0; i < n / QK_K; i++) {
        const float wd = h2f(w[i].d);
        const uint8_t* q4 = w[i].ql;
        const uint8_t* qh = w[i].qh;
        const __m128i scales = _mm_loadu_si128((const __m128i*)w[i].scales);
        __m256i sumi[RN];
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            // offset: 32 * sum_g sc_g * bsum_g (16 groups of 16)
            const __m256i bs = _mm256_loadu_si256((const __m256i*)x[c][i].bsums);
            sumi[c] = _mm256_sub_epi32(_mm256_setzero_si256(),
                                       _mm256_slli_epi32(_mm256_madd_epi16(_mm256_cvtepi8_epi16(scales), bs), 5));
        }
#pragma GCC unroll 2
        for (int j = 0, is = 0; j < QK_K / 128; j++, is += 4, q4 += 64, qh += 32) {
            const __m256i scale_0 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + 0)));
            const __m256i scale_1 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + 1)));
            const __m256i scale_2 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + 2)));
            const __m256i scale_3 = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(scales, scale_shuffle_q6(is + 3)));
            const __m256i q4bits1 = _mm256_loadu_si256((const __m256i*)q4);
            const __m256i q4bits2 = _mm256_loadu_si256((const __m256i*)(q4 + 32));
            const __m256i q4bitsH = _mm256_loadu_si256((const __m256i*)qh);
            // 2 high bits -> bits 4..5
            const __m256i q4h_0 = _mm256_slli_epi16(_mm256_and_si256(q4bitsH, m2), 4);
            const __m256i q4h_1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 2), m2), 4);
            const __m256i q4h_2 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 4), m2), 4);
            const __m256i q4h_3 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(q4bitsH, 6), m2), 4);
            // low 4 bits | high 2 bits -> 6-bit quants 0..63 (the offset is handled above)
            const __m256i q4_0 = _mm256_or_si256(_mm256_and_si256(q4bits1, m4), q4h_0);
            const __m256i q4_1 = _mm256_or_si256(_mm256_and_si256(q4bits2, m4), q4h_1);
            const __m256i q4_2 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits1, 4), m4), q4h_2);
            const __m256i q4_3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q4bits2, 4), m4), q4h_3);
#pragma GCC unroll 4
            for (int c = 0; c < RN; c++) {
                const int8_t* q8 = x[c][i].qs + 128 * j;
                // u8 x i8 -> int16 pairs (63 * 127 * 2 fits), times the 16-element sub-block scales -> int32
                const __m256i p0 = _mm256_madd_epi16(scale_0, _mm256_maddubs_epi16(q4_0, _mm256_loadu_si256((const __m256i*)q8)));
                const __m256i p1 = _mm256_madd_epi16(scale_1, _mm256_maddubs_epi16(q4_1, _mm256_loadu_si256((const __m256i*)(q8 + 32))));
                const __m256i p2 = _mm256_madd_epi16(scale_2, _mm256_maddubs_epi16(q4_2, _mm256_loadu_si256((const __m256i*)(q8 + 64))));
                const __m256i p3 = _mm256_madd_epi16(scale_3, _mm256_maddubs_epi16(q4_3, _mm256_loadu_si256((const __m256i*)(q8 + 96))));
                sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_add_epi32(p0, p1), _mm256_add_epi32(p2, p3)));
            }
        }
#pragma GCC unroll 4
        for (int c = 0; c < RN; c++) {
            acc[c] = _mm256_fmadd_ps(_mm256_set1_ps(x[c][i].d * wd), _mm256_cvtepi32_ps(sumi[c]), acc[c]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < RN; c++) out[c] = hsum_f32x8(acc[c]);
}

void vec_dot_q6_K_q8_K_avx2(int n, float* s, const void* vw, const void* vx) {
    const block_q8_K* x[1] = {(const block_q8_K*)vx};
    dot_q6_K_cols<1>(n, (const block_q6_K*)vw, x, s);
}

// ---- packed x8 layouts: 8 rows interleaved, one int32 lane per row ----
// pack() rearranges 8 plain rows so that one 32-byte load holds 4 consecutive quant bytes of each of
// the 8 rows (a "chunk": bytes 4j..4j+3 of a block, rows 0..7). a vpdpbusd (or maddubs + madd) of a
// chunk against 4 activation bytes broadcast to every lane adds 4 products to each row's lane: the
// 8 row sums come out in one vector, the 8 row scales load as one vector, and no horizontal sum is
// ever needed. a group takes exactly the bytes of its 8 plain rows.
//   q4_0 block (144 B): d[8] | 4 chunks: rows' qs[4j..4j+3] (low nibbles: elements 4j.., high: 16+4j..)
//   q4_1 block (160 B): d[8] | m[8] | 4 chunks as q4_0
//   q5_0 block (176 B): d[8] | hb: the 5th bits, one byte per chunk lane (row r, byte k: bit j = element
//     4j+k's, bit 4+j = element 16+4j+k's) | 4 chunks as q4_0 (q4_0 + the bits, shifted into place)
//   q8_0 block (272 B): d[8] | 8 chunks: rows' qs[4j..4j+3]
//   q4_K super-block (1152 B): d[8] | dmin[8] | scales as 3 x 8 uint32 (row r's scale bytes 0-3,
//     4-7, 8-11) | per 64-element group p: 8 chunks of rows' qs[32p+4j..] (low nibbles: sub-block
//     2p, high: 2p+1)
//   q6_K super-block (1680 B): d[8] | scales as 8 pairs x 8 rows x (sc[2k], sc[2k+1]) | per 16-element
//     sub-block s: ql A (chunk 0 low nibbles, chunk 1 high), ql B (chunks 2, 3), qh (2 bits per chunk,
//     chunk c at bits 2c..2c+1)
// the avx512 table packs q4_K and q6_K 16 rows a group (every field above 16 wide, 64-byte chunks:
// one zmm each); the others, and every type elsewhere, 8.
constexpr int PACK = 8;

// rows are plain blocks `ld` bytes apart; block b of row r
inline const uint8_t* row_block(const void* src, size_t ld, int r, size_t block_bytes, int64_t b) {
    return (const uint8_t*)src + r * ld + b * block_bytes;
}

// 4 bytes of each of the ROWS rows (at byte offset `off` of their block b) -> 4 * ROWS bytes
template <int ROWS = PACK>
inline void put_chunk(uint8_t* dst, const void* src, size_t ld, size_t block_bytes, int64_t b, size_t off) {
    for (int r = 0; r < ROWS; r++) memcpy(dst + 4 * r, row_block(src, ld, r, block_bytes, b) + off, 4);
}

// one field (2 bytes at `off`) of each of the ROWS rows -> 2 * ROWS bytes
template <int ROWS = PACK>
inline void put_half(uint8_t* dst, const void* src, size_t ld, size_t block_bytes, int64_t b, size_t off) {
    for (int r = 0; r < ROWS; r++) memcpy(dst + 2 * r, row_block(src, ld, r, block_bytes, b) + off, 2);
}

// q5_0's 5th bits (qh, element e = bit e) <-> the packed hb bytes of one row (see the layout above)
inline void q5_bits_pack(uint32_t qh, uint8_t hb[4]) {
    // bits 0, 4, 8, 12 of v -> bits 0..3: the four shifted copies of the product land on distinct bits
    // (no carries), and bits 12..15 hold v's bits 0, 4, 8, 12 in order
    auto gather4 = [](uint32_t v) { return (uint8_t)(((v & 0x1111) * 0x1248) >> 12 & 0xf); };
    for (int k = 0; k < 4; k++) hb[k] = (uint8_t)(gather4(qh >> k) | gather4(qh >> (16 + k)) << 4);
}
inline uint32_t q5_bits_unpack(const uint8_t hb[4]) {
    uint32_t qh = 0;
    for (int k = 0; k < 4; k++)
        for (int j = 0; j < 4; j++) qh |= (uint32_t)((hb[k] >> j) & 1) << (4 * j + k) | (uint32_t)((hb[k] >> (4 + j)) & 1) << (16 + 4 * j + k);
    return qh;
}

template <class WB>
void pack_q32(const void* src, size_t ld, void* vdst, int64_t rows, int64_t cols) {
    constexpr bool has_m = std::is_same<WB, block_q4_1>::value, q5 = std::is_same<WB, block_q5_0>::value;
    constexpr int qbytes = std::is_same<WB, block_q8_0>::value ? 32 : 16;
    const int64_t nb = cols / 32;
    uint8_t* dst = (uint8_t*)vdst;
    for (int64_t g = 0; g < rows / PACK; g++) {
        const uint8_t* s = (const uint8_t*)src + g * PACK * ld;
        for (int64_t b = 0; b < nb; b++) {
            put_half(dst, s, ld, sizeof(WB), b, 0), dst += 16;
            if (has_m) put_half(dst, s, ld, sizeof(WB), b, 2), dst += 16;
            if (q5) {
                for (int r = 0; r < PACK; r++) {
                    uint32_t qh;
                    memcpy(&qh, row_block(s, ld, r, sizeof(WB), b) + 2, 4);
                    q5_bits_pack(qh, dst + 4 * r);
                }
                dst += 32;
            }
            for (int j = 0; j < qbytes / 4; j++, dst += 32) put_chunk(dst, s, ld, sizeof(WB), b, offsetof(WB, qs) + 4 * j);
        }
    }
}

// q4_K in groups of ROWS rows (8: every x86 table; 16: avx512, one zmm per chunk), the layout above
// with every field ROWS wide: d[ROWS] | dmin[ROWS] | 3 scale chunks | 4 x 8 qs chunks
template <int ROWS>
void pack_q4_K(const void* src, size_t ld, void* vdst, int64_t rows, int64_t cols) {
    const int64_t nb = cols / QK_K;
    const size_t bb = sizeof(block_q4_K);
    uint8_t* dst = (uint8_t*)vdst;
    for (int64_t g = 0; g < rows / ROWS; g++) {
        const uint8_t* s = (const uint8_t*)src + g * ROWS * ld;
        for (int64_t b = 0; b < nb; b++) {
            put_half<ROWS>(dst, s, ld, bb, b, offsetof(block_q4_K, d)), dst += 2 * ROWS;
            put_half<ROWS>(dst, s, ld, bb, b, offsetof(block_q4_K, dmin)), dst += 2 * ROWS;
            for (int k = 0; k < 3; k++, dst += 4 * ROWS)
                put_chunk<ROWS>(dst, s, ld, bb, b, offsetof(block_q4_K, scales) + 4 * k);
            for (int p = 0; p < 4; p++)
                #pragma GCC unroll 8
                for (int j = 0; j < 8; j++, dst += 4 * ROWS)
                    put_chunk<ROWS>(dst, s, ld, bb, b, offsetof(block_q4_K, qs) + 32 * p + 4 * j);
        }
    }
}

// q6_K in groups of ROWS rows (8, or 16 on avx512): the layout above with every field ROWS wide
template <int ROWS>
void pack_q6_K(const void* src, size_t ld, void* vdst, int64_t rows, int64_t cols) {
    const int64_t nb = cols / QK_K;
    uint8_t* dst = (uint8_t*)vdst;
    for (int64_t g = 0; g < rows / ROWS; g++) {
        const uint8_t* s = (const uint8_t*)src + g * ROWS * ld;
        for (int64_t b = 0; b < nb; b++) {
            const block_q6_K* rb[ROWS];
            for (int r = 0; r < ROWS; r++) rb[r] = (const block_q6_K*)row_block(s, ld, r, sizeof(block_q6_K), b);
            for (int r = 0; r < ROWS; r++) memcpy(dst + 2 * r, &rb[r]->d, 2);
            dst += 2 * ROWS;
            #pragma GCC unroll 8
            for (int k = 0; k < 8; k++)
                for (int r = 0; r < ROWS; r++, dst += 2) dst[0] = rb[r]->scales[2 * k], dst[1] = rb[r]->scales[2 * k + 1];
            for (int sb = 0; sb < 16; sb++) {
                // element e of the super-block: 6 bits from (ql, qh) as in to_float_q6_K_generic
                #pragma GCC unroll 8
                for (int c = 0; c < 4; c++)
                    for (int r = 0; r < ROWS; r++)
                        #pragma GCC unroll 8
                        for (int i = 0; i < 4; i++) {
                            const int e = 16 * sb + 4 * c + i, h = e / 128, l = e % 32, quarter = (e % 128) / 32;
                            const uint8_t* ql = rb[r]->ql + 64 * h;
                            const uint8_t qlb = ql[l + (quarter & 1) * 32];
                            const int lo = quarter < 2 ? (qlb & 0xf) : (qlb >> 4);
                            const int hi = (rb[r]->qh[32 * h + l] >> (2 * quarter)) & 3;
                            uint8_t* a = dst + (c < 2 ? 0 : 4 * ROWS) + 4 * r + i;     // ql A / B
                            if (c % 2 == 0) *a = (uint8_t)lo; else *a |= (uint8_t)(lo << 4);
                            uint8_t* q = dst + 8 * ROWS + 4 * r + i;                   // qh
                            if (c == 0) *q = 0;
                            *q |= (uint8_t)(hi << (2 * c));
                        }
                dst += 12 * ROWS;
            }
        }
    }
}

// packed row r -> its plain blocks, then the generic dequantization (to_float), so a looked-up row
// equals the plain row's. the inverse of each pack_* above.
template <class WB>
void unpack_q32_row(const uint8_t* g, int r, int64_t nb, WB* out) {
    constexpr bool has_m = std::is_same<WB, block_q4_1>::value, q5 = std::is_same<WB, block_q5_0>::value;
    constexpr int qbytes = std::is_same<WB, block_q8_0>::value ? 32 : 16;
    for (int64_t b = 0; b < nb; b++, g += 8 * sizeof(WB)) {
        uint8_t* o = (uint8_t*)&out[b];
        memcpy(o, g + 2 * r, 2);
        if (has_m) memcpy(o + 2, g + 16 + 2 * r, 2);
        if (q5) {
            const uint32_t qh = q5_bits_unpack(g + 16 + 4 * r);
            memcpy(o + 2, &qh, 4);
        }
        const uint8_t* q = g + (q5 ? 48 : has_m ? 32 : 16);
        for (int j = 0; j < qbytes / 4; j++) memcpy(o + offsetof(WB, qs) + 4 * j, q + 32 * j + 4 * r, 4);
    }
}

template <class WB>
void packed_row_q32(const void* group, int r, int64_t cols, float* dst) {
    std::vector<WB> row(cols / 32);
    unpack_q32_row((const uint8_t*)group, r, cols / 32, row.data());
    constexpr GType ty = std::is_same<WB, block_q4_0>::value   ? GT_Q4_0
                         : std::is_same<WB, block_q4_1>::value ? GT_Q4_1
                         : std::is_same<WB, block_q5_0>::value ? GT_Q5_0
                                                               : GT_Q8_0;
    kernels_generic().types[ty].to_float(row.data(), dst, cols);
}

template <int ROWS>
void packed_row_q4_K(const void* group, int r, int64_t cols, float* dst) {
    std::vector<block_q4_K> row(cols / QK_K);
    const uint8_t* g = (const uint8_t*)group;
    for (size_t b = 0; b < row.size(); b++, g += ROWS * sizeof(block_q4_K)) {
        memcpy(&row[b].d, g + 2 * r, 2);
        memcpy(&row[b].dmin, g + 2 * ROWS + 2 * r, 2);
        for (int k = 0; k < 3; k++) memcpy(row[b].scales + 4 * k, g + 4 * ROWS * (1 + k) + 4 * r, 4);
        for (int p = 0; p < 4; p++)
            for (int j = 0; j < 8; j++)
                memcpy(row[b].qs + 32 * p + 4 * j, g + 4 * ROWS * (4 + 8 * p + j) + 4 * r, 4);
    }
    kernels_generic().types[GT_Q4_K].to_float(row.data(), dst, cols);
}

// q6_K: the 6-bit values of row r straight from the packed sub-blocks, times d * scale (as
// to_float_q6_K_generic computes them: d * sc * (q - 32) in float, in that order)
template <int ROWS>
void packed_row_q6_K(const void* group, int r, int64_t cols, float* dst) {
    const uint8_t* g = (const uint8_t*)group;
    for (int64_t b = 0; b < cols / QK_K; b++, g += ROWS * sizeof(block_q6_K), dst += QK_K) {
        half dh;
        memcpy(&dh, g + 2 * r, 2);
        const float d = fp16_to_fp32(dh);
        for (int sb = 0; sb < 16; sb++) {
            const int8_t sc = (int8_t)g[2 * ROWS + 2 * ROWS * (sb / 2) + 2 * r + sb % 2];
            const uint8_t* q = g + 18 * ROWS + 12 * ROWS * sb;
            for (int c = 0; c < 4; c++)
                for (int i = 0; i < 4; i++) {
                    const uint8_t a = q[(c < 2 ? 0 : 4 * ROWS) + 4 * r + i];
                    const int lo = c % 2 ? a >> 4 : a & 0xf, hi = (q[8 * ROWS + 4 * r + i] >> (2 * c)) & 3;
                    dst[16 * sb + 4 * c + i] = d * sc * ((lo | hi << 4) - 32);
                }
        }
    }
}


inline __m256i low_nibbles(__m256i v) { return _mm256_and_si256(v, _mm256_set1_epi8(0x0f)); }
inline __m256i high_nibbles(__m256i v) { return _mm256_and_si256(_mm256_srli_epi16(v, 4), _mm256_set1_epi8(0x0f)); }

// the widest column tile of the packed gemms: 8 on every table. 32 registers (avx512vl) hold 8 columns'
// accumulators, 16 (avx2, avx-vnni) do not, yet the weight unpacking shared by twice the columns beats
// the spills there too. 8 / 4 columns, 2048 x 2048 weights times 64 columns in 128-row gemm_packed calls
// (as model.cpp's prefill tasks), best of 8 alternating single-thread runs, sapphire rapids: avx2 q4_0
// 1.01x, q4_1 1.12x, q8_0 1.05x, q4_K 1.08x, q6_K 1.16x; avxvnni q4_0 1.17x, q4_K 1.04x, q6_K 1.10x
// (q4_K walks one sub-block at a time at 8 columns: 8 dot chains)
constexpr int MAX_RN = 8;

// every ROWS-row group x column tile of a packed gemm call, widest tiles first:
// run(std::integral_constant<int, RN>, group start, first column, the group's y)
template <int ROWS = PACK, class RUN>
inline void packed_tiles(int nr, int nc, const void* w, size_t ldw, float* y, RUN&& run) {
    for (int g = 0; g < nr / ROWS; g++) {
        const uint8_t* wg = (const uint8_t*)w + (size_t)g * ROWS * ldw;
        float* yg = y + g * ROWS;
        int c0 = 0;
        for (; c0 + MAX_RN <= nc; c0 += MAX_RN) run(std::integral_constant<int, MAX_RN>(), wg, c0, yg);
        for (; c0 + 2 <= nc; c0 += 2) run(std::integral_constant<int, 2>(), wg, c0, yg);
        for (; c0 < nc; c0++) run(std::integral_constant<int, 1>(), wg, c0, yg);  // decode: one column
    }
}

// per-call column data, computed once for all row groups of a gemm call (thread_local scratch)
struct PackScratch {
    std::vector<float> d;      // (column, block) activation scale
    std::vector<float> s;      // (column, block) q4_1: q8_1's s; q4_0 (q5_0): 8 (16) * sum(q) as exact float
    std::vector<int32_t> sp;   // (column, super-block, 4) q4_K: pairs of 32-element sums as int16 x2
};
thread_local PackScratch pscratch;

// q4_0 / q4_1 / q5_0 / q8_0: 8 rows x RN columns over all blocks
template <class WB, int RN>
void tile_q32(int nb, const uint8_t* wg, const int8_t* const xq[RN], size_t xstride, const float* cd,
              const float* cs, float* y, size_t ldy) {
    constexpr bool q4_1 = std::is_same<WB, block_q4_1>::value, q8 = std::is_same<WB, block_q8_0>::value;
    constexpr bool q5 = std::is_same<WB, block_q5_0>::value;
    constexpr size_t head = q4_1 ? 32 : q5 ? 48 : 16, block = 8 * sizeof(WB);
    __m256 acc[RN];
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) acc[c] = _mm256_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const uint8_t* blk = wg + b * block;
        __m256i sum[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) sum[c] = _mm256_setzero_si256();
        if constexpr (q8) {
            #pragma GCC unroll 8
            for (int j = 0; j < 8; j++) {
                const __m256i w = _mm256_loadu_si256((const __m256i*)(blk + head + 32 * j));
                const __m256i a = _mm256_sign_epi8(w, w);  // |w|; w's sign moves onto x
                #pragma GCC unroll 8
                for (int c = 0; c < RN; c++) {
                    const __m256i xs = _mm256_sign_epi8(bcast4(xq[c] + b * xstride + 4 * j), w);
#if EC_X86_VNNI
                    sum[c] = dpbusd(sum[c], a, xs);
#else
                    sum[c] = _mm256_add_epi32(sum[c], widen_sum(_mm256_maddubs_epi16(a, xs)));  // 2*127*127 fits int16
#endif
                }
            }
        } else {
#if !EC_X86_VNNI
            __m256i s16[RN];   // int16 pair sums: 8 maddubs of 2 * 15 * 127 stay below 32768; q5_0's
                               // 2 * 31 * 127 only 4, so it widens every 2 chunks
            #pragma GCC unroll 8
            for (int c = 0; c < RN; c++) s16[c] = _mm256_setzero_si256();
#endif
            const __m256i hb = q5 ? _mm256_loadu_si256((const __m256i*)(blk + 16)) : _mm256_setzero_si256();
            #pragma GCC unroll 8
            for (int j = 0; j < 4; j++) {
                const __m256i w = _mm256_loadu_si256((const __m256i*)(blk + head + 32 * j));
                __m256i lo = low_nibbles(w), hi = high_nibbles(w);   // elements 4j.. and 16+4j..
                if constexpr (q5) {   // their 5th bits: bit j and 4 + j of each hb byte, to bit 4
                    const __m256i b4 = _mm256_set1_epi8(0x10);
                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4 - j), b4));
                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_srli_epi16(hb, j), b4));
                }
                #pragma GCC unroll 8
                for (int c = 0; c < RN; c++) {
                    const int8_t* x = xq[c] + b * xstride;
#if EC_X86_VNNI
                    sum[c] = dpbusd(dpbusd(sum[c], lo, bcast4(x + 4 * j)), hi, bcast4(x + 16 + 4 * j));
#else
                    s16[c] = _mm256_add_epi16(s16[c], _mm256_add_epi16(_mm256_maddubs_epi16(lo, bcast4(x + 4 * j)),
                                                                       _mm256_maddubs_epi16(hi, bcast4(x + 16 + 4 * j))));
                    in_register(s16[c]);
                    if (q5 ? j % 2 == 1 : j == 3) {
                        sum[c] = _mm256_add_epi32(sum[c], widen_sum(s16[c]));
                        s16[c] = _mm256_setzero_si256();
                    }
#endif
                }
            }
        }
        const __m256 dw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)blk));
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            const float dx = cd[c * nb + b];
            __m256 p = _mm256_cvtepi32_ps(sum[c]);
            if constexpr (!q4_1 && !q8) p = _mm256_sub_ps(p, _mm256_set1_ps(cs[c * nb + b]));  // q - 8 (16): exact ints
            acc[c] = _mm256_fmadd_ps(p, _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc[c]);
            if constexpr (q4_1) {  // + m * s
                const __m256 mw = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)(blk + 16)));
                acc[c] = _mm256_fmadd_ps(mw, _mm256_set1_ps(cs[c * nb + b]), acc[c]);
            }
        }
    }
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) _mm256_storeu_ps(y + c * ldy, acc[c]);
}

template <class WB>
void prep_q32(int nb, int nc, const void* x, size_t ldx) {
    using XB = std::conditional_t<std::is_same<WB, block_q4_1>::value, block_q8_1, block_q8_0>;
    PackScratch& sc = pscratch;
    sc.d.resize((size_t)nc * nb);
    sc.s.resize((size_t)nc * nb);
    for (int c = 0; c < nc; c++) {
        const XB* xb = (const XB*)((const char*)x + c * ldx);
        for (int b = 0; b < nb; b++) {
            sc.d[c * nb + b] = h2f(xb[b].d);
            if constexpr (std::is_same<XB, block_q8_1>::value) {
                sc.s[c * nb + b] = h2f(xb[b].s);
            } else {
                // 8 (q5_0: 16) * sum(q): the q4_0 (q5_0) offset, an exact integer (|16 * 32 * 127| < 2^24)
                const __m256i q = _mm256_loadu_si256((const __m256i*)xb[b].qs);
                constexpr float off = std::is_same<WB, block_q5_0>::value ? 16.0f : 8.0f;
                sc.s[c * nb + b] = off * hsum_i32x8(widen_sum(_mm256_maddubs_epi16(_mm256_set1_epi8(1), q)));
            }
        }
    }
}

template <class WB>
void gemm_packed_q32(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx, float* y,
                     size_t ldy) {
    using XB = std::conditional_t<std::is_same<WB, block_q4_1>::value, block_q8_1, block_q8_0>;
    const int nb = n / 32;
    prep_q32<WB>(nb, nc, x, ldx);
    auto run = [&](auto rn, const uint8_t* wg, int c0, float* yg) {
        constexpr int RN = decltype(rn)::value;
        const int8_t* q[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) q[c] = ((const XB*)((const char*)x + (c0 + c) * ldx))->qs;
        tile_q32<WB, RN>(nb, wg, q, sizeof(XB), pscratch.d.data() + c0 * nb, pscratch.s.data() + c0 * nb,
                         yg + c0 * ldy, ldy);
    };
    packed_tiles(nr, nc, w, ldw, y, run);
}

// ---- q4_K x8 (ymm) and x16 (zmm, avx512) ----

// the vector ops of the q4_K tile at one width: Ymm (8 rows, every table) and, on avx512, Zmm (16
// rows: a zmm vpdpbusd does two ymm's work a cycle on cpus with two 512-bit units, as sapphire
// rapids; zen 4 splits it in two, which costs it nothing)
struct Ymm {
    static constexpr int ROWS = 8;
    static constexpr bool VNNI = EC_X86_VNNI != 0;
    using I = __m256i;
    using F = __m256;
    static I load(const uint8_t* p) { return _mm256_loadu_si256((const __m256i*)p); }
    static I zero() { return _mm256_setzero_si256(); }
    static I set1(int32_t v) { return _mm256_set1_epi32(v); }
    static I and_(I a, I b) { return _mm256_and_si256(a, b); }
    static I or_(I a, I b) { return _mm256_or_si256(a, b); }
    static I srl32(I a, int n) { return _mm256_srli_epi32(a, n); }
    static I sll32(I a, int n) { return _mm256_slli_epi32(a, n); }
    static I add32(I a, I b) { return _mm256_add_epi32(a, b); }
    static I madd16(I a, I b) { return _mm256_madd_epi16(a, b); }
    static I sub32(I a, I b) { return _mm256_sub_epi32(a, b); }
    static I sra32(I a, int n) { return _mm256_srai_epi32(a, n); }
    static I srl16(I a, int n) { return _mm256_srli_epi16(a, n); }
    static I sll16(I a, int n) { return _mm256_slli_epi16(a, n); }
    static I i8_to_i16(const uint8_t* p) { return _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i*)p)); }
    static I lo_nibbles(I v) { return low_nibbles(v); }
    static I hi_nibbles(I v) { return high_nibbles(v); }
    // acc += the dots of u with 4 activation bytes in every lane (int32 with vnni, else int16 pairs:
    // 8 * 2 * 15 * 127 < 32768, so one 64-element group's 8 chunks fit)
    static I dot(I acc, I u, const int8_t* x) {
#if EC_X86_VNNI
        return dpbusd(acc, u, bcast4(x));
#else
        acc = _mm256_add_epi16(acc, _mm256_maddubs_epi16(u, bcast4(x)));
        in_register(acc);
        return acc;
#endif
    }
    // a dot sum times the sub-block scale s32 (int32 per row, < 64) as int32
    static I scaled(I d, I s32) {
#if EC_X86_VNNI
        return _mm256_mullo_epi32(d, s32);
#else
        return _mm256_madd_epi16(d, _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)));  // scale in both int16 halves
#endif
    }
    static F halves(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i*)p)); }
    static F fzero() { return _mm256_setzero_ps(); }
    static F fset1(float v) { return _mm256_set1_ps(v); }
    static F to_f(I v) { return _mm256_cvtepi32_ps(v); }
    static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
    static F fmadd(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
    static F fnmadd(F a, F b, F c) { return _mm256_fnmadd_ps(a, b, c); }
    static void store(float* y, F v) { _mm256_storeu_ps(y, v); }
};

#if EC_X86_VNNI == 2
struct Zmm {
    static constexpr int ROWS = 16;
    static constexpr bool VNNI = true;
    using I = __m512i;
    using F = __m512;
    static I load(const uint8_t* p) { return _mm512_loadu_si512((const void*)p); }
    static I zero() { return _mm512_setzero_si512(); }
    static I set1(int32_t v) { return _mm512_set1_epi32(v); }
    static I and_(I a, I b) { return _mm512_and_si512(a, b); }
    static I or_(I a, I b) { return _mm512_or_si512(a, b); }
    static I srl32(I a, int n) { return _mm512_srli_epi32(a, n); }
    static I sll32(I a, int n) { return _mm512_slli_epi32(a, n); }
    static I add32(I a, I b) { return _mm512_add_epi32(a, b); }
    static I madd16(I a, I b) { return _mm512_madd_epi16(a, b); }
    static I sub32(I a, I b) { return _mm512_sub_epi32(a, b); }
    static I sra32(I a, int n) { return _mm512_srai_epi32(a, n); }
    static I srl16(I a, int n) { return _mm512_srli_epi16(a, n); }
    static I sll16(I a, int n) { return _mm512_slli_epi16(a, n); }
    static I i8_to_i16(const uint8_t* p) { return _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i*)p)); }
    static I lo_nibbles(I v) { return _mm512_and_si512(v, _mm512_set1_epi8(0x0f)); }
    static I hi_nibbles(I v) { return _mm512_and_si512(_mm512_srli_epi16(v, 4), _mm512_set1_epi8(0x0f)); }
    static I dot(I acc, I u, const int8_t* x) {
        int32_t v;
        memcpy(&v, x, 4);
        return _mm512_dpbusd_epi32(acc, u, _mm512_set1_epi32(v));
    }
    static I scaled(I d, I s32) { return _mm512_mullo_epi32(d, s32); }
    static F halves(const uint8_t* p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i*)p)); }
    static F fzero() { return _mm512_setzero_ps(); }
    static F fset1(float v) { return _mm512_set1_ps(v); }
    static F to_f(I v) { return _mm512_cvtepi32_ps(v); }
    static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
    static F fmadd(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
    static F fnmadd(F a, F b, F c) { return _mm512_fnmadd_ps(a, b, c); }
    static void store(float* y, F v) { _mm512_storeu_ps(y, v); }
};
using KWide = Zmm;    // the q4_K and q6_K packed layout of this table
#else
using KWide = Ymm;
#endif

// 6-bit scales and mins of the group's rows (lanes) from the 3 packed uint32 chunks (as
// get_scale_min_k4): sc[0] bytes = scales 0..3, sc[1] = 4..7, mn[0] = mins 0..3, mn[1] = 4..7
template <class V>
inline void q4_K_scales(const uint8_t* p, typename V::I sc[2], typename V::I mn[2]) {
    using I = typename V::I;
    const I u0 = V::load(p), u1 = V::load(p + 4 * V::ROWS), u2 = V::load(p + 8 * V::ROWS);
    const I m6 = V::set1(0x3f3f3f3f), m4 = V::set1(0x0f0f0f0f), m2 = V::set1(0x03030303);
    sc[0] = V::and_(u0, m6);
    mn[0] = V::and_(u1, m6);
    // high 2 bits of scales / mins 4..7 sit in the top bits of bytes 0..3 / 4..7
    sc[1] = V::or_(V::and_(u2, m4), V::sll32(V::and_(V::srl32(u0, 6), m2), 4));
    mn[1] = V::or_(V::and_(V::srl32(u2, 4), m4), V::sll32(V::and_(V::srl32(u1, 6), m2), 4));
}

// byte k of each lane as int32
template <class V>
inline typename V::I lane_byte(typename V::I v, int k) { return V::and_(V::srl32(v, 8 * k), V::set1(0xff)); }

// bytes (2k, 2k+1) of each lane as an int16 pair (for madd against a pair of activation sums)
template <class V>
inline typename V::I lane_byte_pair(typename V::I v, int k) {
    return V::or_(lane_byte<V>(v, 2 * k), V::sll32(lane_byte<V>(v, 2 * k + 1), 16));
}

// int32 row sums += the dots of one 64-element group (8 chunks: low nibbles = sub-block a, high =
// sub-block b) with the activation (x at the group's start), each times its sub-block scale
// (int32 per row, < 64). HALVES = 2 walks the chunks once for both sub-blocks (two independent dot
// chains per column: short tiles); 1 walks them twice, one sub-block at a time (fewer live registers
// for wide tiles)
template <class V, int RN, int HALVES>
inline void q4_K_group(const uint8_t* q, const int8_t* const x[RN], typename V::I sa, typename V::I sb,
                       typename V::I sumi[RN]) {
    using I = typename V::I;
    #pragma GCC unroll 8
    for (int half = 0; half < 3 - HALVES; half++) {
        I da[RN], db[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) da[c] = db[c] = V::zero();
        #pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const I v = V::load(q + 4 * V::ROWS * j);
            #pragma GCC unroll 8
            for (int c = 0; c < RN; c++) {
                if (HALVES == 2 || half == 0) da[c] = V::dot(da[c], V::lo_nibbles(v), x[c] + 4 * j);
                if (HALVES == 2 || half == 1) db[c] = V::dot(db[c], V::hi_nibbles(v), x[c] + 32 + 4 * j);
            }
        }
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            if (HALVES == 2 || half == 0) sumi[c] = V::add32(sumi[c], V::scaled(da[c], sa));
            if (HALVES == 2 || half == 1) sumi[c] = V::add32(sumi[c], V::scaled(db[c], sb));
        }
    }
}

template <class V, int RN>
void tile_q4_K(int nb, const uint8_t* wg, const block_q8_K* const xb[RN], const int32_t* sp, float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::ROWS;
    F acc[RN];
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) acc[c] = V::fzero();
    for (int b = 0; b < nb; b++) {
        const uint8_t* blk = wg + (size_t)b * R * sizeof(block_q4_K);
        I sc[2], mn[2];
        q4_K_scales<V>(blk + 4 * R, sc, mn);
        I sumi[RN], summ[RN];
        const int8_t* x[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            sumi[c] = summ[c] = V::zero();
            x[c] = xb[c][b].qs;
        }
        // mins: sum over sub-blocks of m * (activation sum of the sub-block), by int16 pairs
        #pragma GCC unroll 8
        for (int k = 0; k < 4; k++) {
            const I mp = lane_byte_pair<V>(mn[k / 2], k % 2);
            #pragma GCC unroll 8
            for (int c = 0; c < RN; c++)
                summ[c] = V::add32(summ[c], V::madd16(mp, V::set1(sp[(c * nb + b) * 4 + k])));
        }
        const uint8_t* q = blk + 16 * R;
        for (int p = 0; p < 4; p++, q += 32 * R) {
            const int8_t* xp[RN];
            #pragma GCC unroll 8
            for (int c = 0; c < RN; c++) xp[c] = x[c] + 64 * p;
            const I sa = lane_byte<V>(sc[p / 2], (2 * p) % 4), sb = lane_byte<V>(sc[p / 2], (2 * p + 1) % 4);
            q4_K_group<V, RN, (RN <= 4 ? 2 : 1)>(q, xp, sa, sb, sumi);
        }
        const F d = V::halves(blk), dmin = V::halves(blk + 2 * R);
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            const F dx = V::fset1(xb[c][b].d);
            acc[c] = V::fmadd(V::mul(d, dx), V::to_f(sumi[c]), acc[c]);
            acc[c] = V::fnmadd(V::mul(dmin, dx), V::to_f(summ[c]), acc[c]);
        }
    }
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) V::store(y + c * ldy, acc[c]);
}

// q8_K activation: per super-block, the 8 sums of 32 (bsums pairs) as 4 int16 pairs
void prep_q8_K_pairs(int nb, int nc, const void* x, size_t ldx) {
    std::vector<int32_t>& sp = pscratch.sp;
    sp.resize((size_t)nc * nb * 4);
    for (int c = 0; c < nc; c++) {
        const block_q8_K* xb = (const block_q8_K*)((const char*)x + c * ldx);
        for (int b = 0; b < nb; b++)
            #pragma GCC unroll 8
            for (int k = 0; k < 4; k++) {
                const int16_t* bs = xb[b].bsums + 4 * k;  // sub-blocks 2k, 2k+1 = bsums 4k..4k+3
                const uint16_t s0 = (uint16_t)(bs[0] + bs[1]), s1 = (uint16_t)(bs[2] + bs[3]);
                sp[((size_t)c * nb + b) * 4 + k] = (int32_t)((uint32_t)s0 | ((uint32_t)s1 << 16));
            }
    }
}

// ---- q6_K x8 ----

template <class V, int RN>
void tile_q6_K(int nb, const uint8_t* wg, const block_q8_K* const xb[RN], float* y, size_t ldy) {
    using I = typename V::I;
    using F = typename V::F;
    constexpr int R = V::ROWS;
    const I m4 = V::set1(0x0f0f0f0f), m30 = V::set1(0x30303030);
    F acc[RN];
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) acc[c] = V::fzero();
    for (int b = 0; b < nb; b++) {
        const uint8_t* blk = wg + (size_t)b * R * sizeof(block_q6_K);
        I sumi[RN], off[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) sumi[c] = off[c] = V::zero();
        const uint8_t* q = blk + 18 * R;
        #pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            // row r: (sc[2k], sc[2k+1]) as an int16 pair
            const I scp = V::i8_to_i16(blk + 2 * R + 2 * R * k);
            #pragma GCC unroll 8
            for (int c = 0; c < RN; c++) {   // the -32 offset: sum of sc * bsum, by pairs
                int32_t bsp;
                memcpy(&bsp, xb[c][b].bsums + 2 * k, 4);
                off[c] = V::add32(off[c], V::madd16(scp, V::set1(bsp)));
            }
            #pragma GCC unroll 8
            for (int h = 0; h < 2; h++, q += 12 * R) {
                const int sb = 2 * k + h;
                const I a = V::load(q), bq = V::load(q + 4 * R), qh = V::load(q + 8 * R);
                // 4 bits | 2 bits << 4 -> 0..63, chunk by chunk
                const I u0 = V::or_(V::and_(a, m4), V::and_(V::sll16(qh, 4), m30));
                const I u1 = V::or_(V::and_(V::srl16(a, 4), m4), V::and_(V::sll16(qh, 2), m30));
                const I u2 = V::or_(V::and_(bq, m4), V::and_(qh, m30));
                const I u3 = V::or_(V::and_(V::srl16(bq, 4), m4), V::and_(V::srl16(qh, 2), m30));
                if constexpr (V::VNNI) {
                    const I s32 = h ? V::sra32(scp, 16) : V::sra32(V::sll32(scp, 16), 16);
                    #pragma GCC unroll 8
                    for (int c = 0; c < RN; c++) {
                        const int8_t* x = xb[c][b].qs + 16 * sb;
                        const I d = V::dot(V::dot(V::dot(V::dot(V::zero(), u0, x), u1, x + 4), u2, x + 8), u3, x + 12);
                        sumi[c] = V::add32(sumi[c], V::scaled(d, s32));
                    }
                } else {
                    const I s16 = h ? _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(scp, 0xf5), 0xf5)
                                    : _mm256_shufflehi_epi16(_mm256_shufflelo_epi16(scp, 0xa0), 0xa0);
                    #pragma GCC unroll 8
                    for (int c = 0; c < RN; c++) {
                        const int8_t* x = xb[c][b].qs + 16 * sb;
                        // two maddubs of 2 * 63 * 127 each fit int16, four do not
                        const I d01 = _mm256_add_epi16(_mm256_maddubs_epi16(u0, bcast4(x)), _mm256_maddubs_epi16(u1, bcast4(x + 4)));
                        const I d23 = _mm256_add_epi16(_mm256_maddubs_epi16(u2, bcast4(x + 8)), _mm256_maddubs_epi16(u3, bcast4(x + 12)));
                        sumi[c] = _mm256_add_epi32(sumi[c], _mm256_add_epi32(_mm256_madd_epi16(d01, s16), _mm256_madd_epi16(d23, s16)));
                        in_register(sumi[c]);
                    }
                }
            }
        }
        const F d = V::halves(blk);
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) {
            const I t = V::sub32(sumi[c], V::sll32(off[c], 5));  // - 32 * sum sc * bsum
            acc[c] = V::fmadd(V::mul(d, V::fset1(xb[c][b].d)), V::to_f(t), acc[c]);
        }
    }
    #pragma GCC unroll 8
    for (int c = 0; c < RN; c++) V::store(y + c * ldy, acc[c]);
}

template <GType T>
void gemm_packed_k(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx, float* y, size_t ldy) {
    const int nb = n / QK_K;
    if (T == GT_Q4_K) prep_q8_K_pairs(nb, nc, x, ldx);
    const int32_t* sp = pscratch.sp.data();
    auto run = [&](auto rn, const uint8_t* wg, int c0, float* yg) {
        constexpr int RN = decltype(rn)::value;
        const block_q8_K* xb[RN];
        #pragma GCC unroll 8
        for (int c = 0; c < RN; c++) xb[c] = (const block_q8_K*)((const char*)x + (c0 + c) * ldx);
        if constexpr (T == GT_Q4_K) tile_q4_K<KWide, RN>(nb, wg, xb, sp + (size_t)c0 * nb * 4, yg + c0 * ldy, ldy);
        else tile_q6_K<KWide, RN>(nb, wg, xb, yg + c0 * ldy, ldy);
    };
    packed_tiles<KWide::ROWS>(nr, nc, w, ldw, y, run);
}

// ---- table ----

KernelTable make_x86_table() {
    KernelTable t = kernels_generic();  // anything not overridden stays generic
    t.isa = EC_X86_ISA;
    fill_f16_table();
    t.types[GT_F32].vec_dot = vec_dot_f32_f32_avx2;
    t.types[GT_F16].vec_dot = vec_dot_f16_f32_avx2;
    t.types[GT_F32].gemm = gemm_by_vec_dot<vec_dot_f32_f32_avx2>;
    t.types[GT_F16].gemm = gemm_by_vec_dot<vec_dot_f16_f32_avx2>;

    t.types[GT_Q8_0].from_float = from_float_q8_0_avx2;
    t.types[GT_Q8_1].from_float = from_float_q8_1_avx2;
    t.types[GT_Q8_K].from_float = from_float_q8_K_avx2;

    t.types[GT_Q4_0].vec_dot = vec_dot_q32<Q4_0>;
    t.types[GT_Q4_1].vec_dot = vec_dot_q4_1_q8_1_avx2;
    t.types[GT_Q5_0].vec_dot = vec_dot_q32<Q5_0>;
    t.types[GT_Q8_0].vec_dot = vec_dot_q32<Q8_0>;
    t.types[GT_Q4_0].gemm = gemm_q32<Q4_0>;
    t.types[GT_Q4_1].gemm = gemm_q32<Q4_1>;
    t.types[GT_Q5_0].gemm = gemm_q32<Q5_0>;
    t.types[GT_Q8_0].gemm = gemm_q32<Q8_0>;

    t.types[GT_Q4_K].vec_dot = vec_dot_q4_K_q8_K_avx2;
    t.types[GT_Q6_K].vec_dot = vec_dot_q6_K_q8_K_avx2;
    t.types[GT_Q4_K].gemm = gemm_k_rows<block_q4_K, dot_q4_K_cols<4>, dot_q4_K_cols<1>>;
    t.types[GT_Q6_K].gemm = gemm_k_rows<block_q6_K, dot_q6_K_cols<4>, dot_q6_K_cols<1>>;

    auto packed = [&](GType ty, auto pack, auto gemm, auto row, int rows = PACK) {
        t.types[ty].pack_rows = rows;
        t.types[ty].pack = pack;
        t.types[ty].gemm_packed = gemm;
        t.types[ty].packed_row_to_float = row;
    };
    packed(GT_Q4_0, pack_q32<block_q4_0>, gemm_packed_q32<block_q4_0>, packed_row_q32<block_q4_0>);
    packed(GT_Q4_1, pack_q32<block_q4_1>, gemm_packed_q32<block_q4_1>, packed_row_q32<block_q4_1>);
    packed(GT_Q5_0, pack_q32<block_q5_0>, gemm_packed_q32<block_q5_0>, packed_row_q32<block_q5_0>);
    packed(GT_Q8_0, pack_q32<block_q8_0>, gemm_packed_q32<block_q8_0>, packed_row_q32<block_q8_0>);
    packed(GT_Q4_K, pack_q4_K<KWide::ROWS>, gemm_packed_k<GT_Q4_K>, packed_row_q4_K<KWide::ROWS>, KWide::ROWS);
    packed(GT_Q6_K, pack_q6_K<KWide::ROWS>, gemm_packed_k<GT_Q6_K>, packed_row_q6_K<KWide::ROWS>, KWide::ROWS);

    t.dot_f16_f32 = dot_f16_f32_avx2;
    t.axpy_f16_f32 = axpy_f16_f32_avx2;
    t.scores_f16 = scores_f16_avx2;
    t.wsum_f16 = wsum_f16_avx2;
    t.scores_f16_g = scores_f16_g_avx2;
    t.wsum_f16_g = wsum_f16_g_avx2;
    t.kv_quantize_q8 = kv_quantize_q8_avx2;
    t.scores_q8_g = scores_q8_g_avx2;
    t.wsum_q8_g = wsum_q8_g_avx2;
    t.exp_sum = exp_sum_avx2;
    t.silu_mul = silu_mul_avx2;
    t.max_f32 = max_f32_avx2;
    t.f32_to_f16 = f32_to_f16_avx2;
    t.f16_to_f32 = f16_to_f32_avx2;
    return t;
}

}  // namespace

const KernelTable* EC_X86_TABLE() {
    static const KernelTable table = make_x86_table();
    return &table;
}

}  // namespace ec

#endif  // __x86_64__
