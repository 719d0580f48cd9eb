"""Attaching files to a message: reading them (text, binary, missing, a directory, too large), the
fenced block they are sent as, and the TUI: /attach and a pasted path put a chip above the input,
pressing the chip removes it, sending puts the files in the message; a refused file is one notice; a
file longer than the window gets the long-prompt notice before it is sent."""
from __future__ import annotations

import pytest
from textual import events

from edgechat.app.store import open_store
from edgechat.app.tui import attach
from edgechat.app.tui.app import EdgechatApp
from edgechat.app.tui.attach import AttachRefused, message_with, read_attachment
from edgechat.app.tui.widgets import AttachmentBar
from tui_support import make_args, scripted_engine, send, wait_until

SIZE = (100, 32)
CODE = "def greet(name):\n    return f'hello {name}'\n"


@pytest.fixture
def files(tmp_path):
    (tmp_path / "greet.py").write_text(CODE)
    (tmp_path / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR" + bytes(64))
    (tmp_path / "big.txt").write_text("x" * (attach.MAX_BYTES + 1))
    (tmp_path / "ticks.md").write_text("Use ```code``` fences.")
    (tmp_path / "dir").mkdir()
    return tmp_path


def test_reading_files(files):
    a = read_attachment("greet.py", cwd=files)
    assert a.text == CODE and a.name == "greet.py" and a.lines == 2 and a.chip == "greet.py · 2 lines"
    assert a.fenced() == f"`greet.py`:\n```py\n{CODE}```"
    assert read_attachment(f"'{files / 'greet.py'}'").text == CODE               # a quoted absolute path
    ticks = read_attachment("ticks.md", cwd=files).fenced()
    assert ticks.startswith("`ticks.md`:\n````md\n") and ticks.endswith("\n````")  # longer than its ```
    for name, why in (("image.png", "image.png is a binary file"), ("missing.txt", "No such file: missing.txt"),
                      ("dir", "dir is a directory"), ("big.txt", f"files up to {attach.MAX_BYTES // 1024} KiB")):
        with pytest.raises(AttachRefused, match=why):
            read_attachment(name, cwd=files)
    assert message_with("Explain this", [a]) == f"Explain this\n\n{a.fenced()}"
    assert message_with("", [a]) == a.fenced() and message_with("hi", []) == "hi"


@pytest.fixture(scope="module")
def engine():
    eng = scripted_engine(ctx=512)
    yield eng
    eng.close()


def chips(app) -> list[str]:
    return [str(b.label) for b in app.query_one(AttachmentBar).query(".chip")]


@pytest.mark.asyncio
async def test_attach_paste_remove_and_send(engine, db, files):
    app = EdgechatApp(make_args(ctx=512, max_tokens=8), open_store(db), engine=engine, volatile=False)
    async with app.run_test(size=SIZE) as pilot:
        told = []
        notify = app.notify
        app.notify = lambda message, **kw: (told.append(message), notify(message, **kw))
        bar = app.query_one(AttachmentBar)
        assert not bar.display
        for path, why in ((files / "image.png", "is a binary file"), (files / "nope.txt", "No such file")):
            await send(app, pilot, f"/attach {path}", wait=False)
            assert why in told[-1] and chips(app) == []
        await send(app, pilot, f"/attach {files / 'greet.py'}", wait=False)
        await wait_until(pilot, lambda: chips(app) == ["📎 greet.py · 2 lines ✕"], timeout=10)
        assert bar.display
        prompt = app.query_one("#prompt")
        prompt.post_message(events.Paste(str(files / "ticks.md")))                  # a pasted path
        await wait_until(pilot, lambda: len(chips(app)) == 2, timeout=10)
        assert prompt.value == ""
        prompt.post_message(events.Paste("just words"))                            # pasted text stays text
        await wait_until(pilot, lambda: prompt.value == "just words", timeout=10)
        prompt.value = ""
        await pilot.click("#chip-1")                                                # removed
        await wait_until(pilot, lambda: chips(app) == ["📎 greet.py · 2 lines ✕"], timeout=10)
        await send(app, pilot, "Explain this")
        assert chips(app) == [] and not bar.display
        sent = app.store.messages(app.chat.id)[0].content
        assert sent == "Explain this\n\n" + read_attachment(str(files / "greet.py")).fenced()
        assert app.transcript.views[-1].content.startswith("You asked: Explain this")
        # a file longer than the 512-token window is told before it is sent
        (files / "long.txt").write_text("The harbour lamps burn through the storm. " * 400)
        await send(app, pilot, f"/attach {files / 'long.txt'}", wait=False)
        await wait_until(pilot, lambda: len(chips(app)) == 1, timeout=10)
        assert told[-1].startswith("long.txt: the prompt is ") and "the window (--ctx) holds 512" in told[-1]
    app.store.close()
