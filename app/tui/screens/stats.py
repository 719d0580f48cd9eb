"""Model, backend, speed of the last reply and the state of the KV cache."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from .help import key_table

SECTIONS = [
    ("Model", "info", ("name", "path", "backend", "reason", "arch", "types", "isa", "threads", "ctx",
                       "sinks", "pin_system", "gpu_layers", "load_s", "speculation", "template")),
    ("Last reply", "stats", ("prompt_tokens", "completion_tokens", "ttft_s", "prefill_tps",
                             "decode_tps", "rebuild_tokens", "reasoning_refeed", "draft_tokens",
                             "accepted_tokens")),
    ("KV cache", "cache", ("capacity", "used", "sinks", "evicted", "window_start", "n_past", "bytes",
                           "kv_type", "evict_chunk", "remote")),
]


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def rows(data: dict, keys) -> list[tuple[str, str]]:
    return [(k, _fmt(data[k])) for k in keys if k in data] or [("", "(none yet)")]


class StatsScreen(ModalScreen[None]):
    """Engine info, the last reply's stats and the cache; Esc or q closes it."""

    BINDINGS = [Binding("escape,q", "dismiss", "Close")]

    def __init__(self, info: dict, stats: dict, cache: dict, rss: int):
        super().__init__()
        self.data = {"info": info, "stats": stats, "cache": cache}
        self.rss = rss

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog wide"):
            for i, (title, source, keys) in enumerate(SECTIONS):
                yield Label(title, classes="question" + (" section" if i else ""))
                yield Static(key_table(rows(self.data[source], keys)))
            yield Label(f"Process RSS: {self.rss / 2**20:,.0f} MB", classes="question section")
