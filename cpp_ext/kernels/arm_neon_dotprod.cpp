// the neon int8 kernels (arm_neon_int8.inc) with sdot: built with -march=armv8.2-a+dotprod, used only
// on a cpu that has it (kernels_neon_dotprod in arm_neon.cpp checks).
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD)
#error "build arm_neon_dotprod.cpp with -march=armv8.2-a+dotprod"
#endif

#include "arm_neon_int8.inc"

namespace ec {
void set_neon_dotprod_kernels(KernelTable& t) { set_int8_kernels(t); }
}  // namespace ec

#endif  // __aarch64__
