// helpers shared by the kernel files (generic.cpp, the x86 files, arm_neon.cpp); not part of the api.
// everything here has internal linkage: each file is compiled with its own isa flags, and a shared
// inline symbol could otherwise be resolved to another file's (e.g. avx2) copy.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <cstring>
#include <algorithm>
#include <vector>

#include "../blocks.h"
#include "kernels.h"

namespace ec {
namespace {

using VecDotFn = void (*)(int n, float* s, const void* w, const void* x);

// gemm as one vec_dot per (row, column): y[c * ldy + r] = dot(w row r, x column c)
template <VecDotFn DOT>
void gemm_by_vec_dot(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx,
                     float* y, size_t ldy) {
    for (int c = 0; c < nc; c++) {
        for (int r = 0; r < nr; r++) {
            DOT(n, &y[c * ldy + r], (const char*)w + r * ldw, (const char*)x + c * ldx);
        }
    }
}

// attention runs row by row through a dot / axpy kernel: the generic tables, and the head sizes an ISA
// has no register path for (their scores_f16_g / wsum_f16_g)
template <float (*DOT)(int, const half*, const float*)>
void scores_by_dot(int n, int hd, const half* k, size_t ld, const float* q, float* s) {
    for (int j = 0; j < n; j++) s[j] = DOT(hd, k + (size_t)j * ld, q);
}

template <void (*AXPY)(int, float, const half*, float*)>
void wsum_by_axpy(int n, int hd, const float* w, const half* v, size_t ld, float* y) {
    for (int j = 0; j < n; j++) AXPY(hd, w[j], v + (size_t)j * ld, y);
}

// grouped-query runs as G single-query runs (the generic tables; any table without its own)
template <void (*SCORES)(int, int, const half*, size_t, const float*, float*)>
void scores_g_by_head(int n, int hd, int G, const half* k, size_t ld, const float* q, float* s, size_t lds) {
    for (int g = 0; g < G; g++) SCORES(n, hd, k, ld, q + (size_t)g * hd, s + g * lds);
}

template <void (*WSUM)(int, int, const float*, const half*, size_t, float*)>
void wsum_g_by_head(int n, int hd, int G, const float* w, size_t ldw, const half* v, size_t ld, float* y) {
    for (int g = 0; g < G; g++) WSUM(n, hd, w + g * ldw, v, ld, y + (size_t)g * hd);
}

// q8_0 kv rows (kernels.h): the scale of block b sits after the hd quants
inline float kv_q8_scale(const uint8_t* row, int hd, int b) {
    half d;
    std::memcpy(&d, row + hd + 2 * b, sizeof(half));
    return fp16_to_fp32(d);
}

// the G queries quantized as q8_0 kv rows (kv_quantize_q8, or a table's QUANT with its bits),
// kv_q8_row_bytes(hd) bytes apart, in a per-thread buffer of rows >= G rows; the rows past G are zero
// (zero quants and scales)
template <void (*QUANT)(const float*, uint8_t*, int) = kv_quantize_q8>
inline const uint8_t* kv_quantize_queries(const float* q, int G, int hd, int rows) {
    const size_t qrb = kv_q8_row_bytes(hd);
    thread_local std::vector<uint8_t> buf;
    buf.assign((size_t)rows * qrb, 0);
    for (int g = 0; g < G; g++) QUANT(q + (size_t)g * hd, buf.data() + g * qrb, hd);
    return buf.data();
}

// exact int32 dot of the n int8 pairs at a and b
inline int32_t dot_i8_ref(const int8_t* a, const int8_t* b, int n) {
    int32_t dot = 0;
    for (int i = 0; i < n; i++) dot += a[i] * b[i];
    return dot;
}

// scores over q8_0 kv rows: each query quantized as a kv row, each block's dot exact in int32 (DOT, on
// one block of up to 32 pairs), then s = sum over blocks in order of (float)dot_b * (dk_b * dq_b)
template <int32_t (*DOT)(const int8_t*, const int8_t*, int)>
void scores_q8_blocks(int n, int hd, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
    const size_t qrb = kv_q8_row_bytes(hd);
    const uint8_t* qq = kv_quantize_queries(q, G, hd, G);
    for (int j = 0; j < n; j++) {
        const uint8_t* row = k + (size_t)j * ld;
        for (int g = 0; g < G; g++) {
            const uint8_t* qg = qq + g * qrb;
            float acc = 0.0f;
            for (int b = 0; b * kKvQ8Block < hd; b++) {
                const int i0 = b * kKvQ8Block;
                acc += (float)DOT((const int8_t*)row + i0, (const int8_t*)qg + i0, std::min(hd - i0, kKvQ8Block)) *
                       (kv_q8_scale(row, hd, b) * kv_q8_scale(qg, hd, b));
            }
            s[g * lds + j] = acc;
        }
    }
}

// scalar reference for q8_0 kv rows (the generic table; head sizes a table has no register path for).
// scores: scores_q8_blocks with a scalar dot. wsum: wsum_q8_groups with scalar int32 sums
inline void scores_q8_g_ref(int n, int hd, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
    scores_q8_blocks<dot_i8_ref>(n, hd, G, k, ld, q, s, lds);
}

// rows of the wsum group that starts at row j0 of a call (kernels.h: groups by (phase + j) / kWsumGroup)
inline int wsum_group_rows(int n, int j0, int64_t phase) {
    return std::min<int>(n - j0, kWsumGroup - (int)((phase + j0) % kWsumGroup));
}

// one query's weights over a group of m <= kWsumGroup rows for one value block: a_j = w_j * d_j
// quantized to 0..127 against their max (nearest, ties to even: as _mm256_cvtps_epi32). iw gets
// kWsumGroup bytes, zero past m; returns the scale amax / 127, 0 when no a_j is positive (iw all 0)
inline float wsum_q8_weights(int m, const float* w, const float* d, uint8_t* iw) {
    float a[kWsumGroup], amax = 0.0f;
    for (int j = 0; j < m; j++) a[j] = w[j] * d[j], amax = std::max(amax, a[j]);
    std::memset(iw, 0, kWsumGroup);
    if (!(amax > 0.0f)) return 0.0f;
    const float id = 127.0f / amax;
    for (int j = 0; j < m; j++) iw[j] = (uint8_t)std::nearbyint(a[j] * id);
    return amax / 127.0f;
}

// the integer weighted sum (kernels.h), for any head size: per group and value block, the rows' block
// scales, each query's weights (wsum_q8_weights), ACC(m, iw, values, ld, nd, acc): the exact int32 sums
// acc[i] = sum_j iw[j] * q_j[i] over the group's m rows for the block's nd <= 32 dims, then
// y = fma(acc, scale, y) per dim (exact: |acc| <= 32 * 127 * 127 < 2^24 converts without rounding)
template <void (*ACC)(int, const uint8_t*, const uint8_t*, size_t, int, int32_t*)>
void wsum_q8_groups(int n, int hd, int G, const float* w, size_t ldw, const uint8_t* v, size_t ld, float* y,
                    int64_t phase) {
    float d[kWsumGroup];
    uint8_t iw[kWsumGroup];
    int32_t acc[kKvQ8Block];
    for (int j0 = 0, m; j0 < n; j0 += m) {
        m = wsum_group_rows(n, j0, phase);
        const uint8_t* rows = v + (size_t)j0 * ld;
        for (int b = 0; b * kKvQ8Block < hd; b++) {
            const int i0 = b * kKvQ8Block, nd = std::min(hd - i0, kKvQ8Block);
            for (int j = 0; j < m; j++) d[j] = kv_q8_scale(rows + (size_t)j * ld, hd, b);
            for (int g = 0; g < G; g++) {
                const float scale = wsum_q8_weights(m, w + g * ldw + j0, d, iw);
                if (scale == 0.0f) continue;
                ACC(m, iw, rows + i0, ld, nd, acc);
                float* yg = y + (size_t)g * hd + i0;
                for (int i = 0; i < nd; i++) yg[i] = std::fma((float)acc[i], scale, yg[i]);
            }
        }
    }
}

inline void wsum_q8_acc_ref(int m, const uint8_t* iw, const uint8_t* v, size_t ld, int nd, int32_t* acc) {
    for (int i = 0; i < nd; i++) acc[i] = 0;
    for (int j = 0; j < m; j++)
        for (int i = 0; i < nd; i++) acc[i] += iw[j] * (int8_t)v[(size_t)j * ld + i];
}

inline void wsum_q8_g_ref(int n, int hd, int G, const float* w, size_t ldw, const uint8_t* v, size_t ld, float* y,
                          int64_t phase) {
    wsum_q8_groups<wsum_q8_acc_ref>(n, hd, G, w, ldw, v, ld, y, phase);
}

// q4_K: scale and min j (0..7) from the 12 packed bytes (ggml get_scale_min_k4)
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4);
    }
}

}  // namespace
}  // namespace ec
