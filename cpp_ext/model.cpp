#include "model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#include <stdexcept>

#include <sys/mman.h>
#include <unistd.h>

namespace ec {

static constexpr int kMaxBatch = 512;   // tokens per forward chunk (bounded further by the window)
static constexpr int kRowBlock = 32;    // weight rows per gemm task in decode, at least (a multiple of every pack_rows)
// prefill: weight rows per gemm task (a multiple of kRowBlock). a task first converts its column block's
// activation block scales and sums (q4_0/q4_1/q8_0), then runs them against all its rows: llama-1b
// Q4_0, prefill 512, one thread, avx2 table, 4 alternating pairs: 32 rows 61-79 tok/s, 128 rows 79-85
static constexpr int kPrefillRowBlock = 128;
// decode: this many row tasks per thread and matrix, rows split evenly (multiples of kRowGrain, every
// pack_rows divides it): long contiguous weight streams, still some balance if a thread stalls. 2 vs 8
// (rows cut down to multiples of 32 then), 2 threads, zen 5, 3 alternating runs of
// scripts/step_bench.py, 1 / 4 sequences: smollm2-135m 1.98-2.47 / 3.33-3.79 ms vs 2.53-2.68 /
// 3.77-4.15, llama-1b 15.1-17.2 / 22.5-24.2 vs 14.3-17.6 / 23.6-24.7; beside a CPU-bound process, 2
// runs: smollm2-135m 4.20-5.21 / 7.83-8.06 vs 5.46-6.20 / 9.55-9.60, llama-1b 28.7-34.2 / 50.9-51.3
// vs 30.0-32.7 / 48.1-51.4. (one task per thread measured no better than 2)
static constexpr int kDecodeTasks = 2;
static constexpr int kRowGrain = 16;
static constexpr int kColBlock = 64;    // activation columns per gemm task
static constexpr size_t kInlineQuantize = 16384;   // activations (rows x cols x types) quantized without the pool
static constexpr int kElemRows = 8;     // token rows per elementwise task
static constexpr int kMaxSplitTokens = 16; // attention of chunks up to this many tokens (decode, speculative
                                           // verify batches) runs token by token and splits the keys
static constexpr int kTokenBlock = 8;      // longer chunks: tokens per attention task
static constexpr int kMaxSplits = 16;      // at most this many splits per kv head
static constexpr int kMinSplitKeys = 256;  // and at least this many keys per split

using TensorMap = std::map<std::string, Tensor>;

static std::string shape_str(const Tensor& t) {
    return "[" + std::to_string(t.ne[0]) + ", " + std::to_string(t.ne[1]) + "]";
}

// look up a tensor, check its type is runnable and its 2-d shape is (cols, rows)
static Tensor need(const TensorMap& m, const KernelTable& k, const std::string& name, int64_t cols,
                   int64_t rows) {
    auto it = m.find(name);
    if (it == m.end()) throw std::invalid_argument("missing tensor " + name);
    const Tensor& t = it->second;
    if (t.type < 0 || t.type >= GT_COUNT || !k.types[t.type].vec_dot)
        throw std::invalid_argument("tensor " + name + " has a type the native backend does not run (ggml type " +
                                    std::to_string(t.type) + ")");
    const TypeKernels& tk = k.types[t.type];
    if (t.ne[0] != cols || t.ne[1] != rows || t.ne[2] != 1 || t.ne[3] != 1)
        throw std::invalid_argument("tensor " + name + " has shape " + shape_str(t) + ", expected [" +
                                    std::to_string(cols) + ", " + std::to_string(rows) + "]");
    if (cols % tk.blck != 0 || t.nbytes != row_bytes(tk, cols) * (size_t)rows)
        throw std::invalid_argument("tensor " + name + " has an inconsistent byte size");
    return t;
}

// small tensors (norms, biases, rope factors) are dequantized to f32 once
static std::vector<float> need_f32(const TensorMap& m, const KernelTable& k, const std::string& name,
                                   int64_t n, bool optional) {
    auto it = m.find(name);
    if (it == m.end()) {
        if (optional) return {};
        throw std::invalid_argument("missing tensor " + name);
    }
    const Tensor& t = it->second;
    // element count without signed overflow: every dimension positive, the running product at most n
    int64_t count = 1;
    for (int64_t d : t.ne) {
        if (d < 1 || count > n / d)
            throw std::invalid_argument("tensor " + name + " does not have " + std::to_string(n) + " elements");
        count *= d;
    }
    if (count != n) throw std::invalid_argument("tensor " + name + " has " + std::to_string(count) +
                                                " elements, expected " + std::to_string(n));
    if (t.type < 0 || t.type >= GT_COUNT || !k.types[t.type].to_float || n % k.types[t.type].blck != 0 ||
        t.nbytes != row_bytes(k.types[t.type], n))
        throw std::invalid_argument("tensor " + name + " has an unsupported type or size");
    std::vector<float> out(n);
    k.types[t.type].to_float(t.data, out.data(), n);
    return out;
}

// the cache is allocated before the weights are checked, so its row width (n_head_kv * head_dim) is
// checked here first: consistent hyperparameters, computed without overflow, and equal to the rows of
// blk.0.attn_k.weight (so a hostile header cannot make the cache larger than the file allows)
static int checked_kv_dim(const Config& c, const std::vector<std::pair<std::string, Tensor>>& tensors, int ctx) {
    if (c.n_layer <= 0 || c.n_embd <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 || c.head_dim <= 0 ||
        c.n_ff <= 0 || c.n_vocab <= 0 || c.n_head % c.n_head_kv != 0 || c.n_rot <= 0 ||
        c.n_rot > c.head_dim || c.n_rot % 2 != 0 || (int64_t)c.n_head * c.head_dim > INT32_MAX)
        throw std::invalid_argument("inconsistent model hyperparameters");
    if (ctx < 2) throw std::invalid_argument("ctx must be at least 2");
    const int64_t kv_dim = (int64_t)c.n_head_kv * c.head_dim;
    for (const auto& [name, t] : tensors)
        if (name == "blk.0.attn_k.weight") {
            if (t.ne[1] != kv_dim)
                throw std::invalid_argument("tensor blk.0.attn_k.weight has " + std::to_string(t.ne[1]) +
                                            " rows, expected n_head_kv * head_dim = " + std::to_string(kv_dim));
            return (int)kv_dim;
        }
    throw std::invalid_argument("missing tensor blk.0.attn_k.weight");
}

// sliding-window layers (gemma3) keep rings of their own, window + kLocalSlack slots, when that is
// shorter than ctx: the slack lets a rollback of up to kLocalSlack + 1 tokens (a regenerated reply, a
// rejected draft) find their keys still there. otherwise every layer keeps the sink ring
static constexpr int kLocalSlack = 512;

static LocalLayers local_layers(const Config& c, int ctx) {
    LocalLayers local;
    if (c.swa_window <= 0 || c.swa_period <= 0 || (int64_t)c.swa_window + kLocalSlack >= ctx) return local;
    local.cap = c.swa_window + kLocalSlack;
    local.window = c.swa_window;
    for (int l = 0; l < c.n_layer; l++) local.layers.push_back(l % c.swa_period != c.swa_period - 1);
    return local;
}

Model::Model(const Config& cfg, const std::vector<std::pair<std::string, Tensor>>& tensors, int ctx,
             int sinks, int n_threads, KVType kv_type)
    : cfg_(cfg), k_(select_kernels()), pool_(n_threads),
      kv_(cfg.n_layer, ctx, checked_kv_dim(cfg, tensors, ctx), cfg.head_dim, kv_type, local_layers(cfg, ctx)) {
    const Config& c = cfg_;
    kv_.reset(sinks);
    q_dim_ = c.n_head * c.head_dim;
    kv_dim_ = c.n_head_kv * c.head_dim;

    TensorMap m(tensors.begin(), tensors.end());
    tok_embd_ = need(m, k_, "token_embd.weight", c.n_embd, c.n_vocab);
    out_w_ = m.count("output.weight") ? need(m, k_, "output.weight", c.n_embd, c.n_vocab) : tok_embd_;
    out_norm_ = need_f32(m, k_, "output_norm.weight", c.n_embd, false);
    std::vector<float> freq_factors = need_f32(m, k_, "rope_freqs.weight", c.n_rot / 2, true);
    for (int i = 0; i < c.n_rot / 2; i++) {
        double f = std::pow(c.rope_base, -2.0 * i / c.n_rot) * c.rope_freq_scale;
        inv_freq_.push_back(freq_factors.empty() ? f : f / freq_factors[i]);
        if (c.swa_window > 0) inv_freq_swa_.push_back(std::pow(c.rope_base_swa, -2.0 * i / c.n_rot));
    }
    for (int l = 0; l < c.n_layer; l++) {
        std::string p = "blk." + std::to_string(l) + ".";
        LayerW L;
        L.attn_norm_f = need_f32(m, k_, p + "attn_norm.weight", c.n_embd, false);
        L.ffn_norm_f = need_f32(m, k_, p + "ffn_norm.weight", c.n_embd, false);
        L.wq = need(m, k_, p + "attn_q.weight", c.n_embd, q_dim_);
        L.wk = need(m, k_, p + "attn_k.weight", c.n_embd, kv_dim_);
        L.wv = need(m, k_, p + "attn_v.weight", c.n_embd, kv_dim_);
        L.wo = need(m, k_, p + "attn_output.weight", q_dim_, c.n_embd);
        L.w_gate = need(m, k_, p + "ffn_gate.weight", c.n_embd, c.n_ff);
        L.w_up = need(m, k_, p + "ffn_up.weight", c.n_embd, c.n_ff);
        L.w_down = need(m, k_, p + "ffn_down.weight", c.n_ff, c.n_embd);
        L.bq = need_f32(m, k_, p + "attn_q.bias", q_dim_, true);
        L.bk = need_f32(m, k_, p + "attn_k.bias", kv_dim_, true);
        L.bv = need_f32(m, k_, p + "attn_v.bias", kv_dim_, true);
        L.q_norm = need_f32(m, k_, p + "attn_q_norm.weight", c.head_dim, true);
        L.k_norm = need_f32(m, k_, p + "attn_k_norm.weight", c.head_dim, true);
        L.attn_post_norm_f = need_f32(m, k_, p + "post_attention_norm.weight", c.n_embd, true);
        L.ffn_post_norm_f = need_f32(m, k_, p + "post_ffw_norm.weight", c.n_embd, true);
        L.swa = c.swa_window > 0 && c.swa_period > 0 && l % c.swa_period != c.swa_period - 1;
        layers_.push_back(std::move(L));
    }

    pack_weights();

    max_batch_ = kMaxBatch;
    const int B = max_batch_, T = pool_.size();
    int widest = std::max({c.n_embd, q_dim_, c.n_ff});
    x_.resize((size_t)B * c.n_embd);
    xb_.resize((size_t)B * std::max(c.n_embd, q_dim_));
    q_.resize((size_t)B * q_dim_);
    k_cur_.resize((size_t)B * kv_dim_);
    v_cur_.resize((size_t)B * kv_dim_);
    att_.resize((size_t)B * q_dim_);
    hb_.resize((size_t)B * c.n_ff);
    hb2_.resize((size_t)B * c.n_ff);
    // widest activation row in any vec_type: q8_K is 292 bytes per 256, q8_1 36 per 32, f32 4 per 1
    xq_.resize(2 * (size_t)B * (widest * 4 + 512));   // two activation types at once (mixed files)
    // a chunk token's row in kb_ / vb_: kv heads x the widest row type (f16), whatever each ring's type
    kv_row_ = (size_t)c.n_head_kv * 2 * c.head_dim;
    kb_.resize((size_t)B * kv_row_);
    vb_.resize((size_t)B * kv_row_);
    cs_abs_.resize((size_t)B * c.n_rot);
    cs_sink_.resize((size_t)B * c.n_rot);
    if (!inv_freq_swa_.empty()) cs_abs_swa_.resize((size_t)B * c.n_rot), cs_sink_swa_.resize((size_t)B * c.n_rot);
    const int G = c.n_head / c.n_head_kv;
    scores_.resize((size_t)T * kTokenBlock * G * ((size_t)ctx + B));
    q_sink_.resize((size_t)T * 2 * kTokenBlock * G * c.head_dim);
    att_blk_.resize((size_t)T * kTokenBlock * G * c.head_dim);
    part_.resize((size_t)kMaxSplitTokens * c.n_head_kv * kMaxSplits * G * (c.head_dim + 2));
}

// ---- weight repacking --------------------------------------------------------------------------

// hand back the pages of [p, p + n) that lie wholly inside it (a file mapping refaults them on use)
static void release_pages(const uint8_t* p, size_t n) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const uintptr_t a = ((uintptr_t)p + page - 1) & ~(page - 1), b = ((uintptr_t)p + n) & ~(page - 1);
    if (b > a) madvise((void*)a, b - a, MADV_DONTNEED);
}

