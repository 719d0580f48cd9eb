// helpers shared by the kernel files (generic.cpp, x86_avx2.cpp, arm_neon.cpp); not part of the api.
// everything here has internal linkage: each file is compiled with its own isa flags, and a shared
// inline symbol could otherwise be resolved to another file's (e.g. avx2) copy.
#pragma once
#include <cstddef>

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

}  // namespace
}  // namespace ec
