#include "kv_ring.h"

#include <algorithm>
#include <cstring>
#include <new>
#include <stdexcept>

#include <sys/mman.h>

namespace ec {

// zeroed, 2 MiB aligned, marked for transparent huge pages before the first touch: attention streams
// the rows every token, and 4 KiB pages would cost a TLB miss every 64 cache lines
static half* alloc_rows(size_t elems) {
    constexpr size_t huge = 2u << 20;
    const size_t bytes = (elems * sizeof(half) + huge - 1) & ~(huge - 1);
    void* p = nullptr;
    if (posix_memalign(&p, huge, bytes) != 0) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    madvise(p, bytes, MADV_HUGEPAGE);
#endif
    std::memset(p, 0, bytes);
    return (half*)p;
}

KVRing::KVRing(int n_layer, int ctx, int kv_dim, int head_dim)
    : n_layer_(n_layer), ctx_(ctx), head_dim_(head_dim), n_head_(kv_dim / head_dim),
      elems_((size_t)n_layer * ctx * kv_dim) {
    k_.reset(alloc_rows(elems_));
    v_.reset(alloc_rows(elems_));
    reset(std::min(4, ctx - 1));
}

void KVRing::reset(int sinks) {
    if (sinks < 0 || sinks >= ctx_) throw std::invalid_argument("sinks must be in [0, ctx)");
    sinks_ = sinks;
    n_past_ = 0;
    ckpt_end_ = -1;
}

int64_t KVRing::first_window(int64_t n) const {
    return std::max<int64_t>(sinks_, n - window());
}

int KVRing::used() const {
    if (n_past_ <= sinks_) return (int)n_past_;
    return sinks_ + (int)(n_past_ - first_window(n_past_));
}

int64_t KVRing::evicted() const { return std::max<int64_t>(0, n_past_ - ctx_); }

bool KVRing::truncate(int64_t n) {
    if (n < 0 || n > n_past_) return false;
    if (ckpt_end_ >= 0 && n >= ckpt_p0_ && n_past_ <= ckpt_end_) {
        // undo the overwrites of positions [n, n_past_): their slots get back entries pos - window()
        for (int64_t pos = std::max<int64_t>(n, ctx_); pos < n_past_; pos++) copy_rows(pos, false);
        n_past_ = n;
        return true;
    }
    // the state after n tokens holds window positions [first_window(n), n); all must still be here
    if (n > sinks_ && first_window(n) < first_window(n_past_)) return false;
    n_past_ = n;
    return true;
}

void KVRing::checkpoint(int n) {
    if (n < 0 || n > window()) throw std::invalid_argument("checkpoint: n must be in [0, window]");
    ckpt_p0_ = n_past_;
    ckpt_end_ = n_past_ + n;
    // only positions >= ctx find their slot occupied (by entry pos - window(), still in the window)
    const int64_t first = std::max<int64_t>(ckpt_p0_, ctx_);
    saved_.resize((size_t)std::max<int64_t>(0, ckpt_end_ - first) * n_layer_ * n_head_ * 2 * row_bytes());
    for (int64_t pos = first; pos < ckpt_end_; pos++) copy_rows(pos, true);
}

void KVRing::copy_rows(int64_t pos, bool save) {
    const size_t rb = row_bytes();
    uint8_t* at = saved_.data() + (size_t)(pos - std::max<int64_t>(ckpt_p0_, ctx_)) * n_layer_ * n_head_ * 2 * rb;
    const int s = slot(pos);
    for (int l = 0; l < n_layer_; l++)
        for (int h = 0; h < n_head_; h++)
            for (uint8_t* row : {(uint8_t*)k(l, h, s), (uint8_t*)v(l, h, s)}) {
                if (save) std::memcpy(at, row, rb);
                else std::memcpy(row, at, rb);
                at += rb;
            }
}

}  // namespace ec
