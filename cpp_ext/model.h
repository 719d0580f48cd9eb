// llama-family forward pass: llama (smollm2, llama 3.x), qwen2 (qkv bias), qwen3 (qk-norm), gemma3
// (scaled embeddings, qk-norm, post-attention / post-ffn norms, geglu, sliding-window layers).
// batched prefill (matrix x matrix) and single-token decode over a sink-ring kv cache.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "huge_buf.h"
#include "kernels/kernels.h"
#include "kv_ring.h"
#include "pool.h"

namespace ec {

// an allocator whose memory is zero without being touched: calloc hands big blocks over as fresh
// mappings, and elements are default-initialized (not written). the batch-sized scratch below is sized
// for kMaxBatch tokens but a decode step or a short prompt uses its first rows only, so its pages become
// resident as a prompt that long is read, not when the model loads (llama-1b shape: 82 MiB)
template <class T>
struct LazyZero {
    using value_type = T;
    LazyZero() = default;
    template <class U>
    LazyZero(const LazyZero<U>&) {}
    // blocks of 2 MiB and more in huge pages (huge_buf.h): Model::release_scratch hands back a long
    // prompt's rows, and 40 huge pages go back faster than 20,000 small ones (llama-1b, 512 rows: the
    // first decode step after the prompt took 3-5 ms longer than without the release with small
    // pages, about 1 ms longer with huge ones)
    static constexpr size_t kHugeFrom = 2u << 20;
    T* allocate(size_t n) {
        if (n * sizeof(T) >= kHugeFrom) return (T*)huge_map(n * sizeof(T));
        if (void* p = std::calloc(n, sizeof(T))) return (T*)p;
        throw std::bad_alloc();
    }
    void deallocate(T* p, size_t n) {
        if (n * sizeof(T) >= kHugeFrom) huge_unmap(p, n * sizeof(T));
        else std::free(p);
    }
    template <class U>
    void construct(U* p) { ::new ((void*)p) U; }
    template <class U, class... A>
    void construct(U* p, A&&... a) { ::new ((void*)p) U(std::forward<A>(a)...); }
    template <class U>
    bool operator==(const LazyZero<U>&) const { return true; }
    template <class U>
    bool operator!=(const LazyZero<U>&) const { return false; }
};
template <class T>
using Scratch = std::vector<T, LazyZero<T>>;

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
    double rope_freq_scale = 1.0;   // linear rope scaling (positions times this) on the global layers
    // gemma3
    float embd_scale = 1.0f;   // token embeddings times this (gemma: sqrt(n_embd))
    bool gelu = false;         // feed-forward gelu(gate) * up (tanh gelu) instead of silu(gate) * up
    int swa_window = 0;        // sliding-window layers see this many keys, their own included (0: none)
    int swa_period = 0;        // layer l is global when l % swa_period == swa_period - 1, else sliding
    double rope_base_swa = 10000.0;  // rope base of the sliding-window layers
    float final_softcap = 0.0f;      // logits = cap * tanh(logits / cap) when > 0
    // tensor data are views of a read-only file mapping: once a weight is repacked, its source pages
    // are handed back (madvise) so they do not count twice in the resident set
    bool release_source = false;
};

struct LayerW {
    Tensor attn_norm, wq, wk, wv, wo, ffn_norm, w_gate, w_up, w_down;
    std::vector<float> bq, bk, bv;          // qwen2 biases (empty when absent)
    std::vector<float> q_norm, k_norm;      // qwen3 per-head norms (head_dim)
    std::vector<float> attn_norm_f, ffn_norm_f;
    std::vector<float> attn_post_norm_f, ffn_post_norm_f;   // gemma3 (empty when absent)
    bool swa = false;                       // a sliding-window layer (Config::swa_window keys)
};

class Model {
public:
    // tensors named as in gguf ("blk.0.attn_q.weight" ...); throws std::invalid_argument on a bad set
    Model(const Config& cfg, const std::vector<std::pair<std::string, Tensor>>& tensors, int ctx,
          int sinks, int n_threads, KVType kv_type = KVType::F16);

    // append tokens to the cache in use; logits (n_out, n_vocab) into out, n_out = all_logits ? n : 1
    void eval(const int32_t* tokens, int n, bool all_logits, float* out);
    // one forward step over several sequences, each on its own ring: counts[i] tokens (1 .. window) of
    // tokens (laid end to end) appended to kvs[i] (distinct caches of this model's geometry, sum of
    // counts <= max_batch()); logits of each sequence's last token into out (n_seqs, n_vocab). every
    // sequence's logits equal its own eval's, bit for bit
    void step(KVRing* const* kvs, const int32_t* tokens, const int* counts, int n_seqs, float* out);

