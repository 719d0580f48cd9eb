// avx2 kernels with avx-vnni (vex vpdpbusd): built with -mavx2 -mfma -mf16c -mavxvnni, used only
// when the cpu has them (alder lake and later, zen 5). the kernels are x86_table.inc's.
#if defined(__x86_64__)
#define EC_X86_VNNI 1
#define EC_X86_ISA "avxvnni"
#define EC_X86_TABLE kernels_avxvnni
#include "x86_table.inc"
#endif