// every matmul weight whose type has a packed layout in the chosen table (and whose rows fill whole
// groups) is repacked once, in parallel, into one aligned buffer. a tied output gets a packed copy,
// which embed() then reads too (packed_row_to_float): the plain token_embd pages are handed back.
void Model::pack_weights() {
    std::vector<Tensor*> todo;
    auto want = [&](Tensor& t) {
        const TypeKernels& tk = k_.types[t.type];
        if (tk.pack && t.ne[1] % tk.pack_rows == 0) todo.push_back(&t);
    };
    for (LayerW& L : layers_)
        for (Tensor* t : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down}) want(*t);
    want(out_w_);
    if (todo.empty()) return;
    size_t total = 0;
    std::vector<size_t> offs;
    for (Tensor* t : todo) offs.push_back(total), total += (t->nbytes + 63) & ~(size_t)63;
    packed_ = HugeBuf(total);   // huge pages: decode streams all of it once per token
    for (size_t i = 0; i < todo.size(); i++) {
        Tensor& t = *todo[i];
        const TypeKernels& tk = k_.types[t.type];
        const size_t rb = row_bytes(tk, t.ne[0]);
        const int64_t groups = t.ne[1] / tk.pack_rows, per_task = std::max<int64_t>(1, 64 / tk.pack_rows);
        uint8_t* dst = packed_.get() + offs[i];
        pool_.run((int)((groups + per_task - 1) / per_task), [&](int task, int) {
            const int64_t g0 = task * per_task, ng = std::min(per_task, groups - g0);
            const size_t off = (size_t)g0 * tk.pack_rows * rb;
            tk.pack(t.data + off, rb, dst + off, ng * tk.pack_rows, t.ne[0]);
        });
        // a tied output's packed copy also serves embed(): the plain token_embd is never read again
        if (&t == &out_w_ && t.data == tok_embd_.data && tk.packed_row_to_float) embed_from_output_ = true;
        if (cfg_.release_source && (t.data != tok_embd_.data || embed_from_output_)) release_pages(t.data, t.nbytes);
        t.data = dst;
        t.packed = true;
    }
}

