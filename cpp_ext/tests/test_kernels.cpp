// standalone kernel tests: every available kernel table against the scalar generic table and
// against float64 dot products of the dequantized values. prints the max difference per check,
// exits non-zero on any failure; the last line is `N passed, N failed`.
//   test_kernels [--dump DIR]   (--dump: write raw blocks + generic dequantization for tests/test_kernels.py)
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../kernels/kernels.h"

using namespace ec;

// ---- named tolerances ----

// float summation: a dot product accumulated in float over `terms` block results (or elements for
// f32/f16) is off by at most about terms * FLT_EPSILON * sum|w x| (the standard gamma_n bound);
// SUM_SLACK covers the roundings inside each term (scale products, int -> float) and the final
// horizontal reduction of up to 32 lanes.
constexpr double SUM_SLACK = 16.0;
static double dot_tol(int terms, double l1) { return (terms + SUM_SLACK) * FLT_EPSILON * l1 + 1e-30; }

// fp16 stores 11 significant bits: a round trip is off by at most half an ulp, 2^-11 relative
constexpr double FP16_REL = 1.0 / 2048;

// quantize -> dequantize round trips, as a fraction of the block's max |x| (normal random data):
// q8_0/q8_1: half a step (1/254) plus the fp16 rounding of d times the largest quant (127 * 2^-11 / 127)
constexpr double RT_Q8_0 = 0.5 / 127 + FP16_REL + 1e-4;
// q8_K: d is f32; half a step of max/127
constexpr double RT_Q8_K = 0.5 / 127 + 1e-4;
// q4_0: d = max/-8, the far end clamps from +8 to +7 steps: one full step, 1/8, plus fp16 of d
constexpr double RT_Q4_0 = 1.0 / 8 + 8 * FP16_REL;
// q4_1: half a step of range/15 (range <= 2 max) plus fp16 of d and m
constexpr double RT_Q4_1 = 1.0 / 15 + 17 * FP16_REL;
// q5_0: d = max/-16, clamp from +16 to +15 steps: one step, 1/16, plus fp16 of d
constexpr double RT_Q5_0 = 1.0 / 16 + 16 * FP16_REL;
// q4_K: half a step (<= 1/15 of the super-block max) plus 6-bit quantization of the sub-block
// scale (15 * max_scale/126 ~ 0.016) and min (max_min/126 ~ 0.008), plus fp16 of d/dmin
constexpr double RT_Q4_K = 1.0 / 15 + 0.016 + 0.008 + 0.005;
// q6_K: half a step (1/64 of the max), int8 scale quantization (32 * max_scale/256 = max/256),
// plus fp16 of d
constexpr double RT_Q6_K = 1.0 / 64 + 1.0 / 256 + 64 * FP16_REL;

// exp of x - max: the polynomial's error (about 1 ulp), the rounding of x - max and of the range
// reduction (k ln 2 in two parts): a few ulp
constexpr double EXP_REL = 8 * FLT_EPSILON;
// wsum_q8_g: each quantized weight within half a step (amax / 127) of w * d, plus the roundings of
// w * d * 127 / amax in f32 (a few ulps of 127: under 1e-4 of a step)
constexpr double WSUM_Q8_STEP = 0.5 + 1e-4;

// ---- check bookkeeping ----

static int n_passed = 0, n_failed = 0;

static void check(const std::string& name, double max_diff, double tol, const char* unit = "") {
    const bool ok = max_diff <= tol;  // nan fails
    (ok ? n_passed : n_failed)++;
    printf("%s %-58s max diff %.3e%s (tol %.3e)\n", ok ? "PASS" : "FAIL", name.c_str(), max_diff, unit, tol);
}

// for checks whose tolerance varies per case: pass when every diff/tol ratio <= 1; prints the diff
// at the worst ratio and that ratio
static void check_ratio(const std::string& name, double max_diff, double worst_ratio) {
    const bool ok = worst_ratio <= 1.0;
    (ok ? n_passed : n_failed)++;
    printf("%s %-58s max diff %.3e (%.3f x tol)\n", ok ? "PASS" : "FAIL", name.c_str(), max_diff, worst_ratio);
}

static const char* type_name(int t) {
    switch (t) {
        case GT_F32: return "f32";
        case GT_F16: return "f16";
        case GT_Q4_0: return "q4_0";
        case GT_Q4_1: return "q4_1";
        case GT_Q5_0: return "q5_0";
        case GT_Q8_0: return "q8_0";
        case GT_Q8_1: return "q8_1";
        case GT_Q4_K: return "q4_K";
        case GT_Q6_K: return "q6_K";
        case GT_Q8_K: return "q8_K";
    }
    return "?";
}

static const int WEIGHT_TYPES[] = {GT_F32, GT_F16, GT_Q4_0, GT_Q4_1, GT_Q5_0, GT_Q8_0, GT_Q4_K, GT_Q6_K};
static const int ACT_TYPES[] = {GT_Q8_0, GT_Q8_1, GT_Q8_K};

static std::mt19937 rng(1234);

// normal data with a varying scale every 16 elements (exercises per-block scales)
static std::vector<float> random_floats(int64_t n, float scale = 1.0f) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::uniform_real_distribution<float> ud(0.1f, 2.0f);
    std::vector<float> v(n);
    float s = scale;
    for (int64_t i = 0; i < n; i++) {
        if (i % 16 == 0) s = scale * ud(rng);
        v[i] = s * nd(rng);
    }
    return v;
}

static std::vector<uint8_t> quantize(const TypeKernels& k, const std::vector<float>& x) {
    std::vector<uint8_t> q(row_bytes(k, (int64_t)x.size()));
    k.from_float(x.data(), q.data(), (int64_t)x.size());
    return q;
}

