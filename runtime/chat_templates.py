"""Built-in chat templates, per model family, for GGUF files that carry no ``tokenizer.chat_template``.

As llama.cpp keeps a list of known formats (``llama-chat.cpp``): the family is told by the special
tokens the vocab holds (Gemma's ``<start_of_turn>``, Llama 3's ``<|start_header_id|>``), ChatML
(Qwen, SmolLM) otherwise. BOS is not written here: ``ChatTemplate.render_ids`` prepends it when the
tokenizer asks for it.
"""
from __future__ import annotations

import re
from pathlib import Path

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma: user / model turns; a system message opens the first user turn (Gemma has no system role)
GEMMA = (
    "{% set sys = namespace(text='') %}"
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% set sys.text = sys.text + message['content'] + '\\n\\n' %}"
    "{% else %}"
    "{% set role = 'model' if message['role'] == 'assistant' else 'user' %}"
    "{{ '<start_of_turn>' + role + '\\n' + (sys.text if role == 'user' else '') + message['content'] | trim"
    " + '<end_of_turn>\\n' }}"
    "{% if role == 'user' %}{% set sys.text = '' %}{% endif %}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

LLAMA3 = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim"
    " + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# --raw: the messages' text as is, no turns (a base model continues it; serve's /v1/completions does the same)
RAW = "{% for message in messages %}{{ message['content'] }}{% endfor %}"

BUILTIN = {"chatml": CHATML, "gemma": GEMMA, "llama3": LLAMA3, "raw": RAW}
# a file name with one of these words is an instruction-tuned model (Gemma's "-it", "-Instruct", "-chat")
_TUNED = re.compile(r"(?:^|[^a-z])(?:it|instruct|chat|sft|dpo|rlhf)(?:[^a-z]|$)", re.IGNORECASE)
# a special token that marks a family, most specific first
FAMILY_TOKENS = (("gemma", "<start_of_turn>"), ("llama3", "<|start_header_id|>"))


def family_of(tokenizer) -> str:
    """The built-in template's name for this vocab: the first family whose marker is one special token."""
    for name, marker in FAMILY_TOKENS:
        ids = tokenizer.tokenize(marker, special=True)
        if len(ids) == 1 and ids != tokenizer.tokenize(marker, special=False):
            return name
    return "chatml"


def template_for_file(path) -> str | None:
    """None when the GGUF at ``path`` carries its own chat template, else the built-in family template
    a chat on it uses (read from its vocab: a vocab-only load)."""
    from .ggufload import read_model
    from .tokenizer import Tokenizer
    if read_model(path).metadata.get("tokenizer.chat_template"):
        return None
    tok = Tokenizer(path)
    try:
        return family_of(tok)
    finally:
        tok.close()


def looks_like_base_model(name: str, has_template: bool) -> bool:
    """A file with no chat template and no instruct / it / chat in its name: likely a base model, which
    continues text rather than answering turns."""
    return not has_template and not _TUNED.search(name)


def resolve_choice(choice: str) -> tuple[str, str]:
    """``--chat-template NAME|FILE``: (name shown, jinja2 source).

    Raises:
        ValueError: neither a built-in name nor a readable file (the message lists the names).
    """
    if choice in BUILTIN:
        return f"{choice} (built in, --chat-template)", BUILTIN[choice]
    path = Path(choice)
    try:
        return f"{path.name} (--chat-template)", path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"--chat-template {choice}: not one of {', '.join(BUILTIN)} and not a readable "
                         f"file ({e.strerror if isinstance(e, OSError) else 'not UTF-8'})") from None
