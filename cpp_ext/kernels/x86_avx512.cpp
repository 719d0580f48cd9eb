// avx2-width kernels with avx512 f/bw/vl + vnni (evex vpdpbusd on ymm, 32 registers for wider column
// tiles): built with those flags, used only when the cpu has them (zen 4, ice lake and later).
// the kernels are x86_table.inc's.
#if defined(__x86_64__)
// gcc 12 reports the _mm512_undefined_* inside its own zmm shift and convert intrinsics as "may be
// used uninitialized" once they are inlined into a template (a false positive: those values are never read)
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#define EC_X86_VNNI 2
#define EC_X86_ISA "avx512"
#define EC_X86_TABLE kernels_avx512
#include "x86_table.inc"
#endif