// ---- elementwise --------------------------------------------------------------------------------

void Model::rmsnorm(float* y, const float* x, const float* w, int n_rows, int dim) const {
    for (int r = 0; r < n_rows; r++) {
        const float* xr = x + (size_t)r * dim;
        float* yr = y + (size_t)r * dim;
        double ss = 0.0;
        for (int i = 0; i < dim; i++) ss += (double)xr[i] * xr[i];
        float scale = (float)(1.0 / std::sqrt(ss / dim + cfg_.eps));
        for (int i = 0; i < dim; i++) yr[i] = xr[i] * scale * w[i];
    }
}

// rotate n_heads heads of head_dim in x; cs: (n_rot) interleaved cos, sin
void Model::rope(float* x, int n_heads, const float* cs) const {
    const int hd = cfg_.head_dim, half_rot = cfg_.n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float* xh = x + (size_t)h * hd;
        for (int i = 0; i < half_rot; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            int a = cfg_.rope_neox ? i : 2 * i;
            int b = cfg_.rope_neox ? i + half_rot : 2 * i + 1;
            float x0 = xh[a], x1 = xh[b];
            xh[a] = x0 * c - x1 * s;
            xh[b] = x0 * s + x1 * c;
        }
    }
}

// cos/sin for each token of the chunk, at its absolute position and at its re-indexed sink-query
// position; angles in float64 (absolute positions grow without bound in a long chat)
void Model::rope_tables(const KVRing& kv, int r0, int n, int64_t p0) {
    const int64_t S = kv.sinks(), W = kv.window();
    for (int t = r0; t < r0 + n; t++) {
        int64_t p = p0 + t - r0;
        int64_t ps = p < S ? p : S + std::min<int64_t>(p + 1 - S, W) - 1;
        rope_fill(inv_freq_, cs_abs_.data(), cs_sink_.data(), t, p, ps);
        if (!inv_freq_swa_.empty()) rope_fill(inv_freq_swa_, cs_abs_swa_.data(), cs_sink_swa_.data(), t, p, ps);
    }
}

// row t of one set of rope tables: cos/sin at absolute position p and sink-query position ps
void Model::rope_fill(const std::vector<double>& inv_freq, float* abs, float* sink, int t, int64_t p, int64_t ps) const {
    for (size_t i = 0; i < inv_freq.size(); i++) {
        double a = (double)p * inv_freq[i], b = (double)ps * inv_freq[i];
        abs[(size_t)t * cfg_.n_rot + 2 * i] = (float)std::cos(a);
        abs[(size_t)t * cfg_.n_rot + 2 * i + 1] = (float)std::sin(a);
        sink[(size_t)t * cfg_.n_rot + 2 * i] = (float)std::cos(b);
        sink[(size_t)t * cfg_.n_rot + 2 * i + 1] = (float)std::sin(b);
    }
}

// a sliding-window layer sees the latest swa_window keys (no sinks: as trained, and as llama.cpp's
// mask), when the ring's window holds that many; a ring with a shorter window gives it the global
// layers' view (sinks + window), which equals full attention until the ring evicts
Model::AttnGeom Model::attn_geom(const KVRing& kv, int layer) const {
    if (!layers_[layer].swa) return {kv.sinks(), kv.window(), cs_abs_.data(), cs_sink_.data()};
    if (kv.is_local(layer)) return {0, kv.local_window(), cs_abs_swa_.data(), cs_sink_swa_.data()};   // its own ring
    if (cfg_.swa_window < kv.window()) return {0, cfg_.swa_window, cs_abs_swa_.data(), cs_sink_swa_.data()};
    return {kv.sinks(), kv.window(), cs_abs_swa_.data(), cs_sink_swa_.data()};
}

// a chunk's keys must all lie inside each of its queries' windows (attention masks the cache's keys
// only): at most the ring's window, and the sliding window
int Model::chunk_limit(const KVRing& kv) const {
    const int w = kv.window();
    return cfg_.swa_window > 0 ? std::min(w, cfg_.swa_window) : w;
}

void Model::embed(const int32_t* tokens, int n, int r0) {
    const TypeKernels& tk = k_.types[tok_embd_.type];
    size_t ld = row_bytes(tk, cfg_.n_embd);
    for (int t = 0; t < n; t++) {
        float* x = x_.data() + (size_t)(r0 + t) * cfg_.n_embd;
        if (embed_from_output_) {   // row tokens[t] of the packed output copy (same values)
            const int g = tokens[t] / tk.pack_rows, r = tokens[t] % tk.pack_rows;
            tk.packed_row_to_float(out_w_.data + (size_t)g * tk.pack_rows * ld, r, cfg_.n_embd, x);
        } else {
            tk.to_float(tok_embd_.data + (size_t)tokens[t] * ld, x, cfg_.n_embd);
        }
        if (cfg_.embd_scale != 1.0f)
            for (int i = 0; i < cfg_.n_embd; i++) x[i] *= cfg_.embd_scale;
    }
}

// ---- matmul -------------------------------------------------------------------------------------

