"""Download a GGUF from the Hugging Face Hub into its cache, verify it, and register it.

huggingface_hub does the transfer: its progress bar, its retry with a ``Range`` request when a
connection drops midway, ``HF_ENDPOINT``, ``HF_HUB_OFFLINE``, ``HF_TOKEN``. Both env variables are
read at call time here, so they work even when set after the hub was imported. Before the hub is
asked, one bounded connection attempt (``netcheck``) says whether it can be reached: with no network
a cached file is used, or the pull fails in seconds with one line instead of the hub's retries.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..runtime.errors import EdgechatError, ModelNotFound
from . import catalog, local
from .netcheck import unreachable

_HASH_CHUNK = 1 << 20


class FileNotOnHub(ModelNotFound):
    """The repo exists but has no such file (HTTP 404)."""


@dataclass
class PullResult:
    """What ``pull`` fetched and registered."""

    name: str
    path: str
    repo: str
    file: str
    size: int
    sha256: str | None = None        # the verified digest, when the catalog knows one


def _endpoint() -> str | None:
    return (os.environ.get("HF_ENDPOINT") or "").rstrip("/") or None


def _no_network() -> str | None:
    """Why the hub cannot be reached now (None: it can, or HF_HUB_OFFLINE asks not to try)."""
    from huggingface_hub import constants
    return None if _offline() else unreachable(_endpoint() or constants.ENDPOINT)


def _offline() -> bool:
    from huggingface_hub import constants
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().upper() in ("1", "ON", "YES", "TRUE") or constants.is_offline_mode()


def _hub_error(e: Exception, repo: str, filename: str | None) -> EdgechatError:
    """A one-line edgechat error for a huggingface_hub exception."""
    from huggingface_hub import errors
    where = _endpoint() or "the Hugging Face Hub"
    if isinstance(e, ValueError) and e.__cause__ is not None:    # "force download failed": say why
        return _hub_error(e.__cause__, repo, filename)
    if isinstance(e, errors.GatedRepoError):
        return EdgechatError(f"{repo} is gated: accept its license on the Hub, then log in (hf auth login)")
    if isinstance(e, errors.RepositoryNotFoundError):
        return ModelNotFound(f"repository {repo} not found on {where} (or it is private)")
    if isinstance(e, errors.RevisionNotFoundError):
        return ModelNotFound(f"{repo}: revision not found on {where}")
    if isinstance(e, errors.RemoteEntryNotFoundError):
        return FileNotOnHub(f"{repo} has no file {filename} (404)")
    if isinstance(e, errors.LocalEntryNotFoundError):
        if _offline():
            return EdgechatError(f"{repo}/{filename} is not in the cache and HF_HUB_OFFLINE is set")
        return EdgechatError(f"cannot reach {where} and {repo}/{filename} is not in the cache")
    if isinstance(e, errors.HfHubHTTPError) and e.response is not None:
        return EdgechatError(f"{repo}: HTTP {e.response.status_code} from {where}")
    first = (str(e).strip().splitlines() or [""])[0]
    return EdgechatError(f"{repo}: talking to {where} failed: {type(e).__name__}: {first}")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def repo_ggufs(repo: str) -> list[str]:
    """The ``.gguf`` files in ``repo`` (needs the network)."""
    from huggingface_hub import HfApi
    if _offline():
        raise EdgechatError(f"cannot list {repo} with HF_HUB_OFFLINE set: pass --file")
    why = _no_network()
    if why:
        raise EdgechatError(f"cannot list {repo}: {why} (no network?)")
    try:
        files = HfApi(endpoint=_endpoint()).list_repo_files(repo)
    except Exception as e:                    # the hub's and its HTTP library's: one line for the user
        raise _hub_error(e, repo, None) from None
    return sorted(f for f in files if f.lower().endswith(".gguf"))


def _choose(repo: str, quant: str) -> str:
    files = repo_ggufs(repo)
    chosen = catalog.pick_file(files, quant)
    if chosen is None:
        have = sorted({q for f in files if (q := catalog.quant_of(f))})
        raise ModelNotFound(f"{repo} has no {quant} GGUF (it has: {', '.join(have) or 'no .gguf files'})")
    return chosen


def _download(repo: str, filename: str, force: bool, tqdm_class) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub import errors
    offline = _offline()
    if force and offline:
        raise EdgechatError("--force needs the network, and HF_HUB_OFFLINE is set")
    why = _no_network()
    if force and why:
        raise EdgechatError(f"--force needs the network: {why}")
    try:
        return Path(hf_hub_download(repo, filename, endpoint=_endpoint(),
                                    cache_dir=local.hub_cache_dir(), force_download=force,
                                    local_files_only=offline or bool(why), tqdm_class=tqdm_class))
    except Exception as e:                    # the hub's and its HTTP library's: one line for the user
        if why and isinstance(e, errors.LocalEntryNotFoundError):
            raise EdgechatError(f"{why} (no network?), and {repo}/{filename} is not in the cache") from None
        raise _hub_error(e, repo, filename) from None


def _verify(path: Path, expected: str, filename: str) -> None:
    """Raise (and remove the file from the cache) unless ``path`` hashes to ``expected``."""
    blob = Path(os.path.realpath(path))
    actual = sha256_file(blob)
    if actual == expected.lower():
        return
    for p in (path, blob):                    # the snapshot link, then the blob it points to
        p.unlink(missing_ok=True)
    raise EdgechatError(f"sha256 mismatch for {filename}: expected {expected[:12]}…, got {actual[:12]}…;"
                        " the file was removed from the cache")


def pull(target: str, file: str | None = None, quant: str | None = None, force: bool = False,
         tqdm_class=None) -> PullResult:
    """Fetch a catalog model or a GGUF from a Hub repo, verify it, and register it.

    Args:
        target: a catalog name (``qwen2.5-0.5b``) or a repo id (``owner/name``).
        file: the file in the repo; default: the catalog's file, or the repo's file for ``quant``.
        quant: the quant to pick (default ``Q4_K_M``); ignored when ``file`` is given.
        force: download again even when the file is cached.
        tqdm_class: progress bar class handed to huggingface_hub (default: its own bar).

    Returns:
        A ``PullResult``; the model is registered under ``result.name``.

    Raises:
        ModelNotFound: unknown name, repo or file (404), or no file for the quant.
        EdgechatError: network, offline, or sha256 mismatch (the bad file is removed).
    """
    quant = (quant or catalog.DEFAULT_QUANT).upper()
    entry = catalog.get(target) or catalog.by_repo(target)
    if entry is None and target.count("/") != 1:
        names = ", ".join(catalog.CATALOG)
        raise ModelNotFound(f"unknown model {target!r}: use a catalog name ({names}) or a repo id owner/name")
    repo = entry.repo if entry else target.strip("/")
    filename = file or (entry.filename(quant) if entry else _choose(repo, quant))
    try:
        path = _download(repo, filename, force, tqdm_class)
    except FileNotOnHub:
        if file or entry is None:             # the user named the file, or it came from the listing
            raise
        filename = _choose(repo, quant)       # the publisher named it differently: match the quant
        path = _download(repo, filename, force, tqdm_class)
    expected = entry.digest(catalog.quant_of(filename) or quant) if entry else None
    if expected:
        _verify(path, expected, filename)
    name = local.cache_name(repo, filename)
    local.register(name, path, repo=repo, file=filename, sha256=expected)
    return PullResult(name=name, path=str(path), repo=repo, file=filename,
                      size=os.path.getsize(path), sha256=expected)
