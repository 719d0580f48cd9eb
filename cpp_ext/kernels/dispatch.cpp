// kernel table selection: chosen once from cpu features (EDGECHAT_ISA=<table name> overrides).
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "kernels.h"

namespace ec {

#if !defined(__x86_64__)
const KernelTable* kernels_avx2() { return nullptr; }
const KernelTable* kernels_avxvnni() { return nullptr; }
const KernelTable* kernels_avx512() { return nullptr; }
#endif
#if !defined(__aarch64__)
const KernelTable* kernels_neon() { return nullptr; }
const KernelTable* kernels_neon_dotprod() { return nullptr; }
const KernelTable* kernels_neon_i8mm() { return nullptr; }
#endif

// an x86 table may only be touched on a cpu that runs its file's instructions
#if defined(__x86_64__)
static bool cpu_has(const char* feature) {
    __builtin_cpu_init();
    if (strcmp(feature, "avx2") == 0)
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
    if (strcmp(feature, "avxvnni") == 0) return cpu_has("avx2") && __builtin_cpu_supports("avxvnni");
    if (strcmp(feature, "avx512") == 0)
        return cpu_has("avx2") && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    return false;
}
#endif

int available_kernels(const KernelTable** out, int max) {
    int n = 0;
    auto add = [&](const KernelTable* t) {
        if (t && n < max) out[n++] = t;
    };
    add(&kernels_generic());
#if defined(__x86_64__)
    if (cpu_has("avx2")) add(kernels_avx2());
    if (cpu_has("avxvnni")) add(kernels_avxvnni());
    if (cpu_has("avx512")) add(kernels_avx512());
#endif
    add(kernels_neon());  // neon is baseline on aarch64
    add(kernels_neon_dotprod());
    add(kernels_neon_i8mm());
    return n;
}

static const KernelTable& choose_kernels() {
    const KernelTable* tables[kMaxTables];
    const int n = available_kernels(tables, kMaxTables);
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
