#include "kv_ring.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace ec {

KVRing::KVRing(int n_layer, int ctx, int kv_dim, int head_dim, KVType type, LocalLayers local)
    : n_layer_(n_layer), ctx_(ctx), head_dim_(head_dim), n_head_kv_(kv_dim / head_dim), type_(type),
      row_bytes_(type == KVType::Q8_0 ? kv_q8_row_bytes(head_dim) : 2 * (size_t)head_dim), local_(std::move(local)) {
    if (!local_.layers.empty() && ((int)local_.layers.size() != n_layer || local_.cap >= ctx || local_.window < 1 ||
                                   local_.window > local_.cap))
        throw std::invalid_argument("inconsistent local layers");
    rows_ = 0;
    for (int l = 0; l < n_layer; l++) layer_row0_.push_back(rows_), rows_ += (size_t)n_head_kv_ * capacity(l);
    k_ = HugeBuf(rows_ * row_bytes_);   // zeroed pages, resident as the rows are first written
    v_ = HugeBuf(rows_ * row_bytes_);
    reset(std::min(4, ctx - 1));
}

KVRing KVRing::like(int sinks, KVType type) const {
    KVRing c(n_layer_, ctx_, n_head_kv_ * head_dim_, head_dim_, type, local_);
    c.reset(sinks);
    return c;
}

int KVRing::n_global() const {
    int n = 0;
    for (int l = 0; l < n_layer_; l++) n += !is_local(l);
    return n;
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
    // and a local layer's [n - window + 1, n): its ring holds [n_past - cap, n_past)
    if (!local_.layers.empty() && n - local_.window + 1 < n_past_ - local_.cap) return false;
    n_past_ = n;
    return true;
}

void KVRing::checkpoint(int n) {
    if (n < 0 || n > window()) throw std::invalid_argument("checkpoint: n must be in [0, window]");
    // local layers keep what a rollback of their slack needs without saving (see truncate)
    if (!local_.layers.empty() && n > local_.cap - local_.window)
        throw std::invalid_argument("checkpoint: n must be within the local layers' slack");
    ckpt_p0_ = n_past_;
    ckpt_end_ = n_past_ + n;
    // only positions >= ctx find their slot occupied (by entry pos - window(), still in the window)
    const int64_t first = std::max<int64_t>(ckpt_p0_, ctx_);
    saved_.resize((size_t)std::max<int64_t>(0, ckpt_end_ - first) * n_global() * n_head_kv_ * 2 * row_bytes_);
    for (int64_t pos = first; pos < ckpt_end_; pos++) copy_rows(pos, true);
}

void KVRing::copy_rows(int64_t pos, bool save) {
    const size_t rb = row_bytes_;
    uint8_t* at = saved_.data() + (size_t)(pos - std::max<int64_t>(ckpt_p0_, ctx_)) * n_global() * n_head_kv_ * 2 * rb;
    const int s = slot(pos);
    for (int l = 0; l < n_layer_; l++)
        for (int h = 0; h < n_head_kv_ && !is_local(l); h++)
            for (uint8_t* row : {k_row(l, h, s), v_row(l, h, s)}) {
                if (save) std::memcpy(at, row, rb);
                else std::memcpy(row, at, rb);
                at += rb;
            }
}

size_t KVRing::state_bytes(int64_t n_past) const {
    size_t n = 0;
    for (int l = 0; l < n_layer_; l++) n += (size_t)n_head_kv_ * std::min<int64_t>(n_past, capacity(l)) * row_bytes_;
    return n;
}

// each (layer, kv head)'s slots in use, [0, min(n_past, capacity)), laid end to end in `out` (to == true) or
// read back from it
static void copy_state(const KVRing& r, const std::vector<size_t>& row0, int64_t n_past, uint8_t* ring, uint8_t* flat,
                       bool to_flat) {
    const size_t rb = r.row_bytes();
    for (int l = 0; l < r.n_layer(); l++) {
        const size_t run = (size_t)std::min<int64_t>(n_past, r.capacity(l)) * rb;
        for (int h = 0; h < r.n_head_kv(); h++, flat += run) {
            uint8_t* rows = ring + (row0[l] + (size_t)h * r.capacity(l)) * rb;
            if (to_flat) std::memcpy(flat, rows, run);
            else std::memcpy(rows, flat, run);
        }
    }
}

void KVRing::copy_rows_out(uint8_t* k, uint8_t* v) const {
    copy_state(*this, layer_row0_, n_past_, k_.get(), k, true);
    copy_state(*this, layer_row0_, n_past_, v_.get(), v, true);
}

bool KVRing::set_state(int sinks, int64_t n_past, size_t n_bytes, const uint8_t* k, const uint8_t* v) {
    if (sinks < 0 || sinks >= ctx_ || n_past < 0 || n_bytes != state_bytes(n_past)) return false;
    copy_state(*this, layer_row0_, n_past, k_.get(), (uint8_t*)k, false);
    copy_state(*this, layer_row0_, n_past, v_.get(), (uint8_t*)v, false);
    sinks_ = sinks;
    n_past_ = n_past;
    ckpt_end_ = -1;   // a checkpoint of the state before does not cover this one
    return true;
}

}  // namespace ec
