// ring-buffer kv cache with pinned attention sinks (StreamingLLM).
// capacity `ctx` slots allocated once: slots [0, sinks) hold the first `sinks` tokens ever fed, forever;
// slots [sinks, ctx) are a ring of W = ctx - sinks entries. the token at absolute position p >= sinks
// lives in slot sinks + (p - sinks) % W, so a new token overwrites the oldest window entry in O(1).
// keys are stored rotated at their absolute positions (sinks at 0..sinks-1); the model rotates each
// query at its absolute position for window keys and at the re-indexed position for sink keys.
// rows are f16 (head_dim halfs) or q8_0 (kv_quantize_q8: head_dim int8 + one fp16 scale per 32 values),
// written once when the token enters the cache and never re-quantized (eviction only overwrites).
// sliding-window layers (gemma3) can keep a ring of their own, `local.cap` slots without sinks (the token
// at p in slot p % cap): they attend to the latest local.window keys only, so their memory does not grow
// with ctx; cap - window + 1 tokens of slack let a rollback (a regenerated reply, a rejected draft) keep
// them. the other layers ("global") keep the sink ring above.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "blocks.h"
#include "huge_buf.h"
#include "kernels/kernels.h"

namespace ec {

enum class KVType { F16 = 0, Q8_0 = 1 };

// the layers kept in rings of their own: layers[l] true for a local layer (empty: none)
struct LocalLayers {
    int cap = 0;      // slots of each local layer's ring (< ctx)
    int window = 0;   // keys a local layer attends to, a query's own included (<= cap)
    std::vector<bool> layers;
};

class KVRing {
public:
    // kv_dim = n_head_kv * head_dim (checked by the caller)
    KVRing(int n_layer, int ctx, int kv_dim, int head_dim, KVType type = KVType::F16, LocalLayers local = {});
    // an empty cache of the same geometry (rows of `type`)
    KVRing like(int sinks, KVType type) const;
    void reset(int sinks);          // empty; sinks in [0, ctx - 1]
    bool truncate(int64_t n_past);  // roll back to the state after n_past tokens; false if evicted past it
    // speculation: keep the window rows that the next n tokens (a verify batch) will overwrite, so that
    // truncate back to any point in [n_past(), n_past() + n] restores them, as if only the tokens up to
    // that point had been fed. valid until reset, the next checkpoint, or n_past() passing that range.
    void checkpoint(int n);

    int ctx() const { return ctx_; }
    int sinks() const { return sinks_; }
    int window() const { return ctx_ - sinks_; }
    int64_t n_past() const { return n_past_; }
    // entries held now by a global layer (sinks filled + window length)
    int used() const;
    int64_t evicted() const;
    // window entries held after n tokens were fed: absolute positions [first_window(n), n)
    int64_t first_window(int64_t n) const;
    size_t bytes() const { return 2 * rows_ * row_bytes_; }   // every layer's rows, k and v
    KVType type() const { return type_; }
    // bytes of one head's row: 2 * head_dim (f16) or kv_q8_row_bytes(head_dim) (q8_0)
    size_t row_bytes() const { return row_bytes_; }
    int n_layer() const { return n_layer_; }
    int n_head_kv() const { return n_head_kv_; }

    int slot(int64_t pos) const {
        return pos < sinks_ ? (int)pos : sinks_ + (int)((pos - sinks_) % (ctx_ - sinks_));
    }
    bool is_local(int layer) const { return !local_.layers.empty() && local_.layers[layer]; }
    int local_window() const { return local_.window; }
    // slots of a layer's ring, and the slot of position pos there (the sink ring's, or pos % cap)
    int capacity(int layer) const { return is_local(layer) ? local_.cap : ctx_; }
    int slot(int layer, int64_t pos) const { return is_local(layer) ? (int)(pos % local_.cap) : slot(pos); }
    // rows of one kv head are contiguous (row_bytes apart): attention streams them
    uint8_t* k_row(int layer, int head, int slot) { return k_.get() + row_index(layer, head, slot) * row_bytes_; }
    uint8_t* v_row(int layer, int head, int slot) { return v_.get() + row_index(layer, head, slot) * row_bytes_; }
    // f16 rows (type F16 only)
    half* k(int layer, int head, int slot) { return (half*)k_row(layer, head, slot); }
    half* v(int layer, int head, int slot) { return (half*)v_row(layer, head, slot); }
    // snapshots: the slots in use of every (layer, kv head), [0, min(n_past, capacity(layer))), to / from
    // (layer, kv head, slots, row_bytes) arrays of state_bytes(n_past) bytes each; set_state checks the
    // size n_past implies before changing anything
    size_t state_bytes(int64_t n_past) const;
    void copy_rows_out(uint8_t* k, uint8_t* v) const;
    bool set_state(int sinks, int64_t n_past, size_t n_bytes, const uint8_t* k, const uint8_t* v);
    int head_dim() const { return head_dim_; }
    void advance(int n) {
        n_past_ += n;
        if (n_past_ > ckpt_end_) ckpt_end_ = -1;   // past the saved range: the checkpoint no longer covers it
    }

private:
    int n_layer_, ctx_, head_dim_, n_head_kv_;
    KVType type_;
    size_t row_bytes_;
    LocalLayers local_;
    std::vector<size_t> layer_row0_;   // (n_layer) first row of each layer: layers are laid end to end
    size_t row_index(int layer, int head, int slot) const {
        return layer_row0_[layer] + (size_t)head * capacity(layer) + slot;
    }
    int sinks_ = 4;
    int64_t n_past_ = 0;     // tokens fed since reset (the next token's absolute position)
    size_t rows_;            // sum over layers of kv head * capacity
    HugeBuf k_;   // per layer (kv head, capacity(layer), row_bytes), layers end to end
    HugeBuf v_;   // the same

    // checkpoint: positions [ckpt_p0_, ckpt_end_) fed after it; rows of the window entries that
    // positions [max(ckpt_p0_, ctx), ckpt_end_) overwrite (entry pos - window()), copied through k_row()/v_row()
    int64_t ckpt_p0_ = -1, ckpt_end_ = -1;
    std::vector<uint8_t> saved_;  // (pos, global layer, kv head, k|v, row bytes)
    int n_global() const;
    void copy_rows(int64_t pos, bool save);   // one position's rows, all layers and heads: ring <-> saved_
};

}  // namespace ec
