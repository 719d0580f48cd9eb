// nanobind module edgechat._native: the model, its sink-ring cache and the kernel tables.
// the gil is released around all compute.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <mutex>
#include <thread>

#include "kernels/kernels.h"
#include "model.h"

namespace nb = nanobind;
using namespace nb::literals;
using ec::Model;

using Bytes = nb::ndarray<const uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Tokens = nb::ndarray<const int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Logits = nb::ndarray<nb::numpy, float>;

// a model plus the python objects (mmap views) its tensors point into
struct PyModel {
    std::unique_ptr<Model> model;
    nb::list keepalive;
    nb::object in_use;   // the Cache given to use_cache (kept alive while the model points to it)
    std::mutex mu;   // two python threads calling one engine are serialized
};

// the keys only some archs have (gemma3's); absent: the llama-family defaults
static void set_arch_extras(ec::Config& c, const nb::dict& d) {
    if (d.contains("rope_freq_scale")) c.rope_freq_scale = nb::cast<double>(d["rope_freq_scale"]);
    if (d.contains("embd_scale")) c.embd_scale = nb::cast<float>(d["embd_scale"]);
    if (d.contains("gelu")) c.gelu = nb::cast<bool>(d["gelu"]);
    if (d.contains("swa_window")) c.swa_window = nb::cast<int>(d["swa_window"]);
    if (d.contains("swa_period")) c.swa_period = nb::cast<int>(d["swa_period"]);
    if (d.contains("rope_base_swa")) c.rope_base_swa = nb::cast<double>(d["rope_base_swa"]);
    if (d.contains("final_softcap")) c.final_softcap = nb::cast<float>(d["final_softcap"]);
    if (c.swa_window < 0 || c.swa_period < 0 || !(c.rope_base_swa > 0) || !(c.rope_freq_scale > 0) ||
        !std::isfinite(c.final_softcap) || !std::isfinite(c.embd_scale))
        throw nb::value_error("inconsistent model hyperparameters");
}

static ec::Config make_config(const nb::dict& d) {
    ec::Config c;
    c.arch = nb::cast<std::string>(d["arch"]);
    c.n_layer = nb::cast<int>(d["n_layer"]);
    c.n_embd = nb::cast<int>(d["n_embd"]);
    c.n_head = nb::cast<int>(d["n_head"]);
    c.n_head_kv = nb::cast<int>(d["n_head_kv"]);
    c.head_dim = nb::cast<int>(d["head_dim"]);
    c.n_ff = nb::cast<int>(d["n_ff"]);
    c.n_vocab = nb::cast<int>(d["n_vocab"]);
    c.n_rot = nb::cast<int>(d["n_rot"]);
    c.eps = nb::cast<float>(d["eps"]);
    c.rope_base = nb::cast<double>(d["rope_base"]);
    c.rope_neox = nb::cast<bool>(d["rope_neox"]);
    c.release_source = d.contains("release_source") && nb::cast<bool>(d["release_source"]);
    set_arch_extras(c, d);
    return c;
}

// tensors: list of (name, type, shape (ne0..), data view)
static ec::KVType kv_type_of(const std::string& name) {
    if (name == "f16") return ec::KVType::F16;
    if (name == "q8_0") return ec::KVType::Q8_0;
    throw nb::value_error(("unknown kv type '" + name + "' (f16 or q8_0)").c_str());
}

static void init_model(PyModel* pm, const nb::dict& config, const nb::list& tensors, int ctx, int sinks,
                       int threads, const std::string& kv_type) {
    const ec::KVType kvt = kv_type_of(kv_type);
    std::vector<std::pair<std::string, ec::Tensor>> ts;
    for (nb::handle item : tensors) {
        nb::tuple tup = nb::cast<nb::tuple>(item);
        if (tup.size() != 4) throw nb::value_error("a tensor is a tuple (name, type, shape, data)");
        ec::Tensor t;
        std::string name = nb::cast<std::string>(tup[0]);
        t.type = nb::cast<int>(tup[1]);
        std::vector<int64_t> shape = nb::cast<std::vector<int64_t>>(tup[2]);
        if (shape.empty() || shape.size() > 4) throw nb::value_error(("bad shape for tensor " + name).c_str());
        for (size_t i = 0; i < shape.size(); i++) t.ne[i] = shape[i];
        // no implicit conversion: a converted copy would be freed at the end of this iteration while
        // t.data still pointed into it (keepalive holds the original object)
        Bytes data;
        if (!nb::try_cast<Bytes>(tup[3], data, /*convert=*/false))
            throw nb::type_error(("tensor " + name + ": data must be a 1-d C-contiguous uint8 array").c_str());
        t.data = data.data();
        t.nbytes = data.shape(0);
        pm->keepalive.append(tup[3]);
        ts.emplace_back(std::move(name), t);
    }
    ec::Config cfg = make_config(config);
    {
        nb::gil_scoped_release nogil;
        pm->model = std::make_unique<Model>(cfg, ts, ctx, sinks, threads, kvt);
    }
}

