# The kernel files and each one's ISA flags on this host, for the scripts that build the kernels
# outside CMake (neon_test.sh, asan_test.sh). cpp_ext/CMakeLists.txt sets the same flags.
#   source scripts/kernel_files.sh; for f in "${KERNEL_FILES[@]}"; do g++ $(kernel_flags "$f") ...
KERNEL_FILES=(generic dispatch x86_avx2 x86_avxvnni x86_avx512 arm_neon arm_neon_dotprod arm_neon_i8mm)

# flags of one file for `uname -m` (or $1's arch as $2): x86 -m flags, aarch64 -march
kernel_flags() {
  case "${2:-$(uname -m)}:$1" in
    x86_64:x86_avx2) echo -mavx2 -mfma -mf16c ;;
    x86_64:x86_avxvnni) echo -mavx2 -mfma -mf16c -mavxvnni ;;
    x86_64:x86_avx512) echo -mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512vl -mavx512vnni ;;
    aarch64:arm_neon_dotprod) echo -march=armv8.2-a+dotprod ;;
    aarch64:arm_neon_i8mm) echo -march=armv8.2-a+dotprod+i8mm ;;
    aarch64:*) echo -march=armv8-a ;;
  esac
}
