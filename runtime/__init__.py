"""edgechat runtime: load a GGUF and run it (native C++ engine or llama.cpp)."""
from .errors import EdgechatError, GGUFError, ModelNotFound, UnsupportedModel
from .events import DoneEvent, Stats, TextEvent

__all__ = ["load", "EdgechatError", "GGUFError", "ModelNotFound", "UnsupportedModel",
           "TextEvent", "DoneEvent", "Stats"]


def load(model=None, **kwargs):
    """Load a model and return an ``Engine``; see ``engine.load``."""
    from .engine import load as _load
    return _load(model, **kwargs)
