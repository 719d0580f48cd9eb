"""A real ``edgechat serve`` process on a free local port, for tests and scripts/serve_bench.py."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx

START_TIMEOUT_S = 120     # loading the model on a loaded 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``edgechat serve`` started with ``args``; ``url`` is its /v1 base. Use as a context manager."""

    def __init__(self, *args: str, api_key: str | None = None):
        self.port = free_port()
        self.api_key = api_key
        cmd = [sys.executable, "-m", "edgechat.app.cli", "serve", "--port", str(self.port), *args]
        if api_key:
            cmd += ["--api-key", api_key]
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self._lines: list[str] = []             # its stderr, read as it comes (a full pipe would block it)
        self._changed = threading.Condition()
        threading.Thread(target=self._drain, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.port}"
        self.url = self.base + "/v1"
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc.wait()
                raise RuntimeError(f"edgechat serve exited {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("edgechat serve did not answer /health in time")

    def _drain(self) -> None:
        for line in self.proc.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._lines.append(None)            # end of output
            self._changed.notify_all()

    def log(self, start: int = 0) -> str:
        """What the server wrote to stderr (from line ``start``); complete once it has exited."""
        with self._changed:
            if self.proc.poll() is not None:
                self._changed.wait_for(lambda: self._lines and self._lines[-1] is None, timeout=10)
            return "".join(line for line in self._lines[start:] if line is not None)

    def log_lines(self) -> int:
        with self._changed:
            return len(self._lines)

    def wait_log(self, text: str, start: int = 0, timeout: float = 60) -> str:
        """Wait until stderr (from line ``start``) holds ``text``; returns those lines."""
        with self._changed:
            self._changed.wait_for(lambda: any(line and text in line for line in self._lines[start:]), timeout)
        out = self.log(start)
        assert text in out, f"{text!r} not logged within {timeout} s: {out[-2000:]}"
        return out

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def post(self, path: str, body, **kw) -> httpx.Response:
        kw.setdefault("timeout", 300)
        return httpx.post(self.url + path, json=body, headers=self.headers(), **kw)

    def health(self) -> dict:
        return httpx.get(self.base + "/health", timeout=10).json()

    def rss(self) -> int:
        import psutil
        return psutil.Process(self.proc.pid).memory_info().rss

    def interrupt(self, timeout: float = 30) -> int:
        """Ctrl-C; returns the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
