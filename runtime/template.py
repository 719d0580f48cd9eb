"""Chat template: GGUF ``tokenizer.chat_template`` (jinja2 sandbox) -> prompt text and token ids.

Special tokens come only from the template's scaffolding, never from message content: the
template is rendered a second time with each content replaced by a unique sentinel, so what lies
between sentinels is scaffolding. Only special tokens found in the scaffolding become special ids;
all plain text (content and the scaffolding's own plain text, joined where they touch) is tokenized
with ``special=False``. For content that holds no special-token strings the ids therefore equal
llama.cpp's tokenization of the whole rendered prompt with special parsing on, which is how the
model's own chat runs are tokenized.

Prefix property (cache reuse across turns): ``render_ids(messages[:k], False)`` is a token prefix
of ``render_ids(messages[:k+1], False)`` whenever each message ends with a special token and the
plain text after it (ChatML's "\\n") reaches the next special token: true for ChatML (the default
model, Qwen2.5) and Llama 3. It can fail for a template whose messages end in plain text that the
next message continues ("User: ...\\n\\nAssistant: ..."), since BPE may merge across the join.
With the generation prompt: ``render_ids(messages[:k], True)`` is a prefix of the same turn with
the reply added, except for a reply that starts with 2+ spaces or "\\n\\n" (ChatML's header "\\n"
merges with them); the engine keeps the sampled ids of a reply, so it does not rely on that one.
"""
from __future__ import annotations

import json
import logging
import re
import secrets
from datetime import datetime
from typing import Any, Mapping, Sequence

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .chat_templates import CHATML as CHATML_TEMPLATE   # a template that does not compile falls back to it
from .errors import EdgechatError
from .tokenizer import Tokenizer

_log = logging.getLogger("edgechat.template")
# stands in for message content when the template is rendered as a skeleton: letters and digits only,
# matched ignoring case, so it survives trim, tojson, upper and lower; compiled once (a pattern per
# call, with the nonce in it, would fill re's cache); a lookahead, so that a look-alike in the template's
# own text cannot swallow the start of a real one
_SENTINEL = re.compile(r"(?=ECSENT([0-9a-f]+)N([0-9]+)E)", re.IGNORECASE)


Message = Mapping[str, Any]


class ChatTemplateError(EdgechatError):
    """A chat template that does not compile, or that refuses the messages (raise_exception)."""