// y_j (n, rows_j) = x (n, cols) * w_j^T for every job j: x is quantized once per activation type the
// weights need (at most two: q8_0/q8_1 and q8_K in a mixed file), then one pool job runs the row
// blocks of all the matrices (one sync point for q, k and v; one for gate and up)
void Model::matmuls(std::initializer_list<MatJob> jobs, const float* x, int n) {
    const int cols = (int)jobs.begin()->w->ne[0];
    GType slot_type[2];
    int n_slots = 0, slot_of[8];
    int j = 0;
    for (const MatJob& m : jobs) {
        const GType vt = k_.types[m.w->type].vec_type;
        int s = -1;
        for (int i = 0; i < n_slots; i++) if (slot_type[i] == vt) s = i;
        if (s < 0 && vt != GT_F32) slot_type[s = n_slots++] = vt;
        slot_of[j++] = s;
    }
    const size_t slot_bytes = xq_.size() / 2;
    auto quantize = [&](int task, int) {
        const int t = task % n, s = task / n;
        const TypeKernels& vk = k_.types[slot_type[s]];
        vk.from_float(x + (size_t)t * cols, xq_.data() + s * slot_bytes + (size_t)t * row_bytes(vk, cols), cols);
    };
    // a decode step's few rows are quantized here, not handed to the pool: a job's start and end
    // cost more than the work (4 rows of 576: under a microsecond)
    if ((size_t)n * n_slots * cols <= kInlineQuantize) for (int t = 0; t < n * n_slots; t++) quantize(t, 0);
    else if (n_slots) pool_.run(n * n_slots, quantize);
    const int col_blocks = (n + kColBlock - 1) / kColBlock;
    // row block per matrix: kPrefillRowBlock in prefill; in decode (one column block) at least
    // kRowBlock, longer for big matrices, so that each task streams one long run of weights
    int first_task[9] = {0}, row_block[8];
    const int n_tasks = kDecodeTasks * pool_.size();
    j = 0;
    for (const MatJob& m : jobs) {
        const int rows = (int)m.w->ne[1];
        row_block[j] = kPrefillRowBlock;
        if (col_blocks == 1)
            row_block[j] = std::max(kRowBlock, ((rows + n_tasks - 1) / n_tasks + kRowGrain - 1) / kRowGrain * kRowGrain);
        first_task[j + 1] = first_task[j] + (rows + row_block[j] - 1) / row_block[j] * col_blocks;
        j++;
    }
    const MatJob* job = jobs.begin();
    pool_.run(first_task[j], [&](int task, int) {
        int i = 0;
        while (task >= first_task[i + 1]) i++;
        const Tensor& w = *job[i].w;
        const TypeKernels& tk = k_.types[w.type];
        const TypeKernels& vk = k_.types[tk.vec_type];
        const int rows = (int)w.ne[1], rb = row_block[i], row_blocks = (rows + rb - 1) / rb;
        const size_t ldw = row_bytes(tk, cols), ldx = row_bytes(vk, cols);
        const uint8_t* xq = slot_of[i] < 0 ? (const uint8_t*)x : xq_.data() + slot_of[i] * slot_bytes;
        const int local = task - first_task[i];
        const int r0 = (local % row_blocks) * rb, c0 = (local / row_blocks) * kColBlock;
        const int nr = std::min(rb, rows - r0), nc = std::min(kColBlock, n - c0);
        const auto gemm = w.packed ? tk.gemm_packed : tk.gemm;   // packed: row blocks are whole groups
        gemm(cols, nr, nc, w.data + (size_t)r0 * ldw, ldw, xq + (size_t)c0 * ldx, ldx,
             job[i].y + (size_t)c0 * rows + r0, rows);
    });
}

void Model::matmul(const Tensor& w, const float* x, int n, float* y) { matmuls({{&w, y}}, x, n); }

// ---- attention ----------------------------------------------------------------------------------

// the weighted sum over q8_0 values of a split's runs. the kernel quantizes the weights per group of
// kWsumGroup absolute positions (kernels.h), so that a group's sum does not depend on how its rows were
// split into runs (cache and chunk, the ring's wrap, sinks and window): chunked prefill, a speculative
// verify batch and token-by-token decode give the same bits. a group whose rows lie in two or more runs
// is gathered into one buffer first; every other row is read where it lies.
// runs(piece) calls piece(rows, ld, n, first position, index of the first row's weight) for each run
template <class RUNS>
void Model::wsum_q8_runs(int hd, int Q, const float* w, size_t ldw, float* y, RUNS&& runs) const {
    struct Piece { const uint8_t* v; size_t ld; int64_t n, pos, at; };
    Piece pc[8];
    int np = 0;
    runs([&](const uint8_t* v, size_t ld, int64_t n, int64_t pos, int64_t at) { if (n > 0) pc[np++] = {v, ld, n, pos, at}; });
    const int64_t G = kWsumGroup;
    const size_t rb = kv_q8_row_bytes(hd);
    thread_local std::vector<uint8_t> gathered;
    gathered.resize((size_t)G * rb);
    // rows of piece p that go to the kernel where they lie: all but the last group's when that group
    // continues in the next piece
    auto own_rows = [&](int p) {
        const Piece& c = pc[p];
        const int64_t last = c.pos + c.n - 1, start = last / G * G;
        return p + 1 < np && pc[p + 1].pos < start + G ? std::max<int64_t>(0, start - c.pos) : c.n;
    };
    int p = 0;
    int64_t o = 0;
    while (p < np) {
        const Piece& c = pc[p];
        const int64_t own = own_rows(p);
        if (o == c.n) {
            p++, o = 0;
        } else if (o < own) {
            k_.wsum_q8_g((int)(own - o), hd, Q, w + c.at + o, ldw, c.v + o * c.ld, c.ld, y, c.pos + o);
            o = own;
        } else {   // o starts a group that continues in the next piece(s): gather it
            const int64_t end = (c.pos + o) / G * G + G, at = c.at + o;
            int m = 0;
            while (p < np && pc[p].pos + o < end) {
                const int64_t take = std::min(pc[p].n - o, end - pc[p].pos - o);
                for (int64_t j = 0; j < take; j++) std::memcpy(gathered.data() + (size_t)m++ * rb, pc[p].v + (o + j) * pc[p].ld, rb);
                o += take;
                if (o < pc[p].n) break;
                p++, o = 0;
            }
            k_.wsum_q8_g(m, hd, Q, w + at, ldw, gathered.data(), rb, y, 0);   // one group (m <= G rows)
        }
    }
}

