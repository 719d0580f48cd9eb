// helpers shared by the kernel files (generic.cpp, x86_avx2.cpp, arm_neon.cpp); not part of the api.
// everything here has internal linkage: each file is compiled with its own isa flags, and a shared
// inline symbol could otherwise be resolved to another file's (e.g. avx2) copy.
#pragma once
#include <cstddef>
#include <cstdint>

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
