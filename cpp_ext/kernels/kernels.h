// kernel tables: one per isa, same function names in generic.cpp, the x86 files (x86_table.inc) and
// arm_neon.cpp.
// the table is chosen once at load from cpu features (select_kernels); never a branch per call.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../blocks.h"

namespace ec {

// per weight type. rows are stored contiguously, `bytes_per_row = n / blck * bytes`.
struct TypeKernels {
    int blck = 0;            // elements per block (1 for f32/f16)
    size_t bytes = 0;        // bytes per block
    GType vec_type = GT_F32; // activation format vec_dot/gemm expect for x
    // dequantize n elements (n % blck == 0)
    void (*to_float)(const void* src, float* dst, int64_t n) = nullptr;
    // quantize n floats into this type (reference quality; used for activations on the hot path
    // when this type is some weight type's vec_type, and for round-trip tests otherwise)
    void (*from_float)(const float* src, void* dst, int64_t n) = nullptr;
    // *s = dot(w[0..n), x[0..n)); w in this type, x in vec_type
    void (*vec_dot)(int n, float* s, const void* w, const void* x) = nullptr;
    // tile: y[c * ldy + r] = dot(row r of w, column c of x) for r < nr, c < nc.
    // ldw / ldx are bytes between consecutive rows of w / columns of x; ldy is in floats.
    void (*gemm)(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx,
                 float* y, size_t ldy) = nullptr;