// softmax(q k^T / sqrt(d)) v for each token of the chunk and each head. a query at absolute position p
// sees the key at position a when a <= p and (a < S or a > p - W): the sinks, the cache's window entries
// still inside its own window, the chunk's tokens up to itself (the chunk is never longer than W).
// one task takes a block of tokens (kTokenBlock in prefill, one in decode) and the G query heads of one
// kv head: each key / value row is read and converted once for all TB x G queries; keys a block's
// first token sees but a later one does not are masked per query. in decode each kv head's keys are
// also split over several tasks, whose partial softmaxes (max, sum, unnormalized output) are merged.
// the chunk's n tokens are keys; queries are tokens q0..n-1 (the last layer of a prefill whose earlier
// tokens' outputs nobody reads skips their queries: a query's result does not depend on which others run)
void Model::attention(const AttnJob* jobs, int n_jobs, int layer) {
    const int hd = cfg_.head_dim, n_kv = cfg_.n_head_kv, G = cfg_.n_head / n_kv;
    const float scale = 1.0f / std::sqrt((float)hd);
    const size_t lds = (size_t)jobs[0].kv->ctx() + max_batch_;   // scores row stride (per query): step checks
                                                                   // that every ring has the same ctx
    const int T = pool_.size();
    const int TB = jobs[0].n <= kMaxSplitTokens ? 1 : kTokenBlock;
    const int blocks = TB == 1 ? 0 : (jobs[0].n - jobs[0].q0 + TB - 1) / TB;   // TB > 1: one job
    AttnGeom geoms[kMaxSplitTokens];
    for (int j = 0; j < n_jobs; j++) geoms[j] = attn_geom(*jobs[j].kv, layer);
    // splits (decode): enough tasks for every thread (4 each), at least kMinSplitKeys keys per split.
    // each token of a short chunk (a speculative verify batch) splits its keys as its own one-token
    // decode would, so its logits equal token-by-token decode bit for bit; the tokens of several
    // sequences' chunks (a batched step) are laid end to end: u indexes them, job_of / tok_of say whose
    int first_task[kMaxSplitTokens + 1] = {0}, split_of[kMaxSplitTokens], job_of[kMaxSplitTokens], tok_of[kMaxSplitTokens];
    int n_tok = 0;
    if (TB == 1)
        for (int j = 0; j < n_jobs; j++)
            for (int t = 0; t < jobs[j].n; t++, n_tok++) {   // no tasks for tokens before q0
                const int64_t keys = std::min<int64_t>(jobs[j].p0 + t + 1, jobs[j].kv->ctx());
                split_of[n_tok] = t < jobs[j].q0 ? 0 : (int)std::clamp<int64_t>(
                    std::min<int64_t>((4 * T + n_kv - 1) / n_kv, keys / kMinSplitKeys), 1, kMaxSplits);
                job_of[n_tok] = j, tok_of[n_tok] = t;
                first_task[n_tok + 1] = first_task[n_tok] + n_kv * split_of[n_tok];
            }
    const size_t part_stride = (size_t)G * (hd + 2);      // per split task: G x (out[hd], max, sum)
    pool_.run(TB == 1 ? first_task[n_tok] : blocks * n_kv, [&](int task, int th) {
        int blk = task / n_kv, kvh = task % n_kv, sp = 0, splits = 1, j = 0;
        if (TB == 1) {
            int u = 0;
            while (task >= first_task[u + 1]) u++;
            splits = split_of[u], j = job_of[u], blk = tok_of[u];
            kvh = (task - first_task[u]) / splits, sp = (task - first_task[u]) % splits;
        }
        KVRing& kv = *jobs[j].kv;
        const AttnGeom& geom = geoms[j];
        const int64_t S = geom.S, W = geom.W, p0 = jobs[j].p0;
        const int n = jobs[j].n, r0 = jobs[j].r0;
        const int t0 = TB == 1 ? blk : jobs[j].q0 + blk * TB, tn = std::min(TB, n - t0), Q = tn * G;   // queries: (token, head in group)
        float* qw = q_sink_.data() + (size_t)th * 2 * TB * G * hd;   // Q queries rotated for window keys
        float* qs = qw + (size_t)TB * G * hd;                         // and for sink keys
        for (int i = 0; i < Q; i++) {
            const int t = t0 + i / G, g = i % G;
            const float* src = q_.data() + (size_t)(r0 + t) * q_dim_ + (size_t)(kvh * G + g) * hd;
            std::memcpy(qw + (size_t)i * hd, src, hd * sizeof(float));
            std::memcpy(qs + (size_t)i * hd, src, hd * sizeof(float));
            rope(qw + (size_t)i * hd, 1, geom.cs_abs + (size_t)(r0 + t) * cfg_.n_rot);
            rope(qs + (size_t)i * hd, 1, geom.cs_sink + (size_t)(r0 + t) * cfg_.n_rot);
            for (int d = 0; d < hd; d++) qw[(size_t)i * hd + d] *= scale, qs[(size_t)i * hd + d] *= scale;  // 1/sqrt(d) folded in
        }
        float* sc = scores_.data() + (size_t)th * TB * G * lds;
        const size_t off = (size_t)kvh * kv.row_bytes();   // this kv head inside a chunk token's row

        // the keys (and values) the block's first token sees, plus the chunk's tokens up to its last, as
        // runs of consecutive rows ld apart with their first absolute position: the cache's sinks,
        // its window (at most two runs: the ring wraps once), the chunk's sinks, the chunk's window
        // (the cache's rows of a kv head are row_bytes apart, the chunk's kv_row_ apart)
        // (rows are the ring's row type, ld in bytes)
        struct Run { const uint8_t* k; const uint8_t* v; size_t ld; int64_t n, pos; const float* q; };
        Run runs[5];
        int n_runs = 0;
        int64_t total = 0;
        auto add = [&](const uint8_t* k, const uint8_t* v, size_t ld, int64_t len, int64_t pos, const float* q) {
            if (len > 0) runs[n_runs++] = {k, v, ld, len, pos, q}, total += len;
        };
        const size_t rb = kv.row_bytes();
        add(kv.k_row(layer, kvh, 0), kv.v_row(layer, kvh, 0), rb, std::min<int64_t>(S, p0), 0, qs);
        for (int64_t a = std::max<int64_t>(S, p0 + t0 - W + 1); a < p0;) {
            const int s0 = kv.slot(layer, a);
            const int64_t len = std::min<int64_t>(p0 - a, kv.capacity(layer) - s0);
            add(kv.k_row(layer, kvh, s0), kv.v_row(layer, kvh, s0), rb, len, a, qw);
            a += len;
        }
        const int64_t t_end = t0 + tn, chunk_sinks = std::clamp<int64_t>(S - p0, 0, t_end);
        const uint8_t* kb = kb_.data() + (size_t)r0 * kv_row_ + off;   // this sequence's chunk rows
        const uint8_t* vb = vb_.data() + (size_t)r0 * kv_row_ + off;
        add(kb, vb, kv_row_, chunk_sinks, p0, qs);
        add(kb + (size_t)chunk_sinks * kv_row_, vb + (size_t)chunk_sinks * kv_row_, kv_row_,
            t_end - chunk_sinks, p0 + chunk_sinks, qw);

        // this split's keys: [k0, k1) of the runs laid end to end
        const int64_t per = (total + splits - 1) / splits, k0 = std::min(total, sp * per), k1 = std::min(total, k0 + per);
        const int m = (int)(k1 - k0);
        auto each_run = [&](const std::function<void(const Run&, int64_t, int64_t, int64_t)>& f) {
            int64_t base = 0;   // f(run, first row in the run, rows, position in this split's scores)
            for (int r = 0; r < n_runs; r++) {
                const int64_t a = std::max(k0, base), b = std::min(k1, base + runs[r].n);
                if (a < b) f(runs[r], a - base, b - a, a - k0);
                base += runs[r].n;
            }
        };
        const bool q8 = kv.type() == KVType::Q8_0;
        each_run([&](const Run& r, int64_t first, int64_t len, int64_t at) {
            if (q8) k_.scores_q8_g((int)len, hd, Q, r.k + first * r.ld, r.ld, r.q, sc + at, lds);
            else k_.scores_f16_g((int)len, hd, Q, (const half*)(r.k + first * r.ld), r.ld / sizeof(half), r.q, sc + at, lds);
        });
        // keys a later query of the block must not see: the block's own future (the tail of the chunk
        // runs), and, with a full ring, the window entries that left a later token's window (the head
        // of the cache's window, right after the sink keys)
        if (tn > 1)
            each_run([&](const Run& r, int64_t first, int64_t len, int64_t at) {
                const int64_t a0 = r.pos + first;   // positions a0 .. a0 + len - 1
                for (int i = 0; i < Q; i++) {
                    const int64_t p = p0 + t0 + i / G;
                    std::fill(sc + (size_t)i * lds + at + std::clamp<int64_t>(p + 1 - a0, 0, len),
                              sc + (size_t)i * lds + at + len, -INFINITY);
                }
            });
        // softmax in two segments, the sink keys [0, ns) and the window keys from the first this query
        // sees [b0, m): a key's exp and every partial sum are then the same whichever block or chunk the
        // query was evaluated in (chunked prefill equals token by token, bit for bit, without splits)
        const int64_t cache_sinks = std::min<int64_t>(S, p0), a_start = std::max<int64_t>(S, p0 + t0 - W + 1);
        const int64_t cw_len = std::max<int64_t>(0, p0 - a_start);
        const int ns = (int)std::clamp<int64_t>(cache_sinks + chunk_sinks - k0, 0, m);
        float* part = part_.data() + (size_t)task * part_stride;
        float* y = splits == 1 ? att_blk_.data() + (size_t)th * TB * G * hd : part;   // Q x hd outputs
        std::memset(y, 0, (size_t)Q * hd * sizeof(float));
        for (int i = 0; i < Q; i++) {
            const int64_t p = p0 + t0 + i / G;
            const int b0 = ns + (int)std::clamp<int64_t>(p - W + 1 - a_start, 0, tn > 1 ? cw_len : 0);
            float* si = sc + (size_t)i * lds;
            const float mx = std::max(ns ? k_.max_f32(ns, si) : -INFINITY, m > b0 ? k_.max_f32(m - b0, si + b0) : -INFINITY);
            std::fill(si + ns, si + b0, 0.0f);
            const float sum = (ns ? k_.exp_sum(ns, si, mx) : 0.0f) + (m > b0 ? k_.exp_sum(m - b0, si + b0, mx) : 0.0f);
            if (splits == 1) {
                const float inv = 1.0f / sum;   // normalized weights: one pass over the values
                for (int j = 0; j < m; j++) si[j] *= inv;
            } else {
                part[G * hd + 2 * i] = mx;
                part[G * hd + 2 * i + 1] = sum;
            }
        }
        if (q8) wsum_q8_runs(hd, Q, sc, lds, y, [&](const auto& piece) {
            each_run([&](const Run& r, int64_t first, int64_t len, int64_t at) { piece(r.v + first * r.ld, r.ld, len, r.pos + first, at); });
        });
        else each_run([&](const Run& r, int64_t first, int64_t len, int64_t at) {
            k_.wsum_f16_g((int)len, hd, Q, sc + at, lds, (const half*)(r.v + first * r.ld), r.ld / sizeof(half), y);
        });
        if (splits == 1)
            for (int i = 0; i < Q; i++)
                std::memcpy(att_.data() + (size_t)(r0 + t0 + i / G) * q_dim_ + (size_t)(kvh * G + i % G) * hd,
                            y + (size_t)i * hd, hd * sizeof(float));
    });
    if (TB != 1) return;
    // merge the splits of each (token, query head): rescale each partial to the common max
    for (int u = 0; u < n_tok; u++)
        for (int kvh = 0, splits = split_of[u]; kvh < n_kv && splits > 1; kvh++) {
            const float* part0 = part_.data() + (size_t)(first_task[u] + kvh * splits) * part_stride;
            for (int g = 0; g < G; g++) {
                float mx = -INFINITY;
                for (int s = 0; s < splits; s++) mx = std::max(mx, part0[s * part_stride + G * hd + 2 * g]);
                float* o = att_.data() + (size_t)(jobs[job_of[u]].r0 + tok_of[u]) * q_dim_ + (size_t)(kvh * G + g) * hd;
                std::memset(o, 0, hd * sizeof(float));
                double total = 0.0;
                for (int s = 0; s < splits; s++) {
                    const float* ps = part0 + s * part_stride;
                    const float smx = ps[G * hd + 2 * g], ssum = ps[G * hd + 2 * g + 1];
                    if (ssum == 0.0f) continue;   // an empty split
                    const float f = std::exp(smx - mx);
                    total += (double)ssum * f;
                    for (int i = 0; i < hd; i++) o[i] += f * ps[g * hd + i];
                }
                const float inv = (float)(1.0 / total);
                for (int i = 0; i < hd; i++) o[i] *= inv;
            }
        }
}

