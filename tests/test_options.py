"""Each option is declared once, and a flag means the same before or after a subcommand: the values
reach each command (parsed from the command line, no model loaded)."""
from __future__ import annotations

import json

import pytest

from edgechat.app import cli
from edgechat.app.cli import build_parser

# (flags, the Namespace values they must give); each is tried before and after every subcommand
FLAGS = [(["-m", "some-model", "--ctx", "1024"], {"model": "some-model", "ctx": 1024}),
         (["--kv-type", "f16", "--threads", "3"], {"kv_type": "f16", "threads": 3}),
         (["--sinks", "8", "--backend", "native"], {"sinks": 8, "backend": "native"})]
SUBCOMMANDS = ["doctor", "serve"]


class Reached(Exception):
    """Raised by a stand-in for the function a command calls, with the arguments it got."""


def reached(monkeypatch, target: str, argv: list[str]):
    """The Namespace that ``target`` (module.function) receives when ``edgechat argv`` runs."""
    def stand_in(args, *rest):
        raise Reached(args)
    monkeypatch.setattr(target, stand_in)
    with pytest.raises(Reached) as got:
        cli.main(argv)
    return got.value.args[0]


@pytest.mark.parametrize("flags,values", FLAGS)
@pytest.mark.parametrize("command", SUBCOMMANDS)
@pytest.mark.parametrize("before", [True, False])
def test_flags_parse_the_same_before_and_after_a_subcommand(flags, values, command, before):
    argv = flags + [command] if before else [command] + flags
    args = build_parser().parse_args(argv)
    for name, value in values.items():
        assert getattr(args, name) == value, (argv, name)


def test_subcommand_defaults_do_not_overwrite_flags_before_it():
    """The bug this file is for: each subparser re-declared defaults that overwrote the parent's."""
    args = build_parser().parse_args(["--kv-type", "f16", "--ctx", "512", "serve"])
    assert (args.kv_type, args.ctx, args.pin_system) == ("f16", 512, True)     # serve pins by default
    args = build_parser().parse_args(["--force", "pull", "x"])
    assert args.force is True


def test_values_reach_doctor(default_model, capsys):
    """`edgechat -m PATH --ctx 1024 doctor --json` reports that model and that ctx (doctor reads the
    file's header; no model is loaded)."""
    code = cli.main(["-m", str(default_model), "--ctx", "1024", "--kv-type", "f16", "doctor", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert code in (0, 1)
    assert report["ctx"] == 1024 and report["kv_type"] == "f16"
    assert report["model"]["path"] == str(default_model)


@pytest.mark.parametrize("argv", [["--kv-type", "f16", "--ctx", "512", "serve"],
                                  ["serve", "--kv-type", "f16", "--ctx", "512"]])
def test_values_reach_serve(monkeypatch, argv):
    args = reached(monkeypatch, "edgechat.app.serve.server.serve", argv)
    assert (args.kv_type, args.ctx, args.pin_system) == ("f16", 512, True)


def test_values_reach_the_one_shot(monkeypatch):
    args = reached(monkeypatch, "edgechat.app.cli.load_engine", ["--ctx", "300", "--temp", "0.5", "-p", "hi"])
    assert (args.ctx, args.temp, args.prompt) == (300, 0.5, "hi")


def test_values_reach_bench(monkeypatch):
    args = reached(monkeypatch, "edgechat.app.bench.run", ["--threads", "2", "--json", "bench", "--runs", "1"])
    assert (args.threads, args.json, args.runs) == (2, True, 1)


def test_kv_type_choices_are_one_table():
    """--kv-type takes the runtime's choices wherever it appears."""
    from edgechat.runtime.memory import KV_CHOICES
    p = build_parser()
    for argv in (["--kv-type", "bogus"], ["serve", "--kv-type", "bogus"], ["doctor", "--kv-type", "bogus"]):
        with pytest.raises(SystemExit):
            p.parse_args(argv)
    for kv in KV_CHOICES:
        assert p.parse_args(["doctor", "--kv-type", kv]).kv_type == kv
