"""Tokenizer and incremental decoder on the default model's real vocab (llama.cpp, vocab-only)."""
import pytest
from hypothesis import given, settings, strategies as st

from edgechat.runtime.errors import ModelNotFound
from edgechat.runtime.tokenizer import IncrementalDecoder, Tokenizer

TEXTS = [
    "Hello, world!",
    "héllo naïve café",
    "世界 こんにちは 안녕하세요",
    "emoji 🙂👍🏽 and a flag 🇫🇷",
    "tabs\tand\nnewlines\n\n  spaces",
    "code: def f(x):\n    return x ** 2  # ok",
]


@pytest.fixture(scope="module")
def tok(tokenizer):
    """The default model's tokenizer (conftest's session fixture)."""
    return tokenizer


@pytest.fixture(scope="module")
def oracle(default_model):
    """llama-cpp-python's own high-level tokenizer on the same file."""
    import llama_cpp
    llm = llama_cpp.Llama(model_path=str(default_model), vocab_only=True, verbose=False)
    yield llm
    llm.close()


def test_vocab_facts(tok):
    # SmolLM2: <|endoftext|>=0, <|im_start|>=1 (BOS), <|im_end|>=2 (EOS); add_bos_token false
    assert tok.n_vocab == 49152
    assert (tok.bos_id, tok.eos_id) == (1, 2)
    assert tok.add_bos is False
    assert tok.eot_ids == {0, 2}
    assert tok.token_text(2) == "<|im_end|>"
    assert tok.token_bytes(2) == b""                  # control tokens hidden unless special
    assert tok.token_bytes(2, special=True) == b"<|im_end|>"
    assert tok.token_text(-1) == ""
    assert tok.metadata("tokenizer.ggml.model") == "gpt2"
    assert tok.metadata("no.such.key") is None


def test_chat_template_metadata_is_whole(tok):
    text = tok.metadata("tokenizer.chat_template")
    assert text.startswith("{% for message in messages %}")
    assert text.endswith("{% endif %}")


@pytest.mark.parametrize("text", TEXTS)
def test_matches_llama_cpp(tok, oracle, text):
    ids = tok.tokenize(text)
    assert ids == oracle.tokenize(text.encode(), add_bos=False, special=False)
    assert tok.detokenize(ids) == text
    assert tok.detokenize(ids).encode() == oracle.detokenize(ids)


def test_no_bos_added(tok):
    assert tok.tokenize("") == []
    assert tok.tokenize("Hi")[0] != tok.bos_id


def test_special_strings_stay_text(tok):
    plain = tok.tokenize("a<|im_end|>b")
    assert 2 not in plain and len(plain) > 3
    assert tok.detokenize(plain) == "a<|im_end|>b"
    assert tok.tokenize("a<|im_end|>b", special=True) == [tok.tokenize("a")[0], 2, tok.tokenize("b")[0]]


def test_long_text(tok):
    text = "The quick brown fox jumps over the lazy dog. " * 2000
    ids = tok.tokenize(text)
    assert len(ids) > 10_000
    assert tok.detokenize(ids) == text


def test_token_bytes_out_of_range(tok):
    with pytest.raises(ValueError):
        tok.token_bytes(tok.n_vocab)


def test_missing_file(tmp_path):
    with pytest.raises(ModelNotFound):
        Tokenizer(tmp_path / "nope.gguf")


def test_not_a_gguf(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    with pytest.raises(ModelNotFound):
        Tokenizer(bad)


def _stream(tok, ids):
    dec = IncrementalDecoder(tok)
    pieces = [dec.feed(i) for i in ids]
    return pieces, dec.flush()


@pytest.mark.parametrize("text", TEXTS)
def test_decoder_never_splits_a_character(tok, text):
    ids = tok.tokenize(text)
    pieces, tail = _stream(tok, ids)
    assert "\ufffd" not in "".join(pieces)
    assert tail == ""
    assert "".join(pieces) == text


def test_decoder_holds_back_partial_character(tok):
    # byte-level BPE spells this CJK character as two tokens: 3 UTF-8 bytes split 2 + 1
    ids = tok.tokenize("世")
    assert [len(tok.token_bytes(i)) for i in ids] == [2, 1]
    dec = IncrementalDecoder(tok)
    assert dec.feed(ids[0]) == ""
    assert dec.pending() == "世".encode()[:2]
    assert dec.feed(ids[1]) == "世"
    assert dec.pending() == b""


def test_decoder_flush_replaces_unfinished(tok):
    first = tok.tokenize("世")[0]                   # 2 of 3 bytes
    dec = IncrementalDecoder(tok)
    assert dec.feed(first) == ""
    assert dec.flush() == "\ufffd"
    assert dec.flush() == ""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 49151), max_size=40))
def test_decoder_equals_detokenize_for_any_ids(tok, ids):
    # random ids: lone continuation bytes, cut characters, control tokens (hidden)
    pieces, tail = _stream(tok, ids)
    assert "".join(pieces) + tail == tok.detokenize(ids)


def test_decoder_special_renders_control_tokens(tok):
    dec = IncrementalDecoder(tok, special=True)
    assert dec.feed(2) == "<|im_end|>"
