"""The scrolling conversation, with the context map: what has left the model's window."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from .context_divider import ContextDivider
from .message_view import MessageView

WELCOME = ("Type a message and press Enter.  /help lists the commands, F1 the keys.\n"
           "Old turns leave the model's window as the chat grows; they stay here, dimmed.")


class Transcript(VerticalScroll):
    """Messages in order; stays at the bottom while new text streams, unless scrolled up."""

    def compose(self) -> ComposeResult:
        yield Static(WELCOME, id="welcome")
        yield ContextDivider(id="window-divider")

    def on_mount(self) -> None:
        self.anchor()

    @property
    def views(self) -> list[MessageView]:
        return list(self.query_children(MessageView))

    async def show(self, views: list[MessageView]) -> None:
        """Replace the conversation with ``views``."""
        await self.remove_children(MessageView)
        self.query_one(ContextDivider).display = False
        await self.mount_all(views)
        self._update_empty()
        self.anchor()

    async def add(self, view: MessageView) -> MessageView:
        await self.mount(view)
        self._update_empty()
        return view

    async def drop(self, view: MessageView) -> None:
        await view.remove()
        self._update_empty()

    def _update_empty(self) -> None:
        self.set_class(not any(v.role != "system" for v in self.views), "-empty")

    def map_window(self, spans: list[tuple[int, int]], cache, pinned_system: bool) -> bool:
        """Dim what has left the window and put the divider where the window begins.

        Args:
            spans: token range of each message, aligned with ``views`` (from Engine.message_spans).
            cache: a ``CacheInfo`` (Engine.cache_info()): sinks, window_start, evicted, capacity.
            pinned_system: the system prompt is the sink region.

        Returns:
            False (and nothing changed) when the spans do not belong to the messages shown.
        """
        views = self.views
        if len(spans) != len(views):
            return False
        sinks, start, evicted = cache.sinks, cache.window_start, cache.evicted
        first_kept = None
        for view, (s, e) in zip(views, spans, strict=True):
            view.set_window(_window_state(s, e, sinks, start) if evicted else None)
            if first_kept is None and e > start and view.window != "evicted":
                first_kept = view
        divider = self.query_one(ContextDivider)
        divider.display = evicted > 0
        if evicted:
            divider.show(evicted, cache.capacity, sinks, pinned_system)
            if first_kept is not None:
                self.move_child(divider, before=first_kept)
            else:
                self.move_child(divider, after=views[-1])
        return True


def _window_state(s: int, e: int, sinks: int, start: int) -> str | None:
    """Where tokens [s, e) stand when [sinks, start) has been evicted.

    None: all still seen; "evicted": none seen; "sinks": only the part in the sink region is seen;
    "partial": the start was evicted, the rest is in the window.
    """
    gone = max(0, min(e, start) - max(s, sinks))
    if gone == 0:
        return None
    if gone < e - max(s, sinks):
        return "partial"
    return "sinks" if s < sinks else "evicted"