static std::vector<float> dequantize(const TypeKernels& k, const void* q, int64_t n) {
    std::vector<float> x(n);
    k.to_float(q, x.data(), n);
    return x;
}

// lengths: awkward multiples of the block; f32/f16 also 4097-ish
static std::vector<int> test_lengths(int blck) {
    if (blck == 1) return {1, 3, 17, 33, 255, 4097, 4103};
    std::vector<int> v;
    for (int nb : {1, 3, 17, 33}) v.push_back(nb * blck);
    return v;
}

// float64 reference of a weight row (type wt) times an activation (its vec_type), both dequantized
// with the generic table; l1 = sum |w x|. q4_1 x q8_1 uses the stored s = fp16(d * sum q) for the
// min term, by definition of the format, so the reference does too.
static double ref_dot(int wt, const void* w, const void* x, int n, double* l1) {
    const KernelTable& g = kernels_generic();
    const TypeKernels& kw = g.types[wt];
    std::vector<float> wf = dequantize(kw, w, n);
    std::vector<float> xf = dequantize(g.types[kw.vec_type], x, n);
    double sum = 0.0, abs_sum = 0.0;
    for (int i = 0; i < n; i++) {
        sum += (double)wf[i] * xf[i];
        abs_sum += fabs((double)wf[i] * xf[i]);
    }
    if (wt == GT_Q4_1) {
        const block_q4_1* a = (const block_q4_1*)w;
        const block_q8_1* b = (const block_q8_1*)x;
        for (int i = 0; i < n / QK4_1; i++) {
            int qsum = 0;
            for (int j = 0; j < QK8_1; j++) qsum += b[i].qs[j];
            const double m = fp16_to_fp32(a[i].m);
            sum += m * (fp16_to_fp32(b[i].s) - (double)fp16_to_fp32(b[i].d) * qsum);
            abs_sum += fabs(m * fp16_to_fp32(b[i].s));
        }
    }
    *l1 = abs_sum;
    return sum;
}

// ---- checks ----

static void test_fp16_scalar() {
    // every half -> float -> half is the identity (nan stays nan)
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = fp16_to_fp32((half)h);
        const half back = fp32_to_fp16(f);
        const bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !std::isnan(f) || (back & 0x7fff) <= 0x7c00 : back != h) bad++;
    }
    check("fp16 -> fp32 -> fp16 identity, all 65536 halfs", bad, 0, " mismatches");
    // values exactly between two halfs round to even; checked against the compiler's conversion
    // where it has one, else against the known neighbors
    int bad_rne = 0;
    for (uint32_t h = 0; h < 0x7bff; h++) {
        const double lo = fp16_to_fp32((half)h), hi = fp16_to_fp32((half)(h + 1));
        const float mid = (float)((lo + hi) / 2);  // exact in f32 (half has 11 bits)
        const half want = (h & 1) ? (half)(h + 1) : (half)h;
        if (fp32_to_fp16(mid) != want) bad_rne++;
        if (fp32_to_fp16(-mid) != (half)(want | 0x8000)) bad_rne++;
        // just above / below the midpoint
        if (fp32_to_fp16(nextafterf(mid, 1e9f)) != (half)(h + 1)) bad_rne++;
        if (fp32_to_fp16(nextafterf(mid, -1e9f)) != (half)h) bad_rne++;
    }
    check("fp32 -> fp16 round to nearest even at every midpoint", bad_rne, 0, " mismatches");
    int bad_edge = 0;
    bad_edge += fp32_to_fp16(65504.0f) != 0x7bff;
    bad_edge += fp32_to_fp16(65519.99f) != 0x7bff;
    bad_edge += fp32_to_fp16(65520.0f) != 0x7c00;  // ties to even -> inf
    bad_edge += fp32_to_fp16(1e10f) != 0x7c00;
    bad_edge += fp32_to_fp16(-INFINITY) != 0xfc00;
    bad_edge += (fp32_to_fp16(NAN) & 0x7c00) != 0x7c00 || (fp32_to_fp16(NAN) & 0x3ff) == 0;
    bad_edge += fp32_to_fp16(ldexpf(1.0f, -25)) != 0;       // tie between 0 and min subnormal -> 0
    bad_edge += fp32_to_fp16(ldexpf(1.5f, -25)) != 1;       // above the tie -> min subnormal
    bad_edge += fp32_to_fp16(ldexpf(1.0f, -24)) != 1;
    bad_edge += fp32_to_fp16(ldexpf(3.0f, -25)) != 2;       // 1.5 subnormal steps: tie -> even (2)
    bad_edge += fp32_to_fp16(ldexpf(1023.5f, -24)) != 0x400; // top subnormal tie rounds up to min normal
    bad_edge += fp32_to_fp16(-0.0f) != 0x8000;
#if defined(__aarch64__)
    using f16_native = __fp16;  // the compiler's own conversion (fcvt)
#elif defined(__FLT16_MAX__)
    using f16_native = _Float16;
#endif
#if defined(__aarch64__) || defined(__FLT16_MAX__)
    // the compiler's own conversion, on random bit patterns
    std::uniform_int_distribution<uint32_t> ub;
    for (int i = 0; i < 200000; i++) {
        uint32_t bits = ub(rng);
        float f;
        memcpy(&f, &bits, 4);
        if (std::isnan(f)) continue;
        const f16_native c = (f16_native)f;
        half want;
        memcpy(&want, &c, 2);
        bad_edge += fp32_to_fp16(f) != want;
    }
#endif
    check("fp32 -> fp16 edges (overflow, subnormals, inf/nan, compiler)", bad_edge, 0, " mismatches");
}

