"""Choose the model of a chat among the models on this machine."""
from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

DEFAULT = ""      # a chat's model when it runs the packaged default


def local_models() -> list[tuple[str, str]]:
    """``(model, description)`` of each model on this machine; the packaged default's model is ""."""
    from ....models.local import list_models
    found = []
    for m in list_models():
        backend = "native" if m.native else f"llama.cpp ({m.reason})" if m.reason else "llama.cpp"
        about = f"{m.name} · {m.source} · {m.size / 2**20:,.0f} MB · {backend}"
        found.append((DEFAULT if m.source == "packaged" else m.name, about))
    return found


class ModelPicker(ModalScreen[str | None]):
    """Dismisses with the chosen model ("" for the packaged default), or None on Escape."""

    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def __init__(self, current: str, models: list[tuple[str, str]]):
        super().__init__()
        self.current = current
        self.models = models

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Model of this chat", classes="question")
            yield OptionList(*(self._option(i, about) for i, (_, about) in enumerate(self.models)),
                             id="models")
            yield Label("Enter to choose · Esc to cancel · `edgechat pull NAME` adds models",
                        classes="hint")

    def _option(self, index: int, about: str) -> Option:
        mark = "● " if self.models[index][0] == self.current else "  "
        return Option(Text.assemble(mark, about), id=str(index))

    def on_mount(self) -> None:
        models = self.query_one("#models", OptionList)
        names = [name for name, _ in self.models]
        if self.current in names:
            models.highlighted = names.index(self.current)
        models.focus()

    @on(OptionList.OptionSelected, "#models")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.models[int(event.option.id)][0])
