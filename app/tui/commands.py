"""The slash commands, in one table: it drives both the command handler and the help screen."""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable

from . import remote


@dataclass(frozen=True)
class Command:
    """``/name [arg]``: what it does (for the help screen) and how (``run(app, arg)``)."""

    name: str
    arg: str                                   # "" when it takes none, else e.g. "[text]"
    help: str
    run: Callable                              # (app, arg) -> None or an awaitable

    @property
    def usage(self) -> str:
        return f"{self.name} {self.arg}".strip()


def _either(with_arg: Callable, without: Callable) -> Callable:
    """A command that does ``with_arg(app, arg)`` when given an argument, else ``without(app)``."""
    return lambda app, arg: with_arg(app, arg) if arg else without(app)


COMMANDS = [
    Command("/new", "", "new chat", lambda app, _: app.action_new_chat()),
    Command("/system", "[text]", "set the system prompt, or open the editor",
            _either(lambda app, arg: app.update_chat(system=arg), lambda app: app.action_settings())),
    Command("/model", "[name]", "switch the model of this chat, or pick one",
            _either(lambda app, arg: app.update_chat(**remote.model_fields(app, arg)),
                    lambda app: app.action_pick_model())),
    Command("/remote", "[URL|off]", "run this chat on an OpenAI-compatible server, or here again (off)",
            lambda app, arg: remote.set_remote(app, arg)),
    Command("/clear", "", "delete the messages of this chat", lambda app, _: app.clear_chat()),
    Command("/edit", "[text]", "edit your last message (or e on a focused one): a new branch",
            _either(lambda app, arg: app.edit_message(None, arg), lambda app: app.action_edit())),
    Command("/branch", "N", "show branch N of the focused message (or < > on it)",
            lambda app, arg: app.branch_command(arg)),
    Command("/think", "on|off", "this chat's thinking switch (a <think> block before the answer)",
            lambda app, arg: app.set_thinking(arg)),
    Command("/regen", "", "regenerate the last reply (the old one stays as a branch)",
            lambda app, _: app.action_regenerate()),
    Command("/export", "[file]", "save this chat as Markdown (default: current dir)",
            lambda app, arg: app.action_export(arg or None)),
    Command("/stats", "", "model, backend, speed and cache of the last reply", lambda app, _: app.action_stats()),
    Command("/rename", "[title]", "rename this chat",
            _either(lambda app, arg: app.rename(app.chat.id, arg), lambda app: app.action_rename_chat())),
    Command("/delete", "", "delete this chat", lambda app, _: app.action_delete_chat()),
    Command("/copy", "", "copy the last reply", lambda app, _: app.action_copy_reply()),
    Command("/attach", "PATH", "add a text file to your next message (or paste its path)",
            lambda app, arg: app.attach(arg)),
    Command("/search", "[text]", "search every chat (Ctrl+F)", lambda app, arg: app.action_search(arg)),
    Command("/help", "", "this help", lambda app, _: app.action_help()),
]
BY_NAME = {c.name: c for c in COMMANDS}
NAMES = [c.name for c in COMMANDS]


async def run_command(app, text: str) -> None:
    """Run ``/name [argument]`` on the app; an unknown name is a warning."""
    name, _, arg = text.partition(" ")
    command = BY_NAME.get(name)
    if command is None:
        app.notify(f"Unknown command {name}: /help lists them.", severity="warning")
        return
    result = command.run(app, arg.strip())
    if inspect.isawaitable(result):
        await result