// ---- forward ------------------------------------------------------------------------------------

void Model::output(int row0, int n_rows, float* out) {
    float* xn = xb_.data();
    rmsnorm(xn, x_.data() + (size_t)row0 * cfg_.n_embd, out_norm_.data(), n_rows, cfg_.n_embd);
    matmul(out_w_, xn, n_rows, out);
    softcap(out, n_rows);
}

// final logit softcapping (a file's final_logit_softcapping): cap * tanh(logit / cap)
void Model::softcap(float* logits, int n_rows) const {
    const float cap = cfg_.final_softcap;
    if (cap <= 0.0f) return;
    for (size_t i = 0; i < (size_t)n_rows * cfg_.n_vocab; i++) logits[i] = cap * std::tanh(logits[i] / cap);
}

// one token's keys or values (kv_dim floats) in the row type of its ring: f16, or q8_0 per head
void Model::store_kv_row(const KVRing& kv, const float* x, uint8_t* dst) const {
    if (kv.type() == KVType::F16) return k_.f32_to_f16(x, (half*)dst, kv_dim_);
    for (int h = 0; h < cfg_.n_head_kv; h++)
        k_.kv_quantize_q8(x + (size_t)h * cfg_.head_dim, dst + (size_t)h * kv.row_bytes(), cfg_.head_dim);
}

