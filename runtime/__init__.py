"""edgechat runtime: load a GGUF file and run it (native C++ engine or llama.cpp)."""
from .errors import EdgechatError, GGUFError, ModelNotFound, UnsupportedModel
from .events import DoneEvent, Stats, TextEvent
from .info import CacheInfo, EngineInfo
from .sampler import SamplingParams

__all__ = ["load", "EdgechatError", "GGUFError", "ModelNotFound", "UnsupportedModel",
           "TextEvent", "DoneEvent", "Stats", "CacheInfo", "EngineInfo", "SamplingParams"]


def load(path, **kwargs):
    """Load the GGUF file at ``path`` and return an ``Engine``; see ``loader.load``."""
    from .loader import load as _load
    return _load(path, **kwargs)