static void test_f16_helpers(const KernelTable& t) {
    const std::string isa = t.isa;
    for (int n : {1, 3, 17, 33, 4097}) {
        std::vector<float> x = random_floats(n, 3.0f);
        x[0] = 65520.0f;  // an overflow and a subnormal in every run
        if (n > 1) x[1] = 3e-7f;
        std::vector<half> h(n), hg(n);
        t.f32_to_f16(x.data(), h.data(), n);
        kernels_generic().f32_to_f16(x.data(), hg.data(), n);
        int bad = 0;
        for (int i = 0; i < n; i++) bad += h[i] != hg[i] || h[i] != fp32_to_fp16(x[i]);
        check(isa + " f32_to_f16 bit-exact n=" + std::to_string(n), bad, 0, " mismatches");

        std::vector<float> y(n);
        t.types[GT_F16].to_float(hg.data(), y.data(), n);   // the f16 weight rows and embeddings
        bad = 0;
        for (int i = 0; i < n; i++) {
            const float want = fp16_to_fp32(hg[i]);
            bad += memcmp(&y[i], &want, 4) != 0;
        }
        check(isa + " to_float f16 bit-exact n=" + std::to_string(n), bad, 0, " mismatches");
    }
}

// grouped-query runs (G queries per kv head; rows of fp16 keys/values `ld` apart: a kv head inside the
// cache's rows) against float64, odd row counts included; head sizes with a register path (64, 128,
// 256) and without (40); and the softmax numerators (exp of x - max) against double exp
static void test_attention_groups(const KernelTable& t) {
    const std::string isa = t.isa;
    for (int hd : {40, 64, 128, 256}) {
        for (int G : {1, 3, 4, 6}) {
            double worst_s = 0, worst_sd = 0, worst_w = 0, worst_wd = 0;
            for (int n : {1, 3, 17, 300}) {
                const size_t ld = (size_t)hd * 3 + 8, lds = n + 5, ldw = n + 3;
                std::vector<float> kf = random_floats((int64_t)n * ld, 2.0f), q = random_floats((int64_t)G * hd);
                std::vector<half> kh(kf.size());
                for (size_t i = 0; i < kf.size(); i++) kh[i] = fp32_to_fp16(kf[i]);
                const half* k = kh.data() + hd;
                std::vector<float> s(G * lds, -1.0f);
                t.scores_f16_g(n, hd, G, k, ld, q.data(), s.data(), lds);
                std::vector<float> w = random_floats((int64_t)G * ldw), y = random_floats((int64_t)G * hd), y0 = y;
                t.wsum_f16_g(n, hd, G, w.data(), ldw, k, ld, y.data());
                for (int g = 0; g < G; g++) {
                    for (int j = 0; j < n; j++) {
                        double ref = 0, l1 = 0;
                        for (int i = 0; i < hd; i++) {
                            const double term = (double)fp16_to_fp32(k[(size_t)j * ld + i]) * q[g * hd + i];
                            ref += term, l1 += fabs(term);
                        }
                        const double d = fabs(s[g * lds + j] - ref), r = d / dot_tol(hd, l1);
                        if (!(r < worst_s)) worst_s = std::isnan(r) ? INFINITY : r, worst_sd = d;
                    }
                    for (int i = 0; i < hd; i++) {
                        double ref = y0[g * hd + i], l1 = fabs(y0[g * hd + i]);
                        for (int j = 0; j < n; j++) {
                            const double term = (double)w[g * ldw + j] * fp16_to_fp32(k[(size_t)j * ld + i]);
                            ref += term, l1 += fabs(term);
                        }
                        const double d = fabs(y[g * hd + i] - ref), r = d / dot_tol(n + 1, l1);
                        if (!(r < worst_w)) worst_w = std::isnan(r) ? INFINITY : r, worst_wd = d;
                    }
                }
            }
            const std::string tag = " hd=" + std::to_string(hd) + " G=" + std::to_string(G);
            check_ratio(isa + " scores_f16_g vs f64" + tag, worst_sd, worst_s);
            check_ratio(isa + " wsum_f16_g vs f64" + tag, worst_wd, worst_w);
        }
    }
    for (int n : {1, 7, 17, 33, 1000}) {   // max: exact
        std::vector<float> x = random_floats(n, 5.0f);
        check(isa + " max_f32 n=" + std::to_string(n), t.max_f32(n, x.data()) != *std::max_element(x.begin(), x.end()), 0, " wrong");
    }
    // exp: a few ulp per element (polynomial + range reduction), the sum as a float sum of n terms
    for (int n : {1, 7, 17, 1000}) {
        std::vector<float> x = random_floats(n, 30.0f);
        x[0] = -200.0f;  // underflows to 0
        const float mx = *std::max_element(x.begin(), x.end());
        std::vector<float> e = x;
        const float sum = t.exp_sum(n, e.data(), mx);
        double worst = 0, worst_d = 0, ref_sum = 0;
        for (int i = 0; i < n; i++) {
            const double ref = std::exp((double)x[i] - mx);
            ref_sum += ref;
            if (ref < 1e-37) continue;  // flushed to 0 below the smallest normal
            // x - max rounds in float first: an absolute error of half an ulp of |x - max| in the argument
            const double d = fabs(e[i] - ref) / ref, r = d / (EXP_REL + fabs(x[i] - mx) * FLT_EPSILON / 2);
            if (!(r < worst)) worst = std::isnan(r) ? INFINITY : r, worst_d = d;
        }
        check_ratio(isa + " exp_sum elements vs f64 (rel) n=" + std::to_string(n), worst_d, worst);
        check(isa + " exp_sum sum vs f64 n=" + std::to_string(n), fabs(sum - ref_sum) / ref_sum,
              EXP_REL + (n + SUM_SLACK) * FLT_EPSILON, " rel");
    }
}

