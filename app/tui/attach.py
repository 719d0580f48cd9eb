"""Files attached to the next message (``/attach PATH``, or a pasted path), without Textual: read as
text and sent as a fenced block under the file's name; binary files, unreadable paths and files over
``MAX_BYTES`` are refused with a one-line reason."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

MAX_BYTES = 256 * 1024     # ~64k tokens of code: beyond any window the packaged models run with
SNIFF_BYTES = 8192         # a NUL byte in the first this many bytes: a binary file (as git decides)


class AttachRefused(ValueError):
    """Why a path cannot be attached (one line, shown as is)."""


@dataclass(frozen=True)
class Attachment:
    """A text file to send with the next message."""

    path: Path
    text: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def lines(self) -> int:
        return self.text.count("\n") + (not self.text.endswith("\n") and bool(self.text))

    @property
    def chip(self) -> str:
        """``notes.md · 12 lines``."""
        return f"{self.name} · {self.lines:,} line{'s' if self.lines != 1 else ''}"

    def fenced(self) -> str:
        """The file as a Markdown block under its name; the fence is longer than any run of backticks
        in the file, and its info string is the file's suffix (for highlighting)."""
        longest = max((len(run) for run in re.findall(r"`+", self.text)), default=0)
        fence = "`" * max(3, longest + 1)
        body = self.text if self.text.endswith("\n") or not self.text else self.text + "\n"
        return f"`{self.name}`:\n{fence}{self.path.suffix.lstrip('.')}\n{body}{fence}"


def read_attachment(text: str, cwd: Path | None = None) -> Attachment:
    """The file ``text`` names (``~`` expanded, relative to ``cwd``), read as UTF-8 text.

    Raises:
        AttachRefused: a missing path, a directory, an unreadable file, one over ``MAX_BYTES``, or a
            binary one.
    """
    shown = text.strip()
    path = Path(os.path.expanduser(unquote(shown)))
    if not path.is_absolute():
        path = (cwd or Path.cwd()) / path
    if not path.exists():
        raise AttachRefused(f"No such file: {shown}")
    if path.is_dir():
        raise AttachRefused(f"{shown} is a directory; attach the files in it one by one")
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise AttachRefused(f"{shown} is {size / 1024:,.0f} KiB; files up to {MAX_BYTES // 1024} KiB "
                                "can be attached")
        data = path.read_bytes()
    except OSError as e:
        raise AttachRefused(f"Cannot read {shown}: {e.strerror or e}") from None
    if b"\0" in data[:SNIFF_BYTES]:
        raise AttachRefused(f"{shown} is a binary file; only text files can be attached")
    try:
        return Attachment(path, data.decode("utf-8").replace("\r\n", "\n"))
    except UnicodeDecodeError:
        raise AttachRefused(f"{shown} is not UTF-8 text; only text files can be attached") from None


def unquote(text: str) -> str:
    """A path as a terminal pastes it: quoted, or with backslash-escaped spaces."""
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text)


def pasted_path(text: str, cwd: Path | None = None) -> str | None:
    """``text`` when it is one line naming an existing file (a pasted path), else None."""
    line = text.strip()
    if not line or "\n" in line or len(line) > 4096:
        return None
    path = Path(os.path.expanduser(unquote(line)))
    path = path if path.is_absolute() else (cwd or Path.cwd()) / path
    try:
        return line if path.is_file() else None
    except OSError:
        return None


def message_with(text: str, attachments: list[Attachment]) -> str:
    """The message to send: the text, then each attached file."""
    return "\n\n".join([text.strip()] * bool(text.strip()) + [a.fenced() for a in attachments])
