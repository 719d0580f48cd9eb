"""Errors a user can cause: each prints as one line in the CLI and the TUI."""


class EdgechatError(Exception):
    """Base of user-facing errors: the message is one line, shown without a traceback."""

    exit_code = 1


class GGUFError(EdgechatError):
    """A malformed, truncated or unsupported GGUF file; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str):
        super().__init__(f"bad GGUF ({field}): {message}")
        self.field = field


class ModelNotFound(EdgechatError):
    """A model name or path that resolves to nothing."""


class UnsupportedModel(EdgechatError):
    """An arch or tensor type the chosen backend does not run."""


class InsufficientMemory(EdgechatError):
    """The model and its cache would not fit in the available RAM."""
