// gguf / ggml block layouts for the tensor types edgechat runs.
// each block is a plain struct with a static_assert on its size, byte-compatible with ggml.
#pragma once
#include <cstddef>
#include <cstdint>

namespace ec {

using half = uint16_t;  // ieee fp16 bits

// type ids are ggml's (they appear in gguf files)
enum GType : int {
    GT_F32 = 0,
    GT_F16 = 1,
    GT_Q4_0 = 2,
    GT_Q4_1 = 3,
    GT_Q5_0 = 6,
    GT_Q8_0 = 8,
    GT_Q8_1 = 9,   // activation type for q4_1
    GT_Q4_K = 12,
    GT_Q6_K = 14,
    GT_Q8_K = 15,  // activation type for k-quants
    GT_COUNT = 16,
};

constexpr int QK4_0 = 32;
struct block_q4_0 {
    half d;                // scale
    uint8_t qs[QK4_0 / 2]; // nibbles: low = elements 0..15, high = 16..31; value = (q - 8) * d
};
static_assert(sizeof(block_q4_0) == 18, "block_q4_0 size");

constexpr int QK4_1 = 32;
struct block_q4_1 {
    half d;                // scale
    half m;                // min; value = q * d + m
    uint8_t qs[QK4_1 / 2]; // nibbles as in q4_0
};
static_assert(sizeof(block_q4_1) == 20, "block_q4_1 size");

constexpr int QK5_0 = 32;
struct block_q5_0 {
    half d;                // scale
    uint8_t qh[4];         // 5th bit of each of the 32 elements (little-endian uint32)
    uint8_t qs[QK5_0 / 2]; // low 4 bits as in q4_0; value = (q - 16) * d
};
static_assert(sizeof(block_q5_0) == 22, "block_q5_0 size");

constexpr int QK8_0 = 32;
struct block_q8_0 {
    half d;            // scale
    int8_t qs[QK8_0];  // value = q * d
};
static_assert(sizeof(block_q8_0) == 34, "block_q8_0 size");

constexpr int QK8_1 = 32;
struct block_q8_1 {
    half d;            // scale
    half s;            // d * sum(qs)
    int8_t qs[QK8_1];  // value = q * d
};
static_assert(sizeof(block_q8_1) == 36, "block_q8_1 size");

constexpr int QK_K = 256;
constexpr int K_SCALE_SIZE = 12;

struct block_q4_K {
    half d;                       // super-block scale for the 6-bit scales
    half dmin;                    // super-block scale for the 6-bit mins
    uint8_t scales[K_SCALE_SIZE]; // 8 (scale, min) pairs, 6 bits each, packed
    uint8_t qs[QK_K / 2];         // nibbles: 4 groups of 64 elements; group g low = sub-block 2g, high = 2g+1
};
static_assert(sizeof(block_q4_K) == 144, "block_q4_K size");

struct block_q6_K {
    uint8_t ql[QK_K / 2];      // low 4 bits
    uint8_t qh[QK_K / 4];      // high 2 bits
    int8_t scales[QK_K / 16];  // 16 sub-block scales, 8 bits
    half d;                    // super-block scale
};
static_assert(sizeof(block_q6_K) == 210, "block_q6_K size");

struct block_q8_K {
    float d;                   // scale
    int8_t qs[QK_K];           // quants
    int16_t bsums[QK_K / 16];  // sum of quants in groups of 16
};
static_assert(sizeof(block_q8_K) == 292, "block_q8_K size");

}  // namespace ec
