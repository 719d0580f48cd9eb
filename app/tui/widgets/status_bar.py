"""The status bar: model, backend and why, speed (and speculation's acceptance), memory and the KV gauge."""
from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

SEP = " │ "
# renderings from the longest to the shortest:
# (backend's reason shown, speed and RSS in words, KV counts in words, KV gauge cells)
VARIANTS = ((True, True, True, 10), (False, True, True, 10), (False, False, True, 10),
            (False, False, False, 10), (False, False, False, 5), (False, False, False, 0))


class StatusBar(Widget):
    """One line that fits any width: the longest variant that fits is drawn.

    ``volatile=False`` draws timings and RSS as dashes, so screenshots are reproducible.
    """

    model = reactive("")
    backend = reactive("")
    reason = reactive("")
    state = reactive("loading")        # "loading" | "ready" | "error"
    error = reactive("")
    prefill_tps = reactive(0.0)
    decode_tps = reactive(0.0)
    acceptance = reactive(None)        # speculation: accepted / drafted tokens of the last reply, or None
    rss = reactive(0)                  # bytes
    cache = reactive(None, always_update=True)   # CacheInfo, or None before the engine is ready
    reasoning_tokens = reactive(0)     # the reply's <think> block so far (or the last reply's)
    kv_note = reactive("")             # the last reply's KV snapshot: "restored" / "re-prefilled (why)"

    def __init__(self, volatile: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.volatile = volatile

    def render(self) -> Text:
        width = self.size.width
        for text in self._variants():
            if text.cell_len <= width:
                return text
        text.truncate(width, overflow="ellipsis")       # the shortest, cut
        return text

    def _variants(self):
        """Ever shorter renderings of the same facts."""
        head = self._head()
        if self.state != "ready":
            yield head
            return
        for why, words, kv_words, cells in VARIANTS:
            parts = [head, self._backend(why), self._speed(words), self._rss(words),
                     self._kv(kv_words, cells)]
            yield Text(SEP).join(p for p in parts if p)

    def _head(self) -> Text:
        if self.state == "loading":
            return Text.assemble(("◌ ", "bold"), f"loading {self.model or 'model'}…")
        if self.state == "error":
            return Text.assemble(("✖ ", "bold red"), self.error)
        return Text.assemble(("● ", "bold green"), (self.model, "bold"))

    def _backend(self, why: bool) -> Text:
        text = Text(self.backend)
        if why and self.reason:
            text.append(f" ({self.reason})", style="dim")
        return text

    def _speed(self, wide: bool) -> Text:
        text = self._rates(wide)
        if self.reasoning_tokens:
            text.append(f" · thought {self.reasoning_tokens:,} tok" if wide else f" · thought {self.reasoning_tokens:,}")
        return text

    def _rates(self, wide: bool) -> Text:
        if not self.volatile or not self.decode_tps:
            return Text("– tok/s")
        pre, dec = f"{self.prefill_tps:,.0f}", f"{self.decode_tps:,.1f}"
        text = Text(f"prefill {pre} · decode {dec} tok/s" if wide else f"{pre}/{dec} tok/s")
        if self.acceptance is not None:      # drafts were verified: how many the model kept
            text.append(f" · drafts {self.acceptance:.0%} accepted" if wide else f" ·{self.acceptance:.0%}")
        return text

    def _rss(self, wide: bool) -> Text:
        mb = f"{self.rss / 2**20:,.0f} MB" if self.volatile and self.rss else "–"
        return Text(f"RSS {mb}" if wide else mb)

    def _kv(self, wide: bool, cells: int) -> Text:
        c = self.cache
        if self.backend == "remote":          # the server's cache and speculation: nothing to show here
            return Text("KV, sinks, speculation: remote" if wide else "KV remote")
        if c is None:
            return Text("")
        used, cap = c.used, c.capacity or 1
        filled = round(cells * used / cap)
        gauge = Text.assemble("KV ", ("█" * filled, "bold"), ("░" * (cells - filled), "dim"))
        gauge.append(f" {used:,}/{cap:,}" if cells else f"{used:,}/{cap:,}")
        evicted = c.evicted
        if wide:
            gauge.append(f" · sinks {c.sinks} · evicted {evicted:,}",
                         style="bold yellow" if evicted else "")
        else:
            gauge.append(f" s{c.sinks} e{evicted:,}", style="bold yellow" if evicted else "")
        if self.kv_note:
            note = self.kv_note if wide else self.kv_note.split(" (")[0]
            gauge.append(f" · {note}", style="green" if note == "restored" else "yellow")
        return gauge