// the quantizers' hard cases in x[0, 3 * blck): a zero block, exact .5 ties after scaling, a constant block,
// a lone negative max
static void put_quantizer_hard_cases(float* x, int blck) {
    for (int j = 0; j < blck; j++) x[j] = 0.0f;
    for (int j = 0; j < blck; j++) x[blck + j] = (float)((j % 9) - 4) * 0.5f + ((j == 0) ? 63.5f : 0.0f);
    for (int j = 0; j < blck; j++) x[2 * blck + j] = (j == 5) ? -7.0f : 1.0f;
}

// a table's kv_quantize_q8 (the ring's rows, and the avx2 table's quantized queries) against the
// reference, bit for bit: random rows and the hard cases of the activation quantizers (a zero block,
// exact .5 ties after scaling, a constant block, a lone negative max), head sizes of whole blocks and not
static void test_kv_quantize(const KernelTable& t) {
    for (int hd : {32, 40, 64, 96, 128, 256}) {
        int bad = 0;
        for (int rep = 0; rep < 20; rep++) {
            std::vector<float> x = random_floats(hd, rep % 2 ? 30.0f : 1.0f);
            if (rep == 0 && hd >= 3 * kKvQ8Block) put_quantizer_hard_cases(x.data(), kKvQ8Block);
            const size_t rb = kv_q8_row_bytes(hd);
            std::vector<uint8_t> rt(rb, 0xa5), rg(rb, 0x5a);
            t.kv_quantize_q8(x.data(), rt.data(), hd);
            kv_quantize_q8(x.data(), rg.data(), hd);
            for (size_t i = 0; i < rb; i++) bad += rt[i] != rg[i];
        }
        check(std::string(t.isa) + " kv_quantize_q8 == reference hd=" + std::to_string(hd), bad, 0, " bytes");
    }
}

// swiglu against float64, including saturated gates (|g| up to 200: exp over- and underflows)
// q8_0 kv rows (kv_quantize_q8): the round trip within half a step of each block's max, and the
// attention runs over such rows against float64 on the exactly dequantized values (kv_dequantize_q8):
// scores against the query quantized as the kernels do (kernels.h: as a kv row, exactly dequantized),
// whose int8 block dots are exact (a few roundings per row). wsum (kernels.h: the weights quantized
// per group of 32 positions, 0..127 against the group's max): against float64 on the weights quantized
// as the contract says (one fma per group and query: a few roundings), within half a weight step of
// float64 on the weights as given, and bit for bit the generic table's (integer sums, then the same
// fma). the weights are softmax numerators (>= 0), some 0 and some small; groups start mid-call
// (phase). rows sit ld bytes apart (a kv head inside a token's row of 3 heads, as in a chunk)
static void test_attention_q8(const KernelTable& t) {
    const std::string isa = t.isa;
    for (int hd : {40, 64, 128, 256}) {
        const size_t rb = kv_q8_row_bytes(hd), ld = 3 * rb + 8;
        double rt_worst = 0;
        for (int G : {1, 3, 4, 6}) {
            double worst_s = 0, worst_sd = 0, worst_w = 0, worst_wd = 0, worst_x = 0, worst_xd = 0, worst_bits = 0;
            for (int n : {1, 3, 17, 300}) {
                std::vector<float> kf = random_floats((int64_t)n * hd, 2.0f), q = random_floats((int64_t)G * hd);
                std::vector<uint8_t> buf(n * ld + 1);
                const uint8_t* k = buf.data() + rb;   // the second head
                std::vector<float> deq((size_t)n * hd);
                for (int j = 0; j < n; j++) {
                    kv_quantize_q8(kf.data() + (size_t)j * hd, buf.data() + rb + (size_t)j * ld, hd);
                    kv_dequantize_q8(k + (size_t)j * ld, deq.data() + (size_t)j * hd, hd);
                    for (int b = 0; b * 32 < hd; b++) {
                        double amax = 0, d = 0;
                        for (int i = b * 32; i < std::min(hd, b * 32 + 32); i++) amax = std::max(amax, (double)fabs(kf[(size_t)j * hd + i]));
                        for (int i = b * 32; i < std::min(hd, b * 32 + 32); i++)
                            d = std::max(d, fabs(deq[(size_t)j * hd + i] - kf[(size_t)j * hd + i]));
                        rt_worst = std::max(rt_worst, amax ? d / amax : d);
                    }
                }
                const size_t lds = n + 5, ldw = n + 3;
                std::vector<float> s(G * lds, -1.0f);
                t.scores_q8_g(n, hd, G, k, ld, q.data(), s.data(), lds);
                std::vector<float> w = random_floats((int64_t)G * ldw), y = random_floats((int64_t)G * hd), y0 = y;
                for (size_t i = 0; i < w.size(); i++) w[i] = i % 7 == 3 ? 0.0f : std::fabs(w[i]) * (i % 5 == 1 ? 1e-3f : 1.0f);
                const int64_t phase = (7 * n + G) % 41;
                t.wsum_q8_g(n, hd, G, w.data(), ldw, k, ld, y.data(), phase);
                std::vector<float> yg = y0;
                kernels_generic().wsum_q8_g(n, hd, G, w.data(), ldw, k, ld, yg.data(), phase);
                for (size_t i = 0; i < y.size(); i++)
                    if (!(y[i] == yg[i])) worst_bits = std::max(worst_bits, std::isnan(y[i]) ? INFINITY : fabs(y[i] - yg[i]));
                std::vector<uint8_t> qrow(rb);
                std::vector<float> qdeq((size_t)G * hd);   // the queries as the kernels quantize them
                for (int g = 0; g < G; g++) {
                    kv_quantize_q8(q.data() + (size_t)g * hd, qrow.data(), hd);
                    kv_dequantize_q8(qrow.data(), qdeq.data() + (size_t)g * hd, hd);
                }
                for (int g = 0; g < G; g++) {
                    for (int j = 0; j < n; j++) {
                        double ref = 0, l1 = 0;
                        for (int i = 0; i < hd; i++) {
                            const double term = (double)deq[(size_t)j * hd + i] * qdeq[g * hd + i];
                            ref += term, l1 += fabs(term);
                        }
                        const double d = fabs(s[g * lds + j] - ref), r = d / dot_tol(hd, l1);
                        if (!(r < worst_s)) worst_s = std::isnan(r) ? INFINITY : r, worst_sd = d;
                    }
                    // the weights quantized per group and value block as kernels.h says, in f32
                    std::vector<double> yq(hd), l1q(hd), yx(hd), l1x(hd), half_step(hd);
                    for (int i = 0; i < hd; i++) yq[i] = yx[i] = y0[g * hd + i], l1q[i] = l1x[i] = fabs(y0[g * hd + i]);
                    for (int j0 = 0, m; j0 < n; j0 += m) {
                        m = std::min<int>(n - j0, 32 - (int)((phase + j0) % 32));
                        for (int b = 0; b * 32 < hd; b++) {
                            const int i0 = b * 32, i1 = std::min(hd, i0 + 32);
                            std::vector<float> a(m);
                            float amax = 0.0f;
                            for (int j = 0; j < m; j++) {
                                half h;
                                std::memcpy(&h, k + (size_t)(j0 + j) * ld + hd + 2 * b, 2);
                                a[j] = w[g * ldw + j0 + j] * fp16_to_fp32(h), amax = std::max(amax, a[j]);
                            }
                            const float scale = amax / 127.0f, id = amax > 0 ? 127.0f / amax : 0.0f;
                            for (int i = i0; i < i1; i++) {
                                double acc = 0, qabs = 0;
                                for (int j = 0; j < m; j++) {
                                    const double qv = (int8_t)k[(size_t)(j0 + j) * ld + i];
                                    acc += std::nearbyint(a[j] * id) * qv, qabs += fabs(qv);
                                    const double term = (double)w[g * ldw + j0 + j] * deq[(size_t)(j0 + j) * hd + i];
                                    yx[i] += term, l1x[i] += fabs(term);
                                }
                                yq[i] += (double)scale * acc, l1q[i] += fabs((double)scale * acc);
                                half_step[i] += WSUM_Q8_STEP * scale * qabs;
                            }
                        }
                    }
                    for (int i = 0; i < hd; i++) {
                        const double yi = y[g * hd + i];
                        const double d = fabs(yi - yq[i]), r = d / dot_tol(n / 32 + 2, l1q[i]);
                        if (!(r < worst_w)) worst_w = std::isnan(r) ? INFINITY : r, worst_wd = d;
                        const double dx = fabs(yi - yx[i]), rx = dx / (half_step[i] + dot_tol(n + 1, l1x[i]));
                        if (!(rx < worst_x)) worst_x = std::isnan(rx) ? INFINITY : rx, worst_xd = dx;
                    }
                }
            }
            const std::string tag = " hd=" + std::to_string(hd) + " G=" + std::to_string(G);
            check_ratio(isa + " scores_q8_g vs f64" + tag, worst_sd, worst_s);
            check_ratio(isa + " wsum_q8_g vs f64 (weights quantized)" + tag, worst_wd, worst_w);
            check_ratio(isa + " wsum_q8_g vs f64 (half a weight step)" + tag, worst_xd, worst_x);
            check(isa + " wsum_q8_g vs generic" + tag, worst_bits, 0.0, " (bits)");
        }
        check(isa + " kv q8_0 round trip hd=" + std::to_string(hd), rt_worst, RT_Q8_0, " of block max");
    }
}

