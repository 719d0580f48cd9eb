// neon kernels (aarch64; neon is baseline there): f16/f32, activation quantizers, the table, and the
// run-time choice of the dotprod / i8mm tables. the int8 kernels (vec_dot, tiled gemm) live in
// arm_neon_int8.inc, built here for armv8-a and again in arm_neon_dotprod.cpp / arm_neon_i8mm.cpp with
// those extensions. same arithmetic as generic.cpp; float sums may be reassociated.
// layout: f16/f32, activation quantizers, tables, cpu features.
#if defined(__aarch64__)

#include <arm_neon.h>

#include <cmath>
#include <cstring>

#if defined(__linux__)
#include <sys/auxv.h>
#elif defined(__APPLE__)
#include <sys/sysctl.h>
#endif

#include "kernels.h"
#include "kernels_internal.h"
#include "arm_neon_int8.inc"  // h2f, dot_i8x16, set_int8_kernels (armv8-a build)

namespace ec {

// the int8 kernels built with +dotprod / +dotprod+i8mm (call only on a cpu that has them)
void set_neon_dotprod_kernels(KernelTable& t);
void set_neon_i8mm_kernels(KernelTable& t);

namespace {

// ---- f16 / f32 ----

void f16_to_f32_neon(const half* x, float* y, int64_t n) {
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(y + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(x + i))));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

void to_float_f16_neon(const void* src, float* dst, int64_t n) { f16_to_f32_neon((const half*)src, dst, n); }

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

// ---- table ----

// ---- attention over q8_0 kv rows. scores: as scores_q8_g_ref (the queries quantized as kv rows, each
// block's dot exact in int32: int16 products, pairwise added into int32 lanes), so the same bits.
// wsum: wsum_q8_groups's integer sums, two rows a step

// exact dot of one block's 32 int8 pairs (|products| <= 127 * 128: int16 holds each, int32 their sums);
// n is 32 (scores_q8_g_neon takes head sizes of whole blocks only)
inline int32_t dot_i8x32(const int8_t* a, const int8_t* b, int) {
    int32x4_t acc = vdupq_n_s32(0);
    for (int i = 0; i < 32; i += 16) {
        const int8x16_t x = vld1q_s8(a + i), y = vld1q_s8(b + i);
        acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(x), vget_low_s8(y)));
        acc = vpadalq_s16(acc, vmull_s8(vget_high_s8(x), vget_high_s8(y)));
    }
    return vaddvq_s32(acc);
}

void scores_q8_g_neon(int n, int hd, int G, const uint8_t* k, size_t ld, const float* q, float* s, size_t lds) {
    if (hd % 32 != 0) return scores_q8_g_ref(n, hd, G, k, ld, q, s, lds);
    scores_q8_blocks<dot_i8x32>(n, hd, G, k, ld, q, s, lds);
}

// the group's exact int32 sums (wsum_q8_groups): two rows at a time, 8 dims a step: int8 x int8 products
// (the weights are 0..127) into int16, two rows' worth (2 * 127 * 127 < 2^15), widened into int32
inline void wsum_q8_acc_neon(int m, const uint8_t* iw, const uint8_t* v, size_t ld, int nd, int32_t* acc) {
    if (nd != kKvQ8Block) return wsum_q8_acc_ref(m, iw, v, ld, nd, acc);
    int32x4_t a[8];
    for (int k = 0; k < 8; k++) a[k] = vdupq_n_s32(0);
    for (int j = 0; j < m; j += 2) {
        const int8_t* r0 = (const int8_t*)v + (size_t)j * ld;
        const int8x8_t w0 = vdup_n_s8((int8_t)iw[j]), w1 = vdup_n_s8(j + 1 < m ? (int8_t)iw[j + 1] : 0);
        const int8_t* r1 = j + 1 < m ? r0 + ld : r0;   // a lone last row: its pair weighs 0
        for (int i = 0; i < 4; i++) {
            const int16x8_t p = vmlal_s8(vmull_s8(vld1_s8(r0 + 8 * i), w0), vld1_s8(r1 + 8 * i), w1);
            a[2 * i] = vaddw_s16(a[2 * i], vget_low_s16(p));
            a[2 * i + 1] = vaddw_s16(a[2 * i + 1], vget_high_s16(p));
        }
    }
    for (int k = 0; k < 8; k++) vst1q_s32(acc + 4 * k, a[k]);
}

