// neon kernels (aarch64; neon is baseline there). int8 dots use sdot behind __ARM_FEATURE_DOTPROD,
// else vmull_s8 + vpadalq_s16. same arithmetic as generic.cpp; float sums may be reassociated.
// layout: helpers, f16/f32, activation quantizers, vec_dots, table. gemm loops vec_dot.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cmath>
#include <cstring>

#include "kernels.h"
#include "kernels_internal.h"

namespace ec {
namespace {

// ---- helpers ----

inline float h2f(half h) { return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0); }

// acc + 4 int32 sums of 4 int8 products each
inline int32x4_t dot_i8x16(int32x4_t acc, int8x16_t a, int8x16_t b) {
#if defined(__ARM_FEATURE_DOTPROD)
    return vdotq_s32(acc, a, b);
#else
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));  // i8 x i8 -> i16 (|p| <= 2^14)
    const int16x8_t p1 = vmull_high_s8(a, b);
    return vpadalq_s16(vpadalq_s16(acc, p0), p1);                    // i16 pairs -> i32
#endif
}

// ---- f16 / f32 ----

void f16_to_f32_neon(const half* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

void f32_to_f16_neon(const float* x, half* y, int64_t n) {
    int64_t i = 0;  // fcvtn rounds to nearest even (default fpcr)
    for (; i + 4 <= n; i += 4) vst1_u16(y + i, vreinterpret_u16_f16(vcvt_f16_f32(vld1q_f32(x + i))));
    for (; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

float dot_f16_f32_neon(int n, const half* a, const float* b) {
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(a + i))), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(a + i + 4))), vld1q_f32(b + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) sum += h2f(a[i]) * b[i];
    return sum;
}

void axpy_f16_f32_neon(int n, float a, const half* x, float* y) {
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        const float32x4_t vx = vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i)));
        vst1q_f32(y + i, vfmaq_n_f32(vld1q_f32(y + i), vx, a));
    }
    for (; i < n; i++) y[i] += a * h2f(x[i]);
}

// attention runs: for the common head sizes the query (scores) or the output (wsum) stays in registers
// across all rows; other sizes go row by row through dot/axpy
template <int HD>
void scores_f16_hd(int n, const half* k, size_t ld, const float* q, float* s) {
    constexpr int R = HD / 4;
    float32x4_t qv[R];
    for (int r = 0; r < R; r++) qv[r] = vld1q_f32(q + 4 * r);
    for (int j = 0; j < n; j++) {
        const half* kj = k + (size_t)j * ld;
        float32x4_t a0 = vdupq_n_f32(0), a1 = vdupq_n_f32(0);
        for (int r = 0; r < R; r += 2) {
            a0 = vfmaq_f32(a0, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(kj + 4 * r))), qv[r]);
            a1 = vfmaq_f32(a1, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(kj + 4 * r + 4))), qv[r + 1]);
        }
        s[j] = vaddvq_f32(vaddq_f32(a0, a1));
    }
}

template <int HD>
void wsum_f16_hd(int n, const float* w, const half* v, size_t ld, float* y) {
    constexpr int R = HD / 4;
    float32x4_t acc[R];
    for (int r = 0; r < R; r++) acc[r] = vld1q_f32(y + 4 * r);
    for (int j = 0; j < n; j++) {
        const half* vj = v + (size_t)j * ld;
        for (int r = 0; r < R; r++)
            acc[r] = vfmaq_n_f32(acc[r], vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(vj + 4 * r))), w[j]);
    }
    for (int r = 0; r < R; r++) vst1q_f32(y + 4 * r, acc[r]);
}

void scores_f16_neon(int n, int hd, const half* k, size_t ld, const float* q, float* s) {
    if (hd == 64) return scores_f16_hd<64>(n, k, ld, q, s);
    if (hd == 128) return scores_f16_hd<128>(n, k, ld, q, s);
    scores_by_dot<dot_f16_f32_neon>(n, hd, k, ld, q, s);
}

void wsum_f16_neon(int n, int hd, const float* w, const half* v, size_t ld, float* y) {
    if (hd == 64) return wsum_f16_hd<64>(n, w, v, ld, y);
    if (hd == 128) return wsum_f16_hd<128>(n, w, v, ld, y);
    wsum_by_axpy<axpy_f16_f32_neon>(n, hd, w, v, ld, y);
}

void vec_dot_f32_f32_neon(int n, float* s, const void* w, const void* x) {
    const float* a = (const float*)w;
    const float* b = (const float*)x;
    float32x4_t acc0 = vdupq_n_f32(0), acc1 = vdupq_n_f32(0);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        acc0 = vfmaq_f32(acc0, vld1q_f32(a + i), vld1q_f32(b + i));
        acc1 = vfmaq_f32(acc1, vld1q_f32(a + i + 4), vld1q_f32(b + i + 4));
    }
    float sum = vaddvq_f32(vaddq_f32(acc0, acc1));
    for (; i < n; i++) sum += a[i] * b[i];
    *s = sum;
}

