"""``pull`` against a local Hub stand-in (tests/hf_server.py): huggingface_hub does the talking."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pytest

from edgechat.app import manage
from edgechat.models import catalog, local
from edgechat.models.pull import pull
from edgechat.models.resolve import resolve
from edgechat.runtime.errors import EdgechatError, ModelNotFound
from hf_server import HubServer, write_tiny_gguf

REPO = "edgechat-test/Tiny-GGUF"
MAIN = "Tiny-Q4_K_M.gguf"
OTHER = "Tiny-Q8_0.gguf"


@pytest.fixture(scope="module")
def gguf_bytes(tmp_path_factory) -> dict[str, bytes]:
    d = tmp_path_factory.mktemp("ggufs")
    return {MAIN: write_tiny_gguf(d / MAIN, qtype="F32").read_bytes(),          # ~1.1 MiB
            OTHER: write_tiny_gguf(d / OTHER, qtype="Q8_0").read_bytes()}


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A private HF cache and edgechat home; online; the hub's import-time offline flag cleared."""
    from huggingface_hub import constants
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("EDGECHAT_HOME", str(tmp_path / "home"))
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return tmp_path


@pytest.fixture
def hub(env, gguf_bytes, monkeypatch):
    files = dict(gguf_bytes, **{"README.md": b"# tiny\n"})
    with HubServer({REPO: files}) as server:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


def _entry(monkeypatch, sha256: dict | None = None, pattern: str = "Tiny-{quant}.gguf") -> catalog.CatalogEntry:
    entry = catalog.CatalogEntry("tiny-test", REPO, pattern, "test model", sha256=sha256 or {})
    monkeypatch.setitem(catalog.CATALOG, entry.name, entry)
    return entry


class RecordingBar:
    """A tqdm stand-in that records what huggingface_hub reports."""

    bars: list["RecordingBar"] = []

    def __init__(self, *args, total=None, initial=0, **kwargs):
        self.total, self.n = total, initial
        RecordingBar.bars.append(self)

    def update(self, n=1):
        self.n += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def close(self):
        pass


def test_pull_catalog_name_downloads_with_progress_and_registers(hub, gguf_bytes, monkeypatch):
    _entry(monkeypatch)
    RecordingBar.bars = []
    r = pull("tiny-test", tqdm_class=RecordingBar)
    assert (r.name, r.repo, r.file, r.size) == ("tiny-test", REPO, MAIN, len(gguf_bytes[MAIN]))
    with open(r.path, "rb") as f:
        assert f.read() == gguf_bytes[MAIN]
    assert str(local.hub_cache_dir()) in r.path                     # in the private HF cache
    assert [(b.total, b.n) for b in RecordingBar.bars] == [(len(gguf_bytes[MAIN]),) * 2]
    assert local.load_registry()["tiny-test"]["path"] == r.path
    listed = {m.name: m for m in local.list_models()}
    assert listed["tiny-test"].source == "registered" and listed["tiny-test"].native
    assert [g["range"] for g in hub.gets(MAIN)] == [None]


