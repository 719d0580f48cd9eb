"""State as data: what a backend says about its cache and what an engine says about itself."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

DEFAULT_CTX = 2048       # KV cache capacity in tokens, sinks included
DEFAULT_SINKS = 4        # pinned attention-sink entries (StreamingLLM)
BACKENDS = ("auto", "native", "llama.cpp")    # what --backend takes (auto: chosen per file, see loader)
ENGINES = BACKENDS[1:]   # the engines themselves


@dataclass(frozen=True)
class CacheInfo:
    """The sink-ring cache, computed by the backend that owns it (entries are tokens).

    ``window_start`` is the index, among the tokens fed since the last reset, of the oldest window
    token still held: tokens ``[sinks, window_start)`` have been evicted. With chunked eviction (the
    llama.cpp backend drops ``evict_chunk`` entries at once) it moves by a chunk at a time.
    """

    capacity: int          # entries, sinks included; allocated once
    used: int              # entries held now
    sinks: int             # pinned entries
    evicted: int           # window entries evicted since the last reset
    window_start: int      # first window token still held (index among tokens fed)
    bytes: int             # K and V storage
    kv_type: str           # "f16"
    n_past: int            # tokens fed since the last reset
    evict_chunk: int = 1   # entries dropped per eviction

    def to_dict(self) -> dict:
        return asdict(self)

    def shifted(self, skip: int) -> "CacheInfo":
        """The same cache seen from a token stream with ``skip`` more tokens before the window (an
        engine that rebuilt its cache from the sinks and a tail counts the rest as evicted)."""
        if not skip:
            return self
        return CacheInfo(**{**asdict(self), "evicted": self.evicted + skip, "n_past": self.n_past + skip,
                            "window_start": self.window_start + skip})


def ring_window_start(n_past: int, sinks: int, evicted: int) -> int:
    """Where the window starts when the oldest ``evicted`` window tokens have gone."""
    return min(n_past, sinks + evicted)


@dataclass(frozen=True)
class BackendInfo:
    """What a backend says about itself."""

    isa: str                                   # kernels in use ("avx2", ...; "llama.cpp")
    threads: int
    extra: dict = field(default_factory=dict)  # backend-specific facts (llama.cpp version, batch, ...)


GPU_LAYERS_IGNORED = "--gpu-layers is ignored: this llama.cpp was built for CPU only"   # in the reason


@dataclass(frozen=True)
class EngineInfo:
    """A loaded engine: which backend runs which file, and why."""

    backend: str           # "native" | "llama.cpp"
    reason: str            # why that backend
    arch: str
    path: str
    name: str              # the file's stem
    types: list            # tensor types in the file
    threads: int
    isa: str
    ctx: int
    sinks: int
    gpu_layers: int = 0
    pin_system: bool = False
    load_s: float = 0.0
    extra: dict = field(default_factory=dict)
    template: str = ""       # the chat template and where it came from ("gguf", a built-in, --chat-template)
    base_model: bool = False   # no chat template and no instruct / it / chat in the name

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d