void vec_dot_f16_f32_neon(int n, float* s, const void* w, const void* x) {
    *s = dot_f16_f32_neon(n, (const half*)w, (const float*)x);
}

// ---- activation quantizers (bit-exact with generic) ----

// one q8_0/q8_1 block: d = amax/127, q = roundf(x * (1/d)) (frinta: ties away, as roundf); returns sum(q)
inline int quantize_block_q8(const float* x, half* d_out, int8_t* qs, float* d_f32) {
    float32x4_t v[8];
    float32x4_t amax = vdupq_n_f32(0);
    for (int k = 0; k < 8; k++) {
        v[k] = vld1q_f32(x + 4 * k);
        amax = vmaxq_f32(amax, vabsq_f32(v[k]));
    }
    const float d = vmaxvq_f32(amax) / 127;
    const float id = d ? 1.0f / d : 0.0f;
    *d_out = fp32_to_fp16(d);
    *d_f32 = d;
    int32x4_t sum = vdupq_n_s32(0);
    for (int k = 0; k < 8; k++) {
        const int32x4_t q = vcvtq_s32_f32(vrndaq_f32(vmulq_n_f32(v[k], id)));  // round, then exact cvt
        sum = vaddq_s32(sum, q);
        // int32 -> int16 -> int8 (values already within [-127, 127])
        const int8x8_t q8 = vmovn_s16(vcombine_s16(vmovn_s32(q), vdup_n_s16(0)));
        vst1_lane_s32((int32_t*)(qs + 4 * k), vreinterpret_s32_s8(q8), 0);
    }
    return vaddvq_s32(sum);
}

void from_float_q8_0_neon(const float* src, void* dst, int64_t n) {
    block_q8_0* b = (block_q8_0*)dst;
    float d;
    for (int64_t i = 0; i < n / QK8_0; i++) quantize_block_q8(src + i * QK8_0, &b[i].d, b[i].qs, &d);
}

void from_float_q8_1_neon(const float* src, void* dst, int64_t n) {
    block_q8_1* b = (block_q8_1*)dst;
    float d;
    for (int64_t i = 0; i < n / QK8_1; i++) {
        const int sum = quantize_block_q8(src + i * QK8_1, &b[i].d, b[i].qs, &d);
        b[i].s = fp32_to_fp16(sum * d);
    }
}

// q8_K: as generic; vcvtnq rounds to nearest even like ggml's nearest_int
void from_float_q8_K_neon(const float* src, void* dst, int64_t n) {
    block_q8_K* b = (block_q8_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float32x4_t amax_v = vdupq_n_f32(0);
        for (int j = 0; j < QK_K; j += 4) amax_v = vmaxq_f32(amax_v, vabsq_f32(vld1q_f32(src + j)));
        const float amax = vmaxvq_f32(amax_v);
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof(block_q8_K));
            continue;
        }
        float max = 0.0f;  // the first element of largest |x|, with its sign
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(src[j]) == amax) { max = src[j]; break; }
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j += 16) {
            int16x8_t h[2];
            for (int k = 0; k < 2; k++) {
                const int32x4_t q0 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(src + j + 8 * k), iscale));
                const int32x4_t q1 = vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(src + j + 8 * k + 4), iscale));
                h[k] = vcombine_s16(vqmovn_s32(q0), vqmovn_s32(q1));
            }
            const int8x16_t q = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));  // saturate: clamp 127
            vst1q_s8(b[i].qs + j, q);
            b[i].bsums[j / 16] = (int16_t)vaddlvq_s8(q);
        }
        b[i].d = 1 / iscale;
    }
}

// ---- vec_dot: 32-element block types ----

void vec_dot_q4_0_q8_0_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q4_0* w = (const block_q4_0*)vw;
    const block_q8_0* x = (const block_q8_0*)vx;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK4_0; i++) {
        const uint8x16_t q4 = vld1q_u8(w[i].qs);
        // 4-bit -> 8-bit, sub 8
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q4, vdupq_n_u8(0x0f))), vdupq_n_s8(8));
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q4, 4)), vdupq_n_s8(8));
        int32x4_t p = dot_i8x16(vdupq_n_s32(0), lo, vld1q_s8(x[i].qs));
        p = dot_i8x16(p, hi, vld1q_s8(x[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * h2f(x[i].d));
    }
    *s = vaddvq_f32(acc);
}

