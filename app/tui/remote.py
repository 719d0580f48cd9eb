"""Chats on an OpenAI-compatible server, in the TUI: where a chat runs (its settings' ``remote``: the
server's URL and model id; none: this machine), the engine host's key for it, ``/remote URL|off``, and
the server's models beside the local ones in ``/model``.

A remote chat keeps its local model (the chat's ``model``), so ``/remote off`` goes back to it. The key
is the command line's (``--remote-key`` or the environment): never in the chat's settings.
"""
from __future__ import annotations

from urllib.parse import urlsplit

REMOTE = "remote"          # a picker entry of the server's models is (REMOTE, model id)


def remote_of(chat) -> dict | None:
    """``{"url", "model"}`` of the server a chat runs on, or None (this machine)."""
    r = chat.settings.get(REMOTE) if chat else None
    return r if isinstance(r, dict) and r.get("url") else None


def from_args(args) -> dict | None:
    """The ``remote`` setting of a new chat started with ``--base-url`` (None without it)."""
    from ...runtime.remote import normalize_url
    url = getattr(args, "base_url", None)
    return {"url": normalize_url(url), "model": args.model or ""} if url else None


def local_model(args) -> str:
    """A new chat's local model: ``-m``, unless ``-m`` names the server's model (``--base-url``)."""
    return "" if getattr(args, "base_url", None) else args.model or ""


def engine_key(chat, args) -> tuple:
    """The host's key of the engine a chat runs on: (model, pin_system, kv_type, server URL or "")."""
    r = remote_of(chat)
    if r:
        return r.get("model") or "", False, "auto", r["url"]
    kv_type = chat.settings.get("kv_type") or getattr(args, "kv_type", None) or "auto"
    return chat.model, bool(chat.settings.get("pin_system")), kv_type, ""


def remember_model(app) -> None:
    """A remote chat that asked for the server's first model remembers which one it got."""
    r, engine = remote_of(app.chat), app.engine
    if r and not r.get("model") and getattr(engine, "base_url", None) == r["url"] and engine.model:
        settings = {**app.chat.settings, REMOTE: {**r, "model": engine.model}}
        app.store.update_chat(app.chat.id, settings=settings)
        app.chat = app.store.get_chat(app.chat.id)
        app.host.key = engine_key(app.chat, app.args)      # the same engine: no reconnect


def header_model(app) -> str:
    """The chat header's model: the server's model and host, or the local model."""
    r = remote_of(app.chat)
    engine = app.engine
    if r:
        model = r.get("model") or getattr(engine, "model", "") or "the server's model"
        return f"{model} @ {urlsplit(r['url']).hostname}"
    return app.chat.model or (engine.info.name if engine else "default model")


def load_failure(key: tuple) -> tuple[str, str]:
    """(title, hint) of the notice for an engine that failed to load (or a server to connect)."""
    if key[3]:
        return "Cannot reach the server", "/remote off runs the chat here."
    return "Cannot load the model", "F4 picks another model."


def cache_dict(engine) -> dict:
    """/stats' KV cache: the engine's, "the server's" for a remote chat, {} while none is loaded."""
    cache = engine.cache_info() if engine is not None else None
    return cache.to_dict() if cache else {"remote": "the server's"} if engine is not None else {}


# ---- /remote and /model ----------------------------------------------------------------------------

async def set_remote(app, arg: str) -> None:
    """``/remote URL`` moves the chat to a server, ``/remote off`` back here; no argument says where
    it runs."""
    from ...runtime.remote import RemoteError, normalize_url
    settings, r = dict(app.chat.settings), remote_of(app.chat)
    if not arg:
        where = f"on {r['url']} ({r.get('model') or 'its first model'})" if r else "here (a local model)"
        app.notify(f"This chat runs {where}. /remote URL moves it to a server, /remote off back here.")
        return
    if arg == "off":
        if r is None:
            app.notify("This chat already runs here.")
            return
        settings.pop(REMOTE)
    else:
        try:
            url = normalize_url(arg)
        except RemoteError as e:
            app.notify(str(e), title="/remote", severity="error")
            return
        settings[REMOTE] = {"url": url, "model": r.get("model", "") if r and r["url"] == url else ""}
    await app.update_chat(settings=settings)


def model_fields(app, name, picked: bool = False) -> dict:
    """``update_chat``'s fields for a model: ``/model NAME`` in a remote chat names the server's model;
    from the picker (``picked``), (REMOTE, id) is one of the server's and a name a local model (the
    chat then runs here)."""
    r = remote_of(app.chat)
    if isinstance(name, tuple) or (r and not picked):
        model = name[1] if isinstance(name, tuple) else name
        return {"settings": {**app.chat.settings, REMOTE: {**r, "model": model}}}
    settings = {k: v for k, v in app.chat.settings.items() if k != REMOTE}
    return {"model": name, "settings": settings}


def picker_models(app, local: list[tuple[str, str]]) -> tuple[object, list[tuple[object, str]]]:
    """(the current entry, the entries) of the model picker: a remote chat lists the server's models
    (as listed when it connected) before the local ones; choosing a local one brings the chat here."""
    r = remote_of(app.chat)
    if r is None:
        return app.chat.model, local
    engine = app.engine
    listed = [m["id"] for m in getattr(engine, "server_models", [])] if getattr(engine, "base_url", None) == r["url"] else []
    current = r.get("model") or getattr(engine, "model", "")
    ids = listed or ([current] if current else [])
    server = [((REMOTE, i), f"{i} · {r['url']}" + (f" · ctx {m:,}" if (m := _ctx(engine, i)) else "")) for i in ids]
    return (REMOTE, current), server + [(name, f"{about} · here") for name, about in local]


def _ctx(engine, model_id: str) -> int:
    return next((m["context"] for m in getattr(engine, "server_models", []) if m["id"] == model_id), 0)