def _raise_exception(message: str):
    raise ChatTemplateError(f"chat template: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    # as transformers' chat templates: no HTML escaping, unicode kept
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _environment() -> ImmutableSandboxedEnvironment:
    # the settings transformers renders chat templates with
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


class ChatTemplate:
    """A chat template bound to a tokenizer.

    Args:
        template_str: jinja2 source (a GGUF's ``tokenizer.chat_template``); None or "" for ChatML.
        tokenizer: the model's tokenizer.
        bos_token: text of ``bos_token`` in the template; default: the vocab's BOS text.
        eos_token: text of ``eos_token`` in the template; default: the vocab's EOS text.
        source: where the template came from, for display (``from_tokenizer`` sets it).
    """

    def __init__(self, template_str: str | None, tokenizer: Tokenizer, bos_token: str | None = None,
                 eos_token: str | None = None, source: str = "given"):
        if not template_str:   # the family's built-in (chat_templates.py): Gemma, Llama 3, else ChatML
            from .chat_templates import BUILTIN, family_of
            family = family_of(tokenizer)
            template_str, source = BUILTIN[family], f"{family} (built in: the GGUF has no template)"
        self.tokenizer = tokenizer
        self.template_str = template_str
        self.source = source
        self.bos_token = tokenizer.token_text(tokenizer.bos_id) if bos_token is None else bos_token
        self.eos_token = tokenizer.token_text(tokenizer.eos_id) if eos_token is None else eos_token
        try:
            self._template = _environment().from_string(template_str)
        except TemplateError as e:
            raise ChatTemplateError(f"chat template does not compile: {e}") from None

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> "ChatTemplate":
        """The GGUF's own template; ChatML when it has none or when it does not compile."""
        text = tokenizer.metadata("tokenizer.chat_template")
        if not text:
            return cls(None, tokenizer)
        try:
            return cls(text, tokenizer, source="gguf")
        except ChatTemplateError as e:
            _log.warning("%s; using ChatML", e)
            return cls(CHATML_TEMPLATE, tokenizer, source=f"chatml ({e})")

    # -- text ---------------------------------------------------------------------------------

    def render_text(self, messages: Sequence[Message], add_generation_prompt: bool = True,
                    **kwargs) -> str:
        """The prompt as text, exactly as the template writes it.

        Args:
            messages: ``{"role": ..., "content": ...}`` dicts, oldest first.
            add_generation_prompt: end with the header that opens the assistant's turn.
            **kwargs: extra template variables (e.g. ``enable_thinking``).

        Returns:
            the rendered prompt.
        """
        variables = dict(tools=None, documents=None, bos_token=self.bos_token,
                         eos_token=self.eos_token)
        if messages and messages[0].get("tools"):     # a request's tools ride on its first message
            variables["tools"] = messages[0]["tools"]  # (runtime.tools), so every rendering sees them
        variables.update(kwargs)
        try:
            return self._template.render(messages=[dict(m) for m in messages],
                                         add_generation_prompt=add_generation_prompt,
                                         **variables)
        except ChatTemplateError:
            raise
        except TemplateError as e:
            raise ChatTemplateError(f"chat template failed: {e}") from None

    # -- ids ----------------------------------------------------------------------------------

    def render_ids(self, messages: Sequence[Message], add_generation_prompt: bool = True,
                   **kwargs) -> list[int]:
        """The prompt as token ids: special ids only from the scaffolding; BOS once.

        BOS is prepended when the tokenizer asks for it (``add_bos``) and the template did not
        already write it.

        Args:
            messages: as ``render_text``.
            add_generation_prompt: as ``render_text``.
            **kwargs: as ``render_text``.

        Returns:
            token ids, ready to feed.
        """
        tok = self.tokenizer
        ids: list[int] = []
        for seg in self._segments(messages, add_generation_prompt, kwargs):
            if isinstance(seg, int):
                ids.append(seg)
            else:
                ids.extend(tok.tokenize(seg, special=False))
        if tok.add_bos and tok.bos_id >= 0 and (not ids or ids[0] != tok.bos_id):
            ids.insert(0, tok.bos_id)
        return ids

    def _segments(self, messages, add_generation_prompt, kwargs) -> list[int | str]:
        """The prompt as special ids (int) and runs of plain text (str) between them."""
        segments: list[int | str] = []
        run: list[str] = []
        for text, is_content in self._pieces(messages, add_generation_prompt, kwargs):
            parts = [text] if is_content else self._split_specials(text)
            for part in parts:
                if isinstance(part, int):
                    if run:
                        segments.append("".join(run))
                        run = []
                    segments.append(part)
                elif part:
                    run.append(part)
        if run:
            segments.append("".join(run))
        return segments

    def _pieces(self, messages, add_generation_prompt, kwargs) -> list[tuple[str, bool]]:
        """The rendered prompt cut into (text, is_content) pieces, in order."""
        nonce = secrets.token_hex(8)
        contents: list[str] = []
        masked = []
        for m in messages:
            m = dict(m)
            c = m.get("content")
            if isinstance(c, str) and c:
                m["content"] = f"ECSENT{nonce}N{len(contents)}E"
                contents.append(c)
            masked.append(m)
        skeleton = self.render_text(masked, add_generation_prompt, **kwargs)
        full = self.render_text(messages, add_generation_prompt, **kwargs)
        scaffold, slots, pos = [], [], 0
        for m in _SENTINEL.finditer(skeleton):
            if m.start() >= pos and m.group(1).lower() == nonce and int(m.group(2)) < len(contents):
                scaffold.append(skeleton[pos:m.start()])
                slots.append(contents[int(m.group(2))])
                pos = m.end(2) + 1          # past the closing E
        scaffold.append(skeleton[pos:])
        if slots:
            slots = _align(full, scaffold, slots)
        pieces = [(scaffold[0], False)]
        for content, after in zip(slots, scaffold[1:]):
            pieces += [(content, True), (after, False)]
        if "".join(p for p, _ in pieces) != full:
            # the template mangled a sentinel (or reads content in ways the skeleton cannot show)
            if not any(self._has_special(c) for c in contents):
                return [(full, False)]      # no special strings in any content: parse it whole
            _log.warning("chat template rewrites message content; the prompt follows the given content")
        return pieces

    def _has_special(self, text: str) -> bool:
        tok = self.tokenizer
        return any(tok.is_control(i) for i in tok.tokenize(text, special=True))

    def _split_specials(self, scaffold: str) -> list[int | str]:
        """Scaffolding text cut into special-token ids and the plain text around them."""
        tok = self.tokenizer
        out: list[int | str] = []
        pos = 0
        for tid in tok.tokenize(scaffold, special=True):
            if not tok.is_control(tid):
                continue
            name = tok.token_text(tid)
            at = scaffold.find(name, pos)
            if at < 0:     # a special token whose text is not found: keep llama.cpp's own cut
                return list(tok.tokenize(scaffold, special=True))
            out += [scaffold[pos:at], tid]
            pos = at + len(name)
        out.append(scaffold[pos:])
        return out


def _align(full: str, scaffold: list[str], slots: list[str]) -> list[str]:
    """The contents as the template wrote them into ``full`` (it may trim or change them).

    ``full`` should read scaffold[0] + slot[0]' + scaffold[1] + ... + scaffold[-1]. Each slot' is
    the content or a trimmed copy when one fits, else the text up to the next scaffold piece.
    Whatever this finds, special tokens still come only from the scaffold pieces: a slot is always
    tokenized as plain text. When ``full`` cannot be read that way the contents are kept as given.
    """
    out = []
    pos = 0
    last = len(slots) - 1
    for i, content in enumerate(slots):
        if not full.startswith(scaffold[i], pos):
            break
        pos += len(scaffold[i])
        after = scaffold[i + 1]
        end = _slot_end(full, pos, content, after, i == last)
        if end < 0:
            break
        out.append(full[pos:end])
        pos = end
    else:
        if full[pos:] == scaffold[-1]:
            return out
    _log.debug("chat template output does not follow its skeleton; token ids follow the given content")
    return slots


def _slot_end(full: str, pos: int, content: str, after: str, last: bool) -> int:
    """Where the content written at ``pos`` ends in ``full``, or -1."""
    for cand in (content, content.strip(), content.lstrip(), content.rstrip()):
        end = pos + len(cand)
        if full.startswith(cand, pos) and (full[end:] == after if last else full.startswith(after, end)):
            return end
    if last:
        end = len(full) - len(after)
        return end if end >= pos and full.endswith(after) else -1
    return full.find(after, pos) if after else -1
