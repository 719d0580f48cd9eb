"""A conversation as token ids, model-free: the message list, its ids and where each message ends.

Each turn renders only what changed. The messages shared with the previous turn keep their ids (a
sampled reply keeps its exact tokens); the new ones are rendered on a window of the conversation (the
first message, one cached message before the new ones, the new ones), and that window is trusted only
when its rendering of the cached messages equals the ids already held for them. Otherwise (a template
whose output depends on a message's place in the list, or a reply whose text re-tokenizes
differently) the whole conversation is rendered. A turn's cost therefore does not grow with the
history for the templates we know (ChatML, Llama 3, Mistral, ...), and stays right for any other.
"""
from __future__ import annotations

from array import array
from functools import lru_cache, partial

# memoized tokenizations of template pieces (message contents, scaffolding): re-rendering a
# conversation (whole, when a window does not check) then costs one llama.cpp call per new piece
MEMO_PIECES = 2048
_SENTINEL = "\u2063edgechat-reply-end\u2063"


class MemoTokenizer:
    """A tokenizer whose ``tokenize`` is memoized (``MEMO_PIECES`` pieces, least recently used out)."""

    def __init__(self, tok, size: int = MEMO_PIECES):
        self._tok = tok
        self._memo = lru_cache(maxsize=size)(self._tokenize)

    def tokenize(self, text: str, special: bool = False) -> tuple[int, ...]:
        return self._memo(text, special)

    def _tokenize(self, text: str, special: bool) -> tuple[int, ...]:
        return tuple(self._tok.tokenize(text, special=special))

    def __getattr__(self, name):
        return getattr(self._tok, name)


def window_start(k: int) -> int:
    """First message after messages[0] in the window for new messages from k on: one cached message
    before them at least, at an odd index, so each message keeps its index's parity (templates that
    check user/assistant alternation)."""
    j = k - 1 if (k - 1) % 2 == 1 else k - 2
    return max(j, 1)