static void test_silu(const KernelTable& t) {
    for (int n : {1, 7, 17, 1000}) {
        std::vector<float> g = random_floats(n, 8.0f), u = random_floats(n);
        if (n > 3) g[0] = 200.0f, g[1] = -200.0f, g[2] = 90.0f;
        std::vector<float> y = g;
        t.silu_mul(n, y.data(), u.data());
        double worst = 0;
        for (int i = 0; i < n; i++) {
            const double ref = (double)g[i] / (1.0 + std::exp(-(double)g[i])) * u[i];
            worst = std::max(worst, fabs(y[i] - ref) / (fabs(ref) + 1e-30) * (fabs(ref) > 1e-30));
        }
        // exp's few ulp, the division and the product
        check(std::string(t.isa) + " silu_mul vs f64 n=" + std::to_string(n), worst, EXP_REL + 4 * FLT_EPSILON, " rel");
    }
}

// geglu against the tanh form in float64. the argument 2a = 2c (x + 0.044715 x^3) is rounded in float
// (about 3 ulp of |2a|), and d log(x sigmoid(2a)) / d(2a) <= 1: the relative error grows with |2a|
static void test_gelu(const KernelTable& t) {
    for (int n : {1, 7, 17, 1000}) {
        std::vector<float> g = random_floats(n, 6.0f), u = random_floats(n);
        if (n > 3) g[0] = 200.0f, g[1] = -200.0f, g[2] = -9.0f;
        std::vector<float> y = g;
        t.gelu_mul(n, y.data(), u.data());
        double worst = 0, worst_d = 0;
        for (int i = 0; i < n; i++) {
            const double x = g[i], a = std::sqrt(2.0 / std::acos(-1.0)) * (x + 0.044715 * x * x * x);
            // 0.5 x (1 + tanh a); for a << 0, where 1 + tanh a cancels in float64 too, its equal x / (1 + e^-2a)
            const double ref = (a > -4 ? 0.5 * x * (1.0 + std::tanh(a)) : x / (1.0 + std::exp(-2 * a))) * u[i];
            if (fabs(ref) < 1e-30) {   // flushed: the exact value is below float's normal range
                if (fabs(y[i]) > 1e-30) worst = INFINITY, worst_d = y[i];
                continue;
            }
            const double d = fabs(y[i] - ref) / fabs(ref), tol = EXP_REL + 4 * FLT_EPSILON + 4 * fabs(2 * a) * FLT_EPSILON;
            if (!(d / tol < worst)) worst = std::isnan(d) ? INFINITY : d / tol, worst_d = d;
        }
        check_ratio(std::string(t.isa) + " gelu_mul vs f64 (rel) n=" + std::to_string(n), worst_d, worst);
    }
}