static Logits eval(PyModel& pm, Tokens tokens, bool all_logits) {
    const int n = (int)tokens.shape(0);
    const int vocab = pm.model->config().n_vocab;
    if (n == 0) throw nb::value_error("eval needs at least one token");
    std::vector<int32_t> ids(tokens.data(), tokens.data() + n);
    size_t rows = all_logits ? (size_t)n : 1;
    float* out = new float[rows * vocab];
    nb::capsule owner(out, [](void* p) noexcept { delete[] (float*)p; });
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mu);
        pm.model->eval(ids.data(), n, all_logits, out);
    }
    if (all_logits) return Logits(out, {rows, (size_t)vocab}, owner);
    return Logits(out, {(size_t)vocab}, owner);
}

// a spare kv cache of one model's geometry (Model.new_cache), exchanged with Model.swap_cache
struct PyCache {
    std::unique_ptr<ec::KVRing> kv;
    const Model* owner = nullptr;
};

static PyCache* new_cache(PyModel& pm, int sinks, const std::string& kv_type) {
    auto c = std::make_unique<PyCache>();
    const ec::KVType type = kv_type.empty() ? pm.model->own_cache().type() : kv_type_of(kv_type);
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mu);
        if (sinks < 0 || sinks >= pm.model->cache().ctx()) throw nb::value_error("sinks must be in [0, ctx)");
        c->kv = std::make_unique<ec::KVRing>(pm.model->make_cache(sinks, type));
        c->owner = pm.model.get();
    }
    return c.release();
}

static void use_cache(PyModel& pm, nb::object cache) {
    ec::KVRing* kv = nullptr;
    if (!cache.is_none()) {
        PyCache& c = nb::cast<PyCache&>(cache);
        if (c.owner != pm.model.get()) throw nb::value_error("this cache belongs to another model");
        kv = c.kv.get();
    }
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mu);
        pm.model->use_cache(kv);
    }
    pm.in_use = cache;
}

// one forward step over several sequences (Model::step): caches[i] (a Cache, or None: the model's
// own) takes counts[i] of tokens; logits of each one's last token, (len(caches), n_vocab)
static Logits step(PyModel& pm, nb::list caches, Tokens tokens, std::vector<int> counts) {
    const size_t n_seqs = caches.size();
    if (n_seqs == 0 || counts.size() != n_seqs) throw nb::value_error("step: one count per cache, at least one");
    std::vector<ec::KVRing*> kvs;
    int64_t total = 0;
    for (size_t i = 0; i < n_seqs; i++) {
        if (caches[i].is_none()) {
            kvs.push_back(nullptr);
        } else {
            PyCache& c = nb::cast<PyCache&>(caches[i]);
            if (c.owner != pm.model.get()) throw nb::value_error("this cache belongs to another model");
            kvs.push_back(c.kv.get());
        }
        total += counts[i];
    }
    if (total != (int64_t)tokens.shape(0)) throw nb::value_error("step: the counts must add up to the tokens");
    const int vocab = pm.model->config().n_vocab;
    std::vector<int32_t> ids(tokens.data(), tokens.data() + total);
    float* out = new float[n_seqs * vocab];
    nb::capsule owner(out, [](void* p) noexcept { delete[] (float*)p; });
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mu);
        for (auto& kv : kvs) if (!kv) kv = &pm.model->own_cache();
        pm.model->step(kvs.data(), ids.data(), counts.data(), (int)n_seqs, out);   // invalid_argument: ValueError
    }
    return Logits(out, {n_seqs, (size_t)vocab}, owner);
}

static void swap_cache(PyModel& pm, PyCache& c) {
    if (c.owner != pm.model.get()) throw nb::value_error("this cache belongs to another model");
    nb::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(pm.mu);
    pm.model->swap_cache(*c.kv);
}

static nb::dict cache_info(PyModel& pm) {
    int64_t v[6];
    {
        nb::gil_scoped_release nogil;   // an eval in another thread holds the mutex: wait without the GIL
        std::lock_guard<std::mutex> lock(pm.mu);
        ec::KVRing& kv = pm.model->cache();
        v[0] = kv.ctx(), v[1] = kv.used(), v[2] = kv.sinks();
        v[3] = kv.evicted(), v[4] = (int64_t)kv.bytes(), v[5] = kv.n_past();
    }
    nb::dict d;
    d["capacity"] = v[0];
    d["used"] = v[1];
    d["sinks"] = v[2];
    d["evicted"] = v[3];
    d["bytes"] = v[4];
    d["n_past"] = v[5];
    d["kv_type"] = pm.model->cache().type() == ec::KVType::Q8_0 ? "q8_0" : "f16";
    return d;
}

