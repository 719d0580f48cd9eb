"""A chat's system prompt (with the pin switch) and sampling settings."""
from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Switch, TextArea

from ...reply_format import setting_format
from ....runtime.constraint import ConstraintError
from ..settings import FIELDS, defaults, is_integer, parse

KV_OPTIONS = [("auto: q8_0 on the native engine, f16 on llama.cpp", "auto"),
              ("f16", "f16"), ("q8_0: int8 rows, about half the memory", "q8_0")]


THINK_OPTIONS = [("the model's default", "default"), ("on: a <think> block before the answer", True),
                 ("off", False)]


class SettingsScreen(ModalScreen[dict | None]):
    """Dismisses with ``{"system": str, "settings": dict}``, or None on Escape."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel"), Binding("ctrl+s", "save", "Save")]

    def __init__(self, title: str, system: str, settings: dict):
        super().__init__()
        self.chat_title, self.system, self.settings = title, system, settings

    def compose(self) -> ComposeResult:
        engine_defaults = defaults()
        with VerticalScroll(classes="dialog wide"):
            yield Label(f"Settings of “{self.chat_title}”", classes="question")
            yield Label("System prompt", classes="field-label")
            yield TextArea(self.system, id="system", soft_wrap=True)
            with Horizontal(id="pin-row"):
                yield Switch(bool(self.settings.get("pin_system")), id="pin")
                yield Label("Pin the system prompt as the attention sink: it never leaves the window")
            with Horizontal(id="kv-row"):
                yield Label("KV cache (a change reloads the model)")
                yield Select(KV_OPTIONS, value=self.settings.get("kv_type") or "auto", allow_blank=False,
                             id="kv-type", compact=True)
            with Horizontal(id="think-row"):
                yield Label("Thinking (/think on|off)")
                yield Select(THINK_OPTIONS, value=self.settings.get("think", "default"), allow_blank=False,
                             id="think", compact=True)
            with Horizontal(id="format-row"):
                yield Label("Reply format")
                yield Input(self.settings.get("reply_format") or "", id="reply-format", compact=True,
                            placeholder="none · json · a JSON schema file")
            with Grid(id="sampling"):
                for key, label in FIELDS.items():
                    value = self.settings.get(key)
                    yield Label(label, classes="field-label")
                    yield Input("" if value is None else str(value), id=key,
                                type="integer" if is_integer(key) else "number",
                                placeholder=f"default {engine_defaults.get(key)}")
            with Horizontal(classes="buttons"):
                yield Label("Ctrl+S saves · Esc cancels", classes="hint")
                yield Button("Save", variant="primary", id="save")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#system", TextArea).focus()

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        settings = {"pin_system": self.query_one("#pin", Switch).value,
                    "kv_type": self.query_one("#kv-type", Select).value}
        if self.query_one("#think", Select).value != "default":
            settings["think"] = self.query_one("#think", Select).value
        fmt = self.query_one("#reply-format", Input).value.strip()
        try:
            if setting_format(fmt) is not None:
                settings["reply_format"] = fmt if fmt.lower() != "json" else "json"
        except ConstraintError as e:
            self.notify(str(e), severity="error")
            return
        for key in FIELDS:
            text = self.query_one(f"#{key}", Input).value.strip()
            if text:
                try:
                    settings[key] = parse(key, text)
                except ValueError as e:
                    self.notify(str(e), severity="error")
                    return
        self.dismiss({"system": self.query_one("#system", TextArea).text.strip(), "settings": settings})

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
