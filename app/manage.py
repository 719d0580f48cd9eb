"""The management commands: ``models``, ``pull`` and ``doctor``.

``add_parsers(subparsers)`` adds them to the CLI; ``run(args)`` runs the chosen one and returns an
exit code (0 ok, 1 runtime error, 2 usage). User errors print as one line: ``edgechat: <message>``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..runtime.errors import EdgechatError
from ..runtime.info import DEFAULT_CTX



# ---- parsers -------------------------------------------------------------------------------------

def add_parsers(subparsers) -> None:
    """Add ``models``, ``pull`` and ``doctor`` to an argparse subparsers object."""
    from .options import add_model_options, add_output_options, add_remote_options
    p = subparsers.add_parser("models", help="list local models (packaged, pulled, Hugging Face cache), or a "
                              "server's (--base-url)")
    add_output_options(p)
    add_remote_options(p)
    p.set_defaults(manage_cmd="models")

    p = subparsers.add_parser("pull", help="download a GGUF from the Hugging Face Hub")
    p.add_argument("target", metavar="NAME|REPO", help="a catalog name (see `edgechat models`) or owner/repo")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--file", help="the .gguf file in the repo")
    which.add_argument("--quant", help="the quant to pick (default Q4_K_M)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(manage_cmd="pull")

    p = subparsers.add_parser("doctor", help="check this machine and the model: CPU, RAM, GPU, backend "
                              "(the model options give the memory estimate's model, --ctx and --kv-type)")
    add_output_options(p)
    add_model_options(p)
    add_remote_options(p)
    p.set_defaults(manage_cmd="doctor")


def run(args: argparse.Namespace) -> int:
    """Run the command ``add_parsers`` set up; returns the exit code."""
    cmd = {"models": cmd_models, "pull": cmd_pull, "doctor": cmd_doctor}.get(getattr(args, "manage_cmd", None))
    if cmd is None:
        return _fail(f"not a management command: {getattr(args, 'manage_cmd', None)}", 2)
    try:
        return cmd(args)
    except EdgechatError as e:
        return _fail(str(e), getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)


def _fail(message: str, code: int) -> int:
    print(f"edgechat: {message}", file=sys.stderr)
    return code


def _size(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    for unit in ("KiB", "MiB", "GiB"):
        n /= 1024
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}"


# ---- models --------------------------------------------------------------------------------------

def cmd_models(args) -> int:
    from . import remote
    if remote.base_url(args):
        return remote.cmd_models(args)
    from ..models import catalog, local
    models = local.list_models()
    if args.json:
        print(json.dumps([m.to_dict() for m in models], indent=2))
        return 0
    rows = [("NAME", "SIZE", "ARCH", "TYPES", "NATIVE", "SOURCE")]
    rows += [(m.name, _size(m.size), m.arch or "?", ",".join(m.types) or "-",
              "yes" if m.native else "no", m.source) for m in models]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    for m in models:
        if not m.native:
            print(f"  {m.name}: {m.reason}" + ("" if m.arch is None else "; auto uses llama.cpp"))
    have = {m.name for m in models}
    more = [n for n in catalog.CATALOG if n not in have]
    if more:
        print(f"\npull more with `edgechat pull NAME`: {', '.join(more)}")
    return 0


# ---- pull ----------------------------------------------------------------------------------------

def cmd_pull(args) -> int:
    from ..models.pull import pull
    r = pull(args.target, file=args.file, quant=args.quant, force=args.force)
    check = ", sha256 verified" if r.sha256 else ""
    print(f"{r.name}: {r.repo}/{r.file} ({_size(r.size)}{check})\n  {r.path}")
    print(f"chat with: edgechat -m {r.name}")
    return 0


# ---- doctor --------------------------------------------------------------------------------------

def _native_slower(path) -> str | None:
    """Why auto would run this file on llama.cpp for speed (runtime.speed), or None."""
    from ..runtime.ggufload import read_model
    from ..runtime.speed import native_slower_here
    try:
        return native_slower_here(read_model(path).tensors)
    except (EdgechatError, ImportError):
        return None


def doctor_report(model: str | None = None, ctx: int = DEFAULT_CTX, kv_type: str = "auto") -> dict:
    """Everything ``doctor`` shows, as a dict; ``problems`` lists what stops a chat."""
    from ..models import local
    from ..models.resolve import DEFAULT_NAME, resolve
    from ..runtime import memory
    from ..runtime.device import device_info
    from ..runtime.loader import choose_backend
    from .doctor_gpu import gpu_report
    dev = device_info()
    report = {"device": dev.to_dict(), "native_engine": _native_built(), "ctx": ctx, "kv_type": kv_type,
              "model": None, "memory": None, "backend": None, "serve": _serve_report(None, None), "problems": []}
    report["gpu"] = gpu_report(report["device"])
    problems = report["problems"]
    if not report["native_engine"]:
        problems.append("the native engine is not built (pip install --no-build-isolation -e .)")
    try:
        path = resolve(model)
    except EdgechatError as e:
        if model is not None:
            raise
        problems.append(str(e))
        return report
    m = local.describe(path, model or DEFAULT_NAME, "path")
    report["model"] = m.to_dict()
    report["chat_template"] = _chat_template(path, m)
    if m.arch is None:                                     # the header did not parse
        problems.append(f"{path}: {m.reason}")
        return report
    name, reason = choose_backend("auto", None if m.native else m.reason, 0, _native_slower(path) if m.native else None)
    report["gpu"] = gpu = gpu_report(report["device"], path, m, ctx, kv_type)
    if gpu["auto"] and gpu["auto"]["layers"]:              # --gpu-layers auto offloads it: llama.cpp on the GPU
        name, reason = "llama.cpp", gpu["auto"]["why"]
    report["backend"] = {"name": name, "reason": reason}
    report["kv_type"] = kv_type = memory.resolve_kv_type(kv_type, name)
    if not m.config:
        problems.append(f"cannot estimate memory: {m.reason}")
        return report
    cfg = m.config
    est = memory.estimate(m.size, cfg["n_layer"], ctx, cfg["n_head_kv"], cfg["head_dim"],
                          memory.kv_bytes_per_elem(kv_type, cfg["head_dim"]), memory.layer_slots(cfg, ctx))
    report["memory"] = memory.preflight(est, force=True, available=dev.ram_available)
    report["serve"] = _serve_report(est["kv"], dev.ram_available)
    if not report["memory"]["fits"]:
        problems.append(f"not enough memory at --ctx {ctx}: {memory.describe(report['memory'])}")
    return report


def _chat_template(path, m) -> str | None:
    """The chat template a chat on this file uses: the file's own, else its family's built-in."""
    from ..runtime.chat_templates import looks_like_base_model, template_for_file
    if m.arch is None:
        return None
    try:
        name = template_for_file(path)
    except EdgechatError:                  # a vocab llama.cpp cannot load: the backend line says more
        return None
    if name is None:
        return "the file's own"
    base = "; looks like a base model: try --raw" if looks_like_base_model(Path(path).stem, False) else ""
    return f"{name} (built in: the file has none){base}"


def _serve_report(kv_bytes, available) -> dict:
    from .serve.doctor import serve_report
    return serve_report(kv_bytes, available)


def _native_built() -> bool:
    from ..runtime.kernels import native_built
    return native_built()


def cmd_doctor(args) -> int:
    from . import remote
    if remote.base_url(args):                  # the endpoint and its models
        return remote.cmd_doctor(args)
    report = doctor_report(args.model, args.ctx, getattr(args, "kv_type", "auto"))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_doctor(report))
    return 1 if report["problems"] else 0


def format_doctor(r: dict) -> str:
    """The doctor report as aligned text lines."""
    from ..runtime import memory
    from .doctor_gpu import gpu_report, gpu_rows
    d = r["device"]
    gpu = f"yes ({d['gpu_kind'] or 'unknown kind'})" if d["gpu_offload"] else "no"
    rows = [("system", f"{d['os']} {d['arch']}"),
            ("cpu", d["cpu"] or "?"),
            ("isa", " ".join(d["isa"]) or "none detected"),
            ("cores", f"{d['cores_physical']} physical, {d['cores_logical']} logical"),
            ("ram", f"{_size(d['ram_total'])} total, {_size(d['ram_available'])} available"),
            ("llama.cpp", (d["llama_cpp"] or "not installed")
             + (f" (backends: {', '.join(d['llama_backends'])})" if d.get("llama_backends") else "")),
            *gpu_rows(r.get("gpu") or gpu_report(d), gpu + (f" ({d['note']})" if d["note"] else "")),
            ("native engine", "built" if r["native_engine"] else "not built")]
    m = r["model"]
    if m:
        rows += [("model", f"{m['name']}: {m['path']} ({_size(m['size'])})"),
                 ("arch / types", f"{m['arch'] or '?'} / {', '.join(m['types']) or '?'}")]
    if r["memory"]:
        verdict = "fits" if r["memory"]["fits"] else "does NOT fit"
        rows.append((f"memory @ ctx {r['ctx']} {r.get('kv_type', 'f16')}", f"{memory.describe(r['memory'])}: {verdict}"))
    if r.get("chat_template"):
        rows.append(("chat template", r["chat_template"]))
    if r["backend"]:
        rows.append(("backend (auto)", f"{r['backend']['name']}: {r['backend']['reason']}"))
    if r.get("serve"):
        from .serve.doctor import describe
        rows.append(("serve", describe(r["serve"])))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    lines += [f"problem: {p}" for p in r["problems"]] or ["no problems found"]
    return "\n".join(lines)