void vec_dot_q4_1_q8_1_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q4_1* w = (const block_q4_1*)vw;
    const block_q8_1* x = (const block_q8_1*)vx;
    float32x4_t acc = vdupq_n_f32(0);
    float summs = 0.0f;
    for (int i = 0; i < n / QK4_1; i++) {
        const uint8x16_t q4 = vld1q_u8(w[i].qs);
        // 4-bit -> 8-bit (0..15, fine as int8)
        const int8x16_t lo = vreinterpretq_s8_u8(vandq_u8(q4, vdupq_n_u8(0x0f)));
        const int8x16_t hi = vreinterpretq_s8_u8(vshrq_n_u8(q4, 4));
        int32x4_t p = dot_i8x16(vdupq_n_s32(0), lo, vld1q_s8(x[i].qs));
        p = dot_i8x16(p, hi, vld1q_s8(x[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * h2f(x[i].d));
        summs += h2f(w[i].m) * h2f(x[i].s);  // min term: m * d_x * sum(q_x)
    }
    *s = vaddvq_f32(acc) + summs;
}

void vec_dot_q5_0_q8_0_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q5_0* w = (const block_q5_0*)vw;
    const block_q8_0* x = (const block_q8_0*)vx;
    const uint8x16_t bit = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK5_0; i++) {
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        // 5th bits -> 0x10 per byte: bit j for element j
        const uint8x16_t h_lo = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh), vdup_n_u8(qh >> 8)), bit), vdupq_n_u8(0x10));
        const uint8x16_t h_hi = vandq_u8(vtstq_u8(vcombine_u8(vdup_n_u8(qh >> 16), vdup_n_u8(qh >> 24)), bit), vdupq_n_u8(0x10));
        const uint8x16_t q4 = vld1q_u8(w[i].qs);
        // 4-bit | 5th bit -> 8-bit, sub 16
        const int8x16_t lo = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vandq_u8(q4, vdupq_n_u8(0x0f)), h_lo)), vdupq_n_s8(16));
        const int8x16_t hi = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(q4, 4), h_hi)), vdupq_n_s8(16));
        int32x4_t p = dot_i8x16(vdupq_n_s32(0), lo, vld1q_s8(x[i].qs));
        p = dot_i8x16(p, hi, vld1q_s8(x[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * h2f(x[i].d));
    }
    *s = vaddvq_f32(acc);
}

void vec_dot_q8_0_q8_0_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q8_0* w = (const block_q8_0*)vw;
    const block_q8_0* x = (const block_q8_0*)vx;
    float32x4_t acc = vdupq_n_f32(0);
    for (int i = 0; i < n / QK8_0; i++) {
        int32x4_t p = dot_i8x16(vdupq_n_s32(0), vld1q_s8(w[i].qs), vld1q_s8(x[i].qs));
        p = dot_i8x16(p, vld1q_s8(w[i].qs + 16), vld1q_s8(x[i].qs + 16));
        acc = vfmaq_n_f32(acc, vcvtq_f32_s32(p), h2f(w[i].d) * h2f(x[i].d));
    }
    *s = vaddvq_f32(acc);
}

// ---- vec_dot: k-quants ----

void vec_dot_q4_K_q8_K_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q4_K* w = (const block_q4_K*)vw;
    const block_q8_K* x = (const block_q8_K*)vx;
    float sum = 0.0f;
    for (int i = 0; i < n / QK_K; i++) {
        uint8_t sc[8], m[8];  // 6-bit scales and mins
        for (int j = 0; j < 8; j++) get_scale_min_k4(j, w[i].scales, &sc[j], &m[j]);
        int sum_m = 0;
        for (int j = 0; j < 8; j++) sum_m += m[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
        const uint8_t* q4 = w[i].qs;
        const int8_t* q8 = x[i].qs;
        int sum_q = 0;
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            const uint8x16_t b0 = vld1q_u8(q4), b1 = vld1q_u8(q4 + 16);
            // 4-bit -> 8-bit: low nibbles = sub-block 2j, high = 2j+1
            int32x4_t pl = dot_i8x16(vdupq_n_s32(0), vreinterpretq_s8_u8(vandq_u8(b0, vdupq_n_u8(0x0f))), vld1q_s8(q8));
            pl = dot_i8x16(pl, vreinterpretq_s8_u8(vandq_u8(b1, vdupq_n_u8(0x0f))), vld1q_s8(q8 + 16));
            int32x4_t ph = dot_i8x16(vdupq_n_s32(0), vreinterpretq_s8_u8(vshrq_n_u8(b0, 4)), vld1q_s8(q8 + 32));
            ph = dot_i8x16(ph, vreinterpretq_s8_u8(vshrq_n_u8(b1, 4)), vld1q_s8(q8 + 48));
            sum_q += sc[2 * j] * vaddvq_s32(pl) + sc[2 * j + 1] * vaddvq_s32(ph);
        }
        sum += x[i].d * (h2f(w[i].d) * sum_q - h2f(w[i].dmin) * sum_m);
    }
    *s = sum;
}

