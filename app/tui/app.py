"""The edgechat TUI: saved chats, a streaming transcript with a context map, and a status bar.

The App composes the screen and routes: keys and commands to actions, the workers' messages to the
transcript. The reply lifecycle (``replies.py``), the engine host (``host.py``) and the window's chat
leases (``leases.ChatLeases``) are plain classes; chat-level actions are in ``chat_actions.py``, sending
and drawing replies in ``turns.py``.
Replies are generated in a thread worker that posts a message per piece of text; the UI thread
writes them to a ``MarkdownStream``. One engine is loaded at a time; a chat whose model or
``pin_system`` differs from the loaded one reloads it (in a worker, the status bar says so).
"""
from __future__ import annotations

import asyncio
import os
import sys
import threading

import psutil
from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Label, OptionList, Static
from textual.worker import get_current_worker

from ..kv_snapshots import DEFAULT_MAX_MIB, SnapshotDir
from ..leases import ChatLeases
from ..signals import TERMINATING
from ..store import Chat, Store, open_store
from . import remote
from .branches import Branches
from .chat_actions import ChatActions
from .commands import run_command
from .draft import Draft
from .host import EngineHost
from .messages import EngineFailed, EngineLoaded, Poster
from .replies import Replies, Reply
from .screens import HelpScreen, SearchScreen, StatsScreen
from .turns import Turns
from .widgets import AttachmentBar, ChatList, PromptInput, StatusBar, Transcript

RSS_EVERY_S = 2.0
UNSAVED_CHARS = 60      # each unsaved message is named by its start at quit
EXIT_GRACE_S = 10.0     # after SIGTERM/SIGHUP the reply is committed first; if leaving the terminal
                        # hangs (it is gone), the process ends this much later anyway


