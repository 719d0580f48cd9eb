// the neon int8 kernels (arm_neon_int8.inc) with smmla gemm tiles and sdot vec_dots: built with
// -march=armv8.2-a+dotprod+i8mm, used only on a cpu that has both (kernels_neon_i8mm in arm_neon.cpp checks).
#if defined(__aarch64__)

#if !defined(__ARM_FEATURE_DOTPROD) || !defined(__ARM_FEATURE_MATMUL_INT8)
#error "build arm_neon_i8mm.cpp with -march=armv8.2-a+dotprod+i8mm"
#endif

#include "arm_neon_int8.inc"

namespace ec {
void set_neon_i8mm_kernels(KernelTable& t) { set_int8_kernels(t); }
}  // namespace ec

#endif  // __aarch64__