    // the cache eval and the cache methods work on: the model's own, or (use_cache) one of make_cache's
    KVRing& cache() { return *cur_; }
    void use_cache(KVRing* kv) { cur_ = kv ? kv : &kv_; }
    KVRing& own_cache() { return kv_; }
    // an empty cache of the same geometry, and an O(1) exchange with it (buffers swapped, not copied):
    // the server keeps the caches of several conversations and swaps the one a request continues in
    KVRing make_cache(int sinks, KVType type) const {
        KVRing c = kv_.like(sinks, type);   // rows f16 or q8_0, each cache its own
        c.reset(sinks);
        return c;
    }
    void swap_cache(KVRing& other) { std::swap(*cur_, other); }
    const Config& config() const { return cfg_; }
    const char* isa() const { return k_.isa; }
    int threads() const { return pool_.size(); }
    int max_batch() const { return max_batch_; }
    // chunks up to this many tokens give each token the logits its own one-token decode gives, bit for
    // bit (speculative verify batches)
    static int exact_batch();

private:
    struct Seq { KVRing* kv; const int32_t* tokens; int n; bool all_logits; float* out; };
    void forward(const Seq* seqs, int n_seqs);   // rows of every sequence's chunk laid end to end
    void eval_chunk(KVRing& kv, const int32_t* tokens, int n, bool all_logits, float* out);
    void check_tokens(const int32_t* tokens, int n) const;
    struct MatJob { const Tensor* w; float* y; };
    void matmuls(std::initializer_list<MatJob> jobs, const float* x, int n);   // y_j (n, rows_j) = x (n, cols) * w_j^T
    void matmul(const Tensor& w, const float* x, int n, float* y);   // y (n, rows) = x (n, cols) * w^T
    // a sequence's chunk (rows r0 .. r0 + n of the scratch, queries from token q0) against its ring kv
    struct AttnJob { KVRing* kv; int n; int64_t p0; int q0; int r0; };
    // one pool job: a chunk longer than kMaxSplitTokens alone, or short chunks (decode steps) of several
    // sequences, kMaxSplitTokens tokens in all
    void attention(const AttnJob* jobs, int n_jobs, int layer);
    template <class RUNS>
    void wsum_q8_runs(int hd, int Q, const float* w, size_t ldw, float* y, RUNS&& runs) const;
    void rope_tables(const KVRing& kv, int r0, int n, int64_t p0);   // rows r0 .. r0 + n, at positions p0 ..
    void rope(float* x, int n_heads, const float* cs) const;
    // the keys layer l sees in ring kv: sinks S (pinned) and window W (the latest, a query's own
    // included), and its rope tables (cos/sin at absolute / sink-query positions, row 0)
    struct AttnGeom { int64_t S, W; const float* cs_abs; const float* cs_sink; };
    AttnGeom attn_geom(const KVRing& kv, int layer) const;
    int chunk_limit(const KVRing& kv) const;   // the longest chunk one forward step may take
    void rope_fill(const std::vector<double>& inv_freq, float* abs, float* sink, int t, int64_t p, int64_t ps) const;
    void softcap(float* logits, int n_rows) const;
    void rmsnorm(float* y, const float* x, const float* w, int n_rows, int dim) const;
    void embed(const int32_t* tokens, int n, int r0);   // into rows r0 .. r0 + n of x_
    void store_kv_row(const KVRing& kv, const float* x, uint8_t* dst) const;
    void pack_weights();
    void release_scratch();         // hand back the scratch rows a decode step does not use
    void output(int row0, int n_rows, float* out);

    Config cfg_;
    const KernelTable& k_;
    Pool pool_;
    KVRing kv_;                     // the model's own cache
    KVRing* cur_ = &kv_;            // the cache in use (eval, cache())
    int max_batch_;                 // tokens per forward chunk at most (eval also keeps a chunk within the ring's window)
    int q_dim_, kv_dim_;
    Tensor tok_embd_, out_w_;
    std::vector<float> out_norm_;
    std::vector<LayerW> layers_;
    std::vector<double> inv_freq_;  // (n_rot/2) rope frequencies, freq factors and linear scaling applied
    std::vector<double> inv_freq_swa_;   // (n_rot/2) the sliding-window layers' (empty without them)
    HugeBuf packed_;                // repacked weights
    bool embed_from_output_ = false;   // tied embedding: rows looked up in the packed output copy

    // scratch, sized for max_batch_ tokens
    Scratch<float> x_, xb_, q_, k_cur_, v_cur_, att_, hb_, hb2_;   // (batch, dim) each
    Scratch<uint8_t> xq_;       // (2, batch, quantized row of the widest input): one slot per activation type
    Scratch<uint8_t> kb_, vb_;  // (batch, kv head, row_bytes) this chunk's keys/values in the ring's row
                                    // type, before they enter the ring (attention reads them as stored)
    size_t kv_row_;                 // bytes of one token's kv row: kv head x row_bytes
    int scratch_rows_ = 0;          // the most rows a forward step has touched since the last release_scratch
    Scratch<float> cs_abs_, cs_sink_;  // (batch, n_rot) interleaved cos/sin at abs / sink positions
    Scratch<float> cs_abs_swa_, cs_sink_swa_;   // (batch, n_rot) the same at the sliding-window layers' base
    Scratch<float> scores_;     // (threads, token block x group, ctx + batch) one row per query
    std::vector<float> q_sink_;     // (threads, 2, token block x group, head_dim) queries rotated for window / sink keys
    std::vector<float> att_blk_;    // (threads, token block x group, head_dim) a task's outputs
    std::vector<float> part_;       // decode split partials, one slot per split task (token, kv head, split) in
                                    // task order: (group, head_dim) unnormalized outputs, then (group, 2) max
                                    // and sum; sized for kMaxSplitTokens x kv heads x kMaxSplits tasks
};

}  // namespace ec