class EdgechatApp(ChatActions, Turns, Draft, Branches, App[int]):
    """Chat with a local model.

    Args:
        args: the CLI's argparse Namespace (model, backend, threads, ctx, sinks, pin_system,
            gpu_layers, system, temp, top_k, top_p, min_p, repeat_penalty, seed, max_tokens).
        store: the chat history (default: ``open_store()``).
        engine: an engine already loaded for ``args.model`` (tests share one); not closed on exit.
        volatile: draw timings and RSS; False keeps screenshots reproducible.
    """

    CSS_PATH = "edgechat.tcss"
    TITLE = "edgechat"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    BINDINGS = [
        Binding("escape", "stop", "Stop", priority=True),
        Binding("ctrl+c", "stop", "Stop", show=False, priority=True),
        Binding("ctrl+n", "new_chat", "New"),
        Binding("ctrl+r", "regenerate", "Regen"),
        Binding("ctrl+y", "copy_reply", "Copy"),
        Binding("ctrl+s", "export", "Export"),
        Binding("f3", "settings", "System"),
        Binding("f4", "pick_model", "Model"),
        Binding("ctrl+b", "toggle_sidebar", "Chats", show=False),
        Binding("ctrl+f", "search", "Search", show=False),
        Binding("f1", "help", "Help"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
    ]

    def __init__(self, args, store: Store | None = None, engine=None, volatile: bool = True):
        super().__init__()
        self.args = args
        self.store = store if store is not None else open_store()
        snapshots = SnapshotDir.beside(self.store.path, getattr(args, "kv_snapshots_mib", DEFAULT_MAX_MIB))
        self.host = EngineHost(args, self._launch, Poster(self), engine, snapshots)
        self.leases = ChatLeases(self.store)
        self.replies = Replies(self.store, self.leases)
        self.volatile = volatile
        self.chat: Chat | None = None
        self.history = []                      # store.Message of the chat shown, in order
        self.last_stats: dict = {}
        self.attachments = []                  # files to send with the next message (draft.py)
        self._branch_switched = False          # the next reply follows a switch of branches
        self._last_map: tuple | None = None    # (chat id, spans, cache) of the last reply
        self._terminating: int | None = None   # the exit code of a SIGTERM/SIGHUP being handled

    @property
    def engine(self):
        """The loaded engine, or None while one loads (or failed to)."""
        return self.host.engine

    @property
    def reply(self) -> Reply | None:
        """The reply drawn now."""
        return self.replies.current

    def _launch(self, fn, group: str) -> None:
        """The host's workers: one thread worker per group at a time."""
        def run() -> None:
            worker = get_current_worker()
            fn(lambda: worker.is_cancelled)
        self.run_worker(run, thread=True, exclusive=True, group=group)

    # ---- structure ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            with Vertical(id="sidebar"):
                yield Label("edgechat", id="brand")
                yield ChatList(id="chats")
                yield Label("^N new · Del · F2 rename", id="sidebar-hint")
            with Vertical(id="chat"):
                yield Static(id="store-problem")
                with Horizontal(id="chat-header"):
                    yield Label(id="chat-title")
                    yield Label(id="chat-model")
                    yield Label(id="chat-settings")
                yield Transcript(id="transcript")
                yield AttachmentBar(id="attachments")
                yield PromptInput(id="prompt", placeholder="Message · /help for commands")
        yield StatusBar(volatile=self.volatile, id="status")
        yield Footer(show_command_palette=False)

    @property
    def transcript(self) -> Transcript:
        return self.query_one(Transcript)

    @property
    def status(self) -> StatusBar:
        return self.query_one(StatusBar)

    async def on_mount(self) -> None:
        self._catch_signals()
        self.store.on_problem = self._show_store_problem
        self._show_store_problem(self.store.problem)
        await self._show_chat(self._initial_chat())
        if self.engine is not None:
            self._engine_ready()
        prompt = self.query_one(PromptInput)
        if self.volatile:
            self._update_rss()
            self.set_interval(RSS_EVERY_S, self._update_rss)
        else:
            prompt.cursor_blink = False
        prompt.focus()

    async def on_unmount(self) -> None:
        """Quitting mid-reply stops it and still commits the partial reply."""
        self.replies.cancel_all()
        self.host.close()                       # after the worker, which stops within one token
        self.replies.commit_ended()

    def _catch_signals(self) -> None:
        """SIGTERM and SIGHUP quit as Ctrl+Q does; the exit code is the shell's (143, 129)."""
        loop = asyncio.get_running_loop()
        for sig in TERMINATING:
            loop.add_signal_handler(sig, self.call_later, self._terminate, 128 + sig)

    async def _terminate(self, code: int) -> None:
        """Stop the reply within one token and commit it before anything touches the terminal (after
        a SIGHUP it may be gone), then quit: leaving restores the terminal."""
        if self._terminating is not None:
            return
        self._terminating = code
        watchdog = threading.Timer(EXIT_GRACE_S, os._exit, (code,))
        watchdog.daemon = True
        watchdog.start()
        self.replies.cancel_all()
        await asyncio.to_thread(self.host.close)
        self.replies.commit_ended()
        self.exit(code, return_code=code)

    # ---- chats ----------------------------------------------------------------------------------

    @property
    def _pinned(self) -> bool:
        return bool(self.chat and self.chat.settings.get("pin_system"))

    # ---- the engine -----------------------------------------------------------------------------

    def _ensure_engine(self) -> None:
        """Load the chat's model (with its pin_system), or connect to its server, unless it is the one
        loaded or loading."""
        key = remote.engine_key(self.chat, self.args)
        if self.host.ensure(key):
            status = self.status
            status.model, status.state = key[0] or ("the server's model" if key[3] else "default model"), "loading"

    @on(EngineLoaded)
    def _engine_loaded(self, message: EngineLoaded) -> None:
        if self.host.loaded(message.engine, message.key):
            self._engine_ready()

    @on(EngineFailed)
    def _engine_failed(self, message: EngineFailed) -> None:
        if message.key != self.host.key:
            return
        self.status.state, self.status.error = "error", message.error
        title, hint = remote.load_failure(message.key)
        self.notify(f"{message.error}\n{hint}", title=title, severity="error", timeout=10)

    def _engine_ready(self) -> None:
        info = self.engine.info
        status = self.status
        status.model, status.backend, status.reason = info.name, info.backend, info.reason
        template = getattr(info, "template", "") or ""
        if template not in ("", "gguf"):       # not the file's own (runtime.loader._template): say which
            status.reason = f"{info.reason}; template {template}"
        status.cache = self.engine.cache_info()
        status.state = "ready"
        remote.remember_model(self)
        self._refresh_header()

    def _update_rss(self) -> None:
        self.status.rss = psutil.Process().memory_info().rss

    # ---- sending and replies --------------------------------------------------------------------

    @on(PromptInput.Submitted, "#prompt")
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        """A command runs at once; a message (with the attached files) is sent, or queued whole while
        a reply runs; when neither can be, the input is left as it is."""
        text = event.value.strip()
        if not text and not self.attachments:
            return
        command = text.startswith("/")
        queue = not command and self.reply is not None and self.replies.queued is None
        if not (command or queue or self._can_reply()):
            return
        prompt = self.query_one(PromptInput)
        prompt.remember(text)
        prompt.value = ""
        if command:
            await run_command(self, text)
        elif queue:
            self.replies.queue(self.chat.id, await self._take_draft(text))
            self.notify("Queued: it is sent when this reply ends (Esc stops the reply).")
        else:
            await self._send(await self._take_draft(text))

    # ---- actions --------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "stop":
            return self.reply is not None and len(self.screen_stack) == 1
        return True

    def action_copy_reply(self) -> None:
        text = next((m.content for m in reversed(self.history) if m.role == "assistant"), None)
        if text is None:
            self.notify("There is no reply to copy yet.")
            return
        self.copy_to_clipboard(text)
        self.notify(f"Copied the last reply ({len(text):,} characters).")

    def action_toggle_sidebar(self) -> None:
        self.query_one("#sidebar").toggle_class("-hidden")

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_stats(self) -> None:
        """Engine, last reply and cache; answers during a reply (cache_info is a snapshot)."""
        info = self.engine.info.to_dict() if self.engine else {}
        cache = remote.cache_dict(self.engine)
        self.push_screen(StatsScreen(info, self.last_stats, cache, psutil.Process().memory_info().rss))

    def action_search(self, text: str = "") -> None:
        """Search every chat; the chosen message is opened in its chat."""
        def chosen(hit) -> None:
            if hit is not None:
                self.call_later(self.open_message, hit.chat_id, hit.message_id)
        self.push_screen(SearchScreen(self.store.search, text), chosen)

    # ---- sidebar --------------------------------------------------------------------------------

    @on(OptionList.OptionSelected, "#chats")
    async def _chat_chosen(self, event: OptionList.OptionSelected) -> None:
        await self._switch_to(int(event.option.id))
        self.query_one(PromptInput).focus()

    @on(ChatList.DeleteRequested)
    def _delete_requested(self, message: ChatList.DeleteRequested) -> None:
        self.action_delete_chat(message.chat_id)

    @on(ChatList.RenameRequested)
    def _rename_requested(self, message: ChatList.RenameRequested) -> None:
        self.action_rename_chat(message.chat_id)


def run_tui(args) -> int:
    """Run the chat TUI until the user quits; returns the exit code."""
    store = open_store()
    try:
        app = EdgechatApp(args, store)
        code = app.run()
    finally:
        lost = store.unsaved()
        store.close()
    if lost:
        print(unsaved_reminder(store.problem, lost), file=sys.stderr)
    return code or 0


def unsaved_reminder(problem: str, lost: list) -> str:
    """What was never written to the history file, said after the app has left the terminal."""
    lines = [f"edgechat: {problem.split(' Chats are kept')[0]}",
             f"edgechat: these {len(lost)} messages were kept only in memory and were not saved:"]
    for chat, m in lost:
        text = " ".join(m.content.split())
        text = text if len(text) <= UNSAVED_CHARS else text[:UNSAVED_CHARS - 1] + "…"
        title = chat.title if chat else "?"
        lines.append(f"  “{title}”, {'you' if m.role == 'user' else m.role}: {text}")
    return "\n".join(lines)
