"""Widgets of the chat screen."""
from .attachment_bar import AttachmentBar
from .chat_list import ChatList
from .context_divider import ContextDivider
from .message_view import MessageView
from .prompt_input import PromptInput
from .status_bar import StatusBar
from .transcript import Transcript

__all__ = ["AttachmentBar", "ChatList", "ContextDivider", "MessageView", "PromptInput", "StatusBar", "Transcript"]