// ---- snapshots: the ring's slots in use, as two flat uint8 arrays (layer, kv head, used, row_bytes) ----

static nb::dict export_state(PyModel& pm) {
    uint8_t *k = nullptr, *v = nullptr;
    size_t n_bytes = 0;
    int64_t meta[4];   // n_past, sinks, used, row_bytes: read under the lock with the rows
    {
        nb::gil_scoped_release nogil;
        std::lock_guard<std::mutex> lock(pm.mu);
        ec::KVRing& kv = pm.model->cache();
        const int used = kv.used();
        n_bytes = kv.state_bytes(kv.n_past());   // per layer its slots in use (local layers: their own ring's)
        k = new uint8_t[n_bytes + 1];
        v = new uint8_t[n_bytes + 1];
        kv.copy_rows_out(k, v);
        meta[0] = kv.n_past(), meta[1] = kv.sinks(), meta[2] = used, meta[3] = (int64_t)kv.row_bytes();
    }
    nb::capsule ko(k, [](void* p) noexcept { delete[] (uint8_t*)p; });
    nb::capsule vo(v, [](void* p) noexcept { delete[] (uint8_t*)p; });
    nb::dict d;
    d["k"] = nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(k, {n_bytes}, ko);
    d["v"] = nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(v, {n_bytes}, vo);
    d["n_past"] = meta[0];
    d["sinks"] = meta[1];
    d["used"] = meta[2];
    d["row_bytes"] = meta[3];
    return d;
}

// false (and nothing changed) when the arrays do not fit this cache
static bool import_state(PyModel& pm, int sinks, int64_t n_past, Bytes k, Bytes v) {
    nb::gil_scoped_release nogil;
    std::lock_guard<std::mutex> lock(pm.mu);
    ec::KVRing& kv = pm.model->cache();
    if (n_past < 0 || k.shape(0) != v.shape(0)) return false;
    return kv.set_state(sinks, n_past, k.shape(0), k.data(), v.data());   // checks the size n_past implies
}

// kernel access for tests: run one type's kernels of one isa on raw bytes
static const ec::KernelTable& table_for(const std::string& isa) {
    const ec::KernelTable* tabs[ec::kMaxTables];
    int n = ec::available_kernels(tabs, ec::kMaxTables);
    for (int i = 0; i < n; i++)
        if (isa == tabs[i]->isa) return *tabs[i];
    throw nb::value_error(("isa not available here: " + isa).c_str());
}

// type ids whose kernels in the selected table satisfy `has`
template <class Pred>
static std::vector<int> types_where(Pred has) {
    const ec::KernelTable& k = ec::select_kernels();
    std::vector<int> out;
    for (int t = 0; t < ec::GT_COUNT; t++)
        if (has(k.types[t])) out.push_back(t);
    return out;
}

