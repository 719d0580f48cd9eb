// scalar reference kernels: the definition of every type's layout and arithmetic, kept forever.
// layouts, bit orders and activation rounding follow ggml (ggml-quants.c *_ref functions), since
// weights come from llama.cpp's quantizer and logits are compared with llama.cpp's.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels.h"
#include "kernels_internal.h"

namespace ec {

// ---- fp16 <-> fp32 (integer bit manipulation, ieee 754 binary16, round to nearest even) ----

float fp16_to_fp32(half h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);  // inf / nan (payload kept)
    } else if (exp != 0) {
        bits = sign | ((exp + 112) << 23) | (man << 13);  // normal: rebias 15 -> 127
    } else if (man == 0) {
        bits = sign;  // +-0
    } else {
        int e = -1;  // subnormal: normalize
        do { man <<= 1; e++; } while (!(man & 0x400));
        bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ff) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

half fp32_to_fp16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) {  // inf / nan (nan stays quiet nan)
        return (half)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 | ((ax >> 13) & 0x3ff) : 0));
    }
    if (ax >= 0x477ff000u) return (half)(sign | 0x7c00);  // rounds to >= 65520: overflow to inf
    if (ax < 0x38800000u) {  // below the smallest normal half (2^-14): subnormal or zero
        if (ax < 0x33000000u) return (half)sign;  // < 2^-25: rounds to zero (2^-25 ties to even 0)
        uint32_t e = ax >> 23;
        uint32_t man = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e;  // 14 + 13 - (e - 127) ... result = man >> (shift)
        uint32_t q = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (q & 1))) q++;
        return (half)(sign | q);
    }
    uint32_t r = ax - 0x38000000u;  // rebias exponent 127 -> 15 (in place, mantissa kept)
    uint32_t q = r >> 13;
    uint32_t rem = r & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (q & 1))) q++;  // carry may bump the exponent: correct
    return (half)(sign | q);
}

static inline float h2f(half h) { return fp16_to_fp32(h); }

// ggml's nearest_int (round half to even; ggml adds 1.5 * 2^23 and reads the mantissa). nearbyintf
// gives the same result and cannot be fused with the multiply that produced fval, which
// -ffp-contract=fast (gcc's default for gnu++ dialects) may do to the addition trick
static inline int nearest_int(float fval) { return (int)nearbyintf(fval); }

// ---- f32 / f16 ----

static void to_float_f32_generic(const void* src, float* dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void from_float_f32_generic(const float* src, void* dst, int64_t n) {
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void f16_to_f32_generic(const half* x, float* y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = h2f(x[i]);
}

static void f32_to_f16_generic(const float* x, half* y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = fp32_to_fp16(x[i]);
}

static void to_float_f16_generic(const void* src, float* dst, int64_t n) {
    f16_to_f32_generic((const half*)src, dst, n);
}

static void from_float_f16_generic(const float* src, void* dst, int64_t n) {
    f32_to_f16_generic(src, (half*)dst, n);
}

static void vec_dot_f32_f32_generic(int n, float* s, const void* w, const void* x) {
    const float* a = (const float*)w;
    const float* b = (const float*)x;
    double sum = 0.0;  // ggml_vec_dot_f32 accumulates in ggml_float (double) too
    for (int i = 0; i < n; i++) sum += (double)a[i] * b[i];
    *s = (float)sum;
}

static float dot_f16_f32_generic(int n, const half* a, const float* b) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)h2f(a[i]) * b[i];
    return (float)sum;
}

static void vec_dot_f16_f32_generic(int n, float* s, const void* w, const void* x) {
    *s = dot_f16_f32_generic(n, (const half*)w, (const float*)x);
}

static void axpy_f16_f32_generic(int n, float a, const half* x, float* y) {
    for (int i = 0; i < n; i++) y[i] += a * h2f(x[i]);
}

static float exp_sum_generic(int n, float* x, float mx) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (x[i] = std::exp(x[i] - mx));
    return (float)sum;
}

static float max_f32_generic(int n, const float* x) {
    float m = x[0];
    for (int i = 1; i < n; i++) m = std::max(m, x[i]);
    return m;
}

