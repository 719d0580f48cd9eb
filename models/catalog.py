"""A small catalog of good small chat GGUFs on the Hugging Face Hub: name -> repo, file per quant.

Filenames follow each publisher's pattern (``{quant}`` is the quant name, e.g. ``Q4_K_M``); when a
repo names a file differently, ``pull`` falls back to listing the repo and matching the quant.
``sha256`` holds digests known for certain, per quant; ``pull`` verifies them after download.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class CatalogEntry:
    """One known model: where it lives on the Hub and how its files are named."""

    name: str
    repo: str
    pattern: str                                   # filename with a {quant} placeholder
    about: str = ""
    lowercase: bool = False                        # the publisher writes quants in lower case
    sha256: dict[str, str] = field(default_factory=dict)   # quant -> hex digest, known ones only

    def filename(self, quant: str = DEFAULT_QUANT) -> str:
        """The file for ``quant`` in this entry's repo."""
        return self.pattern.format(quant=quant.lower() if self.lowercase else quant)

    def digest(self, quant: str = DEFAULT_QUANT) -> str | None:
        """The known sha256 of the ``quant`` file, or None."""
        return self.sha256.get(quant.upper())


def _entries(*entries: CatalogEntry) -> dict[str, CatalogEntry]:
    return {e.name: e for e in entries}


CATALOG: dict[str, CatalogEntry] = _entries(
    CatalogEntry("smollm2-135m", "bartowski/SmolLM2-135M-Instruct-GGUF",
                 "SmolLM2-135M-Instruct-{quant}.gguf", "SmolLM2 135M Instruct (packaged default)"),
    CatalogEntry("smollm2-360m", "bartowski/SmolLM2-360M-Instruct-GGUF",
                 "SmolLM2-360M-Instruct-{quant}.gguf", "SmolLM2 360M Instruct"),
    CatalogEntry("smollm2-1.7b", "bartowski/SmolLM2-1.7B-Instruct-GGUF",
                 "SmolLM2-1.7B-Instruct-{quant}.gguf", "SmolLM2 1.7B Instruct"),
    CatalogEntry("qwen2.5-0.5b", "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                 "qwen2.5-0.5b-instruct-{quant}.gguf", "Qwen2.5 0.5B Instruct", lowercase=True),
    CatalogEntry("qwen2.5-1.5b", "Qwen/Qwen2.5-1.5B-Instruct-GGUF",
                 "qwen2.5-1.5b-instruct-{quant}.gguf", "Qwen2.5 1.5B Instruct", lowercase=True),
    CatalogEntry("llama3.2-1b", "bartowski/Llama-3.2-1B-Instruct-GGUF",
                 "Llama-3.2-1B-Instruct-{quant}.gguf", "Llama 3.2 1B Instruct"),
    CatalogEntry("qwen3-0.6b", "unsloth/Qwen3-0.6B-GGUF",
                 "Qwen3-0.6B-{quant}.gguf", "Qwen3 0.6B"),
    CatalogEntry("gemma3-270m", "unsloth/gemma-3-270m-it-GGUF",
                 "gemma-3-270m-it-{quant}.gguf", "Gemma 3 270M it (native engine; Q4_K_M, Q4_0)"),
    CatalogEntry("gemma3-1b", "unsloth/gemma-3-1b-it-GGUF",
                 "gemma-3-1b-it-{quant}.gguf", "Gemma 3 1B it (native engine; Q4_K_M, Q4_0)"),
)


def get(name: str) -> CatalogEntry | None:
    """The catalog entry called ``name`` (case-insensitive), or None."""
    return CATALOG.get(name.strip().lower())


def by_repo(repo: str) -> CatalogEntry | None:
    """The catalog entry whose repo is ``repo`` (case-insensitive), or None."""
    repo = repo.lower()
    return next((e for e in CATALOG.values() if e.repo.lower() == repo), None)


_QUANT_RE = re.compile(r"(?<![A-Za-z0-9])(I?Q\d(?:_[A-Z0-9]+)*|F16|BF16|F32)(?![A-Za-z0-9])", re.I)


def quant_of(filename: str) -> str | None:
    """The quant named in a GGUF filename (``...-Q4_K_M.gguf`` -> ``Q4_K_M``), upper case, or None."""
    stem = filename.rsplit("/", 1)[-1]
    stem = stem[:-5] if stem.lower().endswith(".gguf") else stem
    found = _QUANT_RE.findall(stem.replace(".", "-"))
    return found[-1].upper() if found else None


def pick_file(files: list[str], quant: str = DEFAULT_QUANT) -> str | None:
    """The ``.gguf`` file among ``files`` whose quant is ``quant``; split files (-00001-of-) excluded."""
    want = quant.upper()
    hits = [f for f in files if f.lower().endswith(".gguf") and "-of-" not in f
            and quant_of(f) == want]
    return min(hits, key=lambda f: (f.count("/"), len(f))) if hits else None