void wsum_q8_g_neon(int n, int hd, int G, const float* w, size_t ldw, const uint8_t* v, size_t ld, float* y, int64_t phase) {
    wsum_q8_groups<wsum_q8_acc_neon>(n, hd, G, w, ldw, v, ld, y, phase);
}

KernelTable make_neon_table() {
    KernelTable t = kernels_generic();  // anything not overridden stays generic
    t.isa = "neon";
    t.types[GT_F32].vec_dot = vec_dot_f32_f32_neon;
    t.types[GT_F16].vec_dot = vec_dot_f16_f32_neon;
    t.types[GT_F16].to_float = to_float_f16_neon;
    t.types[GT_Q8_0].from_float = from_float_q8_0_neon;
    t.types[GT_Q8_1].from_float = from_float_q8_1_neon;
    t.types[GT_Q8_K].from_float = from_float_q8_K_neon;
    set_int8_kernels(t);

    t.types[GT_F32].gemm = gemm_by_vec_dot<vec_dot_f32_f32_neon>;
    t.types[GT_F16].gemm = gemm_by_vec_dot<vec_dot_f16_f32_neon>;

    t.scores_f16_g = scores_g_by_head<scores_f16_neon>;
    t.wsum_f16_g = wsum_g_by_head<wsum_f16_neon>;
    t.scores_q8_g = scores_q8_g_neon;
    t.wsum_q8_g = wsum_q8_g_neon;
    t.f32_to_f16 = f32_to_f16_neon;
    return t;
}

// the neon table with another file's int8 kernels
KernelTable derived_table(const char* isa, void (*set_int8)(KernelTable&)) {
    KernelTable t = *kernels_neon();
    t.isa = isa;
    set_int8(t);
    return t;
}

// ---- cpu features: read at run time (hwcap on linux, sysctl on macos), never from -march ----

#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#ifndef AT_HWCAP2
#define AT_HWCAP2 26
#endif
#ifndef HWCAP2_I8MM
#define HWCAP2_I8MM (1 << 13)
#endif
bool cpu_has_dotprod() { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
bool cpu_has_i8mm() { return (getauxval(AT_HWCAP2) & HWCAP2_I8MM) != 0; }
#elif defined(__APPLE__)
bool sysctl_on(const char* name) {
    int v = 0;
    size_t len = sizeof(v);
    return sysctlbyname(name, &v, &len, nullptr, 0) == 0 && v != 0;
}
bool cpu_has_dotprod() { return sysctl_on("hw.optional.arm.FEAT_DotProd"); }
bool cpu_has_i8mm() { return sysctl_on("hw.optional.arm.FEAT_I8MM"); }
#else
bool cpu_has_dotprod() { return false; }
bool cpu_has_i8mm() { return false; }
#endif

}  // namespace

const KernelTable* kernels_neon() {
    static const KernelTable table = make_neon_table();
    return &table;
}

const KernelTable* kernels_neon_dotprod() {
    if (!cpu_has_dotprod()) return nullptr;
    static const KernelTable table = derived_table("neon_dotprod", set_neon_dotprod_kernels);
    return &table;
}

// the i8mm file's vec_dots use sdot too
const KernelTable* kernels_neon_i8mm() {
    if (!cpu_has_dotprod() || !cpu_has_i8mm()) return nullptr;
    static const KernelTable table = derived_table("neon_i8mm", set_neon_i8mm_kernels);
    return &table;
}

}  // namespace ec

#endif  // __aarch64__
