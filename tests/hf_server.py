"""A local stand-in for the Hugging Face Hub, enough for ``hf_hub_download`` and ``list_repo_files``.

It answers what huggingface_hub 1.x/2.x asks (read from its source: ``file_download.py``,
``hf_api.list_repo_tree``, ``utils/_http.hf_raise_for_status``):

- ``HEAD|GET /{repo}/resolve/{rev}/{file}``: ``ETag`` (the sha256, as the Hub gives for LFS files),
  ``X-Repo-Commit``, ``Content-Length``, ``Accept-Ranges``; ``Range: bytes=N-`` gets a 206.
- ``GET /api/models/{repo}/tree/{rev}``: the JSON file list (``type``, ``path``, ``size``, ``oid``, ``lfs``).
- a missing file: 404 with ``X-Error-Code: EntryNotFound``; a missing repo: 401 with
  ``X-Error-Code: RepoNotFound`` (what the Hub answers, so the client raises the same errors).

``drop_first``: files whose first full GET sends half the body, then closes the connection.
The server listens on 127.0.0.1 only, on a free port, and shuts itself down after ``lifetime`` s.
"""
from __future__ import annotations

import hashlib
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np

COMMIT = hashlib.sha1(b"edgechat test commit").hexdigest()
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/]+)(?:/.*)?$")
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class HubServer:
    """``with HubServer({"owner/repo": {"a.gguf": b"..."}}) as hub: ... hub.url ... hub.requests``."""

    def __init__(self, repos: dict[str, dict[str, bytes]], drop_first=(), lifetime: float = 120):
        self.repos = repos
        self.drop_first = set(drop_first)
        self.lifetime = lifetime
        self.requests: list[dict] = []      # {"method", "path", "range"} in arrival order
        self._lock = threading.Lock()

    def __enter__(self) -> "HubServer":
        handler = type("Handler", (_Handler,), {"hub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self._timer = threading.Timer(self.lifetime, self._server.shutdown)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def gets(self, filename: str) -> list[dict]:
        """The GET requests for ``filename`` (file downloads, not the HEAD)."""
        return [r for r in self.requests if r["method"] == "GET" and r["path"].endswith("/" + filename)]

    def _record(self, method: str, path: str, rng: str | None) -> None:
        with self._lock:
            self.requests.append({"method": method, "path": path, "range": rng})

    def _take_drop(self, filename: str) -> bool:
        with self._lock:
            if filename in self.drop_first:
                self.drop_first.discard(filename)
                return True
            return False


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 15                                   # a stuck client cannot hold a thread for long
    hub: HubServer

    def log_message(self, *args) -> None:          # keep test output clean
        pass

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_GET(self) -> None:
        self._route(head=False)

    def _route(self, head: bool) -> None:
        path = urlsplit(self.path).path
        self.hub._record(self.command, unquote(path), self.headers.get("Range"))
        if m := _TREE.match(path):
            return self._tree(m["repo"], head)
        if m := _RESOLVE.match(path):
            return self._resolve(m["repo"], unquote(m["file"]), head)
        self._reply(404, b"not found", {})

    def _reply(self, status: int, body: bytes, headers: dict, head: bool = False) -> None:
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _missing_repo(self, repo: str, head: bool) -> None:
        self._reply(401, b'{"error":"Repository not found"}',
                    {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found",
                     "Content-Type": "application/json"}, head)

    def _tree(self, repo: str, head: bool) -> None:
        files = self.hub.repos.get(repo)
        if files is None:
            return self._missing_repo(repo, head)
        listing = [{"type": "file", "path": name, "size": len(data),
                    "oid": hashlib.sha1(data).hexdigest(),
                    "lfs": {"oid": hashlib.sha256(data).hexdigest(), "size": len(data), "pointerSize": 134}}
                   for name, data in sorted(files.items())]
        self._reply(200, json.dumps(listing).encode(), {"Content-Type": "application/json"}, head)

    def _resolve(self, repo: str, filename: str, head: bool) -> None:
        files = self.hub.repos.get(repo)
        if files is None:
            return self._missing_repo(repo, head)
        data = files.get(filename)
        if data is None:
            return self._reply(404, b"Entry not found", {"X-Error-Code": "EntryNotFound",
                                                         "X-Error-Message": "Entry not found",
                                                         "X-Repo-Commit": COMMIT}, head)
        headers = {"ETag": f'"{hashlib.sha256(data).hexdigest()}"', "X-Repo-Commit": COMMIT,
                   "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        start, status = 0, 200
        if (rng := _RANGE.match(self.headers.get("Range", ""))) and not head:
            start = int(rng[1])
            end = int(rng[2]) if rng[2] else len(data) - 1
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start:end + 1], 206
        if not head and status == 200 and self.hub._take_drop(filename):
            return self._drop_midway(data, headers)
        self._reply(status, data, headers, head)

    def _drop_midway(self, data: bytes, headers: dict) -> None:
        """Promise the whole body, send half of it, then close the connection."""
        self.send_response(200)
        for k, v in {"Content-Length": str(len(data)), **headers}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data[:len(data) // 2])
        self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)


# ---- a tiny real GGUF ----------------------------------------------------------------------------

def write_tiny_gguf(path: str | Path, arch: str = "llama", qtype: str = "Q8_0", n_layer: int = 2,
              n_embd: int = 128, n_vocab: int = 256, seed: int = 0) -> Path:
    """Write a small valid GGUF: llama-family metadata, F32 norms, ``qtype`` matrices.

    Quantized tensors hold random bytes (a valid layout; the values are never run); K-quants need
    ``n_embd`` a multiple of 256. Sizes: n_embd=128, n_vocab=256, 2 layers is ~0.3 MiB with Q8_0,
    ~1.1 MiB with F32.
    """
    import gguf
    rng = np.random.default_rng(seed)
    n_head, n_head_kv, n_ff = 4, 2, 2 * n_embd
    head_dim = n_embd // n_head
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(f"tiny-{arch}-{qtype.lower()}")
    w.add_block_count(n_layer)
    w.add_context_length(512)
    w.add_embedding_length(n_embd)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_head)
    w.add_head_count_kv(n_head_kv)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_freq_base(10000.0)

    def matrix(name: str, rows: int, cols: int) -> None:
        if qtype in ("F32", "F16"):
            w.add_tensor(name, rng.standard_normal((rows, cols)).astype(np.float32 if qtype == "F32" else np.float16))
            return
        q = gguf.GGMLQuantizationType[qtype]
        block, type_size = gguf.GGML_QUANT_SIZES[q]
        w.add_tensor(name, rng.integers(0, 256, (rows, cols // block * type_size), dtype=np.uint8),
                     raw_dtype=q)

    matrix("token_embd.weight", n_vocab, n_embd)
    for i in range(n_layer):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(n_embd, np.float32))
        matrix(f"blk.{i}.attn_q.weight", n_embd, n_embd)
        matrix(f"blk.{i}.attn_k.weight", n_head_kv * head_dim, n_embd)
        matrix(f"blk.{i}.attn_v.weight", n_head_kv * head_dim, n_embd)
        matrix(f"blk.{i}.attn_output.weight", n_embd, n_embd)
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(n_embd, np.float32))
        matrix(f"blk.{i}.ffn_gate.weight", n_ff, n_embd)
        matrix(f"blk.{i}.ffn_up.weight", n_ff, n_embd)
        matrix(f"blk.{i}.ffn_down.weight", n_embd, n_ff)
    w.add_tensor("output_norm.weight", np.ones(n_embd, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return Path(path)