void Model::eval_chunk(KVRing& kv, const int32_t* tokens, int n, bool all_logits, float* out) {
    const Seq one{&kv, tokens, n, all_logits, out};
    forward(&one, 1);
}

// one forward pass over the chunks of several sequences, each on its own ring: the rows of every
// chunk go through the matmuls together (the weights are read once), attention runs per sequence on
// its ring. each row's arithmetic does not depend on the other rows, so a sequence's logits equal
// those of its own eval, bit for bit
// the scratch rows past kKeepRows are handed back to the system when a step of at most kKeepRows rows
// (a decode step, batched or speculative) follows a longer chunk: a 512-token prompt touches every row
// (llama-1b: 80 MiB of activations), which the decode after it never reads again. the next long chunk
// faults its rows back in, zeroed; consecutive long chunks (one prompt's prefill) keep them. llama-1b
// shape, ctx 2048, 3 x (512-token prompt, 2 decode steps) a process, 2 processes each alternating:
// prompt 1003-1107 ms vs 1014-1086 without the release, first decode step 15.2-16.2 vs 13.7-15.6 ms
static constexpr int kKeepRows = kMaxSplitTokens;

void Model::release_scratch() {
    auto tail = [&](const auto& v, size_t row_elems) {
        using T = typename std::decay_t<decltype(v)>::value_type;
        const size_t keep = (size_t)kKeepRows * row_elems * sizeof(T), all = v.size() * sizeof(T);
        if (all > keep) release_pages((const uint8_t*)v.data() + keep, all - keep);
    };
    const Config& c = cfg_;
    tail(x_, c.n_embd), tail(xb_, std::max(c.n_embd, q_dim_)), tail(q_, q_dim_), tail(att_, q_dim_);
    tail(k_cur_, kv_dim_), tail(v_cur_, kv_dim_), tail(hb_, c.n_ff), tail(hb2_, c.n_ff);
    tail(kb_, kv_row_), tail(vb_, kv_row_);
    const size_t slot = xq_.size() / 2, row = slot / max_batch_, keep = (size_t)kKeepRows * row;   // two slots
    for (int s = 0; s < 2; s++) release_pages(xq_.data() + s * slot + keep, slot - keep);
    scratch_rows_ = kKeepRows;
}