// activation quantizers must be identical to generic (the same algorithm: ggml's reference rounding)
static void test_act_quantizers(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    for (int at : ACT_TYPES) {
        const TypeKernels& k = t.types[at];
        for (int n : test_lengths(k.blck)) {
            std::vector<float> x = random_floats(n);
            if (n >= 3 * k.blck) put_quantizer_hard_cases(x.data(), k.blck);
            std::vector<uint8_t> qt = quantize(k, x), qg = quantize(g.types[at], x);
            int bad = 0;
            for (size_t i = 0; i < qt.size(); i++) bad += qt[i] != qg[i];
            check(std::string(t.isa) + " from_float " + type_name(at) + " == generic n=" + std::to_string(n),
                  bad, 0, " bytes");
        }
    }
    // q8_1: s is fp16(d * sum q); q8_K: bsums are the sums of 16 quants (independent recount)
    std::vector<float> x = random_floats(33 * QK_K);
    std::vector<uint8_t> q1 = quantize(t.types[GT_Q8_1], x);
    double maxd = 0;
    for (int i = 0; i < 33 * QK_K / QK8_1; i++) {
        const block_q8_1& b = ((const block_q8_1*)q1.data())[i];
        int sum = 0;
        for (int8_t q : b.qs) sum += q;
        const double want = (double)fp16_to_fp32(b.d) * sum;
        maxd = std::max(maxd, fabs(fp16_to_fp32(b.s) - want) / (fabs(want) + 1e-30));
    }
    // s rounds (unrounded d) * sum to fp16; the check multiplies by the stored fp16 d: two roundings
    check(std::string(t.isa) + " q8_1 s == d * sum(q)", maxd, 2 * FP16_REL + FLT_EPSILON, " rel");
    std::vector<uint8_t> qk = quantize(t.types[GT_Q8_K], x);
    int bad = 0;
    for (int i = 0; i < 33; i++) {
        const block_q8_K& b = ((const block_q8_K*)qk.data())[i];
        for (int j = 0; j < QK_K / 16; j++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) sum += b.qs[16 * j + l];
            bad += sum != b.bsums[j];
        }
    }
    check(std::string(t.isa) + " q8_K bsums == sums of 16", bad, 0, " mismatches");
}

static double round_trip_tol(int ty) {
    switch (ty) {
        case GT_F32: return 0.0;
        case GT_F16: return FP16_REL;
        case GT_Q4_0: return RT_Q4_0;
        case GT_Q4_1: return RT_Q4_1;
        case GT_Q5_0: return RT_Q5_0;
        case GT_Q8_0: case GT_Q8_1: return RT_Q8_0;
        case GT_Q4_K: return RT_Q4_K;
        case GT_Q6_K: return RT_Q6_K;
        case GT_Q8_K: return RT_Q8_K;
    }
    return 0.0;
}

static void test_round_trips(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    for (int ty : {GT_F32, GT_F16, GT_Q4_0, GT_Q4_1, GT_Q5_0, GT_Q8_0, GT_Q8_1, GT_Q4_K, GT_Q6_K, GT_Q8_K}) {
        const TypeKernels& k = t.types[ty];
        const int n = 33 * std::max(k.blck, 32);
        std::vector<float> x = random_floats(n);
        std::vector<uint8_t> q = quantize(k, x);
        std::vector<float> y = dequantize(k, q.data(), n), yg = dequantize(g.types[ty], q.data(), n);
        const int blk = std::max(k.blck, 32);  // f32/f16: relative to the max of 32 elements
        double maxd = 0;
        int bad = 0;
        for (int b = 0; b < n / blk; b++) {
            double amax = 0;
            for (int j = 0; j < blk; j++) amax = std::max(amax, (double)fabsf(x[b * blk + j]));
            for (int j = 0; j < blk; j++) {
                const int i = b * blk + j;
                maxd = std::max(maxd, fabs((double)x[i] - y[i]) / amax);
                bad += memcmp(&y[i], &yg[i], 4) != 0;
            }
        }
        check(std::string(t.isa) + " round trip " + type_name(ty), maxd, round_trip_tol(ty), " of max");
        check(std::string(t.isa) + " to_float " + type_name(ty) + " == generic", bad, 0, " mismatches");
    }
}

static void test_vec_dot(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    for (int wt : WEIGHT_TYPES) {
        const TypeKernels& k = t.types[wt];
        const TypeKernels& kx = g.types[k.vec_type];
        double max_g = 0, max_64 = 0, worst_g = 0, worst_64 = 0;  // diff / tol ratios
        for (int n : test_lengths(k.blck)) {
            std::vector<uint8_t> w = quantize(g.types[wt], random_floats(n));
            std::vector<uint8_t> x = quantize(kx, random_floats(n));
            double l1;
            const double ref = ref_dot(wt, w.data(), x.data(), n, &l1);
            float got, gen;
            k.vec_dot(n, &got, w.data(), x.data());
            g.types[wt].vec_dot(n, &gen, w.data(), x.data());
            const double tol = dot_tol(n / k.blck, l1);
            const double dg = fabs((double)got - gen), d64 = fabs((double)got - ref);
            if (!(dg / tol < worst_g)) { worst_g = std::isnan(dg) ? INFINITY : dg / tol; max_g = dg; }
            if (!(d64 / tol < worst_64)) { worst_64 = std::isnan(d64) ? INFINITY : d64 / tol; max_64 = d64; }
        }
        check_ratio(std::string(t.isa) + " vec_dot " + type_name(wt) + " vs generic", max_g, worst_g);
        check_ratio(std::string(t.isa) + " vec_dot " + type_name(wt) + " vs f64", max_64, worst_64);
    }
}

