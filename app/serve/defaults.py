"""``edgechat serve``'s defaults, in one table: the command line, the server and ``doctor`` read them."""
from __future__ import annotations

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")      # names of this machine, always answered
DEFAULTS = {"host": "127.0.0.1", "port": 8080, "cache_slots": 4, "parallel": None, "queue_size": 16,
            "max_prompt_tokens": 131072, "max_body_mb": 16, "allowed_hosts": [], "allowed_origins": [],
            "max_tokens_limit": None, "request_timeout": 600.0, "header_timeout": 10.0, "body_timeout": 30.0,
            "report_cache_hits": False}
PARALLEL = 4                # --parallel's default (None above): this, at most the cache slots that fit
MAX_TOKENS_PER_CTX = 4      # --max-tokens-limit's default: 4 x the window (the ring goes on past it)