class Conversation:
    """Messages -> token ids and message ends, rendering only what changed since the last turn.

    Args:
        template: a ``ChatTemplate`` (``render_ids``, ``render_text``, ``tokenizer``).
    """

    def __init__(self, template):
        self.template = template
        self.messages: list[dict] = []   # the conversation, the reply last once it is finished
        self.ids = array("i")            # its token ids (with the generation prompt and reply tokens)
        self.ends: list[int] = []        # where each message ends in ids
        self._reply_start: int | None = None
        self._windowed = False           # the last turn was rendered by window
        self.variables: dict = {}        # extra template variables (e.g. enable_thinking) of the last turn

    def clear(self) -> None:
        """Forget everything (the cache no longer holds these ids)."""
        self.messages, self.ids, self.ends, self._reply_start = [], array("i"), [], None

    def prepare(self, messages: list[dict], variables: dict | None = None) -> int:
        """Make the conversation ``messages`` + the generation prompt.

        Args:
            messages: the whole conversation.
            variables: extra template variables (e.g. ``{"enable_thinking": False}``); when they change,
                the whole conversation is rendered again (the cache keeps what still matches).

        Returns:
            how many leading ids are unchanged from before (they need not be compared again).
        """
        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        variables = dict(variables or {})
        k = self._shared(messages) if variables == self.variables else 0
        self.variables = variables
        new = self._render_new(messages, k, self.ids, self.ends) if k else None
        if new is None:
            self.ids = array("i", self.template.render_ids(messages, add_generation_prompt=True, **self.variables))
            self.ends, self._windowed, keep = self._whole_ends(messages), False, 0
        else:
            keep = self.ends[k - 1]
            del self.ids[keep:]
            self.ids.extend(new[0])
            self.ends = self.ends[:k] + [keep + e for e in new[1]]
        self.messages, self._reply_start = messages, len(self.ids)
        return keep

    def add(self, token: int) -> None:
        """A reply token, fed to the cache."""
        self.ids.append(token)

    def finish(self, reply: str) -> list[int]:
        """End the reply: it joins the messages; returns the closing ids (e.g. ``<|im_end|>``, "\\n")
        the template writes after it, which the caller feeds."""
        closing = self._closing_ids(self.messages)
        self.ids.extend(closing)
        self.messages = self.messages + [{"role": "assistant", "content": reply}]
        self.ends = self.ends + [len(self.ids)]
        self._reply_start = None
        return closing

    def rerender_last(self) -> array | None:
        """The ids of the finished conversation as the template writes it in the history (a reply's
        <think> block dropped where the template drops it: its stored content is the answer only);
        None when they are the ids held. ``adopt`` takes them."""
        ids = array("i", self.template.render_ids(self.messages, add_generation_prompt=False, **self.variables))
        return None if ids == self.ids else ids

    def adopt(self, ids: array) -> None:
        """``rerender_last``'s ids replace the held ones (the last message ends at their end)."""
        self.ids, self.ends = ids, self.ends[:-1] + [len(ids)]

    def state(self) -> dict:
        """What a snapshot keeps: messages, ids, message ends, whether the last turn was windowed."""
        return {"messages": self.messages, "ids": self.ids, "ends": self.ends, "windowed": self._windowed}

    def restore(self, messages: list[dict], ids: array, ends: list[int], windowed: bool) -> None:
        """Take a snapshot's ``state()`` back (no reply in progress)."""
        self.messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        self.ids, self.ends, self._windowed, self._reply_start = ids, ends, windowed, None

    def spans(self) -> list[tuple[int, int]]:
        """Token range of each message; the reply in progress last (from after its header)."""
        spans = [(self.ends[i - 1] if i else 0, e) for i, e in enumerate(self.ends)]
        if self._reply_start is not None:
            spans.append((self._reply_start, len(self.ids)))
        return spans

    # ---- rendering ------------------------------------------------------------------------------

    def _shared(self, messages: list[dict]) -> int:
        k, n = 0, min(len(messages), len(self.messages))
        while k < n and messages[k] == self.messages[k]:
            k += 1
        return k

    def _whole_ends(self, messages: list[dict]) -> list[int]:
        """Message ends of a conversation given at once: by window where it checks against the whole
        rendering, so linear in its length; by whole prefix renderings elsewhere."""
        full = self.ids
        ends: list[int] = []
        for i in range(len(messages)):
            new = self._render_new(messages[:i + 1], i, full, ends) if i else None
            if new is None:
                ends.append(len(self.template.render_ids(messages[:i + 1], add_generation_prompt=False,
                                                         **self.variables)))
            else:
                ends.append(ends[-1] + new[1][0])
        return ends

    def _render_new(self, msgs, k, ids, ends) -> tuple[list[int], list[int]] | None:
        """ids that msgs[k:] + the generation prompt add after msgs[:k] (held as ``ids`` with ``ends``),
        and where each new message ends (relative); by window when that checks, else whole; None when
        the rendering of msgs[:k] is not a token prefix of the rest."""
        j = window_start(k)
        if j > 1:
            new = self._rendered_suffix(msgs[:1] + msgs[j:], k - j + 1,
                                        list(ids[:ends[0]]) + list(ids[ends[j - 1]:ends[k - 1]]))
            if new is not None:
                self._windowed = True
                return new
        self._windowed = False
        return self._rendered_suffix(msgs, k, None)

    def _rendered_suffix(self, view, k, held) -> tuple[list[int], list[int]] | None:
        """``_render_new`` on ``view``; with ``held``, its first k messages must render to exactly those ids."""
        r = partial(self.template.render_ids, **self.variables)
        prefix = list(r(view[:k], add_generation_prompt=False))
        if held is not None and prefix != held:
            return None
        full = list(r(view, add_generation_prompt=True))
        if full[:len(prefix)] != prefix:
            return None
        ends = [len(r(view[:i + 1], add_generation_prompt=False)) - len(prefix) for i in range(k, len(view))]
        return full[len(prefix):], ends

    def _closing_ids(self, messages: list[dict]) -> list[int]:
        """Scaffolding the template puts after an assistant message (e.g. <|im_end|> and a newline)."""
        j = window_start(len(messages))
        if self._windowed and j > 1:
            messages = messages[:1] + messages[j:]
        text = self.template.render_text(messages + [{"role": "assistant", "content": _SENTINEL}],
                                         add_generation_prompt=False, **self.variables)
        tail = text.split(_SENTINEL, 1)[1] if _SENTINEL in text else ""
        return list(self.template.tokenizer.tokenize(tail, special=True)) if tail else []