void vec_dot_q6_K_q8_K_neon(int n, float* s, const void* vw, const void* vx) {
    const block_q6_K* w = (const block_q6_K*)vw;
    const block_q8_K* x = (const block_q8_K*)vx;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(0x30);
    float sum = 0.0f;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t* ql = w[i].ql;
        const uint8_t* qh = w[i].qh;
        const int8_t* sc = w[i].scales;
        const int8_t* q8 = x[i].qs;
        int sumi = 0;
        for (int h = 0; h < 2; h++, ql += 64, qh += 32, sc += 8, q8 += 128) {
            for (int k = 0; k < 2; k++) {  // 16 lanes l = 16k..16k+15 of the 32
                const uint8x16_t l0 = vld1q_u8(ql + 16 * k), l1 = vld1q_u8(ql + 32 + 16 * k);
                const uint8x16_t hb = vld1q_u8(qh + 16 * k);
                // low 4 bits | 2 high bits << 4 -> 0..63, sub 32
                int8x16_t q[4];
                q[0] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l0, m4), vandq_u8(vshlq_n_u8(hb, 4), m3)));
                q[1] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(l1, m4), vandq_u8(vshlq_n_u8(hb, 2), m3)));
                q[2] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l0, 4), vandq_u8(hb, m3)));
                q[3] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(l1, 4), vandq_u8(vshrq_n_u8(hb, 2), m3)));
                for (int g = 0; g < 4; g++) {  // group g: elements 32g + 16k.., scale sc[2g + k]
                    const int8x16_t qs = vsubq_s8(q[g], vdupq_n_s8(32));
                    const int32x4_t p = dot_i8x16(vdupq_n_s32(0), qs, vld1q_s8(q8 + 32 * g + 16 * k));
                    sumi += sc[2 * g + k] * vaddvq_s32(p);
                }
            }
        }
        sum += h2f(w[i].d) * x[i].d * sumi;
    }
    *s = sum;
}

// ---- table ----

KernelTable make_neon_table() {
    KernelTable t = kernels_generic();  // anything not overridden stays generic
    t.isa = "neon";
    t.types[GT_F32].vec_dot = vec_dot_f32_f32_neon;
    t.types[GT_F16].vec_dot = vec_dot_f16_f32_neon;
    t.types[GT_Q8_0].from_float = from_float_q8_0_neon;
    t.types[GT_Q8_1].from_float = from_float_q8_1_neon;
    t.types[GT_Q8_K].from_float = from_float_q8_K_neon;
    t.types[GT_Q4_0].vec_dot = vec_dot_q4_0_q8_0_neon;
    t.types[GT_Q4_1].vec_dot = vec_dot_q4_1_q8_1_neon;
    t.types[GT_Q5_0].vec_dot = vec_dot_q5_0_q8_0_neon;
    t.types[GT_Q8_0].vec_dot = vec_dot_q8_0_q8_0_neon;
    t.types[GT_Q4_K].vec_dot = vec_dot_q4_K_q8_K_neon;
    t.types[GT_Q6_K].vec_dot = vec_dot_q6_K_q8_K_neon;

    t.types[GT_F32].gemm = gemm_by_vec_dot<vec_dot_f32_f32_neon>;
    t.types[GT_F16].gemm = gemm_by_vec_dot<vec_dot_f16_f32_neon>;
    t.types[GT_Q4_0].gemm = gemm_by_vec_dot<vec_dot_q4_0_q8_0_neon>;
    t.types[GT_Q4_1].gemm = gemm_by_vec_dot<vec_dot_q4_1_q8_1_neon>;
    t.types[GT_Q5_0].gemm = gemm_by_vec_dot<vec_dot_q5_0_q8_0_neon>;
    t.types[GT_Q8_0].gemm = gemm_by_vec_dot<vec_dot_q8_0_q8_0_neon>;
    t.types[GT_Q4_K].gemm = gemm_by_vec_dot<vec_dot_q4_K_q8_K_neon>;
    t.types[GT_Q6_K].gemm = gemm_by_vec_dot<vec_dot_q6_K_q8_K_neon>;

    t.dot_f16_f32 = dot_f16_f32_neon;
    t.axpy_f16_f32 = axpy_f16_f32_neon;
    t.scores_f16 = scores_f16_neon;
    t.wsum_f16 = wsum_f16_neon;
    t.f32_to_f16 = f32_to_f16_neon;
    t.f16_to_f32 = f16_to_f32_neon;
    return t;
}

}  // namespace

const KernelTable* kernels_neon() {
    static const KernelTable table = make_neon_table();
    return &table;
}

}  // namespace ec

#endif  // __aarch64__