NB_MODULE(_native, m) {
    m.doc() = "edgechat native engine";
    nb::class_<PyModel>(m, "Model")
        .def("__init__", [](PyModel* self, nb::dict config, nb::list tensors, int ctx, int sinks, int threads,
                            const std::string& kv_type) {
                 new (self) PyModel();
                 init_model(self, config, tensors, ctx, sinks, threads, kv_type);
             }, "config"_a, "tensors"_a, "ctx"_a, "sinks"_a, "threads"_a, "kv_type"_a = "f16")
        .def("export_state", &export_state)
        .def("import_state", &import_state, "sinks"_a, "n_past"_a, "k"_a, "v"_a)
        .def("eval", &eval, "tokens"_a, "all_logits"_a = false)
        .def("reset", [](PyModel& pm, int sinks) {
                 nb::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 pm.model->cache().reset(sinks);
             }, "sinks"_a)
        .def("truncate", [](PyModel& pm, int64_t n) {
                 nb::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 return pm.model->cache().truncate(n);
             }, "n_past"_a)
        .def("checkpoint", [](PyModel& pm, int n) {
                 nb::gil_scoped_release nogil;
                 std::lock_guard<std::mutex> lock(pm.mu);
                 pm.model->cache().checkpoint(n);
             }, "n"_a, "keep the rows the next n tokens overwrite: truncate back into them restores them")
        .def("cache_info", &cache_info)
        .def("new_cache", &new_cache, "sinks"_a, "kv_type"_a = "", nb::rv_policy::take_ownership,
             "an empty cache of this model's geometry; kv_type f16 or q8_0 (default: the model's own cache's)")
        .def("swap_cache", &swap_cache, "cache"_a)
        .def("use_cache", &use_cache, "cache"_a.none(),
             "the cache eval, reset, truncate, checkpoint, cache_info and the state methods work on "
             "(a Cache from new_cache, or None: the model's own)")
        .def("step", &step, "caches"_a, "tokens"_a, "counts"_a,
             "one forward step over several caches (None: the model's own): counts[i] of the tokens "
             "each; the logits of each one's last token")
        .def_prop_ro("isa", [](PyModel& pm) { return std::string(pm.model->isa()); })
        .def_prop_ro("threads", [](PyModel& pm) { return pm.model->threads(); })
        .def_prop_ro("n_vocab", [](PyModel& pm) { return pm.model->config().n_vocab; })
        .def_prop_ro("exact_batch", [](PyModel&) { return Model::exact_batch(); })
        .def_prop_ro("max_batch", [](PyModel& pm) { return pm.model->max_batch(); })
        .def_prop_ro("n_ctx", [](PyModel& pm) { return pm.model->cache().ctx(); });

    nb::class_<PyCache>(m, "Cache");

    m.def("isa", []() { return std::string(ec::select_kernels().isa); });
    m.def("available_isas", []() {
        const ec::KernelTable* tabs[ec::kMaxTables];
        int n = ec::available_kernels(tabs, ec::kMaxTables);
        std::vector<std::string> out;
        for (int i = 0; i < n; i++) out.emplace_back(tabs[i]->isa);
        return out;
    });
    // weight types the selected table runs, and those it reads in a packed (row-interleaved) layout
    m.def("supported_types", []() { return types_where([](const ec::TypeKernels& t) { return t.vec_dot != nullptr; }); });
    m.def("packed_types", []() { return types_where([](const ec::TypeKernels& t) { return t.pack != nullptr; }); });
    // dequantize raw bytes of `type` with a given isa's table (tests)
    m.def("dequantize", [](const std::string& isa, int type, Bytes data, int64_t n) {
        const ec::KernelTable& k = table_for(isa);
        if (type < 0 || type >= ec::GT_COUNT || !k.types[type].to_float) throw nb::value_error("unknown type");
        const ec::TypeKernels& tk = k.types[type];
        if (n % tk.blck != 0 || ec::row_bytes(tk, n) > data.shape(0)) throw nb::value_error("size mismatch");
        float* out = new float[n];
        nb::capsule owner(out, [](void* p) noexcept { delete[] (float*)p; });
        tk.to_float(data.data(), out, n);
        return Logits(out, {(size_t)n}, owner);
    });
    // dram read limit (bench): `threads` threads sum their slices of a `mib` MiB buffer, far larger
    // than the l3 cache; one warm-up pass, then the best of five. returns GB/s (1e9 bytes/s)
    m.def("read_bandwidth", [](int threads, int mib) {
        if (threads < 1 || mib < 1) throw nb::value_error("threads and mib must be >= 1");
        const size_t n = (size_t)mib << 17;                     // uint64 words
        std::vector<uint64_t> buf;                              // buf: (n,)
        {
            nb::gil_scoped_release nogil;
            buf.assign(n, 1);                                   // touch every page
            std::vector<uint64_t> sums(threads);
            auto pass = [&]() {
                std::vector<std::thread> ts;
                auto t0 = std::chrono::steady_clock::now();
                for (int t = 0; t < threads; t++)
                    ts.emplace_back([&, t]() {
                        const uint64_t* p = buf.data() + n * t / threads;
                        const uint64_t* e = buf.data() + n * (t + 1) / threads;
                        uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;     // 4 chains: not latency bound
                        for (; p + 4 <= e; p += 4) { s0 += p[0]; s1 += p[1]; s2 += p[2]; s3 += p[3]; }
                        for (; p < e; p++) s0 += *p;
                        sums[t] = s0 + s1 + s2 + s3;
                    });
                for (auto& th : ts) th.join();
                double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
                uint64_t total = 0;
                for (uint64_t v : sums) total += v;
                if (total != n) throw std::runtime_error("read_bandwidth: bad sum");   // reads are used
                return (double)(n * sizeof(uint64_t)) / s / 1e9;
            };
            pass();                                             // warm up
            double best = 0;
            for (int i = 0; i < 5; i++) best = std::max(best, pass());
            return best;
        }
    }, "threads"_a, "mib"_a = 1024);
}