static void silu_mul_generic(int64_t n, float* g, const float* u) {
    for (int64_t i = 0; i < n; i++) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

static void gelu_mul_generic(int64_t n, float* g, const float* u) {
    for (int64_t i = 0; i < n; i++) {
        const float x = g[i];
        g[i] = x / (1.0f + std::exp(-kGelu2C * (x + kGeluA * x * x * x))) * u[i];
    }
}

// ---- q4_0 ----

static void to_float_q4_0_generic(const void* src, float* dst, int64_t n) {
    const block_q4_0* b = (const block_q4_0*)src;
    for (int64_t i = 0; i < n / QK4_0; i++, dst += QK4_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            dst[j] = ((b[i].qs[j] & 0x0f) - 8) * d;
            dst[j + QK4_0 / 2] = ((b[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void from_float_q4_0_generic(const float* src, void* dst, int64_t n) {
    block_q4_0* b = (block_q4_0*)dst;
    for (int64_t i = 0; i < n / QK4_0; i++, src += QK4_0) {
        float amax = 0.0f, max = 0.0f;  // max: the element of largest |x|, with its sign
        for (int j = 0; j < QK4_0; j++) {
            if (amax < fabsf(src[j])) { amax = fabsf(src[j]); max = src[j]; }
        }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK4_0 / 2; j++) {
            const uint8_t q0 = std::min(15, (int)(int8_t)(src[j] * id + 8.5f));
            const uint8_t q1 = std::min(15, (int)(int8_t)(src[j + QK4_0 / 2] * id + 8.5f));
            b[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

static void vec_dot_q4_0_q8_0_generic(int n, float* s, const void* w, const void* x) {
    const block_q4_0* a = (const block_q4_0*)w;
    const block_q8_0* b = (const block_q8_0*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK4_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_0 / 2; j++) {
            sumi += ((a[i].qs[j] & 0x0f) - 8) * b[i].qs[j];
            sumi += ((a[i].qs[j] >> 4) - 8) * b[i].qs[j + QK4_0 / 2];
        }
        sum += sumi * (h2f(a[i].d) * h2f(b[i].d));
    }
    *s = sum;
}

// ---- q4_1 ----

static void to_float_q4_1_generic(const void* src, float* dst, int64_t n) {
    const block_q4_1* b = (const block_q4_1*)src;
    for (int64_t i = 0; i < n / QK4_1; i++, dst += QK4_1) {
        const float d = h2f(b[i].d), m = h2f(b[i].m);
        for (int j = 0; j < QK4_1 / 2; j++) {
            dst[j] = (b[i].qs[j] & 0x0f) * d + m;
            dst[j + QK4_1 / 2] = (b[i].qs[j] >> 4) * d + m;
        }
    }
}

static void from_float_q4_1_generic(const float* src, void* dst, int64_t n) {
    block_q4_1* b = (block_q4_1*)dst;
    for (int64_t i = 0; i < n / QK4_1; i++, src += QK4_1) {
        float mn = src[0], mx = src[0];
        for (int j = 1; j < QK4_1; j++) { mn = std::min(mn, src[j]); mx = std::max(mx, src[j]); }
        const float d = (mx - mn) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        b[i].m = fp32_to_fp16(mn);
        for (int j = 0; j < QK4_1 / 2; j++) {
            const uint8_t q0 = std::min(15, (int)(int8_t)((src[j] - mn) * id + 0.5f));
            const uint8_t q1 = std::min(15, (int)(int8_t)((src[j + QK4_1 / 2] - mn) * id + 0.5f));
            b[i].qs[j] = q0 | (q1 << 4);
        }
    }
}

static void vec_dot_q4_1_q8_1_generic(int n, float* s, const void* w, const void* x) {
    const block_q4_1* a = (const block_q4_1*)w;
    const block_q8_1* b = (const block_q8_1*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK4_1; i++) {
        int sumi = 0;
        for (int j = 0; j < QK4_1 / 2; j++) {
            sumi += (a[i].qs[j] & 0x0f) * b[i].qs[j];
            sumi += (a[i].qs[j] >> 4) * b[i].qs[j + QK4_1 / 2];
        }
        // sum_j (q_j d + m) y_j = d_w d_x sumi + m * (d_x sum q_x) = ... + m * s
        sum += (h2f(a[i].d) * h2f(b[i].d)) * sumi + h2f(a[i].m) * h2f(b[i].s);
    }
    *s = sum;
}

// ---- q5_0 ----

static void to_float_q5_0_generic(const void* src, float* dst, int64_t n) {
    const block_q5_0* b = (const block_q5_0*)src;
    for (int64_t i = 0; i < n / QK5_0; i++, dst += QK5_0) {
        const float d = h2f(b[i].d);
        uint32_t qh;
        memcpy(&qh, b[i].qh, 4);
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;         // bit j: 5th bit of element j
            const int h1 = (qh >> (j + 12)) & 0x10;         // bit j+16: of element j+16
            dst[j] = (((b[i].qs[j] & 0x0f) | h0) - 16) * d;
            dst[j + QK5_0 / 2] = (((b[i].qs[j] >> 4) | h1) - 16) * d;
        }
    }
}

static void from_float_q5_0_generic(const float* src, void* dst, int64_t n) {
    block_q5_0* b = (block_q5_0*)dst;
    for (int64_t i = 0; i < n / QK5_0; i++, src += QK5_0) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK5_0; j++) {
            if (amax < fabsf(src[j])) { amax = fabsf(src[j]); max = src[j]; }
        }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int q0 = std::min(31, (int)(int8_t)(src[j] * id + 16.5f));
            const int q1 = std::min(31, (int)(int8_t)(src[j + QK5_0 / 2] * id + 16.5f));
            b[i].qs[j] = (q0 & 0x0f) | ((q1 & 0x0f) << 4);
            qh |= ((uint32_t)(q0 & 0x10) >> 4) << j;
            qh |= ((uint32_t)(q1 & 0x10) >> 4) << (j + QK5_0 / 2);
        }
        memcpy(b[i].qh, &qh, 4);
    }
}

static void vec_dot_q5_0_q8_0_generic(int n, float* s, const void* w, const void* x) {
    const block_q5_0* a = (const block_q5_0*)w;
    const block_q8_0* b = (const block_q8_0*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK5_0; i++) {
        uint32_t qh;
        memcpy(&qh, a[i].qh, 4);
        int sumi = 0;
        for (int j = 0; j < QK5_0 / 2; j++) {
            const int h0 = ((qh >> j) << 4) & 0x10;
            const int h1 = (qh >> (j + 12)) & 0x10;
            sumi += (((a[i].qs[j] & 0x0f) | h0) - 16) * b[i].qs[j];
            sumi += (((a[i].qs[j] >> 4) | h1) - 16) * b[i].qs[j + QK5_0 / 2];
        }
        sum += sumi * (h2f(a[i].d) * h2f(b[i].d));
    }
    *s = sum;
}

// ---- q8_0 (weights and the activation type of q4_0/q5_0/q8_0) ----

static void to_float_q8_0_generic(const void* src, float* dst, int64_t n) {
    const block_q8_0* b = (const block_q8_0*)src;
    for (int64_t i = 0; i < n / QK8_0; i++, dst += QK8_0) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK8_0; j++) dst[j] = b[i].qs[j] * d;
    }
}

// ggml quantize_row_q8_0_ref: d = amax/127, q = roundf(x * (1/d)) (half away from zero)
static void from_float_q8_0_generic(const float* src, void* dst, int64_t n) {
    block_q8_0* b = (block_q8_0*)dst;
    for (int64_t i = 0; i < n / QK8_0; i++, src += QK8_0) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_0; j++) amax = std::max(amax, fabsf(src[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        for (int j = 0; j < QK8_0; j++) b[i].qs[j] = (int8_t)roundf(src[j] * id);
    }
}

static void vec_dot_q8_0_q8_0_generic(int n, float* s, const void* w, const void* x) {
    const block_q8_0* a = (const block_q8_0*)w;
    const block_q8_0* b = (const block_q8_0*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK8_0; i++) {
        int sumi = 0;
        for (int j = 0; j < QK8_0; j++) sumi += a[i].qs[j] * b[i].qs[j];
        sum += sumi * (h2f(a[i].d) * h2f(b[i].d));
    }
    *s = sum;
}

// ---- q8_1 (activation type of q4_1) ----

static void to_float_q8_1_generic(const void* src, float* dst, int64_t n) {
    const block_q8_1* b = (const block_q8_1*)src;
    for (int64_t i = 0; i < n / QK8_1; i++, dst += QK8_1) {
        const float d = h2f(b[i].d);
        for (int j = 0; j < QK8_1; j++) dst[j] = b[i].qs[j] * d;
    }
}

// ggml quantize_row_q8_1_ref: as q8_0, plus s = fp16(d * sum(q))
static void from_float_q8_1_generic(const float* src, void* dst, int64_t n) {
    block_q8_1* b = (block_q8_1*)dst;
    for (int64_t i = 0; i < n / QK8_1; i++, src += QK8_1) {
        float amax = 0.0f;
        for (int j = 0; j < QK8_1; j++) amax = std::max(amax, fabsf(src[j]));
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        b[i].d = fp32_to_fp16(d);
        int sum = 0;
        for (int j = 0; j < QK8_1; j++) {
            b[i].qs[j] = (int8_t)roundf(src[j] * id);
            sum += b[i].qs[j];
        }
        b[i].s = fp32_to_fp16(sum * d);
    }
}

// ---- q4_K ----

static void to_float_q4_K_generic(const void* src, float* dst, int64_t n) {
    const block_q4_K* b = (const block_q4_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        const uint8_t* q = b[i].qs;
        for (int j = 0; j < 4; j++, q += 32) {  // 4 groups of 64: low nibbles, then high
            uint8_t sc, m;
            get_scale_min_k4(2 * j, b[i].scales, &sc, &m);
            const float d1 = d * sc, m1 = dmin * m;
            get_scale_min_k4(2 * j + 1, b[i].scales, &sc, &m);
            const float d2 = d * sc, m2 = dmin * m;
            for (int l = 0; l < 32; l++) *dst++ = d1 * (q[l] & 0xf) - m1;
            for (int l = 0; l < 32; l++) *dst++ = d2 * (q[l] >> 4) - m2;
        }
    }
}

// simple quantizer: per 32-element sub-block scale = (max - min)/15 and min = -min (min <= 0),
// both quantized to 6 bits against the super-block maxima; quants recomputed from the 6-bit values.
static void from_float_q4_K_generic(const float* src, void* dst, int64_t n) {
    block_q4_K* b = (block_q4_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float scales[8], mins[8];  // (sub-block)
        float max_scale = 0.0f, max_min = 0.0f;
        for (int j = 0; j < 8; j++) {
            float mn = src[32 * j], mx = src[32 * j];
            for (int l = 1; l < 32; l++) {
                mn = std::min(mn, src[32 * j + l]);
                mx = std::max(mx, src[32 * j + l]);
            }
            mn = std::min(mn, 0.0f);
            scales[j] = (mx - mn) / 15;
            mins[j] = -mn;
            max_scale = std::max(max_scale, scales[j]);
            max_min = std::max(max_min, mins[j]);
        }
        const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.0f;
        const float inv_min = max_min > 0 ? 63.f / max_min : 0.0f;
        uint8_t ls[8], lm[8];  // 6-bit scale / min per sub-block
        for (int j = 0; j < 8; j++) {
            ls[j] = (uint8_t)std::min(63, nearest_int(inv_scale * scales[j]));
            lm[j] = (uint8_t)std::min(63, nearest_int(inv_min * mins[j]));
        }
        memset(b[i].scales, 0, K_SCALE_SIZE);
        for (int j = 0; j < 8; j++) {  // inverse of get_scale_min_k4
            if (j < 4) {
                b[i].scales[j] = ls[j];
                b[i].scales[j + 4] = lm[j];
            } else {
                b[i].scales[j + 4] = (ls[j] & 0xf) | ((lm[j] & 0xf) << 4);
                b[i].scales[j - 4] |= (ls[j] >> 4) << 6;
                b[i].scales[j - 0] |= (lm[j] >> 4) << 6;
            }
        }
        b[i].d = fp32_to_fp16(max_scale / 63.f);
        b[i].dmin = fp32_to_fp16(max_min / 63.f);
        const float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
        uint8_t L[QK_K];  // 4-bit quants
        for (int j = 0; j < 8; j++) {
            const float ds = d * ls[j], dm = dmin * lm[j];
            for (int l = 0; l < 32; l++) {
                const int q = ds ? nearest_int((src[32 * j + l] + dm) / ds) : 0;
                L[32 * j + l] = (uint8_t)std::max(0, std::min(15, q));
            }
        }
        for (int j = 0; j < QK_K; j += 64) {
            for (int l = 0; l < 32; l++) b[i].qs[j / 2 + l] = L[j + l] | (L[j + l + 32] << 4);
        }
    }
}

static void vec_dot_q4_K_q8_K_generic(int n, float* s, const void* w, const void* x) {
    const block_q4_K* a = (const block_q4_K*)w;
    const block_q8_K* b = (const block_q8_K*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK_K; i++) {
        int sum_q = 0, sum_m = 0;  // sum_j sc_j * dot_j, sum_j m_j * (sum of q8 in sub-block j)
        const uint8_t* q4 = a[i].qs;
        const int8_t* q8 = b[i].qs;
        for (int j = 0; j < 4; j++, q4 += 32, q8 += 64) {
            uint8_t sc0, m0, sc1, m1;
            get_scale_min_k4(2 * j, a[i].scales, &sc0, &m0);
            get_scale_min_k4(2 * j + 1, a[i].scales, &sc1, &m1);
            int dot0 = 0, dot1 = 0;
            for (int l = 0; l < 32; l++) {
                dot0 += (q4[l] & 0xf) * q8[l];
                dot1 += (q4[l] >> 4) * q8[l + 32];
            }
            sum_q += sc0 * dot0 + sc1 * dot1;
            sum_m += m0 * (b[i].bsums[4 * j] + b[i].bsums[4 * j + 1]) +
                     m1 * (b[i].bsums[4 * j + 2] + b[i].bsums[4 * j + 3]);
        }
        sum += b[i].d * (h2f(a[i].d) * sum_q - h2f(a[i].dmin) * sum_m);
    }
    *s = sum;
}

// ---- q6_K ----

static void to_float_q6_K_generic(const void* src, float* dst, int64_t n) {
    const block_q6_K* b = (const block_q6_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++) {
        const float d = h2f(b[i].d);
        const uint8_t* ql = b[i].ql;
        const uint8_t* qh = b[i].qh;
        const int8_t* sc = b[i].scales;
        for (int h = 0; h < QK_K; h += 128, ql += 64, qh += 32, sc += 8, dst += 128) {
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                const int q1 = (int8_t)((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                const int q2 = (int8_t)((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                const int q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                const int q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                dst[l] = d * sc[is + 0] * q1;
                dst[l + 32] = d * sc[is + 2] * q2;
                dst[l + 64] = d * sc[is + 4] * q3;
                dst[l + 96] = d * sc[is + 6] * q4;
            }
        }
    }
}

// simple quantizer: per 16-element sub-block scale = max/-32 (max: element of largest |x|),
// scales quantized to int8 against the super-block maximum; quants recomputed from those.
static void from_float_q6_K_generic(const float* src, void* dst, int64_t n) {
    block_q6_K* b = (block_q6_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float scales[16];  // (sub-block)
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int j = 0; j < 16; j++) {
            float amax = 0.0f, max = 0.0f;
            for (int l = 0; l < 16; l++) {
                const float v = src[16 * j + l];
                if (amax < fabsf(v)) { amax = fabsf(v); max = v; }
            }
            scales[j] = max / -32;
            if (amax_scale < fabsf(scales[j])) { amax_scale = fabsf(scales[j]); max_scale = scales[j]; }
        }
        const float iscale = max_scale ? -128.f / max_scale : 0.0f;
        for (int j = 0; j < 16; j++) b[i].scales[j] = (int8_t)std::min(127, nearest_int(iscale * scales[j]));
        b[i].d = fp32_to_fp16(iscale ? 1.0f / iscale : 0.0f);
        const float d = h2f(b[i].d);
        uint8_t L[QK_K];  // 6-bit quants, offset by 32
        for (int j = 0; j < 16; j++) {
            const float ds = d * b[i].scales[j];
            for (int l = 0; l < 16; l++) {
                const int q = ds ? nearest_int(src[16 * j + l] / ds) : 0;
                L[16 * j + l] = (uint8_t)(std::max(-32, std::min(31, q)) + 32);
            }
        }
        uint8_t* ql = b[i].ql;
        uint8_t* qh = b[i].qh;
        for (int j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                const uint8_t* q = L + j + l;
                ql[l] = (q[0] & 0xf) | ((q[64] & 0xf) << 4);
                ql[l + 32] = (q[32] & 0xf) | ((q[96] & 0xf) << 4);
                qh[l] = (q[0] >> 4) | ((q[32] >> 4) << 2) | ((q[64] >> 4) << 4) | ((q[96] >> 4) << 6);
            }
        }
    }
}

static void vec_dot_q6_K_q8_K_generic(int n, float* s, const void* w, const void* x) {
    const block_q6_K* a = (const block_q6_K*)w;
    const block_q8_K* b = (const block_q8_K*)x;
    float sum = 0.0f;
    for (int i = 0; i < n / QK_K; i++) {
        const uint8_t* ql = a[i].ql;
        const uint8_t* qh = a[i].qh;
        const int8_t* sc = a[i].scales;
        const int8_t* q8 = b[i].qs;
        int sumi = 0;
        for (int h = 0; h < QK_K; h += 128, ql += 64, qh += 32, sc += 8, q8 += 128) {
            int dots[8] = {0};  // (16-element sub-block within this half)
            for (int l = 0; l < 32; l++) {
                const int is = l / 16;
                dots[is + 0] += (((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32) * q8[l];
                dots[is + 2] += (((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32) * q8[l + 32];
                dots[is + 4] += (((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32) * q8[l + 64];
                dots[is + 6] += (((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32) * q8[l + 96];
            }
            for (int k = 0; k < 8; k++) sumi += sc[k] * dots[k];
        }
        sum += h2f(a[i].d) * b[i].d * sumi;
    }
    *s = sum;
}

// ---- q8_K (activation type of the k-quants) ----

static void to_float_q8_K_generic(const void* src, float* dst, int64_t n) {
    const block_q8_K* b = (const block_q8_K*)src;
    for (int64_t i = 0; i < n / QK_K; i++, dst += QK_K) {
        for (int j = 0; j < QK_K; j++) dst[j] = b[i].d * b[i].qs[j];
    }
}

// ggml quantize_row_q8_K_ref: iscale = -127/max (max: element of largest |x|, with sign),
// q = nearest_int(iscale * x) clamped to 127, d = 1/iscale, bsums over 16s
static void from_float_q8_K_generic(const float* src, void* dst, int64_t n) {
    block_q8_K* b = (block_q8_K*)dst;
    for (int64_t i = 0; i < n / QK_K; i++, src += QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK_K; j++) {
            if (fabsf(src[j]) > amax) { amax = fabsf(src[j]); max = src[j]; }
        }
        if (amax == 0.0f) {
            memset(&b[i], 0, sizeof(block_q8_K));
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < QK_K; j++) b[i].qs[j] = (int8_t)std::min(127, nearest_int(iscale * src[j]));
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b[i].qs[16 * j + l];
            b[i].bsums[j] = (int16_t)sum;
        }
        b[i].d = 1 / iscale;
    }
}

// ---- table ----

static KernelTable make_generic_table() {
    KernelTable t;
    t.isa = "generic";
    auto set = [&](GType ty, int blck, size_t bytes, GType vt, auto to_f, auto from_f) {
        TypeKernels& k = t.types[ty];
        k.blck = blck;
        k.bytes = bytes;
        k.vec_type = vt;
        k.to_float = to_f;
        k.from_float = from_f;
    };
    set(GT_F32, 1, 4, GT_F32, to_float_f32_generic, from_float_f32_generic);
    set(GT_F16, 1, 2, GT_F32, to_float_f16_generic, from_float_f16_generic);
    set(GT_Q4_0, QK4_0, sizeof(block_q4_0), GT_Q8_0, to_float_q4_0_generic, from_float_q4_0_generic);
    set(GT_Q4_1, QK4_1, sizeof(block_q4_1), GT_Q8_1, to_float_q4_1_generic, from_float_q4_1_generic);
    set(GT_Q5_0, QK5_0, sizeof(block_q5_0), GT_Q8_0, to_float_q5_0_generic, from_float_q5_0_generic);
    set(GT_Q8_0, QK8_0, sizeof(block_q8_0), GT_Q8_0, to_float_q8_0_generic, from_float_q8_0_generic);
    set(GT_Q8_1, QK8_1, sizeof(block_q8_1), GT_Q8_1, to_float_q8_1_generic, from_float_q8_1_generic);
    set(GT_Q4_K, QK_K, sizeof(block_q4_K), GT_Q8_K, to_float_q4_K_generic, from_float_q4_K_generic);
    set(GT_Q6_K, QK_K, sizeof(block_q6_K), GT_Q8_K, to_float_q6_K_generic, from_float_q6_K_generic);
    set(GT_Q8_K, QK_K, sizeof(block_q8_K), GT_Q8_K, to_float_q8_K_generic, from_float_q8_K_generic);

    t.types[GT_F32].vec_dot = vec_dot_f32_f32_generic;
    t.types[GT_F16].vec_dot = vec_dot_f16_f32_generic;
    t.types[GT_Q4_0].vec_dot = vec_dot_q4_0_q8_0_generic;
    t.types[GT_Q4_1].vec_dot = vec_dot_q4_1_q8_1_generic;
    t.types[GT_Q5_0].vec_dot = vec_dot_q5_0_q8_0_generic;
    t.types[GT_Q8_0].vec_dot = vec_dot_q8_0_q8_0_generic;
    t.types[GT_Q4_K].vec_dot = vec_dot_q4_K_q8_K_generic;
    t.types[GT_Q6_K].vec_dot = vec_dot_q6_K_q8_K_generic;

    t.types[GT_F32].gemm = gemm_by_vec_dot<vec_dot_f32_f32_generic>;
    t.types[GT_F16].gemm = gemm_by_vec_dot<vec_dot_f16_f32_generic>;
    t.types[GT_Q4_0].gemm = gemm_by_vec_dot<vec_dot_q4_0_q8_0_generic>;
    t.types[GT_Q4_1].gemm = gemm_by_vec_dot<vec_dot_q4_1_q8_1_generic>;
    t.types[GT_Q5_0].gemm = gemm_by_vec_dot<vec_dot_q5_0_q8_0_generic>;
    t.types[GT_Q8_0].gemm = gemm_by_vec_dot<vec_dot_q8_0_q8_0_generic>;
    t.types[GT_Q4_K].gemm = gemm_by_vec_dot<vec_dot_q4_K_q8_K_generic>;
    t.types[GT_Q6_K].gemm = gemm_by_vec_dot<vec_dot_q6_K_q8_K_generic>;

    t.scores_f16_g = scores_g_by_head<scores_by_dot<dot_f16_f32_generic>>;
    t.wsum_f16_g = wsum_g_by_head<wsum_by_axpy<axpy_f16_f32_generic>>;
    t.kv_quantize_q8 = kv_quantize_q8;
    t.scores_q8_g = scores_q8_g_ref;
    t.wsum_q8_g = wsum_q8_g_ref;
    t.exp_sum = exp_sum_generic;
    t.silu_mul = silu_mul_generic;
    t.gelu_mul = gelu_mul_generic;
    t.max_f32 = max_f32_generic;
    t.f32_to_f16 = f32_to_f16_generic;
    return t;
}

// ---- q8_0 kv rows ----

// roundf (half away from zero) for |v| < 2^23, inline: a libm call per value cost a prefill with a q8_0
// cache ~2%. v - trunc(v) is exact at these magnitudes, so the result is roundf's, bit for bit
static inline int round_away(float v) {
    int i = (int)v;
    const float f = v - (float)i;
    return i + (f >= 0.5f) - (f <= -0.5f);
}

void kv_quantize_q8(const float* x, uint8_t* row, int hd) {
    for (int b = 0; b * kKvQ8Block < hd; b++) {
        const int i0 = b * kKvQ8Block, i1 = std::min(hd, i0 + kKvQ8Block);
        float amax = 0.0f;
        for (int i = i0; i < i1; i++) amax = std::max(amax, std::fabs(x[i]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        for (int i = i0; i < i1; i++) row[i] = (uint8_t)(int8_t)round_away(x[i] * id);  // as quantize_row_q8_0_ref
        const half h = fp32_to_fp16(d);
        std::memcpy(row + hd + 2 * b, &h, sizeof(half));
    }
}

void kv_dequantize_q8(const uint8_t* row, float* y, int hd) {
    for (int i = 0; i < hd; i++) y[i] = kv_q8_scale(row, hd, i / kKvQ8Block) * (float)(int8_t)row[i];
}

const KernelTable& kernels_generic() {
    static const KernelTable table = make_generic_table();
    return table;
}

}  // namespace ec