// a gemm tile y (nc columns of nr rows, ldy apart, -12345 beyond the tile) against the generic vec_dot
// of plain rows w_row(r) and activation columns x_col(c), and against float64: the worst diff / tol
// ratios and the cells written past the tile
struct TileCheck {
    double worst = 0, max_diff = 0, worst64 = 0, max64 = 0;
    int bad_untouched = 0;

    static void note(double diff, double tol, double& worst, double& max_diff) {
        const double ratio = diff / tol;
        if (!(ratio < worst)) { worst = std::isnan(ratio) ? INFINITY : ratio; max_diff = diff; }
    }

    template <class W, class X>
    void cells(int wt, int n, const float* y, size_t ldy, int nr, int nc, W w_row, X x_col) {
        const TypeKernels& kg = kernels_generic().types[wt];
        for (int c = 0; c < nc; c++) {
            bad_untouched += y[c * ldy + nr] != -12345.0f;
            for (int r = 0; r < nr; r++) {
                float gen;
                kg.vec_dot(n, &gen, w_row(r), x_col(c));
                double l1;
                const double ref = ref_dot(wt, w_row(r), x_col(c), n, &l1), tol = dot_tol(n / kg.blck, l1);
                note(fabs((double)y[c * ldy + r] - gen), tol, worst, max_diff);
                note(fabs((double)y[c * ldy + r] - ref), tol, worst64, max64);
            }
        }
    }
};

static void test_gemm(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    const int sizes[] = {1, 2, 3, 4, 5, 7};
    for (int wt : WEIGHT_TYPES) {
        const TypeKernels& k = t.types[wt];
        const TypeKernels& kx = g.types[k.vec_type];
        TileCheck tc;
        for (int n : test_lengths(k.blck)) {
            if (n > 2048 && k.blck == 1) continue;  // keep the f32/f16 tiles quick
            const int max_rc = 7;
            // padded strides: one extra block per row / column, one extra float per y column
            const size_t ldw = row_bytes(k, n) + k.bytes, ldx = row_bytes(kx, n) + kx.bytes;
            std::vector<uint8_t> w(max_rc * ldw, 0xcd), x(max_rc * ldx, 0xcd);
            for (int r = 0; r < max_rc; r++) {
                std::vector<uint8_t> q = quantize(g.types[wt], random_floats(n));
                memcpy(&w[r * ldw], q.data(), q.size());
            }
            for (int c = 0; c < max_rc; c++) {
                std::vector<uint8_t> q = quantize(kx, random_floats(n));
                memcpy(&x[c * ldx], q.data(), q.size());
            }
            for (int nr : sizes) {
                for (int nc : sizes) {
                    const size_t ldy = nr + 1;
                    std::vector<float> y(nc * ldy, -12345.0f);
                    k.gemm(n, nr, nc, w.data(), ldw, x.data(), ldx, y.data(), ldy);
                    tc.cells(wt, n, y.data(), ldy, nr, nc, [&](int r) { return &w[r * ldw]; },
                             [&](int c) { return &x[c * ldx]; });
                }
            }
        }
        check_ratio(std::string(t.isa) + " gemm " + type_name(wt) + " nr,nc in 1..7 vs generic vec_dot", tc.max_diff,
                    tc.worst);
        check(std::string(t.isa) + " gemm " + type_name(wt) + " writes only its tile", tc.bad_untouched, 0, " cells");
    }
}

// wide tiles: more columns than any table's column tile (several tiles and a ragged last one) and a
// row count that leaves a short row group, against the generic vec_dot
static void test_gemm_wide(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    const int nr = 6, nc = 37;
    for (int wt : WEIGHT_TYPES) {
        const TypeKernels& k = t.types[wt];
        const TypeKernels& kx = g.types[k.vec_type];
        const int n = 3 * std::max(k.blck, 32);
        const size_t ldw = row_bytes(k, n), ldx = row_bytes(kx, n), ldy = nr + 1;
        std::vector<uint8_t> w(nr * ldw), x(nc * ldx);
        for (int r = 0; r < nr; r++) g.types[wt].from_float(random_floats(n).data(), &w[r * ldw], n);
        for (int c = 0; c < nc; c++) kx.from_float(random_floats(n).data(), &x[c * ldx], n);
        std::vector<float> y(nc * ldy, -12345.0f);
        k.gemm(n, nr, nc, w.data(), ldw, x.data(), ldx, y.data(), ldy);
        TileCheck tc;
        tc.cells(wt, n, y.data(), ldy, nr, nc, [&](int r) { return &w[r * ldw]; }, [&](int c) { return &x[c * ldx]; });
        check_ratio(std::string(t.isa) + " gemm " + type_name(wt) + " nr=6 nc=37 vs generic vec_dot", tc.max_diff, tc.worst);
        check(std::string(t.isa) + " gemm " + type_name(wt) + " nr=6 nc=37 writes only its tile", tc.bad_untouched, 0,
              " cells");
    }
}