def test_pull_resumes_after_dropped_connection(hub, gguf_bytes, monkeypatch):
    """The server closes the first GET halfway; huggingface_hub retries with a Range request."""
    from huggingface_hub import constants
    # the hub keeps what it has written in DOWNLOAD_CHUNK_SIZE (10 MiB) pieces; a real GGUF is many
    # of them: shrink the piece so this 1 MiB file is many too
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 64 << 10)
    _entry(monkeypatch)
    hub.drop_first.add(MAIN)
    r = pull("tiny-test")
    data = gguf_bytes[MAIN]
    with open(r.path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == hashlib.sha256(data).hexdigest()
    ranges = [g["range"] for g in hub.gets(MAIN)]
    assert len(ranges) == 2 and ranges[0] is None, ranges
    start = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < start < len(data), ranges
    print(f"resumed at byte {start} of {len(data)}")


def test_pull_verifies_known_sha256(hub, gguf_bytes, monkeypatch):
    _entry(monkeypatch, sha256={"Q4_K_M": hashlib.sha256(gguf_bytes[MAIN]).hexdigest()})
    r = pull("tiny-test")
    assert r.sha256 == hashlib.sha256(gguf_bytes[MAIN]).hexdigest()
    assert local.load_registry()["tiny-test"]["sha256"] == r.sha256


def test_pull_wrong_sha256_fails_and_leaves_no_file(hub, monkeypatch):
    _entry(monkeypatch, sha256={"Q4_K_M": "0" * 64})
    with pytest.raises(EdgechatError, match="sha256 mismatch") as err:
        pull("tiny-test")
    assert "\n" not in str(err.value)
    repo_dir = local.hub_cache_dir() / "models--edgechat-test--Tiny-GGUF"
    assert not [p for p in repo_dir.rglob("*") if p.is_file() or p.is_symlink()
                if p.parent.name in ("blobs", "snapshots") or p.suffix == ".gguf"]
    assert "tiny-test" not in local.load_registry()
    assert "tiny-test" not in {m.name for m in local.list_models()}


def test_pull_missing_file_is_a_clear_404(hub):
    with pytest.raises(ModelNotFound) as err:
        pull(REPO, file="nope.gguf")
    assert str(err.value) == f"{REPO} has no file nope.gguf (404)"


def test_pull_missing_repo_is_one_line(hub):
    with pytest.raises(ModelNotFound, match="repository edgechat-test/absent not found") as err:
        pull("edgechat-test/absent", file="x.gguf")
    assert "\n" not in str(err.value)


def test_pull_repo_lists_files_and_picks_quant(hub, gguf_bytes):
    assert pull(REPO).file == MAIN                                  # default Q4_K_M
    r = pull(REPO, quant="q8_0")
    assert r.file == OTHER and r.name == "tiny-q8_0"
    with pytest.raises(ModelNotFound, match=r"no Q5_K_M GGUF \(it has: Q4_K_M, Q8_0\)"):
        pull(REPO, quant="Q5_K_M")
    assert {m.name for m in local.list_models()} >= {"tiny-q4_k_m", "tiny-q8_0"}
    assert resolve("tiny-q8_0") == Path(r.path)


def test_pull_catalog_falls_back_to_listing_when_filename_differs(hub, monkeypatch):
    _entry(monkeypatch, pattern="tiny-other-naming-{quant}.gguf")
    assert pull("tiny-test").file == MAIN


def test_pull_offline_uses_cache_or_says_why(hub, monkeypatch):
    _entry(monkeypatch)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(EdgechatError, match="not in the cache and HF_HUB_OFFLINE is set"):
        pull("tiny-test")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    first = pull("tiny-test")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    n = len(hub.requests)
    assert pull("tiny-test").path == first.path and len(hub.requests) == n   # no network
    monkeypatch.delitem(catalog.CATALOG, "tiny-test")
    with pytest.raises(EdgechatError, match="cannot list .* with HF_HUB_OFFLINE set: pass --file"):
        pull(REPO)                                                  # listing needs the network


def test_pull_unknown_name(env):
    with pytest.raises(ModelNotFound, match="unknown model 'nosuch'"):
        pull("nosuch")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="edgechat")
    manage.add_parsers(parser.add_subparsers(dest="command"))
    return manage.run(parser.parse_args(argv))


def test_pull_command_prints_result_and_one_line_errors(hub, monkeypatch, capsys):
    _entry(monkeypatch)
    assert _run(["pull", "tiny-test"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"tiny-test: {REPO}/{MAIN}") and "edgechat -m tiny-test" in out
    assert _run(["pull", REPO, "--file", "nope.gguf"]) == 1
    err = capsys.readouterr().err
    assert err == f"edgechat: {REPO} has no file nope.gguf (404)\n"
