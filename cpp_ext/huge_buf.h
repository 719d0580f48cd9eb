// a zeroed anonymous buffer for large arrays read every token (packed weights, kv rings): 2 MiB aligned
// and marked for transparent huge pages before the first touch (4 KiB pages would cost a TLB miss every
// 64 cache lines). the mapping ends at the last 4 KiB page it needs, so the tail past the last whole
// 2 MiB span stays in small pages: the resident set grows by the bytes asked for, not by up to 2 MiB
// more (posix_memalign's mapping runs on, and the kernel backed the partial span with a whole huge
// page: 3 MiB of 20 in a llama-1b q8_0 cache of ctx 1024)
#pragma once
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include <sys/mman.h>
#include <unistd.h>

namespace ec {

// n > 0 bytes mapped as above (zero until written); huge_unmap(p, n) with the same n gives them back
inline uint8_t* huge_map(size_t n) {
    constexpr size_t huge = 2u << 20;
    const size_t page = (size_t)sysconf(_SC_PAGESIZE), len = (n + page - 1) & ~(page - 1);
    void* raw = mmap(nullptr, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) throw std::bad_alloc();
    const uintptr_t r = (uintptr_t)raw, a = (r + huge - 1) & ~(uintptr_t)(huge - 1);
    if (a > r) munmap(raw, a - r);
    if (r + huge > a) munmap((void*)(a + len), r + huge - a);
#ifdef MADV_HUGEPAGE
    madvise((void*)a, len, MADV_HUGEPAGE);
#endif
    return (uint8_t*)a;
}
inline void huge_unmap(void* p, size_t n) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    munmap(p, (n + page - 1) & ~(page - 1));
}

class HugeBuf {
public:
    HugeBuf() = default;
    explicit HugeBuf(size_t n) : p_(n ? huge_map(n) : nullptr), n_(n) {}
    HugeBuf(HugeBuf&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
    HugeBuf& operator=(HugeBuf&& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(n_, o.n_);
        return *this;
    }
    HugeBuf(const HugeBuf&) = delete;
    HugeBuf& operator=(const HugeBuf&) = delete;
    ~HugeBuf() {
        if (p_) huge_unmap(p_, n_);
    }
    uint8_t* get() const { return p_; }

private:
    uint8_t* p_ = nullptr;
    size_t n_ = 0;
};

}  // namespace ec
