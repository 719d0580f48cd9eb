// avx2 + fma + f16c kernels (built with -mavx2 -mfma -mf16c; used only when the cpu has all three).
// the body is shared with x86_avxvnni.cpp and x86_avx512.cpp (x86_table.inc and the parts it lists),
// which set EC_X86_VNNI (1: vex vpdpbusd, 2: evex vpdpbusd on ymm, 32 registers) and their own flags:
// the same kernels, int8 dots in one instruction, wider column tiles. same arithmetic as generic.cpp;
// float sums may be reassociated, integer block dots are exact.
#if defined(__x86_64__)
#define EC_X86_VNNI 0
#define EC_X86_ISA "avx2"
#define EC_X86_TABLE kernels_avx2
#include "x86_table.inc"
#endif