    // repacked weights (optional, the layout is the table's own): groups of pack_rows rows are
    // interleaved at load so that one stream feeds pack_rows outputs at once (no horizontal sums).
    // a packed group takes exactly the bytes of its plain rows, so row r0 (a multiple of pack_rows)
    // still starts at r0 * row_bytes. tensors whose row count is not a multiple stay plain.
    int pack_rows = 0;  // 0: this table has no packed layout for the type
    // src: `rows` plain rows `ld_src` bytes apart (rows % pack_rows == 0); dst: rows * row_bytes
    void (*pack)(const void* src, size_t ld_src, void* dst, int64_t rows, int64_t cols) = nullptr;
    // as gemm, on packed weights: w points at a group start, nr is a multiple of pack_rows, ldw is
    // row_bytes (group g starts at w + g * pack_rows * ldw)
    void (*gemm_packed)(int n, int nr, int nc, const void* w, size_t ldw, const void* x, size_t ldx,
                        float* y, size_t ldy) = nullptr;
    // row r (< pack_rows) of the packed group at `group`, dequantized: equal to to_float of the plain
    // row (a tied embedding is looked up in its packed output copy, the plain rows never touched)
    void (*packed_row_to_float)(const void* group, int r, int64_t cols, float* dst) = nullptr;
};

struct KernelTable {
    const char* isa = "generic";
    TypeKernels types[GT_COUNT];
    // attention over a run of n kv rows (one kv head, consecutive cache slots, each row hd long, `ld`
    // apart: halfs for fp16 rows, bytes for q8_0 rows). grouped-query: the G query heads of one kv head
    // read each key / value row once. q and y are G x hd contiguous; s[g * lds + j] = dot(row j, q_g);
    // y_g += sum_j w[g * ldw + j] * row j for j = 0, 1, ... in order
    void (*scores_f16_g)(int n, int hd, int G, const half* k, size_t ld, const float* q, float* s,
                         size_t lds) = nullptr;
    void (*wsum_f16_g)(int n, int hd, int G, const float* w, size_t ldw, const half* v, size_t ld,
                       float* y) = nullptr;
    // the same over q8_0 kv rows (kv_q8_row_bytes(hd) bytes each, `ld` bytes apart; see kv_quantize_q8).
    // scores: each query is quantized as a kv row (q8_0 blocks, as llama.cpp's vec_dot_type for a q8_0
    // K), each block's dot is exact in int32 and s = sum_b dot_b * (dk_b * dq_b) (scores_q8_g_ref).
    // wsum: integer too. the rows fall into groups of kWsumGroup by (phase + j) / kWsumGroup (the caller
    // passes the first row's absolute position, so a group is the same 32 positions however the rows
    // were split into runs); per group, query and value block b, the weights a_j = w_j * d_jb (w >= 0,
    // the softmax numerators; d_jb row j's block scale) are quantized to 0..127 against their max, as
    // llama.cpp quantizes the softmax for a q8_0 V (a 0..127 weight times an int8 value: exact in int32,
    // and an int16 pair sum cannot saturate), and y += (amax / 127) * sum_j iw_j * q_j (one fma per
    // group; wsum_q8_g_ref)
    void (*scores_q8_g)(int n, int hd, int G, const uint8_t* k, size_t ld, const float* q, float* s,
                        size_t lds) = nullptr;
    void (*wsum_q8_g)(int n, int hd, int G, const float* w, size_t ldw, const uint8_t* v, size_t ld,
                      float* y, int64_t phase) = nullptr;
    // one kv head's row of hd floats as a q8_0 kv row (the ring's rows; kv_quantize_q8's bits)
    void (*kv_quantize_q8)(const float* x, uint8_t* row, int hd) = nullptr;
    // softmax numerator: x[i] = exp(x[i] - mx) for i < n; returns their sum
    float (*exp_sum)(int n, float* x, float mx) = nullptr;
    float (*max_f32)(int n, const float* x) = nullptr;   // max of x[0..n), n >= 1
    // swiglu: g[i] = silu(g[i]) * u[i] = g[i] / (1 + exp(-g[i])) * u[i]
    void (*silu_mul)(int64_t n, float* g, const float* u) = nullptr;
    // geglu (gemma): g[i] = gelu(g[i]) * u[i], gelu's tanh approximation, computed as the equal
    // x * sigmoid(2a) = x / (1 + exp(-2a)), a = sqrt(2/pi) * (x + 0.044715 x^3) (no cancellation at x << 0)
    void (*gelu_mul)(int64_t n, float* g, const float* u) = nullptr;
    void (*f32_to_f16)(const float* x, half* y, int64_t n) = nullptr;  // the ring's fp16 rows
};

// scalar fp16 <-> fp32 (bit exact, round to nearest even), usable everywhere
float fp16_to_fp32(half h);
half fp32_to_fp16(float f);

// q8_0 kv row of one head (hd values): hd int8 quants, then one fp16 scale per block of 32 values
// (the last block may be shorter), as ggml's q8_0: d = max|x| / 127, q = round(x / d), x ~ d * q
constexpr int kKvQ8Block = 32;
inline int kv_q8_blocks(int hd) { return (hd + kKvQ8Block - 1) / kKvQ8Block; }
inline size_t kv_q8_row_bytes(int hd) { return (size_t)hd + 2 * (size_t)kv_q8_blocks(hd); }
void kv_quantize_q8(const float* x, uint8_t* row, int hd);    // row: kv_q8_row_bytes(hd) bytes
void kv_dequantize_q8(const uint8_t* row, float* y, int hd);  // exact: y[i] = fp32(d_b) * q[i]
constexpr int kWsumGroup = 32;
// gelu_mul's constants: 2 sqrt(2/pi) and the cubic term's factor
constexpr float kGelu2C = 1.5957691216057308f, kGeluA = 0.044715f;   // rows per weight quantization group of wsum_q8_g (llama.cpp's q8_0 block)

const KernelTable& kernels_generic();
// x86: each file is built with its isa's flags; call a table only on a cpu that has them
// (available_kernels / select_kernels check cpuid first). nullptr when not compiled in.
const KernelTable* kernels_avx2();     // avx2 + fma + f16c
const KernelTable* kernels_avxvnni();  // + avx-vnni (vex vpdpbusd: alder lake, zen 5)
const KernelTable* kernels_avx512();   // + avx512 f/bw/vl/vnni (evex vpdpbusd, 32 registers: zen 4, ice lake+)
// arm: neon is baseline on aarch64; the dotprod / i8mm tables check the cpu themselves (hwcap on
// linux, sysctl on macos) and return nullptr when it lacks the extension or they are not compiled in
const KernelTable* kernels_neon();
const KernelTable* kernels_neon_dotprod();
const KernelTable* kernels_neon_i8mm();

constexpr int kMaxTables = 8;
// best table for this cpu, chosen on first call (env EDGECHAT_ISA=<name> forces any listed table)
const KernelTable& select_kernels();
// tables usable on this cpu, worst first (generic), best last
int available_kernels(const KernelTable** out, int max);

inline size_t row_bytes(const TypeKernels& t, int64_t n) { return (size_t)(n / t.blck) * t.bytes; }

}  // namespace ec
