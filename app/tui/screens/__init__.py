"""Modal screens: help, chat settings, model picker, text prompt, confirmation, stats, search, edit."""
from .confirm import ConfirmScreen
from .edit import EditScreen
from .help import HelpScreen
from .model_picker import ModelPicker
from .search import SearchScreen
from .settings import SettingsScreen
from .stats import StatsScreen
from .text_prompt import TextPrompt

__all__ = ["ConfirmScreen", "EditScreen", "HelpScreen", "ModelPicker", "SearchScreen", "SettingsScreen",
           "StatsScreen", "TextPrompt"]
