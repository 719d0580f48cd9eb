"""Tokenizer and incremental decoder on the default model's real vocab (llama.cpp, vocab-only).

The expectation for token ids is independent of llama.cpp: a small byte-level BPE written here
(GPT-2's byte-to-unicode map, its pre-tokenizer on ASCII text, the merge ranks) over the vocab and
merges read from the GGUF with the ``gguf`` package. Elsewhere: round trips and special-token handling.
"""
import re

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


# GPT-2's pre-tokenizer, ASCII only (SmolLM2's "smollm" pre-tokenizer adds one-digit numbers: no digits
# in the texts below)
PRETOKENIZE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[^\sA-Za-z0-9]+|\s+(?!\S)|\s+""")
ASCII_TEXTS = [
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "It's what they'd call a well-known problem; isn't it?",
    "code: def f(x):\n    return x ** y  # ok",
    "tabs\tand\nnewlines\n\n  spaces",
]


def byte_to_unicode() -> dict[int, str]:
    """GPT-2's map of the 256 byte values to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    extra = [b for b in range(256) if b not in keep]
    return {**{b: chr(b) for b in keep}, **{b: chr(256 + i) for i, b in enumerate(extra)}}


class ReferenceBPE:
    """Byte-level BPE from the GGUF's vocab and merges (read with the gguf package, not llama.cpp)."""

    def __init__(self, path):
        import gguf
        r = gguf.GGUFReader(str(path))

        def strings(key):
            f = r.fields[key]
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        self.ids = {t: i for i, t in enumerate(strings("tokenizer.ggml.tokens"))}
        self.rank = {tuple(m.split(" ", 1)): i for i, m in enumerate(strings("tokenizer.ggml.merges"))}
        self.b2u = byte_to_unicode()

    def encode(self, text: str) -> list[int]:
        out = []
        for word in PRETOKENIZE.findall(text):
            out += [self.ids[p] for p in self._merge("".join(self.b2u[b] for b in word.encode()))]
        return out

    def _merge(self, word: str) -> list[str]:
        parts = list(word)
        while len(parts) > 1:
            ranked = [(self.rank.get(pair, 1 << 30), i) for i, pair in enumerate(zip(parts, parts[1:]))]
            best, i = min(ranked)
            if best == 1 << 30:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return parts


@pytest.fixture(scope="module")
def reference(default_model):
    return ReferenceBPE(default_model)


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


def test_reference_bpe_knows_single_tokens(reference):
    # a word that is one vocab entry is one id, by lookup; "Ġ" is the byte-level space
    assert reference.encode("Hello") == [reference.ids["Hello"]]
    assert reference.encode(" world") == [reference.ids["Ġworld"]]


@pytest.mark.parametrize("text", ASCII_TEXTS)
def test_ids_match_an_independent_bpe(tok, reference, text):
    ids = tok.tokenize(text)
    assert ids == reference.encode(text)
    assert tok.detokenize(ids) == text


def test_known_ids_of_fixed_strings(tok, reference):
    assert tok.tokenize("Hello, world!") == [reference.ids["Hello"], reference.ids[","],
                                             reference.ids["Ġworld"], reference.ids["!"]]
    assert tok.tokenize("<|im_start|>", special=True) == [1]


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tok, text):
    ids = tok.tokenize(text)
    assert ids and tok.detokenize(ids) == text
    assert b"".join(tok.token_bytes(i) for i in ids) == text.encode()


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