void Model::forward(const Seq* seqs, int n_seqs) {
    const Config& c = cfg_;
    int r0s[kMaxBatch + 1], n = 0;   // first row of each sequence's chunk; n rows in all
    int64_t p0s[kMaxBatch];
    for (int i = 0; i < n_seqs; i++) r0s[i] = n, p0s[i] = seqs[i].kv->n_past(), n += seqs[i].n;
    r0s[n_seqs] = n;
    if (n <= kKeepRows && scratch_rows_ > kKeepRows) release_scratch();
    scratch_rows_ = std::max(scratch_rows_, n);
    int seq_of[kMaxBatch];           // row -> its sequence
    for (int i = 0; i < n_seqs; i++) std::fill(seq_of + r0s[i], seq_of + r0s[i + 1], i);
    auto rows_run = [&](int rows, const std::function<void(int, int)>& f) {   // f(first row, row count)
        pool_.run((rows + kElemRows - 1) / kElemRows, [&](int task, int) { f(task * kElemRows, std::min(kElemRows, rows - task * kElemRows)); });
    };
    for (int i = 0; i < n_seqs; i++) {
        embed(seqs[i].tokens, seqs[i].n, r0s[i]);
        rope_tables(*seqs[i].kv, r0s[i], seqs[i].n, p0s[i]);
    }
    // one sequence: the last layer's outputs are read only where logits are: every row, the last row,
    // or none (a chunk before a prompt's last); rows before q0 stop after their keys and values.
    // several: every row runs to the end (each sequence's logits rows are picked at the output)
    const Seq& s0 = seqs[0];
    const int last_q0 = n_seqs > 1 || s0.all_logits ? 0 : s0.out ? n - 1 : n;
    for (int l = 0; l < c.n_layer; l++) {
        LayerW& L = layers_[l];
        // attention block
        rows_run(n, [&](int r, int nr) { rmsnorm(xb_.data() + (size_t)r * c.n_embd, x_.data() + (size_t)r * c.n_embd,
                                              L.attn_norm_f.data(), nr, c.n_embd); });
        matmuls({{&L.wq, q_.data()}, {&L.wk, k_cur_.data()}, {&L.wv, v_cur_.data()}}, xb_.data(), n);
        rows_run(n, [&](int r0, int nr) {
            for (int t = r0; t < r0 + nr; t++) {
                float* q = q_.data() + (size_t)t * q_dim_;
                float* k = k_cur_.data() + (size_t)t * kv_dim_;
                float* v = v_cur_.data() + (size_t)t * kv_dim_;
                if (!L.bq.empty()) for (int i = 0; i < q_dim_; i++) q[i] += L.bq[i];
                if (!L.bk.empty()) for (int i = 0; i < kv_dim_; i++) k[i] += L.bk[i];
                if (!L.bv.empty()) for (int i = 0; i < kv_dim_; i++) v[i] += L.bv[i];
                if (!L.q_norm.empty()) rmsnorm(q, q, L.q_norm.data(), c.n_head, c.head_dim);
                if (!L.k_norm.empty()) rmsnorm(k, k, L.k_norm.data(), c.n_head_kv, c.head_dim);
                rope(k, c.n_head_kv, (L.swa ? cs_abs_swa_ : cs_abs_).data() + (size_t)t * c.n_rot);   // keys at absolute positions
                const KVRing& kv = *seqs[seq_of[t]].kv;
                store_kv_row(kv, k, kb_.data() + (size_t)t * kv_row_);
                store_kv_row(kv, v, vb_.data() + (size_t)t * kv_row_);
            }
        });
        const int q0 = l + 1 < c.n_layer ? 0 : last_q0;
        // attention: consecutive short chunks (the decode rows of a batched step) in one pool job, as
        // many as its split slots hold (threaded over sequences x kv heads x splits); a longer chunk
        // alone. 4-sequence step vs a job per sequence, zen 5, 2 threads, 4 alternating runs
        // (scripts/step_bench.py): smollm2-135m 3.97-4.15 vs 4.10-4.54 ms (one outlier 5.1 left out),
        // llama-1b 24.2-26.1 vs 25.1-26.1 ms
        for (int a = 0; a < n_seqs;) {
            const int qi = n_seqs > 1 ? 0 : q0;
            if (qi >= seqs[a].n) { a++; continue; }
            AttnJob aj[kMaxSplitTokens];
            int na = 0, tokens = 0;
            do {
                aj[na++] = {seqs[a].kv, seqs[a].n, p0s[a], qi, r0s[a]};
                tokens += seqs[a].n, a++;
            } while (seqs[a - 1].n <= kMaxSplitTokens && a < n_seqs && seqs[a].n + tokens <= kMaxSplitTokens);
            attention(aj, na, l);
        }
        for (int i = 0; i < n_seqs; i++) {   // each chunk enters its ring, overwriting the oldest window entries
            KVRing& kv = *seqs[i].kv;
            const size_t rb = kv.row_bytes();
            for (int t = 0; t < seqs[i].n; t++) {
                const int s = kv.slot(l, p0s[i] + t);
                const size_t row = (size_t)(r0s[i] + t) * kv_row_;
                for (int h = 0; h < c.n_head_kv; h++) {
                    std::memcpy(kv.k_row(l, h, s), kb_.data() + row + (size_t)h * rb, rb);
                    std::memcpy(kv.v_row(l, h, s), vb_.data() + row + (size_t)h * rb, rb);
                }
            }
        }
        if (q0 == n) continue;
        // rows q0..n-1 from here on (all of them but in a prefill's last layer)
        const int m = n - q0;
        float* x = x_.data() + (size_t)q0 * c.n_embd;
        float* xb = xb_.data() + (size_t)q0 * c.n_embd;
        float* hb = hb_.data() + (size_t)q0 * c.n_ff;
        float* hb2 = hb2_.data() + (size_t)q0 * c.n_ff;
        matmul(L.wo, att_.data() + (size_t)q0 * q_dim_, m, xb);
        rows_run(m, [&](int r0, int nr) {
            float* xbr = xb + (size_t)r0 * c.n_embd;
            if (!L.attn_post_norm_f.empty()) rmsnorm(xbr, xbr, L.attn_post_norm_f.data(), nr, c.n_embd);
            for (size_t i = (size_t)r0 * c.n_embd; i < (size_t)(r0 + nr) * c.n_embd; i++) x[i] += xb[i];
            rmsnorm(xbr, x + (size_t)r0 * c.n_embd, L.ffn_norm_f.data(), nr, c.n_embd);
        });
        // feed-forward block: down(act(gate(x)) * up(x)), act silu (swiglu) or gelu (geglu)
        matmuls({{&L.w_gate, hb}, {&L.w_up, hb2}}, xb, m);
        const auto act_mul = c.gelu ? k_.gelu_mul : k_.silu_mul;
        rows_run(m, [&](int r0, int nr) {
            act_mul((int64_t)nr * c.n_ff, hb + (size_t)r0 * c.n_ff, hb2 + (size_t)r0 * c.n_ff);
        });
        matmul(L.w_down, hb, m, xb);
        rows_run(m, [&](int r0, int nr) {
            float* xbr = xb + (size_t)r0 * c.n_embd;
            if (!L.ffn_post_norm_f.empty()) rmsnorm(xbr, xbr, L.ffn_post_norm_f.data(), nr, c.n_embd);
            for (size_t i = (size_t)r0 * c.n_embd; i < (size_t)(r0 + nr) * c.n_embd; i++) x[i] += xb[i];
        });
    }
    // a batched step (one logits row per sequence, laid end to end): the last rows go through the
    // output matrix together, read once (each column's arithmetic is its own: the rows equal each
    // sequence's own eval). rows move down to 0..n_seqs-1 (sequence i's last row is at or after row i)
    bool together = n_seqs > 1;
    for (int i = 0; i < n_seqs && together; i++)
        together = seqs[i].out == seqs[0].out + (size_t)i * cfg_.n_vocab && !seqs[i].all_logits;
    if (together) {
        for (int i = 0; i < n_seqs; i++) {
            seqs[i].kv->advance(seqs[i].n);
            std::memmove(x_.data() + (size_t)i * c.n_embd, x_.data() + (size_t)(r0s[i + 1] - 1) * c.n_embd,
                         (size_t)c.n_embd * sizeof(float));
        }
        output(0, n_seqs, seqs[0].out);
        return;
    }
    for (int i = 0; i < n_seqs; i++) {
        const Seq& q = seqs[i];
        q.kv->advance(q.n);
        if (!q.out) continue;
        if (q.all_logits) output(r0s[i], q.n, q.out);
        else output(r0s[i] + q.n - 1, 1, q.out);
    }
}

int Model::exact_batch() { return kMaxSplitTokens; }

void Model::check_tokens(const int32_t* tokens, int n) const {
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= cfg_.n_vocab)
            throw std::out_of_range("token id " + std::to_string(tokens[i]) + " outside the vocabulary");
}

void Model::eval(const int32_t* tokens, int n, bool all_logits, float* out) {
    check_tokens(tokens, n);
    KVRing& kv = *cur_;
    const int chunk = std::max(1, std::min(max_batch_, chunk_limit(kv)));
    for (int done = 0; done < n;) {
        int m = std::min(chunk, n - done);
        bool last = done + m == n;
        float* o = all_logits ? out + (size_t)done * cfg_.n_vocab : (last ? out : nullptr);
        eval_chunk(kv, tokens + done, m, all_logits, o);
        done += m;
    }
}

void Model::step(KVRing* const* kvs, const int32_t* tokens, const int* counts, int n_seqs, float* out) {
    int total = 0;
    for (int i = 0; i < n_seqs; i++) {
        if (counts[i] < 1 || counts[i] > chunk_limit(*kvs[i]))
            throw std::invalid_argument("step: each sequence takes 1 .. window tokens");
        if (kvs[i]->ctx() != kv_.ctx())
            throw std::invalid_argument("step: a cache of another geometry");
        for (int j = 0; j < i; j++)
            if (kvs[j] == kvs[i]) throw std::invalid_argument("step: a cache appears twice");
        total += counts[i];
    }
    if (n_seqs < 1 || total > max_batch_)
        throw std::invalid_argument("step: 1 .. " + std::to_string(max_batch_) + " tokens in all");
    check_tokens(tokens, total);
    std::vector<Seq> seqs((size_t)n_seqs);
    for (int i = 0, t = 0; i < n_seqs; t += counts[i], i++)
        seqs[i] = Seq{kvs[i], tokens + t, counts[i], false, out + (size_t)i * cfg_.n_vocab};
    forward(seqs.data(), n_seqs);
}

}  // namespace ec
