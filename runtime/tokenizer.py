"""The model's tokenizer: llama.cpp loaded vocab-only, plus a UTF-8-safe incremental decoder.

llama.cpp is the tokenizer for both backends, so token ids always match the GGUF's own vocab
(BPE pre-tokenizers, SentencePiece, byte fallback) without a second implementation here.
"""
from __future__ import annotations

import codecs
import ctypes
import os
from functools import lru_cache
from typing import Iterable, Sequence

from .errors import ModelNotFound
from .llama_lib import clear_error, first_error, lib

# token pieces kept decoded: a reply's tokens are mostly common ones, and a miss is one llama.cpp call
PIECE_CACHE = 4096
# Tokens that end a turn in the chat formats we know, when present in a vocab as one special token.
_EOT_NAMES = ("<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|endoftext|>", "<|end_of_text|>",
              "<end_of_turn>", "<|end|>", "</s>")


class Tokenizer:
    """Vocab-only llama.cpp model: text <-> token ids for one GGUF.

    Args:
        model_path: path of a GGUF file; only its tokenizer metadata is read.
    """

    def __init__(self, model_path: str | os.PathLike):
        llama_cpp = lib()
        self._lib = llama_cpp
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise ModelNotFound(f"no such model file: {path}")
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        clear_error()
        self._model = llama_cpp.llama_model_load_from_file(path.encode("utf-8"), params)
        if not self._model:
            self._model = None
            why = first_error()
            raise ModelNotFound(f"llama.cpp could not load the vocab of {path}" + (f": {why}" if why else ""))
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.path = path
        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        # (id, special) -> bytes: bounded, so a long conversation does not grow it toward the vocab size
        self._cached_piece = lru_cache(maxsize=PIECE_CACHE)(self._piece)
        self._eot_ids = self._find_eot_ids()

    # -- properties ---------------------------------------------------------------------------

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def bos_id(self) -> int:
        """BOS token id, or -1 when the vocab has none."""
        return int(self._lib.llama_vocab_bos(self._vocab))

    @property
    def eos_id(self) -> int:
        """EOS token id, or -1 when the vocab has none."""
        return int(self._lib.llama_vocab_eos(self._vocab))

    @property
    def eot_ids(self) -> frozenset[int]:
        """Ids that end an assistant turn: EOS, EOT and the known end-of-turn tokens of the vocab."""
        return self._eot_ids

    @property
    def add_bos(self) -> bool:
        """Whether a prompt should start with BOS (GGUF ``tokenizer.ggml.add_bos_token``, or
        llama.cpp's default for the tokenizer type when the key is absent)."""
        return bool(self._lib.llama_vocab_get_add_bos(self._vocab))

    def metadata(self, key: str) -> str | None:
        """A GGUF metadata value as a string (arrays come back abridged), or None when absent."""
        lib = self._lib
        size = 4096
        while True:
            buf = ctypes.create_string_buffer(size)
            n = lib.llama_model_meta_val_str(self._model, key.encode("utf-8"), buf, size)
            if n < 0:
                return None
            if n < size:
                return buf.raw[:n].decode("utf-8", "replace")
            size = n + 1

    def token_text(self, token_id: int, special: bool = True) -> str:
        """The text of one token (special tokens rendered by default), e.g. ``"<|im_end|>"``;
        "" for a negative id (a vocab without BOS or EOS reports -1)."""
        if token_id < 0:
            return ""
        return self.token_bytes(token_id, special).decode("utf-8", "replace")

    def is_control(self, token_id: int) -> bool:
        return bool(self._lib.llama_vocab_is_control(self._vocab, token_id))

    # -- text <-> ids -------------------------------------------------------------------------

    def tokenize(self, text: str, special: bool = False) -> list[int]:
        """Text to ids; no BOS is added.

        Args:
            text: the text.
            special: parse special-token strings (``"<|im_end|>"``) into their ids. False (the
                default) keeps them as plain text, which is what user-typed text needs.

        Returns:
            token ids.
        """
        data = text.encode("utf-8")
        if not data:
            return []
        lib = self._lib
        cap = len(data) + 8
        while True:
            buf = (lib.llama_token * cap)()
            n = lib.llama_tokenize(self._vocab, data, len(data), buf, cap, False, special)
            if n >= 0:
                return list(buf[:n])
            if -n <= cap:
                raise RuntimeError(f"llama_tokenize failed ({n}) on {len(data)} bytes")
            cap = -n

    def token_bytes(self, token_id: int, special: bool = False) -> bytes:
        """The bytes of one token; control tokens are empty unless ``special``.

        A byte-fallback token or a byte-level BPE token can be a part of a UTF-8 character.
        """
        if not 0 <= token_id < self._n_vocab:
            raise ValueError(f"token id {token_id} out of range 0..{self._n_vocab - 1}")
        return self._cached_piece(token_id, special)

    def _piece(self, token_id: int, special: bool) -> bytes:
        size = 64
        while True:
            buf = ctypes.create_string_buffer(size)
            n = self._lib.llama_token_to_piece(self._vocab, token_id, buf, size, 0, special)
            if n >= 0:
                return buf.raw[:n]
            size = -n

    def detokenize(self, ids: Iterable[int], special: bool = False) -> str:
        """Ids to text: the tokens' bytes joined, then decoded (invalid UTF-8 becomes U+FFFD)."""
        return b"".join(self.token_bytes(i, special) for i in ids).decode("utf-8", "replace")

    # -- internals ----------------------------------------------------------------------------

    def _single_special(self, name: str) -> int | None:
        """The id of ``name`` when the vocab holds it as one special token."""
        ids = self.tokenize(name, special=True)
        if len(ids) == 1 and self.token_bytes(ids[0], special=True) == name.encode("utf-8"):
            if ids != self.tokenize(name, special=False):
                return ids[0]
        return None

    def _find_eot_ids(self) -> frozenset[int]:
        lib = self._lib
        found = {int(lib.llama_vocab_eos(self._vocab)), int(lib.llama_vocab_eot(self._vocab))}
        for name in _EOT_NAMES:
            tid = self._single_special(name)
            if tid is not None:
                found.add(tid)
        return frozenset(i for i in found if 0 <= i < self._n_vocab)

    @property
    def closed(self) -> bool:
        return getattr(self, "_model", None) is None

    def close(self) -> None:
        """Free the llama.cpp vocab."""
        if not self.closed:
            self._lib.llama_model_free(self._model)
            self._model = None

    def __del__(self):
        try:
            self.close()
        except Exception:   # interpreter shutdown: the library may be gone already
            pass

    def __repr__(self) -> str:
        return f"Tokenizer({self.path!r}, n_vocab={self._n_vocab})"


class IncrementalDecoder:
    """Token ids in, complete text out: never splits a UTF-8 character.

    Bytes of an unfinished character are held back until the next token completes them; bytes
    that can never form a character become U+FFFD at once. The concatenation of every ``feed``
    and the final ``flush`` equals ``tokenizer.detokenize(all_ids, special)``.

    Args:
        tokenizer: the model's tokenizer.
        special: render control tokens as text (off by default: they are hidden).
    """

    def __init__(self, tokenizer: Tokenizer, special: bool = False):
        self._tok = tokenizer
        self._special = special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Add one token; returns the text it completes (possibly "")."""
        return self._utf8.decode(self._tok.token_bytes(token_id, self._special))

    def feed_many(self, ids: Sequence[int]) -> str:
        return "".join(self.feed(i) for i in ids)

    def pending(self) -> bytes:
        """Bytes held back: the start of a character not yet complete."""
        return self._utf8.getstate()[0]

    def flush(self) -> str:
        """End of stream: held-back bytes come out as U+FFFD; the decoder is then empty."""
        return self._utf8.decode(b"", final=True)

    def reset(self) -> None:
        self._utf8.reset()
