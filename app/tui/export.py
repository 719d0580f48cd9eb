"""A chat as a Markdown document, written to a file."""
from __future__ import annotations

import re
import time
from pathlib import Path

from ...models.paths import exports_dir
from ..store import Chat, Message
from .settings import summary

STOP_NOTES = {"cancelled": "*(stopped by the user)*", "length": "*(cut at the reply length limit)*",
              "error": "*(the server's stream broke off)*"}


def chat_markdown(chat: Chat, messages: list[Message], model_name: str) -> str:
    """The chat's title, model, settings, system prompt and messages as Markdown."""
    lines = [f"# {chat.title}", "",
             f"*{model_name} · {summary(chat.settings)} · exported {time.strftime('%Y-%m-%d %H:%M')}*", ""]
    if chat.system:
        lines += ["## System", "", chat.system, ""]
    for m in messages:
        lines += [f"## {'You' if m.role == 'user' else 'Assistant'}", "", m.content, ""]
        if m.finish in STOP_NOTES:
            lines += [STOP_NOTES[m.finish], ""]
    return "\n".join(lines)


def default_name(chat: Chat) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", chat.title.lower()).strip("-")[:40] or "chat"
    return f"edgechat-{chat.id}-{slug}.md"


def write_export(text: str, name: str, target: str | None = None) -> Path:
    """Write ``text`` to ``target``, else to ``name`` in the current directory, else in the data dir.

    Returns:
        The absolute path written.

    Raises:
        OSError: ``target`` was given and cannot be written, or neither default place can be.
    """
    places = ([Path(target).expanduser()] if target
              else [Path.cwd() / name, exports_dir() / name])
    for path in places[:-1]:
        try:
            return _write(path, text)
        except OSError:
            pass
    return _write(places[-1], text)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path.resolve()