// packed weights (a table's own layout): pack groups of pack_rows rows, then gemm_packed over every
// group count and column count 1..9 (the column tiles and their edges) against the generic vec_dot
// on the plain rows; rows of a padded source stride; awkward lengths
static void test_packed_gemm(const KernelTable& t) {
    const KernelTable& g = kernels_generic();
    for (int wt : WEIGHT_TYPES) {
        const TypeKernels& k = t.types[wt];
        if (!k.pack_rows) continue;
        const TypeKernels& kx = g.types[k.vec_type];
        const int groups = 3, rows = groups * k.pack_rows, max_nc = 9;
        TileCheck tc;
        int bad_rows = 0;
        for (int n : test_lengths(k.blck)) {
            if (n > 2048 && k.blck == 1) continue;
            const size_t rb = row_bytes(k, n), ld_src = rb + k.bytes, ldx = row_bytes(kx, n) + kx.bytes;
            std::vector<uint8_t> w(rows * ld_src, 0xcd), packed(rows * rb), x(max_nc * ldx, 0xcd);
            for (int r = 0; r < rows; r++) {
                std::vector<uint8_t> q = quantize(g.types[wt], random_floats(n));
                memcpy(&w[r * ld_src], q.data(), q.size());
            }
            for (int c = 0; c < max_nc; c++) {
                std::vector<uint8_t> q = quantize(kx, random_floats(n));
                memcpy(&x[c * ldx], q.data(), q.size());
            }
            if (k.vec_type == GT_Q8_0 && k.blck == 32) {
                // the int16 bound of the maddubs sums: row 0 at the type's largest magnitude (every bit
                // after d set: q4_0 -8.. as 15 - 8, q5_0 31 - 16; q8_0 -127) against column 0 all +127
                for (int b = 0; b < n / 32; b++) {
                    memset(&w[b * k.bytes + 2], wt == GT_Q8_0 ? 0x81 : 0xff, k.bytes - 2);
                    memset(&x[b * kx.bytes + 2], 0x7f, kx.bytes - 2);
                }
            }
            k.pack(w.data(), ld_src, packed.data(), rows, n);
            for (int r = 0; r < rows; r++) {   // a row looked up in the packed layout equals the plain row
                std::vector<float> got(n), want = dequantize(g.types[wt], &w[r * ld_src], n);
                k.packed_row_to_float(&packed[(size_t)(r / k.pack_rows) * k.pack_rows * rb], r % k.pack_rows, n, got.data());
                bad_rows += memcmp(got.data(), want.data(), n * sizeof(float)) != 0;
            }
            for (int ng = 1; ng <= groups; ng++) {
                for (int nc = 1; nc <= max_nc; nc++) {
                    // start at the second group when there is room: a group start other than 0
                    const int g0 = ng < groups ? 1 : 0, nr = ng * k.pack_rows;
                    const size_t ldy = nr + 1;
                    std::vector<float> y(nc * ldy, -12345.0f);
                    k.gemm_packed(n, nr, nc, &packed[(size_t)g0 * k.pack_rows * rb], rb, x.data(), ldx, y.data(), ldy);
                    tc.cells(wt, n, y.data(), ldy, nr, nc,
                             [&](int r) { return &w[(size_t)(g0 * k.pack_rows + r) * ld_src]; },
                             [&](int c) { return &x[c * ldx]; });
                }
            }
        }
        check_ratio(std::string(t.isa) + " packed x" + std::to_string(k.pack_rows) + " gemm " + type_name(wt) +
                    " nc 1..9 vs generic vec_dot", tc.max_diff, tc.worst);
        check_ratio(std::string(t.isa) + " packed x" + std::to_string(k.pack_rows) + " gemm " + type_name(wt) +
                    " nc 1..9 vs f64", tc.max64, tc.worst64);
        check(std::string(t.isa) + " packed gemm " + type_name(wt) + " writes only its tile", tc.bad_untouched, 0, " cells");
        check(std::string(t.isa) + " packed row " + type_name(wt) + " == plain to_float", bad_rows, 0, " rows");
    }
}

// raw blocks + generic dequantization, for the python test's independent check against gguf.quants
static void dump(const char* dir) {
    const KernelTable& g = kernels_generic();
    for (int ty : {GT_Q4_0, GT_Q4_1, GT_Q5_0, GT_Q8_0, GT_Q4_K, GT_Q6_K}) {
        const TypeKernels& k = g.types[ty];
        const int n = (k.blck == QK_K ? 8 : 64) * k.blck;
        std::vector<float> x = random_floats(n);
        for (int i = 0; i < n; i += 37) x[i] = (float)(i % 11) * 0.5f - 2.5f;  // some exact .5 steps
        std::vector<uint8_t> q = quantize(k, x);
        std::vector<float> y = dequantize(k, q.data(), n);
        const std::string base = std::string(dir) + "/" + type_name(ty);
        FILE* f = fopen((base + ".blocks").c_str(), "wb");
        fwrite(q.data(), 1, q.size(), f);
        fclose(f);
        f = fopen((base + ".f32").c_str(), "wb");
        fwrite(y.data(), 4, y.size(), f);
        fclose(f);
        f = fopen((base + ".src").c_str(), "wb");
        fwrite(x.data(), 4, x.size(), f);
        fclose(f);
    }
}

int main(int argc, char** argv) {
    if (argc == 3 && strcmp(argv[1], "--dump") == 0) dump(argv[2]);
    const KernelTable* tables[kMaxTables];
    const int n_tables = available_kernels(tables, kMaxTables);
    printf("tables:");
    for (int i = 0; i < n_tables; i++) printf(" %s", tables[i]->isa);
    printf(" (selected: %s)\n", select_kernels().isa);

    test_fp16_scalar();
    for (int i = 0; i < n_tables; i++) {
        const KernelTable& t = *tables[i];
        test_f16_helpers(t);
        test_attention_groups(t);
        test_kv_quantize(t);
        test_attention_q8(t);
        test_silu(t);
        test_gelu(t);
        test_act_quantizers(t);
        test_round_trips(t);
        test_vec_dot(t);
        test_gemm(t);
        test_gemm_wide(t);
        test_packed_gemm(t);
    }
    printf("%d passed, %d failed\n", n_passed, n_failed);
    return n_failed ? 1 : 0;
}
