// kernel table selection: chosen once from cpu features (EDGECHAT_ISA=generic|avx2|neon overrides).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace ec {

#if !defined(__x86_64__)
const KernelTable* kernels_avx2() { return nullptr; }
#endif
#if !defined(__aarch64__)
const KernelTable* kernels_neon() { return nullptr; }
#endif

// the avx2 table may only be touched on a cpu that runs avx2 code (its file is built with -mavx2)
static bool cpu_has_avx2() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
#else
    return false;
#endif
}

int available_kernels(const KernelTable** out, int max) {
    int n = 0;
    if (n < max) out[n++] = &kernels_generic();
    if (n < max && cpu_has_avx2() && kernels_avx2()) out[n++] = kernels_avx2();
    if (n < max && kernels_neon()) out[n++] = kernels_neon();  // neon is baseline on aarch64
    return n;
}

static const KernelTable& choose_kernels() {
    const KernelTable* tables[4];
    const int n = available_kernels(tables, 4);
    const char* want = getenv("EDGECHAT_ISA");
    if (want && *want) {
        for (int i = 0; i < n; i++) {
            if (strcmp(tables[i]->isa, want) == 0) return *tables[i];
        }
        fprintf(stderr, "edgechat: EDGECHAT_ISA=%s is not available on this cpu; using %s\n", want,
                tables[n - 1]->isa);
    }
    return *tables[n - 1];  // the last one listed is the best
}

const KernelTable& select_kernels() {
    static const KernelTable& chosen = choose_kernels();
    return chosen;
}

}  // namespace ec
