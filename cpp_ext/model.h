// llama-family forward pass: llama (smollm2, llama 3.x), qwen2 (qkv bias), qwen3 (qk-norm).
// batched prefill (matrix x matrix) and single-token decode over a sink-ring kv cache.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "kernels/kernels.h"
#include "kv_ring.h"
#include "pool.h"

namespace ec {

struct Tensor {
    const uint8_t* data = nullptr;  // raw gguf bytes (read-only mmap), rows contiguous
    int type = -1;                  // GType
    int64_t ne[4] = {1, 1, 1, 1};   // ne[0] = row length (elements), ne[1] = rows
    size_t nbytes = 0;
    bool packed = false;            // data is the kernel table's packed layout (Model owns it)
    bool ok() const { return data != nullptr; }
};

struct Config {
    std::string arch;          // llama | qwen2 | qwen3
    int n_layer = 0, n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0, n_vocab = 0;
    int n_rot = 0;             // rotary dims (== head_dim for these archs)
    float eps = 1e-5f;         // rmsnorm epsilon
    double rope_base = 10000.0;
    bool rope_neox = false;    // pairs (i, i + n_rot/2) instead of (2i, 2i+1)
    // tensor data are views of a read-only file mapping: once a weight is repacked, its source pages
    // are handed back (madvise) so they do not count twice in the resident set
    bool release_source = false;
};

struct LayerW {
    Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
    std::vector<float> bq, bk, bv;          // qwen2 biases (empty when absent)
    std::vector<float> q_norm, k_norm;      // qwen3 per-head norms (head_dim)
    std::vector<float> attn_norm_f, ffn_norm_f;
};

class Model {
public:
    // tensors named as in gguf ("blk.0.attn_q.weight" ...); throws std::invalid_argument on a bad set
    Model(const Config& cfg, const std::vector<std::pair<std::string, Tensor>>& tensors, int ctx,
          int sinks, int n_threads, KVType kv_type = KVType::F16);

    // append tokens to the cache; logits (n_out, n_vocab) into out, n_out = all_logits ? n : 1
    void eval(const int32_t* tokens, int n, bool all_logits, float* out);

    KVRing& cache() { return kv_; }
    // an empty cache of the same geometry, and an O(1) exchange with it (buffers swapped, not copied):
    // the server keeps the caches of several conversations and swaps the one a request continues in
    KVRing make_cache(int sinks) const {
        KVRing c(cfg_.n_layer, kv_.ctx(), kv_dim_, cfg_.head_dim, kv_.type());   // same row type as the live cache
        c.reset(sinks);
        return c;
    }
    void swap_cache(KVRing& other) { std::swap(kv_, other); }
    const Config& config() const { return cfg_; }
    const char* isa() const { return k_.isa; }
    int threads() const { return pool_.size(); }
    int max_batch() const { return max_batch_; }
    // chunks up to this many tokens give each token the logits its own one-token decode gives, bit for
    // bit (speculative verify batches)
    static int exact_batch();

private:
    void eval_chunk(const int32_t* tokens, int n, bool all_logits, float* out);
    struct MatJob { const Tensor* w; float* y; };
    void matmuls(std::initializer_list<MatJob> jobs, const float* x, int n);   // y_j (n, rows_j) = x (n, cols) * w_j^T
    void matmul(const Tensor& w, const float* x, int n, float* y);   // y (n, rows) = x (n, cols) * w^T
    void attention(int layer, int n, int64_t p0, int q0 = 0);
    template <class RUNS>
    void wsum_q8_runs(int hd, int Q, const float* w, size_t ldw, float* y, RUNS&& runs) const;
    void rope_tables(int n, int64_t p0);
    void rope(float* x, int n_heads, const float* cs) const;
    void rmsnorm(float* y, const float* x, const float* w, int n_rows, int dim) const;
    void embed(const int32_t* tokens, int n);
    void store_kv_row(const float* x, uint8_t* dst) const;
    void pack_weights();
    void output(int row0, int n_rows, float* out);

    Config cfg_;
    const KernelTable& k_;
    Pool pool_;
    KVRing kv_;
    int max_batch_;                 // tokens per forward chunk at most (eval also keeps a chunk within the ring's window)
    int q_dim_, kv_dim_;
    Tensor tok_embd_, out_w_;
    std::vector<float> out_norm_;
    std::vector<LayerW> layers_;
    std::vector<double> inv_freq_;  // (n_rot/2) rope frequencies, freq factors applied
    std::unique_ptr<uint8_t, void (*)(void*)> packed_{nullptr, std::free};  // repacked weights, 2 MiB aligned
    bool embed_from_output_ = false;   // tied embedding: rows looked up in the packed output copy

    // scratch, sized for max_batch_ tokens
    std::vector<float> x_, xb_, q_, k_cur_, v_cur_, att_, hb_, hb2_;   // (batch, dim) each
    std::vector<uint8_t> xq_;       // (2, batch, quantized row of the widest input): one slot per activation type
    std::vector<uint8_t> kb_, vb_;  // (batch, kv head, row_bytes) this chunk's keys/values in the ring's row
                                    // type, before they enter the ring (attention reads them as stored)
    size_t kv_row_;                 // bytes of one token's kv row: kv head x row_bytes
    std::vector<float> cs_abs_, cs_sink_;  // (batch, n_rot) interleaved cos/sin at abs / sink positions
    std::vector<float> scores_;     // (threads, token block x group, ctx + batch) one row per query
    std::vector<float> q_sink_;     // (threads, 2, token block x group, head_dim) queries rotated for window / sink keys
    std::vector<float> att_blk_;    // (threads, token block x group, head_dim) a task's outputs
    std::vector<float> part_;       // decode split partials, one slot per split task (token, kv head, split) in
                                    // task order: (group, head_dim) unnormalized outputs, then (group, 2) max
                                    // and sum; sized for kMaxSplitTokens x kv heads x kMaxSplits tasks
};

}  // namespace ec
